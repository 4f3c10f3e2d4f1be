/*
 * log.h - the daemon's event log: one line per event on stderr.
 *
 * Line format (UTC, millisecond resolution, always ends in '\n'):
 *
 *     2024-05-01T12:34:56.789Z WARN receive: worker 3: recvmmsg: Connection refused
 *     |----- timestamp -----| |lvl| |comp|  |------------- message --------------|
 *
 * LEVEL is one of ERROR, WARN, INFO, DEBUG. Control characters in the message (a '\n' in a client-supplied name, say)
 * are replaced by '?', so one event is always exactly one line and a client cannot forge log lines.
 * A message longer than fits in DTS_LOG_LINE_MAX is cut and ends in "...".
 *
 * Thread context: every function here may be called from any thread at any time, concurrently. dts_log() formats the
 * whole line into a stack buffer and emits it with one write(2), so concurrent lines never interleave (a write of at
 * most PIPE_BUF bytes to a pipe is atomic; to a file or terminal one write is one line in practice). It never
 * allocates and takes no lock; errno is preserved.
 *
 * It is NOT for the per-packet path. Formatting costs about a microsecond and write(2) may block when stderr is a
 * full pipe: an RX core must never call it per datagram or per line. Log events (startup, shutdown, a listener
 * failing, a minute closed late); count per-packet conditions in self-metrics instead. If stderr is non-blocking and
 * full, the line is dropped and counted (dts_log_dropped()).
 *
 * The level threshold is a relaxed atomic: dts_log_set_level() from one thread (a signal-driven reload, an admin
 * endpoint) takes effect for the others promptly, with no ordering guarantee against their other memory accesses
 * (none is needed: a line logged or skipped around the change is fine).
 */
#ifndef DTS_LOG_H
#define DTS_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Severity, most severe first: a message is written when its level <= the current threshold. */
enum dts_log_level {
	DTS_LOG_ERROR = 0, /* the daemon or a component cannot do its job (a listener failed, the store is unwritable) */
	DTS_LOG_WARN = 1, /* something is wrong but the daemon carries on (late minute, drops began) */
	DTS_LOG_INFO = 2, /* lifecycle: started, listening, stopping; the default threshold */
	DTS_LOG_DEBUG = 3, /* detail for developers: config dump, per-minute summaries */
};

/* Longest line written, including the timestamp and the '\n'. At most PIPE_BUF (4096 on Linux) so a line written to
 * a pipe (systemd, docker, a test harness) is atomic; 2048 leaves a long message room and keeps the stack frame small. */
#define DTS_LOG_LINE_MAX 2048

/*
 * Set the threshold: messages with level <= level are written. Any thread.
 * Returns 0, or -EINVAL when level is not a dts_log_level (the threshold is then unchanged).
 */
int dts_log_set_level(int level);

/* The current threshold. Any thread. */
int dts_log_get_level(void);

/* True when a message at level would be written: lets a caller skip costly preparation (a config dump). Any thread. */
bool dts_log_enabled(int level);

/*
 * Parse a level name: "error", "warn", "info" or "debug" (case-insensitive; "warning" is accepted for "warn").
 * Returns the dts_log_level, or -EINVAL for NULL or any other name. Any thread.
 */
int dts_log_parse_level(const char *name);

/* Lower-case name of a level ("error", ...), or "?" for an invalid one. The string is static. Any thread. */
const char *dts_log_level_name(int level);

/*
 * Write one event at level from component (a short module name: "config", "receive", "http"; NULL is written as "-").
 * Nothing is written when level is above the threshold or invalid. Any thread; never on an RX core's per-packet path.
 */
void dts_log(int level, const char *component, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Same, with a va_list. */
void dts_vlog(int level, const char *component, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/* Lines dropped because stderr could not take them (non-blocking and full, or a write error). Any thread. */
uint64_t dts_log_dropped(void);

/* Shorthands. They are plain calls (arguments are always evaluated); use dts_log_enabled() to skip costly ones. */
#define dts_err(component, ...) dts_log(DTS_LOG_ERROR, (component), __VA_ARGS__)
#define dts_warn(component, ...) dts_log(DTS_LOG_WARN, (component), __VA_ARGS__)
#define dts_info(component, ...) dts_log(DTS_LOG_INFO, (component), __VA_ARGS__)
#define dts_debug(component, ...) dts_log(DTS_LOG_DEBUG, (component), __VA_ARGS__)

/*
 * Internal, exposed for the unit tests: format the line dts_vlog() would write for time ts into buf (size >= 64),
 * ignoring the threshold. Returns its length including the '\n' (always < size; the line is NUL-terminated).
 * Level must be valid. Any thread; never allocates.
 */
size_t dts__log_format(char *buf, size_t size, const struct timespec *ts, int level, const char *component,
		       const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

#endif /* DTS_LOG_H */
