/*
 * llm.c — provider-neutral parts of the LLM interface (see llm.h): the result's
 * lifecycle. Providers fill an llm_result_t; whoever initialised it frees it here.
 */
#include "llm.h"

#include <stdlib.h>
#include <string.h>

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
