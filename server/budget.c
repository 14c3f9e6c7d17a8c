/*
 * budget.c — spending limits in USD per session (all time), per app per UTC day and
 * globally per UTC day (see budget.h).
 *
 * Design:
 * - One mutex around everything: budget checks happen once per interaction, far
 *   from the hot path, so simplicity beats finer locking.
 * - A UTC day is floor(now / 86400) (Unix time has no leap seconds). A total rolls
 *   to 0 when a later day is seen; a clock stepping back across midnight does not
 *   roll anything (we never forget money already spent).
 * - Apps are few and fixed at start: a small array searched linearly. Sessions are
 *   many: a chained hash table (FNV-1a) with an LRU list, bounded by max_sessions.
 * - budget_add() on a session the table does not know is ignored for that session:
 *   the caller re-seeds unknown sessions from the store, which by then includes the
 *   interaction being added; counting it here as well would count it twice.
 * - When several budgets are spent the widest is reported: global, app, session.
 */
#include "budget.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

typedef struct {
    char *name;
    int64_t day;
    double usd;
} budget_app_t;

typedef struct budget_session {
    struct budget_session *hnext;
    struct budget_session *lru_prev, *lru_next;
    uint32_t hash;
    double usd;
    char id[];
} budget_session_t;

struct budget {
    pthread_mutex_t mu;
    budgets_t limits;
    int64_t global_day;
    double global_usd;
    budget_app_t *apps;
    size_t n_apps;
    size_t max_sessions, n_sessions, mask;
    budget_session_t **buckets;
    budget_session_t lru; /* sentinel: lru_next most recent, lru_prev least */
};

static int64_t budget_day(time_t now)
{
    int64_t t = (int64_t)now;
    return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

/* Moves a daily total to today when a later day has begun. */
static void budget_roll(int64_t *day, double *usd, int64_t today)
{
    if (today > *day) {
        *day = today;
        *usd = 0;
    }
}

static double budget_today(int64_t day, double usd, int64_t today)
{
    return today > day ? 0 : usd;
}

static uint32_t budget_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static budget_app_t *budget_app(budget_t *b, const char *app, int create)
{
    for (size_t i = 0; i < b->n_apps; i++)
        if (strcmp(b->apps[i].name, app) == 0)
            return &b->apps[i];
    if (!create)
        return NULL;
    b->apps = fig_realloc(b->apps, (b->n_apps + 1) * sizeof(*b->apps));
    budget_app_t *a = &b->apps[b->n_apps++];
    a->name = fig_strdup(app);
    a->day = INT64_MIN;
    a->usd = 0;
    return a;
}

static void budget_lru_unlink(budget_session_t *s)
{
    s->lru_prev->lru_next = s->lru_next;
    s->lru_next->lru_prev = s->lru_prev;
}

static void budget_lru_front(budget_t *b, budget_session_t *s)
{
    s->lru_prev = &b->lru;
    s->lru_next = b->lru.lru_next;
    b->lru.lru_next->lru_prev = s;
    b->lru.lru_next = s;
}

/* Finds a session and marks it recently used; creates it (evicting the least
 * recently used when full) when create is set. */
static budget_session_t *budget_session(budget_t *b, const char *id, int create)
{
    uint32_t h = budget_hash(id);
    budget_session_t *s = b->buckets[h & b->mask];
    while (s != NULL && !(s->hash == h && strcmp(s->id, id) == 0))
        s = s->hnext;
    if (s != NULL) {
        budget_lru_unlink(s);
        budget_lru_front(b, s);
        return s;
    }
    if (!create)
        return NULL;
    if (b->n_sessions >= b->max_sessions) {
        budget_session_t *victim = b->lru.lru_prev;
        budget_lru_unlink(victim);
        budget_session_t **pp = &b->buckets[victim->hash & b->mask];
        while (*pp != victim)
            pp = &(*pp)->hnext;
        *pp = victim->hnext;
        free(victim);
        b->n_sessions--;
    }
    size_t len = strlen(id);
    s = fig_malloc(sizeof(*s) + len + 1);
    memcpy(s->id, id, len + 1);
    s->hash = h;
    s->usd = 0;
    s->hnext = b->buckets[h & b->mask];
    b->buckets[h & b->mask] = s;
    budget_lru_front(b, s);
    b->n_sessions++;
    return s;
}

static double budget_clean_amount(double usd)
{
    return isfinite(usd) && usd > 0 ? usd : 0;
}

budget_t *budget_create(const budgets_t *limits, size_t max_sessions)
{
    budget_t *b = fig_calloc(1, sizeof(*b));
    pthread_mutex_init(&b->mu, NULL);
    if (limits != NULL)
        b->limits = *limits;
    b->global_day = INT64_MIN;
    b->max_sessions = max_sessions ? max_sessions : 1;
    size_t n = 16;
    while (n < b->max_sessions && n < (1u << 22))
        n <<= 1;
    b->mask = n - 1;
    b->buckets = fig_calloc(n, sizeof(*b->buckets));
    b->lru.lru_next = b->lru.lru_prev = &b->lru;
    return b;
}

void budget_free(budget_t *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n_apps; i++)
        free(b->apps[i].name);
    free(b->apps);
    budget_session_t *s = b->lru.lru_next;
    while (s != &b->lru) {
        budget_session_t *next = s->lru_next;
        free(s);
        s = next;
    }
    free(b->buckets);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

void budget_seed_app(budget_t *b, const char *app, double usd_today, time_t now)
{
    pthread_mutex_lock(&b->mu);
    budget_app_t *a = budget_app(b, app, 1);
    a->day = budget_day(now);
    a->usd = budget_clean_amount(usd_today);
    pthread_mutex_unlock(&b->mu);
}

void budget_seed_global(budget_t *b, double usd_today, time_t now)
{
    pthread_mutex_lock(&b->mu);
    b->global_day = budget_day(now);
    b->global_usd = budget_clean_amount(usd_today);
    pthread_mutex_unlock(&b->mu);
}

void budget_seed_session(budget_t *b, const char *session_id, double usd_total)
{
    pthread_mutex_lock(&b->mu);
    budget_session(b, session_id, 1)->usd = budget_clean_amount(usd_total);
    pthread_mutex_unlock(&b->mu);
}

int budget_knows_session(budget_t *b, const char *session_id)
{
    pthread_mutex_lock(&b->mu);
    int known = budget_session(b, session_id, 0) != NULL;
    pthread_mutex_unlock(&b->mu);
    return known;
}

int budget_check(budget_t *b, const char *session_id, const char *app, time_t now, fig_err_t *err)
{
    int64_t today = budget_day(now);
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    if (b->limits.global_daily_usd > 0 &&
        budget_today(b->global_day, b->global_usd, today) >= b->limits.global_daily_usd) {
        fig_err_set(err, FIG_E_DENIED, "the global daily budget of $%.2f is spent", b->limits.global_daily_usd);
        rc = -1;
    }
    if (rc == 0 && app != NULL && b->limits.per_app_daily_usd > 0) {
        budget_app_t *a = budget_app(b, app, 0);
        if (a != NULL && budget_today(a->day, a->usd, today) >= b->limits.per_app_daily_usd) {
            fig_err_set(err, FIG_E_DENIED, "this app's daily budget of $%.2f is spent", b->limits.per_app_daily_usd);
            rc = -1;
        }
    }
    if (rc == 0 && session_id != NULL && b->limits.per_session_usd > 0) {
        budget_session_t *s = budget_session(b, session_id, 0);
        if (s != NULL && s->usd >= b->limits.per_session_usd) {
            fig_err_set(err, FIG_E_DENIED, "this session's budget of $%.2f is spent", b->limits.per_session_usd);
            rc = -1;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void budget_add(budget_t *b, const char *session_id, const char *app, double usd, time_t now)
{
    usd = budget_clean_amount(usd);
    int64_t today = budget_day(now);
    pthread_mutex_lock(&b->mu);
    budget_roll(&b->global_day, &b->global_usd, today);
    b->global_usd += usd;
    if (app != NULL) {
        budget_app_t *a = budget_app(b, app, 1);
        budget_roll(&a->day, &a->usd, today);
        a->usd += usd;
    }
    if (session_id != NULL) {
        budget_session_t *s = budget_session(b, session_id, 0);
        if (s != NULL)
            s->usd += usd;
    }
    pthread_mutex_unlock(&b->mu);
}

double budget_spent_session(budget_t *b, const char *session_id)
{
    pthread_mutex_lock(&b->mu);
    budget_session_t *s = budget_session(b, session_id, 0);
    double usd = s ? s->usd : 0;
    pthread_mutex_unlock(&b->mu);
    return usd;
}

double budget_spent_app_today(budget_t *b, const char *app, time_t now)
{
    pthread_mutex_lock(&b->mu);
    budget_app_t *a = budget_app(b, app, 0);
    double usd = a ? budget_today(a->day, a->usd, budget_day(now)) : 0;
    pthread_mutex_unlock(&b->mu);
    return usd;
}

double budget_spent_global_today(budget_t *b, time_t now)
{
    pthread_mutex_lock(&b->mu);
    double usd = budget_today(b->global_day, b->global_usd, budget_day(now));
    pthread_mutex_unlock(&b->mu);
    return usd;
}
