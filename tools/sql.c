/*
 * sql.c — the `sql` tool: one SQLite statement on the app's database, answered as a
 * compact text table (see tools.h for the format), and for write apps the one place
 * where the model changes data.
 *
 * The model's SQL is untrusted, so the policy is layered and positive:
 *  - read apps open the file SQLITE_OPEN_READONLY; nothing here can create a file;
 *  - the connection is hardened (no extension loading, DEFENSIVE, no ATTACH slots,
 *    small length limits) before any model text reaches it;
 *  - an authorizer allows only the actions a query needs (SELECT, READ, FUNCTION
 *    minus a denylist, RECURSIVE, a few read-only PRAGMAs); write apps add INSERT,
 *    UPDATE and DELETE on non-internal tables, and CREATE/DROP/ALTER of tables,
 *    indexes, views and triggers in the main database when app.json says "ddl": true.
 *    TEMP objects stay denied: they would outlive the call on this shared connection
 *    (a temp trigger could watch every later session). ATTACH, DETACH, transactions,
 *    savepoints and PRAGMA writes are never the model's;
 *  - after prepare, the statement must be the only one in the text, must be read-only
 *    for read apps, and for write apps a non-read-only statement must have passed
 *    the authorizer as a write or a schema change (VACUUM, for one, never consults
 *    the authorizer, so "not denied" is not enough);
 *  - a progress handler enforces a monotonic per-statement deadline.
 *
 * Writes: each write statement runs alone in BEGIN IMMEDIATE ... COMMIT, and the same
 * transaction bumps PRAGMA user_version, so app->data_version (the page cache key)
 * changes exactly when data does and survives a restart. figment's own statements
 * (BEGIN, the user_version read and write, COMMIT, ROLLBACK) pass the authorizer only
 * while guard.internal is set, which happens solely around those fixed strings; model
 * SQL is always prepared and (re)prepared with it clear. Any error rolls back, so a
 * failed call changed nothing.
 *
 * Confirmation: while preparing, the authorizer also records what the statement will
 * change (INSERT/UPDATE/DELETE per table, including trigger bodies, and schema
 * changes). If that matches an app.json "confirm" rule and the call is not confirmed,
 * the statement is dry-run inside a transaction that is rolled back, counting rows
 * per table with an update hook, and the tool answers TOOL_NEEDS_CONFIRM with the
 * exact statement and what it would do. The authorizer answers SQLITE_IGNORE to
 * DELETE (documented to only disable the truncate optimization), so even
 * "DELETE FROM t" reports its rows to the hook.
 *
 * The authorizer and progress handler state (deadline, what was seen) lives on the
 * stack of sql_exec() and is installed for the duration of the call, so the
 * connection needs no heap side-state; between calls a stateless authorizer with
 * the same policy stays installed, so the connection is never unguarded.
 *
 * tool_sql_exec() runs a statement without asking for confirmation (its caller has
 * decided: tests, replaying confirmed or verified writes); tool_sql.run applies the
 * app's confirm rules and keeps ctx->write_log.
 *
 * Error messages (err->msg) are what the model reads, without the "error: " prefix;
 * tool_sql.run adds it.
 */
#include "tools.h"

#include <stdatomic.h>
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
#define SQL_MIN_BUSY_TIMEOUT_MS 100
#define SQL_MAX_EFFECTS 16           /* distinct (operation, table) pairs recorded per statement */
#define SQL_MAX_NAME 128             /* longer table names are cut in effect records */

typedef enum { SQL_OP_INSERT = 0, SQL_OP_UPDATE, SQL_OP_DELETE, SQL_OP_DDL } sql_op_t;

static const char *const sql_op_names[] = {"INSERT", "UPDATE", "DELETE", "DDL"};

/* One thing the statement changes. */
typedef struct {
    sql_op_t op;
    int from_ddl;              /* the implied DELETE of a DROP TABLE: matched, not described */
    const char *verb;          /* DDL: "creates table", "drops index", ... */
    char object[SQL_MAX_NAME]; /* DDL: the object created/dropped/altered */
    char table[SQL_MAX_NAME];  /* the table written, or the DDL's table ("" for none) */
    long long rows;            /* dry run: rows the update hook saw */
} sql_effect_t;

typedef struct {
    app_sql_access_t access;
    int ddl;              /* app->sql_ddl */
    int internal;         /* figment's own fixed statement is being prepared or run */
    int64_t deadline_ns;  /* CLOCK_MONOTONIC */
    int timed_out;
    int saw_write;        /* an INSERT/UPDATE/DELETE on a user table was authorized */
    int saw_ddl;          /* a schema change was authorized (set before its implied writes) */
    size_t n_effects;
    int effects_overflow; /* more than SQL_MAX_EFFECTS: treated as matching every rule */
    long long hook_rows;  /* dry run: every row the update hook saw */
    sql_effect_t effects[SQL_MAX_EFFECTS];
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

static int sql_is_schema_table(const char *table)
{
    return table != NULL && (strcasecmp(table, "sqlite_master") == 0 || strcasecmp(table, "sqlite_temp_master") == 0 ||
                             strcasecmp(table, "sqlite_schema") == 0 || strcasecmp(table, "sqlite_temp_schema") == 0);
}

/* For a schema-change action: what it does, and which argument names the object
 * and which the table (ALTER TABLE passes the database name first). */
static const char *sql_ddl_verb(int action, int *object_arg, int *table_arg)
{
    *object_arg = 1;
    *table_arg = 1;
    switch (action) {
    case SQLITE_CREATE_TABLE: return "creates table";
    case SQLITE_DROP_TABLE: return "drops table";
    case SQLITE_CREATE_VIEW: return "creates view";
    case SQLITE_DROP_VIEW: return "drops view";
    case SQLITE_ALTER_TABLE: *object_arg = *table_arg = 2; return "alters table";
    case SQLITE_CREATE_INDEX: *table_arg = 2; return "creates index";
    case SQLITE_DROP_INDEX: *table_arg = 2; return "drops index";
    case SQLITE_CREATE_TRIGGER: *table_arg = 2; return "creates trigger";
    case SQLITE_DROP_TRIGGER: *table_arg = 2; return "drops trigger";
    default: return NULL;
    }
}

/* The policy itself; a1..a2 are the authorizer's first two strings. */
static int sql_policy(const sql_guard_t *g, int action, const char *a1, const char *a2)
{
    int write = g->access == APP_SQL_WRITE;
    int ddl = write && g->ddl;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_FUNCTION: /* a1 is NULL, a2 the function name */
        return sql_name_in(a2, sql_function_deny, sizeof(sql_function_deny) / sizeof(sql_function_deny[0]))
                   ? SQLITE_DENY : SQLITE_OK;
    case SQLITE_PRAGMA: /* a1 the pragma, a2 its argument or NULL */
        if (g->internal && write && a1 != NULL && strcasecmp(a1, "user_version") == 0)
            return SQLITE_OK;
        return sql_name_in(a1, sql_pragma_allow, sizeof(sql_pragma_allow) / sizeof(sql_pragma_allow[0]))
                   ? SQLITE_OK : SQLITE_DENY;
    case SQLITE_TRANSACTION: /* a1 "BEGIN", "COMMIT" or "ROLLBACK" */
        return g->internal && write ? SQLITE_OK : SQLITE_DENY;
    case SQLITE_UPDATE:
        /* Preparing a query on an eponymous virtual table (json_each, the pragma_*
         * functions) asks for UPDATE on sqlite_master while the table is set up, and
         * ALTER TABLE rewrites the schema rows the same way. Allowing it grants
         * nothing: SQLite itself refuses every write to the schema table unless
         * writable_schema is on, which the PRAGMA rule denies and DEFENSIVE
         * overrides. It never counts as a write (see sql_auth_exec). */
        if (sql_is_schema_table(a1))
            return SQLITE_OK;
        /* fall through */
    case SQLITE_INSERT:
    case SQLITE_DELETE: /* a1 the table */
        if (sql_is_schema_table(a1)) /* CREATE and DROP check these first; same reasoning */
            return ddl ? SQLITE_OK : SQLITE_DENY;
        if (sql_is_internal_table(a1)) /* sqlite_sequence, sqlite_stat1: only as part of a schema change */
            return ddl && g->saw_ddl ? SQLITE_OK : SQLITE_DENY;
        return write ? SQLITE_OK : SQLITE_DENY;
    case SQLITE_CREATE_TABLE:
    case SQLITE_DROP_TABLE:
    case SQLITE_CREATE_VIEW:
    case SQLITE_DROP_VIEW:
    case SQLITE_ALTER_TABLE:
    case SQLITE_CREATE_INDEX:
    case SQLITE_DROP_INDEX:
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_DROP_TRIGGER: {
        /* Main-database objects only: the TEMP variants are other action codes. */
        int oa, ta;
        sql_ddl_verb(action, &oa, &ta);
        const char *table = ta == 1 ? a1 : a2;
        return ddl && !sql_is_internal_table(table) ? SQLITE_OK : SQLITE_DENY;
    }
    case SQLITE_REINDEX:
        /* CREATE INDEX asks for it to build the new index; a REINDEX of its own the
         * model does not need. */
        return ddl && g->saw_ddl ? SQLITE_OK : SQLITE_DENY;
    default:
        /* TEMP objects, virtual tables, ATTACH/DETACH, savepoints, ANALYZE, REINDEX
         * and anything a future SQLite adds. */
        return SQLITE_DENY;
    }
}

/* Installed between calls: pure policy; pArg encodes the access level and the ddl
 * flag, so no statement-scoped permission (internal, saw_ddl) can be on. */
static int sql_auth_idle(void *arg, int action, const char *a1, const char *a2, const char *a3, const char *a4)
{
    (void)a3;
    (void)a4;
    intptr_t bits = (intptr_t)arg;
    sql_guard_t g = {.access = (app_sql_access_t)(bits & 0xff), .ddl = (int)(bits >> 8) & 1};
    return sql_policy(&g, action, a1, a2);
}

static intptr_t sql_idle_bits(const app_t *app)
{
    return (intptr_t)app->sql | (intptr_t)(app->sql_ddl ? 1 : 0) << 8;
}

static void sql_copy_name(char *dst, const char *src)
{
    snprintf(dst, SQL_MAX_NAME, "%s", src ? src : "");
}

static void sql_record(sql_guard_t *g, sql_op_t op, const char *table, const char *verb, const char *object,
                       int from_ddl)
{
    for (size_t i = 0; i < g->n_effects; i++) {
        sql_effect_t *e = &g->effects[i];
        if (e->op == op && e->verb == verb && strncasecmp(e->table, table ? table : "", SQL_MAX_NAME - 1) == 0 &&
            strncmp(e->object, object ? object : "", SQL_MAX_NAME - 1) == 0) {
            e->from_ddl &= from_ddl; /* described if any occurrence is a real write */
            return;
        }
    }
    if (g->n_effects == SQL_MAX_EFFECTS) {
        g->effects_overflow = 1;
        return;
    }
    sql_effect_t *e = &g->effects[g->n_effects++];
    memset(e, 0, sizeof(*e));
    e->op = op;
    e->from_ddl = from_ddl;
    e->verb = verb;
    sql_copy_name(e->table, table);
    sql_copy_name(e->object, object);
}

/* Installed during sql_exec(): the policy, plus a record of what the statement
 * changes. Statement-scoped state never outlives the call. */
static int sql_auth_exec(void *arg, int action, const char *a1, const char *a2, const char *a3, const char *a4)
{
    (void)a3;
    (void)a4;
    sql_guard_t *g = arg;
    int rc = sql_policy(g, action, a1, a2);
    if (rc != SQLITE_OK || g->internal)
        return rc;
    int oa, ta;
    const char *verb = sql_ddl_verb(action, &oa, &ta);
    if (verb != NULL) {
        g->saw_ddl = 1;
        sql_record(g, SQL_OP_DDL, ta == 1 ? a1 : a2, verb, oa == 1 ? a1 : a2, 0);
        return SQLITE_OK;
    }
    if ((action == SQLITE_INSERT || action == SQLITE_UPDATE || action == SQLITE_DELETE) && !sql_is_internal_table(a1)) {
        sql_op_t op = action == SQLITE_INSERT ? SQL_OP_INSERT : action == SQLITE_UPDATE ? SQL_OP_UPDATE : SQL_OP_DELETE;
        sql_record(g, op, a1, NULL, NULL, g->saw_ddl);
        if (g->saw_ddl)
            return SQLITE_OK; /* DROP TABLE's own DELETE check: IGNORE would skip the drop */
        g->saw_write = 1;
        if (action == SQLITE_DELETE)
            return SQLITE_IGNORE; /* rows deleted one by one, so the update hook counts them */
    }
    return SQLITE_OK;
}

static int sql_progress(void *arg)
{
    sql_guard_t *g = arg;
    if (g->internal)
        return 0; /* never cut figment's own COMMIT or ROLLBACK short */
    if (sql_now_ns() >= g->deadline_ns) {
        g->timed_out = 1;
        return 1;
    }
    return 0;
}

/* Runs one of figment's own fixed statements under the guard. */
static int sql_internal(sqlite3 *db, sql_guard_t *g, const char *sql)
{
    g->internal = 1;
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    g->internal = 0;
    return rc;
}

static void sql_rollback(sqlite3 *db, sql_guard_t *g)
{
    if (!sqlite3_get_autocommit(db))
        sql_internal(db, g, "ROLLBACK");
}

/* Reads PRAGMA user_version inside the open write transaction and stores the next
 * one; *version gets the new value. */
static int sql_bump_version(sqlite3 *db, sql_guard_t *g, long long *version)
{
    sqlite3_stmt *q = NULL;
    long long v = -1;
    g->internal = 1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    g->internal = 0;
    if (v < 0)
        return -1;
    /* user_version is a signed 32-bit header field; wrapping after 2^31 writes only
     * makes the in-memory counter stop following it (see sql_store_version). */
    long long next = v < INT32_MAX ? v + 1 : 1;
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", next);
    if (sql_internal(db, g, sql) != SQLITE_OK)
        return -1;
    *version = next;
    return 0;
}

/* app is shared and immutable except data_version, the one _Atomic field meant to
 * be written after start (app.h), hence the cast. Workers commit in some order but
 * may store out of order, so the value only ever grows. */
static void sql_store_version(const app_t *app, long long version)
{
    _Atomic unsigned long long *dv = &((app_t *)app)->data_version;
    unsigned long long want = (unsigned long long)version;
    unsigned long long cur = atomic_load(dv);
    while (cur < want && !atomic_compare_exchange_weak(dv, &cur, want))
        ;
}

sqlite3 *tool_sql_open(const app_t *app, fig_err_t *err)
{
    if (app == NULL || app->db_path == NULL || app->sql == APP_SQL_NONE) {
        fig_err_set(err, FIG_E_CONFIG, "the sql tool is not enabled for this app");
        return NULL;
    }
    int write = app->sql == APP_SQL_WRITE;
    int flags = SQLITE_OPEN_NOMUTEX | (write ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY);
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
    /* A writer waits for another about as long as a statement may run. */
    int busy_ms = app->limits.sql_timeout_ms > SQL_MIN_BUSY_TIMEOUT_MS ? app->limits.sql_timeout_ms
                                                                       : SQL_MIN_BUSY_TIMEOUT_MS;
    sqlite3_busy_timeout(db, busy_ms);
    if (write) {
        /* Seeded databases are WAL already (persistent); this covers others. Readers
         * then never block the writer. Done before the authorizer is installed. */
        sqlite3_stmt *q = NULL;
        int wal = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &q, NULL) == SQLITE_OK &&
                  sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0) != NULL &&
                  strcmp((const char *)sqlite3_column_text(q, 0), "wal") == 0;
        sqlite3_finalize(q);
        if (!wal) {
            fig_err_set(err, FIG_E_DB, "%s: cannot switch to WAL: %s", app->db_path, sqlite3_errmsg(db));
            sqlite3_close(db);
            return NULL;
        }
    }
    sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, SQL_MAX_VALUE_BYTES);
    sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, SQL_MAX_QUERY_BYTES);
    sqlite3_set_authorizer(db, sql_auth_idle, (void *)sql_idle_bits(app));
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

/* Does a confirm rule with tool "sql" cover what the statement changes? */
static int sql_needs_confirm(const app_t *app, const sql_guard_t *g)
{
    for (size_t r = 0; r < app->n_confirm; r++) {
        const app_confirm_rule_t *rule = &app->confirm[r];
        if (rule->tool == NULL || strcmp(rule->tool, "sql") != 0)
            continue;
        if (g->effects_overflow)
            return 1;
        for (size_t i = 0; i < g->n_effects; i++) {
            const sql_effect_t *e = &g->effects[i];
            if (rule->operation != NULL && strcmp(rule->operation, sql_op_names[e->op]) != 0)
                continue;
            int table_ok = rule->tables == NULL;
            for (size_t t = 0; !table_ok && t < rule->n_tables; t++)
                table_ok = strcasecmp(rule->tables[t], e->table) == 0;
            if (table_ok)
                return 1;
        }
    }
    return 0;
}

/* Dry run: update hook during the rolled-back run. */
static void sql_count_hook(void *arg, int op, const char *dbname, const char *table, sqlite3_int64 rowid)
{
    (void)dbname;
    (void)rowid;
    sql_guard_t *g = arg;
    sql_op_t o = op == SQLITE_INSERT ? SQL_OP_INSERT : op == SQLITE_UPDATE ? SQL_OP_UPDATE : SQL_OP_DELETE;
    g->hook_rows++;
    for (size_t i = 0; i < g->n_effects; i++) {
        sql_effect_t *e = &g->effects[i];
        if (e->op == o && strcasecmp(e->table, table) == 0) {
            e->rows++;
            return;
        }
    }
}

/* The statement as the model wrote it, without trailing blanks and semicolons. */
static size_t sql_stmt_len(const char *start, const char *tail)
{
    size_t n = tail != NULL ? (size_t)(tail - start) : strlen(start);
    while (n > 0 && (start[n - 1] == ' ' || start[n - 1] == '\t' || start[n - 1] == '\n' || start[n - 1] == '\r' ||
                     start[n - 1] == '\f' || start[n - 1] == '\v' || start[n - 1] == ';'))
        n--;
    return n;
}

/* "This deletes 37 rows from messages." for each recorded effect. */
static void sql_describe(const sql_guard_t *g, long long changes, fig_buf_t *out)
{
    /* The update hook skips WITHOUT ROWID tables: then the statement's own count is
     * the best there is, and it belongs to its first write. */
    int use_changes = g->hook_rows == 0 && changes > 0;
    for (size_t i = 0; i < g->n_effects; i++) {
        const sql_effect_t *e = &g->effects[i];
        if (e->from_ddl)
            continue;
        if (e->op == SQL_OP_DDL) {
            if (e->table[0] != '\0' && strcasecmp(e->table, e->object) != 0)
                fig_buf_appendf(out, "\nThis %s %s on %s.", e->verb, e->object, e->table);
            else
                fig_buf_appendf(out, "\nThis %s %s.", e->verb, e->object);
            continue;
        }
        long long rows = e->rows;
        if (use_changes) {
            rows = changes;
            use_changes = 0;
        }
        static const char *const fmt[] = {"\nThis inserts %lld %s into %s.", "\nThis updates %lld %s in %s.",
                                          "\nThis deletes %lld %s from %s."};
        fig_buf_appendf(out, fmt[e->op], rows, rows == 1 ? "row" : "rows", e->table);
    }
    if (g->effects_overflow)
        fig_buf_append_str(out, "\nIt also changes other tables.");
}

static void sql_set_error(sqlite3 *db, const sql_guard_t *g, int rc, int timeout_ms, fig_err_t *err)
{
    if (g->timed_out)
        fig_err_set(err, FIG_E_TOOL, "query took longer than %d ms and was stopped", timeout_ms);
    else
        fig_err_set(err, rc == SQLITE_AUTH ? FIG_E_DENIED : FIG_E_DB, "%s", sqlite3_errmsg(db));
}

/* Runs stmt to the end inside a transaction that is rolled back, and describes what
 * it would have changed: the confirmation text. */
static int sql_dry_run(sqlite3 *db, sql_guard_t *g, sqlite3_stmt *stmt, const char *text, size_t text_len,
                       int timeout_ms, fig_buf_t *out, fig_err_t *err)
{
    int rc = sql_internal(db, g, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK) {
        sql_set_error(db, g, rc, timeout_ms, err);
        return -1;
    }
    g->hook_rows = 0;
    sqlite3_update_hook(db, sql_count_hook, g);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        ;
    long long changes = sqlite3_changes64(db);
    sqlite3_update_hook(db, NULL, NULL);
    if (rc != SQLITE_DONE)
        sql_set_error(db, g, rc, timeout_ms, err); /* before ROLLBACK resets the message */
    sqlite3_reset(stmt);
    sql_rollback(db, g);
    if (rc != SQLITE_DONE)
        return -1;
    fig_buf_append(out, text, text_len);
    fig_buf_append_str(out, "\n");
    sql_describe(g, changes, out);
    return 0;
}

/* The tool itself. confirmed: run even when a confirm rule matches; otherwise a
 * match leaves *needs_confirm = 1 and out holds what would run. */
static int sql_exec(sqlite3 *db, const app_t *app, const char *query, int confirmed, fig_buf_t *write_log,
                    fig_buf_t *out, int *needs_confirm, fig_err_t *err)
{
    *needs_confirm = 0;
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

    sql_guard_t guard;
    memset(&guard, 0, sizeof(guard));
    guard.access = app->sql;
    guard.ddl = app->sql_ddl;
    guard.deadline_ns = sql_now_ns() + (int64_t)timeout_ms * 1000000;
    sqlite3_set_authorizer(db, sql_auth_exec, &guard);
    sqlite3_progress_handler(db, SQL_PROGRESS_STEPS, sql_progress, &guard);

    fig_buf_t table = FIG_BUF_INIT, line = FIG_BUF_INIT;
    sqlite3_stmt *stmt = NULL;
    const char *tail = NULL;
    int ret = -1, in_txn = 0;
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
    size_t text_len = sql_stmt_len(start, tail);
    int readonly = sqlite3_stmt_readonly(stmt);
    if (!readonly && (app->sql != APP_SQL_WRITE || !(guard.saw_write || guard.saw_ddl))) {
        fig_err_set(err, FIG_E_DENIED, app->sql != APP_SQL_WRITE
                        ? "not authorized: this app's database is read-only"
                        : app->sql_ddl
                        ? "not authorized: only SELECT, INSERT, UPDATE, DELETE and CREATE, DROP or ALTER of tables, "
                          "indexes, views and triggers are allowed"
                        : "not authorized: only SELECT, INSERT, UPDATE and DELETE statements are allowed");
        goto done;
    }

    if (!readonly) {
        if (!confirmed && sql_needs_confirm(app, &guard)) {
            if (sql_dry_run(db, &guard, stmt, start, text_len, timeout_ms, out, err) != 0)
                goto done;
            *needs_confirm = 1;
            ret = 0;
            goto done;
        }
        rc = sql_internal(db, &guard, "BEGIN IMMEDIATE");
        if (rc != SQLITE_OK)
            goto sql_error;
        in_txn = 1;
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

    long long changes = sqlite3_changes64(db); /* before figment's own statements */
    if (in_txn) {
        long long version = 0;
        sqlite3_reset(stmt); /* no pending statement at COMMIT */
        if (sql_bump_version(db, &guard, &version) != 0 || (rc = sql_internal(db, &guard, "COMMIT")) != SQLITE_OK) {
            rc = sqlite3_errcode(db);
            goto sql_error;
        }
        in_txn = 0;
        sql_store_version(app, version);
        if (write_log != NULL) {
            fig_buf_append(write_log, start, text_len);
            fig_buf_append(write_log, "", 1);
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
    if (!readonly && guard.saw_ddl && !guard.saw_write) {
        sql_table_footer(&table, "ok (schema changed)");
    } else if (!readonly) {
        snprintf(foot, sizeof(foot), "(%lld rows changed)", changes);
        sql_table_footer(&table, foot);
    } else if (ncol == 0) {
        sql_table_footer(&table, "ok");
    }
    fig_buf_append(out, table.data ? table.data : "", table.len);
    ret = 0;
    goto done;

sql_error:
    sql_set_error(db, &guard, rc, timeout_ms, err);
done:
    if (in_txn) {
        sqlite3_reset(stmt);
        sql_rollback(db, &guard);
    }
    sqlite3_finalize(stmt);
    sqlite3_progress_handler(db, 0, NULL, NULL);
    sqlite3_set_authorizer(db, sql_auth_idle, (void *)sql_idle_bits(app));
    fig_buf_free(&table);
    fig_buf_free(&line);
    return ret;
}

int tool_sql_exec(sqlite3 *db, const app_t *app, const char *query, fig_buf_t *out, fig_err_t *err)
{
    int needs_confirm = 0;
    return sql_exec(db, app, query, 1, NULL, out, &needs_confirm, err);
}

static char *sql_run(tool_ctx_t *ctx, const json_t *args, int *status)
{
    *status = TOOL_ERROR;
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
    int needs_confirm = 0;
    if (sql_exec(ctx->app_db, ctx->app, json_string_value(q), ctx->confirmed, ctx->write_log, &out, &needs_confirm,
                 &err) != 0) {
        fig_buf_reset(&out);
        fig_buf_appendf(&out, "error: %s", err.msg);
        return fig_buf_steal(&out);
    }
    *status = needs_confirm ? TOOL_NEEDS_CONFIRM : TOOL_OK;
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
    .kind = TOOL_IN_WORKER,
    .run = sql_run,
};
