/*
 * http_front.c — the HTTP front of figment (see http_front.h).
 *
 * Routes, in order: /static/<file> (files loaded into memory at start), /_figment/health,
 * / (the gallery of apps), /<app> (redirect to /<app>/), /<app>/... (an interaction).
 * Everything else is a 404 page. Every response carries the same strict
 * Content-Security-Policy and security headers; app pages are never cached.
 *
 * An app request is checked completely before it costs anything: method, path
 * bytes, body size (per app), content type, form syntax, CSRF token (POST), and
 * that a model is configured. Only then does it become an interaction.
 */
#include "http_front.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <h2o.h>

#include "../tools/sandbox.h"
#include "../tools/tools.h"
#include "agent.h"
#include "app.h"
#include "breaker.h"
#include "budget.h"
#include "metrics.h"
#include "operator.h"
#include "page_cache.h"
#include "otlp.h"
#include "providers.h"
#include "trace.h"
#include "uploads.h"
#include "ratelimit.h"
#include "timer.h"
#include "buf.h"
#include "confirm.h"
#include "crypto.h"
#include "form.h"
#include "fsutil.h"
#include "interaction.h"
#include "render.h"
#include "session.h"
#include "session_cache.h"
#include "session_writer.h"
#include "worker.h"
#include "thread.h"

#define MAX_PATH_BYTES 2048
#define STATIC_MAX_FILE (2u << 20)
/* on SIGTERM, how long interactions already accepted may take to finish */
#define DRAIN_MS 10000
/* idle keep-alive connections to the model endpoint kept per loop thread */
#define UPSTREAM_IDLE_CONNECTIONS 16
/* run_code runs at once at most this many sandboxes; more wait in its queue */
#define SANDBOX_CONCURRENCY 2
/* a streamed page that has been silent this long gets a newline (disconnect probe) */
#define STREAM_BEAT_MS 1000

static const char CSP[] = "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; "
                          "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

typedef struct {
    char *name;
    char *content_type;
    char *etag;
    char *data;
    size_t len;
} static_file_t;

struct server {
    page_cache_t *page_cache; /* NULL when no app has cache.ttl_s */
    worker_pool_t *sandbox; /* run_code pool, NULL when no app runs code */
    const config_t *cfg;
    providers_config_t providers;
    breaker_t **breakers;            /* one per provider */
    ratelimiter_t *limit_session, *limit_ip, *limit_app;
    concurrency_cap_t *upstream_cap;
    budget_t *budget;
    session_cache_t *session_cache;
    session_writer_t *session_writer;
    trace_writer_t *traces;
    otlp_exporter_t *otlp;
    char *operator_token;
    app_list_t apps;
    app_runtime_t *runtimes; /* parallel to apps.items */
    worker_pool_t *workers;
    uint8_t key[SESSION_KEY_LEN];
    static_file_t *statics;
    size_t n_statics;
    h2o_globalconf_t globalconf;
    h2o_hostconf_t *hostconf;
    int listen_port;
    struct server_thread *threads;
    int nthreads;
};

typedef struct server_thread {
    h2o_multithread_receiver_t cache_receiver; /* page-cache wake-ups for this loop */
    server_t *srv;
    int index;
    pthread_t tid;
    int listen_fd;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    h2o_multithread_receiver_t receiver;
    timer_set_t *timers;
    agent_env_t env;
    operator_env_t operator_env;
    int kept_open; /* stopped with idle connections: its h2o context was not disposed */
} server_thread_t;

typedef struct {
    h2o_handler_t super;
    server_t *srv;
} front_handler_t;

static volatile sig_atomic_t stopping;
/* Thread records whose h2o context could not be disposed at shutdown (idle connections
 * were open), kept reachable until the process ends. */
static void *volatile retained_threads;

/* ---------- responses ---------- */

static void add_header(h2o_req_t *req, const h2o_token_t *token, const char *value)
{
    h2o_add_header(&req->pool, &req->res.headers, token, NULL, value, strlen(value));
}

static void add_header_str(h2o_req_t *req, const char *name, const char *value)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, value, strlen(value));
}

static void add_security_headers(h2o_req_t *req)
{
    add_header_str(req, "content-security-policy", CSP);
    add_header_str(req, "x-content-type-options", "nosniff");
    add_header_str(req, "x-frame-options", "DENY");
    add_header_str(req, "referrer-policy", "same-origin");
    add_header_str(req, "cross-origin-opener-policy", "same-origin");
    add_header_str(req, "cross-origin-resource-policy", "same-origin");
    add_header_str(req, "permissions-policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()");
}

static const char *reason_for(int status)
{
    switch (status) {
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    }
    return "Unknown";
}

/* Status and headers of every HTML answer: whole pages, streamed pages, cache hits. */
static void html_response_head(h2o_req_t *req, int status, const char *set_cookie)
{
    if (stopping) /* draining: this connection closes after the answer */
        req->http1_is_persistent = 0;
    req->res.status = status;
    req->res.reason = reason_for(status);
    add_header(req, H2O_TOKEN_CONTENT_TYPE, "text/html; charset=utf-8");
    add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
    add_security_headers(req);
    if (set_cookie != NULL)
        add_header(req, H2O_TOKEN_SET_COOKIE, set_cookie);
}

/* Sends a complete HTML document (copied into the request's pool). */
static void send_html(h2o_req_t *req, int status, const char *set_cookie, const char *html, size_t len)
{
    html_response_head(req, status, set_cookie);
    h2o_send_inline(req, html, len);
}

static void send_error_page(h2o_req_t *req, int status, const app_t *app, const char *heading, const char *message)
{
    fig_buf_t b = FIG_BUF_INIT;
    layout_opts_t lo = {app ? app->name : NULL, app ? app->title : NULL, heading};
    layout_error_page(&b, &lo, status, heading, message, NULL);
    send_html(req, status, NULL, b.data, b.len);
    fig_buf_free(&b);
}

/* ---------- progressive pages ----------
 *
 * A browser's interaction (Accept: text/html) gets its page as a stream: the shell
 * and a loading skeleton as soon as the session is known, then each finished block
 * of the model's page, sanitized on its own, then the tail. The status is 200 from
 * the first byte, so a failure after that is told inside the page. Programs that do
 * not ask for HTML get one complete response with the real status.
 *
 * h2o allows one h2o_send() in flight and none from inside curl's callbacks (model
 * text arrives there), so writes go to `pending` and are flushed from a timer or when
 * h2o asks for more (proceed). */
typedef struct page_stream {
    h2o_generator_t super;
    h2o_req_t *req;
    interaction_t *ix;      /* a reference, released on dispose */
    timer_set_t *timers;
    fig_timer_t flush_timer;
    fig_timer_t beat_timer; /* a newline now and then while the model is silent */
    int wrote_since_beat;
    fig_buf_t pending;      /* written, not yet handed to h2o */
    fig_buf_t sending;      /* handed to h2o, valid until proceed */
    int in_flight;
    int want_final;
    int done;
} page_stream_t;

static void stream_flush(page_stream_t *s)
{
    if (s->in_flight || s->done || (s->pending.len == 0 && !s->want_final))
        return;
    fig_buf_t t = s->sending;
    s->sending = s->pending;
    s->pending = t;
    fig_buf_reset(&s->pending);
    s->in_flight = 1;
    int final = s->want_final;
    if (final)
        s->done = 1;
    h2o_iovec_t v = h2o_iovec_init(s->sending.data ? s->sending.data : "", s->sending.len);
    h2o_send(s->req, &v, 1, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void stream_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)req;
    page_stream_t *s = (page_stream_t *)gen;
    s->in_flight = 0;
    fig_buf_reset(&s->sending);
    stream_flush(s);
}

static void stream_on_timer(fig_timer_t *t)
{
    page_stream_t *s = H2O_STRUCT_FROM_MEMBER(page_stream_t, flush_timer, t);
    stream_flush(s);
}

/* HTTP/1 shows a closed client only on a write: while the model thinks, a newline
 * (harmless inside <main>) each second lets figment notice and cancel the model call. */
static void stream_on_beat(fig_timer_t *t)
{
    page_stream_t *s = H2O_STRUCT_FROM_MEMBER(page_stream_t, beat_timer, t);
    if (s->want_final || s->done)
        return;
    if (!s->wrote_since_beat) {
        fig_buf_append(&s->pending, "\n", 1);
        stream_flush(s);
    }
    s->wrote_since_beat = 0;
    fig_timer_start(s->timers, &s->beat_timer, STREAM_BEAT_MS);
}

static void stream_dispose(void *p)
{
    page_stream_t *s = p;
    fig_timer_stop(s->timers, &s->flush_timer);
    fig_timer_stop(s->timers, &s->beat_timer);
    if (s->ix->stream == s)
        s->ix->stream = NULL;
    fig_buf_free(&s->pending);
    fig_buf_free(&s->sending);
    interaction_unref(s->ix);
}

static void add_interaction_headers(h2o_req_t *req, interaction_t *ix)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-trace-id"), 0, NULL, ix->trace_id,
                          strlen(ix->trace_id));
}

/* The agent's call once the session is known: start the page if the client wants a stream. */
static void stream_begin(interaction_t *ix)
{
    h2o_req_t *req = ix->req;
    if (req == NULL || !ix->stream_wanted || ix->stream != NULL)
        return;
    server_thread_t *th = H2O_STRUCT_FROM_MEMBER(server_thread_t, env, ix->env);
    page_stream_t *s = h2o_mem_alloc_shared(&req->pool, sizeof(*s), stream_dispose);
    memset(s, 0, sizeof(*s));
    s->super.proceed = stream_proceed;
    s->req = req;
    s->ix = ix;
    interaction_ref(ix);
    s->timers = th->timers;
    s->flush_timer.cb = stream_on_timer;
    s->beat_timer.cb = stream_on_beat;
    fig_timer_start(s->timers, &s->beat_timer, STREAM_BEAT_MS);
    ix->stream = s;
    html_response_head(req, 200, ix->new_session ? ix->set_cookie : NULL);
    add_interaction_headers(req, ix);
    h2o_start_response(req, &s->super);
    layout_opts_t lo = {ix->rt->app->name, ix->rt->app->title, NULL};
    layout_stream_head(&s->pending, &lo);
    stream_flush(s);
}

/* Page bytes from the agent; from_callback: called inside curl (flush later). */
static void stream_write(interaction_t *ix, const char *data, size_t len, int from_callback)
{
    page_stream_t *s = ix->stream;
    if (s == NULL || ix->req == NULL || s->want_final)
        return;
    fig_buf_append(&s->pending, data, len);
    s->wrote_since_beat = 1;
    if (from_callback)
        fig_timer_start(s->timers, &s->flush_timer, 0);
    else
        stream_flush(s);
}

/* The agent's way back to the browser. */
static void respond_interaction(interaction_t *ix, int status)
{
    h2o_req_t *req = ix->req;
    if (req == NULL)
        return;
    if (ix->stream != NULL) { /* ix->page is the rest of the body */
        page_stream_t *s = ix->stream;
        fig_buf_append(&s->pending, ix->page.data ? ix->page.data : "", ix->page.len);
        layout_stream_tail(&s->pending);
        s->want_final = 1;
        ix->req = NULL;
        fig_timer_stop(s->timers, &s->flush_timer);
        fig_timer_stop(s->timers, &s->beat_timer);
        stream_flush(s);
        return;
    }
    ix->req = NULL; /* exactly one response */
    add_interaction_headers(req, ix);
    if (ix->rec.cache_hit && ix->cache_entry != NULL) { /* the cached document with this session's token */
        html_response_head(req, 200, ix->new_session ? ix->set_cookie : NULL);
        add_header_str(req, PAGE_CACHE_HEADER, "hit");
        size_t n = 0;
        h2o_iovec_t *iov = page_cache_entry_iov_pool(ix->cache_entry, ix->csrf_token, strlen(ix->csrf_token),
                                                     &req->pool, &n);
        req->res.content_length = page_cache_entry_body_len(ix->cache_entry, strlen(ix->csrf_token));
        static h2o_generator_t none = {NULL, NULL};
        h2o_start_response(req, &none);
        h2o_send(req, iov, n, H2O_SEND_STATE_FINAL);
        return;
    }
    send_html(req, status, ix->new_session ? ix->set_cookie : NULL, ix->page.data ? ix->page.data : "",
              ix->page.len);
}

/* ---------- static files and the gallery ---------- */

static const char *content_type_for(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL)
        return "application/octet-stream";
    if (strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
    if (strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".svg") == 0) return "image/svg+xml";
    if (strcmp(dot, ".png") == 0) return "image/png";
    if (strcmp(dot, ".ico") == 0) return "image/x-icon";
    if (strcmp(dot, ".txt") == 0) return "text/plain; charset=utf-8";
    return "application/octet-stream";
}

static int load_statics(server_t *srv, const char *dir, fig_err_t *err)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fig_err_set(err, FIG_E_CONFIG, "%s: cannot open the static folder: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        fig_buf_t path = FIG_BUF_INIT;
        fig_buf_appendf(&path, "%s/%s", dir, de->d_name);
        struct stat st;
        FILE *f = NULL;
        if (stat(path.data, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > STATIC_MAX_FILE ||
            (f = fopen(path.data, "rb")) == NULL) {
            fig_buf_free(&path);
            continue;
        }
        static_file_t sf = {0};
        sf.len = (size_t)st.st_size;
        sf.data = fig_malloc(sf.len + 1);
        sf.len = fread(sf.data, 1, sf.len, f);
        fclose(f);
        sf.name = fig_strdup(de->d_name);
        sf.content_type = fig_strdup(content_type_for(de->d_name));
        char *hex = crypto_sha256_hex(sf.data, sf.len);
        fig_buf_t etag = FIG_BUF_INIT;
        fig_buf_appendf(&etag, "\"%.16s\"", hex);
        free(hex);
        sf.etag = fig_buf_steal(&etag);
        srv->statics = fig_realloc(srv->statics, (srv->n_statics + 1) * sizeof(*srv->statics));
        srv->statics[srv->n_statics++] = sf;
        fig_buf_free(&path);
    }
    closedir(d);
    return 0;
}

static void serve_static(server_t *srv, h2o_req_t *req, const char *name, size_t len)
{
    for (size_t i = 0; i < srv->n_statics; i++) {
        static_file_t *sf = &srv->statics[i];
        if (strlen(sf->name) != len || memcmp(sf->name, name, len) != 0)
            continue;
        add_security_headers(req);
        add_header(req, H2O_TOKEN_ETAG, sf->etag);
        add_header(req, H2O_TOKEN_CACHE_CONTROL, "public, max-age=300");
        ssize_t inm = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
        if (inm >= 0 && h2o_memis(req->headers.entries[inm].value.base, req->headers.entries[inm].value.len,
                                  sf->etag, strlen(sf->etag))) {
            req->res.status = 304;
            req->res.reason = reason_for(304);
            h2o_send_inline(req, "", 0);
            return;
        }
        req->res.status = 200;
        req->res.reason = "OK";
        add_header(req, H2O_TOKEN_CONTENT_TYPE, sf->content_type);
        h2o_send_inline(req, sf->data, sf->len);
        return;
    }
    send_error_page(req, 404, NULL, "Not found", "There is no such file.");
}

static void serve_gallery(server_t *srv, h2o_req_t *req)
{
    fig_buf_t body = FIG_BUF_INIT;
    fig_buf_append_str(&body, "<h1>Apps</h1>\n");
    if (!srv->providers.configured)
        fig_buf_append_str(&body, "<p class=\"danger\">No language model is configured: app pages will answer "
                                  "503 until OPENAI_API_KEY or OPENAI_BASE_URL is set (or figment.json names "
                                  "providers).</p>\n");
    fig_buf_append_str(&body, "<ul class=\"gallery\">\n");
    for (size_t i = 0; i < srv->apps.count; i++) {
        const app_t *a = srv->apps.items[i];
        fig_buf_appendf(&body, "<li class=\"card\"><h2><a href=\"/%s/\">", a->name);
        fig_buf_append_html(&body, a->title, strlen(a->title));
        fig_buf_append_str(&body, "</a></h2><p>");
        fig_buf_append_html(&body, a->description, strlen(a->description));
        fig_buf_append_str(&body, "</p></li>\n");
    }
    fig_buf_append_str(&body, "</ul>\n");
    fig_buf_t page = FIG_BUF_INIT;
    layout_opts_t lo = {NULL, NULL, "figment apps"};
    layout_page(&page, &lo, body.data, body.len);
    send_html(req, 200, NULL, page.data, page.len);
    fig_buf_free(&body);
    fig_buf_free(&page);
}

/* ---------- app requests ---------- */

static void on_interaction_req_dispose(void *p)
{
    interaction_t *ix = *(interaction_t **)p;
    if (ix->req != NULL && ix->rec.status == 0) {
        ix->rec.outcome = "client_gone";
    }
    agent_abandon(ix);
    interaction_unref(ix);
}

static char *header_value(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    if (i < 0)
        return NULL;
    return fig_strndup(req->headers.entries[i].value.base, req->headers.entries[i].value.len);
}

static int path_is_clean(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/* The client's address as a rate-limit key (no port). */
static const char *peer_key(h2o_req_t *req)
{
    static __thread char buf[INET6_ADDRSTRLEN];
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    buf[0] = '\0';
    if (len > 0 && ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, sizeof(buf));
    else if (len > 0 && ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, sizeof(buf));
    return buf;
}

/* Takes a token from the limiter for key; when there is none, answers 429 with
 * Retry-After and a page that says so, and returns 1. */
static int rate_limited(server_thread_t *th, h2o_req_t *req, const app_t *app, const char *what,
                        ratelimiter_t *rl, const char *key)
{
    int64_t wait_ms = ratelimiter_take(rl, key, strlen(key), h2o_now(th->loop));
    if (wait_ms <= 0)
        return 0;
    char secs[32];
    snprintf(secs, sizeof(secs), "%lld", (long long)((wait_ms + 999) / 1000));
    char *retry = h2o_mem_alloc_pool(&req->pool, strlen(secs) + 1);
    memcpy(retry, secs, strlen(secs) + 1);
    add_header(req, H2O_TOKEN_RETRY_AFTER, retry);
    fig_buf_t msg = FIG_BUF_INIT;
    fig_buf_appendf(&msg, "Too many requests from %s. Wait %s second%s, then reload the page.",
                    strcmp(what, "session") == 0 ? "this browser session"
                    : strcmp(what, "ip") == 0   ? "your address"
                                                : "all users of this app",
                    secs, strcmp(secs, "1") == 0 ? "" : "s");
    send_error_page(req, 429, app, "Slow down", msg.data);
    fig_buf_free(&msg);
    return 1;
}

static void serve_app(server_thread_t *th, const app_runtime_t *rt, h2o_req_t *req)
{
    server_t *srv = th->srv;
    const app_t *app = rt->app;
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                 h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if (!is_get && !is_post) {
        add_header(req, H2O_TOKEN_ALLOW, "GET, HEAD, POST");
        send_error_page(req, 405, app, "Method not allowed", "App pages answer GET and POST only.");
        return;
    }
    if (!srv->providers.configured) {
        send_error_page(req, 503, app, "No language model is configured",
                        "figment generates this app's pages with a language model, and none is configured. "
                        "Set OPENAI_API_KEY (and, for a local server such as Ollama, llama.cpp or vLLM, "
                        "OPENAI_BASE_URL; optionally FIGMENT_MODEL) or ANTHROPIC_API_KEY, or describe your "
                        "providers in figment.json, then restart figment.");
        return;
    }
    if (rate_limited(th, req, app, "ip", srv->limit_ip, peer_key(req)) ||
        rate_limited(th, req, app, "app", srv->limit_app, app->name))
        return;
    if (req->entity.base != NULL && req->entity.len > (size_t)app->limits.max_body_bytes) {
        send_error_page(req, 413, app, "Too much data", "The form you sent is larger than this app accepts.");
        return;
    }

    fig_err_t err;
    fig_err_clear(&err);
    json_t *query = NULL, *form = NULL;
    form_files_t files = {0};
    const char *qs = req->query_at != SIZE_MAX ? req->path.base + req->query_at + 1 : NULL;
    size_t qs_len = qs ? req->path.len - req->query_at - 1 : 0;
    query = qs ? form_parse_urlencoded(qs, qs_len, &err) : json_object();
    if (query == NULL) {
        send_error_page(req, 400, app, "Bad request", err.msg);
        return;
    }

    /* the session: a verified cookie or a fresh id */
    char sid[SESSION_ID_LEN + 1];
    int new_session = 1;
    char *cookie_header = header_value(req, H2O_TOKEN_COOKIE);
    if (cookie_header != NULL) {
        char *v = form_cookie_get(cookie_header, strlen(cookie_header), SESSION_COOKIE_NAME);
        if (v != NULL && session_cookie_verify(srv->key, v, strlen(v), sid) == 0)
            new_session = 0;
        free(v);
        free(cookie_header);
    }
    if (new_session) {
        session_new_id(sid);
    } else if (rate_limited(th, req, app, "session", srv->limit_session, sid)) {
        json_decref(query);
        return;
    }

    if (is_post) {
        char *ct = header_value(req, H2O_TOKEN_CONTENT_TYPE);
        const char *body = req->entity.base ? req->entity.base : "";
        size_t body_len = req->entity.base ? req->entity.len : 0;
        if (ct != NULL && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0)
            form = form_parse_urlencoded(body, body_len, &err);
        else if (ct != NULL && strncasecmp(ct, "multipart/form-data", 19) == 0)
            form = form_parse_multipart_files(body, body_len, ct, &files, &err);
        else
            fig_err_set(&err, FIG_E_INVALID, "unsupported content type");
        free(ct);
        if (form == NULL) {
            json_decref(query);
            if (err.code == FIG_E_INVALID && strcmp(err.msg, "unsupported content type") == 0)
                send_error_page(req, 415, app, "Unsupported form encoding",
                                "Forms must be sent as application/x-www-form-urlencoded or multipart/form-data.");
            else
                send_error_page(req, 400, app, "Bad request", err.msg);
            return;
        }
        const char *token = json_string_value(json_object_get(form, "_csrf"));
        if (new_session || token == NULL || !session_csrf_check(srv->key, sid, token, strlen(token))) {
            json_decref(query);
            json_decref(form);
            send_error_page(req, 403, app, "This form has expired",
                            "figment could not verify that this form came from this app in your session "
                            "(it may be old, or your session has changed). Go back, reload the page and try again.");
            return;
        }
        json_object_del(form, "_csrf");
        /* files: refused early when the app takes none or one is too big */
        const char *refusal = NULL;
        for (size_t i = 0; i < files.count && refusal == NULL; i++)
            if (app->max_upload_bytes == 0)
                refusal = "This app does not accept files.";
            else if (files.items[i].size > (size_t)app->max_upload_bytes)
                refusal = "too big";
        if (refusal != NULL) {
            fig_buf_t msg = FIG_BUF_INIT;
            if (strcmp(refusal, "too big") == 0)
                fig_buf_appendf(&msg, "A file you sent is larger than this app accepts (%ld bytes at most).",
                                app->max_upload_bytes);
            else
                fig_buf_append_str(&msg, refusal);
            json_decref(query);
            json_decref(form);
            form_files_free(&files);
            send_error_page(req, 413, app, "File not accepted", msg.data);
            fig_buf_free(&msg);
            return;
        }
    } else {
        form = json_object();
    }

    /* /<app>/_confirm/<id>: the user's answer to figment's confirmation page */
    char confirm_id[CONFIRM_ID_LEN + 1] = "";
    int confirm_accept = 0;
    {
        char *npath = fig_strndup(req->path_normalized.base, req->path_normalized.len);
        int parsed = confirm_path_parse(app->name, npath, confirm_id);
        free(npath);
        if (parsed != 0) {
            const char *decision = json_string_value(json_object_get(form, "decision"));
            const char *problem = NULL;
            int status = 400;
            if (parsed < 0) {
                status = 404;
                problem = "There is no such confirmation. Go back to the app and try again.";
            } else if (!is_post) {
                status = 405;
                problem = "A confirmation is answered with the Confirm or Cancel button on its page.";
            } else if (decision == NULL || (strcmp(decision, "confirm") != 0 && strcmp(decision, "cancel") != 0)) {
                problem = "The answer must be decision=confirm or decision=cancel.";
            }
            if (problem != NULL) {
                json_decref(query);
                json_decref(form);
                form_files_free(&files);
                if (status == 405)
                    add_header(req, H2O_TOKEN_ALLOW, "POST");
                send_error_page(req, status, app, status == 404 ? "Not found" : "Bad request", problem);
                return;
            }
            confirm_accept = strcmp(decision, "confirm") == 0;
        }
    }

    if (!concurrency_cap_try_acquire(srv->upstream_cap)) {
        json_decref(query);
        json_decref(form);
        form_files_free(&files);
        add_header(req, H2O_TOKEN_RETRY_AFTER, "1");
        send_error_page(req, 429, app, "figment is busy",
                        "Too many pages are being generated right now. Wait a moment and reload.");
        return;
    }
    interaction_t *ix = interaction_new(&th->env, rt, req);
    ix->holds_upstream_slot = 1;
    ix->method = fig_strdup(is_post ? "POST" : "GET");
    ix->path = fig_strndup(req->path_normalized.base, req->path_normalized.len);
    ix->url = fig_strndup(req->path.base, req->path.len);
    ix->query = query;
    ix->form = form;
    ix->csrf_token = session_csrf_token(srv->key, sid);
    ix->new_session = new_session;
    memcpy(ix->session.id, sid, sizeof(sid));
    if (new_session) {
        char *v = session_cookie_sign(srv->key, sid);
        fig_buf_t c = FIG_BUF_INIT;
        fig_buf_appendf(&c, "%s=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000", SESSION_COOKIE_NAME, v);
        free(v);
        ix->set_cookie = fig_buf_steal(&c);
    }
    memcpy(ix->confirm_id, confirm_id, sizeof(confirm_id));
    if (files.count > 0) { /* copied: the worker stores them, maybe after the client left */
        ix->upload_files = fig_calloc(files.count, sizeof(*ix->upload_files));
        for (size_t i = 0; i < files.count; i++) {
            interaction_upload_t *u = &ix->upload_files[i];
            u->filename = fig_strdup(files.items[i].filename ? files.items[i].filename : "upload");
            u->content_type = fig_strdup(files.items[i].content_type ? files.items[i].content_type : "");
            u->data = fig_strndup(files.items[i].data, files.items[i].size);
            u->len = files.items[i].size;
        }
        ix->n_upload_files = files.count;
    }
    form_files_free(&files);
    if (app->max_upload_bytes > 0 || app->run_code.enabled)
        ix->upload_dir = uploads_dir(srv->cfg->var_dir, app->name, sid);
    {
        /* browsers ask for HTML and get the page progressively; HEAD gets headers only */
        char *accept = header_value(req, H2O_TOKEN_ACCEPT);
        ix->stream_wanted = accept != NULL && strstr(accept, "text/html") != NULL &&
                            !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
        free(accept);
    }
    ix->confirm_accept = confirm_accept;
    interaction_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), on_interaction_req_dispose);
    *slot = ix;
    interaction_ref(ix); /* the request's reference (released by the dispose above) */
    agent_start(ix);
    interaction_unref(ix);
}

/* /metrics: Prometheus text, for scrapers that send the operator token
 * ("Authorization: Bearer TOKEN"): the figures name apps, models and spending. */
static void serve_metrics(server_t *srv, h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    size_t tlen = strlen(srv->operator_token);
    int ok = 0;
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        ok = v.len == 7 + tlen && strncasecmp(v.base, "Bearer ", 7) == 0 &&
             crypto_equal(v.base + 7, srv->operator_token, tlen);
    }
    if (!ok) {
        add_header(req, H2O_TOKEN_WWW_AUTHENTICATE, "Bearer realm=\"figment\"");
        send_error_page(req, 401, NULL, "Token required",
                        "/metrics needs the operator token: send \"Authorization: Bearer TOKEN\".");
        return;
    }
    fig_buf_t out = FIG_BUF_INIT;
    metrics_render(&out);
    req->res.status = 200;
    req->res.reason = "OK";
    add_header(req, H2O_TOKEN_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
    add_security_headers(req);
    h2o_send_inline(req, out.data, out.len);
    fig_buf_free(&out);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    front_handler_t *h = (front_handler_t *)self;
    server_t *srv = h->srv;
    server_thread_t *th = H2O_STRUCT_FROM_MEMBER(server_thread_t, ctx, req->conn->ctx);
    const char *p = req->path_normalized.base;
    size_t len = req->path_normalized.len;

    if (req->path.len > MAX_PATH_BYTES) {
        send_error_page(req, 414, NULL, "Address too long", "The address you asked for is too long.");
        return 0;
    }
    if (!path_is_clean(req->path.base, req->path.len)) {
        send_error_page(req, 400, NULL, "Bad request", "The address contains control characters.");
        return 0;
    }
    if (len >= 8 && memcmp(p, "/static/", 8) == 0) {
        serve_static(srv, req, p + 8, len - 8);
        return 0;
    }
    if (h2o_memis(p, len, H2O_STRLIT("/metrics"))) {
        serve_metrics(srv, req);
        return 0;
    }
    if (len >= 10 && memcmp(p, "/_figment/", 10) == 0 && !h2o_memis(p, len, H2O_STRLIT("/_figment/health"))) {
        operator_handle(&th->operator_env, req);
        return 0;
    }
    if (h2o_memis(p, len, H2O_STRLIT("/_figment/health"))) {
        req->res.status = 200;
        req->res.reason = "OK";
        add_header(req, H2O_TOKEN_CONTENT_TYPE, "text/plain; charset=utf-8");
        add_security_headers(req);
        h2o_send_inline(req, H2O_STRLIT("ok\n"));
        return 0;
    }
    if (len == 1) {
        serve_gallery(srv, req);
        return 0;
    }
    /* /<app> or /<app>/... */
    const char *name = p + 1;
    const char *slash = memchr(name, '/', len - 1);
    size_t name_len = slash ? (size_t)(slash - name) : len - 1;
    const app_t *app = apps_find(&srv->apps, name, name_len);
    if (app == NULL) {
        send_error_page(req, 404, NULL, "Not found",
                        "There is no app at this address. The list of apps is at the start page.");
        return 0;
    }
    const app_runtime_t *rt = NULL;
    for (size_t i = 0; i < srv->apps.count; i++)
        if (srv->apps.items[i] == app)
            rt = &srv->runtimes[i];
    if (slash == NULL) {
        fig_buf_t loc = FIG_BUF_INIT;
        fig_buf_appendf(&loc, "/%s/", app->name);
        add_security_headers(req);
        h2o_send_redirect(req, 301, "Moved Permanently", loc.data, loc.len);
        fig_buf_free(&loc);
        return 0;
    }
    serve_app(th, rt, req);
    return 0;
}

/* ---------- set-up, threads, shutdown ---------- */

/* The byte-stable prompt prefix of an app (docs/ARCHITECTURE.md, "The interaction contract"). */
static char *build_system_prompt(const char *system_md, const app_t *app)
{
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, system_md);
    fig_buf_appendf(&b, "\n\n# App: %s (/%s/)\n\n", app->title, app->name);
    fig_buf_append_str(&b, app->prompt_md);
    fig_buf_append_str(&b, "\n\n# Database schema\n\n");
    fig_buf_append_str(&b, app->schema_text && *app->schema_text ? app->schema_text : "(no tables)\n");
    return fig_buf_steal(&b);
}

/* Resolves "provider/model" names into a chain; errors name the app and the model. */
static int resolve_chain(const providers_config_t *pc, const app_t *app, const char *where, char **names,
                         size_t n, model_chain_t *out, fig_err_t *err)
{
    out->models = fig_calloc(n ? n : 1, sizeof(model_ref_t));
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        fig_err_t e;
        fig_err_clear(&e);
        if (providers_resolve(pc, names[i], &out->models[out->n], &e) != 0) {
            fig_err_set(err, FIG_E_CONFIG, "%s/app.json: %s[%zu]: %s", app->dir, where, i, e.msg);
            return -1;
        }
        out->n++;
    }
    return 0;
}

/* The app's default chain: app.json "models", else "model" on the first default
 * provider, else the providers' default_models. */
static int app_chains(server_t *srv, app_runtime_t *rt, fig_err_t *err)
{
    const app_t *app = rt->app;
    const providers_config_t *pc = &srv->providers;
    if (app->n_models > 0) {
        if (resolve_chain(pc, app, "models", app->models, app->n_models, &rt->chain, err) != 0)
            return -1;
    } else if (app->model != NULL && pc->n_default_models > 0) {
        fig_buf_t spec = FIG_BUF_INIT;
        fig_buf_appendf(&spec, "%s/%s", pc->default_models[0].provider->name, app->model);
        char *names[1] = {spec.data};
        int rc = resolve_chain(pc, app, "model", names, 1, &rt->chain, err);
        fig_buf_free(&spec);
        if (rc != 0)
            return -1;
    } else {
        rt->chain.models = fig_calloc(pc->n_default_models ? pc->n_default_models : 1, sizeof(model_ref_t));
        if (pc->n_default_models > 0)
            memcpy(rt->chain.models, pc->default_models, pc->n_default_models * sizeof(model_ref_t));
        rt->chain.n = pc->n_default_models;
    }
    rt->route_chains = fig_calloc(app->n_routes ? app->n_routes : 1, sizeof(model_chain_t));
    for (size_t i = 0; i < app->n_routes; i++) {
        char where[48];
        snprintf(where, sizeof(where), "routing[%zu].models", i);
        if (resolve_chain(pc, app, where, app->routes[i].models, app->routes[i].n_models, &rt->route_chains[i],
                          err) != 0)
            return -1;
    }
    return 0;
}

static void seed_app_budget(void *ctx, const char *app, double usd)
{
    server_t *srv = ctx;
    time_t now = time(NULL);
    budget_seed_app(srv->budget, app, usd, now);
}

static int open_listener(const char *host, int port, fig_err_t *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        fig_err_set(err, FIG_E_CONFIG, "--listen: cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        fig_err_set(err, FIG_E_IO, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    freeaddrinfo(res);
    return fd;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    server_thread_t *th = listener->data;
    if (err != NULL)
        return;
    for (int i = 0; i < 16; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            return;
        h2o_accept(&th->accept_ctx, sock);
    }
}

static void *thread_main(void *arg)
{
    fig_thread_setup("figment-loop", FIG_NICE_FOREGROUND);
    server_thread_t *th = arg;
    server_t *srv = th->srv;
    th->loop = h2o_evloop_create();
    h2o_context_init(&th->ctx, th->loop, &srv->globalconf);
    th->accept_ctx.ctx = &th->ctx;
    th->accept_ctx.hosts = srv->globalconf.hosts;
    worker_receiver_init(&th->ctx, &th->receiver);

    th->timers = timer_set_create(th->loop);
    th->env.router.loop = th->loop;
    th->env.router.http = http_client_create(th->loop, UPSTREAM_IDLE_CONNECTIONS);
    th->env.router.timers = th->timers;
    th->env.router.providers = &srv->providers;
    th->env.router.breakers = srv->breakers;
    crypto_random(&th->env.router.rng, sizeof(th->env.router.rng));
    th->env.workers = srv->workers;
    th->env.sandbox = srv->sandbox;
    th->env.page_cache = srv->page_cache;
    page_cache_receiver_init(th->ctx.queue, &th->cache_receiver);
    th->env.cache_receiver = &th->cache_receiver;
    th->env.var_dir = srv->cfg->var_dir;
    th->env.receiver = &th->receiver;
    th->env.budget = srv->budget;
    th->env.session_cache = srv->session_cache;
    th->env.session_writer = srv->session_writer;
    th->env.upstream_cap = srv->upstream_cap;
    th->env.traces = srv->traces;
    th->env.otlp = srv->otlp;
    th->env.session_key = srv->key;
    th->env.quiet = srv->cfg->quiet;
    th->operator_env.workers = srv->workers;
    th->operator_env.receiver = &th->receiver;
    th->operator_env.session_key = srv->key;
    th->operator_env.token = srv->operator_token;
    th->operator_env.apps = &srv->apps;
    th->operator_env.send_html = send_html;
    th->env.respond = respond_interaction;
    th->env.stream_begin = stream_begin;
    th->env.stream_write = stream_write;

    th->listener = h2o_evloop_socket_create(th->loop, th->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    th->listener->data = th;
    h2o_socket_read_start(th->listener, on_accept);

    while (!stopping)
        h2o_evloop_run(th->loop, 200);

    h2o_socket_read_stop(th->listener);
    h2o_socket_close(th->listener); /* closes listen_fd too */
    th->listen_fd = -1;
    /* drain: interactions already accepted get their answer (bounded by DRAIN_MS);
     * while stopping, answers close their connection (send_html) */
    uint64_t drain_until = h2o_now(th->loop) + DRAIN_MS;
    while (th->env.in_flight > 0 && h2o_now(th->loop) < drain_until)
        h2o_evloop_run(th->loop, 50);
    for (int i = 0; i < 5; i++) /* write the last answers out */
        h2o_evloop_run(th->loop, 10);
    int conns_left = !h2o_linklist_is_empty(&th->ctx.http1._conns);
    /* deliver what the workers finish for this loop (e.g. usage records) before leaving;
     * a done callback may queue one more job (the record after a response) */
    for (int i = 0; i < 4; i++) {
        if (srv->sandbox != NULL) /* a cancelled attempt's code run may still be finishing */
            worker_pool_wait_idle(srv->sandbox);
        worker_pool_wait_idle(srv->workers);
        h2o_evloop_run(th->loop, 0);
    }
    http_client_destroy(th->env.router.http);
    timer_set_destroy(th->timers);
    /* let h2o finish closing sockets, then release the loop's resources */
    h2o_evloop_run(th->loop, 0);
    worker_receiver_dispose(&th->ctx, &th->receiver);
    page_cache_receiver_dispose(th->ctx.queue, &th->cache_receiver);
    if (conns_left) {
        /* h2o 2.2.5 cannot dispose a context with live connections (it asserts on their
         * timeouts), and the process is exiting anyway: the kernel closes the idle
         * keep-alive sockets; server_stop() keeps this thread's memory reachable */
        th->kept_open = 1;
        return NULL;
    }
    h2o_context_dispose(&th->ctx);
    h2o_evloop_destroy(th->loop);
    return NULL;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static uint64_t traces_dropped(void *w)
{
    return trace_writer_dropped(w);
}

static uint64_t spans_dropped(void *e)
{
    return otlp_dropped(e);
}

static int setup(server_t *srv, const config_t *cfg, fig_err_t *err)
{
    srv->cfg = cfg;
    if (mkdir(cfg->var_dir, 0700) != 0 && errno != EEXIST) {
        fig_err_set(err, FIG_E_IO, "%s: cannot create the data folder: %s", cfg->var_dir, strerror(errno));
        return -1;
    }
    {
        /* scratch copies of parallel attempts that a crash left behind */
        fig_buf_t ap = FIG_BUF_INIT;
        fig_err_t aerr;
        fig_err_clear(&aerr);
        fig_buf_appendf(&ap, "%s/attempts", cfg->var_dir);
        uploads_delete(ap.data, &aerr);
        fig_buf_free(&ap);
    }
    if (session_key_load(cfg->var_dir, srv->key, err) != 0)
        return -1;
    if (providers_load(cfg->config_path, &srv->providers, err) != 0)
        return -1;
    srv->breakers = fig_calloc(srv->providers.n_providers ? srv->providers.n_providers : 1, sizeof(breaker_t *));
    for (size_t i = 0; i < srv->providers.n_providers; i++)
        srv->breakers[i] = breaker_create(&srv->providers.breaker);
    srv->limit_session = ratelimiter_create(&srv->providers.rate_limits.per_session, 100000);
    srv->limit_ip = ratelimiter_create(&srv->providers.rate_limits.per_ip, 100000);
    srv->limit_app = ratelimiter_create(&srv->providers.rate_limits.per_app, 1024);
    srv->upstream_cap = concurrency_cap_create(srv->providers.rate_limits.max_concurrent_upstream);
    srv->budget = budget_create(&srv->providers.budgets, 100000);
    srv->session_cache = session_cache_create(100000);
    if (apps_load_all(cfg->prompts_dir, cfg->var_dir, &srv->apps, err) != 0)
        return -1;
    fig_buf_t p = FIG_BUF_INIT;
    fig_buf_appendf(&p, "%s/system.md", cfg->prompts_dir);
    char *system_md = fs_read_file(p.data, 1u << 20, NULL, NULL, FIG_E_CONFIG, err);
    fig_buf_free(&p);
    if (system_md == NULL)
        return -1;
    srv->runtimes = fig_calloc(srv->apps.count, sizeof(app_runtime_t));
    size_t max_body = 1024;
    for (size_t i = 0; i < srv->apps.count; i++) {
        app_t *app = srv->apps.items[i];
        if (app_db_prepare(app, err) != 0) {
            free(system_md);
            return -1;
        }
        srv->runtimes[i].app = app;
        srv->runtimes[i].system_prompt = build_system_prompt(system_md, app);
        srv->runtimes[i].tools = tools_schemas(app);
        char *tools_json = json_dumps(srv->runtimes[i].tools, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fig_buf_t pv = FIG_BUF_INIT;
        fig_buf_append_str(&pv, srv->runtimes[i].system_prompt);
        fig_buf_append_str(&pv, tools_json ? tools_json : "");
        free(tools_json);
        char *hex = crypto_sha256_hex(pv.data, pv.len);
        memcpy(srv->runtimes[i].prompt_version, hex, 64);
        free(hex);
        fig_buf_free(&pv);
        if (app_chains(srv, &srv->runtimes[i], err) != 0) {
            free(system_md);
            return -1;
        }
        if ((size_t)app->limits.max_body_bytes > max_body)
            max_body = (size_t)app->limits.max_body_bytes;
    }
    free(system_md);
    if (load_statics(srv, cfg->static_dir, err) != 0)
        return -1;

    fig_buf_t dbpath = FIG_BUF_INIT;
    fig_buf_appendf(&dbpath, "%s/figment.db", cfg->var_dir);
    /* the session writer first: it replays the journal of a crash into the store, and
     * the budgets below read the spending from it */
    fig_buf_t journal = FIG_BUF_INIT;
    fig_buf_appendf(&journal, "%s/journal", cfg->var_dir);
    const char *delay = getenv("FIGMENT_TEST_SESSION_COMMIT_DELAY_MS"); /* tests: a crash before the commit */
    session_writer_opts_t wo = {.journal_dir = journal.data, .db_path = dbpath.data, .cache = srv->session_cache,
                                .commit_delay_ms = delay ? atoi(delay) : 0};
    srv->session_writer = session_writer_start(&wo, err);
    fig_buf_free(&journal);
    if (srv->session_writer == NULL) {
        fig_buf_free(&dbpath);
        return -1;
    }
    /* open once here so that a broken store fails at start, not on the first click */
    session_store_t *probe = session_store_open(dbpath.data, err);
    if (probe == NULL) {
        fig_buf_free(&dbpath);
        return -1;
    }
    /* budgets: today's spending per app and in all (UTC days) */
    time_t now = time(NULL);
    time_t day_start = now - now % 86400;
    double total_today = 0;
    if (session_spent_since(probe, day_start, seed_app_budget, srv, err) != 0) {
        session_store_close(probe);
        fig_buf_free(&dbpath);
        return -1;
    }
    for (size_t i = 0; i < srv->apps.count; i++)
        total_today += budget_spent_app_today(srv->budget, srv->apps.items[i]->name, now);
    budget_seed_global(srv->budget, total_today, now);
    session_store_close(probe);
    srv->workers = worker_pool_create(cfg->workers, dbpath.data, err);
    fig_buf_free(&dbpath);
    if (srv->workers == NULL)
        return -1;
    /* the page cache: memory for all loops, var/cache.db through the workers */
    int wants_cache = 0;
    for (size_t i = 0; i < srv->apps.count; i++)
        wants_cache |= srv->apps.items[i]->cache_ttl_s > 0;
    if (wants_cache) {
        /* a secret placeholder for the CSRF token in cached pages (see page_cache.h) */
        uint8_t mac[32];
        crypto_hmac_sha256(srv->key, SESSION_KEY_LEN, "page-cache-csrf-placeholder", 27, mac);
        char *hex = crypto_hex(mac, 16);
        fig_buf_t ph = FIG_BUF_INIT;
        fig_buf_appendf(&ph, "figment-csrf-%s", hex);
        page_cache_set_placeholder(ph.data);
        fig_buf_free(&ph);
        free(hex);
        srv->page_cache = page_cache_create(PAGE_CACHE_DEFAULT_MAX_BYTES);
        fig_buf_t cp = FIG_BUF_INIT;
        fig_buf_appendf(&cp, "%s/cache.db", cfg->var_dir);
        worker_pool_set_page_cache_db(srv->workers, cp.data);
        fig_buf_free(&cp);
    }
    /* run_code: a few long blocking runs, apart from the session store's workers */
    int wants_sandbox = 0;
    for (size_t i = 0; i < srv->apps.count; i++)
        wants_sandbox |= srv->apps.items[i]->run_code.enabled;
    if (wants_sandbox) {
        fig_err_t serr;
        fig_err_clear(&serr);
        if (sandbox_probe(&serr) != 0)
            fprintf(stderr, "figment: warning: run_code is disabled: %s\n", serr.msg);
        fig_buf_t sp = FIG_BUF_INIT;
        fig_buf_appendf(&sp, "%s/figment.db", cfg->var_dir);
        srv->sandbox = worker_pool_create(SANDBOX_CONCURRENCY, sp.data, err);
        fig_buf_free(&sp);
        if (srv->sandbox == NULL)
            return -1;
    }

    /* observability: traces (var/traces.db), metrics, optional OTLP export, operator token */
    metrics_init();
    fig_buf_t tpath = FIG_BUF_INIT;
    fig_buf_appendf(&tpath, "%s/traces.db", cfg->var_dir);
    const char *redact = getenv("FIGMENT_TRACE_REDACT");
    srv->traces = trace_writer_start(tpath.data, redact != NULL && strcmp(redact, "1") == 0, err);
    worker_pool_set_trace_db(srv->workers, tpath.data);
    fig_buf_free(&tpath);
    if (srv->traces == NULL)
        return -1;
    const char *otlp_endpoint = getenv("FIGMENT_OTLP_ENDPOINT");
    if (otlp_endpoint != NULL && *otlp_endpoint != '\0') {
        otlp_options_t oo = {.endpoint = otlp_endpoint, .service_name = "figment"};
        const char *q = getenv("FIGMENT_OTLP_QUEUE"), *iv = getenv("FIGMENT_OTLP_INTERVAL_MS");
        oo.queue_max = q ? atoi(q) : 0;
        oo.interval_ms = iv ? atoi(iv) : 0;
        srv->otlp = otlp_start(&oo, err);
        if (srv->otlp == NULL)
            return -1;
    }
    metrics_set_dropped_sources(traces_dropped, srv->traces, srv->otlp ? spans_dropped : NULL, srv->otlp);
    int generated = 0;
    srv->operator_token = operator_token_init(&generated);
    if (generated)
        fprintf(stderr, "figment: operator token (set FIGMENT_OPERATOR_TOKEN to choose one): %s\n",
                srv->operator_token);

    h2o_config_init(&srv->globalconf);
    srv->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("figment"));
    srv->globalconf.max_request_entity_size = max_body;
    srv->globalconf.http1.upgrade_to_http2 = 0;
    srv->hostconf = h2o_config_register_host(&srv->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(srv->hostconf, "/", 0);
    front_handler_t *h = (front_handler_t *)h2o_create_handler(pc, sizeof(*h));
    h->super.on_req = on_req;
    h->srv = srv;
    return 0;
}

static void teardown(server_t *srv)
{
    worker_pool_destroy(srv->workers);
    session_writer_stop(srv->session_writer); /* after the workers: a confirmation pause submits from one */
    if (srv->sandbox != NULL)
        worker_pool_destroy(srv->sandbox);
    if (srv->page_cache != NULL)
        page_cache_free(srv->page_cache);
    otlp_stop(srv->otlp);
    trace_writer_stop(srv->traces);
    metrics_set_dropped_sources(NULL, NULL, NULL, NULL);
    free(srv->operator_token);
    for (size_t i = 0; i < srv->apps.count && srv->runtimes; i++) {
        free(srv->runtimes[i].system_prompt);
        json_decref(srv->runtimes[i].tools);
        free(srv->runtimes[i].chain.models);
        for (size_t j = 0; srv->runtimes[i].route_chains && j < srv->apps.items[i]->n_routes; j++)
            free(srv->runtimes[i].route_chains[j].models);
        free(srv->runtimes[i].route_chains);
    }
    free(srv->runtimes);
    for (size_t i = 0; i < srv->n_statics; i++) {
        free(srv->statics[i].name);
        free(srv->statics[i].content_type);
        free(srv->statics[i].etag);
        free(srv->statics[i].data);
    }
    free(srv->statics);
    if (srv->hostconf != NULL)
        h2o_config_dispose(&srv->globalconf);
    apps_free(&srv->apps);
    for (size_t i = 0; srv->breakers && i < srv->providers.n_providers; i++)
        breaker_free(srv->breakers[i]);
    free(srv->breakers);
    ratelimiter_free(srv->limit_session);
    ratelimiter_free(srv->limit_ip);
    ratelimiter_free(srv->limit_app);
    concurrency_cap_free(srv->upstream_cap);
    budget_free(srv->budget);
    session_cache_free(srv->session_cache);
    providers_free(&srv->providers);
}

server_t *server_start(const config_t *cfg, fig_err_t *err)
{
    server_t *srv = fig_calloc(1, sizeof(*srv));
    stopping = 0;
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (setup(srv, cfg, err) != 0)
        goto Error;

    srv->threads = fig_calloc((size_t)cfg->threads, sizeof(*srv->threads));
    int port = cfg->listen_port;
    for (int i = 0; i < cfg->threads; i++) {
        srv->threads[i].srv = srv;
        srv->threads[i].index = i;
        srv->threads[i].listen_fd = open_listener(cfg->listen_host, port, err);
        if (srv->threads[i].listen_fd < 0)
            goto Error;
        srv->nthreads = i + 1;
        if (i == 0) { /* an ephemeral port: every thread binds the one the first got */
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            getsockname(srv->threads[0].listen_fd, (struct sockaddr *)&ss, &sl);
            port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    srv->listen_port = port;
    for (int i = 0; i < srv->nthreads; i++)
        pthread_create(&srv->threads[i].tid, NULL, thread_main, &srv->threads[i]);
    return srv;

Error:
    for (int i = 0; i < srv->nthreads; i++)
        if (srv->threads[i].listen_fd >= 0)
            close(srv->threads[i].listen_fd);
    srv->nthreads = 0;
    server_stop(srv);
    return NULL;
}

int server_port(const server_t *srv)
{
    return srv->listen_port;
}

void server_flush_traces(server_t *srv)
{
    if (srv->traces != NULL)
        trace_writer_flush(srv->traces);
}

void server_stop(server_t *srv)
{
    if (srv == NULL)
        return;
    stopping = 1;
    int kept_open = 0;
    for (int i = 0; i < srv->nthreads; i++) {
        pthread_join(srv->threads[i].tid, NULL);
        kept_open |= srv->threads[i].kept_open;
    }
    if (kept_open) {
        /* a loop left its h2o context in place (idle connections at exit); the context
         * lives inside these records, which stay allocated until the process ends */
        retained_threads = srv->threads;
    } else {
        free(srv->threads);
    }
    teardown(srv);
    free(srv);
}

int server_run(const config_t *cfg, fig_err_t *err)
{
    /* block the stop signals before any thread starts, so that only sigwait() sees them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    server_t *srv = server_start(cfg, err);
    if (srv == NULL)
        return -1;

    if (!srv->providers.configured) {
        fprintf(stderr, "figment: no language model configured: app pages will answer 503. "
                        "Set OPENAI_API_KEY (and OPENAI_BASE_URL for a local server), ANTHROPIC_API_KEY, "
                        "or write figment.json to enable them.\n");
    } else {
        for (size_t i = 0; i < srv->providers.n_default_models; i++)
            fprintf(stderr, "figment: %s model %s/%s at %s\n", i == 0 ? "default" : "fallback",
                    srv->providers.default_models[i].provider->name, srv->providers.default_models[i].model->name,
                    srv->providers.default_models[i].provider->base_url);
    }
    fprintf(stderr, "figment: %zu app(s) from %s/, %d thread(s)\n", srv->apps.count, cfg->prompts_dir,
            cfg->threads);
    const char *shown_host = strchr(cfg->listen_host, ':') ? "[::1]" : cfg->listen_host;
    printf("figment listening on http://%s:%d/\n", shown_host, srv->listen_port);
    fflush(stdout);
    if (cfg->port_file != NULL) {
        FILE *f = fopen(cfg->port_file, "w");
        if (f) {
            fprintf(f, "%d\n", srv->listen_port);
            fclose(f);
        }
    }

    int sig;
    sigwait(&sigs, &sig);
    fprintf(stderr, "figment: stopping (signal %d)\n", sig);
    server_stop(srv);
    return 0;
}
