/*
 * bench_api.c - the query API against its targets (issue 6), with the real dattssd on loopback:
 *
 *   daily     GET /api/v1/daily of yesterday for one timer series with --days days of minutes stored up to the end of
 *             yesterday (written into the stopped daemon's store with the storage API, every minute, 60 values each),
 *             --requests requests in a row on one keep-alive connection. Target: p99 < 5 ms at the server. The
 *             server keeps the summary of a date's 7 past days for a minute (http_api.c, WEEK_CACHE_MS), so these
 *             read the date's 1,440 minutes; the "cold" figures ask at 169 different time zones, each a different
 *             day start, so each reads all 11,520 minutes.
 *   current   GET /api/v1/current of a user with --series live series (statsd lines, --mix of types), --requests
 *             requests: p50/p99/max and the reply size. Target: < 20 ms.
 *   ingest    dattss-load at --rate lines/s for --seconds, alone and then with --clients API clients each polling
 *             /api/v1/current back to back (a client every --client-interval-ms at most): the lines the server
 *             counted per second of sending, and the loss, for both runs.
 *
 * Latency is reported at the server (the reply's Server-Timing header: the handler's wall time and its thread's CPU
 * time, without the network) and at the client over loopback (request written to last byte read). The daemon runs
 * with the integration harness's flags (2 workers, tick 100 ms; tests/integration/daemon_harness.h) and is stopped,
 * and its directory removed, on every exit path.
 *
 * Prints one line:
 *   SUMMARY bench=api days=.. daily_requests=.. daily_server_p50_ms=.. daily_server_p99_ms=.. daily_cpu_p99_ms=..
 *           daily_client_p50_ms=.. daily_client_p99_ms=.. daily_cold_server_p50_ms=.. daily_cold_server_p99_ms=..
 *           daily_cold_cpu_p99_ms=.. series=.. current_requests=.. current_server_p50_ms=.. current_server_p99_ms=..
 *           current_cpu_p99_ms=.. current_client_p50_ms=.. current_client_p99_ms=.. current_bytes=.. rate=..
 *           seconds=.. ingest_alone=.. loss_alone_pct=.. clients=.. ingest_with_api=.. loss_with_api_pct=..
 *           api_requests_per_s=.. errors=..
 * (ingest_* in lines per second counted by the server; errors counts failed or non-200 requests of every phase.)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "dts/sketch.h"
#include "dts/storage.h"
#include "integration/daemon_harness.h"

struct opts {
	uint64_t days, requests, series, rate, seconds, clients, client_interval_ms;
	unsigned mix[DTS_NTYPES];
	bool quiet;
};

static struct dh_daemon dmn;
static char api_key[128];
static atomic_ulong errors;

static void progress(const struct opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(const struct opts *o, const char *fmt, ...)
{
	va_list ap;

	if (o->quiet)
		return;
	va_start(ap, fmt);
	fputs("bench_api: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("bench_api: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	dh_destroy(&dmn);
	exit(1);
}

/* ---- a keep-alive HTTP/1.1 client ------------------------------------------------------------------------------ */

struct conn {
	int fd;
	char *buf;
	size_t cap;
	const char *body; /* the last reply's body, NUL-terminated, inside buf */
	double server_ms, cpu_ms; /* the last reply's Server-Timing: app;dur= and cpu;dur= (NAN when absent) */
};

static int conn_open(struct conn *c)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(dmn.http_port) };
	int one = 1;

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		return -errno;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!c->buf) {
		c->cap = 1 << 20;
		c->buf = malloc(c->cap);
	}
	return c->buf ? 0 : -ENOMEM;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

/* GET path; returns the status (0 on an I/O error, the connection is then reopened) and the body length. */
static int conn_get(struct conn *c, const char *path, size_t *body_len)
{
	char req[1024];
	size_t len = 0, need = 0, hdr = 0;
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n",
			 path, api_key);
	int status = 0;

	if (c->fd < 0 && conn_open(c) != 0)
		return 0;
	if (dh_write_all(c->fd, req, (size_t)n) != 0)
		goto fail;
	for (;;) {
		ssize_t r;

		if (len + 1 >= c->cap) {
			char *nb = realloc(c->buf, c->cap * 2);

			if (!nb)
				goto fail;
			c->buf = nb;
			c->cap *= 2;
		}
		r = recv(c->fd, c->buf + len, c->cap - 1 - len, 0);
		if (r <= 0)
			goto fail;
		len += (size_t)r;
		if (!hdr) {
			char *end = memmem(c->buf, len, "\r\n\r\n", 4), *cl;

			if (!end)
				continue;
			*end = '\0';
			hdr = (size_t)(end - c->buf) + 4;
			if (sscanf(c->buf, "HTTP/1.1 %d", &status) != 1)
				goto fail;
			cl = strcasestr(c->buf, "\r\nContent-Length:");
			if (!cl)
				goto fail; /* every reply of these endpoints has a length */
			need = hdr + strtoul(cl + 17, NULL, 10);
			cl = strcasestr(c->buf, "\r\nServer-Timing:");
			c->server_ms = c->cpu_ms = NAN;
			if (cl && strstr(cl, "app;dur=") && strstr(cl, "cpu;dur=")) {
				c->server_ms = strtod(strstr(cl, "app;dur=") + 8, NULL);
				c->cpu_ms = strtod(strstr(cl, "cpu;dur=") + 8, NULL);
			}
		}
		if (len >= need)
			break;
	}
	*body_len = need - hdr;
	c->buf[need] = '\0';
	c->body = c->buf + hdr;
	return status;
fail:
	close(c->fd);
	c->fd = -1;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Percentiles of one series of times: at the client (request written to last byte read), at the server (the
 * reply's Server-Timing app;dur: building the reply, without the network) and the server thread's CPU time. */
struct latency {
	double p50, p99, max; /* client */
	double server_p50, server_p99, cpu_p50, cpu_p99;
	size_t bytes;
};

static void percentiles(double *v, size_t n, double *p50, double *p99, double *max)
{
	qsort(v, n, sizeof(*v), cmp_double);
	*p50 = v[n / 2];
	*p99 = v[(size_t)floor(0.99 * (double)(n - 1))];
	if (max)
		*max = v[n - 1];
}

/* n requests on one connection; path_fn(i) gives the i-th path. */
static struct latency measure_paths(const char *(*path_fn)(uint64_t i, void *ctx), void *ctx, uint64_t n)
{
	double *ms = malloc(3 * n * sizeof(*ms)), *srv = ms + n, *cpu = ms + 2 * n;
	struct conn c = { .fd = -1 };
	struct latency l = { 0 };

	if (!ms)
		die("out of memory");
	for (uint64_t i = 0; i < n; i++) {
		int64_t t0 = mono_ns();
		int st = conn_get(&c, path_fn(i, ctx), &l.bytes);

		ms[i] = (double)(mono_ns() - t0) / 1e6;
		srv[i] = st == 200 ? c.server_ms : NAN;
		cpu[i] = st == 200 ? c.cpu_ms : NAN;
		if (st != 200 || isnan(c.server_ms))
			atomic_fetch_add(&errors, 1);
	}
	conn_close(&c);
	percentiles(ms, n, &l.p50, &l.p99, &l.max);
	percentiles(srv, n, &l.server_p50, &l.server_p99, NULL);
	percentiles(cpu, n, &l.cpu_p50, &l.cpu_p99, NULL);
	free(ms);
	return l;
}

static const char *same_path(uint64_t i, void *ctx)
{
	(void)i;
	return ctx;
}

/* n requests of path in a row on one connection. */
static struct latency measure(const char *path, uint64_t n)
{
	return measure_paths(same_path, (void *)path, n);
}

/* The daily view of the stored date at another viewer's time zone each time (-840 .. +840 minutes in 10-minute
 * steps): each a different day start, so the 7 past days are read from the store every time (no cached week). */
struct cold_ctx {
	const char *date;
	char path[256];
};

static const char *cold_path(uint64_t i, void *ctx)
{
	struct cold_ctx *c = ctx;

	snprintf(c->path, sizeof(c->path),
		 "/api/v1/daily?process=bench&counter=latency&type=ms&date=%s&tz_offset_min=%d", c->date,
		 -840 + (int)(i % 169) * 10);
	return c->path;
}

/* ---- phases ---------------------------------------------------------------------------------------------------- */

/*
 * Every minute of `days` whole days ending at the start of today (UTC) for one timer series, 60 log-normal values
 * each. Returns the start of the last of them (yesterday): the date the daily view is asked for, so that the date
 * itself has all its 1,440 minutes (the most a daily view reads besides the past week).
 */
static int64_t write_days(const struct opts *o)
{
	struct dts_storage_cfg cfg;
	struct dts_storage *st;
	char err[256];
	int64_t today = dh_now_ms() / 1000 / 86400 * 86400, t;
	uint64_t rng = 42;

	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dmn.data_dir;
	st = dts_storage_open(&cfg, err, sizeof(err));
	if (!st)
		die("%s", err);
	for (t = today - (int64_t)o->days * 86400; t < today; t += 60) {
		struct dts_minute_rec r = { .user = "default", .process = "bench", .counter = "latency", .tags = "",
					    .type = DTS_TIMER };
		struct dts_closed_minute cm = { .minute = t / 60, .n = 1, .recs = &r };

		dts_agg_init(&r.agg);
		dts_sketch_init(&r.sketch);
		dts_set_init(&r.set);
		for (int i = 0; i < 60; i++) {
			double v = 20 * exp(rng_normal(&rng));

			dts_agg_add(&r.agg, v, 1);
			if (dts_sketch_add(&r.sketch, v, 1) != 0)
				die("out of memory");
		}
		if (dts_storage_write_minute(st, &cm) != 0)
			die("writing the store failed");
		dts_sketch_free(&r.sketch);
	}
	dts_storage_close(st);
	return today - 86400;
}

/* --series series of the default user, process "load", over UDP; waits until they all have a current state. */
static void send_series(const struct opts *o)
{
	char dgram[1400];
	size_t len = 0;
	unsigned total = 0, k;
	int fd = dh_udp_socket(&dmn);
	uint64_t rng = 7;

	for (k = 0; k < DTS_NTYPES; k++)
		total += o->mix[k];
	if (fd < 0)
		die("udp socket: %s", strerror(-fd));
	for (uint64_t i = 0; i < o->series; i++) {
		char line[128];
		unsigned pick = (unsigned)rng_below(&rng, total), t = 0;
		int n;

		while (pick >= o->mix[t])
			pick -= o->mix[t++];
		n = snprintf(line, sizeof(line), "load.%s_%lu:%u|%s\n", type_key[t], (unsigned long)i,
			     (unsigned)rng_below(&rng, 1000), t == DTS_TIMER ? "ms" : type_key[t]);
		if (len + (size_t)n > sizeof(dgram)) {
			dh_udp_send(fd, dgram, len);
			len = 0;
			usleep(50); /* let the workers keep up: this is setup, not the measurement */
		}
		memcpy(dgram + len, line, (size_t)n);
		len += (size_t)n;
	}
	if (len)
		dh_udp_send(fd, dgram, len);
	close(fd);
	for (int64_t deadline = dh_now_ms() + 30000;; dh_sleep_ms(500)) {
		struct conn c = { .fd = -1 };
		size_t bytes;
		int st = conn_get(&c, "/api/v1/current?process=load", &bytes);
		unsigned live = 0;

		/* count the series with a current state in the reply */
		for (const char *p = c.body; st == 200 && (p = strstr(p, "\"current\":{")); p++)
			live++;
		conn_close(&c);
		if (live >= o->series)
			return;
		if (dh_now_ms() > deadline)
			die("only %u of %lu series have a current state after 30 s", live, (unsigned long)o->series);
	}
}

static double server_lines(void)
{
	double v = dh_metric(&dmn, "dattss_received_lines_total", NULL, NULL);

	if (isnan(v))
		die("cannot read /metrics");
	return v;
}

struct client {
	pthread_t t;
	const struct opts *o;
	atomic_bool *stop;
	uint64_t requests;
};

static void *client_main(void *arg)
{
	struct client *cl = arg;
	struct conn c = { .fd = -1 };

	while (!atomic_load(cl->stop)) {
		size_t bytes;

		if (conn_get(&c, "/api/v1/current", &bytes) != 200)
			atomic_fetch_add(&errors, 1);
		cl->requests++;
		if (cl->o->client_interval_ms)
			usleep((useconds_t)cl->o->client_interval_ms * 1000);
	}
	conn_close(&c);
	return NULL;
}

/*
 * dattss-load at o->rate for o->seconds, with `clients` API clients polling while it sends (0: none). Returns the lines
 * counted per second of sending and the loss in percent; *api_rps gets the clients' requests per second. The server's
 * counters are read before the clients start and after they stopped (a saturated server may not answer /metrics in
 * time while they run).
 */
static double ingest(const struct opts *o, uint64_t clients, double *loss_pct, double *api_rps)
{
	struct client *cl = calloc(clients ? clients : 1, sizeof(*cl));
	atomic_bool stop = false;
	uint64_t requests = 0;
	int64_t t0;
	char port[16], rate[32], secs[32], names[32];
	const char *argv[] = { DATTSS_LOAD_PATH, "--port", port, "--rate", rate, "--seconds", secs, "--names", names,
			       "--quiet", NULL };
	double before = server_lines(), after, prev = -1, sent = 0;
	char *out = NULL;
	int status, rc;

	snprintf(port, sizeof(port), "%u", dmn.statsd_port);
	snprintf(rate, sizeof(rate), "%lu", (unsigned long)o->rate);
	snprintf(secs, sizeof(secs), "%lu", (unsigned long)o->seconds);
	snprintf(names, sizeof(names), "%d", 1000);
	if (!cl)
		die("out of memory");
	for (uint64_t i = 0; i < clients; i++) {
		cl[i].o = o;
		cl[i].stop = &stop;
		if (pthread_create(&cl[i].t, NULL, client_main, &cl[i]) != 0)
			die("pthread_create failed");
	}
	t0 = mono_ns();
	rc = dh_run(argv, (int)(o->seconds + 30) * 1000, &status, &out, NULL);
	atomic_store(&stop, true);
	for (uint64_t i = 0; i < clients; i++) {
		pthread_join(cl[i].t, NULL);
		requests += cl[i].requests;
	}
	*api_rps = (double)requests / ((double)(mono_ns() - t0) / 1e9);
	free(cl);
	if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("dattss-load failed (%d): %s", rc, out ? out : "");
	if (!out || !strstr(out, "lines_sent=") || sscanf(strstr(out, "lines_sent="), "lines_sent=%lf", &sent) != 1)
		die("dattss-load printed no lines_sent: %s", out ? out : "");
	free(out);
	/* wait until the server's count stops moving (the sockets and tables drain) */
	for (after = server_lines(); after != prev; dh_sleep_ms(500)) {
		prev = after;
		after = server_lines();
	}
	*loss_pct = sent > 0 ? 100.0 * (sent - (after - before)) / sent : 0;
	return (after - before) / (double)o->seconds;
}

/* ---- main ------------------------------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_api [options]\n"
		"  --days N                days of minutes stored, the date and the days before it, 2..14 (default 8)\n"
		"  --requests N            requests per latency measurement (default 1000)\n"
		"  --series N              live series of the user for /api/v1/current (default 10000)\n"
		"  --mix c=70,ms=20,g=10   types of those series\n"
		"  --rate LINES_PER_SEC    dattss-load rate for the ingest phases (default 200000)\n"
		"  --seconds S             each ingest phase (default 10)\n"
		"  --clients N             API clients during the second ingest phase (default 50)\n"
		"  --client-interval-ms MS pause of each client between requests (default 0: back to back)\n"
		"  --quiet\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "days", required_argument, NULL, 'd' },     { "requests", required_argument, NULL, 'r' },
		{ "series", required_argument, NULL, 's' },   { "mix", required_argument, NULL, 'm' },
		{ "rate", required_argument, NULL, 'R' },     { "seconds", required_argument, NULL, 'S' },
		{ "clients", required_argument, NULL, 'c' },  { "client-interval-ms", required_argument, NULL, 'i' },
		{ "quiet", no_argument, NULL, 'q' },	      { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .days = 8, .requests = 1000, .series = 10000, .rate = 200000, .seconds = 10, .clients = 50 };
	struct latency daily, daily_cold, cur;
	struct cold_ctx cold;
	double alone, with_api, loss_alone, loss_api, api_rps;
	int64_t today;
	char err[256], path[256], date[16];
	int opt;

	parse_mix("c=70,ms=20,g=10", o.mix);
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		uint64_t *dst = opt == 'd' ? &o.days : opt == 'r' ? &o.requests : opt == 's' ? &o.series :
				opt == 'R' ? &o.rate : opt == 'S' ? &o.seconds : opt == 'c' ? &o.clients :
				opt == 'i' ? &o.client_interval_ms : NULL;

		if (dst) {
			if (parse_u64(optarg, dst) != 0) {
				fprintf(stderr, "bench_api: bad value '%s' for --%s\n", optarg,
					opt_name(longopts, opt));
				return 2;
			}
		} else if (opt == 'm') {
			if (parse_mix(optarg, o.mix) != 0) {
				fprintf(stderr, "bench_api: bad --mix '%s'\n", optarg);
				return 2;
			}
		} else if (opt == 'q') {
			o.quiet = true;
		} else {
			usage(opt == 'h' ? stdout : stderr);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (o.days < 2 || o.days > 14 || !o.requests || !o.seconds) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	/* a store with the daily data: start once (creates the user and its key), stop, write, start again */
	if (dh_start(&dmn, NULL, err, sizeof(err)) != 0)
		die("%s", err);
	snprintf(api_key, sizeof(api_key), "%s", dh_api_key(&dmn));
	if (!api_key[0])
		die("no DATA_DIR/api.key");
	dh_stop(&dmn, 5000);
	progress(&o, "writing %lu days of minutes of one timer series", (unsigned long)o.days);
	today = write_days(&o);
	if (dh_restart(&dmn, NULL, err, sizeof(err)) != 0)
		die("%s", err);

	{
		time_t tt = (time_t)today;
		struct tm tm;

		gmtime_r(&tt, &tm);
		strftime(date, sizeof(date), "%Y-%m-%d", &tm);
	}
	snprintf(path, sizeof(path), "/api/v1/daily?process=bench&counter=latency&type=ms&date=%s", date);
	progress(&o, "daily: %lu requests", (unsigned long)o.requests);
	measure(path, 50); /* warm the block cache and the connection */
	daily = measure(path, o.requests);
	cold.date = date;
	progress(&o, "daily, week not cached: %d requests", 169);
	daily_cold = measure_paths(cold_path, &cold, 169);

	progress(&o, "current: %lu series", (unsigned long)o.series);
	send_series(&o);
	measure("/api/v1/current", 20);
	cur = measure("/api/v1/current", o.requests);

	progress(&o, "ingest alone: %lu lines/s for %lu s", (unsigned long)o.rate, (unsigned long)o.seconds);
	alone = ingest(&o, 0, &loss_alone, &api_rps);
	progress(&o, "ingest with %lu API clients", (unsigned long)o.clients);
	with_api = ingest(&o, o.clients, &loss_api, &api_rps);
	if (!dh_alive(&dmn))
		die("dattssd died during the run");
	dh_destroy(&dmn);

	printf("SUMMARY bench=api days=%lu daily_requests=%lu daily_server_p50_ms=%.3f daily_server_p99_ms=%.3f "
	       "daily_cpu_p99_ms=%.3f daily_client_p50_ms=%.3f daily_client_p99_ms=%.3f daily_cold_server_p50_ms=%.3f "
	       "daily_cold_server_p99_ms=%.3f daily_cold_cpu_p99_ms=%.3f series=%lu current_requests=%lu "
	       "current_server_p50_ms=%.3f current_server_p99_ms=%.3f current_cpu_p99_ms=%.3f "
	       "current_client_p50_ms=%.3f current_client_p99_ms=%.3f current_bytes=%zu rate=%lu seconds=%lu "
	       "ingest_alone=%.0f loss_alone_pct=%.3f clients=%lu ingest_with_api=%.0f loss_with_api_pct=%.3f "
	       "api_requests_per_s=%.1f errors=%lu\n",
	       (unsigned long)o.days, (unsigned long)o.requests, daily.server_p50, daily.server_p99, daily.cpu_p99,
	       daily.p50, daily.p99, daily_cold.server_p50, daily_cold.server_p99, daily_cold.cpu_p99,
	       (unsigned long)o.series, (unsigned long)o.requests, cur.server_p50, cur.server_p99, cur.cpu_p99, cur.p50,
	       cur.p99, cur.bytes, (unsigned long)o.rate, (unsigned long)o.seconds, alone, loss_alone,
	       (unsigned long)o.clients, with_api, loss_api, api_rps, (unsigned long)atomic_load(&errors));
	return 0;
}
