/*
 * http_client.h — outbound HTTP on the event loop: libcurl's multi-socket API driven
 * by h2o's evloop. One http_client_t per loop thread (never shared between threads).
 *
 * A call delivers the response body through on_body as it arrives (streaming) and
 * ends with exactly one on_done, unless it is cancelled first, in which case no
 * callback runs afterwards. Callbacks run on the loop thread; on_done runs after
 * curl has let go of the handle, so it may start new calls or answer the browser.
 *
 * Ownership: http_call_start() takes ownership of `headers` and `body` (both freed
 * when the call ends); the call itself is freed after on_done or by cancel.
 */
#ifndef FIG_HTTP_CLIENT_H
#define FIG_HTTP_CLIENT_H

#include <curl/curl.h>
#include <h2o.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"

typedef struct http_client http_client_t;
typedef struct http_call http_call_t;

typedef struct {
    /* Response bytes. `status` is the HTTP status and content_type may be NULL.
     * Return 0 to continue, non-zero to abort the transfer (on_done then reports
     * CURLE_WRITE_ERROR). Runs inside curl: do not start or cancel calls here. */
    int (*on_body)(void *ctx, long status, const char *content_type, const char *data, size_t len);
    /* The end: rc is curl's result, status the HTTP status (0 if none). */
    void (*on_done)(void *ctx, CURLcode rc, long status, const char *curl_error);
} http_call_cbs_t;

typedef struct {
    const char *url;
    struct curl_slist *headers; /* taken */
    fig_buf_t body;             /* taken; POST when non-empty */
    long connect_timeout_ms;
    long total_timeout_ms;      /* whole exchange; 0 = none */
    long idle_timeout_ms;       /* abort if fewer than 1 byte/s for this long; 0 = none */
    /* Optional; zero keeps the behaviour above (what llm_call relies on). */
    const char *method;         /* "GET" or "POST" (then POST even with an empty body); NULL = by body */
    /* Called with the call's ctx before each connect, with the address about to be
     * used: non-zero refuses it (the call then ends with CURLE_COULDNT_CONNECT unless
     * another address works). Runs inside curl. When set, the call always opens a new
     * connection and never leaves it for reuse, so every connection it uses was checked. */
    int (*check_address)(void *ctx, const struct sockaddr *addr, socklen_t addrlen);
    int no_proxy;               /* non-zero: ignore proxy settings and *_proxy environment variables */
} http_call_opts_t;

typedef struct {
    long retry_after_s; /* the response's Retry-After in seconds, or -1 */
    double connect_s;   /* CURLINFO_CONNECT_TIME */
    double first_byte_s;/* CURLINFO_STARTTRANSFER_TIME */
    double total_s;
} http_call_timings_t;

http_client_t *http_client_create(h2o_loop_t *loop, int max_connections);
/* Cancels every call in flight (no callbacks) and frees the client. */
void http_client_destroy(http_client_t *c);

http_call_t *http_call_start(http_client_t *c, http_call_opts_t *opts, const http_call_cbs_t *cbs, void *ctx);
/* No callback runs after this. Not to be called from inside on_body. */
void http_call_cancel(http_call_t *call);
/* Valid inside on_done. */
void http_call_get_timings(http_call_t *call, http_call_timings_t *t);
/* Valid inside on_done: the last response's header `name` (any case; the last one
 * if repeated), or NULL. The string lives until on_done returns. */
const char *http_call_response_header(http_call_t *call, const char *name);
/* Number of calls in flight on this client. */
size_t http_client_inflight(const http_client_t *c);

#endif
