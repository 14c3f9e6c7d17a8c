/*
 * fuzz_sanitize.c — libFuzzer target for the render pipeline (render_page: md4c,
 * then the sanitizer, then the title). Not built by meson. Build and run from the
 * source root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iserver -o /tmp/fuzz_sanitize \
 *       tests/fuzz/fuzz_sanitize.c server/render.c server/render_fast.c server/sanitize.c server/buf.c \
 *       server/error.c $(pkg-config --cflags --libs md4c md4c-html gumbo)
 *   mkdir -p /tmp/fuzz-corpus && /tmp/fuzz_sanitize -max_total_time=60 -max_len=4096 /tmp/fuzz-corpus
 *
 * Besides crashes, it checks the output as a browser would read it: the sanitized
 * fragment is re-parsed with gumbo (in body context, standards mode) and every
 * element must be allowlisted, every attribute name allowlisted (never on*,
 * style, id, srcdoc, formaction...), every URL's scheme (as browsers parse it) must
 * be http(s) and images must stay on our origin; output must be valid UTF-8 and
 * the title short.
 */
#include <ctype.h>
#include <gumbo.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "render.h"

static const char *const ok_tags[] = {
    "a", "p", "div", "span", "section", "article", "header", "footer", "nav", "main", "aside", "address", "h1",
    "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "table", "caption", "colgroup", "col",
    "thead", "tbody", "tfoot", "tr", "th", "td", "strong", "em", "b", "i", "u", "s", "del", "ins", "mark",
    "small", "sub", "sup", "code", "pre", "kbd", "samp", "var", "cite", "dfn", "abbr", "q", "time", "data",
    "bdi", "bdo", "ruby", "rt", "rp", "blockquote", "hr", "br", "wbr", "img", "details", "summary", "figure",
    "figcaption", "form", "input", "button", "select", "option", "optgroup", "textarea", "label", "fieldset",
    "legend", "progress", "meter", "html", "head", "body", NULL,
};
static const char *const ok_attrs[] = {
    "class", "title", "lang", "dir", "href", "rel", "src", "alt", "width", "height", "action", "method", "enctype",
    "autocomplete", "novalidate", "type", "name", "value", "placeholder", "checked", "required", "min", "max",
    "step", "minlength", "maxlength", "size", "disabled", "readonly", "multiple", "pattern", "accept", "selected",
    "label", "rows", "cols", "for", "colspan", "rowspan", "scope", "span", "start", "reversed", "datetime", "open",
    "low", "high", "optimum", "align", NULL,
};

static int listed(const char *const *l, const char *s)
{
    for (; *l; l++)
        if (strcmp(*l, s) == 0)
            return 1;
    return 0;
}

/* Parses the scheme as the WHATWG URL parser does; only http(s) may appear. */
static void check_url(const char *v, int image)
{
    char clean[8192];
    size_t n = 0, b = 0, e = strlen(v);
    while (b < e && (unsigned char)v[b] <= 0x20)
        b++;
    while (e > b && (unsigned char)v[e - 1] <= 0x20)
        e--;
    for (size_t i = b; i < e && n + 1 < sizeof(clean); i++)
        if (v[i] != '\t' && v[i] != '\n' && v[i] != '\r')
            clean[n++] = v[i];
    clean[n] = '\0';
    size_t k = 0;
    if (isalpha((unsigned char)clean[0]))
        while (isalnum((unsigned char)clean[k]) || clean[k] == '+' || clean[k] == '-' || clean[k] == '.')
            k++;
    if (k > 0 && clean[k] == ':') {
        if (!((k == 4 && strncasecmp(clean, "http", 4) == 0) || (k == 5 && strncasecmp(clean, "https", 5) == 0)))
            abort(); /* javascript:, data:, vbscript:, ... */
        if (image)
            abort(); /* images stay on our origin */
    }
    if ((clean[0] == '/' || clean[0] == '\\') && (clean[1] == '/' || clean[1] == '\\'))
        abort(); /* protocol-relative */
}

static void check_tree(const GumboNode *n, int depth)
{
    if (n->type != GUMBO_NODE_ELEMENT || depth > 2000)
        return;
    const GumboElement *el = &n->v.element;
    if (el->tag_namespace != GUMBO_NAMESPACE_HTML || !listed(ok_tags, gumbo_normalized_tagname(el->tag)))
        abort();
    for (unsigned i = 0; i < el->attributes.length; i++) {
        const GumboAttribute *a = el->attributes.data[i];
        if (!listed(ok_attrs, a->name))
            abort();
        if (!strcmp(a->name, "href") || !strcmp(a->name, "action") || !strcmp(a->name, "src"))
            check_url(a->value, !strcmp(a->name, "src"));
    }
    if (el->tag == GUMBO_TAG_INPUT) {
        const GumboAttribute *t = gumbo_get_attribute(&el->attributes, "type");
        if (t != NULL && strcasecmp(t->value, "image") == 0)
            abort();
    }
    for (unsigned i = 0; i < el->children.length; i++)
        check_tree(el->children.data[i], depth + 1);
}

static int valid_utf8(const unsigned char *s)
{
    while (*s) {
        int n = *s < 0x80 ? 0 : (*s & 0xE0) == 0xC0 ? 1 : (*s & 0xF0) == 0xE0 ? 2 : (*s & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0)
            return 0;
        s++;
        for (int i = 0; i < n; i++, s++)
            if ((*s & 0xC0) != 0x80)
                return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const sanitize_opts_t opts = {"app", "tok"};
    render_page_t p;
    fig_err_t err;
    if (render_page((const char *)data, size, &opts, &p, &err) != 0)
        return 0;
    if (strlen(p.html) != p.html_len || !valid_utf8((const unsigned char *)p.html) ||
        (p.title != NULL && strlen(p.title) > 200))
        abort();

    /* read it back as the browser will, inside <main> of a standards-mode page */
    size_t len = p.html_len + 32;
    char *doc = malloc(len);
    memcpy(doc, "<!doctype html><body>", 21);
    memcpy(doc + 21, p.html, p.html_len);
    GumboOutput *g = gumbo_parse_with_options(&kGumboDefaultOptions, doc, 21 + p.html_len);
    check_tree(g->root, 0);
    gumbo_destroy_output(&kGumboDefaultOptions, g);
    free(doc);

    /* the sanitizer alone, on raw bytes, must hold up too */
    size_t n;
    char *s = sanitize_html((const char *)data, size, &opts, &n);
    if (strlen(s) != n || !valid_utf8((const unsigned char *)s))
        abort();
    free(s);
    render_page_free(&p);
    return 0;
}
