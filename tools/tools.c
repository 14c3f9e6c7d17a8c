/* tools.c — stub; being written. */
typedef int fig_tools_stub_t;
