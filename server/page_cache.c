/*
 * page_cache.c — the page cache (see page_cache.h).
 *
 * Memory: one mutex guards a chained hash table (keys are SHA-256 hex, so the first
 * 16 hex digits are already a good hash), an LRU list and the flight table. One mutex
 * rather than shards because a hit holds it for a lookup and a relink only (~100 ns):
 * 20,000 hits/s keep it busy 0.2% of the time, and a single list gives an exact LRU by
 * bytes. Entries carry their own links (no node allocation per put) and an atomic
 * reference count: the cache holds one reference per stored entry; a reader's
 * reference keeps an evicted entry alive.
 *
 * Single flight, and how its races are resolved. Each waiting caller gets a wake
 * record that THIS module allocates (not the caller), because the record must outlive
 * the caller's request: once a wake-up message is handed to h2o's queue it cannot be
 * taken back, and the caller's memory may be gone by the time it arrives.
 *
 *  - begin (thread W, the waiter's loop) and end (thread L, any) serialize on the
 *    mutex: begin either finds the flight and links its wake record into it, or finds
 *    none and leads. end first puts the entry into memory, then unlinks the flight and
 *    detaches every wake record (wake->flight = NULL, wake->entry = a new reference),
 *    all in one critical section; begin checks memory before the flight table, so a
 *    caller that arrives after end() hits, and one that arrives before joins.
 *  - After the mutex, end sends each record to its receiver. It reads wake->next
 *    before the send: once sent, W may run the callback and free the record at once.
 *  - leave (thread W) takes the mutex. A record still in a flight (wake->flight set)
 *    is unlinked and freed: end will never see it. A detached one is on its way (or
 *    about to be sent by L): leave clears wake->waiter and returns; the delivery, which
 *    runs on W after leave because both run on W, then frees it and drops the entry
 *    reference without calling back. L touches only receiver, msg and next of a
 *    detached record, never waiter, so the two threads write disjoint fields.
 *  - waiter->_wake is read and written only on W (begin, leave, delivery), so leave
 *    after the callback, or by a leader, sees NULL and does nothing.
 *
 * SQLite: a plain table keyed by the cache key, html as a BLOB, an index on expiry for
 * the sweeper. Statements are prepared per call: this path runs on a miss only, beside
 * an LLM call or a disk read, where a few microseconds do not show.
 */
#include "page_cache.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "crypto.h"

#define FLIGHT_BUCKETS 64
#define MIN_BUCKETS 256
#define DB_SCHEMA_VERSION 1
#define DB_BUSY_TIMEOUT_MS 5000

typedef struct flight flight_t;

typedef struct page_cache_wake {
    h2o_multithread_message_t msg;        /* how the record travels to the waiter's loop */
    h2o_multithread_receiver_t *receiver; /* copied from the waiter at begin */
    page_cache_waiter_t *waiter;          /* NULL once the waiter left (only W writes it) */
    page_cache_entry_t *entry;            /* the reference the callback receives */
    flight_t *flight;                     /* set while linked in a flight (under mu) */
    struct page_cache_wake *prev, *next;  /* the flight's list (under mu) */
} wake_t;

struct flight {
    char key[65];
    wake_t *waiters;
    flight_t *next;
};

struct page_cache {
    pthread_mutex_t mu;
    page_cache_entry_t **buckets;
    size_t n_buckets; /* power of two */
    page_cache_entry_t *lru_head, *lru_tail; /* most recent at head */
    size_t entries, bytes, max_bytes;
    flight_t *flights[FLIGHT_BUCKETS];
    page_cache_stats_t st;
};

int64_t page_cache_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- keys ------------------------------------------------------------------------ */


/* The placeholder in use: PAGE_CACHE_CSRF_PLACEHOLDER until the server sets a secret
 * one at start (page_cache_set_placeholder), before any entry exists. */
static char page_cache_placeholder_buf[PAGE_CACHE_PLACEHOLDER_MAX + 1] = PAGE_CACHE_CSRF_PLACEHOLDER;
const char *page_cache_placeholder = page_cache_placeholder_buf;

int page_cache_set_placeholder(const char *ph)
{
    size_t n = strlen(ph);
    if (n < 16 || n > PAGE_CACHE_PLACEHOLDER_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!((ph[i] >= 'a' && ph[i] <= 'z') || (ph[i] >= 'A' && ph[i] <= 'Z') || (ph[i] >= '0' && ph[i] <= '9') ||
              ph[i] == '-'))
            return -1;
    memcpy(page_cache_placeholder_buf, ph, n + 1);
    return 0;
}

static void put_field(fig_buf_t *b, const char *s, size_t n)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    fig_buf_append(b, (const char *)len, sizeof(len));
    fig_buf_append(b, s, n);
}

static void hex_sha256(char out[65], const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    uint8_t h[32];
    crypto_sha256(data, len, h);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[h[i] >> 4];
        out[2 * i + 1] = digits[h[i] & 15];
    }
    out[64] = '\0';
}

static int is_hex64(const char *s)
{
    if (s == NULL)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[64] == '\0';
}

void page_cache_state_hash(char out[65], const json_t *state)
{
    char *dump = state != NULL ? json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    if (dump == NULL) /* NULL state, or jansson out of memory (which figment treats as fatal elsewhere) */
        hex_sha256(out, "null", 4);
    else
        hex_sha256(out, dump, strlen(dump));
    free(dump);
}

void page_cache_prompt_version(char out[65], const char *system_contract, const char *app_prompt,
                               const char *tool_schemas)
{
    const char *parts[] = {"figment/prompt-version/v1", system_contract, app_prompt, tool_schemas};
    fig_buf_t b = FIG_BUF_INIT;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        put_field(&b, parts[i] ? parts[i] : "", parts[i] ? strlen(parts[i]) : 0);
    hex_sha256(out, b.data, b.len);
    fig_buf_free(&b);
}

int page_cache_key(char out[65], const page_cache_key_parts_t *p, fig_err_t *err)
{
    out[0] = '\0';
    if (p->app == NULL || p->app[0] == '\0' || p->prompt_version == NULL || p->model == NULL || p->method == NULL ||
        p->path == NULL) {
        fig_err_set(err, FIG_E_INVALID, "page cache key: app, prompt_version, model, method and path are required");
        return -1;
    }
    if (strcmp(p->method, "GET") != 0) {
        fig_err_set(err, FIG_E_INVALID, "page cache key: only GET is cacheable, not %.16s", p->method);
        return -1;
    }
    if (p->path[0] != '/') {
        fig_err_set(err, FIG_E_INVALID, "page cache key: path must start with '/'");
        return -1;
    }
    if ((p->state_hash == NULL) == (p->state == NULL)) {
        fig_err_set(err, FIG_E_INVALID, "page cache key: give exactly one of state_hash and state");
        return -1;
    }
    char state_hash[65];
    if (p->state_hash != NULL) {
        if (!is_hex64(p->state_hash)) {
            fig_err_set(err, FIG_E_INVALID, "page cache key: state_hash is not 64 lower-case hex digits");
            return -1;
        }
        memcpy(state_hash, p->state_hash, sizeof(state_hash));
    } else {
        page_cache_state_hash(state_hash, p->state);
    }
    char version[24];
    snprintf(version, sizeof(version), "%llu", p->data_version);
    const char *query = p->query != NULL ? p->query : "";
    const char *fields[] = {"figment/page-cache/v1", p->app, p->prompt_version, p->model, p->method,
                            p->path, query, state_hash, version};
    fig_buf_t b = FIG_BUF_INIT;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        size_t n = strlen(fields[i]);
        if (n > PAGE_CACHE_MAX_KEY_FIELD) {
            fig_buf_free(&b);
            fig_err_set(err, FIG_E_TOO_LARGE, "page cache key: a field is longer than %zu bytes",
                        (size_t)PAGE_CACHE_MAX_KEY_FIELD);
            return -1;
        }
        put_field(&b, fields[i], n);
    }
    hex_sha256(out, b.data, b.len);
    fig_buf_free(&b);
    return 0;
}

/* --- entries --------------------------------------------------------------------- */

page_cache_entry_t *page_cache_entry_new(const char *key, const char *app, const char *title, const char *html,
                                         size_t html_len, unsigned long long data_version, int64_t created_ms,
                                         int64_t expires_ms, fig_err_t *err)
{
    if (!is_hex64(key)) {
        fig_err_set(err, FIG_E_INVALID, "page cache entry: key is not 64 lower-case hex digits");
        return NULL;
    }
    if (app == NULL || app[0] == '\0' || (html == NULL && html_len != 0)) {
        fig_err_set(err, FIG_E_INVALID, "page cache entry: app and html are required");
        return NULL;
    }
    if (html_len > PAGE_CACHE_MAX_HTML) {
        fig_err_set(err, FIG_E_TOO_LARGE, "page cache entry: %zu bytes of HTML, at most %zu are cached", html_len,
                    (size_t)PAGE_CACHE_MAX_HTML);
        return NULL;
    }
    if (expires_ms <= created_ms) {
        fig_err_set(err, FIG_E_INVALID, "page cache entry: expires before it is created");
        return NULL;
    }

    page_cache_entry_t *e = fig_calloc(1, sizeof(*e));
    memcpy(e->key, key, 65);
    e->app = fig_strdup(app);
    e->title = title != NULL ? fig_strdup(title) : NULL;
    e->html = fig_malloc(html_len + 1);
    if (html_len)
        memcpy(e->html, html, html_len);
    e->html[html_len] = '\0';
    e->html_len = html_len;
    e->data_version = data_version;
    e->created_ms = created_ms;
    e->expires_ms = expires_ms;

    /* Split around every placeholder once, so a hit only fills an iovec array. */
    const char *ph = page_cache_placeholder;
    const size_t ph_len = strlen(ph);
    size_t n = 0;
    for (const char *p = e->html, *end = e->html + html_len; (p = memmem(p, (size_t)(end - p), ph, ph_len)) != NULL;
         p += ph_len)
        n++;
    e->n_placeholders = n;
    e->segments = fig_malloc((n + 1) * sizeof(*e->segments));
    const char *p = e->html, *end = e->html + html_len;
    for (size_t i = 0; i < n; i++) {
        const char *hit = memmem(p, (size_t)(end - p), ph, ph_len);
        e->segments[i] = h2o_iovec_init(p, (size_t)(hit - p));
        p = hit + ph_len;
    }
    e->segments[n] = h2o_iovec_init(p, (size_t)(end - p));

    e->bytes = sizeof(*e) + html_len + 1 + strlen(e->app) + 1 + (e->title ? strlen(e->title) + 1 : 0) +
               (n + 1) * sizeof(*e->segments);
    atomic_init(&e->_refs, 1);
    return e;
}

void page_cache_entry_ref(page_cache_entry_t *e)
{
    atomic_fetch_add_explicit(&e->_refs, 1, memory_order_relaxed);
}

void page_cache_entry_unref(page_cache_entry_t *e)
{
    if (e == NULL)
        return;
    /* acq_rel: every holder's reads happen before the free */
    if (atomic_fetch_sub_explicit(&e->_refs, 1, memory_order_acq_rel) != 1)
        return;
    free(e->app);
    free(e->title);
    free(e->html);
    free(e->segments);
    free(e);
}

size_t page_cache_entry_body_len(const page_cache_entry_t *e, size_t token_len)
{
    return e->html_len - e->n_placeholders * strlen(page_cache_placeholder) + e->n_placeholders * token_len;
}

size_t page_cache_entry_iov_max(const page_cache_entry_t *e)
{
    return 2 * e->n_placeholders + 1;
}

size_t page_cache_entry_iov(const page_cache_entry_t *e, const char *token, size_t token_len, h2o_iovec_t *out,
                            size_t cap)
{
    if (cap < page_cache_entry_iov_max(e))
        return 0;
    size_t n = 0;
    for (size_t i = 0; i <= e->n_placeholders; i++) {
        if (i > 0 && token_len > 0)
            out[n++] = h2o_iovec_init(token, token_len);
        if (e->segments[i].len > 0)
            out[n++] = e->segments[i];
    }
    return n;
}

static void dispose_pool_ref(void *p)
{
    page_cache_entry_unref(*(page_cache_entry_t **)p);
}

h2o_iovec_t *page_cache_entry_iov_pool(page_cache_entry_t *e, const char *token, size_t token_len,
                                       h2o_mem_pool_t *pool, size_t *n)
{
    page_cache_entry_t **slot = h2o_mem_alloc_shared(pool, sizeof(*slot), dispose_pool_ref);
    page_cache_entry_ref(e);
    *slot = e;
    char *tok = NULL;
    if (token_len > 0) {
        tok = h2o_mem_alloc_pool(pool, token_len);
        memcpy(tok, token, token_len);
    }
    size_t cap = page_cache_entry_iov_max(e);
    h2o_iovec_t *iov = h2o_mem_alloc_pool(pool, cap * sizeof(*iov));
    *n = page_cache_entry_iov(e, tok, token_len, iov, cap);
    return iov;
}

/* --- the memory cache ------------------------------------------------------------ */

static uint64_t key_hash(const char *key)
{
    /* keys are SHA-256 hex: the first 16 digits are uniformly distributed */
    uint64_t h = 0;
    for (int i = 0; i < 16; i++) {
        char ch = key[i];
        h = (h << 4) | (uint64_t)(ch <= '9' ? ch - '0' : ch - 'a' + 10);
    }
    return h;
}

page_cache_t *page_cache_create(size_t max_bytes)
{
    page_cache_t *c = fig_calloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    c->n_buckets = MIN_BUCKETS;
    c->buckets = fig_calloc(c->n_buckets, sizeof(*c->buckets));
    c->max_bytes = max_bytes ? max_bytes : PAGE_CACHE_DEFAULT_MAX_BYTES;
    return c;
}

void page_cache_free(page_cache_t *c)
{
    if (c == NULL)
        return;
    for (page_cache_entry_t *e = c->lru_head, *next; e != NULL; e = next) {
        next = e->_lnext;
        e->_cached = 0;
        page_cache_entry_unref(e);
    }
    for (size_t i = 0; i < FLIGHT_BUCKETS; i++) {
        for (flight_t *f = c->flights[i], *fn; f != NULL; f = fn) {
            fn = f->next;
            for (wake_t *w = f->waiters, *wn; w != NULL; w = wn) {
                wn = w->next;
                if (w->waiter != NULL)
                    w->waiter->_wake = NULL;
                free(w);
            }
            free(f);
        }
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static page_cache_entry_t **find_slot(page_cache_t *c, const char *key)
{
    page_cache_entry_t **slot = &c->buckets[key_hash(key) & (c->n_buckets - 1)];
    while (*slot != NULL && memcmp((*slot)->key, key, 64) != 0)
        slot = &(*slot)->_hnext;
    return slot;
}

static void lru_unlink(page_cache_t *c, page_cache_entry_t *e)
{
    if (e->_lprev)
        e->_lprev->_lnext = e->_lnext;
    else
        c->lru_head = e->_lnext;
    if (e->_lnext)
        e->_lnext->_lprev = e->_lprev;
    else
        c->lru_tail = e->_lprev;
    e->_lprev = e->_lnext = NULL;
}

static void lru_push_front(page_cache_t *c, page_cache_entry_t *e)
{
    e->_lprev = NULL;
    e->_lnext = c->lru_head;
    if (c->lru_head)
        c->lru_head->_lprev = e;
    c->lru_head = e;
    if (c->lru_tail == NULL)
        c->lru_tail = e;
}

/* Removes e from the table and the list and drops the cache's reference. Under mu.
 * The free (when this was the last reference) happens under the lock too: it is a
 * handful of free() calls, cheaper than the bookkeeping to defer it. */
static void remove_locked(page_cache_t *c, page_cache_entry_t *e)
{
    page_cache_entry_t **slot = find_slot(c, e->key);
    assert(*slot == e);
    *slot = e->_hnext;
    e->_hnext = NULL;
    lru_unlink(c, e);
    e->_cached = 0;
    c->entries--;
    c->bytes -= e->bytes;
    page_cache_entry_unref(e);
}

static void grow_locked(page_cache_t *c)
{
    size_t n = c->n_buckets * 2;
    page_cache_entry_t **b = fig_calloc(n, sizeof(*b));
    for (size_t i = 0; i < c->n_buckets; i++) {
        for (page_cache_entry_t *e = c->buckets[i], *next; e != NULL; e = next) {
            next = e->_hnext;
            size_t j = key_hash(e->key) & (n - 1);
            e->_hnext = b[j];
            b[j] = e;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = n;
}

static page_cache_entry_t *get_locked(page_cache_t *c, const char *key, int64_t now_ms)
{
    page_cache_entry_t *e = *find_slot(c, key);
    if (e != NULL && e->expires_ms <= now_ms) {
        remove_locked(c, e);
        c->st.expired++;
        e = NULL;
    }
    if (e == NULL) {
        c->st.misses++;
        return NULL;
    }
    if (c->lru_head != e) {
        lru_unlink(c, e);
        lru_push_front(c, e);
    }
    page_cache_entry_ref(e);
    c->st.hits++;
    return e;
}

static int put_locked(page_cache_t *c, page_cache_entry_t *e, int64_t now_ms)
{
    if (e->_cached) /* already stored (by this cache: an entry belongs to one) */
        return 1;
    if (e->expires_ms <= now_ms || e->bytes > c->max_bytes)
        return 0;
    page_cache_entry_t *old = *find_slot(c, e->key);
    if (old != NULL)
        remove_locked(c, old);
    page_cache_entry_ref(e);
    page_cache_entry_t **slot = &c->buckets[key_hash(e->key) & (c->n_buckets - 1)];
    e->_hnext = *slot;
    *slot = e;
    lru_push_front(c, e);
    e->_cached = 1;
    c->entries++;
    c->bytes += e->bytes;
    c->st.inserts++;
    while (c->bytes > c->max_bytes) {
        assert(c->lru_tail != e); /* e alone fits */
        remove_locked(c, c->lru_tail);
        c->st.evictions++;
    }
    if (c->entries > c->n_buckets)
        grow_locked(c);
    return 1;
}

page_cache_entry_t *page_cache_get(page_cache_t *c, const char *key, int64_t now_ms)
{
    if (!is_hex64(key))
        return NULL;
    pthread_mutex_lock(&c->mu);
    page_cache_entry_t *e = get_locked(c, key, now_ms);
    pthread_mutex_unlock(&c->mu);
    return e;
}

int page_cache_put(page_cache_t *c, page_cache_entry_t *e, int64_t now_ms)
{
    pthread_mutex_lock(&c->mu);
    int r = put_locked(c, e, now_ms);
    pthread_mutex_unlock(&c->mu);
    return r;
}

size_t page_cache_drop_app(page_cache_t *c, const char *app)
{
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    for (page_cache_entry_t *e = c->lru_head, *next; e != NULL; e = next) {
        next = e->_lnext;
        if (strcmp(e->app, app) == 0) {
            remove_locked(c, e);
            n++;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

void page_cache_stats(page_cache_t *c, page_cache_stats_t *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    out->entries = c->entries;
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
    pthread_mutex_unlock(&c->mu);
}

/* --- single flight ----------------------------------------------------------------- */

static flight_t **flight_slot(page_cache_t *c, const char *key)
{
    flight_t **slot = &c->flights[key_hash(key) & (FLIGHT_BUCKETS - 1)];
    while (*slot != NULL && memcmp((*slot)->key, key, 64) != 0)
        slot = &(*slot)->next;
    return slot;
}

int page_cache_flight_begin(page_cache_t *c, const char *key, int64_t now_ms, page_cache_waiter_t *w,
                            page_cache_entry_t **hit)
{
    assert(is_hex64(key));
    assert(w->_wake == NULL && w->receiver != NULL && w->cb != NULL);
    *hit = NULL;
    int r;
    pthread_mutex_lock(&c->mu);
    page_cache_entry_t *e = get_locked(c, key, now_ms);
    flight_t **slot;
    if (e != NULL) {
        *hit = e;
        r = PAGE_CACHE_HIT;
    } else if (*(slot = flight_slot(c, key)) == NULL) {
        flight_t *f = fig_calloc(1, sizeof(*f));
        memcpy(f->key, key, 65);
        *slot = f;
        c->st.flights_led++;
        r = PAGE_CACHE_LEAD;
    } else {
        /* the one allocation under the lock, on the rare path of a concurrent miss */
        flight_t *f = *slot;
        wake_t *wake = fig_calloc(1, sizeof(*wake));
        wake->receiver = w->receiver;
        wake->waiter = w;
        wake->flight = f;
        wake->next = f->waiters;
        if (f->waiters)
            f->waiters->prev = wake;
        f->waiters = wake;
        w->_wake = wake;
        c->st.flights_joined++;
        r = PAGE_CACHE_WAIT;
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

void page_cache_flight_end(page_cache_t *c, const char *key, page_cache_entry_t *entry, int64_t now_ms)
{
    assert(entry == NULL || memcmp(entry->key, key, 65) == 0);
    wake_t *list = NULL;
    flight_t *f = NULL;
    pthread_mutex_lock(&c->mu);
    /* put first, in the same critical section as the flight's removal: no caller can
     * find neither the flight nor the entry */
    if (entry != NULL)
        put_locked(c, entry, now_ms);
    flight_t **slot = flight_slot(c, key);
    if (*slot != NULL) {
        f = *slot;
        *slot = f->next;
        list = f->waiters;
        for (wake_t *w = list; w != NULL; w = w->next) {
            w->flight = NULL;
            if (entry != NULL)
                page_cache_entry_ref(entry);
            w->entry = entry;
        }
    }
    pthread_mutex_unlock(&c->mu);
    free(f);
    /* Outside the lock: sending takes the receiver queue's mutex and writes to its
     * wake-up fd. Read next first: a sent record may be delivered and freed at once. */
    for (wake_t *w = list, *next; w != NULL; w = next) {
        next = w->next;
        h2o_multithread_send_message(w->receiver, &w->msg);
    }
}

void page_cache_flight_leave(page_cache_t *c, page_cache_waiter_t *w)
{
    wake_t *wake = w->_wake;
    if (wake == NULL)
        return;
    w->_wake = NULL;
    pthread_mutex_lock(&c->mu);
    flight_t *f = wake->flight;
    if (f != NULL) {
        if (wake->prev)
            wake->prev->next = wake->next;
        else
            f->waiters = wake->next;
        if (wake->next)
            wake->next->prev = wake->prev;
    } else {
        wake->waiter = NULL; /* detached by end(): the delivery frees it without calling back */
    }
    pthread_mutex_unlock(&c->mu);
    if (f != NULL)
        free(wake);
}

static void on_wake_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        wake_t *wake = H2O_STRUCT_FROM_MEMBER(wake_t, msg.link, messages->next);
        h2o_linklist_unlink(&wake->msg.link);
        page_cache_waiter_t *w = wake->waiter;
        page_cache_entry_t *entry = wake->entry;
        free(wake);
        if (w == NULL) { /* the waiter left after end() had detached it */
            page_cache_entry_unref(entry);
            continue;
        }
        w->_wake = NULL;
        w->cb(w, entry);
    }
}

void page_cache_receiver_init(h2o_multithread_queue_t *queue, h2o_multithread_receiver_t *receiver)
{
    h2o_multithread_register_receiver(queue, receiver, on_wake_messages);
}

void page_cache_receiver_dispose(h2o_multithread_queue_t *queue, h2o_multithread_receiver_t *receiver)
{
    h2o_multithread_unregister_receiver(queue, receiver);
}

/* --- SQLite ------------------------------------------------------------------------ */

static int db_fail(sqlite3 *db, fig_err_t *err, const char *what)
{
    fig_err_set(err, FIG_E_DB, "page cache db: %s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
    return -1;
}

static int db_exec(sqlite3 *db, const char *sql, fig_err_t *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "page cache db: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

sqlite3 *page_cache_db_open(const char *path, fig_err_t *err)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "page cache db: open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close_v2(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS); /* several workers share the file */
    if (db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", err) != 0)
        goto fail;
    if (db_exec(db, "BEGIN IMMEDIATE", err) != 0)
        goto fail;
    sqlite3_stmt *st = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0 || version > DB_SCHEMA_VERSION) {
        if (version < 0)
            db_fail(db, err, "reading user_version");
        else
            fig_err_set(err, FIG_E_DB, "page cache db: %s has schema version %d, this figment knows %d", path,
                        version, DB_SCHEMA_VERSION);
        db_exec(db, "ROLLBACK", NULL);
        goto fail;
    }
    if (db_exec(db,
                "CREATE TABLE IF NOT EXISTS page_cache ("
                " key TEXT PRIMARY KEY NOT NULL,"
                " app TEXT NOT NULL,"
                " data_version INTEGER NOT NULL,"
                " created_ms INTEGER NOT NULL,"
                " expires_ms INTEGER NOT NULL,"
                " title TEXT,"
                " html BLOB NOT NULL);"
                "CREATE INDEX IF NOT EXISTS page_cache_expires ON page_cache(expires_ms);"
                "CREATE INDEX IF NOT EXISTS page_cache_app ON page_cache(app);"
                "PRAGMA user_version = 1;",
                err) != 0 ||
        db_exec(db, "COMMIT", err) != 0) {
        db_exec(db, "ROLLBACK", NULL);
        goto fail;
    }
    return db;
fail:
    sqlite3_close_v2(db);
    return NULL;
}

int page_cache_db_put(sqlite3 *db, const page_cache_entry_t *e, fig_err_t *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO page_cache (key, app, data_version, created_ms, expires_ms, title, "
                           "html) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "prepare put");
    sqlite3_bind_text(st, 1, e->key, 64, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->app, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)e->data_version);
    sqlite3_bind_int64(st, 4, e->created_ms);
    sqlite3_bind_int64(st, 5, e->expires_ms);
    if (e->title != NULL)
        sqlite3_bind_text(st, 6, e->title, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_blob64(st, 7, e->html, e->html_len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(db, err, "put");
    return 0;
}

int page_cache_db_get(sqlite3 *db, const char *key, int64_t now_ms, page_cache_entry_t **out, fig_err_t *err)
{
    *out = NULL;
    if (!is_hex64(key)) {
        fig_err_set(err, FIG_E_INVALID, "page cache db: key is not 64 lower-case hex digits");
        return -1;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT app, data_version, created_ms, expires_ms, title, html FROM page_cache "
                           "WHERE key = ? AND expires_ms > ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "prepare get");
    sqlite3_bind_text(st, 1, key, 64, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        return 0;
    }
    if (rc != SQLITE_ROW) {
        db_fail(db, err, "get");
        sqlite3_finalize(st);
        return -1;
    }
    int r = -1;
    if (sqlite3_column_type(st, 0) != SQLITE_TEXT || sqlite3_column_type(st, 5) == SQLITE_NULL ||
        (sqlite3_column_type(st, 4) != SQLITE_NULL && sqlite3_column_type(st, 4) != SQLITE_TEXT)) {
        fig_err_set(err, FIG_E_DB, "page cache db: row %.16s... has wrong column types", key);
    } else {
        const char *app = (const char *)sqlite3_column_text(st, 0);
        const char *title = (const char *)sqlite3_column_text(st, 4);
        const void *html = sqlite3_column_blob(st, 5);
        size_t html_len = (size_t)sqlite3_column_bytes(st, 5);
        *out = page_cache_entry_new(key, app, title, html_len ? html : "", html_len,
                                    (unsigned long long)sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                                    sqlite3_column_int64(st, 3), err);
        r = *out != NULL ? 1 : -1;
    }
    sqlite3_finalize(st);
    return r;
}

int page_cache_db_delete_expired(sqlite3 *db, int64_t now_ms, int *deleted, fig_err_t *err)
{
    if (deleted)
        *deleted = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "DELETE FROM page_cache WHERE expires_ms <= ?", -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "prepare delete");
    sqlite3_bind_int64(st, 1, now_ms);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(db, err, "delete expired");
    if (deleted)
        *deleted = sqlite3_changes(db);
    return 0;
}

int page_cache_db_drop_app(sqlite3 *db, const char *app, fig_err_t *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "DELETE FROM page_cache WHERE app = ?", -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "prepare drop");
    sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(db, err, "drop app");
    return 0;
}
