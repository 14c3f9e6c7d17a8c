/*
 * test_sql.c — the sql tool (policy, format, limits) and the tool registry.
 *
 * Each test gets a fresh temp dir with a small seeded database, opened through
 * tool_sql_open() exactly as a worker would. Apps are built by hand from app.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools.h"

typedef struct {
    char dir[64];
    char path[128];
    app_t app;
    sqlite3 *db; /* from tool_sql_open */
} fx_t;

static const char *seed_sql =
    "CREATE TABLE msg(id INTEGER PRIMARY KEY, subject TEXT, unread INTEGER, body TEXT, data BLOB, score REAL);"
    "INSERT INTO msg VALUES(1, 'Hello', 1, 'hi', NULL, 1.5);"
    "INSERT INTO msg VALUES(2, 'Lunch', 0, 'line1' || char(10) || 'line2', x'00010203', NULL);"
    "INSERT INTO msg VALUES(3, 'a|b', 1, 'tab' || char(9) || 'here' || char(13), NULL, 2.0);"
    "CREATE TABLE big(n INTEGER);"
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 500) INSERT INTO big SELECT x FROM c;"
    "CREATE TABLE log(id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT);"
    "CREATE INDEX msg_subject ON msg(subject);";

static void fx_app(app_t *app, const char *path, app_sql_access_t access)
{
    memset(app, 0, sizeof(*app));
    app->name = "t";
    app->title = "Test";
    app->db_path = (char *)path;
    app->sql = access;
    app->tool_set_state = 1;
    app->limits.max_tool_rounds = 8;
    app->limits.deadline_ms = 60000;
    app->limits.max_state_bytes = 16384;
    app->limits.sql_max_rows = 200;
    app->limits.sql_timeout_ms = 2000;
}

static fx_t *fx_new(app_sql_access_t access)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    strcpy(fx->dir, "/tmp/figment-test-sql-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof(fx->path), "%s/app.db", fx->dir);
    sqlite3 *seed = NULL;
    assert_int_equal(sqlite3_open(fx->path, &seed), SQLITE_OK);
    assert_int_equal(sqlite3_exec(seed, seed_sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(seed);
    fx_app(&fx->app, fx->path, access);
    fig_err_t err;
    fx->db = tool_sql_open(&fx->app, &err);
    assert_non_null(fx->db);
    return fx;
}

static void fx_free(fx_t *fx)
{
    sqlite3_close(fx->db);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
}

/* Runs q; returns the output (caller frees) or NULL with *msg filled on error. */
static char *run(fx_t *fx, const char *q, char *msg)
{
    fig_buf_t out = FIG_BUF_INIT;
    fig_err_t err;
    fig_err_clear(&err);
    if (tool_sql_exec(fx->db, &fx->app, q, &out, &err) != 0) {
        assert_int_equal(out.len, 0); /* nothing half-written on error */
        if (msg)
            strcpy(msg, err.msg);
        fig_buf_free(&out);
        return NULL;
    }
    return fig_buf_steal(&out);
}

static void expect_output(fx_t *fx, const char *q, const char *want)
{
    char msg[512] = "";
    char *got = run(fx, q, msg);
    if (got == NULL)
        fail_msg("%s: %s", q, msg);
    assert_string_equal(got, want);
    free(got);
}

static void expect_error(fx_t *fx, const char *q, const char *want)
{
    char msg[512] = "";
    char *got = run(fx, q, msg);
    if (got != NULL)
        fail_msg("%s: expected an error, got %s", q, got);
    if (want != NULL)
        assert_string_equal(msg, want);
    else
        assert_true(msg[0] != '\0');
}

/* Reads a single integer through an independent connection. */
static long long probe(const char *path, const char *q)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int file_exists(const char *dir, const char *name)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static const char *last_line(const char *s)
{
    const char *nl = strrchr(s, '\n');
    return nl ? nl + 1 : s;
}

static int count_lines(const char *s)
{
    int n = 1;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_select_format(void **state)
{
    fx_t *fx = fx_new(APP_SQL_READ);
    expect_output(fx, "SELECT id, subject, unread FROM msg ORDER BY id",
                  "id | subject | unread\n1 | Hello | 1\n2 | Lunch | 0\n3 | a\\|b | 1\n(3 rows)");
    /* surrounding whitespace, comments and semicolons are fine */
    expect_output(fx, "  -- list\n SELECT id FROM msg WHERE id = 1 ; /* done */ ;\n", "id\n1\n(1 rows)");
    expect_output(fx, "SELECT id FROM msg WHERE id > 99", "id\n(0 rows)");
    expect_output(fx, "SELECT count(*) AS n, 'x|y' AS \"a|b\" FROM msg", "n | a\\|b\n3 | x\\|y\n(1 rows)");
    fx_free(fx);
}

static void test_values_and_escaping(void **state)
{
    fx_t *fx = fx_new(APP_SQL_READ);
    expect_output(fx, "SELECT body, data, score FROM msg ORDER BY id",
                  "body | data | score\n"
                  "hi | NULL | 1.5\n"
                  "line1\\nline2 | <blob 4 bytes> | NULL\n"
                  "tab\\there\\r | NULL | 2.0\n"
                  "(3 rows)");
    /* a long cell is cut at 2000 bytes with an ellipsis, on a UTF-8 boundary */
    char *got = run(fx, "SELECT printf('%.3000c', 'y') AS v", NULL);
    assert_non_null(got);
    assert_int_equal(strlen(got), strlen("v\n") + 2000 + strlen("…") + strlen("\n(1 rows)"));
    assert_non_null(strstr(got, "yyy…\n(1 rows)"));
    free(got);
    got = run(fx, "SELECT 'a' || replace(printf('%.1500c', 'x'), 'x', 'é') AS v", NULL); /* 1 + 3000 bytes */
    assert_non_null(got);
    const char *cell = got + 2;
    const char *ell = strstr(cell, "…");
    assert_non_null(ell);
    assert_int_equal(ell - cell, 1999); /* 'a' + 999 two-byte characters, never half of one */
    free(got);
    fx_free(fx);
}

static void test_row_cap(void **state)
{
    fx_t *fx = fx_new(APP_SQL_READ);
    char *got = run(fx, "SELECT n FROM big ORDER BY n", NULL);
    assert_non_null(got);
    assert_int_equal(count_lines(got), 1 + 200 + 1);
    assert_string_equal(last_line(got), "(200 rows shown, 300 more rows)");
    assert_non_null(strstr(got, "\n200\n(200"));
    assert_null(strstr(got, "\n201\n"));
    free(got);

    fx->app.limits.sql_max_rows = 3;
    expect_output(fx, "SELECT n FROM big WHERE n <= 3", "n\n1\n2\n3\n(3 rows)");
    expect_output(fx, "SELECT n FROM big WHERE n <= 4", "n\n1\n2\n3\n(3 rows shown, 1 more rows)");
    /* counting stops at a bound */
    expect_output(fx, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 200000) SELECT x FROM c",
                  "x\n1\n2\n3\n(3 rows shown, more than 100000 more rows)");
    fx_free(fx);
}

static void test_output_cap(void **state)
{
    fx_t *fx = fx_new(APP_SQL_READ);
    char *got = run(fx, "SELECT n, printf('%.1000c', 'x') AS pad FROM big ORDER BY n", NULL);
    assert_non_null(got);
    assert_true(strlen(got) <= 65536);
    assert_true(strlen(got) > 60000);
    assert_non_null(strstr(got, "\n… output truncated\n("));
    long long shown = -1, more = -1;
    assert_int_equal(sscanf(last_line(got), "(%lld rows shown, %lld more rows)", &shown, &more), 2);
    assert_true(shown > 50 && shown < 70);
    assert_int_equal(shown + more, 500);
    free(got);
    fx_free(fx);
}

static void test_read_refusals(void **state)
{
    fx_t *fx = fx_new(APP_SQL_READ);
    char attach[256], vacuum[256];
    snprintf(attach, sizeof(attach), "ATTACH '%s/other.db' AS other", fx->dir);
    snprintf(vacuum, sizeof(vacuum), "VACUUM INTO '%s/copy.db'", fx->dir);
    const char *refused[] = {
        "INSERT INTO msg(subject) VALUES('x')",
        "UPDATE msg SET unread = 0",
        "DELETE FROM msg",
        "REPLACE INTO msg(id, subject) VALUES(1, 'x')",
        "DROP TABLE msg",
        "CREATE TABLE x(a)",
        "CREATE TEMP TABLE x(a)",
        "CREATE TEMP VIEW v AS SELECT 1",
        "ALTER TABLE msg ADD COLUMN z",
        "CREATE INDEX i ON big(n)",
        attach,
        "DETACH main",
        "BEGIN",
        "SAVEPOINT s",
        "ANALYZE",
        "REINDEX",
        "VACUUM",
        vacuum,
        "PRAGMA journal_mode=DELETE",
        "PRAGMA journal_mode",
        "PRAGMA writable_schema=1",
        "PRAGMA user_version=5",
        "PRAGMA foreign_keys=ON",
        "SELECT * FROM pragma_journal_mode",
        "SELECT load_extension('/tmp/nope')",
        "SELECT LOAD_EXTENSION('/tmp/nope', 'init')",
        "SELECT fts3_tokenizer('simple')",
        "CREATE VIRTUAL TABLE f USING fts5(a)",
    };
    char msg[512];
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        msg[0] = '\0';
        char *got = run(fx, refused[i], msg);
        if (got != NULL)
            fail_msg("not refused: %s -> %s", refused[i], got);
        if (strncmp(msg, "not authorized", 14) != 0 && strstr(msg, "no such function") == NULL)
            fail_msg("%s: unexpected message %s", refused[i], msg);
    }
    expect_error(fx, "SELECT 1; DROP TABLE msg", "only one SQL statement per call");
    expect_error(fx, "SELECT 1; SELECT 2", "only one SQL statement per call");
    expect_error(fx, "SELECT 1; -- fine\n DELETE FROM msg", "only one SQL statement per call");
    expect_error(fx, "SELECT * FROM nope", "no such table: nope");
    expect_error(fx, "", "empty query: send one SQL statement");
    expect_error(fx, " ; -- nothing\n /* here */", "empty query: send one SQL statement");
    expect_error(fx, "SELEC 1", NULL);

    /* nothing changed, nothing created */
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM msg"), 3);
    assert_int_equal(probe(fx->path, "SELECT sum(unread) FROM msg"), 2);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM sqlite_master"), 5);
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 0);
    assert_false(file_exists(fx->dir, "other.db"));
    assert_false(file_exists(fx->dir, "copy.db"));
    /* the connection still works after all that */
    expect_output(fx, "SELECT count(*) AS n FROM msg", "n\n3\n(1 rows)");
    fx_free(fx);
}

static void test_pragma_allowlist(void **state)
{
    fx_t *fx = fx_new(APP_SQL_READ);
    char *got = run(fx, "PRAGMA table_info(msg)", NULL);
    assert_non_null(got);
    assert_non_null(strstr(got, "cid | name | type | notnull | dflt_value | pk\n0 | id | INTEGER | 0 | NULL | 1\n"));
    assert_string_equal(last_line(got), "(6 rows)");
    free(got);
    expect_output(fx, "SELECT name FROM pragma_table_info('big')", "name\nn\n(1 rows)");
    expect_output(fx, "PRAGMA index_list(big)", "seq | name | unique | origin | partial\n(0 rows)");
    got = run(fx, "PRAGMA index_info(msg_subject)", NULL);
    assert_non_null(got);
    assert_string_equal(last_line(got), "(1 rows)");
    free(got);
    /* other eponymous virtual tables and JSON functions keep working */
    expect_output(fx, "SELECT value FROM json_each('[1,\"a\"]')", "value\n1\na\n(2 rows)");
    expect_output(fx, "SELECT json_extract('{\"a\":[5]}', '$.a[0]') AS v", "v\n5\n(1 rows)");
    expect_output(fx, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 3) SELECT sum(x) AS s FROM c",
                  "s\n6\n(1 rows)");
    fx_free(fx);
}

static void test_timeout(void **state)
{
    fx_t *fx = fx_new(APP_SQL_READ);
    fx->app.limits.sql_timeout_ms = 100;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_error(fx, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c",
                 "query took longer than 100 ms and was stopped");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(elapsed >= 0.09);
    assert_true(elapsed < 1.0);
    /* the deadline is per statement: the next one runs normally */
    expect_output(fx, "SELECT 1 AS one", "one\n1\n(1 rows)");

    /* a deadline that runs out while only counting rows past the cap is not an error */
    fx->app.limits.sql_max_rows = 2;
    fx->app.limits.sql_timeout_ms = 300;
    /* ~50k steps per row, 500 rows: far more than 300 ms in all, a few ms per row */
    char *got = run(fx, "SELECT n AS x, (SELECT count(*) FROM big a, big b WHERE a.n <= 100 AND a.n + b.n > x.n) AS c "
                        "FROM big x", NULL);
    assert_non_null(got);
    if (strncmp(got, "x | c\n1 | 50000\n2 | 49999\n(2 rows shown, at least ", 46) != 0)
        fail_msg("got %s", got);
    free(got);
    fx_free(fx);
}

static void test_write_app(void **state)
{
    fx_t *fx = fx_new(APP_SQL_WRITE);
    expect_output(fx, "UPDATE msg SET unread = 0 WHERE unread = 1", "(2 rows changed)");
    assert_int_equal(probe(fx->path, "SELECT sum(unread) FROM msg"), 0);
    expect_output(fx, "INSERT INTO log(what) VALUES('a'), ('b')", "(2 rows changed)");
    assert_int_equal(probe(fx->path, "SELECT max(id) FROM log"), 2);
    expect_output(fx, "UPDATE msg SET unread = 1 WHERE id = 2 RETURNING id, unread", "id | unread\n2 | 1\n(1 rows)\n(1 rows changed)");
    expect_output(fx, "DELETE FROM log WHERE id = 1", "(1 rows changed)");
    expect_output(fx, "SELECT what FROM log", "what\nb\n(1 rows)");

    char attach[256], vacuum[256];
    snprintf(attach, sizeof(attach), "ATTACH '%s/other.db' AS other", fx->dir);
    snprintf(vacuum, sizeof(vacuum), "VACUUM INTO '%s/copy.db'", fx->dir);
    const char *refused[] = {
        "DROP TABLE msg", "CREATE TABLE x(a)", "CREATE TEMP TABLE x(a)", "ALTER TABLE msg RENAME TO m",
        "CREATE TRIGGER t AFTER INSERT ON log BEGIN DELETE FROM msg; END", "DROP INDEX msg_subject",
        attach, "DETACH main", "BEGIN", "COMMIT", "VACUUM", vacuum, "PRAGMA writable_schema=1",
        "PRAGMA journal_mode=DELETE", "PRAGMA user_version=7", "DELETE FROM sqlite_sequence",
        "UPDATE sqlite_master SET sql = ''", "UPDATE sqlite_schema SET sql = ''",
        "INSERT INTO sqlite_master VALUES('table', 'x', 'x', 0, '')", "SELECT load_extension('/tmp/nope')",
    };
    char msg[512];
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        msg[0] = '\0';
        char *got = run(fx, refused[i], msg);
        if (got != NULL)
            fail_msg("not refused: %s -> %s", refused[i], got);
        if (strncmp(msg, "not authorized", 14) != 0 && strstr(msg, "may not be modified") == NULL)
            fail_msg("%s: unexpected message %s", refused[i], msg);
    }
    expect_error(fx, "UPDATE msg SET unread = 5; DROP TABLE msg", "only one SQL statement per call");
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM sqlite_master"), 5);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM sqlite_sequence"), 1);
    /* the four writes above committed, each bumping the version; the refusals did not */
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 4);
    assert_int_equal(fx->app.data_version, 4);
    assert_int_equal(probe(fx->path, "SELECT max(unread) FROM msg"), 1);
    assert_false(file_exists(fx->dir, "other.db"));
    assert_false(file_exists(fx->dir, "copy.db"));
    fx_free(fx);
}

/* ---- writes: transactions, user_version, DDL, confirmation, write log ---- */

static const char *probe_text(const char *path, const char *q, char *buf, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return buf;
}

/* Runs q through tool_sql.run as the agent would; returns the text (caller frees). */
static char *run_tool(fx_t *fx, const char *q, int confirmed, fig_buf_t *log, int *status)
{
    tool_ctx_t ctx = {.app = &fx->app, .app_db = fx->db, .confirmed = confirmed, .write_log = log};
    json_t *args = json_pack("{s:s}", "query", q);
    *status = -1;
    char *r = tool_sql.run(&ctx, args, status);
    json_decref(args);
    assert_non_null(r);
    return r;
}

static void expect_tool(fx_t *fx, const char *q, int confirmed, fig_buf_t *log, int want_status, const char *want)
{
    int status;
    char *r = run_tool(fx, q, confirmed, log, &status);
    if (status != want_status || strcmp(r, want) != 0)
        fail_msg("%s\n  got (%d): %s\n  want (%d): %s", q, status, r, want_status, want);
    free(r);
}

static void test_write_transaction_version(void **state)
{
    fx_t *fx = fx_new(APP_SQL_WRITE);
    char buf[64];
    assert_string_equal(probe_text(fx->path, "PRAGMA journal_mode", buf, sizeof(buf)), "wal");
    int v = -1;
    assert_int_equal(sqlite3_db_config(fx->db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, -1, &v), SQLITE_OK);
    assert_int_equal(v, 0);
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 0);
    assert_int_equal(fx->app.data_version, 0);

    expect_output(fx, "INSERT INTO log(what) VALUES('a'), ('b')", "(2 rows changed)");
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 1);
    assert_int_equal(fx->app.data_version, 1);
    expect_output(fx, "UPDATE msg SET unread = 0 WHERE unread = 1", "(2 rows changed)");
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 2);
    assert_int_equal(fx->app.data_version, 2);
    expect_output(fx, "DELETE FROM log WHERE what = 'a'", "(1 rows changed)");
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 3);
    assert_int_equal(fx->app.data_version, 3);
    /* a write that matches nothing still commits (and bumps: cheap, and always right) */
    expect_output(fx, "DELETE FROM log WHERE id = 999", "(0 rows changed)");
    assert_int_equal(fx->app.data_version, 4);
    /* reads do not bump */
    expect_output(fx, "SELECT count(*) AS n FROM log", "n\n1\n(1 rows)");
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 4);
    assert_int_equal(fx->app.data_version, 4);
    /* RETURNING: the table like a query, then the count */
    expect_output(fx, "INSERT INTO log(what) VALUES('c') RETURNING id, what", "id | what\n3 | c\n(1 rows)\n(1 rows changed)");
    assert_int_equal(fx->app.data_version, 5);
    assert_int_equal(sqlite3_get_autocommit(fx->db), 1);

    /* data_version only grows: a worker storing an older version late changes nothing */
    fx->app.data_version = 100;
    expect_output(fx, "UPDATE log SET what = 'd' WHERE id = 3", "(1 rows changed)");
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 6);
    assert_int_equal(fx->app.data_version, 100);

    /* another connection sees every committed write */
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM log"), 2);
    assert_int_equal(probe(fx->path, "SELECT sum(unread) FROM msg"), 0);
    fx_free(fx);
}

static void test_write_rollback(void **state)
{
    fx_t *fx = fx_new(APP_SQL_WRITE);
    expect_output(fx, "UPDATE msg SET unread = 5 WHERE id = 1", "(1 rows changed)");
    assert_int_equal(fx->app.data_version, 1);
    /* constraint errors part-way through a multi-row statement */
    expect_error(fx, "INSERT INTO msg(id, subject) VALUES(10, 'new'), (1, 'dup')", "UNIQUE constraint failed: msg.id");
    expect_error(fx, "UPDATE msg SET id = id + 1", "UNIQUE constraint failed: msg.id");
    /* a runtime error after rows were already deleted */
    expect_error(fx, "DELETE FROM big WHERE n < 10 OR abs(CASE WHEN n = 20 THEN -9223372036854775807 - 1 ELSE 1 END) < 0",
                 "integer overflow");
    expect_error(fx, "INSERT INTO nope VALUES(1)", "no such table: nope");
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM msg"), 3);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM big"), 500);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM msg WHERE id = 10"), 0);
    assert_int_equal(probe(fx->path, "SELECT unread FROM msg WHERE id = 1"), 5);
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 1);
    assert_int_equal(fx->app.data_version, 1);
    assert_int_equal(sqlite3_get_autocommit(fx->db), 1);

    /* the time cap stops a slow write, which then changes nothing */
    fx->app.limits.sql_timeout_ms = 100;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_error(fx, "INSERT INTO big SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) "
                     "SELECT x FROM c)",
                 "query took longer than 100 ms and was stopped");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(elapsed >= 0.09 && elapsed < 2.0);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM big"), 500);
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 1);
    assert_int_equal(fx->app.data_version, 1);
    assert_int_equal(sqlite3_get_autocommit(fx->db), 1);
    /* and the connection goes on */
    expect_output(fx, "DELETE FROM big WHERE n > 490", "(10 rows changed)");
    assert_int_equal(fx->app.data_version, 2);
    fx_free(fx);
}

/* Every way the model might reach past INSERT/UPDATE/DELETE (and DDL when allowed). */
static void expect_refused(fx_t *fx, const char *q)
{
    char msg[512] = "";
    char *got = run(fx, q, msg);
    if (got != NULL)
        fail_msg("not refused: %s -> %s", q, got);
    if (strncmp(msg, "not authorized", 14) != 0 && strstr(msg, "may not be modified") == NULL &&
        strstr(msg, "may not be indexed") == NULL && strstr(msg, "no such function") == NULL)
        fail_msg("%s: unexpected message %s", q, msg);
}

static void test_write_denials(void **state)
{
    for (int ddl = 0; ddl <= 1; ddl++) {
        fx_t *fx = fx_new(APP_SQL_WRITE);
        fx->app.sql_ddl = ddl;
        expect_output(fx, "INSERT INTO log(what) VALUES('first')", "(1 rows changed)"); /* a sqlite_sequence row */
        char attach[256];
        snprintf(attach, sizeof(attach), "ATTACH '%s/other.db' AS other", fx->dir);
        const char *refused[] = {
            attach, "DETACH main", "BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK", "END", "SAVEPOINT s",
            "RELEASE s", "ROLLBACK TO s", "PRAGMA writable_schema=1", "PRAGMA writable_schema", "PRAGMA user_version=5",
            "PRAGMA main.user_version = 5", "PRAGMA user_version", "PRAGMA schema_version=1", "PRAGMA foreign_keys=OFF",
            "PRAGMA journal_mode=DELETE", "PRAGMA trusted_schema=1", "PRAGMA query_only=0",
            "SELECT load_extension('/tmp/nope')", "VACUUM", "ANALYZE", "REINDEX", "DELETE FROM sqlite_sequence",
            "INSERT INTO sqlite_sequence VALUES('x', 5)", "UPDATE sqlite_master SET sql = ''",
            "DELETE FROM sqlite_master", "CREATE TEMP TABLE x(a)", "CREATE TEMP VIEW v AS SELECT 1",
            "CREATE TEMP TRIGGER t AFTER INSERT ON log BEGIN DELETE FROM msg; END",
            "CREATE VIRTUAL TABLE f USING fts5(a)", "CREATE INDEX i ON sqlite_sequence(name)",
        };
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
            expect_refused(fx, refused[i]);
        if (!ddl) {
            const char *ddl_stmts[] = {
                "CREATE TABLE x(a)", "DROP TABLE msg", "ALTER TABLE msg ADD COLUMN z", "ALTER TABLE msg RENAME TO m",
                "CREATE INDEX i ON big(n)", "DROP INDEX msg_subject", "CREATE VIEW v AS SELECT 1",
                "CREATE TRIGGER t AFTER INSERT ON log BEGIN DELETE FROM msg; END",
            };
            for (size_t i = 0; i < sizeof(ddl_stmts) / sizeof(ddl_stmts[0]); i++)
                expect_refused(fx, ddl_stmts[i]);
        }
        assert_int_equal(probe(fx->path, "PRAGMA user_version"), 1);
        assert_int_equal(fx->app.data_version, 1);
        assert_int_equal(probe(fx->path, "SELECT count(*) FROM sqlite_master"), 5);
        assert_int_equal(probe(fx->path, "SELECT seq FROM sqlite_sequence WHERE name = 'log'"), 1);
        assert_int_equal(sqlite3_get_autocommit(fx->db), 1);
        /* the connection is intact: a normal write still works */
        expect_output(fx, "INSERT INTO log(what) VALUES('ok')", "(1 rows changed)");
        assert_int_equal(fx->app.data_version, 2);
        fx_free(fx);
    }
    /* a read-only app never writes, whatever its other flags */
    fx_t *fx = fx_new(APP_SQL_READ);
    fx->app.sql_ddl = 1;
    expect_refused(fx, "INSERT INTO log(what) VALUES('x')");
    expect_refused(fx, "CREATE TABLE x(a)");
    expect_refused(fx, "PRAGMA user_version=5");
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM log"), 0);
    assert_int_equal(fx->app.data_version, 0);
    fx_free(fx);
}

static void test_ddl(void **state)
{
    fx_t *fx = fx_new(APP_SQL_WRITE);
    fx->app.sql_ddl = 1;
    const char *stmts[] = {
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)",
        "CREATE INDEX notes_body ON notes(body)",
        "ALTER TABLE notes ADD COLUMN tag TEXT",
        "ALTER TABLE notes RENAME COLUMN tag TO label",
        "CREATE VIEW unread_msg AS SELECT id FROM msg WHERE unread",
        "CREATE TRIGGER log_note AFTER INSERT ON notes BEGIN INSERT INTO log(what) VALUES(new.body); END",
        "ALTER TABLE notes RENAME TO notes2",
        "DROP TRIGGER log_note",
        "DROP VIEW unread_msg",
        "DROP INDEX notes_body",
        "DROP TABLE notes2",
        "DROP TABLE log", /* AUTOINCREMENT: its sqlite_sequence row goes too */
        "CREATE TABLE IF NOT EXISTS big(n INTEGER)",
    };
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        expect_output(fx, stmts[i], "ok (schema changed)");
        assert_int_equal(fx->app.data_version, (long long)i + 1);
        assert_int_equal(probe(fx->path, "PRAGMA user_version"), (long long)i + 1);
    }
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM sqlite_master WHERE name IN ('notes', 'notes2', 'log')"), 0);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM sqlite_sequence"), 0);
    /* a trigger created by the model fires under the same policy */
    expect_output(fx, "CREATE TABLE a(x)", "ok (schema changed)");
    expect_output(fx, "CREATE TRIGGER a_ins AFTER INSERT ON a BEGIN UPDATE msg SET unread = 0; END", "ok (schema changed)");
    expect_output(fx, "INSERT INTO a VALUES(1)", "(1 rows changed)");
    assert_int_equal(probe(fx->path, "SELECT sum(unread) FROM msg"), 0);
    /* failed DDL changes nothing */
    long long v = (long long)fx->app.data_version;
    expect_error(fx, "CREATE TABLE msg(x)", "table msg already exists");
    expect_error(fx, "DROP TABLE nope", "no such table: nope");
    assert_int_equal(fx->app.data_version, v);
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), v);
    fx_free(fx);
}

static void test_confirm(void **state)
{
    fx_t *fx = fx_new(APP_SQL_WRITE);
    char *log_tables[] = {"log"};
    app_confirm_rule_t rules[] = {
        {.tool = "http_fetch", .method = "POST"}, /* other tools' rules never match sql */
        {.tool = "sql", .operation = "DELETE"},
        {.tool = "sql", .operation = "UPDATE", .tables = log_tables, .n_tables = 1},
    };
    fx->app.confirm = rules;
    fx->app.n_confirm = 3;
    fig_buf_t log = FIG_BUF_INIT;

    /* a matching DELETE: nothing changes; the text says exactly what would run */
    expect_tool(fx, "DELETE FROM msg WHERE unread = 1 ; \n", 0, &log, TOOL_NEEDS_CONFIRM,
                "DELETE FROM msg WHERE unread = 1\n\nThis deletes 2 rows from msg.");
    expect_tool(fx, "DELETE FROM msg WHERE id = 2", 0, &log, TOOL_NEEDS_CONFIRM,
                "DELETE FROM msg WHERE id = 2\n\nThis deletes 1 row from msg.");
    expect_tool(fx, "DELETE FROM msg WHERE id = 99", 0, &log, TOOL_NEEDS_CONFIRM,
                "DELETE FROM msg WHERE id = 99\n\nThis deletes 0 rows from msg.");
    /* without WHERE (SQLite's truncate shortcut) the rows are still counted */
    expect_tool(fx, "DELETE FROM big", 0, &log, TOOL_NEEDS_CONFIRM, "DELETE FROM big\n\nThis deletes 500 rows from big.");
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM msg"), 3);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM big"), 500);
    assert_int_equal(probe(fx->path, "PRAGMA user_version"), 0);
    assert_int_equal(fx->app.data_version, 0);
    assert_int_equal(log.len, 0);
    assert_int_equal(sqlite3_get_autocommit(fx->db), 1);
    /* a statement that fails in the dry run is an error, not a question */
    int status;
    char *r = run_tool(fx, "DELETE FROM big WHERE abs(-9223372036854775807 - n) > 0", 0, &log, &status);
    assert_int_equal(status, TOOL_ERROR);
    assert_string_equal(r, "error: integer overflow");
    free(r);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM big"), 500);

    /* confirmed: it runs */
    expect_tool(fx, "DELETE FROM msg WHERE unread = 1 ; \n", 1, &log, TOOL_OK, "(2 rows changed)");
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM msg"), 1);
    assert_int_equal(fx->app.data_version, 1);

    /* the UPDATE rule names only log: msg updates run directly, log updates ask */
    expect_tool(fx, "UPDATE msg SET unread = 1", 0, &log, TOOL_OK, "(1 rows changed)");
    expect_tool(fx, "INSERT INTO log(what) VALUES('a'), ('b'), ('c')", 0, &log, TOOL_OK, "(3 rows changed)");
    expect_tool(fx, "UPDATE log SET what = 'z' WHERE what <> 'a'", 0, &log, TOOL_NEEDS_CONFIRM,
                "UPDATE log SET what = 'z' WHERE what <> 'a'\n\nThis updates 2 rows in log.");
    expect_tool(fx, "UPDATE LOG SET what = 'z'", 0, &log, TOOL_NEEDS_CONFIRM,
                "UPDATE LOG SET what = 'z'\n\nThis updates 3 rows in log."); /* names match case-insensitively */
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM log WHERE what = 'z'"), 0);
    assert_int_equal(fx->app.data_version, 3);
    /* reads never ask */
    expect_tool(fx, "SELECT count(*) AS n FROM log", 0, &log, TOOL_OK, "n\n3\n(1 rows)");
    /* RETURNING in a dry run returns nothing but the question */
    expect_tool(fx, "DELETE FROM log WHERE what = 'a' RETURNING id", 0, &log, TOOL_NEEDS_CONFIRM,
                "DELETE FROM log WHERE what = 'a' RETURNING id\n\nThis deletes 1 row from log.");
    expect_tool(fx, "DELETE FROM log WHERE what = 'a' RETURNING id", 1, &log, TOOL_OK, "id\n1\n(1 rows)\n(1 rows changed)");

    /* the write log holds each committed write, '\0'-terminated, nothing else */
    static const char want_log[] = "DELETE FROM msg WHERE unread = 1\0UPDATE msg SET unread = 1\0"
                                   "INSERT INTO log(what) VALUES('a'), ('b'), ('c')\0"
                                   "DELETE FROM log WHERE what = 'a' RETURNING id";
    assert_int_equal(log.len, sizeof(want_log));
    assert_memory_equal(log.data, want_log, sizeof(want_log));

    /* tool_sql_exec is the caller-decided path: it never asks */
    expect_output(fx, "DELETE FROM log", "(2 rows changed)");
    assert_int_equal(log.len, sizeof(want_log));
    fig_buf_free(&log);

    /* one rule for any write: every write asks, reads do not */
    app_confirm_rule_t any[] = {{.tool = "sql"}};
    fx->app.confirm = any;
    fx->app.n_confirm = 1;
    expect_tool(fx, "INSERT INTO log(what) VALUES('x')", 0, NULL, TOOL_NEEDS_CONFIRM,
                "INSERT INTO log(what) VALUES('x')\n\nThis inserts 1 row into log.");
    expect_tool(fx, "SELECT 1 AS one", 0, NULL, TOOL_OK, "one\n1\n(1 rows)");
    /* refused statements are refused, not asked about */
    r = run_tool(fx, "DROP TABLE log", 0, NULL, &status);
    assert_int_equal(status, TOOL_ERROR);
    assert_string_equal(r, "error: not authorized");
    free(r);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM log"), 0);
    fx->app.confirm = NULL;
    fx->app.n_confirm = 0;
    fx_free(fx);
}

static void test_confirm_ddl_and_triggers(void **state)
{
    fx_t *fx = fx_new(APP_SQL_WRITE);
    fx->app.sql_ddl = 1;
    expect_output(fx, "CREATE TRIGGER purge AFTER INSERT ON log BEGIN DELETE FROM msg WHERE unread = 1; END",
                  "ok (schema changed)");
    char *msg_tables[] = {"msg"};
    app_confirm_rule_t rules[] = {
        {.tool = "sql", .operation = "DELETE", .tables = msg_tables, .n_tables = 1},
        {.tool = "sql", .operation = "DDL", .tables = msg_tables, .n_tables = 1},
    };
    fx->app.confirm = rules;
    fx->app.n_confirm = 2;
    /* an INSERT whose trigger deletes from msg matches the DELETE rule */
    expect_tool(fx, "INSERT INTO log(what) VALUES('go')", 0, NULL, TOOL_NEEDS_CONFIRM,
                "INSERT INTO log(what) VALUES('go')\n\nThis inserts 1 row into log.\nThis deletes 2 rows from msg.");
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM log"), 0);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM msg"), 3);
    /* DDL on msg asks; DDL elsewhere does not */
    expect_tool(fx, "DROP TABLE msg", 0, NULL, TOOL_NEEDS_CONFIRM, "DROP TABLE msg\n\nThis drops table msg.");
    expect_tool(fx, "CREATE INDEX msg_unread ON msg(unread)", 0, NULL, TOOL_NEEDS_CONFIRM,
                "CREATE INDEX msg_unread ON msg(unread)\n\nThis creates index msg_unread on msg.");
    expect_tool(fx, "ALTER TABLE msg ADD COLUMN z", 0, NULL, TOOL_NEEDS_CONFIRM,
                "ALTER TABLE msg ADD COLUMN z\n\nThis alters table msg.");
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM sqlite_master WHERE name IN ('msg', 'msg_unread')"), 1);
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM pragma_table_info('msg') WHERE name = 'z'"), 0);
    expect_tool(fx, "CREATE INDEX big_n ON big(n)", 0, NULL, TOOL_OK, "ok (schema changed)");
    /* confirmed */
    expect_tool(fx, "DROP TABLE msg", 1, NULL, TOOL_OK, "ok (schema changed)");
    assert_int_equal(probe(fx->path, "SELECT count(*) FROM sqlite_master WHERE name = 'msg'"), 0);
    fx->app.confirm = NULL;
    fx->app.n_confirm = 0;
    fx_free(fx);
}

static void test_open_refuses(void **state)
{
    app_t app;
    fig_err_t err;
    fx_app(&app, "/tmp/figment-test-sql-does-not-exist.db", APP_SQL_READ);
    assert_null(tool_sql_open(&app, &err));
    assert_int_equal(access(app.db_path, F_OK), -1); /* never created */
    fx_app(&app, "/tmp/whatever.db", APP_SQL_NONE);
    assert_null(tool_sql_open(&app, &err));
}

static void test_run(void **state)
{
    fx_t *fx = fx_new(APP_SQL_READ);
    tool_ctx_t ctx = {.app = &fx->app, .app_db = fx->db};
    int is_error = -1;
    json_t *args = json_pack("{s:s}", "query", "SELECT subject FROM msg WHERE id = 1");
    char *r = tool_sql.run(&ctx, args, &is_error);
    assert_string_equal(r, "subject\nHello\n(1 rows)");
    assert_int_equal(is_error, 0);
    free(r);
    json_decref(args);

    args = json_pack("{s:s}", "query", "SELECT * FROM foo");
    r = tool_sql.run(&ctx, args, &is_error);
    assert_string_equal(r, "error: no such table: foo");
    assert_int_equal(is_error, 1);
    free(r);
    json_decref(args);

    args = json_pack("{s:s}", "query", "DELETE FROM msg");
    r = tool_sql.run(&ctx, args, &is_error);
    assert_string_equal(r, "error: not authorized");
    assert_int_equal(is_error, 1);
    free(r);
    json_decref(args);

    const char *bad[] = {"[]", "{}", "{\"query\": 5}", "{\"q\": \"SELECT 1\"}", "{\"query\": \"SELECT 1\", \"x\": 1}", "\"SELECT 1\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        args = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_non_null(args);
        is_error = 0;
        r = tool_sql.run(&ctx, args, &is_error);
        assert_string_equal(r, "error: expected {\"query\": \"<one SQL statement>\"}");
        assert_int_equal(is_error, 1);
        free(r);
        json_decref(args);
    }
    is_error = 0;
    r = tool_sql.run(&ctx, NULL, &is_error);
    assert_int_equal(is_error, 1);
    assert_true(strncmp(r, "error: ", 7) == 0);
    free(r);
    assert_int_equal(tool_sql.kind, TOOL_IN_WORKER);
    fx_free(fx);
}

static char *schemas_text(const app_t *app)
{
    json_t *s = tools_schemas(app);
    assert_non_null(s);
    char *t = json_dumps(s, JSON_COMPACT);
    json_decref(s);
    assert_non_null(t);
    return t;
}

static void test_registry(void **state)
{
    app_t app;
    fx_app(&app, "/tmp/x.db", APP_SQL_READ);
    assert_ptr_equal(tools_find(&app, "sql"), &tool_sql);
    assert_ptr_equal(tools_find(&app, "set_state"), &tool_set_state);
    assert_null(tools_find(&app, "shell"));
    assert_null(tools_find(&app, "SQL"));
    assert_null(tools_find(&app, NULL));

    json_t *s = tools_schemas(&app);
    assert_int_equal(json_array_size(s), 2);
    json_t *sql = json_array_get(s, 0), *st = json_array_get(s, 1);
    assert_string_equal(json_string_value(json_object_get(sql, "name")), "sql");
    assert_string_equal(json_string_value(json_object_get(st, "name")), "set_state");
    assert_string_equal(json_string_value(json_object_get(sql, "description")), tool_sql.description);
    json_t *params = json_object_get(sql, "parameters");
    assert_string_equal(json_string_value(json_object_get(params, "type")), "object");
    assert_true(json_is_object(json_object_get(json_object_get(params, "properties"), "query")));
    params = json_object_get(st, "parameters");
    assert_true(json_is_object(json_object_get(json_object_get(params, "properties"), "patch")));
    /* key order is name, description, parameters */
    const char *k[3];
    int i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(sql, key, v) k[i++] = key;
    assert_int_equal(i, 3);
    assert_string_equal(k[0], "name");
    assert_string_equal(k[1], "description");
    assert_string_equal(k[2], "parameters");
    json_decref(s);

    /* byte-stable */
    char *a = schemas_text(&app), *b = schemas_text(&app);
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "{\"name\":\"sql\",\"description\":\"Run one SQLite statement"));
    assert_null(strstr(a, "200")); /* the row cap is not baked into the text */

    /* write apps get the other fixed sql text, same schema */
    app.sql = APP_SQL_WRITE;
    char *w1 = schemas_text(&app), *w2 = schemas_text(&app);
    assert_string_equal(w1, w2);
    assert_string_not_equal(a, w1);
    assert_non_null(strstr(w1, "INSERT, UPDATE or DELETE"));
    assert_null(strstr(a, "INSERT, UPDATE or DELETE"));

    /* the set of tools follows the app */
    app.sql = APP_SQL_NONE;
    assert_null(tools_find(&app, "sql"));
    char *n = schemas_text(&app);
    assert_true(strncmp(n, "[{\"name\":\"set_state\"", 20) == 0);
    app.tool_set_state = 0;
    assert_null(tools_find(&app, "set_state"));
    char *e = schemas_text(&app);
    assert_string_equal(e, "[]");
    app.sql = APP_SQL_READ;
    char *o = schemas_text(&app);
    assert_int_equal(json_array_size(s = json_loads(o, 0, NULL)), 1);
    json_decref(s);
    free(a); free(b); free(w1); free(w2); free(n); free(e); free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_format),
        cmocka_unit_test(test_values_and_escaping),
        cmocka_unit_test(test_row_cap),
        cmocka_unit_test(test_output_cap),
        cmocka_unit_test(test_read_refusals),
        cmocka_unit_test(test_pragma_allowlist),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_write_app),
        cmocka_unit_test(test_open_refuses),
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_write_transaction_version),
        cmocka_unit_test(test_write_rollback),
        cmocka_unit_test(test_write_denials),
        cmocka_unit_test(test_ddl),
        cmocka_unit_test(test_confirm),
        cmocka_unit_test(test_confirm_ddl_and_triggers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
