/*
 * render.h — the render pipeline: the model's page (Markdown with inline HTML) is
 * rendered by md4c, then cleaned by an allowlist sanitizer built on gumbo, then
 * placed in figment's layout.
 *
 * The sanitizer is the security boundary for model output: anything it emits is
 * safe to serve under figment's CSP whatever the input. It keeps only allowlisted
 * elements and attributes (no script, style, iframe, object, embed, base, meta,
 * link, svg, math; no on* or style attributes), only relative or http(s) URLs,
 * forms only to the same app (method get or post; a POST form gets a hidden
 * `_csrf` input), and re-serializes from the parse tree so the output is
 * well-formed. Dropped elements whose content is not text (script, style, ...) are
 * dropped with their content; unknown elements are unwrapped.
 *
 * Seam for progressive streaming: render_markdown() and sanitize_html() work on any
 * complete Markdown block as well as on a whole page.
 *
 * Ownership: every returned string is malloc'd and freed by the caller;
 * render_page_free() releases a render_page_t.
 */
#ifndef FIG_RENDER_H
#define FIG_RENDER_H

#include <stddef.h>

#include "buf.h"
#include "error.h"

typedef struct {
    const char *app_name;   /* forms and app links must stay under /<app_name>/ */
    const char *csrf_token; /* put into POST forms as <input type="hidden" name="_csrf">; NULL = none */
} sanitize_opts_t;

/* Markdown (CommonMark + tables, strikethrough, task lists; raw HTML allowed since
 * the sanitizer runs after) -> unsanitized HTML. Caller frees. NULL only on md4c failure. */
char *render_markdown(const char *md, size_t len, size_t *out_len);

/* Allowlist sanitizer. Caller frees. Never fails on any input bytes (invalid UTF-8
 * is replaced). */
char *sanitize_html(const char *html, size_t len, const sanitize_opts_t *opts, size_t *out_len);

typedef struct {
    char *html;   /* sanitized body fragment */
    size_t html_len;
    char *title;  /* plain text of the first h1..h6, or NULL */
} render_page_t;

/* Markdown -> sanitized fragment plus title. */
int render_page(const char *md, size_t len, const sanitize_opts_t *opts, render_page_t *out, fig_err_t *err);
void render_page_free(render_page_t *p);
/* The title render_page() would give for sanitized HTML (the first h1..h6 with text,
 * whitespace collapsed, capped): for pages assembled from separately rendered blocks.
 * NULL when there is none; caller frees. */
char *render_title(const char *sanitized_html);

/* The layout around a page: doctype, head (title, /static/app.css), a header with
 * the app's title linking to /<app>/ and a link to the gallery, <main> with body_html
 * (already sanitized, inserted verbatim), footer. app_name/app_title may be NULL for
 * figment's own pages. Text arguments are HTML-escaped. */
typedef struct {
    const char *app_name;
    const char *app_title;
    const char *page_title; /* NULL -> app_title or "figment" */
} layout_opts_t;
void layout_page(fig_buf_t *out, const layout_opts_t *o, const char *body_html, size_t body_len);

/* An error page figment writes itself (never the model): heading, message, and an
 * optional "Try again" link to retry_url (must be a same-origin path). */
void layout_error_page(fig_buf_t *out, const layout_opts_t *o, int status, const char *heading, const char *message,
                       const char *retry_url);
/* The same error, as a fragment for a page that is already streaming. */
void layout_error_section(fig_buf_t *out, int status, const char *heading, const char *message, const char *retry_url);

/* A streamed page: the shell up to and including <main> plus a loading skeleton
 * (sent before the model's first token), then sanitized fragments, then the tail. */
void layout_stream_head(fig_buf_t *out, const layout_opts_t *o);
void layout_stream_tail(fig_buf_t *out);

/* Progressive rendering: the length of the longest prefix of md that ends at a block
 * boundary safe to render on its own (a blank line outside fenced code and outside
 * an open HTML block such as <form> or <table>), or 0. */
size_t render_block_cut(const char *md, size_t len);

#endif
