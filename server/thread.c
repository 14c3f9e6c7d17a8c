/*
 * thread.c — naming and prioritising figment's threads (see thread.h). Linux keeps a
 * nice value per thread, so setpriority() on the thread id affects only the caller.
 */
#include "thread.h"

#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

void fig_thread_setup(const char *name, int nice_increment)
{
    char shortname[16];
    strncpy(shortname, name, sizeof(shortname) - 1);
    shortname[sizeof(shortname) - 1] = '\0';
    pthread_setname_np(pthread_self(), shortname);
    if (nice_increment > 0) {
        int now = getpriority(PRIO_PROCESS, (id_t)gettid());
        setpriority(PRIO_PROCESS, (id_t)gettid(), now + nice_increment);
    }
}

void fig_cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

void fig_deadline_after_ms(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}
