/* config.c — stub; being written. */
typedef int fig_config_stub_t;
