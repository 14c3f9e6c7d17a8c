/*
 * test_eval.c — the pure parts of `figment eval` and `figment replay`: the selector
 * compiler and matcher, golden-file parsing and its errors, assertion checks
 * (including sql on a real SQLite file), percentiles, visible text and the diff.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"

#define assert_has(hay, needle)                                                                                        \
    do {                                                                                                               \
        if (strstr((hay), (needle)) == NULL)                                                                           \
            fail_msg("expected '%s' in:\n%s", (needle), (hay));                                                        \
    } while (0)

static const char PAGE[] =
    "<!doctype html><html><head><title>Inbox</title></head><body>"
    "<header><a href=\"/mail/\">Mail</a></header><main>"
    "<h1>Inbox</h1>"
    "<nav class=\"nav\"><a href=\"/mail/\"><strong>Inbox</strong></a> <a href=\"/mail/folder/sent\">Sent</a></nav>"
    "<table><thead><tr><th>From</th><th>Subject</th></tr></thead><tbody>"
    "<tr><td><strong>Maria</strong></td><td><a href=\"/mail/message/12\">Lunch</a></td></tr>"
    "<tr><td>Tom</td><td><a href=\"/mail/message/9\">Expenses</a></td></tr>"
    "<tr><td>Nora</td><td><a href=\"https://example.net/x\">Hike</a></td></tr>"
    "</tbody></table>"
    "<p class=\"card notice\">Message archived.</p>"
    "<form method=\"post\" action=\"/mail/message/12/delete\"><input type=\"hidden\" name=\"_csrf\" value=\"T\">"
    "<button type=\"submit\" class=\"danger\">Delete</button></form>"
    "<div id=\"x\"><p>deep <span class=\"a b\">text</span></p></div>"
    "</main><footer>figment</footer></body></html>";

static size_t count(const char *sel)
{
    fig_err_t err;
    fig_err_clear(&err);
    eval_selector_t *s = eval_selector_compile(sel, &err);
    if (s == NULL)
        fail_msg("selector '%s' did not compile: %s", sel, err.msg);
    size_t n = eval_selector_count(s, PAGE, strlen(PAGE));
    eval_selector_free(s);
    return n;
}

static void test_selector_match(void **state)
{
    (void)state;
    assert_int_equal(count("table tr a[href^='/mail/message/']"), 2);
    assert_int_equal(count("a[href^=\"/mail/message/\"]"), 2);
    assert_int_equal(count("tr"), 4);
    assert_int_equal(count("tbody > tr"), 3);
    assert_int_equal(count("table > tr"), 0); /* the parser puts rows in tbody */
    assert_int_equal(count("table tr"), 4);
    assert_int_equal(count("td > a"), 3);
    assert_int_equal(count("tr > a"), 0);
    assert_int_equal(count("a[href*='example']"), 1);
    assert_int_equal(count("a[href$='/delete']"), 0);
    assert_int_equal(count("form[action$='/delete']"), 1);
    assert_int_equal(count("form[action*=delete] button.danger"), 1);
    assert_int_equal(count("form[method=post]"), 1);
    assert_int_equal(count("input[type=hidden][name=_csrf]"), 1);
    assert_int_equal(count("input[value]"), 1);
    assert_int_equal(count("p.card"), 1);
    assert_int_equal(count("p.notice.card"), 1);
    assert_int_equal(count(".card"), 1);
    assert_int_equal(count("p.car"), 0); /* whole class words only */
    assert_int_equal(count("span.b"), 1);
    assert_int_equal(count("#x p span"), 1);
    assert_int_equal(count("div#x > p > span"), 1);
    assert_int_equal(count("div#y span"), 0);
    assert_int_equal(count("main h1"), 1);
    assert_int_equal(count("header a"), 1);
    assert_int_equal(count("main a"), 5);
    assert_int_equal(count("*"), count("*")); /* stable */
    assert_true(count("*") > 20);
    assert_int_equal(count("nav a strong"), 1);
    assert_int_equal(count("nav > strong"), 0);
    assert_int_equal(count("TABLE TR"), 4); /* tag names are case-insensitive */
    assert_int_equal(count("body main table tbody tr td a"), 3);
    assert_int_equal(count("a[href^='']"), 0); /* an empty prefix matches nothing, as in CSS */
    assert_int_equal(count("  td  >  a  "), 3);
}

static void test_selector_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "   ", "a[", "a[href", "a[href=]", "a[href='x]", "a[href~='x']", "a >", "> a", "a,b", "a:hover",
        ".", "#", "a..b", "a[1=2]x", "a + b", "a ~ b", NULL,
    };
    for (int i = 0; bad[i]; i++) {
        fig_err_t err;
        fig_err_clear(&err);
        eval_selector_t *s = eval_selector_compile(bad[i], &err);
        if (s != NULL)
            fail_msg("selector '%s' should not compile", bad[i]);
        assert_true(strlen(err.msg) > 0);
    }
    char big[1100];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    fig_err_t err;
    assert_null(eval_selector_compile(big, &err));
    fig_buf_t many = FIG_BUF_INIT;
    for (int i = 0; i < 40; i++)
        fig_buf_append_str(&many, "div ");
    assert_null(eval_selector_compile(many.data, &err));
    assert_has(err.msg, "parts");
    fig_buf_free(&many);
}

static eval_set_t *parse(const char *text, fig_err_t *err)
{
    fig_err_clear(err);
    return eval_set_parse(text, strlen(text), "g.jsonl", err);
}

static void expect_error(const char *text, const char *msg)
{
    fig_err_t err;
    eval_set_t *set = parse(text, &err);
    if (set != NULL)
        fail_msg("expected an error for: %s", text);
    if (strstr(err.msg, msg) == NULL)
        fail_msg("expected '%s' in the error '%s'", msg, err.msg);
}

#define OK_CASE "{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"assert\":[{\"status\":200}]}"

static void test_parse_ok(void **state)
{
    (void)state;
    const char *text =
        "\n" OK_CASE "\n   \n"
        "{\"name\":\"b\",\"app\":\"mail\",\"method\":\"POST\",\"path\":\"/mail/message/1/delete\","
        "\"query\":{\"q\":\"x\",\"tag\":[\"a\",\"b\"]},\"form\":{\"user\":\"alex\"},\"state\":{\"user\":\"alex\"},"
        "\"assert\":[{\"contains\":\"Inbox\"},{\"not_contains\":\"Error\"},{\"regex\":\"<h1>[A-Z]\"},"
        "{\"selector\":\"table a\",\"min\":2,\"max\":5},{\"selector\":\"form\",\"max\":0},{\"selector\":\"p\"},"
        "{\"sql\":\"SELECT count(*) FROM t\",\"equals\":\"3\"},{\"max_latency_ms\":5000},{\"max_cost_usd\":0}]}\r\n";
    fig_err_t err;
    eval_set_t *set = parse(text, &err);
    if (set == NULL)
        fail_msg("%s", err.msg);
    assert_int_equal(set->n_cases, 2);
    eval_case_t *a = &set->cases[0], *b = &set->cases[1];
    assert_int_equal(a->line, 2);
    assert_string_equal(a->name, "a");
    assert_int_equal(json_object_size(a->query), 0);
    assert_int_equal(json_object_size(a->state), 0);
    assert_int_equal(a->n_asserts, 1);
    assert_int_equal(a->asserts[0].kind, EVAL_STATUS);
    assert_int_equal(a->asserts[0].status, 200);
    assert_int_equal(b->line, 4);
    assert_string_equal(b->method, "POST");
    assert_string_equal(json_string_value(json_object_get(b->form, "user")), "alex");
    assert_int_equal(b->n_asserts, 9);
    assert_int_equal(b->asserts[0].kind, EVAL_CONTAINS);
    assert_int_equal(b->asserts[1].kind, EVAL_NOT_CONTAINS);
    assert_int_equal(b->asserts[2].kind, EVAL_REGEX);
    assert_int_equal(b->asserts[3].kind, EVAL_SELECTOR);
    assert_int_equal(b->asserts[3].min, 2);
    assert_int_equal(b->asserts[3].max, 5);
    assert_int_equal(b->asserts[4].min, 0); /* only a max: zero is fine */
    assert_int_equal(b->asserts[4].max, 0);
    assert_int_equal(b->asserts[5].min, 1); /* bare selector: at least one */
    assert_true(b->asserts[5].max < 0);
    assert_int_equal(b->asserts[6].kind, EVAL_SQL);
    assert_string_equal(b->asserts[6].equals, "3");
    assert_int_equal(b->asserts[7].kind, EVAL_MAX_LATENCY_MS);
    assert_true(b->asserts[7].limit == 5000);
    assert_int_equal(b->asserts[8].kind, EVAL_MAX_COST_USD);
    assert_true(eval_assert_needs_trace(&b->asserts[7]) && eval_assert_needs_trace(&b->asserts[8]));
    assert_false(eval_assert_needs_trace(&b->asserts[6]));
    eval_set_free(set);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_error("", "no cases");
    expect_error("\n\n", "no cases");
    expect_error(OK_CASE "\n{\"name\":", "g.jsonl:2: invalid JSON");
    expect_error("[1]", "g.jsonl:1: expected a JSON object");
    expect_error(OK_CASE "\n\n" OK_CASE, "g.jsonl:3: name: 'a' is already the name of line 1");
    expect_error("{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"assert\":[{\"status\":200}],"
                 "\"colour\":1}", "g.jsonl:1: unknown key 'colour'");
    expect_error("{\"name\":\"a\",\"name\":\"b\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"assert\":[]}",
                 "g.jsonl:1: invalid JSON");
    expect_error("{\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"assert\":[{\"status\":200}]}",
                 "missing key 'name'");
    expect_error("{\"name\":1,\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"assert\":[{\"status\":200}]}",
                 "g.jsonl:1: name:");
    expect_error("{\"name\":\"a\",\"app\":\"Mail!\",\"method\":\"GET\",\"path\":\"/mail/\",\"assert\":[{\"status\":200}]}",
                 "app:");
    expect_error("{\"name\":\"a\",\"app\":\"mail\",\"method\":\"PUT\",\"path\":\"/mail/\",\"assert\":[{\"status\":200}]}",
                 "method:");
    expect_error("{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/notes/\",\"assert\":[{\"status\":200}]}",
                 "path: expected a path under /mail/");
    expect_error("{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/search?q=x\","
                 "\"assert\":[{\"status\":200}]}", "path:");
    expect_error("{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"query\":[],"
                 "\"assert\":[{\"status\":200}]}", "query: expected an object");
    expect_error("{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"query\":{\"q\":1},"
                 "\"assert\":[{\"status\":200}]}", "g.jsonl:1: query.q: expected a string");
    expect_error("{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"form\":{\"a\":\"b\"},"
                 "\"assert\":[{\"status\":200}]}", "form: only a POST has a form");
    expect_error("{\"name\":\"a\",\"app\":\"mail\",\"method\":\"POST\",\"path\":\"/mail/\",\"form\":{\"_csrf\":\"b\"},"
                 "\"assert\":[{\"status\":200}]}", "form._csrf");
    expect_error("{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"state\":\"x\","
                 "\"assert\":[{\"status\":200}]}", "state: expected an object");
    expect_error("{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"assert\":[]}",
                 "assert: expected an array of 1 to");
    const char *pre = "{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"assert\":[{\"status\":200},";
    static const struct {
        const char *a, *msg;
    } bad[] = {
        {"{\"contain\":\"x\"}", "g.jsonl:3: assert[1]: expected one of contains"},
        {"{\"contains\":\"x\",\"regex\":\"y\"}", "assert[1]: both 'contains' and 'regex'"},
        {"{\"contains\":\"x\",\"min\":1}", "assert[1]: unknown key 'min' for this kind of check"},
        {"{\"contains\":\"x\",\"foo\":1}", "assert[1]: unknown key 'foo'"},
        {"{\"contains\":\"\"}", "assert[1].contains: expected a non-empty string"},
        {"{\"not_contains\":7}", "assert[1].not_contains: expected a non-empty string"},
        {"{\"regex\":\"a(\"}", "assert[1].regex:"},
        {"{\"selector\":\"a[\"}", "assert[1].selector 'a['"},
        {"{\"selector\":\"a\",\"min\":3,\"max\":2}", "min 3 is above max 2"},
        {"{\"selector\":\"a\",\"min\":-1}", "assert[1].min"},
        {"{\"selector\":\"a\",\"max\":1.5}", "assert[1].max"},
        {"{\"sql\":\"SELECT 1\"}", "assert[1].equals: missing"},
        {"{\"sql\":\"SELECT 1\",\"equals\":1}", "assert[1].equals: expected a string"},
        {"{\"status\":\"200\"}", "assert[1].status"},
        {"{\"status\":99}", "assert[1].status"},
        {"{\"max_latency_ms\":0}", "assert[1].max_latency_ms"},
        {"{\"max_cost_usd\":-1}", "assert[1].max_cost_usd"},
        {"{\"max_cost_usd\":\"1\"}", "assert[1].max_cost_usd"},
        {"3", "assert[1]: expected an object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fig_buf_t b = FIG_BUF_INIT;
        fig_buf_appendf(&b, "%s\n\n%s%s]}", OK_CASE, pre, bad[i].a);
        expect_error(b.data, bad[i].msg);
        fig_buf_free(&b);
    }
}

static int check(const eval_assert_t *a, const eval_response_t *r, char *why, size_t cap)
{
    fig_buf_t b = FIG_BUF_INIT;
    int ok = eval_check(a, r, &b);
    snprintf(why, cap, "%s", b.data ? b.data : "");
    fig_buf_free(&b);
    return ok;
}

static eval_set_t *one_case(const char *asserts)
{
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b, "{\"name\":\"a\",\"app\":\"mail\",\"method\":\"GET\",\"path\":\"/mail/\",\"assert\":[%s]}",
                    asserts);
    fig_err_t err;
    eval_set_t *set = parse(b.data, &err);
    fig_buf_free(&b);
    if (set == NULL)
        fail_msg("%s", err.msg);
    return set;
}

static void test_check_page(void **state)
{
    (void)state;
    eval_set_t *set = one_case("{\"contains\":\"Message archived.\"},{\"contains\":\"message archived\"},"
                               "{\"not_contains\":\"<script\"},{\"not_contains\":\"Inbox\"},"
                               "{\"regex\":\"<h1>In[a-z]+</h1>\"},{\"regex\":\"^<h1>\"},"
                               "{\"selector\":\"table tr a[href^='/mail/message/']\",\"min\":2},"
                               "{\"selector\":\"table tr a[href^='/mail/message/']\",\"min\":3},"
                               "{\"selector\":\"form[action*='delete']\",\"max\":0},"
                               "{\"status\":200},{\"status\":404}");
    eval_response_t r = {200, PAGE, strlen(PAGE), NULL, 0, 0, 0};
    const eval_assert_t *a = set->cases[0].asserts;
    char why[256];
    assert_true(check(&a[0], &r, why, sizeof(why)));
    assert_false(check(&a[1], &r, why, sizeof(why))); /* case-sensitive */
    assert_string_equal(why, "not in the page");
    assert_true(check(&a[2], &r, why, sizeof(why)));
    assert_false(check(&a[3], &r, why, sizeof(why)));
    assert_has(why, "found at byte");
    assert_true(check(&a[4], &r, why, sizeof(why)));
    assert_false(check(&a[5], &r, why, sizeof(why))); /* ^ anchors the whole body */
    assert_true(check(&a[6], &r, why, sizeof(why)));
    assert_false(check(&a[7], &r, why, sizeof(why)));
    assert_string_equal(why, "2 matching elements");
    assert_false(check(&a[8], &r, why, sizeof(why)));
    assert_string_equal(why, "1 matching element");
    assert_true(check(&a[9], &r, why, sizeof(why)));
    assert_false(check(&a[10], &r, why, sizeof(why)));
    assert_string_equal(why, "status was 200");
    /* a failed request: status 0, no body */
    eval_response_t none = {0, NULL, 0, NULL, 0, 0, 0};
    assert_false(check(&a[0], &none, why, sizeof(why)));
    assert_true(check(&a[2], &none, why, sizeof(why)));
    assert_false(check(&a[9], &none, why, sizeof(why)));

    fig_buf_t d = FIG_BUF_INIT;
    eval_assert_describe(&a[6], &d);
    assert_string_equal(d.data, "selector \"table tr a[href^='/mail/message/']\" (at least 2)");
    fig_buf_reset(&d);
    eval_assert_describe(&a[8], &d);
    assert_string_equal(d.data, "selector \"form[action*='delete']\" (0 to 0)");
    fig_buf_free(&d);
    eval_set_free(set);
}

static void test_check_trace(void **state)
{
    (void)state;
    eval_set_t *set = one_case("{\"max_latency_ms\":500},{\"max_cost_usd\":0.01},{\"max_cost_usd\":0}");
    const eval_assert_t *a = set->cases[0].asserts;
    char why[256];
    eval_response_t r = {200, "", 0, NULL, 0, 0, 0};
    assert_false(check(&a[0], &r, why, sizeof(why))); /* no trace: never a silent pass */
    assert_string_equal(why, "no trace for this interaction");
    assert_false(check(&a[1], &r, why, sizeof(why)));
    r.have_trace = 1;
    r.latency_ms = 499.9;
    r.cost_usd = 0.01;
    assert_true(check(&a[0], &r, why, sizeof(why)));
    assert_true(check(&a[1], &r, why, sizeof(why)));
    assert_false(check(&a[2], &r, why, sizeof(why)));
    assert_string_equal(why, "cost $0.010000");
    r.latency_ms = 812;
    assert_false(check(&a[0], &r, why, sizeof(why)));
    assert_string_equal(why, "took 812 ms");
    r.cost_usd = 0;
    assert_true(check(&a[2], &r, why, sizeof(why)));
    eval_set_free(set);
}

static void test_check_sql(void **state)
{
    (void)state;
    char path[] = "/tmp/test_eval_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE messages(id INTEGER PRIMARY KEY, unread INTEGER, subject TEXT);"
                                      "INSERT INTO messages VALUES (1, 1, 'a'), (2, 0, NULL), (3, 1, 'c');",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    eval_set_t *set = one_case(
        "{\"sql\":\"SELECT count(*) FROM messages WHERE unread = 1\",\"equals\":\"2\"},"
        "{\"sql\":\"SELECT count(*) FROM messages\",\"equals\":\"50\"},"
        "{\"sql\":\"SELECT subject FROM messages WHERE id = 2\",\"equals\":\"NULL\"},"
        "{\"sql\":\"SELECT subject FROM messages WHERE id = 9\",\"equals\":\"\"},"
        "{\"sql\":\"DELETE FROM messages\",\"equals\":\"0\"},"
        "{\"sql\":\"SELECT 1; DELETE FROM messages\",\"equals\":\"1\"},"
        "{\"sql\":\"SELECT nope FROM messages\",\"equals\":\"1\"},"
        "{\"sql\":\"SELECT 1;\",\"equals\":\"1\"}");
    const eval_assert_t *a = set->cases[0].asserts;
    eval_response_t r = {200, "", 0, path, 0, 0, 0};
    char why[256];
    assert_true(check(&a[0], &r, why, sizeof(why)));
    assert_false(check(&a[1], &r, why, sizeof(why)));
    assert_string_equal(why, "got \"3\", expected \"50\"");
    assert_true(check(&a[2], &r, why, sizeof(why)));
    assert_false(check(&a[3], &r, why, sizeof(why)));
    assert_has(why, "no rows");
    assert_false(check(&a[4], &r, why, sizeof(why)));
    assert_has(why, "read-only");
    assert_false(check(&a[5], &r, why, sizeof(why)));
    assert_has(why, "one statement");
    assert_false(check(&a[6], &r, why, sizeof(why)));
    assert_has(why, "no such column");
    assert_true(check(&a[7], &r, why, sizeof(why)));
    /* nothing was written */
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM messages", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 3);
    sqlite3_finalize(st);
    sqlite3_close(db);
    /* a missing database is a failure, not a created file */
    eval_response_t gone = {200, "", 0, "/tmp/test_eval_no_such_dir/x.db", 0, 0, 0};
    assert_false(check(&a[0], &gone, why, sizeof(why)));
    assert_has(why, "cannot open");
    assert_int_equal(access("/tmp/test_eval_no_such_dir/x.db", F_OK), -1);
    unlink(path);
    eval_set_free(set);
}

static void test_percentile(void **state)
{
    (void)state;
    assert_true(eval_percentile(NULL, 0, 0.5) == 0);
    double one[] = {7};
    assert_true(eval_percentile(one, 1, 0.5) == 7);
    assert_true(eval_percentile(one, 1, 0.95) == 7);
    double v[20];
    for (int i = 0; i < 20; i++)
        v[i] = 20 - i; /* 20..1, unsorted */
    assert_true(eval_percentile(v, 20, 0.50) == 10);
    assert_true(eval_percentile(v, 20, 0.95) == 19); /* rank ceil(19.0) = 19, not 20 */
    assert_true(eval_percentile(v, 20, 1.0) == 20);
    assert_true(eval_percentile(v, 20, 0.0) == 1);
    double four[] = {400, 100, 300, 200};
    assert_true(eval_percentile(four, 4, 0.5) == 200);
    assert_true(eval_percentile(four, 4, 0.95) == 400);
    double ten[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_true(eval_percentile(ten, 10, 0.95) == 10);
    assert_true(eval_percentile(ten, 10, 0.9) == 9);
    assert_true(eval_percentile(ten, 10, 0.5) == 5);
}

static void test_visible_text(void **state)
{
    (void)state;
    char *t = eval_visible_text(PAGE, strlen(PAGE));
    /* only <main>: no header, footer or title */
    assert_string_equal(t, "Inbox\n"
                           "Inbox Sent\n"
                           "From | Subject\n"
                           "Maria | Lunch\n"
                           "Tom | Expenses\n"
                           "Nora | Hike\n"
                           "Message archived.\n"
                           "Delete\n"
                           "deep text\n");
    free(t);
    const char *frag = "<h1>Re: &amp; more</h1>\n\n<p>one<br>two   three</p><ul><li>a</li><li>b <em>c</em></li></ul>"
                       "<!-- hidden --><pre>x\n  y</pre>";
    t = eval_visible_text(frag, strlen(frag));
    assert_string_equal(t, "Re: & more\none\ntwo three\na\nb c\nx y\n");
    free(t);
    t = eval_visible_text("", 0);
    assert_string_equal(t, "");
    free(t);
}

static void test_diff(void **state)
{
    (void)state;
    fig_buf_t b = FIG_BUF_INIT;
    assert_int_equal(eval_diff(&b, "old", "a\nb\nc\n", "new", "a\nb\nc\n"), 0);
    assert_string_equal(b.data, "--- old\n+++ new\n");
    fig_buf_free(&b);

    assert_int_equal(eval_diff(&b, "old", "1\n2\n3\n4\n5\n6\n7\n8\n9\n", "new", "1\n2\n3\n4\nfive\n6\n7\n8\n9\n"), 2);
    assert_string_equal(b.data, "--- old\n+++ new\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n");
    fig_buf_free(&b);

    /* two changes far apart: two hunks; an insertion at the start */
    assert_int_equal(eval_diff(&b, "o", "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\n", "n", "X\na\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"),
                     2);
    assert_string_equal(b.data, "--- o\n+++ n\n@@ -1,3 +1,4 @@\n+X\n a\n b\n c\n"
                                "@@ -8,4 +9,3 @@\n h\n i\n j\n-k\n");
    fig_buf_free(&b);

    assert_int_equal(eval_diff(&b, "o", "", "n", "x\ny\n"), 2);
    assert_string_equal(b.data, "--- o\n+++ n\n@@ -0,0 +1,2 @@\n+x\n+y\n");
    fig_buf_free(&b);

    assert_int_equal(eval_diff(&b, "o", "x\ny", "n", ""), 2);
    assert_string_equal(b.data, "--- o\n+++ n\n@@ -1,2 +0,0 @@\n-x\n-y\n");
    fig_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selector_match), cmocka_unit_test(test_selector_errors),
        cmocka_unit_test(test_parse_ok),       cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_check_page),     cmocka_unit_test(test_check_trace),
        cmocka_unit_test(test_check_sql),      cmocka_unit_test(test_percentile),
        cmocka_unit_test(test_visible_text),   cmocka_unit_test(test_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
