/*
 * log.c - one line per event on stderr (contract in log.h).
 *
 * Why the date arithmetic is done here rather than with gmtime_r(): glibc's gmtime_r takes the timezone lock and, on
 * its first call, may read TZ and allocate. A logger that must never allocate and never wait on another thread's lock
 * converts seconds to a civil UTC date itself (Howard Hinnant's days_from_civil inverse, exact for the proleptic
 * Gregorian calendar; the unit test checks it against gmtime_r over four centuries).
 */
#include "log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <unistd.h>

static atomic_int log_level = DTS_LOG_INFO; /* written by dts_log_set_level (any thread), read relaxed everywhere */
static atomic_uint_fast64_t log_dropped; /* lines stderr did not take */

static const char *const level_upper[] = { "ERROR", "WARN", "INFO", "DEBUG" };
static const char *const level_lower[] = { "error", "warn", "info", "debug" };

static bool level_valid(int level)
{
	return level >= DTS_LOG_ERROR && level <= DTS_LOG_DEBUG;
}

int dts_log_set_level(int level)
{
	if (!level_valid(level))
		return -EINVAL;
	atomic_store_explicit(&log_level, level, memory_order_relaxed);
	return 0;
}

int dts_log_get_level(void)
{
	return atomic_load_explicit(&log_level, memory_order_relaxed);
}

bool dts_log_enabled(int level)
{
	return level_valid(level) && level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

int dts_log_parse_level(const char *name)
{
	if (!name)
		return -EINVAL;
	for (int i = DTS_LOG_ERROR; i <= DTS_LOG_DEBUG; i++)
		if (strcasecmp(name, level_lower[i]) == 0)
			return i;
	if (strcasecmp(name, "warning") == 0)
		return DTS_LOG_WARN;
	return -EINVAL;
}

const char *dts_log_level_name(int level)
{
	return level_valid(level) ? level_lower[level] : "?";
}

uint64_t dts_log_dropped(void)
{
	return atomic_load_explicit(&log_dropped, memory_order_relaxed);
}

struct civil {
	int64_t year;
	unsigned month, day, hour, min, sec;
};

/* Unix seconds to a UTC civil date and time. Floor division, so negative times are right too. */
static void civil_from_unix(int64_t t, struct civil *out)
{
	int64_t days = t / 86400;
	int64_t sod = t % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	out->hour = (unsigned)(sod / 3600);
	out->min = (unsigned)(sod / 60 % 60);
	out->sec = (unsigned)(sod % 60);

	int64_t z = days + 719468; /* days since 0000-03-01 */
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097; /* [0, 146096] */
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100); /* [0, 365], from March 1st */
	int64_t mp = (5 * doy + 2) / 153; /* [0, 11], March = 0 */
	out->day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	out->month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	out->year = yoe + era * 400 + (out->month <= 2);
}

size_t dts__log_format(char *buf, size_t size, const struct timespec *ts, int level, const char *component,
		       const char *fmt, va_list ap)
{
	struct civil c;
	civil_from_unix((int64_t)ts->tv_sec, &c);
	unsigned ms = (unsigned)(ts->tv_nsec / 1000000);
	if (ms > 999)
		ms = 999; /* defensive: a tv_nsec out of range must not widen the field */

	int n = snprintf(buf, size, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ %s %s: ", (long long)c.year, c.month, c.day,
			 c.hour, c.min, c.sec, ms, level_upper[level], component ? component : "-");
	size_t head = n < 0 ? 0 : (size_t)n;
	if (head > size - 2)
		head = size - 2; /* absurd component name: keep room for the newline */

	/* The message goes in what is left, minus one byte for the '\n'. */
	size_t room = size - 1 - head;
	int m = vsnprintf(buf + head, room, fmt, ap);
	size_t msg = m < 0 ? 0 : (size_t)m;
	if (msg >= room) {
		msg = room - 1;
		if (msg >= 3) {
			buf[head + msg - 3] = '.';
			buf[head + msg - 2] = '.';
			buf[head + msg - 1] = '.';
		}
	}
	/* One event, one line: no control characters from the message (or the component) survive. */
	for (size_t i = 0; i < head + msg; i++) {
		unsigned char ch = (unsigned char)buf[i];
		if (ch < 0x20 || ch == 0x7f)
			buf[i] = '?';
	}
	buf[head + msg] = '\n';
	buf[head + msg + 1] = '\0';
	return head + msg + 1;
}

/* Write all of buf to fd with as few write(2) calls as the kernel allows (normally one). Returns false on failure. */
static bool write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return false; /* EAGAIN on a full non-blocking pipe, EPIPE, EBADF: drop rather than stall */
		}
		buf += w;
		len -= (size_t)w;
	}
	return true;
}

void dts_vlog(int level, const char *component, const char *fmt, va_list ap)
{
	if (!dts_log_enabled(level))
		return;
	int saved_errno = errno; /* callers log and then look at errno, or pass %m */

	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		ts = (struct timespec){ 0, 0 };
	char line[DTS_LOG_LINE_MAX];
	errno = saved_errno; /* %m in fmt must see the caller's errno */
	size_t len = dts__log_format(line, sizeof(line), &ts, level, component, fmt, ap);
	if (!write_all(STDERR_FILENO, line, len))
		atomic_fetch_add_explicit(&log_dropped, 1, memory_order_relaxed);

	errno = saved_errno;
}

void dts_log(int level, const char *component, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	dts_vlog(level, component, fmt, ap);
	va_end(ap);
}
