/*
 * html_text.h — reduces an untrusted HTML page to plain text for the model
 * (http_fetch): readable text with headings, paragraphs and lists kept as plain-text
 * structure, then a numbered list of the page's http(s) links made absolute.
 *
 * Ownership: results are appended to the caller's fig_buf_t.
 */
#ifndef FIG_HTML_TEXT_H
#define FIG_HTML_TEXT_H

#include <stddef.h>

#include "../server/buf.h"

/* Deepest element nesting handed to the HTML parser; deeper elements are flattened
 * into their parent (their text is kept). */
#define HTML_TEXT_MAX_DEPTH 128
/* Links listed at most; later links keep their text but get no number. */
#define HTML_TEXT_MAX_LINKS 500

/* Appends the text of `html` (any bytes: invalid UTF-8 is replaced) to out:
 *   Title: <title>            (when there is one)
 *   <blank line>
 *   # Heading / paragraphs / "- item" / "1. item" / "a | b" table rows, with a link's
 *   text followed by " [n]"
 *   Links:
 *   [1] https://absolute/url
 * Relative links are resolved against base_url (NULL: only absolute links count).
 * script, style, nav, template, svg, forms' controls and hidden elements (hidden,
 * aria-hidden="true", inline display:none / visibility:hidden) are dropped.
 * Linear in the input size: nesting deeper than HTML_TEXT_MAX_DEPTH is flattened. */
void html_text_reduce(const char *html, size_t len, const char *base_url, fig_buf_t *out);

#endif
