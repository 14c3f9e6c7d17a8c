/* session.c — stub; being written. */
typedef int fig_session_stub_t;
