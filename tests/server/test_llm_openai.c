/*
 * test_llm_openai.c — the OpenAI Chat Completions provider: exact request bytes,
 * headers, stream parsing fed whole / byte by byte / in random splits, tool-call
 * assembly across deltas, the tolerated deviations, every error path and bound,
 * non-streamed bodies and describe_error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"
#include "sse.h"

static const llm_provider_t *P = &llm_provider_openai;

/* ---- helpers ---- */

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    if (v == NULL)
        fail_msg("bad test JSON: %s", e.text);
    return v;
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void on_text(void *ctx, const char *s, size_t n)
{
    fig_buf_append(ctx, s, n);
}

/* Parses body as one response. step: 0 whole, 1 byte by byte, else random pieces
 * from seed `step`. Returns 0 or -1 (the first failing feed or finish). */
static int parse(int stream, const char *ctype, const char *body, size_t n, uint32_t step, llm_result_t *res,
                 fig_err_t *err)
{
    void *st = P->parser_new(stream, ctype, res);
    int rc = 0;
    uint32_t seed = step;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t k = step == 0 ? n - i : step == 1 ? 1 : 1 + lcg(&seed) % 29;
        if (k > n - i)
            k = n - i;
        rc = P->parser_feed(st, body + i, k, err);
        i += k;
    }
    if (rc == 0)
        rc = P->parser_finish(st, err);
    P->parser_free(st);
    return rc;
}

static int parse_stream(const char *body, uint32_t step, llm_result_t *res, fig_err_t *err)
{
    return parse(1, "text/event-stream; charset=utf-8", body, strlen(body), step, res, err);
}

/* The stream must fail with code and a message containing `needle`. */
static void expect_stream_error(const char *body, fig_code_t code, const char *needle)
{
    for (uint32_t step = 0; step < 3; step++) {
        llm_result_t r;
        llm_result_init(&r);
        fig_err_t err;
        fig_err_clear(&err);
        assert_int_equal(parse_stream(body, step, &r, &err), -1);
        assert_int_equal(err.code, code);
        if (strstr(err.msg, needle) == NULL)
            fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
        assert_int_equal(r.complete, 0);
        llm_result_free(&r);
    }
}

/* ---- build_request ---- */

static const char *CONV = "["
                          "{\"role\":\"user\",\"content\":\"list mail\"},"
                          "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_1\",\"name\":\"sql\","
                          "\"arguments\":\"{\\\"query\\\":\\\"SELECT 1\\\"}\"}]},"
                          "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"name\":\"sql\",\"content\":\"1\\n(1 rows)\"}"
                          "]";
static const char *TOOLS = "[{\"name\":\"sql\",\"description\":\"Run SQL\",\"parameters\":{\"type\":\"object\","
                           "\"properties\":{\"query\":{\"type\":\"string\"}},\"required\":[\"query\"]}}]";

static char *headers_text(struct curl_slist *h)
{
    fig_buf_t b = FIG_BUF_INIT;
    for (; h; h = h->next) {
        fig_buf_append_str(&b, h->data);
        fig_buf_append_str(&b, "|");
    }
    return fig_buf_steal(&b);
}

static void test_build_request_exact(void **state)
{
    (void)state;
    json_t *conv = J(CONV), *tools = J(TOOLS);
    llm_endpoint_t ep = {"http://127.0.0.1:8080/v1//", "sk-test"};
    llm_request_t req = {"gpt-x", "You are figment. \xc3\xa9", tools, conv, 512, 1};
    fig_buf_t url = FIG_BUF_INIT, body = FIG_BUF_INIT;
    struct curl_slist *h = NULL;
    fig_err_t err;
    assert_int_equal(P->build_request(&ep, &req, &url, &h, &body, &err), 0);
    assert_string_equal(url.data, "http://127.0.0.1:8080/v1/chat/completions");
    assert_string_equal(
        body.data,
        "{\"model\":\"gpt-x\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"You are figment. \xc3\xa9\"},"
        "{\"role\":\"user\",\"content\":\"list mail\"},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
        "\"function\":{\"name\":\"sql\",\"arguments\":\"{\\\"query\\\":\\\"SELECT 1\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"1\\n(1 rows)\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"sql\",\"description\":\"Run SQL\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"}},"
        "\"required\":[\"query\"]}}}],"
        "\"max_tokens\":512,\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    char *ht = headers_text(h);
    assert_string_equal(ht, "Content-Type: application/json|Accept: text/event-stream|Authorization: Bearer sk-test|");
    free(ht);
    curl_slist_free_all(h);

    /* Byte-stable: a second build gives the same bytes. */
    fig_buf_t body2 = FIG_BUF_INIT;
    h = NULL;
    assert_int_equal(P->build_request(&ep, &req, &url, &h, &body2, &err), 0);
    assert_string_equal(body.data, body2.data);
    assert_string_equal(url.data, "http://127.0.0.1:8080/v1/chat/completions"); /* url reset, not appended */
    curl_slist_free_all(h);

    fig_buf_free(&url);
    fig_buf_free(&body);
    fig_buf_free(&body2);
    json_decref(conv);
    json_decref(tools);
}

static void test_build_request_minimal(void **state)
{
    (void)state;
    json_t *conv = J("[{\"role\":\"user\",\"content\":\"hi\"}]"), *tools = J("[]");
    const char *keys[] = {NULL, ""};
    for (int i = 0; i < 2; i++) {
        llm_endpoint_t ep = {"https://api.example/v1", keys[i]};
        llm_request_t req = {"m", NULL, i ? tools : NULL, conv, 0, 0};
        fig_buf_t url = FIG_BUF_INIT, body = FIG_BUF_INIT;
        struct curl_slist *h = NULL;
        fig_err_t err;
        assert_int_equal(P->build_request(&ep, &req, &url, &h, &body, &err), 0);
        assert_string_equal(url.data, "https://api.example/v1/chat/completions");
        assert_string_equal(body.data, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
        char *ht = headers_text(h);
        assert_string_equal(ht, "Content-Type: application/json|Accept: application/json|");
        free(ht);
        curl_slist_free_all(h);
        fig_buf_free(&url);
        fig_buf_free(&body);
    }
    json_decref(conv);
    json_decref(tools);
}

/* The serialized system prompt is cached per thread: a buffer reused in place with
 * other text must never get the old bytes (the cache compares content, not addresses). */
static void test_build_request_system_cache(void **state)
{
    (void)state;
    json_t *conv = J("[{\"role\":\"user\",\"content\":\"hi\"}]");
    char system[64];
    const char *texts[] = {"first \"prompt\"", "other \"prompt\"", "first \"prompt\"", "a\nb", "c\nd", "e\nf"};
    const char *want[] = {"first \\\"prompt\\\"", "other \\\"prompt\\\"", "first \\\"prompt\\\"", "a\\nb",
                          "c\\nd", "e\\nf"};
    for (int i = 0; i < 6; i++) {
        strcpy(system, texts[i]);
        llm_endpoint_t ep = {"https://api.example/v1", NULL};
        llm_request_t req = {"m", system, NULL, conv, 0, 0};
        fig_buf_t url = FIG_BUF_INIT, body = FIG_BUF_INIT;
        struct curl_slist *h = NULL;
        fig_err_t err;
        assert_int_equal(P->build_request(&ep, &req, &url, &h, &body, &err), 0);
        char expect[256];
        snprintf(expect, sizeof(expect),
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"%s\"},"
                 "{\"role\":\"user\",\"content\":\"hi\"}]}",
                 want[i]);
        assert_string_equal(body.data, expect);
        curl_slist_free_all(h);
        fig_buf_free(&url);
        fig_buf_free(&body);
    }
    json_decref(conv);
}

static char *build_with(const llm_provider_t *pv, const json_t *tools, fig_err_t *err)
{
    json_t *conv = J("[{\"role\":\"user\",\"content\":\"hi\"}]");
    llm_endpoint_t ep = {"https://api.example/v1", NULL};
    llm_request_t req = {"m", NULL, tools, conv, 0, 0};
    fig_buf_t url = FIG_BUF_INIT, body = FIG_BUF_INIT;
    struct curl_slist *h = NULL;
    int rc = pv->build_request(&ep, &req, &url, &h, &body, err);
    curl_slist_free_all(h);
    fig_buf_free(&url);
    json_decref(conv);
    if (rc != 0) {
        fig_buf_free(&body);
        return NULL;
    }
    return fig_buf_steal(&body);
}

/* The serialized tool list is cached per thread (llm_derived_cached): the same array
 * changed in place, an equal array with its keys in another order, the other
 * provider's format, a malformed list: each gets what a fresh serialization gives. */
static void test_build_request_tools_cache(void **state)
{
    (void)state;
    fig_err_t err;
    json_t *tools = J("[{\"name\":\"sql\",\"description\":\"Run SQL\",\"parameters\":{\"type\":\"object\",\"n\":1.5}}]");
    char *b = build_with(P, tools, &err);
    assert_non_null(strstr(b, ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"sql\",\"description\":"
                              "\"Run SQL\",\"parameters\":{\"type\":\"object\",\"n\":1.5}}}]}"));
    free(b);

    json_t *params = json_object_get(json_array_get(tools, 0), "parameters");
    json_object_set_new(json_array_get(tools, 0), "description", json_string("Run \"SQL\""));
    b = build_with(P, tools, &err);
    assert_non_null(strstr(b, "\"description\":\"Run \\\"SQL\\\"\""));
    free(b);
    json_object_set_new(params, "n", json_real(-1.5));
    b = build_with(P, tools, &err);
    assert_non_null(strstr(b, "\"n\":-1.5}"));
    free(b);
    json_object_set_new(params, "n", json_integer(2));
    b = build_with(P, tools, &err);
    assert_non_null(strstr(b, "\"n\":2}"));
    free(b);

    /* Equal as JSON, keys in another order: the body follows the new order. */
    json_t *other = J("[{\"name\":\"sql\",\"description\":\"Run \\\"SQL\\\"\",\"parameters\":{\"n\":2,\"type\":\"object\"}}]");
    b = build_with(P, other, &err);
    assert_non_null(strstr(b, "\"parameters\":{\"n\":2,\"type\":\"object\"}}}]}"));
    free(b);

    /* The same array through the Anthropic provider gets Anthropic's format. */
    b = build_with(&llm_provider_anthropic, other, &err);
    assert_non_null(strstr(b, ",\"tools\":[{\"name\":\"sql\",\"description\":\"Run \\\"SQL\\\"\",\"input_schema\":"
                              "{\"n\":2,\"type\":\"object\"},\"cache_control\":{\"type\":\"ephemeral\"}}]"));
    free(b);

    /* A list that turns malformed is refused, not served from the cache. */
    json_object_set_new(json_array_get(other, 0), "name", json_integer(1));
    for (int k = 0; k < 2; k++) {
        fig_err_clear(&err);
        assert_null(build_with(k ? &llm_provider_anthropic : P, other, &err));
        assert_int_equal(err.code, FIG_E_INVALID);
        assert_string_equal(err.msg, "tool schema 0 is malformed");
    }
    json_decref(tools);
    json_decref(other);
}

static void test_build_request_rejects(void **state)
{
    (void)state;
    struct {
        const char *base, *key, *model, *conv;
        fig_code_t code;
    } cases[] = {
        {NULL, NULL, "m", "[]", FIG_E_CONFIG},
        {"ftp://x", NULL, "m", "[]", FIG_E_CONFIG},
        {"http://x", "k\r\nX-Evil: 1", "m", "[]", FIG_E_CONFIG},
        {"http://x", NULL, "", "[]", FIG_E_CONFIG},
        {"http://x", NULL, "m", "{}", FIG_E_INVALID},
        {"http://x", NULL, "m", "[{\"role\":\"root\",\"content\":\"x\"}]", FIG_E_INVALID},
        {"http://x", NULL, "m", "[{\"role\":\"user\",\"content\":5}]", FIG_E_INVALID},
        {"http://x", NULL, "m", "[{\"role\":\"tool\",\"content\":\"x\"}]", FIG_E_INVALID},
        {"http://x", NULL, "m", "[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\"}]}]", FIG_E_INVALID},
        {"http://x", NULL, "m", "[\"user\"]", FIG_E_INVALID},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *conv = J(cases[i].conv);
        llm_endpoint_t ep = {cases[i].base, cases[i].key};
        llm_request_t req = {cases[i].model, "sys", NULL, conv, 0, 1};
        fig_buf_t url = FIG_BUF_INIT, body = FIG_BUF_INIT;
        struct curl_slist *h = NULL;
        fig_err_t err;
        fig_err_clear(&err);
        assert_int_equal(P->build_request(&ep, &req, &url, &h, &body, &err), -1);
        assert_int_equal(err.code, cases[i].code);
        assert_null(h);
        assert_int_equal(body.len, 0);
        json_decref(conv);
    }
}

/* ---- streaming ---- */

static const char *STREAM =
    ": OPENROUTER PROCESSING\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\","
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],"
    "\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"# Inbox\\n\\n\"},"
    "\"finish_reason\":null}],\"usage\":null}\r\n\r\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Caf\\u00e9 \\\"menu\\\" \xe2\x9c\x93\"},"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":9,"
    "\"total_tokens\":1209,\"prompt_tokens_details\":{\"cached_tokens\":1024}}}\n\n"
    "data: [DONE]\n\n";

static void test_stream_content(void **state)
{
    (void)state;
    for (uint32_t step = 0; step < 202; step++) {
        llm_result_t r;
        llm_result_init(&r);
        fig_buf_t seen = FIG_BUF_INIT;
        r.on_text = on_text;
        r.on_text_ctx = &seen;
        fig_err_t err;
        assert_int_equal(parse_stream(STREAM, step, &r, &err), 0);
        assert_string_equal(r.content.data, "# Inbox\n\nCaf\xc3\xa9 \"menu\" \xe2\x9c\x93");
        assert_string_equal(seen.data, r.content.data);
        assert_string_equal(r.finish_reason, "stop");
        assert_int_equal(r.ncalls, 0);
        assert_int_equal(r.complete, 1);
        assert_int_equal(r.usage.prompt_tokens, 1200);
        assert_int_equal(r.usage.completion_tokens, 9);
        assert_int_equal(r.usage.cached_tokens, 1024);
        fig_buf_free(&seen);
        llm_result_free(&r);
        assert_null(r.content.data);
    }
}

static void test_stream_usage_without_cache_details(void **state)
{
    (void)state;
    llm_result_t r;
    llm_result_init(&r);
    fig_err_t err;
    assert_int_equal(parse_stream("data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n"
                                  "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n"
                                  "data: [DONE]\n\n",
                                  1, &r, &err),
                     0);
    assert_int_equal(r.usage.prompt_tokens, 5);
    assert_int_equal(r.usage.completion_tokens, 1);
    assert_int_equal(r.usage.cached_tokens, 0);
    llm_result_free(&r);
}

/* Two parallel calls, deltas interleaved by index; the second call's arguments are
 * split in the middle of a JSON escape of the arguments text; the first call's name
 * arrives in pieces; the id is repeated in a later delta. */
static const char *TOOL_STREAM =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
    "{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"sq\",\"arguments\":\"\"}}]},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
    "{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"set_state\",\"arguments\":\"\"}}]},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"l\","
    "\"arguments\":\"{\\\"query\\\": \\\"SELECT \"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{"
    "\"arguments\":\"{\\\"patch\\\":{\\\"q\\\":\\\"a\\\\\"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"function\":{"
    "\"arguments\":\"1\\\"}\"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{"
    "\"arguments\":\"\\\"b\\\\u00e9\\\"}}\"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
    "data: [DONE]\n\n";

static void test_stream_tool_calls(void **state)
{
    (void)state;
    for (uint32_t step = 0; step < 202; step++) {
        llm_result_t r;
        llm_result_init(&r);
        fig_err_t err;
        assert_int_equal(parse_stream(TOOL_STREAM, step, &r, &err), 0);
        assert_int_equal(r.ncalls, 2);
        assert_string_equal(r.calls[0].id, "call_a");
        assert_string_equal(r.calls[0].name, "sql");
        assert_string_equal(r.calls[0].arguments.data, "{\"query\": \"SELECT 1\"}");
        assert_string_equal(r.calls[1].id, "call_b");
        assert_string_equal(r.calls[1].name, "set_state");
        assert_string_equal(r.calls[1].arguments.data, "{\"patch\":{\"q\":\"a\\\"b\\u00e9\"}}");
        assert_string_equal(r.finish_reason, "tool_calls");
        assert_int_equal(r.content.len, 0);
        assert_int_equal(r.complete, 1);
        llm_result_free(&r);
    }
}

static void test_stream_missing_index(void **state)
{
    (void)state;
    llm_result_t r;
    fig_err_t err;

    /* Ollama style: one chunk with the whole call, no index; no [DONE]. */
    llm_result_init(&r);
    assert_int_equal(parse_stream("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"call_x\",\"function\":{"
                                  "\"name\":\"sql\",\"arguments\":\"{}\"}}]}}]}\n\n"
                                  "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
                                  0, &r, &err),
                     0);
    assert_int_equal(r.ncalls, 1);
    assert_string_equal(r.calls[0].id, "call_x");
    assert_string_equal(r.calls[0].name, "sql");
    assert_string_equal(r.calls[0].arguments.data, "{}");
    llm_result_free(&r);

    /* Without index: fragments continue the last call; a new id starts the next one. */
    llm_result_init(&r);
    assert_int_equal(
        parse_stream("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"sql\"}}]}}]}\n\n"
                     "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"q\"}}]}}]}\n\n"
                     "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"\\\":1}\"}}]}}]}\n\n"
                     "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"b\",\"function\":{\"name\":\"set_state\","
                     "\"arguments\":{\"patch\":{}}}}]}}]}\n\n"
                     "data: [DONE]\n\n",
                     0, &r, &err),
        0);
    assert_int_equal(r.ncalls, 2);
    assert_string_equal(r.calls[0].arguments.data, "{\"q\":1}");
    assert_string_equal(r.calls[1].id, "b");
    assert_string_equal(r.calls[1].name, "set_state");
    assert_string_equal(r.calls[1].arguments.data, "{\"patch\":{}}"); /* object arguments serialized */
    llm_result_free(&r);

    /* An id arriving later for an index without one is taken; none at all: call_<i>. */
    llm_result_init(&r);
    assert_int_equal(parse_stream("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{"
                                  "\"name\":\"sql\"}},{\"index\":1,\"function\":{\"name\":\"sql\"}}]}}]}\n\n"
                                  "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"late\"}]}}]}\n\n"
                                  "data: [DONE]\n\n",
                                  0, &r, &err),
                     0);
    assert_string_equal(r.calls[0].id, "late");
    assert_string_equal(r.calls[1].id, "call_1");
    llm_result_free(&r);
}

static void test_stream_errors(void **state)
{
    (void)state;
    /* Truncated: no [DONE] and no finish_reason. */
    expect_stream_error("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n", FIG_E_UPSTREAM, "truncated");
    expect_stream_error("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: [DO", FIG_E_UPSTREAM, "truncated");
    expect_stream_error("", FIG_E_UPSTREAM, "truncated");
    /* Malformed chunks. */
    expect_stream_error("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}]\n\ndata: [DONE]\n\n", FIG_E_UPSTREAM,
                        "malformed chunk from the model endpoint: ");
    expect_stream_error("data: [1,2]\n\ndata: [DONE]\n\n", FIG_E_UPSTREAM, "malformed chunk");
    expect_stream_error("data: {\"choices\":{}}\n\n", FIG_E_UPSTREAM, "malformed chunk");
    expect_stream_error("data: {\"choices\":[{\"delta\":{\"content\":7}}]}\n\n", FIG_E_UPSTREAM, "malformed chunk");
    expect_stream_error("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":\"0\"}]}}]}\n\n", FIG_E_UPSTREAM,
                        "malformed chunk");
    /* Error object inside the stream. */
    expect_stream_error("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
                        "data: {\"error\":{\"message\":\"Overloaded, retry\",\"type\":\"server_error\"}}\n\n"
                        "data: [DONE]\n\n",
                        FIG_E_UPSTREAM, "the model endpoint reported an error: Overloaded, retry");
    expect_stream_error("event: error\ndata: {\"error\":\"model not loaded\"}\n\n", FIG_E_UPSTREAM, "model not loaded");
    /* Tool-call index out of range; conflicting id; no name. */
    expect_stream_error("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":16,\"id\":\"a\"}]}}]}\n\n",
                        FIG_E_UPSTREAM, "index 16");
    expect_stream_error("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":-1,\"id\":\"a\"}]}}]}\n\n",
                        FIG_E_UPSTREAM, "index -1");
    expect_stream_error("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{"
                        "\"name\":\"sql\"}}]}}]}\n\n"
                        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"b\"}]}}]}\n\n",
                        FIG_E_UPSTREAM, "changed its id");
    expect_stream_error("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"a\",\"function\":{"
                        "\"name\":\"sql\"}}]}}]}\n\ndata: [DONE]\n\n",
                        FIG_E_UPSTREAM, "tool call 0 without a name");
}

/* Chunks that repeat the first chunk's header are parsed without it (llm_openai.c,
 * "skipping the chunk header"): the outcome must be exactly that of parsing them
 * whole, for valid chunks, for every way of breaking one right after the header, and
 * when the header itself holds a key figment reads. */
#define HDR "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\","
#define PRIMER HDR "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"a\"},\"finish_reason\":null}]}"

static void expect_stream_content(const char *body, const char *content, int64_t prompt_tokens)
{
    for (uint32_t step = 0; step < 20; step++) {
        llm_result_t r;
        llm_result_init(&r);
        fig_err_t err;
        fig_err_clear(&err);
        if (parse_stream(body, step, &r, &err) != 0)
            fail_msg("%s: %s", body, err.msg);
        assert_string_equal(r.content.data ? r.content.data : "", content);
        assert_int_equal(r.usage.prompt_tokens, prompt_tokens);
        llm_result_free(&r);
    }
}

static void test_stream_header_skip(void **state)
{
    (void)state;
    static const struct {
        const char *chunk, *content;
        int64_t prompt_tokens;
    } ok[] = {
        {HDR "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"},\"finish_reason\":null}]}", "ab", 0},
        {HDR " \t\"usage\":{\"prompt_tokens\":3},\"choices\":[]}", "a", 3},
        {HDR "\"choices\":[{\"delta\":{\"content\":\"c\"}}],\"choices\":[{\"delta\":{\"content\":\"d\"}}]}", "ad", 0},
        {HDR "\"id\":\"other\",\"choices\":[{\"delta\":{\"content\":\"e\"}}]}", "ae", 0},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        fig_buf_t b = FIG_BUF_INIT;
        fig_buf_appendf(&b, "data: %s\n\ndata: %s\n\ndata: %s\n\ndata: [DONE]\n\n", PRIMER, ok[i].chunk, ok[i].chunk);
        char want[16];
        snprintf(want, sizeof(want), "a%s%s", ok[i].content + 1, ok[i].content + 1);
        expect_stream_content(b.data, want, ok[i].prompt_tokens);
        fig_buf_free(&b);
    }

    /* Broken right after the header, or later: rejected, with the message the chunk
     * gets when it comes first (then nothing is skipped). */
    static const char *const bad[] = {
        HDR "}", HDR " }", HDR, HDR "\"choices\":[}", HDR "\"choices\":[]}}", HDR "\"choices\":[]} x",
        HDR "\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}", HDR "\"choices\":[],}", HDR "choices:[]}",
        HDR "\"error\":{\"message\":\"boom\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fig_buf_t alone = FIG_BUF_INIT, after = FIG_BUF_INIT;
        fig_buf_appendf(&alone, "data: %s\n\ndata: [DONE]\n\n", bad[i]);
        fig_buf_appendf(&after, "data: %s\n\ndata: %s\n\ndata: [DONE]\n\n", PRIMER, bad[i]);
        llm_result_t r;
        fig_err_t e1, e2;
        fig_err_clear(&e1);
        llm_result_init(&r);
        assert_int_equal(parse_stream(alone.data, 0, &r, &e1), -1);
        llm_result_free(&r);
        for (uint32_t step = 0; step < 5; step++) {
            fig_err_clear(&e2);
            llm_result_init(&r);
            assert_int_equal(parse_stream(after.data, step, &r, &e2), -1);
            assert_int_equal(e2.code, e1.code);
            assert_string_equal(e2.msg, e1.msg);
            assert_int_equal(r.complete, 0);
            llm_result_free(&r);
        }
        fig_buf_free(&alone);
        fig_buf_free(&after);
    }

    /* A header that carries a key figment reads is never skipped: written with an
     * escape (so a byte search does not see it), or first. */
    expect_stream_content("data: {\"id\":\"x\",\"ch\\u006fices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n"
                          "data: {\"id\":\"x\",\"ch\\u006fices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n"
                          "data: [DONE]\n\n",
                          "aa", 0);
    expect_stream_content("data: {\"usage\":{\"prompt_tokens\":7},\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
                          "data: {\"usage\":{\"prompt_tokens\":7},\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n"
                          "data: [DONE]\n\n",
                          "ab", 7);
    /* A nested "choices" in the header is no member boundary. */
    expect_stream_content("data: {\"id\":\"x\",\"meta\":{\"n\":1,\"choices\":2},\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
                          "data: {\"id\":\"x\",\"meta\":{\"n\":1,\"choices\":2},\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n"
                          "data: [DONE]\n\n",
                          "ab", 0);
}

static void test_stream_error_is_sticky(void **state)
{
    (void)state;
    llm_result_t r;
    llm_result_init(&r);
    void *st = P->parser_new(1, NULL, &r);
    fig_err_t err;
    const char *bad = "data: nope\n\n";
    assert_int_equal(P->parser_feed(st, bad, strlen(bad), &err), -1);
    fig_err_t err2;
    fig_err_clear(&err2);
    assert_int_equal(P->parser_feed(st, "data: [DONE]\n\n", 14, &err2), -1);
    assert_string_equal(err2.msg, err.msg);
    fig_err_clear(&err2);
    assert_int_equal(P->parser_finish(st, &err2), -1);
    assert_string_equal(err2.msg, err.msg);
    assert_int_equal(P->parser_feed(st, "x", 1, NULL), -1); /* err may be NULL */
    P->parser_free(st);
    llm_result_free(&r);
}

static void test_stream_finish_reason_without_done(void **state)
{
    (void)state;
    llm_result_t r;
    llm_result_init(&r);
    fig_err_t err;
    assert_int_equal(
        parse_stream("data: {\"choices\":[{\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"length\"}]}\n\n", 1, &r, &err),
        0);
    assert_string_equal(r.content.data, "ok");
    assert_string_equal(r.finish_reason, "length");
    assert_int_equal(r.complete, 1);
    llm_result_free(&r);

    /* Anything after [DONE] is ignored, even garbage. */
    llm_result_init(&r);
    assert_int_equal(parse_stream("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\ndata: junk\n\n",
                                  0, &r, &err),
                     0);
    assert_string_equal(r.content.data, "a");
    llm_result_free(&r);
}

static void test_stream_args_bound(void **state)
{
    (void)state;
    size_t piece = 64u << 10; /* 4 pieces = exactly LLM_MAX_TOOL_ARGS_BYTES */
    char *arg = malloc(piece + 1);
    memset(arg, 'a', piece);
    arg[piece] = '\0';
    for (int pieces = 4; pieces <= 5; pieces++) {
        fig_buf_t s = FIG_BUF_INIT;
        fig_buf_append_str(&s, "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":"
                               "{\"name\":\"sql\"}}]}}]}\n\n");
        for (int i = 0; i < pieces; i++)
            fig_buf_appendf(&s, "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
                                "{\"arguments\":\"%s\"}}]}}]}\n\n",
                            arg);
        fig_buf_append_str(&s, "data: [DONE]\n\n");
        llm_result_t r;
        llm_result_init(&r);
        fig_err_t err;
        fig_err_clear(&err);
        int rc = parse_stream(s.data, 0, &r, &err);
        if (pieces == 4) {
            assert_int_equal(rc, 0);
            assert_int_equal(r.calls[0].arguments.len, LLM_MAX_TOOL_ARGS_BYTES);
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(err.code, FIG_E_TOO_LARGE);
            assert_non_null(strstr(err.msg, "arguments"));
        }
        llm_result_free(&r);
        fig_buf_free(&s);
    }
    free(arg);
}

static void test_stream_event_bound(void **state)
{
    (void)state;
    size_t n = SSE_MAX_EVENT_BYTES + 10;
    char *big = malloc(n);
    memcpy(big, "data: ", 6);
    memset(big + 6, 'x', n - 6);
    llm_result_t r;
    llm_result_init(&r);
    fig_err_t err;
    assert_int_equal(parse(1, NULL, big, n, 0, &r, &err), -1);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    llm_result_free(&r);
    free(big);
}

/* ---- non-streamed ---- */

static const char *WHOLE =
    "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"sql\","
    "\"arguments\":\"{\\\"query\\\":\\\"SELECT count(*) FROM m\\\"}\"}},{\"id\":\"call_2\",\"type\":\"function\","
    "\"function\":{\"name\":\"set_state\",\"arguments\":\"{\\\"patch\\\":{}}\"}}]},\"finish_reason\":\"tool_calls\"}],"
    "\"usage\":{\"prompt_tokens\":300,\"completion_tokens\":40,\"prompt_tokens_details\":{\"cached_tokens\":256}}}";

static void check_whole(const llm_result_t *r)
{
    assert_int_equal(r->complete, 1);
    assert_int_equal(r->ncalls, 2);
    assert_string_equal(r->calls[0].id, "call_1");
    assert_string_equal(r->calls[0].name, "sql");
    assert_string_equal(r->calls[0].arguments.data, "{\"query\":\"SELECT count(*) FROM m\"}");
    assert_string_equal(r->calls[1].id, "call_2");
    assert_string_equal(r->calls[1].name, "set_state");
    assert_string_equal(r->finish_reason, "tool_calls");
    assert_int_equal(r->usage.prompt_tokens, 300);
    assert_int_equal(r->usage.completion_tokens, 40);
    assert_int_equal(r->usage.cached_tokens, 256);
}

static void test_whole_response(void **state)
{
    (void)state;
    for (uint32_t step = 0; step < 20; step++) {
        llm_result_t r;
        llm_result_init(&r);
        fig_err_t err;
        assert_int_equal(parse(0, "application/json", WHOLE, strlen(WHOLE), step, &r, &err), 0);
        check_whole(&r);
        llm_result_free(&r);
        /* A stream was asked for, but JSON came back. */
        llm_result_init(&r);
        assert_int_equal(parse(1, "Application/JSON; charset=utf-8", WHOLE, strlen(WHOLE), step, &r, &err), 0);
        check_whole(&r);
        llm_result_free(&r);
    }

    llm_result_t r;
    llm_result_init(&r);
    fig_buf_t seen = FIG_BUF_INIT;
    r.on_text = on_text;
    r.on_text_ctx = &seen;
    fig_err_t err;
    const char *text = "{\"choices\":[{\"message\":{\"content\":\"# Hi\"},\"finish_reason\":\"stop\"}]}";
    assert_int_equal(parse(0, NULL, text, strlen(text), 0, &r, &err), 0);
    assert_string_equal(r.content.data, "# Hi");
    assert_string_equal(seen.data, "# Hi");
    assert_int_equal(r.usage.prompt_tokens, 0);
    fig_buf_free(&seen);
    llm_result_free(&r);

    const char *bad[] = {"", "{\"choices\":[]}", "{\"choices\":[{\"message\":{\"content\":\"x\"}}]", "[]",
                         "{\"error\":{\"message\":\"quota\"}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        llm_result_init(&r);
        fig_err_clear(&err);
        assert_int_equal(parse(0, "application/json", bad[i], strlen(bad[i]), 0, &r, &err), -1);
        assert_int_equal(err.code, FIG_E_UPSTREAM);
        assert_int_equal(r.complete, 0);
        llm_result_free(&r);
    }
    assert_non_null(strstr(err.msg, "quota"));
}

/* ---- describe_error ---- */

static void test_describe_error(void **state)
{
    (void)state;
    struct {
        long status;
        const char *body;
        const char *want;
    } cases[] = {
        {429, "{\"error\":{\"message\":\"Rate limit reached for gpt-x\",\"type\":\"requests\",\"code\":\"rate_limit\"}}",
         "the model endpoint answered HTTP 429: Rate limit reached for gpt-x"},
        {404, "{\"error\":\"model 'llama9' not found\"}", "the model endpoint answered HTTP 404: model 'llama9' not found"},
        {400, "{\"object\":\"error\",\"message\":\"bad\\nrequest\"}", "the model endpoint answered HTTP 400: bad request"},
        {422, "{\"detail\":\"field required\"}", "the model endpoint answered HTTP 422: field required"},
        {502, "<html>\r\n<b>Bad\tGateway</b>\r\n</html>\n", "the model endpoint answered HTTP 502: <html>  <b>Bad Gateway</b>  </html>"},
        {500, "{\"unexpected\":1}", "the model endpoint answered HTTP 500: {\"unexpected\":1}"},
        {503, "", "the model endpoint answered HTTP 503"},
        {503, "  \n", "the model endpoint answered HTTP 503"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fig_err_t err;
        fig_err_clear(&err);
        P->describe_error(cases[i].status, cases[i].body, strlen(cases[i].body), &err);
        assert_int_equal(err.code, FIG_E_UPSTREAM);
        assert_string_equal(err.msg, cases[i].want);
    }

    /* Long bodies are cut to 300 bytes, on a UTF-8 boundary, marked "...". */
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, "x");
    for (int i = 0; i < 200; i++)
        fig_buf_append_str(&b, "\xc3\xa9"); /* 2-byte characters: byte 300 is mid-character */
    fig_err_t err;
    P->describe_error(500, b.data, b.len, &err);
    const char *prefix = "the model endpoint answered HTTP 500: ";
    assert_memory_equal(err.msg, prefix, strlen(prefix));
    const char *q = err.msg + strlen(prefix);
    assert_int_equal(strlen(q), 299 + 3);
    assert_string_equal(q + 299, "...");
    fig_buf_free(&b);

    /* NULL body is allowed. */
    P->describe_error(401, NULL, 0, &err);
    assert_string_equal(err.msg, "the model endpoint answered HTTP 401");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_request_exact),
        cmocka_unit_test(test_build_request_minimal),
        cmocka_unit_test(test_build_request_system_cache),
        cmocka_unit_test(test_build_request_tools_cache),
        cmocka_unit_test(test_build_request_rejects),
        cmocka_unit_test(test_stream_content),
        cmocka_unit_test(test_stream_usage_without_cache_details),
        cmocka_unit_test(test_stream_tool_calls),
        cmocka_unit_test(test_stream_missing_index),
        cmocka_unit_test(test_stream_errors),
        cmocka_unit_test(test_stream_header_skip),
        cmocka_unit_test(test_stream_error_is_sticky),
        cmocka_unit_test(test_stream_finish_reason_without_done),
        cmocka_unit_test(test_stream_args_bound),
        cmocka_unit_test(test_stream_event_bound),
        cmocka_unit_test(test_whole_response),
        cmocka_unit_test(test_describe_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
