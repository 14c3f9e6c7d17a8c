/* set_state.c — stub; being written. */
typedef int fig_set_state_stub_t;
