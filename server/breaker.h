/*
 * breaker.h — a circuit breaker per provider endpoint, and the endpoint's observed
 * time-to-first-token distribution (for hedging).
 *
 * Closed: calls flow; outcomes fill a sliding window of the last policy.window calls.
 * When at least min_requests are in the window and the failure ratio reaches
 * failure_ratio, the breaker opens. Open: calls are refused (the caller falls back
 * at once) until open_ms has passed, then half-open. Half-open: exactly one probe
 * call is allowed at a time; its success closes the breaker (window cleared), its
 * failure opens it again for open_ms.
 *
 * Time is passed in (monotonic ms). Thread-safe (a mutex per breaker).
 * Ownership: breaker_create() returns an object freed by breaker_free().
 */
#ifndef FIG_BREAKER_H
#define FIG_BREAKER_H

#include <stdint.h>

#include "providers.h"

typedef enum { BREAKER_CLOSED = 0, BREAKER_OPEN, BREAKER_HALF_OPEN } breaker_state_t;

typedef struct breaker breaker_t;

breaker_t *breaker_create(const breaker_policy_t *policy);
void breaker_free(breaker_t *b);
/* 1: go ahead (in half-open this takes the single probe slot); 0: refused. */
int breaker_allow(breaker_t *b, uint64_t now_ms);
/* Every allowed call must report exactly one outcome. */
void breaker_record(breaker_t *b, int success, uint64_t now_ms);
breaker_state_t breaker_state(breaker_t *b, uint64_t now_ms);
const char *breaker_state_name(breaker_state_t s);

/* TTFT samples (ms) of successful calls, last 256; p95 of them, or -1 with fewer than 20. */
void breaker_observe_ttft(breaker_t *b, double ms);
double breaker_ttft_p95(breaker_t *b);

#endif
