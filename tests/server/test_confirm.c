/*
 * test_confirm.c — pending confirmations: stored and claimed once, bound to session
 * and app, expiring, surviving a reopened store; the page figment builds (escaped,
 * exact action, CSRF field, both buttons); the confirmation path parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "confirm.h"
#include "session.h"

static char tmpdir[64];
static char dbpath[128];

static int setup(void **s)
{
    (void)s;
    strcpy(tmpdir, "/tmp/figment-confirm-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(dbpath, sizeof(dbpath), "%s/figment.db", tmpdir);
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void make_pending(confirm_pending_t *p, const char *sid, time_t now)
{
    memset(p, 0, sizeof(*p));
    confirm_new_id(p->id);
    snprintf(p->session_id, sizeof(p->session_id), "%s", sid);
    p->app = fig_strdup("mail");
    p->created_at = now;
    p->expires_at = now + 900;
    p->description = fig_strdup("DELETE FROM messages\n\nThis deletes 50 rows from messages.");
    p->tool = fig_strdup("sql");
    p->messages = json_pack("[{s:s, s:s}]", "role", "user", "content", "# Interaction");
    p->calls = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "id", "c1", "name", "sql", "arguments",
                         "{\"query\":\"SELECT 1\"}", "id", "c2", "name", "sql", "arguments",
                         "{\"query\":\"DELETE FROM messages\"}");
    p->tool_index = 1;
    p->round = 2;
    p->origin_url = fig_strdup("/mail/message/42");
}

static void test_claimed_once_with_everything_back(void **s)
{
    (void)s;
    fig_err_t err;
    fig_err_clear(&err);
    session_store_t *st = session_store_open(dbpath, &err);
    assert_non_null(st);
    char sid[SESSION_ID_LEN + 1];
    session_new_id(sid);
    time_t now = time(NULL);
    confirm_pending_t p;
    make_pending(&p, sid, now);
    assert_int_equal(confirm_save(st, &p, &err), 0);
    session_store_close(st);

    /* a reopened store (a restart) still has it */
    st = session_store_open(dbpath, &err);
    assert_non_null(st);
    confirm_pending_t got;
    confirm_claim_t r;
    assert_int_equal(confirm_claim(st, p.id, sid, "mail", now + 10, &got, &r, &err), 0);
    assert_int_equal(r, CONFIRM_CLAIMED);
    assert_string_equal(got.tool, "sql");
    assert_string_equal(got.description, p.description);
    assert_string_equal(got.origin_url, "/mail/message/42");
    assert_int_equal(got.tool_index, 1);
    assert_int_equal(got.round, 2);
    assert_true(json_equal(got.messages, p.messages));
    assert_true(json_equal(got.calls, p.calls));
    confirm_pending_clear(&got);
    /* the second claim finds nothing: a double click runs the action once */
    assert_int_equal(confirm_claim(st, p.id, sid, "mail", now + 11, &got, &r, &err), 0);
    assert_int_equal(r, CONFIRM_NOT_FOUND);
    confirm_pending_clear(&p);
    session_store_close(st);
}

static void test_bound_to_session_and_app_and_expiring(void **s)
{
    (void)s;
    fig_err_t err;
    fig_err_clear(&err);
    session_store_t *st = session_store_open(dbpath, &err);
    assert_non_null(st);
    char sid[SESSION_ID_LEN + 1], other[SESSION_ID_LEN + 1];
    session_new_id(sid);
    session_new_id(other);
    time_t now = time(NULL);
    confirm_pending_t p, got;
    confirm_claim_t r;
    make_pending(&p, sid, now);
    assert_int_equal(confirm_save(st, &p, &err), 0);
    /* another session, another app: not found, and the row stays for its owner */
    assert_int_equal(confirm_claim(st, p.id, other, "mail", now, &got, &r, &err), 0);
    assert_int_equal(r, CONFIRM_NOT_FOUND);
    assert_int_equal(confirm_claim(st, p.id, sid, "notes", now, &got, &r, &err), 0);
    assert_int_equal(r, CONFIRM_NOT_FOUND);
    /* past its expiry: expired, and gone afterwards */
    assert_int_equal(confirm_claim(st, p.id, sid, "mail", now + 901, &got, &r, &err), 0);
    assert_int_equal(r, CONFIRM_EXPIRED);
    assert_int_equal(confirm_claim(st, p.id, sid, "mail", now, &got, &r, &err), 0);
    assert_int_equal(r, CONFIRM_NOT_FOUND);
    confirm_pending_clear(&p);
    session_store_close(st);
}

static void test_page_is_figments_own_and_escaped(void **s)
{
    (void)s;
    fig_buf_t b = FIG_BUF_INIT;
    confirm_page_html(&b, "mail", "sql", "0123456789abcdef0123456789abcdef",
                      "DELETE FROM messages WHERE subject = '<script>alert(1)</script>'", "tok&en", 900);
    assert_non_null(strstr(b.data, "<section class=\"confirm\">"));
    assert_non_null(strstr(b.data, "<pre class=\"confirm-action\">DELETE FROM messages WHERE subject = "));
    assert_non_null(strstr(b.data, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_null(strstr(b.data, "<script>"));
    assert_non_null(strstr(b.data, "action=\"/mail/_confirm/0123456789abcdef0123456789abcdef\""));
    assert_non_null(strstr(b.data, "name=\"_csrf\" value=\"tok&amp;en\""));
    assert_non_null(strstr(b.data, "name=\"decision\" value=\"confirm\""));
    assert_non_null(strstr(b.data, "name=\"decision\" value=\"cancel\""));
    assert_non_null(strstr(b.data, "15 minutes"));
    fig_buf_free(&b);
}

static void test_path_parse(void **s)
{
    (void)s;
    char id[CONFIRM_ID_LEN + 1];
    assert_int_equal(confirm_path_parse("mail", "/mail/_confirm/0123456789abcdef0123456789abcdef", id), 1);
    assert_string_equal(id, "0123456789abcdef0123456789abcdef");
    /* under /mail/_confirm/ without a valid id: refused, never the model's */
    assert_int_equal(confirm_path_parse("mail", "/mail/_confirm/0123456789ABCDEF0123456789abcdef", id), -1);
    assert_int_equal(confirm_path_parse("mail", "/mail/_confirm/0123456789abcdef0123456789abcde", id), -1);
    assert_int_equal(confirm_path_parse("mail", "/mail/_confirm/0123456789abcdef0123456789abcdef0", id), -1);
    assert_int_equal(confirm_path_parse("mail", "/mail/_confirm/", id), -1);
    /* other paths */
    assert_int_equal(confirm_path_parse("mail", "/notes/_confirm/0123456789abcdef0123456789abcdef", id), 0);
    assert_int_equal(confirm_path_parse("mail", "/mailx/_confirm/0123456789abcdef0123456789abcdef", id), 0);
    assert_int_equal(confirm_path_parse("mail", "/mail/confirm/0123456789abcdef0123456789abcdef", id), 0);
}

static void test_new_ids_are_random_hex(void **s)
{
    (void)s;
    char a[CONFIRM_ID_LEN + 1], b[CONFIRM_ID_LEN + 1];
    confirm_new_id(a);
    confirm_new_id(b);
    assert_int_equal(strlen(a), CONFIRM_ID_LEN);
    assert_int_equal(strspn(a, "0123456789abcdef"), CONFIRM_ID_LEN);
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_claimed_once_with_everything_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_to_session_and_app_and_expiring, setup, teardown),
        cmocka_unit_test(test_page_is_figments_own_and_escaped),
        cmocka_unit_test(test_path_parse),
        cmocka_unit_test(test_new_ids_are_random_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
