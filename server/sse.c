/* sse.c — stub; being written. */
typedef int fig_sse_stub_t;
