/*
 * llm_router.h — one model answer, resiliently: a fallback chain of models, retries
 * with exponential backoff and full jitter (honouring Retry-After), a circuit
 * breaker per provider, first-token and idle timeouts, and hedged requests.
 *
 * Policy (providers.h): an attempt that fails before its first byte with a connect
 * error, a timeout, or HTTP 408/409/429/5xx is retried on the same model, at most
 * retry.max_attempts times in all, while the deadline allows the wait. Any other
 * failure — a 4xx, a malformed or truncated stream, a stall mid-stream — falls back
 * to the next model in the chain. An open breaker skips its provider at once. With
 * hedging on, when the running attempt has no first byte after hedge.after_ms (or
 * the provider's observed p95 time to first token), the next model starts too; the
 * first to stream wins and the other is cancelled, its cost still counted (the prompt
 * at the input price, estimated, since a cancelled call reports no usage).
 *
 * No retry happens once the caller has committed page bytes to the browser: the
 * caller simply does not start a new route then (progressive streaming, later).
 *
 * Ownership: the caller keeps the request's strings and JSON and `result` alive until
 * the done callback has run or llm_route_cancel() returned. The route frees itself.
 */
#ifndef FIG_LLM_ROUTER_H
#define FIG_LLM_ROUTER_H

#include <jansson.h>
#include <stdint.h>

#include "breaker.h"
#include "error.h"
#include "http_client.h"
#include "llm.h"
#include "providers.h"
#include "timer.h"

typedef struct {
    h2o_loop_t *loop;
    http_client_t *http;
    timer_set_t *timers;
    const providers_config_t *providers;
    breaker_t *const *breakers; /* one per provider, same index as providers->providers */
    uint64_t rng;               /* per-thread jitter state */
} llm_router_env_t;

typedef struct {
    const model_ref_t *chain;
    size_t n_chain;
    const char *system;
    const json_t *tools;
    const json_t *messages;
    int max_tokens;
    uint64_t deadline_ms; /* absolute, on h2o_now()'s clock */
} llm_route_request_t;

typedef struct {
    model_ref_t model;    /* the model that answered, or the last one tried */
    int attempts;         /* upstream calls started */
    int retries;
    int fallbacks;
    int hedges;
    llm_usage_t usage;    /* every attempt that reported usage, summed */
    double cost_usd;      /* all attempts, including estimated cost of cancelled ones */
    double ttft_ms;       /* the winning attempt's time to first byte */
    double connect_ms;
    char decision[512];   /* the path taken, e.g. "openai/gpt-4o-mini: HTTP 500; retry; openai/gpt-4o-mini: ok" */
} llm_route_report_t;

typedef void (*llm_route_done_cb)(void *ctx, const fig_err_t *err, const llm_route_report_t *report);

typedef struct llm_route llm_route_t;

/* Starts the route; done runs exactly once (possibly before this returns NULL when
 * nothing could be started), unless llm_route_cancel() is called first. */
llm_route_t *llm_route_start(llm_router_env_t *env, const llm_route_request_t *req, llm_result_t *result,
                             llm_route_done_cb done, void *ctx);
void llm_route_cancel(llm_route_t *r);

/* Full-jitter backoff: uniform in [0, min(max, base * 2^retry)], at least retry_after_ms. */
uint64_t llm_router_backoff_ms(const retry_policy_t *p, int retry, long retry_after_ms, uint64_t *rng);

#endif
