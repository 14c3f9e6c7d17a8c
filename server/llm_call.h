/*
 * llm_call.h — one request to a language model, run on the event loop: the provider
 * (llm.h) builds it and parses the answer, http_client.h carries it.
 *
 * The result (text, tool calls, usage) fills the caller's llm_result_t; on_done runs
 * once with NULL on success or an error (FIG_E_UPSTREAM: refused, HTTP 4xx/5xx,
 * malformed or truncated answer; FIG_E_UPSTREAM_TIMEOUT: deadline). Timings are
 * reported so the interaction can record them in one place.
 *
 * Ownership: the llm_call_t is freed by the module after on_done or by
 * llm_call_cancel(); the caller owns `result` and must keep it alive until then.
 */
#ifndef FIG_LLM_CALL_H
#define FIG_LLM_CALL_H

#include "error.h"
#include "http_client.h"
#include "llm.h"

typedef struct llm_call llm_call_t;

/* How a call failed, for retry and fallback decisions (llm_router.c). */
typedef enum {
    LLM_FAIL_NONE = 0,
    LLM_FAIL_CONNECT,   /* refused, unresolvable, connect timeout */
    LLM_FAIL_TIMEOUT,   /* the total timeout */
    LLM_FAIL_HTTP,      /* a non-2xx status (see http_status) */
    LLM_FAIL_PROTOCOL,  /* malformed or truncated answer */
    LLM_FAIL_TRANSPORT, /* the connection broke otherwise */
} llm_fail_kind_t;

typedef struct {
    llm_fail_kind_t fail;
    double connect_ms;
    double first_byte_ms; /* time to first token, as the transport sees it */
    double total_ms;
    long http_status;
    long retry_after_ms; /* from a Retry-After header, or -1 */
    size_t body_bytes;   /* 2xx response bytes received */
} llm_call_timings_t;

typedef void (*llm_call_done_cb)(void *ctx, const fig_err_t *err, const llm_call_timings_t *timings);
/* Called for every chunk of a 2xx answer (first == 1 on the first): drives first-token
 * and idle timers and hedging. Runs inside curl: it must not start or cancel calls. */
typedef void (*llm_call_progress_cb)(void *ctx, int first);

typedef struct {
    const llm_provider_t *provider;
    const llm_endpoint_t *endpoint;
    const llm_request_t *request;
    llm_result_t *result;
    long connect_timeout_ms;
    long total_timeout_ms; /* the time left in the interaction's deadline */
    llm_call_progress_cb on_progress; /* optional */
} llm_call_opts_t;

/* Returns NULL (and calls nothing) when the request cannot be built; err says why. */
llm_call_t *llm_call_start(http_client_t *client, const llm_call_opts_t *opts, llm_call_done_cb cb, void *ctx,
                           fig_err_t *err);
void llm_call_cancel(llm_call_t *call);

#endif
