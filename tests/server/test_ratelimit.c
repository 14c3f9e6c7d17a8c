/*
 * test_ratelimit.c — token buckets with injected time (burst, refusal with the
 * exact Retry-After, refill, per-key independence, LRU eviction, the unlimited
 * policy) and the concurrency cap under 4 threads (never over-admits).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

#define TAKE(rl, key, now) ratelimiter_take((rl), (key), strlen(key), (now))

static void test_burst_then_refusal(void **s)
{
    (void)s;
    rate_policy_t p = {.per_minute = 60, .burst = 3}; /* one token per second */
    ratelimiter_t *rl = ratelimiter_create(&p, 100);
    uint64_t t = 1000000;
    for (int i = 0; i < 3; i++)
        assert_int_equal(TAKE(rl, "s1", t), 0);
    assert_int_equal(TAKE(rl, "s1", t), 1000);       /* a whole token missing: 1 s */
    assert_int_equal(TAKE(rl, "s1", t + 250), 750);  /* a quarter refilled meanwhile */
    assert_int_equal(TAKE(rl, "s1", t + 999), 1);
    assert_int_equal(TAKE(rl, "s1", t + 1000), 0);   /* exactly at Retry-After: allowed */
    assert_int_equal(TAKE(rl, "s1", t + 1000), 1000);
    ratelimiter_free(rl);

    /* A rate that does not divide evenly: 7 per minute = 8571.43 ms per token. */
    rate_policy_t q = {.per_minute = 7, .burst = 1};
    rl = ratelimiter_create(&q, 10);
    assert_int_equal(TAKE(rl, "k", 0), 0);
    int64_t wait = TAKE(rl, "k", 0);
    assert_int_equal(wait, 8572);
    assert_true(TAKE(rl, "k", 8571) > 0);
    assert_int_equal(TAKE(rl, "k", 8572), 0);
    ratelimiter_free(rl);
}

static void test_refill_caps_at_burst(void **s)
{
    (void)s;
    rate_policy_t p = {.per_minute = 120, .burst = 2}; /* one token per 500 ms */
    ratelimiter_t *rl = ratelimiter_create(&p, 100);
    assert_int_equal(TAKE(rl, "a", 0), 0);
    assert_int_equal(TAKE(rl, "a", 0), 0);
    assert_int_equal(TAKE(rl, "a", 0), 500);
    /* After an hour idle the bucket holds burst (2) tokens, not 7200. */
    uint64_t t = 3600 * 1000;
    assert_int_equal(TAKE(rl, "a", t), 0);
    assert_int_equal(TAKE(rl, "a", t), 0);
    assert_int_equal(TAKE(rl, "a", t), 500);
    /* Fractional tokens accumulate across takes: 2 x 250 ms = one token. */
    assert_int_equal(TAKE(rl, "a", t + 250), 250);
    assert_int_equal(TAKE(rl, "a", t + 500), 0);
    /* A clock stepping back refills nothing and does not break. */
    assert_true(TAKE(rl, "a", t) > 0);
    ratelimiter_free(rl);
}

static void test_keys_independent(void **s)
{
    (void)s;
    rate_policy_t p = {.per_minute = 60, .burst = 1};
    ratelimiter_t *rl = ratelimiter_create(&p, 100);
    assert_int_equal(TAKE(rl, "alpha", 0), 0);
    assert_true(TAKE(rl, "alpha", 0) > 0);
    assert_int_equal(TAKE(rl, "beta", 0), 0);
    assert_true(TAKE(rl, "beta", 0) > 0);
    /* Keys are byte strings with a length: a prefix is a different key, and
     * embedded NULs count. */
    assert_int_equal(ratelimiter_take(rl, "alphabet", 5, 0) > 0, 1); /* "alpha" */
    assert_int_equal(ratelimiter_take(rl, "alp", 3, 0), 0);
    assert_int_equal(ratelimiter_take(rl, "x\0y", 3, 0), 0);
    assert_int_equal(ratelimiter_take(rl, "x\0z", 3, 0), 0);
    assert_true(ratelimiter_take(rl, "x\0y", 3, 0) > 0);
    /* Many keys (hash collisions in a 16-bucket table) stay independent. */
    char key[32];
    for (int i = 0; i < 90; i++) {
        snprintf(key, sizeof(key), "ip-%d", i);
        assert_int_equal(TAKE(rl, key, 10), 0);
    }
    for (int i = 0; i < 90; i++) {
        snprintf(key, sizeof(key), "ip-%d", i);
        assert_int_equal(TAKE(rl, key, 10), 1000);
    }
    ratelimiter_free(rl);
}

static void test_eviction_lru(void **s)
{
    (void)s;
    rate_policy_t p = {.per_minute = 60, .burst = 1};
    ratelimiter_t *rl = ratelimiter_create(&p, 3);
    assert_int_equal(TAKE(rl, "a", 0), 0);
    assert_int_equal(TAKE(rl, "b", 0), 0);
    assert_int_equal(TAKE(rl, "c", 0), 0);
    assert_true(TAKE(rl, "a", 1) > 0); /* touches a: b is now the least recently used */
    assert_int_equal(TAKE(rl, "d", 2), 0); /* evicts b */
    assert_int_equal(TAKE(rl, "b", 3), 0); /* b starts full again; evicts c */
    assert_true(TAKE(rl, "a", 4) > 0);     /* a survived both evictions */
    assert_true(TAKE(rl, "d", 5) > 0);
    assert_int_equal(TAKE(rl, "c", 6), 0); /* c was evicted */
    ratelimiter_free(rl);

    /* max_keys 1 still works. */
    rl = ratelimiter_create(&p, 1);
    assert_int_equal(TAKE(rl, "a", 0), 0);
    assert_true(TAKE(rl, "a", 0) > 0);
    assert_int_equal(TAKE(rl, "b", 0), 0);
    assert_int_equal(TAKE(rl, "a", 0), 0);
    ratelimiter_free(rl);
}

static void test_unlimited(void **s)
{
    (void)s;
    rate_policy_t p = {.per_minute = 0, .burst = 0};
    ratelimiter_t *rl = ratelimiter_create(&p, 10);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(TAKE(rl, "k", 0), 0);
    ratelimiter_free(rl);
    rl = ratelimiter_create(NULL, 10);
    for (int i = 0; i < 100; i++)
        assert_int_equal(TAKE(rl, "k", 0), 0);
    ratelimiter_free(rl);
    assert_int_equal(TAKE(NULL, "k", 0), 0);
    ratelimiter_free(NULL);
}

/* ---- concurrency cap ---- */

#define CAP 3
#define ROUNDS 20000

static concurrency_cap_t *g_cap;
static atomic_int g_inside, g_max_inside, g_acquired, g_over;

static void *cap_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        if (!concurrency_cap_try_acquire(g_cap))
            continue;
        int now = atomic_fetch_add(&g_inside, 1) + 1;
        int m = atomic_load(&g_max_inside);
        while (now > m && !atomic_compare_exchange_weak(&g_max_inside, &m, now))
            ;
        if (concurrency_cap_in_use(g_cap) > CAP)
            atomic_store(&g_over, 1);
        atomic_fetch_add(&g_acquired, 1);
        atomic_fetch_sub(&g_inside, 1);
        concurrency_cap_release(g_cap);
    }
    return NULL;
}

static void test_concurrency_cap_threads(void **s)
{
    (void)s;
    g_cap = concurrency_cap_create(CAP);
    atomic_store(&g_inside, 0);
    atomic_store(&g_max_inside, 0);
    atomic_store(&g_acquired, 0);
    atomic_store(&g_over, 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, cap_worker, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_true(atomic_load(&g_max_inside) <= CAP);
    assert_int_equal(atomic_load(&g_over), 0);
    assert_true(atomic_load(&g_acquired) > 0);
    assert_int_equal(concurrency_cap_in_use(g_cap), 0);
    concurrency_cap_free(g_cap);
}

static void test_concurrency_cap_basic(void **s)
{
    (void)s;
    concurrency_cap_t *c = concurrency_cap_create(2);
    assert_int_equal(concurrency_cap_try_acquire(c), 1);
    assert_int_equal(concurrency_cap_try_acquire(c), 1);
    assert_int_equal(concurrency_cap_try_acquire(c), 0);
    assert_int_equal(concurrency_cap_in_use(c), 2);
    concurrency_cap_release(c);
    assert_int_equal(concurrency_cap_in_use(c), 1);
    assert_int_equal(concurrency_cap_try_acquire(c), 1);
    assert_int_equal(concurrency_cap_try_acquire(c), 0);
    concurrency_cap_release(c);
    concurrency_cap_release(c);
    concurrency_cap_release(c); /* unbalanced: does not go negative */
    assert_int_equal(concurrency_cap_in_use(c), 0);
    concurrency_cap_free(c);

    /* 0 = unlimited, still counted. */
    c = concurrency_cap_create(0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(concurrency_cap_try_acquire(c), 1);
    assert_int_equal(concurrency_cap_in_use(c), 1000);
    concurrency_cap_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refusal),    cmocka_unit_test(test_refill_caps_at_burst),
        cmocka_unit_test(test_keys_independent),      cmocka_unit_test(test_eviction_lru),
        cmocka_unit_test(test_unlimited),             cmocka_unit_test(test_concurrency_cap_basic),
        cmocka_unit_test(test_concurrency_cap_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
