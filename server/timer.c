/*
 * timer.c — a min-heap of timers behind one h2o timeout entry (see timer.h).
 */
#include "timer.h"

#include <stdlib.h>

#include "buf.h"

struct timer_set {
    h2o_loop_t *loop;
    h2o_timeout_t queue;
    h2o_timeout_entry_t entry;
    fig_timer_t **heap;
    size_t n, cap;
};

static void heap_swap(timer_set_t *ts, size_t a, size_t b)
{
    fig_timer_t *t = ts->heap[a];
    ts->heap[a] = ts->heap[b];
    ts->heap[b] = t;
    ts->heap[a]->heap_index = a + 1;
    ts->heap[b]->heap_index = b + 1;
}

static void sift_up(timer_set_t *ts, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (ts->heap[parent]->due_ms <= ts->heap[i]->due_ms)
            break;
        heap_swap(ts, parent, i);
        i = parent;
    }
}

static void sift_down(timer_set_t *ts, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < ts->n && ts->heap[l]->due_ms < ts->heap[m]->due_ms)
            m = l;
        if (r < ts->n && ts->heap[r]->due_ms < ts->heap[m]->due_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(ts, i, m);
        i = m;
    }
}

static void rearm(timer_set_t *ts)
{
    if (h2o_timeout_is_linked(&ts->entry))
        h2o_timeout_unlink(&ts->entry);
    if (ts->n == 0)
        return;
    uint64_t now = h2o_now(ts->loop);
    uint64_t due = ts->heap[0]->due_ms;
    ts->queue.timeout = due > now ? due - now : 1;
    h2o_timeout_link(ts->loop, &ts->queue, &ts->entry);
}

static void heap_remove(timer_set_t *ts, fig_timer_t *t)
{
    size_t i = t->heap_index - 1;
    t->heap_index = 0;
    ts->n--;
    if (i == ts->n)
        return;
    ts->heap[i] = ts->heap[ts->n];
    ts->heap[i]->heap_index = i + 1;
    sift_up(ts, i);
    sift_down(ts, ts->heap[i]->heap_index - 1);
}

static void on_due(h2o_timeout_entry_t *entry)
{
    timer_set_t *ts = H2O_STRUCT_FROM_MEMBER(timer_set_t, entry, entry);
    uint64_t now = h2o_now(ts->loop);
    /* fire everything due; callbacks may change the heap */
    while (ts->n > 0 && ts->heap[0]->due_ms <= now) {
        fig_timer_t *t = ts->heap[0];
        heap_remove(ts, t);
        t->cb(t);
    }
    rearm(ts);
}

timer_set_t *timer_set_create(h2o_loop_t *loop)
{
    timer_set_t *ts = fig_calloc(1, sizeof(*ts));
    ts->loop = loop;
    h2o_timeout_init(loop, &ts->queue, 1);
    ts->entry.cb = on_due;
    return ts;
}

void timer_set_destroy(timer_set_t *ts)
{
    if (ts == NULL)
        return;
    for (size_t i = 0; i < ts->n; i++)
        ts->heap[i]->heap_index = 0;
    if (h2o_timeout_is_linked(&ts->entry))
        h2o_timeout_unlink(&ts->entry);
    h2o_timeout_dispose(ts->loop, &ts->queue);
    free(ts->heap);
    free(ts);
}

void fig_timer_start(timer_set_t *ts, fig_timer_t *t, uint64_t delay_ms)
{
    if (t->heap_index != 0)
        heap_remove(ts, t);
    t->due_ms = h2o_now(ts->loop) + delay_ms;
    if (ts->n == ts->cap) {
        ts->cap = ts->cap ? ts->cap * 2 : 64;
        ts->heap = fig_realloc(ts->heap, ts->cap * sizeof(*ts->heap));
    }
    ts->heap[ts->n] = t;
    t->heap_index = ++ts->n;
    sift_up(ts, ts->n - 1);
    rearm(ts);
}

void fig_timer_stop(timer_set_t *ts, fig_timer_t *t)
{
    if (t->heap_index == 0)
        return;
    heap_remove(ts, t);
    rearm(ts);
}
