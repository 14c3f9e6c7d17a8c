/*
 * worker.c — the blocking-work thread pool (see worker.h).
 *
 * One mutex-protected FIFO and a condition variable; results travel back through
 * h2o's multithread queue, which wakes the submitting loop. Shutdown drains the
 * queue first so that a session write accepted before SIGTERM is not lost.
 */
#include "worker.h"

#include "page_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/tools.h"
#include "buf.h"
#include "thread.h"

typedef struct {
    const app_t *app;
    sqlite3 *db;
} app_db_slot_t;

struct worker_thread {
    pthread_t tid;
    worker_pool_t *pool;
    sqlite3 *page_cache_db; /* var/cache.db, opened on first use */
    session_store_t *sessions;
    trace_reader_t *traces;
    app_db_slot_t *app_dbs;
    size_t n_app_dbs;
};

struct worker_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_cond_t idle_cv;
    int running; /* jobs being run right now */
    worker_job_t *head, *tail;
    int stopping;
    int n;
    char *session_db_path;
    char *trace_db_path;
    char *page_cache_db_path;
    worker_thread_t *threads;
};

static void on_jobs_done(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *msg = H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&msg->link);
        worker_job_t *job = (worker_job_t *)msg;
        job->done(job);
    }
}

void worker_receiver_init(h2o_context_t *ctx, h2o_multithread_receiver_t *receiver)
{
    h2o_multithread_register_receiver(ctx->queue, receiver, on_jobs_done);
}

void worker_receiver_dispose(h2o_context_t *ctx, h2o_multithread_receiver_t *receiver)
{
    h2o_multithread_unregister_receiver(ctx->queue, receiver);
}

static void *worker_main(void *arg)
{
    fig_thread_setup("figment-worker", FIG_NICE_FOREGROUND);
    worker_thread_t *wt = arg;
    worker_pool_t *pool = wt->pool;
    for (;;) {
        pthread_mutex_lock(&pool->mu);
        while (pool->head == NULL && !pool->stopping)
            pthread_cond_wait(&pool->cv, &pool->mu);
        worker_job_t *job = pool->head;
        if (job == NULL) { /* stopping and drained */
            pthread_mutex_unlock(&pool->mu);
            break;
        }
        pool->head = job->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        pool->running++;
        pthread_mutex_unlock(&pool->mu);

        job->next = NULL;
        job->run(job, wt);
        memset(&job->msg, 0, sizeof(job->msg));
        h2o_multithread_send_message(job->receiver, &job->msg);

        pthread_mutex_lock(&pool->mu);
        if (--pool->running == 0 && pool->head == NULL)
            pthread_cond_broadcast(&pool->idle_cv);
        pthread_mutex_unlock(&pool->mu);
    }
    return NULL;
}

worker_pool_t *worker_pool_create(int n, const char *session_db_path, fig_err_t *err)
{
    worker_pool_t *pool = fig_calloc(1, sizeof(*pool));
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pthread_cond_init(&pool->idle_cv, NULL);
    pool->session_db_path = fig_strdup(session_db_path);
    pool->threads = fig_calloc((size_t)n, sizeof(worker_thread_t));
    for (int i = 0; i < n; i++) {
        pool->threads[i].pool = pool;
        if (pthread_create(&pool->threads[i].tid, NULL, worker_main, &pool->threads[i]) != 0) {
            fig_err_set(err, FIG_E_IO, "could not start worker thread %d", i);
            pool->n = i;
            worker_pool_destroy(pool);
            return NULL;
        }
        pool->n = i + 1;
    }
    return pool;
}

void worker_pool_destroy(worker_pool_t *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->mu);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->n; i++) {
        worker_thread_t *wt = &pool->threads[i];
        pthread_join(wt->tid, NULL);
        session_store_close(wt->sessions);
        trace_reader_close(wt->traces);
        if (wt->page_cache_db != NULL)
            sqlite3_close_v2(wt->page_cache_db);
        for (size_t j = 0; j < wt->n_app_dbs; j++)
            sqlite3_close_v2(wt->app_dbs[j].db);
        free(wt->app_dbs);
    }
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    pthread_cond_destroy(&pool->idle_cv);
    free(pool->threads);
    free(pool->session_db_path);
    free(pool->trace_db_path);
    free(pool->page_cache_db_path);
    free(pool);
}

void worker_submit(worker_pool_t *pool, worker_job_t *job)
{
    job->next = NULL;
    pthread_mutex_lock(&pool->mu);
    if (pool->tail)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
}

void worker_pool_wait_idle(worker_pool_t *pool)
{
    pthread_mutex_lock(&pool->mu);
    while (pool->head != NULL || pool->running > 0)
        pthread_cond_wait(&pool->idle_cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}

void worker_pool_set_trace_db(worker_pool_t *pool, const char *path)
{
    free(pool->trace_db_path);
    pool->trace_db_path = fig_strdup(path);
}

void worker_pool_set_page_cache_db(worker_pool_t *pool, const char *path)
{
    free(pool->page_cache_db_path);
    pool->page_cache_db_path = fig_strdup(path);
}

sqlite3 *worker_page_cache_db(worker_thread_t *wt, fig_err_t *err)
{
    if (wt->page_cache_db == NULL) {
        if (wt->pool->page_cache_db_path == NULL) {
            fig_err_set(err, FIG_E_CONFIG, "the page cache is not configured");
            return NULL;
        }
        wt->page_cache_db = page_cache_db_open(wt->pool->page_cache_db_path, err);
    }
    return wt->page_cache_db;
}

trace_reader_t *worker_trace_reader(worker_thread_t *wt, fig_err_t *err)
{
    if (wt->traces == NULL) {
        if (wt->pool->trace_db_path == NULL) {
            fig_err_set(err, FIG_E_CONFIG, "traces are not configured");
            return NULL;
        }
        wt->traces = trace_reader_open(wt->pool->trace_db_path, err);
    }
    return wt->traces;
}

session_store_t *worker_session_store(worker_thread_t *wt, fig_err_t *err)
{
    if (wt->sessions == NULL)
        wt->sessions = session_store_open(wt->pool->session_db_path, err);
    return wt->sessions;
}

sqlite3 *worker_app_db(worker_thread_t *wt, const app_t *app, fig_err_t *err)
{
    for (size_t i = 0; i < wt->n_app_dbs; i++)
        if (wt->app_dbs[i].app == app)
            return wt->app_dbs[i].db;
    sqlite3 *db = tool_sql_open(app, err);
    if (db == NULL)
        return NULL;
    wt->app_dbs = fig_realloc(wt->app_dbs, (wt->n_app_dbs + 1) * sizeof(*wt->app_dbs));
    wt->app_dbs[wt->n_app_dbs++] = (app_db_slot_t){app, db};
    return db;
}
