/*
 * render_fast.h — internal: the render pipeline's fast path (render_fast.c) and the
 * pieces of the sanitizer (sanitize.c) it shares, so that both write exactly the
 * same bytes. Not a public contract: only render.c, sanitize.c, render_fast.c and
 * their tests include it.
 */
#ifndef FIG_RENDER_FAST_H
#define FIG_RENDER_FAST_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "render.h"

#define SANITIZE_MAX_INPUT (1u << 20) /* bytes sanitize_html() parses; a longer input is cut */

/*
 * Appends to out exactly what sanitize_html(render_markdown(md, len)) returns and
 * returns 0, or returns 1 with out's content unchanged (its capacity may have
 * grown: the caller still frees it) when the page holds anything the fast
 * path does not reproduce exactly (the caller then takes the slow path). Raw HTML
 * is only taken as top-level blocks that parse on their own ("islands", see
 * sanitize_island()).
 */
int render_fast(const char *md, size_t len, const sanitize_opts_t *opts, fig_buf_t *out);

/* sanitize.c: text or an attribute value, escaped as the sanitizer writes it. */
void sanitize_text(fig_buf_t *out, const char *s, size_t n);
/* sanitize.c: ` href="..."` (img: ` src="..."`) as the sanitizer writes that attribute
 * with the (decoded, NUL-terminated) value url, or nothing when it refuses the URL.
 * True for an absolute link (an <a> then gets rel=...). scratch: caller's buffer. */
bool sanitize_url_attr(fig_buf_t *out, bool img, const char *url, fig_buf_t *scratch);
/* sanitize.c: when html, parsed in <body> at the top level, is self-contained (every
 * element opened and closed by its own tags, nothing implied, moved or reopened, the
 * tokenizer back in its data state at the end), appends its sanitized form (what
 * sanitize_html() writes for these nodes inside any page) and returns 0; else 1. */
int sanitize_island(const char *html, size_t len, const sanitize_opts_t *opts, fig_buf_t *out);

#endif
