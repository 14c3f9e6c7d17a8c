/*
 * app.h — apps are folders under prompts/: app.json (validated strictly), prompt.md,
 * seed.sql. This module loads them at start, seeds each app's SQLite database
 * (var/apps/<name>.db) on first start, and introspects its schema for the prompt.
 *
 * Ownership: app_load()/apps_load_all() return heap objects that the caller releases
 * with app_free()/apps_free(). After start, apps are immutable and shared by all
 * threads.
 */
#ifndef FIG_APP_H
#define FIG_APP_H

#include <stddef.h>
#include <sqlite3.h>

#include "error.h"

typedef enum { APP_SQL_NONE = 0, APP_SQL_READ, APP_SQL_WRITE } app_sql_access_t;

typedef struct {
    int max_tool_rounds;     /* default 8, range 1..8 */
    int deadline_ms;         /* per interaction, default 60000, range 1000..600000 */
    int max_state_bytes;     /* serialized session state cap, default 16384 */
    int max_body_bytes;      /* request body cap, default 1048576 */
    int sql_max_rows;        /* rows returned to the model, default 200 */
    int sql_timeout_ms;      /* per statement, default 2000 */
    int max_output_tokens;   /* sent as max_tokens, default 4096 */
    int history_items;       /* interactions summarised in the prompt, default 5 */
} app_limits_t;

/* app.json "routing": [{"method": "GET", "path": "^/mail/(message|folder)/", "models": ["p/m", ...]}]
 * The first rule whose method (absent = any) and path regex (POSIX extended, absent =
 * any) match picks the fallback chain of models for an interaction. */
typedef struct {
    char *method;        /* "GET" or "POST", or NULL for any */
    char *path;          /* the regex text, or NULL */
    void *path_re;       /* compiled regex_t (owned), or NULL */
    char **models;       /* "provider/model" names, at least one */
    size_t n_models;
} app_route_t;

typedef struct {
    char *name;          /* folder name: [a-z0-9][a-z0-9_-]{0,31} */
    char *dir;           /* prompts/<name> */
    char *title;         /* app.json "title" (required) */
    char *description;   /* app.json "description" (required) */
    char *model;         /* app.json "model" (optional; NULL = server default): a model of the default provider */
    char **models;       /* app.json "models": the fallback chain ["provider/model", ...] when no route matches */
    size_t n_models;
    app_route_t *routes; /* app.json "routing" */
    size_t n_routes;
    app_sql_access_t sql;/* app.json tools.sql.access: "read" (default if present) */
    int tool_set_state;  /* app.json tools.set_state present */
    app_limits_t limits;
    char *prompt_md;     /* contents of prompt.md */
    char *db_path;       /* var/apps/<name>.db */
    char *schema_text;   /* CREATE statements of the app DB, sorted, filled by app_db_prepare */
} app_t;

typedef struct {
    app_t **items;
    size_t count;
} app_list_t;

/* Parses and validates <prompts_dir>/<name>/app.json and reads prompt.md.
 * Errors name the file, the key and what was expected, e.g.
 * "prompts/mail/app.json: limits.deadline_ms: expected an integer from 1000 to 600000". */
app_t *app_load(const char *prompts_dir, const char *name, const char *var_dir, fig_err_t *err);
/* Validates an app.json text (exposed for unit tests). path is used in messages. */
int app_parse_json(app_t *app, const char *path, const char *text, fig_err_t *err);
/* The route for an interaction, or NULL when none matches (use app->models, then the defaults). */
const app_route_t *app_route_match(const app_t *app, const char *method, const char *path);
void app_free(app_t *app);

/* Loads every folder of prompts_dir that has an app.json, sorted by name. Fails on
 * the first invalid app. */
int apps_load_all(const char *prompts_dir, const char *var_dir, app_list_t *out, fig_err_t *err);
void apps_free(app_list_t *list);
const app_t *apps_find(const app_list_t *list, const char *name, size_t name_len);

/* Creates var/apps/<name>.db from seed.sql if it does not exist (atomically: built
 * under a temporary name, then renamed), then fills app->schema_text. */
int app_db_prepare(app_t *app, fig_err_t *err);
/* The CREATE statements in sqlite_master, sorted by name, one per line. Caller frees. */
char *app_db_schema(sqlite3 *db, fig_err_t *err);

#endif
