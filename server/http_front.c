/* http_front.c — stub; being written. */
typedef int fig_http_front_stub_t;
