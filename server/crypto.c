/*
 * crypto.c — random bytes, SHA-256, HMAC-SHA256, constant-time compare and the two
 * text encodings figment uses (hex, unpadded base64url), on mbedTLS 2.28.
 *
 * Design:
 * - One CTR_DRBG per thread, created lazily on a thread's first crypto_random() and
 *   seeded from mbedtls_entropy (the OS source) with the personalization string
 *   "figment". Per-thread generators need no lock on the hot path; a pthread key
 *   destructor releases a generator when its thread exits.
 * - The generator remembers the pid it was seeded in and reseeds after a fork, so
 *   a child never replays its parent's stream.
 * - Encoders are written out here (they are a few lines) so output is exactly the
 *   RFC 4648 alphabet, lower-case hex, no padding, no line breaks.
 */
#include "crypto.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/sha256.h>

#include "buf.h"

typedef struct {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    pid_t pid;
} crypto_rng_t;

static _Thread_local crypto_rng_t *crypto_tls_rng;
static pthread_key_t crypto_rng_key;
static pthread_once_t crypto_rng_once = PTHREAD_ONCE_INIT;

static void crypto_rng_destroy(void *p)
{
    crypto_rng_t *rng = p;
    if (rng == NULL)
        return;
    mbedtls_ctr_drbg_free(&rng->drbg);
    mbedtls_entropy_free(&rng->entropy);
    free(rng);
}

static void crypto_rng_key_init(void)
{
    pthread_key_create(&crypto_rng_key, crypto_rng_destroy);
}

static crypto_rng_t *crypto_rng_get(void)
{
    static const char pers[] = "figment";
    crypto_rng_t *rng = crypto_tls_rng;

    if (rng != NULL) {
        if (rng->pid == getpid())
            return rng;
        /* Forked: the child must not continue the parent's stream. */
        if (mbedtls_ctr_drbg_reseed(&rng->drbg, (const unsigned char *)pers, sizeof(pers) - 1) != 0)
            return NULL;
        rng->pid = getpid();
        return rng;
    }

    pthread_once(&crypto_rng_once, crypto_rng_key_init);
    rng = fig_calloc(1, sizeof(*rng));
    mbedtls_entropy_init(&rng->entropy);
    mbedtls_ctr_drbg_init(&rng->drbg);
    if (mbedtls_ctr_drbg_seed(&rng->drbg, mbedtls_entropy_func, &rng->entropy, (const unsigned char *)pers,
                              sizeof(pers) - 1) != 0) {
        crypto_rng_destroy(rng);
        return NULL;
    }
    rng->pid = getpid();
    crypto_tls_rng = rng;
    pthread_setspecific(crypto_rng_key, rng);
    return rng;
}

int crypto_random(void *buf, size_t n)
{
    crypto_rng_t *rng = crypto_rng_get();
    if (rng == NULL)
        return -1;
    unsigned char *p = buf;
    while (n > 0) {
        size_t chunk = n < MBEDTLS_CTR_DRBG_MAX_REQUEST ? n : MBEDTLS_CTR_DRBG_MAX_REQUEST;
        if (mbedtls_ctr_drbg_random(&rng->drbg, p, chunk) != 0)
            return -1;
        p += chunk;
        n -= chunk;
    }
    return 0;
}

void crypto_sha256(const void *data, size_t len, uint8_t out[32])
{
    /* Cannot fail for the software implementation; a failure would mean a broken
     * library build, so make it loud rather than return a garbage digest. */
    if (mbedtls_sha256_ret(data, len, out, 0) != 0)
        abort();
}

void crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[32])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (md == NULL || mbedtls_md_hmac(md, key, keylen, data, len, out) != 0)
        abort();
}

int crypto_equal(const void *a, const void *b, size_t n)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= x[i] ^ y[i];
    return diff == 0;
}

char *crypto_hex(const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    char *out = fig_malloc(len * 2 + 1);
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[len * 2] = '\0';
    return out;
}

char *crypto_base64url(const void *data, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = data;
    char *out = fig_malloc((len + 2) / 3 * 4 + 1);
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

char *crypto_sha256_hex(const void *data, size_t len)
{
    uint8_t digest[32];
    crypto_sha256(data, len, digest);
    return crypto_hex(digest, sizeof(digest));
}
