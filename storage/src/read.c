/*
 * read.c - series range reads, "the same bucket over the last days", and listing users, processes and series.
 *
 * Every call creates one iterator and moves it with Seek and Next only (no point lookups): a series' keys are
 * contiguous and in time order, so a range is one Seek plus one Next per point, and a listing is one Seek per name
 * (the key just past a name is the name followed by the byte after its terminator: '/' + 1 = '0', '|' + 1 = '}').
 *
 * Readers run on any thread concurrently with the writer; RocksDB gives each iterator a consistent snapshot.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_internal.h"

static int cf_of(enum dts_res res)
{
	return res == DTS_RES_HOUR ? DTS__CF_HOURS : DTS__CF_MINUTES;
}

static int64_t period_s(enum dts_res res)
{
	return res == DTS_RES_HOUR ? 3600 : 60;
}

/* SERIES '|' TIME(t) into buf; t beyond the last encodable time gives SERIES '}' (past every key of the series). */
static size_t bound_key(char *buf, const char *series, size_t sl, enum dts_res res, int64_t t)
{
	int n;

	memcpy(buf, series, sl);
	buf[sl] = '|';
	n = t > DTS_STORAGE_TIME_MAX ? -1 : dts_storage_time_encode(buf + sl + 1, DTS_STORAGE_TIME_LEN_MINUTE + 1, res,
								      t < 0 ? 0 : t);
	if (n < 0) {
		buf[sl] = '}';
		return sl + 1;
	}
	return sl + 1 + (size_t)n;
}

static int iter_error(rocksdb_iterator_t *it)
{
	char *rerr = NULL;

	rocksdb_iter_get_error(it, &rerr);
	if (!rerr)
		return 0;
	rocksdb_free(rerr);
	return -EIO;
}

long dts_storage_read(struct dts_storage *st, enum dts_res res, const char *series, int64_t from_s, int64_t to_s,
		      dts_storage_point_fn fn, void *ctx)
{
	const size_t sl = series ? strlen(series) : 0;
	const int64_t p = period_s(res);
	char lo[DTS_STORAGE_KEY_MAX + 1], hi[DTS_STORAGE_KEY_MAX + 1];
	size_t lol, hil;
	struct dts_key_view kv;
	struct dts_stored v;
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	long n = 0;
	int rc;

	if (!series || sl > DTS_STORAGE_SERIES_MAX || dts_storage_series_decode(series, sl, &kv) != 0 ||
	    !st->cf[cf_of(res)])
		return -EINVAL;
	if (from_s < 0)
		from_s = 0;
	if (to_s <= from_s)
		return 0;
	lol = bound_key(lo, series, sl, res, from_s);
	/* points whose period starts before to_s: the bound is to_s rounded up to the period */
	hil = bound_key(hi, series, sl, res, to_s > DTS_STORAGE_TIME_MAX ? to_s : (to_s + p - 1) / p * p);
	ro = rocksdb_readoptions_create();
	if (!ro)
		return -ENOMEM;
	rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hil);
	it = rocksdb_create_iterator_cf(st->db, ro, st->cf[cf_of(res)]);
	dts_stored_init(&v);
	for (rocksdb_iter_seek(it, lo, lol); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		const char *val = rocksdb_iter_value(it, &vl);

		if (dts_storage_key_decode(k, kl, res, &kv) != 0)
			continue; /* defensive: only our keys are written */
		rc = dts_storage_value_decode(&v, (const uint8_t *)val, vl);
		if (rc == -ENOMEM) {
			n = rc;
			break;
		}
		n++;
		if (fn && fn(ctx, kv.t, rc == 0 ? &v : NULL) != 0)
			break;
	}
	if (n >= 0 && iter_error(it))
		n = -EIO;
	dts_stored_free(&v);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	return n;
}

/* ---- the same bucket over the last days ------------------------------------------------------------------------ */

static void bucket_empty(struct dts_bucket *b)
{
	b->minutes = 0;
	b->count = b->sum = b->min = b->max = b->avg = NAN;
	b->bot10 = b->top10 = b->p50 = b->p99 = b->distinct = NAN;
}

static void bucket_summary(const struct dts_stored *acc, unsigned minutes, struct dts_bucket *b)
{
	bucket_empty(b);
	if (minutes == 0)
		return;
	b->minutes = minutes;
	b->count = acc->agg.count;
	b->sum = acc->agg.sum;
	if (acc->agg.count > 0) {
		b->min = acc->agg.min;
		b->max = acc->agg.max;
		b->avg = acc->agg.sum / acc->agg.count;
	}
	if (acc->type == DTS_TIMER && acc->sketch.count > 0) {
		b->bot10 = dts_sketch_quantile(&acc->sketch, 0.1);
		b->top10 = dts_sketch_quantile(&acc->sketch, 0.9);
		b->p50 = dts_sketch_quantile(&acc->sketch, 0.5);
		b->p99 = dts_sketch_quantile(&acc->sketch, 0.99);
	}
	if (acc->type == DTS_SET)
		b->distinct = dts_set_cardinality(&acc->set);
}

/* Field-by-field average of the buckets with data: a field that is NAN in a bucket is left out of its average. */
static void bucket_average(const struct dts_bucket *days, unsigned n, struct dts_bucket *avg)
{
	double *out[] = { &avg->count, &avg->sum, &avg->min, &avg->max, &avg->avg, &avg->bot10, &avg->top10, &avg->p50,
			  &avg->p99, &avg->distinct };
	const size_t nf = sizeof(out) / sizeof(out[0]);

	bucket_empty(avg);
	for (size_t f = 0; f < nf; f++) {
		double sum = 0;
		unsigned k = 0;

		for (unsigned d = 0; d < n; d++) {
			const double *in[] = { &days[d].count, &days[d].sum, &days[d].min, &days[d].max, &days[d].avg,
					       &days[d].bot10, &days[d].top10, &days[d].p50, &days[d].p99,
					       &days[d].distinct };

			if (days[d].minutes == 0 || isnan(*in[f]))
				continue;
			sum += *in[f];
			k++;
		}
		*out[f] = k ? sum / k : NAN;
	}
	for (unsigned d = 0; d < n; d++)
		avg->minutes += days[d].minutes > 0;
}

static void acc_reset(struct dts_stored *acc, uint8_t type)
{
	acc->type = type;
	acc->first = acc->last = 0;
	dts_agg_init(&acc->agg);
	dts_sketch_clear(&acc->sketch);
	dts_set_free(&acc->set);
}

int dts_storage_week_bucket(struct dts_storage *st, const char *series, int64_t bucket_s, unsigned bucket_len_s,
			    unsigned days, struct dts_bucket *day, struct dts_bucket *avg)
{
	const size_t sl = series ? strlen(series) : 0;
	char lo[DTS_STORAGE_KEY_MAX + 1], hi[DTS_STORAGE_KEY_MAX + 1], end[DTS_STORAGE_SERIES_MAX + 2];
	struct dts_bucket past[367];
	struct dts_key_view kv;
	struct dts_stored acc, v;
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	int rc = 0, with_data = 0;

	if (!series || sl > DTS_STORAGE_SERIES_MAX || dts_storage_series_decode(series, sl, &kv) != 0 || days == 0 ||
	    days > 366 || bucket_len_s == 0 || bucket_len_s > 86400 || !st->cf[DTS__CF_MINUTES])
		return -EINVAL;
	memcpy(end, series, sl);
	end[sl] = '}';
	ro = rocksdb_readoptions_create();
	if (!ro)
		return -ENOMEM;
	rocksdb_readoptions_set_iterate_upper_bound(ro, end, sl + 1);
	it = rocksdb_create_iterator_cf(st->db, ro, st->cf[DTS__CF_MINUTES]);
	dts_stored_init(&acc);
	dts_stored_init(&v);
	for (unsigned d = 0; d <= days && rc == 0; d++) {
		const int64_t from = bucket_s - (int64_t)d * 86400, to = from + bucket_len_s;
		unsigned minutes = 0;
		size_t lol, hil;

		acc_reset(&acc, kv.type);
		if (to > 0) {
			lol = bound_key(lo, series, sl, DTS_RES_MINUTE, from);
			hil = bound_key(hi, series, sl, DTS_RES_MINUTE, (to + 59) / 60 * 60);
			for (rocksdb_iter_seek(it, lo, lol); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
				size_t kl, vl;
				const char *k = rocksdb_iter_key(it, &kl);
				const char *val = rocksdb_iter_value(it, &vl);
				const size_t cmp = kl < hil ? kl : hil;
				const int c = memcmp(k, hi, cmp);

				if (c > 0 || (c == 0 && kl >= hil))
					break;
				if (dts_storage_value_decode(&v, (const uint8_t *)val, vl) != 0 || v.type != kv.type)
					continue; /* damaged or newer: left out of the summary */
				rc = dts_storage_value_merge(&acc, &v);
				if (rc < 0)
					break;
				minutes++;
			}
			if (rc == 0 && iter_error(it))
				rc = -EIO;
		}
		bucket_summary(&acc, minutes, &past[d]);
		if (d > 0 && minutes > 0)
			with_data++;
	}
	dts_stored_free(&acc);
	dts_stored_free(&v);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (rc < 0)
		return rc;
	if (day)
		memcpy(day, past, (days + 1) * sizeof(*day));
	if (avg)
		bucket_average(past + 1, days, avg);
	return with_data;
}

/* ---- listing --------------------------------------------------------------------------------------------------- */

/* What a listing extracts from each key: the name ends at `term` after `skip` bytes of prefix. */
struct listing {
	const char *prefix;
	size_t plen;
	char term; /* '/' for users and processes, '|' for series */
	bool whole; /* pass the key from its start (series) rather than from after the prefix */
};

static long list_keys(struct dts_storage *st, enum dts_res res, const struct listing *l, dts_storage_name_fn fn,
		      void *ctx)
{
	char seek[DTS_STORAGE_KEY_MAX + 2], upper[DTS_STORAGE_SERIES_MAX + 2];
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	size_t seekl = l->plen;
	long n = 0;

	if (!st->cf[cf_of(res)])
		return -EINVAL;
	ro = rocksdb_readoptions_create();
	if (!ro)
		return -ENOMEM;
	rocksdb_readoptions_set_fill_cache(ro, 0);
	if (l->plen) {
		memcpy(upper, l->prefix, l->plen);
		upper[l->plen - 1] = '0'; /* prefix ends in '/': '0' is the next byte */
		rocksdb_readoptions_set_iterate_upper_bound(ro, upper, l->plen);
	}
	memcpy(seek, l->prefix, l->plen);
	it = rocksdb_create_iterator_cf(st->db, ro, st->cf[cf_of(res)]);
	rocksdb_iter_seek(it, seek, seekl);
	while (rocksdb_iter_valid(it)) {
		size_t kl;
		const char *k = rocksdb_iter_key(it, &kl);
		const char *name = k + l->plen, *t;

		if (kl < l->plen || memcmp(k, l->prefix, l->plen) != 0)
			break;
		t = memchr(name, l->term, kl - l->plen);
		if (!t || t == name || (size_t)(t - k) + 1 > sizeof(seek) - 1) {
			rocksdb_iter_next(it); /* defensive: not one of our keys */
			continue;
		}
		n++;
		if (fn && (l->whole ? fn(ctx, k, (size_t)(t - k)) : fn(ctx, name, (size_t)(t - name))) != 0)
			break;
		seekl = (size_t)(t - k);
		memcpy(seek, k, seekl);
		seek[seekl++] = (char)(l->term + 1);
		rocksdb_iter_seek(it, seek, seekl);
	}
	if (iter_error(it))
		n = -EIO;
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	return n;
}

static bool valid_name(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '/' || s[i] == '|')
			return false;
	return true;
}

long dts_storage_list_users(struct dts_storage *st, enum dts_res res, dts_storage_name_fn fn, void *ctx)
{
	const struct listing l = { .prefix = "", .plen = 0, .term = '/' };

	return list_keys(st, res, &l, fn, ctx);
}

long dts_storage_list_processes(struct dts_storage *st, enum dts_res res, const char *user, dts_storage_name_fn fn,
				void *ctx)
{
	char prefix[DTS_MAX_USER + 2];
	struct listing l = { .prefix = prefix, .term = '/' };

	if (!valid_name(user, DTS_MAX_USER))
		return -EINVAL;
	l.plen = (size_t)snprintf(prefix, sizeof(prefix), "%s/", user);
	return list_keys(st, res, &l, fn, ctx);
}

long dts_storage_list_series(struct dts_storage *st, enum dts_res res, const char *user, const char *process,
			     dts_storage_name_fn fn, void *ctx)
{
	char prefix[DTS_MAX_USER + DTS_MAX_NAME + 3];
	struct listing l = { .prefix = prefix, .term = '|', .whole = true };

	if (!valid_name(user, DTS_MAX_USER) || (process && !valid_name(process, DTS_MAX_NAME)))
		return -EINVAL;
	l.plen = process ? (size_t)snprintf(prefix, sizeof(prefix), "%s/%s/", user, process) :
			   (size_t)snprintf(prefix, sizeof(prefix), "%s/", user);
	return list_keys(st, res, &l, fn, ctx);
}
