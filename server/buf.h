/*
 * buf.h — a growable byte buffer, the one string builder used across figment.
 *
 * Ownership: a fig_buf_t owns `data`; fig_buf_free() releases it, fig_buf_steal()
 * hands it to the caller (free() it). `data` is always NUL-terminated when len > 0
 * or after any append, so it can be used as a C string. Allocation failure aborts
 * the process (figment treats OOM as fatal, like h2o).
 */
#ifndef FIG_BUF_H
#define FIG_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} fig_buf_t;

#define FIG_BUF_INIT {NULL, 0, 0}

void fig_buf_reserve(fig_buf_t *b, size_t extra);
void fig_buf_append(fig_buf_t *b, const char *s, size_t n);
void fig_buf_append_str(fig_buf_t *b, const char *s);
void fig_buf_appendf(fig_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fig_buf_vappendf(fig_buf_t *b, const char *fmt, va_list ap);
/* Appends s with & < > " ' escaped for HTML text and attribute values. */
void fig_buf_append_html(fig_buf_t *b, const char *s, size_t n);
void fig_buf_reset(fig_buf_t *b);

/* UTF-8 as RFC 3629 has it (no overlongs, surrogates or values above U+10FFFF): the
 * length (1..4) of the sequence at s[0..len), 0 when it is invalid, -1 when s[0..len)
 * is the valid start of a sequence that the end of the buffer cut short. */
int fig_utf8_seq(const void *s, size_t len);
/* 1 when s[0..len) is UTF-8 text without NUL bytes; `cut` says the data goes on past
 * len, so a character cut at the end is not held against it. */
int fig_utf8_is_text(const void *s, size_t len, int cut);
/* Appends s[0..len) with every NUL byte and every byte that does not start a valid
 * (complete) sequence replaced by U+FFFD. */
void fig_buf_append_utf8_clean(fig_buf_t *b, const char *s, size_t len);
/* Appends s[0..len) as a quoted JSON string: '"', '\\' and control characters escaped,
 * bytes that are not UTF-8 (and NUL) as U+FFFD. Much cheaper than building a jansson
 * value to dump it (runs of plain text are copied whole). */
void fig_buf_append_json_string(fig_buf_t *b, const char *s, size_t len);
/* Returns the NUL-terminated data (never NULL; "" for an empty buffer) and empties b. */
char *fig_buf_steal(fig_buf_t *b);
void fig_buf_free(fig_buf_t *b);

/* Checked allocation helpers: abort on failure. */
void *fig_malloc(size_t n);
void *fig_calloc(size_t n, size_t sz);
void *fig_realloc(void *p, size_t n);
char *fig_strdup(const char *s);
char *fig_strndup(const char *s, size_t n);

#endif
