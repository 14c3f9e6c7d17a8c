/*
 * test_render.c — Markdown rendering, the render_page pipeline (sanitizer and
 * title), and the layout and error pages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "render.h"

static const sanitize_opts_t opts = {"mail", "TOK"};

static char *md(const char *src)
{
    size_t n;
    char *html = render_markdown(src, strlen(src), &n);
    assert_non_null(html);
    assert_int_equal(strlen(html), n);
    return html;
}

static void page(const char *src, render_page_t *p)
{
    fig_err_t err;
    assert_int_equal(render_page(src, strlen(src), &opts, p, &err), 0);
    assert_non_null(p->html);
    assert_int_equal(strlen(p->html), p->html_len);
}

#define assert_has(hay, needle)                                                                                        \
    do {                                                                                                               \
        if (strstr((hay), (needle)) == NULL)                                                                           \
            fail_msg("expected '%s' in:\n%s", (needle), (hay));                                                        \
    } while (0)
#define assert_lacks(hay, needle)                                                                                      \
    do {                                                                                                               \
        if (strstr((hay), (needle)) != NULL)                                                                           \
            fail_msg("unexpected '%s' in:\n%s", (needle), (hay));                                                      \
    } while (0)

static void test_markdown(void **state)
{
    (void)state;
    char *h = md("# Inbox\n\nSome *em* and **strong** and ~~gone~~.\n\n"
                 "| id | subject |\n|---:|---|\n| 1 | Hello |\n\n"
                 "- one\n- two\n\n1. first\n2. second\n\n"
                 "- [x] done\n- [ ] todo\n\n"
                 "```\n<script>alert(1)</script> & more\n```\n\n"
                 "Visit www.example.com now.\n");
    assert_has(h, "<h1>Inbox</h1>");
    assert_has(h, "<em>em</em>");
    assert_has(h, "<strong>strong</strong>");
    assert_has(h, "<del>gone</del>");
    assert_has(h, "<table>");
    assert_has(h, "<th align=\"right\">id</th>");
    assert_has(h, "<td>Hello</td>");
    assert_has(h, "<ul>\n<li>one</li>");
    assert_has(h, "<ol>\n<li>first</li>");
    assert_has(h, "type=\"checkbox\"");
    assert_has(h, "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt; &amp; more\n</code></pre>");
    assert_has(h, "<a href=\"http://www.example.com\">");
    free(h);

    /* raw HTML passes through md4c untouched: the sanitizer is the boundary */
    h = md("<div class=\"card\">\n<script>x</script>\n</div>\n");
    assert_has(h, "<script>x</script>");
    free(h);
}

static void test_page_pipeline(void **state)
{
    (void)state;
    render_page_t p;
    page("# Messages\n\n<div class=\"card\" onclick=\"x()\">hi <script>alert(1)</script></div>\n\n"
         "| a | b |\n|---|:-:|\n| <b>1</b> | <img src=x onerror=alert(1)> |\n\n"
         "[ext](https://example.com/) [int](/mail/m/1) [bad](javascript:alert(1))\n\n"
         "<form method=\"post\" action=\"/mail/send\">\n<input name=\"to\">\n<button>Send</button>\n</form>\n\n"
         "- [x] done\n",
         &p);
    assert_has(p.html, "<h1>Messages</h1>");
    assert_has(p.html, "<div class=\"card\">hi </div>");
    assert_lacks(p.html, "onclick");
    assert_lacks(p.html, "<script");
    assert_lacks(p.html, "onerror");
    assert_has(p.html, "<td><b>1</b></td>");
    assert_has(p.html, "<th align=\"center\">b</th>");
    assert_has(p.html, "<img src=\"x\">");
    assert_has(p.html, "<a href=\"https://example.com/\" rel=\"noopener noreferrer nofollow\">ext</a>");
    assert_has(p.html, "<a href=\"/mail/m/1\">int</a>");
    assert_has(p.html, "<a>bad</a>");
    assert_has(p.html, "<form method=\"post\" action=\"/mail/send\"><input type=\"hidden\" name=\"_csrf\" value=\"TOK\">");
    assert_has(p.html, "<input type=\"checkbox\" class=\"task-list-item-checkbox\" disabled checked>");
    assert_string_equal(p.title, "Messages");
    render_page_free(&p);
    assert_null(p.html);
}

static void test_title(void **state)
{
    (void)state;
    render_page_t p;

    page("Intro text\n\n## Second *level*   with\tspaces ##\n\n# Later h1\n", &p);
    assert_string_equal(p.title, "Second level with spaces");
    render_page_free(&p);

    page("no heading at all\n", &p);
    assert_null(p.title);
    render_page_free(&p);

    /* a heading the sanitizer drops does not name the page; a raw HTML one does */
    page("<script><h1>evil</h1></script>\n\n<h3 class=\"x\">  Raw &amp; <em>html</em> </h3>\n", &p);
    assert_string_equal(p.title, "Raw & html");
    render_page_free(&p);

    /* references decoded, attributes skipped, a heading nested via a table counted once */
    page("<h2 class=\"t\" title=\"a>b\">Cls &lt;tag&gt; &quot;q&quot;&#13;it&#39;s"
         "<table><tr><td><h2>inner</h2></td></tr></table> end</h2>\n", &p);
    assert_string_equal(p.title, "Cls <tag> \"q\" it'sinner end"); /* textContent: no space added */
    render_page_free(&p);

    /* an empty heading is skipped */
    page("#\n\n# Real\n", &p);
    assert_string_equal(p.title, "Real");
    render_page_free(&p);

    /* capped at 200 bytes on a UTF-8 boundary: 'é' is 2 bytes, 1 + 2*100 = 201 */
    char src[512] = "# x";
    for (int i = 0; i < 100; i++)
        strcat(src, "\xc3\xa9");
    page(src, &p);
    assert_int_equal(strlen(p.title), 199);
    assert_int_equal(strncmp(p.title, "x\xc3\xa9", 3), 0);
    assert_int_equal((unsigned char)p.title[198], 0xa9);
    render_page_free(&p);
}

static void test_page_errors(void **state)
{
    (void)state;
    size_t n = 600 * 1024;
    char *big = malloc(n);
    memset(big, 'a', n);
    render_page_t p;
    fig_err_t err;
    assert_int_equal(render_page(big, n, &opts, &p, &err), -1);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    assert_null(p.html);
    render_page_free(&p);
    free(big);

    /* found by fuzzing: md4c read past a truncated UTF-8 sequence at the end of an
     * exactly-sized buffer (ASan builds catch a regression) */
    static const char tail[] = "#[l](/app/w) |\n|xb> | [l](/app/x)\n,\0I [nnnnnnl](/p5\xa8\x9a\x8b\x97\xd6\x90\xc1\xe9";
    char *exact = malloc(sizeof(tail) - 1);
    memcpy(exact, tail, sizeof(tail) - 1);
    assert_int_equal(render_page(exact, sizeof(tail) - 1, &opts, &p, &err), 0);
    assert_non_null(strstr(p.html, "\xEF\xBF\xBD")); /* invalid bytes became U+FFFD */
    render_page_free(&p);
    free(exact);

    assert_int_equal(render_page("", 0, &opts, &p, &err), 0);
    assert_string_equal(p.html, "");
    assert_null(p.title);
    render_page_free(&p);
}

static void test_layout(void **state)
{
    (void)state;
    fig_buf_t b = FIG_BUF_INIT;
    layout_opts_t lo = {"mail", "Mail <&> \"Box\"", "Inbox <script>"};
    const char *body = "<p>body <b>verbatim</b></p>";
    layout_page(&b, &lo, body, strlen(body));
    assert_int_equal(strncmp(b.data, "<!doctype html>", 15), 0);
    assert_has(b.data, "<meta charset=\"utf-8\">");
    assert_has(b.data, "<meta name=\"viewport\"");
    assert_has(b.data, "<title>Inbox &lt;script&gt; \xE2\x80\x94 Mail &lt;&amp;&gt; &quot;Box&quot;</title>");
    assert_has(b.data, "<link rel=\"stylesheet\" href=\"/static/app.css\">");
    assert_has(b.data, "<a class=\"brand\" href=\"/mail/\">Mail &lt;&amp;&gt; &quot;Box&quot;</a>");
    assert_has(b.data, "<a class=\"right\" href=\"/\">All apps</a>");
    assert_has(b.data, "<main id=\"page\">\n<p>body <b>verbatim</b></p>\n</main>");
    assert_has(b.data, "generated by figment");
    /* one script: figment's own file (CSP script-src 'self'); never inline */
    assert_has(b.data, "<script src=\"/static/app.js\" defer></script>");
    assert_lacks(strstr(b.data, "</script>"), "<script");
    assert_lacks(b.data, "style=");
    assert_lacks(b.data, "<style");
    fig_buf_free(&b);

    /* no page title: the app's; no app: figment's own */
    layout_opts_t app_only = {"mail", "Mail", NULL};
    layout_page(&b, &app_only, "", 0);
    assert_has(b.data, "<title>Mail</title>");
    fig_buf_free(&b);
    layout_page(&b, NULL, "x", 1);
    assert_has(b.data, "<title>figment</title>");
    assert_has(b.data, "<a class=\"brand\" href=\"/\">figment</a>");
    fig_buf_free(&b);
}

static void test_error_page(void **state)
{
    (void)state;
    fig_buf_t b = FIG_BUF_INIT;
    layout_opts_t lo = {"mail", "Mail", NULL};
    layout_error_page(&b, &lo, 504, "Timed <out>", "The model took \"too\" long & gave up.", "/mail/inbox?x=1&y=2");
    assert_has(b.data, "<title>Timed &lt;out&gt; \xE2\x80\x94 Mail</title>");
    assert_has(b.data, "<h1>Timed &lt;out&gt;</h1>");
    assert_has(b.data, "<p>The model took &quot;too&quot; long &amp; gave up.</p>");
    assert_has(b.data, "href=\"/mail/inbox?x=1&amp;y=2\">Try again</a>");
    assert_has(b.data, "504");
    /* one script: figment's own file (CSP script-src 'self'); never inline */
    assert_has(b.data, "<script src=\"/static/app.js\" defer></script>");
    assert_lacks(strstr(b.data, "</script>"), "<script");
    fig_buf_free(&b);

    static const char *const bad[] = {"//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:x",
                                      "mail/x", "/\t/evil", "", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        layout_error_page(&b, &lo, 500, "Oops", "msg", bad[i]);
        if (strstr(b.data, "Try again") != NULL)
            fail_msg("retry link for '%s'", bad[i]);
        fig_buf_free(&b);
    }
    layout_error_page(&b, NULL, 502, NULL, NULL, NULL);
    assert_has(b.data, "<h1>");
    assert_has(b.data, "502");
    assert_lacks(b.data, "Try again");
    fig_buf_free(&b);
}


/* Progressive rendering cuts only where a block is complete on its own. */
static void test_block_cut(void **state)
{
    (void)state;
    const char *a = "# Title\n\nFirst para";
    assert_int_equal(render_block_cut(a, strlen(a)), strlen("# Title\n\n"));
    const char *b = "# Title\n\nFirst para\n\n";
    assert_int_equal(render_block_cut(b, strlen(b)), strlen(b));
    /* nothing complete yet */
    assert_int_equal(render_block_cut("# Tit", 5), 0);
    /* never inside fenced code, even across blank lines */
    const char *c = "Intro\n\n```\ncode\n\nmore code\n";
    assert_int_equal(render_block_cut(c, strlen(c)), strlen("Intro\n\n"));
    const char *c2 = "Intro\n\n```\ncode\n\nmore\n```\n\nAfter";
    assert_int_equal(render_block_cut(c2, strlen(c2)), strlen(c2) - strlen("After"));
    /* never inside an open form or table, whose parts may have blank lines between them */
    const char *d = "Intro\n\n<form method=\"post\" action=\"/mail/x\">\n\n<input name=\"q\">\n\n";
    assert_int_equal(render_block_cut(d, strlen(d)), strlen("Intro\n\n"));
    const char *e = "<form method=\"post\">\n\n<input name=\"q\">\n\n</form>\n\nTail";
    assert_int_equal(render_block_cut(e, strlen(e)), strlen(e) - strlen("Tail"));
    const char *f = "<TABLE>\n\n<tr><td>1</td></tr>\n\n";
    assert_int_equal(render_block_cut(f, strlen(f)), 0);
    /* <formula> is not <form> */
    const char *g = "<formula>\n\nx\n\n";
    assert_int_equal(render_block_cut(g, strlen(g)), strlen(g));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_markdown), cmocka_unit_test(test_page_pipeline), cmocka_unit_test(test_title),
        cmocka_unit_test(test_page_errors), cmocka_unit_test(test_layout),   cmocka_unit_test(test_error_page), cmocka_unit_test(test_block_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
