/*
 * sql.c — the `sql` tool: one SQLite statement on the app's database, answered as a
 * compact text table (see tools.h for the format).
 *
 * The model's SQL is untrusted, so the policy is layered and positive:
 *  - read apps open the file SQLITE_OPEN_READONLY; nothing here can create a file;
 *  - the connection is hardened (no extension loading, DEFENSIVE, no ATTACH slots,
 *    small length limits) before any model text reaches it;
 *  - an authorizer allows only the actions a query needs (SELECT, READ, FUNCTION
 *    minus a denylist, RECURSIVE, a few read-only PRAGMAs); write apps add INSERT,
 *    UPDATE and DELETE on non-internal tables, never DDL, ATTACH or PRAGMA writes;
 *  - after prepare, the statement must be the only one in the text, must be read-only
 *    for read apps, and for write apps a non-read-only statement must have passed
 *    the authorizer as an INSERT/UPDATE/DELETE (VACUUM, for one, never consults the
 *    authorizer, so "not denied" is not enough);
 *  - a progress handler enforces a monotonic per-statement deadline.
 *
 * The authorizer and progress handler state (deadline, "saw a write") lives on the
 * stack of tool_sql_exec() and is installed for the duration of the call, so the
 * connection needs no heap side-state; between calls a stateless authorizer with
 * the same policy stays installed, so the connection is never unguarded.
 *
 * Error messages (err->msg) are what the model reads, without the "error: " prefix;
 * tool_sql.run adds it.
 */
#include "tools.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../server/buf.h"

#define SQL_MAX_QUERY_BYTES 100000   /* also SQLITE_LIMIT_SQL_LENGTH */
#define SQL_MAX_VALUE_BYTES 1000000  /* SQLITE_LIMIT_LENGTH */
#define SQL_MAX_CELL_BYTES 2000      /* a longer cell is cut with "…" */
#define SQL_MAX_OUTPUT_BYTES 65536   /* the whole table text */
#define SQL_FOOTER_RESERVE 160       /* room kept for the truncation and count lines */
#define SQL_MAX_COUNTED_ROWS 100000  /* rows past the cap we step through to count */
#define SQL_PROGRESS_STEPS 1000
#define SQL_BUSY_TIMEOUT_MS 2000

typedef struct {
    app_sql_access_t access;
    int64_t deadline_ns;  /* CLOCK_MONOTONIC */
    int timed_out;
    int saw_write;        /* an INSERT/UPDATE/DELETE was authorized */
} sql_guard_t;

static int64_t sql_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Read-only pragmas that only describe the schema; their argument is a table or
 * index name, never a value to set. */
static const char *const sql_pragma_allow[] = {
    "table_info", "table_xinfo", "index_list", "index_info", "foreign_key_list",
};

/* Functions that reach outside the database (the shell's file functions may be
 * registered by some builds; fts3_tokenizer can take a pointer). */
static const char *const sql_function_deny[] = {
    "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",
};

static int sql_name_in(const char *name, const char *const *list, size_t n)
{
    if (name == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(name, list[i]) == 0)
            return 1;
    return 0;
}

static int sql_is_internal_table(const char *table)
{
    return table == NULL || strncasecmp(table, "sqlite_", 7) == 0;
}

/* The policy itself; a1..a4 are the authorizer's four strings. */
static int sql_policy(app_sql_access_t access, int action, const char *a1, const char *a2)
{
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_FUNCTION: /* a1 is NULL, a2 the function name */
        return sql_name_in(a2, sql_function_deny, sizeof(sql_function_deny) / sizeof(sql_function_deny[0]))
                   ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_PRAGMA: /* a1 the pragma, a2 its argument or NULL */
        return sql_name_in(a1, sql_pragma_allow, sizeof(sql_pragma_allow) / sizeof(sql_pragma_allow[0]))
                   ? SQLITE_OK : SQLITE_DENY;
    case SQLITE_UPDATE:
        /* Preparing a query on an eponymous virtual table (json_each, the pragma_*
         * functions) asks for UPDATE on sqlite_master while the table is set up.
         * Allowing it grants nothing: SQLite itself refuses every write to the schema
         * table unless writable_schema is on, which the PRAGMA rule denies and
         * DEFENSIVE overrides. It never counts as a write (see sql_auth_exec). */
        if (a1 != NULL && (strcasecmp(a1, "sqlite_master") == 0 || strcasecmp(a1, "sqlite_temp_master") == 0))
            return SQLITE_OK;
        /* fall through */
    case SQLITE_INSERT:
    case SQLITE_DELETE: /* a1 the table */
        if (access == APP_SQL_WRITE && !sql_is_internal_table(a1))
            return SQLITE_OK;
        return SQLITE_DENY;
    default:
        /* DDL, ATTACH/DETACH, transactions, savepoints, ANALYZE, REINDEX, virtual
         * tables and anything a future SQLite adds. */
        return SQLITE_DENY;
    }
}

/* Installed between calls: pure policy, pArg encodes the access level. */
static int sql_auth_idle(void *arg, int action, const char *a1, const char *a2, const char *a3, const char *a4)
{
    return sql_policy((app_sql_access_t)(intptr_t)arg, action, a1, a2);
}

/* Installed during tool_sql_exec(): also records that a write was allowed. */
static int sql_auth_exec(void *arg, int action, const char *a1, const char *a2, const char *a3, const char *a4)
{
    sql_guard_t *g = arg;
    int rc = sql_policy(g->access, action, a1, a2);
    if (rc == SQLITE_OK && (action == SQLITE_INSERT || action == SQLITE_UPDATE || action == SQLITE_DELETE) &&
        !sql_is_internal_table(a1))
        g->saw_write = 1;
    return rc;
}

static int sql_progress(void *arg)
{
    sql_guard_t *g = arg;
    if (sql_now_ns() >= g->deadline_ns) {
        g->timed_out = 1;
        return 1;
    }
    return 0;
}

sqlite3 *tool_sql_open(const app_t *app, fig_err_t *err)
{
    if (app == NULL || app->db_path == NULL || app->sql == APP_SQL_NONE) {
        fig_err_set(err, FIG_E_CONFIG, "the sql tool is not enabled for this app");
        return NULL;
    }
    int flags = SQLITE_OPEN_NOMUTEX;
    flags |= app->sql == APP_SQL_WRITE ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(app->db_path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "cannot open %s: %s", app->db_path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    int off = 0, on = 1;
    if (sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, &off) != SQLITE_OK ||
        sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, &on) != SQLITE_OK || off != 0 || on != 1) {
        fig_err_set(err, FIG_E_DB, "%s: cannot harden the connection", app->db_path);
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, SQL_BUSY_TIMEOUT_MS);
    sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, SQL_MAX_VALUE_BYTES);
    sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, SQL_MAX_QUERY_BYTES);
    sqlite3_set_authorizer(db, sql_auth_idle, (void *)(intptr_t)app->sql);
    return db;
}

/* Skips whitespace, semicolons and comments: what may surround the one statement. */
static const char *sql_skip_ignorable(const char *p)
{
    for (;;) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v' || *p == ';') {
            p++;
        } else if (p[0] == '-' && p[1] == '-') {
            while (*p != '\0' && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            p = end ? end + 2 : p + strlen(p); /* SQLite, too, ends an open comment at EOF */
        } else {
            return p;
        }
    }
}

/* Length of s[0..n) cut back to a UTF-8 character boundary at most max bytes. */
static size_t sql_utf8_cut(const unsigned char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t cut = max;
    while (cut > 0 && (s[cut] & 0xC0) == 0x80)
        cut--;
    return cut;
}

/* Appends one cell: cut to SQL_MAX_CELL_BYTES, separators and line breaks escaped
 * so that one row is always one line and " | " always separates cells. */
static void sql_append_cell(fig_buf_t *b, const unsigned char *s, size_t n)
{
    size_t keep = sql_utf8_cut(s, n, SQL_MAX_CELL_BYTES);
    size_t run = 0;
    for (size_t i = 0; i < keep; i++) {
        const char *esc = NULL;
        switch (s[i]) {
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '|': esc = "\\|"; break;
        case '\0': esc = "\\0"; break;
        default: continue;
        }
        fig_buf_append(b, (const char *)s + run, i - run);
        fig_buf_append_str(b, esc);
        run = i + 1;
    }
    fig_buf_append(b, (const char *)s + run, keep - run);
    if (keep < n)
        fig_buf_append_str(b, "…");
}

static void sql_append_value(fig_buf_t *b, sqlite3_stmt *stmt, int col)
{
    switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_NULL:
        fig_buf_append_str(b, "NULL");
        break;
    case SQLITE_BLOB:
        fig_buf_appendf(b, "<blob %d bytes>", sqlite3_column_bytes(stmt, col));
        break;
    default: {
        /* INTEGER and FLOAT too: SQLite's own rendering ("%!.15g" for reals) is
         * short and round-trips what the model wrote. */
        const unsigned char *s = sqlite3_column_text(stmt, col);
        int n = sqlite3_column_bytes(stmt, col);
        if (s == NULL)
            fig_buf_append_str(b, "NULL"); /* OOM in conversion; never seen in practice */
        else
            sql_append_cell(b, s, (size_t)n);
        break;
    }
    }
}

/* Appends a line to the table if it fits under the output cap; 0 if it did not. */
static int sql_table_add(fig_buf_t *table, const fig_buf_t *line)
{
    size_t sep = table->len ? 1 : 0;
    if (table->len + sep + line->len > SQL_MAX_OUTPUT_BYTES - SQL_FOOTER_RESERVE)
        return 0;
    if (sep)
        fig_buf_append(table, "\n", 1);
    fig_buf_append(table, line->data ? line->data : "", line->len);
    return 1;
}

static void sql_table_footer(fig_buf_t *table, const char *line)
{
    if (table->len)
        fig_buf_append(table, "\n", 1);
    fig_buf_append_str(table, line);
}

int tool_sql_exec(sqlite3 *db, const app_t *app, const char *query, fig_buf_t *out, fig_err_t *err)
{
    if (db == NULL || app == NULL || app->sql == APP_SQL_NONE || query == NULL || out == NULL) {
        fig_err_set(err, FIG_E_INVALID, "the sql tool is not available");
        return -1;
    }
    const char *start = sql_skip_ignorable(query);
    if (*start == '\0') {
        fig_err_set(err, FIG_E_TOOL, "empty query: send one SQL statement");
        return -1;
    }
    size_t qlen = strlen(start);
    if (qlen > SQL_MAX_QUERY_BYTES) {
        fig_err_set(err, FIG_E_TOO_LARGE, "query is %zu bytes; the limit is %d bytes", qlen, SQL_MAX_QUERY_BYTES);
        return -1;
    }
    int timeout_ms = app->limits.sql_timeout_ms > 0 ? app->limits.sql_timeout_ms : 2000;
    int max_rows = app->limits.sql_max_rows > 0 ? app->limits.sql_max_rows : 200;

    sql_guard_t guard = {
        .access = app->sql,
        .deadline_ns = sql_now_ns() + (int64_t)timeout_ms * 1000000,
    };
    sqlite3_set_authorizer(db, sql_auth_exec, &guard);
    sqlite3_progress_handler(db, SQL_PROGRESS_STEPS, sql_progress, &guard);

    fig_buf_t table = FIG_BUF_INIT, line = FIG_BUF_INIT;
    sqlite3_stmt *stmt = NULL;
    const char *tail = NULL;
    int ret = -1;
    int rc = sqlite3_prepare_v3(db, start, (int)qlen, 0, &stmt, &tail);
    if (rc != SQLITE_OK)
        goto sql_error;
    if (stmt == NULL) {
        fig_err_set(err, FIG_E_TOOL, "empty query: send one SQL statement");
        goto done;
    }
    if (tail != NULL && *sql_skip_ignorable(tail) != '\0') {
        fig_err_set(err, FIG_E_DENIED, "only one SQL statement per call");
        goto done;
    }
    int readonly = sqlite3_stmt_readonly(stmt);
    if (!readonly && (app->sql != APP_SQL_WRITE || !guard.saw_write)) {
        fig_err_set(err, FIG_E_DENIED, app->sql == APP_SQL_WRITE
                        ? "not authorized: only SELECT, INSERT, UPDATE and DELETE statements are allowed"
                        : "not authorized: this app's database is read-only");
        goto done;
    }

    int ncol = sqlite3_column_count(stmt);
    int truncated = 0;
    if (ncol > 0) {
        for (int i = 0; i < ncol; i++) {
            const char *name = sqlite3_column_name(stmt, i);
            if (i)
                fig_buf_append_str(&line, " | ");
            name = name ? name : "";
            sql_append_cell(&line, (const unsigned char *)name, strlen(name));
        }
        if (!sql_table_add(&table, &line)) {
            /* Absurdly long column aliases: keep what fits, on a character boundary. */
            size_t keep = sql_utf8_cut((const unsigned char *)line.data, line.len,
                                       SQL_MAX_OUTPUT_BYTES - SQL_FOOTER_RESERVE);
            fig_buf_append(&table, line.data, keep);
            truncated = 1;
        }
    }

    /* Rows: show up to max_rows that fit, then count the rest (bounded) so the model
     * knows how much it did not see. A write must run to completion, so a
     * non-read-only statement is never cut short by the counting bound. */
    long long shown = 0, more = 0;
    int stopped = truncated, over = 0, partial = 0;
    for (;;) {
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            if (rc == SQLITE_INTERRUPT && guard.timed_out && stopped && readonly) {
                partial = 1; /* the deadline ran out while only counting */
                break;
            }
            goto sql_error;
        }
        if (!stopped) {
            if (shown < max_rows) {
                fig_buf_reset(&line);
                for (int i = 0; i < ncol; i++) {
                    if (i)
                        fig_buf_append_str(&line, " | ");
                    sql_append_value(&line, stmt, i);
                }
                if (sql_table_add(&table, &line)) {
                    shown++;
                    continue;
                }
                truncated = 1;
            }
            stopped = 1;
        }
        more++;
        if (readonly && more > SQL_MAX_COUNTED_ROWS) {
            more = SQL_MAX_COUNTED_ROWS;
            over = 1;
            break;
        }
    }

    if (truncated)
        sql_table_footer(&table, "… output truncated");
    char foot[128];
    if (ncol > 0) {
        if (more == 0 && !partial)
            snprintf(foot, sizeof(foot), "(%lld rows)", shown);
        else if (over)
            snprintf(foot, sizeof(foot), "(%lld rows shown, more than %lld more rows)", shown, more);
        else if (partial)
            snprintf(foot, sizeof(foot), "(%lld rows shown, at least %lld more rows)", shown, more);
        else
            snprintf(foot, sizeof(foot), "(%lld rows shown, %lld more rows)", shown, more);
        sql_table_footer(&table, foot);
    }
    if (!readonly) {
        snprintf(foot, sizeof(foot), "(%lld rows changed)", (long long)sqlite3_changes64(db));
        sql_table_footer(&table, foot);
    } else if (ncol == 0) {
        sql_table_footer(&table, "ok");
    }
    fig_buf_append(out, table.data ? table.data : "", table.len);
    ret = 0;
    goto done;

sql_error:
    if (guard.timed_out)
        fig_err_set(err, FIG_E_TOOL, "query took longer than %d ms and was stopped", timeout_ms);
    else
        fig_err_set(err, rc == SQLITE_AUTH ? FIG_E_DENIED : FIG_E_DB, "%s", sqlite3_errmsg(db));
done:
    sqlite3_finalize(stmt);
    sqlite3_progress_handler(db, 0, NULL, NULL);
    sqlite3_set_authorizer(db, sql_auth_idle, (void *)(intptr_t)app->sql);
    fig_buf_free(&table);
    fig_buf_free(&line);
    return ret;
}

static char *sql_run(tool_ctx_t *ctx, const json_t *args, int *is_error)
{
    *is_error = 1;
    const json_t *q = json_is_object(args) && json_object_size(args) == 1 ? json_object_get(args, "query") : NULL;
    if (!json_is_string(q))
        return fig_strdup("error: expected {\"query\": \"<one SQL statement>\"}");
    if (ctx == NULL || ctx->app == NULL || ctx->app_db == NULL)
        return fig_strdup("error: the database is not available");
    if (strlen(json_string_value(q)) != json_string_length(q))
        return fig_strdup("error: the query contains a NUL character");

    fig_buf_t out = FIG_BUF_INIT;
    fig_err_t err;
    fig_err_clear(&err);
    if (tool_sql_exec(ctx->app_db, ctx->app, json_string_value(q), &out, &err) != 0) {
        fig_buf_reset(&out);
        fig_buf_appendf(&out, "error: %s", err.msg);
        return fig_buf_steal(&out);
    }
    *is_error = 0;
    return fig_buf_steal(&out);
}

const tool_t tool_sql = {
    .name = "sql",
    .description =
        "Run one SQLite statement on this app's database. The database is read-only: use SELECT "
        "(WITH and PRAGMA table_info are allowed too). Returns a text table: a header line of column "
        "names separated by \" | \", one line per row, then a count line such as \"(3 rows)\"; only "
        "the first rows are shown, the rest are counted. Errors come back as text starting with "
        "\"error: \". Use LIMIT and select only the columns you need.",
    .parameters_json =
        "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\",\"description\":"
        "\"Exactly one SQLite statement.\"}},\"required\":[\"query\"],\"additionalProperties\":false}",
    .runs_in_worker = 1,
    .run = sql_run,
};
