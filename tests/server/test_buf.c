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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_grow), cmocka_unit_test(test_appendf),
        cmocka_unit_test(test_html), cmocka_unit_test(test_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
