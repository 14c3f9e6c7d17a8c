/*
 * eval.h — `figment eval` (a golden set of interactions run against the real server,
 * in-process, with assertions on each page) and `figment replay` (one stored trace
 * replayed, with a diff of the page's visible text).
 *
 * The golden-set format is documented in tests/golden/README.md. The pure parts
 * (JSONL parsing, the CSS-like selector matcher, assertion checks, percentiles,
 * visible text and the line diff) are exposed here for the unit tests; the runners
 * are eval_main() and replay_main().
 *
 * Ownership: eval_set_parse() returns a set freed by eval_set_free(); selectors from
 * eval_selector_compile() are freed by eval_selector_free(); every returned char *
 * is malloc'd and freed by the caller.
 */
#ifndef FIG_EVAL_H
#define FIG_EVAL_H

#include <jansson.h>
#include <regex.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"

/* `figment eval FILE.jsonl [serve flags] [--threshold R] [--compare-models A,B |
 * --compare-prompts DIR_A,DIR_B] [--json]`. argv excludes "figment eval".
 * Exit status: 0 pass rate >= threshold, 1 below it (or the server failed), 2 usage
 * or golden-file errors. */
int eval_main(int argc, char **argv);
/* `figment replay TRACE_ID [serve flags] [--model provider/model]`. 0 on success. */
int replay_main(int argc, char **argv);

/* ---- selectors: a small CSS subset evaluated on gumbo's parse tree ----
 * selector := compound (combinator compound)*; combinator := whitespace (descendant)
 * or '>' (child); compound := [tag|*] then any of .class #id [attr] [attr=v] [attr^=v]
 * [attr*=v] [attr$=v] (v quoted with ' or ", or a bare identifier). */
typedef struct eval_selector eval_selector_t;
eval_selector_t *eval_selector_compile(const char *text, fig_err_t *err);
void eval_selector_free(eval_selector_t *s);
/* Number of elements of the HTML document (parsed with gumbo) matching s. */
size_t eval_selector_count(const eval_selector_t *s, const char *html, size_t len);

/* ---- golden set ---- */
typedef enum {
    EVAL_CONTAINS,
    EVAL_NOT_CONTAINS,
    EVAL_REGEX,
    EVAL_SELECTOR,
    EVAL_SQL,
    EVAL_STATUS,
    EVAL_MAX_LATENCY_MS,
    EVAL_MAX_COST_USD,
} eval_assert_kind_t;

typedef struct {
    eval_assert_kind_t kind;
    char *text;            /* the text, regex, selector or SQL as written */
    char *equals;          /* sql: expected first column of the first row */
    regex_t re;            /* regex (compiled when has_re) */
    int has_re;
    eval_selector_t *sel;  /* selector */
    long min, max;         /* selector counts; max < 0 = no upper bound */
    long status;           /* status */
    double limit;          /* max_latency_ms, max_cost_usd */
} eval_assert_t;

typedef struct {
    int line;              /* 1-based line in the file */
    char *name, *app, *method, *path;
    json_t *query, *form, *state; /* objects, owned ({} when absent) */
    eval_assert_t *asserts;
    size_t n_asserts;
} eval_case_t;

typedef struct {
    eval_case_t *cases;
    size_t n_cases;
} eval_set_t;

#define EVAL_MAX_CASES 10000
#define EVAL_MAX_ASSERTS 64
#define EVAL_MAX_LINE_BYTES (1 << 20)

/* Parses the JSONL text. Blank lines are skipped; anything else must be one case.
 * Errors name the file, the line and the key ("mail.jsonl:3: assert[1]: unknown key 'foo'"). */
eval_set_t *eval_set_parse(const char *text, size_t len, const char *filename, fig_err_t *err);
void eval_set_free(eval_set_t *set);

/* What one interaction produced. */
typedef struct {
    int status;            /* 0 when the request failed */
    const char *body;
    size_t body_len;
    const char *db_path;   /* the app's SQLite database, for sql assertions */
    int have_trace;        /* latency_ms and cost_usd come from the trace */
    double latency_ms;
    double cost_usd;
} eval_response_t;

/* 1 for the assertions that need the trace (latency, cost). */
int eval_assert_needs_trace(const eval_assert_t *a);
/* 1 when the assertion holds; otherwise 0 and a short reason in *reason. */
int eval_check(const eval_assert_t *a, const eval_response_t *r, fig_buf_t *reason);
/* A short description: `contains "Inbox"`, `selector table a (min 1)`. */
void eval_assert_describe(const eval_assert_t *a, fig_buf_t *out);

/* Nearest-rank percentile (q in [0,1]) of v[0..n); sorts v in place. 0 when n == 0. */
double eval_percentile(double *v, size_t n, double q);

/* The visible text of an HTML fragment or document: tags stripped, one block element
 * per line, whitespace collapsed, empty lines dropped, table cells joined by " | ".
 * For a whole document only <main> is used when there is one. */
char *eval_visible_text(const char *html, size_t len);

/* Unified diff (3 lines of context) of two texts split on '\n', with "--- old_label"
 * and "+++ new_label" headers. Appends nothing but the headers when they are equal.
 * Returns the number of changed lines. */
size_t eval_diff(fig_buf_t *out, const char *old_label, const char *old_text, const char *new_label,
                 const char *new_text);

#endif
