/*
 * agent.c — the agent loop (see agent.h).
 *
 * Everything here runs on the interaction's loop thread; blocking work (session
 * store, sql tool) is sent to the worker pool and comes back through the
 * worker's done callback. Each step checks `ix->req`: once the client is gone the
 * interaction stops and nothing is written.
 */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../tools/sandbox.h"
#include "../tools/tools.h"
#include "llm_router.h"
#include "metrics.h"
#include "operator.h"
#include "form.h"
#include "render.h"
#include "uploads.h"

/* Cache hits traced one by one per app and second; the rest are folded (record_trace). */
#define HIT_TRACES_PER_SECOND 20

/* A non-NULL req for "still wanted" of interactions without a client (prefetches, and
 * a cache leader whose client left); never dereferenced. */
static h2o_req_t prefetch_no_client;

/* parallel attempts (see their section below) */
typedef struct attempt {
    interaction_t *parent; /* not a reference: the parent cancels its attempts before it goes
                              (only read on the loop thread, while the attempt is not cancelled) */
    const app_action_t *action; /* the app's (immutable): what the worker-side verifier reads */
    int index;
    app_t app;             /* a copy of the app whose db_path is this attempt's scratch database */
    char *db_path;
    char *dir;             /* this attempt's files */
    fig_buf_t write_log;
    int state;             /* 0 running, 1 verifying, 2 failed, 3 passed */
    char *why;             /* why it failed */
    int verify_ok;
} attempt_t;

typedef struct attempt_set {
    const app_action_t *action;
    interaction_t **children;
    int n;
    int winner;            /* index, or -1 */
    int done;              /* the parent has its answer (or gave up) */
} attempt_set_t;

static void ask_model(interaction_t *ix);
static void run_next_tool(interaction_t *ix);
static void resume_confirmed(interaction_t *ix);
static void prefetch_links(interaction_t *ix);
static void save_and_respond(interaction_t *ix);
static void attempts_start(interaction_t *ix, const app_action_t *action);
static void attempt_cancel(interaction_t *child);
static void attempt_verify_python(interaction_t *child);

/* After the response: what the interaction cost (budgets read it back at start) and,
 * for a good GET page, the page itself (served marked stale if the model later fails). */
static session_usage_t usage_record(const interaction_t *ix)
{
    session_usage_t u = {
        .session_id = ix->session.id,
        .app = ix->rt->app->name,
        .model = ix->rec.model,
        .outcome = ix->rec.outcome,
        .prompt_tokens = ix->rec.usage.prompt_tokens,
        .cached_tokens = ix->rec.usage.cached_tokens,
        .cache_write_tokens = ix->rec.usage.cache_write_tokens,
        .completion_tokens = ix->rec.usage.completion_tokens,
        .cost_usd = ix->rec.cost_usd,
        .route = ix->rec.route,
    };
    return u;
}

static void record_run(worker_job_t *job, worker_thread_t *wt)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    fig_err_t err;
    fig_err_clear(&err);
    session_store_t *st = worker_session_store(wt, &err);
    if (st == NULL)
        return;
    if (ix->rec.attempts > 0) {
        session_usage_t u = usage_record(ix);
        session_record_usage(st, &u, &err);
    }
    if (ix->rec.status == 200 && !ix->rec.stale && ix->page_html != NULL && strcmp(ix->method, "GET") == 0)
        session_page_save(st, ix->session.id, ix->rt->app->name, ix->url, ix->page_title, ix->page_html, &err);
}

static void record_done(worker_job_t *job)
{
    interaction_unref(H2O_STRUCT_FROM_MEMBER(interaction_t, job, job));
}

static double ns_to_ms(uint64_t a, uint64_t b)
{
    return b > a ? (double)(b - a) / 1e6 : 0;
}

/* The one trace of this interaction, to the trace store, the metrics and OTLP. */
static void record_trace(interaction_t *ix)
{
    const interaction_record_t *r = &ix->rec;
    double total = ns_to_ms(r->start_ns, r->end_ns);
    double overhead = total - r->llm_ms - r->tool_ms;
    if (overhead < 0)
        overhead = 0;
    metrics_interaction_t m = {
        .app = ix->rt->app->name,
        .model = r->model,
        .outcome = r->outcome,
        .total_s = total / 1e3,
        .ttft_s = r->llm_calls > 0 ? r->first_ttft_ms / 1e3 : -1,
        .overhead_s = overhead / 1e3,
        .prompt_tokens = r->usage.prompt_tokens,
        .cached_tokens = r->usage.cached_tokens,
        .cache_write_tokens = r->usage.cache_write_tokens,
        .completion_tokens = r->usage.completion_tokens,
        .cost_usd = r->cost_usd,
    };
    metrics_interaction(&m);
    if (ix->env->traces == NULL && ix->env->otlp == NULL)
        return;
    int64_t folded = 0;
    if (r->cache_hit) {
        /* a busy cache would write a trace row per hit (tens of thousands a second): trace
         * the first HIT_TRACES_PER_SECOND of each second per app, fold the rest into the
         * next traced one (metrics count every hit) */
        app_runtime_t *rt = (app_runtime_t *)ix->rt;
        long long sec = (long long)time(NULL);
        long long seen = rt->hit_trace_second;
        if (seen != sec && atomic_compare_exchange_strong(&rt->hit_trace_second, &seen, sec))
            rt->hit_traces = 0;
        if (atomic_fetch_add(&rt->hit_traces, 1) >= HIT_TRACES_PER_SECOND) {
            rt->hits_untraced++;
            return;
        }
        folded = atomic_exchange(&rt->hits_untraced, 0);
    }

    trace_t *t = trace_new();
    memcpy(t->trace_id, ix->trace_id, sizeof(t->trace_id));
    memcpy(t->span_id, ix->span_id, sizeof(t->span_id));
    memcpy(t->session_id, ix->session.id, sizeof(t->session_id));
    t->app = fig_strdup(ix->rt->app->name);
    t->method = fig_strdup(ix->method ? ix->method : "");
    t->path = fig_strdup(ix->url ? ix->url : "");
    t->route_rule = fig_strdup(r->route_rule ? r->route_rule : "default");
    t->model = fig_strdup(r->model);
    const char *slash = strchr(r->model, '/');
    t->provider = slash ? fig_strndup(r->model, (size_t)(slash - r->model)) : fig_strdup("");
    t->route = fig_strdup(r->route);
    t->prompt_version = fig_strdup(ix->rt->prompt_version);
    t->status = r->status;
    t->outcome = fig_strdup(r->outcome);
    t->error = ix->error_text ? fig_strdup(ix->error_text) : NULL;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    t->started_unix_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000 - (int64_t)total;
    t->queued_ms = r->session_loaded_ns ? ns_to_ms(r->start_ns, r->session_loaded_ns) : 0;
    t->connect_ms = r->connect_ms;
    t->ttft_ms = r->first_ttft_ms;
    t->llm_ms = r->llm_ms;
    t->tool_ms = r->tool_ms;
    t->render_ms = r->render_ms;
    t->total_ms = total;
    t->overhead_ms = overhead;
    t->prompt_tokens = r->usage.prompt_tokens;
    t->cached_tokens = r->usage.cached_tokens;
    t->cache_write_tokens = r->usage.cache_write_tokens;
    t->completion_tokens = r->usage.completion_tokens;
    t->cost_usd = r->cost_usd;
    t->attempts = r->attempts;
    t->cache_hit = r->cache_hit;
    t->folded_hits = folded;
    t->stale = r->stale;
    t->state = ix->state_before ? json_incref(ix->state_before) : json_object();
    t->request = json_pack("{s:s, s:s, s:O, s:O}", "method", ix->method ? ix->method : "", "path",
                           ix->path ? ix->path : "", "query", ix->query ? ix->query : json_null(), "form",
                           ix->form ? ix->form : json_null());
    t->tool_calls = json_incref(ix->tool_log);
    t->messages = ix->messages ? json_deep_copy(ix->messages) : json_array();
    t->answer = ix->result.content.data ? fig_strdup(ix->result.content.data) : NULL;
    t->page_html = ix->page_html ? fig_strdup(ix->page_html) : NULL;
    if (ix->env->otlp != NULL)
        otlp_submit(ix->env->otlp, t);
    if (ix->env->traces != NULL)
        trace_submit(ix->env->traces, t);
    else
        trace_free(t);
}

static void cache_end_flight(interaction_t *ix, page_cache_entry_t *entry);
static void cache_end_flight(interaction_t *ix, page_cache_entry_t *entry)
{
    if (ix->cache_mode == 1 && !ix->cache_ended) {
        ix->cache_ended = 1;
        page_cache_flight_end(ix->env->page_cache, ix->cache_key, entry, page_cache_now_ms());
    }
}

static void finish(interaction_t *ix, int status, const char *outcome)
{
    /* the followers of this generation get the page (or generate their own) */
    cache_end_flight(ix, status == 200 && !ix->rec.cache_hit ? ix->cache_entry : NULL);
    ix->rec.status = status;
    ix->rec.outcome = outcome;
    ix->rec.end_ns = interaction_now_ns();
    if (!ix->env->quiet)
        interaction_log(ix);
    record_trace(ix);
    if (ix->prefetch) {
        ((app_runtime_t *)ix->rt)->prefetch_running--; /* atomic */
        ix->req = NULL;
    } else {
        ix->env->respond(ix, status);
        if (status == 200 && ix->cache_mode == 1 && ix->page_html != NULL && ix->rt->app->prefetch_links > 0)
            prefetch_links(ix);
    }
    if (ix->counted_in_flight) { /* answered: no longer in flight, whatever is recorded after */
        ix->counted_in_flight = 0;
        metrics_in_flight_add(-1);
        ix->env->in_flight--;
    }
    if (!ix->recorded && (ix->rec.attempts > 0 || (status == 200 && ix->page_html != NULL))) {
        ix->job.run = record_run;
        ix->job.done = record_done;
        ix->job.receiver = ix->env->receiver;
        interaction_ref(ix);
        worker_submit(ix->env->workers, &ix->job);
    }
    if (ix->prefetch)
        interaction_unref(ix); /* the reference prefetch_start kept in place of a request's */
}

/* The page to send: a whole document, or only the rest of the body when the shell
 * has already gone out (streaming). */
static void compose_page(interaction_t *ix, const char *title, const char *body, size_t len)
{
    fig_buf_reset(&ix->page);
    if (ix->streaming) {
        fig_buf_append(&ix->page, body, len);
        return;
    }
    layout_opts_t lo = {ix->rt->app->name, ix->rt->app->title, title};
    layout_page(&ix->page, &lo, body, len);
}

static void attempt_failed(interaction_t *child, const char *why);

static void fail(interaction_t *ix, int status, const char *outcome, const char *heading, const char *message)
{
    if (ix->attempt != NULL) { /* an attempt ends quietly; its parent decides */
        attempt_failed(ix, message);
        return;
    }
    free(ix->error_text);
    ix->error_text = fig_strdup(message);
    fig_buf_reset(&ix->page);
    if (ix->streaming) {
        layout_error_section(&ix->page, status, heading, message, ix->url);
    } else {
        layout_opts_t lo = {ix->rt->app->name, ix->rt->app->title, heading};
        layout_error_page(&ix->page, &lo, status, heading, message, ix->url);
    }
    finish(ix, status, outcome);
}

static void fail_upstream_now(interaction_t *ix, const fig_err_t *err)
{
    if (err->code == FIG_E_UPSTREAM_TIMEOUT)
        fail(ix, 504, "upstream_timeout", "The model took too long", err->msg);
    else
        fail(ix, 502, "upstream", "The model could not produce this page", err->msg);
}

/* Every model failed: a GET may still get the last good rendering of the same page
 * in this session, marked stale. */
static void stale_run(worker_job_t *job, worker_thread_t *wt)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    session_store_t *st = worker_session_store(wt, &ix->job_err);
    char *title = NULL, *html = NULL;
    int64_t saved_at = 0;
    if (st == NULL || session_page_load(st, ix->session.id, ix->rt->app->name, ix->url, &title, &html, &saved_at,
                                        &ix->job_err) != 1)
        return;
    time_t t = (time_t)saved_at;
    struct tm tm;
    char when[64];
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
    fig_buf_t body = FIG_BUF_INIT;
    fig_buf_append_str(&body, "<p class=\"stale notice\">This page could not be refreshed: the model is unavailable. "
                              "You are seeing the version from ");
    fig_buf_append_str(&body, when);
    fig_buf_append_str(&body, ". <a href=\"");
    fig_buf_append_html(&body, ix->url, strlen(ix->url));
    fig_buf_append_str(&body, "\">Try again</a></p>\n");
    fig_buf_append_str(&body, html);
    compose_page(ix, title, body.data, body.len);
    fig_buf_free(&body);
    ix->rec.stale = 1;
    free(title);
    free(html);
}

static void stale_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    if (ix->req != NULL) {
        if (ix->rec.stale)
            finish(ix, 200, "stale");
        else
            fail_upstream_now(ix, &ix->fail_err);
    }
    interaction_unref(ix);
}

static void fail_upstream(interaction_t *ix, const fig_err_t *err)
{
    if (ix->attempt != NULL) {
        attempt_failed(ix, err->msg);
        return;
    }
    if (strcmp(ix->method, "GET") != 0) {
        fail_upstream_now(ix, err);
        return;
    }
    ix->fail_err = *err;
    fig_err_clear(&ix->job_err);
    ix->job.run = stale_run;
    ix->job.done = stale_done;
    ix->job.receiver = ix->env->receiver;
    interaction_ref(ix);
    worker_submit(ix->env->workers, &ix->job);
}

static long time_left_ms(const interaction_t *ix)
{
    uint64_t deadline = ix->rec.start_ns + (uint64_t)ix->rt->app->limits.deadline_ms * 1000000u;
    uint64_t now = interaction_now_ns();
    return now >= deadline ? 0 : (long)((deadline - now) / 1000000u);
}

/* ---- step 1: load the session ---- */

static void load_session_run(worker_job_t *job, worker_thread_t *wt)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    session_store_t *st = worker_session_store(wt, &ix->job_err);
    if (st == NULL)
        return;
    char id[SESSION_ID_LEN + 1]; /* session_load() clears its output, which holds the id */
    memcpy(id, ix->session.id, sizeof(id));
    if (session_load(st, id, ix->rt->app->name, ix->rt->app->limits.history_items, &ix->session, &ix->job_err) != 0)
        return;
    session_cache_put(ix->env->session_cache, ix->rt->app->name, &ix->session);
    if (ix->upload_dir != NULL) {
        for (size_t i = 0; i < ix->n_upload_files; i++) {
            interaction_upload_t *u = &ix->upload_files[i];
            if (uploads_store(ix->upload_dir, ix->rt->app, u->filename, u->data, u->len, NULL, &ix->job_err) != 0)
                return;
        }
        if ((ix->uploads = uploads_list(ix->upload_dir, &ix->job_err)) == NULL)
            return;
    }
    if (ix->confirm_id[0] != '\0' &&
        confirm_claim(st, ix->confirm_id, id, ix->rt->app->name, time(NULL), &ix->pending, &ix->claim, &ix->job_err) != 0)
        return;
    if (!budget_knows_session(ix->env->budget, id)) {
        double spent = session_spent_usd(st, id, &ix->job_err);
        if (spent >= 0)
            budget_seed_session(ix->env->budget, id, spent);
    }
}

/* ---- the page cache: a GET of an app with cache.ttl_s ---- */

static void generate(interaction_t *ix);

/* Serves a cached page (the caller's reference to e passes to ix). */
static void serve_cached(interaction_t *ix, page_cache_entry_t *e)
{
    page_cache_entry_unref(ix->cache_entry);
    ix->cache_entry = e;
    ix->rec.cache_hit = 1;
    metrics_cache(1);
    finish(ix, 200, "cache_hit");
}

static void cache_db_run(worker_job_t *job, worker_thread_t *wt)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    fig_err_t err;
    fig_err_clear(&err);
    sqlite3 *db = worker_page_cache_db(wt, &err);
    page_cache_entry_t *e = NULL;
    if (db != NULL && page_cache_db_get(db, ix->cache_key, page_cache_now_ms(), &e, &err) == 1 && e != NULL)
        ix->cache_entry = e;
}

static void cache_db_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    if (ix->cache_entry != NULL) { /* stored before a restart: into memory, and to every follower */
        page_cache_entry_t *e = ix->cache_entry;
        ix->cache_entry = NULL;
        cache_end_flight(ix, e);
        if (ix->req != NULL)
            serve_cached(ix, e);
        else
            page_cache_entry_unref(e);
    } else if (ix->req != NULL) {
        metrics_cache(0);
        generate(ix);
    } else {
        cache_end_flight(ix, NULL);
    }
    interaction_unref(ix);
}

static void cache_woken(page_cache_waiter_t *w, page_cache_entry_t *e)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, cache_waiter, w);
    ix->cache_mode = 0;
    if (ix->req != NULL) {
        if (e != NULL) {
            serve_cached(ix, e);
        } else {
            metrics_cache(0);
            generate(ix); /* the leader failed: this one tries on its own */
        }
    } else {
        page_cache_entry_unref(e);
    }
    interaction_unref(ix);
}

/* The model chain as text, for the cache key. */
static void chain_text(const interaction_t *ix, fig_buf_t *out)
{
    for (size_t i = 0; i < ix->chain->n; i++) {
        const model_ref_t *m = &ix->chain->models[i];
        fig_buf_appendf(out, "%s%s/%s", i ? "," : "", m->provider->name, m->model->name);
    }
}

/* Returns 1 when the cache took over the interaction (a hit served, a follower
 * waiting, or a store lookup under way), 0 to generate without caching. */
static int cache_lookup(interaction_t *ix)
{
    const app_t *app = ix->rt->app;
    page_cache_t *c = ix->env->page_cache;
    if (c == NULL || app->cache_ttl_s <= 0 || strcmp(ix->method, "GET") != 0 || ix->confirm_id[0] != '\0' ||
        ix->cache_mode != 0 || ix->cache_ended)
        return 0;
    ix->data_version_at_start = app->data_version;
    fig_buf_t chain = FIG_BUF_INIT;
    chain_text(ix, &chain);
    const char *q = strchr(ix->url, '?');
    page_cache_key_parts_t parts = {
        .app = app->name,
        .prompt_version = ix->rt->prompt_version,
        .model = chain.data ? chain.data : "",
        .method = "GET",
        .path = ix->path,
        .query = q ? q + 1 : NULL,
        .state = ix->session.state,
        .data_version = ix->data_version_at_start,
    };
    fig_err_t err;
    fig_err_clear(&err);
    int ok = page_cache_key(ix->cache_key, &parts, &err) == 0;
    fig_buf_free(&chain);
    if (!ok)
        return 0;
    ix->cache_waiter.receiver = ix->env->cache_receiver;
    ix->cache_waiter.cb = cache_woken;
    page_cache_entry_t *hit = NULL;
    switch (page_cache_flight_begin(c, ix->cache_key, page_cache_now_ms(), &ix->cache_waiter, &hit)) {
    case PAGE_CACHE_HIT:
        if (ix->prefetch) { /* already there */
            page_cache_entry_unref(hit);
            finish(ix, 200, "prefetch_skipped");
            return 1;
        }
        serve_cached(ix, hit);
        return 1;
    case PAGE_CACHE_WAIT:
        if (ix->prefetch) { /* someone is generating it already */
            page_cache_flight_leave(c, &ix->cache_waiter);
            finish(ix, 200, "prefetch_skipped");
            return 1;
        }
        ix->cache_mode = 2;
        interaction_ref(ix); /* released by cache_woken, or by agent_abandon's leave */
        return 1;
    default: /* lead: maybe the page survived a restart in the store */
        ix->cache_mode = 1;
        ix->job.run = cache_db_run;
        ix->job.done = cache_db_done;
        ix->job.receiver = ix->env->receiver;
        interaction_ref(ix);
        worker_submit(ix->env->workers, &ix->job);
        return 1;
    }
}

/* The leader's page, if nothing it did changed data or state: rendered again with the
 * CSRF placeholder so that any session may be served it. */
static void cache_prepare_entry(interaction_t *ix, const char *md, size_t md_len, const char *title)
{
    const app_t *app = ix->rt->app;
    if (ix->cache_mode != 1 || app->data_version != ix->data_version_at_start ||
        !json_equal(ix->state_before, ix->session.state))
        return;
    if (ix->prefetch) { /* a refused write (prefetches read only) would make a page the user never asked for */
        for (size_t i = 0; i < json_array_size(ix->tool_log); i++)
            if (json_is_true(json_object_get(json_array_get(ix->tool_log, i), "is_error")))
                return;
    }
    sanitize_opts_t so = {app->name, page_cache_placeholder};
    render_page_t page = {0};
    fig_err_t err;
    fig_err_clear(&err);
    if (render_page(md, md_len, &so, &page, &err) != 0)
        return;
    fig_buf_t body = FIG_BUF_INIT, doc = FIG_BUF_INIT;
    fig_buf_append(&body, page.html, page.html_len);
    operator_feedback_form(&body, ix->trace_id, ix->url, page_cache_placeholder);
    layout_opts_t lo = {app->name, app->title, title};
    layout_page(&doc, &lo, body.data, body.len);
    int64_t now = page_cache_now_ms();
    ix->cache_entry = page_cache_entry_new(ix->cache_key, app->name, title, doc.data, doc.len,
                                           ix->data_version_at_start, now, now + (int64_t)app->cache_ttl_s * 1000,
                                           &err);
    fig_buf_free(&body);
    fig_buf_free(&doc);
    render_page_free(&page);
}

/* The session is known (from the store, the cache, or fresh): a cached page, or
 * check the budgets and ask the model. */
static void session_ready(interaction_t *ix)
{
    ix->rec.session_loaded_ns = interaction_now_ns();
    if (ix->session.state != NULL)
        ix->state_before = json_deep_copy(ix->session.state);
    if (cache_lookup(ix))
        return;
    generate(ix);
}

/* No cached page: check the budgets and ask the model. */
static void generate(interaction_t *ix)
{
    fig_err_t berr;
    fig_err_clear(&berr);
    if (budget_check(ix->env->budget, ix->session.id, ix->rt->app->name, time(NULL), &berr) != 0) {
        fail(ix, 402, "budget", "The spending limit is reached", berr.msg);
        return;
    }
    if (ix->stream_wanted) {
        ix->env->stream_begin(ix);
        ix->streaming = ix->stream != NULL;
    }
    if (ix->confirm_id[0] != '\0') {
        resume_confirmed(ix);
        return;
    }
    char *text = interaction_describe(ix);
    ix->messages = json_array();
    json_array_append_new(ix->messages, json_pack("{s:s, s:s}", "role", "user", "content", text));
    free(text);
    const app_action_t *action = ix->attempt == NULL && !ix->prefetch && ix->confirm_id[0] == '\0'
                                     ? app_action_match(ix->rt->app, ix->method, ix->path)
                                     : NULL;
    if (action != NULL) {
        attempts_start(ix, action);
        return;
    }
    ask_model(ix);
}

static void load_session_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    if (ix->req != NULL) {
        if (ix->job_err.code == FIG_E_TOO_LARGE)
            fail(ix, 413, "upload", "File not accepted", ix->job_err.msg);
        else if (ix->job_err.code != FIG_OK)
            fail(ix, 500, "session_store", "figment could not load your session", ix->job_err.msg);
        else
            session_ready(ix);
    }
    interaction_unref(ix);
}

void agent_start(interaction_t *ix)
{
    agent_choose_models(ix);
    agent_env_t *env = ix->env;
    const char *app = ix->rt->app->name;
    /* No worker hop when the session is known: a fresh id (nothing stored yet) or a
     * cached one whose spending the budget accountant already tracks. */
    if (ix->new_session) {
        if (ix->upload_dir != NULL)
            ix->uploads = json_array(); /* a new session has no files yet */
        ix->session.state = json_object();
        ix->session.history = json_array();
        ix->session.exists = 0;
        if (!budget_knows_session(env->budget, ix->session.id))
            budget_seed_session(env->budget, ix->session.id, 0);
        session_ready(ix);
        return;
    }
    if (ix->confirm_id[0] == '\0' && ix->upload_dir == NULL && budget_knows_session(env->budget, ix->session.id)) {
        char id[SESSION_ID_LEN + 1];
        memcpy(id, ix->session.id, sizeof(id));
        if (session_cache_get(env->session_cache, id, app, &ix->session)) {
            session_ready(ix);
            return;
        }
        memcpy(ix->session.id, id, sizeof(id));
    }
    fig_err_clear(&ix->job_err);
    ix->job.run = load_session_run;
    ix->job.done = load_session_done;
    ix->job.receiver = ix->env->receiver;
    interaction_ref(ix);
    worker_submit(ix->env->workers, &ix->job);
}

/* ---- step 2: ask the model ---- */

static void save_and_respond(interaction_t *ix);

/* Streaming: each finished block of the page goes out as soon as it is complete,
 * rendered and sanitized on its own so that nothing later can change it. Runs inside
 * curl's callback: the front flushes later. */
static void render_stream_blocks(interaction_t *ix, int all, fig_buf_t *out)
{
    const char *md = ix->stream_md.data + ix->stream_md_done;
    size_t left = ix->stream_md.len - ix->stream_md_done;
    size_t cut = all ? left : render_block_cut(md, left);
    if (cut == 0)
        return;
    sanitize_opts_t so = {ix->rt->app->name, ix->csrf_token};
    render_page_t page = {0};
    fig_err_t err;
    fig_err_clear(&err);
    if (render_page(md, cut, &so, &page, &err) == 0)
        fig_buf_append(out, page.html, page.html_len);
    render_page_free(&page);
    ix->stream_md_done += cut;
}

static void on_model_text(void *ctx, const char *s, size_t n)
{
    interaction_t *ix = ctx;
    if (ix->req == NULL || ix->stream == NULL)
        return;
    fig_buf_append(&ix->stream_md, s, n);
    fig_buf_t html = FIG_BUF_INIT;
    render_stream_blocks(ix, 0, &html);
    if (html.len > 0)
        ix->env->stream_write(ix, html.data, html.len, 1);
    fig_buf_free(&html);
}

static void on_model_answer(void *ctx, const fig_err_t *err, const llm_route_report_t *rep)
{
    interaction_t *ix = ctx;
    ix->llm = NULL;
    ix->rec.llm_calls++;
    ix->rec.attempts += rep->attempts;
    ix->rec.retries += rep->retries;
    ix->rec.fallbacks += rep->fallbacks;
    ix->rec.hedges += rep->hedges;
    if (ix->rec.llm_calls == 1) {
        ix->rec.first_ttft_ms = rep->ttft_ms;
        ix->rec.connect_ms = rep->connect_ms;
    }
    ix->rec.usage.prompt_tokens += rep->usage.prompt_tokens;
    ix->rec.usage.cached_tokens += rep->usage.cached_tokens;
    ix->rec.usage.cache_write_tokens += rep->usage.cache_write_tokens;
    ix->rec.usage.completion_tokens += rep->usage.completion_tokens;
    ix->rec.cost_usd += rep->cost_usd;
    budget_add(ix->env->budget, ix->session.id, ix->rt->app->name, rep->cost_usd, time(NULL));
    if (rep->model.provider != NULL)
        snprintf(ix->rec.model, sizeof(ix->rec.model), "%s/%s", rep->model.provider->name, rep->model.model->name);
    size_t used = strlen(ix->rec.route);
    if (used + 4 < sizeof(ix->rec.route)) /* each model call's decisions, " | " between calls */
        snprintf(ix->rec.route + used, sizeof(ix->rec.route) - used, "%s%.*s", used ? " | " : "",
                 (int)(sizeof(ix->rec.route) - used - 4), rep->decision);
    ix->rec.llm_ms += (double)(interaction_now_ns() - ix->step_start_ns) / 1e6;
    if (err != NULL) {
        fail_upstream(ix, err);
        return;
    }
    if (ix->result.ncalls == 0) {
        save_and_respond(ix);
        return;
    }
    if (ix->round + 1 >= ix->rt->app->limits.max_tool_rounds) {
        fig_err_t e;
        fig_err_set(&e, FIG_E_UPSTREAM, "the model was still calling tools after %d rounds; the limit is %d",
                    ix->round + 1, ix->rt->app->limits.max_tool_rounds);
        fail_upstream(ix, &e);
        return;
    }
    /* Text streamed in a round that calls tools stays shown; the next round starts afresh. */
    fig_buf_reset(&ix->stream_md);
    ix->stream_md_done = 0;
    /* Keep the assistant's turn in the conversation, then answer each call. */
    json_t *calls = json_array();
    for (size_t i = 0; i < ix->result.ncalls; i++) {
        const llm_tool_call_t *c = &ix->result.calls[i];
        json_array_append_new(calls, json_pack("{s:s, s:s, s:s}", "id", c->id ? c->id : "", "name",
                                               c->name ? c->name : "", "arguments",
                                               c->arguments.data ? c->arguments.data : ""));
    }
    json_array_append_new(ix->messages, json_pack("{s:s, s:s, s:o}", "role", "assistant", "content",
                                                  ix->result.content.data ? ix->result.content.data : "",
                                                  "tool_calls", calls));
    ix->tool_index = 0;
    run_next_tool(ix);
}

static void ask_model(interaction_t *ix)
{
    long left = time_left_ms(ix);
    if (left <= 0) {
        fig_err_t e;
        fig_err_set(&e, FIG_E_UPSTREAM_TIMEOUT, "the interaction's deadline of %d ms passed",
                    ix->rt->app->limits.deadline_ms);
        fail_upstream(ix, &e);
        return;
    }
    llm_result_free(&ix->result);
    llm_result_init(&ix->result);
    if (ix->streaming) {
        ix->result.on_text = on_model_text;
        ix->result.on_text_ctx = ix;
    }
    const app_t *app = ix->rt->app;
    llm_route_request_t req = {
        .chain = ix->chain->models,
        .n_chain = ix->chain->n,
        .system = ix->rt->system_prompt,
        .tools = ix->rt->tools,
        .messages = ix->messages,
        .max_tokens = app->limits.max_output_tokens,
        .deadline_ms = h2o_now(ix->env->router.loop) + (uint64_t)left,
    };
    ix->step_start_ns = interaction_now_ns();
    /* on_model_answer may run before this returns, when nothing could be started */
    ix->llm = llm_route_start(&ix->env->router, &req, &ix->result, on_model_answer, ix);
}

void agent_choose_models(interaction_t *ix)
{
    const app_t *app = ix->rt->app;
    const app_route_t *route = app_route_match(app, ix->method, ix->path);
    ix->chain = &ix->rt->chain;
    ix->rec.route_rule = "default";
    if (route != NULL) {
        static const char *names[] = {"routing[0]", "routing[1]", "routing[2]", "routing[3]", "routing[4]",
                                      "routing[5]", "routing[6]", "routing[7]"};
        size_t i = (size_t)(route - app->routes);
        ix->chain = &ix->rt->route_chains[i];
        ix->rec.route_rule = i < 8 ? names[i] : "routing[8+]";
    }
}

void agent_abandon(interaction_t *ix)
{
    if (ix->cache_mode == 1 && !ix->cache_ended && !ix->prefetch && ix->attempts == NULL && ix->rec.status == 0) {
        /* the page is going into the cache (its followers, and the next visitor, want it):
         * finish it without the client, as a prefetch does (read-only from here on, the
         * session not saved, the cost recorded as "prefetch") */
        ix->req = &prefetch_no_client;
        ix->prefetch = 1;
        ((app_runtime_t *)ix->rt)->prefetch_running++;
        interaction_ref(ix); /* released by finish(), in place of the request's */
        return;
    }
    ix->req = NULL;
    for (int i = 0; ix->attempts != NULL && i < ix->attempts->n; i++)
        attempt_cancel(ix->attempts->children[i]);
    if (ix->cache_mode == 2) { /* a follower: never woken now */
        ix->cache_mode = 0;
        page_cache_flight_leave(ix->env->page_cache, &ix->cache_waiter);
        interaction_unref(ix);
    }
    cache_end_flight(ix, NULL); /* a leader whose client left: followers generate their own */
    if (ix->tool_handle != NULL) {
        ix->tool_async->cancel(ix->tool_handle);
        ix->tool_handle = NULL;
        ix->tool_async = NULL;
        interaction_unref(ix); /* the reference async_tool_done would have released */
    }
    if (ix->llm != NULL) {
        llm_route_cancel(ix->llm);
        ix->llm = NULL;
    }
}

/* ---- step 3: run the tools the model called ---- */

static void add_tool_result(interaction_t *ix, const llm_tool_call_t *c, const char *text, double ms)
{
    json_array_append_new(ix->tool_log,
                          json_pack("{s:s, s:s, s:s, s:f, s:b}", "name", c->name ? c->name : "", "arguments",
                                    c->arguments.data ? c->arguments.data : "", "result", text, "ms", ms,
                                    "is_error", strncmp(text, "error: ", 7) == 0));
    json_array_append_new(ix->messages, json_pack("{s:s, s:s, s:s, s:s}", "role", "tool", "tool_call_id",
                                                  c->id ? c->id : "", "name", c->name ? c->name : "", "content",
                                                  text));
    ix->rec.tool_calls++;
}

/* Committed: the session cache gets the same state and history as the store now has. */
static void cache_saved_session(interaction_t *ix, const char *title)
{
    session_t saved = ix->session;
    json_t *history = json_array();
    size_t n = ix->session.history ? json_array_size(ix->session.history) : 0;
    size_t keep = (size_t)ix->rt->app->limits.history_items;
    for (size_t i = n + 1 > keep ? n + 1 - keep : 0; i < n; i++)
        json_array_append(history, json_array_get(ix->session.history, i));
    if (keep > 0)
        json_array_append_new(history,
                              json_pack("{s:s, s:s, s:s}", "method", ix->method, "path", ix->url, "title", title ? title : ""));
    saved.history = history;
    saved.seq = ix->session.seq + 1;
    session_cache_put(ix->env->session_cache, ix->rt->app->name, &saved);
    json_decref(history);
}

static tool_ctx_t tool_context(interaction_t *ix)
{
    tool_ctx_t tctx = {.app = ix->rt->app, .state = &ix->session.state, .upload_dir = ix->upload_dir,
                       .confirmed = ix->confirm_next};
    if (ix->attempt != NULL) { /* isolated: its own database copy, files and write log */
        tctx.app = &ix->attempt->app;
        tctx.write_log = &ix->attempt->write_log;
    }
    return tctx;
}

/* A prefetch reads only: the app as the sql tool sees it, with read access. Static
 * storage per app would race between threads, so each call gets its own copy. */
static void prefetch_read_only_app(const interaction_t *ix, app_t *copy)
{
    memcpy(copy, ix->rt->app, sizeof(*copy));
    if (copy->sql == APP_SQL_WRITE)
        copy->sql = APP_SQL_READ;
}

static void tool_job_run(worker_job_t *job, worker_thread_t *wt)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    const llm_tool_call_t *c = &ix->result.calls[ix->tool_index];
    const tool_t *tool = tools_find(ix->rt->app, c->name);
    json_t *args = json_loadb(c->arguments.data ? c->arguments.data : "", c->arguments.len, 0, NULL);
    fig_err_t err;
    fig_err_clear(&err);
    tool_ctx_t tctx = tool_context(ix);
    tctx.state = NULL; /* the state belongs to the loop thread */
    ix->job_status = TOOL_OK;
    sqlite3 *own_db = NULL; /* an attempt's scratch database or a prefetch's read-only view, for this call */
    app_t read_only;
    if (ix->prefetch) {
        prefetch_read_only_app(ix, &read_only);
        tctx.app = &read_only;
    }
    if ((ix->attempt != NULL || ix->prefetch) && tool->kind == TOOL_IN_WORKER)
        own_db = tool_sql_open(tctx.app, &err);
    if (tool->kind == TOOL_IN_WORKER &&
        (tctx.app_db = own_db != NULL || ix->attempt != NULL || ix->prefetch ? own_db
                                                                             : worker_app_db(wt, ix->rt->app, &err)) == NULL) {
        fig_buf_t b = FIG_BUF_INIT;
        fig_buf_appendf(&b, "error: the database is unavailable (%s)", err.msg);
        ix->job_text = fig_buf_steal(&b);
        ix->job_status = TOOL_ERROR;
    } else {
        ix->job_text = tool->run(&tctx, args, &ix->job_status);
    }
    if (own_db != NULL)
        sqlite3_close_v2(own_db);
    json_decref(args);
}

static void pause_for_confirmation(interaction_t *ix, char *description);

/* A tool's answer, whichever way it ran: into the conversation, or a pause. */
static void tool_finished(interaction_t *ix, char *text, int status)
{
    double ms = (double)(interaction_now_ns() - ix->step_start_ns) / 1e6;
    ix->rec.tool_ms += ms;
    ix->confirm_next = 0;
    if (status == TOOL_NEEDS_CONFIRM && (ix->attempt != NULL || ix->prefetch)) { /* no one to ask */
        free(text);
        text = fig_strdup("error: this action needs the user's confirmation, which parallel attempts cannot ask "
                          "for; nothing was done");
        status = TOOL_ERROR;
    }
    if (status == TOOL_NEEDS_CONFIRM) {
        pause_for_confirmation(ix, text);
        return;
    }
    add_tool_result(ix, &ix->result.calls[ix->tool_index], text ? text : "", ms);
    free(text);
    ix->tool_index++;
    run_next_tool(ix);
}

static void tool_job_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    /* take the result before run_next_tool() may hand the next tool to a worker,
     * which writes ix->job_text again */
    char *text = ix->job_text;
    ix->job_text = NULL;
    if (ix->req != NULL)
        tool_finished(ix, text, ix->job_status);
    else
        free(text);
    interaction_unref(ix);
}

static void async_tool_done(void *cb_ctx, char *text, int status)
{
    interaction_t *ix = cb_ctx;
    ix->tool_handle = NULL;
    ix->tool_async = NULL;
    if (ix->req != NULL)
        tool_finished(ix, text, status);
    else
        free(text);
    interaction_unref(ix);
}

static void run_next_tool(interaction_t *ix)
{
    while (ix->tool_index < ix->result.ncalls) {
        const llm_tool_call_t *c = &ix->result.calls[ix->tool_index];
        const tool_t *tool = tools_find(ix->rt->app, c->name);
        if (tool == NULL) {
            fig_buf_t b = FIG_BUF_INIT;
            fig_buf_appendf(&b, "error: there is no tool named '%s' in this app", c->name ? c->name : "");
            add_tool_result(ix, c, b.data, 0);
            fig_buf_free(&b);
            ix->tool_index++;
            continue;
        }
        json_error_t jerr;
        json_t *args = json_loadb(c->arguments.data ? c->arguments.data : "", c->arguments.len, 0, &jerr);
        if (args == NULL) {
            fig_buf_t b = FIG_BUF_INIT;
            fig_buf_appendf(&b,
                            "error: the arguments are not valid JSON (%s at position %d); call the tool again "
                            "with a JSON object that matches its schema",
                            jerr.text, jerr.position);
            add_tool_result(ix, c, b.data, 0);
            fig_buf_free(&b);
            ix->tool_index++;
            continue;
        }
        ix->step_start_ns = interaction_now_ns();
        if (tool->kind == TOOL_IN_WORKER || tool->kind == TOOL_IN_SANDBOX) {
            json_decref(args);
            fig_err_clear(&ix->job_err);
            ix->job.run = tool_job_run;
            ix->job.done = tool_job_done;
            ix->job.receiver = ix->env->receiver;
            interaction_ref(ix);
            worker_submit(tool->kind == TOOL_IN_SANDBOX && ix->env->sandbox ? ix->env->sandbox : ix->env->workers,
                          &ix->job);
            return;
        }
        tool_ctx_t tctx = tool_context(ix);
        int status = TOOL_OK;
        char *text = NULL;
        if (tool->kind == TOOL_ASYNC) {
            interaction_ref(ix);
            ix->tool_async = tool;
            ix->tool_handle = tool->start(&tctx, ix->env->router.http, args, async_tool_done, ix, &text, &status);
            json_decref(args);
            if (ix->tool_handle != NULL)
                return; /* async_tool_done continues */
            ix->tool_async = NULL;
            interaction_unref(ix); /* the caller's reference keeps ix alive */
        } else {
            text = tool->run(&tctx, args, &status);
            json_decref(args);
        }
        tool_finished(ix, text, status);
        return; /* tool_finished continued the loop */
    }
    ix->round++;
    ask_model(ix);
}

/* ---- confirmation: park the interaction, answer with figment's own page ---- */

static void pause_save_run(worker_job_t *job, worker_thread_t *wt)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    session_store_t *st = worker_session_store(wt, &ix->job_err);
    if (st == NULL || confirm_save(st, &ix->pending, &ix->job_err) != 0)
        return;
    session_usage_t u = usage_record(ix);
    if (session_save_all(st, &ix->session, ix->rt->app->name, ix->method, ix->url, "Confirm this action",
                         ix->rec.attempts > 0 ? &u : NULL, NULL, &ix->job_err) != 0)
        return;
    ix->recorded = 1;
    cache_saved_session(ix, "Confirm this action");
}

static void pause_save_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    if (ix->req != NULL) {
        if (ix->job_err.code != FIG_OK) {
            fail(ix, 500, "session_store", "figment could not save the action waiting for your confirmation",
                 ix->job_err.msg);
        } else {
            fig_buf_t body = FIG_BUF_INIT;
            confirm_page_html(&body, ix->rt->app->name, ix->pending.tool, ix->pending.id, ix->pending.description,
                              ix->csrf_token, ix->rt->app->confirm_ttl_s);
            compose_page(ix, "Confirm this action", body.data, body.len);
            fig_buf_free(&body);
            finish(ix, 200, "confirm");
        }
    }
    interaction_unref(ix);
}

static void pause_for_confirmation(interaction_t *ix, char *description)
{
    confirm_pending_clear(&ix->pending);
    confirm_pending_t *p = &ix->pending;
    confirm_new_id(p->id);
    memcpy(p->session_id, ix->session.id, sizeof(p->session_id));
    p->app = fig_strdup(ix->rt->app->name);
    p->created_at = (int64_t)time(NULL);
    p->expires_at = p->created_at + ix->rt->app->confirm_ttl_s;
    p->description = description ? description : fig_strdup("");
    const llm_tool_call_t *waiting = &ix->result.calls[ix->tool_index];
    p->tool = fig_strdup(waiting->name ? waiting->name : "");
    p->messages = json_incref(ix->messages);
    p->calls = json_array();
    for (size_t i = 0; i < ix->result.ncalls; i++) {
        const llm_tool_call_t *c = &ix->result.calls[i];
        json_array_append_new(p->calls, json_pack("{s:s, s:s, s:s%}", "id", c->id ? c->id : "", "name",
                                                  c->name ? c->name : "", "arguments",
                                                  c->arguments.data ? c->arguments.data : "", c->arguments.len));
    }
    p->tool_index = (int)ix->tool_index;
    p->round = ix->round;
    p->origin_url = fig_strdup(ix->url);
    json_array_append_new(ix->tool_log, json_pack("{s:s, s:s, s:s, s:f, s:b}", "name", p->tool, "arguments",
                                                  waiting->arguments.data ? waiting->arguments.data : "",
                                                  "result", "(waiting for the user's confirmation)", "ms", 0.0,
                                                  "is_error", 0));
    fig_err_clear(&ix->job_err);
    ix->job.run = pause_save_run;
    ix->job.done = pause_save_done;
    ix->job.receiver = ix->env->receiver;
    interaction_ref(ix);
    worker_submit(ix->env->workers, &ix->job);
}

/* The user answered a confirmation page: continue the parked conversation. */
static void resume_confirmed(interaction_t *ix)
{
    if (ix->claim == CONFIRM_NOT_FOUND) {
        fail(ix, 404, "confirm_unknown", "Nothing is waiting for your confirmation",
             "This action was already confirmed or cancelled, or it belongs to another session. Nothing was run "
             "now. Go back to the app to see where things stand.");
        return;
    }
    if (ix->claim == CONFIRM_EXPIRED) {
        fail(ix, 410, "confirm_expired", "This confirmation has expired",
             "The action waited too long for your answer and was dropped; nothing was run. Go back to the app "
             "and ask again.");
        return;
    }
    confirm_pending_t *p = &ix->pending;
    json_decref(ix->messages);
    ix->messages = json_incref(p->messages);
    llm_result_free(&ix->result);
    llm_result_init(&ix->result);
    size_t n = json_array_size(p->calls);
    for (size_t i = 0; i < n && i < LLM_MAX_TOOL_CALLS; i++) {
        const json_t *c = json_array_get(p->calls, i);
        llm_tool_call_t *dst = &ix->result.calls[i];
        dst->id = fig_strdup(json_string_value(json_object_get(c, "id")) ?: "");
        dst->name = fig_strdup(json_string_value(json_object_get(c, "name")) ?: "");
        const char *a = json_string_value(json_object_get(c, "arguments"));
        fig_buf_append_str(&dst->arguments, a ? a : "");
        ix->result.ncalls = i + 1;
    }
    ix->round = p->round;
    ix->tool_index = (size_t)p->tool_index;
    if (ix->confirm_accept) {
        ix->confirm_next = 1;
    } else {
        add_tool_result(ix, &ix->result.calls[ix->tool_index],
                        "declined: the user cancelled this action on figment's confirmation page; nothing was "
                        "done. Do not try it again unless the user asks; tell the user it was cancelled.",
                        0);
        ix->tool_index++;
    }
    run_next_tool(ix);
}


/* ---- parallel attempts with a verifier (app.json "actions") ----
 *
 * An action's interaction runs as N attempts at once, each a child interaction with
 * its own conversation, its own scratch copy of the app database (SQLite's backup
 * API) and its own copy of the session's files. The first attempt whose final state
 * passes the verifier wins: the others are cancelled, the winner's committed writes
 * (its write log) are replayed on the real database in one transaction, its out/
 * files are copied back, and the parent answers with the winner's page. Every
 * attempt's cost is counted. The children never answer the browser or save the
 * session: their ends are intercepted (attempt_answered, attempt_failed). */


static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) {
            rc = -1;
            break;
        }
    if (n < 0)
        rc = -1;
    close(in);
    if (close(out) != 0)
        rc = -1;
    return rc;
}

/* Copies the regular files of dir `from` (not recursive) into `to` (created 0700). */
static int copy_dir_files(const char *from, const char *to)
{
    if (mkdir(to, 0700) != 0 && errno != EEXIST)
        return -1;
    DIR *d = opendir(from);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        fig_buf_t a = FIG_BUF_INIT, b = FIG_BUF_INIT;
        fig_buf_appendf(&a, "%s/%s", from, de->d_name);
        fig_buf_appendf(&b, "%s/%s", to, de->d_name);
        struct stat st;
        if (lstat(a.data, &st) == 0 && S_ISREG(st.st_mode) && copy_file(a.data, b.data) != 0)
            rc = -1;
        fig_buf_free(&a);
        fig_buf_free(&b);
    }
    closedir(d);
    return rc;
}

static int backup_db(const char *from, const char *to, fig_err_t *err)
{
    sqlite3 *src = NULL, *dst = NULL;
    int rc = -1;
    if (sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_open_v2(to, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "cannot open %s for an attempt's copy", from);
        goto out;
    }
    sqlite3_busy_timeout(src, 5000);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL) {
        fig_err_set(err, FIG_E_DB, "copying %s: %s", from, sqlite3_errmsg(dst));
        goto out;
    }
    int step = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (step != SQLITE_DONE) {
        fig_err_set(err, FIG_E_DB, "copying %s: %s", from, sqlite3_errstr(step));
        goto out;
    }
    rc = 0;
out:
    sqlite3_close_v2(src);
    sqlite3_close_v2(dst);
    return rc;
}

static void attempts_prepare_run(worker_job_t *job, worker_thread_t *wt)
{
    (void)wt;
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    fig_buf_t root = FIG_BUF_INIT;
    fig_buf_appendf(&root, "%s/attempts", ix->env->var_dir);
    if (mkdir(root.data, 0700) != 0 && errno != EEXIST) {
        fig_err_set(&ix->job_err, FIG_E_IO, "%s: %s", root.data, strerror(errno));
        fig_buf_free(&root);
        return;
    }
    fig_buf_free(&root);
    for (int i = 0; i < ix->attempts->n; i++) {
        attempt_t *a = ix->attempts->children[i]->attempt;
        if (backup_db(ix->rt->app->db_path, a->db_path, &ix->job_err) != 0)
            return;
        if ((ix->upload_dir != NULL ? copy_dir_files(ix->upload_dir, a->dir) : mkdir(a->dir, 0700)) != 0) {
            fig_err_set(&ix->job_err, FIG_E_IO, "%s: cannot copy the session's files", a->dir);
            return;
        }
    }
}

static void attempts_fail_all(interaction_t *parent, int status, const char *outcome, const char *heading,
                              const char *message);

static void attempts_prepare_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    if (ix->req != NULL) {
        if (ix->job_err.code != FIG_OK)
            attempts_fail_all(ix, 500, "attempts", "figment could not prepare the attempts", ix->job_err.msg);
        else
            for (int i = 0; i < ix->attempts->n; i++)
                ask_model(ix->attempts->children[i]);
    }
    interaction_unref(ix);
}

static void attempt_cancel(interaction_t *child)
{
    if (child->req == NULL)
        return;
    child->req = NULL;
    if (child->llm != NULL) {
        llm_route_cancel(child->llm);
        child->llm = NULL;
    }
    if (child->tool_handle != NULL) {
        child->tool_async->cancel(child->tool_handle);
        child->tool_handle = NULL;
        child->tool_async = NULL;
        interaction_unref(child);
    }
}

/* What every attempt cost, into the parent's record. */
static void attempts_sum(interaction_t *parent)
{
    attempt_set_t *set = parent->attempts;
    interaction_record_t *r = &parent->rec;
    for (int i = 0; i < set->n; i++) {
        const interaction_record_t *c = &set->children[i]->rec;
        r->llm_calls += c->llm_calls;
        r->llm_ms += c->llm_ms;
        r->tool_calls += c->tool_calls;
        r->tool_ms += c->tool_ms;
        r->usage.prompt_tokens += c->usage.prompt_tokens;
        r->usage.cached_tokens += c->usage.cached_tokens;
        r->usage.cache_write_tokens += c->usage.cache_write_tokens;
        r->usage.completion_tokens += c->usage.completion_tokens;
        r->cost_usd += c->cost_usd;
        r->attempts += c->attempts;
        r->retries += c->retries;
        r->fallbacks += c->fallbacks;
        r->hedges += c->hedges;
        if (r->first_ttft_ms == 0 && c->llm_calls > 0) {
            r->first_ttft_ms = c->first_ttft_ms;
            r->connect_ms = c->connect_ms;
        }
        if (r->model[0] == '\0' || i == set->winner)
            memcpy(r->model, c->model, sizeof(r->model));
    }
    size_t used = strlen(r->route);
    for (int i = 0; i < set->n && used + 64 < sizeof(r->route); i++) {
        const attempt_t *a = set->children[i]->attempt;
        snprintf(r->route + used, sizeof(r->route) - used, "%sattempt %d: %s", used ? " | " : "", i + 1,
                 a->state == 3 ? (i == set->winner ? "won" : "passed") : a->state == 2 ? "failed" : "cancelled");
        used = strlen(r->route);
    }
}

static void attempts_fail_all(interaction_t *parent, int status, const char *outcome, const char *heading,
                              const char *message)
{
    attempt_set_t *set = parent->attempts;
    set->done = 1;
    for (int i = 0; i < set->n; i++)
        attempt_cancel(set->children[i]);
    attempts_sum(parent);
    fail(parent, status, outcome, heading, message);
}

static void attempts_check_done(interaction_t *parent)
{
    attempt_set_t *set = parent->attempts;
    if (set->done || set->winner >= 0)
        return;
    for (int i = 0; i < set->n; i++)
        if (set->children[i]->attempt->state != 2)
            return; /* still running or verifying */
    fig_buf_t why = FIG_BUF_INIT;
    for (int i = 0; i < set->n; i++) {
        const attempt_t *a = set->children[i]->attempt;
        fig_buf_appendf(&why, "%sattempt %d: %s", i ? "; " : "", i + 1, a->why ? a->why : "failed");
    }
    fig_buf_t msg = FIG_BUF_INIT;
    fig_buf_appendf(&msg, "None of the %d attempts passed this app's check, so nothing was changed (%s).", set->n,
                    why.data ? why.data : "");
    attempts_fail_all(parent, 502, "attempts_failed", "The app could not complete this action", msg.data);
    fig_buf_free(&msg);
    fig_buf_free(&why);
}

static void attempt_failed(interaction_t *child, const char *why)
{
    attempt_t *a = child->attempt;
    if (a->state >= 2 || child->req == NULL)
        return;
    a->state = 2;
    free(a->why);
    a->why = fig_strdup(why ? why : "failed");
    attempt_cancel(child);
    attempts_check_done(a->parent);
}

/* verify.python: the check runs in the sandbox with the attempt's files; exit 0 passes. */
static void attempt_verify_python(interaction_t *child)
{
    attempt_t *a = child->attempt;
    const char *code = a->action->verify_python;
    /* the attempt's files (the session's uploads and its out/ results) */
    const char *paths[64];
    char *owned[64];
    size_t n = 0;
    DIR *d = opendir(a->dir);
    struct dirent *de;
    while (d != NULL && n < 64 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || !sandbox_name_ok(de->d_name, strlen(de->d_name)))
            continue;
        fig_buf_t p = FIG_BUF_INIT;
        fig_buf_appendf(&p, "%s/%s", a->dir, de->d_name);
        struct stat st;
        if (lstat(p.data, &st) == 0 && S_ISREG(st.st_mode)) {
            owned[n] = fig_buf_steal(&p);
            paths[n] = owned[n];
            n++;
        } else {
            fig_buf_free(&p);
        }
    }
    if (d != NULL)
        closedir(d);
    sandbox_limits_t lim;
    sandbox_limits_init(&lim);
    sandbox_limits_from_app(&lim, &a->app.run_code);
    sandbox_result_t res;
    fig_err_t err;
    fig_err_clear(&err);
    if (sandbox_run_python(&lim, code, paths, n, &res, &err) != 0) {
        fig_err_set(&child->job_err, FIG_E_CONFIG, "the check could not run: %s", err.msg);
    } else {
        a->verify_ok = res.exited && res.exit_code == 0 && !res.timed_out;
        if (!a->verify_ok)
            fig_err_set(&child->job_err, FIG_E_INVALID, "the check failed (exit %d%s)", res.exit_code,
                        res.timed_out ? ", timed out" : "");
    }
    sandbox_result_free(&res);
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
}

/* The verifier, on a worker: an SQL assertion on the attempt's database, or a Python
 * check in the sandbox with the attempt's files. */
static void attempt_verify_run(worker_job_t *job, worker_thread_t *wt)
{
    (void)wt;
    interaction_t *child = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    attempt_t *a = child->attempt;
    const app_action_t *act = a->action;
    a->verify_ok = 0;
    if (act->verify_sql != NULL) {
        sqlite3 *db = NULL;
        sqlite3_stmt *q = NULL;
        if (sqlite3_open_v2(a->db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, act->verify_sql, -1, &q, NULL) != SQLITE_OK) {
            fig_err_set(&child->job_err, FIG_E_DB, "the check could not run: %s", sqlite3_errmsg(db));
        } else {
            int rc = sqlite3_step(q);
            if (rc == SQLITE_ROW) {
                int t = sqlite3_column_type(q, 0);
                const unsigned char *txt = sqlite3_column_text(q, 0);
                a->verify_ok = t == SQLITE_INTEGER || t == SQLITE_FLOAT ? sqlite3_column_double(q, 0) != 0
                               : t == SQLITE_TEXT ? txt != NULL && txt[0] != '\0' && strcmp((const char *)txt, "0") != 0
                                                 : 0;
                if (!a->verify_ok)
                    fig_err_set(&child->job_err, FIG_E_INVALID, "the check answered false");
            } else {
                fig_err_set(&child->job_err, FIG_E_INVALID, "the check returned no row%s%s",
                            rc == SQLITE_DONE ? "" : ": ", rc == SQLITE_DONE ? "" : sqlite3_errmsg(db));
            }
        }
        sqlite3_finalize(q);
        sqlite3_close_v2(db);
    } else if (act->verify_python != NULL) {
        attempt_verify_python(child);
    }
}

static void attempt_won(interaction_t *parent, interaction_t *child);

static void attempt_verify_done(worker_job_t *job)
{
    interaction_t *child = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    attempt_t *a = child->attempt;
    if (child->req != NULL) {
        if (a->verify_ok) {
            a->state = 3;
            if (a->parent->attempts->winner < 0 && !a->parent->attempts->done)
                attempt_won(a->parent, child);
        } else {
            a->state = 1; /* attempt_failed acts on running or verifying attempts */
            attempt_failed(child, child->job_err.msg[0] ? child->job_err.msg : "the check failed");
        }
    }
    interaction_unref(child);
}

/* An attempt's model gave its final page: check it. */
static void attempt_answered(interaction_t *child)
{
    attempt_t *a = child->attempt;
    a->state = 1;
    fig_err_clear(&child->job_err);
    child->job.run = attempt_verify_run;
    child->job.done = attempt_verify_done;
    child->job.receiver = child->env->receiver;
    interaction_ref(child);
    worker_pool_t *pool = a->action->verify_python != NULL && child->env->sandbox != NULL
                              ? child->env->sandbox
                              : child->env->workers;
    worker_submit(pool, &child->job);
}

/* The winner's writes onto the real database, in one transaction, and its files back. */
static void attempt_apply_run(worker_job_t *job, worker_thread_t *wt)
{
    (void)wt;
    interaction_t *parent = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    attempt_set_t *set = parent->attempts;
    attempt_t *a = set->children[set->winner]->attempt;
    app_t *app = (app_t *)parent->rt->app; /* data_version is the one mutable field */
    if (a->write_log.len > 0) {
        sqlite3 *db = NULL;
        if (sqlite3_open_v2(app->db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
            fig_err_set(&parent->job_err, FIG_E_DB, "%s: %s", app->db_path, sqlite3_errmsg(db));
            sqlite3_close_v2(db);
            return;
        }
        sqlite3_busy_timeout(db, 5000);
        char *msg = NULL;
        int ok = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) == SQLITE_OK;
        for (size_t off = 0; ok && off < a->write_log.len;) {
            const char *stmt = a->write_log.data + off;
            size_t n = strlen(stmt);
            ok = sqlite3_exec(db, stmt, NULL, NULL, &msg) == SQLITE_OK;
            off += n + 1;
        }
        sqlite3_int64 version = 0;
        if (ok) {
            sqlite3_stmt *q = NULL;
            ok = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK &&
                 sqlite3_step(q) == SQLITE_ROW;
            if (ok)
                version = sqlite3_column_int64(q, 0) + 1;
            sqlite3_finalize(q);
        }
        if (ok) {
            char bump[64];
            snprintf(bump, sizeof(bump), "PRAGMA user_version = %lld", (long long)version);
            ok = sqlite3_exec(db, bump, NULL, NULL, &msg) == SQLITE_OK &&
                 sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) == SQLITE_OK;
        }
        if (!ok) {
            fig_err_set(&parent->job_err, FIG_E_DB, "the winning attempt's changes could not be applied: %s",
                        msg ? msg : sqlite3_errmsg(db));
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        } else {
            unsigned long long v = (unsigned long long)version;
            unsigned long long cur = app->data_version;
            while (cur < v && !atomic_compare_exchange_weak(&app->data_version, &cur, v))
                ;
        }
        sqlite3_free(msg);
        sqlite3_close_v2(db);
        if (!ok)
            return;
    }
    if (parent->upload_dir != NULL && copy_dir_files(a->dir, parent->upload_dir) != 0)
        fig_err_set(&parent->job_err, FIG_E_IO, "the winning attempt's files could not be kept");
}

static void attempt_apply_done(worker_job_t *job)
{
    interaction_t *parent = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    attempt_set_t *set = parent->attempts;
    if (parent->req != NULL) {
        if (parent->job_err.code != FIG_OK) {
            attempts_fail_all(parent, 500, "attempts", "figment could not keep the result", parent->job_err.msg);
        } else {
            interaction_t *w = set->children[set->winner];
            set->done = 1;
            attempts_sum(parent);
            llm_result_free(&parent->result);
            llm_result_init(&parent->result);
            fig_buf_append(&parent->result.content, w->result.content.data ? w->result.content.data : "",
                           w->result.content.len);
            json_decref(parent->messages);
            parent->messages = json_incref(w->messages);
            json_decref(parent->tool_log);
            parent->tool_log = json_incref(w->tool_log);
            json_decref(parent->session.state);
            parent->session.state = json_deep_copy(w->session.state);
            save_and_respond(parent);
        }
    }
    interaction_unref(parent);
}

static void attempt_won(interaction_t *parent, interaction_t *child)
{
    attempt_set_t *set = parent->attempts;
    set->winner = child->attempt->index;
    for (int i = 0; i < set->n; i++)
        if (i != set->winner)
            attempt_cancel(set->children[i]);
    fig_err_clear(&parent->job_err);
    parent->job.run = attempt_apply_run;
    parent->job.done = attempt_apply_done;
    parent->job.receiver = parent->env->receiver;
    interaction_ref(parent);
    worker_submit(parent->env->workers, &parent->job);
}

static void attempts_start(interaction_t *ix, const app_action_t *action)
{
    attempt_set_t *set = fig_calloc(1, sizeof(*set));
    set->action = action;
    set->n = action->attempts;
    set->winner = -1;
    set->children = fig_calloc((size_t)set->n, sizeof(*set->children));
    ix->attempts = set;
    for (int i = 0; i < set->n; i++) {
        interaction_t *c = interaction_new(ix->env, ix->rt, ix->req);
        c->counted_in_flight = 0; /* the parent is the one in flight */
        metrics_in_flight_add(-1);
        ix->env->in_flight--;
        attempt_t *a = fig_calloc(1, sizeof(*a));
        a->parent = ix;
        a->action = action;
        a->index = i;
        fig_buf_t p = FIG_BUF_INIT;
        fig_buf_appendf(&p, "%s/attempts/%s-%d", ix->env->var_dir, ix->trace_id, i + 1);
        a->dir = fig_strdup(p.data);
        fig_buf_append_str(&p, ".db");
        a->db_path = fig_buf_steal(&p);
        memcpy(&a->app, ix->rt->app, sizeof(a->app));
        a->app.db_path = a->db_path;
        c->attempt = a;
        c->method = fig_strdup(ix->method);
        c->path = fig_strdup(ix->path);
        c->url = fig_strdup(ix->url);
        c->query = json_incref(ix->query);
        c->form = json_incref(ix->form);
        c->csrf_token = fig_strdup(ix->csrf_token);
        memcpy(c->session.id, ix->session.id, sizeof(c->session.id));
        c->session.state = json_deep_copy(ix->session.state);
        c->session.history = json_incref(ix->session.history);
        c->session.exists = ix->session.exists;
        c->session.seq = ix->session.seq;
        c->state_before = json_incref(ix->state_before);
        c->uploads = json_incref(ix->uploads);
        c->upload_dir = fig_strdup(a->dir);
        c->chain = ix->chain;
        c->rec.route_rule = ix->rec.route_rule;
        c->rec.start_ns = ix->rec.start_ns; /* the same deadline */
        c->messages = json_deep_copy(ix->messages);
        set->children[i] = c;
    }
    fig_err_clear(&ix->job_err);
    ix->job.run = attempts_prepare_run;
    ix->job.done = attempts_prepare_done;
    ix->job.receiver = ix->env->receiver;
    interaction_ref(ix);
    worker_submit(ix->env->workers, &ix->job);
}

void agent_attempts_free(interaction_t *ix)
{
    attempt_set_t *set = ix->attempts;
    if (set == NULL)
        return;
    for (int i = 0; i < set->n; i++) {
        interaction_t *c = set->children[i];
        attempt_cancel(c);
        attempt_t *a = c->attempt;
        fig_err_t err;
        fig_err_clear(&err);
        uploads_delete(a->dir, &err);
        static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
        for (size_t k = 0; k < sizeof(suffixes) / sizeof(suffixes[0]); k++) {
            fig_buf_t p = FIG_BUF_INIT;
            fig_buf_appendf(&p, "%s%s", a->db_path, suffixes[k]);
            unlink(p.data);
            fig_buf_free(&p);
        }
        a->parent = NULL;
        interaction_unref(c);
    }
    free(set->children);
    free(set);
    ix->attempts = NULL;
}

void agent_attempt_free(interaction_t *ix)
{
    attempt_t *a = ix->attempt;
    if (a == NULL)
        return;
    free(a->db_path);
    free(a->dir);
    free(a->why);
    fig_buf_free(&a->write_log);
    free(a);
    ix->attempt = NULL;
}

/* ---- prefetch: the likely next pages, generated ahead into the cache ----
 *
 * After a user's GET page is generated (and cached), its links to the same app are
 * ranked (app.json prefetch.rank, then document order) and the first
 * prefetch.links of them are generated as detached interactions in the same session
 * state: no client, read-only tools, nothing saved but the cached page and the cost
 * (outcome "prefetch", so it is told apart from user-driven cost). Bounded by
 * prefetch.concurrency per app and by the budgets. */


typedef struct {
    char *url;
    size_t rank;
    size_t order;
} prefetch_link_t;

static int prefetch_link_cmp(const void *a, const void *b)
{
    const prefetch_link_t *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* href="/<app>/..." values of the sanitized page, entity-decoded, unique, in order. */
static size_t prefetch_collect(const interaction_t *ix, prefetch_link_t *out, size_t cap)
{
    const app_t *app = ix->rt->app;
    size_t n = 0, order = 0;
    fig_buf_t prefix = FIG_BUF_INIT;
    fig_buf_appendf(&prefix, "href=\"/%s/", app->name);
    for (const char *p = ix->page_html; n < cap && (p = strstr(p, prefix.data)) != NULL;) {
        const char *v = p + 6, *end = strchr(v, '"');
        p = v;
        if (end == NULL || end - v > 1024)
            continue;
        fig_buf_t url = FIG_BUF_INIT;
        for (const char *q = v; q < end; q++) {
            if (strncmp(q, "&amp;", 5) == 0) {
                fig_buf_append(&url, "&", 1);
                q += 4;
            } else {
                fig_buf_append(&url, q, 1);
            }
        }
        const char *u = url.data;
        int skip = strcmp(u, ix->url) == 0 || strstr(u, "/../") != NULL || strstr(u, "//") != NULL ||
                   strstr(u, "/_confirm/") != NULL || strchr(u, '#') != NULL;
        for (size_t i = 0; !skip && i < n; i++)
            skip = strcmp(out[i].url, u) == 0;
        if (skip) {
            fig_buf_free(&url);
            continue;
        }
        const char *q = strchr(u, '?');
        char *path = q ? fig_strndup(u, (size_t)(q - u)) : fig_strdup(u);
        out[n].rank = app_prefetch_rank(app, path);
        free(path);
        out[n].order = order++;
        out[n].url = fig_buf_steal(&url);
        n++;
    }
    fig_buf_free(&prefix);
    return n;
}

static void prefetch_start(interaction_t *from, const char *url)
{
    app_runtime_t *rt = (app_runtime_t *)from->rt;
    interaction_t *ix = interaction_new(from->env, from->rt, &prefetch_no_client);
    ix->prefetch = 1;
    rt->prefetch_running++;
    ix->method = fig_strdup("GET");
    const char *q = strchr(url, '?');
    ix->path = q ? fig_strndup(url, (size_t)(q - url)) : fig_strdup(url);
    ix->url = fig_strdup(url);
    fig_err_t err;
    fig_err_clear(&err);
    ix->query = q ? form_parse_urlencoded(q + 1, strlen(q + 1), &err) : json_object();
    if (ix->query == NULL)
        ix->query = json_object();
    ix->form = json_object();
    ix->csrf_token = fig_strdup(from->csrf_token);
    memcpy(ix->session.id, from->session.id, sizeof(ix->session.id));
    ix->session.state = json_deep_copy(from->session.state);
    ix->session.history = json_incref(from->session.history);
    ix->session.exists = 1;
    ix->session.seq = from->session.seq + 1;
    ix->state_before = json_deep_copy(ix->session.state);
    if (from->uploads != NULL)
        ix->uploads = json_incref(from->uploads);
    if (from->upload_dir != NULL)
        ix->upload_dir = fig_strdup(from->upload_dir);
    agent_choose_models(ix);
    ix->rec.session_loaded_ns = interaction_now_ns();
    /* ix keeps its first reference until finish(): a prefetch has no request to hold it */
    if (!cache_lookup(ix))
        finish(ix, 200, "prefetch_skipped");
}

static void prefetch_links(interaction_t *ix)
{
    const app_t *app = ix->rt->app;
    prefetch_link_t links[64];
    size_t n = prefetch_collect(ix, links, 64);
    qsort(links, n, sizeof(links[0]), prefetch_link_cmp);
    int started = 0;
    for (size_t i = 0; i < n; i++) {
        fig_err_t berr;
        fig_err_clear(&berr);
        if (started < app->prefetch_links && ix->rt->prefetch_running < app->prefetch_concurrency &&
            budget_check(ix->env->budget, ix->session.id, app->name, time(NULL), &berr) == 0) {
            prefetch_start(ix, links[i].url);
            started++;
        }
        free(links[i].url);
    }
}

/* ---- step 4: render, save, respond ---- */

static void save_session_run(worker_job_t *job, worker_thread_t *wt)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    session_store_t *st = worker_session_store(wt, &ix->job_err);
    if (st == NULL)
        return;
    /* one commit: the state, the interaction, its cost and (for a GET) the page */
    session_usage_t u = usage_record(ix);
    int is_get = strcmp(ix->method, "GET") == 0;
    if (session_save_all(st, &ix->session, ix->rt->app->name, ix->method, ix->url, ix->page_title,
                         ix->rec.attempts > 0 ? &u : NULL, is_get ? ix->page_html : NULL, &ix->job_err) != 0)
        return;
    ix->recorded = 1;
    cache_saved_session(ix, ix->page_title);
    if (ix->cache_entry != NULL) { /* the cached page survives a restart */
        fig_err_t cerr;
        fig_err_clear(&cerr);
        sqlite3 *db = worker_page_cache_db(wt, &cerr);
        if (db != NULL)
            page_cache_db_put(db, ix->cache_entry, &cerr);
        /* and, once a minute, the expired rows go */
        static _Atomic long long last_purge;
        long long now = (long long)time(NULL), seen = last_purge;
        if (db != NULL && now - seen >= 60 && atomic_compare_exchange_strong(&last_purge, &seen, now)) {
            int deleted = 0;
            page_cache_db_delete_expired(db, page_cache_now_ms(), &deleted, &cerr);
        }
    }
}

static void save_session_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    if (ix->req != NULL) {
        if (ix->job_err.code != FIG_OK)
            fail(ix, 500, "session_store", "figment could not save your session", ix->job_err.msg);
        else
            finish(ix, 200, "ok");
    }
    interaction_unref(ix);
}

static void attempt_answered(interaction_t *child);

static void save_and_respond(interaction_t *ix)
{
    if (ix->attempt != NULL) {
        attempt_answered(ix);
        return;
    }
    uint64_t t0 = interaction_now_ns();
    const char *md = ix->result.content.data ? ix->result.content.data : "";
    size_t md_len = ix->result.content.len;
    while (md_len > 0 && (md[md_len - 1] == '\n' || md[md_len - 1] == ' '))
        md_len--;
    if (md_len == 0) {
        fig_err_t e;
        fig_err_set(&e, FIG_E_UPSTREAM, "the model answered with an empty page");
        fail_upstream(ix, &e);
        return;
    }
    sanitize_opts_t so = {ix->rt->app->name, ix->csrf_token};
    render_page_t page = {0};
    fig_err_t err;
    fig_err_clear(&err);
    if (render_page(md, md_len, &so, &page, &err) != 0) {
        fail(ix, 502, "render", "figment could not render the model's page", err.msg);
        return;
    }
    ix->page_title = page.title ? fig_strdup(page.title) : NULL;
    ix->page_html = fig_strndup(page.html, page.html_len);
    cache_prepare_entry(ix, md, md_len, page.title);
    if (ix->prefetch) { /* nothing to send or save: the page goes into the cache (finish), the cost is recorded */
        render_page_free(&page);
        ix->rec.render_ms = (double)(interaction_now_ns() - t0) / 1e6;
        finish(ix, 200, "prefetch");
        return;
    }
    fig_buf_t body = FIG_BUF_INIT;
    if (ix->streaming) {
        /* the blocks already sent stay; the rest of the model's text follows */
        if (ix->stream_md.len != ix->result.content.len ||
            memcmp(ix->stream_md.data ? ix->stream_md.data : "", md, ix->stream_md.len) != 0) {
            fig_buf_reset(&ix->stream_md); /* the text differs from what streamed (should not happen) */
            fig_buf_append(&ix->stream_md, md, ix->result.content.len);
            ix->stream_md_done = 0;
        }
        render_stream_blocks(ix, 1, &body);
    } else {
        fig_buf_append(&body, page.html, page.html_len);
    }
    operator_feedback_form(&body, ix->trace_id, ix->url, ix->csrf_token);
    compose_page(ix, page.title, body.data, body.len);
    fig_buf_free(&body);
    render_page_free(&page);
    ix->rec.render_ms = (double)(interaction_now_ns() - t0) / 1e6;

    fig_err_clear(&ix->job_err);
    ix->job.run = save_session_run;
    ix->job.done = save_session_done;
    ix->job.receiver = ix->env->receiver;
    interaction_ref(ix);
    worker_submit(ix->env->workers, &ix->job);
}
