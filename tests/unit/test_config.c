/*
 * test_config.c - unit tests for server/config.c (settings from file, environment and flags) and server/log.c.
 *
 * Table-driven: every key is tried with good and bad values through a config file and through both flag forms.
 * A good value is checked through dts_config_dump() (so the dump is tested too) and, for a few keys, the struct field;
 * a bad value must fail with -EINVAL, an error that names the place and the key, and an untouched struct.
 * Each test gets its own mkdtemp() directory, emptied and removed by the fixture.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* ---- fixture: one temp directory per test ---------------------------------------------------------------------- */

static char tmpdir[64];
static char made[16][160]; /* files created in tmpdir, removed by teardown */
static int nmade;

static void setup(void)
{
	strcpy(tmpdir, "/tmp/dts_test_config.XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
	nmade = 0;
	unsetenv(DTS_CONFIG_SECRET_ENV); /* the tests' own environment must not leak into precedence */
}

static void teardown(void)
{
	for (int i = 0; i < nmade; i++)
		unlink(made[i]);
	cr_expect_eq(rmdir(tmpdir), 0, "rmdir %s: %s", tmpdir, strerror(errno));
}

TestSuite(config, .init = setup, .fini = teardown);
TestSuite(log);

/* Write content to tmpdir/name (mode 0600) and return its path (valid for the test). */
static const char *write_file(const char *name, const char *content, size_t len)
{
	char path_buf[sizeof(made[0])];
	snprintf(path_buf, sizeof(path_buf), "%s/%s", tmpdir, name);
	char *path = NULL;
	for (int i = 0; i < nmade && !path; i++)
		if (strcmp(made[i], path_buf) == 0)
			path = made[i]; /* rewritten: already tracked */
	if (!path) {
		cr_assert_lt(nmade, 16);
		path = strcpy(made[nmade++], path_buf);
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, content, len), (ssize_t)len);
	close(fd);
	return path;
}

static const char *write_conf(const char *content)
{
	return write_file("dattssd.conf", content, strlen(content));
}

static int load_text(struct dts_config *c, const char *content, char *err, size_t errlen)
{
	return dts_config_load_file(c, write_conf(content), err, errlen);
}

/* dts_config_parse_args with argv = { "dattssd", args..., NULL } */
#define ARGS(...) ((const char *[]){ __VA_ARGS__, NULL })
static int parse(struct dts_config *c, char *err, size_t errlen, const char *const *args)
{
	char *argv[32] = { "dattssd" };
	int argc = 1;
	for (; args[argc - 1]; argc++) {
		cr_assert_lt(argc, 31);
		argv[argc] = (char *)args[argc - 1];
	}
	argv[argc] = NULL;
	return dts_config_parse_args(c, argc, argv, err, errlen);
}

/* The dump as a string; caller frees. */
static char *dump_str(const struct dts_config *c)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	cr_assert_not_null(f);
	cr_assert_eq(dts_config_dump(c, f), 0);
	fclose(f);
	return buf;
}

/* True when the dump of c has line (without newline) as one whole line. */
static bool dump_has_line(const struct dts_config *c, const char *line)
{
	char *d = dump_str(c);
	char *found = NULL;
	size_t len = strlen(line);
	for (char *p = d; (p = strstr(p, line)); p++)
		if ((p == d || p[-1] == '\n') && p[len] == '\n') {
			found = p;
			break;
		}
	free(d);
	return found != NULL;
}

static bool same_config(const struct dts_config *a, const struct dts_config *b)
{
	char *da = dump_str(a), *db = dump_str(b);
	bool same = strcmp(da, db) == 0 && strcmp(a->secret, b->secret) == 0;
	free(da);
	free(db);
	return same;
}

/* A string of n copies of ch (n < 512), static per call site use. */
static const char *rep(char *buf, char ch, size_t n)
{
	memset(buf, ch, n);
	buf[n] = '\0';
	return buf;
}

/* ---- every key, good values ------------------------------------------------------------------------------------ */

struct good {
	const char *key;
	const char *value;
	const char *line; /* the line expected in the dump */
};

static char long_sock[108], long_user[65], long_dir[256], long_secret[257];

static const struct good goods[] = {
	{ "data_dir", "/var/lib/dattss", "data_dir = \"/var/lib/dattss\"" },
	{ "data_dir", "rel/dir with space", "data_dir = \"rel/dir with space\"" },
	{ "data_dir", long_dir, NULL },
	{ "bind", "0.0.0.0", "bind = \"0.0.0.0\"" },
	{ "bind", "10.1.2.3", "bind = \"10.1.2.3\"" },
	{ "bind", "::1", "bind = \"::1\"" },
	{ "bind", "::", "bind = \"::\"" },
	{ "bind", "fe80::1:2", "bind = \"fe80::1:2\"" },
	{ "bind", "::ffff:127.0.0.1", "bind = \"::ffff:127.0.0.1\"" },
	{ "statsd_port", "0", "statsd_port = 0" },
	{ "statsd_port", "9125", "statsd_port = 9125" },
	{ "statsd_port", "65535", "statsd_port = 65535" },
	{ "unix_socket", "/run/dattss/statsd.sock", "unix_socket = \"/run/dattss/statsd.sock\"" },
	{ "unix_socket", "", "unix_socket = \"\"" },
	{ "unix_socket", long_sock, NULL },
	{ "http_port", "0", "http_port = 0" },
	{ "http_port", "8081", "http_port = 8081" },
	{ "http_port", "65535", "http_port = 65535" },
	{ "workers", "1", "workers = 1" },
	{ "workers", "7", "workers = 7" },
	{ "workers", "63", "workers = 63" },
	{ "workers", "007", "workers = 7" },
	{ "cpu_pin", "false", "cpu_pin = false" },
	{ "cpu_pin", "no", "cpu_pin = false" },
	{ "cpu_pin", "off", "cpu_pin = false" },
	{ "cpu_pin", "0", "cpu_pin = false" },
	{ "cpu_pin", "OFF", "cpu_pin = false" },
	{ "recv_batch", "1", "recv_batch = 1" },
	{ "recv_batch", "1024", "recv_batch = 1024" },
	{ "recv_coalesce_us", "0", "recv_coalesce_us = 0" },
	{ "recv_coalesce_us", "10000", "recv_coalesce_us = 10000" },
	{ "rcvbuf_bytes", "0", "rcvbuf_bytes = 0" },
	{ "rcvbuf_bytes", "4096", "rcvbuf_bytes = 4096" },
	{ "rcvbuf_bytes", "512k", "rcvbuf_bytes = 524288" },
	{ "rcvbuf_bytes", "16M", "rcvbuf_bytes = 16777216" },
	{ "rcvbuf_bytes", "1G", "rcvbuf_bytes = 1073741824" },
	{ "rcvbuf_bytes", "1073741824", "rcvbuf_bytes = 1073741824" },
	{ "udp_backpressure", "false", "udp_backpressure = false" },
	{ "udp_backpressure", "on", "udp_backpressure = true" },
	{ "tick_ms", "10", "tick_ms = 10" },
	{ "table_capacity", "1024", "table_capacity = 1024" },
	{ "table_capacity", "16777216", "table_capacity = 16777216" },
	{ "table_capacity_max", "0", "table_capacity_max = 0" },
	{ "table_capacity_max", "16777216", "table_capacity_max = 16777216" },
	{ "max_series", "1", "max_series = 1" },
	{ "max_series", "1073741824", "max_series = 1073741824" },
	{ "series_reserve", "0", "series_reserve = 0" },
	{ "series_reserve", "1000000", "series_reserve = 1000000" },
	{ "tick_ms", "60000", "tick_ms = 60000" },
	{ "grace_s", "0", "grace_s = 0" },
	{ "grace_s", "60", "grace_s = 60" },
	{ "max_past_skew_s", "0", "max_past_skew_s = 0" },
	{ "max_past_skew_s", "86400", "max_past_skew_s = 86400" },
	{ "max_future_skew_s", "0", "max_future_skew_s = 0" },
	{ "max_future_skew_s", "60", "max_future_skew_s = 60" },
	{ "user", "alice@example.com", "user = \"alice@example.com\"" },
	{ "user", "u_1+x-y.Z", "user = \"u_1+x-y.Z\"" },
	{ "user", "42", "user = \"42\"" },
	{ "user", long_user, NULL },
	{ "default_process", "api", "default_process = \"api\"" },
	{ "default_process", "my-app_2", "default_process = \"my-app_2\"" },
	{ "split_process", "false", "split_process = false" },
	{ "split_process", "No", "split_process = false" },
	{ "process_sep", "_", "process_sep = \"_\"" },
	{ "retention_minutes_days", "8", "retention_minutes_days = 8" },
	{ "retention_hours_days", "36500", "retention_hours_days = 36500" },
	{ "checkpoint_ms", "0", "checkpoint_ms = 0" },
	{ "checkpoint_ms", "1000", "checkpoint_ms = 1000" },
	{ "io", "socket", "io = \"socket\"" },
	{ "dpdk_queues", "2", "dpdk_queues = \"2\"" },
	{ "dpdk_ipv4", "192.0.2.10", "dpdk_ipv4 = \"192.0.2.10\"" },
	{ "dpdk_eal", "--no-pci --in-memory -l 0-1", "dpdk_eal = \"--no-pci --in-memory -l 0-1\"" },
	{ "process_sep", "-", "process_sep = \"-\"" },
	{ "process_sep", ".", "process_sep = \".\"" },
	{ "log_level", "error", "log_level = error" },
	{ "log_level", "warn", "log_level = warn" },
	{ "log_level", "warning", "log_level = warn" },
	{ "log_level", "DEBUG", "log_level = debug" },
	{ "log_level", "info", "log_level = info" },
	{ "secret", "s3cr3t", "# secret: set, 6 bytes, redacted" },
	{ "secret", "with space and #hash", "# secret: set, 20 bytes, redacted" },
	{ "secret", long_secret, "# secret: set, 256 bytes, redacted" },
	{ "secret", "", "# secret: not set (DaTtSs UDP lines are rejected)" },
	{ "graphite_host", "carbon.example.com", "graphite_host = \"carbon.example.com\"" },
	{ "graphite_host", "10.0.0.5", "graphite_host = \"10.0.0.5\"" },
	{ "graphite_host", "fd00::2", "graphite_host = \"fd00::2\"" },
	{ "graphite_host", "", "graphite_host = \"\"" },
	{ "graphite_port", "1", "graphite_port = 1" },
	{ "graphite_port", "2004", "graphite_port = 2004" },
	{ "graphite_prefix", "stats.dattss", "graphite_prefix = \"stats.dattss\"" },
	{ "graphite_prefix", "my-app_1", "graphite_prefix = \"my-app_1\"" },
	{ "graphite_prefix", "", "graphite_prefix = \"\"" },
};

static void init_long_values(void)
{
	rep(long_sock, 's', sizeof(long_sock) - 1);
	long_sock[0] = '/';
	rep(long_user, 'u', sizeof(long_user) - 1);
	rep(long_dir, 'd', sizeof(long_dir) - 1);
	rep(long_secret, 'k', sizeof(long_secret) - 1);
}

/* The dump line expected for a good row (rows with long values compute it). */
static const char *expected_line(const struct good *g, char *buf, size_t size)
{
	if (g->line)
		return g->line;
	snprintf(buf, size, "%s = \"%s\"", g->key, g->value);
	return buf;
}

static void flag_of(const char *key, char *out)
{
	strcpy(out, "--");
	for (size_t i = 0; key[i]; i++)
		out[i + 2] = key[i] == '_' ? '-' : key[i];
	out[strlen(key) + 2] = '\0';
}

static bool is_bool_key(const char *key)
{
	return strcmp(key, "cpu_pin") == 0 || strcmp(key, "split_process") == 0 || strcmp(key, "udp_backpressure") == 0;
}

/* Can the value be written unquoted in a config file and read back the same? */
static bool unquotable(const char *v)
{
	size_t n = strlen(v);
	return n > 0 && v[0] != ' ' && v[n - 1] != ' ' && v[0] != '"' && v[0] != '\'' && v[0] != '#' &&
	       !strstr(v, " #");
}

Test(config, every_key_good_value_in_file)
{
	init_long_values();
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];
		char text[1024], want[600], err[512] = "";
		for (int quoted = 0; quoted < 2; quoted++) {
			if (!quoted && !unquotable(g->value))
				continue;
			char q = strchr(g->value, '"') ? '\'' : '"';
			if (quoted)
				snprintf(text, sizeof(text), "%s = %c%s%c\n", g->key, q, g->value, q);
			else
				snprintf(text, sizeof(text), "%s = %s\n", g->key, g->value);
			struct dts_config c;
			dts_config_defaults(&c);
			int rc = load_text(&c, text, err, sizeof(err));
			cr_expect_eq(rc, 0, "row %zu: %s (quoted %d): rc %d: %s", i, g->key, quoted, rc, err);
			cr_expect(dump_has_line(&c, expected_line(g, want, sizeof(want))), "row %zu: %s = '%.40s': no '%.60s'",
				  i, g->key, g->value, want);
		}
	}
}

Test(config, every_key_good_value_as_flag_both_forms)
{
	init_long_values();
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];
		char flag[64], eq[700], want[600], err[512] = "";
		flag_of(g->key, flag);
		snprintf(eq, sizeof(eq), "%s=%s", flag, g->value);

		struct dts_config c;
		dts_config_defaults(&c);
		int rc = parse(&c, err, sizeof(err), ARGS(eq));
		cr_expect_eq(rc, 0, "row %zu: %s: rc %d: %s", i, eq, rc, err);
		cr_expect(dump_has_line(&c, expected_line(g, want, sizeof(want))), "row %zu: %.80s: no '%.60s'", i, eq,
			  want);

		if (is_bool_key(g->key))
			continue; /* a boolean's value can only be attached with '=' */
		dts_config_defaults(&c);
		rc = parse(&c, err, sizeof(err), ARGS(flag, g->value));
		cr_expect_eq(rc, 0, "row %zu: %s %s: rc %d: %s", i, flag, g->value, rc, err);
		cr_expect(dump_has_line(&c, expected_line(g, want, sizeof(want))), "row %zu: %s '%.40s': no '%.60s'", i,
			  flag, g->value, want);
	}
}

Test(config, typed_fields)
{
	struct dts_config c;
	char err[256] = "";
	dts_config_defaults(&c);
	int rc = parse(&c, err, sizeof(err),
		       ARGS("--workers=5", "--statsd-port", "9000", "--http-port=0", "--rcvbuf-bytes=2M", "--tick-ms=250",
			    "--grace-s=3", "--max-past-skew-s=30", "--max-future-skew-s=5", "--recv-batch=8",
			    "--process-sep=_", "--no-split-process", "--no-cpu-pin", "--log-level=debug", "--bind=::1",
			    "--user=bob", "--default-process=misc", "--secret=k", "--unix-socket=/tmp/s",
			    "--data-dir=/d"));
	cr_assert_eq(rc, 0, "%s", err);
	cr_expect_eq(c.workers, 5);
	cr_expect_eq(c.statsd_port, 9000);
	cr_expect_eq(c.http_port, 0);
	cr_expect_eq(c.rcvbuf_bytes, 2u << 20);
	cr_expect_eq(c.tick_ms, 250);
	cr_expect_eq(c.grace_s, 3);
	cr_expect_eq(c.max_past_skew_s, 30);
	cr_expect_eq(c.max_future_skew_s, 5);
	cr_expect_eq(c.recv_batch, 8);
	cr_expect_eq(c.process_sep, '_');
	cr_expect_not(c.split_process);
	cr_expect_not(c.cpu_pin);
	cr_expect_eq(c.log_level, DTS_LOG_DEBUG);
	cr_expect_str_eq(c.bind, "::1");
	cr_expect_str_eq(c.user, "bob");
	cr_expect_str_eq(c.default_process, "misc");
	cr_expect_str_eq(c.secret, "k");
	cr_expect_str_eq(c.unix_socket, "/tmp/s");
	cr_expect_str_eq(c.data_dir, "/d");
	cr_expect_str_eq(c.config_file, "");
}

Test(config, defaults_are_documented_values)
{
	struct dts_config c;
	dts_config_defaults(&c);
	cr_expect_str_eq(c.data_dir, "./data");
	cr_expect_str_eq(c.bind, "127.0.0.1");
	cr_expect_eq(c.statsd_port, 8125);
	cr_expect_str_eq(c.unix_socket, "");
	cr_expect_eq(c.http_port, 8080);
	cr_expect_eq(c.workers, 2);
	cr_expect(c.cpu_pin);
	cr_expect_eq(c.recv_batch, 64);
	cr_expect_eq(c.rcvbuf_bytes, 8u << 20);
	cr_expect_eq(c.tick_ms, 1000);
	cr_expect_eq(c.grace_s, 10);
	cr_expect_eq(c.max_past_skew_s, 600);
	cr_expect_eq(c.max_future_skew_s, 60);
	cr_expect_eq(c.table_capacity, 65536);
	cr_expect_eq(c.table_capacity_max, 524288);
	cr_expect_eq(c.max_series, 4194304);
	cr_expect_str_eq(c.user, "default");
	cr_expect_str_eq(c.default_process, "default");
	cr_expect(c.split_process);
	cr_expect_eq(c.process_sep, '.');
	cr_expect_str_eq(c.secret, "");
	cr_expect_str_eq(c.secret_file, "");
	cr_expect_eq(c.log_level, DTS_LOG_INFO);
	cr_expect_str_eq(c.config_file, "");
	cr_expect_eq(dts_config_check(&c, NULL, 0), 0);

	/* No arguments at all: the defaults, checked. */
	struct dts_config p;
	char err[256] = "";
	dts_config_defaults(&p);
	cr_expect_eq(parse(&p, err, sizeof(err), ARGS(NULL)), 0, "%s", err);
	cr_expect(same_config(&c, &p));
}

/* ---- every key, bad values ------------------------------------------------------------------------------------- */

struct bad {
	const char *key;
	const char *value;
	const char *why; /* substring of the error */
};

static char too_long_dir[300], too_long_sock[109], too_long_user[66], too_long_secret[258];

static const struct bad bads[] = {
	{ "data_dir", "", "must not be empty" },
	{ "data_dir", too_long_dir, "at most 255 bytes" },
	{ "data_dir", "a\tb", "control characters" },
	{ "bind", "localhost", "IPv4 or IPv6" },
	{ "bind", "256.1.1.1", "got '256.1.1.1'" },
	{ "bind", "1.2.3", "IPv4 or IPv6" },
	{ "bind", "", "IPv4 or IPv6" },
	{ "bind", "::g", "IPv4 or IPv6" },
	{ "bind", "127.0.0.1:80", "IPv4 or IPv6" },
	{ "bind", "[::1]", "IPv4 or IPv6" },
	{ "statsd_port", "-1", "between 0 and 65535, got '-1'" },
	{ "statsd_port", "65536", "between 0 and 65535" },
	{ "statsd_port", "abc", "got 'abc'" },
	{ "statsd_port", "", "got ''" },
	{ "statsd_port", "8125x", "between 0 and 65535" },
	{ "statsd_port", "0x10", "between 0 and 65535" },
	{ "statsd_port", "+5", "between 0 and 65535" },
	{ "statsd_port", "1.5", "between 0 and 65535" },
	{ "statsd_port", "99999999999999999999999", "between 0 and 65535" },
	{ "unix_socket", too_long_sock, "at most 107 bytes" },
	{ "http_port", "70000", "between 0 and 65535, got '70000'" },
	{ "workers", "0", "between 1 and 63, got '0'" },
	{ "workers", "64", "between 1 and 63" },
	{ "workers", "abc", "must be an integer between 1 and 63, got 'abc'" },
	{ "workers", "2.0", "between 1 and 63" },
	{ "workers", "3 3", "got '3 3'" },
	{ "cpu_pin", "maybe", "true/false" },
	{ "cpu_pin", "", "true/false" },
	{ "cpu_pin", "2", "got '2'" },
	{ "cpu_pin", "tru", "true/false" },
	{ "udp_backpressure", "sometimes", "true/false" },
	{ "recv_batch", "0", "between 1 and 1024" },
	{ "recv_batch", "1025", "between 1 and 1024" },
	{ "recv_coalesce_us", "10001", "between 0 and 10000" },
	{ "recv_coalesce_us", "-1", "between 0 and 10000" },
	{ "rcvbuf_bytes", "-1", "byte count between 0 and 1073741824" },
	{ "rcvbuf_bytes", "-1K", "byte count" }, /* must not reach a shift of a negative number (UBSan) */
	{ "rcvbuf_bytes", "2G", "byte count" },
	{ "rcvbuf_bytes", "1073741825", "byte count" },
	{ "rcvbuf_bytes", "1.5M", "byte count" },
	{ "rcvbuf_bytes", "M", "byte count" },
	{ "rcvbuf_bytes", "8MB", "byte count" },
	{ "rcvbuf_bytes", "", "byte count" },
	{ "tick_ms", "9", "between 10 and 60000" },
	{ "table_capacity", "512", "between 1024 and 16777216" },
	{ "table_capacity", "33554432", "between 1024 and 16777216" },
	{ "table_capacity_max", "33554432", "between 0 and 16777216" },
	{ "max_series", "0", "between 1 and 1073741824" },
	{ "max_series", "1073741825", "between 1 and 1073741824" },
	{ "series_reserve", "-1", "between 0 and 1073741824" },
	{ "tick_ms", "60001", "between 10 and 60000" },
	{ "grace_s", "61", "between 0 and 60" },
	{ "grace_s", "600", "between 0 and 60" },
	{ "grace_s", "-1", "between 0 and 60" },
	{ "max_past_skew_s", "86401", "between 0 and 86400" },
	{ "max_past_skew_s", "-5", "between 0 and 86400" },
	{ "max_future_skew_s", "61", "between 0 and 60" },
	{ "user", "", "1 to 64 characters" },
	{ "user", "a b", "got 'a b'" },
	{ "user", "a/b", "1 to 64 characters" },
	{ "user", "a:b", "1 to 64 characters" },
	{ "user", "\xc3\xbc", "1 to 64 characters" },
	{ "user", too_long_user, "1 to 64 characters" },
	{ "default_process", "", "1 to 64 characters" },
	{ "default_process", "a|b", "1 to 64 characters" },
	{ "split_process", "nope", "true/false" },
	{ "process_sep", "", "must be one of '.', '_' or '-'" },
	{ "process_sep", "/", "must be one of" },
	{ "process_sep", "#", "must be one of" },
	{ "process_sep", "ab", "got 'ab'" },
	{ "retention_minutes_days", "7", "between 8 and 3650" },
	{ "retention_hours_days", "0", "between 1 and 36500" },
	{ "checkpoint_ms", "60001", "between 0 and 60000" },
	{ "io", "netmap", "must be socket or dpdk, got 'netmap'" },
	{ "dpdk_queues", "abc", "queues" },
	{ "dpdk_ipv4", "300.1.2.3", "ipv4" },
	{ "dpdk_mac", "zz:00:00:00:00:01", "mac" },
	{ "process_sep", "a", "must be one of" },
	{ "process_sep", "Z", "must be one of" },
	{ "process_sep", "5", "must be one of" },
	{ "process_sep", ":", "must be one of" },
	{ "process_sep", "|", "must be one of" },
	{ "process_sep", " ", "must be one of" },
	{ "process_sep", "\xc3\xa9", "must be one of" },
	{ "log_level", "verbose", "error, warn, info or debug, got 'verbose'" },
	{ "log_level", "", "error, warn, info or debug" },
	{ "log_level", "3", "error, warn, info or debug" },
	{ "secret", too_long_secret, "at most 256 bytes, got 257" },
	{ "secret_file", "", "must not be empty" },
	{ "secret_file", "/nonexistent/dattss/secret", "cannot open '/nonexistent/dattss/secret'" },
	{ "graphite_host", "carbon host", "host name or an IP address" },
	{ "graphite_host", "http://carbon", "got 'http://carbon'" },
	{ "graphite_port", "0", "between 1 and 65535" },
	{ "graphite_port", "65536", "between 1 and 65535" },
	{ "graphite_prefix", ".dattss", "separated by single '.'" },
	{ "graphite_prefix", "a..b", "separated by single '.'" },
	{ "graphite_prefix", "dattss.", "separated by single '.'" },
	{ "graphite_prefix", "a b", "got 'a b'" },
	{ "graphite_prefix", "a;b=c", "separated by single '.'" },
};

static void init_too_long_values(void)
{
	rep(too_long_dir, 'd', sizeof(too_long_dir) - 1);
	rep(too_long_sock, 's', sizeof(too_long_sock) - 1);
	rep(too_long_user, 'u', sizeof(too_long_user) - 1);
	rep(too_long_secret, 'k', sizeof(too_long_secret) - 1);
}

Test(config, every_key_bad_value_in_file_names_file_line_and_key)
{
	init_too_long_values();
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];
		char text[1024], prefix[256], err[512] = "";
		/* Line 3, after a comment and a good line, so the line number is not trivially 1. */
		snprintf(text, sizeof(text), "# test\nworkers = 3\n%s = \"%s\"\n", b->key, b->value);
		struct dts_config c, before;
		dts_config_defaults(&c);
		c.workers = 9;
		before = c;
		int rc = load_text(&c, text, err, sizeof(err));
		cr_expect_lt(rc, 0, "row %zu: %s = '%s' accepted", i, b->key, b->value);
		if (strcmp(b->key, "secret_file") != 0 || b->value[0] == '\0')
			cr_expect_eq(rc, -EINVAL, "row %zu: rc %d", i, rc);
		snprintf(prefix, sizeof(prefix), "%s/dattssd.conf:3: %s: ", tmpdir, b->key);
		cr_expect(strncmp(err, prefix, strlen(prefix)) == 0, "row %zu: error '%s' does not start with '%s'", i,
			  err, prefix);
		cr_expect(strstr(err, b->why), "row %zu: error '%s' lacks '%s'", i, err, b->why);
		cr_expect(same_config(&c, &before), "row %zu: failed load changed the config", i);
		cr_expect_eq(c.workers, 9, "row %zu: line 2 applied although line 3 failed", i);
	}
}

Test(config, every_key_bad_value_as_flag_names_flag)
{
	init_too_long_values();
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];
		char flag[64], eq[700], prefix[80], err[512] = "";
		flag_of(b->key, flag);
		snprintf(eq, sizeof(eq), "%s=%s", flag, b->value);
		snprintf(prefix, sizeof(prefix), "%s: ", flag);
		for (int form = 0; form < 2; form++) {
			if (form == 1 && is_bool_key(b->key))
				continue;
			struct dts_config c, before;
			dts_config_defaults(&c);
			before = c;
			err[0] = '\0';
			int rc = form == 0 ? parse(&c, err, sizeof(err), ARGS(eq)) :
					     parse(&c, err, sizeof(err), ARGS(flag, b->value));
			cr_expect_lt(rc, 0, "row %zu form %d: %s '%s' accepted", i, form, flag, b->value);
			cr_expect(strncmp(err, prefix, strlen(prefix)) == 0, "row %zu: error '%s' does not start with '%s'",
				  i, err, prefix);
			cr_expect(strstr(err, b->why), "row %zu: error '%s' lacks '%s'", i, err, b->why);
			cr_expect(same_config(&c, &before), "row %zu: failed parse changed the config", i);
		}
	}
}

Test(config, error_never_echoes_the_secret)
{
	char big[400], err[512] = "", arg[420];
	rep(big, 'Q', 300);
	snprintf(arg, sizeof(arg), "--secret=%s", big);
	struct dts_config c;
	dts_config_defaults(&c);
	cr_assert_lt(parse(&c, err, sizeof(err), ARGS(arg)), 0);
	cr_expect_null(strstr(err, "QQQQ"), "secret echoed: %s", err);

	setenv(DTS_CONFIG_SECRET_ENV, big, 1);
	cr_assert_lt(parse(&c, err, sizeof(err), ARGS(NULL)), 0);
	cr_expect(strncmp(err, "DATTSSD_SECRET: ", 16) == 0, "%s", err);
	cr_expect_null(strstr(err, "QQQQ"), "secret echoed: %s", err);
}

/* ---- file syntax: quotes, comments, whitespace ----------------------------------------------------------------- */

struct syntax {
	const char *text;
	const char *line; /* expected in the dump; NULL = the load must fail */
	const char *why; /* failing rows: substring of the error */
};

static const struct syntax syntaxes[] = {
	{ "workers=3\n", "workers = 3", NULL },
	{ "  workers   =   3   \n", "workers = 3", NULL },
	{ "\tworkers\t=\t3\t\n", "workers = 3", NULL },
	{ "workers = 3 # two per NIC\n", "workers = 3", NULL },
	{ "workers = 3\t# tab before the comment\n", "workers = 3", NULL },
	{ "workers = 3\r\n", "workers = 3", NULL },
	{ "workers = 3", "workers = 3", NULL }, /* no newline at the end of the file */
	{ "\xEF\xBB\xBFworkers = 3\n", "workers = 3", NULL }, /* UTF-8 byte order mark */
	{ "workers = \"3\"\n", "workers = 3", NULL },
	{ "workers = '3'   # quoted, then a comment\n", "workers = 3", NULL },
	{ "# comment\n\n   \n\t# indented comment\nworkers = 4\n", "workers = 4", NULL },
	{ "workers = 4\nworkers = 5\n", "workers = 5", NULL }, /* duplicate: the later wins */
	{ "data_dir = \" spaced \"\n", "data_dir = \" spaced \"", NULL },
	{ "data_dir = 'it\"s'\n", "data_dir = 'it\"s'", NULL },
	{ "data_dir = a#b\n", "data_dir = \"a#b\"", NULL }, /* '#' not after whitespace is data */
	{ "data_dir = 'a #b'\n", "data_dir = \"a #b\"", NULL },
	{ "data_dir = a b  c\n", "data_dir = \"a b  c\"", NULL },
	{ "unix_socket = \"\"\n", "unix_socket = \"\"", NULL },
	{ "unix_socket = ''\n", "unix_socket = \"\"", NULL },
	{ "unix_socket = /x\nunix_socket =\n", "unix_socket = \"\"", NULL },
	{ "unix_socket = /x\nunix_socket = # off\n", "unix_socket = \"\"", NULL },
	{ "process_sep = \"_\"\n", "process_sep = \"_\"", NULL },
	{ "secret = ab#cd\n", "# secret: set, 5 bytes, redacted", NULL },
	{ "secret = 'ab #cd'\n", "# secret: set, 6 bytes, redacted", NULL },
	{ "workers 3\n", NULL, "dattssd.conf:1: expected 'key = value', got 'workers 3'" },
	{ "\n\nworkers\n", NULL, "dattssd.conf:3: expected 'key = value'" },
	{ "= 3\n", NULL, "dattssd.conf:1: missing key before '='" },
	{ "workers = \"3\n", NULL, "dattssd.conf:1: workers: missing closing \"" },
	{ "workers = '3\n", NULL, "dattssd.conf:1: workers: missing closing '" },
	{ "workers = \"3\" x\n", NULL, "dattssd.conf:1: workers: unexpected text after the closing quote" },
	{ "workers = 3# no space, so not a comment\n", NULL, "workers: must be an integer between 1 and 63" },
	{ "process_sep = #\n", NULL, "process_sep: must be one of" },
	{ "a\r\nb\r\nworkers = x\r\n", NULL, "dattssd.conf:1: expected" },
	{ "# 1\n# 2\n\n# 4\nworkers = 3\n\nworkers = 99\n", NULL, "dattssd.conf:7: workers: must be an integer" },
	{ "wokers = 3\n", NULL, "dattssd.conf:1: unknown key 'wokers' (did you mean 'workers'?)" },
	{ "data-dir = /x\n", NULL, "unknown key 'data-dir' (did you mean 'data_dir'?)" },
	{ "log_levle = info\n", NULL, "(did you mean 'log_level'?)" },
	{ "secrets = x\n", NULL, "(did you mean 'secret'?)" },
	{ "config = x\n", NULL, "unknown key 'config'" },
	{ "frobnicate = 1\n", NULL, "unknown key 'frobnicate'" },
	{ "WORKERS = 3\n", NULL, "unknown key 'WORKERS'" },
};

Test(config, file_syntax_table)
{
	for (size_t i = 0; i < sizeof(syntaxes) / sizeof(syntaxes[0]); i++) {
		const struct syntax *s = &syntaxes[i];
		struct dts_config c, before;
		char err[512] = "";
		dts_config_defaults(&c);
		before = c;
		int rc = load_text(&c, s->text, err, sizeof(err));
		if (s->line) {
			cr_expect_eq(rc, 0, "row %zu: rc %d: %s", i, rc, err);
			cr_expect(dump_has_line(&c, s->line), "row %zu: dump lacks '%s'", i, s->line);
		} else {
			cr_expect_eq(rc, -EINVAL, "row %zu: rc %d", i, rc);
			cr_expect(strstr(err, s->why), "row %zu: error '%s' lacks '%s'", i, err, s->why);
			cr_expect(same_config(&c, &before), "row %zu: failed load changed the config", i);
		}
	}
}

Test(config, unknown_key_far_from_everything_gets_no_suggestion)
{
	struct dts_config c;
	char err[512] = "";
	dts_config_defaults(&c);
	cr_assert_eq(load_text(&c, "frobnicate = 1\n", err, sizeof(err)), -EINVAL);
	cr_expect_null(strstr(err, "did you mean"), "%s", err);
}

Test(config, long_line_is_an_error_not_split)
{
	char *text = malloc(6000);
	cr_assert_not_null(text);
	strcpy(text, "workers = 3\ndata_dir = ");
	memset(text + strlen(text), 'x', 5000);
	strcpy(text + 12 + 11 + 5000, "\n");
	struct dts_config c;
	char err[512] = "";
	dts_config_defaults(&c);
	int rc = load_text(&c, text, err, sizeof(err));
	free(text);
	cr_expect_eq(rc, -EINVAL);
	cr_expect(strstr(err, "dattssd.conf:2: line longer than 4096 bytes"), "%s", err);
	cr_expect_eq(c.workers, 2);
}

Test(config, missing_or_unreadable_file)
{
	struct dts_config c;
	char err[512] = "", path[128];
	dts_config_defaults(&c);
	snprintf(path, sizeof(path), "%s/absent.conf", tmpdir);
	cr_expect_eq(dts_config_load_file(&c, path, err, sizeof(err)), -ENOENT);
	cr_expect(strstr(err, "absent.conf: cannot open: No such file or directory"), "%s", err);

	/* A directory opens but cannot be read. */
	cr_expect_eq(dts_config_load_file(&c, tmpdir, err, sizeof(err)), -EISDIR, "%s", err);
	cr_expect(strstr(err, "read error"), "%s", err);

	/* Through --config: the same error, and the struct untouched. */
	struct dts_config before = c;
	char arg[160];
	snprintf(arg, sizeof(arg), "--config=%s", path);
	cr_expect_eq(parse(&c, err, sizeof(err), ARGS("--workers=3", arg)), -ENOENT);
	cr_expect(strstr(err, "absent.conf: cannot open"), "%s", err);
	cr_expect(same_config(&c, &before));
}

Test(config, err_buffer_is_optional_and_bounded)
{
	struct dts_config c;
	dts_config_defaults(&c);
	cr_expect_eq(load_text(&c, "workers = 0\n", NULL, 0), -EINVAL);
	char small[12];
	memset(small, 'Z', sizeof(small));
	cr_expect_eq(load_text(&c, "workers = 0\n", small, sizeof(small)), -EINVAL);
	cr_expect_eq(strlen(small), sizeof(small) - 1, "error not truncated to the buffer");
	cr_expect_eq(parse(&c, NULL, 0, ARGS("--bogus")), -EINVAL);
}

/* ---- precedence ------------------------------------------------------------------------------------------------ */

Test(config, precedence_defaults_file_env_flags)
{
	const char *conf = write_conf("workers = 4\ntick_ms = 500\nsecret = from-file\nhttp_port = 9090\n");
	char arg[200], err[512] = "";
	snprintf(arg, sizeof(arg), "--config=%s", conf);
	struct dts_config c;

	/* file over defaults */
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS(arg)), 0, "%s", err);
	cr_expect_eq(c.workers, 4);
	cr_expect_eq(c.tick_ms, 500);
	cr_expect_eq(c.grace_s, 10); /* untouched key keeps its default */
	cr_expect_str_eq(c.secret, "from-file");
	cr_expect_str_eq(c.config_file, conf);

	/* flags over the file, whatever their position relative to --config */
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS("--workers=8", arg, "--http-port", "7070")), 0, "%s", err);
	cr_expect_eq(c.workers, 8);
	cr_expect_eq(c.http_port, 7070);
	cr_expect_eq(c.tick_ms, 500);

	/* separate-value form of --config */
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS("--workers", "6", "--config", conf)), 0, "%s", err);
	cr_expect_eq(c.workers, 6);
	cr_expect_eq(c.tick_ms, 500);

	/* environment over the file */
	setenv(DTS_CONFIG_SECRET_ENV, "from-env", 1);
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS(arg)), 0, "%s", err);
	cr_expect_str_eq(c.secret, "from-env");

	/* flags over the environment */
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS("--secret", "from-flag", arg)), 0, "%s", err);
	cr_expect_str_eq(c.secret, "from-flag");

	/* an empty environment variable is ignored */
	setenv(DTS_CONFIG_SECRET_ENV, "", 1);
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS(arg)), 0, "%s", err);
	cr_expect_str_eq(c.secret, "from-file");

	/* environment alone over the defaults */
	setenv(DTS_CONFIG_SECRET_ENV, "env-only", 1);
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS(NULL)), 0, "%s", err);
	cr_expect_str_eq(c.secret, "env-only");
}

Test(config, flag_given_twice_later_wins)
{
	struct dts_config c;
	char err[256] = "";
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS("--workers=3", "--workers", "5", "--cpu-pin", "--no-cpu-pin")),
		     0, "%s", err);
	cr_expect_eq(c.workers, 5);
	cr_expect_not(c.cpu_pin);
}

Test(config, config_given_twice_is_an_error)
{
	const char *conf = write_conf("workers = 4\n");
	char a[200], err[256] = "";
	snprintf(a, sizeof(a), "--config=%s", conf);
	struct dts_config c;
	dts_config_defaults(&c);
	cr_expect_eq(parse(&c, err, sizeof(err), ARGS(a, "--config", conf)), -EINVAL);
	cr_expect_str_eq(err, "--config: given more than once");
	cr_expect_eq(c.workers, 2);
}

Test(config, bad_file_line_reported_through_parse_args)
{
	const char *conf = write_conf("workers = 4\n\n# x\nworkers = abc\n");
	char arg[200], want[300], err[512] = "";
	snprintf(arg, sizeof(arg), "--config=%s", conf);
	snprintf(want, sizeof(want), "%s:4: workers: must be an integer between 1 and 63, got 'abc'", conf);
	struct dts_config c;
	dts_config_defaults(&c);
	cr_expect_eq(parse(&c, err, sizeof(err), ARGS("--workers=8", arg)), -EINVAL);
	cr_expect_str_eq(err, want);
	cr_expect_eq(c.workers, 2);
}

/* ---- flags ----------------------------------------------------------------------------------------------------- */

struct flagcase {
	const char *args[4];
	int rc;
	const char *text; /* rc 0: a dump line; rc < 0: substring of the error */
};

static const struct flagcase flagcases[] = {
	{ { "--cpu-pin" }, 0, "cpu_pin = true" },
	{ { "--no-cpu-pin" }, 0, "cpu_pin = false" },
	{ { "--cpu-pin=no" }, 0, "cpu_pin = false" },
	{ { "--cpu-pin=on" }, 0, "cpu_pin = true" },
	{ { "--no-split-process" }, 0, "split_process = false" },
	{ { "--split-process" }, 0, "split_process = true" },
	{ { "--secret=" }, 0, "# secret: not set (DaTtSs UDP lines are rejected)" },
	{ { "--unix-socket", "" }, 0, "unix_socket = \"\"" },
	{ { "--bind", "--help" }, -EINVAL, "--bind: must be an IPv4 or IPv6" }, /* a value is taken verbatim */
	{ { "--no-cpu-pin=yes" }, -EINVAL, "--no-cpu-pin: takes no value" },
	{ { "--help=1" }, -EINVAL, "--help: takes no value" },
	{ { "--cpu-pin", "yes" }, -EINVAL, "unexpected argument 'yes'" },
	{ { "--workers" }, -EINVAL, "--workers: needs a value" },
	{ { "--config" }, -EINVAL, "--config: needs a value" },
	{ { "--config=" }, -EINVAL, "--config: must be a path" },
	{ { "workers=3" }, -EINVAL, "unexpected argument 'workers=3'" },
	{ { "--" }, -EINVAL, "unexpected argument '--'" },
	{ { "-w" }, -EINVAL, "unexpected argument '-w'" },
	{ { "--wokers=3" }, -EINVAL, "unknown flag '--wokers' (did you mean '--workers'?)" },
	{ { "--data_dir=/x" }, -EINVAL, "unknown flag '--data_dir' (did you mean '--data-dir'?)" },
	{ { "--no-cpu-pn" }, -EINVAL, "(did you mean '--no-cpu-pin'?)" },
	{ { "--helpp" }, -EINVAL, "(did you mean '--help'?)" },
	{ { "--configg=x" }, -EINVAL, "(did you mean '--config'?)" },
	{ { "--no-workers" }, -EINVAL, "unknown flag '--no-workers'" },
	{ { "--work=3" }, -EINVAL, "unknown flag '--work'" }, /* no abbreviations */
	{ { "--frobnicate" }, -EINVAL, "unknown flag '--frobnicate' (see --help)" },
	{ { "--process-sep=-", "--default-process=my-app" }, -EINVAL, "default_process: 'my-app' contains process_sep" },
	{ { "--statsd-port=9000", "--http-port=9000" }, -EINVAL, "http_port: must differ from statsd_port" },
	{ { "--statsd-port=0", "--http-port=0" }, 0, "http_port = 0" },
	{ { "--io=dpdk" }, -EINVAL, "io = dpdk needs dpdk_eal (EAL arguments) and dpdk_queues" },
	{ { "--io=dpdk", "--dpdk-queues=2" }, -EINVAL, "io = dpdk needs dpdk_eal" },
	{ { "--io=dpdk", "--dpdk-queues=2", "--dpdk-eal=--no-pci" }, 0, "io = \"dpdk\"" },
	{ { "--checkpoint-ms=500" }, -EINVAL, "checkpoint_ms: must be 0 (off) or between 1000 and 60000, got 500" },
	{ { "--table-capacity=100000" }, -EINVAL, "table_capacity: must be a power of two (1024, 2048, ... 16777216), "
						    "got 100000" },
	{ { "--table-capacity=2097152" }, 0, "table_capacity = 2097152" },
	{ { "--table-capacity-max=100000" }, -EINVAL, "table_capacity_max: must be 0 or a power of two (up to 16777216), "
						      "got 100000" },
	{ { "--table-capacity-max=1048576" }, 0, "table_capacity_max = 1048576" },
	{ { "--max-series=1000", "--series-reserve=1001" }, -EINVAL,
	  "series_reserve: must be at most max_series (1000), got 1001" },
	{ { "--max-series=1000", "--series-reserve=1000" }, 0, "series_reserve = 1000" },
};

Test(config, flag_table)
{
	for (size_t i = 0; i < sizeof(flagcases) / sizeof(flagcases[0]); i++) {
		const struct flagcase *f = &flagcases[i];
		const char *args[5] = { f->args[0], f->args[1], f->args[2], f->args[3], NULL };
		struct dts_config c, before;
		char err[512] = "";
		dts_config_defaults(&c);
		c.cpu_pin = !c.cpu_pin; /* so --cpu-pin has something to change */
		c.split_process = !c.split_process;
		before = c;
		int rc = parse(&c, err, sizeof(err), args);
		cr_expect_eq(rc, f->rc, "row %zu (%s): rc %d: %s", i, f->args[0], rc, err);
		if (f->rc == 0) {
			cr_expect(dump_has_line(&c, f->text), "row %zu (%s): dump lacks '%s'", i, f->args[0], f->text);
		} else {
			cr_expect(strstr(err, f->text), "row %zu (%s): error '%s' lacks '%s'", i, f->args[0], err, f->text);
			cr_expect(same_config(&c, &before), "row %zu: failed parse changed the config", i);
		}
	}
}

Test(config, parse_does_not_modify_argv)
{
	char a0[] = "dattssd", a1[] = "--workers", a2[] = "4", a3[] = "--no-cpu-pin";
	char *argv[] = { a0, a1, a2, a3, NULL };
	struct dts_config c;
	char err[128];
	dts_config_defaults(&c);
	cr_assert_eq(dts_config_parse_args(&c, 4, argv, err, sizeof(err)), 0, "%s", err);
	cr_expect(argv[1] == a1 && argv[2] == a2 && argv[3] == a3);
	cr_expect_str_eq(a1, "--workers");
	cr_expect_str_eq(a2, "4");
}

/* ---- --help and --version -------------------------------------------------------------------------------------- */

/* Run parse_args with stdout captured into a temp file; returns rc and the output (caller frees). */
static int parse_capture(struct dts_config *c, const char *const *args, char **out)
{
	char path[128], err[512] = "";
	snprintf(path, sizeof(path), "%s/stdout", tmpdir);
	bool tracked = false;
	for (int i = 0; i < nmade; i++)
		tracked |= strcmp(made[i], path) == 0;
	if (!tracked) {
		cr_assert_lt(nmade, 16);
		strcpy(made[nmade++], path);
	}
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	dup2(fd, STDOUT_FILENO);
	int rc = parse(c, err, sizeof(err), args);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	off_t len = lseek(fd, 0, SEEK_END);
	*out = calloc(1, (size_t)len + 1);
	cr_assert_eq(pread(fd, *out, (size_t)len, 0), len);
	close(fd);
	return rc;
}

Test(config, help_returns_exit_and_lists_every_flag_with_default)
{
	struct dts_config c, before;
	dts_config_defaults(&c);
	before = c;
	char *out;
	int rc = parse_capture(&c, ARGS("--workers=3", "--help"), &out);
	cr_expect_eq(rc, DTS_CONFIG_EXIT);
	cr_expect_gt(DTS_CONFIG_EXIT, 0);
	cr_expect(same_config(&c, &before), "--help changed the config");
	cr_expect(strstr(out, "Usage: dattssd"), "%s", out);

	static const char *const want[] = {
		"--config FILE", "--data-dir DIR", "[\"./data\"]", "--bind ADDR", "[\"127.0.0.1\"]",
		"--statsd-port PORT", "[8125]", "--unix-socket PATH", "--http-port PORT", "[8080]", "--workers N", "[2]",
		"--cpu-pin, --no-cpu-pin", "[true]", "--recv-batch N", "[64]", "--rcvbuf-bytes BYTES", "[8388608]",
		"--tick-ms MS", "[1000]", "--grace-s S", "[10]", "--max-past-skew-s S", "[600]", "--max-future-skew-s S",
		"[60]", "--user NAME", "[\"default\"]", "--default-process NAME", "--split-process, --no-split-process",
		"--process-sep CHAR", "[\".\"]", "--secret SECRET", "--secret-file FILE", "--log-level LEVEL", "[info]",
		"--help", "--version", "DATTSSD_SECRET",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(strstr(out, want[i]), "--help lacks '%s'", want[i]);
	free(out);
}

Test(config, help_wins_over_a_bad_config_file)
{
	struct dts_config c;
	dts_config_defaults(&c);
	char *out;
	cr_expect_eq(parse_capture(&c, ARGS("--config=/nonexistent.conf", "-h"), &out), DTS_CONFIG_EXIT);
	cr_expect(strstr(out, "Usage: dattssd"));
	free(out);
}

Test(config, version_returns_exit)
{
	struct dts_config c;
	dts_config_defaults(&c);
	char *out;
	cr_expect_eq(parse_capture(&c, ARGS("--version"), &out), DTS_CONFIG_EXIT);
	cr_expect(strncmp(out, "dattssd ", 8) == 0 && strchr(out, '\n'), "'%s'", out);
	free(out);
	cr_expect_eq(parse_capture(&c, ARGS("-V"), &out), DTS_CONFIG_EXIT);
	cr_expect(strncmp(out, "dattssd ", 8) == 0, "'%s'", out);
	free(out);
}

Test(config, usage_matches_parse_args_help)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	dts_config_usage(f);
	fclose(f);
	struct dts_config c;
	dts_config_defaults(&c);
	char *out;
	cr_assert_eq(parse_capture(&c, ARGS("--help"), &out), DTS_CONFIG_EXIT);
	cr_expect_str_eq(buf, out);
	/* a dpdk_* key shows the default its help gives, once (not also its empty text) */
	const char *dp = strstr(buf, "--dpdk-port N");
	cr_assert_not_null(dp);
	char line[256];
	const size_t n_line = strcspn(dp, "\n");
	cr_assert_lt(n_line, sizeof(line));
	memcpy(line, dp, n_line);
	line[n_line] = '\0';
	cr_expect(n_line > 4 && strcmp(line + n_line - 4, " [0]") == 0 && !strstr(line, "[\"\"]"), "'%s'", line);
	free(buf);
	free(out);
}

/* ---- secret_file ----------------------------------------------------------------------------------------------- */

struct secretcase {
	const char *content;
	size_t len; /* 0: strlen(content) */
	const char *secret; /* NULL: must fail */
	const char *why;
};

static char secret256[258], secret257[259];

static const struct secretcase secretcases[] = {
	{ "abc\n", 0, "abc", NULL },
	{ "abc", 0, "abc", NULL },
	{ "abc\r\n", 0, "abc", NULL },
	{ " spaced secret \n", 0, " spaced secret ", NULL },
	{ secret256, 0, secret256, NULL },
	{ "", 0, NULL, "is empty" },
	{ "\n", 0, NULL, "is empty" },
	{ "abc\ndef\n", 0, NULL, "on one line" },
	{ "abc\n\n", 0, NULL, "on one line" },
	{ "ab\0c\n", 5, NULL, "without NUL bytes" },
	{ secret257, 0, NULL, "holds more than 256 bytes" },
};

Test(config, secret_file_table)
{
	rep(secret256, 'a', 256);
	rep(secret257, 'b', 257);
	for (size_t i = 0; i < sizeof(secretcases) / sizeof(secretcases[0]); i++) {
		const struct secretcase *s = &secretcases[i];
		const char *path = write_file("secret", s->content, s->len ? s->len : strlen(s->content));
		char text[300], err[512] = "";
		snprintf(text, sizeof(text), "secret = old\nsecret_file = %s\n", path);
		struct dts_config c;
		dts_config_defaults(&c);
		int rc = load_text(&c, text, err, sizeof(err));
		if (s->secret) {
			cr_expect_eq(rc, 0, "row %zu: rc %d: %s", i, rc, err);
			cr_expect_str_eq(c.secret, s->secret, "row %zu", i);
			cr_expect_str_eq(c.secret_file, path, "row %zu", i);
		} else {
			cr_expect_eq(rc, -EINVAL, "row %zu: rc %d", i, rc);
			cr_expect(strstr(err, ":2: secret_file: "), "row %zu: %s", i, err);
			cr_expect(strstr(err, s->why), "row %zu: error '%s' lacks '%s'", i, err, s->why);
			cr_expect_null(strstr(err, "abc"), "row %zu: error shows the content: %s", i, err);
			cr_expect_str_eq(c.secret, "", "row %zu: failed load changed the secret", i);
		}
	}
}

Test(config, secret_file_not_a_regular_file)
{
	struct dts_config c;
	char arg[160], err[512] = "";
	dts_config_defaults(&c);
	snprintf(arg, sizeof(arg), "--secret-file=%s", tmpdir);
	cr_expect_eq(parse(&c, err, sizeof(err), ARGS(arg)), -EINVAL);
	cr_expect(strstr(err, "--secret-file: ") == err && strstr(err, "is not a regular file"), "%s", err);
}

Test(config, secret_file_precedence)
{
	const char *sf = write_file("secret", "from-secret-file\n", 17);
	char text[200], carg[200], sarg[200], err[512] = "";
	snprintf(text, sizeof(text), "secret_file = %s\n", sf);
	const char *conf = write_conf(text);
	snprintf(carg, sizeof(carg), "--config=%s", conf);
	snprintf(sarg, sizeof(sarg), "--secret-file=%s", sf);
	struct dts_config c;

	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS(carg)), 0, "%s", err);
	cr_expect_str_eq(c.secret, "from-secret-file");
	cr_expect_str_eq(c.secret_file, sf);

	/* the environment beats a secret_file from the config file, and forgets it */
	setenv(DTS_CONFIG_SECRET_ENV, "env", 1);
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS(carg)), 0, "%s", err);
	cr_expect_str_eq(c.secret, "env");
	cr_expect_str_eq(c.secret_file, "");

	/* --secret-file beats the environment */
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS(sarg)), 0, "%s", err);
	cr_expect_str_eq(c.secret, "from-secret-file");

	/* within one source, the later of secret and secret_file wins */
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS(sarg, "--secret=last")), 0, "%s", err);
	cr_expect_str_eq(c.secret, "last");
	cr_expect_str_eq(c.secret_file, "");
}

/* ---- dump ------------------------------------------------------------------------------------------------------ */

Test(config, dump_redacts_secret_and_round_trips)
{
	const char *sf = write_file("secret", "hunter2\n", 8);
	char arg[200], err[512] = "";
	snprintf(arg, sizeof(arg), "--secret-file=%s", sf);
	struct dts_config c;
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err),
			   ARGS("--workers=7", "--bind=::", "--process-sep=-", "--data-dir= odd dir ", "--no-cpu-pin",
				"--log-level=warn", "--rcvbuf-bytes=1M", "--user=x@y", arg)),
		     0, "%s", err);
	char *d = dump_str(&c);
	cr_expect_null(strstr(d, "hunter2"), "dump shows the secret:\n%s", d);
	cr_expect(strstr(d, "# secret: set, 7 bytes, redacted (from secret_file)"), "%s", d);

	/* The dump is a valid config file that reproduces the same settings, secret included (via secret_file). */
	struct dts_config back;
	dts_config_defaults(&back);
	cr_assert_eq(load_text(&back, d, err, sizeof(err)), 0, "%s\n%s", err, d);
	cr_expect(same_config(&c, &back), "round trip differs:\n%s", d);
	cr_expect_str_eq(back.secret, "hunter2");
	free(d);
}

Test(config, dump_names_the_config_file_and_every_key)
{
	const char *conf = write_conf("workers = 3\n");
	char arg[200], err[256] = "";
	snprintf(arg, sizeof(arg), "--config=%s", conf);
	struct dts_config c;
	dts_config_defaults(&c);
	cr_assert_eq(parse(&c, err, sizeof(err), ARGS(arg)), 0, "%s", err);
	char *d = dump_str(&c);
	char want[200];
	snprintf(want, sizeof(want), "# config file: %s\n", conf);
	cr_expect(strstr(d, want), "%s", d);
	static const char *const keys[] = { "data_dir", "bind", "statsd_port", "unix_socket", "http_port", "workers",
					    "cpu_pin", "recv_batch", "recv_coalesce_us", "rcvbuf_bytes",
					    "udp_backpressure", "tick_ms", "grace_s", "max_past_skew_s",
					    "max_future_skew_s", "user", "default_process", "split_process", "process_sep",
					    "log_level" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(want, sizeof(want), "\n%s = ", keys[i]);
		cr_expect(strstr(d, want), "dump lacks %s:\n%s", keys[i], d);
	}
	free(d);
}

Test(config, dump_reports_write_errors)
{
	struct dts_config c;
	dts_config_defaults(&c);
	FILE *f = fopen("/dev/full", "w");
	cr_assert_not_null(f);
	cr_expect_eq(dts_config_dump(&c, f), -EIO);
	fclose(f);
}

/* ---- the example config file in etc/ must load and equal the defaults -------------------------------------------- */

Test(config, example_file_is_the_defaults)
{
	/* Tests run from the build tree; find the source tree from this file's path. */
	char path[512];
	snprintf(path, sizeof(path), "%s", __FILE__);
	char *slash = strstr(path, "tests/unit/test_config.c");
	cr_assert_not_null(slash, "unexpected __FILE__ %s", __FILE__);
	strcpy(slash, "etc/dattssd.conf");
	struct dts_config c, d;
	char err[512] = "";
	dts_config_defaults(&c);
	dts_config_defaults(&d);
	c.workers = 33; /* so a file that sets nothing would not pass */
	cr_assert_eq(dts_config_load_file(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_expect(same_config(&c, &d), "etc/dattssd.conf differs from the built-in defaults");
}

/* ---- log ------------------------------------------------------------------------------------------------------- */

Test(log, parse_level_table)
{
	static const struct {
		const char *name;
		int level;
	} rows[] = {
		{ "error", DTS_LOG_ERROR }, { "warn", DTS_LOG_WARN },	{ "warning", DTS_LOG_WARN },
		{ "info", DTS_LOG_INFO },   { "debug", DTS_LOG_DEBUG }, { "DEBUG", DTS_LOG_DEBUG },
		{ "Info", DTS_LOG_INFO },   { "", -EINVAL },		{ "verbose", -EINVAL },
		{ "0", -EINVAL },	    { "err", -EINVAL },		{ "info ", -EINVAL },
		{ NULL, -EINVAL },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		cr_expect_eq(dts_log_parse_level(rows[i].name), rows[i].level, "row %zu '%s'", i,
			     rows[i].name ? rows[i].name : "(null)");
	for (int l = DTS_LOG_ERROR; l <= DTS_LOG_DEBUG; l++)
		cr_expect_eq(dts_log_parse_level(dts_log_level_name(l)), l);
	cr_expect_str_eq(dts_log_level_name(7), "?");
}

Test(log, set_level_and_enabled)
{
	cr_expect_eq(dts_log_get_level(), DTS_LOG_INFO, "default threshold");
	cr_expect(dts_log_enabled(DTS_LOG_INFO));
	cr_expect_not(dts_log_enabled(DTS_LOG_DEBUG));
	cr_expect_eq(dts_log_set_level(DTS_LOG_DEBUG), 0);
	cr_expect(dts_log_enabled(DTS_LOG_DEBUG));
	cr_expect_eq(dts_log_set_level(-1), -EINVAL);
	cr_expect_eq(dts_log_set_level(4), -EINVAL);
	cr_expect_eq(dts_log_get_level(), DTS_LOG_DEBUG, "invalid level changed the threshold");
	cr_expect_eq(dts_log_set_level(DTS_LOG_ERROR), 0);
	cr_expect(dts_log_enabled(DTS_LOG_ERROR));
	cr_expect_not(dts_log_enabled(DTS_LOG_WARN));
	cr_expect_not(dts_log_enabled(-1));
	cr_expect_not(dts_log_enabled(9));
}

static size_t fmt_line(char *buf, size_t size, time_t sec, long nsec, int level, const char *comp, const char *fmt,
		       ...) __attribute__((format(printf, 7, 8)));
static size_t fmt_line(char *buf, size_t size, time_t sec, long nsec, int level, const char *comp, const char *fmt, ...)
{
	struct timespec ts = { sec, nsec };
	va_list ap;
	va_start(ap, fmt);
	size_t n = dts__log_format(buf, size, &ts, level, comp, fmt, ap);
	va_end(ap);
	return n;
}

Test(log, format_table)
{
	static const struct {
		time_t sec;
		long nsec;
		int level;
		const char *comp, *msg, *want;
	} rows[] = {
		{ 0, 0, DTS_LOG_INFO, "config", "hello", "1970-01-01T00:00:00.000Z INFO config: hello\n" },
		{ 1700000000, 123456789, DTS_LOG_WARN, "receive", "w 3",
		  "2023-11-14T22:13:20.123Z WARN receive: w 3\n" },
		{ 951782400, 999999999, DTS_LOG_ERROR, "x", "leap", "2000-02-29T00:00:00.999Z ERROR x: leap\n" },
		{ 4102444799, 1000000, DTS_LOG_DEBUG, NULL, "m", "2099-12-31T23:59:59.001Z DEBUG -: m\n" },
		{ -1, 0, DTS_LOG_INFO, "c", "before", "1969-12-31T23:59:59.000Z INFO c: before\n" },
		{ 0, 0, DTS_LOG_INFO, "c", "a\nb\rc\x7f" "d\te", "1970-01-01T00:00:00.000Z INFO c: a?b?c?d?e\n" },
		{ 0, 0, DTS_LOG_INFO, "c", "", "1970-01-01T00:00:00.000Z INFO c: \n" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char buf[DTS_LOG_LINE_MAX];
		size_t n = fmt_line(buf, sizeof(buf), rows[i].sec, rows[i].nsec, rows[i].level, rows[i].comp, "%s",
				    rows[i].msg);
		cr_expect_str_eq(buf, rows[i].want, "row %zu", i);
		cr_expect_eq(n, strlen(rows[i].want), "row %zu", i);
	}
	char buf[128];
	fmt_line(buf, sizeof(buf), 0, 0, DTS_LOG_INFO, "c", "%d-%s-%.1f", 42, "x", 1.25);
	cr_expect_str_eq(buf, "1970-01-01T00:00:00.000Z INFO c: 42-x-1.2\n");
}

Test(log, civil_date_matches_gmtime_over_centuries)
{
	/* From year 1 to 9999 in steps that hit every month, day and time-of-day pattern over many leap cycles. */
	unsigned checked = 0;
	for (int64_t t = -62135596800LL; t < 253402300799LL; t += 86400LL * 37 + 3671) {
		char buf[128], want[64];
		struct tm tm;
		time_t tt = (time_t)t;
		if (!gmtime_r(&tt, &tm))
			cr_assert_fail("gmtime_r(%lld) failed", (long long)t);
		strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
		fmt_line(buf, sizeof(buf), tt, 0, DTS_LOG_INFO, "c", "x");
		/* strftime pads %Y to 4 digits only for years >= 1000. Assert only on a mismatch: Criterion reports every
		 * assertion over a pipe, and 70,000 of them would make this the slowest unit test. */
		if ((t >= 0 || tm.tm_year + 1900 >= 1000) && strncmp(buf, want, strlen(want)) != 0)
			cr_assert_fail("t=%lld: got '%.19s' want '%s'", (long long)t, buf, want);
		checked++;
	}
	cr_expect_gt(checked, 70000);
}

Test(log, long_message_is_cut_with_ellipsis)
{
	char big[5000];
	rep(big, 'm', sizeof(big) - 1);
	char buf[DTS_LOG_LINE_MAX];
	size_t n = fmt_line(buf, sizeof(buf), 0, 0, DTS_LOG_INFO, "c", "%s", big);
	cr_expect_eq(n, DTS_LOG_LINE_MAX - 1);
	cr_expect_eq(strlen(buf), n);
	cr_expect_str_eq(buf + n - 4, "...\n");
	cr_expect_eq(strchr(buf, '\n'), buf + n - 1, "a newline inside the line");

	/* A tiny buffer still yields a NUL-terminated line ending in '\n'. */
	char small[64];
	n = fmt_line(small, sizeof(small), 0, 0, DTS_LOG_INFO, "component", "%s", big);
	cr_expect_eq(n, strlen(small));
	cr_expect_lt(n, sizeof(small));
	cr_expect_eq(small[n - 1], '\n');
}

/* Point fd 2 at a fresh temp file; returns the file's fd (read it with pread). */
static int capture_stderr(int *saved)
{
	char path[] = "/tmp/dts_test_log.XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	*saved = dup(STDERR_FILENO);
	cr_assert_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	return fd;
}

static char *restore_stderr(int fd, int saved)
{
	dup2(saved, STDERR_FILENO);
	close(saved);
	off_t len = lseek(fd, 0, SEEK_END);
	char *out = calloc(1, (size_t)len + 1);
	cr_assert_eq(pread(fd, out, (size_t)len, 0), len);
	close(fd);
	return out;
}

Test(log, writes_one_line_to_stderr_and_filters_by_level)
{
	int saved, fd = capture_stderr(&saved);
	cr_assert_eq(dts_log_set_level(DTS_LOG_INFO), 0);
	errno = ENOSPC;
	dts_info("test", "value %d", 7);
	cr_expect_eq(errno, ENOSPC, "dts_log changed errno");
	dts_debug("test", "hidden");
	dts_warn("test", "warned");
	dts_err("test", "%s", "failed");
	dts_log(42, "test", "invalid level");
	char *out = restore_stderr(fd, saved);

	const char *lines[] = { " INFO test: value 7\n", " WARN test: warned\n", " ERROR test: failed\n" };
	const char *p = out;
	for (size_t i = 0; i < 3; i++) {
		const char *nl = strchr(p, '\n');
		cr_assert_not_null(nl, "line %zu missing in '%s'", i, out);
		cr_expect_eq(p[4], '-');
		cr_expect_eq(p[10], 'T');
		cr_expect_eq(p[23], 'Z');
		cr_expect(strncmp(p + 24, lines[i], strlen(lines[i])) == 0, "line %zu: '%.*s'", i, (int)(nl - p + 1), p);
		p = nl + 1;
	}
	cr_expect_str_eq(p, "", "unexpected output: '%s'", p);
	cr_expect_null(strstr(out, "hidden"));
	free(out);
}

#define LOG_THREADS 4
#define LOG_LINES 300

static void *log_thread(void *arg)
{
	char pad[1500];
	rep(pad, (char)('a' + (int)(intptr_t)arg), sizeof(pad) - 1);
	for (int i = 0; i < LOG_LINES; i++)
		dts_info("t", "%d %s", (int)(intptr_t)arg, pad);
	return NULL;
}

Test(log, concurrent_lines_never_interleave)
{
	int saved, fd = capture_stderr(&saved);
	pthread_t th[LOG_THREADS];
	for (intptr_t i = 0; i < LOG_THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, log_thread, (void *)i), 0);
	for (int i = 0; i < LOG_THREADS; i++)
		pthread_join(th[i], NULL);
	char *out = restore_stderr(fd, saved);

	unsigned lines = 0;
	for (char *p = out; *p;) {
		char *nl = strchr(p, '\n');
		cr_assert_not_null(nl);
		/* "<24-byte timestamp> INFO t: <k> <1499 x letter k>" */
		cr_assert(nl - p == 24 + 9 + 1 + 1 + 1499, "line %u has length %td", lines, nl - p);
		int k = p[33] - '0';
		cr_assert(k >= 0 && k < LOG_THREADS);
		for (const char *q = p + 35; q < nl; q++)
			if (*q != 'a' + k) /* assert only on failure: one assertion per byte would take seconds */
				cr_assert_fail("line %u mixes threads at byte %td", lines, q - p);
		lines++;
		p = nl + 1;
	}
	cr_expect_eq(lines, LOG_THREADS * LOG_LINES);
	cr_expect_eq(dts_log_dropped(), 0);
	free(out);
}

Test(log, unwritable_stderr_drops_and_counts_and_keeps_errno)
{
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	cr_assert_geq(saved, 0);
	close(STDERR_FILENO); /* write(2) now fails with EBADF */
	uint64_t before = dts_log_dropped();
	errno = EAGAIN;
	dts_err("test", "nobody hears this");
	int after_errno = errno;
	uint64_t after = dts_log_dropped();
	dup2(saved, STDERR_FILENO);
	close(saved);
	cr_expect_eq(after_errno, EAGAIN, "dts_log changed errno to %d", after_errno);
	cr_expect_eq(after, before + 1);
	dts_debug("test", "below the threshold: not written, not dropped");
	cr_expect_eq(dts_log_dropped(), before + 1);
}
