/*
 * test_trace.c — the trace store: writer -> reader round trip from several
 * threads, list filters and paging, every column of trace_get, exact
 * nearest-rank percentiles in trace_stats, feedback (and its validation),
 * redaction of tool results, a full queue dropping and counting, write errors
 * counting as drops, stop flushing, and the schema on disk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "trace.h"

static char tmpdir[64];

static int setup_dir(void **s)
{
    (void)s;
    strcpy(tmpdir, "/tmp/figment-trace-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **s)
{
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *path_in(const char *name)
{
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b, "%s/%s", tmpdir, name);
    return fig_buf_steal(&b);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define BASE_MS INT64_C(1700000000000)

/* Trace number i of the big set: every field derived from i, so checks can recompute. */
static trace_t *make_trace(int i)
{
    trace_t *t = trace_new();
    snprintf(t->trace_id, sizeof(t->trace_id), "%032x", i);
    snprintf(t->span_id, sizeof(t->span_id), "%016x", i + 1);
    snprintf(t->session_id, sizeof(t->session_id), "%032x", i % 7);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "app%d", i % 2);
    t->app = fig_strdup(tmp);
    t->method = fig_strdup(i % 5 == 0 ? "POST" : "GET");
    snprintf(tmp, sizeof(tmp), "/page/%d?x=1", i);
    t->path = fig_strdup(tmp);
    t->route_rule = fig_strdup("default");
    snprintf(tmp, sizeof(tmp), "p/m%d", i % 3);
    t->model = fig_strdup(tmp);
    t->provider = fig_strdup("p");
    t->route = fig_strdup("p/m0 ok");
    t->prompt_version = fig_strdup("abcdef");
    t->status = i % 50 == 0 ? 502 : 200;
    t->outcome = fig_strdup(i % 50 == 0 ? "upstream" : i % 100 == 1 ? "stale" : "ok");
    t->error = i % 50 == 0 ? fig_strdup("model said no") : NULL;
    t->started_unix_ms = BASE_MS + i;
    t->queued_ms = 0.5;
    t->connect_ms = 1.25;
    t->ttft_ms = 10 + i;
    t->llm_ms = 100.5;
    t->tool_ms = 3;
    t->render_ms = 0.75;
    t->total_ms = i + 1;
    t->overhead_ms = 0.125;
    t->prompt_tokens = 1000 + i;
    t->cached_tokens = 10;
    t->cache_write_tokens = 20;
    t->completion_tokens = 300;
    t->cost_usd = (i % 10) / 1000.0;
    t->attempts = 1 + i % 2;
    t->cache_hit = i % 4 == 0;
    t->stale = i % 100 == 1;
    t->state = json_pack("{s:i, s:s}", "n", i, "who", "ana");
    t->request = json_pack("{s:s, s:s, s:{}, s:{}}", "method", "GET", "path", "/", "query", "form");
    t->tool_calls = json_pack("[{s:s, s:{s:s}, s:s, s:f, s:b}]", "name", "sql", "arguments", "q", "select 1", "result",
                              "1 row", "ms", 2.5, "is_error", 0);
    t->messages = json_pack("[{s:s, s:s}]", "role", "user", "content", "hi");
    t->answer = fig_strdup("# Hello");
    t->page_html = fig_strdup("<h1>Hello</h1>");
    return t;
}

typedef struct {
    trace_writer_t *w;
    int from, to;
} submit_arg_t;

static void *submit_thread(void *p)
{
    submit_arg_t *a = p;
    for (int i = a->from; i < a->to; i++)
        if (trace_submit(a->w, make_trace(i)) != 0)
            return (void *)1;
    return NULL;
}

static size_t list_count(trace_reader_t *r, trace_filter_t f)
{
    fig_err_t err = {0};
    f.limit = 1000;
    json_t *l = trace_list(r, &f, &err);
    assert_non_null(l);
    size_t n = json_array_size(l);
    json_decref(l);
    return n;
}

static int row_index(json_t *row)
{
    return (int)strtol(json_string_value(json_object_get(row, "trace_id")), NULL, 16);
}

static void test_roundtrip_threads_list_get(void **s)
{
    (void)s;
    char *db = path_in("var/deep/traces.db"); /* the parent directories get created */
    fig_err_t err = {0};
    trace_writer_t *w = trace_writer_start(db, 0, &err);
    assert_non_null(w);

    pthread_t th[4];
    submit_arg_t args[4];
    for (int k = 0; k < 4; k++) {
        args[k] = (submit_arg_t){w, k * 250, (k + 1) * 250};
        assert_int_equal(pthread_create(&th[k], NULL, submit_thread, &args[k]), 0);
    }
    for (int k = 0; k < 4; k++) {
        void *rv;
        pthread_join(th[k], &rv);
        assert_null(rv);
    }
    trace_writer_flush(w);
    assert_int_equal(trace_writer_dropped(w), 0);

    trace_reader_t *r = trace_reader_open(db, &err);
    assert_non_null(r);

    /* Default limit 100, newest first. */
    json_t *l = trace_list(r, NULL, &err);
    assert_non_null(l);
    assert_int_equal(json_array_size(l), 100);
    for (int k = 0; k < 100; k++)
        assert_int_equal(row_index(json_array_get(l, k)), 999 - k);
    json_t *first = json_array_get(l, 0);
    const char *keys[] = {"trace_id", "started_unix_ms", "app",      "method",   "path",          "model",
                          "status",   "outcome",         "total_ms", "ttft_ms",  "cost_usd",      "prompt_tokens",
                          "completion_tokens", "cache_hit", "stale", "feedback"};
    assert_int_equal(json_object_size(first), sizeof(keys) / sizeof(keys[0]));
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        assert_non_null(json_object_get(first, keys[k]));
    assert_int_equal(json_integer_value(json_object_get(first, "started_unix_ms")), BASE_MS + 999);
    assert_string_equal(json_string_value(json_object_get(first, "app")), "app1");
    assert_string_equal(json_string_value(json_object_get(first, "path")), "/page/999?x=1");
    assert_string_equal(json_string_value(json_object_get(first, "model")), "p/m0");
    assert_true(json_real_value(json_object_get(first, "total_ms")) == 1000.0);
    assert_true(json_real_value(json_object_get(first, "ttft_ms")) == 1009.0);
    assert_true(json_real_value(json_object_get(first, "cost_usd")) == 9 / 1000.0);
    assert_int_equal(json_integer_value(json_object_get(first, "prompt_tokens")), 1999);
    assert_true(json_is_false(json_object_get(first, "cache_hit")));
    assert_true(json_is_null(json_object_get(first, "feedback")));
    json_decref(l);

    /* Limit caps at 1000; paging is stable. */
    assert_int_equal(list_count(r, (trace_filter_t){.limit = 5000}), 1000);
    trace_filter_t f = {.limit = 5000};
    l = trace_list(r, &f, &err);
    assert_int_equal(json_array_size(l), 1000);
    json_decref(l);
    l = trace_list(r, &(trace_filter_t){.limit = 10, .offset = 10}, &err);
    assert_int_equal(json_array_size(l), 10);
    for (int k = 0; k < 10; k++)
        assert_int_equal(row_index(json_array_get(l, k)), 989 - k);
    json_decref(l);
    l = trace_list(r, &(trace_filter_t){.limit = 10, .offset = 995}, &err);
    assert_int_equal(json_array_size(l), 5);
    json_decref(l);

    /* Filters, alone and combined. */
    assert_int_equal(list_count(r, (trace_filter_t){.app = "app1"}), 500);
    assert_int_equal(list_count(r, (trace_filter_t){.model = "p/m2"}), 333);
    assert_int_equal(list_count(r, (trace_filter_t){.app = "app1", .model = "p/m2"}), 166);
    assert_int_equal(list_count(r, (trace_filter_t){.outcome = "upstream"}), 20);
    assert_int_equal(list_count(r, (trace_filter_t){.outcome = "stale"}), 10);
    assert_int_equal(list_count(r, (trace_filter_t){.app = "app1", .outcome = "upstream"}), 0);
    assert_int_equal(list_count(r, (trace_filter_t){.min_total_ms = 991}), 10);
    assert_int_equal(list_count(r, (trace_filter_t){.min_cost_usd = 0.009}), 100);
    assert_int_equal(list_count(r, (trace_filter_t){.since_unix_ms = BASE_MS + 900}), 100);
    assert_int_equal(list_count(r, (trace_filter_t){.app = "app0",
                                                    .model = "p/m0",
                                                    .outcome = "upstream",
                                                    .min_total_ms = 100,
                                                    .min_cost_usd = 0,
                                                    .since_unix_ms = BASE_MS + 500}),
                     /* i in [500,1000), i%50==0, i%3==0, i%2==0: 600, 750, 900 */ 3);
    assert_int_equal(list_count(r, (trace_filter_t){.app = "nope"}), 0);
    l = trace_list(r, &(trace_filter_t){.model = "p/m1", .limit = 3}, &err);
    assert_int_equal(row_index(json_array_get(l, 0)), 997);
    assert_int_equal(row_index(json_array_get(l, 2)), 991);
    json_decref(l);

    /* Bad filters are refused. */
    assert_null(trace_list(r, &(trace_filter_t){.limit = -1}, &err));
    assert_int_equal(err.code, FIG_E_INVALID);
    assert_null(trace_list(r, &(trace_filter_t){.offset = -1}, &err));
    assert_null(trace_list(r, &(trace_filter_t){.min_total_ms = NAN}, &err));

    /* trace_get: every column with its type, JSON parsed back. */
    char id[33];
    snprintf(id, sizeof(id), "%032x", 450);
    json_t *g = trace_get(r, id, &err);
    assert_non_null(g);
    trace_t *want = make_trace(450);
    assert_int_equal(json_object_size(g), 39); /* 38 columns + feedback */
    assert_string_equal(json_string_value(json_object_get(g, "trace_id")), want->trace_id);
    assert_string_equal(json_string_value(json_object_get(g, "span_id")), want->span_id);
    assert_string_equal(json_string_value(json_object_get(g, "session_id")), want->session_id);
    const char *strs[] = {"app", "method", "path", "route_rule", "model", "provider", "route", "prompt_version",
                          "outcome", "error", "answer", "page_html"};
    const char *vals[] = {want->app,   want->method, want->path,   want->route_rule,
                          want->model, want->provider, want->route, want->prompt_version,
                          want->outcome, want->error, want->answer, want->page_html};
    for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]); k++)
        assert_string_equal(json_string_value(json_object_get(g, strs[k])), vals[k]);
    assert_int_equal(json_integer_value(json_object_get(g, "status")), 502);
    assert_int_equal(json_integer_value(json_object_get(g, "started_unix_ms")), BASE_MS + 450);
    const char *reals[] = {"queued_ms", "connect_ms", "ttft_ms", "llm_ms", "tool_ms", "render_ms", "total_ms",
                           "overhead_ms", "cost_usd"};
    double rvals[] = {0.5, 1.25, 460, 100.5, 3, 0.75, 451, 0.125, 0};
    for (size_t k = 0; k < sizeof(reals) / sizeof(reals[0]); k++) {
        json_t *v = json_object_get(g, reals[k]);
        assert_true(json_is_real(v));
        assert_true(json_real_value(v) == rvals[k]);
    }
    assert_int_equal(json_integer_value(json_object_get(g, "prompt_tokens")), 1450);
    assert_int_equal(json_integer_value(json_object_get(g, "cached_tokens")), 10);
    assert_int_equal(json_integer_value(json_object_get(g, "cache_write_tokens")), 20);
    assert_int_equal(json_integer_value(json_object_get(g, "completion_tokens")), 300);
    assert_int_equal(json_integer_value(json_object_get(g, "attempts")), 1);
    assert_true(json_is_false(json_object_get(g, "cache_hit")));
    assert_true(json_is_false(json_object_get(g, "stale")));
    assert_true(json_equal(json_object_get(g, "state"), want->state));
    assert_true(json_equal(json_object_get(g, "request"), want->request));
    assert_true(json_equal(json_object_get(g, "tool_calls"), want->tool_calls));
    assert_true(json_equal(json_object_get(g, "messages"), want->messages));
    assert_true(json_is_array(json_object_get(g, "feedback")));
    assert_int_equal(json_array_size(json_object_get(g, "feedback")), 0);
    trace_free(want);
    json_decref(g);

    /* A NULL string field reads back as null. */
    snprintf(id, sizeof(id), "%032x", 401);
    g = trace_get(r, id, &err);
    assert_true(json_is_null(json_object_get(g, "error")));
    assert_true(json_is_true(json_object_get(g, "stale")));
    json_decref(g);

    /* Unknown and malformed ids. */
    err = (fig_err_t){0};
    assert_null(trace_get(r, "ffffffffffffffffffffffffffffffff", &err));
    assert_int_equal(err.code, FIG_E_INVALID);
    err = (fig_err_t){0};
    assert_null(trace_get(r, "not-an-id", &err));
    assert_int_equal(err.code, FIG_E_INVALID);
    assert_null(trace_get(r, "0000000000000000000000000000000A", &err)); /* upper case is not our form */

    trace_reader_close(r);
    trace_writer_stop(w);
    free(db);
}

static void submit_stats_trace(trace_writer_t *w, int *seq, const char *app, const char *model, int64_t started,
                               double total, const char *outcome, double cost, int cache_hit)
{
    trace_t *t = trace_new();
    snprintf(t->trace_id, sizeof(t->trace_id), "%032x", 0x100000 + (*seq)++);
    t->app = fig_strdup(app);
    t->model = fig_strdup(model);
    t->outcome = fig_strdup(outcome);
    t->started_unix_ms = started;
    t->total_ms = total;
    t->cost_usd = cost;
    t->cache_hit = cache_hit;
    assert_int_equal(trace_submit(w, t), 0);
}

static json_t *find_stat(json_t *stats, const char *app, const char *model, int64_t bucket)
{
    size_t i;
    json_t *o;
    json_array_foreach(stats, i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, "app")), app) == 0 &&
            strcmp(json_string_value(json_object_get(o, "model")), model) == 0 &&
            json_integer_value(json_object_get(o, "bucket_unix_ms")) == bucket)
            return o;
    }
    return NULL;
}

static void test_stats_percentiles(void **s)
{
    (void)s;
    char *db = path_in("stats.db");
    fig_err_t err = {0};
    trace_writer_t *w = trace_writer_start(db, 0, &err);
    assert_non_null(w);
    const int64_t since = BASE_MS, bucket = 60000;
    int seq = 0;
    /* Bucket 0, a/m: total_ms 1..100 submitted in a scrambled order (37 is coprime with 100). */
    for (int k = 0; k < 100; k++) {
        int v = (k * 37) % 100 + 1;
        submit_stats_trace(w, &seq, "a", "m", since + 1000 + k, v, v % 10 == 0 ? "upstream" : v == 1 ? "stale" : "ok",
                           0.25, v <= 5);
    }
    /* Bucket 0, a/n: 30, 10, 20. */
    submit_stats_trace(w, &seq, "a", "n", since + 5, 30, "ok", 0.5, 0);
    submit_stats_trace(w, &seq, "a", "n", since + 6, 10, "budget", 0.5, 0);
    submit_stats_trace(w, &seq, "a", "n", since + 7, 20, "ok", 0.5, 1);
    /* Bucket 2, b/m: one trace. */
    submit_stats_trace(w, &seq, "b", "m", since + 2 * bucket + 1, 7.5, "ok", 0, 0);
    /* Before since: ignored. */
    submit_stats_trace(w, &seq, "a", "m", since - 1, 100000, "ok", 99, 1);
    trace_writer_flush(w);

    trace_reader_t *r = trace_reader_open(db, &err);
    assert_non_null(r);
    json_t *st = trace_stats(r, since, bucket, &err);
    assert_non_null(st);
    assert_int_equal(json_array_size(st), 3);
    /* Oldest bucket first, then app, model. */
    assert_ptr_equal(json_array_get(st, 0), find_stat(st, "a", "m", since));
    assert_ptr_equal(json_array_get(st, 1), find_stat(st, "a", "n", since));
    assert_ptr_equal(json_array_get(st, 2), find_stat(st, "b", "m", since + 2 * bucket));

    json_t *o = json_array_get(st, 0);
    assert_int_equal(json_integer_value(json_object_get(o, "count")), 100);
    assert_int_equal(json_integer_value(json_object_get(o, "errors")), 10); /* stale is not an error */
    assert_true(json_real_value(json_object_get(o, "cost_usd")) == 25.0);
    assert_int_equal(json_integer_value(json_object_get(o, "cache_hits")), 5);
    assert_true(json_real_value(json_object_get(o, "p50_ms")) == 50.0);
    assert_true(json_real_value(json_object_get(o, "p95_ms")) == 95.0);
    assert_true(json_real_value(json_object_get(o, "p99_ms")) == 99.0);

    o = json_array_get(st, 1);
    assert_int_equal(json_integer_value(json_object_get(o, "count")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "errors")), 1);
    assert_true(json_real_value(json_object_get(o, "cost_usd")) == 1.5);
    assert_int_equal(json_integer_value(json_object_get(o, "cache_hits")), 1);
    assert_true(json_real_value(json_object_get(o, "p50_ms")) == 20.0);
    assert_true(json_real_value(json_object_get(o, "p95_ms")) == 30.0);
    assert_true(json_real_value(json_object_get(o, "p99_ms")) == 30.0);

    o = json_array_get(st, 2);
    assert_int_equal(json_integer_value(json_object_get(o, "count")), 1);
    assert_true(json_real_value(json_object_get(o, "p50_ms")) == 7.5);
    assert_true(json_real_value(json_object_get(o, "p99_ms")) == 7.5);
    json_decref(st);

    /* One big bucket merges a/m across time; bad arguments are refused. */
    st = trace_stats(r, since, 10 * bucket, &err);
    assert_int_equal(json_array_size(st), 3);
    json_decref(st);
    st = trace_stats(r, since + 3 * bucket, bucket, &err);
    assert_int_equal(json_array_size(st), 0);
    json_decref(st);
    assert_null(trace_stats(r, since, 0, &err));
    assert_int_equal(err.code, FIG_E_INVALID);
    assert_null(trace_stats(r, -1, bucket, &err));

    trace_reader_close(r);
    trace_writer_stop(w);
    free(db);
}

static void test_feedback(void **s)
{
    (void)s;
    char *db = path_in("fb.db");
    fig_err_t err = {0};
    trace_writer_t *w = trace_writer_start(db, 0, &err);
    assert_non_null(w);
    for (int i = 0; i < 3; i++)
        assert_int_equal(trace_submit(w, make_trace(i)), 0);
    trace_writer_flush(w);
    trace_reader_t *r = trace_reader_open(db, &err);
    assert_non_null(r);
    char id0[33], id1[33];
    snprintf(id0, sizeof(id0), "%032x", 0);
    snprintf(id1, sizeof(id1), "%032x", 1);

    assert_int_equal(trace_feedback_add(r, id0, 1, "great page", &err), 0);
    assert_int_equal(trace_feedback_add(r, id0, -1, NULL, &err), 0);
    assert_int_equal(trace_feedback_add(r, id1, 1, "ok", &err), 0);

    /* Validation. */
    err = (fig_err_t){0};
    assert_int_equal(trace_feedback_add(r, id0, 0, NULL, &err), -1);
    assert_int_equal(err.code, FIG_E_INVALID);
    assert_int_equal(trace_feedback_add(r, id0, 2, NULL, &err), -1);
    err = (fig_err_t){0};
    assert_int_equal(trace_feedback_add(r, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", 1, NULL, &err), -1);
    assert_int_equal(err.code, FIG_E_INVALID);
    assert_string_equal(err.msg, "no such trace");
    assert_int_equal(trace_feedback_add(r, "x", 1, NULL, &err), -1);
    assert_int_equal(trace_feedback_add(r, id0, 1, "bad \xff utf-8", &err), -1);
    assert_int_equal(err.code, FIG_E_INVALID);

    /* A long comment is cut at 2000 bytes, backing off to a character boundary. */
    char longc[3000];
    memset(longc, 'a', 1999);
    memcpy(longc + 1999, "\xc3\xa9", 2); /* é straddles byte 2000 */
    memset(longc + 2001, 'b', 500);
    longc[2501] = '\0';
    assert_int_equal(trace_feedback_add(r, id1, -1, longc, &err), 0);

    json_t *fl = trace_feedback_list(r, 0, &err);
    assert_non_null(fl);
    assert_int_equal(json_array_size(fl), 4);
    json_t *newest = json_array_get(fl, 0);
    assert_string_equal(json_string_value(json_object_get(newest, "trace_id")), id1);
    assert_int_equal(json_integer_value(json_object_get(newest, "rating")), -1);
    assert_int_equal(strlen(json_string_value(json_object_get(newest, "comment"))), 1999);
    assert_string_equal(json_string_value(json_object_get(newest, "app")), "app1");
    assert_string_equal(json_string_value(json_object_get(newest, "path")), "/page/1?x=1");
    assert_true(json_integer_value(json_object_get(newest, "created_unix_ms")) > BASE_MS);
    json_t *third = json_array_get(fl, 2);
    assert_string_equal(json_string_value(json_object_get(third, "trace_id")), id0);
    assert_true(json_is_null(json_object_get(third, "comment")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(fl, 3), "comment")), "great page");
    json_decref(fl);
    fl = trace_feedback_list(r, 2, &err);
    assert_int_equal(json_array_size(fl), 2);
    json_decref(fl);

    /* trace_get carries the whole history, oldest first; trace_list the latest rating. */
    json_t *g = trace_get(r, id0, &err);
    json_t *fb = json_object_get(g, "feedback");
    assert_int_equal(json_array_size(fb), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(fb, 0), "rating")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(fb, 0), "comment")), "great page");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(fb, 1), "rating")), -1);
    json_decref(g);
    json_t *l = trace_list(r, NULL, &err);
    assert_int_equal(json_array_size(l), 3);
    assert_true(json_is_null(json_object_get(json_array_get(l, 0), "feedback"))); /* trace 2 */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(l, 1), "feedback")), -1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(l, 2), "feedback")), -1);
    json_decref(l);

    trace_reader_close(r);
    trace_writer_stop(w);
    free(db);
}

static void test_redaction(void **s)
{
    (void)s;
    char *db = path_in("redact.db");
    fig_err_t err = {0};
    trace_writer_t *w = trace_writer_start(db, 1, &err);
    assert_non_null(w);

    trace_t *t = make_trace(7);
    json_decref(t->tool_calls);
    json_decref(t->messages);
    t->tool_calls = json_loads("[{\"name\":\"sql\",\"arguments\":{\"q\":\"select *\"},\"result\":\"row1,row2\","
                               "\"ms\":1.5,\"is_error\":false},"
                               "{\"name\":\"set_state\",\"arguments\":{},\"result\":{\"k\":[1,2]}},"
                               "{\"name\":\"x\",\"arguments\":{}}]",
                               0, NULL);
    t->messages = json_loads("[{\"role\":\"system\",\"content\":\"sys\"},"
                             "{\"role\":\"user\",\"content\":\"hi\"},"
                             "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\"}]},"
                             "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"secret rows\"},"
                             "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\","
                             "\"content\":\"abc\"},{\"type\":\"text\",\"text\":\"keep\"}]}]",
                             0, NULL);
    assert_non_null(t->tool_calls);
    assert_non_null(t->messages);
    json_t *orig_calls = json_incref(t->tool_calls);
    json_t *orig_msgs = json_incref(t->messages);
    json_t *orig_state = json_deep_copy(t->state);
    assert_int_equal(trace_submit(w, t), 0);
    trace_writer_flush(w);

    /* The caller's values are untouched: redaction works on copies. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(orig_calls, 0), "result")), "row1,row2");

    trace_reader_t *r = trace_reader_open(db, &err);
    assert_non_null(r);
    char id[33];
    snprintf(id, sizeof(id), "%032x", 7);
    json_t *g = trace_get(r, id, &err);
    assert_non_null(g);
    json_t *calls = json_object_get(g, "tool_calls");
    json_t *want_calls = json_loads("[{\"name\":\"sql\",\"arguments\":{\"q\":\"select *\"},"
                                    "\"result\":\"[redacted 9 bytes]\",\"ms\":1.5,\"is_error\":false},"
                                    "{\"name\":\"set_state\",\"arguments\":{},\"result\":\"[redacted 11 bytes]\"},"
                                    "{\"name\":\"x\",\"arguments\":{}}]",
                                    0, NULL);
    assert_true(json_equal(calls, want_calls));
    json_t *want_msgs = json_loads("[{\"role\":\"system\",\"content\":\"sys\"},"
                                   "{\"role\":\"user\",\"content\":\"hi\"},"
                                   "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\"}]},"
                                   "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"[redacted 11 bytes]\"},"
                                   "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\","
                                   "\"content\":\"[redacted 3 bytes]\"},{\"type\":\"text\",\"text\":\"keep\"}]}]",
                                   0, NULL);
    assert_true(json_equal(json_object_get(g, "messages"), want_msgs));
    assert_true(json_equal(json_object_get(g, "state"), orig_state));
    assert_string_equal(json_string_value(json_object_get(g, "answer")), "# Hello");
    json_decref(g);
    json_decref(want_calls);
    json_decref(want_msgs);
    trace_reader_close(r);
    trace_writer_stop(w);

    /* Without redact_data the results are kept verbatim. */
    char *db2 = path_in("plain.db");
    w = trace_writer_start(db2, 0, &err);
    t = make_trace(8);
    json_decref(t->tool_calls);
    json_decref(t->messages);
    t->tool_calls = json_incref(orig_calls);
    t->messages = json_incref(orig_msgs);
    trace_submit(w, t);
    trace_writer_stop(w); /* stop flushes */
    r = trace_reader_open(db2, &err);
    snprintf(id, sizeof(id), "%032x", 8);
    g = trace_get(r, id, &err);
    assert_true(json_equal(json_object_get(g, "tool_calls"), orig_calls));
    assert_true(json_equal(json_object_get(g, "messages"), orig_msgs));
    json_decref(g);
    trace_reader_close(r);

    json_decref(orig_calls);
    json_decref(orig_msgs);
    json_decref(orig_state);
    free(db);
    free(db2);
}

static int64_t count_rows(const char *db)
{
    sqlite3 *c;
    assert_int_equal(sqlite3_open(db, &c), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(c, "SELECT count(*) FROM traces", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(c);
    return n;
}

static void test_full_queue_drops(void **s)
{
    (void)s;
    char *db = path_in("full.db");
    fig_err_t err = {0};
    trace_writer_t *w = trace_writer_start(db, 0, &err);
    assert_non_null(w);

    /* Hold the write lock from another connection: the writer stalls in BEGIN. */
    sqlite3 *blocker;
    assert_int_equal(sqlite3_open(db, &blocker), SQLITE_OK);
    assert_int_equal(sqlite3_exec(blocker, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    int i = 0, refused = 0;
    assert_int_equal(trace_submit(w, make_trace(i++)), 0);
    sleep_ms(TRACE_BATCH_MS + 200); /* the writer has taken that one and is waiting for the lock */

    const int extra = 1000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int k = 0; k < TRACE_QUEUE_MAX + extra; k++)
        if (trace_submit(w, make_trace(i++)) != 0)
            refused++;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* Never blocks: 11000 submissions against a stalled writer in well under its stall. */
    assert_true((t1.tv_sec - t0.tv_sec) < 3);
    /* The writer holds at most one batch outside the queue. */
    assert_true(refused >= extra - TRACE_BATCH_MAX);
    assert_true(refused <= extra);
    assert_int_equal(trace_writer_dropped(w), (uint64_t)refused);

    assert_int_equal(sqlite3_exec(blocker, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(blocker);
    trace_writer_flush(w);
    /* Nothing lost silently: written + dropped == submitted. */
    assert_int_equal(trace_writer_dropped(w), (uint64_t)refused);
    assert_int_equal(count_rows(db) + refused, i);
    trace_writer_stop(w);
    free(db);
}

static void test_write_errors_and_bad_traces(void **s)
{
    (void)s;
    char *db = path_in("broken.db");
    fig_err_t err = {0};
    trace_writer_t *w = trace_writer_start(db, 0, &err);
    assert_non_null(w);

    /* A trace without a valid id is refused and counted. */
    trace_t *t = make_trace(1);
    strcpy(t->trace_id, "xyz");
    assert_int_equal(trace_submit(w, t), -1);
    t = make_trace(2);
    t->trace_id[0] = '\0';
    assert_int_equal(trace_submit(w, t), -1);
    assert_int_equal(trace_writer_dropped(w), 2);
    assert_int_equal(trace_submit(NULL, make_trace(3)), -1); /* freed, no leak */

    /* Duplicate ids: the second row fails alone; the batch still commits. */
    assert_int_equal(trace_submit(w, make_trace(5)), 0);
    assert_int_equal(trace_submit(w, make_trace(5)), 0);
    assert_int_equal(trace_submit(w, make_trace(6)), 0);
    trace_writer_flush(w);
    assert_int_equal(trace_writer_dropped(w), 3);
    assert_int_equal(count_rows(db), 2);

    /* The table disappears under the writer: every write fails, counts, and the
     * writer keeps running. */
    sqlite3 *c;
    assert_int_equal(sqlite3_open(db, &c), SQLITE_OK);
    assert_int_equal(sqlite3_exec(c, "DROP TABLE traces", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(c);
    for (int i = 10; i < 15; i++)
        assert_int_equal(trace_submit(w, make_trace(i)), 0);
    trace_writer_flush(w);
    assert_int_equal(trace_writer_dropped(w), 8);
    trace_writer_flush(w); /* nothing pending: returns at once */
    trace_writer_stop(w);

    /* Reader on a missing store; writer on an impossible path. */
    char *missing = path_in("nope/none.db");
    err = (fig_err_t){0};
    assert_null(trace_reader_open(missing, &err));
    assert_int_not_equal(err.code, FIG_OK);
    err = (fig_err_t){0};
    assert_null(trace_writer_start("/proc/figment-no/traces.db", 0, &err));
    assert_int_not_equal(err.code, FIG_OK);
    free(missing);
    free(db);
}

static void test_stop_flushes_and_schema(void **s)
{
    (void)s;
    char *db = path_in("schema.db");
    fig_err_t err = {0};
    trace_writer_t *w = trace_writer_start(db, 0, &err);
    assert_non_null(w);
    for (int i = 0; i < 700; i++)
        assert_int_equal(trace_submit(w, make_trace(i)), 0);
    trace_writer_stop(w); /* no flush: stop must drain */
    assert_int_equal(count_rows(db), 700);

    sqlite3 *c;
    assert_int_equal(sqlite3_open(db, &c), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(c, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 2);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(c, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(c, "SELECT count(*) FROM pragma_table_info('traces')", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 38);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(c, "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                           "ORDER BY name",
                                        -1, &q, NULL),
                     SQLITE_OK);
    const char *want[] = {"feedback_trace", "traces_app_started", "traces_model_started", "traces_started"};
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(q, 0), want[k]);
    }
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);

    /* A newer schema is refused rather than misread. */
    assert_int_equal(sqlite3_exec(c, "PRAGMA user_version = 9", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(c);
    err = (fig_err_t){0};
    assert_null(trace_reader_open(db, &err));
    assert_int_equal(err.code, FIG_E_DB);
    assert_null(trace_writer_start(db, 0, &err));
    free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_threads_list_get),
        cmocka_unit_test(test_stats_percentiles),
        cmocka_unit_test(test_feedback),
        cmocka_unit_test(test_redaction),
        cmocka_unit_test(test_full_queue_drops),
        cmocka_unit_test(test_write_errors_and_bad_traces),
        cmocka_unit_test(test_stop_flushes_and_schema),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
