/*
 * app.c — apps: loading and strictly validating prompts/<name>/ (app.json,
 * prompt.md, seed.sql), seeding each app's database once, and introspecting its
 * schema for the system prompt (see app.h).
 *
 * Design:
 * - app.json is validated against a fixed table of allowed keys. Anything else is
 *   an error naming the file, the dotted key path and what was expected, so a typo
 *   ("deadlin_ms") fails at start instead of being silently ignored. Duplicate keys
 *   and trailing garbage are rejected by jansson's parser flags.
 * - app_parse_json validates into a scratch copy and only commits to the app on
 *   success, so a failed parse never leaves half-filled fields.
 * - Seeding is atomic: the database is built under "<db>.tmp-<pid>" in one
 *   transaction, switched to WAL, closed (which checkpoints the WAL away), then
 *   link()ed into place; a crash mid-seed leaves only a temp file, never a
 *   half-seeded database, and an existing database is never reseeded.
 * - "models" and "routing" are checked for syntax only ("provider/model"); whether
 *   the providers and models exist is decided by the server against figment.json.
 *   Route regexes are compiled once here (POSIX ERE, no submatches) and shared
 *   read-only by all threads; glibc's regexec is safe for that.
 * - The schema text is the CREATE statements ordered by name, each followed by
 *   ";\n": deterministic, so the system prompt stays byte-stable for caching.
 */
#include "app.h"

#include "fsutil.h"
#include "json_check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"

#define APP_MAX_JSON_BYTES (64 * 1024)
#define APP_MAX_PROMPT_BYTES (256 * 1024)
#define APP_MAX_SEED_BYTES (64 * 1024 * 1024)
#define APP_MAX_NAME 32
#define APP_MAX_MODEL 200
#define APP_MAX_CHAIN 8       /* models in a fallback chain */
#define APP_MAX_ROUTES 32
#define APP_MAX_ROUTE_REGEX 500
#define APP_MAX_PROVIDER 32

/* ---- small helpers ---- */

static int app_valid_name(const char *name, size_t len)
{
    if (len == 0 || len > APP_MAX_NAME)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'));
        if (!ok)
            return 0;
    }
    /* "static" and "_..." are routes figment keeps for itself. */
    if (len == 6 && memcmp(name, "static", 6) == 0)
        return 0;
    return 1;
}

static int app_valid_utf8(const char *s, size_t len)
{
    /* Round-trip through jansson's validator: it accepts exactly valid UTF-8. */
    if (memchr(s, '\0', len) != NULL)
        return 0;
    json_t *j = json_stringn(s, len);
    if (j == NULL)
        return 0;
    json_decref(j);
    return 1;
}

static char *app_join(const char *a, const char *b)
{
    fig_buf_t buf = FIG_BUF_INIT;
    fig_buf_appendf(&buf, "%s/%s", a, b);
    return fig_buf_steal(&buf);
}

/* ---- app.json validation ---- */

typedef struct {
    const char *key;
    int min, max, def;
    size_t offset;
} app_limit_spec_t;

static const app_limit_spec_t app_limit_specs[] = {
    {"max_tool_rounds", 1, 8, 8, offsetof(app_limits_t, max_tool_rounds)},
    {"deadline_ms", 1000, 600000, 60000, offsetof(app_limits_t, deadline_ms)},
    {"max_state_bytes", 256, 1048576, 16384, offsetof(app_limits_t, max_state_bytes)},
    {"max_body_bytes", 1024, 67108864, 1048576, offsetof(app_limits_t, max_body_bytes)},
    {"sql_max_rows", 1, 10000, 200, offsetof(app_limits_t, sql_max_rows)},
    {"sql_timeout_ms", 10, 60000, 2000, offsetof(app_limits_t, sql_timeout_ms)},
    {"max_output_tokens", 16, 200000, 4096, offsetof(app_limits_t, max_output_tokens)},
    {"history_items", 0, 50, 5, offsetof(app_limits_t, history_items)},
};
#define APP_N_LIMITS (sizeof(app_limit_specs) / sizeof(app_limit_specs[0]))

static const char *const app_top_keys[] = {"title", "description", "model", "models", "routing", "tools", "limits",
                                           NULL};
static const char *const app_route_keys[] = {"method", "path", "models", NULL};
static const char *const app_tools_keys[] = {"sql", "set_state", NULL};
static const char *const app_sql_keys[] = {"access", NULL};

/* Checks that every key of obj is in allowed; the error lists the allowed keys. */
static int app_check_keys(const json_t *obj, const char *const *allowed, const char *path, const char *prefix,
                          fig_err_t *err)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(key, allowed[i]) == 0)
                ok = 1;
        if (ok)
            continue;
        fig_buf_t list = FIG_BUF_INIT;
        for (size_t i = 0; allowed[i]; i++)
            fig_buf_appendf(&list, "%s%s", i ? ", " : "", allowed[i]);
        char pk[96];
        if (allowed[0] == NULL)
            fig_err_set(err, FIG_E_CONFIG, "%s: %s%s: unknown key (expected no keys)", path, prefix,
                        json_check_printable(key, pk, sizeof(pk)));
        else
            fig_err_set(err, FIG_E_CONFIG, "%s: %s%s: unknown key (expected one of: %s)", path, prefix,
                        json_check_printable(key, pk, sizeof(pk)), list.data);
        fig_buf_free(&list);
        return -1;
    }
    return 0;
}

static int app_expect_type(const json_t *v, json_type type, const char *what, const char *path, const char *key,
                           fig_err_t *err)
{
    if (json_typeof(v) == type)
        return 0;
    fig_err_set(err, FIG_E_CONFIG, "%s: %s: expected %s, got %s", path, key, what, json_check_type_name(v));
    return -1;
}

/* A string of min..max characters; control characters refused (newlines allowed
 * only when allow_newline). */
static int app_get_text(const json_t *root, const char *key, int required, size_t min, size_t max,
                        int allow_newline, const char *path, char **out, fig_err_t *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL) {
        if (required) {
            fig_err_set(err, FIG_E_CONFIG, "%s: %s: missing (expected a string of %zu to %zu characters)", path, key,
                        min, max);
            return -1;
        }
        return 0;
    }
    if (app_expect_type(v, JSON_STRING, "a string", path, key, err) != 0)
        return -1;
    const char *s = json_string_value(v);
    size_t n = json_check_utf8_chars(s);
    if (n < min || n > max) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s: expected a string of %zu to %zu characters, got %zu", path, key, min,
                    max, n);
        return -1;
    }
    if (json_check_has_control(s, allow_newline)) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s: control characters are not allowed%s", path, key,
                    allow_newline ? " (except newline and tab)" : "");
        return -1;
    }
    *out = fig_strdup(s);
    return 0;
}

static int app_parse_tools(const json_t *tools, const char *path, app_t *tmp, fig_err_t *err)
{
    if (app_expect_type(tools, JSON_OBJECT, "an object", path, "tools", err) != 0 ||
        app_check_keys(tools, app_tools_keys, path, "tools.", err) != 0)
        return -1;

    json_t *sql = json_object_get(tools, "sql");
    if (sql != NULL) {
        if (app_expect_type(sql, JSON_OBJECT, "an object", path, "tools.sql", err) != 0 ||
            app_check_keys(sql, app_sql_keys, path, "tools.sql.", err) != 0)
            return -1;
        tmp->sql = APP_SQL_READ;
        json_t *access = json_object_get(sql, "access");
        if (access != NULL) {
            if (app_expect_type(access, JSON_STRING, "\"read\" or \"write\"", path, "tools.sql.access", err) != 0)
                return -1;
            const char *a = json_string_value(access);
            if (strcmp(a, "read") == 0) {
                tmp->sql = APP_SQL_READ;
            } else if (strcmp(a, "write") == 0) {
                tmp->sql = APP_SQL_WRITE;
            } else {
                char pk[64];
                fig_err_set(err, FIG_E_CONFIG, "%s: tools.sql.access: expected \"read\" or \"write\", got \"%s\"",
                            path, json_check_printable(a, pk, sizeof(pk)));
                return -1;
            }
        }
    }

    json_t *set_state = json_object_get(tools, "set_state");
    if (set_state != NULL) {
        static const char *const none[] = {NULL};
        if (app_expect_type(set_state, JSON_OBJECT, "an object", path, "tools.set_state", err) != 0 ||
            app_check_keys(set_state, none, path, "tools.set_state.", err) != 0)
            return -1;
        tmp->tool_set_state = 1;
    }
    return 0;
}

static int app_parse_limits(const json_t *limits, const char *path, app_limits_t *out, fig_err_t *err)
{
    const char *keys[APP_N_LIMITS + 1];
    for (size_t i = 0; i < APP_N_LIMITS; i++)
        keys[i] = app_limit_specs[i].key;
    keys[APP_N_LIMITS] = NULL;

    if (app_expect_type(limits, JSON_OBJECT, "an object", path, "limits", err) != 0 ||
        app_check_keys(limits, keys, path, "limits.", err) != 0)
        return -1;
    for (size_t i = 0; i < APP_N_LIMITS; i++) {
        const app_limit_spec_t *spec = &app_limit_specs[i];
        json_t *v = json_object_get(limits, spec->key);
        if (v == NULL)
            continue;
        if (!json_is_integer(v)) {
            fig_err_set(err, FIG_E_CONFIG, "%s: limits.%s: expected an integer from %d to %d, got %s", path,
                        spec->key, spec->min, spec->max, json_check_type_name(v));
            return -1;
        }
        json_int_t n = json_integer_value(v);
        if (n < spec->min || n > spec->max) {
            fig_err_set(err, FIG_E_CONFIG, "%s: limits.%s: expected an integer from %d to %d, got %" JSON_INTEGER_FORMAT,
                        path, spec->key, spec->min, spec->max, n);
            return -1;
        }
        *(int *)((char *)out + spec->offset) = (int)n;
    }
    return 0;
}

/* ---- models and routing ---- */

static void app_models_free(char **models, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(models[i]);
    free(models);
}

static void app_routes_free(app_route_t *routes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(routes[i].method);
        free(routes[i].path);
        if (routes[i].path_re != NULL) {
            regfree(routes[i].path_re);
            free(routes[i].path_re);
        }
        app_models_free(routes[i].models, routes[i].n_models);
    }
    free(routes);
}

/* "provider/model": the provider part like a provider name in figment.json, the
 * model part 1..APP_MAX_MODEL characters. Whether they exist is the server's check. */
static int app_valid_model_spec(const char *s)
{
    const char *slash = strchr(s, '/');
    if (slash == NULL || slash == s || (size_t)(slash - s) > APP_MAX_PROVIDER)
        return 0;
    for (const char *p = s; p < slash; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (p > s && (c == '_' || c == '-'))))
            return 0;
    }
    size_t n = json_check_utf8_chars(slash + 1);
    return n >= 1 && n <= APP_MAX_MODEL && !json_check_has_control(slash + 1, 0);
}

/* key names the array in messages ("models", "routing[2].models"). */
static int app_parse_chain(const json_t *v, const char *path, const char *key, char ***out, size_t *n_out,
                           fig_err_t *err)
{
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > APP_MAX_CHAIN) {
        if (json_is_array(v))
            fig_err_set(err, FIG_E_CONFIG, "%s: %s: expected an array of 1 to %d \"provider/model\" strings, got %zu",
                        path, key, APP_MAX_CHAIN, json_array_size(v));
        else
            fig_err_set(err, FIG_E_CONFIG, "%s: %s: expected an array of 1 to %d \"provider/model\" strings, got %s",
                        path, key, APP_MAX_CHAIN, json_check_type_name(v));
        return -1;
    }
    size_t n = json_array_size(v);
    char **models = fig_calloc(n, sizeof(*models));
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) {
            fig_err_set(err, FIG_E_CONFIG, "%s: %s[%zu]: expected a \"provider/model\" string, got %s", path, key, i,
                        json_check_type_name(e));
            app_models_free(models, i);
            return -1;
        }
        if (!app_valid_model_spec(json_string_value(e))) {
            char pk[96];
            fig_err_set(err, FIG_E_CONFIG,
                        "%s: %s[%zu]: expected \"provider/model\" (provider [a-z0-9][a-z0-9_-]{0,31}, model 1 to %d "
                        "characters), got \"%s\"",
                        path, key, i, APP_MAX_MODEL, json_check_printable(json_string_value(e), pk, sizeof(pk)));
            app_models_free(models, i);
            return -1;
        }
        models[i] = fig_strdup(json_string_value(e));
    }
    *out = models;
    *n_out = n;
    return 0;
}

static int app_parse_route(const json_t *v, size_t i, const char *path, app_route_t *r, fig_err_t *err)
{
    char key[64], prefix[64];
    snprintf(prefix, sizeof(prefix), "routing[%zu].", i);
    snprintf(key, sizeof(key), "routing[%zu]", i);
    if (app_expect_type(v, JSON_OBJECT, "an object", path, key, err) != 0 ||
        app_check_keys(v, app_route_keys, path, prefix, err) != 0)
        return -1;

    json_t *method = json_object_get(v, "method");
    if (method != NULL) {
        snprintf(key, sizeof(key), "routing[%zu].method", i);
        if (app_expect_type(method, JSON_STRING, "\"GET\" or \"POST\"", path, key, err) != 0)
            return -1;
        const char *m = json_string_value(method);
        if (strcmp(m, "GET") != 0 && strcmp(m, "POST") != 0) {
            char pk[64];
            fig_err_set(err, FIG_E_CONFIG, "%s: %s: expected \"GET\" or \"POST\", got \"%s\"", path, key,
                        json_check_printable(m, pk, sizeof(pk)));
            return -1;
        }
        r->method = fig_strdup(m);
    }

    json_t *re = json_object_get(v, "path");
    if (re != NULL) {
        snprintf(key, sizeof(key), "routing[%zu].path", i);
        if (app_expect_type(re, JSON_STRING, "a regular expression string", path, key, err) != 0)
            return -1;
        const char *text = json_string_value(re);
        size_t n = json_check_utf8_chars(text);
        if (n < 1 || n > APP_MAX_ROUTE_REGEX || json_check_has_control(text, 0)) {
            fig_err_set(err, FIG_E_CONFIG,
                        "%s: %s: expected a regular expression of 1 to %d characters without control characters", path,
                        key, APP_MAX_ROUTE_REGEX);
            return -1;
        }
        regex_t *compiled = fig_malloc(sizeof(*compiled));
        int rc = regcomp(compiled, text, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[128];
            regerror(rc, compiled, msg, sizeof(msg));
            fig_err_set(err, FIG_E_CONFIG, "%s: %s: invalid regular expression: %s", path, key, msg);
            free(compiled);
            return -1;
        }
        r->path = fig_strdup(text);
        r->path_re = compiled;
    }

    json_t *models = json_object_get(v, "models");
    snprintf(key, sizeof(key), "routing[%zu].models", i);
    if (models == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s: missing (expected an array of 1 to %d \"provider/model\" strings)",
                    path, key, APP_MAX_CHAIN);
        return -1;
    }
    return app_parse_chain(models, path, key, &r->models, &r->n_models, err);
}

static int app_parse_routing(const json_t *v, const char *path, app_t *tmp, fig_err_t *err)
{
    if (!json_is_array(v) || json_array_size(v) > APP_MAX_ROUTES) {
        if (json_is_array(v))
            fig_err_set(err, FIG_E_CONFIG, "%s: routing: at most %d rules, got %zu", path, APP_MAX_ROUTES,
                        json_array_size(v));
        else
            fig_err_set(err, FIG_E_CONFIG, "%s: routing: expected an array of rules, got %s", path,
                        json_check_type_name(v));
        return -1;
    }
    size_t n = json_array_size(v);
    tmp->routes = fig_calloc(n ? n : 1, sizeof(*tmp->routes));
    for (size_t i = 0; i < n; i++) {
        /* Counted before parsing so a half-parsed rule is freed with the rest. */
        tmp->n_routes = i + 1;
        if (app_parse_route(json_array_get(v, i), i, path, &tmp->routes[i], err) != 0)
            return -1;
    }
    tmp->n_routes = n;
    return 0;
}

const app_route_t *app_route_match(const app_t *app, const char *method, const char *path)
{
    for (size_t i = 0; i < app->n_routes; i++) {
        const app_route_t *r = &app->routes[i];
        if (r->method != NULL && (method == NULL || strcmp(r->method, method) != 0))
            continue;
        if (r->path_re != NULL && (path == NULL || regexec(r->path_re, path, 0, NULL, 0) != 0))
            continue;
        return r;
    }
    return NULL;
}

static void app_limits_default(app_limits_t *l)
{
    for (size_t i = 0; i < APP_N_LIMITS; i++)
        *(int *)((char *)l + app_limit_specs[i].offset) = app_limit_specs[i].def;
}

int app_parse_json(app_t *app, const char *path, const char *text, fig_err_t *err)
{
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return -1;
    }

    app_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    app_limits_default(&tmp.limits);

    if (!json_is_object(root)) {
        fig_err_set(err, FIG_E_CONFIG, "%s: expected an object at the top level, got %s", path,
                    json_check_type_name(root));
        goto fail;
    }
    if (app_check_keys(root, app_top_keys, path, "", err) != 0)
        goto fail;
    if (app_get_text(root, "title", 1, 1, 80, 0, path, &tmp.title, err) != 0 ||
        app_get_text(root, "description", 1, 1, 300, 1, path, &tmp.description, err) != 0 ||
        app_get_text(root, "model", 0, 1, APP_MAX_MODEL, 0, path, &tmp.model, err) != 0)
        goto fail;

    json_t *models = json_object_get(root, "models");
    if (models != NULL) {
        if (tmp.model != NULL) {
            fig_err_set(err, FIG_E_CONFIG, "%s: models: use one of model or models, not both", path);
            goto fail;
        }
        if (app_parse_chain(models, path, "models", &tmp.models, &tmp.n_models, err) != 0)
            goto fail;
    }
    json_t *routing = json_object_get(root, "routing");
    if (routing != NULL && app_parse_routing(routing, path, &tmp, err) != 0)
        goto fail;
    json_t *tools = json_object_get(root, "tools");
    if (tools != NULL && app_parse_tools(tools, path, &tmp, err) != 0)
        goto fail;
    json_t *limits = json_object_get(root, "limits");
    if (limits != NULL && app_parse_limits(limits, path, &tmp.limits, err) != 0)
        goto fail;

    json_decref(root);
    free(app->title);
    free(app->description);
    free(app->model);
    app_models_free(app->models, app->n_models);
    app_routes_free(app->routes, app->n_routes);
    app->title = tmp.title;
    app->description = tmp.description;
    app->model = tmp.model;
    app->models = tmp.models;
    app->n_models = tmp.n_models;
    app->routes = tmp.routes;
    app->n_routes = tmp.n_routes;
    app->sql = tmp.sql;
    app->tool_set_state = tmp.tool_set_state;
    app->limits = tmp.limits;
    return 0;

fail:
    json_decref(root);
    free(tmp.title);
    free(tmp.description);
    free(tmp.model);
    app_models_free(tmp.models, tmp.n_models);
    app_routes_free(tmp.routes, tmp.n_routes);
    return -1;
}

/* ---- loading ---- */

app_t *app_load(const char *prompts_dir, const char *name, const char *var_dir, fig_err_t *err)
{
    if (!app_valid_name(name, strlen(name))) {
        char pk[64];
        fig_err_set(err, FIG_E_CONFIG,
                    "%s/%s: invalid app name (expected [a-z0-9][a-z0-9_-]{0,31}, not \"static\")", prompts_dir,
                    json_check_printable(name, pk, sizeof(pk)));
        return NULL;
    }
    app_t *app = fig_calloc(1, sizeof(*app));
    app->name = fig_strdup(name);
    app->dir = app_join(prompts_dir, name);
    {
        fig_buf_t b = FIG_BUF_INIT;
        fig_buf_appendf(&b, "%s/apps/%s.db", var_dir, name);
        app->db_path = fig_buf_steal(&b);
    }

    char *json_path = app_join(app->dir, "app.json");
    size_t len = 0;
    char *text = fs_read_file(json_path, APP_MAX_JSON_BYTES, &len, NULL, FIG_E_CONFIG, err);
    if (text == NULL) {
        free(json_path);
        goto fail;
    }
    if (memchr(text, '\0', len) != NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s: contains a NUL byte", json_path);
        free(text);
        free(json_path);
        goto fail;
    }
    int r = app_parse_json(app, json_path, text, err);
    free(text);
    free(json_path);
    if (r != 0)
        goto fail;

    char *prompt_path = app_join(app->dir, "prompt.md");
    app->prompt_md = fs_read_file(prompt_path, APP_MAX_PROMPT_BYTES, &len, NULL, FIG_E_CONFIG, err);
    if (app->prompt_md == NULL) {
        free(prompt_path);
        goto fail;
    }
    if (len == 0 || !app_valid_utf8(app->prompt_md, len)) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s", prompt_path,
                    len == 0 ? "empty (the prompt is required)" : "not valid UTF-8 text");
        free(prompt_path);
        goto fail;
    }
    free(prompt_path);
    return app;

fail:
    app_free(app);
    return NULL;
}

void app_free(app_t *app)
{
    if (app == NULL)
        return;
    free(app->name);
    free(app->dir);
    free(app->title);
    free(app->description);
    free(app->model);
    app_models_free(app->models, app->n_models);
    app_routes_free(app->routes, app->n_routes);
    free(app->prompt_md);
    free(app->db_path);
    free(app->schema_text);
    free(app);
}

static int app_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int apps_load_all(const char *prompts_dir, const char *var_dir, app_list_t *out, fig_err_t *err)
{
    out->items = NULL;
    out->count = 0;
    DIR *d = opendir(prompts_dir);
    if (d == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s", prompts_dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *dir = app_join(prompts_dir, e->d_name);
        char *json = app_join(dir, "app.json");
        struct stat st;
        int is_app = stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && stat(json, &st) == 0;
        free(dir);
        free(json);
        if (!is_app)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            names = fig_realloc(names, cap * sizeof(*names));
        }
        names[n++] = fig_strdup(e->d_name);
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof(*names), app_name_cmp);

    int rc = 0;
    out->items = fig_calloc(n ? n : 1, sizeof(*out->items));
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            app_t *app = app_load(prompts_dir, names[i], var_dir, err);
            if (app == NULL)
                rc = -1;
            else
                out->items[out->count++] = app;
        }
        free(names[i]);
    }
    free(names);
    if (rc != 0)
        apps_free(out);
    return rc;
}

void apps_free(app_list_t *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        app_free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

const app_t *apps_find(const app_list_t *list, const char *name, size_t name_len)
{
    for (size_t i = 0; i < list->count; i++) {
        const app_t *a = list->items[i];
        if (strlen(a->name) == name_len && memcmp(a->name, name, name_len) == 0)
            return a;
    }
    return NULL;
}

/* ---- the app database ---- */

static void app_unlink_db(const char *path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        fig_buf_t b = FIG_BUF_INIT;
        fig_buf_appendf(&b, "%s%s", path, suffixes[i]);
        unlink(b.data);
        fig_buf_free(&b);
    }
}

/* Builds the database under a temporary name and links it into place. */
static int app_db_seed(app_t *app, const char *parent, fig_err_t *err)
{
    char *seed_path = app_join(app->dir, "seed.sql");
    size_t seed_len = 0;
    int missing = 0;
    fig_err_t rerr;
    char *seed = fs_read_file(seed_path, APP_MAX_SEED_BYTES, &seed_len, &missing, FIG_E_CONFIG, &rerr);
    if (seed == NULL && !missing) {
        if (err)
            *err = rerr;
        free(seed_path);
        return -1;
    }
    if (seed != NULL && memchr(seed, '\0', seed_len) != NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s: contains a NUL byte", seed_path);
        free(seed);
        free(seed_path);
        return -1;
    }

    fig_buf_t tmpb = FIG_BUF_INIT;
    fig_buf_appendf(&tmpb, "%s.tmp-%ld", app->db_path, (long)getpid());
    char *tmp = fig_buf_steal(&tmpb);
    app_unlink_db(tmp); /* a leftover of a crashed process with our pid */

    sqlite3 *db = NULL;
    char *msg = NULL;
    int rc = -1;
    if (sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "%s: cannot create: %s", tmp, db ? sqlite3_errmsg(db) : "out of memory");
        goto done;
    }
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, &msg) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "%s: %s", tmp, msg ? msg : sqlite3_errmsg(db));
        goto done;
    }
    if (seed != NULL && sqlite3_exec(db, seed, NULL, NULL, &msg) != SQLITE_OK) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s", seed_path, msg ? msg : sqlite3_errmsg(db));
        goto done;
    }
    if (sqlite3_get_autocommit(db)) {
        /* The seed ended our transaction itself; its writes may be partial. */
        fig_err_set(err, FIG_E_CONFIG, "%s: must not contain BEGIN, COMMIT or ROLLBACK (figment wraps it in one "
                    "transaction)", seed_path);
        goto done;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "%s: %s", tmp, msg ? msg : sqlite3_errmsg(db));
        goto done;
    }
    if (sqlite3_close(db) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "%s: cannot close: %s", tmp, sqlite3_errmsg(db));
        goto done;
    }
    db = NULL;
    {
        int fd = open(tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) {
            fig_err_set(err, FIG_E_IO, "%s: cannot sync: %s", tmp, strerror(errno));
            if (fd >= 0)
                close(fd);
            goto done;
        }
        close(fd);
    }
    /* link() fails with EEXIST when another process seeded first: theirs wins. */
    if (link(tmp, app->db_path) != 0 && errno != EEXIST) {
        if (!(errno == EPERM || errno == ENOTSUP || errno == ENOSYS) || rename(tmp, app->db_path) != 0) {
            fig_err_set(err, FIG_E_IO, "%s: cannot install: %s", app->db_path, strerror(errno));
            goto done;
        }
    }
    {
        int dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    rc = 0;

done:
    sqlite3_free(msg);
    if (db != NULL)
        sqlite3_close(db);
    app_unlink_db(tmp);
    free(tmp);
    free(seed);
    free(seed_path);
    return rc;
}

int app_db_prepare(app_t *app, fig_err_t *err)
{
    char *parent = fig_strdup(app->db_path);
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent)
        *slash = '\0';
    else if (slash == parent)
        parent[1] = '\0';
    else
        strcpy(parent, ".");
    if (fs_mkdir_p(parent, 0755, err) != 0) {
        free(parent);
        return -1;
    }

    struct stat st;
    if (stat(app->db_path, &st) != 0) {
        if (errno != ENOENT) {
            fig_err_set(err, FIG_E_IO, "%s: %s", app->db_path, strerror(errno));
            free(parent);
            return -1;
        }
        if (app_db_seed(app, parent, err) != 0) {
            free(parent);
            return -1;
        }
    }
    free(parent);

    sqlite3 *db = NULL;
    if (sqlite3_open_v2(app->db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "%s: cannot open: %s", app->db_path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    char *schema = app_db_schema(db, err);
    sqlite3_close(db);
    if (schema == NULL)
        return -1;
    free(app->schema_text);
    app->schema_text = schema;
    return 0;
}

char *app_db_schema(sqlite3 *db, fig_err_t *err)
{
    /* '_' is a LIKE wildcard, hence the escape; internal tables (sqlite_sequence,
     * sqlite_stat1, autoindexes) are implementation detail, not schema. */
    static const char sql[] = "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
                              "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name, type, sql";
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "reading the schema: %s", sqlite3_errmsg(db));
        return NULL;
    }
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append(&b, "", 0);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(q, 0);
        fig_buf_append(&b, text, (size_t)sqlite3_column_bytes(q, 0));
        fig_buf_append(&b, ";\n", 2);
    }
    if (rc != SQLITE_DONE) {
        fig_err_set(err, FIG_E_DB, "reading the schema: %s", sqlite3_errmsg(db));
        sqlite3_finalize(q);
        fig_buf_free(&b);
        return NULL;
    }
    sqlite3_finalize(q);
    return fig_buf_steal(&b);
}
