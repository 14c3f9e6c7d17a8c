/*
 * test_uploads.c — the per-session upload store: name sanitizing against traversal
 * and hidden-file tricks, the session directory path, size and count caps, atomic
 * replacement, symlinks planted in the directory (never followed), the listing given
 * to the model (sniffing, MIME guess, first lines with CRLF and a BOM, order,
 * byte-stable JSON), deletion, and the multipart file views from form.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "form.h"
#include "uploads.h"

/* ---- helpers ---- */

static char tmp_root[256];

static int setup_tmp(void **s)
{
    (void)s;
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/fig-uploads-XXXXXX");
    if (mkdtemp(tmp_root) == NULL)
        return -1;
    return 0;
}

static int teardown_tmp(void **s)
{
    (void)s;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

static char *path_in(const char *a, const char *b)
{
    fig_buf_t p = FIG_BUF_INIT;
    fig_buf_appendf(&p, "%s/%s", a, b);
    return fig_buf_steal(&p);
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append(&b, "", 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fig_buf_append(&b, chunk, n);
    fclose(f);
    if (len)
        *len = b.len;
    return fig_buf_steal(&b);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static app_t test_app(long max_bytes, int max_files)
{
    app_t a;
    memset(&a, 0, sizeof(a));
    a.name = "notes";
    a.max_upload_bytes = max_bytes;
    a.max_uploads = max_files;
    return a;
}

/* A fresh session dir under the temp root. Caller frees. */
static char *fresh_dir(const char *session)
{
    char *d = uploads_dir(tmp_root, "notes", session);
    assert_non_null(d);
    return d;
}

static void store_ok(const char *dir, const app_t *app, const char *name, const char *data, const char *want_name)
{
    fig_err_t err = {0};
    char *stored = NULL;
    if (uploads_store(dir, app, name, data, strlen(data), &stored, &err) != 0)
        fail_msg("store(%s) failed: %s", name, err.msg);
    assert_string_equal(stored, want_name);
    free(stored);
}

static char *list_dump(const char *dir)
{
    fig_err_t err = {0};
    json_t *l = uploads_list(dir, &err);
    if (l == NULL)
        fail_msg("list failed: %s", err.msg);
    char *s = json_dumps(l, JSON_COMPACT);
    json_decref(l);
    return s;
}

/* ---- names ---- */

static void san_is(const char *in, size_t len, const char *want)
{
    char *got = uploads_sanitize_name(in, len);
    if (strcmp(got, want) != 0)
        fail_msg("sanitize(%.*s) = \"%s\", want \"%s\"", (int)len, in, got, want);
    /* Always a fixed point. */
    char *again = uploads_sanitize_name(got, strlen(got));
    assert_string_equal(again, got);
    free(again);
    free(got);
}

#define SAN(in, want) san_is(in, sizeof(in) - 1, want)

static void test_sanitize_traversal_and_hidden(void **s)
{
    (void)s;
    SAN("../../etc/passwd", "passwd");
    SAN("a/b", "b");
    SAN("C:\\Users\\me\\report.csv", "report.csv");
    SAN("..\\..\\boot.ini", "boot.ini");
    SAN(".bashrc", "_bashrc");
    SAN("...hidden", "___hidden");
    SAN("..", "__");
    SAN(".", "_");
    SAN("", "upload");
    SAN("dir/", "upload");
    SAN("/", "upload");
    SAN("a.tar.gz", "a.tar.gz");
    SAN("Mixed-Case_1.TXT", "Mixed-Case_1.TXT");
    char *n = uploads_sanitize_name(NULL, 5);
    assert_string_equal(n, "upload");
    free(n);
}

static void test_sanitize_odd_bytes(void **s)
{
    (void)s;
    SAN("a\0b.txt", "a_b.txt");        /* NUL inside the name */
    SAN("\0", "_");
    SAN("a\nb\tc\x7f", "a_b_c_");      /* control characters */
    SAN("my file (1).txt", "my_file__1_.txt");
    SAN("r\xc3\xa9sum\xc3\xa9.pdf", "r_sum_.pdf");  /* one '_' per character */
    SAN("\xe6\x97\xa5\xe6\x9c\xac.csv", "__.csv");
    SAN("\xf0\x9f\x98\x80", "_");
    SAN("\xff\xfe", "__");             /* invalid bytes: one each */
    SAN("a\xe2\x80\xae" "fdp.exe", "a_fdp.exe"); /* right-to-left override */
    SAN("$(rm -rf ~);`x`|&<>\"'*?", "__rm_-rf_____x_________");
}

static void test_sanitize_long_names(void **s)
{
    (void)s;
    char in[300];
    memset(in, 'x', 200);
    memcpy(in + 200, ".csv", 4);
    char *n = uploads_sanitize_name(in, 204);
    assert_int_equal(strlen(n), UPLOADS_MAX_NAME);
    assert_string_equal(n + UPLOADS_MAX_NAME - 4, ".csv");
    assert_int_equal(n[0], 'x');
    free(n);

    /* No plausible extension: a plain cut. */
    memset(in, 'y', 200);
    in[100] = '.';
    n = uploads_sanitize_name(in, 200);
    assert_int_equal(strlen(n), UPLOADS_MAX_NAME);
    assert_null(strchr(n, '.'));
    free(n);
    in[100] = 'y';
    in[3] = '.'; /* an "extension" of 197 bytes is no extension */
    n = uploads_sanitize_name(in, 200);
    assert_int_equal(strlen(n), UPLOADS_MAX_NAME);
    assert_string_equal(n + UPLOADS_MAX_NAME - 2, "yy");
    assert_int_equal(n[3], '.');
    free(n);

    /* Exactly at the cap: unchanged. */
    memset(in, 'z', UPLOADS_MAX_NAME);
    n = uploads_sanitize_name(in, UPLOADS_MAX_NAME);
    assert_int_equal(strlen(n), UPLOADS_MAX_NAME);
    free(n);

    /* Unicode blow-up is capped too (each character is one '_'). */
    fig_buf_t u = FIG_BUF_INIT;
    for (int i = 0; i < 100; i++)
        fig_buf_append_str(&u, "\xc3\xa9");
    n = uploads_sanitize_name(u.data, u.len);
    assert_int_equal(strlen(n), UPLOADS_MAX_NAME);
    free(n);
    fig_buf_free(&u);
}

static void test_dir_paths(void **s)
{
    (void)s;
    char *d = uploads_dir("var", "notes", "0123456789abcdef0123456789abcdef");
    assert_string_equal(d, "var/uploads/notes/0123456789abcdef0123456789abcdef");
    free(d);
    d = uploads_dir("/srv/v", "my-app_2", "A_b-9");
    assert_string_equal(d, "/srv/v/uploads/my-app_2/A_b-9");
    free(d);
    assert_null(uploads_dir("var", "notes", "../x"));
    assert_null(uploads_dir("var", "notes", ".."));
    assert_null(uploads_dir("var", "notes", "a/b"));
    assert_null(uploads_dir("var", "notes", ""));
    assert_null(uploads_dir("var", "notes", NULL));
    assert_null(uploads_dir("var", "notes", "a.b"));
    char longid[80];
    memset(longid, 'a', 65);
    longid[65] = '\0';
    assert_null(uploads_dir("var", "notes", longid));
    longid[64] = '\0';
    d = uploads_dir("var", "notes", longid);
    assert_non_null(d);
    free(d);
    assert_null(uploads_dir("var", "../notes", "abc"));
    assert_null(uploads_dir("var", "Notes", "abc"));
    assert_null(uploads_dir("var", "-notes", "abc"));
    assert_null(uploads_dir("var", "", "abc"));
    assert_null(uploads_dir(NULL, "notes", "abc"));
}

/* ---- store ---- */

static void test_store_basic_and_modes(void **s)
{
    (void)s;
    app_t app = test_app(1000, 5);
    char *dir = fresh_dir("s1");
    store_ok(dir, &app, "../../etc/passwd", "root:x:0:0\n", "passwd");

    char *p = path_in(dir, "passwd");
    size_t len;
    char *got = read_file(p, &len);
    assert_non_null(got);
    assert_int_equal(len, 11);
    assert_memory_equal(got, "root:x:0:0\n", 11);
    free(got);

    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    free(p);

    /* Replacing keeps one file, new bytes, no temporary left behind. */
    store_ok(dir, &app, "passwd", "new", "passwd");
    p = path_in(dir, "passwd");
    got = read_file(p, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(got, "new", 3);
    free(got);
    free(p);
    assert_int_equal(count_entries(dir), 1);

    /* Binary bytes with NULs are stored exactly; an empty file is a file. */
    fig_err_t err = {0};
    char bin[5] = {'\0', '\x01', '\xff', '\0', 'z'};
    assert_int_equal(uploads_store(dir, &app, "b.bin", bin, sizeof(bin), NULL, &err), 0);
    p = path_in(dir, "b.bin");
    got = read_file(p, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(got, bin, 5);
    free(got);
    free(p);
    assert_int_equal(uploads_store(dir, &app, "empty.txt", NULL, 0, NULL, &err), 0);
    assert_int_equal(count_entries(dir), 3);
    free(dir);
}

static void test_store_size_cap(void **s)
{
    (void)s;
    char *dir = fresh_dir("s2");
    fig_err_t err = {0};

    app_t off = test_app(0, 5);
    assert_int_equal(uploads_store(dir, &off, "a.txt", "x", 1, NULL, &err), -1);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    assert_non_null(strstr(err.msg, "does not accept file uploads"));
    assert_non_null(strstr(err.msg, "uploads.max_bytes"));

    app_t app = test_app(10, 5);
    fig_err_clear(&err);
    assert_int_equal(uploads_store(dir, &app, "big.txt", "01234567890", 11, NULL, &err), -1);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    assert_non_null(strstr(err.msg, "11 bytes"));
    assert_non_null(strstr(err.msg, "at most 10 bytes"));
    assert_non_null(strstr(err.msg, "big.txt"));
    /* Nothing was created for a refused file. */
    struct stat st;
    char *p = path_in(dir, "big.txt");
    assert_int_not_equal(lstat(p, &st), 0);
    free(p);

    /* Exactly at the limit is fine. */
    assert_int_equal(uploads_store(dir, &app, "ok.txt", "0123456789", 10, NULL, &err), 0);
    free(dir);
}

static void test_store_count_cap(void **s)
{
    (void)s;
    char *dir = fresh_dir("s3");
    app_t app = test_app(100, 2);
    store_ok(dir, &app, "a.txt", "a", "a.txt");
    store_ok(dir, &app, "b.txt", "b", "b.txt");

    fig_err_t err = {0};
    assert_int_equal(uploads_store(dir, &app, "c.txt", "c", 1, NULL, &err), -1);
    assert_int_equal(err.code, FIG_E_TOO_LARGE);
    assert_non_null(strstr(err.msg, "at most 2 files"));
    assert_non_null(strstr(err.msg, "c.txt"));
    assert_int_equal(count_entries(dir), 2);

    /* Replacing one of the kept files is allowed at the cap. */
    store_ok(dir, &app, "a.txt", "A2", "a.txt");
    assert_int_equal(count_entries(dir), 2);

    /* Files we would not list (dot files, symlinks, directories) do not count. */
    char *p = path_in(dir, ".junk");
    write_file(p, "j", 1);
    free(p);
    app_t app3 = test_app(100, 3);
    store_ok(dir, &app3, "c.txt", "c", "c.txt");
    fig_err_clear(&err);
    assert_int_equal(uploads_store(dir, &app3, "d.txt", "d", 1, NULL, &err), -1);
    free(dir);
}

static void test_store_does_not_follow_symlinks(void **s)
{
    (void)s;
    char *dir = fresh_dir("s4");
    app_t app = test_app(100, 5);
    store_ok(dir, &app, "seed.txt", "x", "seed.txt"); /* creates the dir */

    /* A symlink planted under the name being stored: replaced, target untouched. */
    char *target = path_in(tmp_root, "outside.txt");
    write_file(target, "precious", 8);
    char *link = path_in(dir, "victim.txt");
    assert_int_equal(symlink(target, link), 0);
    store_ok(dir, &app, "victim.txt", "overwritten?", "victim.txt");
    size_t len;
    char *got = read_file(target, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(got, "precious", 8);
    free(got);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    got = read_file(link, &len);
    assert_memory_equal(got, "overwritten?", 12);
    free(got);
    free(link);

    /* A symlink in place of the session directory: refused, nothing written there. */
    char *elsewhere = path_in(tmp_root, "elsewhere");
    assert_int_equal(mkdir(elsewhere, 0700), 0);
    char *dir2 = fresh_dir("s4link");
    assert_int_equal(symlink(elsewhere, dir2), 0);
    fig_err_t err = {0};
    assert_int_equal(uploads_store(dir2, &app, "x.txt", "x", 1, NULL, &err), -1);
    assert_int_equal(err.code, FIG_E_IO);
    assert_int_equal(count_entries(elsewhere), 0);
    /* Listing it is an error too, not a listing of the target. */
    char *in_else = path_in(elsewhere, "secret.txt");
    write_file(in_else, "s", 1);
    fig_err_clear(&err);
    assert_null(uploads_list(dir2, &err));
    assert_int_equal(err.code, FIG_E_IO);
    free(in_else);
    free(dir2);
    free(elsewhere);
    free(target);
    free(dir);
}

/* ---- list ---- */

static void test_list_sniff_and_first_lines(void **s)
{
    (void)s;
    char *dir = fresh_dir("s5");
    app_t app = test_app(100000, 20);
    fig_err_t err = {0};

    /* Missing directory: no files. */
    char *l = list_dump(dir);
    assert_string_equal(l, "[]");
    free(l);

    store_ok(dir, &app, "data.csv", "\xef\xbb\xbfid,name\r\n1,Ann\r\n2,Bob\r\n", "data.csv");
    char bin[] = {'P', 'K', 3, 4, 0, 0, 'x'};
    assert_int_equal(uploads_store(dir, &app, "b.zip", bin, sizeof(bin), NULL, &err), 0);
    store_ok(dir, &app, "latin1.txt", "caf\xe9\n", "latin1.txt");
    store_ok(dir, &app, "many.md", "1\n2\n3\n4\n5\n6\n7\n", "many.md");
    store_ok(dir, &app, "mac.txt", "a\rb\r\rc", "mac.txt");
    store_ok(dir, &app, "empty", "", "empty");
    store_ok(dir, &app, "Z.JSON", "{\"a\":1}\n\n", "Z.JSON");

    l = list_dump(dir);
    /* Byte order: uppercase before lowercase. */
    const char *want =
        "[{\"name\":\"Z.JSON\",\"size\":9,\"type\":\"text\",\"mime\":\"application/json\",\"first_lines\":\"{\\\"a\\\":1}\\n\"},"
        "{\"name\":\"b.zip\",\"size\":7,\"type\":\"binary\",\"mime\":\"application/zip\"},"
        "{\"name\":\"data.csv\",\"size\":26,\"type\":\"text\",\"mime\":\"text/csv\",\"first_lines\":\"id,name\\n1,Ann\\n2,Bob\"},"
        "{\"name\":\"empty\",\"size\":0,\"type\":\"text\",\"mime\":\"text/plain\",\"first_lines\":\"\"},"
        "{\"name\":\"latin1.txt\",\"size\":5,\"type\":\"binary\",\"mime\":\"text/plain\"},"
        "{\"name\":\"mac.txt\",\"size\":6,\"type\":\"text\",\"mime\":\"text/plain\",\"first_lines\":\"a\\nb\\n\\nc\"},"
        "{\"name\":\"many.md\",\"size\":14,\"type\":\"text\",\"mime\":\"text/markdown\",\"first_lines\":\"1\\n2\\n3\\n4\\n5\"}]";
    assert_string_equal(l, want);
    /* Stable: the same again. */
    char *l2 = list_dump(dir);
    assert_string_equal(l, l2);
    free(l2);
    free(l);
    free(dir);
}

static void test_list_limits_and_cut_characters(void **s)
{
    (void)s;
    char *dir = fresh_dir("s6");
    app_t app = test_app(100000, 20);
    fig_err_t err = {0};

    /* A text file longer than the sniff window, with a 3-byte character straddling
     * byte 4096: still text. */
    fig_buf_t b = FIG_BUF_INIT;
    for (int i = 0; i < 4095; i++)
        fig_buf_append(&b, "a", 1);
    fig_buf_append_str(&b, "\xe2\x82\xac tail");
    assert_int_equal(uploads_store(dir, &app, "long.txt", b.data, b.len, NULL, &err), 0);

    /* A NUL after the sniff window does not matter; one inside does. */
    b.data[4095] = 'a';
    b.data[10] = '\0';
    assert_int_equal(uploads_store(dir, &app, "nul.txt", b.data, b.len, NULL, &err), 0);
    fig_buf_free(&b);

    /* One long line of 2-byte characters: first_lines stops at 500 bytes on a
     * character boundary. */
    fig_buf_t u = FIG_BUF_INIT;
    fig_buf_append(&u, "x", 1);
    for (int i = 0; i < 400; i++)
        fig_buf_append_str(&u, "\xc3\xa9");
    assert_int_equal(uploads_store(dir, &app, "wide.txt", u.data, u.len, NULL, &err), 0);
    fig_buf_free(&u);

    /* A truncated character at the very end of a whole (short) file is binary. */
    assert_int_equal(uploads_store(dir, &app, "trunc.txt", "ok\xe2\x82", 4, NULL, &err), 0);

    json_t *l = uploads_list(dir, &err);
    assert_non_null(l);
    assert_int_equal(json_array_size(l), 4);
    json_t *longf = json_array_get(l, 0);
    assert_string_equal(json_string_value(json_object_get(longf, "name")), "long.txt");
    assert_string_equal(json_string_value(json_object_get(longf, "type")), "text");
    assert_int_equal(json_integer_value(json_object_get(longf, "size")), 4095 + 3 + 5);
    assert_int_equal(strlen(json_string_value(json_object_get(longf, "first_lines"))), UPLOADS_FIRST_BYTES);

    json_t *nul = json_array_get(l, 1);
    assert_string_equal(json_string_value(json_object_get(nul, "name")), "nul.txt");
    assert_string_equal(json_string_value(json_object_get(nul, "type")), "binary");
    assert_null(json_object_get(nul, "first_lines"));

    json_t *tr = json_array_get(l, 2);
    assert_string_equal(json_string_value(json_object_get(tr, "name")), "trunc.txt");
    assert_string_equal(json_string_value(json_object_get(tr, "type")), "binary");

    json_t *wide = json_array_get(l, 3);
    const char *fl = json_string_value(json_object_get(wide, "first_lines"));
    assert_int_equal(strlen(fl), 499); /* "x" + 249 two-byte characters */
    assert_int_equal((unsigned char)fl[497], 0xc3);
    json_decref(l);
    free(dir);
}

static void test_list_skips_symlinks_and_foreign_names(void **s)
{
    (void)s;
    char *dir = fresh_dir("s7");
    app_t app = test_app(1000, 20);
    store_ok(dir, &app, "real.txt", "hello\n", "real.txt");

    char *target = path_in(tmp_root, "secret-target.txt");
    write_file(target, "top secret\n", 11);
    char *link = path_in(dir, "link.txt");
    assert_int_equal(symlink(target, link), 0);
    char *odd = path_in(dir, "has space.txt");   /* not a name we would store */
    write_file(odd, "x", 1);
    char *dot = path_in(dir, ".upload-abc.tmp"); /* a temporary file */
    write_file(dot, "x", 1);
    char *sub = path_in(dir, "subdir");
    assert_int_equal(mkdir(sub, 0700), 0);
    char *fifo = path_in(dir, "pipe");
    assert_int_equal(mkfifo(fifo, 0600), 0);

    char *l = list_dump(dir);
    assert_string_equal(l, "[{\"name\":\"real.txt\",\"size\":6,\"type\":\"text\",\"mime\":\"text/plain\",\"first_lines\":\"hello\"}]");
    assert_null(strstr(l, "secret"));
    free(l);

    /* The symlink, the fifo and the others do not count against the cap either. */
    app_t two = test_app(1000, 2);
    store_ok(dir, &two, "second.txt", "2", "second.txt");

    /* ---- delete: everything goes, the symlink's target stays ---- */
    fig_err_t err = {0};
    assert_int_equal(uploads_delete(dir, &err), 0);
    struct stat st;
    assert_int_not_equal(lstat(dir, &st), 0);
    assert_int_equal(errno, ENOENT);
    size_t len;
    char *got = read_file(target, &len);
    assert_int_equal(len, 11);
    free(got);
    /* Deleting again (missing) is fine. */
    assert_int_equal(uploads_delete(dir, &err), 0);

    free(target);
    free(link);
    free(odd);
    free(dot);
    free(sub);
    free(fifo);
    free(dir);
}

static void test_delete_nested_and_symlinked_dir(void **s)
{
    (void)s;
    char *dir = fresh_dir("s8");
    app_t app = test_app(1000, 20);
    store_ok(dir, &app, "a.txt", "a", "a.txt");
    /* run_code may leave a tree of outputs. */
    char *sub = path_in(dir, "out");
    assert_int_equal(mkdir(sub, 0700), 0);
    char *deep = path_in(sub, "deeper");
    assert_int_equal(mkdir(deep, 0700), 0);
    char *f = path_in(deep, "r.csv");
    write_file(f, "1", 1);
    /* A symlink to a directory outside: removed, the outside kept. */
    char *outside = path_in(tmp_root, "keep-me");
    assert_int_equal(mkdir(outside, 0700), 0);
    char *keep = path_in(outside, "k.txt");
    write_file(keep, "k", 1);
    char *dl = path_in(dir, "dirlink");
    assert_int_equal(symlink(outside, dl), 0);

    fig_err_t err = {0};
    assert_int_equal(uploads_delete(dir, &err), 0);
    struct stat st;
    assert_int_not_equal(lstat(dir, &st), 0);
    assert_int_equal(stat(keep, &st), 0);

    /* A symlink in place of the session dir: the link goes, not the target's files. */
    char *dir2 = fresh_dir("s8link");
    assert_int_equal(symlink(outside, dir2), 0);
    assert_int_equal(uploads_delete(dir2, &err), 0);
    assert_int_not_equal(lstat(dir2, &st), 0);
    assert_int_equal(stat(keep, &st), 0);

    free(dir2);
    free(dl);
    free(keep);
    free(outside);
    free(f);
    free(deep);
    free(sub);
    free(dir);
}

/* ---- multipart file views (form.c) ---- */

static void test_form_files(void **s)
{
    (void)s;
    const char *ct = "multipart/form-data; boundary=XyZ";
    const char body[] = "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHi\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"../a.csv\"\r\n"
                        "Content-Type: text/csv\r\n\r\na,b\r\n1,2\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=\"g\"; filename=\"bin\"\r\n\r\n\0\x01\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=\"none\"; filename=\"\"\r\n"
                        "Content-Type: application/octet-stream\r\n\r\n\r\n"
                        "--XyZ--\r\n";
    size_t len = sizeof(body) - 1;
    fig_err_t err = {0};
    form_files_t files;
    json_t *j = form_parse_multipart_files(body, len, ct, &files, &err);
    if (j == NULL)
        fail_msg("parse failed: %s", err.msg);
    json_t *j0 = form_parse_multipart(body, len, ct, &err);
    assert_non_null(j0);
    assert_true(json_equal(j, j0)); /* the same form JSON as before */
    json_decref(j0);

    assert_int_equal(files.count, 2); /* the empty file input is left out */
    assert_string_equal(files.items[0].field, "f");
    assert_string_equal(files.items[0].filename, "a.csv");
    assert_string_equal(files.items[0].content_type, "text/csv");
    assert_int_equal(files.items[0].size, 8);
    assert_memory_equal(files.items[0].data, "a,b\r\n1,2", 8);
    assert_true(files.items[0].data > body && files.items[0].data < body + len); /* a view, not a copy */
    assert_string_equal(files.items[1].field, "g");
    assert_string_equal(files.items[1].content_type, "application/octet-stream");
    assert_int_equal(files.items[1].size, 2);
    assert_memory_equal(files.items[1].data, "\0\x01", 2);

    /* The views store as they are. */
    char *dir = fresh_dir("s9");
    app_t app = test_app(1000, 20);
    for (size_t i = 0; i < files.count; i++)
        assert_int_equal(uploads_store(dir, &app, files.items[i].filename, files.items[i].data, files.items[i].size,
                                       NULL, &err),
                         0);
    char *l = list_dump(dir);
    assert_non_null(strstr(l, "\"name\":\"a.csv\",\"size\":8,\"type\":\"text\""));
    assert_non_null(strstr(l, "\"name\":\"bin\",\"size\":2,\"type\":\"binary\""));
    free(l);
    free(dir);
    form_files_free(&files);
    json_decref(j);

    /* A malformed body: NULL, and no files. */
    const char bad[] = "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\nabc";
    j = form_parse_multipart_files(bad, sizeof(bad) - 1, ct, &files, &err);
    assert_null(j);
    assert_int_equal(files.count, 0);
    assert_null(files.items);
    form_files_free(&files);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize_traversal_and_hidden),
        cmocka_unit_test(test_sanitize_odd_bytes),
        cmocka_unit_test(test_sanitize_long_names),
        cmocka_unit_test(test_dir_paths),
        cmocka_unit_test(test_store_basic_and_modes),
        cmocka_unit_test(test_store_size_cap),
        cmocka_unit_test(test_store_count_cap),
        cmocka_unit_test(test_store_does_not_follow_symlinks),
        cmocka_unit_test(test_list_sniff_and_first_lines),
        cmocka_unit_test(test_list_limits_and_cut_characters),
        cmocka_unit_test(test_list_skips_symlinks_and_foreign_names),
        cmocka_unit_test(test_delete_nested_and_symlinked_dir),
        cmocka_unit_test(test_form_files),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
