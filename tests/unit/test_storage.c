/*
 * test_storage.c - the RocksDB store (storage/): key and value encodings, the write path (minute + hour
 * read-merge-write), the merge rule for late minutes, retention with an injected clock, reads and listings, the
 * sink's queue and thread, checkpoints (chunks of many series, newest copy wins, format-1 rows of an older store) and
 * restore, and opening errors.
 *
 * Store tests run on a fresh mkdtemp directory under /tmp that the fixture removes. Closed minutes are built by hand
 * with the allocation layout the engine uses (one block per record holding user, process, counter and tags), so that
 * dts_closed_minute_release can free the ones handed to the sink.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "dts/engine.h"
#include "dts/hash.h"
#include "dts/storage.h"
#include "storage_internal.h" /* the WriteBatch builder is checked against RocksDB's own */

#define T0 1700000040LL /* 2023-11-14T22:14:00Z, a minute boundary */
#define M0 (T0 / 60)

/* ---- helpers --------------------------------------------------------------------------------------------------- */

static char tmpdir[64];
static char dbdir[128];
static _Atomic int64_t fake_now = T0;

static int64_t fake_clock(void *ctx)
{
	(void)ctx;
	return atomic_load(&fake_now);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static void make_tmp(void)
{
	strcpy(tmpdir, "/tmp/dts-storage-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(dbdir, sizeof(dbdir), "%s/db", tmpdir);
	atomic_store(&fake_now, T0);
}

static void remove_tmp(void)
{
	if (tmpdir[0])
		nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

static struct dts_storage *open_store(enum dts_storage_mode mode)
{
	struct dts_storage_cfg cfg;
	char err[512] = "";
	char sec[160];
	struct dts_storage *st;

	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dbdir;
	cfg.mode = mode;
	cfg.clock = fake_clock;
	cfg.block_cache_bytes = 8 << 20;
	cfg.write_buffer_bytes = 4 << 20;
	snprintf(sec, sizeof(sec), "%s/secondary", tmpdir);
	cfg.secondary_dir = sec;
	st = dts_storage_open(&cfg, err, sizeof(err));
	cr_assert_not_null(st, "open %s: %s", dbdir, err);
	return st;
}

/* A record laid out as the engine lays it out (dts_closed_minute_release frees r->user and the sketch and set). */
static void rec_init(struct dts_minute_rec *r, const char *user, const char *process, const char *counter,
		     const char *tags, uint8_t type)
{
	size_t ul = strlen(user) + 1, pl = strlen(process) + 1, cl = strlen(counter) + 1, tl = strlen(tags) + 1;
	char *id = malloc(ul + pl + cl + tl);

	cr_assert_not_null(id);
	memcpy(id, user, ul);
	memcpy(id + ul, process, pl);
	memcpy(id + ul + pl, counter, cl);
	memcpy(id + ul + pl + cl, tags, tl);
	memset(r, 0, sizeof(*r));
	r->user = id;
	r->process = id + ul;
	r->counter = id + ul + pl;
	r->tags = id + ul + pl + cl;
	r->type = type;
	dts_agg_init(&r->agg);
	dts_sketch_init(&r->sketch);
	dts_set_init(&r->set);
}

static void rec_add(struct dts_minute_rec *r, double v)
{
	if (r->type == DTS_SET) {
		char m[32];
		int n = snprintf(m, sizeof(m), "member-%g", v);

		cr_assert_eq(dts_set_add(&r->set, dts_hash64(m, (size_t)n, DTS_HASH_SEED)), 0);
		dts_agg_add(&r->agg, 1, 1);
		return;
	}
	dts_agg_add(&r->agg, v, 1);
	if (r->type == DTS_TIMER)
		cr_assert_eq(dts_sketch_add(&r->sketch, v, 1), 0);
}

static struct dts_closed_minute *cm_new(int64_t minute, size_t n)
{
	struct dts_closed_minute *cm = calloc(1, sizeof(*cm));

	cr_assert_not_null(cm);
	cm->minute = minute;
	cm->recs = calloc(n ? n : 1, sizeof(*cm->recs));
	cr_assert_not_null(cm->recs);
	return cm;
}

/* One counter record "u/api/hits/c" with the given values. */
static struct dts_closed_minute *cm_counter(int64_t minute, const double *vals, size_t nv)
{
	struct dts_closed_minute *cm = cm_new(minute, 1);

	rec_init(&cm->recs[0], "u", "api", "hits", "", DTS_COUNTER);
	for (size_t i = 0; i < nv; i++)
		rec_add(&cm->recs[0], vals[i]);
	cm->n = 1;
	return cm;
}

/* Write a late part of minute holding one count of the counter u/api/<counter>. */
static void write_late_one(struct dts_storage *st, int64_t minute, const char *counter)
{
	struct dts_closed_minute *cm = cm_new(minute, 1);

	rec_init(&cm->recs[0], "u", "api", counter, "", DTS_COUNTER);
	rec_add(&cm->recs[0], 1);
	cm->n = 1;
	cm->late = true;
	cr_assert_eq(dts_storage_write_minute(st, cm), 0);
	dts_closed_minute_release(cm);
}

/* Points collected by dts_storage_read. */
struct point {
	int64_t t;
	bool ok;
	uint8_t type, first, last;
	struct dts_agg agg;
	double bot10, top10, distinct, sketch_count;
};

struct points {
	struct point p[64];
	int n;
};

static int collect(void *ctx, int64_t t, const struct dts_stored *v)
{
	struct points *ps = ctx;
	struct point *p;

	cr_assert_lt(ps->n, 64);
	p = &ps->p[ps->n++];
	memset(p, 0, sizeof(*p));
	p->t = t;
	p->ok = v != NULL;
	if (!v)
		return 0;
	p->type = v->type;
	p->first = v->first;
	p->last = v->last;
	p->agg = v->agg;
	p->bot10 = v->type == DTS_TIMER ? dts_sketch_quantile(&v->sketch, 0.1) : NAN;
	p->top10 = v->type == DTS_TIMER ? dts_sketch_quantile(&v->sketch, 0.9) : NAN;
	p->sketch_count = v->sketch.count;
	p->distinct = v->type == DTS_SET ? dts_set_cardinality(&v->set) : NAN;
	return 0;
}

static struct points read_all(struct dts_storage *st, enum dts_res res, const char *series)
{
	struct points ps = { .n = 0 };
	long n = dts_storage_read(st, res, series, 0, DTS_STORAGE_TIME_MAX + 1, collect, &ps);

	cr_assert_eq(n, ps.n, "read %s: %ld", series, n);
	return ps;
}

/* ---- keys ------------------------------------------------------------------------------------------------------ */

struct key_case {
	struct dts_series_id id;
	int64_t t;
	const char *minute_key;
	const char *hour_key;
};

static const struct key_case key_cases[] = {
	{ { "default", "api", "query", "", DTS_TIMER },
	  T0,
	  "default/api/query/ms|20231114T2214",
	  "default/api/query/ms|20231114T22" },
	{ { "42", "web", "hits", NULL, DTS_COUNTER },
	  T0 + 59,
	  "42/web/hits/c|20231114T2214",
	  "42/web/hits/c|20231114T22" },
	{ { "ops@example.com", "db-1.prod", "conn_pool.size", "", DTS_GAUGE },
	  0,
	  "ops@example.com/db-1.prod/conn_pool.size/g|19700101T0000",
	  "ops@example.com/db-1.prod/conn_pool.size/g|19700101T00" },
	{ { "a+b_c", "p", "users", "env:prod,region:eu-west-1", DTS_SET },
	  951782400 + 3599,
	  "a+b_c/p/users/s/env:prod,region:eu-west-1|20000229T0059",
	  "a+b_c/p/users/s/env:prod,region:eu-west-1|20000229T00" },
	{ { "u", "p", "c", "k:v/with/slash", DTS_TIMER },
	  DTS_STORAGE_TIME_MAX,
	  "u/p/c/ms/k:v/with/slash|99991231T2359",
	  "u/p/c/ms/k:v/with/slash|99991231T23" },
};

Test(keys, encode_decode_round_trip)
{
	for (size_t i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
		const struct key_case *c = &key_cases[i];
		char k[DTS_STORAGE_KEY_MAX + 1];
		struct dts_key_view kv;

		for (int res = DTS_RES_MINUTE; res <= DTS_RES_HOUR; res++) {
			const char *want = res == DTS_RES_HOUR ? c->hour_key : c->minute_key;
			int n = dts_storage_key_encode(k, sizeof(k), &c->id, res, c->t);

			cr_assert_eq(n, (int)strlen(want), "case %zu res %d: %d", i, res, n);
			cr_expect_str_eq(k, want, "case %zu", i);
			cr_assert_eq(dts_storage_key_decode(k, (size_t)n, res, &kv), 0, "case %zu: %s", i, k);
			cr_expect_eq(kv.t,
				     c->t / (res == DTS_RES_HOUR ? 3600 : 60) * (res == DTS_RES_HOUR ? 3600 : 60));
			cr_expect_eq(kv.type, c->id.type);
			cr_expect(kv.user_len == strlen(c->id.user) && !memcmp(kv.user, c->id.user, kv.user_len));
			cr_expect(kv.process_len == strlen(c->id.process) &&
				  !memcmp(kv.process, c->id.process, kv.process_len));
			cr_expect(kv.counter_len == strlen(c->id.counter) &&
				  !memcmp(kv.counter, c->id.counter, kv.counter_len));
			const char *tags = c->id.tags ? c->id.tags : "";

			cr_expect(kv.tags_len == strlen(tags) && !memcmp(kv.tags, tags, kv.tags_len), "case %zu", i);
			cr_expect_eq(kv.series_len, strlen(want) - 1 - (res == DTS_RES_HOUR ? 11 : 13));
		}
	}
}

struct bad_id_case {
	struct dts_series_id id;
	const char *why;
};

static const struct bad_id_case bad_ids[] = {
	{ { "", "p", "c", "", DTS_COUNTER }, "empty user" },
	{ { "u", "", "c", "", DTS_COUNTER }, "empty process" },
	{ { "u", "p", "", "", DTS_COUNTER }, "empty counter" },
	{ { NULL, "p", "c", "", DTS_COUNTER }, "NULL user" },
	{ { "u/v", "p", "c", "", DTS_COUNTER }, "'/' in user" },
	{ { "u", "p|q", "c", "", DTS_COUNTER }, "'|' in process" },
	{ { "u", "p", "c d", "", DTS_COUNTER }, "space in counter" },
	{ { "u", "p", "c\n", "", DTS_COUNTER }, "control byte" },
	{ { "u", "p", "caf\xc3\xa9", "", DTS_COUNTER }, "non-ASCII" },
	{ { "u", "p", "c", "a|b", DTS_COUNTER }, "'|' in tags" },
	{ { "u", "p", "c", "", 7 }, "unknown type" },
};

Test(keys, rejects_what_keys_cannot_carry)
{
	char k[DTS_STORAGE_KEY_MAX + 1];

	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++)
		cr_expect_eq(dts_storage_key_encode(k, sizeof(k), &bad_ids[i].id, DTS_RES_MINUTE, T0), -EINVAL, "%s",
			     bad_ids[i].why);
	const struct dts_series_id ok = { "u", "p", "c", "", DTS_COUNTER };

	cr_expect_eq(dts_storage_key_encode(k, 10, &ok, DTS_RES_MINUTE, T0), -ENOSPC);
	cr_expect_eq(dts_storage_key_encode(k, sizeof(k), &ok, DTS_RES_MINUTE, -1), -EINVAL);
	cr_expect_eq(dts_storage_key_encode(k, sizeof(k), &ok, DTS_RES_MINUTE, DTS_STORAGE_TIME_MAX + 1), -EINVAL);
}

static const char *const bad_keys[] = {
	"u/p/c/c|2023111T22140", /* time not digits where digits belong */
	"u/p/c/c|20231114X2214", /* no T */
	"u/p/c/c|20230229T0000", /* not a leap year */
	"u/p/c/c|20231301T0000", /* month 13 */
	"u/p/c/c|20231114T2460", /* minute 60 */
	"u/p/c/c|19691231T2359", /* before 1970 */
	"u/p/c/c20231114T2214",	 /* no separator */
	"u/p/c/x|20231114T2214", /* unknown type */
	"u/p/c|20231114T2214",	 /* no type */
	"u//c/c|20231114T2214",	 /* empty process */
	"u/p/c/c/|20231114T2214", /* empty tags */
	"|20231114T2214",
	"",
};

Test(keys, decode_rejects_malformed_keys)
{
	struct dts_key_view kv;

	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++)
		cr_expect_eq(dts_storage_key_decode(bad_keys[i], strlen(bad_keys[i]), DTS_RES_MINUTE, &kv), -EINVAL,
			     "%s", bad_keys[i]);
	cr_expect_eq(dts_storage_key_decode("u/p/c/c|20231114T22", 19, DTS_RES_MINUTE, &kv), -EINVAL);
	cr_expect_eq(dts_storage_key_decode("u/p/c/c|20231114T22", 19, DTS_RES_HOUR, &kv), 0);
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b); /* bytewise, like RocksDB's comparator */
}

/*
 * Series chosen to tempt prefix bugs: one is a prefix of another as text ("c" / "c.x" / "cc", with and without
 * tags, tags that are prefixes of other tags, a user that is a prefix of another). Sorted bytewise, every series'
 * keys must be contiguous and in time order, and a scan from "SERIES|" to "SERIES}" must cover exactly them.
 */
Test(keys, series_are_contiguous_and_in_time_order)
{
	static const struct dts_series_id ids[] = {
		{ "a", "p", "c", "", DTS_COUNTER },	    { "a", "p", "c", "x:1", DTS_COUNTER },
		{ "a", "p", "c", "x:10", DTS_COUNTER },	    { "a", "p", "c", "x:1,y:2", DTS_COUNTER },
		{ "a", "p", "c.x", "", DTS_COUNTER },	    { "a", "p", "cc", "", DTS_COUNTER },
		{ "a", "p", "c", "", DTS_TIMER },	    { "a", "p", "c", "", DTS_GAUGE },
		{ "a", "p", "c", "", DTS_SET },		    { "a", "p-", "c", "", DTS_COUNTER },
		{ "a.b", "p", "c", "", DTS_COUNTER },	    { "a", "p.q", "c", "", DTS_COUNTER },
		{ "ab", "p", "c", "", DTS_COUNTER },	    { "a-", "p", "c", "", DTS_COUNTER },
		{ "a", "p", "c-", "", DTS_COUNTER },	    { "a", "p", "c_", "", DTS_COUNTER },
	};
	static const int64_t times[] = { T0, T0 - 60, T0 + 86400 * 366, 0, T0 + 60 * 9, T0 + 60 * 10, 951782400,
					 DTS_STORAGE_TIME_MAX, 1e9, T0 + 3600 };
	enum { NI = sizeof(ids) / sizeof(ids[0]), NT = sizeof(times) / sizeof(times[0]) };
	static char store[NI * NT][DTS_STORAGE_KEY_MAX + 1];
	const char *keys[NI * NT];
	struct dts_key_view kv;

	for (int r = DTS_RES_MINUTE; r <= DTS_RES_HOUR; r++) {
		for (size_t i = 0; i < NI; i++)
			for (size_t j = 0; j < NT; j++) {
				cr_assert_gt(dts_storage_key_encode(store[i * NT + j], sizeof(store[0]), &ids[i], r,
								    times[j]),
					     0);
				keys[i * NT + j] = store[i * NT + j];
			}
		qsort(keys, NI * NT, sizeof(keys[0]), cmp_keys);
		for (size_t i = 0; i < NI; i++) {
			char series[DTS_STORAGE_SERIES_MAX + 2], hi[DTS_STORAGE_SERIES_MAX + 2];
			int sl = dts_storage_series_encode(series, sizeof(series), &ids[i]);
			size_t first = SIZE_MAX, count = 0;
			int64_t prev = -1;

			cr_assert_gt(sl, 0);
			memcpy(hi, series, (size_t)sl);
			series[sl] = '|';
			series[sl + 1] = '\0';
			hi[sl] = '}';
			hi[sl + 1] = '\0';
			for (size_t k = 0; k < NI * NT; k++) {
				const bool in_range = strcmp(keys[k], series) >= 0 && strcmp(keys[k], hi) < 0;
				const bool mine = strncmp(keys[k], series, (size_t)sl + 1) == 0;

				cr_assert_eq(in_range, mine, "range of %s holds %s", series, keys[k]);
				if (!mine)
					continue;
				if (first == SIZE_MAX)
					first = k;
				cr_assert_eq(k, first + count, "%s is not contiguous (at %s)", series, keys[k]);
				count++;
				cr_assert_eq(dts_storage_key_decode(keys[k], strlen(keys[k]), r, &kv), 0);
				/* some of the times share an hour: equal hour keys are fine, going back is not */
				if (r == DTS_RES_MINUTE)
					cr_assert_gt(kv.t, prev, "time order in %s", series);
				else
					cr_assert_geq(kv.t, prev, "time order in %s", series);
				prev = kv.t;
			}
			cr_assert_eq(count, NT);
		}
	}
}

struct time_case {
	int64_t t;
	const char *minute, *hour;
};

static const struct time_case time_cases[] = {
	{ 0, "19700101T0000", "19700101T00" },
	{ 59, "19700101T0000", "19700101T00" },
	{ 951782400, "20000229T0000", "20000229T00" }, /* a leap day of a century leap year */
	{ 951868799, "20000229T2359", "20000229T23" },
	{ T0, "20231114T2214", "20231114T22" },
	{ 4107542400, "21000301T0000", "21000301T00" }, /* 2100 is not a leap year */
	{ DTS_STORAGE_TIME_MAX, "99991231T2359", "99991231T23" },
};

Test(keys, time_table)
{
	char buf[16];
	int64_t t;

	for (size_t i = 0; i < sizeof(time_cases) / sizeof(time_cases[0]); i++) {
		const struct time_case *c = &time_cases[i];

		cr_assert_eq(dts_storage_time_encode(buf, sizeof(buf), DTS_RES_MINUTE, c->t), 13);
		cr_expect_str_eq(buf, c->minute);
		cr_assert_eq(dts_storage_time_decode(buf, 13, DTS_RES_MINUTE, &t), 0);
		cr_expect_eq(t, c->t / 60 * 60);
		cr_assert_eq(dts_storage_time_encode(buf, sizeof(buf), DTS_RES_HOUR, c->t), 11);
		cr_expect_str_eq(buf, c->hour);
		cr_assert_eq(dts_storage_time_decode(buf, 11, DTS_RES_HOUR, &t), 0);
		cr_expect_eq(t, c->t / 3600 * 3600);
	}
	/* every minute of a leap year round-trips (527040 minutes) */
	for (int64_t m = 1704067200 / 60; m < 1735689600 / 60; m++) {
		cr_assert_eq(dts_storage_time_encode(buf, sizeof(buf), DTS_RES_MINUTE, m * 60), 13);
		cr_assert_eq(dts_storage_time_decode(buf, 13, DTS_RES_MINUTE, &t), 0);
		cr_assert_eq(t, m * 60, "%s", buf);
	}
	cr_expect_eq(dts_storage_time_decode("21000229T0000", 13, DTS_RES_MINUTE, &t), -EINVAL);
	cr_expect_eq(dts_storage_time_encode(buf, 13, DTS_RES_MINUTE, T0), -ENOSPC);
}

/* ---- values ---------------------------------------------------------------------------------------------------- */

static void fill_value(struct dts_stored *v, uint8_t type, int nvals)
{
	dts_stored_init(v);
	v->type = type;
	for (int i = 1; i <= nvals; i++) {
		double x = type == DTS_GAUGE ? -i * 0.5 : i * 1.7;

		dts_agg_add(&v->agg, x, type == DTS_COUNTER ? 0.5 : 1); /* sample rate 0.5 for counters */
		if (type == DTS_TIMER)
			cr_assert_eq(dts_sketch_add(&v->sketch, x, 1), 0);
		if (type == DTS_SET)
			cr_assert_eq(dts_set_add(&v->set, dts_hash64(&i, sizeof(i), 1)), 0);
	}
}

struct value_case {
	uint8_t type;
	int nvals;
	uint8_t first, last;
};

static const struct value_case value_cases[] = {
	{ DTS_COUNTER, 3, 0, 0 }, { DTS_COUNTER, 0, 0, 0 }, { DTS_GAUGE, 5, 3, 59 }, { DTS_TIMER, 0, 0, 0 },
	{ DTS_TIMER, 1, 0, 0 },	  { DTS_TIMER, 1000, 7, 9 }, { DTS_SET, 10, 0, 0 },  { DTS_SET, 5000, 0, 0 }, /* HLL */
};

Test(values, round_trip_is_exact_and_canonical)
{
	for (size_t i = 0; i < sizeof(value_cases) / sizeof(value_cases[0]); i++) {
		const struct value_case *c = &value_cases[i];
		struct dts_stored v, w;
		uint8_t buf[8192], buf2[8192];
		int n, n2;

		fill_value(&v, c->type, c->nvals);
		v.first = c->first;
		v.last = c->last;
		n = dts_storage_value_encode(&v, buf, sizeof(buf));
		cr_assert_eq(n, (int)dts_storage_value_size(&v), "case %zu", i);
		cr_expect_eq(buf[0], DTS_STORAGE_VALUE_VERSION);
		cr_expect_eq(buf[1], c->type);
		if (c->type == DTS_COUNTER || c->type == DTS_GAUGE)
			cr_expect_eq(n, DTS_STORAGE_VALUE_HEADER);
		dts_stored_init(&w);
		cr_assert_eq(dts_storage_value_decode(&w, buf, (size_t)n), 0, "case %zu", i);
		cr_expect_eq(w.type, v.type);
		cr_expect_eq(w.first, c->first);
		cr_expect_eq(w.last, c->last);
		cr_expect(memcmp(&w.agg, &v.agg, sizeof(v.agg)) == 0, "case %zu: agg differs", i);
		if (c->type == DTS_TIMER && c->nvals) {
			cr_expect_eq(dts_sketch_quantile(&w.sketch, 0.1), dts_sketch_quantile(&v.sketch, 0.1));
			cr_expect_eq(dts_sketch_quantile(&w.sketch, 0.9), dts_sketch_quantile(&v.sketch, 0.9));
		}
		if (c->type == DTS_SET)
			cr_expect_eq(dts_set_cardinality(&w.set), dts_set_cardinality(&v.set));
		n2 = dts_storage_value_encode(&w, buf2, sizeof(buf2));
		cr_expect(n2 == n && memcmp(buf, buf2, (size_t)n) == 0, "case %zu: re-encoding differs", i);
		/* every truncation and one extra byte are refused, and leave the value alone */
		for (int len = 0; len < n; len++)
			cr_assert_eq(dts_storage_value_decode(&w, buf, (size_t)len), -EINVAL, "case %zu len %d", i,
				     len);
		buf[n] = 0;
		cr_expect_eq(dts_storage_value_decode(&w, buf, (size_t)n + 1), -EINVAL, "case %zu trailing byte", i);
		cr_expect(memcmp(&w.agg, &v.agg, sizeof(v.agg)) == 0, "case %zu: changed by a failed decode", i);
		dts_stored_free(&v);
		dts_stored_free(&w);
	}
}

Test(values, decode_refuses_bad_headers)
{
	struct dts_stored v, w;
	uint8_t buf[256];
	int n;

	fill_value(&v, DTS_GAUGE, 2);
	n = dts_storage_value_encode(&v, buf, sizeof(buf));
	dts_stored_init(&w);
	buf[0] = 2;
	cr_expect_eq(dts_storage_value_decode(&w, buf, (size_t)n), -EPROTONOSUPPORT, "newer version");
	buf[0] = 0;
	cr_expect_eq(dts_storage_value_decode(&w, buf, (size_t)n), -EINVAL, "version 0");
	buf[0] = 1;
	buf[1] = 4;
	cr_expect_eq(dts_storage_value_decode(&w, buf, (size_t)n), -EINVAL, "type 4");
	buf[1] = DTS_GAUGE;
	buf[2] = 5;
	buf[3] = 4;
	cr_expect_eq(dts_storage_value_decode(&w, buf, (size_t)n), -EINVAL, "first > last");
	buf[2] = 0;
	buf[3] = 60;
	cr_expect_eq(dts_storage_value_decode(&w, buf, (size_t)n), -EINVAL, "last 60");
	buf[3] = 0;
	memset(buf + 12, 0xff, 8); /* count = NaN */
	cr_expect_eq(dts_storage_value_decode(&w, buf, (size_t)n), -EINVAL, "NaN count");
	v.first = 3;
	v.last = 2;
	cr_expect_eq(dts_storage_value_encode(&v, buf, sizeof(buf)), -EINVAL);
	v.first = 0;
	v.last = 0;
	cr_expect_eq(dts_storage_value_encode(&v, buf, 51), -ENOSPC);
	dts_stored_free(&v);
	dts_stored_free(&w);
}

/* Merge rule: fst from the earliest minute, lst from the latest, whatever the order of merging. */
Test(values, merge_orders_first_and_last_by_minute)
{
	struct dts_stored a, b, c;

	dts_stored_init(&a);
	dts_stored_init(&b);
	dts_stored_init(&c);
	a.type = b.type = c.type = DTS_GAUGE;
	dts_agg_add(&a.agg, 10, 1); /* minute 20 */
	a.first = a.last = 20;
	dts_agg_add(&b.agg, 5, 1); /* minute 3: arrives late */
	b.first = b.last = 3;
	dts_agg_add(&c.agg, 7, 1); /* minute 40 */
	c.first = c.last = 40;
	cr_assert_eq(dts_storage_value_merge(&a, &b), 0);
	cr_expect_eq(a.agg.fst, 5);
	cr_expect_eq(a.agg.lst, 10);
	cr_assert_eq(dts_storage_value_merge(&a, &c), 0);
	cr_expect_eq(a.agg.fst, 5);
	cr_expect_eq(a.agg.lst, 7);
	cr_expect_eq(a.agg.count, 3);
	cr_expect_eq(a.agg.sum, 22);
	cr_expect_eq(a.agg.min, 5);
	cr_expect_eq(a.agg.max, 10);
	cr_expect_eq(a.first, 3);
	cr_expect_eq(a.last, 40);
	/* same minute: the incoming value is the later one for lst, the stored one keeps fst */
	struct dts_stored x, y;

	dts_stored_init(&x);
	dts_stored_init(&y);
	x.type = y.type = DTS_GAUGE;
	dts_agg_add(&x.agg, 1, 1);
	dts_agg_add(&x.agg, 2, 1);
	dts_agg_add(&y.agg, 3, 1);
	cr_assert_eq(dts_storage_value_merge(&x, &y), 0);
	cr_expect_eq(x.agg.fst, 1);
	cr_expect_eq(x.agg.lst, 3);
	y.type = DTS_COUNTER;
	cr_expect_eq(dts_storage_value_merge(&x, &y), -EINVAL);
}

/* ---- the store ------------------------------------------------------------------------------------------------- */

TestSuite(store, .init = make_tmp, .fini = remove_tmp);

/* The writer lays WriteBatches out itself (storage/src/batch.c). The bytes must be exactly what RocksDB's own
 * WriteBatch API produces for the same operations, or a RocksDB that changed its format would misread our batches. */
Test(store, batch_builder_matches_rocksdb)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts__batch b = { 0 };
	rocksdb_writebatch_t *ours, *theirs = rocksdb_writebatch_create();
	static char big[70000];
	const char *p1, *p2;
	size_t n1, n2;

	memset(big, 'v', sizeof(big));
	for (int round = 0; round < 2; round++) { /* the second round reuses the buffer */
		dts__batch_reset(&b);
		rocksdb_writebatch_clear(theirs);
		for (int i = 0; i < 300; i++) {
			char key[64];
			int kl = snprintf(key, sizeof(key), "u/p/c%d/c|20261122T%04d", i, i);
			size_t vl = (size_t)(i * 233) % sizeof(big); /* 0 .. 70 KB: one- to three-byte length varints */
			int cf = 1 + i % (DTS__CF_COUNT - 1);

			cr_assert_eq(dts__batch_put(&b, st->cf_id[cf], key, (size_t)kl, big, vl), 0);
			rocksdb_writebatch_put_cf(theirs, st->cf[cf], key, (size_t)kl, big, vl);
		}
		cr_assert_eq(dts__batch_delete_range(&b, st->cf_id[DTS__CF_CURRENT], "a|", 2, "a}", 2), 0);
		rocksdb_writebatch_delete_range_cf(theirs, st->cf[DTS__CF_CURRENT], "a|", 2, "a}", 2);
		ours = dts__batch_finish(&b);
		cr_assert_not_null(ours);
		p1 = rocksdb_writebatch_data(ours, &n1);
		p2 = rocksdb_writebatch_data(theirs, &n2);
		cr_assert_eq(n1, n2, "round %d: %zu bytes, RocksDB %zu", round, n1, n2);
		cr_assert_eq(memcmp(p1, p2, n1), 0, "round %d", round);
		cr_assert_eq(rocksdb_writebatch_count(ours), 301);
		rocksdb_writebatch_destroy(ours);
	}
	rocksdb_writebatch_destroy(theirs);
	dts__batch_free(&b);
	dts_storage_close(st);
}

/* Four types and a tagged series in one minute; reopen; read back exactly at minute and hour resolution. */
Test(store, write_reopen_read_back_exactly)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_closed_minute *cm = cm_new(M0, 5);
	struct points ps;

	rec_init(&cm->recs[0], "u", "api", "hits", "", DTS_COUNTER);
	rec_init(&cm->recs[1], "u", "api", "lat", "", DTS_TIMER);
	rec_init(&cm->recs[2], "u", "api", "level", "", DTS_GAUGE);
	rec_init(&cm->recs[3], "u", "api", "visitors", "", DTS_SET);
	rec_init(&cm->recs[4], "u", "api", "hits", "env:prod,region:eu", DTS_COUNTER);
	cm->n = 5;
	for (int i = 1; i <= 100; i++) {
		rec_add(&cm->recs[0], 1);
		rec_add(&cm->recs[1], i);
		rec_add(&cm->recs[3], i % 7);
	}
	rec_add(&cm->recs[2], 3);
	rec_add(&cm->recs[2], 9);
	rec_add(&cm->recs[4], 2.5);
	cr_assert_eq(dts_storage_write_minute(st, cm), 0);
	dts_storage_close(st);

	st = open_store(DTS_STORAGE_READ_WRITE);
	ps = read_all(st, DTS_RES_MINUTE, "u/api/hits/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].t, T0);
	cr_expect(memcmp(&ps.p[0].agg, &cm->recs[0].agg, sizeof(struct dts_agg)) == 0);
	ps = read_all(st, DTS_RES_MINUTE, "u/api/lat/ms");
	cr_assert_eq(ps.n, 1);
	cr_expect(memcmp(&ps.p[0].agg, &cm->recs[1].agg, sizeof(struct dts_agg)) == 0);
	cr_expect_eq(ps.p[0].bot10, dts_sketch_quantile(&cm->recs[1].sketch, 0.1));
	cr_expect_eq(ps.p[0].top10, dts_sketch_quantile(&cm->recs[1].sketch, 0.9));
	cr_expect_eq(ps.p[0].sketch_count, 100);
	ps = read_all(st, DTS_RES_MINUTE, "u/api/level/g");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.fst, 3);
	cr_expect_eq(ps.p[0].agg.lst, 9);
	ps = read_all(st, DTS_RES_MINUTE, "u/api/visitors/s");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].distinct, 7);
	ps = read_all(st, DTS_RES_MINUTE, "u/api/hits/c/env:prod,region:eu");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.sum, 2.5);
	/* the hour holds the same minute, at offset 14 */
	ps = read_all(st, DTS_RES_HOUR, "u/api/lat/ms");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].t, T0 / 3600 * 3600);
	cr_expect_eq(ps.p[0].first, 14);
	cr_expect_eq(ps.p[0].last, 14);
	cr_expect(memcmp(&ps.p[0].agg, &cm->recs[1].agg, sizeof(struct dts_agg)) == 0);
	cr_expect_eq(ps.p[0].sketch_count, 100);
	dts_closed_minute_release(cm);
	dts_storage_close(st);
}

/* Hourly rollup: minutes of one hour merge into one value; fst/lst follow minute order even when a minute is late. */
Test(store, hour_rollup_merges_minutes_in_time_order)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	const int64_t h0 = M0 / 60 * 60; /* first minute of T0's hour */
	const double a[] = { 10, 11 }, b[] = { 20 }, c[] = { 5 };
	struct dts_closed_minute *m1 = cm_counter(h0 + 1, a, 2), *m2 = cm_counter(h0 + 30, b, 1);
	struct dts_closed_minute *m0 = cm_counter(h0 + 0, c, 1); /* the hour's first minute, stored last */
	struct dts_closed_minute *next = cm_counter(h0 + 60, c, 1); /* next hour */
	struct points ps;

	cr_assert_eq(dts_storage_write_minute(st, m1), 0);
	cr_assert_eq(dts_storage_write_minute(st, m2), 0);
	cr_assert_eq(dts_storage_write_minute(st, next), 0);
	cr_assert_eq(dts_storage_write_minute(st, m0), 0);
	ps = read_all(st, DTS_RES_HOUR, "u/api/hits/c");
	cr_assert_eq(ps.n, 2);
	cr_expect_eq(ps.p[0].agg.sum, 46);
	cr_expect_eq(ps.p[0].agg.count, 4);
	cr_expect_eq(ps.p[0].agg.fst, 5, "fst from minute 0 although it was stored last");
	cr_expect_eq(ps.p[0].agg.lst, 20, "lst from minute 30");
	cr_expect_eq(ps.p[0].first, 0);
	cr_expect_eq(ps.p[0].last, 30);
	cr_expect_eq(ps.p[1].agg.sum, 5);
	ps = read_all(st, DTS_RES_MINUTE, "u/api/hits/c");
	cr_assert_eq(ps.n, 4);
	cr_expect_eq(ps.p[0].t, h0 * 60);
	cr_expect_eq(ps.p[3].t, (h0 + 60) * 60);
	dts_closed_minute_release(m0);
	dts_closed_minute_release(m1);
	dts_closed_minute_release(m2);
	dts_closed_minute_release(next);
	dts_storage_close(st);
}

/* A minute stored twice (late data, or closed again after a restart) is merged: minute and hour count each datum
 * once. */
Test(store, late_minute_is_merged_not_double_counted)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	const double first[] = { 2, 3 }, late[] = { 4 }, other[] = { 100 };
	struct dts_closed_minute *a = cm_counter(M0, first, 2), *b = cm_counter(M0, late, 1);
	struct dts_closed_minute *c = cm_counter(M0 + 1, other, 1);
	struct dts_storage_stats s;
	struct points ps;

	cr_assert_eq(dts_storage_write_minute(st, a), 0);
	cr_assert_eq(dts_storage_write_minute(st, c), 0);
	dts_storage_close(st); /* the late part arrives after a restart */
	st = open_store(DTS_STORAGE_READ_WRITE);
	cr_assert_eq(dts_storage_write_minute(st, b), 0);
	ps = read_all(st, DTS_RES_MINUTE, "u/api/hits/c");
	cr_assert_eq(ps.n, 2);
	cr_expect_eq(ps.p[0].agg.sum, 9, "minute: 2 + 3 + 4");
	cr_expect_eq(ps.p[0].agg.count, 3);
	cr_expect_eq(ps.p[0].agg.fst, 2);
	cr_expect_eq(ps.p[0].agg.lst, 4);
	cr_expect_eq(ps.p[1].agg.sum, 100, "the next minute is untouched");
	ps = read_all(st, DTS_RES_HOUR, "u/api/hits/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.sum, 109, "hour: every datum once");
	cr_expect_eq(ps.p[0].agg.count, 4);
	cr_expect_eq(ps.p[0].agg.lst, 100, "lst of the hour stays the later minute's");
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.records_merged, 1);
	cr_expect_eq(s.records_written, 1);
	cr_expect_eq(s.hwm_minute, M0 + 1);
	dts_closed_minute_release(a);
	dts_closed_minute_release(b);
	dts_closed_minute_release(c);
	dts_storage_close(st);
}

/* Timers: a late part's sketch merges bin for bin, so quantiles equal those of all the data in one sketch. */
Test(store, late_timer_merges_sketches_exactly)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_closed_minute *a = cm_new(M0, 1), *b = cm_new(M0, 1);
	struct dts_sketch all;
	struct points ps;

	dts_sketch_init(&all);
	rec_init(&a->recs[0], "u", "api", "lat", "", DTS_TIMER);
	rec_init(&b->recs[0], "u", "api", "lat", "", DTS_TIMER);
	a->n = b->n = 1;
	for (int i = 1; i <= 500; i++) {
		rec_add(i % 3 ? &a->recs[0] : &b->recs[0], i * 1.5);
		dts_sketch_add(&all, i * 1.5, 1);
	}
	cr_assert_eq(dts_storage_write_minute(st, a), 0);
	cr_assert_eq(dts_storage_write_minute(st, b), 0);
	for (int r = DTS_RES_MINUTE; r <= DTS_RES_HOUR; r++) {
		ps = read_all(st, r, "u/api/lat/ms");
		cr_assert_eq(ps.n, 1);
		cr_expect_eq(ps.p[0].sketch_count, 500);
		cr_expect_eq(ps.p[0].agg.count, 500);
		cr_expect_eq(ps.p[0].bot10, dts_sketch_quantile(&all, 0.1));
		cr_expect_eq(ps.p[0].top10, dts_sketch_quantile(&all, 0.9));
	}
	dts_sketch_free(&all);
	dts_closed_minute_release(a);
	dts_closed_minute_release(b);
	dts_storage_close(st);
}

/* A record whose identity cannot be a key is skipped and counted; the rest of the minute is stored. */
Test(store, invalid_records_are_counted_not_fatal)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_closed_minute *cm = cm_new(M0, 2);
	struct dts_storage_stats s;

	rec_init(&cm->recs[0], "u", "api", "bad|name", "", DTS_COUNTER);
	rec_init(&cm->recs[1], "u", "api", "good", "", DTS_COUNTER);
	rec_add(&cm->recs[0], 1);
	rec_add(&cm->recs[1], 1);
	cm->n = 2;
	cr_assert_eq(dts_storage_write_minute(st, cm), 0);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.dropped_records[DTS_SDROP_INVALID], 1);
	cr_expect_eq(s.records_written, 1);
	cr_expect_eq(read_all(st, DTS_RES_MINUTE, "u/api/good/c").n, 1);
	dts_closed_minute_release(cm);
	dts_storage_close(st);
}

/* Retention: with the injected clock 16 days ahead, a compaction removes minutes older than 15 days and keeps the
 * rest; hours (400 days) stay. Then 401 days ahead the hours go too. */
Test(store, retention_by_compaction_filter_with_injected_clock)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	const double v[] = { 1 };
	struct dts_closed_minute *old = cm_counter(M0, v, 1), *recent = cm_counter(M0 + 2 * 1440, v, 1);
	struct points ps;

	cr_assert_eq(dts_storage_write_minute(st, old), 0);
	cr_assert_eq(dts_storage_write_minute(st, recent), 0);
	/* the storage thread rolls hours up within minutes of their end, long before their minutes expire */
	cr_assert_eq(dts_storage_roll_hours(st, (M0 + 2 * 1440) / 60, 0), 2);
	cr_assert_eq(dts_storage_flush(st), 0);
	cr_assert_eq(dts_storage_compact(st, DTS_RES_MINUTE), 0);
	cr_expect_eq(read_all(st, DTS_RES_MINUTE, "u/api/hits/c").n, 2, "nothing is old yet");

	atomic_store(&fake_now, T0 + 16 * 86400); /* old is 16 days old, recent 14 */
	cr_assert_eq(dts_storage_compact(st, DTS_RES_MINUTE), 0);
	cr_assert_eq(dts_storage_compact(st, DTS_RES_HOUR), 0);
	ps = read_all(st, DTS_RES_MINUTE, "u/api/hits/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].t, (M0 + 2 * 1440) * 60, "only the recent minute is left");
	cr_expect_eq(read_all(st, DTS_RES_HOUR, "u/api/hits/c").n, 2, "hours are kept 400 days");

	atomic_store(&fake_now, T0 + 401 * 86400);
	cr_assert_eq(dts_storage_compact(st, DTS_RES_HOUR), 0);
	ps = read_all(st, DTS_RES_HOUR, "u/api/hits/c");
	cr_assert_eq(ps.n, 1, "the first hour is 401 days old, the other 399");
	cr_expect_eq(ps.p[0].t, (M0 + 2 * 1440) / 60 * 3600);
	atomic_store(&fake_now, T0 + 403 * 86400);
	cr_assert_eq(dts_storage_compact(st, DTS_RES_HOUR), 0);
	cr_expect_eq(read_all(st, DTS_RES_HOUR, "u/api/hits/c").n, 0);
	dts_closed_minute_release(old);
	dts_closed_minute_release(recent);
	dts_storage_close(st);
}

/* [from, to) at minute and hour resolution; from rounds down to its period, to is exclusive. */
Test(store, read_range_bounds)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct points ps = { .n = 0 };

	for (int i = 0; i < 10; i++) {
		const double v[] = { i };
		struct dts_closed_minute *cm = cm_counter(M0 + i, v, 1);

		cr_assert_eq(dts_storage_write_minute(st, cm), 0);
		dts_closed_minute_release(cm);
	}
	cr_expect_eq(dts_storage_read(st, DTS_RES_MINUTE, "u/api/hits/c", T0 + 2 * 60 + 30, T0 + 5 * 60, collect, &ps),
		     3);
	cr_expect_eq(ps.p[0].t, T0 + 120);
	cr_expect_eq(ps.p[2].t, T0 + 240);
	ps.n = 0;
	cr_expect_eq(dts_storage_read(st, DTS_RES_MINUTE, "u/api/hits/c", T0, T0 + 5 * 60 + 1, collect, &ps), 6,
		     "a partial minute at the end is included");
	cr_expect_eq(dts_storage_read(st, DTS_RES_MINUTE, "u/api/hits/c", T0 + 600, T0 + 6000, NULL, NULL), 0);
	cr_expect_eq(dts_storage_read(st, DTS_RES_MINUTE, "u/api/hits/ms", 0, DTS_STORAGE_TIME_MAX, NULL, NULL), 0,
		     "another type is another series");
	cr_expect_eq(dts_storage_read(st, DTS_RES_MINUTE, "u/api/hit/c", 0, DTS_STORAGE_TIME_MAX, NULL, NULL), 0);
	cr_expect_eq(dts_storage_read(st, DTS_RES_MINUTE, "u/api/hits", 0, 10, NULL, NULL), -EINVAL);
	ps.n = 0;
	cr_expect_eq(dts_storage_read(st, DTS_RES_HOUR, "u/api/hits/c", T0 - 1800, T0 + 1, collect, &ps), 1);
	cr_expect_eq(ps.p[0].agg.sum, 45);
	dts_storage_close(st);
}

/* The same 10-minute bucket over 7 days: per-day summaries and their field-by-field average over days with data. */
Test(store, week_bucket_averages_days_with_data)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	const int64_t bucket = T0 / 600 * 600 + 7 * 86400; /* "today" */
	struct dts_bucket day[8], avg;

	/* day d (1..7) has, in each of the bucket's first d minutes, a timer value 10 * d; day 4 has no data. */
	for (int d = 7; d >= 0; d--) {
		for (int i = 0; i < (d ? d : 2) && d != 4; i++) {
			struct dts_closed_minute *cm = cm_new((bucket - d * 86400) / 60 + i, 1);

			rec_init(&cm->recs[0], "u", "api", "lat", "", DTS_TIMER);
			rec_add(&cm->recs[0], 10.0 * (d ? d : 1));
			cm->n = 1;
			cr_assert_eq(dts_storage_write_minute(st, cm), 0);
			dts_closed_minute_release(cm);
		}
	}
	/* a minute just outside the bucket must not count */
	struct dts_closed_minute *out = cm_new((bucket - 86400) / 60 + 10, 1);

	rec_init(&out->recs[0], "u", "api", "lat", "", DTS_TIMER);
	rec_add(&out->recs[0], 1e6);
	out->n = 1;
	cr_assert_eq(dts_storage_write_minute(st, out), 0);
	dts_closed_minute_release(out);

	cr_assert_eq(dts_storage_week_bucket(st, "u/api/lat/ms", bucket, 600, 7, day, &avg), 6);
	cr_expect_eq(day[0].minutes, 2, "today");
	cr_expect_eq(day[1].minutes, 1);
	cr_expect_eq(day[1].max, 10, "the minute after the bucket is left out");
	cr_expect_eq(day[4].minutes, 0);
	cr_expect(isnan(day[4].count));
	cr_expect_eq(day[7].count, 7);
	cr_expect_eq(day[7].sum, 490);
	cr_expect_float_eq(day[7].bot10, 70, 0.7);
	cr_expect_eq(avg.minutes, 6, "days with data");
	/* counts 1,2,3,5,6,7 -> 4; avg of the values 10,20,30,50,60,70 -> 40 */
	cr_expect_float_eq(avg.count, 4, 1e-9);
	cr_expect_float_eq(avg.avg, 40, 1e-9);
	cr_expect_float_eq(avg.min, 40, 1e-9);
	cr_expect_float_eq(avg.top10, 40, 0.4);
	cr_expect(isnan(avg.distinct));
	cr_expect_eq(dts_storage_week_bucket(st, "u/api/lat/ms", bucket, 600, 0, day, &avg), -EINVAL);
	dts_storage_close(st);
}

struct names {
	char v[16][128];
	int n;
};

static int collect_name(void *ctx, const char *name, size_t len)
{
	struct names *ns = ctx;

	cr_assert_lt(ns->n, 16);
	snprintf(ns->v[ns->n++], sizeof(ns->v[0]), "%.*s", (int)len, name);
	return 0;
}

Test(store, list_users_processes_series)
{
	static const char *const ids[][4] = {
		{ "alice", "api", "hits", "" },	   { "alice", "api", "hits", "env:prod" },
		{ "alice", "api.v2", "hits", "" }, { "alice", "web", "lat", "" },
		{ "alice.b", "api", "x", "" },	   { "bob", "api", "hits", "" },
	};
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct names ns = { .n = 0 };

	for (int m = 0; m < 3; m++) {
		struct dts_closed_minute *cm = cm_new(M0 + m, 6);

		for (int i = 0; i < 6; i++) {
			rec_init(&cm->recs[i], ids[i][0], ids[i][1], ids[i][2], ids[i][3], DTS_COUNTER);
			rec_add(&cm->recs[i], 1);
		}
		cm->n = 6;
		cr_assert_eq(dts_storage_write_minute(st, cm), 0);
		dts_closed_minute_release(cm);
	}
	/* names come in key order: a name followed by its terminator, so "alice.b/" sorts before "alice/" ('.' < '/')
	 * and "hits/c/env:prod|" before "hits/c|" ('/' < '|') */
	cr_assert_eq(dts_storage_list_users(st, DTS_RES_MINUTE, collect_name, &ns), 3);
	cr_expect_str_eq(ns.v[0], "alice.b");
	cr_expect_str_eq(ns.v[1], "alice");
	cr_expect_str_eq(ns.v[2], "bob");
	ns.n = 0;
	cr_assert_eq(dts_storage_list_processes(st, DTS_RES_MINUTE, "alice", collect_name, &ns), 3);
	cr_expect_str_eq(ns.v[0], "api.v2");
	cr_expect_str_eq(ns.v[1], "api");
	cr_expect_str_eq(ns.v[2], "web");
	ns.n = 0;
	cr_assert_eq(dts_storage_list_series(st, DTS_RES_MINUTE, "alice", "api", collect_name, &ns), 2);
	cr_expect_str_eq(ns.v[0], "alice/api/hits/c/env:prod");
	cr_expect_str_eq(ns.v[1], "alice/api/hits/c");
	ns.n = 0;
	cr_assert_eq(dts_storage_list_series(st, DTS_RES_HOUR, "alice", NULL, collect_name, &ns), 4);
	cr_expect_str_eq(ns.v[3], "alice/web/lat/c");
	cr_expect_eq(dts_storage_list_series(st, DTS_RES_MINUTE, "nobody", NULL, NULL, NULL), 0);
	cr_expect_eq(dts_storage_list_processes(st, DTS_RES_MINUTE, "a/b", NULL, NULL), -EINVAL);
	dts_storage_close(st);
}

/* ---- the sink -------------------------------------------------------------------------------------------------- */

/* Start the store's sink (asserting it starts) and get its callbacks, as the daemon hands them to the merger. */
static struct dts_storage_sink *sink_start(struct dts_storage *st, struct dts_sink *cb)
{
	char err[256];
	struct dts_storage_sink *sink = dts_storage_sink_start(st, err, sizeof(err));

	cr_assert_not_null(sink, "%s", err);
	*cb = dts_storage_sink_get(sink);
	return sink;
}

/* Closed minutes handed to the sink's callbacks (as the merger would) end up in the store; stop drains the queue. */
Test(store, sink_writes_queued_minutes_and_drains_on_stop)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	char err[256];
	struct dts_storage_sink *sink = dts_storage_sink_start(st, err, sizeof(err));
	struct dts_storage_stats s;
	struct dts_sink cb;

	cr_assert_not_null(sink, "%s", err);
	cr_expect_null(dts_storage_sink_start(st, err, sizeof(err)), "one sink per store");
	cb = dts_storage_sink_get(sink);
	for (int i = 0; i < 30; i++) {
		const double v[] = { i };

		cb.minute_closed(cb.ctx, cm_counter(M0 + i, v, 1));
	}
	dts_storage_sink_stop(sink);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.minutes_written, 30);
	cr_expect_eq(s.queue_minutes, 0);
	cr_expect_eq(s.queue_records, 0);
	cr_expect_eq(s.dropped_minutes[DTS_SDROP_QUEUE_FULL], 0);
	cr_expect_gt(s.batch_ns_total, 0);
	cr_expect_gt(s.bytes_written, 30 * 52);
	struct points ps = read_all(st, DTS_RES_MINUTE, "u/api/hits/c");

	cr_assert_eq(ps.n, 30);
	for (int i = 0; i < 30; i++)
		cr_expect_eq(ps.p[i].agg.sum, i);
	dts_storage_close(st);
}

/* A queue of 2 entries fed faster than the store writes: the merger's push never waits, the excess is dropped and
 * counted, and everything pushed is either written or counted as dropped. */
Test(store, sink_full_queue_is_a_counted_drop)
{
	struct dts_storage_cfg cfg;
	struct dts_storage *st;
	struct dts_storage_sink *sink;
	struct dts_storage_stats s;
	struct dts_sink cb;
	char err[256];
	enum { MINUTES = 40, SERIES = 2000 };

	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dbdir;
	cfg.queue_minutes = 2;
	cfg.write_buffer_bytes = 4 << 20;
	st = dts_storage_open(&cfg, err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
	sink = dts_storage_sink_start(st, err, sizeof(err));
	cr_assert_not_null(sink, "%s", err);
	cb = dts_storage_sink_get(sink);
	for (int m = 0; m < MINUTES; m++) {
		struct dts_closed_minute *cm = cm_new(M0 + m, SERIES);

		for (int i = 0; i < SERIES; i++) {
			char name[32];

			snprintf(name, sizeof(name), "c%d", i);
			rec_init(&cm->recs[i], "u", "api", name, "", DTS_TIMER);
			rec_add(&cm->recs[i], i + 1);
		}
		cm->n = SERIES;
		cb.minute_closed(cb.ctx, cm);
	}
	dts_storage_sink_stop(sink);
	dts_storage_stats_read(st, &s);
	cr_expect_gt(s.dropped_minutes[DTS_SDROP_QUEUE_FULL], 0, "2 queue slots cannot hold %d minutes", MINUTES);
	cr_expect_eq(s.minutes_written + s.dropped_minutes[DTS_SDROP_QUEUE_FULL], MINUTES);
	cr_expect_eq(s.dropped_records[DTS_SDROP_QUEUE_FULL], s.dropped_minutes[DTS_SDROP_QUEUE_FULL] * SERIES);
	cr_expect_eq(s.records_written, s.minutes_written * SERIES);
	dts_storage_close(st);
}

/* Log lines of the store, for tests that check what an operator would read. */
static char logged[4096];

static void capture_log(void *ctx, int level, const char *msg)
{
	(void)ctx, (void)level;
	strncat(logged, msg, sizeof(logged) - strlen(logged) - 2);
	strcat(logged, "\n");
}

/*
 * A store that cannot be written: the file size limit (RLIMIT_FSIZE, no root needed) makes the WAL append fail with
 * EFBIG, a hard error RocksDB does not recover from by itself. The merger's pushes never wait; the storage thread
 * retries with backoff, the queue fills and further minutes are dropped (queue_full); at stop the queued minutes are
 * dropped after stop_timeout_ms (write_failed); every minute is accounted for, and the log names the path and reason.
 */
Test(store, failing_writes_are_retried_then_counted)
{
	struct dts_storage_cfg cfg;
	struct dts_storage *st;
	struct dts_storage_sink *sink;
	struct dts_storage_stats s;
	struct rlimit old, lim;
	struct dts_sink cb;
	char err[256];
	enum { MINUTES = 20, SERIES = 1000 };

	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dbdir;
	cfg.queue_minutes = 4;
	cfg.retry_min_ms = 10;
	cfg.retry_max_ms = 100;
	cfg.stop_timeout_ms = 500;
	cfg.write_buffer_bytes = 4 << 20;
	cfg.log = capture_log;
	logged[0] = '\0';
	st = dts_storage_open(&cfg, err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 64 << 10; /* the WAL of the first minute already crosses it */
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	sink = dts_storage_sink_start(st, err, sizeof(err));
	cr_assert_not_null(sink, "%s", err);
	cb = dts_storage_sink_get(sink);
	for (int m = 0; m < MINUTES; m++) {
		struct dts_closed_minute *cm = cm_new(M0 + m, SERIES);

		for (int i = 0; i < SERIES; i++) {
			char name[32];

			snprintf(name, sizeof(name), "c%d", i);
			rec_init(&cm->recs[i], "u", "api", name, "", DTS_COUNTER);
			rec_add(&cm->recs[i], 1);
		}
		cm->n = SERIES;
		cb.minute_closed(cb.ctx, cm);
		usleep(20000);
	}
	dts_storage_sink_stop(sink);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.minutes_written + s.dropped_minutes[DTS_SDROP_QUEUE_FULL] +
			     s.dropped_minutes[DTS_SDROP_WRITE_FAILED],
		     MINUTES, "written %llu, queue_full %llu, write_failed %llu", (unsigned long long)s.minutes_written,
		     (unsigned long long)s.dropped_minutes[DTS_SDROP_QUEUE_FULL],
		     (unsigned long long)s.dropped_minutes[DTS_SDROP_WRITE_FAILED]);
	cr_expect_gt(s.dropped_minutes[DTS_SDROP_WRITE_FAILED], 0, "the queued minutes are dropped at stop");
	cr_expect_gt(s.dropped_minutes[DTS_SDROP_QUEUE_FULL], 0, "a queue of 4 cannot hold %d minutes", MINUTES);
	cr_expect_eq(s.dropped_records[DTS_SDROP_WRITE_FAILED], s.dropped_minutes[DTS_SDROP_WRITE_FAILED] * SERIES);
	cr_expect_gt(s.write_errors, 0);
	cr_expect_gt(s.retries, 0);
	cr_expect_eq(s.queue_minutes, 0);
	cr_expect(strstr(logged, dbdir) && strstr(logged, "File too large"), "%s", logged);
	cr_expect(strstr(logged, "queue full"), "%s", logged);
	dts_storage_close(st);
}

/* Checkpoints: stored in current; superseded ones are skipped; the close of the minute deletes them. */
Test(store, checkpoints_are_replaced_by_the_close)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_storage_stats s;
	struct dts_sink cb;
	struct dts_storage_sink *sink = sink_start(st, &cb);
	const double v[] = { 1 };

	struct dts_closed_minute *ck = cm_counter(M0, v, 1);

	ck->open = true;
	cr_assert_eq(dts_storage_write_checkpoint(st, ck), 0);
	dts_closed_minute_release(ck);
	cr_assert_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 1, "a stale checkpoint is stored as closed");
	cr_expect_eq(read_all(st, DTS_RES_MINUTE, "u/api/hits/c").n, 1);
	cr_expect_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 0, "and its rows are gone");

	for (int i = 0; i < 5; i++) {
		struct dts_closed_minute *c = cm_counter(M0 + 1, v, 1);

		c->open = true;
		cb.checkpoint(cb.ctx, c);
	}
	cb.minute_closed(cb.ctx, cm_counter(M0 + 1, v, 1));
	dts_storage_sink_stop(sink);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.checkpoints_written + s.checkpoints_skipped, 6);
	cr_expect_eq(s.minutes_written, 2);
	cr_expect_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 0, "the close deleted the checkpoint rows");
	struct points ps = read_all(st, DTS_RES_MINUTE, "u/api/hits/c");

	cr_assert_eq(ps.n, 2);
	cr_expect_eq(ps.p[1].agg.sum, 1, "the checkpoint did not add to the closed minute");
	dts_storage_close(st);
}

/* Partial checkpoints (each with other series) queued back to back are all written: a later partial one does not
 * replace an earlier one, so a restart finds every series. */
Test(store, partial_checkpoints_are_not_skipped)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_storage_stats s;
	struct dts_sink cb;
	struct dts_storage_sink *sink = sink_start(st, &cb);

	cr_assert_not_null(cb.checkpoint_lost, "the storage sink reports lost checkpoints");
	cr_expect_not(cb.checkpoint_lost(cb.ctx));
	for (int i = 0; i < 5; i++) {
		struct dts_closed_minute *c = cm_new(M0, 1);
		char name[16];

		snprintf(name, sizeof(name), "c%d", i);
		rec_init(&c->recs[0], "u", "api", name, "", DTS_COUNTER);
		rec_add(&c->recs[0], i + 1);
		c->n = 1;
		c->open = true;
		c->partial = true;
		cb.checkpoint(cb.ctx, c);
	}
	dts_storage_sink_stop(sink);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.checkpoints_written, 5);
	cr_expect_eq(s.checkpoints_skipped, 0);
	cr_expect_eq(s.checkpoints_dropped + s.checkpoints_failed, 0, "nothing was lost");
	cr_assert_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 5, "every partial checkpoint's series");
	for (int i = 0; i < 5; i++) {
		char series[32];
		struct points ps;

		snprintf(series, sizeof(series), "u/api/c%d/c", i);
		ps = read_all(st, DTS_RES_MINUTE, series);
		cr_assert_eq(ps.n, 1, "%s", series);
		cr_expect_eq(ps.p[0].agg.sum, i + 1);
	}
	dts_storage_close(st);
}

/* ---- with the engine ------------------------------------------------------------------------------------------- */

static struct dts_merger *merger_new(struct dts_sink sink)
{
	struct dts_merger_cfg cfg;
	struct dts_merger *m;

	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 1;
	cfg.grace_s = 5;
	cfg.table_capacity = 1024;
	cfg.sink = sink;
	cfg.checkpoint_ms = 5000;
	m = dts_merger_create(&cfg);
	cr_assert_not_null(m);
	return m;
}

static void feed(struct dts_merger *m, int64_t now_s, const char *lines)
{
	struct dts_core *c = dts_merger_core(m, 0);

	cr_assert_gt(dts_core_ingest(c, lines, strlen(lines), now_s), 0);
	dts_core_flush(c);
	dts_core_tick(c, now_s * 1000);
	dts_merger_step(m, now_s * 1000);
}

/*
 * The first life's sink: forwards to the storage sink until the "crash", then only releases what the abandoned
 * merger still hands over (its destroy at the end of the test closes its minutes).
 */
struct life {
	struct dts_sink to;
	bool dead;
};

static void life_closed(void *ctx, struct dts_closed_minute *cm)
{
	struct life *l = ctx;

	if (l->dead)
		dts_closed_minute_release(cm);
	else
		l->to.minute_closed(l->to.ctx, cm);
}

static void life_checkpoint(void *ctx, struct dts_closed_minute *cm)
{
	struct life *l = ctx;

	if (l->dead)
		dts_closed_minute_release(cm);
	else
		l->to.checkpoint(l->to.ctx, cm);
}

/* The real merger -> sink -> store, a crash after a checkpoint, and a restart that restores the checkpoint: the
 * minute holds both lives' data exactly once. */
Test(store, engine_checkpoint_crash_restore_close)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_storage_sink *sink;
	struct dts_merger *m, *m2;
	struct dts_storage_stats s;
	struct life life1 = { .dead = false };
	char err[256];

	dts_rcu_register_thread();
	sink = dts_storage_sink_start(st, err, sizeof(err));
	cr_assert_not_null(sink, "%s", err);
	life1.to = dts_storage_sink_get(sink);
	m = merger_new((struct dts_sink){ .minute_closed = life_closed, .checkpoint = life_checkpoint, .ctx = &life1 });
	dts_merger_step(m, T0 * 1000);
	feed(m, T0 + 1, "api.hits:4|c\napi.lat:10|ms\napi.lat:30|ms");
	dts_merger_step(m, (T0 + 6) * 1000); /* checkpoint of the open minute */
	/* crash: the checkpoint reaches the disk (stop drains the queue), the merger is abandoned without closing */
	life1.dead = true;
	dts_storage_sink_stop(sink);
	dts_storage_stats_read(st, &s);
	cr_assert_geq(s.checkpoints_written, 1);
	cr_assert_eq(s.minutes_written, 0);
	dts_storage_close(st);

	st = open_store(DTS_STORAGE_READ_WRITE);
	sink = dts_storage_sink_start(st, err, sizeof(err));
	cr_assert_not_null(sink, "%s", err);
	m2 = merger_new(dts_storage_sink_get(sink));
	cr_expect_eq(dts_storage_restore(st, m2, (T0 + 20) * 1000), 2);
	feed(m2, T0 + 21, "api.hits:1|c\napi.lat:20|ms");
	dts_merger_step(m2, (T0 + 66) * 1000); /* closes the minute */
	dts_merger_destroy(m2, (T0 + 70) * 1000);
	dts_storage_sink_stop(sink);
	struct points ps = read_all(st, DTS_RES_MINUTE, "default/api/hits/c");

	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.sum, 5);
	ps = read_all(st, DTS_RES_MINUTE, "default/api/lat/ms");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.count, 3);
	cr_expect_eq(ps.p[0].sketch_count, 3);
	cr_expect_eq(ps.p[0].agg.min, 10);
	cr_expect_eq(ps.p[0].agg.max, 30);
	ps = read_all(st, DTS_RES_HOUR, "default/api/hits/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.sum, 5);
	cr_expect_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 0, "no checkpoint left");
	dts_storage_close(st);
	dts_merger_destroy(m, (T0 + 6) * 1000);
	dts_rcu_barrier();
	dts_rcu_unregister_thread();
}

/* ---- opening --------------------------------------------------------------------------------------------------- */

Test(store, secondary_follows_the_primary)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_storage *sec = open_store(DTS_STORAGE_SECONDARY);
	const double v[] = { 1 };
	struct dts_closed_minute *cm = cm_counter(M0, v, 1);
	char err[256];

	cr_expect_eq(read_all(sec, DTS_RES_MINUTE, "u/api/hits/c").n, 0);
	cr_assert_eq(dts_storage_write_minute(st, cm), 0);
	cr_assert_eq(dts_storage_catch_up(sec, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(read_all(sec, DTS_RES_MINUTE, "u/api/hits/c").n, 1);
	cr_expect_eq(dts_storage_write_minute(sec, cm), -EROFS);
	dts_closed_minute_release(cm);
	dts_storage_close(sec);
	dts_storage_close(st);
}

Test(store, open_errors_name_the_path_and_reason)
{
	struct dts_storage_cfg cfg;
	char err[512], path[192];
	FILE *f;

	dts_storage_cfg_defaults(&cfg);
	/* a parent that is a file */
	snprintf(path, sizeof(path), "%s/file", tmpdir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/file/db", tmpdir);
	cfg.data_dir = path;
	cr_expect_null(dts_storage_open(&cfg, err, sizeof(err)));
	cr_expect_eq(errno, ENOTDIR, "%s", strerror(errno));
	cr_expect(strstr(err, path) || strstr(err, "/file"), "%s", err);
	cr_expect(strstr(err, "Not a directory"), "%s", err);
	/* read-only on nothing */
	snprintf(path, sizeof(path), "%s/none", tmpdir);
	cfg.mode = DTS_STORAGE_READ_ONLY;
	cr_expect_null(dts_storage_open(&cfg, err, sizeof(err)));
	cr_expect(strstr(err, path), "%s", err);
	/* a RocksDB store that is not ours */
	rocksdb_options_t *o = rocksdb_options_create();
	char *rerr = NULL;

	rocksdb_options_set_create_if_missing(o, 1);
	rocksdb_close(rocksdb_open(o, path, &rerr));
	cr_assert_null(rerr);
	rocksdb_options_destroy(o);
	cfg.mode = DTS_STORAGE_READ_WRITE;
	cr_expect_null(dts_storage_open(&cfg, err, sizeof(err)));
	cr_expect(strstr(err, "not a DaTtSs store") && strstr(err, path), "%s", err);
	/* the lock held by another instance */
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);

	cfg.data_dir = dbdir;
	cr_expect_null(dts_storage_open(&cfg, err, sizeof(err)));
	cr_expect(strstr(err, dbdir) && strstr(err, "LOCK"), "%s", err);
	dts_storage_close(st);
}

Test(store, newer_schema_is_refused)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_storage_cfg cfg;
	char err[512];

	dts_storage_close(st);
	/* bump the schema version behind the library's back, as a newer dattssd would */
	{
		const char *names[] = { "default", "minutes", "hours", "current", "events", "meta" };
		rocksdb_options_t *o = rocksdb_options_create();
		const rocksdb_options_t *opts[6] = { o, o, o, o, o, o };
		rocksdb_column_family_handle_t *h[6];
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
		char *rerr = NULL;
		rocksdb_t *db = rocksdb_open_column_families(o, dbdir, 6, names, opts, h, &rerr);

		cr_assert_null(rerr, "%s", rerr);
		char newer[16];

		snprintf(newer, sizeof(newer), "%d", DTS_STORAGE_SCHEMA_VERSION + 1);
		rocksdb_put_cf(db, wo, h[5], "schema_version", 14, newer, strlen(newer), &rerr);
		cr_assert_null(rerr);
		for (int i = 0; i < 6; i++)
			rocksdb_column_family_handle_destroy(h[i]);
		rocksdb_close(db);
		rocksdb_writeoptions_destroy(wo);
		rocksdb_options_destroy(o);
	}
	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dbdir;
	cr_expect_null(dts_storage_open(&cfg, err, sizeof(err)));
	cr_expect_eq(errno, EPROTONOSUPPORT);
	{
		char want[32];

		snprintf(want, sizeof(want), "schema version %d", DTS_STORAGE_SCHEMA_VERSION + 1);
		cr_expect(strstr(err, want) && strstr(err, dbdir), "%s", err);
	}
}

Test(store, schema_version_is_written_and_compression_chosen)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);

	cr_expect_str_eq(dts_storage_compression(st), "lz4+zstd", "Debian's librocksdb links LZ4 and ZSTD");
	dts_storage_close(st);
	st = open_store(DTS_STORAGE_READ_ONLY);
	cr_expect_eq(dts_storage_write_minute(st, &(struct dts_closed_minute){ .minute = M0 }), -EROFS);
	dts_storage_close(st);
}

/* ---- hourly rollups -------------------------------------------------------------------------------------------- */

TestSuite(rollup, .init = make_tmp, .fini = remove_tmp, .timeout = 60);

#define H0 (M0 / 60) /* T0's hour (2023-11-14T22), unix seconds / 3600 */

/* Keys of family cf that start with prefix. */
static long count_keys(struct dts_storage *st, int cf, const char *prefix)
{
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf[cf]);
	const size_t pl = strlen(prefix);
	long n = 0;

	for (rocksdb_iter_seek(it, prefix, pl); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl;
		const char *k = rocksdb_iter_key(it, &kl);

		if (kl < pl || memcmp(k, prefix, pl) != 0)
			break;
		n++;
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	return n;
}

/* The meta value of key as stored ("" when absent). */
static void meta_str(struct dts_storage *st, const char *key, char *buf, size_t len)
{
	char *rerr = NULL, *v;
	size_t vl = 0;

	v = rocksdb_get_cf(st->db, st->ro_get, st->cf[DTS__CF_META], key, strlen(key), &vl, &rerr);
	cr_assert_null(rerr);
	snprintf(buf, len, "%.*s", v ? (int)vl : 0, v ? v : "");
	rocksdb_free(v);
}

/* meta "hour_done" as stored ("" when absent). */
static void meta_hour_done(struct dts_storage *st, char *buf, size_t len)
{
	meta_str(st, "hour_done", buf, len);
}

/*
 * A store that is not new: its first hour is behind it (hour_done 21:00 stored, as the roller leaves it), so H0 is
 * rolled up from markers, as every hour after a store's first is. (A new store's first hour has no markers: the roller
 * scans the minutes family, rollup.first_hour_of_a_new_store_is_rolled_up_by_a_scan.)
 */
static struct dts_storage *open_marked_store(void)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	char *rerr = NULL;

	rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_META], "hour_done", 9, "20231114T21", 11, &rerr);
	cr_assert_null(rerr);
	dts_storage_close(st);
	return open_store(DTS_STORAGE_READ_WRITE);
}

/* The hour of a rolled-up test: five series of four types; minute offset i of the hour gets values made from i. */
static const char *const mixed_series[] = { "u/api/hits/c", "u/api/hits/c/env:prod", "u/api/lat/ms", "u/api/level/g",
					    "u/api/users/s" };
#define N_MIXED 5

static struct dts_closed_minute *cm_mixed(int64_t minute)
{
	struct dts_closed_minute *cm = cm_new(minute, N_MIXED);
	const double i = (double)(((minute % 60) + 60) % 60);

	rec_init(&cm->recs[0], "u", "api", "hits", "", DTS_COUNTER);
	rec_init(&cm->recs[1], "u", "api", "hits", "env:prod", DTS_COUNTER);
	rec_init(&cm->recs[2], "u", "api", "lat", "", DTS_TIMER);
	rec_init(&cm->recs[3], "u", "api", "level", "", DTS_GAUGE);
	rec_init(&cm->recs[4], "u", "api", "users", "", DTS_SET);
	cm->n = N_MIXED;
	rec_add(&cm->recs[0], i + 1);
	rec_add(&cm->recs[0], 2);
	rec_add(&cm->recs[1], 0.25 * i);
	for (int k = 1; k <= 7; k++)
		rec_add(&cm->recs[2], (i + 1) * k * 1.5);
	rec_add(&cm->recs[3], 100 + i);
	rec_add(&cm->recs[3], 200 + i);
	rec_add(&cm->recs[4], (double)((int)i % 5));
	rec_add(&cm->recs[4], 1000 + i);
	return cm;
}

static void write_mixed(struct dts_storage *st, int64_t minute)
{
	struct dts_closed_minute *cm = cm_mixed(minute);

	cr_assert_eq(dts_storage_write_minute(st, cm), 0);
	dts_closed_minute_release(cm);
}

/* Hour reads of every mixed series over [from, to). */
static void read_mixed_hours(struct dts_storage *st, int64_t from, int64_t to, struct points out[N_MIXED])
{
	for (int s = 0; s < N_MIXED; s++) {
		out[s].n = 0;
		cr_assert_geq(dts_storage_read(st, DTS_RES_HOUR, mixed_series[s], from, to, collect, &out[s]), 0);
	}
}

static const int rolled_offsets[] = { 0, 1, 2, 17, 30, 59 };
#define N_OFFSETS 6

/* What the hour H0 of each mixed series must hold, computed from the inputs (not by the store's merge). */
static void expect_mixed_hour(const struct points *ps)
{
	struct dts_sketch all;
	double sum0 = 0, sum1 = 0;

	dts_sketch_init(&all);
	for (int j = 0; j < N_OFFSETS; j++) {
		const double i = rolled_offsets[j];

		sum0 += i + 1 + 2;
		sum1 += 0.25 * i;
		for (int k = 1; k <= 7; k++)
			cr_assert_eq(dts_sketch_add(&all, (i + 1) * k * 1.5, 1), 0);
	}
	for (int s = 0; s < N_MIXED; s++) {
		cr_assert_eq(ps[s].n, 1, "%s: one hour", mixed_series[s]);
		cr_expect_eq(ps[s].p[0].t, H0 * 3600);
		cr_expect(ps[s].p[0].ok);
		cr_expect_eq(ps[s].p[0].first, 0, "%s", mixed_series[s]);
		cr_expect_eq(ps[s].p[0].last, 59, "%s", mixed_series[s]);
	}
	cr_expect_eq(ps[0].p[0].agg.sum, sum0, "counters exact");
	cr_expect_eq(ps[0].p[0].agg.count, 2 * N_OFFSETS);
	cr_expect_eq(ps[1].p[0].agg.sum, sum1);
	cr_expect_eq(ps[2].p[0].agg.count, 7 * N_OFFSETS);
	cr_expect_eq(ps[2].p[0].sketch_count, 7 * N_OFFSETS);
	cr_expect_eq(ps[2].p[0].agg.min, 1.5);
	cr_expect_eq(ps[2].p[0].agg.max, 60 * 7 * 1.5);
	cr_expect_eq(ps[2].p[0].bot10, dts_sketch_quantile(&all, 0.1), "timer quantiles = those of one sketch of all");
	cr_expect_eq(ps[2].p[0].top10, dts_sketch_quantile(&all, 0.9));
	cr_expect_eq(ps[3].p[0].agg.fst, 100, "gauge fst: the hour's first minute's first value");
	cr_expect_eq(ps[3].p[0].agg.lst, 259, "gauge lst: the hour's last minute's last value");
	cr_expect_eq(ps[3].p[0].agg.min, 100);
	cr_expect_eq(ps[3].p[0].agg.max, 259);
	{
		bool seen[5] = { false };
		int distinct = N_OFFSETS; /* members 1000 + i */

		for (int j = 0; j < N_OFFSETS; j++) {
			distinct += !seen[rolled_offsets[j] % 5];
			seen[rolled_offsets[j] % 5] = true;
		}
		cr_expect_eq(ps[4].p[0].distinct, distinct, "sets: the union of the minutes' members");
	}
	dts_sketch_free(&all);
}

/*
 * In a store past its first hour, minute closes write minutes and one marker per series and hour, no hour value; the roller waits until the hour is
 * due, then writes hour values equal to the merge of the minutes, deletes the hour's markers and sets hour_done; hour
 * reads give the same answer before and after.
 */
Test(rollup, closes_write_markers_then_roller_writes_hours)
{
	struct dts_storage *st = open_marked_store();
	struct points before[N_MIXED], after[N_MIXED];
	struct dts_storage_stats s;
	char hd[32], marker[64];

	for (int j = N_OFFSETS - 1; j >= 0; j--) /* out of order: the 59th minute first */
		write_mixed(st, H0 * 60 + rolled_offsets[j]);
	cr_expect_eq(count_keys(st, DTS__CF_HOURS, ""), 0, "no hour value is written by a minute close");
	snprintf(marker, sizeof(marker), "hourq|20231114T22|");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, marker), N_MIXED, "one marker per series, whatever its minutes");
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.markers_written, N_MIXED + count_keys(st, DTS__CF_CURRENT, "hourq|20231114T23|"),
		     "and the next hour's markers pre-marked by minute 59 (rollup.premarking_spreads_markers)");
	cr_expect_eq(s.hours_late, 0);
	meta_hour_done(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "20231114T21");

	read_mixed_hours(st, T0 - 86400, T0 + 86400, before);
	expect_mixed_hour(before);

	/* not due until the minute DTS_STORAGE_ROLL_DELAY_MIN after the hour's end is stored */
	cr_expect_eq(dts_storage_roll_hours(st, DTS_STORAGE_ROLL_DUE, 0), 0);
	write_mixed(st, (H0 + 1) * 60 + DTS_STORAGE_ROLL_DELAY_MIN - 1);
	cr_expect_eq(dts_storage_roll_hours(st, DTS_STORAGE_ROLL_DUE, 0), 0);
	cr_expect_eq(count_keys(st, DTS__CF_HOURS, ""), 0);
	write_mixed(st, (H0 + 1) * 60 + DTS_STORAGE_ROLL_DELAY_MIN);
	cr_expect_eq(dts_storage_roll_hours(st, DTS_STORAGE_ROLL_DUE, 0), N_MIXED);
	cr_expect_eq(dts_storage_roll_hours(st, DTS_STORAGE_ROLL_DUE, 0), 0, "the next hour is not due");

	cr_expect_eq(count_keys(st, DTS__CF_HOURS, ""), N_MIXED, "one hour value per series");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, marker), 0, "the hour's markers are deleted");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T23|"), N_MIXED, "the next hour's stay");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|"), N_MIXED);
	meta_hour_done(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "20231114T22");
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.hours_rolled, 1);
	cr_expect_eq(s.series_rolled, N_MIXED);
	cr_expect_eq(s.hour_done, H0);

	read_mixed_hours(st, T0 - 86400, T0 + 86400, after);
	for (int i = 0; i < N_MIXED; i++) {
		cr_assert_eq(after[i].n, 2, "%s: the rolled hour and the next one (from its minutes)", mixed_series[i]);
		cr_expect_eq(after[i].n, before[i].n + 1);
		cr_expect(memcmp(&after[i].p[0], &before[i].p[0], sizeof(struct point)) == 0,
			  "%s: the same answer before and after rolling up", mixed_series[i]);
		cr_expect_eq(after[i].p[1].first, DTS_STORAGE_ROLL_DELAY_MIN - 1);
		cr_expect_eq(after[i].p[1].last, DTS_STORAGE_ROLL_DELAY_MIN);
	}
	/* the rolled value as stored, and a range that starts inside the hour */
	read_mixed_hours(st, T0 + 60, T0 + 120, after);
	expect_mixed_hour(after);
	/* a reopened store (and a read-only one) agree */
	dts_storage_close(st);
	st = open_store(DTS_STORAGE_READ_ONLY);
	read_mixed_hours(st, T0 - 86400, T0 + 86400, after);
	for (int i = 0; i < N_MIXED; i++)
		cr_expect(memcmp(&after[i].p[0], &before[i].p[0], sizeof(struct point)) == 0, "%s", mixed_series[i]);
	dts_storage_close(st);
}

/* A crash between the minute closes and the rollup: the markers are in the store, the restarted writer rolls the
 * hour up; a crash in the middle of an hour's rollup: the hour is rolled again from the start, with the same result. */
Test(rollup, crash_before_or_during_the_rollup_still_rolls_the_hour)
{
	struct dts_storage *st = open_marked_store();
	struct points ps[N_MIXED], again[N_MIXED];
	bool progress = false;
	char hd[32];

	for (int j = 0; j < N_OFFSETS; j++)
		write_mixed(st, H0 * 60 + rolled_offsets[j]);
	write_mixed(st, (H0 + 1) * 60 + DTS_STORAGE_ROLL_DELAY_MIN);
	dts_storage_close(st); /* "crash": nothing rolled up */

	st = open_store(DTS_STORAGE_READ_WRITE);
	cr_expect_eq(count_keys(st, DTS__CF_HOURS, ""), 0);
	/* two chunks of one series, then a crash in the middle of the hour */
	cr_assert_eq(dts__roll_chunk(st, DTS_STORAGE_ROLL_DUE, INT64_MAX, 1, &progress), 1);
	cr_assert(progress);
	cr_assert_eq(dts__roll_chunk(st, DTS_STORAGE_ROLL_DUE, INT64_MAX, 1, &progress), 1);
	cr_expect_eq(count_keys(st, DTS__CF_HOURS, ""), 2, "two hour values written");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|"), N_MIXED, "markers go with the last chunk");
	meta_hour_done(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "20231114T21");
	read_mixed_hours(st, 0, DTS_STORAGE_TIME_MAX, ps);
	dts_storage_close(st);

	st = open_store(DTS_STORAGE_READ_WRITE);
	cr_expect_eq(dts_storage_roll_hours(st, DTS_STORAGE_ROLL_DUE, 0), N_MIXED, "rolled again from the first");
	meta_hour_done(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "20231114T22");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|"), 0);
	read_mixed_hours(st, 0, DTS_STORAGE_TIME_MAX, again);
	for (int i = 0; i < N_MIXED; i++) {
		cr_assert_eq(again[i].n, 2);
		cr_expect(memcmp(&again[i].p[0], &ps[i].p[0], sizeof(struct point)) == 0, "%s", mixed_series[i]);
	}
	read_mixed_hours(st, T0, T0 + 1, again);
	expect_mixed_hour(again);
	dts_storage_close(st);
}

/*
 * Minutes that arrive while an hour is being rolled up, between two chunks: for a series already rolled up the hour
 * is read-merge-written at once, for a later one the roller finds the minute; a series new in the hour gets a marker
 * if the roller has not passed it. Every datum ends up once in its hour.
 */
Test(rollup, minutes_between_chunks_are_counted_once)
{
	struct dts_storage *st = open_marked_store();
	const double one[] = { 1 }, late[] = { 1000 };
	static const char *const names[] = { "b", "d", "f" };
	struct dts_storage_stats s;
	bool progress = false;

	for (int m = 0; m < 3; m++) {
		struct dts_closed_minute *cm = cm_new(H0 * 60 + m, 3);

		for (int i = 0; i < 3; i++) {
			rec_init(&cm->recs[i], "u", "api", names[i], "", DTS_COUNTER);
			rec_add(&cm->recs[i], 1);
		}
		cm->n = 3;
		cr_assert_eq(dts_storage_write_minute(st, cm), 0);
		dts_closed_minute_release(cm);
	}
	{
		struct dts_closed_minute *due = cm_counter((H0 + 1) * 60 + DTS_STORAGE_ROLL_DELAY_MIN, one, 1);

		cr_assert_eq(dts_storage_write_minute(st, due), 0);
		dts_closed_minute_release(due);
	}
	/* the first chunk rolls up u/api/b/c and u/api/d/c (marker order) */
	cr_assert_eq(dts__roll_chunk(st, DTS_STORAGE_ROLL_DUE, INT64_MAX, 2, &progress), 2);
	/* late data for minute 1: b and d (rolled up), f (not yet), a (new, before the cursor), g (new, after it) */
	{
		static const char *const late_names[] = { "a", "b", "d", "f", "g" };
		struct dts_closed_minute *cm = cm_new(H0 * 60 + 1, 5);

		for (int i = 0; i < 5; i++) {
			rec_init(&cm->recs[i], "u", "api", late_names[i], "", DTS_COUNTER);
			rec_add(&cm->recs[i], late[0]);
		}
		cm->n = 5;
		cm->late = true;
		cr_assert_eq(dts_storage_write_minute(st, cm), 0);
		dts_closed_minute_release(cm);
	}
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.hours_late, 3, "a, b and d read-merge-write their hour");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|u/api/g"), 1, "g gets a marker");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|u/api/a"), 0,
		     "a does not: the roller is past it");
	cr_assert_geq(dts_storage_roll_hours(st, DTS_STORAGE_ROLL_DUE, 0), 2);
	static const struct {
		const char *series;
		double sum;
	} want[] = { { "u/api/a/c", 1000 }, { "u/api/b/c", 1003 }, { "u/api/d/c", 1003 }, { "u/api/f/c", 1003 },
		     { "u/api/g/c", 1000 } };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct points ps = read_all(st, DTS_RES_HOUR, want[i].series);

		cr_assert_eq(ps.n, 1, "%s", want[i].series);
		cr_expect_eq(ps.p[0].agg.sum, want[i].sum, "%s: every datum once", want[i].series);
		cr_expect_eq(count_keys(st, DTS__CF_HOURS, want[i].series), 1, "%s: stored", want[i].series);
	}
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|"), 0);
	dts_storage_close(st);
}

/* Late data: for a rolled-up hour the minute is merged and the hour read-merge-written at once (no marker); for an
 * hour not rolled up yet, only the minute (and a marker for a series new in that hour). */
Test(rollup, late_minute_of_a_rolled_hour_updates_the_hour)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	const double a[] = { 5 }, b[] = { 7 }, c[] = { 11 }, d[] = { 13 };
	struct dts_closed_minute *m1 = cm_counter(H0 * 60 + 10, a, 1), *due = cm_counter((H0 + 1) * 60 + 10, b, 1);
	struct dts_closed_minute *late = cm_counter(H0 * 60 + 10, c, 1), *late2 = cm_counter((H0 + 1) * 60 + 3, d, 1);
	struct dts_storage_stats s;
	struct points ps;

	cr_assert_eq(dts_storage_write_minute(st, m1), 0);
	cr_assert_eq(dts_storage_write_minute(st, due), 0);
	cr_assert_eq(dts_storage_roll_hours(st, DTS_STORAGE_ROLL_DUE, 0), 1);
	late->late = late2->late = true;
	cr_assert_eq(dts_storage_write_minute(st, late), 0);
	cr_assert_eq(dts_storage_write_minute(st, late2), 0);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.hours_late, 1, "only the rolled-up hour is read-merge-written");
	cr_expect_eq(s.records_merged, 1, "the late minute 22:10 merges into the stored one");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|"), 0, "no marker below hour_done");
	cr_expect_eq(count_keys(st, DTS__CF_HOURS, ""), 1, "the open hour 23 has no value yet");
	ps = read_all(st, DTS_RES_HOUR, "u/api/hits/c");
	cr_assert_eq(ps.n, 2);
	cr_expect_eq(ps.p[0].agg.sum, 16, "hour 22: 5 + 11");
	cr_expect_eq(ps.p[0].agg.lst, 11);
	cr_expect_eq(ps.p[1].agg.sum, 20, "hour 23 from its minutes: 7 + 13");
	cr_expect_eq(ps.p[1].first, 3);
	cr_expect_eq(ps.p[1].agg.fst, 13, "fst of the hour is minute 3's although it was stored later");
	ps = read_all(st, DTS_RES_MINUTE, "u/api/hits/c");
	cr_assert_eq(ps.n, 3);
	cr_expect_eq(ps.p[0].agg.sum, 16);
	/* rolled up now, the hour holds the same */
	cr_assert_eq(dts_storage_roll_hours(st, H0 + 1, 0), 1);
	ps = read_all(st, DTS_RES_HOUR, "u/api/hits/c");
	cr_assert_eq(ps.n, 2);
	cr_expect_eq(ps.p[1].agg.sum, 20);
	cr_expect_eq(ps.p[1].agg.fst, 13);
	dts_closed_minute_release(m1);
	dts_closed_minute_release(due);
	dts_closed_minute_release(late);
	dts_closed_minute_release(late2);
	dts_storage_close(st);
}

/*
 * Retention: an hour whose minutes may have expired before it was rolled up (a store stopped for longer than the
 * minutes' retention) keeps a stored hour value rather than being overwritten with less; a series without a stored
 * value gets the rollup of the minutes that are left; a rolled-up hour outlives its minutes.
 */
Test(rollup, retention_keeps_stored_hours_over_expired_minutes)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_stored v;
	uint8_t buf[256];
	char *rerr = NULL;
	struct points ps;
	int n;

	/* minutes 0..9 and 50..59 of hour 22 for two series */
	for (int m = 0; m < 60; m += (m == 9 ? 41 : 1)) {
		struct dts_closed_minute *cm = cm_new(H0 * 60 + m, 2);

		rec_init(&cm->recs[0], "u", "api", "kept", "", DTS_COUNTER);
		rec_init(&cm->recs[1], "u", "api", "left", "", DTS_COUNTER);
		rec_add(&cm->recs[0], 1);
		rec_add(&cm->recs[1], 1);
		cm->n = 2;
		cr_assert_eq(dts_storage_write_minute(st, cm), 0);
		dts_closed_minute_release(cm);
	}
	/* u/api/kept/c has a stored hour (as the previous release or an interrupted rollup wrote it) */
	dts_stored_init(&v);
	v.type = DTS_COUNTER;
	v.first = 0;
	v.last = 59;
	dts_agg_add(&v.agg, 20, 20);
	n = dts_storage_value_encode(&v, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_HOURS], "u/api/kept/c|20231114T22", 24, (const char *)buf,
		       (size_t)n, &rerr);
	cr_assert_null(rerr);
	/* 15 days and 30 minutes later the minutes 22:00..22:29 are expired: cutoff 22:30 */
	atomic_store(&fake_now, H0 * 3600 + 15 * 86400 + 1800);
	{
		const double one[] = { 1 };
		struct dts_closed_minute *due = cm_counter((H0 + 1) * 60 + DTS_STORAGE_ROLL_DELAY_MIN, one, 1);

		cr_assert_eq(dts_storage_write_minute(st, due), 0);
		dts_closed_minute_release(due);
	}
	cr_assert_eq(dts_storage_flush(st), 0);
	cr_assert_eq(dts_storage_compact(st, DTS_RES_MINUTE), 0);
	cr_expect_eq(read_all(st, DTS_RES_MINUTE, "u/api/left/c").n, 10, "22:50..22:59 are left");
	/* before the rollup the read follows the same rule */
	ps = read_all(st, DTS_RES_HOUR, "u/api/kept/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.count, 20, "the stored value, not the 10 minutes left: %g", ps.p[0].agg.count);
	/* the store's first hour: the scan visits kept, left and the due minute's u/api/hits/c */
	cr_assert_eq(dts_storage_roll_hours(st, DTS_STORAGE_ROLL_DUE, 0), 3);
	ps = read_all(st, DTS_RES_HOUR, "u/api/kept/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.count, 20, "kept, not overwritten with less");
	ps = read_all(st, DTS_RES_HOUR, "u/api/left/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.count, 10, "no stored hour: the rollup of what is left");
	cr_expect_eq(ps.p[0].first, 50);
	/* the minutes go, the hours stay */
	atomic_store(&fake_now, H0 * 3600 + 20 * 86400);
	cr_assert_eq(dts_storage_compact(st, DTS_RES_MINUTE), 0);
	cr_assert_eq(dts_storage_compact(st, DTS_RES_HOUR), 0);
	cr_expect_eq(read_all(st, DTS_RES_MINUTE, "u/api/left/c").n, 0);
	cr_expect_eq(read_all(st, DTS_RES_HOUR, "u/api/left/c").n, 1);
	cr_expect_eq(read_all(st, DTS_RES_HOUR, "u/api/kept/c").n, 1);
	dts_stored_free(&v);
	dts_storage_close(st);
}

/*
 * A store written by the previous release (hours read-merge-written by every minute, no hour_done): at open every
 * hour up to the hwm's is declared complete, its stored hours are read as they are, and a minute of such an hour
 * read-merge-writes it; later hours are rolled up.
 */
Test(rollup, store_of_the_previous_release_is_migrated)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_stored v;
	uint8_t buf[256];
	char *rerr = NULL, hd[32];
	struct points ps;
	int n;

	/* what the previous release left: minute 22:14 (sum 3), hour 22 (sum 3 + an older minute's 4), hwm 22:14 */
	dts_stored_init(&v);
	dts_agg_add(&v.agg, 3, 1);
	n = dts_storage_value_encode(&v, buf, sizeof(buf));
	rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_MINUTES], "u/api/hits/c|20231114T2214", 26, (const char *)buf,
		       (size_t)n, &rerr);
	cr_assert_null(rerr);
	v.last = 14;
	dts_agg_add(&v.agg, 4, 1);
	n = dts_storage_value_encode(&v, buf, sizeof(buf));
	rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_HOURS], "u/api/hits/c|20231114T22", 24, (const char *)buf,
		       (size_t)n, &rerr);
	cr_assert_null(rerr);
	rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_META], "hwm_minute", 10, "20231114T2214", 13, &rerr);
	cr_assert_null(rerr);
	dts_storage_close(st);

	st = open_store(DTS_STORAGE_READ_WRITE);
	meta_hour_done(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "20231114T22", "migrated: the hwm's hour is complete");
	ps = read_all(st, DTS_RES_HOUR, "u/api/hits/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.sum, 7, "the stored hour, not the one minute left");
	{
		const double x[] = { 10 }, y[] = { 20 };
		struct dts_closed_minute *same = cm_counter(M0 + 1, x, 1), *next = cm_counter(M0 + 60, y, 1);

		cr_assert_eq(dts_storage_write_minute(st, same), 0);
		cr_assert_eq(dts_storage_write_minute(st, next), 0);
		dts_closed_minute_release(same);
		dts_closed_minute_release(next);
	}
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|"), 0);
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T23|"), 1);
	ps = read_all(st, DTS_RES_HOUR, "u/api/hits/c");
	cr_assert_eq(ps.n, 2);
	cr_expect_eq(ps.p[0].agg.sum, 17, "read-merge-written: 3 + 4 + 10");
	cr_expect_eq(ps.p[1].agg.sum, 20);
	dts_stored_free(&v);
	dts_storage_close(st);
}

/* The storage thread rolls due hours up by itself between minutes; hour reads at every moment are complete. */
Test(rollup, sink_rolls_due_hours_in_the_background)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_storage_stats s;
	struct dts_sink cb;
	struct dts_storage_sink *sink = sink_start(st, &cb);
	struct points ps[N_MIXED];

	for (int j = 0; j < N_OFFSETS; j++)
		cb.minute_closed(cb.ctx, cm_mixed(H0 * 60 + rolled_offsets[j]));
	cb.minute_closed(cb.ctx, cm_mixed((H0 + 1) * 60 + DTS_STORAGE_ROLL_DELAY_MIN));
	/* The storage thread counts the hour, then the chunk's series and time: wait for all three, not the first. */
	for (int i = 0; i < 1000; i++) {
		dts_storage_stats_read(st, &s);
		if (s.hours_rolled == 1 && s.series_rolled == N_MIXED && s.roll_ns_total > 0)
			break;
		usleep(10000);
	}
	cr_assert_eq(s.hours_rolled, 1, "the storage thread rolled the due hour up");
	cr_expect_eq(s.series_rolled, N_MIXED);
	cr_expect_eq(s.hour_done, H0);
	cr_expect_gt(s.roll_ns_total, 0);
	dts_storage_sink_stop(sink);
	cr_expect_eq(count_keys(st, DTS__CF_HOURS, ""), N_MIXED, "hour 23 is not due");
	read_mixed_hours(st, T0, T0 + 1, ps);
	expect_mixed_hour(ps);
	dts_storage_close(st);
}

/*
 * Pre-marking: the newest minutes 30..59 of an hour put the next hour's markers, a 30th of the series each, so minute 0
 * of the next hour puts none for the series that continue. A series that stopped gets a marker it does not need: its
 * rollup writes nothing. Late data does not pre-mark.
 */
Test(rollup, premarking_spreads_markers_over_the_hour)
{
	enum { SERIES = 60 };
	struct dts_storage *st = open_marked_store();
	struct dts_storage_stats s0, s;
	uint64_t per_minute_max = 0;

	for (int m = 0; m < 61; m++) {
		/* series 0 stops after minute 59 of hour 22; minute 60 is minute 0 of hour 23 */
		struct dts_closed_minute *cm = cm_new(H0 * 60 + m, SERIES);
		const int first = m == 60 ? 1 : 0;

		for (int i = first; i < SERIES; i++) {
			char name[16];

			snprintf(name, sizeof(name), "c%d", i);
			rec_init(&cm->recs[cm->n], "u", "api", name, "", DTS_COUNTER);
			rec_add(&cm->recs[cm->n++], 1);
		}
		dts_storage_stats_read(st, &s0);
		cr_assert_eq(dts_storage_write_minute(st, cm), 0);
		dts_storage_stats_read(st, &s);
		if (m > 0)
			per_minute_max = s.markers_written - s0.markers_written > per_minute_max ?
						 s.markers_written - s0.markers_written :
						 per_minute_max;
		if (m == 29)
			cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T23|"), 0, "not before minute 30");
		if (m == 59)
			cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T23|"), SERIES,
				     "every series of hour 22 pre-marked for hour 23");
		if (m == 60)
			cr_expect_eq(s.markers_written, s0.markers_written, "minute 0 of hour 23 puts no marker");
		dts_closed_minute_release(cm);
	}
	cr_expect_lt(per_minute_max, SERIES / 2, "no minute after the first puts a marker for most series");
	/* a late part of minute 22:45 (not the newest minute) does not pre-mark */
	write_late_one(st, H0 * 60 + 45, "late-only");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|u/api/late-only"), 1);
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T23|u/api/late-only"), 0);
	cr_assert_eq(dts_storage_roll_hours(st, H0 + 1, 0), 2 * SERIES + 1);
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|"), 0);
	cr_expect_eq(read_all(st, DTS_RES_HOUR, "u/api/c0/c").n, 1, "series 0: hour 22 only, no empty hour 23");
	cr_expect_eq(count_keys(st, DTS__CF_HOURS, "u/api/c0/c|"), 1);
	cr_expect_eq(read_all(st, DTS_RES_HOUR, "u/api/c1/c").n, 2);
	cr_expect_eq(read_all(st, DTS_RES_HOUR, "u/api/c1/c").p[0].agg.count, 60);
	dts_storage_close(st);
}

/*
 * A restart loads the stored markers of the open hours into the writer's sets: the first close after it puts none for
 * the series that have one (at 1M series it used to put a million, as slow as a new store's first close), still puts
 * one for a new series, and the hour is rolled up as before.
 */
Test(rollup, restart_loads_markers_so_the_next_close_puts_none)
{
	struct dts_storage *st = open_marked_store();
	struct points ps[N_MIXED];
	struct dts_storage_stats s;

	write_mixed(st, H0 * 60 + rolled_offsets[0]);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.markers_written, N_MIXED);
	dts_storage_close(st);

	st = open_store(DTS_STORAGE_READ_WRITE);
	for (int j = 1; j < N_OFFSETS; j++)
		write_mixed(st, H0 * 60 + rolled_offsets[j]);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.markers_written, (uint64_t)count_keys(st, DTS__CF_CURRENT, "hourq|20231114T23|"),
		     "after the restart only the next hour's pre-marks are put, none for hour 22");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|"), N_MIXED);
	write_late_one(st, H0 * 60 + 59, "newcomer");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|u/api/newcomer"), 1, "a new series: a marker");
	cr_assert_eq(dts_storage_roll_hours(st, H0, 0), N_MIXED + 1);
	read_mixed_hours(st, T0 - 86400, T0 + 86400, ps);
	expect_mixed_hour(ps);
	cr_expect_eq(read_all(st, DTS_RES_HOUR, "u/api/newcomer/c").n, 1);
	dts_storage_close(st);
}

/* Every key and value of family cf, as length-prefixed bytes in key order (malloc'd into *out; returns the length). */
static size_t dump_cf(struct dts_storage *st, int cf, char **out)
{
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf[cf]);
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	cr_assert_not_null(buf);
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl), *v = rocksdb_iter_value(it, &vl);

		while (len + kl + vl + 2 * sizeof(size_t) > cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
		memcpy(buf + len, &kl, sizeof(kl));
		memcpy(buf + len + sizeof(kl), k, kl);
		len += sizeof(kl) + kl;
		memcpy(buf + len, &vl, sizeof(vl));
		memcpy(buf + len + sizeof(vl), v, vl);
		len += sizeof(vl) + vl;
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	*out = buf;
	return len;
}

/* meta "hour_scan" as stored ("" when absent). */
static void meta_hour_scan(struct dts_storage *st, char *buf, size_t len)
{
	meta_str(st, "hour_scan", buf, len);
}

/* The same minutes for both ways of rolling up: the mixed series in H0 (u/api/hits/c/env:prod sorts before
 * u/api/hits/c in the minutes family, after it in marker order), a series with minutes only in the next hour (the
 * scan skips it), a late minute of the hour before H0 (read-merge-written: before hour_done), and the due minute. */
static void write_first_hour(struct dts_storage *st)
{
	const double late[] = { 9 }, due_v[] = { 1 };
	struct dts_closed_minute *cm;

	for (int j = 0; j < N_OFFSETS; j++)
		write_mixed(st, H0 * 60 + rolled_offsets[j]);
	cm = cm_counter(H0 * 60 - 5, late, 1);
	cm->late = true;
	cr_assert_eq(dts_storage_write_minute(st, cm), 0);
	dts_closed_minute_release(cm);
	for (int m = 1; m <= DTS_STORAGE_ROLL_DELAY_MIN; m++) {
		cm = cm_new((H0 + 1) * 60 + m, 2);
		rec_init(&cm->recs[0], "u", "api", "later", "", DTS_COUNTER);
		rec_add(&cm->recs[0], m);
		rec_init(&cm->recs[1], "u", "api", "hits", "", DTS_COUNTER);
		rec_add(&cm->recs[1], due_v[0]);
		cm->n = 2;
		cr_assert_eq(dts_storage_write_minute(st, cm), 0);
		dts_closed_minute_release(cm);
	}
}

/*
 * A new store's first hour: its closes put no marker (only the next hour's pre-marks) and meta hour_scan; the roller
 * rolls it up by scanning the minutes family, in chunks, and writes exactly the hours family the marker walk writes
 * for the same minutes (compared byte for byte with a store past its first hour); the last chunk deletes hour_scan
 * and sets hour_done.
 */
Test(rollup, first_hour_of_a_new_store_is_rolled_up_by_a_scan)
{
	struct dts_storage *st, *mk;
	struct dts_storage_stats s;
	struct points before[N_MIXED], after[N_MIXED];
	char hd[32], *scan_hours, *marker_hours, *scan_minutes, *marker_minutes;
	size_t scan_len, marker_len, lm, lm2;
	bool progress;
	long rolled = 0, chunks = 0, rc, next_markers;

	st = open_store(DTS_STORAGE_READ_WRITE);
	write_first_hour(st);
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|"), 0, "no marker for the first hour");
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.markers_written, (uint64_t)count_keys(st, DTS__CF_CURRENT, "hourq|20231114T23|"),
		     "only the next hour's (pre-marks and the series new in it)");
	cr_expect_eq(s.hours_late, 1, "the minute before the first hour read-merge-writes its hour");
	meta_hour_done(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "20231114T21", "a new store: every hour before its first minute's is done");
	meta_hour_scan(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "20231114T22");
	read_mixed_hours(st, T0 - 86400, T0 + 86400, before);
	next_markers = count_keys(st, DTS__CF_CURRENT, "hourq|20231114T23|");
	cr_expect_geq(next_markers, 2, "at least u/api/later/c and u/api/hits/c, new in hour 23");

	/* chunks of one series each (the scan visits six: the five mixed ones and u/api/later/c, in the minutes
	 * family's order); the last one moves hour_done and deletes hour_scan */
	do {
		progress = false;
		rc = dts__roll_chunk(st, DTS_STORAGE_ROLL_DUE, INT64_MAX, 1, &progress);
		cr_assert_geq(rc, 0);
		rolled += rc;
		chunks += progress;
		if (progress && chunks < 6) {
			meta_hour_scan(st, hd, sizeof(hd));
			cr_expect_str_eq(hd, "20231114T22", "hour_scan stays until the last chunk");
		}
	} while (progress);
	cr_expect_eq(rolled, N_MIXED + 1, "the series of the minutes family");
	cr_expect_eq(chunks, N_MIXED + 1, "one chunk per series of the minutes family");
	meta_hour_done(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "20231114T22");
	meta_hour_scan(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "", "deleted with the hour_done it led to");
	cr_expect_eq(st->scan_hour, INT64_MIN);
	read_mixed_hours(st, T0 - 86400, T0 + 86400, after);
	for (int i = 0; i < N_MIXED; i++) {
		cr_assert_eq(after[i].n, before[i].n, "%s", mixed_series[i]);
		cr_expect(memcmp(&after[i].p[0], &before[i].p[0], sizeof(struct point)) == 0,
			  "%s: the same answer before and after rolling up", mixed_series[i]);
	}
	read_mixed_hours(st, T0, T0 + 1, after);
	expect_mixed_hour(after);
	scan_len = dump_cf(st, DTS__CF_HOURS, &scan_hours);
	lm = dump_cf(st, DTS__CF_MINUTES, &scan_minutes);
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T23|"), next_markers, "the next hour's stay");
	dts_storage_close(st);

	/* the same minutes in a store past its first hour: markers, rolled up by the marker walk */
	snprintf(dbdir, sizeof(dbdir), "%s/db-marked", tmpdir);
	mk = open_marked_store();
	write_first_hour(mk);
	cr_expect_eq(count_keys(mk, DTS__CF_CURRENT, "hourq|20231114T22|"), N_MIXED);
	cr_expect_eq(dts_storage_roll_hours(mk, DTS_STORAGE_ROLL_DUE, 0), N_MIXED);
	marker_len = dump_cf(mk, DTS__CF_HOURS, &marker_hours);
	lm2 = dump_cf(mk, DTS__CF_MINUTES, &marker_minutes);
	cr_assert_eq(lm, lm2, "the same minutes both ways");
	cr_assert(memcmp(scan_minutes, marker_minutes, lm) == 0);
	cr_assert_gt(scan_len, 0);
	cr_expect_eq(count_keys(mk, DTS__CF_HOURS, ""), N_MIXED + 1, "hour 22 of each series and hits' hour 21");
	cr_assert_eq(scan_len, marker_len, "the same hours family both ways");
	cr_expect(memcmp(scan_hours, marker_hours, scan_len) == 0, "byte for byte");
	free(scan_hours);
	free(marker_hours);
	free(scan_minutes);
	free(marker_minutes);
	dts_storage_close(mk);
}

/*
 * Restarts during a new store's first hour and during its scan: the closes after a restart still put no marker for
 * the hour (hour_scan is read at open); minutes that arrive between two chunks of the scan are read-merge-written
 * (series at or before the scan's position) or found by the scan (later series); a crash in the middle of the scan
 * starts it again from the first series. Every datum ends up once in its hour.
 */
Test(rollup, restarts_in_the_first_hour_and_its_scan_roll_it_once)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	/* scan order: u/api/b/c/x:1 before u/api/b/c ('/' < '|'), marker order the other way round */
	static const char *const names[] = { "b", "b", "d", "f" }, *const tags[] = { "x:1", "", "", "" };
	struct dts_storage_stats s;
	bool progress = false;
	char hd[32];

	for (int m = 0; m < 4; m++) {
		struct dts_closed_minute *cm = cm_new(H0 * 60 + m, 4);

		for (int i = 0; i < 4; i++) {
			rec_init(&cm->recs[i], "u", "api", names[i], tags[i], DTS_COUNTER);
			rec_add(&cm->recs[i], 1);
		}
		cm->n = 4;
		cr_assert_eq(dts_storage_write_minute(st, cm), 0);
		dts_closed_minute_release(cm);
		if (m == 1) { /* restart in the middle of the first hour */
			dts_storage_close(st);
			st = open_store(DTS_STORAGE_READ_WRITE);
			cr_expect_eq(st->scan_hour, H0, "hour_scan read at open");
		}
	}
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.markers_written, 0, "no marker before or after the restart");
	{
		const double one[] = { 1 };
		struct dts_closed_minute *due = cm_counter((H0 + 1) * 60 + DTS_STORAGE_ROLL_DELAY_MIN, one, 1);

		cr_assert_eq(dts_storage_write_minute(st, due), 0);
		dts_closed_minute_release(due);
	}
	/* the first chunk rolls up u/api/b/c/x:1 and u/api/b/c (the minutes family's order): the position is u/api/b/c,
	 * which marker order would put before u/api/b/c/x:1 */
	cr_assert_eq(dts__roll_chunk(st, DTS_STORAGE_ROLL_DUE, INT64_MAX, 2, &progress), 2);
	cr_expect(st->roll_scan);
	/* late data for minute 1: b and b/x:1 (rolled up), d and f (not yet), a (new, before the position), g (new,
	 * after) */
	{
		static const char *const late_names[] = { "a", "b", "b", "d", "f", "g" };
		static const char *const late_tags[] = { "", "", "x:1", "", "", "" };
		struct dts_closed_minute *cm = cm_new(H0 * 60 + 1, 6);

		for (int i = 0; i < 6; i++) {
			rec_init(&cm->recs[i], "u", "api", late_names[i], late_tags[i], DTS_COUNTER);
			rec_add(&cm->recs[i], 1000);
		}
		cm->n = 6;
		cm->late = true;
		cr_assert_eq(dts_storage_write_minute(st, cm), 0);
		dts_closed_minute_release(cm);
	}
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.hours_late, 3, "a, b and b/x:1 read-merge-write their hour");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|20231114T22|"), 0, "still no marker");
	{
		/* the stored hour of the tagged series has the late datum (it is before the position in scan order) */
		static const char key[] = "u/api/b/c/x:1|20231114T22";
		char *rerr = NULL, *v;
		size_t vl = 0;
		struct dts_stored hv;

		v = rocksdb_get_cf(st->db, st->ro_get, st->cf[DTS__CF_HOURS], key, sizeof(key) - 1, &vl, &rerr);
		cr_assert_null(rerr);
		cr_assert_not_null(v);
		dts_stored_init(&hv);
		cr_assert_eq(dts_storage_value_decode(&hv, (const uint8_t *)v, vl), 0);
		cr_expect_eq(hv.agg.sum, 1004, "four minutes of 1 and the late 1000: %g", hv.agg.sum);
		dts_stored_free(&hv);
		rocksdb_free(v);
	}
	cr_assert_eq(dts__roll_chunk(st, DTS_STORAGE_ROLL_DUE, INT64_MAX, 2, &progress), 2, "d and f");
	cr_expect_eq(count_keys(st, DTS__CF_HOURS, ""), 5, "a (late), b, b/x:1, d, f");
	dts_storage_close(st); /* crash in the middle of the scan */

	st = open_store(DTS_STORAGE_READ_WRITE);
	meta_hour_done(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "20231114T21");
	cr_expect_eq(dts_storage_roll_hours(st, DTS_STORAGE_ROLL_DUE, 0), 7, "scanned again from the first series");
	meta_hour_done(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "20231114T22");
	meta_hour_scan(st, hd, sizeof(hd));
	cr_expect_str_eq(hd, "");
	static const struct {
		const char *series;
		double sum;
	} want[] = { { "u/api/a/c", 1000 }, { "u/api/b/c", 1004 }, { "u/api/b/c/x:1", 1004 },
		     { "u/api/d/c", 1004 }, { "u/api/f/c", 1004 }, { "u/api/g/c", 1000 } };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct points ps = read_all(st, DTS_RES_HOUR, want[i].series);
		char prefix[64];

		cr_assert_eq(ps.n, 1, "%s", want[i].series);
		cr_expect_eq(ps.p[0].agg.sum, want[i].sum, "%s: every datum once", want[i].series);
		snprintf(prefix, sizeof(prefix), "%s|", want[i].series);
		cr_expect_eq(count_keys(st, DTS__CF_HOURS, prefix), 1, "%s: stored", want[i].series);
	}
	cr_expect_eq(count_keys(st, DTS__CF_HOURS, "u/api/hits/c|"), 0, "no minute in the hour: no hour value");
	dts_storage_close(st);
	/* and after the scan a restart finds nothing to scan */
	st = open_store(DTS_STORAGE_READ_WRITE);
	cr_expect_eq(st->scan_hour, INT64_MIN);
	cr_expect_eq(dts_storage_roll_hours(st, DTS_STORAGE_ROLL_DUE, 0), 0);
	dts_storage_close(st);
}

/* Enough counter series that a closed minute's batch is larger than the writer's part size (8 MiB). */
#define N_LARGE 150000

static struct dts_closed_minute *cm_large(int64_t minute, double v)
{
	struct dts_closed_minute *cm = cm_new(minute, N_LARGE);

	for (size_t i = 0; i < N_LARGE; i++) {
		char name[32];

		/* not in key order: the writer sorts */
		snprintf(name, sizeof(name), "c%zu", (i * 7919) % N_LARGE);
		rec_init(&cm->recs[i], "u", i % 2 ? "api" : "web", name, "", DTS_COUNTER);
		rec_add(&cm->recs[i], v);
	}
	cm->n = N_LARGE;
	return cm;
}

/*
 * A large closed minute that only puts is committed in parts (several WriteBatches, the hwm in the last); every
 * series and the hwm are there afterwards (and no marker: the store's first hour is rolled up by a scan). The same minute again (late data: read-merge-write) is one
 * batch and merges into every stored value.
 */
Test(store, large_minute_is_committed_in_parts)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_closed_minute *cm = cm_large(M0, 2);
	struct dts_storage_stats s0, s;
	struct points ps;

	cr_assert_eq(dts_storage_write_minute(st, cm), 0);
	dts_closed_minute_release(cm);
	dts_storage_stats_read(st, &s);
	cr_expect_geq(s.minute_parts, 2, "committed in parts");
	cr_expect_eq(s.minutes_written, 1);
	cr_expect_eq(s.records_written, N_LARGE);
	cr_expect_eq(s.hwm_minute, M0);
	cr_expect_eq(count_keys(st, DTS__CF_MINUTES, "u/"), N_LARGE);
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|"), 0, "a new store's first hour has no markers");
	cr_expect_eq(s.markers_written, 0);
	cr_expect_eq(count_keys(st, DTS__CF_META, "hour_scan"), 1);
	ps = read_all(st, DTS_RES_MINUTE, "u/api/c1/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.sum, 2);

	s0 = s;
	cm = cm_large(M0, 3);
	cm->late = true;
	cr_assert_eq(dts_storage_write_minute(st, cm), 0);
	dts_closed_minute_release(cm);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.minute_parts - s0.minute_parts, 1, "a minute that merges is one batch");
	cr_expect_eq(s.records_merged - s0.records_merged, N_LARGE);
	ps = read_all(st, DTS_RES_MINUTE, "u/web/c0/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.sum, 5, "merged once");
	cr_expect_eq(ps.p[0].agg.count, 2);
	dts_storage_close(st);
}

/*
 * A stop (dts_storage_stopping before the last closes): two large minutes through the sink. The first, with the second
 * queued behind it, has its memtable switched for a flush; the last stays in the memtable and the WAL (no flush for
 * rocksdb_close to wait for and then throw away). After the close and a reopen, which replays the WAL, every series of
 * both minutes is there with its value.
 */
Test(store, stop_leaves_the_last_close_in_the_wal_and_loses_nothing)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_sink cb;
	struct dts_storage_sink *sink = sink_start(st, &cb);
	struct dts_storage_stats s;
	uint64_t active = 0;
	struct points ps;

	dts_storage_stopping(st);
	dts_storage_stopping(st); /* idempotent */
	cb.minute_closed(cb.ctx, cm_large(M0, 2));
	cb.minute_closed(cb.ctx, cm_large(M0 + 1, 3));
	dts_storage_sink_stop(sink);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.minutes_written, 2);
	cr_expect_eq(s.records_written, 2 * N_LARGE);
	cr_expect_eq(s.dropped_minutes[DTS_SDROP_QUEUE_FULL] + s.dropped_minutes[DTS_SDROP_WRITE_FAILED], 0);
	cr_assert_eq(rocksdb_property_int_cf(st->db, st->cf[DTS__CF_MINUTES], "rocksdb.num-entries-active-mem-table",
					     &active), 0);
	cr_expect_gt(active, 0, "the last close is left in the memtable at a stop");
	dts_storage_close(st);

	st = open_store(DTS_STORAGE_READ_WRITE);
	cr_expect_eq(count_keys(st, DTS__CF_MINUTES, "u/"), 2 * N_LARGE);
	ps = read_all(st, DTS_RES_MINUTE, "u/api/c1/c");
	cr_assert_eq(ps.n, 2);
	cr_expect_eq(ps.p[0].agg.sum, 2);
	cr_expect_eq(ps.p[1].agg.sum, 3);
	ps = read_all(st, DTS_RES_MINUTE, "u/web/c0/c");
	cr_assert_eq(ps.n, 2);
	cr_expect_eq(ps.p[1].agg.sum, 3);
	dts_storage_stats_read(st, &s);
	cr_expect_eq(s.hwm_minute, M0 + 1);
	dts_storage_close(st);
}

/*
 * A crash between the parts of a new store's first closed minute: some of its series are stored (with meta hour_scan,
 * which every part of that close carries), the hwm and hour_done are not, and the minute's checkpoint rows are still
 * there. The restart stores the checkpoint as the closed minute: over the stored series (put, not merged: nothing
 * counted twice), and the hour is rolled up (by the scan) from what is stored.
 */
Test(store, crash_between_parts_restores_the_checkpoint_over_them)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	const double ck[] = { 1, 1 }, closed[] = { 1, 1, 1, 1 };
	struct dts_closed_minute *cm = cm_counter(M0, ck, 2);
	char key[128], mk[128];
	struct points ps;
	char *rerr = NULL;
	uint8_t val[256];
	struct dts_stored v;
	int vl;

	cr_assert_eq(dts_storage_write_checkpoint(st, cm), 0);
	dts_closed_minute_release(cm);
	/* what the first part of the close would have committed for this series: its closed minute and hour_scan */
	dts_stored_init(&v);
	v.type = DTS_COUNTER;
	dts_agg_init(&v.agg);
	for (size_t i = 0; i < 4; i++)
		dts_agg_add(&v.agg, closed[i], 1);
	vl = dts_storage_value_encode(&v, val, sizeof(val));
	cr_assert_gt(vl, 0);
	snprintf(key, sizeof(key), "u/api/hits/c|20231114T2214");
	rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_MINUTES], key, strlen(key), (const char *)val, (size_t)vl,
		       &rerr);
	cr_assert_null(rerr);
	snprintf(mk, sizeof(mk), "20231114T22");
	rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_META], "hour_scan", 9, mk, strlen(mk), &rerr);
	cr_assert_null(rerr);
	dts_storage_close(st);

	st = open_store(DTS_STORAGE_READ_WRITE);
	cr_expect_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 1, "the checkpoint is stored as closed");
	ps = read_all(st, DTS_RES_MINUTE, "u/api/hits/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.count, 2, "the checkpoint's value, put over the partial close (not added to it)");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "20231114T2214"), 0, "checkpoint data deleted");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "hourq|"), 0);
	cr_assert_eq(dts_storage_roll_hours(st, H0, 0), 1);
	cr_expect_eq(count_keys(st, DTS__CF_META, "hour_scan"), 0);
	ps = read_all(st, DTS_RES_HOUR, "u/api/hits/c");
	cr_assert_eq(ps.n, 1);
	cr_expect_eq(ps.p[0].agg.count, 2);
	dts_storage_close(st);
}

/* ---- checkpoint chunks (format 2) ------------------------------------------------------------------------------ */

TestSuite(ckpt, .init = make_tmp, .fini = remove_tmp, .timeout = 120);

#define CK_TIME "20231114T2214" /* M0 */

/* Counters u/api/s<first..first+n-1>/c, each with the single value v, as a checkpoint of minute. */
static struct dts_closed_minute *cm_slice(int64_t minute, int first, int n, double v, bool partial)
{
	struct dts_closed_minute *cm = cm_new(minute, (size_t)n);

	for (int i = 0; i < n; i++) {
		char name[16];

		snprintf(name, sizeof(name), "s%d", first + i);
		rec_init(&cm->recs[i], "u", "api", name, "", DTS_COUNTER);
		rec_add(&cm->recs[i], v);
	}
	cm->n = (size_t)n;
	cm->open = true;
	cm->partial = partial;
	return cm;
}

static void write_ckpt(struct dts_storage *st, struct dts_closed_minute *cm)
{
	cr_assert_eq(dts_storage_write_checkpoint(st, cm), 0);
	dts_closed_minute_release(cm);
}

/* The stored minute of u/api/s<i>/c at minute: its sum, or NAN when there is none. */
static double minute_sum(struct dts_storage *st, int i, int64_t minute)
{
	char series[32];
	struct points ps;

	snprintf(series, sizeof(series), "u/api/s%d/c", i);
	ps = read_all(st, DTS_RES_MINUTE, series);
	for (int k = 0; k < ps.n; k++)
		if (ps.p[k].t == minute * 60)
			return ps.p[k].agg.sum;
	return NAN;
}

/* A format-1 checkpoint row (what a schema-1 build left in current): TIME '|' SERIES -> value. */
static void put_format1_row(struct dts_storage *st, const char *time, const char *series, double v)
{
	struct dts_stored sv;
	uint8_t val[64];
	char key[128], *rerr = NULL;
	int vl;

	dts_stored_init(&sv);
	dts_agg_add(&sv.agg, v, 1);
	vl = dts_storage_value_encode(&sv, val, sizeof(val));
	cr_assert_eq(vl, DTS_STORAGE_VALUE_HEADER);
	snprintf(key, sizeof(key), "%s|%s", time, series);
	rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_CURRENT], key, strlen(key), (const char *)val, (size_t)vl, &rerr);
	cr_assert_null(rerr, "%s", rerr);
}

struct chunk_case {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	int open_rc; /* dts_storage_ckpt_chunk_open */
	int records; /* records returned before the end or the error */
	int last_rc; /* the call after them: 0 (end) or -EINVAL */
};

/* Chunk values built by hand: the reader returns what the table says and never reads past len. */
Test(ckpt, chunk_reader_accepts_exactly_the_format)
{
	/* two records: "u/a/b/c" -> 3 bytes, "u/a/d/c" -> 0 bytes */
	static const uint8_t ok[] = { 2, 2, 0, 0, 0, 7, 'u', '/', 'a', '/', 'b', '/', 'c', 3, 1, 2, 3,
				      7, 'u', '/', 'a', '/', 'd', '/', 'c', 0 };
	static const uint8_t empty[] = { 2, 0, 0, 0, 0 };
	static const uint8_t trailing[] = { 2, 0, 0, 0, 0, 9 };
	static const uint8_t short_count[] = { 2, 3, 0, 0, 0, 1, 'x', 0 }; /* says 3 records, holds 1 */
	static const uint8_t long_len[] = { 2, 1, 0, 0, 0, 1, 'x', 5, 1, 2 }; /* value length past the end */
	static const uint8_t nonminimal[] = { 2, 1, 0, 0, 0, 0x81, 0x00, 'x', 0 };
	static const uint8_t empty_series[] = { 2, 1, 0, 0, 0, 0, 0 };
	static const uint8_t v1[] = { 1, 0, 0, 0, 0 };
	static const uint8_t v3[] = { 3, 0, 0, 0, 0 };
	static const uint8_t header[] = { 2, 0, 0, 0 };
	const struct chunk_case cases[] = {
		{ "two records", ok, sizeof(ok), 0, 2, 0 },
		{ "no record", empty, sizeof(empty), 0, 0, 0 },
		{ "a byte after the last record", trailing, sizeof(trailing), 0, 0, -EINVAL },
		{ "fewer records than counted", short_count, sizeof(short_count), 0, 1, -EINVAL },
		{ "a value past the end", long_len, sizeof(long_len), 0, 0, -EINVAL },
		{ "a non-minimal varint", nonminimal, sizeof(nonminimal), 0, 0, -EINVAL },
		{ "an empty series", empty_series, sizeof(empty_series), 0, 0, -EINVAL },
		{ "a format-1 value", v1, sizeof(v1), -EINVAL, 0, 0 },
		{ "a newer chunk version", v3, sizeof(v3), -EPROTONOSUPPORT, 0, 0 },
		{ "a truncated header", header, sizeof(header), -EINVAL, 0, 0 },
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct chunk_case *k = &cases[c];
		/* a copy in a buffer of exactly len bytes, so that ASan sees any read past it */
		uint8_t *b = malloc(k->len);
		struct dts_ckpt_reader r;
		const char *s;
		const uint8_t *v;
		size_t sl, vl;
		int n = 0, rc;

		cr_assert_not_null(b);
		memcpy(b, k->bytes, k->len);
		cr_expect_eq(dts_storage_ckpt_chunk_open(&r, b, k->len), k->open_rc, "%s", k->name);
		if (k->open_rc == 0) {
			while ((rc = dts_storage_ckpt_chunk_next(&r, &s, &sl, &v, &vl)) > 0) {
				cr_expect(s >= (const char *)b && s + sl <= (const char *)b + k->len, "%s", k->name);
				cr_expect(v >= b && v + vl <= b + k->len, "%s", k->name);
				n++;
			}
			cr_expect_eq(n, k->records, "%s: %d records", k->name, n);
			cr_expect_eq(rc, k->last_rc, "%s: %d", k->name, rc);
		}
		free(b);
	}
	{
		struct dts_ckpt_reader r;
		const char *s;
		const uint8_t *v;
		size_t sl, vl;

		cr_assert_eq(dts_storage_ckpt_chunk_open(&r, ok, sizeof(ok)), 0);
		cr_assert_eq(dts_storage_ckpt_chunk_next(&r, &s, &sl, &v, &vl), 1);
		cr_expect(sl == 7 && !memcmp(s, "u/a/b/c", 7) && vl == 3 && v[0] == 1 && v[2] == 3);
		cr_assert_eq(dts_storage_ckpt_chunk_next(&r, &s, &sl, &v, &vl), 1);
		cr_expect(sl == 7 && !memcmp(s, "u/a/d/c", 7) && vl == 0);
	}
}

Test(ckpt, chunk_keys_sort_in_write_order)
{
	char a[64], b[64];
	int64_t t;
	uint64_t seq;
	struct {
		const char *key;
		int rc;
	} bad[] = {
		{ CK_TIME "#000000000000002A", -EINVAL }, /* upper-case hex */
		{ CK_TIME "#00000000000002a", -EINVAL }, /* 15 digits */
		{ CK_TIME "|000000000000002a", -EINVAL }, /* a format-1 row's separator */
		{ "20231314T2214#000000000000002a", -EINVAL }, /* month 13 */
		{ CK_TIME "#000000000000002a", 0 },
	};

	cr_assert_eq(dts_storage_ckpt_chunk_key(a, sizeof(a), T0 + 59, 42), DTS_STORAGE_CKPT_KEY_LEN);
	cr_expect_str_eq(a, CK_TIME "#000000000000002a");
	cr_assert_eq(dts_storage_ckpt_chunk_key_decode(a, strlen(a), &t, &seq), 0);
	cr_expect_eq(t, T0);
	cr_expect_eq(seq, 42);
	cr_expect_eq(dts_storage_ckpt_chunk_key(a, DTS_STORAGE_CKPT_KEY_LEN, T0, 1), -ENOSPC);
	/* byte order = SEQ order, and every chunk key of a minute sorts before its format-1 rows */
	dts_storage_ckpt_chunk_key(a, sizeof(a), T0, 0xf);
	dts_storage_ckpt_chunk_key(b, sizeof(b), T0, 0x10);
	cr_expect_lt(strcmp(a, b), 0);
	dts_storage_ckpt_chunk_key(b, sizeof(b), T0, UINT64_MAX);
	cr_expect_lt(strcmp(b, CK_TIME "|a/b/c/c"), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(dts_storage_ckpt_chunk_key_decode(bad[i].key, strlen(bad[i].key), &t, &seq), bad[i].rc, "%s",
			     bad[i].key);
}

/* Many series of every type in one full checkpoint: several chunks, far fewer keys than series, and a restore gives
 * every series back with its value. */
Test(ckpt, chunked_round_trip)
{
	enum { N = 6000 };
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	struct dts_closed_minute *cm = cm_new(M0, N);
	long chunks;

	for (int i = 0; i < N; i++) {
		static const uint8_t types[] = { DTS_COUNTER, DTS_TIMER, DTS_GAUGE, DTS_SET };
		char name[16];

		snprintf(name, sizeof(name), "s%d", i);
		rec_init(&cm->recs[i], "u", "api", name, i % 7 ? "" : "env:prod", types[i % 4]);
		for (int k = 0; k <= i % 40; k++)
			rec_add(&cm->recs[i], i + k * 3.5);
	}
	cm->n = N;
	cm->open = true;
	cr_assert_eq(dts_storage_write_checkpoint(st, cm), 0);
	chunks = count_keys(st, DTS__CF_CURRENT, CK_TIME "#");
	cr_expect_gt(chunks, 1, "%ld chunks", chunks);
	cr_expect_lt(chunks, N / 100, "%ld chunks for %d series", chunks, N);
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, CK_TIME "|"), 0, "no row per series");
	dts_storage_close(st);

	st = open_store(DTS_STORAGE_READ_WRITE);
	cr_assert_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), N);
	for (int i = 0; i < N; i++) {
		const struct dts_minute_rec *r = &cm->recs[i];
		char series[64];
		struct points ps;

		snprintf(series, sizeof(series), "u/api/s%d/%s%s", i, dts__type_key_name(r->type),
			 r->tags[0] ? "/env:prod" : "");
		ps = read_all(st, DTS_RES_MINUTE, series);
		cr_assert_eq(ps.n, 1, "%s", series);
		cr_expect_eq(ps.p[0].type, r->type, "%s", series);
		cr_expect_eq(ps.p[0].agg.sum, r->agg.sum, "%s", series);
		cr_expect_eq(ps.p[0].agg.count, r->agg.count, "%s", series);
		cr_expect_eq(ps.p[0].agg.min, r->agg.min, "%s", series);
		cr_expect_eq(ps.p[0].agg.lst, r->agg.lst, "%s", series);
		if (r->type == DTS_TIMER) {
			cr_expect_eq(ps.p[0].bot10, dts_sketch_quantile(&r->sketch, 0.1), "%s", series);
			cr_expect_eq(ps.p[0].top10, dts_sketch_quantile(&r->sketch, 0.9), "%s", series);
		}
		if (r->type == DTS_SET)
			cr_expect_eq(ps.p[0].distinct, dts_set_cardinality(&r->set), "%s", series);
	}
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, CK_TIME), 0, "the stored minute's chunks are deleted");
	dts_closed_minute_release(cm);
	dts_storage_close(st);
}

/* The merger's walk in slices: several partial checkpoints of one minute, disjoint within a walk, overlapping across
 * walks; the restore gives each series its newest copy, whatever chunk it is in. */
Test(ckpt, partial_slices_newest_copy_wins)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);

	/* walk 1: series 0..1999 in two slices, value 1; walk 2: 500..1499 (one slice), value 2; walk 3: 1400..1409, 3 */
	write_ckpt(st, cm_slice(M0, 0, 1000, 1, true));
	write_ckpt(st, cm_slice(M0, 1000, 1000, 1, true));
	write_ckpt(st, cm_slice(M0, 500, 1000, 2, true));
	write_ckpt(st, cm_slice(M0, 1400, 10, 3, true));
	cr_expect_geq(count_keys(st, DTS__CF_CURRENT, CK_TIME "#"), 4, "the older copies are still there");
	dts_storage_close(st); /* a crash: the minute never closed */

	st = open_store(DTS_STORAGE_READ_WRITE);
	cr_assert_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 2000, "one record per series");
	for (int i = 0; i < 2000; i++) {
		const double want = i >= 1400 && i < 1410 ? 3 : i >= 500 && i < 1500 ? 2 : 1;

		cr_expect_eq(minute_sum(st, i, M0), want, "s%d", i);
	}
	dts_storage_close(st);
}

/* A full checkpoint replaces everything before it (the minute's older chunks are deleted); partial ones after it
 * add to it. */
Test(ckpt, full_checkpoint_then_partial)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);

	write_ckpt(st, cm_slice(M0, 0, 3, 1, true)); /* s0 s1 s2 */
	write_ckpt(st, cm_slice(M0, 0, 2, 2, false)); /* full: s0 s1 (s2 has no data any more) */
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, CK_TIME "#"), 1, "the older chunk is deleted");
	write_ckpt(st, cm_slice(M0, 1, 1, 3, true)); /* s1 */
	cr_assert_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 2);
	cr_expect_eq(minute_sum(st, 0, M0), 2);
	cr_expect_eq(minute_sum(st, 1, M0), 3);
	cr_expect(isnan(minute_sum(st, 2, M0)), "s2 was only in the replaced checkpoint");
	dts_storage_close(st);
}

/* After a restart the writer continues above the SEQs a previous life stored, so its chunks are the newest; two open
 * minutes checkpointed alternately keep their own order. */
Test(ckpt, crash_restore_keeps_write_order)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);

	for (int k = 1; k <= 40; k++) {
		write_ckpt(st, cm_slice(M0, 0, 2, k, true));
		write_ckpt(st, cm_slice(M0 + 1, 0, 2, 100 + k, true));
	}
	dts_storage_close(st); /* crash */
	st = open_store(DTS_STORAGE_READ_WRITE);
	write_ckpt(st, cm_slice(M0 + 1, 1, 1, 999, true)); /* the next life's first chunk of the minute */
	dts_storage_close(st); /* crash again */

	st = open_store(DTS_STORAGE_READ_WRITE);
	cr_assert_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 4);
	cr_expect_eq(minute_sum(st, 0, M0), 40);
	cr_expect_eq(minute_sum(st, 1, M0), 40);
	cr_expect_eq(minute_sum(st, 0, M0 + 1), 140);
	cr_expect_eq(minute_sum(st, 1, M0 + 1), 999, "the chunk written after the restart wins");
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "2023"), 0, "nothing is left to restore");
	dts_storage_close(st);
}

/* A schema-1 store upgraded after a crash: its format-1 rows are restored; a chunk written after the upgrade wins
 * over a row of the same series; the schema version is raised to 2 by the read-write open. */
Test(ckpt, format1_rows_are_restored_after_an_upgrade)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	char *rerr = NULL, ver[16];

	put_format1_row(st, CK_TIME, "u/api/s0/c", 5);
	put_format1_row(st, CK_TIME, "u/api/s1/c", 6);
	put_format1_row(st, "20231114T2215", "u/api/s0/c", 7);
	rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_META], "schema_version", 14, "1", 1, &rerr);
	cr_assert_null(rerr);
	dts_storage_close(st);

	st = open_store(DTS_STORAGE_READ_ONLY);
	meta_str(st, "schema_version", ver, sizeof(ver));
	cr_expect_str_eq(ver, "1", "a read-only open changes nothing");
	dts_storage_close(st);
	st = open_store(DTS_STORAGE_READ_WRITE);
	meta_str(st, "schema_version", ver, sizeof(ver));
	cr_expect_str_eq(ver, "2");
	write_ckpt(st, cm_slice(M0, 1, 2, 8, true)); /* s1 (also in a row) and s2 */
	cr_assert_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 4);
	cr_expect_eq(minute_sum(st, 0, M0), 5, "from its format-1 row");
	cr_expect_eq(minute_sum(st, 1, M0), 8, "the chunk is newer than the row");
	cr_expect_eq(minute_sum(st, 2, M0), 8);
	cr_expect_eq(minute_sum(st, 0, M0 + 1), 7);
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "2023"), 0, "rows and chunks of the stored minutes are deleted");
	dts_storage_close(st);
}

/* The close of a minute deletes all of its checkpoint data (chunks and format-1 rows) in its batch, and only its. */
Test(ckpt, close_deletes_the_minutes_checkpoint_data)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	const double v[] = { 1 };
	struct dts_closed_minute *cm = cm_counter(M0, v, 1);

	for (int k = 0; k < 5; k++)
		write_ckpt(st, cm_slice(M0, k * 100, 100, 1, true));
	write_ckpt(st, cm_slice(M0 + 1, 0, 10, 1, true));
	put_format1_row(st, CK_TIME, "u/api/old/c", 1);
	cr_assert_eq(dts_storage_write_minute(st, cm), 0);
	dts_closed_minute_release(cm);
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, CK_TIME), 0);
	cr_expect_eq(count_keys(st, DTS__CF_CURRENT, "20231114T2215#"), 1, "the next minute's chunk stays");
	cr_assert_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 10);
	dts_storage_close(st);
}

/* A damaged chunk is logged and skipped; the other chunks of its minute are restored. */
Test(ckpt, damaged_chunk_is_skipped)
{
	struct dts_storage *st = open_store(DTS_STORAGE_READ_WRITE);
	char key[64], *rerr = NULL;
	static const uint8_t junk[] = { 2, 9, 0, 0, 0, 1 };

	write_ckpt(st, cm_slice(M0, 0, 3, 1, true));
	dts_storage_ckpt_chunk_key(key, sizeof(key), T0, 1000);
	rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_CURRENT], key, strlen(key), (const char *)junk, sizeof(junk),
		       &rerr);
	cr_assert_null(rerr);
	cr_assert_eq(dts_storage_restore(st, NULL, (T0 + 3600) * 1000), 3);
	for (int i = 0; i < 3; i++)
		cr_expect_eq(minute_sum(st, i, M0), 1);
	dts_storage_close(st);
}
