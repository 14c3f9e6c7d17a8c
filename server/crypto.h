/*
 * crypto.h — the few cryptographic primitives figment needs, on mbedTLS:
 * random bytes (a CTR_DRBG per thread), SHA-256, HMAC-SHA256, constant-time
 * comparison, hex and base64url encoding.
 *
 * All functions are thread-safe. Returned strings are malloc'd; the caller frees.
 */
#ifndef FIG_CRYPTO_H
#define FIG_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf with n cryptographically random bytes. Returns 0, or -1 if the
 * entropy source failed (callers treat that as fatal). */
int crypto_random(void *buf, size_t n);
/* out must hold 32 bytes. */
void crypto_sha256(const void *data, size_t len, uint8_t out[32]);
void crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[32]);
/* 1 when equal; time depends only on n. */
int crypto_equal(const void *a, const void *b, size_t n);
/* Lower-case hex; the caller frees. */
char *crypto_hex(const void *data, size_t len);
/* RFC 4648 base64url without padding; the caller frees. */
char *crypto_base64url(const void *data, size_t len);
/* Hex of SHA-256 of data (64 chars); the caller frees. */
char *crypto_sha256_hex(const void *data, size_t len);

#endif
