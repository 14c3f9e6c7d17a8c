/*
 * test_set_state.c — the set_state tool: merge semantics, the size cap (state left
 * untouched on refusal), argument checking and the result text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "tools.h"

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return v;
}

static void assert_state(const json_t *state, const char *want)
{
    char *got = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_apply_merges(void **st)
{
    json_t *state = parse("{\"user\":\"alice\",\"prefs\":{\"theme\":\"dark\",\"lang\":\"en\"},\"n\":1}");
    json_t *patch = parse("{\"prefs\":{\"lang\":\"fr\",\"size\":2},\"n\":null,\"cart\":[1,2]}");
    fig_err_t err;
    assert_int_equal(tool_set_state_apply(&state, patch, 16384, &err), 0);
    assert_state(state, "{\"cart\":[1,2],\"prefs\":{\"lang\":\"fr\",\"size\":2,\"theme\":\"dark\"},\"user\":\"alice\"}");
    json_decref(patch);

    /* deleting a missing key is fine; deleting a nested one works */
    patch = parse("{\"missing\":null,\"prefs\":{\"theme\":null}}");
    assert_int_equal(tool_set_state_apply(&state, patch, 16384, &err), 0);
    assert_state(state, "{\"cart\":[1,2],\"prefs\":{\"lang\":\"fr\",\"size\":2},\"user\":\"alice\"}");
    json_decref(patch);

    /* an empty patch changes nothing */
    patch = parse("{}");
    assert_int_equal(tool_set_state_apply(&state, patch, 16384, &err), 0);
    assert_state(state, "{\"cart\":[1,2],\"prefs\":{\"lang\":\"fr\",\"size\":2},\"user\":\"alice\"}");
    json_decref(patch);
    json_decref(state);

    /* no state yet: starts from {} */
    state = NULL;
    patch = parse("{\"a\":1}");
    assert_int_equal(tool_set_state_apply(&state, patch, 16384, &err), 0);
    assert_state(state, "{\"a\":1}");
    json_decref(patch);
    json_decref(state);
}

static void test_apply_cap(void **st)
{
    json_t *state = parse("{\"a\":1}");
    json_t *before = state;
    json_t *patch = parse("{\"b\":\"0123456789\"}");
    fig_err_t err;
    fig_err_clear(&err);
    /* {"a":1,"b":"0123456789"} is 24 bytes */
    assert_int_equal(tool_set_state_apply(&state, patch, 23, &err), -1);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    assert_string_equal(err.msg, "state would be 24 bytes; the limit is 23 bytes");
    assert_ptr_equal(state, before);
    assert_state(state, "{\"a\":1}");
    /* exactly at the limit is allowed */
    assert_int_equal(tool_set_state_apply(&state, patch, 24, &err), 0);
    assert_state(state, "{\"a\":1,\"b\":\"0123456789\"}");
    json_decref(patch);
    json_decref(state);
}

static void test_apply_non_object(void **st)
{
    const char *bad[] = {"[1]", "\"x\"", "3", "null", "true"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *state = parse("{\"a\":1}");
        json_t *before = state;
        json_t *patch = parse(bad[i]);
        fig_err_t err;
        fig_err_clear(&err);
        assert_int_equal(tool_set_state_apply(&state, patch, 16384, &err), -1);
        assert_true(err.msg[0] != '\0');
        assert_ptr_equal(state, before);
        assert_state(state, "{\"a\":1}");
        json_decref(patch);
        json_decref(state);
    }
}

static char *run(app_t *app, json_t **state, const char *args_text, int *is_error)
{
    tool_ctx_t ctx = {.app = app, .state = state};
    json_t *args = args_text ? parse(args_text) : NULL;
    *is_error = -1;
    char *r = tool_set_state.run(&ctx, args, is_error);
    json_decref(args);
    assert_non_null(r);
    return r;
}

static void test_run(void **st)
{
    app_t app;
    memset(&app, 0, sizeof(app));
    app.tool_set_state = 1;
    app.limits.max_state_bytes = 64;
    json_t *state = parse("{\"user\":\"alice\"}");
    int is_error;

    char *r = run(&app, &state, "{\"patch\":{\"z\":[1],\"b\":{\"c\":\"é\"}}}", &is_error);
    assert_int_equal(is_error, 0);
    assert_string_equal(r, "ok; state is now {\"b\":{\"c\":\"é\"},\"user\":\"alice\",\"z\":[1]}");
    free(r);

    r = run(&app, &state, "{\"patch\":{\"user\":null}}", &is_error);
    assert_int_equal(is_error, 0);
    assert_string_equal(r, "ok; state is now {\"b\":{\"c\":\"é\"},\"z\":[1]}");
    free(r);

    /* over the app's cap: error text, state unchanged */
    r = run(&app, &state, "{\"patch\":{\"big\":\"0123456789012345678901234567890123456789012345678901234567890\"}}", &is_error);
    assert_int_equal(is_error, 1);
    assert_string_equal(r, "error: state would be 94 bytes; the limit is 64 bytes");
    free(r);
    assert_state(state, "{\"b\":{\"c\":\"é\"},\"z\":[1]}");

    const char *bad[] = {
        "{\"patch\":[1]}", "{\"patch\":\"x\"}", "{\"patch\":null}", "{\"patch\":3}", "{}",
        "{\"patch\":{},\"extra\":1}", "{\"state\":{}}", "[{\"a\":1}]", "\"patch\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = run(&app, &state, bad[i], &is_error);
        assert_int_equal(is_error, 1);
        assert_string_equal(r, "error: expected {\"patch\": {<JSON merge patch object>}}");
        free(r);
    }
    r = run(&app, &state, NULL, &is_error);
    assert_int_equal(is_error, 1);
    free(r);
    assert_state(state, "{\"b\":{\"c\":\"é\"},\"z\":[1]}");

    /* no session state to write to */
    tool_ctx_t ctx = {.app = &app, .state = NULL};
    json_t *args = parse("{\"patch\":{}}");
    r = tool_set_state.run(&ctx, args, &is_error);
    assert_int_equal(is_error, 1);
    assert_true(strncmp(r, "error: ", 7) == 0);
    free(r);
    json_decref(args);

    assert_int_equal(tool_set_state.kind, TOOL_ON_LOOP);
    assert_string_equal(tool_set_state.name, "set_state");
    json_decref(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_merges),
        cmocka_unit_test(test_apply_cap),
        cmocka_unit_test(test_apply_non_object),
        cmocka_unit_test(test_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
