/*
 * metrics.c — process-wide metrics and their Prometheus text exposition (0.0.4),
 * see metrics.h.
 *
 * Design:
 * - A series is one label set of one family. Series live in a fixed table
 *   (pointers never move, nothing is freed before metrics_shutdown) found through
 *   an open-addressing hash under one mutex; values are C11 atomics updated
 *   outside the lock. Doubles are stored as the bit pattern in an atomic uint64
 *   and added with a compare-and-swap loop, since C11 has no atomic double add.
 * - metrics_interaction() finds all its series (up to eight) in one critical
 *   section, so a request takes the mutex once.
 * - Cardinality is bounded: METRICS_MAX_SERIES exact label sets, then new label
 *   sets fold, first into model="other" (keeping the app), then into
 *   app="other"/model="other"/provider="other", using a reserve of
 *   METRICS_FOLD_RESERVE slots (partly folded sets may take only half of it);
 *   past that, a per-family series with every label "other". Labels set by code
 *   (outcome, kind, result) never fold before that last step. Nothing recorded
 *   is ever lost, only merged.
 * - Label values are copied, capped at METRICS_LABEL_MAX bytes and forced to valid
 *   UTF-8 (bad bytes become U+FFFD), because the exposition must be UTF-8.
 * - Rendering holds the mutex while it walks the table (series may be added
 *   concurrently), writes families in a fixed order and series in creation order,
 *   and formats numbers under the "C" locale (uselocale), so a process locale with
 *   a decimal comma cannot corrupt the output. Doubles are printed in the shortest
 *   form that reads back exactly; NaN and infinities as NaN, +Inf, -Inf.
 * - Negative or NaN observations and counter increments are ignored: counters
 *   must never go down and a broken clock reading must not poison a histogram.
 */
#include "metrics.h"

#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_FOLD_RESERVE 128
#define METRICS_TABLE_CAP (METRICS_MAX_SERIES + METRICS_FOLD_RESERVE)
#define METRICS_HASH_SLOTS 2048 /* power of two, > 2 * METRICS_TABLE_CAP */
#define METRICS_MAX_LABELS 3
#define METRICS_LABEL_MAX 128
#define METRICS_MAX_BUCKETS 16

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } metrics_kind_t;

typedef enum {
    FAM_INTERACTIONS,
    FAM_DURATION,
    FAM_TTFT,
    FAM_OVERHEAD,
    FAM_TOKENS,
    FAM_COST,
    FAM_PAGE_CACHE,
    FAM_UPSTREAM_ERRORS,
    FAM_IN_FLIGHT,
    FAM_TRACES_DROPPED,
    FAM_OTLP_DROPPED,
    FAM_COUNT
} metrics_family_id_t;

/* How a label folds on overflow: never (bounded by code), at step 1, or at step 2. */
enum { FOLD_NEVER = 0, FOLD_STEP1 = 1, FOLD_STEP2 = 2 };

typedef struct {
    const char *name;
    const char *help;
    metrics_kind_t kind;
    int integer; /* counter of whole numbers (uint64), else double */
    int nlabels;
    const char *labels[METRICS_MAX_LABELS];
    int fold[METRICS_MAX_LABELS];
    const double *bounds; /* histograms */
    const char *const *bound_text;
    int nbounds;
} metrics_family_t;

static const double metrics_latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                1,     2.5,  5,     10,   30,  60,   120};
static const char *const metrics_latency_text[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                                                   "1",     "2.5",  "5",     "10",   "30",  "60",   "120"};
static const double metrics_overhead_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                                 0.0025,  0.005,  0.01,    0.05};
static const char *const metrics_overhead_text[] = {"0.00005", "0.0001", "0.00025", "0.0005", "0.001",
                                                    "0.0025",  "0.005",  "0.01",    "0.05"};
#define NB(a) ((int)(sizeof(a) / sizeof(a[0])))

static const metrics_family_t metrics_families[FAM_COUNT] = {
    [FAM_INTERACTIONS] = {"figment_interactions_total", "Interactions served, by app, model and outcome.",
                          KIND_COUNTER, 1, 3, {"app", "model", "outcome"}, {FOLD_STEP2, FOLD_STEP1, FOLD_NEVER}},
    [FAM_DURATION] = {"figment_interaction_duration_seconds", "Total latency of an interaction.", KIND_HISTOGRAM, 0, 1,
                      {"app"}, {FOLD_STEP2}, metrics_latency_bounds, metrics_latency_text,
                      NB(metrics_latency_bounds)},
    [FAM_TTFT] = {"figment_time_to_first_token_seconds", "Time to the first byte of the first model answer.",
                  KIND_HISTOGRAM, 0, 2, {"app", "model"}, {FOLD_STEP2, FOLD_STEP1}, metrics_latency_bounds,
                  metrics_latency_text, NB(metrics_latency_bounds)},
    [FAM_OVERHEAD] = {"figment_overhead_seconds", "Time figment itself spent on an interaction (total - model - tools).",
                      KIND_HISTOGRAM, 0, 0, {0}, {0}, metrics_overhead_bounds, metrics_overhead_text,
                      NB(metrics_overhead_bounds)},
    [FAM_TOKENS] = {"figment_tokens_total", "Model tokens, by app, model and kind.", KIND_COUNTER, 1, 3,
                    {"app", "model", "kind"}, {FOLD_STEP2, FOLD_STEP1, FOLD_NEVER}},
    [FAM_COST] = {"figment_cost_usd_total", "Model cost in US dollars.", KIND_COUNTER, 0, 2, {"app", "model"},
                  {FOLD_STEP2, FOLD_STEP1}},
    [FAM_PAGE_CACHE] = {"figment_page_cache_total", "Page cache lookups, by result.", KIND_COUNTER, 1, 1,
                        {"result"}, {FOLD_NEVER}},
    [FAM_UPSTREAM_ERRORS] = {"figment_upstream_errors_total", "Failed model calls, by provider and kind.",
                             KIND_COUNTER, 1, 2, {"provider", "kind"}, {FOLD_STEP1, FOLD_NEVER}},
    [FAM_IN_FLIGHT] = {"figment_interactions_in_flight", "Interactions being served now.", KIND_GAUGE, 1, 0},
    [FAM_TRACES_DROPPED] = {"figment_traces_dropped_total", "Traces dropped (queue full or write errors).",
                            KIND_COUNTER, 1, 0},
    [FAM_OTLP_DROPPED] = {"figment_otlp_spans_dropped_total", "OTLP spans dropped (queue full or export errors).",
                          KIND_COUNTER, 1, 0},
};

static const char *const metrics_token_kinds[4] = {"prompt", "cached", "cache_write", "completion"};

typedef struct {
    int family;
    uint32_t hash;
    char *labels[METRICS_MAX_LABELS];
    _Atomic uint64_t value;                       /* counter/gauge: integer or double bits */
    _Atomic uint64_t buckets[METRICS_MAX_BUCKETS]; /* histogram: per bucket (not cumulative) */
    _Atomic uint64_t count;
    _Atomic uint64_t sum;                         /* double bits */
} metrics_series_t;

static struct {
    pthread_mutex_t lock;
    metrics_series_t *series[METRICS_TABLE_CAP];
    size_t nseries;
    int16_t slots[METRICS_HASH_SLOTS]; /* index + 1 into series, 0 = empty */
    metrics_series_t *last_resort[FAM_COUNT];
    _Atomic int64_t in_flight;
    uint64_t (*traces_dropped)(void *);
    void *traces_ctx;
    uint64_t (*otlp_dropped)(void *);
    void *otlp_ctx;
} M = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- atomics on doubles ---- */

static uint64_t metrics_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double metrics_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void metrics_add_double(_Atomic uint64_t *p, double delta)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, metrics_bits(metrics_double(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- series table ---- */

static uint32_t metrics_hash(int family, const char *const *labels, int n)
{
    uint32_t h = 2166136261u ^ (uint32_t)family;
    h *= 16777619u;
    for (int i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)labels[i]; *p; p++) {
            h ^= *p;
            h *= 16777619u;
        }
        h ^= 0xff; /* separator: ("ab","c") != ("a","bc") */
        h *= 16777619u;
    }
    return h;
}

/* A label value capped at METRICS_LABEL_MAX bytes with bad UTF-8 replaced by
 * U+FFFD: NULL when s is already clean (the common case: no allocation), else a
 * new string. */
static char *metrics_label_clean(const char *s)
{
    char out[METRICS_LABEL_MAX * 3 + 4];
    size_t o = 0, i = 0, n = strlen(s);
    int changed = n > METRICS_LABEL_MAX;
    while (i < n && o < METRICS_LABEL_MAX) {
        const unsigned char *u = (const unsigned char *)s + i;
        int k = fig_utf8_seq(u, n - i);
        if (k > 0) {
            size_t len = (size_t)k;
            memcpy(out + o, u, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            changed = 1;
        }
    }
    if (!changed)
        return NULL;
    out[o] = '\0';
    return fig_strdup(out);
}

static metrics_series_t *metrics_find_locked(int family, const char *const *labels, uint32_t h, size_t *slot)
{
    int n = metrics_families[family].nlabels;
    size_t i = h & (METRICS_HASH_SLOTS - 1);
    for (;; i = (i + 1) & (METRICS_HASH_SLOTS - 1)) {
        int idx = M.slots[i];
        if (idx == 0) {
            *slot = i;
            return NULL;
        }
        metrics_series_t *s = M.series[idx - 1];
        if (s->hash != h || s->family != family)
            continue;
        int same = 1;
        for (int k = 0; k < n && same; k++)
            same = strcmp(s->labels[k], labels[k]) == 0;
        if (same)
            return s;
    }
}

static metrics_series_t *metrics_new_series(int family, const char *const *labels, uint32_t h)
{
    metrics_series_t *s = fig_calloc(1, sizeof(*s));
    s->family = family;
    s->hash = h;
    for (int k = 0; k < metrics_families[family].nlabels; k++)
        s->labels[k] = fig_strdup(labels[k]);
    return s;
}

/* Finds or creates, folding per the family's rules when the table is full:
 * step 0 exact, step 1 folds the FOLD_STEP1 labels, step 2 the FOLD_STEP2 ones
 * too. Caller holds the lock. */
static metrics_series_t *metrics_get_locked(int family, const char *const *raw)
{
    const metrics_family_t *f = &metrics_families[family];
    char *copies[METRICS_MAX_LABELS] = {0};
    const char *labels[METRICS_MAX_LABELS] = {0};
    metrics_series_t *s = NULL;
    for (int k = 0; k < f->nlabels; k++) {
        copies[k] = metrics_label_clean(raw[k] ? raw[k] : "");
        labels[k] = copies[k] ? copies[k] : raw[k] ? raw[k] : "";
    }
    for (int step = 0; step <= 2 && s == NULL; step++) {
        int changed = step == 0;
        for (int k = 0; k < f->nlabels; k++)
            if (step > 0 && f->fold[k] != FOLD_NEVER && f->fold[k] <= step && strcmp(labels[k], "other") != 0) {
                labels[k] = "other";
                changed = 1;
            }
        if (!changed)
            continue;
        uint32_t h = metrics_hash(family, labels, f->nlabels);
        size_t slot;
        s = metrics_find_locked(family, labels, h, &slot);
        if (s != NULL)
            break;
        /* Partly folded sets (model="other" but a real app) get half the reserve,
         * so they can never use up the room fully folded sets need. */
        int fully = 1;
        for (int k = 0; k < f->nlabels; k++)
            if (f->fold[k] != FOLD_NEVER && strcmp(labels[k], "other") != 0)
                fully = 0;
        size_t cap = step == 0 ? METRICS_MAX_SERIES
                     : fully   ? METRICS_TABLE_CAP
                               : METRICS_MAX_SERIES + METRICS_FOLD_RESERVE / 2;
        if (M.nseries < cap) {
            s = metrics_new_series(family, labels, h);
            M.series[M.nseries++] = s;
            M.slots[slot] = (int16_t)M.nseries;
        }
    }
    if (s == NULL) {
        /* The all-"other" set may already be in the table (an outcome literally
         * named "other"): use it, so no label set is ever rendered twice. */
        const char *others[METRICS_MAX_LABELS] = {"other", "other", "other"};
        uint32_t h = metrics_hash(family, others, f->nlabels);
        size_t slot;
        s = metrics_find_locked(family, others, h, &slot);
        if (s == NULL) {
            if (M.last_resort[family] == NULL)
                M.last_resort[family] = metrics_new_series(family, others, h);
            s = M.last_resort[family];
        }
    }
    for (int k = 0; k < f->nlabels; k++)
        free(copies[k]);
    return s;
}

static metrics_series_t *metrics_get(int family, const char *const *labels)
{
    pthread_mutex_lock(&M.lock);
    metrics_series_t *s = metrics_get_locked(family, labels);
    pthread_mutex_unlock(&M.lock);
    return s;
}

static void metrics_free_series(metrics_series_t *s)
{
    if (s == NULL)
        return;
    for (int k = 0; k < METRICS_MAX_LABELS; k++)
        free(s->labels[k]);
    free(s);
}

/* ---- recording ---- */

static int metrics_valid_amount(double v)
{
    return isfinite(v) && v >= 0;
}

static void metrics_observe(metrics_series_t *s, double v)
{
    if (!metrics_valid_amount(v))
        return;
    const metrics_family_t *f = &metrics_families[s->family];
    int b = 0;
    while (b < f->nbounds && v > f->bounds[b])
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    metrics_add_double(&s->sum, v);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

static void metrics_count(metrics_series_t *s, uint64_t n)
{
    atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

/* The series that always exist, so dashboards see zeros rather than gaps.
 * Caller holds the lock. */
static void metrics_fixed_series_locked(void)
{
    metrics_get_locked(FAM_OVERHEAD, NULL);
    metrics_get_locked(FAM_PAGE_CACHE, (const char *[]){"hit"});
    metrics_get_locked(FAM_PAGE_CACHE, (const char *[]){"miss"});
}

void metrics_init(void)
{
    metrics_shutdown();
    pthread_mutex_lock(&M.lock);
    metrics_fixed_series_locked();
    pthread_mutex_unlock(&M.lock);
}

void metrics_shutdown(void)
{
    pthread_mutex_lock(&M.lock);
    for (size_t i = 0; i < M.nseries; i++)
        metrics_free_series(M.series[i]);
    for (int f = 0; f < FAM_COUNT; f++) {
        metrics_free_series(M.last_resort[f]);
        M.last_resort[f] = NULL;
    }
    memset(M.series, 0, sizeof(M.series));
    memset(M.slots, 0, sizeof(M.slots));
    M.nseries = 0;
    atomic_store(&M.in_flight, 0);
    M.traces_dropped = M.otlp_dropped = NULL;
    M.traces_ctx = M.otlp_ctx = NULL;
    pthread_mutex_unlock(&M.lock);
}

void metrics_interaction(const metrics_interaction_t *m)
{
    if (m == NULL)
        return;
    const char *app = m->app ? m->app : "";
    const char *model = m->model ? m->model : "";
    const char *outcome = m->outcome ? m->outcome : "";
    metrics_series_t *inter, *dur, *ttft = NULL, *over, *tokens[4], *cost;

    pthread_mutex_lock(&M.lock);
    inter = metrics_get_locked(FAM_INTERACTIONS, (const char *[]){app, model, outcome});
    dur = metrics_get_locked(FAM_DURATION, (const char *[]){app});
    if (m->ttft_s >= 0)
        ttft = metrics_get_locked(FAM_TTFT, (const char *[]){app, model});
    over = metrics_get_locked(FAM_OVERHEAD, NULL);
    for (int k = 0; k < 4; k++)
        tokens[k] = metrics_get_locked(FAM_TOKENS, (const char *[]){app, model, metrics_token_kinds[k]});
    cost = metrics_get_locked(FAM_COST, (const char *[]){app, model});
    pthread_mutex_unlock(&M.lock);

    metrics_count(inter, 1);
    metrics_observe(dur, m->total_s);
    if (ttft != NULL)
        metrics_observe(ttft, m->ttft_s);
    metrics_observe(over, m->overhead_s);
    const int64_t counts[4] = {m->prompt_tokens, m->cached_tokens, m->cache_write_tokens, m->completion_tokens};
    for (int k = 0; k < 4; k++)
        if (counts[k] > 0)
            metrics_count(tokens[k], (uint64_t)counts[k]);
    if (metrics_valid_amount(m->cost_usd) && m->cost_usd > 0)
        metrics_add_double(&cost->value, m->cost_usd);
}

void metrics_cache(int hit)
{
    metrics_count(metrics_get(FAM_PAGE_CACHE, (const char *[]){hit ? "hit" : "miss"}), 1);
}

void metrics_upstream_error(const char *provider, const char *kind)
{
    metrics_count(metrics_get(FAM_UPSTREAM_ERRORS, (const char *[]){provider ? provider : "", kind ? kind : ""}), 1);
}

void metrics_in_flight_add(int delta)
{
    atomic_fetch_add_explicit(&M.in_flight, delta, memory_order_relaxed);
}

void metrics_set_dropped_sources(uint64_t (*traces_dropped)(void *), void *traces_ctx,
                                 uint64_t (*otlp_dropped)(void *), void *otlp_ctx)
{
    pthread_mutex_lock(&M.lock);
    M.traces_dropped = traces_dropped;
    M.traces_ctx = traces_ctx;
    M.otlp_dropped = otlp_dropped;
    M.otlp_ctx = otlp_ctx;
    pthread_mutex_unlock(&M.lock);
}

/* ---- rendering ---- */

static void metrics_append_double(fig_buf_t *out, double v)
{
    if (isnan(v)) {
        fig_buf_append_str(out, "NaN");
        return;
    }
    if (isinf(v)) {
        fig_buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char text[32];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(text, sizeof(text), "%.*g", prec, v);
        if (strtod(text, NULL) == v)
            break;
    }
    fig_buf_append_str(out, text);
}

static void metrics_append_label_value(fig_buf_t *out, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\')
            fig_buf_append(out, "\\\\", 2);
        else if (*p == '"')
            fig_buf_append(out, "\\\"", 2);
        else if (*p == '\n')
            fig_buf_append(out, "\\n", 2);
        else
            fig_buf_append(out, p, 1);
    }
}

/* name{labels[,le="x"]} — braces omitted when there is nothing inside. */
static void metrics_append_name(fig_buf_t *out, const char *name, const char *suffix, const metrics_family_t *f,
                                const metrics_series_t *s, const char *le)
{
    fig_buf_append_str(out, name);
    fig_buf_append_str(out, suffix);
    if (f->nlabels == 0 && le == NULL) {
        fig_buf_append(out, " ", 1);
        return;
    }
    fig_buf_append(out, "{", 1);
    for (int k = 0; k < f->nlabels; k++) {
        fig_buf_appendf(out, "%s%s=\"", k ? "," : "", f->labels[k]);
        metrics_append_label_value(out, s->labels[k]);
        fig_buf_append(out, "\"", 1);
    }
    if (le != NULL)
        fig_buf_appendf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    fig_buf_append(out, "} ", 2);
}

static void metrics_render_series(fig_buf_t *out, const metrics_family_t *f, const metrics_series_t *s)
{
    if (f->kind == KIND_HISTOGRAM) {
        uint64_t cumulative = 0;
        for (int b = 0; b <= f->nbounds; b++) {
            cumulative += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
            metrics_append_name(out, f->name, "_bucket", f, s, b < f->nbounds ? f->bound_text[b] : "+Inf");
            fig_buf_appendf(out, "%" PRIu64 "\n", cumulative);
        }
        /* _count is the +Inf bucket: read concurrently, the separate counter could
         * run ahead of the buckets and break "+Inf == _count". */
        metrics_append_name(out, f->name, "_sum", f, s, NULL);
        metrics_append_double(out, metrics_double(atomic_load_explicit(&s->sum, memory_order_relaxed)));
        fig_buf_append(out, "\n", 1);
        metrics_append_name(out, f->name, "_count", f, s, NULL);
        fig_buf_appendf(out, "%" PRIu64 "\n", cumulative);
    } else {
        metrics_append_name(out, f->name, "", f, s, NULL);
        uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
        if (f->integer)
            fig_buf_appendf(out, "%" PRIu64, v);
        else
            metrics_append_double(out, metrics_double(v));
        fig_buf_append(out, "\n", 1);
    }
}

static void metrics_render_single(fig_buf_t *out, const metrics_family_t *f, const char *value)
{
    fig_buf_appendf(out, "%s %s\n", f->name, value);
}

static locale_t metrics_c_locale = (locale_t)0;
static pthread_once_t metrics_locale_once = PTHREAD_ONCE_INIT;

static void metrics_make_locale(void)
{
    metrics_c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

void metrics_render(fig_buf_t *out)
{
    pthread_once(&metrics_locale_once, metrics_make_locale);
    locale_t previous = metrics_c_locale ? uselocale(metrics_c_locale) : (locale_t)0;

    pthread_mutex_lock(&M.lock);
    metrics_fixed_series_locked();

    for (int fam = 0; fam < FAM_COUNT; fam++) {
        const metrics_family_t *f = &metrics_families[fam];
        static const char *const kinds[] = {"counter", "gauge", "histogram"};
        fig_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, kinds[f->kind]);
        char num[32];
        if (fam == FAM_IN_FLIGHT) {
            snprintf(num, sizeof(num), "%" PRId64, atomic_load(&M.in_flight));
            metrics_render_single(out, f, num);
            continue;
        }
        if (fam == FAM_TRACES_DROPPED || fam == FAM_OTLP_DROPPED) {
            uint64_t (*fn)(void *) = fam == FAM_TRACES_DROPPED ? M.traces_dropped : M.otlp_dropped;
            void *ctx = fam == FAM_TRACES_DROPPED ? M.traces_ctx : M.otlp_ctx;
            snprintf(num, sizeof(num), "%" PRIu64, fn ? fn(ctx) : 0);
            metrics_render_single(out, f, num);
            continue;
        }
        for (size_t i = 0; i < M.nseries; i++)
            if (M.series[i]->family == fam)
                metrics_render_series(out, f, M.series[i]);
        if (M.last_resort[fam] != NULL)
            metrics_render_series(out, f, M.last_resort[fam]);
    }
    pthread_mutex_unlock(&M.lock);
    if (previous != (locale_t)0)
        uselocale(previous);
}
