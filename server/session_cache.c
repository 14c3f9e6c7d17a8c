/*
 * session_cache.c — the in-memory session cache (see session_cache.h).
 *
 * 16 shards, each a small open hash table (chained) plus an LRU list; the key is
 * "<id>/<app>". Capacity is split evenly between shards.
 */
#include "session_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define SHARDS 16
#define BUCKETS 1024 /* per shard */

typedef struct entry {
    char *key;
    json_t *state;
    json_t *history;
    int64_t seq;
    int pins; /* saves handed to the writer and not yet committed: never evicted */
    struct entry *next_in_bucket;
    struct entry *lru_prev, *lru_next; /* most recent at head */
} entry_t;

typedef struct {
    pthread_mutex_t mu;
    entry_t *buckets[BUCKETS];
    entry_t *lru_head, *lru_tail;
    size_t count, max;
} shard_t;

struct session_cache {
    shard_t shards[SHARDS];
};

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static char *make_key(const char *id, const char *app)
{
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b, "%s/%s", id, app);
    return fig_buf_steal(&b);
}

static void lru_unlink(shard_t *s, entry_t *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        s->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        s->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(shard_t *s, entry_t *e)
{
    e->lru_prev = NULL;
    e->lru_next = s->lru_head;
    if (s->lru_head)
        s->lru_head->lru_prev = e;
    s->lru_head = e;
    if (s->lru_tail == NULL)
        s->lru_tail = e;
}

static entry_t **find_slot(shard_t *s, const char *key, uint64_t h)
{
    entry_t **pp = &s->buckets[(h >> 4) % BUCKETS];
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->next_in_bucket;
    return pp;
}

static void entry_free(entry_t *e)
{
    free(e->key);
    json_decref(e->state);
    json_decref(e->history);
    free(e);
}

session_cache_t *session_cache_create(size_t max_entries)
{
    session_cache_t *c = fig_calloc(1, sizeof(*c));
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&c->shards[i].mu, NULL);
        c->shards[i].max = max_entries / SHARDS ? max_entries / SHARDS : 1;
    }
    return c;
}

void session_cache_free(session_cache_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < SHARDS; i++) {
        entry_t *e = c->shards[i].lru_head;
        while (e) {
            entry_t *n = e->lru_next;
            entry_free(e);
            e = n;
        }
        pthread_mutex_destroy(&c->shards[i].mu);
    }
    free(c);
}

int session_cache_get(session_cache_t *c, const char *id, const char *app, session_t *out)
{
    char *key = make_key(id, app);
    uint64_t h = hash_key(key);
    shard_t *s = &c->shards[h % SHARDS];
    int hit = 0;
    pthread_mutex_lock(&s->mu);
    entry_t *e = *find_slot(s, key, h);
    if (e != NULL) {
        lru_unlink(s, e);
        lru_push_front(s, e);
        memset(out, 0, sizeof(*out));
        snprintf(out->id, sizeof(out->id), "%s", id);
        out->state = json_deep_copy(e->state);
        out->history = json_deep_copy(e->history);
        out->seq = e->seq;
        out->exists = e->seq > 0;
        hit = out->state != NULL && out->history != NULL;
        if (!hit)
            session_clear(out);
    }
    pthread_mutex_unlock(&s->mu);
    free(key);
    return hit;
}

typedef enum { PUT_REPLACE, PUT_IF_ABSENT, PUT_PINNED } put_mode_t;

static void cache_store(session_cache_t *c, const char *app, const session_t *src, put_mode_t mode)
{
    json_t *state = src->state ? json_deep_copy(src->state) : json_object();
    json_t *history = src->history ? json_deep_copy(src->history) : json_array();
    if (state == NULL || history == NULL) {
        json_decref(state);
        json_decref(history);
        return;
    }
    char *key = make_key(src->id, app);
    uint64_t h = hash_key(key);
    shard_t *s = &c->shards[h % SHARDS];
    pthread_mutex_lock(&s->mu);
    entry_t **slot = find_slot(s, key, h);
    entry_t *e = *slot;
    if (e != NULL && mode == PUT_IF_ABSENT) {
        pthread_mutex_unlock(&s->mu);
        json_decref(state);
        json_decref(history);
        free(key);
        return;
    }
    if (e != NULL) {
        json_decref(e->state);
        json_decref(e->history);
        free(key);
        lru_unlink(s, e);
    } else {
        e = fig_calloc(1, sizeof(*e));
        e->key = key;
        *slot = e;
        s->count++;
    }
    e->state = state;
    e->history = history;
    e->seq = src->seq;
    if (mode == PUT_PINNED)
        e->pins++;
    lru_push_front(s, e);
    /* evict from the cold end, passing over pinned entries (their state is not in SQLite yet) */
    entry_t *victim = s->lru_tail;
    while (s->count > s->max && victim != NULL) {
        entry_t *prev = victim->lru_prev;
        if (victim != e && victim->pins == 0) {
            lru_unlink(s, victim);
            entry_t **vp = find_slot(s, victim->key, hash_key(victim->key));
            *vp = victim->next_in_bucket;
            entry_free(victim);
            s->count--;
        }
        victim = prev;
    }
    pthread_mutex_unlock(&s->mu);
}

void session_cache_put(session_cache_t *c, const char *app, const session_t *src)
{
    cache_store(c, app, src, PUT_REPLACE);
}

void session_cache_fill(session_cache_t *c, const char *app, const session_t *src)
{
    cache_store(c, app, src, PUT_IF_ABSENT);
}

void session_cache_put_pinned(session_cache_t *c, const char *app, const session_t *src)
{
    cache_store(c, app, src, PUT_PINNED);
}

/* Unpins (drop = 0) or removes (drop = 1) the entry of id/app, if there is one. */
static void cache_release(session_cache_t *c, const char *id, const char *app, int drop)
{
    char *key = make_key(id, app);
    uint64_t h = hash_key(key);
    shard_t *s = &c->shards[h % SHARDS];
    pthread_mutex_lock(&s->mu);
    entry_t **slot = find_slot(s, key, h);
    entry_t *e = *slot;
    if (e != NULL && (!drop || e->pins > 1)) {
        if (e->pins > 0) /* a drop keeps an entry another save still pins (its state is newer than SQLite's) */
            e->pins--;
    } else if (e != NULL) {
        *slot = e->next_in_bucket;
        lru_unlink(s, e);
        entry_free(e);
        s->count--;
    }
    pthread_mutex_unlock(&s->mu);
    free(key);
}

void session_cache_unpin(session_cache_t *c, const char *id, const char *app)
{
    cache_release(c, id, app, 0);
}

void session_cache_drop(session_cache_t *c, const char *id, const char *app)
{
    cache_release(c, id, app, 1);
}
