/*
 * Token hashing and encryption on OpenSSL's libcrypto (EVP). Nothing here
 * is hand-rolled: SHA-256, AES-GCM, base64 and the RNG are libcrypto's.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "crypto.h"
#include "util.h"

#define NONCE_LEN 12
#define TAG_LEN 16

/*
 * SHA-256 and HMAC, fetched from the provider once: EVP_sha256() and
 * HMAC() fetch them again at every call (OpenSSL 3), 7 % of the api's CPU
 * on a sliding sync new connection (perf: a token hash and a pos MAC per
 * request). Held for the process's life.
 */
static EVP_MD *
sha256(void)
{
	static EVP_MD *md;

	if (md == NULL && (md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		fatalx("crypto: no SHA256");
	return md;
}

void
crypto_hmac_sha256(const char *key, const void *msg, size_t len,
                   unsigned char out[32])
{
	static EVP_MAC *mac;
	static EVP_MAC_CTX *ctx; /* keyed with ctx_key */
	static char *ctx_key;
	OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(
	                      OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	                  OSSL_PARAM_construct_end()};
	size_t n = 0;
	int ok;

	if (mac == NULL && (mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		fatalx("crypto: no HMAC");
	if (ctx_key == NULL || strcmp(ctx_key, key) != 0) {
		EVP_MAC_CTX_free(ctx);
		free(ctx_key);
		ctx_key = NULL;
		if ((ctx = EVP_MAC_CTX_new(mac)) == NULL ||
		    EVP_MAC_init(ctx, (const unsigned char *)key, strlen(key),
		                 p) != 1)
			fatalx("crypto: HMAC init failed");
		ctx_key = xstrdup(key);
	} else if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1) /* same key again */
		fatalx("crypto: HMAC init failed");
	ok = EVP_MAC_update(ctx, msg, len) == 1 &&
	     EVP_MAC_final(ctx, out, &n, 32) == 1 && n == 32;
	if (!ok)
		fatalx("crypto: HMAC failed");
}

void
token_hash(const char *data, size_t len, char out[TOKEN_HASH_LEN + 1])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, sha256(), NULL) != 1 ||
	    mdlen != sizeof(md))
		fatalx("token_hash: EVP_Digest failed");
	for (size_t i = 0; i < sizeof(md); i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void
derive_key(const char *secret, unsigned char key[32])
{
	unsigned int n = 0;

	if (EVP_Digest(secret, strlen(secret), key, &n, sha256(), NULL) != 1)
		fatalx("derive_key: EVP_Digest failed");
}

/*
 * AES-256-GCM under a key derived from the secret, with a fresh random
 * nonce each time, so the same token never encrypts to the same text;
 * output is base64(nonce || ciphertext || tag), one column value. The key
 * is wiped before returning; a failure is logged and returns NULL.
 */
char *
token_encrypt(const char *secret, const char *token)
{
	unsigned char key[32], *raw = NULL;
	size_t tlen = strlen(token), rawlen = NONCE_LEN + tlen + TAG_LEN;
	EVP_CIPHER_CTX *ctx = NULL;
	char *b64 = NULL;
	int n, ok = 0;

	derive_key(secret, key);
	raw = xmalloc(rawlen);
	if (RAND_bytes(raw, NONCE_LEN) != 1 ||
	    (ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, raw) != 1 ||
	    EVP_EncryptUpdate(ctx, raw + NONCE_LEN, &n,
		(const unsigned char *)token, (int)tlen) != 1 ||
	    EVP_EncryptFinal_ex(ctx, raw + NONCE_LEN + n, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
		raw + NONCE_LEN + tlen) != 1)
		goto out;
	b64 = xmalloc(4 * ((rawlen + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)b64, raw, (int)rawlen);
	ok = 1;
out:
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_cleanse(key, sizeof(key));
	free(raw);
	if (!ok)
		log_warnx("token_encrypt failed");
	return b64;
}

/*
 * The inverse of token_encrypt. Anything that does not authenticate
 * (another secret, a truncated or edited value, an embedded NUL) is NULL,
 * never a wrong token: a caller treats it as "no usable token".
 */
char *
token_decrypt(const char *secret, const char *b64)
{
	unsigned char key[32], *raw = NULL;
	size_t b64len = strlen(b64), rawlen, tlen;
	EVP_CIPHER_CTX *ctx = NULL;
	char *plain = NULL;
	int n, dec;

	if (b64len == 0 || b64len % 4 != 0)
		return NULL;
	raw = xmalloc(b64len / 4 * 3 + 1);
	if ((dec = EVP_DecodeBlock(raw, (const unsigned char *)b64,
	    (int)b64len)) < 0)
		goto out;
	rawlen = (size_t)dec;
	/* EVP_DecodeBlock counts '=' padding as zero bytes. */
	for (size_t i = b64len; i > 0 && b64[i - 1] == '='; i--)
		rawlen--;
	if (rawlen < NONCE_LEN + TAG_LEN)
		goto out;
	tlen = rawlen - NONCE_LEN - TAG_LEN;
	derive_key(secret, key);
	plain = xmalloc(tlen + 1);
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, raw) != 1 ||
	    EVP_DecryptUpdate(ctx, (unsigned char *)plain, &n,
		raw + NONCE_LEN, (int)tlen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
		raw + NONCE_LEN + tlen) != 1 ||
	    EVP_DecryptFinal_ex(ctx, (unsigned char *)plain + n, &n) != 1 ||
	    memchr(plain, '\0', tlen) != NULL) {
		free(plain);
		plain = NULL;
		goto out;
	}
	plain[tlen] = '\0';
out:
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_cleanse(key, sizeof(key));
	free(raw);
	return plain;
}
