/* app.c — stub; being written. */
typedef int fig_app_stub_t;
