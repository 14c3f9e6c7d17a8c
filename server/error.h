/*
 * error.h — figment's one error type.
 *
 * Every fallible function takes a `fig_err_t *err` (may be NULL) and returns 0 on
 * success or -1 on failure after filling err with a code and a message a person can
 * act on (like curl_easy_strerror plus detail). The struct is plain data, no ownership.
 */
#ifndef FIG_ERROR_H
#define FIG_ERROR_H

typedef enum {
    FIG_OK = 0,
    FIG_E_INVALID,          /* bad input: request, file, JSON, argument */
    FIG_E_CONFIG,           /* configuration or app definition is wrong */
    FIG_E_IO,               /* file system or socket */
    FIG_E_DB,               /* SQLite */
    FIG_E_TOO_LARGE,        /* a size cap was hit */
    FIG_E_DENIED,           /* policy refused (authorizer, sanitizer, CSRF) */
    FIG_E_UPSTREAM,         /* the LLM endpoint failed or answered nonsense */
    FIG_E_UPSTREAM_TIMEOUT, /* the LLM endpoint or the interaction deadline ran out */
    FIG_E_TOOL,             /* a tool failed; goes back to the model */
    FIG_E_UNAVAILABLE,      /* feature not configured (no LLM) */
} fig_code_t;

typedef struct {
    fig_code_t code;
    char msg[512];
} fig_err_t;

void fig_err_set(fig_err_t *err, fig_code_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void fig_err_clear(fig_err_t *err);
/* A short, stable name for a code ("upstream", "too_large", ...). */
const char *fig_strerror(fig_code_t code);

#endif
