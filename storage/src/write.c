/*
 * write.c - the single writer of closed minutes: minutes, rollup markers, and the hours of late data in one
 * WriteBatch, or a large minute that only puts in parts on committer threads (checkpoints of open minutes and their
 * restore: ckpt.c).
 *
 * Why read-merge-write and not a merge operator: DESIGN.md section 5 (ldb must read every value). The writer is the
 * only one that changes minutes and hours (write_lock; the roller in roll.c takes it too), so a read followed by a
 * put in the same batch cannot race.
 *
 * Hours. A minute whose hour is not rolled up yet (the usual case) does not touch the hours family: the first minute
 * of a series in that hour puts a marker ("hourq|" HOUR '|' SERIES in current), and the writer remembers in memory
 * (a set of 128-bit hashes per hour) which series have one, so the other minutes of the hour add nothing. The roller
 * later writes the hour from the minutes (roll.c). A new store's first hour (meta "hour_scan") puts no marker: the
 * roller scans the minutes family for it. A minute whose hour is already rolled up (late data) merges its
 * record into the stored hour (read-merge-write), as every minute did before hourly rollups.
 *
 * Which reads are needed. meta "hwm_minute" is the highest minute ever stored, updated in the same batch as the
 * minute. A minute above it cannot have a stored value: the common case (the minute after the last one) reads
 * nothing at all. A minute at or below the hwm (data that arrived after its minute was stored, a minute closed again
 * after a restart, a checkpoint restored as a closed minute) reads its stored minutes and merges into them, and reads
 * its hours if they are rolled up.
 *
 * Reads are batched: records are processed in chunks of CHUNK with one MultiGet per column family per chunk.
 * Records of one closed minute have distinct identities (the engine hands over one record per series), so no two
 * records of a batch touch the same key.
 */
#define _GNU_SOURCE /* qsort_r */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dts/hash.h"
#include "storage_internal.h"

/*
 * Pre-marking. Without it, minute 0 of every hour would put a marker for every series at once (at 1M series, twice the
 * usual close's puts). So the newest minutes of the second half of an hour (offset 30 + k) also put the next hour's
 * markers of the series whose hash is k mod PREMARK_SLICES: by the next hour, the series of this hour are marked
 * already, spread over 30 closes. A series that stops before the next hour gets a marker it does not need; rolling it
 * up costs one Seek and writes nothing.
 */
#define PREMARK_FROM 30
#define PREMARK_SLICES 30

/* Records per MultiGet: large enough to amortise the call, small enough that the key arena (2 x CHUNK keys) and the
 * pinned values stay in a few MiB. */
#define CHUNK 1024

/* A closed minute that only puts is committed in parts of about this many bytes (see dts_storage_write_minute). Each
 * part is copied once more by rocksdb_writebatch_create_from: below glibc's largest mmap threshold (32 MiB), that copy
 * and the writer's buffer reuse memory that is already mapped, where one batch of a 1M-series minute (~110 MB) took
 * fresh pages every time (page faults are expensive on a VM). Parts also let a memtable fill and switch within a
 * minute, so its flush starts while the close goes on. */
#define PART_BYTES ((size_t)8 << 20)

/* Per-chunk scratch, allocated once (under write_lock). */
struct dts__chunk {
	const char *kmin[CHUNK], *khour[CHUNK];
	size_t lmin[CHUNK], lhour[CHUNK];
	uint32_t rec[CHUNK]; /* index in cm->recs of each valid key */
	int32_t hread[CHUNK]; /* per item: index in khour/vhour of its hour (rolled up: read-merge-write), or -1 */
	rocksdb_pinnableslice_t *vmin[CHUNK], *vhour[CHUNK];
	char *emin[CHUNK], *ehour[CHUNK];
};

static struct dts__chunk *chunk_scratch(struct dts_storage *st)
{
	if (!st->wr_keys) {
		st->wr_keys = malloc((size_t)2 * CHUNK * (DTS_STORAGE_KEY_MAX + 1) + sizeof(struct dts__chunk));
		if (!st->wr_keys)
			return NULL;
	}
	return (struct dts__chunk *)(st->wr_keys + (size_t)2 * CHUNK * (DTS_STORAGE_KEY_MAX + 1));
}

/* Append cf: key = the encoding of v, encoded straight into the batch. */
static int put_value(struct dts_storage *st, struct dts__batch *b, int cf, const char *key, size_t klen,
		     const struct dts_stored *v)
{
	const size_t size = dts_storage_value_size(v);
	uint8_t *p = dts__batch_put_begin(b, st->cf_id[cf], key, klen, size);
	int rc;

	if (!p)
		return b->err;
	rc = dts_storage_value_encode(v, p, size);
	return rc < 0 ? rc : 0;
}

/* A read-only view of a record as a value at minute offset off (shares the record's sketch and set: never free). */
static void rec_view(struct dts_stored *v, const struct dts_minute_rec *r, uint8_t off)
{
	v->type = r->type;
	v->first = off;
	v->last = off;
	v->agg = r->agg;
	v->sketch = r->sketch;
	v->set = r->set;
}

static struct dts_series_id rec_id(const struct dts_minute_rec *r)
{
	return (struct dts_series_id){
		.user = r->user, .process = r->process, .counter = r->counter, .tags = r->tags, .type = r->type,
	};
}

/*
 * Put incoming (merged into the stored bytes sv, if any) under key. Returns 1 when it merged into a stored value, 0
 * when it wrote incoming as is, -ENOMEM.
 */
static int merge_put(struct dts_storage *st, struct dts__batch *b, int cf, const char *key, size_t klen,
		     rocksdb_pinnableslice_t *sv, const struct dts_stored *incoming)
{
	const char *p;
	size_t n = 0;
	int rc;

	p = sv ? rocksdb_pinnableslice_value(sv, &n) : NULL;
	if (!p)
		return put_value(st, b, cf, key, klen, incoming);
	rc = dts_storage_value_decode(&st->wr_tmp, (const uint8_t *)p, n);
	if (rc == 0)
		rc = dts_storage_value_merge(&st->wr_tmp, incoming);
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0) {
		/* Undecodable or of another type: damaged. Replace it rather than wedge the writer on it forever. */
		DTS__SSTAT_ADD(st->stats.corrupt_values, 1);
		return put_value(st, b, cf, key, klen, incoming);
	}
	rc = put_value(st, b, cf, key, klen, &st->wr_tmp);
	return rc < 0 ? rc : 1;
}

static void free_gets(rocksdb_pinnableslice_t **v, char **e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i])
			rocksdb_pinnableslice_destroy(v[i]);
		if (e[i])
			rocksdb_free(e[i]);
		v[i] = NULL;
		e[i] = NULL;
	}
}

/* The first error of a MultiGet, or NULL. */
static const char *get_error(char **e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (e[i])
			return e[i];
	return NULL;
}

int dts__write(struct dts_storage *st, rocksdb_writebatch_t *b, size_t len)
{
	char *rerr = NULL;

	rocksdb_write(st->db, st->wo, b, &rerr);
	if (rerr) {
		snprintf(st->last_err, sizeof(st->last_err), "%s", rerr);
		rocksdb_free(rerr);
		DTS__SSTAT_ADD(st->stats.write_errors, 1);
		return -EIO;
	}
	DTS__SSTAT_ADD(st->stats.batches, 1);
	DTS__SSTAT_ADD(st->stats.bytes_written, len);
	return 0;
}

static int commit(struct dts_storage *st, struct dts__batch *bb)
{
	rocksdb_writebatch_t *b = dts__batch_finish(bb);
	int rc;

	if (!b)
		return -ENOMEM;
	rc = dts__write(st, b, bb->len);
	rocksdb_writebatch_destroy(b);
	return rc;
}

/*
 * The committers: COMMITTERS threads that commit the parts of a closed minute while the writer builds the next ones.
 * Building a part and committing it (WAL append and memtable inserts) each take about half of a close; with the
 * parts in flight on other threads they overlap, and RocksDB inserts the batches of concurrent writers into the
 * memtable in parallel (allow_concurrent_memtable_write, on by default with the skiplist memtable). The writer hands
 * a finished rocksdb_writebatch_t over (its own buffer is free again at once: dts__batch_finish copies) and waits
 * only when COMMITTERS parts are in flight. Parts of one minute have disjoint keys and only put, so their order does
 * not matter; the writer commits the minute's last part itself after committer_wait, so the hwm and the checkpoint
 * deletion never go before a part of their minute.
 */
#define COMMITTERS 2

struct dts__committer {
	pthread_t thread[COMMITTERS];
	unsigned nthreads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	rocksdb_writebatch_t *pending[COMMITTERS]; /* handed over, not yet taken */
	size_t pending_len[COMMITTERS];
	unsigned npending;
	unsigned inflight; /* parts pending or being written */
	bool stop;
	int err; /* the first failure since the last committer_wait */
};

static void *committer_main(void *arg)
{
	struct dts_storage *st = arg;
	struct dts__committer *c = st->committer;

	pthread_setname_np(pthread_self(), "dts-commit");
	pthread_mutex_lock(&c->mu);
	for (;;) {
		rocksdb_writebatch_t *b;
		size_t len;
		char *rerr = NULL;

		while (!c->npending && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (!c->npending)
			break;
		c->npending--;
		b = c->pending[c->npending];
		len = c->pending_len[c->npending];
		pthread_mutex_unlock(&c->mu);
		rocksdb_write(st->db, st->wo, b, &rerr);
		rocksdb_writebatch_destroy(b);
		pthread_mutex_lock(&c->mu);
		/* The stats and last_err are updated under mu here: the committers are their only writers while the
		 * storage thread waits for them (committer_wait), and mu orders the committers among themselves. */
		if (rerr) {
			snprintf(st->last_err, sizeof(st->last_err), "%s", rerr);
			rocksdb_free(rerr);
			DTS__SSTAT_ADD(st->stats.write_errors, 1);
			if (!c->err)
				c->err = -EIO;
		} else {
			DTS__SSTAT_ADD(st->stats.batches, 1);
			DTS__SSTAT_ADD(st->stats.bytes_written, len);
		}
		c->inflight--;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* Start the committers if they are not running. Returns 0 or -errno (then the caller commits its parts itself; with
 * only some threads started, those do the work). */
static int committer_start(struct dts_storage *st)
{
	struct dts__committer *c;

	if (st->committer)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	st->committer = c;
	for (unsigned i = 0; i < COMMITTERS; i++) {
		if (pthread_create(&c->thread[i], NULL, committer_main, st) != 0)
			break;
		c->nthreads++;
	}
	if (!c->nthreads) {
		st->committer = NULL;
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return -EAGAIN;
	}
	return 0;
}

/* Wait until no part is in flight; returns (and clears) the first failure since the last call, or 0. */
static int committer_wait(struct dts_storage *st)
{
	struct dts__committer *c = st->committer;
	int err;

	if (!c)
		return 0;
	pthread_mutex_lock(&c->mu);
	while (c->inflight)
		pthread_cond_wait(&c->cv, &c->mu);
	err = c->err;
	c->err = 0;
	pthread_mutex_unlock(&c->mu);
	return err;
}

/* Hand the batch built in bb to the committers (bb is free again on return). Returns 0, or -errno: this part or an
 * earlier one failed (nothing more is handed over for this minute). Without committers: commit here. */
static int commit_async(struct dts_storage *st, struct dts__batch *bb)
{
	struct dts__committer *c = st->committer;
	rocksdb_writebatch_t *b;
	int err;

	if (!c)
		return commit(st, bb);
	b = dts__batch_finish(bb);
	if (!b)
		return -ENOMEM;
	pthread_mutex_lock(&c->mu);
	while (c->inflight >= c->nthreads)
		pthread_cond_wait(&c->cv, &c->mu);
	err = c->err;
	if (!err) {
		c->pending[c->npending] = b;
		c->pending_len[c->npending++] = bb->len;
		c->inflight++;
		pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	if (err)
		rocksdb_writebatch_destroy(b);
	return err;
}

/*
 * After a large close: switch the minutes family's memtable when it holds more than write_buffer_bytes, without
 * waiting for the flush. The family's memtable has room for a whole minute (db.c), so the flush runs in the minute
 * between two closes instead of competing for the CPUs during the next one (a memtable that fills mid-close switches
 * there, and its flush overlaps the rest of the close). A failure only leaves the switch to RocksDB.
 */
void dts__flush_after_close(struct dts_storage *st)
{
	uint64_t active = 0;
	char *rerr = NULL;

	if (rocksdb_property_int_cf(st->db, st->cf[DTS__CF_MINUTES], "rocksdb.cur-size-active-mem-table", &active) != 0 ||
	    active <= st->cfg.write_buffer_bytes)
		return;
	rocksdb_flush_cf(st->db, st->fo_nowait, st->cf[DTS__CF_MINUTES], &rerr);
	rocksdb_free(rerr);
}

void dts__committer_stop(struct dts_storage *st)
{
	struct dts__committer *c = st->committer;

	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	for (unsigned i = 0; i < c->nthreads; i++)
		pthread_join(c->thread[i], NULL);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
	st->committer = NULL;
}

void dts__account_latency(struct dts_storage *st, int64_t t0)
{
	uint64_t ns = (uint64_t)(dts__mono_ns() - t0);

	DTS__SSTAT_SET(st->stats.batch_ns_last, ns);
	DTS__SSTAT_ADD(st->stats.batch_ns_total, ns);
	if (ns > st->stats.batch_ns_max)
		DTS__SSTAT_SET(st->stats.batch_ns_max, ns);
}

/* One valid record of the minute being written: its "SERIES|" bytes in the series arena, and its index. */
struct item {
	uint32_t off;
	uint16_t len; /* including the '|' */
	uint32_t rec;
};

static int item_cmp(const void *a, const void *b, void *arena)
{
	const struct item *x = a, *y = b;
	const char *base = arena;
	const size_t n = x->len < y->len ? x->len : y->len;

	/* "SERIES|" is never a prefix of another "SERIES|" ('|' occurs only at its end): the shorter length decides */
	return memcmp(base + x->off, base + y->off, n);
}

/* An item's sort key: 8 bytes of its "SERIES|" from offset `from`, big-endian, zero past its end (zero sorts below
 * every byte of a name, and two keys never tie on a prefix: '|' ends each), and its position in the items. */
struct sort_key {
	uint64_t k;
	uint64_t i;
};

static uint64_t key8(const char *s, size_t len, size_t from)
{
	uint64_t k = 0;

	for (size_t j = 0; j < 8; j++)
		k = k << 8 | (from + j < len ? (uint8_t)s[from + j] : 0);
	return k;
}

/* Grow a scratch array of the writer (kept between minutes: its pages are faulted once). */
static int scratch_reserve(void **p, size_t *cap, size_t n, size_t size)
{
	void *q;

	if (*cap >= n)
		return 0;
	n = n < 1024 ? 1024 : n + n / 8;
	q = realloc(*p, n * size);
	if (!q)
		return -ENOMEM;
	dts__advise_huge(q, n * size);
	*p = q;
	*cap = n;
	return 0;
}

/*
 * Sort n items in key order. qsort_r with an indirect memcmp was ~0.3-0.8 s for 1M series on this VM; this is an LSD
 * radix sort on 8 key bytes taken after the prefix all series share (the user, often more: "bench/proc"), which
 * orders almost every item, then qsort_r only within runs whose 8 bytes tie. Returns 0 or -ENOMEM.
 */
static int sort_items(struct dts_storage *st, struct item *it, size_t n)
{
	const char *arena = st->wr_series;
	size_t lcp, count[8][256] = { { 0 } };
	struct sort_key *a, *b;

	if (n < 2)
		return 0;
	if (scratch_reserve(&st->wr_sort, &st->wr_sort_cap, 2 * n, sizeof(struct sort_key)) < 0)
		return -ENOMEM;
	a = st->wr_sort;
	b = a + n;
	lcp = it[0].len;
	for (size_t i = 1; i < n && lcp; i++) {
		const char *x = arena + it[0].off, *y = arena + it[i].off;
		size_t j = 0;

		while (j < lcp && j < it[i].len && x[j] == y[j])
			j++;
		lcp = j;
	}
	for (size_t i = 0; i < n; i++) {
		a[i].k = key8(arena + it[i].off, it[i].len, lcp);
		a[i].i = i;
		for (unsigned d = 0; d < 8; d++)
			count[d][(a[i].k >> (8 * d)) & 0xff]++;
	}
	for (unsigned d = 0; d < 8; d++) {
		size_t sum = 0;
		struct sort_key *t;

		if (count[d][(a[0].k >> (8 * d)) & 0xff] == n)
			continue; /* every key has the same byte here */
		for (unsigned v = 0; v < 256; v++) {
			const size_t c = count[d][v];

			count[d][v] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			b[count[d][(a[i].k >> (8 * d)) & 0xff]++] = a[i];
		t = a;
		a = b;
		b = t;
	}
	/* Permute the items through b (as raw item storage: 16-byte keys hold 12-byte items) */
	{
		struct item *sorted = (struct item *)b;

		for (size_t i = 0; i < n; i++)
			sorted[i] = it[a[i].i];
		for (size_t i = 0; i < n;) {
			size_t j = i + 1;

			while (j < n && a[j].k == a[i].k)
				j++;
			if (j - i > 1)
				qsort_r(sorted + i, j - i, sizeof(*sorted), item_cmp, (void *)arena);
			i = j;
		}
		memcpy(it, sorted, n * sizeof(*it));
	}
	return 0;
}

/*
 * Encode every record's "SERIES|" into the arena and sort them in key order (minute and hour keys extend the same
 * prefix, so one order serves both families). Inserting a batch in key order is what makes it cheap: RocksDB's
 * skiplist memtable reuses the previous insert's position (its "splice") when keys arrive in order, so a sorted batch
 * costs O(1) comparisons per key instead of O(log n) random cache misses. Returns the items (the writer's scratch,
 * valid until the next minute), or NULL (-ENOMEM).
 */
static struct item *sorted_items(struct dts_storage *st, const struct dts_closed_minute *cm, size_t *nitems,
				 size_t *ninvalid)
{
	struct item *it;
	size_t n = 0, used = 0;

	if (scratch_reserve(&st->wr_items, &st->wr_items_cap, cm->n ? cm->n : 1, sizeof(*it)) < 0)
		return NULL;
	it = st->wr_items;
	for (size_t i = 0; i < cm->n; i++) {
		const struct dts_series_id id = rec_id(&cm->recs[i]);
		int len;

		if (st->wr_series_cap - used < DTS_STORAGE_SERIES_MAX + 2) {
			/* a first guess from the records left (a series is ~30 bytes), then doubling */
			size_t cap = st->wr_series_cap ? 2 * st->wr_series_cap : (size_t)1 << 20;
			char *p;

			if (cap < used + (cm->n - i) * 32 + DTS_STORAGE_SERIES_MAX + 2)
				cap = used + (cm->n - i) * 32 + DTS_STORAGE_SERIES_MAX + 2;
			p = cap > UINT32_MAX ? NULL : realloc(st->wr_series, cap);
			if (!p)
				return NULL;
			dts__advise_huge(p, cap);
			st->wr_series = p;
			st->wr_series_cap = cap;
		}
		len = dts_storage_series_encode(st->wr_series + used, DTS_STORAGE_SERIES_MAX + 1, &id);
		if (len < 0) {
			(*ninvalid)++; /* counted once the minute is stored (a failed attempt is retried) */
			continue;
		}
		st->wr_series[used + (size_t)len] = '|';
		it[n++] = (struct item){ .off = (uint32_t)used, .len = (uint16_t)(len + 1), .rec = (uint32_t)i };
		used += (size_t)len + 1;
	}
	if (sort_items(st, it, n) < 0)
		return NULL;
	*nitems = n;
	return it;
}

/* What one minute's batch adds besides its minutes. */
struct minute_extra {
	int64_t hour;
	struct dts__hourset *marked; /* series with a stored marker for hour (NULL: out of memory, put them all) */
	struct dts__hourset *next; /* pre-marking: the next hour's set, NULL when this minute does not pre-mark */
	unsigned slice; /* pre-marking: the series whose first hash is slice mod PREMARK_SLICES */
	bool nomark; /* hour is the store's scan_hour: the roller scans the minutes, no marker for hour */
	uint64_t markers, hours_late;
};

static int put_marker(struct dts_storage *st, struct dts__batch *b, char *buf, int64_t hour, const char *series,
		      size_t sl)
{
	int ml = dts__marker_key(buf, hour, series, sl);

	return ml < 0 ? ml : dts__batch_put(b, st->cf_id[DTS__CF_CURRENT], buf, (size_t)ml, "", 0);
}

/*
 * Add items [0, n) (sorted) to the batch: each minute (merged into its stored value when read_min), and for its hour
 * a read-merge-write (rolled up) or a marker (not yet, and none stored). Returns the records merged into stored
 * minutes, or -errno.
 */
static long add_chunk(struct dts_storage *st, struct dts__batch *b, const struct dts_closed_minute *cm,
		      const struct item *items, size_t n, bool read_min, struct minute_extra *x)
{
	struct dts__chunk *c = chunk_scratch(st);
	const uint8_t off = (uint8_t)(((cm->minute % 60) + 60) % 60);
	char tm[DTS_STORAGE_TIME_LEN_MINUTE + 1], mk[DTS__MARKER_KEY_MAX + 1];
	size_t nh = 0;
	long merged = 0;
	const char *e;
	int rc = 0;

	if (!c)
		return -ENOMEM;
	dts_storage_time_encode(tm, sizeof(tm), DTS_RES_MINUTE, cm->minute * 60); /* checked by the caller */
	for (size_t k = 0; k < n; k++) {
		char *km = st->wr_keys + 2 * k * (DTS_STORAGE_KEY_MAX + 1), *kh = km + DTS_STORAGE_KEY_MAX + 1;
		const char *series = st->wr_series + items[k].off;
		const size_t sl = items[k].len;

		memcpy(km, series, sl);
		memcpy(km + sl, tm, DTS_STORAGE_TIME_LEN_MINUTE);
		c->kmin[k] = km;
		c->lmin[k] = sl + DTS_STORAGE_TIME_LEN_MINUTE;
		c->rec[k] = items[k].rec;
		c->vmin[k] = c->vhour[k] = NULL;
		c->emin[k] = c->ehour[k] = NULL;
		c->hread[k] = -1;
		if (dts__hour_rolled(st, x->hour, series, sl - 1)) {
			memcpy(kh, km, sl + DTS_STORAGE_TIME_LEN_HOUR);
			c->khour[nh] = kh;
			c->lhour[nh] = sl + DTS_STORAGE_TIME_LEN_HOUR;
			c->hread[k] = (int32_t)nh++;
		} else {
			const uint64_t ha = dts_hash64(series, sl - 1, DTS__MARK_SEED_A);
			const uint64_t hb = dts_hash64(series, sl - 1, DTS__MARK_SEED_B);

			if (!x->nomark && (!x->marked || !dts__hourset_test_add(x->marked, ha, hb))) {
				rc = put_marker(st, b, mk, x->hour, series, sl - 1);
				if (rc < 0)
					return rc;
				x->markers++;
			}
			if (x->next && ha % PREMARK_SLICES == x->slice && !dts__hourset_test_add(x->next, ha, hb)) {
				rc = put_marker(st, b, mk, x->hour + 1, series, sl - 1);
				if (rc < 0)
					return rc;
				x->markers++;
			}
		}
	}
	if (read_min)
		rocksdb_batched_multi_get_cf(st->db, st->ro_get, st->cf[DTS__CF_MINUTES], n, c->kmin, c->lmin, c->vmin,
					     c->emin, true);
	if (nh)
		rocksdb_batched_multi_get_cf(st->db, st->ro_get, st->cf[DTS__CF_HOURS], nh, c->khour, c->lhour,
					     c->vhour, c->ehour, true);
	e = get_error(c->emin, n);
	if (!e)
		e = get_error(c->ehour, nh);
	if (e) {
		snprintf(st->last_err, sizeof(st->last_err), "reading stored values: %s", e);
		DTS__SSTAT_ADD(st->stats.write_errors, 1);
		rc = -EIO;
		goto out;
	}
	for (size_t k = 0; k < n && rc >= 0; k++) {
		const struct dts_minute_rec *r = &cm->recs[c->rec[k]];
		const int32_t j = c->hread[k];
		struct dts_stored v;

		rec_view(&v, r, 0);
		rc = merge_put(st, b, DTS__CF_MINUTES, c->kmin[k], c->lmin[k], c->vmin[k], &v);
		if (rc < 0)
			break;
		merged += rc;
		if (j < 0)
			continue;
		rec_view(&v, r, off);
		rc = merge_put(st, b, DTS__CF_HOURS, c->khour[j], c->lhour[j], c->vhour[j], &v);
		x->hours_late++;
	}
out:
	free_gets(c->vmin, c->emin, n);
	free_gets(c->vhour, c->ehour, nh);
	return rc < 0 ? rc : merged;
}

void dts__last_error(struct dts_storage *st, char *buf, size_t len)
{
	pthread_mutex_lock(&st->write_lock);
	snprintf(buf, len, "%s", st->last_err[0] ? st->last_err : "unknown error");
	pthread_mutex_unlock(&st->write_lock);
}

int dts_storage_write_minute(struct dts_storage *st, const struct dts_closed_minute *cm)
{
	const int64_t t0 = dts__mono_ns();
	struct dts__batch *b = &st->wr_batch;
	char tk[DTS_STORAGE_TIME_LEN_MINUTE + 2], tk_end[DTS_STORAGE_TIME_LEN_MINUTE + 2];
	struct minute_extra x = { .hour = cm->minute / 60 };
	char th[DTS_STORAGE_TIME_LEN_HOUR + 1], ts[DTS_STORAGE_TIME_LEN_HOUR + 1];
	int64_t scan = st->scan_hour;
	struct item *items;
	size_t nitems = 0, ninvalid = 0;
	long merged = 0, rc = 0;
	bool read_min, split, first_hour_done = false;
	uint64_t parts = 0;

	if (st->cfg.mode != DTS_STORAGE_READ_WRITE)
		return -EROFS;
	if (dts_storage_time_encode(tk, sizeof(tk), DTS_RES_MINUTE, cm->minute * 60) < 0)
		return -EINVAL; /* a minute before 1970 or after 9999: nothing sensible to store */
	pthread_mutex_lock(&st->write_lock);
	dts__batch_reset(b);
	items = sorted_items(st, cm, &nitems, &ninvalid);
	if (!items) {
		rc = -ENOMEM;
		goto out;
	}
	read_min = st->hwm != INT64_MIN && cm->minute <= st->hwm;
	if (st->hour_done == INT64_MIN && x.hour > 0) {
		/* The first minute of a new store: every earlier hour is complete (there is none). Hour 0 of 1970 has
		 * no hour before it: dts__hour_rolled has it read-merge-written while hour_done is unset. Its hour is
		 * the store's scan hour: no marker in any close of it, the roller scans the minutes family (which holds
		 * only that hour then) instead; meta hour_scan goes in every part, so a crash between parts cannot leave
		 * minutes of the hour that no marker and no hour_scan point at. A scan hour loaded at open is such a
		 * partial first close's: kept. */
		if (scan == INT64_MIN)
			scan = x.hour;
		dts_storage_time_encode(th, sizeof(th), DTS_RES_HOUR, ((scan < x.hour ? scan : x.hour) - 1) * 3600);
		dts_storage_time_encode(ts, sizeof(ts), DTS_RES_HOUR, scan * 3600);
		first_hour_done = true;
		dts__batch_put(b, st->cf_id[DTS__CF_META], DTS__META_HOUR_SCAN, DTS__META_HOUR_SCAN_LEN, ts,
			       DTS_STORAGE_TIME_LEN_HOUR);
	}
	x.nomark = scan != INT64_MIN && x.hour == scan;
	if ((st->hour_done == INT64_MIN || x.hour > st->hour_done) && !x.nomark) {
		x.marked = dts__hourset_get(st, x.hour);
		if (x.marked)
			dts__hourset_reserve(x.marked, nitems);
	}
	if (st->hour_done == INT64_MIN || x.hour > st->hour_done) {
		/* pre-mark from the newest minute only (late parts and restored minutes are not the hour's clock) */
		if (cm->minute % 60 >= PREMARK_FROM && (st->hwm == INT64_MIN || cm->minute > st->hwm) &&
		    x.hour != st->roll_hour) {
			x.next = dts__hourset_get(st, x.hour + 1);
			if (x.next)
				dts__hourset_reserve(x.next, nitems);
			x.slice = (unsigned)(cm->minute % 60 - PREMARK_FROM) % PREMARK_SLICES;
		}
	}
	/*
	 * Parts (docs/storage.md, "Closing a minute"): a minute newer than every stored one, in an hour that is not
	 * rolled up, only puts (its minutes and their markers, no reads), so it may be committed in parts of about
	 * PART_BYTES, each minute with its marker, and the hwm, the hour_done of a new store and the deletion of the
	 * minute's checkpoint data in the last part. A crash between parts leaves some of the minute's series stored and
	 * its checkpoint in place: the restart restores the checkpoint (put over them: the minute is above the hwm, so
	 * nothing is merged twice). Everything else (late data, rolled-up hours) reads and merges: one batch.
	 */
	split = !read_min && !dts__hour_rolled_any(st, x.hour);
	if (split && nitems > CHUNK)
		committer_start(st); /* failed: the parts are committed here, one after the other */
	for (size_t from = 0; from < nitems && rc >= 0; from += CHUNK) {
		rc = add_chunk(st, b, cm, items + from, nitems - from < CHUNK ? nitems - from : CHUNK, read_min, &x);
		if (rc > 0)
			merged += rc;
		if (rc >= 0 && split && b->len >= PART_BYTES && from + CHUNK < nitems) {
			rc = commit_async(st, b);
			dts__batch_reset(b);
			parts++;
			if (first_hour_done)
				dts__batch_put(b, st->cf_id[DTS__CF_META], DTS__META_HOUR_SCAN,
					       DTS__META_HOUR_SCAN_LEN, ts, DTS_STORAGE_TIME_LEN_HOUR);
		}
	}
	if (parts) {
		const int err = committer_wait(st); /* every part is written (or failed) before the last one goes */

		if (rc >= 0 && err < 0)
			rc = err;
	}
	if (rc < 0)
		goto out;
	if (first_hour_done)
		dts__batch_put(b, st->cf_id[DTS__CF_META], "hour_done", 9, th, DTS_STORAGE_TIME_LEN_HOUR);
	/* The minute's checkpoint data: its chunks TIME '#' SEQ and format-1 rows TIME '|' SERIES, [TIME '#', TIME '}')
	 * ('}' is the byte after '|'; ckpt.c). */
	memcpy(tk_end, tk, DTS_STORAGE_TIME_LEN_MINUTE);
	tk[DTS_STORAGE_TIME_LEN_MINUTE] = '#';
	tk_end[DTS_STORAGE_TIME_LEN_MINUTE] = '}';
	dts__batch_delete_range(b, st->cf_id[DTS__CF_CURRENT], tk, DTS_STORAGE_TIME_LEN_MINUTE + 1, tk_end,
				DTS_STORAGE_TIME_LEN_MINUTE + 1);
	if (st->hwm == INT64_MIN || cm->minute > st->hwm)
		dts__batch_put(b, st->cf_id[DTS__CF_META], "hwm_minute", 10, tk, DTS_STORAGE_TIME_LEN_MINUTE);
	rc = commit(st, b);
	if (rc < 0)
		goto out;
	parts++;
	if (st->hwm == INT64_MIN || cm->minute > st->hwm) {
		st->hwm = cm->minute;
		DTS__SSTAT_SET(st->stats.hwm_minute, st->hwm);
	}
	if (first_hour_done) {
		dts__set_hour_done(st, (scan < x.hour ? scan : x.hour) - 1);
		st->scan_hour = scan;
	}
	if (x.markers && x.hour < st->roll_next)
		st->roll_next = x.hour; /* a pre-mark alone is for hour + 1: a lower hint is harmless */
	DTS__SSTAT_ADD(st->stats.minutes_written, 1);
	DTS__SSTAT_ADD(st->stats.minute_parts, parts);
	DTS__SSTAT_ADD(st->stats.records_written, nitems);
	DTS__SSTAT_ADD(st->stats.records_merged, (uint64_t)merged);
	DTS__SSTAT_ADD(st->stats.dropped_records[DTS_SDROP_INVALID], ninvalid);
	DTS__SSTAT_ADD(st->stats.markers_written, x.markers);
	DTS__SSTAT_ADD(st->stats.hours_late, x.hours_late);
	dts__account_latency(st, t0);
	if (parts > 1 && !atomic_load_explicit(&st->stopping, memory_order_relaxed))
		dts__flush_after_close(st); /* stopping: the sink decides (sink.c, sink_main) */
out:
	if (rc < 0 && first_hour_done && parts)
		st->scan_hour = scan; /* a committed part may hold hour_scan: the next first close keeps it */
	if (rc < 0 && x.marked)
		dts__hourset_forget(st, x.hour); /* remembered markers may not be stored: put them all again */
	if (rc < 0 && x.next)
		dts__hourset_forget(st, x.hour + 1);
	pthread_mutex_unlock(&st->write_lock);
	return (int)rc;
}
