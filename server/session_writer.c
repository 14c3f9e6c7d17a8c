/*
 * session_writer.c — the journal and the thread that commits session saves (see
 * session_writer.h for the contract: durability, order, reads).
 *
 * Design:
 * - One queue (a linked list under one mutex) and one thread. Submitters encode the
 *   journal line before taking the mutex; under it they only append (one write() on an
 *   O_APPEND descriptor) and link the record, so the journal's order is the queue's.
 * - The thread takes up to BATCH_MAX records, waits up to BATCH_MS for a batch to fill
 *   (nobody waits for these commits, and one commit for many saves is much cheaper),
 *   and applies them in one transaction together with the journal mark (generation,
 *   end offset of the last record). Records stay at the head of the queue until their
 *   commit succeeded: a failing store (disk full, locked) is retried with a backoff,
 *   and the journal keeps them meanwhile.
 * - A record the store refuses as malformed (it cannot happen with records figment
 *   made, but a journal is input) is reported and skipped; the others still commit.
 * - Generations: files are sessions-<generation>.log. A new file is started when the
 *   current one passes rotate_bytes, and at every start. A file older than the newest
 *   committed record's is fully applied and is deleted.
 * - Replay reads each file left from the mark on, in generation order, applies its
 *   records in batches with the mark, then deletes the files. The last line of a file
 *   without its newline was cut by a crash in the middle of a write(): it was never
 *   acknowledged to anyone, so it is skipped with a warning.
 */
#include "session_writer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "fsutil.h"
#include "thread.h"

#define BATCH_MAX 256
#define BATCH_MS 20
#define DEFAULT_ROTATE_BYTES (8u << 20)
#define DEFAULT_MAX_PENDING 100000
#define JOURNAL_MAX_FILE (1u << 30) /* a journal file larger than this is not replayed whole */

typedef struct pending {
    session_record_t rec;
    int64_t generation;
    int64_t end; /* offset just past this record's line */
    struct pending *next;
} pending_t;

struct session_writer {
    char *dir;
    session_cache_t *cache;
    size_t rotate_bytes, max_pending;
    int commit_delay_ms;
    session_store_t *store; /* the thread's own connection */

    pthread_mutex_t lock;
    pthread_cond_t work, done;
    pthread_t thread;
    int stopping, flush_waiters;
    int lock_fd;             /* journal_dir/lock, flock()ed: one figment per var dir */
    int fd;                  /* the current journal file */
    int64_t generation;      /* of fd */
    int64_t size;            /* of fd */
    int64_t oldest_on_disk;  /* the oldest generation whose file may still exist */
    pending_t *head, *tail;
    size_t pending;
    uint64_t submitted, finished; /* finished: committed or skipped */
    session_writer_stats_t stats;
    time_t last_report;
};

/* ---- the journal line ---------------------------------------------------- */

/* "key":"value" (or null), written directly: building jansson values to dump them cost
 * more than the rest of the interaction's bookkeeping. Bytes that are not UTF-8 become
 * U+FFFD (a path is client bytes). */
static void put_string(fig_buf_t *out, const char *key, const char *v)
{
    fig_buf_appendf(out, ",\"%s\":", key);
    if (v == NULL)
        fig_buf_append(out, "null", 4);
    else
        fig_buf_append_json_string(out, v, strlen(v));
}

int session_record_encode(const session_record_t *r, fig_buf_t *out, fig_err_t *err)
{
    if (strlen(r->session_id) != SESSION_ID_LEN || r->app == NULL || r->method == NULL || r->path == NULL ||
        r->state == NULL) {
        fig_err_set(err, FIG_E_INVALID, "session journal: the record cannot be encoded");
        return -1;
    }
    fig_buf_append_str(out, "{\"v\":1");
    put_string(out, "sid", r->session_id);
    put_string(out, "app", r->app);
    put_string(out, "method", r->method);
    put_string(out, "path", r->path);
    put_string(out, "title", r->title);
    put_string(out, "state", r->state);
    fig_buf_appendf(out, ",\"at\":%lld", (long long)r->created_at);
    /* not the page: it is only the fallback shown when every model fails, and escaping
     * it was half the cost of journaling (after a crash, the pages of the last saves
     * that were not committed are missing; the stale fallback shows an older one) */
    if (r->has_usage) {
        const session_usage_t *u = &r->usage;
        fig_buf_append_str(out, ",\"usage\":{\"v\":1");
        put_string(out, "model", r->usage_model);
        put_string(out, "outcome", r->usage_outcome);
        put_string(out, "route", r->usage_route);
        fig_buf_appendf(out,
                        ",\"prompt_tokens\":%lld,\"cached_tokens\":%lld,\"cache_write_tokens\":%lld,"
                        "\"completion_tokens\":%lld,\"cost_usd\":%.17g,\"at\":%lld}",
                        (long long)u->prompt_tokens, (long long)u->cached_tokens, (long long)u->cache_write_tokens,
                        (long long)u->completion_tokens, isfinite(u->cost_usd) ? u->cost_usd : 0.0,
                        (long long)u->created_at);
    }
    fig_buf_append(out, "}\n", 2);
    return 0;
}

static char *dup_or_null(const json_t *v)
{
    return json_is_string(v) ? fig_strndup(json_string_value(v), json_string_length(v)) : NULL;
}

int session_record_decode(const char *line, size_t len, session_record_t *r, fig_err_t *err)
{
    memset(r, 0, sizeof(*r));
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (o == NULL) {
        fig_err_set(err, FIG_E_INVALID, "session journal: not JSON: %s", je.text);
        return -1;
    }
    const json_t *sid = json_object_get(o, "sid"), *usage = json_object_get(o, "usage");
    json_int_t at = 0;
    if (!json_is_object(o) || json_integer_value(json_object_get(o, "v")) != 1 || !json_is_string(sid) ||
        json_string_length(sid) != SESSION_ID_LEN || !json_is_string(json_object_get(o, "app")) ||
        !json_is_string(json_object_get(o, "method")) || !json_is_string(json_object_get(o, "path")) ||
        !json_is_string(json_object_get(o, "state")) || !json_is_integer(json_object_get(o, "at")) ||
        (usage != NULL && !json_is_null(usage) && !json_is_object(usage))) {
        json_decref(o);
        fig_err_set(err, FIG_E_INVALID, "session journal: a record lacks a field or has a wrong type");
        return -1;
    }
    at = json_integer_value(json_object_get(o, "at"));
    memcpy(r->session_id, json_string_value(sid), SESSION_ID_LEN + 1);
    r->app = dup_or_null(json_object_get(o, "app"));
    r->method = dup_or_null(json_object_get(o, "method"));
    r->path = dup_or_null(json_object_get(o, "path"));
    r->title = dup_or_null(json_object_get(o, "title"));
    r->state = dup_or_null(json_object_get(o, "state"));
    r->created_at = (int64_t)at;
    if (json_is_object(usage)) {
        session_usage_t *u = &r->usage;
        r->has_usage = 1;
        r->usage_model = dup_or_null(json_object_get(usage, "model"));
        r->usage_outcome = dup_or_null(json_object_get(usage, "outcome"));
        r->usage_route = dup_or_null(json_object_get(usage, "route"));
        if (r->usage_model == NULL)
            r->usage_model = fig_strdup("");
        if (r->usage_outcome == NULL)
            r->usage_outcome = fig_strdup("");
        u->prompt_tokens = json_integer_value(json_object_get(usage, "prompt_tokens"));
        u->cached_tokens = json_integer_value(json_object_get(usage, "cached_tokens"));
        u->cache_write_tokens = json_integer_value(json_object_get(usage, "cache_write_tokens"));
        u->completion_tokens = json_integer_value(json_object_get(usage, "completion_tokens"));
        u->cost_usd = json_number_value(json_object_get(usage, "cost_usd"));
        u->created_at = json_integer_value(json_object_get(usage, "at"));
    }
    json_decref(o);
    /* the state must be an object: the store would keep it, and loads expect one */
    json_t *state = json_loads(r->state, 0, NULL);
    int ok = json_is_object(state);
    json_decref(state);
    if (!ok) {
        session_record_free(r);
        fig_err_set(err, FIG_E_INVALID, "session journal: a record's state is not a JSON object");
        return -1;
    }
    return 0;
}

/* ---- files ----------------------------------------------------------------- */

static void journal_path(const session_writer_t *w, int64_t generation, fig_buf_t *out)
{
    fig_buf_reset(out);
    fig_buf_appendf(out, "%s/sessions-%" PRId64 ".log", w->dir, generation);
}

static int journal_open(session_writer_t *w, int64_t generation, fig_err_t *err)
{
    fig_buf_t p = FIG_BUF_INIT;
    journal_path(w, generation, &p);
    int fd = open(p.data, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        fig_err_set(err, FIG_E_IO, "%s: cannot create the session journal: %s", p.data, strerror(errno));
    fig_buf_free(&p);
    if (fd < 0)
        return -1;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = fd;
    w->generation = generation;
    w->size = 0;
    return 0;
}

static void journal_unlink(const session_writer_t *w, int64_t generation)
{
    fig_buf_t p = FIG_BUF_INIT;
    journal_path(w, generation, &p);
    if (unlink(p.data) != 0 && errno != ENOENT)
        fprintf(stderr, "figment: cannot remove %s: %s\n", p.data, strerror(errno));
    fig_buf_free(&p);
}

/* Generations of the journal files in dir, sorted ascending. Caller frees. */
static int64_t *journal_list(const char *dir, size_t *n)
{
    *n = 0;
    int64_t *gens = NULL;
    size_t cap = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return NULL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        long long g;
        char tail[8];
        if (sscanf(de->d_name, "sessions-%lld.%7s", &g, tail) != 2 || strcmp(tail, "log") != 0 || g < 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            gens = fig_realloc(gens, cap * sizeof(*gens));
        }
        gens[(*n)++] = g;
    }
    closedir(d);
    for (size_t i = 1; i < *n; i++) /* few files: insertion sort */
        for (size_t j = i; j > 0 && gens[j - 1] > gens[j]; j--) {
            int64_t t = gens[j];
            gens[j] = gens[j - 1];
            gens[j - 1] = t;
        }
    return gens;
}

/* ---- committing ------------------------------------------------------------ */

static void writer_report(session_writer_t *w, const char *what, const fig_err_t *err)
{
    time_t now = time(NULL);
    if (now == w->last_report)
        return; /* at most one line a second */
    w->last_report = now;
    fprintf(stderr, "figment: session writer: %s: %s\n", what, err->msg);
}

/* Applies recs[0..n) and the mark in one transaction. -1 when the store failed (nothing
 * committed); a malformed record is skipped and counted in *skipped. */
static int writer_commit(session_writer_t *w, session_record_t **recs, size_t n, int64_t generation, int64_t end,
                         size_t *skipped)
{
    fig_err_t err;
    fig_err_clear(&err);
    *skipped = 0;
    if (session_begin(w->store, &err) != 0) {
        writer_report(w, "cannot begin a transaction", &err);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        fig_err_clear(&err);
        if (session_record_apply(w->store, recs[i], &err) == 0)
            continue;
        if (err.code != FIG_E_INVALID) {
            writer_report(w, "cannot save a session", &err);
            session_rollback(w->store);
            return -1;
        }
        writer_report(w, "skipping a malformed record", &err);
        (*skipped)++;
    }
    fig_err_clear(&err);
    if (session_journal_mark_set(w->store, generation, end, &err) != 0 || session_commit(w->store, &err) != 0) {
        writer_report(w, "cannot commit", &err);
        session_rollback(w->store);
        return -1;
    }
    return 0;
}

static void *writer_main(void *arg)
{
    fig_thread_setup("figment-session", FIG_NICE_WRITER);
    session_writer_t *w = arg;
    pending_t *batch[BATCH_MAX];
    session_record_t *recs[BATCH_MAX];
    long backoff_ms = 0;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->pending == 0 && !w->stopping)
            pthread_cond_wait(&w->work, &w->lock);
        if (w->pending == 0 && w->stopping)
            break;
        struct timespec until;
        if (backoff_ms > 0) { /* the store failed: wait, unless we are stopping */
            fig_deadline_after_ms(&until, backoff_ms);
            while (!w->stopping && pthread_cond_timedwait(&w->work, &w->lock, &until) != ETIMEDOUT)
                ;
        } else if (!w->stopping && w->flush_waiters == 0 && w->pending < BATCH_MAX) {
            /* let the batch fill up unless someone is waiting for it */
            fig_deadline_after_ms(&until, BATCH_MS);
            while (!w->stopping && w->flush_waiters == 0 && w->pending < BATCH_MAX)
                if (pthread_cond_timedwait(&w->work, &w->lock, &until) == ETIMEDOUT)
                    break;
        }
        if (w->commit_delay_ms > 0) { /* tests: a window in which figment "crashes" before the commit */
            fig_deadline_after_ms(&until, w->commit_delay_ms);
            while (!w->stopping && pthread_cond_timedwait(&w->work, &w->lock, &until) != ETIMEDOUT)
                ;
        }
        size_t n = 0;
        for (pending_t *p = w->head; p != NULL && n < BATCH_MAX; p = p->next) {
            batch[n] = p;
            recs[n] = &p->rec;
            n++;
        }
        int stopping = w->stopping;
        pthread_mutex_unlock(&w->lock);

        size_t skipped = 0;
        int rc = writer_commit(w, recs, n, batch[n - 1]->generation, batch[n - 1]->end, &skipped);

        pthread_mutex_lock(&w->lock);
        if (rc != 0) {
            w->stats.failures++;
            if (stopping) /* the journal keeps them for the next start */
                break;
            backoff_ms = backoff_ms ? (backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2) : 50;
            continue;
        }
        backoff_ms = 0;
        int64_t newest = batch[n - 1]->generation;
        for (size_t i = 0; i < n; i++) { /* the batch is the head of the queue */
            w->head = batch[i]->next;
            if (w->head == NULL)
                w->tail = NULL;
        }
        w->pending -= n;
        w->finished += n;
        w->stats.committed += n - skipped;
        w->stats.batches++;
        int64_t oldest = w->oldest_on_disk;
        if (newest > oldest)
            w->oldest_on_disk = newest;
        pthread_cond_broadcast(&w->done);
        pthread_mutex_unlock(&w->lock);

        for (size_t i = 0; i < n; i++) {
            if (w->cache != NULL)
                session_cache_unpin(w->cache, batch[i]->rec.session_id, batch[i]->rec.app);
            session_record_free(&batch[i]->rec);
            free(batch[i]);
        }
        for (int64_t g = oldest; g < newest; g++) /* older generations are fully applied */
            journal_unlink(w, g);

        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* ---- replay ------------------------------------------------------------------ */

/* Applies the records of one journal file from `from` on. -1 with err when the store
 * fails (the files stay for the next start). */
static int replay_file(session_writer_t *w, int64_t generation, int64_t from, fig_err_t *err)
{
    fig_buf_t p = FIG_BUF_INIT;
    journal_path(w, generation, &p);
    size_t len = 0;
    int missing = 0;
    char *data = fs_read_file(p.data, JOURNAL_MAX_FILE, &len, &missing, FIG_E_IO, err);
    if (data == NULL) {
        fig_buf_free(&p);
        return missing ? 0 : -1;
    }
    if (from < 0 || (uint64_t)from > len) {
        fprintf(stderr, "figment: %s is shorter than the store's mark (%" PRId64 " bytes): nothing replayed\n", p.data,
                from);
        from = (int64_t)len;
    }
    session_record_t recs[64];
    session_record_t *ptrs[64];
    size_t n = 0, bad = 0, applied = 0;
    int rc = 0;
    size_t off = (size_t)from;
    while (off < len) {
        const char *nl = memchr(data + off, '\n', len - off);
        if (nl == NULL) {
            fprintf(stderr, "figment: %s ends with a record cut short (%zu bytes, a crash while writing it): skipped\n",
                    p.data, len - off);
            break;
        }
        size_t line_len = (size_t)(nl - (data + off));
        size_t end = off + line_len + 1;
        fig_err_t derr;
        fig_err_clear(&derr);
        if (line_len > 0 && session_record_decode(data + off, line_len, &recs[n], &derr) == 0) {
            ptrs[n] = &recs[n];
            n++;
        } else if (line_len > 0) {
            fprintf(stderr, "figment: %s at byte %zu: %s: skipped\n", p.data, off, derr.msg);
            bad++;
        }
        off = end;
        if (n == 64 || off >= len || memchr(data + off, '\n', len - off) == NULL) {
            size_t skipped = 0;
            if (writer_commit(w, ptrs, n, generation, (int64_t)off, &skipped) != 0) {
                fig_err_set(err, FIG_E_DB, "cannot replay the session journal %s into the store", p.data);
                rc = -1;
            }
            applied += n - skipped;
            for (size_t i = 0; i < n; i++)
                session_record_free(&recs[i]);
            n = 0;
            if (rc != 0)
                break;
        }
    }
    for (size_t i = 0; i < n; i++)
        session_record_free(&recs[i]);
    w->stats.replayed += applied;
    if (applied > 0 || bad > 0)
        fprintf(stderr, "figment: replayed %zu session save%s from %s%s\n", applied, applied == 1 ? "" : "s", p.data,
                bad ? " (some lines were unreadable)" : "");
    free(data);
    fig_buf_free(&p);
    return rc;
}

static int writer_replay(session_writer_t *w, int64_t *next_generation, fig_err_t *err)
{
    int64_t mark_gen = 0, mark_off = 0;
    if (session_journal_mark_get(w->store, &mark_gen, &mark_off, err) != 0)
        return -1;
    size_t n = 0;
    int64_t *gens = journal_list(w->dir, &n);
    int64_t newest = mark_gen;
    for (size_t i = 0; i < n; i++) {
        if (gens[i] > newest)
            newest = gens[i];
        if (gens[i] < mark_gen)
            continue; /* applied in full before */
        if (replay_file(w, gens[i], gens[i] == mark_gen ? mark_off : 0, err) != 0) {
            free(gens);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++)
        journal_unlink(w, gens[i]);
    free(gens);
    *next_generation = newest + 1;
    return 0;
}

/* ---- the API ------------------------------------------------------------------ */

/* Two servers on one var dir would each replay and commit the other's journal. */
static int writer_lock(session_writer_t *w, fig_err_t *err)
{
    fig_buf_t p = FIG_BUF_INIT;
    fig_buf_appendf(&p, "%s/lock", w->dir);
    w->lock_fd = open(p.data, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int rc = 0;
    if (w->lock_fd < 0) {
        fig_err_set(err, FIG_E_IO, "%s: cannot open: %s", p.data, strerror(errno));
        rc = -1;
    } else if (flock(w->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            fig_err_set(err, FIG_E_CONFIG, "%s is in use by another figment: stop it first, or give this one its own --var",
                        w->dir);
        else
            fig_err_set(err, FIG_E_IO, "%s: cannot lock: %s", p.data, strerror(errno));
        rc = -1;
    }
    fig_buf_free(&p);
    return rc;
}

static void writer_free(session_writer_t *w)
{
    if (w->lock_fd >= 0)
        close(w->lock_fd); /* releases the lock */
    if (w->fd >= 0)
        close(w->fd);
    session_store_close(w->store);
    free(w->dir);
    free(w);
}

session_writer_t *session_writer_start(const session_writer_opts_t *opts, fig_err_t *err)
{
    session_writer_t *w = fig_calloc(1, sizeof(*w));
    w->fd = w->lock_fd = -1;
    w->dir = fig_strdup(opts->journal_dir);
    w->cache = opts->cache;
    w->rotate_bytes = opts->rotate_bytes ? opts->rotate_bytes : DEFAULT_ROTATE_BYTES;
    w->max_pending = opts->max_pending ? opts->max_pending : DEFAULT_MAX_PENDING;
    w->commit_delay_ms = opts->commit_delay_ms;
    int64_t generation = 0;
    if (fs_mkdir_p(w->dir, 0700, err) != 0 || writer_lock(w, err) != 0 ||
        (w->store = session_store_open(opts->db_path, err)) == NULL ||
        writer_replay(w, &generation, err) != 0 || journal_open(w, generation, err) != 0) {
        writer_free(w);
        return NULL;
    }
    w->oldest_on_disk = generation;
    pthread_mutex_init(&w->lock, NULL);
    fig_cond_init_monotonic(&w->work);
    fig_cond_init_monotonic(&w->done);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        fig_err_set(err, FIG_E_IO, "session writer: cannot start its thread");
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->work);
        pthread_cond_destroy(&w->done);
        writer_free(w);
        return NULL;
    }
    return w;
}

int session_writer_submit(session_writer_t *w, session_record_t *r, fig_err_t *err)
{
    fig_buf_t line = FIG_BUF_INIT;
    if (session_record_encode(r, &line, err) != 0) {
        session_record_free(r);
        fig_buf_free(&line);
        return -1;
    }
    pending_t *p = fig_malloc(sizeof(*p));
    p->rec = *r;
    memset(r, 0, sizeof(*r));
    p->next = NULL;

    pthread_mutex_lock(&w->lock);
    int rc = -1;
    if (w->stopping) {
        fig_err_set(err, FIG_E_UNAVAILABLE, "figment is shutting down");
        goto out;
    }
    if (w->pending >= w->max_pending) {
        fig_err_set(err, FIG_E_TOO_LARGE, "%zu session saves are waiting for the store (it is failing or too slow)",
                    w->pending);
        goto out;
    }
    if ((size_t)w->size >= w->rotate_bytes) {
        fig_err_t rerr;
        fig_err_clear(&rerr);
        if (journal_open(w, w->generation + 1, &rerr) != 0) /* keep appending to the old file */
            writer_report(w, "cannot rotate the journal", &rerr);
    }
    size_t done = 0;
    while (done < line.len) {
        ssize_t k = write(w->fd, line.data + done, line.len - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            fig_err_set(err, FIG_E_IO, "cannot write the session journal: %s", k < 0 ? strerror(errno) : "no space");
            if (done > 0 && ftruncate(w->fd, w->size) != 0) /* a partial line would hide the next ones */
                fprintf(stderr, "figment: cannot cut a partial record off the session journal: %s\n", strerror(errno));
            goto out;
        }
        done += (size_t)k;
    }
    w->size += (int64_t)line.len;
    p->generation = w->generation;
    p->end = w->size;
    if (w->tail != NULL)
        w->tail->next = p;
    else
        w->head = p;
    w->tail = p;
    p = NULL;
    w->pending++;
    w->submitted++;
    w->stats.submitted++;
    if (w->pending == 1 || w->pending == BATCH_MAX)
        pthread_cond_signal(&w->work);
    rc = 0;
out:
    pthread_mutex_unlock(&w->lock);
    if (p != NULL) {
        session_record_free(&p->rec);
        free(p);
    }
    fig_buf_free(&line);
    return rc;
}

int session_writer_flush(session_writer_t *w, int timeout_ms)
{
    struct timespec until;
    fig_deadline_after_ms(&until, timeout_ms);
    pthread_mutex_lock(&w->lock);
    uint64_t target = w->submitted;
    w->flush_waiters++;
    pthread_cond_signal(&w->work);
    int rc = 0;
    while (w->finished < target)
        if (pthread_cond_timedwait(&w->done, &w->lock, &until) == ETIMEDOUT) {
            rc = w->finished < target ? -1 : 0;
            break;
        }
    w->flush_waiters--;
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void session_writer_stats(session_writer_t *w, session_writer_stats_t *out)
{
    pthread_mutex_lock(&w->lock);
    *out = w->stats;
    out->pending = w->pending;
    pthread_mutex_unlock(&w->lock);
}

void session_writer_stop(session_writer_t *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    int all_applied = w->pending == 0;
    for (pending_t *p = w->head, *next; p != NULL; p = next) { /* the store failed: the journal keeps them */
        next = p->next;
        session_record_free(&p->rec);
        free(p);
    }
    if (all_applied)
        for (int64_t g = w->oldest_on_disk; g <= w->generation; g++)
            journal_unlink(w, g);
    else
        fprintf(stderr, "figment: %zu session saves are not in the store yet; the journal in %s keeps them for the "
                        "next start\n", w->pending, w->dir);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->done);
    writer_free(w);
}
