/*
 * test_daemon.c - integration tests: the real dattssd, started as a child process on loopback ports, fed over UDP,
 * TCP and its Unix datagram socket, and read back through its HTTP API (/api/v1/current, /healthz, /metrics).
 *
 * Every test of the "daemon" suite gets its own daemon (fixture .init starts it, .fini stops it and removes its
 * temporary directory, also when the test failed): Criterion runs each test in its own process, so a daemon cannot be
 * shared between tests anyway, and a fresh one makes exact counts in /metrics possible. Startup takes ~50 ms; most
 * of a test's time is the wait described next, and ctest runs two tests at a time (--jobs=2).
 *
 * Timing. The current state is the moving window over the last 12 CLOSED 5-second slots, republished when the clock
 * enters a new slot (engine/src/merger.c). So a value sent now shows up within 5 s + one tick (100 ms) + one merger
 * period; the tests poll /api/v1/current for up to WAIT_MS and assert exact equality at the end. Every request
 * carries the default user's API key (DATA_DIR/api.key); the DaTtSs line test creates its own user through the
 * operator API and reads with that user's key.
 *
 * When a test fails, .fini prints the daemon's log (--log-level debug) to stderr. A test marks success with passed()
 * as its last statement.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dts/decode.h"
#include "integration/daemon_harness.h"

/* Longest wait for a value to reach /api/v1/current: one slot (5 s) plus hand-over is the expected worst case;
 * three slots leave room for a loaded machine. */
#define WAIT_MS 15000

#define CURRENT "/api/v1/current"

static struct dh_daemon dmn;
static bool test_passed;
static bool stopped_by_test; /* the test itself stopped the daemon (SIGTERM test) */

/* The last statement of a test: the daemon survived it (unless the test stopped it), and nothing failed before. */
static void passed(void)
{
	char state[96];

	cr_assert(stopped_by_test || dh_alive(&dmn), "dattssd died during the test: %s",
		  dh_state_text(&dmn, state, sizeof(state)));
	test_passed = true;
}

static void daemon_up(void)
{
	char err[256];
	int rc;

	test_passed = false;
	stopped_by_test = false;
	rc = dh_start(&dmn, NULL, err, sizeof(err));
	cr_assert_eq(rc, 0, "cannot start %s: %s", DATTSSD_PATH, err);
}

static void daemon_down(void)
{
	dh_stop(&dmn, 5000); /* first, so that the log shows the shutdown too */
	if (!test_passed)
		dh_dump_log(&dmn, stderr);
	dh_destroy(&dmn);
}

TestSuite(daemon, .init = daemon_up, .fini = daemon_down, .timeout = 45);

/* ---- helpers (they assert, so a test reads as a list of facts) ------------------------------------------------- */

static int udp_socket(void)
{
	int fd = dh_udp_socket(&dmn);

	cr_assert_geq(fd, 0, "udp socket: %s", strerror(-fd));
	return fd;
}

static void send_udp(int fd, const char *dgram)
{
	int rc = dh_udp_send(fd, dgram, strlen(dgram));

	cr_assert_eq(rc, 0, "udp send: %s", strerror(-rc));
}

static void write_tcp(int fd, const char *text)
{
	int rc = dh_write_all(fd, text, strlen(text));

	cr_assert_eq(rc, 0, "tcp write: %s", strerror(-rc));
}

static void send_unix(const char *dgram)
{
	int rc = dh_unix_send(&dmn, dgram, strlen(dgram));

	cr_assert_eq(rc, 0, "unix send to %s: %s", dmn.unix_path, strerror(-rc));
}

/*
 * Wait until series (process, counter, type, tags) of the current state at path, read with API key key, has
 * current.field == want, and assert it. Returns the series' "current" object (caller owns).
 */
static json_t *expect_series_as(const char *key, const char *path, const char *process, const char *counter,
				const char *type, const char *tags, const char *field, double want)
{
	json_t *cur = NULL;
	char state[96];
	double got = NAN;

	for (int64_t deadline = dh_now_ms() + WAIT_MS;; dh_sleep_ms(100)) {
		struct dh_reply r;
		json_t *root = NULL, *c;

		if (dh_request(&dmn, "GET", path, key, NULL, 0, &r) == 0 && r.status == 200)
			root = json_loadb(r.body, r.body_len, 0, NULL);
		if (r.status)
			dh_reply_free(&r);
		c = json_object_get(dh_find_series(root, process, counter, type, tags), "current");
		if (json_is_object(c)) {
			json_decref(cur);
			cur = json_incref(c);
		}
		json_decref(root);
		got = dh_num(cur, field);
		if (got == want || dh_now_ms() >= deadline || !dh_alive(&dmn))
			break;
	}
	cr_assert_not_null(cur, "%s: series %s/%s (%s, tags %s) has no current state (waited up to %d ms; dattssd %s)",
			   path, process, counter, type, tags ? tags : "none", WAIT_MS,
			   dh_state_text(&dmn, state, sizeof(state)));
	cr_assert(got == want, "%s: %s/%s %s = %.17g, want %.17g (waited up to %d ms; dattssd %s)", path, process,
		  counter, field, got, want, WAIT_MS, dh_state_text(&dmn, state, sizeof(state)));
	return cur;
}

/* expect_series_as with the default user's key. */
static json_t *expect_series(const char *path, const char *process, const char *counter, const char *type,
			     const char *tags, const char *field, double want)
{
	return expect_series_as(dh_api_key(&dmn), path, process, counter, type, tags, field, want);
}

/* Assert an exact number field of a series object. */
static void expect_field(const json_t *s, const char *what, const char *field, double want)
{
	double got = dh_num(s, field);

	cr_expect(got == want, "%s: %s = %.17g, want %.17g", what, field, got, want);
}

/* Fetch the current state of path with API key key and assert status 200. Caller owns the result. */
static json_t *get_current_as(const char *key, const char *path)
{
	struct dh_reply r;
	json_t *j;
	int rc = dh_request(&dmn, "GET", path, key, NULL, 0, &r);

	cr_assert_eq(rc, 0, "GET %s: %s", path, strerror(-rc));
	cr_assert_eq(r.status, 200, "GET %s: status %d: %s", path, r.status, r.body);
	j = json_loadb(r.body, r.body_len, 0, NULL);
	dh_reply_free(&r);
	cr_assert_not_null(j, "GET %s: body is not JSON", path);
	return j;
}

/* get_current_as with the default user's key. */
static json_t *get_current(const char *path)
{
	return get_current_as(dh_api_key(&dmn), path);
}

/* The process object named name in a current-state reply (borrowed), or NULL. */
static json_t *find_process(json_t *root, const char *name)
{
	json_t *p;
	size_t i;

	json_array_foreach(json_object_get(root, "processes"), i, p)
		if (json_is_string(json_object_get(p, "process")) &&
		    strcmp(json_string_value(json_object_get(p, "process")), name) == 0)
			return p;
	return NULL;
}

/* Sum of the rejected-lines counters of one reason over every worker. */
static double rejected(const char *reason)
{
	char label[64];
	const char *labels[] = { label, NULL };
	unsigned n;
	double v;

	snprintf(label, sizeof(label), "reason=\"%s\"", reason);
	v = dh_metric(&dmn, "dattss_rejected_lines_total", labels, &n);
	cr_assert_gt(n, 0, "/metrics has no dattss_rejected_lines_total{reason=\"%s\"}", reason);
	return v;
}

/* ---- counters over every transport ----------------------------------------------------------------------------- */

Test(daemon, counters_over_udp_with_sample_rates)
{
	int fd = udp_socket();
	json_t *s;

	/* Several lines per datagram; a counter sampled at @r counts value / r, with weight 1 / r. */
	send_udp(fd, "udp.req:1|c\nudp.req:2|c|@0.5\nudp.req:3|c|@0.25\n"); /* sum 1 + 4 + 12, count 1 + 2 + 4 */
	send_udp(fd, "udp.req:10|c\r\n\n\nudp.req:1:2:3|c"); /* CRLF, blank lines, statsd v1.1 values: +16, count +4 */
	send_udp(fd, "udp.other:5|c|@0.5"); /* another counter of the same process */
	close(fd);

	s = expect_series(CURRENT, "udp", "req", "c", NULL, "sum", 33);
	expect_field(s, "udp.req", "count", 11);
	cr_expect(fabs(dh_num(s, "rate") - 33.0 / 60.0) < 1e-12, "udp.req rate = %.17g, want 33/60",
		  dh_num(s, "rate"));
	json_decref(s);
	s = expect_series(CURRENT, "udp", "other", "c", NULL, "sum", 10);
	expect_field(s, "udp.other", "count", 2);
	json_decref(s);
	passed();
}

Test(daemon, counters_over_tcp_stream)
{
	int a = dh_tcp_connect(&dmn), b;
	json_t *s;

	cr_assert_geq(a, 0, "tcp connect: %s", strerror(-a));
	/* A line split across two writes, and a final line without '\n' that counts when the client closes. */
	write_tcp(a, "tcp.req:1|c\ntcp.req:2|c|@0.5\ntcp.re");
	dh_sleep_ms(150);
	write_tcp(a, "q:3|c|@0.25\ntcp.req:5|c");
	/* A second connection at the same time. */
	b = dh_tcp_connect(&dmn);
	cr_assert_geq(b, 0, "tcp connect: %s", strerror(-b));
	write_tcp(b, "tcp.req:100|c\n");
	dh_sleep_ms(150);
	close(a);
	close(b);

	s = expect_series(CURRENT, "tcp", "req", "c", NULL, "sum", 1 + 4 + 12 + 5 + 100);
	expect_field(s, "tcp.req", "count", 1 + 2 + 4 + 1 + 1);
	json_decref(s);
	passed();
}

Test(daemon, counters_over_unix_datagram_socket)
{
	const char *stream[] = { "worker=\"stream\"", NULL };
	json_t *s;

	send_unix("unx.req:1|c\nunx.req:2|c|@0.5");
	send_unix("unx.req:4|c|@0.25\n");
	s = expect_series(CURRENT, "unx", "req", "c", NULL, "sum", 1 + 4 + 16);
	expect_field(s, "unx.req", "count", 1 + 2 + 4);
	json_decref(s);
	/* The Unix socket is served by the stream core, and by nothing else. */
	cr_expect_eq(dh_metric(&dmn, "dattss_received_packets_total", stream, NULL), 2);
	cr_expect_eq(dh_metric(&dmn, "dattss_received_packets_total", NULL, NULL), 2);
	passed();
}

/* Many datagrams in a row: read in bursts, every one counted once and in the order sent (the gauge's last value). */
Test(daemon, unix_socket_bursts_keep_every_datagram_in_order)
{
	const char *stream[] = { "worker=\"stream\"", NULL };
	enum { N = 300 };
	char d[64];
	json_t *s;

	for (int i = 1; i <= N; i++) {
		snprintf(d, sizeof(d), "unb.req:%d|c\nunb.level:%d|g", i, i);
		send_unix(d);
	}
	s = expect_series(CURRENT, "unb", "req", "c", NULL, "sum", N * (N + 1) / 2);
	expect_field(s, "unb.req", "count", N);
	json_decref(s);
	s = expect_series(CURRENT, "unb", "level", "g", NULL, "last", N);
	json_decref(s);
	cr_expect_eq(dh_metric(&dmn, "dattss_received_packets_total", stream, NULL), N);
	passed();
}

/* ---- gauges and timers ------------------------------------------------------------------------------------------ */

Test(daemon, gauge_absolute_then_deltas)
{
	int fd = udp_socket();
	json_t *s;

	/* One socket: one worker, so the datagrams are aggregated in the order sent. */
	send_udp(fd, "gg.level:100|g");
	send_udp(fd, "gg.level:+25|g\ngg.level:-7.5|g");
	send_udp(fd, "gg.level:+2|g");
	/* An absolute value supersedes the deltas before it; the deltas after it apply to it. */
	send_udp(fd, "gg.reset:5|g\ngg.reset:+1|g\ngg.reset:7|g\ngg.reset:-2|g");
	close(fd);

	s = expect_series(CURRENT, "gg", "level", "g", NULL, "last", 119.5);
	json_decref(s);
	s = expect_series(CURRENT, "gg", "reset", "g", NULL, "last", 5);
	json_decref(s);
	passed();
}

/* The exact q-quantile of 1..n with the sketch's rank convention: the element of rank floor(q * (n - 1)). */
static double exact_quantile(double q, unsigned n)
{
	return floor(q * (double)(n - 1)) + 1;
}

Test(daemon, timer_exact_aggregates_and_quantiles_within_2_percent)
{
	enum { N = 1000 };
	static char dgram[3][16384];
	int fd = udp_socket();
	int64_t sec, sent_ms;
	size_t len[3] = { 0 };
	json_t *s;
	static const struct {
		const char *field;
		double q;
	} quantiles[] = { { "bot10", 0.10 }, { "top10", 0.90 }, { "p50", 0.50 }, { "p99", 0.99 } };

	/*
	 * Quantiles in the current state come from the open minute's sketch plus the previous minute's weighted by its
	 * share of the 60 s window; weighting shifts ranks, so send and read inside one minute: never after second 50
	 * (the data's slot then closes, and is published, by second 55 at the latest).
	 */
	sec = (dh_now_ms() / 1000) % 60;
	if (sec >= 50)
		dh_sleep_ms((int)(60 - sec) * 1000 + 200);

	/* 1..N in a scrambled order (7919 is prime to N): half as one value per line, half as 50-value lines. */
	for (unsigned i = 0; i < N; i++) {
		unsigned v = (i * 7919u) % N + 1;

		if (i < N / 2) {
			unsigned k = i < N / 4 ? 0 : 1;

			len[k] += (size_t)snprintf(dgram[k] + len[k], sizeof(dgram[k]) - len[k], "tm.lat:%u|ms\n", v);
		} else {
			bool first = (i - N / 2) % 50 == 0, last = (i - N / 2) % 50 == 49;

			len[2] += (size_t)snprintf(dgram[2] + len[2], sizeof(dgram[2]) - len[2], "%s:%u%s",
						   first ? "tm.lat" : "", v, last ? "|ms\n" : "");
		}
	}
	sent_ms = dh_now_ms();
	for (int k = 0; k < 3; k++) {
		cr_assert_lt(len[k], sizeof(dgram[k]) - 1, "datagram %d overflowed", k);
		send_udp(fd, dgram[k]);
	}
	close(fd);

	s = expect_series(CURRENT, "tm", "lat", "ms", NULL, "count", N);
	cr_assert_eq((int64_t)dh_num(s, "as_of_ms") / 60000, sent_ms / 60000,
		     "timing precondition: the state was read in another minute than the data was sent (as_of_ms %.0f, "
		     "sent %lld); quantiles would be rank-shifted",
		     dh_num(s, "as_of_ms"), (long long)sent_ms);
	expect_field(s, "tm.lat", "sum", N * (N + 1) / 2.0);
	expect_field(s, "tm.lat", "min", 1);
	expect_field(s, "tm.lat", "max", N);
	expect_field(s, "tm.lat", "avg", (N + 1) / 2.0);
	for (size_t i = 0; i < sizeof(quantiles) / sizeof(quantiles[0]); i++) {
		double want = exact_quantile(quantiles[i].q, N), got = dh_num(s, quantiles[i].field);

		cr_expect(fabs(got - want) <= 0.02 * want,
			  "tm.lat %s = %.17g, exact order statistic %.0f: off by %.2f%%", quantiles[i].field, got, want,
			  100.0 * fabs(got - want) / want);
	}
	json_decref(s);
	passed();
}

/* ---- identity: tags, process/counter split -------------------------------------------------------------------- */

Test(daemon, dogstatsd_tags_and_series_identity)
{
	int fd = udp_socket();
	json_t *s, *root, *p;
	size_t i, reqs = 0;

	/* Tag order and duplicates do not matter: one series, canonical tags "a:1,b:2". */
	send_udp(fd, "tg.req:1|c|#b:2,a:1\ntg.req:2|c|#a:1,b:2\ntg.req:4|c|#a:1,b:2,a:1");
	send_udp(fd, "tg.req:8|c|#a:1\ntg.req:16|c"); /* other tag sets are other series */
	/* The first '.'-segment is the process; a name without '.' goes to process "default". */
	send_udp(fd, "api.query:3|c\nnodot:5|c\napi.db.query:7|c");
	close(fd);

	s = expect_series(CURRENT, "tg", "req", "c", "a:1,b:2", "sum", 7);
	json_decref(s);
	s = expect_series(CURRENT, "tg", "req", "c", "a:1", "sum", 8);
	json_decref(s);
	s = expect_series(CURRENT, "tg", "req", "c", NULL, "sum", 16);
	json_decref(s);
	s = expect_series(CURRENT, "api", "query", "c", NULL, "sum", 3);
	json_decref(s);
	s = expect_series(CURRENT, "api", "db.query", "c", NULL, "sum", 7);
	json_decref(s);
	s = expect_series(CURRENT, "default", "nodot", "c", NULL, "sum", 5);
	json_decref(s);

	root = get_current(CURRENT);
	cr_expect_str_eq(json_string_value(json_object_get(root, "user")), "default");
	p = find_process(root, "tg");
	cr_assert_not_null(p);
	json_array_foreach(json_object_get(p, "counters"), i, s)
		reqs += strcmp(json_string_value(json_object_get(s, "counter")), "req") == 0;
	cr_expect_eq(reqs, 3, "process tg has %zu 'req' series, want 3 (a:1,b:2 / a:1 / untagged)", reqs);
	cr_expect_null(find_process(root, "api.query"), "'api.query' must split into process api, counter query");
	cr_expect_null(dh_find_series(root, "default", "api.query", "c", NULL));
	json_decref(root);
	passed();
}

/* ---- malformed lines -------------------------------------------------------------------------------------------- */

Test(daemon, malformed_lines_are_counted_by_reason_and_skipped)
{
	static const char *const reasons[] = { "bad_type", "no_value", "bad_value", "bad_rate", "unsupported",
					       "dattss_format" };
	int fd = udp_socket();
	json_t *s, *root;
	unsigned n;
	double total;

	send_udp(fd, "mal.ok:1|c\n"
		     "mal.bad:1|zz\n" /* bad_type */
		     "mal.ok:2|c\n"
		     "mal.novalue|c\n" /* no_value */
		     "mal.bv:abc|c\n" /* bad_value */
		     "mal.br:1|c|@2\n" /* bad_rate */
		     "mal.ok:4|c\n"
		     "_e{5,4}:title|text\n" /* unsupported (DogStatsD event) */
		     "no pipe and no fields\n" /* no '|': a DaTtSs line, but not four fields: dattss_format */
		     "mal.ok:8|c");
	close(fd);

	s = expect_series(CURRENT, "mal", "ok", "c", NULL, "sum", 15);
	expect_field(s, "mal.ok", "count", 4);
	json_decref(s);
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		cr_expect_eq(rejected(reasons[i]), 1, "rejected{reason=\"%s\"} = %g, want 1", reasons[i],
			     rejected(reasons[i]));
	total = dh_metric(&dmn, "dattss_rejected_lines_total", NULL, &n);
	cr_expect_eq(total, 6, "rejected lines over all reasons = %g, want 6", total);
	root = get_current(CURRENT);
	cr_expect_null(find_process(root, "default"), "a rejected line created a series");
	cr_expect_eq(json_array_size(json_object_get(find_process(root, "mal"), "counters")), 1,
		     "rejected lines created series in process mal");
	json_decref(root);
	passed();
}

/* ---- the original DaTtSs UDP line ------------------------------------------------------------------------------ */

/* A user created through the operator API (DATA_DIR/admin.token): its credentials (caller owns). */
static json_t *add_user(const char *email)
{
	char path[256], tok[128] = "", body[160];
	struct dh_reply r;
	json_t *j;
	FILE *f;

	snprintf(path, sizeof(path), "%s/admin.token", dmn.data_dir);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_not_null(fgets(tok, sizeof(tok), f));
	fclose(f);
	tok[strcspn(tok, "\r\n")] = '\0';
	snprintf(body, sizeof(body), "{\"email\":\"%s\"}", email);
	cr_assert_eq(dh_request(&dmn, "POST", "/api/v1/admin/users", tok, body, strlen(body), &r), 0);
	cr_assert_eq(r.status, 201, "POST /api/v1/admin/users: %d %s", r.status, r.body);
	j = json_loadb(r.body, r.body_len, 0, NULL);
	dh_reply_free(&r);
	cr_assert(json_is_string(json_object_get(j, "api_key")), "no api_key in the new user's credentials");
	return j;
}

Test(daemon, dattss_line_with_auth_lands_under_its_user)
{
	char auth[128], bad[128], dgram[1024];
	const char *labels_mac[] = { "reason=\"auth_mac\"", NULL };
	const char *labels_dattss[] = { "protocol=\"dattss\"", NULL };
	json_t *u42 = add_user("u42@example.com");
	const char *key42 = json_string_value(json_object_get(u42, "api_key"));
	int n = dts_dattss_auth((const uint8_t *)DH_SECRET, strlen(DH_SECRET), "u42@example.com", 15, auth,
				sizeof(auth));
	int fd = udp_socket();
	json_t *s, *root;

	cr_assert_gt(n, 0, "dts_dattss_auth: %d", n);
	/* The token the server prints for the user is the one derived from the secret. */
	cr_expect_str_eq(json_string_value(json_object_get(u42, "auth")), auth);
	/* The same token with its last hex digit changed: well formed, wrong MAC. */
	strcpy(bad, auth);
	bad[n - 1] = bad[n - 1] == '0' ? '1' : '0';
	snprintf(dgram, sizeof(dgram),
		 "%s:web:hits:3c\n"
		 "%s:web:hits:4c!\n" /* '!' marks emphasis; the value still counts */
		 "%s:web:lat:153ms\n"
		 "%s:web:hits:100c\n" /* bad AUTH: rejected */
		 "dt.mixed:1|c", /* statsd on the same port, in the same datagram: the listener's user */
		 auth, auth, auth, bad);
	send_udp(fd, dgram);
	close(fd);

	s = expect_series_as(key42, CURRENT, "web", "hits", "c", NULL, "sum", 7);
	expect_field(s, "u42/web.hits", "count", 2);
	json_decref(s);
	s = expect_series_as(key42, CURRENT, "web", "lat", "ms", NULL, "count", 1);
	expect_field(s, "u42/web.lat", "max", 153);
	json_decref(s);
	s = expect_series(CURRENT, "dt", "mixed", "c", NULL, "sum", 1);
	json_decref(s);

	cr_expect_eq(dh_metric(&dmn, "dattss_rejected_lines_total", labels_mac, NULL), 1, "auth_mac rejects != 1");
	cr_expect_eq(dh_metric(&dmn, "dattss_decoded_lines_total", labels_dattss, NULL), 3,
		     "decoded DaTtSs lines != 3");
	/* Tenancy: each user sees only its own series. */
	root = get_current(CURRENT);
	cr_expect_null(find_process(root, "web"), "user u42's process is visible to the default user");
	json_decref(root);
	root = get_current_as(key42, CURRENT);
	cr_expect_str_eq(json_string_value(json_object_get(root, "user")), "u42@example.com");
	cr_expect_null(find_process(root, "dt"), "the default user's process is visible to user u42");
	json_decref(root);
	json_decref(u42);
	passed();
}

/* ---- HTTP surface ------------------------------------------------------------------------------------------------ */

/* Request, assert the status, and return the body parsed as a JSON object (caller owns). */
static json_t *http_json(const char *method, const char *path, int want_status)
{
	struct dh_reply r;
	json_t *j;
	int rc = dh_http(&dmn, method, path, &r);

	cr_assert_eq(rc, 0, "%s %s: %s", method, path, strerror(-rc));
	cr_assert_eq(r.status, want_status, "%s %s: status %d, want %d; body %s", method, path, r.status, want_status,
		     r.body);
	cr_expect(strcasestr(r.headers, "\r\nContent-Type: application/json") != NULL,
		  "%s %s: not application/json:\n%s", method, path, r.headers);
	j = json_loadb(r.body, r.body_len, 0, NULL);
	cr_assert(json_is_object(j), "%s %s: body is not a JSON object: %s", method, path, r.body);
	dh_reply_free(&r);
	return j;
}

/* Assert an error reply {"error": "...mention..."}. */
static void expect_error(const char *method, const char *path, int status, const char *mention)
{
	json_t *j = http_json(method, path, status);
	const char *msg = json_string_value(json_object_get(j, "error"));

	cr_assert_not_null(msg, "%s %s: no \"error\" string", method, path);
	cr_expect(strstr(msg, mention) != NULL, "%s %s: error \"%s\" does not mention '%s'", method, path, msg,
		  mention);
	json_decref(j);
}

Test(daemon, http_endpoints_and_errors)
{
	json_t *j = http_json("GET", "/healthz", 200);
	struct dh_reply r;

	cr_expect(json_is_true(json_object_get(j, "ok")));
	cr_expect(json_is_integer(json_object_get(j, "uptime_s")) &&
		  json_integer_value(json_object_get(j, "uptime_s")) >= 0);
	cr_expect(json_is_integer(json_object_get(j, "series")) &&
		  json_integer_value(json_object_get(j, "series")) >= 0);
	json_decref(j);

	/* ?user= names nobody: the key decides whose state it is */
	j = http_json("GET", CURRENT "?user=nobody", 200);
	cr_expect_str_eq(json_string_value(json_object_get(j, "user")), "default");
	cr_expect(json_is_array(json_object_get(j, "processes")) &&
		  json_array_size(json_object_get(j, "processes")) == 0);
	cr_expect_eq(json_integer_value(json_object_get(j, "window_s")), 60);
	cr_expect(json_is_integer(json_object_get(j, "now_ms")));
	json_decref(j);

	expect_error("GET", "/no/such/path", 404, "/no/such/path");
	expect_error("GET", CURRENT "?process=bad/process", 400, "process");
	expect_error("GET", CURRENT "?process=", 400, "process");
	expect_error("POST", CURRENT, 405, "POST");
	expect_error("DELETE", "/healthz", 405, "DELETE");

	cr_assert_eq(dh_http(&dmn, "GET", "/metrics", &r), 0);
	cr_expect_eq(r.status, 200);
	cr_expect(strcasestr(r.headers, "\r\nContent-Type: text/plain") != NULL, "%s", r.headers);
	cr_expect(strstr(r.body, "# TYPE dattss_received_packets_total counter\n") != NULL);
	cr_expect(strstr(r.body, "dattss_received_packets_total{worker=\"stream\"} ") != NULL);
	cr_expect(strstr(r.body, "\ndattss_uptime_seconds ") != NULL);
	dh_reply_free(&r);
	passed();
}

/* ---- shutdown ---------------------------------------------------------------------------------------------------- */

/* "2026-11-22T06:53Z", the minute format of the daemon's "minute ... closed:" log line. */
static void minute_text(int64_t ms, char *out, size_t size)
{
	time_t t = (time_t)(ms / 60000 * 60);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%MZ", &tm);
}

/* True when the log says minute (of ms) was closed with at least one series. */
static bool minute_closed_with_data(const char *log, int64_t ms)
{
	char minute[32], needle[64];
	const char *p;
	unsigned long series;

	minute_text(ms, minute, sizeof(minute));
	snprintf(needle, sizeof(needle), "minute %s closed: ", minute);
	p = strstr(log, needle);
	return p && sscanf(p + strlen(needle), "%lu series", &series) == 1 && series >= 1;
}

Test(daemon, sigterm_exits_zero_and_closes_the_open_minute)
{
	int fd = udp_socket();
	int64_t t0, t1, start;
	double samples = 0;
	char *log;
	const char *sig;
	int rc;

	t0 = dh_now_ms();
	send_udp(fd, "term.req:1|c");
	close(fd);
	/* Wait until a worker has aggregated it (so it is in the engine, not in a socket buffer). */
	for (int i = 0; i < 50 && !(samples >= 1); i++, dh_sleep_ms(100))
		samples = dh_metric(&dmn, "dattss_samples_total", NULL, NULL);
	cr_assert_geq(samples, 1, "the datagram was never aggregated");
	t1 = dh_now_ms();

	start = dh_now_ms();
	stopped_by_test = true;
	rc = dh_stop(&dmn, 5000);
	cr_assert_eq(rc, 0, "dattssd did not exit within 5 s of SIGTERM (killed)");
	cr_expect(dh_now_ms() - start < 5000);
	cr_assert(WIFEXITED(dmn.status), "dattssd died of signal %d", WTERMSIG(dmn.status));
	cr_assert_eq(WEXITSTATUS(dmn.status), 0, "dattssd exit status %d", WEXITSTATUS(dmn.status));

	log = dh_read_log(&dmn);
	cr_assert_not_null(log);
	sig = strstr(log, "SIGTERM received");
	cr_assert_not_null(sig, "the log does not mention SIGTERM");
	cr_expect(strstr(sig, "closed:") != NULL, "no minute was closed after SIGTERM");
	/* The minute holding term.req was closed with its data (at shutdown, or normally if it ended meanwhile). */
	cr_expect(minute_closed_with_data(log, t0) || minute_closed_with_data(log, t1),
		  "no 'minute ... closed: N series' line with N >= 1 for the minute of the data");
	free(log);
	passed();
}

/* ---- UDP receive batching (receive.c, recv_coalesce_us) ---------------------------------------------------------- */

/* Lines the daemon's receive threads have taken from their sockets so far (counted live, before any tick). */
static double lines_received(void)
{
	unsigned n = 0;
	double v = dh_metric(&dmn, "dattss_received_lines_total", NULL, &n);

	cr_assert_gt(n, 0, "/metrics has no dattss_received_lines_total");
	return v;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/*
 * A worker that coalesces (sleeps after a short burst so that the next recvmmsg takes more) must neither lose nor
 * stall anything: bursts with pauses between them, at rates where the sleep engages, all counted exactly.
 */
Test(daemon, ten_thousand_datagrams_in_bursts_are_all_counted)
{
	enum { SOCKS = 4, ROUNDS = 10, PER_ROUND = 1000 };
	int fds[SOCKS];
	double before = lines_received(), got = before;
	json_t *s;

	for (int i = 0; i < SOCKS; i++) /* 4 source ports: the SO_REUSEPORT hash spreads them over the workers */
		fds[i] = udp_socket();
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < PER_ROUND; i++)
			send_udp(fds[i % SOCKS], "burst.hits:1|c");
		dh_sleep_ms(2);
	}
	for (int i = 0; i < SOCKS; i++)
		close(fds[i]);
	for (int i = 0; i < WAIT_MS / 10 && got < before + ROUNDS * PER_ROUND; i++, dh_sleep_ms(10))
		got = lines_received();
	cr_assert_eq(got - before, ROUNDS * PER_ROUND, "the workers received %.0f of %d lines", got - before,
		     ROUNDS * PER_ROUND);
	s = expect_series(CURRENT, "burst", "hits", "c", NULL, "sum", ROUNDS * PER_ROUND);
	expect_field(s, "burst.hits", "count", ROUNDS * PER_ROUND);
	json_decref(s);
	passed();
}

/*
 * After a burst has taught the workers a high arrival rate, single datagrams sent one at a time must each be taken
 * from the socket promptly: the coalescing sleep is bounded by recv_coalesce_us (10 ms by default), a quiet worker
 * blocks in recvmmsg and is woken by the datagram. The median bound is the real one; the maximum only catches a
 * datagram stuck until the next one or until a timeout, with room for the shared test machine.
 */
Test(daemon, sparse_datagrams_are_received_within_a_bounded_time)
{
	enum { N = 21 };
	int fd = udp_socket();
	int64_t lat[N];
	double want = lines_received();

	for (int i = 0; i < 2000; i++)
		send_udp(fd, "sparse.warm:1|c");
	want += 2000;
	for (int i = 0; i < WAIT_MS / 10 && lines_received() < want; i++)
		dh_sleep_ms(10);
	cr_assert_eq(lines_received(), want, "the warm-up burst was not received in full");
	for (int k = 0; k < N; k++) {
		int64_t t0 = dh_now_ms();

		send_udp(fd, "sparse.one:1|c");
		want += 1;
		while (lines_received() < want && dh_now_ms() - t0 < WAIT_MS)
			dh_sleep_ms(1);
		lat[k] = dh_now_ms() - t0;
		cr_assert_eq(lines_received(), want, "datagram %d of %d not received after %lld ms", k + 1, N,
			     (long long)lat[k]);
	}
	close(fd);
	qsort(lat, N, sizeof(lat[0]), cmp_i64);
	cr_expect_lt(lat[N / 2], 50, "median time to receive one datagram: %lld ms", (long long)lat[N / 2]);
	cr_expect_lt(lat[N - 1], 2000, "slowest datagram: %lld ms", (long long)lat[N - 1]);
	passed();
}

/* ---- udp_backpressure: a saturated worker leaves its socket unread --------------------------------------------- */

enum { BP_NAMES = 40000, BP_PER_DGRAM = 50 };

/* The receive buffer the daemon can get: root forces 8 MiB (SO_RCVBUFFORCE), anyone else is capped by rmem_max. */
static bool bp_buffer_too_small(void)
{
	FILE *f = fopen("/proc/sys/net/core/rmem_max", "r");
	long v = 0;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 0;
		fclose(f);
	}
	return geteuid() != 0 && v < (4L << 20);
}

/*
 * Start one worker with tables of 1,024 buckets that never grow (each takes 896 series at most and is handed over
 * at 512), a tick long enough that only full tables are handed over, and 4 datagrams per recvmmsg (one call adds at
 * most 200 series to a saturated table: within its room), with udp_backpressure set by flag; send BP_NAMES distinct
 * counters in a burst (800 datagrams of 50 lines, from one socket) and wait until every value is either aggregated or
 * dropped. Fills in what /metrics says of the run.
 */
static void bp_run(const char *flag, double *samples, double *table_full, double *paused)
{
	static const char *const tf[] = { "reason", "table_full", NULL };
	const char *const extra[] = { "--workers", "1", "--table-capacity", "1024", "--table-capacity-max", "0",
				      "--tick-ms", "60000", "--recv-batch", "4", flag, NULL };
	struct dh_daemon d;
	char err[256], dgram[BP_PER_DGRAM * 24];
	int rc = dh_start(&d, extra, err, sizeof(err)), fd;
	double got = -1, prev;

	cr_assert_eq(rc, 0, "cannot start %s %s: %s", DATTSSD_PATH, flag, err);
	fd = dh_udp_socket(&d);
	cr_assert_geq(fd, 0, "udp socket: %s", strerror(-fd));
	for (int i = 0; i < BP_NAMES; i += BP_PER_DGRAM) {
		size_t len = 0;

		for (int k = i; k < i + BP_PER_DGRAM; k++)
			len += (size_t)snprintf(dgram + len, sizeof(dgram) - len, "bp.c%d:1|c\n", k);
		rc = dh_udp_send(fd, dgram, len);
		cr_assert_eq(rc, 0, "udp send: %s", strerror(-rc));
	}
	close(fd);
	/* Settled: every line received, and the aggregated count unchanged for half a second. */
	for (int64_t deadline = dh_now_ms() + WAIT_MS; dh_now_ms() < deadline; dh_sleep_ms(500)) {
		prev = got;
		got = dh_metric(&d, "dattss_samples_total", NULL, NULL);
		if (dh_metric(&d, "dattss_received_lines_total", NULL, NULL) >= BP_NAMES && got == prev)
			break;
	}
	*samples = got;
	*table_full = dh_metric(&d, "dattss_dropped_total", tf, NULL);
	*paused = dh_metric(&d, "dattss_receive_paused_seconds_total", NULL, NULL);
	cr_expect_eq(dh_metric(&d, "dattss_received_lines_total", NULL, NULL), BP_NAMES,
		     "%s: the worker received %.0f of %d lines", flag,
		     dh_metric(&d, "dattss_received_lines_total", NULL, NULL), BP_NAMES);
	cr_expect_eq(*samples + *table_full, BP_NAMES, "%s: %.0f aggregated + %.0f dropped of %d lines", flag, *samples,
		     *table_full, BP_NAMES);
	dh_stop(&d, 10000);
	if (*samples + *table_full != BP_NAMES)
		dh_dump_log(&d, stderr);
	dh_destroy(&d);
}

/*
 * A burst of new series faster than the merger folds tables: with udp_backpressure (the default) the worker leaves
 * the datagrams in its socket while its tables are all with the merger, and every value is aggregated; without it,
 * the same burst overflows the tables and values are dropped (table_full), which is what shows the burst does
 * saturate the worker.
 */
/* No .timeout: with one, Criterion 2.4 leaked 48 bytes in its runner under LeakSanitizer; every wait here is bounded
 * (WAIT_MS, the harness's I/O timeouts) and ctest has its own limit. */
TestSuite(backpressure);

Test(backpressure, a_saturated_worker_waits_and_loses_nothing)
{
	double samples, table_full, paused;

	if (bp_buffer_too_small())
		cr_skip_test("net.core.rmem_max below 4 MiB and not root: the socket cannot queue the burst");
	bp_run("--udp-backpressure", &samples, &table_full, &paused);
	cr_expect_eq(samples, BP_NAMES, "with backpressure: %.0f of %d values aggregated", samples, BP_NAMES);
	cr_expect_eq(table_full, 0, "with backpressure: %.0f values dropped as table_full", table_full);
	cr_expect_gt(paused, 0, "the worker never paused: the burst did not saturate it");
	bp_run("--no-udp-backpressure", &samples, &table_full, &paused);
	cr_expect_gt(table_full, 0, "without backpressure the burst lost nothing: it did not saturate the worker");
	cr_expect_eq(paused, 0, "without backpressure the worker paused for %.3f s", paused);
}

/* ---- command line (no daemon left running) ----------------------------------------------------------------------- */

Test(cli, help_exits_zero_and_lists_flags, .timeout = 20)
{
	const char *argv[] = { DATTSSD_PATH, "--help", NULL };
	char *out = NULL, *err = NULL;
	int status = -1, rc = dh_run(argv, 5000, &status, &out, &err);

	cr_assert_eq(rc, 0, "running dattssd --help: %s", strerror(-rc));
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "dattssd --help: status 0x%x", (unsigned)status);
	cr_expect(out && strstr(out, "--statsd-port") != NULL, "--help does not mention --statsd-port:\n%s",
		  out ? out : "");
	free(out);
	free(err);
}

Test(cli, bad_flag_value_exits_nonzero_naming_the_key, .timeout = 20)
{
	static const struct {
		const char *args[3];
		const char *key; /* the message must name it (flag spelling) */
	} cases[] = {
		{ { "--workers", "0" }, "workers" },
		{ { "--tick-ms=abc" }, "tick-ms" },
		{ { "--statsd-port=70000" }, "statsd-port" },
		{ { "--log-level", "loud" }, "log-level" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* Ports 0: if a value were wrongly accepted, the daemon would not take real ports while it runs. */
		const char *argv[] = { DATTSSD_PATH, "--statsd-port=0", "--http-port=0", cases[i].args[0],
				       cases[i].args[1], cases[i].args[2], NULL };
		char *out = NULL, *err = NULL;
		int status = -1, rc = dh_run(argv, 3000, &status, &out, &err);

		cr_assert_eq(rc, 0, "%s: dattssd did not exit (%s)", cases[i].args[0], strerror(-rc));
		/* docs/configuration.md: a bad setting exits with status 2 without starting anything. */
		cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 2, "%s: wait status 0x%x, want exit status 2",
			  cases[i].args[0], (unsigned)status);
		cr_expect(err && strstr(err, cases[i].key) != NULL, "%s: stderr does not name '%s':\n%s",
			  cases[i].args[0], cases[i].key, err ? err : "");
		free(out);
		free(err);
	}
}
