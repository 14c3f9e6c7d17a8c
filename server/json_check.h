/*
 * json_check.h — small helpers shared by the strict validators of configuration
 * files (app.json in app.c, figment.json in providers.c): naming a JSON value's type
 * and quoting untrusted text in an error message, and the text checks both apply.
 */
#ifndef FIG_JSON_CHECK_H
#define FIG_JSON_CHECK_H

#include <jansson.h>
#include <stddef.h>

/* "an object", "a string", "an integer", ... for "expected X, got Y" messages. */
const char *json_check_type_name(const json_t *v);
/* Copies s into buf (cap bytes) for an error message: control bytes become '?', long
 * text ends in "...". Returns buf. */
const char *json_check_printable(const char *s, char *buf, size_t cap);
/* Code points of a valid UTF-8 string (jansson guarantees validity). */
size_t json_check_utf8_chars(const char *s);
/* 1 when s holds a control character (DEL included); newline and tab are allowed
 * when allow_newline. */
int json_check_has_control(const char *s, int allow_newline);

#endif
