/*
 * test_crypto.c — known-answer tests (FIPS 180-2, RFC 4231, RFC 4648) and sanity
 * checks of the per-thread random generator.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto.h"

static void test_sha256_vectors(void **s)
{
    (void)s;
    char *h = crypto_sha256_hex("abc", 3);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    free(h);
    h = crypto_sha256_hex("", 0);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    free(h);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    h = crypto_sha256_hex(m, strlen(m));
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    free(h);

    uint8_t raw[32];
    crypto_sha256("abc", 3, raw);
    assert_int_equal(raw[0], 0xba);
    assert_int_equal(raw[31], 0xad);
}

static void test_hmac_rfc4231(void **s)
{
    (void)s;
    uint8_t key[20], out[32];
    memset(key, 0x0b, sizeof(key));
    crypto_hmac_sha256(key, sizeof(key), "Hi There", 8, out);
    char *h = crypto_hex(out, 32);
    assert_string_equal(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    free(h);

    const char *data = "what do ya want for nothing?";
    crypto_hmac_sha256("Jefe", 4, data, strlen(data), out);
    h = crypto_hex(out, 32);
    assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    free(h);

    /* Test case 6: a key longer than the block size is hashed first. */
    uint8_t big[131];
    memset(big, 0xaa, sizeof(big));
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    crypto_hmac_sha256(big, sizeof(big), d6, strlen(d6), out);
    h = crypto_hex(out, 32);
    assert_string_equal(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    free(h);
}

static void test_equal(void **s)
{
    (void)s;
    assert_int_equal(crypto_equal("abcd", "abcd", 4), 1);
    assert_int_equal(crypto_equal("abcd", "abce", 4), 0);
    assert_int_equal(crypto_equal("xbcd", "abcd", 4), 0);
    assert_int_equal(crypto_equal("abcd", "abce", 3), 1); /* only n bytes count */
    assert_int_equal(crypto_equal("", "", 0), 1);
    uint8_t a[64] = {0}, b[64] = {0};
    b[63] = 0x80;
    assert_int_equal(crypto_equal(a, b, 64), 0);
}

static void test_hex(void **s)
{
    (void)s;
    uint8_t d[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char *h = crypto_hex(d, sizeof(d));
    assert_string_equal(h, "00017f80abff");
    free(h);
    h = crypto_hex("", 0);
    assert_string_equal(h, "");
    free(h);
}

static void test_base64url_rfc4648(void **s)
{
    (void)s;
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const want[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *b = crypto_base64url(in[i], strlen(in[i]));
        assert_string_equal(b, want[i]);
        free(b);
    }
    /* The URL-safe alphabet: standard base64 of fb ff bf is "+/+/". */
    uint8_t d[] = {0xfb, 0xff, 0xbf};
    char *b = crypto_base64url(d, 3);
    assert_string_equal(b, "-_-_");
    free(b);
    uint8_t d2[] = {0xfb, 0xff};
    b = crypto_base64url(d2, 2);
    assert_string_equal(b, "-_8");
    free(b);
    /* 32 bytes -> 43 chars, no padding. */
    uint8_t z[32] = {0};
    b = crypto_base64url(z, 32);
    assert_int_equal(strlen(b), 43);
    assert_null(strchr(b, '='));
    free(b);
}

static void test_random(void **s)
{
    (void)s;
    uint8_t a[32], b[32], zero[32] = {0};
    assert_int_equal(crypto_random(a, sizeof(a)), 0);
    assert_int_equal(crypto_random(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, zero, sizeof(a));

    /* More than one DRBG request (1024 bytes): every chunk must be filled. */
    size_t n = 5000;
    uint8_t *big = calloc(1, n);
    assert_int_equal(crypto_random(big, n), 0);
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++)
        zeros += big[i] == 0;
    assert_true(zeros < 100); /* expected about 20 */
    assert_memory_not_equal(big + 4096, zero, 32);
    free(big);
    assert_int_equal(crypto_random(a, 0), 0);
}

static void *random_thread(void *arg)
{
    uint8_t *out = arg;
    for (int i = 0; i < 100; i++)
        if (crypto_random(out, 32) != 0)
            return (void *)1;
    return NULL;
}

static void test_random_threads(void **s)
{
    (void)s;
    enum { N = 8 };
    pthread_t t[N];
    uint8_t out[N][32];
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, random_thread, out[i]), 0);
    for (int i = 0; i < N; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            assert_memory_not_equal(out[i], out[j], 32);
}

static void test_random_after_fork(void **s)
{
    (void)s;
    uint8_t parent[32], child[32];
    assert_int_equal(crypto_random(parent, 1), 0); /* seed the generator before forking */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint8_t c[32];
        crypto_random(c, 32);
        ssize_t w = write(fds[1], c, 32);
        _exit(w == 32 ? 0 : 1);
    }
    assert_int_equal(crypto_random(parent, 32), 0);
    assert_int_equal(read(fds[0], child, 32), 32);
    int status;
    waitpid(pid, &status, 0);
    close(fds[0]);
    close(fds[1]);
    assert_memory_not_equal(parent, child, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors), cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_equal),          cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64url_rfc4648), cmocka_unit_test(test_random),
        cmocka_unit_test(test_random_threads), cmocka_unit_test(test_random_after_fork),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
