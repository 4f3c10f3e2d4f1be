/*
 * core.c - the RX-core hot path: split a datagram into lines, decode them, and aggregate into the core's table.
 *
 * Why it is shaped this way. At a million distinct names nearly every line touches a table bucket that is not in
 * cache, and a DRAM miss (~100 ns) is four times the whole per-line budget. So lines are decoded in small batches
 * (DTS_INGEST_BATCH): decode and hash each line, prefetch its bucket, and only when the batch is full apply the
 * samples to the table; by then the first buckets have arrived. Each line of a batch decodes into its own scratch
 * buffer, because its normalised name must stay valid until the batch is applied.
 *
 * Everything here runs on one core and touches only that core's table and counters: no locks, no atomics other than
 * relaxed single-writer counter stores, no allocation, no system calls. Work is O(bytes of the datagram).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dts/hash.h"
#include "engine_internal.h"

/* Where a decoded sample goes: its identity hash, slot and (prefetched) table bucket. */
struct pending {
	uint64_t hash;
	uint32_t slot;
	uint32_t bucket;
};

/* Room for a full batch of single-value lines plus one maximal multi-value line. */
#define PENDING_MAX (DTS_INGEST_BATCH + DTS_MAX_VALUES_PER_LINE)

struct batch {
	struct dts_sample s[PENDING_MAX]; /* contiguous, so the decoders write straight into it */
	struct pending p[PENDING_MAX];
	unsigned n; /* pending samples */
	unsigned lines; /* lines decoded into this batch (= scratch buffers in use) */
	unsigned applied; /* samples aggregated so far in this datagram */
};

uint64_t dts__sample_hash(const struct dts_core *c, const struct dts_sample *s)
{
	char buf[DTS_MAX_NAME + 2 * DTS_MAX_USER + 2];
	const char sep = c->dcfg->process_sep;
	uint64_t uh = s->user_len ? dts_hash64(s->user, s->user_len, DTS_HASH_SEED) : c->user_hash;
	/* plen in the seed tells "a.b"+"c" from "a"+"b.c", whose joined bytes are equal. */
	uint64_t seed = uh ^ ((uint64_t)s->type << 56) ^ ((uint64_t)s->process_len << 40);
	size_t n = (size_t)s->process_len + 1 + s->counter_len;
	uint64_t h;

	if (s->counter == s->process + s->process_len + 1 && s->process[s->process_len] == sep) {
		h = dts_hash64(s->process, n, seed);
	} else {
		if (n > sizeof(buf))
			n = sizeof(buf); /* defensive: decoders bound both parts by DTS_MAX_NAME */
		memcpy(buf, s->process, s->process_len);
		buf[s->process_len] = sep;
		memcpy(buf + s->process_len + 1, s->counter, n - s->process_len - 1);
		h = dts_hash64(buf, n, seed);
	}
	if (s->tags_len)
		h = dts_hash64(s->tags, s->tags_len, h);
	return h ? h : 1;
}

static void count_reject(struct dts_core *c, int reason)
{
	unsigned r = (unsigned)reason;

	if (r >= DTS_REJ_COUNT)
		r = DTS_REJ_BAD_VALUE; /* defensive: decoders only return listed reasons */
	DTS__STAT_ADD(c->stats.rejected[r], 1);
}

static void count_drop(struct dts_core *c, enum dts_drop d)
{
	DTS__STAT_ADD(c->stats.dropped[d], 1);
}

/* Copy the identity of s into the key arena. Returns the record's offset, or UINT32_MAX when the arena is full. */
static uint32_t store_ident(struct dts_core *c, struct dts__table *t, const struct dts_sample *s)
{
	const char *user = s->user_len ? s->user : c->user;
	uint16_t ulen = s->user_len ? s->user_len : c->user_len;
	size_t need = sizeof(struct dts__ident) + ulen + s->process_len + s->counter_len + s->tags_len;
	uint32_t off = t->keys_used;
	struct dts__ident *id;
	char *p;

	need = (need + 7) & ~(size_t)7;
	if (need > t->keys_cap - t->keys_used)
		return UINT32_MAX;
	id = (struct dts__ident *)(t->keys + off);
	id->user_len = ulen;
	id->process_len = s->process_len;
	id->counter_len = s->counter_len;
	id->tags_len = s->tags_len;
	p = id->bytes;
	memcpy(p, user, ulen);
	p += ulen;
	memcpy(p, s->process, s->process_len);
	p += s->process_len;
	memcpy(p, s->counter, s->counter_len);
	p += s->counter_len;
	memcpy(p, s->tags, s->tags_len);
	t->keys_used += (uint32_t)need;
	return off;
}

/* Find or insert the bucket for (hash, slot). Returns NULL when the table cannot take a new entry. */
static struct dts__entry *lookup_insert(struct dts_core *c, struct dts__table *t, const struct pending *pd,
					const struct dts_sample *s, int16_t rel, uint32_t *idx_out)
{
	uint32_t i = pd->bucket;

	for (;;) {
		struct dts__entry *e = &t->entries[i];

		if (e->hash == pd->hash && e->slot_rel == rel) {
			*idx_out = i;
			return e;
		}
		if (e->hash == 0)
			break;
		i = (i + 1) & t->mask;
	}
	/* Hard limit 7/8 full: past max_used the core asks for a hand-over but keeps aggregating meanwhile. */
	if (t->n_used >= t->mask - (t->mask >> 3))
		return NULL;
	uint32_t off = store_ident(c, t, s);
	if (off == UINT32_MAX)
		return NULL;
	struct dts__entry *e = &t->entries[i];
	e->hash = pd->hash;
	e->key_off = off;
	e->slot_rel = rel;
	e->type = s->type;
	e->flags = 0;
	dts_agg_init(&e->agg);
	t->used[t->n_used++] = i;
	*idx_out = i;
	return e;
}

static void apply_gauge(struct dts__entry *e, const struct dts_sample *s)
{
	if (!(s->flags & DTS_SAMPLE_GAUGE_DELTA)) {
		if (!(e->flags & DTS__ENT_GAUGE_ABS))
			dts_agg_init(&e->agg); /* an absolute value supersedes earlier pending deltas */
		e->flags = DTS__ENT_GAUGE_ABS;
		dts_agg_add(&e->agg, s->value, 1.0);
	} else if (e->flags & DTS__ENT_GAUGE_ABS) {
		dts_agg_add(&e->agg, e->agg.lst + s->value, 1.0);
	} else {
		/* No absolute value yet in this entry: accumulate the net delta in lst; the merger applies it. */
		e->flags = DTS__ENT_GAUGE_PENDING;
		e->agg.lst += s->value;
	}
}

/* Aggregate one pending sample. Returns true when it was counted. */
static bool apply_one(struct dts_core *c, struct dts__table *t, const struct pending *pd, const struct dts_sample *s)
{
	struct dts__entry *e;
	uint32_t idx;
	int64_t rel;

	if (!t->has_base) {
		/* Leave room for |T timestamps up to DTS_MAX_PAST_SLOTS in the past. */
		t->base_slot = pd->slot > 256 ? pd->slot - 256 : 0;
		t->has_base = true;
	}
	rel = (int64_t)pd->slot - t->base_slot;
	if (rel < 0 || rel > INT16_MAX) {
		count_drop(c, rel < 0 ? DTS_DROP_LATE : DTS_DROP_FUTURE);
		return false;
	}
	/* Check log room first so that an entry's scalar aggregate never counts a value its sketch/set lacks. */
	if ((s->type == DTS_TIMER && t->n_tlog == t->tlog_cap) || (s->type == DTS_SET && t->n_slog == t->slog_cap)) {
		count_drop(c, DTS_DROP_TABLE_FULL);
		return false;
	}
	e = lookup_insert(c, t, pd, s, (int16_t)rel, &idx);
	if (!e) {
		count_drop(c, DTS_DROP_TABLE_FULL);
		return false;
	}
	switch (s->type) {
	case DTS_COUNTER:
		dts_agg_add(&e->agg, s->value, s->weight);
		break;
	case DTS_TIMER: {
		struct dts__tlog *l = &t->tlog[t->n_tlog++];
		double a = fabs(s->value);

		dts_agg_add(&e->agg, s->value, s->weight);
		l->entry = idx;
		l->key = a <= DTS_SKETCH_MIN_VALUE ? INT16_MIN : (int16_t)dts_sketch_key(a);
		l->negative = s->value < 0;
		l->pad = 0;
		/* 1/rate is finite for any accepted rate but may exceed float: clamp (the scalar agg keeps the double). */
		l->weight = s->weight < 1e30 ? (float)s->weight : 1e30f;
		break;
	}
	case DTS_GAUGE:
		apply_gauge(e, s);
		break;
	case DTS_SET: {
		struct dts__slog *l = &t->slog[t->n_slog++];

		e->agg.count += 1; /* set operations seen; the distinct count comes from the set */
		l->entry = idx;
		l->pad = 0;
		l->member = s->set_member;
		break;
	}
	}
	return true;
}

static void flush_batch(struct dts_core *c, struct batch *b)
{
	struct dts__table *t = c->active;

	for (unsigned i = 0; i < b->n; i++)
		b->applied += apply_one(c, t, &b->p[i], &b->s[i]);
	b->n = 0;
	b->lines = 0;
}

/* Decode one line into the batch. */
static void decode_line(struct dts_core *c, struct batch *b, const char *line, size_t len, int64_t now_s)
{
	struct dts_scratch *scratch;
	struct dts_sample *first;
	int n;

	if (b->lines == DTS_INGEST_BATCH || b->n + DTS_MAX_VALUES_PER_LINE > PENDING_MAX)
		flush_batch(c, b);
	scratch = &c->scratch[b->lines];
	first = &b->s[b->n];
	if (len > DTS_MAX_LINE) {
		count_reject(c, DTS_REJ_LINE_TOO_LONG);
		return;
	}
	if (dts_line_is_dattss(line, len)) {
		n = dts_dattss_decode(c->dcfg, &c->auth, line, len, first, scratch);
		if (n > 0)
			DTS__STAT_ADD(c->stats.dattss_lines, 1);
	} else {
		n = dts_statsd_decode(c->dcfg, line, len, now_s, first, DTS_MAX_VALUES_PER_LINE, scratch);
		if (n > 0)
			DTS__STAT_ADD(c->stats.statsd_lines, 1);
	}
	if (n == 0)
		return; /* blank line */
	DTS__STAT_ADD(c->stats.lines, 1);
	if (n < 0) {
		count_reject(c, -n);
		return;
	}
	uint64_t h = dts__sample_hash(c, first);
	for (int i = 0; i < n; i++) {
		struct pending *pd = &b->p[b->n + (unsigned)i];
		int64_t ts = first[i].ts ? first[i].ts : now_s;

		pd->hash = h;
		pd->slot = (uint32_t)(ts / DTS_SLOT_SECONDS);
		pd->bucket = dts__table_bucket(c->active, h, pd->slot);
		__builtin_prefetch(&c->active->entries[pd->bucket], 1, 3);
	}
	b->n += (unsigned)n;
	b->lines++;
}

unsigned dts_core_ingest(struct dts_core *c, const char *buf, size_t len, int64_t now_s)
{
	struct batch b;
	const char *p = buf, *end = buf + len;

	b.n = 0;
	b.lines = 0;
	b.applied = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;

		if (le > p)
			decode_line(c, &b, p, (size_t)(le - p), now_s);
		p = nl ? nl + 1 : end;
	}
	flush_batch(c, &b);
	DTS__STAT_ADD(c->stats.packets, 1);
	DTS__STAT_ADD(c->stats.bytes, len);
	DTS__STAT_ADD(c->stats.samples, b.applied);
	return b.applied;
}

size_t dts_core_ingest_stream(struct dts_core *c, const char *buf, size_t len, int64_t now_s)
{
	const char *last_nl = memrchr(buf, '\n', len);
	size_t used;

	if (!last_nl) {
		if (len <= DTS_MAX_LINE)
			return 0; /* wait for the rest of the line */
		count_reject(c, DTS_REJ_LINE_TOO_LONG);
		DTS__STAT_ADD(c->stats.lines, 1);
		return len;
	}
	used = (size_t)(last_nl - buf) + 1;
	dts_core_ingest(c, buf, used, now_s);
	return used;
}

bool dts_core_tick(struct dts_core *c, int64_t now_ms)
{
	struct dts__table *t = c->active, *fresh;
	bool full = dts__table_wants_handover(t);

	if (!c->flush_req && !full && now_ms < c->next_tick_ms)
		return false;
	if (t->n_used == 0) {
		c->next_tick_ms = now_ms + c->tick_ms;
		c->flush_req = false;
		return false;
	}
	fresh = dts__ring_pop(&c->free, NULL);
	if (!fresh) {
		/* Keep aggregating into the current table: a longer tick, not a stall and not a loss (yet). */
		if (!c->deferring)
			DTS__STAT_ADD(c->stats.handover_deferred, 1);
		c->deferring = true;
		return false;
	}
	if (!dts__ring_push(&c->full, t, now_ms))
		abort(); /* cannot happen: ring capacity exceeds the pool (invariant, see engine_internal.h) */
	c->active = fresh;
	c->deferring = false;
	c->flush_req = false;
	c->next_tick_ms = now_ms + c->tick_ms;
	DTS__STAT_ADD(c->stats.handovers, 1);
	return true;
}

bool dts_core_saturated(const struct dts_core *c)
{
	return c->deferring && dts__table_wants_handover(c->active);
}

void dts_core_flush(struct dts_core *c)
{
	c->flush_req = true;
}

void dts_core_stats_read(const struct dts_core *c, struct dts_core_stats *out)
{
	const uint64_t *src = (const uint64_t *)&c->stats;
	uint64_t *dst = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
