/*
 * error.c — the one error type (see error.h).
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

void fig_err_set(fig_err_t *err, fig_code_t code, const char *fmt, ...)
{
    if (err == NULL)
        return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

void fig_err_clear(fig_err_t *err)
{
    if (err == NULL)
        return;
    err->code = FIG_OK;
    err->msg[0] = '\0';
}

const char *fig_strerror(fig_code_t code)
{
    switch (code) {
    case FIG_OK: return "ok";
    case FIG_E_INVALID: return "invalid";
    case FIG_E_CONFIG: return "config";
    case FIG_E_IO: return "io";
    case FIG_E_DB: return "db";
    case FIG_E_TOO_LARGE: return "too_large";
    case FIG_E_DENIED: return "denied";
    case FIG_E_UPSTREAM: return "upstream";
    case FIG_E_UPSTREAM_TIMEOUT: return "upstream_timeout";
    case FIG_E_TOOL: return "tool";
    case FIG_E_UNAVAILABLE: return "unavailable";
    }
    return "unknown";
}
