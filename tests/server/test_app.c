/*
 * test_app.c — app.json validation (every kind of error, checking the message
 * names the file and the key), the "models" chain and "routing" rules with
 * app_route_match, app folders (names, prompt.md), apps_load_all,
 * and the app database: seeding once, atomically, and the schema text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "buf.h"

#define P "prompts/mail/app.json"

static char tmpdir[64];

static int setup_dir(void **s)
{
    (void)s;
    strcpy(tmpdir, "/tmp/figment-app-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **s)
{
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *path_in(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *path_in(const char *fmt, ...)
{
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b, "%s/", tmpdir);
    va_list ap;
    va_start(ap, fmt);
    fig_buf_vappendf(&b, fmt, ap);
    va_end(ap);
    return fig_buf_steal(&b);
}

static void write_file(const char *path, const char *text, size_t len)
{
    /* mkdir -p the parent */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void put(const char *rel, const char *text)
{
    char *p = path_in("%s", rel);
    write_file(p, text, strlen(text));
    free(p);
}

/* ---- app.json ---- */

static void json_bad(const char *text, const char *want_msg)
{
    app_t app;
    memset(&app, 0, sizeof(app));
    fig_err_t err = {0};
    if (app_parse_json(&app, P, text, &err) == 0)
        fail_msg("accepted: %s", text);
    assert_int_equal(err.code, FIG_E_CONFIG);
    if (strstr(err.msg, want_msg) == NULL)
        fail_msg("for %s\n  got:  %s\n  want: %s", text, err.msg, want_msg);
    /* Nothing is left half-filled. */
    assert_null(app.title);
    assert_null(app.description);
    assert_null(app.model);
    assert_null(app.models);
    assert_int_equal(app.n_models, 0);
    assert_null(app.routes);
    assert_int_equal(app.n_routes, 0);
    assert_null(app.http_fetch.hosts);
    assert_null(app.http_fetch.credentials);
    assert_null(app.confirm);
    assert_null(app.actions);
    assert_null(app.prefetch_rank);
    assert_null(app.prefetch_rank_re);
}

static void test_json_minimal_defaults(void **s)
{
    (void)s;
    app_t app;
    memset(&app, 0, sizeof(app));
    fig_err_t err = {0};
    assert_int_equal(app_parse_json(&app, P, "{\"title\":\"Mail\",\"description\":\"A mail client\"}", &err), 0);
    assert_string_equal(app.title, "Mail");
    assert_string_equal(app.description, "A mail client");
    assert_null(app.model);
    assert_int_equal(app.sql, APP_SQL_NONE);
    assert_int_equal(app.tool_set_state, 0);
    assert_int_equal(app.limits.max_tool_rounds, 8);
    assert_int_equal(app.limits.deadline_ms, 60000);
    assert_int_equal(app.limits.max_state_bytes, 16384);
    assert_int_equal(app.limits.max_body_bytes, 1048576);
    assert_int_equal(app.limits.sql_max_rows, 200);
    assert_int_equal(app.limits.sql_timeout_ms, 2000);
    assert_int_equal(app.limits.max_output_tokens, 4096);
    assert_int_equal(app.limits.history_items, 5);
    free(app.title);
    free(app.description);
}

static void test_json_full(void **s)
{
    (void)s;
    app_t app;
    memset(&app, 0, sizeof(app));
    fig_err_t err = {0};
    const char *text = "{\n"
                       "  \"title\": \"Caf\\u00e9 \xe2\x98\x95\",\n"
                       "  \"description\": \"Line one\\nline two\",\n"
                       "  \"model\": \"gpt-4o-mini\",\n"
                       "  \"tools\": {\"sql\": {\"access\": \"read\"}, \"set_state\": {}},\n"
                       "  \"limits\": {\"max_tool_rounds\": 1, \"deadline_ms\": 600000, \"max_state_bytes\": 256,\n"
                       "    \"max_body_bytes\": 67108864, \"sql_max_rows\": 10000, \"sql_timeout_ms\": 10,\n"
                       "    \"max_output_tokens\": 200000, \"history_items\": 0}\n"
                       "}\n";
    assert_int_equal(app_parse_json(&app, P, text, &err), 0);
    assert_string_equal(app.title, "Caf\xc3\xa9 \xe2\x98\x95");
    assert_string_equal(app.model, "gpt-4o-mini");
    assert_int_equal(app.sql, APP_SQL_READ);
    assert_int_equal(app.tool_set_state, 1);
    assert_int_equal(app.limits.max_tool_rounds, 1);
    assert_int_equal(app.limits.deadline_ms, 600000);
    assert_int_equal(app.limits.max_state_bytes, 256);
    assert_int_equal(app.limits.max_body_bytes, 67108864);
    assert_int_equal(app.limits.sql_max_rows, 10000);
    assert_int_equal(app.limits.sql_timeout_ms, 10);
    assert_int_equal(app.limits.max_output_tokens, 200000);
    assert_int_equal(app.limits.history_items, 0);

    /* Re-parsing replaces the fields (no leak, no stale model). */
    assert_int_equal(app_parse_json(&app, P,
                                    "{\"title\":\"T\",\"description\":\"D\",\"tools\":{\"sql\":{\"access\":\"write\"}}}",
                                    &err),
                     0);
    assert_string_equal(app.title, "T");
    assert_null(app.model);
    assert_int_equal(app.sql, APP_SQL_WRITE);
    assert_int_equal(app.tool_set_state, 0);
    assert_int_equal(app.limits.max_tool_rounds, 8);
    /* tools.sql without access means read. */
    assert_int_equal(app_parse_json(&app, P, "{\"title\":\"T\",\"description\":\"D\",\"tools\":{\"sql\":{}}}", &err),
                     0);
    assert_int_equal(app.sql, APP_SQL_READ);
    /* A failed parse leaves the previous values intact. */
    assert_int_equal(app_parse_json(&app, P, "{\"title\":\"New\",\"description\":\"D\",\"x\":1}", &err), -1);
    assert_string_equal(app.title, "T");
    free(app.title);
    free(app.description);
    free(app.model);
}

static void test_json_syntax_errors(void **s)
{
    (void)s;
    json_bad("", P ":1:0: ");
    json_bad("{\"title\": \"x\",\n  \"description\": }", P ":2:18: ");
    json_bad("{\"title\":\"a\",\"description\":\"b\"} trailing", P ":1:");
    json_bad("{\"title\":\"a\",\"title\":\"b\",\"description\":\"c\"}", "duplicate");
    json_bad("[1]", P ": expected an object at the top level, got an array");
    json_bad("\"str\"", P ":"); /* jansson refuses non-containers without JSON_DECODE_ANY */
}

static void test_json_unknown_keys(void **s)
{
    (void)s;
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"limits\":{\"deadlin_ms\":5000}}",
             "prompts/mail/app.json: limits.deadlin_ms: unknown key (expected one of: max_tool_rounds, deadline_ms, "
             "max_state_bytes, max_body_bytes, sql_max_rows, sql_timeout_ms, max_output_tokens, history_items)");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"titel\":\"c\"}",
             P ": titel: unknown key (expected one of: title, description, model, models, routing, tools, limits, "
               "confirm, confirm_ttl_s, uploads, actions, cache, prefetch)");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"tools\":{\"http\":{}}}",
             P ": tools.http: unknown key (expected one of: sql, set_state, http_fetch, run_code)");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"tools\":{\"sql\":{\"acess\":\"read\"}}}",
             P ": tools.sql.acess: unknown key (expected one of: access, ddl)");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"tools\":{\"set_state\":{\"max\":1}}}",
             P ": tools.set_state.max: unknown key (expected no keys)");
    /* Control characters in a hostile key do not reach the message raw. */
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"\\u001b[31m\":1}", P ": ?[31m: unknown key");
}

static void test_json_types(void **s)
{
    (void)s;
    json_bad("{\"title\":5,\"description\":\"b\"}", "prompts/mail/app.json: title: expected a string, got an integer");
    json_bad("{\"title\":\"a\",\"description\":[\"b\"]}", P ": description: expected a string, got an array");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"model\":null}", P ": model: expected a string, got null");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"tools\":[]}", P ": tools: expected an object, got an array");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"tools\":{\"sql\":true}}",
             P ": tools.sql: expected an object, got a boolean");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"tools\":{\"sql\":{\"access\":1}}}",
             P ": tools.sql.access: expected \"read\" or \"write\", got an integer");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"tools\":{\"sql\":{\"access\":\"admin\"}}}",
             P ": tools.sql.access: expected \"read\" or \"write\", got \"admin\"");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"tools\":{\"set_state\":true}}",
             P ": tools.set_state: expected an object, got a boolean");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"limits\":5}", P ": limits: expected an object, got an integer");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"limits\":{\"deadline_ms\":1500.5}}",
             P ": limits.deadline_ms: expected an integer from 1000 to 600000, got a real number");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"limits\":{\"deadline_ms\":\"5000\"}}",
             P ": limits.deadline_ms: expected an integer from 1000 to 600000, got a string");
}

static void test_json_ranges(void **s)
{
    (void)s;
    static const struct {
        const char *key;
        long long min, max;
    } r[] = {
        {"max_tool_rounds", 1, 8},         {"deadline_ms", 1000, 600000},
        {"max_state_bytes", 256, 1048576}, {"max_body_bytes", 1024, 67108864},
        {"sql_max_rows", 1, 10000},        {"sql_timeout_ms", 10, 60000},
        {"max_output_tokens", 16, 200000}, {"history_items", 0, 50},
    };
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        char text[256], want[256];
        long long bad[] = {r[i].min - 1, r[i].max + 1, -9223372036854775807LL};
        for (int k = 0; k < 3; k++) {
            snprintf(text, sizeof(text), "{\"title\":\"a\",\"description\":\"b\",\"limits\":{\"%s\":%lld}}", r[i].key,
                     bad[k]);
            snprintf(want, sizeof(want), P ": limits.%s: expected an integer from %lld to %lld, got %lld", r[i].key,
                     r[i].min, r[i].max, bad[k]);
            json_bad(text, want);
        }
        long long good[] = {r[i].min, r[i].max};
        for (int k = 0; k < 2; k++) {
            app_t app;
            memset(&app, 0, sizeof(app));
            fig_err_t err;
            snprintf(text, sizeof(text), "{\"title\":\"a\",\"description\":\"b\",\"limits\":{\"%s\":%lld}}", r[i].key,
                     good[k]);
            assert_int_equal(app_parse_json(&app, P, text, &err), 0);
            free(app.title);
            free(app.description);
        }
    }
    /* An integer too large for jansson is a syntax-level error. */
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"limits\":{\"deadline_ms\":99999999999999999999}}", P ":1:");
}

static void test_json_strings(void **s)
{
    (void)s;
    json_bad("{\"description\":\"b\"}", P ": title: missing (expected a string of 1 to 80 characters)");
    json_bad("{\"title\":\"a\"}", P ": description: missing (expected a string of 1 to 300 characters)");
    json_bad("{\"title\":\"\",\"description\":\"b\"}", P ": title: expected a string of 1 to 80 characters, got 0");
    json_bad("{\"title\":\"a\",\"description\":\"\"}", P ": description: expected a string of 1 to 300 characters");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"model\":\"\"}", P ": model: expected a string of 1 to");
    json_bad("{\"title\":\"a\\nb\",\"description\":\"b\"}", P ": title: control characters are not allowed");
    json_bad("{\"title\":\"a\",\"description\":\"b\\u0007\"}", P ": description: control characters are not allowed");
    json_bad("{\"title\":\"a\\u0000b\",\"description\":\"b\"}", P ":1:"); /* NUL refused by the parser */

    /* Lengths count characters, not bytes: 80 two-byte characters fit, 81 do not. */
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, "{\"description\":\"d\",\"title\":\"");
    for (int i = 0; i < 80; i++)
        fig_buf_append_str(&b, "\xc3\xa9");
    fig_buf_append_str(&b, "\"}");
    app_t app;
    memset(&app, 0, sizeof(app));
    fig_err_t err;
    assert_int_equal(app_parse_json(&app, P, b.data, &err), 0);
    free(app.title);
    free(app.description);
    fig_buf_reset(&b);
    fig_buf_append_str(&b, "{\"description\":\"d\",\"title\":\"");
    for (int i = 0; i < 81; i++)
        fig_buf_append_str(&b, "x");
    fig_buf_append_str(&b, "\"}");
    json_bad(b.data, P ": title: expected a string of 1 to 80 characters, got 81");
    fig_buf_reset(&b);
    fig_buf_append_str(&b, "{\"title\":\"t\",\"description\":\"");
    for (int i = 0; i < 301; i++)
        fig_buf_append_str(&b, "x");
    fig_buf_append_str(&b, "\"}");
    json_bad(b.data, P ": description: expected a string of 1 to 300 characters, got 301");
    fig_buf_free(&b);
}

/* ---- models and routing ---- */

#define TD "\"title\":\"a\",\"description\":\"b\""

static void test_json_models_routing(void **s)
{
    (void)s;
    app_t app;
    memset(&app, 0, sizeof(app));
    fig_err_t err = {0};
    const char *text = "{" TD ",\n"
                       "  \"models\": [\"openai/gpt-4o-mini\", \"anthropic/claude-haiku-4-5\"],\n"
                       "  \"routing\": [\n"
                       "    {\"method\": \"GET\", \"path\": \"^/mail/(message|folder)/\", \"models\": [\"openai/gpt-4o\"]},\n"
                       "    {\"method\": \"POST\", \"models\": [\"anthropic/claude-sonnet-4-5\", \"openai/gpt-4o\"]},\n"
                       "    {\"path\": \"^/search\", \"models\": [\"local-1/meta-llama/Llama-3\"]}\n"
                       "  ]\n"
                       "}";
    if (app_parse_json(&app, P, text, &err) != 0)
        fail_msg("%s", err.msg);
    assert_null(app.model);
    assert_int_equal(app.n_models, 2);
    assert_string_equal(app.models[0], "openai/gpt-4o-mini");
    assert_string_equal(app.models[1], "anthropic/claude-haiku-4-5");
    assert_int_equal(app.n_routes, 3);
    assert_string_equal(app.routes[0].method, "GET");
    assert_string_equal(app.routes[0].path, "^/mail/(message|folder)/");
    assert_non_null(app.routes[0].path_re);
    assert_int_equal(app.routes[0].n_models, 1);
    assert_string_equal(app.routes[0].models[0], "openai/gpt-4o");
    assert_null(app.routes[1].path);
    assert_null(app.routes[1].path_re);
    assert_int_equal(app.routes[1].n_models, 2);
    assert_null(app.routes[2].method);
    assert_string_equal(app.routes[2].models[0], "local-1/meta-llama/Llama-3");

    /* First match wins; method and path both must match; NULL = any. */
    assert_ptr_equal(app_route_match(&app, "GET", "/mail/message/42"), &app.routes[0]);
    assert_ptr_equal(app_route_match(&app, "GET", "/mail/folder/inbox"), &app.routes[0]);
    assert_ptr_equal(app_route_match(&app, "POST", "/mail/message/42"), &app.routes[1]);
    assert_ptr_equal(app_route_match(&app, "POST", "/search"), &app.routes[1]);
    assert_ptr_equal(app_route_match(&app, "GET", "/search?q=x"), &app.routes[2]);
    assert_null(app_route_match(&app, "GET", "/mail/compose"));
    assert_null(app_route_match(&app, "GET", "/x/mail/message/1")); /* anchored */
    assert_null(app_route_match(&app, "HEAD", "/mail/message/1"));
    assert_null(app_route_match(&app, "GET", NULL));

    /* Re-parsing replaces the chain and the routes (ASan checks the old ones are freed). */
    assert_int_equal(app_parse_json(&app, P, "{" TD ",\"model\":\"gpt-4o\",\"routing\":[{\"models\":[\"p/m\"]}]}", &err),
                     0);
    assert_string_equal(app.model, "gpt-4o");
    assert_null(app.models);
    assert_int_equal(app.n_models, 0);
    assert_int_equal(app.n_routes, 1);
    assert_ptr_equal(app_route_match(&app, "GET", "/anything"), &app.routes[0]);
    assert_ptr_equal(app_route_match(&app, NULL, NULL), &app.routes[0]);
    /* A failed parse keeps them. */
    assert_int_equal(app_parse_json(&app, P, "{" TD ",\"routing\":[{\"path\":\"(\",\"models\":[\"p/m\"]}]}", &err), -1);
    assert_int_equal(app.n_routes, 1);
    assert_string_equal(app.routes[0].models[0], "p/m");
    /* No routing: nothing matches. */
    assert_int_equal(app_parse_json(&app, P, "{" TD ",\"routing\":[]}", &err), 0);
    assert_int_equal(app.n_routes, 0);
    assert_null(app_route_match(&app, "GET", "/"));

    /* Through app_free too. */
    app_t *heap = calloc(1, sizeof(*heap));
    assert_int_equal(app_parse_json(heap, P, text, &err), 0);
    app_free(heap);
    free(app.title);
    free(app.description);
    free(app.model);
    free(app.routes);
}

static void test_json_models_routing_errors(void **s)
{
    (void)s;
    json_bad("{" TD ",\"model\":\"gpt-4o\",\"models\":[\"p/m\"]}", P ": models: use one of model or models, not both");
    json_bad("{" TD ",\"models\":\"p/m\"}", P ": models: expected an array of 1 to 8 \"provider/model\" strings, got a string");
    json_bad("{" TD ",\"models\":[]}", P ": models: expected an array of 1 to 8 \"provider/model\" strings, got 0");
    json_bad("{" TD ",\"models\":[\"a/1\",\"a/2\",\"a/3\",\"a/4\",\"a/5\",\"a/6\",\"a/7\",\"a/8\",\"a/9\"]}",
             P ": models: expected an array of 1 to 8 \"provider/model\" strings, got 9");
    json_bad("{" TD ",\"models\":[\"p/m\", 5]}", P ": models[1]: expected a \"provider/model\" string, got an integer");
    static const char *const bad_specs[] = {"gpt-4o", "/m", "p/", "P/m", "-p/m", "p q/m", "p/m\\u0001",
                                            "abcdefghijklmnopqrstuvwxyz0123456/m"};
    for (size_t i = 0; i < sizeof(bad_specs) / sizeof(bad_specs[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "{" TD ",\"models\":[\"%s\"]}", bad_specs[i]);
        json_bad(text, P ": models[0]: expected \"provider/model\" (provider [a-z0-9][a-z0-9_-]{0,31}, model 1 to 200 "
                       "characters), got");
    }
    json_bad("{" TD ",\"routing\":{}}", P ": routing: expected an array of rules, got an object");
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, "{" TD ",\"routing\":[");
    for (int i = 0; i < 33; i++)
        fig_buf_appendf(&b, "%s{\"models\":[\"p/m\"]}", i ? "," : "");
    fig_buf_append_str(&b, "]}");
    json_bad(b.data, P ": routing: at most 32 rules, got 33");
    fig_buf_free(&b);
    json_bad("{" TD ",\"routing\":[{\"models\":[\"p/m\"]}, 1]}", P ": routing[1]: expected an object, got an integer");
    json_bad("{" TD ",\"routing\":[{\"models\":[\"p/m\"],\"metod\":\"GET\"}]}",
             P ": routing[0].metod: unknown key (expected one of: method, path, models)");
    json_bad("{" TD ",\"routing\":[{\"method\":\"GET\"}]}",
             P ": routing[0].models: missing (expected an array of 1 to 8 \"provider/model\" strings)");
    json_bad("{" TD ",\"routing\":[{\"models\":[\"p/m\"]},{\"method\":\"get\",\"models\":[\"p/m\"]}]}",
             P ": routing[1].method: expected \"GET\" or \"POST\", got \"get\"");
    json_bad("{" TD ",\"routing\":[{\"method\":[\"GET\"],\"models\":[\"p/m\"]}]}",
             P ": routing[0].method: expected \"GET\" or \"POST\", got an array");
    json_bad("{" TD ",\"routing\":[{\"path\":\"^/(a\",\"models\":[\"p/m\"]}]}",
             P ": routing[0].path: invalid regular expression: ");
    json_bad("{" TD ",\"routing\":[{\"path\":\"\",\"models\":[\"p/m\"]}]}",
             P ": routing[0].path: expected a regular expression of 1 to 500 characters");
    json_bad("{" TD ",\"routing\":[{\"path\":5,\"models\":[\"p/m\"]}]}",
             P ": routing[0].path: expected a regular expression string, got an integer");
    json_bad("{" TD ",\"routing\":[{\"path\":\"^/a\",\"models\":[\"p/m\"]},{\"path\":\"^/b\",\"models\":[\"bad\"]}]}",
             P ": routing[1].models[0]: expected \"provider/model\"");
    json_bad("{" TD ",\"routing\":[{\"models\":[]}]}", P ": routing[0].models: expected an array of 1 to 8");
}

/* ---- tools.sql.ddl, http_fetch, run_code, confirm, uploads, actions, cache, prefetch ---- */

/* Parses text into a heap app (released with app_free, so ASan sees every field freed). */
static app_t *json_good(const char *text)
{
    app_t *app = calloc(1, sizeof(*app));
    assert_non_null(app);
    fig_err_t err = {0};
    if (app_parse_json(app, P, text, &err) != 0)
        fail_msg("rejected: %s\n  for %s", err.msg, text);
    return app;
}

static void test_json_new_defaults(void **s)
{
    (void)s;
    app_t *app = json_good("{" TD "}");
    assert_int_equal(app->sql_ddl, 0);
    assert_int_equal(app->http_fetch.enabled, 0);
    assert_int_equal(app->http_fetch.n_hosts, 0);
    assert_int_equal(app->http_fetch.allow_post, 0);
    assert_int_equal(app->http_fetch.max_bytes, 1048576);
    assert_int_equal(app->http_fetch.timeout_ms, 10000);
    assert_int_equal(app->http_fetch.max_redirects, 3);
    assert_int_equal(app->run_code.enabled, 0);
    assert_int_equal(app->run_code.timeout_ms, 10000);
    assert_int_equal(app->run_code.cpu_s, 10);
    assert_int_equal(app->run_code.memory_mb, 1024);
    assert_int_equal(app->run_code.max_file_bytes, 10485760);
    assert_int_equal(app->run_code.max_processes, 32);
    assert_int_equal(app->run_code.max_output_bytes, 65536);
    assert_int_equal(app->run_code.max_out_bytes, 1048576);
    assert_int_equal(app->n_confirm, 0);
    assert_int_equal(app->confirm_ttl_s, 900);
    assert_int_equal(app->max_upload_bytes, 0);
    assert_int_equal(app->max_uploads, 20);
    assert_int_equal(app->n_actions, 0);
    assert_int_equal(app->cache_ttl_s, 0);
    assert_int_equal(app->prefetch_links, 0);
    assert_int_equal(app->prefetch_concurrency, 2);
    assert_int_equal(app->n_prefetch_rank, 0);
    assert_null(app_action_match(app, "POST", "/import/upload"));
    assert_int_equal(app_prefetch_rank(app, "/anything"), 0);
    app_free(app);

    /* Present but empty objects enable the tool with the defaults. */
    app = json_good("{" TD ",\"tools\":{\"run_code\":{},\"http_fetch\":{\"hosts\":[\"example.com\"]}},"
                    "\"uploads\":{},\"cache\":{},\"prefetch\":{}}");
    assert_int_equal(app->run_code.enabled, 1);
    assert_int_equal(app->run_code.cpu_s, 10);
    assert_int_equal(app->run_code.max_out_bytes, 1048576);
    assert_int_equal(app->http_fetch.enabled, 1);
    assert_int_equal(app->http_fetch.n_hosts, 1);
    assert_int_equal(app->http_fetch.allow_post, 0);
    assert_int_equal(app->http_fetch.max_redirects, 3);
    assert_int_equal(app->max_upload_bytes, 0);
    assert_int_equal(app->max_uploads, 20);
    assert_int_equal(app->prefetch_concurrency, 2);
    app_free(app);
}

static const char full_json[] =
    "{" TD ",\n"
    " \"tools\": {\"sql\": {\"access\": \"write\", \"ddl\": true},\n"
    "   \"http_fetch\": {\"hosts\": [\"api.example.com\", \"*.cdn.example.org\", \"127.0.0.1\"],\n"
    "     \"private_hosts\": [\"127.0.0.1\"], \"methods\": [\"GET\", \"POST\"], \"max_bytes\": 2048,\n"
    "     \"timeout_ms\": 500, \"max_redirects\": 0,\n"
    "     \"credentials\": [{\"host\": \"api.example.com\", \"header\": \"Authorization\", \"env\": \"EX_TOKEN\",\n"
    "                       \"prefix\": \"Bearer \"},\n"
    "                      {\"host\": \"img.cdn.example.org\", \"header\": \"X-Api-Key\", \"env\": \"_K2\"}]},\n"
    "   \"run_code\": {\"timeout_ms\": 100, \"cpu_s\": 600, \"memory_mb\": 64, \"max_file_bytes\": 1024,\n"
    "     \"max_processes\": 1024, \"max_output_bytes\": 16777216, \"max_out_bytes\": 0}},\n"
    " \"confirm\": [{\"tool\": \"sql\", \"operation\": \"DELETE\"},\n"
    "   {\"tool\": \"sql\", \"operation\": \"UPDATE\", \"tables\": [\"messages\", \"contacts\"]},\n"
    "   {\"tool\": \"sql\"}, {\"tool\": \"sql\", \"operation\": \"DDL\"},\n"
    "   {\"tool\": \"http_fetch\", \"method\": \"POST\"}, {\"tool\": \"http_fetch\"}],\n"
    " \"confirm_ttl_s\": 30,\n"
    " \"uploads\": {\"max_bytes\": 5000000, \"max_files\": 3},\n"
    " \"actions\": [{\"method\": \"POST\", \"path\": \"^/import/upload$\", \"attempts\": 3,\n"
    "                \"verify\": {\"sql\": \"SELECT count(*) > 0\\nFROM messages\"}},\n"
    "              {\"path\": \"^/report\", \"attempts\": 8, \"verify\": {\"python\": \"import sys\\nsys.exit(0)\"}},\n"
    "              {\"attempts\": 2, \"verify\": {\"sql\": \"SELECT 1\"}}],\n"
    " \"cache\": {\"ttl_s\": 86400},\n"
    " \"prefetch\": {\"links\": 8, \"concurrency\": 8, \"rank\": [\"^/mail/message/\", \"^/mail/folder/(inbox|sent)$\"]}\n"
    "}";

static void test_json_new_full(void **s)
{
    (void)s;
    app_t *app = json_good(full_json);
    assert_int_equal(app->sql, APP_SQL_WRITE);
    assert_int_equal(app->sql_ddl, 1);

    const app_http_fetch_t *h = &app->http_fetch;
    assert_int_equal(h->enabled, 1);
    assert_int_equal(h->n_hosts, 3);
    assert_string_equal(h->hosts[0], "api.example.com");
    assert_string_equal(h->hosts[1], "*.cdn.example.org");
    assert_int_equal(h->n_private_hosts, 1);
    assert_string_equal(h->private_hosts[0], "127.0.0.1");
    assert_int_equal(h->allow_post, 1);
    assert_int_equal(h->max_bytes, 2048);
    assert_int_equal(h->timeout_ms, 500);
    assert_int_equal(h->max_redirects, 0);
    assert_int_equal(h->n_credentials, 2);
    assert_string_equal(h->credentials[0].host, "api.example.com");
    assert_string_equal(h->credentials[0].header, "Authorization");
    assert_string_equal(h->credentials[0].env, "EX_TOKEN");
    assert_string_equal(h->credentials[0].prefix, "Bearer ");
    assert_string_equal(h->credentials[1].host, "img.cdn.example.org");
    assert_null(h->credentials[1].prefix);

    const app_run_code_t *rc = &app->run_code;
    assert_int_equal(rc->enabled, 1);
    assert_int_equal(rc->timeout_ms, 100);
    assert_int_equal(rc->cpu_s, 600);
    assert_int_equal(rc->memory_mb, 64);
    assert_int_equal(rc->max_file_bytes, 1024);
    assert_int_equal(rc->max_processes, 1024);
    assert_int_equal(rc->max_output_bytes, 16777216);
    assert_int_equal(rc->max_out_bytes, 0);

    assert_int_equal(app->n_confirm, 6);
    assert_string_equal(app->confirm[0].tool, "sql");
    assert_string_equal(app->confirm[0].operation, "DELETE");
    assert_null(app->confirm[0].tables);
    assert_string_equal(app->confirm[1].operation, "UPDATE");
    assert_int_equal(app->confirm[1].n_tables, 2);
    assert_string_equal(app->confirm[1].tables[1], "contacts");
    assert_null(app->confirm[2].operation);
    assert_string_equal(app->confirm[3].operation, "DDL");
    assert_string_equal(app->confirm[4].tool, "http_fetch");
    assert_string_equal(app->confirm[4].method, "POST");
    assert_null(app->confirm[4].operation);
    assert_null(app->confirm[5].method);
    assert_int_equal(app->confirm_ttl_s, 30);

    assert_int_equal(app->max_upload_bytes, 5000000);
    assert_int_equal(app->max_uploads, 3);

    assert_int_equal(app->n_actions, 3);
    assert_string_equal(app->actions[0].method, "POST");
    assert_string_equal(app->actions[0].path, "^/import/upload$");
    assert_int_equal(app->actions[0].attempts, 3);
    assert_string_equal(app->actions[0].verify_sql, "SELECT count(*) > 0\nFROM messages");
    assert_null(app->actions[0].verify_python);
    assert_null(app->actions[1].method);
    assert_int_equal(app->actions[1].attempts, 8);
    assert_string_equal(app->actions[1].verify_python, "import sys\nsys.exit(0)");
    assert_null(app->actions[1].verify_sql);
    assert_null(app->actions[2].path_re);

    assert_int_equal(app->cache_ttl_s, 86400);
    assert_int_equal(app->prefetch_links, 8);
    assert_int_equal(app->prefetch_concurrency, 8);
    assert_int_equal(app->n_prefetch_rank, 2);
    assert_string_equal(app->prefetch_rank[1], "^/mail/folder/(inbox|sent)$");

    /* Re-parsing replaces every field (ASan: the old ones are freed); a failed parse
     * keeps them. */
    fig_err_t err = {0};
    assert_int_equal(app_parse_json(app, P, "{" TD ",\"tools\":{\"run_code\":{\"x\":1}}}", &err), -1);
    assert_int_equal(app->n_actions, 3);
    assert_int_equal(app->http_fetch.n_hosts, 3);
    assert_int_equal(app_parse_json(app, P, "{" TD "}", &err), 0);
    assert_int_equal(app->sql_ddl, 0);
    assert_int_equal(app->http_fetch.enabled, 0);
    assert_null(app->http_fetch.hosts);
    assert_int_equal(app->n_confirm, 0);
    assert_int_equal(app->n_actions, 0);
    assert_int_equal(app->n_prefetch_rank, 0);
    assert_int_equal(app->confirm_ttl_s, 900);
    assert_int_equal(app->prefetch_concurrency, 2);
    assert_int_equal(app_parse_json(app, P, full_json, &err), 0);
    app_free(app);
}

static void test_json_matching(void **s)
{
    (void)s;
    app_t *app = json_good(full_json);
    /* Actions: first match wins; method and path both must match; none = any. */
    assert_ptr_equal(app_action_match(app, "POST", "/import/upload"), &app->actions[0]);
    assert_ptr_equal(app_action_match(app, "GET", "/import/upload"), &app->actions[2]);
    assert_ptr_equal(app_action_match(app, "POST", "/import/upload/x"), &app->actions[2]);
    assert_ptr_equal(app_action_match(app, "GET", "/report/2024"), &app->actions[1]);
    assert_ptr_equal(app_action_match(app, "POST", "/x/report"), &app->actions[2]);
    assert_ptr_equal(app_action_match(app, NULL, NULL), &app->actions[2]);
    /* Prefetch rank: index of the first matching regex, n when none. */
    assert_int_equal(app_prefetch_rank(app, "/mail/message/42"), 0);
    assert_int_equal(app_prefetch_rank(app, "/mail/folder/inbox"), 1);
    assert_int_equal(app_prefetch_rank(app, "/mail/folder/sent"), 1);
    assert_int_equal(app_prefetch_rank(app, "/mail/folder/spam"), 2);
    assert_int_equal(app_prefetch_rank(app, "/x/mail/message/1"), 2);
    assert_int_equal(app_prefetch_rank(app, NULL), 2);
    app_free(app);

    app = json_good("{" TD ",\"actions\":[{\"method\":\"POST\",\"attempts\":2,\"verify\":{\"sql\":\"SELECT 1\"}}]}");
    assert_null(app_action_match(app, "GET", "/"));
    assert_null(app_action_match(app, NULL, "/"));
    assert_ptr_equal(app_action_match(app, "POST", "/"), &app->actions[0]);
    app_free(app);
}

static void test_json_sql_ddl(void **s)
{
    (void)s;
    app_t *app = json_good("{" TD ",\"tools\":{\"sql\":{\"access\":\"write\",\"ddl\":false}}}");
    assert_int_equal(app->sql_ddl, 0);
    app_free(app);
    app = json_good("{" TD ",\"tools\":{\"sql\":{\"access\":\"read\",\"ddl\":false}}}");
    assert_int_equal(app->sql, APP_SQL_READ);
    app_free(app);
    json_bad("{" TD ",\"tools\":{\"sql\":{\"access\":\"write\",\"ddl\":1}}}",
             P ": tools.sql.ddl: expected true or false, got an integer");
    json_bad("{" TD ",\"tools\":{\"sql\":{\"access\":\"write\",\"ddl\":\"true\"}}}",
             P ": tools.sql.ddl: expected true or false, got a string");
    json_bad("{" TD ",\"tools\":{\"sql\":{\"ddl\":true}}}", P ": tools.sql.ddl: true requires tools.sql.access \"write\"");
    json_bad("{" TD ",\"tools\":{\"sql\":{\"access\":\"read\",\"ddl\":true}}}",
             P ": tools.sql.ddl: true requires tools.sql.access \"write\"");
}

#define HF(x) "{" TD ",\"tools\":{\"http_fetch\":{" x "}}}"

static void test_json_http_fetch_errors(void **s)
{
    (void)s;
    json_bad("{" TD ",\"tools\":{\"http_fetch\":true}}", P ": tools.http_fetch: expected an object, got a boolean");
    json_bad(HF("\"hosts\":[\"a.com\"],\"host\":1"),
             P ": tools.http_fetch.host: unknown key (expected one of: hosts, private_hosts, methods, max_bytes, "
               "timeout_ms, max_redirects, credentials)");
    json_bad(HF(""), P ": tools.http_fetch.hosts: missing (expected an array of 1 to 64 lowercase host names");
    json_bad(HF("\"hosts\":[]"), P ": tools.http_fetch.hosts: expected an array of 1 to 64 lowercase host names "
                                   "such as \"example.com\" or \"*.example.com\", got 0");
    json_bad(HF("\"hosts\":\"a.com\""), P ": tools.http_fetch.hosts: expected an array of 1 to 64 lowercase host "
                                          "names such as \"example.com\" or \"*.example.com\", got a string");
    json_bad(HF("\"hosts\":[\"a.com\",7]"), P ": tools.http_fetch.hosts[1]: expected lowercase host names such as "
                                              "\"example.com\" or \"*.example.com\", got an integer");
    static const char *const bad_hosts[] = {
        "Example.com", "example.com.", ".example.com", "ex ample.com", "*", "*.com", "**.example.com",
        "a.*.example.com", "-a.example.com", "a-.example.com", "a..b", "http://a.com", "a.com:443", "a.com/x",
        "user@a.com", "[::1]", "\\u00e9.com", "",
    };
    for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), HF("\"hosts\":[\"ok.com\",\"%s\"]"), bad_hosts[i]);
        json_bad(text, P ": tools.http_fetch.hosts[1]: expected lowercase host names such as \"example.com\" or "
                         "\"*.example.com\", got \"");
    }
    /* a label of 64 characters, a name of 254 */
    char text[700], label[70];
    memset(label, 'a', 64);
    label[64] = '\0';
    snprintf(text, sizeof(text), HF("\"hosts\":[\"%s.com\"]"), label);
    json_bad(text, P ": tools.http_fetch.hosts[0]: expected lowercase host names");
    label[63] = '\0';
    snprintf(text, sizeof(text), HF("\"hosts\":[\"%s.%s.%s.%s\"]"), label, label, label, label); /* 255 */
    json_bad(text, P ": tools.http_fetch.hosts[0]: expected lowercase host names");
    snprintf(text, sizeof(text), HF("\"hosts\":[\"%s.%s.%s.%.61s\"]"), label, label, label, label); /* 253 */
    app_t *ok = json_good(text);
    assert_int_equal(strlen(ok->http_fetch.hosts[0]), 253);
    app_free(ok);
    json_bad(HF("\"hosts\":[\"a.com\",\"a.com\"]"), P ": tools.http_fetch.hosts[1]: duplicate \"a.com\"");
    json_bad(HF("\"hosts\":[\"a.com\"],\"private_hosts\":[\"localhost\"]"),
             P ": tools.http_fetch.private_hosts[0]: \"localhost\" must also be listed in tools.http_fetch.hosts");
    json_bad(HF("\"hosts\":[\"a.com\"],\"private_hosts\":\"a.com\""),
             P ": tools.http_fetch.private_hosts: expected an array of 0 to 64");
    json_bad(HF("\"hosts\":[\"a.com\"],\"methods\":[\"POST\"]"),
             P ": tools.http_fetch.methods: expected [\"GET\"] or [\"GET\", \"POST\"] (GET is always allowed)");
    json_bad(HF("\"hosts\":[\"a.com\"],\"methods\":[\"GET\",\"PUT\"]"),
             P ": tools.http_fetch.methods[1]: expected \"GET\" or \"POST\", got \"PUT\"");
    json_bad(HF("\"hosts\":[\"a.com\"],\"methods\":[\"GET\",\"GET\"]"), P ": tools.http_fetch.methods[1]: duplicate \"GET\"");
    json_bad(HF("\"hosts\":[\"a.com\"],\"methods\":[]"), P ": tools.http_fetch.methods: expected an array of 1 to 2");
    json_bad(HF("\"hosts\":[\"a.com\"],\"methods\":[\"get\"]"), P ": tools.http_fetch.methods[0]: expected \"GET\" or");
    static const struct {
        const char *key;
        long long min, max;
    } r[] = {{"max_bytes", 1024, 67108864}, {"timeout_ms", 100, 120000}, {"max_redirects", 0, 3}};
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        char want[256];
        long long bad[] = {r[i].min - 1, r[i].max + 1};
        for (int k = 0; k < 2; k++) {
            snprintf(text, sizeof(text), HF("\"hosts\":[\"a.com\"],\"%s\":%lld"), r[i].key, bad[k]);
            snprintf(want, sizeof(want), P ": tools.http_fetch.%s: expected an integer from %lld to %lld, got %lld",
                     r[i].key, r[i].min, r[i].max, bad[k]);
            json_bad(text, want);
        }
        snprintf(text, sizeof(text), HF("\"hosts\":[\"a.com\"],\"%s\":true"), r[i].key);
        json_bad(text, "got a boolean");
    }
    /* credentials */
#define CRED(x) HF("\"hosts\":[\"api.a.com\",\"*.b.com\"],\"credentials\":[" x "]")
    json_bad(CRED("5"), P ": tools.http_fetch.credentials[0]: expected an object, got an integer");
    json_bad(HF("\"hosts\":[\"a.com\"],\"credentials\":{}"),
             P ": tools.http_fetch.credentials: expected an array of objects, got an object");
    json_bad(CRED("{\"host\":\"api.a.com\",\"header\":\"A\",\"env\":\"E\",\"value\":\"x\"}"),
             P ": tools.http_fetch.credentials[0].value: unknown key (expected one of: host, header, env, prefix)");
    json_bad(CRED("{\"header\":\"A\",\"env\":\"E\"}"),
             P ": tools.http_fetch.credentials[0].host: missing (expected a lowercase host name");
    json_bad(CRED("{\"host\":\"api.a.com\",\"env\":\"E\"}"),
             P ": tools.http_fetch.credentials[0].header: missing (expected an HTTP header name");
    json_bad(CRED("{\"host\":\"api.a.com\",\"header\":\"A\"}"),
             P ": tools.http_fetch.credentials[0].env: missing (expected an environment variable name");
    json_bad(CRED("{\"host\":\"*.b.com\",\"header\":\"A\",\"env\":\"E\"}"),
             P ": tools.http_fetch.credentials[0].host: expected a lowercase host name such as \"api.example.com\", "
               "got \"*.b.com\"");
    json_bad(CRED("{\"host\":\"other.com\",\"header\":\"A\",\"env\":\"E\"}"),
             P ": tools.http_fetch.credentials[0].host: \"other.com\" is not allowed by tools.http_fetch.hosts");
    json_bad(CRED("{\"host\":\"b.com\",\"header\":\"A\",\"env\":\"E\"}"),
             P ": tools.http_fetch.credentials[0].host: \"b.com\" is not allowed"); /* *.b.com is subdomains only */
    static const char *const bad_headers[] = {"", "Auth orization", "X:Y", "X\\u0001", "\\u00e9", "(x)", "a/b"};
    for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
        snprintf(text, sizeof(text), CRED("{\"host\":\"api.a.com\",\"header\":\"%s\",\"env\":\"E\"}"), bad_headers[i]);
        json_bad(text, P ": tools.http_fetch.credentials[0].header: expected an HTTP header name (a token of 1 to 64 "
                         "characters), got");
    }
    json_bad(CRED("{\"host\":\"api.a.com\",\"header\":7,\"env\":\"E\"}"),
             P ": tools.http_fetch.credentials[0].header: expected an HTTP header name (a token of 1 to 64 characters), "
               "got an integer");
    json_bad(CRED("{\"host\":\"api.a.com\",\"header\":\"Host\",\"env\":\"E\"}"),
             P ": tools.http_fetch.credentials[0].header: \"Host\" is reserved");
    json_bad(CRED("{\"host\":\"api.a.com\",\"header\":\"content-length\",\"env\":\"E\"}"),
             P ": tools.http_fetch.credentials[0].header: \"content-length\" is reserved");
    static const char *const bad_envs[] = {"", "1ABC", "A-B", "A B", "A=B", "$A", "\\u00c9"};
    for (size_t i = 0; i < sizeof(bad_envs) / sizeof(bad_envs[0]); i++) {
        snprintf(text, sizeof(text), CRED("{\"host\":\"api.a.com\",\"header\":\"A\",\"env\":\"%s\"}"), bad_envs[i]);
        json_bad(text, P ": tools.http_fetch.credentials[0].env: expected an environment variable name "
                         "([A-Za-z_][A-Za-z0-9_]{0,127}), got");
    }
    json_bad(CRED("{\"host\":\"api.a.com\",\"header\":\"A\",\"env\":\"E\",\"prefix\":\"\"}"),
             P ": tools.http_fetch.credentials[0].prefix: expected a string of 1 to 200 characters, got 0");
    json_bad(CRED("{\"host\":\"api.a.com\",\"header\":\"A\",\"env\":\"E\",\"prefix\":\"a\\r\\nX: y\"}"),
             P ": tools.http_fetch.credentials[0].prefix: control characters are not allowed");
    json_bad(CRED("{\"host\":\"api.a.com\",\"header\":\"A\",\"env\":\"E\",\"prefix\":1}"),
             P ": tools.http_fetch.credentials[0].prefix: expected a string, got an integer");
    json_bad(CRED("{\"host\":\"api.a.com\",\"header\":\"A\",\"env\":\"E\"},"
                  "{\"host\":\"api.a.com\",\"header\":\"a\",\"env\":\"F\"}"),
             P ": tools.http_fetch.credentials[1]: duplicate credential for host \"api.a.com\" and header \"a\"");
    json_bad(CRED("{\"host\":\"api.a.com\",\"header\":\"A\",\"env\":\"E\"}, 1"),
             P ": tools.http_fetch.credentials[1]: expected an object, got an integer");
    app_t *app = json_good(CRED("{\"host\":\"x.b.com\",\"header\":\"A\",\"env\":\"E\"},"
                                "{\"host\":\"api.a.com\",\"header\":\"A\",\"env\":\"E\"}"));
    assert_int_equal(app->http_fetch.n_credentials, 2);
    app_free(app);
#undef CRED
}

static void test_json_run_code(void **s)
{
    (void)s;
    static const struct {
        const char *key;
        long long min, max;
    } r[] = {
        {"timeout_ms", 100, 300000},           {"cpu_s", 1, 600},
        {"memory_mb", 64, 16384},              {"max_file_bytes", 1024, 1073741824},
        {"max_processes", 1, 1024},            {"max_output_bytes", 1024, 16777216},
        {"max_out_bytes", 0, 268435456},
    };
    char text[256], want[256];
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        long long bad[] = {r[i].min - 1, r[i].max + 1};
        for (int k = 0; k < 2; k++) {
            snprintf(text, sizeof(text), "{" TD ",\"tools\":{\"run_code\":{\"%s\":%lld}}}", r[i].key, bad[k]);
            snprintf(want, sizeof(want), P ": tools.run_code.%s: expected an integer from %lld to %lld, got %lld",
                     r[i].key, r[i].min, r[i].max, bad[k]);
            json_bad(text, want);
        }
        snprintf(text, sizeof(text), "{" TD ",\"tools\":{\"run_code\":{\"%s\":\"1\"}}}", r[i].key);
        snprintf(want, sizeof(want), P ": tools.run_code.%s: expected an integer from %lld to %lld, got a string",
                 r[i].key, r[i].min, r[i].max);
        json_bad(text, want);
    }
    json_bad("{" TD ",\"tools\":{\"run_code\":{\"network\":true}}}",
             P ": tools.run_code.network: unknown key (expected one of: timeout_ms, cpu_s, memory_mb, max_file_bytes, "
               "max_processes, max_output_bytes, max_out_bytes)");
    json_bad("{" TD ",\"tools\":{\"run_code\":[]}}", P ": tools.run_code: expected an object, got an array");
}

static void test_json_confirm(void **s)
{
    (void)s;
#define W "\"tools\":{\"sql\":{\"access\":\"write\"},\"http_fetch\":{\"hosts\":[\"a.com\"]}}"
    json_bad("{" TD "," W ",\"confirm\":{}}", P ": confirm: expected an array of rules, got an object");
    json_bad("{" TD "," W ",\"confirm\":[1]}", P ": confirm[0]: expected an object, got an integer");
    json_bad("{" TD "," W ",\"confirm\":[{}]}", P ": confirm[0].tool: missing (expected \"sql\" or \"http_fetch\")");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"run_code\"}]}",
             P ": confirm[0].tool: expected \"sql\" or \"http_fetch\", got \"run_code\"");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":1}]}", P ": confirm[0].tool: expected \"sql\" or \"http_fetch\", got an integer");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\",\"method\":\"GET\"}]}",
             P ": confirm[0].method: unknown key (expected one of: tool, operation, tables)");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"http_fetch\",\"operation\":\"DELETE\"}]}",
             P ": confirm[0].operation: unknown key (expected one of: tool, method)");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\",\"operation\":\"delete\"}]}",
             P ": confirm[0].operation: expected \"INSERT\", \"UPDATE\", \"DELETE\" or \"DDL\", got \"delete\"");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\",\"operation\":[\"DELETE\"]}]}",
             P ": confirm[0].operation: expected \"INSERT\", \"UPDATE\", \"DELETE\" or \"DDL\", got an array");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\",\"operation\":\"DDL\"}]}",
             P ": confirm[0].operation: \"DDL\" requires tools.sql.ddl true");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\",\"tables\":[]}]}",
             P ": confirm[0].tables: expected an array of 1 to 32 lowercase table names ([a-z_][a-z0-9_]{0,63}), got 0");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\",\"tables\":\"messages\"}]}",
             P ": confirm[0].tables: expected an array of 1 to 32 lowercase table names");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\",\"tables\":[\"Messages\"]}]}",
             P ": confirm[0].tables[0]: expected lowercase table names ([a-z_][a-z0-9_]{0,63}), got \"Messages\"");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\",\"tables\":[\"a b\"]}]}", P ": confirm[0].tables[0]: expected");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\",\"tables\":[\"1x\"]}]}", P ": confirm[0].tables[0]: expected");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\",\"tables\":[\"a\",\"a\"]}]}",
             P ": confirm[0].tables[1]: duplicate \"a\"");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"http_fetch\",\"method\":\"PUT\"}]}",
             P ": confirm[0].method: expected \"GET\" or \"POST\", got \"PUT\"");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"http_fetch\",\"method\":\"POST\"}]}",
             P ": confirm[0].method: \"POST\" is not in tools.http_fetch.methods, so this rule can never apply");
    json_bad("{" TD "," W ",\"confirm\":[{\"tool\":\"sql\"},{\"tool\":\"http_fetch\",\"x\":1}]}",
             P ": confirm[1].x: unknown key (expected one of: tool, method)");
    /* Rules for tools the app does not enable. */
    json_bad("{" TD ",\"confirm\":[{\"tool\":\"sql\"}]}",
             P ": confirm[0].tool: the app does not enable sql writes (tools.sql.access \"write\"), so this rule can "
               "never apply");
    json_bad("{" TD ",\"tools\":{\"sql\":{}},\"confirm\":[{\"tool\":\"sql\",\"operation\":\"DELETE\"}]}",
             P ": confirm[0].tool: the app does not enable sql writes");
    json_bad("{" TD ",\"tools\":{\"sql\":{\"access\":\"write\"}},\"confirm\":[{\"tool\":\"http_fetch\"}]}",
             P ": confirm[0].tool: the app does not enable http_fetch (tools.http_fetch)");
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, "{" TD "," W ",\"confirm\":[");
    for (int i = 0; i < 33; i++)
        fig_buf_appendf(&b, "%s{\"tool\":\"sql\"}", i ? "," : "");
    fig_buf_append_str(&b, "]}");
    json_bad(b.data, P ": confirm: at most 32 rules, got 33");
    fig_buf_free(&b);
    /* confirm_ttl_s */
    json_bad("{" TD ",\"confirm_ttl_s\":29}", P ": confirm_ttl_s: expected an integer from 30 to 86400, got 29");
    json_bad("{" TD ",\"confirm_ttl_s\":86401}", P ": confirm_ttl_s: expected an integer from 30 to 86400, got 86401");
    json_bad("{" TD ",\"confirm_ttl_s\":\"900\"}", P ": confirm_ttl_s: expected an integer from 30 to 86400, got a string");
    app_t *app = json_good("{" TD "," W ",\"confirm\":[],\"confirm_ttl_s\":86400}");
    assert_int_equal(app->n_confirm, 0);
    assert_int_equal(app->confirm_ttl_s, 86400);
    app_free(app);
#undef W
}

static void test_json_uploads_cache_prefetch(void **s)
{
    (void)s;
    json_bad("{" TD ",\"uploads\":true}", P ": uploads: expected an object, got a boolean");
    json_bad("{" TD ",\"uploads\":{\"max_size\":1}}", P ": uploads.max_size: unknown key (expected one of: max_bytes, max_files)");
    json_bad("{" TD ",\"uploads\":{\"max_bytes\":-1}}", P ": uploads.max_bytes: expected an integer from 0 to 268435456, got -1");
    json_bad("{" TD ",\"uploads\":{\"max_bytes\":268435457}}", P ": uploads.max_bytes: expected an integer from 0 to 268435456");
    json_bad("{" TD ",\"uploads\":{\"max_files\":0}}", P ": uploads.max_files: expected an integer from 1 to 1000, got 0");
    json_bad("{" TD ",\"uploads\":{\"max_files\":1001}}", P ": uploads.max_files: expected an integer from 1 to 1000, got 1001");
    json_bad("{" TD ",\"cache\":[]}", P ": cache: expected an object, got an array");
    json_bad("{" TD ",\"cache\":{\"ttl\":5}}", P ": cache.ttl: unknown key (expected one of: ttl_s)");
    json_bad("{" TD ",\"cache\":{\"ttl_s\":-1}}", P ": cache.ttl_s: expected an integer from 0 to 86400, got -1");
    json_bad("{" TD ",\"cache\":{\"ttl_s\":86401}}", P ": cache.ttl_s: expected an integer from 0 to 86400, got 86401");
    json_bad("{" TD ",\"cache\":{\"ttl_s\":1.5}}", P ": cache.ttl_s: expected an integer from 0 to 86400, got a real number");
    json_bad("{" TD ",\"prefetch\":1}", P ": prefetch: expected an object, got an integer");
    json_bad("{" TD ",\"prefetch\":{\"link\":1}}", P ": prefetch.link: unknown key (expected one of: links, concurrency, rank)");
    json_bad("{" TD ",\"prefetch\":{\"links\":9}}", P ": prefetch.links: expected an integer from 0 to 8, got 9");
    json_bad("{" TD ",\"prefetch\":{\"links\":-1}}", P ": prefetch.links: expected an integer from 0 to 8, got -1");
    json_bad("{" TD ",\"prefetch\":{\"concurrency\":0}}", P ": prefetch.concurrency: expected an integer from 1 to 8, got 0");
    json_bad("{" TD ",\"prefetch\":{\"concurrency\":9}}", P ": prefetch.concurrency: expected an integer from 1 to 8, got 9");
    json_bad("{" TD ",\"prefetch\":{\"rank\":\"^/\"}}", P ": prefetch.rank: expected an array of regular expressions, got a string");
    json_bad("{" TD ",\"prefetch\":{\"rank\":[\"^/a\",5]}}", P ": prefetch.rank[1]: expected a regular expression string, got an integer");
    json_bad("{" TD ",\"prefetch\":{\"rank\":[\"^/a\",\"(\"]}}", P ": prefetch.rank[1]: invalid regular expression: ");
    json_bad("{" TD ",\"prefetch\":{\"rank\":[\"\"]}}", P ": prefetch.rank[0]: expected a regular expression of 1 to 500 characters");
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, "{" TD ",\"prefetch\":{\"rank\":[");
    for (int i = 0; i < 17; i++)
        fig_buf_appendf(&b, "%s\"^/%d\"", i ? "," : "", i);
    fig_buf_append_str(&b, "]}}");
    json_bad(b.data, P ": prefetch.rank: expected an array of at most 16 regular expressions, got 17");
    fig_buf_free(&b);
    app_t *app = json_good("{" TD ",\"uploads\":{\"max_bytes\":268435456,\"max_files\":1000},\"cache\":{\"ttl_s\":0},"
                           "\"prefetch\":{\"links\":0,\"concurrency\":1,\"rank\":[]}}");
    assert_int_equal(app->max_upload_bytes, 268435456);
    assert_int_equal(app->max_uploads, 1000);
    assert_int_equal(app->cache_ttl_s, 0);
    assert_int_equal(app->prefetch_concurrency, 1);
    assert_int_equal(app->n_prefetch_rank, 0);
    assert_int_equal(app_prefetch_rank(app, "/x"), 0);
    app_free(app);
}

static void test_json_actions(void **s)
{
    (void)s;
#define V "\"verify\":{\"sql\":\"SELECT 1\"}"
    json_bad("{" TD ",\"actions\":{}}", P ": actions: expected an array of actions, got an object");
    json_bad("{" TD ",\"actions\":[1]}", P ": actions[0]: expected an object, got an integer");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2," V ",\"models\":[\"p/m\"]}]}",
             P ": actions[0].models: unknown key (expected one of: method, path, attempts, verify)");
    json_bad("{" TD ",\"actions\":[{" V "}]}", P ": actions[0].attempts: missing (expected an integer from 2 to 8)");
    json_bad("{" TD ",\"actions\":[{\"attempts\":1," V "}]}", P ": actions[0].attempts: expected an integer from 2 to 8, got 1");
    json_bad("{" TD ",\"actions\":[{\"attempts\":9," V "}]}", P ": actions[0].attempts: expected an integer from 2 to 8, got 9");
    json_bad("{" TD ",\"actions\":[{\"attempts\":\"3\"," V "}]}", P ": actions[0].attempts: expected an integer from 2 to 8, got a string");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2," V ",\"method\":\"PUT\"}]}",
             P ": actions[0].method: expected \"GET\" or \"POST\", got \"PUT\"");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2," V ",\"path\":\"[\"}]}", P ": actions[0].path: invalid regular expression: ");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2," V ",\"path\":7}]}",
             P ": actions[0].path: expected a regular expression string, got an integer");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2}]}",
             P ": actions[0].verify: missing (expected {\"sql\": \"...\"} or {\"python\": \"...\"})");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2,\"verify\":\"SELECT 1\"}]}",
             P ": actions[0].verify: expected an object, got a string");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2,\"verify\":{}}]}",
             P ": actions[0].verify: expected exactly one of \"sql\" or \"python\"");
    json_bad("{" TD ",\"tools\":{\"run_code\":{}},\"actions\":[{\"attempts\":2,\"verify\":{\"sql\":\"SELECT 1\",\"python\":\"x\"}}]}",
             P ": actions[0].verify: expected exactly one of \"sql\" or \"python\"");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2,\"verify\":{\"shell\":\"true\"}}]}",
             P ": actions[0].verify.shell: unknown key (expected one of: sql, python)");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2,\"verify\":{\"sql\":\"\"}}]}",
             P ": actions[0].verify.sql: expected a string of 1 to 10000 characters, got 0");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2,\"verify\":{\"sql\":5}}]}",
             P ": actions[0].verify.sql: expected a string, got an integer");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2,\"verify\":{\"sql\":\"SELECT \\u0007\"}}]}",
             P ": actions[0].verify.sql: control characters are not allowed (except newline and tab)");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2,\"verify\":{\"python\":\"pass\"}}]}",
             P ": actions[0].verify.python: requires tools.run_code (the verifier runs in its sandbox)");
    json_bad("{" TD ",\"tools\":{\"run_code\":{}},\"actions\":[{\"attempts\":2,\"verify\":{\"python\":\"\"}}]}",
             P ": actions[0].verify.python: expected a string of 1 to 65536 characters, got 0");
    json_bad("{" TD ",\"actions\":[{\"attempts\":2," V "},{\"attempts\":2}]}", P ": actions[1].verify: missing");
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, "{" TD ",\"actions\":[");
    for (int i = 0; i < 33; i++)
        fig_buf_appendf(&b, "%s{\"attempts\":2," V "}", i ? "," : "");
    fig_buf_append_str(&b, "]}");
    json_bad(b.data, P ": actions: at most 32 actions, got 33");
    fig_buf_free(&b);
#undef V
}

/* ---- app folders ---- */

static void make_app(const char *prompts, const char *name, const char *json, const char *prompt, const char *seed)
{
    char rel[256];
    if (json) {
        snprintf(rel, sizeof(rel), "%s/%s/app.json", prompts, name);
        put(rel, json);
    }
    if (prompt) {
        snprintf(rel, sizeof(rel), "%s/%s/prompt.md", prompts, name);
        put(rel, prompt);
    }
    if (seed) {
        snprintf(rel, sizeof(rel), "%s/%s/seed.sql", prompts, name);
        put(rel, seed);
    }
}

#define GOOD_JSON "{\"title\":\"Mail\",\"description\":\"A mail client\",\"tools\":{\"sql\":{}}}"

static void test_app_load(void **s)
{
    (void)s;
    make_app("p1", "mail", GOOD_JSON, "You are a mail client.\n", NULL);
    char *prompts = path_in("p1"), *var = path_in("var1");
    fig_err_t err = {0};
    app_t *app = app_load(prompts, "mail", var, &err);
    if (app == NULL)
        fail_msg("%s", err.msg);
    assert_string_equal(app->name, "mail");
    char *want = path_in("p1/mail");
    assert_string_equal(app->dir, want);
    free(want);
    want = path_in("var1/apps/mail.db");
    assert_string_equal(app->db_path, want);
    free(want);
    assert_string_equal(app->prompt_md, "You are a mail client.\n");
    assert_string_equal(app->title, "Mail");
    assert_int_equal(app->sql, APP_SQL_READ);
    assert_null(app->schema_text);
    app_free(app);

    /* Errors name the file. */
    make_app("p1", "broken", "{\"title\":\"x\",\"description\":\"y\",\"limits\":{\"deadline_ms\":5}}", "p", NULL);
    assert_null(app_load(prompts, "broken", var, &err));
    char *wantmsg = path_in("p1/broken/app.json: limits.deadline_ms: expected an integer from 1000 to 600000");
    assert_non_null(strstr(err.msg, wantmsg));
    free(wantmsg);

    /* prompt.md: required, non-empty, UTF-8, at most 256 KB. */
    make_app("p1", "noprompt", GOOD_JSON, NULL, NULL);
    assert_null(app_load(prompts, "noprompt", var, &err));
    assert_non_null(strstr(err.msg, "noprompt/prompt.md"));
    make_app("p1", "emptyprompt", GOOD_JSON, "", NULL);
    assert_null(app_load(prompts, "emptyprompt", var, &err));
    assert_non_null(strstr(err.msg, "empty"));
    make_app("p1", "badprompt", GOOD_JSON, "caf\xe9\n", NULL);
    assert_null(app_load(prompts, "badprompt", var, &err));
    assert_non_null(strstr(err.msg, "UTF-8"));
    char *big = malloc(256 * 1024 + 2);
    memset(big, 'x', 256 * 1024 + 1);
    big[256 * 1024 + 1] = '\0';
    make_app("p1", "bigprompt", GOOD_JSON, big, NULL);
    assert_null(app_load(prompts, "bigprompt", var, &err));
    assert_non_null(strstr(err.msg, "larger than"));
    big[256 * 1024] = '\0'; /* exactly 256 KB is fine */
    make_app("p1", "bigprompt", GOOD_JSON, big, NULL);
    app = app_load(prompts, "bigprompt", var, &err);
    assert_non_null(app);
    app_free(app);
    free(big);

    /* Missing app.json. */
    assert_null(app_load(prompts, "nosuchapp", var, &err));
    assert_non_null(strstr(err.msg, "nosuchapp/app.json"));
    free(prompts);
    free(var);
}

static void test_app_names(void **s)
{
    (void)s;
    static const char *const bad[] = {"Mail", "static", "_admin", "-x", "a.b", "a/b", "", "a b",
                                      "abcdefghijklmnopqrstuvwxyz0123456", ".."};
    static const char *const good[] = {"mail", "0", "a_b-c", "abcdefghijklmnopqrstuvwxyz012345", "static2"};
    char *prompts = path_in("p2"), *var = path_in("var2");
    fig_err_t err;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(app_load(prompts, bad[i], var, &err));
        assert_non_null(strstr(err.msg, "invalid app name"));
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        make_app("p2", good[i], GOOD_JSON, "prompt", NULL);
        app_t *app = app_load(prompts, good[i], var, &err);
        if (app == NULL)
            fail_msg("%s: %s", good[i], err.msg);
        app_free(app);
    }
    free(prompts);
    free(var);
}

static void test_apps_load_all(void **s)
{
    (void)s;
    make_app("p3", "zeta", GOOD_JSON, "z", NULL);
    make_app("p3", "alpha", GOOD_JSON, "a", NULL);
    make_app("p3", "mid", GOOD_JSON, "m", NULL);
    put("p3/system.md", "system prompt");            /* a file, not an app */
    put("p3/_shared/notes.md", "no app.json here");  /* a folder without app.json */
    put("p3/.hidden/app.json", "not even json");     /* hidden: skipped */
    char *prompts = path_in("p3"), *var = path_in("var3");
    app_list_t list;
    fig_err_t err = {0};
    if (apps_load_all(prompts, var, &list, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(list.count, 3);
    assert_string_equal(list.items[0]->name, "alpha");
    assert_string_equal(list.items[1]->name, "mid");
    assert_string_equal(list.items[2]->name, "zeta");
    assert_ptr_equal(apps_find(&list, "mid", 3), list.items[1]);
    assert_ptr_equal(apps_find(&list, "midx", 3), list.items[1]); /* only name_len bytes count */
    assert_null(apps_find(&list, "mi", 2));
    assert_null(apps_find(&list, "nope", 4));
    apps_free(&list);
    assert_int_equal(list.count, 0);

    /* One bad app fails the whole load, naming it. */
    make_app("p3", "Bad", GOOD_JSON, "b", NULL);
    assert_int_equal(apps_load_all(prompts, var, &list, &err), -1);
    assert_non_null(strstr(err.msg, "Bad"));
    assert_non_null(strstr(err.msg, "invalid app name"));
    free(prompts);
    prompts = path_in("does-not-exist");
    assert_int_equal(apps_load_all(prompts, var, &list, &err), -1);
    free(prompts);
    free(var);
}

/* ---- app databases ---- */

static const char *seed_sql = "CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL,\n"
                              "  unread INTEGER DEFAULT 1);\n"
                              "CREATE INDEX messages_unread ON messages(unread);\n"
                              "CREATE TABLE contacts(name TEXT PRIMARY KEY) WITHOUT ROWID;\n"
                              "CREATE VIEW unread AS SELECT * FROM messages WHERE unread;\n"
                              "INSERT INTO messages(subject) VALUES('Hello'), ('Lunch?');\n";

static int count_rows(const char *db_path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

static void test_db_prepare_seeds_once(void **s)
{
    (void)s;
    make_app("p4", "mail", GOOD_JSON, "prompt", seed_sql);
    char *prompts = path_in("p4"), *var = path_in("var4/deep");
    fig_err_t err = {0};
    app_t *app = app_load(prompts, "mail", var, &err);
    assert_non_null(app);
    if (app_db_prepare(app, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(app->schema_text,
                        "CREATE TABLE contacts(name TEXT PRIMARY KEY) WITHOUT ROWID;\n"
                        "CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL,\n"
                        "  unread INTEGER DEFAULT 1);\n"
                        "CREATE INDEX messages_unread ON messages(unread);\n"
                        "CREATE VIEW unread AS SELECT * FROM messages WHERE unread;\n");
    assert_int_equal(count_rows(app->db_path, "SELECT count(*) FROM messages"), 2);

    /* WAL mode is persistent in the file. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(app->db_path, &db), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    /* Change the data and the schema; a second prepare must not reseed. */
    assert_int_equal(sqlite3_exec(db, "DELETE FROM messages WHERE subject = 'Hello';"
                                      "INSERT INTO messages(subject) VALUES('Mine'), ('Also mine');"
                                      "CREATE TABLE added(x);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    assert_int_equal(app_db_prepare(app, &err), 0);
    assert_int_equal(count_rows(app->db_path, "SELECT count(*) FROM messages"), 3);
    assert_int_equal(count_rows(app->db_path, "SELECT count(*) FROM messages WHERE subject = 'Hello'"), 0);
    assert_non_null(strstr(app->schema_text, "CREATE TABLE added(x);\n"));
    assert_true(strncmp(app->schema_text, "CREATE TABLE added(x);\n", 23) == 0); /* sorted by name */

    /* Same after a "restart" (fresh app_t). */
    app_free(app);
    app = app_load(prompts, "mail", var, &err);
    assert_int_equal(app_db_prepare(app, &err), 0);
    assert_int_equal(count_rows(app->db_path, "SELECT count(*) FROM messages"), 3);

    /* No temporary files are left in var/apps. */
    char *apps_dir = path_in("var4/deep/apps");
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s' | grep tmp)\"", apps_dir);
    assert_int_equal(system(cmd), 0);
    free(apps_dir);
    app_free(app);
    free(prompts);
    free(var);
}

static void test_db_prepare_no_seed(void **s)
{
    (void)s;
    make_app("p5", "blank", GOOD_JSON, "prompt", NULL);
    char *prompts = path_in("p5"), *var = path_in("var5");
    fig_err_t err = {0};
    app_t *app = app_load(prompts, "blank", var, &err);
    assert_int_equal(app_db_prepare(app, &err), 0);
    assert_string_equal(app->schema_text, "");
    struct stat st;
    assert_int_equal(stat(app->db_path, &st), 0);
    app_free(app);
    free(prompts);
    free(var);
}

static void test_db_prepare_bad_seed(void **s)
{
    (void)s;
    /* The error comes after some statements succeeded: nothing may remain. */
    make_app("p6", "bad", GOOD_JSON, "prompt",
             "CREATE TABLE t(x);\nINSERT INTO t VALUES(1);\nINSERT INTO nosuch VALUES(2);\n");
    char *prompts = path_in("p6"), *var = path_in("var6");
    fig_err_t err = {0};
    app_t *app = app_load(prompts, "bad", var, &err);
    assert_non_null(app);
    assert_int_equal(app_db_prepare(app, &err), -1);
    assert_non_null(strstr(err.msg, "bad/seed.sql"));
    assert_non_null(strstr(err.msg, "nosuch"));
    struct stat st;
    assert_int_equal(stat(app->db_path, &st), -1); /* not installed: the next start retries */
    char *apps_dir = path_in("var6/apps");
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", apps_dir);
    assert_int_equal(system(cmd), 0); /* and no temp files */
    free(apps_dir);

    /* Fix the seed: the next prepare seeds. */
    make_app("p6", "bad", NULL, NULL, "CREATE TABLE t(x);\nINSERT INTO t VALUES(1);\n");
    assert_int_equal(app_db_prepare(app, &err), 0);
    assert_string_equal(app->schema_text, "CREATE TABLE t(x);\n");
    app_free(app);

    /* A seed that manages its own transaction is refused. */
    make_app("p6", "txn", GOOD_JSON, "prompt", "CREATE TABLE t(x);\nCOMMIT;\nCREATE TABLE u(y);\n");
    app = app_load(prompts, "txn", var, &err);
    assert_int_equal(app_db_prepare(app, &err), -1);
    assert_non_null(strstr(err.msg, "txn/seed.sql"));
    assert_int_equal(stat(app->db_path, &st), -1);
    app_free(app);
    make_app("p6", "txn2", GOOD_JSON, "prompt", "BEGIN;\nCREATE TABLE t(x);\nCOMMIT;\n");
    app = app_load(prompts, "txn2", var, &err);
    assert_int_equal(app_db_prepare(app, &err), -1);
    assert_int_equal(stat(app->db_path, &st), -1);
    app_free(app);
    free(prompts);
    free(var);
}

static void test_db_schema_order(void **s)
{
    (void)s;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE b(x INTEGER PRIMARY KEY AUTOINCREMENT, u UNIQUE);"
                                  "CREATE TABLE a(y);"
                                  "CREATE TRIGGER c AFTER INSERT ON a BEGIN SELECT 1; END;"
                                  "CREATE TABLE sqlitefoo(z);"
                                  "ANALYZE;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    fig_err_t err;
    char *schema = app_db_schema(db, &err);
    /* sqlite_sequence, sqlite_stat1 and autoindexes are left out; "sqlitefoo" is a
     * user table ('_' must not act as a LIKE wildcard). */
    assert_string_equal(schema, "CREATE TABLE a(y);\n"
                                "CREATE TABLE b(x INTEGER PRIMARY KEY AUTOINCREMENT, u UNIQUE);\n"
                                "CREATE TRIGGER c AFTER INSERT ON a BEGIN SELECT 1; END;\n"
                                "CREATE TABLE sqlitefoo(z);\n");
    /* Deterministic. */
    char *again = app_db_schema(db, &err);
    assert_string_equal(schema, again);
    free(schema);
    free(again);
    sqlite3_close(db);
}

static void test_db_data_version(void **s)
{
    (void)s;
    /* The seed's user_version is where data_version starts. */
    make_app("p9", "ver", GOOD_JSON, "prompt", "CREATE TABLE t(x);\nPRAGMA user_version = 41;\n");
    char *prompts = path_in("p9"), *var = path_in("var9");
    fig_err_t err = {0};
    app_t *app = app_load(prompts, "ver", var, &err);
    assert_non_null(app);
    assert_int_equal(app->data_version, 0);
    if (app_db_prepare(app, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(app->data_version, 41);
    /* After writes bumped it (as the sql tool does), a restart continues from there. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(app->db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 1234567", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    app_free(app);
    app = app_load(prompts, "ver", var, &err);
    assert_int_equal(app_db_prepare(app, &err), 0);
    assert_int_equal(app->data_version, 1234567);
    app_free(app);
    /* A fresh database without a version starts at 0. */
    make_app("p9", "nover", GOOD_JSON, "prompt", NULL);
    app = app_load(prompts, "nover", var, &err);
    app->data_version = 99;
    assert_int_equal(app_db_prepare(app, &err), 0);
    assert_int_equal(app->data_version, 0);
    app_free(app);
    free(prompts);
    free(var);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_minimal_defaults), cmocka_unit_test(test_json_full),
        cmocka_unit_test(test_json_syntax_errors),    cmocka_unit_test(test_json_unknown_keys),
        cmocka_unit_test(test_json_types),            cmocka_unit_test(test_json_ranges),
        cmocka_unit_test(test_json_strings),          cmocka_unit_test(test_json_models_routing),
        cmocka_unit_test(test_json_models_routing_errors), cmocka_unit_test(test_app_load),
        cmocka_unit_test(test_app_names),             cmocka_unit_test(test_apps_load_all),
        cmocka_unit_test(test_db_prepare_seeds_once), cmocka_unit_test(test_db_prepare_no_seed),
        cmocka_unit_test(test_db_prepare_bad_seed),   cmocka_unit_test(test_db_schema_order),
        cmocka_unit_test(test_json_new_defaults),     cmocka_unit_test(test_json_new_full),
        cmocka_unit_test(test_json_matching),         cmocka_unit_test(test_json_sql_ddl),
        cmocka_unit_test(test_json_http_fetch_errors), cmocka_unit_test(test_json_run_code),
        cmocka_unit_test(test_json_confirm),          cmocka_unit_test(test_json_uploads_cache_prefetch),
        cmocka_unit_test(test_json_actions),          cmocka_unit_test(test_db_data_version),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
