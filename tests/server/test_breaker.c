/*
 * test_breaker.c — the circuit breaker with injected time: closed -> open at the
 * failure ratio, min_requests, the sliding window, open refusing until open_ms,
 * the single half-open probe and its two outcomes; and the TTFT p95.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "breaker.h"

static const breaker_policy_t policy = {.window = 10, .min_requests = 4, .failure_ratio = 0.5, .open_ms = 1000};

static void call(breaker_t *b, int success, uint64_t now)
{
    assert_int_equal(breaker_allow(b, now), 1);
    breaker_record(b, success, now);
}

static void test_opens_at_ratio(void **s)
{
    (void)s;
    breaker_t *b = breaker_create(&policy);
    assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
    call(b, 1, 0);
    call(b, 1, 0);
    call(b, 0, 0);
    call(b, 1, 0);
    call(b, 0, 0); /* 2 of 5 = 0.4 */
    assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
    call(b, 0, 0); /* 3 of 6 = 0.5: at the ratio opens */
    assert_int_equal(breaker_state(b, 0), BREAKER_OPEN);
    assert_int_equal(breaker_allow(b, 1), 0);
    breaker_free(b);
}

static void test_min_requests(void **s)
{
    (void)s;
    breaker_t *b = breaker_create(&policy);
    call(b, 0, 0);
    call(b, 0, 0);
    call(b, 0, 0); /* 100% failures but only 3 < min_requests 4 */
    assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
    call(b, 0, 0);
    assert_int_equal(breaker_state(b, 0), BREAKER_OPEN);
    breaker_free(b);
}

static void test_window_slides(void **s)
{
    (void)s;
    breaker_t *b = breaker_create(&policy);
    /* 4 failures then 10 successes: the failures leave the 10-call window. */
    for (int i = 0; i < 4; i++) {
        call(b, i == 0 ? 0 : 1, 0); /* keep it closed: 1 failure of 4 */
    }
    for (int i = 0; i < 10; i++)
        call(b, 1, 0);
    /* Window now holds 10 successes; 4 failures make 4/10 < 0.5, the 5th opens. */
    for (int i = 0; i < 4; i++)
        call(b, 0, 0);
    assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
    call(b, 0, 0);
    assert_int_equal(breaker_state(b, 0), BREAKER_OPEN);
    breaker_free(b);
}

static breaker_t *opened(uint64_t at)
{
    breaker_t *b = breaker_create(&policy);
    for (int i = 0; i < 4; i++)
        call(b, 0, at);
    assert_int_equal(breaker_state(b, at), BREAKER_OPEN);
    return b;
}

static void test_open_then_half_open_probe(void **s)
{
    (void)s;
    breaker_t *b = opened(5000);
    assert_int_equal(breaker_allow(b, 5000), 0);
    assert_int_equal(breaker_allow(b, 5999), 0);
    assert_int_equal(breaker_state(b, 5999), BREAKER_OPEN);
    /* A straggler reported while open changes nothing. */
    breaker_record(b, 1, 5500);
    assert_int_equal(breaker_state(b, 5500), BREAKER_OPEN);
    assert_int_equal(breaker_state(b, 6000), BREAKER_HALF_OPEN);
    /* Exactly one probe at a time. */
    assert_int_equal(breaker_allow(b, 6000), 1);
    assert_int_equal(breaker_allow(b, 6001), 0);
    assert_int_equal(breaker_allow(b, 9000), 0);
    assert_int_equal(breaker_state(b, 9000), BREAKER_HALF_OPEN);
    /* Its success closes, with a clean window: min_requests counts from zero again. */
    breaker_record(b, 1, 9000);
    assert_int_equal(breaker_state(b, 9000), BREAKER_CLOSED);
    call(b, 0, 9001);
    call(b, 0, 9001);
    call(b, 0, 9001);
    assert_int_equal(breaker_state(b, 9001), BREAKER_CLOSED);
    assert_int_equal(breaker_allow(b, 9002), 1);
    breaker_record(b, 0, 9002);
    assert_int_equal(breaker_state(b, 9002), BREAKER_OPEN);
    breaker_free(b);
}

static void test_probe_failure_reopens(void **s)
{
    (void)s;
    breaker_t *b = opened(0);
    assert_int_equal(breaker_allow(b, 1000), 1);
    breaker_record(b, 0, 1500);
    assert_int_equal(breaker_state(b, 1500), BREAKER_OPEN);
    /* open_ms counts again from the probe's failure. */
    assert_int_equal(breaker_allow(b, 2499), 0);
    assert_int_equal(breaker_state(b, 2500), BREAKER_HALF_OPEN);
    assert_int_equal(breaker_allow(b, 2500), 1);
    breaker_record(b, 1, 2600);
    assert_int_equal(breaker_state(b, 2600), BREAKER_CLOSED);
    breaker_free(b);
}

static void test_names_and_defaults(void **s)
{
    (void)s;
    assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
    assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
    /* NULL policy: the defaults (window 20, min 5, ratio 0.5, 30 s). */
    breaker_t *b = breaker_create(NULL);
    for (int i = 0; i < 4; i++)
        call(b, 0, 0);
    assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
    call(b, 0, 0);
    assert_int_equal(breaker_state(b, 0), BREAKER_OPEN);
    assert_int_equal(breaker_state(b, 29999), BREAKER_OPEN);
    assert_int_equal(breaker_state(b, 30000), BREAKER_HALF_OPEN);
    breaker_free(b);
    /* failure_ratio 1: only all-failures opens. */
    breaker_policy_t p = {.window = 4, .min_requests = 4, .failure_ratio = 1.0, .open_ms = 100};
    b = breaker_create(&p);
    call(b, 1, 0);
    for (int i = 0; i < 3; i++)
        call(b, 0, 0);
    assert_int_equal(breaker_state(b, 0), BREAKER_CLOSED);
    call(b, 0, 0); /* the success slid out: 4 of 4 */
    assert_int_equal(breaker_state(b, 0), BREAKER_OPEN);
    breaker_free(b);
}

static void test_ttft_p95(void **s)
{
    (void)s;
    breaker_t *b = breaker_create(&policy);
    for (int i = 1; i <= 19; i++)
        breaker_observe_ttft(b, i);
    assert_true(breaker_ttft_p95(b) == -1); /* fewer than 20 samples */
    breaker_observe_ttft(b, 20);
    assert_true(breaker_ttft_p95(b) == 19); /* nearest rank: ceil(0.95 * 20) = 19th */
    breaker_observe_ttft(b, -1);            /* nonsense ignored */
    breaker_observe_ttft(b, 0.0 / 0.0);
    assert_true(breaker_ttft_p95(b) == 19);
    breaker_free(b);

    /* 100 samples in shuffled order: p95 = 95th value. */
    b = breaker_create(&policy);
    for (int i = 0; i < 100; i++)
        breaker_observe_ttft(b, (double)((i * 37) % 100 + 1));
    assert_true(breaker_ttft_p95(b) == 95);
    /* Only the last 256 count: 256 slow samples push the fast ones out. */
    for (int i = 0; i < 256; i++)
        breaker_observe_ttft(b, 5000 + i);
    assert_true(breaker_ttft_p95(b) == 5000 + 243); /* ceil(0.95 * 256) = 244th */
    breaker_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_at_ratio),          cmocka_unit_test(test_min_requests),
        cmocka_unit_test(test_window_slides),           cmocka_unit_test(test_open_then_half_open_probe),
        cmocka_unit_test(test_probe_failure_reopens),   cmocka_unit_test(test_names_and_defaults),
        cmocka_unit_test(test_ttft_p95),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
