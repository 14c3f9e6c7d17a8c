/*
 * tool_cli.c — `figment tool NAME 'JSON-ARGS' --app APP`: one tool call outside any
 * interaction, for prompt authors checking what the model will see and for tests.
 *
 * Design: nothing here re-implements a tool. The tool comes from the registry with
 * the app's policy (tools_find), its arguments are parsed like the agent parses the
 * model's (same error text for bad JSON), its context is built like the agent builds
 * it (a hardened tool_sql_open() connection for worker tools, the session's upload
 * directory, the confirmation flag), and the result text is printed unchanged.
 * Asynchronous tools (http_fetch) get a private h2o loop and http_client, run until
 * their one callback. The exit status tells a script what happened without parsing
 * the text (tool_cli.h).
 */
#include "tool_cli.h"

#include <h2o.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "buf.h"
#include "error.h"
#include "http_client.h"
#include "../tools/tools.h"
#include "uploads.h"

#define TOOL_CLI_GRACE_MS 5000

enum { CLI_OK = 0, CLI_TOOL_ERROR = 1, CLI_USAGE = 2, CLI_NEEDS_CONFIRM = 3 };

static const char tool_cli_usage_text[] =
    "usage: figment tool NAME 'JSON-ARGS' --app APP [--prompts DIR] [--var DIR] [--session ID]\n"
    "                    [--state JSON] [--confirm]\n"
    "       figment tool --list --app APP [--prompts DIR] [--var DIR]\n"
    "Runs one tool as the model would and prints its result text.\n"
    "Exit status: 0 ok, 1 the tool reported an error, 2 usage or set-up error,\n"
    "3 the call needs the user's confirmation (nothing was done; --confirm runs it).\n";

typedef struct {
    const char *name;
    const char *args;
    const char *app;
    const char *prompts;
    const char *var;
    const char *session;
    const char *state;
    int confirm;
    int list;
} tool_cli_opts_t;

static int tool_cli_usage(const char *fmt, const char *arg)
{
    fputs("figment tool: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    fputs(tool_cli_usage_text, stderr);
    return CLI_USAGE;
}

static int tool_cli_parse(int argc, char **argv, tool_cli_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->prompts = "prompts";
    o->var = "var";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "--app") == 0)
            dst = &o->app;
        else if (strcmp(a, "--prompts") == 0)
            dst = &o->prompts;
        else if (strcmp(a, "--var") == 0)
            dst = &o->var;
        else if (strcmp(a, "--session") == 0)
            dst = &o->session;
        else if (strcmp(a, "--state") == 0)
            dst = &o->state;
        else if (strcmp(a, "--confirm") == 0) {
            o->confirm = 1;
            continue;
        } else if (strcmp(a, "--list") == 0) {
            o->list = 1;
            continue;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(tool_cli_usage_text, stdout);
            return 1;
        } else if (a[0] == '-' && a[1] == '-') {
            return tool_cli_usage("unknown option '%s'", a);
        } else if (o->name == NULL && !o->list) {
            o->name = a;
            continue;
        } else if (o->args == NULL && !o->list) {
            o->args = a;
            continue;
        } else {
            return tool_cli_usage("unexpected argument '%s'", a);
        }
        if (i + 1 >= argc)
            return tool_cli_usage("%s needs a value", a);
        *dst = argv[++i];
    }
    if (o->app == NULL)
        return tool_cli_usage("%s", "--app APP is required");
    if (!o->list && o->name == NULL)
        return tool_cli_usage("%s", "the tool NAME is required (or --list)");
    if (!o->list && o->args == NULL)
        return tool_cli_usage("the JSON arguments are required, e.g. figment tool %s '{...}'", o->name);
    return 0;
}

/* "sql, set_state" — the tools this app allows, or "none". Caller frees. */
static char *tool_cli_allowed(const app_t *app)
{
    json_t *schemas = tools_schemas(app);
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append(&b, "", 0);
    size_t i;
    json_t *t;
    json_array_foreach(schemas, i, t)
    {
        if (i > 0)
            fig_buf_append_str(&b, ", ");
        fig_buf_append_str(&b, json_string_value(json_object_get(t, "name")));
    }
    if (b.len == 0)
        fig_buf_append_str(&b, "none");
    json_decref(schemas);
    return fig_buf_steal(&b);
}

static int tool_cli_list(const app_t *app)
{
    json_t *schemas = tools_schemas(app);
    if (json_array_size(schemas) == 0)
        printf("app %s allows no tools\n", app->name);
    size_t i;
    json_t *t;
    json_array_foreach(schemas, i, t)
    {
        char *params = json_dumps(json_object_get(t, "parameters"), JSON_COMPACT);
        printf("%s\n    %s\n    parameters: %s\n", json_string_value(json_object_get(t, "name")),
               json_string_value(json_object_get(t, "description")), params ? params : "{}");
        free(params);
    }
    json_decref(schemas);
    return CLI_OK;
}

/* Tells "no such tool" from "not allowed here" by asking the registry with every
 * tool switched on; the registry stays the one list of tools. */
static int tool_cli_exists(const char *name)
{
    static app_t all; /* zeroed; only the policy fields are read */
    all.sql = APP_SQL_READ;
    all.tool_set_state = 1;
    all.http_fetch.enabled = 1;
    all.run_code.enabled = 1;
    return tools_find(&all, name) != NULL;
}

/* ---- asynchronous tools ---- */

typedef struct {
    int done;
    char *text;
    int status;
} tool_cli_async_t;

static void tool_cli_async_done(void *cb_ctx, char *text, int status)
{
    tool_cli_async_t *a = cb_ctx;
    a->text = text;
    a->status = status;
    a->done = 1;
}

static char *tool_cli_run_async(const tool_t *tool, tool_ctx_t *ctx, const json_t *args, int *status)
{
    h2o_evloop_t *loop = h2o_evloop_create();
    http_client_t *http = http_client_create(loop, 4);
    tool_cli_async_t a = {0, NULL, TOOL_ERROR};
    char *text = NULL;
    *status = TOOL_ERROR;
    void *handle = tool->start(ctx, (struct http_client *)http, args, tool_cli_async_done, &a, &text, status);
    if (handle != NULL) {
        /* The tool enforces its own deadline (tools.http_fetch.timeout_ms); ours is a
         * backstop so a tool that never calls back cannot hang a script. */
        uint64_t limit = h2o_now(loop) + (uint64_t)ctx->app->http_fetch.timeout_ms + TOOL_CLI_GRACE_MS;
        while (!a.done && h2o_now(loop) < limit)
            h2o_evloop_run(loop, 100);
        if (a.done) {
            text = a.text;
            *status = a.status;
        } else {
            if (tool->cancel != NULL)
                tool->cancel(handle);
            text = fig_strdup("error: the tool did not finish in time");
            *status = TOOL_ERROR;
        }
    }
    http_client_destroy(http);
    /* Let sockets closed by the client be disposed before the loop goes. */
    h2o_evloop_run(loop, 0);
    h2o_evloop_destroy(loop);
    return text;
}

/* ---- main ---- */

int tool_cli_main(int argc, char **argv)
{
    tool_cli_opts_t o;
    int rc = tool_cli_parse(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? CLI_OK : rc;

    fig_err_t err;
    fig_err_clear(&err);
    app_t *app = app_load(o.prompts, o.app, o.var, &err);
    if (app == NULL) {
        fprintf(stderr, "figment tool: %s\n", err.msg);
        return CLI_USAGE;
    }
    if (o.list) {
        rc = tool_cli_list(app);
        app_free(app);
        return rc;
    }

    json_t *args = NULL, *state = NULL;
    sqlite3 *db = NULL;
    char *upload_dir = NULL, *text = NULL;
    rc = CLI_USAGE;

    const tool_t *tool = tools_find(app, o.name);
    if (tool == NULL) {
        char *allowed = tool_cli_allowed(app);
        if (tool_cli_exists(o.name))
            fprintf(stderr, "figment tool: app %s does not allow the tool '%s'; it allows: %s\n", app->name, o.name,
                    allowed);
        else
            fprintf(stderr, "figment tool: there is no tool named '%s'; app %s allows: %s\n", o.name, app->name,
                    allowed);
        free(allowed);
        goto done;
    }
    if ((tool->kind == TOOL_ASYNC && tool->start == NULL) || (tool->kind != TOOL_ASYNC && tool->run == NULL)) {
        fprintf(stderr, "figment tool: the tool '%s' is not available in this build\n", tool->name);
        goto done;
    }

    if (o.state != NULL) {
        json_error_t jerr;
        state = json_loads(o.state, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(state)) {
            fprintf(stderr, "figment tool: --state: expected a JSON object (%s)\n",
                    state == NULL ? jerr.text : "not an object");
            goto done;
        }
    } else {
        state = json_object();
    }
    if (o.session != NULL && (upload_dir = uploads_dir(o.var, app->name, o.session)) == NULL) {
        fprintf(stderr, "figment tool: --session: expected a session id of letters, digits, '_' or '-' (at most 64)\n");
        goto done;
    }
    if (tool->kind == TOOL_IN_WORKER) {
        if (app_db_prepare(app, &err) != 0 || (db = tool_sql_open(app, &err)) == NULL) {
            fprintf(stderr, "figment tool: %s\n", err.msg);
            goto done;
        }
    }

    /* The arguments are the model's text: a parse failure is the tool's error, in the
     * agent's words (tools_bad_arguments_text), not a usage error. */
    json_error_t jerr;
    args = json_loadb(o.args, strlen(o.args), 0, &jerr);
    int status = TOOL_ERROR;
    if (args == NULL) {
        text = tools_bad_arguments_text(&jerr);
    } else {
        tool_ctx_t ctx = {
            .app = app,
            .app_db = db,
            .state = &state,
            .upload_dir = upload_dir,
            .confirmed = o.confirm,
            .write_log = NULL,
        };
        if (tool->kind == TOOL_ASYNC)
            text = tool_cli_run_async(tool, &ctx, args, &status);
        else
            text = tool->run(&ctx, args, &status);
    }

    if (status == TOOL_NEEDS_CONFIRM) {
        printf("needs confirmation: %s\n", text ? text : "");
        rc = CLI_NEEDS_CONFIRM;
    } else {
        size_t n = text ? strlen(text) : 0;
        fwrite(text ? text : "", 1, n, stdout);
        if (n == 0 || text[n - 1] != '\n')
            fputc('\n', stdout);
        rc = status == TOOL_OK ? CLI_OK : CLI_TOOL_ERROR;
    }
    if (fflush(stdout) != 0) {
        perror("figment tool: stdout");
        rc = CLI_USAGE;
    }

done:
    free(text);
    json_decref(args);
    json_decref(state);
    free(upload_dir);
    if (db != NULL)
        sqlite3_close(db);
    app_free(app);
    return rc;
}
