/*
 * Access-token protection (contract 4): tokens are stored encrypted with a
 * key derived from SYNCV3_SECRET (AES-256-GCM, random 96-bit nonce), and
 * looked up by a SHA-256 hash so the plaintext never needs an index.
 */
#ifndef SYNCV3_CRYPTO_H
#define SYNCV3_CRYPTO_H

#include <stddef.h>

#include "log.h"

#define TOKEN_HASH_LEN 64 /* hex characters, without NUL */

/* Lowercase hex SHA-256 of data into out[TOKEN_HASH_LEN + 1]. */
void token_hash(const char *data, size_t len, char out[TOKEN_HASH_LEN + 1]);
/*
 * HMAC-SHA256 of msg under key (a C string) into out. This and token_hash
 * keep what libcrypto fetched for the process: call them from one thread.
 */
void crypto_hmac_sha256(const char *key, const void *msg, size_t len,
                        unsigned char out[32]);
/* Returns a new base64 string nonce||ciphertext||tag, or NULL. */
char *token_encrypt(const char *secret, const char *token) WARN_UNUSED;
/* Returns the new plaintext, or NULL when the key or data do not match. */
char *token_decrypt(const char *secret, const char *b64) WARN_UNUSED;

#endif
