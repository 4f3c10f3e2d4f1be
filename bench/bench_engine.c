/*
 * bench_engine.c - decode + aggregate throughput of one RX core, from memory, through the public engine API.
 *
 * What is measured. One thread plays both roles the daemon gives to two: the RX core (dts_core_ingest_burst on --burst
 * prebuilt datagrams at a time, as a receive burst in the daemon, and dts_core_tick after each call; --burst 1 calls
 * dts_core_ingest and dts_core_tick once per datagram instead, the path before bursts) and the merger
 * (dts_merger_step whenever a hand-over happened, and at least every MERGE_PERIOD_MS so slots roll and minutes close
 * as in dattssd). Time inside the ingest bursts and time inside dts_merger_step are accumulated separately, so the
 * SUMMARY line says how much of a line's cost is the RX core's and how much is the merger's fold (which in the daemon
 * runs on another thread, but on the same 2 cores).
 *
 * What is not measured: sockets, the kernel, the generation of the traffic. The datagrams are generated once, before
 * the clock starts, into an in-memory pool (--pool-mb, cycled). Names are 'proc<k%50>.<type>_<k>', k drawn uniformly
 * from [0, --names) by a fixed-seed PRNG (no Zipf: every name is equally likely, the worst case for caches); a name's
 * type is a fixed function of k and the --mix weights, so one name is always one series. Values are realistic:
 * counters 1..10 (15% sampled at @0.5 or @0.1), timers lognormal around 20 ms (10% at @0.5), gauges 0..10000 (10% as
 * +N/-N deltas), set members among 10,000 users.
 *
 * The run ends by handing over the last table and folding it (timed as merger work), so every line fed has been
 * folded once, also in a short --lines run under callgrind.
 *
 * The clock is real: now_s and now_ms follow CLOCK_REALTIME, so ticks, 5-second slots and minute closes happen at the
 * daemon's cadence. One clock read per BURST datagrams (or per --burst call when larger) keeps the timing overhead out
 * of the per-line figure.
 *
 * Output: progress on stderr once per second, then exactly one line on stdout:
 *   SUMMARY bench=engine names=K mix=... lines_per_datagram=N burst=B table_capacity=C table_capacity_max=M warmup=S
 *           series_reserve=R lines=... seconds=... lines_per_sec=...
 *           ns_per_line=... ingest_ns_per_line=... merge_ns_per_line=... rejected=... dropped=... rss_mb=...
 *           rss_base_mb=... series_live=... bytes_per_series=... table_buckets=...
 * Every figure after warmup= is for the measured run only (the --warmup seconds are fed first and not counted), except
 * table_buckets: the buckets of the core's tables together at the end (dts_merger_stats.table_buckets; 3 tables,
 * so 3 x 2^21 once they have grown to --table-capacity-max 2097152).
 * Memory: rss_base_mb is VmRSS once the pool is built and the merger created (before any line; with --series-reserve,
 * before the merger is created, so that the reserve counts), rss_mb at the end;
 * bytes_per_series = (rss_mb - rss_base_mb) / series_live. It includes everything the run made resident besides the
 * series themselves: the core's tables (pages touched as they fill, ~41 MiB at most at the default capacity), the
 * merger's fold cache (1 MiB), the published current states and the ones waiting for their grace period.
 * Exit status 1 when any of its own lines was rejected (a decoder bug or a generator bug: both must be fixed) or when
 * the engine's line counter disagrees with the lines fed.
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
#include "dts/engine.h"

#define PACK_BYTES 1400 /* packed datagrams: lines joined up to this size (a safe MTU-sized payload) */
#define BURST 32 /* datagrams between two clock reads (a recvmmsg burst in the daemon is up to 64) */
#define MAX_BURST 1024 /* largest --burst */
#define MERGE_PERIOD_MS 20 /* dattssd's merger wakes this often (server/main.c MERGER_PERIOD_MS) */
#define MAX_LINE_GEN 128 /* longest line the generator writes */

struct opts {
	uint64_t names;
	unsigned mix[DTS_NTYPES]; /* weights, indexed by enum dts_type */
	unsigned lpd; /* lines per datagram, 0 = packed */
	unsigned burst; /* datagrams per dts_core_ingest_burst call; 1 = dts_core_ingest per datagram */
	double seconds;
	double warmup; /* seconds fed before measuring (series creation is a one-off cost) */
	uint64_t lines; /* 0 = run for seconds */
	uint64_t seed;
	unsigned tick_ms;
	uint32_t table_capacity;
	uint32_t table_capacity_max;
	uint64_t series_reserve; /* dattssd's series_reserve: the merger's and the core's tables' */
	size_t pool_mb;
	int quiet;
};

/* One datagram of the pool. */
struct dgram {
	uint32_t off;
	uint16_t len;
	uint16_t lines;
};

struct pool {
	char *buf;
	size_t used;
	struct dgram *d;
	size_t n, cap;
	uint64_t lines;
	uint64_t type_lines[DTS_NTYPES];
};

/* Write one statsd line for a random name into out (no newline). Returns its length. */
static int gen_line(const struct opts *o, uint64_t *rng, char *out, enum dts_type *type_out)
{
	uint64_t k = rng_below(rng, o->names);
	enum dts_type t = mix_type(o->mix, k);
	int n = gen_name(out, MAX_LINE_GEN, k, t);
	unsigned r = (unsigned)rng_below(rng, 100);

	switch (t) {
	case DTS_COUNTER:
		n += snprintf(out + n, MAX_LINE_GEN - n, "%u|c%s", 1 + (unsigned)rng_below(rng, 10),
			      r < 10 ? "|@0.5" : r < 15 ? "|@0.1" : "");
		break;
	case DTS_TIMER: {
		/* lognormal: median 20 ms, sigma 1 (p99 ~ 200 ms) */
		double ms = exp(log(20.0) + rng_normal(rng));

		n += snprintf(out + n, MAX_LINE_GEN - n, "%.1f|ms%s", ms, r < 10 ? "|@0.5" : "");
		break;
	}
	case DTS_GAUGE:
		if (r < 5)
			n += snprintf(out + n, MAX_LINE_GEN - n, "+%u|g", 1 + (unsigned)rng_below(rng, 10));
		else if (r < 10)
			n += snprintf(out + n, MAX_LINE_GEN - n, "-%u|g", 1 + (unsigned)rng_below(rng, 10));
		else
			n += snprintf(out + n, MAX_LINE_GEN - n, "%.2f|g", rng_unit(rng) * 10000.0);
		break;
	case DTS_SET:
		n += snprintf(out + n, MAX_LINE_GEN - n, "user%u|s", (unsigned)rng_below(rng, 10000));
		break;
	}
	*type_out = t;
	return n;
}

static void pool_free(struct pool *p)
{
	free(p->buf);
	free(p->d);
}

/*
 * Fill the pool with datagrams until pool_mb bytes (or, with --lines, a little more than the lines the run needs:
 * a short run under callgrind should not spend its instructions generating traffic). Returns 0 or -ENOMEM.
 */
static int pool_build(struct pool *p, const struct opts *o)
{
	size_t cap = o->pool_mb << 20;
	uint64_t rng = o->seed;
	char line[MAX_LINE_GEN];
	enum dts_type t;
	int n;

	memset(p, 0, sizeof(*p));
	if (o->lines && o->lines * 48 + PACK_BYTES < cap)
		cap = o->lines * 48 + PACK_BYTES;
	p->buf = malloc(cap);
	p->cap = 1024;
	p->d = malloc(p->cap * sizeof(*p->d));
	if (!p->buf || !p->d)
		goto out_free_pool;
	n = gen_line(o, &rng, line, &t); /* the next line to place (carried over when it does not fit) */
	for (;;) {
		struct dgram d = { .off = (uint32_t)p->used };
		uint64_t tl[DTS_NTYPES] = { 0 };

		/* Lines of this datagram: exactly lpd, or as many as fit in PACK_BYTES (at least one). */
		while (o->lpd ? d.lines < o->lpd : d.lines == 0 || d.len + 1 + (size_t)n <= PACK_BYTES) {
			if (p->used + (size_t)d.len + 1 + (size_t)n > cap)
				goto out_full;
			if (d.lines)
				p->buf[p->used + d.len++] = '\n';
			memcpy(p->buf + p->used + d.len, line, (size_t)n);
			d.len += (uint16_t)n;
			d.lines++;
			tl[t]++;
			n = gen_line(o, &rng, line, &t);
		}
		if (p->n == p->cap) {
			struct dgram *nd = realloc(p->d, 2 * p->cap * sizeof(*nd));

			if (!nd)
				goto out_free_pool;
			p->d = nd;
			p->cap *= 2;
		}
		p->d[p->n++] = d;
		p->used += d.len;
		p->lines += d.lines;
		for (int k = 0; k < DTS_NTYPES; k++)
			p->type_lines[k] += tl[k];
		if (o->lines && p->lines >= o->lines)
			break;
	}
out_full:
	if (p->n)
		return 0;
out_free_pool:
	pool_free(p);
	return -ENOMEM;
}

/* ---- options ------------------------------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_engine [options]\n"
		"Decode + aggregate statsd traffic from memory on one core through the engine API; prints one SUMMARY line.\n"
		"  --names K               distinct names, drawn uniformly (default 10000)\n"
		"  --mix c=70,ms=20,g=10   type weights: c counters, ms timers, g gauges, s sets (default c=70,ms=20,g=10)\n"
		"  --lines-per-datagram N  lines per datagram; 0 = pack lines up to %d bytes (default 0)\n"
		"  --burst N               datagrams per dts_core_ingest_burst call, 1..%d (default 32, as a\n"
		"                          recvmmsg burst); 1 = one dts_core_ingest call per datagram\n"
		"  --seconds S             run for S seconds (default 3)\n"
		"  --warmup S              feed S seconds first, unmeasured, so that series exist (default 0)\n"
		"  --lines N               run for N lines instead (at datagram granularity)\n"
		"  --seed N                traffic PRNG seed (default 1)\n"
		"  --tick-ms MS            core hand-over period (default 1000, as dattssd)\n"
		"  --table-capacity N      buckets per core table, power of two (default 65536, as dattssd)\n"
		"  --table-capacity-max N  tables that fill before their tick grow up to N buckets (default 524288, as\n"
		"                          dattssd; 0: no growth)\n"
		"  --series-reserve N      fault in the memory of N series and the core's tables for them first,\n"
		"                          as dattssd's series_reserve (default 0)\n"
		"  --pool-mb MB            size of the pregenerated datagram pool, cycled (default 64)\n"
		"  --quiet                 no progress on stderr\n"
		"  --help\n",
		PACK_BYTES, MAX_BURST);
}

static void format_mix(const unsigned mix[DTS_NTYPES], char *out, size_t n)
{
	size_t l = 0;

	out[0] = '\0';
	for (int t = 0; t < DTS_NTYPES; t++)
		if (mix[t] && l < n)
			l += (size_t)snprintf(out + l, n - l, "%s%s=%u", l ? "," : "", type_key[t], mix[t]);
}

/* arg as a table capacity: 0 or a power of two, in [lo, 2^24], into *out. Returns 0 or -EINVAL. */
static int parse_capacity(const char *arg, uint64_t lo, uint32_t *out)
{
	uint64_t v;

	if (parse_u64_in(arg, lo, 1u << 24, &v) || (v & (v - 1)))
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* bench_engine's own options, for opt_parse; the traffic options go to opt_traffic. Returns 0 when arg was taken,
 * -EINVAL when it is not a valid value, 1 when ch is none of them. */
static int take_opt(int ch, const char *arg, void *ctx)
{
	struct opts *o = ctx;
	uint64_t v;

	switch (ch) {
	case 'b':
		return parse_uint_in(arg, 1, MAX_BURST, &o->burst);
	case 's':
		return parse_seconds(arg, &o->seconds);
	case 'W': {
		char *e;

		o->warmup = strtod(arg, &e);
		return *e || !(o->warmup >= 0 && o->warmup < 86400) ? -EINVAL : 0;
	}
	case 'n':
		return parse_u64_in(arg, 1, UINT64_MAX, &o->lines);
	case 't':
		return parse_uint_in(arg, 1, 60000, &o->tick_ms);
	case 'c':
		return parse_capacity(arg, 1024, &o->table_capacity);
	case 'C':
		return parse_capacity(arg, 0, &o->table_capacity_max);
	case 'R':
		return parse_u64_in(arg, 0, DTS_MAX_SERIES_LIMIT, &o->series_reserve);
	case 'p':
		if (parse_u64_in(arg, 1, 4095, &v))
			return -EINVAL;
		o->pool_mb = (size_t)v;
		return 0;
	default:
		return opt_traffic(ch, arg, &o->names, o->mix, &o->lpd, &o->seed);
	}
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "names", required_argument, NULL, 'k' },
		{ "mix", required_argument, NULL, 'm' },
		{ "lines-per-datagram", required_argument, NULL, 'l' },
		{ "burst", required_argument, NULL, 'b' },
		{ "seconds", required_argument, NULL, 's' },
		{ "warmup", required_argument, NULL, 'W' },
		{ "lines", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 'S' },
		{ "tick-ms", required_argument, NULL, 't' },
		{ "table-capacity", required_argument, NULL, 'c' },
		{ "table-capacity-max", required_argument, NULL, 'C' },
		{ "series-reserve", required_argument, NULL, 'R' },
		{ "pool-mb", required_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	o->names = 10000;
	parse_mix("c=70,ms=20,g=10", o->mix);
	o->lpd = 0;
	o->burst = 32;
	o->seconds = 3;
	o->warmup = 0;
	o->lines = 0;
	o->seed = 1;
	o->tick_ms = 1000;
	o->table_capacity = 1u << 16;
	o->table_capacity_max = 1u << 19;
	o->series_reserve = 0;
	o->pool_mb = 64;
	o->quiet = 0;
	return opt_parse("bench_engine", argc, argv, lo, take_opt, o, &o->quiet, usage);
}

/* ---- the run ------------------------------------------------------------------------------------------------------- */

struct run {
	uint64_t lines; /* lines fed */
	uint64_t dgrams;
	int64_t ingest_ns; /* inside the ingest bursts (dts_core_ingest[_burst] + dts_core_tick) */
	int64_t merge_ns; /* inside dts_merger_step */
	int64_t wall_ns;
	uint64_t steps;
};

/*
 * Feed up to o->burst datagrams from pool index *i on (fewer at the pool's end or at --lines), then tick. Returns
 * whether the tick handed the table over.
 */
static bool feed_burst(const struct opts *o, const struct pool *p, struct dts_core *c, int64_t now_ms, size_t *i,
		       struct run *r)
{
	struct dts_dgram dd[MAX_BURST];
	unsigned k = 0;

	if (o->burst == 1) {
		const struct dgram *d = &p->d[*i];

		dts_core_ingest(c, p->buf + d->off, d->len, now_ms / 1000);
		r->lines += d->lines;
		r->dgrams++;
		if (++*i == p->n)
			*i = 0;
		return dts_core_tick(c, now_ms);
	}
	while (k < o->burst) {
		const struct dgram *d = &p->d[*i];

		dd[k].buf = p->buf + d->off;
		dd[k++].len = d->len;
		r->lines += d->lines;
		if (++*i == p->n) {
			*i = 0;
			break;
		}
		if (o->lines && r->lines >= o->lines)
			break;
	}
	r->dgrams += k;
	dts_core_ingest_burst(c, dd, k, now_ms / 1000);
	return dts_core_tick(c, now_ms);
}

static void run(const struct opts *o, const struct pool *p, struct dts_merger *m, struct dts_core *c, struct run *r)
{
	const unsigned calls = o->burst >= BURST ? 1 : BURST / o->burst; /* ingest calls per clock read */
	const int64_t t_start = mono_ns();
	const int64_t t_end = t_start + (int64_t)(o->seconds * 1e9);
	int64_t last_step_ms = real_ms(), next_report = t_start + 1000000000;
	uint64_t lines_at_report = 0;
	size_t i = 0;

	memset(r, 0, sizeof(*r));
	for (;;) {
		int64_t t0 = mono_ns(), t1;
		int64_t now_ms = real_ms();
		bool handed = false;

		for (unsigned b = 0; b < calls && !handed; b++) {
			handed = feed_burst(o, p, c, now_ms, &i, r);
			if (o->lines && r->lines >= o->lines)
				break;
		}
		t1 = mono_ns();
		r->ingest_ns += t1 - t0;
		if (handed || now_ms - last_step_ms >= MERGE_PERIOD_MS) {
			merger_step_timed(m, now_ms, &r->merge_ns, &r->steps);
			last_step_ms = now_ms;
		}
		if (o->lines ? r->lines >= o->lines : t1 >= t_end)
			break;
		if (t1 >= next_report) {
			if (!o->quiet) {
				struct dts_merger_stats ms;

				dts_merger_stats_read(m, &ms);
				fprintf(stderr, "bench_engine: t=%.0fs lines=%" PRIu64 " rate=%.2fM/s series=%" PRIu64 "\n",
					(double)(t1 - t_start) / 1e9, r->lines,
					(double)(r->lines - lines_at_report) / 1e6, ms.series_live);
			}
			lines_at_report = r->lines;
			next_report += 1000000000;
		}
	}
	/* Hand over and fold the last table too, so that every line fed was also folded (short --lines runs included). */
	core_flush_fold(c, m, &r->merge_ns, &r->steps);
	r->wall_ns = mono_ns() - t_start;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct pool p;
	struct dts_merger_cfg mcfg;
	struct dts_merger *m;
	struct dts_core_stats cs, cs0;
	struct dts_merger_stats ms, ms0;
	struct run r;
	uint64_t rejected = 0, dropped, core_dropped;
	char mixs[64];
	double rss, rss_base;
	int rc = parse_opts(argc, argv, &o);

	if (rc)
		return rc == 1 ? 0 : 2;
	format_mix(o.mix, mixs, sizeof(mixs));
	if (pool_build(&p, &o) != 0) {
		fprintf(stderr, "bench_engine: cannot allocate the %zu MB datagram pool\n", o.pool_mb);
		return 1;
	}
	if (!o.quiet)
		fprintf(stderr,
			"bench_engine: pool %.1f MB, %zu datagrams, %.1f lines/datagram, %" PRIu64
			" lines (c %" PRIu64 " ms %" PRIu64 " g %" PRIu64 " s %" PRIu64 ")\n",
			(double)p.used / (1 << 20), p.n, (double)p.lines / (double)p.n, p.lines, p.type_lines[0],
			p.type_lines[1], p.type_lines[2], p.type_lines[3]);

	dts_rcu_register_thread();
	dts_merger_cfg_defaults(&mcfg);
	mcfg.cores = 1;
	mcfg.tick_ms = o.tick_ms;
	mcfg.table_capacity = o.table_capacity;
	mcfg.table_capacity_max = o.table_capacity_max > o.table_capacity ? o.table_capacity_max : 0;
	mcfg.series_reserve = o.series_reserve;
	if (mcfg.max_series < o.series_reserve)
		mcfg.max_series = o.series_reserve;
	rss_base = rss_mb();
	m = dts_merger_create(&mcfg);
	if (!m || dts_merger_reserve_tables(m, 0, o.series_reserve) != 0) {
		fprintf(stderr, "bench_engine: %s: %s\n", m ? "dts_merger_reserve_tables" : "dts_merger_create",
			strerror(errno));
		pool_free(&p);
		dts_rcu_unregister_thread();
		return 1;
	}

	memset(&cs0, 0, sizeof(cs0));
	memset(&ms0, 0, sizeof(ms0));
	if (o.series_reserve == 0)
		rss_base = rss_mb();
	if (o.warmup > 0) {
		struct opts w = o;

		w.seconds = o.warmup;
		w.lines = 0;
		run(&w, &p, m, dts_merger_core(m, 0), &r);
		/* the counters below are for the measured run only */
		dts_core_stats_read(dts_merger_core(m, 0), &cs0);
		dts_merger_stats_read(m, &ms0);
	}
	run(&o, &p, m, dts_merger_core(m, 0), &r);

	dts_core_stats_read(dts_merger_core(m, 0), &cs);
	dts_merger_stats_read(m, &ms);
	cs.lines -= cs0.lines;
	cs.samples -= cs0.samples;
	cs.handovers -= cs0.handovers;
	cs.handover_deferred -= cs0.handover_deferred;
	ms.tables_folded -= ms0.tables_folded;
	ms.entries_folded -= ms0.entries_folded;
	ms.minutes_closed -= ms0.minutes_closed;
	for (int i = 0; i < DTS_REJ_COUNT; i++) {
		cs.rejected[i] -= cs0.rejected[i];
		rejected += cs.rejected[i];
	}
	dropped = drops_since(cs.dropped, cs0.dropped, ms.dropped, ms0.dropped, &core_dropped);
	rss = rss_mb();

	printf("SUMMARY bench=engine names=%" PRIu64 " mix=%s lines_per_datagram=%u burst=%u table_capacity=%u"
	       " table_capacity_max=%u warmup=%.0f series_reserve=%" PRIu64 " lines=%" PRIu64 " seconds=%.3f lines_per_sec=%.0f ns_per_line=%.2f ingest_ns_per_line=%.2f merge_ns_per_line=%.2f"
	       " rejected=%" PRIu64 " dropped=%" PRIu64 " rss_mb=%.1f rss_base_mb=%.1f series_live=%" PRIu64
	       " bytes_per_series=%.0f table_buckets=%" PRIu64 "\n",
	       o.names, mixs, o.lpd, o.burst, o.table_capacity, o.table_capacity_max, o.warmup,
	       o.series_reserve, r.lines, (double)r.wall_ns / 1e9,
	       (double)r.lines / ((double)r.wall_ns / 1e9),
	       (double)r.wall_ns / (double)r.lines, (double)r.ingest_ns / (double)r.lines,
	       (double)r.merge_ns / (double)r.lines, rejected, dropped, rss, rss_base, ms.series_live,
	       ms.series_live && rss >= 0 ? (rss - rss_base) * 1048576.0 / (double)ms.series_live : 0.0,
	       ms.table_buckets);
	fflush(stdout);
	if (!o.quiet)
		fprintf(stderr,
			"bench_engine: %" PRIu64 " datagrams, %" PRIu64 " merger steps, %" PRIu64 " hand-overs (%" PRIu64
			" deferred), %" PRIu64 " tables folded, %" PRIu64 " entries folded, series live %" PRIu64
			", minutes closed %" PRIu64 "\n",
			r.dgrams, r.steps, cs.handovers, cs.handover_deferred, ms.tables_folded, ms.entries_folded,
			ms.series_live, ms.minutes_closed);
	rc = 0;
	if (rejected) {
		fprintf(stderr, "bench_engine: FAIL: %" PRIu64 " of its own generated lines were rejected:", rejected);
		for (int i = 0; i < DTS_REJ_COUNT; i++)
			if (cs.rejected[i])
				fprintf(stderr, " %s=%" PRIu64, dts_reject_name((enum dts_reject)i), cs.rejected[i]);
		fprintf(stderr, "\n");
		rc = 1;
	}
	if (cs.lines != r.lines || cs.samples + rejected + core_dropped != r.lines) {
		fprintf(stderr,
			"bench_engine: FAIL: fed %" PRIu64 " lines but the core counted %" PRIu64 " lines, %" PRIu64
			" samples\n",
			r.lines, cs.lines, cs.samples);
		rc = 1;
	}
	note_dropped("bench_engine", cs.dropped, ms.dropped);

	merger_teardown(m);
	pool_free(&p);
	return rc;
}
