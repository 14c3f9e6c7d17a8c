/* render.c — stub; being written. */
typedef int fig_render_stub_t;
