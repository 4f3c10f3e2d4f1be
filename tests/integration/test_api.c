/*
 * test_api.c - integration tests of the query API (docs/api.md) against the real dattssd: authentication, every
 * parameter error, series and daily answers equal to the values sent, errors and warnings (GET and live over
 * Server-Sent Events), the original drivers' PUT /agg, isolation between two users, Prometheus and Graphite export.
 *
 * Each test gets its own daemon (fixture), as in test_daemon.c. Where a test needs stored minutes quickly it sends
 * statsd lines with a DogStatsD timestamp three minutes in the past: the merger hands data for a closed minute to the
 * store at once ("late" data, merged into the stored minute), so the point is readable within a second instead of
 * after the minute closes. The daily view's past week is written into the stopped daemon's store with the storage API,
 * then the daemon is started again on it. Only the Graphite test waits for a real minute to close (up to ~62 s); its
 * carbon listener starts only after dattssd failed to reach it, so the retry and the queue are tested too.
 *
 * Second users come from the operator API (POST /api/v1/admin/users with DATA_DIR/admin.token); their native-protocol
 * credentials drive libdattss for errors and warnings.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dattss.h"
#include "dts/decode.h"
#include "dts/sketch.h"
#include "dts/storage.h"
#include "integration/daemon_harness.h"

#define WAIT_MS 15000 /* longest wait for data to show (a slot, a hand-over, a store write), with room */

static struct dh_daemon dmn;
static bool test_passed;

static void passed(void)
{
	char state[96];

	cr_assert(dh_alive(&dmn), "dattssd died during the test: %s", dh_state_text(&dmn, state, sizeof(state)));
	test_passed = true;
}

static void start_with(const char *const *extra)
{
	char err[256];
	int rc;

	test_passed = false;
	rc = dh_start(&dmn, extra, err, sizeof(err));
	cr_assert_eq(rc, 0, "cannot start %s: %s", DATTSSD_PATH, err);
}

static void daemon_up(void)
{
	start_with(NULL);
}

static void daemon_down(void)
{
	dh_stop(&dmn, 5000);
	if (!test_passed)
		dh_dump_log(&dmn, stderr);
	dh_destroy(&dmn);
}

TestSuite(api, .init = daemon_up, .fini = daemon_down, .timeout = 60);

/* ---- helpers ------------------------------------------------------------------------------------------------- */

/* A request with the given key ("" none); asserts it got an answer. */
static struct dh_reply request(const char *method, const char *path, const char *key, const char *body)
{
	struct dh_reply r;
	int rc = dh_request(&dmn, method, path, key, body, body ? strlen(body) : 0, &r);

	cr_assert_eq(rc, 0, "%s %s: %s", method, path, strerror(-rc));
	return r;
}

/* Request, assert the status, return the body as JSON (caller owns). */
static json_t *call(const char *method, const char *path, const char *key, const char *body, int want)
{
	struct dh_reply r = request(method, path, key, body);
	json_t *j;

	cr_assert_eq(r.status, want, "%s %s: status %d, want %d; body %s", method, path, r.status, want, r.body);
	j = json_loadb(r.body, r.body_len, 0, NULL);
	cr_assert_not_null(j, "%s %s: body is not JSON: %s", method, path, r.body);
	dh_reply_free(&r);
	return j;
}

static json_t *get(const char *path, const char *key)
{
	return call("GET", path, key, NULL, 200);
}

/* Assert a 400 whose message starts with "param:". */
static void expect_param_error(const char *method, const char *path, const char *key, const char *body,
			       const char *param)
{
	json_t *j = call(method, path, key, body, 400);
	const char *msg = json_string_value(json_object_get(j, "error"));
	size_t n = strlen(param);

	cr_assert_not_null(msg, "%s %s: no \"error\" in the reply", method, path);
	cr_expect(strncmp(msg, param, n) == 0 && msg[n] == ':', "%s %s: error \"%s\" does not start with '%s:'", method,
		  path, msg, param);
	json_decref(j);
}

static const char *admin_token(void)
{
	static char tok[128];
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/admin.token", dmn.data_dir);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_not_null(fgets(tok, sizeof(tok), f));
	fclose(f);
	tok[strcspn(tok, "\r\n")] = '\0';
	return tok;
}

/* A second user: its credentials {"user","api_key","key_id","secret","auth"} (caller owns). */
static json_t *add_user(const char *email)
{
	char body[256];

	snprintf(body, sizeof(body), "{\"email\":\"%s\"}", email);
	return call("POST", "/api/v1/admin/users", admin_token(), body, 201);
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	cr_assert_not_null(s, "no string \"%s\"", k);
	return s;
}

static void send_udp(const char *dgram)
{
	int fd = dh_udp_socket(&dmn), rc;

	cr_assert_geq(fd, 0, "udp socket: %s", strerror(-fd));
	rc = dh_udp_send(fd, dgram, strlen(dgram));
	cr_assert_eq(rc, 0, "udp send: %s", strerror(-rc));
	close(fd);
}

/* The object of array arr whose field equals value (borrowed), or NULL. */
static json_t *find_by(json_t *arr, const char *field, const char *value)
{
	size_t i;
	json_t *o;

	json_array_foreach(arr, i, o) {
		const char *v = json_string_value(json_object_get(o, field));

		if (v && strcmp(v, value) == 0)
			return o;
	}
	return NULL;
}

/* The "current" object of process/counter/type in a /api/v1/current reply (borrowed), or NULL. */
static json_t *current_of(json_t *root, const char *process, const char *counter, const char *type)
{
	json_t *p = find_by(json_object_get(root, "processes"), "process", process), *c;
	size_t i;

	json_array_foreach(json_object_get(p, "counters"), i, c) {
		if (strcmp(json_string_value(json_object_get(c, "counter")), counter) == 0 &&
		    strcmp(json_string_value(json_object_get(c, "type")), type) == 0)
			return json_object_get(c, "current");
	}
	return NULL;
}

/* Poll /api/v1/current until process/counter/type's current.field == want; returns that reply (caller owns). */
static json_t *wait_current(const char *key, const char *process, const char *counter, const char *type,
			    const char *field, double want)
{
	int64_t deadline = dh_now_ms() + WAIT_MS;
	double got = NAN;

	for (;;) {
		json_t *root = get("/api/v1/current", key);
		json_t *c = current_of(root, process, counter, type);

		got = dh_num(c, field);
		if (got == want)
			return root;
		json_decref(root);
		cr_assert(dh_now_ms() < deadline, "%s/%s (%s) current.%s = %.17g, want %.17g after %d ms", process, counter,
			  type, field, got, want, WAIT_MS);
		dh_sleep_ms(100);
	}
}

/* Poll a /api/v1/series URL until a point at t has count == want; returns the point (caller owns). */
static json_t *wait_point(const char *path, const char *key, int64_t t, double want_count)
{
	int64_t deadline = dh_now_ms() + WAIT_MS;

	for (;;) {
		json_t *root = get(path, key), *p;
		size_t i;

		json_array_foreach(json_object_get(root, "points"), i, p) {
			if (json_integer_value(json_object_get(p, "t")) == t && dh_num(p, "count") == want_count) {
				json_incref(p);
				json_decref(root);
				return p;
			}
		}
		json_decref(root);
		cr_assert(dh_now_ms() < deadline, "%s: no point at %lld with count %g after %d ms", path, (long long)t,
			  want_count, WAIT_MS);
		dh_sleep_ms(100);
	}
}

static void expect_num(json_t *o, const char *what, const char *field, double want)
{
	double got = dh_num(o, field);

	cr_expect(fabs(got - want) <= 1e-9 * fmax(1, fabs(want)), "%s: %s = %.17g, want %.17g", what, field, got, want);
}

/* Within the sketch's 1% (a quantile of a handful of values is one of them, mapped to its bin's representative). */
static void expect_approx(json_t *o, const char *what, const char *field, double want)
{
	double got = dh_num(o, field);

	cr_expect(fabs(got - want) <= 0.0101 * fabs(want), "%s: %s = %.17g, want %.17g within 1%%", what, field, got,
		  want);
}

static void expect_null(json_t *o, const char *what, const char *field)
{
	cr_expect(json_is_null(json_object_get(o, field)), "%s: %s is not null", what, field);
}

static void date_text(int64_t t, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, len, "%Y-%m-%d", &tm);
}

/* ---- raw Server-Sent Events client ------------------------------------------------------------------------------ */

struct sse {
	int fd;
	char buf[1 << 18];
	size_t len;
};

/* Open GET /api/v1/stream (extra: more header lines, "" none) and check the response head. */
static void sse_open(struct sse *s, const char *key, const char *extra)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(dmn.http_port) };
	char req[512];
	int n;

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	s->len = 0;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(s->fd, 0);
	cr_assert_eq(connect(s->fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
	n = snprintf(req, sizeof(req), "GET /api/v1/stream HTTP/1.0\r\nAuthorization: Bearer %s\r\n%s\r\n", key, extra);
	cr_assert_eq(dh_write_all(s->fd, req, (size_t)n), 0);
}

/* Read until buf contains needle (after position from) or timeout; returns where it starts, or NULL. */
static char *sse_wait(struct sse *s, size_t from, const char *needle, int timeout_ms)
{
	int64_t deadline = dh_now_ms() + timeout_ms;

	for (;;) {
		char *p;
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
		ssize_t r;
		int64_t left;

		s->buf[s->len] = '\0';
		p = from < s->len ? strstr(s->buf + from, needle) : NULL;
		if (p)
			return p;
		left = deadline - dh_now_ms();
		if (left <= 0 || s->len + 1 >= sizeof(s->buf) || poll(&pfd, 1, (int)left) != 1)
			return NULL;
		r = recv(s->fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len, 0);
		if (r <= 0)
			return NULL;
		s->len += (size_t)r;
	}
}

/* The JSON of the first "data:" line after p (caller owns). */
static json_t *sse_data(const char *p)
{
	const char *d = strstr(p, "data: "), *end;
	json_t *j;

	cr_assert_not_null(d, "no data line after: %.200s", p);
	d += 6;
	end = strchr(d, '\n');
	cr_assert_not_null(end);
	j = json_loadb(d, (size_t)(end - d), 0, NULL);
	cr_assert_not_null(j, "data is not JSON: %.*s", (int)(end - d), d);
	return j;
}

/* ---- authentication ---------------------------------------------------------------------------------------------- */

Test(api, every_endpoint_needs_the_key)
{
	static const char *const paths[] = {
		"/api/v1/current",
		"/api/v1/series?process=a&counter=b&type=c",
		"/api/v1/daily?process=a&counter=b&type=c",
		"/api/v1/events",
		"/api/v1/stream",
	};
	const char *key = dh_api_key(&dmn);
	char path[256];
	json_t *j;

	cr_assert(key[0], "dattssd wrote no DATA_DIR/api.key");
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct dh_reply r = request("GET", paths[i], "", NULL);

		cr_expect_eq(r.status, 401, "GET %s without a key: %d", paths[i], r.status);
		cr_expect(strcasestr(r.headers, "\r\nWWW-Authenticate: Bearer") != NULL, "GET %s: no WWW-Authenticate",
			  paths[i]);
		dh_reply_free(&r);
		r = request("GET", paths[i], "dk_notakey", NULL);
		cr_expect_eq(r.status, 401, "GET %s with a wrong key: %d", paths[i], r.status);
		dh_reply_free(&r);
	}
	/* ?access_token= (EventSource cannot send headers) works like the header; ?user= names nobody */
	snprintf(path, sizeof(path), "/api/v1/current?access_token=%s&user=someone.else", key);
	j = get(path, "");
	cr_expect_str_eq(str(j, "user"), "default");
	json_decref(j);
	passed();
}

/* ---- every parameter error ---------------------------------------------------------------------------------------- */

Test(api, every_bad_parameter_is_a_400_naming_it)
{
	static const struct {
		const char *path, *param;
	} cases[] = {
		{ "/api/v1/current?process=a/b", "process" },
		{ "/api/v1/current?process=", "process" },
		{ "/api/v1/series", "process" },
		{ "/api/v1/series?process=a%7Cb&counter=x&type=c", "process" },
		{ "/api/v1/series?process=a&type=c", "counter" },
		{ "/api/v1/series?process=a&counter=&type=c", "counter" },
		{ "/api/v1/series?process=a&counter=x", "type" },
		{ "/api/v1/series?process=a&counter=x&type=h", "type" },
		{ "/api/v1/series?process=a&counter=x&type=c&tags=,a", "tags" },
		{ "/api/v1/series?process=a&counter=x&type=c&tags=a%7Cb", "tags" },
		{ "/api/v1/series?process=a&counter=x&type=c&res=day", "res" },
		{ "/api/v1/series?process=a&counter=x&type=c&from=yesterday", "from" },
		{ "/api/v1/series?process=a&counter=x&type=c&from=-5", "from" },
		{ "/api/v1/series?process=a&counter=x&type=c&to=2024-13-01T00:00:00Z", "to" },
		{ "/api/v1/series?process=a&counter=x&type=c&to=2024-02-30T00:00:00Z", "to" },
		{ "/api/v1/series?process=a&counter=x&type=c&to=2024-05-01T00:00:00", "to" },
		{ "/api/v1/series?process=a&counter=x&type=c&from=1700000000&to=1700000000", "from" },
		{ "/api/v1/series?process=a&counter=x&type=c&from=1700000000&to=1600000000", "from" },
		{ "/api/v1/series?process=a&counter=x&type=c&from=1700000000&to=1702000000", "from" }, /* 33,334 minutes */
		{ "/api/v1/daily", "process" },
		{ "/api/v1/daily?process=a&type=c", "counter" },
		{ "/api/v1/daily?process=a&counter=x&type=x", "type" },
		{ "/api/v1/daily?process=a&counter=x&type=c&tz_offset_min=east", "tz_offset_min" },
		{ "/api/v1/daily?process=a&counter=x&type=c&tz_offset_min=5000", "tz_offset_min" },
		{ "/api/v1/daily?process=a&counter=x&type=c&date=2024-02-30", "date" },
		{ "/api/v1/daily?process=a&counter=x&type=c&date=24-02-03", "date" },
		{ "/api/v1/daily?process=a&counter=x&type=c&date=2024-02-03T00:00:00Z", "date" },
		{ "/api/v1/events?kind=fatal", "kind" },
		{ "/api/v1/events?limit=0", "limit" },
		{ "/api/v1/events?limit=101", "limit" },
		{ "/api/v1/events?limit=ten", "limit" },
		{ "/api/v1/events?process=a%20b", "process" },
	};
	const char *key = dh_api_key(&dmn);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_param_error("GET", cases[i].path, key, NULL, cases[i].param);
	passed();
}

Test(api, sse_rejects_a_bad_last_event_id)
{
	struct sse *s = malloc(sizeof(*s));
	char *p;

	sse_open(s, dh_api_key(&dmn), "Last-Event-ID: twelve\r\n");
	p = sse_wait(s, 0, "\r\n\r\n", 5000);
	cr_assert_not_null(p, "no reply head");
	cr_expect(strncmp(s->buf, "HTTP/1.1 400", 12) == 0 || strncmp(s->buf, "HTTP/1.0 400", 12) == 0, "%.100s",
		  s->buf);
	cr_assert_not_null(sse_wait(s, 0, "}", 5000));
	cr_expect(strstr(s->buf, "\"error\":\"Last-Event-ID:") != NULL, "%s", s->buf);
	close(s->fd);
	free(s);
	passed();
}

/* ---- series and daily from statsd traffic --------------------------------------------------------------------------- */

Test(api, series_and_daily_equal_the_values_sent)
{
	const char *key = dh_api_key(&dmn);
	int64_t now = dh_now_ms() / 1000, t = (now / 60 - 3) * 60; /* a minute already closed: stored at once */
	char dgram[1024], path[512], date[16];
	json_t *p, *j, *cell;
	int64_t day_start, bucket;

	/* timer 10, 20, 30, 40 and counter 5 + 7 (with a sample rate: 2 * 4 = 8) in minute t, all in its first 5-second
	 * slot (late data of several slots of one minute is handed to the store as one record per slot) */
	snprintf(dgram, sizeof(dgram),
		 "hist.lat:10|ms|T%lld\nhist.lat:20|ms|T%lld\nhist.lat:30:40|ms|T%lld\n"
		 "hist.hits:5|c|T%lld\nhist.hits:7|c|T%lld\nhist.hits:2|c|@0.25|T%lld\n"
		 "hist.tagged:1|c|#b:2,a:1|T%lld",
		 (long long)t + 1, (long long)t + 2, (long long)t + 3, (long long)t + 1, (long long)t + 2, (long long)t + 3,
		 (long long)t + 4);
	send_udp(dgram);

	snprintf(path, sizeof(path), "/api/v1/series?process=hist&counter=lat&type=ms&from=%lld&to=%lld",
		 (long long)t - 600, (long long)t + 600);
	p = wait_point(path, key, t, 4);
	expect_num(p, "lat", "sum", 100);
	expect_num(p, "lat", "min", 10);
	expect_num(p, "lat", "max", 40);
	expect_num(p, "lat", "avg", 25);
	expect_num(p, "lat", "fst", 10);
	expect_num(p, "lat", "lst", 40);
	expect_approx(p, "lat", "bot10", 10); /* rank floor(0.1 * 3) = 0 */
	expect_approx(p, "lat", "top10", 30); /* rank floor(0.9 * 3) = 2 */
	expect_approx(p, "lat", "p50", 20);
	json_decref(p);

	snprintf(path, sizeof(path), "/api/v1/series?process=hist&counter=hits&type=c&from=%lld&to=%lld",
		 (long long)t, (long long)t + 60);
	p = wait_point(path, key, t, 6); /* 1 + 1 + 4 (the sampled value counts 1 / 0.25) */
	expect_num(p, "hits", "sum", 20);
	expect_null(p, "hits", "bot10");
	json_decref(p);
	/* the reply names what it answers; RFC 3339 times are accepted */
	j = get(path, key);
	cr_expect_str_eq(str(j, "res"), "minute");
	cr_expect_eq(json_integer_value(json_object_get(j, "from")), t);
	cr_expect_eq(json_array_size(json_object_get(j, "points")), 1);
	json_decref(j);
	/* tags in any order find the canonical series */
	snprintf(path, sizeof(path), "/api/v1/series?process=hist&counter=tagged&type=c&tags=b:2,a:1&from=%lld",
		 (long long)t);
	p = wait_point(path, key, t, 1);
	json_decref(p);
	j = get(path, key);
	cr_expect_str_eq(str(j, "tags"), "a:1,b:2");
	json_decref(j);

	/* hour resolution: the minute's hour holds the same aggregate */
	snprintf(path, sizeof(path), "/api/v1/series?process=hist&counter=lat&type=ms&res=hour&from=%lld&to=%lld",
		 (long long)(t / 3600 * 3600), (long long)(t / 3600 * 3600 + 3600));
	p = wait_point(path, key, t / 3600 * 3600, 4);
	expect_num(p, "lat hour", "sum", 100);
	expect_num(p, "lat hour", "max", 40);
	json_decref(p);

	/* daily, in UTC and at +90 minutes: the minute's 10-minute bucket holds it */
	date_text(t, date, sizeof(date));
	snprintf(path, sizeof(path), "/api/v1/daily?process=hist&counter=lat&type=ms&date=%s&tz_offset_min=0", date);
	j = get(path, key);
	day_start = t / 86400 * 86400;
	bucket = (t - day_start) / 600;
	cr_expect_eq(json_integer_value(json_object_get(j, "day_start")), day_start);
	cr_expect_eq(json_integer_value(json_object_get(j, "bucket_s")), 600);
	cr_expect_str_eq(str(j, "date"), date);
	cr_assert_eq(json_array_size(json_object_get(j, "today")), 144);
	cr_assert_eq(json_array_size(json_object_get(j, "week")), 144);
	cell = json_array_get(json_object_get(j, "today"), (size_t)bucket);
	cr_assert(json_is_object(cell), "today[%lld] is not an object", (long long)bucket);
	cr_expect_eq(json_integer_value(json_object_get(cell, "t")), day_start + bucket * 600);
	expect_num(cell, "today", "count", 4);
	expect_num(cell, "today", "sum", 100);
	expect_num(cell, "today", "avg", 25);
	expect_num(cell, "today", "min", 10);
	expect_num(cell, "today", "max", 40);
	expect_approx(cell, "today", "bot10", 10);
	expect_approx(cell, "today", "top10", 30);
	cr_expect(json_is_null(json_array_get(json_object_get(j, "week"), (size_t)bucket)), "a week with no data");
	json_decref(j);
	{
		int64_t local = t + 90 * 60, lday = local / 86400 * 86400;

		date_text(local, date, sizeof(date));
		snprintf(path, sizeof(path), "/api/v1/daily?process=hist&counter=lat&type=ms&date=%s&tz_offset_min=90",
			 date);
		j = get(path, key);
		cr_expect_eq(json_integer_value(json_object_get(j, "day_start")), lday - 90 * 60);
		cell = json_array_get(json_object_get(j, "today"), (size_t)((local - lday) / 600));
		expect_num(cell, "today +90", "sum", 100);
		json_decref(j);
	}
	passed();
}

/* ---- daily against week from a store written while the daemon was stopped ---------------------------------------- */

/* One stored minute of timer (process hist, counter lat) with the given values, plus counter hits = sum. */
static void store_minute(struct dts_storage *st, int64_t t, const double *v, size_t n)
{
	struct dts_minute_rec recs[2];
	struct dts_closed_minute cm = { .minute = t / 60, .n = 2, .recs = recs };
	int rc;

	memset(recs, 0, sizeof(recs));
	recs[0] = (struct dts_minute_rec){ .user = "default", .process = "hist", .counter = "lat", .tags = "",
					   .type = DTS_TIMER };
	recs[1] = (struct dts_minute_rec){ .user = "default", .process = "hist", .counter = "hits", .tags = "",
					   .type = DTS_COUNTER };
	dts_agg_init(&recs[0].agg);
	dts_agg_init(&recs[1].agg);
	dts_sketch_init(&recs[0].sketch);
	dts_sketch_init(&recs[1].sketch);
	dts_set_init(&recs[0].set);
	dts_set_init(&recs[1].set);
	for (size_t i = 0; i < n; i++) {
		dts_agg_add(&recs[0].agg, v[i], 1);
		cr_assert_eq(dts_sketch_add(&recs[0].sketch, v[i], 1), 0);
		dts_agg_add(&recs[1].agg, v[i], 1);
	}
	rc = dts_storage_write_minute(st, &cm);
	cr_assert_eq(rc, 0, "dts_storage_write_minute: %d", rc);
	dts_sketch_free(&recs[0].sketch);
}

Test(api, daily_against_the_past_week_from_the_store)
{
	const char *key;
	char keycopy[128], err[256], path[512], date[16];
	struct dts_storage_cfg cfg;
	struct dts_storage *st;
	int64_t today = (dh_now_ms() / 1000 / 86400 - 1) * 86400; /* yesterday 00:00 UTC: entirely in the past */
	double sum_k = 0;
	unsigned days = 0;
	json_t *j, *cell, *week;
	int rc;

	snprintf(keycopy, sizeof(keycopy), "%s", dh_api_key(&dmn));
	key = keycopy;
	cr_assert_eq(dh_stop(&dmn, 5000), 0);
	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dmn.data_dir;
	st = dts_storage_open(&cfg, err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
	/* day k (0 = the date, 1..7 = the days before; day 3 has no data): bucket 6 (01:00-01:10) holds two minutes with
	 * 10(k+1), 20(k+1) and 30(k+1); bucket 7 of the date only one value */
	for (int k = 0; k <= 7; k++) {
		int64_t b6 = today - (int64_t)k * 86400 + 6 * 600;
		double v1[2] = { 10.0 * (k + 1), 20.0 * (k + 1) }, v2[1] = { 30.0 * (k + 1) };

		if (k == 3)
			continue;
		store_minute(st, b6 + 60, v1, 2);
		store_minute(st, b6 + 180, v2, 1);
		if (k > 0) {
			sum_k += k + 1;
			days++;
		}
	}
	store_minute(st, today + 7 * 600, (double[]){ 5 }, 1);
	dts_storage_close(st);
	rc = dh_restart(&dmn, NULL, err, sizeof(err));
	cr_assert_eq(rc, 0, "restart: %s", err);

	date_text(today, date, sizeof(date));
	snprintf(path, sizeof(path), "/api/v1/daily?process=hist&counter=lat&type=ms&date=%s", date);
	j = get(path, key);
	cr_expect_eq(json_integer_value(json_object_get(j, "tz_offset_min")), 0);
	cell = json_array_get(json_object_get(j, "today"), 6);
	expect_num(cell, "today[6]", "count", 3);
	expect_num(cell, "today[6]", "sum", 60);
	expect_num(cell, "today[6]", "min", 10);
	expect_num(cell, "today[6]", "max", 30);
	expect_num(cell, "today[6]", "avg", 20);
	expect_approx(cell, "today[6]", "bot10", 10);
	expect_approx(cell, "today[6]", "top10", 20);
	cell = json_array_get(json_object_get(j, "today"), 7);
	expect_num(cell, "today[7]", "sum", 5);
	cr_expect(json_is_null(json_array_get(json_object_get(j, "today"), 5)), "today[5] has no data");
	week = json_array_get(json_object_get(j, "week"), 6);
	cr_assert(json_is_object(week), "week[6] is not an object");
	cr_expect_eq(json_integer_value(json_object_get(week, "t")), today + 6 * 600);
	cr_expect_eq(json_integer_value(json_object_get(week, "days")), days);
	/* field-by-field averages over the 6 days with data: every field scales with (k + 1) */
	expect_num(week, "week[6]", "count", 3);
	expect_num(week, "week[6]", "sum", 60 * sum_k / days);
	expect_num(week, "week[6]", "min", 10 * sum_k / days);
	expect_num(week, "week[6]", "max", 30 * sum_k / days);
	expect_num(week, "week[6]", "avg", 20 * sum_k / days);
	cr_expect(fabs(dh_num(week, "bot10") - 10 * sum_k / days) <= 0.0101 * 10 * sum_k / days, "week bot10 %g",
		  dh_num(week, "bot10"));
	cr_expect(fabs(dh_num(week, "top10") - 20 * sum_k / days) <= 0.0101 * 20 * sum_k / days, "week top10 %g",
		  dh_num(week, "top10"));
	cr_expect(json_is_null(json_array_get(json_object_get(j, "week"), 7)), "week[7]: only the date has data");
	json_decref(j);

	/* a counter's daily: exact sums; at tz +60 the date starts an hour earlier, so bucket 6 UTC is bucket 12 */
	snprintf(path, sizeof(path), "/api/v1/daily?process=hist&counter=hits&type=c&date=%s&tz_offset_min=60", date);
	j = get(path, key);
	cr_expect_eq(json_integer_value(json_object_get(j, "day_start")), today - 3600);
	cell = json_array_get(json_object_get(j, "today"), 12);
	expect_num(cell, "hits today[12]", "sum", 60);
	expect_null(cell, "hits today[12]", "bot10");
	week = json_array_get(json_object_get(j, "week"), 12);
	expect_num(week, "hits week[12]", "sum", 60 * sum_k / days);
	json_decref(j);
	passed();
}

/* ---- PUT /agg: the original drivers ---------------------------------------------------------------------------------- */

Test(api, put_agg_takes_what_the_original_driver_sends)
{
	const char *key = dh_api_key(&dmn);
	char auth[128], path[256];
	/* byte for byte what clients/nodejs/lib/dattss.js's do_commit sends (JSON.stringify of its commit object): a
	 * counter agg'ed 1, 1, 3 times; a timer of 10 values 12..300; a gauge */
	const char *body =
		"{\"nam\":\"legacy\",\"upt\":12.345,\"prt\":{\"c\":[{\"typ\":\"c\",\"nam\":\"hits\",\"pct\":0.1,\"sum\":5,"
		"\"cnt\":3,\"emp\":false,\"max\":3,\"min\":1,\"lst\":3,\"fst\":1,\"bot\":1,\"top\":3}],\"ms\":[{\"typ\":"
		"\"ms\",\"nam\":\"query\",\"pct\":0.1,\"sum\":1122,\"cnt\":10,\"emp\":true,\"max\":300,\"min\":12,\"lst\":"
		"80,\"fst\":12,\"bot\":20,\"top\":300}],\"g\":[{\"typ\":\"g\",\"nam\":\"queue\",\"pct\":0.1,\"sum\":17,"
		"\"cnt\":1,\"emp\":false,\"max\":17,\"min\":17,\"lst\":17,\"fst\":17,\"bot\":17,\"top\":17}]}}";
	json_t *j, *c;
	int n = dts_dattss_auth((const uint8_t *)DH_SECRET, strlen(DH_SECRET), "default", 7, auth, sizeof(auth));

	cr_assert_gt(n, 0);
	snprintf(path, sizeof(path), "/agg?auth=%s", auth);
	j = call("PUT", path, "", body, 200);
	cr_expect(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	/* a second commit 5 s later adds to the same minute; an empty one is a heartbeat */
	j = call("PUT", path, "", body, 200);
	json_decref(j);
	j = call("PUT", path, "", "{\"nam\":\"legacy\",\"upt\":17.4,\"prt\":{\"c\":[],\"ms\":[],\"g\":[]}}", 200);
	json_decref(j);

	j = wait_current(key, "legacy", "hits", "c", "count", 6);
	c = current_of(j, "legacy", "hits", "c");
	expect_num(c, "hits", "sum", 10);
	/* the live state of a counter has a rate, no min, max or last (docs/api.md) */
	cr_expect(json_is_null(json_object_get(c, "min")) && json_is_null(json_object_get(c, "max")) &&
			  json_is_null(json_object_get(c, "last")),
		  "hits: a counter's current state has no min, max or last");
	c = current_of(j, "legacy", "query", "ms");
	expect_num(c, "query", "count", 20);
	expect_num(c, "query", "sum", 2244);
	expect_num(c, "query", "min", 12);
	expect_num(c, "query", "max", 300);
	expect_num(c, "query", "avg", 112.2);
	/* 20 values: BOT10 reads rank 1 and TOP10 rank 17 of the two identical partials merged; each rebuilt partial has
	 * 12 at rank 0, 20 at ranks 0..1 (the driver's bot index ceil(0.1 * 10) = 1) ... so rank 1 of the union is 12
	 * or 20, and rank 17 lies between the driver's top index 9 (= max, 300) and rank 8 */
	cr_expect(dh_num(c, "bot10") >= 12 * 0.99 && dh_num(c, "bot10") <= 20 * 1.01, "bot10 %g", dh_num(c, "bot10"));
	cr_expect(dh_num(c, "top10") > 20 && dh_num(c, "top10") <= 300 * 1.01, "top10 %g", dh_num(c, "top10"));
	c = current_of(j, "legacy", "queue", "g");
	expect_num(c, "queue", "last", 17);
	/* the process: its uptime, online */
	c = find_by(json_object_get(j, "processes"), "process", "legacy");
	cr_expect(json_is_true(json_object_get(c, "online")));
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(c, "stats"), "uptime_s")), 17);
	json_decref(j);
	passed();
}

Test(api, put_agg_errors_say_what_is_wrong)
{
	static const struct {
		const char *body;
		int status;
		const char *error; /* prefix */
	} cases[] = {
		{ "{\"nam\":", 400, "body: not JSON" },
		{ "[1,2]", 400, "body: must be a JSON object" },
		{ "{\"upt\":3}", 400, "nam: required" },
		{ "{\"nam\":\"!!!\"}", 400, "nam: must have" },
		{ "{\"nam\":\"p\",\"upt\":\"3\"}", 400, "upt:" },
		{ "{\"nam\":\"p\",\"prt\":[]}", 400, "prt:" },
		{ "{\"nam\":\"p\",\"prt\":{\"c\":{}}}", 400, "prt.c: must be an array" },
		{ "{\"nam\":\"p\",\"prt\":{\"ms\":[{\"nam\":\"q\",\"sum\":1,\"cnt\":0,\"min\":1,\"max\":1,\"fst\":1,\"lst\":1,"
		  "\"bot\":1,\"top\":1}]}}",
		  400, "prt.ms[0].cnt: must be a positive integer" },
		{ "{\"nam\":\"p\",\"prt\":{\"ms\":[{\"nam\":\"q\",\"sum\":1,\"cnt\":1,\"min\":1,\"max\":1,\"fst\":1,\"lst\":1,"
		  "\"top\":1}]}}",
		  400, "prt.ms[0].bot: required" },
		{ "{\"nam\":\"p\",\"prt\":{\"c\":[{\"typ\":\"ms\",\"nam\":\"q\"}]}}", 400, "prt.c[0].typ:" },
		{ "{\"nam\":\"p\",\"prt\":{\"g\":[{\"nam\":\"q\",\"sum\":1,\"cnt\":1,\"min\":1,\"max\":1,\"fst\":1,\"lst\":1,"
		  "\"pct\":0.9}]}}",
		  400, "prt.g[0].pct:" },
	};
	char auth[128], path[256];
	struct dh_reply r;
	json_t *j;

	cr_assert_gt(dts_dattss_auth((const uint8_t *)DH_SECRET, strlen(DH_SECRET), "default", 7, auth, sizeof(auth)), 0);
	/* AUTH */
	j = call("PUT", "/agg", "", "{}", 401);
	cr_expect(strncmp(str(j, "error"), "auth: required", 14) == 0, "%s", str(j, "error"));
	cr_expect(json_is_false(json_object_get(j, "ok")));
	json_decref(j);
	snprintf(path, sizeof(path), "/agg?auth=%s", auth);
	path[strlen(path) - 1] = path[strlen(path) - 1] == '0' ? '1' : '0';
	j = call("PUT", path, "", "{}", 401);
	cr_expect(strstr(str(j, "error"), "wrong MAC") != NULL, "%s", str(j, "error"));
	json_decref(j);
	cr_assert_gt(dts_dattss_auth((const uint8_t *)DH_SECRET, strlen(DH_SECRET), "nobody", 6, auth, sizeof(auth)), 0);
	snprintf(path, sizeof(path), "/agg?auth=%s", auth);
	j = call("PUT", path, "", "{}", 401);
	cr_expect(strstr(str(j, "error"), "unknown user") != NULL, "%s", str(j, "error"));
	json_decref(j);
	/* bodies */
	cr_assert_gt(dts_dattss_auth((const uint8_t *)DH_SECRET, strlen(DH_SECRET), "default", 7, auth, sizeof(auth)), 0);
	snprintf(path, sizeof(path), "/agg?auth=%s", auth);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		j = call("PUT", path, "", cases[i].body, cases[i].status);
		cr_expect(json_is_false(json_object_get(j, "ok")), "%s", cases[i].body);
		cr_expect(strncmp(str(j, "error"), cases[i].error, strlen(cases[i].error)) == 0,
			  "body %s: error \"%s\", want \"%s...\"", cases[i].body, str(j, "error"), cases[i].error);
		json_decref(j);
	}
	/* one bad partial does not cost the others */
	j = call("PUT", path, "",
		 "{\"nam\":\"mixed\",\"prt\":{\"c\":[{\"nam\":\"ok\",\"sum\":4,\"cnt\":2,\"min\":2,\"max\":2,\"fst\":2,"
		 "\"lst\":2},{\"nam\":\"bad\",\"cnt\":2}]}}",
		 400);
	cr_expect_eq(json_integer_value(json_object_get(j, "taken")), 1);
	cr_expect_eq(json_integer_value(json_object_get(j, "refused")), 1);
	cr_expect(strncmp(str(j, "error"), "prt.c[1].sum: required", 22) == 0, "%s", str(j, "error"));
	json_decref(j);
	j = wait_current(dh_api_key(&dmn), "mixed", "ok", "c", "sum", 4);
	json_decref(j);
	/* an empty body is a heartbeat */
	r = request("PUT", path, "", "");
	cr_expect_eq(r.status, 200, "%s", r.body);
	dh_reply_free(&r);
	passed();
}

/* ---- errors and warnings: GET and the live stream; isolation between users ------------------------------------------ */

Test(api, events_stream_live_and_users_are_isolated)
{
	json_t *alice = add_user("alice@example.com"), *bob = add_user("bob@example.com");
	const char *akey = str(alice, "api_key"), *bkey = str(bob, "api_key");
	struct sse *sa = malloc(sizeof(*sa)), *sb = malloc(sizeof(*sb)), *sr = malloc(sizeof(*sr));
	char server[64], path[256];
	struct dts *d;
	json_t *j, *ev, *evs;
	char *p;
	uint64_t seq;

	/* both users stream; each first gets its (empty) current state */
	sse_open(sa, akey, "");
	sse_open(sb, bkey, "");
	cr_assert_not_null(sse_wait(sa, 0, "\r\n\r\n", 5000), "no stream head");
	cr_expect(strcasestr(sa->buf, "\r\nContent-Type: text/event-stream") != NULL, "%.300s", sa->buf);
	p = sse_wait(sa, 0, "event: current\n", 5000);
	cr_assert_not_null(p, "no current event: %s", sa->buf);
	j = sse_data(p);
	cr_expect_str_eq(str(j, "user"), "alice@example.com");
	json_decref(j);
	cr_assert_not_null(sse_wait(sb, 0, "event: current\n", 5000));

	/* alice's program reports an error and a warning, and a counter */
	snprintf(server, sizeof(server), "127.0.0.1:%u", dmn.statsd_port);
	d = dts_open(server, str(alice, "user"), (uint32_t)json_integer_value(json_object_get(alice, "key_id")),
		     str(alice, "secret"), "billing");
	cr_assert_not_null(d, "dts_open: %s", strerror(errno));
	cr_assert_eq(dts_error(d, "card processor unreachable"), 0);
	cr_assert_eq(dts_warning(d, "retrying \"charge\" in 5 s"), 0);
	cr_assert_eq(dts_count(d, "charges", 3), 0);
	cr_assert_eq(dts_flush(d), 0);

	/* live: both frames, in order, with their seq as the SSE id */
	p = sse_wait(sa, 0, "event: event\n", WAIT_MS);
	cr_assert_not_null(p, "no event frame on alice's stream: %s", sa->buf);
	cr_assert_eq(sscanf(strstr(p, "id: "), "id: %lu", &seq), 1);
	ev = sse_data(p);
	cr_expect_str_eq(str(ev, "kind"), "error");
	cr_expect_str_eq(str(ev, "text"), "card processor unreachable");
	cr_expect_str_eq(str(ev, "process"), "billing");
	cr_expect_eq((uint64_t)json_integer_value(json_object_get(ev, "seq")), seq);
	json_decref(ev);
	p = sse_wait(sa, (size_t)(p - sa->buf) + 1, "event: event\n", WAIT_MS);
	cr_assert_not_null(p, "no second event frame");
	ev = sse_data(p);
	cr_expect_str_eq(str(ev, "kind"), "warning");
	cr_expect_str_eq(str(ev, "text"), "retrying \"charge\" in 5 s");
	cr_expect_gt((uint64_t)json_integer_value(json_object_get(ev, "seq")), seq);
	json_decref(ev);

	/* GET /api/v1/events: newest first, filters */
	j = get("/api/v1/events", akey);
	evs = json_object_get(j, "events");
	cr_assert_eq(json_array_size(evs), 2, "%s", json_dumps(j, 0));
	cr_expect_str_eq(str(json_array_get(evs, 0), "kind"), "warning");
	cr_expect_str_eq(str(json_array_get(evs, 1), "kind"), "error");
	cr_expect(json_integer_value(json_object_get(json_array_get(evs, 1), "ts_ms")) > 0);
	json_decref(j);
	j = get("/api/v1/events?kind=error", akey);
	cr_expect_eq(json_array_size(json_object_get(j, "events")), 1);
	json_decref(j);
	j = get("/api/v1/events?limit=1", akey);
	cr_expect_str_eq(str(json_array_get(json_object_get(j, "events"), 0), "kind"), "warning");
	json_decref(j);
	j = get("/api/v1/events?process=other", akey);
	cr_expect_eq(json_array_size(json_object_get(j, "events")), 0);
	json_decref(j);

	/* Last-Event-ID resumes: a new stream from before the error gets both again */
	{
		char hdr[64];

		snprintf(hdr, sizeof(hdr), "Last-Event-ID: %lu\r\n", (unsigned long)(seq - 1));
		sse_open(sr, akey, hdr);
		p = sse_wait(sr, 0, "card processor unreachable", WAIT_MS);
		cr_expect_not_null(p, "the resumed stream did not replay the error: %s", sr->buf);
		cr_expect_not_null(sse_wait(sr, 0, "retrying", WAIT_MS));
		close(sr->fd);
	}

	/* the current state streams too: alice's process appears */
	cr_expect_not_null(sse_wait(sa, 0, "\"process\":\"billing\"", WAIT_MS), "alice's stream never showed billing");
	j = wait_current(akey, "billing", "charges", "c", "sum", 3);
	json_decref(j);

	/* isolation: bob sees none of it, on any endpoint, and alice none of the default user's data */
	cr_expect_null(sse_wait(sb, 0, "event: event", 1000), "bob's stream got alice's event");
	cr_expect_null(strstr(sb->buf, "billing"), "bob's stream shows alice's process");
	j = get("/api/v1/events", bkey);
	cr_expect_eq(json_array_size(json_object_get(j, "events")), 0);
	json_decref(j);
	j = get("/api/v1/current", bkey);
	cr_expect_str_eq(str(j, "user"), "bob@example.com");
	cr_expect_eq(json_array_size(json_object_get(j, "processes")), 0);
	json_decref(j);
	snprintf(path, sizeof(path), "/api/v1/current?process=billing&user=%s", str(alice, "user"));
	j = get(path, bkey);
	cr_expect_eq(json_array_size(json_object_get(j, "processes")), 0, "bob can name alice's process");
	json_decref(j);
	j = get("/api/v1/events", dh_api_key(&dmn));
	cr_expect_eq(json_array_size(json_object_get(j, "events")), 0, "the default user sees alice's events");
	json_decref(j);
	send_udp("shared.x:1|c");
	j = wait_current(dh_api_key(&dmn), "shared", "x", "c", "sum", 1);
	json_decref(j);
	j = get("/api/v1/current", akey);
	cr_expect_null(find_by(json_object_get(j, "processes"), "process", "shared"), "alice sees the default user's data");
	json_decref(j);

	dts_close(d);
	close(sa->fd);
	close(sb->fd);
	free(sa);
	free(sb);
	free(sr);
	json_decref(alice);
	json_decref(bob);
	passed();
}

/* Issue 5's end-to-end check: programs linked against libdattss record known values in two processes of two users;
 * the aggregates (counter, timer, gauge), the process statistics and the errors and warnings read back through the
 * API match exactly, and each user's key sees only its own processes and events. */
static struct dts *open_client(json_t *user, const char *process)
{
	char server[64];
	struct dts *d;

	snprintf(server, sizeof(server), "127.0.0.1:%u", dmn.statsd_port);
	d = dts_open(server, str(user, "user"), (uint32_t)json_integer_value(json_object_get(user, "key_id")),
		     str(user, "secret"), process);
	cr_assert_not_null(d, "dts_open(%s): %s", process, strerror(errno));
	return d;
}

/* The process object of the user's current state whose stats show `errors` errors (polls; caller owns root). */
static json_t *wait_process_stats(const char *key, const char *process, double errors, json_t **root_out)
{
	int64_t deadline = dh_now_ms() + WAIT_MS;

	for (;;) {
		json_t *root = get("/api/v1/current", key);
		json_t *p = find_by(json_object_get(root, "processes"), "process", process);
		json_t *st = json_object_get(p, "stats");

		if (st && dh_num(st, "errors") == errors) {
			*root_out = root;
			return p;
		}
		json_decref(root);
		cr_assert(dh_now_ms() < deadline, "%s: no stats with %g errors after %d ms", process, errors, WAIT_MS);
		dh_sleep_ms(100);
	}
}

Test(api, client_library_two_users_two_processes_exact)
{
	json_t *carol = add_user("carol@example.com"), *dave = add_user("dave@example.com");
	const char *ckey = str(carol, "api_key"), *dkey = str(dave, "api_key");
	struct dts *web = open_client(carol, "web"), *cron = open_client(carol, "cron"), *etl = open_client(dave, "etl");
	json_t *root, *c, *proc, *st, *evs;

	for (int i = 1; i <= 50; i++) {
		cr_assert_eq(dts_count(web, "requests", 2), 0);
		cr_assert_eq(dts_timing(web, "latency", i), 0); /* 1 .. 50 ms */
		cr_assert_eq(dts_agg(etl, "rows", "3c"), 0);
	}
	cr_assert_eq(dts_gauge(web, "sessions", 17), 0);
	cr_assert_eq(dts_agg(cron, "runs", "1c"), 0);
	cr_assert_eq(dts_error(web, "upstream timeout"), 0);
	cr_assert_eq(dts_warning(web, "cache cold"), 0);
	cr_assert_eq(dts_warning(cron, "skipped a run"), 0);
	cr_assert_eq(dts_error(etl, "schema mismatch"), 0);
	cr_assert_eq(dts_flush(web), 0);
	cr_assert_eq(dts_flush(cron), 0);
	cr_assert_eq(dts_flush(etl), 0);

	/* carol: exact aggregates of both processes */
	json_decref(wait_current(ckey, "web", "requests", "c", "sum", 100));
	root = wait_current(ckey, "web", "latency", "ms", "count", 50);
	c = current_of(root, "web", "latency", "ms");
	cr_expect_eq(dh_num(c, "sum"), 1275.0);
	cr_expect_eq(dh_num(c, "min"), 1.0);
	cr_expect_eq(dh_num(c, "max"), 50.0);
	cr_expect_float_eq(dh_num(c, "bot10"), 5.0, 5.0 * 0.011, "bot10 within the sketch's 1%%");
	cr_expect_float_eq(dh_num(c, "top10"), 45.0, 45.0 * 0.011, "top10 within the sketch's 1%%");
	json_decref(root);
	json_decref(wait_current(ckey, "web", "sessions", "g", "last", 17));
	json_decref(wait_current(ckey, "cron", "runs", "c", "sum", 1));

	/* carol's process statistics: counts of what was reported, a live process */
	proc = wait_process_stats(ckey, "web", 1, &root);
	st = json_object_get(proc, "stats");
	cr_expect_eq(dh_num(st, "warnings"), 1);
	cr_expect_gt(dh_num(st, "rss_bytes"), 0, "resident memory of the test process");
	cr_expect(json_is_true(json_object_get(proc, "online")), "web heard from just now is online");
	cr_expect_null(find_by(json_object_get(root, "processes"), "process", "etl"), "carol sees dave's process");
	json_decref(root);
	proc = wait_process_stats(ckey, "cron", 0, &root);
	cr_expect_eq(dh_num(json_object_get(proc, "stats"), "warnings"), 1);
	json_decref(root);

	/* dave: his own exact counter and error, none of carol's */
	json_decref(wait_current(dkey, "etl", "rows", "c", "sum", 150));
	proc = wait_process_stats(dkey, "etl", 1, &root);
	cr_expect_eq(json_array_size(json_object_get(root, "processes")), 1, "dave has exactly one process");
	json_decref(root);

	/* the texts, per user and kind */
	root = get("/api/v1/events", ckey);
	evs = json_object_get(root, "events");
	cr_expect_eq(json_array_size(evs), 3, "carol: 1 error + 2 warnings");
	cr_expect_not_null(find_by(evs, "text", "upstream timeout"));
	cr_expect_not_null(find_by(evs, "text", "cache cold"));
	cr_expect_not_null(find_by(evs, "text", "skipped a run"));
	cr_expect_null(find_by(evs, "text", "schema mismatch"), "carol sees dave's error");
	json_decref(root);
	root = get("/api/v1/events?kind=error", dkey);
	evs = json_object_get(root, "events");
	cr_expect_eq(json_array_size(evs), 1);
	cr_expect_str_eq(str(json_array_get(evs, 0), "text"), "schema mismatch");
	cr_expect_str_eq(str(json_array_get(evs, 0), "process"), "etl");
	json_decref(root);

	dts_close(web);
	dts_close(cron);
	dts_close(etl);
	json_decref(carol);
	json_decref(dave);
	passed();
}

Test(api, stream_keepalive_and_a_changed_state)
{
	struct sse *s = malloc(sizeof(*s)), *q = malloc(sizeof(*q));
	json_t *carol = add_user("carol@example.com");
	char *p;

	sse_open(s, dh_api_key(&dmn), "");
	p = sse_wait(s, 0, "event: current\n", 5000);
	cr_assert_not_null(p);
	/* a new value changes the state: a new "current" frame comes within a slot */
	send_udp("live.req:2|c");
	p = sse_wait(s, (size_t)(p - s->buf) + 1, "\"process\":\"live\"", WAIT_MS);
	cr_assert_not_null(p, "the stream never showed the new process: %s", s->buf);
	close(s->fd);
	/* a user whose state never changes gets ": keepalive" comments every 15 s, and nothing else */
	sse_open(q, str(carol, "api_key"), "");
	p = sse_wait(q, 0, "event: current\n", 5000);
	cr_assert_not_null(p);
	p = sse_wait(q, (size_t)(p - q->buf) + 1, ": keepalive\n\n", 20000);
	cr_expect_not_null(p, "no keepalive in 20 s: %s", q->buf);
	cr_expect_null(strstr(strstr(q->buf, "event: current") + 1, "event: current"),
		       "a second current frame for an unchanged state: %s", q->buf);
	close(q->fd);
	json_decref(carol);
	free(s);
	free(q);
	passed();
}

/* ---- Prometheus ---------------------------------------------------------------------------------------------------- */

Test(api, metrics_expose_users_who_opted_in)
{
	const char *key = dh_api_key(&dmn);
	const char *labels[] = { "user=\"default\"", "process=\"pm\"", "counter=\"hits\"", "type=\"c\"", "tags=\"\"",
				 "stat=\"sum\"", NULL };
	unsigned matched = 0;
	json_t *j;

	send_udp("pm.hits:4|c\npm.hits:1|c");
	j = wait_current(key, "pm", "hits", "c", "sum", 5);
	json_decref(j);
	cr_expect_eq(dh_metric(&dmn, "dattss_value", NULL, &matched), 0);
	cr_expect_eq(matched, 0, "values exposed before the user opted in");
	j = call("PATCH", "/api/v1/admin/users/default", admin_token(), "{\"prometheus\":true}", 200);
	json_decref(j);
	cr_expect_eq(dh_metric(&dmn, "dattss_value", labels, &matched), 5);
	cr_expect_eq(matched, 1);
	passed();
}

/* ---- Graphite ------------------------------------------------------------------------------------------------------ */

static int carbon_fd = -1;
static struct sockaddr_in carbon_addr;

/* carbon's port: a free loopback port, not listened on yet (the test starts carbon late, to see dattssd retry). */
static void graphite_up(void)
{
	socklen_t len = sizeof(carbon_addr);
	char port[16];
	const char *extra[] = { "--graphite-host", "127.0.0.1", "--graphite-port", port, "--graphite-prefix", "t.dts",
				NULL };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	carbon_addr = (struct sockaddr_in){ .sin_family = AF_INET };
	inet_pton(AF_INET, "127.0.0.1", &carbon_addr.sin_addr);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&carbon_addr, sizeof(carbon_addr)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&carbon_addr, &len), 0);
	close(fd);
	snprintf(port, sizeof(port), "%u", ntohs(carbon_addr.sin_port));
	start_with(extra);
}

static void graphite_down(void)
{
	daemon_down();
	if (carbon_fd >= 0)
		close(carbon_fd);
}

TestSuite(graphite, .init = graphite_up, .fini = graphite_down, .timeout = 150);

Test(graphite, closed_minutes_reach_carbon_after_it_comes_up)
{
	int64_t sent = dh_now_ms() / 1000, minute = sent / 60 * 60;
	struct pollfd pfd;
	static char buf[1 << 16];
	size_t len = 0;
	char want[256];
	int c, one = 1;
	double errors = 0;

	send_udp("gr.hits:3|c\ngr.hits:4|c\ngr.lat:10|ms\ngr.lat:30|ms\ngr.mem:7|g\ngr.tagged:1|c|#env:prod");
	/* the minute closes at its end + 1 s of grace; carbon is down: dattssd fails to connect, keeps the minute */
	for (int64_t deadline = dh_now_ms() + 90000; dh_now_ms() < deadline && errors < 1; dh_sleep_ms(200))
		errors = dh_metric(&dmn, "dattss_graphite_errors_total", NULL, NULL);
	cr_assert_geq(errors, 1, "dattssd never tried carbon (dattss_graphite_errors_total %g)", errors);
	cr_expect_eq(dh_metric(&dmn, "dattss_graphite_minutes_sent_total", NULL, NULL), 0);
	/* carbon comes up: the next retry (backoff 1 s, 2 s, ...) connects and sends the queued minute */
	carbon_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(carbon_fd, 0);
	setsockopt(carbon_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(carbon_fd, (struct sockaddr *)&carbon_addr, sizeof(carbon_addr)), 0, "bind: %s",
		     strerror(errno));
	cr_assert_eq(listen(carbon_fd, 4), 0);
	pfd = (struct pollfd){ .fd = carbon_fd, .events = POLLIN };
	cr_assert_eq(poll(&pfd, 1, 40000), 1, "dattssd never connected to carbon");
	c = accept(carbon_fd, NULL, NULL);
	cr_assert_geq(c, 0);
	/* read until the daemon has been quiet for 2 s after the first bytes (a batch comes in one go) */
	for (int64_t deadline = dh_now_ms() + 90000; dh_now_ms() < deadline;) {
		struct pollfd cp = { .fd = c, .events = POLLIN };
		ssize_t r;

		if (poll(&cp, 1, 2000) != 1) {
			if (len)
				break;
			continue;
		}
		r = recv(c, buf + len, sizeof(buf) - 1 - len, 0);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
	}
	close(c);
	/* the minute the values were sent in (or the next, had the send crossed a minute boundary) */
	if (!strstr(buf, "t.dts.default.gr.hits.sum 7 ")) {
		cr_assert_fail("no hits.sum line in what carbon received:\n%s", buf);
	}
	snprintf(want, sizeof(want), "t.dts.default.gr.hits.sum 7 %lld\n", (long long)minute);
	if (!strstr(buf, want))
		minute += 60;
	snprintf(want, sizeof(want), "t.dts.default.gr.hits.sum 7 %lld\n", (long long)minute);
	cr_expect(strstr(buf, want) != NULL, "missing '%s' in:\n%s", want, buf);
	snprintf(want, sizeof(want), "t.dts.default.gr.hits.count 2 %lld\n", (long long)minute);
	cr_expect(strstr(buf, want) != NULL, "missing '%s' in:\n%s", want, buf);
	snprintf(want, sizeof(want), "t.dts.default.gr.lat.avg 20 %lld\n", (long long)minute);
	cr_expect(strstr(buf, want) != NULL, "missing '%s' in:\n%s", want, buf);
	snprintf(want, sizeof(want), "t.dts.default.gr.lat.max 30 %lld\n", (long long)minute);
	cr_expect(strstr(buf, want) != NULL, "missing '%s' in:\n%s", want, buf);
	snprintf(want, sizeof(want), "t.dts.default.gr.mem.value 7 %lld\n", (long long)minute);
	cr_expect(strstr(buf, want) != NULL, "missing '%s' in:\n%s", want, buf);
	snprintf(want, sizeof(want), "t.dts.default.gr.tagged.sum;env=prod 1 %lld\n", (long long)minute);
	cr_expect(strstr(buf, want) != NULL, "missing '%s' in:\n%s", want, buf);
	cr_expect(dh_metric(&dmn, "dattss_graphite_minutes_sent_total", NULL, NULL) >= 1);
	passed();
}
