/*
 * test_providers.c — figment.json validation (the full example, defaults, and an
 * error of every class naming file and key), environment mode with and without
 * Anthropic, "provider/model" resolution, and the exact cost arithmetic.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "providers.h"

#define F "figment.json"

static const char *const env_vars[] = {"OPENAI_API_KEY",    "OPENAI_BASE_URL",    "FIGMENT_MODEL",
                                       "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "FIGMENT_ANTHROPIC_MODEL",
                                       "TEST_FIG_KEY_A",    "TEST_FIG_KEY_B"};

static int clear_env(void **s)
{
    (void)s;
    for (size_t i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++)
        unsetenv(env_vars[i]);
    return 0;
}

static const char *full_example =
    "{\n"
    "  \"providers\": {\n"
    "    \"openai\":    {\"kind\": \"openai\", \"base_url\": \"https://api.openai.com/v1\",\n"
    "                  \"api_key_env\": \"TEST_FIG_KEY_A\",\n"
    "                  \"timeouts\": {\"connect_ms\": 5000, \"first_token_ms\": 30000,\n"
    "                               \"idle_ms\": 20000, \"total_ms\": 120000},\n"
    "                  \"models\": {\"gpt-4o-mini\": {\"input\": 0.15, \"cached_input\": 0.075, \"output\": 0.60}}},\n"
    "    \"anthropic\": {\"kind\": \"anthropic\", \"base_url\": \"https://api.anthropic.com\",\n"
    "                  \"api_key_env\": \"TEST_FIG_KEY_B\",\n"
    "                  \"models\": {\"claude-haiku-4-5\": {\"input\": 1.0, \"cached_input\": 0.1,\n"
    "                                                  \"cache_write\": 1.25, \"output\": 5.0}}}\n"
    "  },\n"
    "  \"default_models\": [\"openai/gpt-4o-mini\", \"anthropic/claude-haiku-4-5\"],\n"
    "  \"retry\":   {\"max_attempts\": 3, \"base_delay_ms\": 250, \"max_delay_ms\": 4000},\n"
    "  \"breaker\": {\"window\": 20, \"min_requests\": 5, \"failure_ratio\": 0.5, \"open_ms\": 30000},\n"
    "  \"hedge\":   {\"after_ms\": 0},\n"
    "  \"rate_limits\": {\"per_session\": {\"per_minute\": 60, \"burst\": 20},\n"
    "                  \"per_ip\":      {\"per_minute\": 120, \"burst\": 40},\n"
    "                  \"per_app\":     {\"per_minute\": 600, \"burst\": 100},\n"
    "                  \"max_concurrent_upstream\": 256},\n"
    "  \"budgets\": {\"per_session_usd\": 0.50, \"per_app_daily_usd\": 20, \"global_daily_usd\": 100}\n"
    "}\n";

static void test_full_example(void **s)
{
    (void)s;
    setenv("TEST_FIG_KEY_A", "sk-a", 1);
    setenv("OPENAI_API_KEY", "must-not-be-used", 1);
    providers_config_t cfg;
    fig_err_t err = {0};
    if (providers_parse_json(&cfg, F, full_example, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(cfg.configured, 1);
    assert_int_equal(cfg.n_providers, 2);

    const provider_t *o = &cfg.providers[0], *a = &cfg.providers[1];
    assert_string_equal(o->name, "openai");
    assert_int_equal(o->kind, PROVIDER_OPENAI);
    assert_ptr_equal(o->impl, &llm_provider_openai);
    assert_string_equal(o->base_url, "https://api.openai.com/v1");
    assert_string_equal(o->api_key_env, "TEST_FIG_KEY_A");
    assert_string_equal(o->api_key, "sk-a");
    assert_int_equal(o->timeouts.connect_ms, 5000);
    assert_int_equal(o->timeouts.first_token_ms, 30000);
    assert_int_equal(o->timeouts.idle_ms, 20000);
    assert_int_equal(o->timeouts.total_ms, 120000);
    assert_int_equal(o->n_models, 1);
    assert_string_equal(o->models[0].name, "gpt-4o-mini");
    assert_true(o->models[0].input_usd_per_mtok == 0.15);
    assert_true(o->models[0].cached_input_usd_per_mtok == 0.075);
    assert_true(o->models[0].cache_write_usd_per_mtok == 0.15); /* defaults to input */
    assert_true(o->models[0].output_usd_per_mtok == 0.60);

    assert_string_equal(a->name, "anthropic");
    assert_int_equal(a->kind, PROVIDER_ANTHROPIC);
    assert_ptr_equal(a->impl, &llm_provider_anthropic);
    assert_null(a->api_key); /* TEST_FIG_KEY_B is unset */
    assert_int_equal(a->timeouts.connect_ms, 10000); /* defaults */
    assert_int_equal(a->timeouts.first_token_ms, 60000);
    assert_int_equal(a->timeouts.idle_ms, 30000);
    assert_int_equal(a->timeouts.total_ms, 300000);
    assert_true(a->models[0].cache_write_usd_per_mtok == 1.25);

    assert_int_equal(cfg.n_default_models, 2);
    assert_ptr_equal(cfg.default_models[0].provider, o);
    assert_ptr_equal(cfg.default_models[0].model, &o->models[0]);
    assert_ptr_equal(cfg.default_models[1].provider, a);
    assert_ptr_equal(cfg.default_models[1].model, &a->models[0]);

    assert_int_equal(cfg.retry.max_attempts, 3);
    assert_int_equal(cfg.retry.base_delay_ms, 250);
    assert_int_equal(cfg.retry.max_delay_ms, 4000);
    assert_int_equal(cfg.breaker.window, 20);
    assert_int_equal(cfg.breaker.min_requests, 5);
    assert_true(cfg.breaker.failure_ratio == 0.5);
    assert_int_equal(cfg.breaker.open_ms, 30000);
    assert_int_equal(cfg.hedge.after_ms, 0);
    assert_int_equal(cfg.hedge.use_p95, 0);
    assert_true(cfg.rate_limits.per_session.per_minute == 60 && cfg.rate_limits.per_session.burst == 20);
    assert_true(cfg.rate_limits.per_ip.per_minute == 120 && cfg.rate_limits.per_ip.burst == 40);
    assert_true(cfg.rate_limits.per_app.per_minute == 600 && cfg.rate_limits.per_app.burst == 100);
    assert_int_equal(cfg.rate_limits.max_concurrent_upstream, 256);
    assert_true(cfg.budgets.per_session_usd == 0.5);
    assert_true(cfg.budgets.per_app_daily_usd == 20);
    assert_true(cfg.budgets.global_daily_usd == 100);
    providers_free(&cfg);
    assert_int_equal(cfg.n_providers, 0);
    providers_free(&cfg); /* idempotent */
}

static void test_defaults(void **s)
{
    (void)s;
    providers_config_t cfg;
    fig_err_t err = {0};
    assert_int_equal(providers_parse_json(&cfg, F, "{}", &err), 0);
    assert_int_equal(cfg.configured, 0);
    assert_int_equal(cfg.n_providers, 0);
    assert_int_equal(cfg.n_default_models, 0);
    assert_int_equal(cfg.retry.max_attempts, 3);
    assert_int_equal(cfg.retry.base_delay_ms, 250);
    assert_int_equal(cfg.retry.max_delay_ms, 4000);
    assert_int_equal(cfg.breaker.window, 20);
    assert_int_equal(cfg.breaker.min_requests, 5);
    assert_true(cfg.breaker.failure_ratio == 0.5);
    assert_int_equal(cfg.breaker.open_ms, 30000);
    assert_int_equal(cfg.hedge.after_ms, 0);
    assert_true(cfg.rate_limits.per_ip.per_minute == 0); /* unlimited */
    assert_int_equal(cfg.rate_limits.max_concurrent_upstream, 0);
    assert_true(cfg.budgets.global_daily_usd == 0);
    providers_free(&cfg);

    /* Without default_models: the first model of each provider that lists any,
     * in file order; no api_key_env means no key. Burst defaults to per_minute
     * (at least 1); a small window lowers the default min_requests. */
    const char *text = "{\"providers\": {"
                       "\"local\": {\"kind\": \"openai\", \"base_url\": \"http://127.0.0.1:11434/v1\"},"
                       "\"b\": {\"kind\": \"openai\", \"base_url\": \"http://h\", \"models\": {\"m1\": {}, \"m2\": {}}},"
                       "\"a\": {\"kind\": \"anthropic\", \"base_url\": \"https://x\", \"models\": {\"c\": {\"input\": 2}}}},"
                       "\"hedge\": {\"after_ms\": \"p95\"},"
                       "\"breaker\": {\"window\": 3},"
                       "\"rate_limits\": {\"per_ip\": {\"per_minute\": 30}, \"per_app\": {\"per_minute\": 0.5}}}";
    if (providers_parse_json(&cfg, F, text, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(cfg.n_providers, 3);
    assert_null(cfg.providers[0].api_key_env);
    assert_null(cfg.providers[0].api_key);
    assert_int_equal(cfg.n_default_models, 2);
    assert_string_equal(cfg.default_models[0].provider->name, "b");
    assert_string_equal(cfg.default_models[0].model->name, "m1");
    assert_string_equal(cfg.default_models[1].model->name, "c");
    const model_info_t *c = cfg.default_models[1].model;
    assert_true(c->input_usd_per_mtok == 2 && c->cached_input_usd_per_mtok == 2 && c->cache_write_usd_per_mtok == 2 &&
                c->output_usd_per_mtok == 0);
    assert_int_equal(cfg.hedge.use_p95, 1);
    assert_int_equal(cfg.hedge.after_ms, 500);
    assert_int_equal(cfg.breaker.window, 3);
    assert_int_equal(cfg.breaker.min_requests, 3);
    assert_true(cfg.rate_limits.per_ip.burst == 30);
    assert_true(cfg.rate_limits.per_app.burst == 1);
    providers_free(&cfg);
}

static void bad(const char *text, const char *want)
{
    providers_config_t cfg;
    fig_err_t err = {0};
    if (providers_parse_json(&cfg, F, text, &err) == 0) {
        providers_free(&cfg);
        fail_msg("accepted: %s", text);
    }
    assert_int_equal(err.code, FIG_E_CONFIG);
    if (strstr(err.msg, want) == NULL)
        fail_msg("for %s\n  got:  %s\n  want: %s", text, err.msg, want);
    assert_int_equal(cfg.n_providers, 0); /* nothing half-filled */
    assert_null(cfg.providers);
}

/* A figment.json with one valid provider and extra top-level members. */
static void bad1(const char *provider_extra, const char *top_extra, const char *want)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h/v1\", "
             "\"models\": {\"m\": {}}%s%s}}%s%s}",
             provider_extra[0] ? ", " : "", provider_extra, top_extra[0] ? ", " : "", top_extra);
    bad(text, want);
}

static void test_syntax_and_unknown_keys(void **s)
{
    (void)s;
    bad("", F ":1:0: ");
    bad("{\"providers\": {}, \"providers\": {}}", "duplicate");
    bad("{} x", F ":1:");
    bad("[]", F ": expected an object at the top level, got an array");
    bad("{\"provider\": {}}", F ": provider: unknown key (expected one of: providers, default_models, retry, breaker, "
                              "hedge, rate_limits, budgets)");
    bad1("\"api_key\": \"sk\"", "",
         F ": providers.p.api_key: unknown key (expected one of: kind, base_url, api_key_env, timeouts, models)");
    bad1("\"timeouts\": {\"read_ms\": 1000}", "",
         F ": providers.p.timeouts.read_ms: unknown key (expected one of: connect_ms, first_token_ms, idle_ms, "
           "total_ms)");
    bad("{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", \"models\": {\"m\": "
        "{\"prompt\": 1}}}}}",
        F ": providers.p.models.m.prompt: unknown key (expected one of: input, cached_input, cache_write, output)");
    bad1("", "\"retry\": {\"attempts\": 2}",
         F ": retry.attempts: unknown key (expected one of: max_attempts, base_delay_ms, max_delay_ms)");
    bad1("", "\"breaker\": {\"ratio\": 0.5}",
         F ": breaker.ratio: unknown key (expected one of: window, min_requests, failure_ratio, open_ms)");
    bad1("", "\"hedge\": {\"p95\": true}", F ": hedge.p95: unknown key (expected one of: after_ms)");
    bad1("", "\"rate_limits\": {\"per_user\": {}}",
         F ": rate_limits.per_user: unknown key (expected one of: per_session, per_ip, per_app, "
           "max_concurrent_upstream)");
    bad1("", "\"rate_limits\": {\"per_ip\": {\"rate\": 1}}",
         F ": rate_limits.per_ip.rate: unknown key (expected one of: per_minute, burst)");
    bad1("", "\"budgets\": {\"daily_usd\": 1}",
         F ": budgets.daily_usd: unknown key (expected one of: per_session_usd, per_app_daily_usd, global_daily_usd)");
    /* A hostile key does not reach the message raw. */
    bad("{\"\\u001b[2J\": 1}", F ": ?[2J: unknown key");
}

static void test_types(void **s)
{
    (void)s;
    bad("{\"providers\": []}", F ": providers: expected an object, got an array");
    bad("{\"providers\": {\"p\": \"openai\"}}", F ": providers.p: expected an object, got a string");
    bad("{\"providers\": {\"p\": {\"base_url\": \"https://h\"}}}",
        F ": providers.p.kind: missing (expected \"openai\" or \"anthropic\")");
    bad("{\"providers\": {\"p\": {\"kind\": \"openai\"}}}", F ": providers.p.base_url: missing");
    bad("{\"providers\": {\"p\": {\"kind\": 1, \"base_url\": \"https://h\"}}}",
        F ": providers.p.kind: expected \"openai\" or \"anthropic\", got an integer");
    bad("{\"providers\": {\"p\": {\"kind\": \"gemini\", \"base_url\": \"https://h\"}}}",
        F ": providers.p.kind: expected \"openai\" or \"anthropic\", got \"gemini\"");
    bad1("\"timeouts\": 5", "", F ": providers.p.timeouts: expected an object, got an integer");
    bad1("\"timeouts\": {\"idle_ms\": \"20s\"}", "",
         F ": providers.p.timeouts.idle_ms: expected an integer from 100 to 3600000, got a string");
    bad1("\"timeouts\": {\"idle_ms\": 2000.5}", "",
         F ": providers.p.timeouts.idle_ms: expected an integer from 100 to 3600000, got a real number");
    bad1("\"models\": []", "", "duplicate"); /* "models" twice in bad1's text */
    bad("{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", \"models\": []}}}",
        F ": providers.p.models: expected an object, got an array");
    bad("{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", \"models\": {\"m\": 1}}}}",
        F ": providers.p.models.m: expected an object, got an integer");
    bad("{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", \"models\": {\"m\": "
        "{\"input\": \"0.1\"}}}}}",
        F ": providers.p.models.m.input: expected a number from 0 to 1e+06, got a string");
    bad1("\"api_key_env\": 5", "", F ": providers.p.api_key_env: expected an environment variable name, got an integer");
    bad1("", "\"retry\": []", F ": retry: expected an object, got an array");
    bad1("", "\"retry\": {\"max_attempts\": true}",
         F ": retry.max_attempts: expected an integer from 1 to 10, got a boolean");
    bad1("", "\"breaker\": {\"failure_ratio\": \"half\"}",
         F ": breaker.failure_ratio: expected a number above 0 and at most 1, got a string");
    bad1("", "\"hedge\": {\"after_ms\": \"p99\"}",
         F ": hedge.after_ms: expected an integer from 0 to 600000 or \"p95\", got \"p99\"");
    bad1("", "\"hedge\": {\"after_ms\": 1.5}",
         F ": hedge.after_ms: expected an integer from 0 to 600000 or \"p95\", got a real number");
    bad1("", "\"rate_limits\": {\"per_ip\": 5}", F ": rate_limits.per_ip: expected an object, got an integer");
    bad1("", "\"rate_limits\": {\"max_concurrent_upstream\": null}",
         F ": rate_limits.max_concurrent_upstream: expected an integer from 0 to 100000, got null");
    bad1("", "\"budgets\": {\"global_daily_usd\": \"100\"}",
         F ": budgets.global_daily_usd: expected a number from 0 to 1e+09, got a string");
    bad1("", "\"default_models\": \"p/m\"",
         F ": default_models: expected an array of 1 to 8 \"provider/model\" strings, got a string");
    bad1("", "\"default_models\": [1]", F ": default_models[0]: expected a \"provider/model\" string, got an integer");
}

static void test_ranges(void **s)
{
    (void)s;
    static const struct {
        const char *prov, *top, *want;
    } cases[] = {
        {"\"timeouts\": {\"connect_ms\": 99}", "", "providers.p.timeouts.connect_ms: expected an integer from 100 to 3600000, got 99"},
        {"\"timeouts\": {\"first_token_ms\": 3600001}", "", "providers.p.timeouts.first_token_ms: expected an integer from 100 to 3600000, got 3600001"},
        {"\"timeouts\": {\"total_ms\": -1}", "", "providers.p.timeouts.total_ms: expected an integer from 100 to 3600000, got -1"},
        {"", "\"retry\": {\"max_attempts\": 0}", "retry.max_attempts: expected an integer from 1 to 10, got 0"},
        {"", "\"retry\": {\"max_attempts\": 11}", "retry.max_attempts: expected an integer from 1 to 10, got 11"},
        {"", "\"retry\": {\"base_delay_ms\": 0}", "retry.base_delay_ms: expected an integer from 1 to 600000, got 0"},
        {"", "\"retry\": {\"max_delay_ms\": 600001}", "retry.max_delay_ms: expected an integer from 1 to 600000, got 600001"},
        {"", "\"retry\": {\"base_delay_ms\": 5000}", "retry.base_delay_ms: must not exceed retry.max_delay_ms (4000), got 5000"},
        {"", "\"retry\": {\"base_delay_ms\": 100, \"max_delay_ms\": 99}", "retry.base_delay_ms: must not exceed retry.max_delay_ms (99), got 100"},
        {"", "\"breaker\": {\"window\": 0}", "breaker.window: expected an integer from 1 to 1000, got 0"},
        {"", "\"breaker\": {\"window\": 1001}", "breaker.window: expected an integer from 1 to 1000, got 1001"},
        {"", "\"breaker\": {\"min_requests\": 21}", "breaker.min_requests: expected an integer from 1 to 20, got 21"},
        {"", "\"breaker\": {\"window\": 4, \"min_requests\": 5}", "breaker.min_requests: expected an integer from 1 to 4, got 5"},
        {"", "\"breaker\": {\"min_requests\": 0}", "breaker.min_requests: expected an integer from 1 to 20, got 0"},
        {"", "\"breaker\": {\"failure_ratio\": 0}", "breaker.failure_ratio: expected a number above 0 and at most 1, got 0"},
        {"", "\"breaker\": {\"failure_ratio\": 1.01}", "breaker.failure_ratio: expected a number above 0 and at most 1, got 1.01"},
        {"", "\"breaker\": {\"open_ms\": 99}", "breaker.open_ms: expected an integer from 100 to 3600000, got 99"},
        {"", "\"hedge\": {\"after_ms\": -1}", "hedge.after_ms: expected an integer from 0 to 600000, got -1"},
        {"", "\"hedge\": {\"after_ms\": 600001}", "hedge.after_ms: expected an integer from 0 to 600000, got 600001"},
        {"", "\"rate_limits\": {\"per_session\": {\"per_minute\": -1}}", "rate_limits.per_session.per_minute: expected a number from 0 to 1e+09, got -1"},
        {"", "\"rate_limits\": {\"per_ip\": {\"per_minute\": 10, \"burst\": 0.5}}", "rate_limits.per_ip.burst: expected a number from 1 to 1e+09, got 0.5"},
        {"", "\"rate_limits\": {\"max_concurrent_upstream\": 100001}", "rate_limits.max_concurrent_upstream: expected an integer from 0 to 100000, got 100001"},
        {"", "\"rate_limits\": {\"max_concurrent_upstream\": -1}", "rate_limits.max_concurrent_upstream: expected an integer from 0 to 100000, got -1"},
        {"", "\"budgets\": {\"per_session_usd\": -0.01}", "budgets.per_session_usd: expected a number from 0 to 1e+09, got -0.01"},
        {"", "\"budgets\": {\"per_app_daily_usd\": 1e10}", "budgets.per_app_daily_usd: expected a number from 0 to 1e+09, got 1e+10"},
        {"", "\"default_models\": []", "default_models: expected an array of 1 to 8 \"provider/model\" strings, got 0 entries"},
        {"", "\"default_models\": [\"p/m\",\"p/m\",\"p/m\",\"p/m\",\"p/m\",\"p/m\",\"p/m\",\"p/m\",\"p/m\"]", "default_models: expected an array of 1 to 8 \"provider/model\" strings, got 9 entries"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[256];
        snprintf(want, sizeof(want), F ": %s", cases[i].want);
        bad1(cases[i].prov, cases[i].top, want);
    }
    bad("{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", \"models\": {\"m\": "
        "{\"output\": -1}}}}}",
        F ": providers.p.models.m.output: expected a number from 0 to 1e+06, got -1");

    /* The bounds themselves are accepted. */
    providers_config_t cfg;
    fig_err_t err = {0};
    const char *ok = "{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"http://h\", \"models\": {\"m\": {}},"
                     " \"timeouts\": {\"connect_ms\": 100, \"total_ms\": 3600000}}},"
                     "\"retry\": {\"max_attempts\": 10, \"base_delay_ms\": 600000, \"max_delay_ms\": 600000},"
                     "\"breaker\": {\"window\": 1000, \"min_requests\": 1000, \"failure_ratio\": 1, \"open_ms\": 3600000},"
                     "\"hedge\": {\"after_ms\": 600000},"
                     "\"rate_limits\": {\"per_session\": {\"per_minute\": 0, \"burst\": 1}, \"max_concurrent_upstream\": 100000},"
                     "\"budgets\": {\"per_session_usd\": 0}}";
    if (providers_parse_json(&cfg, F, ok, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(cfg.breaker.min_requests, 1000);
    assert_int_equal(cfg.hedge.after_ms, 600000);
    assert_int_equal(cfg.hedge.use_p95, 0);
    providers_free(&cfg);
}

static void test_names_urls(void **s)
{
    (void)s;
    bad("{\"providers\": {\"OpenAI\": {\"kind\": \"openai\", \"base_url\": \"https://h\"}}}",
        F ": providers.OpenAI: invalid provider name (expected [a-z0-9][a-z0-9_-]{0,31})");
    bad("{\"providers\": {\"-x\": {\"kind\": \"openai\", \"base_url\": \"https://h\"}}}",
        F ": providers.-x: invalid provider name");
    bad("{\"providers\": {\"a/b\": {\"kind\": \"openai\", \"base_url\": \"https://h\"}}}",
        F ": providers.a/b: invalid provider name");
    bad("{\"providers\": {\"abcdefghijklmnopqrstuvwxyz0123456\": {\"kind\": \"openai\", \"base_url\": \"https://h\"}}}",
        "invalid provider name");
    static const char *const bad_urls[] = {"ftp://h", "https://", "https:///path", "api.openai.com",
                                           "https://h/a b", "https://h/\\u0007", "HTTPS://h"};
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"%s\"}}}",
                 bad_urls[i]);
        bad(text, F ": providers.p.base_url: expected an http:// or https:// URL");
    }
    static const char *const bad_env[] = {"", "1KEY", "MY-KEY", "A B", "$HOME"};
    for (size_t i = 0; i < sizeof(bad_env) / sizeof(bad_env[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", "
                 "\"api_key_env\": \"%s\"}}}", bad_env[i]);
        bad(text, F ": providers.p.api_key_env: expected an environment variable name");
    }
    /* Model names: 1..200 characters, no control characters; '/' is fine. */
    bad("{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", \"models\": {\"\": {}}}}}",
        F ": providers.p.models.: invalid model name (expected 1 to 200 characters");
    bad("{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", \"models\": {\"a\\tb\": {}}}}}",
        F ": providers.p.models.a?b: invalid model name");
    char big[512];
    snprintf(big, sizeof(big), "{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", "
             "\"models\": {\"%0201d\": {}}}}}", 0);
    bad(big, "invalid model name");
    snprintf(big, sizeof(big), "{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", "
             "\"models\": {\"%0200d\": {}, \"meta-llama/Llama-3\": {}}}}}", 0);
    providers_config_t cfg;
    fig_err_t err = {0};
    if (providers_parse_json(&cfg, F, big, &err) != 0)
        fail_msg("%s", err.msg);
    model_ref_t ref;
    assert_int_equal(providers_resolve(&cfg, "p/meta-llama/Llama-3", &ref, &err), 0);
    assert_string_equal(ref.model->name, "meta-llama/Llama-3");
    providers_free(&cfg);
}

static void test_default_models_resolve(void **s)
{
    (void)s;
    bad1("", "\"default_models\": [\"p/m\", \"q/m\"]", F ": default_models[1]: unknown provider \"q\" (configured: p)");
    bad1("", "\"default_models\": [\"p/x\"]",
         F ": default_models[0]: model \"x\" is not listed under provider \"p\" (listed: m)");
    bad1("", "\"default_models\": [\"pm\"]", F ": default_models[0]: expected \"provider/model\"");
    bad1("", "\"default_models\": [\"/m\"]", F ": default_models[0]: expected \"provider/model\"");
    bad1("", "\"default_models\": [\"p/\"]", F ": default_models[0]: expected \"provider/model\"");
    /* No provider lists models and no default_models: nothing to call. */
    bad("{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\"}}}",
        F ": default_models: missing (required when no provider lists models");
}

static void test_resolve(void **s)
{
    (void)s;
    providers_config_t cfg;
    fig_err_t err = {0};
    const char *text = "{\"providers\": {"
                       "\"listed\": {\"kind\": \"openai\", \"base_url\": \"https://h\", \"models\": {\"a\": {}, \"b\": {}}},"
                       "\"open\": {\"kind\": \"openai\", \"base_url\": \"http://127.0.0.1:8000/v1\"}},"
                       "\"default_models\": [\"open/llama3\", \"listed/b\"]}";
    if (providers_parse_json(&cfg, F, text, &err) != 0)
        fail_msg("%s", err.msg);
    model_ref_t r1, r2, r3;
    assert_int_equal(providers_resolve(&cfg, "listed/a", &r1, &err), 0);
    assert_ptr_equal(r1.provider, &cfg.providers[0]);
    assert_ptr_equal(r1.model, &cfg.providers[0].models[0]);
    assert_int_equal(providers_resolve(&cfg, "listed/c", &r1, &err), -1);
    assert_string_equal(err.msg, "model \"c\" is not listed under provider \"listed\" (listed: a, b)");
    assert_int_equal(providers_resolve(&cfg, "nope/a", &r1, &err), -1);
    assert_string_equal(err.msg, "unknown provider \"nope\" (configured: listed, open)");
    assert_int_equal(providers_resolve(&cfg, "Listed/a", &r1, &err), -1);
    assert_non_null(strstr(err.msg, "expected \"provider/model\""));
    assert_int_equal(providers_resolve(&cfg, "a", &r1, &err), -1);
    assert_int_equal(providers_resolve(&cfg, NULL, &r1, &err), -1);
    assert_int_equal(providers_resolve(&cfg, "listed/a\x01", &r1, &err), -1);

    /* A provider without a list takes any model at price 0, and the same name
     * always yields the same pointer (the default already interned llama3). */
    assert_int_equal(providers_resolve(&cfg, "open/llama3", &r2, &err), 0);
    assert_ptr_equal(r2.provider, &cfg.providers[1]);
    assert_ptr_equal(r2.model, cfg.default_models[0].model);
    assert_string_equal(r2.model->name, "llama3");
    assert_true(r2.model->input_usd_per_mtok == 0 && r2.model->output_usd_per_mtok == 0);
    assert_int_equal(providers_resolve(&cfg, "open/qwen", &r3, &err), 0);
    assert_ptr_not_equal(r3.model, r2.model);
    assert_string_equal(r3.model->name, "qwen");
    /* Bounded. */
    int rc = 0;
    for (int i = 0; i < 300 && rc == 0; i++) {
        char spec[32];
        snprintf(spec, sizeof(spec), "open/m%d", i);
        rc = providers_resolve(&cfg, spec, &r3, &err);
    }
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, "distinct models"));
    providers_free(&cfg);

    /* No providers at all. */
    assert_int_equal(providers_parse_json(&cfg, F, "{}", &err), 0);
    assert_int_equal(providers_resolve(&cfg, "x/y", &r1, &err), -1);
    assert_string_equal(err.msg, "unknown provider \"x\" (configured: none)");
    providers_free(&cfg);
}

static void test_env_mode(void **s)
{
    (void)s;
    providers_config_t cfg;
    fig_err_t err = {0};

    /* Nothing set: not configured. */
    assert_int_equal(providers_load(NULL, &cfg, &err), 0);
    assert_int_equal(cfg.configured, 0);
    assert_int_equal(cfg.n_providers, 0);
    assert_int_equal(cfg.n_default_models, 0);
    assert_int_equal(cfg.retry.max_attempts, 3); /* policies still have their defaults */
    providers_free(&cfg);

    /* OpenAI only. */
    setenv("OPENAI_API_KEY", "sk-o", 1);
    assert_int_equal(providers_load(NULL, &cfg, &err), 0);
    assert_int_equal(cfg.configured, 1);
    assert_int_equal(cfg.n_providers, 1);
    assert_string_equal(cfg.providers[0].name, "openai");
    assert_int_equal(cfg.providers[0].kind, PROVIDER_OPENAI);
    assert_string_equal(cfg.providers[0].base_url, "https://api.openai.com/v1");
    assert_string_equal(cfg.providers[0].api_key, "sk-o");
    assert_string_equal(cfg.providers[0].api_key_env, "OPENAI_API_KEY");
    assert_int_equal(cfg.providers[0].n_models, 0);
    assert_int_equal(cfg.n_default_models, 1);
    assert_string_equal(cfg.default_models[0].model->name, "gpt-4o-mini");
    assert_true(cfg.default_models[0].model->input_usd_per_mtok == 0);
    /* Any model of the provider resolves (app.json "model" in env mode). */
    model_ref_t ref;
    assert_int_equal(providers_resolve(&cfg, "openai/gpt-4o", &ref, &err), 0);
    providers_free(&cfg);

    /* A base URL alone configures OpenAI (local servers); FIGMENT_MODEL names the model. */
    unsetenv("OPENAI_API_KEY");
    setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1", 1);
    setenv("FIGMENT_MODEL", "llama3.2", 1);
    assert_int_equal(providers_load(NULL, &cfg, &err), 0);
    assert_int_equal(cfg.n_providers, 1);
    assert_null(cfg.providers[0].api_key);
    assert_string_equal(cfg.providers[0].base_url, "http://127.0.0.1:11434/v1");
    assert_string_equal(cfg.default_models[0].model->name, "llama3.2");
    providers_free(&cfg);

    /* Plus Anthropic: the fallback. */
    setenv("ANTHROPIC_API_KEY", "sk-ant", 1);
    assert_int_equal(providers_load(NULL, &cfg, &err), 0);
    assert_int_equal(cfg.n_providers, 2);
    assert_string_equal(cfg.providers[1].name, "anthropic");
    assert_int_equal(cfg.providers[1].kind, PROVIDER_ANTHROPIC);
    assert_ptr_equal(cfg.providers[1].impl, &llm_provider_anthropic);
    assert_string_equal(cfg.providers[1].base_url, "https://api.anthropic.com");
    assert_string_equal(cfg.providers[1].api_key, "sk-ant");
    assert_int_equal(cfg.n_default_models, 2);
    assert_string_equal(cfg.default_models[0].provider->name, "openai");
    assert_string_equal(cfg.default_models[1].provider->name, "anthropic");
    assert_string_equal(cfg.default_models[1].model->name, "claude-haiku-4-5");
    providers_free(&cfg);

    /* Anthropic only, with its own URL and model. */
    unsetenv("OPENAI_BASE_URL");
    unsetenv("FIGMENT_MODEL");
    setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9999", 1);
    setenv("FIGMENT_ANTHROPIC_MODEL", "claude-sonnet-4-5", 1);
    assert_int_equal(providers_load(NULL, &cfg, &err), 0);
    assert_int_equal(cfg.n_providers, 1);
    assert_string_equal(cfg.providers[0].name, "anthropic");
    assert_string_equal(cfg.providers[0].base_url, "http://127.0.0.1:9999");
    assert_int_equal(cfg.n_default_models, 1);
    assert_string_equal(cfg.default_models[0].model->name, "claude-sonnet-4-5");
    providers_free(&cfg);

    /* ANTHROPIC_BASE_URL without a key does not configure Anthropic. */
    unsetenv("ANTHROPIC_API_KEY");
    assert_int_equal(providers_load(NULL, &cfg, &err), 0);
    assert_int_equal(cfg.configured, 0);
    providers_free(&cfg);

    /* Bad values are errors naming the variable. */
    setenv("OPENAI_BASE_URL", "localhost:11434", 1);
    assert_int_equal(providers_load(NULL, &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "OPENAI_BASE_URL: expected an http:// or https:// URL"));
    assert_int_equal(cfg.n_providers, 0);
    unsetenv("OPENAI_BASE_URL");
    setenv("ANTHROPIC_API_KEY", "k", 1);
    setenv("OPENAI_API_KEY", "k", 1);
    setenv("ANTHROPIC_BASE_URL", "ftp://x", 1);
    assert_int_equal(providers_load(NULL, &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "ANTHROPIC_BASE_URL: "));
    unsetenv("ANTHROPIC_BASE_URL");
    setenv("FIGMENT_ANTHROPIC_MODEL", "bad\nmodel", 1);
    assert_int_equal(providers_load(NULL, &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "FIGMENT_ANTHROPIC_MODEL: "));
    clear_env(NULL);
}

static void test_load_file(void **s)
{
    (void)s;
    char dir[] = "/tmp/figment-prov-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/figment.json", dir);
    providers_config_t cfg;
    fig_err_t err = {0};
    assert_int_equal(providers_load(path, &cfg, &err), -1);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "No such file"));

    /* With a file, OPENAI_* are not used except through api_key_env. */
    setenv("OPENAI_API_KEY", "sk-env", 1);
    setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1", 1);
    FILE *f = fopen(path, "w");
    fputs("{\"providers\": {\"x\": {\"kind\": \"openai\", \"base_url\": \"https://h/v1\", \"models\": {\"m\": {}}}}}", f);
    fclose(f);
    assert_int_equal(providers_load(path, &cfg, &err), 0);
    assert_int_equal(cfg.n_providers, 1);
    assert_string_equal(cfg.providers[0].base_url, "https://h/v1");
    assert_null(cfg.providers[0].api_key);
    providers_free(&cfg);

    f = fopen(path, "w");
    fputs("{\"retry\": {\"max_attempts\": 99}}", f);
    fclose(f);
    assert_int_equal(providers_load(path, &cfg, &err), -1);
    char want[256];
    snprintf(want, sizeof(want), "%s: retry.max_attempts: expected an integer from 1 to 10, got 99", path);
    assert_string_equal(err.msg, want);

    f = fopen(path, "w");
    fwrite("{}\0", 1, 3, f);
    fclose(f);
    assert_int_equal(providers_load(path, &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "NUL"));
    unlink(path);
    rmdir(dir);
    clear_env(NULL);
}

static void test_cost(void **s)
{
    (void)s;
    model_info_t m = {.name = "m", .input_usd_per_mtok = 3, .cached_input_usd_per_mtok = 0.5,
                      .cache_write_usd_per_mtok = 4, .output_usd_per_mtok = 10};
    /* 1000 prompt tokens of which 200 cached and 300 cache writes: 500 plain. */
    llm_usage_t u = {.prompt_tokens = 1000, .cached_tokens = 200, .cache_write_tokens = 300, .completion_tokens = 50};
    double want = (500 * 3.0 + 200 * 0.5 + 300 * 4.0 + 50 * 10.0) / 1e6; /* 0.0033 */
    assert_true(providers_cost_usd(&m, &u) == want);
    /* One million of each kind costs exactly the listed prices. */
    llm_usage_t one = {.prompt_tokens = 3000000, .cached_tokens = 1000000, .cache_write_tokens = 1000000,
                       .completion_tokens = 1000000};
    assert_true(providers_cost_usd(&m, &one) == 3 + 0.5 + 4 + 10);
    /* Inconsistent counts clamp instead of going negative. */
    llm_usage_t odd = {.prompt_tokens = 100, .cached_tokens = 150, .cache_write_tokens = 0, .completion_tokens = -5};
    assert_true(providers_cost_usd(&m, &odd) == 150 * 0.5 / 1e6);
    llm_usage_t zero = {0};
    assert_true(providers_cost_usd(&m, &zero) == 0);
    assert_true(providers_cost_usd(NULL, &u) == 0);

    /* With prices from figment.json: cached_input/cache_write default to input. */
    providers_config_t cfg;
    fig_err_t err = {0};
    assert_int_equal(providers_parse_json(&cfg, F,
                                          "{\"providers\": {\"p\": {\"kind\": \"openai\", \"base_url\": \"https://h\", "
                                          "\"models\": {\"m\": {\"input\": 2, \"output\": 8}}}}}",
                                          &err),
                     0);
    llm_usage_t v = {.prompt_tokens = 1000000, .cached_tokens = 500000, .cache_write_tokens = 0,
                     .completion_tokens = 250000};
    assert_true(providers_cost_usd(cfg.default_models[0].model, &v) == 2 + 2);
    providers_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_full_example, clear_env),
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_syntax_and_unknown_keys, clear_env),
        cmocka_unit_test_setup(test_types, clear_env),
        cmocka_unit_test_setup(test_ranges, clear_env),
        cmocka_unit_test_setup(test_names_urls, clear_env),
        cmocka_unit_test_setup(test_default_models_resolve, clear_env),
        cmocka_unit_test_setup(test_resolve, clear_env),
        cmocka_unit_test_setup(test_env_mode, clear_env),
        cmocka_unit_test_setup(test_load_file, clear_env),
        cmocka_unit_test_setup(test_cost, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
