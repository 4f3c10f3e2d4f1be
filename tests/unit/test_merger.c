/*
 * test_merger.c - the merger: folding hand-overs from several cores, the current state (1-minute moving window),
 * minute close into the sink, late data, users, expiry, shutdown. Driven with a fake clock (no sleeps).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dts/decode.h"
#include "dts/engine.h"

#define T0 1700000040LL /* a minute boundary: 1700000040 / 60 = 28333334 */

static struct dts_merger *m;
static struct dts_closed_minute *closed[16];
static int nclosed;
static struct dts_closed_minute *ckpt[16];
static int nckpt;

static void ckpt_sink(void *ctx, struct dts_closed_minute *cm)
{
	(void)ctx;
	cr_assert_lt(nckpt, 16);
	ckpt[nckpt++] = cm;
}

static bool lost_flag; /* what ckpt_lost reports next */
static int lost_calls;

static bool ckpt_lost(void *ctx)
{
	bool r = lost_flag;

	(void)ctx;
	lost_calls++;
	lost_flag = false;
	return r;
}

static void sink(void *ctx, struct dts_closed_minute *cm)
{
	(void)ctx;
	cr_assert_lt(nclosed, 16);
	closed[nclosed++] = cm;
}

static void start_expire(unsigned cores, unsigned grace, unsigned expire_s)
{
	struct dts_merger_cfg cfg;

	dts_rcu_register_thread();
	dts_merger_cfg_defaults(&cfg);
	cfg.cores = cores;
	cfg.grace_s = grace;
	cfg.table_capacity = 4096;
	cfg.tick_ms = 1000;
	cfg.expire_s = expire_s;
	cfg.decode.secret = (const uint8_t *)"s3cret";
	cfg.decode.secret_len = 6;
	cfg.sink.minute_closed = sink;
	cfg.sink.checkpoint = ckpt_sink;
	cfg.checkpoint_ms = 5000;
	nclosed = 0;
	nckpt = 0;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
}

static void start(unsigned cores, unsigned grace)
{
	start_expire(cores, grace, 120);
}

static void setup(void)
{
	start(2, 5);
}

static void teardown(void)
{
	if (m)
		dts_merger_destroy(m, (T0 + 3600) * 1000);
	for (int i = 0; i < nclosed; i++)
		dts_closed_minute_release(closed[i]);
	for (int i = 0; i < nckpt; i++)
		dts_closed_minute_release(ckpt[i]);
	nclosed = 0;
	nckpt = 0;
	dts_rcu_barrier();
	dts_rcu_unregister_thread();
}

TestSuite(merger, .init = setup, .fini = teardown);

/* Ingest on core i at time now_s and hand the table over at once. */
static void feed(unsigned core, int64_t now_s, const char *dgram)
{
	struct dts_core *c = dts_merger_core(m, core);

	dts_core_ingest(c, dgram, strlen(dgram), now_s);
	dts_core_flush(c);
	cr_assert(dts_core_tick(c, now_s * 1000), "hand-over must succeed");
}

struct want {
	const char *user, *process, *counter;
	uint8_t type;
	const struct dts_current *cur;
	bool found;
	struct dts_current copy;
};

static int find_cb(void *ctx, const struct dts_series_view *v)
{
	struct want *w = ctx;

	if (strcmp(v->process, w->process) || strcmp(v->counter, w->counter) || v->type != w->type)
		return 0;
	w->found = true;
	if (v->cur)
		w->copy = *v->cur;
	w->cur = v->cur ? &w->copy : NULL;
	return 1;
}

static const struct dts_current *current(const char *user, const char *process, const char *counter, uint8_t type)
{
	static struct want w;

	memset(&w, 0, sizeof(w));
	w.process = process;
	w.counter = counter;
	w.type = type;
	dts_merger_read_current(m, user, find_cb, &w);
	return w.found ? w.cur : NULL;
}

static const struct dts_minute_rec *closed_rec(int64_t minute, const char *process, const char *counter)
{
	for (int i = 0; i < nclosed; i++) {
		if (closed[i]->minute != minute)
			continue;
		for (size_t k = 0; k < closed[i]->n; k++)
			if (!strcmp(closed[i]->recs[k].process, process) && !strcmp(closed[i]->recs[k].counter, counter))
				return &closed[i]->recs[k];
	}
	return NULL;
}

/* With grace_s = 60, minute M closes at the first step of minute M + 2, whose data needs the window position M
 * still holds (two windows per series): M is closed before the fold, and the data of M + 2 is taken, not dropped
 * as future. */
Test(merger, grace_of_60_s_takes_the_minute_after_next)
{
	struct dts_merger_stats st;
	const struct dts_minute_rec *r;

	dts_merger_destroy(m, T0 * 1000); /* the suite's merger has grace_s 5 */
	m = NULL;
	dts_rcu_unregister_thread();
	start(1, 60);
	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 30, "api.hits:1|c");
	dts_merger_step(m, (T0 + 30) * 1000);
	feed(0, T0 + 120, "api.hits:2|c");
	dts_merger_step(m, (T0 + 120) * 1000);
	r = closed_rec(T0 / 60, "api", "hits");
	cr_assert_not_null(r, "minute M closed at its deadline, (M + 2) * 60");
	cr_expect_float_eq(r->agg.sum, 1, 1e-9);
	dts_merger_step(m, (T0 + 240) * 1000);
	r = closed_rec(T0 / 60 + 2, "api", "hits");
	cr_assert_not_null(r, "minute M + 2 has its data");
	cr_expect_float_eq(r->agg.sum, 2, 1e-9);
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.dropped[DTS_DROP_FUTURE], 0);
	cr_expect_eq(st.dropped[DTS_DROP_LATE], 0);
}

Test(merger, counters_from_two_cores_sum_exactly)
{
	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "api.hits:1|c\napi.hits:2|c");
	feed(1, T0 + 2, "api.hits:10|c");
	feed(0, T0 + 6, "api.hits:100|c");
	dts_merger_step(m, (T0 + 7) * 1000);
	/* The slot [T0+5, T0+10) is still open: only the first slot is in the current state. */
	const struct dts_current *cur = current("default", "api", "hits", DTS_COUNTER);
	cr_assert_not_null(cur);
	cr_expect_float_eq(cur->sum, 13, 1e-9);
	cr_expect_float_eq(cur->count, 3, 1e-9);
	cr_expect_float_eq(cur->rate, 13.0 / 60, 1e-9);
	dts_merger_step(m, (T0 + 10) * 1000);
	cur = current("default", "api", "hits", DTS_COUNTER);
	cr_expect_float_eq(cur->sum, 113, 1e-9);
}

Test(merger, moving_window_forgets_after_60s)
{
	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "api.hits:5|c");
	dts_merger_step(m, (T0 + 5) * 1000);
	cr_expect_float_eq(current(NULL, "api", "hits", DTS_COUNTER)->sum, 5, 1e-9);
	feed(0, T0 + 30, "api.hits:1|c");
	dts_merger_step(m, (T0 + 60) * 1000);
	cr_expect_float_eq(current(NULL, "api", "hits", DTS_COUNTER)->sum, 6, 1e-9, "both slots within 60 s");
	dts_merger_step(m, (T0 + 65) * 1000);
	cr_expect_float_eq(current(NULL, "api", "hits", DTS_COUNTER)->sum, 1, 1e-9, "first slot left the window");
	dts_merger_step(m, (T0 + 95) * 1000);
	cr_expect_float_eq(current(NULL, "api", "hits", DTS_COUNTER)->sum, 0, 1e-9);
}

Test(merger, minute_closes_after_grace_with_exact_aggregates)
{
	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "api.q:10|ms\napi.q:20|ms\napi.hits:3|c\napi.temp:7|g");
	feed(1, T0 + 59, "api.q:30|ms\napi.hits:4|c\napi.temp:9|g");
	dts_merger_step(m, (T0 + 60 + 4) * 1000);
	cr_expect_eq(nclosed, 0, "still within grace (5 s)");
	dts_merger_step(m, (T0 + 60 + 5) * 1000);
	cr_assert_eq(nclosed, 1);
	cr_expect_eq(closed[0]->minute, T0 / 60);
	cr_expect_eq(closed[0]->n, 3);

	const struct dts_minute_rec *q = closed_rec(T0 / 60, "api", "q");
	cr_assert_not_null(q);
	cr_expect_eq(q->type, DTS_TIMER);
	cr_expect_float_eq(q->agg.count, 3, 1e-9);
	cr_expect_float_eq(q->agg.sum, 60, 1e-9);
	cr_expect_float_eq(q->agg.min, 10, 1e-9);
	cr_expect_float_eq(q->agg.max, 30, 1e-9);
	cr_expect_float_eq(q->agg.fst, 10, 1e-9);
	cr_expect_float_eq(q->agg.lst, 30, 1e-9);
	cr_expect_float_eq(q->sketch.count, 3, 1e-9);
	cr_expect_float_eq(dts_sketch_quantile(&q->sketch, 0.5), 20, 20 * 0.0101);

	const struct dts_minute_rec *h = closed_rec(T0 / 60, "api", "hits");
	cr_assert_not_null(h);
	cr_expect_float_eq(h->agg.sum, 7, 1e-9);
	const struct dts_minute_rec *g = closed_rec(T0 / 60, "api", "temp");
	cr_assert_not_null(g);
	cr_expect_float_eq(g->agg.lst, 9, 1e-9);
	cr_expect_float_eq(g->agg.min, 7, 1e-9);
	cr_expect_str_eq(g->user, "default");
}

Test(merger, late_data_goes_to_the_sink_as_a_late_part)
{
	struct dts_merger_stats st;
	char line[256];

	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "api.hits:1|c");
	dts_merger_step(m, (T0 + 70) * 1000); /* minute T0 closed */
	cr_assert_eq(nclosed, 1);
	snprintf(line, sizeof(line), "api.hits:2|c|T%lld\napi.lat:40|ms|T%lld\ng.delta:+1|g|T%lld\ng.abs:5|g|T%lld",
		 (long long)(T0 + 2), (long long)(T0 + 3), (long long)(T0 + 4), (long long)(T0 + 4));
	feed(0, T0 + 71, line);
	dts_merger_step(m, (T0 + 71) * 1000);
	cr_assert_eq(nclosed, 2, "the late part of minute T0 went to the sink");
	cr_expect(closed[1]->late);
	cr_expect_not(closed[1]->open);
	cr_expect_eq(closed[1]->minute, T0 / 60);
	cr_expect_eq(closed[1]->n, 3, "counter, timer and the absolute gauge; a delta-only gauge cannot be a part");
	for (size_t i = 0; i < closed[1]->n; i++) {
		const struct dts_minute_rec *r = &closed[1]->recs[i];

		if (!strcmp(r->counter, "hits"))
			cr_expect_float_eq(r->agg.sum, 2, 1e-9);
		if (!strcmp(r->counter, "lat")) {
			cr_expect_float_eq(r->sketch.count, 1, 1e-9, "timer keys follow their late record");
			cr_expect_float_eq(dts_sketch_quantile(&r->sketch, 0.5), 40, 0.4);
		}
		if (!strcmp(r->counter, "abs"))
			cr_expect_float_eq(r->agg.lst, 5, 1e-9);
	}
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.late_forwarded, 3);
	cr_expect_eq(st.dropped[DTS_DROP_LATE], 1);
}

/* Late data over several 5-second slots of one closed minute (and a timer over two slots) is ONE record per series in
 * the late part: the store writes a part's records as distinct keys of one batch, so two records of one series would
 * make the second replace the first. fst/lst follow slot time even when the slots arrive out of order. */
Test(merger, late_data_over_several_slots_is_one_record)
{
	char line[512];

	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "api.hits:1|c");
	dts_merger_step(m, (T0 + 70) * 1000); /* minute T0 closed */
	cr_assert_eq(nclosed, 1);
	snprintf(line, sizeof(line),
		 "api.hits:7|c|T%lld\napi.hits:5|c|T%lld\napi.hits:2|c|@0.25|T%lld\n"
		 "api.lat:10|ms|T%lld\napi.lat:30|ms|T%lld\ng.abs:9|g|T%lld\ng.abs:4|g|T%lld",
		 (long long)(T0 + 7), (long long)(T0 + 2), (long long)(T0 + 14), (long long)(T0 + 3),
		 (long long)(T0 + 20), (long long)(T0 + 25), (long long)(T0 + 6));
	feed(0, T0 + 71, line);
	dts_merger_step(m, (T0 + 71) * 1000);
	cr_assert_eq(nclosed, 2);
	cr_assert(closed[1]->late);
	cr_expect_eq(closed[1]->n, 3, "one record per series, got %zu", closed[1]->n);
	for (size_t i = 0; i < closed[1]->n; i++) {
		const struct dts_minute_rec *r = &closed[1]->recs[i];

		if (!strcmp(r->counter, "hits")) {
			cr_expect_float_eq(r->agg.sum, 7 + 5 + 2 / 0.25, 1e-9);
			cr_expect_float_eq(r->agg.count, 1 + 1 + 4, 1e-9);
			cr_expect_float_eq(r->agg.fst, 5, 1e-9, "first in slot time (T0+2), not in arrival");
			cr_expect_float_eq(r->agg.lst, 2, 1e-9, "last in slot time (T0+14)");
		}
		if (!strcmp(r->counter, "lat")) {
			cr_expect_float_eq(r->sketch.count, 2, 1e-9, "both slots' timer values in the one record");
			cr_expect_float_eq(r->agg.min, 10, 1e-9);
			cr_expect_float_eq(r->agg.max, 30, 1e-9);
		}
		if (!strcmp(r->counter, "abs"))
			cr_expect_float_eq(r->agg.lst, 9, 1e-9, "the gauge's value is the latest slot's (T0+25)");
	}
}

Test(merger, late_data_without_a_sink_is_dropped_and_counted)
{
	struct dts_merger_cfg cfg;
	struct dts_merger_stats st;
	char line[64];

	dts_merger_destroy(m, T0 * 1000);
	dts_merger_cfg_defaults(&cfg);
	cfg.table_capacity = 4096;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
	dts_merger_step(m, (T0 + 70) * 1000);
	snprintf(line, sizeof(line), "api.hits:2|c|T%lld", (long long)(T0 + 2));
	feed(0, T0 + 71, line);
	dts_merger_step(m, (T0 + 71) * 1000);
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.dropped[DTS_DROP_LATE], 1);
	cr_expect_eq(st.late_forwarded, 0);
}

/* A table's slot span starts as far back as the decoder accepts |T timestamps, not at its first sample: with
 * max_past_skew_s = 3600, a value stamped 50 minutes ago that arrives after a current one in the same tick is
 * aggregated into its own minute (it used to be dropped as late when older than ~21 minutes). */
Test(merger, old_timestamps_within_the_skew_fit_the_table)
{
	struct dts_merger_cfg cfg;
	struct dts_core_stats cs;
	char line[96];

	dts_merger_destroy(m, T0 * 1000);
	dts_merger_cfg_defaults(&cfg);
	cfg.table_capacity = 4096;
	cfg.decode.max_past_skew_s = 3600;
	cfg.grace_s = 5;
	cfg.sink.minute_closed = sink;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
	dts_merger_step(m, (T0 + 3000) * 1000);
	/* both into the same table: no hand-over in between */
	cr_assert_eq(dts_core_ingest(dts_merger_core(m, 0), "api.hits:1|c", 12, T0 + 3000), 1);
	snprintf(line, sizeof(line), "api.hits:5|c|T%lld", (long long)(T0 + 1));
	cr_assert_eq(dts_core_ingest(dts_merger_core(m, 0), line, strlen(line), T0 + 3000), 1);
	dts_core_stats_read(dts_merger_core(m, 0), &cs);
	cr_expect_eq(cs.dropped[DTS_DROP_LATE], 0);
	cr_expect_eq(cs.dropped[DTS_DROP_FUTURE], 0);
	cr_expect_eq(cs.samples, 2);
}

/* DaTtSs lines: a user the daemon does not know (removed) is refused even with a valid token. */
static bool only_alice(void *ctx, const char *user, size_t len)
{
	(void)ctx;
	return len == 5 && memcmp(user, "alice", 5) == 0;
}

Test(merger, dattss_line_of_an_unknown_user_is_refused)
{
	struct dts_merger_cfg cfg;
	struct dts_core_stats cs;
	char tok[128], line[256];

	dts_merger_destroy(m, T0 * 1000);
	dts_merger_cfg_defaults(&cfg);
	cfg.table_capacity = 4096;
	cfg.decode.secret = (const uint8_t *)"s3cret";
	cfg.decode.secret_len = 6;
	cfg.user_known = only_alice;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
	cr_assert_gt(dts_dattss_auth(cfg.decode.secret, 6, "alice", 5, tok, sizeof(tok)), 0);
	snprintf(line, sizeof(line), "%s:api:hits:2c", tok);
	cr_expect_eq(dts_core_ingest(dts_merger_core(m, 0), line, strlen(line), T0), 1);
	cr_assert_gt(dts_dattss_auth(cfg.decode.secret, 6, "bob", 3, tok, sizeof(tok)), 0);
	snprintf(line, sizeof(line), "%s:api:hits:2c", tok);
	cr_expect_eq(dts_core_ingest(dts_merger_core(m, 0), line, strlen(line), T0), 0);
	cr_expect_eq(dts_core_ingest(dts_merger_core(m, 0), line, strlen(line), T0), 0, "the AUTH cache does not bypass it");
	dts_core_stats_read(dts_merger_core(m, 0), &cs);
	cr_expect_eq(cs.rejected[DTS_REJ_UNKNOWN_USER], 2);
	cr_expect_eq(cs.dattss_lines, 1);
	cr_expect_str_eq(dts_reject_name(DTS_REJ_UNKNOWN_USER), "unknown_user");
}

Test(merger, gauge_deltas_across_tables)
{
	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "g.level:100|g");
	feed(1, T0 + 2, "g.level:+5|g");
	feed(0, T0 + 3, "g.level:-20|g");
	dts_merger_step(m, (T0 + 5) * 1000);
	const struct dts_current *cur = current(NULL, "g", "level", DTS_GAUGE);
	cr_assert_not_null(cur);
	cr_expect_float_eq(cur->last, 85, 1e-9);
	cr_expect_float_eq(cur->min, 85, 1e-9);
	cr_expect_float_eq(cur->max, 105, 1e-9);
	cr_expect_float_eq(cur->count, 3, 1e-9);
}

Test(merger, timer_quantiles_in_current_state)
{
	char buf[8192];
	int n = 0;

	dts_merger_step(m, T0 * 1000);
	for (int v = 1; v <= 1000; v++) {
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "api.lat:%d|ms\n", v);
		if (n > 7000) {
			feed(v % 2, T0 + 1, buf);
			n = 0;
		}
	}
	if (n)
		feed(0, T0 + 1, buf);
	dts_merger_step(m, (T0 + 5) * 1000);
	const struct dts_current *cur = current(NULL, "api", "lat", DTS_TIMER);
	cr_assert_not_null(cur);
	cr_expect_float_eq(cur->count, 1000, 1e-9);
	cr_expect_float_eq(cur->avg, 500.5, 1e-9);
	cr_expect_float_eq(cur->min, 1, 1e-9);
	cr_expect_float_eq(cur->max, 1000, 1e-9);
	/* rank floor(q * 999): 100, 900, 500, 990 (1-based values = rank + 1) */
	struct {
		double got, exact;
	} q[] = { { cur->bot10, 100 }, { cur->top10, 900 }, { cur->p50, 500 }, { cur->p99, 990 } };
	for (size_t i = 0; i < 4; i++)
		cr_expect(fabs(q[i].got - q[i].exact) <= q[i].exact * 0.0201, "quantile %zu: %g vs %g", i, q[i].got,
			  q[i].exact);
}

Test(merger, users_are_separate)
{
	char auth[128], line[256];

	cr_assert_gt(dts_dattss_auth((const uint8_t *)"s3cret", 6, "42", 2, auth, sizeof(auth)), 0);
	snprintf(line, sizeof(line), "%s:api:hits:3c\napi.hits:1|c", auth);
	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, line);
	dts_merger_step(m, (T0 + 5) * 1000);
	cr_expect_float_eq(current("42", "api", "hits", DTS_COUNTER)->sum, 3, 1e-9);
	cr_expect_float_eq(current("default", "api", "hits", DTS_COUNTER)->sum, 1, 1e-9);
	cr_expect_null(current("7", "api", "hits", DTS_COUNTER));
}

Test(merger, idle_series_expire)
{
	struct dts_merger_stats st;

	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "api.once:1|c");
	dts_merger_step(m, (T0 + 5) * 1000);
	cr_expect_not_null(current(NULL, "api", "once", DTS_COUNTER));
	dts_merger_step(m, (T0 + 200) * 1000); /* expire_s = 120 */
	cr_expect_null(current(NULL, "api", "once", DTS_COUNTER));
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.series_expired, 1);
	cr_expect_eq(st.series_live, 0);
}

/* An idle series' state is published once more when its data has left every window, then kept as it is (the merger
 * does not recompute it every slot) while its as_of follows the publications; new data republishes it. */
Test(merger, idle_state_is_kept_and_stays_current)
{
	const struct dts_current *cur;

	dts_merger_destroy(m, T0 * 1000);
	m = NULL;
	dts_rcu_unregister_thread();
	start_expire(2, 5, 600);
	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "api.hits:5|c");
	dts_merger_step(m, (T0 + 5) * 1000);
	cur = current(NULL, "api", "hits", DTS_COUNTER);
	cr_assert_not_null(cur);
	cr_expect_float_eq(cur->sum, 5, 1e-9);
	cr_expect_eq(cur->as_of_ms, (T0 + 5) * 1000);
	dts_merger_step(m, (T0 + 130) * 1000);
	cur = current(NULL, "api", "hits", DTS_COUNTER);
	cr_assert_not_null(cur);
	cr_expect_float_eq(cur->sum, 0, 1e-9);
	cr_expect(isnan(cur->avg));
	cr_expect_eq(cur->as_of_ms, (T0 + 130) * 1000);
	cr_expect_eq(cur->last_seen_s, T0);
	dts_merger_step(m, (T0 + 135) * 1000);
	dts_merger_step(m, (T0 + 300) * 1000);
	cur = current(NULL, "api", "hits", DTS_COUNTER);
	cr_assert_not_null(cur, "idle but not expired (expire_s = 600)");
	cr_expect_float_eq(cur->count, 0, 1e-9);
	cr_expect_eq(cur->as_of_ms, (T0 + 300) * 1000, "as of the latest publication");
	feed(1, T0 + 301, "api.hits:2|c");
	dts_merger_step(m, (T0 + 305) * 1000);
	cur = current(NULL, "api", "hits", DTS_COUNTER);
	cr_expect_float_eq(cur->sum, 2, 1e-9, "new data is published at the next slot");
	cr_expect_eq(cur->last_seen_s, T0 + 300);
}

/* Every series sent to the merger: its number, and the values it must show. */
struct census {
	unsigned seen_p, seen_q, wrong;
	char first_wrong[96];
};

static int census_cb(void *ctx, const struct dts_series_view *v)
{
	struct census *c = ctx;
	unsigned k = (unsigned)atoi(v->counter + 1);
	double want;

	if (!strcmp(v->process, "p")) {
		c->seen_p++;
		want = k % 2 == 0 ? 4 : -1; /* odd ones must have expired */
	} else {
		c->seen_q++;
		want = 7;
	}
	if (!v->cur || v->cur->sum != want) {
		if (!c->wrong++)
			snprintf(c->first_wrong, sizeof(c->first_wrong), "%s.%s sum %g, want %g", v->process, v->counter,
				 v->cur ? v->cur->sum : NAN, want);
	}
	return 0;
}

/* Send lines "<process>.<letter><k>:<value>|c" for k in [from, to) with step, 1,000 per table, each folded at once. */
static void feed_range(int64_t now_s, const char *process, char letter, unsigned from, unsigned to, unsigned step,
		       int value)
{
	static char dgram[1000 * 24];

	for (unsigned k = from; k < to;) {
		size_t len = 0;

		for (unsigned n = 0; n < 1000 && k < to; n++, k += step)
			len += (size_t)snprintf(dgram + len, sizeof(dgram) - len, "%s.%c%u:%d|c\n", process, letter, k,
						value);
		feed(0, now_s, dgram);
		dts_merger_step(m, now_s * 1000); /* fold it: the core has only a few tables */
	}
}

/* Past the series index's first two doublings, with half of the series expiring (index deletions, directory
 * positions reused by new series): every series folds into its own state, and none is lost or found twice. */
Test(merger, many_series_with_expiry_keep_their_identity)
{
	struct census c = { 0 };
	struct dts_merger_stats st;

	dts_merger_step(m, T0 * 1000);
	feed_range(T0 + 1, "p", 'c', 0, 70000, 1, 1);
	dts_merger_step(m, (T0 + 5) * 1000);
	dts_merger_stats_read(m, &st);
	cr_assert_eq(st.series_live, 70000);
	feed_range(T0 + 100, "p", 'c', 0, 70000, 2, 1); /* the even ones stay alive */
	dts_merger_step(m, (T0 + 130) * 1000); /* the odd ones: 129 s without data, expire_s = 120 */
	dts_merger_stats_read(m, &st);
	cr_assert_eq(st.series_expired, 35000);
	cr_assert_eq(st.series_live, 35000);
	feed_range(T0 + 131, "p", 'c', 0, 70000, 2, 3);
	feed_range(T0 + 131, "q", 'n', 0, 35000, 1, 7); /* new series take the expired ones' places */
	dts_merger_step(m, (T0 + 140) * 1000);
	dts_merger_read_current(m, NULL, census_cb, &c);
	cr_expect_eq(c.seen_p, 35000);
	cr_expect_eq(c.seen_q, 35000);
	cr_expect_eq(c.wrong, 0, "%u wrong, first: %s", c.wrong, c.first_wrong);
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.series_live, 70000);
	cr_expect_eq(st.series_created, 105000);
}

/* A checkpoint of more series than one piece holds reaches the sink in several pieces, all partial (each lacks the
 * others' series), which together hold every series' window exactly once. */
Test(merger, a_large_checkpoint_comes_in_partial_pieces)
{
	static unsigned char seen[70000];
	size_t total = 0;

	dts_merger_step(m, T0 * 1000);
	nckpt = 0;
	feed_range(T0 + 1, "p", 'c', 0, 70000, 1, 1);
	dts_merger_step(m, (T0 + 6) * 1000);
	cr_assert_geq(nckpt, 2, "70,000 series: more than one piece");
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < nckpt; i++) {
		cr_expect_eq(ckpt[i]->minute, T0 / 60);
		cr_expect(ckpt[i]->partial, "piece %d of a split checkpoint must be partial", i);
		for (size_t j = 0; j < ckpt[i]->n; j++) {
			unsigned k = (unsigned)atoi(ckpt[i]->recs[j].counter + 1);

			cr_assert_lt(k, 70000);
			cr_expect_eq(seen[k]++, 0, "series c%u copied twice", k);
			cr_expect_float_eq(ckpt[i]->recs[j].agg.sum, 1, 1e-9);
		}
		total += ckpt[i]->n;
	}
	cr_expect_eq(total, 70000);
}

/* Send n distinct counter names "g.n<base + k>:1|c" to core 0 at now_s without handing the table over. */
static void feed_names(int64_t now_s, unsigned base, unsigned n)
{
	static char dgram[1000 * 24];
	struct dts_core *c = dts_merger_core(m, 0);

	for (unsigned k = 0; k < n;) {
		size_t len = 0;

		for (unsigned j = 0; j < 1000 && k < n; j++, k++)
			len += (size_t)snprintf(dgram + len, sizeof(dgram) - len, "g.n%u:1|c\n", base + k);
		dts_core_ingest(c, dgram, len, now_s);
	}
}

/* Replace the suite's merger with one core whose 1,024-bucket tables may grow to 4,096; stepped once at T0. */
static struct dts_core *start_growing(unsigned grace)
{
	struct dts_merger_cfg cfg;

	dts_merger_destroy(m, T0 * 1000);
	m = NULL;
	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 1;
	cfg.grace_s = grace;
	cfg.table_capacity = 1024; /* early hand-over at 512 entries or 3,072 timer values */
	cfg.table_capacity_max = 4096;
	cfg.sink.minute_closed = sink;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
	dts_merger_step(m, T0 * 1000);
	return dts_merger_core(m, 0);
}

/* A table that fills before its tick comes back from the merger with more buckets, up to table_capacity_max, and so
 * do the core's other tables; after growing, a core aggregates more distinct series per tick without an early
 * hand-over, and nothing is lost. */
Test(merger, tables_that_fill_before_their_tick_grow_up_to_the_maximum)
{
	struct dts_merger_stats st;
	struct dts_core_stats cs0, cs1;
	struct dts_core *c = start_growing(10);
	int64_t now_ms = (T0 + 1) * 1000;

	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.table_buckets, 3 * 1024);

	/* 520 distinct series at a time: a table is handed over before its tick once past its mark (half its buckets) */
	for (unsigned round = 0; round < 40; round++) {
		feed_names(now_ms / 1000, round * 520, 520);
		if (dts_core_tick(c, now_ms))
			dts_merger_step(m, now_ms);
	}
	dts_merger_stats_read(m, &st);
	/* the first fill has no rate to go by: 1024 -> 2048; the next fill, within the same millisecond, wants the
	 * maximum, and every table gets it when it comes back: 2048 -> 4096 and 1024 -> 4096 twice */
	cr_expect_eq(st.tables_grown, 4);
	cr_expect_eq(st.table_buckets, 3 * 4096, "never beyond table_capacity_max");

	/* now 2,000 distinct series per tick fit without an early hand-over (starting from an empty table) */
	dts_core_flush(c);
	dts_core_tick(c, now_ms);
	dts_merger_step(m, now_ms);
	dts_core_stats_read(c, &cs0);
	feed_names(now_ms / 1000, 100000, 2000);
	cr_expect_not(dts_core_tick(c, now_ms), "a 4096-bucket table holds 2,000 series until its tick");
	dts_core_stats_read(c, &cs1);
	cr_expect_eq(cs1.handovers, cs0.handovers);
	dts_core_flush(c);
	cr_assert(dts_core_tick(c, now_ms));
	dts_merger_step(m, now_ms);
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.series_live, 40 * 520 + 2000);
	cr_expect_eq(st.dropped[DTS_DROP_TABLE_FULL], 0);
	dts_core_stats_read(c, &cs1);
	cr_expect_eq(cs1.dropped[DTS_DROP_TABLE_FULL], 0);
}

/* Replace the suite's merger with a one-core merger whose identity key is key (1 s tick, 4,096 buckets, grace 5). */
static struct dts_core *start_keyed(uint64_t key, uint32_t capacity)
{
	struct dts_merger_cfg cfg;

	dts_merger_destroy(m, T0 * 1000);
	for (int i = 0; i < nclosed; i++)
		dts_closed_minute_release(closed[i]);
	nclosed = 0;
	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 1;
	cfg.grace_s = 5;
	cfg.tick_ms = 1000;
	cfg.table_capacity = capacity;
	cfg.sink.minute_closed = sink;
	cfg.ident_key = key;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
	dts_merger_step(m, T0 * 1000);
	return dts_merger_core(m, 0);
}

/*
 * A gauge set in one 5-second slot and moved by a delta in the next, both in one table, is 105 afterwards: the fold
 * takes a gauge's entries in the order they came, whatever the order of their buckets (the fold takes the other
 * entries in bucket order, which depends on the identity key: so sixteen keys, each a different bucket order).
 */
Test(merger, a_gauge_delta_in_the_next_slot_of_one_table_adds_to_the_value)
{
	for (uint64_t k = 1; k <= 16; k++) {
		struct dts_core *c = start_keyed(0x9e3779b97f4a7c15ULL * k, 4096);
		const struct dts_minute_rec *r;
		const struct dts_current *cur;

		dts_core_ingest(c, "api.g:100|g", 11, T0 + 4); /* slot T0/5 */
		dts_core_ingest(c, "api.d:10|g\napi.d:+1|g", 21, T0 + 4);
		dts_core_ingest(c, "api.g:+5|g", 10, T0 + 5); /* the next slot, the same table */
		dts_core_ingest(c, "api.d:+2|g", 10, T0 + 5);
		dts_core_flush(c);
		cr_assert(dts_core_tick(c, (T0 + 5) * 1000));
		dts_merger_step(m, (T0 + 10) * 1000);
		cur = current(NULL, "api", "g", DTS_GAUGE);
		cr_assert_not_null(cur);
		cr_expect_float_eq(cur->last, 105, 1e-9, "key %llu", (unsigned long long)k);
		cur = current(NULL, "api", "d", DTS_GAUGE);
		cr_assert_not_null(cur);
		cr_expect_float_eq(cur->last, 13, 1e-9, "key %llu", (unsigned long long)k);
		dts_merger_step(m, (T0 + 70) * 1000); /* the minute closes */
		r = closed_rec(T0 / 60, "api", "g");
		cr_assert_not_null(r);
		cr_expect_float_eq(r->agg.lst, 105, 1e-9, "key %llu", (unsigned long long)k);
		r = closed_rec(T0 / 60, "api", "d");
		cr_assert_not_null(r);
		cr_expect_float_eq(r->agg.lst, 13, 1e-9, "key %llu", (unsigned long long)k);
	}
}

/* Ingest the lines fmt(k, (k + 1) * j) for k in [0, n) (n a multiple of 1,000), 1,000 to a datagram, on c at now_s;
 * each datagram must aggregate all of its lines. */
static void ingest_numbered(struct dts_core *c, int64_t now_s, unsigned n, const char *fmt, unsigned j)
{
	static char dgram[1000 * 32];

	for (unsigned k = 0; k < n;) {
		size_t len = 0;

		for (unsigned i = 0; i < 1000; i++, k++)
			len += (size_t)snprintf(dgram + len, sizeof(dgram) - len, fmt, k, (k + 1) * j);
		cr_assert_eq(dts_core_ingest(c, dgram, len, now_s), 1000);
	}
}

/*
 * The fold visits hashes in order, so the new series of one table all home below the point it has reached: many of
 * them at once into a small index must not pile up into one cluster that every addition walks. 100,000 new series
 * in one table, into a fresh index of 65,536 slots: a few slots stepped over per series, not thousands.
 */
Test(merger, many_new_series_in_one_fold_do_not_crowd_the_index)
{
	struct dts_core *c = start_keyed(0, 1u << 18);
	struct dts_merger_stats st;

	ingest_numbered(c, T0 + 1, 100000, "p.n%u:1|c\n", 0);
	dts_core_flush(c);
	cr_assert(dts_core_tick(c, (T0 + 1) * 1000));
	dts_merger_step(m, (T0 + 1) * 1000);
	dts_merger_stats_read(m, &st);
	cr_assert_eq(st.series_created, 100000, "one table, one fold");
	cr_expect_lt(st.index_probes, 8 * st.series_created, "%llu slots stepped over",
		     (unsigned long long)st.index_probes);
	cr_expect_geq(st.index_slots, 2 * 100000);
}

/* Timer series of quantiles_cb: how many it saw, and how many do not show what timer k's values give. */
struct tq {
	unsigned seen, wrong;
	char first_wrong[160];
};

/* Series t.n<k> had the values (k + 1) * j for j = 1..4: count 4, min and max exact, quantiles within 2%. */
static int quantiles_cb(void *ctx, const struct dts_series_view *v)
{
	struct tq *c = ctx;
	unsigned k;
	double u;

	if (v->type != DTS_TIMER || sscanf(v->counter, "n%u", &k) != 1)
		return 0;
	c->seen++;
	u = k + 1.0;
	if (!v->cur || v->cur->count != 4 || v->cur->min != u || v->cur->max != 4 * u ||
	    fabs(v->cur->bot10 - u) > 0.0201 * u || fabs(v->cur->p50 - 2 * u) > 0.0201 * 2 * u ||
	    fabs(v->cur->top10 - 3 * u) > 0.0201 * 3 * u) {
		if (!c->wrong++)
			snprintf(c->first_wrong, sizeof(c->first_wrong), "%s: count %g min %g max %g bot10 %g p50 %g "
				 "top10 %g, for %g", v->counter, v->cur ? v->cur->count : NAN, v->cur ? v->cur->min : NAN,
				 v->cur ? v->cur->max : NAN, v->cur ? v->cur->bot10 : NAN, v->cur ? v->cur->p50 : NAN,
				 v->cur ? v->cur->top10 : NAN, u);
	}
	return 0;
}

/*
 * A table of many series folds its timer log grouped by bucket instead of in arrival order (merger.c, tlog_grouped):
 * every value must still reach its own series' sketch. 20,000 timer series, four values each, sent round-robin (each
 * series' values far apart in the log) into one table; each series' quantiles are those of its own four values.
 */
Test(merger, a_large_table_timer_values_reach_their_own_sketches)
{
	struct dts_core *c = start_keyed(0, 1u << 16);
	struct dts_merger_stats st;
	struct tq q = { 0 };

	for (unsigned j = 1; j <= 4; j++)
		ingest_numbered(c, T0 + 1, 20000, "t.n%u:%u|ms\n", j);
	dts_core_flush(c);
	cr_assert(dts_core_tick(c, (T0 + 1) * 1000));
	dts_merger_step(m, (T0 + 5) * 1000);
	dts_merger_stats_read(m, &st);
	cr_assert_eq(st.tables_folded, 1, "all in one table");
	cr_assert_eq(st.series_created, 20000);
	dts_merger_read_current(m, NULL, quantiles_cb, &q);
	cr_expect_eq(q.seen, 20000);
	cr_expect_eq(q.wrong, 0, "%u wrong, first: %s", q.wrong, q.first_wrong);
}

/* Series seen by sums_cb, and how many of them do not show the sum it expects (the value of feed_range). */
struct sums {
	unsigned seen, wrong;
	double want;
};

static int sums_cb(void *ctx, const struct dts_series_view *v)
{
	struct sums *c = ctx;

	c->seen++;
	c->wrong += !v->cur || v->cur->sum != c->want;
	return 0;
}

/*
 * series_reserve: the index is sized for the reserve and the record memory is mapped (and faulted in) at creation;
 * series created within it map nothing more and never rehash the index; beyond it, memory is mapped as without a
 * reserve. Every series aggregates the same either way.
 */
Test(merger, a_series_reserve_is_used_before_more_memory_is_mapped)
{
	const uint64_t reserve = 100000, slab = 2u << 20;
	const uint64_t want_bytes = (reserve * DTS_SERIES_RESERVE_BYTES + slab - 1) / slab * slab;
	struct dts_merger_cfg cfg;
	struct dts_merger_stats st;
	struct sums c = { .want = 3 };

	dts_merger_destroy(m, T0 * 1000);
	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 1;
	cfg.series_reserve = reserve;
	cfg.sink.minute_closed = sink;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
	dts_merger_stats_read(m, &st);
	cr_assert_eq(st.series_reserved_bytes, want_bytes, "%llu reserved",
		     (unsigned long long)st.series_reserved_bytes);
	cr_assert_eq(st.series_slab_bytes, want_bytes);
	cr_assert_geq(st.index_slots, 2 * reserve, "the index holds the reserve at most half full");
	const uint64_t slots = st.index_slots;

	dts_merger_step(m, T0 * 1000);
	feed_range(T0 + 1, "p", 'c', 0, 90000, 1, 3);
	dts_merger_stats_read(m, &st);
	cr_assert_eq(st.series_live, 90000);
	cr_expect_eq(st.series_slab_bytes, want_bytes, "90,000 counters fit the reserve: nothing more mapped");
	cr_expect_eq(st.index_slots, slots, "no rehash within the reserve");

	/* 100,000 more counters (512 B records): past the reserve, more slabs are mapped. */
	feed_range(T0 + 1, "q", 'c', 0, 100000, 1, 3);
	dts_merger_step(m, (T0 + 5) * 1000);
	dts_merger_stats_read(m, &st);
	cr_assert_eq(st.series_live, 190000);
	cr_expect_gt(st.series_slab_bytes, want_bytes, "beyond the reserve, memory is mapped as needed");
	cr_expect_eq(st.series_reserved_bytes, want_bytes);
	dts_merger_read_current(m, NULL, sums_cb, &c);
	cr_expect_eq(c.seen, 190000);
	cr_expect_eq(c.wrong, 0, "%u series with a wrong sum", c.wrong);
}

/* Feed n new names to core c at now_ms, hand its table over and fold it; returns the buckets of all tables then. */
static uint64_t handover_names(struct dts_core *c, int64_t now_ms, unsigned *base, unsigned n)
{
	struct dts_merger_stats st;

	feed_names(now_ms / 1000, *base, n);
	*base += n;
	cr_assert(dts_core_tick(c, now_ms));
	dts_merger_step(m, now_ms);
	dts_merger_stats_read(m, &st);
	return st.table_buckets;
}

/* Tables grow by the rate at which they filled: a table that lasted a quarter of its tick comes back with four times
 * the buckets, not twice, and so do the core's other tables when they come back; one that lasted half a tick, twice. */
Test(merger, tables_grow_by_how_fast_they_filled)
{
	struct dts_merger_cfg cfg;
	struct dts_merger_stats st;
	struct dts_core *c;
	int64_t now_ms = (T0 + 1) * 1000;
	unsigned base = 0;

	dts_merger_destroy(m, T0 * 1000);
	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 1;
	cfg.tick_ms = 1000;
	cfg.table_capacity = 1024; /* handed over past 512 entries */
	cfg.table_capacity_max = 65536;
	cfg.sink.minute_closed = sink;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
	c = dts_merger_core(m, 0);
	dts_merger_step(m, T0 * 1000);

	/* the first table fills with nothing to measure from: twice */
	cr_expect_eq(handover_names(c, now_ms, &base, 520), 2048 + 2 * 1024);
	/* the second (1,024 buckets) fills 250 ms after the first hand-over: four times, 4,096 */
	now_ms += 250;
	cr_expect_eq(handover_names(c, now_ms, &base, 520), 2048 + 4096 + 1024);
	/* the third comes back after its tick without filling: it takes the core's 4,096 all the same */
	now_ms += 1000;
	cr_expect_eq(handover_names(c, now_ms, &base, 100), 2048 + 4096 + 4096);
	/* the first (2,048 buckets) is active again and fills 500 ms after the last hand-over: twice is enough, and the
	 * core already wants more, 4,096 */
	now_ms += 500;
	cr_expect_eq(handover_names(c, now_ms, &base, 1030), 3 * 4096);
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.tables_grown, 4);
	cr_expect_eq(st.dropped[DTS_DROP_TABLE_FULL], 0);
	cr_expect_eq(st.series_live, base);
}

/* Resident memory of this process (/proc/self/statm), bytes. */
static uint64_t resident_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%lu %lu", &size, &resident), 2);
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/*
 * dts_merger_reserve_tables: the tables of the one core named are resident at once, at the size the series call for
 * (twice as many buckets, at most table_capacity_max), with none of the other core's; the tables keep their capacity
 * and still grow from it, and everything fed aggregates as without.
 */
Test(merger, reserved_tables_are_resident_and_still_grow_from_their_capacity)
{
	/* per bucket: a 64-byte entry, its used and gauge list words (4 + 4) and 48 bytes of identity arena */
	const uint64_t per_table = 65536ull * (64 + 4 + 4 + 48);
	struct dts_merger_cfg cfg;
	struct dts_merger_stats st;
	struct sums sc = { .want = 1 }; /* only seen is checked: nothing is published before the next slot */
	unsigned base = 0;

	dts_merger_destroy(m, T0 * 1000);
	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 2;
	cfg.table_capacity = 1024;
	cfg.table_capacity_max = 65536;
	cfg.sink.minute_closed = sink;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);

	errno = 0;
	cr_expect_eq(dts_merger_reserve_tables(m, 2, 1000), -1, "there is no core 2");
	cr_expect_eq(errno, EINVAL);
	cr_expect_eq(dts_merger_reserve_tables(m, 1, 0), 0, "no series: nothing to do");
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.table_reserved_bytes, 0);

	const uint64_t before = resident_bytes();

	/* 20,000 series: 40,000 buckets, rounded up to 65,536, for each of core 0's three tables */
	cr_assert_eq(dts_merger_reserve_tables(m, 0, 20000), 0);
	const uint64_t grown = resident_bytes() - before;

	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.table_reserved_bytes, 3 * per_table, "%llu bytes reserved",
		     (unsigned long long)st.table_reserved_bytes);
	cr_expect_geq(grown, 3 * per_table * 9 / 10, "only %llu bytes became resident", (unsigned long long)grown);
	cr_expect_eq(st.table_buckets, 6 * 1024, "the tables keep their capacity");

	/* more series than the largest table holds: the largest table, not more */
	cr_assert_eq(dts_merger_reserve_tables(m, 1, 10000000), 0);
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.table_reserved_bytes, 6 * per_table);

	dts_merger_step(m, T0 * 1000);
	handover_names(dts_merger_core(m, 0), (T0 + 1) * 1000 + 100, &base, 600);
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.tables_grown, 1, "a table that filled early grows as without the reserve");
	cr_expect_eq(st.series_live, 600);
	cr_expect_eq(st.dropped[DTS_DROP_TABLE_FULL], 0);
	dts_merger_read_current(m, NULL, sums_cb, &sc);
	cr_expect_eq(sc.seen, 600);
}

/* Timer values of one series fill a table's timer log long before its buckets: that table grows too (its log with
 * it), and the values are all in the minute. */
Test(merger, a_table_whose_timer_log_fills_grows_its_logs)
{
	static char dgram[400 * 16];
	struct dts_merger_stats st;
	struct dts_core *c = start_growing(5); /* a 4,096-value timer log, handed over past 3,072 */
	const int64_t now_s = T0 + 1;
	unsigned sent = 0;

	for (unsigned round = 0; round < 10; round++) {
		size_t len = 0;

		for (unsigned j = 0; j < 400; j++, sent++)
			len += (size_t)snprintf(dgram + len, sizeof(dgram) - len, "api.lat:%u|ms\n", 1 + sent % 100);
		dts_core_ingest(c, dgram, len, now_s);
		if (dts_core_tick(c, now_s * 1000))
			dts_merger_step(m, now_s * 1000);
	}
	dts_merger_stats_read(m, &st);
	cr_expect_geq(st.table_logs_grown, 1, "a table handed over for its timer log gets bigger logs");
	cr_expect_eq(st.tables_grown, 0, "and no more buckets: one series filled it");
	cr_expect_eq(st.table_buckets, 3 * 1024, "the pool's buckets are the initial ones");
	dts_core_flush(c);
	dts_core_tick(c, now_s * 1000);
	dts_merger_step(m, (T0 + 66) * 1000); /* the minute closes */
	cr_assert_eq(nclosed, 1);
	cr_expect_float_eq(closed_rec(T0 / 60, "api", "lat")->agg.count, 4000, 1e-9, "no value dropped");
	cr_expect_float_eq(closed_rec(T0 / 60, "api", "lat")->sketch.count, 4000, 1e-9);
}

Test(merger, destroy_closes_the_open_minute)
{
	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "api.hits:2|c");
	/* data still in a core's active table, never handed over */
	dts_core_ingest(dts_merger_core(m, 1), "api.hits:3|c", 12, T0 + 2);
	dts_merger_destroy(m, (T0 + 3) * 1000);
	m = NULL;
	cr_assert_eq(nclosed, 1);
	cr_expect_float_eq(closed_rec(T0 / 60, "api", "hits")->agg.sum, 5, 1e-9);
}

Test(merger, create_rejects_bad_config)
{
	static const char *const what[] = { "zero cores", "65 cores", "grace beyond 60 s", "capacity not 2^n",
					     "empty user", "one table per core", "maximum below the capacity",
					     "maximum not 2^n", "reserve beyond the series bound" };

	for (int i = 0; i < 9; i++) {
		struct dts_merger_cfg cfg;

		dts_merger_cfg_defaults(&cfg);
		switch (i) {
		case 0: cfg.cores = 0; break;
		case 1: cfg.cores = 65; break;
		case 2: cfg.grace_s = 61; break; /* a minute must close within the next one */
		case 3: cfg.table_capacity = 3000; break;
		case 4: cfg.user = ""; break;
		case 5: cfg.tables_per_core = 1; break;
		case 6: cfg.table_capacity_max = cfg.table_capacity / 2; break;
		case 7: cfg.table_capacity_max = cfg.table_capacity * 3; break;
		case 8: cfg.max_series = 1000; cfg.series_reserve = 1001; break;
		}
		errno = 0;
		cr_expect_null(dts_merger_create(&cfg), "%s", what[i]);
		cr_expect_eq(errno, EINVAL, "%s", what[i]);
	}
}

Test(merger, checkpoints_copy_open_minutes_without_closing)
{
	dts_merger_step(m, T0 * 1000);
	nckpt = 0; /* nothing to checkpoint yet */
	feed(0, T0 + 1, "api.hits:4|c\napi.lat:10|ms\napi.lat:30|ms");
	dts_merger_step(m, (T0 + 6) * 1000);
	cr_assert_eq(nckpt, 1, "one open minute with data");
	cr_expect(ckpt[0]->open);
	cr_expect_eq(ckpt[0]->minute, T0 / 60);
	cr_expect_eq(ckpt[0]->n, 2);
	dts_merger_step(m, (T0 + 8) * 1000);
	cr_expect_eq(nckpt, 1, "next checkpoint only after checkpoint_ms");
	feed(1, T0 + 9, "api.hits:1|c");
	dts_merger_step(m, (T0 + 11) * 1000);
	cr_assert_eq(nckpt, 2);
	for (size_t i = 0; i < ckpt[1]->n; i++)
		if (!strcmp(ckpt[1]->recs[i].counter, "hits"))
			cr_expect_float_eq(ckpt[1]->recs[i].agg.sum, 5, 1e-9, "checkpoints are cumulative copies");
	cr_expect_eq(nclosed, 0, "a checkpoint does not close the minute");
}

static const struct dts_minute_rec *ckpt_rec(const struct dts_closed_minute *cm, const char *counter)
{
	for (size_t i = 0; i < cm->n; i++)
		if (!strcmp(cm->recs[i].counter, counter))
			return &cm->recs[i];
	return NULL;
}

/* With a sink that reports lost checkpoints, checkpoints after the first copy only the windows that changed; a lost
 * one makes the next a full copy again. */
Test(merger, partial_checkpoints_copy_what_changed)
{
	struct dts_merger_cfg cfg;

	dts_merger_destroy(m, T0 * 1000);
	m = NULL;
	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 1;
	cfg.grace_s = 5;
	cfg.table_capacity = 4096;
	cfg.sink.minute_closed = sink;
	cfg.sink.checkpoint = ckpt_sink;
	cfg.sink.checkpoint_lost = ckpt_lost;
	cfg.checkpoint_ms = 5000;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
	lost_flag = false;
	lost_calls = 0;

	dts_merger_step(m, T0 * 1000);
	nckpt = 0;
	feed(0, T0 + 1, "api.a:1|c\napi.b:2|c\napi.lat:10|ms");
	dts_merger_step(m, (T0 + 6) * 1000);
	cr_assert_eq(nckpt, 1);
	cr_expect_eq(ckpt[0]->n, 3, "every window is new (the full first checkpoint at T0 had nothing to copy)");

	feed(0, T0 + 7, "api.b:5|c");
	dts_merger_step(m, (T0 + 12) * 1000);
	cr_assert_eq(nckpt, 2);
	cr_expect(ckpt[1]->partial);
	cr_expect_eq(ckpt[1]->n, 1, "only api.b changed");
	cr_assert_not_null(ckpt_rec(ckpt[1], "b"));
	cr_expect_float_eq(ckpt_rec(ckpt[1], "b")->agg.sum, 7, 1e-9, "the changed window is copied whole");

	dts_merger_step(m, (T0 + 18) * 1000);
	cr_expect_eq(nckpt, 2, "nothing changed: an empty partial checkpoint is not handed over");

	lost_flag = true; /* the sink lost one */
	feed(0, T0 + 19, "api.a:1|c");
	dts_merger_step(m, (T0 + 24) * 1000);
	cr_assert_eq(nckpt, 3);
	cr_expect_not(ckpt[2]->partial, "after a lost checkpoint the next is full");
	cr_expect_eq(ckpt[2]->n, 3);
	cr_expect_float_eq(ckpt_rec(ckpt[2], "a")->agg.sum, 2, 1e-9);
	cr_expect_geq(lost_calls, 3, "asked before every checkpoint");
}

Test(merger, restore_after_crash_merges_with_new_data)
{
	struct dts_closed_minute *saved;

	/* First life: data, a checkpoint, then a crash (the merger is simply abandoned for a new one). */
	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "api.hits:4|c\napi.lat:10|ms\napi.lat:30|ms\ng.level:7|g");
	dts_merger_step(m, (T0 + 6) * 1000);
	cr_assert_eq(nckpt, 1);
	saved = ckpt[0];
	nckpt = 0;
	dts_merger_destroy(m, (T0 + 6) * 1000); /* closes the minute into the sink: discard that */
	for (int i = 0; i < nclosed; i++)
		dts_closed_minute_release(closed[i]);
	nclosed = 0;
	dts_rcu_unregister_thread();

	/* Second life: restore the checkpoint, receive more, close: both lives are in the minute, once. */
	start(2, 5);
	cr_expect_eq(dts_merger_restore(m, saved, (T0 + 20) * 1000), 3);
	dts_closed_minute_release(saved);
	feed(1, T0 + 21, "api.hits:1|c\napi.lat:20|ms");
	dts_merger_step(m, (T0 + 66) * 1000);
	cr_assert_eq(nclosed, 1);
	const struct dts_minute_rec *h = closed_rec(T0 / 60, "api", "hits");
	const struct dts_minute_rec *l = closed_rec(T0 / 60, "api", "lat");
	const struct dts_minute_rec *g = closed_rec(T0 / 60, "g", "level");
	cr_assert(h && l && g);
	cr_expect_float_eq(h->agg.sum, 5, 1e-9);
	cr_expect_float_eq(l->agg.count, 3, 1e-9);
	cr_expect_float_eq(l->sketch.count, 3, 1e-9);
	cr_expect_float_eq(l->agg.min, 10, 1e-9);
	cr_expect_float_eq(g->agg.lst, 7, 1e-9);
}

Test(merger, restore_refuses_closed_minutes)
{
	struct dts_merger_stats st;
	struct dts_minute_rec r = { .user = "default", .process = "api", .counter = "x", .tags = "", .type = DTS_COUNTER };
	struct dts_closed_minute cm = { .minute = T0 / 60 - 5, .n = 1, .recs = &r };

	dts_agg_init(&r.agg);
	dts_agg_add(&r.agg, 1, 1);
	cr_expect_eq(dts_merger_restore(m, &cm, T0 * 1000), 0);
	dts_merger_stats_read(m, &st);
	cr_expect_eq(st.dropped[DTS_DROP_LATE], 1);
}

/* ---- the 5-second slot ring behind the current state ------------------------------------------------------------ */

/* Ingest a datagram built from fmt on core at now_s and hand the table over. */
static void feedf(unsigned core, int64_t now_s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void feedf(unsigned core, int64_t now_s, const char *fmt, ...)
{
	char dgram[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(dgram, sizeof(dgram), fmt, ap);
	va_end(ap);
	cr_assert(n > 0 && (size_t)n < sizeof(dgram));
	feed(core, now_s, dgram);
}

/* What each type publishes: counters and sets no extremes and no last value, timers no last value; gauges their
 * value (after deltas), and the extremes of the window. */
Test(merger, current_state_fields_per_type)
{
	const struct dts_current *c;

	dts_merger_step(m, T0 * 1000);
	feed(0, T0 + 1, "api.hits:3|c\napi.hits:5|c|@0.5\napi.lat:20|ms\napi.lat:4|ms\napi.lvl:9|g\napi.lvl:-2|g\n"
			"api.who:x|s\napi.who:y|s\napi.who:x|s");
	dts_merger_step(m, (T0 + 5) * 1000);
	c = current(NULL, "api", "hits", DTS_COUNTER);
	cr_assert_not_null(c);
	cr_expect_eq(c->sum, 13);
	cr_expect_eq(c->count, 3);
	cr_expect_eq(c->rate, 13.0 / 60);
	cr_expect(isnan(c->min) && isnan(c->max) && isnan(c->last), "a counter publishes no min, max or last");
	c = current(NULL, "api", "lat", DTS_TIMER);
	cr_assert_not_null(c);
	cr_expect_eq(c->count, 2);
	cr_expect_eq(c->avg, 12);
	cr_expect_eq(c->min, 4);
	cr_expect_eq(c->max, 20);
	cr_expect(isnan(c->last), "a timer publishes no last value");
	c = current(NULL, "api", "lvl", DTS_GAUGE);
	cr_assert_not_null(c);
	cr_expect_eq(c->last, 7, "the value with the delta applied");
	cr_expect_eq(c->min, 7);
	cr_expect_eq(c->max, 9);
	c = current(NULL, "api", "who", DTS_SET);
	cr_assert_not_null(c);
	cr_expect_eq(c->distinct, 2);
	cr_expect(isnan(c->min) && isnan(c->max) && isnan(c->last));
	/* the window empties: no extremes; the gauge keeps its value */
	dts_merger_step(m, (T0 + 65) * 1000);
	c = current(NULL, "api", "lat", DTS_TIMER);
	cr_expect(c->count == 0 && isnan(c->min) && isnan(c->max) && isnan(c->avg));
	c = current(NULL, "api", "lvl", DTS_GAUGE);
	cr_expect(c->count == 0 && isnan(c->min) && isnan(c->max));
	cr_expect_eq(c->last, 7);
}

/*
 * One event of a ring scenario: at T0 + t, feed "api.c:V|c|Tts", "api.t:V|ms|Tts" and "api.g:V|g|Tts" (v != 0; ts =
 * T0 + stamp) and step the merger, or (v == 0) step and expect the current state: count values of sum, for the timer
 * and the gauge min and max too (NAN: none).
 */
struct ring_ev {
	int t;
	int stamp;
	double v;
	double count, sum, min, max;
	const char *why;
};

static void ring_run(const struct ring_ev *ev, size_t n)
{
	static const struct {
		const char *name;
		uint8_t type;
	} ser[] = { { "c", DTS_COUNTER }, { "t", DTS_TIMER }, { "g", DTS_GAUGE } };

	dts_merger_step(m, T0 * 1000);
	for (size_t i = 0; i < n; i++) {
		const struct ring_ev *e = &ev[i];
		const long long ts = T0 + e->stamp;

		if (e->v != 0) {
			feedf((unsigned)i % 2, T0 + e->t, "api.c:%g|c|T%lld\napi.t:%g|ms|T%lld\napi.g:%g|g|T%lld", e->v, ts,
			      e->v, ts, e->v, ts);
			dts_merger_step(m, (T0 + e->t) * 1000);
			continue;
		}
		dts_merger_step(m, (T0 + e->t) * 1000);
		for (size_t k = 0; k < 3; k++) {
			const struct dts_current *c = current(NULL, "api", ser[k].name, ser[k].type);

			cr_assert_not_null(c, "event %zu", i);
			cr_expect_eq(c->as_of_ms, (T0 + e->t) / 5 * 5 * 1000);
			cr_expect_eq(c->count, e->count, "%s at T0+%d (%s): count %g, want %g", ser[k].name, e->t, e->why,
				     c->count, e->count);
			cr_expect_eq(c->sum, e->sum, "%s at T0+%d (%s): sum %g, want %g", ser[k].name, e->t, e->why, c->sum,
				     e->sum);
			if (ser[k].type == DTS_COUNTER)
				continue;
			cr_expect(isnan(e->min) ? isnan(c->min) : c->min == e->min, "%s at T0+%d (%s): min %g, want %g",
				  ser[k].name, e->t, e->why, c->min, e->min);
			cr_expect(isnan(e->max) ? isnan(c->max) : c->max == e->max, "%s at T0+%d (%s): max %g, want %g",
				  ser[k].name, e->t, e->why, c->max, e->max);
		}
	}
}

/* Data at slots S, S+3 and S+20 (S = T0 / 5): each publication holds exactly the slots of its 60 s window, also after
 * the ring moved 17 slots at once. */
Test(merger, ring_publishes_the_slots_inside_the_window)
{
	static const struct ring_ev ev[] = {
		{ 1, 1, 1, 0, 0, 0, 0, "" },
		{ 5, 0, 0, 1, 1, 1, 1, "slot S closed" },
		{ 16, 16, 10, 0, 0, 0, 0, "" },
		{ 17, 0, 0, 1, 1, 1, 1, "slot S+3 still open" },
		{ 20, 0, 0, 2, 11, 1, 10, "S and S+3" },
		{ 60, 0, 0, 2, 11, 1, 10, "window [S, S+12)" },
		{ 65, 0, 0, 1, 10, 10, 10, "S left" },
		{ 80, 0, 0, 0, 0, NAN, NAN, "S+3 left" },
		{ 101, 101, 100, 0, 0, 0, 0, "" },
		{ 105, 0, 0, 1, 100, 100, 100, "S+20 alone (S and S+3's positions now stand for S+12 and S+15)" },
		{ 160, 0, 0, 1, 100, 100, 100, "window [S+20, S+32)" },
		{ 165, 0, 0, 0, 0, NAN, NAN, "S+20 left" },
	};

	ring_run(ev, sizeof(ev) / sizeof(ev[0]));
}

/* Late data: a slot the ring still holds is in the current state; a slot 12 or more before the newest one with data
 * (its position holds that newer slot) is not, and must not disturb the newer slot, but is in its minute. */
Test(merger, late_data_older_than_the_ring_is_only_in_its_minute)
{
	static const struct ring_ev ev[] = {
		{ 61, 61, 1, 0, 0, 0, 0, "" }, /* S+12: minute T0/60 + 1 */
		{ 121, 121, 1000, 0, 0, 0, 0, "" }, /* S+24 */
		{ 122, 91, 30, 0, 0, 0, 0, "late by 30 s: S+18" },
		{ 123, 61, 2, 0, 0, 0, 0, "late by 60 s: S+12, the position of S+24" },
		{ 123, 66, 4, 0, 0, 0, 0, "S+13: 11 before S+24" },
		{ 125, 0, 0, 3, 1034, 4, 1000, "window [S+13, S+25): S+13, S+18, S+24" },
	};
	const struct dts_minute_rec *r;

	ring_run(ev, sizeof(ev) / sizeof(ev[0]));
	/* minute T0/60 + 1 closed at T0 + 125 with every value stamped in it */
	r = closed_rec(T0 / 60 + 1, "api", "c");
	cr_assert_not_null(r);
	cr_expect_eq(r->agg.sum, 1 + 30 + 2 + 4);
	cr_expect_eq(r->agg.count, 4);
	r = closed_rec(T0 / 60 + 1, "api", "t");
	cr_assert_not_null(r);
	cr_expect_eq(r->agg.min, 1);
	cr_expect_eq(r->sketch.count, 4);
}

/*
 * Data stamped ahead of the server's clock (here folded in the step that publishes slot P = S+12, whose window is
 * [S, S+12)): it is published once its own slot has closed, and does not push the oldest slots of the window out
 * while it is less than 12 slots ahead.
 */
ParameterizedTestParameters(merger, data_ahead_of_the_publication_slot)
{
	static int ahead[] = { 0, 1, 2, 5, 11 };

	return cr_make_param_array(int, ahead, sizeof(ahead) / sizeof(ahead[0]));
}

ParameterizedTest(int *ahead, merger, data_ahead_of_the_publication_slot)
{
	const int k = *ahead, t = 60 + 5 * k; /* stamped in slot S+12+k, which shares its ring position with S+k */
	const struct ring_ev ev[] = {
		{ 1, 1, 1, 0, 0, 0, 0, "" }, /* slot S */
		{ 36, 36, 7, 0, 0, 0, 0, "" }, /* slot S+7 */
		{ 60, t, 100, 0, 0, 0, 0, "" },
		{ 60, 0, 0, k ? 2 : 1, k ? 8 : 7, k ? 1 : 7, 7, "P = S+12: S and S+7, but S+12 takes S's position" },
		{ 65, 0, 0, k ? 1 : 2, k ? 7 : 107, 7, k ? 7 : 100, "P = S+13: S left" },
		{ t + 5, 0, 0, k <= 6 ? 2 : 1, k <= 6 ? 107 : 100, k <= 6 ? 7 : 100, 100, "its slot closed" },
	};

	ring_run(ev, sizeof(ev) / sizeof(ev[0]));
}

/*
 * The ring against a model that keeps a slot number per position (each position holds the newest slot merged at it;
 * an older slot is not merged): random values over 20 minutes, stamped from 70 s late to 55 s ahead, with gaps;
 * every publication's count, sum, min and max must be the model's.
 */
struct ring_model {
	int64_t win[2]; /* the minute each of the series' two minute windows holds (minute % 2), -1: none */
	int64_t slot[DTS_SLOTS_PER_MINUTE];
	double sum[DTS_SLOTS_PER_MINUTE], count[DTS_SLOTS_PER_MINUTE], min[DTS_SLOTS_PER_MINUTE],
		max[DTS_SLOTS_PER_MINUTE];
};

static void model_merge(struct ring_model *r, int64_t slot, double v)
{
	const int i = (int)(slot % DTS_SLOTS_PER_MINUTE);

	if (r->slot[i] != slot) {
		if (r->slot[i] > slot)
			return;
		r->slot[i] = slot;
		r->sum[i] = r->count[i] = 0;
		r->min[i] = INFINITY;
		r->max[i] = -INFINITY;
	}
	r->sum[i] += v;
	r->count[i] += 1;
	r->min[i] = v < r->min[i] ? v : r->min[i];
	r->max[i] = v > r->max[i] ? v : r->max[i];
}

static void model_publish(const struct ring_model *r, int64_t p, struct dts_current *v)
{
	memset(v, 0, sizeof(*v));
	v->min = INFINITY;
	v->max = -INFINITY;
	for (int i = 0; i < DTS_SLOTS_PER_MINUTE; i++) {
		if (r->slot[i] < p - DTS_SLOTS_PER_MINUTE || r->slot[i] >= p || r->count[i] <= 0)
			continue;
		v->sum += r->sum[i];
		v->count += r->count[i];
		v->min = r->min[i] < v->min ? r->min[i] : v->min;
		v->max = r->max[i] > v->max ? r->max[i] : v->max;
	}
	if (v->count == 0)
		v->min = v->max = NAN;
}

Test(merger, ring_matches_a_slot_number_per_position)
{
	static const struct {
		const char *name, *suffix;
		uint8_t type;
	} ser[] = { { "c", "c", DTS_COUNTER }, { "t", "ms", DTS_TIMER }, { "g", "g", DTS_GAUGE } };
	struct ring_model model[3];
	uint64_t rng = 0x9e3779b97f4a7c15ULL;
	int64_t closed_upto = T0 / 60 - 1, pub = T0 / 5;
	unsigned checks = 0, wrong = 0, ahead = 0;
	struct dts_merger_stats st;

	for (int k = 0; k < 3; k++) {
		model[k].win[0] = model[k].win[1] = -1;
		for (int i = 0; i < DTS_SLOTS_PER_MINUTE; i++)
			model[k].slot[i] = -1;
	}
	dts_merger_step(m, T0 * 1000);
	for (int64_t t = T0 + 1; t < T0 + 1200; t += 1 + (int64_t)(rng >> 33) % 7) {
		char dgram[4096];
		size_t len = 0;
		int64_t dropped_slot[3] = { -1, -1, -1 };
		bool taken;

		for (int k = 0; k < 3; k++) {
			rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
			for (int n = t == T0 + 1 ? 1 : (int)((rng >> 40) % 4); n > 0; n--) {
				int64_t ts;
				int v;

				rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
				ts = t - 70 + (int64_t)((rng >> 20) % 126);
				v = 1 + (int)((rng >> 50) % 100);
				if (ts / 60 < closed_upto)
					continue; /* its minute is closed: a late part, never in the ring */
				/* the next minute, while the minute before the open one holds its window and is
				 * still in grace: dropped as future (one drop per series and slot: the core sums
				 * them into one entry) */
				taken = true;
				if (model[k].win[ts / 60 % 2] != ts / 60) {
					if (model[k].win[ts / 60 % 2] >= closed_upto) {
						taken = false;
						ahead += !(dropped_slot[k] == ts / DTS_SLOT_SECONDS);
						dropped_slot[k] = ts / DTS_SLOT_SECONDS;
					} else {
						model[k].win[ts / 60 % 2] = ts / 60;
					}
				}
				len += (size_t)snprintf(dgram + len, sizeof(dgram) - len, "api.%s:%d|%s|T%lld\n", ser[k].name,
							v, ser[k].suffix, (long long)ts);
				if (taken)
					model_merge(&model[k], ts / DTS_SLOT_SECONDS, v);
			}
		}
		if (len)
			feed((unsigned)(t % 2), t, dgram);
		dts_merger_step(m, t * 1000);
		for (int i = 0; i < nclosed; i++)
			dts_closed_minute_release(closed[i]);
		for (int i = 0; i < nckpt; i++)
			dts_closed_minute_release(ckpt[i]);
		nclosed = nckpt = 0;
		while ((closed_upto + 1) * 60 + 5 <= t)
			closed_upto++;
		if (t / DTS_SLOT_SECONDS == pub)
			continue;
		pub = t / DTS_SLOT_SECONDS;
		for (int k = 0; k < 3; k++) {
			const struct dts_current *c = current(NULL, "api", ser[k].name, ser[k].type);
			struct dts_current want;
			bool ok;

			model_publish(&model[k], pub, &want);
			cr_assert_not_null(c);
			ok = c->count == want.count && c->sum == want.sum;
			if (ser[k].type != DTS_COUNTER)
				ok = ok && (isnan(want.min) ? isnan(c->min) && isnan(c->max)
							    : c->min == want.min && c->max == want.max);
			if (!ok && !wrong++)
				cr_expect(false, "%s at T0+%lld: count %g sum %g min %g max %g, want %g %g %g %g", ser[k].name,
					  (long long)(t - T0), c->count, c->sum, c->min, c->max, want.count, want.sum,
					  want.min, want.max);
			checks++;
		}
	}
	cr_expect_eq(wrong, 0, "%u of %u publications differ", wrong, checks);
	cr_expect_gt(checks, 3 * 200);
	dts_merger_stats_read(m, &st);
	cr_expect_gt(ahead, 0, "the run has values for the next minute while the minute before is in grace");
	cr_expect_eq(st.dropped[DTS_DROP_FUTURE], ahead, "dropped as future: %llu, want %u",
		     (unsigned long long)st.dropped[DTS_DROP_FUTURE], ahead);
}
