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

#include "../../engine/src/bigmem.h"
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
		{ 1024, 65536, 65536, 4096, .initial = 2048 }, /* starts above its room */
		{ 1024, 65536, 65536, 4096, .initial = 48 }, /* starts too small */
		{ 1024, 65536, 65536, 4096, .initial = 384 }, /* starts at no power of two */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		cr_expect_null(dts__table_create(&bad[i]), "case %zu", i);
		cr_expect_eq(errno, EINVAL, "case %zu", i);
	}
}

/* A table starts small inside its room and grows, only while empty, to any power of two up to the room, every log
 * and arena taking the same share (never below its minimum). */
Test(table, grows_inside_its_room_only_when_empty)
{
	struct dts__table_cfg cfg = { .capacity = 8192, .keys_bytes = 8192 * 48, .tlog_entries = 8192 * 4,
				      .slog_entries = 8192, .blob_bytes = 8192 * 32, .proc_entries = 8192 / 16,
				      .event_bytes = DTS__EVENT_MIN, .initial = 1024 };
	struct dts__table *t = dts__table_create(&cfg);
	struct dts__entry *e;

	cr_assert_not_null(t);
	cr_expect_eq(t->mask, 1023);
	cr_expect_eq(t->max_used, 512);
	cr_expect_eq(t->keys_cap, 1024 * 48);
	cr_expect_eq(t->tlog_cap, 4096, "at its minimum");
	cr_expect_eq(t->slog_cap, 1024);
	cr_expect_eq(t->blob_cap, 1024 * 32 > DTS__BLOB_MIN ? 1024 * 32 : DTS__BLOB_MIN);
	cr_expect_eq(t->proc_cap, DTS__PROC_MIN);
	cr_expect_eq(t->ev_cap, DTS__EVENT_MIN);

	cr_expect_not(dts__table_grow(t, 3072), "not a power of two");
	cr_expect_not(dts__table_grow(t, 16384), "beyond its room");
	cr_expect_not(dts__table_grow(t, 512), "tables never shrink");
	e = &t->entries[5];
	e->hash = 42;
	t->used[t->n_used++] = 5;
	cr_expect_not(dts__table_grow(t, 2048), "not while it holds entries");
	cr_expect_eq(t->mask, 1023);
	dts__table_reset(t);

	cr_assert(dts__table_grow(t, 8192));
	cr_expect_eq(t->mask, 8191);
	cr_expect_eq(t->max_used, 4096);
	cr_expect_eq(t->keys_cap, 8192 * 48);
	cr_expect_eq(t->tlog_cap, 8192 * 4);
	cr_expect_eq(t->slog_cap, 8192);
	cr_expect_eq(t->blob_cap, 8192 * 32);
	cr_expect_eq(t->proc_cap, 8192 / 16);
	for (uint32_t i = 0; i <= t->mask; i++)
		cr_assert_eq(t->entries[i].hash, 0, "bucket %u not empty after growing", i);

	/* The timer and set logs alone: bigger, the buckets and the other arenas unchanged; never smaller than the
	 * buckets' share, and kept when the buckets grow to less. */
	cr_expect_not(dts__table_grow_logs(t, 8192), "not above the logs' capacity");
	cr_expect_not(dts__table_grow_logs(t, 16384), "beyond its room");
	cr_expect_not(dts__table_grow_logs(t, 6000), "not a power of two");
	dts__table_destroy(t);
	t = dts__table_create(&cfg);
	cr_assert_not_null(t);
	t->n_tlog = 1;
	cr_expect_not(dts__table_grow_logs(t, 4096), "not while its log holds values");
	t->n_tlog = 0;
	cr_assert(dts__table_grow_logs(t, 4096));
	cr_expect_eq(t->mask, 1023);
	cr_expect_eq(t->keys_cap, 1024 * 48);
	cr_expect_eq(t->tlog_cap, 4096 * 4);
	cr_expect_eq(t->slog_cap, 4096);
	cr_assert(dts__table_grow(t, 2048));
	cr_expect_eq(t->mask, 2047);
	cr_expect_eq(t->keys_cap, 2048 * 48);
	cr_expect_eq(t->tlog_cap, 4096 * 4, "the logs keep their larger size");
	cr_assert(dts__table_grow(t, 8192));
	cr_expect_eq(t->tlog_cap, 8192 * 4, "and follow the buckets past it");
	dts__table_destroy(t);
}

/* The regions tables and series live in: zeroed, writable to the last byte, 64-byte aligned whatever the size (a
 * bucket is one cache line), and 2 MiB-aligned from 2 MiB when advised for huge pages. */
Test(table, big_regions_zeroed_and_aligned)
{
	static const size_t sizes[] = { 1, 100, 4096, 65535, 65536, 100000, 1u << 20, 2u << 20, (3u << 20) + 5 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (int huge = 0; huge < 2; huge++) {
			const size_t n = sizes[i];
			uint8_t *p = huge ? dts__big_alloc(n) : dts__page_alloc(n);
			size_t nonzero = 0;

			cr_assert_not_null(p, "%zu bytes", n);
			cr_expect_eq((uintptr_t)p % 64, 0, "%zu bytes (huge %d) at %p", n, huge, (void *)p);
			if (huge && n >= (2u << 20))
				cr_expect_eq((uintptr_t)p % (2u << 20), 0, "%zu bytes at %p", n, (void *)p);
			for (size_t k = 0; k < n; k++)
				nonzero += p[k] != 0;
			cr_expect_eq(nonzero, 0, "%zu bytes (huge %d): %zu not zero", n, huge, nonzero);
			memset(p, 0xa5, n);
			dts__big_free(p, n);
		}
	}
	cr_expect_eq((uintptr_t)c->active->entries % 64, 0);
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

/* Lines must come out the same whatever the datagram's length and wherever the newlines fall - under, at and over
 * the 16-byte blocks the name scan loads, trailing newlines and empty lines. Each case is copied into an exact-size
 * heap buffer so that ASan sees any read past the datagram (the fast path scans towards the datagram's end). */
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

/* Entries of the active table with this identity (tags as stored: canonical). */
static unsigned count_ident(const char *process, const char *counter, const char *tags, uint8_t type)
{
	const struct dts__table *t = c->active;
	unsigned n = 0;

	for (uint32_t i = 0; i < t->n_used; i++) {
		const struct dts__entry *e = &t->entries[t->used[i]];
		const struct dts__ident *id = dts__table_ident(t, e);
		const char *b = id->bytes + id->user_len;

		n += e->type == type && id->process_len == strlen(process) && !memcmp(b, process, id->process_len) &&
		     id->counter_len == strlen(counter) && !memcmp(b + id->process_len, counter, id->counter_len) &&
		     id->tags_len == strlen(tags) && !memcmp(b + id->process_len + id->counter_len, tags, id->tags_len);
	}
	return n;
}

Test(table, statsd_lines_and_partials_hash_alike)
{
	/*
	 * A series fed by a statsd line (its hash computed from the line, fast path or not) and by a partial aggregate
	 * (PUT /agg; native datagrams use the same function) must land in one entry: the table keys on the hash only.
	 * Names of every length class of the identity hash (short, 17..32 bytes, past 32), with and without tags, the
	 * default process, a line the fast path leaves to the general decoder (a name to normalise) and a gauge.
	 */
	static const struct {
		const char *line, *process, *counter, *tags;
		uint8_t type;
	} cases[] = {
		{ "a.b:1|c", "a", "b", "", DTS_COUNTER },
		{ "api.query_count:1|c", "api", "query_count", "", DTS_COUNTER },
		{ "web.frontend.requests.by_status.http_200.total:1|c", "web", "frontend.requests.by_status.http_200.total",
		  "", DTS_COUNTER },
		{ "api.q:1|c|#b:2,a:1", "api", "q", "a:1,b:2", DTS_COUNTER },
		{ "api.latency_p.x:1|ms|#env:prod", "api", "latency_p.x", "env:prod", DTS_TIMER },
		{ "queries:1|c", "default", "queries", "", DTS_COUNTER },
		{ "queries_with_tags:1|c|#z", "default", "queries_with_tags", "z", DTS_COUNTER },
		{ "api.spaced name:1|c", "api", "spaced_name", "", DTS_COUNTER },
		{ "db.pool.size_now:7|g", "db", "pool.size_now", "", DTS_GAUGE },
	};
	const int64_t now = 1700000000;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char user[DTS_MAX_USER + 1];
		struct dts_partial_in p = {
			.user = user, .process = cases[i].process, .counter = cases[i].counter, .tags = cases[i].tags,
			.type = cases[i].type, .slot_s = now,
			.agg = { .sum = 2, .count = 1, .min = 2, .max = 2, .fst = 2, .lst = 2 },
		};

		memcpy(user, c->user, c->user_len);
		user[c->user_len] = '\0';
		cr_assert_eq(dts_core_ingest(c, cases[i].line, strlen(cases[i].line), now), 1, "%s", cases[i].line);
		cr_assert_eq(dts_core_ingest_partial(c, &p, now), 0, "%s", cases[i].line);
		cr_expect_eq(count_ident(cases[i].process, cases[i].counter, cases[i].tags, cases[i].type), 1,
			     "%s: one entry for the line and the partial", cases[i].line);
	}
	/* Both tag orders and the partial: still one entry; without tags: another. */
	cr_assert_eq(dts_core_ingest(c, "api.q:1|c|#a:1,b:2\napi.q:1|c", 28, now), 2);
	cr_expect_eq(count_ident("api", "q", "a:1,b:2", DTS_COUNTER), 1);
	cr_expect_eq(count_ident("api", "q", "", DTS_COUNTER), 1);
}

Test(table, identity_hash_sees_every_byte)
{
	/* Names of 1..80 bytes: changing any one byte of the process or the counter changes the hash. */
	char name[81];

	for (size_t n = 1; n <= 80; n++) {
		memset(name, 'a', n);
		struct dts_sample s = { .process = "p", .process_len = 1, .counter = name, .counter_len = (uint16_t)n,
					.tags = "" };
		uint64_t h0 = dts__sample_hash(c, &s);

		for (size_t i = 0; i < n; i++) {
			name[i] = 'b';
			cr_expect_neq(dts__sample_hash(c, &s), h0, "counter length %zu, byte %zu ignored", n, i);
			name[i] = 'a';
		}
		s.process = "q";
		cr_expect_neq(dts__sample_hash(c, &s), h0, "process ignored at counter length %zu", n);
	}
}

Test(table, identity_hash_type_does_not_cancel_a_byte)
{
	/* A type XORed into a word of the name could cancel a byte that differs by as much: a counter "x.aaaaaaac" and
	 * a timer "x.aaaaaaab" once had one hash, which put a set member into a timer's entry. Every type pair, every
	 * byte of names of 1..40 bytes, every byte difference equal to the types' difference. */
	char name[41], other[41];

	for (size_t n = 1; n <= 40; n++) {
		memset(name, 'a', n);
		for (unsigned t1 = 0; t1 < DTS_NTYPES; t1++)
			for (unsigned t2 = 0; t2 < DTS_NTYPES; t2++) {
				if (t1 == t2)
					continue;
				for (size_t i = 0; i < n; i++) {
					struct dts_sample s1 = { .process = "x", .process_len = 1, .counter = name,
								 .counter_len = (uint16_t)n, .tags = "", .type = (uint8_t)t1 };
					struct dts_sample s2 = s1;

					memcpy(other, name, n);
					other[i] = (char)(other[i] ^ (t1 ^ t2));
					s2.counter = other;
					s2.type = (uint8_t)t2;
					cr_assert_neq(dts__sample_hash(c, &s1), dts__sample_hash(c, &s2),
						      "length %zu, byte %zu, types %u and %u", n, i, t1, t2);
				}
			}
	}
}

/* One entry of a table, for comparing two tables: identity hash, slot and the scalar aggregate. */
static const struct dts__entry *entry_of(const struct dts__table *t, uint64_t hash, int16_t rel, uint8_t type)
{
	for (uint32_t i = 0; i < t->n_used; i++) {
		const struct dts__entry *e = &t->entries[t->used[i]];

		if (e->hash == hash && e->slot_rel == rel && e->type == type)
			return e;
	}
	return NULL;
}

Test(table, datagrams_decode_like_their_lines_one_by_one)
{
	/*
	 * The RX core runs the statsd fast path from each line's start to the end of the whole datagram and splits off
	 * only the lines it does not take. Differential check: random datagrams of lines of every kind - fast ones
	 * (rates, sets, names past 32 bytes, values at the very end), ones with sections, CRLF ones, rejected ones, too
	 * long ones, DaTtSs-looking ones, empty lines - ingested whole by one core, and line by line (each line alone in
	 * an exact-size buffer) by another, must count the same lines, rejects and samples and fill the same entries.
	 */
	static const char *const kinds[] = {
		"api.q:1|c", "api.q_ms:12.5|ms", "api.q_ms:12.5|ms|@0.5", "api.g:-3|g", "api.g:+3|g", "api.g:17.25|g",
		"web.frontend.requests.by_status.http_200.total:4|c", "users.active:alice|s", "users.active:42|s",
		"nodot:2|c", "api.t:1|c|#b:2,a:1", "api.t:1|c|@0.25|#a:1", "api.t:3|h|T1700000000", "api.crlf:1|c\r",
		"api.crlf:1|c|@0.5\r", "api.multi:1:2:3|ms", "api.bad:1|zz", "api.bad:abc|c", "api.bad:1|c|@2",
		"api.bad:1|c|#", "api.bad:1|c|x", "api.:1|c", ":1|c", "broken", "api.sp ace:1|c", "api.q:1e3|c",
		"api.q:1|c|", "api.q:1|", "api.q:1", "api.q:.5|c", "api.r:1|c|@0.5e0", "_e{1,1}:a|b", "a.b:1|ms|c:ctr",
		"x|s", "2|c", "ms", "@0.5", "api.s:alice", "api.q:7|",
	};
	struct dts_merger_cfg cfg;
	struct dts_merger *m2;
	struct dts_core *c2;
	uint64_t rng = 12345;
	static char big[DTS_MAX_LINE + 40];

	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 1;
	cfg.table_capacity = 1024;
	cfg.tables_per_core = 2;
	cfg.ident_key = c->ident_key; /* the same hashes, to find each entry of c in c2 */
	m2 = dts_merger_create(&cfg);
	cr_assert_not_null(m2);
	c2 = dts_merger_core(m2, 0);
	memset(big, 'x', sizeof(big));
	memcpy(big, "api.long:", 9);
	memcpy(big + sizeof(big) - 5, ":1|c", 4);
	big[sizeof(big) - 1] = '\0';

	for (int round = 0; round < 300; round++) {
		char dgram[3 * DTS_MAX_LINE];
		size_t n = 0, lines = 1 + round % 40;
		struct dts_core_stats a, b;
		unsigned got, want = 0;

		for (size_t i = 0; i < lines; i++) {
			rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
			unsigned r = (unsigned)(rng >> 33);
			const char *line = r % 97 == 0 ? big : kinds[r % (sizeof(kinds) / sizeof(kinds[0]))];
			size_t l = strlen(line);

			if (n + l + 2 > sizeof(dgram))
				break;
			memcpy(dgram + n, line, l);
			n += l;
			if ((r >> 8) % 9 == 0)
				dgram[n++] = '\n'; /* an empty line */
			if (i + 1 < lines || (r >> 12) % 2)
				dgram[n++] = '\n'; /* the last line with and without its newline */
		}
		char *buf = malloc(n);
		cr_assert_not_null(buf);
		memcpy(buf, dgram, n);
		got = dts_core_ingest(c, buf, n, 1700000000);
		free(buf);
		for (size_t s = 0; s < n;) {
			const char *nl = memchr(dgram + s, '\n', n - s);
			size_t e = nl ? (size_t)(nl - dgram) : n;

			if (e > s) {
				char *one = malloc(e - s);

				cr_assert_not_null(one);
				memcpy(one, dgram + s, e - s);
				want += dts_core_ingest(c2, one, e - s, 1700000000);
				free(one);
			}
			s = e + 1;
		}
		cr_assert_eq(got, want, "round %d: samples", round);
		dts_core_stats_read(c, &a);
		dts_core_stats_read(c2, &b);
		cr_assert_eq(a.lines, b.lines, "round %d: lines", round);
		cr_assert_eq(a.statsd_lines, b.statsd_lines, "round %d: statsd lines", round);
		cr_assert_eq(a.samples, b.samples, "round %d", round);
		for (int k = 0; k < DTS_REJ_COUNT; k++)
			cr_assert_eq(a.rejected[k], b.rejected[k], "round %d: %s", round, dts_reject_name(k));
		for (int k = 0; k < DTS_DROP_COUNT; k++)
			cr_assert_eq(a.dropped[k], b.dropped[k], "round %d: %s", round, dts_drop_name(k));
	}
	cr_assert_eq(c->active->n_used, c2->active->n_used);
	for (uint32_t i = 0; i < c->active->n_used; i++) {
		const struct dts__entry *x = &c->active->entries[c->active->used[i]];
		const struct dts__entry *y = entry_of(c2->active, x->hash, x->slot_rel, x->type);

		cr_assert_not_null(y);
		cr_expect_eq(x->flags, y->flags);
		cr_expect(memcmp(&x->agg, &y->agg, sizeof(x->agg)) == 0, "entry %u: aggregates differ", i);
	}
	cr_expect_eq(c->active->n_tlog, c2->active->n_tlog);
	cr_expect_eq(c->active->n_slog, c2->active->n_slog);
	dts_merger_destroy(m2, 1700000000000LL);
}

/* The identity hash is keyed per merger (dts_merger_cfg.ident_key): a random key by default, so senders cannot aim
 * names at a bucket or at each other; one given key, the same hashes. */
Test(table, identity_hash_is_keyed_per_merger)
{
	struct dts_sample s = { .process = "api", .process_len = 3, .counter = "hits", .counter_len = 4 };
	struct dts_merger *other[4];
	uint64_t h[4];

	for (unsigned i = 0; i < 4; i++) {
		struct dts_merger_cfg cfg;

		dts_merger_cfg_defaults(&cfg);
		cfg.table_capacity = 1024;
		cfg.ident_key = i < 2 ? 0 : 0x5eed5eed5eed5eedULL; /* two drawn keys, then one given twice */
		other[i] = dts_merger_create(&cfg);
		cr_assert_not_null(other[i]);
		h[i] = dts__sample_hash(dts_merger_core(other[i], 0), &s);
	}
	cr_expect_neq(h[0], h[1], "each merger draws its own key");
	cr_expect_neq(h[0], dts__sample_hash(c, &s));
	cr_expect_eq(h[2], h[3], "one key, one hash");
	for (unsigned i = 0; i < 4; i++)
		dts_merger_destroy(other[i], 1700000000000LL);
}

/* An entry whose hash and slot match but whose type does not is another series: a value never goes to an entry of
 * another type (a timer value logged against a counter's entry would be merged into something that is no sketch).
 * Two identities cannot be made to collide on purpose (the key is secret), so the test retypes an entry instead. */
Test(table, an_entry_of_another_type_is_another_entry)
{
	const char *line = "api.lat:5|ms";
	struct dts__entry *e;
	uint32_t idx;

	cr_assert_eq(dts_core_ingest(c, line, strlen(line), 1700000000), 1);
	e = (struct dts__entry *)find("api", "lat", DTS_TIMER);
	cr_assert_not_null(e);
	idx = (uint32_t)(e - c->active->entries);
	e->type = DTS_COUNTER; /* as if a counter with this timer's hash had come first */
	cr_assert_eq(dts_core_ingest(c, line, strlen(line), 1700000000), 1);
	cr_expect_eq(c->active->n_used, 2, "the timer value made an entry of its own");
	cr_assert_eq(c->active->n_tlog, 2);
	cr_expect_eq(c->active->tlog[0].entry, idx);
	cr_expect_neq(c->active->tlog[1].entry, idx, "and was logged against it");
	cr_expect_float_eq(e->agg.count, 1, 1e-9, "the retyped entry took nothing more");
	e->type = DTS_TIMER;
}

/* A core whose active table has `tlog_room` timer-log and `slog_room` set-log records left. */
static struct dts_merger *logs_nearly_full(uint32_t tlog_room, uint32_t slog_room, struct dts_core **core)
{
	struct dts_merger_cfg cfg;
	struct dts_merger *mm;
	struct dts__table *t;

	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 1;
	cfg.table_capacity = 1024;
	cfg.tables_per_core = 2;
	cfg.ident_key = c->ident_key; /* the suite's buckets */
	mm = dts_merger_create(&cfg);
	cr_assert_not_null(mm);
	*core = dts_merger_core(mm, 0);
	t = (*core)->active;
	if (tlog_room != UINT32_MAX)
		t->n_tlog = t->tlog_cap - tlog_room;
	if (slog_room != UINT32_MAX)
		t->n_slog = t->slog_cap - slog_room;
	return mm;
}

/*
 * A batch is applied one sample at a time, testing each log's room, only when a log has less room than the batch
 * (flush_batch); otherwise in one pass with the timers' log records written after it. Both must give the same
 * entries and log records, and a full log drops (and counts) exactly the values it cannot hold, which then count
 * nowhere: an entry's scalar aggregate never has a value its sketch or set lacks.
 */
Test(table, a_nearly_full_log_applies_like_a_roomy_one)
{
	char dg[4096];
	size_t len = 0;
	struct dts_core *tight, *none;
	struct dts_merger *mt, *mn;
	struct dts_core_stats st;
	const struct dts__table *a = c->active, *b;

	/* 7 timer values and 10 set members among 47 lines, in a mixed order (several batches of 16) */
	for (int i = 0; i < 10; i++)
		len += (size_t)snprintf(dg + len, sizeof(dg) - len, "p.c%d:%d|c|@0.5\np.s:u%d|s\np.g:%s%d|g\n%s", i % 3,
					i, i, i % 4 ? "+" : "", i, i < 7 ? "" : "p.c9:1|c\n");
	for (int i = 0; i < 7; i++)
		len += (size_t)snprintf(dg + len, sizeof(dg) - len, "p.t%d:%d.5|ms%s\np.c%d:1|c\n", i % 2, i,
					i % 3 ? "" : "|@0.1", i);
	cr_assert_lt(len, sizeof(dg));

	cr_assert_eq(dts_core_ingest(c, dg, len, 1700000000), 47, "roomy logs: every value");
	mt = logs_nearly_full(7, 10, &tight);
	cr_assert_eq(dts_core_ingest(tight, dg, len, 1700000000), 47, "logs with exactly the room needed");
	b = tight->active;
	cr_assert_eq(b->n_used, a->n_used);
	for (uint32_t i = 0; i < a->n_used; i++) {
		const struct dts__entry *x = &a->entries[a->used[i]];
		const struct dts__entry *y = entry_of(b, x->hash, x->slot_rel, x->type);

		cr_assert_not_null(y);
		cr_expect_eq(x->flags, y->flags);
		cr_expect(memcmp(&x->agg, &y->agg, sizeof(x->agg)) == 0, "entry %u: aggregates differ", i);
	}
	cr_assert_eq(a->n_tlog, 7);
	cr_assert_eq(a->n_slog, 10);
	cr_expect(memcmp(a->tlog, b->tlog + b->tlog_cap - 7, 7 * sizeof(*a->tlog)) == 0, "the same timer records");
	cr_expect(memcmp(a->slog, b->slog + b->slog_cap - 10, 10 * sizeof(*a->slog)) == 0, "the same set records");
	dts__table_reset(tight->active); /* the logs' skipped records were never written: nothing for destroy to fold */
	dts_merger_destroy(mt, 1700000000000LL);

	/* room for 3 timer values and 4 members: 4 + 6 values dropped and counted, and nowhere in the aggregates */
	mn = logs_nearly_full(3, 4, &none);
	cr_assert_eq(dts_core_ingest(none, dg, len, 1700000000), 37);
	dts_core_stats_read(none, &st);
	cr_expect_eq(st.dropped[DTS_DROP_TABLE_FULL], 10);
	b = none->active;
	double timer_values = 0, set_ops = 0, logged = 0;

	for (uint32_t i = b->tlog_cap - 3; i < b->tlog_cap; i++)
		logged += b->tlog[i].weight;
	for (uint32_t i = 0; i < b->n_used; i++) {
		const struct dts__entry *y = &b->entries[b->used[i]];

		timer_values += y->type == DTS_TIMER ? y->agg.count : 0;
		set_ops += y->type == DTS_SET ? y->agg.count : 0;
	}
	cr_expect_float_eq(timer_values, logged, 1e-9, "the timers' counts are the weights of the values logged");
	cr_expect_float_eq(logged, 10 + 1 + 1, 1e-9, "the first three: one sampled at 0.1, two not");
	cr_expect_float_eq(set_ops, 4, 1e-9);
	dts__table_reset(none->active);
	dts_merger_destroy(mn, 1700000000000LL);
}
