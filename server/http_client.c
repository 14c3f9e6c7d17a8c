/*
 * http_client.c — libcurl multi-socket inside h2o's evloop (see http_client.h).
 *
 * Design: curl's sockets are not wrapped as h2o sockets. They go into a private
 * epoll set owned by the client, and h2o watches only that epoll fd (readable when
 * any of curl's sockets is ready; h2o's read interest is level-triggered). This
 * avoids h2o 2.2.5's per-socket hazards found while prototyping
 * (../shared/notes/platform.md): one-shot, uncancellable write notifications, and
 * h2o_socket_export() asserting while one is armed when curl removes a socket.
 * Write interest becomes a plain EPOLLOUT bit; removal is EPOLL_CTL_DEL.
 *
 * curl's single timer maps onto a one-entry h2o_timeout_t whose duration is
 * rewritten, clamped to >= 1 ms (0 ms re-fires inside h2o_timeout_run forever). Since
 * curl asks for 0 ms whenever it wants to run again at once (starting a transfer, state
 * changes), drive() performs those right after the socket action that asked, bounded,
 * instead of a millisecond later; the clamped timer remains only the fallback.
 *
 * A call can finish inside http_call_start() (a refused connection, or a fast server
 * whose whole answer arrived while curl was still sending). Its end must not be
 * reported before the caller holds the call, and not a millisecond later either (that
 * was 1.1 ms added to many interactions): an eventfd wakes the loop on its next turn.
 */
#include "http_client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define EPOLL_BATCH 64

struct http_client {
    h2o_loop_t *loop;
    CURLM *multi;
    int epfd;
    h2o_socket_t *ep_sock;
    h2o_socket_t *wake_sock; /* an eventfd: "collect finished calls on the next loop turn" */
    int wake_fd;
    h2o_timeout_t timer_queue;
    h2o_timeout_entry_t timer;
    h2o_linklist_t calls;
    size_t inflight;
    int in_check;       /* inside check_multi_info(): finished calls are collected there */
    int kick_pending;   /* curl asked for a 0 ms timeout: act right after the current action */
};

struct http_call {
    h2o_linklist_t link;
    http_client_t *client;
    CURL *easy;
    struct curl_slist *headers;
    fig_buf_t body;
    http_call_cbs_t cbs;
    void *ctx;
    long status;
    char *content_type;
    char errbuf[CURL_ERROR_SIZE];
    int aborted_by_callback;
    int (*check_address)(void *ctx, const struct sockaddr *addr, socklen_t addrlen);
};

static void check_multi_info(http_client_t *c);

/* One socket action, then curl's 0 ms timeouts at once instead of a millisecond later
 * (h2o's timers are clamped to >= 1 ms). Bounded, in case curl keeps asking. Never
 * called from inside a curl callback. */
static int drive(http_client_t *c, curl_socket_t fd, int flags)
{
    int running = 0;
    c->kick_pending = 0;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    for (int i = 0; i < 8 && c->kick_pending; i++) {
        c->kick_pending = 0;
        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    return running; /* transfers still running */
}

static void call_free(http_call_t *call)
{
    h2o_linklist_unlink(&call->link);
    call->client->inflight--;
    curl_multi_remove_handle(call->client->multi, call->easy);
    curl_easy_cleanup(call->easy);
    curl_slist_free_all(call->headers);
    fig_buf_free(&call->body);
    free(call->content_type);
    free(call);
}

static void on_epoll_ready(h2o_socket_t *sock, const char *err)
{
    http_client_t *c = sock->data;
    struct epoll_event evs[EPOLL_BATCH];
    int n = epoll_wait(c->epfd, evs, EPOLL_BATCH, 0);
    for (int i = 0; i < n; i++) {
        int flags = 0;
        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
            flags |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT)
            flags |= CURL_CSELECT_OUT;
        if (evs[i].events & EPOLLERR)
            flags |= CURL_CSELECT_ERR;
        /* a socket removed by an earlier action in this batch is ignored by curl */
        drive(c, evs[i].data.fd, flags);
    }
    check_multi_info(c);
}

static void on_wake(h2o_socket_t *sock, const char *err)
{
    http_client_t *c = sock->data;
    uint64_t n;
    ssize_t r = read(c->wake_fd, &n, sizeof(n)); /* resets the counter; EAGAIN: already drained */
    (void)r;
    (void)err;
    check_multi_info(c);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    http_client_t *c = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(c->multi, fd, NULL);
        return 0;
    }
    struct epoll_event ev = {0};
    ev.data.fd = fd;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev.events |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev.events |= EPOLLOUT;
    int op = socketp == NULL ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(c->epfd, op, fd, &ev) != 0) {
        op = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(c->epfd, op, fd, &ev) != 0)
            return -1;
    }
    if (socketp == NULL)
        curl_multi_assign(c->multi, fd, c); /* any non-NULL marks "registered" */
    return 0;
}

static void on_timer(h2o_timeout_entry_t *entry)
{
    http_client_t *c = H2O_STRUCT_FROM_MEMBER(http_client_t, timer, entry);
    drive(c, CURL_SOCKET_TIMEOUT, 0);
    check_multi_info(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    http_client_t *c = userp;
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    if (timeout_ms < 0)
        return 0;
    if (timeout_ms == 0)
        c->kick_pending = 1; /* drive() acts on it as soon as curl returns; the timer is the fallback */
    c->timer_queue.timeout = timeout_ms < 1 ? 1 : (uint64_t)timeout_ms;
    h2o_timeout_link(c->loop, &c->timer_queue, &c->timer);
    return 0;
}

static void check_multi_info(http_client_t *c)
{
    if (c->in_check)
        return; /* the outer loop below picks up whatever finished */
    c->in_check = 1;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        http_call_t *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        CURLcode rc = msg->data.result;
        curl_multi_remove_handle(c->multi, call->easy);
        long status = 0;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        /* on_done may start new calls; this call stays valid until we free it */
        call->cbs.on_done(call->ctx, rc, status, call->errbuf);
        call_free(call);
    }
    c->in_check = 0;
}

static size_t on_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    http_call_t *call = userdata;
    size_t n = size * nmemb;
    if (call->status == 0) {
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
        char *ct = NULL;
        curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ct);
        if (ct)
            call->content_type = strdup(ct);
    }
    if (call->cbs.on_body(call->ctx, call->status, call->content_type, ptr, n) != 0) {
        call->aborted_by_callback = 1;
        return 0;
    }
    return n;
}

/* The socket for a connection, opened only after the caller's check approved the
 * address curl is about to connect to (after DNS, so a name cannot hide it). */
static curl_socket_t on_curl_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    http_call_t *call = clientp;
    if (purpose != CURLSOCKTYPE_IPCXN || call->check_address(call->ctx, &a->addr, a->addrlen) != 0)
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

http_client_t *http_client_create(h2o_loop_t *loop, int max_connections)
{
    http_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->loop = loop;
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->epfd < 0) {
        free(c);
        return NULL;
    }
    c->multi = curl_multi_init();
    h2o_linklist_init_anchor(&c->calls);
    h2o_timeout_init(loop, &c->timer_queue, 1);
    c->timer.cb = on_timer;
    c->ep_sock = h2o_evloop_socket_create(loop, c->epfd, H2O_SOCKET_FLAG_DONT_READ);
    c->ep_sock->data = c;
    h2o_socket_read_start(c->ep_sock, on_epoll_ready);
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->wake_fd >= 0) {
        c->wake_sock = h2o_evloop_socket_create(loop, c->wake_fd, H2O_SOCKET_FLAG_DONT_READ);
        c->wake_sock->data = c;
        h2o_socket_read_start(c->wake_sock, on_wake);
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)max_connections);
    return c;
}

void http_client_destroy(http_client_t *c)
{
    if (c == NULL)
        return;
    while (!h2o_linklist_is_empty(&c->calls)) {
        http_call_t *call = H2O_STRUCT_FROM_MEMBER(http_call_t, link, c->calls.next);
        call_free(call);
    }
    curl_multi_cleanup(c->multi); /* closes cached connections: REMOVE callbacks run */
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    h2o_timeout_dispose(c->loop, &c->timer_queue);
    h2o_socket_read_stop(c->ep_sock);
    h2o_socket_close(c->ep_sock); /* closes epfd */
    if (c->wake_sock != NULL) {
        h2o_socket_read_stop(c->wake_sock);
        h2o_socket_close(c->wake_sock); /* closes wake_fd */
    }
    free(c);
}

http_call_t *http_call_start(http_client_t *c, http_call_opts_t *opts, const http_call_cbs_t *cbs, void *ctx)
{
    http_call_t *call = calloc(1, sizeof(*call));
    if (call == NULL)
        return NULL;
    call->client = c;
    call->cbs = *cbs;
    call->ctx = ctx;
    call->headers = opts->headers;
    call->body = opts->body;
    opts->headers = NULL;
    opts->body = (fig_buf_t)FIG_BUF_INIT;

    CURL *e = call->easy = curl_easy_init();
    if (e == NULL) {
        curl_slist_free_all(call->headers);
        fig_buf_free(&call->body);
        free(call);
        return NULL;
    }
    curl_easy_setopt(e, CURLOPT_URL, opts->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_curl_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "figment/0.1");
    if (opts->method != NULL && strcmp(opts->method, "POST") != 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (call->body.len > 0 || opts->method != NULL) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body.data ? call->body.data : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body.len);
    }
    if (opts->connect_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, opts->connect_timeout_ms);
    if (opts->total_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, opts->total_timeout_ms);
    if (opts->idle_timeout_ms > 0) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (opts->idle_timeout_ms + 999) / 1000);
    }
    if (opts->check_address != NULL) {
        call->check_address = opts->check_address;
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_curl_opensocket);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, call);
        /* a pooled connection was checked under another call's rules, or not at all */
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    if (opts->no_proxy) {
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    }
    h2o_linklist_insert(&c->calls, &call->link);
    c->inflight++;
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        call_free(call);
        return NULL;
    }
    /* curl asks for a 0 ms timeout to start the transfer; h2o's timers are clamped
     * to >= 1 ms, so start it now instead of a millisecond later. Not from inside a
     * curl callback: http_call_start() is never called there (see the header). */
    int running = drive(c, CURL_SOCKET_TIMEOUT, 0);
    if ((size_t)running < c->inflight) {
        /* something finished during the kick (a refused connection, or the whole answer
         * already): collect it on the next loop turn, never before the caller holds this
         * call's pointer */
        uint64_t one = 1;
        if (c->wake_sock == NULL || write(c->wake_fd, &one, sizeof(one)) != (ssize_t)sizeof(one)) {
            if (!h2o_timeout_is_linked(&c->timer)) { /* no eventfd: the timer, a millisecond later */
                c->timer_queue.timeout = 1;
                h2o_timeout_link(c->loop, &c->timer_queue, &c->timer);
            }
        }
    }
    return call;
}

void http_call_cancel(http_call_t *call)
{
    if (call != NULL)
        call_free(call);
}

void http_call_get_timings(http_call_t *call, http_call_timings_t *t)
{
    curl_easy_getinfo(call->easy, CURLINFO_CONNECT_TIME, &t->connect_s);
    curl_easy_getinfo(call->easy, CURLINFO_STARTTRANSFER_TIME, &t->first_byte_s);
    curl_easy_getinfo(call->easy, CURLINFO_TOTAL_TIME, &t->total_s);
    curl_off_t ra = -1;
    t->retry_after_s = curl_easy_getinfo(call->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0 ? (long)ra : -1;
}

const char *http_call_response_header(http_call_t *call, const char *name)
{
    struct curl_header *h = NULL;
    if (curl_easy_header(call->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || h == NULL)
        return NULL;
    size_t amount = h->amount;
    if (amount > 1 && curl_easy_header(call->easy, name, amount - 1, CURLH_HEADER, -1, &h) != CURLHE_OK)
        return NULL;
    return h->value;
}

size_t http_client_inflight(const http_client_t *c)
{
    return c->inflight;
}
