/*
 * test_otlp.c — the OTLP/JSON body for a known trace (ids, nanosecond strings, kinds,
 * gen_ai attributes, parents, nothing private), and the exporter against a tiny
 * in-process HTTP server on loopback: export, partial success, retry on 503, no retry
 * on 400, the queue bound when nothing listens, and a bounded stop when the collector
 * hangs.
 *
 * Traces are built on the stack here (not trace_new) so this test depends on otlp.c
 * alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "otlp.h"

#define TRACE_ID "0af7651916cd43dd8448eb211c80319c"
#define SPAN_ID "b7ad6b7169203331"
#define SESSION_ID "5f2c0d1e9a8b7c6d5e4f3a2b1c0d9e8f"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A trace with every field filled, including private content that must not leak. */
static void sample_trace(trace_t *t)
{
    memset(t, 0, sizeof(*t));
    strcpy(t->trace_id, TRACE_ID);
    strcpy(t->span_id, SPAN_ID);
    strcpy(t->session_id, SESSION_ID);
    t->app = strdup("mail");
    t->method = strdup("POST");
    t->path = strdup("/mail/message/12/unread?token=QUERYSECRET");
    t->route_rule = strdup("routing[0]");
    t->model = strdup("openai/gpt-4o-mini");
    t->provider = strdup("openai");
    t->route = strdup("openai/gpt-4o-mini: ok");
    t->prompt_version = strdup("9f86d081884c7d65");
    t->status = 200;
    t->outcome = strdup("ok");
    t->error = strdup("ERRORSECRET");
    t->started_unix_ms = 1700000000123;
    t->queued_ms = 2.5;
    t->connect_ms = 1.25;
    t->ttft_ms = 100;
    t->llm_ms = 250.25;
    t->tool_ms = 7.5;
    t->render_ms = 3;
    t->total_ms = 300;
    t->overhead_ms = 42.25;
    t->prompt_tokens = 1200;
    t->cached_tokens = 1000;
    t->cache_write_tokens = 0;
    t->completion_tokens = 80;
    t->cost_usd = 0.0012;
    t->attempts = 1;
    t->state = json_pack("{s:s}", "user", "STATESECRET");
    t->request = json_pack("{s:s, s:{s:s}}", "method", "POST", "form", "note", "FORMSECRET");
    t->tool_calls = json_pack("[{s:s, s:{s:s}, s:s, s:f, s:b}]", "name", "sql", "arguments", "query",
                              "SELECT SQLSECRET", "result", "RESULTSECRET", "ms", 7.5, "is_error", 0);
    t->messages = json_pack("[{s:s, s:s}]", "role", "user", "content", "PROMPTSECRET");
    t->answer = strdup("# ANSWERSECRET");
    t->page_html = strdup("<h1>HTMLSECRET</h1>");
}

static void free_trace(trace_t *t)
{
    free(t->app);
    free(t->method);
    free(t->path);
    free(t->route_rule);
    free(t->model);
    free(t->provider);
    free(t->route);
    free(t->prompt_version);
    free(t->outcome);
    free(t->error);
    json_decref(t->state);
    json_decref(t->request);
    json_decref(t->tool_calls);
    json_decref(t->messages);
    free(t->answer);
    free(t->page_html);
    memset(t, 0, sizeof(*t));
}

/* The value object of attribute `key`, or NULL. Fails if the key appears twice. */
static json_t *attr(json_t *attrs, const char *key)
{
    json_t *found = NULL;
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a) {
        if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0) {
            assert_null(found);
            found = json_object_get(a, "value");
            assert_int_equal(json_object_size(found), 1); /* exactly one typed member */
        }
    }
    return found;
}

static const char *attr_s(json_t *attrs, const char *key)
{
    json_t *v = attr(attrs, key);
    assert_non_null(v);
    const char *s = json_string_value(json_object_get(v, "stringValue"));
    assert_non_null(s);
    return s;
}

static const char *attr_i(json_t *attrs, const char *key)
{
    json_t *v = attr(attrs, key);
    assert_non_null(v);
    const char *s = json_string_value(json_object_get(v, "intValue")); /* int64 as a string */
    assert_non_null(s);
    return s;
}

static double attr_d(json_t *attrs, const char *key)
{
    json_t *v = attr(attrs, key);
    assert_non_null(v);
    json_t *d = json_object_get(v, "doubleValue");
    assert_true(json_is_real(d));
    return json_real_value(d);
}

static int attr_b(json_t *attrs, const char *key)
{
    json_t *v = attr(attrs, key);
    assert_non_null(v);
    json_t *b = json_object_get(v, "boolValue");
    assert_true(json_is_boolean(b));
    return json_is_true(b);
}

static int is_hex(const char *s, size_t n)
{
    if (s == NULL || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static json_t *spans_of(json_t *doc)
{
    json_t *rs = json_object_get(doc, "resourceSpans");
    assert_int_equal(json_array_size(rs), 1);
    json_t *ss = json_object_get(json_array_get(rs, 0), "scopeSpans");
    assert_int_equal(json_array_size(ss), 1);
    json_t *spans = json_object_get(json_array_get(ss, 0), "spans");
    assert_true(json_is_array(spans));
    return spans;
}

static void test_encode_known_trace(void **s)
{
    (void)s;
    trace_t t;
    sample_trace(&t);
    const trace_t *list[] = {&t};
    json_t *doc = otlp_encode(list, 1, NULL);
    assert_non_null(doc);

    json_t *rs0 = json_array_get(json_object_get(doc, "resourceSpans"), 0);
    json_t *res = json_object_get(json_object_get(rs0, "resource"), "attributes");
    assert_string_equal(attr_s(res, "service.name"), "figment");
    assert_string_equal(attr_s(res, "service.version"), "0.1.0");
    assert_string_equal(attr_s(res, "telemetry.sdk.name"), "figment");
    json_t *scope = json_object_get(json_array_get(json_object_get(rs0, "scopeSpans"), 0), "scope");
    assert_string_equal(json_string_value(json_object_get(scope, "name")), "figment");
    assert_string_equal(json_string_value(json_object_get(scope, "version")), "0.1.0");

    json_t *spans = spans_of(doc);
    assert_int_equal(json_array_size(spans), 3);
    json_t *root = json_array_get(spans, 0), *chat = json_array_get(spans, 1), *tool = json_array_get(spans, 2);

    /* root: the interaction, an HTTP server span */
    assert_string_equal(json_string_value(json_object_get(root, "traceId")), TRACE_ID);
    assert_string_equal(json_string_value(json_object_get(root, "spanId")), SPAN_ID);
    assert_null(json_object_get(root, "parentSpanId"));
    assert_string_equal(json_string_value(json_object_get(root, "name")), "POST /mail/*");
    assert_int_equal(json_integer_value(json_object_get(root, "kind")), 2);
    assert_string_equal(json_string_value(json_object_get(root, "startTimeUnixNano")), "1700000000123000000");
    assert_string_equal(json_string_value(json_object_get(root, "endTimeUnixNano")), "1700000000423000000");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "status"), "code")), 1);
    json_t *ra = json_object_get(root, "attributes");
    assert_string_equal(attr_s(ra, "http.request.method"), "POST");
    assert_string_equal(attr_s(ra, "url.path"), "/mail/message/12/unread");
    assert_string_equal(attr_s(ra, "http.route"), "/mail/*");
    assert_string_equal(attr_i(ra, "http.response.status_code"), "200");
    assert_string_equal(attr_s(ra, "figment.app"), "mail");
    assert_string_equal(attr_s(ra, "figment.outcome"), "ok");
    assert_float_equal(attr_d(ra, "figment.cost_usd"), 0.0012, 1e-12);
    assert_string_equal(attr_s(ra, "figment.route_rule"), "routing[0]");
    assert_string_equal(attr_s(ra, "figment.route"), "openai/gpt-4o-mini: ok");
    assert_string_equal(attr_s(ra, "figment.prompt_version"), "9f86d081884c7d65");
    char *hash = crypto_sha256_hex(SESSION_ID, strlen(SESSION_ID));
    hash[16] = '\0';
    assert_string_equal(attr_s(ra, "figment.session.hash"), hash);
    free(hash);
    assert_false(attr_b(ra, "figment.cache_hit"));
    assert_false(attr_b(ra, "figment.stale"));
    assert_float_equal(attr_d(ra, "figment.overhead_ms"), 42.25, 1e-9);
    assert_null(attr(ra, "error.type"));

    /* chat: the model time, a client span under the root */
    assert_string_equal(json_string_value(json_object_get(chat, "traceId")), TRACE_ID);
    const char *chat_id = json_string_value(json_object_get(chat, "spanId"));
    assert_true(is_hex(chat_id, 16));
    assert_string_not_equal(chat_id, SPAN_ID);
    assert_string_equal(json_string_value(json_object_get(chat, "parentSpanId")), SPAN_ID);
    assert_string_equal(json_string_value(json_object_get(chat, "name")), "chat gpt-4o-mini");
    assert_int_equal(json_integer_value(json_object_get(chat, "kind")), 3);
    assert_string_equal(json_string_value(json_object_get(chat, "startTimeUnixNano")), "1700000000125500000");
    assert_string_equal(json_string_value(json_object_get(chat, "endTimeUnixNano")), "1700000000375750000");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(chat, "status"), "code")), 1);
    json_t *ca = json_object_get(chat, "attributes");
    assert_string_equal(attr_s(ca, "gen_ai.operation.name"), "chat");
    assert_string_equal(attr_s(ca, "gen_ai.provider.name"), "openai");
    assert_string_equal(attr_s(ca, "gen_ai.request.model"), "gpt-4o-mini");
    assert_string_equal(attr_s(ca, "gen_ai.response.model"), "gpt-4o-mini");
    assert_string_equal(attr_i(ca, "gen_ai.usage.input_tokens"), "1200");
    assert_string_equal(attr_i(ca, "gen_ai.usage.output_tokens"), "80");
    assert_string_equal(attr_i(ca, "figment.usage.cached_input_tokens"), "1000");
    assert_string_equal(attr_i(ca, "figment.usage.cache_write_tokens"), "0");
    assert_float_equal(attr_d(ca, "figment.time_to_first_token_ms"), 100, 1e-9);
    assert_string_equal(attr_i(ca, "figment.attempts"), "1");

    /* tool: an internal span under the root, after the first token */
    const char *tool_id = json_string_value(json_object_get(tool, "spanId"));
    assert_true(is_hex(tool_id, 16));
    assert_string_not_equal(tool_id, chat_id);
    assert_string_not_equal(tool_id, SPAN_ID);
    assert_string_equal(json_string_value(json_object_get(tool, "parentSpanId")), SPAN_ID);
    assert_string_equal(json_string_value(json_object_get(tool, "name")), "execute_tool sql");
    assert_int_equal(json_integer_value(json_object_get(tool, "kind")), 1);
    assert_string_equal(json_string_value(json_object_get(tool, "startTimeUnixNano")), "1700000000225500000");
    assert_string_equal(json_string_value(json_object_get(tool, "endTimeUnixNano")), "1700000000233000000");
    json_t *ta = json_object_get(tool, "attributes");
    assert_string_equal(attr_s(ta, "gen_ai.operation.name"), "execute_tool");
    assert_string_equal(attr_s(ta, "gen_ai.tool.name"), "sql");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(tool, "status"), "code")), 1);

    /* nothing private leaves: no content, no query string, no raw session id */
    char *body = json_dumps(doc, JSON_COMPACT);
    const char *secrets[] = {"SECRET", SESSION_ID, "SELECT", "token="};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        assert_null(strstr(body, secrets[i]));
    free(body);

    /* encoding is a pure function: the same ids a second time (a retried batch) */
    json_t *again = otlp_encode(list, 1, "svc");
    json_t *spans2 = spans_of(again);
    assert_string_equal(json_string_value(json_object_get(json_array_get(spans2, 1), "spanId")), chat_id);
    json_t *res2 = json_object_get(json_object_get(json_array_get(json_object_get(again, "resourceSpans"), 0),
                                                   "resource"), "attributes");
    assert_string_equal(attr_s(res2, "service.name"), "svc");
    json_decref(again);
    json_decref(doc);
    free_trace(&t);
}

static void test_encode_errors_and_variants(void **s)
{
    (void)s;
    trace_t a, b, c, d;
    sample_trace(&a);   /* an upstream failure, anthropic, upper-case ids, a failed tool */
    strcpy(a.trace_id, "0AF7651916CD43DD8448EB211C80319C");
    a.status = 502;
    free(a.outcome);
    a.outcome = strdup("upstream");
    free(a.model);
    a.model = strdup("anthropic/claude-sonnet-4");
    free(a.provider);
    a.provider = NULL;  /* falls back to the model's provider part */
    json_object_set_new(json_array_get(a.tool_calls, 0), "is_error", json_true());
    json_array_append_new(a.tool_calls, json_pack("{s:s, s:i}", "name", "set_state", "ms", 2));

    sample_trace(&b);   /* a page cache hit: no model call, no tools */
    b.cache_hit = 1;
    b.attempts = 0;
    b.llm_ms = 0;
    json_array_clear(b.tool_calls);

    sample_trace(&c);   /* invalid ids: skipped */
    memset(c.trace_id, '0', 32);

    sample_trace(&d);   /* 404 before the model: not an error on a server span */
    d.status = 404;
    free(d.outcome);
    d.outcome = strdup("not_found");
    d.attempts = 0;
    d.llm_ms = 0;
    json_decref(d.tool_calls);
    d.tool_calls = NULL;

    const trace_t *list[] = {&a, &b, &c, &d};
    json_t *doc = otlp_encode(list, 4, "figment");
    json_t *spans = spans_of(doc);
    assert_int_equal(json_array_size(spans), 4 + 1 + 0 + 1);

    json_t *root = json_array_get(spans, 0);
    assert_string_equal(json_string_value(json_object_get(root, "traceId")), TRACE_ID); /* lower-cased */
    json_t *st = json_object_get(root, "status");
    assert_int_equal(json_integer_value(json_object_get(st, "code")), 2);
    assert_string_equal(json_string_value(json_object_get(st, "message")), "upstream");
    assert_string_equal(attr_s(json_object_get(root, "attributes"), "error.type"), "upstream");
    assert_string_equal(attr_i(json_object_get(root, "attributes"), "http.response.status_code"), "502");

    json_t *chat = json_array_get(spans, 1);
    assert_string_equal(json_string_value(json_object_get(chat, "name")), "chat claude-sonnet-4");
    json_t *ca = json_object_get(chat, "attributes");
    assert_string_equal(attr_s(ca, "gen_ai.provider.name"), "anthropic");
    assert_string_equal(attr_s(ca, "gen_ai.request.model"), "claude-sonnet-4");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(chat, "status"), "code")), 2);

    json_t *t1 = json_array_get(spans, 2), *t2 = json_array_get(spans, 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t1, "status"), "code")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t2, "status"), "code")), 1);
    assert_string_equal(attr_s(json_object_get(t2, "attributes"), "gen_ai.tool.name"), "set_state");
    assert_string_not_equal(json_string_value(json_object_get(t1, "spanId")),
                            json_string_value(json_object_get(t2, "spanId")));
    /* back to back: the second tool starts where the first ended */
    assert_string_equal(json_string_value(json_object_get(t1, "endTimeUnixNano")),
                        json_string_value(json_object_get(t2, "startTimeUnixNano")));

    json_t *cached = json_array_get(spans, 4);
    assert_int_equal(json_integer_value(json_object_get(cached, "kind")), 2);
    assert_true(attr_b(json_object_get(cached, "attributes"), "figment.cache_hit"));

    json_t *nf = json_array_get(spans, 5);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(nf, "status"), "code")), 1);
    assert_null(attr(json_object_get(nf, "attributes"), "error.type"));

    json_decref(doc);
    free_trace(&a);
    free_trace(&b);
    free_trace(&c);
    free_trace(&d);
}

static void test_start_rejects_bad_options(void **s)
{
    (void)s;
    fig_err_t err;
    otlp_options_t o = {.endpoint = "ftp://127.0.0.1/v1/traces"};
    assert_null(otlp_start(&o, &err));
    assert_int_equal(err.code, FIG_E_CONFIG);
    o.endpoint = NULL;
    assert_null(otlp_start(&o, &err));
    o = (otlp_options_t){.endpoint = "http://127.0.0.1:1/v1/traces", .queue_max = -1};
    assert_null(otlp_start(&o, &err));
    o = (otlp_options_t){.endpoint = "http://127.0.0.1:1/v1/traces", .interval_ms = 1};
    assert_null(otlp_start(&o, &err));
    o = (otlp_options_t){.endpoint = "http://127.0.0.1:1/v1/traces", .timeout_ms = 1000000};
    assert_null(otlp_start(&o, &err));
    o = (otlp_options_t){.endpoint = "http://127.0.0.1:1/v1 traces"};
    assert_null(otlp_start(&o, &err));
}

/* ---------- a tiny HTTP server on loopback: one request per connection ---------- */

typedef struct {
    int fd;
    int port;
    pthread_t thread;
    pthread_mutex_t mu;
    int status;             /* what to answer */
    const char *reply;      /* the body to answer */
    int hang;               /* accept, read, never answer */
    int requests;
    char *last_body;
    char last_headers[4096];
    atomic_int stop;
} srv_t;

static void *srv_run(void *arg)
{
    srv_t *sv = arg;
    while (!atomic_load(&sv->stop)) {
        int c = accept(sv->fd, NULL, NULL);
        if (c < 0)
            break;
        if (atomic_load(&sv->stop)) {
            close(c);
            break;
        }
        /* read the head, then Content-Length bytes */
        size_t cap = 1 << 20, len = 0;
        char *buf = malloc(cap + 1);
        char *body = NULL;
        long clen = -1;
        for (;;) {
            ssize_t n = read(c, buf + len, cap - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            buf[len] = '\0';
            char *eoh = strstr(buf, "\r\n\r\n");
            if (eoh != NULL && clen < 0) {
                char *cl = strcasestr(buf, "content-length:");
                clen = cl != NULL && cl < eoh ? strtol(cl + 15, NULL, 10) : 0;
                body = eoh + 4;
            }
            if (body != NULL && (long)(len - (size_t)(body - buf)) >= clen)
                break;
            if (len == cap)
                break;
        }
        pthread_mutex_lock(&sv->mu);
        sv->requests++;
        if (body != NULL) {
            free(sv->last_body);
            sv->last_body = strndup(body, (size_t)clen);
            snprintf(sv->last_headers, sizeof(sv->last_headers), "%.*s", (int)(body - buf), buf);
        }
        int status = sv->status, hang = sv->hang;
        const char *reply = sv->reply;
        pthread_mutex_unlock(&sv->mu);
        free(buf);
        if (hang) {
            /* hold the connection until the client gives up */
            char tmp[256];
            while (read(c, tmp, sizeof(tmp)) > 0)
                ;
        } else {
            char out[512];
            int n = snprintf(out, sizeof(out), "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", status, strlen(reply), reply);
            ssize_t w = write(c, out, (size_t)n);
            (void)w;
        }
        close(c);
    }
    return NULL;
}

static void srv_start(srv_t *sv, int status, const char *reply, int hang)
{
    memset(sv, 0, sizeof(*sv));
    sv->status = status;
    sv->reply = reply;
    sv->hang = hang;
    pthread_mutex_init(&sv->mu, NULL);
    sv->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(sv->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(sv->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(sv->fd, 64), 0);
    socklen_t al = sizeof(a);
    getsockname(sv->fd, (struct sockaddr *)&a, &al);
    sv->port = ntohs(a.sin_port);
    pthread_create(&sv->thread, NULL, srv_run, sv);
}

static void srv_stop(srv_t *sv)
{
    atomic_store(&sv->stop, 1);
    /* wake accept() with a connection of our own */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sv->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    connect(c, (struct sockaddr *)&a, sizeof(a));
    close(c);
    pthread_join(sv->thread, NULL);
    close(sv->fd);
    free(sv->last_body);
    pthread_mutex_destroy(&sv->mu);
}

static int srv_requests(srv_t *sv)
{
    pthread_mutex_lock(&sv->mu);
    int n = sv->requests;
    pthread_mutex_unlock(&sv->mu);
    return n;
}

static otlp_exporter_t *start_at(int port, int queue_max, int interval_ms, long timeout_ms)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", port);
    otlp_options_t o = {.endpoint = url, .queue_max = queue_max, .interval_ms = interval_ms,
                        .timeout_ms = timeout_ms};
    fig_err_t err;
    otlp_exporter_t *e = otlp_start(&o, &err);
    assert_non_null(e);
    return e;
}

/* Waits until exported + dropped reaches n (spans), up to ms. */
static void wait_settled(otlp_exporter_t *e, uint64_t n, int ms)
{
    int64_t end = now_ms() + ms;
    while (otlp_exported(e) + otlp_dropped(e) < n && now_ms() < end)
        usleep(5000);
}

static void test_export_posts_the_batch(void **s)
{
    (void)s;
    srv_t sv;
    srv_start(&sv, 200, "{}", 0);
    otlp_exporter_t *e = start_at(sv.port, 16, 20, 2000);
    trace_t t;
    sample_trace(&t);
    assert_int_equal(otlp_submit(e, &t), 0);
    free_trace(&t);   /* the caller frees right after: the exporter kept a copy */
    wait_settled(e, 3, 5000);
    assert_int_equal(otlp_exported(e), 3);
    assert_int_equal(otlp_dropped(e), 0);
    assert_int_equal(srv_requests(&sv), 1);

    pthread_mutex_lock(&sv.mu);
    assert_non_null(strcasestr(sv.last_headers, "POST /v1/traces HTTP/1.1"));
    assert_non_null(strcasestr(sv.last_headers, "content-type: application/json"));
    json_t *doc = json_loads(sv.last_body, 0, NULL);
    assert_null(strstr(sv.last_body, "SECRET"));
    pthread_mutex_unlock(&sv.mu);
    assert_non_null(doc);
    json_t *spans = spans_of(doc);
    assert_int_equal(json_array_size(spans), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(spans, 0), "traceId")), TRACE_ID);
    json_t *ca = json_object_get(json_array_get(spans, 1), "attributes");
    assert_string_equal(attr_s(ca, "gen_ai.request.model"), "gpt-4o-mini");
    assert_string_equal(attr_s(json_object_get(json_array_get(spans, 2), "attributes"), "gen_ai.tool.name"), "sql");
    json_decref(doc);

    /* a partial success counts the rejected spans as dropped */
    pthread_mutex_lock(&sv.mu);
    sv.reply = "{\"partialSuccess\":{\"rejectedSpans\":\"1\",\"errorMessage\":\"x\"}}";
    pthread_mutex_unlock(&sv.mu);
    sample_trace(&t);
    assert_int_equal(otlp_submit(e, &t), 0);
    free_trace(&t);
    wait_settled(e, 6, 5000);
    assert_int_equal(otlp_exported(e), 5);
    assert_int_equal(otlp_dropped(e), 1);
    otlp_stop(e);
    srv_stop(&sv);
}

static void test_retry_once_on_503_not_on_400(void **s)
{
    (void)s;
    srv_t sv;
    srv_start(&sv, 503, "{}", 0);
    otlp_exporter_t *e = start_at(sv.port, 16, 20, 2000);
    trace_t t;
    sample_trace(&t);
    int64_t t0 = now_ms();
    assert_int_equal(otlp_submit(e, &t), 0);
    wait_settled(e, 3, 5000);
    assert_int_equal(otlp_dropped(e), 3);
    assert_int_equal(otlp_exported(e), 0);
    assert_int_equal(srv_requests(&sv), 2);       /* the first try and one retry */
    assert_true(now_ms() - t0 >= 200);            /* after the backoff */

    pthread_mutex_lock(&sv.mu);
    sv.status = 400;
    pthread_mutex_unlock(&sv.mu);
    assert_int_equal(otlp_submit(e, &t), 0);
    wait_settled(e, 6, 5000);
    assert_int_equal(otlp_dropped(e), 6);
    usleep(300 * 1000);
    assert_int_equal(srv_requests(&sv), 3);       /* a refused body is not sent again */
    otlp_stop(e);
    free_trace(&t);
    srv_stop(&sv);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);  /* nothing listens there now */
    return ntohs(a.sin_port);
}

static void test_queue_bound_drops_when_nothing_listens(void **s)
{
    (void)s;
    const long timeout_ms = 1000;
    otlp_exporter_t *e = start_at(closed_port(), 4, 50, timeout_ms);
    trace_t t;
    sample_trace(&t);
    int refused = 0, n = 200;
    int64_t t0 = now_ms();
    for (int i = 0; i < n; i++)
        if (otlp_submit(e, &t) != 0)
            refused++;
    int64_t submit_ms = now_ms() - t0;
    assert_true(refused >= n - 8);   /* at most the queue (plus one batch taken) got in */
    assert_true(otlp_dropped(e) >= (uint64_t)refused * 3);
    assert_true(submit_ms < 1000);   /* submit never waits on the network */

    t0 = now_ms();
    otlp_stop(e);
    int64_t stop_ms = now_ms() - t0;
    /* otlp_stop frees e: read counters before. Every span was dropped one way or another. */
    assert_true(stop_ms < timeout_ms + 500);
    free_trace(&t);
}

static void test_counts_after_drain(void **s)
{
    (void)s;
    otlp_exporter_t *e = start_at(closed_port(), 4, 50, 1000);
    trace_t t;
    sample_trace(&t);
    for (int i = 0; i < 50; i++)
        otlp_submit(e, &t);
    wait_settled(e, 150, 5000);   /* failed batches are dropped after the retry */
    assert_int_equal(otlp_dropped(e), 150);
    assert_int_equal(otlp_exported(e), 0);
    otlp_stop(e);
    free_trace(&t);
}

static void test_stop_is_bounded_when_the_collector_hangs(void **s)
{
    (void)s;
    srv_t sv;
    srv_start(&sv, 200, "{}", 1);
    const long timeout_ms = 600;
    otlp_exporter_t *e = start_at(sv.port, 16, 20, timeout_ms);
    trace_t t;
    sample_trace(&t);
    assert_int_equal(otlp_submit(e, &t), 0);
    int64_t end = now_ms() + 3000;
    while (srv_requests(&sv) == 0 && now_ms() < end)
        usleep(2000);
    assert_int_equal(srv_requests(&sv), 1);
    /* another one queued behind the hung POST */
    assert_int_equal(otlp_submit(e, &t), 0);
    int64_t t0 = now_ms();
    otlp_stop(e);
    int64_t stop_ms = now_ms() - t0;
    assert_true(stop_ms <= timeout_ms + 400);
    free_trace(&t);
    srv_stop(&sv);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_known_trace),
        cmocka_unit_test(test_encode_errors_and_variants),
        cmocka_unit_test(test_start_rejects_bad_options),
        cmocka_unit_test(test_export_posts_the_batch),
        cmocka_unit_test(test_retry_once_on_503_not_on_400),
        cmocka_unit_test(test_queue_bound_drops_when_nothing_listens),
        cmocka_unit_test(test_counts_after_drain),
        cmocka_unit_test(test_stop_is_bounded_when_the_collector_hangs),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
