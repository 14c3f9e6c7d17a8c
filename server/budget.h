/*
 * budget.h — spending limits in USD: per session (all time), per app per UTC day,
 * and global per UTC day, from recorded usage priced by providers_cost_usd().
 *
 * The accountant keeps running totals in memory; figment seeds them at start from
 * the interactions table (budget_seed_*) and adds each interaction's cost as it is
 * recorded. A day rolls over at 00:00 UTC (the day is derived from the wall-clock
 * time passed in). Per-session totals live in a bounded table (LRU); a session
 * evicted from it is re-seeded by the caller from the store (budget_seed_session).
 *
 * Thread-safe (one mutex). Ownership: budget_create() returns an object freed by
 * budget_free().
 */
#ifndef FIG_BUDGET_H
#define FIG_BUDGET_H

#include <stddef.h>
#include <time.h>

#include "error.h"
#include "providers.h"

typedef struct budget budget_t;

budget_t *budget_create(const budgets_t *limits, size_t max_sessions);
void budget_free(budget_t *b);

/* Seeding from the store at start (today's totals) and on a session-table miss. */
void budget_seed_app(budget_t *b, const char *app, double usd_today, time_t now);
void budget_seed_global(budget_t *b, double usd_today, time_t now);
void budget_seed_session(budget_t *b, const char *session_id, double usd_total);
/* 1 when the session's total is known to the accountant (no seeding needed). */
int budget_knows_session(budget_t *b, const char *session_id);

/* 0 when every applicable budget has room; -1 with err (FIG_E_DENIED) naming the
 * budget that is spent, e.g. "this app's daily budget of $20.00 is spent". */
int budget_check(budget_t *b, const char *session_id, const char *app, time_t now, fig_err_t *err);
void budget_add(budget_t *b, const char *session_id, const char *app, double usd, time_t now);

/* Current totals (for pages, metrics and tests). */
double budget_spent_session(budget_t *b, const char *session_id);
double budget_spent_app_today(budget_t *b, const char *app, time_t now);
double budget_spent_global_today(budget_t *b, time_t now);

#endif
