/*
 * tools.h — the tool registry: the classical tools the model may call.
 *
 * One file per tool in tools/. A tool is a name, a description and a JSON Schema
 * for its arguments (sent to the model in a byte-stable order), and a run function.
 * A tool never fails toward the user: every failure (bad arguments, policy refusal,
 * SQL error, timeout) becomes result text beginning with "error: " that goes back to
 * the model as the tool's result, with is_error set.
 *
 * Threading: tools with runs_in_worker = 1 block (SQLite) and are run by the agent
 * on a worker thread; the others run on the event loop and must be fast.
 *
 * Ownership: run() returns a malloc'd NUL-terminated string the caller frees.
 * tools_schemas() returns a new jansson reference.
 */
#ifndef FIG_TOOLS_H
#define FIG_TOOLS_H

#include <jansson.h>
#include <sqlite3.h>

#include "../server/app.h"
#include "../server/buf.h"
#include "../server/error.h"

typedef struct {
    const app_t *app;
    sqlite3 *app_db;     /* for sql: a connection from tool_sql_open(), owned by the worker */
    json_t **state;      /* for set_state: the session state; replaced in place on success */
} tool_ctx_t;

typedef struct tool {
    const char *name;
    const char *description;
    const char *parameters_json; /* JSON Schema text, compact, stable */
    int runs_in_worker;
    char *(*run)(tool_ctx_t *ctx, const json_t *args, int *is_error);
} tool_t;

/* The tools this app may use, in a stable order (sql, set_state). NULL when unknown
 * or not allowed for the app. */
const tool_t *tools_find(const app_t *app, const char *name);
/* Array of {"name","description","parameters"} for the app, stable order. */
json_t *tools_schemas(const app_t *app);

/* --- sql (tools/sql.c) --- */
extern const tool_t tool_sql;
/* Opens app->db_path for the sql tool: read-only when app->sql is APP_SQL_READ, an
 * authorizer that allows only reads (SELECT, read-only PRAGMAs such as table_info)
 * and denies ATTACH, DETACH, load_extension and every write, a progress handler that
 * enforces app->limits.sql_timeout_ms per statement. */
sqlite3 *tool_sql_open(const app_t *app, fig_err_t *err);
/* Runs one statement (several statements in one call are refused) and formats at
 * most app->limits.sql_max_rows rows as a compact text table:
 *   id | subject | unread
 *   1 | Hello | 1
 *   (3 rows)            or    (200 rows shown, 57 more rows)
 * NULL prints as NULL; newlines in values are escaped as \n; a cell longer than
 * 2000 bytes is cut with "…". Returns 0 or -1 with err (message for the model). */
int tool_sql_exec(sqlite3 *db, const app_t *app, const char *query, fig_buf_t *out, fig_err_t *err);

/* --- set_state (tools/set_state.c) --- */
extern const tool_t tool_set_state;
/* Applies a merge patch to *state, refusing (state untouched) when the result is
 * not an object or its compact serialization exceeds max_bytes. */
int tool_set_state_apply(json_t **state, const json_t *patch, int max_bytes, fig_err_t *err);

#endif
