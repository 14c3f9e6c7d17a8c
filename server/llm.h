/*
 * llm.h — the provider interface: how figment talks to a language model.
 *
 * The agent builds a provider-neutral llm_request_t (a stable system prefix, tool
 * schemas, the conversation). A provider (llm_provider_t; OpenAI-compatible Chat
 * Completions in llm_openai.c, more in later issues) turns it into an HTTP request
 * and parses the streamed answer into an llm_result_t: assembled text, tool calls
 * assembled across deltas, usage, finish reason. Transport is not the provider's
 * business: llm_call.c runs the HTTP exchange on the event loop and feeds the bytes in.
 *
 * Conversation format (a jansson array; the agent owns it):
 *   {"role":"user","content":"..."}
 *   {"role":"assistant","content":"..." (may be ""),
 *    "tool_calls":[{"id":"...","name":"...","arguments":"<JSON text>"}]}
 *   {"role":"tool","tool_call_id":"...","name":"...","content":"..."}
 * Tool schemas (a jansson array):
 *   {"name":"sql","description":"...","parameters":{JSON Schema}}
 *
 * Ownership: llm_result_t owns its strings; llm_result_free() releases them.
 * A parser state from parser_new() is released by parser_free().
 */
#ifndef FIG_LLM_H
#define FIG_LLM_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

#define LLM_MAX_TOOL_CALLS 16
#define LLM_MAX_TOOL_ARGS_BYTES (256u << 10)

typedef struct {
    const char *base_url;  /* e.g. "https://api.openai.com/v1" (no trailing slash needed) */
    const char *api_key;   /* may be NULL (Ollama, llama.cpp) */
} llm_endpoint_t;

typedef struct {
    const char *model;
    const char *system;   /* stable prefix: system contract + app prompt + DB schema */
    const json_t *tools;  /* array of tool schemas (borrowed) */
    const json_t *messages; /* conversation (borrowed) */
    int max_tokens;
    int stream;           /* 1: request an SSE stream with usage */
} llm_request_t;

typedef struct {
    char *id;
    char *name;
    fig_buf_t arguments; /* JSON text as the model wrote it (may be invalid JSON) */
} llm_tool_call_t;

/* Normalized across providers: prompt_tokens counts every input token, including
 * those read from or written to the provider's prompt cache. */
typedef struct {
    int64_t prompt_tokens;
    int64_t cached_tokens;      /* read from the prompt cache (billed at the cached price) */
    int64_t cache_write_tokens; /* written to the prompt cache (Anthropic bills these extra) */
    int64_t completion_tokens;
} llm_usage_t;

typedef struct {
    fig_buf_t content;                       /* the assistant's text */
    llm_tool_call_t calls[LLM_MAX_TOOL_CALLS];
    size_t ncalls;
    char finish_reason[32];                  /* "stop", "tool_calls", "length", ... */
    llm_usage_t usage;
    int complete;                            /* the stream ended properly ([DONE] or a full JSON body) */
    /* Optional: called with each text delta as it arrives (progressive rendering seam). */
    void (*on_text)(void *ctx, const char *s, size_t n);
    void *on_text_ctx;
} llm_result_t;

void llm_result_init(llm_result_t *r);
void llm_result_free(llm_result_t *r);

typedef struct llm_provider {
    const char *kind; /* "openai", "anthropic" */
    /* Builds the request: the full URL into url, headers (the caller frees the list
     * with curl_slist_free_all), and the body. */
    int (*build_request)(const llm_endpoint_t *ep, const llm_request_t *req, fig_buf_t *url, struct curl_slist **headers,
                         fig_buf_t *body, fig_err_t *err);
    /* Parser for a 2xx response body; stream says whether an SSE stream was requested.
     * content_type is the response's Content-Type (may be NULL). */
    void *(*parser_new)(int stream, const char *content_type, llm_result_t *res);
    /* Feeds response bytes; -1 with err on malformed data or a bound exceeded. */
    int (*parser_feed)(void *st, const char *data, size_t len, fig_err_t *err);
    /* End of body: -1 with err when the answer is incomplete (truncated stream). */
    int (*parser_finish)(void *st, fig_err_t *err);
    void (*parser_free)(void *st);
    /* Turns a non-2xx response into an error with the provider's message. */
    void (*describe_error)(long status, const char *body, size_t len, fig_err_t *err);
} llm_provider_t;

extern const llm_provider_t llm_provider_openai;
extern const llm_provider_t llm_provider_anthropic;

/* ---- shared helpers for providers (llm.c) ---- */

#define LLM_MAX_QUOTE_BYTES 300 /* upstream text quoted in an error message */

/* Appends s[0..n) to out for an error message: trimmed, at most LLM_MAX_QUOTE_BYTES
 * (cut on a UTF-8 boundary, "..." marks the cut), control characters replaced by
 * spaces, since upstream text ends up in logs and pages. */
void llm_quote(fig_buf_t *out, const char *s, size_t n);
/* 1 when the media type is JSON: application/json or any +json suffix (parameters
 * ignored); 0 otherwise or for NULL. */
int llm_is_json_type(const char *content_type);
/* 1 when s contains a control character (CR, LF, ... DEL): unfit for a URL or header. */
int llm_has_ctl(const char *s);
/* The JSON text of s (quoted and escaped exactly as json_dumps writes a string), for
 * the large, stable part of every request: the system prompt. Cached per thread (a
 * few entries, reused only when the bytes are equal, never on the address alone), so
 * a request does not copy, check and escape ~17 KB that did not change. NULL when s
 * is not valid UTF-8. *len gets the length. Valid until this thread's next call. */
const char *llm_json_text_cached(const char *s, size_t *len);
/* Appends the compact JSON text of v (keys in insertion order, any value); -1 when
 * jansson cannot serialize it. */
int llm_append_json(fig_buf_t *out, const json_t *v);
/* The same for text derived from a JSON value: a provider's serialized tool list
 * (~2 KB of schemas and descriptions that jansson would escape again on every call).
 * derive(v, out, err) appends the text to out, or returns -1 with err (then nothing is
 * cached and NULL is returned); the function also tells derivations apart. An entry
 * is reused only when v equals its private deep copy node for node, with keys in the
 * same order, so the text is what derive would write now. Valid as above. */
typedef int (*llm_derive_fn)(const json_t *v, fig_buf_t *out, fig_err_t *err);
const char *llm_derived_cached(const json_t *v, llm_derive_fn derive, size_t *len, fig_err_t *err);
/* The checks every provider makes before building a request: an http(s) endpoint
 * URL and an API key without control characters, a model name, a conversation array,
 * a tool array (or none). -1 with err (FIG_E_CONFIG or FIG_E_INVALID) otherwise. */
int llm_check_request(const llm_endpoint_t *ep, const llm_request_t *req, fig_err_t *err);
/* The parts of tool schema number i (llm.h format): name (required string),
 * description (optional string), parameters (optional object); borrowed references.
 * -1 with err "tool schema i is malformed" otherwise. */
int llm_tool_fields(const json_t *tool, size_t i, json_t **name, json_t **desc, json_t **params, fig_err_t *err);

#endif
