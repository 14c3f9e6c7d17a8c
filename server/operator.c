/*
 * operator.c — the operator's pages under /_figment/ and the feedback form on
 * generated pages (see operator.h).
 *
 * Design:
 * - A request is checked completely on the loop thread first: route, method,
 *   credentials, query or form syntax, every number's range. Anything unexpected is a
 *   400 page, never a guess; nothing reaches the store before that.
 * - Reads (and the feedback write) run on a worker (worker_trace_reader()). One
 *   op_job_t per request, malloc'd and owned by the job: run() fetches and renders the
 *   whole page, done() sends it and frees the job. The request's pool holds a slot
 *   pointing at the job whose dispose callback unlinks it (client gone); done() only
 *   sends while the link is there. The link is two-way so that neither side ever
 *   touches freed memory, whichever ends first.
 * - Rendering is separate from fetching: op_render_*() take jansson values, so the
 *   unit tests check escaping and charts without a store.
 * - Trace content is untrusted (model output, user input, tool results, emails):
 *   every string from a trace goes through fig_buf_append_html(). The stored page was
 *   sanitized when served; it is sanitized again before it is shown rendered, inside
 *   a bordered preview, and its source is shown escaped. Links on operator pages
 *   only go to /_figment/... paths.
 * - Charts are inline SVG built from presentation attributes only (the CSP forbids
 *   style attributes and inline script); every label is escaped, every number printed
 *   by us.
 * - Credentials: "Authorization: Bearer TOKEN" or the figment_op cookie
 *   (base64url(HMAC(session key, "operator:" + TOKEN)), so the token itself never sits
 *   in the browser). Comparisons are constant-time after a length check. Wrong tokens
 *   are counted per client address in a small fixed table (crude, shared by all loop
 *   threads): after OP_FAIL_MAX failures in OP_FAIL_WINDOW_MS the address gets 429
 *   until the window ends.
 */
/* operator.h uses fig_buf_t without including buf.h */
#include "buf.h"
#include "operator.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "crypto.h"
#include "form.h"
#include "render.h"
#include "trace.h"

#define OP_PREFIX "/_figment/"
#define OP_COOKIE_NAME "figment_op"
#define OP_PAGE_SIZE 50
#define OP_MAX_PAGE 10000
#define OP_MODEL_MAX 200
#define OP_COMMENT_MAX 2000
#define OP_BODY_MAX 16384   /* feedback: a 2000-byte comment, percent-encoded, and a path */
#define OP_LOGIN_BODY_MAX 4096
#define OP_SLOW_MAX 86400000L /* ms */
#define OP_COST_MAX 1000000.0 /* USD */
#define OP_FEEDBACK_LIST_MAX 500
#define OP_CHART_MAX_GROUPS 64
#define OP_FAIL_SLOTS 256
#define OP_FAIL_MAX 10
#define OP_FAIL_WINDOW_MS 60000

/* The outcomes the agent records (agent.c); the filter offers exactly these. */
static const char *const OP_OUTCOMES[] = {"ok",     "stale",         "budget",     "upstream", "upstream_timeout",
                                          "render", "session_store", "client_gone"};
#define OP_N_OUTCOMES (sizeof(OP_OUTCOMES) / sizeof(OP_OUTCOMES[0]))

/* ---------- small helpers ---------- */

static void esc(fig_buf_t *b, const char *s)
{
    if (s != NULL)
        fig_buf_append_html(b, s, strlen(s));
}

static const char *op_js(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A number from a trace, or NAN when absent or null. */
static double op_jn(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_number(v))
        return json_number_value(v);
    if (json_is_boolean(v))
        return json_is_true(v) ? 1 : 0;
    return NAN;
}

static int op_is_trace_id(const char *s, size_t len)
{
    if (s == NULL || len != 32)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void op_fmt_time(int64_t unix_ms, const char *fmt, char *out, size_t n)
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (unix_ms <= 0 || gmtime_r(&t, &tm) == NULL || strftime(out, n, fmt, &tm) == 0)
        snprintf(out, n, "\xE2\x80\x94"); /* em dash */
}

static void op_append_time(fig_buf_t *b, double unix_ms)
{
    char t[48];
    op_fmt_time(isnan(unix_ms) ? 0 : (int64_t)unix_ms, "%Y-%m-%d %H:%M:%S", t, sizeof(t));
    esc(b, t);
}

static void op_append_ms(fig_buf_t *b, double v)
{
    if (isnan(v))
        fig_buf_append_str(b, "\xE2\x80\x94");
    else
        fig_buf_appendf(b, "%.0f", v);
}

static void op_fmt_usd(double v, char *out, size_t n)
{
    if (isnan(v))
        snprintf(out, n, "\xE2\x80\x94");
    else if (v == 0)
        snprintf(out, n, "$0");
    else if (fabs(v) < 1)
        snprintf(out, n, "$%.6f", v);
    else
        snprintf(out, n, "$%.2f", v);
}

static void op_append_usd(fig_buf_t *b, double v)
{
    char t[48];
    op_fmt_usd(v, t, sizeof(t));
    esc(b, t);
}

static void op_append_int(fig_buf_t *b, double v)
{
    if (isnan(v))
        fig_buf_append_str(b, "\xE2\x80\x94");
    else
        fig_buf_appendf(b, "%.0f", v);
}

/* Query-string encoding of a value (unreserved characters kept, the rest %XX). The
 * result still needs HTML escaping when it goes into an attribute. */
static void op_append_urlenc(fig_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '_' || *p == '.' || *p == '~') {
            fig_buf_append(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            fig_buf_append(b, e, 3);
        }
    }
}

/* A JSON value as indented text (strings as they are). Caller frees. */
static char *op_json_text(const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return fig_strdup("");
    if (json_is_string(v))
        return fig_strdup(json_string_value(v));
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    return s != NULL ? s : fig_strdup("");
}

static void op_append_pre_json(fig_buf_t *b, const json_t *v)
{
    char *s = op_json_text(v);
    fig_buf_append_str(b, "<pre>");
    esc(b, s);
    fig_buf_append_str(b, "</pre>\n");
    free(s);
}

/* A same-origin path: "/x", never "//host", "/\host" or control characters. */
static int op_path_ok(const char *u)
{
    if (u == NULL || u[0] != '/' || u[1] == '/' || u[1] == '\\')
        return 0;
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static void op_nav(fig_buf_t *b)
{
    fig_buf_append_str(b, "<nav class=\"nav op-nav\"><a href=\"/_figment/\">Traces</a>"
                          "<a href=\"/_figment/charts\">Charts</a><a href=\"/_figment/feedback\">Feedback</a></nav>\n");
}

/* ---------- strict query parsing ---------- */

/* Decimal digits only (no sign, no spaces), value <= max. */
static int op_parse_uint(const char *s, long max, long *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* A non-negative decimal as <input type="number"> sends it: digits, an optional
 * fraction and an optional exponent; finite and <= max. */
static int op_parse_decimal(const char *s, double max, double *out)
{
    size_t n = strlen(s), i = 0, digits = 0;
    if (n == 0 || n > 32)
        return -1;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, digits++;
    }
    if (digits == 0)
        return -1;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t ed = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, ed++;
        if (ed == 0)
            return -1;
    }
    if (i != n)
        return -1;
    double v = strtod(s, NULL);
    if (!isfinite(v) || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

typedef struct {
    char *app, *model, *outcome; /* NULL = any */
    char *slow, *expensive;      /* as sent (validated); NULL = any */
    double min_total_ms, min_cost_usd;
    int page;                    /* 1.. */
} op_list_query_t;

static void op_list_query_clear(op_list_query_t *q)
{
    free(q->app);
    free(q->model);
    free(q->outcome);
    free(q->slow);
    free(q->expensive);
    memset(q, 0, sizeof(*q));
    q->page = 1;
}

/* A query field: a single string. Repeated fields (arrays) are refused. */
static const char *op_field(json_t *form, const char *key, fig_err_t *err)
{
    json_t *v = json_object_get(form, key);
    if (v == NULL)
        return NULL;
    if (!json_is_string(v)) {
        fig_err_set(err, FIG_E_INVALID, "the parameter '%s' is given more than once", key);
        return NULL;
    }
    return json_string_value(v);
}

/* Every key of form must be in allowed (NULL-terminated). */
static int op_only_keys(json_t *form, const char *const *allowed, fig_err_t *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(form, key, v) {
        int ok = 0;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            fig_err_set(err, FIG_E_INVALID, "unknown parameter '%.40s'", key);
            return -1;
        }
        if (!json_is_string(v)) {
            fig_err_set(err, FIG_E_INVALID, "the parameter '%.40s' is given more than once", key);
            return -1;
        }
    }
    return 0;
}

/* The trace list's filters. Empty values mean "any" (a GET form sends every field). */
static int op_parse_list_query(json_t *q, const app_list_t *apps, op_list_query_t *out, fig_err_t *err)
{
    static const char *const keys[] = {"app", "model", "outcome", "slow", "expensive", "page", NULL};
    memset(out, 0, sizeof(*out));
    out->page = 1;
    if (op_only_keys(q, keys, err) != 0)
        return -1;
    const char *v;
    if ((v = op_field(q, "app", err)) != NULL && *v) {
        if (apps == NULL || apps_find(apps, v, strlen(v)) == NULL) {
            fig_err_set(err, FIG_E_INVALID, "there is no app named '%.40s'", v);
            goto Error;
        }
        out->app = fig_strdup(v);
    }
    if ((v = op_field(q, "model", err)) != NULL && *v) {
        if (strlen(v) > OP_MODEL_MAX) {
            fig_err_set(err, FIG_E_INVALID, "model: at most %d bytes", OP_MODEL_MAX);
            goto Error;
        }
        for (const unsigned char *p = (const unsigned char *)v; *p; p++)
            if (*p < 0x20 || *p == 0x7f) {
                fig_err_set(err, FIG_E_INVALID, "model: control characters are not allowed");
                goto Error;
            }
        out->model = fig_strdup(v);
    }
    if ((v = op_field(q, "outcome", err)) != NULL && *v) {
        size_t i = 0;
        while (i < OP_N_OUTCOMES && strcmp(v, OP_OUTCOMES[i]) != 0)
            i++;
        if (i == OP_N_OUTCOMES) {
            fig_err_set(err, FIG_E_INVALID, "outcome: unknown value '%.40s'", v);
            goto Error;
        }
        out->outcome = fig_strdup(v);
    }
    if ((v = op_field(q, "slow", err)) != NULL && *v) {
        long ms;
        if (op_parse_uint(v, OP_SLOW_MAX, &ms) != 0) {
            fig_err_set(err, FIG_E_INVALID, "slow: expected whole milliseconds from 0 to %ld", OP_SLOW_MAX);
            goto Error;
        }
        out->min_total_ms = (double)ms;
        out->slow = fig_strdup(v);
    }
    if ((v = op_field(q, "expensive", err)) != NULL && *v) {
        if (op_parse_decimal(v, OP_COST_MAX, &out->min_cost_usd) != 0) {
            fig_err_set(err, FIG_E_INVALID, "expensive: expected a cost in USD from 0 to %.0f", OP_COST_MAX);
            goto Error;
        }
        out->expensive = fig_strdup(v);
    }
    if ((v = op_field(q, "page", err)) != NULL && *v) {
        long page;
        if (op_parse_uint(v, OP_MAX_PAGE, &page) != 0 || page < 1) {
            fig_err_set(err, FIG_E_INVALID, "page: expected a number from 1 to %d", OP_MAX_PAGE);
            goto Error;
        }
        out->page = (int)page;
    }
    if (err != NULL && err->code != FIG_OK)
        goto Error; /* a repeated field */
    return 0;
Error:
    op_list_query_clear(out);
    return -1;
}

typedef struct {
    int hours;          /* 1..168, default 24 */
    int bucket_minutes; /* 5..1440, default 60 */
} op_chart_query_t;

static int op_parse_chart_query(json_t *q, op_chart_query_t *out, fig_err_t *err)
{
    static const char *const keys[] = {"hours", "bucket_minutes", NULL};
    out->hours = 24;
    out->bucket_minutes = 60;
    if (op_only_keys(q, keys, err) != 0)
        return -1;
    const char *v;
    long n;
    if ((v = op_field(q, "hours", err)) != NULL && *v) {
        if (op_parse_uint(v, 168, &n) != 0 || n < 1) {
            fig_err_set(err, FIG_E_INVALID, "hours: expected a number from 1 to 168");
            return -1;
        }
        out->hours = (int)n;
    }
    if ((v = op_field(q, "bucket_minutes", err)) != NULL && *v) {
        if (op_parse_uint(v, 1440, &n) != 0 || n < 5) {
            fig_err_set(err, FIG_E_INVALID, "bucket_minutes: expected a number from 5 to 1440");
            return -1;
        }
        out->bucket_minutes = (int)n;
    }
    return 0;
}

typedef struct {
    char trace_id[33];
    int rating;       /* 1 or -1 */
    char *comment;    /* NULL = none */
    char *return_to;  /* a same-origin path ("/" when the form's was not) */
    char *csrf;       /* as sent */
} op_feedback_t;

static void op_feedback_clear(op_feedback_t *f)
{
    free(f->comment);
    free(f->return_to);
    free(f->csrf);
    memset(f, 0, sizeof(*f));
}

/* The feedback form's fields. The CSRF token is only copied here; the caller checks it
 * against the session. */
static int op_parse_feedback(json_t *form, op_feedback_t *out, fig_err_t *err)
{
    static const char *const keys[] = {"trace_id", "rating", "comment", "return_to", "_csrf", NULL};
    memset(out, 0, sizeof(*out));
    if (op_only_keys(form, keys, err) != 0)
        return -1;
    const char *id = op_field(form, "trace_id", err);
    if (id == NULL || !op_is_trace_id(id, strlen(id))) {
        fig_err_set(err, FIG_E_INVALID, "trace_id: expected 32 lower-case hex characters");
        return -1;
    }
    memcpy(out->trace_id, id, 33);
    const char *rating = op_field(form, "rating", err);
    if (rating != NULL && strcmp(rating, "up") == 0)
        out->rating = 1;
    else if (rating != NULL && strcmp(rating, "down") == 0)
        out->rating = -1;
    else {
        fig_err_set(err, FIG_E_INVALID, "rating: expected up or down");
        return -1;
    }
    const char *comment = op_field(form, "comment", err);
    if (comment != NULL && strlen(comment) > OP_COMMENT_MAX) {
        fig_err_set(err, FIG_E_INVALID, "comment: at most %d bytes", OP_COMMENT_MAX);
        return -1;
    }
    const char *csrf = op_field(form, "_csrf", err);
    const char *ret = op_field(form, "return_to", err);
    out->comment = comment != NULL && *comment ? fig_strdup(comment) : NULL;
    out->return_to = fig_strdup(op_path_ok(ret) ? ret : "/");
    out->csrf = csrf != NULL ? fig_strdup(csrf) : NULL;
    return 0;
}

/* ---------- credentials ---------- */

/* The figment_op cookie's value for token. Caller frees. */
static char *op_cookie_value(const uint8_t *key, const char *token)
{
    fig_buf_t msg = FIG_BUF_INIT;
    fig_buf_append_str(&msg, "operator:");
    fig_buf_append_str(&msg, token);
    uint8_t mac[32];
    crypto_hmac_sha256(key, SESSION_KEY_LEN, msg.data, msg.len, mac);
    fig_buf_free(&msg);
    return crypto_base64url(mac, sizeof(mac));
}

static int op_cookie_ok(const uint8_t *key, const char *token, const char *value, size_t len)
{
    if (value == NULL || token == NULL)
        return 0;
    char *expect = op_cookie_value(key, token);
    size_t n = strlen(expect);
    int ok = len == n && crypto_equal(value, expect, n);
    free(expect);
    return ok;
}

/* An Authorization header value "Bearer TOKEN" (scheme case-insensitive). */
static int op_bearer_ok(const char *v, size_t len, const char *token)
{
    if (v == NULL || token == NULL || len < 7 || strncasecmp(v, "Bearer ", 7) != 0)
        return 0;
    size_t tlen = strlen(token);
    return tlen > 0 && len - 7 == tlen && crypto_equal(v + 7, token, tlen);
}

/* Wrong tokens per client address: a fixed table shared by the loop threads. */
typedef struct {
    char ip[INET6_ADDRSTRLEN];
    uint64_t since_ms;
    int failures;
} op_fail_slot_t;

static op_fail_slot_t op_fails[OP_FAIL_SLOTS];
static pthread_mutex_t op_fail_lock = PTHREAD_MUTEX_INITIALIZER;

static op_fail_slot_t *op_fail_find(const char *ip)
{
    for (size_t i = 0; i < OP_FAIL_SLOTS; i++)
        if (op_fails[i].failures > 0 && strcmp(op_fails[i].ip, ip) == 0)
            return &op_fails[i];
    return NULL;
}

/* 0 when ip may try a token; else the milliseconds until it may again. */
static uint64_t op_fail_wait(const char *ip, uint64_t now_ms)
{
    uint64_t wait = 0;
    pthread_mutex_lock(&op_fail_lock);
    op_fail_slot_t *s = op_fail_find(ip);
    if (s != NULL && now_ms - s->since_ms < OP_FAIL_WINDOW_MS && s->failures >= OP_FAIL_MAX)
        wait = s->since_ms + OP_FAIL_WINDOW_MS - now_ms;
    pthread_mutex_unlock(&op_fail_lock);
    return wait;
}

static void op_fail_note(const char *ip, uint64_t now_ms)
{
    pthread_mutex_lock(&op_fail_lock);
    op_fail_slot_t *s = op_fail_find(ip);
    if (s == NULL) {
        /* a free or expired slot, else the oldest window (erring toward allowing) */
        s = &op_fails[0];
        for (size_t i = 0; i < OP_FAIL_SLOTS; i++) {
            op_fail_slot_t *c = &op_fails[i];
            if (c->failures == 0 || now_ms - c->since_ms >= OP_FAIL_WINDOW_MS) {
                s = c;
                break;
            }
            if (c->since_ms < s->since_ms)
                s = c;
        }
        snprintf(s->ip, sizeof(s->ip), "%s", ip);
        s->failures = 0;
    }
    if (s->failures == 0 || now_ms - s->since_ms >= OP_FAIL_WINDOW_MS) {
        s->since_ms = now_ms;
        s->failures = 0;
    }
    s->failures++;
    pthread_mutex_unlock(&op_fail_lock);
}

static void op_fail_forget(const char *ip)
{
    pthread_mutex_lock(&op_fail_lock);
    op_fail_slot_t *s = op_fail_find(ip);
    if (s != NULL)
        s->failures = 0;
    pthread_mutex_unlock(&op_fail_lock);
}

static uint64_t op_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t op_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *operator_token_init(int *generated)
{
    const char *env = getenv("FIGMENT_OPERATOR_TOKEN");
    if (generated != NULL)
        *generated = 0;
    if (env != NULL && *env != '\0')
        return fig_strdup(env);
    uint8_t raw[32];
    if (crypto_random(raw, sizeof(raw)) != 0)
        abort(); /* no entropy: a guessable token would be worse than not starting */
    if (generated != NULL)
        *generated = 1;
    return crypto_base64url(raw, sizeof(raw));
}

/* ---------- the feedback form on generated pages ---------- */

void operator_feedback_form(fig_buf_t *out, const char *trace_id, const char *page_path, const char *csrf_token)
{
    if (trace_id == NULL || !op_is_trace_id(trace_id, strlen(trace_id)) || csrf_token == NULL || *csrf_token == '\0')
        return; /* nothing to attach feedback to, or no way to post it */
    /* A textarea rather than a text input: Enter in a single-line field would submit
     * the form with the first button, a thumbs up the user never chose. */
    fig_buf_append_str(out, "\n<form class=\"feedback\" method=\"post\" action=\"/_figment/feedback\">\n"
                            "<input type=\"hidden\" name=\"trace_id\" value=\"");
    esc(out, trace_id);
    fig_buf_append_str(out, "\">\n<input type=\"hidden\" name=\"return_to\" value=\"");
    esc(out, op_path_ok(page_path) ? page_path : "/");
    fig_buf_append_str(out, "\">\n<input type=\"hidden\" name=\"_csrf\" value=\"");
    esc(out, csrf_token);
    fig_buf_append_str(out, "\">\n<label class=\"muted\">Was this page helpful? "
                            "<textarea name=\"comment\" maxlength=\"2000\" rows=\"1\" "
                            "placeholder=\"Comment (optional)\"></textarea></label>\n"
                            "<button type=\"submit\" name=\"rating\" value=\"up\">\xF0\x9F\x91\x8D Helpful</button>\n"
                            "<button type=\"submit\" name=\"rating\" value=\"down\">\xF0\x9F\x91\x8E Not helpful</button>\n"
                            "</form>\n");
}

/* ---------- pages: rendering from jansson values (pure) ---------- */

static void op_render_login(fig_buf_t *b, const char *message)
{
    fig_buf_append_str(b, "<h1>figment operator</h1>\n");
    if (message != NULL) {
        fig_buf_append_str(b, "<p class=\"op-message\">");
        esc(b, message);
        fig_buf_append_str(b, "</p>\n");
    }
    fig_buf_append_str(b, "<form class=\"card op-login\" method=\"post\" action=\"/_figment/login\">\n"
                          "<label>Operator token <input type=\"password\" name=\"token\" "
                          "autocomplete=\"current-password\" required></label>\n"
                          "<button type=\"submit\">Sign in</button>\n</form>\n"
                          "<p class=\"muted\">The token is FIGMENT_OPERATOR_TOKEN, or the one figment printed "
                          "when it started. Scripts may send \"Authorization: Bearer TOKEN\" instead.</p>\n");
}

/* /_figment/?... for q on page `page`. */
static void op_list_url(fig_buf_t *u, const op_list_query_t *q, int page)
{
    const char *names[] = {"app", "model", "outcome", "slow", "expensive"};
    const char *vals[] = {q->app, q->model, q->outcome, q->slow, q->expensive};
    char sep = '?';
    fig_buf_append_str(u, "/_figment/");
    for (size_t i = 0; i < 5; i++) {
        if (vals[i] == NULL)
            continue;
        fig_buf_appendf(u, "%c%s=", sep, names[i]);
        op_append_urlenc(u, vals[i]);
        sep = '&';
    }
    if (page > 1)
        fig_buf_appendf(u, "%cpage=%d", sep, page);
}

static void op_trace_link_open(fig_buf_t *b, const char *id)
{
    fig_buf_append_str(b, "<a href=\"/_figment/trace/");
    esc(b, id);
    fig_buf_append_str(b, "\">");
}

static void op_render_filters(fig_buf_t *b, const app_list_t *apps, const op_list_query_t *q)
{
    fig_buf_append_str(b, "<form class=\"op-filters\" method=\"get\" action=\"/_figment/\">\n"
                          "<label>App <select name=\"app\"><option value=\"\">any</option>");
    for (size_t i = 0; apps != NULL && i < apps->count; i++) {
        const char *name = apps->items[i]->name;
        fig_buf_append_str(b, "<option value=\"");
        esc(b, name);
        fig_buf_append_str(b, q->app && strcmp(q->app, name) == 0 ? "\" selected>" : "\">");
        esc(b, name);
        fig_buf_append_str(b, "</option>");
    }
    fig_buf_append_str(b, "</select></label>\n<label>Model <input type=\"text\" name=\"model\" maxlength=\"200\" "
                          "placeholder=\"provider/model\" value=\"");
    esc(b, q->model);
    fig_buf_append_str(b, "\"></label>\n<label>Outcome <select name=\"outcome\"><option value=\"\">any</option>");
    for (size_t i = 0; i < OP_N_OUTCOMES; i++) {
        fig_buf_appendf(b, "<option value=\"%s\"%s>%s</option>", OP_OUTCOMES[i],
                        q->outcome && strcmp(q->outcome, OP_OUTCOMES[i]) == 0 ? " selected" : "", OP_OUTCOMES[i]);
    }
    fig_buf_append_str(b, "</select></label>\n<label>Slow: total ms \xE2\x89\xA5 <input type=\"number\" name=\"slow\" "
                          "min=\"0\" step=\"1\" value=\"");
    esc(b, q->slow);
    fig_buf_append_str(b, "\"></label>\n<label>Expensive: USD \xE2\x89\xA5 <input type=\"number\" name=\"expensive\" "
                          "min=\"0\" step=\"any\" value=\"");
    esc(b, q->expensive);
    fig_buf_append_str(b, "\"></label>\n<p class=\"actions\"><button type=\"submit\">Filter</button>"
                          "<a href=\"/_figment/\">Clear</a></p>\n</form>\n");
}

/* rows: trace_list()'s array (at most OP_PAGE_SIZE shown); has_more: an older page exists. */
static void op_render_list(fig_buf_t *b, const app_list_t *apps, const op_list_query_t *q, const json_t *rows,
                           int has_more)
{
    op_nav(b);
    fig_buf_append_str(b, "<h1>Traces</h1>\n");
    op_render_filters(b, apps, q);
    size_t n = json_array_size(rows);
    if (n == 0) {
        fig_buf_append_str(b, "<p class=\"muted\">No traces match.</p>\n");
    } else {
        fig_buf_append_str(b, "<table class=\"op-traces\">\n<thead><tr><th>Time (UTC)</th><th>App</th>"
                              "<th>Request</th><th>Model</th><th>Status</th><th class=\"right\">Total ms</th>"
                              "<th class=\"right\">TTFT ms</th><th class=\"right\">Cost</th>"
                              "<th class=\"right\">Tokens in / out</th><th>Feedback</th></tr></thead>\n<tbody>\n");
        for (size_t i = 0; i < n && i < OP_PAGE_SIZE; i++) {
            const json_t *r = json_array_get(rows, i);
            const char *id = op_js(r, "trace_id");
            int linked = id != NULL && op_is_trace_id(id, strlen(id));
            const char *outcome = op_js(r, "outcome");
            fig_buf_append_str(b, "<tr><td>");
            op_append_time(b, op_jn(r, "started_unix_ms"));
            fig_buf_append_str(b, "</td><td>");
            esc(b, op_js(r, "app"));
            fig_buf_append_str(b, "</td><td class=\"op-path\">");
            if (linked)
                op_trace_link_open(b, id);
            esc(b, op_js(r, "method"));
            fig_buf_append_str(b, " ");
            esc(b, op_js(r, "path"));
            if (linked)
                fig_buf_append_str(b, "</a>");
            fig_buf_append_str(b, "</td><td>");
            esc(b, op_js(r, "model"));
            int bad = outcome != NULL && strcmp(outcome, "ok") != 0 && strcmp(outcome, "stale") != 0;
            fig_buf_append_str(b, bad ? "</td><td class=\"danger\">" : "</td><td>");
            op_append_int(b, op_jn(r, "status"));
            fig_buf_append_str(b, " ");
            esc(b, outcome);
            fig_buf_append_str(b, "</td><td class=\"right\">");
            op_append_ms(b, op_jn(r, "total_ms"));
            fig_buf_append_str(b, "</td><td class=\"right\">");
            op_append_ms(b, op_jn(r, "ttft_ms"));
            fig_buf_append_str(b, "</td><td class=\"right\">");
            op_append_usd(b, op_jn(r, "cost_usd"));
            fig_buf_append_str(b, "</td><td class=\"right\">");
            op_append_int(b, op_jn(r, "prompt_tokens"));
            fig_buf_append_str(b, " / ");
            op_append_int(b, op_jn(r, "completion_tokens"));
            fig_buf_append_str(b, "</td><td>");
            double fb = op_jn(r, "feedback");
            if (fb > 0)
                fig_buf_append_str(b, "\xF0\x9F\x91\x8D up");
            else if (fb < 0)
                fig_buf_append_str(b, "\xF0\x9F\x91\x8E down");
            fig_buf_append_str(b, "</td></tr>\n");
        }
        fig_buf_append_str(b, "</tbody>\n</table>\n");
    }
    if (q->page > 1 || has_more) {
        fig_buf_append_str(b, "<p class=\"actions op-paging\">");
        if (q->page > 1) {
            fig_buf_t u = FIG_BUF_INIT;
            op_list_url(&u, q, q->page - 1);
            fig_buf_append_str(b, "<a href=\"");
            esc(b, u.data);
            fig_buf_append_str(b, "\">\xE2\x86\x90 Newer</a>");
            fig_buf_free(&u);
        }
        fig_buf_appendf(b, "<span class=\"muted\">page %d</span>", q->page);
        if (has_more) {
            fig_buf_t u = FIG_BUF_INIT;
            op_list_url(&u, q, q->page + 1);
            fig_buf_append_str(b, "<a href=\"");
            esc(b, u.data);
            fig_buf_append_str(b, "\">Older \xE2\x86\x92</a>");
            fig_buf_free(&u);
        }
        fig_buf_append_str(b, "</p>\n");
    }
}

typedef enum { OP_F_STR, OP_F_INT, OP_F_MS, OP_F_USD, OP_F_BOOL, OP_F_TIME } op_field_kind_t;

typedef struct {
    const char *label, *key;
    op_field_kind_t kind;
} op_field_t;

static void op_render_fields(fig_buf_t *b, const json_t *t, const op_field_t *f, size_t n)
{
    fig_buf_append_str(b, "<table class=\"op-fields\">\n<tbody>\n");
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(t, f[i].key);
        if (v == NULL)
            continue;
        fig_buf_appendf(b, "<tr><th>%s</th><td>", f[i].label);
        double d = op_jn(t, f[i].key);
        switch (f[i].kind) {
        case OP_F_STR:
            if (json_is_string(v))
                esc(b, json_string_value(v));
            else if (!json_is_null(v)) {
                char *s = op_json_text(v);
                esc(b, s);
                free(s);
            }
            break;
        case OP_F_INT: op_append_int(b, d); break;
        case OP_F_MS:
            op_append_ms(b, d);
            if (!isnan(d))
                fig_buf_append_str(b, " ms");
            break;
        case OP_F_USD: op_append_usd(b, d); break;
        case OP_F_BOOL: fig_buf_append_str(b, isnan(d) ? "" : d != 0 ? "yes" : "no"); break;
        case OP_F_TIME:
            op_append_time(b, d);
            if (!isnan(d))
                fig_buf_append_str(b, " UTC");
            break;
        }
        fig_buf_append_str(b, "</td></tr>\n");
    }
    fig_buf_append_str(b, "</tbody>\n</table>\n");
}

static const op_field_t OP_SUMMARY[] = {
    {"Trace id", "trace_id", OP_F_STR},     {"Span id", "span_id", OP_F_STR},
    {"Started", "started_unix_ms", OP_F_TIME}, {"App", "app", OP_F_STR},
    {"Method", "method", OP_F_STR},         {"Path", "path", OP_F_STR},
    {"Status", "status", OP_F_INT},         {"Outcome", "outcome", OP_F_STR},
    {"Error", "error", OP_F_STR},           {"Model", "model", OP_F_STR},
    {"Provider", "provider", OP_F_STR},     {"Routing rule", "route_rule", OP_F_STR},
    {"Attempts", "attempts", OP_F_INT},     {"Prompt version", "prompt_version", OP_F_STR},
    {"Session", "session_id", OP_F_STR},    {"Page cache hit", "cache_hit", OP_F_BOOL},
    {"Stale page", "stale", OP_F_BOOL},
};

static const op_field_t OP_TIMINGS[] = {
    {"Queued", "queued_ms", OP_F_MS},       {"Connect", "connect_ms", OP_F_MS},
    {"Time to first token", "ttft_ms", OP_F_MS}, {"Model calls", "llm_ms", OP_F_MS},
    {"Tool calls", "tool_ms", OP_F_MS},     {"Render", "render_ms", OP_F_MS},
    {"Total", "total_ms", OP_F_MS},         {"figment overhead", "overhead_ms", OP_F_MS},
};

static const op_field_t OP_USAGE[] = {
    {"Prompt tokens", "prompt_tokens", OP_F_INT},         {"Cached tokens", "cached_tokens", OP_F_INT},
    {"Cache write tokens", "cache_write_tokens", OP_F_INT}, {"Completion tokens", "completion_tokens", OP_F_INT},
    {"Cost", "cost_usd", OP_F_USD},
};

static void op_render_tool_calls(fig_buf_t *b, const json_t *calls)
{
    size_t n = json_array_size(calls);
    fig_buf_appendf(b, "<h2>Tool calls (%zu)</h2>\n", n);
    if (n == 0) {
        fig_buf_append_str(b, "<p class=\"muted\">None.</p>\n");
        return;
    }
    fig_buf_append_str(b, "<ol class=\"op-tools\">\n");
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(calls, i);
        fig_buf_append_str(b, "<li class=\"card\"><h3>");
        esc(b, op_js(c, "name"));
        double ms = op_jn(c, "ms");
        if (!isnan(ms))
            fig_buf_appendf(b, " <span class=\"muted\">%.1f ms</span>", ms);
        if (op_jn(c, "is_error") > 0)
            fig_buf_append_str(b, " <span class=\"badge op-bad\">error</span>");
        fig_buf_append_str(b, "</h3>\n<h4>Arguments</h4>\n");
        op_append_pre_json(b, json_object_get(c, "arguments"));
        fig_buf_append_str(b, "<h4>Result</h4>\n");
        op_append_pre_json(b, json_object_get(c, "result"));
        fig_buf_append_str(b, "</li>\n");
    }
    fig_buf_append_str(b, "</ol>\n");
}

/* A message's content: a string, null, or an array of parts (text parts shown as text). */
static void op_render_content(fig_buf_t *b, const json_t *content)
{
    if (content == NULL || json_is_null(content))
        return;
    if (json_is_array(content)) {
        size_t i;
        const json_t *part;
        json_array_foreach(content, i, part) {
            const char *text = op_js(part, "text");
            if (text != NULL) {
                fig_buf_append_str(b, "<pre>");
                esc(b, text);
                fig_buf_append_str(b, "</pre>\n");
            } else {
                op_append_pre_json(b, part);
            }
        }
        return;
    }
    op_append_pre_json(b, content);
}

static void op_render_messages(fig_buf_t *b, const json_t *messages)
{
    size_t n = json_array_size(messages);
    fig_buf_appendf(b, "<h2>Prompt: the messages of the last model call (%zu)</h2>\n", n);
    if (n == 0) {
        fig_buf_append_str(b, "<p class=\"muted\">None recorded.</p>\n");
        return;
    }
    fig_buf_append_str(b, "<ol class=\"op-messages\">\n");
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(messages, i);
        const char *role = op_js(m, "role");
        const json_t *content = json_object_get(m, "content");
        fig_buf_append_str(b, "<li><p><strong class=\"op-role\">");
        esc(b, role != NULL ? role : "?");
        fig_buf_append_str(b, "</strong>");
        const char *call_id = op_js(m, "tool_call_id");
        if (call_id != NULL) {
            fig_buf_append_str(b, " <span class=\"muted\">answers ");
            esc(b, call_id);
            fig_buf_append_str(b, "</span>");
        }
        fig_buf_append_str(b, "</p>\n");
        if (role != NULL && strcmp(role, "system") == 0) {
            /* the app's long, byte-stable prompt: folded so the interaction stays readable */
            size_t len = json_is_string(content) ? json_string_length(content) : 0;
            fig_buf_appendf(b, "<details><summary>System prompt (%zu bytes)</summary>\n", len);
            op_render_content(b, content);
            fig_buf_append_str(b, "</details>\n");
        } else {
            op_render_content(b, content);
        }
        const json_t *calls = json_object_get(m, "tool_calls");
        if (json_array_size(calls) > 0) {
            fig_buf_append_str(b, "<p class=\"muted\">Tool calls:</p>\n");
            op_append_pre_json(b, calls);
        }
        fig_buf_append_str(b, "</li>\n");
    }
    fig_buf_append_str(b, "</ol>\n");
}

static void op_render_feedback_items(fig_buf_t *b, const json_t *items)
{
    size_t n = json_array_size(items);
    fig_buf_appendf(b, "<h2>Feedback (%zu)</h2>\n", n);
    if (n == 0) {
        fig_buf_append_str(b, "<p class=\"muted\">None.</p>\n");
        return;
    }
    fig_buf_append_str(b, "<ul class=\"op-feedback\">\n");
    for (size_t i = 0; i < n; i++) {
        const json_t *f = json_array_get(items, i);
        fig_buf_append_str(b, op_jn(f, "rating") > 0 ? "<li>\xF0\x9F\x91\x8D up " : "<li>\xF0\x9F\x91\x8E down ");
        fig_buf_append_str(b, "<span class=\"muted\">");
        op_append_time(b, op_jn(f, "created_unix_ms"));
        fig_buf_append_str(b, " UTC</span>");
        const char *comment = op_js(f, "comment");
        if (comment != NULL && *comment) {
            fig_buf_append_str(b, "<blockquote>");
            esc(b, comment);
            fig_buf_append_str(b, "</blockquote>");
        }
        fig_buf_append_str(b, "</li>\n");
    }
    fig_buf_append_str(b, "</ul>\n");
}

/* t: trace_get()'s object. */
static void op_render_trace(fig_buf_t *b, const json_t *t)
{
    op_nav(b);
    fig_buf_append_str(b, "<h1>Trace <code>");
    esc(b, op_js(t, "trace_id"));
    fig_buf_append_str(b, "</code></h1>\n<p class=\"muted\">");
    esc(b, op_js(t, "method"));
    fig_buf_append_str(b, " ");
    esc(b, op_js(t, "path"));
    fig_buf_append_str(b, " \xC2\xB7 ");
    esc(b, op_js(t, "app"));
    fig_buf_append_str(b, "</p>\n<h2>Summary</h2>\n");
    op_render_fields(b, t, OP_SUMMARY, sizeof(OP_SUMMARY) / sizeof(OP_SUMMARY[0]));
    fig_buf_append_str(b, "<h2>Timings</h2>\n");
    op_render_fields(b, t, OP_TIMINGS, sizeof(OP_TIMINGS) / sizeof(OP_TIMINGS[0]));
    fig_buf_append_str(b, "<h2>Usage</h2>\n");
    op_render_fields(b, t, OP_USAGE, sizeof(OP_USAGE) / sizeof(OP_USAGE[0]));
    fig_buf_append_str(b, "<h2>Route</h2>\n");
    op_append_pre_json(b, json_object_get(t, "route"));
    fig_buf_append_str(b, "<h2>Request</h2>\n");
    op_append_pre_json(b, json_object_get(t, "request"));
    fig_buf_append_str(b, "<h2>Session state before</h2>\n");
    op_append_pre_json(b, json_object_get(t, "state"));
    op_render_tool_calls(b, json_object_get(t, "tool_calls"));
    op_render_messages(b, json_object_get(t, "messages"));
    fig_buf_append_str(b, "<h2>Answer (Markdown)</h2>\n");
    op_append_pre_json(b, json_object_get(t, "answer"));

    fig_buf_append_str(b, "<h2>Page as rendered</h2>\n");
    const char *html = op_js(t, "page_html");
    if (html == NULL || *html == '\0') {
        fig_buf_append_str(b, "<p class=\"muted\">No page was rendered.</p>\n");
    } else {
        /* stored sanitized, but the store is not trusted to have kept it so: sanitize
         * again, with no CSRF token (forms in the preview cannot post) */
        const char *app = op_js(t, "app");
        sanitize_opts_t so = {app != NULL ? app : "", NULL};
        size_t clean_len = 0;
        char *clean = sanitize_html(html, strlen(html), &so, &clean_len);
        fig_buf_append_str(b, "<div class=\"op-preview\">\n");
        if (clean != NULL)
            fig_buf_append(b, clean, clean_len);
        fig_buf_append_str(b, "\n</div>\n<h3>HTML source</h3>\n<pre>");
        esc(b, html);
        fig_buf_append_str(b, "</pre>\n");
        free(clean);
    }
    op_render_feedback_items(b, json_object_get(t, "feedback"));
}

static void op_render_feedback_list(fig_buf_t *b, const json_t *rows)
{
    op_nav(b);
    fig_buf_append_str(b, "<h1>Feedback</h1>\n");
    size_t n = json_array_size(rows);
    if (n == 0) {
        fig_buf_append_str(b, "<p class=\"muted\">No feedback yet.</p>\n");
        return;
    }
    fig_buf_append_str(b, "<table class=\"op-feedback-list\">\n<thead><tr><th>Time (UTC)</th><th>Rating</th>"
                          "<th>App</th><th>Page</th><th>Comment</th></tr></thead>\n<tbody>\n");
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(rows, i);
        const char *id = op_js(r, "trace_id");
        int linked = id != NULL && op_is_trace_id(id, strlen(id));
        fig_buf_append_str(b, "<tr><td>");
        op_append_time(b, op_jn(r, "created_unix_ms"));
        fig_buf_append_str(b, op_jn(r, "rating") > 0 ? "</td><td>\xF0\x9F\x91\x8D up" : "</td><td>\xF0\x9F\x91\x8E down");
        fig_buf_append_str(b, "</td><td>");
        esc(b, op_js(r, "app"));
        fig_buf_append_str(b, "</td><td class=\"op-path\">");
        if (linked)
            op_trace_link_open(b, id);
        esc(b, op_js(r, "path") != NULL ? op_js(r, "path") : id);
        if (linked)
            fig_buf_append_str(b, "</a>");
        fig_buf_append_str(b, "</td><td>");
        esc(b, op_js(r, "comment"));
        fig_buf_append_str(b, "</td></tr>\n");
    }
    fig_buf_append_str(b, "</tbody>\n</table>\n");
}

/* ---------- charts: inline SVG ---------- */

#define OP_SVG_W 640
#define OP_SVG_H 220
#define OP_SVG_ML 64
#define OP_SVG_MR 12
#define OP_SVG_MT 26
#define OP_SVG_MB 26

typedef enum { OP_UNIT_MS, OP_UNIT_USD, OP_UNIT_PCT } op_unit_t;

typedef struct {
    const char *name;  /* legend text (escaped) */
    const char *color; /* one of ours, never from data */
    const double *v;   /* n values; NAN = no data in that bucket */
} op_series_t;

/* The smallest 1, 2 or 5 times a power of ten that is >= v (v > 0). */
static double op_nice_ceil(double v)
{
    if (!(v > 0) || !isfinite(v))
        return 1;
    double p = pow(10, floor(log10(v)));
    double steps[] = {1, 2, 5, 10};
    for (size_t i = 0; i < 4; i++)
        if (steps[i] * p >= v * (1 - 1e-12))
            return steps[i] * p;
    return 10 * p;
}

static void op_fmt_unit(op_unit_t unit, double v, char *out, size_t n)
{
    switch (unit) {
    case OP_UNIT_MS: snprintf(out, n, "%.0f ms", v); break;
    case OP_UNIT_PCT: snprintf(out, n, "%.0f%%", v); break;
    case OP_UNIT_USD:
        if (v == 0)
            snprintf(out, n, "$0");
        else if (v < 0.01)
            snprintf(out, n, "$%.4f", v);
        else
            snprintf(out, n, "$%.2f", v);
        break;
    }
}

static void op_svg_text(fig_buf_t *b, double x, double y, const char *anchor, const char *text)
{
    fig_buf_appendf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"11\" fill=\"#6b7280\">", x, y,
                    anchor);
    esc(b, text);
    fig_buf_append_str(b, "</text>\n");
}

/* A chart of n buckets starting at start_ms: lines (gaps where a value is NAN) or, with
 * bars set, one bar per bucket of the first series. The y axis runs from 0 to a
 * rounded maximum (fixed_max when > 0). */
static void op_svg_chart(fig_buf_t *b, const char *title, int bars, op_unit_t unit, const op_series_t *s, size_t ns,
                         size_t n, int64_t start_ms, int64_t bucket_ms, double fixed_max)
{
    const double pw = OP_SVG_W - OP_SVG_ML - OP_SVG_MR, ph = OP_SVG_H - OP_SVG_MT - OP_SVG_MB;
    double max = 0;
    for (size_t k = 0; k < ns; k++)
        for (size_t i = 0; i < n; i++)
            if (!isnan(s[k].v[i]) && s[k].v[i] > max)
                max = s[k].v[i];
    max = fixed_max > 0 ? fixed_max : op_nice_ceil(max);
    char label[64];

    fig_buf_appendf(b, "<svg class=\"op-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
                       "width=\"%d\" height=\"%d\" role=\"img\">\n<title>",
                    OP_SVG_W, OP_SVG_H, OP_SVG_W, OP_SVG_H);
    esc(b, title);
    fig_buf_append_str(b, "</title>\n");
    /* grid and y labels: 0, max/2, max */
    for (int g = 0; g <= 2; g++) {
        double val = max * g / 2, y = OP_SVG_MT + ph * (1 - (double)g / 2);
        fig_buf_appendf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1\"/>\n",
                        OP_SVG_ML, y, OP_SVG_W - OP_SVG_MR, y, g == 0 ? "#9aa0aa" : "#d8d8d4");
        op_fmt_unit(unit, val, label, sizeof(label));
        op_svg_text(b, OP_SVG_ML - 6, y + 4, "end", label);
    }
    fig_buf_appendf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%.1f\" stroke=\"#9aa0aa\" stroke-width=\"1\"/>\n",
                    OP_SVG_ML, OP_SVG_MT, OP_SVG_ML, OP_SVG_MT + ph);
    /* x labels: first bucket, middle, end of the window */
    const char *fmt = (int64_t)n * bucket_ms > 86400000 ? "%m-%d %H:%M" : "%H:%M";
    for (int g = 0; g <= 2 && n > 0; g++) {
        int64_t t = start_ms + (int64_t)n * bucket_ms * g / 2;
        op_fmt_time(t, fmt, label, sizeof(label));
        op_svg_text(b, OP_SVG_ML + pw * g / 2, OP_SVG_H - 8, g == 0 ? "start" : g == 1 ? "middle" : "end", label);
    }
    /* legend */
    double lx = OP_SVG_ML;
    for (size_t k = 0; k < ns; k++) {
        fig_buf_appendf(b, "<rect x=\"%.1f\" y=\"6\" width=\"10\" height=\"10\" fill=\"%s\"/>\n", lx, s[k].color);
        op_svg_text(b, lx + 14, 15, "start", s[k].name);
        lx += 24 + 7.0 * (double)strlen(s[k].name);
    }
    if (n == 0 || ns == 0) {
        fig_buf_append_str(b, "</svg>\n");
        return;
    }
    double slot = pw / (double)n;
    if (bars) {
        double w = slot * 0.8 < 1 ? 1 : slot * 0.8;
        for (size_t i = 0; i < n; i++) {
            double v = s[0].v[i];
            if (isnan(v) || v <= 0)
                continue;
            double h = ph * (v > max ? 1 : v / max);
            fig_buf_appendf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n",
                            OP_SVG_ML + slot * (double)i + (slot - w) / 2, OP_SVG_MT + ph - h, w, h, s[0].color);
        }
    } else {
        for (size_t k = 0; k < ns; k++) {
            size_t i = 0;
            while (i < n) {
                while (i < n && isnan(s[k].v[i]))
                    i++;
                size_t j = i;
                while (j < n && !isnan(s[k].v[j]))
                    j++;
                if (j == i)
                    break;
                if (j - i == 1) { /* a lone point: a dot, a polyline of one point draws nothing */
                    double v = s[k].v[i] > max ? max : s[k].v[i];
                    fig_buf_appendf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                                    OP_SVG_ML + slot * ((double)i + 0.5), OP_SVG_MT + ph * (1 - v / max), s[k].color);
                } else {
                    fig_buf_append_str(b, "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"");
                    fig_buf_append_str(b, s[k].color);
                    fig_buf_append_str(b, "\" points=\"");
                    for (size_t m = i; m < j; m++) {
                        double v = s[k].v[m] > max ? max : s[k].v[m];
                        fig_buf_appendf(b, "%s%.1f,%.1f", m == i ? "" : " ", OP_SVG_ML + slot * ((double)m + 0.5),
                                        OP_SVG_MT + ph * (1 - v / max));
                    }
                    fig_buf_append_str(b, "\"/>\n");
                }
                i = j;
            }
        }
    }
    fig_buf_append_str(b, "</svg>\n");
}

typedef struct {
    const char *app, *model; /* borrowed from the stats rows */
    double *p50, *p95, *p99, *cost, *hit; /* n each */
    double count, errors, cost_total, hits;
} op_group_t;

static int op_group_cmp(const void *a, const void *b)
{
    const op_group_t *x = a, *y = b;
    int c = strcmp(x->app, y->app);
    return c != 0 ? c : strcmp(x->model, y->model);
}

/* The charts' window: from now - hours, floored to a bucket boundary (so buckets fall
 * on round clock times), to now; n buckets. */
static int64_t op_chart_start(const op_chart_query_t *q, int64_t now_ms, size_t *n)
{
    int64_t bucket_ms = (int64_t)q->bucket_minutes * 60000;
    int64_t since = now_ms - (int64_t)q->hours * 3600000;
    int64_t start = since - ((since % bucket_ms) + bucket_ms) % bucket_ms;
    if (start < 0)
        start = 0;
    *n = (size_t)((now_ms - start + bucket_ms - 1) / bucket_ms);
    if (*n == 0)
        *n = 1;
    return start;
}

/* rows: trace_stats()'s array from op_chart_start(). */
static void op_render_charts(fig_buf_t *b, const op_chart_query_t *q, int64_t now_ms, const json_t *rows)
{
    int64_t bucket_ms = (int64_t)q->bucket_minutes * 60000;
    size_t n;
    int64_t start = op_chart_start(q, now_ms, &n);

    op_nav(b);
    fig_buf_appendf(b, "<h1>Charts</h1>\n<p class=\"muted\">The last %d hour%s in buckets of %d minutes (UTC). "
                       "<a href=\"/_figment/charts?hours=1&amp;bucket_minutes=5\">1 h</a> \xC2\xB7 "
                       "<a href=\"/_figment/charts\">24 h</a> \xC2\xB7 "
                       "<a href=\"/_figment/charts?hours=168&amp;bucket_minutes=360\">7 days</a></p>\n",
                    q->hours, q->hours == 1 ? "" : "s", q->bucket_minutes);

    op_group_t groups[OP_CHART_MAX_GROUPS];
    size_t ng = 0, dropped = 0;
    size_t i;
    const json_t *r;
    json_array_foreach(rows, i, r) {
        const char *app = op_js(r, "app"), *model = op_js(r, "model");
        if (app == NULL)
            app = "";
        if (model == NULL)
            model = "";
        double bt = op_jn(r, "bucket_unix_ms");
        if (isnan(bt) || bt < (double)start)
            continue;
        size_t idx = (size_t)(((int64_t)bt - start) / bucket_ms);
        if (idx >= n)
            continue;
        size_t g = 0;
        while (g < ng && !(strcmp(groups[g].app, app) == 0 && strcmp(groups[g].model, model) == 0))
            g++;
        if (g == ng) {
            if (ng == OP_CHART_MAX_GROUPS) {
                dropped++;
                continue;
            }
            op_group_t *ng_ = &groups[ng++];
            memset(ng_, 0, sizeof(*ng_));
            ng_->app = app;
            ng_->model = model;
            double **arrays[] = {&ng_->p50, &ng_->p95, &ng_->p99, &ng_->cost, &ng_->hit};
            for (size_t a = 0; a < 5; a++) {
                *arrays[a] = fig_malloc(n * sizeof(double));
                for (size_t k = 0; k < n; k++)
                    (*arrays[a])[k] = NAN;
            }
        }
        op_group_t *gr = &groups[g];
        double count = op_jn(r, "count"), cost = op_jn(r, "cost_usd"), hits = op_jn(r, "cache_hits");
        gr->p50[idx] = op_jn(r, "p50_ms");
        gr->p95[idx] = op_jn(r, "p95_ms");
        gr->p99[idx] = op_jn(r, "p99_ms");
        gr->cost[idx] = cost;
        gr->hit[idx] = count > 0 && !isnan(hits) ? 100.0 * hits / count : NAN;
        gr->count += isnan(count) ? 0 : count;
        gr->errors += isnan(op_jn(r, "errors")) ? 0 : op_jn(r, "errors");
        gr->cost_total += isnan(cost) ? 0 : cost;
        gr->hits += isnan(hits) ? 0 : hits;
    }
    qsort(groups, ng, sizeof(groups[0]), op_group_cmp);

    if (ng == 0) {
        fig_buf_append_str(b, "<p class=\"muted\">No interactions in this window.</p>\n");
        return;
    }
    fig_buf_append_str(b, "<table class=\"op-chart-summary\">\n<thead><tr><th>App</th><th>Model</th>"
                          "<th class=\"right\">Interactions</th><th class=\"right\">Errors</th>"
                          "<th class=\"right\">Cost</th><th class=\"right\">Cache hit rate</th></tr></thead>\n<tbody>\n");
    for (size_t g = 0; g < ng; g++) {
        fig_buf_append_str(b, "<tr><td>");
        esc(b, groups[g].app);
        fig_buf_append_str(b, "</td><td>");
        esc(b, groups[g].model);
        fig_buf_appendf(b, "</td><td class=\"right\">%.0f</td><td class=\"right\">%.0f</td><td class=\"right\">",
                        groups[g].count, groups[g].errors);
        op_append_usd(b, groups[g].cost_total);
        fig_buf_appendf(b, "</td><td class=\"right\">%.0f%%</td></tr>\n",
                        groups[g].count > 0 ? 100.0 * groups[g].hits / groups[g].count : 0.0);
    }
    fig_buf_append_str(b, "</tbody>\n</table>\n");
    if (dropped > 0)
        fig_buf_appendf(b, "<p class=\"muted\">Only the first %d app and model pairs are drawn.</p>\n",
                        OP_CHART_MAX_GROUPS);

    for (size_t g = 0; g < ng; g++) {
        op_group_t *gr = &groups[g];
        fig_buf_t name = FIG_BUF_INIT;
        fig_buf_appendf(&name, "%s \xC2\xB7 %s", gr->app, gr->model);
        fig_buf_append_str(b, "<section class=\"card op-charts\">\n<h2>");
        esc(b, name.data);
        fig_buf_append_str(b, "</h2>\n<h3>Latency</h3>\n");
        op_series_t lat[] = {{"p50", "#2f5fd0", gr->p50}, {"p95", "#e08a00", gr->p95}, {"p99", "#c62828", gr->p99}};
        fig_buf_t title = FIG_BUF_INIT;
        fig_buf_appendf(&title, "%s: latency p50, p95, p99", name.data);
        op_svg_chart(b, title.data, 0, OP_UNIT_MS, lat, 3, n, start, bucket_ms, 0);
        fig_buf_append_str(b, "<h3>Cost per bucket</h3>\n");
        op_series_t cost[] = {{"cost (USD)", "#2e7d32", gr->cost}};
        fig_buf_reset(&title);
        fig_buf_appendf(&title, "%s: cost per bucket", name.data);
        op_svg_chart(b, title.data, 1, OP_UNIT_USD, cost, 1, n, start, bucket_ms, 0);
        fig_buf_append_str(b, "<h3>Cache hit rate</h3>\n");
        op_series_t hit[] = {{"cache hits (%)", "#6a1b9a", gr->hit}};
        fig_buf_reset(&title);
        fig_buf_appendf(&title, "%s: cache hit rate", name.data);
        op_svg_chart(b, title.data, 1, OP_UNIT_PCT, hit, 1, n, start, bucket_ms, 100);
        fig_buf_append_str(b, "</section>\n");
        fig_buf_free(&title);
        fig_buf_free(&name);
    }
    for (size_t g = 0; g < ng; g++) {
        free(groups[g].p50);
        free(groups[g].p95);
        free(groups[g].p99);
        free(groups[g].cost);
        free(groups[g].hit);
    }
}

/* ---------- worker jobs ---------- */

typedef enum { OP_JOB_LIST, OP_JOB_TRACE, OP_JOB_CHARTS, OP_JOB_FEEDBACK_LIST, OP_JOB_FEEDBACK_ADD } op_job_kind_t;

typedef struct op_job op_job_t;
struct op_job {
    worker_job_t job; /* first */
    operator_env_t *env;
    h2o_req_t *req;      /* NULL once the client is gone or answered */
    op_job_t **slot;     /* in the request's pool; NULL with req */
    op_job_kind_t kind;
    op_list_query_t list;
    op_chart_query_t chart;
    char trace_id[33];
    op_feedback_t feedback;
    int64_t now_unix_ms;
    /* the result, filled by run() */
    int status;
    fig_buf_t page;
};

static void op_job_free(op_job_t *j)
{
    op_list_query_clear(&j->list);
    op_feedback_clear(&j->feedback);
    fig_buf_free(&j->page);
    free(j);
}

static void op_page(fig_buf_t *out, const char *title, const fig_buf_t *body)
{
    layout_opts_t lo = {NULL, NULL, title};
    layout_page(out, &lo, body->data, body->len);
}

static void op_error_into(op_job_t *j, int status, const char *heading, const char *message)
{
    layout_opts_t lo = {NULL, NULL, heading};
    fig_buf_reset(&j->page);
    layout_error_page(&j->page, &lo, status, heading, message, NULL);
    j->status = status;
}

static void op_job_run(worker_job_t *wj, worker_thread_t *wt)
{
    op_job_t *j = (op_job_t *)wj;
    fig_err_t err;
    fig_err_clear(&err);
    trace_reader_t *r = worker_trace_reader(wt, &err);
    if (r == NULL) {
        op_error_into(j, 503, "Traces are unavailable", err.msg);
        return;
    }
    fig_buf_t body = FIG_BUF_INIT;
    json_t *v = NULL;
    switch (j->kind) {
    case OP_JOB_LIST: {
        trace_filter_t f = {j->list.app, j->list.model, j->list.outcome, j->list.min_total_ms, j->list.min_cost_usd,
                            0, OP_PAGE_SIZE + 1, (j->list.page - 1) * OP_PAGE_SIZE};
        if ((v = trace_list(r, &f, &err)) == NULL)
            break;
        op_render_list(&body, j->env->apps, &j->list, v, json_array_size(v) > OP_PAGE_SIZE);
        op_page(&j->page, "Traces", &body);
        j->status = 200;
        break;
    }
    case OP_JOB_TRACE:
        if ((v = trace_get(r, j->trace_id, &err)) == NULL) {
            if (err.code == FIG_E_INVALID) {
                op_error_into(j, 404, "No such trace", "There is no trace with this id (it may not be written yet).");
                fig_buf_free(&body);
                return;
            }
            break;
        }
        op_render_trace(&body, v);
        op_page(&j->page, "Trace", &body);
        j->status = 200;
        break;
    case OP_JOB_CHARTS: {
        size_t n;
        int64_t start = op_chart_start(&j->chart, j->now_unix_ms, &n);
        if ((v = trace_stats(r, start, (int64_t)j->chart.bucket_minutes * 60000, &err)) == NULL)
            break;
        op_render_charts(&body, &j->chart, j->now_unix_ms, v);
        op_page(&j->page, "Charts", &body);
        j->status = 200;
        break;
    }
    case OP_JOB_FEEDBACK_LIST:
        if ((v = trace_feedback_list(r, OP_FEEDBACK_LIST_MAX, &err)) == NULL)
            break;
        op_render_feedback_list(&body, v);
        op_page(&j->page, "Feedback", &body);
        j->status = 200;
        break;
    case OP_JOB_FEEDBACK_ADD:
        if (trace_feedback_add(r, j->feedback.trace_id, j->feedback.rating, j->feedback.comment, &err) == 0) {
            j->status = 303;
        } else if (err.code == FIG_E_INVALID) {
            op_error_into(j, 404, "No such page", "figment has no record of this page, so it cannot take feedback on it.");
        } else {
            op_error_into(j, 500, "Feedback was not saved", err.msg);
        }
        fig_buf_free(&body);
        return;
    }
    if (j->status == 0)
        op_error_into(j, 500, "The trace store failed", err.msg);
    json_decref(v);
    fig_buf_free(&body);
}

/* location: a same-origin path (op_path_ok). Spaces and non-ASCII bytes are
 * percent-encoded so that the header stays plain ASCII. */
static void op_send_redirect(operator_env_t *env, h2o_req_t *req, const char *location, const char *set_cookie)
{
    static const char hex[] = "0123456789ABCDEF";
    fig_buf_t l = FIG_BUF_INIT;
    for (const unsigned char *c = (const unsigned char *)location; *c; c++) {
        if (*c <= 0x20 || *c >= 0x7f) {
            char e[3] = {'%', hex[*c >> 4], hex[*c & 15]};
            fig_buf_append(&l, e, 3);
        } else {
            fig_buf_append(&l, (const char *)c, 1);
        }
    }
    h2o_iovec_t loc = h2o_strdup(&req->pool, l.data ? l.data : "/", l.len ? l.len : 1);
    fig_buf_free(&l);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc.base, loc.len);
    fig_buf_t body = FIG_BUF_INIT;
    fig_buf_append_str(&body, "<!doctype html>\n<p><a href=\"");
    esc(&body, location);
    fig_buf_append_str(&body, "\">Continue</a></p>\n");
    env->send_html(req, 303, set_cookie, body.data, body.len);
    fig_buf_free(&body);
}

static void op_job_done(worker_job_t *wj)
{
    op_job_t *j = (op_job_t *)wj;
    h2o_req_t *req = j->req;
    if (req != NULL) {
        *j->slot = NULL; /* the request no longer points here */
        j->req = NULL;
        if (j->status == 303)
            op_send_redirect(j->env, req, j->feedback.return_to, NULL);
        else
            j->env->send_html(req, j->status, NULL, j->page.data ? j->page.data : "", j->page.len);
    }
    op_job_free(j);
}

static void op_req_dispose(void *p)
{
    op_job_t *j = *(op_job_t **)p;
    if (j != NULL) { /* the client left before the job finished */
        j->req = NULL;
        j->slot = NULL;
    }
}

static op_job_t *op_job_new(op_job_kind_t kind)
{
    op_job_t *j = fig_calloc(1, sizeof(*j));
    j->kind = kind;
    j->list.page = 1;
    return j;
}

static void op_submit(operator_env_t *env, h2o_req_t *req, op_job_t *j)
{
    j->env = env;
    j->req = req;
    j->slot = h2o_mem_alloc_shared(&req->pool, sizeof(*j->slot), op_req_dispose);
    *j->slot = j;
    j->job.run = op_job_run;
    j->job.done = op_job_done;
    j->job.receiver = env->receiver;
    worker_submit(env->workers, &j->job);
}

/* ---------- the request front ---------- */

static void op_send_page(operator_env_t *env, h2o_req_t *req, int status, const char *title, const fig_buf_t *body,
                         const char *set_cookie)
{
    fig_buf_t page = FIG_BUF_INIT;
    op_page(&page, title, body);
    env->send_html(req, status, set_cookie, page.data, page.len);
    fig_buf_free(&page);
}

static void op_send_error(operator_env_t *env, h2o_req_t *req, int status, const char *heading, const char *message)
{
    fig_buf_t page = FIG_BUF_INIT;
    layout_opts_t lo = {NULL, NULL, heading};
    layout_error_page(&page, &lo, status, heading, message, NULL);
    env->send_html(req, status, NULL, page.data, page.len);
    fig_buf_free(&page);
}

static void op_send_login(operator_env_t *env, h2o_req_t *req, int status, const char *message)
{
    fig_buf_t body = FIG_BUF_INIT;
    op_render_login(&body, message);
    if (status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer realm=\"figment\""));
    op_send_page(env, req, status, "Operator sign-in", &body, NULL);
    fig_buf_free(&body);
}

static void op_send_locked(operator_env_t *env, h2o_req_t *req, uint64_t wait_ms)
{
    char secs[24];
    snprintf(secs, sizeof(secs), "%llu", (unsigned long long)((wait_ms + 999) / 1000));
    h2o_iovec_t v = h2o_strdup(&req->pool, secs, strlen(secs));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v.base, v.len);
    op_send_error(env, req, 429, "Too many wrong tokens",
                  "Too many wrong operator tokens came from your address. Wait a minute, then try again.");
}

/* The client's address (no port), for counting wrong tokens. */
static void op_peer(h2o_req_t *req, char out[INET6_ADDRSTRLEN])
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    out[0] = '\0';
    if (len > 0 && ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, INET6_ADDRSTRLEN);
    else if (len > 0 && ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, INET6_ADDRSTRLEN);
}

static char *op_header(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    if (i < 0)
        return NULL;
    return fig_strndup(req->headers.entries[i].value.base, req->headers.entries[i].value.len);
}

/* 1: authorized. 0: a response (401 or 429) was sent. */
static int op_authorize(operator_env_t *env, h2o_req_t *req)
{
    char *cookies = op_header(req, H2O_TOKEN_COOKIE);
    if (cookies != NULL) {
        char *v = form_cookie_get(cookies, strlen(cookies), OP_COOKIE_NAME);
        int ok = v != NULL && op_cookie_ok(env->session_key, env->token, v, strlen(v));
        free(v);
        free(cookies);
        if (ok)
            return 1;
    }
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0) {
        op_send_login(env, req, 401, "This page needs the operator token.");
        return 0;
    }
    char ip[INET6_ADDRSTRLEN];
    op_peer(req, ip);
    uint64_t now = op_now_ms(), wait = op_fail_wait(ip, now);
    if (wait > 0) {
        op_send_locked(env, req, wait);
        return 0;
    }
    h2o_iovec_t v = req->headers.entries[i].value;
    if (op_bearer_ok(v.base, v.len, env->token))
        return 1;
    op_fail_note(ip, now);
    op_send_login(env, req, 401, "The operator token is not right.");
    return 0;
}

/* A POST body as urlencoded fields, or a response sent (415, 413, 400) and NULL. */
static json_t *op_post_form(operator_env_t *env, h2o_req_t *req, size_t max)
{
    char *ct = op_header(req, H2O_TOKEN_CONTENT_TYPE);
    int urlencoded = ct != NULL && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0 &&
                     (ct[33] == '\0' || ct[33] == ';');
    free(ct);
    if (!urlencoded) {
        op_send_error(env, req, 415, "Unsupported form encoding",
                      "This form must be sent as application/x-www-form-urlencoded.");
        return NULL;
    }
    size_t len = req->entity.base != NULL ? req->entity.len : 0;
    if (len > max) {
        op_send_error(env, req, 413, "Too much data", "The form you sent is larger than this page accepts.");
        return NULL;
    }
    fig_err_t err;
    fig_err_clear(&err);
    json_t *form = form_parse_urlencoded(len ? req->entity.base : "", len, &err);
    if (form == NULL)
        op_send_error(env, req, 400, "Bad request", err.msg);
    return form;
}

static void op_login_post(operator_env_t *env, h2o_req_t *req)
{
    char ip[INET6_ADDRSTRLEN];
    op_peer(req, ip);
    uint64_t now = op_now_ms(), wait = op_fail_wait(ip, now);
    if (wait > 0) {
        op_send_locked(env, req, wait);
        return;
    }
    json_t *form = op_post_form(env, req, OP_LOGIN_BODY_MAX);
    if (form == NULL)
        return;
    static const char *const keys[] = {"token", NULL};
    fig_err_t err;
    fig_err_clear(&err);
    if (op_only_keys(form, keys, &err) != 0) {
        json_decref(form);
        op_send_error(env, req, 400, "Bad request", err.msg);
        return;
    }
    const char *token = json_string_value(json_object_get(form, "token"));
    size_t tlen = strlen(env->token);
    int ok = token != NULL && tlen > 0 && strlen(token) == tlen && crypto_equal(token, env->token, tlen);
    json_decref(form);
    if (!ok) {
        op_fail_note(ip, now);
        op_send_login(env, req, 401, "That token is not right.");
        return;
    }
    op_fail_forget(ip);
    char *value = op_cookie_value(env->session_key, env->token);
    fig_buf_t c = FIG_BUF_INIT;
    fig_buf_appendf(&c, "%s=%s; Path=/_figment/; HttpOnly; SameSite=Strict", OP_COOKIE_NAME, value);
    free(value);
    /* send_html adds the header by reference: keep the value in the request's pool */
    h2o_iovec_t cookie = h2o_strdup(&req->pool, c.data, c.len);
    fig_buf_free(&c);
    op_send_redirect(env, req, "/_figment/", cookie.base);
}

static void op_feedback_post(operator_env_t *env, h2o_req_t *req)
{
    json_t *form = op_post_form(env, req, OP_BODY_MAX);
    if (form == NULL)
        return;
    fig_err_t err;
    fig_err_clear(&err);
    op_job_t *j = op_job_new(OP_JOB_FEEDBACK_ADD);
    int rc = op_parse_feedback(form, &j->feedback, &err);
    json_decref(form);
    if (rc != 0) {
        op_job_free(j);
        op_send_error(env, req, 400, "Bad request", err.msg);
        return;
    }
    /* the browser session's CSRF token: feedback comes from app pages, not the operator */
    char sid[SESSION_ID_LEN + 1];
    int session_ok = 0;
    char *cookies = op_header(req, H2O_TOKEN_COOKIE);
    if (cookies != NULL) {
        char *v = form_cookie_get(cookies, strlen(cookies), SESSION_COOKIE_NAME);
        session_ok = v != NULL && session_cookie_verify(env->session_key, v, strlen(v), sid) == 0;
        free(v);
        free(cookies);
    }
    if (!session_ok || j->feedback.csrf == NULL ||
        !session_csrf_check(env->session_key, sid, j->feedback.csrf, strlen(j->feedback.csrf))) {
        op_job_free(j);
        op_send_error(env, req, 403, "This form has expired",
                      "figment could not verify that this feedback came from a page in your session. "
                      "Go back, reload the page and try again.");
        return;
    }
    op_submit(env, req, j);
}

/* The query string as fields ({} when there is none), or a 400 sent and NULL. */
static json_t *op_query(operator_env_t *env, h2o_req_t *req)
{
    if (req->query_at == SIZE_MAX)
        return json_object();
    fig_err_t err;
    fig_err_clear(&err);
    const char *qs = req->path.base + req->query_at + 1;
    json_t *q = form_parse_urlencoded(qs, req->path.len - req->query_at - 1, &err);
    if (q == NULL)
        op_send_error(env, req, 400, "Bad request", err.msg);
    return q;
}

void operator_handle(operator_env_t *env, h2o_req_t *req)
{
    const char *p = req->path_normalized.base;
    size_t len = req->path_normalized.len;
    size_t plen = sizeof(OP_PREFIX) - 1;
    if (len < plen || memcmp(p, OP_PREFIX, plen) != 0) {
        op_send_error(env, req, 404, "Not found", "There is no such page.");
        return;
    }
    const char *rest = p + plen;
    size_t rlen = len - plen;
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                 h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    static const char *const no_keys[] = {NULL};
    fig_err_t err;
    fig_err_clear(&err);

    /* the two pages that need no operator token */
    if (h2o_memis(rest, rlen, H2O_STRLIT("login"))) {
        if (is_post) {
            op_login_post(env, req);
        } else if (is_get) {
            json_t *q = op_query(env, req);
            if (q == NULL)
                return;
            if (op_only_keys(q, no_keys, &err) != 0)
                op_send_error(env, req, 400, "Bad request", err.msg);
            else
                op_send_login(env, req, 200, NULL);
            json_decref(q);
        } else {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD, POST"));
            op_send_error(env, req, 405, "Method not allowed", "This page answers GET and POST only.");
        }
        return;
    }
    if (is_post && h2o_memis(rest, rlen, H2O_STRLIT("feedback"))) {
        op_feedback_post(env, req);
        return;
    }

    /* everything else is the operator's: nothing, not even which pages exist, without the token */
    if (!op_authorize(env, req))
        return;
    if (!is_get) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        op_send_error(env, req, 405, "Method not allowed", "This page answers GET only.");
        return;
    }
    json_t *q = op_query(env, req);
    if (q == NULL)
        return;
    op_job_t *j = NULL;
    if (rlen == 0) {
        j = op_job_new(OP_JOB_LIST);
        if (op_parse_list_query(q, env->apps, &j->list, &err) != 0)
            goto BadRequest;
    } else if (rlen == 6 + 32 && memcmp(rest, "trace/", 6) == 0 && op_is_trace_id(rest + 6, 32)) {
        j = op_job_new(OP_JOB_TRACE);
        memcpy(j->trace_id, rest + 6, 32);
        j->trace_id[32] = '\0';
        if (op_only_keys(q, no_keys, &err) != 0)
            goto BadRequest;
    } else if (h2o_memis(rest, rlen, H2O_STRLIT("charts"))) {
        j = op_job_new(OP_JOB_CHARTS);
        if (op_parse_chart_query(q, &j->chart, &err) != 0)
            goto BadRequest;
        j->now_unix_ms = op_unix_ms();
    } else if (h2o_memis(rest, rlen, H2O_STRLIT("feedback"))) {
        j = op_job_new(OP_JOB_FEEDBACK_LIST);
        if (op_only_keys(q, no_keys, &err) != 0)
            goto BadRequest;
    } else {
        json_decref(q);
        op_send_error(env, req, 404, "Not found", "There is no such operator page.");
        return;
    }
    json_decref(q);
    op_submit(env, req, j);
    return;

BadRequest:
    json_decref(q);
    op_job_free(j);
    op_send_error(env, req, 400, "Bad request", err.msg);
}
