/*
 * set_state.c — the `set_state` tool: a JSON merge patch (RFC 7396) into the session
 * state, the model's only memory between interactions.
 *
 * The state is always a JSON object and its size is measured as the compact,
 * key-sorted serialization (the form that is stored and shown to the model), so the
 * cap means the same thing everywhere. A refused patch leaves the state untouched:
 * the merge builds a new value and only a valid result replaces *state.
 *
 * Runs on the event loop (TOOL_ON_LOOP): a merge of a bounded object is fast.
 */
#include "tools.h"

#include <stdlib.h>
#include <string.h>

#include "../server/buf.h"
#include "../server/json_patch.h"

#define SET_STATE_DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS)

int tool_set_state_apply(json_t **state, const json_t *patch, int max_bytes, fig_err_t *err)
{
    if (state == NULL || patch == NULL) {
        fig_err_set(err, FIG_E_INVALID, "no state to patch");
        return -1;
    }
    json_t *empty = NULL;
    const json_t *target = *state;
    if (target == NULL)
        target = empty = json_object();
    json_t *result = json_merge_patch(target, patch);
    json_decref(empty);
    if (result == NULL) {
        fig_err_set(err, FIG_E_INVALID, "the patch could not be applied");
        return -1;
    }
    if (!json_is_object(result)) {
        json_decref(result);
        fig_err_set(err, FIG_E_INVALID, "the state must stay a JSON object; send an object as the patch");
        return -1;
    }
    char *text = json_dumps(result, SET_STATE_DUMP_FLAGS);
    if (text == NULL) {
        json_decref(result);
        fig_err_set(err, FIG_E_INVALID, "the new state cannot be serialized");
        return -1;
    }
    size_t len = strlen(text);
    free(text);
    if (max_bytes < 0 || len > (size_t)max_bytes) {
        json_decref(result);
        fig_err_set(err, FIG_E_TOO_LARGE, "state would be %zu bytes; the limit is %d bytes", len, max_bytes);
        return -1;
    }
    json_decref(*state);
    *state = result;
    return 0;
}

static char *set_state_run(tool_ctx_t *ctx, const json_t *args, int *is_error)
{
    *is_error = 1;
    const json_t *patch = json_is_object(args) && json_object_size(args) == 1 ? json_object_get(args, "patch") : NULL;
    if (!json_is_object(patch))
        return fig_strdup("error: expected {\"patch\": {<JSON merge patch object>}}");
    if (ctx == NULL || ctx->app == NULL || ctx->state == NULL)
        return fig_strdup("error: there is no session state here");

    fig_err_t err;
    fig_err_clear(&err);
    fig_buf_t out = FIG_BUF_INIT;
    if (tool_set_state_apply(ctx->state, patch, ctx->app->limits.max_state_bytes, &err) != 0) {
        fig_buf_appendf(&out, "error: %s", err.msg);
        return fig_buf_steal(&out);
    }
    char *text = json_dumps(*ctx->state, SET_STATE_DUMP_FLAGS);
    if (text == NULL)
        abort(); /* serialized a moment ago; only OOM fails here */
    fig_buf_append_str(&out, "ok; state is now ");
    fig_buf_append_str(&out, text);
    free(text);
    *is_error = 0;
    return fig_buf_steal(&out);
}

const tool_t tool_set_state = {
    .name = "set_state",
    .description =
        "Update this session's state with a JSON merge patch (RFC 7396): keys in patch are set, "
        "nested objects are merged, a null value deletes the key. The state is a small JSON object "
        "(size-limited) that you see as session_state in every later interaction of this session; "
        "keep in it only what later pages need. Returns \"ok\" and the new state.",
    .parameters_json =
        "{\"type\":\"object\",\"properties\":{\"patch\":{\"type\":\"object\",\"description\":"
        "\"JSON merge patch for the state object; null deletes a key.\"}},\"required\":[\"patch\"],"
        "\"additionalProperties\":false}",
    .kind = TOOL_ON_LOOP,
    .run = set_state_run,
};
