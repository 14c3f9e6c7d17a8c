/*
 * test_buf.c — the growable buffer: appends, formatting, HTML escaping, steal/reset.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"

static void test_append_and_grow(void **s)
{
    (void)s;
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append(&b, "", 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    for (int i = 0; i < 1000; i++)
        fig_buf_append_str(&b, "0123456789");
    assert_int_equal(b.len, 10000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data + 9990, "0123456789", 10);
    /* Embedded NUL bytes are kept, length-counted. */
    fig_buf_reset(&b);
    fig_buf_append(&b, "a\0b", 3);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "a\0b", 4);
    fig_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_appendf(void **s)
{
    (void)s;
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b, "%s=%d", "x", 42);
    fig_buf_appendf(&b, ";%05.1f", 3.14159);
    assert_string_equal(b.data, "x=42;003.1");
    char big[5000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    fig_buf_appendf(&b, "[%s]", big);
    assert_int_equal(b.len, 10 + 2 + 4999);
    assert_int_equal(b.data[b.len - 1], ']');
    fig_buf_free(&b);
}

static void test_html(void **s)
{
    (void)s;
    fig_buf_t b = FIG_BUF_INIT;
    const char *in = "<a href=\"x\">Tom & 'Jerry'</a>";
    fig_buf_append_html(&b, in, strlen(in));
    assert_string_equal(b.data, "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
    fig_buf_reset(&b);
    fig_buf_append_html(&b, "plain", 5);
    assert_string_equal(b.data, "plain");
    fig_buf_reset(&b);
    fig_buf_append_html(&b, "&&", 1); /* only n bytes */
    assert_string_equal(b.data, "&amp;");
    fig_buf_free(&b);
}

static void test_steal(void **s)
{
    (void)s;
    fig_buf_t b = FIG_BUF_INIT;
    char *e = fig_buf_steal(&b);
    assert_string_equal(e, "");
    free(e);
    fig_buf_append_str(&b, "hello");
    char *p = fig_buf_steal(&b);
    assert_string_equal(p, "hello");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(p);
    char *d = fig_strndup("abcdef", 3);
    assert_string_equal(d, "abc");
    free(d);
}


/* The one UTF-8 checker (form fields, uploads, fetched pages, code output use it). */
/* Every string comes back from a JSON parser as the same text (invalid bytes as U+FFFD). */
static void test_json_string(void **state)
{
    (void)state;
    const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = { /* len 0: strlen */
        {"plain <p class=\"x\">text</p>", 0, "plain <p class=\"x\">text</p>"},
        {"back\\slash \"quote\"", 0, "back\\slash \"quote\""},
        {"line\nbreak\ttab\rcr\x01\x1f\x7f", 0, "line\nbreak\ttab\rcr\x01\x1f\x7f"},
        {"caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac", 0, "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac"},
        {"bad \xff\xfe end", 0, "bad \xef\xbf\xbd\xef\xbf\xbd end"},
        {"cut \xe2\x82", 0, "cut \xef\xbf\xbd\xef\xbf\xbd"},
        {"nul\0in", 6, "nul\xef\xbf\xbdin"},
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fig_buf_t b = FIG_BUF_INIT;
        fig_buf_append(&b, "[", 1);
        fig_buf_append_json_string(&b, cases[i].in, cases[i].len ? cases[i].len : strlen(cases[i].in));
        fig_buf_append(&b, "]", 1);
        json_error_t e;
        json_t *v = json_loadb(b.data, b.len, 0, &e);
        if (v == NULL)
            fail_msg("case %zu: %s: %s", i, b.data, e.text);
        assert_string_equal(json_string_value(json_array_get(v, 0)), cases[i].out);
        json_decref(v);
        fig_buf_free(&b);
    }
}

static void test_utf8(void **state)
{
    (void)state;
    assert_int_equal(fig_utf8_seq("a", 1), 1);
    assert_int_equal(fig_utf8_seq("\xC3\xA9", 2), 2);             /* é */
    assert_int_equal(fig_utf8_seq("\xE2\x82\xAC", 3), 3);         /* € */
    assert_int_equal(fig_utf8_seq("\xF0\x9F\x98\x80", 4), 4);     /* 😀 */
    assert_int_equal(fig_utf8_seq("\xC0\x80", 2), 0);              /* overlong NUL */
    assert_int_equal(fig_utf8_seq("\xE0\x80\xAF", 3), 0);         /* overlong */
    assert_int_equal(fig_utf8_seq("\xED\xA0\x80", 3), 0);         /* surrogate */
    assert_int_equal(fig_utf8_seq("\xF4\x90\x80\x80", 4), 0);     /* above U+10FFFF */
    assert_int_equal(fig_utf8_seq("\x80", 1), 0);                  /* a lone continuation byte */
    assert_int_equal(fig_utf8_seq("\xE2\x82", 2), -1);             /* cut short */
    assert_int_equal(fig_utf8_seq("\xE2\x28", 2), 0);              /* bad second byte */

    assert_true(fig_utf8_is_text("plain \xC3\xA9", 8, 0));
    assert_false(fig_utf8_is_text("a\0b", 3, 0));
    assert_false(fig_utf8_is_text("\xE2\x82", 2, 0));
    assert_true(fig_utf8_is_text("\xE2\x82", 2, 1));               /* the data goes on */
    assert_false(fig_utf8_is_text("\xFF", 1, 1));

    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_utf8_clean(&b, "a\0b\xFF\xC3\xA9\xE2\x82", 8);
    assert_string_equal(b.data, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xC3\xA9\xEF\xBF\xBD\xEF\xBF\xBD");
    fig_buf_free(&b);
    fig_buf_append_utf8_clean(&b, "", 0);
    assert_non_null(b.data);
    assert_int_equal(b.len, 0);
    fig_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8), cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_append_and_grow), cmocka_unit_test(test_appendf),
        cmocka_unit_test(test_html), cmocka_unit_test(test_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
