/*
 * tools.c — the registry: which tools an app may call, and their schemas for the model.
 *
 * The list is fixed and ordered (sql, set_state, http_fetch, run_code) and every text is a compile-time
 * constant, so tools_schemas() is byte-stable per app: the tools block is part of the
 * prompt prefix that provider prompt caching keys on. The only per-app variation is
 * which tools appear and which of two fixed descriptions sql gets (read or write).
 */
#include "tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tool_sql.description is the read-only text; write apps are told this instead. */
static const char tools_sql_write_description[] =
    "Run one SQLite statement on this app's database: SELECT, INSERT, UPDATE or DELETE (CREATE, "
    "DROP and ALTER only if this app allows schema changes; PRAGMA writes, ATTACH and transactions "
    "are never allowed; each statement commits on its own). A query returns a text table: a header "
    "line of column names separated by \" | \", one line per row, then a count line such as "
    "\"(3 rows)\"; only the first rows are shown, the rest are counted. A write returns \"(N rows "
    "changed)\", after the rows of any RETURNING clause. Some writes need the user's confirmation: "
    "then nothing is changed yet and the user is shown exactly what would run; do not retry it or "
    "work around it, wait for the user's decision. Errors come back as text starting with \"error: \". Use LIMIT and select only the columns you "
    "need.";

static int tools_allowed(const app_t *app, const tool_t *tool)
{
    if (tool == &tool_sql)
        return app->sql != APP_SQL_NONE;
    if (tool == &tool_set_state)
        return app->tool_set_state != 0;
    if (tool == &tool_http_fetch)
        return app->http_fetch.enabled != 0;
    if (tool == &tool_run_code)
        return app->run_code.enabled != 0;
    return 0;
}

static const tool_t *const tools_all[] = {&tool_sql, &tool_set_state, &tool_http_fetch, &tool_run_code};
#define TOOLS_COUNT (sizeof(tools_all) / sizeof(tools_all[0]))

const tool_t *tools_find(const app_t *app, const char *name)
{
    if (app == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < TOOLS_COUNT; i++)
        if (strcmp(tools_all[i]->name, name) == 0)
            return tools_allowed(app, tools_all[i]) ? tools_all[i] : NULL;
    return NULL;
}

json_t *tools_schemas(const app_t *app)
{
    json_t *list = json_array();
    if (list == NULL)
        abort(); /* figment treats OOM as fatal */
    if (app == NULL)
        return list;
    for (size_t i = 0; i < TOOLS_COUNT; i++) {
        const tool_t *t = tools_all[i];
        if (!tools_allowed(app, t))
            continue;
        json_error_t jerr;
        json_t *params = json_loads(t->parameters_json, JSON_REJECT_DUPLICATES, &jerr);
        if (params == NULL) {
            /* A constant in this source tree; the unit tests parse every one. */
            fprintf(stderr, "figment: tool %s: bad parameters_json: %s\n", t->name, jerr.text);
            abort();
        }
        const char *desc = t->description;
        if (t == &tool_sql && app->sql == APP_SQL_WRITE)
            desc = tools_sql_write_description;
        /* jansson keeps insertion order, so name, description, parameters dump in this order. */
        json_t *item = json_object();
        if (item == NULL || json_object_set_new(item, "name", json_string(t->name)) != 0 ||
            json_object_set_new(item, "description", json_string(desc)) != 0 ||
            json_object_set_new(item, "parameters", params) != 0 || json_array_append_new(list, item) != 0)
            abort();
    }
    return list;
}

char *tools_bad_arguments_text(const json_error_t *jerr)
{
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b,
                    "error: the arguments are not valid JSON (%s at position %d); call the tool again with a JSON "
                    "object that matches its schema",
                    jerr->text, jerr->position);
    return fig_buf_steal(&b);
}
