/*
 * form.h — strict parsing of what browsers send: application/x-www-form-urlencoded
 * bodies and query strings, multipart/form-data bodies, and Cookie headers.
 *
 * Results are jansson objects owned by the caller (json_decref). A field that
 * appears once maps to a string; a field repeated maps to an array of strings in
 * order. Invalid input (bad %-escape, invalid UTF-8, a malformed multipart body,
 * more than FORM_MAX_FIELDS fields) is an error, never a guess.
 */
#ifndef FIG_FORM_H
#define FIG_FORM_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"

#define FORM_MAX_FIELDS 256

/* "a=1&b=x+y%21" -> {"a":"1","b":"x y!"}. Returns NULL and sets err on bad input. */
json_t *form_parse_urlencoded(const char *s, size_t len, fig_err_t *err);

/* Parses a multipart/form-data body. content_type is the full header value
 * (the boundary parameter is read from it). Text fields become strings; each file
 * part becomes, under its field name, an object
 * {"filename": "...", "content_type": "...", "size": N} and its bytes are not
 * kept here (form_parse_multipart_files() below hands them to uploads.h). */
json_t *form_parse_multipart(const char *body, size_t len, const char *content_type, fig_err_t *err);

/* The file parts of a multipart body, for storing them (uploads.h). */
typedef struct {
    char *field;          /* the part's field name */
    char *filename;       /* the client's file name, reduced as in the form JSON */
    char *content_type;   /* the part's Content-Type, "application/octet-stream" when absent */
    const char *data;     /* the bytes: points into the body given to the parser (not owned) */
    size_t size;
} form_file_t;

typedef struct {
    form_file_t *items;
    size_t count;
} form_files_t;

/* Like form_parse_multipart() (same result, same errors), and also fills *files with
 * the file parts in body order. A part with an empty file name and no bytes (a file
 * input left empty) is not in *files. `data` pointers are valid while body is.
 * On failure *files is empty. Release with form_files_free(). */
json_t *form_parse_multipart_files(const char *body, size_t len, const char *content_type, form_files_t *files,
                                   fig_err_t *err);
void form_files_free(form_files_t *files);

/* Finds cookie `name` in a Cookie header value. Returns a malloc'd copy of the
 * value, or NULL when absent. */
char *form_cookie_get(const char *header, size_t len, const char *name);

/* Percent-decodes in place-independent fashion: returns malloc'd string or NULL on a
 * bad escape. plus_is_space: '+' means ' ' (form bodies and query strings). */
char *form_url_decode(const char *s, size_t len, int plus_is_space);

#endif
