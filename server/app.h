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

/* app.json "confirm": [{"tool": "sql", "operation": "DELETE"}, {"tool": "sql", "operation":
 * "UPDATE", "tables": ["messages"]}, {"tool": "http_fetch", "method": "POST"}]
 * A tool call that matches any rule pauses the interaction for the user's confirmation. */
typedef struct {
    char *tool;          /* "sql" or "http_fetch" */
    char *operation;     /* sql: "INSERT", "UPDATE", "DELETE" or "DDL"; NULL = any write */
    char **tables;       /* sql: only writes to these tables (lowercase); NULL = any table */
    size_t n_tables;
    char *method;        /* http_fetch: "GET" or "POST"; NULL = any */
} app_confirm_rule_t;

/* tools.http_fetch.credentials: {"host": "api.example.com", "header": "Authorization",
 * "env": "EXAMPLE_TOKEN", "prefix": "Bearer "}. figment reads the variable at start and
 * adds the header to requests to that exact host; the model never sees it. */
typedef struct {
    char *host;          /* lowercase hostname */
    char *header;        /* header name */
    char *env;           /* environment variable name */
    char *prefix;        /* prepended to the value, or NULL */
} app_credential_t;

/* app.json tools.http_fetch (deny by default: no hosts, no fetch). */
typedef struct {
    int enabled;
    char **hosts;        /* allowlist: "example.com" (exact) or "*.example.com" (subdomains); lowercase */
    size_t n_hosts;
    char **private_hosts;/* hosts allowed to connect to non-public addresses (dangerous; for loopback tests) */
    size_t n_private_hosts;
    int allow_post;      /* "methods": ["GET", "POST"]; GET only by default */
    long max_bytes;      /* response cap, default 1048576 */
    int timeout_ms;      /* whole exchange, default 10000 */
    int max_redirects;   /* default 3, range 0..3 */
    app_credential_t *credentials;
    size_t n_credentials;
} app_http_fetch_t;

/* app.json tools.run_code: Python 3 in bubblewrap. */
typedef struct {
    int enabled;
    int timeout_ms;          /* wall clock, default 10000 */
    int cpu_s;               /* CPU seconds, default 10 */
    long memory_mb;          /* address space, default 1024 */
    long max_file_bytes;     /* largest file the code may write, default 10485760 */
    int max_processes;       /* default 32 */
    long max_output_bytes;   /* stdout and stderr each, default 65536 */
    long max_out_bytes;      /* files returned from out/, in all, default 1048576 */
} app_run_code_t;

/* app.json "actions": [{"method": "POST", "path": "^/import/upload$", "attempts": 3,
 * "verify": {"sql": "SELECT ..."} or {"python": "..."}}]: interactions that run as N
 * concurrent isolated attempts, the first that passes the verifier wins. */
typedef struct {
    char *method;        /* NULL = any */
    char *path;          /* regex text or NULL */
    void *path_re;       /* compiled regex_t (owned), or NULL */
    int attempts;        /* 2..8 */
    char *verify_sql;    /* a query whose first row's first column must be true (non-zero) */
    char *verify_python; /* Python run in the sandbox with the attempt's files; exit 0 = pass */
} app_action_t;

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
    int sql_ddl;         /* app.json tools.sql.ddl: schema changes allowed (default false) */
    int tool_set_state;  /* app.json tools.set_state present */
    app_http_fetch_t http_fetch; /* app.json tools.http_fetch */
    app_run_code_t run_code;     /* app.json tools.run_code */
    app_confirm_rule_t *confirm; /* app.json "confirm" */
    size_t n_confirm;
    int confirm_ttl_s;           /* app.json "confirm_ttl_s": a pending confirmation expires, default 900 */
    long max_upload_bytes;       /* app.json uploads.max_bytes per file; 0 = uploads refused (default) */
    int max_uploads;             /* app.json uploads.max_files kept per session, default 20 */
    app_action_t *actions;       /* app.json "actions" */
    size_t n_actions;
    int cache_ttl_s;             /* app.json cache.ttl_s: GET pages cached this long; 0 = off (default) */
    int prefetch_links;          /* app.json prefetch.links: next pages generated ahead; 0 = off (default) */
    int prefetch_concurrency;    /* app.json prefetch.concurrency, default 2 */
    char **prefetch_rank;        /* app.json prefetch.rank: path regexes, links matching earlier ones first */
    size_t n_prefetch_rank;
    void *prefetch_rank_re;      /* compiled regex_t array (owned) */
    /* The one mutable field: bumped after every committed write (sql tool), read by the
     * page cache key. Starts at the app DB's PRAGMA user_version, which the write
     * transaction also bumps so the version survives a restart. */
    _Atomic unsigned long long data_version;
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
/* The action (attempts + verifier) for an interaction, or NULL. */
const app_action_t *app_action_match(const app_t *app, const char *method, const char *path);
/* The rank of a link for prefetch (0 = matches prefetch.rank[0], ...; n_prefetch_rank = none). */
size_t app_prefetch_rank(const app_t *app, const char *path);
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
