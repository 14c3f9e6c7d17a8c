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
 * - Tunables of the newer keys (tools.http_fetch, tools.run_code, uploads, cache,
 *   prefetch, confirm_ttl_s) come from small tables of key, range and default, so
 *   every integer gets the same "expected an integer from A to B" message and a
 *   default even when its object is absent.
 * - Keys that refer to each other are checked here, not at use: a confirm rule for a
 *   tool the app does not enable (or for POST when only GET is allowed, or DDL when
 *   ddl is off), a credential for a host outside the allowlist, a private host that
 *   is not also allowed, a Python verifier without tools.run_code are all errors,
 *   because a rule that can never apply is a configuration mistake.
 * - data_version, the one field that changes after start, begins at the app
 *   database's PRAGMA user_version (the sql tool bumps both on every write).
 */
#include "app.h"

#include "fsutil.h"
#include "json_check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
                                           "confirm", "confirm_ttl_s", "uploads", "actions", "cache", "prefetch",
                                           NULL};
static const char *const app_route_keys[] = {"method", "path", "models", NULL};
static const char *const app_tools_keys[] = {"sql", "set_state", "http_fetch", "run_code", NULL};
static const char *const app_sql_keys[] = {"access", "ddl", NULL};
static const char *const app_http_keys[] = {"hosts", "private_hosts", "methods", "max_bytes", "timeout_ms",
                                            "max_redirects", "credentials", NULL};
static const char *const app_cred_keys[] = {"host", "header", "env", "prefix", NULL};
static const char *const app_confirm_sql_keys[] = {"tool", "operation", "tables", NULL};
static const char *const app_confirm_http_keys[] = {"tool", "method", NULL};
static const char *const app_action_keys[] = {"method", "path", "attempts", "verify", NULL};
static const char *const app_verify_keys[] = {"sql", "python", NULL};
static const char *const app_uploads_keys[] = {"max_bytes", "max_files", NULL};
static const char *const app_cache_keys[] = {"ttl_s", NULL};
static const char *const app_prefetch_keys[] = {"links", "concurrency", "rank", NULL};

/* An integer tunable of a sub-object: key, range and default, stored as a long or
 * an int at offset in the target struct. */
typedef struct {
    const char *key;
    long min, max, def;
    size_t offset;
    int is_long;
} app_num_spec_t;

static const app_num_spec_t app_http_specs[] = {
    {"max_bytes", 1024, 67108864, 1048576, offsetof(app_http_fetch_t, max_bytes), 1},
    {"timeout_ms", 100, 120000, 10000, offsetof(app_http_fetch_t, timeout_ms), 0},
    {"max_redirects", 0, 3, 3, offsetof(app_http_fetch_t, max_redirects), 0},
};
static const app_num_spec_t app_run_code_specs[] = {
    {"timeout_ms", 100, 300000, 10000, offsetof(app_run_code_t, timeout_ms), 0},
    {"cpu_s", 1, 600, 10, offsetof(app_run_code_t, cpu_s), 0},
    {"memory_mb", 64, 16384, 1024, offsetof(app_run_code_t, memory_mb), 1},
    {"max_file_bytes", 1024, 1073741824, 10485760, offsetof(app_run_code_t, max_file_bytes), 1},
    {"max_processes", 1, 1024, 32, offsetof(app_run_code_t, max_processes), 0},
    {"max_output_bytes", 1024, 16777216, 65536, offsetof(app_run_code_t, max_output_bytes), 1},
    {"max_out_bytes", 0, 268435456, 1048576, offsetof(app_run_code_t, max_out_bytes), 1},
};
static const app_num_spec_t app_uploads_specs[] = {
    {"max_bytes", 0, 268435456, 0, offsetof(app_t, max_upload_bytes), 1},
    {"max_files", 1, 1000, 20, offsetof(app_t, max_uploads), 0},
};
static const app_num_spec_t app_cache_specs[] = {
    {"ttl_s", 0, 86400, 0, offsetof(app_t, cache_ttl_s), 0},
};
static const app_num_spec_t app_prefetch_specs[] = {
    {"links", 0, 8, 0, offsetof(app_t, prefetch_links), 0},
    {"concurrency", 1, 8, 2, offsetof(app_t, prefetch_concurrency), 0},
};
#define APP_N(a) (sizeof(a) / sizeof((a)[0]))

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
 * only when allow_newline). name is the key's full dotted path for messages. */
static int app_get_text_as(const json_t *obj, const char *key, const char *name, int required, size_t min,
                           size_t max, int allow_newline, const char *path, char **out, fig_err_t *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required) {
            fig_err_set(err, FIG_E_CONFIG, "%s: %s: missing (expected a string of %zu to %zu characters)", path, name,
                        min, max);
            return -1;
        }
        return 0;
    }
    if (app_expect_type(v, JSON_STRING, "a string", path, name, err) != 0)
        return -1;
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s: NUL characters are not allowed", path, name);
        return -1;
    }
    size_t n = json_check_utf8_chars(s);
    if (n < min || n > max) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s: expected a string of %zu to %zu characters, got %zu", path, name, min,
                    max, n);
        return -1;
    }
    if (json_check_has_control(s, allow_newline)) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s: control characters are not allowed%s", path, name,
                    allow_newline ? " (except newline and tab)" : "");
        return -1;
    }
    *out = fig_strdup(s);
    return 0;
}

static int app_get_text(const json_t *root, const char *key, int required, size_t min, size_t max,
                        int allow_newline, const char *path, char **out, fig_err_t *err)
{
    return app_get_text_as(root, key, key, required, min, max, allow_newline, path, out, err);
}

static void app_nums_default(const app_num_spec_t *specs, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        if (specs[i].is_long)
            *(long *)((char *)base + specs[i].offset) = specs[i].def;
        else
            *(int *)((char *)base + specs[i].offset) = (int)specs[i].def;
    }
}

/* Reads the integer keys of obj named in specs into base (absent keys keep their
 * value, normally the default); prefix is the dotted path of obj ("tools.run_code."). */
static int app_parse_nums(const json_t *obj, const app_num_spec_t *specs, size_t n, const char *prefix,
                          const char *path, void *base, fig_err_t *err)
{
    for (size_t i = 0; i < n; i++) {
        const app_num_spec_t *spec = &specs[i];
        json_t *v = json_object_get(obj, spec->key);
        if (v == NULL)
            continue;
        if (!json_is_integer(v)) {
            fig_err_set(err, FIG_E_CONFIG, "%s: %s%s: expected an integer from %ld to %ld, got %s", path, prefix,
                        spec->key, spec->min, spec->max, json_check_type_name(v));
            return -1;
        }
        json_int_t x = json_integer_value(v);
        if (x < spec->min || x > spec->max) {
            fig_err_set(err, FIG_E_CONFIG,
                        "%s: %s%s: expected an integer from %ld to %ld, got %" JSON_INTEGER_FORMAT, path, prefix,
                        spec->key, spec->min, spec->max, x);
            return -1;
        }
        if (spec->is_long)
            *(long *)((char *)base + spec->offset) = (long)x;
        else
            *(int *)((char *)base + spec->offset) = (int)x;
    }
    return 0;
}

static void app_strs_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* "example.com", or "*.example.com" when wildcard_ok (the base then needs a dot, so
 * "*.com" is refused): lowercase LDH labels of 1..63 characters, at most 253 in all,
 * no trailing dot. IPv4 literals ("127.0.0.1") pass, as loopback tests need them. */
static int app_valid_host(const char *s, int wildcard_ok)
{
    if (wildcard_ok && s[0] == '*' && s[1] == '.') {
        s += 2;
        if (strchr(s, '.') == NULL)
            return 0;
    }
    size_t len = strlen(s);
    if (len == 0 || len > 253)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && label > 0);
        if (!ok)
            return 0;
        label++;
    }
    return 1;
}

/* Does host (an exact name) fall under an allowlist entry? */
static int app_host_allowed(char *const *hosts, size_t n, const char *host)
{
    size_t hl = strlen(host);
    for (size_t i = 0; i < n; i++) {
        const char *h = hosts[i];
        if (h[0] == '*') {
            size_t bl = strlen(h + 1); /* ".example.com" */
            if (hl > bl && strcmp(host + hl - bl, h + 1) == 0)
                return 1;
        } else if (strcmp(h, host) == 0) {
            return 1;
        }
    }
    return 0;
}

/* An HTTP header name: an RFC 9110 token of 1..64 characters. */
static int app_valid_header(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* i < n, so c is never the NUL that strchr would find */
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c) != NULL))
            return 0;
    }
    return 1;
}

/* An environment variable name: [A-Za-z_][A-Za-z0-9_]{0,127}. */
static int app_valid_env(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

/* A confirm rule's table: [a-z_][a-z0-9_]{0,63} (matched case-insensitively). */
static int app_valid_table(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

/* An array of min..max distinct strings, each accepted by valid(); key names the
 * array in messages, what describes one element. */
static int app_parse_str_list(const json_t *v, const char *path, const char *key, size_t min, size_t max,
                              int (*valid)(const char *), const char *what, char ***out, size_t *n_out,
                              fig_err_t *err)
{
    if (!json_is_array(v) || json_array_size(v) < min || json_array_size(v) > max) {
        if (json_is_array(v))
            fig_err_set(err, FIG_E_CONFIG, "%s: %s: expected an array of %zu to %zu %s, got %zu", path, key, min,
                        max, what, json_array_size(v));
        else
            fig_err_set(err, FIG_E_CONFIG, "%s: %s: expected an array of %zu to %zu %s, got %s", path, key, min, max,
                        what, json_check_type_name(v));
        return -1;
    }
    size_t n = json_array_size(v);
    char **list = fig_calloc(n ? n : 1, sizeof(*list));
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        const char *str = json_is_string(e) ? json_string_value(e) : NULL;
        if (str == NULL || strlen(str) != json_string_length(e) || !valid(str)) {
            char pk[96];
            if (str == NULL)
                fig_err_set(err, FIG_E_CONFIG, "%s: %s[%zu]: expected %s, got %s", path, key, i, what,
                            json_check_type_name(e));
            else
                fig_err_set(err, FIG_E_CONFIG, "%s: %s[%zu]: expected %s, got \"%s\"", path, key, i, what,
                            json_check_printable(str, pk, sizeof(pk)));
            app_strs_free(list, i);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(list[j], str) == 0) {
                char pk[96];
                fig_err_set(err, FIG_E_CONFIG, "%s: %s[%zu]: duplicate \"%s\"", path, key, i,
                            json_check_printable(str, pk, sizeof(pk)));
                app_strs_free(list, i);
                return -1;
            }
        }
        list[i] = fig_strdup(str);
    }
    *out = list;
    *n_out = n;
    return 0;
}

static int app_valid_host_pattern(const char *s)
{
    return app_valid_host(s, 1);
}

static int app_valid_method(const char *s)
{
    return strcmp(s, "GET") == 0 || strcmp(s, "POST") == 0;
}

static void app_http_free(app_http_fetch_t *h)
{
    app_strs_free(h->hosts, h->n_hosts);
    app_strs_free(h->private_hosts, h->n_private_hosts);
    for (size_t i = 0; i < h->n_credentials; i++) {
        free(h->credentials[i].host);
        free(h->credentials[i].header);
        free(h->credentials[i].env);
        free(h->credentials[i].prefix);
    }
    free(h->credentials);
    memset(h, 0, sizeof(*h));
}

/* A required string member of a credential, checked by valid(). */
static int app_cred_field(const json_t *c, const char *field, size_t i, const char *path, int (*valid)(const char *),
                          const char *what, char **out, fig_err_t *err)
{
    json_t *v = json_object_get(c, field);
    if (v == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s: tools.http_fetch.credentials[%zu].%s: missing (expected %s)", path, i,
                    field, what);
        return -1;
    }
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s == NULL || strlen(s) != json_string_length(v) || !valid(s)) {
        char pk[96];
        if (s == NULL)
            fig_err_set(err, FIG_E_CONFIG, "%s: tools.http_fetch.credentials[%zu].%s: expected %s, got %s", path, i,
                        field, what, json_check_type_name(v));
        else
            fig_err_set(err, FIG_E_CONFIG, "%s: tools.http_fetch.credentials[%zu].%s: expected %s, got \"%s\"", path,
                        i, field, what, json_check_printable(s, pk, sizeof(pk)));
        return -1;
    }
    *out = fig_strdup(s);
    return 0;
}

static int app_valid_exact_host(const char *s)
{
    return app_valid_host(s, 0);
}

/* Headers that carry the request's framing or routing; a credential must not
 * replace them. */
static const char *const app_reserved_headers[] = {"host", "content-length", "transfer-encoding", "connection",
                                                   "content-type", "te", "upgrade", "expect", NULL};

static int app_parse_credentials(const json_t *v, const char *path, app_http_fetch_t *h, fig_err_t *err)
{
    if (!json_is_array(v) || json_array_size(v) > 16) {
        if (json_is_array(v))
            fig_err_set(err, FIG_E_CONFIG, "%s: tools.http_fetch.credentials: at most 16 credentials, got %zu", path,
                        json_array_size(v));
        else
            fig_err_set(err, FIG_E_CONFIG, "%s: tools.http_fetch.credentials: expected an array of objects, got %s",
                        path, json_check_type_name(v));
        return -1;
    }
    size_t n = json_array_size(v);
    h->credentials = fig_calloc(n ? n : 1, sizeof(*h->credentials));
    for (size_t i = 0; i < n; i++) {
        h->n_credentials = i + 1; /* counted first so a half-parsed one is freed */
        app_credential_t *cr = &h->credentials[i];
        json_t *c = json_array_get(v, i);
        char key[64], prefix[64];
        snprintf(key, sizeof(key), "tools.http_fetch.credentials[%zu]", i);
        snprintf(prefix, sizeof(prefix), "tools.http_fetch.credentials[%zu].", i);
        if (app_expect_type(c, JSON_OBJECT, "an object", path, key, err) != 0 ||
            app_check_keys(c, app_cred_keys, path, prefix, err) != 0)
            return -1;
        if (app_cred_field(c, "host", i, path, app_valid_exact_host,
                           "a lowercase host name such as \"api.example.com\"", &cr->host, err) != 0 ||
            app_cred_field(c, "header", i, path, app_valid_header, "an HTTP header name (a token of 1 to 64 characters)",
                           &cr->header, err) != 0 ||
            app_cred_field(c, "env", i, path, app_valid_env,
                           "an environment variable name ([A-Za-z_][A-Za-z0-9_]{0,127})", &cr->env, err) != 0)
            return -1;
        if (!app_host_allowed(h->hosts, h->n_hosts, cr->host)) {
            fig_err_set(err, FIG_E_CONFIG, "%s: %shost: \"%s\" is not allowed by tools.http_fetch.hosts", path,
                        prefix, cr->host);
            return -1;
        }
        for (size_t k = 0; app_reserved_headers[k]; k++) {
            if (strcasecmp(cr->header, app_reserved_headers[k]) == 0) {
                fig_err_set(err, FIG_E_CONFIG, "%s: %sheader: \"%s\" is reserved (expected an authentication header "
                            "such as \"Authorization\")", path, prefix, cr->header);
                return -1;
            }
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(h->credentials[j].host, cr->host) == 0 && strcasecmp(h->credentials[j].header, cr->header) == 0) {
                fig_err_set(err, FIG_E_CONFIG, "%s: %s: duplicate credential for host \"%s\" and header \"%s\"", path,
                            key, cr->host, cr->header);
                return -1;
            }
        }
        char name[96];
        snprintf(name, sizeof(name), "%sprefix", prefix);
        if (app_get_text_as(c, "prefix", name, 0, 1, 200, 0, path, &cr->prefix, err) != 0)
            return -1;
    }
    h->n_credentials = n;
    return 0;
}

static int app_parse_http_fetch(const json_t *v, const char *path, app_http_fetch_t *h, fig_err_t *err)
{
    if (app_expect_type(v, JSON_OBJECT, "an object", path, "tools.http_fetch", err) != 0 ||
        app_check_keys(v, app_http_keys, path, "tools.http_fetch.", err) != 0)
        return -1;
    h->enabled = 1;
    json_t *hosts = json_object_get(v, "hosts");
    static const char host_what[] = "lowercase host names such as \"example.com\" or \"*.example.com\"";
    if (hosts == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s: tools.http_fetch.hosts: missing (expected an array of 1 to 64 %s)", path,
                    host_what);
        return -1;
    }
    if (app_parse_str_list(hosts, path, "tools.http_fetch.hosts", 1, 64, app_valid_host_pattern, host_what, &h->hosts,
                           &h->n_hosts, err) != 0)
        return -1;
    json_t *priv = json_object_get(v, "private_hosts");
    if (priv != NULL) {
        if (app_parse_str_list(priv, path, "tools.http_fetch.private_hosts", 0, 64, app_valid_host_pattern, host_what,
                               &h->private_hosts, &h->n_private_hosts, err) != 0)
            return -1;
        for (size_t i = 0; i < h->n_private_hosts; i++) {
            int found = 0;
            for (size_t j = 0; j < h->n_hosts; j++)
                found |= strcmp(h->private_hosts[i], h->hosts[j]) == 0;
            if (!found) {
                fig_err_set(err, FIG_E_CONFIG,
                            "%s: tools.http_fetch.private_hosts[%zu]: \"%s\" must also be listed in tools.http_fetch.hosts",
                            path, i, h->private_hosts[i]);
                return -1;
            }
        }
    }
    json_t *methods = json_object_get(v, "methods");
    if (methods != NULL) {
        char **m = NULL;
        size_t n = 0;
        if (app_parse_str_list(methods, path, "tools.http_fetch.methods", 1, 2, app_valid_method,
                               "\"GET\" or \"POST\"", &m, &n, err) != 0)
            return -1;
        int get = 0;
        for (size_t i = 0; i < n; i++) {
            get |= strcmp(m[i], "GET") == 0;
            h->allow_post |= strcmp(m[i], "POST") == 0;
        }
        app_strs_free(m, n);
        if (!get) {
            fig_err_set(err, FIG_E_CONFIG, "%s: tools.http_fetch.methods: expected [\"GET\"] or [\"GET\", \"POST\"] "
                        "(GET is always allowed)", path);
            return -1;
        }
    }
    if (app_parse_nums(v, app_http_specs, APP_N(app_http_specs), "tools.http_fetch.", path, h, err) != 0)
        return -1;
    json_t *creds = json_object_get(v, "credentials");
    if (creds != NULL && app_parse_credentials(creds, path, h, err) != 0)
        return -1;
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
        json_t *ddl = json_object_get(sql, "ddl");
        if (ddl != NULL) {
            if (!json_is_boolean(ddl)) {
                fig_err_set(err, FIG_E_CONFIG, "%s: tools.sql.ddl: expected true or false, got %s", path,
                            json_check_type_name(ddl));
                return -1;
            }
            tmp->sql_ddl = json_is_true(ddl);
            if (tmp->sql_ddl && tmp->sql != APP_SQL_WRITE) {
                fig_err_set(err, FIG_E_CONFIG, "%s: tools.sql.ddl: true requires tools.sql.access \"write\"", path);
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

    json_t *http = json_object_get(tools, "http_fetch");
    if (http != NULL && app_parse_http_fetch(http, path, &tmp->http_fetch, err) != 0)
        return -1;

    json_t *run_code = json_object_get(tools, "run_code");
    if (run_code != NULL) {
        if (app_expect_type(run_code, JSON_OBJECT, "an object", path, "tools.run_code", err) != 0)
            return -1;
        const char *keys[APP_N(app_run_code_specs) + 1];
        for (size_t i = 0; i < APP_N(app_run_code_specs); i++)
            keys[i] = app_run_code_specs[i].key;
        keys[APP_N(app_run_code_specs)] = NULL;
        if (app_check_keys(run_code, keys, path, "tools.run_code.", err) != 0 ||
            app_parse_nums(run_code, app_run_code_specs, APP_N(app_run_code_specs), "tools.run_code.", path,
                           &tmp->run_code, err) != 0)
            return -1;
        tmp->run_code.enabled = 1;
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

/* Compiles a path regex (POSIX ERE, no submatches) for routing, actions and
 * prefetch.rank into *out; -1 with the error naming key (nothing to free then). */
static int app_regex_compile_into(regex_t *out, const char *text, const char *path, const char *key, fig_err_t *err)
{
    size_t n = json_check_utf8_chars(text);
    if (n < 1 || n > APP_MAX_ROUTE_REGEX || json_check_has_control(text, 0)) {
        fig_err_set(err, FIG_E_CONFIG,
                    "%s: %s: expected a regular expression of 1 to %d characters without control characters", path,
                    key, APP_MAX_ROUTE_REGEX);
        return -1;
    }
    int rc = regcomp(out, text, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[128];
        regerror(rc, out, msg, sizeof(msg));
        fig_err_set(err, FIG_E_CONFIG, "%s: %s: invalid regular expression: %s", path, key, msg);
        return -1;
    }
    return 0;
}

/* The same, heap-allocated (caller regfree()s and free()s), or NULL. */
static regex_t *app_regex_compile(const char *text, const char *path, const char *key, fig_err_t *err)
{
    regex_t *compiled = fig_malloc(sizeof(*compiled));
    if (app_regex_compile_into(compiled, text, path, key, err) != 0) {
        free(compiled);
        return NULL;
    }
    return compiled;
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

/* "method" and "path" of a routing rule or an action; what names the rule in
 * messages ("routing[2]"). */
static int app_parse_method_path(const json_t *v, const char *what, const char *path, char **method_out,
                                 char **path_out, void **re_out, fig_err_t *err)
{
    char key[96];
    json_t *method = json_object_get(v, "method");
    if (method != NULL) {
        snprintf(key, sizeof(key), "%s.method", what);
        if (app_expect_type(method, JSON_STRING, "\"GET\" or \"POST\"", path, key, err) != 0)
            return -1;
        const char *m = json_string_value(method);
        if (strcmp(m, "GET") != 0 && strcmp(m, "POST") != 0) {
            char pk[64];
            fig_err_set(err, FIG_E_CONFIG, "%s: %s: expected \"GET\" or \"POST\", got \"%s\"", path, key,
                        json_check_printable(m, pk, sizeof(pk)));
            return -1;
        }
        *method_out = fig_strdup(m);
    }

    json_t *re = json_object_get(v, "path");
    if (re != NULL) {
        snprintf(key, sizeof(key), "%s.path", what);
        if (app_expect_type(re, JSON_STRING, "a regular expression string", path, key, err) != 0)
            return -1;
        const char *text = json_string_value(re);
        regex_t *compiled = app_regex_compile(text, path, key, err);
        if (compiled == NULL)
            return -1;
        *path_out = fig_strdup(text);
        *re_out = compiled;
    }
    return 0;
}

static int app_parse_route(const json_t *v, size_t i, const char *path, app_route_t *r, fig_err_t *err)
{
    char key[64], prefix[64];
    snprintf(prefix, sizeof(prefix), "routing[%zu].", i);
    snprintf(key, sizeof(key), "routing[%zu]", i);
    if (app_expect_type(v, JSON_OBJECT, "an object", path, key, err) != 0 ||
        app_check_keys(v, app_route_keys, path, prefix, err) != 0 ||
        app_parse_method_path(v, key, path, &r->method, &r->path, &r->path_re, err) != 0)
        return -1;

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

/* ---- confirm, actions, uploads, cache, prefetch ---- */

#define APP_MAX_CONFIRM 32
#define APP_MAX_ACTIONS 32
#define APP_MAX_RANK 16
#define APP_MAX_VERIFY_SQL 10000
#define APP_MAX_VERIFY_PYTHON 65536

static void app_confirm_free(app_confirm_rule_t *rules, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rules[i].tool);
        free(rules[i].operation);
        app_strs_free(rules[i].tables, rules[i].n_tables);
        free(rules[i].method);
    }
    free(rules);
}

static int app_parse_confirm_rule(const json_t *v, size_t i, const char *path, const app_t *tmp,
                                  app_confirm_rule_t *r, fig_err_t *err)
{
    char key[64], prefix[64];
    snprintf(key, sizeof(key), "confirm[%zu]", i);
    snprintf(prefix, sizeof(prefix), "confirm[%zu].", i);
    if (app_expect_type(v, JSON_OBJECT, "an object", path, key, err) != 0)
        return -1;
    json_t *tool = json_object_get(v, "tool");
    const char *t = json_is_string(tool) ? json_string_value(tool) : NULL;
    if (t == NULL || (strcmp(t, "sql") != 0 && strcmp(t, "http_fetch") != 0)) {
        char pk[64];
        if (tool == NULL)
            fig_err_set(err, FIG_E_CONFIG, "%s: %stool: missing (expected \"sql\" or \"http_fetch\")", path, prefix);
        else if (t == NULL)
            fig_err_set(err, FIG_E_CONFIG, "%s: %stool: expected \"sql\" or \"http_fetch\", got %s", path, prefix,
                        json_check_type_name(tool));
        else
            fig_err_set(err, FIG_E_CONFIG, "%s: %stool: expected \"sql\" or \"http_fetch\", got \"%s\"", path, prefix,
                        json_check_printable(t, pk, sizeof(pk)));
        return -1;
    }
    int is_sql = strcmp(t, "sql") == 0;
    if (app_check_keys(v, is_sql ? app_confirm_sql_keys : app_confirm_http_keys, path, prefix, err) != 0)
        return -1;
    r->tool = fig_strdup(t);
    if (is_sql) {
        if (tmp->sql != APP_SQL_WRITE) {
            fig_err_set(err, FIG_E_CONFIG, "%s: %stool: the app does not enable sql writes (tools.sql.access "
                        "\"write\"), so this rule can never apply", path, prefix);
            return -1;
        }
        json_t *op = json_object_get(v, "operation");
        if (op != NULL) {
            static const char *const ops[] = {"INSERT", "UPDATE", "DELETE", "DDL"};
            const char *o = json_is_string(op) ? json_string_value(op) : NULL;
            int ok = 0;
            for (size_t k = 0; o != NULL && k < APP_N(ops); k++)
                ok |= strcmp(o, ops[k]) == 0;
            if (!ok) {
                char pk[64];
                fig_err_set(err, FIG_E_CONFIG,
                            "%s: %soperation: expected \"INSERT\", \"UPDATE\", \"DELETE\" or \"DDL\", got %s%s%s", path,
                            prefix, o ? "\"" : "", o ? json_check_printable(o, pk, sizeof(pk)) : json_check_type_name(op),
                            o ? "\"" : "");
                return -1;
            }
            if (strcmp(o, "DDL") == 0 && !tmp->sql_ddl) {
                fig_err_set(err, FIG_E_CONFIG, "%s: %soperation: \"DDL\" requires tools.sql.ddl true", path, prefix);
                return -1;
            }
            r->operation = fig_strdup(o);
        }
        json_t *tables = json_object_get(v, "tables");
        snprintf(key, sizeof(key), "confirm[%zu].tables", i);
        if (tables != NULL && app_parse_str_list(tables, path, key, 1, 32, app_valid_table,
                                                 "lowercase table names ([a-z_][a-z0-9_]{0,63})", &r->tables,
                                                 &r->n_tables, err) != 0)
            return -1;
    } else {
        if (!tmp->http_fetch.enabled) {
            fig_err_set(err, FIG_E_CONFIG, "%s: %stool: the app does not enable http_fetch (tools.http_fetch)", path,
                        prefix);
            return -1;
        }
        json_t *method = json_object_get(v, "method");
        if (method != NULL) {
            const char *m = json_is_string(method) ? json_string_value(method) : NULL;
            if (m == NULL || !app_valid_method(m)) {
                char pk[64];
                fig_err_set(err, FIG_E_CONFIG, "%s: %smethod: expected \"GET\" or \"POST\", got %s%s%s", path, prefix,
                            m ? "\"" : "", m ? json_check_printable(m, pk, sizeof(pk)) : json_check_type_name(method),
                            m ? "\"" : "");
                return -1;
            }
            if (strcmp(m, "POST") == 0 && !tmp->http_fetch.allow_post) {
                fig_err_set(err, FIG_E_CONFIG, "%s: %smethod: \"POST\" is not in tools.http_fetch.methods, so this "
                            "rule can never apply", path, prefix);
                return -1;
            }
            r->method = fig_strdup(m);
        }
    }
    return 0;
}

static int app_parse_confirm(const json_t *v, const char *path, app_t *tmp, fig_err_t *err)
{
    if (!json_is_array(v) || json_array_size(v) > APP_MAX_CONFIRM) {
        if (json_is_array(v))
            fig_err_set(err, FIG_E_CONFIG, "%s: confirm: at most %d rules, got %zu", path, APP_MAX_CONFIRM,
                        json_array_size(v));
        else
            fig_err_set(err, FIG_E_CONFIG, "%s: confirm: expected an array of rules, got %s", path,
                        json_check_type_name(v));
        return -1;
    }
    size_t n = json_array_size(v);
    tmp->confirm = fig_calloc(n ? n : 1, sizeof(*tmp->confirm));
    for (size_t i = 0; i < n; i++) {
        tmp->n_confirm = i + 1;
        if (app_parse_confirm_rule(json_array_get(v, i), i, path, tmp, &tmp->confirm[i], err) != 0)
            return -1;
    }
    tmp->n_confirm = n;
    return 0;
}

static void app_actions_free(app_action_t *actions, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(actions[i].method);
        free(actions[i].path);
        if (actions[i].path_re != NULL) {
            regfree(actions[i].path_re);
            free(actions[i].path_re);
        }
        free(actions[i].verify_sql);
        free(actions[i].verify_python);
    }
    free(actions);
}

static int app_parse_action(const json_t *v, size_t i, const char *path, const app_t *tmp, app_action_t *a,
                            fig_err_t *err)
{
    char key[64], prefix[64];
    snprintf(key, sizeof(key), "actions[%zu]", i);
    snprintf(prefix, sizeof(prefix), "actions[%zu].", i);
    if (app_expect_type(v, JSON_OBJECT, "an object", path, key, err) != 0 ||
        app_check_keys(v, app_action_keys, path, prefix, err) != 0 ||
        app_parse_method_path(v, key, path, &a->method, &a->path, &a->path_re, err) != 0)
        return -1;

    json_t *attempts = json_object_get(v, "attempts");
    if (attempts == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %sattempts: missing (expected an integer from 2 to 8)", path, prefix);
        return -1;
    }
    static const app_num_spec_t attempts_spec[] = {{"attempts", 2, 8, 2, offsetof(app_action_t, attempts), 0}};
    if (app_parse_nums(v, attempts_spec, 1, prefix, path, a, err) != 0)
        return -1;

    json_t *verify = json_object_get(v, "verify");
    snprintf(key, sizeof(key), "actions[%zu].verify", i);
    snprintf(prefix, sizeof(prefix), "actions[%zu].verify.", i);
    if (verify == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s: missing (expected {\"sql\": \"...\"} or {\"python\": \"...\"})", path,
                    key);
        return -1;
    }
    if (app_expect_type(verify, JSON_OBJECT, "an object", path, key, err) != 0 ||
        app_check_keys(verify, app_verify_keys, path, prefix, err) != 0)
        return -1;
    if (json_object_size(verify) != 1) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s: expected exactly one of \"sql\" or \"python\"", path, key);
        return -1;
    }
    char sub[96];
    if (json_object_get(verify, "sql") != NULL) {
        snprintf(sub, sizeof(sub), "actions[%zu].verify.sql", i);
        return app_get_text_as(verify, "sql", sub, 1, 1, APP_MAX_VERIFY_SQL, 1, path, &a->verify_sql, err);
    }
    snprintf(sub, sizeof(sub), "actions[%zu].verify.python", i);
    if (!tmp->run_code.enabled) {
        fig_err_set(err, FIG_E_CONFIG, "%s: %s: requires tools.run_code (the verifier runs in its sandbox)", path, sub);
        return -1;
    }
    return app_get_text_as(verify, "python", sub, 1, 1, APP_MAX_VERIFY_PYTHON, 1, path, &a->verify_python, err);
}

static int app_parse_actions(const json_t *v, const char *path, app_t *tmp, fig_err_t *err)
{
    if (!json_is_array(v) || json_array_size(v) > APP_MAX_ACTIONS) {
        if (json_is_array(v))
            fig_err_set(err, FIG_E_CONFIG, "%s: actions: at most %d actions, got %zu", path, APP_MAX_ACTIONS,
                        json_array_size(v));
        else
            fig_err_set(err, FIG_E_CONFIG, "%s: actions: expected an array of actions, got %s", path,
                        json_check_type_name(v));
        return -1;
    }
    size_t n = json_array_size(v);
    tmp->actions = fig_calloc(n ? n : 1, sizeof(*tmp->actions));
    for (size_t i = 0; i < n; i++) {
        tmp->n_actions = i + 1;
        if (app_parse_action(json_array_get(v, i), i, path, tmp, &tmp->actions[i], err) != 0)
            return -1;
    }
    tmp->n_actions = n;
    return 0;
}

const app_action_t *app_action_match(const app_t *app, const char *method, const char *path)
{
    for (size_t i = 0; i < app->n_actions; i++) {
        const app_action_t *a = &app->actions[i];
        if (a->method != NULL && (method == NULL || strcmp(a->method, method) != 0))
            continue;
        if (a->path_re != NULL && (path == NULL || regexec(a->path_re, path, 0, NULL, 0) != 0))
            continue;
        return a;
    }
    return NULL;
}

static void app_rank_free(char **texts, regex_t *res, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(texts[i]);
        if (res != NULL)
            regfree(&res[i]);
    }
    free(texts);
    free(res);
}

/* An object of integer keys only (uploads, cache, prefetch minus rank). */
static int app_parse_num_object(const json_t *v, const char *name, const char *const *keys,
                                const app_num_spec_t *specs, size_t n, const char *path, void *base, fig_err_t *err)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "%s.", name);
    if (app_expect_type(v, JSON_OBJECT, "an object", path, name, err) != 0 ||
        app_check_keys(v, keys, path, prefix, err) != 0)
        return -1;
    return app_parse_nums(v, specs, n, prefix, path, base, err);
}

static int app_parse_prefetch(const json_t *v, const char *path, app_t *tmp, fig_err_t *err)
{
    if (app_parse_num_object(v, "prefetch", app_prefetch_keys, app_prefetch_specs, APP_N(app_prefetch_specs), path,
                             tmp, err) != 0)
        return -1;
    json_t *rank = json_object_get(v, "rank");
    if (rank == NULL)
        return 0;
    if (!json_is_array(rank) || json_array_size(rank) > APP_MAX_RANK) {
        if (json_is_array(rank))
            fig_err_set(err, FIG_E_CONFIG, "%s: prefetch.rank: expected an array of at most %d regular expressions, "
                        "got %zu", path, APP_MAX_RANK, json_array_size(rank));
        else
            fig_err_set(err, FIG_E_CONFIG, "%s: prefetch.rank: expected an array of regular expressions, got %s", path,
                        json_check_type_name(rank));
        return -1;
    }
    size_t n = json_array_size(rank);
    char **texts = fig_calloc(n ? n : 1, sizeof(*texts));
    regex_t *res = fig_calloc(n ? n : 1, sizeof(*res));
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(rank, i);
        char key[64];
        snprintf(key, sizeof(key), "prefetch.rank[%zu]", i);
        if (app_expect_type(e, JSON_STRING, "a regular expression string", path, key, err) != 0 ||
            app_regex_compile_into(&res[i], json_string_value(e), path, key, err) != 0) {
            app_rank_free(texts, res, i);
            return -1;
        }
        texts[i] = fig_strdup(json_string_value(e));
    }
    tmp->prefetch_rank = texts;
    tmp->prefetch_rank_re = res;
    tmp->n_prefetch_rank = n;
    return 0;
}

size_t app_prefetch_rank(const app_t *app, const char *path)
{
    regex_t *res = app->prefetch_rank_re;
    for (size_t i = 0; path != NULL && i < app->n_prefetch_rank; i++)
        if (regexec(&res[i], path, 0, NULL, 0) == 0)
            return i;
    return app->n_prefetch_rank;
}

/* Frees everything app_parse_json fills and zeroes it (the fields' owner is the app). */
static void app_parsed_free(app_t *a)
{
    free(a->title);
    free(a->description);
    free(a->model);
    app_models_free(a->models, a->n_models);
    app_routes_free(a->routes, a->n_routes);
    app_http_free(&a->http_fetch);
    app_confirm_free(a->confirm, a->n_confirm);
    app_actions_free(a->actions, a->n_actions);
    app_rank_free(a->prefetch_rank, a->prefetch_rank_re, a->n_prefetch_rank);
    a->title = a->description = a->model = NULL;
    a->models = NULL;
    a->n_models = 0;
    a->routes = NULL;
    a->n_routes = 0;
    a->confirm = NULL;
    a->n_confirm = 0;
    a->actions = NULL;
    a->n_actions = 0;
    a->prefetch_rank = NULL;
    a->prefetch_rank_re = NULL;
    a->n_prefetch_rank = 0;
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
    app_nums_default(app_http_specs, APP_N(app_http_specs), &tmp.http_fetch);
    app_nums_default(app_run_code_specs, APP_N(app_run_code_specs), &tmp.run_code);
    app_nums_default(app_uploads_specs, APP_N(app_uploads_specs), &tmp);
    app_nums_default(app_cache_specs, APP_N(app_cache_specs), &tmp);
    app_nums_default(app_prefetch_specs, APP_N(app_prefetch_specs), &tmp);
    tmp.confirm_ttl_s = 900;

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
    /* tools before confirm and actions: those refer to the tools the app enables. */
    json_t *tools = json_object_get(root, "tools");
    if (tools != NULL && app_parse_tools(tools, path, &tmp, err) != 0)
        goto fail;
    json_t *limits = json_object_get(root, "limits");
    if (limits != NULL && app_parse_limits(limits, path, &tmp.limits, err) != 0)
        goto fail;
    json_t *confirm = json_object_get(root, "confirm");
    if (confirm != NULL && app_parse_confirm(confirm, path, &tmp, err) != 0)
        goto fail;
    static const app_num_spec_t ttl_spec[] = {{"confirm_ttl_s", 30, 86400, 900, offsetof(app_t, confirm_ttl_s), 0}};
    if (app_parse_nums(root, ttl_spec, 1, "", path, &tmp, err) != 0)
        goto fail;
    json_t *v = json_object_get(root, "uploads");
    if (v != NULL && app_parse_num_object(v, "uploads", app_uploads_keys, app_uploads_specs,
                                          APP_N(app_uploads_specs), path, &tmp, err) != 0)
        goto fail;
    v = json_object_get(root, "actions");
    if (v != NULL && app_parse_actions(v, path, &tmp, err) != 0)
        goto fail;
    v = json_object_get(root, "cache");
    if (v != NULL && app_parse_num_object(v, "cache", app_cache_keys, app_cache_specs, APP_N(app_cache_specs), path,
                                          &tmp, err) != 0)
        goto fail;
    v = json_object_get(root, "prefetch");
    if (v != NULL && app_parse_prefetch(v, path, &tmp, err) != 0)
        goto fail;

    json_decref(root);
    app_parsed_free(app);
    app->title = tmp.title;
    app->description = tmp.description;
    app->model = tmp.model;
    app->models = tmp.models;
    app->n_models = tmp.n_models;
    app->routes = tmp.routes;
    app->n_routes = tmp.n_routes;
    app->sql = tmp.sql;
    app->sql_ddl = tmp.sql_ddl;
    app->tool_set_state = tmp.tool_set_state;
    app->http_fetch = tmp.http_fetch;
    app->run_code = tmp.run_code;
    app->confirm = tmp.confirm;
    app->n_confirm = tmp.n_confirm;
    app->confirm_ttl_s = tmp.confirm_ttl_s;
    app->max_upload_bytes = tmp.max_upload_bytes;
    app->max_uploads = tmp.max_uploads;
    app->actions = tmp.actions;
    app->n_actions = tmp.n_actions;
    app->cache_ttl_s = tmp.cache_ttl_s;
    app->prefetch_links = tmp.prefetch_links;
    app->prefetch_concurrency = tmp.prefetch_concurrency;
    app->prefetch_rank = tmp.prefetch_rank;
    app->n_prefetch_rank = tmp.n_prefetch_rank;
    app->prefetch_rank_re = tmp.prefetch_rank_re;
    app->limits = tmp.limits;
    return 0;

fail:
    json_decref(root);
    app_parsed_free(&tmp);
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
    app_parsed_free(app);
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
    /* The sql tool bumps user_version in every write transaction, so the page cache
     * key (data_version) continues where it was before a restart. */
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK || sqlite3_step(q) != SQLITE_ROW) {
        fig_err_set(err, FIG_E_DB, "%s: reading user_version: %s", app->db_path, sqlite3_errmsg(db));
        sqlite3_finalize(q);
        sqlite3_close(db);
        return -1;
    }
    /* user_version is a signed 32-bit field; the sql tool never makes it negative. */
    sqlite3_int64 version = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    char *schema = app_db_schema(db, err);
    sqlite3_close(db);
    if (schema == NULL)
        return -1;
    atomic_store(&app->data_version, version > 0 ? (unsigned long long)version : 0);
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
