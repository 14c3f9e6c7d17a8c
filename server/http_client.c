/* http_client.c — stub; being written. */
typedef int fig_http_client_stub_t;
