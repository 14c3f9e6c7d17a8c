/*
 * worker.h — a small pool of threads for blocking work (SQLite: sessions, the sql
 * tool), so that no event-loop thread ever blocks on disk.
 *
 * A job is submitted from a loop thread with the loop's receiver; `run` executes on
 * a worker thread, then the job is posted back through h2o's multithread queue and
 * `done` runs on the submitting loop thread. Jobs are never cancelled: whoever
 * submits one keeps what `done` touches alive (figment's interactions are
 * reference-counted for this reason).
 *
 * Each worker thread owns one session_store_t and one sql-tool connection per app,
 * opened lazily and closed when the pool is destroyed.
 *
 * Ownership: the caller owns the job memory (usually embedded in a larger struct);
 * the pool only links it while it is queued or running.
 */
#ifndef FIG_WORKER_H
#define FIG_WORKER_H

#include <h2o.h>
#include <h2o/multithread.h>
#include <sqlite3.h>

#include "app.h"
#include "error.h"
#include "session.h"
#include "trace.h"

typedef struct worker_pool worker_pool_t;
typedef struct worker_thread worker_thread_t;
typedef struct worker_job worker_job_t;

struct worker_job {
    h2o_multithread_message_t msg;      /* first: how the job travels back */
    void (*run)(worker_job_t *job, worker_thread_t *wt); /* on a worker thread */
    void (*done)(worker_job_t *job);                     /* on the loop thread */
    h2o_multithread_receiver_t *receiver;                /* the submitting loop's */
    worker_job_t *next;                                  /* queue link */
};

/* Starts n threads. session_db_path: the session store every worker opens. */
worker_pool_t *worker_pool_create(int n, const char *session_db_path, fig_err_t *err);
/* Runs every queued job, then joins and frees the threads and their connections. */
void worker_pool_destroy(worker_pool_t *pool);

/* Registers a loop's receiver: call once per loop thread with its h2o context. */
void worker_receiver_init(h2o_context_t *ctx, h2o_multithread_receiver_t *receiver);
void worker_receiver_dispose(h2o_context_t *ctx, h2o_multithread_receiver_t *receiver);

void worker_submit(worker_pool_t *pool, worker_job_t *job);
/* Blocks until no job is queued or running (used at shutdown, after a loop stopped
 * accepting work, so that finished jobs' done callbacks can still be delivered). */
void worker_pool_wait_idle(worker_pool_t *pool);

/* Where trace readers connect (var/traces.db); set once before jobs use it. */
void worker_pool_set_trace_db(worker_pool_t *pool, const char *path);

/* Inside run(): this worker's resources. NULL (with err) when they cannot be opened. */
session_store_t *worker_session_store(worker_thread_t *wt, fig_err_t *err);
trace_reader_t *worker_trace_reader(worker_thread_t *wt, fig_err_t *err);
/* The page cache's file (var/cache.db): set once at start; each worker opens its own
 * connection on first use. */
void worker_pool_set_page_cache_db(worker_pool_t *pool, const char *path);
sqlite3 *worker_page_cache_db(worker_thread_t *wt, fig_err_t *err);
sqlite3 *worker_app_db(worker_thread_t *wt, const app_t *app, fig_err_t *err);

#endif
