/*
 * sincetok.c: since tokens. A token names the session and one position per
 * stream, and carries a MAC over them and the owning device (HMAC-SHA256
 * keyed with SYNCV3_SECRET, 64 bits), so a token is opaque, cannot be
 * edited, and is useless to any other device:
 *   s<session>_<member>_<list>_<typing>_<to_device>_<mac hex>
 * where <typing> is a position, or for a typing list shown before its
 * commit <position>.<its notice's seq> (s_typing.c).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "crypto.h"
#include "util.h"

#define MAC_HEX TOK_MAC_HEX

/* Also the MAC of sliding sync's pos tokens (ss_proto.c). */
void
tok_mac(const char *body, size_t len, const char *secret, const char *user_id,
        const char *device_id, char out[MAC_HEX + 1])
{
	unsigned char md[32];
	char *msg;

	msg = xasprintf("%s\n%s\n%.*s", user_id, device_id, (int)len, body);
	crypto_hmac_sha256(secret, msg, strlen(msg), md);
	free(msg);
	for (int i = 0; i < MAC_HEX / 2; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void
since_format(const struct since *s, const char *secret, const char *user_id,
             const char *device_id, char *out)
{
	char mac[MAC_HEX + 1], te[24] = "";
	int n;

	if (s->te > 0)
		snprintf(te, sizeof(te), ".%" PRId64, s->te);
	n = snprintf(out, SINCE_MAX,
	             "s%" PRId64 "_%" PRId64 "_%" PRId64 "_%" PRId64
	             "%s_%" PRId64,
	             s->sid, s->m, s->l, s->t, te, s->d);
	tok_mac(out, (size_t)n, secret, user_id, device_id, mac);
	snprintf(out + n, SINCE_MAX - (size_t)n, "_%s", mac);
}

static int
get_num(const char **pp, int64_t *out, char end)
{
	const char *p = *pp;
	int64_t v = 0;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	if (*p != end)
		return -1;
	*out = v;
	*pp = end == '\0' ? p : p + 1;
	return 0;
}

/* <typing>: a position, then ".<seq>" for a list shown early. */
static int
get_typing(const char **pp, struct since *s)
{
	const char *p = *pp;

	s->te = 0;
	if (get_num(&p, &s->t, '_') == 0) {
		*pp = p;
		return 0;
	}
	if (get_num(pp, &s->t, '.') == -1 || get_num(pp, &s->te, '_') == -1 ||
	    s->te == 0)
		return -1;
	return 0;
}

int
since_parse(const char *tok, struct since *s)
{
	const char *p = tok;
	size_t len = strlen(tok);

	if (len >= SINCE_MAX || len < MAC_HEX + 11 || *p++ != 's')
		return -1;
	if (get_num(&p, &s->sid, '_') == -1 || get_num(&p, &s->m, '_') == -1 ||
	    get_num(&p, &s->l, '_') == -1 || get_typing(&p, s) == -1 ||
	    get_num(&p, &s->d, '_') == -1)
		return -1;
	if (strlen(p) != MAC_HEX)
		return -1;
	for (; *p != '\0'; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return -1;
	return s->sid > 0 ? 0 : -1;
}

bool
since_verify(const char *tok, const char *secret, const char *user_id,
             const char *device_id)
{
	char mac[MAC_HEX + 1];
	size_t len = strlen(tok);

	if (len < MAC_HEX + 1)
		return false;
	tok_mac(tok, len - MAC_HEX - 1, secret, user_id, device_id, mac);
	return tok_mac_eq(mac, tok + len - MAC_HEX);
}

bool
tok_mac_eq(const char *a, const char *b)
{
	return CRYPTO_memcmp(a, b, MAC_HEX) == 0;
}
