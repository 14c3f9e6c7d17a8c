/*
 * http_front.h — figment's HTTP server: the h2o event loops (one per core, each with
 * its own SO_REUSEPORT listener, HTTP client and worker receiver), routing, strict
 * request checks (method, size, CSRF, content type), security headers on every
 * response, the app gallery, static files, and the hand-off of app requests to the
 * agent as interactions.
 *
 * server_run() blocks until SIGINT or SIGTERM, then stops accepting, lets the
 * worker pool finish queued writes, and returns.
 */
#ifndef FIG_HTTP_FRONT_H
#define FIG_HTTP_FRONT_H

#include "config.h"
#include "error.h"

int server_run(const config_t *cfg, fig_err_t *err);

#endif
