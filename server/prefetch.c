/*
 * prefetch.c — the likely next pages, generated ahead into the page cache; see the
 * comment below and docs/ARCHITECTURE.md ("Progressive pages and the page cache").
 */
#include "agent_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "form.h"

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
    interaction_t *ix = interaction_new(from->env, from->rt, &agent_no_client);
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
    /* ix keeps its first reference until agent_finish(): a prefetch has no request to hold it */
    if (!agent_cache_lookup(ix))
        agent_finish(ix, 200, "prefetch_skipped");
}

void prefetch_links(interaction_t *ix)
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

