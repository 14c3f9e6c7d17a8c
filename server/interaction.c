/*
 * interaction.c — the interaction record and the interaction's text for the model
 * (see interaction.h). The text form is part of the backend contract
 * (prompts/system.md) and of the stand-in model's scripts: change it in all three.
 */
#include "interaction.h"

#include "agent.h"
#include "crypto.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

interaction_t *interaction_new(struct agent_env *env, const app_runtime_t *rt, h2o_req_t *req)
{
    interaction_t *ix = fig_calloc(1, sizeof(*ix));
    ix->refcnt = 1;
    ix->env = env;
    ix->rt = rt;
    ix->req = req;
    ix->rec.start_ns = interaction_now_ns();
    ix->rec.outcome = "ok";
    llm_result_init(&ix->result);
    uint8_t ids[24];
    crypto_random(ids, sizeof(ids));
    char *hex = crypto_hex(ids, sizeof(ids));
    memcpy(ix->trace_id, hex, 32);
    memcpy(ix->span_id, hex + 32, 16);
    free(hex);
    ix->tool_log = json_array();
    metrics_in_flight_add(1);
    ix->counted_in_flight = 1;
    ((agent_env_t *)env)->in_flight++;
    return ix;
}

void interaction_ref(interaction_t *ix)
{
    ix->refcnt++;
}

void interaction_unref(interaction_t *ix)
{
    if (--ix->refcnt > 0)
        return;
    if (ix->holds_upstream_slot)
        concurrency_cap_release(ix->env->upstream_cap);
    if (ix->counted_in_flight) {
        metrics_in_flight_add(-1);
        ix->env->in_flight--;
    }
    agent_attempts_free(ix);
    agent_attempt_free(ix);
    free(ix->error_text);
    json_decref(ix->state_before);
    json_decref(ix->tool_log);
    free(ix->method);
    free(ix->path);
    free(ix->url);
    json_decref(ix->query);
    json_decref(ix->form);
    free(ix->csrf_token);
    free(ix->set_cookie);
    session_clear(&ix->session);
    json_decref(ix->messages);
    llm_result_free(&ix->result);
    free(ix->job_text);
    free(ix->page_title);
    free(ix->page_html);
    fig_buf_free(&ix->page);
    fig_buf_free(&ix->stream_md);
    fig_buf_free(&ix->stream_html);
    page_cache_entry_unref(ix->cache_entry);
    free(ix->upload_dir);
    json_decref(ix->uploads);
    for (size_t i = 0; i < ix->n_upload_files; i++) {
        free(ix->upload_files[i].filename);
        free(ix->upload_files[i].content_type);
        free(ix->upload_files[i].data);
    }
    free(ix->upload_files);
    confirm_pending_clear(&ix->pending);
    free(ix->confirm_text);
    free(ix);
}

uint64_t interaction_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void append_json(fig_buf_t *b, const json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    fig_buf_append_str(b, s ? s : "{}");
    free(s);
}

char *interaction_describe(const interaction_t *ix)
{
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b, "# Interaction\nmethod: %s\npath: %s\nquery: ", ix->method, ix->path);
    append_json(&b, ix->query);
    fig_buf_append_str(&b, "\nform: ");
    append_json(&b, ix->form);
    fig_buf_append_str(&b, "\nsession_state: ");
    append_json(&b, ix->session.state);
    if (ix->uploads != NULL) { /* only for apps that take files */
        fig_buf_append_str(&b, "\nuploads: ");
        append_json(&b, ix->uploads);
    }
    fig_buf_append_str(&b, "\nrecent:");
    size_t n = ix->session.history ? json_array_size(ix->session.history) : 0;
    if (n == 0)
        fig_buf_append_str(&b, " (none)");
    for (size_t i = 0; i < n; i++) {
        const json_t *h = json_array_get(ix->session.history, i);
        const char *title = json_string_value(json_object_get(h, "title"));
        fig_buf_appendf(&b, "\n- %s %s -> %s", json_string_value(json_object_get(h, "method")),
                        json_string_value(json_object_get(h, "path")), title && *title ? title : "(untitled)");
    }
    fig_buf_append_str(&b, "\n");
    return fig_buf_steal(&b);
}

void interaction_log(const interaction_t *ix)
{
    const interaction_record_t *r = &ix->rec;
    json_t *line = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:f, s:i, s:f, s:f, s:i, s:f, s:f, s:I, s:I, s:I}",
                             "event", "interaction", "trace_id", ix->trace_id, "app", ix->rt->app->name, "method", ix->method ? ix->method : "",
                             "path", ix->path ? ix->path : "", "status", r->status, "outcome", r->outcome,
                             "model", r->model, "route", r->route,
                             "total_ms", (double)(r->end_ns - r->start_ns) / 1e6, "llm_calls", r->llm_calls,
                             "llm_ms", r->llm_ms, "ttft_ms", r->first_ttft_ms, "tool_calls", r->tool_calls,
                             "tool_ms", r->tool_ms, "render_ms", r->render_ms,
                             "prompt_tokens", (json_int_t)r->usage.prompt_tokens,
                             "cached_tokens", (json_int_t)r->usage.cached_tokens,
                             "completion_tokens", (json_int_t)r->usage.completion_tokens);
    if (line != NULL) {
        json_object_set_new(line, "cost_usd", json_real(r->cost_usd));
        json_object_set_new(line, "attempts", json_integer(r->attempts));
        json_object_set_new(line, "routing_rule", json_string(r->route_rule ? r->route_rule : "default"));
        if (r->stale)
            json_object_set_new(line, "stale", json_true());
    }
    char *s = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    if (s)
        fprintf(stderr, "%s\n", s);
    free(s);
    json_decref(line);
}
