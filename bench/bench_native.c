/*
 * bench_native.c - native datagrams of partial aggregates through one RX core and the merger: verified (HMAC, replay
 * window, contents), decoded into the core's table, folded and merged (timers' sketches bin for bin) - the server side
 * of issue 5's target "1 million partial aggregates per second per core decoded, verified and merged".
 *
 * What is measured. One thread plays the RX core (dts_core_ingest + dts_core_tick on prebuilt datagrams) and the
 * merger (dts_merger_step after each hand-over and at least every MERGE_PERIOD_MS), as bench_engine does for lines;
 * the two times are summed and also reported apart (in dattssd the merger runs on another thread).
 *
 * The traffic. --clients instances of one user (one key), each with --series series of its process (names m<k>,
 * type by --mix: counters, timers with a sketch of --values values, gauges), encoded once by the real encoder
 * (libdattss's codec) into a pool of MAC'ed datagrams of up to 1,400 bytes. A datagram can be accepted once per
 * instance and sequence number, so between two passes over the pool every datagram gets a fresh sequence number and
 * the current slot, and its MAC again (untimed: that is the clients' work).
 *
 * Output: progress on stderr, then one line on stdout:
 *   SUMMARY bench=native clients=C series=S mix=... values=V datagrams=... partials=... seconds=...
 *           partials_per_sec=... ns_per_partial=... ingest_ns_per_partial=... merge_ns_per_partial=...
 *           bytes_per_partial=... rejected=... dropped=... rss_mb=...
 * Exit status 1 when a datagram of its own was rejected or a partial was not taken.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "dts/bytes.h"
#include "dts/engine.h"
#include "dts/native.h"

#define MERGE_PERIOD_MS 20 /* dattssd's merger period (server/main.c) */
#define BURST 32 /* datagrams between two clock reads */
#define KEY_ID 1

struct opts {
	unsigned clients;
	unsigned series; /* per client */
	unsigned mix[DTS_NTYPES];
	unsigned values; /* per timer partial */
	double seconds;
	double warmup; /* seconds fed first and not measured (series creation is a one-off cost) */
	unsigned tick_ms;
	uint32_t table_capacity;
	int quiet;
};

struct dgram {
	uint8_t *b;
	uint16_t len;
	uint16_t partials;
};

struct pool {
	struct dgram *d;
	size_t n, cap;
	uint64_t partials;
	uint64_t bytes;
	uint64_t *seq; /* per client: the next sequence number */
	uint32_t *client; /* per datagram: its client */
};

static struct dts_native_mac_key mac;
static const struct dts_native_key key = { .user = "bench", .user_len = 5, .mac = &mac };

static const struct dts_native_key *lookup(void *ctx, uint32_t id)
{
	(void)ctx;
	return id == KEY_ID ? &key : NULL;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: bench_native [options]\n"
		"Verify, decode and merge native datagrams of partial aggregates on one core; prints one SUMMARY line.\n"
		"  --clients N     client instances (default 64)\n"
		"  --series N      series per client (default 1000)\n"
		"  --mix SPEC      partial types, e.g. c=70,ms=20,g=10 (sets are not generated: s=0)\n"
		"  --values N      values in each timer partial's sketch (default 8)\n"
		"  --seconds S     measured run (default 5)\n"
		"  --warmup S      seconds fed before measuring (default 2)\n"
		"  --tick-ms N     hand-over tick (default 1000)\n"
		"  --table N       table buckets, a power of two (default 65536)\n"
		"  --quiet         no progress on stderr\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "clients", required_argument, 0, 'c' }, { "series", required_argument, 0, 'n' },
		{ "mix", required_argument, 0, 'm' },	  { "values", required_argument, 0, 'v' },
		{ "seconds", required_argument, 0, 's' }, { "tick-ms", required_argument, 0, 't' },
		{ "table", required_argument, 0, 'T' },	  { "quiet", no_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' },	  { "warmup", required_argument, 0, 'w' },
		{ 0, 0, 0, 0 },
	};
	uint64_t v;
	int c, rc;

	*o = (struct opts){ .clients = 64, .series = 1000, .mix = { 70, 20, 10, 0 }, .values = 8, .seconds = 5,
			    .warmup = 2, .tick_ms = 1000, .table_capacity = 1u << 16 };
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
		case 'n':
		case 'v':
		case 't':
		case 'T':
			if (parse_u64(optarg, &v) != 0 || v < 1 || v > (1u << 30)) {
				fprintf(stderr, "bench_native: --%s: not a number in 1..2^30: '%s'\n",
					c == 'c' ? "clients" : c == 'n' ? "series" : c == 'v' ? "values" :
					c == 't' ? "tick-ms" : "table", optarg);
				return 2;
			}
			if (c == 'c')
				o->clients = (unsigned)v;
			else if (c == 'n')
				o->series = (unsigned)v;
			else if (c == 'v')
				o->values = (unsigned)v;
			else if (c == 't')
				o->tick_ms = (unsigned)v;
			else
				o->table_capacity = (uint32_t)v;
			break;
		case 'm':
			if (parse_mix(optarg, o->mix) != 0 || o->mix[DTS_SET]) {
				fprintf(stderr, "bench_native: --mix: expected c=N,ms=N,g=N (no sets): '%s'\n", optarg);
				return 2;
			}
			break;
		case 's':
			o->seconds = atof(optarg);
			if (!(o->seconds > 0)) {
				fprintf(stderr, "bench_native: --seconds: must be > 0: '%s'\n", optarg);
				return 2;
			}
			break;
		case 'w':
			o->warmup = atof(optarg);
			if (!(o->warmup >= 0)) {
				fprintf(stderr, "bench_native: --warmup: must be >= 0: '%s'\n", optarg);
				return 2;
			}
			break;
		default:
			if ((rc = opt_common(c, &o->quiet, usage)) != 0)
				return rc;
			break;
		}
	}
	return opt_no_operands("bench_native", argc, argv, usage) ? 2 : 0;
}

/* ---- the pool ---------------------------------------------------------------------------------------------------- */

struct collect {
	struct pool *p;
	uint32_t client;
	uint16_t partials; /* partials added since the last datagram was emitted */
};

static int collect(void *ctx, const uint8_t *dgram, size_t len)
{
	struct collect *c = ctx;
	struct pool *p = c->p;

	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 4096;
		struct dgram *d = realloc(p->d, cap * sizeof(*d));
		uint32_t *cl = realloc(p->client, cap * sizeof(*cl));

		if (d)
			p->d = d;
		if (cl)
			p->client = cl;
		if (!d || !cl)
			return -ENOMEM;
		p->cap = cap;
	}
	p->d[p->n].b = malloc(len);
	if (!p->d[p->n].b)
		return -ENOMEM;
	memcpy(p->d[p->n].b, dgram, len);
	p->d[p->n].len = (uint16_t)len;
	p->d[p->n].partials = (uint16_t)dts_rd16(dgram + 34);
	p->client[p->n] = c->client;
	p->partials += p->d[p->n].partials;
	p->bytes += len;
	p->n++;
	return 0;
}

static uint8_t type_of(const struct opts *o, uint64_t k)
{
	unsigned total = o->mix[0] + o->mix[1] + o->mix[2], x = (unsigned)(k * 2654435761u % total);

	for (uint8_t t = 0; t < DTS_SET; t++) {
		if (x < o->mix[t])
			return t;
		x -= o->mix[t];
	}
	return DTS_COUNTER;
}

static int pool_build(struct pool *p, const struct opts *o, int64_t slot)
{
	static struct dts_native_enc enc;
	char name[24], process[16];
	uint64_t rng = 0x243f6a8885a308d3ULL;

	memset(p, 0, sizeof(*p));
	p->seq = calloc(o->clients, sizeof(*p->seq));
	if (!p->seq)
		return -ENOMEM;
	for (unsigned cl = 0; cl < o->clients; cl++) {
		struct collect c = { .p = p, .client = cl };
		struct dts_native_hdr h = { .key_id = KEY_ID, .instance = 0x1000 + cl, .slot = slot, .user = "bench",
					    .user_len = 5, .process = process,
					    .stats = { .uptime_s = 100, .rss_bytes = 1u << 24, .cpu_pct = 1.0f } };

		h.process_len = (size_t)snprintf(process, sizeof(process), "p%u", cl);
		p->seq[cl] = 1;
		if (dts_native_enc_begin(&enc, &h, &mac, &p->seq[cl], collect, &c) != 0)
			return -EINVAL;
		for (unsigned k = 0; k < o->series; k++) {
			struct dts_native_partial pt = { .name = name, .tags = "", .type = type_of(o, k) };
			struct dts_sketch sk;

			pt.name_len = (uint16_t)snprintf(name, sizeof(name), "m%u", k);
			dts_agg_init(&pt.agg);
			dts_sketch_init(&sk);
			if (pt.type == DTS_TIMER) {
				for (unsigned i = 0; i < o->values; i++) {
					double v = 20.0 * exp(rng_normal(&rng) * 0.8);

					dts_agg_add(&pt.agg, v, 1.0);
					dts_sketch_add(&sk, v, 1.0);
				}
				pt.sketch = &sk;
			} else if (pt.type == DTS_GAUGE) {
				dts_agg_add(&pt.agg, (double)rng_below(&rng, 10000), 1.0);
			} else {
				for (unsigned i = 0; i < 1 + rng_below(&rng, 20); i++)
					dts_agg_add(&pt.agg, 1 + (double)rng_below(&rng, 10), 1.0);
			}
			int r = dts_native_enc_partial(&enc, &pt);

			dts_sketch_free(&sk);
			if (r != 0)
				return r;
		}
		if (dts_native_enc_end(&enc) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Give every datagram a fresh sequence number and slot, and its MAC again (what clients do; untimed). */
static void pool_resequence(struct pool *p, int64_t slot)
{
	for (size_t i = 0; i < p->n; i++) {
		uint8_t *b = p->d[i].b;

		dts_wr64(b + 16, p->seq[p->client[i]]++);
		dts_wr64(b + 24, (uint64_t)slot);
		dts_native_mac(&mac, b, p->d[i].len - DTS_NATIVE_MAC_LEN, b + p->d[i].len - DTS_NATIVE_MAC_LEN);
	}
}

static void pool_free(struct pool *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->d[i].b);
	free(p->d);
	free(p->client);
	free(p->seq);
}

/* ---- the run ------------------------------------------------------------------------------------------------------- */

struct run {
	uint64_t partials, dgrams, passes;
	int64_t ingest_ns, merge_ns;
	uint64_t steps;
};

/* Feed the pool for seconds (cycling, re-sequenced between passes); r holds this run's figures only. */
static void feed(const struct opts *o, struct pool *p, struct dts_merger *m, struct dts_core *c, double seconds,
		 struct run *r)
{
	const int64_t t_end = mono_ns() + (int64_t)(seconds * 1e9);
	int64_t next_report = mono_ns() + 1000000000, last_step_ms = real_ms(), now_ms;
	uint64_t at_report = 0;
	static size_t i; /* position in the pool, kept across runs: a datagram is never fed twice per pass */

	memset(r, 0, sizeof(*r));
	for (;;) {
		int64_t t0 = mono_ns(), t1;
		bool handed = false;

		now_ms = real_ms();
		for (int b = 0; b < BURST && !handed; b++) {
			r->partials += dts_core_ingest(c, (const char *)p->d[i].b, p->d[i].len, now_ms / 1000);
			handed = dts_core_tick(c, now_ms);
			r->dgrams++;
			if (++i == p->n)
				break;
		}
		t1 = mono_ns();
		r->ingest_ns += t1 - t0;
		if (handed || now_ms - last_step_ms >= MERGE_PERIOD_MS) {
			merger_step_timed(m, now_ms, &r->merge_ns, &r->steps);
			last_step_ms = now_ms;
		}
		if (i == p->n) {
			i = 0;
			r->passes++;
			pool_resequence(p, now_ms / 1000 - now_ms / 1000 % DTS_SLOT_SECONDS);
		}
		if (t1 >= t_end)
			break;
		if (t1 >= next_report && !o->quiet) {
			fprintf(stderr, "bench_native: partials=%" PRIu64 " rate=%.2fM/s\n", r->partials,
				(double)(r->partials - at_report) / 1e6);
			at_report = r->partials;
			next_report += 1000000000;
		}
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	struct pool p;
	struct dts_merger_cfg mcfg;
	struct dts_merger *m;
	struct dts_core *c;
	struct dts_core_stats cs, cs0 = { 0 };
	struct dts_merger_stats ms, ms0 = { 0 };
	struct run r = { 0 };
	uint64_t rejected = 0, dropped;
	int64_t now_ms;
	char mixs[64];
	int rc = parse_opts(argc, argv, &o);

	if (rc)
		return rc == 1 ? 0 : 2; /* 1: --help; 2: bad arguments, said on stderr */
	snprintf(mixs, sizeof(mixs), "c=%u,ms=%u,g=%u", o.mix[0], o.mix[1], o.mix[2]);
	dts_native_mac_key_init(&mac, "bench-secret", 12);
	now_ms = real_ms();
	if (pool_build(&p, &o, now_ms / 1000 - now_ms / 1000 % DTS_SLOT_SECONDS) != 0) {
		fprintf(stderr, "bench_native: cannot build the datagram pool\n");
		pool_free(&p);
		return 1;
	}
	if (!o.quiet)
		fprintf(stderr, "bench_native: pool of %zu datagrams, %" PRIu64 " partials (%.1f per datagram, %.1f bytes "
			"each)\n", p.n, p.partials, (double)p.partials / (double)p.n, (double)p.bytes / (double)p.partials);

	dts_rcu_register_thread(); /* the core takes the RCU read side around the key lookup */
	dts_merger_cfg_defaults(&mcfg);
	mcfg.cores = 1;
	mcfg.tick_ms = o.tick_ms;
	mcfg.table_capacity = o.table_capacity;
	mcfg.native.key_lookup = lookup;
	m = dts_merger_create(&mcfg);
	if (!m) {
		fprintf(stderr, "bench_native: dts_merger_create: %s\n", strerror(errno));
		pool_free(&p);
		return 1;
	}
	c = dts_merger_core(m, 0);

	if (o.warmup > 0) {
		feed(&o, &p, m, c, o.warmup, &r);
		dts_core_stats_read(c, &cs0);
		dts_merger_stats_read(m, &ms0);
	}
	feed(&o, &p, m, c, o.seconds, &r);
	core_flush_fold(c, m, &r.merge_ns, &r.steps);

	dts_core_stats_read(c, &cs);
	dts_merger_stats_read(m, &ms);
	/* the measured run only */
	cs.native_datagrams -= cs0.native_datagrams;
	cs.partials -= cs0.partials;
	ms.encodings_merged -= ms0.encodings_merged;
	for (int i = 1; i < DTS_NREJ_COUNT; i++) {
		cs.native_rejected[i] -= cs0.native_rejected[i];
		rejected += cs.native_rejected[i];
	}
	dropped = drops_since(cs.dropped, cs0.dropped, ms.dropped, ms0.dropped, NULL);
	double secs = (double)(r.ingest_ns + r.merge_ns) / 1e9;

	printf("SUMMARY bench=native clients=%u series=%u mix=%s values=%u warmup=%.0f datagrams=%" PRIu64
	       " partials=%" PRIu64
	       " seconds=%.3f partials_per_sec=%.0f ns_per_partial=%.1f ingest_ns_per_partial=%.1f"
	       " merge_ns_per_partial=%.1f bytes_per_partial=%.1f rejected=%" PRIu64 " dropped=%" PRIu64
	       " rss_mb=%.1f\n",
	       o.clients, o.series, mixs, o.values, o.warmup, r.dgrams, r.partials, secs, (double)r.partials / secs,
	       1e9 * secs / (double)r.partials, (double)r.ingest_ns / (double)r.partials,
	       (double)r.merge_ns / (double)r.partials, (double)p.bytes / (double)p.partials, rejected, dropped,
	       rss_mb());
	fflush(stdout);
	if (!o.quiet)
		fprintf(stderr, "bench_native: %" PRIu64 " passes over the pool, %" PRIu64 " merger steps, %" PRIu64
			" encodings merged, series live %" PRIu64 "\n", r.passes, r.steps, ms.encodings_merged,
			ms.series_live);
	rc = 0;
	if (rejected || cs.native_datagrams != r.dgrams) {
		fprintf(stderr, "bench_native: FAIL: %" PRIu64 " of its own datagrams rejected:", rejected);
		for (int i = 1; i < DTS_NREJ_COUNT; i++)
			if (cs.native_rejected[i])
				fprintf(stderr, " %s=%" PRIu64, dts_native_reject_name(i), cs.native_rejected[i]);
		fprintf(stderr, "\n");
		rc = 1;
	}
	if (cs.partials != r.partials) {
		fprintf(stderr, "bench_native: FAIL: ingest returned %" PRIu64 " partials, the core counted %" PRIu64 "\n",
			r.partials, cs.partials);
		rc = 1;
	}
	note_dropped("bench_native", cs.dropped, ms.dropped);
	merger_teardown(m);
	pool_free(&p);
	return rc;
}
