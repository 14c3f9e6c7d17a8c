/*
 * otlp.h — optional export of traces to an OpenTelemetry collector over OTLP/HTTP
 * with JSON encoding (POST <endpoint>, default path /v1/traces), following the
 * GenAI semantic conventions for the model spans.
 *
 * Each interaction becomes a root span "figment.interaction <METHOD> <route>" (kind
 * SERVER) with a child span "chat <model>" (kind CLIENT) carrying gen_ai.* attributes
 * (gen_ai.operation.name=chat, gen_ai.provider.name, gen_ai.request.model,
 * gen_ai.response.model, gen_ai.usage.input_tokens, gen_ai.usage.output_tokens,
 * gen_ai.usage.cached_input_tokens? use figment.* for non-standard ones) and one child
 * span per tool call ("execute_tool <name>", gen_ai.tool.name).
 *
 * A dedicated thread batches spans (up to OTLP_BATCH_MAX per request, or every
 * interval_ms) and POSTs them with libcurl (blocking calls, on its own thread only);
 * the queue is bounded (queue_max): when the collector is down or slow, new traces
 * are dropped and counted, never blocking an interaction. Failed batches are retried
 * once after a short backoff, then dropped and counted.
 *
 * Ownership: otlp_submit() copies what it needs from the trace; the caller keeps it.
 */
#ifndef FIG_OTLP_H
#define FIG_OTLP_H

#include <stdint.h>

#include "error.h"
#include "trace.h"

#define OTLP_BATCH_MAX 128

typedef struct otlp_exporter otlp_exporter_t;

typedef struct {
    const char *endpoint;    /* e.g. http://127.0.0.1:4318/v1/traces */
    const char *service_name;/* default "figment" */
    int queue_max;           /* default 2048 */
    int interval_ms;         /* default 1000 */
    long timeout_ms;         /* per POST, default 5000 */
} otlp_options_t;

otlp_exporter_t *otlp_start(const otlp_options_t *opts, fig_err_t *err);
/* Sends what is queued (best effort, bounded by timeout_ms), then stops. */
void otlp_stop(otlp_exporter_t *e);
/* Never blocks. 0 queued, -1 dropped (queue full). */
int otlp_submit(otlp_exporter_t *e, const trace_t *t);
uint64_t otlp_dropped(otlp_exporter_t *e);
uint64_t otlp_exported(otlp_exporter_t *e);
/* The JSON body for a batch of traces (exposed for unit tests). Caller decrefs. */
json_t *otlp_encode(const trace_t *const *traces, size_t n, const char *service_name);

#endif
