/*
 * confirm.h — confirmation of destructive actions.
 *
 * When the model calls a tool that the app's "confirm" rules name (a DELETE, an
 * UPDATE of given tables, an http_fetch POST), the tool does nothing and says what it
 * would do (TOOL_NEEDS_CONFIRM). The agent then parks the interaction here: the
 * conversation so far, the round's tool calls and which one waits, in the session
 * store (a pending confirmation, so it survives a restart), and serves a page that
 * figment builds itself (confirm_page_html): neither model output nor injected
 * content can forge it, and it shows exactly what will run.
 *
 * The page posts to /<app>/_confirm/<id> with decision=confirm|cancel. The pending
 * row is claimed (read and deleted in one transaction) by the session that created
 * it, once: a second post, another session or an expired row gets a clear page.
 *
 * Threading: the store functions block (SQLite) and run on a worker thread with
 * that worker's session store connection. confirm_page_html is pure.
 */
#ifndef FIG_CONFIRM_H
#define FIG_CONFIRM_H

#include <jansson.h>
#include <time.h>

#include "buf.h"
#include "error.h"
#include "session.h"

#define CONFIRM_ID_LEN 32 /* hex of 128 random bits */

typedef struct {
    char id[CONFIRM_ID_LEN + 1];
    char session_id[SESSION_ID_LEN + 1];
    char *app;
    int64_t created_at;
    int64_t expires_at;
    char *description;   /* what the tool would do, as the tool said it */
    char *tool;          /* the waiting call's tool name */
    json_t *messages;    /* the conversation up to the waiting call (owned) */
    json_t *calls;       /* the round's calls [{"id","name","arguments"}] (owned) */
    int tool_index;      /* which of calls waits */
    int round;           /* the agent's tool round */
    char *origin_url;    /* the interaction that asked (for the page's "back" link) */
} confirm_pending_t;

/* A fresh random id. */
void confirm_new_id(char id[CONFIRM_ID_LEN + 1]);
/* Stores p (which keeps its ownership). */
int confirm_save(session_store_t *st, const confirm_pending_t *p, fig_err_t *err);

typedef enum { CONFIRM_CLAIMED = 0, CONFIRM_NOT_FOUND, CONFIRM_EXPIRED } confirm_claim_t;
/* Takes the pending confirmation id of (session_id, app) out of the store. On
 * CONFIRM_CLAIMED fills *out (free with confirm_pending_clear). -1 with err on a
 * store failure. Expired rows of every session are deleted on the way. */
int confirm_claim(session_store_t *st, const char *id, const char *session_id, const char *app, time_t now,
                  confirm_pending_t *out, confirm_claim_t *result, fig_err_t *err);
void confirm_pending_clear(confirm_pending_t *p);

/* The body of the confirmation page (HTML, every text escaped): heading, the exact
 * action in a <pre class="confirm-action">, and a form posting decision=confirm or
 * decision=cancel to /<app>/_confirm/<id> with the CSRF token. */
void confirm_page_html(fig_buf_t *out, const char *app, const char *tool, const char *id, const char *description,
                       const char *csrf_token, int ttl_s);

/* Whether a path (normalized, no query) is a confirmation post /<app>/_confirm/<id>:
 * 1 with id filled; -1 when it is under /<app>/_confirm/ but names no valid id (a
 * 404, never an interaction for the model); 0 when it is any other path. */
int confirm_path_parse(const char *app, const char *path, char id[CONFIRM_ID_LEN + 1]);

#endif
