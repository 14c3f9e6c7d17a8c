/* form.c — stub; being written. */
typedef int fig_form_stub_t;
