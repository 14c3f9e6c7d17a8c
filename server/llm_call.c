/* llm_call.c — stub; being written. */
typedef int fig_llm_call_stub_t;
