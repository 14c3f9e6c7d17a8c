/* sanitize.c — stub; being written. */
typedef int fig_sanitize_stub_t;
