/*
 * render.c — Markdown to a sanitized page fragment plus its title (see render.h).
 *
 * md4c renders CommonMark + GFM tables, strikethrough and task lists with raw
 * HTML passed through: the model may write a limited HTML subset, and
 * sanitize_html() (sanitize.c) is what decides what survives. The page title is
 * read from the sanitized output, so a heading the sanitizer dropped (inside
 * <script>, say) can never name the page; that output is canonical, so a linear
 * scan finds it without a second parse.
 */
#include "render.h"
#include "render_fast.h"

#include <md4c-html.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RENDER_MAX_INPUT (512u * 1024) /* Markdown bytes accepted */
#define RENDER_MAX_TITLE 200           /* title bytes, cut at a UTF-8 boundary */

static void md_out(const MD_CHAR *text, MD_SIZE size, void *ud)
{
    fig_buf_append(ud, text, size);
}

char *render_markdown(const char *md, size_t len, size_t *out_len)
{
    fig_buf_t in = FIG_BUF_INIT, out = FIG_BUF_INIT;
    unsigned flags = MD_FLAG_TABLES | MD_FLAG_STRIKETHROUGH | MD_FLAG_TASKLISTS | MD_FLAG_PERMISSIVEAUTOLINKS;
    /* md4c 0.4.8 reads past the end of a truncated UTF-8 sequence at the end of its
     * input, so it only ever sees valid UTF-8: invalid bytes (and NUL, which CommonMark
     * turns into U+FFFD anyway) become U+FFFD */
    fig_buf_append_utf8_clean(&in, md != NULL ? md : "", md != NULL ? len : 0);
    int rc = in.len > (MD_SIZE)-1 ? -1 : md_html(in.data, (MD_SIZE)in.len, md_out, &out, flags,
                                                  MD_HTML_FLAG_SKIP_UTF8_BOM);
    fig_buf_free(&in);
    if (rc != 0) {
        fig_buf_free(&out);
        return NULL;
    }
    if (out_len != NULL)
        *out_len = out.len;
    return fig_buf_steal(&out);
}

/* "<hN>" or "<hN attrs>" at p: returns N, else 0. */
static char heading_at(const char *p)
{
    return p[1] == 'h' && p[2] >= '1' && p[2] <= '6' && (p[3] == '>' || p[3] == ' ') ? p[2] : 0;
}

/* Appends the text of the heading starting at *pp, whitespace collapsed; moves *pp past it. */
static void heading_text(fig_buf_t *t, const char **pp)
{
    static const struct { const char *ent; char c; } ents[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}, {"&#13;", '\r'},
    };
    const char *p = *pp;
    char level = heading_at(p);
    int depth = 0;
    while (*p != '\0') {
        if (*p == '<') {
            const char *end = strchr(p, '>');
            if (end == NULL)
                break;
            if (heading_at(p) == level)
                depth++;
            else if (p[1] == '/' && p[2] == 'h' && p[3] == level && p[4] == '>' && --depth == 0)
                p = end; /* done */
            p = end + 1;
            if (depth == 0)
                break;
            continue;
        }
        char c = *p;
        size_t n = 1;
        for (size_t i = 0; c == '&' && i < sizeof(ents) / sizeof(ents[0]); i++)
            if (strncmp(p, ents[i].ent, strlen(ents[i].ent)) == 0) {
                c = ents[i].c;
                n = strlen(ents[i].ent);
            }
        if (strchr(" \t\n\r\f", c) == NULL)
            fig_buf_append(t, &c, 1);
        else if (t->len > 0 && t->data[t->len - 1] != ' ')
            fig_buf_append(t, " ", 1);
        p += n;
    }
    *pp = p;
}

/*
 * The first h1..h6 with any text, from the sanitizer's output. That output is
 * canonical, so a scan is exact: '<' only ever starts a tag the sanitizer wrote,
 * '>' never occurs inside one (values are escaped), and text uses only the
 * references decoded above.
 */
char *render_title(const char *html)
{
    fig_buf_t t = FIG_BUF_INIT;
    const char *p = html;
    while (t.len == 0 && (p = strchr(p, '<')) != NULL) {
        if (heading_at(p) == 0) {
            p++;
            continue;
        }
        heading_text(&t, &p);
        while (t.len > 0 && t.data[t.len - 1] == ' ')
            t.len--;
    }
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
    fig_buf_t fast = FIG_BUF_INIT;
    if (render_fast(md, len, opts, &fast) == 0) { /* exactly the slow path's bytes, or declined */
        out->html_len = fast.len;
        out->html = fig_buf_steal(&fast);
        out->title = render_title(out->html);
        return 0;
    }
    fig_buf_free(&fast);
    size_t html_len;
    char *html = render_markdown(md, len, &html_len);
    if (html == NULL) {
        fig_err_set(err, FIG_E_INVALID, "the Markdown renderer (md4c) failed on this page");
        return -1;
    }
    out->html = sanitize_html(html, html_len, opts, &out->html_len);
    free(html);
    out->title = render_title(out->html);
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

/* Tags whose blocks may contain blank lines: a cut inside one would close the element
 * early (each fragment is sanitized on its own) and orphan what follows. */
static const char *const render_container_tags[] = {"form", "table", "div", "section", "details", "ul", "ol",
                                                      "dl", "blockquote", "pre", "fieldset", "select", NULL};

static size_t render_tag_len(const char *p, const char *end, const char *tag)
{
    size_t n = strlen(tag);
    if ((size_t)(end - p) < n + 1 || strncasecmp(p, tag, n) != 0)
        return 0;
    char c = p[n];
    return (c == '>' || c == ' ' || c == '\t' || c == '\n' || c == '/' || c == '\r') ? n : 0;
}

size_t render_block_cut(const char *md, size_t len)
{
    size_t cut = 0;
    int depth = 0;          /* open container HTML elements */
    char fence = 0;         /* '`' or '~' while inside a fenced code block */
    size_t fence_len = 0;
    const char *end = md + len;
    const char *line = md;
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL)
            break; /* an unfinished line never ends a block */
        const char *p = line;
        size_t indent = 0;
        while (p < nl && *p == ' ' && indent < 4) {
            p++;
            indent++;
        }
        if (indent < 4 && p < nl && (*p == '`' || *p == '~')) {
            size_t run = 0;
            while (p + run < nl && p[run] == *p)
                run++;
            if (run >= 3) {
                if (fence == 0) {
                    fence = *p;
                    fence_len = run;
                } else if (*p == fence && run >= fence_len) {
                    fence = 0;
                }
            }
        } else if (fence == 0) {
            for (const char *q = line; q < nl; q++) {
                if (*q != '<')
                    continue;
                int closing = q + 1 < nl && q[1] == '/';
                const char *t = q + 1 + closing;
                for (size_t i = 0; render_container_tags[i] != NULL; i++) {
                    if (render_tag_len(t, nl + 1, render_container_tags[i]) != 0) {
                        depth += closing ? -1 : 1;
                        if (depth < 0)
                            depth = 0;
                        break;
                    }
                }
            }
        }
        int blank = 1;
        for (const char *q = line; q < nl; q++)
            if (*q != ' ' && *q != '\t' && *q != '\r')
                blank = 0;
        if (blank && fence == 0 && depth == 0 && line > md)
            cut = (size_t)(nl + 1 - md);
        line = nl + 1;
    }
    return cut;
}
