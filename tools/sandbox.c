/*
 * sandbox.c — untrusted Python 3 in bubblewrap (see sandbox.h for the API).
 *
 * Shape of one run:
 *
 *   figment thread ── fork ── child: own process group, fds 0..4+n remapped, every
 *        │                    other fd closed, uid/gid 65534 when figment is root,
 *        │                    guard rlimits, exec /usr/bin/bwrap
 *        │                      └─ new user/pid/net/ipc/uts/cgroup namespaces, nested
 *        │                         user namespaces disabled, no capabilities, --clearenv,
 *        │                         hostname "sandbox", --die-with-parent, --new-session
 *        │                         └─ supervisor: /usr/bin/python3 -I -S -c SUPERVISOR
 *        │                              └─ the code: /usr/bin/python3 -I /sandbox/main.py
 *        └─ poll(): stdout, stderr, report pipe; deadline; SIGKILL to the process group
 *
 * File system inside: /usr read-only (and /bin, /lib, /lib64, /sbin as the host has
 * them: symlinks into /usr or read-only binds), /etc holds only /etc/alternatives
 * (read-only; Debian's BLAS/LAPACK for numpy/pandas resolve through it; no passwd, no
 * resolv.conf), fresh /proc of the pid namespace, a minimal /dev, no /home, /root,
 * /var, /sys or figment's directories. The only writable place is /tmp, a tmpfs whose
 * size is the inputs plus work_bytes: that bounds disk use. / and /dev are remounted
 * read-only at the end of setup, so /dev/shm is read-only too (multiprocessing's
 * semaphores are unavailable; threads work).
 *
 * Files in: bwrap copies each input from an fd we pass (--file FD /tmp/NAME), so no
 * host directory is mounted at all. The code itself arrives the same way
 * (--ro-bind-data, read-only /sandbox/main.py).
 *
 * Files out: the code writes /tmp/out/. That tmpfs vanishes with the sandbox, so the
 * supervisor — a separate process that waits for the code — kills every leftover
 * process of the sandbox (kill(-1)), then streams the out/ files to fd 3 (a pipe to
 * figment): only regular files opened with O_NOFOLLOW, valid names, at most
 * max_out_files and max_out_bytes. The code could still write to that pipe (through
 * /proc, if the supervisor's prctl(PR_SET_DUMPABLE, 0) failed), so figment parses the
 * report as untrusted: strict records, names and counts checked again, a byte cap
 * beyond which the run is killed. At worst the code mislabels its own result.
 *
 * Report records on fd 3: "S exit|signal N CPU_MS TIMED_OUT\n", then per file
 * "F NAME LEN\n" + LEN bytes, then "N SKIPPED\n", then "E\n".
 *
 * Limits: the supervisor sets the code's RLIMIT_CPU (soft = cpu_s, hard + 1 s),
 * RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_CORE = 0 just before it
 * execs the code, and kills the code at timeout_ms (then still returns out/ files).
 * figment's own deadline is timeout_ms + SANDBOX_GRACE_MS: at it, SIGKILL to the
 * bwrap process group; --die-with-parent makes the sandbox's pid 1 die with bwrap,
 * and the kernel then kills everything in the pid namespace.
 *
 * RLIMIT_NPROC: the kernel (>= 5.14) counts processes per user namespace and uid
 * ("ucounts"), and checks every level up to the initial namespace against the limit
 * in force when each namespace was created. The limit is therefore set INSIDE the
 * sandbox's own user namespace, where it counts exactly this run's processes and
 * threads, whoever figment runs as. Were it set on bwrap instead, the outer level
 * would count every process of figment's host uid (figment's own threads, other
 * concurrent sandboxes) against it. The root exemption does not apply: the sandboxed
 * processes have no capability in the initial namespace. When figment runs as root
 * the child still switches to uid/gid 65534 (setgroups, setgid, setuid) before
 * exec'ing bwrap, so bwrap itself never runs as host root.
 *
 * Residual risk, documented: tmpfs bounds bytes, not inodes; a run could create many
 * empty files until its deadline (kernel memory). Run figment under a memory cgroup
 * (systemd MemoryMax=) to bound that.
 *
 * Output: stdout/stderr are read through pipes with poll(); the first
 * max_output_bytes of each are kept, the rest discarded, and a run that writes more
 * than SANDBOX_OUTPUT_SLACK bytes past a cap is killed ("output limit exceeded").
 *
 * fds: every fd figment opens here is O_CLOEXEC; the child remaps the few it passes
 * and close_range()s the rest, so concurrent runs never leak pipes into each other.
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>

#define SANDBOX_BWRAP "/usr/bin/bwrap"
#define SANDBOX_PYTHON "/usr/bin/python3"
#define SANDBOX_UID 65534
#define SANDBOX_GRACE_MS 3000      /* bwrap setup, interpreter start, out/ collection */
#define SANDBOX_DRAIN_MS 1000      /* after a kill: wait this long for the pipes to close */
#define SANDBOX_OUTPUT_SLACK (1L << 20)
#define SANDBOX_REPORT_LINE 160    /* longest report header line */
 /* formatted bwrap arguments: two per input, limits, size, symlinks */
#define SANDBOX_MAX_ARGF (2 * SANDBOX_MAX_INPUTS + 32)
#define SANDBOX_FD_BASE 5          /* child fds: 0 null, 1 out, 2 err, 3 report, 4 code, 5.. inputs */

/* The supervisor. argv: cpu_s mem fsize nofile nproc timeout_ms max_files max_bytes.
 * It must not trust anything the code leaves behind: it opens out/ entries with
 * O_NOFOLLOW|O_NONBLOCK, checks fstat, and reads at most the remaining byte budget. */
static const char sandbox_supervisor_py[] =
    "import os, sys, resource as R, select, stat, re\n"
    "def main():\n"
    "    cpu, mem, fsize, nofile, nproc, tmo, maxn, maxb = [int(x) for x in sys.argv[1:9]]\n"
    "    try:\n"
    "        import ctypes\n"
    "        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n"
    "    except Exception:\n"
    "        pass\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        try:\n"
    "            os.closerange(3, 65536)\n"
    "            for k, v in ((R.RLIMIT_CORE, 0), (R.RLIMIT_FSIZE, fsize), (R.RLIMIT_NOFILE, nofile),\n"
    "                         (R.RLIMIT_NPROC, nproc), (R.RLIMIT_AS, mem)):\n"
    "                R.setrlimit(k, (v, v))\n"
    "            R.setrlimit(R.RLIMIT_CPU, (cpu, cpu + 1))\n"
    "            os.execv('/usr/bin/python3', ['python3', '-I', '/sandbox/main.py'])\n"
    "        except BaseException as e:\n"
    "            os.write(2, ('sandbox: cannot start python: %s\\n' % e).encode())\n"
    "        os._exit(127)\n"
    "    timed_out = 0\n"
    "    try:\n"
    "        pfd = os.pidfd_open(pid)\n"
    "        if not select.select([pfd], [], [], tmo / 1000.0)[0]:\n"
    "            timed_out = 1\n"
    "            os.kill(pid, 9)\n"
    "    except OSError:\n"
    "        pass\n"
    "    _, st, ru = os.wait4(pid, 0)\n"
    "    try:\n"
    "        os.kill(-1, 9)\n"
    "    except OSError:\n"
    "        pass\n"
    "    w = os.fdopen(3, 'wb', 65536)\n"
    "    if os.WIFSIGNALED(st):\n"
    "        kind, val = b'signal', os.WTERMSIG(st)\n"
    "    else:\n"
    "        kind, val = b'exit', os.WEXITSTATUS(st)\n"
    "    w.write(b'S %s %d %d %d\\n' % (kind, val, int((ru.ru_utime + ru.ru_stime) * 1000), timed_out))\n"
    "    ok = re.compile(rb'[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}\\Z')\n"
    "    skipped = n = total = 0\n"
    "    try:\n"
    "        d = os.open('/tmp/out', os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)\n"
    "        names = []\n"
    "        with os.scandir(d) as it:\n"
    "            for e in it:\n"
    "                names.append(os.fsencode(e.name))\n"
    "                if len(names) > 4 * maxn + 64:\n"
    "                    skipped += 1\n"
    "                    break\n"
    "        names.sort()\n"
    "    except OSError:\n"
    "        names = []\n"
    "    for name in names:\n"
    "        if n >= maxn or not ok.match(name):\n"
    "            skipped += 1\n"
    "            continue\n"
    "        try:\n"
    "            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=d)\n"
    "        except OSError:\n"
    "            skipped += 1\n"
    "            continue\n"
    "        try:\n"
    "            s = os.fstat(fd)\n"
    "            data = b''\n"
    "            if stat.S_ISREG(s.st_mode) and s.st_size <= maxb - total:\n"
    "                parts = []\n"
    "                left = maxb - total + 1\n"
    "                while left > 0:\n"
    "                    b = os.read(fd, min(left, 1 << 20))\n"
    "                    if not b:\n"
    "                        break\n"
    "                    parts.append(b)\n"
    "                    left -= len(b)\n"
    "                data = b''.join(parts)\n"
    "            else:\n"
    "                data = None\n"
    "        except OSError:\n"
    "            data = None\n"
    "        os.close(fd)\n"
    "        if data is None or len(data) > maxb - total:\n"
    "            skipped += 1\n"
    "            continue\n"
    "        w.write(b'F %s %d\\n' % (name, len(data)))\n"
    "        w.write(data)\n"
    "        n += 1\n"
    "        total += len(data)\n"
    "    w.write(b'N %d\\nE\\n' % skipped)\n"
    "    w.flush()\n"
    "main()\n";

void sandbox_limits_init(sandbox_limits_t *lim)
{
    lim->timeout_ms = 10000;
    lim->cpu_s = 10;
    lim->memory_bytes = 1024L << 20;
    lim->max_file_bytes = 10L << 20;
    lim->max_processes = 32;
    lim->max_open_files = 64;
    lim->max_output_bytes = 65536;
    lim->work_bytes = 64L << 20;
    lim->max_in_bytes = 256L << 20;
    lim->max_out_bytes = 1L << 20;
    lim->max_out_files = 32;
}

void sandbox_limits_from_app(sandbox_limits_t *lim, const app_run_code_t *rc)
{
    sandbox_limits_init(lim);
    lim->timeout_ms = rc->timeout_ms;
    lim->cpu_s = rc->cpu_s;
    lim->memory_bytes = rc->memory_mb << 20;
    lim->max_file_bytes = rc->max_file_bytes;
    lim->max_processes = rc->max_processes;
    lim->max_output_bytes = rc->max_output_bytes;
    lim->max_out_bytes = rc->max_out_bytes;
    long work = rc->max_file_bytes * 2;
    lim->work_bytes = work < (16L << 20) ? (16L << 20) : work;
}

int sandbox_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > SANDBOX_MAX_NAME || name[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

void sandbox_result_free(sandbox_result_t *r)
{
    if (r == NULL)
        return;
    fig_buf_free(&r->out);
    fig_buf_free(&r->err);
    for (size_t i = 0; i < r->n_files; i++) {
        free(r->files[i].name);
        free(r->files[i].data);
    }
    free(r->files);
    r->files = NULL;
    r->n_files = 0;
}

static long sandbox_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sandbox_limits_check(const sandbox_limits_t *l, fig_err_t *err)
{
    const char *bad = NULL;
    if (l->timeout_ms < 100 || l->timeout_ms > 600000)
        bad = "timeout_ms";
    else if (l->cpu_s < 1 || l->cpu_s > 3600)
        bad = "cpu_s";
    else if (l->memory_bytes < (16L << 20))
        bad = "memory_bytes";
    else if (l->max_file_bytes < 1)
        bad = "max_file_bytes";
    else if (l->max_processes < 1 || l->max_processes > 4096)
        bad = "max_processes";
    else if (l->max_open_files < 16 || l->max_open_files > 4096)
        bad = "max_open_files";
    else if (l->max_output_bytes < 1)
        bad = "max_output_bytes";
    else if (l->work_bytes < (1L << 20))
        bad = "work_bytes";
    else if (l->max_in_bytes < 0)
        bad = "max_in_bytes";
    else if (l->max_out_bytes < 0 || l->max_out_bytes > (1L << 30))
        bad = "max_out_bytes";
    else if (l->max_out_files < 0 || l->max_out_files > 1024)
        bad = "max_out_files";
    if (bad != NULL) {
        fig_err_set(err, FIG_E_INVALID, "sandbox: limit %s out of range", bad);
        return -1;
    }
    return 0;
}

/* ---- spawning ---- */

typedef struct {
    char **argv;                 /* bwrap's argv */
    size_t argc, cap;
    fig_buf_t *strings;          /* storage for formatted arguments */
    size_t n_strings;
} sandbox_argv_t;

static void sandbox_arg(sandbox_argv_t *a, const char *s)
{
    if (a->argc + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 128;
        a->argv = fig_realloc(a->argv, a->cap * sizeof(char *));
    }
    a->argv[a->argc++] = (char *)s;
    a->argv[a->argc] = NULL;
}

static void sandbox_argf(sandbox_argv_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sandbox_argf(sandbox_argv_t *a, const char *fmt, ...)
{
    if (a->strings == NULL)
        a->strings = fig_calloc(SANDBOX_MAX_ARGF, sizeof(fig_buf_t));
    if (a->n_strings >= SANDBOX_MAX_ARGF)
        abort(); /* a programming error: the count is fixed by sandbox_build_argv */
    fig_buf_t *b = &a->strings[a->n_strings++];
    va_list ap;
    va_start(ap, fmt);
    fig_buf_vappendf(b, fmt, ap);
    va_end(ap);
    sandbox_arg(a, b->data);
}

static void sandbox_argv_free(sandbox_argv_t *a)
{
    for (size_t i = 0; i < a->n_strings; i++)
        fig_buf_free(&a->strings[i]);
    free(a->strings);
    free(a->argv);
}

/* /bin, /lib, ... as the host has them: a symlink (merged /usr) is recreated, a real
 * directory is bound read-only, a missing one is left out. */
static void sandbox_arg_sysdir(sandbox_argv_t *a, const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0)
            return;
        target[n] = '\0';
        sandbox_arg(a, "--symlink");
        sandbox_argf(a, "%s", target);
        sandbox_arg(a, path);
    } else if (S_ISDIR(st.st_mode)) {
        sandbox_arg(a, "--ro-bind");
        sandbox_arg(a, path);
        sandbox_arg(a, path);
    }
}

typedef struct {
    int fds[SANDBOX_FD_BASE + SANDBOX_MAX_INPUTS]; /* parent fds, by child fd number */
    int nfds;
    int errpipe;                  /* write end: the child reports a failure before exec */
    char **argv;
    char **envp;
    pid_t parent;
} sandbox_spawn_t;

/* After fork in a threaded process: only async-signal-safe calls until exec. */
static void sandbox_child(const sandbox_spawn_t *s)
{
    int stage = 0, tmp[SANDBOX_FD_BASE + SANDBOX_MAX_INPUTS];
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, NULL);

    /* Remap in two steps so a source fd that equals some target is never clobbered. */
    int base = s->nfds + 1, errfd = s->errpipe;
    for (int i = 0; i < s->nfds; i++) {
        tmp[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, base);
        if (tmp[i] < 0)
            goto fail;
    }
    int e = fcntl(s->errpipe, F_DUPFD_CLOEXEC, base);
    if (e < 0)
        goto fail;
    errfd = e; /* the original may be a dup2 target below */
    stage = 1;
    for (int i = 0; i < s->nfds; i++)
        if (dup2(tmp[i], i) < 0)
            goto fail;
    if (dup3(errfd, s->nfds, O_CLOEXEC) < 0)
        goto fail;
    errfd = s->nfds;
    if (syscall(SYS_close_range, (unsigned)s->nfds + 1, ~0U, 0) != 0)
        for (int fd = s->nfds + 1; fd < 65536; fd++)
            close(fd);
    stage = 2;
    if (setpgid(0, 0) != 0 || chdir("/") != 0)
        goto fail;
    struct rlimit zero = {0, 0};
    setrlimit(RLIMIT_CORE, &zero);
    stage = 3;
    if (geteuid() == 0) {
        if (setgroups(0, NULL) != 0 || setgid(SANDBOX_UID) != 0 || setuid(SANDBOX_UID) != 0)
            goto fail;
    }
    /* after setuid, which clears it; the forking thread outlives the run */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != s->parent)
        _exit(127);
    stage = 4;
    execve(SANDBOX_BWRAP, s->argv, s->envp);
fail:;
    int report[2] = {stage, errno};
    if (write(errfd, report, sizeof(report)) < 0) {
        /* nothing more can be said */
    }
    _exit(127);
}

/* ---- reading ---- */

typedef struct {
    int fd;
    fig_buf_t *buf;
    size_t cap;       /* bytes kept */
    size_t seen;      /* bytes read in all */
    size_t kill_at;   /* seen beyond this: the run is killed */
} sandbox_stream_t;

/* One record header line from the report; NULL at a malformed or missing one. */
static const char *sandbox_report_line(const fig_buf_t *r, size_t *pos, char *line)
{
    const char *start = r->data + *pos;
    size_t left = r->len - *pos;
    const char *nl = memchr(start, '\n', left < SANDBOX_REPORT_LINE ? left : SANDBOX_REPORT_LINE);
    if (nl == NULL)
        return NULL;
    size_t n = (size_t)(nl - start);
    memcpy(line, start, n);
    line[n] = '\0';
    if (strlen(line) != n)
        return NULL;
    *pos += n + 1;
    return line;
}

static int sandbox_parse_num(const char *s, long max, long *out)
{
    if (*s < '0' || *s > '9' || strlen(s) > 12)
        return -1;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Parses the supervisor's report into r. Returns 1 when the status record was
 * present and well formed. Files are kept only from a complete, valid report. */
static int sandbox_parse_report(const fig_buf_t *rep, const sandbox_limits_t *lim, sandbox_result_t *r,
                                int *sup_timed_out)
{
    if (rep->len == 0)
        return 0;
    char line[SANDBOX_REPORT_LINE + 1];
    size_t pos = 0;
    const char *l = sandbox_report_line(rep, &pos, line);
    char kind[8];
    long val, cpu, to;
    char a[16], b[16], c[16];
    if (l == NULL || sscanf(l, "S %7s %15s %15s %15s", kind, a, b, c) != 4 || sandbox_parse_num(a, 255, &val) ||
        sandbox_parse_num(b, 1L << 40, &cpu) || sandbox_parse_num(c, 1, &to))
        return 0;
    if (strcmp(kind, "exit") == 0) {
        r->exited = 1;
        r->exit_code = (int)val;
    } else if (strcmp(kind, "signal") == 0 && val >= 1 && val < 65) {
        r->exited = 0;
        r->term_signal = (int)val;
    } else {
        return 0;
    }
    r->cpu_ms = cpu;
    *sup_timed_out = (int)to;

    sandbox_file_t *files = fig_calloc((size_t)lim->max_out_files + 1, sizeof(*files));
    size_t n = 0, total = 0;
    long skipped = 0;
    int ok = 0;
    while ((l = sandbox_report_line(rep, &pos, line)) != NULL) {
        if (l[0] == 'F' && l[1] == ' ') {
            const char *name = l + 2, *sp = strchr(name, ' ');
            long len;
            if (sp == NULL || !sandbox_name_ok(name, (size_t)(sp - name)) || sandbox_parse_num(sp + 1, 1L << 40, &len) ||
                n >= (size_t)lim->max_out_files || (size_t)len > (size_t)lim->max_out_bytes - total ||
                (size_t)len > rep->len - pos)
                break;
            files[n].name = fig_strndup(name, (size_t)(sp - name));
            if (n > 0 && strcmp(files[n - 1].name, files[n].name) >= 0) {
                free(files[n].name); /* names must arrive sorted and unique */
                files[n].name = NULL;
                break;
            }
            files[n].data = fig_malloc((size_t)len + 1);
            memcpy(files[n].data, rep->data + pos, (size_t)len);
            files[n].data[len] = '\0';
            files[n].len = (size_t)len;
            n++;
            total += (size_t)len;
            pos += (size_t)len;
        } else if (l[0] == 'N' && l[1] == ' ') {
            if (sandbox_parse_num(l + 2, 1L << 30, &skipped))
                break;
            const char *e = sandbox_report_line(rep, &pos, line);
            ok = e != NULL && strcmp(e, "E") == 0 && pos == rep->len;
            break;
        } else {
            break;
        }
    }
    if (!ok) {
        for (size_t i = 0; i < n; i++) {
            free(files[i].name);
            free(files[i].data);
        }
        free(files);
        r->files_skipped = 1; /* the report was cut or malformed: out/ files are not returned */
        return 1;
    }
    r->files = files;
    r->n_files = n;
    r->files_skipped = (size_t)skipped;
    return 1;
}

static void sandbox_kill(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}

/* Opens the inputs (no symlinks, regular files, unique valid names). */
static int sandbox_open_inputs(const sandbox_limits_t *lim, const char *const *paths, size_t n, int *fds,
                               const char **names, long *total, fig_err_t *err)
{
    *total = 0;
    for (size_t i = 0; i < n; i++)
        fds[i] = -1;
    if (n > SANDBOX_MAX_INPUTS) {
        fig_err_set(err, FIG_E_TOO_LARGE, "sandbox: more than %d input files", SANDBOX_MAX_INPUTS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *p = paths[i], *slash = strrchr(p, '/');
        const char *name = slash ? slash + 1 : p;
        if (!sandbox_name_ok(name, strlen(name)) || strcmp(name, "out") == 0) {
            fig_err_set(err, FIG_E_INVALID, "sandbox: input file name not allowed: %s", p);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(names[j], name) == 0) {
                fig_err_set(err, FIG_E_INVALID, "sandbox: two input files are named %s", name);
                return -1;
            }
        names[i] = name;
        fds[i] = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        struct stat st;
        if (fds[i] < 0 || fstat(fds[i], &st) != 0) {
            fig_err_set(err, FIG_E_IO, "sandbox: input %s: %s", p, strerror(errno));
            return -1;
        }
        if (!S_ISREG(st.st_mode)) {
            fig_err_set(err, FIG_E_INVALID, "sandbox: input %s: not a regular file", p);
            return -1;
        }
        if (st.st_size > lim->max_in_bytes - *total) {
            fig_err_set(err, FIG_E_TOO_LARGE, "sandbox: input files exceed %ld bytes in all", lim->max_in_bytes);
            return -1;
        }
        *total += (long)st.st_size;
    }
    return 0;
}

static void sandbox_build_argv(sandbox_argv_t *a, const sandbox_limits_t *lim, const char *const *names, size_t n,
                               long in_total)
{
    static const char *const fixed[] = {
        SANDBOX_BWRAP, "--unshare-all", "--unshare-user", "--unshare-net", "--disable-userns",
        "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL", "--die-with-parent", "--new-session",
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
        "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8", "--setenv", "TZ", "UTC",
        "--setenv", "MPLBACKEND", "Agg", "--setenv", "OPENBLAS_NUM_THREADS", "1",
        "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "MKL_NUM_THREADS", "1",
        "--hostname", "sandbox", "--ro-bind", "/usr", "/usr",
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        sandbox_arg(a, fixed[i]);
    sandbox_arg_sysdir(a, "/bin");
    sandbox_arg_sysdir(a, "/sbin");
    sandbox_arg_sysdir(a, "/lib");
    sandbox_arg_sysdir(a, "/lib64");
    struct stat st;
    if (stat("/etc/alternatives", &st) == 0 && S_ISDIR(st.st_mode)) {
        sandbox_arg(a, "--ro-bind");
        sandbox_arg(a, "/etc/alternatives");
        sandbox_arg(a, "/etc/alternatives");
    }
    sandbox_arg(a, "--proc");
    sandbox_arg(a, "/proc");
    sandbox_arg(a, "--dev");
    sandbox_arg(a, "/dev");
    sandbox_arg(a, "--size");
    /* a page per input for rounding, plus the work space */
    sandbox_argf(a, "%ld", in_total + (long)n * 4096 + lim->work_bytes);
    sandbox_arg(a, "--tmpfs");
    sandbox_arg(a, "/tmp");
    sandbox_arg(a, "--dir");
    sandbox_arg(a, "/tmp/out");
    for (size_t i = 0; i < n; i++) {
        sandbox_arg(a, "--file");
        sandbox_argf(a, "%zu", SANDBOX_FD_BASE + i);
        sandbox_argf(a, "/tmp/%s", names[i]);
    }
    sandbox_arg(a, "--ro-bind-data");
    sandbox_arg(a, "4");
    sandbox_arg(a, "/sandbox/main.py");
    sandbox_arg(a, "--remount-ro");
    sandbox_arg(a, "/dev");
    sandbox_arg(a, "--remount-ro");
    sandbox_arg(a, "/");
    sandbox_arg(a, "--chdir");
    sandbox_arg(a, "/tmp");
    sandbox_arg(a, SANDBOX_PYTHON);
    sandbox_arg(a, "-I");
    sandbox_arg(a, "-S");
    sandbox_arg(a, "-c");
    sandbox_arg(a, sandbox_supervisor_py);
    sandbox_argf(a, "%d", lim->cpu_s);
    sandbox_argf(a, "%ld", lim->memory_bytes);
    sandbox_argf(a, "%ld", lim->max_file_bytes);
    sandbox_argf(a, "%d", lim->max_open_files);
    sandbox_argf(a, "%d", lim->max_processes);
    sandbox_argf(a, "%d", lim->timeout_ms);
    sandbox_argf(a, "%d", lim->max_out_files);
    sandbox_argf(a, "%ld", lim->max_out_bytes);
}

static int sandbox_memfd(const char *code, size_t len, fig_err_t *err)
{
    int fd = memfd_create("figment-code", MFD_CLOEXEC);
    if (fd < 0) {
        fig_err_set(err, FIG_E_IO, "sandbox: memfd_create: %s", strerror(errno));
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, code + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fig_err_set(err, FIG_E_IO, "sandbox: writing the code: %s", strerror(errno));
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) {
        fig_err_set(err, FIG_E_IO, "sandbox: lseek: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void sandbox_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Reads what is available on s; returns -1 at EOF (fd closed), 1 when a cap was blown. */
static int sandbox_stream_read(sandbox_stream_t *s)
{
    char chunk[16384];
    ssize_t n = read(s->fd, chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        sandbox_close(&s->fd);
        return -1;
    }
    if (s->buf->len < s->cap) {
        size_t keep = s->cap - s->buf->len;
        fig_buf_append(s->buf, chunk, (size_t)n < keep ? (size_t)n : keep);
    }
    s->seen += (size_t)n;
    return s->seen > s->kill_at ? 1 : 0;
}

int sandbox_run_python(const sandbox_limits_t *lim, const char *code, const char *const *input_paths,
                       size_t n_inputs, sandbox_result_t *out, fig_err_t *err)
{
    memset(out, 0, sizeof(*out));
    if (sandbox_limits_check(lim, err) != 0)
        return -1;
    if (code == NULL || strlen(code) > SANDBOX_MAX_CODE) {
        fig_err_set(err, FIG_E_TOO_LARGE, "sandbox: the code is missing or longer than %d bytes", SANDBOX_MAX_CODE);
        return -1;
    }
    if (n_inputs > SANDBOX_MAX_INPUTS) {
        fig_err_set(err, FIG_E_TOO_LARGE, "sandbox: more than %d input files", SANDBOX_MAX_INPUTS);
        return -1;
    }

    int rc = -1;
    long start = sandbox_now_ms();
    int in_fds[SANDBOX_MAX_INPUTS];
    const char *names[SANDBOX_MAX_INPUTS];
    int pout[2] = {-1, -1}, perr[2] = {-1, -1}, prep[2] = {-1, -1}, pex[2] = {-1, -1};
    int devnull = -1, codefd = -1;
    sandbox_argv_t argv;
    memset(&argv, 0, sizeof(argv));
    fig_buf_t report = FIG_BUF_INIT;
    long in_total = 0;
    for (size_t i = 0; i < n_inputs; i++)
        in_fds[i] = -1;

    if (sandbox_open_inputs(lim, input_paths, n_inputs, in_fds, names, &in_total, err) != 0)
        goto done;
    if ((codefd = sandbox_memfd(code, strlen(code), err)) < 0)
        goto done;
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || pipe2(pout, O_CLOEXEC) != 0 || pipe2(perr, O_CLOEXEC) != 0 || pipe2(prep, O_CLOEXEC) != 0 ||
        pipe2(pex, O_CLOEXEC) != 0) {
        fig_err_set(err, FIG_E_IO, "sandbox: pipes: %s", strerror(errno));
        goto done;
    }
    sandbox_build_argv(&argv, lim, names, n_inputs, in_total);
    static char *const envp[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", NULL};
    sandbox_spawn_t sp = {.nfds = SANDBOX_FD_BASE + (int)n_inputs, .errpipe = pex[1], .argv = argv.argv,
                          .envp = (char **)envp, .parent = getpid()};
    sp.fds[0] = devnull;
    sp.fds[1] = pout[1];
    sp.fds[2] = perr[1];
    sp.fds[3] = prep[1];
    sp.fds[4] = codefd;
    for (size_t i = 0; i < n_inputs; i++)
        sp.fds[SANDBOX_FD_BASE + i] = in_fds[i];

    pid_t pid = fork();
    if (pid < 0) {
        fig_err_set(err, FIG_E_IO, "sandbox: fork: %s", strerror(errno));
        goto done;
    }
    if (pid == 0)
        sandbox_child(&sp);
    sandbox_close(&pout[1]);
    sandbox_close(&perr[1]);
    sandbox_close(&prep[1]);
    sandbox_close(&pex[1]);

    int report_fail[2];
    ssize_t got;
    do
        got = read(pex[0], report_fail, sizeof(report_fail));
    while (got < 0 && errno == EINTR);
    if (got > 0) {
        int status;
        waitpid(pid, &status, 0);
        static const char *const stages[] = {"remapping fds", "remapping fds", "process group", "dropping to uid 65534",
                                             "exec " SANDBOX_BWRAP};
        fig_err_set(err, FIG_E_UNAVAILABLE, "sandbox: %s: %s",
                    stages[report_fail[0] >= 0 && report_fail[0] <= 4 ? report_fail[0] : 0],
                    got == (ssize_t)sizeof(report_fail) ? strerror(report_fail[1]) : "failed");
        goto done;
    }

    size_t kept = (size_t)lim->max_output_bytes;
    size_t slack = kept > SANDBOX_OUTPUT_SLACK ? kept : SANDBOX_OUTPUT_SLACK;
    size_t rep_cap = (size_t)lim->max_out_bytes + (size_t)(lim->max_out_files + 4) * (SANDBOX_REPORT_LINE + 1);
    sandbox_stream_t st[3] = {
        {pout[0], &out->out, kept, 0, kept + slack},
        {perr[0], &out->err, kept, 0, kept + slack},
        {prep[0], &report, rep_cap, 0, rep_cap},
    };
    pout[0] = perr[0] = prep[0] = -1;
    for (int i = 0; i < 3; i++)
        fcntl(st[i].fd, F_SETFL, O_NONBLOCK);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    long deadline = start + lim->timeout_ms + SANDBOX_GRACE_MS;
    int killed = 0, exited = 0, status = 0, report_bad = 0;
    for (;;) {
        if (!exited && waitpid(pid, &status, WNOHANG) == pid)
            exited = 1;
        int open_fds = (st[0].fd >= 0) + (st[1].fd >= 0) + (st[2].fd >= 0);
        if (exited && open_fds == 0)
            break;
        long now = sandbox_now_ms();
        if (now >= deadline) {
            if (killed)
                break; /* the pipes outlived the kill: give up on them */
            out->timed_out = 1;
            sandbox_kill(pid);
            killed = 1;
            deadline = now + SANDBOX_DRAIN_MS;
            continue;
        }
        struct pollfd pfds[4];
        sandbox_stream_t *which[4];
        int np = 0;
        for (int i = 0; i < 3; i++)
            if (st[i].fd >= 0) {
                pfds[np] = (struct pollfd){st[i].fd, POLLIN, 0};
                which[np++] = &st[i];
            }
        int wait_ms = (int)(deadline - now);
        if (!exited && pidfd >= 0) {
            pfds[np] = (struct pollfd){pidfd, POLLIN, 0};
            which[np++] = NULL;
        } else if (!exited && open_fds == 0 && wait_ms > 10) {
            wait_ms = 10; /* no pidfd: poll the child */
        }
        int pr = poll(pfds, (nfds_t)np, wait_ms);
        if (pr < 0 && errno != EINTR)
            break;
        for (int i = 0; i < np && pr > 0; i++) {
            if (pfds[i].revents == 0 || which[i] == NULL)
                continue;
            if (sandbox_stream_read(which[i]) == 1 && !killed) {
                if (which[i] == &st[2])
                    report_bad = 1;
                else
                    out->output_exceeded = 1;
                sandbox_kill(pid);
                killed = 1;
                deadline = sandbox_now_ms() + SANDBOX_DRAIN_MS;
            }
        }
    }
    for (int i = 0; i < 3; i++)
        sandbox_close(&st[i].fd);
    if (pidfd >= 0)
        close(pidfd);
    if (!exited) {
        sandbox_kill(pid);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    out->wall_ms = sandbox_now_ms() - start;
    out->out_truncated = st[0].seen > kept;
    out->err_truncated = st[1].seen > kept;
    if (out->out.data == NULL)
        fig_buf_append(&out->out, "", 0);
    if (out->err.data == NULL)
        fig_buf_append(&out->err, "", 0);

    int sup_timed_out = 0;
    int have_status = !report_bad && sandbox_parse_report(&report, lim, out, &sup_timed_out);
    out->timed_out |= sup_timed_out;
    if (!have_status) {
        if (!killed) {
            /* bwrap failed before the code ran, or the supervisor died: no result to give */
            const char *e = out->err.data;
            size_t n = strcspn(e, "\n");
            fig_err_set(err, FIG_E_UNAVAILABLE, "sandbox: the runner ended without a report (%s %d)%s%.*s",
                        WIFEXITED(status) ? "exit status" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), n ? ": " : "",
                        (int)(n > 300 ? 300 : n), e);
            goto done;
        }
        out->exited = 0;
        out->term_signal = SIGKILL;
        out->files_skipped = 0;
    }
    if (!out->exited && !out->timed_out &&
        (out->term_signal == SIGXCPU ||
         (out->term_signal == SIGKILL && out->cpu_ms >= (long)lim->cpu_s * 1000 - 50)))
        out->cpu_exceeded = 1;
    const char *e = out->err.data;
    for (const char *p = strstr(e, "MemoryError"); p != NULL; p = strstr(p + 1, "MemoryError"))
        if (p == e || p[-1] == '\n') {
            out->memory_error = 1;
            break;
        }
    rc = 0;

done:
    for (size_t i = 0; i < n_inputs; i++)
        sandbox_close(&in_fds[i]);
    sandbox_close(&codefd);
    sandbox_close(&devnull);
    for (int i = 0; i < 2; i++) {
        sandbox_close(&pout[i]);
        sandbox_close(&perr[i]);
        sandbox_close(&prep[i]);
        sandbox_close(&pex[i]);
    }
    sandbox_argv_free(&argv);
    fig_buf_free(&report);
    if (rc != 0) {
        sandbox_result_free(out);
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

/* ---- probe ---- */

static pthread_once_t sandbox_probe_once = PTHREAD_ONCE_INIT;
static int sandbox_probe_rc;
static char sandbox_probe_msg[sizeof(((fig_err_t *)0)->msg)];

static void sandbox_probe_run(void)
{
    sandbox_probe_rc = -1;
    if (access(SANDBOX_BWRAP, X_OK) != 0) {
        snprintf(sandbox_probe_msg, sizeof(sandbox_probe_msg), "bubblewrap is not installed (%s: %s)", SANDBOX_BWRAP,
                 strerror(errno));
        return;
    }
    if (access(SANDBOX_PYTHON, X_OK) != 0) {
        snprintf(sandbox_probe_msg, sizeof(sandbox_probe_msg), "Python 3 is not installed (%s: %s)", SANDBOX_PYTHON,
                 strerror(errno));
        return;
    }
    sandbox_limits_t lim;
    sandbox_limits_init(&lim);
    lim.timeout_ms = 10000;
    lim.work_bytes = 1L << 20;
    lim.max_output_bytes = 4096;
    sandbox_result_t r;
    fig_err_t e;
    fig_err_clear(&e);
    if (sandbox_run_python(&lim, "import os\nprint(os.getuid(), 6 * 7)\n", NULL, 0, &r, &e) != 0) {
        snprintf(sandbox_probe_msg, sizeof(sandbox_probe_msg), "bubblewrap cannot create its sandbox: %.400s", e.msg);
        return;
    }
    if (!r.exited || r.exit_code != 0 || strcmp(r.out.data, "65534 42\n") != 0) {
        size_t n = strcspn(r.err.data, "\n");
        snprintf(sandbox_probe_msg, sizeof(sandbox_probe_msg),
                 "a trivial sandboxed Python run failed (%s %d)%s%.*s", r.exited ? "exit status" : "signal",
                 r.exited ? r.exit_code : r.term_signal, n ? ": " : "", (int)(n > 300 ? 300 : n), r.err.data);
        sandbox_result_free(&r);
        return;
    }
    sandbox_result_free(&r);
    sandbox_probe_rc = 0;
}

int sandbox_probe(fig_err_t *err)
{
    pthread_once(&sandbox_probe_once, sandbox_probe_run);
    if (sandbox_probe_rc != 0)
        fig_err_set(err, FIG_E_UNAVAILABLE, "%s", sandbox_probe_msg);
    return sandbox_probe_rc;
}
