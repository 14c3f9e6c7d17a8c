/*
 * attempts.c — parallel attempts with a verifier (app.json "actions"); see the
 * comment below and docs/ARCHITECTURE.md ("Tools, confirmation and attempts").
 */
#include "agent_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tools/sandbox.h"
#include "../tools/tools.h"
#include "llm_router.h"
#include "metrics.h"
#include "uploads.h"

/* ---- parallel attempts with a verifier (app.json "actions") ----
 *
 * An action's interaction runs as N attempts at once, each a child interaction with
 * its own conversation, its own scratch copy of the app database (SQLite's backup
 * API) and its own copy of the session's files. The first attempt whose final state
 * passes the verifier wins: the others are cancelled, the winner's committed writes
 * (its write log) are replayed on the real database in one transaction, its out/
 * files are copied back, and the parent answers with the winner's page. Every
 * attempt's cost is counted. The children never answer the browser or save the
 * session: their ends are intercepted (attempt_answered, attempt_failed). */


static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) {
            rc = -1;
            break;
        }
    if (n < 0)
        rc = -1;
    close(in);
    if (close(out) != 0)
        rc = -1;
    return rc;
}

/* Copies the regular files of dir `from` (not recursive) into `to` (created 0700). */
static int copy_dir_files(const char *from, const char *to)
{
    if (mkdir(to, 0700) != 0 && errno != EEXIST)
        return -1;
    DIR *d = opendir(from);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        fig_buf_t a = FIG_BUF_INIT, b = FIG_BUF_INIT;
        fig_buf_appendf(&a, "%s/%s", from, de->d_name);
        fig_buf_appendf(&b, "%s/%s", to, de->d_name);
        struct stat st;
        if (lstat(a.data, &st) == 0 && S_ISREG(st.st_mode) && copy_file(a.data, b.data) != 0)
            rc = -1;
        fig_buf_free(&a);
        fig_buf_free(&b);
    }
    closedir(d);
    return rc;
}

static int backup_db(const char *from, const char *to, fig_err_t *err)
{
    sqlite3 *src = NULL, *dst = NULL;
    int rc = -1;
    if (sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_open_v2(to, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        fig_err_set(err, FIG_E_DB, "cannot open %s for an attempt's copy", from);
        goto out;
    }
    sqlite3_busy_timeout(src, 5000);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL) {
        fig_err_set(err, FIG_E_DB, "copying %s: %s", from, sqlite3_errmsg(dst));
        goto out;
    }
    int step = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (step != SQLITE_DONE) {
        fig_err_set(err, FIG_E_DB, "copying %s: %s", from, sqlite3_errstr(step));
        goto out;
    }
    rc = 0;
out:
    sqlite3_close_v2(src);
    sqlite3_close_v2(dst);
    return rc;
}

static void attempts_prepare_run(worker_job_t *job, worker_thread_t *wt)
{
    (void)wt;
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    fig_buf_t root = FIG_BUF_INIT;
    fig_buf_appendf(&root, "%s/attempts", ix->env->var_dir);
    if (mkdir(root.data, 0700) != 0 && errno != EEXIST) {
        fig_err_set(&ix->job_err, FIG_E_IO, "%s: %s", root.data, strerror(errno));
        fig_buf_free(&root);
        return;
    }
    fig_buf_free(&root);
    for (int i = 0; i < ix->attempts->n; i++) {
        attempt_t *a = ix->attempts->children[i]->attempt;
        if (backup_db(ix->rt->app->db_path, a->db_path, &ix->job_err) != 0)
            return;
        if ((ix->upload_dir != NULL ? copy_dir_files(ix->upload_dir, a->dir) : mkdir(a->dir, 0700)) != 0) {
            fig_err_set(&ix->job_err, FIG_E_IO, "%s: cannot copy the session's files", a->dir);
            return;
        }
    }
}

static void attempts_fail_all(interaction_t *parent, int status, const char *outcome, const char *heading,
                              const char *message);

static void attempts_prepare_done(worker_job_t *job)
{
    interaction_t *ix = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    if (ix->req != NULL) {
        if (ix->job_err.code != FIG_OK)
            attempts_fail_all(ix, 500, "attempts", "figment could not prepare the attempts", ix->job_err.msg);
        else
            for (int i = 0; i < ix->attempts->n; i++)
                agent_ask_model(ix->attempts->children[i]);
    }
    interaction_unref(ix);
}

void attempt_cancel(interaction_t *child)
{
    if (child->req == NULL)
        return;
    child->req = NULL;
    if (child->llm != NULL) {
        llm_route_cancel(child->llm);
        child->llm = NULL;
    }
    if (child->tool_handle != NULL) {
        child->tool_async->cancel(child->tool_handle);
        child->tool_handle = NULL;
        child->tool_async = NULL;
        interaction_unref(child);
    }
}

/* What every attempt cost, into the parent's record. */
static void attempts_sum(interaction_t *parent)
{
    attempt_set_t *set = parent->attempts;
    interaction_record_t *r = &parent->rec;
    for (int i = 0; i < set->n; i++) {
        const interaction_record_t *c = &set->children[i]->rec;
        r->llm_calls += c->llm_calls;
        r->llm_ms += c->llm_ms;
        r->tool_calls += c->tool_calls;
        r->tool_ms += c->tool_ms;
        r->usage.prompt_tokens += c->usage.prompt_tokens;
        r->usage.cached_tokens += c->usage.cached_tokens;
        r->usage.cache_write_tokens += c->usage.cache_write_tokens;
        r->usage.completion_tokens += c->usage.completion_tokens;
        r->cost_usd += c->cost_usd;
        r->attempts += c->attempts;
        r->retries += c->retries;
        r->fallbacks += c->fallbacks;
        r->hedges += c->hedges;
        if (r->first_ttft_ms == 0 && c->llm_calls > 0) {
            r->first_ttft_ms = c->first_ttft_ms;
            r->connect_ms = c->connect_ms;
        }
        if (r->model[0] == '\0' || i == set->winner)
            memcpy(r->model, c->model, sizeof(r->model));
    }
    size_t used = strlen(r->route);
    for (int i = 0; i < set->n && used + 64 < sizeof(r->route); i++) {
        const attempt_t *a = set->children[i]->attempt;
        snprintf(r->route + used, sizeof(r->route) - used, "%sattempt %d: %s", used ? " | " : "", i + 1,
                 a->state == 3 ? (i == set->winner ? "won" : "passed") : a->state == 2 ? "failed" : "cancelled");
        used = strlen(r->route);
    }
}

static void attempts_fail_all(interaction_t *parent, int status, const char *outcome, const char *heading,
                              const char *message)
{
    attempt_set_t *set = parent->attempts;
    set->done = 1;
    for (int i = 0; i < set->n; i++)
        attempt_cancel(set->children[i]);
    attempts_sum(parent);
    agent_fail(parent, status, outcome, heading, message);
}

static void attempts_check_done(interaction_t *parent)
{
    attempt_set_t *set = parent->attempts;
    if (set->done || set->winner >= 0)
        return;
    for (int i = 0; i < set->n; i++)
        if (set->children[i]->attempt->state != 2)
            return; /* still running or verifying */
    fig_buf_t why = FIG_BUF_INIT;
    for (int i = 0; i < set->n; i++) {
        const attempt_t *a = set->children[i]->attempt;
        fig_buf_appendf(&why, "%sattempt %d: %s", i ? "; " : "", i + 1, a->why ? a->why : "failed");
    }
    fig_buf_t msg = FIG_BUF_INIT;
    fig_buf_appendf(&msg, "None of the %d attempts passed this app's check, so nothing was changed (%s).", set->n,
                    why.data ? why.data : "");
    attempts_fail_all(parent, 502, "attempts_failed", "The app could not complete this action", msg.data);
    fig_buf_free(&msg);
    fig_buf_free(&why);
}

void attempt_failed(interaction_t *child, const char *why)
{
    attempt_t *a = child->attempt;
    if (a->state >= 2 || child->req == NULL)
        return;
    a->state = 2;
    free(a->why);
    a->why = fig_strdup(why ? why : "failed");
    attempt_cancel(child);
    attempts_check_done(a->parent);
}

/* verify.python: the check runs in the sandbox with the attempt's files; exit 0 passes. */
static void attempt_verify_python(interaction_t *child)
{
    attempt_t *a = child->attempt;
    const char *code = a->action->verify_python;
    /* the attempt's files (the session's uploads and its out/ results) */
    const char *paths[64];
    char *owned[64];
    size_t n = 0;
    DIR *d = opendir(a->dir);
    struct dirent *de;
    while (d != NULL && n < 64 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || !sandbox_name_ok(de->d_name, strlen(de->d_name)))
            continue;
        fig_buf_t p = FIG_BUF_INIT;
        fig_buf_appendf(&p, "%s/%s", a->dir, de->d_name);
        struct stat st;
        if (lstat(p.data, &st) == 0 && S_ISREG(st.st_mode)) {
            owned[n] = fig_buf_steal(&p);
            paths[n] = owned[n];
            n++;
        } else {
            fig_buf_free(&p);
        }
    }
    if (d != NULL)
        closedir(d);
    sandbox_limits_t lim;
    sandbox_limits_init(&lim);
    sandbox_limits_from_app(&lim, &a->app.run_code);
    sandbox_result_t res;
    fig_err_t err;
    fig_err_clear(&err);
    if (sandbox_run_python(&lim, code, paths, n, &res, &err) != 0) {
        fig_err_set(&child->job_err, FIG_E_CONFIG, "the check could not run: %s", err.msg);
    } else {
        a->verify_ok = res.exited && res.exit_code == 0 && !res.timed_out;
        if (!a->verify_ok)
            fig_err_set(&child->job_err, FIG_E_INVALID, "the check failed (exit %d%s)", res.exit_code,
                        res.timed_out ? ", timed out" : "");
    }
    sandbox_result_free(&res);
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
}

/* The verifier, on a worker: an SQL assertion on the attempt's database, or a Python
 * check in the sandbox with the attempt's files. */
static void attempt_verify_run(worker_job_t *job, worker_thread_t *wt)
{
    (void)wt;
    interaction_t *child = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    attempt_t *a = child->attempt;
    const app_action_t *act = a->action;
    a->verify_ok = 0;
    if (act->verify_sql != NULL) {
        sqlite3 *db = NULL;
        sqlite3_stmt *q = NULL;
        if (sqlite3_open_v2(a->db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, act->verify_sql, -1, &q, NULL) != SQLITE_OK) {
            fig_err_set(&child->job_err, FIG_E_DB, "the check could not run: %s", sqlite3_errmsg(db));
        } else {
            int rc = sqlite3_step(q);
            if (rc == SQLITE_ROW) {
                int t = sqlite3_column_type(q, 0);
                const unsigned char *txt = sqlite3_column_text(q, 0);
                a->verify_ok = t == SQLITE_INTEGER || t == SQLITE_FLOAT ? sqlite3_column_double(q, 0) != 0
                               : t == SQLITE_TEXT ? txt != NULL && txt[0] != '\0' && strcmp((const char *)txt, "0") != 0
                                                 : 0;
                if (!a->verify_ok)
                    fig_err_set(&child->job_err, FIG_E_INVALID, "the check answered false");
            } else {
                fig_err_set(&child->job_err, FIG_E_INVALID, "the check returned no row%s%s",
                            rc == SQLITE_DONE ? "" : ": ", rc == SQLITE_DONE ? "" : sqlite3_errmsg(db));
            }
        }
        sqlite3_finalize(q);
        sqlite3_close_v2(db);
    } else if (act->verify_python != NULL) {
        attempt_verify_python(child);
    }
}

static void attempt_won(interaction_t *parent, interaction_t *child);

static void attempt_verify_done(worker_job_t *job)
{
    interaction_t *child = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    attempt_t *a = child->attempt;
    if (child->req != NULL) {
        if (a->verify_ok) {
            a->state = 3;
            if (a->parent->attempts->winner < 0 && !a->parent->attempts->done)
                attempt_won(a->parent, child);
        } else {
            a->state = 1; /* attempt_failed acts on running or verifying attempts */
            attempt_failed(child, child->job_err.msg[0] ? child->job_err.msg : "the check failed");
        }
    }
    interaction_unref(child);
}

/* An attempt's model gave its final page: check it. */
void attempt_answered(interaction_t *child)
{
    attempt_t *a = child->attempt;
    a->state = 1;
    worker_pool_t *pool = a->action->verify_python != NULL && child->env->sandbox != NULL
                              ? child->env->sandbox
                              : child->env->workers;
    agent_submit(child, pool, attempt_verify_run, attempt_verify_done);
}

/* The winner's writes onto the real database, in one transaction, and its files back. */
static void attempt_apply_run(worker_job_t *job, worker_thread_t *wt)
{
    (void)wt;
    interaction_t *parent = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    attempt_set_t *set = parent->attempts;
    attempt_t *a = set->children[set->winner]->attempt;
    app_t *app = (app_t *)parent->rt->app; /* data_version is the one mutable field */
    if (a->write_log.len > 0) {
        sqlite3 *db = NULL;
        if (sqlite3_open_v2(app->db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
            fig_err_set(&parent->job_err, FIG_E_DB, "%s: %s", app->db_path, sqlite3_errmsg(db));
            sqlite3_close_v2(db);
            return;
        }
        sqlite3_busy_timeout(db, 5000);
        char *msg = NULL;
        int ok = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) == SQLITE_OK;
        for (size_t off = 0; ok && off < a->write_log.len;) {
            const char *stmt = a->write_log.data + off;
            size_t n = strlen(stmt);
            ok = sqlite3_exec(db, stmt, NULL, NULL, &msg) == SQLITE_OK;
            off += n + 1;
        }
        sqlite3_int64 version = 0;
        if (ok) {
            sqlite3_stmt *q = NULL;
            ok = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK &&
                 sqlite3_step(q) == SQLITE_ROW;
            if (ok)
                version = sqlite3_column_int64(q, 0) + 1;
            sqlite3_finalize(q);
        }
        if (ok) {
            char bump[64];
            snprintf(bump, sizeof(bump), "PRAGMA user_version = %lld", (long long)version);
            ok = sqlite3_exec(db, bump, NULL, NULL, &msg) == SQLITE_OK &&
                 sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) == SQLITE_OK;
        }
        if (!ok) {
            fig_err_set(&parent->job_err, FIG_E_DB, "the winning attempt's changes could not be applied: %s",
                        msg ? msg : sqlite3_errmsg(db));
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        } else {
            unsigned long long v = (unsigned long long)version;
            unsigned long long cur = app->data_version;
            while (cur < v && !atomic_compare_exchange_weak(&app->data_version, &cur, v))
                ;
        }
        sqlite3_free(msg);
        sqlite3_close_v2(db);
        if (!ok)
            return;
    }
    if (parent->upload_dir != NULL && copy_dir_files(a->dir, parent->upload_dir) != 0)
        fig_err_set(&parent->job_err, FIG_E_IO, "the winning attempt's files could not be kept");
}

static void attempt_apply_done(worker_job_t *job)
{
    interaction_t *parent = H2O_STRUCT_FROM_MEMBER(interaction_t, job, job);
    attempt_set_t *set = parent->attempts;
    if (parent->req != NULL) {
        if (parent->job_err.code != FIG_OK) {
            attempts_fail_all(parent, 500, "attempts", "figment could not keep the result", parent->job_err.msg);
        } else {
            interaction_t *w = set->children[set->winner];
            set->done = 1;
            attempts_sum(parent);
            llm_result_free(&parent->result);
            llm_result_init(&parent->result);
            fig_buf_append(&parent->result.content, w->result.content.data ? w->result.content.data : "",
                           w->result.content.len);
            json_decref(parent->messages);
            parent->messages = json_incref(w->messages);
            json_decref(parent->tool_log);
            parent->tool_log = json_incref(w->tool_log);
            json_decref(parent->session.state);
            parent->session.state = json_deep_copy(w->session.state);
            agent_save_and_respond(parent);
        }
    }
    interaction_unref(parent);
}

static void attempt_won(interaction_t *parent, interaction_t *child)
{
    attempt_set_t *set = parent->attempts;
    set->winner = child->attempt->index;
    for (int i = 0; i < set->n; i++)
        if (i != set->winner)
            attempt_cancel(set->children[i]);
    agent_submit(parent, parent->env->workers, attempt_apply_run, attempt_apply_done);
}

void attempts_start(interaction_t *ix, const app_action_t *action)
{
    attempt_set_t *set = fig_calloc(1, sizeof(*set));
    set->action = action;
    set->n = action->attempts;
    set->winner = -1;
    set->children = fig_calloc((size_t)set->n, sizeof(*set->children));
    ix->attempts = set;
    for (int i = 0; i < set->n; i++) {
        interaction_t *c = interaction_new(ix->env, ix->rt, ix->req);
        c->counted_in_flight = 0; /* the parent is the one in flight */
        metrics_in_flight_add(-1);
        ix->env->in_flight--;
        attempt_t *a = fig_calloc(1, sizeof(*a));
        a->parent = ix;
        a->action = action;
        a->index = i;
        fig_buf_t p = FIG_BUF_INIT;
        fig_buf_appendf(&p, "%s/attempts/%s-%d", ix->env->var_dir, ix->trace_id, i + 1);
        a->dir = fig_strdup(p.data);
        fig_buf_append_str(&p, ".db");
        a->db_path = fig_buf_steal(&p);
        memcpy(&a->app, ix->rt->app, sizeof(a->app));
        a->app.db_path = a->db_path;
        c->attempt = a;
        c->method = fig_strdup(ix->method);
        c->path = fig_strdup(ix->path);
        c->url = fig_strdup(ix->url);
        c->query = json_incref(ix->query);
        c->form = json_incref(ix->form);
        c->csrf_token = fig_strdup(ix->csrf_token);
        memcpy(c->session.id, ix->session.id, sizeof(c->session.id));
        c->session.state = json_deep_copy(ix->session.state);
        c->session.history = json_incref(ix->session.history);
        c->session.exists = ix->session.exists;
        c->session.seq = ix->session.seq;
        c->state_before = json_incref(ix->state_before);
        c->uploads = json_incref(ix->uploads);
        c->upload_dir = fig_strdup(a->dir);
        c->chain = ix->chain;
        c->rec.route_rule = ix->rec.route_rule;
        c->rec.start_ns = ix->rec.start_ns; /* the same deadline */
        c->messages = json_deep_copy(ix->messages);
        set->children[i] = c;
    }
    agent_submit(ix, ix->env->workers, attempts_prepare_run, attempts_prepare_done);
}

void agent_attempts_free(interaction_t *ix)
{
    attempt_set_t *set = ix->attempts;
    if (set == NULL)
        return;
    for (int i = 0; i < set->n; i++) {
        interaction_t *c = set->children[i];
        attempt_cancel(c);
        attempt_t *a = c->attempt;
        fig_err_t err;
        fig_err_clear(&err);
        uploads_delete(a->dir, &err);
        static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
        for (size_t k = 0; k < sizeof(suffixes) / sizeof(suffixes[0]); k++) {
            fig_buf_t p = FIG_BUF_INIT;
            fig_buf_appendf(&p, "%s%s", a->db_path, suffixes[k]);
            unlink(p.data);
            fig_buf_free(&p);
        }
        a->parent = NULL;
        interaction_unref(c);
    }
    free(set->children);
    free(set);
    ix->attempts = NULL;
}

void agent_attempt_free(interaction_t *ix)
{
    attempt_t *a = ix->attempt;
    if (a == NULL)
        return;
    free(a->db_path);
    free(a->dir);
    free(a->why);
    fig_buf_free(&a->write_log);
    free(a);
    ix->attempt = NULL;
}

