/*
 * core.c - the RX-core hot path: split a datagram into lines, decode them, and aggregate into the core's table.
 *
 * Why it is shaped this way. At a million distinct names nearly every line touches a table bucket that is not in
 * cache, and a DRAM miss (~100 ns) is four times the whole per-line budget. So lines are decoded in small batches
 * (DTS_INGEST_BATCH): decode and hash each line, prefetch its bucket, and only when the batch is full apply the
 * samples to the table; by then the first buckets have arrived. Each line of a batch that needs one (a normalised
 * name, tags) decodes into its own scratch buffer, because its name must stay valid until the batch is applied.
 * The common line is decoded by the statsd fast path (statsd_fast.h) inline in the line loop, straight from the
 * datagram: it finds the line's end itself, and its name is hashed where it lies (ident_hash); only the other lines
 * are split off at their '\n' and go through the general decoders.
 * dts_core_ingest_burst carries one batch across the datagrams of a receive burst, so that one-line datagrams (most
 * statsd clients send one line per datagram) overlap their bucket misses too; samples are still applied in arrival
 * order, so the results are those of one call per datagram. A batch is applied with as few tests of the sample's type
 * as it can (apply_batch_roomy): the timers' sketch keys go to the log after the batch's scalar updates, in order.
 *
 * Native datagrams (docs/protocol.md) take the same table: dts_native_open verifies the whole datagram first (MAC,
 * replay window, contents; the key lookup under an RCU read-side critical section, the users registry being RCU
 * data), then each partial aggregate is merged into the entry of its series and slot (prefetched in batches like
 * lines), a timer's sketch or a set's encoding is copied into the blob arena for the merger, and the process report
 * and the events go to their own logs. dts_core_ingest_partial / _proc / _event feed the same paths from PUT /agg.
 *
 * Everything here runs on one core and touches only that core's table and counters: no locks, no atomics other than
 * relaxed single-writer counter stores and the RCU read-side lock (a thread-local counter), no allocation, no system
 * calls. Work is O(bytes of the datagram) plus at most one HMAC.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dts/hash.h"
#include "engine_internal.h"
#include "rcu.h"
#include "statsd_fast.h"

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
	unsigned lines; /* lines of this batch that took a scratch buffer (not fast-path ones): <= n */
	unsigned applied; /* samples aggregated so far in this datagram */
};

/*
 * The identity hash of a series: the user's hash (ident_seed), the type and plen mixed with n in a first round, then
 * the bytes "process SEP counter" joined (n bytes, the process being plen of them), then the canonical tags. plen
 * tells "a.b"+"c" from "a"+"b.c", whose joined bytes are equal. Every path that keys a table entry - statsd and
 * DaTtSs lines, native datagrams, PUT /agg partials, and the merger restoring closed minutes
 * (dts__sample_hash) - computes it here, so a series gets the same hash whichever way it arrives (test_table
 * checks the paths against each other). The tables and the merger take (hash, type) to be the series
 * (docs/architecture.md, "Identity by hash"); the seed holds the merger's secret key.
 * Built for the names statsd lines carry (10-60 bytes) rather than on dts_hash64: 32 bytes per round, the tail as
 * two overlapping 16-byte halves (17..32 bytes: no branch per length class), three multiplications for a 20-byte
 * name. Its value is not stored anywhere: tables and the merger recompute it.
 */
static inline uint64_t ident_seed(const struct dts_core *c, uint64_t uh)
{
	/* the merger's secret key (dts_merger_cfg.ident_key), and k0 of ident_hash's first round, once per call */
	return uh ^ c->ident_key ^ 0xa0761d6478bd642fULL;
}

static inline __attribute__((always_inline)) uint64_t ident_hash(uint64_t seed, uint8_t type, size_t plen,
								  const char *joined, size_t n, const char *tags,
								  size_t tags_len)
{
	const uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL, k2 = 0x8ebc6af09c88c6e3ULL,
		       k3 = 0x589965cc75374cc3ULL;
	const unsigned char *p = (const unsigned char *)joined;
	/* type, plen and n go through a multiplication of their own: XORed into a data word, they could cancel a
	 * difference in the name (a counter "x.aaaaaaac" and a timer "x.aaaaaaab" had one hash that way) */
	uint64_t h = dts__mix(seed ^ ((uint64_t)type << 56) ^ ((uint64_t)plen << 40), (uint64_t)n ^ k1), a, b;
	size_t left = n;

	if (__builtin_expect(left > 32, 0)) {
		do {
			h = dts__mix(dts__load64(p) ^ k0 ^ h, dts__load64(p + 8) ^ k1);
			h = dts__mix(dts__load64(p + 16) ^ k2 ^ h, dts__load64(p + 24) ^ k3);
			p += 32;
			left -= 32;
		} while (left > 32);
	}
	if (left > 16) {
		h = dts__mix(dts__load64(p) ^ k0 ^ h, dts__load64(p + 8) ^ k1);
		a = dts__load64(p + left - 16);
		b = dts__load64(p + left - 8);
	} else if (left >= 8) {
		a = dts__load64(p);
		b = dts__load64(p + left - 8);
	} else if (left >= 4) {
		a = dts__load32(p);
		b = dts__load32(p + left - 4);
	} else {
		a = left ? ((uint64_t)p[0] << 16) | ((uint64_t)p[left >> 1] << 8) | p[left - 1] : 0;
		b = 0;
	}
	h = dts__mix(a ^ k2 ^ h, b ^ k3 ^ n);
	h ^= dts__mix(h, 0x9e3779b97f4a7c15ULL);
	if (tags_len)
		h = dts_hash64(tags, tags_len, h);
	return h ? h : 1;
}

/*
 * The identity hash of a decoded sample. Always inlined into add_pending, the per-line caller (a call and its frame
 * cost about as much as the seed mixing and the checks here); dts__sample_hash is the out-of-line form for the merger.
 */
static inline __attribute__((always_inline)) uint64_t sample_hash(const struct dts_core *c, const struct dts_sample *s)
{
	char buf[DTS_MAX_NAME + 2 * DTS_MAX_USER + 2];
	const char sep = c->dcfg->process_sep;
	uint64_t uh = s->user_len ? dts_hash64(s->user, s->user_len, DTS_HASH_SEED) : c->user_hash;
	size_t n = (size_t)s->process_len + 1 + s->counter_len;

	if (s->counter == s->process + s->process_len + 1 && s->process[s->process_len] == sep)
		return ident_hash(ident_seed(c, uh), s->type, s->process_len, s->process, n, s->tags, s->tags_len);
	if (n > sizeof(buf))
		n = sizeof(buf); /* defensive: decoders bound both parts by DTS_MAX_NAME */
	memcpy(buf, s->process, s->process_len);
	buf[s->process_len] = sep;
	memcpy(buf + s->process_len + 1, s->counter, n - s->process_len - 1);
	return ident_hash(ident_seed(c, uh), s->type, s->process_len, buf, n, s->tags, s->tags_len);
}

uint64_t dts__sample_hash(const struct dts_core *c, const struct dts_sample *s)
{
	return sample_hash(c, s);
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

/*
 * Copy n bytes (names: most under 32) without a call to memcpy, whose call and size dispatch cost more than the copy:
 * fixed-size moves that overlap at the tail, never reading or writing past either end.
 */
static inline __attribute__((always_inline)) void copy_name(char *dst, const char *src, size_t n)
{
	if (n >= 16) {
		for (size_t i = 0; i + 16 < n; i += 16)
			memcpy(dst + i, src + i, 16);
		memcpy(dst + n - 16, src + n - 16, 16);
	} else if (n >= 8) {
		uint64_t a, b;

		memcpy(&a, src, 8);
		memcpy(&b, src + n - 8, 8);
		memcpy(dst, &a, 8);
		memcpy(dst + n - 8, &b, 8);
	} else if (n >= 4) {
		uint32_t a, b;

		memcpy(&a, src, 4);
		memcpy(&b, src + n - 4, 4);
		memcpy(dst, &a, 4);
		memcpy(dst + n - 4, &b, 4);
	} else if (n) {
		dst[0] = src[0];
		dst[n / 2] = src[n / 2];
		dst[n - 1] = src[n - 1];
	}
}

/* Copy the identity of s into the key arena. Returns the record's offset, or UINT32_MAX when the arena is full. */
static __attribute__((noinline)) uint32_t store_ident(struct dts_core *c, struct dts__table *t,
						       const struct dts_sample *s)
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
	copy_name(p, user, ulen);
	p += ulen;
	copy_name(p, s->process, s->process_len);
	p += s->process_len;
	copy_name(p, s->counter, s->counter_len);
	p += s->counter_len;
	if (s->tags_len)
		memcpy(p, s->tags, s->tags_len); /* a fast-path sample's tags pointer is not set (statsd_fast.h) */
	t->keys_used += (uint32_t)need;
	return off;
}

/* Find or insert the bucket for (hash, slot). Returns NULL when the table cannot take a new entry. Inlined: a hit
 * is a few instructions, fewer than a call; the insert (store_ident) stays out of line. */
static inline __attribute__((always_inline)) struct dts__entry *lookup_insert(struct dts_core *c, struct dts__table *t,
									      const struct pending *pd,
									      const struct dts_sample *s, int16_t rel,
									      uint32_t *idx_out)
{
	uint32_t i = pd->bucket;

	for (;;) {
		struct dts__entry *e = &t->entries[i];

		/* the type too: a value must never go to an entry of another type, whatever the hashes (the merger
		 * would merge a timer's log into a set, or a member into a sketch) */
		if (e->hash == pd->hash && e->slot_rel == rel && e->type == s->type) {
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
	t->gauges[t->n_gauges] = i; /* kept only for a gauge: no branch (n_gauges < n_used <= capacity) */
	t->n_gauges += s->type == DTS_GAUGE;
	*idx_out = i;
	return e;
}

static inline void apply_gauge(struct dts__entry *e, const struct dts_sample *s)
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

/* The timer log record of a timer sample s aggregated into entry idx; the log has room (checked by the caller). */
static inline __attribute__((always_inline)) void log_timer(struct dts__table *t, uint32_t idx,
							    const struct dts_sample *s)
{
	struct dts__tlog *l = &t->tlog[t->n_tlog++];
	double a = fabs(s->value);

	l->entry = idx;
	l->key = a <= DTS_SKETCH_MIN_VALUE ? INT16_MIN : (int16_t)dts_sketch_key(a);
	l->negative = s->value < 0;
	l->pad = 0;
	/* 1/rate is finite for any accepted rate but may exceed float: clamp (the scalar agg keeps the double). */
	l->weight = s->weight < 1e30 ? (float)s->weight : 1e30f;
}

/* Set a table's base slot; once per table, from its first sample. */
static __attribute__((noinline)) void table_set_base(struct dts_core *c, struct dts__table *t, uint32_t slot)
{
	/* Relative slots span [base, base + INT16_MAX] (45 h). Put the base as far before the receive clock as
	 * the oldest timestamp either protocol accepts (|T max_past_skew_s, native max_past_s; at most a day), so
	 * that whatever is accepted later in this table fits: the rest of the span covers the future skew. */
	int64_t past = c->dcfg->max_past_skew_s > c->ncfg->max_past_s ? c->dcfg->max_past_skew_s
								  : c->ncfg->max_past_s;
	int64_t base = c->now_s / DTS_SLOT_SECONDS - (past > 86400 ? 86400 : past) / DTS_SLOT_SECONDS - 1;

	if (base > (int64_t)slot)
		base = slot; /* a clock behind the sample's own time (tests, hand-fed cores) */
	t->base_slot = base > 0 ? (uint32_t)base : 0;
	t->has_base = true;
}

/* slot relative to the table's base (table_set_base: as far before the receive clock as the oldest timestamp either
 * protocol accepts). Returns false, counted, when the slot does not fit the table's int16 range. Inline: every sample
 * takes it. */
static inline bool table_rel(struct dts_core *c, struct dts__table *t, uint32_t slot, int16_t *rel_out)
{
	int64_t rel;

	if (__builtin_expect(!t->has_base, 0))
		table_set_base(c, t, slot);
	rel = (int64_t)slot - t->base_slot;
	if (rel < 0 || rel > INT16_MAX) {
		count_drop(c, rel < 0 ? DTS_DROP_LATE : DTS_DROP_FUTURE);
		return false;
	}
	*rel_out = (int16_t)rel;
	return true;
}

/*
 * Aggregate one pending sample into t, whose base slot is set. Returns true when it was counted. Inlined into its one
 * caller, flush_batch. The slot check is table_rel's, with the base hoisted out of the batch loop.
 */
static inline __attribute__((always_inline)) bool apply_one(struct dts_core *c, struct dts__table *t,
							    const struct pending *pd, const struct dts_sample *s)
{
	int64_t r = (int64_t)pd->slot - t->base_slot;
	struct dts__entry *e;
	uint32_t idx;
	int16_t rel;

	if (__builtin_expect((uint64_t)r > INT16_MAX, 0)) {
		count_drop(c, r < 0 ? DTS_DROP_LATE : DTS_DROP_FUTURE);
		return false;
	}
	rel = (int16_t)r;
	if (__builtin_expect(s->type == DTS_COUNTER, 1)) {
		/* Most lines: no log, one type test. */
		e = lookup_insert(c, t, pd, s, rel, &idx);
		if (!e) {
			count_drop(c, DTS_DROP_TABLE_FULL);
			return false;
		}
		dts_agg_add(&e->agg, s->value, s->weight);
		return true;
	}
	/* Check log room first so that an entry's scalar aggregate never counts a value its sketch/set lacks. */
	if ((s->type == DTS_TIMER && t->n_tlog == t->tlog_cap) || (s->type == DTS_SET && t->n_slog == t->slog_cap)) {
		count_drop(c, DTS_DROP_TABLE_FULL);
		return false;
	}
	e = lookup_insert(c, t, pd, s, rel, &idx);
	if (!e) {
		count_drop(c, DTS_DROP_TABLE_FULL);
		return false;
	}
	switch (s->type) {
	case DTS_COUNTER: /* taken above */
		break;
	case DTS_TIMER:
		dts_agg_add(&e->agg, s->value, s->weight);
		log_timer(t, idx, s);
		break;
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

/*
 * Aggregate a batch whose logs have room for every sample in it (the usual case; flush_batch checks). The same
 * result as apply_one per sample, in the same order, with fewer tests of the type: the types of a batch are random (a
 * mix of counters, timers and gauges), and apply_one's type tests (counter? log room for a timer or a set? which
 * type?) were mispredicted 0.48 times per line of the default benchmark mix (callgrind --branch-sim), 16 lines after
 * the decoder had already paid for telling the types apart. Here counters and timers (most lines) share the scalar
 * update (dts_agg_add with the sample's weight), and only gauges and sets leave that path; the log room is checked
 * once for the batch. The timers' log records - their sketch keys, a chain of float operations - are written in a
 * second loop over the batch's timers alone, in arrival order: the log gets the same records in the same order as
 * one sample at a time, and the keys of one batch are independent of each other. Returns the samples counted.
 */
static unsigned apply_batch_roomy(struct dts_core *c, struct dts__table *t, struct batch *b)
{
	uint8_t tix[PENDING_MAX]; /* the batch's timer samples, in order */
	const unsigned n = b->n;
	unsigned nt = 0, dropped = 0; /* counted where dropped: rare */

	_Static_assert(PENDING_MAX <= UINT8_MAX + 1, "tix holds sample indices");
	_Static_assert(DTS_COUNTER == 0 && DTS_TIMER == 1, "nt += type counts the timers");
	for (unsigned i = 0; i < n; i++) {
		struct pending *pd = &b->p[i];
		const struct dts_sample *s = &b->s[i];
		const unsigned type = s->type;
		int64_t r = (int64_t)pd->slot - t->base_slot;
		struct dts__entry *e;
		uint32_t idx;

		if (__builtin_expect((uint64_t)r > INT16_MAX, 0)) {
			count_drop(c, r < 0 ? DTS_DROP_LATE : DTS_DROP_FUTURE);
			dropped++;
			continue;
		}
		e = lookup_insert(c, t, pd, s, (int16_t)r, &idx);
		if (__builtin_expect(!e, 0)) {
			count_drop(c, DTS_DROP_TABLE_FULL);
			dropped++;
			continue;
		}
		if (__builtin_expect(type <= DTS_TIMER, 1)) {
			dts_agg_add(&e->agg, s->value, s->weight);
			/* appended always, kept only for a timer (type is 0 or 1 here): no branch on the type. The
			 * entry's index goes where the bucket was: the pending record is not read again. */
			pd->bucket = idx;
			tix[nt] = (uint8_t)i;
			nt += type;
		} else if (type == DTS_GAUGE) {
			apply_gauge(e, s);
		} else {
			struct dts__slog *l = &t->slog[t->n_slog++];

			e->agg.count += 1; /* set operations seen; the distinct count comes from the set */
			l->entry = idx;
			l->pad = 0;
			l->member = s->set_member;
		}
	}
	for (unsigned j = 0; j < nt; j++)
		log_timer(t, b->p[tix[j]].bucket, &b->s[tix[j]]);
	return n - dropped;
}

static void flush_batch(struct dts_core *c, struct batch *b)
{
	struct dts__table *t = c->active;
	const unsigned n = b->n;
	unsigned dropped = 0; /* counted where dropped: rare */

	if (__builtin_expect(!t->has_base, 0) && n)
		table_set_base(c, t, b->p[0].slot); /* what table_rel does for the table's first sample */
	if (__builtin_expect(t->tlog_cap - t->n_tlog >= n && t->slog_cap - t->n_slog >= n, 1)) {
		b->applied += apply_batch_roomy(c, t, b);
	} else {
		/* A log nearly full: test its room sample by sample (apply_one) */
		for (unsigned i = 0; i < n; i++)
			if (__builtin_expect(!apply_one(c, t, &b->p[i], &b->s[i]), 0))
				dropped++;
		b->applied += n - dropped;
	}
	b->n = 0;
	b->lines = 0;
}

/*
 * Queue the n samples decoded from a line at first (n > 0): hash the identity once, compute each sample's slot and
 * bucket, and prefetch the bucket. For every line but the fast-path ones (dts_core_ingest queues those itself).
 */
static void add_pending(struct dts_core *c, struct batch *b, struct dts_sample *first, unsigned n, int64_t now_s)
{
	struct dts__table *t = c->active;
	uint64_t h = sample_hash(c, first);

	for (unsigned i = 0; i < n; i++) {
		struct pending *pd = &b->p[b->n + i];
		int64_t ts = first[i].ts ? first[i].ts : now_s;

		pd->hash = h;
		pd->slot = (uint32_t)(ts / DTS_SLOT_SECONDS);
		pd->bucket = dts__table_bucket(t, h, pd->slot);
		__builtin_prefetch(&t->entries[pd->bucket], 1, 3);
	}
	b->n += n;
	b->lines++;
}

/* Count a decoded line (n > 0 samples, a rejection, or 0 for a blank one) and queue its samples. */
static void finish_line(struct dts_core *c, struct batch *b, struct dts_sample *first, int n, int64_t now_s)
{
	if (n == 0)
		return; /* blank line */
	DTS__STAT_ADD(c->stats.lines, 1);
	if (n < 0) {
		count_reject(c, -n);
		return;
	}
	add_pending(c, b, first, (unsigned)n, now_s);
}

/*
 * Decode one line the fast path did not take ([line, line + len), no '\n', len > 0) into the batch, which has room
 * for a line's worth of samples (b->n < DTS_INGEST_BATCH).
 */
static void decode_line(struct dts_core *c, struct batch *b, const char *line, size_t len, int64_t now_s)
{
	struct dts_scratch *scratch = &c->scratch[b->lines];
	struct dts_sample *first = &b->s[b->n];
	int n;

	if (len > DTS_MAX_LINE) {
		count_reject(c, DTS_REJ_LINE_TOO_LONG);
		return;
	}
	/*
	 * A line with a '|' is statsd, one without is DaTtSs (decode.h). The statsd decoder is tried first: it
	 * succeeds only on a line with a '|' (the type follows one), so the search for a '|' is left to the lines it
	 * did not take (blank and rejected ones).
	 */
	n = dts_statsd_decode(c->dcfg, line, len, now_s, first, DTS_MAX_VALUES_PER_LINE, scratch);
	if (n > 0) {
		DTS__STAT_ADD(c->stats.statsd_lines, 1);
	} else if (dts_line_is_dattss(line, len)) {
		n = dts_dattss_decode(c->dcfg, &c->auth, line, len, first, scratch);
		if (n > 0 && c->user_known) {
			bool known;

			dts__read_lock();
			known = c->user_known(c->user_known_ctx, first->user, first->user_len);
			dts__read_unlock();
			if (!known)
				n = -DTS_REJ_UNKNOWN_USER;
		}
		if (n > 0)
			DTS__STAT_ADD(c->stats.dattss_lines, 1);
	}
	finish_line(c, b, first, n, now_s);
}

/*
 * The line at p that the fast path left at its sections (s, a '|'): find its end, then apply the sections, or decode
 * the whole line the general way when it is too long or ends in '\r'. Returns the end of the line ('\n' or end).
 */
static __attribute__((noinline)) const char *sections_line(struct dts_core *c, struct batch *b, const char *p,
							    const char *s, const char *end, int64_t now_s)
{
	const char *le = memchr(s, '\n', (size_t)(end - s));
	struct dts_sample *first = &b->s[b->n];
	int n;

	if (!le)
		le = end;
	if ((size_t)(le - p) > DTS_MAX_LINE || le[-1] == '\r') {
		decode_line(c, b, p, (size_t)(le - p), now_s);
		return le;
	}
	n = dts__statsd_sections(c->dcfg, s, le, now_s, &c->scratch[b->lines], first);
	if (n > 0)
		DTS__STAT_ADD(c->stats.statsd_lines, 1);
	finish_line(c, b, first, n, now_s);
	return le;
}

/* ---- partial aggregates, process reports and events (native datagrams, PUT /agg) --------------------------------- */

/* Where a partial's sketch or set encoding comes from: validated bytes (a native datagram) or a sketch to encode. */
struct enc_src {
	const uint8_t *bytes;
	const struct dts_sketch *sketch;
	uint32_t len; /* 0: none */
};

/*
 * Merge one partial aggregate into the entry of (hash, slot) and log its encoding for the merger. The room in the blob
 * arena is checked before the entry is touched, so an entry never counts an aggregate whose sketch it lacks.
 * id: the identity (user set). Returns true when taken; false when counted as a table_full drop.
 */
static bool apply_partial(struct dts_core *c, struct dts__table *t, const struct pending *pd, int16_t rel,
			  const struct dts_sample *id, const struct dts_agg *agg, const struct enc_src *enc)
{
	uint32_t need = enc->len ? (uint32_t)((sizeof(struct dts__blob) + enc->len + 7) & ~(size_t)7) : 0;
	struct dts__entry *e;
	struct dts__blob *b;
	uint32_t idx;

	if (need > t->blob_cap - t->blob_used) {
		count_drop(c, DTS_DROP_TABLE_FULL);
		return false;
	}
	e = lookup_insert(c, t, pd, id, rel, &idx);
	if (!e) {
		count_drop(c, DTS_DROP_TABLE_FULL);
		return false;
	}
	if (id->type == DTS_GAUGE && agg->count > 0) {
		/* a partial's gauge is absolute (lst = the value at the end of its slot): it supersedes pending deltas */
		if (!(e->flags & DTS__ENT_GAUGE_ABS))
			dts_agg_init(&e->agg);
		e->flags = DTS__ENT_GAUGE_ABS;
	}
	dts_agg_merge(&e->agg, agg); /* PIECE partials are empty: a no-op */
	if (need) {
		b = (struct dts__blob *)(t->blob + t->blob_used);
		b->entry = idx;
		b->len = (uint16_t)enc->len;
		b->type = id->type;
		b->pad = 0;
		if (enc->bytes)
			memcpy(b->bytes, enc->bytes, enc->len);
		else
			(void)dts_sketch_encode(enc->sketch, b->bytes, enc->len); /* cannot fail: len is its exact size */
		t->blob_used += need;
		t->n_blob++;
	}
	DTS__STAT_ADD(c->stats.partials, 1);
	return true;
}

/*
 * Log a process report. The datagrams of one batch repeat the same statistics, so a report of the same (non-zero)
 * instance and process as the table's last one replaces it instead of taking a new record. Returns false when the log
 * is full (counted as table_full).
 */
static bool add_report(struct dts_core *c, struct dts__table *t, const struct dts_sample *id, uint64_t instance,
		       int64_t slot_s, const struct dts_native_stats *stats, uint8_t flags, int64_t heard_ms)
{
	struct dts__proc *r;
	uint32_t off;

	DTS__STAT_ADD(c->stats.heartbeats, 1);
	if (t->n_proc && instance) {
		r = &t->proc[t->n_proc - 1];
		const struct dts__ident *li = (const struct dts__ident *)(t->keys + r->ident_off);

		if (r->instance == instance && slot_s >= r->slot_s && li->user_len == id->user_len &&
		    li->process_len == id->process_len && memcmp(li->bytes, id->user, id->user_len) == 0 &&
		    memcmp(li->bytes + id->user_len, id->process, id->process_len) == 0) {
			r->flags = flags;
			r->heard_ms = heard_ms;
			r->slot_s = slot_s;
			r->stats = *stats;
			return true;
		}
	}
	if (t->n_proc == t->proc_cap || (off = store_ident(c, t, id)) == UINT32_MAX) {
		count_drop(c, DTS_DROP_TABLE_FULL);
		return false;
	}
	r = &t->proc[t->n_proc++];
	r->ident_off = off;
	r->flags = flags;
	r->instance = instance;
	r->heard_ms = heard_ms;
	r->slot_s = slot_s;
	r->stats = *stats;
	return true;
}

/* Copy an event into the event arena. Returns false when it is full (counted in events_dropped). */
static bool add_event(struct dts_core *c, struct dts__table *t, const struct dts_sample *id, uint8_t kind,
		      int64_t ts_ms, const char *text, uint16_t len, int64_t heard_ms)
{
	size_t need = (sizeof(struct dts__event) + id->user_len + id->process_len + len + 7) & ~(size_t)7;
	struct dts__event *ev;

	if (need > t->ev_cap - t->ev_used) {
		DTS__STAT_ADD(c->stats.events_dropped, 1);
		return false;
	}
	ev = (struct dts__event *)(t->ev + t->ev_used);
	ev->ts_ms = ts_ms;
	ev->heard_ms = heard_ms;
	ev->user_len = id->user_len;
	ev->process_len = id->process_len;
	ev->text_len = len;
	ev->kind = kind;
	ev->pad = 0;
	memcpy(ev->bytes, id->user, id->user_len);
	memcpy(ev->bytes + id->user_len, id->process, id->process_len);
	memcpy(ev->bytes + id->user_len + id->process_len, text, len);
	t->ev_used += (uint32_t)need;
	t->n_ev++;
	DTS__STAT_ADD(c->stats.events, 1);
	return true;
}

/* A native partial waiting for its bucket (prefetched) to be merged. */
struct npending {
	struct dts_native_partial p;
	struct pending pd;
};

static unsigned apply_native_batch(struct dts_core *c, struct dts__table *t, struct npending *np, unsigned n,
				   int16_t rel, struct dts_sample *id)
{
	unsigned taken = 0;

	for (unsigned i = 0; i < n; i++) {
		const struct dts_native_partial *p = &np[i].p;
		struct enc_src enc = { .bytes = p->enc, .len = p->enc ? p->enc_len : 0 };

		id->counter = p->name;
		id->counter_len = p->name_len;
		id->tags = p->tags;
		id->tags_len = p->tags_len;
		id->type = p->type;
		taken += apply_partial(c, t, &np[i].pd, rel, id, &p->agg, &enc);
	}
	return taken;
}

static unsigned ingest_native(struct dts_core *c, const uint8_t *buf, size_t len, int64_t now_s)
{
	struct dts__table *t = c->active;
	struct npending np[DTS_INGEST_BATCH];
	char joined[DTS_MAX_NAME + 1];
	struct dts_native_msg msg;
	struct dts_native_iter it;
	struct dts_native_event ev;
	struct dts_sample id;
	unsigned n = 0, taken = 0;
	uint32_t slot;
	uint64_t uh;
	int16_t rel;
	int r;

	/* The key (and the MAC key it points to) belongs to the users registry, replaced under RCU: hold the read side
	 * for as long as dts_native_open uses it. Nothing of the key is used afterwards (msg.user is in buf). */
	dts__read_lock();
	r = dts_native_open(c->ncfg, c->replay, c->nscratch, buf, len, now_s, &msg);
	dts__read_unlock();
	if (r < 0) {
		unsigned reason = (unsigned)-r;

		DTS__STAT_ADD(c->stats.native_rejected[reason < DTS_NREJ_COUNT ? reason : DTS_NREJ_BAD_HEADER], 1);
		return 0;
	}
	DTS__STAT_ADD(c->stats.native_datagrams, 1);
	memset(&id, 0, sizeof(id));
	id.user = msg.user;
	id.user_len = msg.user_len;
	id.process = msg.process;
	id.process_len = msg.process_len;
	id.counter = "";
	id.tags = "";
	add_report(c, t, &id, msg.instance, msg.slot, &msg.stats, DTS__PROC_UPTIME | DTS__PROC_STATS, now_s * 1000);
	dts_native_iter_events(&msg, &it);
	while (dts_native_next_event(&it, &ev))
		add_event(c, t, &id, ev.kind, ev.ts_ms, ev.text, ev.len, now_s * 1000);
	if (!msg.npartials)
		return 0;

	slot = (uint32_t)(msg.slot / DTS_SLOT_SECONDS);
	if (!table_rel(c, t, slot, &rel)) {
		/* table_rel counted one drop: count the datagram's other partials too */
		enum dts_drop d = (int64_t)slot < (int64_t)t->base_slot ? DTS_DROP_LATE : DTS_DROP_FUTURE;

		DTS__STAT_ADD(c->stats.dropped[d], msg.npartials - 1u);
		return 0;
	}
	uh = dts_hash64(msg.user, msg.user_len, DTS_HASH_SEED);
	memcpy(joined, msg.process, msg.process_len);
	joined[msg.process_len] = c->dcfg->process_sep;
	dts_native_iter_partials(&msg, &it);
	while (dts_native_next_partial(&it, &np[n].p)) {
		const struct dts_native_partial *p = &np[n].p;
		size_t jn = (size_t)msg.process_len + 1 + p->name_len; /* <= DTS_MAX_NAME: checked by dts_native_open */

		memcpy(joined + msg.process_len + 1, p->name, p->name_len);
		np[n].pd.hash =
			ident_hash(ident_seed(c, uh), p->type, msg.process_len, joined, jn, p->tags, p->tags_len);
		np[n].pd.slot = slot;
		np[n].pd.bucket = dts__table_bucket(t, np[n].pd.hash, slot);
		__builtin_prefetch(&t->entries[np[n].pd.bucket], 1, 3);
		if (++n == DTS_INGEST_BATCH) {
			taken += apply_native_batch(c, t, np, n, rel, &id);
			n = 0;
		}
	}
	taken += apply_native_batch(c, t, np, n, rel, &id);
	return taken;
}

/* Validate a user and a process name for the API paths and fill id's identity (counter and tags empty). */
static bool api_ident(struct dts_sample *id, const char *user, const char *process)
{
	size_t ulen = user ? strlen(user) : 0, plen = process ? strlen(process) : 0;

	if (ulen < 1 || ulen > DTS_MAX_USER || !dts_native_user_valid(user, ulen) || plen < 1 ||
	    plen > DTS_NATIVE_MAX_PROCESS || !dts_native_name_valid(process, plen))
		return false;
	memset(id, 0, sizeof(*id));
	id->user = user;
	id->user_len = (uint16_t)ulen;
	id->process = process;
	id->process_len = (uint16_t)plen;
	id->counter = "";
	id->tags = "";
	return true;
}

static bool agg_valid(const struct dts_agg *a)
{
	return isfinite(a->sum) && isfinite(a->count) && isfinite(a->min) && isfinite(a->max) && isfinite(a->fst) &&
	       isfinite(a->lst) && a->count > 0 && a->min <= a->max;
}

int dts_core_ingest_partial(struct dts_core *c, const struct dts_partial_in *p, int64_t now_s)
{
	struct dts__table *t = c->active;
	char joined[DTS_MAX_NAME + 1];
	struct enc_src enc = { 0 };
	struct dts_sample id;
	struct pending pd;
	size_t clen, tlen;
	int16_t rel;

	c->now_s = now_s;
	if (!api_ident(&id, p->user, p->process) || !p->counter)
		return -EINVAL;
	clen = strlen(p->counter);
	tlen = p->tags ? strlen(p->tags) : 0;
	if (clen < 1 || (size_t)id.process_len + 1 + clen > DTS_MAX_NAME || !dts_native_name_valid(p->counter, clen) ||
	    tlen > DTS_MAX_TAGS_LEN || (tlen && !dts_native_tags_valid(p->tags, tlen)) || p->type >= DTS_NTYPES ||
	    !agg_valid(&p->agg) || (p->sketch && p->type != DTS_TIMER))
		return -EINVAL;
	if (p->sketch) {
		size_t n = dts_sketch_encoded_size(p->sketch);

		if (n > UINT16_MAX)
			return -EINVAL; /* defensive: a sketch encodes in at most ~2 KiB */
		enc.sketch = p->sketch;
		enc.len = (uint32_t)n;
	}
	if (p->slot_s < now_s - c->ncfg->max_past_s || p->slot_s > now_s + c->ncfg->max_future_s || p->slot_s <= 0) {
		count_drop(c, p->slot_s < now_s ? DTS_DROP_LATE : DTS_DROP_FUTURE);
		return -ERANGE;
	}
	id.counter = p->counter;
	id.counter_len = (uint16_t)clen;
	id.tags = tlen ? p->tags : "";
	id.tags_len = (uint16_t)tlen;
	id.type = p->type;
	memcpy(joined, id.process, id.process_len);
	joined[id.process_len] = c->dcfg->process_sep;
	memcpy(joined + id.process_len + 1, p->counter, clen);
	pd.hash = ident_hash(ident_seed(c, dts_hash64(id.user, id.user_len, DTS_HASH_SEED)), id.type, id.process_len,
			     joined, (size_t)id.process_len + 1 + clen, id.tags, id.tags_len);
	pd.slot = (uint32_t)(p->slot_s / DTS_SLOT_SECONDS);
	pd.bucket = dts__table_bucket(t, pd.hash, pd.slot);
	if (!table_rel(c, t, pd.slot, &rel))
		return -ERANGE;
	return apply_partial(c, t, &pd, rel, &id, &p->agg, &enc) ? 0 : -ENOSPC;
}

int dts_core_ingest_proc(struct dts_core *c, const char *user, const char *process, uint32_t uptime_s,
			 int64_t now_s)
{
	struct dts_native_stats st = { .uptime_s = uptime_s };
	struct dts_sample id;

	if (!api_ident(&id, user, process))
		return -EINVAL;
	return add_report(c, c->active, &id, 0, now_s, &st, DTS__PROC_UPTIME, now_s * 1000) ? 0 : -ENOSPC;
}

int dts_core_ingest_event(struct dts_core *c, const char *user, const char *process, uint8_t kind, int64_t ts_ms,
			  const char *text, size_t len, int64_t now_s)
{
	struct dts_sample id;

	if (!api_ident(&id, user, process) || kind > DTS_NATIVE_WARNING || (len && !text) ||
	    (len && memchr(text, '\0', len)))
		return -EINVAL;
	if (len > DTS_NATIVE_MAX_TEXT)
		return -EMSGSIZE;
	return add_event(c, c->active, &id, kind, ts_ms, text, (uint16_t)len, now_s * 1000) ? 0 : -ENOSPC;
}

/* What the line loop needs of the call: the receive clock, the table and the listener's user, read once per call. */
struct line_env {
	const struct dts_decode_cfg *cfg;
	struct dts__table *t; /* only dts_core_tick replaces c->active: fixed for the call */
	int64_t now_s;
	uint64_t now_mix; /* dts__slot_mix(now_slot) */
	uint64_t seed; /* ident_seed(c, c->user_hash) */
	uint32_t now_slot;
	char sep; /* dts__statsd_sep(cfg) */
};

static inline void line_env_init(const struct dts_core *c, struct line_env *env, int64_t now_s)
{
	env->cfg = c->dcfg;
	env->t = c->active;
	env->now_s = now_s;
	env->now_slot = (uint32_t)(now_s / DTS_SLOT_SECONDS);
	env->now_mix = dts__slot_mix(env->now_slot);
	env->seed = ident_seed(c, c->user_hash);
	env->sep = dts__statsd_sep(c->dcfg);
}

/*
 * The line loop: decode the lines of [buf, buf + len) into b, applying it whenever it holds DTS_INGEST_BATCH samples,
 * and leave the rest of it pending (the caller applies it: at the end of the datagram, or of the burst). Returns the
 * number of lines the fast path took (counted by the caller, once per call).
 * Each line goes first to the statsd fast path (statsd_fast.h), which scans from the line's start towards the end of
 * the datagram and, for the lines it takes, ends at the line's '\n' by itself: no separate search for line ends. Only
 * the lines it does not take are split at their '\n' (memchr) and decoded the general way. Empty lines ("\n\n", which
 * the fast path does not take) are skipped, as a line splitter would. A batch is applied when it holds
 * DTS_INGEST_BATCH samples: room remains for one line of DTS_MAX_VALUES_PER_LINE, and lines that use a scratch buffer
 * (b->lines) are never more than samples. The pending samples point into buf or into the core's scratch buffers, so
 * buf must stay unchanged until the batch is applied.
 */
static inline __attribute__((always_inline)) uint64_t ingest_lines(struct dts_core *c, struct batch *b,
								   const struct line_env *env, const char *buf,
								   size_t len)
{
	const char *p = buf, *const end = buf + len;
	/* The next free sample and pending record (b->n of each in use), kept in registers: b->n is written back
	 * before every call that takes b, and read again after it. */
	struct dts_sample *s = &b->s[b->n];
	struct pending *pd = &b->p[b->n];
	uint64_t fast = 0;

	if (len == 0)
		return 0;
	for (;;) {
		const char *next;
		size_t joined, plen;
		uint8_t type;
		int r;

		if (pd >= &b->p[DTS_INGEST_BATCH]) {
			b->n = (unsigned)(pd - b->p);
			flush_batch(c, b);
			s = b->s;
			pd = b->p;
		}
		r = dts__statsd_fast_id(env->cfg, env->sep, p, end, s, &next, &joined, &plen, &type, false);
		if (__builtin_expect(r == DTS__FAST_DONE, 1)) {
			/* The identity's bytes are the name, in the line, unless the process is the default one. */
			uint64_t h = joined ? ident_hash(env->seed, type, plen, p, joined, "", 0) : sample_hash(c, s);

			pd->hash = h;
			pd->slot = env->now_slot;
			pd->bucket = dts__table_bucket_at(env->t, h, env->now_mix);
			__builtin_prefetch(&env->t->entries[pd->bucket], 1, 3);
			s++;
			pd++;
			fast++;
		} else {
			b->n = (unsigned)(pd - b->p);
			if (r == DTS__FAST_SECTIONS) {
				next = sections_line(c, b, p, next, end, env->now_s);
			} else if (*p == '\n') {
				next = p; /* an empty line (the fast path takes no line that starts with '\n') */
			} else {
				next = memchr(p, '\n', (size_t)(end - p));
				if (!next)
					next = end;
				decode_line(c, b, p, (size_t)(next - p), env->now_s);
			}
			s = &b->s[b->n];
			pd = &b->p[b->n];
		}
		/* next is the line's '\n' or end: the datagram goes on past it unless that is its last byte. */
		if (next >= end - 1)
			break;
		p = next + 1;
	}
	b->n = (unsigned)(pd - b->p);
	return fast;
}

unsigned dts_core_ingest(struct dts_core *c, const char *buf, size_t len, int64_t now_s)
{
	struct line_env env;
	struct batch b;
	uint64_t fast;

	c->now_s = now_s;
	if (dts_native_is(buf, len)) {
		unsigned n = ingest_native(c, (const uint8_t *)buf, len, now_s);

		DTS__STAT_ADD(c->stats.packets, 1);
		DTS__STAT_ADD(c->stats.bytes, len);
		return n;
	}
	b.n = 0;
	b.lines = 0;
	b.applied = 0;
	line_env_init(c, &env, now_s);
	fast = ingest_lines(c, &b, &env, buf, len);
	flush_batch(c, &b);
	/* The fast-path lines, counted once per datagram; the others were counted one by one. */
	DTS__STAT_ADD(c->stats.lines, fast);
	DTS__STAT_ADD(c->stats.statsd_lines, fast);
	DTS__STAT_ADD(c->stats.packets, 1);
	DTS__STAT_ADD(c->stats.bytes, len);
	DTS__STAT_ADD(c->stats.samples, b.applied);
	return b.applied;
}

/*
 * dts_core_ingest over n datagrams with one batch for all of them: the lines of the next datagrams are decoded and
 * their buckets prefetched while the earlier ones' are still in flight, so small datagrams (one line each, the usual
 * statsd client) get the same overlap as packed ones. The samples are applied in arrival order, as the batch always
 * applies them, so every result is the one of n dts_core_ingest calls. A native datagram is verified and merged
 * directly into the table (ingest_native): the lines before it are applied first, to keep that order.
 */
unsigned dts_core_ingest_burst(struct dts_core *c, const struct dts_dgram *d, unsigned n, int64_t now_s)
{
	struct line_env env;
	struct batch b;
	uint64_t fast = 0, bytes = 0;
	unsigned partials = 0;

	if (!n)
		return 0;
	c->now_s = now_s;
	b.n = 0;
	b.lines = 0;
	b.applied = 0;
	line_env_init(c, &env, now_s);
	for (unsigned i = 0; i < n; i++) {
		bytes += d[i].len;
		if (__builtin_expect(dts_native_is(d[i].buf, d[i].len), 0)) {
			flush_batch(c, &b);
			partials += ingest_native(c, (const uint8_t *)d[i].buf, d[i].len, now_s);
			continue;
		}
		fast += ingest_lines(c, &b, &env, d[i].buf, d[i].len);
	}
	flush_batch(c, &b);
	DTS__STAT_ADD(c->stats.lines, fast);
	DTS__STAT_ADD(c->stats.statsd_lines, fast);
	DTS__STAT_ADD(c->stats.packets, n);
	DTS__STAT_ADD(c->stats.bytes, bytes);
	DTS__STAT_ADD(c->stats.samples, b.applied);
	return b.applied + partials;
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
	if (dts__table_empty(t)) {
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
