/* llm_openai.c — stub; being written. */
typedef int fig_llm_openai_stub_t;
