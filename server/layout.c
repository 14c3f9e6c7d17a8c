/* layout.c — stub; being written. */
typedef int fig_layout_stub_t;
