/*
 * ratelimit.h — token buckets keyed by a string (a session id, a client IP, an app
 * name), shared by all loop threads.
 *
 * Each bucket refills at policy.per_minute/60 tokens per second up to policy.burst.
 * The table is bounded (max_keys): when full, the least recently used bucket is
 * evicted — an evicted key starts with a full bucket, which errs toward allowing.
 * Time is passed in (milliseconds, monotonic) so tests control it.
 *
 * Thread-safe (a mutex per limiter; the critical section is a hash lookup).
 * Ownership: ratelimiter_create() returns an object freed by ratelimiter_free().
 */
#ifndef FIG_RATELIMIT_H
#define FIG_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "providers.h"

typedef struct ratelimiter ratelimiter_t;

/* NULL-safe: a policy with per_minute 0 yields a limiter that always allows. */
ratelimiter_t *ratelimiter_create(const rate_policy_t *policy, size_t max_keys);
void ratelimiter_free(ratelimiter_t *rl);
/* Takes one token. Returns 0 when allowed, else the milliseconds until a token
 * will be available (>= 1), for a Retry-After header. */
int64_t ratelimiter_take(ratelimiter_t *rl, const char *key, size_t key_len, uint64_t now_ms);

/* A counting semaphore without blocking: the global cap on concurrent upstream calls. */
typedef struct concurrency_cap concurrency_cap_t;
concurrency_cap_t *concurrency_cap_create(int max); /* max 0 = unlimited */
void concurrency_cap_free(concurrency_cap_t *c);
int concurrency_cap_try_acquire(concurrency_cap_t *c); /* 1 acquired, 0 full */
void concurrency_cap_release(concurrency_cap_t *c);
int concurrency_cap_in_use(concurrency_cap_t *c);

#endif
