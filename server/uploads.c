/*
 * uploads.c — per-session upload directories: storing a user's files, describing
 * them to the model, deleting them (see uploads.h).
 *
 * Design:
 * - Names are reduced, never trusted: the client's file name becomes a basename of
 *   [A-Za-z0-9._-] without a leading dot, so it can neither leave the directory nor
 *   hide as a dot file nor collide with our temporary names (which start with '.').
 *   A name that is not already in that form is ignored when listing: run_code may
 *   leave files here too, and only names we could have written reach the prompt.
 * - The directory is opened once (O_DIRECTORY | O_NOFOLLOW) and everything after is
 *   relative to that descriptor (openat, renameat, fstatat with AT_SYMLINK_NOFOLLOW),
 *   so a symlink planted in place of a file or of the session directory is never
 *   followed: rename() replaces a symlink, it does not write through it.
 * - A store is atomic (temporary file, fsync, rename) and serialized per session by
 *   flock() on the directory, so the file-count cap holds when two requests of one
 *   session upload at once.
 * - The listing goes into the prompt, so it is deterministic: sorted by name, a fixed
 *   key order, sizes from fstat, text excerpts cut by fixed rules.
 */
#include "uploads.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "crypto.h"
#include "fsutil.h"

#define UPLOADS_MAX_EXT 16      /* an extension kept when a long name is cut: ".csv" */
#define UPLOADS_MAX_DEPTH 16    /* nested directories uploads_delete() descends */

/* ---- names ---- */

static int uploads_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

char *uploads_sanitize_name(const char *name, size_t len)
{
    if (name == NULL)
        len = 0;
    size_t start = 0;
    for (size_t i = 0; i < len; i++)
        if (name[i] == '/' || name[i] == '\\')
            start = i + 1;

    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append(&b, "", 0);
    for (size_t i = start; i < len;) {
        const unsigned char *p = (const unsigned char *)name + i;
        if (uploads_name_char(p[0])) {
            fig_buf_append(&b, (const char *)p, 1);
            i++;
            continue;
        }
        /* One '_' per character, not per byte: "résumé" -> "r_sum_". */
        int n = fig_utf8_seq(p, len - i);
        fig_buf_append(&b, "_", 1);
        i += n > 0 ? (size_t)n : 1;
    }
    for (size_t i = 0; i < b.len && b.data[i] == '.'; i++)
        b.data[i] = '_';
    if (b.len > UPLOADS_MAX_NAME) {
        /* Keep a short extension: the model and run_code read types from it. */
        const char *dot = strrchr(b.data, '.');
        size_t ext = dot != NULL ? b.len - (size_t)(dot - b.data) : 0;
        if (ext > UPLOADS_MAX_EXT)
            ext = 0;
        memmove(b.data + UPLOADS_MAX_NAME - ext, b.data + b.len - ext, ext);
        b.len = UPLOADS_MAX_NAME;
        b.data[b.len] = '\0';
    }
    if (b.len == 0)
        fig_buf_append_str(&b, "upload");
    return fig_buf_steal(&b);
}

/* 1 when name is exactly what uploads_sanitize_name() would store. */
static int uploads_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > UPLOADS_MAX_NAME || name[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!uploads_name_char((unsigned char)name[i]))
            return 0;
    return 1;
}

static int uploads_valid_app(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'));
        if (!ok)
            return 0;
    }
    return 1;
}

static int uploads_valid_session(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

char *uploads_dir(const char *var_dir, const char *app_name, const char *session_id)
{
    if (var_dir == NULL || !uploads_valid_app(app_name) || !uploads_valid_session(session_id))
        return NULL;
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_appendf(&b, "%s/uploads/%s/%s", var_dir, app_name, session_id);
    return fig_buf_steal(&b);
}

/* ---- directory walking ---- */

typedef struct {
    char *name;
    long long size;
} uploads_entry_t;

static int uploads_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const uploads_entry_t *)a)->name, ((const uploads_entry_t *)b)->name);
}

static void uploads_entries_free(uploads_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].name);
    free(e);
}

/* The listable files of the directory dfd (regular files with sanitized names),
 * unsorted. skip (may be NULL) is left out. Returns the count, or -1 with err. */
static long uploads_scan(int dfd, const char *dir, const char *skip, uploads_entry_t **out, fig_err_t *err)
{
    *out = NULL;
    int fd2 = dup(dfd);
    DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
    if (d == NULL) {
        if (fd2 >= 0)
            close(fd2);
        fig_err_set(err, FIG_E_IO, "%s: cannot read the directory: %s", dir, strerror(errno));
        return -1;
    }
    rewinddir(d); /* the dup shares the offset with dfd; start from the top */
    uploads_entry_t *items = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!uploads_name_ok(de->d_name) || (skip != NULL && strcmp(de->d_name, skip) == 0))
            continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            items = fig_realloc(items, cap * sizeof(*items));
        }
        items[n].name = fig_strdup(de->d_name);
        items[n].size = (long long)st.st_size;
        n++;
    }
    closedir(d);
    *out = items;
    return (long)n;
}

/* Opens dir without following a symlink in its place. -1 with errno on failure. */
static int uploads_open_dir(const char *dir)
{
    return open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* ---- store ---- */

static int uploads_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

int uploads_store(const char *dir, const app_t *app, const char *filename, const char *data, size_t len,
                  char **stored_name, fig_err_t *err)
{
    if (stored_name != NULL)
        *stored_name = NULL;
    if (dir == NULL || app == NULL || (data == NULL && len > 0)) {
        fig_err_set(err, FIG_E_INVALID, "uploads: nowhere to store the file");
        return -1;
    }
    char *name = uploads_sanitize_name(filename, filename ? strlen(filename) : 0);
    if (app->max_upload_bytes <= 0) {
        fig_err_set(err, FIG_E_TOO_LARGE, "This app does not accept file uploads (uploads.max_bytes is not set).");
        free(name);
        return -1;
    }
    if ((unsigned long long)len > (unsigned long long)app->max_upload_bytes) {
        fig_err_set(err, FIG_E_TOO_LARGE, "The file \"%s\" is %zu bytes; this app accepts files of at most %ld bytes.",
                    name, len, app->max_upload_bytes);
        free(name);
        return -1;
    }
    if (fs_mkdir_p(dir, 0700, err) != 0) {
        free(name);
        return -1;
    }
    int dfd = uploads_open_dir(dir);
    if (dfd < 0) {
        fig_err_set(err, FIG_E_IO, "%s: cannot open the upload directory: %s", dir, strerror(errno));
        free(name);
        return -1;
    }
    int ret = -1, fd = -1;
    char tmp[64] = "";
    while (flock(dfd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            fig_err_set(err, FIG_E_IO, "%s: cannot lock the upload directory: %s", dir, strerror(errno));
            goto done;
        }
    }

    /* The cap counts the files kept; replacing one of them keeps the count. */
    struct stat st;
    int replaces = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    if (!replaces) {
        uploads_entry_t *items;
        long n = uploads_scan(dfd, dir, name, &items, err);
        if (n < 0)
            goto done;
        uploads_entries_free(items, (size_t)n);
        if (n >= app->max_uploads) {
            fig_err_set(err, FIG_E_TOO_LARGE,
                        "This session already keeps %ld files; this app keeps at most %d files per session, so \"%s\" "
                        "was not stored.",
                        n, app->max_uploads, name);
            goto done;
        }
    }

    unsigned char rnd[8];
    if (crypto_random(rnd, sizeof(rnd)) != 0) {
        fig_err_set(err, FIG_E_IO, "uploads: the random source failed");
        goto done;
    }
    char *hex = crypto_hex(rnd, sizeof(rnd));
    snprintf(tmp, sizeof(tmp), ".upload-%s.tmp", hex);
    free(hex);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fig_err_set(err, FIG_E_IO, "%s: cannot create a file: %s", dir, strerror(errno));
        tmp[0] = '\0';
        goto done;
    }
    if (uploads_write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        fig_err_set(err, FIG_E_IO, "%s/%s: cannot write: %s", dir, name, strerror(errno));
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        fig_err_set(err, FIG_E_IO, "%s/%s: cannot write: %s", dir, name, strerror(errno));
        goto done;
    }
    fd = -1;
    if (renameat(dfd, tmp, dfd, name) != 0) {
        fig_err_set(err, FIG_E_IO, "%s/%s: cannot store: %s", dir, name, strerror(errno));
        goto done;
    }
    tmp[0] = '\0';
    ret = 0;
    if (stored_name != NULL) {
        *stored_name = name;
        name = NULL;
    }

done:
    if (fd >= 0)
        close(fd);
    if (tmp[0] != '\0')
        unlinkat(dfd, tmp, 0);
    close(dfd); /* releases the lock */
    free(name);
    return ret;
}

/* ---- list ---- */

static const struct {
    const char *ext;
    const char *mime;
} uploads_mimes[] = {
    {"csv", "text/csv"},
    {"tsv", "text/tab-separated-values"},
    {"txt", "text/plain"},
    {"log", "text/plain"},
    {"md", "text/markdown"},
    {"markdown", "text/markdown"},
    {"json", "application/json"},
    {"jsonl", "application/jsonl"},
    {"ndjson", "application/x-ndjson"},
    {"xml", "application/xml"},
    {"html", "text/html"},
    {"htm", "text/html"},
    {"css", "text/css"},
    {"js", "text/javascript"},
    {"py", "text/x-python"},
    {"sql", "application/sql"},
    {"yaml", "application/yaml"},
    {"yml", "application/yaml"},
    {"toml", "application/toml"},
    {"ics", "text/calendar"},
    {"vcf", "text/vcard"},
    {"eml", "message/rfc822"},
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"svg", "image/svg+xml"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"xls", "application/vnd.ms-excel"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
    {"sqlite", "application/vnd.sqlite3"},
    {"db", "application/vnd.sqlite3"},
};

static const char *uploads_mime(const char *name, int is_text)
{
    const char *dot = strrchr(name, '.');
    if (dot != NULL && dot != name)
        for (size_t i = 0; i < sizeof(uploads_mimes) / sizeof(uploads_mimes[0]); i++)
            if (strcasecmp(dot + 1, uploads_mimes[i].ext) == 0)
                return uploads_mimes[i].mime;
    return is_text ? "text/plain" : "application/octet-stream";
}

/* The first lines of a text buffer, as uploads.h describes. Caller frees. */
static char *uploads_first_lines(const unsigned char *buf, size_t n)
{
    size_t i = 0;
    if (n >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF)
        i = 3;
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append(&b, "", 0);
    int lines = 0;
    while (i < n) {
        unsigned char c = buf[i];
        if (c == '\r' || c == '\n') {
            i += c == '\r' && i + 1 < n && buf[i + 1] == '\n' ? 2 : 1;
            if (++lines == UPLOADS_FIRST_LINES)
                break;
            if (b.len + 1 > UPLOADS_FIRST_BYTES)
                break;
            fig_buf_append(&b, "\n", 1);
            continue;
        }
        int k = fig_utf8_seq(buf + i, n - i);
        if (k <= 0 || b.len + (size_t)k > UPLOADS_FIRST_BYTES)
            break; /* a cut character, or the byte cap: stop on a character boundary */
        fig_buf_append(&b, (const char *)buf + i, (size_t)k);
        i += (size_t)k;
    }
    /* A final line break ends the last line; it does not start another. */
    if (b.len > 0 && b.data[b.len - 1] == '\n')
        b.data[--b.len] = '\0';
    return fig_buf_steal(&b);
}

/* Describes one file; NULL when it vanished or is not a regular file any more. */
static json_t *uploads_describe(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NULL;
    }
    unsigned char buf[UPLOADS_SNIFF_BYTES];
    size_t n = 0;
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    int cut = (long long)st.st_size > (long long)n;
    int text = fig_utf8_is_text(buf, n, cut);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "size", json_integer((json_int_t)st.st_size));
    json_object_set_new(o, "type", json_string(text ? "text" : "binary"));
    json_object_set_new(o, "mime", json_string(uploads_mime(name, text)));
    if (text) {
        char *lines = uploads_first_lines(buf, n);
        json_object_set_new(o, "first_lines", json_string(lines));
        free(lines);
    }
    return o;
}

json_t *uploads_list(const char *dir, fig_err_t *err)
{
    if (dir == NULL) {
        fig_err_set(err, FIG_E_INVALID, "uploads: no directory");
        return NULL;
    }
    int dfd = uploads_open_dir(dir);
    if (dfd < 0) {
        if (errno == ENOENT)
            return json_array();
        fig_err_set(err, FIG_E_IO, "%s: cannot open the upload directory: %s", dir, strerror(errno));
        return NULL;
    }
    uploads_entry_t *items;
    long n = uploads_scan(dfd, dir, NULL, &items, err);
    if (n < 0) {
        close(dfd);
        return NULL;
    }
    qsort(items, (size_t)n, sizeof(*items), uploads_entry_cmp);
    json_t *arr = json_array();
    for (long i = 0; i < n && json_array_size(arr) < UPLOADS_LIST_MAX; i++) {
        json_t *o = uploads_describe(dfd, items[i].name);
        if (o != NULL)
            json_array_append_new(arr, o);
    }
    uploads_entries_free(items, (size_t)n);
    close(dfd);
    return arr;
}

/* ---- delete ---- */

/* Empties the directory dfd (takes ownership of it). */
static int uploads_empty_dir(int dfd, const char *dir, int depth, fig_err_t *err)
{
    if (depth > UPLOADS_MAX_DEPTH) {
        close(dfd);
        fig_err_set(err, FIG_E_IO, "%s: directories nested too deeply to delete", dir);
        return -1;
    }
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        fig_err_set(err, FIG_E_IO, "%s: cannot read the directory: %s", dir, strerror(errno));
        return -1;
    }
    int ret = 0;
    struct dirent *de;
    /* Unlinking while reading: restart after each pass until a pass removes nothing,
     * since readdir() may skip entries in a directory being changed. */
    for (int removed = 1; removed && ret == 0;) {
        removed = 0;
        rewinddir(d);
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            if (unlinkat(dirfd(d), de->d_name, 0) == 0) {
                removed = 1;
                continue;
            }
            if (errno == ENOENT)
                continue;
            if (errno != EISDIR && errno != EPERM) {
                fig_err_set(err, FIG_E_IO, "%s/%s: cannot delete: %s", dir, de->d_name, strerror(errno));
                ret = -1;
                break;
            }
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 || uploads_empty_dir(sub, dir, depth + 1, err) != 0 ||
                unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) != 0) {
                if (sub < 0 || err == NULL || err->code == FIG_OK)
                    fig_err_set(err, FIG_E_IO, "%s/%s: cannot delete: %s", dir, de->d_name, strerror(errno));
                ret = -1;
                break;
            }
            removed = 1;
        }
    }
    closedir(d);
    return ret;
}

int uploads_delete(const char *dir, fig_err_t *err)
{
    if (dir == NULL) {
        fig_err_set(err, FIG_E_INVALID, "uploads: no directory");
        return -1;
    }
    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        fig_err_set(err, FIG_E_IO, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        /* A symlink (or anything else) in place of the directory: remove it, not its target. */
        if (unlink(dir) != 0) {
            fig_err_set(err, FIG_E_IO, "%s: cannot delete: %s", dir, strerror(errno));
            return -1;
        }
        return 0;
    }
    int dfd = uploads_open_dir(dir);
    if (dfd < 0) {
        fig_err_set(err, FIG_E_IO, "%s: cannot open: %s", dir, strerror(errno));
        return -1;
    }
    if (err != NULL)
        fig_err_clear(err);
    if (uploads_empty_dir(dfd, dir, 0, err) != 0)
        return -1;
    if (rmdir(dir) != 0 && errno != ENOENT) {
        fig_err_set(err, FIG_E_IO, "%s: cannot delete: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}
