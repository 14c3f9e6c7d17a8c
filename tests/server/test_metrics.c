/*
 * test_metrics.c — the Prometheus exposition: exact text for a small known
 * sequence, label escaping and sanitizing, cumulative histogram buckets with
 * inclusive bounds, ignored bad observations, shortest round-trip number
 * formatting, exact sums under concurrent recording, and cardinality folding into
 * "other" without losing counts. The rendered text also goes through
 * tests/integration/promcheck.py when python3 is available.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "metrics.h"

static char *render(void)
{
    fig_buf_t b = FIG_BUF_INIT;
    metrics_render(&b);
    return fig_buf_steal(&b);
}

/* The value of the sample line that starts with exactly `series` + " ". */
static int find_sample(const char *text, const char *series, double *value)
{
    size_t n = strlen(series);
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        if (end == NULL)
            end = line + strlen(line);
        if ((size_t)(end - line) > n && strncmp(line, series, n) == 0 && line[n] == ' ') {
            char *stop;
            *value = strtod(line + n + 1, &stop);
            return stop == end;
        }
        line = *end ? end + 1 : end;
    }
    return 0;
}

static double sample(const char *text, const char *series)
{
    double v = 0;
    if (!find_sample(text, series, &v))
        fail_msg("no sample %s", series);
    return v;
}

/* Sum of every sample whose line starts with prefix (any labels). */
static double sum_samples(const char *text, const char *prefix, int *lines)
{
    double sum = 0;
    size_t n = strlen(prefix);
    *lines = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, prefix, n) == 0) {
            const char *sp = memrchr(line, ' ', (size_t)(end - line));
            sum += strtod(sp + 1, NULL);
            (*lines)++;
        }
        line = end + 1;
    }
    return sum;
}

/* Runs promcheck.py on text when python3 is there; asserts it accepts it. */
static void promcheck(const char *text)
{
#ifdef FIG_SOURCE_ROOT
    if (system("command -v python3 >/dev/null 2>&1") != 0)
        return;
    char path[] = "/tmp/figment-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "python3 '%s/tests/integration/promcheck.py' < '%s' >/dev/null", FIG_SOURCE_ROOT, path);
    int rc = system(cmd);
    unlink(path);
    assert_int_equal(rc, 0);
#else
    (void)text;
#endif
}

static uint64_t seven(void *ctx)
{
    (void)ctx;
    return 7;
}

static const char expected_small[] =
    "# HELP figment_interactions_total Interactions served, by app, model and outcome.\n"
    "# TYPE figment_interactions_total counter\n"
    "figment_interactions_total{app=\"shop\",model=\"p/m\",outcome=\"ok\"} 1\n"
    "# HELP figment_interaction_duration_seconds Total latency of an interaction.\n"
    "# TYPE figment_interaction_duration_seconds histogram\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"0.005\"} 0\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"0.01\"} 0\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"0.025\"} 0\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"0.05\"} 0\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"0.1\"} 0\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"0.25\"} 0\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"0.5\"} 1\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"1\"} 1\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"2.5\"} 1\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"5\"} 1\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"10\"} 1\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"30\"} 1\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"60\"} 1\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"120\"} 1\n"
    "figment_interaction_duration_seconds_bucket{app=\"shop\",le=\"+Inf\"} 1\n"
    "figment_interaction_duration_seconds_sum{app=\"shop\"} 0.3\n"
    "figment_interaction_duration_seconds_count{app=\"shop\"} 1\n"
    "# HELP figment_time_to_first_token_seconds Time to the first byte of the first model answer.\n"
    "# TYPE figment_time_to_first_token_seconds histogram\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"0.005\"} 0\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"0.01\"} 0\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"0.025\"} 0\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"0.05\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"0.1\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"0.25\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"0.5\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"1\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"2.5\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"5\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"10\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"30\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"60\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"120\"} 1\n"
    "figment_time_to_first_token_seconds_bucket{app=\"shop\",model=\"p/m\",le=\"+Inf\"} 1\n"
    "figment_time_to_first_token_seconds_sum{app=\"shop\",model=\"p/m\"} 0.05\n"
    "figment_time_to_first_token_seconds_count{app=\"shop\",model=\"p/m\"} 1\n"
    "# HELP figment_overhead_seconds Time figment itself spent on an interaction (total - model - tools).\n"
    "# TYPE figment_overhead_seconds histogram\n"
    "figment_overhead_seconds_bucket{le=\"0.00005\"} 0\n"
    "figment_overhead_seconds_bucket{le=\"0.0001\"} 0\n"
    "figment_overhead_seconds_bucket{le=\"0.00025\"} 1\n"
    "figment_overhead_seconds_bucket{le=\"0.0005\"} 1\n"
    "figment_overhead_seconds_bucket{le=\"0.001\"} 1\n"
    "figment_overhead_seconds_bucket{le=\"0.0025\"} 1\n"
    "figment_overhead_seconds_bucket{le=\"0.005\"} 1\n"
    "figment_overhead_seconds_bucket{le=\"0.01\"} 1\n"
    "figment_overhead_seconds_bucket{le=\"0.05\"} 1\n"
    "figment_overhead_seconds_bucket{le=\"+Inf\"} 1\n"
    "figment_overhead_seconds_sum 0.0002\n"
    "figment_overhead_seconds_count 1\n"
    "# HELP figment_tokens_total Model tokens, by app, model and kind.\n"
    "# TYPE figment_tokens_total counter\n"
    "figment_tokens_total{app=\"shop\",model=\"p/m\",kind=\"prompt\"} 10\n"
    "figment_tokens_total{app=\"shop\",model=\"p/m\",kind=\"cached\"} 2\n"
    "figment_tokens_total{app=\"shop\",model=\"p/m\",kind=\"cache_write\"} 0\n"
    "figment_tokens_total{app=\"shop\",model=\"p/m\",kind=\"completion\"} 5\n"
    "# HELP figment_cost_usd_total Model cost in US dollars.\n"
    "# TYPE figment_cost_usd_total counter\n"
    "figment_cost_usd_total{app=\"shop\",model=\"p/m\"} 0.25\n"
    "# HELP figment_page_cache_total Page cache lookups, by result.\n"
    "# TYPE figment_page_cache_total counter\n"
    "figment_page_cache_total{result=\"hit\"} 1\n"
    "figment_page_cache_total{result=\"miss\"} 0\n"
    "# HELP figment_upstream_errors_total Failed model calls, by provider and kind.\n"
    "# TYPE figment_upstream_errors_total counter\n"
    "figment_upstream_errors_total{provider=\"p\",kind=\"timeout\"} 1\n"
    "# HELP figment_interactions_in_flight Interactions being served now.\n"
    "# TYPE figment_interactions_in_flight gauge\n"
    "figment_interactions_in_flight 1\n"
    "# HELP figment_traces_dropped_total Traces dropped (queue full or write errors).\n"
    "# TYPE figment_traces_dropped_total counter\n"
    "figment_traces_dropped_total 7\n"
    "# HELP figment_otlp_spans_dropped_total OTLP spans dropped (queue full or export errors).\n"
    "# TYPE figment_otlp_spans_dropped_total counter\n"
    "figment_otlp_spans_dropped_total 0\n";

static void test_exact_exposition(void **s)
{
    (void)s;
    metrics_init();
    metrics_interaction(&(metrics_interaction_t){.app = "shop",
                                                 .model = "p/m",
                                                 .outcome = "ok",
                                                 .total_s = 0.3,
                                                 .ttft_s = 0.05,
                                                 .overhead_s = 0.0002,
                                                 .prompt_tokens = 10,
                                                 .cached_tokens = 2,
                                                 .cache_write_tokens = 0,
                                                 .completion_tokens = 5,
                                                 .cost_usd = 0.25});
    metrics_cache(1);
    metrics_upstream_error("p", "timeout");
    metrics_in_flight_add(2);
    metrics_in_flight_add(-1);
    metrics_set_dropped_sources(seven, NULL, NULL, NULL);
    char *text = render();
    assert_string_equal(text, expected_small);
    promcheck(text);
    /* Rendering twice gives the same text (rendering records nothing). */
    char *again = render();
    assert_string_equal(again, text);
    free(text);
    free(again);
    metrics_shutdown();

    /* After init, an idle process still declares every family, with zeros. */
    metrics_init();
    text = render();
    assert_non_null(strstr(text, "# TYPE figment_interactions_total counter\n# HELP figment_interaction_duration"));
    assert_true(sample(text, "figment_page_cache_total{result=\"miss\"}") == 0);
    assert_true(sample(text, "figment_overhead_seconds_count") == 0);
    assert_true(sample(text, "figment_traces_dropped_total") == 0);
    promcheck(text);
    free(text);
    metrics_shutdown();
}

static void test_label_escaping(void **s)
{
    (void)s;
    metrics_init();
    metrics_interaction(&(metrics_interaction_t){.app = "a\"b\\c\nd", .model = NULL, .outcome = "ok", .ttft_s = -1});
    metrics_upstream_error("bad\xff" "utf8", "k\"");
    char longname[300];
    memset(longname, 'z', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    metrics_upstream_error(longname, "x");
    char *text = render();
    assert_true(sample(text, "figment_interactions_total{app=\"a\\\"b\\\\c\\nd\",model=\"\",outcome=\"ok\"}") == 1);
    assert_true(sample(text, "figment_upstream_errors_total{provider=\"bad\xef\xbf\xbdutf8\",kind=\"k\\\"\"}") == 1);
    char want[400];
    snprintf(want, sizeof(want), "figment_upstream_errors_total{provider=\"%.128s\",kind=\"x\"}", longname);
    assert_true(sample(text, want) == 1);
    /* ttft < 0: no model call, so no time-to-first-token series at all. */
    assert_null(strstr(text, "figment_time_to_first_token_seconds_bucket"));
    promcheck(text);
    free(text);
    metrics_shutdown();
}

static void test_buckets_cumulative(void **s)
{
    (void)s;
    metrics_init();
    const double values[] = {0.005, 0.0051, 0.3, 0.3, 119, 120, 121, 1000};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        metrics_interaction(&(metrics_interaction_t){.app = "h", .model = "m", .outcome = "ok", .total_s = values[i],
                                                     .ttft_s = -1, .overhead_s = 0.00005});
    /* Ignored: NaN, negative, infinite observations; negative cost and tokens. */
    metrics_interaction(&(metrics_interaction_t){.app = "h", .model = "m", .outcome = "ok", .total_s = NAN,
                                                 .ttft_s = -1, .overhead_s = -1, .cost_usd = -5,
                                                 .prompt_tokens = -3});
    metrics_interaction(&(metrics_interaction_t){.app = "h", .model = "m", .outcome = "ok", .total_s = INFINITY,
                                                 .ttft_s = -1, .overhead_s = NAN, .cost_usd = NAN});
    char *text = render();
    const char *les[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
                         "2.5",   "5",    "10",    "30",   "60",  "120",  "+Inf"};
    const double want[] = {1, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 4, 6, 8};
    double prev = 0;
    for (size_t i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
        char series[128];
        snprintf(series, sizeof(series), "figment_interaction_duration_seconds_bucket{app=\"h\",le=\"%s\"}", les[i]);
        double v = sample(text, series);
        assert_true(v == want[i]);
        assert_true(v >= prev);
        prev = v;
    }
    assert_true(sample(text, "figment_interaction_duration_seconds_count{app=\"h\"}") == 8);
    assert_true(sample(text, "figment_interaction_duration_seconds_sum{app=\"h\"}") ==
                0.005 + 0.0051 + 0.3 + 0.3 + 119 + 120 + 121 + 1000);
    /* Every interaction counts, even with bad timings. */
    assert_true(sample(text, "figment_interactions_total{app=\"h\",model=\"m\",outcome=\"ok\"}") == 10);
    /* The bound is inclusive: 0.00005 lands in le="0.00005". */
    assert_true(sample(text, "figment_overhead_seconds_bucket{le=\"0.00005\"}") == 8);
    assert_true(sample(text, "figment_overhead_seconds_count") == 8);
    assert_true(sample(text, "figment_cost_usd_total{app=\"h\",model=\"m\"}") == 0);
    assert_true(sample(text, "figment_tokens_total{app=\"h\",model=\"m\",kind=\"prompt\"}") == 0);
    assert_null(strstr(text, "nan"));
    assert_null(strstr(text, "inf"));
    promcheck(text);
    free(text);

    /* Sums print in the shortest form that reads back exactly. */
    metrics_interaction(&(metrics_interaction_t){.app = "c", .model = "m", .outcome = "ok", .cost_usd = 0.1});
    metrics_interaction(&(metrics_interaction_t){.app = "c", .model = "m", .outcome = "ok", .cost_usd = 0.2});
    metrics_interaction(&(metrics_interaction_t){.app = "d", .model = "m", .outcome = "ok", .cost_usd = 1e-7});
    metrics_interaction(&(metrics_interaction_t){.app = "e", .model = "m", .outcome = "ok", .cost_usd = 12345678});
    text = render();
    assert_non_null(strstr(text, "\nfigment_cost_usd_total{app=\"c\",model=\"m\"} 0.30000000000000004\n"));
    assert_non_null(strstr(text, "\nfigment_cost_usd_total{app=\"d\",model=\"m\"} 1e-07\n"));
    assert_non_null(strstr(text, "\nfigment_cost_usd_total{app=\"e\",model=\"m\"} 12345678\n"));
    free(text);
    metrics_shutdown();
}

#define THREADS 8
#define PER_THREAD 5000

static void *record_thread(void *p)
{
    int id = (int)(intptr_t)p;
    char app[16];
    snprintf(app, sizeof(app), "app%d", id % 2);
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_in_flight_add(1);
        metrics_interaction(&(metrics_interaction_t){.app = app,
                                                     .model = "p/m",
                                                     .outcome = i % 10 == 0 ? "upstream" : "ok",
                                                     .total_s = 0.1,
                                                     .ttft_s = 0.02,
                                                     .overhead_s = 0.001,
                                                     .prompt_tokens = 3,
                                                     .completion_tokens = 1,
                                                     .cost_usd = 0.5});
        metrics_cache(i % 2);
        metrics_upstream_error(id % 2 ? "a" : "b", "timeout");
        metrics_in_flight_add(-1);
    }
    return NULL;
}

static void *render_thread(void *p)
{
    (void)p;
    for (int i = 0; i < 50; i++) {
        char *t = render();
        free(t);
    }
    return NULL;
}

static void test_concurrency_exact(void **s)
{
    (void)s;
    metrics_init();
    pthread_t th[THREADS + 1];
    for (intptr_t k = 0; k < THREADS; k++)
        assert_int_equal(pthread_create(&th[k], NULL, record_thread, (void *)k), 0);
    assert_int_equal(pthread_create(&th[THREADS], NULL, render_thread, NULL), 0);
    for (int k = 0; k <= THREADS; k++)
        pthread_join(th[k], NULL);

    char *text = render();
    const double total = THREADS * PER_THREAD;
    int lines;
    assert_true(sum_samples(text, "figment_interactions_total{", &lines) == total);
    assert_int_equal(lines, 4); /* 2 apps x 2 outcomes */
    assert_true(sample(text, "figment_interactions_total{app=\"app0\",model=\"p/m\",outcome=\"upstream\"}") ==
                total / 2 / 10);
    assert_true(sample(text, "figment_tokens_total{app=\"app1\",model=\"p/m\",kind=\"prompt\"}") == total / 2 * 3);
    assert_true(sample(text, "figment_cost_usd_total{app=\"app0\",model=\"p/m\"}") == total / 2 * 0.5);
    assert_true(sample(text, "figment_cost_usd_total{app=\"app1\",model=\"p/m\"}") == total / 2 * 0.5);
    assert_true(sample(text, "figment_page_cache_total{result=\"hit\"}") == total / 2);
    assert_true(sample(text, "figment_page_cache_total{result=\"miss\"}") == total / 2);
    assert_true(sample(text, "figment_upstream_errors_total{provider=\"a\",kind=\"timeout\"}") == total / 2);
    assert_true(sample(text, "figment_interactions_in_flight") == 0);
    assert_true(sum_samples(text, "figment_interaction_duration_seconds_count{", &lines) == total);
    assert_true(sample(text, "figment_interaction_duration_seconds_bucket{app=\"app0\",le=\"0.1\"}") == total / 2);
    assert_true(sample(text, "figment_overhead_seconds_count") == total);
    assert_true(sample(text, "figment_overhead_seconds_bucket{le=\"0.0005\"}") == 0);
    assert_true(sample(text, "figment_overhead_seconds_bucket{le=\"0.001\"}") == total);
    /* 0.5 and 0.1 sums: 0.5 is exact; count is exact whatever the order. */
    assert_true(sample(text, "figment_time_to_first_token_seconds_count{app=\"app1\",model=\"p/m\"}") == total / 2);
    promcheck(text);
    free(text);
    metrics_shutdown();
}

static void test_overflow_folds(void **s)
{
    (void)s;
    metrics_init();
    const int models = 1000, apps = 300;
    char name[32];
    for (int i = 0; i < models; i++) {
        snprintf(name, sizeof(name), "p/m%d", i);
        metrics_interaction(&(metrics_interaction_t){.app = "a", .model = name, .outcome = "ok", .total_s = 1,
                                                     .ttft_s = 0.5, .prompt_tokens = 1, .cost_usd = 0.25});
    }
    for (int i = 0; i < apps; i++) {
        snprintf(name, sizeof(name), "x%d", i);
        metrics_interaction(&(metrics_interaction_t){.app = name, .model = "p/m0", .outcome = "budget", .total_s = 1,
                                                     .ttft_s = 0.5, .prompt_tokens = 1, .cost_usd = 0.25});
    }
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "prov%d", i);
        metrics_upstream_error(name, i % 2 ? "timeout" : "http");
    }
    char *text = render();
    int lines;
    const double total = models + apps;
    /* Nothing lost, only merged. */
    assert_true(sum_samples(text, "figment_interactions_total{", &lines) == total);
    assert_true(lines < METRICS_MAX_SERIES);
    assert_true(sum_samples(text, "figment_cost_usd_total{", &lines) == total * 0.25);
    assert_true(sum_samples(text, "figment_tokens_total{", &lines) == total);
    assert_true(sum_samples(text, "figment_interaction_duration_seconds_count{", &lines) == total);
    assert_true(sum_samples(text, "figment_time_to_first_token_seconds_count{", &lines) == total);
    assert_true(sum_samples(text, "figment_upstream_errors_total{", &lines) == 2000);
    /* Early label sets stay exact; later ones fold into model="other", then app="other". */
    assert_true(sample(text, "figment_interactions_total{app=\"a\",model=\"p/m0\",outcome=\"ok\"}") == 1);
    assert_true(sample(text, "figment_interactions_total{app=\"a\",model=\"other\",outcome=\"ok\"}") > 0);
    assert_true(sample(text, "figment_interactions_total{app=\"other\",model=\"other\",outcome=\"budget\"}") > 0);
    assert_true(sample(text, "figment_upstream_errors_total{provider=\"other\",kind=\"timeout\"}") > 0);
    assert_null(strstr(text, "p/m999\""));
    assert_null(strstr(text, "x299\""));
    /* Bounded: sample lines other than buckets are at most two per series (a
     * histogram's _sum and _count). */
    int sample_lines = 0;
    for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
        const char *name_end = p + strcspn(p, "{ \n");
        if (*p != '#' && !(name_end - p >= 7 && memcmp(name_end - 7, "_bucket", 7) == 0))
            sample_lines++;
    }
    assert_true(sample_lines <= 2 * (METRICS_MAX_SERIES + 128 + 16));
    promcheck(text);
    free(text);
    metrics_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_exposition),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_buckets_cumulative),
        cmocka_unit_test(test_concurrency_exact),
        cmocka_unit_test(test_overflow_folds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
