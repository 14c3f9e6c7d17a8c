/*
 * test_session_cache.c — the in-memory session cache: hits return independent copies,
 * misses stay misses, the LRU bound holds, and concurrent use is safe.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "session_cache.h"

static session_t make(const char *id, const char *state_json, int64_t seq)
{
    session_t s;
    memset(&s, 0, sizeof(s));
    snprintf(s.id, sizeof(s.id), "%s", id);
    s.state = json_loads(state_json, 0, NULL);
    s.history = json_pack("[{s:s, s:s, s:s}]", "method", "GET", "path", "/mail/", "title", "Inbox");
    s.seq = seq;
    s.exists = 1;
    return s;
}

static const char *ID_A = "0123456789abcdef0123456789abcdef";
static const char *ID_B = "fedcba9876543210fedcba9876543210";

static void test_hit_miss_and_isolation(void **st)
{
    (void)st;
    session_cache_t *c = session_cache_create(100);
    session_t out;
    assert_int_equal(session_cache_get(c, ID_A, "mail", &out), 0);
    session_t a = make(ID_A, "{\"user\":\"alex\"}", 3);
    session_cache_put(c, "mail", &a);
    /* the caller's copy may change afterwards without touching the cache */
    json_object_set_new(a.state, "user", json_string("mallory"));
    assert_int_equal(session_cache_get(c, ID_A, "mail", &out), 1);
    assert_string_equal(out.id, ID_A);
    assert_string_equal(json_string_value(json_object_get(out.state, "user")), "alex");
    assert_int_equal(json_array_size(out.history), 1);
    assert_int_equal(out.seq, 3);
    /* and a hit's copy is the caller's own too */
    json_object_set_new(out.state, "user", json_string("eve"));
    session_clear(&out);
    assert_int_equal(session_cache_get(c, ID_A, "mail", &out), 1);
    assert_string_equal(json_string_value(json_object_get(out.state, "user")), "alex");
    session_clear(&out);
    /* state is per session and app */
    assert_int_equal(session_cache_get(c, ID_A, "notes", &out), 0);
    assert_int_equal(session_cache_get(c, ID_B, "mail", &out), 0);
    /* put replaces */
    session_t a2 = make(ID_A, "{\"user\":\"sam\"}", 4);
    session_cache_put(c, "mail", &a2);
    assert_int_equal(session_cache_get(c, ID_A, "mail", &out), 1);
    assert_string_equal(json_string_value(json_object_get(out.state, "user")), "sam");
    session_clear(&out);
    session_clear(&a);
    session_clear(&a2);
    session_cache_free(c);
}

/* With room for 16 entries (one per shard), filling many more keeps the newest and
 * never grows past the bound. */
static void test_lru_bound(void **st)
{
    (void)st;
    session_cache_t *c = session_cache_create(16);
    char id[33];
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "%032x", i);
        session_t s = make(id, "{}", i);
        session_cache_put(c, "mail", &s);
        session_clear(&s);
    }
    int hits = 0;
    session_t out;
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "%032x", i);
        if (session_cache_get(c, id, "mail", &out)) {
            hits++;
            session_clear(&out);
        }
    }
    assert_true(hits >= 1 && hits <= 16);
    snprintf(id, sizeof(id), "%032x", 499);
    assert_int_equal(session_cache_get(c, id, "mail", &out), 1); /* the newest survived */
    session_clear(&out);
    session_cache_free(c);
}

static session_cache_t *shared;

static void *hammer(void *arg)
{
    int t = (int)(intptr_t)arg;
    char id[33];
    for (int i = 0; i < 2000; i++) {
        snprintf(id, sizeof(id), "%032x", (t * 7919 + i) % 300);
        session_t s = make(id, "{\"n\":1}", i);
        session_cache_put(shared, "mail", &s);
        session_clear(&s);
        session_t out;
        if (session_cache_get(shared, id, "mail", &out)) {
            if (json_integer_value(json_object_get(out.state, "n")) != 1)
                return (void *)1;
            session_clear(&out);
        }
    }
    return NULL;
}

static void test_concurrent_use(void **st)
{
    (void)st;
    shared = session_cache_create(128);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer, (void *)(intptr_t)i);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        assert_null(rc);
    }
    session_cache_free(shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_miss_and_isolation),
        cmocka_unit_test(test_lru_bound),
        cmocka_unit_test(test_concurrent_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
