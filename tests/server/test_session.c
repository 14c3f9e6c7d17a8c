/*
 * test_session.c — the key file (creation, mode, reuse, refusal of bad files),
 * cookie signing and every forgery variant we can think of, CSRF tokens, and the
 * SQLite store: round trip, history order and cap, restart, corrupt rows,
 * per-app separation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sqlite3.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "session.h"

static char tmpdir[64];

static int setup_dir(void **s)
{
    (void)s;
    strcpy(tmpdir, "/tmp/figment-session-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **s)
{
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *path_in(const char *name)
{
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b, "%s/%s", tmpdir, name);
    return fig_buf_steal(&b);
}

/* ---- key ---- */

static void test_key_create_and_reload(void **s)
{
    (void)s;
    char *var = path_in("var/nested");
    uint8_t k1[SESSION_KEY_LEN], k2[SESSION_KEY_LEN];
    fig_err_t err = {0};
    assert_int_equal(session_key_load(var, k1, &err), 0); /* creates var/nested too */
    char *kp = path_in("var/nested/secret.key");
    struct stat st;
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, SESSION_KEY_LEN);
    assert_int_equal(session_key_load(var, k2, &err), 0);
    assert_memory_equal(k1, k2, SESSION_KEY_LEN);
    /* No temporary file is left behind. */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", var);
    assert_int_equal(system(cmd), 0);

    /* Group-readable key: refused, not silently used. */
    chmod(kp, 0640);
    assert_int_equal(session_key_load(var, k2, &err), -1);
    assert_non_null(strstr(err.msg, "chmod 600"));
    chmod(kp, 0600);

    /* Wrong size: refused, not regenerated (that would log everybody out). */
    FILE *f = fopen(kp, "ab");
    fputc('x', f);
    fclose(f);
    assert_int_equal(session_key_load(var, k2, &err), -1);
    assert_non_null(strstr(err.msg, "32 bytes"));
    free(kp);
    free(var);
}

static void test_key_symlink_refused(void **s)
{
    (void)s;
    char *var = path_in("symvar");
    mkdir(var, 0700);
    char *kp = path_in("symvar/secret.key");
    assert_int_equal(symlink("/etc/passwd", kp), 0);
    uint8_t k[SESSION_KEY_LEN];
    fig_err_t err = {0};
    assert_int_equal(session_key_load(var, k, &err), -1);
    free(kp);
    free(var);
}

/* ---- ids and cookies ---- */

static const uint8_t key_a[SESSION_KEY_LEN] = "0123456789abcdef0123456789abcdef";
static const uint8_t key_b[SESSION_KEY_LEN] = "0123456789abcdef0123456789abcdeF";

static void test_new_id(void **s)
{
    (void)s;
    char a[SESSION_ID_LEN + 1], b[SESSION_ID_LEN + 1];
    session_new_id(a);
    session_new_id(b);
    assert_int_equal(strlen(a), SESSION_ID_LEN);
    assert_string_not_equal(a, b);
    for (int i = 0; i < SESSION_ID_LEN; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
}

static int verify(const uint8_t *key, const char *v, char *out)
{
    return session_cookie_verify(key, v, strlen(v), out);
}

static void test_cookie_roundtrip(void **s)
{
    (void)s;
    char id[SESSION_ID_LEN + 1], out[SESSION_ID_LEN + 1];
    session_new_id(id);
    char *c = session_cookie_sign(key_a, id);
    assert_int_equal(strlen(c), SESSION_ID_LEN + 1 + 43);
    assert_int_equal(c[SESSION_ID_LEN], '.');
    assert_memory_equal(c, id, SESSION_ID_LEN);
    memset(out, 0, sizeof(out));
    assert_int_equal(verify(key_a, c, out), 0);
    assert_string_equal(out, id);
    /* Deterministic for a key and id; different keys give different MACs. */
    char *c2 = session_cookie_sign(key_a, id);
    assert_string_equal(c, c2);
    char *c3 = session_cookie_sign(key_b, id);
    assert_string_not_equal(c, c3);
    free(c);
    free(c2);
    free(c3);
}

static void test_cookie_forgeries(void **s)
{
    (void)s;
    const char *id = "0123456789abcdef0123456789abcdef";
    char out[SESSION_ID_LEN + 1] = "untouched";
    char *good = session_cookie_sign(key_a, id);
    size_t n = strlen(good);
    char v[200];

    /* Signed with another key. */
    char *other = session_cookie_sign(key_b, id);
    assert_int_equal(verify(key_a, other, out), -1);
    free(other);

    /* Every single-character change anywhere is rejected. */
    for (size_t i = 0; i < n; i++) {
        strcpy(v, good);
        v[i] = v[i] == 'a' ? 'b' : 'a';
        if (i == SESSION_ID_LEN)
            v[i] = 'a'; /* replaces the dot */
        assert_int_equal(verify(key_a, v, out), -1);
    }
    /* Another id with the first id's MAC. */
    strcpy(v, good);
    v[0] = '1';
    assert_int_equal(verify(key_a, v, out), -1);
    /* Wrong lengths: truncated, extended, empty. */
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(session_cookie_verify(key_a, good, cut, out), -1);
    snprintf(v, sizeof(v), "%sA", good);
    assert_int_equal(verify(key_a, v, out), -1);
    snprintf(v, sizeof(v), "%s.", good);
    assert_int_equal(verify(key_a, v, out), -1);
    /* Extra dots, keeping the length. */
    strcpy(v, good);
    v[SESSION_ID_LEN + 5] = '.';
    assert_int_equal(verify(key_a, v, out), -1);
    /* Upper-case hex id (a different string than the one signed). */
    char *upper = session_cookie_sign(key_a, "0123456789ABCDEF0123456789ABCDEF");
    assert_int_equal(verify(key_a, upper, out), -1);
    free(upper);
    /* Non-hex id correctly signed: shape check refuses it. */
    char *nonhex = session_cookie_sign(key_a, "0123456789abcdef0123456789abcdeg");
    assert_int_equal(verify(key_a, nonhex, out), -1);
    free(nonhex);
    /* Standard base64 alphabet / padding characters in the MAC. */
    strcpy(v, good);
    v[n - 1] = '=';
    assert_int_equal(verify(key_a, v, out), -1);
    strcpy(v, good);
    v[n - 2] = '+';
    assert_int_equal(verify(key_a, v, out), -1);
    /* An embedded NUL with the right length. */
    memcpy(v, good, n + 1);
    v[10] = '\0';
    assert_int_equal(session_cookie_verify(key_a, v, n, out), -1);
    /* Only the id with a dot, and a swapped order. */
    snprintf(v, sizeof(v), "%s.", id);
    assert_int_equal(verify(key_a, v, out), -1);
    snprintf(v, sizeof(v), "%s.%.*s", good + SESSION_ID_LEN + 1, SESSION_ID_LEN, good);
    assert_int_equal(verify(key_a, v, out), -1);
    assert_int_equal(session_cookie_verify(key_a, NULL, 0, out), -1);
    /* None of the failures wrote to out. */
    assert_string_equal(out, "untouched");
    free(good);
}

static void test_csrf(void **s)
{
    (void)s;
    const char *id = "0123456789abcdef0123456789abcdef";
    const char *id2 = "0123456789abcdef0123456789abcdee";
    char *t = session_csrf_token(key_a, id);
    assert_int_equal(strlen(t), 43);
    assert_int_equal(session_csrf_check(key_a, id, t, strlen(t)), 1);
    assert_int_equal(session_csrf_check(key_a, id2, t, strlen(t)), 0);  /* bound to the session */
    assert_int_equal(session_csrf_check(key_b, id, t, strlen(t)), 0);  /* bound to the key */
    assert_int_equal(session_csrf_check(key_a, id, t, strlen(t) - 1), 0);
    assert_int_equal(session_csrf_check(key_a, id, "", 0), 0);
    assert_int_equal(session_csrf_check(key_a, id, NULL, 0), 0);
    char bad[64];
    strcpy(bad, t);
    bad[0] ^= 1;
    assert_int_equal(session_csrf_check(key_a, id, bad, strlen(bad)), 0);
    /* The CSRF token is not the cookie MAC (domain separation). */
    char *cookie = session_cookie_sign(key_a, id);
    assert_string_not_equal(cookie + SESSION_ID_LEN + 1, t);
    assert_int_equal(session_csrf_check(key_a, id, cookie + SESSION_ID_LEN + 1, 43), 0);
    free(cookie);
    free(t);
}

/* ---- store ---- */

static session_store_t *open_store(const char *name)
{
    char *p = path_in(name);
    fig_err_t err = {0};
    session_store_t *st = session_store_open(p, &err);
    if (st == NULL)
        fail_msg("open %s: %s", p, err.msg);
    free(p);
    return st;
}

static json_t *parse(const char *s)
{
    return json_loads(s, 0, NULL);
}

static void test_store_roundtrip_and_restart(void **s)
{
    (void)s;
    session_store_t *st = open_store("store1.db");
    const char *id = "00112233445566778899aabbccddeeff";
    fig_err_t err = {0};
    session_t sess;

    assert_int_equal(session_load(st, id, "mail", 5, &sess, &err), 0);
    assert_int_equal(sess.exists, 0);
    assert_int_equal(sess.seq, 0);
    assert_string_equal(sess.id, id);
    assert_true(json_is_object(sess.state));
    assert_int_equal(json_object_size(sess.state), 0);
    assert_int_equal(json_array_size(sess.history), 0);

    json_decref(sess.state);
    sess.state = parse("{\"user\":\"alice\",\"a\":[1,2]}");
    assert_int_equal(session_save(st, &sess, "mail", "GET", "/mail/", "Inbox", &err), 0);
    session_clear(&sess);
    assert_null(sess.state);

    assert_int_equal(session_load(st, id, "mail", 5, &sess, &err), 0);
    assert_int_equal(sess.exists, 1);
    assert_int_equal(sess.seq, 1);
    json_t *want = parse("{\"a\":[1,2],\"user\":\"alice\"}");
    assert_true(json_equal(sess.state, want));
    json_decref(want);
    assert_int_equal(json_array_size(sess.history), 1);
    json_t *h0 = json_array_get(sess.history, 0);
    assert_string_equal(json_string_value(json_object_get(h0, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(h0, "path")), "/mail/");
    assert_string_equal(json_string_value(json_object_get(h0, "title")), "Inbox");

    /* Seven more interactions, the last with no title. */
    for (int i = 2; i <= 8; i++) {
        char path[32], title[32];
        snprintf(path, sizeof(path), "/mail/m/%d", i);
        snprintf(title, sizeof(title), "Message %d", i);
        json_object_set_new(sess.state, "n", json_integer(i));
        assert_int_equal(session_save(st, &sess, "mail", i % 2 ? "POST" : "GET", path, i == 8 ? NULL : title, &err),
                         0);
    }
    session_clear(&sess);
    session_store_close(st);

    /* A restart: a new connection sees everything. */
    st = open_store("store1.db");
    assert_int_equal(session_load(st, id, "mail", 5, &sess, &err), 0);
    assert_int_equal(sess.seq, 8);
    assert_int_equal(json_integer_value(json_object_get(sess.state, "n")), 8);
    assert_int_equal(json_array_size(sess.history), 5); /* capped, oldest first */
    for (int i = 0; i < 5; i++) {
        json_t *h = json_array_get(sess.history, (size_t)i);
        char path[32];
        snprintf(path, sizeof(path), "/mail/m/%d", i + 4);
        assert_string_equal(json_string_value(json_object_get(h, "path")), path);
        assert_string_equal(json_string_value(json_object_get(h, "method")), (i + 4) % 2 ? "POST" : "GET");
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(sess.history, 4), "title")), "");
    session_clear(&sess);

    /* history_items 0: no history; larger than the log: all of it. */
    assert_int_equal(session_load(st, id, "mail", 0, &sess, &err), 0);
    assert_int_equal(json_array_size(sess.history), 0);
    session_clear(&sess);
    assert_int_equal(session_load(st, id, "mail", 50, &sess, &err), 0);
    assert_int_equal(json_array_size(sess.history), 8);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sess.history, 0), "path")), "/mail/");
    session_clear(&sess);

    /* State is per app: the same id in another app is fresh. */
    assert_int_equal(session_load(st, id, "todo", 5, &sess, &err), 0);
    assert_int_equal(sess.exists, 0);
    assert_int_equal(json_object_size(sess.state), 0);
    session_clear(&sess);
    session_store_close(st);
}

static void test_store_schema_and_format(void **s)
{
    (void)s;
    session_store_t *st = open_store("store2.db");
    const char *id = "ffeeddccbbaa99887766554433221100";
    fig_err_t err = {0};
    session_t sess;
    assert_int_equal(session_load(st, id, "mail", 5, &sess, &err), 0);
    json_decref(sess.state);
    sess.state = parse("{\"z\":1,\"a\":{\"y\":2,\"b\":3}}");
    assert_int_equal(session_save(st, &sess, "mail", "POST", "/mail/login", "Inbox", &err), 0);
    session_clear(&sess);
    session_store_close(st);

    char *p = path_in("store2.db");
    sqlite3 *db;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_stmt *q;
    /* Compact JSON with sorted keys, times in unix seconds. */
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT state, seq, created_at, updated_at FROM sessions", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "{\"a\":{\"b\":3,\"y\":2},\"z\":1}");
    assert_int_equal(sqlite3_column_int(q, 1), 1);
    long long now = (long long)time(NULL);
    assert_true(llabs(sqlite3_column_int64(q, 2) - now) < 60);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 4);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT seq, method, path, title FROM interactions", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 1);
    assert_string_equal((const char *)sqlite3_column_text(q, 2), "/mail/login");
    sqlite3_finalize(q);

    /* A store from a newer figment is refused. */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 7", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    st = session_store_open(p, &err);
    assert_null(st);
    assert_non_null(strstr(err.msg, "newer"));
    free(p);
}

static void test_store_corrupt_state(void **s)
{
    (void)s;
    session_store_t *st = open_store("store3.db");
    fig_err_t err = {0};
    const char *ids[] = {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                         "cccccccccccccccccccccccccccccccc"};
    for (int i = 0; i < 3; i++) {
        session_t sess;
        assert_int_equal(session_load(st, ids[i], "mail", 5, &sess, &err), 0);
        json_object_set_new(sess.state, "k", json_string("v"));
        assert_int_equal(session_save(st, &sess, "mail", "GET", "/mail/", "Inbox", &err), 0);
        session_clear(&sess);
    }
    session_store_close(st);

    char *p = path_in("store3.db");
    sqlite3 *db;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE sessions SET state = '{not json' WHERE id LIKE 'a%';"
                                  "UPDATE sessions SET state = '[1,2,3]' WHERE id LIKE 'b%';"
                                  "UPDATE sessions SET state = '' WHERE id LIKE 'c%';",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    free(p);

    st = open_store("store3.db");
    for (int i = 0; i < 3; i++) {
        session_t sess;
        assert_int_equal(session_load(st, ids[i], "mail", 5, &sess, &err), 0);
        assert_int_equal(sess.exists, 1);
        assert_true(json_is_object(sess.state));
        assert_int_equal(json_object_size(sess.state), 0);
        assert_int_equal(json_array_size(sess.history), 1); /* the rest of the session survives */
        /* Saving over a corrupt row repairs it. */
        json_object_set_new(sess.state, "fixed", json_true());
        assert_int_equal(session_save(st, &sess, "mail", "GET", "/mail/x", "X", &err), 0);
        session_clear(&sess);
        assert_int_equal(session_load(st, ids[i], "mail", 5, &sess, &err), 0);
        assert_true(json_is_true(json_object_get(sess.state, "fixed")));
        assert_int_equal(sess.seq, 2);
        session_clear(&sess);
    }
    session_store_close(st);
}

static void test_store_bad_arguments(void **s)
{
    (void)s;
    session_store_t *st = open_store("store4.db");
    fig_err_t err = {0};
    session_t sess;
    assert_int_equal(session_load(st, "short", "mail", 5, &sess, &err), -1);
    assert_int_equal(session_load(st, "0123456789ABCDEF0123456789ABCDEF", "mail", 5, &sess, &err), -1);
    assert_int_equal(session_load(st, "00112233445566778899aabbccddeeff", "mail", 5, &sess, &err), 0);
    json_decref(sess.state);
    sess.state = json_array();
    assert_int_equal(session_save(st, &sess, "mail", "GET", "/", "t", &err), -1);
    assert_int_equal(err.code, FIG_E_INVALID);
    session_clear(&sess);
    session_store_close(st);

    /* A store path in a directory that does not exist. */
    char *p = path_in("no/such/dir/x.db");
    assert_null(session_store_open(p, &err));
    assert_int_equal(err.code, FIG_E_DB);
    free(p);
    session_clear(NULL);
    session_store_close(NULL);
}

static void test_store_two_connections(void **s)
{
    (void)s;
    /* Two workers (two connections) appending to one session never reuse a seq. */
    session_store_t *a = open_store("store5.db"), *b = open_store("store5.db");
    const char *id = "12121212121212121212121212121212";
    fig_err_t err = {0};
    session_t sa, sb;
    assert_int_equal(session_load(a, id, "mail", 5, &sa, &err), 0);
    assert_int_equal(session_load(b, id, "mail", 5, &sb, &err), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(session_save(a, &sa, "mail", "GET", "/a", "A", &err), 0);
        assert_int_equal(session_save(b, &sb, "mail", "GET", "/b", "B", &err), 0);
    }
    session_clear(&sa);
    session_clear(&sb);
    assert_int_equal(session_load(a, id, "mail", 50, &sa, &err), 0);
    assert_int_equal(sa.seq, 20);
    assert_int_equal(json_array_size(sa.history), 20);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sa.history, 19), "path")), "/b");
    session_clear(&sa);
    session_store_close(a);
    session_store_close(b);
}

static void sum_app(void *ctx, const char *app, double usd)
{
    char *out = ctx;
    char line[64];
    snprintf(line, sizeof(line), "%s=%.4f;", app, usd);
    strcat(out, line);
}

/* Usage rows add up per session and per app over a time window; the last good page of
 * a URL is replaced, not accumulated, and survives reopening the store. */
static void test_store_usage_and_pages(void **s)
{
    (void)s;
    session_store_t *st = open_store("usage.db");
    fig_err_t err = {0};
    const char *a = "0123456789abcdef0123456789abcdef", *b = "fedcba9876543210fedcba9876543210";
    session_usage_t u = {a, "mail", "openai/gpt", "ok", 100, 40, 0, 20, 0.25, "openai/gpt: ok", 1000};
    assert_int_equal(session_record_usage(st, &u, &err), 0);
    u.cost_usd = 0.5;
    u.app = "notes";
    u.created_at = 5000;
    assert_int_equal(session_record_usage(st, &u, &err), 0);
    u.session_id = b;
    u.cost_usd = 1.0;
    u.outcome = "upstream";
    assert_int_equal(session_record_usage(st, &u, &err), 0);
    assert_true(fabs(session_spent_usd(st, a, &err) - 0.75) < 1e-9);
    assert_true(fabs(session_spent_usd(st, b, &err) - 1.0) < 1e-9);
    assert_true(fabs(session_spent_usd(st, "nobody", &err)) < 1e-9);
    char sums[256] = "";
    assert_int_equal(session_spent_since(st, 0, sum_app, sums, &err), 0);
    assert_string_equal(sums, "mail=0.2500;notes=1.5000;");
    sums[0] = '\0';
    assert_int_equal(session_spent_since(st, 2000, sum_app, sums, &err), 0);
    assert_string_equal(sums, "notes=1.5000;");

    char *title = NULL, *html = NULL;
    int64_t at = 0;
    assert_int_equal(session_page_load(st, a, "mail", "/mail/", &title, &html, &at, &err), 0);
    assert_int_equal(session_page_save(st, a, "mail", "/mail/", "Inbox", "<h1>Inbox</h1>", &err), 0);
    assert_int_equal(session_page_save(st, a, "mail", "/mail/", "Inbox 2", "<h1>Inbox 2</h1>", &err), 0);
    session_store_close(st);
    st = open_store("usage.db");
    assert_int_equal(session_page_load(st, a, "mail", "/mail/", &title, &html, &at, &err), 1);
    assert_string_equal(title, "Inbox 2");
    assert_string_equal(html, "<h1>Inbox 2</h1>");
    assert_true(at > 0);
    free(title);
    free(html);
    assert_int_equal(session_page_load(st, b, "mail", "/mail/", &title, &html, &at, &err), 0);
    session_store_close(st);
}

/* session_save_all() writes the state, the interaction, the usage and the page in one
 * transaction: all of it is there afterwards, and none of it when the save is refused. */
static void test_store_save_all_one_commit(void **s)
{
    (void)s;
    session_store_t *st = open_store("saveall.db");
    fig_err_t err = {0};
    session_t sess;
    memset(&sess, 0, sizeof(sess));
    strcpy(sess.id, "0123456789abcdef0123456789abcdef");
    sess.state = json_pack("{s:s}", "user", "alex");
    session_usage_t u = {sess.id, "mail", "openai/gpt", "ok", 10, 0, 0, 5, 0.5, "openai/gpt: ok", 0};
    assert_int_equal(session_save_all(st, &sess, "mail", "GET", "/mail/", "Inbox", &u, "<h1>Inbox</h1>", &err), 0);
    assert_true(fabs(session_spent_usd(st, sess.id, &err) - 0.5) < 1e-9);
    char *title = NULL, *html = NULL;
    int64_t at = 0;
    assert_int_equal(session_page_load(st, sess.id, "mail", "/mail/", &title, &html, &at, &err), 1);
    assert_string_equal(html, "<h1>Inbox</h1>");
    free(title);
    free(html);
    session_t back;
    assert_int_equal(session_load(st, sess.id, "mail", 5, &back, &err), 0);
    assert_string_equal(json_string_value(json_object_get(back.state, "user")), "alex");
    assert_int_equal(json_array_size(back.history), 1);
    session_clear(&back);
    /* a refused save (the state is not an object) leaves no usage row behind */
    json_decref(sess.state);
    sess.state = json_array();
    u.cost_usd = 7;
    assert_int_equal(session_save_all(st, &sess, "mail", "GET", "/mail/x", "X", &u, "<p>x</p>", &err), -1);
    assert_true(fabs(session_spent_usd(st, sess.id, &err) - 0.5) < 1e-9);
    assert_int_equal(session_page_load(st, sess.id, "mail", "/mail/x", &title, &html, &at, &err), 0);
    session_clear(&sess);
    session_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_create_and_reload),
        cmocka_unit_test(test_key_symlink_refused),
        cmocka_unit_test(test_new_id),
        cmocka_unit_test(test_cookie_roundtrip),
        cmocka_unit_test(test_cookie_forgeries),
        cmocka_unit_test(test_csrf),
        cmocka_unit_test(test_store_roundtrip_and_restart),
        cmocka_unit_test(test_store_schema_and_format),
        cmocka_unit_test(test_store_corrupt_state),
        cmocka_unit_test(test_store_bad_arguments),
        cmocka_unit_test(test_store_two_connections),
        cmocka_unit_test(test_store_usage_and_pages),
        cmocka_unit_test(test_store_save_all_one_commit),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
