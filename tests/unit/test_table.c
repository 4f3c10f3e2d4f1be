/*
 * test_table.c - the per-core table and the RX-core side of the engine (ingest, hand-over), table-driven.
 * White-box where the behaviour is internal (entries, logs, rings); the merger side is test_merger.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/src/engine_internal.h"
#include "dts/engine.h"

static struct dts_merger *m;
static struct dts_core *c;

static void setup(void)
{
	struct dts_merger_cfg cfg;

	dts_rcu_register_thread();
	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 1;
	cfg.table_capacity = 1024;
	cfg.tables_per_core = 2;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
	c = dts_merger_core(m, 0);
}

static void teardown(void)
{
	dts_merger_destroy(m, 1700000000000LL);
	dts_rcu_unregister_thread();
}

TestSuite(table, .init = setup, .fini = teardown);

static const struct dts__entry *find(const char *process, const char *counter, uint8_t type)
{
	const struct dts__table *t = c->active;

	for (uint32_t i = 0; i < t->n_used; i++) {
		const struct dts__entry *e = &t->entries[t->used[i]];
		const struct dts__ident *id = dts__table_ident(t, e);
		const char *b = id->bytes + id->user_len;

		if (e->type == type && id->process_len == strlen(process) && !memcmp(b, process, id->process_len) &&
		    id->counter_len == strlen(counter) && !memcmp(b + id->process_len, counter, id->counter_len))
			return e;
	}
	return NULL;
}

Test(table, create_rejects_bad_sizes)
{
	struct dts__table_cfg bad[] = {
		{ 1000, 65536, 65536, 4096 }, /* not a power of two */
		{ 32, 65536, 65536, 4096 }, /* too small */
		{ 1024, 100, 65536, 4096 }, /* arena too small */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		cr_expect_null(dts__table_create(&bad[i]), "case %zu", i);
		cr_expect_eq(errno, EINVAL, "case %zu", i);
	}
}

Test(table, counters_sum_in_place_per_slot)
{
	const char *dgram = "api.hits:1|c\napi.hits:2|c\napi.hits:3|c|@0.5\napi.other:7|c\n";

	cr_assert_eq(dts_core_ingest(c, dgram, strlen(dgram), 1700000000), 4);
	const struct dts__entry *e = find("api", "hits", DTS_COUNTER);
	cr_assert_not_null(e);
	cr_expect_float_eq(e->agg.sum, 1 + 2 + 3 / 0.5, 1e-9);
	cr_expect_float_eq(e->agg.count, 1 + 1 + 2, 1e-9);
	cr_expect_eq(c->active->n_used, 2);
	/* A later slot of the same series is its own entry. */
	dts_core_ingest(c, "api.hits:1|c", 12, 1700000000 + DTS_SLOT_SECONDS);
	cr_expect_eq(c->active->n_used, 3);
}

Test(table, timers_log_one_key_per_value)
{
	const char *dgram = "api.q:10:20:30|ms\napi.q:0|ms\napi.q:-5|ms";

	cr_assert_eq(dts_core_ingest(c, dgram, strlen(dgram), 1700000000), 5);
	cr_expect_eq(c->active->n_tlog, 5);
	cr_expect_eq(c->active->tlog[0].key, dts_sketch_key(10));
	cr_expect_eq(c->active->tlog[3].key, INT16_MIN, "zero goes to the zero bin");
	cr_expect_eq(c->active->tlog[4].negative, 1);
	const struct dts__entry *e = find("api", "q", DTS_TIMER);
	cr_assert_not_null(e);
	cr_expect_float_eq(e->agg.count, 5, 1e-9);
	cr_expect_float_eq(e->agg.min, -5, 1e-9);
	cr_expect_float_eq(e->agg.max, 30, 1e-9);
}

Test(table, gauges_absolute_and_deltas)
{
	struct {
		const char *dgram;
		double lst;
		uint8_t flags;
	} cases[] = {
		{ "g.a:5|g\ng.a:+3|g\ng.a:-1|g", 7, DTS__ENT_GAUGE_ABS },
		{ "g.b:+3|g\ng.b:+4|g", 7, DTS__ENT_GAUGE_PENDING },
		{ "g.c:+3|g\ng.c:10|g\ng.c:+1|g", 11, DTS__ENT_GAUGE_ABS },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char counter[2] = { (char)('a' + i), 0 };

		dts_core_ingest(c, cases[i].dgram, strlen(cases[i].dgram), 1700000000);
		const struct dts__entry *e = find("g", counter, DTS_GAUGE);
		cr_assert_not_null(e, "case %zu", i);
		cr_expect_float_eq(e->agg.lst, cases[i].lst, 1e-9, "case %zu", i);
		cr_expect_eq(e->flags, cases[i].flags, "case %zu", i);
	}
}

Test(table, rejected_lines_counted_rest_kept)
{
	const char *dgram = "ok.a:1|c\nbroken\nok.b:1|zz\n\nok.c:2|c\n";
	struct dts_core_stats st;

	cr_expect_eq(dts_core_ingest(c, dgram, strlen(dgram), 1700000000), 2);
	dts_core_stats_read(c, &st);
	cr_expect_eq(st.lines, 4, "blank lines are not lines");
	cr_expect_eq(st.samples, 2);
	cr_expect_eq(st.rejected[DTS_REJ_BAD_TYPE], 1);
	cr_expect_eq(st.rejected[DTS_REJ_DATTSS_FORMAT], 1, "no '|' means a DaTtSs line, which 'broken' is not");
	cr_expect_eq(st.packets, 1);
	cr_expect_eq(st.bytes, strlen(dgram));
}

/* The line splitter works on 16-byte blocks (the last one overlapping the previous): lines must come out the same
 * whatever the datagram's length and wherever the newlines fall - under, at and over 16 bytes, newlines at the block
 * edges, trailing newlines and empty lines. Each case is copied into an exact-size heap buffer so that ASan sees any
 * read past the datagram. */
Test(table, line_split_at_block_edges)
{
	static const struct {
		const char *dgram;
		unsigned samples, lines;
	} cases[] = {
		{ "a.b:1|c", 1, 1 },                                   /* 7 bytes: byte-by-byte path */
		{ "a.bcdefghi:1|c\n", 1, 1 },                          /* 15 bytes, newline last */
		{ "a.bcdefghij:1|c\n", 1, 1 },                         /* 16: newline at byte 15 */
		{ "a.bcdefghijk:1|c\n", 1, 1 },                        /* 17: newline at byte 16 */
		{ "a.bcdefghijklm:1|c", 1, 1 },                         /* 18, no newline: the end closes the line */
		{ "a.bcdefghijk:1|c\nx.y:2|c", 2, 2 },                 /* newline at 16, second line in the overlap */
		{ "a.bcdefghij:1|c\n\n\nx.y:2|c\n", 2, 2 },          /* empty lines across the block edge */
		{ "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n", 0, 0 },      /* only newlines */
		{ "p.q:1|c\np.r:1|c\np.s:1|c\np.t:1|c\np.u:1|c\n", 5, 5 }, /* 40 bytes, newlines at 7, 15, 23, 31, 39 */
		{ "p.q:1|c\np.r:1|c\np.s:1|c\np.t:1|c\np.u:1|c", 5, 5 },   /* the same without the trailing newline */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const size_t n = strlen(cases[i].dgram);
		char *buf = malloc(n ? n : 1);
		struct dts_core_stats before, after;

		cr_assert_not_null(buf);
		memcpy(buf, cases[i].dgram, n);
		dts_core_stats_read(c, &before);
		cr_expect_eq(dts_core_ingest(c, buf, n, 1700000000), cases[i].samples, "case %zu", i);
		dts_core_stats_read(c, &after);
		cr_expect_eq(after.lines - before.lines, cases[i].lines, "case %zu: lines", i);
		cr_expect_eq(after.samples - before.samples, cases[i].samples, "case %zu: samples", i);
		free(buf);
	}
}

Test(table, stream_keeps_partial_line)
{
	const char *s = "a.b:1|c\na.b:2|c\na.b:3";
	size_t used = dts_core_ingest_stream(c, s, strlen(s), 1700000000);

	cr_expect_eq(used, strlen("a.b:1|c\na.b:2|c\n"));
	cr_expect_float_eq(find("a", "b", DTS_COUNTER)->agg.sum, 3, 1e-9);
}

Test(table, handover_on_tick_and_deferral)
{
	struct dts_core_stats st;
	struct dts__table *first = c->active;

	c->next_tick_ms = 1000;
	dts_core_ingest(c, "a.b:1|c", 7, 1700000000);
	cr_expect_not(dts_core_tick(c, 999), "tick not elapsed");
	cr_expect(dts_core_tick(c, 1000), "tick elapsed with data: hand over");
	cr_expect_neq(c->active, first);
	/* The pool has 2 tables: with one waiting at the merger, the next hand-over must defer, not block. */
	dts_core_ingest(c, "a.b:1|c", 7, 1700000001);
	cr_expect_not(dts_core_tick(c, 5000));
	cr_expect_not(dts_core_tick(c, 6000));
	dts_core_stats_read(c, &st);
	cr_expect_eq(st.handovers, 1);
	cr_expect_eq(st.handover_deferred, 1, "one deferral episode, counted once");
	/* The merger folds and recycles: the deferred hand-over then goes through. */
	dts_merger_step(m, 1700000001000LL);
	cr_expect(dts_core_tick(c, 7000));
}

Test(table, empty_table_is_not_handed_over)
{
	c->next_tick_ms = 0;
	cr_expect_not(dts_core_tick(c, 100000));
}

Test(table, full_table_drops_and_counts)
{
	char line[64];
	struct dts_core_stats st;
	unsigned ok = 0;

	/* 1024 buckets: the hard limit is 7/8 full; past it new series are dropped (counted), known ones still add. */
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(line, sizeof(line), "p.c%d:1|c", i);
		ok += dts_core_ingest(c, line, (size_t)n, 1700000000);
	}
	dts_core_stats_read(c, &st);
	cr_expect_eq(ok + st.dropped[DTS_DROP_TABLE_FULL], 1000);
	cr_expect_gt(st.dropped[DTS_DROP_TABLE_FULL], 0);
	cr_expect(dts__table_wants_handover(c->active));
	cr_expect_eq(dts_core_ingest(c, "p.c0:1|c", 8, 1700000000), 1, "an existing entry still aggregates");
}

Test(table, identity_hash_distinguishes_split_points)
{
	/* "a.b"+"c" and "a"+"b.c" join to the same bytes; the identity hash must still differ. */
	struct dts_sample s1 = { .process = "a.b", .process_len = 3, .counter = "c", .counter_len = 1, .type = 0 };
	struct dts_sample s2 = { .process = "a", .process_len = 1, .counter = "b.c", .counter_len = 3, .type = 0 };
	struct dts_sample s3 = s1;

	s3.type = DTS_TIMER;
	cr_expect_neq(dts__sample_hash(c, &s1), dts__sample_hash(c, &s2));
	cr_expect_neq(dts__sample_hash(c, &s1), dts__sample_hash(c, &s3), "type is part of the identity");
}

Test(table, contiguous_and_copied_names_hash_alike)
{
	/* The same identity from a statsd line (contiguous "api.q") and from separate buffers hashes the same. */
	const char *line = "api.q";
	struct dts_sample a = { .process = line, .process_len = 3, .counter = line + 4, .counter_len = 1 };
	struct dts_sample b = { .process = "api", .process_len = 3, .counter = "q", .counter_len = 1 };

	cr_expect_eq(dts__sample_hash(c, &a), dts__sample_hash(c, &b));
}
