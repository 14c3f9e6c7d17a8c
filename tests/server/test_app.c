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
             P ": titel: unknown key (expected one of: title, description, model, models, routing, tools, limits)");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"tools\":{\"http\":{}}}",
             P ": tools.http: unknown key (expected one of: sql, set_state)");
    json_bad("{\"title\":\"a\",\"description\":\"b\",\"tools\":{\"sql\":{\"acess\":\"read\"}}}",
             P ": tools.sql.acess: unknown key (expected one of: access)");
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
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
