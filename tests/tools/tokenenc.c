/*
 * syncv3-tokenenc: stores devices the way the api does, for scenarios and
 * benchmarks that register devices without it (tests/integration/
 * lib_poller.sh, tests/bench/bench_poller.sh). With SYNCV3_SECRET set,
 * "syncv3-tokenenc TOKEN" prints token_encrypt(secret, TOKEN), and
 * "syncv3-tokenenc -" reads tokens from stdin, one a line, and prints
 * "token_hash<TAB>token_enc" for each. It was the poller's -E flag, which
 * was no part of the poller's life.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "log.h"

static char *
encrypt_or_die(const char *secret, const char *token)
{
	char *enc;

	if ((enc = token_encrypt(secret, token)) == NULL)
		fatalx("cannot encrypt");
	return enc;
}

int
main(int argc, char **argv)
{
	char line[4096], hash[TOKEN_HASH_LEN + 1], *enc;
	const char *secret = getenv("SYNCV3_SECRET");

	log_init("tokenenc", LOG_LEVEL_INFO);
	if (argc != 2) {
		fprintf(stderr, "usage: syncv3-tokenenc token | -\n");
		return 1;
	}
	if (secret == NULL || *secret == '\0')
		fatalx("SYNCV3_SECRET is required");
	if (strcmp(argv[1], "-") != 0) {
		enc = encrypt_or_die(secret, argv[1]);
		printf("%s\n", enc);
		free(enc);
		return 0;
	}
	while (fgets(line, sizeof(line), stdin) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		enc = encrypt_or_die(secret, line);
		token_hash(line, strlen(line), hash);
		printf("%s\t%s\n", hash, enc);
		free(enc);
	}
	return 0;
}
