/*
 * agent.c — the agent loop (see agent.h).
 *
 * Everything here runs on the interaction's loop thread; blocking work (session
 * store, sql tool) is sent to the worker pool and comes back through the
 * worker's done callback. Each step checks `ix->req`: once the client is gone the
 * interaction stops and nothing is written.
 */
#include "agent.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tools/tools.h"
#include "llm_router.h"
#include "metrics.h"
#include "operator.h"
#include "render.h"

static void ask_model(interaction_t *ix);
static void run_next_tool(interaction_t *ix);

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
    t->cache_hit = 0;
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

static void finish(interaction_t *ix, int status, const char *outcome)
{
    ix->rec.status = status;
    ix->rec.outcome = outcome;
    ix->rec.end_ns = interaction_now_ns();
    if (!ix->env->quiet)
        interaction_log(ix);
    record_trace(ix);
    ix->env->respond(ix, status);
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
}

static void fail(interaction_t *ix, int status, const char *outcome, const char *heading, const char *message)
{
    free(ix->error_text);
    ix->error_text = fig_strdup(message);
    fig_buf_reset(&ix->page);
    layout_opts_t lo = {ix->rt->app->name, ix->rt->app->title, heading};
    layout_error_page(&ix->page, &lo, status, heading, message, ix->url);
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
    layout_opts_t lo = {ix->rt->app->name, ix->rt->app->title, title};
    fig_buf_reset(&ix->page);
    layout_page(&ix->page, &lo, body.data, body.len);
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
    if (!budget_knows_session(ix->env->budget, id)) {
        double spent = session_spent_usd(st, id, &ix->job_err);
        if (spent >= 0)
            budget_seed_session(ix->env->budget, id, spent);
    }
}

/* The session is known (from the store, the cache, or fresh): check the budgets and
 * ask the model. */
static void session_ready(interaction_t *ix)
{
    ix->rec.session_loaded_ns = interaction_now_ns();
    if (ix->session.state != NULL)
        ix->state_before = json_deep_copy(ix->session.state);
    fig_err_t berr;
    fig_err_clear(&berr);
    if (budget_check(ix->env->budget, ix->session.id, ix->rt->app->name, time(NULL), &berr) != 0) {
        fail(ix, 402, "budget", "The spending limit is reached", berr.msg);
        return;
    }
    char *text = interaction_describe(ix);
    ix->messages = json_array();
    json_array_append_new(ix->messages, json_pack("{s:s, s:s}", "role", "user", "content", text));
    free(text);
    ask_model(ix);
}

static void load_session_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    if (ix->req != NULL) {
        if (ix->job_err.code != FIG_OK)
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
        ix->session.state = json_object();
        ix->session.history = json_array();
        ix->session.exists = 0;
        if (!budget_knows_session(env->budget, ix->session.id))
            budget_seed_session(env->budget, ix->session.id, 0);
        session_ready(ix);
        return;
    }
    if (budget_knows_session(env->budget, ix->session.id)) {
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
    ix->req = NULL;
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

static void tool_job_run(worker_job_t *job, worker_thread_t *wt)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    const llm_tool_call_t *c = &ix->result.calls[ix->tool_index];
    const tool_t *tool = tools_find(ix->rt->app, c->name);
    json_t *args = json_loadb(c->arguments.data ? c->arguments.data : "", c->arguments.len, 0, NULL);
    fig_err_t err;
    fig_err_clear(&err);
    tool_ctx_t tctx = {.app = ix->rt->app, .app_db = worker_app_db(wt, ix->rt->app, &err), .state = NULL};
    if (tctx.app_db == NULL) {
        fig_buf_t b = FIG_BUF_INIT;
        fig_buf_appendf(&b, "error: the database is unavailable (%s)", err.msg);
        ix->job_text = fig_buf_steal(&b);
    } else {
        int is_error = 0;
        ix->job_text = tool->run(&tctx, args, &is_error);
    }
    json_decref(args);
}

static void tool_job_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    /* take the result before run_next_tool() may hand the next tool to a worker,
     * which writes ix->job_text again */
    char *text = ix->job_text;
    ix->job_text = NULL;
    if (ix->req != NULL) {
        double ms = (double)(interaction_now_ns() - ix->step_start_ns) / 1e6;
        add_tool_result(ix, &ix->result.calls[ix->tool_index], text ? text : "", ms);
        ix->rec.tool_ms += ms;
        ix->tool_index++;
        run_next_tool(ix);
    }
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
        if (tool->runs_in_worker) {
            json_decref(args);
            ix->step_start_ns = interaction_now_ns();
            fig_err_clear(&ix->job_err);
            ix->job.run = tool_job_run;
            ix->job.done = tool_job_done;
            ix->job.receiver = ix->env->receiver;
            interaction_ref(ix);
            worker_submit(ix->env->workers, &ix->job);
            return;
        }
        uint64_t t0 = interaction_now_ns();
        tool_ctx_t tctx = {.app = ix->rt->app, .app_db = NULL, .state = &ix->session.state};
        int is_error = 0;
        char *text = tool->run(&tctx, args, &is_error);
        json_decref(args);
        double ms = (double)(interaction_now_ns() - t0) / 1e6;
        add_tool_result(ix, c, text, ms);
        free(text);
        ix->rec.tool_ms += ms;
        ix->tool_index++;
    }
    ix->round++;
    ask_model(ix);
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
    /* committed: the cache gets the same state and the history as the store now has it */
    session_t saved = ix->session;
    json_t *history = json_array();
    size_t n = ix->session.history ? json_array_size(ix->session.history) : 0;
    size_t keep = (size_t)ix->rt->app->limits.history_items;
    for (size_t i = n + 1 > keep ? n + 1 - keep : 0; i < n; i++)
        json_array_append(history, json_array_get(ix->session.history, i));
    if (keep > 0)
        json_array_append_new(history, json_pack("{s:s, s:s, s:s}", "method", ix->method, "path", ix->url, "title",
                                                 ix->page_title ? ix->page_title : ""));
    saved.history = history;
    saved.seq = ix->session.seq + 1;
    session_cache_put(ix->env->session_cache, ix->rt->app->name, &saved);
    json_decref(history);
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

static void save_and_respond(interaction_t *ix)
{
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
    layout_opts_t lo = {ix->rt->app->name, ix->rt->app->title, page.title};
    fig_buf_t body = FIG_BUF_INIT;
    fig_buf_append(&body, page.html, page.html_len);
    operator_feedback_form(&body, ix->trace_id, ix->url, ix->csrf_token);
    fig_buf_reset(&ix->page);
    layout_page(&ix->page, &lo, body.data, body.len);
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
