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
 * Design: the chunk is scanned for line ends and the pieces between them are copied
 * into `line`; complete lines are interpreted at once. A CR sets last_was_cr so that
 * an LF right after it, in this chunk or the next one, is skipped: CRLF split
 * across two reads is one line end, not two. The BOM check runs on the first three
 * bytes only and tolerates the BOM being split too.
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
    p->has_data = 0;
    p->event[0] = '\0';
}

static int sse_dispatch(sse_parser_t *p)
{
    int rc = 0;
    if (p->has_data)
        rc = p->on_event(p->ctx, p->event[0] ? p->event : "message", p->data.data ? p->data.data : "", p->data.len);
    fig_buf_reset(&p->data);
    p->has_data = 0;
    p->event[0] = '\0';
    return rc;
}

/* Interprets the complete line in p->line (without its line end). */
static int sse_line(sse_parser_t *p)
{
    const char *s = p->line.data ? p->line.data : "";
    size_t n = p->line.len;
    int rc = 0;

    if (n == 0)
        return sse_dispatch(p);
    if (s[0] == ':')
        goto done; /* comment */

    const char *colon = memchr(s, ':', n);
    size_t flen = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen > 0 && v[0] == ' ')
        v++, vlen--;

    if (flen == 4 && memcmp(s, "data", 4) == 0) {
        if (p->has_data)
            fig_buf_append(&p->data, "\n", 1);
        fig_buf_append(&p->data, v, vlen);
        p->has_data = 1;
    } else if (flen == 5 && memcmp(s, "event", 5) == 0) {
        if (vlen >= sizeof(p->event)) {
            rc = -1;
            goto done;
        }
        memcpy(p->event, v, vlen);
        p->event[vlen] = '\0';
    }
    /* "id", "retry" and unknown fields: ignored. */
done:
    fig_buf_reset(&p->line);
    return rc;
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

    while (i < len) {
        if (p->last_was_cr) {
            p->last_was_cr = 0;
            if (data[i] == '\n') {
                i++;
                continue;
            }
        }
        size_t j = i;
        while (j < len && data[j] != '\n' && data[j] != '\r')
            j++;
        /* +1: the '\n' a data line adds when it joins the event. */
        if (p->line.len + (j - i) + p->data.len + 1 > SSE_MAX_EVENT_BYTES)
            return -1;
        fig_buf_append(&p->line, data + i, j - i);
        if (j == len)
            break;
        p->last_was_cr = data[j] == '\r';
        i = j + 1;
        int rc = sse_line(p);
        if (rc != 0)
            return rc;
    }
    return 0;
}
