/*
 * read.c - series range reads, "the same bucket over the last days", and listing users, processes and series.
 *
 * Every call creates one iterator per family it reads and moves it with Seek and Next only (no point lookups): a
 * series' keys are contiguous and in time order, so a range is one Seek plus one Next per point, and a listing is one
 * Seek per name (the key just past a name is the name followed by the byte after its terminator: '/' + 1 = '0',
 * '|' + 1 = '}').
 *
 * Hours are rolled up in the background (roll.c): an hour after hour_done may have no value in the hours family yet,
 * or one being written, but its minutes are complete. So an hour read takes hours <= hour_done from the hours family
 * and the later ones from the minutes, merged per hour on the fly with a second iterator (the roller's merge, so the
 * answer does not change when the hour is rolled up). hour_done is loaded before the iterators are created and is
 * published by the roller after its commit, so the hours an iterator sees are at least as new as hour_done says.
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

/*
 * The time of a key of the series being read (sl bytes of SERIES): the iterator's bounds (SERIES '|' TIME, or
 * SERIES '}') keep it inside the series, so only the length, the '|' and the time are checked (the series was
 * validated once by the caller). Consecutive points share their date: its days-from-civil is kept in *dc, so most
 * keys parse four digits. Returns 0 or -EINVAL (not one of our keys).
 */
struct day_cache {
	char date[8]; /* YYYYMMDD of day_s; date[0] == 0: none yet */
	int64_t day_s;
};

static int point_time(const char *k, size_t kl, size_t sl, enum dts_res res, struct day_cache *dc, int64_t *t)
{
	const size_t tl = res == DTS_RES_HOUR ? DTS_STORAGE_TIME_LEN_HOUR : DTS_STORAGE_TIME_LEN_MINUTE;
	const char *ts = k + sl + 1;
	unsigned h, mi = 0;

	if (kl != sl + 1 + tl || k[sl] != '|')
		return -EINVAL;
	if (dc->date[0] && memcmp(ts, dc->date, 8) == 0 && ts[8] == 'T') {
		if (ts[9] < '0' || ts[9] > '9' || ts[10] < '0' || ts[10] > '9')
			return -EINVAL;
		h = (unsigned)(ts[9] - '0') * 10 + (unsigned)(ts[10] - '0');
		if (res != DTS_RES_HOUR) {
			if (ts[11] < '0' || ts[11] > '9' || ts[12] < '0' || ts[12] > '9')
				return -EINVAL;
			mi = (unsigned)(ts[11] - '0') * 10 + (unsigned)(ts[12] - '0');
		}
		if (h > 23 || mi > 59)
			return -EINVAL;
		*t = dc->day_s + h * 3600 + mi * 60;
		return 0;
	}
	if (dts_storage_time_decode(ts, tl, res, t) != 0)
		return -EINVAL;
	memcpy(dc->date, ts, 8);
	dc->day_s = *t - *t % 86400;
	return 0;
}

/* A minutes iterator positioned in one series: the hour of its current minute, or INT64_MAX past the end. */
static int64_t minute_hour(rocksdb_iterator_t *it)
{
	struct dts_key_view kv;

	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl;
		const char *k = rocksdb_iter_key(it, &kl);

		if (dts_storage_key_decode(k, kl, DTS_RES_MINUTE, &kv) == 0)
			return kv.t / 3600 * 3600;
	}
	return INT64_MAX;
}

/* The hours family's iterator: the start of its current hour, or INT64_MAX past the end. */
static int64_t stored_hour(rocksdb_iterator_t *it)
{
	struct dts_key_view kv;

	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl;
		const char *k = rocksdb_iter_key(it, &kl);

		if (dts_storage_key_decode(k, kl, DTS_RES_HOUR, &kv) == 0)
			return kv.t;
	}
	return INT64_MAX;
}

/*
 * Merge the minutes of hour t (the iterator is at its first) into acc; leaves the iterator after them. Returns the
 * minutes folded (0: none decodable), or -ENOMEM.
 */
static long fold_hour(rocksdb_iterator_t *it, int64_t t, uint8_t type, struct dts_stored *acc, struct dts_stored *tmp)
{
	unsigned n = 0;
	struct dts_key_view kv;

	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		const char *val;
		int rc;

		if (dts_storage_key_decode(k, kl, DTS_RES_MINUTE, &kv) != 0)
			continue;
		if (kv.t / 3600 * 3600 != t)
			break;
		val = rocksdb_iter_value(it, &vl);
		rc = dts__hour_fold(acc, &n, tmp, (const uint8_t *)val, vl, (uint8_t)(kv.t % 3600 / 60), type);
		if (rc < 0)
			return rc;
	}
	return n;
}

/* dts_storage_read at hour resolution (see the file comment): hours over [from_s, to_s) rounded out to hours. */
static long read_hours(struct dts_storage *st, const char *series, size_t sl, uint8_t type, int64_t from_s,
		       int64_t to_s, dts_storage_point_fn fn, void *ctx)
{
	const int64_t hd = dts__hour_done(st);
	const int64_t from_h = from_s / 3600 * 3600;
	const int64_t to_h = to_s > DTS_STORAGE_TIME_MAX ? to_s : (to_s + 3599) / 3600 * 3600;
	const int64_t mfrom = hd == INT64_MIN || (hd + 1) * 3600 < from_h ? from_h : (hd + 1) * 3600;
	char lo[DTS_STORAGE_KEY_MAX + 1], hi[DTS_STORAGE_KEY_MAX + 1], mlo[DTS_STORAGE_KEY_MAX + 1],
		mhi[DTS_STORAGE_KEY_MAX + 1];
	size_t lol, hil, mlol, mhil;
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create(), *rom = rocksdb_readoptions_create();
	rocksdb_iterator_t *ith = NULL, *itm = NULL;
	struct dts_stored v, tmp;
	long n = 0;

	if (!ro || !rom) {
		n = -ENOMEM;
		goto out;
	}
	lol = bound_key(lo, series, sl, DTS_RES_HOUR, from_h);
	hil = bound_key(hi, series, sl, DTS_RES_HOUR, to_h);
	rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hil);
	ith = rocksdb_create_iterator_cf(st->db, ro, st->cf[DTS__CF_HOURS]);
	rocksdb_iter_seek(ith, lo, lol);
	if (mfrom < to_h && st->cf[DTS__CF_MINUTES]) {
		mlol = bound_key(mlo, series, sl, DTS_RES_MINUTE, mfrom);
		mhil = bound_key(mhi, series, sl, DTS_RES_MINUTE, to_h);
		rocksdb_readoptions_set_iterate_upper_bound(rom, mhi, mhil);
		itm = rocksdb_create_iterator_cf(st->db, rom, st->cf[DTS__CF_MINUTES]);
		rocksdb_iter_seek(itm, mlo, mlol);
	}
	dts_stored_init(&v);
	dts_stored_init(&tmp);
	for (;;) {
		const int64_t th = stored_hour(ith), tm = itm ? minute_hour(itm) : INT64_MAX;
		const struct dts_stored *pv = NULL;
		long folded;
		int rc;

		if (th == INT64_MAX && tm == INT64_MAX)
			break;
		if (tm < th || (tm == th && !dts__hour_at_risk(st, th / 3600))) {
			/* not rolled up yet: the merge of its minutes (a stored value of the same hour is older) */
			folded = fold_hour(itm, tm, type, &v, &tmp);
			if (folded < 0) {
				n = folded;
				break;
			}
			pv = folded > 0 ? &v : NULL;
			if (tm == th)
				rocksdb_iter_next(ith);
		} else {
			/* rolled up, or kept: its minutes may have expired (the roller keeps such a value too) */
			size_t vl;
			const char *val = rocksdb_iter_value(ith, &vl);

			rc = dts_storage_value_decode(&v, (const uint8_t *)val, vl);
			if (rc == -ENOMEM) {
				n = rc;
				break;
			}
			pv = rc == 0 ? &v : NULL;
			rocksdb_iter_next(ith);
			if (tm == th)
				while (minute_hour(itm) == tm)
					rocksdb_iter_next(itm);
		}
		n++;
		if (fn && fn(ctx, tm < th ? tm : th, pv) != 0)
			break;
	}
	if (n >= 0 && (iter_error(ith) || (itm && iter_error(itm))))
		n = -EIO;
	dts_stored_free(&v);
	dts_stored_free(&tmp);
out:
	if (ith)
		rocksdb_iter_destroy(ith);
	if (itm)
		rocksdb_iter_destroy(itm);
	if (ro)
		rocksdb_readoptions_destroy(ro);
	if (rom)
		rocksdb_readoptions_destroy(rom);
	return n;
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
	struct day_cache dc = { .date = { 0 } };
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
	if (res == DTS_RES_HOUR)
		return read_hours(st, series, sl, kv.type, from_s, to_s, fn, ctx);
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

		if (point_time(k, kl, sl, res, &dc, &kv.t) != 0)
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

/* The name at the iterator (skipping keys that are not ours): its key bytes up to and including the terminator, in
 * *k / *len (valid until the iterator moves); false past the prefix. */
static bool list_at(rocksdb_iterator_t *it, const struct listing *l, size_t max, const char **k, size_t *len)
{
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl;
		const char *key = rocksdb_iter_key(it, &kl);
		const char *name = key + l->plen, *t;

		if (kl < l->plen || memcmp(key, l->prefix, l->plen) != 0)
			return false;
		t = memchr(name, l->term, kl - l->plen);
		if (!t || t == name || (size_t)(t - key) + 1 > max)
			continue; /* defensive: not one of our keys */
		*k = key;
		*len = (size_t)(t - key) + 1;
		return true;
	}
	return false;
}

/*
 * List names in key order. At hour resolution the names of the hours and of the minutes family are merged (a series
 * whose hours are not rolled up yet has minutes only): each iterator sits on its next name, the smaller one is
 * listed, and the iterators on that name skip past it with one Seek each.
 */
static long list_keys(struct dts_storage *st, enum dts_res res, const struct listing *l, dts_storage_name_fn fn,
		      void *ctx)
{
	const int cfs[2] = { cf_of(res), DTS__CF_MINUTES };
	const int ncf = res == DTS_RES_HOUR ? 2 : 1;
	char seek[DTS_STORAGE_KEY_MAX + 2], upper[DTS_STORAGE_SERIES_MAX + 2];
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it[2] = { NULL, NULL };
	long n = 0;

	for (int i = 0; i < ncf; i++)
		if (!st->cf[cfs[i]])
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
	for (int i = 0; i < ncf; i++) {
		it[i] = rocksdb_create_iterator_cf(st->db, ro, st->cf[cfs[i]]);
		rocksdb_iter_seek(it[i], l->prefix, l->plen);
	}
	for (;;) {
		const char *k[2] = { NULL, NULL };
		size_t len[2] = { 0, 0 }, seekl;
		int best = -1;

		for (int i = 0; i < ncf; i++) {
			if (!list_at(it[i], l, sizeof(seek) - 1, &k[i], &len[i]))
				continue;
			if (best < 0 || memcmp(k[i], k[best], len[i] < len[best] ? len[i] : len[best]) < 0 ||
			    (memcmp(k[i], k[best], len[i] < len[best] ? len[i] : len[best]) == 0 && len[i] < len[best]))
				best = i;
		}
		if (best < 0)
			break;
		n++;
		/* the name without its terminator */
		if (fn && (l->whole ? fn(ctx, k[best], len[best] - 1) :
				      fn(ctx, k[best] + l->plen, len[best] - 1 - l->plen)) != 0)
			break;
		seekl = len[best];
		memcpy(seek, k[best], seekl);
		seek[seekl - 1] = (char)(l->term + 1);
		for (int i = 0; i < ncf; i++)
			if (k[i] && len[i] == seekl && memcmp(k[i], seek, seekl - 1) == 0)
				rocksdb_iter_seek(it[i], seek, seekl);
	}
	for (int i = 0; i < ncf; i++) {
		if (iter_error(it[i]))
			n = -EIO;
		rocksdb_iter_destroy(it[i]);
	}
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
