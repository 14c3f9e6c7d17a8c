/*
 * test_budget.c — the spending accountant with injected wall-clock time: each of
 * the three budgets, the order in which spent budgets are reported, UTC day
 * rollover, seeding from the store, the session LRU and the messages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "budget.h"

/* 2024-05-01 12:00:00 UTC; its day starts at DAY0 and ends before DAY0 + 86400. */
#define NOON ((time_t)1714564800)
#define DAY0 ((time_t)1714521600)

static void assert_denied(budget_t *b, const char *sid, const char *app, time_t now, const char *msg)
{
    fig_err_t err = {0};
    assert_int_equal(budget_check(b, sid, app, now, &err), -1);
    assert_int_equal(err.code, FIG_E_DENIED);
    assert_string_equal(err.msg, msg);
}

static void assert_allowed(budget_t *b, const char *sid, const char *app, time_t now)
{
    fig_err_t err = {0};
    if (budget_check(b, sid, app, now, &err) != 0)
        fail_msg("denied: %s", err.msg);
}

static void test_session_budget(void **s)
{
    (void)s;
    budgets_t lim = {.per_session_usd = 0.50};
    budget_t *b = budget_create(&lim, 100);
    budget_seed_session(b, "s1", 0);
    assert_allowed(b, "s1", "mail", NOON);
    budget_add(b, "s1", "mail", 0.30, NOON);
    assert_allowed(b, "s1", "mail", NOON);
    budget_add(b, "s1", "mail", 0.20, NOON);
    assert_true(budget_spent_session(b, "s1") >= 0.4999999);
    assert_denied(b, "s1", "mail", NOON, "this session's budget of $0.50 is spent");
    /* All time: a new day does not help the session. */
    assert_denied(b, "s1", "mail", NOON + 5 * 86400, "this session's budget of $0.50 is spent");
    /* Other sessions are unaffected; no app or global limit applies. */
    budget_seed_session(b, "s2", 0);
    assert_allowed(b, "s2", "mail", NOON);
    assert_allowed(b, NULL, "mail", NOON);
    budget_free(b);
}

static void test_app_budget_and_rollover(void **s)
{
    (void)s;
    budgets_t lim = {.per_app_daily_usd = 20};
    budget_t *b = budget_create(&lim, 100);
    budget_add(b, NULL, "mail", 19.99, NOON);
    assert_allowed(b, NULL, "mail", NOON);
    budget_add(b, NULL, "mail", 0.01, NOON);
    assert_denied(b, NULL, "mail", NOON, "this app's daily budget of $20.00 is spent");
    assert_allowed(b, NULL, "shop", NOON); /* per app */
    /* Still spent in the last second of the UTC day ... */
    assert_denied(b, NULL, "mail", DAY0 + 86399, "this app's daily budget of $20.00 is spent");
    /* ... and free again at 00:00 UTC. */
    assert_allowed(b, NULL, "mail", DAY0 + 86400);
    assert_true(budget_spent_app_today(b, "mail", DAY0 + 86400) == 0);
    assert_true(budget_spent_app_today(b, "mail", NOON) > 19.99);
    /* Adding on the new day starts from 0. */
    budget_add(b, NULL, "mail", 1.0, DAY0 + 86400 + 10);
    assert_true(budget_spent_app_today(b, "mail", DAY0 + 86400 + 20) == 1.0);
    /* A clock stepping back into yesterday forgets nothing. */
    assert_true(budget_spent_app_today(b, "mail", NOON) == 1.0);
    assert_true(budget_spent_app_today(b, "unknown", NOON) == 0);
    budget_free(b);
}

static void test_global_budget_and_order(void **s)
{
    (void)s;
    budgets_t lim = {.per_session_usd = 1, .per_app_daily_usd = 5, .global_daily_usd = 10};
    budget_t *b = budget_create(&lim, 100);
    budget_seed_session(b, "s1", 0);
    budget_add(b, "s1", "mail", 1.0, NOON);
    assert_denied(b, "s1", "mail", NOON, "this session's budget of $1.00 is spent");
    budget_add(b, "s1", "mail", 4.0, NOON);
    /* App and session spent: the app is reported. */
    assert_denied(b, "s1", "mail", NOON, "this app's daily budget of $5.00 is spent");
    budget_add(b, NULL, "shop", 5.0, NOON);
    assert_true(budget_spent_global_today(b, NOON) == 10.0);
    /* All three spent: global first. */
    assert_denied(b, "s1", "mail", NOON, "the global daily budget of $10.00 is spent");
    assert_denied(b, NULL, NULL, NOON, "the global daily budget of $10.00 is spent");
    /* Global rolls over too; the session stays spent. */
    assert_denied(b, "s1", "mail", DAY0 + 86400, "this session's budget of $1.00 is spent");
    assert_allowed(b, NULL, "mail", DAY0 + 86400);
    assert_true(budget_spent_global_today(b, DAY0 + 86400) == 0);
    budget_free(b);
}

static void test_unlimited_and_bad_amounts(void **s)
{
    (void)s;
    budgets_t lim = {0};
    budget_t *b = budget_create(&lim, 10);
    budget_seed_session(b, "s", 0);
    budget_add(b, "s", "a", 1e9, NOON);
    assert_allowed(b, "s", "a", NOON);
    budget_add(b, "s", "a", -5, NOON);          /* ignored */
    budget_add(b, "s", "a", 0.0 / 0.0, NOON);   /* NaN ignored */
    assert_true(budget_spent_session(b, "s") == 1e9);
    assert_true(budget_spent_global_today(b, NOON) == 1e9);
    budget_free(b);
    b = budget_create(NULL, 10); /* no limits at all */
    assert_allowed(b, "s", "a", NOON);
    budget_free(b);
}

static void test_seeding(void **s)
{
    (void)s;
    budgets_t lim = {.per_session_usd = 2, .per_app_daily_usd = 20, .global_daily_usd = 100};
    budget_t *b = budget_create(&lim, 100);
    budget_seed_global(b, 99.0, NOON);
    budget_seed_app(b, "mail", 19.5, NOON);
    assert_false(budget_knows_session(b, "s1"));
    budget_seed_session(b, "s1", 1.75);
    assert_true(budget_knows_session(b, "s1"));
    assert_true(budget_spent_global_today(b, NOON) == 99.0);
    assert_true(budget_spent_app_today(b, "mail", NOON) == 19.5);
    assert_true(budget_spent_session(b, "s1") == 1.75);
    assert_allowed(b, "s1", "mail", NOON);
    budget_add(b, "s1", "mail", 0.25, NOON);
    assert_denied(b, "s1", "mail", NOON, "this session's budget of $2.00 is spent");
    budget_add(b, NULL, "mail", 0.25, NOON);
    assert_denied(b, "s1", "mail", NOON, "this app's daily budget of $20.00 is spent");
    budget_add(b, NULL, "other", 0.5, NOON);
    assert_denied(b, "s1", "mail", NOON, "the global daily budget of $100.00 is spent");
    /* Seeding replaces (the store's total is the truth), it does not add. */
    budget_seed_session(b, "s1", 0.5);
    assert_true(budget_spent_session(b, "s1") == 0.5);
    budget_seed_app(b, "mail", 1, NOON);
    budget_seed_global(b, 1, NOON);
    assert_allowed(b, "s1", "mail", NOON);
    /* Seeds from yesterday count as yesterday's. */
    budget_seed_app(b, "mail", 50, NOON - 86400);
    assert_allowed(b, NULL, "mail", NOON);
    budget_free(b);
}

static void test_session_lru(void **s)
{
    (void)s;
    budgets_t lim = {.per_session_usd = 1};
    budget_t *b = budget_create(&lim, 3);
    budget_seed_session(b, "a", 1.0);
    budget_seed_session(b, "b", 0.1);
    budget_seed_session(b, "c", 0.2);
    assert_denied(b, "a", NULL, NOON, "this session's budget of $1.00 is spent"); /* touches a */
    budget_seed_session(b, "d", 0.3); /* evicts b, the least recently used */
    assert_true(budget_knows_session(b, "a"));
    assert_false(budget_knows_session(b, "b"));
    assert_true(budget_knows_session(b, "c"));
    assert_true(budget_knows_session(b, "d"));
    /* An add to an unknown (evicted) session is left for the re-seed from the store. */
    budget_add(b, "b", NULL, 0.5, NOON);
    assert_false(budget_knows_session(b, "b"));
    assert_true(budget_spent_session(b, "b") == 0);
    /* Adds to known sessions count and mark them used. */
    budget_add(b, "c", NULL, 0.1, NOON);
    assert_true(budget_spent_session(b, "c") > 0.29 && budget_spent_session(b, "c") < 0.31);
    budget_seed_session(b, "e", 0); /* evicts the least recent: a (touched before d, c) */
    assert_false(budget_knows_session(b, "a"));
    assert_true(budget_knows_session(b, "c"));
    /* Many sessions through a small table. */
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "sess-%d", i);
        budget_seed_session(b, id, i);
    }
    assert_true(budget_knows_session(b, "sess-999"));
    assert_true(budget_knows_session(b, "sess-997"));
    assert_false(budget_knows_session(b, "sess-996"));
    assert_true(budget_spent_session(b, "sess-998") == 998);
    budget_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_budget),       cmocka_unit_test(test_app_budget_and_rollover),
        cmocka_unit_test(test_global_budget_and_order), cmocka_unit_test(test_unlimited_and_bad_amounts),
        cmocka_unit_test(test_seeding),              cmocka_unit_test(test_session_lru),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
