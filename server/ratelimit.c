/*
 * ratelimit.c — token buckets keyed by a string, and the global cap on concurrent
 * upstream calls (see ratelimit.h).
 *
 * Design:
 * - One mutex per limiter around a chained hash table (FNV-1a) whose entries are
 *   also on an LRU list: lookup, refill and eviction are O(1), so the critical
 *   section stays a few hundred nanoseconds. The table never grows past max_keys;
 *   the bucket array is sized once at creation.
 * - Tokens are fractional doubles refilled lazily on each take from the elapsed
 *   time, so no timer is needed. A bucket born (or re-born after eviction) is full.
 * - Retry-After is exact: the time the missing fraction of a token takes to refill,
 *   rounded up to a whole millisecond. A tiny epsilon on both sides keeps "retry at
 *   exactly that time" from failing on floating-point dust.
 * - A clock that steps backwards refills nothing (never a negative refill).
 * - The concurrency cap is a lock-free counter (compare-and-swap), so acquiring it
 *   never blocks a loop thread and can never over-admit.
 */
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define RL_EPSILON 1e-9
#define RL_MAX_BUCKETS (1u << 22)

typedef struct rl_entry {
    struct rl_entry *hnext;            /* hash chain */
    struct rl_entry *lru_prev, *lru_next;
    uint32_t hash;
    size_t key_len;
    double tokens;
    uint64_t last_ms;
    char key[];
} rl_entry_t;

struct ratelimiter {
    pthread_mutex_t mu;
    int unlimited;
    double per_minute;
    double burst;
    size_t max_keys;
    size_t count;
    size_t mask;          /* bucket count - 1 (a power of two) */
    rl_entry_t **buckets;
    rl_entry_t lru;       /* sentinel: lru.lru_next is the most recent, lru.lru_prev the least */
};

static uint32_t rl_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static void rl_lru_unlink(rl_entry_t *e)
{
    e->lru_prev->lru_next = e->lru_next;
    e->lru_next->lru_prev = e->lru_prev;
}

static void rl_lru_push_front(ratelimiter_t *rl, rl_entry_t *e)
{
    e->lru_prev = &rl->lru;
    e->lru_next = rl->lru.lru_next;
    rl->lru.lru_next->lru_prev = e;
    rl->lru.lru_next = e;
}

static void rl_evict_oldest(ratelimiter_t *rl)
{
    rl_entry_t *victim = rl->lru.lru_prev;
    if (victim == &rl->lru)
        return;
    rl_lru_unlink(victim);
    rl_entry_t **pp = &rl->buckets[victim->hash & rl->mask];
    while (*pp != victim)
        pp = &(*pp)->hnext;
    *pp = victim->hnext;
    free(victim);
    rl->count--;
}

ratelimiter_t *ratelimiter_create(const rate_policy_t *policy, size_t max_keys)
{
    ratelimiter_t *rl = fig_calloc(1, sizeof(*rl));
    pthread_mutex_init(&rl->mu, NULL);
    rl->lru.lru_next = rl->lru.lru_prev = &rl->lru;
    rl->unlimited = policy == NULL || !(policy->per_minute > 0);
    if (rl->unlimited)
        return rl;
    rl->per_minute = policy->per_minute;
    rl->burst = policy->burst >= 1 ? policy->burst : 1;
    rl->max_keys = max_keys ? max_keys : 1;
    size_t n = 16;
    while (n < rl->max_keys && n < RL_MAX_BUCKETS)
        n <<= 1;
    rl->mask = n - 1;
    rl->buckets = fig_calloc(n, sizeof(*rl->buckets));
    return rl;
}

void ratelimiter_free(ratelimiter_t *rl)
{
    if (rl == NULL)
        return;
    rl_entry_t *e = rl->lru.lru_next;
    while (e != &rl->lru) {
        rl_entry_t *next = e->lru_next;
        free(e);
        e = next;
    }
    free(rl->buckets);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

int64_t ratelimiter_take(ratelimiter_t *rl, const char *key, size_t key_len, uint64_t now_ms)
{
    if (rl == NULL || rl->unlimited)
        return 0;
    uint32_t h = rl_hash(key, key_len);
    pthread_mutex_lock(&rl->mu);

    rl_entry_t *e = rl->buckets[h & rl->mask];
    while (e != NULL && !(e->hash == h && e->key_len == key_len && memcmp(e->key, key, key_len) == 0))
        e = e->hnext;
    if (e == NULL) {
        if (rl->count >= rl->max_keys)
            rl_evict_oldest(rl);
        e = fig_malloc(sizeof(*e) + key_len + 1);
        e->hash = h;
        e->key_len = key_len;
        memcpy(e->key, key, key_len);
        e->key[key_len] = '\0';
        e->tokens = rl->burst;
        e->last_ms = now_ms;
        e->hnext = rl->buckets[h & rl->mask];
        rl->buckets[h & rl->mask] = e;
        rl->count++;
    } else {
        rl_lru_unlink(e);
        if (now_ms > e->last_ms) {
            e->tokens += (double)(now_ms - e->last_ms) * rl->per_minute / 60000.0;
            if (e->tokens > rl->burst)
                e->tokens = rl->burst;
            e->last_ms = now_ms;
        }
    }
    rl_lru_push_front(rl, e);

    int64_t wait = 0;
    if (e->tokens >= 1.0 - RL_EPSILON) {
        e->tokens -= 1.0;
        if (e->tokens < 0)
            e->tokens = 0;
    } else {
        double ms = ceil((1.0 - e->tokens) * 60000.0 / rl->per_minute - RL_EPSILON);
        wait = ms < 1 ? 1 : (int64_t)ms;
    }
    pthread_mutex_unlock(&rl->mu);
    return wait;
}

/* ---- concurrency cap ---- */

struct concurrency_cap {
    int max;
    atomic_int in_use;
};

concurrency_cap_t *concurrency_cap_create(int max)
{
    concurrency_cap_t *c = fig_calloc(1, sizeof(*c));
    c->max = max > 0 ? max : 0;
    atomic_init(&c->in_use, 0);
    return c;
}

void concurrency_cap_free(concurrency_cap_t *c)
{
    free(c);
}

int concurrency_cap_try_acquire(concurrency_cap_t *c)
{
    if (c == NULL)
        return 1;
    int cur = atomic_load(&c->in_use);
    for (;;) {
        if (c->max > 0 && cur >= c->max)
            return 0;
        /* On failure cur is reloaded with the current value. */
        if (atomic_compare_exchange_weak(&c->in_use, &cur, cur + 1))
            return 1;
    }
}

void concurrency_cap_release(concurrency_cap_t *c)
{
    if (c == NULL)
        return;
    int prev = atomic_fetch_sub(&c->in_use, 1);
    if (prev <= 0) /* a release without an acquire: undo rather than go negative */
        atomic_fetch_add(&c->in_use, 1);
}

int concurrency_cap_in_use(concurrency_cap_t *c)
{
    return c ? atomic_load(&c->in_use) : 0;
}
