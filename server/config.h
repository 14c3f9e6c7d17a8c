/*
 * config.h — figment's runtime configuration: command-line flags and environment
 * variables, parsed once at start, validated strictly, immutable afterwards and
 * shared read-only by every thread.
 *
 * Which models figment calls is configured by providers.h: figment.json (--config,
 * default ./figment.json when that file exists) or, for the simple case, environment
 * variables (OPENAI_API_KEY, OPENAI_BASE_URL, FIGMENT_MODEL, ANTHROPIC_API_KEY, ...).
 *
 * Ownership: config_parse() fills a caller-provided struct whose strings it owns;
 * config_free() releases them.
 */
#ifndef FIG_CONFIG_H
#define FIG_CONFIG_H

#include "error.h"

typedef struct {
    char *listen_host;     /* default 127.0.0.1 */
    int listen_port;       /* default 8080; 0 = an ephemeral port */
    int threads;           /* event-loop threads, default = online cores */
    int workers;           /* blocking-work threads (SQLite), default 4 */
    char *prompts_dir;     /* default ./prompts */
    char *var_dir;         /* default ./var */
    char *static_dir;      /* default ./static */
    char *port_file;       /* if set, the bound port is written there */
    int quiet;             /* no per-interaction log line */
    char *config_path;     /* figment.json, or NULL: providers from the environment */
} config_t;

/* Parses `figment serve` flags (argv after the sub-command) and the environment.
 * Unknown flags and malformed values are errors that name the flag. */
int config_parse(config_t *cfg, int argc, char **argv, fig_err_t *err);
void config_free(config_t *cfg);
void config_usage(const char *argv0);

#endif
