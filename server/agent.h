/*
 * agent.h — the agent loop: one interaction from loaded session to sent page.
 *
 *   load session (worker) -> ask the model -> [run the tools it calls, ask again]*
 *   -> render and sanitize the page -> save session (worker) -> respond
 *
 * Bounded: at most app.limits.max_tool_rounds rounds and app.limits.deadline_ms in
 * all. A tool's failure goes back to the model as the tool's result; the model's or
 * the endpoint's failure becomes an error page (502, or 504 on the deadline) and the
 * session is left untouched.
 *
 * An agent_env_t is per loop thread: it holds what the loop thread owns (the HTTP
 * client, its worker receiver) and what it borrows (config, worker pool, key).
 */
#ifndef FIG_AGENT_H
#define FIG_AGENT_H

#include "budget.h"
#include "http_client.h"
#include "interaction.h"
#include "llm.h"
#include "llm_router.h"
#include "otlp.h"
#include "page_cache.h"
#include "ratelimit.h"
#include "session_cache.h"
#include "session_writer.h"
#include "trace.h"
#include "worker.h"

typedef struct agent_env {
    worker_pool_t *workers;
    worker_pool_t *sandbox;           /* run_code runs here; its size is the concurrency cap */
    const char *var_dir;              /* uploads live under <var_dir>/uploads */
    page_cache_t *page_cache;         /* shared, thread-safe; NULL = no app caches pages */
    h2o_multithread_receiver_t *cache_receiver; /* this loop's page-cache wake-ups */
    h2o_multithread_receiver_t *receiver;
    llm_router_env_t router;          /* this thread's HTTP client and timers, shared breakers */
    budget_t *budget;                 /* shared, thread-safe */
    session_cache_t *session_cache;   /* shared, thread-safe */
    session_writer_t *session_writer; /* shared: commits session saves behind the answer */
    concurrency_cap_t *upstream_cap;  /* shared, thread-safe */
    trace_writer_t *traces;           /* shared, thread-safe; NULL = no traces */
    otlp_exporter_t *otlp;            /* shared, thread-safe; NULL = no export */
    const uint8_t *session_key;       /* for the CSRF token of the feedback form */
    int in_flight;                    /* this loop's interactions not yet answered (for draining) */
    int quiet;
    /* Sends the response for ix (status, ix->page, cookie) if the client is still there. */
    void (*respond)(interaction_t *ix, int status);
    /* Progressive pages (http_front.c): start the streamed shell if the client wants
     * one (sets ix->stream); append page bytes (from_callback: inside curl). */
    void (*stream_begin)(interaction_t *ix);
    void (*stream_write)(interaction_t *ix, const char *data, size_t len, int from_callback);
} agent_env_t;

/* Takes over ix (the caller's reference belongs to the request). */
void agent_start(interaction_t *ix);
/* The model chain for an interaction: the first app.json routing rule that matches,
 * else the app's chain. Sets ix->chain and ix->rec.route_rule. */
void agent_choose_models(interaction_t *ix);
/* Releases an interaction's parallel attempts (the parent's) or its attempt state (a
 * child's); called when the interaction is freed. */
void agent_attempts_free(interaction_t *ix);
void agent_attempt_free(interaction_t *ix);
/* The client went away: cancel the model call in flight. */
void agent_abandon(interaction_t *ix);

#endif
