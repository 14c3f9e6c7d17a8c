/*
 * fuzz_form.c — libFuzzer target for form.c: urlencoded bodies, multipart bodies
 * (with the Content-Type taken from the input's first line, or a fixed one) and
 * Cookie headers. Besides memory errors it checks the parsers' promises: every
 * result is an object whose members are strings, file objects or arrays of them,
 * and it serializes.
 *
 * Build and run (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iserver \
 *     tests/fuzz/fuzz_form.c server/form.c server/buf.c server/error.c -ljansson -o /tmp/fuzz_form
 *   mkdir -p /tmp/fuzz_form_corpus && /tmp/fuzz_form -max_total_time=60 /tmp/fuzz_form_corpus
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"

static void fuzz_check_value(const json_t *v)
{
    if (json_is_string(v))
        return;
    if (json_is_object(v)) {
        if (!json_is_string(json_object_get(v, "filename")) || !json_is_string(json_object_get(v, "content_type")) ||
            !json_is_integer(json_object_get(v, "size")) || json_object_size(v) != 3)
            abort();
        const char *fn = json_string_value(json_object_get(v, "filename"));
        if (strchr(fn, '/') || strchr(fn, '\\') || strcmp(fn, "..") == 0)
            abort();
        for (const unsigned char *p = (const unsigned char *)fn; *p; p++)
            if (*p < 0x20 || *p == 0x7f)
                abort();
        return;
    }
    abort();
}

static void fuzz_check(json_t *obj, fig_err_t *err)
{
    if (obj == NULL) {
        if (err->code == FIG_OK || err->msg[0] == '\0')
            abort(); /* every failure explains itself */
        return;
    }
    if (!json_is_object(obj))
        abort();
    const char *k;
    json_t *v;
    size_t total = 0;
    json_object_foreach(obj, k, v) {
        if (k[0] == '\0')
            abort();
        if (json_is_array(v)) {
            if (json_array_size(v) < 2)
                abort();
            for (size_t i = 0; i < json_array_size(v); i++)
                fuzz_check_value(json_array_get(v, i));
            total += json_array_size(v);
        } else {
            fuzz_check_value(v);
            total++;
        }
    }
    if (total > FORM_MAX_FIELDS)
        abort();
    char *s = json_dumps(obj, JSON_COMPACT);
    if (s == NULL)
        abort();
    free(s);
    json_decref(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    fig_err_t err;

    err.code = FIG_OK;
    err.msg[0] = '\0';
    fuzz_check(form_parse_urlencoded(s, size, &err), &err);

    char *d = form_url_decode(s, size, 1);
    if (d != NULL && strlen(d) > size)
        abort();
    free(d);

    char *c = form_cookie_get(s, size, "figment_sid");
    free(c);
    c = form_cookie_get(s, size, "a");
    free(c);

    /* Multipart: "<content type>\n<body>" or a fixed type for the whole input. */
    const char *nl = memchr(s, '\n', size < 256 ? size : 256);
    if (nl != NULL) {
        char *ct = strndup(s, (size_t)(nl - s));
        err.code = FIG_OK;
        err.msg[0] = '\0';
        fuzz_check(form_parse_multipart(nl + 1, size - (size_t)(nl - s) - 1, ct, &err), &err);
        free(ct);
    }
    err.code = FIG_OK;
    err.msg[0] = '\0';
    fuzz_check(form_parse_multipart(s, size, "multipart/form-data; boundary=XyZ", &err), &err);
    return 0;
}
