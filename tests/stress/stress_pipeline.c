/*
 * stress_pipeline.c - RX cores, the merger and readers running at once; built and run under ThreadSanitizer
 * (make test-tsan). Two "RX" threads ingest and hand over tables, one merger thread folds, publishes and closes
 * minutes, two readers walk the current state and read every counter. The clock is shared and runs 20x faster than
 * real time so several slots and a minute close happen in a few seconds.
 *
 * Core 0 also ingests native datagrams (verified under the RCU read side, with a counter partial, a timer's sketch and
 * now and then an error event), so TSan sees the key lookup, the blob and event logs, the process states and the event
 * rings with their readers (dts_merger_read_processes / _events) and the sink's event batches.
 *
 * What must hold: no data race or use-after-free (TSan), and nothing lost: every counter increment sent (lines and
 * native partials) is in exactly one closed minute, every event reached the sink (checked exactly at the end), with no
 * drops counted.
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
#include "dts/native.h"

#define CORES 2
#define READERS 2
#define RUN_MS 3000
#define SPEEDUP 20
#define T0_MS 1700000040000LL

static _Atomic int64_t fake_now_ms;
static _Atomic bool stop_rx, stop_merger, stop_readers;
static struct dts_merger *m;
static double closed_sum; /* merger thread only (sink runs there) until it is joined */
static double closed_native_sum; /* the native counter's increments in closed minutes (merger thread) */
static uint64_t events_sunk; /* events handed to the sink (merger thread) */
static uint64_t sent[CORES];
static uint64_t native_sent, native_events_sent; /* core 0's thread until joined */
static struct dts_native_mac_key mac;
static const struct dts_native_key key = { .user = "native", .user_len = 6, .mac = &mac };
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
	for (size_t i = 0; i < cm->n; i++) {
		if (cm->recs[i].type == DTS_COUNTER && strcmp(cm->recs[i].process, "load") == 0)
			closed_sum += cm->recs[i].agg.sum;
		if (cm->recs[i].type == DTS_COUNTER && strcmp(cm->recs[i].user, "native") == 0)
			closed_native_sum += cm->recs[i].agg.sum;
	}
	dts_closed_minute_release(cm);
}

static void events_sink(void *ctx, struct dts_event_batch *b)
{
	(void)ctx;
	events_sunk += b->n_events;
	dts_event_batch_release(b);
}

static const struct dts_native_key *lookup(void *ctx, uint32_t id)
{
	(void)ctx;
	return id == 1 ? &key : NULL;
}

struct emitted {
	struct dts_core *c;
	int64_t now_s;
};

static int emit(void *ctx, const uint8_t *dgram, size_t len)
{
	struct emitted *e = ctx;

	dts_core_ingest(e->c, (const char *)dgram, len, e->now_s);
	return 0;
}

/* One native batch on core c: a counter partial (+3), a timer with its sketch, every 10th batch an error. */
static void send_native(struct dts_core *c, int64_t now_s, uint64_t *seq, uint64_t k)
{
	static struct dts_native_enc enc; /* core 0's thread only */
	struct dts_native_hdr h = { .key_id = 1, .instance = 42, .slot = now_s - now_s % 5, .user = "native",
				    .user_len = 6, .process = "nat", .process_len = 3,
				    .stats = { .uptime_s = (uint32_t)(now_s % 100000) } };
	struct dts_native_event ev = { .kind = DTS_NATIVE_ERROR, .ts_ms = now_s * 1000, .text = "stress", .len = 6 };
	struct emitted e = { c, now_s };
	struct dts_sketch sk;
	struct dts_agg ca, ta;
	struct dts_native_partial p;

	dts_native_enc_begin(&enc, &h, &mac, seq, emit, &e);
	if (k % 10 == 0 && dts_native_enc_event(&enc, &ev) == 0)
		native_events_sent++;
	dts_agg_init(&ca);
	dts_agg_add(&ca, 1, 3.0);
	p = (struct dts_native_partial){ .name = "c", .name_len = 1, .tags = "", .type = DTS_COUNTER, .agg = ca };
	dts_native_enc_partial(&enc, &p);
	dts_sketch_init(&sk);
	dts_agg_init(&ta);
	for (unsigned i = 0; i < 5; i++) {
		dts_sketch_add(&sk, (double)(k % 97 + i), 1.0);
		dts_agg_add(&ta, (double)(k % 97 + i), 1.0);
	}
	p = (struct dts_native_partial){ .name = "t", .name_len = 1, .tags = "", .type = DTS_TIMER, .agg = ta,
					 .sketch = &sk };
	dts_native_enc_partial(&enc, &p);
	dts_native_enc_end(&enc);
	dts_sketch_free(&sk);
	native_sent += 3;
}

static void *rx_main(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	struct dts_core *c = dts_merger_core(m, id);
	char buf[1400];
	uint64_t k = id, seq = 1;

	dts_rcu_register_thread(); /* native datagrams: the key lookup runs under the RCU read side */
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
		if (id == 0)
			send_native(c, now / 1000, &seq, k);
		dts_core_tick(c, now);
		while (dts_core_saturated(c) && !atomic_load(&stop_rx)) {
			/* This test checks exactness, so it pushes back like the TCP reader does (test_table covers
			 * the counted drops of a saturated UDP core). */
			struct timespec ts = { 0, 200000 };

			nanosleep(&ts, NULL);
			dts_core_tick(c, atomic_load(&fake_now_ms));
		}
	}
	dts_rcu_unregister_thread();
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

static int visit_proc(void *ctx, const struct dts_process *p)
{
	double *acc = ctx;

	*acc += (double)p->stats.uptime_s + (double)p->online + (double)strlen(p->process);
	return 0;
}

static int visit_event(void *ctx, const struct dts_event *ev)
{
	double *acc = ctx;

	*acc += (double)ev->seq + (double)ev->text_len + (double)strlen(ev->process);
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
		dts_merger_read_current(m, "native", visit, &acc);
		dts_merger_read_processes(m, NULL, visit_proc, &acc);
		dts_merger_read_events(m, "native", 0, visit_event, &acc);
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
	cfg.sink.events = events_sink;
	cfg.native.key_lookup = lookup;
	cfg.native.max_past_s = 3600; /* the fake clock runs 20x: hand-overs reach the merger "late" in slot time */
	if (dts_native_mac_key_init(&mac, "stress-secret", 13) != 0)
		return 1;
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
		for (unsigned r = 1; r < DTS_NREJ_COUNT; r++)
			CHECK(cs.native_rejected[r] == 0, "core %u rejected native datagrams (%s)", i,
			      dts_native_reject_name(r));
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
	CHECK(native_sent > 100, "native increments sent: %llu", (unsigned long long)native_sent);
	CHECK((uint64_t)closed_native_sum == native_sent, "every native increment in one closed minute: %.0f vs %llu",
	      closed_native_sum, (unsigned long long)native_sent);
	CHECK(events_sunk == native_events_sent, "every event reached the sink: %llu vs %llu",
	      (unsigned long long)events_sunk, (unsigned long long)native_events_sent);
	printf("stress: sent %llu counter increments, %llu in closed minutes, %llu native increments, %llu events, "
	       "%llu reader passes\n",
	       (unsigned long long)total_sent, (unsigned long long)closed_sum, (unsigned long long)native_sent,
	       (unsigned long long)events_sunk, (unsigned long long)atomic_load(&reads));
	printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
	return failures ? 1 : 0;
}
