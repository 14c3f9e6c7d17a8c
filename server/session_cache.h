/*
 * session_cache.h — recently used sessions kept in memory, so that an interaction does
 * not wait for a worker thread to read SQLite before it can ask the model.
 *
 * Write-through: an entry is stored after a load from the store or after the store has
 * committed a save, never before; the store (var/figment.db) stays the truth, and a
 * restart starts with an empty cache. Only figment writes sessions, so an entry is never
 * stale. Bounded: least recently used entries are evicted (the next load reads SQLite).
 *
 * Thread-safe: sharded, a mutex per shard. Entries hold their own deep copies of the
 * JSON; get() hands the caller fresh deep copies (the caller owns and clears them).
 */
#ifndef FIG_SESSION_CACHE_H
#define FIG_SESSION_CACHE_H

#include <stddef.h>

#include "session.h"

typedef struct session_cache session_cache_t;

session_cache_t *session_cache_create(size_t max_entries);
void session_cache_free(session_cache_t *c);

/* 1 and fills out (id, state, history, seq, exists) on a hit; 0 on a miss. */
int session_cache_get(session_cache_t *c, const char *id, const char *app, session_t *out);
/* Stores a copy of s (its id, state, history, seq) for app. */
void session_cache_put(session_cache_t *c, const char *app, const session_t *s);

#endif
