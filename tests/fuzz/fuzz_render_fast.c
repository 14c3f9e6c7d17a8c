/*
 * fuzz_render_fast.c — libFuzzer target: the fast render path (server/render_fast.c)
 * must give exactly the bytes of the slow one (md4c-html, then the sanitizer) or
 * decline without writing. Not built by meson. Build and run from the source root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iserver -o /tmp/fuzz_render_fast \
 *       tests/fuzz/fuzz_render_fast.c server/render.c server/render_fast.c server/sanitize.c \
 *       server/buf.c server/error.c $(pkg-config --cflags --libs md4c md4c-html gumbo)
 *   mkdir -p /tmp/fuzz-fast && /tmp/fuzz_render_fast -max_total_time=60 -max_len=4096 /tmp/fuzz-fast
 *
 * A mismatch prints md4c's HTML and both outputs, then aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"
#include "render_fast.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const sanitize_opts_t opts = {"mail", "TOKEN"};
    if (size > 4096)
        return 0;
    size_t html_len, slow_len;
    char *html = render_markdown((const char *)data, size, &html_len);
    if (html == NULL)
        return 0;
    char *slow = sanitize_html(html, html_len, &opts, &slow_len);
    fig_buf_t fast = FIG_BUF_INIT;
    int rc = render_fast((const char *)data, size, &opts, &fast);
    if (rc == 0 && (fast.len != slow_len || memcmp(fast.data, slow, slow_len) != 0)) {
        fprintf(stderr, "MISMATCH\n--md4c\n%s\n--slow\n%s\n--fast\n%.*s\n", html, slow, (int)fast.len,
                fast.data ? fast.data : "");
        abort();
    }
    if (rc != 0 && fast.len != 0)
        abort(); /* declined, but wrote */
    free(html);
    free(slow);
    fig_buf_free(&fast);
    return 0;
}
