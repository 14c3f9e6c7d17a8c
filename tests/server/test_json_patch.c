/*
 * test_json_patch.c — RFC 7396: every example of appendix A, the section 3
 * example, and the promise that inputs are never modified or aliased.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "json_patch.h"

static json_t *parse(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
    if (j == NULL)
        fail_msg("bad test JSON %s: %s", s, e.text);
    return j;
}

static void check(const char *target, const char *patch, const char *want)
{
    json_t *t = parse(target), *p = parse(patch), *w = parse(want);
    char *t_before = json_dumps(t, JSON_ENCODE_ANY | JSON_SORT_KEYS);
    char *p_before = json_dumps(p, JSON_ENCODE_ANY | JSON_SORT_KEYS);
    json_t *r = json_merge_patch(t, p);
    assert_non_null(r);
    if (!json_equal(r, w)) {
        char *got = json_dumps(r, JSON_ENCODE_ANY | JSON_SORT_KEYS);
        fail_msg("merge(%s, %s) = %s, want %s", target, patch, got, want);
    }
    /* Inputs untouched. */
    char *t_after = json_dumps(t, JSON_ENCODE_ANY | JSON_SORT_KEYS);
    char *p_after = json_dumps(p, JSON_ENCODE_ANY | JSON_SORT_KEYS);
    assert_string_equal(t_before, t_after);
    assert_string_equal(p_before, p_after);
    free(t_before);
    free(p_before);
    free(t_after);
    free(p_after);
    json_decref(r);
    json_decref(t);
    json_decref(p);
    json_decref(w);
}

static void test_rfc7396_appendix_a(void **s)
{
    (void)s;
    check("{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    check("{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}");
    check("{\"a\":\"b\"}", "{\"a\":null}", "{}");
    check("{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}");
    check("{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    check("{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}");
    check("{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}");
    check("{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}");
    check("[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]");
    check("{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]");
    check("{\"a\":\"foo\"}", "null", "null");
    check("{\"a\":\"foo\"}", "\"bar\"", "\"bar\"");
    check("{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}");
    check("[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}");
    check("{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}");
}

static void test_rfc7396_section3(void **s)
{
    (void)s;
    check("{\"title\":\"Goodbye!\",\"author\":{\"givenName\":\"John\",\"familyName\":\"Doe\"},"
          "\"tags\":[\"example\",\"sample\"],\"content\":\"This will be unchanged\"}",
          "{\"title\":\"Hello!\",\"phoneNumber\":\"+01-123-456-7890\",\"author\":{\"familyName\":null},"
          "\"tags\":[\"example\"]}",
          "{\"title\":\"Hello!\",\"author\":{\"givenName\":\"John\"},\"tags\":[\"example\"],"
          "\"content\":\"This will be unchanged\",\"phoneNumber\":\"+01-123-456-7890\"}");
}

static void test_more(void **s)
{
    (void)s;
    /* Deleting what is absent is a no-op; an empty patch changes nothing. */
    check("{\"a\":1}", "{\"zz\":null}", "{\"a\":1}");
    check("{\"a\":1}", "{}", "{\"a\":1}");
    /* An object patch on a scalar target starts from {}; nulls inside are dropped. */
    check("3", "{\"a\":{\"b\":null,\"c\":2}}", "{\"a\":{\"c\":2}}");
    /* Deep merge three levels down keeps siblings. */
    check("{\"a\":{\"b\":{\"c\":1,\"d\":2},\"e\":3}}", "{\"a\":{\"b\":{\"c\":9}}}",
          "{\"a\":{\"b\":{\"c\":9,\"d\":2},\"e\":3}}");
    /* Nulls inside arrays are values, not deletions. */
    check("{}", "{\"a\":[null,{\"b\":null}]}", "{\"a\":[null,{\"b\":null}]}");
}

static void test_no_aliasing(void **s)
{
    (void)s;
    json_t *t = parse("{\"keep\":{\"x\":1}}"), *p = parse("{\"new\":{\"y\":[1,2]}}");
    json_t *r = json_merge_patch(t, p);
    /* Mutating the result must not reach into target or patch. */
    json_object_set_new(json_object_get(r, "keep"), "x", json_integer(42));
    json_array_append_new(json_object_get(json_object_get(r, "new"), "y"), json_integer(3));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "keep"), "x")), 1);
    assert_int_equal(json_array_size(json_object_get(json_object_get(p, "new"), "y")), 2);
    json_decref(r);
    /* A non-object patch is returned as a copy, not the same node. */
    json_t *arr = parse("[1]");
    r = json_merge_patch(t, arr);
    assert_ptr_not_equal(r, arr);
    assert_true(json_equal(r, arr));
    json_decref(r);
    json_decref(arr);
    json_decref(t);
    json_decref(p);
}

static void test_null_target(void **s)
{
    (void)s;
    json_t *p = parse("{\"a\":1,\"b\":null}");
    json_t *r = json_merge_patch(NULL, p);
    json_t *w = parse("{\"a\":1}");
    assert_true(json_equal(r, w));
    json_decref(r);
    json_decref(w);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7396_appendix_a), cmocka_unit_test(test_rfc7396_section3),
        cmocka_unit_test(test_more), cmocka_unit_test(test_no_aliasing), cmocka_unit_test(test_null_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
