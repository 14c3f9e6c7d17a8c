/*
 * fakellm.c — a scripted stand-in for an LLM provider, for figment's integration
 * tests and `make bench`. It speaks the OpenAI Chat Completions protocol and the
 * Anthropic Messages protocol over real HTTP/1.1 (h2o evloop), streaming (SSE) and
 * not, and answers from a JSON script of rules matched against the request (see
 * tests/fakellm/README.md). One script serves both protocols.
 *
 * Design:
 * - The request path is split into three stages so that the two protocols share
 *   everything but their wire formats:
 *     1. a protocol parser (oa_parse, an_parse) validates the body like the real
 *        service and reduces it to a protocol-neutral convo_t (model, last user text,
 *        tool results, sizes, the cacheable prefix);
 *     2. plan_build() matches the script's rules against the convo_t and yields a
 *        protocol-neutral plan_t (content, tool calls, timings, faults, usage);
 *     3. a protocol serializer (oa_render, an_render) turns the plan into a
 *        program_t: status, headers and a list of byte segments, each with a delay.
 *   A small engine (stream_*) plays a program on the event loop. Nothing blocks and
 *   no thread sleeps: delays are h2o timeouts. h2o 2.2.5's h2o_timeout_t is a queue
 *   of one fixed duration, so each thread keeps a table of queues keyed by duration,
 *   created on first use. Consecutive segments without delay go out in one h2o_send(),
 *   so an undelayed reply costs one write.
 * - Per-request state lives in h2o_mem_alloc_shared() memory whose dispose callback
 *   unlinks the timer and frees the program, so a client that disconnects mid-stream
 *   leaves nothing behind.
 * - Shared state (script, rule hit counters, recorded requests, the per-model prompt
 *   prefix used to simulate provider caching) sits behind one mutex. Planning a reply
 *   holds it for a few microseconds; parsing and serialization happen outside it.
 *   PUT /_fakellm/script swaps the script under the same lock, so no reference to a
 *   script ever escapes the lock.
 * - Up to two event-loop threads, each with its own SO_REUSEPORT listener.
 * - This file is standalone (the build links only h2o, OpenSSL and jansson), so it has
 *   its own tiny byte buffer instead of figment's fig_buf_t.
 * - It is a test tool: it refuses to listen on anything but loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <h2o.h>
#include <jansson.h>

#define MAX_BODY_BYTES (8u << 20)          /* request entity cap */
#define MAX_DELAY_MS 600000                /* any scripted delay: 10 minutes */
#define MAX_CHUNK_CHARS 65536
#define MAX_RULES 10000
#define MAX_RECORDED_BYTES (256u << 20)    /* memory kept for GET /_fakellm/requests */
#define MAX_CACHE_MODELS 32                /* models remembered for cached_tokens */
#define MAX_THREADS 2
#define NO_MATCH_PAGE "# No rule matched\n\nfakellm had no rule for this request."

/* ------------------------------------------------------------------ utilities */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fputs("fakellm: out of memory\n", stderr);
        abort();
    }
    return p;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (p == NULL) {
        fputs("fakellm: out of memory\n", stderr);
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL) {
        fputs("fakellm: out of memory\n", stderr);
        abort();
    }
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

typedef struct {
    char *data;
    size_t len, cap;
} sbuf_t;

#define SBUF_INIT {NULL, 0, 0}

static void sbuf_reserve(sbuf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static void sbuf_append(sbuf_t *b, const char *s, size_t n)
{
    sbuf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sbuf_puts(sbuf_t *b, const char *s)
{
    sbuf_append(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void sbuf_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    sbuf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void sbuf_free(sbuf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Appends s as a JSON string literal (quotes included). s is valid UTF-8 (it came
 * through jansson), so only quotes, backslashes and control characters need care. */
static void sbuf_json_str(sbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sbuf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sbuf_append(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0};
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            sbuf_append(b, esc, 6);
            continue;
        }
        sbuf_append(b, esc, 2);
    }
    sbuf_append(b, s + run, n - run);
    sbuf_append(b, "\"", 1);
}

static void sbuf_json_cstr(sbuf_t *b, const char *s)
{
    sbuf_json_str(b, s, strlen(s));
}

/* Byte length of the first `chars` UTF-8 characters of s[0..n). */
static size_t utf8_prefix(const char *s, size_t n, size_t chars)
{
    size_t i = 0;
    while (i < n && chars > 0) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        chars--;
    }
    return i;
}

static size_t tokens_of(size_t bytes)
{
    return (bytes + 3) / 4;
}

/* ------------------------------------------------------------------ script */

typedef struct {
    int status;           /* 0: none */
    char *body;           /* NULL: protocol's default error body */
    long retry_after;     /* -1: none */
    long stall_ms;
    long stall_after_chunks; /* -1: none */
    long stall_chunks_ms;
    long truncate_after_chunks; /* -1: none */
    int malformed_chunk;
    int close;
    char *stream_error;   /* NULL: none; else an error type sent as an error event mid-stream */
} fault_t;

typedef struct {
    char *name;
    char *arguments; /* serialized object, or the raw string as given */
} script_call_t;

enum { PROTO_ANY = 0, PROTO_OPENAI, PROTO_ANTHROPIC };

typedef struct {
    char *name;
    int protocol;          /* PROTO_ANY, or the one endpoint the rule applies to */
    int has_match;
    regex_t match;
    int has_model;
    regex_t model;         /* on the request's model */
    long tool_results;     /* -1: any */
    long tool_results_min; /* -1: any */
    int has_last_tool_match;
    regex_t last_tool_match;
    int has_reply;
    char *content;         /* NULL: no content */
    script_call_t *calls;
    size_t ncalls;
    long times;            /* -1: unlimited */
    long used;
    long ttft_ms, chunk_chars, chunk_interval_ms; /* -1: defaults */
    int has_fault;
    fault_t fault;
} rule_t;

typedef struct {
    long ttft_ms, chunk_chars, chunk_interval_ms;
    char *api_key;
    rule_t *rules;
    size_t nrules;
    char *source; /* compact JSON, for GET /_fakellm/script */
} script_t;

static void rule_free(rule_t *r)
{
    free(r->name);
    if (r->has_match)
        regfree(&r->match);
    if (r->has_model)
        regfree(&r->model);
    if (r->has_last_tool_match)
        regfree(&r->last_tool_match);
    free(r->content);
    for (size_t i = 0; i < r->ncalls; i++) {
        free(r->calls[i].name);
        free(r->calls[i].arguments);
    }
    free(r->calls);
    free(r->fault.body);
    free(r->fault.stream_error);
}

static void script_free(script_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nrules; i++)
        rule_free(&s->rules[i]);
    free(s->rules);
    free(s->api_key);
    free(s->source);
    free(s);
}

/* Fails (returns -1 with a message in err) on the first key of obj not in allowed. */
static int check_keys(json_t *obj, const char *where, const char *const *allowed, sbuf_t *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        const char *const *a;
        for (a = allowed; *a != NULL; a++)
            if (strcmp(*a, key) == 0)
                break;
        if (*a == NULL) {
            sbuf_printf(err, "%s: unknown key \"%.80s\"", where, key);
            return -1;
        }
    }
    return 0;
}

/* Reads an optional integer in [lo, hi]; leaves *out untouched when absent. */
static int get_int(json_t *obj, const char *key, const char *where, long lo, long hi, long *out, sbuf_t *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        sbuf_printf(err, "%s.%s: expected an integer from %ld to %ld", where, key, lo, hi);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

static int get_bool(json_t *obj, const char *key, const char *where, int *out, sbuf_t *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_boolean(v)) {
        sbuf_printf(err, "%s.%s: expected true or false", where, key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

/* Reads an optional string; *out is a malloc'd copy or stays NULL. */
static int get_str(json_t *obj, const char *key, const char *where, char **out, sbuf_t *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_string(v)) {
        sbuf_printf(err, "%s.%s: expected a string", where, key);
        return -1;
    }
    *out = xstrndup(json_string_value(v), json_string_length(v));
    return 0;
}

static int get_regex(json_t *obj, const char *key, const char *where, regex_t *re, int *has, sbuf_t *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_string(v)) {
        sbuf_printf(err, "%s.%s: expected a string (POSIX extended regex)", where, key);
        return -1;
    }
    /* POSIX leaves "\n" undefined (glibc reads it as "n"), yet script authors write it
     * for a newline; translate \n, \t and \r, keep every other escape as it is. */
    const char *src = json_string_value(v);
    sbuf_t pat = SBUF_INIT;
    for (size_t i = 0; src[i] != '\0'; i++) {
        if (src[i] == '\\' && src[i + 1] != '\0') {
            char c = src[i + 1];
            if (c == 'n' || c == 't' || c == 'r') {
                sbuf_append(&pat, c == 'n' ? "\n" : c == 't' ? "\t" : "\r", 1);
            } else {
                sbuf_append(&pat, src + i, 2);
            }
            i++;
            continue;
        }
        sbuf_append(&pat, src + i, 1);
    }
    int rc = regcomp(re, pat.data ? pat.data : "", REG_EXTENDED | REG_NOSUB);
    sbuf_free(&pat);
    if (rc != 0) {
        char msg[256];
        regerror(rc, re, msg, sizeof(msg));
        sbuf_printf(err, "%s.%s: invalid regex: %s", where, key, msg);
        return -1;
    }
    *has = 1;
    return 0;
}

static const char *const template_names[] = {"last_tool_result", "last_user", "model", NULL};

/* Every "{{" in content must open one of the known templates. */
static int check_templates(const char *s, const char *where, sbuf_t *err)
{
    const char *p = s;
    while ((p = strstr(p, "{{")) != NULL) {
        const char *const *t;
        for (t = template_names; *t != NULL; t++) {
            size_t n = strlen(*t);
            if (strncmp(p + 2, *t, n) == 0 && strncmp(p + 2 + n, "}}", 2) == 0)
                break;
        }
        if (*t == NULL) {
            sbuf_printf(err, "%s: unknown template \"%.40s\" (known: {{last_tool_result}}, {{last_user}}, {{model}})", where,
                        p);
            return -1;
        }
        p += 2 + strlen(*t) + 2;
    }
    return 0;
}

static int fault_parse(json_t *f, const char *where, fault_t *out, sbuf_t *err)
{
    static const char *const keys[] = {"status", "body", "retry_after", "stall_ms", "stall_after_chunks",
                                       "stall_chunks_ms", "truncate_after_chunks", "malformed_chunk", "close",
                                       "stream_error", NULL};
    long status = 0;
    if (!json_is_object(f)) {
        sbuf_printf(err, "%s: expected an object", where);
        return -1;
    }
    if (check_keys(f, where, keys, err) != 0 || get_int(f, "status", where, 200, 599, &status, err) != 0 ||
        get_str(f, "body", where, &out->body, err) != 0 ||
        get_int(f, "retry_after", where, 0, 86400, &out->retry_after, err) != 0 ||
        get_int(f, "stall_ms", where, 0, MAX_DELAY_MS, &out->stall_ms, err) != 0 ||
        get_int(f, "stall_after_chunks", where, 0, 1000000, &out->stall_after_chunks, err) != 0 ||
        get_int(f, "stall_chunks_ms", where, 0, MAX_DELAY_MS, &out->stall_chunks_ms, err) != 0 ||
        get_int(f, "truncate_after_chunks", where, 0, 1000000, &out->truncate_after_chunks, err) != 0 ||
        get_bool(f, "malformed_chunk", where, &out->malformed_chunk, err) != 0 ||
        get_bool(f, "close", where, &out->close, err) != 0 ||
        get_str(f, "stream_error", where, &out->stream_error, err) != 0)
        return -1;
    out->status = (int)status;
    if (out->stream_error != NULL) {
        size_t n = strlen(out->stream_error);
        if (n == 0 || n > 64 || strspn(out->stream_error, "abcdefghijklmnopqrstuvwxyz_") != n) {
            sbuf_printf(err, "%s.stream_error: expected an error type such as \"overloaded_error\" (a-z and _)", where);
            return -1;
        }
        if (out->status != 0 || out->close) {
            sbuf_printf(err, "%s: stream_error cannot be combined with status or close", where);
            return -1;
        }
    }
    int stream_fault = out->stall_after_chunks >= 0 || out->truncate_after_chunks >= 0 || out->malformed_chunk ||
                       out->stream_error != NULL;
    if ((out->stall_after_chunks >= 0) != (json_object_get(f, "stall_chunks_ms") != NULL)) {
        sbuf_printf(err, "%s: stall_after_chunks and stall_chunks_ms go together", where);
        return -1;
    }
    if ((out->body != NULL || out->retry_after >= 0) && out->status == 0) {
        sbuf_printf(err, "%s: body and retry_after need a status", where);
        return -1;
    }
    if (out->status != 0 && (stream_fault || out->close)) {
        sbuf_printf(err, "%s: status cannot be combined with chunk faults or close", where);
        return -1;
    }
    if (out->close && stream_fault) {
        sbuf_printf(err, "%s: close cannot be combined with chunk faults (only with stall_ms)", where);
        return -1;
    }
    return 0;
}

static int reply_parse(json_t *r, const char *where, rule_t *rule, sbuf_t *err)
{
    static const char *const keys[] = {"content", "tool_calls", NULL};
    static const char *const call_keys[] = {"name", "arguments", NULL};
    if (!json_is_object(r)) {
        sbuf_printf(err, "%s: expected an object", where);
        return -1;
    }
    if (check_keys(r, where, keys, err) != 0 || get_str(r, "content", where, &rule->content, err) != 0)
        return -1;
    if (rule->content != NULL && check_templates(rule->content, where, err) != 0)
        return -1;
    json_t *calls = json_object_get(r, "tool_calls");
    if (calls == NULL)
        return 0;
    if (!json_is_array(calls) || json_array_size(calls) == 0 || json_array_size(calls) > 64) {
        sbuf_printf(err, "%s.tool_calls: expected an array of 1 to 64 calls", where);
        return -1;
    }
    rule->calls = xcalloc(json_array_size(calls), sizeof(*rule->calls));
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        char w[128];
        snprintf(w, sizeof(w), "%s.tool_calls[%zu]", where, i);
        if (!json_is_object(c)) {
            sbuf_printf(err, "%s: expected an object", w);
            return -1;
        }
        script_call_t *sc = &rule->calls[rule->ncalls++];
        if (check_keys(c, w, call_keys, err) != 0 || get_str(c, "name", w, &sc->name, err) != 0)
            return -1;
        if (sc->name == NULL || sc->name[0] == '\0') {
            sbuf_printf(err, "%s.name: required", w);
            return -1;
        }
        json_t *a = json_object_get(c, "arguments");
        if (a == NULL) {
            sc->arguments = xstrdup("{}");
        } else if (json_is_string(a)) {
            sc->arguments = xstrndup(json_string_value(a), json_string_length(a));
        } else if (json_is_object(a)) {
            sc->arguments = json_dumps(a, JSON_COMPACT);
            if (sc->arguments == NULL)
                abort();
        } else {
            sbuf_printf(err, "%s.arguments: expected an object or a string", w);
            return -1;
        }
    }
    return 0;
}

static int rule_parse(json_t *r, size_t idx, rule_t *rule, sbuf_t *err)
{
    static const char *const keys[] = {"name",  "match",   "tool_results", "tool_results_min", "last_tool_result_match",
                                       "reply", "times",   "ttft_ms",      "chunk_chars",      "chunk_interval_ms",
                                       "fault", "protocol", "model",       NULL};
    char where[64];
    snprintf(where, sizeof(where), "rules[%zu]", idx);
    rule->tool_results = rule->tool_results_min = rule->times = -1;
    rule->ttft_ms = rule->chunk_chars = rule->chunk_interval_ms = -1;
    rule->fault.retry_after = rule->fault.stall_after_chunks = rule->fault.truncate_after_chunks = -1;
    if (!json_is_object(r)) {
        sbuf_printf(err, "%s: expected an object", where);
        return -1;
    }
    if (check_keys(r, where, keys, err) != 0 || get_str(r, "name", where, &rule->name, err) != 0 ||
        get_regex(r, "match", where, &rule->match, &rule->has_match, err) != 0 ||
        get_int(r, "tool_results", where, 0, 1000000, &rule->tool_results, err) != 0 ||
        get_int(r, "tool_results_min", where, 0, 1000000, &rule->tool_results_min, err) != 0 ||
        get_regex(r, "last_tool_result_match", where, &rule->last_tool_match, &rule->has_last_tool_match, err) != 0 ||
        get_int(r, "times", where, 1, LONG_MAX, &rule->times, err) != 0 ||
        get_int(r, "ttft_ms", where, 0, MAX_DELAY_MS, &rule->ttft_ms, err) != 0 ||
        get_int(r, "chunk_chars", where, 1, MAX_CHUNK_CHARS, &rule->chunk_chars, err) != 0 ||
        get_int(r, "chunk_interval_ms", where, 0, MAX_DELAY_MS, &rule->chunk_interval_ms, err) != 0 ||
        get_regex(r, "model", where, &rule->model, &rule->has_model, err) != 0)
        return -1;
    json_t *proto = json_object_get(r, "protocol");
    if (proto != NULL) {
        const char *ps = json_string_value(proto);
        if (ps != NULL && strcmp(ps, "openai") == 0) {
            rule->protocol = PROTO_OPENAI;
        } else if (ps != NULL && strcmp(ps, "anthropic") == 0) {
            rule->protocol = PROTO_ANTHROPIC;
        } else {
            sbuf_printf(err, "%s.protocol: expected \"openai\" or \"anthropic\"", where);
            return -1;
        }
    }
    if (rule->tool_results >= 0 && rule->tool_results_min >= 0) {
        sbuf_printf(err, "%s: use tool_results or tool_results_min, not both", where);
        return -1;
    }
    json_t *reply = json_object_get(r, "reply"), *fault = json_object_get(r, "fault");
    if (reply != NULL) {
        char w[80];
        snprintf(w, sizeof(w), "%s.reply", where);
        if (reply_parse(reply, w, rule, err) != 0)
            return -1;
        rule->has_reply = 1;
    }
    if (fault != NULL) {
        char w[80];
        snprintf(w, sizeof(w), "%s.fault", where);
        if (fault_parse(fault, w, &rule->fault, err) != 0)
            return -1;
        rule->has_fault = 1;
    }
    int replaces_reply = rule->has_fault && (rule->fault.status != 0 || rule->fault.close);
    if (!rule->has_reply && !replaces_reply) {
        sbuf_printf(err, "%s: needs a reply (or a fault with status or close)", where);
        return -1;
    }
    if (rule->has_reply && replaces_reply) {
        sbuf_printf(err, "%s: reply is never sent with fault.%s", where, rule->fault.close ? "close" : "status");
        return -1;
    }
    return 0;
}

/* Parses and validates a script; NULL with a message in err on any problem. */
static script_t *script_parse(const char *text, size_t len, sbuf_t *err)
{
    static const char *const keys[] = {"description", "defaults", "require_api_key", "rules", NULL};
    static const char *const default_keys[] = {"ttft_ms", "chunk_chars", "chunk_interval_ms", NULL};
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (root == NULL) {
        sbuf_printf(err, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    script_t *s = xcalloc(1, sizeof(*s));
    s->ttft_ms = 0;
    s->chunk_chars = 8;
    s->chunk_interval_ms = 0;
    if (!json_is_object(root)) {
        sbuf_puts(err, "script: expected a JSON object");
        goto Fail;
    }
    if (check_keys(root, "script", keys, err) != 0 || get_str(root, "require_api_key", "script", &s->api_key, err) != 0)
        goto Fail;
    json_t *d = json_object_get(root, "description");
    if (d != NULL && !json_is_string(d)) {
        sbuf_puts(err, "script.description: expected a string");
        goto Fail;
    }
    json_t *defaults = json_object_get(root, "defaults");
    if (defaults != NULL) {
        if (!json_is_object(defaults)) {
            sbuf_puts(err, "defaults: expected an object");
            goto Fail;
        }
        if (check_keys(defaults, "defaults", default_keys, err) != 0 ||
            get_int(defaults, "ttft_ms", "defaults", 0, MAX_DELAY_MS, &s->ttft_ms, err) != 0 ||
            get_int(defaults, "chunk_chars", "defaults", 1, MAX_CHUNK_CHARS, &s->chunk_chars, err) != 0 ||
            get_int(defaults, "chunk_interval_ms", "defaults", 0, MAX_DELAY_MS, &s->chunk_interval_ms, err) != 0)
            goto Fail;
    }
    json_t *rules = json_object_get(root, "rules");
    if (rules == NULL || !json_is_array(rules) || json_array_size(rules) > MAX_RULES) {
        sbuf_printf(err, "rules: required, an array of at most %d rules", MAX_RULES);
        goto Fail;
    }
    s->rules = xcalloc(json_array_size(rules), sizeof(rule_t));
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r) {
        s->nrules++;
        if (rule_parse(r, i, &s->rules[i], err) != 0)
            goto Fail;
    }
    s->source = json_dumps(root, JSON_COMPACT);
    if (s->source == NULL)
        abort();
    json_decref(root);
    return s;
Fail:
    json_decref(root);
    script_free(s);
    return NULL;
}

/* ------------------------------------------------------------------ shared state */

typedef struct {
    char *model;
    char *prefix;
    size_t len;
} cache_entry_t;

static struct {
    pthread_mutex_t lock;
    script_t *script;
    char **reqs; /* compact JSON of each recorded request body */
    size_t nreqs, reqs_cap, reqs_bytes;
    int reqs_full_warned;
    int record_fd; /* -1: no --record */
    cache_entry_t cache[MAX_CACHE_MODELS];
    size_t ncache, cache_next;
} G = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, 0, 0, 0, -1, {{0}}, 0, 0};

static uint64_t id_counter;
static uint32_t id_salt;
static volatile sig_atomic_t stop_requested;

static void reqs_clear_locked(void)
{
    for (size_t i = 0; i < G.nreqs; i++)
        free(G.reqs[i]);
    G.nreqs = 0;
    G.reqs_bytes = 0;
    G.reqs_full_warned = 0;
}

/* Records one request body (compact JSON, takes ownership of line). */
static void reqs_record(char *line)
{
    size_t n = strlen(line);
    pthread_mutex_lock(&G.lock);
    if (G.record_fd >= 0) {
        /* one write per line: O_APPEND keeps lines whole, the lock keeps them ordered */
        char *l = xmalloc(n + 1);
        memcpy(l, line, n);
        l[n] = '\n';
        ssize_t w = write(G.record_fd, l, n + 1);
        if (w != (ssize_t)(n + 1))
            fprintf(stderr, "fakellm: --record write failed: %s\n", w < 0 ? strerror(errno) : "short write");
        free(l);
    }
    if (G.reqs_bytes + n > MAX_RECORDED_BYTES) {
        if (!G.reqs_full_warned)
            fprintf(stderr, "fakellm: %u MB of recorded requests kept in memory; not keeping more until DELETE "
                            "/_fakellm/requests\n", MAX_RECORDED_BYTES >> 20);
        G.reqs_full_warned = 1;
        free(line);
    } else {
        if (G.nreqs == G.reqs_cap) {
            G.reqs_cap = G.reqs_cap ? G.reqs_cap * 2 : 64;
            G.reqs = xrealloc(G.reqs, G.reqs_cap * sizeof(*G.reqs));
        }
        G.reqs[G.nreqs++] = line;
        G.reqs_bytes += n;
    }
    pthread_mutex_unlock(&G.lock);
}

/* Simulated provider prompt caching: the number of bytes shared with the previous
 * request's prefix for the same model; the new prefix replaces the old. Locked. */
static size_t cache_lcp_locked(const char *model, const char *prefix, size_t len)
{
    cache_entry_t *e = NULL;
    for (size_t i = 0; i < G.ncache; i++)
        if (strcmp(G.cache[i].model, model) == 0)
            e = &G.cache[i];
    size_t lcp = 0;
    if (e != NULL) {
        size_t m = e->len < len ? e->len : len;
        while (lcp < m && e->prefix[lcp] == prefix[lcp])
            lcp++;
        if (lcp == len && e->len == len)
            return lcp; /* unchanged: nothing to store */
        free(e->prefix);
    } else {
        if (G.ncache < MAX_CACHE_MODELS) {
            e = &G.cache[G.ncache++];
        } else {
            e = &G.cache[G.cache_next];
            G.cache_next = (G.cache_next + 1) % MAX_CACHE_MODELS;
            free(e->model);
            free(e->prefix);
        }
        e->model = xstrdup(model);
    }
    e->prefix = xstrndup(prefix, len);
    e->len = len;
    return lcp;
}

/* ------------------------------------------------------------------ conversation and plan */

/* What a protocol parser extracts from a request: all the matcher and planner see. */
typedef struct {
    int protocol;      /* PROTO_OPENAI or PROTO_ANTHROPIC */
    char *model;
    int stream, include_usage;
    char *last_user;   /* "" when there is no user message */
    char *last_tool;   /* NULL when there is no tool message */
    size_t ntool;
    size_t prompt_bytes;
    sbuf_t prefix;     /* system message(s) + tools JSON: the cacheable prefix */
    int cache_marked;  /* Anthropic: the prefix carries a cache_control breakpoint */
} convo_t;

static void convo_free(convo_t *cv)
{
    free(cv->model);
    free(cv->last_user);
    free(cv->last_tool);
    sbuf_free(&cv->prefix);
}

typedef struct {
    char *name;
    char *arguments;
    char id[40];
} plan_call_t;

/* The protocol-neutral answer: what to say, how fast, and what to break. */
typedef struct {
    char *rule_name;     /* NULL: no rule matched */
    char *content;       /* NULL: no text */
    plan_call_t *calls;
    size_t ncalls;
    long ttft_ms, chunk_chars, chunk_interval_ms;
    int has_fault;
    fault_t fault;       /* body and stream_error are owned */
    size_t prompt_tokens, completion_tokens, cached_tokens;
    size_t cache_write_tokens; /* Anthropic: the marked prefix beyond what was cached */
    char id[40];
    long long created;
} plan_t;

static void plan_free(plan_t *p)
{
    free(p->rule_name);
    free(p->content);
    for (size_t i = 0; i < p->ncalls; i++) {
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    free(p->fault.body);
    free(p->fault.stream_error);
}

static void expand_templates(sbuf_t *out, const char *tpl, const convo_t *cv)
{
    const char *p = tpl, *q;
    while ((q = strstr(p, "{{")) != NULL) {
        sbuf_append(out, p, (size_t)(q - p));
        const char *val = "";
        size_t skip = 2;
        if (strncmp(q, "{{last_tool_result}}", 20) == 0) {
            val = cv->last_tool ? cv->last_tool : "";
            skip = 20;
        } else if (strncmp(q, "{{last_user}}", 13) == 0) {
            val = cv->last_user;
            skip = 13;
        } else if (strncmp(q, "{{model}}", 9) == 0) {
            val = cv->model;
            skip = 9;
        } else {
            val = "{{"; /* validated away at load; kept literal for safety */
        }
        sbuf_puts(out, val);
        p = q + skip;
    }
    sbuf_puts(out, p);
}

static int rule_matches(const rule_t *r, const convo_t *cv)
{
    if (r->times >= 0 && r->used >= r->times)
        return 0;
    if (r->protocol != PROTO_ANY && r->protocol != cv->protocol)
        return 0;
    if (r->has_model && regexec(&r->model, cv->model, 0, NULL, 0) != 0)
        return 0;
    if (r->tool_results >= 0 && (long)cv->ntool != r->tool_results)
        return 0;
    if (r->tool_results_min >= 0 && (long)cv->ntool < r->tool_results_min)
        return 0;
    if (r->has_last_tool_match && (cv->last_tool == NULL || regexec(&r->last_tool_match, cv->last_tool, 0, NULL, 0) != 0))
        return 0;
    if (r->has_match && regexec(&r->match, cv->last_user, 0, NULL, 0) != 0)
        return 0;
    return 1;
}

/* Matches the rules and fills plan; takes and releases the state lock. */
static void plan_build(const convo_t *cv, plan_t *pl)
{
    memset(pl, 0, sizeof(*pl));
    pl->fault.retry_after = pl->fault.stall_after_chunks = pl->fault.truncate_after_chunks = -1;
    uint64_t seq = __atomic_fetch_add(&id_counter, 1, __ATOMIC_RELAXED);
    snprintf(pl->id, sizeof(pl->id), "chatcmpl-fk%08" PRIx32 "%016" PRIx64, id_salt, seq);
    pl->created = (long long)time(NULL);

    pthread_mutex_lock(&G.lock);
    script_t *s = G.script;
    const rule_t *r = NULL;
    for (size_t i = 0; i < s->nrules; i++) {
        if (rule_matches(&s->rules[i], cv)) {
            r = &s->rules[i];
            s->rules[i].used++;
            break;
        }
    }
    pl->ttft_ms = s->ttft_ms;
    pl->chunk_chars = s->chunk_chars;
    pl->chunk_interval_ms = s->chunk_interval_ms;
    if (r != NULL) {
        char label[32];
        snprintf(label, sizeof(label), "rules[%zu]", (size_t)(r - s->rules));
        pl->rule_name = xstrdup(r->name ? r->name : label);
        if (r->ttft_ms >= 0)
            pl->ttft_ms = r->ttft_ms;
        if (r->chunk_chars >= 0)
            pl->chunk_chars = r->chunk_chars;
        if (r->chunk_interval_ms >= 0)
            pl->chunk_interval_ms = r->chunk_interval_ms;
        if (r->has_fault) {
            pl->has_fault = 1;
            pl->fault = r->fault;
            pl->fault.body = r->fault.body ? xstrdup(r->fault.body) : NULL;
            pl->fault.stream_error = r->fault.stream_error ? xstrdup(r->fault.stream_error) : NULL;
        }
        if (r->content != NULL) {
            sbuf_t c = SBUF_INIT;
            expand_templates(&c, r->content, cv);
            pl->content = c.data ? c.data : xstrdup("");
        }
        if (r->ncalls) {
            pl->calls = xcalloc(r->ncalls, sizeof(*pl->calls));
            for (size_t i = 0; i < r->ncalls; i++) {
                pl->calls[i].name = xstrdup(r->calls[i].name);
                pl->calls[i].arguments = xstrdup(r->calls[i].arguments);
                uint64_t cseq = __atomic_fetch_add(&id_counter, 1, __ATOMIC_RELAXED);
                snprintf(pl->calls[i].id, sizeof(pl->calls[i].id), "call_fk%08" PRIx32 "%016" PRIx64, id_salt, cseq);
            }
            pl->ncalls = r->ncalls;
        }
        if (r->has_reply && pl->content == NULL && pl->ncalls == 0)
            pl->content = xstrdup("");
    } else {
        pl->content = xstrdup(NO_MATCH_PAGE);
    }
    /* each protocol remembers its own prefixes: the two serialize them differently */
    char cache_key[300];
    snprintf(cache_key, sizeof(cache_key), "%s%.280s", cv->protocol == PROTO_ANTHROPIC ? "anthropic\n" : "", cv->model);
    size_t lcp = cache_lcp_locked(cache_key, cv->prefix.data ? cv->prefix.data : "", cv->prefix.len);
    pthread_mutex_unlock(&G.lock);

    if (r == NULL) {
        /* in full for the first few (a test's mistake), then a count (a benchmark's) */
        static uint64_t misses;
        uint64_t n = __atomic_add_fetch(&misses, 1, __ATOMIC_RELAXED);
        if (n <= 20)
            fprintf(stderr, "fakellm: no rule matched (%s, model %s, %zu tool results); last user message:\n%.400s\n",
                    cv->protocol == PROTO_ANTHROPIC ? "anthropic" : "openai", cv->model, cv->ntool, cv->last_user);
        else if (n % 1000 == 0)
            fprintf(stderr, "fakellm: %" PRIu64 " requests matched no rule so far\n", n);
    } else if (pl->has_fault) {
        fprintf(stderr, "fakellm: rule %s: injecting fault\n", pl->rule_name);
    }

    size_t completion = pl->content ? strlen(pl->content) : 0;
    for (size_t i = 0; i < pl->ncalls; i++)
        completion += strlen(pl->calls[i].name) + strlen(pl->calls[i].arguments);
    pl->prompt_tokens = tokens_of(cv->prompt_bytes);
    pl->completion_tokens = tokens_of(completion);
    pl->cached_tokens = lcp / 4;
    if (pl->cached_tokens > pl->prompt_tokens)
        pl->cached_tokens = pl->prompt_tokens;
    if (cv->cache_marked) {
        /* Anthropic writes the marked prefix to its cache, except what it could read */
        pl->cache_write_tokens = cv->prefix.len / 4 - pl->cached_tokens;
        if (pl->cache_write_tokens > pl->prompt_tokens - pl->cached_tokens)
            pl->cache_write_tokens = pl->prompt_tokens - pl->cached_tokens;
    }
}

/* ------------------------------------------------------------------ response program */

typedef struct {
    uint32_t delay_ms; /* wait before sending this segment */
    size_t off, len;   /* into program_t.data */
} seg_t;

/* A fully planned HTTP response: the engine only plays it. */
typedef struct {
    int status;
    const char *reason;
    const char *content_type;
    long retry_after;       /* -1: no header */
    uint32_t head_delay_ms; /* before anything (fault.stall_ms) */
    int close_now;          /* after head_delay: drop the connection, no response */
    int streaming;          /* chunked transfer; otherwise Content-Length */
    size_t content_length;  /* the full body's length (sent even when truncating) */
    int abort_at_end;       /* end abruptly after the last segment */
    size_t error_at;        /* segments up to the first content delta (0: none yet), for stream_error */
    sbuf_t data;
    seg_t *segs;
    size_t nsegs, segs_cap;
} program_t;

static program_t *program_new(void)
{
    program_t *p = xcalloc(1, sizeof(*p));
    p->status = 200;
    p->reason = "OK";
    p->content_type = "application/json";
    p->retry_after = -1;
    return p;
}

static void program_free(program_t *p)
{
    if (p == NULL)
        return;
    sbuf_free(&p->data);
    free(p->segs);
    free(p);
}

/* Closes the segment that started at data offset `from`. */
static void program_seg(program_t *p, size_t from, uint32_t delay_ms)
{
    if (p->nsegs == p->segs_cap) {
        p->segs_cap = p->segs_cap ? p->segs_cap * 2 : 16;
        p->segs = xrealloc(p->segs, p->segs_cap * sizeof(*p->segs));
    }
    p->segs[p->nsegs++] = (seg_t){delay_ms, from, p->data.len - from};
}

static const char *status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 529: return "Overloaded";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* The message a provider gives with an error type (fault.stream_error). */
static const char *error_type_message(const char *type)
{
    if (strcmp(type, "overloaded_error") == 0)
        return "Overloaded";
    if (strcmp(type, "api_error") == 0)
        return "Internal server error";
    if (strcmp(type, "rate_limit_error") == 0)
        return "Rate limited";
    return "fakellm: injected stream error";
}

/* Notes that the event just added carried content: stream_error strikes after the first. */
static void program_mark_delta(program_t *p)
{
    if (p->error_at == 0)
        p->error_at = p->nsegs;
}

/* fault.stream_error: keeps the events up to the first content delta (or just the first
 * event when there is none), then sends `event` and ends the stream cleanly, the way a
 * provider reports a failure in the middle of an answer. */
static void program_stream_error(program_t *p, const char *event, uint32_t delay)
{
    size_t keep = p->error_at ? p->error_at : 1;
    if (keep < p->nsegs)
        p->nsegs = keep;
    size_t from = p->data.len;
    sbuf_puts(&p->data, event);
    program_seg(p, from, delay);
}

/* Applies the chunk-level faults to a finished program. Streams count SSE events;
 * a non-streamed body counts as two halves (so "after 1" is the middle of it). */
static void program_apply_faults(program_t *p, const fault_t *f)
{
    if (f->truncate_after_chunks >= 0 && (size_t)f->truncate_after_chunks < p->nsegs) {
        p->nsegs = (size_t)f->truncate_after_chunks;
        p->abort_at_end = 1;
    } else if (f->truncate_after_chunks >= 0) {
        p->abort_at_end = 1;
    }
    if (f->stall_after_chunks >= 0) {
        size_t at = (size_t)f->stall_after_chunks;
        if (at >= p->nsegs) {
            /* stall after everything, before the response ends: an empty last segment */
            program_seg(p, p->data.len, 0);
            at = p->nsegs - 1;
        }
        uint64_t d = (uint64_t)p->segs[at].delay_ms + (uint64_t)f->stall_chunks_ms;
        p->segs[at].delay_ms = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    }
}

/* ------------------------------------------------------------------ OpenAI protocol */

typedef struct {
    int status;
    const char *type;
    sbuf_t msg;
    char param[96]; /* "" -> null */
    const char *code; /* NULL -> null */
} oa_err_t;

__attribute__((format(printf, 5, 6))) static int oa_fail(oa_err_t *e, int status, const char *param, const char *code,
                                                         const char *fmt, ...)
{
    e->status = status;
    e->type = "invalid_request_error";
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    char tmp[600];
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sbuf_puts(&e->msg, tmp);
    return -1;
}

static void oa_error_json(sbuf_t *out, const char *message, const char *type, const char *param, const char *code)
{
    sbuf_puts(out, "{\"error\":{\"message\":");
    sbuf_json_cstr(out, message);
    sbuf_puts(out, ",\"type\":");
    sbuf_json_cstr(out, type);
    sbuf_puts(out, ",\"param\":");
    if (param && *param)
        sbuf_json_cstr(out, param);
    else
        sbuf_puts(out, "null");
    sbuf_puts(out, ",\"code\":");
    if (code)
        sbuf_json_cstr(out, code);
    else
        sbuf_puts(out, "null");
    sbuf_puts(out, "}}");
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a decimal";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Appends the text of a message's content (string, null, or an array of parts). */
static int oa_content_text(json_t *content, size_t idx, int null_ok, sbuf_t *out, oa_err_t *e)
{
    char param[64];
    snprintf(param, sizeof(param), "messages[%zu].content", idx);
    if (content == NULL || json_is_null(content)) {
        if (null_ok)
            return 0;
        return oa_fail(e, 400, param, "missing_required_parameter", "Missing required parameter: '%s'.", param);
    }
    if (json_is_string(content)) {
        sbuf_append(out, json_string_value(content), json_string_length(content));
        return 0;
    }
    if (!json_is_array(content))
        return oa_fail(e, 400, param, "invalid_type", "Invalid type for '%s': expected one of a string or array of objects, "
                       "but got %s instead.", param, json_type_name(content));
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type");
        if (!json_is_object(part) || !json_is_string(type))
            return oa_fail(e, 400, param, "invalid_type", "Invalid type for '%s[%zu]': expected a content part object.", param, i);
        if (strcmp(json_string_value(type), "text") == 0) {
            json_t *text = json_object_get(part, "text");
            if (!json_is_string(text))
                return oa_fail(e, 400, param, "missing_required_parameter",
                               "Missing required parameter: '%s[%zu].text'.", param, i);
            sbuf_append(out, json_string_value(text), json_string_length(text));
        }
    }
    return 0;
}

typedef struct {
    const char *id;
    int answered;
} pending_call_t;

/* OpenAI requires every tool_call of an assistant message to be answered by the tool
 * messages right after it, and every tool message to answer one. */
static int oa_check_pending(pending_call_t *pend, size_t npend, size_t asst_idx, oa_err_t *e)
{
    sbuf_t missing = SBUF_INIT;
    for (size_t i = 0; i < npend; i++) {
        if (!pend[i].answered) {
            if (missing.len)
                sbuf_puts(&missing, ", ");
            sbuf_printf(&missing, "%.64s", pend[i].id);
        }
    }
    if (missing.len == 0)
        return 0;
    char param[64];
    snprintf(param, sizeof(param), "messages.[%zu].role", asst_idx);
    oa_fail(e, 400, param, NULL,
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "
            "The following tool_call_ids did not have response messages: %.400s", missing.data);
    sbuf_free(&missing);
    return -1;
}

static int oa_parse_messages(json_t *msgs, convo_t *cv, oa_err_t *e)
{
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", "function", NULL};
    pending_call_t *pend = NULL;
    size_t npend = 0, asst_idx = 0, i;
    int leading_system = 1, rc = -1;
    sbuf_t text = SBUF_INIT;
    json_t *m;

    json_array_foreach(msgs, i, m) {
        char param[64];
        if (!json_is_object(m)) {
            snprintf(param, sizeof(param), "messages[%zu]", i);
            oa_fail(e, 400, param, "invalid_type", "Invalid type for '%s': expected an object, but got %s instead.", param,
                    json_type_name(m));
            goto Exit;
        }
        json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        if (role == NULL) {
            oa_fail(e, 400, param, "missing_required_parameter", "Missing required parameter: '%s'.", param);
            goto Exit;
        }
        const char *const *r;
        for (r = roles; json_is_string(role) && *r != NULL; r++)
            if (strcmp(*r, json_string_value(role)) == 0)
                break;
        if (!json_is_string(role) || *r == NULL) {
            oa_fail(e, 400, param, "invalid_value",
                    "Invalid value: '%.64s'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and "
                    "'developer'.", json_is_string(role) ? json_string_value(role) : "?");
            goto Exit;
        }
        const char *rs = *r;
        int is_tool = strcmp(rs, "tool") == 0;
        int is_asst = strcmp(rs, "assistant") == 0;
        int is_system = strcmp(rs, "system") == 0 || strcmp(rs, "developer") == 0;

        if (!is_tool && npend) {
            if (oa_check_pending(pend, npend, asst_idx, e) != 0)
                goto Exit;
            npend = 0;
        }
        json_t *calls = json_object_get(m, "tool_calls");
        if (is_asst && calls != NULL && !json_is_null(calls)) {
            snprintf(param, sizeof(param), "messages[%zu].tool_calls", i);
            if (!json_is_array(calls)) {
                oa_fail(e, 400, param, "invalid_type", "Invalid type for '%s': expected an array, but got %s instead.", param,
                        json_type_name(calls));
                goto Exit;
            }
            free(pend);
            pend = xcalloc(json_array_size(calls), sizeof(*pend));
            npend = 0;
            asst_idx = i;
            size_t k;
            json_t *c;
            json_array_foreach(calls, k, c) {
                json_t *id = json_object_get(c, "id"), *fn = json_object_get(c, "function");
                json_t *type = json_object_get(c, "type");
                if (!json_is_object(c) || !json_is_string(id) || !json_is_object(fn) ||
                    !json_is_string(json_object_get(fn, "name")) || !json_is_string(json_object_get(fn, "arguments")) ||
                    (type != NULL && !(json_is_string(type) && strcmp(json_string_value(type), "function") == 0))) {
                    oa_fail(e, 400, param, "invalid_value",
                            "Invalid '%s[%zu]': expected {\"id\": string, \"type\": \"function\", \"function\": {\"name\": "
                            "string, \"arguments\": string}}.", param, k);
                    goto Exit;
                }
                pend[npend++] = (pending_call_t){json_string_value(id), 0};
            }
        }
        if (is_tool) {
            json_t *tcid = json_object_get(m, "tool_call_id");
            snprintf(param, sizeof(param), "messages.[%zu].tool_call_id", i);
            if (!json_is_string(tcid)) {
                oa_fail(e, 400, param, "missing_required_parameter", "Missing required parameter: '%s'.", param);
                goto Exit;
            }
            size_t k;
            for (k = 0; k < npend; k++)
                if (strcmp(pend[k].id, json_string_value(tcid)) == 0)
                    break;
            if (k == npend) {
                snprintf(param, sizeof(param), "messages.[%zu].role", i);
                oa_fail(e, 400, param, NULL, "Invalid parameter: messages with role 'tool' must be a response to a "
                        "preceeding message with 'tool_calls'.");
                goto Exit;
            }
            pend[k].answered = 1;
        }

        text.len = 0;
        /* only an assistant message that calls tools may omit its text */
        int null_ok = is_asst && calls != NULL && !json_is_null(calls);
        if (oa_content_text(json_object_get(m, "content"), i, null_ok, &text, e) != 0)
            goto Exit;
        cv->prompt_bytes += text.len;
        if (is_system && leading_system) {
            sbuf_append(&cv->prefix, text.data ? text.data : "", text.len);
            sbuf_append(&cv->prefix, "\n", 1);
        } else {
            leading_system = 0;
        }
        if (strcmp(rs, "user") == 0) {
            free(cv->last_user);
            cv->last_user = xstrndup(text.data ? text.data : "", text.len);
        } else if (is_tool) {
            free(cv->last_tool);
            cv->last_tool = xstrndup(text.data ? text.data : "", text.len);
            cv->ntool++;
        }
    }
    if (npend && oa_check_pending(pend, npend, asst_idx, e) != 0)
        goto Exit;
    rc = 0;
Exit:
    free(pend);
    sbuf_free(&text);
    return rc;
}

/* Validates a Chat Completions request like the real service and reduces it to cv. */
static int oa_parse(json_t *root, convo_t *cv, oa_err_t *e)
{
    static const char *const params[] = {
        "model", "messages", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "temperature",
        "top_p", "n", "stop", "max_tokens", "max_completion_tokens", "presence_penalty", "frequency_penalty",
        "logit_bias", "logprobs", "top_logprobs", "user", "seed", "response_format", "service_tier", "store", "metadata",
        "reasoning_effort", "modalities", "audio", "prediction", "functions", "function_call", "web_search_options",
        "prompt_cache_key", "safety_identifier", "verbosity", NULL};
    memset(cv, 0, sizeof(*cv));
    cv->protocol = PROTO_OPENAI;
    if (!json_is_object(root))
        return oa_fail(e, 400, NULL, NULL, "Invalid request body: expected a JSON object, but got %s instead.",
                       json_type_name(root));
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        const char *const *p;
        for (p = params; *p != NULL; p++)
            if (strcmp(*p, key) == 0)
                break;
        if (*p == NULL)
            return oa_fail(e, 400, NULL, NULL, "Unrecognized request argument supplied: %.64s", key);
    }
    json_t *model = json_object_get(root, "model");
    if (model == NULL)
        return oa_fail(e, 400, NULL, NULL, "you must provide a model parameter");
    if (!json_is_string(model) || json_string_length(model) == 0)
        return oa_fail(e, 400, "model", "invalid_type", "Invalid type for 'model': expected a non-empty string, but got %s "
                       "instead.", json_type_name(model));
    json_t *msgs = json_object_get(root, "messages");
    if (msgs == NULL)
        return oa_fail(e, 400, NULL, "missing_required_parameter", "Missing required parameter: 'messages'.");
    if (!json_is_array(msgs))
        return oa_fail(e, 400, "messages", "invalid_type",
                       "Invalid type for 'messages': expected an array of objects, but got %s instead.", json_type_name(msgs));
    if (json_array_size(msgs) == 0)
        return oa_fail(e, 400, "messages", "empty_array", "Invalid 'messages': empty array. Expected an array with minimum "
                       "length 1, but got an empty array instead.");
    json_t *stream = json_object_get(root, "stream");
    if (stream != NULL && !json_is_null(stream) && !json_is_boolean(stream))
        return oa_fail(e, 400, "stream", "invalid_type", "Invalid type for 'stream': expected a boolean, but got %s instead.",
                       json_type_name(stream));
    cv->stream = json_is_true(stream);
    json_t *so = json_object_get(root, "stream_options");
    if (so != NULL && !json_is_null(so)) {
        if (!cv->stream)
            return oa_fail(e, 400, "stream_options", NULL,
                           "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
        json_t *iu = json_object_get(so, "include_usage");
        if (!json_is_object(so) || (iu != NULL && !json_is_boolean(iu)))
            return oa_fail(e, 400, "stream_options", "invalid_type",
                           "Invalid 'stream_options': expected an object with a boolean 'include_usage'.");
        cv->include_usage = json_is_true(iu);
    }
    json_t *n = json_object_get(root, "n");
    if (n != NULL && !json_is_null(n) && !(json_is_integer(n) && json_integer_value(n) == 1))
        return oa_fail(e, 400, "n", "invalid_value", "fakellm supports only n=1.");
    json_t *tools = json_object_get(root, "tools");
    char *tools_json = NULL;
    if (tools != NULL && !json_is_null(tools)) {
        if (!json_is_array(tools))
            return oa_fail(e, 400, "tools", "invalid_type", "Invalid type for 'tools': expected an array, but got %s instead.",
                           json_type_name(tools));
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t) {
            json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
            if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0 || !json_is_object(fn) ||
                !json_is_string(json_object_get(fn, "name"))) {
                char param[32];
                snprintf(param, sizeof(param), "tools[%zu]", i);
                return oa_fail(e, 400, param, "invalid_value", "Invalid '%s': expected {\"type\": \"function\", \"function\": "
                               "{\"name\": string, ...}}.", param);
            }
        }
        tools_json = json_dumps(tools, JSON_COMPACT);
        if (tools_json == NULL)
            abort();
    }
    cv->model = xstrndup(json_string_value(model), json_string_length(model));
    cv->last_user = xstrdup("");
    if (oa_parse_messages(msgs, cv, e) != 0) {
        free(tools_json);
        return -1;
    }
    if (tools_json != NULL) {
        size_t tl = strlen(tools_json);
        sbuf_append(&cv->prefix, tools_json, tl);
        cv->prompt_bytes += tl;
        free(tools_json);
    }
    return 0;
}

/* The fixed part of every chunk, up to the delta object. */
static void oa_chunk_open(sbuf_t *b, const convo_t *cv, const plan_t *pl)
{
    sbuf_printf(b, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":", pl->id,
                pl->created);
    sbuf_json_cstr(b, cv->model);
    sbuf_puts(b, ",\"system_fingerprint\":\"fp_fakellm\",\"choices\":[{\"index\":0,\"delta\":");
}

static void oa_chunk_close(sbuf_t *b, const convo_t *cv, const char *finish_reason)
{
    sbuf_puts(b, ",\"logprobs\":null,\"finish_reason\":");
    if (finish_reason) {
        sbuf_json_cstr(b, finish_reason);
    } else {
        sbuf_puts(b, "null");
    }
    sbuf_puts(b, "}]");
    if (cv->include_usage)
        sbuf_puts(b, ",\"usage\":null"); /* as OpenAI does when include_usage is on */
    sbuf_puts(b, "}\n\n");
}

static void oa_usage(sbuf_t *b, const plan_t *pl)
{
    sbuf_printf(b, "{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu,\"prompt_tokens_details\":"
                   "{\"cached_tokens\":%zu},\"completion_tokens_details\":{\"reasoning_tokens\":0}}",
                pl->prompt_tokens, pl->completion_tokens, pl->prompt_tokens + pl->completion_tokens, pl->cached_tokens);
}

/* Splits text into chunk_chars-character pieces, one SSE event each. */
static void oa_stream_pieces(program_t *p, const convo_t *cv, const plan_t *pl, const char *text, int call_index,
                             uint32_t delay)
{
    size_t n = strlen(text), off = 0;
    while (off < n) {
        size_t piece = utf8_prefix(text + off, n - off, (size_t)pl->chunk_chars);
        size_t from = p->data.len;
        oa_chunk_open(&p->data, cv, pl);
        if (call_index < 0) {
            sbuf_puts(&p->data, "{\"content\":");
        } else {
            sbuf_printf(&p->data, "{\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":", call_index);
        }
        sbuf_json_str(&p->data, text + off, piece);
        sbuf_puts(&p->data, call_index < 0 ? "}" : "}}]}");
        oa_chunk_close(&p->data, cv, NULL);
        program_seg(p, from, delay);
        program_mark_delta(p);
        off += piece;
    }
}

static void oa_render_stream(program_t *p, const convo_t *cv, const plan_t *pl)
{
    uint32_t interval = (uint32_t)pl->chunk_interval_ms;
    size_t from = p->data.len;
    p->streaming = 1;
    p->content_type = "text/event-stream";

    oa_chunk_open(&p->data, cv, pl);
    sbuf_puts(&p->data, "{\"role\":\"assistant\",\"content\":\"\"}");
    oa_chunk_close(&p->data, cv, NULL);
    program_seg(p, from, (uint32_t)pl->ttft_ms);

    if (pl->has_fault && pl->fault.malformed_chunk) {
        from = p->data.len;
        sbuf_puts(&p->data, "data: {\"choices\": [\n\n");
        program_seg(p, from, interval);
    }
    if (pl->content != NULL)
        oa_stream_pieces(p, cv, pl, pl->content, -1, interval);
    for (size_t i = 0; i < pl->ncalls; i++) {
        from = p->data.len;
        oa_chunk_open(&p->data, cv, pl);
        sbuf_printf(&p->data, "{\"tool_calls\":[{\"index\":%zu,\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":",
                    i, pl->calls[i].id);
        sbuf_json_cstr(&p->data, pl->calls[i].name);
        sbuf_puts(&p->data, ",\"arguments\":\"\"}}]}");
        oa_chunk_close(&p->data, cv, NULL);
        program_seg(p, from, interval);
        oa_stream_pieces(p, cv, pl, pl->calls[i].arguments, (int)i, interval);
    }
    from = p->data.len;
    oa_chunk_open(&p->data, cv, pl);
    sbuf_puts(&p->data, "{}");
    oa_chunk_close(&p->data, cv, pl->ncalls ? "tool_calls" : "stop");
    program_seg(p, from, interval);

    if (cv->include_usage) {
        from = p->data.len;
        sbuf_printf(&p->data, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":", pl->id,
                    pl->created);
        sbuf_json_cstr(&p->data, cv->model);
        sbuf_puts(&p->data, ",\"system_fingerprint\":\"fp_fakellm\",\"choices\":[],\"usage\":");
        oa_usage(&p->data, pl);
        sbuf_puts(&p->data, "}\n\n");
        program_seg(p, from, 0);
    }
    from = p->data.len;
    sbuf_puts(&p->data, "data: [DONE]\n\n");
    program_seg(p, from, 0);
}

static void oa_render_whole(program_t *p, const convo_t *cv, const plan_t *pl)
{
    sbuf_t *b = &p->data;
    if (pl->has_fault && pl->fault.malformed_chunk) {
        sbuf_puts(b, "{\"choices\": [");
    } else {
        sbuf_printf(b, "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%lld,\"model\":", pl->id, pl->created);
        sbuf_json_cstr(b, cv->model);
        sbuf_puts(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        if (pl->content)
            sbuf_json_cstr(b, pl->content);
        else
            sbuf_puts(b, "null");
        sbuf_puts(b, ",\"refusal\":null");
        if (pl->ncalls) {
            sbuf_puts(b, ",\"tool_calls\":[");
            for (size_t i = 0; i < pl->ncalls; i++) {
                sbuf_printf(b, "%s{\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":", i ? "," : "",
                            pl->calls[i].id);
                sbuf_json_cstr(b, pl->calls[i].name);
                sbuf_puts(b, ",\"arguments\":");
                sbuf_json_cstr(b, pl->calls[i].arguments);
                sbuf_puts(b, "}}");
            }
            sbuf_puts(b, "]");
        }
        sbuf_printf(b, "},\"logprobs\":null,\"finish_reason\":\"%s\"}],\"usage\":", pl->ncalls ? "tool_calls" : "stop");
        oa_usage(b, pl);
        sbuf_puts(b, ",\"system_fingerprint\":\"fp_fakellm\"}");
    }
    p->content_length = b->len;
    /* two halves, so chunk faults have a middle to act on */
    size_t half = b->len / 2;
    p->segs = xcalloc(2, sizeof(*p->segs));
    p->segs_cap = 2;
    p->segs[p->nsegs++] = (seg_t){(uint32_t)pl->ttft_ms, 0, half};
    p->segs[p->nsegs++] = (seg_t){0, half, b->len - half};
}

/* The OpenAI serializer: plan -> program. */
static program_t *oa_render(const convo_t *cv, const plan_t *pl)
{
    program_t *p = program_new();
    const fault_t *f = pl->has_fault ? &pl->fault : NULL;
    if (f != NULL)
        p->head_delay_ms = (uint32_t)f->stall_ms;
    if (f != NULL && f->close) {
        p->close_now = 1;
        return p;
    }
    if (f != NULL && f->status != 0) {
        p->status = f->status;
        p->reason = status_reason(f->status);
        p->retry_after = f->retry_after;
        if (f->body != NULL) {
            sbuf_puts(&p->data, f->body);
        } else {
            char msg[96];
            snprintf(msg, sizeof(msg), "fakellm: injected fault (HTTP %d)", f->status);
            oa_error_json(&p->data, msg, f->status == 429 ? "requests" : f->status >= 500 ? "server_error"
                                                                                          : "invalid_request_error",
                          NULL, f->status == 429 ? "rate_limit_exceeded" : NULL);
        }
        p->content_length = p->data.len;
        program_seg(p, 0, 0);
        return p;
    }
    if (cv->stream)
        oa_render_stream(p, cv, pl);
    else
        oa_render_whole(p, cv, pl);
    if (f != NULL && f->stream_error != NULL && cv->stream) {
        sbuf_t ev = SBUF_INIT;
        sbuf_puts(&ev, "data: ");
        oa_error_json(&ev, error_type_message(f->stream_error), f->stream_error, NULL, NULL);
        sbuf_puts(&ev, "\n\n");
        program_stream_error(p, ev.data, (uint32_t)pl->chunk_interval_ms);
        sbuf_free(&ev);
    }
    if (f != NULL)
        program_apply_faults(p, f);
    return p;
}

/* ------------------------------------------------------------------ Anthropic protocol */

typedef struct {
    int status;
    const char *type; /* "invalid_request_error", ... */
    sbuf_t msg;
} an_err_t;

__attribute__((format(printf, 3, 4))) static int an_fail(an_err_t *e, int status, const char *fmt, ...)
{
    e->status = status;
    e->type = "invalid_request_error";
    va_list ap;
    va_start(ap, fmt);
    char tmp[700];
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sbuf_puts(&e->msg, tmp);
    return -1;
}

static void an_error_json(sbuf_t *out, const char *type, const char *message)
{
    sbuf_puts(out, "{\"type\":\"error\",\"error\":{\"type\":");
    sbuf_json_cstr(out, type);
    sbuf_puts(out, ",\"message\":");
    sbuf_json_cstr(out, message);
    sbuf_puts(out, "}}");
}

/* The error type Anthropic uses for an HTTP status. */
static const char *an_error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

/* cache_control must be {"type":"ephemeral"} (with an optional "ttl"); counts it. */
static int an_cache_control(json_t *obj, const char *where, int *nmarks, an_err_t *e)
{
    json_t *cc = json_object_get(obj, "cache_control");
    if (cc == NULL || json_is_null(cc))
        return 0;
    json_t *type = json_object_get(cc, "type"), *ttl = json_object_get(cc, "ttl");
    if (!json_is_object(cc) || !json_is_string(type) || strcmp(json_string_value(type), "ephemeral") != 0)
        return an_fail(e, 400, "%s.cache_control.type: Input should be 'ephemeral'", where);
    if (ttl != NULL && !(json_is_string(ttl) && (strcmp(json_string_value(ttl), "5m") == 0 ||
                                                 strcmp(json_string_value(ttl), "1h") == 0)))
        return an_fail(e, 400, "%s.cache_control.ttl: Input should be '5m' or '1h'", where);
    (*nmarks)++;
    return 0;
}

/* The text of a tool_result's content: a string, or the text of its text blocks. */
static int an_tool_result_text(json_t *content, const char *where, sbuf_t *out, an_err_t *e)
{
    if (content == NULL || json_is_null(content))
        return 0;
    if (json_is_string(content)) {
        sbuf_append(out, json_string_value(content), json_string_length(content));
        return 0;
    }
    if (!json_is_array(content))
        return an_fail(e, 400, "%s.content: Input should be a valid string or list", where);
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b) {
        const char *type = json_string_value(json_object_get(b, "type"));
        if (type == NULL)
            return an_fail(e, 400, "%s.content.%zu.type: Field required", where, i);
        if (strcmp(type, "text") == 0) {
            json_t *t = json_object_get(b, "text");
            if (!json_is_string(t))
                return an_fail(e, 400, "%s.content.%zu.text: Field required", where, i);
            sbuf_append(out, json_string_value(t), json_string_length(t));
        } else if (strcmp(type, "image") != 0 && strcmp(type, "document") != 0 && strcmp(type, "search_result") != 0) {
            return an_fail(e, 400, "%s.content.%zu.type: Input tag '%.40s' found using 'type' does not match any of "
                           "the expected tags: 'text', 'image', 'document', 'search_result'", where, i, type);
        }
    }
    return 0;
}

/* The tool_use ids of the previous assistant turn, and which of them got a result. */
typedef struct {
    pending_call_t *calls;
    size_t n, cap;
} an_pending_t;

static int an_check_answered(an_pending_t *pd, size_t asst_idx, an_err_t *e)
{
    sbuf_t missing = SBUF_INIT;
    for (size_t i = 0; i < pd->n; i++) {
        if (!pd->calls[i].answered) {
            if (missing.len)
                sbuf_puts(&missing, ", ");
            sbuf_printf(&missing, "%.64s", pd->calls[i].id);
        }
    }
    if (missing.len == 0)
        return 0;
    an_fail(e, 400, "messages.%zu: `tool_use` ids were found without `tool_result` blocks immediately after: %.400s. "
            "Each `tool_use` block must have a corresponding `tool_result` block in the next message.", asst_idx,
            missing.data);
    sbuf_free(&missing);
    return -1;
}

/* One message's content blocks. text collects what the rules see as the user's words. */
static int an_parse_blocks(json_t *content, size_t mi, int is_user, an_pending_t *prev, an_pending_t *next,
                           sbuf_t *text, int *has_text, convo_t *cv, int *nmarks, an_err_t *e)
{
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b) {
        char where[64];
        snprintf(where, sizeof(where), "messages.%zu.content.%zu", mi, i);
        if (!json_is_object(b))
            return an_fail(e, 400, "%s: Input should be a valid dictionary or object to extract fields from", where);
        const char *type = json_string_value(json_object_get(b, "type"));
        if (type == NULL)
            return an_fail(e, 400, "%s.type: Field required", where);
        if (an_cache_control(b, where, nmarks, e) != 0)
            return -1;
        if (strcmp(type, "text") == 0) {
            json_t *t = json_object_get(b, "text");
            if (!json_is_string(t))
                return an_fail(e, 400, "%s.text: Field required", where);
            if (json_string_length(t) == 0)
                return an_fail(e, 400, "messages: text content blocks must be non-empty");
            cv->prompt_bytes += json_string_length(t);
            if (is_user) {
                sbuf_append(text, json_string_value(t), json_string_length(t));
                *has_text = 1;
            }
        } else if (strcmp(type, "tool_use") == 0) {
            json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name"), *input = json_object_get(b, "input");
            if (is_user)
                return an_fail(e, 400, "%s: tool_use blocks may only appear in assistant messages", where);
            if (!json_is_string(id) || json_string_length(id) == 0)
                return an_fail(e, 400, "%s.id: Field required", where);
            if (!json_is_string(name) || json_string_length(name) == 0)
                return an_fail(e, 400, "%s.name: Field required", where);
            if (!json_is_object(input))
                return an_fail(e, 400, "%s.input: Input should be a valid dictionary", where);
            if (next->n == next->cap) {
                next->cap = next->cap ? next->cap * 2 : 8;
                next->calls = xrealloc(next->calls, next->cap * sizeof(*next->calls));
            }
            next->calls[next->n++] = (pending_call_t){json_string_value(id), 0};
        } else if (strcmp(type, "tool_result") == 0) {
            json_t *id = json_object_get(b, "tool_use_id"), *isr = json_object_get(b, "is_error");
            if (!is_user)
                return an_fail(e, 400, "%s: tool_result blocks may only appear in user messages", where);
            if (!json_is_string(id))
                return an_fail(e, 400, "%s.tool_use_id: Field required", where);
            if (isr != NULL && !json_is_boolean(isr))
                return an_fail(e, 400, "%s.is_error: Input should be a valid boolean", where);
            size_t k;
            for (k = 0; k < prev->n; k++)
                if (strcmp(prev->calls[k].id, json_string_value(id)) == 0)
                    break;
            if (k == prev->n)
                return an_fail(e, 400, "%s: unexpected `tool_use_id` found in `tool_result` blocks: %.64s. Each "
                               "`tool_result` block must have a corresponding `tool_use` block in the previous message.",
                               where, json_string_value(id));
            prev->calls[k].answered = 1;
            sbuf_t r = SBUF_INIT;
            if (an_tool_result_text(json_object_get(b, "content"), where, &r, e) != 0) {
                sbuf_free(&r);
                return -1;
            }
            free(cv->last_tool);
            cv->last_tool = r.data ? r.data : xstrdup("");
            cv->prompt_bytes += r.len;
            cv->ntool++;
        } else if (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0) {
            if (is_user)
                return an_fail(e, 400, "%s: %s blocks may only appear in assistant messages", where, type);
        } else if (strcmp(type, "image") != 0 && strcmp(type, "document") != 0) {
            return an_fail(e, 400, "%s.type: Input tag '%.40s' found using 'type' does not match any of the expected "
                           "tags: 'text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', "
                           "'redacted_thinking'", where, type);
        }
    }
    return 0;
}

static int an_parse_messages(json_t *msgs, convo_t *cv, int *nmarks, an_err_t *e)
{
    an_pending_t prev = {0}, next = {0};
    sbuf_t text = SBUF_INIT;
    size_t i, asst_idx = 0, n = json_array_size(msgs);
    const char *last_role = NULL;
    int rc = -1;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) {
            an_fail(e, 400, "messages.%zu: Input should be a valid dictionary or object to extract fields from", i);
            goto Exit;
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role == NULL || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)) {
            an_fail(e, 400, "messages.%zu.role: Input should be 'user' or 'assistant'", i);
            goto Exit;
        }
        int is_user = role[0] == 'u';
        if (i == 0 && !is_user) {
            an_fail(e, 400, "messages: first message must use the \"user\" role");
            goto Exit;
        }
        if (last_role != NULL && strcmp(last_role, role) == 0) {
            an_fail(e, 400, "messages: roles must alternate between \"user\" and \"assistant\", but found multiple "
                    "\"%s\" roles in a row", role);
            goto Exit;
        }
        last_role = role;
        json_t *content = json_object_get(m, "content");
        if (content == NULL) {
            an_fail(e, 400, "messages.%zu.content: Field required", i);
            goto Exit;
        }
        int empty = (json_is_string(content) && json_string_length(content) == 0) ||
                    (json_is_array(content) && json_array_size(content) == 0);
        if (empty && !(i + 1 == n && !is_user)) {
            an_fail(e, 400, "messages.%zu: all messages must have non-empty content except for the optional final "
                    "assistant message", i);
            goto Exit;
        }
        text.len = 0;
        int has_text = 0;
        if (is_user) {
            /* the previous assistant turn's tool_use ids are what this turn may answer */
            an_pending_t t = prev;
            prev = next;
            next = t;
            next.n = 0;
        } else {
            prev.n = 0; /* results may only answer the turn right before them */
            next.n = 0;
            asst_idx = i;
        }
        if (json_is_string(content)) {
            cv->prompt_bytes += json_string_length(content);
            if (is_user) {
                sbuf_append(&text, json_string_value(content), json_string_length(content));
                has_text = 1;
            }
        } else if (json_is_array(content)) {
            if (an_parse_blocks(content, i, is_user, &prev, &next, &text, &has_text, cv, nmarks, e) != 0)
                goto Exit;
        } else {
            an_fail(e, 400, "messages.%zu.content: Input should be a valid string or list", i);
            goto Exit;
        }
        if (is_user) {
            if (an_check_answered(&prev, asst_idx, e) != 0)
                goto Exit;
            /* a turn of nothing but tool results is not the user speaking */
            if (has_text) {
                free(cv->last_user);
                cv->last_user = xstrndup(text.data ? text.data : "", text.len);
            }
        }
    }
    rc = 0;
Exit:
    free(prev.calls);
    free(next.calls);
    sbuf_free(&text);
    return rc;
}

/* Validates a Messages request like the real service and reduces it to cv. The
 * cacheable prefix is the tools JSON then the system text (Anthropic's order). */
static int an_parse(json_t *root, convo_t *cv, an_err_t *e)
{
    static const char *const params[] = {
        "model", "messages", "max_tokens", "system", "tools", "tool_choice", "stream", "temperature", "top_p", "top_k",
        "stop_sequences", "metadata", "thinking", "service_tier", "container", "mcp_servers", NULL};
    memset(cv, 0, sizeof(*cv));
    cv->protocol = PROTO_ANTHROPIC;
    if (!json_is_object(root))
        return an_fail(e, 400, "Invalid request body: expected a JSON object, but got %s instead.", json_type_name(root));
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        const char *const *p;
        for (p = params; *p != NULL; p++)
            if (strcmp(*p, key) == 0)
                break;
        if (*p == NULL)
            return an_fail(e, 400, "%.64s: Extra inputs are not permitted", key);
    }
    json_t *model = json_object_get(root, "model");
    if (model == NULL)
        return an_fail(e, 400, "model: Field required");
    if (!json_is_string(model) || json_string_length(model) == 0)
        return an_fail(e, 400, "model: Input should be a valid non-empty string");
    json_t *mt = json_object_get(root, "max_tokens");
    if (mt == NULL)
        return an_fail(e, 400, "max_tokens: Field required");
    if (!json_is_integer(mt))
        return an_fail(e, 400, "max_tokens: Input should be a valid integer");
    if (json_integer_value(mt) < 1)
        return an_fail(e, 400, "max_tokens: Input should be greater than or equal to 1");
    json_t *msgs = json_object_get(root, "messages");
    if (msgs == NULL)
        return an_fail(e, 400, "messages: Field required");
    if (!json_is_array(msgs))
        return an_fail(e, 400, "messages: Input should be a valid list");
    if (json_array_size(msgs) == 0)
        return an_fail(e, 400, "messages: at least one message is required");
    json_t *stream = json_object_get(root, "stream");
    if (stream != NULL && !json_is_boolean(stream))
        return an_fail(e, 400, "stream: Input should be a valid boolean");
    cv->stream = json_is_true(stream);
    cv->include_usage = 1; /* Anthropic always reports usage */

    int nmarks = 0, prefix_marks;
    json_t *tools = json_object_get(root, "tools");
    if (tools != NULL) {
        if (!json_is_array(tools))
            return an_fail(e, 400, "tools: Input should be a valid list");
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t) {
            char where[32];
            snprintf(where, sizeof(where), "tools.%zu", i);
            json_t *name = json_object_get(t, "name"), *type = json_object_get(t, "type");
            if (!json_is_object(t))
                return an_fail(e, 400, "%s: Input should be a valid dictionary", where);
            const char *ns = json_string_value(name);
            if (ns == NULL || ns[0] == '\0' || strlen(ns) > 128 ||
                strspn(ns, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != strlen(ns))
                return an_fail(e, 400, "%s.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'", where);
            int custom = type == NULL || (json_is_string(type) && strcmp(json_string_value(type), "custom") == 0);
            if (custom && !json_is_object(json_object_get(t, "input_schema")))
                return an_fail(e, 400, "%s.custom.input_schema: Field required", where);
            if (an_cache_control(t, where, &nmarks, e) != 0)
                return -1;
        }
        char *tj = json_dumps(tools, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (tj == NULL)
            abort();
        sbuf_puts(&cv->prefix, tj);
        cv->prompt_bytes += strlen(tj);
        free(tj);
    }
    json_t *system = json_object_get(root, "system");
    if (system != NULL) {
        if (json_is_string(system)) {
            sbuf_append(&cv->prefix, json_string_value(system), json_string_length(system));
            cv->prompt_bytes += json_string_length(system);
        } else if (json_is_array(system)) {
            size_t i;
            json_t *b;
            json_array_foreach(system, i, b) {
                char where[32];
                snprintf(where, sizeof(where), "system.%zu", i);
                json_t *type = json_object_get(b, "type"), *text = json_object_get(b, "text");
                if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0)
                    return an_fail(e, 400, "%s.type: Input should be 'text'", where);
                if (!json_is_string(text))
                    return an_fail(e, 400, "%s.text: Field required", where);
                if (json_string_length(text) == 0)
                    return an_fail(e, 400, "system: text content blocks must be non-empty");
                if (an_cache_control(b, where, &nmarks, e) != 0)
                    return -1;
                sbuf_append(&cv->prefix, json_string_value(text), json_string_length(text));
                sbuf_append(&cv->prefix, "\n", 1);
                cv->prompt_bytes += json_string_length(text);
            }
        } else {
            return an_fail(e, 400, "system: Input should be a valid string or list");
        }
    }
    prefix_marks = nmarks;
    cv->model = xstrndup(json_string_value(model), json_string_length(model));
    cv->last_user = xstrdup("");
    if (an_parse_messages(msgs, cv, &nmarks, e) != 0)
        return -1;
    if (nmarks > 4)
        return an_fail(e, 400, "A maximum of 4 blocks with cache_control may be provided. Found %d.", nmarks);
    cv->cache_marked = prefix_marks > 0;
    return 0;
}

/* One SSE event: "event: NAME\ndata: ...\n\n" (the caller appends the JSON). */
static void an_event_open(sbuf_t *b, const char *name)
{
    sbuf_printf(b, "event: %s\ndata: ", name);
}

static void an_usage(sbuf_t *b, const plan_t *pl, int output_tokens)
{
    size_t input = pl->prompt_tokens - pl->cached_tokens - pl->cache_write_tokens;
    sbuf_printf(b, "{\"input_tokens\":%zu,\"cache_creation_input_tokens\":%zu,\"cache_read_input_tokens\":%zu,"
                   "\"output_tokens\":%d}",
                input, pl->cache_write_tokens, pl->cached_tokens, output_tokens);
}

/* The plan's ids, in Anthropic's style: chatcmpl-fk... -> msg_fk..., call_fk... -> toolu_fk... */
static const char *an_id_tail(const char *id)
{
    const char *dash = strpbrk(id, "-_");
    return dash ? dash + 1 : id;
}

/* text pieces of chunk_chars characters, one content_block_delta each. */
static void an_stream_pieces(program_t *p, const plan_t *pl, size_t index, const char *text, int is_json, uint32_t delay)
{
    size_t n = strlen(text), off = 0;
    while (off < n) {
        size_t piece = utf8_prefix(text + off, n - off, (size_t)pl->chunk_chars);
        size_t from = p->data.len;
        an_event_open(&p->data, "content_block_delta");
        sbuf_printf(&p->data, "{\"type\":\"content_block_delta\",\"index\":%zu,\"delta\":{\"type\":\"%s\",\"%s\":", index,
                    is_json ? "input_json_delta" : "text_delta", is_json ? "partial_json" : "text");
        sbuf_json_str(&p->data, text + off, piece);
        sbuf_puts(&p->data, "}}\n\n");
        program_seg(p, from, delay);
        program_mark_delta(p);
        off += piece;
    }
}

static void an_block_stop(program_t *p, size_t index)
{
    size_t from = p->data.len;
    an_event_open(&p->data, "content_block_stop");
    sbuf_printf(&p->data, "{\"type\":\"content_block_stop\",\"index\":%zu}\n\n", index);
    program_seg(p, from, 0);
}

static void an_render_stream(program_t *p, const convo_t *cv, const plan_t *pl)
{
    uint32_t interval = (uint32_t)pl->chunk_interval_ms;
    size_t from = p->data.len, index = 0;
    p->streaming = 1;
    p->content_type = "text/event-stream; charset=utf-8";

    an_event_open(&p->data, "message_start");
    sbuf_printf(&p->data, "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_%s\",\"type\":\"message\","
                          "\"role\":\"assistant\",\"model\":", an_id_tail(pl->id));
    sbuf_json_cstr(&p->data, cv->model);
    sbuf_puts(&p->data, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
    an_usage(&p->data, pl, 1);
    sbuf_puts(&p->data, "}}\n\n");
    program_seg(p, from, (uint32_t)pl->ttft_ms);

    if (pl->has_fault && pl->fault.malformed_chunk) {
        from = p->data.len;
        sbuf_puts(&p->data, "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": [\n\n");
        program_seg(p, from, interval);
    }
    int pinged = 0;
    if (pl->content != NULL && (pl->content[0] != '\0' || pl->ncalls == 0)) {
        from = p->data.len;
        an_event_open(&p->data, "content_block_start");
        sbuf_printf(&p->data, "{\"type\":\"content_block_start\",\"index\":%zu,\"content_block\":{\"type\":\"text\","
                              "\"text\":\"\"}}\n\n", index);
        program_seg(p, from, 0);
        from = p->data.len;
        sbuf_puts(&p->data, "event: ping\ndata: {\"type\": \"ping\"}\n\n"); /* where Anthropic sends it */
        program_seg(p, from, 0);
        pinged = 1;
        an_stream_pieces(p, pl, index, pl->content, 0, interval);
        an_block_stop(p, index);
        index++;
    }
    for (size_t i = 0; i < pl->ncalls; i++, index++) {
        from = p->data.len;
        an_event_open(&p->data, "content_block_start");
        sbuf_printf(&p->data, "{\"type\":\"content_block_start\",\"index\":%zu,\"content_block\":{\"type\":\"tool_use\","
                              "\"id\":\"toolu_%s\",\"name\":", index, an_id_tail(pl->calls[i].id));
        sbuf_json_cstr(&p->data, pl->calls[i].name);
        sbuf_puts(&p->data, ",\"input\":{}}}\n\n");
        program_seg(p, from, interval);
        if (!pinged) {
            from = p->data.len;
            sbuf_puts(&p->data, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
            program_seg(p, from, 0);
            pinged = 1;
        }
        /* Anthropic opens every tool input with an empty fragment */
        from = p->data.len;
        an_event_open(&p->data, "content_block_delta");
        sbuf_printf(&p->data, "{\"type\":\"content_block_delta\",\"index\":%zu,\"delta\":{\"type\":\"input_json_delta\","
                              "\"partial_json\":\"\"}}\n\n", index);
        program_seg(p, from, 0);
        an_stream_pieces(p, pl, index, pl->calls[i].arguments, 1, interval);
        an_block_stop(p, index);
    }
    from = p->data.len;
    an_event_open(&p->data, "message_delta");
    sbuf_printf(&p->data, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":null},"
                          "\"usage\":{\"output_tokens\":%zu}}\n\n",
                pl->ncalls ? "tool_use" : "end_turn", pl->completion_tokens);
    program_seg(p, from, interval);
    from = p->data.len;
    an_event_open(&p->data, "message_stop");
    sbuf_puts(&p->data, "{\"type\":\"message_stop\"}\n\n");
    program_seg(p, from, 0);
}

static void an_render_whole(program_t *p, const convo_t *cv, const plan_t *pl)
{
    sbuf_t *b = &p->data;
    if (pl->has_fault && pl->fault.malformed_chunk) {
        sbuf_puts(b, "{\"type\":\"message\",\"content\": [");
    } else {
        sbuf_printf(b, "{\"id\":\"msg_%s\",\"type\":\"message\",\"role\":\"assistant\",\"model\":", an_id_tail(pl->id));
        sbuf_json_cstr(b, cv->model);
        sbuf_puts(b, ",\"content\":[");
        int first = 1;
        if (pl->content != NULL && (pl->content[0] != '\0' || pl->ncalls == 0)) {
            sbuf_puts(b, "{\"type\":\"text\",\"text\":");
            sbuf_json_cstr(b, pl->content);
            sbuf_puts(b, "}");
            first = 0;
        }
        for (size_t i = 0; i < pl->ncalls; i++) {
            sbuf_printf(b, "%s{\"type\":\"tool_use\",\"id\":\"toolu_%s\",\"name\":", first ? "" : ",",
                        an_id_tail(pl->calls[i].id));
            sbuf_json_cstr(b, pl->calls[i].name);
            sbuf_puts(b, ",\"input\":");
            /* an object goes in as it is; anything else (a deliberately broken script
             * argument) as a JSON string, which a client must reject */
            json_t *in = json_loads(pl->calls[i].arguments, 0, NULL);
            if (json_is_object(in))
                sbuf_puts(b, pl->calls[i].arguments);
            else
                sbuf_json_cstr(b, pl->calls[i].arguments);
            json_decref(in);
            sbuf_puts(b, "}");
            first = 0;
        }
        sbuf_printf(b, "],\"stop_reason\":\"%s\",\"stop_sequence\":null,\"usage\":", pl->ncalls ? "tool_use" : "end_turn");
        an_usage(b, pl, (int)pl->completion_tokens);
        sbuf_puts(b, "}");
    }
    p->content_length = b->len;
    size_t half = b->len / 2;
    p->segs = xcalloc(2, sizeof(*p->segs));
    p->segs_cap = 2;
    p->segs[p->nsegs++] = (seg_t){(uint32_t)pl->ttft_ms, 0, half};
    p->segs[p->nsegs++] = (seg_t){0, half, b->len - half};
}

/* The Anthropic serializer: plan -> program. */
static program_t *an_render(const convo_t *cv, const plan_t *pl)
{
    program_t *p = program_new();
    const fault_t *f = pl->has_fault ? &pl->fault : NULL;
    if (f != NULL)
        p->head_delay_ms = (uint32_t)f->stall_ms;
    if (f != NULL && f->close) {
        p->close_now = 1;
        return p;
    }
    if (f != NULL && f->status != 0) {
        p->status = f->status;
        p->reason = status_reason(f->status);
        p->retry_after = f->retry_after;
        if (f->body != NULL) {
            sbuf_puts(&p->data, f->body);
        } else {
            char msg[96];
            const char *type = an_error_type(f->status);
            if (strcmp(type, "overloaded_error") == 0)
                snprintf(msg, sizeof(msg), "Overloaded");
            else
                snprintf(msg, sizeof(msg), "fakellm: injected fault (HTTP %d)", f->status);
            an_error_json(&p->data, type, msg);
        }
        p->content_length = p->data.len;
        program_seg(p, 0, 0);
        return p;
    }
    if (cv->stream)
        an_render_stream(p, cv, pl);
    else
        an_render_whole(p, cv, pl);
    if (f != NULL && f->stream_error != NULL && cv->stream) {
        sbuf_t ev = SBUF_INIT;
        an_event_open(&ev, "error");
        an_error_json(&ev, f->stream_error, error_type_message(f->stream_error));
        sbuf_puts(&ev, "\n\n");
        program_stream_error(p, ev.data, (uint32_t)pl->chunk_interval_ms);
        sbuf_free(&ev);
    }
    if (f != NULL)
        program_apply_faults(p, f);
    return p;
}

/* ------------------------------------------------------------------ threads, timers, engine */

typedef struct {
    uint64_t ms;
    h2o_timeout_t *timeout;
} timeout_slot_t;

typedef struct {
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    int listen_fd;
    pthread_t tid;
    timeout_slot_t *timeouts;
    size_t ntimeouts;
} thread_t;

static h2o_globalconf_t config;

/* The per-thread queue for one delay, created on first use. */
static h2o_timeout_t *thread_timeout(thread_t *th, uint64_t ms)
{
    for (size_t i = 0; i < th->ntimeouts; i++)
        if (th->timeouts[i].ms == ms)
            return th->timeouts[i].timeout;
    th->timeouts = xrealloc(th->timeouts, (th->ntimeouts + 1) * sizeof(*th->timeouts));
    h2o_timeout_t *t = xmalloc(sizeof(*t));
    h2o_timeout_init(th->ctx.loop, t, ms);
    th->timeouts[th->ntimeouts++] = (timeout_slot_t){ms, t};
    return t;
}

typedef struct {
    h2o_generator_t gen;
    h2o_timeout_entry_t timer;
    h2o_req_t *req;
    thread_t *th;
    program_t *prog;
    size_t next;   /* next segment to send */
    int waited;    /* the delay before segs[next] has elapsed */
} stream_t;

static void stream_step(stream_t *s);

static void stream_arm(stream_t *s, uint32_t ms, h2o_timeout_cb cb)
{
    s->timer.cb = cb;
    h2o_timeout_link(s->th->ctx.loop, thread_timeout(s->th, ms), &s->timer);
}

/* Runs when the request's pool is cleared: response done or client gone. */
static void stream_dispose(void *_s)
{
    stream_t *s = _s;
    h2o_timeout_unlink(&s->timer);
    program_free(s->prog);
    s->prog = NULL;
}

static void stream_on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    stream_t *s = H2O_STRUCT_FROM_MEMBER(stream_t, gen, gen);
    h2o_timeout_unlink(&s->timer);
}

static void stream_on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    stream_step(H2O_STRUCT_FROM_MEMBER(stream_t, gen, gen));
}

static void stream_send_batch(stream_t *s)
{
    program_t *p = s->prog;
    h2o_iovec_t bufs[64];
    size_t n = 0;
    do {
        seg_t *g = &p->segs[s->next++];
        bufs[n++] = h2o_iovec_init(p->data.data + g->off, g->len);
    } while (s->next < p->nsegs && p->segs[s->next].delay_ms == 0 && n < sizeof(bufs) / sizeof(bufs[0]));
    s->waited = 0;
    h2o_send_state_t state = H2O_SEND_STATE_IN_PROGRESS;
    if (s->next == p->nsegs)
        state = p->abort_at_end ? H2O_SEND_STATE_ERROR : H2O_SEND_STATE_FINAL;
    h2o_send(s->req, bufs, n, state);
}

static void stream_on_seg_timer(h2o_timeout_entry_t *entry)
{
    stream_t *s = H2O_STRUCT_FROM_MEMBER(stream_t, timer, entry);
    s->waited = 1;
    stream_step(s);
}

static void stream_step(stream_t *s)
{
    seg_t *g = &s->prog->segs[s->next];
    if (g->delay_ms > 0 && !s->waited) {
        stream_arm(s, g->delay_ms, stream_on_seg_timer);
        return;
    }
    stream_send_batch(s);
}

/* fault.close: the client sees the connection end with no response at all. */
static void stream_drop_connection(stream_t *s)
{
    h2o_req_t *req = s->req;
    h2o_socket_t *sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (sock != NULL)
        shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
    /* let h2o tear the connection down the normal way: its write fails, it closes */
    req->http1_is_persistent = 0;
    req->res.status = 500;
    req->res.reason = "Internal Server Error";
    req->res.content_length = 0;
    h2o_start_response(req, &s->gen);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
}

static void stream_head(stream_t *s)
{
    program_t *p = s->prog;
    h2o_req_t *req = s->req;
    if (p->close_now) {
        stream_drop_connection(s);
        return;
    }
    req->res.status = p->status;
    req->res.reason = p->reason;
    req->res.content_length = p->streaming ? SIZE_MAX : p->content_length;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, p->content_type, strlen(p->content_type));
    if (p->streaming)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    if (p->retry_after >= 0) {
        char *v = h2o_mem_alloc_pool(&req->pool, 24);
        int n = snprintf(v, 24, "%ld", p->retry_after);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v, (size_t)n);
    }
    h2o_start_response(req, &s->gen);
    if (p->nsegs == 0) {
        h2o_send(req, NULL, 0, p->abort_at_end ? H2O_SEND_STATE_ERROR : H2O_SEND_STATE_FINAL);
        return;
    }
    if (p->streaming && p->segs[0].delay_ms > 0) {
        /* a real provider answers with headers at once and makes you wait for tokens */
        h2o_send(req, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
        return;
    }
    stream_step(s);
}

static void stream_on_head_timer(h2o_timeout_entry_t *entry)
{
    stream_head(H2O_STRUCT_FROM_MEMBER(stream_t, timer, entry));
}

/* Plays prog as the response to req; takes ownership of prog. */
static void stream_start(thread_t *th, h2o_req_t *req, program_t *prog)
{
    stream_t *s = h2o_mem_alloc_shared(&req->pool, sizeof(*s), stream_dispose);
    memset(s, 0, sizeof(*s));
    s->gen.proceed = stream_on_proceed;
    s->gen.stop = stream_on_stop;
    s->req = req;
    s->th = th;
    s->prog = prog;
    if (prog->head_delay_ms > 0)
        stream_arm(s, prog->head_delay_ms, stream_on_head_timer);
    else
        stream_head(s);
}

/* ------------------------------------------------------------------ HTTP handlers */

static int send_body(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = status_reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    h2o_send_inline(req, body, len);
    return 0;
}

static int send_error(h2o_req_t *req, int status, const char *message, const char *type, const char *param,
                      const char *code)
{
    sbuf_t b = SBUF_INIT;
    oa_error_json(&b, message, type, param, code);
    send_body(req, status, "application/json", b.data, b.len);
    sbuf_free(&b);
    return 0;
}

static int path_is(h2o_req_t *req, const char *path)
{
    return h2o_memis(req->path_normalized.base, req->path_normalized.len, path, strlen(path));
}

static int method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static int send_method_not_allowed(h2o_req_t *req)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "Method %.*s not allowed on %.*s", (int)(req->method.len > 16 ? 16 : req->method.len),
             req->method.base, (int)(req->path_normalized.len > 64 ? 64 : req->path_normalized.len),
             req->path_normalized.base);
    return send_error(req, 405, msg, "invalid_request_error", NULL, NULL);
}

/* 401 unless the script wants no key or the request carries the right one. */
static int check_api_key(h2o_req_t *req)
{
    pthread_mutex_lock(&G.lock);
    char *want = G.script->api_key ? xstrdup(G.script->api_key) : NULL;
    pthread_mutex_unlock(&G.lock);
    if (want == NULL)
        return 0;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    int ok = 0, present = 0;
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        present = 1;
        size_t wl = strlen(want);
        ok = v.len == 7 + wl && strncasecmp(v.base, "Bearer ", 7) == 0 && memcmp(v.base + 7, want, wl) == 0;
    }
    free(want);
    if (ok)
        return 0;
    if (!present)
        send_error(req, 401, "You didn't provide an API key. You need to provide your API key in an Authorization header "
                   "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error", NULL, NULL);
    else
        send_error(req, 401, "Incorrect API key provided. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.", "invalid_request_error", NULL, "invalid_api_key");
    return -1;
}

static int handle_chat(thread_t *th, h2o_req_t *req)
{
    json_error_t jerr;
    json_t *root = json_loadb(req->entity.base ? req->entity.base : "", req->entity.len, 0, &jerr);
    if (root != NULL) {
        char *line = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
        if (line == NULL)
            abort();
        reqs_record(line);
    }
    if (check_api_key(req) != 0) {
        json_decref(root);
        return 0;
    }
    if (root == NULL) {
        char msg[512];
        snprintf(msg, sizeof(msg), "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                 "using your HTTP library correctly. The OpenAI API expects a JSON payload.) Parser: %s", jerr.text);
        return send_error(req, 400, msg, "invalid_request_error", NULL, NULL);
    }
    convo_t cv;
    oa_err_t e = {0};
    if (oa_parse(root, &cv, &e) != 0) {
        json_decref(root);
        convo_free(&cv);
        send_error(req, e.status, e.msg.data ? e.msg.data : "invalid request", e.type, e.param, e.code);
        sbuf_free(&e.msg);
        return 0;
    }
    json_decref(root);
    plan_t pl;
    plan_build(&cv, &pl);
    program_t *prog = oa_render(&cv, &pl);
    plan_free(&pl);
    convo_free(&cv);
    stream_start(th, req, prog);
    return 0;
}

static int an_send_error(h2o_req_t *req, int status, const char *type, const char *message)
{
    sbuf_t b = SBUF_INIT;
    an_error_json(&b, type, message);
    send_body(req, status, "application/json", b.data, b.len);
    sbuf_free(&b);
    return 0;
}

/* A request header's value as a NUL-terminated copy (NULL when absent). */
static char *header_dup(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    h2o_iovec_t v = req->headers.entries[i].value;
    return xstrndup(v.base, v.len);
}

/* Anthropic's checks before the body: x-api-key (when the script wants one), then
 * anthropic-version. -1 after answering the error. */
static int an_check_headers(h2o_req_t *req)
{
    pthread_mutex_lock(&G.lock);
    char *want = G.script->api_key ? xstrdup(G.script->api_key) : NULL;
    pthread_mutex_unlock(&G.lock);
    if (want != NULL) {
        char *key = header_dup(req, "x-api-key");
        int ok = key != NULL && strcmp(key, want) == 0;
        free(want);
        if (!ok) {
            an_send_error(req, 401, "authentication_error", key ? "invalid x-api-key" : "x-api-key header is required");
            free(key);
            return -1;
        }
        free(key);
    }
    char *version = header_dup(req, "anthropic-version");
    if (version == NULL) {
        an_send_error(req, 400, "invalid_request_error", "anthropic-version: header is required");
        return -1;
    }
    int known = strcmp(version, "2023-06-01") == 0 || strcmp(version, "2023-01-01") == 0;
    if (!known) {
        char msg[160];
        snprintf(msg, sizeof(msg), "anthropic-version: invalid version '%.64s'", version);
        an_send_error(req, 400, "invalid_request_error", msg);
    }
    free(version);
    return known ? 0 : -1;
}

static int handle_messages(thread_t *th, h2o_req_t *req)
{
    json_error_t jerr;
    json_t *root = json_loadb(req->entity.base ? req->entity.base : "", req->entity.len, 0, &jerr);
    if (root != NULL) {
        char *line = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
        if (line == NULL)
            abort();
        reqs_record(line);
    }
    if (an_check_headers(req) != 0) {
        json_decref(root);
        return 0;
    }
    if (root == NULL) {
        char msg[400];
        snprintf(msg, sizeof(msg), "There was an error parsing the body: %s", jerr.text);
        return an_send_error(req, 400, "invalid_request_error", msg);
    }
    convo_t cv;
    an_err_t e = {0};
    if (an_parse(root, &cv, &e) != 0) {
        json_decref(root);
        convo_free(&cv);
        an_send_error(req, e.status, e.type, e.msg.data ? e.msg.data : "invalid request");
        sbuf_free(&e.msg);
        return 0;
    }
    json_decref(root);
    plan_t pl;
    plan_build(&cv, &pl);
    program_t *prog = an_render(&cv, &pl);
    plan_free(&pl);
    convo_free(&cv);
    stream_start(th, req, prog);
    return 0;
}

static int handle_requests(h2o_req_t *req)
{
    if (method_is(req, "DELETE")) {
        pthread_mutex_lock(&G.lock);
        reqs_clear_locked();
        pthread_mutex_unlock(&G.lock);
        return send_body(req, 200, "application/json", H2O_STRLIT("{\"ok\":true}"));
    }
    if (!method_is(req, "GET"))
        return send_method_not_allowed(req);
    sbuf_t b = SBUF_INIT;
    sbuf_puts(&b, "[");
    pthread_mutex_lock(&G.lock);
    for (size_t i = 0; i < G.nreqs; i++) {
        if (i)
            sbuf_puts(&b, ",");
        sbuf_puts(&b, G.reqs[i]);
    }
    pthread_mutex_unlock(&G.lock);
    sbuf_puts(&b, "]");
    send_body(req, 200, "application/json", b.data, b.len);
    sbuf_free(&b);
    return 0;
}

static int handle_script(h2o_req_t *req)
{
    if (method_is(req, "GET")) {
        pthread_mutex_lock(&G.lock);
        char *src = xstrdup(G.script->source);
        pthread_mutex_unlock(&G.lock);
        send_body(req, 200, "application/json", src, strlen(src));
        free(src);
        return 0;
    }
    if (!method_is(req, "PUT"))
        return send_method_not_allowed(req);
    sbuf_t err = SBUF_INIT;
    script_t *s = script_parse(req->entity.base ? req->entity.base : "", req->entity.len, &err);
    if (s == NULL) {
        fprintf(stderr, "fakellm: PUT /_fakellm/script rejected: %s\n", err.data);
        send_error(req, 400, err.data, "invalid_request_error", NULL, "invalid_script");
        sbuf_free(&err);
        return 0;
    }
    pthread_mutex_lock(&G.lock);
    script_t *old = G.script;
    G.script = s;
    pthread_mutex_unlock(&G.lock);
    script_free(old);
    return send_body(req, 200, "application/json", H2O_STRLIT("{\"ok\":true}"));
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    thread_t *th = H2O_STRUCT_FROM_MEMBER(thread_t, ctx, req->conn->ctx);
    if (path_is(req, "/v1/chat/completions")) {
        if (!method_is(req, "POST"))
            return send_method_not_allowed(req);
        return handle_chat(th, req);
    }
    if (path_is(req, "/v1/messages")) {
        if (!method_is(req, "POST"))
            return an_send_error(req, 405, "invalid_request_error", "Method not allowed");
        return handle_messages(th, req);
    }
    if (path_is(req, "/_fakellm/requests"))
        return handle_requests(req);
    if (path_is(req, "/_fakellm/script"))
        return handle_script(req);
    if (path_is(req, "/_fakellm/health")) {
        if (!method_is(req, "GET") && !method_is(req, "HEAD"))
            return send_method_not_allowed(req);
        return send_body(req, 200, "text/plain", H2O_STRLIT("ok"));
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "Invalid URL (%.*s %.*s)", (int)(req->method.len > 16 ? 16 : req->method.len),
             req->method.base, (int)(req->path_normalized.len > 100 ? 100 : req->path_normalized.len),
             req->path_normalized.base);
    return send_error(req, 404, msg, "invalid_request_error", NULL, NULL);
}

/* ------------------------------------------------------------------ listening and main */

static void on_accept(h2o_socket_t *listener, const char *err)
{
    thread_t *th = listener->data;
    h2o_socket_t *sock;
    if (err != NULL)
        return;
    if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
        return;
    h2o_accept(&th->accept_ctx, sock);
}

static int thread_conns_open(thread_t *th)
{
    return !h2o_linklist_is_empty(&th->ctx.http1._conns) || !h2o_linklist_is_empty(&th->ctx.http2._conns);
}

static void *thread_main(void *arg)
{
    thread_t *th = arg;
    while (!stop_requested)
        h2o_evloop_run(th->ctx.loop, 100); /* wake up now and then to notice a stop */
    h2o_socket_read_stop(th->listener);
    h2o_socket_close(th->listener);
    th->listener = NULL;
    h2o_evloop_run(th->ctx.loop, 0); /* lets the loop free the closed listener */
    /* give responses in flight a moment to finish */
    for (int i = 0; i < 20 && thread_conns_open(th); i++)
        h2o_evloop_run(th->ctx.loop, 10);
    return NULL;
}

/* Read by LeakSanitizer in sanitizer builds. h2o 2.2.5 keeps per-thread recycled
 * memory chunks in a static __thread list it offers no way to free; they are a
 * bounded cache, not a leak of ours. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:h2o_mem_alloc_recycle\n";
}

static void on_signal(int sig)
{
    stop_requested = 1;
}

static int is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    return 0;
}

/* "127.0.0.1:0" or "[::1]:8080" -> address; -1 on syntax errors. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec)
        return -1;
    char host[INET6_ADDRSTRLEN + 2];
    size_t hl = (size_t)(colon - spec);
    if (spec[0] == '[') {
        if (hl < 3 || spec[hl - 1] != ']')
            return -1;
        spec++;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        return -1;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
        return -1;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a6);
        return 0;
    }
    return -1;
}

static int open_listener(struct sockaddr_storage *ss, socklen_t len, int reuseport)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
        bind(fd, (struct sockaddr *)ss, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    sbuf_t b = SBUF_INIT;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0) {
        sbuf_append(&b, tmp, n);
        if (b.len > MAX_BODY_BYTES) {
            fclose(fp);
            sbuf_free(&b);
            errno = EFBIG;
            return NULL;
        }
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        sbuf_free(&b);
        errno = EIO;
        return NULL;
    }
    *len = b.len;
    return b.data ? b.data : xstrdup("");
}

static int write_port_file(const char *path, unsigned port)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >= (int)sizeof(tmp))
        return -1;
    FILE *fp = fopen(tmp, "w");
    if (fp == NULL)
        return -1;
    fprintf(fp, "%u\n", port);
    if (fclose(fp) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void usage(void)
{
    fputs("usage: fakellm --listen 127.0.0.1:PORT --script FILE.json [--record FILE.jsonl] [--port-file FILE] "
          "[--threads 1|2]\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *listen_spec = NULL, *script_path = NULL, *record_path = NULL, *port_file = NULL;
    int nthreads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        if (strcmp(a, "--listen") == 0)
            listen_spec = argv[++i];
        else if (strcmp(a, "--script") == 0)
            script_path = argv[++i];
        else if (strcmp(a, "--record") == 0)
            record_path = argv[++i];
        else if (strcmp(a, "--port-file") == 0)
            port_file = argv[++i];
        else if (strcmp(a, "--threads") == 0) {
            nthreads = atoi(argv[++i]);
            if (nthreads < 1 || nthreads > MAX_THREADS)
                usage();
        } else
            usage();
    }
    if (listen_spec == NULL || script_path == NULL)
        usage();

    struct sockaddr_storage ss;
    socklen_t sslen;
    if (parse_listen(listen_spec, &ss, &sslen) != 0) {
        fprintf(stderr, "fakellm: --listen %s: expected HOST:PORT (e.g. 127.0.0.1:0)\n", listen_spec);
        return 2;
    }
    if (!is_loopback(&ss)) {
        fprintf(stderr, "fakellm: --listen %s: refusing a non-loopback address (this is a test tool)\n", listen_spec);
        return 2;
    }

    size_t len;
    char *text = read_file(script_path, &len);
    if (text == NULL) {
        fprintf(stderr, "fakellm: --script %s: %s\n", script_path, strerror(errno));
        return 2;
    }
    sbuf_t err = SBUF_INIT;
    G.script = script_parse(text, len, &err);
    free(text);
    if (G.script == NULL) {
        fprintf(stderr, "fakellm: --script %s: %s\n", script_path, err.data);
        sbuf_free(&err);
        return 2;
    }
    if (record_path != NULL) {
        G.record_fd = open(record_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (G.record_fd < 0) {
            fprintf(stderr, "fakellm: --record %s: %s\n", record_path, strerror(errno));
            script_free(G.script);
            return 2;
        }
    }
    id_salt = (uint32_t)getpid() ^ (uint32_t)time(NULL);

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    h2o_config_init(&config);
    config.max_request_entity_size = MAX_BODY_BYTES;
    config.http1.upgrade_to_http2 = 0;
    config.server_name = h2o_iovec_init(H2O_STRLIT("fakellm"));
    h2o_hostconf_t *host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_req;

    thread_t threads[MAX_THREADS];
    memset(threads, 0, sizeof(threads));
    unsigned port = 0;
    for (int i = 0; i < nthreads; i++) {
        /* the first socket picks the port; the others share it through SO_REUSEPORT */
        int fd = open_listener(&ss, sslen, nthreads > 1);
        if (fd < 0) {
            fprintf(stderr, "fakellm: cannot listen on %s: %s\n", listen_spec, strerror(errno));
            return 1;
        }
        if (i == 0) {
            struct sockaddr_storage bound;
            socklen_t bl = sizeof(bound);
            getsockname(fd, (struct sockaddr *)&bound, &bl);
            port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                    : ((struct sockaddr_in6 *)&bound)->sin6_port);
            if (ss.ss_family == AF_INET)
                ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
            else
                ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
        }
        thread_t *th = &threads[i];
        th->listen_fd = fd;
        h2o_context_init(&th->ctx, h2o_evloop_create(), &config);
        th->accept_ctx.ctx = &th->ctx;
        th->accept_ctx.hosts = config.hosts;
        th->listener = h2o_evloop_socket_create(th->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
        th->listener->data = th;
        h2o_socket_read_start(th->listener, on_accept);
    }

    char hostbuf[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, hostbuf, sizeof(hostbuf));
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, hostbuf, sizeof(hostbuf));
    if (ss.ss_family == AF_INET6)
        printf("fakellm listening on http://[%s]:%u\n", hostbuf, port);
    else
        printf("fakellm listening on http://%s:%u\n", hostbuf, port);
    fflush(stdout);
    if (port_file != NULL && write_port_file(port_file, port) != 0) {
        fprintf(stderr, "fakellm: --port-file %s: %s\n", port_file, strerror(errno));
        return 1;
    }

    for (int i = 1; i < nthreads; i++)
        if (pthread_create(&threads[i].tid, NULL, thread_main, &threads[i]) != 0) {
            fputs("fakellm: cannot start a thread\n", stderr);
            return 1;
        }
    thread_main(&threads[0]);
    for (int i = 1; i < nthreads; i++)
        pthread_join(threads[i].tid, NULL);

    /* Clean teardown only when nothing is left in flight: h2o 2.2.5 cannot dispose a
     * context with live connections (its timeout queues assert they are empty). */
    int busy = 0;
    for (int i = 0; i < nthreads; i++) {
        busy |= thread_conns_open(&threads[i]);
        for (size_t k = 0; k < threads[i].ntimeouts; k++)
            busy |= !h2o_linklist_is_empty(&threads[i].timeouts[k].timeout->_entries);
    }
    if (busy) {
        fputs("fakellm: stopping with connections still open\n", stderr);
        _exit(0);
    }
    for (int i = 0; i < nthreads; i++) {
        thread_t *th = &threads[i];
        for (size_t k = 0; k < th->ntimeouts; k++) {
            h2o_timeout_dispose(th->ctx.loop, th->timeouts[k].timeout);
            free(th->timeouts[k].timeout);
        }
        free(th->timeouts);
        h2o_evloop_t *loop = th->ctx.loop;
        h2o_multithread_queue_t *queue = th->ctx.queue;
        h2o_context_dispose(&th->ctx);
        free(queue); /* h2o 2.2.5's h2o_multithread_destroy_queue() forgets to */
        h2o_evloop_destroy(loop);
    }
    h2o_config_dispose(&config);
    pthread_mutex_lock(&G.lock);
    reqs_clear_locked();
    free(G.reqs);
    for (size_t i = 0; i < G.ncache; i++) {
        free(G.cache[i].model);
        free(G.cache[i].prefix);
    }
    script_free(G.script);
    G.script = NULL;
    if (G.record_fd >= 0)
        close(G.record_fd);
    pthread_mutex_unlock(&G.lock);
    return 0;
}
