/*
 * buf.c — growable byte buffer and checked allocation (see buf.h).
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    fputs("figment: out of memory\n", stderr);
    abort();
}

void *fig_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom();
    return p;
}

void *fig_calloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (p == NULL)
        oom();
    return p;
}

void *fig_realloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        oom();
    return p;
}

char *fig_strndup(const char *s, size_t n)
{
    char *p = fig_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *fig_strdup(const char *s)
{
    return fig_strndup(s, strlen(s));
}

void fig_buf_reserve(fig_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    b->data = fig_realloc(b->data, cap);
    b->cap = cap;
}

void fig_buf_append(fig_buf_t *b, const char *s, size_t n)
{
    fig_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void fig_buf_append_str(fig_buf_t *b, const char *s)
{
    fig_buf_append(b, s, strlen(s));
}

void fig_buf_vappendf(fig_buf_t *b, const char *fmt, va_list ap)
{
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        fig_buf_append(b, small, (size_t)n);
        return;
    }
    fig_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void fig_buf_appendf(fig_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fig_buf_vappendf(b, fmt, ap);
    va_end(ap);
}

void fig_buf_append_html(fig_buf_t *b, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: continue;
        }
        fig_buf_append(b, s + start, i - start);
        fig_buf_append_str(b, rep);
        start = i + 1;
    }
    fig_buf_append(b, s + start, n - start);
}

void fig_buf_reset(fig_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *fig_buf_steal(fig_buf_t *b)
{
    char *p = b->data ? b->data : fig_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void fig_buf_free(fig_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int fig_utf8_seq(const void *str, size_t len)
{
    const unsigned char *s = str;
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* the second byte's range: excludes overlongs, surrogates, > U+10FFFF */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (i >= len)
            return -1;
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (s[i] < l || s[i] > h)
            return 0;
    }
    return (int)n;
}

int fig_utf8_is_text(const void *str, size_t len, int cut)
{
    const unsigned char *s = str;
    for (size_t i = 0; i < len;) {
        if (s[i] == 0)
            return 0;
        int k = fig_utf8_seq(s + i, len - i);
        if (k < 0)
            return cut;
        if (k == 0)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

void fig_buf_append_utf8_clean(fig_buf_t *b, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t run = 0; /* start of the valid bytes not yet appended */
    for (size_t i = 0; i < len;) {
        int k = s[i] == 0 ? 0 : fig_utf8_seq(s + i, len - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        fig_buf_append(b, str + run, i - run);
        fig_buf_append(b, "\xEF\xBF\xBD", 3);
        run = ++i;
    }
    fig_buf_append(b, str + run, len - run);
}

void fig_buf_append_json_string(fig_buf_t *b, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    fig_buf_reserve(b, len + 2);
    fig_buf_append(b, "\"", 1);
    size_t run = 0; /* start of the bytes not yet appended */
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        int k = c >= 0x80 ? fig_utf8_seq(s + i, len - i) : 0;
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        fig_buf_append(b, str + run, i - run);
        if (c >= 0x80 || c == 0) {
            fig_buf_append(b, "\xEF\xBF\xBD", 3);
        } else if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            fig_buf_append(b, e, 2);
        } else if (c == '\n') {
            fig_buf_append(b, "\\n", 2);
        } else if (c == '\t') {
            fig_buf_append(b, "\\t", 2);
        } else if (c == '\r') {
            fig_buf_append(b, "\\r", 2);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            fig_buf_append(b, e, 6);
        }
        run = ++i;
    }
    fig_buf_append(b, str + run, len - run);
    fig_buf_append(b, "\"", 1);
}
