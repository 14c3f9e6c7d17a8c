/*
 * llm.c — provider-neutral parts of the LLM interface (see llm.h): the result's
 * lifecycle, and the small helpers every provider needs (quoting upstream text into
 * error messages, recognizing a JSON Content-Type, refusing control characters in
 * URLs and headers), kept here so the providers word and bound them the same way.
 * Providers fill an llm_result_t; whoever initialised it frees it here.
 */
#include "llm.h"

#include <ctype.h>
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
