/*
 * page_cache.h — generated GET pages kept for reuse, in memory and in SQLite.
 *
 * What is cached: the full HTML document of a GET interaction, rendered with
 * PAGE_CACHE_CSRF_PLACEHOLDER where the session's CSRF token belongs, so that two
 * sessions with equal state share one entry; a hit is sent as an iovec list
 * (segment, token, segment, ...) without copying the page.
 *
 * The key (page_cache_key) is SHA-256 over a length-prefixed encoding of app,
 * prompt version, model chain, method, path, query, session state hash and the app's
 * data version. The data version is bumped by every committed write, so a write makes
 * every older entry of the app unreachable (they age out by LRU or TTL); nothing has
 * to be invalidated by hand. Only GET is accepted: a POST can never hit. A hit skips
 * the model entirely, so only store a generation that had no side effects (no write,
 * no session state change): the key holds the state before the request, and a hit
 * would silently skip whatever the generation changed.
 *
 * Three parts, with different threading rules:
 *
 *  1. Memory (page_cache_t): shared by all loop threads, one mutex held only for a
 *     hash lookup and an LRU relink (a hit takes well under a microsecond). Bounded by
 *     bytes; least recently used entries are evicted; an expired entry is dropped when
 *     it is looked up. Entries are immutable and reference-counted (atomically): get()
 *     hands out a reference, so an entry evicted while a response is still being
 *     written stays valid until that response unrefs it.
 *
 *  2. Single flight: concurrent identical misses share one generation. The first
 *     caller leads; the others wait and are called back on their own loop thread
 *     through h2o's multithread queue (see the flight section below for the rules).
 *
 *  3. SQLite (page_cache_db_*): blocking functions for a worker thread, on a
 *     connection that worker owns (its own file, e.g. var/cache.db, WAL), so pages
 *     survive a restart. Never call them on a loop thread. The intended miss path:
 *     memory miss -> flight_begin -> the leader asks a worker for page_cache_db_get
 *     -> found: flight_end(entry); not found: generate, then flight_end(entry) and
 *     page_cache_db_put on a worker.
 *
 * Ownership: page_cache_entry_new() returns an entry holding one reference, owned by
 * the caller; every function that returns an entry returns a new reference the caller
 * must page_cache_entry_unref(). Functions that take an entry (put, flight_end, the
 * db put) never consume the caller's reference; they take their own if they keep it.
 */
#ifndef FIG_PAGE_CACHE_H
#define FIG_PAGE_CACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o/memory.h>
#include <h2o/multithread.h>
#include <jansson.h>
#include <sqlite3.h>

#include "error.h"

/* Rendered in place of the session's CSRF token (sanitize_opts_t.csrf_token) when a
 * page is generated for the cache. Letters, digits and '-' only, so the sanitizer
 * and fig_buf_append_html() emit it verbatim inside an attribute value. Every
 * occurrence in the document is replaced by the reader's own token; a page that
 * shows this string in text therefore shows that session's token to that session
 * only, which leaks nothing. */
#define PAGE_CACHE_CSRF_PLACEHOLDER "figment-csrf-placeholder-5f0c2a97d3e1"
#define PAGE_CACHE_PLACEHOLDER_MAX 64
/* The placeholder actually used. A constant one could be written by the model (or by
 * injected content) into a link to another site, which a hit would then fill with the
 * reader's token; so the server sets a secret one, derived from its session key (stable
 * across restarts, for var/cache.db), once at start before any entry exists:
 * [A-Za-z0-9-]{16,64}. Returns -1 on a bad value. Not thread-safe: call before threads. */
extern const char *page_cache_placeholder;
int page_cache_set_placeholder(const char *ph);
/* The response header the HTTP front sets on every cacheable GET: "hit" or "miss". */
#define PAGE_CACHE_HEADER "x-figment-cache"

#define PAGE_CACHE_DEFAULT_MAX_BYTES ((size_t)64 << 20)
/* Documents larger than this are never cached (also the bound on rows read back). */
#define PAGE_CACHE_MAX_HTML ((size_t)8 << 20)
/* Bound on each field of a key (path, query, ...); longer fields are rejected. */
#define PAGE_CACHE_MAX_KEY_FIELD ((size_t)64 << 10)

/* Unix time in milliseconds (CLOCK_REALTIME: entries persist across restarts). */
int64_t page_cache_now_ms(void);

/* --- keys ---------------------------------------------------------------------- */

typedef struct {
    const char *app;            /* required, non-empty */
    const char *prompt_version; /* required: page_cache_prompt_version() */
    const char *model;          /* required: the model chain as text, e.g. "openai:gpt-4o,anthropic:claude" */
    const char *method;         /* must be "GET" (callers map HEAD to GET) */
    const char *path;           /* required, starts with '/' */
    const char *query;          /* NULL or "" = none */
    /* Exactly one of the two: a state hash the caller computed with
     * page_cache_state_hash(), or the state itself, hashed here. */
    const char *state_hash;
    const json_t *state;
    unsigned long long data_version; /* app_t.data_version, read once by the caller */
} page_cache_key_parts_t;

/* Writes 64 lower-case hex chars and a NUL. 0, or -1 (err) when a part is missing or
 * too long, the method is not GET, or both/neither state forms are given. */
int page_cache_key(char out[65], const page_cache_key_parts_t *p, fig_err_t *err);
/* SHA-256 hex of the state's compact, sorted-keys JSON (NULL state = JSON null). */
void page_cache_state_hash(char out[65], const json_t *state);
/* SHA-256 hex over the length-prefixed system contract, app prompt and tool schemas
 * (NULL = ""). Compute once per app at load; it changes when any of them changes. */
void page_cache_prompt_version(char out[65], const char *system_contract, const char *app_prompt,
                               const char *tool_schemas);

/* --- entries ------------------------------------------------------------------- */

typedef struct page_cache_entry page_cache_entry_t;
/* Every public field is immutable after page_cache_entry_new() and may be read from
 * any thread that holds a reference. */
struct page_cache_entry {
    char key[65];
    char *app;
    char *title;             /* NULL when the page has none */
    char *html;              /* the whole document with placeholders, NUL-terminated */
    size_t html_len;
    unsigned long long data_version;
    int64_t created_ms;      /* unix ms */
    int64_t expires_ms;      /* unix ms; the entry is dead from this instant */
    size_t n_placeholders;
    h2o_iovec_t *segments;   /* n_placeholders + 1 slices of html around the placeholders */
    size_t bytes;            /* what the entry counts against the memory bound */
    /* private: the reference count, and links guarded by the owning cache's mutex */
    _Atomic size_t _refs;
    page_cache_entry_t *_hnext, *_lprev, *_lnext;
    int _cached;
};

/* Copies everything. NULL (err) when key is not 64 lower-case hex, app is empty,
 * html_len exceeds PAGE_CACHE_MAX_HTML or expires_ms <= created_ms. The one
 * reference returned is the caller's. */
page_cache_entry_t *page_cache_entry_new(const char *key, const char *app, const char *title, const char *html,
                                         size_t html_len, unsigned long long data_version, int64_t created_ms,
                                         int64_t expires_ms, fig_err_t *err);
void page_cache_entry_ref(page_cache_entry_t *e);
/* Frees the entry when the last reference goes. NULL is a no-op. */
void page_cache_entry_unref(page_cache_entry_t *e);

/* Length of the body served with a token of token_len bytes (for content-length). */
size_t page_cache_entry_body_len(const page_cache_entry_t *e, size_t token_len);
/* Room page_cache_entry_iov() may need: 2 * n_placeholders + 1. */
size_t page_cache_entry_iov_max(const page_cache_entry_t *e);
/* Fills out[] with segment, token, segment, ... (empty pieces skipped) and returns
 * the count, or 0 when cap < page_cache_entry_iov_max(e). The iovecs point into the
 * entry and at token: both must outlive their use. */
size_t page_cache_entry_iov(const page_cache_entry_t *e, const char *token, size_t token_len, h2o_iovec_t *out,
                            size_t cap);
/* The same, allocated in pool, with a copy of token in pool and a reference on e that
 * the pool releases when it is cleared: hand the result straight to h2o_send(). */
h2o_iovec_t *page_cache_entry_iov_pool(page_cache_entry_t *e, const char *token, size_t token_len,
                                       h2o_mem_pool_t *pool, size_t *n);

/* --- the memory cache (thread-safe) ---------------------------------------------- */

typedef struct page_cache page_cache_t;

typedef struct {
    uint64_t hits, misses;
    uint64_t inserts;
    uint64_t evictions;      /* dropped to stay under max_bytes */
    uint64_t expired;        /* dropped because their TTL ran out */
    uint64_t flights_led, flights_joined;
    size_t entries, bytes, max_bytes;
} page_cache_stats_t;

/* max_bytes 0 = PAGE_CACHE_DEFAULT_MAX_BYTES. */
page_cache_t *page_cache_create(size_t max_bytes);
/* Call when no thread uses the cache any more. Waiters still queued in a flight are
 * freed without being called. */
void page_cache_free(page_cache_t *c);

/* A new reference, or NULL on a miss (an expired entry is dropped and misses). */
page_cache_entry_t *page_cache_get(page_cache_t *c, const char *key, int64_t now_ms);
/* Stores e under e->key (replacing an older entry) and evicts least recently used
 * entries down to the bound. 1 when stored, 0 when refused: expired, or larger than
 * the whole bound. An entry belongs to at most one cache. */
int page_cache_put(page_cache_t *c, page_cache_entry_t *e, int64_t now_ms);
/* Drops every entry of app (operators, tests). Returns how many. */
size_t page_cache_drop_app(page_cache_t *c, const char *app);
void page_cache_stats(page_cache_t *c, page_cache_stats_t *out);

/* --- single flight --------------------------------------------------------------
 *
 * The caller embeds a page_cache_waiter_t in its request state and fills receiver
 * and cb. Rules (each follows from how the races are resolved in page_cache.c):
 *
 *  - begin(), leave() and the callback all happen on the loop thread that owns
 *    waiter->receiver; the receiver was set up with page_cache_receiver_init() on
 *    that loop's queue (a receiver of its own: the worker pool's has another cb).
 *  - begin() == PAGE_CACHE_LEAD: the caller generates and MUST call flight_end()
 *    exactly once on every path (success, error, client gone, shutdown), with the
 *    entry or NULL; otherwise followers wait for ever. end() may be called on any
 *    thread. It puts the entry into memory first and then wakes the followers, so a
 *    caller arriving in between gets PAGE_CACHE_HIT, never a second generation.
 *  - begin() == PAGE_CACHE_WAIT: cb runs later, exactly once, on the waiter's loop,
 *    never inside begin/end/leave, with a new reference to the entry (the callback
 *    owns it) or NULL when the leader failed (the caller may then lead again by
 *    calling begin() or answer with an error).
 *  - leave() after WAIT (the client went away) guarantees cb is never called; the
 *    waiter's memory may be freed as soon as leave() returns. leave() on a waiter
 *    that is not waiting (it led, hit, or was already called back) is a no-op.
 *  - begin() == PAGE_CACHE_HIT: *hit is a new reference; nothing else to do.
 *
 * begin() looks in memory first (and counts the hit or miss), so the cacheable GET
 * path needs no page_cache_get() before it.
 */
typedef struct page_cache_waiter page_cache_waiter_t;
struct page_cache_waiter {
    h2o_multithread_receiver_t *receiver; /* set by the caller: its loop's page-cache receiver */
    void (*cb)(page_cache_waiter_t *w, page_cache_entry_t *entry_or_null); /* set by the caller */
    struct page_cache_wake *_wake;        /* private: the pending wake-up, NULL when not waiting */
};

enum { PAGE_CACHE_WAIT = 0, PAGE_CACHE_LEAD = 1, PAGE_CACHE_HIT = 2 };

int page_cache_flight_begin(page_cache_t *c, const char *key, int64_t now_ms, page_cache_waiter_t *w,
                            page_cache_entry_t **hit);
/* entry may be NULL (the generation failed); otherwise entry->key must equal key.
 * The caller keeps its own reference to entry. */
void page_cache_flight_end(page_cache_t *c, const char *key, page_cache_entry_t *entry, int64_t now_ms);
void page_cache_flight_leave(page_cache_t *c, page_cache_waiter_t *w);

/* Registers/unregisters a loop thread's page-cache receiver on its queue (ctx->queue).
 * Before dispose (a wake-up still queued for the receiver would never be delivered
 * and its record would leak): leave() every waiter of this loop still waiting, make
 * sure no leader can end() a flight one of them joined, and run the loop once so
 * wake-ups already sent are delivered (those of waiters that left free themselves). */
void page_cache_receiver_init(h2o_multithread_queue_t *queue, h2o_multithread_receiver_t *receiver);
void page_cache_receiver_dispose(h2o_multithread_queue_t *queue, h2o_multithread_receiver_t *receiver);

/* --- SQLite (blocking: worker threads only) --------------------------------------- */

/* Opens (creating) the cache file in WAL mode with its schema. One connection per
 * worker thread; close with sqlite3_close_v2(). NULL (err) on failure. */
sqlite3 *page_cache_db_open(const char *path, fig_err_t *err);
/* Inserts or replaces the row of e->key. */
int page_cache_db_put(sqlite3 *db, const page_cache_entry_t *e, fig_err_t *err);
/* 1 and *out (a new entry, the caller's reference) when a live row exists; 0 when
 * none or expired; -1 (err) on a database error or a row that fails validation. */
int page_cache_db_get(sqlite3 *db, const char *key, int64_t now_ms, page_cache_entry_t **out, fig_err_t *err);
/* Deletes rows expired at now_ms; *deleted (may be NULL) gets the count. */
int page_cache_db_delete_expired(sqlite3 *db, int64_t now_ms, int *deleted, fig_err_t *err);
/* Deletes every row of app. */
int page_cache_db_drop_app(sqlite3 *db, const char *app, fig_err_t *err);

#endif
