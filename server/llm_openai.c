/*
 * llm_openai.c — the OpenAI Chat Completions provider (see llm.h). The same wire
 * format is spoken by Ollama, llama.cpp server, vLLM, OpenRouter and Groq.
 *
 * Request: the body is built as jansson objects in one fixed key order and dumped
 * with JSON_COMPACT | JSON_PRESERVE_ORDER, so identical inputs give identical bytes
 * and the system prefix stays cacheable on the provider side. Borrowed values (tool
 * parameters, message strings) are shared, not rebuilt, so they keep their order.
 *
 * Response: an SSE stream of chat.completion.chunk objects, or (stream == 0, or a
 * JSON Content-Type came back although a stream was asked for) one chat.completion
 * object buffered until finish. Both paths apply a "choice" through the same code:
 * content is appended, tool calls are assembled by index. Chunks that repeat the
 * header members of an earlier chunk (id, object, created, model, ...) are parsed
 * without them: an exact shortcut, see "skipping the chunk header". Tolerances for servers
 * that bend the format, each deliberate:
 *   - a tool-call delta without "index" (older Ollama) continues the last call, or
 *     starts a new one when it brings an id different from the last call's id;
 *   - a repeated identical id is accepted; a different id for an index that
 *     already has one is rejected;
 *   - name fragments are appended (some servers stream the name in pieces);
 *   - arguments sent as a JSON object instead of a string are serialized compactly;
 *   - a stream without [DONE] is complete if a finish_reason was seen;
 *   - a call without an id gets "call_<index>" at finish (the agent needs one to
 *     answer it); a call without a name is an error.
 * Everything else that does not match the format is FIG_E_UPSTREAM; size caps are
 * FIG_E_TOO_LARGE. Upstream text put into error messages is cut to 300 bytes with
 * control characters replaced (llm_quote), since it ends up in logs and pages.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm.h"
#include "sse.h"

#define OPENAI_MAX_BODY_BYTES (8u << 20) /* non-streamed body, and assembled content */
#define OPENAI_MAX_ID_BYTES 256
#define OPENAI_MAX_NAME_BYTES 256

/* ---- request ---- */

static int openai_bad_message(size_t i, const char *why, fig_err_t *err)
{
    fig_err_set(err, FIG_E_INVALID, "conversation message %zu: %s", i, why);
    return -1;
}

/* Converts one conversation message (llm.h format) and appends it to out. */
static int openai_add_message(json_t *out, const json_t *m, size_t i, fig_err_t *err)
{
    const char *role = json_string_value(json_object_get(m, "role"));
    json_t *content = json_object_get(m, "content");
    if (role == NULL)
        return openai_bad_message(i, "no role", err);

    json_t *o = json_object();
    json_array_append_new(out, o);
    json_object_set_new(o, "role", json_string(role));

    if (strcmp(role, "user") == 0) {
        if (!json_is_string(content))
            return openai_bad_message(i, "user content is not a string", err);
        json_object_set(o, "content", content);
    } else if (strcmp(role, "assistant") == 0) {
        json_t *calls = json_object_get(m, "tool_calls");
        if (json_is_string(content))
            json_object_set(o, "content", content);
        else if (content == NULL || json_is_null(content))
            json_object_set_new(o, "content", json_string(""));
        else
            return openai_bad_message(i, "assistant content is not a string", err);
        if (calls != NULL && !json_is_array(calls))
            return openai_bad_message(i, "tool_calls is not an array", err);
        if (json_array_size(calls) > 0) {
            json_t *arr = json_array();
            json_object_set_new(o, "tool_calls", arr);
            size_t k;
            json_t *c;
            json_array_foreach(calls, k, c) {
                json_t *id = json_object_get(c, "id"), *name = json_object_get(c, "name"),
                       *args = json_object_get(c, "arguments");
                if (!json_is_string(id) || !json_is_string(name) || !json_is_string(args))
                    return openai_bad_message(i, "a tool call lacks id, name or arguments", err);
                json_t *fn = json_object();
                json_object_set(fn, "name", name);
                json_object_set(fn, "arguments", args);
                json_t *tc = json_object();
                json_object_set(tc, "id", id);
                json_object_set_new(tc, "type", json_string("function"));
                json_object_set_new(tc, "function", fn);
                json_array_append_new(arr, tc);
            }
        }
    } else if (strcmp(role, "tool") == 0) {
        json_t *id = json_object_get(m, "tool_call_id");
        if (!json_is_string(id) || !json_is_string(content))
            return openai_bad_message(i, "tool message lacks tool_call_id or content", err);
        json_object_set(o, "tool_call_id", id);
        json_object_set(o, "content", content);
    } else {
        return openai_bad_message(i, "unknown role", err);
    }
    return 0;
}

static int openai_add_tools(json_t *root, const json_t *tools, fig_err_t *err)
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
        json_t *fn = json_object();
        json_object_set(fn, "name", name);
        if (desc)
            json_object_set(fn, "description", desc);
        if (params)
            json_object_set(fn, "parameters", params);
        json_t *o = json_object();
        json_object_set_new(o, "type", json_string("function"));
        json_object_set_new(o, "function", fn);
        json_array_append_new(arr, o);
    }
    return 0;
}

/* llm_derive_fn: the "tools" array of the body (cached per thread by the caller). */
static int openai_tools_text(const json_t *tools, fig_buf_t *out, fig_err_t *err)
{
    json_t *troot = json_object();
    int rc = openai_add_tools(troot, tools, err);
    if (rc == 0 && llm_append_json(out, json_object_get(troot, "tools")) != 0) {
        fig_err_set(err, FIG_E_INVALID, "could not serialize the request");
        rc = -1;
    }
    json_decref(troot);
    return rc;
}

static int openai_build_request(const llm_endpoint_t *ep, const llm_request_t *req, fig_buf_t *url,
                                struct curl_slist **headers, fig_buf_t *body, fig_err_t *err)
{
    if (llm_check_request(ep, req, err) != 0)
        return -1;
    const char *base = ep->base_url;

    /* Fixed key order: model, messages, tools, max_tokens, stream, stream_options.
     * The body is assembled from compact JSON fragments, byte-identical to dumping the
     * whole object; the system prompt (the large, stable prefix) and the tool list are
     * serialized once per thread and reused (llm_json_text_cached, llm_derived_cached). */
    fig_buf_t out = FIG_BUF_INIT;
    json_t *model = json_string(req->model);
    if (model == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "the model name is not valid UTF-8");
        return -1;
    }
    fig_buf_append_str(&out, "{\"model\":");
    if (llm_append_json(&out, model) != 0) {
        json_decref(model);
        goto fail_text;
    }
    json_decref(model);
    fig_buf_append_str(&out, ",\"messages\":[");
    int first = 1;
    if (req->system && req->system[0]) {
        size_t n;
        const char *sys = llm_json_text_cached(req->system, &n);
        if (sys == NULL) {
            fig_err_set(err, FIG_E_INVALID, "the system prompt is not valid UTF-8");
            fig_buf_free(&out);
            return -1;
        }
        fig_buf_reserve(&out, n + 64);
        fig_buf_append_str(&out, "{\"role\":\"system\",\"content\":");
        fig_buf_append(&out, sys, n);
        fig_buf_append_str(&out, "}");
        first = 0;
    }
    size_t i;
    json_t *m;
    json_array_foreach(req->messages, i, m) {
        json_t *one = json_array();
        if (openai_add_message(one, m, i, err) != 0) {
            json_decref(one);
            fig_buf_free(&out);
            return -1;
        }
        if (!first)
            fig_buf_append_str(&out, ",");
        first = 0;
        int rc = llm_append_json(&out, json_array_get(one, 0));
        json_decref(one);
        if (rc != 0)
            goto fail_text;
    }
    fig_buf_append_str(&out, "]");
    if (json_array_size(req->tools) > 0) {
        size_t n;
        const char *tools = llm_derived_cached(req->tools, openai_tools_text, &n, err);
        if (tools == NULL) {
            fig_buf_free(&out);
            return -1;
        }
        fig_buf_append_str(&out, ",\"tools\":");
        fig_buf_append(&out, tools, n);
    }
    if (req->max_tokens > 0)
        fig_buf_appendf(&out, ",\"max_tokens\":%d", req->max_tokens);
    if (req->stream)
        fig_buf_append_str(&out, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    fig_buf_append_str(&out, "}");
    fig_buf_free(body);
    *body = out;
    if (0) {
    fail_text:
        fig_buf_free(&out);
        fig_err_set(err, FIG_E_INVALID, "could not serialize the request");
        return -1;
    }

    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    fig_buf_reset(url);
    fig_buf_append(url, base, blen);
    fig_buf_append_str(url, "/chat/completions");

    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, req->stream ? "Accept: text/event-stream" : "Accept: application/json");
    if (ep->api_key && ep->api_key[0]) {
        fig_buf_t auth = FIG_BUF_INIT;
        fig_buf_appendf(&auth, "Authorization: Bearer %s", ep->api_key);
        h = curl_slist_append(h, auth.data);
        fig_buf_free(&auth);
    }
    if (h == NULL) {
        fputs("figment: out of memory\n", stderr);
        abort();
    }
    *headers = h;
    return 0;
}

/* ---- upstream text in error messages ---- */

/* The human-readable message of an error body, or NULL. Shapes seen in the wild:
 * {"error":{"message":..}} (OpenAI, Groq, OpenRouter, llama.cpp), {"error":".."}
 * (Ollama), {"message":..} (vLLM), {"detail":..} (FastAPI-based servers). */
static const char *openai_error_text(const json_t *root)
{
    const json_t *e = json_object_get(root, "error");
    const char *s;
    if ((s = json_string_value(e)) != NULL || (s = json_string_value(json_object_get(e, "message"))) != NULL ||
        (s = json_string_value(json_object_get(root, "message"))) != NULL ||
        (s = json_string_value(json_object_get(root, "detail"))) != NULL)
        return s;
    return NULL;
}

static void openai_describe_error(long status, const char *body, size_t len, fig_err_t *err)
{
    fig_buf_t q = FIG_BUF_INIT;
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *m = root ? openai_error_text(root) : NULL;
    if (m)
        llm_quote(&q, m, strlen(m));
    else if (body)
        llm_quote(&q, body, len);
    if (q.len)
        fig_err_set(err, FIG_E_UPSTREAM, "the model endpoint answered HTTP %ld: %s", status, q.data);
    else
        fig_err_set(err, FIG_E_UPSTREAM, "the model endpoint answered HTTP %ld", status);
    fig_buf_free(&q);
    json_decref(root);
}

/* ---- response parsing ---- */

typedef struct {
    llm_result_t *res;
    int sse;     /* 1: SSE stream; 0: one JSON body, buffered until finish */
    int done;    /* [DONE] seen */
    int failed;  /* error holds the first error; it is replayed on later calls */
    fig_err_t error;
    sse_parser_t parser;
    fig_buf_t body;
    fig_buf_t skip;    /* a chunk prefix known to be well-formed and unread (openai_learn_skip) */
    fig_buf_t scratch; /* "{" + the rest of a chunk that starts with skip */
    int learn_tries;
} openai_parser_t;

/* what: "chunk" (stream) or "response" (whole body), for the message. */
static int openai_malformed(const char *what, const char *why, fig_err_t *err)
{
    fig_buf_t q = FIG_BUF_INIT;
    llm_quote(&q, why, strlen(why)); /* jansson's messages quote upstream bytes */
    fig_err_set(err, FIG_E_UPSTREAM, "malformed %s from the model endpoint: %s", what, q.len ? q.data : "?");
    fig_buf_free(&q);
    return -1;
}

/* Appends n bytes to the NUL-terminated heap string *s, at most max bytes in all. */
static int openai_strcat(char **s, const char *add, size_t n, size_t max)
{
    size_t old = *s ? strlen(*s) : 0;
    if (old + n > max)
        return -1;
    *s = fig_realloc(*s, old + n + 1);
    memcpy(*s + old, add, n);
    (*s)[old + n] = '\0';
    return 0;
}

/* Applies one tool-call object (a stream delta, or a whole call with index forced to
 * its position in a non-streamed message). */
static int openai_tool_call(llm_result_t *r, const json_t *tc, long long forced, const char *what, fig_err_t *err)
{
    if (!json_is_object(tc))
        return openai_malformed(what, "a tool call is not an object", err);
    const json_t *jidx = json_object_get(tc, "index"), *jid = json_object_get(tc, "id"),
                 *jtype = json_object_get(tc, "type"), *fn = json_object_get(tc, "function");
    if (jid && !json_is_null(jid) && !json_is_string(jid))
        return openai_malformed(what, "a tool call id is not a string", err);
    const char *id = json_string_value(jid);
    if (id && (id[0] == '\0' || strlen(id) != json_string_length(jid)))
        id = NULL; /* "" means "no id in this delta"; NUL inside is not an id */

    long long idx = forced;
    if (forced < 0) {
        if (jidx == NULL || json_is_null(jidx)) {
            idx = r->ncalls ? (long long)r->ncalls - 1 : 0;
            if (id && r->ncalls && r->calls[idx].id && strcmp(r->calls[idx].id, id) != 0)
                idx = (long long)r->ncalls;
        } else if (json_is_integer(jidx)) {
            idx = json_integer_value(jidx);
        } else {
            return openai_malformed(what, "a tool call index is not an integer", err);
        }
    }
    if (idx < 0 || idx >= LLM_MAX_TOOL_CALLS) {
        fig_err_set(err, FIG_E_UPSTREAM, "the model endpoint sent tool call index %lld (at most %d calls are allowed)",
                    idx, LLM_MAX_TOOL_CALLS);
        return -1;
    }
    if (jtype && !json_is_null(jtype) && !(json_is_string(jtype) && strcmp(json_string_value(jtype), "function") == 0))
        return openai_malformed(what, "a tool call is not of type function", err);
    if (fn && !json_is_null(fn) && !json_is_object(fn))
        return openai_malformed(what, "a tool call's function is not an object", err);

    llm_tool_call_t *c = &r->calls[idx];
    if ((size_t)idx >= r->ncalls)
        r->ncalls = (size_t)idx + 1;

    if (id) {
        if (c->id == NULL) {
            if (strlen(id) > OPENAI_MAX_ID_BYTES)
                return openai_malformed(what, "a tool call id is too long", err);
            c->id = fig_strdup(id);
        } else if (strcmp(c->id, id) != 0) {
            return openai_malformed(what, "a tool call changed its id", err);
        }
    }

    const json_t *jname = json_object_get(fn, "name"), *jargs = json_object_get(fn, "arguments");
    if (jname && !json_is_null(jname)) {
        if (!json_is_string(jname) || strlen(json_string_value(jname)) != json_string_length(jname))
            return openai_malformed(what, "a tool name is not a string", err);
        if (openai_strcat(&c->name, json_string_value(jname), json_string_length(jname), OPENAI_MAX_NAME_BYTES) != 0)
            return openai_malformed(what, "a tool name is too long", err);
    }
    if (jargs && !json_is_null(jargs)) {
        char *dumped = NULL;
        const char *a;
        size_t alen;
        if (json_is_string(jargs)) {
            a = json_string_value(jargs);
            alen = json_string_length(jargs);
        } else if (json_is_object(jargs)) {
            a = dumped = json_dumps(jargs, JSON_COMPACT | JSON_PRESERVE_ORDER);
            alen = a ? strlen(a) : 0;
        } else {
            return openai_malformed(what, "tool call arguments are not a string", err);
        }
        int over = c->arguments.len + alen > LLM_MAX_TOOL_ARGS_BYTES;
        if (!over && a)
            fig_buf_append(&c->arguments, a, alen);
        free(dumped);
        if (over) {
            fig_err_set(err, FIG_E_TOO_LARGE, "the arguments of tool call %lld exceed %u bytes", idx,
                        LLM_MAX_TOOL_ARGS_BYTES);
            return -1;
        }
    }
    return 0;
}

/* Applies choices[0] of a chunk (key "delta") or of a whole response ("message"). */
static int openai_choice(llm_result_t *r, const json_t *choice, int streaming, fig_err_t *err)
{
    const char *what = streaming ? "chunk" : "response";
    if (!json_is_object(choice))
        return openai_malformed(what, "a choice is not an object", err);
    const json_t *msg = json_object_get(choice, streaming ? "delta" : "message");
    if (msg && !json_is_null(msg) && !json_is_object(msg))
        return openai_malformed(what, "the message is not an object", err);

    const json_t *content = json_object_get(msg, "content");
    if (json_is_string(content)) {
        size_t n = json_string_length(content);
        if (r->content.len + n > OPENAI_MAX_BODY_BYTES) {
            fig_err_set(err, FIG_E_TOO_LARGE, "the model's answer exceeds %u bytes", OPENAI_MAX_BODY_BYTES);
            return -1;
        }
        if (n) {
            fig_buf_append(&r->content, json_string_value(content), n);
            if (r->on_text)
                r->on_text(r->on_text_ctx, json_string_value(content), n);
        }
    } else if (content && !json_is_null(content)) {
        return openai_malformed(what, "content is not a string", err);
    }

    const json_t *calls = json_object_get(msg, "tool_calls");
    if (calls && !json_is_null(calls) && !json_is_array(calls))
        return openai_malformed(what, "tool_calls is not an array", err);
    size_t i;
    const json_t *tc;
    json_array_foreach(calls, i, tc) {
        if (openai_tool_call(r, tc, streaming ? -1 : (long long)i, what, err) != 0)
            return -1;
    }

    const json_t *fr = json_object_get(choice, "finish_reason");
    if (json_is_string(fr))
        snprintf(r->finish_reason, sizeof(r->finish_reason), "%s", json_string_value(fr));
    else if (fr && !json_is_null(fr))
        return openai_malformed(what, "finish_reason is not a string", err);
    return 0;
}

static int64_t openai_int(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : 0;
}

static void openai_usage(llm_result_t *r, const json_t *u)
{
    if (!json_is_object(u))
        return;
    r->usage.prompt_tokens = openai_int(json_object_get(u, "prompt_tokens"));
    r->usage.completion_tokens = openai_int(json_object_get(u, "completion_tokens"));
    r->usage.cached_tokens = openai_int(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens"));
}

/* One chat.completion(.chunk) object. */
static int openai_object(llm_result_t *r, const json_t *root, int streaming, fig_err_t *err)
{
    const char *what = streaming ? "chunk" : "response";
    if (!json_is_object(root))
        return openai_malformed(what, "not a JSON object", err);
    const json_t *e = json_object_get(root, "error");
    if (e && !json_is_null(e)) {
        const char *m = openai_error_text(root);
        fig_buf_t q = FIG_BUF_INIT;
        if (m)
            llm_quote(&q, m, strlen(m));
        fig_err_set(err, FIG_E_UPSTREAM, "the model endpoint reported an error: %s", q.len ? q.data : "(no message)");
        fig_buf_free(&q);
        return -1;
    }
    const json_t *choices = json_object_get(root, "choices");
    if (choices && !json_is_null(choices) && !json_is_array(choices))
        return openai_malformed(what, "choices is not an array", err);
    if (json_array_size(choices) > 0) {
        if (openai_choice(r, json_array_get(choices, 0), streaming, err) != 0)
            return -1;
    } else if (!streaming) {
        return openai_malformed(what, "no choices", err);
    }
    openai_usage(r, json_object_get(root, "usage"));
    return 0;
}

/* Marks the parser failed and hands st->error (already filled) to the caller. */
static int openai_fail(openai_parser_t *st, fig_err_t *err)
{
    st->failed = 1;
    if (err)
        *err = st->error;
    return -1;
}

/* ---- skipping the chunk header ----
 *
 * Every chunk of a stream starts with the same members, which figment never reads:
 * {"id":"chatcmpl-..","object":"chat.completion.chunk","created":..,"model":"..",
 * "system_fingerprint":".." — about 200 bytes of each ~400-byte chunk, and jansson
 * costs ~12 ns a byte. So once one chunk has shown such a prefix, later chunks that
 * start with the same bytes are parsed as "{" + the rest. That is exact, not a guess:
 *   - the prefix P = X "," was checked with jansson: X "}" is a JSON object with at
 *     least one member, so after P the parser is inside the top-level object, just
 *     after a comma, expecting a key — whatever else follows;
 *   - then P R is valid JSON if and only if "{" R is, provided R starts (after
 *     whitespace) with '"' (else "{}" would pass for P "}", a trailing comma);
 *   - X has none of the keys figment reads (error, choices, usage), checked on the
 *     decoded keys, so the object from "{" R has the same values for them (jansson
 *     keeps the last of duplicate keys, and those all lie in R).
 * When the short parse fails, the whole chunk is parsed again, so a malformed chunk
 * is reported with jansson's usual message. Learning is cheap (a search in the first
 * bytes, one parse of the prefix) and tried on at most OPENAI_LEARN_TRIES chunks. */
#define OPENAI_LEARN_TRIES 4
#define OPENAI_MAX_SKIP_BYTES 1024

static int openai_read_key(const json_t *o)
{
    return json_object_get(o, "error") || json_object_get(o, "choices") || json_object_get(o, "usage");
}

static int openai_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Looks for the longest prefix of a (valid) chunk made of members figment ignores. */
static void openai_learn_skip(openai_parser_t *st, const char *data, size_t len)
{
    st->learn_tries++;
    fig_buf_reset(&st->skip);
    size_t n = len < OPENAI_MAX_SKIP_BYTES ? len : OPENAI_MAX_SKIP_BYTES;
    static const char *const keys[] = {"\"choices\"", "\"usage\"", "\"error\""};
    size_t first = n;
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        const char *q = memmem(data, first, keys[k], strlen(keys[k]));
        if (q)
            first = (size_t)(q - data);
    }
    if (first == n)
        return;
    size_t c = first;
    while (c > 0 && openai_json_space(data[c - 1]))
        c--;
    if (c < 2 || data[c - 1] != ',')
        return;
    c--; /* data[c] is the comma */
    fig_buf_reset(&st->scratch);
    fig_buf_append(&st->scratch, data, c);
    fig_buf_append(&st->scratch, "}", 1);
    json_t *x = json_loadb(st->scratch.data, st->scratch.len, 0, NULL);
    if (json_is_object(x) && json_object_size(x) > 0 && !openai_read_key(x))
        fig_buf_append(&st->skip, data, c + 1);
    json_decref(x);
}

/* The chunk parsed as "{" + what follows st->skip, or NULL when that does not apply
 * or fails (the caller then parses the whole chunk). */
static json_t *openai_load_skipping(openai_parser_t *st, const char *data, size_t len)
{
    size_t k = st->skip.len;
    if (k == 0 || len <= k || memcmp(data, st->skip.data, k) != 0)
        return NULL;
    size_t i = k;
    while (i < len && openai_json_space(data[i]))
        i++;
    if (i == len || data[i] != '"')
        return NULL;
    fig_buf_reset(&st->scratch);
    fig_buf_append(&st->scratch, "{", 1);
    fig_buf_append(&st->scratch, data + k, len - k);
    return json_loadb(st->scratch.data, st->scratch.len, 0, NULL);
}

/* sse_event_cb: returns 1 on error (never -1, which sse_feed uses for its own bound). */
static int openai_on_event(void *ctx, const char *event, const char *data, size_t len)
{
    openai_parser_t *st = ctx;
    (void)event; /* OpenAI-style servers send unnamed events; the JSON says what it is */
    if (st->done)
        return 0; /* nothing counts after [DONE] */
    while (len > 0 && isspace((unsigned char)data[0]))
        data++, len--;
    while (len > 0 && isspace((unsigned char)data[len - 1]))
        len--;
    if (len == 0)
        return 0; /* keep-alive */
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        st->done = 1;
        return 0;
    }
    json_error_t jerr;
    json_t *root = openai_load_skipping(st, data, len);
    if (root == NULL) {
        root = json_loadb(data, len, 0, &jerr);
        if (root && st->learn_tries < OPENAI_LEARN_TRIES)
            openai_learn_skip(st, data, len);
    }
    int rc = root ? openai_object(st->res, root, 1, &st->error) : openai_malformed("chunk", jerr.text, &st->error);
    json_decref(root);
    if (rc != 0) {
        st->failed = 1;
        return 1;
    }
    return 0;
}

static void *openai_parser_new(int stream, const char *content_type, llm_result_t *res)
{
    openai_parser_t *st = fig_calloc(1, sizeof(*st));
    st->res = res;
    st->sse = stream && !llm_is_json_type(content_type);
    sse_init(&st->parser, openai_on_event, st);
    return st;
}

static int openai_parser_feed(void *p, const char *data, size_t len, fig_err_t *err)
{
    openai_parser_t *st = p;
    if (st->failed)
        return openai_fail(st, err);
    if (!st->sse) {
        if (st->body.len + len > OPENAI_MAX_BODY_BYTES) {
            fig_err_set(&st->error, FIG_E_TOO_LARGE, "the model endpoint's response exceeds %u bytes", OPENAI_MAX_BODY_BYTES);
            return openai_fail(st, err);
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
    return openai_fail(st, err); /* the event callback filled st->error */
}

static int openai_parser_finish(void *p, fig_err_t *err)
{
    openai_parser_t *st = p;
    llm_result_t *r = st->res;
    if (st->failed)
        return openai_fail(st, err);
    if (st->sse) {
        if (!st->done && r->finish_reason[0] == '\0') {
            fig_err_set(&st->error, FIG_E_UPSTREAM, "the model's stream ended early (truncated)");
            return openai_fail(st, err);
        }
    } else {
        json_error_t jerr;
        json_t *root = json_loadb(st->body.data ? st->body.data : "", st->body.len, 0, &jerr);
        int rc = root ? openai_object(r, root, 0, &st->error) : openai_malformed("response", jerr.text, &st->error);
        json_decref(root);
        if (rc != 0)
            return openai_fail(st, err);
    }
    for (size_t i = 0; i < r->ncalls; i++) {
        llm_tool_call_t *c = &r->calls[i];
        if (c->name == NULL || c->name[0] == '\0') {
            fig_err_set(&st->error, FIG_E_UPSTREAM, "the model endpoint sent tool call %zu without a name", i);
            return openai_fail(st, err);
        }
        if (c->id == NULL) {
            char id[32];
            snprintf(id, sizeof(id), "call_%zu", i);
            c->id = fig_strdup(id);
        }
    }
    r->complete = 1;
    return 0;
}

static void openai_parser_free(void *p)
{
    openai_parser_t *st = p;
    if (st == NULL)
        return;
    sse_free(&st->parser);
    fig_buf_free(&st->body);
    fig_buf_free(&st->skip);
    fig_buf_free(&st->scratch);
    free(st);
}

const llm_provider_t llm_provider_openai = {
    .kind = "openai",
    .build_request = openai_build_request,
    .parser_new = openai_parser_new,
    .parser_feed = openai_parser_feed,
    .parser_finish = openai_parser_finish,
    .parser_free = openai_parser_free,
    .describe_error = openai_describe_error,
};
