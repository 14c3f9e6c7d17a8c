/*
 * agent.c — the agent loop (see agent.h).
 *
 * Everything here runs on the interaction's loop thread; blocking work (session
 * store, sql tool) is sent to the worker pool and comes back through the
 * worker's done callback. Each step checks `ix->req`: once the client is gone the
 * interaction stops and nothing is written.
 */
#include "agent.h"
#include "agent_internal.h"

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
h2o_req_t agent_no_client;


static void ask_model(interaction_t *ix);
static void run_next_tool(interaction_t *ix);
static void resume_confirmed(interaction_t *ix);
static void save_and_respond(interaction_t *ix);

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
    if (!ix->recorded) {
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
    if (ix->cache_persist && ix->cache_entry != NULL) { /* the cached page survives a restart */
        fig_err_clear(&err);
        sqlite3 *db = worker_page_cache_db(wt, &err);
        if (db != NULL)
            page_cache_db_put(db, ix->cache_entry, &err);
        /* and, once a minute, the expired rows go */
        static _Atomic long long last_purge;
        long long now = (long long)time(NULL), seen = last_purge;
        if (db != NULL && now - seen >= 60 && atomic_compare_exchange_strong(&last_purge, &seen, now)) {
            int deleted = 0;
            page_cache_db_delete_expired(db, page_cache_now_ms(), &deleted, &err);
        }
    }
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
    if (ix->prefetch) {
        ((app_runtime_t *)ix->rt)->prefetch_running--; /* atomic */
        ix->req = NULL;
        record_trace(ix);
    } else {
        ix->env->respond(ix, status);
        record_trace(ix); /* after the answer: it is bookkeeping, not on the user's path */
        if (status == 200 && ix->cache_mode == 1 && ix->page_html != NULL && ix->rt->app->prefetch_links > 0)
            prefetch_links(ix);
    }
    if (ix->counted_in_flight) { /* answered: no longer in flight, whatever is recorded after */
        ix->counted_in_flight = 0;
        metrics_in_flight_add(-1);
        ix->env->in_flight--;
    }
    if ((!ix->recorded && (ix->rec.attempts > 0 || (status == 200 && ix->page_html != NULL))) ||
        (ix->cache_persist && ix->cache_entry != NULL)) {
        agent_submit(ix, ix->env->workers, record_run, record_done);
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
    /* the last good page may still be on its way to the store (this is the rare path) */
    session_writer_flush(ix->env->session_writer, 2000);
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
    agent_submit(ix, ix->env->workers, stale_run, stale_done);
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
    /* the cache first: a session whose save the writer has not committed yet is only there */
    if (!session_cache_get(ix->env->session_cache, id, ix->rt->app->name, &ix->session)) {
        if (session_load(st, id, ix->rt->app->name, ix->rt->app->limits.history_items, &ix->session, &ix->job_err) !=
            0)
            return;
        session_cache_fill(ix->env->session_cache, ix->rt->app->name, &ix->session);
    }
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
        agent_submit(ix, ix->env->workers, cache_db_run, cache_db_done);
        return 1;
    }
}

/* The leader's page, if nothing it did changed data or state: rendered again with the
 * CSRF placeholder so that any session may be served it. */
/* The cache entry for this generation, when it may be cached. ph_html: the page already
 * rendered with the placeholder for the CSRF token (NULL: render it here). */
static void cache_prepare_entry(interaction_t *ix, const char *md, size_t md_len, const char *title,
                                const char *ph_html, size_t ph_len)
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
    render_page_t page = {0};
    if (ph_html == NULL) {
        sanitize_opts_t so = {app->name, page_cache_placeholder};
        fig_err_t rerr;
        fig_err_clear(&rerr);
        if (render_page(md, md_len, &so, &page, &rerr) != 0)
            return;
        ph_html = page.html;
        ph_len = page.html_len;
    }
    fig_err_t err;
    fig_err_clear(&err);
    fig_buf_t body = FIG_BUF_INIT, doc = FIG_BUF_INIT;
    fig_buf_append(&body, ph_html, ph_len);
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

/* html with every occurrence of the (secret) placeholder replaced by token. */
static char *splice_token(const char *html, size_t len, const char *placeholder, const char *token, size_t *out_len)
{
    fig_buf_t out = FIG_BUF_INIT;
    size_t plen = strlen(placeholder);
    const char *p = html, *end = html + len, *hit;
    while ((hit = memmem(p, (size_t)(end - p), placeholder, plen)) != NULL) {
        fig_buf_append(&out, p, (size_t)(hit - p));
        fig_buf_append_str(&out, token);
        p = hit + plen;
    }
    fig_buf_append(&out, p, (size_t)(end - p));
    *out_len = out.len;
    return fig_buf_steal(&out);
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
    agent_submit(ix, ix->env->workers, load_session_run, load_session_done);
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
    if (render_page(md, cut, &so, &page, &err) == 0) {
        fig_buf_append(out, page.html, page.html_len);
        fig_buf_append(&ix->stream_html, page.html, page.html_len);
    }
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
    fig_buf_reset(&ix->stream_html);
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
        ix->req = &agent_no_client;
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

/* The session after this interaction, into the cache, pinned until the writer has
 * committed it (session_writer.h). */
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
    session_cache_put_pinned(ix->env->session_cache, ix->rt->app->name, &saved);
    json_decref(history);
}

/* Saves the session, its cost and (page_html) the page behind the answer: into the
 * journal now, into the store by the session writer. -1 with err when it could not be
 * journaled; then nothing is saved and the caller answers with an error. */
static int save_behind(interaction_t *ix, const char *title, const char *page_html, fig_err_t *err)
{
    session_usage_t u = usage_record(ix);
    session_record_t r;
    if (session_record_make(&r, &ix->session, ix->rt->app->name, ix->method, ix->url, title,
                            ix->rec.attempts > 0 ? &u : NULL, page_html, err) != 0)
        return -1;
    cache_saved_session(ix, title);
    if (session_writer_submit(ix->env->session_writer, &r, err) != 0) {
        session_cache_drop(ix->env->session_cache, ix->session.id, ix->rt->app->name);
        return -1;
    }
    ix->recorded = 1;
    return 0;
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
            char *why = tools_bad_arguments_text(&jerr);
            add_tool_result(ix, c, why, 0);
            free(why);
            ix->tool_index++;
            continue;
        }
        ix->step_start_ns = interaction_now_ns();
        if (tool->kind == TOOL_IN_WORKER || tool->kind == TOOL_IN_SANDBOX) {
            json_decref(args);
            agent_submit(ix, tool->kind == TOOL_IN_SANDBOX && ix->env->sandbox ? ix->env->sandbox : ix->env->workers,
                         tool_job_run, tool_job_done);
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
    save_behind(ix, "Confirm this action", NULL, &ix->job_err);
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
    agent_submit(ix, ix->env->workers, pause_save_run, pause_save_done);
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


/* ---- step 4: render, save, respond ---- */

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
    fig_buf_t body = FIG_BUF_INIT;
    const char *ph = NULL; /* the placeholder the page was rendered with, if any */
    if (ix->streaming) {
        /* What the user saw is the page: the blocks already sent and the rest, each
         * sanitized on its own. The whole text is not rendered a second time before the
         * last bytes go out. */
        if (ix->stream_md.len != ix->result.content.len ||
            memcmp(ix->stream_md.data ? ix->stream_md.data : "", md, ix->stream_md.len) != 0) {
            fig_buf_reset(&ix->stream_md); /* the text differs from what streamed (should not happen) */
            fig_buf_append(&ix->stream_md, md, ix->result.content.len);
            fig_buf_reset(&ix->stream_html);
            ix->stream_md_done = 0;
        }
        render_stream_blocks(ix, 1, &body);
        page.html_len = ix->stream_html.len;
        page.html = fig_buf_steal(&ix->stream_html);
        page.title = render_title(page.html);
    } else {
        /* A GET that may fill the page cache: rendered once, with the cache's secret
         * placeholder for the CSRF token, which is then replaced by this session's token
         * for the answer (the model cannot write the placeholder, so that is exact). */
        ph = ix->cache_mode == 1 && page_cache_placeholder != NULL ? page_cache_placeholder : NULL;
        if (ph != NULL)
            so.csrf_token = ph;
        if (render_page(md, md_len, &so, &page, &err) != 0) {
            fail(ix, 502, "render", "figment could not render the model's page", err.msg);
            return;
        }
    }
    /* the page and title are the interaction's from here on (render_page_free frees NULLs) */
    ix->page_title = page.title;
    page.title = NULL;
    size_t page_len = page.html_len;
    if (ph != NULL) {
        ix->page_html = splice_token(page.html, page.html_len, ph, ix->csrf_token, &page_len);
        cache_prepare_entry(ix, md, md_len, ix->page_title, page.html, page.html_len);
    } else {
        ix->page_html = page.html;
        page.html = NULL;
        cache_prepare_entry(ix, md, md_len, ix->page_title, NULL, 0);
    }
    if (ix->prefetch) { /* nothing to send or save: the page goes into the cache (finish), the cost is recorded */
        fig_buf_free(&body);
        render_page_free(&page);
        ix->rec.render_ms = (double)(interaction_now_ns() - t0) / 1e6;
        finish(ix, 200, "prefetch");
        return;
    }
    if (!ix->streaming)
        fig_buf_append(&body, ix->page_html, page_len);
    operator_feedback_form(&body, ix->trace_id, ix->url, ix->csrf_token);
    compose_page(ix, ix->page_title, body.data, body.len);
    fig_buf_free(&body);
    render_page_free(&page);
    ix->rec.render_ms = (double)(interaction_now_ns() - t0) / 1e6;

    /* one write() to the journal, then the answer: the store commits behind it */
    fig_err_t serr;
    fig_err_clear(&serr);
    if (save_behind(ix, ix->page_title, strcmp(ix->method, "GET") == 0 ? ix->page_html : NULL, &serr) != 0) {
        fail(ix, 500, "session_store", "figment could not save your session", serr.msg);
        return;
    }
    ix->cache_persist = ix->cache_entry != NULL;
    finish(ix, 200, "ok");
}

/* ---- for the other parts of the agent (agent_internal.h) ---- */

void agent_submit(interaction_t *ix, worker_pool_t *pool, void (*run)(worker_job_t *, worker_thread_t *),
                  void (*done)(worker_job_t *))
{
    fig_err_clear(&ix->job_err);
    ix->job.run = run;
    ix->job.done = done;
    ix->job.receiver = ix->env->receiver;
    interaction_ref(ix); /* the job's, released by done */
    worker_submit(pool, &ix->job);
}

void agent_ask_model(interaction_t *ix)
{
    ask_model(ix);
}

void agent_fail(interaction_t *ix, int status, const char *outcome, const char *heading, const char *message)
{
    fail(ix, status, outcome, heading, message);
}

void agent_finish(interaction_t *ix, int status, const char *outcome)
{
    finish(ix, status, outcome);
}

void agent_save_and_respond(interaction_t *ix)
{
    save_and_respond(ix);
}

int agent_cache_lookup(interaction_t *ix)
{
    return cache_lookup(ix);
}
