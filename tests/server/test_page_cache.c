/*
 * test_page_cache.c — the page cache: keys (a golden value computed outside figment,
 * every part matters, fields cannot run into each other), memory get/put, TTL, LRU by
 * bytes, reference counts outliving eviction, CSRF placeholder segmentation, single
 * flight on one loop and across two threads with real h2o evloops, and the SQLite
 * table surviving a reopen.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <h2o.h>

#include "buf.h"
#include "crypto.h"
#include "page_cache.h"

#define PH PAGE_CACHE_CSRF_PLACEHOLDER
static const int64_t T0 = 1700000000000; /* a fixed "now" in unix ms */

static const char *KEY_A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char *KEY_B = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
static const char *KEY_C = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
static const char *KEY_D = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

static page_cache_entry_t *mk(const char *key, const char *app, const char *html, int64_t ttl_ms)
{
    fig_err_t err;
    page_cache_entry_t *e = page_cache_entry_new(key, app, "Title", html, strlen(html), 7, T0, T0 + ttl_ms, &err);
    assert_non_null(e);
    return e;
}

static size_t refs(page_cache_entry_t *e)
{
    return atomic_load(&e->_refs);
}

/* ---- keys ---- */

static page_cache_key_parts_t base_parts(json_t *state)
{
    page_cache_key_parts_t p = {0};
    p.app = "mail";
    p.prompt_version = "113b30153e11428ef79875138097da07bd48d3d2374f5b48219853f70975582a";
    p.model = "openai:gpt-4o";
    p.method = "GET";
    p.path = "/mail/inbox";
    p.query = "page=2";
    p.state = state;
    p.data_version = 42;
    return p;
}

static void test_key_golden_and_parts(void **st)
{
    (void)st;
    fig_err_t err;
    /* golden values from Python's hashlib over the documented encoding; a change here
     * orphans every row of existing cache files */
    char pv[65], sh[65], k[65], k2[65];
    page_cache_prompt_version(pv, "SYS", "APP", "TOOLS");
    assert_string_equal(pv, "113b30153e11428ef79875138097da07bd48d3d2374f5b48219853f70975582a");
    json_t *state = json_loads("{\"b\":[true,null],\"a\":1}", 0, NULL);
    page_cache_state_hash(sh, state);
    assert_string_equal(sh, "1cc69c7fa23616ca2ec3ee70d24390a6225c8832db8a4c814c7e0e7f942f8668");
    page_cache_key_parts_t p = base_parts(state);
    assert_int_equal(page_cache_key(k, &p, &err), 0);
    assert_string_equal(k, "63a25526ff778661513effeddbc24228eaf08c58892951da21efb8d25eb1a1d5");
    assert_int_equal(page_cache_key(k2, &p, &err), 0);
    assert_string_equal(k, k2);

    /* the state hash given instead of the state, and key order in the state, change nothing */
    page_cache_key_parts_t q = p;
    q.state = NULL;
    q.state_hash = sh;
    assert_int_equal(page_cache_key(k2, &q, &err), 0);
    assert_string_equal(k, k2);
    json_t *same = json_loads("{\"a\":1,\"b\":[true,null]}", 0, NULL);
    q = p;
    q.state = same;
    assert_int_equal(page_cache_key(k2, &q, &err), 0);
    assert_string_equal(k, k2);
    /* a NULL query and an empty one are the same thing */
    q = p;
    q.query = NULL;
    assert_int_equal(page_cache_key(k, &q, &err), 0);
    q.query = "";
    assert_int_equal(page_cache_key(k2, &q, &err), 0);
    assert_string_equal(k, k2);

    /* every part changes the key */
    json_t *other = json_loads("{\"a\":2,\"b\":[true,null]}", 0, NULL);
    char keys[9][65];
    int n = 0;
    assert_int_equal(page_cache_key(keys[n++], &p, &err), 0);
    q = p, q.app = "mail2";
    assert_int_equal(page_cache_key(keys[n++], &q, &err), 0);
    q = p, q.prompt_version = "x";
    assert_int_equal(page_cache_key(keys[n++], &q, &err), 0);
    q = p, q.model = "anthropic:claude";
    assert_int_equal(page_cache_key(keys[n++], &q, &err), 0);
    q = p, q.path = "/mail/sent";
    assert_int_equal(page_cache_key(keys[n++], &q, &err), 0);
    q = p, q.query = "page=3";
    assert_int_equal(page_cache_key(keys[n++], &q, &err), 0);
    q = p, q.state = other;
    assert_int_equal(page_cache_key(keys[n++], &q, &err), 0);
    q = p, q.data_version = 43;
    assert_int_equal(page_cache_key(keys[n++], &q, &err), 0);
    /* length prefixes: moving a byte from one field to the next changes the key */
    q = p, q.prompt_version = "113b30153e11428ef79875138097da07bd48d3d2374f5b48219853f70975582", q.model = "aopenai:gpt-4o";
    assert_int_equal(page_cache_key(keys[n++], &q, &err), 0);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            assert_string_not_equal(keys[i], keys[j]);

    /* rejected: anything but GET, both or neither state, bad path, bad hash, huge field */
    q = p, q.method = "POST";
    assert_int_equal(page_cache_key(k, &q, &err), -1);
    assert_int_equal(err.code, FIG_E_INVALID);
    q = p, q.state_hash = sh;
    assert_int_equal(page_cache_key(k, &q, &err), -1);
    q = p, q.state = NULL;
    assert_int_equal(page_cache_key(k, &q, &err), -1);
    q = p, q.path = "mail/inbox";
    assert_int_equal(page_cache_key(k, &q, &err), -1);
    q = p, q.state = NULL, q.state_hash = "ABC";
    assert_int_equal(page_cache_key(k, &q, &err), -1);
    q = p, q.app = "";
    assert_int_equal(page_cache_key(k, &q, &err), -1);
    char *big = malloc(PAGE_CACHE_MAX_KEY_FIELD + 2);
    memset(big, 'q', PAGE_CACHE_MAX_KEY_FIELD + 1);
    big[PAGE_CACHE_MAX_KEY_FIELD + 1] = '\0';
    q = p, q.query = big;
    assert_int_equal(page_cache_key(k, &q, &err), -1);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    free(big);
    json_decref(state);
    json_decref(same);
    json_decref(other);
}

static void test_entry_validation(void **st)
{
    (void)st;
    fig_err_t err;
    assert_null(page_cache_entry_new("abc", "mail", NULL, "x", 1, 1, T0, T0 + 1, &err));
    assert_null(page_cache_entry_new(KEY_A, "", NULL, "x", 1, 1, T0, T0 + 1, &err));
    assert_null(page_cache_entry_new(KEY_A, "mail", NULL, "x", 1, 1, T0, T0, &err));
    assert_null(page_cache_entry_new(KEY_A, "mail", NULL, "x", PAGE_CACHE_MAX_HTML + 1, 1, T0, T0 + 1, &err));
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
}

/* ---- memory ---- */

static void test_put_get(void **st)
{
    (void)st;
    page_cache_t *c = page_cache_create(0);
    assert_null(page_cache_get(c, KEY_A, T0));
    page_cache_entry_t *e = mk(KEY_A, "mail", "<p>hello</p>", 60000);
    assert_int_equal(page_cache_put(c, e, T0), 1);
    assert_int_equal(refs(e), 2); /* the caller's and the cache's */
    page_cache_entry_unref(e);
    page_cache_entry_t *g = page_cache_get(c, KEY_A, T0 + 1);
    assert_ptr_equal(g, e);
    assert_string_equal(g->html, "<p>hello</p>");
    assert_string_equal(g->title, "Title");
    assert_string_equal(g->app, "mail");
    assert_int_equal(g->data_version, 7);
    page_cache_entry_unref(g);
    assert_null(page_cache_get(c, KEY_B, T0));
    assert_null(page_cache_get(c, "not-a-key", T0));

    /* a newer entry under the same key replaces the old one */
    page_cache_entry_t *e2 = mk(KEY_A, "mail", "<p>newer</p>", 60000);
    assert_int_equal(page_cache_put(c, e2, T0), 1);
    g = page_cache_get(c, KEY_A, T0);
    assert_ptr_equal(g, e2);
    page_cache_entry_unref(g);

    page_cache_stats_t s;
    page_cache_stats(c, &s);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.misses, 2); /* the malformed key is not even counted */
    assert_int_equal(s.inserts, 2);
    assert_int_equal(s.entries, 1);
    assert_int_equal(s.bytes, e2->bytes);
    assert_int_equal(s.max_bytes, PAGE_CACHE_DEFAULT_MAX_BYTES);
    page_cache_entry_unref(e2);
    page_cache_free(c);
}

static void test_ttl(void **st)
{
    (void)st;
    page_cache_t *c = page_cache_create(0);
    page_cache_entry_t *e = mk(KEY_A, "mail", "<p>x</p>", 1000);
    assert_int_equal(page_cache_put(c, e, T0), 1);
    page_cache_entry_t *g = page_cache_get(c, KEY_A, T0 + 999);
    assert_ptr_equal(g, e);
    page_cache_entry_unref(g);
    assert_null(page_cache_get(c, KEY_A, T0 + 1000));
    page_cache_stats_t s;
    page_cache_stats(c, &s);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.expired, 1);
    assert_int_equal(refs(e), 1); /* the cache let go */
    /* an entry that is already dead is refused */
    assert_int_equal(page_cache_put(c, e, T0 + 1000), 0);
    page_cache_entry_unref(e);
    page_cache_free(c);
}

static void test_lru_by_bytes(void **st)
{
    (void)st;
    char html[1001];
    memset(html, 'x', 1000);
    html[1000] = '\0';
    page_cache_entry_t *a = mk(KEY_A, "mail", html, 60000), *b = mk(KEY_B, "mail", html, 60000),
                       *cc = mk(KEY_C, "mail", html, 60000), *d = mk(KEY_D, "mail", html, 60000);
    size_t one = a->bytes;
    page_cache_t *c = page_cache_create(3 * one + one / 2);
    assert_int_equal(page_cache_put(c, a, T0), 1);
    assert_int_equal(page_cache_put(c, b, T0), 1);
    assert_int_equal(page_cache_put(c, cc, T0), 1);
    page_cache_entry_unref(page_cache_get(c, KEY_A, T0)); /* A is now the most recent; B the least */
    assert_int_equal(page_cache_put(c, d, T0), 1);
    page_cache_stats_t s;
    page_cache_stats(c, &s);
    assert_int_equal(s.entries, 3);
    assert_int_equal(s.bytes, 3 * one);
    assert_int_equal(s.evictions, 1);
    assert_null(page_cache_get(c, KEY_B, T0));
    const char *live[] = {KEY_A, KEY_C, KEY_D};
    for (int i = 0; i < 3; i++) {
        page_cache_entry_t *g = page_cache_get(c, live[i], T0);
        assert_non_null(g);
        page_cache_entry_unref(g);
    }
    /* an entry larger than the whole bound is refused and evicts nothing */
    char *huge = malloc(4 * one);
    memset(huge, 'y', 4 * one - 1);
    huge[4 * one - 1] = '\0';
    page_cache_entry_t *h = mk(KEY_B, "mail", huge, 60000);
    assert_int_equal(page_cache_put(c, h, T0), 0);
    page_cache_stats(c, &s);
    assert_int_equal(s.entries, 3);
    page_cache_entry_unref(h);
    free(huge);

    assert_int_equal(page_cache_drop_app(c, "other"), 0);
    assert_int_equal(page_cache_drop_app(c, "mail"), 3);
    page_cache_stats(c, &s);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    page_cache_entry_unref(a);
    page_cache_entry_unref(b);
    page_cache_entry_unref(cc);
    page_cache_entry_unref(d);
    page_cache_free(c);
}

static void test_key(char out[65], int i)
{
    char *hex = crypto_sha256_hex(&i, sizeof(i));
    memcpy(out, hex, 65);
    free(hex);
}

static void test_many_entries_grow_table(void **st)
{
    (void)st;
    page_cache_t *c = page_cache_create(0);
    char key[65];
    for (int i = 0; i < 2000; i++) {
        test_key(key, i);
        page_cache_entry_t *e = mk(key, i % 2 ? "odd" : "even", "<p>x</p>", 60000);
        assert_int_equal(page_cache_put(c, e, T0), 1);
        page_cache_entry_unref(e);
    }
    for (int i = 0; i < 2000; i++) {
        test_key(key, i);
        page_cache_entry_t *e = page_cache_get(c, key, T0);
        assert_non_null(e);
        assert_string_equal(e->key, key);
        page_cache_entry_unref(e);
    }
    assert_int_equal(page_cache_drop_app(c, "odd"), 1000);
    page_cache_stats_t s;
    page_cache_stats(c, &s);
    assert_int_equal(s.entries, 1000);
    page_cache_free(c);
}

static void test_reader_outlives_eviction(void **st)
{
    (void)st;
    page_cache_entry_t *a = mk(KEY_A, "mail", "<p>still here</p>", 60000);
    page_cache_t *c = page_cache_create(a->bytes); /* room for one */
    assert_int_equal(page_cache_put(c, a, T0), 1);
    page_cache_entry_unref(a); /* only the cache holds it now */
    page_cache_entry_t *reader = page_cache_get(c, KEY_A, T0);
    assert_int_equal(refs(reader), 2);
    page_cache_entry_t *b = mk(KEY_B, "mail", "<p>other!!!!</p>", 60000);
    assert_int_equal(page_cache_put(c, b, T0), 1); /* evicts A while the reader holds it */
    page_cache_entry_unref(b);
    assert_null(page_cache_get(c, KEY_A, T0));
    assert_int_equal(refs(reader), 1);
    /* under ASan, a use after free here would fail the test */
    assert_string_equal(reader->html, "<p>still here</p>");
    assert_int_equal(reader->segments[0].len, strlen("<p>still here</p>"));
    page_cache_entry_unref(reader);
    page_cache_free(c); /* frees B, which only the cache held */
}

/* ---- CSRF segmentation ---- */

static char *replace_all(const char *s, const char *from, const char *to)
{
    fig_buf_t b = FIG_BUF_INIT;
    const char *p;
    while ((p = strstr(s, from)) != NULL) {
        fig_buf_append(&b, s, (size_t)(p - s));
        fig_buf_append_str(&b, to);
        s = p + strlen(from);
    }
    fig_buf_append_str(&b, s);
    return fig_buf_steal(&b);
}

static char *join(const h2o_iovec_t *iov, size_t n)
{
    fig_buf_t b = FIG_BUF_INIT;
    for (size_t i = 0; i < n; i++)
        fig_buf_append(&b, iov[i].base, iov[i].len);
    return fig_buf_steal(&b);
}

static void test_csrf_segments(void **st)
{
    (void)st;
    const char *doc = PH "<form method=\"post\"><input type=\"hidden\" name=\"_csrf\" value=\"" PH "\">"
                         "</form><form method=\"post\"><input type=\"hidden\" name=\"_csrf\" value=\"" PH
                         "\"></form>" PH PH;
    const char *token = "Qk9CLXRva2VuLWZvci1zZXNzaW9uLTEyMzQ1Njc4OTAx";
    page_cache_entry_t *e = mk(KEY_A, "mail", doc, 60000);
    assert_int_equal(e->n_placeholders, 5);
    char *want = replace_all(doc, PH, token);
    assert_int_equal(page_cache_entry_body_len(e, strlen(token)), strlen(want));

    h2o_iovec_t iov[16];
    assert_int_equal(page_cache_entry_iov_max(e), 11);
    assert_int_equal(page_cache_entry_iov(e, token, strlen(token), iov, 10), 0); /* too small */
    size_t n = page_cache_entry_iov(e, token, strlen(token), iov, 16);
    assert_int_equal(n, 8); /* empty segments (start, between PH PH, end) are skipped */
    char *got = join(iov, n);
    assert_string_equal(got, want);
    /* the hit does not copy the page: segments point into the entry */
    assert_true(iov[1].base >= e->html && iov[1].base < e->html + e->html_len);
    free(got);
    free(want);

    /* another session's token yields its own bytes from the same entry */
    const char *token2 = "c2Vzc2lvbi0y";
    want = replace_all(doc, PH, token2);
    n = page_cache_entry_iov(e, token2, strlen(token2), iov, 16);
    got = join(iov, n);
    assert_string_equal(got, want);
    free(got);
    free(want);

    /* pool variant: holds a reference until the pool is cleared, copies the token */
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    char tok[] = "dG9rZW4tMw";
    h2o_iovec_t *piov = page_cache_entry_iov_pool(e, tok, strlen(tok), &pool, &n);
    want = replace_all(doc, PH, "dG9rZW4tMw");
    memset(tok, '!', strlen(tok)); /* the caller's token buffer may go */
    assert_int_equal(refs(e), 2);
    got = join(piov, n);
    assert_string_equal(got, want);
    free(got);
    free(want);
    h2o_mem_clear_pool(&pool);
    assert_int_equal(refs(e), 1);
    page_cache_entry_unref(e);

    /* no placeholder: one piece, the whole document */
    e = mk(KEY_B, "mail", "<p>no forms</p>", 60000);
    n = page_cache_entry_iov(e, token, strlen(token), iov, 1);
    assert_int_equal(n, 1);
    assert_int_equal(iov[0].len, e->html_len);
    assert_int_equal(page_cache_entry_body_len(e, 999), e->html_len);
    page_cache_entry_unref(e);
}

/* ---- single flight ---- */

typedef struct {
    page_cache_waiter_t w; /* embedded, as a request would */
    int called;
    page_cache_entry_t *got;
    int *counter;
} test_waiter_t;

static void on_wake(page_cache_waiter_t *w, page_cache_entry_t *entry)
{
    test_waiter_t *t = H2O_STRUCT_FROM_MEMBER(test_waiter_t, w, w);
    t->called++;
    t->got = entry;
    (*t->counter)++;
}

typedef struct {
    h2o_evloop_t *loop;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t receiver;
} test_loop_t;

static void loop_init(test_loop_t *l)
{
    l->loop = h2o_evloop_create();
    l->queue = h2o_multithread_create_queue(l->loop);
    page_cache_receiver_init(l->queue, &l->receiver);
}

static void loop_dispose(test_loop_t *l)
{
    page_cache_receiver_dispose(l->queue, &l->receiver);
    h2o_multithread_destroy_queue(l->queue);
    h2o_evloop_run(l->loop, 0);
    h2o_evloop_destroy(l->loop);
}

/* Runs the loop until *counter reaches want (or 5 s pass), then a little longer so
 * that a callback that should not come would show. */
static void run_until(test_loop_t *l, int *counter, int want)
{
    uint64_t limit = h2o_now(l->loop) + 5000;
    while (*counter < want && h2o_now(l->loop) < limit)
        h2o_evloop_run(l->loop, 50);
    h2o_evloop_run(l->loop, 10);
}

static void waiter_init(test_waiter_t *t, test_loop_t *l, int *counter)
{
    memset(t, 0, sizeof(*t));
    t->w.receiver = &l->receiver;
    t->w.cb = on_wake;
    t->counter = counter;
}

static void test_flight_one_loop(void **st)
{
    (void)st;
    test_loop_t l;
    loop_init(&l);
    page_cache_t *c = page_cache_create(0);
    int counter = 0;
    page_cache_entry_t *hit = NULL;
    test_waiter_t lead, w[4];
    waiter_init(&lead, &l, &counter);
    for (int i = 0; i < 4; i++)
        waiter_init(&w[i], &l, &counter);

    assert_int_equal(page_cache_flight_begin(c, KEY_A, T0, &lead.w, &hit), PAGE_CACHE_LEAD);
    assert_null(hit);
    for (int i = 0; i < 4; i++)
        assert_int_equal(page_cache_flight_begin(c, KEY_A, T0, &w[i].w, &hit), PAGE_CACHE_WAIT);
    /* another key is another flight */
    test_waiter_t other;
    waiter_init(&other, &l, &counter);
    assert_int_equal(page_cache_flight_begin(c, KEY_B, T0, &other.w, &hit), PAGE_CACHE_LEAD);
    page_cache_flight_leave(c, &w[2].w); /* client went away before the leader finished */
    page_cache_flight_leave(c, &w[2].w); /* twice is harmless */
    page_cache_flight_leave(c, &lead.w); /* a leader is not waiting: no-op */

    page_cache_entry_t *e = mk(KEY_A, "mail", "<p>generated</p>", 60000);
    page_cache_flight_end(c, KEY_A, e, T0);
    assert_int_equal(counter, 0); /* never called back inside end() */
    /* arriving after end(): the entry is already in memory */
    test_waiter_t late;
    waiter_init(&late, &l, &counter);
    assert_int_equal(page_cache_flight_begin(c, KEY_A, T0, &late.w, &hit), PAGE_CACHE_HIT);
    assert_ptr_equal(hit, e);
    page_cache_entry_unref(hit);

    run_until(&l, &counter, 3);
    assert_int_equal(counter, 3);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(w[i].called, i == 2 ? 0 : 1);
        if (i != 2) {
            assert_ptr_equal(w[i].got, e);
            page_cache_entry_unref(w[i].got);
        }
        page_cache_flight_leave(c, &w[i].w); /* after the callback: no-op */
    }
    assert_int_equal(refs(e), 2); /* the test's and the cache's */

    /* a failed leader wakes its waiters with NULL; one of them may lead next */
    test_waiter_t f1, f2;
    waiter_init(&f1, &l, &counter);
    waiter_init(&f2, &l, &counter);
    assert_int_equal(page_cache_flight_begin(c, KEY_B, T0, &f1.w, &hit), PAGE_CACHE_WAIT);
    assert_int_equal(page_cache_flight_begin(c, KEY_B, T0, &f2.w, &hit), PAGE_CACHE_WAIT);
    page_cache_flight_end(c, KEY_B, NULL, T0);
    counter = 0;
    run_until(&l, &counter, 2);
    assert_int_equal(f1.called, 1);
    assert_int_equal(f2.called, 1);
    assert_null(f1.got);
    assert_null(f2.got);
    assert_int_equal(page_cache_flight_begin(c, KEY_B, T0, &f1.w, &hit), PAGE_CACHE_LEAD);

    /* leaving after end() detached the waiter but before delivery: still never called,
     * and the entry reference that was on its way is released (ASan/LSan check) */
    test_waiter_t g;
    waiter_init(&g, &l, &counter);
    assert_int_equal(page_cache_flight_begin(c, KEY_B, T0, &g.w, &hit), PAGE_CACHE_WAIT);
    page_cache_entry_t *eb = mk(KEY_B, "mail", "<p>b</p>", 60000);
    page_cache_flight_end(c, KEY_B, eb, T0);
    assert_int_equal(refs(eb), 3); /* test, cache, the wake-up in the queue */
    page_cache_flight_leave(c, &g.w);
    memset(&g, 0xA5, sizeof(g)); /* the waiter's memory may be reused at once */
    counter = 0;
    h2o_evloop_run(l.loop, 50);
    h2o_evloop_run(l.loop, 10);
    assert_int_equal(counter, 0);
    assert_int_equal(refs(eb), 2);

    page_cache_stats_t s;
    page_cache_stats(c, &s);
    assert_int_equal(s.flights_led, 3);
    assert_int_equal(s.flights_joined, 7);

    page_cache_entry_unref(eb);
    page_cache_entry_unref(e);
    page_cache_free(c);
    loop_dispose(&l);
}

/* Two threads, each with its own evloop and receiver: the leader is on A (the test's
 * thread), five waiters on A and five on B; one more on each side leaves. */
typedef struct {
    page_cache_t *c;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int b_joined;   /* B has queued its waiters */
    int b_counter;
    test_waiter_t bw[6];
} cross_t;

static void *thread_b(void *arg)
{
    cross_t *x = arg;
    test_loop_t l;
    loop_init(&l);
    page_cache_entry_t *hit = NULL;
    int ok = 1;
    for (int i = 0; i < 6; i++) {
        waiter_init(&x->bw[i], &l, &x->b_counter);
        ok &= page_cache_flight_begin(x->c, KEY_A, T0, &x->bw[i].w, &hit) == PAGE_CACHE_WAIT;
    }
    page_cache_flight_leave(x->c, &x->bw[5].w);
    pthread_mutex_lock(&x->mu);
    x->b_joined = ok ? 1 : -1;
    pthread_cond_signal(&x->cond);
    pthread_mutex_unlock(&x->mu);
    run_until(&l, &x->b_counter, 5);
    loop_dispose(&l);
    return NULL;
}

static void test_flight_two_threads(void **st)
{
    (void)st;
    test_loop_t a;
    loop_init(&a);
    cross_t x;
    memset(&x, 0, sizeof(x));
    x.c = page_cache_create(0);
    pthread_mutex_init(&x.mu, NULL);
    pthread_cond_init(&x.cond, NULL);

    int a_counter = 0;
    page_cache_entry_t *hit = NULL;
    test_waiter_t lead, aw[6];
    waiter_init(&lead, &a, &a_counter);
    assert_int_equal(page_cache_flight_begin(x.c, KEY_A, T0, &lead.w, &hit), PAGE_CACHE_LEAD);

    pthread_t tb;
    assert_int_equal(pthread_create(&tb, NULL, thread_b, &x), 0);
    for (int i = 0; i < 6; i++) {
        waiter_init(&aw[i], &a, &a_counter);
        assert_int_equal(page_cache_flight_begin(x.c, KEY_A, T0, &aw[i].w, &hit), PAGE_CACHE_WAIT);
    }
    page_cache_flight_leave(x.c, &aw[5].w);
    pthread_mutex_lock(&x.mu);
    while (x.b_joined == 0)
        pthread_cond_wait(&x.cond, &x.mu);
    pthread_mutex_unlock(&x.mu);
    assert_int_equal(x.b_joined, 1);

    page_cache_entry_t *e = mk(KEY_A, "mail", "<p>shared</p>", 60000);
    page_cache_flight_end(x.c, KEY_A, e, T0);
    page_cache_entry_unref(e); /* the cache and the ten wake-ups hold it now */
    run_until(&a, &a_counter, 5);
    pthread_join(tb, NULL);

    assert_int_equal(a_counter, 5);
    assert_int_equal(x.b_counter, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(aw[i].called, 1);
        assert_int_equal(x.bw[i].called, 1);
        assert_ptr_equal(aw[i].got, e);
        assert_ptr_equal(x.bw[i].got, e);
    }
    assert_int_equal(aw[5].called, 0);
    assert_int_equal(x.bw[5].called, 0);
    assert_int_equal(refs(e), 11);
    for (int i = 0; i < 5; i++) {
        page_cache_entry_unref(aw[i].got);
        page_cache_entry_unref(x.bw[i].got);
    }
    assert_int_equal(refs(e), 1);
    page_cache_stats_t s;
    page_cache_stats(x.c, &s);
    assert_int_equal(s.flights_led, 1);
    assert_int_equal(s.flights_joined, 12);
    page_cache_free(x.c);
    pthread_mutex_destroy(&x.mu);
    pthread_cond_destroy(&x.cond);
    loop_dispose(&a);
}

/* ---- SQLite ---- */

static void test_db_persistence(void **st)
{
    (void)st;
    char dir[] = "/tmp/fig-page-cache-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/cache.db", dir);
    fig_err_t err;

    sqlite3 *db = page_cache_db_open(path, &err);
    assert_non_null(db);
    const char *doc = "<!doctype html><form method=\"post\"><input name=\"_csrf\" value=\"" PH "\"></form>";
    page_cache_entry_t *live = mk(KEY_A, "mail", doc, 60000);
    page_cache_entry_t *dead = mk(KEY_B, "mail", "<p>old</p>", 1000);
    fig_err_t e2;
    page_cache_entry_t *untitled =
        page_cache_entry_new(KEY_C, "notes", NULL, "<p>n</p>", 8, 99, T0, T0 + 60000, &e2);
    assert_non_null(untitled);
    assert_int_equal(page_cache_db_put(db, live, &err), 0);
    assert_int_equal(page_cache_db_put(db, dead, &err), 0);
    assert_int_equal(page_cache_db_put(db, untitled, &err), 0);
    assert_int_equal(page_cache_db_put(db, live, &err), 0); /* replace is fine */
    sqlite3_close_v2(db);

    db = page_cache_db_open(path, &err); /* a restart */
    assert_non_null(db);
    page_cache_entry_t *got = NULL;
    assert_int_equal(page_cache_db_get(db, KEY_A, T0 + 5000, &got, &err), 1);
    assert_string_equal(got->key, KEY_A);
    assert_string_equal(got->app, "mail");
    assert_string_equal(got->title, "Title");
    assert_int_equal(got->html_len, strlen(doc));
    assert_memory_equal(got->html, doc, strlen(doc));
    assert_int_equal(got->data_version, 7);
    assert_int_equal(got->created_ms, T0);
    assert_int_equal(got->expires_ms, T0 + 60000);
    assert_int_equal(got->n_placeholders, 1); /* segments rebuilt on load */
    page_cache_entry_unref(got);
    assert_int_equal(page_cache_db_get(db, KEY_C, T0, &got, &err), 1);
    assert_null(got->title);
    assert_int_equal(got->data_version, 99);
    page_cache_entry_unref(got);
    /* expired rows are not served, then deleted */
    assert_int_equal(page_cache_db_get(db, KEY_B, T0 + 1000, &got, &err), 0);
    assert_null(got);
    assert_int_equal(page_cache_db_get(db, KEY_D, T0, &got, &err), 0);
    assert_int_equal(page_cache_db_get(db, "nope", T0, &got, &err), -1);
    int deleted = -1;
    assert_int_equal(page_cache_db_delete_expired(db, T0 + 1000, &deleted, &err), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(page_cache_db_get(db, KEY_B, T0, &got, &err), 0); /* gone even for an earlier clock */
    assert_int_equal(page_cache_db_delete_expired(db, T0 + 1000, &deleted, &err), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(page_cache_db_drop_app(db, "notes", &err), 0);
    assert_int_equal(page_cache_db_get(db, KEY_C, T0, &got, &err), 0);
    assert_int_equal(page_cache_db_get(db, KEY_A, T0, &got, &err), 1);
    page_cache_entry_unref(got);

    /* a file from a newer figment is refused, not reinterpreted */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 9", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close_v2(db);
    assert_null(page_cache_db_open(path, &err));
    assert_int_equal(err.code, FIG_E_DB);

    page_cache_entry_unref(live);
    page_cache_entry_unref(dead);
    page_cache_entry_unref(untitled);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_golden_and_parts),
        cmocka_unit_test(test_entry_validation),
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_lru_by_bytes),
        cmocka_unit_test(test_many_entries_grow_table),
        cmocka_unit_test(test_reader_outlives_eviction),
        cmocka_unit_test(test_csrf_segments),
        cmocka_unit_test(test_flight_one_loop),
        cmocka_unit_test(test_flight_two_threads),
        cmocka_unit_test(test_db_persistence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
