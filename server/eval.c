/*
 * eval.c — `figment eval` and `figment replay` (see eval.h; the golden-set format is
 * in tests/golden/README.md).
 *
 * Design:
 * - The real server runs in-process (server_start on 127.0.0.1:0) and is driven over
 *   loopback HTTP with libcurl's easy API from the main thread, one case at a time,
 *   so what is measured is exactly what a browser would get: routing, CSRF, the
 *   agent loop, the sanitizer and the layout.
 * - Each case gets a fresh session: a new id, its state written beforehand with
 *   session_save() into var/figment.db (which also records one setup interaction,
 *   "GET /<app>/ -> (eval setup)", visible to the model in `recent`), and a cookie
 *   signed with var/secret.key. Cases are therefore independent of their order,
 *   except through the app database, which sql assertions read right after the case.
 * - Latency and cost come from the interaction's trace (X-Trace-Id): after each case
 *   the trace writer is flushed and the trace polled for up to 2 s. Without a trace
 *   the wall time is shown and trace assertions fail rather than pass silently.
 * - Parsing is strict (unknown keys, wrong types, bad regexes and selectors are
 *   errors naming the line and key) because a typo in a golden file must never turn
 *   into an assertion that always passes.
 * - Selectors are a small CSS subset matched right to left on gumbo's tree. The pages
 *   come from figment's own sanitizer and layout (nesting capped at 256), so gumbo's
 *   recursive destroy is safe here; traversal itself uses an explicit stack.
 * - Comparing models or prompts runs the whole set twice with two server instances
 *   in turn (a generated figment.json copy whose default_models is [model], or another
 *   prompts directory), then prints both results side by side.
 * - The diff of replay is an LCS line diff of the pages' visible text, after trimming
 *   the common head and tail; a middle too large for the table (over 4M cells) is
 *   shown as replaced wholesale.
 */
#include "eval.h"

#include "fsutil.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <gumbo.h>
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "http_front.h"
#include "session.h"
#include "trace.h"

#define SEL_MAX_TEXT 1024
#define SEL_MAX_PARTS 32
#define SEL_MAX_ATTRS 16
#define EVAL_MAX_BODY (16u << 20)       /* a response body larger than this fails the case */
#define EVAL_HTTP_TIMEOUT_MS 180000L
#define EVAL_TRACE_WAIT_MS 2000
#define EVAL_SQL_BUSY_MS 2000
#define EVAL_DIFF_MAX_CELLS (4u << 20)  /* LCS table cells (uint32) */
#define EVAL_DIFF_CONTEXT 3

/* ====================================================================== selectors */

typedef enum { SEL_EXISTS, SEL_EQ, SEL_PREFIX, SEL_CONTAINS, SEL_SUFFIX, SEL_WORD } sel_op_t;

typedef struct {
    char *name;
    char *value;
    sel_op_t op;
} sel_attr_t;

typedef struct {
    char *tag;          /* lower case; NULL = any element */
    sel_attr_t attrs[SEL_MAX_ATTRS];
    size_t n_attrs;
    int child;          /* combinator before this part: 1 = '>', 0 = descendant */
} sel_part_t;

struct eval_selector {
    sel_part_t parts[SEL_MAX_PARTS];
    size_t n_parts;
};

static int sel_ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

static char *sel_ident(const char **p, int lower)
{
    const char *s = *p;
    while (sel_ident_char(**p))
        (*p)++;
    if (*p == s)
        return NULL;
    char *out = fig_strndup(s, (size_t)(*p - s));
    for (char *c = out; lower && *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return out;
}

static void sel_skip_ws(const char **p)
{
    while (**p == ' ' || **p == '\t' || **p == '\n')
        (*p)++;
}

void eval_selector_free(eval_selector_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_parts; i++) {
        free(s->parts[i].tag);
        for (size_t j = 0; j < s->parts[i].n_attrs; j++) {
            free(s->parts[i].attrs[j].name);
            free(s->parts[i].attrs[j].value);
        }
    }
    free(s);
}

static int sel_add_attr(sel_part_t *part, char *name, char *value, sel_op_t op, const char *text, fig_err_t *err)
{
    if (part->n_attrs == SEL_MAX_ATTRS) {
        fig_err_set(err, FIG_E_INVALID, "selector '%s': more than %d conditions on one element", text, SEL_MAX_ATTRS);
        free(name);
        free(value);
        return -1;
    }
    part->attrs[part->n_attrs++] = (sel_attr_t){name, value, op};
    return 0;
}

/* One compound selector: [tag|*] then .class #id [attr...] conditions. */
static int sel_parse_part(const char **pp, sel_part_t *part, const char *text, fig_err_t *err)
{
    const char *p = *pp, *start = p;
    if (*p == '*') {
        p++;
    } else if (isalpha((unsigned char)*p)) {
        part->tag = sel_ident(&p, 1);
    }
    for (;;) {
        if (*p == '.' || *p == '#') {
            char kind = *p++;
            char *v = sel_ident(&p, 0);
            if (v == NULL) {
                fig_err_set(err, FIG_E_INVALID, "selector '%s': expected a name after '%c' at offset %d", text, kind,
                            (int)(p - text));
                return -1;
            }
            if (sel_add_attr(part, fig_strdup(kind == '.' ? "class" : "id"), v, kind == '.' ? SEL_WORD : SEL_EQ, text,
                             err) != 0)
                return -1;
        } else if (*p == '[') {
            p++;
            sel_skip_ws(&p);
            char *name = sel_ident(&p, 1);
            if (name == NULL) {
                fig_err_set(err, FIG_E_INVALID, "selector '%s': expected an attribute name at offset %d", text,
                            (int)(p - text));
                return -1;
            }
            sel_skip_ws(&p);
            sel_op_t op = SEL_EXISTS;
            if (*p == '=') {
                op = SEL_EQ;
                p++;
            } else if ((*p == '^' || *p == '*' || *p == '$') && p[1] == '=') {
                op = *p == '^' ? SEL_PREFIX : *p == '*' ? SEL_CONTAINS : SEL_SUFFIX;
                p += 2;
            } else if (*p != ']') {
                fig_err_set(err, FIG_E_INVALID,
                            "selector '%s': expected ']', '=', '^=', '*=' or '$=' at offset %d", text, (int)(p - text));
                free(name);
                return -1;
            }
            char *value = NULL;
            if (op != SEL_EXISTS) {
                sel_skip_ws(&p);
                if (*p == '\'' || *p == '"') {
                    char q = *p++;
                    const char *v = p;
                    while (*p != '\0' && *p != q)
                        p++;
                    if (*p != q) {
                        fig_err_set(err, FIG_E_INVALID, "selector '%s': unterminated quoted value", text);
                        free(name);
                        return -1;
                    }
                    value = fig_strndup(v, (size_t)(p - v));
                    p++;
                } else if ((value = sel_ident(&p, 0)) == NULL) {
                    fig_err_set(err, FIG_E_INVALID, "selector '%s': expected a value at offset %d", text,
                                (int)(p - text));
                    free(name);
                    return -1;
                }
                sel_skip_ws(&p);
            }
            if (*p != ']') {
                fig_err_set(err, FIG_E_INVALID, "selector '%s': expected ']' at offset %d", text, (int)(p - text));
                free(name);
                free(value);
                return -1;
            }
            p++;
            if (sel_add_attr(part, name, value, op, text, err) != 0)
                return -1;
        } else {
            break;
        }
    }
    if (p == start) {
        fig_err_set(err, FIG_E_INVALID, "selector '%s': expected a tag name, '*', '.', '#' or '[' at offset %d", text,
                    (int)(p - text));
        return -1;
    }
    *pp = p;
    return 0;
}

eval_selector_t *eval_selector_compile(const char *text, fig_err_t *err)
{
    if (text == NULL || strlen(text) > SEL_MAX_TEXT) {
        fig_err_set(err, FIG_E_INVALID, "selector: missing or longer than %d bytes", SEL_MAX_TEXT);
        return NULL;
    }
    eval_selector_t *s = fig_calloc(1, sizeof(*s));
    const char *p = text;
    sel_skip_ws(&p);
    if (*p == '\0') {
        fig_err_set(err, FIG_E_INVALID, "selector: empty");
        goto fail;
    }
    int child = 0;
    for (;;) {
        if (s->n_parts == SEL_MAX_PARTS) {
            fig_err_set(err, FIG_E_INVALID, "selector '%s': more than %d parts", text, SEL_MAX_PARTS);
            goto fail;
        }
        sel_part_t *part = &s->parts[s->n_parts++];
        part->child = child;
        if (sel_parse_part(&p, part, text, err) != 0)
            goto fail;
        const char *before = p;
        sel_skip_ws(&p);
        if (*p == '\0')
            break;
        if (*p == '>') {
            p++;
            sel_skip_ws(&p);
            child = 1;
            if (*p == '\0') {
                fig_err_set(err, FIG_E_INVALID, "selector '%s': nothing after '>'", text);
                goto fail;
            }
        } else if (p > before) {
            child = 0;
        } else {
            fig_err_set(err, FIG_E_INVALID, "selector '%s': unexpected '%c' at offset %d (supported: tag, *, .class, "
                        "#id, [attr], [attr=v], [attr^=v], [attr*=v], [attr$=v], ' ' and '>')", text, *p, (int)(p - text));
            goto fail;
        }
    }
    return s;
fail:
    eval_selector_free(s);
    return NULL;
}

static int node_is_element(const GumboNode *n)
{
    return n != NULL && (n->type == GUMBO_NODE_ELEMENT || n->type == GUMBO_NODE_TEMPLATE);
}

static void node_tag(const GumboElement *e, char *buf, size_t cap)
{
    if (e->tag != GUMBO_TAG_UNKNOWN) {
        snprintf(buf, cap, "%s", gumbo_normalized_tagname(e->tag));
        return;
    }
    GumboStringPiece piece = e->original_tag;
    gumbo_tag_from_original_text(&piece);
    size_t n = piece.length < cap - 1 ? piece.length : cap - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)tolower((unsigned char)piece.data[i]);
    buf[n] = '\0';
}

static int sel_word_in(const char *list, const char *word)
{
    size_t wl = strlen(word);
    const char *p = list;
    while (*p) {
        while (*p && isspace((unsigned char)*p))
            p++;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if ((size_t)(p - s) == wl && wl > 0 && memcmp(s, word, wl) == 0)
            return 1;
    }
    return 0;
}

static int sel_part_match(const sel_part_t *part, const GumboNode *n)
{
    const GumboElement *e = &n->v.element;
    if (part->tag != NULL) {
        char tag[64];
        node_tag(e, tag, sizeof(tag));
        if (strcmp(tag, part->tag) != 0)
            return 0;
    }
    for (size_t i = 0; i < part->n_attrs; i++) {
        const sel_attr_t *a = &part->attrs[i];
        const GumboAttribute *ga = gumbo_get_attribute(&e->attributes, a->name);
        if (ga == NULL)
            return 0;
        const char *v = ga->value;
        size_t vl = strlen(v), al = a->value ? strlen(a->value) : 0;
        switch (a->op) {
        case SEL_EXISTS:
            break;
        case SEL_EQ:
            if (strcmp(v, a->value) != 0)
                return 0;
            break;
        case SEL_PREFIX: /* as in CSS, an empty value never matches */
            if (al == 0 || vl < al || memcmp(v, a->value, al) != 0)
                return 0;
            break;
        case SEL_SUFFIX:
            if (al == 0 || vl < al || memcmp(v + vl - al, a->value, al) != 0)
                return 0;
            break;
        case SEL_CONTAINS:
            if (al == 0 || strstr(v, a->value) == NULL)
                return 0;
            break;
        case SEL_WORD:
            if (!sel_word_in(v, a->value))
                return 0;
            break;
        }
    }
    return 1;
}

/* Right to left: n matches part idx, and its parent (child) or some ancestor
 * (descendant) matches the selector up to idx - 1. Recursion depth <= parts. */
static int sel_match(const eval_selector_t *s, const GumboNode *n, size_t idx)
{
    if (!sel_part_match(&s->parts[idx], n))
        return 0;
    if (idx == 0)
        return 1;
    const GumboNode *p = n->parent;
    if (s->parts[idx].child)
        return node_is_element(p) && sel_match(s, p, idx - 1);
    for (; node_is_element(p); p = p->parent)
        if (sel_match(s, p, idx - 1))
            return 1;
    return 0;
}

/* Calls each(node) for every element, document order, without recursion. */
typedef struct {
    const GumboNode **items;
    size_t n, cap;
} node_stack_t;

static void node_push(node_stack_t *st, const GumboNode *n)
{
    if (st->n == st->cap) {
        st->cap = st->cap ? st->cap * 2 : 64;
        st->items = fig_realloc(st->items, st->cap * sizeof(*st->items));
    }
    st->items[st->n++] = n;
}

static const GumboVector *node_children(const GumboNode *n)
{
    if (n->type == GUMBO_NODE_DOCUMENT)
        return &n->v.document.children;
    if (node_is_element(n))
        return &n->v.element.children;
    return NULL;
}

size_t eval_selector_count(const eval_selector_t *s, const char *html, size_t len)
{
    if (s == NULL || s->n_parts == 0)
        return 0;
    GumboOutput *out = gumbo_parse_with_options(&kGumboDefaultOptions, html ? html : "", html ? len : 0);
    if (out == NULL)
        return 0;
    size_t count = 0;
    node_stack_t st = {0};
    node_push(&st, out->document);
    while (st.n > 0) {
        const GumboNode *n = st.items[--st.n];
        if (node_is_element(n) && sel_match(s, n, s->n_parts - 1))
            count++;
        const GumboVector *ch = node_children(n);
        for (size_t i = ch ? ch->length : 0; i > 0; i--) /* reversed: pops in document order */
            node_push(&st, ch->data[i - 1]);
    }
    free(st.items);
    gumbo_destroy_output(&kGumboDefaultOptions, out);
    return count;
}

/* ====================================================================== golden set */

static const char *const case_keys[] = {"name", "app", "method", "path", "query", "form", "state", "assert", NULL};
static const char *const assert_kinds[] = {"contains", "not_contains", "regex", "selector", "sql",
                                           "status", "max_latency_ms", "max_cost_usd", NULL};

static int key_in(const char *k, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(k, list[i]) == 0)
            return 1;
    return 0;
}

static void assert_clear(eval_assert_t *a)
{
    free(a->text);
    free(a->equals);
    if (a->has_re)
        regfree(&a->re);
    eval_selector_free(a->sel);
    memset(a, 0, sizeof(*a));
}

static void case_clear(eval_case_t *c)
{
    free(c->name);
    free(c->app);
    free(c->method);
    free(c->path);
    json_decref(c->query);
    json_decref(c->form);
    json_decref(c->state);
    for (size_t i = 0; i < c->n_asserts; i++)
        assert_clear(&c->asserts[i]);
    free(c->asserts);
    memset(c, 0, sizeof(*c));
}

void eval_set_free(eval_set_t *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n_cases; i++)
        case_clear(&set->cases[i]);
    free(set->cases);
    free(set);
}

/* Printable text without control characters (names and paths go to the terminal). */
static int text_clean(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* query/form: an object whose values are strings or arrays of strings. */
static int fields_ok(const json_t *obj, const char *where, const char *pfx, fig_err_t *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        if (json_is_string(v))
            continue;
        if (json_is_array(v)) {
            size_t i;
            json_t *e;
            int ok = json_array_size(v) > 0;
            json_array_foreach(v, i, e) ok = ok && json_is_string(e);
            if (ok)
                continue;
        }
        fig_err_set(err, FIG_E_INVALID, "%s%s.%s: expected a string or a non-empty array of strings", pfx, where, k);
        return -1;
    }
    return 0;
}

static int parse_count(json_t *v, const char *pfx, size_t idx, const char *key, long *out, fig_err_t *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000) {
        fig_err_set(err, FIG_E_INVALID, "%sassert[%zu].%s: expected an integer from 0 to 1000000", pfx, idx, key);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

static int parse_assert(json_t *o, size_t idx, const char *pfx, eval_assert_t *a, fig_err_t *err)
{
    if (!json_is_object(o)) {
        fig_err_set(err, FIG_E_INVALID, "%sassert[%zu]: expected an object", pfx, idx);
        return -1;
    }
    const char *kind = NULL, *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (key_in(k, assert_kinds)) {
            if (kind != NULL) {
                fig_err_set(err, FIG_E_INVALID, "%sassert[%zu]: both '%s' and '%s': one check per assertion", pfx, idx,
                            kind, k);
                return -1;
            }
            kind = k;
        }
    }
    if (kind == NULL) {
        fig_err_set(err, FIG_E_INVALID, "%sassert[%zu]: expected one of contains, not_contains, regex, selector, sql, "
                    "status, max_latency_ms, max_cost_usd", pfx, idx);
        return -1;
    }
    json_object_foreach(o, k, v) {
        int ok = strcmp(k, kind) == 0 || (strcmp(kind, "selector") == 0 && (!strcmp(k, "min") || !strcmp(k, "max"))) ||
                 (strcmp(kind, "sql") == 0 && strcmp(k, "equals") == 0);
        if (!ok) {
            fig_err_set(err, FIG_E_INVALID, "%sassert[%zu]: unknown key '%s'%s", pfx, idx, k,
                        key_in(k, (const char *const[]){"min", "max", "equals", NULL}) ? " for this kind of check" : "");
            return -1;
        }
    }
    v = json_object_get(o, kind);
    int is_text = !strcmp(kind, "contains") || !strcmp(kind, "not_contains") || !strcmp(kind, "regex") ||
                  !strcmp(kind, "selector") || !strcmp(kind, "sql");
    if (is_text) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 100000) {
            fig_err_set(err, FIG_E_INVALID, "%sassert[%zu].%s: expected a non-empty string", pfx, idx, kind);
            return -1;
        }
        a->text = fig_strdup(json_string_value(v));
    }
    if (!strcmp(kind, "contains")) {
        a->kind = EVAL_CONTAINS;
    } else if (!strcmp(kind, "not_contains")) {
        a->kind = EVAL_NOT_CONTAINS;
    } else if (!strcmp(kind, "regex")) {
        a->kind = EVAL_REGEX;
        int rc = regcomp(&a->re, a->text, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[200];
            regerror(rc, &a->re, msg, sizeof(msg));
            fig_err_set(err, FIG_E_INVALID, "%sassert[%zu].regex: %s", pfx, idx, msg);
            return -1;
        }
        a->has_re = 1;
    } else if (!strcmp(kind, "selector")) {
        a->kind = EVAL_SELECTOR;
        fig_err_t e2;
        fig_err_clear(&e2);
        if ((a->sel = eval_selector_compile(a->text, &e2)) == NULL) {
            fig_err_set(err, FIG_E_INVALID, "%sassert[%zu].%s", pfx, idx, e2.msg);
            return -1;
        }
        json_t *mn = json_object_get(o, "min"), *mx = json_object_get(o, "max");
        /* a bare selector means "at least one"; with only a max, zero is fine */
        a->min = mx != NULL ? 0 : 1;
        a->max = -1;
        if (mn != NULL && parse_count(mn, pfx, idx, "min", &a->min, err) != 0)
            return -1;
        if (mx != NULL && parse_count(mx, pfx, idx, "max", &a->max, err) != 0)
            return -1;
        if (a->max >= 0 && a->min > a->max) {
            fig_err_set(err, FIG_E_INVALID, "%sassert[%zu]: min %ld is above max %ld", pfx, idx, a->min, a->max);
            return -1;
        }
    } else if (!strcmp(kind, "sql")) {
        a->kind = EVAL_SQL;
        json_t *eq = json_object_get(o, "equals");
        if (!json_is_string(eq)) {
            fig_err_set(err, FIG_E_INVALID, "%sassert[%zu].equals: %s", pfx, idx,
                        eq == NULL ? "missing (the expected value as text, e.g. \"50\")"
                                   : "expected a string (the value as text, e.g. \"50\")");
            return -1;
        }
        a->equals = fig_strdup(json_string_value(eq));
    } else if (!strcmp(kind, "status")) {
        a->kind = EVAL_STATUS;
        if (!json_is_integer(v) || json_integer_value(v) < 100 || json_integer_value(v) > 599) {
            fig_err_set(err, FIG_E_INVALID, "%sassert[%zu].status: expected an integer from 100 to 599", pfx, idx);
            return -1;
        }
        a->status = (long)json_integer_value(v);
    } else {
        int lat = !strcmp(kind, "max_latency_ms");
        a->kind = lat ? EVAL_MAX_LATENCY_MS : EVAL_MAX_COST_USD;
        double d = json_is_number(v) ? json_number_value(v) : -1;
        if (!json_is_number(v) || !(lat ? d > 0 : d >= 0) || !isfinite(d)) {
            fig_err_set(err, FIG_E_INVALID, "%sassert[%zu].%s: expected a number %s", pfx, idx, kind,
                        lat ? "above 0" : "of 0 or more");
            return -1;
        }
        a->limit = d;
    }
    return 0;
}

static int app_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-' || s[i] == '_'))
            return 0;
    return 1;
}

static int path_ok(const char *path, const char *app)
{
    size_t n = strlen(path), al = strlen(app);
    if (n > 2000 || n < al + 2 || path[0] != '/' || memcmp(path + 1, app, al) != 0 || path[al + 1] != '/')
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)path[i] <= 0x20 || (unsigned char)path[i] >= 0x7f || path[i] == '?' || path[i] == '#')
            return 0;
    return 1;
}

static int parse_case(json_t *o, const char *pfx, eval_case_t *c, fig_err_t *err)
{
    if (!json_is_object(o)) {
        fig_err_set(err, FIG_E_INVALID, "%sexpected a JSON object", pfx);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (!key_in(k, case_keys)) {
            fig_err_set(err, FIG_E_INVALID, "%sunknown key '%s' (known: name, app, method, path, query, form, state, "
                        "assert)", pfx, k);
            return -1;
        }
    }
    static const char *const required[] = {"name", "app", "method", "path", "assert"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (json_object_get(o, required[i]) == NULL) {
            fig_err_set(err, FIG_E_INVALID, "%smissing key '%s'", pfx, required[i]);
            return -1;
        }
    v = json_object_get(o, "name");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 200 ||
        !text_clean(json_string_value(v))) {
        fig_err_set(err, FIG_E_INVALID, "%sname: expected a string of 1 to 200 printable characters", pfx);
        return -1;
    }
    c->name = fig_strdup(json_string_value(v));
    v = json_object_get(o, "app");
    if (!json_is_string(v) || !app_name_ok(json_string_value(v))) {
        fig_err_set(err, FIG_E_INVALID, "%sapp: expected an app name (a-z, 0-9, '-', '_')", pfx);
        return -1;
    }
    c->app = fig_strdup(json_string_value(v));
    v = json_object_get(o, "method");
    if (!json_is_string(v) || (strcmp(json_string_value(v), "GET") != 0 && strcmp(json_string_value(v), "POST") != 0)) {
        fig_err_set(err, FIG_E_INVALID, "%smethod: expected \"GET\" or \"POST\"", pfx);
        return -1;
    }
    c->method = fig_strdup(json_string_value(v));
    v = json_object_get(o, "path");
    if (!json_is_string(v) || !path_ok(json_string_value(v), c->app)) {
        fig_err_set(err, FIG_E_INVALID, "%spath: expected a path under /%s/ (visible ASCII, no '?' or '#': put the "
                    "query string in \"query\")", pfx, c->app);
        return -1;
    }
    c->path = fig_strdup(json_string_value(v));
    static const char *const objs[] = {"query", "form", "state"};
    json_t **slots[] = {&c->query, &c->form, &c->state};
    for (size_t i = 0; i < 3; i++) {
        v = json_object_get(o, objs[i]);
        if (v != NULL && !json_is_object(v)) {
            fig_err_set(err, FIG_E_INVALID, "%s%s: expected an object", pfx, objs[i]);
            return -1;
        }
        *slots[i] = v ? json_incref(v) : json_object();
    }
    if (fields_ok(c->query, "query", pfx, err) != 0 || fields_ok(c->form, "form", pfx, err) != 0)
        return -1;
    if (json_object_size(c->form) > 0 && strcmp(c->method, "POST") != 0) {
        fig_err_set(err, FIG_E_INVALID, "%sform: only a POST has a form", pfx);
        return -1;
    }
    if (json_object_get(c->form, "_csrf") != NULL) {
        fig_err_set(err, FIG_E_INVALID, "%sform._csrf: eval adds the CSRF token itself", pfx);
        return -1;
    }
    v = json_object_get(o, "assert");
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > EVAL_MAX_ASSERTS) {
        fig_err_set(err, FIG_E_INVALID, "%sassert: expected an array of 1 to %d assertions", pfx, EVAL_MAX_ASSERTS);
        return -1;
    }
    c->asserts = fig_calloc(json_array_size(v), sizeof(*c->asserts));
    for (size_t i = 0; i < json_array_size(v); i++) {
        c->n_asserts = i + 1;
        if (parse_assert(json_array_get(v, i), i, pfx, &c->asserts[i], err) != 0)
            return -1;
    }
    return 0;
}

eval_set_t *eval_set_parse(const char *text, size_t len, const char *filename, fig_err_t *err)
{
    eval_set_t *set = fig_calloc(1, sizeof(*set));
    size_t cap = 0;
    int line = 0;
    const char *p = text, *end = text + len;
    char pfx[300];
    while (p < end) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        snprintf(pfx, sizeof(pfx), "%s:%d: ", filename, line);
        int blank = 1;
        for (size_t i = 0; i < n && blank; i++)
            blank = p[i] == ' ' || p[i] == '\t';
        if (!blank) {
            if (n > EVAL_MAX_LINE_BYTES) {
                fig_err_set(err, FIG_E_TOO_LARGE, "%sline longer than %d bytes", pfx, EVAL_MAX_LINE_BYTES);
                goto fail;
            }
            if (set->n_cases == EVAL_MAX_CASES) {
                fig_err_set(err, FIG_E_TOO_LARGE, "%smore than %d cases", pfx, EVAL_MAX_CASES);
                goto fail;
            }
            json_error_t je;
            json_t *o = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je);
            if (o == NULL) {
                fig_err_set(err, FIG_E_INVALID, "%sinvalid JSON: %s (column %d)", pfx, je.text, je.column);
                goto fail;
            }
            if (set->n_cases == cap) {
                cap = cap ? cap * 2 : 16;
                set->cases = fig_realloc(set->cases, cap * sizeof(*set->cases));
            }
            eval_case_t *c = &set->cases[set->n_cases++];
            memset(c, 0, sizeof(*c));
            c->line = line;
            int rc = parse_case(o, pfx, c, err);
            json_decref(o);
            if (rc != 0)
                goto fail;
            for (size_t i = 0; i + 1 < set->n_cases; i++)
                if (strcmp(set->cases[i].name, c->name) == 0) {
                    fig_err_set(err, FIG_E_INVALID, "%sname: '%s' is already the name of line %d", pfx, c->name,
                                set->cases[i].line);
                    goto fail;
                }
        }
        p = nl ? nl + 1 : end;
    }
    if (set->n_cases == 0) {
        fig_err_set(err, FIG_E_INVALID, "%s: no cases", filename);
        goto fail;
    }
    return set;
fail:
    eval_set_free(set);
    return NULL;
}

/* ====================================================================== assertions */

int eval_assert_needs_trace(const eval_assert_t *a)
{
    return a->kind == EVAL_MAX_LATENCY_MS || a->kind == EVAL_MAX_COST_USD;
}

static void append_short(fig_buf_t *b, const char *s, size_t max)
{
    size_t n = strlen(s);
    fig_buf_append_str(b, "\"");
    for (size_t i = 0; i < n && i < max; i++)
        fig_buf_append(b, (unsigned char)s[i] < 0x20 ? " " : s + i, 1);
    fig_buf_append_str(b, n > max ? "...\"" : "\"");
}

void eval_assert_describe(const eval_assert_t *a, fig_buf_t *out)
{
    switch (a->kind) {
    case EVAL_CONTAINS:
        fig_buf_append_str(out, "contains ");
        append_short(out, a->text, 60);
        break;
    case EVAL_NOT_CONTAINS:
        fig_buf_append_str(out, "not_contains ");
        append_short(out, a->text, 60);
        break;
    case EVAL_REGEX:
        fig_buf_append_str(out, "regex ");
        append_short(out, a->text, 60);
        break;
    case EVAL_SELECTOR:
        fig_buf_append_str(out, "selector ");
        append_short(out, a->text, 60);
        if (a->max >= 0)
            fig_buf_appendf(out, " (%ld to %ld)", a->min, a->max);
        else
            fig_buf_appendf(out, " (at least %ld)", a->min);
        break;
    case EVAL_SQL:
        fig_buf_append_str(out, "sql ");
        append_short(out, a->text, 60);
        break;
    case EVAL_STATUS:
        fig_buf_appendf(out, "status %ld", a->status);
        break;
    case EVAL_MAX_LATENCY_MS:
        fig_buf_appendf(out, "max_latency_ms %g", a->limit);
        break;
    case EVAL_MAX_COST_USD:
        fig_buf_appendf(out, "max_cost_usd %g", a->limit);
        break;
    }
}

/* The first column of the first row, as text, on a read-only connection. */
static int sql_first_value(const char *db_path, const char *sql, fig_buf_t *value, fig_buf_t *reason)
{
    if (db_path == NULL) {
        fig_buf_append_str(reason, "no app database");
        return -1;
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        fig_buf_appendf(reason, "cannot open %s: %s", db_path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, EVAL_SQL_BUSY_MS);
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int ret = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, &tail) != SQLITE_OK || st == NULL) {
        fig_buf_appendf(reason, "SQL error: %s", st == NULL && sqlite3_errcode(db) == SQLITE_OK ? "empty statement"
                                                                                              : sqlite3_errmsg(db));
        goto done;
    }
    while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';'))
        tail++;
    if (tail && *tail) {
        fig_buf_append_str(reason, "SQL error: one statement only");
        goto done;
    }
    if (!sqlite3_stmt_readonly(st)) {
        fig_buf_append_str(reason, "SQL error: only read-only statements are allowed");
        goto done;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        fig_buf_append_str(value, t ? (const char *)t : "NULL");
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = 1; /* no rows */
    } else {
        fig_buf_appendf(reason, "SQL error: %s", sqlite3_errmsg(db));
    }
done:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ret;
}

int eval_check(const eval_assert_t *a, const eval_response_t *r, fig_buf_t *reason)
{
    const char *body = r->body ? r->body : "";
    size_t blen = r->body ? r->body_len : 0;
    switch (a->kind) {
    case EVAL_CONTAINS:
    case EVAL_NOT_CONTAINS: {
        const char *hit = memmem(body, blen, a->text, strlen(a->text));
        if (a->kind == EVAL_CONTAINS && hit == NULL) {
            fig_buf_append_str(reason, "not in the page");
            return 0;
        }
        if (a->kind == EVAL_NOT_CONTAINS && hit != NULL) {
            fig_buf_appendf(reason, "found at byte %zu", (size_t)(hit - body));
            return 0;
        }
        return 1;
    }
    case EVAL_REGEX: {
        char *copy = fig_strndup(body, blen); /* regexec wants a NUL-terminated string */
        int rc = regexec(&a->re, copy, 0, NULL, 0);
        free(copy);
        if (rc != 0) {
            fig_buf_append_str(reason, "no match in the page");
            return 0;
        }
        return 1;
    }
    case EVAL_SELECTOR: {
        size_t n = eval_selector_count(a->sel, body, blen);
        if ((long)n < a->min || (a->max >= 0 && (long)n > a->max)) {
            fig_buf_appendf(reason, "%zu matching element%s", n, n == 1 ? "" : "s");
            return 0;
        }
        return 1;
    }
    case EVAL_SQL: {
        fig_buf_t val = FIG_BUF_INIT;
        int rc = sql_first_value(r->db_path, a->text, &val, reason);
        int ok = rc == 0 && strcmp(val.data ? val.data : "", a->equals) == 0;
        if (rc == 1) {
            fig_buf_append_str(reason, "no rows, expected ");
            append_short(reason, a->equals, 40);
        } else if (rc == 0 && !ok) {
            fig_buf_append_str(reason, "got ");
            append_short(reason, val.data ? val.data : "", 40);
            fig_buf_append_str(reason, ", expected ");
            append_short(reason, a->equals, 40);
        }
        fig_buf_free(&val);
        return ok;
    }
    case EVAL_STATUS:
        if (r->status != a->status) {
            fig_buf_appendf(reason, "status was %d", r->status);
            return 0;
        }
        return 1;
    case EVAL_MAX_LATENCY_MS:
    case EVAL_MAX_COST_USD: {
        if (!r->have_trace) {
            fig_buf_append_str(reason, "no trace for this interaction");
            return 0;
        }
        int lat = a->kind == EVAL_MAX_LATENCY_MS;
        double v = lat ? r->latency_ms : r->cost_usd;
        if (v > a->limit) {
            if (lat)
                fig_buf_appendf(reason, "took %.0f ms", v);
            else
                fig_buf_appendf(reason, "cost $%.6f", v);
            return 0;
        }
        return 1;
    }
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double eval_percentile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    if (!(q > 0))
        return v[0];
    /* the epsilon keeps 0.95 * 20 (19.000000000000004 in binary) at rank 19 */
    double r = ceil(q * (double)n - 1e-9);
    size_t rank = r < 1 ? 1 : r > (double)n ? n : (size_t)r;
    return v[rank - 1];
}

/* ====================================================================== visible text */

typedef struct {
    fig_buf_t out, line;
    int space;
} text_sink_t;

static void text_newline(text_sink_t *t)
{
    if (t->line.len > 0) {
        fig_buf_append(&t->out, t->line.data, t->line.len);
        fig_buf_append(&t->out, "\n", 1);
        fig_buf_reset(&t->line);
    }
    t->space = 0;
}

static void text_add(text_sink_t *t, const char *s)
{
    for (; *s; s++) {
        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f') {
            t->space = 1;
            continue;
        }
        if (t->space && t->line.len > 0)
            fig_buf_append(&t->line, " ", 1);
        t->space = 0;
        fig_buf_append(&t->line, s, 1);
    }
}

static int tag_is_block(GumboTag tag)
{
    switch (tag) {
    case GUMBO_TAG_ADDRESS: case GUMBO_TAG_ARTICLE: case GUMBO_TAG_ASIDE: case GUMBO_TAG_BLOCKQUOTE:
    case GUMBO_TAG_BODY: case GUMBO_TAG_CAPTION: case GUMBO_TAG_DD: case GUMBO_TAG_DETAILS: case GUMBO_TAG_DIV:
    case GUMBO_TAG_DL: case GUMBO_TAG_DT: case GUMBO_TAG_FIELDSET: case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_FIGURE:
    case GUMBO_TAG_FOOTER: case GUMBO_TAG_FORM: case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3:
    case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6: case GUMBO_TAG_HEADER: case GUMBO_TAG_HR:
    case GUMBO_TAG_HTML: case GUMBO_TAG_LI: case GUMBO_TAG_MAIN: case GUMBO_TAG_NAV: case GUMBO_TAG_OL:
    case GUMBO_TAG_P: case GUMBO_TAG_PRE: case GUMBO_TAG_SECTION: case GUMBO_TAG_SUMMARY: case GUMBO_TAG_TABLE:
    case GUMBO_TAG_TBODY: case GUMBO_TAG_TFOOT: case GUMBO_TAG_THEAD: case GUMBO_TAG_TR: case GUMBO_TAG_UL:
        return 1;
    default:
        return 0;
    }
}

static const GumboNode *find_tag(const GumboNode *root, GumboTag tag)
{
    node_stack_t st = {0};
    const GumboNode *found = NULL;
    node_push(&st, root);
    while (st.n > 0 && found == NULL) {
        const GumboNode *n = st.items[--st.n];
        if (node_is_element(n) && n->v.element.tag == tag) {
            found = n;
            break;
        }
        const GumboVector *ch = node_children(n);
        for (size_t i = ch ? ch->length : 0; i > 0; i--)
            node_push(&st, ch->data[i - 1]);
    }
    free(st.items);
    return found;
}

char *eval_visible_text(const char *html, size_t len)
{
    GumboOutput *out = gumbo_parse_with_options(&kGumboDefaultOptions, html ? html : "", html ? len : 0);
    text_sink_t t = {FIG_BUF_INIT, FIG_BUF_INIT, 0};
    if (out != NULL) {
        const GumboNode *root = find_tag(out->document, GUMBO_TAG_MAIN);
        if (root == NULL)
            root = find_tag(out->document, GUMBO_TAG_BODY);
        if (root == NULL)
            root = out->document;
        /* explicit stack: (node, next child); an entry with next == SIZE_MAX is the exit marker */
        typedef struct {
            const GumboNode *n;
            size_t next;
        } frame_t;
        frame_t *stack = NULL;
        size_t depth = 0, cap = 0;
#define PUSH_FRAME(node)                                                   \
    do {                                                                   \
        if (depth == cap) {                                                \
            cap = cap ? cap * 2 : 64;                                      \
            stack = fig_realloc(stack, cap * sizeof(*stack));              \
        }                                                                  \
        stack[depth++] = (frame_t){(node), 0};                             \
    } while (0)
        PUSH_FRAME(root);
        while (depth > 0) {
            frame_t *f = &stack[depth - 1];
            const GumboNode *n = f->n;
            if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_WHITESPACE || n->type == GUMBO_NODE_CDATA) {
                text_add(&t, n->v.text.text);
                depth--;
                continue;
            }
            if (!node_is_element(n) && n->type != GUMBO_NODE_DOCUMENT) { /* comments */
                depth--;
                continue;
            }
            GumboTag tag = n->type == GUMBO_NODE_DOCUMENT ? GUMBO_TAG_UNKNOWN : n->v.element.tag;
            if (f->next == 0) { /* entering */
                if (tag == GUMBO_TAG_SCRIPT || tag == GUMBO_TAG_STYLE || tag == GUMBO_TAG_HEAD ||
                    tag == GUMBO_TAG_TEMPLATE || tag == GUMBO_TAG_NOSCRIPT) {
                    depth--;
                    continue;
                }
                if (tag == GUMBO_TAG_BR || tag_is_block(tag))
                    text_newline(&t);
                if ((tag == GUMBO_TAG_TD || tag == GUMBO_TAG_TH) && t.line.len > 0) {
                    fig_buf_append_str(&t.line, " |");
                    t.space = 1;
                }
            }
            const GumboVector *ch = node_children(n);
            if (ch != NULL && f->next < ch->length) {
                const GumboNode *c = ch->data[f->next++];
                PUSH_FRAME(c);
                continue;
            }
            if (tag_is_block(tag))
                text_newline(&t);
            depth--;
        }
#undef PUSH_FRAME
        free(stack);
        gumbo_destroy_output(&kGumboDefaultOptions, out);
    }
    text_newline(&t);
    fig_buf_free(&t.line);
    if (t.out.data == NULL)
        return fig_strdup("");
    return fig_buf_steal(&t.out);
}

/* ====================================================================== diff */

typedef struct {
    const char *s;
    size_t len;
} line_t;

static line_t *split_lines(const char *text, size_t *n_out)
{
    size_t n = 0, cap = 0;
    line_t *v = NULL;
    const char *p = text ? text : "";
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            v = fig_realloc(v, cap * sizeof(*v));
        }
        v[n++] = (line_t){p, len};
        p += len + (nl ? 1 : 0);
    }
    *n_out = n;
    return v;
}

static int line_eq(const line_t *a, const line_t *b)
{
    return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

typedef struct {
    char op;       /* ' ', '-', '+' */
    size_t ai, bi; /* positions in a and b before this op */
} diff_op_t;

static void ops_push(diff_op_t **ops, size_t *n, size_t *cap, char op, size_t ai, size_t bi)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *ops = fig_realloc(*ops, *cap * sizeof(**ops));
    }
    (*ops)[(*n)++] = (diff_op_t){op, ai, bi};
}

size_t eval_diff(fig_buf_t *out, const char *old_label, const char *old_text, const char *new_label,
                 const char *new_text)
{
    size_t na, nb;
    line_t *a = split_lines(old_text, &na), *b = split_lines(new_text, &nb);
    size_t pre = 0, suf = 0;
    while (pre < na && pre < nb && line_eq(&a[pre], &b[pre]))
        pre++;
    while (suf < na - pre && suf < nb - pre && line_eq(&a[na - 1 - suf], &b[nb - 1 - suf]))
        suf++;
    size_t n = na - pre - suf, m = nb - pre - suf;

    diff_op_t *ops = NULL;
    size_t nops = 0, cap = 0, ai = 0, bi = 0;
    for (; ai < pre; ai++, bi++)
        ops_push(&ops, &nops, &cap, ' ', ai, bi);
    if (n > 0 && m > 0 && (n + 1) <= EVAL_DIFF_MAX_CELLS / (m + 1)) {
        /* dp[i][j] = LCS length of a[pre+i..] and b[pre+j..] within the middle */
        uint32_t *dp = fig_calloc((n + 1) * (m + 1), sizeof(uint32_t));
#define DP(i, j) dp[(size_t)(i) * (m + 1) + (j)]
        for (size_t i = n; i-- > 0;)
            for (size_t j = m; j-- > 0;)
                DP(i, j) = line_eq(&a[pre + i], &b[pre + j]) ? DP(i + 1, j + 1) + 1
                           : DP(i + 1, j) >= DP(i, j + 1) ? DP(i + 1, j) : DP(i, j + 1);
        size_t i = 0, j = 0;
        while (i < n || j < m) {
            if (i < n && j < m && line_eq(&a[pre + i], &b[pre + j])) {
                ops_push(&ops, &nops, &cap, ' ', ai++, bi++);
                i++, j++;
            } else if (j == m || (i < n && DP(i + 1, j) >= DP(i, j + 1))) {
                ops_push(&ops, &nops, &cap, '-', ai++, bi);
                i++;
            } else {
                ops_push(&ops, &nops, &cap, '+', ai, bi++);
                j++;
            }
        }
#undef DP
        free(dp);
    } else { /* one side empty, or too large for the table: replaced wholesale */
        for (size_t i = 0; i < n; i++)
            ops_push(&ops, &nops, &cap, '-', ai++, bi);
        for (size_t j = 0; j < m; j++)
            ops_push(&ops, &nops, &cap, '+', ai, bi++);
    }
    for (size_t k = 0; k < suf; k++)
        ops_push(&ops, &nops, &cap, ' ', ai++, bi++);

    fig_buf_appendf(out, "--- %s\n+++ %s\n", old_label, new_label);
    size_t changed = 0, k = 0;
    const size_t ctx = EVAL_DIFF_CONTEXT;
    while (k < nops) {
        if (ops[k].op == ' ') {
            k++;
            continue;
        }
        size_t start = k > ctx ? k - ctx : 0, last = k;
        for (size_t j = k + 1; j < nops && j <= last + 2 * ctx + 1; j++)
            if (ops[j].op != ' ')
                last = j;
        size_t stop = last + ctx + 1 < nops ? last + ctx + 1 : nops;
        size_t oc = 0, nc = 0;
        for (size_t j = start; j < stop; j++) {
            oc += ops[j].op != '+';
            nc += ops[j].op != '-';
        }
        fig_buf_appendf(out, "@@ -%zu,%zu +%zu,%zu @@\n", oc ? ops[start].ai + 1 : ops[start].ai, oc,
                        nc ? ops[start].bi + 1 : ops[start].bi, nc);
        for (size_t j = start; j < stop; j++) {
            const line_t *l = ops[j].op == '+' ? &b[ops[j].bi] : &a[ops[j].ai];
            fig_buf_append(out, &ops[j].op, 1);
            fig_buf_append(out, l->s, l->len);
            fig_buf_append(out, "\n", 1);
            changed += ops[j].op != ' ';
        }
        k = stop;
    }
    free(ops);
    free(a);
    free(b);
    return changed;
}

/* ====================================================================== HTTP */

typedef struct {
    fig_buf_t body;
    char trace_id[33];
    int too_big;
} http_resp_t;

static size_t http_on_body(char *p, size_t sz, size_t nm, void *ud)
{
    http_resp_t *r = ud;
    size_t n = sz * nm;
    if (r->body.len + n > EVAL_MAX_BODY) {
        r->too_big = 1;
        return 0; /* aborts the transfer */
    }
    fig_buf_append(&r->body, p, n);
    return n;
}

static size_t http_on_header(char *p, size_t sz, size_t nm, void *ud)
{
    http_resp_t *r = ud;
    size_t n = sz * nm;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        r->trace_id[0] = '\0'; /* a new response (after 100 Continue) */
    } else if (n > 11 && strncasecmp(p, "x-trace-id:", 11) == 0) {
        const char *v = p + 11, *e = p + n;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
            e--;
        int ok = e - v == 32;
        for (const char *c = v; ok && c < e; c++)
            ok = isxdigit((unsigned char)*c);
        if (ok) {
            memcpy(r->trace_id, v, 32);
            r->trace_id[32] = '\0';
        }
    }
    return n;
}

static void fields_encode(CURL *h, fig_buf_t *out, const json_t *obj)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        size_t cnt = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < cnt; i++) {
            const json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
            char *ek = curl_easy_escape(h, k, 0);
            char *ev = curl_easy_escape(h, json_string_value(s), (int)json_string_length(s));
            fig_buf_appendf(out, "%s%s=%s", out->len ? "&" : "", ek ? ek : "", ev ? ev : "");
            curl_free(ek);
            curl_free(ev);
        }
    }
}

/* One request; *status 0 and *error set when the transport failed. */
static void http_do(int port, const char *method, const char *path, const json_t *query, const json_t *form,
                    const char *cookie, const char *csrf, http_resp_t *resp, int *status, double *wall_ms,
                    fig_buf_t *error)
{
    CURL *h = curl_easy_init();
    fig_buf_t url = FIG_BUF_INIT, q = FIG_BUF_INIT, body = FIG_BUF_INIT, ck = FIG_BUF_INIT;
    *status = 0;
    *wall_ms = 0;
    if (h == NULL) {
        fig_buf_append_str(error, "curl_easy_init failed");
        return;
    }
    if (query)
        fields_encode(h, &q, query);
    fig_buf_appendf(&url, "http://127.0.0.1:%d%s%s%s", port, path, q.len ? "?" : "", q.len ? q.data : "");
    fig_buf_appendf(&ck, "%s=%s", SESSION_COOKIE_NAME, cookie);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: text/html");
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url.data);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, EVAL_HTTP_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_COOKIE, ck.data);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
    if (strcmp(method, "POST") == 0) {
        if (form)
            fields_encode(h, &body, form);
        fig_buf_appendf(&body, "%s_csrf=%s", body.len ? "&" : "", csrf ? csrf : "");
        hdrs = curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)body.len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CURLcode rc = curl_easy_perform(h);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *wall_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (rc == CURLE_OK) {
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        *status = (int)code;
    } else if (resp->too_big) {
        fig_buf_appendf(error, "response body over %u bytes", EVAL_MAX_BODY);
    } else {
        fig_buf_appendf(error, "request failed: %s", curl_easy_strerror(rc));
    }
    /* the body is used as a C string (regex, gumbo copies): keep a NUL after it */
    fig_buf_reserve(&resp->body, 1);
    resp->body.data[resp->body.len] = '\0';
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    fig_buf_free(&url);
    fig_buf_free(&q);
    fig_buf_free(&body);
    fig_buf_free(&ck);
}

/* ====================================================================== runner */

typedef struct {
    const config_t *cfg;
    server_t *srv;
    uint8_t key[SESSION_KEY_LEN];
    session_store_t *store;
    trace_reader_t *traces;
} runner_t;

static void runner_stop(runner_t *r)
{
    if (r->traces)
        trace_reader_close(r->traces);
    if (r->store)
        session_store_close(r->store);
    server_stop(r->srv);
    memset(r, 0, sizeof(*r));
}

static int runner_start(runner_t *r, const config_t *cfg, fig_err_t *err)
{
    memset(r, 0, sizeof(*r));
    r->cfg = cfg;
    if ((r->srv = server_start(cfg, err)) == NULL)
        return -1;
    fig_buf_t p = FIG_BUF_INIT;
    int rc = -1;
    if (session_key_load(cfg->var_dir, r->key, err) != 0)
        goto done;
    fig_buf_appendf(&p, "%s/figment.db", cfg->var_dir);
    if ((r->store = session_store_open(p.data, err)) == NULL)
        goto done;
    fig_buf_reset(&p);
    fig_buf_appendf(&p, "%s/traces.db", cfg->var_dir);
    r->traces = trace_reader_open(p.data, err);
    if (r->traces == NULL)
        goto done;
    rc = 0;
done:
    fig_buf_free(&p);
    if (rc != 0)
        runner_stop(r);
    return rc;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The trace of an interaction just answered: flushed, then polled for up to 2 s. */
static json_t *runner_trace(runner_t *r, const char *trace_id)
{
    if (trace_id == NULL || trace_id[0] == '\0')
        return NULL;
    for (int waited = 0;; waited += 20) {
        server_flush_traces(r->srv);
        fig_err_t err;
        fig_err_clear(&err);
        json_t *t = trace_get(r->traces, trace_id, &err);
        if (t != NULL || waited >= EVAL_TRACE_WAIT_MS)
            return t;
        sleep_ms(20);
    }
}

typedef struct {
    int status;
    char trace_id[33];
    double wall_ms;
    fig_buf_t body;
    fig_buf_t error;    /* transport or setup failure */
} exchange_t;

static void exchange_free(exchange_t *x)
{
    fig_buf_free(&x->body);
    fig_buf_free(&x->error);
}

/* A fresh session with `state`, then one request. */
static void runner_exchange(runner_t *r, const char *app, const char *method, const char *path, const json_t *query,
                            const json_t *form, const json_t *state, exchange_t *x)
{
    memset(x, 0, sizeof(*x));
    session_t s;
    memset(&s, 0, sizeof(s));
    session_new_id(s.id);
    if (state != NULL && json_object_size(state) > 0) {
        fig_err_t err;
        fig_err_clear(&err);
        fig_buf_t setup = FIG_BUF_INIT;
        fig_buf_appendf(&setup, "/%s/", app);
        s.state = (json_t *)state;
        int rc = session_save(r->store, &s, app, "GET", setup.data, "(eval setup)", &err);
        fig_buf_free(&setup);
        if (rc != 0) {
            fig_buf_appendf(&x->error, "cannot preset the session state: %s", err.msg);
            return;
        }
    }
    char *cookie = session_cookie_sign(r->key, s.id);
    char *csrf = session_csrf_token(r->key, s.id);
    http_resp_t resp;
    memset(&resp, 0, sizeof(resp));
    http_do(server_port(r->srv), method, path, query, form, cookie, csrf, &resp, &x->status, &x->wall_ms, &x->error);
    memcpy(x->trace_id, resp.trace_id, sizeof(x->trace_id));
    x->body = resp.body;
    free(cookie);
    free(csrf);
}

/* ---- one eval run ---- */

typedef struct {
    const eval_case_t *c;
    int pass;
    int status;
    char trace_id[33];
    int have_trace;
    double wall_ms, latency_ms, cost_usd;
    char *model;
    json_t *failures;   /* array of strings */
} case_result_t;

typedef struct {
    char *label;        /* "" for a single run */
    case_result_t *res;
    size_t n;
    size_t passed;
    double cost_usd, p50_ms, p95_ms;
    int failed_to_start;
} run_result_t;

static double json_num(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : 0;
}

static void add_failure(case_result_t *cr, const eval_assert_t *a, size_t idx, const char *reason)
{
    fig_buf_t b = FIG_BUF_INIT;
    if (a != NULL) {
        fig_buf_appendf(&b, "assert[%zu] ", idx);
        eval_assert_describe(a, &b);
        fig_buf_appendf(&b, ": %s", reason);
    } else {
        fig_buf_append_str(&b, reason);
    }
    json_array_append_new(cr->failures, json_string(b.data));
    fig_buf_free(&b);
}

static void run_case(runner_t *r, const eval_case_t *c, case_result_t *cr)
{
    cr->c = c;
    cr->failures = json_array();
    exchange_t x;
    runner_exchange(r, c->app, c->method, c->path, c->query, c->form, c->state, &x);
    cr->status = x.status;
    cr->wall_ms = cr->latency_ms = x.wall_ms;
    memcpy(cr->trace_id, x.trace_id, sizeof(cr->trace_id));
    if (x.error.len > 0) {
        add_failure(cr, NULL, 0, x.error.data);
        cr->pass = 0;
        exchange_free(&x);
        return;
    }
    fig_buf_t dbp = FIG_BUF_INIT;
    fig_buf_appendf(&dbp, "%s/apps/%s.db", r->cfg->var_dir, c->app);
    eval_response_t resp = {x.status, x.body.data, x.body.len, dbp.data, 0, 0, 0};
    /* page, status and database first: the database must be read right after the case */
    for (size_t i = 0; i < c->n_asserts; i++) {
        if (eval_assert_needs_trace(&c->asserts[i]))
            continue;
        fig_buf_t why = FIG_BUF_INIT;
        if (!eval_check(&c->asserts[i], &resp, &why))
            add_failure(cr, &c->asserts[i], i, why.data ? why.data : "failed");
        fig_buf_free(&why);
    }
    json_t *t = runner_trace(r, cr->trace_id);
    if (t != NULL) {
        cr->have_trace = resp.have_trace = 1;
        cr->latency_ms = resp.latency_ms = json_num(t, "total_ms");
        cr->cost_usd = resp.cost_usd = json_num(t, "cost_usd");
        const char *m = json_string_value(json_object_get(t, "model"));
        cr->model = m ? fig_strdup(m) : NULL;
        json_decref(t);
    }
    for (size_t i = 0; i < c->n_asserts; i++) {
        if (!eval_assert_needs_trace(&c->asserts[i]))
            continue;
        fig_buf_t why = FIG_BUF_INIT;
        if (!eval_check(&c->asserts[i], &resp, &why))
            add_failure(cr, &c->asserts[i], i, why.data ? why.data : "failed");
        fig_buf_free(&why);
    }
    cr->pass = json_array_size(cr->failures) == 0;
    fig_buf_free(&dbp);
    exchange_free(&x);
}

static void print_case_line(FILE *f, const char *pfx, const case_result_t *cr)
{
    fprintf(f, "%s%s %s (%.0f ms, $%.6f%s)", pfx, cr->pass ? "PASS" : "FAIL", cr->c->name, cr->latency_ms,
            cr->cost_usd, cr->have_trace ? "" : ", no trace");
    for (size_t i = 0; i < json_array_size(cr->failures); i++)
        fprintf(f, "%s%s", i == 0 ? ": " : "; ", json_string_value(json_array_get(cr->failures, i)));
    fputc('\n', f);
    fflush(f);
}

static void run_summarize(run_result_t *rr)
{
    double *lat = fig_calloc(rr->n ? rr->n : 1, sizeof(double));
    rr->passed = 0;
    rr->cost_usd = 0;
    for (size_t i = 0; i < rr->n; i++) {
        rr->passed += rr->res[i].pass;
        rr->cost_usd += rr->res[i].cost_usd;
        lat[i] = rr->res[i].latency_ms;
    }
    rr->p50_ms = eval_percentile(lat, rr->n, 0.50);
    rr->p95_ms = eval_percentile(lat, rr->n, 0.95);
    free(lat);
}

static double run_rate(const run_result_t *rr)
{
    return rr->n ? (double)rr->passed / (double)rr->n : 0;
}

/* tag: "" for a single run, "A"/"B" when comparing */
static void print_summary(const run_result_t *rr, const char *tag)
{
    fprintf(stdout, "eval%s%s%s%s%s: %zu cases, %zu passed (%.1f%%), cost $%.6f, latency p50 %.0f ms p95 %.0f ms\n",
            tag[0] ? " [" : "", tag, tag[0] ? " " : "", rr->label, tag[0] ? "]" : "", rr->n, rr->passed,
            100.0 * run_rate(rr), rr->cost_usd, rr->p50_ms, rr->p95_ms);
}

/* Runs every case against a server started with cfg. Prints each case as it ends. */
static int run_set(const config_t *cfg, const eval_set_t *set, run_result_t *rr, const char *line_pfx)
{
    runner_t r;
    fig_err_t err;
    fig_err_clear(&err);
    rr->res = fig_calloc(set->n_cases, sizeof(*rr->res));
    if (runner_start(&r, cfg, &err) != 0) {
        fprintf(stderr, "figment eval: cannot start the server: %s\n", err.msg);
        rr->failed_to_start = 1;
        return -1;
    }
    for (size_t i = 0; i < set->n_cases; i++) {
        run_case(&r, &set->cases[i], &rr->res[i]);
        rr->n = i + 1;
        print_case_line(stdout, line_pfx, &rr->res[i]);
    }
    runner_stop(&r);
    run_summarize(rr);
    return 0;
}

static void run_free(run_result_t *rr)
{
    for (size_t i = 0; i < rr->n; i++) {
        free(rr->res[i].model);
        json_decref(rr->res[i].failures);
    }
    free(rr->res);
    free(rr->label);
    memset(rr, 0, sizeof(*rr));
}

static json_t *run_json(const run_result_t *rr, double threshold)
{
    json_t *cases = json_array();
    for (size_t i = 0; i < rr->n; i++) {
        const case_result_t *cr = &rr->res[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(cr->c->name));
        json_object_set_new(o, "line", json_integer(cr->c->line));
        json_object_set_new(o, "pass", json_boolean(cr->pass));
        json_object_set_new(o, "status", json_integer(cr->status));
        json_object_set_new(o, "trace_id", cr->trace_id[0] ? json_string(cr->trace_id) : json_null());
        json_object_set_new(o, "have_trace", json_boolean(cr->have_trace));
        json_object_set_new(o, "model", cr->model ? json_string(cr->model) : json_null());
        json_object_set_new(o, "latency_ms", json_real(cr->latency_ms));
        json_object_set_new(o, "wall_ms", json_real(cr->wall_ms));
        json_object_set_new(o, "cost_usd", json_real(cr->cost_usd));
        json_object_set_new(o, "failures", json_incref(cr->failures));
        json_array_append_new(cases, o);
    }
    json_t *o = json_object();
    if (rr->label[0])
        json_object_set_new(o, "label", json_string(rr->label)); /* the model or prompts directory compared */
    json_object_set_new(o, "cases", cases);
    json_object_set_new(o, "total", json_integer((json_int_t)rr->n));
    json_object_set_new(o, "passed", json_integer((json_int_t)rr->passed));
    json_object_set_new(o, "pass_rate", json_real(run_rate(rr)));
    json_object_set_new(o, "threshold", json_real(threshold));
    json_object_set_new(o, "ok", json_boolean(!rr->failed_to_start && run_rate(rr) >= threshold));
    json_object_set_new(o, "cost_usd", json_real(rr->cost_usd));
    json_object_set_new(o, "p50_ms", json_real(rr->p50_ms));
    json_object_set_new(o, "p95_ms", json_real(rr->p95_ms));
    return o;
}

/* ====================================================================== command line */

/* Serve flags that take a value: their value is never the positional argument. */
static int serve_flag_takes_value(const char *a)
{
    static const char *const flags[] = {"--threads", "--workers", "--prompts", "--var",
                                        "--static", "--config", NULL};
    return key_in(a, flags);
}

typedef struct {
    const char *positional;
    char **serve;       /* argv for config_parse */
    int n_serve;
    config_t cfg;
    int have_cfg;
} cli_t;

/* Splits argv into the positional argument, the caller's own flags (handled by
 * own(), which returns the number of argv entries it consumed, 0 if not its flag,
 * -1 on error) and serve flags, then parses the serve flags. */
static int cli_parse(cli_t *cli, int argc, char **argv, const char *cmd,
                     int (*own)(void *ctx, int argc, char **argv, int i), void *ctx)
{
    memset(cli, 0, sizeof(*cli));
    cli->serve = fig_calloc((size_t)argc + 1, sizeof(char *));
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int used = own(ctx, argc, argv, i);
        if (used < 0)
            return -1;
        if (used > 0) {
            i += used - 1;
            continue;
        }
        if (strcmp(a, "--listen") == 0 || strcmp(a, "--port-file") == 0) {
            fprintf(stderr, "figment %s: %s is not used: the server listens on 127.0.0.1 on a free port\n", cmd, a);
            return -1;
        }
        if (a[0] == '-' && a[1] != '\0') {
            cli->serve[cli->n_serve++] = argv[i];
            if (serve_flag_takes_value(a) && i + 1 < argc)
                cli->serve[cli->n_serve++] = argv[++i];
            continue;
        }
        if (cli->positional != NULL) {
            fprintf(stderr, "figment %s: unexpected argument '%s'\n", cmd, a);
            return -1;
        }
        cli->positional = a;
    }
    fig_err_t err;
    fig_err_clear(&err);
    if (config_parse(&cli->cfg, cli->n_serve, cli->serve, &err) != 0) {
        fprintf(stderr, "figment %s: %s\n", cmd, err.msg);
        return -1;
    }
    cli->have_cfg = 1;
    free(cli->cfg.listen_host);
    cli->cfg.listen_host = fig_strdup("127.0.0.1");
    cli->cfg.listen_port = 0;
    cli->cfg.quiet = 1;
    return 0;
}

static void cli_free(cli_t *cli)
{
    if (cli->have_cfg)
        config_free(&cli->cfg);
    free(cli->serve);
}

/* A copy of cfg->config_path with default_models = [model], written under var_dir.
 * Returns the malloc'd path, or NULL after printing why. */
static char *config_with_model(const config_t *cfg, const char *model, int n, const char *cmd)
{
    const char *slash = strchr(model, '/');
    if (slash == NULL || slash == model || slash[1] == '\0' || !text_clean(model)) {
        fprintf(stderr, "figment %s: '%s': expected a model as provider/model\n", cmd, model);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_load_file(cfg->config_path, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(root)) {
        fprintf(stderr, "figment %s: %s: %s\n", cmd, cfg->config_path, root ? "expected a JSON object" : je.text);
        json_decref(root);
        return NULL;
    }
    json_object_set_new(root, "default_models", json_pack("[s]", model));
    if (mkdir(cfg->var_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "figment %s: cannot create %s: %s\n", cmd, cfg->var_dir, strerror(errno));
        json_decref(root);
        return NULL;
    }
    fig_buf_t p = FIG_BUF_INIT;
    fig_buf_appendf(&p, "%s/eval-figment-%d-%d.json", cfg->var_dir, (int)getpid(), n);
    if (json_dump_file(root, p.data, JSON_INDENT(2)) != 0) {
        fprintf(stderr, "figment %s: cannot write %s\n", cmd, p.data);
        json_decref(root);
        fig_buf_free(&p);
        return NULL;
    }
    chmod(p.data, 0600);
    json_decref(root);
    return fig_buf_steal(&p);
}

static int split_pair(const char *v, char **a, char **b)
{
    const char *comma = strchr(v, ',');
    if (comma == NULL || comma == v || comma[1] == '\0' || strchr(comma + 1, ',') != NULL)
        return -1;
    *a = fig_strndup(v, (size_t)(comma - v));
    *b = fig_strdup(comma + 1);
    return 0;
}

typedef struct {
    double threshold;
    int json;
    const char *compare_models, *compare_prompts;
} eval_opts_t;

static int eval_own_flag(void *ctx, int argc, char **argv, int i)
{
    eval_opts_t *o = ctx;
    const char *a = argv[i];
    int takes = strcmp(a, "--threshold") == 0 || strcmp(a, "--compare-models") == 0 ||
                strcmp(a, "--compare-prompts") == 0;
    if (strcmp(a, "--json") == 0) {
        o->json = 1;
        return 1;
    }
    if (!takes)
        return 0;
    if (i + 1 >= argc) {
        fprintf(stderr, "figment eval: %s needs a value\n", a);
        return -1;
    }
    const char *v = argv[i + 1];
    if (strcmp(a, "--threshold") == 0) {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (errno != 0 || end == v || *end != '\0' || !(d >= 0 && d <= 1)) {
            fprintf(stderr, "figment eval: --threshold: expected a number from 0 to 1, got '%s'\n", v);
            return -1;
        }
        o->threshold = d;
    } else if (strcmp(a, "--compare-models") == 0) {
        o->compare_models = v;
    } else {
        o->compare_prompts = v;
    }
    return 2;
}

static char *read_file(const char *path, size_t *len, fig_err_t *err)
{
    return fs_read_file(path, (size_t)EVAL_MAX_CASES * 4096 + EVAL_MAX_LINE_BYTES, len, NULL, FIG_E_IO, err);
}

static void print_side_by_side(const eval_set_t *set, run_result_t runs[2])
{
    int w = 4;
    for (size_t i = 0; i < set->n_cases; i++) {
        int l = (int)strlen(set->cases[i].name);
        w = l > w ? l : w;
    }
    w = w > 40 ? 40 : w;
    char head[2][64];
    for (int k = 0; k < 2; k++)
        snprintf(head[k], sizeof(head[k]), "%c: %.58s", 'A' + k, runs[k].label);
    printf("\n%-*.*s | %-28s | %-28s\n", w, w, "case", head[0], head[1]);
    for (int i = 0; i < w; i++)
        putchar('-');
    printf("-+------------------------------+-----------------------------\n");
    for (size_t i = 0; i < set->n_cases; i++) {
        printf("%-*.*s", w, w, set->cases[i].name);
        for (int k = 0; k < 2; k++) {
            char cell[64] = "not run";
            if (i < runs[k].n) {
                const case_result_t *cr = &runs[k].res[i];
                snprintf(cell, sizeof(cell), "%s %6.0f ms $%.6f", cr->pass ? "PASS" : "FAIL", cr->latency_ms,
                         cr->cost_usd);
            }
            printf(" | %-28s", cell);
        }
        putchar('\n');
    }
    putchar('\n');
}

int eval_main(int argc, char **argv)
{
    eval_opts_t o = {0.9, 0, NULL, NULL};
    cli_t cli;
    int rc = 2;
    eval_set_t *set = NULL;
    char *text = NULL;
    char *labels[2] = {NULL, NULL};
    run_result_t runs[2];
    memset(runs, 0, sizeof(runs));
    if (cli_parse(&cli, argc, argv, "eval", eval_own_flag, &o) != 0)
        goto usage;
    if (cli.positional == NULL) {
        fprintf(stderr, "figment eval: missing FILE.jsonl\n");
        goto usage;
    }
    if (o.compare_models && o.compare_prompts) {
        fprintf(stderr, "figment eval: --compare-models and --compare-prompts cannot be combined\n");
        goto usage;
    }
    const char *pair = o.compare_models ? o.compare_models : o.compare_prompts;
    if (pair && split_pair(pair, &labels[0], &labels[1]) != 0) {
        fprintf(stderr, "figment eval: %s: expected two values separated by one comma, got '%s'\n",
                o.compare_models ? "--compare-models" : "--compare-prompts", pair);
        goto usage;
    }
    if (o.compare_models && cli.cfg.config_path == NULL) {
        fprintf(stderr, "figment eval: compare needs --config (a figment.json whose default_models it overrides)\n");
        goto usage;
    }
    fig_err_t err;
    fig_err_clear(&err);
    size_t len = 0;
    if ((text = read_file(cli.positional, &len, &err)) == NULL) {
        fprintf(stderr, "figment eval: %s\n", err.msg);
        goto out;
    }
    if ((set = eval_set_parse(text, len, cli.positional, &err)) == NULL) {
        fprintf(stderr, "figment eval: %s\n", err.msg);
        goto out;
    }

    rc = 1;
    if (pair == NULL) {
        runs[0].label = fig_strdup("");
        if (run_set(&cli.cfg, set, &runs[0], "") != 0)
            goto out;
        print_summary(&runs[0], "");
        rc = run_rate(&runs[0]) >= o.threshold ? 0 : 1;
        if (o.json) {
            json_t *j = run_json(&runs[0], o.threshold);
            char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
            printf("%s\n", s);
            free(s);
            json_decref(j);
        }
        goto out;
    }

    int ok = 1;
    for (int k = 0; k < 2; k++)
        runs[k].label = fig_strdup(labels[k]);
    for (int k = 0; k < 2; k++) {
        char *orig_conf = cli.cfg.config_path, *orig_prompts = cli.cfg.prompts_dir, *gen = NULL;
        if (o.compare_models) {
            if ((gen = config_with_model(&cli.cfg, labels[k], k, "eval")) == NULL) {
                ok = 0;
                break;
            }
            cli.cfg.config_path = gen;
        } else {
            cli.cfg.prompts_dir = labels[k];
        }
        /* each side starts from freshly seeded app databases: the cases may write, and
         * A's writes must not decide B's results */
        char *orig_var = cli.cfg.var_dir;
        fig_buf_t side_var = FIG_BUF_INIT;
        fig_buf_appendf(&side_var, "%s/eval-%d-%c", orig_var, (int)getpid(), 'A' + k);
        cli.cfg.var_dir = side_var.data;
        char pfx[80];
        snprintf(pfx, sizeof(pfx), "%c: ", 'A' + k);
        printf("== %c: %s\n", 'A' + k, labels[k]);
        fflush(stdout);
        int r = run_set(&cli.cfg, set, &runs[k], pfx);
        cli.cfg.var_dir = orig_var;
        fig_buf_free(&side_var);
        cli.cfg.config_path = orig_conf;
        cli.cfg.prompts_dir = orig_prompts;
        if (gen != NULL)
            unlink(gen);
        free(gen);
        if (r != 0) {
            ok = 0;
            break;
        }
    }
    print_side_by_side(set, runs);
    for (int k = 0; k < 2; k++) {
        if (runs[k].res != NULL && !runs[k].failed_to_start)
            print_summary(&runs[k], k == 0 ? "A" : "B");
        ok = ok && !runs[k].failed_to_start && run_rate(&runs[k]) >= o.threshold;
    }
    rc = ok ? 0 : 1;
    if (o.json) {
        json_t *j = json_object();
        json_t *arr = json_array();
        for (int k = 0; k < 2; k++)
            json_array_append_new(arr, run_json(&runs[k], o.threshold));
        json_object_set_new(j, "compare", json_string(o.compare_models ? "models" : "prompts"));
        json_object_set_new(j, "runs", arr);
        json_object_set_new(j, "ok", json_boolean(ok));
        char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        printf("%s\n", s);
        free(s);
        json_decref(j);
    }
    goto out;

usage:
    fprintf(stderr, "usage: figment eval FILE.jsonl [--prompts DIR] [--var DIR] [--config figment.json] [--threads N]\n"
                    "                    [--threshold 0.9] [--compare-models A,B | --compare-prompts DIR_A,DIR_B] "
                    "[--json]\n");
    rc = 2;
out:
    for (int k = 0; k < 2; k++) {
        run_free(&runs[k]);
        free(labels[k]);
    }
    eval_set_free(set);
    free(text);
    cli_free(&cli);
    return rc;
}

/* ====================================================================== replay */

typedef struct {
    const char *model;
} replay_opts_t;

static int replay_own_flag(void *ctx, int argc, char **argv, int i)
{
    replay_opts_t *o = ctx;
    if (strcmp(argv[i], "--model") != 0)
        return 0;
    if (i + 1 >= argc) {
        fprintf(stderr, "figment replay: --model needs a value\n");
        return -1;
    }
    o->model = argv[i + 1];
    return 2;
}

static int trace_id_ok(const char *s)
{
    if (s == NULL || strlen(s) != 32)
        return 0;
    for (size_t i = 0; i < 32; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static void print_side(const char *which, const json_t *t, int status)
{
    const char *model = t ? json_string_value(json_object_get(t, "model")) : NULL;
    if (t == NULL) {
        printf("%s: no trace (status %d)\n", which, status);
        return;
    }
    printf("%s: model %s, latency %.0f ms, cost $%.6f, status %d\n", which, model ? model : "(none)",
           json_num(t, "total_ms"), json_num(t, "cost_usd"), status);
}

int replay_main(int argc, char **argv)
{
    replay_opts_t o = {NULL};
    cli_t cli;
    int rc = 2;
    json_t *old = NULL, *neu = NULL;
    char *gen = NULL;
    fig_buf_t path = FIG_BUF_INIT;
    exchange_t x;
    memset(&x, 0, sizeof(x));
    if (cli_parse(&cli, argc, argv, "replay", replay_own_flag, &o) != 0)
        goto usage;
    if (!trace_id_ok(cli.positional)) {
        fprintf(stderr, "figment replay: expected a trace id (32 hex characters)\n");
        goto usage;
    }
    if (o.model != NULL && cli.cfg.config_path == NULL) {
        fprintf(stderr, "figment replay: --model needs --config (a figment.json whose default_models it overrides)\n");
        goto usage;
    }
    rc = 1;
    fig_err_t err;
    fig_err_clear(&err);
    fig_buf_appendf(&path, "%s/traces.db", cli.cfg.var_dir);
    if (access(path.data, F_OK) != 0) {
        fprintf(stderr, "figment replay: %s: no trace store\n", path.data);
        goto out;
    }
    trace_reader_t *rd = trace_reader_open(path.data, &err);
    if (rd == NULL) {
        fprintf(stderr, "figment replay: %s\n", err.msg);
        goto out;
    }
    old = trace_get(rd, cli.positional, &err);
    trace_reader_close(rd);
    if (old == NULL) {
        fprintf(stderr, "figment replay: trace %s: %s\n", cli.positional, err.msg);
        goto out;
    }
    const char *app = json_string_value(json_object_get(old, "app"));
    const json_t *req = json_object_get(old, "request");
    const char *method = json_string_value(json_object_get(req, "method"));
    const char *rpath = json_string_value(json_object_get(req, "path"));
    json_t *query = json_object_get(req, "query"), *form = json_object_get(req, "form");
    json_t *state = json_object_get(old, "state");
    if (app == NULL || !app_name_ok(app) || method == NULL || (strcmp(method, "GET") && strcmp(method, "POST")) ||
        rpath == NULL || !path_ok(rpath, app) || (query && !json_is_object(query)) || (form && !json_is_object(form)) ||
        (state && !json_is_null(state) && !json_is_object(state))) {
        fprintf(stderr, "figment replay: trace %s has no replayable request (a GET or POST under its app)\n",
                cli.positional);
        goto out;
    }
    if ((query && fields_ok(query, "query", "trace: ", &err) != 0) ||
        (form && fields_ok(form, "form", "trace: ", &err) != 0)) {
        fprintf(stderr, "figment replay: %s (file uploads cannot be replayed)\n", err.msg);
        goto out;
    }
    char *orig_conf = cli.cfg.config_path;
    if (o.model != NULL) {
        if ((gen = config_with_model(&cli.cfg, o.model, 0, "replay")) == NULL)
            goto out;
        cli.cfg.config_path = gen;
    }
    runner_t r;
    int started = runner_start(&r, &cli.cfg, &err);
    cli.cfg.config_path = orig_conf;
    if (started != 0) {
        fprintf(stderr, "figment replay: cannot start the server: %s\n", err.msg);
        goto out;
    }
    runner_exchange(&r, app, method, rpath, query, form, json_is_object(state) ? state : NULL, &x);
    if (x.error.len == 0)
        neu = runner_trace(&r, x.trace_id);
    runner_stop(&r);
    if (x.error.len > 0) {
        fprintf(stderr, "figment replay: %s\n", x.error.data);
        goto out;
    }

    const char *old_html = json_string_value(json_object_get(old, "page_html"));
    const char *new_html = neu ? json_string_value(json_object_get(neu, "page_html")) : NULL;
    char *old_text = eval_visible_text(old_html ? old_html : "", old_html ? strlen(old_html) : 0);
    /* the served page when the new trace has no page: its <main> holds the same body */
    char *new_text = new_html ? eval_visible_text(new_html, strlen(new_html))
                              : eval_visible_text(x.body.data ? x.body.data : "", x.body.len);
    fig_buf_t labels[2] = {FIG_BUF_INIT, FIG_BUF_INIT}, diff = FIG_BUF_INIT;
    fig_buf_appendf(&labels[0], "old %s %s", cli.positional, rpath);
    fig_buf_appendf(&labels[1], "new %s %s", x.trace_id[0] ? x.trace_id : "(no trace id)", rpath);
    size_t changed = eval_diff(&diff, labels[0].data, old_text, labels[1].data, new_text);
    fwrite(diff.data, 1, diff.len, stdout);
    if (changed == 0)
        printf("(the visible text is the same)\n");
    print_side("old", old, (int)json_integer_value(json_object_get(old, "status")));
    print_side("new", neu, x.status);
    fflush(stdout);
    fig_buf_free(&labels[0]);
    fig_buf_free(&labels[1]);
    fig_buf_free(&diff);
    free(old_text);
    free(new_text);
    rc = 0;
    goto out;

usage:
    fprintf(stderr, "usage: figment replay TRACE_ID [--prompts DIR] [--var DIR] [--config figment.json] "
                    "[--model provider/model]\n");
    rc = 2;
out:
    if (gen != NULL) {
        unlink(gen);
        free(gen);
    }
    exchange_free(&x);
    fig_buf_free(&path);
    json_decref(old);
    json_decref(neu);
    cli_free(&cli);
    return rc;
}
