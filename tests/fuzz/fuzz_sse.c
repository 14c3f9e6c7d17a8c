/*
 * fuzz_sse.c — libFuzzer target for the SSE parser (server/sse.c) and the OpenAI
 * response parser (server/llm_openai.c). Not part of the meson build.
 *
 * Build and run from the repository root:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iserver \
 *     tests/fuzz/fuzz_sse.c server/sse.c server/llm.c server/llm_openai.c server/buf.c server/error.c \
 *     $(pkg-config --cflags --libs jansson libcurl) -o /tmp/fuzz_sse
 *   /tmp/fuzz_sse -max_total_time=60 -max_len=4096 /tmp/fuzz_sse_corpus
 *
 * Input: the first two bytes seed the split pattern, the rest is the response body.
 * Oracle (beyond the sanitizers): feeding the body whole, in random pieces and byte
 * by byte must give identical SSE events and an identical OpenAI result (return
 * code, error, content, tool calls, finish reason, usage), streamed and not.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"
#include "sse.h"

static int fuzz_event(void *ctx, const char *event, const char *data, size_t len)
{
    fig_buf_t *log = ctx;
    fig_buf_appendf(log, "%s|%zu|", event, len);
    fig_buf_append(log, data, len);
    fig_buf_append(log, "\n", 1);
    return 0;
}

/* mode 0: whole; 1: byte by byte; else random pieces from seed `mode`. */
static size_t fuzz_piece(uint32_t mode, uint32_t *seed, size_t left)
{
    size_t k;
    if (mode == 0)
        k = left;
    else if (mode == 1)
        k = 1;
    else {
        *seed = *seed * 1103515245u + 12345u;
        k = 1 + (*seed >> 8) % 64;
    }
    return k < left ? k : left;
}

static char *fuzz_sse_run(const uint8_t *d, size_t n, uint32_t mode)
{
    fig_buf_t log = FIG_BUF_INIT;
    sse_parser_t p;
    sse_init(&p, fuzz_event, &log);
    uint32_t seed = mode;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t k = fuzz_piece(mode, &seed, n - i);
        rc = sse_feed(&p, (const char *)d + i, k);
        i += k;
    }
    fig_buf_appendf(&log, "rc=%d", rc);
    sse_free(&p);
    return fig_buf_steal(&log);
}

static char *fuzz_openai_run(const uint8_t *d, size_t n, uint32_t mode, int stream)
{
    const llm_provider_t *P = &llm_provider_openai;
    llm_result_t r;
    llm_result_init(&r);
    fig_err_t err;
    fig_err_clear(&err);
    void *st = P->parser_new(stream, stream ? "text/event-stream" : "application/json", &r);
    uint32_t seed = mode;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t k = fuzz_piece(mode, &seed, n - i);
        rc = P->parser_feed(st, (const char *)d + i, k, &err);
        i += k;
    }
    if (rc == 0)
        rc = P->parser_finish(st, &err);
    P->parser_free(st);

    fig_buf_t log = FIG_BUF_INIT;
    fig_buf_appendf(&log, "rc=%d code=%d msg=%s complete=%d finish=%s usage=%lld/%lld/%lld ncalls=%zu\n", rc,
                    (int)err.code, err.msg, r.complete, r.finish_reason, (long long)r.usage.prompt_tokens,
                    (long long)r.usage.cached_tokens, (long long)r.usage.completion_tokens, r.ncalls);
    if (rc == 0) { /* after an error, how much was assembled depends on where it hit */
        fig_buf_append(&log, r.content.data ? r.content.data : "", r.content.len);
        for (size_t i = 0; i < r.ncalls; i++)
            fig_buf_appendf(&log, "\n%s %s %zu:%s", r.calls[i].id ? r.calls[i].id : "-",
                            r.calls[i].name ? r.calls[i].name : "-", r.calls[i].arguments.len,
                            r.calls[i].arguments.data ? r.calls[i].arguments.data : "");
    }
    llm_result_free(&r);
    return fig_buf_steal(&log);
}

static void fuzz_same(char *a, char *b, const char *what)
{
    if (strcmp(a, b) != 0) {
        fprintf(stderr, "%s differs by split:\n--- whole\n%s\n--- split\n%s\n", what, a, b);
        abort();
    }
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t mode = 2u + ((uint32_t)data[0] << 8 | data[1]);
    data += 2;
    size -= 2;

    char *whole = fuzz_sse_run(data, size, 0);
    fuzz_same(whole, fuzz_sse_run(data, size, mode), "SSE events");
    if (size <= 512)
        fuzz_same(whole, fuzz_sse_run(data, size, 1), "SSE events (byte by byte)");
    free(whole);

    for (int stream = 1; stream >= 0; stream--) {
        whole = fuzz_openai_run(data, size, 0, stream);
        fuzz_same(whole, fuzz_openai_run(data, size, mode, stream), "OpenAI result");
        if (size <= 512)
            fuzz_same(whole, fuzz_openai_run(data, size, 1, stream), "OpenAI result (byte by byte)");
        free(whole);
    }

    fig_err_t err;
    llm_provider_openai.describe_error(500, (const char *)data, size, &err);
    return 0;
}
