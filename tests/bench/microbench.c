/*
 * microbench.c — the CPU that each step of one interaction costs figment, measured
 * in-process on fixed, realistic inputs (`make bench` runs it first, run_bench.py).
 *
 * The end-to-end benchmark says how much latency figment adds to a model round trip;
 * this one says where that CPU goes. Steps, in the order an interaction runs them:
 *   openai_build_request     the Chat Completions body: the real ~17 KB system prompt
 *                            (prompts/system.md + the mail app's prompt.md + its DB
 *                            schema, assembled as the server does), the mail app's tool
 *                            schemas (tools_schemas), a ~300-byte user message
 *   openai_parse_sse         parser_new/feed/finish/free over the SSE stream a model
 *                            sends for the bench page (role chunk, 256-character content
 *                            chunks, finish chunk, usage chunk, [DONE]), fed in
 *                            1,400-byte pieces as TCP delivers them
 *   anthropic_build_request  the same request as a Messages API body
 *   anthropic_parse_sse      the same page as an Anthropic event stream (message_start,
 *                            content_block_start, ping, text deltas, content_block_stop,
 *                            message_delta with usage, message_stop)
 *   render_page              Markdown -> sanitized fragment + title (render.h); it is
 *   render_markdown            md4c alone
 *   sanitize_html              plus the allowlist sanitizer (gumbo) on md4c's output
 *   session_save_all         one interaction's save (state, history, usage record, last
 *                            good page) committed on its own to a temporary SQLite
 *                            file: what the session writer's thread does, off the path
 *                            (it batches up to 256 per commit)
 *   journal_submit           what the interaction's loop thread does instead: make the
 *                            record, append it to the journal (one write()), queue it
 * The page is run_bench.py's PAGE, byte for byte (--print-page prints it to check).
 *
 * Method: each step is warmed up, then timed in 5 runs of N calls; the figure is the
 * median run's CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID) per call, so a run disturbed by
 * another process on this shared machine does not move it. N is --iterations, or by
 * default whatever makes one run last about 60 ms (the whole program: a few seconds).
 * Wall time per call is reported next to it: for session_save_all the difference is
 * time spent waiting on the file system.
 *
 * Output: a table, then one line of JSON ({"render_page_us":..., ...}); --json-out
 * also writes that line to a file. Exit status 1 when a step fails (a benchmark of a
 * broken step would measure the error path).
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "buf.h"
#include "llm.h"
#include "render.h"
#include "render_fast.h"
#include "session.h"
#include "session_writer.h"
#include "tools.h"

/* run_bench.py's PAGE: keep the two identical. */
static const char bench_page[] =
    "# Inbox\n\n"
    "You have **3 unread** messages. The newest are first.\n\n"
    "| | From | Subject | Date |\n|---|---|---|---|\n"
    "| \xe2\x80\xa2 | Jamie Lee | [Re: Lunch on Friday](/mail/message/12) | Fri 11:02 |\n"
    "| \xe2\x80\xa2 | Sam Ortiz | [Quarterly report draft](/mail/message/11) | Thu 16:40 |\n"
    "| \xe2\x80\xa2 | Priya Shah | [Your package has shipped](/mail/message/10) | Thu 09:15 |\n"
    "|   | Dana Kim | [Weekend hike?](/mail/message/9) | Wed 18:22 |\n"
    "|   | Alex Morgan | [Notes from the design review](/mail/message/8) | Tue 14:05 |\n\n"
    "<form method=\"post\" action=\"/mail/search\">\n"
    "<input type=\"text\" name=\"q\" placeholder=\"Search mail\">\n"
    "<button type=\"submit\">Search</button>\n</form>\n\n"
    "[Compose](/mail/compose) \xc2\xb7 [Sent](/mail/sent) \xc2\xb7 [Drafts](/mail/drafts)\n";

/* The user message of a GET /mail/ in a session with a little history (~300 bytes). */
static const char bench_user[] = "# Interaction\n"
                                 "method: GET\n"
                                 "path: /mail/\n"
                                 "query: {}\n"
                                 "form: {}\n"
                                 "session_state: {\"folder\":\"inbox\",\"last_opened\":12,\"draft_to\":\"jamie@example.com\"}\n"
                                 "recent:\n"
                                 "- GET /mail/ -> Inbox\n"
                                 "- GET /mail/message/12 -> Re: Lunch on Friday\n"
                                 "- GET /mail/compose -> Compose\n"
                                 "- POST /mail/send -> Message sent\n"
                                 "- GET /mail/sent -> Sent\n";

#define RUNS 5
#define TARGET_RUN_NS 60000000.0 /* one timed run, when --iterations is not given */
#define TCP_PIECE 1400           /* bytes per parser_feed: about one TCP segment */
#define CHUNK_CHARS 256          /* characters per content delta, as run_bench.py's fakellm script */

typedef struct {
    /* render */
    sanitize_opts_t so;
    char *html;
    size_t html_len;
    char *page_html;
    /* requests */
    llm_endpoint_t ep;
    llm_request_t req;
    char *system;
    json_t *tools, *messages;
    /* streams */
    fig_buf_t oa_sse, an_sse;
    /* session */
    session_store_t *store;
    session_t sess;
    session_usage_t usage;
    session_writer_t *writer;
    fig_err_t err;
} bench_t;

typedef int (*step_fn)(bench_t *b);

typedef struct {
    const char *name;
    step_fn fn;
    double cpu_us, wall_us, cpu_min_us, cpu_max_us;
    long iterations;
} step_t;

static double clock_ns(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the steps (each returns 0, or -1 with b->err) ---- */

static int step_render_page(bench_t *b)
{
    render_page_t p = {0};
    int rc = render_page(bench_page, sizeof(bench_page) - 1, &b->so, &p, &b->err);
    render_page_free(&p);
    return rc;
}

static int step_render_markdown(bench_t *b)
{
    size_t n;
    char *h = render_markdown(bench_page, sizeof(bench_page) - 1, &n);
    free(h);
    return h ? 0 : -1;
}

static int step_render_fast(bench_t *b)
{
    fig_buf_t out = FIG_BUF_INIT;
    int rc = render_fast(bench_page, sizeof(bench_page) - 1, &b->so, &out);
    fig_buf_free(&out);
    return rc == 0 ? 0 : -1; /* the bench page must take the fast path */
}

static int step_sanitize_html(bench_t *b)
{
    size_t n;
    free(sanitize_html(b->html, b->html_len, &b->so, &n));
    return 0;
}

static int build_request(bench_t *b, const llm_provider_t *p)
{
    fig_buf_t url = FIG_BUF_INIT, body = FIG_BUF_INIT;
    struct curl_slist *h = NULL;
    int rc = p->build_request(&b->ep, &b->req, &url, &h, &body, &b->err);
    fig_buf_free(&url);
    fig_buf_free(&body);
    curl_slist_free_all(h);
    return rc;
}

static int parse_stream(bench_t *b, const llm_provider_t *p, const fig_buf_t *sse)
{
    llm_result_t r;
    llm_result_init(&r);
    void *st = p->parser_new(1, "text/event-stream", &r);
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < sse->len; off += TCP_PIECE) {
        size_t n = sse->len - off < TCP_PIECE ? sse->len - off : TCP_PIECE;
        rc = p->parser_feed(st, sse->data + off, n, &b->err);
    }
    if (rc == 0)
        rc = p->parser_finish(st, &b->err);
    p->parser_free(st);
    /* A parser that drops text would look fast: the page must come out whole. */
    if (rc == 0 && (r.content.len != sizeof(bench_page) - 1 || memcmp(r.content.data, bench_page, r.content.len) != 0)) {
        fig_err_set(&b->err, FIG_E_UPSTREAM, "the %s parser did not reassemble the page", p->kind);
        rc = -1;
    }
    llm_result_free(&r);
    return rc;
}

static int step_openai_build(bench_t *b) { return build_request(b, &llm_provider_openai); }
static int step_openai_parse(bench_t *b) { return parse_stream(b, &llm_provider_openai, &b->oa_sse); }
static int step_anthropic_build(bench_t *b) { return build_request(b, &llm_provider_anthropic); }
static int step_anthropic_parse(bench_t *b) { return parse_stream(b, &llm_provider_anthropic, &b->an_sse); }

static int step_session_save(bench_t *b)
{
    return session_save_all(b->store, &b->sess, "mail", "GET", "/mail/", "Inbox", &b->usage, b->page_html, &b->err);
}

/* What the loop thread does to save an interaction since the session writer: make the
 * record, journal it (one write()), queue it; the commit happens on the writer's thread. */
static int step_journal_submit(bench_t *b)
{
    session_record_t r;
    if (session_record_make(&r, &b->sess, "mail", "GET", "/mail/", "Inbox", &b->usage, b->page_html, &b->err) != 0)
        return -1;
    return session_writer_submit(b->writer, &r, &b->err);
}

/* ---- inputs ---- */

/* The length of the longest prefix of s[0..n) with at most max UTF-8 characters. */
static size_t utf8_prefix(const char *s, size_t n, size_t max)
{
    size_t i = 0, chars = 0;
    while (i < n && chars < max) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        chars++;
    }
    return i;
}

static void append_json_string(fig_buf_t *out, const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    fig_buf_append_str(out, t);
    free(t);
    json_decref(v);
}

/* What OpenAI's Chat Completions stream looks like for the page (compact JSON, the
 * fields OpenAI sends, usage: null on every chunk when include_usage is on). */
static void build_openai_stream(fig_buf_t *o)
{
    static const char head[] = "data: {\"id\":\"chatcmpl-BZq1bench0000000000000000\",\"object\":\"chat.completion.chunk\","
                               "\"created\":1750000000,\"model\":\"gpt-4.1-mini-2025-04-14\",\"service_tier\":\"default\","
                               "\"system_fingerprint\":\"fp_6f2eabb9a5\",\"choices\":";
    fig_buf_append_str(o, head);
    fig_buf_append_str(o, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
                          "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n");
    size_t n = sizeof(bench_page) - 1;
    for (size_t off = 0; off < n;) {
        size_t k = utf8_prefix(bench_page + off, n - off, CHUNK_CHARS);
        fig_buf_append_str(o, head);
        fig_buf_append_str(o, "[{\"index\":0,\"delta\":{\"content\":");
        append_json_string(o, bench_page + off, k);
        fig_buf_append_str(o, "},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n");
        off += k;
    }
    fig_buf_append_str(o, head);
    fig_buf_append_str(o, "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n");
    fig_buf_append_str(o, head);
    fig_buf_append_str(o, "[],\"usage\":{\"prompt_tokens\":4963,\"completion_tokens\":177,\"total_tokens\":5140,"
                          "\"prompt_tokens_details\":{\"cached_tokens\":4864,\"audio_tokens\":0},"
                          "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
                          "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n");
    fig_buf_append_str(o, "data: [DONE]\n\n");
}

/* The same page as Anthropic's Messages stream. */
static void build_anthropic_stream(fig_buf_t *o)
{
    fig_buf_append_str(o, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
                          "\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
                          "\"claude-sonnet-4-20250514\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                          "\"usage\":{\"input_tokens\":99,\"cache_creation_input_tokens\":0,"
                          "\"cache_read_input_tokens\":4864,\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n");
    fig_buf_append_str(o, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
                          "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    fig_buf_append_str(o, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
    size_t n = sizeof(bench_page) - 1;
    for (size_t off = 0; off < n;) {
        size_t k = utf8_prefix(bench_page + off, n - off, CHUNK_CHARS);
        fig_buf_append_str(o, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                              "\"delta\":{\"type\":\"text_delta\",\"text\":");
        append_json_string(o, bench_page + off, k);
        fig_buf_append_str(o, "}}\n\n");
        off += k;
    }
    fig_buf_append_str(o, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
    fig_buf_append_str(o, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                          "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":177}}\n\n");
    fig_buf_append_str(o, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

static char *read_text(const char *dir, const char *name)
{
    fig_buf_t path = FIG_BUF_INIT;
    fig_buf_appendf(&path, "%s/%s", dir, name);
    FILE *f = fopen(path.data, "rb");
    if (f == NULL) {
        fprintf(stderr, "microbench: %s: %s (use --prompts DIR)\n", path.data, strerror(errno));
        exit(1);
    }
    fig_buf_t b = FIG_BUF_INIT;
    char tmp[8192];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        fig_buf_append(&b, tmp, n);
    fclose(f);
    fig_buf_free(&path);
    return fig_buf_steal(&b);
}

/* The system prompt and tools the server sends for the mail app (http_front.c's
 * build_system_prompt: system.md, the app's prompt, its database schema). */
static void load_app(bench_t *b, const char *prompts, const char *var)
{
    fig_err_t err;
    fig_err_clear(&err);
    app_t *app = app_load(prompts, "mail", var, &err);
    if (app == NULL || app_db_prepare(app, &err) != 0) {
        fprintf(stderr, "microbench: the mail app: %s\n", err.msg);
        exit(1);
    }
    char *system_md = read_text(prompts, "system.md");
    fig_buf_t s = FIG_BUF_INIT;
    fig_buf_append_str(&s, system_md);
    fig_buf_appendf(&s, "\n\n# App: %s (/%s/)\n\n", app->title, app->name);
    fig_buf_append_str(&s, app->prompt_md);
    fig_buf_append_str(&s, "\n\n# Database schema\n\n");
    fig_buf_append_str(&s, app->schema_text && *app->schema_text ? app->schema_text : "(no tables)\n");
    b->system = fig_buf_steal(&s);
    free(system_md);
    b->tools = tools_schemas(app);
    app_free(app);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* ---- timing ---- */

/* Calls fn n times; CPU and wall nanoseconds of the whole batch. -1 if a call failed. */
static int run_batch(bench_t *b, step_fn fn, long n, double *cpu_ns, double *wall_ns)
{
    double c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), w0 = clock_ns(CLOCK_MONOTONIC);
    for (long i = 0; i < n; i++)
        if (fn(b) != 0)
            return -1;
    *cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    *wall_ns = clock_ns(CLOCK_MONOTONIC) - w0;
    return 0;
}

static int measure(bench_t *b, step_t *s, long iterations)
{
    double cpu, wall;
    /* Warm-up (caches, allocator, the per-thread system message), and a calibration. */
    long n = 8;
    if (run_batch(b, s->fn, n, &cpu, &wall) != 0)
        return -1;
    if (iterations > 0) {
        n = iterations;
        if (run_batch(b, s->fn, n / 10 + 1, &cpu, &wall) != 0)
            return -1;
    } else {
        double per = cpu / n > 100 ? cpu / n : 100;
        n = (long)(TARGET_RUN_NS / per);
        if (n < 10)
            n = 10;
        if (run_batch(b, s->fn, n / 5 + 1, &cpu, &wall) != 0)
            return -1;
    }
    double cpus[RUNS], walls[RUNS];
    for (int r = 0; r < RUNS; r++) {
        if (run_batch(b, s->fn, n, &cpus[r], &walls[r]) != 0)
            return -1;
        cpus[r] /= 1e3 * (double)n;
        walls[r] /= 1e3 * (double)n;
    }
    qsort(cpus, RUNS, sizeof(double), cmp_double);
    qsort(walls, RUNS, sizeof(double), cmp_double);
    s->cpu_us = cpus[RUNS / 2];
    s->wall_us = walls[RUNS / 2];
    s->cpu_min_us = cpus[0];
    s->cpu_max_us = cpus[RUNS - 1];
    s->iterations = n;
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: microbench [--prompts DIR] [--iterations N] [--json-out FILE] [--only SUBSTRING] [--print-page]\n"
          "  CPU per call of each step of one figment interaction (median of 5 runs).\n"
          "  --prompts DIR   figment's prompts folder (default: prompts)\n"
          "  --iterations N  calls per run (default: about 60 ms of calls)\n"
          "  --json-out FILE also write the JSON line to FILE\n"
          "  --only S        run only the steps whose name contains S (for perf record)\n"
          "  --print-page    print the embedded bench page and exit\n",
          f);
}

int main(int argc, char **argv)
{
    const char *prompts = "prompts", *json_out = NULL, *only = NULL;
    long iterations = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--print-page") == 0) {
            fputs(bench_page, stdout);
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (v == NULL) {
            usage(stderr);
            return 2;
        } else if (strcmp(a, "--prompts") == 0) {
            prompts = v, i++;
        } else if (strcmp(a, "--json-out") == 0) {
            json_out = v, i++;
        } else if (strcmp(a, "--only") == 0) {
            only = v, i++;
        } else if (strcmp(a, "--iterations") == 0) {
            char *end;
            iterations = strtol(v, &end, 10), i++;
            if (*end || iterations < 1 || iterations > 100000000) {
                fprintf(stderr, "microbench: --iterations: expected an integer from 1 to 100000000\n");
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }

    char var[] = "/tmp/figment-microbench-XXXXXX";
    if (mkdtemp(var) == NULL) {
        perror("microbench: mkdtemp");
        return 1;
    }
    bench_t b;
    memset(&b, 0, sizeof(b));
    fig_err_clear(&b.err);
    b.so.app_name = "mail";
    b.so.csrf_token = "rN5y1VqWEDkD3nrf8UQRRNHyZrkr6cB_xgHJYXGF8WY";
    b.html = render_markdown(bench_page, sizeof(bench_page) - 1, &b.html_len);
    b.page_html = sanitize_html(b.html, b.html_len, &b.so, NULL);

    load_app(&b, prompts, var);
    b.messages = json_pack("[{s:s,s:s}]", "role", "user", "content", bench_user);
    b.ep.base_url = "https://api.example.com/v1";
    b.ep.api_key = "sk-bench-0123456789abcdef0123456789abcdef";
    b.req.model = "gpt-4.1-mini";
    b.req.system = b.system;
    b.req.tools = b.tools;
    b.req.messages = b.messages;
    b.req.max_tokens = 4096;
    b.req.stream = 1;
    build_openai_stream(&b.oa_sse);
    build_anthropic_stream(&b.an_sse);

    fig_buf_t db = FIG_BUF_INIT;
    fig_buf_appendf(&db, "%s/figment.db", var);
    b.store = session_store_open(db.data, &b.err);
    if (b.store == NULL) {
        fprintf(stderr, "microbench: %s: %s\n", db.data, b.err.msg);
        return 1;
    }
    fig_buf_t jdir = FIG_BUF_INIT;
    fig_buf_appendf(&jdir, "%s/journal", var);
    session_writer_opts_t wo = {.journal_dir = jdir.data, .db_path = db.data};
    b.writer = session_writer_start(&wo, &b.err);
    fig_buf_free(&jdir);
    if (b.writer == NULL) {
        fprintf(stderr, "microbench: session writer: %s\n", b.err.msg);
        return 1;
    }
    snprintf(b.sess.id, sizeof(b.sess.id), "%s", "0123456789abcdef0123456789abcdef");
    b.sess.state = json_pack("{s:s,s:i}", "folder", "inbox", "last_opened", 12);
    b.sess.history = json_pack("[{s:s,s:s,s:s}]", "method", "GET", "path", "/mail/", "title", "Inbox");
    b.usage = (session_usage_t){.session_id = b.sess.id, .app = "mail", .model = "openai/gpt-4.1-mini",
                                .outcome = "ok", .prompt_tokens = 4963, .cached_tokens = 4864,
                                .completion_tokens = 177, .cost_usd = 0.00051, .route = "default: openai/gpt-4.1-mini"};

    step_t steps[] = {
        {"openai_build_request", step_openai_build, 0, 0, 0, 0, 0},
        {"openai_parse_sse", step_openai_parse, 0, 0, 0, 0, 0},
        {"anthropic_build_request", step_anthropic_build, 0, 0, 0, 0, 0},
        {"anthropic_parse_sse", step_anthropic_parse, 0, 0, 0, 0, 0},
        {"render_page", step_render_page, 0, 0, 0, 0, 0},
        {"render_markdown", step_render_markdown, 0, 0, 0, 0, 0},
        {"render_fast", step_render_fast, 0, 0, 0, 0, 0},
        {"sanitize_html", step_sanitize_html, 0, 0, 0, 0, 0},
        {"session_save_all", step_session_save, 0, 0, 0, 0, 0},
        {"journal_submit", step_journal_submit, 0, 0, 0, 0, 0},
    };
    size_t nsteps = sizeof(steps) / sizeof(steps[0]);
    int failed = 0;

    printf("inputs: page %zu bytes, system prompt %zu bytes, %zu tools, user message %zu bytes, "
           "OpenAI stream %zu bytes, Anthropic stream %zu bytes\n",
           sizeof(bench_page) - 1, strlen(b.system), json_array_size(b.tools), sizeof(bench_user) - 1, b.oa_sse.len,
           b.an_sse.len);
    printf("%-24s %12s %12s %19s %10s\n", "step", "CPU us/call", "wall us/call", "CPU min..max", "calls/run");
    for (size_t i = 0; i < nsteps; i++) {
        step_t *s = &steps[i];
        if (only && strstr(s->name, only) == NULL)
            continue;
        if (measure(&b, s, iterations) != 0) {
            printf("%-24s failed: %s\n", s->name, b.err.msg);
            failed = 1;
            s->iterations = -1;
            continue;
        }
        printf("%-24s %12.1f %12.1f %9.1f..%-9.1f %10ld\n", s->name, s->cpu_us, s->wall_us, s->cpu_min_us,
               s->cpu_max_us, s->iterations);
        fflush(stdout);
    }

    /* The OpenAI path of one interaction on its loop thread: request, answer, page, and
     * the save handed to the session writer (session_save_all is the writer's commit,
     * off the path). */
    double path = steps[0].cpu_us + steps[1].cpu_us + steps[4].cpu_us + steps[8].cpu_us;
    int whole = !only && !failed;
    if (whole)
        printf("%-24s %12.1f   (openai_build_request + openai_parse_sse + render_page + journal_submit)\n",
               "openai_path_sum", path);

    fig_buf_t js = FIG_BUF_INIT;
    fig_buf_append_str(&js, "{");
    for (size_t i = 0; i < nsteps; i++) {
        if (steps[i].iterations <= 0)
            continue;
        fig_buf_appendf(&js, "%s\"%s_us\":%.2f", js.len > 1 ? "," : "", steps[i].name, steps[i].cpu_us);
    }
    for (size_t i = 0; i < nsteps; i++) {
        if (steps[i].iterations <= 0)
            continue;
        fig_buf_appendf(&js, ",\"%s_wall_us\":%.2f", steps[i].name, steps[i].wall_us);
    }
    if (whole)
        fig_buf_appendf(&js, ",\"openai_path_sum_us\":%.2f", path);
    fig_buf_appendf(&js, "%s\"system_prompt_bytes\":%zu,\"openai_stream_bytes\":%zu,\"anthropic_stream_bytes\":%zu}",
                    js.len > 1 ? "," : "", strlen(b.system), b.oa_sse.len, b.an_sse.len);
    puts(js.data);
    if (json_out) {
        FILE *f = fopen(json_out, "w");
        if (f == NULL || fprintf(f, "%s\n", js.data) < 0 || fclose(f) != 0) {
            fprintf(stderr, "microbench: %s: %s\n", json_out, strerror(errno));
            failed = 1;
        }
    }

    fig_buf_free(&js);
    session_writer_stop(b.writer);
    session_store_close(b.store);
    nftw(var, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    fig_buf_free(&db);
    session_clear(&b.sess);
    fig_buf_free(&b.oa_sse);
    fig_buf_free(&b.an_sse);
    json_decref(b.tools);
    json_decref(b.messages);
    free(b.system);
    free(b.html);
    free(b.page_html);
    return failed;
}
