/*
 * test_sandbox.c — the bubblewrap Python sandbox (tools/sandbox.c) and the run_code
 * tool (tools/run_code.c).
 *
 * Every test really runs /usr/bin/python3 in bwrap, with small limits so each stays
 * fast. Escape attempts are written as Python that reports what it managed to do;
 * the assertions require that it managed nothing. When bwrap cannot create its
 * namespaces on this machine (sandbox_probe fails) every test is skipped with the
 * probe's reason.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sandbox.h"
#include "tools.h"

#ifndef FIG_SOURCE_ROOT
#define FIG_SOURCE_ROOT "/work/main"
#endif

static int have_sandbox;
static char no_sandbox_reason[600];

#define NEED_SANDBOX()                                                                                         \
    do {                                                                                                       \
        if (!have_sandbox) {                                                                                   \
            fprintf(stderr, "skipped: bubblewrap cannot create namespaces here: %s\n", no_sandbox_reason);     \
            skip();                                                                                            \
        }                                                                                                      \
    } while (0)

static int group_setup(void **state)
{
    fig_err_t err;
    fig_err_clear(&err);
    have_sandbox = sandbox_probe(&err) == 0;
    snprintf(no_sandbox_reason, sizeof(no_sandbox_reason), "%s", err.msg);
    return 0;
}

static void small_limits(sandbox_limits_t *l)
{
    sandbox_limits_init(l);
    l->timeout_ms = 8000;
    l->cpu_s = 5;
    l->memory_bytes = 512L << 20;
    l->max_file_bytes = 1L << 20;
    l->max_processes = 16;
    l->max_output_bytes = 4096;
    l->work_bytes = 4L << 20;
    l->max_out_files = 8;
    l->max_out_bytes = 65536;
}

static void run_ok(const sandbox_limits_t *l, const char *code, const char *const *inputs, size_t n,
                   sandbox_result_t *r)
{
    fig_err_t err;
    fig_err_clear(&err);
    int rc = sandbox_run_python(l, code, inputs, n, r, &err);
    if (rc != 0)
        fprintf(stderr, "sandbox_run_python: %s\n", err.msg);
    assert_int_equal(rc, 0);
}

static void tmpdir(char *dir, const char *tag)
{
    snprintf(dir, 64, "/tmp/figment-test-%s-XXXXXX", tag);
    assert_non_null(mkdtemp(dir));
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void rm_rf(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- normal behaviour ---- */

static void test_normal_run(void **state)
{
    NEED_SANDBOX();
    char dir[64];
    tmpdir(dir, "sbx");
    write_file(dir, "statement.csv", "a,b\n1,2\n3,4\n");
    char in[128];
    snprintf(in, sizeof(in), "%s/statement.csv", dir);
    const char *inputs[] = {in};
    sandbox_limits_t l;
    small_limits(&l);
    sandbox_result_t r;
    run_ok(&l,
           "import os, sys\n"
           "rows = open('statement.csv').read().split()[1:]\n"
           "print(sum(int(x) for row in rows for x in row.split(',')), os.getcwd(), sorted(os.listdir('.')))\n"
           "open('out/result.txt', 'w').write('total 10\\n')\n"
           "print('to stderr', file=sys.stderr)\n"
           "sys.exit(3)\n",
           inputs, 1, &r);
    assert_true(r.exited);
    assert_int_equal(r.exit_code, 3);
    assert_false(r.timed_out || r.cpu_exceeded || r.memory_error || r.output_exceeded);
    assert_string_equal(r.out.data, "10 /tmp ['out', 'statement.csv']\n");
    assert_string_equal(r.err.data, "to stderr\n");
    assert_false(r.out_truncated || r.err_truncated);
    assert_int_equal(r.n_files, 1);
    assert_string_equal(r.files[0].name, "result.txt");
    assert_int_equal(r.files[0].len, 9);
    assert_memory_equal(r.files[0].data, "total 10\n", 9);
    assert_int_equal(r.files_skipped, 0);
    assert_true(r.wall_ms > 0);
    sandbox_result_free(&r);
    sandbox_result_free(&r); /* idempotent */
    rm_rf(dir);
}

static void test_identity_and_capabilities(void **state)
{
    NEED_SANDBOX();
    sandbox_limits_t l;
    small_limits(&l);
    sandbox_result_t r;
    run_ok(&l,
           "import os, socket\n"
           "st = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
           "print(os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups())\n"
           "print(st['CapEff'].strip(), st['CapPrm'].strip(), st['CapBnd'].strip(), st['CapAmb'].strip())\n"
           "print(st['NoNewPrivs'].strip(), socket.gethostname())\n"
           "print(sorted(k for k in os.environ))\n"
           "print(len([p for p in os.listdir('/proc') if p.isdigit()]) < 6)\n"
           "try:\n" /* the supervisor's report pipe stays out of reach */
           "    open('/proc/%d/fd/3' % os.getppid(), 'wb')\n"
           "    print('report pipe opened')\n"
           "except OSError:\n"
           "    print('report pipe denied')\n",
           NULL, 0, &r);
    assert_true(r.exited);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.out.data, "65534 65534 65534 65534 []\n"
                                    "0000000000000000 0000000000000000 0000000000000000 0000000000000000\n"
                                    "1 sandbox\n"
                                    "['HOME', 'LANG', 'MKL_NUM_THREADS', 'MPLBACKEND', 'OMP_NUM_THREADS', "
                                    "'OPENBLAS_NUM_THREADS', 'PATH', 'PWD', 'TMPDIR', 'TZ']\n"
                                    "True\n"
                                    "report pipe denied\n");
    sandbox_result_free(&r);
}

/* ---- escapes that must fail ---- */

static void test_no_network(void **state)
{
    NEED_SANDBOX();
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 8), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &al), 0);
    char code[1024];
    /* 192.0.2.1 is TEST-NET-1 (RFC 5737): a public-looking address that reaches nobody */
    snprintf(code, sizeof(code),
             "import socket\n"
             "res = []\n"
             "for host in ('127.0.0.1', '192.0.2.1'):\n"
             "    s = socket.socket()\n"
             "    s.settimeout(2)\n"
             "    try:\n"
             "        s.connect((host, %d))\n"
             "        res.append('connected')\n"
             "    except OSError as e:\n"
             "        res.append('blocked')\n"
             "print(' '.join(res))\n"
             "print(sorted(i[1] for i in socket.if_nameindex()))\n",
             ntohs(a.sin_port));
    sandbox_limits_t l;
    small_limits(&l);
    sandbox_result_t r;
    run_ok(&l, code, NULL, 0, &r);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.out.data, "blocked blocked\n['lo']\n");
    /* nothing reached the host's listener */
    int c = accept(ls, NULL, NULL);
    assert_int_equal(c, -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    close(ls);
    sandbox_result_free(&r);
}

static void test_filesystem_isolation(void **state)
{
    NEED_SANDBOX();
    char dir[64];
    tmpdir(dir, "sbx-secret");
    write_file(dir, "secret.txt", "top secret\n");
    char marker[64];
    snprintf(marker, sizeof(marker), "/tmp/figment-sbx-escape-%ld", (long)getpid());
    unlink(marker);
    char code[4096];
    snprintf(code, sizeof(code),
             "import os\n"
             "reads = ['/etc/passwd', '/etc/shadow', '/etc/hosts', '/root/.bashrc', '%s/secret.txt',\n"
             "         '%s/meson.build', '/var/lib/dpkg/status', '/home', '/proc/1/root/etc/passwd',\n"
             "         '/proc/self/root/etc/passwd', '/sys/kernel/notes']\n"
             "got = []\n"
             "for p in reads:\n"
             "    try:\n"
             "        if os.path.isdir(p): os.listdir(p)\n"
             "        else: open(p, 'rb').read(1)\n"
             "        got.append(p)\n"
             "    except OSError:\n"
             "        pass\n"
             "print('read:', got)\n"
             "writes = ['/usr/lib/figment-x', '/usr/bin/python3', '/figment-x', '/etc/figment-x',\n"
             "          '/dev/figment-x', '/dev/shm/figment-x', '/sandbox/main.py', '/proc/sys/kernel/hostname']\n"
             "got = []\n"
             "for p in writes:\n"
             "    try:\n"
             "        open(p, 'ab').write(b'x')\n"
             "        got.append(p)\n"
             "    except OSError:\n"
             "        pass\n"
             "print('wrote:', got)\n"
             "open('%s', 'w').write('inside')\n"
             "print(sorted(os.listdir('/')))\n"
             "print(sorted(os.listdir('/etc')))\n",
             dir, FIG_SOURCE_ROOT, marker);
    sandbox_limits_t l;
    small_limits(&l);
    sandbox_result_t r;
    run_ok(&l, code, NULL, 0, &r);
    if (r.exit_code != 0)
        fprintf(stderr, "%s\n", r.err.data);
    assert_int_equal(r.exit_code, 0);
    const char *want_root = access("/sbin", F_OK) == 0
                                ? "['bin', 'dev', 'etc', 'lib', 'lib64', 'proc', 'sandbox', 'sbin', 'tmp', 'usr']"
                                : "['bin', 'dev', 'etc', 'lib', 'lib64', 'proc', 'sandbox', 'tmp', 'usr']";
    char want[512];
    snprintf(want, sizeof(want), "read: []\nwrote: []\n%s\n['alternatives']\n", want_root);
    assert_string_equal(r.out.data, want);
    /* the write to /tmp stayed in the sandbox's own /tmp */
    assert_int_equal(access(marker, F_OK), -1);
    sandbox_result_free(&r);
    rm_rf(dir);
}

static int count_sandboxed_code(void)
{
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char p[300], buf[512];
        snprintf(p, sizeof(p), "/proc/%s/cmdline", e->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t k = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (k <= 0)
            continue;
        for (ssize_t i = 0; i < k; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        buf[k] = '\0';
        if (strstr(buf, "/sandbox/main.py") != NULL)
            n++;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

static void test_process_limit_and_fork_bomb(void **state)
{
    NEED_SANDBOX();
    sandbox_limits_t l;
    small_limits(&l);
    l.max_processes = 8;
    sandbox_result_t r;
    /* the count is per sandbox: fork stops below the limit */
    run_ok(&l,
           "import os, time\n"
           "n = 0\n"
           "try:\n"
           "    for i in range(100):\n"
           "        if os.fork() == 0:\n"
           "            time.sleep(30)\n"
           "            os._exit(0)\n"
           "        n += 1\n"
           "except OSError as e:\n"
           "    print('fork failed:', e.errno)\n"
           "print(n)\n",
           NULL, 0, &r);
    assert_int_equal(r.exit_code, 0);
    int forked = -1;
    assert_int_equal(sscanf(r.out.data, "fork failed: 11\n%d", &forked), 1);
    assert_true(forked >= 1 && forked < 8);
    assert_true(r.wall_ms < 6000); /* the sleeping children did not hold the run */
    sandbox_result_free(&r);

    /* a real bomb: bounded, killed at the deadline, nothing survives */
    l.timeout_ms = 1500;
    run_ok(&l,
           "import os\n"
           "while True:\n"
           "    try:\n"
           "        os.fork()\n"
           "    except OSError:\n"
           "        pass\n",
           NULL, 0, &r);
    assert_true(r.timed_out);
    assert_false(r.exited);
    assert_int_equal(r.term_signal, SIGKILL);
    assert_true(r.wall_ms < 1500 + 3000 + 2000);
    sandbox_result_free(&r);
    int left = 0;
    for (int i = 0; i < 20 && (left = count_sandboxed_code()) != 0; i++)
        usleep(100 * 1000);
    assert_int_equal(left, 0);

    /* the host is fine: the next run works */
    run_ok(&l, "print('alive')\n", NULL, 0, &r);
    assert_string_equal(r.out.data, "alive\n");
    sandbox_result_free(&r);
}

static void test_cpu_limit(void **state)
{
    NEED_SANDBOX();
    sandbox_limits_t l;
    small_limits(&l);
    l.cpu_s = 1;
    l.timeout_ms = 20000;
    sandbox_result_t r;
    run_ok(&l, "while True:\n    pass\n", NULL, 0, &r);
    assert_false(r.exited);
    assert_true(r.term_signal == SIGXCPU || r.term_signal == SIGKILL);
    assert_true(r.cpu_exceeded);
    assert_false(r.timed_out);
    assert_true(r.cpu_ms >= 500); /* rusage and the rlimit tick differ a little */
    sandbox_result_free(&r);
}

static void test_wall_clock_limit(void **state)
{
    NEED_SANDBOX();
    sandbox_limits_t l;
    small_limits(&l);
    l.timeout_ms = 500;
    sandbox_result_t r;
    run_ok(&l,
           "import time\n"
           "open('out/partial.txt', 'w').write('before the timeout')\n"
           "print('started', flush=True)\n"
           "time.sleep(60)\n",
           NULL, 0, &r);
    assert_true(r.timed_out);
    assert_false(r.exited);
    assert_int_equal(r.term_signal, SIGKILL);
    assert_false(r.cpu_exceeded);
    assert_string_equal(r.out.data, "started\n");
    assert_true(r.wall_ms < 500 + 3000 + 1000);
    /* the supervisor still returns what the code wrote */
    assert_int_equal(r.n_files, 1);
    assert_string_equal(r.files[0].name, "partial.txt");
    sandbox_result_free(&r);
}

static void test_memory_limit(void **state)
{
    NEED_SANDBOX();
    sandbox_limits_t l;
    small_limits(&l);
    l.memory_bytes = 256L << 20;
    sandbox_result_t r;
    run_ok(&l, "x = bytearray(10 * 1024 ** 3)\nprint('allocated')\n", NULL, 0, &r);
    assert_true(r.exited);
    assert_int_equal(r.exit_code, 1);
    assert_true(r.memory_error);
    assert_string_equal(r.out.data, "");
    assert_non_null(strstr(r.err.data, "MemoryError"));
    sandbox_result_free(&r);
}

static void test_output_flood(void **state)
{
    NEED_SANDBOX();
    sandbox_limits_t l;
    small_limits(&l);
    sandbox_result_t r;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_ok(&l,
           "import sys\n"
           "b = b'x' * (1 << 20)\n"
           "for i in range(1024):\n"
           "    sys.stdout.buffer.write(b)\n",
           NULL, 0, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(r.output_exceeded);
    assert_false(r.exited);
    assert_true(r.out_truncated);
    assert_int_equal(r.out.len, 4096);
    assert_true(t1.tv_sec - t0.tv_sec < 8);
    sandbox_result_free(&r);

    /* below the kill threshold: kept, truncated, the run completes */
    run_ok(&l, "import sys\nsys.stderr.write('e' * 10000)\nprint('done')\n", NULL, 0, &r);
    assert_true(r.exited);
    assert_int_equal(r.exit_code, 0);
    assert_false(r.output_exceeded);
    assert_true(r.err_truncated);
    assert_int_equal(r.err.len, 4096);
    assert_string_equal(r.out.data, "done\n");
    sandbox_result_free(&r);
}

static void test_out_dir_is_filtered(void **state)
{
    NEED_SANDBOX();
    sandbox_limits_t l;
    small_limits(&l);
    sandbox_result_t r;
    run_ok(&l,
           "import os\n"
           "os.symlink('/etc/passwd', 'out/passwd')\n"
           "os.symlink('/sandbox/main.py', 'out/code.py')\n"
           "os.symlink('/proc/self/environ', 'out/env')\n"
           "os.mkfifo('out/fifo')\n"
           "os.mkdir('out/sub')\n"
           "open('out/sub/nested.txt', 'w').write('x')\n"
           "open('out/bad name.txt', 'w').write('x')\n"
           "open('out/.hidden', 'w').write('x')\n"
           "open('out/good.txt', 'w').write('ok')\n",
           NULL, 0, &r);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.n_files, 1);
    assert_string_equal(r.files[0].name, "good.txt");
    assert_memory_equal(r.files[0].data, "ok", 2);
    assert_int_equal(r.files_skipped, 7);
    sandbox_result_free(&r);
}

static void test_out_caps(void **state)
{
    NEED_SANDBOX();
    sandbox_limits_t l;
    small_limits(&l);
    l.max_out_files = 3;
    l.max_out_bytes = 100;
    sandbox_result_t r;
    run_ok(&l,
           "for n in 'abcde':\n"
           "    open('out/' + n, 'w').write(n * 30)\n",
           NULL, 0, &r);
    assert_int_equal(r.n_files, 3);
    assert_string_equal(r.files[0].name, "a");
    assert_string_equal(r.files[2].name, "c");
    assert_int_equal(r.files_skipped, 2);
    sandbox_result_free(&r);

    run_ok(&l, "open('out/a', 'w').write('a' * 60)\nopen('out/b', 'w').write('b' * 60)\n", NULL, 0, &r);
    assert_int_equal(r.n_files, 1);
    assert_int_equal(r.files[0].len, 60);
    assert_int_equal(r.files_skipped, 1);
    sandbox_result_free(&r);
}

static void test_file_size_and_disk_limits(void **state)
{
    NEED_SANDBOX();
    sandbox_limits_t l;
    small_limits(&l);
    sandbox_result_t r;
    run_ok(&l,
           "import errno\n"
           "try:\n"
           "    open('big', 'wb').write(b'x' * (2 << 20))\n"
           "    print('big written')\n"
           "except OSError as e:\n"
           "    print('big', errno.errorcode[e.errno])\n"
           "try:\n"
           "    for i in range(10):\n"
           "        open('f%d' % i, 'wb').write(b'x' * (1 << 20))\n"
           "    print('disk unbounded')\n"
           "except OSError as e:\n"
           "    print('disk', errno.errorcode[e.errno])\n",
           NULL, 0, &r);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.out.data, "big EFBIG\ndisk ENOSPC\n");
    sandbox_result_free(&r);
}

static void test_bad_inputs_refused(void **state)
{
    NEED_SANDBOX();
    char dir[64], p[128], q[128], d2[64];
    tmpdir(dir, "sbx-in");
    tmpdir(d2, "sbx-in2");
    write_file(dir, "a.txt", "a");
    write_file(d2, "a.txt", "b");
    snprintf(p, sizeof(p), "%s/link.txt", dir);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    sandbox_limits_t l;
    small_limits(&l);
    sandbox_result_t r;
    fig_err_t err;

    const char *sym[] = {p};
    assert_int_equal(sandbox_run_python(&l, "print(1)", sym, 1, &r, &err), -1);
    sandbox_result_free(&r);
    const char *d[] = {dir};
    assert_int_equal(sandbox_run_python(&l, "print(1)", d, 1, &r, &err), -1);
    snprintf(p, sizeof(p), "%s/a.txt", dir);
    snprintf(q, sizeof(q), "%s/a.txt", d2);
    const char *dup[] = {p, q};
    assert_int_equal(sandbox_run_python(&l, "print(1)", dup, 2, &r, &err), -1);
    assert_non_null(strstr(err.msg, "two input files"));
    write_file(dir, "out", "x");
    snprintf(q, sizeof(q), "%s/out", dir);
    const char *out[] = {q};
    assert_int_equal(sandbox_run_python(&l, "print(1)", out, 1, &r, &err), -1);
    const char *missing[] = {"/nonexistent/file.txt"};
    assert_int_equal(sandbox_run_python(&l, "print(1)", missing, 1, &r, &err), -1);
    l.max_in_bytes = 0;
    const char *one[] = {p};
    assert_int_equal(sandbox_run_python(&l, "print(1)", one, 1, &r, &err), -1);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    small_limits(&l);
    l.timeout_ms = 5;
    assert_int_equal(sandbox_run_python(&l, "print(1)", NULL, 0, &r, &err), -1);
    assert_int_equal(err.code, FIG_E_INVALID);
    assert_null(r.files);
    rm_rf(dir);
    rm_rf(d2);
}

typedef struct {
    int id;
    int ok;
} conc_t;

static void *conc_run(void *arg)
{
    conc_t *c = arg;
    sandbox_limits_t l;
    small_limits(&l);
    char code[128], want[32];
    snprintf(code, sizeof(code), "open('out/r', 'w').write('%d')\nprint(%d * 2)\n", c->id, c->id);
    snprintf(want, sizeof(want), "%d\n", c->id * 2);
    sandbox_result_t r;
    fig_err_t err;
    c->ok = sandbox_run_python(&l, code, NULL, 0, &r, &err) == 0 && r.exited && r.exit_code == 0 &&
            strcmp(r.out.data, want) == 0 && r.n_files == 1 && (size_t)atoi((char *)r.files[0].data) == (size_t)c->id;
    sandbox_result_free(&r);
    return NULL;
}

static void test_concurrent_runs(void **state)
{
    NEED_SANDBOX();
    pthread_t t[3];
    conc_t c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = (conc_t){i + 1, 0};
        assert_int_equal(pthread_create(&t[i], NULL, conc_run, &c[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_true(c[i].ok);
    }
}

static void test_pandas_importable(void **state)
{
    NEED_SANDBOX();
    struct stat st;
    if (stat("/usr/lib/python3/dist-packages/pandas", &st) != 0) {
        fprintf(stderr, "skipped: python3-pandas is not installed\n");
        skip();
    }
    sandbox_limits_t l;
    small_limits(&l);
    l.memory_bytes = 1024L << 20;
    l.timeout_ms = 30000;
    l.cpu_s = 30;
    sandbox_result_t r;
    run_ok(&l,
           "import io, pandas as pd\n"
           "df = pd.read_csv(io.StringIO('a,b\\n1,2\\n3,4\\n'))\n"
           "print(int(df['b'].sum()))\n",
           NULL, 0, &r);
    if (r.exit_code != 0)
        fprintf(stderr, "%s\n", r.err.data);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.out.data, "6\n");
    sandbox_result_free(&r);
}

/* ---- the run_code tool ---- */

static void tool_app(app_t *app)
{
    memset(app, 0, sizeof(*app));
    app->name = "t";
    app->title = "Test";
    app->run_code.enabled = 1;
    app->run_code.timeout_ms = 8000;
    app->run_code.cpu_s = 5;
    app->run_code.memory_mb = 512;
    app->run_code.max_file_bytes = 1 << 20;
    app->run_code.max_processes = 16;
    app->run_code.max_output_bytes = 4096;
    app->run_code.max_out_bytes = 65536;
    app->max_uploads = 20;
}

static char *tool_call(app_t *app, const char *upload_dir, const char *args_json, int *status)
{
    tool_ctx_t ctx = {.app = app, .upload_dir = upload_dir};
    json_error_t jerr;
    json_t *args = json_loads(args_json, 0, &jerr);
    assert_non_null(args);
    char *text = tool_run_code.run(&ctx, args, status);
    json_decref(args);
    assert_non_null(text);
    /* the text always travels to the model as a JSON string */
    json_t *s = json_string(text);
    assert_non_null(s);
    json_decref(s);
    return text;
}

static void test_tool_run_code(void **state)
{
    NEED_SANDBOX();
    assert_int_equal(tool_run_code.kind, TOOL_IN_SANDBOX);
    app_t app;
    tool_app(&app);
    char dir[64], p[128];
    tmpdir(dir, "runcode");
    write_file(dir, "statement.csv", "amount\n10\n32\n");
    write_file(dir, ".hidden", "no");
    write_file(dir, "summary.txt", "old contents");
    snprintf(p, sizeof(p), "%s/evil.csv", dir);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    int status = -1;
    char *text = tool_call(&app, dir,
                           "{\"code\": \"import os\\n"
                           "total = sum(int(x) for x in open('statement.csv').read().split()[1:])\\n"
                           "print('total', total)\\n"
                           "print(sorted(os.listdir('.')))\\n"
                           "open('out/summary.txt', 'w').write('total: %d\\\\nrows: 2\\\\n' % total)\\n\"}",
                           &status);
    assert_int_equal(status, TOOL_OK);
    assert_true(strncmp(text, "exit status: 0 (wall time ", 26) == 0);
    assert_non_null(strstr(text, "\nstdout:\ntotal 42\n['out', 'statement.csv', 'summary.txt']\nstderr:\n(empty)\n"));
    assert_non_null(strstr(text, "files written to out/ (saved with the session's files):\n"
                                 "- summary.txt (18 bytes)\n  | total: 42\n  | rows: 2\n"));
    free(text);
    char saved[128];
    snprintf(saved, sizeof(saved), "%s/summary.txt", dir);
    FILE *f = fopen(saved, "r");
    assert_non_null(f);
    char buf[64] = {0};
    assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), 18);
    fclose(f);
    assert_string_equal(buf, "total: 42\nrows: 2\n");
    struct stat st;
    assert_int_equal(stat(saved, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* no temporary file left behind */
    DIR *d = opendir(dir);
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)) != NULL)
        entries += e->d_name[0] != '.' || strcmp(e->d_name, ".hidden") == 0;
    closedir(d);
    assert_int_equal(entries, 4); /* statement.csv, .hidden, summary.txt, evil.csv */
    rm_rf(dir);
}

static void test_tool_run_code_failure_is_ok(void **state)
{
    NEED_SANDBOX();
    app_t app;
    tool_app(&app);
    int status = -1;
    char *text = tool_call(&app, NULL, "{\"code\": \"raise ValueError('boom')\"}", &status);
    assert_int_equal(status, TOOL_OK);
    assert_true(strncmp(text, "exit status: 1 (wall time ", 26) == 0);
    assert_non_null(strstr(text, "stdout:\n(empty)\nstderr:\nTraceback (most recent call last):\n"));
    assert_non_null(strstr(text, "ValueError: boom\nfiles written to out/: none\n"));
    free(text);

    /* limits are named; invalid UTF-8 and NUL become U+FFFD; no upload dir: not saved */
    app.run_code.timeout_ms = 500;
    text = tool_call(&app, NULL,
                     "{\"code\": \"import sys, time\\n"
                     "sys.stdout.buffer.write(b'\\\\xff\\\\x00ok\\\\n')\\n"
                     "sys.stdout.flush()\\n"
                     "open('out/r.bin', 'wb').write(b'\\\\x00\\\\x01')\\n"
                     "time.sleep(30)\\n\"}",
                     &status);
    assert_int_equal(status, TOOL_OK);
    assert_true(strncmp(text, "exit status: killed by signal 9 (SIGKILL); wall-clock limit of 0.5 s reached (wall", 82) ==
                0);
    assert_non_null(strstr(text, "stdout:\n\xEF\xBF\xBD\xEF\xBF\xBDok\n"));
    assert_non_null(strstr(text, "- r.bin (2 bytes) [not saved: this session has no file storage]\n"));
    free(text);
}

static void test_tool_run_code_creates_upload_dir(void **state)
{
    NEED_SANDBOX();
    app_t app;
    tool_app(&app);
    char dir[64], sub[128];
    tmpdir(dir, "runcode-new");
    snprintf(sub, sizeof(sub), "%s/app/session", dir);
    int status = -1;
    char *text = tool_call(&app, sub, "{\"code\": \"open('out/a.txt', 'w').write('hi')\"}", &status);
    assert_int_equal(status, TOOL_OK);
    assert_non_null(strstr(text, "- a.txt (2 bytes)\n  | hi\n"));
    free(text);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char p[160];
    snprintf(p, sizeof(p), "%s/a.txt", sub);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 2);
    rm_rf(dir);
}

static void test_tool_run_code_bad_args(void **state)
{
    app_t app;
    tool_app(&app);
    static const char *const bad[] = {"{\"code\": 5}", "{\"code\": \"\"}", "{}",
                                      "{\"code\": \"print(1)\", \"extra\": 1}", "{\"code\": \"a\\u0000b\"}",
                                      "[\"print(1)\"]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int status = -1;
        tool_ctx_t ctx = {.app = &app};
        json_t *args = json_loads(bad[i], JSON_ALLOW_NUL, NULL);
        assert_non_null(args);
        char *text = tool_run_code.run(&ctx, args, &status);
        json_decref(args);
        assert_int_equal(status, TOOL_ERROR);
        assert_true(strncmp(text, "error: ", 7) == 0);
        free(text);
    }
    app.run_code.enabled = 0;
    int status = -1;
    tool_ctx_t ctx = {.app = &app};
    json_t *args = json_pack("{s:s}", "code", "print(1)");
    char *text = tool_run_code.run(&ctx, args, &status);
    json_decref(args);
    assert_int_equal(status, TOOL_ERROR);
    assert_true(strncmp(text, "error: ", 7) == 0);
    free(text);
    /* the schema is valid JSON and names the one argument */
    json_t *schema = json_loads(tool_run_code.parameters_json, 0, NULL);
    assert_non_null(schema);
    assert_non_null(json_object_get(json_object_get(schema, "properties"), "code"));
    json_decref(schema);
}

static void test_probe_is_cached(void **state)
{
    fig_err_t a, b;
    fig_err_clear(&a);
    fig_err_clear(&b);
    int r1 = sandbox_probe(&a), r2 = sandbox_probe(&b);
    assert_int_equal(r1, r2);
    assert_int_equal(r1, have_sandbox ? 0 : -1);
    assert_string_equal(a.msg, b.msg);
    assert_true(sandbox_name_ok("a.csv", 5));
    assert_false(sandbox_name_ok(".a", 2));
    assert_false(sandbox_name_ok("a/b", 3));
    assert_false(sandbox_name_ok("a b", 3));
    assert_false(sandbox_name_ok("", 0));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_is_cached),
        cmocka_unit_test(test_normal_run),
        cmocka_unit_test(test_identity_and_capabilities),
        cmocka_unit_test(test_no_network),
        cmocka_unit_test(test_filesystem_isolation),
        cmocka_unit_test(test_process_limit_and_fork_bomb),
        cmocka_unit_test(test_cpu_limit),
        cmocka_unit_test(test_wall_clock_limit),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_output_flood),
        cmocka_unit_test(test_out_dir_is_filtered),
        cmocka_unit_test(test_out_caps),
        cmocka_unit_test(test_file_size_and_disk_limits),
        cmocka_unit_test(test_bad_inputs_refused),
        cmocka_unit_test(test_concurrent_runs),
        cmocka_unit_test(test_pandas_importable),
        cmocka_unit_test(test_tool_run_code),
        cmocka_unit_test(test_tool_run_code_failure_is_ok),
        cmocka_unit_test(test_tool_run_code_creates_upload_dir),
        cmocka_unit_test(test_tool_run_code_bad_args),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
