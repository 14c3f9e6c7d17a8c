/*
 * http_front.h — figment's HTTP server: the h2o event loops (one per core, each with
 * its own SO_REUSEPORT listener, HTTP client and worker receiver), routing, strict
 * request checks (method, size, CSRF, content type), security headers on every
 * response, the app gallery, static files, and the hand-off of app requests to the
 * agent as interactions.
 *
 * server_run() blocks until SIGINT or SIGTERM, then stops accepting, lets the
 * interactions already accepted finish (bounded), lets the worker pool finish queued
 * writes, and returns.
 */
#ifndef FIG_HTTP_FRONT_H
#define FIG_HTTP_FRONT_H

#include "config.h"
#include "error.h"

/* Starts the loops and returns once listening (cfg must outlive the server). Used
 * in-process by `figment eval` and `figment replay`. NULL with err on failure. */
typedef struct server server_t;
server_t *server_start(const config_t *cfg, fig_err_t *err);
int server_port(const server_t *srv);
/* Waits until every finished interaction's trace is in var/traces.db. */
void server_flush_traces(server_t *srv);
/* Stops accepting, lets in-flight work and queued writes finish, frees everything. */
void server_stop(server_t *srv);

/* server_start(), then wait for SIGINT or SIGTERM, then server_stop(). */
int server_run(const config_t *cfg, fig_err_t *err);

#endif
