/*
 * render.c — Markdown to a sanitized page fragment plus its title (see render.h).
 *
 * md4c renders CommonMark + GFM tables, strikethrough and task lists with raw
 * HTML passed through: the model may write a limited HTML subset, and
 * sanitize_html() (sanitize.c) is what decides what survives. The page title is
 * taken from the sanitized output, re-parsed, so a heading the sanitizer dropped
 * (inside <script>, say) can never name the page. That output is bounded in size
 * and nesting, so gumbo's default allocator and recursive free are fine here.
 */
#include "render.h"

#include <gumbo.h>
#include <md4c-html.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RENDER_MAX_INPUT (512u * 1024) /* Markdown bytes accepted */
#define RENDER_MAX_TITLE 200           /* title bytes, cut at a UTF-8 boundary */
#define RENDER_MAX_DEPTH 1024          /* recursion bound for the title search */

static void md_out(const MD_CHAR *text, MD_SIZE size, void *ud)
{
    fig_buf_append(ud, text, size);
}

char *render_markdown(const char *md, size_t len, size_t *out_len)
{
    fig_buf_t out = FIG_BUF_INIT;
    unsigned flags = MD_FLAG_TABLES | MD_FLAG_STRIKETHROUGH | MD_FLAG_TASKLISTS | MD_FLAG_PERMISSIVEAUTOLINKS;
    if (len > (MD_SIZE)-1 || md_html(md != NULL ? md : "", (MD_SIZE)len, md_out, &out, flags,
                                     MD_HTML_FLAG_SKIP_UTF8_BOM) != 0) {
        fig_buf_free(&out);
        return NULL;
    }
    if (out_len != NULL)
        *out_len = out.len;
    return fig_buf_steal(&out);
}

static bool is_heading(const GumboNode *n)
{
    if (n->type != GUMBO_NODE_ELEMENT)
        return false;
    GumboTag t = n->v.element.tag;
    return t == GUMBO_TAG_H1 || t == GUMBO_TAG_H2 || t == GUMBO_TAG_H3 || t == GUMBO_TAG_H4 ||
           t == GUMBO_TAG_H5 || t == GUMBO_TAG_H6;
}

/* Appends the text under n with ASCII whitespace runs collapsed to one space.
 * Recursion is bounded: the sanitizer capped the nesting of what we parse. */
static void collect_text(fig_buf_t *b, const GumboNode *n, int depth)
{
    if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_WHITESPACE) {
        for (const char *p = n->v.text.text; *p; p++) {
            if (strchr(" \t\n\r\f", *p) == NULL)
                fig_buf_append(b, p, 1);
            else if (b->len > 0 && b->data[b->len - 1] != ' ')
                fig_buf_append(b, " ", 1);
        }
    } else if (n->type == GUMBO_NODE_ELEMENT && depth < RENDER_MAX_DEPTH) {
        for (unsigned i = 0; i < n->v.element.children.length; i++)
            collect_text(b, n->v.element.children.data[i], depth + 1);
    }
}

/* Fills t with the text of the first h1..h6 under n that has any. */
static void find_heading(fig_buf_t *t, const GumboNode *n, int depth)
{
    if (n->type != GUMBO_NODE_ELEMENT || depth >= RENDER_MAX_DEPTH)
        return;
    if (is_heading(n)) {
        collect_text(t, n, depth);
        while (t->len > 0 && t->data[t->len - 1] == ' ')
            t->len--;
        return;
    }
    for (unsigned i = 0; i < n->v.element.children.length && t->len == 0; i++)
        find_heading(t, n->v.element.children.data[i], depth + 1);
}

static char *find_title(const char *html, size_t len)
{
    fig_buf_t t = FIG_BUF_INIT;
    GumboOutput *g = gumbo_parse_with_options(&kGumboDefaultOptions, html, len);
    if (g == NULL)
        return NULL;
    find_heading(&t, g->root, 0);
    gumbo_destroy_output(&kGumboDefaultOptions, g);
    if (t.len == 0) {
        fig_buf_free(&t);
        return NULL;
    }
    if (t.len > RENDER_MAX_TITLE) {
        t.len = RENDER_MAX_TITLE;
        while (t.len > 0 && ((unsigned char)t.data[t.len] & 0xC0) == 0x80)
            t.len--; /* t.data[t.len] starts the first character cut off */
        while (t.len > 0 && t.data[t.len - 1] == ' ')
            t.len--;
    }
    t.data[t.len] = '\0';
    return fig_buf_steal(&t);
}

int render_page(const char *md, size_t len, const sanitize_opts_t *opts, render_page_t *out, fig_err_t *err)
{
    memset(out, 0, sizeof(*out));
    if (len > RENDER_MAX_INPUT) {
        fig_err_set(err, FIG_E_TOO_LARGE, "page is %zu bytes of Markdown, more than the %u allowed", len,
                    RENDER_MAX_INPUT);
        return -1;
    }
    size_t html_len;
    char *html = render_markdown(md, len, &html_len);
    if (html == NULL) {
        fig_err_set(err, FIG_E_INVALID, "the Markdown renderer (md4c) failed on this page");
        return -1;
    }
    out->html = sanitize_html(html, html_len, opts, &out->html_len);
    free(html);
    out->title = find_title(out->html, out->html_len);
    return 0;
}

void render_page_free(render_page_t *p)
{
    if (p == NULL)
        return;
    free(p->html);
    free(p->title);
    p->html = p->title = NULL;
    p->html_len = 0;
}
