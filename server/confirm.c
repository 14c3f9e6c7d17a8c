/*
 * confirm.c — pending confirmations of destructive actions (see confirm.h).
 *
 * A pending confirmation is one row of figment.db's pending_confirmations table
 * (created by session.c's schema version 3). Claiming is a read and a delete in one
 * IMMEDIATE transaction, so a double-clicked "Confirm" runs the action once: the
 * second post finds nothing. Rows are bound to the session and app that created
 * them; an id guessed or leaked to another session is "not found", never run.
 *
 * The page is built here from fixed text plus the escaped description: the model
 * only ever supplies the tool call, never the markup the user clicks.
 */
#include "confirm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

void confirm_new_id(char id[CONFIRM_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t r[CONFIRM_ID_LEN / 2];
    if (crypto_random(r, sizeof(r)) != 0)
        abort(); /* no randomness: nothing safe to do */
    for (size_t i = 0; i < sizeof(r); i++) {
        id[2 * i] = hex[r[i] >> 4];
        id[2 * i + 1] = hex[r[i] & 15];
    }
    id[CONFIRM_ID_LEN] = '\0';
}

static int confirm_db_fail(sqlite3 *db, const char *what, fig_err_t *err)
{
    fig_err_set(err, FIG_E_DB, "pending confirmations: %s: %s", what, sqlite3_errmsg(db));
    return -1;
}

int confirm_save(session_store_t *st, const confirm_pending_t *p, fig_err_t *err)
{
    sqlite3 *db = session_store_db(st);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO pending_confirmations(id, session_id, app, created_at, expires_at, tool, "
                           "description, messages, calls, tool_index, round, origin_url) "
                           "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &q, NULL) != SQLITE_OK)
        return confirm_db_fail(db, "prepare insert", err);
    char *messages = json_dumps(p->messages, JSON_COMPACT);
    char *calls = json_dumps(p->calls, JSON_COMPACT);
    sqlite3_bind_text(q, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, p->session_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, p->app, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, p->created_at);
    sqlite3_bind_int64(q, 5, p->expires_at);
    sqlite3_bind_text(q, 6, p->tool ? p->tool : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 7, p->description ? p->description : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 8, messages ? messages : "[]", -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 9, calls ? calls : "[]", -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 10, p->tool_index);
    sqlite3_bind_int(q, 11, p->round);
    sqlite3_bind_text(q, 12, p->origin_url ? p->origin_url : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    free(messages);
    free(calls);
    if (rc != SQLITE_DONE)
        return confirm_db_fail(db, "insert", err);
    return 0;
}

void confirm_pending_clear(confirm_pending_t *p)
{
    free(p->app);
    free(p->description);
    free(p->tool);
    json_decref(p->messages);
    json_decref(p->calls);
    free(p->origin_url);
    memset(p, 0, sizeof(*p));
}

static char *confirm_col_text(sqlite3_stmt *q, int col)
{
    const unsigned char *t = sqlite3_column_text(q, col);
    return fig_strdup(t ? (const char *)t : "");
}

int confirm_claim(session_store_t *st, const char *id, const char *session_id, const char *app, time_t now,
                  confirm_pending_t *out, confirm_claim_t *result, fig_err_t *err)
{
    sqlite3 *db = session_store_db(st);
    memset(out, 0, sizeof(*out));
    *result = CONFIRM_NOT_FOUND;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return confirm_db_fail(db, "begin", err);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT expires_at, tool, description, messages, calls, tool_index, round, origin_url, "
                           "created_at FROM pending_confirmations WHERE id = ? AND session_id = ? AND app = ?",
                           -1, &q, NULL) != SQLITE_OK) {
        confirm_db_fail(db, "prepare select", err);
        goto fail;
    }
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, session_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, app, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        int64_t expires = sqlite3_column_int64(q, 0);
        if (expires <= (int64_t)now) {
            *result = CONFIRM_EXPIRED;
        } else {
            json_error_t jerr;
            snprintf(out->id, sizeof(out->id), "%s", id);
            snprintf(out->session_id, sizeof(out->session_id), "%s", session_id);
            out->app = fig_strdup(app);
            out->expires_at = expires;
            out->tool = confirm_col_text(q, 1);
            out->description = confirm_col_text(q, 2);
            out->messages = json_loads((const char *)sqlite3_column_text(q, 3), 0, &jerr);
            out->calls = json_loads((const char *)sqlite3_column_text(q, 4), 0, &jerr);
            out->tool_index = sqlite3_column_int(q, 5);
            out->round = sqlite3_column_int(q, 6);
            out->origin_url = confirm_col_text(q, 7);
            out->created_at = sqlite3_column_int64(q, 8);
            if (!json_is_array(out->messages) || !json_is_array(out->calls) || out->tool_index < 0 ||
                (size_t)out->tool_index >= json_array_size(out->calls)) {
                fig_err_set(err, FIG_E_DB, "pending confirmations: row %s is damaged", id);
                confirm_pending_clear(out);
                sqlite3_finalize(q);
                goto fail;
            }
            *result = CONFIRM_CLAIMED;
        }
    } else if (rc != SQLITE_DONE) {
        confirm_db_fail(db, "select", err);
        sqlite3_finalize(q);
        goto fail;
    }
    sqlite3_finalize(q);
    q = NULL;
    /* the claimed row, and every expired one, leave in the same transaction */
    if (sqlite3_prepare_v2(db, "DELETE FROM pending_confirmations WHERE id = ? OR expires_at <= ?", -1, &q, NULL) !=
        SQLITE_OK) {
        confirm_db_fail(db, "prepare delete", err);
        goto fail_clear;
    }
    sqlite3_bind_text(q, 1, *result == CONFIRM_CLAIMED ? id : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (int64_t)now);
    rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        confirm_db_fail(db, "delete", err);
        goto fail_clear;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        confirm_db_fail(db, "commit", err);
        goto fail_clear;
    }
    return 0;

fail_clear:
    if (*result == CONFIRM_CLAIMED)
        confirm_pending_clear(out);
fail:
    *result = CONFIRM_NOT_FOUND;
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

void confirm_page_html(fig_buf_t *out, const char *app, const char *tool, const char *id, const char *description,
                       const char *csrf_token, int ttl_s)
{
    const char *what = strcmp(tool, "http_fetch") == 0 ? "send this request on your behalf" : "change your data";
    fig_buf_append_str(out, "<section class=\"confirm\">\n<h1>Confirm this action</h1>\n<p>The app wants to ");
    fig_buf_append_str(out, what);
    fig_buf_append_str(out, ". Nothing has happened yet. This is exactly what will run (tool <code>");
    fig_buf_append_html(out, tool, strlen(tool));
    fig_buf_append_str(out, "</code>):</p>\n<pre class=\"confirm-action\">");
    fig_buf_append_html(out, description, strlen(description));
    fig_buf_append_str(out, "</pre>\n<p class=\"notice\">This page comes from figment, not from the app's model. "
                            "If you did not ask for this, choose Cancel.</p>\n<form method=\"post\" action=\"/");
    fig_buf_append_html(out, app, strlen(app));
    fig_buf_append_str(out, "/_confirm/");
    fig_buf_append_html(out, id, strlen(id));
    fig_buf_append_str(out, "\" class=\"confirm-form\">\n<input type=\"hidden\" name=\"_csrf\" value=\"");
    fig_buf_append_html(out, csrf_token, strlen(csrf_token));
    fig_buf_append_str(out, "\">\n<button type=\"submit\" name=\"decision\" value=\"confirm\" class=\"danger\">Confirm</button>\n"
                            "<button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button>\n</form>\n");
    fig_buf_appendf(out, "<p class=\"muted\">This request expires in %d minutes.</p>\n</section>\n",
                    ttl_s >= 60 ? ttl_s / 60 : 1);
}

int confirm_path_parse(const char *app, const char *path, char id[CONFIRM_ID_LEN + 1])
{
    size_t alen = strlen(app);
    if (path[0] != '/' || strncmp(path + 1, app, alen) != 0 || strncmp(path + 1 + alen, "/_confirm/", 10) != 0)
        return 0;
    const char *p = path + 1 + alen + 10;
    if (strlen(p) != CONFIRM_ID_LEN)
        return -1;
    for (size_t i = 0; i < CONFIRM_ID_LEN; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return -1;
    memcpy(id, p, CONFIRM_ID_LEN + 1);
    return 1;
}
