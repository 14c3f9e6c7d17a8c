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

/* What a tool run returns besides its text. */
enum {
    TOOL_OK = 0,
    TOOL_ERROR = 1,           /* text begins with "error: " */
    TOOL_NEEDS_CONFIRM = 2,   /* nothing was done; text describes exactly what would run,
                                 for figment's confirmation page (see app.h "confirm") */
};

typedef struct {
    const app_t *app;
    sqlite3 *app_db;     /* for sql: a connection from tool_sql_open(), owned by the worker */
    json_t **state;      /* for set_state: the session state; replaced in place on success */
    const char *upload_dir; /* this session's files for the app (uploads, run_code outputs): run_code
                               copies them in and writes out/ files back; NULL = none */
    int confirmed;       /* the user confirmed this exact call: run it without asking again */
    fig_buf_t *write_log;/* sql: each committed write statement is appended, '\0'-terminated
                            (parallel attempts replay the winner's); NULL = not kept */
} tool_ctx_t;

/* An asynchronous tool reports here, exactly once, on the loop thread; `text` is
 * malloc'd and now belongs to the callee. */
typedef void (*tool_done_cb)(void *cb_ctx, char *text, int status);

struct http_client;

typedef enum {
    TOOL_ON_LOOP = 0,    /* run() is fast and non-blocking: called on the event loop */
    TOOL_IN_WORKER,      /* run() blocks (SQLite): called on a worker thread */
    TOOL_IN_SANDBOX,     /* run() blocks for seconds (run_code): called on the sandbox pool */
    TOOL_ASYNC,          /* start() begins non-blocking work on the loop (http_fetch) */
} tool_kind_t;

typedef struct tool {
    const char *name;
    const char *description;
    const char *parameters_json; /* JSON Schema text, compact, stable */
    tool_kind_t kind;
    /* ON_LOOP, IN_WORKER, IN_SANDBOX: returns malloc'd text, sets *status (TOOL_OK, ...). */
    char *(*run)(tool_ctx_t *ctx, const json_t *args, int *status);
    /* ASYNC: returns a handle and later calls done (never from inside start), or returns
     * NULL with the result already in *text / *status (refused by policy, bad arguments,
     * needs confirmation). ctx and args need only live until start returns. */
    void *(*start)(tool_ctx_t *ctx, struct http_client *http, const json_t *args, tool_done_cb done,
                   void *cb_ctx, char **text, int *status);
    /* ASYNC: no callback runs after this. */
    void (*cancel)(void *handle);
} tool_t;

/* The tools this app may use, in a stable order (sql, set_state, http_fetch, run_code). NULL when unknown
 * or not allowed for the app. */
const tool_t *tools_find(const app_t *app, const char *name);
/* The tool result for arguments that are not valid JSON (the agent and `figment tool`
 * say the same). Caller frees. */
char *tools_bad_arguments_text(const json_error_t *jerr);
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

/* --- http_fetch (tools/http_fetch.c) --- */
extern const tool_t tool_http_fetch;

/* --- run_code (tools/run_code.c, sandbox in tools/sandbox.c) --- */
extern const tool_t tool_run_code;

#endif
