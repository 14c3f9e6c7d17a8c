/*
 * test_llm_anthropic.c — the Anthropic Messages provider: exact request bytes (tool
 * results grouped into one user turn, tool_use input objects, cache breakpoints on
 * the last tool and the system block, headers), URL forms, stream parsing fed whole /
 * byte by byte / in random splits, usage normalization with cache reads and writes,
 * the tolerated deviations, every error path and bound, non-streamed messages and
 * describe_error.
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

static const llm_provider_t *P = &llm_provider_anthropic;

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

static char *headers_text(struct curl_slist *h)
{
    fig_buf_t b = FIG_BUF_INIT;
    for (; h; h = h->next) {
        fig_buf_append_str(&b, h->data);
        fig_buf_append_str(&b, "|");
    }
    return fig_buf_steal(&b);
}

/* Builds a request; returns the body (caller frees) and fills url and headers. */
static char *build(const char *base, const char *key, const char *system, const char *tools_json, const char *conv_json,
                   int max_tokens, int stream, char **url_out, char **headers_out)
{
    json_t *conv = J(conv_json), *tools = tools_json ? J(tools_json) : NULL;
    llm_endpoint_t ep = {base, key};
    llm_request_t req = {"claude-x", system, tools, conv, max_tokens, stream};
    fig_buf_t url = FIG_BUF_INIT, body = FIG_BUF_INIT;
    struct curl_slist *h = NULL;
    fig_err_t err;
    fig_err_clear(&err);
    if (P->build_request(&ep, &req, &url, &h, &body, &err) != 0)
        fail_msg("build_request failed: %s", err.msg);
    if (url_out)
        *url_out = fig_buf_steal(&url);
    if (headers_out)
        *headers_out = headers_text(h);
    curl_slist_free_all(h);
    fig_buf_free(&url);
    json_decref(conv);
    json_decref(tools);
    return fig_buf_steal(&body);
}

/* ---- build_request ---- */

static const char *CONV =
    "["
    "{\"role\":\"user\",\"content\":\"list mail\"},"
    "{\"role\":\"assistant\",\"content\":\"Let me look.\",\"tool_calls\":["
    "{\"id\":\"toolu_1\",\"name\":\"sql\",\"arguments\":\"{\\\"query\\\":\\\"SELECT 1\\\",\\\"limit\\\":5}\"},"
    "{\"id\":\"toolu_2\",\"name\":\"set_state\",\"arguments\":\"{bad json\"}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"toolu_1\",\"name\":\"sql\",\"content\":\"1\\n(1 rows)\"},"
    "{\"role\":\"tool\",\"tool_call_id\":\"toolu_2\",\"name\":\"set_state\","
    "\"content\":\"error: the arguments are not valid JSON\"},"
    "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
    "{\"id\":\"toolu_3\",\"name\":\"sql\",\"arguments\":\"[1]\"}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"toolu_3\",\"name\":\"sql\",\"content\":\"ok\"}"
    "]";
static const char *TOOLS = "[{\"name\":\"sql\",\"description\":\"Run SQL\",\"parameters\":{\"type\":\"object\","
                           "\"properties\":{\"query\":{\"type\":\"string\"}},\"required\":[\"query\"]}},"
                           "{\"name\":\"set_state\",\"description\":\"Patch state\"}]";

static void test_build_request_exact(void **state)
{
    (void)state;
    char *url, *hdrs;
    char *body = build("http://127.0.0.1:8080/v1//", "sk-ant-test", "You are figment. \xc3\xa9", TOOLS, CONV, 512, 1,
                       &url, &hdrs);
    assert_string_equal(url, "http://127.0.0.1:8080/v1/messages");
    assert_string_equal(
        body,
        "{\"model\":\"claude-x\",\"max_tokens\":512,"
        "\"system\":[{\"type\":\"text\",\"text\":\"You are figment. \xc3\xa9\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"tools\":[{\"name\":\"sql\",\"description\":\"Run SQL\",\"input_schema\":{\"type\":\"object\","
        "\"properties\":{\"query\":{\"type\":\"string\"}},\"required\":[\"query\"]}},"
        "{\"name\":\"set_state\",\"description\":\"Patch state\",\"input_schema\":{\"type\":\"object\"},"
        "\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":\"list mail\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Let me look.\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"sql\",\"input\":{\"query\":\"SELECT 1\",\"limit\":5}},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"set_state\",\"input\":{}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":\"1\\n(1 rows)\"},"
        "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_2\",\"content\":\"error: the arguments are not valid JSON\","
        "\"is_error\":true}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_3\",\"name\":\"sql\",\"input\":{}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_3\",\"content\":\"ok\"}]}],"
        "\"stream\":true}");
    assert_string_equal(hdrs, "content-type: application/json|accept: text/event-stream|anthropic-version: 2023-06-01|"
                              "x-api-key: sk-ant-test|");
    assert_null(strstr(hdrs, "uthorization"));

    /* Byte-stable: a second build gives the same bytes. */
    char *body2 = build("http://127.0.0.1:8080/v1//", "sk-ant-test", "You are figment. \xc3\xa9", TOOLS, CONV, 512, 1,
                        NULL, NULL);
    assert_string_equal(body, body2);
    free(body);
    free(body2);
    free(url);
    free(hdrs);
}

/* The system prompt's escaped text is cached per thread and shared with the OpenAI
 * provider (llm_json_text_cached): a buffer reused in place with other text must
 * never get the old bytes, whichever provider escaped them first. */
static void test_build_request_system_cache(void **state)
{
    (void)state;
    json_t *conv = J("[{\"role\":\"user\",\"content\":\"hi\"}]");
    char system[64];
    const char *texts[] = {"first \"prompt\"", "other \"prompt\"", "first \"prompt\"", "a\nb", "c\nd",
                           "e\nf",           "g\tx",           "a\nb",             "\xc3\xa9"};
    const char *want[] = {"first \\\"prompt\\\"", "other \\\"prompt\\\"", "first \\\"prompt\\\"", "a\\nb", "c\\nd",
                          "e\\nf",                "g\\tx",                "a\\nb",                "\xc3\xa9"};
    for (int i = 0; i < 9; i++) {
        strcpy(system, texts[i]);
        llm_endpoint_t ep = {"https://api.example/v1", NULL};
        llm_request_t req = {"m", system, NULL, conv, 0, 0};
        for (int k = 0; k < 2; k++) {
            const llm_provider_t *pv = (i + k) % 2 ? &llm_provider_openai : P;
            fig_buf_t url = FIG_BUF_INIT, body = FIG_BUF_INIT;
            struct curl_slist *h = NULL;
            fig_err_t err;
            assert_int_equal(pv->build_request(&ep, &req, &url, &h, &body, &err), 0);
            char expect[256];
            if (pv == P)
                snprintf(expect, sizeof(expect),
                         "{\"model\":\"m\",\"max_tokens\":4096,\"system\":[{\"type\":\"text\",\"text\":\"%s\","
                         "\"cache_control\":{\"type\":\"ephemeral\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                         want[i]);
            else
                snprintf(expect, sizeof(expect),
                         "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"%s\"},"
                         "{\"role\":\"user\",\"content\":\"hi\"}]}",
                         want[i]);
            assert_string_equal(body.data, expect);
            curl_slist_free_all(h);
            fig_buf_free(&url);
            fig_buf_free(&body);
        }
    }
    /* Not UTF-8: refused, and nothing cached for it. */
    strcpy(system, "bad \xff");
    for (int k = 0; k < 2; k++) {
        llm_endpoint_t ep = {"https://api.example/v1", NULL};
        llm_request_t req = {"m", system, NULL, conv, 0, 0};
        fig_buf_t url = FIG_BUF_INIT, body = FIG_BUF_INIT;
        struct curl_slist *h = NULL;
        fig_err_t err;
        fig_err_clear(&err);
        assert_int_equal(P->build_request(&ep, &req, &url, &h, &body, &err), -1);
        assert_int_equal(err.code, FIG_E_INVALID);
        assert_non_null(strstr(err.msg, "system prompt is not valid UTF-8"));
        assert_null(h);
        assert_int_equal(body.len, 0);
        fig_buf_free(&url);
    }
    json_decref(conv);
}

static void test_build_request_minimal(void **state)
{
    (void)state;
    const char *keys[] = {NULL, ""};
    for (int i = 0; i < 2; i++) {
        char *url, *hdrs;
        char *body = build("https://api.anthropic.com", keys[i], i ? "" : NULL, i ? "[]" : NULL,
                           "[{\"role\":\"user\",\"content\":\"hi\"}]", 0, 0, &url, &hdrs);
        assert_string_equal(url, "https://api.anthropic.com/v1/messages");
        assert_string_equal(body, "{\"model\":\"claude-x\",\"max_tokens\":4096,\"messages\":[{\"role\":\"user\","
                                  "\"content\":\"hi\"}]}");
        assert_string_equal(hdrs, "content-type: application/json|accept: application/json|anthropic-version: 2023-06-01|");
        free(body);
        free(url);
        free(hdrs);
    }
}

static void test_build_request_urls(void **state)
{
    (void)state;
    struct {
        const char *base, *want;
    } cases[] = {
        {"https://api.anthropic.com", "https://api.anthropic.com/v1/messages"},
        {"https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"},
        {"https://api.anthropic.com/v1", "https://api.anthropic.com/v1/messages"},
        {"http://127.0.0.1:9/v1/", "http://127.0.0.1:9/v1/messages"},
        {"http://gw.local/proxy/anthropic", "http://gw.local/proxy/anthropic/v1/messages"},
        {"http://gw.local/v1beta", "http://gw.local/v1beta/v1/messages"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *url;
        char *body = build(cases[i].base, "k", NULL, NULL, "[{\"role\":\"user\",\"content\":\"x\"}]", 1, 1, &url, NULL);
        assert_string_equal(url, cases[i].want);
        free(url);
        free(body);
    }
}

/* Same-role neighbours merge: Anthropic wants alternating turns, tool results first. */
static void test_build_request_merges_turns(void **state)
{
    (void)state;
    char *body = build("http://x", NULL, NULL, NULL,
                       "[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"},"
                       "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t1\",\"name\":\"sql\","
                       "\"arguments\":\"{}\"}]},"
                       "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"r\"},"
                       "{\"role\":\"user\",\"content\":\"go on\"},"
                       "{\"role\":\"assistant\",\"content\":\"done\"},{\"role\":\"assistant\",\"content\":\"really\"}]",
                       100, 0, NULL, NULL);
    assert_string_equal(body,
                        "{\"model\":\"claude-x\",\"max_tokens\":100,\"messages\":["
                        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
                        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"sql\","
                        "\"input\":{}}]},"
                        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":\"r\"},"
                        "{\"type\":\"text\",\"text\":\"go on\"}]},"
                        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"done\"},"
                        "{\"type\":\"text\",\"text\":\"really\"}]}]}");
    free(body);
}

static void test_build_request_rejects(void **state)
{
    (void)state;
    struct {
        const char *base, *key, *model, *conv, *tools;
        fig_code_t code;
    } cases[] = {
        {NULL, NULL, "m", "[]", NULL, FIG_E_CONFIG},
        {"ftp://x", NULL, "m", "[]", NULL, FIG_E_CONFIG},
        {"http://x\n", NULL, "m", "[]", NULL, FIG_E_CONFIG},
        {"http://x", "k\r\nX-Evil: 1", "m", "[]", NULL, FIG_E_CONFIG},
        {"http://x", NULL, "", "[]", NULL, FIG_E_CONFIG},
        {"http://x", NULL, NULL, "[]", NULL, FIG_E_CONFIG},
        {"http://x", NULL, "m", "{}", NULL, FIG_E_INVALID},
        {"http://x", NULL, "m", "[]", "{}", FIG_E_INVALID},
        {"http://x", NULL, "m", "[]", "[{\"description\":\"no name\"}]", FIG_E_INVALID},
        {"http://x", NULL, "m", "[]", "[{\"name\":\"t\",\"parameters\":[]}]", FIG_E_INVALID},
        {"http://x", NULL, "m", "[{\"role\":\"system\",\"content\":\"x\"}]", NULL, FIG_E_INVALID},
        {"http://x", NULL, "m", "[{\"role\":\"user\",\"content\":5}]", NULL, FIG_E_INVALID},
        {"http://x", NULL, "m", "[{\"role\":\"tool\",\"content\":\"x\"}]", NULL, FIG_E_INVALID},
        {"http://x", NULL, "m", "[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\"}]}]", NULL, FIG_E_INVALID},
        {"http://x", NULL, "m", "[{\"role\":\"assistant\",\"content\":\"\"}]", NULL, FIG_E_INVALID},
        {"http://x", NULL, "m", "[{\"role\":\"assistant\",\"content\":7,\"tool_calls\":[]}]", NULL, FIG_E_INVALID},
        {"http://x", NULL, "m", "[\"user\"]", NULL, FIG_E_INVALID},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *conv = J(cases[i].conv), *tools = cases[i].tools ? J(cases[i].tools) : NULL;
        llm_endpoint_t ep = {cases[i].base, cases[i].key};
        llm_request_t req = {cases[i].model, "sys", tools, conv, 0, 1};
        fig_buf_t url = FIG_BUF_INIT, body = FIG_BUF_INIT;
        struct curl_slist *h = NULL;
        fig_err_t err;
        fig_err_clear(&err);
        assert_int_equal(P->build_request(&ep, &req, &url, &h, &body, &err), -1);
        if (err.code != cases[i].code)
            fail_msg("case %zu: code %d (%s)", i, err.code, err.msg);
        assert_null(h);
        assert_int_equal(body.len, 0);
        json_decref(conv);
        json_decref(tools);
    }
}

/* ---- streaming ---- */

#define EV(name, json) "event: " name "\ndata: " json "\n\n"

/* Text, then two tool_use blocks whose input_json_delta fragments split a string
 * token and a JSON escape; a ping; CRLF line ends in places; cumulative usage. */
static const char *STREAM =
    EV("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\","
                        "\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,"
                        "\"stop_sequence\":null,\"usage\":{\"input_tokens\":120,\"cache_creation_input_tokens\":0,"
                        "\"cache_read_input_tokens\":2048,\"output_tokens\":1}}}")
    EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
                              "\"text\":\"\"}}")
    EV("ping", "{\"type\": \"ping\"}")
    "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"# Inbox\\n\\n\"}}\r\n\r\n"
    EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
                              "\"text\":\"Caf\\u00e9 \\\"menu\\\" \xe2\x9c\x93\"}}")
    EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
    EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
                              "\"id\":\"toolu_01A\",\"name\":\"sql\",\"input\":{}}}")
    EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
                              "\"partial_json\":\"\"}}")
    EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
                              "\"partial_json\":\"{\\\"query\\\": \\\"SEL\"}}")
    EV("ping", "{\"type\": \"ping\"}")
    EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
                              "\"partial_json\":\"ECT 1\\\"}\"}}")
    EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":1}")
    EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\","
                              "\"id\":\"toolu_01B\",\"name\":\"set_state\",\"input\":{}}}")
    EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\","
                              "\"partial_json\":\"{\\\"patch\\\":{\\\"q\\\":\\\"a\\\\\"}}")
    EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\","
                              "\"partial_json\":\"\\\"b\\\\u00e9\\\"}}\"}}")
    EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":2}")
    EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},"
                        "\"usage\":{\"output_tokens\":87}}")
    EV("message_stop", "{\"type\":\"message_stop\"}");

static void test_stream(void **state)
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
        assert_int_equal(r.ncalls, 2);
        assert_string_equal(r.calls[0].id, "toolu_01A");
        assert_string_equal(r.calls[0].name, "sql");
        assert_string_equal(r.calls[0].arguments.data, "{\"query\": \"SELECT 1\"}");
        assert_string_equal(r.calls[1].id, "toolu_01B");
        assert_string_equal(r.calls[1].name, "set_state");
        assert_string_equal(r.calls[1].arguments.data, "{\"patch\":{\"q\":\"a\\\"b\\u00e9\"}}");
        assert_string_equal(r.finish_reason, "tool_calls");
        assert_int_equal(r.complete, 1);
        assert_int_equal(r.usage.prompt_tokens, 120 + 2048);
        assert_int_equal(r.usage.cached_tokens, 2048);
        assert_int_equal(r.usage.cache_write_tokens, 0);
        assert_int_equal(r.usage.completion_tokens, 87);
        fig_buf_free(&seen);
        llm_result_free(&r);
    }
}

static const char *START_WRITE =
    EV("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\","
                        "\"content\":[],\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":1500,"
                        "\"cache_read_input_tokens\":0,\"output_tokens\":1}}}");

static void test_stream_usage(void **state)
{
    (void)state;
    llm_result_t r;
    fig_err_t err;

    /* Cache write on the first call; message_delta's output_tokens is cumulative. */
    fig_buf_t s = FIG_BUF_INIT;
    fig_buf_append_str(&s, START_WRITE);
    fig_buf_append_str(&s, EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                                                     "{\"type\":\"text\",\"text\":\"\"}}")
                           EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                                                     "{\"type\":\"text_delta\",\"text\":\"hi\"}}")
                           EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
                           EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":5}}")
                           EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
                                               "\"usage\":{\"output_tokens\":9}}")
                           EV("message_stop", "{\"type\":\"message_stop\"}"));
    llm_result_init(&r);
    assert_int_equal(parse_stream(s.data, 1, &r, &err), 0);
    assert_string_equal(r.content.data, "hi");
    assert_string_equal(r.finish_reason, "stop");
    assert_int_equal(r.usage.prompt_tokens, 1510);
    assert_int_equal(r.usage.cached_tokens, 0);
    assert_int_equal(r.usage.cache_write_tokens, 1500);
    assert_int_equal(r.usage.completion_tokens, 9);
    llm_result_free(&r);
    fig_buf_free(&s);

    /* Newer servers repeat the input counts in message_delta (cumulative): latest wins. */
    llm_result_init(&r);
    assert_int_equal(
        parse_stream(EV("message_start", "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}")
                         EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},"
                                             "\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":1024,"
                                             "\"cache_creation_input_tokens\":64,\"output_tokens\":4096}}")
                             EV("message_stop", "{\"type\":\"message_stop\"}"),
                     0, &r, &err),
        0);
    assert_string_equal(r.finish_reason, "length");
    assert_int_equal(r.usage.prompt_tokens, 12 + 1024 + 64);
    assert_int_equal(r.usage.cached_tokens, 1024);
    assert_int_equal(r.usage.cache_write_tokens, 64);
    assert_int_equal(r.usage.completion_tokens, 4096);
    assert_int_equal(r.content.len, 0);
    assert_int_equal(r.ncalls, 0);
    llm_result_free(&r);

    /* Other stop reasons are copied. */
    llm_result_init(&r);
    assert_int_equal(parse_stream(EV("message_start", "{\"type\":\"message_start\",\"message\":{}}")
                                      EV("message_delta", "{\"type\":\"message_delta\",\"delta\":"
                                                          "{\"stop_reason\":\"refusal\"}}")
                                          EV("message_stop", "{\"type\":\"message_stop\"}"),
                                  0, &r, &err),
                     0);
    assert_string_equal(r.finish_reason, "refusal");
    assert_int_equal(r.usage.prompt_tokens, 0);
    llm_result_free(&r);
}

#define START EV("message_start", "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1}}}")
#define STOP EV("message_stop", "{\"type\":\"message_stop\"}")
#define BLOCK_START(i, cb) EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":" #i ",\"content_block\":" cb "}")
#define BLOCK_DELTA(i, d) EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":" #i ",\"delta\":" d "}")
#define BLOCK_STOP(i) EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":" #i "}")
#define TOOL(id, name, input) "{\"type\":\"tool_use\",\"id\":\"" id "\",\"name\":\"" name "\",\"input\":" input "}"

static void test_stream_tolerances(void **state)
{
    (void)state;
    llm_result_t r;
    fig_err_t err;

    /* Thinking blocks and their deltas, unknown events and block types are ignored;
     * an input-less tool_use means {}; a whole input at start is kept; deltas after a
     * whole input replace it; anything after message_stop is ignored. */
    const char *s = START
        BLOCK_START(0, "{\"type\":\"thinking\",\"thinking\":\"\"}")
        BLOCK_DELTA(0, "{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}")
        BLOCK_DELTA(0, "{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}")
        BLOCK_STOP(0)
        EV("future_event", "{\"type\":\"future_event\",\"x\":1}")
        BLOCK_START(1, "{\"type\":\"text\",\"text\":\"\"}")
        BLOCK_DELTA(1, "{\"type\":\"citations_delta\",\"citation\":{}}")
        BLOCK_DELTA(1, "{\"type\":\"text_delta\",\"text\":\"ok\"}")
        BLOCK_STOP(1)
        BLOCK_START(2, "{\"type\":\"server_tool_use\",\"id\":\"srv\",\"name\":\"web_search\",\"input\":{}}")
        BLOCK_DELTA(2, "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"q\\\":1}\"}")
        BLOCK_STOP(2)
        BLOCK_START(3, TOOL("t_a", "list", "{}"))
        BLOCK_STOP(3)
        BLOCK_START(4, TOOL("t_b", "sql", "{\"query\":\"SELECT 2\"}"))
        BLOCK_STOP(4)
        BLOCK_START(5, TOOL("t_c", "sql", "{\"query\":\"old\"}"))
        BLOCK_DELTA(5, "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"query\\\":\\\"new\\\"}\"}")
        BLOCK_STOP(5)
        EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"}}")
        STOP
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"late\",\"message\":\"ignored\"}}\n\n"
        "data: garbage\n\n";
    for (uint32_t step = 0; step < 30; step++) {
        llm_result_init(&r);
        assert_int_equal(parse_stream(s, step, &r, &err), 0);
        assert_string_equal(r.content.data, "ok");
        assert_int_equal(r.ncalls, 3);
        assert_string_equal(r.calls[0].name, "list");
        assert_string_equal(r.calls[0].arguments.data, "{}");
        assert_string_equal(r.calls[1].id, "t_b");
        assert_string_equal(r.calls[1].arguments.data, "{\"query\":\"SELECT 2\"}");
        assert_string_equal(r.calls[2].arguments.data, "{\"query\":\"new\"}");
        assert_string_equal(r.finish_reason, "tool_calls");
        assert_int_equal(r.complete, 1);
        llm_result_free(&r);
    }
}

static void test_stream_errors(void **state)
{
    (void)state;
    /* Truncated: no message_stop, even with a stop_reason. */
    expect_stream_error(START BLOCK_START(0, "{\"type\":\"text\",\"text\":\"\"}")
                            BLOCK_DELTA(0, "{\"type\":\"text_delta\",\"text\":\"Hel\"}"),
                        FIG_E_UPSTREAM, "the model's stream ended early (truncated)");
    expect_stream_error(START EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}")
                            "event: message_stop\ndata: {\"type\":\"message_st",
                        FIG_E_UPSTREAM, "truncated");
    expect_stream_error("", FIG_E_UPSTREAM, "truncated");

    /* The error event. */
    expect_stream_error(START BLOCK_START(0, "{\"type\":\"text\",\"text\":\"\"}")
                            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                            "\"message\":\"Overloaded\"}}\n\n" STOP,
                        FIG_E_UPSTREAM, "the model endpoint reported an error: overloaded_error: Overloaded");
    expect_stream_error("event: error\ndata: {\"error\":{\"message\":\"no type\"}}\n\n", FIG_E_UPSTREAM,
                        "reported an error: no type");
    expect_stream_error("data: {\"type\":\"error\",\"error\":{\"type\":\"api_error\"}}\n\n", FIG_E_UPSTREAM,
                        "reported an error: api_error");
    expect_stream_error("event: error\ndata: {}\n\n", FIG_E_UPSTREAM, "reported an error: (no message)");

    /* Malformed events. */
    expect_stream_error(START "event: content_block_start\ndata: {\"type\":\"content_block_start\",\n\n" STOP,
                        FIG_E_UPSTREAM, "malformed event from the model endpoint: ");
    expect_stream_error("data: [1,2]\n\n", FIG_E_UPSTREAM, "malformed event");
    expect_stream_error("data: {\"index\":0}\n\n", FIG_E_UPSTREAM, "without a type");
    expect_stream_error(BLOCK_START(0, "{\"type\":\"text\",\"text\":\"\"}") STOP, FIG_E_UPSTREAM,
                        "an event before message_start");
    expect_stream_error(START START STOP, FIG_E_UPSTREAM, "a second message_start");
    expect_stream_error("data: {\"type\":\"message_start\",\"message\":7}\n\n", FIG_E_UPSTREAM, "without a message");
    expect_stream_error(START BLOCK_DELTA(0, "{\"type\":\"text_delta\",\"text\":\"x\"}") STOP, FIG_E_UPSTREAM,
                        "not open");
    expect_stream_error(START BLOCK_START(0, "{\"type\":\"text\",\"text\":\"\"}") BLOCK_STOP(0)
                            BLOCK_DELTA(0, "{\"type\":\"text_delta\",\"text\":\"x\"}") STOP,
                        FIG_E_UPSTREAM, "not open");
    expect_stream_error(START BLOCK_STOP(0) STOP, FIG_E_UPSTREAM, "a stop for a content block that is not open");
    expect_stream_error(START BLOCK_START(0, "{\"type\":\"text\",\"text\":\"\"}") BLOCK_STOP(0)
                            BLOCK_START(0, "{\"type\":\"text\",\"text\":\"\"}") STOP,
                        FIG_E_UPSTREAM, "started twice");
    expect_stream_error(START BLOCK_START(0, TOOL("t", "sql", "{}"))
                            BLOCK_DELTA(0, "{\"type\":\"text_delta\",\"text\":\"x\"}") STOP,
                        FIG_E_UPSTREAM, "a text delta for a tool_use block");
    expect_stream_error(START BLOCK_START(0, "{\"type\":\"text\",\"text\":\"\"}")
                            BLOCK_DELTA(0, "{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}") STOP,
                        FIG_E_UPSTREAM, "a tool input delta for a text block");
    expect_stream_error(START BLOCK_START(0, TOOL("t", "sql", "{}"))
                            BLOCK_DELTA(0, "{\"type\":\"input_json_delta\",\"partial_json\":{}}") STOP,
                        FIG_E_UPSTREAM, "partial_json is not a string");
    expect_stream_error(START BLOCK_START(0, "{\"type\":\"text\",\"text\":\"\"}")
                            BLOCK_DELTA(0, "{\"type\":\"text_delta\",\"text\":5}") STOP,
                        FIG_E_UPSTREAM, "text is not a string");
    expect_stream_error(START BLOCK_START(0, "{\"type\":\"text\",\"text\":\"\"}") BLOCK_DELTA(0, "\"x\"") STOP,
                        FIG_E_UPSTREAM, "without a typed delta");
    expect_stream_error(START BLOCK_START(0, "{\"text\":\"\"}") STOP, FIG_E_UPSTREAM, "without a typed content_block");
    expect_stream_error(START BLOCK_START(256, "{\"type\":\"text\",\"text\":\"\"}") STOP, FIG_E_UPSTREAM, "index 256");
    expect_stream_error(START BLOCK_START(-1, "{\"type\":\"text\",\"text\":\"\"}") STOP, FIG_E_UPSTREAM, "index -1");
    expect_stream_error(START EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":\"0\"}") STOP,
                        FIG_E_UPSTREAM, "no integer index");
    expect_stream_error(START BLOCK_START(0, "{\"type\":\"tool_use\",\"id\":\"t\",\"input\":{}}") STOP, FIG_E_UPSTREAM,
                        "a tool_use block has no name");
    expect_stream_error(START BLOCK_START(0, "{\"type\":\"tool_use\",\"name\":\"sql\",\"id\":\"\"}") STOP,
                        FIG_E_UPSTREAM, "a tool_use block has no id");
    expect_stream_error(START BLOCK_START(0, TOOL("t", "sql", "[]")) STOP, FIG_E_UPSTREAM, "input is not an object");
    expect_stream_error(START EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":1}}") STOP,
                        FIG_E_UPSTREAM, "stop_reason is not a string");
    expect_stream_error(START EV("message_delta", "{\"type\":\"message_delta\",\"delta\":[]}") STOP, FIG_E_UPSTREAM,
                        "delta is not an object");

    /* At most LLM_MAX_TOOL_CALLS tool_use blocks. */
    fig_buf_t s = FIG_BUF_INIT;
    fig_buf_append_str(&s, START);
    for (int i = 0; i <= LLM_MAX_TOOL_CALLS; i++)
        fig_buf_appendf(&s, "data: {\"type\":\"content_block_start\",\"index\":%d,\"content_block\":"
                            "{\"type\":\"tool_use\",\"id\":\"t%d\",\"name\":\"sql\",\"input\":{}}}\n\n"
                            "data: {\"type\":\"content_block_stop\",\"index\":%d}\n\n",
                        i, i, i);
    fig_buf_append_str(&s, STOP);
    expect_stream_error(s.data, FIG_E_UPSTREAM, "more than 16 tool calls");
    fig_buf_free(&s);
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
    const char *good = START STOP;
    assert_int_equal(P->parser_feed(st, good, strlen(good), &err2), -1);
    assert_string_equal(err2.msg, err.msg);
    fig_err_clear(&err2);
    assert_int_equal(P->parser_finish(st, &err2), -1);
    assert_string_equal(err2.msg, err.msg);
    assert_int_equal(P->parser_feed(st, "x", 1, NULL), -1); /* err may be NULL */
    assert_int_equal(r.complete, 0);
    P->parser_free(st);
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
        fig_buf_append_str(&s, START BLOCK_START(0, TOOL("t", "sql", "{}")));
        for (int i = 0; i < pieces; i++)
            fig_buf_appendf(&s, "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                                "{\"type\":\"input_json_delta\",\"partial_json\":\"%s\"}}\n\n",
                            arg);
        fig_buf_append_str(&s, BLOCK_STOP(0) STOP);
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
            assert_non_null(strstr(err.msg, "arguments of tool call 0"));
        }
        llm_result_free(&r);
        fig_buf_free(&s);
    }
    free(arg);
}

static void test_stream_content_bound(void **state)
{
    (void)state;
    size_t piece = 3u << 20; /* three 3 MB deltas pass the 8 MB cap; each event is under the SSE cap */
    char *text = malloc(piece + 1);
    memset(text, 'x', piece);
    text[piece] = '\0';
    fig_buf_t s = FIG_BUF_INIT;
    fig_buf_append_str(&s, START BLOCK_START(0, "{\"type\":\"text\",\"text\":\"\"}"));
    for (int i = 0; i < 3; i++)
        fig_buf_appendf(&s, "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
                            "\"text\":\"%s\"}}\n\n",
                        text);
    fig_buf_append_str(&s, STOP);
    llm_result_t r;
    llm_result_init(&r);
    fig_err_t err;
    assert_int_equal(parse_stream(s.data, 0, &r, &err), -1);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    assert_non_null(strstr(err.msg, "answer exceeds"));
    assert_true(r.content.len <= (8u << 20));
    llm_result_free(&r);
    fig_buf_free(&s);
    free(text);
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
    "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":["
    "{\"type\":\"thinking\",\"thinking\":\"let me see\",\"signature\":\"EqQB\"},"
    "{\"type\":\"text\",\"text\":\"Looking \\u2014 \"},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"sql\",\"input\":{\"query\":\"SELECT count(*) FROM m\",\"n\":1}},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"set_state\",\"input\":{}}],"
    "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":300,\"cache_creation_input_tokens\":40,\"cache_read_input_tokens\":256,"
    "\"output_tokens\":40}}";

static void check_whole(const llm_result_t *r)
{
    assert_int_equal(r->complete, 1);
    assert_string_equal(r->content.data, "Looking \xe2\x80\x94 ");
    assert_int_equal(r->ncalls, 2);
    assert_string_equal(r->calls[0].id, "toolu_1");
    assert_string_equal(r->calls[0].name, "sql");
    assert_string_equal(r->calls[0].arguments.data, "{\"query\":\"SELECT count(*) FROM m\",\"n\":1}");
    assert_string_equal(r->calls[1].id, "toolu_2");
    assert_string_equal(r->calls[1].name, "set_state");
    assert_string_equal(r->calls[1].arguments.data, "{}");
    assert_string_equal(r->finish_reason, "tool_calls");
    assert_int_equal(r->usage.prompt_tokens, 300 + 40 + 256);
    assert_int_equal(r->usage.cached_tokens, 256);
    assert_int_equal(r->usage.cache_write_tokens, 40);
    assert_int_equal(r->usage.completion_tokens, 40);
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
    const char *text = "{\"content\":[{\"type\":\"text\",\"text\":\"# Hi\"}],\"stop_reason\":\"end_turn\"}";
    assert_int_equal(parse(0, NULL, text, strlen(text), 0, &r, &err), 0);
    assert_string_equal(r.content.data, "# Hi");
    assert_string_equal(seen.data, "# Hi");
    assert_string_equal(r.finish_reason, "stop");
    assert_int_equal(r.usage.prompt_tokens, 0);
    fig_buf_free(&seen);
    llm_result_free(&r);

    const char *bad[] = {"",
                         "{}",
                         "[]",
                         "{\"type\":\"message\",\"content\":{}}",
                         "{\"type\":\"completion\",\"content\":[]}",
                         "{\"content\":[{\"text\":\"x\"}]}",
                         "{\"content\":[{\"type\":\"text\",\"text\":null}]}",
                         "{\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"input\":{}}]}",
                         "{\"content\":[],\"stop_reason\":5}",
                         "{\"content\":[{\"type\":\"text\",\"text\":\"x\"}]",
                         "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"quota\"}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        llm_result_init(&r);
        fig_err_clear(&err);
        assert_int_equal(parse(0, "application/json", bad[i], strlen(bad[i]), 0, &r, &err), -1);
        assert_int_equal(err.code, FIG_E_UPSTREAM);
        assert_int_equal(r.complete, 0);
        llm_result_free(&r);
    }
    assert_string_equal(err.msg, "the model endpoint reported an error: invalid_request_error: quota");

    /* The body is capped at 8 MB. */
    size_t n = (8u << 20) + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    llm_result_init(&r);
    assert_int_equal(parse(0, "application/json", big, n, 0, &r, &err), -1);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    llm_result_free(&r);
    free(big);
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
        {429, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Number of request tokens has "
              "exceeded your per-minute rate limit\"}}",
         "the model endpoint answered HTTP 429: rate_limit_error: Number of request tokens has exceeded your per-minute "
         "rate limit"},
        {529, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"},"
              "\"request_id\":\"req_1\"}",
         "the model endpoint answered HTTP 529: overloaded_error: Overloaded"},
        {401, "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid\\nx-api-key\"}}",
         "the model endpoint answered HTTP 401: authentication_error: invalid x-api-key"},
        {400, "{\"error\":{\"message\":\"bad request\"}}", "the model endpoint answered HTTP 400: bad request"},
        {404, "{\"error\":\"model not found\"}", "the model endpoint answered HTTP 404: model not found"},
        {500, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\"}}", "the model endpoint answered HTTP 500: api_error"},
        {502, "<html>\r\n<b>Bad\tGateway</b>\r\n</html>\n",
         "the model endpoint answered HTTP 502: <html>  <b>Bad Gateway</b>  </html>"},
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

    /* Long messages are cut to 300 bytes, on a UTF-8 boundary, marked "...". */
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"");
    for (int i = 0; i < 200; i++)
        fig_buf_append_str(&b, "\xc3\xa9");
    fig_buf_append_str(&b, "\"}}");
    fig_err_t err;
    P->describe_error(500, b.data, b.len, &err);
    const char *prefix = "the model endpoint answered HTTP 500: api_error: ";
    assert_memory_equal(err.msg, prefix, strlen(prefix));
    const char *q = err.msg + strlen(prefix);
    /* "api_error: " is 11 bytes, so byte 300 falls inside a character: cut at 299 */
    assert_int_equal(strlen(q), 299 - 11 + 3);
    assert_string_equal(q + 299 - 11, "...");
    fig_buf_free(&b);

    /* NULL body is allowed. */
    P->describe_error(401, NULL, 0, &err);
    assert_string_equal(err.msg, "the model endpoint answered HTTP 401");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_request_exact),
        cmocka_unit_test(test_build_request_system_cache),
        cmocka_unit_test(test_build_request_minimal),
        cmocka_unit_test(test_build_request_urls),
        cmocka_unit_test(test_build_request_merges_turns),
        cmocka_unit_test(test_build_request_rejects),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_stream_usage),
        cmocka_unit_test(test_stream_tolerances),
        cmocka_unit_test(test_stream_errors),
        cmocka_unit_test(test_stream_error_is_sticky),
        cmocka_unit_test(test_stream_args_bound),
        cmocka_unit_test(test_stream_content_bound),
        cmocka_unit_test(test_stream_event_bound),
        cmocka_unit_test(test_whole_response),
        cmocka_unit_test(test_describe_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
