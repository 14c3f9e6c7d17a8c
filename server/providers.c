/*
 * providers.c — figment.json (or the environment): providers, models, prices and
 * the retry / breaker / hedge / rate-limit / budget policies (see providers.h).
 *
 * Design:
 * - Strict, like app.json: every object is checked against a fixed list of keys;
 *   an unknown key, a wrong type or an out-of-range value is an error naming the
 *   file and the dotted key ("figment.json: providers.openai.timeouts.idle_ms: ...")
 *   so a typo fails at start instead of silently meaning "default". Duplicate keys
 *   and trailing garbage are refused by jansson's parser flags.
 * - Parsing fills a scratch config and hands it over only on success; on failure
 *   the scratch is freed and the output stays zeroed.
 * - Explicit upper bounds even where the contract only says ">= 0" (prices, rates,
 *   budgets), so a misplaced exponent is caught instead of meaning "unlimited".
 * - With a figment.json, only the variables named by api_key_env are read; the
 *   OPENAI_* / ANTHROPIC_* variables belong to environment mode alone, so one
 *   deployment never mixes the two sources.
 * - A provider that lists no models (environment mode, local servers) accepts any
 *   model name at price 0. providers_resolve() interns those names in the provider
 *   (under a mutex, bounded) so every model_ref_t points into the config, like
 *   listed ones, and stays valid until providers_free().
 * - When default_models is absent, the chain is the first listed model of each
 *   provider, in file order (jansson keeps object order).
 */
#include "providers.h"

#include "fsutil.h"
#include "json_check.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"

#define PROV_MAX_FILE_BYTES (1024 * 1024)
#define PROV_MAX_PROVIDERS 32
#define PROV_MAX_MODELS 256     /* listed per provider */
#define PROV_MAX_UNLISTED 256   /* distinct names resolved for a provider without a list */
#define PROV_MAX_NAME 32
#define PROV_MAX_MODEL_CHARS 200
#define PROV_MAX_URL 2048
#define PROV_MAX_ENV_NAME 128
#define PROV_MAX_DEFAULT_MODELS 8
#define PROV_MAX_PRICE 1e6      /* USD per million tokens */
#define PROV_MAX_RATE 1e9       /* per minute, and burst */
#define PROV_MAX_BUDGET 1e9     /* USD */
#define PROV_HEDGE_P95_FLOOR_MS 500

struct provider_unlisted {
    pthread_mutex_t mu;
    model_info_t **items;
    size_t n;
};

/* ---- small helpers ---- */

static int prov_valid_name(const char *s, size_t len)
{
    if (len == 0 || len > PROV_MAX_NAME)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'))))
            return 0;
    }
    return 1;
}

static int prov_valid_model_name(const char *s)
{
    size_t n = json_check_utf8_chars(s);
    return n >= 1 && n <= PROV_MAX_MODEL_CHARS && !json_check_has_control(s, 0);
}

static int prov_valid_env_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PROV_MAX_ENV_NAME || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

/* http(s)://host...: a scheme we speak, a non-empty host, no spaces or control bytes. */
static int prov_valid_url(const char *s)
{
    size_t skip;
    if (strncmp(s, "http://", 7) == 0)
        skip = 7;
    else if (strncmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return 0;
    if (s[skip] == '\0' || s[skip] == '/' || strlen(s) > PROV_MAX_URL)
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return 0;
    return 1;
}

static char *prov_getenv(const char *name)
{
    const char *v = getenv(name);
    return (v != NULL && *v != '\0') ? fig_strdup(v) : NULL;
}

/* ---- JSON field readers; prefix is the dotted path of the enclosing object ---- */

typedef struct {
    const char *path;
    fig_err_t *err;
} prov_ctx_t;

static int prov_check_keys(prov_ctx_t *c, const json_t *obj, const char *const *allowed, const char *prefix)
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
        fig_err_set(c->err, FIG_E_CONFIG, "%s: %s%s: unknown key (expected one of: %s)", c->path, prefix,
                    json_check_printable(key, pk, sizeof(pk)), list.data);
        fig_buf_free(&list);
        return -1;
    }
    return 0;
}

/* An object at obj[key] (absent: *out = NULL, ok). */
static int prov_get_object(prov_ctx_t *c, const json_t *obj, const char *key, const char *prefix,
                           const char *const *allowed, json_t **out)
{
    json_t *v = json_object_get(obj, key);
    *out = v;
    if (v == NULL)
        return 0;
    if (!json_is_object(v)) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: %s%s: expected an object, got %s", c->path, prefix, key,
                    json_check_type_name(v));
        return -1;
    }
    char sub[256];
    snprintf(sub, sizeof(sub), "%s%s.", prefix, key);
    return allowed ? prov_check_keys(c, v, allowed, sub) : 0;
}

static int prov_get_long(prov_ctx_t *c, const json_t *obj, const char *key, const char *prefix, long min, long max,
                         long *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v)) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: %s%s: expected an integer from %ld to %ld, got %s", c->path, prefix, key,
                    min, max, json_check_type_name(v));
        return -1;
    }
    json_int_t n = json_integer_value(v);
    if (n < min || n > max) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: %s%s: expected an integer from %ld to %ld, got %" JSON_INTEGER_FORMAT,
                    c->path, prefix, key, min, max, n);
        return -1;
    }
    *out = (long)n;
    return 0;
}

static int prov_get_int(prov_ctx_t *c, const json_t *obj, const char *key, const char *prefix, long min, long max,
                        int *out)
{
    long v = *out;
    if (prov_get_long(c, obj, key, prefix, min, max, &v) != 0)
        return -1;
    *out = (int)v;
    return 0;
}

/* A number (integer or real) in [min, max]; *present tells whether the key was there. */
static int prov_get_number(prov_ctx_t *c, const json_t *obj, const char *key, const char *prefix, double min,
                           double max, double *out, int *present)
{
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = v != NULL;
    if (v == NULL)
        return 0;
    if (!json_is_number(v)) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: %s%s: expected a number from %g to %g, got %s", c->path, prefix, key,
                    min, max, json_check_type_name(v));
        return -1;
    }
    double d = json_number_value(v);
    if (!isfinite(d) || d < min || d > max) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: %s%s: expected a number from %g to %g, got %g", c->path, prefix, key,
                    min, max, d);
        return -1;
    }
    *out = d;
    return 0;
}

static int prov_get_string(prov_ctx_t *c, const json_t *obj, const char *key, const char *prefix, int required,
                           const char *expected, const char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL) {
        if (required) {
            fig_err_set(c->err, FIG_E_CONFIG, "%s: %s%s: missing (expected %s)", c->path, prefix, key, expected);
            return -1;
        }
        return 0;
    }
    if (!json_is_string(v)) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: %s%s: expected %s, got %s", c->path, prefix, key, expected,
                    json_check_type_name(v));
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* ---- defaults ---- */

static void prov_timeouts_default(provider_timeouts_t *t)
{
    t->connect_ms = 10000;
    t->first_token_ms = 60000;
    t->idle_ms = 30000;
    t->total_ms = 300000;
}

static void prov_config_default(providers_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->retry.max_attempts = 3;
    cfg->retry.base_delay_ms = 250;
    cfg->retry.max_delay_ms = 4000;
    cfg->breaker.window = 20;
    cfg->breaker.min_requests = 5;
    cfg->breaker.failure_ratio = 0.5;
    cfg->breaker.open_ms = 30000;
    cfg->hedge.after_ms = 0;
    cfg->hedge.use_p95 = 0;
    cfg->rate_limits.per_session.burst = 1;
    cfg->rate_limits.per_ip.burst = 1;
    cfg->rate_limits.per_app.burst = 1;
}

static provider_t *prov_add(providers_config_t *cfg, const char *name, provider_kind_t kind)
{
    cfg->providers = fig_realloc(cfg->providers, (cfg->n_providers + 1) * sizeof(*cfg->providers));
    provider_t *p = &cfg->providers[cfg->n_providers++];
    memset(p, 0, sizeof(*p));
    p->name = fig_strdup(name);
    p->kind = kind;
    p->impl = kind == PROVIDER_ANTHROPIC ? &llm_provider_anthropic : &llm_provider_openai;
    prov_timeouts_default(&p->timeouts);
    return p;
}

/* Providers without a model list get the interning table (see providers_resolve). */
static void prov_finish_providers(providers_config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_providers; i++) {
        provider_t *p = &cfg->providers[i];
        if (p->n_models == 0 && p->unlisted == NULL) {
            p->unlisted = fig_calloc(1, sizeof(*p->unlisted));
            pthread_mutex_init(&p->unlisted->mu, NULL);
        }
    }
    cfg->configured = cfg->n_providers > 0;
}

static void prov_add_default(providers_config_t *cfg, model_ref_t ref)
{
    cfg->default_models =
        fig_realloc(cfg->default_models, (cfg->n_default_models + 1) * sizeof(*cfg->default_models));
    cfg->default_models[cfg->n_default_models++] = ref;
}

/* ---- figment.json ---- */

static const char *const prov_top_keys[] = {"providers", "default_models", "retry", "breaker", "hedge",
                                            "rate_limits", "budgets", NULL};
static const char *const prov_provider_keys[] = {"kind", "base_url", "api_key_env", "timeouts", "models", NULL};
static const char *const prov_timeout_keys[] = {"connect_ms", "first_token_ms", "idle_ms", "total_ms", NULL};
static const char *const prov_price_keys[] = {"input", "cached_input", "cache_write", "output", NULL};
static const char *const prov_retry_keys[] = {"max_attempts", "base_delay_ms", "max_delay_ms", NULL};
static const char *const prov_breaker_keys[] = {"window", "min_requests", "failure_ratio", "open_ms", NULL};
static const char *const prov_hedge_keys[] = {"after_ms", NULL};
static const char *const prov_rate_keys[] = {"per_session", "per_ip", "per_app", "max_concurrent_upstream", NULL};
static const char *const prov_rate_policy_keys[] = {"per_minute", "burst", NULL};
static const char *const prov_budget_keys[] = {"per_session_usd", "per_app_daily_usd", "global_daily_usd", NULL};

static int prov_parse_models(prov_ctx_t *c, const json_t *models, const char *prefix, provider_t *p)
{
    size_t n = json_object_size(models);
    if (n > PROV_MAX_MODELS) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: %smodels: at most %d models per provider, got %zu", c->path, prefix,
                    PROV_MAX_MODELS, n);
        return -1;
    }
    p->models = fig_calloc(n ? n : 1, sizeof(*p->models));
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)models, name, v) {
        char pk[96];
        if (!prov_valid_model_name(name)) {
            fig_err_set(c->err, FIG_E_CONFIG,
                        "%s: %smodels.%s: invalid model name (expected 1 to %d characters, no control characters)",
                        c->path, prefix, json_check_printable(name, pk, sizeof(pk)), PROV_MAX_MODEL_CHARS);
            return -1;
        }
        /* A model name is at most 200 characters of up to 4 bytes each. */
        char mprefix[1024];
        snprintf(mprefix, sizeof(mprefix), "%smodels.%s.", prefix, name);
        if (!json_is_object(v)) {
            fig_err_set(c->err, FIG_E_CONFIG, "%s: %smodels.%s: expected an object, got %s", c->path, prefix,
                        name, json_check_type_name(v));
            return -1;
        }
        if (prov_check_keys(c, v, prov_price_keys, mprefix) != 0)
            return -1;
        model_info_t *m = &p->models[p->n_models];
        memset(m, 0, sizeof(*m));
        int has_cached = 0, has_write = 0;
        if (prov_get_number(c, v, "input", mprefix, 0, PROV_MAX_PRICE, &m->input_usd_per_mtok, NULL) != 0 ||
            prov_get_number(c, v, "cached_input", mprefix, 0, PROV_MAX_PRICE, &m->cached_input_usd_per_mtok,
                            &has_cached) != 0 ||
            prov_get_number(c, v, "cache_write", mprefix, 0, PROV_MAX_PRICE, &m->cache_write_usd_per_mtok,
                            &has_write) != 0 ||
            prov_get_number(c, v, "output", mprefix, 0, PROV_MAX_PRICE, &m->output_usd_per_mtok, NULL) != 0)
            return -1;
        if (!has_cached)
            m->cached_input_usd_per_mtok = m->input_usd_per_mtok;
        if (!has_write)
            m->cache_write_usd_per_mtok = m->input_usd_per_mtok;
        m->name = fig_strdup(name);
        p->n_models++;
    }
    return 0;
}

static int prov_parse_provider(prov_ctx_t *c, providers_config_t *cfg, const char *name, const json_t *v)
{
    char pk[96];
    if (!prov_valid_name(name, strlen(name))) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: providers.%s: invalid provider name (expected [a-z0-9][a-z0-9_-]{0,31})",
                    c->path, json_check_printable(name, pk, sizeof(pk)));
        return -1;
    }
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "providers.%s.", name);
    if (!json_is_object(v)) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: providers.%s: expected an object, got %s", c->path, name,
                    json_check_type_name(v));
        return -1;
    }
    if (prov_check_keys(c, v, prov_provider_keys, prefix) != 0)
        return -1;

    const char *kind, *url, *env;
    if (prov_get_string(c, v, "kind", prefix, 1, "\"openai\" or \"anthropic\"", &kind) != 0)
        return -1;
    provider_kind_t k;
    if (strcmp(kind, "openai") == 0) {
        k = PROVIDER_OPENAI;
    } else if (strcmp(kind, "anthropic") == 0) {
        k = PROVIDER_ANTHROPIC;
    } else {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: %skind: expected \"openai\" or \"anthropic\", got \"%s\"", c->path,
                    prefix, json_check_printable(kind, pk, sizeof(pk)));
        return -1;
    }
    if (prov_get_string(c, v, "base_url", prefix, 1, "an http:// or https:// URL", &url) != 0)
        return -1;
    if (!prov_valid_url(url)) {
        fig_err_set(c->err, FIG_E_CONFIG,
                    "%s: %sbase_url: expected an http:// or https:// URL (at most %d bytes, no spaces or control "
                    "characters), got \"%s\"",
                    c->path, prefix, PROV_MAX_URL, json_check_printable(url, pk, sizeof(pk)));
        return -1;
    }
    if (prov_get_string(c, v, "api_key_env", prefix, 0, "an environment variable name", &env) != 0)
        return -1;
    if (env != NULL && !prov_valid_env_name(env)) {
        fig_err_set(c->err, FIG_E_CONFIG,
                    "%s: %sapi_key_env: expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got \"%s\"",
                    c->path, prefix, json_check_printable(env, pk, sizeof(pk)));
        return -1;
    }

    provider_t *p = prov_add(cfg, name, k);
    p->base_url = fig_strdup(url);
    if (env != NULL) {
        p->api_key_env = fig_strdup(env);
        p->api_key = prov_getenv(env);
    }

    json_t *t, *models;
    if (prov_get_object(c, v, "timeouts", prefix, prov_timeout_keys, &t) != 0)
        return -1;
    if (t != NULL) {
        char tp[96];
        snprintf(tp, sizeof(tp), "%stimeouts.", prefix);
        if (prov_get_long(c, t, "connect_ms", tp, 100, 3600000, &p->timeouts.connect_ms) != 0 ||
            prov_get_long(c, t, "first_token_ms", tp, 100, 3600000, &p->timeouts.first_token_ms) != 0 ||
            prov_get_long(c, t, "idle_ms", tp, 100, 3600000, &p->timeouts.idle_ms) != 0 ||
            prov_get_long(c, t, "total_ms", tp, 100, 3600000, &p->timeouts.total_ms) != 0)
            return -1;
    }
    if (prov_get_object(c, v, "models", prefix, NULL, &models) != 0)
        return -1;
    if (models != NULL && prov_parse_models(c, models, prefix, p) != 0)
        return -1;
    return 0;
}

static int prov_parse_rate_policy(prov_ctx_t *c, const json_t *rl, const char *key, rate_policy_t *out)
{
    json_t *v;
    if (prov_get_object(c, rl, key, "rate_limits.", prov_rate_policy_keys, &v) != 0)
        return -1;
    if (v == NULL)
        return 0;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "rate_limits.%s.", key);
    int has_burst = 0;
    if (prov_get_number(c, v, "per_minute", prefix, 0, PROV_MAX_RATE, &out->per_minute, NULL) != 0 ||
        prov_get_number(c, v, "burst", prefix, 1, PROV_MAX_RATE, &out->burst, &has_burst) != 0)
        return -1;
    if (!has_burst)
        out->burst = out->per_minute > 1 ? out->per_minute : 1;
    return 0;
}

static int prov_parse_policies(prov_ctx_t *c, const json_t *root, providers_config_t *cfg)
{
    json_t *v;
    if (prov_get_object(c, root, "retry", "", prov_retry_keys, &v) != 0)
        return -1;
    if (v != NULL) {
        if (prov_get_int(c, v, "max_attempts", "retry.", 1, 10, &cfg->retry.max_attempts) != 0 ||
            prov_get_long(c, v, "base_delay_ms", "retry.", 1, 600000, &cfg->retry.base_delay_ms) != 0 ||
            prov_get_long(c, v, "max_delay_ms", "retry.", 1, 600000, &cfg->retry.max_delay_ms) != 0)
            return -1;
        if (cfg->retry.base_delay_ms > cfg->retry.max_delay_ms) {
            fig_err_set(c->err, FIG_E_CONFIG,
                        "%s: retry.base_delay_ms: must not exceed retry.max_delay_ms (%ld), got %ld", c->path,
                        cfg->retry.max_delay_ms, cfg->retry.base_delay_ms);
            return -1;
        }
    }

    if (prov_get_object(c, root, "breaker", "", prov_breaker_keys, &v) != 0)
        return -1;
    if (v != NULL) {
        if (prov_get_int(c, v, "window", "breaker.", 1, 1000, &cfg->breaker.window) != 0)
            return -1;
        /* The default min_requests must fit a small window. */
        if (cfg->breaker.min_requests > cfg->breaker.window)
            cfg->breaker.min_requests = cfg->breaker.window;
        if (prov_get_int(c, v, "min_requests", "breaker.", 1, cfg->breaker.window, &cfg->breaker.min_requests) != 0 ||
            prov_get_long(c, v, "open_ms", "breaker.", 100, 3600000, &cfg->breaker.open_ms) != 0)
            return -1;
        json_t *r = json_object_get(v, "failure_ratio");
        if (r != NULL) {
            double d = json_is_number(r) ? json_number_value(r) : -1;
            if (!json_is_number(r) || !(d > 0 && d <= 1)) {
                if (json_is_number(r))
                    fig_err_set(c->err, FIG_E_CONFIG,
                                "%s: breaker.failure_ratio: expected a number above 0 and at most 1, got %g", c->path, d);
                else
                    fig_err_set(c->err, FIG_E_CONFIG,
                                "%s: breaker.failure_ratio: expected a number above 0 and at most 1, got %s", c->path,
                                json_check_type_name(r));
                return -1;
            }
            cfg->breaker.failure_ratio = d;
        }
    }

    if (prov_get_object(c, root, "hedge", "", prov_hedge_keys, &v) != 0)
        return -1;
    if (v != NULL) {
        json_t *a = json_object_get(v, "after_ms");
        if (a != NULL && json_is_string(a)) {
            if (strcmp(json_string_value(a), "p95") != 0) {
                char pk[64];
                fig_err_set(c->err, FIG_E_CONFIG,
                            "%s: hedge.after_ms: expected an integer from 0 to 600000 or \"p95\", got \"%s\"", c->path,
                            json_check_printable(json_string_value(a), pk, sizeof(pk)));
                return -1;
            }
            cfg->hedge.use_p95 = 1;
            cfg->hedge.after_ms = PROV_HEDGE_P95_FLOOR_MS;
        } else if (a != NULL && !json_is_integer(a)) {
            fig_err_set(c->err, FIG_E_CONFIG, "%s: hedge.after_ms: expected an integer from 0 to 600000 or \"p95\", got %s",
                        c->path, json_check_type_name(a));
            return -1;
        } else if (prov_get_long(c, v, "after_ms", "hedge.", 0, 600000, &cfg->hedge.after_ms) != 0) {
            return -1;
        }
    }

    if (prov_get_object(c, root, "rate_limits", "", prov_rate_keys, &v) != 0)
        return -1;
    if (v != NULL) {
        if (prov_parse_rate_policy(c, v, "per_session", &cfg->rate_limits.per_session) != 0 ||
            prov_parse_rate_policy(c, v, "per_ip", &cfg->rate_limits.per_ip) != 0 ||
            prov_parse_rate_policy(c, v, "per_app", &cfg->rate_limits.per_app) != 0 ||
            prov_get_int(c, v, "max_concurrent_upstream", "rate_limits.", 0, 100000,
                         &cfg->rate_limits.max_concurrent_upstream) != 0)
            return -1;
    }

    if (prov_get_object(c, root, "budgets", "", prov_budget_keys, &v) != 0)
        return -1;
    if (v != NULL) {
        if (prov_get_number(c, v, "per_session_usd", "budgets.", 0, PROV_MAX_BUDGET, &cfg->budgets.per_session_usd,
                            NULL) != 0 ||
            prov_get_number(c, v, "per_app_daily_usd", "budgets.", 0, PROV_MAX_BUDGET,
                            &cfg->budgets.per_app_daily_usd, NULL) != 0 ||
            prov_get_number(c, v, "global_daily_usd", "budgets.", 0, PROV_MAX_BUDGET, &cfg->budgets.global_daily_usd,
                            NULL) != 0)
            return -1;
    }
    return 0;
}

static int prov_parse_defaults(prov_ctx_t *c, const json_t *root, providers_config_t *cfg)
{
    json_t *d = json_object_get(root, "default_models");
    if (d == NULL) {
        for (size_t i = 0; i < cfg->n_providers && cfg->n_default_models < PROV_MAX_DEFAULT_MODELS; i++) {
            const provider_t *p = &cfg->providers[i];
            if (p->n_models > 0)
                prov_add_default(cfg, (model_ref_t){p, &p->models[0]});
        }
        if (cfg->n_providers > 0 && cfg->n_default_models == 0) {
            fig_err_set(c->err, FIG_E_CONFIG,
                        "%s: default_models: missing (required when no provider lists models; expected an array of 1 "
                        "to %d \"provider/model\" strings)",
                        c->path, PROV_MAX_DEFAULT_MODELS);
            return -1;
        }
        return 0;
    }
    if (!json_is_array(d)) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: default_models: expected an array of 1 to %d \"provider/model\" strings, "
                    "got %s", c->path, PROV_MAX_DEFAULT_MODELS, json_check_type_name(d));
        return -1;
    }
    if (json_array_size(d) < 1 || json_array_size(d) > PROV_MAX_DEFAULT_MODELS) {
        fig_err_set(c->err, FIG_E_CONFIG, "%s: default_models: expected an array of 1 to %d \"provider/model\" strings, "
                    "got %zu entries", c->path, PROV_MAX_DEFAULT_MODELS, json_array_size(d));
        return -1;
    }
    size_t i;
    json_t *e;
    json_array_foreach(d, i, e) {
        if (!json_is_string(e)) {
            fig_err_set(c->err, FIG_E_CONFIG, "%s: default_models[%zu]: expected a \"provider/model\" string, got %s",
                        c->path, i, json_check_type_name(e));
            return -1;
        }
        model_ref_t ref;
        fig_err_t rerr;
        if (providers_resolve(cfg, json_string_value(e), &ref, &rerr) != 0) {
            fig_err_set(c->err, FIG_E_CONFIG, "%s: default_models[%zu]: %s", c->path, i, rerr.msg);
            return -1;
        }
        prov_add_default(cfg, ref);
    }
    return 0;
}

int providers_parse_json(providers_config_t *out, const char *path, const char *text, fig_err_t *err)
{
    providers_config_t cfg;
    prov_config_default(&cfg);
    memset(out, 0, sizeof(*out));
    prov_ctx_t c = {path, err};

    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        fig_err_set(err, FIG_E_CONFIG, "%s: expected an object at the top level, got %s", path,
                    json_check_type_name(root));
        goto fail;
    }
    if (prov_check_keys(&c, root, prov_top_keys, "") != 0)
        goto fail;

    json_t *providers;
    if (prov_get_object(&c, root, "providers", "", NULL, &providers) != 0)
        goto fail;
    if (providers != NULL) {
        if (json_object_size(providers) > PROV_MAX_PROVIDERS) {
            fig_err_set(err, FIG_E_CONFIG, "%s: providers: at most %d providers, got %zu", path, PROV_MAX_PROVIDERS,
                        json_object_size(providers));
            goto fail;
        }
        const char *name;
        json_t *v;
        json_object_foreach(providers, name, v) {
            if (prov_parse_provider(&c, &cfg, name, v) != 0)
                goto fail;
        }
    }
    prov_finish_providers(&cfg);
    if (prov_parse_defaults(&c, root, &cfg) != 0 || prov_parse_policies(&c, root, &cfg) != 0)
        goto fail;

    json_decref(root);
    *out = cfg;
    return 0;

fail:
    json_decref(root);
    providers_free(&cfg);
    return -1;
}

/* ---- the environment ---- */

static int prov_from_env(providers_config_t *out, fig_err_t *err)
{
    providers_config_t cfg;
    prov_config_default(&cfg);
    memset(out, 0, sizeof(*out));

    static const struct {
        const char *name, *key_env, *url_env, *model_env, *def_url, *def_model;
        provider_kind_t kind;
        int base_url_enables; /* a base URL alone configures it (local OpenAI-compatible servers) */
    } envs[] = {
        {"openai", "OPENAI_API_KEY", "OPENAI_BASE_URL", "FIGMENT_MODEL", "https://api.openai.com/v1", "gpt-4o-mini",
         PROVIDER_OPENAI, 1},
        {"anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "FIGMENT_ANTHROPIC_MODEL", "https://api.anthropic.com",
         "claude-haiku-4-5", PROVIDER_ANTHROPIC, 0},
    };
    char *models[2] = {NULL, NULL};
    for (size_t i = 0; i < 2; i++) {
        char *key = prov_getenv(envs[i].key_env);
        char *url = prov_getenv(envs[i].url_env);
        if (key == NULL && (url == NULL || !envs[i].base_url_enables)) {
            free(url);
            continue;
        }
        if (url == NULL)
            url = fig_strdup(envs[i].def_url);
        char *model = prov_getenv(envs[i].model_env);
        if (model == NULL)
            model = fig_strdup(envs[i].def_model);
        char pk[96];
        const char *bad_env = NULL, *bad_val = NULL, *want = NULL;
        if (!prov_valid_url(url)) {
            bad_env = envs[i].url_env;
            bad_val = url;
            want = "an http:// or https:// URL without spaces or control characters";
        } else if (!prov_valid_model_name(model)) {
            bad_env = envs[i].model_env;
            bad_val = model;
            want = "a model name of 1 to 200 characters without control characters";
        }
        if (bad_env != NULL) {
            fig_err_set(err, FIG_E_CONFIG, "%s: expected %s, got \"%s\"", bad_env, want,
                        json_check_printable(bad_val, pk, sizeof(pk)));
            free(key);
            free(url);
            free(model);
            free(models[0]);
            providers_free(&cfg);
            return -1;
        }
        provider_t *p = prov_add(&cfg, envs[i].name, envs[i].kind);
        p->base_url = url;
        p->api_key_env = fig_strdup(envs[i].key_env);
        p->api_key = key;
        models[i] = model;
    }
    prov_finish_providers(&cfg);
    for (size_t i = 0; i < 2; i++) {
        if (models[i] == NULL)
            continue;
        fig_buf_t spec = FIG_BUF_INIT;
        fig_buf_appendf(&spec, "%s/%s", envs[i].name, models[i]);
        model_ref_t ref;
        int rc = providers_resolve(&cfg, spec.data, &ref, err);
        fig_buf_free(&spec);
        free(models[i]);
        models[i] = NULL;
        if (rc != 0) { /* cannot happen: the name was validated and the provider lists nothing */
            free(models[1]);
            providers_free(&cfg);
            return -1;
        }
        prov_add_default(&cfg, ref);
    }
    *out = cfg;
    return 0;
}

/* ---- public ---- */

int providers_load(const char *path, providers_config_t *out, fig_err_t *err)
{
    if (path == NULL)
        return prov_from_env(out, err);
    memset(out, 0, sizeof(*out));
    size_t len = 0;
    char *text = fs_read_file(path, PROV_MAX_FILE_BYTES, &len, NULL, FIG_E_CONFIG, err);
    if (text == NULL)
        return -1;
    if (memchr(text, '\0', len) != NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s: contains a NUL byte", path);
        free(text);
        return -1;
    }
    int rc = providers_parse_json(out, path, text, err);
    free(text);
    return rc;
}

void providers_free(providers_config_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->n_providers; i++) {
        provider_t *p = &cfg->providers[i];
        free(p->name);
        free(p->base_url);
        free(p->api_key_env);
        free(p->api_key);
        for (size_t j = 0; j < p->n_models; j++)
            free(p->models[j].name);
        free(p->models);
        if (p->unlisted != NULL) {
            for (size_t j = 0; j < p->unlisted->n; j++) {
                free(p->unlisted->items[j]->name);
                free(p->unlisted->items[j]);
            }
            free(p->unlisted->items);
            pthread_mutex_destroy(&p->unlisted->mu);
            free(p->unlisted);
        }
    }
    free(cfg->providers);
    free(cfg->default_models);
    memset(cfg, 0, sizeof(*cfg));
}

int providers_resolve(const providers_config_t *cfg, const char *spec, model_ref_t *out, fig_err_t *err)
{
    char pk[96];
    const char *slash = spec ? strchr(spec, '/') : NULL;
    if (slash == NULL || slash == spec || slash[1] == '\0') {
        fig_err_set(err, FIG_E_CONFIG, "expected \"provider/model\", got \"%s\"",
                    spec ? json_check_printable(spec, pk, sizeof(pk)) : "(null)");
        return -1;
    }
    size_t plen = (size_t)(slash - spec);
    const char *model = slash + 1;
    if (!prov_valid_name(spec, plen) || !prov_valid_model_name(model)) {
        fig_err_set(err, FIG_E_CONFIG,
                    "expected \"provider/model\" (provider [a-z0-9][a-z0-9_-]{0,31}, model 1 to %d characters), "
                    "got \"%s\"",
                    PROV_MAX_MODEL_CHARS, json_check_printable(spec, pk, sizeof(pk)));
        return -1;
    }
    const provider_t *p = NULL;
    for (size_t i = 0; i < cfg->n_providers; i++)
        if (strlen(cfg->providers[i].name) == plen && memcmp(cfg->providers[i].name, spec, plen) == 0)
            p = &cfg->providers[i];
    if (p == NULL) {
        fig_buf_t list = FIG_BUF_INIT;
        for (size_t i = 0; i < cfg->n_providers; i++)
            fig_buf_appendf(&list, "%s%s", i ? ", " : "", cfg->providers[i].name);
        fig_err_set(err, FIG_E_CONFIG, "unknown provider \"%.*s\" (configured: %s)", (int)plen, spec,
                    list.data ? list.data : "none");
        fig_buf_free(&list);
        return -1;
    }
    if (p->n_models > 0) {
        for (size_t i = 0; i < p->n_models; i++) {
            if (strcmp(p->models[i].name, model) == 0) {
                out->provider = p;
                out->model = &p->models[i];
                return 0;
            }
        }
        fig_buf_t list = FIG_BUF_INIT;
        for (size_t i = 0; i < p->n_models; i++)
            fig_buf_appendf(&list, "%s%s", i ? ", " : "", p->models[i].name);
        fig_err_set(err, FIG_E_CONFIG, "model \"%s\" is not listed under provider \"%s\" (listed: %s)",
                    json_check_printable(model, pk, sizeof(pk)), p->name, list.data);
        fig_buf_free(&list);
        return -1;
    }

    /* No list: any name, price 0, interned so the reference stays valid. */
    struct provider_unlisted *u = p->unlisted;
    if (u == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "provider \"%s\" lists no models", p->name);
        return -1;
    }
    int rc = 0;
    pthread_mutex_lock(&u->mu);
    const model_info_t *found = NULL;
    for (size_t i = 0; i < u->n && found == NULL; i++)
        if (strcmp(u->items[i]->name, model) == 0)
            found = u->items[i];
    if (found == NULL) {
        if (u->n >= PROV_MAX_UNLISTED) {
            fig_err_set(err, FIG_E_CONFIG, "provider \"%s\": more than %d distinct models in use (list them in "
                        "figment.json)", p->name, PROV_MAX_UNLISTED);
            rc = -1;
        } else {
            model_info_t *m = fig_calloc(1, sizeof(*m));
            m->name = fig_strdup(model);
            u->items = fig_realloc(u->items, (u->n + 1) * sizeof(*u->items));
            u->items[u->n++] = m;
            found = m;
        }
    }
    pthread_mutex_unlock(&u->mu);
    if (rc != 0)
        return -1;
    out->provider = p;
    out->model = found;
    return 0;
}

double providers_cost_usd(const model_info_t *m, const llm_usage_t *u)
{
    if (m == NULL || u == NULL)
        return 0;
    int64_t prompt = u->prompt_tokens > 0 ? u->prompt_tokens : 0;
    int64_t cached = u->cached_tokens > 0 ? u->cached_tokens : 0;
    int64_t write = u->cache_write_tokens > 0 ? u->cache_write_tokens : 0;
    int64_t completion = u->completion_tokens > 0 ? u->completion_tokens : 0;
    int64_t plain = prompt - cached - write;
    if (plain < 0)
        plain = 0;
    return ((double)plain * m->input_usd_per_mtok + (double)cached * m->cached_input_usd_per_mtok +
            (double)write * m->cache_write_usd_per_mtok + (double)completion * m->output_usd_per_mtok) /
           1e6;
}
