/*
 * llm_anthropic.c — the Anthropic Messages API provider (see llm.h).
 *
 * Request: like the OpenAI provider, the body is compact JSON in one fixed key order
 * (model, max_tokens, system, tools, messages, stream), assembled from fragments that
 * jansson dumps with JSON_COMPACT | JSON_PRESERVE_ORDER (the system prompt's escaped
 * text and the tool list come from a per-thread cache), so identical inputs give
 * identical bytes.
 * Anthropic caches a prefix only up to an explicit breakpoint, so the stable parts
 * carry one: "cache_control":{"type":"ephemeral"} on the system block and on the last
 * tool (tools come first in Anthropic's prefix order, then system, then messages).
 * Converting the llm.h conversation:
 *   - a run of "tool" messages becomes ONE user message of tool_result blocks, since
 *     Anthropic wants every result of an assistant turn in the next user turn; a
 *     result whose text starts with "error: " (the agent's convention) is is_error;
 *   - assistant tool calls become tool_use blocks whose "input" must be an object:
 *     arguments that are not a JSON object (the model wrote bad JSON, the agent
 *     answered with an error) are sent as {} — the text is lost, the error result
 *     that follows explains it;
 *   - consecutive messages of the same role are merged into one (Anthropic merges
 *     them too, but stricter servers reject them), string content turning into a
 *     text block; an assistant message with neither text nor calls is refused;
 *   - max_tokens is required by Anthropic: 4096 when the request leaves it at 0;
 *   - a tool without parameters gets {"type":"object"} (input_schema is required).
 *
 * Response: an SSE stream (message_start, content_block_start/delta/stop,
 * message_delta, message_stop, ping, error) or, when no stream was asked for or a
 * JSON Content-Type came back, one message object buffered until finish. Content
 * blocks are tracked by their index: text blocks feed content, tool_use blocks own
 * a call slot and collect input_json_delta fragments. Deliberate tolerances:
 *   - unknown event types, unknown block types (thinking, server tools, ...) and
 *     their deltas are ignored, as Anthropic asks clients to do;
 *   - a tool_use block whose "input" at start is a non-empty object (some proxies
 *     send the whole input there) keeps it unless input_json_delta follows;
 *   - a tool_use block without any input JSON means "{}".
 * Everything else that breaks the format is FIG_E_UPSTREAM (a delta for a block
 * never started, a text delta on a tool block, an event before message_start, ...);
 * size caps are FIG_E_TOO_LARGE. The stream is complete only after message_stop.
 * Usage is normalized per llm.h: Anthropic's input_tokens excludes cache reads and
 * writes, so prompt_tokens adds them back.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm.h"
#include "sse.h"

#define ANTHROPIC_VERSION "2023-06-01"
#define ANTHROPIC_DEFAULT_MAX_TOKENS 4096
#define ANTHROPIC_MAX_BODY_BYTES (8u << 20) /* non-streamed body, and assembled content */
#define ANTHROPIC_MAX_ID_BYTES 256
#define ANTHROPIC_MAX_NAME_BYTES 256
#define ANTHROPIC_MAX_BLOCKS 256 /* content blocks per message (text, tool_use, thinking, ...) */

/* ---- request ---- */

static int anthropic_bad_message(size_t i, const char *why, fig_err_t *err)
{
    fig_err_set(err, FIG_E_INVALID, "conversation message %zu: %s", i, why);
    return -1;
}

static json_t *anthropic_ephemeral(void)
{
    json_t *cc = json_object();
    json_object_set_new(cc, "type", json_string("ephemeral"));
    return cc;
}

static json_t *anthropic_text_block(json_t *text)
{
    json_t *b = json_object();
    json_object_set_new(b, "type", json_string("text"));
    json_object_set(b, "text", text);
    return b;
}

/* Appends a message of `role` with content (a string or an array of blocks, stolen)
 * to out, merging it into the last message when that one has the same role. */
static void anthropic_emit(json_t *out, const char *role, json_t *content)
{
    json_t *last = json_array_get(out, json_array_size(out) - 1);
    if (last == NULL || strcmp(json_string_value(json_object_get(last, "role")), role) != 0) {
        json_t *o = json_object();
        json_object_set_new(o, "role", json_string(role));
        json_object_set_new(o, "content", content);
        json_array_append_new(out, o);
        return;
    }
    json_t *prev = json_object_get(last, "content");
    if (json_is_string(prev)) {
        json_t *arr = json_array();
        json_array_append_new(arr, anthropic_text_block(prev));
        json_object_set_new(last, "content", arr);
        prev = arr;
    }
    if (json_is_string(content))
        json_array_append_new(prev, anthropic_text_block(content));
    else
        json_array_extend(prev, content);
    json_decref(content);
}

/* The tool_use "input": the arguments if they are a JSON object, else {}. */
static json_t *anthropic_input(const char *args)
{
    json_t *v = json_loads(args, 0, NULL);
    if (json_is_object(v))
        return v;
    json_decref(v);
    return json_object();
}

static int anthropic_assistant(json_t *out, const json_t *m, size_t i, fig_err_t *err)
{
    json_t *content = json_object_get(m, "content"), *calls = json_object_get(m, "tool_calls");
    if (content != NULL && !json_is_null(content) && !json_is_string(content))
        return anthropic_bad_message(i, "assistant content is not a string", err);
    if (calls != NULL && !json_is_array(calls))
        return anthropic_bad_message(i, "tool_calls is not an array", err);
    int has_text = json_is_string(content) && json_string_length(content) > 0;
    if (json_array_size(calls) == 0) {
        if (!has_text)
            return anthropic_bad_message(i, "an assistant message has neither text nor tool calls", err);
        anthropic_emit(out, "assistant", json_incref(content));
        return 0;
    }
    json_t *blocks = json_array();
    if (has_text)
        json_array_append_new(blocks, anthropic_text_block(content));
    size_t k;
    json_t *c;
    json_array_foreach(calls, k, c) {
        json_t *id = json_object_get(c, "id"), *name = json_object_get(c, "name"), *args = json_object_get(c, "arguments");
        if (!json_is_string(id) || !json_is_string(name) || !json_is_string(args)) {
            json_decref(blocks);
            return anthropic_bad_message(i, "a tool call lacks id, name or arguments", err);
        }
        json_t *b = json_object();
        json_object_set_new(b, "type", json_string("tool_use"));
        json_object_set(b, "id", id);
        json_object_set(b, "name", name);
        json_object_set_new(b, "input", anthropic_input(json_string_value(args)));
        json_array_append_new(blocks, b);
    }
    anthropic_emit(out, "assistant", blocks);
    return 0;
}

/* Converts the conversation (llm.h format) into Anthropic's messages array. */
static int anthropic_messages(json_t *out, const json_t *msgs, fig_err_t *err)
{
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        if (role == NULL)
            return anthropic_bad_message(i, "no role", err);
        if (strcmp(role, "user") == 0) {
            if (!json_is_string(content))
                return anthropic_bad_message(i, "user content is not a string", err);
            anthropic_emit(out, "user", json_incref(content));
        } else if (strcmp(role, "assistant") == 0) {
            if (anthropic_assistant(out, m, i, err) != 0)
                return -1;
        } else if (strcmp(role, "tool") == 0) {
            json_t *id = json_object_get(m, "tool_call_id");
            if (!json_is_string(id) || !json_is_string(content))
                return anthropic_bad_message(i, "tool message lacks tool_call_id or content", err);
            json_t *b = json_object();
            json_object_set_new(b, "type", json_string("tool_result"));
            json_object_set(b, "tool_use_id", id);
            json_object_set(b, "content", content);
            if (strncmp(json_string_value(content), "error: ", 7) == 0)
                json_object_set_new(b, "is_error", json_true());
            json_t *arr = json_array();
            json_array_append_new(arr, b);
            anthropic_emit(out, "user", arr); /* a run of results merges into one user turn */
        } else {
            return anthropic_bad_message(i, "unknown role", err);
        }
    }
    return 0;
}

static int anthropic_add_tools(json_t *root, const json_t *tools, fig_err_t *err)
{
    if (tools == NULL || json_array_size(tools) == 0)
        return 0;
    json_t *arr = json_array();
    json_object_set_new(root, "tools", arr);
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *name, *desc, *params;
        if (llm_tool_fields(t, i, &name, &desc, &params, err) != 0)
            return -1;
        json_t *o = json_object();
        json_object_set(o, "name", name);
        if (desc)
            json_object_set(o, "description", desc);
        if (params) {
            json_object_set(o, "input_schema", params);
        } else {
            json_t *schema = json_object();
            json_object_set_new(schema, "type", json_string("object"));
            json_object_set_new(o, "input_schema", schema);
        }
        if (i + 1 == json_array_size(tools))
            json_object_set_new(o, "cache_control", anthropic_ephemeral());
        json_array_append_new(arr, o);
    }
    return 0;
}

/* base_url with trailing slashes trimmed, then "/messages" after a "/v1" base, else
 * "/v1/messages" (both "https://api.anthropic.com" and ".../v1" are common). */
static void anthropic_url(fig_buf_t *url, const char *base)
{
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    fig_buf_reset(url);
    fig_buf_append(url, base, blen);
    if (blen >= 3 && strncmp(base + blen - 3, "/v1", 3) == 0)
        fig_buf_append_str(url, "/messages");
    else
        fig_buf_append_str(url, "/v1/messages");
}

/* llm_derive_fn: the "tools" array of the body (cached per thread by the caller). */
static int anthropic_tools_text(const json_t *tools, fig_buf_t *out, fig_err_t *err)
{
    json_t *troot = json_object();
    int rc = anthropic_add_tools(troot, tools, err);
    if (rc == 0 && llm_append_json(out, json_object_get(troot, "tools")) != 0) {
        fig_err_set(err, FIG_E_INVALID, "could not serialize the request");
        rc = -1;
    }
    json_decref(troot);
    return rc;
}

static int anthropic_build_request(const llm_endpoint_t *ep, const llm_request_t *req, fig_buf_t *url,
                                   struct curl_slist **headers, fig_buf_t *body, fig_err_t *err)
{
    if (llm_check_request(ep, req, err) != 0)
        return -1;
    const char *base = ep->base_url;

    /* Fixed key order: model, max_tokens, system, tools, messages, stream. The body is
     * assembled from compact JSON fragments, byte-identical to dumping the whole
     * object; the system prompt (the large, stable prefix) and the tool list are
     * serialized once per thread and reused (llm_json_text_cached, llm_derived_cached). */
    fig_buf_t out = FIG_BUF_INIT;
    json_t *model = json_string(req->model), *parts = NULL;
    if (model == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "the model name is not valid UTF-8");
        return -1;
    }
    fig_buf_append_str(&out, "{\"model\":");
    int rc = llm_append_json(&out, model);
    json_decref(model);
    if (rc != 0)
        goto fail_text;
    fig_buf_appendf(&out, ",\"max_tokens\":%d", req->max_tokens > 0 ? req->max_tokens : ANTHROPIC_DEFAULT_MAX_TOKENS);
    if (req->system && req->system[0]) {
        size_t n;
        const char *sys = llm_json_text_cached(req->system, &n);
        if (sys == NULL) {
            fig_err_set(err, FIG_E_INVALID, "the system prompt is not valid UTF-8");
            goto fail;
        }
        fig_buf_reserve(&out, n + 128);
        fig_buf_append_str(&out, ",\"system\":[{\"type\":\"text\",\"text\":");
        fig_buf_append(&out, sys, n);
        fig_buf_append_str(&out, ",\"cache_control\":{\"type\":\"ephemeral\"}}]");
    }
    if (json_array_size(req->tools) > 0) {
        size_t n;
        const char *tools = llm_derived_cached(req->tools, anthropic_tools_text, &n, err);
        if (tools == NULL)
            goto fail;
        fig_buf_append_str(&out, ",\"tools\":");
        fig_buf_append(&out, tools, n);
    }
    parts = json_object();
    json_t *msgs = json_array();
    json_object_set_new(parts, "messages", msgs);
    if (anthropic_messages(msgs, req->messages, err) != 0)
        goto fail;
    fig_buf_append_str(&out, ",\"messages\":");
    if (llm_append_json(&out, msgs) != 0)
        goto fail_text;
    if (req->stream)
        fig_buf_append_str(&out, ",\"stream\":true");
    fig_buf_append_str(&out, "}");
    json_decref(parts);
    fig_buf_free(body);
    *body = out;
    anthropic_url(url, base);

    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "content-type: application/json");
    h = curl_slist_append(h, req->stream ? "accept: text/event-stream" : "accept: application/json");
    h = curl_slist_append(h, "anthropic-version: " ANTHROPIC_VERSION);
    if (ep->api_key && ep->api_key[0]) {
        fig_buf_t key = FIG_BUF_INIT;
        fig_buf_appendf(&key, "x-api-key: %s", ep->api_key);
        h = curl_slist_append(h, key.data);
        fig_buf_free(&key);
    }
    if (h == NULL) {
        fputs("figment: out of memory\n", stderr);
        abort();
    }
    *headers = h;
    return 0;

fail_text:
    fig_err_set(err, FIG_E_INVALID, "could not serialize the request");
fail:
    json_decref(parts);
    fig_buf_free(&out);
    return -1;
}

/* ---- errors ---- */

/* Appends "type: message" (or whichever exists) of an Anthropic error object
 * {"type":"error","error":{"type":..,"message":..}}, or the message of the other
 * common shapes ({"error":".."}, {"message":..}), quoted; nothing when none. */
static void anthropic_error_text(fig_buf_t *q, const json_t *root)
{
    const json_t *e = json_object_get(root, "error");
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (msg == NULL)
        msg = json_string_value(e);
    if (msg == NULL)
        msg = json_string_value(json_object_get(root, "message"));
    fig_buf_t t = FIG_BUF_INIT;
    if (type && msg)
        fig_buf_appendf(&t, "%s: %s", type, msg);
    else if (type || msg)
        fig_buf_append_str(&t, type ? type : msg);
    if (t.len)
        llm_quote(q, t.data, t.len);
    fig_buf_free(&t);
}

static void anthropic_describe_error(long status, const char *body, size_t len, fig_err_t *err)
{
    fig_buf_t q = FIG_BUF_INIT;
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    if (json_is_object(root))
        anthropic_error_text(&q, root);
    if (q.len == 0 && body)
        llm_quote(&q, body, len);
    if (q.len)
        fig_err_set(err, FIG_E_UPSTREAM, "the model endpoint answered HTTP %ld: %s", status, q.data);
    else
        fig_err_set(err, FIG_E_UPSTREAM, "the model endpoint answered HTTP %ld", status);
    fig_buf_free(&q);
    json_decref(root);
}

/* An error reported inside a 2xx answer (an "error" event or body). */
static int anthropic_reported(const json_t *root, fig_err_t *err)
{
    fig_buf_t q = FIG_BUF_INIT;
    anthropic_error_text(&q, root);
    fig_err_set(err, FIG_E_UPSTREAM, "the model endpoint reported an error: %s", q.len ? q.data : "(no message)");
    fig_buf_free(&q);
    return -1;
}

/* what: "event" (stream) or "response" (whole body), for the message. */
static int anthropic_malformed(const char *what, const char *why, fig_err_t *err)
{
    fig_buf_t q = FIG_BUF_INIT;
    llm_quote(&q, why, strlen(why)); /* jansson's messages quote upstream bytes */
    fig_err_set(err, FIG_E_UPSTREAM, "malformed %s from the model endpoint: %s", what, q.len ? q.data : "?");
    fig_buf_free(&q);
    return -1;
}

/* ---- response parsing ---- */

enum { BLOCK_NONE = 0, BLOCK_TEXT, BLOCK_TOOL, BLOCK_OTHER };

typedef struct {
    unsigned char kind;
    unsigned char open;
    unsigned char preset; /* tool input came whole in content_block_start; deltas replace it */
    unsigned char slot;   /* call index of a tool block */
} anthropic_block_t;

typedef struct {
    llm_result_t *res;
    int sse;     /* 1: SSE stream; 0: one JSON body, buffered until finish */
    int started; /* message_start seen */
    int stopped; /* message_stop seen */
    int failed;  /* error holds the first error; it is replayed on later calls */
    fig_err_t error;
    sse_parser_t parser;
    fig_buf_t body;
    int64_t input, cache_read, cache_write, output; /* Anthropic's raw usage numbers */
    anthropic_block_t blocks[ANTHROPIC_MAX_BLOCKS];
} anthropic_parser_t;

static int64_t anthropic_int(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : 0;
}

/* Takes every count present in u (message_delta's are cumulative: latest wins) and
 * normalizes per llm.h. */
static void anthropic_usage(anthropic_parser_t *st, const json_t *u)
{
    if (!json_is_object(u))
        return;
    const json_t *v;
    if ((v = json_object_get(u, "input_tokens")) != NULL)
        st->input = anthropic_int(v);
    if ((v = json_object_get(u, "cache_read_input_tokens")) != NULL)
        st->cache_read = anthropic_int(v);
    if ((v = json_object_get(u, "cache_creation_input_tokens")) != NULL)
        st->cache_write = anthropic_int(v);
    if ((v = json_object_get(u, "output_tokens")) != NULL)
        st->output = anthropic_int(v);
    llm_usage_t *n = &st->res->usage;
    n->prompt_tokens = st->input + st->cache_read + st->cache_write;
    n->cached_tokens = st->cache_read;
    n->cache_write_tokens = st->cache_write;
    n->completion_tokens = st->output;
}

static int anthropic_stop_reason(llm_result_t *r, const json_t *v, const char *what, fig_err_t *err)
{
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return anthropic_malformed(what, "stop_reason is not a string", err);
    const char *s = json_string_value(v);
    if (strcmp(s, "end_turn") == 0)
        s = "stop";
    else if (strcmp(s, "tool_use") == 0)
        s = "tool_calls";
    else if (strcmp(s, "max_tokens") == 0)
        s = "length";
    snprintf(r->finish_reason, sizeof(r->finish_reason), "%s", s);
    return 0;
}

static int anthropic_text(llm_result_t *r, const json_t *text, const char *what, fig_err_t *err)
{
    if (!json_is_string(text))
        return anthropic_malformed(what, "text is not a string", err);
    size_t n = json_string_length(text);
    if (r->content.len + n > ANTHROPIC_MAX_BODY_BYTES) {
        fig_err_set(err, FIG_E_TOO_LARGE, "the model's answer exceeds %u bytes", ANTHROPIC_MAX_BODY_BYTES);
        return -1;
    }
    if (n) {
        fig_buf_append(&r->content, json_string_value(text), n);
        if (r->on_text)
            r->on_text(r->on_text_ctx, json_string_value(text), n);
    }
    return 0;
}

static int anthropic_args_append(llm_result_t *r, size_t slot, const char *a, size_t n, fig_err_t *err)
{
    llm_tool_call_t *c = &r->calls[slot];
    if (c->arguments.len + n > LLM_MAX_TOOL_ARGS_BYTES) {
        fig_err_set(err, FIG_E_TOO_LARGE, "the arguments of tool call %zu exceed %u bytes", slot, LLM_MAX_TOOL_ARGS_BYTES);
        return -1;
    }
    fig_buf_append(&c->arguments, a, n);
    return 0;
}

/* A tool_use block (content_block_start's content_block, or a whole message's
 * block): claims the next call slot. *preset says the input object was non-empty. */
static int anthropic_tool_use(llm_result_t *r, const json_t *b, const char *what, int *preset, fig_err_t *err)
{
    const json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name"), *input = json_object_get(b, "input");
    if (!json_is_string(id) || json_string_length(id) == 0 || strlen(json_string_value(id)) != json_string_length(id))
        return anthropic_malformed(what, "a tool_use block has no id", err);
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        strlen(json_string_value(name)) != json_string_length(name))
        return anthropic_malformed(what, "a tool_use block has no name", err);
    if (json_string_length(id) > ANTHROPIC_MAX_ID_BYTES)
        return anthropic_malformed(what, "a tool call id is too long", err);
    if (json_string_length(name) > ANTHROPIC_MAX_NAME_BYTES)
        return anthropic_malformed(what, "a tool name is too long", err);
    if (input && !json_is_null(input) && !json_is_object(input))
        return anthropic_malformed(what, "a tool_use input is not an object", err);
    if (r->ncalls >= LLM_MAX_TOOL_CALLS) {
        fig_err_set(err, FIG_E_UPSTREAM, "the model endpoint sent more than %d tool calls", LLM_MAX_TOOL_CALLS);
        return -1;
    }
    size_t slot = r->ncalls++;
    llm_tool_call_t *c = &r->calls[slot];
    c->id = fig_strdup(json_string_value(id));
    c->name = fig_strdup(json_string_value(name));
    *preset = 0;
    if (json_object_size(input) > 0) {
        char *dumped = json_dumps(input, JSON_COMPACT | JSON_PRESERVE_ORDER);
        int rc = dumped ? anthropic_args_append(r, slot, dumped, strlen(dumped), err) : 0;
        free(dumped);
        if (rc != 0)
            return -1;
        *preset = 1;
    }
    return 0;
}

/* A call whose input never came: Anthropic's "no arguments" is the empty object. */
static void anthropic_default_args(llm_result_t *r)
{
    for (size_t i = 0; i < r->ncalls; i++)
        if (r->calls[i].arguments.len == 0)
            fig_buf_append_str(&r->calls[i].arguments, "{}");
}

/* The block named by an event's "index"; NULL (err filled) when out of range. */
static anthropic_block_t *anthropic_block(anthropic_parser_t *st, const json_t *ev, fig_err_t *err)
{
    const json_t *jidx = json_object_get(ev, "index");
    if (!json_is_integer(jidx)) {
        anthropic_malformed("event", "a content block event has no integer index", err);
        return NULL;
    }
    json_int_t idx = json_integer_value(jidx);
    if (idx < 0 || idx >= ANTHROPIC_MAX_BLOCKS) {
        fig_err_set(err, FIG_E_UPSTREAM, "the model endpoint sent content block index %lld (at most %d blocks are allowed)",
                    (long long)idx, ANTHROPIC_MAX_BLOCKS);
        return NULL;
    }
    return &st->blocks[idx];
}

static int anthropic_block_start(anthropic_parser_t *st, const json_t *ev, fig_err_t *err)
{
    anthropic_block_t *b = anthropic_block(st, ev, err);
    if (b == NULL)
        return -1;
    if (b->kind != BLOCK_NONE)
        return anthropic_malformed("event", "a content block was started twice", err);
    const json_t *cb = json_object_get(ev, "content_block");
    const char *type = json_string_value(json_object_get(cb, "type"));
    if (!json_is_object(cb) || type == NULL)
        return anthropic_malformed("event", "content_block_start without a typed content_block", err);
    b->open = 1;
    if (strcmp(type, "text") == 0) {
        b->kind = BLOCK_TEXT;
        const json_t *text = json_object_get(cb, "text"); /* "" in practice, but it is content */
        return text ? anthropic_text(st->res, text, "event", err) : 0;
    }
    if (strcmp(type, "tool_use") == 0) {
        int preset;
        if (anthropic_tool_use(st->res, cb, "event", &preset, err) != 0)
            return -1;
        b->kind = BLOCK_TOOL;
        b->slot = (unsigned char)(st->res->ncalls - 1);
        b->preset = (unsigned char)preset;
        return 0;
    }
    b->kind = BLOCK_OTHER; /* thinking, redacted_thinking, server tools: not ours */
    return 0;
}

static int anthropic_block_delta(anthropic_parser_t *st, const json_t *ev, fig_err_t *err)
{
    anthropic_block_t *b = anthropic_block(st, ev, err);
    if (b == NULL)
        return -1;
    if (!b->open)
        return anthropic_malformed("event", "a delta for a content block that is not open", err);
    const json_t *d = json_object_get(ev, "delta");
    const char *type = json_string_value(json_object_get(d, "type"));
    if (!json_is_object(d) || type == NULL)
        return anthropic_malformed("event", "content_block_delta without a typed delta", err);
    int is_text = strcmp(type, "text_delta") == 0, is_json = strcmp(type, "input_json_delta") == 0;
    if (b->kind == BLOCK_OTHER || (!is_text && !is_json))
        return 0; /* thinking_delta, signature_delta, citations_delta, ... */
    if (is_text != (b->kind == BLOCK_TEXT))
        return anthropic_malformed("event", is_text ? "a text delta for a tool_use block" : "a tool input delta for a text block",
                                   err);
    if (is_text)
        return anthropic_text(st->res, json_object_get(d, "text"), "event", err);
    const json_t *pj = json_object_get(d, "partial_json");
    if (!json_is_string(pj))
        return anthropic_malformed("event", "partial_json is not a string", err);
    if (b->preset) {
        fig_buf_reset(&st->res->calls[b->slot].arguments);
        b->preset = 0;
    }
    return anthropic_args_append(st->res, b->slot, json_string_value(pj), json_string_length(pj), err);
}

/* One parsed stream event. */
static int anthropic_event(anthropic_parser_t *st, const char *name, const json_t *ev, fig_err_t *err)
{
    llm_result_t *r = st->res;
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!json_is_object(ev))
        return anthropic_malformed("event", "not a JSON object", err);
    if (strcmp(name, "error") == 0 || (type && strcmp(type, "error") == 0))
        return anthropic_reported(ev, err);
    if (type == NULL)
        return anthropic_malformed("event", "an event without a type", err);
    if (strcmp(type, "ping") == 0)
        return 0;
    if (strcmp(type, "message_start") == 0) {
        const json_t *m = json_object_get(ev, "message");
        if (st->started)
            return anthropic_malformed("event", "a second message_start", err);
        if (!json_is_object(m))
            return anthropic_malformed("event", "message_start without a message", err);
        st->started = 1;
        anthropic_usage(st, json_object_get(m, "usage"));
        return 0;
    }
    if (!st->started)
        return anthropic_malformed("event", "an event before message_start", err);
    if (strcmp(type, "content_block_start") == 0)
        return anthropic_block_start(st, ev, err);
    if (strcmp(type, "content_block_delta") == 0)
        return anthropic_block_delta(st, ev, err);
    if (strcmp(type, "content_block_stop") == 0) {
        anthropic_block_t *b = anthropic_block(st, ev, err);
        if (b == NULL)
            return -1;
        if (!b->open)
            return anthropic_malformed("event", "a stop for a content block that is not open", err);
        b->open = 0;
        return 0;
    }
    if (strcmp(type, "message_delta") == 0) {
        const json_t *d = json_object_get(ev, "delta");
        if (d && !json_is_object(d))
            return anthropic_malformed("event", "message_delta's delta is not an object", err);
        if (anthropic_stop_reason(r, json_object_get(d, "stop_reason"), "event", err) != 0)
            return -1;
        anthropic_usage(st, json_object_get(ev, "usage"));
        return 0;
    }
    if (strcmp(type, "message_stop") == 0) {
        st->stopped = 1;
        anthropic_default_args(r);
        r->complete = 1;
        return 0;
    }
    return 0; /* Anthropic may add event types; clients are to ignore unknown ones */
}

/* A whole (non-streamed) message object. */
static int anthropic_message(anthropic_parser_t *st, const json_t *root, fig_err_t *err)
{
    llm_result_t *r = st->res;
    if (!json_is_object(root))
        return anthropic_malformed("response", "not a JSON object", err);
    const char *type = json_string_value(json_object_get(root, "type"));
    if ((type && strcmp(type, "error") == 0) || json_object_get(root, "error") != NULL)
        return anthropic_reported(root, err);
    if (type && strcmp(type, "message") != 0)
        return anthropic_malformed("response", "not a message object", err);
    const json_t *content = json_object_get(root, "content");
    if (!json_is_array(content))
        return anthropic_malformed("response", "content is not an array", err);
    size_t i;
    const json_t *b;
    json_array_foreach(content, i, b) {
        const char *bt = json_string_value(json_object_get(b, "type"));
        if (!json_is_object(b) || bt == NULL)
            return anthropic_malformed("response", "a content block has no type", err);
        if (strcmp(bt, "text") == 0) {
            if (anthropic_text(r, json_object_get(b, "text"), "response", err) != 0)
                return -1;
        } else if (strcmp(bt, "tool_use") == 0) {
            int preset;
            if (anthropic_tool_use(r, b, "response", &preset, err) != 0)
                return -1;
        }
    }
    if (anthropic_stop_reason(r, json_object_get(root, "stop_reason"), "response", err) != 0)
        return -1;
    anthropic_usage(st, json_object_get(root, "usage"));
    anthropic_default_args(r);
    return 0;
}

/* Marks the parser failed and hands st->error (already filled) to the caller. */
static int anthropic_fail(anthropic_parser_t *st, fig_err_t *err)
{
    st->failed = 1;
    if (err)
        *err = st->error;
    return -1;
}

/* sse_event_cb: returns 1 on error (never -1, which sse_feed uses for its own bound). */
static int anthropic_on_event(void *ctx, const char *event, const char *data, size_t len)
{
    anthropic_parser_t *st = ctx;
    if (st->stopped)
        return 0; /* nothing counts after message_stop */
    while (len > 0 && isspace((unsigned char)data[0]))
        data++, len--;
    while (len > 0 && isspace((unsigned char)data[len - 1]))
        len--;
    if (len == 0)
        return 0; /* keep-alive */
    json_error_t jerr;
    json_t *root = json_loadb(data, len, 0, &jerr);
    int rc = root ? anthropic_event(st, event ? event : "message", root, &st->error)
                  : anthropic_malformed("event", jerr.text, &st->error);
    json_decref(root);
    if (rc != 0) {
        st->failed = 1;
        return 1;
    }
    return 0;
}

static void *anthropic_parser_new(int stream, const char *content_type, llm_result_t *res)
{
    anthropic_parser_t *st = fig_calloc(1, sizeof(*st));
    st->res = res;
    st->sse = stream && !llm_is_json_type(content_type);
    sse_init(&st->parser, anthropic_on_event, st);
    return st;
}

static int anthropic_parser_feed(void *p, const char *data, size_t len, fig_err_t *err)
{
    anthropic_parser_t *st = p;
    if (st->failed)
        return anthropic_fail(st, err);
    if (!st->sse) {
        if (st->body.len + len > ANTHROPIC_MAX_BODY_BYTES) {
            fig_err_set(&st->error, FIG_E_TOO_LARGE, "the model endpoint's response exceeds %u bytes",
                        ANTHROPIC_MAX_BODY_BYTES);
            return anthropic_fail(st, err);
        }
        fig_buf_append(&st->body, data, len);
        return 0;
    }
    int rc = sse_feed(&st->parser, data, len);
    if (rc == 0)
        return 0;
    if (rc == -1) {
        fig_err_set(&st->error, FIG_E_TOO_LARGE, "an event in the model's stream exceeds %u bytes or is malformed",
                    SSE_MAX_EVENT_BYTES);
    }
    return anthropic_fail(st, err); /* the event callback filled st->error */
}

static int anthropic_parser_finish(void *p, fig_err_t *err)
{
    anthropic_parser_t *st = p;
    if (st->failed)
        return anthropic_fail(st, err);
    if (st->sse) {
        if (!st->stopped) {
            fig_err_set(&st->error, FIG_E_UPSTREAM, "the model's stream ended early (truncated)");
            return anthropic_fail(st, err);
        }
    } else {
        json_error_t jerr;
        json_t *root = json_loadb(st->body.data ? st->body.data : "", st->body.len, 0, &jerr);
        int rc = root ? anthropic_message(st, root, &st->error) : anthropic_malformed("response", jerr.text, &st->error);
        json_decref(root);
        if (rc != 0)
            return anthropic_fail(st, err);
    }
    st->res->complete = 1;
    return 0;
}

static void anthropic_parser_free(void *p)
{
    anthropic_parser_t *st = p;
    if (st == NULL)
        return;
    sse_free(&st->parser);
    fig_buf_free(&st->body);
    free(st);
}

const llm_provider_t llm_provider_anthropic = {
    .kind = "anthropic",
    .build_request = anthropic_build_request,
    .parser_new = anthropic_parser_new,
    .parser_feed = anthropic_parser_feed,
    .parser_finish = anthropic_parser_finish,
    .parser_free = anthropic_parser_free,
    .describe_error = anthropic_describe_error,
};
