/*
 * Logging for every syncv3 daemon: one line per message on stderr, prefixed
 * with the daemon name and level, so runit's svlogd and docker logs can take
 * it as is. The OpenBSD set: log_warn appends strerror(errno).
 */
#ifndef SYNCV3_LOG_H
#define SYNCV3_LOG_H

#include <stdbool.h>

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define WARN_UNUSED __attribute__((warn_unused_result))

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

void log_init(const char *name, int level);
void log_set_level(int level);
int log_get_level(void);
int log_level_parse(const char *s);
const char *log_level_name(int level);
bool log_rate_ok(unsigned *counter, long long *window_start);

void log_warn(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_warnx(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_info(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_debug(const char *fmt, ...) PRINTF_LIKE(1, 2);
void fatal(const char *fmt, ...) PRINTF_LIKE(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) PRINTF_LIKE(1, 2) __attribute__((noreturn));

/* Rate-limited warning: at most 10 lines per second per call site. */
#define log_warnx_rl(...)                                                      \
	do {                                                                   \
		static unsigned log_rl_n_;                                     \
		static long long log_rl_t_;                                    \
		if (log_rate_ok(&log_rl_n_, &log_rl_t_))                       \
			log_warnx(__VA_ARGS__);                                \
	} while (0)

#endif
