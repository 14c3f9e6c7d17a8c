/*
 * timer.h — one-shot timers of any duration on an event loop.
 *
 * h2o 2.2.5 only has timeout queues of one fixed duration each; retries with jittered
 * backoff, first-token and idle timeouts and hedging need arbitrary delays. A
 * timer_set_t keeps its timers in a binary min-heap and arms a single h2o timeout
 * entry (a one-entry queue whose duration is rewritten, clamped to >= 1 ms) for the
 * earliest one. One timer_set_t per loop thread; not thread-safe.
 *
 * Ownership: the caller owns each fig_timer_t (usually embedded in a larger struct)
 * and must stop it before freeing it. Callbacks may start or stop any timer.
 */
#ifndef FIG_TIMER_H
#define FIG_TIMER_H

#include <h2o.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fig_timer fig_timer_t;
struct fig_timer {
    uint64_t due_ms;
    size_t heap_index; /* 0 = not scheduled; else index + 1 */
    void (*cb)(fig_timer_t *t);
};

typedef struct timer_set timer_set_t;

timer_set_t *timer_set_create(h2o_loop_t *loop);
/* Active timers are dropped without their callbacks running. */
void timer_set_destroy(timer_set_t *ts);

/* (Re)schedules t to fire delay_ms from now. */
void fig_timer_start(timer_set_t *ts, fig_timer_t *t, uint64_t delay_ms);
void fig_timer_stop(timer_set_t *ts, fig_timer_t *t);
static inline int fig_timer_is_active(const fig_timer_t *t)
{
    return t->heap_index != 0;
}

#endif
