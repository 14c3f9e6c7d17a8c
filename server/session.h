/*
 * session.h — browser sessions: signed cookies and the SQLite session store.
 *
 * A session id is 32 hex chars from crypto_random(). The cookie value is
 * "<id>.<base64url(HMAC-SHA256(key, id))>"; a value that does not verify is treated as
 * absent (the caller starts a fresh session). The key is 32 random bytes kept in
 * var/secret.key (mode 0600), created on first start.
 *
 * The store (var/figment.db, WAL) holds each session's state (a JSON object) and its
 * interaction log. Store functions block on SQLite: call them from a worker thread
 * (worker.h), never from an event loop. A session_store_t is one connection: use one
 * per worker thread.
 */
#ifndef FIG_SESSION_H
#define FIG_SESSION_H

#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "error.h"

#define SESSION_ID_LEN 32
#define SESSION_COOKIE_NAME "figment_sid"
#define SESSION_KEY_LEN 32

/* Loads var_dir/secret.key or creates it. key must hold SESSION_KEY_LEN bytes. */
int session_key_load(const char *var_dir, uint8_t key[SESSION_KEY_LEN], fig_err_t *err);

/* Writes a fresh random id (SESSION_ID_LEN chars + NUL) into id. */
void session_new_id(char id[SESSION_ID_LEN + 1]);
/* Returns the malloc'd cookie value for id. */
char *session_cookie_sign(const uint8_t key[SESSION_KEY_LEN], const char *id);
/* On success copies the id into id_out and returns 0; -1 for anything forged or malformed. */
int session_cookie_verify(const uint8_t key[SESSION_KEY_LEN], const char *value, size_t len, char id_out[SESSION_ID_LEN + 1]);
/* CSRF token bound to the session: base64url(HMAC(key, "csrf:" + id)). Caller frees. */
char *session_csrf_token(const uint8_t key[SESSION_KEY_LEN], const char *id);
/* 1 when token is the session's CSRF token (constant time). */
int session_csrf_check(const uint8_t key[SESSION_KEY_LEN], const char *id, const char *token, size_t len);

typedef struct session_store session_store_t;

/* Opens (creating the schema if needed) the store at path, WAL mode, busy timeout. */
session_store_t *session_store_open(const char *path, fig_err_t *err);
void session_store_close(session_store_t *st);
/* The store's connection, for modules that keep their own tables in figment.db
 * (confirm.c). Same thread rules as the store. */
sqlite3 *session_store_db(session_store_t *st);

typedef struct {
    char id[SESSION_ID_LEN + 1];
    json_t *state;      /* owned: a JSON object, {} for a new session */
    json_t *history;    /* owned: array of {"method","path","title"} oldest first, at most `history_items` */
    int64_t seq;        /* number of interactions so far */
    int exists;         /* 0 when the id was not in the store (a fresh session) */
} session_t;

/* Loads session id for app (state is per app and session). When it does not exist,
 * fills an empty session with exists = 0 (nothing is written until save). */
int session_load(session_store_t *st, const char *id, const char *app, int history_items, session_t *out, fig_err_t *err);
/* In one transaction: upserts the state and appends an interaction record. */
int session_save(session_store_t *st, const session_t *s, const char *app, const char *method, const char *path,
                 const char *title, fig_err_t *err);
void session_clear(session_t *s);

/* What one interaction cost, recorded whatever its outcome (budgets add it up). */
struct session_usage;
typedef struct session_usage {
    const char *session_id;
    const char *app;
    const char *model;   /* "provider/model" that answered or was tried last */
    const char *outcome; /* "ok", "upstream", ... */
    int64_t prompt_tokens, cached_tokens, cache_write_tokens, completion_tokens;
    double cost_usd;
    const char *route;   /* the router's decision log */
    int64_t created_at;  /* unix seconds; 0 = now */
} session_usage_t;
int session_record_usage(session_store_t *st, const session_usage_t *u, fig_err_t *err);
/* session_save() plus, in the same transaction, the usage record (NULL = none) and the
 * page as the last good rendering of `path` (NULL = none): one commit per interaction. */
int session_save_all(session_store_t *st, const session_t *s, const char *app, const char *method, const char *path,
                     const char *title, const session_usage_t *usage, const char *page_html, fig_err_t *err);

/* One interaction's session write as a value: what session_save_all stores, in a form
 * that can be queued and journaled (session_writer.h). Every string is owned (malloc'd)
 * by the record; session_record_free() releases them. */
typedef struct {
    char session_id[SESSION_ID_LEN + 1];
    char *app, *method, *path;
    char *title;             /* may be NULL */
    char *state;             /* the state object as compact JSON text, keys sorted */
    int has_usage;
    session_usage_t usage;   /* when has_usage: its numbers; its string pointers are NULL (records
                              * are copied by value), the strings are these: */
    char *usage_model, *usage_outcome, *usage_route;
    char *page_html;         /* the page kept as the last good rendering of path; NULL = none */
    int64_t created_at;      /* unix seconds */
} session_record_t;

/* Fills r from a session and its interaction (copies everything; state NULL = {}).
 * -1 with err when the state is not a JSON object or an argument is malformed. */
int session_record_make(session_record_t *r, const session_t *s, const char *app, const char *method, const char *path,
                        const char *title, const session_usage_t *usage, const char *page_html, fig_err_t *err);
void session_record_free(session_record_t *r);
/* Applies r inside a transaction the caller opened (session_begin): the state upsert,
 * the interaction row, the usage row and the page. */
int session_record_apply(session_store_t *st, const session_record_t *r, fig_err_t *err);
int session_begin(session_store_t *st, fig_err_t *err); /* BEGIN IMMEDIATE */
int session_commit(session_store_t *st, fig_err_t *err);
void session_rollback(session_store_t *st);
/* How far the session journal has been applied (schema v4; (0, 0) on a new store).
 * The writer sets it in the same transaction as the records it applies. */
int session_journal_mark_get(session_store_t *st, int64_t *generation, int64_t *offset, fig_err_t *err);
int session_journal_mark_set(session_store_t *st, int64_t generation, int64_t offset, fig_err_t *err);

/* The session's spending in all apps, or -1 with err. */
double session_spent_usd(session_store_t *st, const char *session_id, fig_err_t *err);
/* Calls each(app, usd) for every app's spending since `since` (unix seconds). */
int session_spent_since(session_store_t *st, time_t since, void (*each)(void *ctx, const char *app, double usd),
                        void *ctx, fig_err_t *err);

/* The last good page of a URL in a session: the sanitized body fragment and title.
 * page_load returns 1 (found; *title and *html malloc'd, caller frees), 0 (none) or -1. */
int session_page_save(session_store_t *st, const char *session_id, const char *app, const char *url,
                      const char *title, const char *html, fig_err_t *err);
int session_page_load(session_store_t *st, const char *session_id, const char *app, const char *url, char **title,
                      char **html, int64_t *saved_at, fig_err_t *err);

#endif
