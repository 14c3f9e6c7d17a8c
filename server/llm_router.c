/*
 * llm_router.c — retries, fallbacks, breaker, timeouts and hedging around llm_call
 * (see llm_router.h for the policy).
 *
 * At most two attempts run at once (the primary and one hedge), in two slots.
 * Attempt timers (first token, idle) and route timers (retry backoff, hedge, the
 * deferred cancel of a hedge loser) live on the loop's timer set. Progress callbacks
 * run inside curl and may only set flags and timers; calls are cancelled from timer
 * callbacks or after curl has let go of the finished handle.
 */
#include "llm_router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm_call.h"
#include "metrics.h"

#define SLOTS 2
#define MAX_CHAIN 8

typedef struct {
    struct llm_route *route;
    int active;
    size_t model_idx;
    llm_call_t *call;
    llm_result_t result;
    int got_first;
    uint64_t started_ms;
    fig_timer_t first_token_timer;
    fig_timer_t idle_timer;
} attempt_t;

struct llm_route {
    llm_router_env_t *env;
    llm_route_request_t req;
    llm_result_t *result;
    llm_route_done_cb done;
    void *ctx;
    attempt_t slots[SLOTS];
    size_t next_model;     /* the next model of the chain not yet started */
    int tries[MAX_CHAIN];  /* attempts per chain position */
    int winner;            /* slot that streamed first, or -1 */
    int text_forwarded;    /* the caller has shown text: no retry or fallback may follow */
    size_t retry_model;
    fig_timer_t retry_timer;
    fig_timer_t hedge_timer;
    fig_timer_t cancel_timer;
    fig_err_t last_err;
    int64_t est_prompt_tokens;
    int starting;      /* inside llm_route_start(): finishing is deferred to its end */
    int finished;      /* finish() ran while starting */
    fig_err_t final_err;
    llm_route_report_t report;
};

static void start_attempt(llm_route_t *r, size_t model_idx);
static void try_next_model(llm_route_t *r);

static uint64_t now_ms(const llm_route_t *r)
{
    return h2o_now(r->env->loop);
}

static void note(llm_route_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(llm_route_t *r, const char *fmt, ...)
{
    size_t used = strlen(r->report.decision);
    if (used + 4 >= sizeof(r->report.decision))
        return;
    if (used > 0) {
        memcpy(r->report.decision + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->report.decision + used, sizeof(r->report.decision) - used, fmt, ap);
    va_end(ap);
}

static const model_ref_t *model_at(const llm_route_t *r, size_t idx)
{
    return &r->req.chain[idx];
}

static breaker_t *breaker_for(const llm_route_t *r, const provider_t *p)
{
    return r->env->breakers[p - r->env->providers->providers];
}

uint64_t llm_router_backoff_ms(const retry_policy_t *p, int retry, long retry_after_ms, uint64_t *rng)
{
    uint64_t cap = (uint64_t)p->base_delay_ms;
    for (int i = 0; i < retry && cap < (uint64_t)p->max_delay_ms; i++)
        cap *= 2;
    if (cap > (uint64_t)p->max_delay_ms)
        cap = (uint64_t)p->max_delay_ms;
    /* xorshift64* */
    uint64_t x = *rng ? *rng : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    uint64_t d = (x * 0x2545F4914F6CDD1Dull) % (cap + 1);
    if (retry_after_ms > 0 && d < (uint64_t)retry_after_ms)
        d = (uint64_t)retry_after_ms;
    return d;
}

static void attempt_stop_timers(llm_route_t *r, attempt_t *a)
{
    fig_timer_stop(r->env->timers, &a->first_token_timer);
    fig_timer_stop(r->env->timers, &a->idle_timer);
}

/* Ends an attempt that is still running (no callbacks afterwards); its prompt is
 * billed by the provider all the same, so an estimate is counted. */
static void attempt_abandon(llm_route_t *r, attempt_t *a)
{
    if (!a->active)
        return;
    attempt_stop_timers(r, a);
    llm_call_cancel(a->call);
    a->call = NULL;
    a->active = 0;
    const model_info_t *m = model_at(r, a->model_idx)->model;
    llm_usage_t est = {.prompt_tokens = r->est_prompt_tokens};
    r->report.cost_usd += providers_cost_usd(m, &est);
    llm_result_free(&a->result);
}

static int active_count(const llm_route_t *r)
{
    int n = 0;
    for (int i = 0; i < SLOTS; i++)
        n += r->slots[i].active;
    return n;
}

static void finish(llm_route_t *r, const fig_err_t *err)
{
    fig_timer_stop(r->env->timers, &r->retry_timer);
    fig_timer_stop(r->env->timers, &r->hedge_timer);
    fig_timer_stop(r->env->timers, &r->cancel_timer);
    for (int i = 0; i < SLOTS; i++) {
        if (r->slots[i].active) {
            const model_ref_t *m = model_at(r, r->slots[i].model_idx);
            note(r, "%s/%s: cancelled (%s)", m->provider->name, m->model->name,
                 err == NULL ? "lost the hedge" : "gave up");
        }
        attempt_abandon(r, &r->slots[i]);
    }
    if (r->starting) {
        r->finished = 1;
        if (err)
            r->final_err = *err;
        return;
    }
    r->done(r->ctx, err, &r->report);
    free(r);
}

static int is_retryable(const llm_call_timings_t *t, int got_first)
{
    if (got_first)
        return 0; /* mid-stream: fall back instead */
    switch (t->fail) {
    case LLM_FAIL_CONNECT:
    case LLM_FAIL_TIMEOUT:
    case LLM_FAIL_TRANSPORT:
        return 1;
    case LLM_FAIL_HTTP:
        return t->http_status == 408 || t->http_status == 409 || t->http_status == 429 || t->http_status >= 500;
    default:
        return 0;
    }
}

/* After a failed attempt: retry the same model, fall back, or give up. */
static void after_failure(llm_route_t *r, size_t model_idx, int retryable, long retry_after_ms)
{
    if (active_count(r) > 0)
        return; /* the other attempt is still running: it decides */
    if (r->text_forwarded) {
        /* part of this answer is already on the user's screen: another model's answer
         * cannot be spliced onto it */
        note(r, "no fallback: the page was already streaming");
        finish(r, &r->last_err);
        return;
    }
    const retry_policy_t *rp = &r->env->providers->retry;
    if (retryable && r->tries[model_idx] < rp->max_attempts) {
        uint64_t delay = llm_router_backoff_ms(rp, r->tries[model_idx] - 1, retry_after_ms, &r->env->rng);
        if (now_ms(r) + delay < r->req.deadline_ms) {
            note(r, "retry in %llu ms", (unsigned long long)delay);
            r->report.retries++;
            r->retry_model = model_idx;
            fig_timer_start(r->env->timers, &r->retry_timer, delay);
            return;
        }
        note(r, "no time left to wait %llu ms", (unsigned long long)delay);
    }
    try_next_model(r);
}

static void on_attempt_done(void *ctx, const fig_err_t *err, const llm_call_timings_t *t)
{
    attempt_t *a = ctx;
    llm_route_t *r = a->route;
    const model_ref_t *m = model_at(r, a->model_idx);
    a->call = NULL;
    a->active = 0;
    attempt_stop_timers(r, a);
    r->report.usage.prompt_tokens += a->result.usage.prompt_tokens;
    r->report.usage.cached_tokens += a->result.usage.cached_tokens;
    r->report.usage.cache_write_tokens += a->result.usage.cache_write_tokens;
    r->report.usage.completion_tokens += a->result.usage.completion_tokens;
    r->report.cost_usd += providers_cost_usd(m->model, &a->result.usage);
    breaker_record(breaker_for(r, m->provider), err == NULL, now_ms(r));

    if (err == NULL) {
        note(r, "%s/%s: ok", m->provider->name, m->model->name);
        r->report.model = *m;
        r->report.ttft_ms = t->first_byte_ms;
        r->report.connect_ms = t->connect_ms;
        breaker_observe_ttft(breaker_for(r, m->provider), t->first_byte_ms);
        /* the caller's result takes the winner's text, calls and usage */
        llm_result_free(r->result);
        void (*on_text)(void *, const char *, size_t) = r->result->on_text;
        void *on_text_ctx = r->result->on_text_ctx;
        *r->result = a->result;
        r->result->on_text = on_text;
        r->result->on_text_ctx = on_text_ctx;
        llm_result_init(&a->result);
        finish(r, NULL);
        return;
    }
    static const char *kinds[] = {"none", "connect", "timeout", "http", "protocol", "transport"};
    metrics_upstream_error(m->provider->name, kinds[t->fail]);
    if (t->fail == LLM_FAIL_HTTP)
        note(r, "%s/%s: HTTP %ld", m->provider->name, m->model->name, t->http_status);
    else
        note(r, "%s/%s: %s", m->provider->name, m->model->name,
             t->fail == LLM_FAIL_CONNECT ? "connect failed"
             : t->fail == LLM_FAIL_TIMEOUT ? "timed out"
             : t->fail == LLM_FAIL_PROTOCOL ? "bad stream" : "connection broke");
    r->last_err = *err;
    r->report.model = *m;
    int got_first = a->got_first;
    llm_result_free(&a->result);
    if (r->winner == a - r->slots)
        r->winner = -1;
    after_failure(r, a->model_idx, is_retryable(t, got_first), t->retry_after_ms);
}

/* A timer decided the attempt is dead (no first byte / stalled). */
static void attempt_timed_out(attempt_t *a, const char *what, long ms)
{
    llm_route_t *r = a->route;
    const model_ref_t *m = model_at(r, a->model_idx);
    int got_first = a->got_first;
    size_t model_idx = a->model_idx;
    attempt_stop_timers(r, a);
    llm_call_cancel(a->call);
    a->call = NULL;
    a->active = 0;
    llm_usage_t est = {.prompt_tokens = r->est_prompt_tokens};
    r->report.cost_usd += providers_cost_usd(m->model, &est);
    llm_result_free(&a->result);
    breaker_record(breaker_for(r, m->provider), 0, now_ms(r));
    metrics_upstream_error(m->provider->name, got_first ? "idle_timeout" : "first_token_timeout");
    note(r, "%s/%s: %s after %ld ms", m->provider->name, m->model->name, what, ms);
    fig_err_set(&r->last_err, FIG_E_UPSTREAM_TIMEOUT, "the model endpoint %s (%s after %ld ms)", m->provider->name,
                what, ms);
    r->report.model = *m;
    if (r->winner == a - r->slots)
        r->winner = -1;
    after_failure(r, model_idx, !got_first, -1);
}

static void on_first_token_timeout(fig_timer_t *t)
{
    attempt_t *a = H2O_STRUCT_FROM_MEMBER(attempt_t, first_token_timer, t);
    attempt_timed_out(a, "no first token", model_at(a->route, a->model_idx)->provider->timeouts.first_token_ms);
}

static void on_idle_timeout(fig_timer_t *t)
{
    attempt_t *a = H2O_STRUCT_FROM_MEMBER(attempt_t, idle_timer, t);
    attempt_timed_out(a, "stalled mid-stream", model_at(a->route, a->model_idx)->provider->timeouts.idle_ms);
}

static void on_cancel_losers(fig_timer_t *t)
{
    llm_route_t *r = H2O_STRUCT_FROM_MEMBER(llm_route_t, cancel_timer, t);
    for (int i = 0; i < SLOTS; i++) {
        if (i != r->winner && r->slots[i].active) {
            const model_ref_t *m = model_at(r, r->slots[i].model_idx);
            note(r, "%s/%s: cancelled (lost the hedge)", m->provider->name, m->model->name);
            breaker_record(breaker_for(r, m->provider), 1, now_ms(r)); /* not its fault */
            attempt_abandon(r, &r->slots[i]);
        }
    }
}

/* Text of an attempt, passed on to the caller only from the winner. */
static void on_attempt_text(void *ctx, const char *s, size_t n)
{
    attempt_t *a = ctx;
    llm_route_t *r = a->route;
    if (r->winner != (int)(a - r->slots) || r->result->on_text == NULL)
        return;
    r->text_forwarded = 1;
    r->result->on_text(r->result->on_text_ctx, s, n);
}

static void on_progress(void *ctx, int first)
{
    attempt_t *a = ctx;
    llm_route_t *r = a->route;
    const provider_t *p = model_at(r, a->model_idx)->provider;
    if (first) {
        a->got_first = 1;
        fig_timer_stop(r->env->timers, &a->first_token_timer);
        if (r->winner < 0) {
            r->winner = (int)(a - r->slots);
            fig_timer_stop(r->env->timers, &r->hedge_timer);
            if (active_count(r) > 1) /* cancel outside curl's callback */
                fig_timer_start(r->env->timers, &r->cancel_timer, 0);
        }
    }
    fig_timer_start(r->env->timers, &a->idle_timer, (uint64_t)p->timeouts.idle_ms);
}

static void on_hedge(fig_timer_t *t)
{
    llm_route_t *r = H2O_STRUCT_FROM_MEMBER(llm_route_t, hedge_timer, t);
    if (r->winner >= 0 || active_count(r) != 1 || r->next_model >= r->req.n_chain)
        return;
    r->report.hedges++;
    note(r, "hedge");
    try_next_model(r);
}

static void on_retry(fig_timer_t *t)
{
    llm_route_t *r = H2O_STRUCT_FROM_MEMBER(llm_route_t, retry_timer, t);
    start_attempt(r, r->retry_model);
}

static long hedge_delay_ms(llm_route_t *r, const provider_t *p)
{
    const hedge_policy_t *h = &r->env->providers->hedge;
    long d = h->after_ms;
    if (h->use_p95) {
        double p95 = breaker_ttft_p95(breaker_for(r, p));
        if (p95 > d)
            d = (long)p95;
    }
    return d;
}

static void start_attempt(llm_route_t *r, size_t model_idx)
{
    const model_ref_t *m = model_at(r, model_idx);
    uint64_t now = now_ms(r);
    if (now >= r->req.deadline_ms) {
        fig_err_set(&r->last_err, FIG_E_UPSTREAM_TIMEOUT, "the interaction's deadline passed");
        note(r, "deadline");
        finish(r, &r->last_err);
        return;
    }
    attempt_t *a = NULL;
    for (int i = 0; i < SLOTS; i++)
        if (!r->slots[i].active)
            a = &r->slots[i];
    if (a == NULL)
        return; /* cannot happen: at most two attempts run */
    memset(a, 0, sizeof(*a));
    a->route = r;
    a->model_idx = model_idx;
    a->started_ms = now;
    a->first_token_timer.cb = on_first_token_timeout;
    a->idle_timer.cb = on_idle_timeout;
    llm_result_init(&a->result);
    if (r->result->on_text != NULL) {
        a->result.on_text = on_attempt_text;
        a->result.on_text_ctx = a;
    }
    r->tries[model_idx]++;
    r->report.attempts++;

    const provider_t *p = m->provider;
    long left = (long)(r->req.deadline_ms - now);
    llm_endpoint_t ep = {p->base_url, p->api_key};
    llm_request_t lreq = {
        .model = m->model->name,
        .system = r->req.system,
        .tools = r->req.tools,
        .messages = r->req.messages,
        .max_tokens = r->req.max_tokens,
        .stream = 1,
    };
    llm_call_opts_t opts = {
        .provider = p->impl,
        .endpoint = &ep,
        .request = &lreq,
        .result = &a->result,
        .connect_timeout_ms = p->timeouts.connect_ms < left ? p->timeouts.connect_ms : left,
        .total_timeout_ms = p->timeouts.total_ms < left ? p->timeouts.total_ms : left,
        .on_progress = on_progress,
    };
    fig_err_t err;
    fig_err_clear(&err);
    a->active = 1;
    a->call = llm_call_start(r->env->http, &opts, on_attempt_done, a, &err);
    if (a->call == NULL) {
        a->active = 0;
        llm_result_free(&a->result);
        note(r, "%s/%s: %s", p->name, m->model->name, err.msg);
        r->last_err = err;
        breaker_record(breaker_for(r, p), 0, now);
        after_failure(r, model_idx, 0, -1);
        return;
    }
    fig_timer_start(r->env->timers, &a->first_token_timer, (uint64_t)p->timeouts.first_token_ms);
    long hd = hedge_delay_ms(r, p);
    if (hd > 0 && r->winner < 0 && r->next_model < r->req.n_chain && !fig_timer_is_active(&r->hedge_timer))
        fig_timer_start(r->env->timers, &r->hedge_timer, (uint64_t)hd);
}

static void try_next_model(llm_route_t *r)
{
    while (r->next_model < r->req.n_chain) {
        size_t idx = r->next_model++;
        const model_ref_t *m = model_at(r, idx);
        if (idx > 0)
            r->report.fallbacks++;
        if (!breaker_allow(breaker_for(r, m->provider), now_ms(r))) {
            note(r, "%s/%s: skipped (circuit open)", m->provider->name, m->model->name);
            if (r->last_err.code == FIG_OK)
                fig_err_set(&r->last_err, FIG_E_UPSTREAM, "the model endpoint %s is failing (circuit breaker open)",
                            m->provider->name);
            r->report.model = *m;
            continue;
        }
        start_attempt(r, idx);
        return;
    }
    if (active_count(r) > 0 || fig_timer_is_active(&r->retry_timer))
        return;
    if (r->last_err.code == FIG_OK)
        fig_err_set(&r->last_err, FIG_E_UPSTREAM, "no model is available for this page");
    finish(r, &r->last_err);
}

llm_route_t *llm_route_start(llm_router_env_t *env, const llm_route_request_t *req, llm_result_t *result,
                             llm_route_done_cb done, void *ctx)
{
    llm_route_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->env = env;
    r->req = *req;
    if (r->req.n_chain > MAX_CHAIN)
        r->req.n_chain = MAX_CHAIN;
    r->result = result;
    r->done = done;
    r->ctx = ctx;
    r->winner = -1;
    r->retry_timer.cb = on_retry;
    r->hedge_timer.cb = on_hedge;
    r->cancel_timer.cb = on_cancel_losers;
    char *msgs = json_dumps(req->messages, JSON_COMPACT);
    char *tools = req->tools ? json_dumps(req->tools, JSON_COMPACT) : NULL;
    r->est_prompt_tokens = (int64_t)((strlen(req->system ? req->system : "") + (msgs ? strlen(msgs) : 0) +
                                      (tools ? strlen(tools) : 0) + 3) / 4);
    free(msgs);
    free(tools);
    r->starting = 1;
    if (r->req.n_chain == 0) {
        fig_err_set(&r->last_err, FIG_E_UNAVAILABLE, "no model is configured for this page");
        finish(r, &r->last_err);
    } else {
        try_next_model(r);
    }
    r->starting = 0;
    if (r->finished) { /* nothing could be started: report now, after the set-up */
        r->done(r->ctx, r->final_err.code != FIG_OK ? &r->final_err : NULL, &r->report);
        free(r);
        return NULL;
    }
    return r;
}

void llm_route_cancel(llm_route_t *r)
{
    if (r == NULL)
        return;
    fig_timer_stop(r->env->timers, &r->retry_timer);
    fig_timer_stop(r->env->timers, &r->hedge_timer);
    fig_timer_stop(r->env->timers, &r->cancel_timer);
    for (int i = 0; i < SLOTS; i++)
        attempt_abandon(r, &r->slots[i]);
    free(r);
}
