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
 * kept here (uploads are stored by a later subsystem). */
json_t *form_parse_multipart(const char *body, size_t len, const char *content_type, fig_err_t *err);

/* Finds cookie `name` in a Cookie header value. Returns a malloc'd copy of the
 * value, or NULL when absent. */
char *form_cookie_get(const char *header, size_t len, const char *name);

/* Percent-decodes in place-independent fashion: returns malloc'd string or NULL on a
 * bad escape. plus_is_space: '+' means ' ' (form bodies and query strings). */
char *form_url_decode(const char *s, size_t len, int plus_is_space);

#endif
