/*
 * ckpt.c - checkpoints of open minutes in the current CF: the chunk format, the writer and the restore at startup
 * (docs/storage.md, "Checkpoints and restart"; byte tables in dts/storage.h).
 *
 * Why chunks. A checkpoint of 1M series written as one row per series (format 1: TIME '|' SERIES -> value) cost the
 * storage thread about 1.6-2.5 s of CPU every 5 s: a million memtable skiplist inserts and key comparisons, a copy of
 * the whole batch by rocksdb_writebatch_create_from into fresh pages, and a sort to make the inserts cheap. Format 2
 * packs the records of many series into one value of about CHUNK_BYTES under TIME '#' SEQ, SEQ being a sequence
 * number that grows with every chunk this store writes: a checkpoint of 1M series is ~400 puts, built in one small
 * buffer that stays in the cache and copied once into a RocksDB batch whose buffer is kept between checkpoints.
 *
 * Newest wins. A series can be in many chunks of a minute (every partial checkpoint that saw it change); its latest
 * state is its copy in the chunk with the highest SEQ. Chunks of a minute sort before its format-1 rows ('#' < '|'),
 * which are older than every chunk (a store upgraded after a crash). The restore walks each minute's keys backwards:
 * format-1 rows first, kept until a chunk holds the same series, then the chunks from the newest, where the first copy
 * of a series wins and older copies are skipped without decoding their values.
 *
 * SEQ stays increasing across restarts without being stored anywhere: before its first chunk of a minute, the writer
 * looks up the minute's highest stored SEQ (one SeekForPrev) and continues above it.
 *
 * A checkpoint is committed in parts of about PART_BYTES (like a large close): each part holds complete records, so a
 * crash between parts leaves every series at its previous or its new checkpointed state. A full checkpoint (not
 * cm->partial) deletes, in its last part, the minute's older chunks (SEQ below its first) and format-1 rows.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dts/bytes.h"
#include "dts/hash.h"
#include "storage_internal.h"

/* A chunk is closed once its value reaches this size (so it exceeds it by less than one record): big enough that a
 * 1M-series checkpoint is a few hundred puts, small enough to stay in the L2 cache while it is built and to fit the
 * memtable's arena blocks (write_buffer / 8). */
#define CHUNK_BYTES ((size_t)256 << 10)

/* A checkpoint's RocksDB batch is committed when it reaches this size, so its buffer (kept between checkpoints) stays
 * small and a checkpoint of any size costs no fresh memory. */
#define PART_BYTES ((size_t)8 << 20)

#define CHUNK_HEADER 5

/* Room for one record: two varints, the longest SERIES and a value of up to 8 KiB (the largest is a set: 4,099 bytes
 * + 52; a timer at most 2,078 + 52). A value is encoded after a 2-byte length varint (< 16,384). */
#define VALUE_MAX ((size_t)8192)
#define RECORD_MAX (5 + DTS_STORAGE_SERIES_MAX + 2 + VALUE_MAX)

/* ---- the format ------------------------------------------------------------------------------------------------- */

static const char hexd[] = "0123456789abcdef";

int dts_storage_ckpt_chunk_key(char *buf, size_t buf_len, int64_t t_s, uint64_t seq)
{
	int n;

	if (buf_len < DTS_STORAGE_CKPT_KEY_LEN + 1)
		return -ENOSPC;
	n = dts_storage_time_encode(buf, buf_len, DTS_RES_MINUTE, t_s);
	if (n < 0)
		return n;
	buf[n] = '#';
	for (int i = 0; i < DTS_STORAGE_CKPT_SEQ_LEN; i++)
		buf[n + 1 + i] = hexd[(seq >> (4 * (DTS_STORAGE_CKPT_SEQ_LEN - 1 - i))) & 0xf];
	buf[DTS_STORAGE_CKPT_KEY_LEN] = '\0';
	return DTS_STORAGE_CKPT_KEY_LEN;
}

int dts_storage_ckpt_chunk_key_decode(const char *key, size_t len, int64_t *t_s, uint64_t *seq)
{
	uint64_t s = 0;

	if (len != DTS_STORAGE_CKPT_KEY_LEN || key[DTS_STORAGE_TIME_LEN_MINUTE] != '#' ||
	    dts_storage_time_decode(key, DTS_STORAGE_TIME_LEN_MINUTE, DTS_RES_MINUTE, t_s) != 0)
		return -EINVAL;
	for (size_t i = DTS_STORAGE_TIME_LEN_MINUTE + 1; i < len; i++) {
		const char c = key[i];

		if (c >= '0' && c <= '9')
			s = s << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			s = s << 4 | (uint64_t)(c - 'a' + 10);
		else
			return -EINVAL;
	}
	*seq = s;
	return 0;
}

int dts_storage_ckpt_chunk_open(struct dts_ckpt_reader *r, const uint8_t *buf, size_t len)
{
	if (len < CHUNK_HEADER)
		return -EINVAL;
	if (buf[0] != DTS_STORAGE_CKPT_VERSION)
		return buf[0] > DTS_STORAGE_CKPT_VERSION ? -EPROTONOSUPPORT : -EINVAL;
	r->p = buf + CHUNK_HEADER;
	r->end = buf + len;
	r->left = dts_rd32(buf + 1);
	return 0;
}

/* A varint32 of at most 5 bytes, minimal form, not past end. Returns its length, 0 when malformed. */
static size_t get_varint32(const uint8_t *p, const uint8_t *end, uint32_t *out)
{
	uint64_t v = 0;

	for (size_t i = 0; i < 5 && p + i < end; i++) {
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			if ((i > 0 && p[i] == 0) || v > UINT32_MAX)
				return 0;
			*out = (uint32_t)v;
			return i + 1;
		}
	}
	return 0;
}

int dts_storage_ckpt_chunk_next(struct dts_ckpt_reader *r, const char **series, size_t *slen, const uint8_t **val,
				size_t *vlen)
{
	uint32_t sl, vl;
	size_t n;

	if (!r->left)
		return r->p == r->end ? 0 : -EINVAL; /* no trailing byte */
	n = get_varint32(r->p, r->end, &sl);
	if (!n || sl == 0 || sl > (size_t)(r->end - r->p - (ptrdiff_t)n))
		return -EINVAL;
	*series = (const char *)r->p + n;
	*slen = sl;
	r->p += n + sl;
	n = get_varint32(r->p, r->end, &vl);
	if (!n || vl > (size_t)(r->end - r->p - (ptrdiff_t)n))
		return -EINVAL;
	*val = r->p + n;
	*vlen = vl;
	r->p += n + vl;
	r->left--;
	return 1;
}

/* ---- writing ---------------------------------------------------------------------------------------------------- */

/* Write wb and empty it for the next part (its buffer is kept). */
static int commit_part(struct dts_storage *st, rocksdb_writebatch_t *wb)
{
	size_t len = 0;
	int rc;

	rocksdb_writebatch_data(wb, &len);
	rc = dts__write(st, wb, len);
	rocksdb_writebatch_clear(wb);
	return rc;
}

/*
 * Make st->ck_seq exceed every SEQ stored for the minute whose TIME is tm (a previous life's chunks), once per minute:
 * the last few minutes looked up are remembered. Returns 0 or -EIO.
 */
static int seq_for_minute(struct dts_storage *st, int64_t minute, const char *tm)
{
	const unsigned known = st->ck_seen_n < DTS__CK_SEEN ? st->ck_seen_n : DTS__CK_SEEN;
	char hi[DTS_STORAGE_TIME_LEN_MINUTE + 2];
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	char *rerr = NULL;

	for (unsigned i = 0; i < known; i++)
		if (st->ck_seen[i] == minute)
			return 0;
	memcpy(hi, tm, DTS_STORAGE_TIME_LEN_MINUTE);
	hi[DTS_STORAGE_TIME_LEN_MINUTE] = '$'; /* the byte after '#': above every chunk key of the minute */
	ro = rocksdb_readoptions_create();
	if (!ro)
		return -ENOMEM;
	rocksdb_readoptions_set_fill_cache(ro, 0);
	it = rocksdb_create_iterator_cf(st->db, ro, st->cf[DTS__CF_CURRENT]);
	rocksdb_iter_seek_for_prev(it, hi, DTS_STORAGE_TIME_LEN_MINUTE + 1);
	if (rocksdb_iter_valid(it)) {
		size_t kl;
		const char *k = rocksdb_iter_key(it, &kl);
		int64_t t;
		uint64_t seq;

		if (kl > DTS_STORAGE_TIME_LEN_MINUTE && !memcmp(k, tm, DTS_STORAGE_TIME_LEN_MINUTE) &&
		    dts_storage_ckpt_chunk_key_decode(k, kl, &t, &seq) == 0 && seq >= st->ck_seq)
			st->ck_seq = seq + 1;
	}
	rocksdb_iter_get_error(it, &rerr);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (rerr) {
		snprintf(st->last_err, sizeof(st->last_err), "reading checkpoint keys: %s", rerr);
		rocksdb_free(rerr);
		DTS__SSTAT_ADD(st->stats.write_errors, 1);
		return -EIO;
	}
	st->ck_seen[st->ck_seen_n++ % DTS__CK_SEEN] = minute;
	return 0;
}

/* The chunk in st->ck_buf (n records, len bytes) into the batch under TIME '#' SEQ; commits a part when the batch is
 * full. Returns 0 or -errno. */
static int put_chunk(struct dts_storage *st, rocksdb_writebatch_t *wb, int64_t t_s, uint32_t n, size_t len)
{
	char key[DTS_STORAGE_CKPT_KEY_LEN + 1];
	size_t blen = 0;

	st->ck_buf[0] = DTS_STORAGE_CKPT_VERSION;
	dts_wr32(st->ck_buf + 1, n);
	dts_storage_ckpt_chunk_key(key, sizeof(key), t_s, st->ck_seq++); /* t_s checked by the caller */
	rocksdb_writebatch_put_cf(wb, st->cf[DTS__CF_CURRENT], key, DTS_STORAGE_CKPT_KEY_LEN, (const char *)st->ck_buf,
				  len);
	rocksdb_writebatch_data(wb, &blen);
	return blen >= PART_BYTES ? commit_part(st, wb) : 0;
}

int dts_storage_write_checkpoint(struct dts_storage *st, const struct dts_closed_minute *cm)
{
	const int64_t t0 = dts__mono_ns(), t_s = cm->minute * 60;
	char tm[DTS_STORAGE_TIME_LEN_MINUTE + 1], lo[DTS_STORAGE_CKPT_KEY_LEN + 1], hi[DTS_STORAGE_CKPT_KEY_LEN + 1];
	char sbuf[DTS_STORAGE_SERIES_MAX + 1];
	rocksdb_writebatch_t *wb;
	uint64_t first_seq;
	size_t len = CHUNK_HEADER;
	uint32_t n = 0;
	int rc;

	if (st->cfg.mode != DTS_STORAGE_READ_WRITE)
		return -EROFS;
	if (dts_storage_time_encode(tm, sizeof(tm), DTS_RES_MINUTE, t_s) < 0)
		return -EINVAL;
	pthread_mutex_lock(&st->write_lock);
	if (!st->ck_buf) {
		st->ck_buf = malloc(CHUNK_BYTES + RECORD_MAX);
		if (!st->ck_buf) {
			rc = -ENOMEM;
			goto out;
		}
	}
	if (!st->ck_wb)
		st->ck_wb = rocksdb_writebatch_create();
	wb = st->ck_wb;
	rocksdb_writebatch_clear(wb);
	rc = seq_for_minute(st, cm->minute, tm);
	if (rc < 0)
		goto out;
	first_seq = st->ck_seq;
	for (size_t i = 0; i < cm->n && rc == 0; i++) {
		const struct dts_minute_rec *r = &cm->recs[i];
		const struct dts_series_id id = {
			.user = r->user, .process = r->process, .counter = r->counter, .tags = r->tags, .type = r->type,
		};
		const struct dts_stored v = {
			.type = r->type, .first = 0, .last = 0, .agg = r->agg, .sketch = r->sketch, .set = r->set,
		};
		const int sl = dts_storage_series_encode(sbuf, sizeof(sbuf), &id);
		uint8_t *p = st->ck_buf + len;
		int vl;

		if (sl < 0)
			continue; /* counted when the minute closes (DTS_SDROP_INVALID) */
		p += dts_put_varint(p, (uint64_t)sl);
		memcpy(p, sbuf, (size_t)sl);
		p += sl;
		/* the value after room for a 2-byte length, moved down when its length takes 1 (no size computed first:
		 * for a timer that is a walk over its bins) */
		vl = dts_storage_value_encode(&v, p + 2, VALUE_MAX);
		if (vl < 0) {
			rc = vl == -ENOSPC ? -EINVAL : vl; /* cannot happen with the engine's bounds on sketches and sets */
			break;
		}
		if (vl < 0x80) {
			p[0] = (uint8_t)vl;
			memmove(p + 1, p + 2, (size_t)vl);
			p += 1 + vl;
		} else {
			p += dts_put_varint(p, (uint64_t)vl) + (size_t)vl; /* 2 bytes: vl < VALUE_MAX < 2^14 */
		}
		len = (size_t)(p - st->ck_buf);
		if (++n == UINT32_MAX || len >= CHUNK_BYTES) {
			rc = put_chunk(st, wb, t_s, n, len);
			len = CHUNK_HEADER;
			n = 0;
		}
	}
	if (rc == 0 && n)
		rc = put_chunk(st, wb, t_s, n, len);
	if (rc == 0 && !cm->partial) {
		/* A full checkpoint holds every series of the minute: the older chunks and format-1 rows go (in the
		 * last part: a crash before it leaves them, and the newer chunks win over them) */
		dts_storage_ckpt_chunk_key(lo, sizeof(lo), t_s, 0);
		dts_storage_ckpt_chunk_key(hi, sizeof(hi), t_s, first_seq);
		rocksdb_writebatch_delete_range_cf(wb, st->cf[DTS__CF_CURRENT], lo, DTS_STORAGE_TIME_LEN_MINUTE + 1, hi,
						   DTS_STORAGE_CKPT_KEY_LEN);
		memcpy(lo, tm, DTS_STORAGE_TIME_LEN_MINUTE);
		memcpy(hi, tm, DTS_STORAGE_TIME_LEN_MINUTE);
		lo[DTS_STORAGE_TIME_LEN_MINUTE] = '|';
		hi[DTS_STORAGE_TIME_LEN_MINUTE] = '}';
		rocksdb_writebatch_delete_range_cf(wb, st->cf[DTS__CF_CURRENT], lo, DTS_STORAGE_TIME_LEN_MINUTE + 1, hi,
						   DTS_STORAGE_TIME_LEN_MINUTE + 1);
	}
	if (rc == 0 && rocksdb_writebatch_count(wb))
		rc = commit_part(st, wb);
	if (rc == 0) {
		DTS__SSTAT_ADD(st->stats.checkpoints_written, 1);
		dts__account_latency(st, t0);
	}
out:
	if (rc < 0 && st->ck_wb)
		rocksdb_writebatch_clear(st->ck_wb);
	pthread_mutex_unlock(&st->write_lock);
	return rc;
}

/* ---- restore ---------------------------------------------------------------------------------------------------- */

/* Seeds of the 128-bit series hashes that find a series in a minute being rebuilt (as the marker sets: a collision is
 * out of reach at any number of series). */
#define SEED_A 0x636b707461616161ULL
#define SEED_B 0x8f3a5c7e1b2d4f69ULL

struct slot {
	uint64_t a, b;
	uint32_t idx1; /* index in recs + 1; 0: empty */
	bool chunk; /* the record came from a chunk: only a newer chunk could replace it, and none comes (newest first) */
};

/* One checkpointed minute being rebuilt from the current CF. */
struct group {
	int64_t minute;
	struct dts_minute_rec *recs;
	size_t n, cap;
	struct slot *slots;
	size_t nslots; /* a power of two, or 0 */
	uint64_t skipped; /* undecodable records */
};

static void group_clear(struct group *g)
{
	for (size_t i = 0; i < g->n; i++) {
		dts_sketch_free(&g->recs[i].sketch);
		dts_set_free(&g->recs[i].set);
		free((char *)g->recs[i].user);
	}
	g->n = 0;
	if (g->slots)
		memset(g->slots, 0, g->nslots * sizeof(*g->slots));
	g->skipped = 0;
}

static void group_free(struct group *g)
{
	group_clear(g);
	free(g->recs);
	free(g->slots);
}

/* The slot of hashes (a, b): the series' or the empty one where it would go. */
static struct slot *slot_find(struct group *g, uint64_t a, uint64_t b)
{
	size_t i = a & (g->nslots - 1);

	while (g->slots[i].idx1 && (g->slots[i].a != a || g->slots[i].b != b))
		i = (i + 1) & (g->nslots - 1);
	return &g->slots[i];
}

/* Room for one more series (load <= 1/2). Returns 0 or -ENOMEM. */
static int group_reserve(struct group *g)
{
	if (g->n == g->cap) {
		const size_t cap = g->cap ? 2 * g->cap : 1024;
		struct dts_minute_rec *p = realloc(g->recs, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		g->recs = p;
		g->cap = cap;
	}
	if (2 * (g->n + 1) > g->nslots) {
		const size_t ns = g->nslots ? 2 * g->nslots : 2048;
		struct slot *old = g->slots, *s = calloc(ns, sizeof(*s));
		const size_t on = g->nslots;

		if (!s)
			return -ENOMEM;
		g->slots = s;
		g->nslots = ns;
		for (size_t i = 0; i < on; i++)
			if (old[i].idx1)
				*slot_find(g, old[i].a, old[i].b) = old[i];
		free(old);
	}
	return 0;
}

/*
 * Take one copy of a series (SERIES bytes s, hashed a and b with SEED_A and SEED_B; value bytes) into g, from a chunk
 * or a format-1 row, the copies of a minute coming newest first except that format-1 rows (older than any chunk) come
 * before the chunks. An older copy costs one lookup: neither its series nor its value is decoded. Returns 0 (taken or
 * older than the one kept), 1 (undecodable: skipped), -ENOMEM.
 */
static int group_take(struct group *g, const char *s, size_t sl, uint64_t a, uint64_t b, bool chunk,
		      const uint8_t *val, size_t vlen)
{
	struct dts_key_view kv;
	struct dts_minute_rec *r;
	struct dts_stored v;
	struct slot *sp;
	char *id;

	if (group_reserve(g) < 0)
		return -ENOMEM;
	sp = slot_find(g, a, b);
	if (sp->idx1 && (sp->chunk || !chunk))
		return 0; /* the copy kept is newer */
	if (dts_storage_series_decode(s, sl, &kv) != 0)
		return 1;
	dts_stored_init(&v);
	if (dts_storage_value_decode(&v, val, vlen) != 0 || v.type != kv.type) {
		dts_stored_free(&v);
		return 1;
	}
	if (sp->idx1) {
		r = &g->recs[sp->idx1 - 1]; /* a format-1 row, replaced by a chunk's copy */
		dts_sketch_free(&r->sketch);
		dts_set_free(&r->set);
		r->agg = v.agg;
		r->sketch = v.sketch; /* moved: freed by group_clear */
		r->set = v.set;
		sp->chunk = true;
		return 0;
	}
	id = malloc(kv.user_len + kv.process_len + kv.counter_len + kv.tags_len + 4);
	if (!id) {
		dts_stored_free(&v);
		return -ENOMEM;
	}
	r = &g->recs[g->n++];
	*sp = (struct slot){ .a = a, .b = b, .idx1 = (uint32_t)g->n, .chunk = chunk };
	r->user = id;
	memcpy(id, kv.user, kv.user_len);
	id[kv.user_len] = '\0';
	r->process = id + kv.user_len + 1;
	memcpy((char *)r->process, kv.process, kv.process_len);
	((char *)r->process)[kv.process_len] = '\0';
	r->counter = r->process + kv.process_len + 1;
	memcpy((char *)r->counter, kv.counter, kv.counter_len);
	((char *)r->counter)[kv.counter_len] = '\0';
	r->tags = r->counter + kv.counter_len + 1;
	memcpy((char *)r->tags, kv.tags, kv.tags_len);
	((char *)r->tags)[kv.tags_len] = '\0';
	r->type = kv.type;
	r->agg = v.agg;
	r->sketch = v.sketch;
	r->set = v.set;
	return 0;
}

#define PREFETCH 16

/* A record of a chunk, hashed, waiting for its slot to arrive in the cache. */
struct pending {
	const char *s;
	size_t sl;
	const uint8_t *val;
	size_t vlen;
	uint64_t a, b;
};

/* One row of the minute: a chunk (every record) or a format-1 row. Returns 0 or -ENOMEM; damage is counted in g. */
static int take_row(struct dts_storage *st, struct group *g, const char *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct dts_ckpt_reader r;
	const char *s;
	const uint8_t *val;
	size_t sl, vlen;
	int64_t t;
	uint64_t seq;
	int rc;

	if (k[DTS_STORAGE_TIME_LEN_MINUTE] == '|') {
		s = k + DTS_STORAGE_TIME_LEN_MINUTE + 1;
		sl = kl - DTS_STORAGE_TIME_LEN_MINUTE - 1;
		rc = group_take(g, s, sl, dts_hash64(s, sl, SEED_A), dts_hash64(s, sl, SEED_B), false, v, vl);
		g->skipped += rc == 1;
		return rc < 0 ? rc : 0;
	}
	if (dts_storage_ckpt_chunk_key_decode(k, kl, &t, &seq) != 0 || dts_storage_ckpt_chunk_open(&r, v, vl) != 0) {
		dts__log(st, 0, "store '%s': checkpoint chunk '%.*s' is undecodable: skipped", st->data_dir, (int)kl, k);
		g->skipped++;
		return 0;
	}
	/* PREFETCH records at a time: hash them and prefetch their slots (at 1M series each lookup is a cache miss), then
	 * take them in order */
	do {
		struct pending q[PREFETCH];
		unsigned nq = 0;

		while (nq < PREFETCH && (rc = dts_storage_ckpt_chunk_next(&r, &s, &sl, &val, &vlen)) > 0) {
			q[nq] = (struct pending){ .s = s, .sl = sl, .val = val, .vlen = vlen,
						  .a = dts_hash64(s, sl, SEED_A), .b = dts_hash64(s, sl, SEED_B) };
			if (g->nslots)
				__builtin_prefetch(&g->slots[q[nq].a & (g->nslots - 1)]);
			nq++;
		}
		for (unsigned i = 0; i < nq; i++) {
			const int trc = group_take(g, q[i].s, q[i].sl, q[i].a, q[i].b, true, q[i].val, q[i].vlen);

			if (trc < 0)
				return trc;
			g->skipped += trc == 1;
		}
	} while (rc > 0);
	if (rc < 0) {
		dts__log(st, 0, "store '%s': checkpoint chunk '%.*s' is damaged after %u records: the rest skipped",
			 st->data_dir, (int)kl, k, dts_rd32(v + 1) - r.left);
		g->skipped++;
	}
	return 0;
}

/* Hand one rebuilt minute to the merger (still open there) or store it as closed. Returns records or -errno. */
static long group_flush(struct dts_storage *st, struct group *g, struct dts_merger *m, int64_t now_ms)
{
	const int64_t now_min = now_ms / 60000;
	struct dts_closed_minute cm = { .minute = g->minute, .open = false, .n = g->n, .recs = g->recs };
	long rc;

	if (g->skipped)
		dts__log(st, 0, "store '%s': %llu undecodable checkpoint records of minute %lld skipped", st->data_dir,
			 (unsigned long long)g->skipped, (long long)g->minute);
	if (g->n == 0)
		return 0;
	if (m && g->minute >= now_min - 1 && g->minute <= now_min + 1) {
		rc = dts_merger_restore(m, &cm, now_ms);
		if (rc >= 0)
			dts__log(st, 2, "store '%s': restored %ld series of open minute %lld from its checkpoint",
				 st->data_dir, rc, (long long)g->minute);
	} else {
		rc = dts_storage_write_minute(st, &cm);
		if (rc == 0) {
			rc = (long)g->n;
			dts__log(st, 2, "store '%s': stored the checkpoint of minute %lld (%zu series) as closed",
				 st->data_dir, (long long)g->minute, g->n);
		}
	}
	return rc;
}

long dts_storage_restore(struct dts_storage *st, struct dts_merger *m, int64_t now_ms)
{
	static const char lower[] = "0", upper[] = ":"; /* checkpoint keys start with a digit: [0, :) */
	char tm[DTS_STORAGE_TIME_LEN_MINUTE + 1] = "", seek[DTS_STORAGE_TIME_LEN_MINUTE + 1];
	struct group g = { .minute = INT64_MIN };
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	long total = 0, rc = 0;
	char *rerr = NULL;

	if (st->cfg.mode != DTS_STORAGE_READ_WRITE)
		return -EROFS;
	ro = rocksdb_readoptions_create();
	if (!ro)
		return -ENOMEM;
	rocksdb_readoptions_set_iterate_lower_bound(ro, lower, 1);
	rocksdb_readoptions_set_iterate_upper_bound(ro, upper, 1);
	rocksdb_readoptions_set_fill_cache(ro, 0);
	it = rocksdb_create_iterator_cf(st->db, ro, st->cf[DTS__CF_CURRENT]);
	/* Minute by minute in time order; within a minute backwards, from the byte after its last possible key */
	rocksdb_iter_seek(it, lower, 1);
	while (rc >= 0 && rocksdb_iter_valid(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		int64_t t;

		if (kl <= DTS_STORAGE_TIME_LEN_MINUTE || (tm[0] && !memcmp(k, tm, DTS_STORAGE_TIME_LEN_MINUTE)) ||
		    dts_storage_time_decode(k, DTS_STORAGE_TIME_LEN_MINUTE, DTS_RES_MINUTE, &t) != 0) {
			rocksdb_iter_next(it); /* not a checkpoint key, or junk after the minute just done */
			continue;
		}
		memcpy(tm, k, DTS_STORAGE_TIME_LEN_MINUTE);
		memcpy(seek, tm, DTS_STORAGE_TIME_LEN_MINUTE);
		seek[DTS_STORAGE_TIME_LEN_MINUTE] = '}'; /* after TIME '|' SERIES, which sorts after TIME '#' SEQ */
		g.minute = t / 60;
		rocksdb_iter_seek_for_prev(it, seek, DTS_STORAGE_TIME_LEN_MINUTE + 1);
		for (; rc >= 0 && rocksdb_iter_valid(it); rocksdb_iter_prev(it)) {
			k = rocksdb_iter_key(it, &kl);
			if (kl < DTS_STORAGE_TIME_LEN_MINUTE || memcmp(k, tm, DTS_STORAGE_TIME_LEN_MINUTE))
				break; /* the minute before */
			if (kl <= DTS_STORAGE_TIME_LEN_MINUTE + 1 ||
			    (k[DTS_STORAGE_TIME_LEN_MINUTE] != '#' && k[DTS_STORAGE_TIME_LEN_MINUTE] != '|'))
				continue; /* not ours */
			const char *v = rocksdb_iter_value(it, &vl);

			rc = take_row(st, &g, k, kl, (const uint8_t *)v, vl);
		}
		if (rc >= 0) {
			rocksdb_iter_get_error(it, &rerr);
			if (rerr)
				break;
			rc = group_flush(st, &g, m, now_ms);
			total += rc > 0 ? rc : 0;
		}
		group_clear(&g);
		if (rc >= 0) {
			seek[DTS_STORAGE_TIME_LEN_MINUTE] = '}';
			rocksdb_iter_seek(it, seek, DTS_STORAGE_TIME_LEN_MINUTE + 1);
		}
	}
	if (!rerr)
		rocksdb_iter_get_error(it, &rerr);
	if (rerr) {
		dts__log(st, 0, "store '%s': reading checkpoints: %s", st->data_dir, rerr);
		rocksdb_free(rerr);
		rc = -EIO;
	}
	group_free(&g);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	return rc < 0 ? rc : total;
}
