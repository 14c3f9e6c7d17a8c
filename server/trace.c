/*
 * trace.c — the trace store: a writer thread that batches finished traces into
 * SQLite, and readers for the operator UI, eval and replay (see trace.h).
 *
 * Design:
 * - One table row per interaction. The column set is described once (trace_cols)
 *   with each column's kind and offset in trace_t, so binding on write and
 *   converting on read cannot drift apart. JSON columns are stored as compact text
 *   and parsed back by trace_get.
 * - The writer owns its own connection. trace_submit() only takes a mutex to push a
 *   pointer into a fixed ring (TRACE_QUEUE_MAX); a full ring frees the trace and
 *   counts a drop, so an event loop never waits on the disk. The thread waits for
 *   work, then lets a batch build up for at most TRACE_BATCH_MS (or until
 *   TRACE_BATCH_MAX traces, a flush or a stop), and writes it in one transaction.
 * - Flush is sequence based: every accepted trace gets a number; a flush waits
 *   until the writer has finished (written or dropped) every number given out
 *   before the call, so it never waits on traces submitted after it.
 * - Write errors never stop the writer: a failed row or batch counts as dropped
 *   and one line goes to stderr at most once a minute (with the running count).
 * - Redaction (redact_data) runs on the writer thread on deep copies, because the
 *   caller's JSON values may share sub-values with live data.
 * - Readers prepare their statements once. trace_list has six optional filters;
 *   each combination gets its own statement (built on first use, cached by
 *   bitmask) so SQLite can use the (app|model, started_unix_ms) indexes, rather
 *   than one statement full of "? IS NULL OR" that defeats them. Paging orders by
 *   (started_unix_ms, rowid) so rows of the same millisecond keep their place.
 * - trace_stats scans at most TRACE_STATS_MAX_ROWS of the most recent rows, sorted
 *   by bucket, app, model, total_ms, and computes nearest-rank percentiles in C.
 * - Schema version lives in PRAGMA user_version (1 = this schema). Readers run the
 *   same idempotent migration, so a reader never sees a half-made store.
 */
#include "trace.h"

#include "fsutil.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "buf.h"
#include "thread.h"

#define TRACE_SCHEMA_VERSION 2
#define TRACE_BUSY_TIMEOUT_MS 5000
#define TRACE_STATS_MAX_ROWS 200000
#define TRACE_LIST_DEFAULT 100
#define TRACE_LIST_MAX 1000
#define TRACE_COMMENT_MAX 2000
#define TRACE_ERROR_REPORT_INTERVAL_S 60
/* A bucket width above ~100 years is a caller bug, and would risk overflow. */
#define TRACE_BUCKET_MS_MAX (INT64_C(100) * 366 * 24 * 3600 * 1000)

/* ---- column table ---- */

typedef enum { COL_FIXED, COL_STR, COL_INT, COL_I64, COL_REAL, COL_BOOL, COL_JSON } trace_col_kind_t;

typedef struct {
    const char *name;
    trace_col_kind_t kind;
    size_t offset;
} trace_col_t;

#define COL(name, kind) {#name, kind, offsetof(trace_t, name)}

/* Order = column order of the table and of the INSERT. */
static const trace_col_t trace_cols[] = {
    COL(trace_id, COL_FIXED),
    COL(span_id, COL_FIXED),
    COL(session_id, COL_FIXED),
    COL(app, COL_STR),
    COL(method, COL_STR),
    COL(path, COL_STR),
    COL(route_rule, COL_STR),
    COL(model, COL_STR),
    COL(provider, COL_STR),
    COL(route, COL_STR),
    COL(prompt_version, COL_STR),
    COL(status, COL_INT),
    COL(outcome, COL_STR),
    COL(error, COL_STR),
    COL(started_unix_ms, COL_I64),
    COL(queued_ms, COL_REAL),
    COL(connect_ms, COL_REAL),
    COL(ttft_ms, COL_REAL),
    COL(llm_ms, COL_REAL),
    COL(tool_ms, COL_REAL),
    COL(render_ms, COL_REAL),
    COL(total_ms, COL_REAL),
    COL(overhead_ms, COL_REAL),
    COL(prompt_tokens, COL_I64),
    COL(cached_tokens, COL_I64),
    COL(cache_write_tokens, COL_I64),
    COL(completion_tokens, COL_I64),
    COL(cost_usd, COL_REAL),
    COL(attempts, COL_INT),
    COL(cache_hit, COL_BOOL),
    COL(stale, COL_BOOL),
    COL(folded_hits, COL_I64),
    COL(state, COL_JSON),
    COL(request, COL_JSON),
    COL(tool_calls, COL_JSON),
    COL(messages, COL_JSON),
    COL(answer, COL_STR),
    COL(page_html, COL_STR),
};
#define TRACE_NCOLS (sizeof(trace_cols) / sizeof(trace_cols[0]))

static const char trace_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS traces ("
    " trace_id TEXT PRIMARY KEY NOT NULL, span_id TEXT, session_id TEXT,"
    " app TEXT, method TEXT, path TEXT, route_rule TEXT, model TEXT, provider TEXT, route TEXT,"
    " prompt_version TEXT, status INTEGER, outcome TEXT, error TEXT, started_unix_ms INTEGER NOT NULL,"
    " queued_ms REAL, connect_ms REAL, ttft_ms REAL, llm_ms REAL, tool_ms REAL, render_ms REAL,"
    " total_ms REAL, overhead_ms REAL,"
    " prompt_tokens INTEGER, cached_tokens INTEGER, cache_write_tokens INTEGER, completion_tokens INTEGER,"
    " cost_usd REAL, attempts INTEGER, cache_hit INTEGER, stale INTEGER,"
    " state TEXT, request TEXT, tool_calls TEXT, messages TEXT, answer TEXT, page_html TEXT);"
    "CREATE INDEX IF NOT EXISTS traces_started ON traces(started_unix_ms);"
    "CREATE INDEX IF NOT EXISTS traces_app_started ON traces(app, started_unix_ms);"
    "CREATE INDEX IF NOT EXISTS traces_model_started ON traces(model, started_unix_ms);"
    "CREATE TABLE IF NOT EXISTS feedback ("
    " id INTEGER PRIMARY KEY, trace_id TEXT NOT NULL, rating INTEGER NOT NULL, comment TEXT,"
    " created_unix_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS feedback_trace ON feedback(trace_id, id);";

/* Columns of the feedback table, for reading them back with the right types. */
static const trace_col_t trace_feedback_cols[] = {
    {"rating", COL_INT, 0},
    {"comment", COL_STR, 0},
    {"created_unix_ms", COL_I64, 0},
};

static const trace_col_t *trace_col_find(const char *name)
{
    for (size_t i = 0; i < TRACE_NCOLS; i++)
        if (strcmp(trace_cols[i].name, name) == 0)
            return &trace_cols[i];
    for (size_t i = 0; i < sizeof(trace_feedback_cols) / sizeof(trace_feedback_cols[0]); i++)
        if (strcmp(trace_feedback_cols[i].name, name) == 0)
            return &trace_feedback_cols[i];
    return NULL;
}

/* ---- small helpers ---- */

static int64_t trace_now_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int trace_id_valid(const char *id)
{
    size_t n = 0;
    for (; id[n] != '\0'; n++)
        if (n >= 32 || !((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f')))
            return 0;
    return n == 32;
}

static int trace_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int l = fig_utf8_seq(s + i, n - i);
        if (l <= 0)
            return 0;
        i += (size_t)l;
    }
    return 1;
}

/* A JSON string from stored text; bytes that are not UTF-8 (a raw path, say)
 * become U+FFFD instead of failing the whole answer. */
static json_t *trace_json_text(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    if (v != NULL)
        return v;
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_utf8_clean(&b, s, n);
    v = json_stringn(b.data ? b.data : "", b.len);
    fig_buf_free(&b);
    return v ? v : json_string("");
}

static int trace_db_fail(sqlite3 *db, const char *path, const char *what, fig_err_t *err)
{
    fig_err_set(err, FIG_E_DB, "%s: %s: %s", path, what, db ? sqlite3_errmsg(db) : "out of memory");
    return -1;
}

static int trace_exec(sqlite3 *db, const char *path, const char *sql, fig_err_t *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "%s: %s", path, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Creates the schema or checks its version, under a write lock so a writer and a
 * reader opening a fresh store at once do not both create it. */
static int trace_store_migrate(sqlite3 *db, const char *path, fig_err_t *err)
{
    if (trace_exec(db, path, "BEGIN IMMEDIATE", err) != 0)
        return -1;
    sqlite3_stmt *q = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (version < 0) {
        trace_db_fail(db, path, "reading user_version", err);
        goto fail;
    }
    if (version > TRACE_SCHEMA_VERSION) {
        fig_err_set(err, FIG_E_DB, "%s: schema version %d is newer than this figment understands (%d)", path,
                    version, TRACE_SCHEMA_VERSION);
        goto fail;
    }
    if (version == 0 && (trace_exec(db, path, trace_schema_sql, err) != 0 ||
                         trace_exec(db, path, "PRAGMA user_version = 1", err) != 0))
        goto fail;
    /* version 2: busy page caches trace a sample of their hits; each such trace counts
     * the hits it stands for */
    if (version < 2 && (trace_exec(db, path, "ALTER TABLE traces ADD COLUMN folded_hits INTEGER NOT NULL DEFAULT 0",
                                   err) != 0 ||
                        trace_exec(db, path, "PRAGMA user_version = 2", err) != 0))
        goto fail;
    return trace_exec(db, path, "COMMIT", err);

fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static sqlite3 *trace_store_open(const char *path, int create, fig_err_t *err)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (!create) {
        struct stat st;
        if (stat(path, &st) != 0) {
            fig_err_set(err, FIG_E_IO, "%s: no trace store: %s", path, strerror(errno));
            return NULL;
        }
    }
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        trace_db_fail(db, path, "cannot open", err);
        goto fail;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, TRACE_BUSY_TIMEOUT_MS);

    sqlite3_stmt *q = NULL;
    int wal = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(q, 0);
        wal = mode != NULL && strcmp(mode, "wal") == 0;
    }
    sqlite3_finalize(q);
    if (!wal) {
        trace_db_fail(db, path, "cannot switch to WAL mode", err);
        goto fail;
    }
    if (trace_exec(db, path, "PRAGMA synchronous=NORMAL", err) != 0 || trace_store_migrate(db, path, err) != 0)
        goto fail;
    return db;

fail:
    sqlite3_close(db);
    return NULL;
}

/* ---- trace_t ---- */

trace_t *trace_new(void)
{
    return fig_calloc(1, sizeof(trace_t));
}

void trace_free(trace_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < TRACE_NCOLS; i++) {
        void *field = (char *)t + trace_cols[i].offset;
        if (trace_cols[i].kind == COL_STR)
            free(*(char **)field);
        else if (trace_cols[i].kind == COL_JSON)
            json_decref(*(json_t **)field);
    }
    free(t);
}

/* ---- redaction ---- */

static json_t *trace_redacted(json_t *v)
{
    size_t n;
    if (json_is_string(v)) {
        n = json_string_length(v);
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        n = s ? strlen(s) : 0;
        free(s);
    }
    char text[64];
    snprintf(text, sizeof(text), "[redacted %zu bytes]", n);
    return json_string(text);
}

/* Replaces obj[key] (when present and not null) with its redaction marker. */
static void trace_redact_key(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v != NULL && !json_is_null(v))
        json_object_set_new(obj, key, trace_redacted(v));
}

/* tool_calls: [{"name","arguments","result",...}] — only "result" carries data. */
static json_t *trace_redact_tool_calls(json_t *calls)
{
    json_t *copy = json_deep_copy(calls);
    size_t i;
    json_t *c;
    json_array_foreach(copy, i, c)
    {
        if (json_is_object(c))
            trace_redact_key(c, "result");
    }
    return copy;
}

/* messages: OpenAI-shaped {"role":"tool","content":...} and Anthropic-shaped
 * {"content":[{"type":"tool_result","content":...}]}. Also accepts a request body
 * object holding a "messages" array. */
static json_t *trace_redact_messages(json_t *messages)
{
    json_t *copy = json_deep_copy(messages);
    json_t *list = json_is_object(copy) ? json_object_get(copy, "messages") : copy;
    size_t i, j;
    json_t *m, *block;
    json_array_foreach(list, i, m)
    {
        if (!json_is_object(m))
            continue;
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        if (role != NULL && strcmp(role, "tool") == 0) {
            trace_redact_key(m, "content");
        } else if (json_is_array(content)) {
            json_array_foreach(content, j, block)
            {
                const char *type = json_string_value(json_object_get(block, "type"));
                if (type != NULL && strcmp(type, "tool_result") == 0)
                    trace_redact_key(block, "content");
            }
        }
    }
    return copy;
}

/* ---- writer ---- */

struct trace_writer {
    char *path;
    sqlite3 *db;
    sqlite3_stmt *insert, *begin, *commit, *rollback;
    int redact;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work; /* writer waits: work queued, flush requested, stop */
    pthread_cond_t done; /* flushers wait: a batch finished */
    trace_t **ring;
    size_t cap, head, count;
    uint64_t accepted;   /* sequence numbers given out */
    uint64_t finished;   /* sequence numbers written or dropped by the writer */
    int flush_waiters;
    int stopping;

    _Atomic uint64_t dropped;
    /* error reporting, writer thread only */
    time_t last_report;
    uint64_t unreported;
};

static void trace_writer_report(trace_writer_t *w, const char *what)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    w->unreported++;
    if (w->last_report != 0 && now.tv_sec - w->last_report < TRACE_ERROR_REPORT_INTERVAL_S)
        return;
    fprintf(stderr, "figment: traces: %s: %s: %s (%llu write errors since last report, %llu traces dropped in all)\n",
            w->path, what, sqlite3_errmsg(w->db), (unsigned long long)w->unreported,
            (unsigned long long)atomic_load(&w->dropped));
    w->last_report = now.tv_sec > 0 ? now.tv_sec : 1;
    w->unreported = 0;
}

static int trace_bind_json(sqlite3_stmt *s, int idx, json_t *v)
{
    if (v == NULL)
        return sqlite3_bind_null(s, idx);
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        return sqlite3_bind_null(s, idx);
    return sqlite3_bind_text(s, idx, text, -1, free);
}

static int trace_bind(trace_writer_t *w, const trace_t *t)
{
    sqlite3_stmt *s = w->insert;
    int rc = SQLITE_OK;
    for (size_t i = 0; i < TRACE_NCOLS && rc == SQLITE_OK; i++) {
        const trace_col_t *c = &trace_cols[i];
        const void *field = (const char *)t + c->offset;
        int idx = (int)i + 1;
        switch (c->kind) {
        case COL_FIXED: {
            const char *v = field;
            rc = v[0] ? sqlite3_bind_text(s, idx, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, idx);
            break;
        }
        case COL_STR: {
            const char *v = *(char *const *)field;
            rc = v ? sqlite3_bind_text(s, idx, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, idx);
            break;
        }
        case COL_INT:
        case COL_BOOL:
            rc = sqlite3_bind_int(s, idx, *(const int *)field);
            break;
        case COL_I64:
            rc = sqlite3_bind_int64(s, idx, *(const int64_t *)field);
            break;
        case COL_REAL:
            rc = sqlite3_bind_double(s, idx, *(const double *)field); /* NaN is stored as NULL */
            break;
        case COL_JSON: {
            json_t *v = *(json_t *const *)field;
            if (w->redact && v != NULL && strcmp(c->name, "tool_calls") == 0) {
                json_t *r = trace_redact_tool_calls(v);
                rc = trace_bind_json(s, idx, r);
                json_decref(r);
            } else if (w->redact && v != NULL && strcmp(c->name, "messages") == 0) {
                json_t *r = trace_redact_messages(v);
                rc = trace_bind_json(s, idx, r);
                json_decref(r);
            } else {
                rc = trace_bind_json(s, idx, v);
            }
            break;
        }
        }
    }
    return rc;
}

static void trace_writer_write_batch(trace_writer_t *w, trace_t **batch, size_t n)
{
    uint64_t written = 0;
    if (sqlite3_step(w->begin) != SQLITE_DONE) {
        sqlite3_reset(w->begin);
        atomic_fetch_add(&w->dropped, n);
        trace_writer_report(w, "cannot begin a transaction");
        goto out;
    }
    sqlite3_reset(w->begin);
    for (size_t i = 0; i < n; i++) {
        int rc = trace_bind(w, batch[i]);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(w->insert);
        if (rc == SQLITE_DONE) {
            written++;
        } else {
            atomic_fetch_add(&w->dropped, 1);
            trace_writer_report(w, "cannot insert a trace");
        }
        sqlite3_reset(w->insert);
        sqlite3_clear_bindings(w->insert);
    }
    if (sqlite3_step(w->commit) != SQLITE_DONE) {
        sqlite3_reset(w->commit);
        atomic_fetch_add(&w->dropped, written);
        trace_writer_report(w, "cannot commit");
        sqlite3_step(w->rollback);
        sqlite3_reset(w->rollback);
    } else {
        sqlite3_reset(w->commit);
    }
out:
    for (size_t i = 0; i < n; i++)
        trace_free(batch[i]);
}

static void *trace_writer_main(void *arg)
{
    fig_thread_setup("figment-traces", FIG_NICE_BACKGROUND);
    trace_writer_t *w = arg;
    trace_t *batch[TRACE_BATCH_MAX];
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->count == 0 && !w->stopping)
            pthread_cond_wait(&w->work, &w->lock);
        if (w->count == 0 && w->stopping)
            break;
        /* Let the batch fill up unless someone is waiting for it. */
        if (!w->stopping && w->flush_waiters == 0 && w->count < TRACE_BATCH_MAX) {
            struct timespec until;
            fig_deadline_after_ms(&until, TRACE_BATCH_MS);
            while (!w->stopping && w->flush_waiters == 0 && w->count < TRACE_BATCH_MAX)
                if (pthread_cond_timedwait(&w->work, &w->lock, &until) == ETIMEDOUT)
                    break;
        }
        size_t n = w->count < TRACE_BATCH_MAX ? w->count : TRACE_BATCH_MAX;
        for (size_t i = 0; i < n; i++) {
            batch[i] = w->ring[w->head];
            w->ring[w->head] = NULL;
            w->head = (w->head + 1) % w->cap;
        }
        w->count -= n;
        pthread_mutex_unlock(&w->lock);

        trace_writer_write_batch(w, batch, n);

        pthread_mutex_lock(&w->lock);
        w->finished += n;
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void trace_writer_free(trace_writer_t *w)
{
    sqlite3_finalize(w->insert);
    sqlite3_finalize(w->begin);
    sqlite3_finalize(w->commit);
    sqlite3_finalize(w->rollback);
    if (w->db != NULL)
        sqlite3_close(w->db);
    free(w->ring);
    free(w->path);
    free(w);
}

trace_writer_t *trace_writer_start(const char *db_path, int redact_data, fig_err_t *err)
{
    if (db_path == NULL || db_path[0] == '\0') {
        fig_err_set(err, FIG_E_CONFIG, "traces: no database path");
        return NULL;
    }
    if (fs_mkdir_parent(db_path, 0700, err) != 0)
        return NULL;
    trace_writer_t *w = fig_calloc(1, sizeof(*w));
    w->path = fig_strdup(db_path);
    w->redact = redact_data != 0;
    w->cap = TRACE_QUEUE_MAX;
    w->ring = fig_calloc(w->cap, sizeof(trace_t *));
    atomic_init(&w->dropped, 0);
    w->db = trace_store_open(db_path, 1, err);
    if (w->db == NULL)
        goto fail;

    fig_buf_t sql = FIG_BUF_INIT;
    fig_buf_append_str(&sql, "INSERT INTO traces(");
    for (size_t i = 0; i < TRACE_NCOLS; i++)
        fig_buf_appendf(&sql, "%s%s", i ? ", " : "", trace_cols[i].name);
    fig_buf_append_str(&sql, ") VALUES(");
    for (size_t i = 0; i < TRACE_NCOLS; i++)
        fig_buf_appendf(&sql, "%s?%zu", i ? ", " : "", i + 1);
    fig_buf_append_str(&sql, ")");
    int rc = sqlite3_prepare_v2(w->db, sql.data, -1, &w->insert, NULL);
    fig_buf_free(&sql);
    if (rc != SQLITE_OK || sqlite3_prepare_v2(w->db, "BEGIN IMMEDIATE", -1, &w->begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(w->db, "COMMIT", -1, &w->commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(w->db, "ROLLBACK", -1, &w->rollback, NULL) != SQLITE_OK) {
        trace_db_fail(w->db, db_path, "cannot prepare statements", err);
        goto fail;
    }

    pthread_mutex_init(&w->lock, NULL);
    fig_cond_init_monotonic(&w->work);
    pthread_cond_init(&w->done, NULL);
    if (pthread_create(&w->thread, NULL, trace_writer_main, w) != 0) {
        fig_err_set(err, FIG_E_IO, "traces: cannot start the writer thread");
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->work);
        pthread_cond_destroy(&w->done);
        goto fail;
    }
    return w;

fail:
    trace_writer_free(w);
    return NULL;
}

void trace_writer_stop(trace_writer_t *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->done);
    trace_writer_free(w);
}

int trace_submit(trace_writer_t *w, trace_t *t)
{
    if (t == NULL)
        return -1;
    if (w == NULL) {
        trace_free(t);
        return -1;
    }
    /* A trace without a proper id could never be looked up (or exported): refuse it. */
    if (!trace_id_valid(t->trace_id) || memchr(t->span_id, '\0', sizeof(t->span_id)) == NULL ||
        memchr(t->session_id, '\0', sizeof(t->session_id)) == NULL) {
        trace_free(t);
        atomic_fetch_add(&w->dropped, 1);
        return -1;
    }
    pthread_mutex_lock(&w->lock);
    if (w->stopping || w->count >= w->cap) {
        pthread_mutex_unlock(&w->lock);
        trace_free(t);
        atomic_fetch_add(&w->dropped, 1);
        return -1;
    }
    w->ring[(w->head + w->count) % w->cap] = t;
    w->count++;
    w->accepted++;
    if (w->count == 1 || w->count >= TRACE_BATCH_MAX)
        pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

uint64_t trace_writer_dropped(trace_writer_t *w)
{
    return w ? atomic_load(&w->dropped) : 0;
}

void trace_writer_flush(trace_writer_t *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    uint64_t target = w->accepted;
    w->flush_waiters++;
    pthread_cond_signal(&w->work);
    while (w->finished < target)
        pthread_cond_wait(&w->done, &w->lock);
    w->flush_waiters--;
    pthread_mutex_unlock(&w->lock);
}

/* ---- reader ---- */

enum {
    F_APP = 1 << 0,
    F_MODEL = 1 << 1,
    F_OUTCOME = 1 << 2,
    F_TOTAL = 1 << 3,
    F_COST = 1 << 4,
    F_SINCE = 1 << 5,
    F_ALL = (1 << 6) - 1,
};

struct trace_reader {
    char *path;
    sqlite3 *db;
    sqlite3_stmt *list[F_ALL + 1]; /* by filter bitmask, prepared on first use */
    sqlite3_stmt *get, *get_feedback, *exists, *feedback_insert, *feedback_list, *stats;
};

#define TRACE_LIST_COLS                                                                                               \
    "trace_id, started_unix_ms, app, method, path, model, status, outcome, total_ms, ttft_ms, cost_usd, "             \
    "prompt_tokens, completion_tokens, cache_hit, stale, "                                                            \
    "(SELECT f.rating FROM feedback f WHERE f.trace_id = t.trace_id ORDER BY f.id DESC LIMIT 1) AS feedback"

trace_reader_t *trace_reader_open(const char *db_path, fig_err_t *err)
{
    if (db_path == NULL || db_path[0] == '\0') {
        fig_err_set(err, FIG_E_CONFIG, "traces: no database path");
        return NULL;
    }
    trace_reader_t *r = fig_calloc(1, sizeof(*r));
    r->path = fig_strdup(db_path);
    r->db = trace_store_open(db_path, 0, err);
    if (r->db == NULL)
        goto fail;

    fig_buf_t all = FIG_BUF_INIT;
    fig_buf_append_str(&all, "SELECT ");
    for (size_t i = 0; i < TRACE_NCOLS; i++)
        fig_buf_appendf(&all, "%s%s", i ? ", " : "", trace_cols[i].name);
    fig_buf_append_str(&all, " FROM traces WHERE trace_id = ?1");
    struct {
        sqlite3_stmt **stmt;
        const char *sql;
    } stmts[] = {
        {&r->get, all.data},
        {&r->get_feedback, "SELECT rating, comment, created_unix_ms FROM feedback WHERE trace_id = ?1 ORDER BY id"},
        {&r->exists, "SELECT 1 FROM traces WHERE trace_id = ?1"},
        {&r->feedback_insert, "INSERT INTO feedback(trace_id, rating, comment, created_unix_ms) VALUES(?1, ?2, ?3, ?4)"},
        {&r->feedback_list, "SELECT f.trace_id AS trace_id, f.rating AS rating, f.comment AS comment, "
                            "f.created_unix_ms AS created_unix_ms, t.app AS app, t.path AS path "
                            "FROM feedback f LEFT JOIN traces t ON t.trace_id = f.trace_id "
                            "ORDER BY f.id DESC LIMIT ?1"},
        {&r->stats, "SELECT ifnull(app, ''), ifnull(model, ''), (started_unix_ms - ?1) / ?2 AS b, total_ms, outcome, "
                    "cost_usd, cache_hit, folded_hits FROM (SELECT app, model, started_unix_ms, total_ms, outcome, "
                    "cost_usd, cache_hit, folded_hits FROM traces WHERE started_unix_ms >= ?1 "
                    "ORDER BY started_unix_ms DESC LIMIT ?3) ORDER BY b, 1, 2, total_ms"},
    };
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        if (sqlite3_prepare_v2(r->db, stmts[i].sql, -1, stmts[i].stmt, NULL) != SQLITE_OK) {
            trace_db_fail(r->db, db_path, "cannot prepare statements", err);
            fig_buf_free(&all);
            goto fail;
        }
    }
    fig_buf_free(&all);
    return r;

fail:
    trace_reader_close(r);
    return NULL;
}

void trace_reader_close(trace_reader_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i <= F_ALL; i++)
        sqlite3_finalize(r->list[i]);
    sqlite3_finalize(r->get);
    sqlite3_finalize(r->get_feedback);
    sqlite3_finalize(r->exists);
    sqlite3_finalize(r->feedback_insert);
    sqlite3_finalize(r->feedback_list);
    sqlite3_finalize(r->stats);
    if (r->db != NULL)
        sqlite3_close(r->db);
    free(r->path);
    free(r);
}

/* Column i of the current row as JSON, converted by what the column holds. */
static json_t *trace_column_json(sqlite3_stmt *s, int i, const trace_col_t *c)
{
    int type = sqlite3_column_type(s, i);
    if (type == SQLITE_NULL)
        return json_null();
    trace_col_kind_t kind = c ? c->kind : COL_STR;
    switch (kind) {
    case COL_INT:
    case COL_I64:
        return json_integer(sqlite3_column_int64(s, i));
    case COL_BOOL:
        return json_boolean(sqlite3_column_int64(s, i) != 0);
    case COL_REAL:
        return json_real(sqlite3_column_double(s, i));
    case COL_JSON: {
        const char *text = (const char *)sqlite3_column_text(s, i);
        json_t *v = text ? json_loadb(text, (size_t)sqlite3_column_bytes(s, i), JSON_DECODE_ANY, NULL) : NULL;
        return v ? v : json_null(); /* a corrupt value reads as null rather than failing the trace */
    }
    case COL_FIXED:
    case COL_STR:
    default: {
        const char *text = (const char *)sqlite3_column_text(s, i);
        return text ? trace_json_text(text, (size_t)sqlite3_column_bytes(s, i)) : json_null();
    }
    }
}

static json_t *trace_row_object(sqlite3_stmt *s)
{
    json_t *o = json_object();
    int n = sqlite3_column_count(s);
    for (int i = 0; i < n; i++) {
        const char *name = sqlite3_column_name(s, i);
        json_t *v;
        if (strcmp(name, "feedback") == 0)
            v = sqlite3_column_type(s, i) == SQLITE_NULL ? json_null() : json_integer(sqlite3_column_int64(s, i));
        else
            v = trace_column_json(s, i, trace_col_find(name));
        json_object_set_new(o, name, v);
    }
    return o;
}

static sqlite3_stmt *trace_list_stmt(trace_reader_t *r, unsigned mask, fig_err_t *err)
{
    if (r->list[mask] != NULL)
        return r->list[mask];
    fig_buf_t sql = FIG_BUF_INIT;
    fig_buf_append_str(&sql, "SELECT " TRACE_LIST_COLS " FROM traces t WHERE 1");
    if (mask & F_APP)
        fig_buf_append_str(&sql, " AND app = :app");
    if (mask & F_MODEL)
        fig_buf_append_str(&sql, " AND model = :model");
    if (mask & F_OUTCOME)
        fig_buf_append_str(&sql, " AND outcome = :outcome");
    if (mask & F_TOTAL)
        fig_buf_append_str(&sql, " AND total_ms >= :total");
    if (mask & F_COST)
        fig_buf_append_str(&sql, " AND cost_usd >= :cost");
    if (mask & F_SINCE)
        fig_buf_append_str(&sql, " AND started_unix_ms >= :since");
    fig_buf_append_str(&sql, " ORDER BY started_unix_ms DESC, t.rowid DESC LIMIT :limit OFFSET :offset");
    if (sqlite3_prepare_v2(r->db, sql.data, -1, &r->list[mask], NULL) != SQLITE_OK) {
        trace_db_fail(r->db, r->path, "cannot prepare the list query", err);
        r->list[mask] = NULL;
    }
    fig_buf_free(&sql);
    return r->list[mask];
}

json_t *trace_list(trace_reader_t *r, const trace_filter_t *f, fig_err_t *err)
{
    trace_filter_t none = {0};
    if (f == NULL)
        f = &none;
    if (f->limit < 0 || f->offset < 0 || f->since_unix_ms < 0 || !(f->min_total_ms >= 0) || !(f->min_cost_usd >= 0)) {
        fig_err_set(err, FIG_E_INVALID, "traces: bad filter (negative limit, offset, time or threshold)");
        return NULL;
    }
    int limit = f->limit == 0 ? TRACE_LIST_DEFAULT : f->limit > TRACE_LIST_MAX ? TRACE_LIST_MAX : f->limit;
    unsigned mask = (f->app ? F_APP : 0) | (f->model ? F_MODEL : 0) | (f->outcome ? F_OUTCOME : 0) |
                    (f->min_total_ms > 0 ? F_TOTAL : 0) | (f->min_cost_usd > 0 ? F_COST : 0) |
                    (f->since_unix_ms > 0 ? F_SINCE : 0);
    sqlite3_stmt *s = trace_list_stmt(r, mask, err);
    if (s == NULL)
        return NULL;
    if (mask & F_APP)
        sqlite3_bind_text(s, sqlite3_bind_parameter_index(s, ":app"), f->app, -1, SQLITE_STATIC);
    if (mask & F_MODEL)
        sqlite3_bind_text(s, sqlite3_bind_parameter_index(s, ":model"), f->model, -1, SQLITE_STATIC);
    if (mask & F_OUTCOME)
        sqlite3_bind_text(s, sqlite3_bind_parameter_index(s, ":outcome"), f->outcome, -1, SQLITE_STATIC);
    if (mask & F_TOTAL)
        sqlite3_bind_double(s, sqlite3_bind_parameter_index(s, ":total"), f->min_total_ms);
    if (mask & F_COST)
        sqlite3_bind_double(s, sqlite3_bind_parameter_index(s, ":cost"), f->min_cost_usd);
    if (mask & F_SINCE)
        sqlite3_bind_int64(s, sqlite3_bind_parameter_index(s, ":since"), f->since_unix_ms);
    sqlite3_bind_int(s, sqlite3_bind_parameter_index(s, ":limit"), limit);
    sqlite3_bind_int(s, sqlite3_bind_parameter_index(s, ":offset"), f->offset);

    json_t *out = json_array();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        json_array_append_new(out, trace_row_object(s));
    if (rc != SQLITE_DONE) {
        trace_db_fail(r->db, r->path, "listing traces", err);
        json_decref(out);
        out = NULL;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return out;
}

static json_t *trace_feedback_of(trace_reader_t *r, const char *trace_id, fig_err_t *err)
{
    sqlite3_stmt *s = r->get_feedback;
    sqlite3_bind_text(s, 1, trace_id, -1, SQLITE_STATIC);
    json_t *out = json_array();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        json_array_append_new(out, trace_row_object(s));
    if (rc != SQLITE_DONE) {
        trace_db_fail(r->db, r->path, "reading feedback", err);
        json_decref(out);
        out = NULL;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return out;
}

json_t *trace_get(trace_reader_t *r, const char *trace_id, fig_err_t *err)
{
    if (trace_id == NULL || !trace_id_valid(trace_id)) {
        fig_err_set(err, FIG_E_INVALID, "no such trace");
        return NULL;
    }
    sqlite3_stmt *s = r->get;
    sqlite3_bind_text(s, 1, trace_id, -1, SQLITE_STATIC);
    json_t *out = NULL;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        out = trace_row_object(s);
    else if (rc == SQLITE_DONE)
        fig_err_set(err, FIG_E_INVALID, "no such trace");
    else
        trace_db_fail(r->db, r->path, "reading a trace", err);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (out == NULL)
        return NULL;
    json_t *fb = trace_feedback_of(r, trace_id, err);
    if (fb == NULL) {
        json_decref(out);
        return NULL;
    }
    json_object_set_new(out, "feedback", fb);
    return out;
}

static int trace_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least p% of the values at or below it. */
static json_t *trace_percentile(const double *v, size_t n, int p)
{
    if (n == 0)
        return json_null();
    size_t rank = ((size_t)p * n + 99) / 100;
    if (rank < 1)
        rank = 1;
    return json_real(v[rank - 1]);
}

typedef struct {
    char *app, *model;
    int64_t bucket;
    int64_t count, errors, cache_hits;
    double cost;
    double *totals;
    size_t ntotals, cap;
} trace_group_t;

/* Outcomes that are not errors: a page served (generated, stale, from the cache), a
 * confirmation asked for, a page generated ahead. */
static int trace_outcome_ok(const char *o)
{
    static const char *const ok[] = {"ok", "stale", "cache_hit", "confirm", "prefetch", "prefetch_skipped", NULL};
    for (size_t i = 0; o != NULL && ok[i] != NULL; i++)
        if (strcmp(o, ok[i]) == 0)
            return 1;
    return 0;
}

static void trace_group_emit(trace_group_t *g, int64_t since, int64_t bucket_ms, json_t *out)
{
    if (g->count == 0)
        return;
    /* SQLite sorts the group's rows by total_ms already; sorting again is cheap and
     * keeps the percentiles right whatever the query plan. */
    qsort(g->totals, g->ntotals, sizeof(double), trace_cmp_double);
    json_t *o = json_object();
    json_object_set_new(o, "app", trace_json_text(g->app, strlen(g->app)));
    json_object_set_new(o, "model", trace_json_text(g->model, strlen(g->model)));
    json_object_set_new(o, "bucket_unix_ms", json_integer(since + g->bucket * bucket_ms));
    json_object_set_new(o, "count", json_integer(g->count));
    json_object_set_new(o, "errors", json_integer(g->errors));
    json_object_set_new(o, "cost_usd", json_real(g->cost));
    json_object_set_new(o, "p50_ms", trace_percentile(g->totals, g->ntotals, 50));
    json_object_set_new(o, "p95_ms", trace_percentile(g->totals, g->ntotals, 95));
    json_object_set_new(o, "p99_ms", trace_percentile(g->totals, g->ntotals, 99));
    json_object_set_new(o, "cache_hits", json_integer(g->cache_hits));
    json_array_append_new(out, o);
}

static void trace_group_reset(trace_group_t *g, const char *app, const char *model, int64_t bucket)
{
    free(g->app);
    free(g->model);
    g->app = fig_strdup(app);
    g->model = fig_strdup(model);
    g->bucket = bucket;
    g->count = g->errors = g->cache_hits = 0;
    g->cost = 0;
    g->ntotals = 0;
}

json_t *trace_stats(trace_reader_t *r, int64_t since_unix_ms, int64_t bucket_ms, fig_err_t *err)
{
    if (since_unix_ms < 0 || bucket_ms <= 0 || bucket_ms > TRACE_BUCKET_MS_MAX) {
        fig_err_set(err, FIG_E_INVALID, "traces: bad stats range (since >= 0, 0 < bucket_ms <= 100 years)");
        return NULL;
    }
    sqlite3_stmt *s = r->stats;
    sqlite3_bind_int64(s, 1, since_unix_ms);
    sqlite3_bind_int64(s, 2, bucket_ms);
    sqlite3_bind_int(s, 3, TRACE_STATS_MAX_ROWS);
    json_t *out = json_array();
    trace_group_t g = {0};
    int have = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *app = (const char *)sqlite3_column_text(s, 0);
        const char *model = (const char *)sqlite3_column_text(s, 1);
        int64_t bucket = sqlite3_column_int64(s, 2);
        app = app ? app : "";
        model = model ? model : "";
        if (!have || bucket != g.bucket || strcmp(app, g.app) != 0 || strcmp(model, g.model) != 0) {
            if (have)
                trace_group_emit(&g, since_unix_ms, bucket_ms, out);
            trace_group_reset(&g, app, model, bucket);
            have = 1;
        }
        int64_t folded = sqlite3_column_int64(s, 7);
        if (folded < 0)
            folded = 0;
        g.count += 1 + folded;
        if (sqlite3_column_type(s, 3) != SQLITE_NULL) {
            if (g.ntotals == g.cap) {
                g.cap = g.cap ? g.cap * 2 : 64;
                g.totals = fig_realloc(g.totals, g.cap * sizeof(double));
            }
            g.totals[g.ntotals++] = sqlite3_column_double(s, 3);
        }
        const char *outcome = (const char *)sqlite3_column_text(s, 4);
        if (!trace_outcome_ok(outcome))
            g.errors++;
        g.cost += sqlite3_column_double(s, 5);
        if (sqlite3_column_int64(s, 6) != 0)
            g.cache_hits += 1 + folded;
    }
    if (rc != SQLITE_DONE) {
        trace_db_fail(r->db, r->path, "computing stats", err);
        json_decref(out);
        out = NULL;
    } else if (have) {
        trace_group_emit(&g, since_unix_ms, bucket_ms, out);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    free(g.app);
    free(g.model);
    free(g.totals);
    return out;
}

int trace_feedback_add(trace_reader_t *r, const char *trace_id, int rating, const char *comment, fig_err_t *err)
{
    if (rating != -1 && rating != 1) {
        fig_err_set(err, FIG_E_INVALID, "rating must be -1 or 1");
        return -1;
    }
    if (trace_id == NULL || !trace_id_valid(trace_id)) {
        fig_err_set(err, FIG_E_INVALID, "no such trace");
        return -1;
    }
    size_t clen = 0;
    if (comment != NULL) {
        clen = strlen(comment);
        if (clen > TRACE_COMMENT_MAX) {
            clen = TRACE_COMMENT_MAX;
            /* Back off to the start of a character: never store half of one. */
            while (clen > 0 && ((unsigned char)comment[clen] & 0xc0) == 0x80)
                clen--;
        }
        if (!trace_utf8_valid(comment, clen)) {
            fig_err_set(err, FIG_E_INVALID, "comment is not valid UTF-8");
            return -1;
        }
    }

    sqlite3_stmt *s = r->exists;
    sqlite3_bind_text(s, 1, trace_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_DONE) {
        fig_err_set(err, FIG_E_INVALID, "no such trace");
        return -1;
    }
    if (rc != SQLITE_ROW)
        return trace_db_fail(r->db, r->path, "looking up a trace", err);

    s = r->feedback_insert;
    sqlite3_bind_text(s, 1, trace_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, rating);
    if (comment != NULL)
        sqlite3_bind_text(s, 3, comment, (int)clen, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 3);
    sqlite3_bind_int64(s, 4, trace_now_unix_ms());
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE)
        return trace_db_fail(r->db, r->path, "storing feedback", err);
    return 0;
}

json_t *trace_feedback_list(trace_reader_t *r, int limit, fig_err_t *err)
{
    if (limit < 0) {
        fig_err_set(err, FIG_E_INVALID, "traces: negative limit");
        return NULL;
    }
    limit = limit == 0 ? TRACE_LIST_DEFAULT : limit > TRACE_LIST_MAX ? TRACE_LIST_MAX : limit;
    sqlite3_stmt *s = r->feedback_list;
    sqlite3_bind_int(s, 1, limit);
    json_t *out = json_array();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        json_array_append_new(out, trace_row_object(s));
    if (rc != SQLITE_DONE) {
        trace_db_fail(r->db, r->path, "listing feedback", err);
        json_decref(out);
        out = NULL;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return out;
}
