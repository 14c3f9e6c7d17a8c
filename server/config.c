/*
 * config.c — flags and environment into an immutable config_t (see config.h).
 * Strict: every value is checked and an error names the flag or variable.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_listen(config_t *cfg, const char *s, fig_err_t *err)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s) {
        fig_err_set(err, FIG_E_CONFIG, "--listen: expected HOST:PORT (e.g. 127.0.0.1:8080), got '%s'", s);
        return -1;
    }
    int port;
    if (parse_int(colon + 1, 0, 65535, &port) != 0) {
        fig_err_set(err, FIG_E_CONFIG, "--listen: the port must be a number from 0 to 65535, got '%s'", colon + 1);
        return -1;
    }
    const char *host = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    free(cfg->listen_host);
    cfg->listen_host = fig_strndup(host, hlen);
    cfg->listen_port = port;
    return 0;
}

static void set_str(char **slot, const char *v)
{
    free(*slot);
    *slot = fig_strdup(v);
}

void config_usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [serve] [--listen HOST:PORT] [--threads N] [--workers N] [--config figment.json]\n"
            "              [--prompts DIR] [--var DIR] [--static DIR] [--port-file FILE] [--quiet]\n"
            "       %s render [FILE]      print the sanitized HTML of a page (Markdown + HTML)\n"
            "       figment eval FILE.jsonl [serve flags] [--threshold R] [--compare-models A,B] [--json]\n"
            "       figment replay TRACE_ID [serve flags] [--model provider/model]\n"
            "environment (without figment.json): OPENAI_API_KEY, OPENAI_BASE_URL, FIGMENT_MODEL,\n"
            "             ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, FIGMENT_ANTHROPIC_MODEL\n",
            argv0, argv0);
}

int config_parse(config_t *cfg, int argc, char **argv, fig_err_t *err)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen_host = fig_strdup("127.0.0.1");
    cfg->listen_port = 8080;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cores > 0 ? (int)(cores > 64 ? 64 : cores) : 1;
    cfg->workers = 4;
    cfg->prompts_dir = fig_strdup("prompts");
    cfg->var_dir = fig_strdup("var");
    cfg->static_dir = fig_strdup("static");

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = 1;
        if (strcmp(a, "--quiet") == 0) {
            cfg->quiet = 1;
            takes_value = 0;
        } else if (v == NULL && (strcmp(a, "--listen") == 0 || strcmp(a, "--threads") == 0 ||
                                 strcmp(a, "--workers") == 0 || strcmp(a, "--prompts") == 0 ||
                                 strcmp(a, "--var") == 0 || strcmp(a, "--static") == 0 ||
                                 strcmp(a, "--port-file") == 0 || strcmp(a, "--config") == 0)) {
            fig_err_set(err, FIG_E_CONFIG, "%s needs a value", a);
            goto Error;
        } else if (strcmp(a, "--listen") == 0) {
            if (parse_listen(cfg, v, err) != 0)
                goto Error;
        } else if (strcmp(a, "--threads") == 0) {
            if (parse_int(v, 1, 64, &cfg->threads) != 0) {
                fig_err_set(err, FIG_E_CONFIG, "--threads: expected a number from 1 to 64, got '%s'", v);
                goto Error;
            }
        } else if (strcmp(a, "--workers") == 0) {
            if (parse_int(v, 1, 64, &cfg->workers) != 0) {
                fig_err_set(err, FIG_E_CONFIG, "--workers: expected a number from 1 to 64, got '%s'", v);
                goto Error;
            }
        } else if (strcmp(a, "--prompts") == 0) {
            set_str(&cfg->prompts_dir, v);
        } else if (strcmp(a, "--var") == 0) {
            set_str(&cfg->var_dir, v);
        } else if (strcmp(a, "--static") == 0) {
            set_str(&cfg->static_dir, v);
        } else if (strcmp(a, "--port-file") == 0) {
            set_str(&cfg->port_file, v);
        } else if (strcmp(a, "--config") == 0) {
            set_str(&cfg->config_path, v);
        } else {
            fig_err_set(err, FIG_E_CONFIG, "unknown option '%s' (see figment --help)", a);
            goto Error;
        }
        i += takes_value;
    }

    if (cfg->config_path == NULL && access("figment.json", F_OK) == 0)
        cfg->config_path = fig_strdup("figment.json");
    return 0;
Error:
    config_free(cfg);
    return -1;
}

void config_free(config_t *cfg)
{
    free(cfg->listen_host);
    free(cfg->prompts_dir);
    free(cfg->var_dir);
    free(cfg->static_dir);
    free(cfg->port_file);
    free(cfg->config_path);
    memset(cfg, 0, sizeof(*cfg));
}
