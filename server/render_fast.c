/*
 * render_fast.c — the fast path of render_page(): Markdown straight to the
 * sanitizer's output, without building and parsing HTML (see render_fast.h).
 *
 * Most of what gumbo parses in the slow path (md4c-html, then sanitize_html()) is
 * md4c's own HTML for Markdown constructs, which is well-formed by construction:
 * for it the sanitizer's parse-and-reserialize is a fixed function of the md4c
 * events. So we take md4c's events (same flags and input as render_markdown()) and
 * write, for each, the bytes the sanitizer would write for what md4c-html writes:
 * text escaped by the sanitizer's own escaper, URLs judged by its own URL code,
 * attributes in md4c's order with the sanitizer's spellings (<br>, <hr>, bare
 * boolean attributes, rel on absolute links).
 *
 * The claim holds only while md4c's output is something the HTML parser keeps as
 * written, so we check that the events nest (they do not always: a permissive
 * autolink can cross emphasis) and that no <a> opens inside another.
 *
 * Conservative by design: any event whose slow-path result we do not reproduce
 * exactly makes us return 1 and the caller takes the slow path. That is inline raw
 * HTML, raw HTML blocks that are not top-level self-contained "islands" (those are
 * sanitized on their own by sanitize_island(), which checks that the context
 * cannot matter), entities outside a small table, CR bytes (the HTML parser
 * rewrites them), misnested events, nested links, deep nesting (the sanitizer
 * flattens it), and pages whose md4c output could come near the sanitizer's input
 * cut or parse budget. md4c-html's own quirks are reproduced, not fixed (an image
 * nested in an image's label closes the outer alt). tests/server/test_render.c
 * compares both paths on a large corpus.
 */
#include "render_fast.h"

#include <md4c.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAST_MAX_INPUT (128u * 1024) /* Markdown bytes we take */
#define FAST_MAX_HTML (256u * 1024)  /* bound on md4c's output: far below the sanitizer's cut and budgets */
#define FAST_MAX_DEPTH 200           /* open elements; the sanitizer unwraps past 256 */
#define FAST_TAG_SLACK 16            /* md4c bytes per tag we may not count exactly */

enum { FAST_BAIL = 1 }; /* a callback declines the page */

typedef struct {
    fig_buf_t *out;
    const sanitize_opts_t *opts;
    size_t extra;     /* md4c output bytes beyond what we wrote (upper bound) */
    unsigned blocks;  /* open md4c blocks, the document included */
    unsigned depth;   /* open elements written */
    unsigned links;   /* open <a> */
    unsigned img;     /* 1 while an image's alt text is being collected */
    bool in_html;     /* inside a raw HTML block */
    bool bail;        /* declined: md4c 0.4.8 does not always stop when a callback fails */
    fig_buf_t island; /* consecutive top-level raw HTML blocks not yet written */
    fig_buf_t alt, attr, url, scratch;
    /* open blocks and spans, to check that md4c's events nest: with permissive
     * autolinks they sometimes do not, and the HTML parser then rearranges */
    unsigned char open[FAST_MAX_DEPTH * 2 + 8];
    unsigned nopen;
} fast_t;

#define FAST_SPAN 0x80 /* in open[]: a span type, else a block type */

static int open_push(fast_t *f, unsigned char code)
{
    if (f->nopen == sizeof(f->open))
        return FAST_BAIL;
    f->open[f->nopen++] = code;
    return 0;
}

static int open_pop(fast_t *f, unsigned char code)
{
    if (f->nopen == 0 || f->open[f->nopen - 1] != code)
        return FAST_BAIL;
    f->nopen--;
    return 0;
}

static void put_n(fast_t *f, const char *s, size_t n)
{
    fig_buf_append(f->out, s, n);
}
#define put(f, lit) put_n((f), (lit), strlen(lit)) /* a constant for literals */

/* ---- entities ------------------------------------------------------------- */

/* The named references we decode (the values are HTML5's, as md4c's table has
 * them); anything else takes the slow path. */
static const struct {
    const char *name, *utf8;
} fast_entities[] = {
    {"&amp;", "&"},
    {"&lt;", "<"},
    {"&gt;", ">"},
    {"&quot;", "\""},
    {"&apos;", "'"},
    {"&nbsp;", "\xC2\xA0"},
    {"&copy;", "\xC2\xA9"},
    {"&reg;", "\xC2\xAE"},
    {"&deg;", "\xC2\xB0"},
    {"&middot;", "\xC2\xB7"},
    {"&times;", "\xC3\x97"},
    {"&ndash;", "\xE2\x80\x93"},
    {"&mdash;", "\xE2\x80\x94"},
    {"&bull;", "\xE2\x80\xA2"},
    {"&hellip;", "\xE2\x80\xA6"},
    {"&euro;", "\xE2\x82\xAC"},
    {"&trade;", "\xE2\x84\xA2"},
    {"&larr;", "\xE2\x86\x90"},
    {"&rarr;", "\xE2\x86\x92"},
};

/*
 * Appends the character md4c-html writes for the reference t[0..n); 1 if we do
 * not handle it. Numeric references are computed as md4c does; only code points
 * that every later stage passes through unchanged are taken (no controls, CR,
 * surrogates, noncharacters).
 */
static int entity_decode(const char *t, size_t n, fig_buf_t *dst)
{
    if (n > 3 && t[1] == '#') {
        uint32_t cp = 0;
        bool hex = t[2] == 'x' || t[2] == 'X';
        for (size_t i = hex ? 3 : 2; i + 1 < n; i++) {
            char c = t[i];
            uint32_t d = c >= '0' && c <= '9' ? (uint32_t)(c - '0')
                         : hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (uint32_t)((c | 0x20) - 'a' + 10)
                                                                        : 99;
            if (d == 99 || cp > 0x10FFFF)
                return FAST_BAIL;
            cp = cp * (hex ? 16 : 10) + d;
        }
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF ||
            (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE)
            return FAST_BAIL;
        char u[4];
        size_t len;
        if (cp < 0x80) {
            u[0] = (char)cp;
            len = 1;
        } else if (cp < 0x800) {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            len = 2;
        } else if (cp < 0x10000) {
            u[0] = (char)(0xE0 | (cp >> 12));
            u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            u[2] = (char)(0x80 | (cp & 0x3F));
            len = 3;
        } else {
            u[0] = (char)(0xF0 | (cp >> 18));
            u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
            u[3] = (char)(0x80 | (cp & 0x3F));
            len = 4;
        }
        fig_buf_append(dst, u, len);
        return 0;
    }
    for (size_t i = 0; i < sizeof(fast_entities) / sizeof(fast_entities[0]); i++)
        if (strlen(fast_entities[i].name) == n && memcmp(fast_entities[i].name, t, n) == 0) {
            fig_buf_append_str(dst, fast_entities[i].utf8);
            return 0;
        }
    return FAST_BAIL;
}

/* The attribute's text as md4c-html renders it before escaping, into dst
 * (NUL-terminated). */
static int attr_resolve(const MD_ATTRIBUTE *a, fig_buf_t *dst)
{
    fig_buf_reset(dst);
    fig_buf_append(dst, "", 0);
    for (unsigned i = 0; a->substr_offsets[i] < a->size; i++) {
        MD_OFFSET off = a->substr_offsets[i];
        MD_SIZE n = a->substr_offsets[i + 1] - off;
        if (a->substr_types[i] == MD_TEXT_NORMAL)
            fig_buf_append(dst, a->text + off, n);
        else if (a->substr_types[i] != MD_TEXT_ENTITY || entity_decode(a->text + off, n, dst) != 0)
            return FAST_BAIL;
    }
    if (memchr(dst->data, '\0', dst->len) != NULL)
        return FAST_BAIL; /* from the cleaned input this cannot happen; the URL code wants a C string */
    return 0;
}

/* The URL as the HTML parser hands it to the sanitizer: md4c-html's percent-encoding
 * of everything outside its safe set, with '&' (written as "&amp;") decoded again. */
static bool url_safe[256]; /* md4c-html's set: alphanumerics and -_.+!*(),%#@?=;:/$, plus '&' */

static void url_safe_init(void)
{
    for (int c = 1; c < 256; c++)
        url_safe[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr("-_.+!*(),%#@?=;:/,+$&", c) != NULL;
}

static int url_resolve(fast_t *f, const MD_ATTRIBUTE *a)
{
    static const char hex[] = "0123456789ABCDEF";
    if (attr_resolve(a, &f->attr) != 0)
        return FAST_BAIL;
    fig_buf_reset(&f->url);
    fig_buf_reserve(&f->url, f->attr.len * 3 + 1);
    for (size_t i = 0; i < f->attr.len; i++) {
        unsigned char c = (unsigned char)f->attr.data[i];
        if (url_safe[c]) {
            fig_buf_append(&f->url, (const char *)&c, 1);
            f->extra += c == '&' ? 4 : 0;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            fig_buf_append(&f->url, e, 3);
        }
    }
    fig_buf_append(&f->url, "", 0);
    f->extra += f->url.len; /* md4c writes it even when the sanitizer drops it */
    return 0;
}

/* ` title="..."` for a Markdown link or image title, if it has one. */
static int put_title(fast_t *f, const MD_ATTRIBUTE *title)
{
    if (title->text == NULL)
        return 0;
    if (attr_resolve(title, &f->attr) != 0)
        return FAST_BAIL;
    put(f, " title=\"");
    sanitize_text(f->out, f->attr.data, f->attr.len);
    put(f, "\"");
    return 0;
}

/* ---- raw HTML islands ----------------------------------------------------- */

static int island_flush(fast_t *f)
{
    if (f->island.len == 0)
        return 0;
    f->extra += f->island.len;
    if (sanitize_island(f->island.data, f->island.len, f->opts, f->out) != 0)
        return FAST_BAIL;
    fig_buf_reset(&f->island);
    return 0;
}

/* ---- md4c callbacks ------------------------------------------------------- */

static int open_el(fast_t *f, const char *s)
{
    put(f, s);
    f->extra += FAST_TAG_SLACK;
    return ++f->depth > FAST_MAX_DEPTH ? FAST_BAIL : 0;
}

static void close_el(fast_t *f, const char *s)
{
    put(f, s);
    f->depth--;
}

static int do_enter_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    fast_t *f = ud;
    if (type != MD_BLOCK_HTML && island_flush(f) != 0)
        return FAST_BAIL;
    if (++f->blocks > FAST_MAX_DEPTH)
        return FAST_BAIL;
    char tmp[64];
    switch (type) {
    case MD_BLOCK_DOC:
        return 0;
    case MD_BLOCK_QUOTE:
        return open_el(f, "<blockquote>\n");
    case MD_BLOCK_UL:
        return open_el(f, "<ul>\n");
    case MD_BLOCK_OL: {
        unsigned start = ((const MD_BLOCK_OL_DETAIL *)detail)->start;
        if (start > 999999999u)
            return FAST_BAIL; /* the sanitizer's range; md4c allows 9 digits */
        if (start == 1)
            return open_el(f, "<ol>\n");
        snprintf(tmp, sizeof(tmp), "<ol start=\"%u\">\n", start);
        return open_el(f, tmp);
    }
    case MD_BLOCK_LI: {
        const MD_BLOCK_LI_DETAIL *li = detail;
        if (!li->is_task)
            return open_el(f, "<li>");
        put(f, "<li class=\"task-list-item\"><input type=\"checkbox\" class=\"task-list-item-checkbox\" disabled");
        if (li->task_mark == 'x' || li->task_mark == 'X')
            put(f, " checked");
        return open_el(f, ">");
    }
    case MD_BLOCK_HR:
        put(f, "<hr>\n");
        f->extra += FAST_TAG_SLACK;
        return 0;
    case MD_BLOCK_H: {
        unsigned level = ((const MD_BLOCK_H_DETAIL *)detail)->level;
        if (level < 1 || level > 6)
            return FAST_BAIL;
        snprintf(tmp, sizeof(tmp), "<h%u>", level);
        return open_el(f, tmp);
    }
    case MD_BLOCK_CODE: {
        const MD_BLOCK_CODE_DETAIL *c = detail;
        put(f, "<pre><code");
        if (c->lang.text != NULL) {
            if (attr_resolve(&c->lang, &f->attr) != 0)
                return FAST_BAIL;
            put(f, " class=\"language-");
            sanitize_text(f->out, f->attr.data, f->attr.len);
            put(f, "\"");
        }
        f->depth++;
        return open_el(f, ">");
    }
    case MD_BLOCK_HTML:
        if (f->blocks != 2)
            return FAST_BAIL; /* only top-level blocks can be islands */
        f->in_html = true;
        return 0;
    case MD_BLOCK_P:
        return open_el(f, "<p>");
    case MD_BLOCK_TABLE:
        return open_el(f, "<table>\n");
    case MD_BLOCK_THEAD:
        return open_el(f, "<thead>\n");
    case MD_BLOCK_TBODY:
        return open_el(f, "<tbody>\n");
    case MD_BLOCK_TR:
        return open_el(f, "<tr>\n");
    case MD_BLOCK_TH:
    case MD_BLOCK_TD: {
        static const char *const align[] = {"", " align=\"left\"", " align=\"center\"", " align=\"right\""};
        MD_ALIGN a = ((const MD_BLOCK_TD_DETAIL *)detail)->align;
        if ((unsigned)a > MD_ALIGN_RIGHT)
            return FAST_BAIL;
        snprintf(tmp, sizeof(tmp), "<%s%s>", type == MD_BLOCK_TH ? "th" : "td", align[a]);
        return open_el(f, tmp);
    }
    }
    return FAST_BAIL;
}

static int do_leave_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    fast_t *f = ud;
    f->blocks--;
    switch (type) {
    case MD_BLOCK_DOC:
        return island_flush(f);
    case MD_BLOCK_QUOTE:
        close_el(f, "</blockquote>\n");
        return 0;
    case MD_BLOCK_UL:
        close_el(f, "</ul>\n");
        return 0;
    case MD_BLOCK_OL:
        close_el(f, "</ol>\n");
        return 0;
    case MD_BLOCK_LI:
        close_el(f, "</li>\n");
        return 0;
    case MD_BLOCK_HR:
        return 0;
    case MD_BLOCK_H: {
        char tmp[16];
        snprintf(tmp, sizeof(tmp), "</h%u>\n", ((const MD_BLOCK_H_DETAIL *)detail)->level);
        close_el(f, tmp);
        return 0;
    }
    case MD_BLOCK_CODE:
        close_el(f, "</code></pre>\n");
        f->depth--;
        return 0;
    case MD_BLOCK_HTML:
        f->in_html = false; /* written when the next other block starts: consecutive blocks form one island */
        return 0;
    case MD_BLOCK_P:
        close_el(f, "</p>\n");
        return 0;
    case MD_BLOCK_TABLE:
        close_el(f, "</table>\n");
        return 0;
    case MD_BLOCK_THEAD:
        close_el(f, "</thead>\n");
        return 0;
    case MD_BLOCK_TBODY:
        close_el(f, "</tbody>\n");
        return 0;
    case MD_BLOCK_TR:
        close_el(f, "</tr>\n");
        return 0;
    case MD_BLOCK_TH:
        close_el(f, "</th>\n");
        return 0;
    case MD_BLOCK_TD:
        close_el(f, "</td>\n");
        return 0;
    }
    return FAST_BAIL;
}

static int do_enter_span(MD_SPANTYPE type, void *detail, void *ud)
{
    fast_t *f = ud;
    if (f->img > 0)
        return 0; /* md4c-html writes only the text of an image's label, into alt */
    switch (type) {
    case MD_SPAN_EM:
        return open_el(f, "<em>");
    case MD_SPAN_STRONG:
        return open_el(f, "<strong>");
    case MD_SPAN_CODE:
        return open_el(f, "<code>");
    case MD_SPAN_DEL:
        return open_el(f, "<del>");
    case MD_SPAN_A: {
        const MD_SPAN_A_DETAIL *a = detail;
        if (f->links > 0 || url_resolve(f, &a->href) != 0)
            return FAST_BAIL; /* nested <a>: the parser would restructure it */
        put(f, "<a");
        bool absolute = sanitize_url_attr(f->out, false, f->url.data, &f->scratch);
        if (put_title(f, &a->title) != 0)
            return FAST_BAIL;
        if (absolute)
            put(f, " rel=\"noopener noreferrer nofollow\"");
        f->links++;
        return open_el(f, ">");
    }
    case MD_SPAN_IMG: {
        const MD_SPAN_IMG_DETAIL *im = detail;
        if (url_resolve(f, &im->src) != 0)
            return FAST_BAIL;
        put(f, "<img");
        sanitize_url_attr(f->out, true, f->url.data, &f->scratch);
        f->extra += FAST_TAG_SLACK;
        fig_buf_reset(&f->alt);
        f->img = 1;
        return 0;
    }
    default:
        return FAST_BAIL; /* underline, LaTeX, wiki links: flags we do not set */
    }
}

static int do_leave_span(MD_SPANTYPE type, void *detail, void *ud)
{
    fast_t *f = ud;
    if (f->img > 0) {
        /* as md4c-html does: the end of an image nested in the label closes the outer
         * <img> (with the inner title), and the rest of the label is ordinary content */
        if (type == MD_SPAN_IMG) {
            f->img = 0;
            put(f, " alt=\"");
            sanitize_text(f->out, f->alt.data, f->alt.len);
            put(f, "\"");
            if (put_title(f, &((const MD_SPAN_IMG_DETAIL *)detail)->title) != 0)
                return FAST_BAIL;
            put(f, ">");
        }
        return 0;
    }
    switch (type) {
    case MD_SPAN_EM:
        close_el(f, "</em>");
        return 0;
    case MD_SPAN_STRONG:
        close_el(f, "</strong>");
        return 0;
    case MD_SPAN_CODE:
        close_el(f, "</code>");
        return 0;
    case MD_SPAN_DEL:
        close_el(f, "</del>");
        return 0;
    case MD_SPAN_A:
        f->links--;
        close_el(f, "</a>");
        return 0;
    case MD_SPAN_IMG:
        return 0; /* an image whose label held an image: already closed */
    default:
        return FAST_BAIL;
    }
}

static int do_text(MD_TEXTTYPE type, const MD_CHAR *s, MD_SIZE n, void *ud)
{
    fast_t *f = ud;
    fig_buf_t *dst = f->img > 0 ? &f->alt : f->out;
    if (f->in_html) {
        if (type != MD_TEXT_HTML)
            return FAST_BAIL;
        fig_buf_append(&f->island, s, n);
        return 0;
    }
    switch (type) {
    case MD_TEXT_NORMAL:
    case MD_TEXT_CODE:
        if (f->img > 0)
            fig_buf_append(dst, s, n);
        else
            sanitize_text(dst, s, n);
        return 0;
    case MD_TEXT_BR:
        f->extra += FAST_TAG_SLACK;
        fig_buf_append_str(dst, f->img > 0 ? " " : "<br>\n");
        return 0;
    case MD_TEXT_SOFTBR:
        fig_buf_append_str(dst, f->img > 0 ? " " : "\n");
        return 0;
    case MD_TEXT_ENTITY:
        if (f->img > 0)
            return entity_decode(s, n, dst);
        fig_buf_reset(&f->attr);
        if (entity_decode(s, n, &f->attr) != 0)
            return FAST_BAIL;
        sanitize_text(dst, f->attr.data, f->attr.len);
        return 0;
    default:
        return FAST_BAIL; /* inline raw HTML, NUL (the input is cleaned), LaTeX */
    }
}

static int on_enter_block(MD_BLOCKTYPE type, void *detail, void *ud);
static int on_leave_block(MD_BLOCKTYPE type, void *detail, void *ud);
static int on_enter_span(MD_SPANTYPE type, void *detail, void *ud);
static int on_leave_span(MD_SPANTYPE type, void *detail, void *ud);
static int on_text(MD_TEXTTYPE type, const MD_CHAR *s, MD_SIZE n, void *ud);

int render_fast(const char *md, size_t len, const sanitize_opts_t *opts, fig_buf_t *out)
{
    if (md == NULL)
        md = "", len = 0;
    /* CR: the HTML parser turns raw CRs into LFs, the sanitizer writes &#13; */
    if (len > FAST_MAX_INPUT)
        return 1;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, url_safe_init);
    /* one pass for CR and for what needs a UTF-8 check (NUL, non-ASCII), a word at a time */
    bool ascii = true;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w, cr;
        memcpy(&w, md + i, 8);
        cr = w ^ 0x0D0D0D0D0D0D0D0DULL;
        if (((w - 0x0101010101010101ULL) | (cr - 0x0101010101010101ULL) | w) & 0x8080808080808080ULL)
            break; /* a NUL, a CR or a high byte may be in this word: finish byte by byte */
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)md[i];
        if (c == '\r')
            return 1;
        ascii &= c != 0 && c < 0x80;
    }
    /* exactly the input render_markdown() gives md4c: NUL and invalid UTF-8 as U+FFFD,
     * and a NUL after the end (md4c 0.4.8 sometimes reads a byte past its input, and
     * what it reads there changes its events) */
    fig_buf_t clean = FIG_BUF_INIT;
    if (ascii || fig_utf8_is_text(md, len, 0))
        fig_buf_append(&clean, md, len);
    else
        fig_buf_append_utf8_clean(&clean, md, len);
    md = clean.data;
    len = clean.len;
    if (len >= 3 && memcmp(md, "\xEF\xBB\xBF", 3) == 0) { /* MD_HTML_FLAG_SKIP_UTF8_BOM */
        md += 3;
        len -= 3;
    }

    size_t base = out->len;
    fast_t f = {.out = out, .opts = opts};
    MD_PARSER parser = {
        .abi_version = 0,
        .flags = MD_FLAG_TABLES | MD_FLAG_STRIKETHROUGH | MD_FLAG_TASKLISTS | MD_FLAG_PERMISSIVEAUTOLINKS,
        .enter_block = on_enter_block,
        .leave_block = on_leave_block,
        .enter_span = on_enter_span,
        .leave_span = on_leave_span,
        .text = on_text,
    };
    int rc = md_parse(md, (MD_SIZE)len, &parser, &f);
    if (rc == 0 && (f.bail || f.nopen != 0 || f.in_html || f.img > 0 || f.depth != 0 || f.island.len > 0 ||
                    (out->len - base) + f.extra > FAST_MAX_HTML))
        rc = 1;
    if (rc != 0) {
        out->len = base;
        if (out->data != NULL)
            out->data[base] = '\0';
    }
    fig_buf_free(&clean);
    fig_buf_free(&f.island);
    fig_buf_free(&f.alt);
    fig_buf_free(&f.attr);
    fig_buf_free(&f.url);
    fig_buf_free(&f.scratch);
    return rc != 0;
}

/* md4c's callbacks: after the first failure, nothing more is written. */
static int on_enter_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    fast_t *f = ud;
    return f->bail || (f->bail = open_push(f, (unsigned char)type) != 0 || do_enter_block(type, detail, ud) != 0);
}

static int on_leave_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    fast_t *f = ud;
    return f->bail || (f->bail = open_pop(f, (unsigned char)type) != 0 || do_leave_block(type, detail, ud) != 0);
}

/* Spans inside an image's label write nothing (md4c-html); an image writes a void
 * element: neither is tracked. */
static int on_enter_span(MD_SPANTYPE type, void *detail, void *ud)
{
    fast_t *f = ud;
    bool track = f->img == 0 && type != MD_SPAN_IMG;
    return f->bail || (f->bail = (track && open_push(f, (unsigned char)(FAST_SPAN | type)) != 0) ||
                                 do_enter_span(type, detail, ud) != 0);
}

static int on_leave_span(MD_SPANTYPE type, void *detail, void *ud)
{
    fast_t *f = ud;
    bool track = f->img == 0 && type != MD_SPAN_IMG;
    return f->bail || (f->bail = (track && open_pop(f, (unsigned char)(FAST_SPAN | type)) != 0) ||
                                 do_leave_span(type, detail, ud) != 0);
}

static int on_text(MD_TEXTTYPE type, const MD_CHAR *s, MD_SIZE n, void *ud)
{
    fast_t *f = ud;
    return f->bail || (f->bail = do_text(type, s, n, ud) != 0);
}
