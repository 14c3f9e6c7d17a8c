/*
 * test_form.c — urlencoded, multipart and cookie parsing, including the hostile
 * cases: bad escapes, invalid UTF-8, NUL bytes, truncated and malformed multipart
 * bodies, boundaries inside content, field-count caps and cookie look-alikes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "form.h"

static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

static void url_ok(const char *in, const char *want)
{
    fig_err_t err = {0};
    json_t *j = form_parse_urlencoded(in, strlen(in), &err);
    if (j == NULL)
        fail_msg("parse(%s) failed: %s", in, err.msg);
    char *got = dump(j);
    if (strcmp(got, want) != 0)
        fail_msg("parse(%s) = %s, want %s", in, got, want);
    free(got);
    json_decref(j);
}

static void url_bad_n(const char *in, size_t len, fig_code_t code, const char *msg_part)
{
    fig_err_t err = {0};
    json_t *j = form_parse_urlencoded(in, len, &err);
    if (j != NULL) {
        char *got = dump(j);
        fail_msg("parse(%s) accepted: %s", in, got);
    }
    assert_int_equal(err.code, code);
    if (msg_part && strstr(err.msg, msg_part) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, msg_part);
}

static void url_bad(const char *in, const char *msg_part)
{
    url_bad_n(in, strlen(in), FIG_E_INVALID, msg_part);
}

static void test_urlencoded_basic(void **s)
{
    (void)s;
    url_ok("", "{}");
    url_ok("a=1&b=x+y%21", "{\"a\":\"1\",\"b\":\"x y!\"}");
    url_ok("a=1&&b=2&", "{\"a\":\"1\",\"b\":\"2\"}");       /* empty pairs skipped */
    url_ok("&&&", "{}");
    url_ok("flag", "{\"flag\":\"\"}");                       /* missing '=' */
    url_ok("flag=", "{\"flag\":\"\"}");
    url_ok("a=b=c", "{\"a\":\"b=c\"}");                      /* only the first '=' splits */
    url_ok("a=1;b=2", "{\"a\":\"1;b=2\"}");                  /* ';' is not a separator */
    url_ok("a%20b=c%2Bd", "{\"a b\":\"c+d\"}");              /* names decode too; %2B is '+' */
    url_ok("x=%e2%82%AC", "{\"x\":\"\xe2\x82\xac\"}");       /* mixed-case hex, UTF-8 euro */
    url_ok("x=%26%3D", "{\"x\":\"&=\"}");
}

static void test_urlencoded_repeats(void **s)
{
    (void)s;
    url_ok("t=a&t=b", "{\"t\":[\"a\",\"b\"]}");
    url_ok("t=a&u=1&t=b&t=c", "{\"t\":[\"a\",\"b\",\"c\"],\"u\":\"1\"}");
    url_ok("t=&t=", "{\"t\":[\"\",\"\"]}");
}

static void test_urlencoded_bad(void **s)
{
    (void)s;
    url_bad("a=%", "escape");
    url_bad("a=%4", "escape");
    url_bad("a=%zz", "escape");
    url_bad("a=%4g", "escape");
    url_bad("%=1", "escape");
    url_bad("a=1&b=%%41", "field 2");
    url_bad("=1", "empty name");
    url_bad("a=1&=2", "empty name");
    url_bad("a=%00", "UTF-8");                       /* NUL */
    url_bad("a%00=1", "UTF-8");
    url_bad("a=%ff", "UTF-8");                       /* invalid byte */
    url_bad("a=%c0%af", "UTF-8");                    /* overlong '/' */
    url_bad("a=%ed%a0%80", "UTF-8");                 /* surrogate */
    url_bad("a=%f4%90%80%80", "UTF-8");              /* above U+10FFFF */
    url_bad("a=%e2%82", "UTF-8");                    /* truncated sequence */
    url_bad("a=\xff", "UTF-8");                      /* raw invalid byte */
    /* A raw NUL inside the length is caught too. */
    url_bad_n("a=x\0y", 5, FIG_E_INVALID, "UTF-8");
    /* Length is honoured: bytes after len are not read. */
    fig_err_t err;
    json_t *j = form_parse_urlencoded("a=1&b=%zz", 3, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "a")), "1");
    json_decref(j);
}

static void test_urlencoded_field_cap(void **s)
{
    (void)s;
    fig_buf_t b = FIG_BUF_INIT;
    for (int i = 0; i < FORM_MAX_FIELDS; i++)
        fig_buf_appendf(&b, "%sf%d=%d", i ? "&" : "", i, i);
    fig_err_t err = {0};
    json_t *j = form_parse_urlencoded(b.data, b.len, &err);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), FORM_MAX_FIELDS);
    json_decref(j);
    /* One more (even a repeat of a known name) is too many. */
    fig_buf_append_str(&b, "&f0=again");
    url_bad_n(b.data, b.len, FIG_E_TOO_LARGE, "more than");
    /* A huge number of fields is refused, not slowly built. */
    fig_buf_reset(&b);
    for (int i = 0; i < 100000; i++)
        fig_buf_append_str(&b, "x=1&");
    url_bad_n(b.data, b.len, FIG_E_TOO_LARGE, "256");
    /* Empty pairs do not count. */
    fig_buf_reset(&b);
    for (int i = 0; i < 10000; i++)
        fig_buf_append_str(&b, "&");
    fig_buf_append_str(&b, "z=1");
    url_ok(b.data, "{\"z\":\"1\"}");
    fig_buf_free(&b);
}

static void test_url_decode(void **s)
{
    (void)s;
    char *d = form_url_decode("/mail/a%20b+c", 13, 0);
    assert_string_equal(d, "/mail/a b+c");
    free(d);
    d = form_url_decode("a+b", 3, 1);
    assert_string_equal(d, "a b");
    free(d);
    d = form_url_decode("", 0, 1);
    assert_string_equal(d, "");
    free(d);
    assert_null(form_url_decode("%", 1, 0));
    assert_null(form_url_decode("%2", 2, 0));
    assert_null(form_url_decode("%G0", 3, 0));
    assert_null(form_url_decode("a%00b", 5, 0)); /* would truncate silently */
    /* len bounds the read: the escape after len is not seen. */
    d = form_url_decode("ab%zz", 2, 0);
    assert_string_equal(d, "ab");
    free(d);
}

/* ---- multipart ---- */

#define CT "multipart/form-data; boundary=XyZ"

static json_t *mp(const char *body, size_t len, const char *ct, fig_err_t *err)
{
    memset(err, 0, sizeof(*err));
    return form_parse_multipart(body, len, ct, err);
}

static void mp_ok(const char *body, const char *ct, const char *want)
{
    fig_err_t err;
    json_t *j = mp(body, strlen(body), ct, &err);
    if (j == NULL)
        fail_msg("multipart failed: %s\nbody: %s", err.msg, body);
    char *got = dump(j);
    if (strcmp(got, want) != 0)
        fail_msg("multipart = %s, want %s", got, want);
    free(got);
    json_decref(j);
}

static void mp_bad(const char *body, size_t len, const char *ct, const char *msg_part)
{
    fig_err_t err;
    json_t *j = mp(body, len, ct, &err);
    if (j != NULL) {
        char *got = dump(j);
        fail_msg("multipart accepted: %s\nbody: %s", got, body);
    }
    assert_true(err.code == FIG_E_INVALID || err.code == FIG_E_TOO_LARGE);
    if (msg_part && strstr(err.msg, msg_part) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, msg_part);
}

static void test_multipart_basic(void **s)
{
    (void)s;
    /* Build it with an explicit length instead. */
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, "--XyZ\r\n"
                           "Content-Disposition: form-data; name=\"title\"\r\n"
                           "\r\n"
                           "Hello\r\nworld\r\n"
                           "--XyZ\r\n"
                           "content-disposition: form-data; name=\"tag\"\r\n"
                           "Content-Type: text/plain; charset=utf-8\r\n"
                           "\r\n"
                           "a\r\n"
                           "--XyZ\r\n"
                           "Content-Disposition: form-data; name=\"tag\"\r\n"
                           "\r\n"
                           "\r\n"
                           "--XyZ\r\n"
                           "Content-Disposition: form-data; name=\"up\"; "
                           "filename=\"C:\\\\Users\\\\me\\\\r\xc3\xa9sum\xc3\xa9.pdf\"\r\n"
                           "Content-Type: application/pdf\r\n"
                           "\r\n"
                           "%PDF-1.4 ");
    fig_buf_append(&b, "\x00\xff", 2);
    fig_buf_append_str(&b, " binary\r\n--XyZ--\r\n");
    fig_err_t err;
    json_t *j = mp(b.data, b.len, CT, &err);
    if (j == NULL)
        fail_msg("%s", err.msg);
    assert_string_equal(json_string_value(json_object_get(j, "title")), "Hello\r\nworld");
    json_t *tag = json_object_get(j, "tag");
    assert_true(json_is_array(tag));
    assert_int_equal(json_array_size(tag), 2);
    assert_string_equal(json_string_value(json_array_get(tag, 0)), "a");
    assert_string_equal(json_string_value(json_array_get(tag, 1)), "");
    json_t *up = json_object_get(j, "up");
    assert_true(json_is_object(up));
    assert_string_equal(json_string_value(json_object_get(up, "filename")), "r\xc3\xa9sum\xc3\xa9.pdf");
    assert_string_equal(json_string_value(json_object_get(up, "content_type")), "application/pdf");
    assert_int_equal(json_integer_value(json_object_get(up, "size")), 18); /* "%PDF-1.4 " + 2 bytes + " binary" */
    assert_int_equal(json_object_size(up), 3);
    json_decref(j);
    fig_buf_free(&b);
}

static void test_multipart_boundary_param(void **s)
{
    (void)s;
    const char *body = "--a b'c\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--a b'c--";
    mp_ok(body, "multipart/form-data; boundary=\"a b'c\"", "{\"x\":\"1\"}");
    mp_ok(body, "Multipart/Form-Data;boundary=\"a b'c\"; charset=utf-8", "{\"x\":\"1\"}");
    const char *body2 = "--XyZ\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--XyZ--";
    mp_ok(body2, "multipart/form-data ; charset=x ; boundary=XyZ", "{\"x\":\"1\"}");

    mp_bad(body2, strlen(body2), "multipart/form-data", "no boundary");
    mp_bad(body2, strlen(body2), "multipart/form-data; boundary=", "malformed");
    mp_bad(body2, strlen(body2), "multipart/form-data; boundary=\"\"", "1 to 70");
    mp_bad(body2, strlen(body2), "multipart/mixed; boundary=XyZ", "not multipart/form-data");
    mp_bad(body2, strlen(body2), "multipart/form-datax; boundary=XyZ", "not multipart/form-data");
    mp_bad(body2, strlen(body2), "text/plain", "not multipart/form-data");
    mp_bad(body2, strlen(body2), "multipart/form-data; boundary=XyZ; boundary=XyZ", "twice");
    mp_bad(body2, strlen(body2), "multipart/form-data; boundary=\"XyZ", "malformed");
    mp_bad(body2, strlen(body2), "multipart/form-data; boundary=\"ab<>\"", "RFC 2046");
    mp_bad(body2, strlen(body2), "multipart/form-data; boundary=\"ab \"", "1 to 70"); /* trailing space */
    mp_bad(body2, strlen(body2), NULL, "Content-Type");
    char ct[200];
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%071d", 0);
    mp_bad(body2, strlen(body2), ct, "1 to 70");
    /* 70 characters is fine. */
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%070d", 0);
    char body3[300];
    snprintf(body3, sizeof(body3), "--%070d\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--%070d--", 0, 0);
    mp_ok(body3, ct, "{\"x\":\"1\"}");
}

static void test_multipart_preamble_epilogue(void **s)
{
    (void)s;
    mp_ok("This is a preamble --XyZ not a delimiter\r\n"
          "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ--\r\nepilogue --XyZ junk",
          CT, "{\"a\":\"v\"}");
    /* Transport padding after a delimiter is allowed. */
    mp_ok("--XyZ  \t\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ--", CT, "{\"a\":\"v\"}");
    /* No parts at all, just the close delimiter. */
    mp_ok("--XyZ--\r\n", CT, "{}");
}

static void test_multipart_boundary_in_body(void **s)
{
    (void)s;
    /* The boundary text not at a line start is content. */
    mp_ok("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nsee --XyZ and x--XyZ--\r\n--XyZ--", CT,
          "{\"a\":\"see --XyZ and x--XyZ--\"}");
    /* A longer boundary-prefixed line at a line start is ambiguous: refused. */
    const char *amb = "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nline\r\n--XyZabc\r\n--XyZ--";
    mp_bad(amb, strlen(amb), CT, "malformed boundary");
    /* A bare LF before the boundary is not a delimiter: it stays content. */
    mp_ok("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\n--XyZ\r\n--XyZ--", CT,
          "{\"a\":\"x\\n--XyZ\"}");
}

static void test_multipart_truncated(void **s)
{
    (void)s;
    const char *full = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue\r\n--XyZ--\r\n";
    size_t n = strlen(full);
    /* Every strict prefix that cuts before the close delimiter must fail. */
    size_t close_at = (size_t)(strstr(full, "\r\n--XyZ--") - full) + strlen("\r\n--XyZ--");
    for (size_t cut = 0; cut < close_at; cut++) {
        fig_err_t err;
        json_t *j = mp(full, cut, CT, &err);
        if (j != NULL)
            fail_msg("prefix of %zu bytes accepted", cut);
        assert_int_equal(err.code, FIG_E_INVALID);
    }
    for (size_t cut = close_at; cut <= n; cut++) {
        fig_err_t err;
        json_t *j = mp(full, cut, CT, &err);
        if (j == NULL)
            fail_msg("full body of %zu bytes refused: %s", cut, err.msg);
        json_decref(j);
    }
    /* Missing closing "--": parts end but no close delimiter. */
    const char *noclose = "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ\r\n";
    mp_bad(noclose, strlen(noclose), CT, "truncated");
    const char *nodelim = "no boundary anywhere";
    mp_bad(nodelim, strlen(nodelim), CT, "truncated");
    mp_bad("", 0, CT, "truncated");
}

static void test_multipart_bad_parts(void **s)
{
    (void)s;
#define B(x) x, strlen(x), CT
    mp_bad(B("--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--"), "missing Content-Disposition");
    mp_bad(B("--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nv\r\n--XyZ--"), "not form-data");
    mp_bad(B("--XyZ\r\nContent-Disposition: form-data\r\n\r\nv\r\n--XyZ--"), "no name");
    mp_bad(B("--XyZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nv\r\n--XyZ--"), "no name");
    mp_bad(B("--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--XyZ--"), "malformed");
    mp_bad(B("--XyZ\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nv\r\n--XyZ--"), "twice");
    mp_bad(B("--XyZ\r\nContent-Disposition: form-data; name=a\r\nContent-Disposition: form-data; name=b\r\n\r\nv\r\n"
             "--XyZ--"),
           "twice");
    mp_bad(B("--XyZ\r\nContent-Disposition: form-data; name=a\r\n folded\r\n\r\nv\r\n--XyZ--"), "malformed header");
    mp_bad(B("--XyZ\r\nno colon here\r\n\r\nv\r\n--XyZ--"), "without a name");
    mp_bad(B("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n\xff\xfe\r\n--XyZ--"), "UTF-8");
    mp_bad(B("--XyZ\r\nContent-Disposition: form-data; name=\"\xff\"\r\n\r\nv\r\n--XyZ--"), "UTF-8");
    mp_bad(B("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ junk\r\n--XyZ--"), "malformed boundary");
    mp_bad(B("--XyZ\r\nContent-Disposition: form-data; name=a"), "truncated");
#undef B
    /* NUL in a text field. */
    const char nul[] = "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\0y\r\n--XyZ--";
    mp_bad(nul, sizeof(nul) - 1, CT, "UTF-8");
    /* Oversized header block. */
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, "--XyZ\r\nContent-Disposition: form-data; name=a\r\nX-Pad: ");
    for (int i = 0; i < 10000; i++)
        fig_buf_append(&b, "p", 1);
    fig_buf_append_str(&b, "\r\n\r\nv\r\n--XyZ--");
    mp_bad(b.data, b.len, CT, "too large");
    fig_buf_free(&b);
}

static void test_multipart_filenames(void **s)
{
    (void)s;
    mp_ok("--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"../../etc/passwd\"\r\n\r\nx\r\n--XyZ--", CT,
          "{\"f\":{\"content_type\":\"application/octet-stream\",\"filename\":\"passwd\",\"size\":1}}");
    mp_ok("--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"a\\\"b\\\\c.txt\"\r\n\r\n\r\n--XyZ--", CT,
          "{\"f\":{\"content_type\":\"application/octet-stream\",\"filename\":\"c.txt\",\"size\":0}}");
    mp_ok("--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"q\\\"uote.txt\"\r\n\r\n\r\n--XyZ--", CT,
          "{\"f\":{\"content_type\":\"application/octet-stream\",\"filename\":\"q\\\"uote.txt\",\"size\":0}}");
    /* A tab is legal in a header but not in a filename: dropped. Other control
     * bytes make the header itself malformed. */
    mp_ok("--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"a\tb\t\"\r\n\r\n\r\n--XyZ--", CT,
          "{\"f\":{\"content_type\":\"application/octet-stream\",\"filename\":\"ab\",\"size\":0}}");
    const char *ctl = "--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"a\x01\x7f" "b\"\r\n\r\n\r\n--XyZ--";
    mp_bad(ctl, strlen(ctl), CT, "control character");
    mp_ok("--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"..\"\r\n\r\n\r\n--XyZ--", CT,
          "{\"f\":{\"content_type\":\"application/octet-stream\",\"filename\":\"\",\"size\":0}}");
    /* The empty file input browsers send when nothing was chosen. */
    mp_ok("--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"\"\r\nContent-Type: application/octet-stream"
          "\r\n\r\n\r\n--XyZ--",
          CT, "{\"f\":{\"content_type\":\"application/octet-stream\",\"filename\":\"\",\"size\":0}}");
    /* Two files under one name become an array; binary bytes are only counted. */
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append_str(&b, "--XyZ\r\nContent-Disposition: form-data; name=f; filename=a.bin\r\n"
                           "Content-Type: image/png\r\n\r\n");
    fig_buf_append(&b, "\x89PNG\0\r\n\xff", 8);
    fig_buf_append_str(&b, "\r\n--XyZ\r\nContent-Disposition: form-data; name=f; filename=b.txt\r\n\r\nhi\r\n--XyZ--");
    fig_err_t err;
    json_t *j = mp(b.data, b.len, CT, &err);
    assert_non_null(j);
    char *got = dump(j);
    assert_string_equal(got, "{\"f\":[{\"content_type\":\"image/png\",\"filename\":\"a.bin\",\"size\":8},"
                             "{\"content_type\":\"application/octet-stream\",\"filename\":\"b.txt\",\"size\":2}]}");
    free(got);
    json_decref(j);
    fig_buf_free(&b);
    /* A very long filename is cut at 255 bytes on a character boundary. */
    fig_buf_t fb = FIG_BUF_INIT;
    fig_buf_append_str(&fb, "--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"");
    for (int i = 0; i < 200; i++)
        fig_buf_append_str(&fb, "\xc3\xa9");
    fig_buf_append_str(&fb, "\"\r\n\r\n\r\n--XyZ--");
    j = mp(fb.data, fb.len, CT, &err);
    assert_non_null(j);
    const char *fn = json_string_value(json_object_get(json_object_get(j, "f"), "filename"));
    assert_non_null(fn);
    assert_int_equal(strlen(fn), 254);
    json_decref(j);
    fig_buf_free(&fb);
}

static void test_multipart_field_cap(void **s)
{
    (void)s;
    fig_buf_t b = FIG_BUF_INIT;
    for (int i = 0; i < FORM_MAX_FIELDS; i++)
        fig_buf_appendf(&b, "--XyZ\r\nContent-Disposition: form-data; name=f%d\r\n\r\n%d\r\n", i, i);
    size_t keep = b.len;
    fig_buf_append_str(&b, "--XyZ--");
    fig_err_t err;
    json_t *j = mp(b.data, b.len, CT, &err);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), FORM_MAX_FIELDS);
    json_decref(j);
    b.len = keep;
    fig_buf_append_str(&b, "--XyZ\r\nContent-Disposition: form-data; name=one_more\r\n\r\nx\r\n--XyZ--");
    j = mp(b.data, b.len, CT, &err);
    assert_null(j);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    fig_buf_free(&b);
}

/* ---- cookies ---- */

static void cookie_is(const char *header, const char *name, const char *want)
{
    char *v = form_cookie_get(header, strlen(header), name);
    if (want == NULL) {
        if (v != NULL)
            fail_msg("cookie %s in \"%s\" = \"%s\", want absent", name, header, v);
        return;
    }
    if (v == NULL)
        fail_msg("cookie %s in \"%s\" absent, want \"%s\"", name, header, want);
    assert_string_equal(v, want);
    free(v);
}

static void test_cookies(void **s)
{
    (void)s;
    cookie_is("a=1; b=2", "a", "1");
    cookie_is("a=1; b=2", "b", "2");
    cookie_is("a=1;b=2", "b", "2");
    cookie_is("  a = 1 ;  b=2  ", "a", "1");
    cookie_is("a=1; b=2", "c", NULL);
    cookie_is("", "a", NULL);
    cookie_is("a=1; a=2", "a", "1");         /* first match wins */
    cookie_is("xa=1; a=2", "a", "2");        /* no prefix matching */
    cookie_is("ab=1", "a", NULL);
    cookie_is("a", "a", NULL);               /* no '=' */
    cookie_is("a=; b=2", "a", "");
    cookie_is("a=x=y", "a", "x=y");
    cookie_is(";;; a=1 ;;", "a", "1");
    cookie_is("A=1", "a", NULL);             /* names are case-sensitive */
    cookie_is("figment_sid=abc.def; other=1", "figment_sid", "abc.def");
    /* len bounds the read. */
    char *v = form_cookie_get("a=123; b=4", 4, "a");
    assert_string_equal(v, "12");
    free(v);
    /* A NUL inside a value makes that pair unusable; a later one still counts. */
    v = form_cookie_get("a=x\0y; a=z", 10, "a");
    assert_string_equal(v, "z");
    free(v);
    assert_null(form_cookie_get(NULL, 0, "a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urlencoded_basic),
        cmocka_unit_test(test_urlencoded_repeats),
        cmocka_unit_test(test_urlencoded_bad),
        cmocka_unit_test(test_urlencoded_field_cap),
        cmocka_unit_test(test_url_decode),
        cmocka_unit_test(test_multipart_basic),
        cmocka_unit_test(test_multipart_boundary_param),
        cmocka_unit_test(test_multipart_preamble_epilogue),
        cmocka_unit_test(test_multipart_boundary_in_body),
        cmocka_unit_test(test_multipart_truncated),
        cmocka_unit_test(test_multipart_bad_parts),
        cmocka_unit_test(test_multipart_filenames),
        cmocka_unit_test(test_multipart_field_cap),
        cmocka_unit_test(test_cookies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
