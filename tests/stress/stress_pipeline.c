/*
 * stress_pipeline.c - RX cores, the merger and readers running at once; built and run under ThreadSanitizer
 * (make test-tsan). Two "RX" threads ingest and hand over tables, one merger thread folds, publishes and closes
 * minutes, two readers walk the current state and read every counter. The clock is shared and runs 20x faster than
 * real time so several slots and a minute close happen in a few seconds.
 *
 * What must hold: no data race or use-after-free (TSan), and nothing lost: every counter increment sent is in exactly
 * one closed minute (checked exactly at the end), with no drops counted.
 *
 * A plain program, not Criterion: Criterion cannot start under TSan (its inheritable arena collides with TSan's
 * address-space layout, upstream issue Snaipe/Criterion#274). It prints "N passed, M failed" and exits non-zero on
 * any failure; TSan itself aborts the run on the first race (halt_on_error=1).
 */
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dts/engine.h"

#define CORES 2
#define READERS 2
#define RUN_MS 3000
#define SPEEDUP 20
#define T0_MS 1700000040000LL

static _Atomic int64_t fake_now_ms;
static _Atomic bool stop_rx, stop_merger, stop_readers;
static struct dts_merger *m;
static double closed_sum; /* merger thread only (sink runs there) until it is joined */
static uint64_t sent[CORES];
static _Atomic uint64_t reads;

static int failures;

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "stress: FAILED %s: ", #cond);        \
			fprintf(stderr, __VA_ARGS__);                         \
			fprintf(stderr, "\n");                                \
			failures++;                                           \
		}                                                             \
	} while (0)

static int64_t real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sink(void *ctx, struct dts_closed_minute *cm)
{
	(void)ctx;
	for (size_t i = 0; i < cm->n; i++)
		if (cm->recs[i].type == DTS_COUNTER && strcmp(cm->recs[i].process, "load") == 0)
			closed_sum += cm->recs[i].agg.sum;
	dts_closed_minute_release(cm);
}

static void *rx_main(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	struct dts_core *c = dts_merger_core(m, id);
	char buf[1400];
	uint64_t k = id;

	while (!atomic_load(&stop_rx)) {
		int64_t now = atomic_load(&fake_now_ms);
		size_t n = 0;
		int lines = 0;

		while (n < sizeof(buf) - 64) {
			k = k * 6364136223846793005ULL + 1442695040888963407ULL;
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "load.c%u:1|c\nload.t%u:%u|ms\n",
					      (unsigned)(k >> 33) % 500, (unsigned)(k >> 40) % 50,
					      (unsigned)(k >> 20) % 1000);
			lines++;
		}
		dts_core_ingest(c, buf, n, now / 1000);
		sent[id] += (uint64_t)lines;
		dts_core_tick(c, now);
		while (dts_core_saturated(c) && !atomic_load(&stop_rx)) {
			/* This test checks exactness, so it pushes back like the TCP reader does (test_table covers
			 * the counted drops of a saturated UDP core). */
			struct timespec ts = { 0, 200000 };

			nanosleep(&ts, NULL);
			dts_core_tick(c, atomic_load(&fake_now_ms));
		}
	}
	return NULL;
}

static void *merger_main(void *arg)
{
	(void)arg;
	dts_rcu_register_thread();
	while (!atomic_load(&stop_merger)) {
		dts_merger_step(m, atomic_load(&fake_now_ms));
		struct timespec ts = { 0, 2 * 1000000 };
		nanosleep(&ts, NULL);
	}
	dts_merger_destroy(m, atomic_load(&fake_now_ms));
	dts_rcu_unregister_thread();
	return NULL;
}

static int visit(void *ctx, const struct dts_series_view *v)
{
	double *acc = ctx;

	if (v->cur)
		*acc += v->cur->sum + v->cur->count + (v->cur->p50 == v->cur->p50 ? v->cur->p50 : 0);
	*acc += (double)strlen(v->counter) + (double)strlen(v->user);
	return 0;
}

static void *reader_main(void *arg)
{
	double acc = 0;

	(void)arg;
	dts_rcu_register_thread();
	while (!atomic_load(&stop_readers)) {
		struct dts_merger_stats ms;
		struct dts_core_stats cs;

		dts_merger_read_current(m, "default", visit, &acc);
		dts_merger_stats_read(m, &ms);
		for (unsigned i = 0; i < CORES; i++)
			dts_core_stats_read(dts_merger_core(m, i), &cs);
		atomic_fetch_add(&reads, 1);
	}
	dts_rcu_unregister_thread();
	return (void *)(uintptr_t)(acc > 0);
}

int main(void)
{
	struct dts_merger_cfg cfg;
	pthread_t rx[CORES], rd[READERS], mg;
	struct dts_core_stats cs;
	uint64_t total_sent = 0, drops = 0;
	int64_t start;

	dts_merger_cfg_defaults(&cfg);
	cfg.cores = CORES;
	cfg.grace_s = 60; /* 3 s of real time at 20x: hand-overs are never late */
	cfg.tick_ms = 200;
	cfg.table_capacity = 4096;
	cfg.tables_per_core = 4;
	cfg.sink.minute_closed = sink;
	m = dts_merger_create(&cfg);
	if (!m) {
		perror("stress: dts_merger_create");
		return 1;
	}
	atomic_store(&fake_now_ms, T0_MS);

	pthread_create(&mg, NULL, merger_main, NULL);
	for (unsigned i = 0; i < CORES; i++)
		pthread_create(&rx[i], NULL, rx_main, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < READERS; i++)
		pthread_create(&rd[i], NULL, reader_main, NULL);
	start = real_ms();
	while (real_ms() - start < RUN_MS) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
		atomic_store(&fake_now_ms, T0_MS + (real_ms() - start) * SPEEDUP);
	}
	atomic_store(&stop_rx, true);
	for (unsigned i = 0; i < CORES; i++)
		pthread_join(rx[i], NULL);
	atomic_store(&stop_readers, true);
	for (unsigned i = 0; i < READERS; i++)
		pthread_join(rd[i], NULL);
	for (unsigned i = 0; i < CORES; i++) {
		dts_core_stats_read(dts_merger_core(m, i), &cs);
		for (unsigned d = 0; d < DTS_DROP_COUNT; d++) {
			drops += cs.dropped[d];
			if (cs.dropped[d])
				fprintf(stderr, "stress: core %u dropped %llu (%s)\n", i, (unsigned long long)cs.dropped[d],
					    dts_drop_name(d));
		}
		CHECK(cs.rejected[DTS_REJ_BAD_VALUE] == 0, "rejected lines");
		CHECK(cs.handovers > 2, "core %u handed over %llu tables", i, (unsigned long long)cs.handovers);
		total_sent += sent[i];
	}
	atomic_store(&stop_merger, true); /* destroy folds the last tables and closes the open minutes */
	pthread_join(mg, NULL);
	dts_rcu_barrier();

	CHECK(drops == 0, "no drops expected at this load: %llu", (unsigned long long)drops);
	CHECK(atomic_load(&reads) > 10, "readers ran concurrently");
	CHECK(total_sent > 1000, "sent %llu", (unsigned long long)total_sent);
	CHECK((uint64_t)closed_sum == total_sent, "every increment in exactly one closed minute: %.0f vs %llu",
		     closed_sum, (unsigned long long)total_sent);
	printf("stress: sent %llu counter increments, %llu in closed minutes, %llu reader passes\n",
	       (unsigned long long)total_sent, (unsigned long long)closed_sum, (unsigned long long)atomic_load(&reads));
	printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
	return failures ? 1 : 0;
}
