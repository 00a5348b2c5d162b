/*
 * Table-driven configuration. Each daemon declares a table of rows naming
 * a SYNCV3_* environment variable, its type, where it lives in the daemon's
 * config struct and its default. The environment is the primary source;
 * command-line flags override it through config_set(). A malformed value
 * is a startup error naming the variable.
 */
#ifndef SYNCV3_CONFIG_H
#define SYNCV3_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "log.h"

enum cfg_type {
	CFG_STR,	/* char *, owned by the config struct */
	CFG_INT,	/* long long, range-checked against min/max */
	CFG_BOOL,	/* bool: 1/0, true/false, yes/no, on/off */
};

struct cfg_row {
	const char *name;	/* environment variable */
	enum cfg_type type;
	size_t offset;		/* offsetof(struct x_config, field) */
	const char *def;	/* default as text; NULL means unset */
	long long min, max;	/* CFG_INT bounds */
	int flags;
	const char *help;
};

#define CFG_SECRET 0x1		/* masked in config_print() */
#define CFG_REQUIRED 0x2	/* startup fails when unset */
/*
 * CFG_OPT('d') in a row's flags makes -d VALUE on the command line set
 * that row (config_getopt); the letter lives in bits 8-15.
 */
#define CFG_OPT(ch) ((int)(unsigned char)(ch) << 8)
#define CFG_OPT_CHAR(flags) ((char)(((flags) >> 8) & 0xff))

/* What config_getopt found besides the rows' own flags. */
struct cfg_cli {
	bool is_check; /* -n: check the config, print it, exit */
	int verbose;   /* -v, repeatable: log levels above the configured one */
};

#define CFG_EUSAGE (-2) /* config_getopt: unknown flag or missing argument */

/* Applies defaults, then the environment. Returns 0 or -1 (logged). */
int config_load(const struct cfg_row *rows, void *cfg) WARN_UNUSED;
/* Sets one value by variable name (flags use this). Returns 0 or -1. */
int config_set(const struct cfg_row *rows, void *cfg, const char *name,
    const char *value) WARN_UNUSED;
/*
 * Parses argv after config_load: each row's CFG_OPT letter takes a value
 * that overrides the environment, -n and -v fill cli. Returns 0, -1 when
 * a value is malformed (logged, naming the variable) or CFG_EUSAGE (getopt
 * printed why; the caller prints its usage).
 */
int config_getopt(const struct cfg_row *rows, void *cfg, int argc, char **argv,
                  struct cfg_cli *cli) WARN_UNUSED;
/*
 * Sets the log level from its configured name (SYNCV3_LOG_LEVEL) raised by
 * cli->verbose, capped at debug. An unknown name is a startup error
 * (fatalx naming the variable).
 */
void config_log_level(const char *level, const struct cfg_cli *cli);
/* Checks CFG_REQUIRED rows. Returns 0 or -1 (logged). */
int config_check(const struct cfg_row *rows, const void *cfg) WARN_UNUSED;
/* Prints NAME=value for every row, secrets masked. */
void config_print(const struct cfg_row *rows, const void *cfg, FILE *fp);
/* Frees the strings owned by the config struct. */
void config_free(const struct cfg_row *rows, void *cfg);

#endif
