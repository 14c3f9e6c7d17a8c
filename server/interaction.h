/*
 * interaction.h — one HTTP request under /<app>/ on its way through the model.
 *
 * The interaction_t carries the request (copied out of h2o so it may outlive the
 * connection), the session, the conversation with the model, and the record of
 * timings and usage: the one place where an interaction's costs are written down
 * (traces and metrics read it in later issues).
 *
 * Lifetime: reference-counted. The HTTP request holds one reference until it is
 * disposed (client gone or response sent); each worker job in flight holds one.
 * `req` is NULL once the client is gone: from then on nothing is sent and the
 * session is not written. interaction_unref() frees it at zero.
 */
#ifndef FIG_INTERACTION_H
#define FIG_INTERACTION_H

#include <h2o.h>
#include <jansson.h>
#include <stdint.h>

#include "app.h"
#include "buf.h"
#include "confirm.h"
#include "page_cache.h"
#include "llm.h"
#include "providers.h"
#include "session.h"
#include "worker.h"

struct agent_env;
struct llm_route;

/* A fallback chain of models, first choice first. */
typedef struct {
    model_ref_t *models;
    size_t n;
} model_chain_t;

/* What figment knows of an app at run time: the app, its byte-stable prompt prefix
 * and tool schemas, and its model chains (resolved against the providers), all built
 * once at start. */
typedef struct {
    const app_t *app;
    char *system_prompt;
    json_t *tools;
    model_chain_t chain;         /* app.json models/model, else the providers' default_models */
    model_chain_t *route_chains; /* one per app->routes entry */
    char prompt_version[65];     /* hex SHA-256 of the system prompt and tool schemas */
    /* mutable, atomic: */
    _Atomic int prefetch_running;/* prefetch generations of this app in flight */
    _Atomic long long hit_trace_second;   /* the second hit_traces counts in */
    _Atomic int hit_traces;               /* cache hits traced one by one in that second */
    _Atomic long long hits_untraced;      /* hits since then not traced (folded into the next traced one) */
} app_runtime_t;

typedef struct {
    uint64_t start_ns;
    uint64_t session_loaded_ns;
    uint64_t end_ns;
    int llm_calls;
    double llm_ms;          /* summed over calls */
    double first_ttft_ms;   /* first call's time to first byte */
    int tool_calls;
    double tool_ms;
    double render_ms;
    llm_usage_t usage;      /* summed over calls */
    double cost_usd;        /* every upstream attempt, priced */
    double connect_ms;      /* the first model call's connect time */
    int attempts, retries, fallbacks, hedges;
    char model[160];        /* "provider/model" that answered (or was tried last) */
    char route[512];        /* the router's decisions, in order */
    const char *route_rule; /* "routing[N]" when an app.json rule chose the chain, else "default" */
    int stale;              /* a stored page was served because every model failed */
    int cache_hit;          /* served from the page cache */
    int status;             /* HTTP status sent */
    const char *outcome;    /* "ok", "upstream", "upstream_timeout", "client_gone", ... */
} interaction_record_t;

typedef struct interaction {
    int refcnt;
    char trace_id[33];      /* 128 random bits, hex: the X-Trace-Id header and the trace's key */
    char span_id[17];
    struct agent_env *env;
    const app_runtime_t *rt;
    h2o_req_t *req; /* NULL once the client is gone */

    /* request, copied */
    char *method;
    char *path;  /* normalized path, no query */
    char *url;   /* path plus "?query" when there is one: the retry link */
    json_t *query;
    json_t *form;
    char *csrf_token;
    int new_session; /* the cookie must be set on the response */
    char *set_cookie;

    /* session and conversation */
    session_t session;
    json_t *messages;
    llm_result_t result;
    int round;
    size_t tool_index;
    const model_chain_t *chain;  /* chosen by the routing rules at start */
    struct llm_route *llm;       /* the model call in flight */
    int holds_upstream_slot;     /* counts against the global concurrent-upstream cap */
    int counted_in_flight;       /* counted in the in-flight gauge until answered or freed */
    int recorded;                /* usage (and page) handed to the session writer with the session */
    int cache_persist;           /* the page cache entry goes to var/cache.db after the answer */
    worker_job_t job;
    fig_err_t job_err;
    uint64_t step_start_ns; /* when the worker step in flight started */
    char *job_text;    /* a tool result or page title handed across threads */
    char *page_title;
    char *page_html;   /* the sanitized body fragment (kept as the last good page) */
    fig_buf_t page;    /* the full HTML document to send */
    fig_err_t fail_err;/* why the model could not answer (a stale page may still be served) */
    char *error_text;  /* the message shown on an error page (for the trace) */
    json_t *state_before; /* the session state as loaded (for the trace and replay) */
    json_t *tool_log;  /* [{"name","arguments","result","ms","is_error"}] for the trace */

    /* tools beyond sql/set_state */
    int job_status;       /* a worker/sandbox tool's status (TOOL_OK, ...) */
    void *tool_handle;    /* an asynchronous tool in flight (http_fetch) */
    const struct tool *tool_async; /* its tool, for cancel */
    int confirm_next;     /* the next tool call runs as confirmed by the user */
    char *upload_dir;     /* var/uploads/<app>/<session>: uploads and run_code outputs */
    json_t *uploads;      /* listing for the interaction text, or NULL when the app takes no files */
    struct interaction_upload *upload_files; /* file parts of this request, to be stored (copied) */
    size_t n_upload_files;

    /* confirmation: this request answers /<app>/_confirm/<id> */
    char confirm_id[CONFIRM_ID_LEN + 1];
    int confirm_accept;   /* decision=confirm (1) or cancel (0) */
    confirm_claim_t claim;
    confirm_pending_t pending; /* claimed on the worker, used on the loop */
    char *confirm_text;   /* TOOL_NEEDS_CONFIRM: what the paused call would do */

    /* progressive page (issue 5) */
    int stream_wanted;    /* the client asked for HTML: stream the page */
    struct page_stream *stream; /* the stream once begun (owned by the request), else NULL */
    int streaming;        /* the shell was sent: pages are composed as fragments */
    fig_buf_t stream_md;  /* this round's model text so far */
    size_t stream_md_done;/* bytes of stream_md already rendered and sent */
    fig_buf_t stream_html;/* this round's blocks as sent, sanitized: the stored page of a streamed answer */

    /* page cache (GET pages of apps with cache.ttl_s) */
    int cache_mode;       /* 0 not cached, 1 leading the generation, 2 waiting for the leader */
    int cache_ended;      /* the leader has called page_cache_flight_end */
    char cache_key[65];
    unsigned long long data_version_at_start;
    page_cache_waiter_t cache_waiter;
    page_cache_entry_t *cache_entry; /* the leader's page to cache, or the entry being served */

    /* parallel attempts (app.json "actions") */
    struct attempt_set *attempts; /* the parent: its attempts, or NULL */
    struct attempt *attempt;      /* an attempt: its isolation and its parent, or NULL */
    int prefetch;                 /* generated ahead for the cache, no client (req is a sentinel) */

    interaction_record_t rec;
} interaction_t;

/* A file part of a multipart POST, copied out of the request body. */
typedef struct interaction_upload {
    char *filename;
    char *content_type;
    char *data;
    size_t len;
} interaction_upload_t;

interaction_t *interaction_new(struct agent_env *env, const app_runtime_t *rt, h2o_req_t *req);
void interaction_ref(interaction_t *ix);
void interaction_unref(interaction_t *ix);

/* The user message for the model, in the documented text form (docs/ARCHITECTURE.md). Caller frees. */
char *interaction_describe(const interaction_t *ix);

/* Monotonic clock in nanoseconds. */
uint64_t interaction_now_ns(void);
/* Writes the one log line for this interaction to stderr (JSON). */
void interaction_log(const interaction_t *ix);

#endif
