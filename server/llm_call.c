/*
 * llm_call.c — runs one provider request over http_client (see llm_call.h).
 *
 * A 2xx body goes to the provider's parser as it streams in; any other status is
 * buffered (bounded) and turned into the provider's error message. Transport
 * failures are worded for the person who will read the error page.
 */
#include "llm_call.h"

#include <stdlib.h>
#include <string.h>

#define ERROR_BODY_MAX (64u << 10)

struct llm_call {
    http_call_t *http;
    const llm_provider_t *provider;
    void *parser;
    llm_result_t *result;
    fig_buf_t error_body;
    fig_err_t parse_err;
    int parse_failed;
    int stream;
    char *url;
    llm_call_done_cb cb;
    llm_call_progress_cb on_progress;
    size_t body_bytes;
    void *ctx;
};

static void call_free(llm_call_t *c)
{
    if (c->parser)
        c->provider->parser_free(c->parser);
    fig_buf_free(&c->error_body);
    free(c->url);
    free(c);
}

static int on_body(void *ctx, long status, const char *content_type, const char *data, size_t len)
{
    llm_call_t *c = ctx;
    if (status < 200 || status > 299) {
        size_t room = ERROR_BODY_MAX - c->error_body.len;
        fig_buf_append(&c->error_body, data, len < room ? len : room);
        return 0;
    }
    if (c->parser == NULL)
        c->parser = c->provider->parser_new(c->stream, content_type, c->result);
    c->body_bytes += len;
    if (c->on_progress != NULL)
        c->on_progress(c->ctx, c->body_bytes == len);
    if (c->provider->parser_feed(c->parser, data, len, &c->parse_err) != 0) {
        c->parse_failed = 1;
        return 1;
    }
    return 0;
}

static void on_done(void *ctx, CURLcode rc, long status, const char *curl_error)
{
    llm_call_t *c = ctx;
    fig_err_t err;
    fig_err_clear(&err);
    llm_call_timings_t t = {0};
    http_call_timings_t ht;
    http_call_get_timings(c->http, &ht);
    c->http = NULL;
    t.connect_ms = ht.connect_s * 1000.0;
    t.first_byte_ms = ht.first_byte_s * 1000.0;
    t.total_ms = ht.total_s * 1000.0;
    t.http_status = status;
    t.retry_after_ms = ht.retry_after_s >= 0 ? ht.retry_after_s * 1000 : -1;
    t.body_bytes = c->body_bytes;

    if (c->parse_failed) {
        err = c->parse_err;
        t.fail = LLM_FAIL_PROTOCOL;
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        t.fail = ht.connect_s > 0 ? LLM_FAIL_TIMEOUT : LLM_FAIL_CONNECT;
        fig_err_set(&err, FIG_E_UPSTREAM_TIMEOUT, "the model endpoint did not answer in time (%s)", curl_error);
    } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
        t.fail = LLM_FAIL_CONNECT;
        fig_err_set(&err, FIG_E_UPSTREAM, "could not connect to the model endpoint %s (%s)", c->url,
                    *curl_error ? curl_error : curl_easy_strerror(rc));
    } else if (rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR) {
        t.fail = status >= 200 && status <= 299 ? LLM_FAIL_PROTOCOL : LLM_FAIL_TRANSPORT;
        fig_err_set(&err, FIG_E_UPSTREAM, "the model's stream ended early (truncated): %s",
                    *curl_error ? curl_error : curl_easy_strerror(rc));
    } else if (rc != CURLE_OK) {
        t.fail = LLM_FAIL_TRANSPORT;
        fig_err_set(&err, FIG_E_UPSTREAM, "the connection to the model endpoint failed: %s",
                    *curl_error ? curl_error : curl_easy_strerror(rc));
    } else if (status < 200 || status > 299) {
        t.fail = LLM_FAIL_HTTP;
        c->provider->describe_error(status, c->error_body.data ? c->error_body.data : "", c->error_body.len, &err);
    } else {
        if (c->parser == NULL) /* an empty 2xx body */
            c->parser = c->provider->parser_new(c->stream, NULL, c->result);
        if (c->provider->parser_finish(c->parser, &err) != 0)
            t.fail = LLM_FAIL_PROTOCOL;
    }
    c->cb(c->ctx, err.code == FIG_OK ? NULL : &err, &t);
    call_free(c);
}

static const http_call_cbs_t llm_http_cbs = {on_body, on_done};

llm_call_t *llm_call_start(http_client_t *client, const llm_call_opts_t *opts, llm_call_done_cb cb, void *ctx,
                           fig_err_t *err)
{
    fig_buf_t url = FIG_BUF_INIT;
    http_call_opts_t ho = {0};
    if (opts->provider->build_request(opts->endpoint, opts->request, &url, &ho.headers, &ho.body, err) != 0) {
        fig_buf_free(&url);
        curl_slist_free_all(ho.headers);
        fig_buf_free(&ho.body);
        return NULL;
    }
    llm_call_t *c = calloc(1, sizeof(*c));
    c->provider = opts->provider;
    c->result = opts->result;
    c->stream = opts->request->stream;
    c->cb = cb;
    c->ctx = ctx;
    c->on_progress = opts->on_progress;
    c->url = fig_buf_steal(&url);
    ho.url = c->url;
    ho.connect_timeout_ms = opts->connect_timeout_ms;
    ho.total_timeout_ms = opts->total_timeout_ms;
    c->http = http_call_start(client, &ho, &llm_http_cbs, c);
    if (c->http == NULL) {
        fig_err_set(err, FIG_E_UPSTREAM, "could not start a request to the model endpoint");
        call_free(c);
        return NULL;
    }
    return c;
}

void llm_call_cancel(llm_call_t *c)
{
    if (c == NULL)
        return;
    http_call_cancel(c->http);
    call_free(c);
}
