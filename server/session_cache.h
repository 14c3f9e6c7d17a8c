/*
 * session_cache.h — recently used sessions kept in memory, so that an interaction does
 * not wait for a worker thread to read SQLite before it can ask the model.
 *
 * An entry is stored after a load from the store (session_cache_fill: only when there
 * is none, so a slow load never replaces newer state) or when an interaction's save is
 * handed to the session writer (session_cache_put_pinned). From then until the writer
 * has committed it, the entry is pinned: the cache, not SQLite, holds the newest state,
 * so a pinned entry is never evicted and loads find it here. Only figment writes
 * sessions, so an entry is never stale. Bounded: least recently used unpinned entries
 * are evicted (the next load reads SQLite). A restart starts with an empty cache (the
 * writer has replayed its journal into the store by then).
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
/* Stores a copy of s (its id, state, history, seq) for app, replacing any entry. */
void session_cache_put(session_cache_t *c, const char *app, const session_t *s);
/* Stores a copy of s only when there is no entry for it (a load from the store). */
void session_cache_fill(session_cache_t *c, const char *app, const session_t *s);
/* session_cache_put, and pins the entry until a matching session_cache_unpin: call it
 * before handing the save to the session writer, which unpins once it has committed. */
void session_cache_put_pinned(session_cache_t *c, const char *app, const session_t *s);
void session_cache_unpin(session_cache_t *c, const char *id, const char *app);
/* Undoes a session_cache_put_pinned whose save could not be handed over: forgets the
 * entry (the store is the truth), unless another save still pins it. */
void session_cache_drop(session_cache_t *c, const char *id, const char *app);

#endif
