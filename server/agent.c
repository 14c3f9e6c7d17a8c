/* agent.c — stub; being written. */
typedef int fig_agent_stub_t;
