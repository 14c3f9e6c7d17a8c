/*
 * sanitize.c — the allowlist HTML sanitizer, figment's security boundary for
 * model output (see render.h).
 *
 * Design:
 * - Parse with gumbo as browsers would, then re-serialize from the tree. Only tags
 *   and attribute names from our own tables are ever written, every text node and
 *   attribute value is escaped, and every open tag is closed, so what we emit is
 *   well-formed and a browser's parse of it contains nothing we did not choose.
 * - We do not rely on gumbo 0.10.1's young fragment mode: the input is parsed
 *   as a document behind the prefix "<!doctype html><body>": standards mode
 *   (like figment's layout), nothing lands in <head>, and the explicit <body> turns
 *   the frameset-ok flag off so a stray <frameset> cannot discard the body.
 * - gumbo frees its tree recursively (deep nesting would blow the stack), so it
 *   allocates from an arena that we drop in one go instead of calling
 *   gumbo_destroy_output(). The arena also bounds gumbo's memory and time (see
 *   parse_bounded()): past them the input is replaced by a short notice. Our own
 *   walk is iterative with a heap stack; elements nested deeper than
 *   SANITIZE_MAX_DEPTH are unwrapped (their text survives).
 * - Elements are kept, unwrapped (unknown tags: children kept), or dropped with
 *   their content (script, style, embedding, foreign content). Anything not in the
 *   HTML namespace is dropped.
 * - URLs are cleaned as a browser's URL parser would (trim C0/space, drop tab and
 *   newlines) and must then be relative or http(s). A scheme is anything before a
 *   ':' that precedes '/', '?', '#', which is stricter than browsers: an odd
 *   relative URL like "a:b" is refused rather than guessed about.
 * - Forms may only post back into the same app; POST forms get the CSRF input.
 * - render_fast.c writes this file's output for Markdown without parsing HTML; it
 *   shares the escaper and URL rules below, and hands raw HTML blocks to
 *   sanitize_island(), which only accepts a block whose parse cannot depend on
 *   what surrounds it (see render_fast.h).
 */
#include "render.h"
#include "render_fast.h"

#include <gumbo.h>
#include <limits.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SANITIZE_MAX_DEPTH 256        /* deepest element nesting we emit */
#define SANITIZE_MEM_BASE (32u << 20) /* parse memory budget: base ... */
#define SANITIZE_MEM_PER_BYTE 64       /* ... plus this much per input byte */
#define SANITIZE_MAX_MS 1000           /* parse time budget */
#define ARENA_CHUNK (64u * 1024)

/* ---- bounded parsing ------------------------------------------------------ */

/*
 * gumbo allocates from this arena; the whole arena is freed at once. The
 * allocator also enforces the parse budget: some inputs make gumbo's work grow
 * with the square of their size (deep nesting, tags with thousands of
 * attributes, formatting elements reopened in every paragraph), so past a memory
 * or time limit it longjmp()s out of gumbo. That is safe: gumbo keeps no global
 * state and everything it allocated lives in the arena.
 */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_chunk_t;

typedef struct {
    arena_chunk_t *head;
    size_t total, budget; /* bytes */
    unsigned calls;
    struct timespec deadline;
    jmp_buf bail;
} arena_t;

static bool past(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec > t->tv_nsec);
}

static void *arena_alloc(void *ud, size_t n)
{
    arena_t *a = ud;
    n = (n + 15) & ~(size_t)15;
    if ((a->total += n) > a->budget || (++a->calls % 512 == 0 && past(&a->deadline)))
        longjmp(a->bail, 1);
    arena_chunk_t *c = a->head;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
        c = fig_malloc(sizeof(*c) + cap);
        c->used = 0;
        c->cap = cap;
        if (a->head != NULL && cap != ARENA_CHUNK) {
            /* a big block: keep filling the current chunk */
            c->next = a->head->next;
            a->head->next = c;
            c->used = n;
            return c->data;
        }
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void arena_dealloc(void *ud, void *p)
{
    (void)ud;
    (void)p; /* released with the whole arena */
}

static void arena_free(arena_t *a)
{
    for (arena_chunk_t *c = a->head, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
}

/* NULL when the budget ran out. The tree lives until arena_free(). */
static GumboOutput *parse_bounded(arena_t *a, const char *html, size_t len)
{
    GumboOptions go = kGumboDefaultOptions;
    go.allocator = arena_alloc;
    go.deallocator = arena_dealloc;
    go.userdata = a;
    go.max_errors = 0; /* never read */
    a->budget = SANITIZE_MEM_BASE + SANITIZE_MEM_PER_BYTE * len;
    clock_gettime(CLOCK_MONOTONIC, &a->deadline);
    a->deadline.tv_sec += SANITIZE_MAX_MS / 1000;
    a->deadline.tv_nsec += (SANITIZE_MAX_MS % 1000) * 1000000L;
    if (a->deadline.tv_nsec >= 1000000000L) {
        a->deadline.tv_sec++;
        a->deadline.tv_nsec -= 1000000000L;
    }
    if (setjmp(a->bail) != 0)
        return NULL;
    return gumbo_parse_with_options(&go, html, len);
}

/* ---- URLs ----------------------------------------------------------------- */

typedef enum { URL_BAD, URL_RELATIVE, URL_ABSOLUTE } url_kind_t;

static bool is_slash(char c)
{
    return c == '/' || c == '\\'; /* browsers read '\' as '/' in http(s) URLs */
}

/* Writes the URL as a browser would see it into out and classifies it. */
static url_kind_t url_classify(const char *in, fig_buf_t *out)
{
    size_t b = 0, e = strlen(in);
    fig_buf_reset(out);
    fig_buf_append(out, "", 0);
    while (b < e && (unsigned char)in[b] <= 0x20)
        b++;
    while (e > b && (unsigned char)in[e - 1] <= 0x20)
        e--;
    for (size_t i = b; i < e; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\t' || c == '\n' || c == '\r')
            continue;
        if (c < 0x20 || c == 0x7f)
            return URL_BAD;
        fig_buf_append(out, in + i, 1);
    }
    const char *s = out->data;
    if (s[0] == '\\' || (s[0] == '/' && is_slash(s[1])))
        return URL_BAD; /* protocol-relative: another host */
    size_t i = strcspn(s, ":/?#");
    if (s[i] != ':')
        return URL_RELATIVE;
    if (!((i == 4 && strncasecmp(s, "http", 4) == 0) || (i == 5 && strncasecmp(s, "https", 5) == 0)))
        return URL_BAD;
    if (s[i + 1] != '/' || s[i + 2] != '/' || s[i + 3] == '\0' || is_slash(s[i + 3]))
        return URL_BAD;
    return URL_ABSOLUTE;
}

/* A path segment browsers resolve as "..": "..", ".%2e", "%2e.", "%2e%2e". */
static bool has_dotdot_segment(const char *path, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && path[i] != '/')
            continue;
        const char *seg = path + start;
        size_t len = i - start, dots = 0, k = 0;
        while (k < len) {
            if (seg[k] == '.') {
                k++;
            } else if (len - k >= 3 && seg[k] == '%' && seg[k + 1] == '2' && (seg[k + 2] | 0x20) == 'e') {
                k += 3;
            } else {
                break;
            }
            dots++;
        }
        if (k == len && dots == 2)
            return true;
        start = i + 1;
    }
    return false;
}

/* A form action is kept only if it stays inside /<app>/ (see render.h). */
static bool action_ok(const char *url, const char *app)
{
    if (url[0] == '\0' || strchr(url, '\\') != NULL)
        return false; /* empty: dropping the attribute means the same */
    if (has_dotdot_segment(url, strcspn(url, "?#")))
        return false;
    if (url[0] != '/')
        return true; /* relative to the current page, which is in the app */
    size_t n = app != NULL ? strlen(app) : 0;
    return n > 0 && strncmp(url + 1, app, n) == 0 && strchr("/?#", url[1 + n]) != NULL;
}

/* ---- allowlist ------------------------------------------------------------ */

typedef enum {
    AT_TEXT,     /* any value */
    AT_HREF,     /* relative or http(s) URL */
    AT_IMGSRC,   /* relative URL only */
    AT_ACTION,   /* see action_ok() */
    AT_INT,      /* decimal integer in [lo, hi] */
    AT_BOOL,     /* written without a value */
    AT_ENUM,     /* one of "a|b|c", ASCII case-insensitive, written as listed */
    AT_ENUM_CS,  /* the same, case-sensitive */
    AT_NAME,     /* form field name; "_csrf" is figment's */
} attr_kind_t;

typedef struct {
    const char *name;
    attr_kind_t kind;
    long lo, hi;
    const char *values; /* AT_ENUM*: '|'-separated */
} attr_rule_t;

#define A_END {NULL, AT_TEXT, 0, 0, NULL}

static const attr_rule_t attrs_global[] = {
    {"class", AT_TEXT, 0, 0, NULL},
    {"title", AT_TEXT, 0, 0, NULL},
    {"lang", AT_TEXT, 0, 0, NULL},
    {"dir", AT_ENUM, 0, 0, "ltr|rtl|auto"},
    A_END,
};
static const attr_rule_t attrs_a[] = {{"href", AT_HREF, 0, 0, NULL}, A_END};
static const attr_rule_t attrs_img[] = {
    {"src", AT_IMGSRC, 0, 0, NULL},
    {"alt", AT_TEXT, 0, 0, NULL},
    {"width", AT_INT, 0, 10000, NULL},
    {"height", AT_INT, 0, 10000, NULL},
    A_END,
};
static const attr_rule_t attrs_form[] = {
    {"action", AT_ACTION, 0, 0, NULL},
    {"method", AT_ENUM, 0, 0, "get|post"},
    {"enctype", AT_ENUM, 0, 0, "application/x-www-form-urlencoded|multipart/form-data"},
    {"autocomplete", AT_ENUM, 0, 0, "on|off"},
    {"novalidate", AT_BOOL, 0, 0, NULL},
    A_END,
};
static const attr_rule_t attrs_input[] = {
    {"type", AT_ENUM, 0, 0,
     "text|search|email|number|hidden|checkbox|radio|submit|reset|password|date|datetime-local|time|url|tel|"
     "file|range|color"},
    {"name", AT_NAME, 0, 0, NULL},
    {"value", AT_TEXT, 0, 0, NULL},
    {"placeholder", AT_TEXT, 0, 0, NULL},
    {"checked", AT_BOOL, 0, 0, NULL},
    {"required", AT_BOOL, 0, 0, NULL},
    {"min", AT_TEXT, 0, 0, NULL},
    {"max", AT_TEXT, 0, 0, NULL},
    {"step", AT_TEXT, 0, 0, NULL},
    {"minlength", AT_INT, 0, 1000000, NULL},
    {"maxlength", AT_INT, 0, 1000000, NULL},
    {"size", AT_INT, 1, 1000, NULL},
    {"disabled", AT_BOOL, 0, 0, NULL},
    {"readonly", AT_BOOL, 0, 0, NULL},
    {"multiple", AT_BOOL, 0, 0, NULL},
    {"autocomplete", AT_TEXT, 0, 0, NULL},
    {"pattern", AT_TEXT, 0, 0, NULL},
    {"accept", AT_TEXT, 0, 0, NULL},
    A_END,
};
static const attr_rule_t attrs_button[] = {
    {"type", AT_ENUM, 0, 0, "submit|reset|button"},
    {"name", AT_NAME, 0, 0, NULL},
    {"value", AT_TEXT, 0, 0, NULL},
    {"disabled", AT_BOOL, 0, 0, NULL},
    A_END,
};
static const attr_rule_t attrs_select[] = {
    {"name", AT_NAME, 0, 0, NULL},
    {"multiple", AT_BOOL, 0, 0, NULL},
    {"required", AT_BOOL, 0, 0, NULL},
    {"disabled", AT_BOOL, 0, 0, NULL},
    {"size", AT_INT, 1, 1000, NULL},
    A_END,
};
static const attr_rule_t attrs_option[] = {
    {"value", AT_TEXT, 0, 0, NULL},
    {"selected", AT_BOOL, 0, 0, NULL},
    {"disabled", AT_BOOL, 0, 0, NULL},
    {"label", AT_TEXT, 0, 0, NULL},
    A_END,
};
static const attr_rule_t attrs_optgroup[] = {
    {"label", AT_TEXT, 0, 0, NULL},
    {"disabled", AT_BOOL, 0, 0, NULL},
    A_END,
};
static const attr_rule_t attrs_textarea[] = {
    {"name", AT_NAME, 0, 0, NULL},
    {"rows", AT_INT, 1, 1000, NULL},
    {"cols", AT_INT, 1, 1000, NULL},
    {"placeholder", AT_TEXT, 0, 0, NULL},
    {"required", AT_BOOL, 0, 0, NULL},
    {"minlength", AT_INT, 0, 1000000, NULL},
    {"maxlength", AT_INT, 0, 1000000, NULL},
    {"readonly", AT_BOOL, 0, 0, NULL},
    {"disabled", AT_BOOL, 0, 0, NULL},
    A_END,
};
static const attr_rule_t attrs_fieldset[] = {{"disabled", AT_BOOL, 0, 0, NULL}, A_END};
static const attr_rule_t attrs_label[] = {{"for", AT_TEXT, 0, 0, NULL}, A_END};
static const attr_rule_t attrs_td[] = {
    {"align", AT_ENUM, 0, 0, "left|center|right"}, /* md4c writes it for GFM tables */
    {"colspan", AT_INT, 1, 100, NULL},
    {"rowspan", AT_INT, 1, 100, NULL},
    A_END,
};
static const attr_rule_t attrs_th[] = {
    {"align", AT_ENUM, 0, 0, "left|center|right"},
    {"colspan", AT_INT, 1, 100, NULL},
    {"rowspan", AT_INT, 1, 100, NULL},
    {"scope", AT_ENUM, 0, 0, "row|col|rowgroup|colgroup"},
    A_END,
};
static const attr_rule_t attrs_col[] = {{"span", AT_INT, 1, 100, NULL}, A_END};
static const attr_rule_t attrs_ol[] = {
    {"start", AT_INT, -1000000000L, 1000000000L, NULL},
    {"reversed", AT_BOOL, 0, 0, NULL},
    {"type", AT_ENUM_CS, 0, 0, "1|a|A|i|I"},
    A_END,
};
static const attr_rule_t attrs_li[] = {{"value", AT_INT, -1000000000L, 1000000000L, NULL}, A_END};
static const attr_rule_t attrs_datetime[] = {{"datetime", AT_TEXT, 0, 0, NULL}, A_END};
static const attr_rule_t attrs_details[] = {{"open", AT_BOOL, 0, 0, NULL}, A_END};
static const attr_rule_t attrs_data[] = {{"value", AT_TEXT, 0, 0, NULL}, A_END};
static const attr_rule_t attrs_meter[] = {
    {"value", AT_TEXT, 0, 0, NULL}, {"min", AT_TEXT, 0, 0, NULL},  {"max", AT_TEXT, 0, 0, NULL},
    {"low", AT_TEXT, 0, 0, NULL},   {"high", AT_TEXT, 0, 0, NULL}, {"optimum", AT_TEXT, 0, 0, NULL},
    A_END,
};

typedef enum { EL_UNWRAP = 0, EL_KEEP, EL_DROP } el_action_t;

typedef struct {
    el_action_t action;
    const attr_rule_t *attrs; /* besides attrs_global */
} el_rule_t;

#define KEEP(t) [GUMBO_TAG_##t] = {EL_KEEP, NULL}
#define KEEPA(t, a) [GUMBO_TAG_##t] = {EL_KEEP, a}
#define DROP(t) [GUMBO_TAG_##t] = {EL_DROP, NULL}

/* Indexed by GumboTag; tags not listed are unwrapped. */
static const el_rule_t el_rules[GUMBO_TAG_LAST + 1] = {
    KEEPA(A, attrs_a), KEEP(P), KEEP(DIV), KEEP(SPAN), KEEP(SECTION), KEEP(ARTICLE), KEEP(HEADER), KEEP(FOOTER),
    KEEP(NAV), KEEP(MAIN), KEEP(ASIDE), KEEP(ADDRESS), KEEP(H1), KEEP(H2), KEEP(H3), KEEP(H4), KEEP(H5), KEEP(H6),
    KEEP(UL), KEEPA(OL, attrs_ol), KEEPA(LI, attrs_li), KEEP(DL), KEEP(DT), KEEP(DD),
    KEEP(TABLE), KEEP(CAPTION), KEEPA(COLGROUP, attrs_col), KEEPA(COL, attrs_col), KEEP(THEAD), KEEP(TBODY),
    KEEP(TFOOT), KEEP(TR), KEEPA(TH, attrs_th), KEEPA(TD, attrs_td),
    KEEP(STRONG), KEEP(EM), KEEP(B), KEEP(I), KEEP(U), KEEP(S), KEEPA(DEL, attrs_datetime),
    KEEPA(INS, attrs_datetime), KEEP(MARK), KEEP(SMALL), KEEP(SUB), KEEP(SUP), KEEP(CODE), KEEP(PRE), KEEP(KBD),
    KEEP(SAMP), KEEP(VAR), KEEP(CITE), KEEP(DFN), KEEP(ABBR), KEEP(Q), KEEPA(TIME, attrs_datetime),
    KEEPA(DATA, attrs_data), KEEP(BDI), KEEP(BDO), KEEP(RUBY), KEEP(RT), KEEP(RP), KEEP(BLOCKQUOTE), KEEP(HR),
    KEEP(BR), KEEP(WBR), KEEPA(IMG, attrs_img), KEEPA(DETAILS, attrs_details), KEEP(SUMMARY), KEEP(FIGURE),
    KEEP(FIGCAPTION), KEEPA(FORM, attrs_form), KEEPA(INPUT, attrs_input), KEEPA(BUTTON, attrs_button),
    KEEPA(SELECT, attrs_select), KEEPA(OPTION, attrs_option), KEEPA(OPTGROUP, attrs_optgroup),
    KEEPA(TEXTAREA, attrs_textarea), KEEPA(LABEL, attrs_label), KEEPA(FIELDSET, attrs_fieldset), KEEP(LEGEND),
    KEEPA(PROGRESS, attrs_meter), KEEPA(METER, attrs_meter),
    DROP(SCRIPT), DROP(STYLE), DROP(IFRAME), DROP(FRAME), DROP(FRAMESET), DROP(OBJECT), DROP(EMBED), DROP(APPLET),
    DROP(BASE), DROP(BASEFONT), DROP(BGSOUND), DROP(META), DROP(LINK), DROP(TITLE), DROP(HEAD), DROP(NOSCRIPT),
    DROP(TEMPLATE), DROP(SVG), DROP(MATH), DROP(PLAINTEXT), DROP(XMP), DROP(NOEMBED), DROP(NOFRAMES), DROP(PARAM),
    DROP(SOURCE), DROP(TRACK), DROP(VIDEO), DROP(AUDIO), DROP(CANVAS), DROP(AREA), DROP(KEYGEN), DROP(MENUITEM),
    DROP(DATALIST), DROP(NEXTID),
};

/* Tags gumbo does not know (GUMBO_TAG_UNKNOWN) that must not be unwrapped. */
static const char *const unknown_drop[] = {"dialog", "portal", "fencedframe", "slot", NULL};

static bool is_void(GumboTag t)
{
    return t == GUMBO_TAG_BR || t == GUMBO_TAG_HR || t == GUMBO_TAG_IMG || t == GUMBO_TAG_INPUT ||
           t == GUMBO_TAG_COL || t == GUMBO_TAG_WBR;
}

static bool is_csrf_name(const char *v)
{
    return strcasecmp(v, "_csrf") == 0;
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    bool neg = s[0] == '-';
    const char *p = s + neg;
    long v = 0;
    if (*p == '\0' || strlen(p) > 10)
        return false;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    v = neg ? -v : v;
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Returns the listed spelling of v in "a|b|c", or NULL (len via *n). */
static const char *enum_match(const char *values, const char *v, bool cs, size_t *n)
{
    size_t vlen = strlen(v);
    for (const char *p = values; *p;) {
        size_t len = strcspn(p, "|");
        if (len == vlen && (cs ? strncmp(p, v, len) : strncasecmp(p, v, len)) == 0) {
            *n = len;
            return p;
        }
        p += len + (p[len] == '|');
    }
    return NULL;
}

static const attr_rule_t *find_rule(const attr_rule_t *list, const char *name)
{
    for (; list != NULL && list->name != NULL; list++)
        if (strcmp(list->name, name) == 0)
            return list;
    return NULL;
}

/* ---- output -------------------------------------------------------------- */

/* Code points HTML parsers turn into U+FFFD (as gumbo's utf8.c does). */
static bool invalid_code_point(uint32_t c)
{
    return (c >= 0x1 && c <= 0x8) || c == 0xB || (c >= 0xE && c <= 0x1F) || (c >= 0x7F && c <= 0x9F) ||
           (c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFF) == 0xFFFE || (c & 0xFFFF) == 0xFFFF;
}

/* Decodes the UTF-8 sequence at u (n > 0 bytes left) into *c; 0 if invalid. */
static size_t utf8_decode(const unsigned char *u, size_t n, uint32_t *c)
{
    size_t len = u[0] < 0x80 ? 1 : u[0] >= 0xC2 && u[0] <= 0xDF ? 2 : u[0] >= 0xE0 && u[0] <= 0xEF ? 3
                                 : u[0] >= 0xF0 && u[0] <= 0xF4 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t v = len == 1 ? u[0] : u[0] & (0x7Fu >> len);
    for (size_t k = 1; k < len; k++) {
        if ((u[k] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (u[k] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *c = v;
    return len;
}

/*
 * HTML-escapes text from gumbo. Character references may have decoded to control
 * characters, noncharacters or (gumbo bug: huge numeric references) bytes that
 * are not UTF-8; all become U+FFFD, which is also what a parser makes of them
 * raw, so the output is valid UTF-8 and sanitizing it again is stable.
 */
static void append_escaped(fig_buf_t *o, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = 0;
        size_t len = utf8_decode(u + i, n - i, &c);
        if (len == 0 || invalid_code_point(c) || c == '\r') {
            fig_buf_append_html(o, s + run, i - run);
            fig_buf_append_str(o, c == '\r' ? "&#13;" : "\xEF\xBF\xBD"); /* a raw CR would read as LF */
            len = len ? len : 1;
            run = i + len;
        }
        i += len;
    }
    fig_buf_append_html(o, s + run, n - run);
}

/* ---- the walk ------------------------------------------------------------- */

typedef struct {
    const GumboNode *node;
    unsigned next;     /* next child to visit */
    const char *close; /* end tag to write when done, or NULL (unwrapped) */
    bool form;         /* this frame opened a <form> */
} frame_t;

typedef struct {
    fig_buf_t *out;
    const sanitize_opts_t *opts;
    fig_buf_t url; /* scratch for cleaned URLs */
    frame_t *stack;
    size_t depth, cap;
    unsigned emitted; /* open elements written */
    unsigned forms;   /* open <form>s written */
} walk_t;

static void push(walk_t *w, const GumboNode *n, const char *close, bool form)
{
    if (w->depth == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->stack = fig_realloc(w->stack, w->cap * sizeof(*w->stack));
    }
    w->stack[w->depth++] = (frame_t){n, 0, close, form};
    w->emitted += close != NULL;
    w->forms += form;
}

/* Writes one allowed attribute, or nothing. Returns true for an absolute link. */
static bool emit_attr(walk_t *w, const attr_rule_t *r, const char *v)
{
    fig_buf_t *o = w->out;
    const char *val = v;
    size_t len = strlen(v);
    char num[24];
    long iv;
    bool absolute = false;

    switch (r->kind) {
    case AT_TEXT:
        break;
    case AT_HREF:
    case AT_IMGSRC:
    case AT_ACTION: {
        url_kind_t k = url_classify(v, &w->url);
        if (k == URL_BAD || (k == URL_ABSOLUTE && r->kind != AT_HREF))
            return false;
        if (r->kind == AT_ACTION && !action_ok(w->url.data, w->opts ? w->opts->app_name : NULL))
            return false;
        absolute = k == URL_ABSOLUTE;
        val = w->url.data;
        len = w->url.len;
        break;
    }
    case AT_INT:
        if (!parse_int(v, r->lo, r->hi, &iv))
            return false;
        len = (size_t)snprintf(num, sizeof(num), "%ld", iv);
        val = num;
        break;
    case AT_BOOL:
        fig_buf_appendf(o, " %s", r->name);
        return false;
    case AT_ENUM:
    case AT_ENUM_CS:
        if ((val = enum_match(r->values, v, r->kind == AT_ENUM_CS, &len)) == NULL)
            return false;
        break;
    case AT_NAME:
        if (is_csrf_name(v))
            return false;
        break;
    }
    fig_buf_appendf(o, " %s=\"", r->name);
    append_escaped(o, val, len);
    fig_buf_append(o, "\"", 1);
    return absolute;
}

static const char *attr_value(const GumboElement *el, const char *name)
{
    const GumboAttribute *a = gumbo_get_attribute(&el->attributes, name);
    return a != NULL ? a->value : NULL;
}

static el_action_t classify(const walk_t *w, const GumboNode *n)
{
    const GumboElement *el = &n->v.element;
    if (n->type != GUMBO_NODE_ELEMENT || el->tag_namespace != GUMBO_NAMESPACE_HTML)
        return EL_DROP;
    if (el->tag == GUMBO_TAG_UNKNOWN) {
        /* the name is in the source text: "<name attrs...>" */
        const char *t = el->original_tag.data;
        size_t tl = el->original_tag.length, nl = 0;
        if (t == NULL || tl < 2 || t[0] != '<')
            return EL_UNWRAP;
        while (nl + 1 < tl && !strchr(" \t\n\f\r/>", t[nl + 1]))
            nl++;
        for (const char *const *d = unknown_drop; *d; d++)
            if (nl == strlen(*d) && strncasecmp(t + 1, *d, nl) == 0)
                return EL_DROP;
        return EL_UNWRAP;
    }
    el_action_t a = el->tag < GUMBO_TAG_LAST ? el_rules[el->tag].action : EL_UNWRAP;
    if (el->tag == GUMBO_TAG_INPUT) {
        const char *type = attr_value(el, "type"), *name = attr_value(el, "name");
        if ((type != NULL && strcasecmp(type, "image") == 0) || (name != NULL && is_csrf_name(name)))
            return EL_DROP; /* image inputs load URLs; _csrf is figment's */
    }
    if (a == EL_KEEP && ((el->tag == GUMBO_TAG_FORM && w->forms > 0) || w->emitted >= SANITIZE_MAX_DEPTH))
        return EL_UNWRAP; /* nested form; too deep */
    return a;
}

static void visit(walk_t *w, const GumboNode *n)
{
    switch (n->type) {
    case GUMBO_NODE_TEXT:
    case GUMBO_NODE_WHITESPACE:
    case GUMBO_NODE_CDATA:
        append_escaped(w->out, n->v.text.text, strlen(n->v.text.text));
        return;
    case GUMBO_NODE_ELEMENT:
        break;
    default:
        return; /* comments, templates */
    }

    const GumboElement *el = &n->v.element;
    el_action_t action = classify(w, n);
    if (action == EL_DROP)
        return;
    if (action == EL_UNWRAP) {
        push(w, n, NULL, false);
        return;
    }

    const char *tag = gumbo_normalized_tagname(el->tag);
    const attr_rule_t *own = el_rules[el->tag].attrs;
    bool absolute = false;
    fig_buf_appendf(w->out, "<%s", tag);
    for (unsigned i = 0; i < el->attributes.length; i++) {
        const GumboAttribute *a = el->attributes.data[i];
        const attr_rule_t *r = find_rule(own, a->name);
        if (r == NULL)
            r = find_rule(attrs_global, a->name);
        if (r != NULL)
            absolute |= emit_attr(w, r, a->value);
    }
    if (el->tag == GUMBO_TAG_A && absolute)
        fig_buf_append_str(w->out, " rel=\"noopener noreferrer nofollow\"");
    fig_buf_append(w->out, ">", 1);
    if (is_void(el->tag))
        return;

    /* The parser eats one newline right after <pre>/<textarea>: keep a real one. */
    if ((el->tag == GUMBO_TAG_PRE || el->tag == GUMBO_TAG_TEXTAREA) && el->children.length > 0) {
        const GumboNode *c = el->children.data[0];
        if ((c->type == GUMBO_NODE_TEXT || c->type == GUMBO_NODE_WHITESPACE) && c->v.text.text[0] == '\n')
            fig_buf_append(w->out, "\n", 1);
    }
    bool form = el->tag == GUMBO_TAG_FORM;
    if (form && w->opts != NULL && w->opts->csrf_token != NULL) {
        const char *m = attr_value(el, "method");
        if (m != NULL && strcasecmp(m, "post") == 0) {
            fig_buf_append_str(w->out, "<input type=\"hidden\" name=\"_csrf\" value=\"");
            fig_buf_append_html(w->out, w->opts->csrf_token, strlen(w->opts->csrf_token));
            fig_buf_append_str(w->out, "\">");
        }
    }
    push(w, n, tag, form);
}

/* Writes body's first body_kids children (all of them: UINT_MAX). */
static void walk(walk_t *w, const GumboNode *body, unsigned body_kids)
{
    push(w, body, NULL, false);
    while (w->depth > 0) {
        frame_t *f = &w->stack[w->depth - 1];
        const GumboVector *kids = &f->node->v.element.children;
        unsigned n = w->depth == 1 && body_kids < kids->length ? body_kids : kids->length;
        if (f->next < n) {
            visit(w, kids->data[f->next++]); /* may grow (move) the stack */
            continue;
        }
        if (f->close != NULL)
            fig_buf_appendf(w->out, "</%s>", f->close);
        w->emitted -= f->close != NULL;
        w->forms -= f->form;
        w->depth--;
    }
}

static const GumboNode *find_body(const GumboOutput *g)
{
    const GumboNode *root = g->root;
    if (root == NULL || root->type != GUMBO_NODE_ELEMENT)
        return NULL;
    for (unsigned i = 0; i < root->v.element.children.length; i++) {
        const GumboNode *c = root->v.element.children.data[i];
        if (c->type == GUMBO_NODE_ELEMENT && c->v.element.tag == GUMBO_TAG_BODY)
            return c;
    }
    return NULL;
}

char *sanitize_html(const char *html, size_t len, const sanitize_opts_t *opts, size_t *out_len)
{
    static const char prefix[] = "<!doctype html><body>";
    fig_buf_t in = FIG_BUF_INIT, out = FIG_BUF_INIT;
    if (len > SANITIZE_MAX_INPUT)
        len = SANITIZE_MAX_INPUT;
    fig_buf_append(&in, prefix, sizeof(prefix) - 1);
    fig_buf_append(&in, html != NULL ? html : "", html != NULL ? len : 0);

    arena_t arena = {0};
    GumboOutput *g = parse_bounded(&arena, in.data, in.len);
    const GumboNode *body = g != NULL ? find_body(g) : NULL;
    if (g == NULL) {
        fig_buf_append_str(&out, "<p class=\"muted\">(This part of the page is too large or too deeply nested to "
                                 "display.)</p>");
    } else if (body != NULL) {
        walk_t w = {.out = &out, .opts = opts};
        walk(&w, body, UINT_MAX);
        free(w.stack);
        fig_buf_free(&w.url);
    }
    arena_free(&arena); /* instead of gumbo_destroy_output(), which recurses */
    fig_buf_free(&in);
    if (out_len != NULL)
        *out_len = out.len;
    return fig_buf_steal(&out);
}

/* ---- for render_fast.c --------------------------------------------------- */

void sanitize_text(fig_buf_t *out, const char *s, size_t n)
{
    append_escaped(out, s, n);
}

bool sanitize_url_attr(fig_buf_t *out, bool img, const char *url, fig_buf_t *scratch)
{
    static const attr_rule_t href = {"href", AT_HREF, 0, 0, NULL}, src = {"src", AT_IMGSRC, 0, 0, NULL};
    walk_t w = {.out = out, .url = *scratch};
    bool absolute = emit_attr(&w, img ? &src : &href, url);
    *scratch = w.url;
    return absolute;
}

/* Tags an island may not mention at all, even in text: they act on the document
 * (html, head, body, frameset), never end (plaintext), or are rewritten by the
 * parser into other elements or another namespace. */
static const char *const island_deny[] = {"html", "head", "body", "frameset", "frame", "template", "plaintext",
                                          "isindex", "image", "svg", "math", NULL};

static bool island_names_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '<')
            continue;
        size_t b = i + 1 + (i + 1 < len && s[i + 1] == '/'), e = b;
        while (e < len && !strchr(" \t\n\f\r/>", s[e]))
            e++;
        for (const char *const *d = island_deny; *d; d++)
            if (e - b == strlen(*d) && strncasecmp(s + b, *d, e - b) == 0)
                return false;
    }
    return true;
}

static bool island_void(GumboTag t)
{
    switch (t) {
    case GUMBO_TAG_AREA: case GUMBO_TAG_BASE: case GUMBO_TAG_BASEFONT: case GUMBO_TAG_BGSOUND: case GUMBO_TAG_BR:
    case GUMBO_TAG_COL: case GUMBO_TAG_EMBED: case GUMBO_TAG_HR: case GUMBO_TAG_IMG: case GUMBO_TAG_INPUT:
    case GUMBO_TAG_KEYGEN: case GUMBO_TAG_LINK: case GUMBO_TAG_META: case GUMBO_TAG_PARAM: case GUMBO_TAG_SOURCE:
    case GUMBO_TAG_TRACK: case GUMBO_TAG_WBR:
        return true;
    default:
        return false;
    }
}

/* Every node under body's first n children was put there by its own tokens: no
 * implied, reopened, moved or foster-parented node, every non-void element closed
 * by its own end tag, nothing outside the HTML namespace. */
static bool island_explicit(const GumboNode *body, unsigned n)
{
    size_t depth = 0, cap = n + 64;
    const GumboNode **stack = fig_malloc(sizeof(*stack) * cap);
    bool ok = true;
    for (unsigned i = n; i-- > 0;)
        stack[depth++] = body->v.element.children.data[i];
    while (ok && depth > 0) {
        const GumboNode *x = stack[--depth];
        if (x->type != GUMBO_NODE_ELEMENT) {
            ok = x->type != GUMBO_NODE_TEMPLATE && x->parse_flags == GUMBO_INSERTION_NORMAL;
            continue;
        }
        const GumboElement *el = &x->v.element;
        if (el->tag_namespace != GUMBO_NAMESPACE_HTML || el->tag == GUMBO_TAG_TEMPLATE) {
            ok = false;
        } else if (island_void(el->tag)) {
            ok = (x->parse_flags & ~(unsigned)GUMBO_INSERTION_IMPLICIT_END_TAG) == 0 && el->children.length == 0;
        } else {
            /* gumbo takes a <form> off the stack without recording its end tag */
            ok = x->parse_flags == GUMBO_INSERTION_NORMAL && el->original_tag.length > 0 &&
                 (el->original_end_tag.length > 0 || el->tag == GUMBO_TAG_FORM);
        }
        if (depth + el->children.length > cap) {
            cap = (depth + el->children.length) * 2;
            stack = fig_realloc(stack, sizeof(*stack) * cap);
        }
        for (unsigned i = el->children.length; ok && i-- > 0;)
            stack[depth++] = el->children.data[i];
    }
    free(stack);
    return ok;
}

int sanitize_island(const char *html, size_t len, const sanitize_opts_t *opts, fig_buf_t *out)
{
    /* the sentinel <hr> must come out as the last child of body: the tokenizer is
     * back in its data state (no open comment, tag, attribute or raw text) */
    static const char prefix[] = "<!doctype html><body>", sentinel[] = "<hr>";
    if (len > SANITIZE_MAX_INPUT / 4 || !island_names_ok(html, len))
        return 1;
    fig_buf_t in = FIG_BUF_INIT;
    fig_buf_reserve(&in, sizeof(prefix) + len + sizeof(sentinel));
    fig_buf_append(&in, prefix, sizeof(prefix) - 1);
    fig_buf_append(&in, html, len);
    fig_buf_append(&in, sentinel, sizeof(sentinel) - 1);

    int rc = 1;
    arena_t arena = {0};
    GumboOutput *g = parse_bounded(&arena, in.data, in.len);
    const GumboNode *body = g != NULL ? find_body(g) : NULL;
    unsigned n = body != NULL ? body->v.element.children.length : 0;
    const GumboNode *last = n > 0 ? body->v.element.children.data[n - 1] : NULL;
    if (last != NULL && last->type == GUMBO_NODE_ELEMENT && last->v.element.tag == GUMBO_TAG_HR &&
        last->v.element.attributes.length == 0 && last->v.element.original_tag.data == in.data + in.len - 4 &&
        island_explicit(body, n - 1)) {
        walk_t w = {.out = out, .opts = opts};
        walk(&w, body, n - 1);
        free(w.stack);
        fig_buf_free(&w.url);
        rc = 0;
    }
    arena_free(&arena);
    fig_buf_free(&in);
    return rc;
}
