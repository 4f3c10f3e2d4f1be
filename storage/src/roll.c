/*
 * roll.c - hourly rollups in the background: each hour value is written once, from the series' minutes, after the
 * hour's minutes are all stored, instead of being read, merged and rewritten by every closed minute.
 *
 * Why: at 1M series the per-minute read-merge-write of the hour was half of a minute close's puts plus 1M reads
 * (docs/performance.md, "Storage"). Now a close writes its minutes and, the first time a series shows up in an hour,
 * a small marker; the roller turns the markers of a finished hour into hour values between minutes, in chunks.
 *
 * The state (docs/storage.md, "Hourly rollups", has the byte tables):
 *   current "hourq|" HOUR '|' SERIES (empty value)   series with minutes in HOUR that are not rolled up yet. Put in
 *                                                    the batch of the minute that brings the series into the hour.
 *   meta "hour_done" = HOUR                          every hour up to HOUR is complete in the hours family.
 * Invariant: no marker exists for an hour <= hour_done. The writer keeps it: a minute of an hour that is rolled up
 * (dts__hour_rolled) read-merge-writes the hour instead of adding a marker; the roller deletes an hour's markers in
 * the batch that sets hour_done to it, and rolls the lowest marked hour first.
 *
 * One hour, in chunks. The roller walks the hour's markers in key order and remembers (roll_hour, roll_cursor) how
 * far it got; chunks commit hour values only. A minute of that hour stored between two chunks is, for a series at or
 * before the cursor (its hour value is written), read-merge-written into the hour; for a later series it only adds
 * its minute (and a marker if new), which the roller reads when it gets there. A late minute of an hour between
 * hour_done and roll_hour (which has no marker then) is read-merge-written too, so the final chunk can move hour_done
 * over it. The final chunk (the walk reached the end of the markers) also range-deletes the hour's markers and sets
 * hour_done, in the same batch. All of this runs under write_lock, so a chunk and a minute close never interleave.
 *
 * A new store's first hour (meta "hour_scan" = H0, written by its first close) has no markers: marking every series
 * in that close would double its puts, and no previous hour pre-marked them. When H0 is due the roller walks the
 * minutes family instead (walk_minutes), which then holds H0 and little else: each series in key order, the same
 * roll_series as the marker walk (so the same hour values), then a Seek to "SERIES}" past its later minutes. Its
 * cursor is in "SERIES|" order (the minute keys'), and dts__hour_rolled compares in that order while roll_scan is
 * set. The final chunk also deletes hour_scan. A crash restarts the scan from the first series, like a marker walk.
 *
 * Crash and restart. A chunk's batch and a minute's batch each commit whole or not at all. After a crash the markers
 * of the hour being rolled are all still there (they go only with the final chunk), hour_done is the last completed
 * hour, and the memory (cursor, the writer's sets of marked series) is gone: the roller starts the hour again from
 * its first marker and rewrites every hour value from the minutes, which gives the same values (a rollup is a pure
 * function of the minutes); the writer puts markers again for the series of the open hours (idempotent puts).
 *
 * Retention. An hour value is replaced by the rollup of its minutes unless the minutes may have been expired already
 * (dts__hour_at_risk: the hour begins within an hour of the minutes' retention cutoff, or before it) and a value is
 * stored: then it is kept (it was written when the minutes were all there: by an earlier rollup whose final chunk a
 * crash lost, or by the previous release's per-minute writes). A series without any minute left keeps what is stored.
 *
 * Readers never wait for the roller: dts_storage_read takes hours after hour_done from the minutes (read.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dts/hash.h"
#include "storage_internal.h"

/* Series per chunk when there is no time budget: bounds the batch (a timer hour value is ~50..2,000 bytes). */
#define ROLL_CHUNK_SERIES 4096

/* Series per chunk of the storage thread: the commit's cost grows with the batch (~1 us per hour value on this VM),
 * and it comes on top of the time budget. */
#define ROLL_IDLE_SERIES 1024

/* A failing rollup is logged again at most this often. */
#define ROLL_FAIL_LOG_NS (60LL * 1000000000)

int64_t dts__hour_done(const struct dts_storage *st)
{
	return __atomic_load_n(&st->hour_done, __ATOMIC_ACQUIRE);
}

void dts__set_hour_done(struct dts_storage *st, int64_t hour)
{
	__atomic_store_n(&st->hour_done, hour, __ATOMIC_RELEASE);
	DTS__SSTAT_SET(st->stats.hour_done, hour == INT64_MIN ? -1 : hour);
}

int dts__marker_key(char *buf, int64_t hour, const char *series, size_t sl)
{
	if (sl == 0 || sl > DTS_STORAGE_SERIES_MAX || hour < 0 || hour > DTS_STORAGE_TIME_MAX / 3600)
		return -EINVAL;
	memcpy(buf, DTS__MARKER_PREFIX, DTS__MARKER_PREFIX_LEN);
	dts_storage_time_encode(buf + DTS__MARKER_PREFIX_LEN, DTS_STORAGE_TIME_LEN_HOUR + 1, DTS_RES_HOUR, hour * 3600);
	buf[DTS__MARKER_PREFIX_LEN + DTS_STORAGE_TIME_LEN_HOUR] = '|';
	memcpy(buf + DTS__MARKER_PREFIX_LEN + DTS_STORAGE_TIME_LEN_HOUR + 1, series, sl);
	return (int)(DTS__MARKER_PREFIX_LEN + DTS_STORAGE_TIME_LEN_HOUR + 1 + sl);
}

/* The hour of a marker key, or -1 when it is not one. */
static int64_t marker_hour(const char *k, size_t kl)
{
	int64_t t;

	if (kl <= DTS__MARKER_PREFIX_LEN + DTS_STORAGE_TIME_LEN_HOUR + 1 ||
	    memcmp(k, DTS__MARKER_PREFIX, DTS__MARKER_PREFIX_LEN) != 0 ||
	    k[DTS__MARKER_PREFIX_LEN + DTS_STORAGE_TIME_LEN_HOUR] != '|' ||
	    dts_storage_time_decode(k + DTS__MARKER_PREFIX_LEN, DTS_STORAGE_TIME_LEN_HOUR, DTS_RES_HOUR, &t) != 0)
		return -1;
	return t / 3600;
}

/* SERIES bytes order (marker key order): is (s, sl) <= the cursor? */
static int series_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

/* "SERIES|" order (minute key order, the scan's): where one series is a prefix of the other, the shorter one's '|'
 * meets the longer one's next byte ("u/a/c/c/x:1" sorts before "u/a/c/c": '/' < '|'). */
static int series_pipe_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	if (c || al == bl)
		return c;
	return al < bl ? (int)(uint8_t)'|' - (int)(uint8_t)b[al] : (int)(uint8_t)a[bl] - (int)(uint8_t)'|';
}

bool dts__hour_rolled(const struct dts_storage *st, int64_t hour, const char *series, size_t sl)
{
	if (st->hour_done == INT64_MIN && hour == 0)
		return true; /* 1970-01-01T00 in a new store: no hour_done before it can be written; keep it maintained */
	if (st->hour_done != INT64_MIN && hour <= st->hour_done)
		return true;
	if (st->roll_hour == INT64_MIN || hour > st->roll_hour)
		return false;
	if (hour < st->roll_hour)
		return true; /* no marker there (the roller takes the lowest marked hour): keep it that way */
	if (!st->roll_cursor_len)
		return false;
	return (st->roll_scan ? series_pipe_cmp : series_cmp)(series, sl, st->roll_cursor, st->roll_cursor_len) <= 0;
}

bool dts__hour_rolled_any(const struct dts_storage *st, int64_t hour)
{
	if (st->hour_done == INT64_MIN && hour == 0)
		return true;
	if (st->hour_done != INT64_MIN && hour <= st->hour_done)
		return true;
	return st->roll_hour != INT64_MIN && hour <= st->roll_hour;
}

/* ---- the writer's sets of marked series ----------------------------------------------------------------------- */

struct dts__hourset *dts__hourset_get(struct dts_storage *st, int64_t hour)
{
	struct dts__hourset **p, *hs;

	for (size_t i = 0; i < st->n_hsets; i++)
		if (st->hsets[i]->hour == hour)
			return st->hsets[i];
	p = realloc(st->hsets, (st->n_hsets + 1) * sizeof(*p));
	if (!p)
		return NULL;
	st->hsets = p;
	hs = calloc(1, sizeof(*hs));
	if (!hs)
		return NULL;
	hs->hour = hour;
	st->hsets[st->n_hsets++] = hs;
	return hs;
}

static bool slot_find(uint64_t (*slot)[2], size_t cap, uint64_t a, uint64_t b, size_t *at)
{
	size_t i = (size_t)a & (cap - 1);

	while (slot[i][0] | slot[i][1]) {
		if (slot[i][0] == a && slot[i][1] == b) {
			*at = i;
			return true;
		}
		i = (i + 1) & (cap - 1);
	}
	*at = i;
	return false;
}

/* Move the set into a table of cap slots (a power of two). Returns false when out of memory (the set is unchanged). */
static bool hourset_resize(struct dts__hourset *hs, size_t cap)
{
	uint64_t(*slot)[2] = calloc(cap, sizeof(*slot));
	size_t at = 0;

	if (!slot)
		return false;
	dts__advise_huge(slot, cap * sizeof(*slot));
	for (size_t i = 0; i < hs->cap; i++) {
		if (!(hs->slot[i][0] | hs->slot[i][1]))
			continue;
		slot_find(slot, cap, hs->slot[i][0], hs->slot[i][1], &at);
		slot[at][0] = hs->slot[i][0];
		slot[at][1] = hs->slot[i][1];
	}
	free(hs->slot);
	hs->slot = slot;
	hs->cap = cap;
	return true;
}

void dts__hourset_reserve(struct dts__hourset *hs, size_t n)
{
	size_t cap = hs->cap ? hs->cap : 1024;

	while (4 * n > 3 * cap)
		cap *= 2;
	if (cap > hs->cap)
		hourset_resize(hs, cap);
}

bool dts__hourset_test_add(struct dts__hourset *hs, uint64_t a, uint64_t b)
{
	size_t at = 0;

	if (!(a | b))
		b = 1; /* {0, 0} marks an empty slot */
	if (hs->cap && slot_find(hs->slot, hs->cap, a, b, &at))
		return true;
	if (4 * (hs->n + 1) > 3 * hs->cap) { /* load <= 3/4 */
		if (!hourset_resize(hs, hs->cap ? 2 * hs->cap : 1024))
			return false; /* not remembered: the marker is put again next minute (harmless) */
		slot_find(hs->slot, hs->cap, a, b, &at);
	}
	hs->slot[at][0] = a;
	hs->slot[at][1] = b;
	hs->n++;
	return false;
}

/* Forget the sets of every hour in [lo, hi]. */
static void hourset_forget_range(struct dts_storage *st, int64_t lo, int64_t hi)
{
	size_t j = 0;

	for (size_t i = 0; i < st->n_hsets; i++) {
		if (st->hsets[i]->hour >= lo && st->hsets[i]->hour <= hi) {
			free(st->hsets[i]->slot);
			free(st->hsets[i]);
		} else {
			st->hsets[j++] = st->hsets[i];
		}
	}
	st->n_hsets = j;
}

void dts__hourset_forget(struct dts_storage *st, int64_t hour)
{
	hourset_forget_range(st, hour, hour);
}

/* ---- folding minutes into an hour ---------------------------------------------------------------------------- */

int dts__hour_fold(struct dts_stored *acc, unsigned *n, struct dts_stored *tmp, const uint8_t *val, size_t len,
		   uint8_t off, uint8_t type)
{
	int rc;

	if (*n == 0) {
		rc = dts_storage_value_decode(acc, val, len);
		if (rc == -ENOMEM)
			return rc;
		if (rc < 0 || acc->type != type)
			return 1;
		acc->first = acc->last = off;
		(*n)++;
		return 0;
	}
	rc = dts_storage_value_decode(tmp, val, len);
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0 || tmp->type != type)
		return 1;
	tmp->first = tmp->last = off;
	rc = dts_storage_value_merge(acc, tmp);
	if (rc < 0)
		return rc;
	(*n)++;
	return 0;
}

bool dts__hour_at_risk(const struct dts_storage *st, int64_t hour)
{
	/* the retention filter drops minute keys before now - days * 86400; an hour of slack for clock steps */
	return hour * 3600 < dts__now_s(st) - (int64_t)st->cfg.minutes_days * 86400 + 3600;
}

/* ---- open / close ----------------------------------------------------------------------------------------------- */


/* Finish a scan of the markers: the iterator's error (in st->last_err) and its release. 0 or -EIO. */
static int markers_iter_end(struct dts_storage *st, rocksdb_iterator_t *it, rocksdb_readoptions_t *ro)
{
	char *rerr = NULL;

	rocksdb_iter_get_error(it, &rerr);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (rerr) {
		snprintf(st->last_err, sizeof(st->last_err), "reading rollup markers: %s", rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	return 0;
}

/* The hour of the first marker at or after key `from` (INT64_MAX: none). Returns 0 or -EIO. */
static int first_marker(struct dts_storage *st, const char *from, size_t len, int64_t *hour)
{
	static const char upper[] = "hourq}"; /* past every marker */
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it;

	if (!ro)
		return -ENOMEM;
	rocksdb_readoptions_set_iterate_upper_bound(ro, upper, sizeof(upper) - 1);
	it = rocksdb_create_iterator_cf(st->db, ro, st->cf[DTS__CF_CURRENT]);
	*hour = INT64_MAX;
	for (rocksdb_iter_seek(it, from, len); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl;
		const char *k = rocksdb_iter_key(it, &kl);
		const int64_t h = marker_hour(k, kl);

		if (h >= 0) {
			*hour = h;
			break;
		}
	}
	if (markers_iter_end(st, it, ro) != 0)
		return -EIO;
	return 0;
}

/* meta "hour_done" (or another hour-valued meta key) as an hour, or INT64_MIN when absent or unreadable. */
static int64_t load_meta_hour(struct dts_storage *st, const char *key, size_t klen)
{
	char *rerr = NULL, *val;
	size_t vlen = 0;
	int64_t t, h = INT64_MIN;

	val = rocksdb_get_cf(st->db, st->ro_get, st->cf[DTS__CF_META], key, klen, &vlen, &rerr);
	if (rerr)
		rocksdb_free(rerr);
	if (val && dts_storage_time_decode(val, vlen, DTS_RES_HOUR, &t) == 0)
		h = t / 3600;
	rocksdb_free(val);
	return h;
}

void dts__roll_reload(struct dts_storage *st)
{
	if (st->cf[DTS__CF_META])
		dts__set_hour_done(st, load_meta_hour(st, "hour_done", 9));
}

/*
 * Load the stored markers into the writer's sets (read-write open). Without this, the first close after a restart
 * puts a marker for every series of the open hours again (idempotent, but at 1M series a million more puts in that
 * close: as slow as a new store's first close); with it, a restart costs one scan of the markers here instead (about
 * a second per million at open). Out of memory: the sets stay partial and the writer puts the rest again.
 */
static int load_markers(struct dts_storage *st)
{
	static const char upper[] = "hourq}";
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it;
	struct dts__hourset *hs = NULL;
	size_t n = 0;

	if (!ro)
		return -ENOMEM;
	rocksdb_readoptions_set_iterate_upper_bound(ro, upper, sizeof(upper) - 1);
	rocksdb_readoptions_set_fill_cache(ro, 0);
	it = rocksdb_create_iterator_cf(st->db, ro, st->cf[DTS__CF_CURRENT]);
	for (rocksdb_iter_seek(it, DTS__MARKER_PREFIX, DTS__MARKER_PREFIX_LEN); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		const size_t pl = DTS__MARKER_PREFIX_LEN + DTS_STORAGE_TIME_LEN_HOUR + 1;
		size_t kl;
		const char *k = rocksdb_iter_key(it, &kl);
		const int64_t h = marker_hour(k, kl);

		if (h < 0 || (st->hour_done != INT64_MIN && h <= st->hour_done))
			continue; /* not a marker, or one the roller deletes with its hour */
		if (!hs || hs->hour != h)
			hs = dts__hourset_get(st, h);
		if (!hs)
			break;
		dts__hourset_test_add(hs, dts_hash64(k + pl, kl - pl, DTS__MARK_SEED_A),
				      dts_hash64(k + pl, kl - pl, DTS__MARK_SEED_B));
		n++;
	}
	if (markers_iter_end(st, it, ro) != 0)
		return -EIO;
	if (n)
		dts__log(st, 2, "store '%s': %zu rollup markers of open hours loaded", st->data_dir, n);
	return 0;
}

int dts__roll_open(struct dts_storage *st, char *err, size_t err_len)
{
	char tm[DTS_STORAGE_TIME_LEN_HOUR + 1];
	int64_t hd, low = INT64_MAX;
	char *rerr = NULL;
	int rc;

	st->roll_hour = INT64_MIN;
	st->roll_cursor_len = 0;
	st->roll_next = INT64_MAX;
	st->roll_scan = false;
	hd = st->cf[DTS__CF_META] ? load_meta_hour(st, "hour_done", 9) : INT64_MIN;
	st->scan_hour = st->cf[DTS__CF_META] ? load_meta_hour(st, DTS__META_HOUR_SCAN, DTS__META_HOUR_SCAN_LEN) :
					       INT64_MIN;
	if (st->scan_hour != INT64_MIN && hd != INT64_MIN && st->scan_hour <= hd)
		st->scan_hour = INT64_MIN; /* defensive: rolled up already (the key goes with hour_done) */
	st->hour_done = hd; /* what is stored; the migration below may change it */
	if (st->cfg.mode == DTS_STORAGE_READ_WRITE) {
		rc = first_marker(st, DTS__MARKER_PREFIX, DTS__MARKER_PREFIX_LEN, &low);
		if (rc < 0) {
			snprintf(err, err_len, "cannot open store '%s': %s", st->data_dir, st->last_err);
			return rc;
		}
		st->roll_next = low;
		if (hd == INT64_MIN && st->hwm != INT64_MIN) {
			/* Written by the previous release (hours maintained minute by minute: complete up to the hwm's
			 * hour), or hour_done damaged: never claim an hour that has markers. */
			hd = st->hwm / 60;
			if (low != INT64_MAX && low <= hd)
				hd = low - 1;
			if (st->scan_hour != INT64_MIN && st->scan_hour <= hd)
				hd = st->scan_hour - 1;
			if (hd < 0)
				hd = INT64_MIN; /* nothing before 1970-01-01T00 to claim */
		}
		if (hd != INT64_MIN && hd != st->hour_done) {
			dts_storage_time_encode(tm, sizeof(tm), DTS_RES_HOUR, hd * 3600);
			rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_META], "hour_done", 9, tm,
				       DTS_STORAGE_TIME_LEN_HOUR, &rerr);
			if (rerr) {
				snprintf(err, err_len, "cannot open store '%s': writing hour_done: %s", st->data_dir,
					 rerr);
				rocksdb_free(rerr);
				return -EIO;
			}
			dts__log(st, 2, "store '%s': hours up to %s are complete; later ones are rolled up hourly",
				 st->data_dir, tm);
		}
	} else if (hd == INT64_MIN && st->hwm != INT64_MIN) {
		hd = st->hwm / 60; /* a stopped store of the previous release: same reasoning, nothing written */
	}
	dts__set_hour_done(st, hd);
	if (st->cfg.mode == DTS_STORAGE_READ_WRITE && low != INT64_MAX) {
		rc = load_markers(st);
		if (rc < 0) {
			snprintf(err, err_len, "cannot open store '%s': %s", st->data_dir, st->last_err);
			return rc;
		}
	}
	return 0;
}

void dts__roll_free(struct dts_storage *st)
{
	dts_stored_free(&st->roll_acc);
	dts_stored_free(&st->roll_tmp);
	hourset_forget_range(st, INT64_MIN, INT64_MAX);
	free(st->hsets);
	st->hsets = NULL;
}

/* ---- the roller ------------------------------------------------------------------------------------------------- */

/*
 * Roll up one series (sl bytes, type) for hour into batch b: one iterator range over its minutes. it is a minutes
 * iterator reused across the chunk (its Seeks go forward in key order); seek false: it is at the series' first key
 * at or after SERIES|HOUR already (the scan). Leaves it at the first key after the hour's minutes. Returns 0 or
 * -errno.
 */
static int roll_series(struct dts_storage *st, rocksdb_iterator_t *it, const char *series, size_t sl, uint8_t type,
		       int64_t hour, bool seek)
{
	char key[DTS_STORAGE_SERIES_MAX + 1 + DTS_STORAGE_TIME_LEN_HOUR + 1];
	const size_t hl = sl + 1 + DTS_STORAGE_TIME_LEN_HOUR; /* "SERIES|YYYYMMDDTHH": the hour key, the range prefix */
	struct dts__batch *b = &st->wr_batch;
	unsigned n = 0;
	char *rerr = NULL;
	uint8_t *p;
	size_t size;
	int rc = 0;

	memcpy(key, series, sl);
	key[sl] = '|';
	dts_storage_time_encode(key + sl + 1, DTS_STORAGE_TIME_LEN_HOUR + 1, DTS_RES_HOUR, hour * 3600);
	if (seek)
		rocksdb_iter_seek(it, key, hl);
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		const char *v;
		unsigned mm;

		if (kl < hl || memcmp(k, key, hl) != 0)
			break;
		if (kl != hl + 2 || k[hl] < '0' || k[hl] > '5' || k[hl + 1] < '0' || k[hl + 1] > '9')
			continue; /* defensive: not a minute key */
		mm = (unsigned)(k[hl] - '0') * 10 + (unsigned)(k[hl + 1] - '0');
		v = rocksdb_iter_value(it, &vl);
		rc = dts__hour_fold(&st->roll_acc, &n, &st->roll_tmp, (const uint8_t *)v, vl, (uint8_t)mm, type);
		if (rc < 0)
			return rc;
	}
	rocksdb_iter_get_error(it, &rerr);
	if (rerr) {
		snprintf(st->last_err, sizeof(st->last_err), "reading minutes to roll up: %s", rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	if (n == 0)
		return 0; /* no minute left (expired, or undecodable): keep whatever is stored */
	if (dts__hour_at_risk(st, hour)) {
		size_t len = 0;
		char *old = rocksdb_get_cf(st->db, st->ro_get, st->cf[DTS__CF_HOURS], key, hl, &len, &rerr);

		rocksdb_free(old);
		if (rerr) {
			snprintf(st->last_err, sizeof(st->last_err), "reading an hour to roll up: %s", rerr);
			rocksdb_free(rerr);
			return -EIO;
		}
		if (old)
			return 0; /* stored while all its minutes were there: more complete than what is left */
	}
	size = dts_storage_value_size(&st->roll_acc);
	p = dts__batch_put_begin(b, st->cf_id[DTS__CF_HOURS], key, hl, size);
	if (!p)
		return b->err;
	rc = dts_storage_value_encode(&st->roll_acc, p, size);
	return rc < 0 ? rc : 0;
}

static int commit_roll(struct dts_storage *st)
{
	rocksdb_writebatch_t *wb = dts__batch_finish(&st->wr_batch);
	char *rerr = NULL;

	if (!wb)
		return -ENOMEM;
	rocksdb_write(st->db, st->wo, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	if (rerr) {
		snprintf(st->last_err, sizeof(st->last_err), "%s", rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	DTS__SSTAT_ADD(st->stats.bytes_written, st->wr_batch.len);
	return 0;
}

/* One chunk's walk of an hour: where it starts (the cursor, in the walk's order), what it has done. */
struct walk {
	int64_t hour, t0, budget_ns;
	size_t max_series;
	char cursor[DTS_STORAGE_SERIES_MAX + 1]; /* the last series visited */
	size_t cursor_len; /* 0: none yet (start at the beginning) */
	bool finished; /* the walk reached the end of the hour */
};

/*
 * The marker walk: the hour's markers in key order from after the cursor, each series rolled up from its minutes
 * (itv). Returns the series rolled up, or -errno.
 */
static long walk_markers(struct dts_storage *st, struct walk *w, rocksdb_iterator_t *itv, const char *lo, size_t lol,
			 const char *hi)
{
	char from[DTS__MARKER_KEY_MAX + 1];
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *itm;
	char *rerr = NULL;
	long n = 0;
	int rc = 0;

	if (!ro)
		return -ENOMEM;
	rocksdb_readoptions_set_iterate_upper_bound(ro, hi, lol);
	itm = rocksdb_create_iterator_cf(st->db, ro, st->cf[DTS__CF_CURRENT]);
	memcpy(from, lo, lol);
	memcpy(from + lol, w->cursor, w->cursor_len);
	rocksdb_iter_seek(itm, from, lol + w->cursor_len);
	if (w->cursor_len && rocksdb_iter_valid(itm)) {
		size_t kl;
		const char *k = rocksdb_iter_key(itm, &kl);

		if (kl == lol + w->cursor_len && memcmp(k, from, kl) == 0)
			rocksdb_iter_next(itm); /* rolled up by the previous chunk */
	}
	while (rocksdb_iter_valid(itm)) {
		size_t kl;
		const char *k = rocksdb_iter_key(itm, &kl);
		const char *series = k + lol;
		const size_t sl = kl - lol;
		struct dts_key_view kv;

		if (kl > lol && sl <= DTS_STORAGE_SERIES_MAX) {
			if (dts_storage_series_decode(series, sl, &kv) == 0) {
				rc = roll_series(st, itv, series, sl, kv.type, w->hour, true);
				if (rc < 0)
					goto out;
				n++;
			} /* else defensive: not a series; skipped (and deleted with the hour's markers) */
			memcpy(w->cursor, series, sl);
			w->cursor_len = sl;
		}
		rocksdb_iter_next(itm);
		if (!rocksdb_iter_valid(itm))
			break;
		if ((size_t)n >= w->max_series || dts__mono_ns() - w->t0 >= w->budget_ns)
			break;
	}
	rocksdb_iter_get_error(itm, &rerr);
	if (rerr) {
		snprintf(st->last_err, sizeof(st->last_err), "reading rollup markers: %s", rerr);
		rocksdb_free(rerr);
		rc = -EIO;
		goto out;
	}
	w->finished = !rocksdb_iter_valid(itm);
out:
	rocksdb_iter_destroy(itm);
	rocksdb_readoptions_destroy(ro);
	return rc < 0 ? rc : n;
}

/*
 * The scan walk (scan_hour: a new store's first hour, which has no markers): every series of the minutes family in
 * key order from after the cursor. For each, the hour's minutes are rolled up as the marker walk does (the same
 * roll_series: the same hour values), then one Seek to "SERIES}" skips its later minutes (the family holds the hour,
 * the few minutes after it until the hour is due, and late data of earlier hours). Returns the series visited (as the
 * marker walk counts its markers, some of which have no minute in the hour: a chunk that made progress is never 0
 * for a caller that loops while the count is positive), or -errno.
 */
static long walk_minutes(struct dts_storage *st, struct walk *w, rocksdb_iterator_t *itv)
{
	char series[DTS_STORAGE_SERIES_MAX + 2], hs[DTS_STORAGE_TIME_LEN_HOUR + 1];
	size_t visited = 0;
	char *rerr = NULL;
	int rc;

	dts_storage_time_encode(hs, sizeof(hs), DTS_RES_HOUR, w->hour * 3600);
	if (w->cursor_len) {
		memcpy(series, w->cursor, w->cursor_len);
		series[w->cursor_len] = '}'; /* past every key of the cursor's series: [SERIES|, SERIES}) */
		rocksdb_iter_seek(itv, series, w->cursor_len + 1);
	} else {
		rocksdb_iter_seek_to_first(itv);
	}
	while (rocksdb_iter_valid(itv)) {
		size_t kl;
		const char *k = rocksdb_iter_key(itv, &kl);
		const char *bar = memchr(k, '|', kl < DTS_STORAGE_SERIES_MAX + 1 ? kl : DTS_STORAGE_SERIES_MAX + 1);
		const size_t sl = bar ? (size_t)(bar - k) : 0;
		struct dts_key_view kv;

		if (!sl) {
			rocksdb_iter_next(itv); /* defensive: not a minute key */
			continue;
		}
		memcpy(series, k, sl);
		if (dts_storage_series_decode(series, sl, &kv) == 0) {
			/* at SERIES|TIME: in or after the hour already unless TIME's hour is earlier */
			const bool seek = kl < sl + 1 + DTS_STORAGE_TIME_LEN_HOUR ||
					  memcmp(k + sl + 1, hs, DTS_STORAGE_TIME_LEN_HOUR) < 0;

			rc = roll_series(st, itv, series, sl, kv.type, w->hour, seek);
			if (rc < 0)
				return rc;
		}
		memcpy(w->cursor, series, sl);
		w->cursor_len = sl;
		visited++;
		if (rocksdb_iter_valid(itv)) {
			k = rocksdb_iter_key(itv, &kl);
			if (kl > sl && k[sl] == '|' && memcmp(k, series, sl) == 0) {
				series[sl] = '}'; /* later minutes of the series: skip them */
				rocksdb_iter_seek(itv, series, sl + 1);
			}
		}
		if (!rocksdb_iter_valid(itv))
			break;
		if (visited >= w->max_series || dts__mono_ns() - w->t0 >= w->budget_ns)
			break;
	}
	rocksdb_iter_get_error(itv, &rerr);
	if (rerr) {
		snprintf(st->last_err, sizeof(st->last_err), "scanning minutes to roll up: %s", rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	w->finished = !rocksdb_iter_valid(itv);
	return (long)visited;
}

/* Under write_lock: see dts__roll_chunk. */
static long roll_chunk_locked(struct dts_storage *st, int64_t last, int64_t budget_ns, size_t max_series,
			      bool *progress)
{
	struct walk w = { .hour = st->roll_hour, .t0 = dts__mono_ns(), .budget_ns = budget_ns,
			  .max_series = max_series };
	char lo[DTS__MARKER_KEY_MAX + 1], hi[DTS__MARKER_PREFIX_LEN + DTS_STORAGE_TIME_LEN_HOUR + 2];
	size_t lol;
	rocksdb_readoptions_t *ro_v = NULL;
	rocksdb_iterator_t *itv = NULL;
	struct dts__batch *b = &st->wr_batch;
	bool scan = st->roll_scan;
	long n = 0;
	int rc = 0;

	if (w.hour == INT64_MIN) {
		/* the lowest hour with markers, or scan_hour (a new store's first: lower than any marked hour) */
		const int64_t sh = st->scan_hour == INT64_MIN ? INT64_MAX : st->scan_hour;

		if (st->roll_next <= last && st->roll_next < sh) {
			rc = first_marker(st, DTS__MARKER_PREFIX, DTS__MARKER_PREFIX_LEN, &st->roll_next);
			if (rc < 0) {
				DTS__SSTAT_ADD(st->stats.roll_errors, 1);
				return rc;
			}
		}
		w.hour = st->roll_next < sh ? st->roll_next : sh;
		if (w.hour > last)
			return 0; /* the usual case between minutes: nothing due, no I/O */
		scan = w.hour == sh;
	}
	if (w.hour > last)
		return 0;
	lol = (size_t)dts__marker_key(lo, w.hour, "-", 1) - 1; /* "hourq|YYYYMMDDTHH|" */
	memcpy(hi, lo, lol);
	hi[lol - 1] = '}';
	memcpy(w.cursor, st->roll_cursor, st->roll_cursor_len);
	w.cursor_len = st->roll_cursor_len;
	ro_v = rocksdb_readoptions_create();
	if (!ro_v) {
		rc = -ENOMEM;
		goto out;
	}
	itv = rocksdb_create_iterator_cf(st->db, ro_v, st->cf[DTS__CF_MINUTES]);
	dts__batch_reset(b);
	n = scan ? walk_minutes(st, &w, itv) : walk_markers(st, &w, itv, lo, lol, hi);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	if (w.finished) {
		char tm[DTS_STORAGE_TIME_LEN_HOUR + 1];

		dts__batch_delete_range(b, st->cf_id[DTS__CF_CURRENT], lo, lol, hi, lol);
		if (scan) /* meta hour_scan alone: [hour_scan, hour_scan "\0") */
			dts__batch_delete_range(b, st->cf_id[DTS__CF_META], DTS__META_HOUR_SCAN,
						DTS__META_HOUR_SCAN_LEN, DTS__META_HOUR_SCAN,
						DTS__META_HOUR_SCAN_LEN + 1);
		memcpy(tm, lo + DTS__MARKER_PREFIX_LEN, DTS_STORAGE_TIME_LEN_HOUR);
		if (st->hour_done == INT64_MIN || w.hour > st->hour_done) /* defensive: never move it back */
			dts__batch_put(b, st->cf_id[DTS__CF_META], "hour_done", 9, tm, DTS_STORAGE_TIME_LEN_HOUR);
	}
	rc = commit_roll(st);
	if (rc < 0)
		goto out;
	*progress = true;
	if (w.finished) {
		if (st->hour_done == INT64_MIN || w.hour > st->hour_done)
			dts__set_hour_done(st, w.hour);
		st->roll_hour = INT64_MIN;
		st->roll_cursor_len = 0;
		st->roll_scan = false;
		if (scan)
			st->scan_hour = INT64_MIN;
		hourset_forget_range(st, INT64_MIN, w.hour);
		DTS__SSTAT_ADD(st->stats.hours_rolled, 1);
		/* the next marked hour; a failure here only leaves the hint low (the next chunk seeks again) */
		if (st->roll_next <= w.hour)
			st->roll_next = w.hour + 1;
	} else {
		st->roll_hour = w.hour;
		st->roll_scan = scan;
		memcpy(st->roll_cursor, w.cursor, w.cursor_len);
		st->roll_cursor_len = w.cursor_len;
	}
	DTS__SSTAT_ADD(st->stats.series_rolled, (uint64_t)n);
	DTS__SSTAT_ADD(st->stats.roll_chunks, 1);
out:
	if (itv)
		rocksdb_iter_destroy(itv);
	if (ro_v)
		rocksdb_readoptions_destroy(ro_v);
	if (rc < 0) {
		DTS__SSTAT_ADD(st->stats.roll_errors, 1);
		return rc;
	}
	{
		const uint64_t ns = (uint64_t)(dts__mono_ns() - w.t0);

		DTS__SSTAT_SET(st->stats.roll_ns_last, ns);
		DTS__SSTAT_ADD(st->stats.roll_ns_total, ns);
		if (ns > st->stats.roll_ns_max)
			DTS__SSTAT_SET(st->stats.roll_ns_max, ns);
	}
	return n;
}

/* The last hour due: hour H is due once minute (H + 1) * 60 + DTS_STORAGE_ROLL_DELAY_MIN is stored. */
static int64_t due_hour(const struct dts_storage *st)
{
	if (st->hwm == INT64_MIN || st->hwm < 60 + DTS_STORAGE_ROLL_DELAY_MIN)
		return INT64_MIN;
	return (st->hwm - DTS_STORAGE_ROLL_DELAY_MIN) / 60 - 1;
}

long dts__roll_chunk(struct dts_storage *st, int64_t last_hour, int64_t budget_ns, size_t max_series, bool *progress)
{
	long rc;

	if (max_series == 0 || max_series > ROLL_CHUNK_SERIES)
		max_series = ROLL_CHUNK_SERIES;
	pthread_mutex_lock(&st->write_lock);
	rc = roll_chunk_locked(st, last_hour == DTS_STORAGE_ROLL_DUE ? due_hour(st) : last_hour, budget_ns, max_series,
			       progress);
	pthread_mutex_unlock(&st->write_lock);
	return rc;
}

long dts_storage_roll_hours(struct dts_storage *st, int64_t last_hour, unsigned budget_us)
{
	long total = 0, rc;
	bool progress;

	if (st->cfg.mode != DTS_STORAGE_READ_WRITE)
		return -EROFS;
	do {
		progress = false;
		rc = dts__roll_chunk(st, last_hour, budget_us ? (int64_t)budget_us * 1000 : INT64_MAX,
				     budget_us ? ROLL_IDLE_SERIES : ROLL_CHUNK_SERIES, &progress);
		if (rc < 0)
			return rc;
		total += rc;
	} while (!budget_us && progress);
	return total;
}

bool dts__roll_idle(struct dts_storage *st)
{
	bool progress = false;
	long rc = dts__roll_chunk(st, DTS_STORAGE_ROLL_DUE, (int64_t)DTS_STORAGE_ROLL_BUDGET_US * 1000,
				  ROLL_IDLE_SERIES, &progress);

	if (rc < 0) {
		const int64_t now = dts__mono_ns();
		char msg[512];

		if (!st->roll_fail_logged_ns || now - st->roll_fail_logged_ns >= ROLL_FAIL_LOG_NS) {
			if (rc == -ENOMEM)
				snprintf(msg, sizeof(msg), "out of memory");
			else
				dts__last_error(st, msg, sizeof(msg));
			dts__log(st, 0, "store '%s': hourly rollup failed: %s; retrying", st->data_dir, msg);
			st->roll_fail_logged_ns = now;
		}
		return false;
	}
	return progress;
}
