/*
 * test_operator.c — the operator module's pure parts: the token cookie and bearer
 * check, the wrong-token counter, strict parsing of filters, chart parameters and
 * the feedback form's fields, the feedback form itself, the SVG charts, and the
 * pages rendered from trace JSON (everything from a trace must come out escaped).
 *
 * The helpers are static in operator.c, so this file includes it: the test binary
 * then defines every operator symbol itself and the copy in the core library is
 * never linked in.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../server/operator.c"

static const uint8_t KEY[SESSION_KEY_LEN] = "0123456789abcdef0123456789abcdef";
static const char ID[] = "0123456789abcdef0123456789abcdef";

static int contains(const char *hay, const char *needle)
{
    return hay != NULL && strstr(hay, needle) != NULL;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static app_list_t *fake_apps(void)
{
    static app_t mail = {.name = "mail", .title = "Mail"}, notes = {.name = "notes", .title = "Notes"};
    static app_t *items[] = {&mail, &notes};
    static app_list_t list = {items, 2};
    return &list;
}

/* ---- credentials ---- */

static void test_cookie_value_is_hmac_of_operator_token(void **s)
{
    (void)s;
    uint8_t mac[32];
    crypto_hmac_sha256(KEY, sizeof(KEY), "operator:secret", 15, mac);
    char *expect = crypto_base64url(mac, sizeof(mac));
    char *v = op_cookie_value(KEY, "secret");
    assert_string_equal(v, expect);
    assert_null(strchr(v, '=')); /* no padding: a plain cookie value */
    assert_true(op_cookie_ok(KEY, "secret", v, strlen(v)));
    /* another token, another key, a truncated or extended value: all refused */
    assert_false(op_cookie_ok(KEY, "secret2", v, strlen(v)));
    uint8_t other[SESSION_KEY_LEN];
    memcpy(other, KEY, sizeof(other));
    other[0] ^= 1;
    assert_false(op_cookie_ok(other, "secret", v, strlen(v)));
    assert_false(op_cookie_ok(KEY, "secret", v, strlen(v) - 1));
    char longer[128];
    snprintf(longer, sizeof(longer), "%sA", v);
    assert_false(op_cookie_ok(KEY, "secret", longer, strlen(longer)));
    assert_false(op_cookie_ok(KEY, "secret", "secret", 6)); /* the raw token is not the cookie */
    assert_false(op_cookie_ok(KEY, "secret", NULL, 0));
    free(v);
    free(expect);
}

static void test_bearer(void **s)
{
    (void)s;
    assert_true(op_bearer_ok(H2O_STRLIT("Bearer op-secret"), "op-secret"));
    assert_true(op_bearer_ok(H2O_STRLIT("bearer op-secret"), "op-secret"));
    assert_false(op_bearer_ok(H2O_STRLIT("Bearer op-secreT"), "op-secret"));
    assert_false(op_bearer_ok(H2O_STRLIT("Bearer op-secre"), "op-secret"));
    assert_false(op_bearer_ok(H2O_STRLIT("Bearer op-secret "), "op-secret"));
    assert_false(op_bearer_ok(H2O_STRLIT("Bearer  op-secret"), "op-secret"));
    assert_false(op_bearer_ok(H2O_STRLIT("Basic op-secret"), "op-secret"));
    assert_false(op_bearer_ok(H2O_STRLIT("op-secret"), "op-secret"));
    assert_false(op_bearer_ok(H2O_STRLIT("Bearer "), ""));
    assert_false(op_bearer_ok(H2O_STRLIT("Bearer x"), NULL));
}

static void test_token_init(void **s)
{
    (void)s;
    int gen = -1;
    setenv("FIGMENT_OPERATOR_TOKEN", "chosen-token", 1);
    char *t = operator_token_init(&gen);
    assert_string_equal(t, "chosen-token");
    assert_int_equal(gen, 0);
    free(t);
    setenv("FIGMENT_OPERATOR_TOKEN", "", 1); /* empty counts as unset: never an empty token */
    char *a = operator_token_init(&gen);
    assert_int_equal(gen, 1);
    unsetenv("FIGMENT_OPERATOR_TOKEN");
    char *b = operator_token_init(&gen);
    assert_int_equal(gen, 1);
    assert_int_equal(strlen(a), 43); /* 32 bytes, base64url without padding */
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
    assert_string_not_equal(a, b);
    free(a);
    free(b);
}

static void test_wrong_tokens_lock_an_address_for_a_minute(void **s)
{
    (void)s;
    uint64_t t0 = 1000000;
    for (int i = 0; i < OP_FAIL_MAX; i++) {
        assert_int_equal(op_fail_wait("192.0.2.1", t0 + (uint64_t)i), 0);
        op_fail_note("192.0.2.1", t0 + (uint64_t)i);
    }
    uint64_t w = op_fail_wait("192.0.2.1", t0 + 100);
    assert_true(w > 0 && w <= OP_FAIL_WINDOW_MS);
    assert_int_equal(op_fail_wait("192.0.2.2", t0 + 100), 0); /* other addresses are not affected */
    assert_int_equal(op_fail_wait("192.0.2.1", t0 + OP_FAIL_WINDOW_MS + 1), 0); /* the window ends */
    /* a fresh window after expiry starts counting from one again */
    op_fail_note("192.0.2.1", t0 + OP_FAIL_WINDOW_MS + 1);
    assert_int_equal(op_fail_wait("192.0.2.1", t0 + OP_FAIL_WINDOW_MS + 2), 0);
    /* nine failures then a success: forgotten */
    for (int i = 0; i < OP_FAIL_MAX; i++)
        op_fail_note("192.0.2.3", t0);
    assert_true(op_fail_wait("192.0.2.3", t0) > 0);
    op_fail_forget("192.0.2.3");
    assert_int_equal(op_fail_wait("192.0.2.3", t0), 0);
    /* many addresses: the table stays bounded and keeps working */
    for (int i = 0; i < OP_FAIL_SLOTS * 2; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 256, i % 256);
        op_fail_note(ip, t0 + 5);
    }
    for (int i = 0; i < OP_FAIL_MAX; i++)
        op_fail_note("192.0.2.9", t0 + 6);
    assert_true(op_fail_wait("192.0.2.9", t0 + 7) > 0);
}

/* ---- strict parsing ---- */

static json_t *q(const char *qs)
{
    fig_err_t err = {0};
    json_t *v = form_parse_urlencoded(qs, strlen(qs), &err);
    assert_non_null(v);
    return v;
}

static int list_ok(const char *qs, op_list_query_t *out)
{
    json_t *v = q(qs);
    fig_err_t err = {0};
    int rc = op_parse_list_query(v, fake_apps(), out, &err);
    json_decref(v);
    if (rc != 0) {
        assert_int_equal(err.code, FIG_E_INVALID);
        assert_true(err.msg[0] != '\0');
    }
    return rc == 0;
}

static void test_list_query(void **s)
{
    (void)s;
    op_list_query_t l;
    assert_true(list_ok("", &l));
    assert_null(l.app);
    assert_int_equal(l.page, 1);
    op_list_query_clear(&l);
    /* a submitted GET form: every field, empty ones meaning any */
    assert_true(list_ok("app=&model=&outcome=&slow=&expensive=", &l));
    assert_null(l.app);
    assert_null(l.model);
    assert_null(l.outcome);
    assert_true(l.min_total_ms == 0 && l.min_cost_usd == 0);
    op_list_query_clear(&l);
    assert_true(list_ok("app=mail&model=openai%2Fgpt-4o&outcome=upstream_timeout&slow=1500&expensive=0.05&page=3", &l));
    assert_string_equal(l.app, "mail");
    assert_string_equal(l.model, "openai/gpt-4o");
    assert_string_equal(l.outcome, "upstream_timeout");
    assert_true(l.min_total_ms == 1500);
    assert_true(fabs(l.min_cost_usd - 0.05) < 1e-12);
    assert_string_equal(l.slow, "1500");
    assert_string_equal(l.expensive, "0.05");
    assert_int_equal(l.page, 3);
    op_list_query_clear(&l);
    assert_true(list_ok("expensive=1e-3", &l));
    assert_true(fabs(l.min_cost_usd - 0.001) < 1e-12);
    op_list_query_clear(&l);

    const char *bad[] = {"app=nope", "app=mai", "outcome=weird", "outcome=OK", "slow=-1", "slow=1.5", "slow=abc",
                         "slow=86400001", "slow=9999999999", "slow=+5", "expensive=-1", "expensive=abc",
                         "expensive=1e", "expensive=.", "expensive=inf", "expensive=nan", "expensive=2000000",
                         "page=0", "page=10001", "page=x", "bogus=1", "app=mail&app=notes", "model=a%01b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&l, 0x5a, sizeof(l)); /* whatever was there: a failed parse leaves nothing to free */
        if (list_ok(bad[i], &l))
            fail_msg("accepted %s", bad[i]);
        assert_null(l.app);
        assert_null(l.model);
    }
    char longmodel[300] = "model=";
    memset(longmodel + 6, 'm', 201);
    longmodel[207] = '\0';
    assert_false(list_ok(longmodel, &l));
}

static void test_chart_query(void **s)
{
    (void)s;
    op_chart_query_t c;
    fig_err_t err = {0};
    json_t *v = q("");
    assert_int_equal(op_parse_chart_query(v, &c, &err), 0);
    assert_int_equal(c.hours, 24);
    assert_int_equal(c.bucket_minutes, 60);
    json_decref(v);
    v = q("hours=168&bucket_minutes=5");
    assert_int_equal(op_parse_chart_query(v, &c, &err), 0);
    assert_int_equal(c.hours, 168);
    assert_int_equal(c.bucket_minutes, 5);
    json_decref(v);
    const char *bad[] = {"hours=0", "hours=169", "hours=-1", "hours=1.5", "bucket_minutes=4", "bucket_minutes=1441",
                         "bucket_minutes=", "x=1", "hours=1&hours=2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = q(bad[i]);
        if (strcmp(bad[i], "bucket_minutes=") == 0) { /* empty = default, like the list's filters */
            assert_int_equal(op_parse_chart_query(v, &c, &err), 0);
            assert_int_equal(c.bucket_minutes, 60);
        } else if (op_parse_chart_query(v, &c, &err) == 0) {
            fail_msg("accepted %s", bad[i]);
        }
        json_decref(v);
    }
    /* the window: 24 h of 1 h buckets, floored to the hour */
    op_chart_query_t d = {24, 60};
    size_t n;
    int64_t now = 1700000000000 + 1234567;
    int64_t start = op_chart_start(&d, now, &n);
    assert_int_equal(start % 3600000, 0);
    assert_true(start <= now - 24 * 3600000);
    assert_int_equal(n, 25);
}

static int feedback_ok(const char *qs, op_feedback_t *f)
{
    json_t *v = q(qs);
    fig_err_t err = {0};
    int rc = op_parse_feedback(v, f, &err);
    json_decref(v);
    return rc == 0;
}

static void test_feedback_fields(void **s)
{
    (void)s;
    op_feedback_t f;
    char qs[4096];
    snprintf(qs, sizeof(qs), "trace_id=%s&rating=up&comment=nice%%21&return_to=%%2Fmail%%2F%%3Fx%%3D1&_csrf=tok", ID);
    assert_true(feedback_ok(qs, &f));
    assert_string_equal(f.trace_id, ID);
    assert_int_equal(f.rating, 1);
    assert_string_equal(f.comment, "nice!");
    assert_string_equal(f.return_to, "/mail/?x=1");
    assert_string_equal(f.csrf, "tok");
    op_feedback_clear(&f);

    snprintf(qs, sizeof(qs), "trace_id=%s&rating=down&comment=&_csrf=tok", ID);
    assert_true(feedback_ok(qs, &f));
    assert_int_equal(f.rating, -1);
    assert_null(f.comment);
    assert_string_equal(f.return_to, "/");
    op_feedback_clear(&f);

    /* return_to must be a same-origin path; anything else goes to / */
    const char *rets[] = {"%2F%2Fevil.example%2F", "%2F%5Cevil.example", "http%3A%2F%2Fevil.example%2F", "mail",
                          "%2Fa%0Ab", "javascript%3Aalert(1)"};
    for (size_t i = 0; i < sizeof(rets) / sizeof(rets[0]); i++) {
        snprintf(qs, sizeof(qs), "trace_id=%s&rating=up&return_to=%s&_csrf=t", ID, rets[i]);
        assert_true(feedback_ok(qs, &f));
        assert_string_equal(f.return_to, "/");
        op_feedback_clear(&f);
    }

    /* a 2000-byte comment is fine, 2001 is not */
    char *big = malloc(2100 + 200);
    snprintf(big, 200, "trace_id=%s&rating=up&_csrf=t&comment=", ID);
    size_t at = strlen(big);
    memset(big + at, 'c', 2000);
    big[at + 2000] = '\0';
    assert_true(feedback_ok(big, &f));
    assert_int_equal(strlen(f.comment), 2000);
    op_feedback_clear(&f);
    big[at + 2000] = 'c';
    big[at + 2001] = '\0';
    assert_false(feedback_ok(big, &f));
    op_feedback_clear(&f);
    free(big);

    const char *bad[] = {"trace_id=0123456789ABCDEF0123456789ABCDEF&rating=up",
                         "trace_id=0123456789abcdef0123456789abcde&rating=up",
                         "trace_id=0123456789abcdef0123456789abcdefa&rating=up",
                         "trace_id=0123456789abcdef0123456789abcdeg&rating=up", "rating=up",
                         "trace_id=0123456789abcdef0123456789abcdef&rating=maybe",
                         "trace_id=0123456789abcdef0123456789abcdef",
                         "trace_id=0123456789abcdef0123456789abcdef&rating=up&rating=down",
                         "trace_id=0123456789abcdef0123456789abcdef&rating=up&extra=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (feedback_ok(bad[i], &f))
            fail_msg("accepted %s", bad[i]);
        op_feedback_clear(&f);
    }
}

/* ---- the feedback form ---- */

static void test_feedback_form(void **s)
{
    (void)s;
    fig_buf_t b = FIG_BUF_INIT;
    operator_feedback_form(&b, ID, "/mail/search?q=\"><script>x</script>&a=1", "csrf\"tok");
    assert_true(contains(b.data, "<form class=\"feedback\" method=\"post\" action=\"/_figment/feedback\">"));
    assert_true(contains(b.data, "name=\"trace_id\" value=\"0123456789abcdef0123456789abcdef\""));
    assert_true(contains(b.data, "name=\"return_to\" value=\"/mail/search?q=&quot;&gt;&lt;script&gt;x&lt;/script&gt;&amp;a=1\""));
    assert_true(contains(b.data, "name=\"_csrf\" value=\"csrf&quot;tok\""));
    assert_true(contains(b.data, "name=\"rating\" value=\"up\">\xF0\x9F\x91\x8D Helpful</button>"));
    assert_true(contains(b.data, "name=\"rating\" value=\"down\">\xF0\x9F\x91\x8E Not helpful</button>"));
    assert_true(contains(b.data, "name=\"comment\""));
    assert_false(contains(b.data, "<script"));
    assert_false(contains(b.data, "<img"));
    fig_buf_reset(&b);
    operator_feedback_form(&b, ID, "//evil.example/", "tok");
    assert_true(contains(b.data, "name=\"return_to\" value=\"/\""));
    fig_buf_reset(&b);
    operator_feedback_form(&b, "not-a-trace-id", "/mail/", "tok");
    operator_feedback_form(&b, ID, "/mail/", NULL);
    operator_feedback_form(&b, NULL, "/mail/", "tok");
    assert_int_equal(b.len, 0);
    fig_buf_free(&b);
}

/* ---- SVG ---- */

static void assert_clean_svg(const char *svg)
{
    assert_false(contains(svg, "style="));
    assert_false(contains(svg, "<script"));
    assert_false(contains(svg, "nan"));
    assert_false(contains(svg, "inf"));
    assert_false(contains(svg, "href"));
    assert_false(contains(svg, " on"));
    assert_int_equal(count(svg, "<svg"), count(svg, "</svg>"));
}

static void test_nice_ceil(void **s)
{
    (void)s;
    assert_true(op_nice_ceil(0) == 1);
    assert_true(op_nice_ceil(NAN) == 1);
    assert_true(op_nice_ceil(1) == 1);
    assert_true(op_nice_ceil(1.2) == 2);
    assert_true(op_nice_ceil(3) == 5);
    assert_true(op_nice_ceil(7) == 10);
    assert_true(op_nice_ceil(230) == 500);
    assert_true(fabs(op_nice_ceil(0.0031) - 0.005) < 1e-15);
}

static void test_svg_line_chart(void **s)
{
    (void)s;
    double a[6] = {100, 200, NAN, 400, NAN, 50};
    double b2[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    op_series_t ser[] = {{"p50", "#2f5fd0", a}, {"<p95>", "#e08a00", b2}};
    fig_buf_t b = FIG_BUF_INIT;
    op_svg_chart(&b, "mail & <gpt>", 0, OP_UNIT_MS, ser, 2, 6, 1700000000000, 3600000, 0);
    assert_true(contains(b.data, "<svg class=\"op-chart\" xmlns=\"http://www.w3.org/2000/svg\""));
    assert_true(contains(b.data, "<title>mail &amp; &lt;gpt&gt;</title>"));
    assert_true(contains(b.data, "&lt;p95&gt;"));
    assert_false(contains(b.data, "<gpt>"));
    /* 100,200 is one line; 400 and 50 are lone points (dots); the all-NAN series draws nothing */
    assert_int_equal(count(b.data, "<polyline"), 1);
    assert_int_equal(count(b.data, "<circle"), 2);
    /* y axis to 500 ms: labels 0, 250, 500 */
    assert_true(contains(b.data, ">500 ms</text>"));
    assert_true(contains(b.data, ">250 ms</text>"));
    assert_true(contains(b.data, ">0 ms</text>"));
    /* x labels are clock times */
    assert_true(contains(b.data, ">22:13</text>") || contains(b.data, ":13</text>"));
    /* the first point: x = 64 + (640-64-12)/6 * 0.5 = 111.0, y = 26 + 168 * (1 - 100/500) = 160.4 */
    assert_true(contains(b.data, "points=\"111.0,160.4 "));
    assert_clean_svg(b.data);
    fig_buf_free(&b);
}

static void test_svg_bar_chart(void **s)
{
    (void)s;
    double c[4] = {0.5, 0, NAN, 2};
    op_series_t ser[] = {{"cost (USD)", "#2e7d32", c}};
    fig_buf_t b = FIG_BUF_INIT;
    op_svg_chart(&b, "cost", 1, OP_UNIT_USD, ser, 1, 4, 1700000000000, 3600000, 0);
    /* one legend swatch plus two bars (zero and missing draw none) */
    assert_int_equal(count(b.data, "<rect"), 3);
    assert_true(contains(b.data, ">$2.00</text>"));
    assert_clean_svg(b.data);
    fig_buf_reset(&b);
    /* a fixed maximum clips taller values instead of growing the axis */
    double pct[2] = {150, 50};
    op_series_t hs[] = {{"hits", "#6a1b9a", pct}};
    op_svg_chart(&b, "hits", 1, OP_UNIT_PCT, hs, 1, 2, 1700000000000, 3600000, 100);
    assert_true(contains(b.data, ">100%</text>"));
    assert_true(contains(b.data, "height=\"168.0\"")); /* the clipped bar: the full plot height */
    assert_clean_svg(b.data);
    fig_buf_free(&b);
}

static void test_charts_page(void **s)
{
    (void)s;
    op_chart_query_t cq = {24, 60};
    int64_t now = 1700000000000;
    size_t n;
    int64_t start = op_chart_start(&cq, now, &n);
    json_t *rows = json_pack("[{s:s,s:s,s:I,s:i,s:i,s:f,s:f,s:f,s:f,s:i},"
                             " {s:s,s:s,s:I,s:i,s:i,s:f,s:f,s:f,s:f,s:i},"
                             " {s:s,s:s,s:I,s:i,s:i,s:f,s:f,s:f,s:f,s:i},"
                             " {s:s,s:s,s:I,s:i,s:i,s:f,s:n,s:n,s:n,s:i}]",
                             "app", "notes", "model", "openai/m", "bucket_unix_ms", (json_int_t)(start + 3600000),
                             "count", 2, "errors", 0, "cost_usd", 0.01, "p50_ms", 100.0, "p95_ms", 150.0, "p99_ms",
                             160.0, "cache_hits", 1,
                             "app", "mail", "model", "<script>alert(1)</script>", "bucket_unix_ms",
                             (json_int_t)start, "count", 4, "errors", 1, "cost_usd", 0.02, "p50_ms", 300.0, "p95_ms",
                             900.0, "p99_ms", 1200.0, "cache_hits", 4,
                             "app", "mail", "model", "<script>alert(1)</script>", "bucket_unix_ms",
                             (json_int_t)(start + 2 * 3600000), "count", 1, "errors", 0, "cost_usd", 0.5, "p50_ms",
                             310.0, "p95_ms", 910.0, "p99_ms", 1210.0, "cache_hits", 0,
                             /* outside the window: ignored */
                             "app", "mail", "model", "x", "bucket_unix_ms", (json_int_t)(start - 3600000), "count", 1,
                             "errors", 0, "cost_usd", 9.0, "p50_ms", "p95_ms", "p99_ms", "cache_hits", 0);
    assert_non_null(rows);
    fig_buf_t b = FIG_BUF_INIT;
    op_render_charts(&b, &cq, now, rows);
    /* two app+model pairs, three charts each, mail first */
    assert_int_equal(count(b.data, "<svg"), 6);
    assert_true(strstr(b.data, "<h2>mail") < strstr(b.data, "<h2>notes"));
    assert_false(contains(b.data, "<script"));
    assert_true(contains(b.data, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_false(contains(b.data, ">x<")); /* the row outside the window made no group */
    assert_true(contains(b.data, "$0.52")); /* mail's total cost in the summary */
    assert_true(contains(b.data, "80%"));   /* mail: 4 hits of 5 */
    for (const char *p = b.data; (p = strstr(p, "<svg")) != NULL; p++) {
        const char *end = strstr(p, "</svg>");
        assert_non_null(end);
        char *one = fig_strndup(p, (size_t)(end - p) + 6);
        assert_clean_svg(one);
        free(one);
    }
    /* links stay under /_figment/ */
    for (const char *p = b.data; (p = strstr(p, "href=\"")) != NULL; p += 6)
        assert_int_equal(strncmp(p + 6, "/_figment/", 10), 0);
    fig_buf_reset(&b);
    json_t *none = json_array();
    op_render_charts(&b, &cq, now, none);
    assert_true(contains(b.data, "No interactions"));
    json_decref(none);
    json_decref(rows);
    fig_buf_free(&b);
}

/* ---- pages from trace JSON ---- */

static json_t *evil_trace(void)
{
    json_t *t = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:I,s:f,s:f,s:I,s:I,s:f,s:b,s:s,s:s,s:s,s:s,s:s}", "trace_id", ID, "app", "mail",
        "method", "GET", "path", "/mail/<b>x</b>?q=\"1\"", "model", "openai/gpt-<i>", "status", 200, "outcome", "ok",
        "started_unix_ms", (json_int_t)1700000000000, "total_ms", 1234.5, "ttft_ms", 88.0, "prompt_tokens",
        (json_int_t)1000, "completion_tokens", (json_int_t)50, "cost_usd", 0.0123, "cache_hit", 0, "route",
        "openai/gpt: ok <after 1 try>", "answer", "# Hi\n\n<script>alert(1)</script>", "page_html",
        "<h1>Hi</h1><p onclick=\"x()\">para</p><script>alert(1)</script><img src=\"http://evil/x.png\">",
        "error", "</td><script>e()</script>", "session_id", "feedfacefeedfacefeedfacefeedface");
    json_object_set_new(t, "state", json_pack("{s:s}", "user", "<alex>"));
    json_object_set_new(t, "request", json_pack("{s:s,s:s}", "method", "GET", "path", "/mail/"));
    json_object_set_new(t, "tool_calls",
                        json_pack("[{s:s,s:s,s:s,s:f,s:b}]", "name", "sql", "arguments",
                                  "{\"query\":\"SELECT '<script>' FROM messages\"}", "result",
                                  "id | subject\n1 | </pre><script>alert(2)</script>", "ms", 3.25, "is_error", 0));
    json_object_set_new(
        t, "messages",
        json_pack("[{s:s,s:s},{s:s,s:s},{s:s,s:n,s:[{s:s,s:s,s:{s:s,s:s}}]},{s:s,s:s,s:s}]", "role", "system",
                  "content", "You are figment <system>", "role", "user", "content", "# Interaction\n<user>",
                  "role", "assistant", "content", "tool_calls", "id", "call_1", "type", "function", "function",
                  "name", "sql", "arguments", "{\"query\":\"<q>\"}", "role", "tool", "tool_call_id", "call_<1>",
                  "content", "tool <result>"));
    json_object_set_new(t, "feedback",
                        json_pack("[{s:i,s:s,s:I}]", "rating", -1, "comment", "<script>bad()</script> wrong",
                                  "created_unix_ms", (json_int_t)1700000001000));
    return t;
}

static void test_trace_page_escapes_everything(void **s)
{
    (void)s;
    json_t *t = evil_trace();
    fig_buf_t b = FIG_BUF_INIT;
    op_render_trace(&b, t);
    const char *h = b.data;
    /* nothing from the trace becomes markup */
    assert_false(contains(h, "<script"));
    assert_false(contains(h, "<b>x</b>"));
    assert_false(contains(h, "<i>"));
    assert_false(contains(h, "onclick=\""));
    assert_false(contains(h, "src=\"http://evil")); /* the sanitizer drops the remote image's source */
    assert_false(contains(h, "<alex>"));
    /* but all of it is shown, escaped */
    assert_true(contains(h, "/mail/&lt;b&gt;x&lt;/b&gt;?q=&quot;1&quot;"));
    assert_true(contains(h, "# Hi\n\n&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_true(contains(h, "&lt;/td&gt;&lt;script&gt;e()&lt;/script&gt;"));
    assert_true(contains(h, "openai/gpt: ok &lt;after 1 try&gt;"));
    assert_true(contains(h, "&lt;alex&gt;"));
    /* the tool call: name, arguments and result */
    assert_true(contains(h, "<h3>sql <span class=\"muted\">3.2 ms</span></h3>") ||
                contains(h, "<h3>sql <span class=\"muted\">3.3 ms</span></h3>"));
    assert_true(contains(h, "SELECT &#39;&lt;script&gt;&#39; FROM messages"));
    assert_true(contains(h, "1 | &lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;"));
    /* the messages with their roles; the system prompt folded */
    assert_true(contains(h, "<strong class=\"op-role\">system</strong>"));
    assert_true(contains(h, "<strong class=\"op-role\">user</strong>"));
    assert_true(contains(h, "<strong class=\"op-role\">assistant</strong>"));
    assert_true(contains(h, "<strong class=\"op-role\">tool</strong> <span class=\"muted\">answers call_&lt;1&gt;"));
    assert_true(contains(h, "<summary>System prompt (24 bytes)</summary>"));
    assert_true(contains(h, "You are figment &lt;system&gt;"));
    assert_true(contains(h, "tool &lt;result&gt;"));
    assert_true(contains(h, "&lt;q&gt;"));
    /* the page: sanitized again in the preview, escaped as source */
    const char *pv = strstr(h, "<div class=\"op-preview\">");
    assert_non_null(pv);
    assert_true(contains(pv, "<h1>Hi</h1>"));
    assert_true(contains(pv, "<p>para</p>"));
    assert_true(contains(h, "&lt;p onclick=&quot;x()&quot;&gt;para&lt;/p&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    /* feedback */
    assert_true(contains(h, "\xF0\x9F\x91\x8E down"));
    assert_true(contains(h, "&lt;script&gt;bad()&lt;/script&gt; wrong"));
    /* numbers */
    assert_true(contains(h, "1235 ms") || contains(h, "1234 ms"));
    assert_true(contains(h, "$0.012300"));
    assert_true(contains(h, "2023-11-14 22:13:20 UTC"));
    for (const char *p = h; (p = strstr(p, "href=\"")) != NULL; p += 6)
        assert_int_equal(strncmp(p + 6, "/_figment/", 10), 0);
    fig_buf_free(&b);
    json_decref(t);
}

static void test_trace_page_with_missing_fields(void **s)
{
    (void)s;
    json_t *t = json_pack("{s:s,s:n,s:n,s:n}", "trace_id", ID, "page_html", "answer", "tool_calls");
    fig_buf_t b = FIG_BUF_INIT;
    op_render_trace(&b, t);
    assert_true(contains(b.data, "No page was rendered."));
    assert_true(contains(b.data, "<h2>Tool calls (0)</h2>"));
    assert_false(contains(b.data, "op-preview"));
    fig_buf_free(&b);
    json_decref(t);
}

static void test_list_page(void **s)
{
    (void)s;
    json_t *rows = json_pack("[{s:s,s:I,s:s,s:s,s:s,s:s,s:i,s:s,s:f,s:n,s:f,s:I,s:I,s:i},"
                             " {s:s,s:I,s:s,s:s,s:s,s:s,s:i,s:s,s:f,s:f,s:f,s:I,s:I,s:n}]",
                             "trace_id", ID, "started_unix_ms", (json_int_t)1700000000000, "app", "mail", "method",
                             "GET", "path", "/mail/?q=<script>alert(1)</script>", "model", "fake/<m>", "status", 502,
                             "outcome", "upstream", "total_ms", 10.0, "ttft_ms", "cost_usd", 0.0, "prompt_tokens",
                             (json_int_t)12, "completion_tokens", (json_int_t)3, "feedback", 1,
                             "trace_id", "\"><script>x</script>", "started_unix_ms", (json_int_t)1700000000000,
                             "app", "notes", "method", "POST", "path", "/notes/", "model", "m", "status", 200,
                             "outcome", "ok", "total_ms", 5.0, "ttft_ms", 2.0, "cost_usd", 1.5, "prompt_tokens",
                             (json_int_t)1, "completion_tokens", (json_int_t)1, "feedback");
    assert_non_null(rows);
    op_list_query_t lq;
    assert_true(list_ok("app=mail&model=a+b%26c&slow=5&page=2", &lq));
    fig_buf_t b = FIG_BUF_INIT;
    op_render_list(&b, fake_apps(), &lq, rows, 1);
    const char *h = b.data;
    assert_false(contains(h, "<script"));
    assert_true(contains(h, "/mail/?q=&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_true(contains(h, "fake/&lt;m&gt;"));
    assert_true(contains(h, "<a href=\"/_figment/trace/0123456789abcdef0123456789abcdef\">GET "));
    assert_int_equal(count(h, "/_figment/trace/"), 1); /* an id that is not 32 hex is not linked */
    assert_true(contains(h, "<td class=\"danger\">502 upstream</td>"));
    assert_true(contains(h, "\xF0\x9F\x91\x8D up"));
    assert_true(contains(h, "$1.50"));
    /* the filter form keeps its values; paging keeps the filters, URL-encoded and escaped */
    assert_true(contains(h, "<option value=\"mail\" selected>mail</option>"));
    assert_true(contains(h, "name=\"model\" maxlength=\"200\" placeholder=\"provider/model\" value=\"a b&amp;c\""));
    assert_true(contains(h, "href=\"/_figment/?app=mail&amp;model=a%20b%26c&amp;slow=5\">"));
    assert_true(contains(h, "href=\"/_figment/?app=mail&amp;model=a%20b%26c&amp;slow=5&amp;page=3\">"));
    for (const char *p = h; (p = strstr(p, "href=\"")) != NULL; p += 6)
        assert_int_equal(strncmp(p + 6, "/_figment/", 10), 0);
    op_list_query_clear(&lq);
    fig_buf_free(&b);
    json_decref(rows);
}

static void test_feedback_list_and_login_pages(void **s)
{
    (void)s;
    json_t *rows = json_pack("[{s:s,s:i,s:s,s:I,s:s,s:s}]", "trace_id", ID, "rating", 1, "comment",
                             "<b>great</b>", "created_unix_ms", (json_int_t)1700000000000, "app", "mail", "path",
                             "/mail/<x>");
    fig_buf_t b = FIG_BUF_INIT;
    op_render_feedback_list(&b, rows);
    assert_true(contains(b.data, "&lt;b&gt;great&lt;/b&gt;"));
    assert_true(contains(b.data, "/mail/&lt;x&gt;"));
    assert_true(contains(b.data, "href=\"/_figment/trace/0123456789abcdef0123456789abcdef\""));
    assert_false(contains(b.data, "<b>"));
    fig_buf_reset(&b);
    op_render_login(&b, "That token is <not> right.");
    assert_true(contains(b.data, "<form class=\"card op-login\" method=\"post\" action=\"/_figment/login\">"));
    assert_true(contains(b.data, "type=\"password\" name=\"token\""));
    assert_true(contains(b.data, "That token is &lt;not&gt; right."));
    fig_buf_free(&b);
    json_decref(rows);
}

static void test_path_ok(void **s)
{
    (void)s;
    assert_true(op_path_ok("/"));
    assert_true(op_path_ok("/mail/x?y=1"));
    assert_false(op_path_ok("//evil"));
    assert_false(op_path_ok("/\\evil"));
    assert_false(op_path_ok("evil"));
    assert_false(op_path_ok(""));
    assert_false(op_path_ok(NULL));
    assert_false(op_path_ok("/a\tb"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_value_is_hmac_of_operator_token),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_token_init),
        cmocka_unit_test(test_wrong_tokens_lock_an_address_for_a_minute),
        cmocka_unit_test(test_list_query),
        cmocka_unit_test(test_chart_query),
        cmocka_unit_test(test_feedback_fields),
        cmocka_unit_test(test_feedback_form),
        cmocka_unit_test(test_nice_ceil),
        cmocka_unit_test(test_svg_line_chart),
        cmocka_unit_test(test_svg_bar_chart),
        cmocka_unit_test(test_charts_page),
        cmocka_unit_test(test_trace_page_escapes_everything),
        cmocka_unit_test(test_trace_page_with_missing_fields),
        cmocka_unit_test(test_list_page),
        cmocka_unit_test(test_feedback_list_and_login_pages),
        cmocka_unit_test(test_path_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
