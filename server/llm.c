/* llm.c — stub; being written. */
typedef int fig_llm_stub_t;
