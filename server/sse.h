/*
 * sse.h — an incremental Server-Sent Events parser (WHATWG EventSource rules).
 *
 * Feed it bytes as they arrive, split anywhere (even inside a CRLF pair or a UTF-8
 * sequence); it calls on_event once per dispatched event with the event type
 * ("message" when absent) and the data lines joined by '\n'. Comments (":..."),
 * "id" and "retry" fields are handled per spec; a leading BOM is skipped. The data
 * pointer is valid only during the callback, and is not NUL-terminated: it may point
 * into the bytes given to sse_feed.
 *
 * Bounds: an event larger than SSE_MAX_EVENT_BYTES is an error (sse_feed returns -1),
 * so a hostile upstream cannot grow memory without limit.
 */
#ifndef FIG_SSE_H
#define FIG_SSE_H

#include <stddef.h>

#include "buf.h"

#define SSE_MAX_EVENT_BYTES (4u << 20)

/* Return non-zero from the callback to stop parsing (sse_feed then returns that value). */
typedef int (*sse_event_cb)(void *ctx, const char *event, const char *data, size_t data_len);

typedef struct {
    sse_event_cb on_event;
    void *ctx;
    fig_buf_t line;  /* the current, incomplete line */
    fig_buf_t data;  /* data of the event being assembled */
    const char *pend; /* or: its only data line, still in the chunk being fed (not copied) */
    size_t pend_len;
    char event[64];  /* event type of the event being assembled */
    int has_data;
    int last_was_cr; /* the previous chunk ended in '\r' */
    int bom_checked;
} sse_parser_t;

void sse_init(sse_parser_t *p, sse_event_cb cb, void *ctx);
/* Returns 0, a callback's non-zero value, or -1 on an over-long event. */
int sse_feed(sse_parser_t *p, const char *data, size_t len);
/* Frees internal buffers. An incomplete trailing event is discarded (per spec). */
void sse_free(sse_parser_t *p);

#endif
