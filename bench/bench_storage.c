/*
 * bench_storage.c - the storage benchmark (issue 3's targets), on the storage library alone (no daemon):
 *
 *   1. close: --minutes closed minutes of --series series, built in memory with the merger's record layout (sketch
 *      bins for timers; identities hand-built with cm->arena NULL: one allocation per record holding
 *      user\0process\0counter\0tags\0, which dts_closed_minute_release frees, where the merger packs them in arenas),
 *      each written as one closed minute with dts_storage_write_minute (the storage thread's work: minutes + rollup
 *      markers + hwm + checkpoint deletion in one WriteBatch), or with --sink pushed through the real sink
 *      (merger -> queue -> storage thread) while this thread, standing in for the merger, measures how long the push
 *      kept it.
 *      The first minute is minute --first-minute (0) of an hour; it, and every minute 0 of an hour after it, also puts
 *      one rollup marker per series; the others put only their minutes (the usual close). close_s_first /
 *      close_s_p50 / close_s_max report them, and close_s_newhour the first minute 0 of an hour after the first close
 *      (the markers without the first close's warm-up: e.g. --first-minute 58 --minutes 4): the close alone (the hours
 *      are not due while their minutes are being closed, so the sink's roller does not run in this phase).
 *   1b. roll: the hours of those minutes rolled up with dts_storage_roll_hours in chunks of DTS_STORAGE_ROLL_BUDGET_US,
 *      as the storage thread does between minutes: roll_s is the total, roll_chunk_ms_p99 / _max the chunks' time
 *      (how long a closed minute can wait behind the roller), roll_us_per_series the cost of one series-hour (it
 *      grows with the minutes in the hour: --minutes 60 for a full hour).
 *   2. size: flush, compact both families (with the retention filter, as the daemon's compactions do), and divide
 *      the minutes family's SST bytes by series x minutes; the hours family by series x hours.
 *   3. read: --read-days (8) days of minutes for --read-series series of another user (half counters, half timers,
 *      the same value model), flush + compact, then read each series over the whole range with dts_storage_read
 *      (one iterator, every value decoded) --read-reps times. The first read of each series after the compaction
 *      misses RocksDB's block cache (the OS page cache is warm: the files were just written): read8d_cold_ms_*;
 *      the later reads are warm: read8d_ms_p50 / p99, also split by type.
 *   4. checkpoints (--checkpoints N: this phase alone, instead of 1-3): N checkpoints of one open minute of --series
 *      series written with dts_storage_write_checkpoint, as the storage thread does every 5 s; the first is full,
 *      the others partial with every series changed (the daemon's worst case). With --slice K each checkpoint is
 *      handed over as partial slices of K series (the merger's walk in slices). checkpoint_s / checkpoint_cpu_s are
 *      the wall and this thread's CPU time per checkpoint (all its slices), checkpoint_proc_cpu_s the CPU of every
 *      thread (RocksDB's flushes too); ckpt_mb_avg the WriteBatch bytes per checkpoint. Then the store is closed,
 *      reopened and restored (dts_storage_restore without a merger stores the minute as closed): restore_s, and the
 *      restored series must be --series (else an error), with the minute's checkpoint data gone afterwards.
 *
 * Value model (as bench/dattss_load.c sends): names proc<k%50>/<type>_<k> of user "bench"; --timer-pct percent of
 * the series are timers with --values values per minute, lognormal around 20 ms (sigma 0.8: about two decades, dense
 * sketches); the others are counters receiving 1..20 lines of value 1 per minute.
 *
 * Usage:
 *   bench_storage [--series N] [--minutes M] [--first-minute F] [--timer-pct P] [--values V] [--read-series R]
 *                 [--read-days D] [--read-reps K] [--sink] [--dir DIR] [--keep] [--seed S]
 *   bench_storage --checkpoints N [--slice K] [--series N] [--timer-pct P] [--values V] [--dir DIR] [--seed S]
 * Defaults: 1,000,000 series, 3 minutes from minute 0 of an hour, 20% timers, 20 values, 8 read series, 8 days,
 * 25 reps; a temporary directory under /tmp, removed at the end unless --keep. --dir DIR uses DIR instead (an empty
 * or new directory on the filesystem to measure; never removed).
 *
 * Output: progress on stderr; one line on stdout:
 *   SUMMARY bench=storage series= minutes= first_minute= timer_pct= values= mode=direct|sink close_s_first=
 *           close_s_p50= close_s_max= close_s_newhour= release_s_avg= batch_mb_avg= parts_avg= push_us_max=
 *           push_cpu_us_max= roll_s= roll_chunk_ms_p99= roll_chunk_ms_max= roll_us_per_series= bytes_per_series_minute=
 *           bytes_per_series_hour= read_series= read_days= read8d_ms_p50= read8d_ms_p99= read8d_counter_ms_p50=
 *           read8d_timer_ms_p50= read8d_timer_ms_p99= read8d_cold_ms_p50= read8d_cold_ms_max= compression=
 *           rss_mb_max= drops= errors=
 * push_us_max is wall time (the merger thread can be descheduled during it), push_cpu_us_max the push's own work.
 * batch_mb_avg: WriteBatch bytes per closed minute; parts_avg: the WriteBatches it took (a large minute that only puts
 * is committed in parts of ~8 MB: docs/storage.md, "Closing a minute").
 * With --checkpoints (phase 4 alone):
 *   SUMMARY bench=storage mode=checkpoints series= checkpoints= slice= timer_pct= values= checkpoint_s=
 *           checkpoint_cpu_s= checkpoint_proc_cpu_s= ckpt_mb_avg= restore_s= rss_mb_max= drops= errors=
 * drops: series-minutes the store dropped (every reason) plus checkpoints/minutes refused by the sink's queue;
 * errors: failed writes, flushes, compactions, reads, and reads that did not return every point. Exit status 1 when
 * either is non-zero, 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "dts/storage.h"

#define PROCESSES 50
#define COUNTER_MAX_LINES 20
#define TIMER_MEDIAN_MS 20.0
#define TIMER_SIGMA 0.8

struct opts {
	size_t series;
	unsigned minutes;
	unsigned first_minute; /* offset in its hour of the first minute closed */
	unsigned timer_pct;
	unsigned values;
	size_t read_series;
	unsigned read_days;
	unsigned read_reps;
	bool sink;
	bool keep;
	unsigned checkpoints; /* phase 4 alone when > 0 */
	size_t slice; /* series per checkpoint slice (0: one call per checkpoint) */
	uint64_t seed;
	char dir[256];
};

/* ---- helpers ---------------------------------------------------------------------------------------------------- */

static uint64_t rng_state; /* bench_common's splitmix64, seeded by --seed */

static double rng_lognormal(void)
{
	return TIMER_MEDIAN_MS * exp(TIMER_SIGMA * rng_normal(&rng_state));
}

static int cmp_i64(const void *a, const void *b)
{
	const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of n sorted values, in ms. */
static double pct_ms(const int64_t *sorted, size_t n, double q)
{
	size_t i;

	if (!n)
		return NAN;
	i = (size_t)ceil(q * (double)n);
	i = i ? i - 1 : 0;
	return (double)sorted[i < n ? i : n - 1] / 1e6;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static bool is_timer(size_t k, unsigned timer_pct)
{
	return (unsigned)(k % 100) < timer_pct;
}

/* ---- closed minutes with the merger's record layout ------------------------------------------------------------- */

/* One record: the identity in one allocation starting at user (what dts_closed_minute_release frees when cm->arena is
 * NULL). */
static int rec_build(struct dts_minute_rec *r, const char *user, size_t k, bool timer, unsigned values)
{
	char proc[16], ctr[32];
	const int pl = snprintf(proc, sizeof(proc), "proc%zu", k % PROCESSES);
	const int cl = snprintf(ctr, sizeof(ctr), "%s_%zu", timer ? "ms" : "c", k);
	const size_t ul = strlen(user);
	char *id = malloc(ul + 1 + (size_t)pl + 1 + (size_t)cl + 1 + 1);

	if (!id)
		return -ENOMEM;
	memcpy(id, user, ul + 1);
	memcpy(id + ul + 1, proc, (size_t)pl + 1);
	memcpy(id + ul + 1 + pl + 1, ctr, (size_t)cl + 1);
	id[ul + 1 + pl + 1 + cl + 1] = '\0';
	r->user = id;
	r->process = id + ul + 1;
	r->counter = r->process + pl + 1;
	r->tags = r->counter + cl + 1;
	r->type = timer ? DTS_TIMER : DTS_COUNTER;
	dts_agg_init(&r->agg);
	dts_sketch_init(&r->sketch);
	dts_set_init(&r->set);
	if (timer) {
		for (unsigned i = 0; i < values; i++) {
			const double v = rng_lognormal();

			dts_agg_add(&r->agg, v, 1);
			if (dts_sketch_add(&r->sketch, v, 1) != 0)
				return -ENOMEM;
		}
	} else {
		const unsigned lines = 1 + (unsigned)rng_below(&rng_state, COUNTER_MAX_LINES);

		for (unsigned i = 0; i < lines; i++)
			dts_agg_add(&r->agg, 1, 1);
	}
	return 0;
}

/* A closed minute of n series: series k = first + i for i < n. NULL when out of memory. */
static struct dts_closed_minute *minute_build(int64_t minute, const char *user, size_t first, size_t n,
					      unsigned timer_pct, unsigned values)
{
	struct dts_closed_minute *cm = calloc(1, sizeof(*cm));

	if (!cm)
		return NULL;
	cm->minute = minute;
	cm->recs = calloc(n ? n : 1, sizeof(*cm->recs));
	if (!cm->recs) {
		free(cm);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const size_t k = first + i;
		int rc = rec_build(&cm->recs[i], user, k, is_timer(k, timer_pct), values);

		if (rc == 0 || cm->recs[i].user)
			cm->n++; /* a record whose identity exists is released with the minute */
		if (rc != 0) {
			dts_closed_minute_release(cm);
			return NULL;
		}
	}
	return cm;
}

/* ---- phases ------------------------------------------------------------------------------------------------------ */

struct results {
	int64_t *close_ns; /* per minute */
	int64_t close_cpu_ns; /* the last close's CPU time, every thread of the process (RocksDB's too) */
	int64_t release_ns;
	int64_t push_ns_max; /* wall time of the merger's push (includes being descheduled) */
	int64_t push_cpu_ns_max; /* CPU time of the push: the work it does */
	int64_t roll_ns, roll_chunk_ns_max; /* hourly rollup of the closed minutes' hours: total, longest chunk */
	double roll_chunk_ms_p99;
	long roll_series;
	double bytes_per_series_minute, bytes_per_series_hour;
	int64_t *read_warm, *read_warm_c, *read_warm_t, *read_cold;
	size_t n_warm, n_warm_c, n_warm_t, n_cold;
	long errors;
	uint64_t queue_drops;
};

/* Wait until the sink has written `want` closed minutes (or errors stop it). Returns 0 or -ETIMEDOUT. */
static int wait_written(struct dts_storage *st, uint64_t want, int64_t timeout_ns)
{
	const int64_t deadline = mono_ns() + timeout_ns;
	struct dts_storage_stats s;

	for (;;) {
		dts_storage_stats_read(st, &s);
		if (s.minutes_written + s.dropped_minutes[DTS_SDROP_QUEUE_FULL] +
			    s.dropped_minutes[DTS_SDROP_WRITE_FAILED] >=
		    want)
			return 0;
		if (mono_ns() > deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
}

/* Phase 1: close o->minutes minutes of o->series series, from minute 0 of hour h0. */
static void phase_close(struct dts_storage *st, const struct opts *o, int64_t h0_minute, struct results *r)
{
	struct dts_storage_sink *sink = NULL;
	struct dts_sink fns = { 0 };
	char err[512];

	if (o->sink) {
		sink = dts_storage_sink_start(st, err, sizeof(err));
		if (!sink) {
			fprintf(stderr, "bench_storage: %s\n", err);
			r->errors++;
			return;
		}
		fns = dts_storage_sink_get(sink);
	}
	for (unsigned m = 0; m < o->minutes; m++) {
		const int64_t b0 = mono_ns();
		struct dts_closed_minute *cm =
			minute_build(h0_minute + m, "bench", 0, o->series, o->timer_pct, o->values);
		const int64_t b1 = mono_ns();
		int64_t t0, t1;

		if (!cm) {
			fprintf(stderr, "bench_storage: out of memory building minute %u\n", m);
			r->errors++;
			break;
		}
		if (sink) {
			struct dts_storage_stats s;
			int64_t c0, c1;

			c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
			t0 = mono_ns();
			fns.minute_closed(fns.ctx, cm); /* the merger's side: must not wait */
			t1 = mono_ns();
			c1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
			if (t1 - t0 > r->push_ns_max)
				r->push_ns_max = t1 - t0;
			if (c1 - c0 > r->push_cpu_ns_max)
				r->push_cpu_ns_max = c1 - c0;
			if (wait_written(st, m + 1, 600 * 1000000000LL) != 0) {
				fprintf(stderr, "bench_storage: minute %u not written after 600 s\n", m);
				r->errors++;
				break;
			}
			dts_storage_stats_read(st, &s);
			r->close_ns[m] = (int64_t)s.batch_ns_last; /* the storage thread's build + commit */
			fprintf(stderr,
				"minute %u: built in %.2f s, pushed in %.1f us (%.1f us CPU), written in %.3f s (%.3f s after "
				"push)\n",
				m, (double)(b1 - b0) / 1e9, (double)(t1 - t0) / 1e3, (double)(c1 - c0) / 1e3,
				(double)s.batch_ns_last / 1e9,
				(double)(mono_ns() - t0) / 1e9);
		} else {
			const int64_t c0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
			int rc;

			t0 = mono_ns();
			rc = dts_storage_write_minute(st, cm);
			t1 = mono_ns();
			r->close_ns[m] = t1 - t0;
			r->close_cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - c0;
			if (rc != 0) {
				fprintf(stderr, "bench_storage: writing minute %u: %s\n", m, strerror(-rc));
				r->errors++;
			}
			dts_closed_minute_release(cm);
			r->release_ns += mono_ns() - t1;
			fprintf(stderr, "minute %u: built in %.2f s, written in %.3f s (%.3f s of CPU, every thread)\n", m,
				(double)(b1 - b0) / 1e9, (double)(t1 - t0) / 1e9, (double)r->close_cpu_ns / 1e9);
		}
	}
	if (sink)
		dts_storage_sink_stop(sink);
}

/* Phase 1b: roll up the hours of the closed minutes in the storage thread's chunks. */
static void phase_roll(struct dts_storage *st, int64_t last_hour, struct results *r)
{
	const int64_t t0 = mono_ns();
	size_t chunks = 0, cap = 0;
	int64_t *chunk_ns = NULL;

	for (;;) {
		const int64_t a = mono_ns();
		long n = dts_storage_roll_hours(st, last_hour, DTS_STORAGE_ROLL_BUDGET_US);
		const int64_t dt = mono_ns() - a;

		if (n < 0) {
			fprintf(stderr, "bench_storage: rolling up: %s\n", strerror((int)-n));
			r->errors++;
			break;
		}
		if (n == 0)
			break;
		if (chunks == cap) {
			int64_t *p = realloc(chunk_ns, (cap ? 2 * cap : 4096) * sizeof(*p));

			if (!p) {
				r->errors++;
				break;
			}
			chunk_ns = p;
			cap = cap ? 2 * cap : 4096;
		}
		chunk_ns[chunks++] = dt;
		r->roll_series += n;
		r->roll_chunk_ns_max = dt > r->roll_chunk_ns_max ? dt : r->roll_chunk_ns_max;
	}
	r->roll_ns = mono_ns() - t0;
	qsort(chunk_ns, chunks, sizeof(*chunk_ns), cmp_i64);
	r->roll_chunk_ms_p99 = pct_ms(chunk_ns, chunks, 0.99);
	fprintf(stderr, "rollup: %ld series-hours in %.2f s, %zu chunks, p50 %.2f ms, p99 %.2f ms, longest %.2f ms\n",
		r->roll_series, (double)r->roll_ns / 1e9, chunks, pct_ms(chunk_ns, chunks, 0.5), r->roll_chunk_ms_p99,
		(double)r->roll_chunk_ns_max / 1e6);
	free(chunk_ns);
}

static int flush_compact(struct dts_storage *st, struct results *r)
{
	const int64_t t0 = mono_ns();
	int rc = dts_storage_flush(st);

	if (rc == 0)
		rc = dts_storage_compact(st, DTS_RES_MINUTE);
	if (rc == 0)
		rc = dts_storage_compact(st, DTS_RES_HOUR);
	if (rc != 0) {
		fprintf(stderr, "bench_storage: flush/compact: %s\n", strerror(-rc));
		r->errors++;
	}
	fprintf(stderr, "flush + compaction: %.2f s\n", (double)(mono_ns() - t0) / 1e9);
	return rc;
}

struct read_ctx {
	long points;
	double count;
};

static int on_point(void *ctx, int64_t t, const struct dts_stored *v)
{
	struct read_ctx *c = ctx;

	(void)t;
	c->points++;
	c->count += v ? v->agg.count : 0;
	return 0;
}

/* Phase 3: write o->read_days days of minutes for o->read_series series, compact, read each back o->read_reps times. */
static void phase_read(struct dts_storage *st, const struct opts *o, int64_t end_minute, struct results *r)
{
	const int64_t n_min = (int64_t)o->read_days * 1440, first = end_minute - n_min;
	const int64_t t0 = mono_ns();

	for (int64_t m = 0; m < n_min; m++) {
		/* even k: counter, odd k: timer (timer_pct 50 over k % 100 would put the first 50 together) */
		struct dts_closed_minute *cm = calloc(1, sizeof(*cm));
		int rc;

		if (!cm || !(cm->recs = calloc(o->read_series, sizeof(*cm->recs)))) {
			free(cm);
			r->errors++;
			return;
		}
		cm->minute = first + m;
		for (size_t k = 0; k < o->read_series; k++) {
			rc = rec_build(&cm->recs[k], "reader", k, k % 2 == 1, o->values);
			if (rc == 0 || cm->recs[k].user)
				cm->n++; /* released with the minute */
			if (rc != 0) {
				r->errors++;
				break;
			}
		}
		if (dts_storage_write_minute(st, cm) != 0)
			r->errors++;
		dts_closed_minute_release(cm);
		if (m % 1440 == 1439)
			fprintf(stderr, "read series: day %lld of %u written\n", (long long)(m / 1440 + 1), o->read_days);
	}
	fprintf(stderr, "read series: %lld minutes of %zu series written in %.2f s\n", (long long)n_min, o->read_series,
		(double)(mono_ns() - t0) / 1e9);
	if (flush_compact(st, r) != 0)
		return;
	for (unsigned rep = 0; rep < o->read_reps; rep++) {
		for (size_t k = 0; k < o->read_series; k++) {
			const bool timer = k % 2 == 1;
			char series[DTS_STORAGE_SERIES_MAX + 1];
			struct read_ctx c = { 0 };
			int64_t a, dt;
			long n;

			snprintf(series, sizeof(series), "reader/proc%zu/%s_%zu/%s", k % PROCESSES, timer ? "ms" : "c", k,
				 timer ? "ms" : "c");
			a = mono_ns();
			n = dts_storage_read(st, DTS_RES_MINUTE, series, first * 60, end_minute * 60, on_point, &c);
			dt = mono_ns() - a;
			if (n != n_min || c.points != n_min) {
				if (rep == 0)
					fprintf(stderr, "bench_storage: %s: read %ld points, want %lld\n", series, n,
						(long long)n_min);
				r->errors++;
			}
			if (rep == 0) {
				r->read_cold[r->n_cold++] = dt;
				continue;
			}
			r->read_warm[r->n_warm++] = dt;
			if (timer)
				r->read_warm_t[r->n_warm_t++] = dt;
			else
				r->read_warm_c[r->n_warm_c++] = dt;
		}
	}
}

/* Phase 4: o->checkpoints checkpoints of one open minute of o->series series, then a reopen and a restore. */
struct ckpt_results {
	double wall_s, cpu_s, proc_cpu_s, mb, restore_s;
	long errors;
};

static struct dts_storage *reopen(struct dts_storage *st, const struct dts_storage_cfg *cfg)
{
	char err[512];

	dts_storage_close(st);
	st = dts_storage_open(cfg, err, sizeof(err));
	if (!st)
		fprintf(stderr, "bench_storage: reopen: %s\n", err);
	return st;
}

static struct dts_storage *phase_checkpoints(struct dts_storage *st, const struct dts_storage_cfg *cfg,
					    const struct opts *o, struct ckpt_results *r)
{
	const int64_t minute = (int64_t)time(NULL) / 60 - 30; /* restored as a closed minute: within retention */
	struct dts_closed_minute *cm = minute_build(minute, "bench", 0, o->series, o->timer_pct, o->values);
	const size_t slice = o->slice ? o->slice : o->series;
	struct dts_storage_stats s0, s1;
	int64_t wall = 0, cpu = 0, pcpu = 0;
	long restored;

	if (!cm) {
		fprintf(stderr, "bench_storage: out of memory\n");
		r->errors++;
		return st;
	}
	dts_storage_stats_read(st, &s0);
	for (unsigned c = 0; c < o->checkpoints; c++) {
		const int64_t t0 = mono_ns(), c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		const int64_t p0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);

		for (size_t from = 0; from < cm->n; from += slice) {
			struct dts_closed_minute part = {
				.minute = minute, .open = true, .partial = c > 0 || o->slice, .recs = cm->recs + from,
				.n = cm->n - from < slice ? cm->n - from : slice,
			};

			if (dts_storage_write_checkpoint(st, &part) != 0) {
				fprintf(stderr, "bench_storage: checkpoint %u failed\n", c);
				r->errors++;
			}
		}
		wall += mono_ns() - t0;
		cpu += clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
		pcpu += clock_ns(CLOCK_PROCESS_CPUTIME_ID) - p0;
		fprintf(stderr, "checkpoint %u: %.3f s, %.3f s CPU (this thread)\n", c, (double)(mono_ns() - t0) / 1e9,
			(double)(clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / 1e9);
	}
	dts_storage_stats_read(st, &s1);
	r->wall_s = (double)wall / 1e9 / o->checkpoints;
	r->cpu_s = (double)cpu / 1e9 / o->checkpoints;
	r->proc_cpu_s = (double)pcpu / 1e9 / o->checkpoints;
	r->mb = (double)(s1.bytes_written - s0.bytes_written) / 1048576.0 / o->checkpoints;
	r->errors += (long)(s1.write_errors - s0.write_errors);
	dts_closed_minute_release(cm);

	st = reopen(st, cfg);
	if (!st) {
		r->errors++;
		return NULL;
	}
	{
		const int64_t t0 = mono_ns();

		restored = dts_storage_restore(st, NULL, (minute + 30) * 60000);
		r->restore_s = (double)(mono_ns() - t0) / 1e9;
	}
	if (restored != (long)o->series) {
		fprintf(stderr, "bench_storage: restored %ld series, want %zu\n", restored, o->series);
		r->errors++;
	}
	/* the restored minute's checkpoint data is gone: a second restore finds nothing */
	restored = dts_storage_restore(st, NULL, (minute + 30) * 60000);
	if (restored != 0) {
		fprintf(stderr, "bench_storage: a second restore found %ld series, want 0\n", restored);
		r->errors++;
	}
	return st;
}

/* ---- main ------------------------------------------------------------------------------------------------------- */

static const char usage[] =
	"Usage: bench_storage [--series N] [--minutes M] [--first-minute F] [--timer-pct P] [--values V]\n"
	"                     [--read-series R] [--read-days D] [--read-reps K] [--sink] [--dir DIR] [--keep]\n"
	"                     [--seed S] [--checkpoints N [--slice K]]\n"
	"Defaults: --series 1000000 --minutes 3 --first-minute 0 --timer-pct 20 --values 20 --read-series 8\n"
	"          --read-days 8 --read-reps 25; a temporary store under /tmp, removed at the end.\n";

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "series", 1, NULL, 'n' },	 { "minutes", 1, NULL, 'm' },	{ "first-minute", 1, NULL, 'f' },
		{ "timer-pct", 1, NULL, 't' },
		{ "values", 1, NULL, 'v' },	 { "read-series", 1, NULL, 'r' }, { "read-days", 1, NULL, 'D' },
		{ "read-reps", 1, NULL, 'R' },	 { "sink", 0, NULL, 'S' },	{ "dir", 1, NULL, 'd' },
		{ "keep", 0, NULL, 'k' },	 { "seed", 1, NULL, 's' },	{ "help", 0, NULL, 'h' },
		{ "checkpoints", 1, NULL, 'C' }, { "slice", 1, NULL, 'K' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct opts){ .series = 1000000, .minutes = 3, .timer_pct = 20, .values = 20, .read_series = 8,
			    .read_days = 8, .read_reps = 25, .seed = 88172645463325252ULL };
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		uint64_t v = 0;

		if (optarg && c != 'd' && parse_u64(optarg, &v) != 0) {
			fprintf(stderr, "bench_storage: not a number: %s\n%s", optarg, usage);
			return -EINVAL;
		}
		switch (c) {
		case 'n': o->series = (size_t)v; break;
		case 'm': o->minutes = (unsigned)v; break;
		case 'f': o->first_minute = (unsigned)v; break;
		case 't': o->timer_pct = (unsigned)v; break;
		case 'v': o->values = (unsigned)v; break;
		case 'r': o->read_series = (size_t)v; break;
		case 'D': o->read_days = (unsigned)v; break;
		case 'R': o->read_reps = (unsigned)v; break;
		case 'S': o->sink = true; break;
		case 'd': snprintf(o->dir, sizeof(o->dir), "%s", optarg); break;
		case 'k': o->keep = true; break;
		case 's': o->seed = v; break;
		case 'C': o->checkpoints = (unsigned)v; break;
		case 'K': o->slice = (size_t)v; break;
		case 'h': fputs(usage, stdout); return 1;
		default: fputs(usage, stderr); return -EINVAL;
		}
	}
	if (o->slice && !o->checkpoints) {
		fprintf(stderr, "bench_storage: --slice needs --checkpoints\n%s", usage);
		return -EINVAL;
	}
	if (optind != argc || o->series < 1 || o->minutes < 1 || o->first_minute > 59 || o->timer_pct > 100 ||
	    o->read_days < 1 ||
	    o->read_days > 14 || o->read_reps < 2 || o->read_series < 2) {
		fprintf(stderr, "bench_storage: need --series >= 1, --minutes >= 1, --first-minute <= 59, "
				"--timer-pct <= 100, --read-series >= 2, "
				"--read-days 1..14 (minutes are kept 15 days), --read-reps >= 2\n%s",
			usage);
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct results r = { 0 };
	struct dts_storage_cfg cfg;
	struct dts_storage_stats s;
	struct dts_storage_usage u;
	struct dts_storage *st;
	struct rusage ru;
	char err[512];
	bool made_dir = false;
	int rc = parse_args(argc, argv, &o);
	uint64_t drops = 0;
	/* Minute --first-minute of the hour that began 2-3 hours ago: recent enough for the retention filter, and hours
	 * of their own (minutes of this many hours are closed; the read series' 8 days end before them). */
	const int64_t now_min = (int64_t)time(NULL) / 60;
	const unsigned hours = (o.first_minute + o.minutes + 59) / 60;
	const int64_t h0_minute = (now_min / 60 - 2 - (int64_t)hours) * 60 + o.first_minute;
	int64_t close_newhour = -1;
	int64_t *sorted_close, close_max = 0;

	if (rc)
		return rc > 0 ? 0 : 2;
	rng_state = o.seed;
	if (!o.dir[0]) {
		snprintf(o.dir, sizeof(o.dir), "/tmp/bench-storage-XXXXXX");
		if (!mkdtemp(o.dir)) {
			perror("bench_storage: mkdtemp");
			return 1;
		}
		made_dir = true;
	}
	r.close_ns = calloc(o.minutes, sizeof(*r.close_ns));
	sorted_close = calloc(o.minutes, sizeof(*sorted_close));
	r.read_cold = calloc(o.read_series, sizeof(int64_t));
	r.read_warm = calloc(o.read_series * o.read_reps, sizeof(int64_t));
	r.read_warm_c = calloc(o.read_series * o.read_reps, sizeof(int64_t));
	r.read_warm_t = calloc(o.read_series * o.read_reps, sizeof(int64_t));
	if (!r.close_ns || !sorted_close || !r.read_cold || !r.read_warm || !r.read_warm_c || !r.read_warm_t) {
		fprintf(stderr, "bench_storage: out of memory\n");
		return 1;
	}

	dts_storage_cfg_defaults(&cfg); /* the daemon's settings */
	cfg.data_dir = o.dir;
	st = dts_storage_open(&cfg, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "bench_storage: %s\n", err);
		return 1;
	}
	if (o.checkpoints) {
		struct ckpt_results cr = { 0 };
		struct rusage cru;

		st = phase_checkpoints(st, &cfg, &o, &cr);
		getrusage(RUSAGE_SELF, &cru);
		if (st) {
			dts_storage_stats_read(st, &s);
			for (int i = 0; i < DTS_SDROP_COUNT; i++)
				drops += s.dropped_records[i];
			cr.errors += (long)s.write_errors + (long)s.corrupt_values;
		}
		printf("SUMMARY bench=storage mode=checkpoints series=%zu checkpoints=%u slice=%zu timer_pct=%u values=%u "
		       "checkpoint_s=%.3f checkpoint_cpu_s=%.3f checkpoint_proc_cpu_s=%.3f ckpt_mb_avg=%.1f restore_s=%.3f "
		       "rss_mb_max=%.0f drops=%llu errors=%ld\n",
		       o.series, o.checkpoints, o.slice, o.timer_pct, o.values, cr.wall_s, cr.cpu_s, cr.proc_cpu_s, cr.mb,
		       cr.restore_s, (double)cru.ru_maxrss / 1024.0, (unsigned long long)drops, cr.errors);
		fflush(stdout);
		if (st)
			dts_storage_close(st);
		if (o.keep)
			fprintf(stderr, "store kept in %s\n", o.dir);
		else if (made_dir)
			nftw(o.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		return cr.errors || drops ? 1 : 0;
	}
	fprintf(stderr, "store %s (compression %s): %zu series, %u minutes, %u%% timers x %u values, %s\n", o.dir,
		dts_storage_compression(st), o.series, o.minutes, o.timer_pct, o.values,
		o.sink ? "through the sink" : "direct writes");

	/* 1. close */
	phase_close(st, &o, h0_minute, &r);
	dts_storage_stats_read(st, &s); /* the closes' batches only (the rollup's are counted apart) */
	/* per closed minute, all its parts (a 1M-series minute is committed in parts of ~8 MB) */
	const double batch_mb = s.minutes_written ? (double)s.bytes_written / (double)s.minutes_written / 1048576.0 : 0;
	const double parts_avg = s.minutes_written ? (double)s.minute_parts / (double)s.minutes_written : 0;
	/* 1b. roll the hours up, as the storage thread does once they are due */
	phase_roll(st, (h0_minute + o.minutes - 1) / 60, &r);
	if (r.roll_series != (long)(o.series * hours)) {
		fprintf(stderr, "bench_storage: rolled up %ld series-hours, want %zu\n", r.roll_series,
			o.series * hours);
		r.errors++;
	}

	/* 2. size after compaction */
	if (flush_compact(st, &r) == 0) {
		dts_storage_usage(st, &u);
		r.bytes_per_series_minute = (double)u.sst_bytes[0] / ((double)o.series * o.minutes);
		r.bytes_per_series_hour = (double)u.sst_bytes[1] / ((double)o.series * hours);
		fprintf(stderr, "minutes: %llu SST bytes, %.1f per series-minute; hours: %llu SST bytes, %.1f per series-hour\n",
			(unsigned long long)u.sst_bytes[0], r.bytes_per_series_minute, (unsigned long long)u.sst_bytes[1],
			r.bytes_per_series_hour);
	}

	/* 3. 8-day reads (minutes that end where the closed minutes' hour begins) */
	phase_read(st, &o, h0_minute, &r);

	dts_storage_stats_read(st, &s);
	for (int i = 0; i < DTS_SDROP_COUNT; i++)
		drops += s.dropped_records[i];
	drops += s.checkpoints_dropped;
	r.errors += (long)s.write_errors + (long)s.corrupt_values;
	memcpy(sorted_close, r.close_ns, o.minutes * sizeof(*sorted_close));
	for (unsigned m = 0; m < o.minutes; m++) {
		close_max = r.close_ns[m] > close_max ? r.close_ns[m] : close_max;
		if (m > 0 && (h0_minute + m) % 60 == 0 && close_newhour < 0)
			close_newhour = r.close_ns[m];
	}
	qsort(sorted_close + 1, o.minutes - 1, sizeof(*sorted_close), cmp_i64);
	qsort(r.read_warm, r.n_warm, sizeof(int64_t), cmp_i64);
	qsort(r.read_warm_c, r.n_warm_c, sizeof(int64_t), cmp_i64);
	qsort(r.read_warm_t, r.n_warm_t, sizeof(int64_t), cmp_i64);
	qsort(r.read_cold, r.n_cold, sizeof(int64_t), cmp_i64);
	getrusage(RUSAGE_SELF, &ru);

	printf("SUMMARY bench=storage series=%zu minutes=%u first_minute=%u timer_pct=%u values=%u mode=%s "
	       "close_s_first=%.3f close_s_p50=%.3f close_s_max=%.3f close_s_newhour=%.3f release_s_avg=%.3f "
	       "batch_mb_avg=%.1f parts_avg=%.1f push_us_max=%.1f push_cpu_us_max=%.1f "
	       "roll_s=%.3f roll_chunk_ms_p99=%.2f roll_chunk_ms_max=%.2f roll_us_per_series=%.2f "
	       "bytes_per_series_minute=%.1f bytes_per_series_hour=%.1f read_series=%zu read_days=%u read8d_ms_p50=%.2f "
	       "read8d_ms_p99=%.2f read8d_counter_ms_p50=%.2f read8d_timer_ms_p50=%.2f read8d_timer_ms_p99=%.2f "
	       "read8d_cold_ms_p50=%.2f read8d_cold_ms_max=%.2f compression=%s rss_mb_max=%.0f drops=%llu errors=%ld\n",
	       o.series, o.minutes, o.first_minute, o.timer_pct, o.values, o.sink ? "sink" : "direct",
	       (double)r.close_ns[0] / 1e9, o.minutes > 1 ? pct_ms(sorted_close + 1, o.minutes - 1, 0.5) / 1e3 : NAN,
	       (double)close_max / 1e9, close_newhour >= 0 ? (double)close_newhour / 1e9 : NAN,
	       o.sink ? NAN : (double)r.release_ns / o.minutes / 1e9, batch_mb, parts_avg,
	       o.sink ? (double)r.push_ns_max / 1e3 : NAN,
	       o.sink ? (double)r.push_cpu_ns_max / 1e3 : NAN, (double)r.roll_ns / 1e9, r.roll_chunk_ms_p99,
	       (double)r.roll_chunk_ns_max / 1e6, r.roll_series ? (double)r.roll_ns / 1e3 / (double)r.roll_series : NAN,
	       r.bytes_per_series_minute, r.bytes_per_series_hour, o.read_series, o.read_days,
	       pct_ms(r.read_warm, r.n_warm, 0.5), pct_ms(r.read_warm, r.n_warm, 0.99),
	       pct_ms(r.read_warm_c, r.n_warm_c, 0.5), pct_ms(r.read_warm_t, r.n_warm_t, 0.5),
	       pct_ms(r.read_warm_t, r.n_warm_t, 0.99), pct_ms(r.read_cold, r.n_cold, 0.5),
	       pct_ms(r.read_cold, r.n_cold, 1.0), dts_storage_compression(st), (double)ru.ru_maxrss / 1024.0,
	       (unsigned long long)drops, r.errors);
	fflush(stdout);

	dts_storage_close(st);
	if (o.keep)
		fprintf(stderr, "store kept in %s\n", o.dir);
	else if (made_dir)
		nftw(o.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(r.close_ns);
	free(sorted_close);
	free(r.read_cold);
	free(r.read_warm);
	free(r.read_warm_c);
	free(r.read_warm_t);
	return r.errors || drops ? 1 : 0;
}
