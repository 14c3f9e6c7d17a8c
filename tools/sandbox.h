/*
 * sandbox.h — runs untrusted Python 3 in bubblewrap with hard limits (the run_code
 * tool and Python verifiers of app actions). tools/sandbox.c explains the design.
 *
 * Threading: sandbox_run_python() blocks for up to timeout_ms plus a few seconds;
 * call it from a worker thread (the lead's dedicated sandbox pool: its size is the
 * concurrency cap). Several runs may proceed at once. sandbox_probe() is thread-safe
 * and runs its check once per process.
 *
 * Ownership: a sandbox_result_t owns its buffers and files; sandbox_result_free()
 * releases them (and is safe on a zeroed or already freed result).
 *
 * A verifier is just a run: pass = (r.exited && r.exit_code == 0 && !r.timed_out);
 * its stdout/stderr explain a failure.
 */
#ifndef FIG_SANDBOX_H
#define FIG_SANDBOX_H

#include <stddef.h>

#include "../server/app.h"
#include "../server/buf.h"
#include "../server/error.h"

#define SANDBOX_MAX_INPUTS 256        /* input files per run */
#define SANDBOX_MAX_NAME 80           /* bytes of an input or out/ file name */
#define SANDBOX_MAX_CODE (1 << 20)    /* bytes of Python source */

typedef struct {
    int timeout_ms;          /* wall clock for the code, 100..600000 */
    int cpu_s;               /* RLIMIT_CPU of the code, 1..3600 */
    long memory_bytes;       /* RLIMIT_AS of the code, >= 16 MiB */
    long max_file_bytes;     /* RLIMIT_FSIZE: largest file the code may write, >= 1 */
    int max_processes;       /* RLIMIT_NPROC inside the sandbox (threads count), 1..4096 */
    int max_open_files;      /* RLIMIT_NOFILE, 16..4096 */
    long max_output_bytes;   /* stdout and stderr each kept, >= 1 */
    long work_bytes;         /* private /tmp size besides the input files, >= 1 MiB */
    long max_in_bytes;       /* input files in all */
    long max_out_bytes;      /* out/ files returned, in all, >= 0 */
    int max_out_files;       /* out/ files returned, 0..1024 */
} sandbox_limits_t;

typedef struct {
    char *name;              /* [A-Za-z0-9_-][A-Za-z0-9._-]{0,79} */
    unsigned char *data;     /* len bytes, followed by a NUL that is not counted */
    size_t len;
} sandbox_file_t;

typedef struct {
    int exited;              /* 1: the code exited with exit_code; 0: killed by term_signal */
    int exit_code;
    int term_signal;
    int timed_out;           /* the wall-clock limit was reached and the code was killed */
    int cpu_exceeded;        /* killed at the CPU limit (SIGXCPU, or SIGKILL past it) */
    int memory_error;        /* stderr shows a MemoryError (the RLIMIT_AS cap was hit) */
    int output_exceeded;     /* stdout or stderr ran far past its cap: the run was killed */
    long wall_ms;            /* the whole run, sandbox setup included */
    long cpu_ms;             /* CPU of the code (user + system), when reported */
    fig_buf_t out, err;      /* captured stdout and stderr, each at most max_output_bytes */
    int out_truncated, err_truncated;
    sandbox_file_t *files;   /* out/ files, sorted by name */
    size_t n_files;
    size_t files_skipped;    /* out/ entries not returned (not regular, bad name, over a cap) */
} sandbox_result_t;

/* Defaults: 10 s wall, 10 s CPU, 1 GiB memory, 10 MiB files, 32 processes, 64 open
 * files, 64 KiB output each, 64 MiB /tmp, 256 MiB inputs, 1 MiB and 32 out/ files. */
void sandbox_limits_init(sandbox_limits_t *lim);
/* The defaults overridden by app.json tools.run_code (work_bytes = 2 x max_file_bytes,
 * at least 16 MiB). */
void sandbox_limits_from_app(sandbox_limits_t *lim, const app_run_code_t *rc);

/* Checks once that /usr/bin/bwrap and /usr/bin/python3 exist and that a trivial
 * sandbox actually runs. 0, or -1 with a message naming the reason (the result is
 * cached: later calls return the same answer). */
int sandbox_probe(fig_err_t *err);

/* Runs `code` as /sandbox/main.py with cwd /tmp, where each input file (host paths;
 * regular files, never followed as symlinks; names must be unique and valid, see
 * sandbox_file_t, and not "out") is copied under its base name. The code's non-zero
 * exit, signal or limit is a normal result (0); -1 with err only when the sandbox
 * itself could not run (bad limits or inputs, bwrap failure). *out is always
 * initialised; free it with sandbox_result_free() in both cases. */
int sandbox_run_python(const sandbox_limits_t *lim, const char *code, const char *const *input_paths,
                       size_t n_inputs, sandbox_result_t *out, fig_err_t *err);

void sandbox_result_free(sandbox_result_t *r);

/* 1 when name may name an input or out/ file: [A-Za-z0-9_-][A-Za-z0-9._-]{0,79}. */
int sandbox_name_ok(const char *name, size_t len);

#endif
