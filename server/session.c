/*
 * session.c — signed session cookies, CSRF tokens and the SQLite session store
 * (see session.h).
 *
 * Design:
 * - The cookie is "<32 hex id>.<base64url(HMAC-SHA256(key, id))>", exactly 76 bytes.
 *   Verification checks the shape first (length, dot position, lower-case hex id,
 *   base64url alphabet) and then compares the whole MAC text in constant time
 *   against the one we compute; comparing the canonical encoding means a
 *   non-canonical base64 spelling of the right MAC is rejected too.
 * - The key file is created atomically: a temporary file opened O_EXCL with mode
 *   0600, filled, fsync'd, then linked into place (link() never replaces a key
 *   another process created first; rename() is the fallback on file systems
 *   without hard links), and the directory is fsync'd. An existing key with the
 *   wrong size or readable by others is an error, not something to regenerate:
 *   regenerating would silently log everybody out.
 * - The store is one SQLite connection with its statements prepared once.
 *   session_save runs in one BEGIN IMMEDIATE transaction and takes the new seq from
 *   the upsert's RETURNING clause, so concurrent requests of one session never
 *   reuse a sequence number. State is stored as compact JSON with sorted keys, so
 *   the prompt built from it is byte-stable.
 * - A corrupt state row (bad JSON or a non-object) loads as {}: the user keeps
 *   their session and the model starts from an empty state.
 * - Schema versions live in PRAGMA user_version (4: usage and pages since 2, pending
 *   confirmations since 3, the session journal's applied mark since 4).
 * - A save is a session_record_t applied inside a transaction: session_save_all() opens
 *   and commits its own, the session writer (session_writer.c) applies many per commit.
 */
#include "session.h"

#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "buf.h"
#include "crypto.h"

#define SESSION_MAC_B64_LEN 43 /* base64url of 32 bytes, unpadded */
#define SESSION_COOKIE_LEN (SESSION_ID_LEN + 1 + SESSION_MAC_B64_LEN)
#define SESSION_SCHEMA_VERSION 4

/* ---- key file ---- */

static int session_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

static int session_key_read(const char *path, int fd, uint8_t key[SESSION_KEY_LEN], fig_err_t *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fig_err_set(err, FIG_E_IO, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size != SESSION_KEY_LEN) {
        fig_err_set(err, FIG_E_CONFIG, "%s: expected a regular file of exactly %d bytes; remove it to create a new key",
                    path, SESSION_KEY_LEN);
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        fig_err_set(err, FIG_E_CONFIG, "%s: readable by group or others; run chmod 600 on it", path);
        return -1;
    }
    size_t got = 0;
    while (got < SESSION_KEY_LEN) {
        ssize_t r = read(fd, key + got, SESSION_KEY_LEN - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fig_err_set(err, FIG_E_IO, "%s: short read", path);
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static int session_key_create(const char *var_dir, const char *path, fig_err_t *err)
{
    char tmp[PATH_MAX];
    uint8_t key[SESSION_KEY_LEN];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        fig_err_set(err, FIG_E_IO, "%s: path too long", path);
        return -1;
    }
    if (crypto_random(key, sizeof(key)) != 0) {
        fig_err_set(err, FIG_E_IO, "%s: the random source failed", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        /* A leftover of an earlier crash of a process with our pid. */
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        fig_err_set(err, FIG_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
        return -1;
    }
    size_t put = 0;
    while (put < sizeof(key)) {
        ssize_t w = write(fd, key + put, sizeof(key) - put);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        put += (size_t)w;
    }
    memset(key, 0, sizeof(key));
    if (put != sizeof(key) || fsync(fd) != 0) {
        fig_err_set(err, FIG_E_IO, "%s: cannot write: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    int r = link(tmp, path);
    if (r != 0 && errno == EEXIST) {
        r = 0; /* somebody else won the race: use their key */
    } else if (r != 0 && (errno == EPERM || errno == ENOTSUP || errno == ENOSYS)) {
        r = rename(tmp, path);
    }
    int saved = errno;
    unlink(tmp);
    if (r != 0) {
        fig_err_set(err, FIG_E_IO, "%s: cannot install the key: %s", path, strerror(saved));
        return -1;
    }
    session_fsync_dir(var_dir);
    return 0;
}

int session_key_load(const char *var_dir, uint8_t key[SESSION_KEY_LEN], fig_err_t *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/secret.key", var_dir) >= (int)sizeof(path)) {
        fig_err_set(err, FIG_E_IO, "%s: path too long", var_dir);
        return -1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            int r = session_key_read(path, fd, key, err);
            close(fd);
            return r;
        }
        if (errno != ENOENT || attempt > 0) {
            fig_err_set(err, FIG_E_IO, "%s: %s", path, strerror(errno));
            return -1;
        }
        if (fs_mkdir_p(var_dir, 0700, err) != 0 || session_key_create(var_dir, path, err) != 0)
            return -1;
    }
    fig_err_set(err, FIG_E_IO, "%s: cannot load the key", path);
    return -1;
}

/* ---- ids, cookies, CSRF ---- */

void session_new_id(char id[SESSION_ID_LEN + 1])
{
    uint8_t raw[SESSION_ID_LEN / 2];
    if (crypto_random(raw, sizeof(raw)) != 0) {
        /* Predictable ids would be worse than stopping. */
        fputs("figment: the random source failed\n", stderr);
        abort();
    }
    char *hex = crypto_hex(raw, sizeof(raw));
    memcpy(id, hex, SESSION_ID_LEN + 1);
    free(hex);
}

static char *session_mac_b64(const uint8_t key[SESSION_KEY_LEN], const char *prefix, const char *id)
{
    uint8_t mac[32];
    char msg[8 + SESSION_ID_LEN + 1];
    int n = snprintf(msg, sizeof(msg), "%s%.*s", prefix, SESSION_ID_LEN, id);
    crypto_hmac_sha256(key, SESSION_KEY_LEN, msg, (size_t)n, mac);
    return crypto_base64url(mac, sizeof(mac));
}

static int session_id_ok(const char *id, size_t len)
{
    if (len != SESSION_ID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

char *session_cookie_sign(const uint8_t key[SESSION_KEY_LEN], const char *id)
{
    char *mac = session_mac_b64(key, "", id);
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b, "%.*s.%s", SESSION_ID_LEN, id, mac);
    free(mac);
    return fig_buf_steal(&b);
}

int session_cookie_verify(const uint8_t key[SESSION_KEY_LEN], const char *value, size_t len,
                          char id_out[SESSION_ID_LEN + 1])
{
    if (value == NULL || len != SESSION_COOKIE_LEN || value[SESSION_ID_LEN] != '.')
        return -1;
    if (!session_id_ok(value, SESSION_ID_LEN))
        return -1;
    const char *given = value + SESSION_ID_LEN + 1;
    for (size_t i = 0; i < SESSION_MAC_B64_LEN; i++) {
        char c = given[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return -1;
    }
    char id[SESSION_ID_LEN + 1];
    memcpy(id, value, SESSION_ID_LEN);
    id[SESSION_ID_LEN] = '\0';
    char *want = session_mac_b64(key, "", id);
    int ok = crypto_equal(want, given, SESSION_MAC_B64_LEN);
    free(want);
    if (!ok)
        return -1;
    memcpy(id_out, id, SESSION_ID_LEN + 1);
    return 0;
}

char *session_csrf_token(const uint8_t key[SESSION_KEY_LEN], const char *id)
{
    return session_mac_b64(key, "csrf:", id);
}

int session_csrf_check(const uint8_t key[SESSION_KEY_LEN], const char *id, const char *token, size_t len)
{
    if (token == NULL || len != SESSION_MAC_B64_LEN || id == NULL || !session_id_ok(id, strlen(id)))
        return 0;
    char *want = session_csrf_token(key, id);
    int ok = crypto_equal(want, token, SESSION_MAC_B64_LEN);
    free(want);
    return ok;
}

/* ---- store ---- */

int session_record_usage(session_store_t *st, const session_usage_t *u, fig_err_t *err);

struct session_store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *load_state;
    sqlite3_stmt *load_history;
    sqlite3_stmt *upsert;
    sqlite3_stmt *insert_interaction;
    sqlite3_stmt *begin;
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
    sqlite3_stmt *insert_usage;
    sqlite3_stmt *spent_session;
    sqlite3_stmt *spent_since;
    sqlite3_stmt *page_save;
    sqlite3_stmt *page_load;
    sqlite3_stmt *mark_get;
    sqlite3_stmt *mark_set;
};

static const char session_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS sessions("
    "id TEXT NOT NULL, app TEXT NOT NULL, state TEXT NOT NULL, seq INTEGER NOT NULL, "
    "created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY(id, app));"
    "CREATE TABLE IF NOT EXISTS interactions("
    "session_id TEXT NOT NULL, app TEXT NOT NULL, seq INTEGER NOT NULL, method TEXT NOT NULL, "
    "path TEXT NOT NULL, title TEXT, created_at INTEGER NOT NULL, PRIMARY KEY(session_id, app, seq));";

/* Version 2: what each interaction cost (budgets read it back at start), and the last
 * good page of each URL per session (served, marked stale, when every model fails). */
static const char session_schema_v2_sql[] =
    "CREATE TABLE IF NOT EXISTS usage("
    "session_id TEXT NOT NULL, app TEXT NOT NULL, model TEXT NOT NULL, outcome TEXT NOT NULL, "
    "prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL, "
    "completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, route TEXT, created_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS usage_by_time ON usage(created_at);"
    "CREATE INDEX IF NOT EXISTS usage_by_session ON usage(session_id);"
    "CREATE TABLE IF NOT EXISTS pages("
    "session_id TEXT NOT NULL, app TEXT NOT NULL, url TEXT NOT NULL, title TEXT, html TEXT NOT NULL, "
    "saved_at INTEGER NOT NULL, PRIMARY KEY(session_id, app, url));";

/* Version 3: confirmations waiting for the user (confirm.c reads and writes them). */
static const char session_schema_v3_sql[] =
    "CREATE TABLE IF NOT EXISTS pending_confirmations("
    "id TEXT PRIMARY KEY, session_id TEXT NOT NULL, app TEXT NOT NULL, created_at INTEGER NOT NULL, "
    "expires_at INTEGER NOT NULL, tool TEXT NOT NULL, description TEXT NOT NULL, messages TEXT NOT NULL, "
    "calls TEXT NOT NULL, tool_index INTEGER NOT NULL, round INTEGER NOT NULL, origin_url TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS pending_by_expiry ON pending_confirmations(expires_at);";

/* Version 4: how far the session journal (session_writer.c) has been applied. */
static const char session_schema_v4_sql[] =
    "CREATE TABLE IF NOT EXISTS journal_applied("
    "id INTEGER PRIMARY KEY CHECK(id = 1), generation INTEGER NOT NULL, offset INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO journal_applied(id, generation, offset) VALUES(1, 0, 0);";

static int session_db_fail(session_store_t *st, const char *what, fig_err_t *err)
{
    fig_err_set(err, FIG_E_DB, "%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
    return -1;
}

static int session_exec(session_store_t *st, const char *sql, fig_err_t *err)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "%s: %s", st->path, msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Creates the schema or checks its version, under a write lock so two workers
 * opening a fresh store at once do not both create it. */
static int session_store_migrate(session_store_t *st, fig_err_t *err)
{
    if (session_exec(st, "BEGIN IMMEDIATE", err) != 0)
        return -1;
    sqlite3_stmt *q = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (version < 0) {
        session_db_fail(st, "reading user_version", err);
        goto fail;
    }
    if (version > SESSION_SCHEMA_VERSION) {
        fig_err_set(err, FIG_E_DB, "%s: schema version %d is newer than this figment understands (%d)", st->path,
                    version, SESSION_SCHEMA_VERSION);
        goto fail;
    }
    if (version == 0 && session_exec(st, session_schema_sql, err) != 0)
        goto fail;
    if (version < 2 && (session_exec(st, session_schema_v2_sql, err) != 0 ||
                        session_exec(st, "PRAGMA user_version = 2", err) != 0))
        goto fail;
    if (version < 3 && (session_exec(st, session_schema_v3_sql, err) != 0 ||
                        session_exec(st, "PRAGMA user_version = 3", err) != 0))
        goto fail;
    if (version < 4 && (session_exec(st, session_schema_v4_sql, err) != 0 ||
                        session_exec(st, "PRAGMA user_version = 4", err) != 0))
        goto fail;
    return session_exec(st, "COMMIT", err);

fail:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

session_store_t *session_store_open(const char *path, fig_err_t *err)
{
    session_store_t *st = fig_calloc(1, sizeof(*st));
    st->path = fig_strdup(path);
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        if (st->db == NULL)
            fig_err_set(err, FIG_E_DB, "%s: cannot open: out of memory", path);
        else
            session_db_fail(st, "cannot open", err);
        goto fail;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, 5000);

    /* journal_mode answers with the mode in effect: insist that it is WAL. */
    sqlite3_stmt *q = NULL;
    int wal = 0;
    if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(q, 0);
        wal = mode != NULL && strcmp(mode, "wal") == 0;
    }
    sqlite3_finalize(q);
    if (!wal) {
        session_db_fail(st, "cannot switch to WAL mode", err);
        goto fail;
    }
    if (session_exec(st, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", err) != 0)
        goto fail;
    if (session_store_migrate(st, err) != 0)
        goto fail;

    struct {
        sqlite3_stmt **stmt;
        const char *sql;
    } stmts[] = {
        {&st->load_state, "SELECT state, seq FROM sessions WHERE id = ?1 AND app = ?2"},
        {&st->load_history, "SELECT method, path, title FROM interactions WHERE session_id = ?1 AND app = ?2 "
                            "ORDER BY seq DESC LIMIT ?3"},
        {&st->upsert, "INSERT INTO sessions(id, app, state, seq, created_at, updated_at) VALUES(?1, ?2, ?3, 1, ?4, ?4) "
                      "ON CONFLICT(id, app) DO UPDATE SET state = excluded.state, seq = sessions.seq + 1, "
                      "updated_at = excluded.updated_at RETURNING seq"},
        {&st->insert_interaction, "INSERT INTO interactions(session_id, app, seq, method, path, title, created_at) "
                                  "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
        {&st->begin, "BEGIN IMMEDIATE"},
        {&st->mark_get, "SELECT generation, offset FROM journal_applied WHERE id = 1"},
        {&st->mark_set, "INSERT INTO journal_applied(id, generation, offset) VALUES(1, ?1, ?2) "
                        "ON CONFLICT(id) DO UPDATE SET generation = excluded.generation, offset = excluded.offset"},
        {&st->commit, "COMMIT"},
        {&st->rollback, "ROLLBACK"},
        {&st->insert_usage, "INSERT INTO usage(session_id, app, model, outcome, prompt_tokens, cached_tokens, "
                            "cache_write_tokens, completion_tokens, cost_usd, route, created_at) "
                            "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"},
        {&st->spent_session, "SELECT coalesce(sum(cost_usd), 0) FROM usage WHERE session_id = ?1"},
        {&st->spent_since, "SELECT app, sum(cost_usd) FROM usage WHERE created_at >= ?1 GROUP BY app ORDER BY app"},
        {&st->page_save, "INSERT INTO pages(session_id, app, url, title, html, saved_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6) "
                         "ON CONFLICT(session_id, app, url) DO UPDATE SET title = excluded.title, "
                         "html = excluded.html, saved_at = excluded.saved_at"},
        {&st->page_load, "SELECT title, html, saved_at FROM pages WHERE session_id = ?1 AND app = ?2 AND url = ?3"},
    };
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        if (sqlite3_prepare_v3(st->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, stmts[i].stmt, NULL) !=
            SQLITE_OK) {
            session_db_fail(st, "preparing a statement", err);
            goto fail;
        }
    }
    return st;

fail:
    session_store_close(st);
    return NULL;
}

sqlite3 *session_store_db(session_store_t *st)
{
    return st->db;
}

void session_store_close(session_store_t *st)
{
    if (st == NULL)
        return;
    sqlite3_finalize(st->load_state);
    sqlite3_finalize(st->load_history);
    sqlite3_finalize(st->upsert);
    sqlite3_finalize(st->insert_interaction);
    sqlite3_finalize(st->begin);
    sqlite3_finalize(st->commit);
    sqlite3_finalize(st->rollback);
    sqlite3_finalize(st->insert_usage);
    sqlite3_finalize(st->spent_session);
    sqlite3_finalize(st->spent_since);
    sqlite3_finalize(st->page_save);
    sqlite3_finalize(st->page_load);
    sqlite3_finalize(st->mark_get);
    sqlite3_finalize(st->mark_set);
    sqlite3_close(st->db);
    free(st->path);
    free(st);
}

static void session_stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Runs a statement without result rows (BEGIN/COMMIT/ROLLBACK). */
static int session_step_done(session_store_t *st, sqlite3_stmt *s, const char *what, fig_err_t *err)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        session_db_fail(st, what, err);
        sqlite3_reset(s);
        return -1;
    }
    sqlite3_reset(s);
    return 0;
}

static int session_bind_text(sqlite3_stmt *s, int idx, const char *v)
{
    return v ? sqlite3_bind_text(s, idx, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, idx);
}

int session_load(session_store_t *st, const char *id, const char *app, int history_items, session_t *out,
                 fig_err_t *err)
{
    memset(out, 0, sizeof(*out));
    if (id == NULL || !session_id_ok(id, strlen(id)) || app == NULL) {
        fig_err_set(err, FIG_E_INVALID, "session_load: malformed session id");
        return -1;
    }
    memcpy(out->id, id, SESSION_ID_LEN + 1);

    sqlite3_stmt *s = st->load_state;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, app, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(s, 0);
        int n = sqlite3_column_bytes(s, 0);
        json_t *state = text ? json_loadb(text, (size_t)n, JSON_REJECT_DUPLICATES, NULL) : NULL;
        if (!json_is_object(state)) {
            /* Corrupt or foreign row: keep the session, start from an empty state. */
            json_decref(state);
            state = json_object();
        }
        out->state = state;
        out->seq = sqlite3_column_int64(s, 1);
        out->exists = 1;
    } else if (rc != SQLITE_DONE) {
        session_db_fail(st, "loading a session", err);
        session_stmt_done(s);
        return -1;
    } else {
        out->state = json_object();
    }
    session_stmt_done(s);

    out->history = json_array();
    if (!out->exists || history_items <= 0)
        return 0;

    s = st->load_history;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, app, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, history_items);
    /* Rows come newest first; inserting each at the front yields oldest first. */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *method = (const char *)sqlite3_column_text(s, 0);
        const char *path = (const char *)sqlite3_column_text(s, 1);
        const char *title = (const char *)sqlite3_column_text(s, 2);
        json_t *item = json_object();
        json_object_set_new(item, "method", json_string(method ? method : ""));
        json_object_set_new(item, "path", json_string(path ? path : ""));
        json_object_set_new(item, "title", json_string(title ? title : ""));
        /* json_string() refuses invalid UTF-8; never store a NULL member. */
        if (json_object_size(item) != 3) {
            json_object_set_new(item, "method", json_string(""));
            json_object_set_new(item, "path", json_string(""));
            json_object_set_new(item, "title", json_string(""));
        }
        json_array_insert_new(out->history, 0, item);
    }
    if (rc != SQLITE_DONE) {
        session_db_fail(st, "loading session history", err);
        session_stmt_done(s);
        session_clear(out);
        return -1;
    }
    session_stmt_done(s);
    return 0;
}

int session_save(session_store_t *st, const session_t *s, const char *app, const char *method, const char *path,
                 const char *title, fig_err_t *err)
{
    return session_save_all(st, s, app, method, path, title, NULL, NULL, err);
}

int session_record_make(session_record_t *r, const session_t *s, const char *app, const char *method, const char *path,
                        const char *title, const session_usage_t *usage, const char *page_html, fig_err_t *err)
{
    memset(r, 0, sizeof(*r));
    if (!session_id_ok(s->id, strlen(s->id)) || app == NULL || method == NULL || path == NULL) {
        fig_err_set(err, FIG_E_INVALID, "session_save: malformed arguments");
        return -1;
    }
    if (s->state != NULL && !json_is_object(s->state)) {
        fig_err_set(err, FIG_E_INVALID, "session_save: state must be a JSON object");
        return -1;
    }
    r->state = s->state ? json_dumps(s->state, JSON_COMPACT | JSON_SORT_KEYS) : fig_strdup("{}");
    if (r->state == NULL) {
        fig_err_set(err, FIG_E_INVALID, "session_save: state cannot be serialized");
        return -1;
    }
    memcpy(r->session_id, s->id, sizeof(r->session_id));
    r->app = fig_strdup(app);
    r->method = fig_strdup(method);
    r->path = fig_strdup(path);
    r->title = title ? fig_strdup(title) : NULL;
    r->page_html = page_html ? fig_strdup(page_html) : NULL;
    r->created_at = (int64_t)time(NULL);
    if (usage != NULL) {
        r->has_usage = 1;
        r->usage = *usage;
        r->usage_model = fig_strdup(usage->model ? usage->model : "");
        r->usage_outcome = fig_strdup(usage->outcome ? usage->outcome : "");
        r->usage_route = usage->route ? fig_strdup(usage->route) : NULL;
        /* no pointers into the record itself: records are copied by value (session_record_apply sets them) */
        r->usage.session_id = r->usage.app = r->usage.model = r->usage.outcome = r->usage.route = NULL;
        if (r->usage.created_at == 0)
            r->usage.created_at = r->created_at;
    }
    return 0;
}

void session_record_free(session_record_t *r)
{
    if (r == NULL)
        return;
    free(r->app);
    free(r->method);
    free(r->path);
    free(r->title);
    free(r->state);
    free(r->usage_model);
    free(r->usage_outcome);
    free(r->usage_route);
    free(r->page_html);
    memset(r, 0, sizeof(*r));
}

int session_begin(session_store_t *st, fig_err_t *err)
{
    return session_step_done(st, st->begin, "begin", err);
}

int session_commit(session_store_t *st, fig_err_t *err)
{
    return session_step_done(st, st->commit, "commit", err);
}

void session_rollback(session_store_t *st)
{
    if (!sqlite3_get_autocommit(st->db))
        session_step_done(st, st->rollback, "rollback", NULL);
}

int session_record_apply(session_store_t *st, const session_record_t *r, fig_err_t *err)
{
    if (!session_id_ok(r->session_id, strlen(r->session_id)) || r->app == NULL || r->method == NULL ||
        r->path == NULL || r->state == NULL) {
        fig_err_set(err, FIG_E_INVALID, "session_save: malformed record");
        return -1;
    }
    sqlite3_stmt *u = st->upsert;
    sqlite3_bind_text(u, 1, r->session_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(u, 2, r->app, -1, SQLITE_STATIC);
    sqlite3_bind_text(u, 3, r->state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(u, 4, (sqlite3_int64)r->created_at);
    if (sqlite3_step(u) != SQLITE_ROW) {
        session_db_fail(st, "saving session state", err);
        session_stmt_done(u);
        return -1;
    }
    sqlite3_int64 seq = sqlite3_column_int64(u, 0);
    /* Step to the end so the statement finishes before the next one runs. */
    if (sqlite3_step(u) != SQLITE_DONE) {
        session_db_fail(st, "saving session state", err);
        session_stmt_done(u);
        return -1;
    }
    session_stmt_done(u);

    sqlite3_stmt *ins = st->insert_interaction;
    sqlite3_bind_text(ins, 1, r->session_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, r->app, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 3, seq);
    session_bind_text(ins, 4, r->method);
    session_bind_text(ins, 5, r->path);
    session_bind_text(ins, 6, r->title);
    sqlite3_bind_int64(ins, 7, (sqlite3_int64)r->created_at);
    if (sqlite3_step(ins) != SQLITE_DONE) {
        session_db_fail(st, "recording the interaction", err);
        session_stmt_done(ins);
        return -1;
    }
    session_stmt_done(ins);

    /* the same commit records the cost and keeps the page */
    if (r->has_usage) {
        session_usage_t u = r->usage;
        u.session_id = r->session_id;
        u.app = r->app;
        u.model = r->usage_model;
        u.outcome = r->usage_outcome;
        u.route = r->usage_route;
        if (session_record_usage(st, &u, err) != 0)
            return -1;
    }
    if (r->page_html != NULL && session_page_save(st, r->session_id, r->app, r->path, r->title, r->page_html, err) != 0)
        return -1;
    return 0;
}

int session_save_all(session_store_t *st, const session_t *s, const char *app, const char *method, const char *path,
                     const char *title, const session_usage_t *usage, const char *page_html, fig_err_t *err)
{
    session_record_t r;
    if (session_record_make(&r, s, app, method, path, title, usage, page_html, err) != 0)
        return -1;
    int rc = -1;
    if (session_begin(st, err) == 0) {
        if (session_record_apply(st, &r, err) == 0 && session_commit(st, err) == 0)
            rc = 0;
        else
            session_rollback(st);
    }
    session_record_free(&r);
    return rc;
}

int session_journal_mark_get(session_store_t *st, int64_t *generation, int64_t *offset, fig_err_t *err)
{
    sqlite3_stmt *q = st->mark_get;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *generation = sqlite3_column_int64(q, 0);
        *offset = sqlite3_column_int64(q, 1);
    } else if (rc == SQLITE_DONE) {
        *generation = *offset = 0;
    } else {
        session_db_fail(st, "reading the journal mark", err);
        session_stmt_done(q);
        return -1;
    }
    session_stmt_done(q);
    return 0;
}

int session_journal_mark_set(session_store_t *st, int64_t generation, int64_t offset, fig_err_t *err)
{
    sqlite3_stmt *q = st->mark_set;
    sqlite3_bind_int64(q, 1, (sqlite3_int64)generation);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)offset);
    return session_step_done(st, q, "setting the journal mark", err);
}

void session_clear(session_t *s)
{
    if (s == NULL)
        return;
    json_decref(s->state);
    json_decref(s->history);
    s->state = NULL;
    s->history = NULL;
}

/* ---- usage, spending and last good pages (schema version 2) ---- */

int session_record_usage(session_store_t *st, const session_usage_t *u, fig_err_t *err)
{
    sqlite3_stmt *q = st->insert_usage;
    session_bind_text(q, 1, u->session_id);
    session_bind_text(q, 2, u->app);
    session_bind_text(q, 3, u->model ? u->model : "");
    session_bind_text(q, 4, u->outcome ? u->outcome : "");
    sqlite3_bind_int64(q, 5, u->prompt_tokens);
    sqlite3_bind_int64(q, 6, u->cached_tokens);
    sqlite3_bind_int64(q, 7, u->cache_write_tokens);
    sqlite3_bind_int64(q, 8, u->completion_tokens);
    sqlite3_bind_double(q, 9, u->cost_usd);
    session_bind_text(q, 10, u->route);
    sqlite3_bind_int64(q, 11, (sqlite3_int64)(u->created_at ? u->created_at : time(NULL)));
    return session_step_done(st, q, "recording usage", err);
}

double session_spent_usd(session_store_t *st, const char *session_id, fig_err_t *err)
{
    sqlite3_stmt *q = st->spent_session;
    session_bind_text(q, 1, session_id);
    double v = -1;
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_double(q, 0);
    else
        session_db_fail(st, "reading spending", err);
    session_stmt_done(q);
    return v;
}

int session_spent_since(session_store_t *st, time_t since, void (*each)(void *ctx, const char *app, double usd),
                        void *ctx, fig_err_t *err)
{
    sqlite3_stmt *q = st->spent_since;
    sqlite3_bind_int64(q, 1, (sqlite3_int64)since);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        each(ctx, (const char *)sqlite3_column_text(q, 0), sqlite3_column_double(q, 1));
    session_stmt_done(q);
    if (rc != SQLITE_DONE)
        return session_db_fail(st, "reading spending", err);
    return 0;
}

int session_page_save(session_store_t *st, const char *session_id, const char *app, const char *url,
                      const char *title, const char *html, fig_err_t *err)
{
    sqlite3_stmt *q = st->page_save;
    session_bind_text(q, 1, session_id);
    session_bind_text(q, 2, app);
    session_bind_text(q, 3, url);
    session_bind_text(q, 4, title);
    session_bind_text(q, 5, html);
    sqlite3_bind_int64(q, 6, (sqlite3_int64)time(NULL));
    return session_step_done(st, q, "saving the page", err);
}

int session_page_load(session_store_t *st, const char *session_id, const char *app, const char *url, char **title,
                      char **html, int64_t *saved_at, fig_err_t *err)
{
    sqlite3_stmt *q = st->page_load;
    session_bind_text(q, 1, session_id);
    session_bind_text(q, 2, app);
    session_bind_text(q, 3, url);
    int rc = sqlite3_step(q), found = 0;
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(q, 0);
        *title = t ? fig_strdup(t) : NULL;
        *html = fig_strdup((const char *)sqlite3_column_text(q, 1));
        *saved_at = sqlite3_column_int64(q, 2);
        found = 1;
    } else if (rc != SQLITE_DONE) {
        session_db_fail(st, "loading the page", err);
        found = -1;
    }
    session_stmt_done(q);
    return found;
}
