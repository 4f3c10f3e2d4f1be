/*
 * config.c - defaults, config file, environment and flags into one validated struct dts_config (contract in config.h,
 * user documentation in docs/configuration.md).
 *
 * One table (keys[] below) drives everything: the file parser, the flag parser, --help, the dump, and the unknown-key
 * suggestion, so a key cannot exist in one place and be missing from another. Each entry says where the value lives
 * in the struct, what kind of value it is and its bounds; set_value() is the only code that writes a setting.
 *
 * Why hand-written rather than getopt_long() and an INI library: getopt_long keeps global state (optind), permutes
 * argv, accepts abbreviations (--work for --workers) and prints its own errors, while we need two passes (--config
 * first), errors that name the key, and the same value checks as the file. The file format is 'key = value' lines,
 * about forty lines to parse; the work is in the validation, which no parsing library does for us. No new dependency.
 *
 * Everything writes into a copy of the caller's struct and commits it only on success, so a failed load changes
 * nothing. Not thread-safe: startup only.
 */
#include "config.h"
#include "dts/dpdk_rx.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dts/tunables.h"
#include "log.h"
#include "netacl.h"
#include "notify.h"

#ifndef DTS_VERSION
#define DTS_VERSION "0.1.0" /* CMake may pass -DDTS_VERSION="${PROJECT_VERSION}" */
#endif

_Static_assert(DTS_CONFIG_NAME_SIZE - 1 == DTS_MAX_USER, "user names are bounded by the engine's DTS_MAX_USER");
_Static_assert(DTS_CONFIG_NAME_SIZE - 1 <= DTS_MAX_NAME, "default_process must fit in a metric name");

/* Longest line of a config file, without its newline. A longer line is an error (never silently split). */
#define LINE_MAX_BYTES 4096

/* Longest value quoted back in an error message; longer ones are cut with "...". */
#define SHOW_MAX 64

/* Largest rcvbuf_bytes: SO_RCVBUF takes an int and the kernel doubles it, so 1 GiB is the largest safe request. */
#define RCVBUF_MAX (1u << 30)

enum kind {
	K_PATH, /* string; "" allowed only when empty_ok; no control characters */
	K_BIND, /* IPv4 or IPv6 literal */
	K_NAME, /* user / process name: 1..64 of [A-Za-z0-9@._+-] */
	K_U16, /* uint16_t in [min, max] */
	K_UINT, /* unsigned in [min, max] */
	K_I64, /* int64_t in [min, max] */
	K_BYTES, /* unsigned byte count in [min, max], optional K/M/G suffix (powers of 1024) */
	K_BOOL, /* true/false/yes/no/on/off/1/0 */
	K_SEP, /* one character */
	K_SECRET, /* HMAC key, never echoed */
	K_SECRET_FILE, /* path of a file holding the secret; read when set */
	K_LOG_LEVEL, /* error/warn/info/debug */
	K_IO, /* socket / dpdk */
	K_EAL, /* DPDK EAL argument line */
	K_DPDK, /* dpdk_<key>: text checked by dts_dpdk_cfg_set(<key>) */
	K_NETS, /* comma-separated CIDR networks (netacl.h); "" allowed */
	K_CREDENTIAL, /* a password or token: any text without control characters, "" allowed, never echoed */
	K_HOST, /* host name or IP address literal: [A-Za-z0-9.:_-]; "" allowed when empty_ok */
	K_GRAPHITE_PATH, /* Graphite path nodes [A-Za-z0-9_-]+ separated by single '.'; "" allowed */
};

struct key {
	const char *name; /* config-file key; the flag is "--" + name with '_' -> '-' */
	enum kind kind;
	size_t off; /* offsetof the field in struct dts_config */
	size_t size; /* sizeof the field (string kinds: the array, NUL included) */
	int64_t min, max; /* integer kinds */
	bool empty_ok; /* K_PATH: "" is allowed and means off */
	const char *metavar; /* --help: "--data-dir DIR" */
	const char *help; /* --help: one line */
};

#define FIELD(f) offsetof(struct dts_config, f), sizeof(((struct dts_config *)0)->f)

/* In the order of config.h, docs/configuration.md and etc/dattssd.conf. */
static const struct key keys[] = {
	{ "data_dir", K_PATH, FIELD(data_dir), 0, 0, false, "DIR", "RocksDB data directory" },
	{ "retention_minutes_days", K_UINT, FIELD(retention_minutes_days), 8, 3650, false, "DAYS",
	  "days of minute aggregates kept, 8..3650" },
	{ "retention_hours_days", K_UINT, FIELD(retention_hours_days), 1, 36500, false, "DAYS",
	  "days of hourly rollups kept, 1..36500" },
	{ "checkpoint_ms", K_UINT, FIELD(checkpoint_ms), 0, 60000, false, "MS",
	  "checkpoint open minutes to the store this often (0 = off, else >= 1000)" },
	{ "rocksdb_log_dir", K_PATH, FIELD(rocksdb_log_dir), 0, 0, true, "DIR",
	  "directory for RocksDB's own LOG files; empty = none" },
	{ "bind", K_BIND, FIELD(bind), 0, 0, false, "ADDR", "IPv4 or IPv6 address every listener binds to" },
	{ "statsd_port", K_U16, FIELD(statsd_port), 0, 65535, false, "PORT",
	  "statsd/DaTtSs lines over UDP and TCP; 0 = off" },
	{ "unix_socket", K_PATH, FIELD(unix_socket), 0, 0, true, "PATH", "statsd Unix datagram socket; empty = off" },
	{ "http_port", K_U16, FIELD(http_port), 0, 65535, false, "PORT", "HTTP API, dashboard, /metrics; 0 = off" },
	{ "statsd_allow", K_NETS, FIELD(statsd_allow), 0, 0, true, "NETS",
	  "source networks allowed on the statsd UDP/TCP port, e.g. 10.0.0.0/8,fd00::/8; empty = any" },
	{ "workers", K_UINT, FIELD(workers), 1, 63, false, "N", "UDP receive threads, 1..63" },
	{ "cpu_pin", K_BOOL, FIELD(cpu_pin), 0, 0, false, NULL, "pin worker i to CPU i mod ncpu" },
	{ "recv_batch", K_UINT, FIELD(recv_batch), 1, 1024, false, "N", "datagrams per recvmmsg() call, 1..1024" },
	{ "recv_coalesce_us", K_UINT, FIELD(recv_coalesce_us), 0, 10000, false, "US",
	  "longest sleep after a wake-up that emptied the socket, for more datagrams per wake-up, 0..10000; 0 = off" },
	{ "rcvbuf_bytes", K_BYTES, FIELD(rcvbuf_bytes), 0, RCVBUF_MAX, false, "BYTES",
	  "SO_RCVBUF per socket (K/M/G suffix ok), up to 1G; 0 = system default" },
	{ "udp_backpressure", K_BOOL, FIELD(udp_backpressure), 0, 0, false, NULL,
	  "a saturated worker leaves its socket unread (the socket buffer queues) instead of dropping" },
	{ "tick_ms", K_UINT, FIELD(tick_ms), 10, 60000, false, "MS", "table hand-over period to the merger, 10..60000" },
	{ "grace_s", K_UINT, FIELD(grace_s), 0, 60, false, "S", "seconds after a minute ends before it is closed, 0..60" },
	{ "max_past_skew_s", K_I64, FIELD(max_past_skew_s), 0, 86400, false, "S",
	  "oldest statsd |T timestamp accepted, seconds before now, 0..86400" },
	{ "max_future_skew_s", K_I64, FIELD(max_future_skew_s), 0, 60, false, "S",
	  "newest statsd |T timestamp accepted, seconds after now, 0..60" },
	{ "table_capacity", K_UINT, FIELD(table_capacity), 1024, 16777216, false, "N",
	  "buckets per worker table, a power of two in 1024..16777216 (~ distinct series per tick x 2)" },
	{ "table_capacity_max", K_UINT, FIELD(table_capacity_max), 0, 16777216, false, "N",
	  "tables that fill before their tick grow, doubling, up to this many buckets (a power of two; "
	  "0 or <= table_capacity: no growth)" },
	{ "max_series", K_UINT, FIELD(max_series), 1, 1073741824, false, "N",
	  "live series kept at most, 1..1073741824; new series beyond are dropped and counted" },
	{ "series_reserve", K_UINT, FIELD(series_reserve), 0, 1073741824, false, "N",
	  "series whose memory is faulted in at start (~640 B each), so that a start under full load drops nothing; "
	  "0 = none, at most max_series" },
	{ "user", K_NAME, FIELD(user), 0, 0, false, "NAME", "user owning statsd lines, 1..64 of [A-Za-z0-9@._+-]" },
	{ "default_process", K_NAME, FIELD(default_process), 0, 0, false, "NAME",
	  "process for statsd names without a separator" },
	{ "split_process", K_BOOL, FIELD(split_process), 0, 0, false, NULL,
	  "process = first segment of a statsd name" },
	{ "process_sep", K_SEP, FIELD(process_sep), 0, 0, false, "CHAR",
	  "separator between process and counter: one of . _ -" },
	{ "secret", K_SECRET, FIELD(secret), 0, 0, false, "SECRET",
	  "HMAC key for DaTtSs AUTH; empty = reject DaTtSs lines (shows in ps: prefer the next)" },
	{ "secret_file", K_SECRET_FILE, FIELD(secret_file), 0, 0, false, "FILE", "read the secret from FILE (one line)" },
	{ "graphite_host", K_HOST, FIELD(graphite_host), 0, 0, true, "HOST",
	  "send closed minutes to this carbon host (plaintext protocol); empty = off" },
	{ "graphite_port", K_U16, FIELD(graphite_port), 1, 65535, false, "PORT", "carbon's plaintext port" },
	{ "graphite_prefix", K_GRAPHITE_PATH, FIELD(graphite_prefix), 0, 0, true, "PREFIX",
	  "first node(s) of every Graphite path, e.g. dattss or stats.dattss; empty = none" },
	{ "smtp_url", K_PATH, FIELD(smtp_url), 0, 0, true, "URL",
	  "alert email server: smtp://host[:port] or smtps://host[:port]; empty = no email" },
	{ "smtp_user", K_PATH, FIELD(smtp_user), 0, 0, true, "USER", "SMTP AUTH user; empty = no AUTH" },
	{ "smtp_password", K_CREDENTIAL, FIELD(smtp_password), 0, 0, true, "PASSWORD",
	  "SMTP AUTH password (shows in ps as a flag: prefer the config file)" },
	{ "smtp_from", K_PATH, FIELD(smtp_from), 0, 0, true, "ADDR", "sender address of alert emails" },
	{ "smtp_starttls", K_BOOL, FIELD(smtp_starttls), 0, 0, false, NULL, "smtp://: require STARTTLS" },
	{ "sms_url", K_PATH, FIELD(sms_url), 0, 0, true, "URL",
	  "Twilio-style API base for SMS, e.g. https://api.twilio.com/2010-04-01; empty = no SMS" },
	{ "sms_account", K_PATH, FIELD(sms_account), 0, 0, true, "SID", "SMS/call provider account (basic auth user)" },
	{ "sms_token", K_CREDENTIAL, FIELD(sms_token), 0, 0, true, "TOKEN",
	  "SMS/call provider auth token (prefer the config file)" },
	{ "sms_from", K_PATH, FIELD(sms_from), 0, 0, true, "NUMBER", "sender number of alert SMS (and calls)" },
	{ "call_url", K_PATH, FIELD(call_url), 0, 0, true, "URL", "API base for phone calls; empty = sms_url" },
	{ "call_from", K_PATH, FIELD(call_from), 0, 0, true, "NUMBER", "caller number; empty = sms_from" },
	{ "call_twiml_url", K_PATH, FIELD(call_twiml_url), 0, 0, true, "URL",
	  "calls fetch their TwiML here instead of an inline Twiml; empty = inline" },
	{ "notify_timeout_s", K_UINT, FIELD(notify_timeout_s), 1, 300, false, "S",
	  "time limit of one notification attempt, 1..300" },
	{ "alert_eval_s", K_UINT, FIELD(alert_eval_s), 1, 300, false, "S", "alert evaluation period, 1..300" },
	{ "alert_repeat_s", K_UINT, FIELD(alert_repeat_s), 0, 604800, false, "S",
	  "repeat a firing alert's notification this often; 0 = never" },
	{ "alert_resolved_s", K_UINT, FIELD(alert_resolved_s), 0, 86400, false, "S",
	  "a resolved alert shows as resolved this long before ok, 0..86400" },
	{ "alert_rate_per_hour", K_UINT, FIELD(alert_rate_per_hour), 1, 36000, false, "N",
	  "notification messages per user per hour, 1..36000" },
	{ "alert_rate_burst", K_UINT, FIELD(alert_rate_burst), 1, 1000, false, "N",
	  "notification messages per user at once, 1..1000" },
	{ "alert_retries", K_UINT, FIELD(alert_retries), 0, 20, false, "N",
	  "retries of a failed notification (exponential backoff), 0..20" },
	{ "alert_max_rules", K_UINT, FIELD(alert_max_rules), 1, 10000, false, "N", "alert rules per user, 1..10000" },
	{ "alert_minute_s", K_UINT, FIELD(alert_minute_s), 1, 60, false, "S",
	  "seconds in a minute of after_min (tests only; keep 60)" },
	{ "log_level", K_LOG_LEVEL, FIELD(log_level), 0, 0, false, "LEVEL", "error, warn, info or debug" },
	{ "io", K_IO, FIELD(io), 0, 0, false, "MODE", "receive path: socket (kernel UDP) or dpdk (poll-mode)" },
	{ "dpdk_eal", K_EAL, FIELD(dpdk_eal), 0, 0, true, "ARGS", "DPDK EAL arguments, e.g. \"--no-pci --in-memory -l 0-1\"" },
	{ "dpdk_port", K_DPDK, FIELD(dpdk_port), 0, 0, true, "N", "DPDK ethdev port id [0]" },
	{ "dpdk_queues", K_DPDK, FIELD(dpdk_queues), 0, 0, true, "N", "receive queues = polling lcores (required)" },
	{ "dpdk_ipv4", K_DPDK, FIELD(dpdk_ipv4), 0, 0, true, "ADDR", "IPv4 address answering ARP and ping" },
	{ "dpdk_ipv6", K_DPDK, FIELD(dpdk_ipv6), 0, 0, true, "ADDR", "IPv6 address answering NS and ping" },
	{ "dpdk_mac", K_DPDK, FIELD(dpdk_mac), 0, 0, true, "MAC", "MAC address instead of the port's own" },
	{ "dpdk_udp_ports", K_DPDK, FIELD(dpdk_udp_ports), 0, 0, true, "PORTS", "UDP ports ingested [statsd_port]" },
	{ "dpdk_rx_desc", K_DPDK, FIELD(dpdk_rx_desc), 0, 0, true, "N", "receive ring size per queue [1024]" },
	{ "dpdk_mbufs", K_DPDK, FIELD(dpdk_mbufs), 0, 0, true, "N", "mbufs per queue [auto]" },
	{ "dpdk_mbuf_size", K_DPDK, FIELD(dpdk_mbuf_size), 0, 0, true, "BYTES", "mbuf data room [2176]" },
	{ "dpdk_promiscuous", K_DPDK, FIELD(dpdk_promiscuous), 0, 0, true, "BOOL", "receive every frame [false]" },
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

void dts_config_defaults(struct dts_config *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->data_dir, "./data");
	strcpy(c->bind, "127.0.0.1");
	c->statsd_port = 8125;
	c->unix_socket[0] = '\0';
	c->http_port = 8080;
	c->workers = 2;
	c->cpu_pin = true;
	c->recv_batch = 64;
	c->recv_coalesce_us = 10000;
	c->rcvbuf_bytes = 8u << 20;
	c->udp_backpressure = true;
	c->tick_ms = 1000;
	c->grace_s = 10;
	c->max_past_skew_s = 600;
	c->max_future_skew_s = 60;
	c->table_capacity = 65536;
	c->table_capacity_max = 524288;
	c->max_series = 4194304;
	strcpy(c->user, "default");
	strcpy(c->default_process, "default");
	c->split_process = true;
	c->process_sep = '.';
	c->retention_minutes_days = 15;
	c->retention_hours_days = 400;
	c->checkpoint_ms = 5000;
	strcpy(c->io, "socket");
	c->secret[0] = '\0';
	c->secret_file[0] = '\0';
	c->graphite_host[0] = '\0';
	c->graphite_port = 2003;
	strcpy(c->graphite_prefix, "dattss");
	c->smtp_starttls = true;
	c->notify_timeout_s = 10;
	c->alert_eval_s = 5;
	c->alert_repeat_s = 3600;
	c->alert_resolved_s = 300;
	c->alert_rate_per_hour = 20;
	c->alert_rate_burst = 5;
	c->alert_retries = 5;
	c->alert_max_rules = 100;
	c->alert_minute_s = 60;
	c->log_level = DTS_LOG_INFO;
	c->config_file[0] = '\0';
}

/* ---- small helpers ------------------------------------------------------------------------------------------- */

static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* A value as quoted back in an error: control characters as '?', cut to SHOW_MAX bytes with "...". */
static const char *show(const char *v, char out[SHOW_MAX + 4])
{
	size_t i = 0;
	for (; v[i] && i < SHOW_MAX; i++) {
		unsigned char ch = (unsigned char)v[i];
		out[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	if (v[i])
		memcpy(out + i, "...", 3), i += 3;
	out[i] = '\0';
	return out;
}

/* The flag for a key: "--" + name with '_' -> '-'. */
static const char *flag_name(const char *key, char out[64])
{
	size_t i = 0;
	out[i++] = '-';
	out[i++] = '-';
	for (const char *p = key; *p && i < 63; p++)
		out[i++] = *p == '_' ? '-' : *p;
	out[i] = '\0';
	return out;
}

/* Decimal integer: optional '-', then digits only (no spaces, '+', hex or octal). */
static bool parse_i64(const char *s, int64_t *out)
{
	bool neg = *s == '-';
	if (neg)
		s++;
	if (!*s)
		return false;
	uint64_t v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10 || v * 10 + d > (uint64_t)INT64_MAX)
			return false;
		v = v * 10 + d;
	}
	*out = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

/* Byte count: digits, then optionally one of K, M, G (either case; powers of 1024). Bounded by max. */
static bool parse_bytes(const char *s, int64_t max, int64_t *out)
{
	char digits[32];
	size_t n = strlen(s);
	if (n == 0 || n >= sizeof(digits))
		return false;
	memcpy(digits, s, n + 1);
	int shift = 0;
	switch (digits[n - 1]) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	default: break;
	}
	if (shift)
		digits[n - 1] = '\0';
	int64_t v;
	if (digits[0] == '-' || !parse_i64(digits, &v) || v > (max >> shift))
		return false;
	*out = v << shift;
	return true;
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = true, true;
		if (strcasecmp(s, no[i]) == 0)
			return *out = false, true;
	}
	return false;
}

static bool name_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '@' ||
	       ch == '.' || ch == '_' || ch == '+' || ch == '-';
}

static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Levenshtein distance, for "did you mean". Strings longer than 63 bytes count as far from everything. */
static unsigned edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 63 || lb > 63)
		return 1000;
	unsigned row[64];
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned diag = row[0];
		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			unsigned up = row[j];
			unsigned best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static const struct key *find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* The closest key to name within edit distance 2, or NULL. */
static const char *suggest_key(const char *name)
{
	const char *best = NULL;
	unsigned best_d = 3;
	for (size_t i = 0; i < NKEYS; i++) {
		unsigned d = edit_distance(name, keys[i].name);
		if (d < best_d)
			best_d = d, best = keys[i].name;
	}
	return best;
}

/* ---- setting one value ---------------------------------------------------------------------------------------- */

/*
 * Read a secret file: one line (a trailing "\n" or "\r\n" is dropped), 1..DTS_CONFIG_SECRET_SIZE-1 bytes, no NUL.
 * Returns 0, -errno when it cannot be read, or -EINVAL for bad content; why says which.
 */
static int read_secret_file(const char *path, char *out, char *why, size_t whylen)
{
	char shown[SHOW_MAX + 4];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int e = errno;
		errf(why, whylen, "cannot open '%s': %s", show(path, shown), strerror(e));
		return -e;
	}
	int rc = 0;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		errf(why, whylen, "cannot stat '%s': %s", show(path, shown), strerror(-rc));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		errf(why, whylen, "'%s' is not a regular file", show(path, shown));
		goto out_close;
	}
	char buf[DTS_CONFIG_SECRET_SIZE + 2]; /* room to see that it is too long, even with "\r\n" */
	size_t len = 0;
	while (len < sizeof(buf)) {
		ssize_t r = read(fd, buf + len, sizeof(buf) - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			errf(why, whylen, "cannot read '%s': %s", show(path, shown), strerror(-rc));
			goto out_close;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0) {
		rc = -EINVAL;
		errf(why, whylen, "'%s' is empty", show(path, shown));
		goto out_close;
	}
	if (len > DTS_CONFIG_SECRET_SIZE - 1) {
		rc = -EINVAL;
		errf(why, whylen, "'%s' holds more than %d bytes", show(path, shown), DTS_CONFIG_SECRET_SIZE - 1);
		goto out_close;
	}
	if (memchr(buf, '\0', len) || memchr(buf, '\n', len) || memchr(buf, '\r', len)) {
		rc = -EINVAL;
		errf(why, whylen, "'%s' must hold the secret on one line, without NUL bytes", show(path, shown));
		goto out_close;
	}
	memcpy(out, buf, len);
	out[len] = '\0';
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		dts_warn("config", "secret_file '%s' is accessible to group or others (mode %04o); chmod 600 it",
			 show(path, shown), (unsigned)(st.st_mode & 07777));
out_close:
	close(fd);
	return rc;
}

/*
 * Parse v for key k and store it in c. Returns 0, or a negative errno with why set to a reason without the key
 * name ("must be an integer between 1 and 63, got 'abc'"). On error c is unchanged.
 */
static int set_value(struct dts_config *c, const struct key *k, const char *v, char *why, size_t whylen)
{
	char shown[SHOW_MAX + 4];
	char *field = (char *)c + k->off;
	int64_t n;
	bool b;

	switch (k->kind) {
	case K_PATH:
		if (!k->empty_ok && !*v) {
			errf(why, whylen, "must not be empty");
			return -EINVAL;
		}
		if (strlen(v) >= k->size) {
			errf(why, whylen, "must be at most %zu bytes, got %zu", k->size - 1, strlen(v));
			return -EINVAL;
		}
		if (has_control(v)) {
			errf(why, whylen, "must not contain control characters, got '%s'", show(v, shown));
			return -EINVAL;
		}
		strcpy(field, v);
		return 0;

	case K_BIND: {
		unsigned char addr[16];
		if (strlen(v) >= k->size ||
		    (inet_pton(AF_INET, v, addr) != 1 && inet_pton(AF_INET6, v, addr) != 1)) {
			errf(why, whylen, "must be an IPv4 or IPv6 address literal (like 127.0.0.1, 0.0.0.0 or ::1), got '%s'",
			     show(v, shown));
			return -EINVAL;
		}
		strcpy(field, v);
		return 0;
	}

	case K_NAME: {
		size_t len = strlen(v);
		bool ok = len >= 1 && len < k->size;
		for (size_t i = 0; ok && i < len; i++)
			ok = name_char(v[i]);
		if (!ok) {
			errf(why, whylen, "must be 1 to %zu characters of A-Z a-z 0-9 @ . _ + -, got '%s'", k->size - 1,
			     show(v, shown));
			return -EINVAL;
		}
		strcpy(field, v);
		return 0;
	}

	case K_U16:
	case K_UINT:
	case K_I64:
		if (!parse_i64(v, &n) || n < k->min || n > k->max) {
			errf(why, whylen, "must be an integer between %lld and %lld, got '%s'", (long long)k->min,
			     (long long)k->max, show(v, shown));
			return -EINVAL;
		}
		/* The table's field size must match its kind: the store goes through the offset. */
		if (k->kind == K_U16) {
			assert(k->size == sizeof(uint16_t));
			*(uint16_t *)(void *)field = (uint16_t)n;
		} else if (k->kind == K_UINT) {
			assert(k->size == sizeof(unsigned));
			*(unsigned *)(void *)field = (unsigned)n;
		} else {
			assert(k->size == sizeof(int64_t));
			*(int64_t *)(void *)field = n;
		}
		return 0;

	case K_BYTES:
		if (!parse_bytes(v, k->max, &n) || n < k->min) {
			errf(why, whylen, "must be a byte count between %lld and %lld (K, M, G suffixes allowed), got '%s'",
			     (long long)k->min, (long long)k->max, show(v, shown));
			return -EINVAL;
		}
		assert(k->size == sizeof(unsigned));
		*(unsigned *)(void *)field = (unsigned)n;
		return 0;

	case K_BOOL:
		if (!parse_bool(v, &b)) {
			errf(why, whylen, "must be true/false, yes/no, on/off or 1/0, got '%s'", show(v, shown));
			return -EINVAL;
		}
		assert(k->size == sizeof(bool));
		*(bool *)(void *)field = b;
		return 0;

	case K_SEP:
		/* The process is split off the *normalised* name, and normalisation keeps only [A-Za-z0-9_.-]: of the
		 * non-alphanumeric characters only '.', '_' and '-' can ever be found there (docs/protocols.md). */
		if (strlen(v) != 1 || !strchr("._-", v[0])) {
			errf(why, whylen, "must be one of '.', '_' or '-' (the only separators left after name "
					  "normalisation), got '%s'",
			     show(v, shown));
			return -EINVAL;
		}
		*field = v[0];
		return 0;

	case K_SECRET:
		/* Never echo a secret back, not even in an error. */
		if (strlen(v) >= k->size) {
			errf(why, whylen, "must be at most %zu bytes, got %zu", k->size - 1, strlen(v));
			return -EINVAL;
		}
		strcpy(c->secret, v);
		c->secret_file[0] = '\0';
		return 0;

	case K_SECRET_FILE: {
		char secret[DTS_CONFIG_SECRET_SIZE];
		if (!*v) {
			errf(why, whylen, "must not be empty (to turn the secret off, set secret = \"\")");
			return -EINVAL;
		}
		if (strlen(v) >= k->size) {
			errf(why, whylen, "must be at most %zu bytes, got %zu", k->size - 1, strlen(v));
			return -EINVAL;
		}
		int rc = read_secret_file(v, secret, why, whylen);
		if (rc < 0)
			return rc;
		strcpy(c->secret, secret);
		strcpy(c->secret_file, v);
		explicit_bzero(secret, sizeof(secret));
		return 0;
	}

	case K_IO:
		if (strcmp(v, "socket") != 0 && strcmp(v, "dpdk") != 0) {
			errf(why, whylen, "must be socket or dpdk, got '%s'", show(v, shown));
			return -EINVAL;
		}
		strcpy(field, v);
		return 0;

	case K_EAL:
	case K_DPDK: {
		struct dts_dpdk_cfg scratch;
		const char *argv[DTS_DPDK_MAX_EAL_ARGS];
		char words[DTS_CONFIG_EAL_SIZE];

		if (strlen(v) >= k->size) {
			errf(why, whylen, "must be at most %zu bytes, got %zu", k->size - 1, strlen(v));
			return -EINVAL;
		}
		if (has_control(v)) {
			errf(why, whylen, "must not contain control characters, got '%s'", show(v, shown));
			return -EINVAL;
		}
		if (k->kind == K_EAL && dts_dpdk_eal_split(v, words, sizeof(words), argv, DTS_DPDK_MAX_EAL_ARGS) < 0) {
			errf(why, whylen, "at most %d arguments", DTS_DPDK_MAX_EAL_ARGS);
			return -EINVAL;
		}
		/* The DPDK module owns the meaning and ranges of its settings: ask it (the message names the range). */
		dts_dpdk_cfg_defaults(&scratch);
		if (k->kind == K_DPDK && *v && dts_dpdk_cfg_set(&scratch, k->name + 5, v, why, whylen) != 0)
			return -EINVAL;
		strcpy(field, v);
		return 0;
	}

	case K_NETS: {
		struct dts_netacl acl;

		if (strlen(v) >= k->size) {
			errf(why, whylen, "must be at most %zu bytes, got %zu", k->size - 1, strlen(v));
			return -EINVAL;
		}
		if (dts_netacl_parse(v, &acl, why, whylen) != 0)
			return -EINVAL;
		strcpy(field, v);
		return 0;
	}

	case K_HOST:
	case K_GRAPHITE_PATH: {
		size_t len = strlen(v);
		bool ok = len < k->size && (*v || k->empty_ok);

		for (size_t i = 0; ok && i < len; i++) {
			char ch = v[i];
			bool word = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
				    ch == '_' || ch == '-';

			ok = k->kind == K_HOST ? word || ch == '.' || ch == ':'
					       : word || (ch == '.' && i > 0 && i + 1 < len && v[i + 1] != '.');
		}
		if (!ok) {
			if (k->kind == K_HOST)
				errf(why, whylen, "must be a host name or an IP address (A-Z a-z 0-9 . - _ :), at most %zu "
						  "bytes, got '%s'", k->size - 1, show(v, shown));
			else
				errf(why, whylen, "must be path nodes of A-Z a-z 0-9 _ - separated by single '.', at most "
						  "%zu bytes, got '%s'", k->size - 1, show(v, shown));
			return -EINVAL;
		}
		strcpy(field, v);
		return 0;
	}

	case K_CREDENTIAL:
		/* Like the secret: never echo it back, not even in an error. */
		if (strlen(v) >= k->size) {
			errf(why, whylen, "must be at most %zu bytes, got %zu", k->size - 1, strlen(v));
			return -EINVAL;
		}
		if (has_control(v)) {
			errf(why, whylen, "must not contain control characters");
			return -EINVAL;
		}
		strcpy(field, v);
		return 0;

	case K_LOG_LEVEL: {
		int level = dts_log_parse_level(v);
		if (level < 0) {
			errf(why, whylen, "must be error, warn, info or debug, got '%s'", show(v, shown));
			return -EINVAL;
		}
		c->log_level = level;
		return 0;
	}
	}
	errf(why, whylen, "internal error: unhandled key kind"); /* defensive: every kind is handled above */
	return -EINVAL;
}

/* ---- config file ---------------------------------------------------------------------------------------------- */

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * Split one line (NUL-terminated, no newline) in place into key and value. Returns 1 with *key and *value set, 0 for
 * a blank or comment line, or -EINVAL with why set.
 */
static int split_line(char *line, char **key, char **value, char *why, size_t whylen)
{
	char *p = line;
	while (is_blank(*p))
		p++;
	if (*p == '\0' || *p == '#')
		return 0;

	*key = p;
	while (*p && !is_blank(*p) && *p != '=')
		p++;
	char *key_end = p;
	while (is_blank(*p))
		p++;
	if (*p != '=') {
		char shown[SHOW_MAX + 4];
		errf(why, whylen, "expected 'key = value', got '%s'", show(line, shown));
		return -EINVAL;
	}
	*key_end = '\0';
	if (**key == '\0') {
		errf(why, whylen, "missing key before '='");
		return -EINVAL;
	}
	p++;
	while (is_blank(*p))
		p++;

	if (*p == '"' || *p == '\'') {
		char quote = *p++;
		char *close = strchr(p, quote);
		if (!close) {
			errf(why, whylen, "%s: missing closing %c", *key, quote);
			return -EINVAL;
		}
		*close = '\0';
		*value = p;
		for (p = close + 1; is_blank(*p); p++)
			;
		if (*p != '\0' && *p != '#') {
			errf(why, whylen, "%s: unexpected text after the closing quote", *key);
			return -EINVAL;
		}
		return 1;
	}

	/* Unquoted: up to a '#' that follows whitespace, then trailing whitespace trimmed. */
	*value = p;
	char *end = p;
	for (; *p; p++) {
		if (*p == '#' && is_blank(p[-1]))
			break; /* p[-1] exists: at least the '=' precedes; "key = # note" is an empty value */
		if (!is_blank(*p))
			end = p + 1;
	}
	*end = '\0';
	return 1;
}

int dts_config_load_file(struct dts_config *c, const char *path, char *err, size_t errlen)
{
	char shown[SHOW_MAX + 4];
	FILE *f = fopen(path, "re");
	if (!f) {
		int e = errno;
		errf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}

	struct dts_config tmp = *c;
	char line[LINE_MAX_BYTES + 2];
	char why[384];
	unsigned lineno = 0;
	int rc = 0;

	errno = 0; /* so a read error below reports its own errno, not a stale one */
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		size_t len = strlen(line);
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		else if (!feof(f)) {
			errf(err, errlen, "%s:%u: line longer than %d bytes", path, lineno, LINE_MAX_BYTES);
			rc = -EINVAL;
			goto out_close;
		}
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if (strlen(line) != len) {
			errf(err, errlen, "%s:%u: NUL byte in line", path, lineno);
			rc = -EINVAL;
			goto out_close;
		}
		char *text = line;
		if (lineno == 1 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
			text += 3; /* UTF-8 byte order mark from some editors */

		char *key, *value;
		int r = split_line(text, &key, &value, why, sizeof(why));
		if (r == 0)
			continue;
		if (r < 0) {
			errf(err, errlen, "%s:%u: %s", path, lineno, why);
			rc = r;
			goto out_close;
		}
		const struct key *k = find_key(key);
		if (!k) {
			const char *hint = suggest_key(key);
			if (hint)
				errf(err, errlen, "%s:%u: unknown key '%s' (did you mean '%s'?)", path, lineno,
				     show(key, shown), hint);
			else
				errf(err, errlen, "%s:%u: unknown key '%s'", path, lineno, show(key, shown));
			rc = -EINVAL;
			goto out_close;
		}
		r = set_value(&tmp, k, value, why, sizeof(why));
		if (r < 0) {
			errf(err, errlen, "%s:%u: %s: %s", path, lineno, k->name, why);
			rc = r;
			goto out_close;
		}
	}
	if (ferror(f)) {
		int e = errno ? errno : EIO;
		errf(err, errlen, "%s: read error: %s", path, strerror(e));
		rc = -e;
		goto out_close;
	}
	*c = tmp;
out_close:
	explicit_bzero(&tmp, sizeof(tmp)); /* it may hold the secret */
	explicit_bzero(line, sizeof(line));
	fclose(f);
	return rc;
}

/* ---- command line --------------------------------------------------------------------------------------------- */

enum flag_what { FLAG_KEY, FLAG_NO_KEY, FLAG_CONFIG, FLAG_HELP, FLAG_VERSION };

struct flag_hit {
	enum flag_what what;
	const struct key *k; /* FLAG_KEY, FLAG_NO_KEY */
	const char *value; /* the value (inline after '=' or the next argument), NULL when none */
	const char *arg; /* the argument as given, for messages */
};

/* True when the flag name (len bytes, dashes) spells key (underscores). */
static bool flag_is(const char *name, size_t len, const char *key)
{
	if (strlen(key) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		char want = key[i] == '_' ? '-' : key[i];
		if (name[i] != want)
			return false;
	}
	return true;
}

/* The closest flag to name (without its "--") within edit distance 2, written to out as "--flag"; false if none. */
static bool suggest_flag(const char *name, char out[64])
{
	static const char *const meta[] = { "config", "help", "version" };
	unsigned best_d = 3;
	for (size_t i = 0; i < NKEYS + 3; i++) {
		const char *key = i < NKEYS ? keys[i].name : meta[i - NKEYS];
		for (int neg = 0; neg < 2; neg++) {
			if (neg && (i >= NKEYS || keys[i].kind != K_BOOL))
				continue;
			char cand[64]; /* "--" ["no-"] name: key names are short, flag_name() bounds them anyway */
			flag_name(key, cand);
			if (neg) {
				memmove(cand + 5, cand + 2, strnlen(cand + 2, 58) + 1);
				memcpy(cand + 2, "no-", 3);
				cand[63] = '\0';
			}
			unsigned d = edit_distance(name, cand + 2);
			if (d < best_d) {
				best_d = d;
				memcpy(out, cand, sizeof(cand));
			}
		}
	}
	return best_d < 3;
}

/*
 * Read the flag at argv[*i] (and its separate value, if it takes one) into hit; advance *i past them.
 * Returns 0 or -EINVAL with err set.
 */
static int next_flag(int argc, char **argv, int *i, struct flag_hit *hit, char *err, size_t errlen)
{
	char shown[SHOW_MAX + 4];
	const char *arg = argv[(*i)++];
	*hit = (struct flag_hit){ .arg = arg };

	if (strcmp(arg, "-h") == 0)
		return hit->what = FLAG_HELP, 0;
	if (strcmp(arg, "-V") == 0)
		return hit->what = FLAG_VERSION, 0;
	if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
		errf(err, errlen, "unexpected argument '%s' (settings are flags like --workers=4; see --help)",
		     show(arg, shown));
		return -EINVAL;
	}
	const char *name = arg + 2;
	const char *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);
	hit->value = eq ? eq + 1 : NULL;

	bool takes_value = true;
	if (flag_is(name, len, "config")) {
		hit->what = FLAG_CONFIG;
	} else if (flag_is(name, len, "help")) {
		hit->what = FLAG_HELP;
		takes_value = false;
	} else if (flag_is(name, len, "version")) {
		hit->what = FLAG_VERSION;
		takes_value = false;
	} else {
		for (size_t k = 0; k < NKEYS && !hit->k; k++) {
			if (flag_is(name, len, keys[k].name)) {
				hit->what = FLAG_KEY;
				hit->k = &keys[k];
				takes_value = keys[k].kind != K_BOOL; /* --cpu-pin alone means true; =BOOL is optional */
			} else if (keys[k].kind == K_BOOL && len > 3 && strncmp(name, "no-", 3) == 0 &&
				   flag_is(name + 3, len - 3, keys[k].name)) {
				hit->what = FLAG_NO_KEY;
				hit->k = &keys[k];
				takes_value = false;
			}
		}
		if (!hit->k) {
			char bare[64], hint[64];
			snprintf(bare, sizeof(bare), "%.*s", (int)(len < 63 ? len : 63), name);
			if (suggest_flag(bare, hint))
				errf(err, errlen, "unknown flag '--%s' (did you mean '%s'?)", show(bare, shown), hint);
			else
				errf(err, errlen, "unknown flag '--%s' (see --help)", show(bare, shown));
			return -EINVAL;
		}
	}

	bool optional_value = hit->what == FLAG_KEY && hit->k->kind == K_BOOL;
	if (!takes_value && hit->value && !optional_value) {
		errf(err, errlen, "%.*s: takes no value", (int)(len + 2), arg);
		return -EINVAL;
	}
	if (takes_value && !hit->value) {
		if (*i >= argc) {
			errf(err, errlen, "%s: needs a value", arg);
			return -EINVAL;
		}
		hit->value = argv[(*i)++];
	}
	return 0;
}

int dts_config_parse_args(struct dts_config *c, int argc, char **argv, char *err, size_t errlen)
{
	struct flag_hit hit;
	const char *config_path = NULL;
	bool help = false, version = false;
	char why[384], label[64];
	int rc;

	/* Pass 1: syntax of every flag, and the ones that act before any setting (--help, --version, --config). */
	for (int i = 1; i < argc;) {
		rc = next_flag(argc, argv, &i, &hit, err, errlen);
		if (rc < 0)
			return rc;
		if (hit.what == FLAG_HELP)
			help = true;
		else if (hit.what == FLAG_VERSION)
			version = true;
		else if (hit.what == FLAG_CONFIG) {
			if (config_path) {
				errf(err, errlen, "--config: given more than once");
				return -EINVAL;
			}
			config_path = hit.value;
		}
	}
	if (help) {
		dts_config_usage(stdout);
		return DTS_CONFIG_EXIT;
	}
	if (version) {
		printf("dattssd %s\n", DTS_VERSION);
		return DTS_CONFIG_EXIT;
	}

	struct dts_config tmp = *c;
	if (config_path) {
		if (!*config_path || strlen(config_path) >= sizeof(tmp.config_file)) {
			errf(err, errlen, "--config: must be a path of 1 to %zu bytes", sizeof(tmp.config_file) - 1);
			rc = -EINVAL;
			goto out;
		}
		rc = dts_config_load_file(&tmp, config_path, err, errlen);
		if (rc < 0)
			goto out;
		strcpy(tmp.config_file, config_path);
	}

	/* The environment: DATTSSD_SECRET, when set and not empty. */
	const char *env = getenv(DTS_CONFIG_SECRET_ENV);
	if (env && *env) {
		rc = set_value(&tmp, find_key("secret"), env, why, sizeof(why));
		if (rc < 0) {
			errf(err, errlen, "%s: %s", DTS_CONFIG_SECRET_ENV, why);
			goto out;
		}
	}

	/* Pass 2: every setting flag, in argv order (a flag given twice: the later wins). */
	for (int i = 1; i < argc;) {
		rc = next_flag(argc, argv, &i, &hit, err, errlen);
		if (rc < 0)
			goto out; /* defensive: pass 1 accepted the same argv */
		if (hit.what == FLAG_KEY) {
			rc = set_value(&tmp, hit.k, hit.value ? hit.value : "true", why, sizeof(why));
		} else if (hit.what == FLAG_NO_KEY) {
			rc = set_value(&tmp, hit.k, "false", why, sizeof(why));
		} else {
			continue;
		}
		if (rc < 0) {
			errf(err, errlen, "%s: %s", flag_name(hit.k->name, label), why);
			goto out;
		}
	}

	rc = dts_config_check(&tmp, err, errlen);
	if (rc < 0)
		goto out;
	*c = tmp;
out:
	explicit_bzero(&tmp, sizeof(tmp));
	return rc;
}

int dts_config_check(const struct dts_config *c, char *err, size_t errlen)
{
	if (strcmp(c->io, "dpdk") == 0 && (!c->dpdk_eal[0] || !c->dpdk_queues[0])) {
		errf(err, errlen, "io = dpdk needs dpdk_eal (EAL arguments) and dpdk_queues (receive queues); see docs/dpdk.md");
		return -EINVAL;
	}
	if (c->table_capacity & (c->table_capacity - 1)) {
		errf(err, errlen, "table_capacity: must be a power of two (1024, 2048, ... 16777216), got %u",
		     c->table_capacity);
		return -EINVAL;
	}
	if (c->table_capacity_max & (c->table_capacity_max - 1)) {
		errf(err, errlen, "table_capacity_max: must be 0 or a power of two (up to 16777216), got %u",
		     c->table_capacity_max);
		return -EINVAL;
	}
	if (c->series_reserve > c->max_series) {
		errf(err, errlen, "series_reserve: must be at most max_series (%u), got %u", c->max_series,
		     c->series_reserve);
		return -EINVAL;
	}
	if (c->checkpoint_ms != 0 && c->checkpoint_ms < 1000) {
		errf(err, errlen, "checkpoint_ms: must be 0 (off) or between 1000 and 60000, got %u", c->checkpoint_ms);
		return -EINVAL;
	}
	if (strchr(c->default_process, c->process_sep)) {
		errf(err, errlen, "default_process: '%s' contains process_sep '%c'; choose another name or separator",
		     c->default_process, c->process_sep);
		return -EINVAL;
	}
	if (c->statsd_allow[0] && strcmp(c->io, "dpdk") == 0) {
		errf(err, errlen, "statsd_allow: not supported with io = dpdk (the DPDK receive path has no source "
			 "check yet); filter upstream or use io = socket");
		return -EINVAL;
	}
	{
		struct dts_notify_cfg nc; /* the alert channels: URL schemes and what each one needs (notify.c) */

		dts_notify_cfg_from_config(&nc, c);
		if (dts_notify_cfg_check(&nc, err, errlen) != 0)
			return -EINVAL;
	}
	if (c->statsd_port != 0 && c->statsd_port == c->http_port) {
		errf(err, errlen, "http_port: must differ from statsd_port (both %u; statsd listens on TCP too)",
		     (unsigned)c->http_port);
		return -EINVAL;
	}
	return 0;
}

/* ---- help and dump -------------------------------------------------------------------------------------------- */

/* A setting's value in config-file syntax (strings quoted). Not for the secret. */
static void format_value(const struct key *k, const struct dts_config *c, char *out, size_t size)
{
	const char *field = (const char *)c + k->off;
	switch (k->kind) {
	case K_PATH:
	case K_BIND:
	case K_NAME:
	case K_SECRET_FILE:
	case K_IO:
	case K_EAL:
	case K_DPDK:
	case K_NETS:
	case K_HOST:
	case K_GRAPHITE_PATH:
		/* Quote with whichever quote the value does not contain (there are no escapes). */
		snprintf(out, size, strchr(field, '"') ? "'%s'" : "\"%s\"", field);
		return;
	case K_U16:
		snprintf(out, size, "%u", (unsigned)*(const uint16_t *)(const void *)field);
		return;
	case K_UINT:
	case K_BYTES:
		snprintf(out, size, "%u", *(const unsigned *)(const void *)field);
		return;
	case K_I64:
		snprintf(out, size, "%lld", (long long)*(const int64_t *)(const void *)field);
		return;
	case K_BOOL:
		snprintf(out, size, "%s", *(const bool *)(const void *)field ? "true" : "false");
		return;
	case K_SEP:
		snprintf(out, size, *field == '"' ? "'%c'" : "\"%c\"", *field);
		return;
	case K_LOG_LEVEL:
		snprintf(out, size, "%s", dts_log_level_name(c->log_level));
		return;
	case K_SECRET:
		snprintf(out, size, "%s", c->secret[0] ? "(redacted)" : "\"\"");
		return;
	case K_CREDENTIAL:
		snprintf(out, size, "%s", field[0] ? "(redacted)" : "\"\"");
		return;
	}
}

void dts_config_usage(FILE *out)
{
	struct dts_config d;
	dts_config_defaults(&d);

	fprintf(out, "Usage: dattssd [OPTION]...\n"
		     "DaTtSs realtime statistics aggregation daemon.\n"
		     "\n"
		     "Every option is also a config-file key (the same name with '_' for '-'). Use --key=VALUE or\n"
		     "--key VALUE; booleans as --key, --no-key or --key=true|false. Defaults in brackets.\n"
		     "\n");
	fprintf(out, "  %-28s %s\n", "--config FILE", "read settings from FILE first (flags still override it)");
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		char flag[64], left[140], def[DTS_CONFIG_PATH_SIZE + 8];
		flag_name(k->name, flag);
		if (k->kind == K_BOOL)
			snprintf(left, sizeof(left), "%s, --no-%s", flag, flag + 2);
		else
			snprintf(left, sizeof(left), "%s %s", flag, k->metavar);
		if (k->kind == K_SECRET_FILE)
			snprintf(def, sizeof(def), "none");
		else
			format_value(k, &d, def, sizeof(def));
		/* dpdk_* values are text that dpdk_config parses: their help gives the default it applies, if any */
		if (k->kind == K_DPDK)
			def[0] = '\0';
		if (strlen(left) > 28)
			fprintf(out, "  %s\n  %-28s %s%s%s%s\n", left, "", k->help, def[0] ? " [" : "", def, def[0] ? "]" : "");
		else
			fprintf(out, "  %-28s %s%s%s%s\n", left, k->help, def[0] ? " [" : "", def, def[0] ? "]" : "");
	}
	fprintf(out, "  %-28s %s\n", "-h, --help", "print this help and exit");
	fprintf(out, "  %-28s %s\n", "-V, --version", "print the version and exit");
	fprintf(out, "\n"
		     "Precedence, later wins: defaults < config file < $%s (the secret) < flags.\n"
		     "Documentation: docs/configuration.md; example file: etc/dattssd.conf.\n",
		DTS_CONFIG_SECRET_ENV);
}

int dts_config_dump(const struct dts_config *c, FILE *out)
{
	fprintf(out, "# dattssd configuration\n");
	if (c->config_file[0])
		fprintf(out, "# config file: %s\n", c->config_file);
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		char value[DTS_CONFIG_PATH_SIZE + 8];
		if (k->kind == K_SECRET) {
			if (c->secret[0])
				fprintf(out, "# secret: set, %zu byte%s, redacted%s\n", strlen(c->secret),
					strlen(c->secret) == 1 ? "" : "s", c->secret_file[0] ? " (from secret_file)" : "");
			else
				fprintf(out, "# secret: not set (DaTtSs UDP lines are rejected)\n");
			continue;
		}
		if (k->kind == K_SECRET_FILE && !c->secret_file[0])
			continue;
		if (k->kind == K_CREDENTIAL) {
			const char *field = (const char *)c + k->off;

			if (field[0])
				fprintf(out, "# %s: set, %zu byte%s, redacted\n", k->name, strlen(field),
					strlen(field) == 1 ? "" : "s");
			else
				fprintf(out, "%s = \"\"\n", k->name);
			continue;
		}
		format_value(k, c, value, sizeof(value));
		fprintf(out, "%s = %s\n", k->name, value);
	}
	fflush(out);
	return ferror(out) ? -EIO : 0;
}
