/*
 * trace.h — one trace per interaction, kept in SQLite (var/traces.db), plus the
 * operator's feedback on pages.
 *
 * Writing never blocks an event loop: trace_submit() hands a finished trace to a
 * writer thread through a bounded queue (a full queue drops the trace and counts it)
 * and the writer inserts in batches (one transaction per batch, every
 * TRACE_BATCH_MS or TRACE_BATCH_MAX traces). Reading (operator UI, eval, replay)
 * uses its own connection, from a worker thread or a command-line tool.
 *
 * Secrets never reach a trace: figment never puts API keys or credentials in the
 * conversation, and the trace has no request headers. With redact_data set, tool
 * results (data rows) are replaced by "[redacted N bytes]" before storage.
 *
 * Ownership: trace_t fields are owned by the trace (trace_free releases them);
 * trace_submit() takes the trace whatever the outcome. Query results are returned
 * as jansson values the caller decrefs.
 */
#ifndef FIG_TRACE_H
#define FIG_TRACE_H

#include <jansson.h>
#include <stdint.h>

#include "error.h"

#define TRACE_BATCH_MS 200
#define TRACE_BATCH_MAX 256
#define TRACE_QUEUE_MAX 10000

typedef struct {
    char trace_id[33];      /* 32 hex chars (W3C trace-context size) */
    char span_id[17];       /* 16 hex chars: the interaction's root span */
    char session_id[33];
    char *app;
    char *method;
    char *path;             /* with the query string */
    char *route_rule;       /* "default" or "routing[N]" */
    char *model;            /* "provider/model" that answered, or was tried last */
    char *provider;         /* the provider part of model */
    char *route;            /* the router's decision log */
    char *prompt_version;   /* hex SHA-256 of system prompt + tool schemas (per app) */
    int status;
    char *outcome;          /* "ok", "upstream", "upstream_timeout", "budget", "stale", ... */
    char *error;            /* the error message, or NULL */
    int64_t started_unix_ms;
    /* timings, milliseconds */
    double queued_ms;       /* request accepted -> session loaded */
    double connect_ms;      /* first model call's connect */
    double ttft_ms;         /* first model call's time to first byte */
    double llm_ms;          /* all model calls */
    double tool_ms;         /* all tool calls */
    double render_ms;
    double total_ms;
    double overhead_ms;     /* total - llm - tool: figment's own time */
    int64_t prompt_tokens, cached_tokens, cache_write_tokens, completion_tokens;
    double cost_usd;
    int attempts;
    int cache_hit;
    int stale;
    int64_t folded_hits;    /* cache hits not traced one by one that this hit's trace stands for */
    json_t *state;          /* session state before the interaction (object) */
    json_t *request;        /* {"method","path","query":{},"form":{}} as the model saw it */
    json_t *tool_calls;     /* [{"name","arguments","result","ms","is_error"}] */
    json_t *messages;       /* the conversation sent to the model on the last call */
    char *answer;           /* the model's final text (the page's Markdown) */
    char *page_html;        /* the sanitized page body as served */
} trace_t;

trace_t *trace_new(void);
void trace_free(trace_t *t);

typedef struct trace_writer trace_writer_t;

/* Opens/creates the store (WAL, schema) and starts the writer thread. */
trace_writer_t *trace_writer_start(const char *db_path, int redact_data, fig_err_t *err);
/* Flushes what is queued, stops the thread, closes the store. */
void trace_writer_stop(trace_writer_t *w);
/* Never blocks; takes ownership of t. Returns 0, or -1 when the queue was full (dropped). */
int trace_submit(trace_writer_t *w, trace_t *t);
/* Traces dropped since start (queue full or write errors). */
uint64_t trace_writer_dropped(trace_writer_t *w);
/* Blocks until everything submitted so far is written (tests, shutdown, eval). */
void trace_writer_flush(trace_writer_t *w);

/* ---- reading ---- */
typedef struct trace_reader trace_reader_t;
trace_reader_t *trace_reader_open(const char *db_path, fig_err_t *err);
void trace_reader_close(trace_reader_t *r);

typedef struct {
    const char *app;        /* NULL = any */
    const char *model;      /* NULL = any */
    const char *outcome;    /* NULL = any */
    double min_total_ms;    /* "slow": 0 = any */
    double min_cost_usd;    /* "expensive": 0 = any */
    int64_t since_unix_ms;  /* 0 = any */
    int limit;              /* default 100, max 1000 */
    int offset;
} trace_filter_t;

/* Newest first: [{"trace_id","started_unix_ms","app","method","path","model","status","outcome",
 *                 "total_ms","ttft_ms","cost_usd","prompt_tokens","completion_tokens","cache_hit","stale",
 *                 "feedback": 1|-1|null}] */
json_t *trace_list(trace_reader_t *r, const trace_filter_t *f, fig_err_t *err);
/* Every field of trace_t as a JSON object, plus "feedback": [{"rating","comment","created_unix_ms"}];
 * NULL (err->code FIG_E_INVALID) when there is no such trace. */
json_t *trace_get(trace_reader_t *r, const char *trace_id, fig_err_t *err);

/* Per app and model, per time bucket: [{"app","model","bucket_unix_ms","count","errors","cost_usd",
 * "p50_ms","p95_ms","p99_ms","cache_hits"}], oldest bucket first. */
json_t *trace_stats(trace_reader_t *r, int64_t since_unix_ms, int64_t bucket_ms, fig_err_t *err);

/* Stores feedback on a trace (rating -1 or 1; comment may be NULL, capped at 2000 bytes). */
int trace_feedback_add(trace_reader_t *r, const char *trace_id, int rating, const char *comment, fig_err_t *err);
/* [{"trace_id","rating","comment","created_unix_ms","app","path"}], newest first. */
json_t *trace_feedback_list(trace_reader_t *r, int limit, fig_err_t *err);

#endif
