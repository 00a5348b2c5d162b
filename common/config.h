/*
 * Table-driven configuration. Each daemon declares a table of rows naming
 * a SYNCV3_* environment variable, its type, where it lives in the daemon's
 * config struct and its default. The environment is the primary source;
 * command-line flags override it through config_set(). A malformed value
 * is a startup error naming the variable.
 */
#ifndef SYNCV3_CONFIG_H
#define SYNCV3_CONFIG_H

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

/* Applies defaults, then the environment. Returns 0 or -1 (logged). */
int config_load(const struct cfg_row *rows, void *cfg) WARN_UNUSED;
/* Sets one value by variable name (flags use this). Returns 0 or -1. */
int config_set(const struct cfg_row *rows, void *cfg, const char *name,
    const char *value) WARN_UNUSED;
/* Checks CFG_REQUIRED rows. Returns 0 or -1 (logged). */
int config_check(const struct cfg_row *rows, const void *cfg) WARN_UNUSED;
/* Prints NAME=value for every row, secrets masked. */
void config_print(const struct cfg_row *rows, const void *cfg, FILE *fp);
/* Frees the strings owned by the config struct. */
void config_free(const struct cfg_row *rows, void *cfg);

#endif
