/* crypto.c — stub; being written. */
typedef int fig_crypto_stub_t;
