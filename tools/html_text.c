/*
 * html_text.c — an untrusted HTML page reduced to plain text for the model (see
 * html_text.h).
 *
 * Two passes. gumbo 0.10.1 is not safe on hostile input by itself: measured here, 200k
 * nested <div>s take 93 s to parse (its open-element scans are linear in the depth,
 * so the whole parse is quadratic) and 300k nested <b>s overflow the stack
 * (recursive destroy), and formatting-element reconstruction can clone many elements
 * per text run. So a linear pre-pass (html_text_bound) first rewrites the page into a
 * small, well-nested subset: only the ~45 structural tags the text needs, only the
 * href/alt attributes, every element explicitly closed, nesting capped at
 * HTML_TEXT_MAX_DEPTH, no formatting elements but <a> (at most one open), and the
 * noise (script, style, nav, svg, form controls, hidden elements, comments) already
 * gone. gumbo then parses that subset in linear time and does what it is good at:
 * entities, implied structure (tables, lists), and the walk below turns the tree into
 * text, iteratively (no recursion on attacker-controlled depth).
 *
 * The pre-pass is an approximation of HTML's tree builder, on purpose: it only has to
 * be exact about what to drop, and it is conservative there (an unclosed <nav> drops
 * the rest of the page, as a browser would hide it inside the nav).
 */
#include "html_text.h"

#include <curl/curl.h>
#include <gumbo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --------------------------------------------------------- the pre-pass */

/* The kept tags, alphabetical; the index is the tag id (< 64: sets are bitmasks). */
enum {
    T_A, T_ADDRESS, T_ARTICLE, T_ASIDE, T_BLOCKQUOTE, T_BR, T_CAPTION, T_CENTER, T_DD, T_DETAILS, T_DIV,
    T_DL, T_DT, T_FIELDSET, T_FIGCAPTION, T_FIGURE, T_FOOTER, T_H1, T_H2, T_H3, T_H4, T_H5, T_H6,
    T_HEADER, T_HGROUP, T_HR, T_IMG, T_LEGEND, T_LI, T_MAIN, T_OL, T_P, T_PRE, T_SECTION, T_SUMMARY,
    T_TABLE, T_TBODY, T_TD, T_TFOOT, T_TH, T_THEAD, T_TR, T_UL, T_COUNT
};
static const char *const kept_names[T_COUNT] = {
    "a", "address", "article", "aside", "blockquote", "br", "caption", "center", "dd", "details", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hgroup", "hr", "img", "legend", "li", "main", "ol", "p", "pre", "section", "summary",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
};
#define BIT(t) ((uint64_t)1 << (t))
#define HEADINGS (BIT(T_H1) | BIT(T_H2) | BIT(T_H3) | BIT(T_H4) | BIT(T_H5) | BIT(T_H6))
#define TABLE_SCOPE (BIT(T_TABLE) | BIT(T_TD) | BIT(T_TH) | BIT(T_CAPTION))
/* A start tag of these closes an open <p> (HTML's "close a p element"). */
#define CLOSES_P                                                                                                      \
    (BIT(T_ADDRESS) | BIT(T_ARTICLE) | BIT(T_ASIDE) | BIT(T_BLOCKQUOTE) | BIT(T_CENTER) | BIT(T_DETAILS) |            \
     BIT(T_DIV) | BIT(T_DL) | BIT(T_FIELDSET) | BIT(T_FIGCAPTION) | BIT(T_FIGURE) | BIT(T_FOOTER) | HEADINGS |       \
     BIT(T_HEADER) | BIT(T_HGROUP) | BIT(T_HR) | BIT(T_MAIN) | BIT(T_OL) | BIT(T_P) | BIT(T_PRE) | BIT(T_SECTION) | \
     BIT(T_SUMMARY) | BIT(T_TABLE) | BIT(T_UL) | BIT(T_LI) | BIT(T_DD) | BIT(T_DT))
#define VOIDS (BIT(T_BR) | BIT(T_HR) | BIT(T_IMG))

/* Dropped with their content; the content is raw text, not markup. */
static const char *const raw_skip[] = {"script", "style", "xmp", "iframe", "noembed", "noframes", "noscript",
                                       "textarea"};
/* Dropped with their content (markup, nested by name). */
static const char *const nested_skip[] = {"nav", "template", "svg", "math", "select", "button", "dialog", "object",
                                          "canvas", "audio", "video", "applet", "frameset", "map"};
/* HTML's void elements: never have content, so never open a skip. */
static const char *const void_names[] = {"area", "base", "br", "col", "embed", "hr", "img", "input", "keygen",
                                         "link", "meta", "param", "source", "track", "wbr"};

#define NAME_MAX_LEN 32

typedef struct {
    const char *p, *end;
    fig_buf_t *out;
    unsigned char stack[HTML_TEXT_MAX_DEPTH];
    int depth;
    char skip_name[NAME_MAX_LEN];
    int skip_nest;       /* > 0: inside a dropped element of that name */
    int title_done;
} bound_t;

typedef struct {
    const char *v;
    size_t n;
    int present;
} attr_t;

typedef struct {
    char name[NAME_MAX_LEN];
    int end_tag, self_closing;
    attr_t href, alt, hidden, aria_hidden, style;
} tag_t;

static int in_list(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}
#define IN_LIST(l, name) in_list(l, sizeof(l) / sizeof(l[0]), name)

static int kept_id(const char *name)
{
    for (int i = 0; i < T_COUNT; i++)
        if (strcmp(kept_names[i], name) == 0)
            return i;
    return -1;
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Appends an attribute value as a double-quoted value. The bytes are kept as they
 * are (gumbo decodes their entities) except '"', which would end the value. */
static void bound_attr(fig_buf_t *out, const char *name, const attr_t *a)
{
    fig_buf_appendf(out, " %s=\"", name);
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i] == '"')
            fig_buf_append_str(out, "&quot;");
        else
            fig_buf_append(out, &a->v[i], 1);
    }
    fig_buf_append(out, "\"", 1);
}

static void bound_pop_to(bound_t *b, int index)
{
    while (b->depth > index) {
        b->depth--;
        fig_buf_appendf(b->out, "</%s>", kept_names[b->stack[b->depth]]);
    }
}

/* Closes the nearest open element in `targets` unless a `boundary` element is nearer. */
static void bound_close(bound_t *b, uint64_t targets, uint64_t boundary)
{
    for (int i = b->depth - 1; i >= 0; i--) {
        uint64_t bit = BIT(b->stack[i]);
        if (bit & targets) {
            bound_pop_to(b, i);
            return;
        }
        if (bit & boundary)
            return;
    }
}

/* Skips raw text up to and past "</name" (any case) + its '>', or to the end. Returns
 * the content's length (it starts at the old b->p). */
static size_t bound_raw(bound_t *b, const char *name)
{
    size_t nl = strlen(name);
    const char *start = b->p;
    for (const char *q = start; q + 2 + nl <= b->end; q++) {
        if (q[0] != '<' || q[1] != '/')
            continue;
        size_t i = 0;
        while (i < nl && lower((unsigned char)q[2 + i]) == name[i])
            i++;
        if (i < nl)
            continue;
        const char *after = q + 2 + nl;
        if (after < b->end && !is_space(*after) && *after != '/' && *after != '>')
            continue;
        const char *gt = memchr(after, '>', (size_t)(b->end - after));
        b->p = gt ? gt + 1 : b->end;
        return (size_t)(q - start);
    }
    b->p = b->end;
    return (size_t)(b->end - start);
}

/* Reads a tag after "<" or "</" (b->p at its name) up to and past '>'. */
static void bound_read_tag(bound_t *b, tag_t *t)
{
    size_t n = 0;
    while (b->p < b->end && !is_space(*b->p) && *b->p != '/' && *b->p != '>') {
        if (n < NAME_MAX_LEN - 1)
            t->name[n++] = (char)lower((unsigned char)*b->p);
        b->p++;
    }
    t->name[n] = '\0';
    while (b->p < b->end) {
        while (b->p < b->end && (is_space(*b->p) || *b->p == '/')) {
            t->self_closing = *b->p == '/';
            b->p++;
        }
        if (b->p >= b->end)
            return;
        if (*b->p == '>') {
            b->p++;
            return;
        }
        t->self_closing = 0;
        const char *an = b->p;
        b->p++; /* an attribute name may begin with '=' */
        while (b->p < b->end && !is_space(*b->p) && *b->p != '/' && *b->p != '>' && *b->p != '=')
            b->p++;
        size_t anl = (size_t)(b->p - an);
        while (b->p < b->end && is_space(*b->p))
            b->p++;
        attr_t a = {b->p, 0, 1};
        if (b->p < b->end && *b->p == '=') {
            b->p++;
            while (b->p < b->end && is_space(*b->p))
                b->p++;
            if (b->p < b->end && (*b->p == '"' || *b->p == '\'')) {
                char q = *b->p++;
                a.v = b->p;
                const char *close = memchr(b->p, q, (size_t)(b->end - b->p));
                b->p = close ? close : b->end;
                a.n = (size_t)(b->p - a.v);
                if (b->p < b->end)
                    b->p++;
            } else {
                a.v = b->p;
                while (b->p < b->end && !is_space(*b->p) && *b->p != '>')
                    b->p++;
                a.n = (size_t)(b->p - a.v);
            }
        }
        if (t->end_tag)
            continue;
#define ATTR_IS(s) (anl == sizeof(s) - 1 && strncasecmp(an, s, anl) == 0)
        if (ATTR_IS("href") && !t->href.present)
            t->href = a;
        else if (ATTR_IS("alt") && !t->alt.present)
            t->alt = a;
        else if (ATTR_IS("hidden"))
            t->hidden = a;
        else if (ATTR_IS("aria-hidden"))
            t->aria_hidden = a;
        else if (ATTR_IS("style"))
            t->style = a;
#undef ATTR_IS
    }
}

/* hidden, aria-hidden="true", or an inline style that hides the element: text the
 * reader never sees is a classic carrier for instructions aimed at the model. */
static int bound_is_hidden(const tag_t *t)
{
    if (t->hidden.present)
        return 1;
    if (t->aria_hidden.present && t->aria_hidden.n == 4 && strncasecmp(t->aria_hidden.v, "true", 4) == 0)
        return 1;
    if (t->style.present) {
        char s[256];
        size_t n = 0;
        for (size_t i = 0; i < t->style.n && n < sizeof(s) - 1; i++)
            if (!is_space(t->style.v[i]))
                s[n++] = (char)lower((unsigned char)t->style.v[i]);
        s[n] = '\0';
        if (strstr(s, "display:none") || strstr(s, "visibility:hidden"))
            return 1;
    }
    return 0;
}

static void bound_start_skip(bound_t *b, const char *name)
{
    strcpy(b->skip_name, name);
    b->skip_nest = 1;
}

static void bound_tag(bound_t *b, tag_t *t)
{
    const char *name = t->name;
    if (b->skip_nest > 0) {
        if (!t->end_tag && IN_LIST(raw_skip, name))
            bound_raw(b, name);
        else if (!t->end_tag && strcmp(name, "title") == 0)
            bound_raw(b, name);
        else if (strcmp(name, b->skip_name) == 0) {
            if (t->end_tag)
                b->skip_nest--;
            else if (!t->self_closing || (strcmp(name, "svg") != 0 && strcmp(name, "math") != 0))
                b->skip_nest++;
        }
        return;
    }
    int id = kept_id(name);
    if (t->end_tag) {
        if (id < 0 || (BIT(id) & VOIDS))
            return;
        uint64_t targets = BIT(id) & HEADINGS ? HEADINGS : BIT(id), boundary = 0;
        if (id == T_P)
            boundary = TABLE_SCOPE;
        else if (id == T_LI)
            boundary = BIT(T_UL) | BIT(T_OL) | TABLE_SCOPE;
        else if (id == T_DD || id == T_DT)
            boundary = BIT(T_DL) | TABLE_SCOPE;
        bound_close(b, targets, boundary);
        return;
    }
    if (IN_LIST(raw_skip, name)) {
        bound_raw(b, name);
        return;
    }
    if (strcmp(name, "plaintext") == 0) {
        b->p = b->end;
        return;
    }
    if (strcmp(name, "title") == 0) {
        const char *s = b->p;
        size_t n = bound_raw(b, "title");
        if (!b->title_done) {
            fig_buf_append_str(b->out, "<title>");
            for (size_t i = 0; i < n; i++) {
                if (s[i] == '<')
                    fig_buf_append_str(b->out, "&lt;");
                else
                    fig_buf_append(b->out, &s[i], 1);
            }
            fig_buf_append_str(b->out, "</title>");
            b->title_done = 1;
        }
        return;
    }
    int is_void = IN_LIST(void_names, name);
    if (bound_is_hidden(t) || IN_LIST(nested_skip, name)) {
        int foreign_closed = t->self_closing && (strcmp(name, "svg") == 0 || strcmp(name, "math") == 0);
        if (!is_void && !foreign_closed)
            bound_start_skip(b, name);
        return;
    }
    if (id < 0)
        return; /* a tag the text does not need: dropped, its content kept */
    uint64_t bit = BIT(id);
    if (bit & CLOSES_P)
        bound_close(b, BIT(T_P), TABLE_SCOPE);
    if (id == T_LI)
        bound_close(b, BIT(T_LI), BIT(T_UL) | BIT(T_OL) | TABLE_SCOPE);
    else if (id == T_DD || id == T_DT)
        bound_close(b, BIT(T_DD) | BIT(T_DT), BIT(T_DL) | TABLE_SCOPE);
    else if (id == T_TR)
        bound_close(b, BIT(T_TR), BIT(T_TABLE));
    else if (id == T_TD || id == T_TH)
        bound_close(b, BIT(T_TD) | BIT(T_TH), BIT(T_TR) | BIT(T_TABLE));
    else if (id == T_THEAD || id == T_TBODY || id == T_TFOOT)
        bound_close(b, BIT(T_THEAD) | BIT(T_TBODY) | BIT(T_TFOOT), BIT(T_TABLE));
    else if (id == T_A)
        bound_close(b, BIT(T_A), 0); /* no nested links: one <a> open at most */
    else if ((bit & HEADINGS) && b->depth > 0 && (BIT(b->stack[b->depth - 1]) & HEADINGS))
        bound_pop_to(b, b->depth - 1);
    if (!(bit & VOIDS) && b->depth >= HTML_TEXT_MAX_DEPTH)
        return; /* too deep: flattened into the parent */
    fig_buf_appendf(b->out, "<%s", name);
    if (id == T_A && t->href.present)
        bound_attr(b->out, "href", &t->href);
    if (id == T_IMG && t->alt.present)
        bound_attr(b->out, "alt", &t->alt);
    fig_buf_append(b->out, ">", 1);
    if (!(bit & VOIDS))
        b->stack[b->depth++] = (unsigned char)id;
}

static void html_text_bound(const char *html, size_t len, fig_buf_t *out)
{
    bound_t b = {.p = html, .end = html + len, .out = out};
    while (b.p < b.end) {
        const char *lt = memchr(b.p, '<', (size_t)(b.end - b.p));
        const char *stop = lt ? lt : b.end;
        if (b.skip_nest == 0 && stop > b.p)
            fig_buf_append(out, b.p, (size_t)(stop - b.p));
        b.p = stop;
        if (lt == NULL)
            break;
        const char *q = lt + 1;
        if (q < b.end && *q == '!') {
            if (b.end - q >= 3 && q[1] == '-' && q[2] == '-') {
                const char *e = q + 3;
                const char *close = NULL;
                for (const char *s = e; s + 3 <= b.end; s++)
                    if (s[0] == '-' && s[1] == '-' && s[2] == '>') {
                        close = s;
                        break;
                    }
                b.p = close ? close + 3 : b.end;
            } else {
                const char *gt = memchr(q, '>', (size_t)(b.end - q));
                b.p = gt ? gt + 1 : b.end;
            }
            continue;
        }
        if (q < b.end && (*q == '?' || (*q == '/' && (q + 1 >= b.end || !is_alpha((unsigned char)q[1]))))) {
            const char *gt = memchr(q, '>', (size_t)(b.end - q)); /* bogus comment */
            b.p = gt ? gt + 1 : b.end;
            continue;
        }
        tag_t t = {0};
        if (q < b.end && *q == '/') {
            t.end_tag = 1;
            q++;
        } else if (q >= b.end || !is_alpha((unsigned char)*q)) {
            if (b.skip_nest == 0)
                fig_buf_append_str(out, "&lt;"); /* a literal '<' */
            b.p = q;
            continue;
        }
        b.p = q;
        bound_read_tag(&b, &t);
        bound_tag(&b, &t);
    }
    bound_pop_to(&b, 0);
}

/* ------------------------------------------------------------- the walk */

typedef struct {
    fig_buf_t *out;
    size_t start;
    int nl;             /* line breaks owed before the next text (0..2) */
    int space;          /* a space owed before the next text */
    int pre;            /* inside <pre>: whitespace kept */
    char prefix[80];    /* owed at the start of the next text: list marker, heading marks */
    int list_depth;
    int cells;          /* cells so far in the current table row */
    CURLU *base;
    char *links[HTML_TEXT_MAX_LINKS];
    size_t n_links;
} walk_t;

typedef struct {
    GumboNode *node;
    unsigned next;
    int counter;        /* <ol>: items so far; <a>: its link number (0 = none) */
    int saved_cells;    /* <table>: the enclosing row's cell count */
} frame_t;

static int walk_wrote(const walk_t *w)
{
    return w->out->len > w->start;
}

static int walk_at_line_start(const walk_t *w)
{
    return !walk_wrote(w) || w->out->data[w->out->len - 1] == '\n';
}

static void walk_break(walk_t *w, int n)
{
    if (w->nl < n)
        w->nl = n;
}

/* Pays what is owed before visible text: line breaks, then a prefix or a space. */
static void walk_flush(walk_t *w)
{
    if (w->nl > 0 && walk_wrote(w)) {
        /* never more than one blank line, whatever was written before */
        int have = 0;
        for (size_t i = w->out->len; i > w->start && have < 2 && w->out->data[i - 1] == '\n'; i--)
            have++;
        for (int i = have; i < w->nl; i++)
            fig_buf_append(w->out, "\n", 1);
        w->space = 0;
    }
    w->nl = 0;
    if (w->prefix[0]) {
        if (!walk_at_line_start(w))
            fig_buf_append(w->out, " ", 1);
        fig_buf_append_str(w->out, w->prefix);
        w->prefix[0] = '\0';
        w->space = 0;
    } else if (w->space && !walk_at_line_start(w)) {
        fig_buf_append(w->out, " ", 1);
    }
    w->space = 0;
}

static void walk_text(walk_t *w, const char *s, size_t n)
{
    if (w->pre) {
        if (n == 0)
            return;
        walk_flush(w);
        for (size_t i = 0; i < n; i++)
            if (s[i] != '\r')
                fig_buf_append(w->out, &s[i], 1);
        return;
    }
    size_t i = 0;
    while (i < n) {
        if (is_space((unsigned char)s[i])) {
            w->space = 1;
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !is_space((unsigned char)s[j]))
            j++;
        walk_flush(w);
        fig_buf_append(w->out, s + i, j - i);
        i = j;
    }
}

/* The link's number (1-based), or 0 when it is not an http(s) URL or the list is full. */
static int walk_link(walk_t *w, const char *href)
{
    while (is_space((unsigned char)*href))
        href++;
    size_t n = strlen(href);
    while (n > 0 && is_space((unsigned char)href[n - 1]))
        n--;
    if (n == 0 || n > 4096)
        return 0;
    char *h = fig_strndup(href, n);
    CURLU *u = w->base ? curl_url_dup(w->base) : curl_url();
    char *scheme = NULL, *url = NULL;
    int num = 0;
    if (u && curl_url_set(u, CURLUPART_URL, h, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
        curl_url_get(u, CURLUPART_URL, &url, 0) == CURLUE_OK) {
        for (size_t i = 0; i < w->n_links && num == 0; i++)
            if (strcmp(w->links[i], url) == 0)
                num = (int)i + 1;
        if (num == 0 && w->n_links < HTML_TEXT_MAX_LINKS) {
            w->links[w->n_links++] = fig_strdup(url);
            num = (int)w->n_links;
        }
    }
    curl_free(scheme);
    curl_free(url);
    curl_url_cleanup(u);
    free(h);
    return num;
}

static void walk_open(walk_t *w, frame_t *f, frame_t *stack, size_t depth)
{
    GumboElement *e = &f->node->v.element;
    switch (e->tag) {
    case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3:
    case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6: {
        int level = 1 + (int)(e->tag - GUMBO_TAG_H1);
        walk_break(w, 2);
        memset(w->prefix, '#', (size_t)level);
        w->prefix[level] = ' ';
        w->prefix[level + 1] = '\0';
        break;
    }
    case GUMBO_TAG_P: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_FIGURE: case GUMBO_TAG_DL: case GUMBO_TAG_HR:
        walk_break(w, 2);
        break;
    case GUMBO_TAG_PRE:
        walk_break(w, 2);
        w->pre++;
        break;
    case GUMBO_TAG_TABLE:
        walk_break(w, 2);
        f->saved_cells = w->cells;
        w->cells = 0;
        break;
    case GUMBO_TAG_UL: case GUMBO_TAG_OL:
        w->list_depth++;
        walk_break(w, w->list_depth == 1 ? 2 : 1);
        break;
    case GUMBO_TAG_LI: {
        walk_break(w, 1);
        int ordered = 0, number = 0;
        for (size_t i = depth; i-- > 0;) {
            GumboTag t = stack[i].node->v.element.tag;
            if (t == GUMBO_TAG_UL || t == GUMBO_TAG_OL) {
                ordered = t == GUMBO_TAG_OL;
                number = ++stack[i].counter;
                break;
            }
        }
        int indent = w->list_depth > 1 ? 2 * (w->list_depth - 1) : 0;
        if (indent > 40)
            indent = 40;
        if (ordered)
            snprintf(w->prefix, sizeof(w->prefix), "%*s%d. ", indent, "", number);
        else
            snprintf(w->prefix, sizeof(w->prefix), "%*s- ", indent, "");
        break;
    }
    case GUMBO_TAG_DD:
        walk_break(w, 1);
        snprintf(w->prefix, sizeof(w->prefix), "  ");
        break;
    case GUMBO_TAG_TR:
        walk_break(w, 1);
        w->cells = 0;
        break;
    case GUMBO_TAG_TD: case GUMBO_TAG_TH:
        if (w->cells++ > 0) {
            walk_flush(w);
            fig_buf_append_str(w->out, walk_at_line_start(w) ? "|" : " |");
            w->space = 1;
        }
        break;
    case GUMBO_TAG_BR:
        if (walk_wrote(w))
            w->nl = w->nl < 2 ? w->nl + 1 : 2;
        break;
    case GUMBO_TAG_IMG: {
        GumboAttribute *alt = gumbo_get_attribute(&e->attributes, "alt");
        if (alt && alt->value[0]) {
            w->space = 1;
            walk_flush(w);
            fig_buf_append_str(w->out, "[image: ");
            size_t before = w->out->len;
            walk_text(w, alt->value, strlen(alt->value));
            if (w->out->len == before)
                fig_buf_append_str(w->out, "?");
            fig_buf_append_str(w->out, "]");
            w->space = 1;
        }
        break;
    }
    case GUMBO_TAG_A: {
        GumboAttribute *href = gumbo_get_attribute(&e->attributes, "href");
        f->counter = href ? walk_link(w, href->value) : 0;
        break;
    }
    case GUMBO_TAG_ADDRESS: case GUMBO_TAG_ARTICLE: case GUMBO_TAG_ASIDE: case GUMBO_TAG_CAPTION:
    case GUMBO_TAG_CENTER: case GUMBO_TAG_DETAILS: case GUMBO_TAG_DIV: case GUMBO_TAG_DT:
    case GUMBO_TAG_FIELDSET: case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_FOOTER: case GUMBO_TAG_HEADER:
    case GUMBO_TAG_HGROUP: case GUMBO_TAG_LEGEND: case GUMBO_TAG_MAIN: case GUMBO_TAG_SECTION:
    case GUMBO_TAG_SUMMARY:
        walk_break(w, 1);
        break;
    default:
        break;
    }
}

static void walk_close(walk_t *w, frame_t *f)
{
    switch (f->node->v.element.tag) {
    case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3:
    case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6:
    case GUMBO_TAG_P: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_FIGURE: case GUMBO_TAG_DL:
        w->prefix[0] = '\0';
        walk_break(w, 2);
        break;
    case GUMBO_TAG_PRE:
        w->pre--;
        walk_break(w, 2);
        break;
    case GUMBO_TAG_TABLE:
        w->cells = f->saved_cells;
        walk_break(w, 2);
        break;
    case GUMBO_TAG_UL: case GUMBO_TAG_OL:
        w->list_depth--;
        walk_break(w, w->list_depth == 0 ? 2 : 1);
        break;
    case GUMBO_TAG_LI: case GUMBO_TAG_DD:
        w->prefix[0] = '\0';
        walk_break(w, 1);
        break;
    case GUMBO_TAG_A:
        if (f->counter > 0) {
            char mark[24];
            snprintf(mark, sizeof(mark), "[%d]", f->counter);
            w->space = 1;
            walk_flush(w);
            fig_buf_append_str(w->out, mark);
        }
        break;
    case GUMBO_TAG_ADDRESS: case GUMBO_TAG_ARTICLE: case GUMBO_TAG_ASIDE: case GUMBO_TAG_CAPTION:
    case GUMBO_TAG_CENTER: case GUMBO_TAG_DETAILS: case GUMBO_TAG_DIV: case GUMBO_TAG_DT:
    case GUMBO_TAG_FIELDSET: case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_FOOTER: case GUMBO_TAG_HEADER:
    case GUMBO_TAG_HGROUP: case GUMBO_TAG_LEGEND: case GUMBO_TAG_MAIN: case GUMBO_TAG_SECTION:
    case GUMBO_TAG_SUMMARY: case GUMBO_TAG_TR:
        walk_break(w, 1);
        break;
    default:
        break;
    }
}

static void walk_tree(walk_t *w, GumboNode *root)
{
    size_t cap = 16, depth = 0;
    frame_t *stack = fig_malloc(cap * sizeof(*stack));
    stack[depth++] = (frame_t){root, 0, 0, 0};
    walk_open(w, &stack[0], stack, 0);
    while (depth > 0) {
        frame_t *f = &stack[depth - 1];
        GumboVector *kids = &f->node->v.element.children;
        if (f->next >= kids->length) {
            walk_close(w, f);
            depth--;
            continue;
        }
        GumboNode *n = kids->data[f->next++];
        if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_WHITESPACE || n->type == GUMBO_NODE_CDATA) {
            walk_text(w, n->v.text.text, strlen(n->v.text.text));
        } else if (n->type == GUMBO_NODE_ELEMENT && n->v.element.tag != GUMBO_TAG_HEAD) {
            if (depth == cap) {
                cap *= 2;
                stack = fig_realloc(stack, cap * sizeof(*stack));
            }
            stack[depth] = (frame_t){n, 0, 0, 0};
            walk_open(w, &stack[depth], stack, depth);
            depth++;
        }
    }
    free(stack);
}

static const char *walk_title(GumboNode *root)
{
    GumboVector *kids = &root->v.element.children;
    for (unsigned i = 0; i < kids->length; i++) {
        GumboNode *head = kids->data[i];
        if (head->type != GUMBO_NODE_ELEMENT || head->v.element.tag != GUMBO_TAG_HEAD)
            continue;
        for (unsigned j = 0; j < head->v.element.children.length; j++) {
            GumboNode *t = head->v.element.children.data[j];
            if (t->type == GUMBO_NODE_ELEMENT && t->v.element.tag == GUMBO_TAG_TITLE &&
                t->v.element.children.length > 0) {
                GumboNode *txt = t->v.element.children.data[0];
                if (txt->type == GUMBO_NODE_TEXT || txt->type == GUMBO_NODE_WHITESPACE)
                    return txt->v.text.text;
            }
        }
    }
    return NULL;
}

void html_text_reduce(const char *html, size_t len, const char *base_url, fig_buf_t *out)
{
    fig_buf_t clean = FIG_BUF_INIT, bounded = FIG_BUF_INIT;
    fig_buf_append_utf8_clean(&clean, html, len);
    html_text_bound(clean.data, clean.len, &bounded);
    fig_buf_free(&clean);
    fig_buf_append(&bounded, "", 0);

    GumboOptions opts = kGumboDefaultOptions;
    opts.max_errors = 0; /* errors are not used: do not spend memory recording them */
    GumboOutput *g = gumbo_parse_with_options(&opts, bounded.data, bounded.len);

    walk_t w = {.out = out, .start = out->len};
    if (base_url) {
        w.base = curl_url();
        if (w.base && curl_url_set(w.base, CURLUPART_URL, base_url, 0) != CURLUE_OK) {
            curl_url_cleanup(w.base);
            w.base = NULL;
        }
    }
    const char *title = g ? walk_title(g->root) : NULL;
    if (title) {
        snprintf(w.prefix, sizeof(w.prefix), "Title: ");
        size_t before = out->len;
        walk_text(&w, title, strlen(title));
        if (out->len == before)
            w.prefix[0] = '\0'; /* an empty title */
        walk_break(&w, 2);
    }
    if (g)
        walk_tree(&w, g->root);
    if (w.n_links > 0) {
        w.prefix[0] = '\0';
        walk_break(&w, 2);
        walk_flush(&w);
        fig_buf_append_str(out, "Links:\n");
        for (size_t i = 0; i < w.n_links; i++) {
            fig_buf_appendf(out, "[%zu] %s\n", i + 1, w.links[i]);
            free(w.links[i]);
        }
    } else if (walk_wrote(&w) && !walk_at_line_start(&w)) {
        fig_buf_append(out, "\n", 1);
    }
    if (out->data == NULL)
        fig_buf_append(out, "", 0);
    curl_url_cleanup(w.base);
    if (g)
        gumbo_destroy_output(&opts, g);
    fig_buf_free(&bounded);
}
