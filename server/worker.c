/* worker.c — stub; being written. */
typedef int fig_worker_stub_t;
