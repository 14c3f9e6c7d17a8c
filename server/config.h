/*
 * config.h — figment's runtime configuration: command-line flags and environment
 * variables, parsed once at start, validated strictly, immutable afterwards and
 * shared read-only by every thread.
 *
 * Environment (the simple case; a config file arrives with the providers issue):
 *   OPENAI_API_KEY   key for the OpenAI-compatible endpoint (optional for local servers)
 *   OPENAI_BASE_URL  endpoint base URL, default https://api.openai.com/v1
 *   FIGMENT_MODEL    model name, default gpt-4o-mini
 * The LLM counts as configured when OPENAI_API_KEY or OPENAI_BASE_URL is set.
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
    /* LLM */
    int llm_configured;
    char *llm_base_url;
    char *llm_api_key;     /* NULL when absent */
    char *llm_model;
    int llm_connect_timeout_ms; /* default 10000 */
} config_t;

/* Parses `figment serve` flags (argv after the sub-command) and the environment.
 * Unknown flags and malformed values are errors that name the flag. */
int config_parse(config_t *cfg, int argc, char **argv, fig_err_t *err);
void config_free(config_t *cfg);
void config_usage(const char *argv0);

#endif
