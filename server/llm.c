/*
 * llm.c — provider-neutral parts of the LLM interface (see llm.h): the result's
 * lifecycle, and the small helpers every provider needs (quoting upstream text into
 * error messages, recognizing a JSON Content-Type, refusing control characters in
 * URLs and headers), kept here so the providers word and bound them the same way.
 * Providers fill an llm_result_t; whoever initialised it frees it here.
 * The system prompt's JSON text and the providers' tool lists are cached per thread
 * (pthread key, freed with the thread) rather than globally: no lock on the request
 * path, and each event-loop thread serves the same few apps. A hit needs equal
 * content (bytes, or JSON node for node), never just the same address: callers reuse
 * and mutate buffers.
 */
#include "llm.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void llm_result_init(llm_result_t *r)
{
    memset(r, 0, sizeof(*r));
}

/* Releases every owned string and leaves r empty (as after llm_result_init, but
 * the on_text callback is kept so a caller may reuse r for another round). */
void llm_result_free(llm_result_t *r)
{
    for (size_t i = 0; i < LLM_MAX_TOOL_CALLS; i++) {
        free(r->calls[i].id);
        free(r->calls[i].name);
        fig_buf_free(&r->calls[i].arguments);
    }
    fig_buf_free(&r->content);
    void (*on_text)(void *, const char *, size_t) = r->on_text;
    void *ctx = r->on_text_ctx;
    memset(r, 0, sizeof(*r));
    r->on_text = on_text;
    r->on_text_ctx = ctx;
}

void llm_quote(fig_buf_t *out, const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)s[0]))
        s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    size_t cut = n;
    if (cut > LLM_MAX_QUOTE_BYTES) {
        cut = LLM_MAX_QUOTE_BYTES;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
            cut--;
    }
    for (size_t i = 0; i < cut; i++) {
        char c = s[i];
        if ((unsigned char)c < 0x20 || c == 0x7f)
            c = ' ';
        fig_buf_append(out, &c, 1);
    }
    if (cut < n)
        fig_buf_append_str(out, "...");
}

int llm_is_json_type(const char *ct)
{
    if (ct == NULL)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) || (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
}

int llm_has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

int llm_tool_fields(const json_t *tool, size_t i, json_t **name, json_t **desc, json_t **params, fig_err_t *err)
{
    *name = json_object_get(tool, "name");
    *desc = json_object_get(tool, "description");
    *params = json_object_get(tool, "parameters");
    if (!json_is_string(*name) || (*desc && !json_is_string(*desc)) || (*params && !json_is_object(*params))) {
        fig_err_set(err, FIG_E_INVALID, "tool schema %zu is malformed", i);
        return -1;
    }
    return 0;
}

int llm_check_request(const llm_endpoint_t *ep, const llm_request_t *req, fig_err_t *err)
{
    const char *base = ep->base_url;
    if (base == NULL || (strncasecmp(base, "http://", 7) != 0 && strncasecmp(base, "https://", 8) != 0) ||
        llm_has_ctl(base)) {
        fig_err_set(err, FIG_E_CONFIG, "the model endpoint URL must start with http:// or https://");
        return -1;
    }
    if (ep->api_key && llm_has_ctl(ep->api_key)) {
        fig_err_set(err, FIG_E_CONFIG, "the API key contains control characters");
        return -1;
    }
    if (req->model == NULL || req->model[0] == '\0') {
        fig_err_set(err, FIG_E_CONFIG, "no model name configured");
        return -1;
    }
    if (!json_is_array(req->messages)) {
        fig_err_set(err, FIG_E_INVALID, "the conversation is not an array");
        return -1;
    }
    if (req->tools && !json_is_array(req->tools)) {
        fig_err_set(err, FIG_E_INVALID, "the tool list is not an array");
        return -1;
    }
    return 0;
}

#define TEXT_CACHE_SLOTS 4
typedef struct {
    char *src; /* a string source (llm_json_text_cached) */
    size_t len;
    json_t *copy; /* or a JSON source, deep-copied (llm_derived_cached) */
    llm_derive_fn derive;
    char *text;
    size_t text_len;
} text_slot_t;
typedef struct {
    text_slot_t strings[TEXT_CACHE_SLOTS];
    text_slot_t values[TEXT_CACHE_SLOTS];
    unsigned next_string, next_value;
} text_cache_t;

static pthread_key_t text_cache_key;
static pthread_once_t text_cache_once = PTHREAD_ONCE_INIT;

static void text_slot_clear(text_slot_t *t)
{
    free(t->src);
    json_decref(t->copy);
    free(t->text);
    memset(t, 0, sizeof(*t));
}

static void text_cache_free(void *p)
{
    text_cache_t *c = p;
    for (int i = 0; i < TEXT_CACHE_SLOTS; i++) {
        text_slot_clear(&c->strings[i]);
        text_slot_clear(&c->values[i]);
    }
    free(c);
}

static void text_cache_init(void)
{
    pthread_key_create(&text_cache_key, text_cache_free);
}

static text_cache_t *text_cache(void)
{
    pthread_once(&text_cache_once, text_cache_init);
    text_cache_t *c = pthread_getspecific(text_cache_key);
    if (c == NULL) {
        c = fig_calloc(1, sizeof(*c));
        pthread_setspecific(text_cache_key, c);
    }
    return c;
}

const char *llm_json_text_cached(const char *s, size_t *len)
{
    text_cache_t *c = text_cache();
    size_t n = strlen(s);
    for (int i = 0; i < TEXT_CACHE_SLOTS; i++) {
        text_slot_t *t = &c->strings[i];
        if (t->src != NULL && t->len == n && memcmp(t->src, s, n) == 0) {
            *len = t->text_len;
            return t->text;
        }
    }
    json_t *v = json_stringn(s, n);
    if (v == NULL)
        return NULL;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (text == NULL)
        return NULL;
    text_slot_t *t = &c->strings[c->next_string++ % TEXT_CACHE_SLOTS];
    text_slot_clear(t);
    t->src = fig_strndup(s, n);
    t->len = n;
    t->text = text;
    t->text_len = strlen(text);
    *len = t->text_len;
    return text;
}

/* 1 when a and b would dump to the same bytes: same types, same values, object keys
 * in the same order (jansson dumps in insertion order). Reals compare by their bits
 * (0.0 and -0.0 print differently). Deeper than 64 levels counts as different. */
static int json_same(const json_t *a, const json_t *b, int depth)
{
    if (depth > 64 || json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        void *ia = json_object_iter((json_t *)a), *ib = json_object_iter((json_t *)b);
        for (; ia && ib; ia = json_object_iter_next((json_t *)a, ia), ib = json_object_iter_next((json_t *)b, ib)) {
            size_t n = json_object_iter_key_len(ia);
            if (n != json_object_iter_key_len(ib) || memcmp(json_object_iter_key(ia), json_object_iter_key(ib), n) != 0 ||
                !json_same(json_object_iter_value(ia), json_object_iter_value(ib), depth + 1))
                return 0;
        }
        return ia == NULL && ib == NULL;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return 0;
        for (size_t i = 0; i < n; i++)
            if (!json_same(json_array_get(a, i), json_array_get(b, i), depth + 1))
                return 0;
        return 1;
    }
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_INTEGER:
        return json_integer_value(a) == json_integer_value(b);
    case JSON_REAL: {
        double x = json_real_value(a), y = json_real_value(b);
        return memcmp(&x, &y, sizeof(x)) == 0;
    }
    default:
        return 1; /* true, false, null */
    }
}

const char *llm_derived_cached(const json_t *v, llm_derive_fn derive, size_t *len, fig_err_t *err)
{
    text_cache_t *c = text_cache();
    for (int i = 0; i < TEXT_CACHE_SLOTS; i++) {
        text_slot_t *t = &c->values[i];
        if (t->copy != NULL && t->derive == derive && json_same(t->copy, v, 0)) {
            *len = t->text_len;
            return t->text;
        }
    }
    /* The text is derived from the copy, not from v, so that an entry's text is
     * always derive(copy), whatever json_deep_copy does with key order. */
    json_t *copy = json_deep_copy(v);
    if (copy == NULL) {
        fputs("figment: out of memory\n", stderr);
        abort();
    }
    fig_buf_t out = FIG_BUF_INIT;
    if (derive(copy, &out, err) != 0) {
        fig_buf_free(&out);
        json_decref(copy);
        return NULL;
    }
    text_slot_t *t = &c->values[c->next_value++ % TEXT_CACHE_SLOTS];
    text_slot_clear(t);
    t->text_len = out.len;
    t->text = fig_buf_steal(&out);
    t->derive = derive;
    t->copy = copy;
    *len = t->text_len;
    return t->text;
}

int llm_append_json(fig_buf_t *out, const json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (t == NULL)
        return -1;
    fig_buf_append_str(out, t);
    free(t);
    return 0;
}
