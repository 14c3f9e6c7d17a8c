/*
 * sse.c — incremental Server-Sent Events parser (see sse.h).
 *
 * Follows the WHATWG "event stream interpretation" rules: a line ends in CRLF, LF or
 * a lone CR; "field: value" loses one space after the colon; a line without a colon
 * is a field with an empty value; ":" lines are comments; "data" lines are joined
 * with '\n'; a blank line dispatches the event, but only if a data line was seen
 * (an event with an empty data buffer is dropped, so "event: x\n\n" emits nothing,
 * while "data:\n\n" emits an event with empty data); "id", "retry" and unknown
 * fields are ignored (figment never reconnects).
 *
 * Design: complete lines are interpreted where they lie, in the chunk being fed;
 * only a line that a chunk boundary cuts is copied into `line` until its end comes.
 * Likewise an event's data: its first data line is kept as a pointer into the
 * chunk (pend) and handed to the callback from there when the blank line follows in
 * the same chunk, which is the common case (one event per TCP segment or several);
 * it is copied into `data` only when a second data line comes or the chunk ends
 * first. Line ends are found with memchr (the '\n' position is remembered across
 * lines, so a run of lone-CR lines stays linear). A CR sets last_was_cr so that an
 * LF right after it, in this chunk or the next one, is skipped: CRLF split across
 * two reads is one line end, not two. The BOM check runs on the first three bytes
 * only and tolerates the BOM being split too.
 *
 * Choices: data + the current line are capped at SSE_MAX_EVENT_BYTES (-1 beyond);
 * an event type longer than fits in p->event (63 bytes) is rejected with -1 rather
 * than truncated, so it can never be mistaken for a shorter, known type. After a
 * non-zero return the parser must not be fed again.
 */
#include "sse.h"

#include <string.h>

static const unsigned char sse_bom[3] = {0xEF, 0xBB, 0xBF};

void sse_init(sse_parser_t *p, sse_event_cb cb, void *ctx)
{
    memset(p, 0, sizeof(*p));
    p->on_event = cb;
    p->ctx = ctx;
}

void sse_free(sse_parser_t *p)
{
    fig_buf_free(&p->line);
    fig_buf_free(&p->data);
    p->pend = NULL;
    p->pend_len = 0;
    p->has_data = 0;
    p->event[0] = '\0';
}

/* Moves a pending (uncopied) data line into p->data: the chunk it lies in is about
 * to go away, or another data line joins it. */
static void sse_settle(sse_parser_t *p)
{
    if (p->pend != NULL) {
        fig_buf_append(&p->data, p->pend, p->pend_len);
        p->pend = NULL;
        p->pend_len = 0;
    }
}

static size_t sse_data_len(const sse_parser_t *p)
{
    return p->pend != NULL ? p->pend_len : p->data.len;
}

static int sse_dispatch(sse_parser_t *p)
{
    int rc = 0;
    if (p->has_data) {
        const char *event = p->event[0] ? p->event : "message";
        if (p->pend != NULL)
            rc = p->on_event(p->ctx, event, p->pend, p->pend_len);
        else
            rc = p->on_event(p->ctx, event, p->data.data ? p->data.data : "", p->data.len);
    }
    p->pend = NULL;
    p->pend_len = 0;
    fig_buf_reset(&p->data);
    p->has_data = 0;
    p->event[0] = '\0';
    return rc;
}

/* Interprets one complete line s[0..n) (without its line end). in_chunk: s lies in
 * the caller's chunk, so a data value may be kept by pointer until the chunk ends. */
static int sse_line(sse_parser_t *p, const char *s, size_t n, int in_chunk)
{
    if (n == 0)
        return sse_dispatch(p);
    if (s[0] == ':')
        return 0; /* comment */

    const char *colon = memchr(s, ':', n);
    size_t flen = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen > 0 && v[0] == ' ')
        v++, vlen--;

    if (flen == 4 && memcmp(s, "data", 4) == 0) {
        if (!p->has_data && in_chunk) {
            p->pend = v;
            p->pend_len = vlen;
        } else {
            sse_settle(p);
            if (p->has_data)
                fig_buf_append(&p->data, "\n", 1);
            fig_buf_append(&p->data, v, vlen);
        }
        p->has_data = 1;
    } else if (flen == 5 && memcmp(s, "event", 5) == 0) {
        if (vlen >= sizeof(p->event))
            return -1;
        memcpy(p->event, v, vlen);
        p->event[vlen] = '\0';
    }
    /* "id", "retry" and unknown fields: ignored. */
    return 0;
}

int sse_feed(sse_parser_t *p, const char *data, size_t len)
{
    size_t i = 0;

    /* Skip a UTF-8 BOM at the very start, even if it arrives a byte at a time: bytes
     * matching the BOM so far wait in `line`; a mismatch releases them as content. */
    while (!p->bom_checked && i < len) {
        if (p->line.len < 3 && (unsigned char)data[i] == sse_bom[p->line.len]) {
            fig_buf_append(&p->line, data + i, 1);
            i++;
            if (p->line.len == 3) {
                fig_buf_reset(&p->line);
                p->bom_checked = 1;
            }
        } else {
            p->bom_checked = 1;
        }
    }

    size_t nl = 0; /* position of the next '\n' at or after i (len: none), once searched */
    int nl_known = 0;
    while (i < len) {
        if (p->last_was_cr) {
            p->last_was_cr = 0;
            if (data[i] == '\n') {
                i++;
                continue;
            }
        }
        if (!nl_known || nl < i) {
            const char *q = memchr(data + i, '\n', len - i);
            nl = q ? (size_t)(q - data) : len;
            nl_known = 1;
        }
        const char *cr = memchr(data + i, '\r', nl - i);
        size_t j = cr ? (size_t)(cr - data) : nl;
        /* +1: the '\n' a data line adds when it joins the event. */
        if (p->line.len + (j - i) + sse_data_len(p) + 1 > SSE_MAX_EVENT_BYTES)
            return -1;
        int rc;
        if (j == len) {
            fig_buf_append(&p->line, data + i, j - i);
            break;
        }
        p->last_was_cr = data[j] == '\r';
        if (p->line.len == 0) {
            rc = sse_line(p, data + i, j - i, 1);
        } else {
            fig_buf_append(&p->line, data + i, j - i);
            rc = sse_line(p, p->line.data, p->line.len, 0);
            fig_buf_reset(&p->line);
        }
        i = j + 1;
        if (rc != 0)
            return rc;
    }
    sse_settle(p); /* the chunk is the caller's: keep nothing that points into it */
    return 0;
}
