/*
 * operator.h — the operator's view at /_figment/ (traces, charts, feedback) and the
 * feedback form every generated page carries.
 *
 * Access: every page except /_figment/login and POST /_figment/feedback needs the
 * operator token: "Authorization: Bearer TOKEN", or the figment_op cookie set by the
 * login form (HttpOnly, SameSite=Strict, value = base64url(HMAC(session key, "operator:" + TOKEN)));
 * comparisons are constant-time. Without it: 401 with a login page (never the data).
 *
 * Pages (server-rendered HTML in figment's layout, no external assets, charts as
 * inline SVG; the CSP forbids inline script and style attributes, so SVG uses
 * presentation attributes only):
 *   GET  /_figment/                 traces, newest first, with filters (app, model, outcome,
 *                                   slow = total_ms >= N, expensive = cost >= N), paged
 *   GET  /_figment/trace/<id>       one trace: request, state, timings, route, each tool call
 *                                   with input and output, the prompt (messages), the answer,
 *                                   the page as rendered (escaped source and a sanitized view),
 *                                   its feedback
 *   GET  /_figment/charts           per app and model: cost, p50/p95/p99 latency over time,
 *                                   cache hit rate (inline SVG)
 *   GET  /_figment/feedback         feedback list
 *   GET/POST /_figment/login        the token form
 *   POST /_figment/feedback         from app pages: trace_id, rating (up|down), comment,
 *                                   _csrf (the browser session's token); answers 303 back to
 *                                   the page's path (a same-origin path only) — no operator
 *                                   token needed, the session's CSRF token is
 *
 * All SQLite reads run on worker threads (worker_trace_reader()); the response is sent
 * from the loop when the job is done, if the client is still there.
 */
#ifndef FIG_OPERATOR_H
#define FIG_OPERATOR_H

#include <h2o.h>
#include <h2o/multithread.h>

#include "app.h"
#include "buf.h"
#include "session.h"
#include "worker.h"

typedef struct {
    worker_pool_t *workers;
    h2o_multithread_receiver_t *receiver; /* this loop thread's */
    const uint8_t *session_key;           /* SESSION_KEY_LEN bytes */
    const char *token;
    const app_list_t *apps;
    /* sends a finished HTML page with figment's security headers (http_front.c) */
    void (*send_html)(h2o_req_t *req, int status, const char *set_cookie, const char *html, size_t len);
} operator_env_t;

/* Handles a request whose path starts with /_figment/ (except health and metrics,
 * which http_front.c answers). */
void operator_handle(operator_env_t *env, h2o_req_t *req);

/* FIGMENT_OPERATOR_TOKEN, or a fresh random token (the caller prints it at start).
 * *generated is set to 1 in the second case. Caller frees. */
char *operator_token_init(int *generated);

/* The feedback form for a generated page: a discreet thumbs up/down with an optional
 * comment, posting to /_figment/feedback. Appended to the page by the agent. */
void operator_feedback_form(fig_buf_t *out, const char *trace_id, const char *page_path, const char *csrf_token);

#endif
