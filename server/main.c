/*
 * main.c — figment's command line: `figment [serve] [flags]` runs the server,
 * `figment render [FILE]` prints the sanitized HTML figment would serve for a page
 * written as a model writes it (Markdown with inline HTML), for prompt authors and
 * tests of the sanitizer.
 */
#include <curl/curl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "eval.h"
#include "tool_cli.h"
#include "http_front.h"
#include "render.h"

static int cmd_render(int argc, char **argv)
{
    const char *app = "app";
    const char *file = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--app") == 0 && i + 1 < argc)
            app = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "figment render: unknown option '%s'\nusage: figment render [--app NAME] [FILE|-]\n",
                    argv[i]);
            return 2;
        } else
            file = argv[i];
    }
    FILE *f = stdin;
    if (file != NULL && strcmp(file, "-") != 0 && (f = fopen(file, "rb")) == NULL) {
        perror(file);
        return 1;
    }
    fig_buf_t in = FIG_BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fig_buf_append(&in, chunk, n);
    if (f != stdin)
        fclose(f);
    sanitize_opts_t so = {app, "CSRF-TOKEN"};
    render_page_t page = {0};
    fig_err_t err;
    fig_err_clear(&err);
    int rc = render_page(in.data ? in.data : "", in.len, &so, &page, &err);
    fig_buf_free(&in);
    if (rc != 0) {
        fprintf(stderr, "figment render: %s\n", err.msg);
        return 1;
    }
    fwrite(page.html, 1, page.html_len, stdout);
    if (page.html_len == 0 || page.html[page.html_len - 1] != '\n')
        fputc('\n', stdout);
    render_page_free(&page);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)) {
        config_usage(argv[0]);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        puts("figment 0.1.0");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "render") == 0)
        return cmd_render(argc - 2, argv + 2);
    if (argc > 1 && strcmp(argv[1], "tool") == 0) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        int rc = tool_cli_main(argc - 2, argv + 2);
        curl_global_cleanup();
        return rc;
    }
    if (argc > 1 && (strcmp(argv[1], "eval") == 0 || strcmp(argv[1], "replay") == 0)) {
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        int rc = strcmp(argv[1], "eval") == 0 ? eval_main(argc - 2, argv + 2) : replay_main(argc - 2, argv + 2);
        curl_global_cleanup();
        return rc;
    }

    int first = 1;
    if (argc > 1 && strcmp(argv[1], "serve") == 0)
        first = 2;
    config_t cfg;
    fig_err_t err;
    fig_err_clear(&err);
    if (config_parse(&cfg, argc - first, argv + first, &err) != 0) {
        fprintf(stderr, "figment: %s\n", err.msg);
        return 2;
    }
    /* glibc trims the heap back to the kernel after bursts of frees (madvise and a TLB
     * shootdown across cores on the request path); a server keeps what it used. */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = server_run(&cfg, &err);
    if (rc != 0)
        fprintf(stderr, "figment: %s\n", err.msg);
    curl_global_cleanup();
    config_free(&cfg);
    return rc == 0 ? 0 : 1;
}
