/*
 * test_sse.c — the SSE parser: line ends (CRLF, LF, CR, CR|LF across chunks),
 * fields, comments, dispatch rules, BOM, bounds, and split-invariance: the same
 * bytes fed whole, byte by byte and in 200 random splits give identical events;
 * data handed over without a copy when an event lies in one chunk, and nothing kept
 * pointing into a chunk after sse_feed returns.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

/* Events are recorded as "type=data;" (data bytes verbatim) so a whole run compares
 * as one string. */
typedef struct {
    fig_buf_t log;
    int count;
    int stop_at; /* return 7 from the stop_at-th event (1-based); 0: never */
} rec_t;

static int rec_event(void *ctx, const char *event, const char *data, size_t len)
{
    rec_t *r = ctx;
    fig_buf_append_str(&r->log, event);
    fig_buf_append(&r->log, "=", 1);
    fig_buf_append(&r->log, data, len);
    fig_buf_append(&r->log, ";", 1);
    r->count++;
    return r->stop_at && r->count == r->stop_at ? 7 : 0;
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* Feeds s in pieces: step 0 = whole, 1 = byte by byte, otherwise random sizes from
 * seed `step`. Returns the recorded log (caller frees) and sse_feed's first non-zero. */
static char *run(const char *s, size_t n, uint32_t step, int *rc_out)
{
    rec_t r = {FIG_BUF_INIT, 0, 0};
    sse_parser_t p;
    sse_init(&p, rec_event, &r);
    int rc = 0;
    uint32_t seed = step;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t k = step == 0 ? n - i : step == 1 ? 1 : 1 + lcg(&seed) % 17;
        if (k > n - i)
            k = n - i;
        rc = sse_feed(&p, s + i, k);
        i += k;
    }
    sse_free(&p);
    if (rc_out)
        *rc_out = rc;
    return fig_buf_steal(&r.log);
}

static void expect(const char *s, const char *want)
{
    for (uint32_t step = 0; step < 202; step++) {
        int rc;
        char *got = run(s, strlen(s), step, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(got, want);
        free(got);
    }
}

static void test_split_invariance(void **state)
{
    (void)state;
    const char *stream = "\xEF\xBB\xBF"
                         ": comment line\r\n"
                         "retry: 1000\r\n"
                         "id: 42\n"
                         "data: first\r\n"
                         "\r\n"
                         "event: delta\r"
                         "data:no-space\r"
                         "data:  two spaces\r"
                         "\r"
                         "unknown: x\n"
                         "data\n"
                         "\n"
                         "event: lonely\n"
                         "\n"
                         "data: {\"a\":\"b: c\"}\r\n"
                         "data: line2\r\n"
                         "\r\n"
                         "data: tail\n";
    expect(stream, "message=first;delta=no-space\n two spaces;message=;message={\"a\":\"b: c\"}\nline2;");
}

static void test_crlf_and_cr(void **state)
{
    (void)state;
    expect("data: a\r\n\r\n", "message=a;");
    expect("data: a\rdata: b\r\r", "message=a\nb;");
    expect("data: a\n\rdata: b\n\n", "message=a;message=b;"); /* LF CR is two line ends */
    expect("data: a\r\r\n", "message=a;");                    /* CR, then CRLF */
}

static void test_cr_at_chunk_boundary(void **state)
{
    (void)state;
    rec_t r = {FIG_BUF_INIT, 0, 0};
    sse_parser_t p;
    sse_init(&p, rec_event, &r);
    assert_int_equal(sse_feed(&p, "data: a\r", 8), 0);
    assert_int_equal(sse_feed(&p, "\ndata: b\r", 9), 0);
    assert_int_equal(sse_feed(&p, "\n", 1), 0);
    assert_int_equal(r.count, 0); /* had the LFs counted as blank lines, "a" would be out */
    assert_int_equal(sse_feed(&p, "\r", 1), 0);
    assert_int_equal(r.count, 1);
    assert_string_equal(r.log.data, "message=a\nb;");
    /* An empty chunk between CR and LF changes nothing. */
    assert_int_equal(sse_feed(&p, "data: c\r", 8), 0);
    assert_int_equal(sse_feed(&p, "", 0), 0);
    assert_int_equal(sse_feed(&p, "\n\n", 2), 0);
    assert_string_equal(r.log.data, "message=a\nb;message=c;");
    sse_free(&p);
    fig_buf_free(&r.log);
}

static void test_comments_and_ignored_fields(void **state)
{
    (void)state;
    expect(": hi\ndata: x\n\n", "message=x;");
    expect(":data: y\n\n", "");
    expect(":\n\n", "");
    expect("id: 5\nretry: abc\nfoo: bar\ndata: q\n\n", "message=q;");
    expect("DATA: upper\n\n", ""); /* field names are case-sensitive */
}

static void test_multiline_and_event_types(void **state)
{
    (void)state;
    expect("data: 1\ndata: 2\ndata: 3\n\n", "message=1\n2\n3;");
    expect("event: foo\ndata: 1\n\ndata: 2\n\n", "foo=1;message=2;");           /* type resets */
    expect("event: a\nevent: b\ndata: x\n\n", "b=x;");                         /* last wins */
    expect("event\ndata: z\n\n", "message=z;");                                 /* empty type */
    expect("data: x\nevent: late\n\n", "late=x;");                               /* any order */
    expect("data: a:b:c\n\n", "message=a:b:c;");                                 /* first colon only */
}

static void test_bom(void **state)
{
    (void)state;
    expect("\xEF\xBB\xBF" "data: x\n\n", "message=x;");
    /* Only at the very start: a second BOM makes the field name unknown. */
    expect("\xEF\xBB\xBF" "data: x\n\n\xEF\xBB\xBF" "data: y\n\n", "message=x;");
    /* A BOM prefix that is not a BOM is content: "\xEF" "data" is an unknown field. */
    expect("\xEF" "data: x\n\ndata: y\n\n", "message=y;");
    expect("\xEF\xBB\n" "data: y\n\n", "message=y;");
}

static void test_empty_data(void **state)
{
    (void)state;
    expect("data:\n\n", "message=;");
    expect("data\n\n", "message=;"); /* field without colon: empty value */
    expect("data:\ndata:\n\n", "message=\n;");
    expect("event: x\n\n", "");       /* no data line: not dispatched */
    expect("\n\n\n", "");
    expect("data: x", "");            /* unterminated trailing event: discarded */
    expect("data: x\n", "");
}

static void test_callback_stop(void **state)
{
    (void)state;
    rec_t r = {FIG_BUF_INIT, 0, 2};
    sse_parser_t p;
    sse_init(&p, rec_event, &r);
    const char *s = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    assert_int_equal(sse_feed(&p, s, strlen(s)), 7);
    assert_int_equal(r.count, 2);
    sse_free(&p);
    fig_buf_free(&r.log);
}

static void test_bounds(void **state)
{
    (void)state;
    size_t max = SSE_MAX_EVENT_BYTES;
    char *big = malloc(max + 16);

    /* "data: " + N bytes: accepted while line + data + 1 <= max. */
    for (int over = 0; over <= 1; over++) {
        size_t n = max - 7 + (size_t)over;
        memcpy(big, "data: ", 6);
        memset(big + 6, 'x', n);
        memcpy(big + 6 + n, "\n\n", 2);
        rec_t r = {FIG_BUF_INIT, 0, 0};
        sse_parser_t p;
        sse_init(&p, rec_event, &r);
        int rc = sse_feed(&p, big, 6 + n + 2);
        if (over) {
            assert_int_equal(rc, -1);
            assert_int_equal(r.count, 0);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(r.count, 1);
            assert_int_equal(r.log.len, strlen("message=;") + n);
        }
        sse_free(&p);
        fig_buf_free(&r.log);
    }

    /* Many small data lines, fed one at a time, hit the same cap. */
    rec_t r = {FIG_BUF_INIT, 0, 0};
    sse_parser_t p;
    sse_init(&p, rec_event, &r);
    memcpy(big, "data: ", 6);
    memset(big + 6, 'y', 1000);
    big[1006] = '\n';
    int rc = 0;
    for (size_t fed = 0; rc == 0 && fed < 2 * max; fed += 1007)
        rc = sse_feed(&p, big, 1007);
    assert_int_equal(rc, -1);
    assert_int_equal(r.count, 0);
    sse_free(&p);

    /* A long comment line counts too (the line buffer is what grows). */
    sse_init(&p, rec_event, &r);
    memset(big, ':', max + 1);
    assert_int_equal(sse_feed(&p, big, max + 1), -1);
    sse_free(&p);
    fig_buf_free(&r.log);
    free(big);

    /* An event type that does not fit is rejected, not truncated. */
    char line[200];
    snprintf(line, sizeof(line), "event: %0100d\ndata: x\n\n", 0);
    int rc2;
    char *got = run(line, strlen(line), 0, &rc2);
    assert_int_equal(rc2, -1);
    assert_string_equal(got, "");
    free(got);
    snprintf(line, sizeof(line), "event: %063d\ndata: x\n\n", 0);
    got = run(line, strlen(line), 0, &rc2);
    assert_int_equal(rc2, 0);
    assert_int_equal(strlen(got), 63 + strlen("=x;"));
    free(got);
}

static void test_nul_in_data(void **state)
{
    (void)state;
    static const char s[] = "data: a\0b\n\n";
    int rc;
    char *got = run(s, sizeof(s) - 1, 1, &rc);
    assert_int_equal(rc, 0);
    assert_memory_equal(got, "message=a\0b;", 12);
    free(got);
}

/* Records where each event's data was, to see whether it was copied. */
typedef struct {
    const char *ptr[4];
    size_t n;
} where_t;

static int where_event(void *ctx, const char *event, const char *data, size_t len)
{
    where_t *w = ctx;
    (void)event, (void)len;
    if (w->n < 4)
        w->ptr[w->n] = data;
    w->n++;
    return 0;
}

/* An event whose data line and blank line arrive in one chunk is handed over from
 * the chunk itself; one that a chunk boundary cuts is copied, so the caller may
 * reuse its buffer between feeds. */
static void test_zero_copy_and_reused_buffers(void **state)
{
    (void)state;
    where_t w = {{NULL}, 0};
    sse_parser_t p;
    sse_init(&p, where_event, &w);
    char chunk[64];
    strcpy(chunk, "data: abc\n\nevent: e\ndata: x\n");
    assert_int_equal(sse_feed(&p, chunk, strlen(chunk)), 0);
    assert_int_equal(w.n, 1);
    assert_ptr_equal(w.ptr[0], chunk + 6);
    sse_free(&p);

    /* The pending "x" (and a cut line) must survive the caller overwriting its buffer. */
    rec_t r = {FIG_BUF_INIT, 0, 0};
    sse_init(&p, rec_event, &r);
    strcpy(chunk, "event: e\ndata: x\ndata: y");
    assert_int_equal(sse_feed(&p, chunk, 17), 0); /* up to and including "data: x\n" */
    memset(chunk, '#', sizeof(chunk));
    strcpy(chunk, "data: 12");
    assert_int_equal(sse_feed(&p, chunk, strlen(chunk)), 0);
    memset(chunk, '#', sizeof(chunk));
    strcpy(chunk, "3\n\ndata: z\n");
    assert_int_equal(sse_feed(&p, chunk, strlen(chunk)), 0);
    memset(chunk, '#', sizeof(chunk));
    strcpy(chunk, "\r\n");
    assert_int_equal(sse_feed(&p, chunk, strlen(chunk)), 0);
    assert_string_equal(r.log.data, "e=x\n123;message=z;");
    sse_free(&p);
    fig_buf_free(&r.log);
}

/* Many lone-CR lines in one big chunk: every line is found (the '\n' search result
 * is reused, not repeated per line). */
static void test_many_cr_lines(void **state)
{
    (void)state;
    size_t lines = 100000;
    fig_buf_t s = FIG_BUF_INIT;
    for (size_t i = 0; i < lines; i++)
        fig_buf_append_str(&s, i % 2 ? "\r" : "data: q\r");
    fig_buf_append_str(&s, "\n");
    int rc;
    char *got = run(s.data, s.len, 0, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(got), lines / 2 * strlen("message=q;"));
    free(got);
    fig_buf_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_invariance),
        cmocka_unit_test(test_crlf_and_cr),
        cmocka_unit_test(test_cr_at_chunk_boundary),
        cmocka_unit_test(test_comments_and_ignored_fields),
        cmocka_unit_test(test_multiline_and_event_types),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_empty_data),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_nul_in_data),
        cmocka_unit_test(test_zero_copy_and_reused_buffers),
        cmocka_unit_test(test_many_cr_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
