/*
 * Parser for the config tables declared by each daemon (see config.h).
 * Values are kept in the daemon's own struct; strings are heap copies owned
 * by that struct and released by config_free().
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

static int
parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/*
 * Stores one value in its row's field: the only place text becomes a
 * config value, so a default, the environment and a flag are checked
 * alike and a bad one names its variable. A CFG_STR is copied and owned by
 * the config struct (config_free).
 */
static int
row_set(const struct cfg_row *r, void *cfg, const char *value)
{
	char *base = (char *)cfg + r->offset;
	long long v;
	bool b;

	switch (r->type) {
	case CFG_STR:
		free(*(char **)base);
		*(char **)base = value ? xstrdup(value) : NULL;
		return 0;
	case CFG_INT:
		if (parse_i64(value, &v) == -1 || v < r->min || v > r->max) {
			log_warnx("%s: invalid value \"%s\" (integer %lld..%lld)",
			    r->name, value, r->min, r->max);
			return -1;
		}
		*(long long *)base = v;
		return 0;
	case CFG_BOOL:
		if (parse_bool(value, &b) == -1) {
			log_warnx("%s: invalid value \"%s\" (boolean)", r->name,
			    value);
			return -1;
		}
		*(bool *)base = b;
		return 0;
	}
	return -1;
}

int
config_load(const struct cfg_row *rows, void *cfg)
{
	const char *env;

	for (const struct cfg_row *r = rows; r->name != NULL; r++) {
		if (r->def != NULL && row_set(r, cfg, r->def) == -1)
			fatalx("%s: bad built-in default", r->name);
		if ((env = getenv(r->name)) != NULL && row_set(r, cfg, env) == -1)
			return -1;
	}
	return 0;
}

int
config_set(const struct cfg_row *rows, void *cfg, const char *name,
    const char *value)
{
	for (const struct cfg_row *r = rows; r->name != NULL; r++)
		if (strcmp(r->name, name) == 0)
			return row_set(r, cfg, value);
	log_warnx("unknown setting %s", name);
	return -1;
}

/* The getopt string: "n" and "v", then "X:" for each row's letter. */
static char *
optstring(const struct cfg_row *rows)
{
	size_t n = 0;
	char *s;

	for (const struct cfg_row *r = rows; r->name != NULL; r++)
		n++;
	s = xmalloc(2 * n + 3);
	n = 0;
	s[n++] = 'n';
	s[n++] = 'v';
	for (const struct cfg_row *r = rows; r->name != NULL; r++)
		if (CFG_OPT_CHAR(r->flags) != '\0') {
			s[n++] = CFG_OPT_CHAR(r->flags);
			s[n++] = ':';
		}
	s[n] = '\0';
	return s;
}

static const struct cfg_row *
row_by_opt(const struct cfg_row *rows, int ch)
{
	for (const struct cfg_row *r = rows; r->name != NULL; r++)
		if (CFG_OPT_CHAR(r->flags) != '\0' &&
		    CFG_OPT_CHAR(r->flags) == (char)ch)
			return r;
	return NULL;
}

int
config_getopt(const struct cfg_row *rows, void *cfg, int argc, char **argv,
              struct cfg_cli *cli)
{
	const struct cfg_row *r;
	char *opts = optstring(rows);
	int ch, rc = 0;

	memset(cli, 0, sizeof(*cli));
	optind = 1;
	while (rc == 0 && (ch = getopt(argc, argv, opts)) != -1) {
		if (ch == 'n')
			cli->is_check = true;
		else if (ch == 'v')
			cli->verbose++;
		else if ((r = row_by_opt(rows, ch)) != NULL)
			rc = row_set(r, cfg, optarg);
		else
			rc = CFG_EUSAGE;
	}
	free(opts);
	return rc;
}

void
config_log_level(const char *level, const struct cfg_cli *cli)
{
	int lvl;

	if (level == NULL || (lvl = log_level_parse(level)) < 0)
		fatalx("SYNCV3_LOG_LEVEL: invalid value \"%s\"",
		       level != NULL ? level : "");
	lvl += cli->verbose;
	log_set_level(lvl > LOG_LEVEL_DEBUG ? LOG_LEVEL_DEBUG : lvl);
}

int
config_check(const struct cfg_row *rows, const void *cfg)
{
	int rc = 0;

	for (const struct cfg_row *r = rows; r->name != NULL; r++) {
		const char *base = (const char *)cfg + r->offset;
		const char *s;

		if (!(r->flags & CFG_REQUIRED) || r->type != CFG_STR)
			continue;
		s = *(char *const *)base;
		if (s == NULL || *s == '\0') {
			log_warnx("%s is required (%s)", r->name, r->help);
			rc = -1;
		}
	}
	return rc;
}

void
config_print(const struct cfg_row *rows, const void *cfg, FILE *fp)
{
	for (const struct cfg_row *r = rows; r->name != NULL; r++) {
		const char *base = (const char *)cfg + r->offset;
		const char *s;

		switch (r->type) {
		case CFG_STR:
			s = *(char *const *)base;
			if (s != NULL && (r->flags & CFG_SECRET))
				s = "********";
			fprintf(fp, "%s=%s\n", r->name, s ? s : "");
			break;
		case CFG_INT:
			fprintf(fp, "%s=%lld\n", r->name,
			    *(const long long *)base);
			break;
		case CFG_BOOL:
			fprintf(fp, "%s=%s\n", r->name,
			    *(const bool *)base ? "true" : "false");
			break;
		}
	}
}

void
config_free(const struct cfg_row *rows, void *cfg)
{
	for (const struct cfg_row *r = rows; r->name != NULL; r++) {
		if (r->type != CFG_STR)
			continue;
		char **p = (char **)((char *)cfg + r->offset);
		free(*p);
		*p = NULL;
	}
}
