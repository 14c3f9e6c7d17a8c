/*
 * metrics.h — process-wide counters, gauges and histograms, rendered at /metrics in
 * the Prometheus text exposition format (version 0.0.4).
 *
 * Recording is lock-free on the hot path where it can be (atomics), a short mutex
 * where a new label set is first seen; the label sets are bounded (apps and models
 * are few; beyond METRICS_MAX_SERIES new series fold into model="other").
 *
 * Series:
 *   figment_interactions_total{app,model,outcome}            counter
 *   figment_interaction_duration_seconds{app}                histogram (total latency)
 *   figment_time_to_first_token_seconds{app,model}           histogram
 *   figment_overhead_seconds                                 histogram (total - model - tools)
 *   figment_tokens_total{app,model,kind="prompt|cached|cache_write|completion"}  counter
 *   figment_cost_usd_total{app,model}                        counter
 *   figment_page_cache_total{result="hit|miss"}              counter
 *   figment_upstream_errors_total{provider,kind}             counter
 *   figment_interactions_in_flight                           gauge
 *   figment_traces_dropped_total / figment_otlp_spans_dropped_total  counter (read at render)
 */
#ifndef FIG_METRICS_H
#define FIG_METRICS_H

#include <stdint.h>

#include "buf.h"

#define METRICS_MAX_SERIES 512

void metrics_init(void);
void metrics_shutdown(void);

typedef struct {
    const char *app;
    const char *model;     /* "provider/model" or "" */
    const char *outcome;
    double total_s;
    double ttft_s;         /* < 0: no model call */
    double overhead_s;
    int64_t prompt_tokens, cached_tokens, cache_write_tokens, completion_tokens;
    double cost_usd;
} metrics_interaction_t;

void metrics_interaction(const metrics_interaction_t *m);
void metrics_cache(int hit);
void metrics_upstream_error(const char *provider, const char *kind);
void metrics_in_flight_add(int delta);
/* Sources of counters owned elsewhere, read when /metrics is rendered. */
void metrics_set_dropped_sources(uint64_t (*traces_dropped)(void *), void *traces_ctx,
                                 uint64_t (*otlp_dropped)(void *), void *otlp_ctx);

/* Appends the whole exposition to out. */
void metrics_render(fig_buf_t *out);

#endif
