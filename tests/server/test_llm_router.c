/*
 * test_llm_router.c — the router's backoff arithmetic (the call path itself is
 * exercised end to end by tests/integration/test_resilience.py).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "llm_router.h"

/* Full jitter: every delay lies in [0, min(max, base * 2^retry)], the spread covers
 * the range, and Retry-After is a floor. */
static void test_backoff_bounds_and_jitter(void **s)
{
    (void)s;
    retry_policy_t p = {.max_attempts = 5, .base_delay_ms = 100, .max_delay_ms = 1000};
    uint64_t rng = 42;
    const uint64_t caps[] = {100, 200, 400, 800, 1000, 1000};
    for (int retry = 0; retry < 6; retry++) {
        uint64_t lo = UINT64_MAX, hi = 0;
        for (int i = 0; i < 2000; i++) {
            uint64_t d = llm_router_backoff_ms(&p, retry, -1, &rng);
            assert_true(d <= caps[retry]);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        assert_true(lo < caps[retry] / 10);      /* jitter reaches near zero */
        assert_true(hi > caps[retry] * 9 / 10);  /* and near the cap */
    }
    for (int i = 0; i < 100; i++)
        assert_true(llm_router_backoff_ms(&p, 0, 3000, &rng) >= 3000);
}

/* Two generators from different seeds do not produce the same sequence. */
static void test_backoff_seeds_differ(void **s)
{
    (void)s;
    retry_policy_t p = {.max_attempts = 3, .base_delay_ms = 1000, .max_delay_ms = 1000};
    uint64_t a = 1, b = 2;
    int same = 0;
    for (int i = 0; i < 50; i++)
        same += llm_router_backoff_ms(&p, 0, -1, &a) == llm_router_backoff_ms(&p, 0, -1, &b);
    assert_true(same < 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_bounds_and_jitter),
        cmocka_unit_test(test_backoff_seeds_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
