/*
 * test_client.c - libdattss end to end on loopback: record from several threads, flush to a UDP socket the test
 * opened on 127.0.0.1, decode what arrived with the native codec and compare with what was recorded: exact sums,
 * counts, minima and maxima, timer quantiles within the sketch's accuracy, process statistics, error and warning
 * texts, heartbeats, drops.
 *
 * The library's sender thread also sends a batch at every 5-second boundary of the wall clock; the checks add up
 * everything that arrived (any number of batches), so they hold whichever batch a value went out in. Tests whose
 * expectation is about one batch (table full) start right after a boundary.
 *
 * A receiver thread empties the socket as datagrams arrive (a full receive queue would drop them on a host with a
 * small rmem_max); the checks decode them on the test's thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "dattss.h"
#include "dts/native.h"

#define SECRET "s3cret"
#define KEY_ID 7

/* ---------------------------------------------------------------------------------------------------------------- */
/* The receiving side                                                                                               */

struct series {
	char name[DTS_MAX_NAME];
	uint8_t type;
	uint8_t flags;
	struct dts_agg agg;
	struct dts_sketch sk;
};

struct text {
	uint8_t kind;
	char s[DTS_NATIVE_MAX_TEXT + 1];
	uint16_t len;
};

struct pkt {
	size_t len;
	uint8_t b[DTS_NATIVE_MAX_DATAGRAM + 1];
};

struct rx {
	int fd;
	char addr[64];
	pthread_t thread;
	_Atomic int stop;
	pthread_mutex_t lock;
	struct pkt *q; /* received, not yet decoded; under lock */
	size_t nq, qcap;
	int64_t last_rx_ns;
	struct dts_native_mac_key mac;
	struct dts_native_key key;
	struct dts_native_cfg cfg;
	struct dts_native_replay *replay;
	struct dts_native_scratch *scratch;
	struct series *s;
	size_t ns, cap;
	struct text *t;
	size_t nt;
	unsigned datagrams, batches, partials;
	struct dts_native_stats stats; /* of the last datagram */
	uint32_t max_errors, max_warnings;
	uint64_t last_seq;
	bool any_instance; /* several senders (dts_send_one): do not check the sequence */
	char process[DTS_NATIVE_MAX_PROCESS + 1];
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *rx_main(void *arg)
{
	struct rx *r = arg;
	static __thread struct pkt p;

	while (!atomic_load(&r->stop)) {
		ssize_t n = recv(r->fd, p.b, sizeof(p.b), 0);

		if (n <= 0)
			continue; /* timeout: look at stop again */
		pthread_mutex_lock(&r->lock);
		if (r->nq == r->qcap) {
			r->qcap = r->qcap ? r->qcap * 2 : 256;
			r->q = realloc(r->q, r->qcap * sizeof(*r->q));
			if (!r->q)
				abort();
		}
		r->q[r->nq].len = (size_t)n;
		memcpy(r->q[r->nq].b, p.b, (size_t)n);
		r->nq++;
		r->last_rx_ns = mono_ns();
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

static const struct dts_native_key *lookup(void *ctx, uint32_t id)
{
	struct rx *r = ctx;

	return id == KEY_ID ? &r->key : NULL;
}

static void rx_open(struct rx *r)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_usec = 20000 };
	socklen_t sl = sizeof(sa);
	int buf = 4 << 20;

	memset(r, 0, sizeof(*r));
	r->fd = socket(AF_INET, SOCK_DGRAM, 0);
	cr_assert_geq(r->fd, 0);
	setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(bind(r->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(r->fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	cr_assert_eq(dts_native_mac_key_init(&r->mac, SECRET, strlen(SECRET)), 0);
	r->key = (struct dts_native_key){ .user = "42", .user_len = 2, .mac = &r->mac };
	dts_native_cfg_defaults(&r->cfg);
	r->cfg.key_lookup = lookup;
	r->cfg.key_ctx = r;
	r->replay = dts_native_replay_create(DTS_NATIVE_REPLAY_SLOTS);
	r->scratch = dts_native_scratch_create();
	cr_assert(r->replay && r->scratch);
	pthread_mutex_init(&r->lock, NULL);
	cr_assert_eq(pthread_create(&r->thread, NULL, rx_main, r), 0);
}

static void rx_close(struct rx *r)
{
	atomic_store(&r->stop, 1);
	pthread_join(r->thread, NULL);
	for (size_t i = 0; i < r->ns; i++)
		dts_sketch_free(&r->s[i].sk);
	free(r->s);
	free(r->t);
	free(r->q);
	pthread_mutex_destroy(&r->lock);
	dts_native_replay_destroy(r->replay);
	dts_native_scratch_destroy(r->scratch);
	close(r->fd);
}

static struct series *rx_series(struct rx *r, const char *name, size_t len, uint8_t type)
{
	for (size_t i = 0; i < r->ns; i++)
		if (r->s[i].type == type && strlen(r->s[i].name) == len && memcmp(r->s[i].name, name, len) == 0)
			return &r->s[i];
	if (r->ns == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->s = realloc(r->s, r->cap * sizeof(*r->s));
		cr_assert_not_null(r->s);
	}
	memset(&r->s[r->ns], 0, sizeof(r->s[0]));
	memcpy(r->s[r->ns].name, name, len);
	r->s[r->ns].type = type;
	dts_agg_init(&r->s[r->ns].agg);
	dts_sketch_init(&r->s[r->ns].sk);
	return &r->s[r->ns++];
}

/* Decode one datagram into r: every datagram must verify. */
static void rx_one(struct rx *r, const uint8_t *buf, size_t len)
{
	struct dts_native_msg m;
	struct dts_native_iter it;
	struct dts_native_partial p;
	struct dts_native_event ev;
	int64_t now = time(NULL);
	int rc = dts_native_open(&r->cfg, r->replay, r->scratch, buf, len, now, &m);

	cr_assert_eq(rc, 0, "datagram of %zu bytes rejected: %s", len, dts_native_reject_name(-rc));
	cr_assert(r->any_instance || m.seq > r->last_seq, "sequence numbers increase");
	r->last_seq = m.seq;
	r->datagrams++;
	if (m.flags & DTS_NATIVE_F_LAST)
		r->batches++;
	r->stats = m.stats;
	if (m.stats.errors > r->max_errors)
		r->max_errors = m.stats.errors;
	if (m.stats.warnings > r->max_warnings)
		r->max_warnings = m.stats.warnings;
	memcpy(r->process, m.process, m.process_len);
	r->process[m.process_len] = '\0';
	dts_native_iter_partials(&m, &it);
	while (dts_native_next_partial(&it, &p)) {
		struct series *s = rx_series(r, p.name, p.name_len, p.type);

		r->partials++;
		dts_agg_merge(&s->agg, &p.agg);
		s->flags |= p.flags;
		if (p.type == DTS_TIMER)
			cr_assert_eq(dts_sketch_merge(&s->sk, dts_native_partial_sketch(&p, r->scratch)), 0);
	}
	dts_native_iter_events(&m, &it);
	while (dts_native_next_event(&it, &ev)) {
		r->t = realloc(r->t, (r->nt + 1) * sizeof(*r->t));
		cr_assert_not_null(r->t);
		r->t[r->nt].kind = ev.kind;
		r->t[r->nt].len = ev.len;
		memcpy(r->t[r->nt].s, ev.text, ev.len);
		r->t[r->nt].s[ev.len] = '\0';
		r->nt++;
	}
}

/* Decode everything that arrived: dts_flush returns once the datagrams are handed to the kernel, and on loopback they
 * are in the socket by then; wait until the socket is empty and the receiver has seen nothing new for 60 ms. */
static void rx_drain(struct rx *r)
{
	size_t done = 0;

	for (;;) {
		struct timespec p = { .tv_nsec = 20 * 1000 * 1000 };
		bool idle;

		int queued = 0;

		nanosleep(&p, NULL);
		ioctl(r->fd, FIONREAD, &queued);
		pthread_mutex_lock(&r->lock);
		idle = queued == 0 && mono_ns() - r->last_rx_ns > 60 * 1000 * 1000;
		pthread_mutex_unlock(&r->lock);
		if (idle)
			break;
	}
	pthread_mutex_lock(&r->lock);
	for (; done < r->nq; done++)
		rx_one(r, r->q[done].b, r->q[done].len);
	r->nq = 0;
	pthread_mutex_unlock(&r->lock);
}

static struct series *find(struct rx *r, const char *name, uint8_t type)
{
	for (size_t i = 0; i < r->ns; i++)
		if (r->s[i].type == type && strcmp(r->s[i].name, name) == 0)
			return &r->s[i];
	return NULL;
}

/* Sleep past the next 5-second boundary when it is less than 1.5 s away, so that what follows runs in one period. */
static void avoid_boundary(void)
{
	struct timespec ts;
	long ms;

	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (long)(ts.tv_sec % 5) * 1000 + ts.tv_nsec / 1000000;
	if (ms > 3500) {
		struct timespec d = { .tv_sec = (5000 - ms + 200) / 1000, .tv_nsec = ((5000 - ms + 200) % 1000) * 1000000 };

		nanosleep(&d, NULL);
	}
}

static struct dts *open_to(struct rx *r, const char *process)
{
	struct dts *d = dts_open(r->addr, "42", KEY_ID, SECRET, process);

	cr_assert_not_null(d, "dts_open: %s", strerror(errno));
	return d;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Several threads, exact results                                                                                   */

#define THREADS 4
#define PER_THREAD 10000

struct worker {
	struct dts *d;
	int id;
};

static double lat_value(int t, int i)
{
	return (double)((t * PER_THREAD + i) % 997 + 1) * 0.5; /* 0.5 .. 498.5 ms, exact in binary */
}

static _Atomic unsigned worker_failures;

/* No cr_assert off the test's thread: failures are counted and checked after the join. */
#define WCHECK(x)                                                                                                    \
	do {                                                                                                         \
		if (!(x))                                                                                            \
			atomic_fetch_add(&worker_failures, 1);                                                       \
	} while (0)

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char text[64];

	for (int i = 0; i < PER_THREAD; i++) {
		WCHECK(dts_count(w->d, "hits", 1) == 0);
		WCHECK(dts_count(w->d, "bytes", w->id * 1000 + i % 100) == 0);
		WCHECK(dts_timing(w->d, "lat", lat_value(w->id, i)) == 0);
		WCHECK(dts_gauge(w->d, "depth", w->id * 100 + i % 50) == 0);
		if (i % 100 == 0)
			WCHECK(dts_agg(w->d, "query", "153ms") == 0);
	}
	for (int k = 0; k < 2; k++) {
		snprintf(text, sizeof(text), "error %d of thread %d", k, w->id);
		WCHECK(dts_error(w->d, text) == 0);
	}
	snprintf(text, sizeof(text), "warning of thread %d", w->id);
	WCHECK(dts_warning(w->d, text) == 0);
	return NULL;
}

Test(client, threads_exact_sums_quantiles_stats_texts, .timeout = 60)
{
	static double lat[THREADS * PER_THREAD];
	pthread_t th[THREADS];
	struct worker w[THREADS];
	struct dts_client_stats st;
	struct series *s;
	double bytes_sum = 0;
	struct rx r;
	struct dts *d;
	size_t n = 0;

	rx_open(&r);
	d = open_to(&r, "my proc/x");
	for (int t = 0; t < THREADS; t++) {
		w[t] = (struct worker){ d, t };
		cr_assert_eq(pthread_create(&th[t], NULL, worker_main, &w[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	cr_assert_eq(atomic_load(&worker_failures), 0);
	cr_assert_eq(dts_flush(d), 0);
	rx_drain(&r);
	cr_assert_str_eq(r.process, "my_proc-x", "process name normalised");

	s = find(&r, "hits", DTS_COUNTER);
	cr_assert_not_null(s);
	cr_assert_eq(s->agg.sum, THREADS * PER_THREAD);
	cr_assert_eq(s->agg.count, THREADS * PER_THREAD);
	cr_assert_eq(s->agg.min, 1);
	cr_assert_eq(s->agg.max, 1);

	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < PER_THREAD; i++)
			bytes_sum += t * 1000 + i % 100;
	s = find(&r, "bytes", DTS_COUNTER);
	cr_assert_not_null(s);
	cr_assert_eq(s->agg.sum, bytes_sum);
	cr_assert_eq(s->agg.count, THREADS * PER_THREAD);
	cr_assert_eq(s->agg.min, 0);
	cr_assert_eq(s->agg.max, (THREADS - 1) * 1000 + 99);

	s = find(&r, "depth", DTS_GAUGE);
	cr_assert_not_null(s);
	cr_assert_eq(s->agg.count, THREADS * PER_THREAD);
	cr_assert_eq(s->agg.min, 0);
	cr_assert_eq(s->agg.max, (THREADS - 1) * 100 + 49);

	s = find(&r, "query", DTS_TIMER);
	cr_assert_not_null(s);
	cr_assert_eq(s->agg.count, THREADS * PER_THREAD / 100);
	cr_assert_eq(s->agg.min, 153);
	cr_assert_eq(s->agg.max, 153);
	cr_assert_eq(s->sk.count, s->agg.count);

	s = find(&r, "lat", DTS_TIMER);
	cr_assert_not_null(s);
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < PER_THREAD; i++)
			lat[n++] = lat_value(t, i);
	qsort(lat, n, sizeof(double), cmp_double);
	{
		double sum = 0;

		for (size_t i = 0; i < n; i++)
			sum += lat[i];
		cr_assert_eq(s->agg.sum, sum, "timer sum exact (multiples of 0.5)");
	}
	cr_assert_eq(s->agg.count, n);
	cr_assert_eq(s->agg.min, lat[0]);
	cr_assert_eq(s->agg.max, lat[n - 1]);
	cr_assert_eq(s->sk.count, n);
	for (double q = 0.0; q <= 1.0; q += 0.05) {
		double want = lat[(size_t)floor(q * (double)(n - 1))], got = dts_sketch_quantile(&s->sk, q);
		double alpha = dts_sketch_level_alpha(s->sk.level);

		cr_assert_leq(fabs(got - want) / want, alpha + 1e-12, "q %.2f: %g vs %g (alpha %g)", q, got, want, alpha);
	}

	/* process statistics */
	cr_assert_geq(r.batches, 1);
	cr_assert_gt(r.stats.rss_bytes, 1 << 20, "resident memory");
	cr_assert_gt(r.stats.cpu_us, 0, "cpu time");
	cr_assert(r.stats.cpu_pct >= 0 && isfinite(r.stats.cpu_pct));
	cr_assert_lt(r.stats.uptime_s, 60);
	cr_assert_eq(r.max_errors, THREADS * 2);
	cr_assert_eq(r.max_warnings, THREADS);
	cr_assert_eq(r.stats.dropped, 0);

	/* texts: each exactly once */
	cr_assert_eq(r.nt, THREADS * 3);
	for (int t = 0; t < THREADS; t++) {
		char want[3][64];
		int found[3] = { 0 };

		snprintf(want[0], 64, "error 0 of thread %d", t);
		snprintf(want[1], 64, "error 1 of thread %d", t);
		snprintf(want[2], 64, "warning of thread %d", t);
		for (size_t i = 0; i < r.nt; i++)
			for (int k = 0; k < 3; k++)
				if (strcmp(r.t[i].s, want[k]) == 0) {
					cr_assert_eq(r.t[i].kind, k < 2 ? DTS_NATIVE_ERROR : DTS_NATIVE_WARNING);
					found[k]++;
				}
		cr_assert(found[0] == 1 && found[1] == 1 && found[2] == 1, "texts of thread %d", t);
	}

	dts_stats(d, &st);
	cr_assert_eq(st.errors, THREADS * 2);
	cr_assert_eq(st.warnings, THREADS);
	cr_assert_eq(st.dropped_values, 0);
	cr_assert_eq(st.send_errors, 0);
	cr_assert_eq(st.threads, 0, "exited threads are freed by the period after their exit");
	cr_assert_eq(st.datagrams, r.datagrams);
	cr_assert_eq(dts_close(d), 0);
	rx_drain(&r);
	rx_close(&r);
}

/* Recording threads and flushes at the same time: every value lands in exactly one batch. */
struct hammer {
	struct dts *d;
	_Atomic int *stop;
	uint64_t n;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;

	while (!atomic_load_explicit(h->stop, memory_order_relaxed) || h->n < 50000) {
		dts_count(h->d, "c", 1);
		dts_timing(h->d, "t", (double)(h->n % 100 + 1));
		h->n++;
	}
	return NULL;
}

Test(client, flushes_while_recording_lose_nothing, .timeout = 60)
{
	pthread_t th[2];
	struct hammer h[2];
	_Atomic int stop = 0;
	struct rx r;
	struct dts *d;
	struct series *s;

	rx_open(&r);
	d = open_to(&r, "hammer");
	for (int t = 0; t < 2; t++) {
		h[t] = (struct hammer){ d, &stop, 0 };
		cr_assert_eq(pthread_create(&th[t], NULL, hammer_main, &h[t]), 0);
	}
	for (int i = 0; i < 40; i++) {
		struct timespec p = { .tv_nsec = 5 * 1000 * 1000 };

		nanosleep(&p, NULL);
		cr_assert_eq(dts_flush(d), 0);
	}
	atomic_store(&stop, 1);
	for (int t = 0; t < 2; t++)
		pthread_join(th[t], NULL);
	cr_assert_eq(dts_flush(d), 0);
	rx_drain(&r);
	s = find(&r, "c", DTS_COUNTER);
	cr_assert_not_null(s);
	cr_assert_eq(s->agg.sum, (double)(h[0].n + h[1].n), "%g recorded %llu", s->agg.sum,
		     (unsigned long long)(h[0].n + h[1].n));
	s = find(&r, "t", DTS_TIMER);
	cr_assert_not_null(s);
	cr_assert_eq(s->agg.count, (double)(h[0].n + h[1].n));
	cr_assert_eq(s->sk.count, s->agg.count);
	cr_assert_geq(r.batches, 41);
	cr_assert_eq(dts_close(d), 0);
	rx_close(&r);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Heartbeat, parsing, bounds                                                                                       */

Test(client, heartbeat_when_nothing_recorded)
{
	struct rx r;
	struct dts *d;

	rx_open(&r);
	d = open_to(&r, "idle");
	for (int i = 1; i <= 2; i++) {
		cr_assert_eq(dts_flush(d), 0);
		rx_drain(&r);
		cr_assert_geq(r.datagrams, (unsigned)i, "one datagram per empty batch");
		cr_assert_eq(r.datagrams, r.batches, "each is a whole batch");
		cr_assert_eq(r.partials, 0);
		cr_assert_eq(r.nt, 0);
		cr_assert_gt(r.stats.rss_bytes, 0);
		cr_assert_str_eq(r.process, "idle");
	}
	cr_assert_eq(dts_close(d), 0);
	rx_drain(&r);
	cr_assert_geq(r.batches, 3, "close sends a last batch");
	rx_close(&r);
}

Test(client, agg_strings_names_and_drops)
{
	static const struct {
		const char *name;
		const char *value;
		int want;
		uint8_t type;
		double v;
		bool emphasis;
	} cases[] = {
		{ "q_ms", "153ms", 0, DTS_TIMER, 153, false },
		{ "q_c", "1c", 0, DTS_COUNTER, 1, false },
		{ "q_g", "-2.5g", 0, DTS_GAUGE, -2.5, false },
		{ "q_emph", "3c!", 0, DTS_COUNTER, 3, true },
		{ "q_exp", "1e3ms", 0, DTS_TIMER, 1000, false },
		{ "My Query/x", "7c", 0, DTS_COUNTER, 7, false }, /* sent as My_Query-x */
		{ "bad1", "12", -EINVAL, 0, 0, false },
		{ "bad2", "12x", -EINVAL, 0, 0, false },
		{ "bad3", "ms", -EINVAL, 0, 0, false },
		{ "bad4", "", -EINVAL, 0, 0, false },
		{ "bad5", "1.2.3c", -EINVAL, 0, 0, false },
		{ "bad6", "infms", -EINVAL, 0, 0, false },
		{ "bad7", "1C", -EINVAL, 0, 0, false },
		{ "bad8", "1ms!!", -EINVAL, 0, 0, false },
		{ "bad9", NULL, -EINVAL, 0, 0, false },
		{ "", "1c", -EINVAL, 0, 0, false },
		{ "$$$", "1c", -EINVAL, 0, 0, false },
		{ NULL, "1c", -EINVAL, 0, 0, false },
	};
	char longname[300];
	struct dts_client_stats st;
	unsigned bad = 0;
	struct rx r;
	struct dts *d;

	rx_open(&r);
	d = open_to(&r, "api");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = dts_agg(d, cases[i].name, cases[i].value);

		cr_assert_eq(rc, cases[i].want, "%s %s: %d", cases[i].name, cases[i].value, rc);
		bad += rc != 0;
	}
	memset(longname, 'x', sizeof(longname));
	longname[256] = '\0';
	cr_assert_eq(dts_count(d, longname, 1), -EINVAL, "raw name over 255 bytes");
	longname[196] = '\0'; /* "api" + '.' + 196 = 200: the longest */
	cr_assert_eq(dts_count(d, longname, 1), 0);
	longname[196] = 'x';
	longname[197] = '\0';
	cr_assert_eq(dts_count(d, longname, 1), -EINVAL, "api.<197> is 201 bytes");
	cr_assert_eq(dts_count(d, "ok", NAN), -EINVAL);
	cr_assert_eq(dts_timing(d, "ok", INFINITY), -EINVAL);
	cr_assert_eq(dts_count(NULL, "ok", 1), -EINVAL);
	bad += 4;
	dts_stats(d, &st);
	cr_assert_eq(st.dropped_values, bad);
	cr_assert_eq(dts_flush(d), 0);
	rx_drain(&r);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *name = cases[i].name && strcmp(cases[i].name, "My Query/x") == 0 ? "My_Query-x" : cases[i].name;
		struct series *s;

		if (cases[i].want)
			continue;
		s = find(&r, name, cases[i].type);
		cr_assert_not_null(s, "%s", name);
		cr_assert_eq(s->agg.sum, cases[i].v);
		cr_assert_eq(s->agg.count, 1);
		cr_assert_eq(!!(s->flags & DTS_NATIVE_PF_EMPHASIS), cases[i].emphasis, "%s emphasis", name);
	}
	cr_assert_eq(r.partials, 7, "the six good values and the longest name, nothing of the bad ones");
	cr_assert_eq(r.stats.dropped, bad);
	cr_assert_eq(dts_close(d), 0);
	rx_close(&r);
}

Test(client, full_table_counts_drops, .timeout = 60)
{
	enum { N = 13000, CAP = 16384 * 3 / 4 };
	struct dts_client_stats st;
	unsigned ok = 0, full = 0;
	struct rx r;
	struct dts *d;
	char name[32];

	rx_open(&r);
	d = open_to(&r, "many");
	avoid_boundary();
	for (int i = 0; i < N; i++) {
		int rc;

		snprintf(name, sizeof(name), "counter_%05d", i);
		rc = dts_count(d, name, 1);
		cr_assert(rc == 0 || rc == -ENOSPC);
		ok += rc == 0;
		full += rc == -ENOSPC;
	}
	cr_assert_eq(ok, CAP);
	cr_assert_eq(full, N - CAP);
	/* a name already in the table is still recorded when the table is full */
	cr_assert_eq(dts_count(d, "counter_00000", 1), 0);
	dts_stats(d, &st);
	cr_assert_eq(st.dropped_values, N - CAP);
	cr_assert_eq(dts_flush(d), 0);
	rx_drain(&r);
	cr_assert_eq(r.partials, CAP);
	cr_assert_gt(r.datagrams, 100);
	cr_assert_eq(r.stats.dropped, N - CAP);
	cr_assert_eq(find(&r, "counter_00000", DTS_COUNTER)->agg.sum, 2);
	/* the next period has room again */
	cr_assert_eq(dts_count(d, "counter_12999", 1), 0);
	cr_assert_eq(dts_close(d), 0);
	rx_close(&r);
}

Test(client, error_texts_bounded_and_sanitised)
{
	char text[700];
	struct dts_client_stats st;
	struct rx r;
	struct dts *d;
	bool long_seen = false, cut_seen = false, bad_seen = false;

	rx_open(&r);
	d = open_to(&r, "texts");
	avoid_boundary();
	memset(text, 'a', sizeof(text));
	text[600] = '\0';
	cr_assert_eq(dts_error(d, text), 0); /* 600 bytes: cut to 512 */
	memset(text, 'b', 511);
	memcpy(text + 511, "\xc3\xa9zz", 5); /* a 2-byte character across the 512 limit: left out whole */
	cr_assert_eq(dts_error(d, text), 0);
	cr_assert_eq(dts_warning(d, "\xff\xfe ok \xe2\x82"), 0); /* invalid bytes and a cut character */
	for (int i = 0; i < 5; i++)
		cr_assert_eq(dts_error(d, "more"), 0);
	cr_assert_eq(dts_error(d, "the ninth"), -ENOSPC, "8 texts per thread per period");
	cr_assert_eq(dts_error(NULL, "x"), -EINVAL);
	cr_assert_eq(dts_error(d, NULL), -EINVAL);
	dts_stats(d, &st);
	cr_assert_eq(st.errors, 8);
	cr_assert_eq(st.warnings, 1);
	cr_assert_eq(st.dropped_events, 1);
	cr_assert_eq(dts_flush(d), 0);
	rx_drain(&r);
	cr_assert_eq(r.nt, 8);
	for (size_t i = 0; i < r.nt; i++) {
		if (r.t[i].len == 512 && r.t[i].s[0] == 'a')
			long_seen = true;
		if (r.t[i].len == 511 && r.t[i].s[0] == 'b')
			cut_seen = true;
		if (strcmp(r.t[i].s, "?? ok ??") == 0) {
			bad_seen = true;
			cr_assert_eq(r.t[i].kind, DTS_NATIVE_WARNING);
		}
	}
	cr_assert(long_seen && cut_seen && bad_seen);
	cr_assert_eq(r.max_errors, 8);
	cr_assert_eq(dts_close(d), 0);
	rx_close(&r);
}

static void *one_value(void *arg)
{
	dts_count(arg, "short_lived", 1);
	return NULL;
}

Test(client, exited_threads_are_collected_and_freed)
{
	struct dts_client_stats st;
	struct rx r;
	struct dts *d;

	rx_open(&r);
	d = open_to(&r, "churn");
	for (int i = 0; i < 50; i++) {
		pthread_t t;

		cr_assert_eq(pthread_create(&t, NULL, one_value, d), 0);
		pthread_join(t, NULL);
	}
	dts_stats(d, &st);
	cr_assert_leq(st.threads, 50);
	cr_assert_eq(dts_flush(d), 0);
	dts_stats(d, &st);
	cr_assert_eq(st.threads, 0);
	rx_drain(&r);
	cr_assert_eq(find(&r, "short_lived", DTS_COUNTER)->agg.sum, 50);
	cr_assert_eq(dts_close(d), 0);
	rx_close(&r);
}

/* Two handles in one thread, one closed while the thread goes on with the other. */
Test(client, two_handles_one_thread)
{
	struct rx r1, r2;
	struct dts *a, *b;

	rx_open(&r1);
	rx_open(&r2);
	r1.any_instance = true; /* two handles in turn */
	a = open_to(&r1, "a");
	b = open_to(&r2, "b");
	for (int i = 0; i < 1000; i++) {
		dts_count(a, "x", 1);
		dts_count(b, "x", 2);
	}
	cr_assert_eq(dts_close(a), 0);
	a = open_to(&r1, "a2"); /* may reuse a's address: the thread's cache must not */
	for (int i = 0; i < 10; i++) {
		dts_count(a, "x", 1);
		dts_count(b, "x", 2);
	}
	cr_assert_eq(dts_close(a), 0);
	cr_assert_eq(dts_close(b), 0);
	rx_drain(&r1);
	rx_drain(&r2);
	cr_assert_eq(find(&r1, "x", DTS_COUNTER)->agg.sum, 1010);
	cr_assert_eq(find(&r2, "x", DTS_COUNTER)->agg.sum, 2020);
	rx_close(&r1);
	rx_close(&r2);
}

Test(client, send_one)
{
	struct rx r;
	struct series *s;

	rx_open(&r);
	cr_assert_eq(dts_send_one(r.addr, "42", KEY_ID, SECRET, "tool", "query", "153ms"), 0);
	cr_assert_eq(dts_send_one(r.addr, "42", KEY_ID, SECRET, "tool", "hits", "2c!"), 0);
	cr_assert_eq(dts_send_one(r.addr, "42", KEY_ID, SECRET, "tool", "query", "fast"), -EINVAL);
	cr_assert_eq(dts_send_one(r.addr, "4 2", KEY_ID, SECRET, "tool", "query", "1c"), -EINVAL);
	cr_assert_eq(dts_send_one("", "42", KEY_ID, SECRET, "tool", "query", "1c"), -EINVAL);
	cr_assert_eq(dts_send_one("127.0.0.1:", "42", KEY_ID, SECRET, "tool", "query", "1c"), -EINVAL);
	/* two instances, each with its own sequence numbers: the replay window keys on (key, instance) */
	r.any_instance = true;
	rx_drain(&r);
	cr_assert_eq(r.datagrams, 2);
	cr_assert_eq(r.batches, 2);
	s = find(&r, "query", DTS_TIMER);
	cr_assert_not_null(s);
	cr_assert_eq(s->agg.sum, 153);
	cr_assert_eq(s->sk.count, 1);
	s = find(&r, "hits", DTS_COUNTER);
	cr_assert_not_null(s);
	cr_assert_eq(s->agg.sum, 2);
	cr_assert(s->flags & DTS_NATIVE_PF_EMPHASIS);
	cr_assert_str_eq(r.process, "tool");
	rx_close(&r);
}

Test(client, open_arguments_and_environment)
{
	struct rx r;
	struct dts *d;

	rx_open(&r);
	errno = 0;
	cr_assert_null(dts_open(r.addr, "a b", KEY_ID, SECRET, "p"));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(dts_open(r.addr, "42", KEY_ID, SECRET, "$$$"));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(dts_open(r.addr, "42", KEY_ID, NULL, "p"));
	cr_assert_null(dts_open("[::1", "42", KEY_ID, SECRET, "p"));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(dts_open("127.0.0.1:99999", "42", KEY_ID, SECRET, "p"));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(dts_open("127.0.0.1:0", "42", KEY_ID, SECRET, "p"));
	cr_assert_null(dts_open("127.0.0.1:8x", "42", KEY_ID, SECRET, "p"));

	setenv("DATTSS_SERVER", r.addr, 1);
	setenv("DATTSS_USER", "42", 1);
	setenv("DATTSS_KEY_ID", "7", 1);
	setenv("DATTSS_SECRET", SECRET, 1);
	unsetenv("DATTSS_PROCESS");
	d = dts_open_env();
	cr_assert_not_null(d, "%s", strerror(errno));
	cr_assert_eq(dts_count(d, "env", 1), 0);
	cr_assert_eq(dts_close(d), 0);
	rx_drain(&r);
	cr_assert_str_eq(r.process, program_invocation_short_name, "default process: the program's name");
	cr_assert_eq(find(&r, "env", DTS_COUNTER)->agg.sum, 1);

	setenv("DATTSS_KEY_ID", "seven", 1);
	cr_assert_null(dts_open_env());
	cr_assert_eq(errno, EINVAL);
	setenv("DATTSS_KEY_ID", "4294967296", 1);
	cr_assert_null(dts_open_env());
	setenv("DATTSS_KEY_ID", "7", 1);
	unsetenv("DATTSS_SECRET");
	cr_assert_null(dts_open_env());
	cr_assert_eq(errno, EINVAL);
	rx_close(&r);
}
