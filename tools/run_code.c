/*
 * run_code.c — the `run_code` tool: the model's Python 3 script, run in the sandbox
 * (tools/sandbox.c) with the app's limits (app.json tools.run_code).
 *
 * Files: every regular file of the session's upload dir whose name is a valid
 * sandbox name (sandbox_name_ok, not "out") is copied into the script's working
 * directory, so open("statement.csv") works. Files the script leaves in out/ are
 * written back into the upload dir (created 0700 if needed), each atomically: a
 * temporary name, then rename() over any file of the same name (a symlink there is
 * replaced, never followed). With no upload dir they are listed but not saved.
 *
 * The result text (stable; the model reads it):
 *
 *   exit status: 1 (wall time 0.42 s)
 *   stdout:
 *   <stdout, or "(empty)">
 *   [stdout truncated: only the first 65536 bytes are shown]
 *   stderr:
 *   <stderr>
 *   files written to out/ (saved with the session's files):
 *   - summary.csv (120 bytes)
 *     | first line
 *     | second line
 *   [2 entries in out/ were not returned: ...]
 *
 * The status line is "exit status: N" or "exit status: killed by signal N (NAME)",
 * followed by the limits that were hit ("; wall-clock limit of 10 s reached",
 * "; CPU limit of 10 s reached", "; memory limit of 1024 MB reached", "; output
 * limit exceeded"). "files written to out/: none" when there are none. Text files
 * show their first RUN_CODE_PREVIEW_LINES lines (at most RUN_CODE_PREVIEW_BYTES).
 * Everything is valid UTF-8: invalid bytes and NULs in the output become U+FFFD.
 *
 * A non-zero exit is TOOL_OK (the traceback is what the model needs); only a
 * sandbox failure (or a server where the probe failed — never run unsandboxed) is
 * TOOL_ERROR. Runs on the sandbox pool (TOOL_IN_SANDBOX): it blocks for seconds.
 */
#include "tools.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../server/fsutil.h"
#include "sandbox.h"

#define RUN_CODE_PREVIEW_LINES 5
#define RUN_CODE_PREVIEW_BYTES 500
#define RUN_CODE_SNIFF_BYTES 4096

static void run_code_preview(fig_buf_t *b, const unsigned char *d, size_t len)
{
    size_t n = len < RUN_CODE_PREVIEW_BYTES ? len : RUN_CODE_PREVIEW_BYTES;
    size_t pos = 0;
    if (n >= 3 && memcmp(d, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;
    for (int line = 0; line < RUN_CODE_PREVIEW_LINES && pos < n; line++) {
        size_t end = pos;
        while (end < n && d[end] != '\n' && d[end] != '\r')
            end++;
        fig_buf_append_str(b, "  | ");
        fig_buf_append_utf8_clean(b, (const char *)d + pos, end - pos);
        fig_buf_append_str(b, "\n");
        if (end < n && d[end] == '\r' && end + 1 < n && d[end + 1] == '\n')
            end++;
        pos = end + 1;
    }
}

static int run_code_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The session's files as input paths, sorted by name. */
static size_t run_code_inputs(const char *dir, char ***paths_out)
{
    *paths_out = NULL;
    if (dir == NULL)
        return 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return 0;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return 0;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < SANDBOX_MAX_INPUTS) {
        struct stat st;
        if (!sandbox_name_ok(e->d_name, strlen(e->d_name)) || strcmp(e->d_name, "out") == 0 ||
            fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = fig_realloc(names, cap * sizeof(char *));
        }
        fig_buf_t p = FIG_BUF_INIT;
        fig_buf_appendf(&p, "%s/%s", dir, e->d_name);
        names[n++] = fig_buf_steal(&p);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(char *), run_code_name_cmp);
    *paths_out = names;
    return n;
}

static atomic_uint run_code_tmp_counter;

/* Writes one file into the upload dir atomically. 0, or -1 with err. */
static int run_code_save(int dfd, const sandbox_file_t *f, fig_err_t *err)
{
    char tmp[64];
    int fd = -1;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        snprintf(tmp, sizeof(tmp), ".run_code-%ld-%u.tmp", (long)getpid(), atomic_fetch_add(&run_code_tmp_counter, 1));
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        fig_err_set(err, FIG_E_IO, "cannot create a file: %s", strerror(errno));
        return -1;
    }
    size_t off = 0;
    while (off < f->len) {
        ssize_t w = write(fd, f->data + off, f->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fig_err_set(err, FIG_E_IO, "write: %s", w < 0 ? strerror(errno) : "no progress");
            close(fd);
            unlinkat(dfd, tmp, 0);
            return -1;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0 || renameat(dfd, tmp, dfd, f->name) != 0) {
        fig_err_set(err, FIG_E_IO, "%s", strerror(errno));
        unlinkat(dfd, tmp, 0);
        return -1;
    }
    return 0;
}

static const char *run_code_signame(int sig)
{
    switch (sig) {
    case SIGKILL: return "SIGKILL";
    case SIGXCPU: return "SIGXCPU";
    case SIGXFSZ: return "SIGXFSZ";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGTERM: return "SIGTERM";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGPIPE: return "SIGPIPE";
    case SIGINT: return "SIGINT";
    default: return "signal";
    }
}

static void run_code_block(fig_buf_t *b, const char *label, const fig_buf_t *data, int truncated, long cap)
{
    fig_buf_appendf(b, "%s:\n", label);
    if (data->len == 0) {
        fig_buf_append_str(b, "(empty)\n");
    } else {
        fig_buf_append_utf8_clean(b, data->data, data->len);
        if (data->data[data->len - 1] != '\n')
            fig_buf_append_str(b, "\n");
    }
    if (truncated)
        fig_buf_appendf(b, "[%s truncated: only the first %ld bytes are shown]\n", label, cap);
}

/* The result text; saves out/ files into dir (may be NULL). */
static void run_code_format(fig_buf_t *b, const sandbox_result_t *r, const sandbox_limits_t *lim,
                            const app_run_code_t *rc, const char *dir)
{
    if (r->exited)
        fig_buf_appendf(b, "exit status: %d", r->exit_code);
    else
        fig_buf_appendf(b, "exit status: killed by signal %d (%s)", r->term_signal, run_code_signame(r->term_signal));
    if (r->timed_out)
        fig_buf_appendf(b, "; wall-clock limit of %g s reached", lim->timeout_ms / 1000.0);
    if (r->cpu_exceeded)
        fig_buf_appendf(b, "; CPU limit of %d s reached", lim->cpu_s);
    if (r->memory_error)
        fig_buf_appendf(b, "; memory limit of %ld MB reached", rc->memory_mb);
    if (r->output_exceeded)
        fig_buf_append_str(b, "; output limit exceeded");
    fig_buf_appendf(b, " (wall time %.2f s)\n", r->wall_ms / 1000.0);
    run_code_block(b, "stdout", &r->out, r->out_truncated, lim->max_output_bytes);
    run_code_block(b, "stderr", &r->err, r->err_truncated, lim->max_output_bytes);

    if (r->n_files == 0) {
        fig_buf_append_str(b, "files written to out/: none\n");
    } else {
        int dfd = -1;
        fig_err_t derr;
        fig_err_clear(&derr);
        if (dir == NULL)
            fig_err_set(&derr, FIG_E_IO, "this session has no file storage");
        else if (fs_mkdir_p(dir, 0700, &derr) == 0 &&
                 (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
            fig_err_set(&derr, FIG_E_IO, "%s", strerror(errno));
        fig_buf_appendf(b, "files written to out/%s:\n", dfd >= 0 ? " (saved with the session's files)" : "");
        for (size_t i = 0; i < r->n_files; i++) {
            const sandbox_file_t *f = &r->files[i];
            fig_err_t serr;
            fig_err_clear(&serr);
            int saved = dfd >= 0 && run_code_save(dfd, f, &serr) == 0;
            fig_buf_appendf(b, "- %s (%zu bytes)", f->name, f->len);
            if (!saved)
                fig_buf_appendf(b, " [not saved: %s]", dfd >= 0 ? serr.msg : derr.msg);
            fig_buf_append_str(b, "\n");
            if (fig_utf8_is_text(f->data, f->len < RUN_CODE_SNIFF_BYTES ? f->len : RUN_CODE_SNIFF_BYTES,
                                 f->len > RUN_CODE_SNIFF_BYTES))
                run_code_preview(b, f->data, f->len);
        }
        if (dfd >= 0)
            close(dfd);
    }
    if (r->files_skipped > 0)
        fig_buf_appendf(b,
                        "[%zu entries in out/ were not returned: only regular files named [A-Za-z0-9._-] (not "
                        "starting with a dot), at most %d files and %ld bytes in all]\n",
                        r->files_skipped, lim->max_out_files, lim->max_out_bytes);
}

static char *run_code_error(int *status, const char *fmt, const char *detail)
{
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b, fmt, detail);
    *status = TOOL_ERROR;
    return fig_buf_steal(&b);
}

static char *run_code_run(tool_ctx_t *ctx, const json_t *args, int *status)
{
    *status = TOOL_OK;
    if (ctx == NULL || ctx->app == NULL || !ctx->app->run_code.enabled)
        return run_code_error(status, "error: %s", "run_code is not enabled for this app");
    const json_t *code = json_object_get(args, "code");
    if (!json_is_object(args) || json_object_size(args) != 1 || !json_is_string(code))
        return run_code_error(status, "error: %s",
                              "invalid arguments: expected {\"code\": \"<Python source>\"} and nothing else");
    size_t len = json_string_length(code);
    const char *src = json_string_value(code);
    if (len == 0 || strlen(src) != len)
        return run_code_error(status, "error: %s", "invalid arguments: code must be non-empty and contain no NUL");
    if (len > SANDBOX_MAX_CODE)
        return run_code_error(status, "error: %s", "the code is too long (1 MiB at most)");

    fig_err_t err;
    fig_err_clear(&err);
    if (sandbox_probe(&err) != 0)
        return run_code_error(status, "error: run_code is disabled on this server: %s", err.msg);

    sandbox_limits_t lim;
    sandbox_limits_from_app(&lim, &ctx->app->run_code);
    if (ctx->app->max_uploads > 0 && ctx->app->max_uploads < lim.max_out_files)
        lim.max_out_files = ctx->app->max_uploads;

    char **paths = NULL;
    size_t n = run_code_inputs(ctx->upload_dir, &paths);
    sandbox_result_t r;
    int rc = sandbox_run_python(&lim, src, (const char *const *)paths, n, &r, &err);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    if (rc != 0)
        return run_code_error(status, "error: the sandbox failed: %s", err.msg);
    fig_buf_t b = FIG_BUF_INIT;
    run_code_format(&b, &r, &lim, &ctx->app->run_code, ctx->upload_dir);
    sandbox_result_free(&r);
    return fig_buf_steal(&b);
}

const tool_t tool_run_code = {
    .name = "run_code",
    .description =
        "Run a Python 3 script in an isolated sandbox: no network, a private working directory, limits on "
        "time, memory, processes and output. The standard library and the server's installed packages "
        "(typically numpy and pandas) can be imported. The session's files are copied into the current "
        "directory, so open(\"statement.csv\") works. Files the script writes into the out/ directory are "
        "saved to the session's files and listed in the result. Print what you need to stdout. The result "
        "shows the exit status, stdout, stderr (a traceback when the script failed) and the files written.",
    .parameters_json = "{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\",\"description\":"
                       "\"Python 3 source, run as a script\"}},\"required\":[\"code\"],"
                       "\"additionalProperties\":false}",
    .kind = TOOL_IN_SANDBOX,
    .run = run_code_run,
};
