/*
 * agent_internal.h — what the parts of the agent loop share: agent.c (the loop,
 * the page cache and confirmation), attempts.c (parallel attempts with a verifier)
 * and prefetch.c (pages generated ahead). Not for the rest of the server: agent.h
 * is the agent's public face.
 *
 * Everything here runs on the interaction's loop thread unless a comment says it
 * runs on a worker.
 */
#ifndef FIG_AGENT_INTERNAL_H
#define FIG_AGENT_INTERNAL_H

#include "agent.h"

/* A non-NULL `req` for interactions that have no client but are still wanted
 * (prefetches, a cache leader whose client left); never dereferenced. */
extern h2o_req_t agent_no_client;

/* ---- agent.c ---- */
/* Runs run(ix) on a thread of pool, then done(ix) back on ix's loop: clears
 * ix->job_err and takes a reference on ix that done must release. One job per
 * interaction at a time (ix->job). */
void agent_submit(interaction_t *ix, worker_pool_t *pool, void (*run)(worker_job_t *, worker_thread_t *),
                  void (*done)(worker_job_t *));
void agent_ask_model(interaction_t *ix);
void agent_fail(interaction_t *ix, int status, const char *outcome, const char *heading, const char *message);
void agent_finish(interaction_t *ix, int status, const char *outcome);
void agent_save_and_respond(interaction_t *ix);
/* 1 when the page cache took the interaction over (hit, follower, store lookup). */
int agent_cache_lookup(interaction_t *ix);

/* ---- attempts.c ---- */
typedef struct attempt {
    interaction_t *parent; /* not a reference: the parent cancels its attempts before it goes
                              (only read on the loop thread, while the attempt is not cancelled) */
    const app_action_t *action; /* the app's (immutable): what the worker-side verifier reads */
    int index;
    app_t app;             /* a copy of the app whose db_path is this attempt's scratch database */
    char *db_path;
    char *dir;             /* this attempt's files */
    fig_buf_t write_log;
    int state;             /* 0 running, 1 verifying, 2 failed, 3 passed */
    char *why;             /* why it failed */
    int verify_ok;
} attempt_t;

typedef struct attempt_set {
    const app_action_t *action;
    interaction_t **children;
    int n;
    int winner;            /* index, or -1 */
    int done;              /* the parent has its answer (or gave up) */
} attempt_set_t;

/* Runs ix (the parent) as action->attempts isolated child interactions. */
void attempts_start(interaction_t *ix, const app_action_t *action);
/* A child's model gave its final page: verify it (on a worker or the sandbox pool). */
void attempt_answered(interaction_t *child);
/* A child ended without a page (or its check failed). */
void attempt_failed(interaction_t *child, const char *why);
/* Stops a child: its model call and tool are cancelled, nothing more happens. */
void attempt_cancel(interaction_t *child);

/* ---- prefetch.c ---- */
/* After ix's page was generated as a cache leader: generate its likely next pages. */
void prefetch_links(interaction_t *ix);

#endif
