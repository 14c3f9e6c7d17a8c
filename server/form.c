/*
 * form.c — strict parsers for what browsers send: urlencoded bodies and query
 * strings, multipart/form-data (RFC 7578) and Cookie headers (see form.h).
 *
 * Design:
 * - Every input is a (pointer, length) pair; nothing relies on NUL termination,
 *   and a NUL byte in a field name or value is an error (it cannot survive as a C
 *   string or in the prompt).
 * - Invalid input is an error with a message, never a best guess: a bad %-escape,
 *   invalid UTF-8, a missing closing boundary, a malformed part header.
 * - Field counts are capped at FORM_MAX_FIELDS; byte sizes are capped by the caller
 *   (app limits.max_body_bytes) before the body reaches us.
 * - Multipart file contents are not copied: a file part becomes
 *   {"filename","content_type","size"}; the filename is reduced to its basename
 *   (browsers on Windows used to send full paths) with control characters removed.
 *   form_parse_multipart_files() also hands back (pointer, length) views of the
 *   file bytes inside the body, for the uploads store.
 * - ';' is not a urlencoded separator (WHATWG URL parsing splits on '&' only).
 */
#include "form.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define FORM_MAX_BOUNDARY 70
#define FORM_MAX_PART_HEADERS 8192 /* bytes of headers in one multipart part */
#define FORM_MAX_FILENAME 255      /* bytes, after sanitizing */

/* ---- small helpers ---- */

static int form_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 1 when s[0..len) is valid UTF-8 without NUL bytes. */
static int form_text_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] == 0)
            return 0;
        int n = fig_utf8_seq(p + i, len - i);
        if (n <= 0)
            return 0;
        i += (size_t)n;
    }
    return 1;
}

/* Decodes %XX (and '+' when asked) into out. Returns 0, or -1 on a bad escape. */
static int form_decode_into(const char *s, size_t len, int plus_is_space, fig_buf_t *out)
{
    fig_buf_reserve(out, len);
    fig_buf_append(out, "", 0); /* NUL-terminated even when nothing follows */
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (len - i < 3)
                return -1;
            int h = form_hexval((unsigned char)s[i + 1]), l = form_hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            char d = (char)(h << 4 | l);
            fig_buf_append(out, &d, 1);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            fig_buf_append(out, " ", 1);
        } else {
            fig_buf_append(out, &c, 1);
        }
    }
    return 0;
}

char *form_url_decode(const char *s, size_t len, int plus_is_space)
{
    fig_buf_t b = FIG_BUF_INIT;
    /* A decoded NUL cannot be returned in a C string without silently truncating
     * it, so %00 counts as a bad escape here. */
    if (form_decode_into(s, len, plus_is_space, &b) != 0 || memchr(b.data, '\0', b.len) != NULL) {
        fig_buf_free(&b);
        return NULL;
    }
    return fig_buf_steal(&b);
}

/* Adds value under name: the first occurrence is stored as is, a repeat turns the
 * entry into an array of all values in order. Takes ownership of value. */
static int form_add(json_t *obj, const char *name, json_t *value)
{
    json_t *cur = json_object_get(obj, name);
    if (cur == NULL)
        return json_object_set_new(obj, name, value);
    if (json_is_array(cur))
        return json_array_append_new(cur, value);
    json_t *arr = json_array();
    json_array_append(arr, cur);
    json_array_append_new(arr, value);
    return json_object_set_new(obj, name, arr);
}

/* ---- application/x-www-form-urlencoded ---- */

json_t *form_parse_urlencoded(const char *s, size_t len, fig_err_t *err)
{
    json_t *obj = json_object();
    fig_buf_t name = FIG_BUF_INIT, value = FIG_BUF_INIT;
    size_t fields = 0, pos = 0;

    while (pos < len) {
        const char *amp = memchr(s + pos, '&', len - pos);
        size_t end = amp ? (size_t)(amp - s) : len;
        const char *pair = s + pos;
        size_t plen = end - pos;
        pos = amp ? end + 1 : len;
        if (plen == 0)
            continue;

        if (++fields > FORM_MAX_FIELDS) {
            fig_err_set(err, FIG_E_TOO_LARGE, "form: more than %d fields", FORM_MAX_FIELDS);
            goto fail;
        }
        const char *eq = memchr(pair, '=', plen);
        size_t nlen = eq ? (size_t)(eq - pair) : plen;
        fig_buf_reset(&name);
        fig_buf_reset(&value);
        if (form_decode_into(pair, nlen, 1, &name) != 0 ||
            (eq && form_decode_into(eq + 1, plen - nlen - 1, 1, &value) != 0)) {
            fig_err_set(err, FIG_E_INVALID, "form: field %zu: bad %%-escape", fields);
            goto fail;
        }
        if (name.len == 0) {
            fig_err_set(err, FIG_E_INVALID, "form: field %zu: empty name", fields);
            goto fail;
        }
        if (!form_text_ok(name.data, name.len) || !form_text_ok(value.data ? value.data : "", value.len)) {
            fig_err_set(err, FIG_E_INVALID, "form: field %zu: not valid UTF-8 text", fields);
            goto fail;
        }
        if (form_add(obj, name.data, json_stringn(value.data ? value.data : "", value.len)) != 0) {
            fig_err_set(err, FIG_E_INVALID, "form: field %zu: cannot store", fields);
            goto fail;
        }
    }
    fig_buf_free(&name);
    fig_buf_free(&value);
    return obj;

fail:
    fig_buf_free(&name);
    fig_buf_free(&value);
    json_decref(obj);
    return NULL;
}

/* ---- header parameter parsing (Content-Type, Content-Disposition) ---- */

static int form_is_tchar(unsigned char c)
{
    /* RFC 9110 token characters. */
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void form_skip_ows(const char *s, size_t len, size_t *i)
{
    while (*i < len && (s[*i] == ' ' || s[*i] == '\t'))
        (*i)++;
}

/* Reads a token or a quoted-string (backslash escapes) at s[*i] into out. */
static int form_read_value(const char *s, size_t len, size_t *i, fig_buf_t *out)
{
    fig_buf_reset(out);
    if (*i < len && s[*i] == '"') {
        (*i)++;
        while (*i < len) {
            char c = s[*i];
            if (c == '"') {
                (*i)++;
                if (out->data == NULL)
                    fig_buf_append(out, "", 0);
                return 0;
            }
            if (c == '\\') {
                if (*i + 1 >= len)
                    return -1;
                c = s[++*i];
            }
            if (c == '\r' || c == '\n')
                return -1;
            fig_buf_append(out, &c, 1);
            (*i)++;
        }
        return -1; /* unterminated */
    }
    size_t start = *i;
    while (*i < len && form_is_tchar((unsigned char)s[*i]))
        (*i)++;
    if (*i == start)
        return -1;
    fig_buf_append(out, s + start, *i - start);
    return 0;
}

/* Iterates "; name=value" parameters. Returns 1 with a parameter in pname/pvalue,
 * 0 at the end, -1 on a syntax error. */
static int form_next_param(const char *s, size_t len, size_t *i, fig_buf_t *pname, fig_buf_t *pvalue)
{
    form_skip_ows(s, len, i);
    if (*i == len)
        return 0;
    if (s[*i] != ';')
        return -1;
    (*i)++;
    form_skip_ows(s, len, i);
    size_t start = *i;
    while (*i < len && form_is_tchar((unsigned char)s[*i]))
        (*i)++;
    if (*i == start)
        return -1;
    fig_buf_reset(pname);
    for (size_t k = start; k < *i; k++) {
        char c = (char)tolower((unsigned char)s[k]);
        fig_buf_append(pname, &c, 1);
    }
    form_skip_ows(s, len, i);
    if (*i == len || s[*i] != '=')
        return -1;
    (*i)++;
    form_skip_ows(s, len, i);
    if (form_read_value(s, len, i, pvalue) != 0)
        return -1;
    return 1;
}

/* Matches a case-insensitive word at s[*i] (e.g. "form-data"), advancing past it. */
static int form_match_word(const char *s, size_t len, size_t *i, const char *word)
{
    size_t n = strlen(word);
    if (len - *i < n || strncasecmp(s + *i, word, n) != 0)
        return 0;
    if (*i + n < len && (form_is_tchar((unsigned char)s[*i + n]) || s[*i + n] == '/'))
        return 0;
    *i += n;
    return 1;
}

static int form_boundary_char(unsigned char c)
{
    /* RFC 2046 bchars. */
    return isalnum(c) || (c != 0 && strchr("'()+_,-./:=? ", c) != NULL);
}

/* Extracts and validates the boundary parameter of a multipart/form-data type. */
static int form_boundary(const char *ct, fig_buf_t *boundary, fig_err_t *err)
{
    size_t len = strlen(ct), i = 0;
    fig_buf_t pname = FIG_BUF_INIT, pvalue = FIG_BUF_INIT;
    int found = 0, r;

    form_skip_ows(ct, len, &i);
    if (!form_match_word(ct, len, &i, "multipart/form-data")) {
        fig_err_set(err, FIG_E_INVALID, "multipart: content type is not multipart/form-data");
        goto fail;
    }
    while ((r = form_next_param(ct, len, &i, &pname, &pvalue)) == 1) {
        if (strcmp(pname.data, "boundary") != 0)
            continue;
        if (found) {
            fig_err_set(err, FIG_E_INVALID, "multipart: boundary given twice");
            goto fail;
        }
        found = 1;
        fig_buf_reset(boundary);
        fig_buf_append(boundary, pvalue.data, pvalue.len);
    }
    if (r < 0) {
        fig_err_set(err, FIG_E_INVALID, "multipart: malformed Content-Type parameters");
        goto fail;
    }
    if (!found) {
        fig_err_set(err, FIG_E_INVALID, "multipart: Content-Type has no boundary");
        goto fail;
    }
    if (boundary->len < 1 || boundary->len > FORM_MAX_BOUNDARY || boundary->data[boundary->len - 1] == ' ') {
        fig_err_set(err, FIG_E_INVALID, "multipart: boundary must be 1 to %d characters", FORM_MAX_BOUNDARY);
        goto fail;
    }
    for (size_t k = 0; k < boundary->len; k++) {
        if (!form_boundary_char((unsigned char)boundary->data[k])) {
            fig_err_set(err, FIG_E_INVALID, "multipart: boundary has a character RFC 2046 does not allow");
            goto fail;
        }
    }
    fig_buf_free(&pname);
    fig_buf_free(&pvalue);
    return 0;

fail:
    fig_buf_free(&pname);
    fig_buf_free(&pvalue);
    return -1;
}

/* ---- multipart/form-data ---- */

static const char *form_memmem(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    return memmem(hay, hlen, needle, nlen);
}

/* After a delimiter "--boundary" at body[*pos]: returns 1 for a close delimiter
 * ("--"), 0 for a part delimiter (transport padding then CRLF), -1 otherwise.
 * Advances *pos past what it consumed. */
static int form_after_delimiter(const char *body, size_t len, size_t *pos)
{
    size_t i = *pos;
    if (len - i >= 2 && body[i] == '-' && body[i + 1] == '-') {
        *pos = i + 2;
        return 1;
    }
    while (i < len && (body[i] == ' ' || body[i] == '\t'))
        i++;
    if (len - i >= 2 && body[i] == '\r' && body[i + 1] == '\n') {
        *pos = i + 2;
        return 0;
    }
    return -1;
}

/* Reduces a client filename to a safe basename: the part after the last '/' or
 * '\\', without control characters; "." and ".." become "". */
static char *form_sanitize_filename(const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '/' || s[i] == '\\')
            start = i + 1;
    fig_buf_t b = FIG_BUF_INIT;
    fig_buf_append(&b, "", 0);
    for (size_t i = start; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            continue;
        fig_buf_append(&b, (const char *)&c, 1);
    }
    /* Cap the length without splitting a UTF-8 sequence. */
    if (b.len > FORM_MAX_FILENAME) {
        size_t cut = FORM_MAX_FILENAME;
        while (cut > 0 && ((unsigned char)b.data[cut] & 0xC0) == 0x80)
            cut--;
        b.len = cut;
        b.data[cut] = '\0';
    }
    if (strcmp(b.data, ".") == 0 || strcmp(b.data, "..") == 0)
        fig_buf_reset(&b);
    return fig_buf_steal(&b);
}

typedef struct {
    fig_buf_t name;
    fig_buf_t filename;
    fig_buf_t content_type;
    int has_disposition, has_filename, has_content_type;
} form_part_t;

static void form_part_free(form_part_t *p)
{
    fig_buf_free(&p->name);
    fig_buf_free(&p->filename);
    fig_buf_free(&p->content_type);
}

static void form_trim(const char **s, size_t *len)
{
    while (*len > 0 && ((*s)[0] == ' ' || (*s)[0] == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

static int form_parse_disposition(const char *v, size_t len, form_part_t *part, fig_err_t *err, size_t partno)
{
    size_t i = 0;
    fig_buf_t pname = FIG_BUF_INIT, pvalue = FIG_BUF_INIT;
    int has_name = 0, r;

    if (!form_match_word(v, len, &i, "form-data")) {
        fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: Content-Disposition is not form-data", partno);
        goto fail;
    }
    while ((r = form_next_param(v, len, &i, &pname, &pvalue)) == 1) {
        fig_buf_t *dst;
        int *seen;
        if (strcmp(pname.data, "name") == 0) {
            dst = &part->name;
            seen = &has_name;
        } else if (strcmp(pname.data, "filename") == 0) {
            dst = &part->filename;
            seen = &part->has_filename;
        } else {
            continue; /* other parameters (filename*, ...) carry nothing we use */
        }
        if (*seen) {
            fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: parameter %s given twice", partno, pname.data);
            goto fail;
        }
        *seen = 1;
        fig_buf_reset(dst);
        fig_buf_append(dst, pvalue.data, pvalue.len);
    }
    if (r < 0) {
        fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: malformed Content-Disposition", partno);
        goto fail;
    }
    if (!has_name || part->name.len == 0) {
        fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: Content-Disposition has no name", partno);
        goto fail;
    }
    if (!form_text_ok(part->name.data, part->name.len) ||
        (part->has_filename && !form_text_ok(part->filename.data, part->filename.len))) {
        fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: name or filename is not valid UTF-8 text", partno);
        goto fail;
    }
    fig_buf_free(&pname);
    fig_buf_free(&pvalue);
    return 0;

fail:
    fig_buf_free(&pname);
    fig_buf_free(&pvalue);
    return -1;
}

/* Parses the header block hdr[0..len) (CRLF-separated lines, no final empty line). */
static int form_parse_part_headers(const char *hdr, size_t len, form_part_t *part, fig_err_t *err, size_t partno)
{
    size_t pos = 0;
    while (pos < len) {
        const char *eol = form_memmem(hdr + pos, len - pos, "\r\n", 2);
        size_t end = eol ? (size_t)(eol - hdr) : len;
        const char *line = hdr + pos;
        size_t llen = end - pos;
        pos = eol ? end + 2 : len;

        if (llen == 0 || line[0] == ' ' || line[0] == '\t') {
            fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: malformed header line", partno);
            return -1;
        }
        const char *colon = memchr(line, ':', llen);
        if (colon == NULL || colon == line) {
            fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: header line without a name", partno);
            return -1;
        }
        size_t nlen = (size_t)(colon - line);
        for (size_t k = 0; k < nlen; k++) {
            if (!form_is_tchar((unsigned char)line[k])) {
                fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: bad header name", partno);
                return -1;
            }
        }
        const char *v = colon + 1;
        size_t vlen = llen - nlen - 1;
        form_trim(&v, &vlen);
        for (size_t k = 0; k < vlen; k++) {
            unsigned char c = (unsigned char)v[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: control character in a header", partno);
                return -1;
            }
        }

        if (nlen == 19 && strncasecmp(line, "Content-Disposition", 19) == 0) {
            if (part->has_disposition) {
                fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: Content-Disposition given twice", partno);
                return -1;
            }
            part->has_disposition = 1;
            if (form_parse_disposition(v, vlen, part, err, partno) != 0)
                return -1;
        } else if (nlen == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
            if (part->has_content_type) {
                fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: Content-Type given twice", partno);
                return -1;
            }
            part->has_content_type = 1;
            if (!form_text_ok(v, vlen)) {
                fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: Content-Type is not text", partno);
                return -1;
            }
            fig_buf_reset(&part->content_type);
            fig_buf_append(&part->content_type, v, vlen);
        }
        /* Other headers (RFC 7578 allows none that matter) are ignored. */
    }
    if (!part->has_disposition) {
        fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: missing Content-Disposition", partno);
        return -1;
    }
    return 0;
}

void form_files_free(form_files_t *files)
{
    if (files == NULL)
        return;
    for (size_t i = 0; i < files->count; i++) {
        free(files->items[i].field);
        free(files->items[i].filename);
        free(files->items[i].content_type);
    }
    free(files->items);
    files->items = NULL;
    files->count = 0;
}

static void form_files_add(form_files_t *files, const char *field, const char *filename, const char *ct,
                           const char *data, size_t size)
{
    files->items = fig_realloc(files->items, (files->count + 1) * sizeof(*files->items));
    form_file_t *f = &files->items[files->count++];
    f->field = fig_strdup(field);
    f->filename = fig_strdup(filename);
    f->content_type = fig_strdup(ct);
    f->data = data;
    f->size = size;
}

json_t *form_parse_multipart(const char *body, size_t len, const char *content_type, fig_err_t *err)
{
    return form_parse_multipart_files(body, len, content_type, NULL, err);
}

json_t *form_parse_multipart_files(const char *body, size_t len, const char *content_type, form_files_t *files,
                                   fig_err_t *err)
{
    if (files != NULL) {
        files->items = NULL;
        files->count = 0;
    }
    fig_buf_t boundary = FIG_BUF_INIT, delim = FIG_BUF_INIT;
    json_t *obj = NULL;
    size_t partno = 0;

    if (body == NULL) {
        body = "";
        len = 0;
    }
    if (content_type == NULL) {
        fig_err_set(err, FIG_E_INVALID, "multipart: no Content-Type");
        goto fail_noerr;
    }
    if (form_boundary(content_type, &boundary, err) != 0)
        goto fail_noerr;

    /* delim = CRLF "--" boundary: every delimiter but a first one at offset 0. */
    fig_buf_append(&delim, "\r\n--", 4);
    fig_buf_append(&delim, boundary.data, boundary.len);

    size_t pos;
    if (len >= delim.len - 2 && memcmp(body, delim.data + 2, delim.len - 2) == 0) {
        pos = delim.len - 2;
    } else {
        const char *d = form_memmem(body, len, delim.data, delim.len);
        if (d == NULL) {
            fig_err_set(err, FIG_E_INVALID, "multipart: body does not contain the boundary (truncated?)");
            goto fail_noerr;
        }
        pos = (size_t)(d - body) + delim.len; /* the preamble is ignored */
    }

    obj = json_object();
    for (;;) {
        int r = form_after_delimiter(body, len, &pos);
        if (r == 1)
            break; /* close delimiter; the epilogue is ignored */
        if (r < 0) {
            if (pos >= len || len - pos < 2)
                fig_err_set(err, FIG_E_INVALID, "multipart: body is truncated after a boundary");
            else
                fig_err_set(err, FIG_E_INVALID, "multipart: malformed boundary line");
            goto fail;
        }
        if (++partno > FORM_MAX_FIELDS) {
            fig_err_set(err, FIG_E_TOO_LARGE, "multipart: more than %d fields", FORM_MAX_FIELDS);
            goto fail;
        }

        /* Headers end at the first empty line. A part with no headers at all is
         * malformed anyway (Content-Disposition is required). */
        size_t hlimit = len - pos < FORM_MAX_PART_HEADERS + 4 ? len - pos : FORM_MAX_PART_HEADERS + 4;
        const char *hend = form_memmem(body + pos, hlimit, "\r\n\r\n", 4);
        if (hend == NULL) {
            if (hlimit < len - pos)
                fig_err_set(err, FIG_E_TOO_LARGE, "multipart: part %zu: headers too large", partno);
            else
                fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: truncated headers", partno);
            goto fail;
        }
        form_part_t part = {FIG_BUF_INIT, FIG_BUF_INIT, FIG_BUF_INIT, 0, 0, 0};
        if (form_parse_part_headers(body + pos, (size_t)(hend - (body + pos)), &part, err, partno) != 0) {
            form_part_free(&part);
            goto fail;
        }
        pos = (size_t)(hend - body) + 4;

        const char *d = form_memmem(body + pos, len - pos, delim.data, delim.len);
        if (d == NULL) {
            fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: truncated (no closing boundary)", partno);
            form_part_free(&part);
            goto fail;
        }
        const char *content = body + pos;
        size_t clen = (size_t)(d - content);
        pos = (size_t)(d - body) + delim.len;

        json_t *value;
        if (part.has_filename) {
            char *fname = form_sanitize_filename(part.filename.data, part.filename.len);
            const char *ct = part.content_type.len ? part.content_type.data : "application/octet-stream";
            value = json_pack("{s:s, s:s, s:I}", "filename", fname, "content_type", ct, "size", (json_int_t)clen);
            if (files != NULL && value != NULL && (fname[0] != '\0' || clen > 0))
                form_files_add(files, part.name.data, fname, ct, content, clen);
            free(fname);
        } else {
            if (!form_text_ok(content, clen)) {
                fig_err_set(err, FIG_E_INVALID, "multipart: field \"%.64s\": not valid UTF-8 text", part.name.data);
                form_part_free(&part);
                goto fail;
            }
            value = json_stringn(content, clen);
        }
        if (value == NULL || form_add(obj, part.name.data, value) != 0) {
            fig_err_set(err, FIG_E_INVALID, "multipart: part %zu: cannot store", partno);
            form_part_free(&part);
            goto fail;
        }
        form_part_free(&part);
    }
    fig_buf_free(&boundary);
    fig_buf_free(&delim);
    return obj;

fail:
    json_decref(obj);
fail_noerr:
    fig_buf_free(&boundary);
    fig_buf_free(&delim);
    form_files_free(files);
    return NULL;
}

/* ---- Cookie header ---- */

char *form_cookie_get(const char *header, size_t len, const char *name)
{
    if (header == NULL || name == NULL)
        return NULL;
    size_t name_len = strlen(name), pos = 0;
    while (pos < len) {
        const char *semi = memchr(header + pos, ';', len - pos);
        size_t end = semi ? (size_t)(semi - header) : len;
        const char *pair = header + pos;
        size_t plen = end - pos;
        pos = semi ? end + 1 : len;

        form_trim(&pair, &plen);
        const char *eq = memchr(pair, '=', plen);
        if (eq == NULL)
            continue;
        const char *n = pair, *v = eq + 1;
        size_t nlen = (size_t)(eq - pair), vlen = plen - nlen - 1;
        form_trim(&n, &nlen);
        form_trim(&v, &vlen);
        if (nlen != name_len || memcmp(n, name, nlen) != 0)
            continue;
        if (memchr(v, '\0', vlen) != NULL)
            continue; /* cannot be returned intact */
        return fig_strndup(v, vlen);
    }
    return NULL;
}
