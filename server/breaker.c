/*
 * breaker.c — a circuit breaker per provider endpoint and its time-to-first-token
 * distribution (see breaker.h).
 *
 * Design:
 * - Outcomes live in a ring buffer of policy.window bytes with a running failure
 *   count, so recording is O(1) and the ratio needs no rescan.
 * - Open -> half-open happens lazily on the next allow/state call once open_ms has
 *   passed; no timer. Half-open hands out a single probe slot; the next recorded
 *   outcome is taken as the probe's. (The API carries no call token, so a late
 *   outcome of a call admitted while closed can stand in for the probe; both say
 *   something true about the endpoint's health, so that is accepted.)
 * - Outcomes reported while open are dropped: they belong to calls admitted before
 *   the breaker opened and must not reopen or extend it.
 * - Opening and closing clear the window: each closed period judges the endpoint
 *   afresh.
 * - TTFT: a ring of the last 256 samples; p95 sorts a copy (256 doubles: cheap,
 *   and it only runs when a hedge decision needs it), nearest-rank definition.
 */
#include "breaker.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define BREAKER_TTFT_SAMPLES 256
#define BREAKER_TTFT_MIN_SAMPLES 20

struct breaker {
    pthread_mutex_t mu;
    breaker_policy_t policy;
    breaker_state_t state;
    unsigned char *ring; /* 1 = failure */
    int head, count, failures;
    uint64_t opened_at;
    int probe_in_flight;
    double ttft[BREAKER_TTFT_SAMPLES];
    int ttft_head, ttft_count;
};

static void breaker_clear_window(breaker_t *b)
{
    b->head = b->count = b->failures = 0;
}

static void breaker_open(breaker_t *b, uint64_t now_ms)
{
    b->state = BREAKER_OPEN;
    b->opened_at = now_ms;
    b->probe_in_flight = 0;
    breaker_clear_window(b);
}

/* Open -> half-open once open_ms has passed (a clock stepping back waits longer). */
static void breaker_tick(breaker_t *b, uint64_t now_ms)
{
    if (b->state == BREAKER_OPEN && now_ms >= b->opened_at && now_ms - b->opened_at >= (uint64_t)b->policy.open_ms) {
        b->state = BREAKER_HALF_OPEN;
        b->probe_in_flight = 0;
    }
}

breaker_t *breaker_create(const breaker_policy_t *policy)
{
    breaker_t *b = fig_calloc(1, sizeof(*b));
    pthread_mutex_init(&b->mu, NULL);
    breaker_policy_t p = {20, 5, 0.5, 30000};
    if (policy != NULL)
        p = *policy;
    /* Keep the invariants providers.c validates, whatever the caller passes. */
    if (p.window < 1)
        p.window = 1;
    if (p.window > 1000)
        p.window = 1000;
    if (p.min_requests < 1)
        p.min_requests = 1;
    if (p.min_requests > p.window)
        p.min_requests = p.window;
    if (!(p.failure_ratio > 0) || p.failure_ratio > 1)
        p.failure_ratio = p.failure_ratio > 1 ? 1 : 0.5;
    if (p.open_ms < 0)
        p.open_ms = 0;
    b->policy = p;
    b->ring = fig_calloc((size_t)p.window, 1);
    b->state = BREAKER_CLOSED;
    return b;
}

void breaker_free(breaker_t *b)
{
    if (b == NULL)
        return;
    free(b->ring);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

int breaker_allow(breaker_t *b, uint64_t now_ms)
{
    int ok = 0;
    pthread_mutex_lock(&b->mu);
    breaker_tick(b, now_ms);
    switch (b->state) {
    case BREAKER_CLOSED:
        ok = 1;
        break;
    case BREAKER_OPEN:
        ok = 0;
        break;
    case BREAKER_HALF_OPEN:
        if (!b->probe_in_flight) {
            b->probe_in_flight = 1;
            ok = 1;
        }
        break;
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void breaker_record(breaker_t *b, int success, uint64_t now_ms)
{
    pthread_mutex_lock(&b->mu);
    breaker_tick(b, now_ms);
    switch (b->state) {
    case BREAKER_OPEN:
        break; /* a straggler from before the breaker opened */
    case BREAKER_HALF_OPEN:
        if (!b->probe_in_flight)
            break; /* a straggler: the probe slot was not handed out */
        if (success) {
            b->state = BREAKER_CLOSED;
            b->probe_in_flight = 0;
            breaker_clear_window(b);
        } else {
            breaker_open(b, now_ms);
        }
        break;
    case BREAKER_CLOSED: {
        int w = b->policy.window;
        if (b->count == w) {
            /* The slot at head holds the oldest outcome: it leaves the window. */
            b->failures -= b->ring[b->head];
        } else {
            b->count++;
        }
        b->ring[b->head] = success ? 0 : 1;
        b->failures += b->ring[b->head];
        b->head = (b->head + 1) % w;
        if (b->count >= b->policy.min_requests &&
            (double)b->failures / (double)b->count >= b->policy.failure_ratio)
            breaker_open(b, now_ms);
        break;
    }
    }
    pthread_mutex_unlock(&b->mu);
}

breaker_state_t breaker_state(breaker_t *b, uint64_t now_ms)
{
    pthread_mutex_lock(&b->mu);
    breaker_tick(b, now_ms);
    breaker_state_t s = b->state;
    pthread_mutex_unlock(&b->mu);
    return s;
}

const char *breaker_state_name(breaker_state_t s)
{
    switch (s) {
    case BREAKER_CLOSED: return "closed";
    case BREAKER_OPEN: return "open";
    case BREAKER_HALF_OPEN: return "half_open";
    }
    return "unknown";
}

void breaker_observe_ttft(breaker_t *b, double ms)
{
    if (!isfinite(ms) || ms < 0)
        return;
    pthread_mutex_lock(&b->mu);
    b->ttft[b->ttft_head] = ms;
    b->ttft_head = (b->ttft_head + 1) % BREAKER_TTFT_SAMPLES;
    if (b->ttft_count < BREAKER_TTFT_SAMPLES)
        b->ttft_count++;
    pthread_mutex_unlock(&b->mu);
}

static int breaker_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double breaker_ttft_p95(breaker_t *b)
{
    double copy[BREAKER_TTFT_SAMPLES];
    pthread_mutex_lock(&b->mu);
    int n = b->ttft_count;
    memcpy(copy, b->ttft, sizeof(double) * (size_t)n); /* the first n slots are the filled ones */
    pthread_mutex_unlock(&b->mu);
    if (n < BREAKER_TTFT_MIN_SAMPLES)
        return -1;
    qsort(copy, (size_t)n, sizeof(double), breaker_cmp_double);
    int rank = (95 * n + 99) / 100; /* nearest rank: ceil(0.95 n) */
    return copy[rank - 1];
}
