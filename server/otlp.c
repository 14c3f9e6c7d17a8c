/*
 * otlp.c — export of interaction traces to an OpenTelemetry collector over OTLP/HTTP
 * with the JSON encoding (POST <endpoint>, Content-Type: application/json).
 *
 * Design:
 * - One interaction becomes up to 1 + 1 + N spans sharing the trace's W3C ids: the root
 *   SERVER span (the trace's own span_id), a CLIENT "chat <model>" span for the model
 *   time and one INTERNAL "execute_tool <name>" span per tool call, following the GenAI
 *   semantic conventions (gen_ai.*); what the conventions do not name is figment.*.
 *   Child span ids are derived from SHA-256(trace_id/span_id/label), so encoding is a
 *   pure function of the trace (a retried batch carries the same ids).
 * - Privacy: no prompt, answer, tool argument or result, query string, form, state or
 *   error text leaves the process; the session id is exported only as the first 16 hex
 *   of its SHA-256 (enough to group one visitor's spans, not to replay a cookie).
 * - The trace does not record when each model round or tool call started, only
 *   durations; the chat span covers [queued, queued + llm_ms] and tool spans are laid
 *   out back to back from the chat span's first token. Spans are clipped to the root.
 * - otlp_submit() runs on loop threads: it copies the few fields the encoder reads
 *   (the caller frees the trace right after), then appends to a bounded list under a
 *   mutex: O(1), never waits on I/O. A full queue drops the trace.
 * - One exporter thread owns a libcurl easy handle (blocking, keep-alive). It sends
 *   when OTLP_BATCH_MAX traces are queued or every interval_ms. A failed POST
 *   (transport error, 408, 429, 5xx) is retried once after OTLP_RETRY_MS; other 4xx
 *   are not retried (the same body would be refused again). Counts are in spans, like
 *   the metric figment_otlp_spans_dropped_total; a 2xx with partialSuccess counts the
 *   rejected spans as dropped.
 * - otlp_stop() gives the thread timeout_ms to flush: a transfer in flight is aborted
 *   at that deadline (progress callback) and what remains is dropped and counted.
 */
#include "otlp.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "crypto.h"
#include "thread.h"

#define OTLP_VERSION "0.1.0"
#define OTLP_RETRY_MS 200
#define OTLP_TOOL_SPANS_MAX 64      /* ≤ 8 rounds; more calls than this are not exported */
#define OTLP_TOOL_NAME_MAX 64
#define OTLP_STR_MAX 256            /* app, model, outcome, ... */
#define OTLP_PATH_MAX 2048
#define OTLP_ROUTE_MAX 1024         /* the router's decision log */
#define OTLP_RESPONSE_MAX 65536     /* what we keep of a collector's answer */
#define OTLP_ENDPOINT_MAX 2048

enum { OTLP_KIND_INTERNAL = 1, OTLP_KIND_SERVER = 2, OTLP_KIND_CLIENT = 3 };
enum { OTLP_STATUS_OK = 1, OTLP_STATUS_ERROR = 2 };

typedef struct otlp_item {
    struct otlp_item *next;
    trace_t t;          /* a trimmed copy: only what otlp_encode reads */
    uint64_t spans;     /* how many spans it encodes to */
} otlp_item_t;

struct otlp_exporter {
    char *endpoint;
    char *service_name;
    int queue_max;
    int interval_ms;
    long timeout_ms;

    pthread_mutex_t mu;
    pthread_cond_t cv;      /* the thread waits on it: batch full, stop */
    otlp_item_t *head, *tail;
    int count;              /* under mu */
    int stopping;           /* under mu */
    int64_t stop_deadline_ms;
    pthread_t thread;

    _Atomic int64_t abort_at_ms;   /* 0, or when a transfer in flight must give up */
    _Atomic int queued;            /* mirror of count, read without the lock */
    _Atomic uint64_t exported;
    _Atomic uint64_t dropped;

    /* exporter thread only */
    CURL *curl;
    struct curl_slist *headers;
    fig_buf_t response;
    int failing;            /* last batch failed: log recovery, not every failure */
};

/* ---------------------------------------------------------------- clock ---- */

static int64_t otlp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timespec otlp_abs_deadline(int64_t mono_ms)
{
    /* the condvar uses CLOCK_MONOTONIC (set at init) */
    struct timespec ts = {(time_t)(mono_ms / 1000), (long)(mono_ms % 1000) * 1000000L};
    return ts;
}

/* --------------------------------------------------------------- encoding ---- */

/* Longest prefix of s, at most max bytes, that does not split a UTF-8 sequence. */
static size_t otlp_clip(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static void otlp_attr(json_t *attrs, const char *key, json_t *value)
{
    if (value == NULL)
        return;
    json_array_append_new(attrs, json_pack("{s:s, s:o}", "key", key, "value", value));
}

/* Invalid UTF-8 (json_stringn refuses it) leaves the attribute out rather than guess. */
static void otlp_attr_str(json_t *attrs, const char *key, const char *s, size_t max)
{
    if (s == NULL)
        return;
    json_t *str = json_stringn(s, otlp_clip(s, max));
    if (str != NULL)
        otlp_attr(attrs, key, json_pack("{s:o}", "stringValue", str));
}

/* OTLP/JSON follows the protobuf JSON mapping: int64 values are decimal strings. */
static void otlp_attr_int(json_t *attrs, const char *key, int64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%" PRId64, v);
    otlp_attr(attrs, key, json_pack("{s:s}", "intValue", num));
}

static void otlp_attr_double(json_t *attrs, const char *key, double v)
{
    if (!isfinite(v))
        return;
    otlp_attr(attrs, key, json_pack("{s:f}", "doubleValue", v));
}

static void otlp_attr_bool(json_t *attrs, const char *key, int v)
{
    otlp_attr(attrs, key, json_pack("{s:b}", "boolValue", v != 0));
}

static uint64_t otlp_ms_to_ns(double ms)
{
    if (!isfinite(ms) || ms <= 0)
        return 0;
    if (ms > 1e9)   /* 11 days: anything longer is a bug, keep the arithmetic sane */
        ms = 1e9;
    return (uint64_t)llround(ms * 1e6);
}

static json_t *otlp_nanos(uint64_t ns)
{
    char num[24];
    snprintf(num, sizeof(num), "%" PRIu64, ns);
    return json_string(num);
}

/* Copies a 2n-char hex id into out (lower-cased). 0, or -1 when it is not hex or is
 * all zeros (both invalid in W3C trace context). */
static int otlp_hex_id(const char *in, size_t n, char *out)
{
    int nonzero = 0;
    if (strnlen(in, n + 1) != n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
        nonzero |= c != '0';
        out[i] = c;
    }
    out[n] = '\0';
    return nonzero ? 0 : -1;
}

/* A child span id: the first 8 bytes of SHA-256("<trace>/<root>/<label>"). */
static void otlp_child_id(const char *trace_id, const char *root_id, const char *label, char out[17])
{
    char seed[128];
    uint8_t d[32];
    int n = snprintf(seed, sizeof(seed), "%s/%s/%s", trace_id, root_id, label);
    crypto_sha256(seed, (size_t)n, d);
    int nonzero = 0;
    for (int i = 0; i < 8; i++)
        nonzero |= d[i];
    if (!nonzero)
        d[7] = 1;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[16] = '\0';
}

static json_t *otlp_span(const char *trace_id, const char *span_id, const char *parent_id, const char *name,
                         int kind, uint64_t start_ns, uint64_t end_ns, json_t *attrs, int error,
                         const char *message)
{
    json_t *span = json_object();
    json_object_set_new(span, "traceId", json_string(trace_id));
    json_object_set_new(span, "spanId", json_string(span_id));
    if (parent_id != NULL)
        json_object_set_new(span, "parentSpanId", json_string(parent_id));
    json_t *jname = json_stringn(name, otlp_clip(name, OTLP_STR_MAX));
    json_object_set_new(span, "name", jname != NULL ? jname : json_string("figment"));
    json_object_set_new(span, "kind", json_integer(kind));
    json_object_set_new(span, "startTimeUnixNano", otlp_nanos(start_ns));
    json_object_set_new(span, "endTimeUnixNano", otlp_nanos(end_ns < start_ns ? start_ns : end_ns));
    json_object_set_new(span, "attributes", attrs);
    json_t *status = json_pack("{s:i}", "code", error ? OTLP_STATUS_ERROR : OTLP_STATUS_OK);
    if (error && message != NULL) {
        json_t *m = json_stringn(message, otlp_clip(message, OTLP_STR_MAX));
        if (m != NULL)
            json_object_set_new(status, "message", m);
    }
    json_object_set_new(span, "status", status);
    return span;
}

static const char *otlp_str(const char *s)
{
    return s != NULL ? s : "";
}

/* The model call happened when a model was named and asked (a page cache hit or a
 * refusal before the model asks none). */
static int otlp_has_chat(const trace_t *t)
{
    return t->model != NULL && t->model[0] != '\0' && !t->cache_hit && (t->attempts > 0 || t->llm_ms > 0);
}

static size_t otlp_tool_count(const trace_t *t)
{
    size_t n = json_is_array(t->tool_calls) ? json_array_size(t->tool_calls) : 0;
    return n > OTLP_TOOL_SPANS_MAX ? OTLP_TOOL_SPANS_MAX : n;
}

static uint64_t otlp_span_count(const trace_t *t)
{
    return 1 + (otlp_has_chat(t) ? 1 : 0) + otlp_tool_count(t);
}

static int otlp_outcome_is_upstream(const char *outcome)
{
    return outcome != NULL && strncmp(outcome, "upstream", 8) == 0;
}

static uint64_t otlp_clamp(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Appends the spans of one trace to `spans`. -1 when its ids are invalid (skipped). */
static int otlp_encode_trace(const trace_t *t, json_t *spans)
{
    char trace_id[33], root_id[17], chat_id[17];
    if (otlp_hex_id(t->trace_id, 32, trace_id) != 0 || otlp_hex_id(t->span_id, 16, root_id) != 0)
        return -1;

    uint64_t start = t->started_unix_ms > 0 ? (uint64_t)t->started_unix_ms * 1000000u : 0;
    uint64_t end = start + otlp_ms_to_ns(t->total_ms);

    /* ---- root: the interaction as an HTTP server span ---- */
    const char *method = t->method != NULL && t->method[0] != '\0' ? t->method : "GET";
    fig_buf_t name = FIG_BUF_INIT, route = FIG_BUF_INIT;
    if (t->app != NULL && t->app[0] != '\0')
        fig_buf_appendf(&route, "/%.*s/*", (int)otlp_clip(t->app, OTLP_STR_MAX), t->app);
    fig_buf_appendf(&name, "%.*s%s%s", (int)otlp_clip(method, 16), method, route.len ? " " : "",
                    route.len ? route.data : "");

    json_t *attrs = json_array();
    otlp_attr_str(attrs, "http.request.method", method, 16);
    if (t->path != NULL) {
        /* the query string may carry personal data: never exported */
        size_t plen = strcspn(t->path, "?");
        char *p = fig_strndup(t->path, plen);
        otlp_attr_str(attrs, "url.path", p, OTLP_PATH_MAX);
        free(p);
    }
    if (route.len)
        otlp_attr_str(attrs, "http.route", route.data, OTLP_STR_MAX);
    otlp_attr_int(attrs, "http.response.status_code", t->status);
    otlp_attr_str(attrs, "figment.app", t->app, OTLP_STR_MAX);
    otlp_attr_str(attrs, "figment.outcome", t->outcome, OTLP_STR_MAX);
    otlp_attr_double(attrs, "figment.cost_usd", t->cost_usd);
    otlp_attr_str(attrs, "figment.route_rule", t->route_rule, OTLP_STR_MAX);
    otlp_attr_str(attrs, "figment.route", t->route, OTLP_ROUTE_MAX);
    otlp_attr_str(attrs, "figment.prompt_version", t->prompt_version, OTLP_STR_MAX);
    if (t->session_id[0] != '\0') {
        char *h = crypto_sha256_hex(t->session_id, strnlen(t->session_id, sizeof(t->session_id)));
        h[16] = '\0';
        otlp_attr_str(attrs, "figment.session.hash", h, 16);
        free(h);
    }
    otlp_attr_bool(attrs, "figment.cache_hit", t->cache_hit);
    otlp_attr_bool(attrs, "figment.stale", t->stale);
    otlp_attr_double(attrs, "figment.queued_ms", t->queued_ms);
    otlp_attr_double(attrs, "figment.overhead_ms", t->overhead_ms);
    int root_error = t->status >= 500;   /* HTTP server spans: 4xx are the client's */
    if (root_error)
        otlp_attr_str(attrs, "error.type", t->outcome != NULL ? t->outcome : "_OTHER", OTLP_STR_MAX);
    json_array_append_new(spans, otlp_span(trace_id, root_id, NULL, name.data, OTLP_KIND_SERVER, start, end,
                                           attrs, root_error, otlp_str(t->outcome)));
    fig_buf_free(&name);
    fig_buf_free(&route);

    /* ---- the model time ---- */
    uint64_t chat_start = otlp_clamp(start + otlp_ms_to_ns(t->queued_ms), start, end);
    uint64_t tools_start = otlp_clamp(chat_start + otlp_ms_to_ns(t->ttft_ms), start, end);
    if (otlp_has_chat(t)) {
        const char *slash = strchr(t->model, '/');
        const char *model = slash != NULL ? slash + 1 : t->model;
        char *provider = t->provider != NULL && t->provider[0] != '\0'
                             ? fig_strdup(t->provider)
                             : fig_strndup(t->model, slash != NULL ? (size_t)(slash - t->model) : strlen(t->model));
        otlp_child_id(trace_id, root_id, "chat", chat_id);
        fig_buf_t cname = FIG_BUF_INIT;
        fig_buf_appendf(&cname, "chat %.*s", (int)otlp_clip(model, OTLP_STR_MAX), model);
        json_t *ca = json_array();
        otlp_attr_str(ca, "gen_ai.operation.name", "chat", 16);
        otlp_attr_str(ca, "gen_ai.provider.name", provider, OTLP_STR_MAX);
        otlp_attr_str(ca, "gen_ai.request.model", model, OTLP_STR_MAX);
        otlp_attr_str(ca, "gen_ai.response.model", model, OTLP_STR_MAX);
        otlp_attr_int(ca, "gen_ai.usage.input_tokens", t->prompt_tokens);
        otlp_attr_int(ca, "gen_ai.usage.output_tokens", t->completion_tokens);
        otlp_attr_int(ca, "figment.usage.cached_input_tokens", t->cached_tokens);
        otlp_attr_int(ca, "figment.usage.cache_write_tokens", t->cache_write_tokens);
        if (t->ttft_ms > 0)
            otlp_attr_double(ca, "figment.time_to_first_token_ms", t->ttft_ms);
        if (t->connect_ms > 0)
            otlp_attr_double(ca, "figment.connect_ms", t->connect_ms);
        otlp_attr_int(ca, "figment.attempts", t->attempts);
        int chat_error = otlp_outcome_is_upstream(t->outcome) || t->stale;
        if (chat_error)
            otlp_attr_str(ca, "error.type", t->stale ? "stale" : t->outcome, OTLP_STR_MAX);
        uint64_t chat_end = otlp_clamp(chat_start + otlp_ms_to_ns(t->llm_ms), chat_start, end);
        json_array_append_new(spans, otlp_span(trace_id, chat_id, root_id, cname.data, OTLP_KIND_CLIENT,
                                               chat_start, chat_end, ca, chat_error,
                                               t->stale ? "stale" : otlp_str(t->outcome)));
        fig_buf_free(&cname);
        free(provider);
    }

    /* ---- tools: siblings of the chat span, under the interaction ---- */
    size_t ntools = otlp_tool_count(t);
    uint64_t at = tools_start;
    for (size_t i = 0; i < ntools; i++) {
        json_t *call = json_array_get(t->tool_calls, i);
        const char *tname = json_string_value(json_object_get(call, "name"));
        json_t *jms = json_object_get(call, "ms");
        double ms = json_is_number(jms) ? json_number_value(jms) : 0;
        int is_error = json_is_true(json_object_get(call, "is_error"));
        if (tname == NULL || tname[0] == '\0')
            tname = "unknown";
        char label[32], tid[17];
        snprintf(label, sizeof(label), "tool/%zu", i);
        otlp_child_id(trace_id, root_id, label, tid);
        fig_buf_t tn = FIG_BUF_INIT;
        fig_buf_appendf(&tn, "execute_tool %.*s", (int)otlp_clip(tname, OTLP_TOOL_NAME_MAX), tname);
        json_t *ta = json_array();
        otlp_attr_str(ta, "gen_ai.operation.name", "execute_tool", 16);
        otlp_attr_str(ta, "gen_ai.tool.name", tname, OTLP_TOOL_NAME_MAX);
        otlp_attr_str(ta, "gen_ai.tool.type", "function", 16);
        if (is_error)
            otlp_attr_str(ta, "error.type", "tool_error", 16);
        uint64_t tstart = otlp_clamp(at, start, end);
        uint64_t tend = otlp_clamp(tstart + otlp_ms_to_ns(ms), tstart, end);
        at = tend;
        json_array_append_new(spans, otlp_span(trace_id, tid, root_id, tn.data, OTLP_KIND_INTERNAL, tstart,
                                               tend, ta, is_error, "tool_error"));
        fig_buf_free(&tn);
    }
    return 0;
}

static json_t *otlp_resource_attrs(const char *service_name)
{
    json_t *attrs = json_array();
    otlp_attr_str(attrs, "service.name", service_name, OTLP_STR_MAX);
    otlp_attr_str(attrs, "service.version", OTLP_VERSION, 16);
    otlp_attr_str(attrs, "telemetry.sdk.name", "figment", 16);
    return attrs;
}

json_t *otlp_encode(const trace_t *const *traces, size_t n, const char *service_name)
{
    if (service_name == NULL || service_name[0] == '\0')
        service_name = "figment";
    json_t *spans = json_array();
    for (size_t i = 0; i < n; i++)
        if (traces[i] != NULL)
            otlp_encode_trace(traces[i], spans);
    return json_pack("{s:[{s:{s:o}, s:[{s:{s:s, s:s}, s:o}]}]}",
                     "resourceSpans",
                     "resource", "attributes", otlp_resource_attrs(service_name),
                     "scopeSpans",
                     "scope", "name", "figment", "version", OTLP_VERSION,
                     "spans", spans);
}

/* ------------------------------------------------------- copy at submit ---- */

static char *otlp_dup(const char *s, size_t max)
{
    return s != NULL ? fig_strndup(s, otlp_clip(s, max)) : NULL;
}

static void otlp_item_free(otlp_item_t *it)
{
    trace_t *t = &it->t;
    free(t->app);
    free(t->method);
    free(t->path);
    free(t->route_rule);
    free(t->model);
    free(t->provider);
    free(t->route);
    free(t->prompt_version);
    free(t->outcome);
    json_decref(t->tool_calls);
    free(it);
}

/* Field by field, so a field added to trace_t later is never aliased by accident.
 * Tool calls keep only name, ms and is_error (arguments and results stay behind). */
static otlp_item_t *otlp_item_copy(const trace_t *src)
{
    otlp_item_t *it = fig_calloc(1, sizeof(*it));
    trace_t *t = &it->t;
    memcpy(t->trace_id, src->trace_id, sizeof(t->trace_id));
    t->trace_id[sizeof(t->trace_id) - 1] = '\0';
    memcpy(t->span_id, src->span_id, sizeof(t->span_id));
    t->span_id[sizeof(t->span_id) - 1] = '\0';
    memcpy(t->session_id, src->session_id, sizeof(t->session_id));
    t->session_id[sizeof(t->session_id) - 1] = '\0';
    t->app = otlp_dup(src->app, OTLP_STR_MAX);
    t->method = otlp_dup(src->method, 16);
    t->path = src->path != NULL ? fig_strndup(src->path, otlp_clip(src->path, strcspn(src->path, "?"))) : NULL;
    if (t->path != NULL && strlen(t->path) > OTLP_PATH_MAX)
        t->path[otlp_clip(t->path, OTLP_PATH_MAX)] = '\0';
    t->route_rule = otlp_dup(src->route_rule, OTLP_STR_MAX);
    t->model = otlp_dup(src->model, OTLP_STR_MAX);
    t->provider = otlp_dup(src->provider, OTLP_STR_MAX);
    t->route = otlp_dup(src->route, OTLP_ROUTE_MAX);
    t->prompt_version = otlp_dup(src->prompt_version, OTLP_STR_MAX);
    t->status = src->status;
    t->outcome = otlp_dup(src->outcome, OTLP_STR_MAX);
    t->started_unix_ms = src->started_unix_ms;
    t->queued_ms = src->queued_ms;
    t->connect_ms = src->connect_ms;
    t->ttft_ms = src->ttft_ms;
    t->llm_ms = src->llm_ms;
    t->tool_ms = src->tool_ms;
    t->render_ms = src->render_ms;
    t->total_ms = src->total_ms;
    t->overhead_ms = src->overhead_ms;
    t->prompt_tokens = src->prompt_tokens;
    t->cached_tokens = src->cached_tokens;
    t->cache_write_tokens = src->cache_write_tokens;
    t->completion_tokens = src->completion_tokens;
    t->cost_usd = src->cost_usd;
    t->attempts = src->attempts;
    t->cache_hit = src->cache_hit;
    t->stale = src->stale;
    if (json_is_array(src->tool_calls)) {
        size_t n = json_array_size(src->tool_calls);
        if (n > OTLP_TOOL_SPANS_MAX)
            n = OTLP_TOOL_SPANS_MAX;
        t->tool_calls = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *c = json_array_get(src->tool_calls, i);
            const char *name = json_string_value(json_object_get(c, "name"));
            json_t *ms = json_object_get(c, "ms");
            json_t *o = json_object();
            if (name != NULL) {
                json_t *jn = json_stringn(name, otlp_clip(name, OTLP_TOOL_NAME_MAX));
                if (jn != NULL)
                    json_object_set_new(o, "name", jn);
            }
            json_object_set_new(o, "ms", json_real(json_is_number(ms) ? json_number_value(ms) : 0));
            json_object_set_new(o, "is_error", json_boolean(json_is_true(json_object_get(c, "is_error"))));
            json_array_append_new(t->tool_calls, o);
        }
    }
    it->spans = otlp_span_count(t);
    return it;
}

/* ---------------------------------------------------------------- sending ---- */

static size_t otlp_on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    otlp_exporter_t *e = arg;
    size_t n = size * nmemb;
    if (e->response.len + n <= OTLP_RESPONSE_MAX)
        fig_buf_append(&e->response, data, n);
    return n;   /* beyond the cap: read and ignore */
}

static int otlp_on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    otlp_exporter_t *e = arg;
    int64_t abort_at = atomic_load(&e->abort_at_ms);
    return abort_at != 0 && otlp_now_ms() >= abort_at;   /* non-zero aborts the transfer */
}

/* Spans a 2xx answer says were rejected (OTLP partial success), 0 if none. */
static uint64_t otlp_rejected(const fig_buf_t *body)
{
    if (body->len == 0)
        return 0;
    json_t *root = json_loadb(body->data, body->len, 0, NULL);
    json_t *r = json_object_get(json_object_get(root, "partialSuccess"), "rejectedSpans");
    uint64_t n = 0;
    if (json_is_integer(r) && json_integer_value(r) > 0)
        n = (uint64_t)json_integer_value(r);
    else if (json_is_string(r)) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(json_string_value(r), &end, 10);
        if (errno == 0 && end != json_string_value(r) && *end == '\0')
            n = v;
    }
    json_decref(root);
    return n;
}

typedef enum { OTLP_SENT, OTLP_RETRYABLE, OTLP_REFUSED } otlp_result_t;

static otlp_result_t otlp_post(otlp_exporter_t *e, const char *body, size_t len, long timeout_ms,
                               uint64_t *rejected, char *why, size_t whylen)
{
    CURL *c = e->curl;
    fig_buf_reset(&e->response);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 2000 ? timeout_ms : 2000L);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(why, whylen, "%s", curl_easy_strerror(rc));
        return OTLP_RETRYABLE;
    }
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300) {
        *rejected = otlp_rejected(&e->response);
        return OTLP_SENT;
    }
    snprintf(why, whylen, "HTTP %ld", code);
    return code == 408 || code == 429 || code >= 500 ? OTLP_RETRYABLE : OTLP_REFUSED;
}

/* Time left for a POST: timeout_ms, or less when stopping. <= 0: no time. */
static long otlp_budget(otlp_exporter_t *e)
{
    int64_t abort_at = atomic_load(&e->abort_at_ms);
    if (abort_at == 0)
        return e->timeout_ms;
    int64_t left = abort_at - otlp_now_ms();
    return left < e->timeout_ms ? (long)left : e->timeout_ms;
}

static void otlp_batch_free(otlp_item_t *it)
{
    while (it != NULL) {
        otlp_item_t *next = it->next;
        otlp_item_free(it);
        it = next;
    }
}

static void otlp_send(otlp_exporter_t *e, otlp_item_t *batch)
{
    const trace_t *traces[OTLP_BATCH_MAX];
    size_t n = 0;
    uint64_t spans = 0;
    for (otlp_item_t *it = batch; it != NULL && n < OTLP_BATCH_MAX; it = it->next) {
        traces[n++] = &it->t;
        spans += it->spans;
    }
    json_t *doc = otlp_encode(traces, n, e->service_name);
    char *body = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(doc);

    otlp_result_t res = OTLP_RETRYABLE;
    uint64_t rejected = 0;
    char why[CURL_ERROR_SIZE + 32] = "no time left";
    for (int attempt = 0; attempt < 2 && body != NULL; attempt++) {
        long budget = otlp_budget(e);
        if (budget <= 0)
            break;
        if (attempt > 0) {
            if (budget <= OTLP_RETRY_MS)
                break;
            /* sleep, but wake early if otlp_stop() is called meanwhile */
            int64_t until = otlp_now_ms() + OTLP_RETRY_MS;
            struct timespec ts = otlp_abs_deadline(until);
            pthread_mutex_lock(&e->mu);
            while (!e->stopping && otlp_now_ms() < until)
                pthread_cond_timedwait(&e->cv, &e->mu, &ts);
            pthread_mutex_unlock(&e->mu);
            if ((budget = otlp_budget(e)) <= 0)
                break;
        }
        res = otlp_post(e, body, strlen(body), budget, &rejected, why, sizeof(why));
        if (res != OTLP_RETRYABLE)
            break;
    }
    free(body);

    if (res == OTLP_SENT) {
        if (rejected > spans)
            rejected = spans;
        atomic_fetch_add(&e->exported, spans - rejected);
        atomic_fetch_add(&e->dropped, rejected);
        if (e->failing)
            fprintf(stderr, "figment: otlp: exporting to %s again\n", e->endpoint);
        e->failing = 0;
    } else {
        atomic_fetch_add(&e->dropped, spans);
        if (!e->failing)   /* once per outage, not once per batch */
            fprintf(stderr, "figment: otlp: export to %s failed (%s); dropping spans until it recovers\n",
                    e->endpoint, why);
        e->failing = 1;
    }
    otlp_batch_free(batch);
}

/* Detaches up to OTLP_BATCH_MAX items from the queue. Under mu. */
static otlp_item_t *otlp_take(otlp_exporter_t *e)
{
    otlp_item_t *first = e->head, *last = NULL;
    int n = 0;
    for (otlp_item_t *it = first; it != NULL && n < OTLP_BATCH_MAX; it = it->next) {
        last = it;
        n++;
    }
    if (last == NULL)
        return NULL;
    e->head = last->next;
    if (e->head == NULL)
        e->tail = NULL;
    last->next = NULL;
    e->count -= n;
    atomic_store(&e->queued, e->count);
    return first;
}

static void *otlp_run(void *arg)
{
    fig_thread_setup("figment-otlp", FIG_NICE_BACKGROUND);
    otlp_exporter_t *e = arg;
    pthread_mutex_lock(&e->mu);
    int64_t next_flush = otlp_now_ms() + e->interval_ms;
    while (!e->stopping) {
        if (e->count < OTLP_BATCH_MAX && otlp_now_ms() < next_flush) {
            struct timespec ts = otlp_abs_deadline(next_flush);
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
            continue;
        }
        next_flush = otlp_now_ms() + e->interval_ms;
        otlp_item_t *batch = otlp_take(e);
        if (batch == NULL)
            continue;
        pthread_mutex_unlock(&e->mu);
        otlp_send(e, batch);
        pthread_mutex_lock(&e->mu);
    }
    /* stopping: flush within the deadline otlp_stop() set; the rest is dropped */
    otlp_item_t *batch;
    while ((batch = otlp_take(e)) != NULL) {
        pthread_mutex_unlock(&e->mu);
        otlp_send(e, batch);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ------------------------------------------------------------------- API ---- */

static void otlp_free(otlp_exporter_t *e)
{
    if (e->curl != NULL)
        curl_easy_cleanup(e->curl);
    curl_slist_free_all(e->headers);
    fig_buf_free(&e->response);
    free(e->endpoint);
    free(e->service_name);
    free(e);
}

otlp_exporter_t *otlp_start(const otlp_options_t *opts, fig_err_t *err)
{
    if (opts == NULL || opts->endpoint == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "otlp: no endpoint");
        return NULL;
    }
    size_t elen = strlen(opts->endpoint);
    if ((strncmp(opts->endpoint, "http://", 7) != 0 && strncmp(opts->endpoint, "https://", 8) != 0) ||
        elen > OTLP_ENDPOINT_MAX || strpbrk(opts->endpoint, " \t\r\n") != NULL) {
        fig_err_set(err, FIG_E_CONFIG, "otlp: endpoint must be an http:// or https:// URL (at most %d bytes), "
                    "e.g. http://127.0.0.1:4318/v1/traces", OTLP_ENDPOINT_MAX);
        return NULL;
    }
    int queue_max = opts->queue_max == 0 ? 2048 : opts->queue_max;
    int interval_ms = opts->interval_ms == 0 ? 1000 : opts->interval_ms;
    long timeout_ms = opts->timeout_ms == 0 ? 5000 : opts->timeout_ms;
    if (queue_max < 1 || queue_max > 1000000) {
        fig_err_set(err, FIG_E_CONFIG, "otlp: queue size %d out of range 1..1000000", queue_max);
        return NULL;
    }
    if (interval_ms < 10 || interval_ms > 60000) {
        fig_err_set(err, FIG_E_CONFIG, "otlp: interval %d ms out of range 10..60000", interval_ms);
        return NULL;
    }
    if (timeout_ms < 100 || timeout_ms > 60000) {
        fig_err_set(err, FIG_E_CONFIG, "otlp: timeout %ld ms out of range 100..60000", timeout_ms);
        return NULL;
    }
    const char *service = opts->service_name != NULL && opts->service_name[0] != '\0' ? opts->service_name : "figment";

    otlp_exporter_t *e = fig_calloc(1, sizeof(*e));
    e->endpoint = fig_strdup(opts->endpoint);
    e->service_name = fig_strndup(service, otlp_clip(service, OTLP_STR_MAX));
    e->queue_max = queue_max;
    e->interval_ms = interval_ms;
    e->timeout_ms = timeout_ms;
    atomic_init(&e->abort_at_ms, 0);
    atomic_init(&e->queued, 0);
    atomic_init(&e->exported, 0);
    atomic_init(&e->dropped, 0);

    e->curl = curl_easy_init();
    e->headers = curl_slist_append(NULL, "Content-Type: application/json");
    /* no "Expect: 100-continue" round trip before each batch */
    struct curl_slist *h = e->headers != NULL ? curl_slist_append(e->headers, "Expect:") : NULL;
    if (e->curl == NULL || h == NULL) {
        fig_err_set(err, FIG_E_IO, "otlp: cannot initialise libcurl");
        otlp_free(e);
        return NULL;
    }
    CURL *c = e->curl;
    curl_easy_setopt(c, CURLOPT_URL, e->endpoint);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "figment/" OTLP_VERSION);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, otlp_on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, e);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, otlp_on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, e);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);

    fig_cond_init_monotonic(&e->cv);
    pthread_mutex_init(&e->mu, NULL);
    int rc = pthread_create(&e->thread, NULL, otlp_run, e);
    if (rc != 0) {
        fig_err_set(err, FIG_E_IO, "otlp: cannot start the exporter thread: %s", strerror(rc));
        pthread_cond_destroy(&e->cv);
        pthread_mutex_destroy(&e->mu);
        otlp_free(e);
        return NULL;
    }
    return e;
}

void otlp_stop(otlp_exporter_t *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    e->stop_deadline_ms = otlp_now_ms() + e->timeout_ms;
    atomic_store(&e->abort_at_ms, e->stop_deadline_ms);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    otlp_free(e);
}

int otlp_submit(otlp_exporter_t *e, const trace_t *t)
{
    if (e == NULL || t == NULL)
        return -1;
    char id[33];
    if (otlp_hex_id(t->trace_id, 32, id) != 0 || otlp_hex_id(t->span_id, 16, id) != 0) {
        atomic_fetch_add(&e->dropped, 1);   /* nothing a collector would accept */
        return -1;
    }
    /* cheap early refusal so a dead collector costs no copying */
    if (atomic_load(&e->queued) >= e->queue_max) {
        atomic_fetch_add(&e->dropped, otlp_span_count(t));
        return -1;
    }
    otlp_item_t *it = otlp_item_copy(t);
    pthread_mutex_lock(&e->mu);
    if (e->count >= e->queue_max || e->stopping) {
        pthread_mutex_unlock(&e->mu);
        atomic_fetch_add(&e->dropped, it->spans);
        otlp_item_free(it);
        return -1;
    }
    if (e->tail != NULL)
        e->tail->next = it;
    else
        e->head = it;
    e->tail = it;
    e->count++;
    atomic_store(&e->queued, e->count);
    if (e->count == OTLP_BATCH_MAX)
        pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

uint64_t otlp_dropped(otlp_exporter_t *e)
{
    return e != NULL ? atomic_load(&e->dropped) : 0;
}

uint64_t otlp_exported(otlp_exporter_t *e)
{
    return e != NULL ? atomic_load(&e->exported) : 0;
}
