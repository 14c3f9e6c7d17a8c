/*
 * thread.h — what every figment thread says about itself: a name (top -H, perf, gdb)
 * and, for threads whose work nobody waits for, a lower CPU priority; and the deadlines
 * their condition-variable waits use.
 *
 * Why the priority: the session writer and the trace writer commit batches of a few ms
 * of CPU. On a machine with as many busy threads as cores, a loop thread that wakes
 * with a model's answer would otherwise wait behind such a batch; niced, they yield to
 * it at once and still progress (nice is a weight, not starvation).
 */
#ifndef FIG_THREAD_H
#define FIG_THREAD_H

#define FIG_NICE_FOREGROUND 0  /* loops, workers: someone is waiting */
#define FIG_NICE_WRITER 5      /* the session writer: must keep up, nobody waits */
#define FIG_NICE_BACKGROUND 19 /* traces, OTLP export */

/* Names the calling thread (at most 15 characters are kept) and adds nice_increment to
 * its nice value. Failures are ignored: both are hints. */
void fig_thread_setup(const char *name, int nice_increment);

#include <pthread.h>

struct timespec;
/* A condition variable whose timed waits measure CLOCK_MONOTONIC (a change of the wall
 * clock does not cut or stretch them). */
void fig_cond_init_monotonic(pthread_cond_t *c);
/* *ts = now + ms on CLOCK_MONOTONIC: the deadline for a pthread_cond_timedwait() on a
 * condition variable from fig_cond_init_monotonic(). */
void fig_deadline_after_ms(struct timespec *ts, long ms);

#endif
