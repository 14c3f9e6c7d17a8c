/*
 * providers.h — which language models figment may call, at what price, and how
 * hard it tries: providers and models from figment.json (or the environment for
 * the simple case), retry, circuit-breaker and hedging policies, rate limits and
 * budgets. Parsed once at start, validated strictly (errors name the key), then
 * immutable and shared by all threads.
 *
 * figment.json (every key optional except providers[*].kind and base_url):
 * {
 *   "providers": {
 *     "openai":    {"kind": "openai", "base_url": "https://api.openai.com/v1",
 *                   "api_key_env": "OPENAI_API_KEY",
 *                   "timeouts": {"connect_ms": 5000, "first_token_ms": 30000,
 *                                "idle_ms": 20000, "total_ms": 120000},
 *                   "models": {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60}}},
 *     "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com",
 *                   "api_key_env": "ANTHROPIC_API_KEY",
 *                   "models": {"claude-haiku-4-5": {"input": 1.0, "cached_input": 0.1,
 *                                                   "cache_write": 1.25, "output": 5.0}}}
 *   },
 *   "default_models": ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"],
 *   "retry":   {"max_attempts": 3, "base_delay_ms": 250, "max_delay_ms": 4000},
 *   "breaker": {"window": 20, "min_requests": 5, "failure_ratio": 0.5, "open_ms": 30000},
 *   "hedge":   {"after_ms": 0},          (0 = off; "p95" = the provider's observed p95 TTFT)
 *   "rate_limits": {"per_session": {"per_minute": 60, "burst": 20},
 *                   "per_ip":      {"per_minute": 120, "burst": 40},
 *                   "per_app":     {"per_minute": 600, "burst": 100},
 *                   "max_concurrent_upstream": 256},
 *   "budgets": {"per_session_usd": 0.50, "per_app_daily_usd": 20, "global_daily_usd": 100}
 * }
 * Prices are USD per million tokens. "cached_input" defaults to "input", "cache_write"
 * to "input". A model is named "provider/model" everywhere else (app.json routing).
 * Limits and budgets of 0 (or absent) mean unlimited.
 *
 * Without figment.json the environment defines one provider, as before:
 * OPENAI_API_KEY / OPENAI_BASE_URL / FIGMENT_MODEL make provider "openai" (kind openai)
 * with that model (price 0: unknown), and ANTHROPIC_API_KEY (+ ANTHROPIC_BASE_URL,
 * FIGMENT_ANTHROPIC_MODEL, default claude-haiku-4-5) adds provider "anthropic".
 * default_models is then [openai model] (+ [anthropic model] as the fallback).
 *
 * Ownership: providers_load() fills a caller-provided struct that owns everything;
 * providers_free() releases it. model_ref_t values point into it.
 */
#ifndef FIG_PROVIDERS_H
#define FIG_PROVIDERS_H

#include <stddef.h>

#include "error.h"
#include "llm.h"

typedef enum { PROVIDER_OPENAI = 0, PROVIDER_ANTHROPIC } provider_kind_t;

typedef struct {
    char *name;
    double input_usd_per_mtok;
    double cached_input_usd_per_mtok;
    double cache_write_usd_per_mtok;
    double output_usd_per_mtok;
} model_info_t;

typedef struct {
    long connect_ms;     /* default 10000 */
    long first_token_ms; /* default 60000: from request start to the first response byte */
    long idle_ms;        /* default 30000: longest gap between response bytes */
    long total_ms;       /* default 300000: one attempt; the interaction deadline also applies */
} provider_timeouts_t;

typedef struct {
    char *name;
    provider_kind_t kind;
    const llm_provider_t *impl; /* &llm_provider_openai or &llm_provider_anthropic */
    char *base_url;
    char *api_key_env;
    char *api_key;              /* resolved from api_key_env at load; NULL when unset */
    provider_timeouts_t timeouts;
    model_info_t *models;
    size_t n_models;
    /* Internal to providers.c: models resolved by name for a provider that lists
     * none (price 0), kept so model_ref_t pointers stay valid; freed by providers_free. */
    struct provider_unlisted *unlisted;
} provider_t;

typedef struct {
    const provider_t *provider;
    const model_info_t *model;
} model_ref_t;

typedef struct {
    int max_attempts;   /* per model in the chain, default 3 (1 = no retry) */
    long base_delay_ms; /* default 250 */
    long max_delay_ms;  /* default 4000 */
} retry_policy_t;

typedef struct {
    int window;           /* outcomes remembered per endpoint, default 20 */
    int min_requests;     /* before the ratio counts, default 5 */
    double failure_ratio; /* open at or above, default 0.5 */
    long open_ms;         /* stay open, then half-open, default 30000 */
} breaker_policy_t;

typedef struct {
    long after_ms; /* start the next model if no first byte after this; 0 = off */
    int use_p95;   /* "p95": after_ms is the provider's observed p95 TTFT (after_ms = floor) */
} hedge_policy_t;

typedef struct {
    double per_minute; /* 0 = unlimited */
    double burst;      /* bucket size, default = per_minute */
} rate_policy_t;

typedef struct {
    rate_policy_t per_session, per_ip, per_app;
    int max_concurrent_upstream; /* 0 = unlimited */
} rate_limits_t;

typedef struct {
    double per_session_usd;
    double per_app_daily_usd;
    double global_daily_usd;
} budgets_t;

typedef struct {
    provider_t *providers;
    size_t n_providers;
    model_ref_t *default_models;
    size_t n_default_models;
    retry_policy_t retry;
    breaker_policy_t breaker;
    hedge_policy_t hedge;
    rate_limits_t rate_limits;
    budgets_t budgets;
    int configured; /* at least one provider */
} providers_config_t;

/* path: figment.json, or NULL to use the environment only. A missing file at an
 * explicit path is an error. Messages name the file and key, e.g.
 * "figment.json: providers.openai.timeouts.idle_ms: expected an integer from 100 to 3600000". */
int providers_load(const char *path, providers_config_t *out, fig_err_t *err);
/* Parses a figment.json text (unit tests); getenv is used for api_key_env. */
int providers_parse_json(providers_config_t *out, const char *path, const char *text, fig_err_t *err);
void providers_free(providers_config_t *cfg);

/* "provider/model" -> reference. A model not listed under its provider is accepted
 * with price 0 only when the provider lists no models at all; otherwise an error. */
int providers_resolve(const providers_config_t *cfg, const char *spec, model_ref_t *out, fig_err_t *err);

/* USD for usage at the model's prices (cached tokens at the cached price, cache
 * writes at the cache-write price, the rest of the prompt at the input price). */
double providers_cost_usd(const model_info_t *m, const llm_usage_t *u);

#endif
