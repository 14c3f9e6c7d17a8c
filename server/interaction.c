/* interaction.c — stub; being written. */
typedef int fig_interaction_stub_t;
