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

#include "../tools/tools.h"
#include "llm_call.h"
#include "render.h"

static void ask_model(interaction_t *ix);
static void run_next_tool(interaction_t *ix);

static void finish(interaction_t *ix, int status, const char *outcome)
{
    ix->rec.status = status;
    ix->rec.outcome = outcome;
    ix->rec.end_ns = interaction_now_ns();
    if (!ix->env->quiet)
        interaction_log(ix);
    ix->env->respond(ix, status);
}

static void fail(interaction_t *ix, int status, const char *outcome, const char *heading, const char *message)
{
    fig_buf_reset(&ix->page);
    layout_opts_t lo = {ix->rt->app->name, ix->rt->app->title, heading};
    layout_error_page(&ix->page, &lo, status, heading, message, ix->url);
    finish(ix, status, outcome);
}

static void fail_upstream(interaction_t *ix, const fig_err_t *err)
{
    if (err->code == FIG_E_UPSTREAM_TIMEOUT)
        fail(ix, 504, "upstream_timeout", "The model took too long", err->msg);
    else
        fail(ix, 502, "upstream", "The model could not produce this page", err->msg);
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
    session_load(st, id, ix->rt->app->name, ix->rt->app->limits.history_items, &ix->session, &ix->job_err);
}

static void load_session_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    if (ix->req == NULL)
        goto Exit;
    ix->rec.session_loaded_ns = interaction_now_ns();
    if (ix->job_err.code != FIG_OK) {
        fail(ix, 500, "session_store", "figment could not load your session", ix->job_err.msg);
        goto Exit;
    }
    char *text = interaction_describe(ix);
    ix->messages = json_array();
    json_array_append_new(ix->messages, json_pack("{s:s, s:s}", "role", "user", "content", text));
    free(text);
    ask_model(ix);
Exit:
    interaction_unref(ix);
}

void agent_start(interaction_t *ix)
{
    fig_err_clear(&ix->job_err);
    ix->job.run = load_session_run;
    ix->job.done = load_session_done;
    ix->job.receiver = ix->env->receiver;
    interaction_ref(ix);
    worker_submit(ix->env->workers, &ix->job);
}

/* ---- step 2: ask the model ---- */

static void save_and_respond(interaction_t *ix);

static void on_model_answer(void *ctx, const fig_err_t *err, const llm_call_timings_t *t)
{
    interaction_t *ix = ctx;
    ix->llm = NULL;
    ix->rec.llm_calls++;
    ix->rec.llm_ms += t->total_ms;
    if (ix->rec.llm_calls == 1)
        ix->rec.first_ttft_ms = t->first_byte_ms;
    ix->rec.usage.prompt_tokens += ix->result.usage.prompt_tokens;
    ix->rec.usage.cached_tokens += ix->result.usage.cached_tokens;
    ix->rec.usage.completion_tokens += ix->result.usage.completion_tokens;
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
    llm_request_t req = {
        .model = app->model ? app->model : ix->env->default_model,
        .system = ix->rt->system_prompt,
        .tools = ix->rt->tools,
        .messages = ix->messages,
        .max_tokens = app->limits.max_output_tokens,
        .stream = 1,
    };
    llm_call_opts_t opts = {
        .provider = ix->env->provider,
        .endpoint = &ix->env->endpoint,
        .request = &req,
        .result = &ix->result,
        .connect_timeout_ms = ix->env->connect_timeout_ms < left ? ix->env->connect_timeout_ms : left,
        .total_timeout_ms = left,
    };
    fig_err_t err;
    fig_err_clear(&err);
    ix->llm = llm_call_start(ix->env->http, &opts, on_model_answer, ix, &err);
    if (ix->llm == NULL)
        fail_upstream(ix, &err);
}

void agent_abandon(interaction_t *ix)
{
    ix->req = NULL;
    if (ix->llm != NULL) {
        llm_call_cancel(ix->llm);
        ix->llm = NULL;
    }
}

/* ---- step 3: run the tools the model called ---- */

static void add_tool_result(interaction_t *ix, const llm_tool_call_t *c, const char *text)
{
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
    if (ix->req != NULL) {
        add_tool_result(ix, &ix->result.calls[ix->tool_index], ix->job_text ? ix->job_text : "");
        ix->rec.tool_ms += (double)(interaction_now_ns() - ix->step_start_ns) / 1e6;
        ix->tool_index++;
        run_next_tool(ix);
    }
    free(ix->job_text);
    ix->job_text = NULL;
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
            add_tool_result(ix, c, b.data);
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
            add_tool_result(ix, c, b.data);
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
        add_tool_result(ix, c, text);
        free(text);
        ix->rec.tool_ms += (double)(interaction_now_ns() - t0) / 1e6;
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
    session_save(st, &ix->session, ix->rt->app->name, ix->method, ix->url, ix->page_title, &ix->job_err);
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
    layout_opts_t lo = {ix->rt->app->name, ix->rt->app->title, page.title};
    fig_buf_reset(&ix->page);
    layout_page(&ix->page, &lo, page.html, page.html_len);
    render_page_free(&page);
    ix->rec.render_ms = (double)(interaction_now_ns() - t0) / 1e6;

    fig_err_clear(&ix->job_err);
    ix->job.run = save_session_run;
    ix->job.done = save_session_done;
    ix->job.receiver = ix->env->receiver;
    interaction_ref(ix);
    worker_submit(ix->env->workers, &ix->job);
}
