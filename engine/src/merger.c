/*
 * merger.c - the global side of the engine: the series (a private index and an RCU-published directory), the minute
 * windows, the rolling 5-second slots behind the current state, and the closing of minutes into the sink.
 *
 * Who touches what:
 *   - The merger thread is the only writer of every struct series, of the index and of the directory.
 *   - Readers (HTTP, alerts) walk the directory under the RCU read side and read only a series' immutable identity
 *     and its published current state (struct pubstate, in the series, under a sequence lock the merger never waits
 *     on). A series that leaves is reused only after a grace period.
 *   - RX cores never touch any of it (see engine.h); they meet the merger only through the hand-over rings.
 *
 * Time model. Data is keyed by 5-second slot (slot = unix seconds / 5; minute = slot / 12). Each series keeps two
 * minute windows in a ring indexed by minute % 2: the open minute and the one before it, in grace until it closes and
 * then kept (read-only) for the moving-window quantiles, which look one minute back. Data for the minute after the
 * open one (DogStatsD |T and client clocks may run a little ahead) takes the position of the minute before once that
 * has closed, and is dropped as "future" while it is in grace (only data 60 - grace_s seconds or more ahead, in the
 * first grace_s seconds of a minute); grace is bounded to 60 s. Minute M closes when the clock passes
 * (M + 1) * 60 + grace: every series' window for M is copied into one struct dts_closed_minute and handed to the sink.
 * A closed window's sketch bins or set members are freed when the next minute closes, or reused when its position
 * is. Data for a minute already closed goes to the sink as a late part, which the store merges into the stored
 * minute.
 *
 * Current state is republished for every changed series when the clock enters a new slot: the aggregate of the last 12
 * closed slots (exact for count, sum, rate, avg, and the min and max of gauges and timers) and, for timers, quantiles
 * of the sketch of the open minute plus the previous minute weighted by the share of it still inside the 60 s window.
 *
 * Partial aggregates (native datagrams, PUT /agg) arrive as table entries like lines, plus their sketch or set
 * encodings in the table's blob arena: after the entries, each encoding is decoded into the merger's scratch and
 * merged (dts_sketch_merge / dts_set_merge: exact, bin for bin) into the window its entry went to. Windows keep the
 * slot of their first and last value, so fst/lst follow slot time even when a client's partial arrives after a later
 * slot's data. Process reports and events of a table go to procs.c; every series points at its process's state,
 * so statsd-only processes are "heard" through their data.
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bigmem.h"
#include "dts/hash.h"
#include "engine_internal.h"
#include "rcu.h"

#define NWIN 2 /* minute windows per series (see "Time model") */
#define LIVE_MINUTES 3 /* minutes that can hold data at once: in grace, open, next (two of them share a position) */
/* The fold prefetches, FOLD_AHEAD table entries ahead, the index slot of an entry's hash, and FOLD_AHEAD/2 ahead the
 * cache lines of the series found there (header, and the window and 5-second slot the entry goes to). */
#define FOLD_AHEAD 32
#define WALK_AHEAD 8 /* series prefetched ahead in walks of the directory */
/* Directory positions per slice of a publication or checkpoint walk. dts_merger_step folds the tables the cores
 * handed over between slices, so a walk of a million series (100-500 ms) never leaves the cores without a clean
 * table for longer than one slice (~2-5 ms). */
#define WALK_SLICE 8192
#define CKPT_PIECE 65536 /* records per checkpoint piece handed to the sink (a walk of many series hands several) */
#define IX_MIN_BITS 16 /* the index starts with 2^16 slots and doubles at half load */
#define IX_CROWDED 32 /* a walk this long adding a series may grow the index early (series_get) */
#define DIR_CHUNK_BITS 12 /* directory chunks of 4096 series pointers (32 KiB) */
#define DIR_CHUNK (1u << DIR_CHUNK_BITS)
/* A series with no data for IDLE_S seconds has a constant current state (the 60 s slot window and the two minutes of
 * timer quantiles are past it): once published empty, it is not republished until data arrives. */
#define IDLE_S 125
#define LATE_MINUTES 4 /* distinct closed minutes one table's late data may touch; more is dropped (counted) */

char dts__rcu_reclaim_token;

/* A minute window: 64 bytes. A timer's sketch and a set's members live in the series' ext[] (see struct series). */
struct win {
	int64_t minute; /* -1 when unused */
	uint8_t fst_k, lst_k; /* slots of agg.fst and agg.lst within the minute, 0..11 (valid while agg.count > 0) */
	bool closed;
	bool ckpt_dirty; /* folded into since the last checkpoint copied it */
	struct dts_agg agg;
};

/*
 * The 5-second slots of the moving window: a ring of DTS_SLOTS_PER_MINUTE positions in struct series (ring[]), slot S
 * at position S % 12, each position as many doubles as its type's current state needs: counters and sets sum and
 * count (16 B), gauges and timers sum, count, min and max (32 B). No slot keeps a last value: a gauge's is
 * gauge_value, and counters, timers and sets publish none. The positions' slot numbers follow from the series'
 * ring_newest and ring_prev (see slot_merge).
 */
enum { RS_SUM, RS_COUNT, RS_MIN, RS_MAX };

/* Doubles per ring position of a series of type t. */
static inline unsigned ring_width(uint8_t t)
{
	return t == DTS_GAUGE || t == DTS_TIMER ? 4 : 2;
}

/* Bytes of the ring of a series of type t: 192 (counters, sets) or 384 (gauges, timers). */
static inline size_t ring_bytes(uint8_t t)
{
	return DTS_SLOTS_PER_MINUTE * ring_width(t) * sizeof(double);
}

/*
 * The published current state of a series, inside it (one cache line; timers' quantiles and sets' distinct count are
 * in its ext). A sequence lock: the merger, the only writer, makes seq odd, writes the fields and makes it even
 * again, never waiting; a reader copies the fields between two reads of an equal, even seq and retries otherwise
 * (dts_merger_read_current). seq 0: nothing published yet. Doubles are kept as their bit patterns in atomic words,
 * so a reader racing the writer reads torn values only to discard them, never undefined behaviour.
 */
struct pubstate {
	_Atomic uint32_t seq;
	uint32_t unused;
	_Atomic int64_t as_of_ms, last_seen_s;
	_Atomic uint64_t count, sum, min, max, last; /* doubles */
};

/* ext of a timer: its windows' sketches and the published quantiles (bot10, top10, p50, p99: doubles). In the record,
 * after the ring (ext_bytes). */
struct timer_ext {
	struct dts_sketch sk[NWIN];
	_Atomic uint64_t q[4];
};

/* ext of a set: its windows' sets and the published distinct count (a double). */
struct set_ext {
	struct dts_set set[NWIN];
	_Atomic uint64_t distinct;
};

/*
 * A series: 256 bytes (published state, header, two windows: four cache lines), then its ring of 5-second slots (192
 * bytes for counters and sets, 384 for gauges and timers), then, for timers and sets, their ext (NWIN sketches or
 * sets and what is published of them), then its name; rounded up to SER_GRAIN (docs/architecture.md "Memory"). One
 * allocation from the huge-page slabs, whatever the type. The ring is at a fixed offset and the ext and the name after
 * it, at offsets given by the type (ser_name), so a fold finds them from its entry's type without reading the record
 * first.
 * A fold touches three lines of it: the header, its window and its slot's position (series_get does not read the
 * name).
 */
struct series {
	struct pubstate pub; /* readers: through the sequence lock */
	/*
	 * Merger-private from here, except the identity (type, lengths, name) and ext: immutable. Everything a fold
	 * reads of the header is in this second cache line, which the fold prefetches. Slot numbers are int32: they
	 * fit until the year 2310; last_seen_s is unsigned 32-bit seconds: until 2106.
	 */
	uint8_t type;
	bool gauge_known;
	bool pub_dirty; /* folded into since its current state was last published */
	uint8_t cls; /* size class of the record (series memory) */
	uint32_t dir_slot; /* its position in the merger's directory */
	uint16_t user_len, process_len, counter_len, tags_len;
	uint32_t last_seen_s; /* unix seconds of the newest data: the start of its slot */
	int32_t gauge_slot; /* slot of gauge_value's absolute value */
	struct dts__pstate *proc; /* the state of (user, process), NULL when it could not be created; holds a ref */
	void *ext; /* timers: struct timer_ext, sets: struct set_ext, in the record (ser_ext); else NULL */
	uint64_t hash;
	double gauge_value;
	int32_t ring_newest; /* newest slot merged into ring[], -1 before any */
	uint16_t ring_prev; /* bit p: ring position p holds the slot 12 before its own, or nothing */
	union {
		struct win win[NWIN]; /* one cache line each */
		struct { /* used only once the series has left the directory, when its windows are dead */
			struct rcu_head rcu;
			struct dts_merger *home; /* whose recycle stack takes the record after the grace period */
			struct cds_lfs_node lfs;
		};
	};
	/* ring_bytes(type) bytes of slots (ring_width(type) doubles per position), then ext_bytes(type) bytes of ext,
	 * then the name: user\0process\0counter\0tags\0 */
	double ring[];
};

_Static_assert(offsetof(struct series, type) == 64 && offsetof(struct series, win) == 128,
	       "published state in the first cache line, the fold's header in the second, windows aligned after it");
_Static_assert(sizeof(struct series) == 256, "docs/architecture.md \"Memory\" gives the record's size");
_Static_assert(sizeof(struct win) == 64, "a window is one cache line");
_Static_assert(sizeof(struct timer_ext) == 144 && sizeof(struct set_ext) == 56,
	       "docs/architecture.md \"Memory\" gives the ext sizes");

/* Bytes of the ext of a series of type t, in its record after the ring (multiples of 8, as the ring's). */
static inline size_t ext_bytes(uint8_t t)
{
	return t == DTS_TIMER ? (sizeof(struct timer_ext) + 7) & ~(size_t)7
	       : t == DTS_SET ? (sizeof(struct set_ext) + 7) & ~(size_t)7
			      : 0;
}

/* Where the ext of a series of type t is in its record. */
static inline void *ser_ext_of(const struct series *s, uint8_t t)
{
	return (char *)s->ring + ring_bytes(t);
}

/* The name of a series of type t whose record is at s (the type passed, so a prefetch need not read the record). */
static inline char *ser_name_of(const struct series *s, uint8_t t)
{
	return (char *)s->ring + ring_bytes(t) + ext_bytes(t);
}

static inline char *ser_name(const struct series *s)
{
	return ser_name_of(s, s->type);
}

/* The identity parts, in the name. */
static inline const char *ser_user(const struct series *s)
{
	return ser_name(s);
}

static inline const char *ser_process(const struct series *s)
{
	return ser_name(s) + s->user_len + 1;
}

static inline const char *ser_counter(const struct series *s)
{
	return ser_name(s) + s->user_len + s->process_len + 2;
}

static inline const char *ser_tags(const struct series *s)
{
	return ser_name(s) + s->user_len + s->process_len + s->counter_len + 3;
}

/* The sketch of window w of s (timers), or NULL. */
static inline struct dts_sketch *win_sk(const struct series *s, const struct win *w)
{
	return s->type == DTS_TIMER && s->ext ? &((struct timer_ext *)s->ext)->sk[w - s->win] : NULL;
}

/* The set of window w of s (sets), or NULL. */
static inline struct dts_set *win_set(const struct series *s, const struct win *w)
{
	return s->type == DTS_SET && s->ext ? &((struct set_ext *)s->ext)->set[w - s->win] : NULL;
}

struct dts_merger {
	struct dts_merger_cfg cfg;
	struct dts_decode_cfg dcfg; /* the cores' copy; secret and default process point into the fields below */
	uint8_t *secret;
	char *default_process;
	char *user;
	/*
	 * The series. The index (merger-private) finds a series by hash: open addressing, linear probing, 16-byte
	 * slots, at most half full, deletion by backward shift. The directory (what readers and the merger's walks go
	 * through) is an array of chunk pointers, each chunk an array of series pointers published with release
	 * stores; a freed position is reused by the next new series. Readers load dir_hw, then chunk and series
	 * pointers with acquire.
	 */
	struct ix_ent {
		uint64_t hash;
		struct series *s; /* NULL: free slot */
	} *ix;
	uint64_t ix_mask;
	unsigned ix_shift; /* 64 - log2(slots): ix_home */
	uint64_t nseries; /* series in the index and the directory */
	_Atomic(_Atomic(struct series *) *) *dir; /* dir_nchunks chunk pointers */
	uint32_t dir_nchunks;
	_Atomic uint32_t dir_hw; /* positions [0, dir_hw) have been used */
	uint32_t *dir_free; /* free positions below dir_hw (stack) */
	uint32_t dir_nfree, dir_free_cap;
	struct dts_core **cores;
	struct core_growth { /* per core, merger-private: how big its tables should be (fold_pending) */
		int64_t last_stamp_ms; /* hand-over time of its last folded table, 0 before the first */
		uint32_t want; /* buckets its tables grow to when they come back empty */
		uint32_t want_logs; /* the capacity their timer and set logs grow to (dts__table_grow_logs) */
	} *growth;
	struct dts__table **pool;
	unsigned npool;
	void **fold_map; /* per bucket of the table being folded: the sketch or set of its target window (NULL for
			  * other types and dropped entries), or (tag bit 1) a late record */
	uint64_t *fold_bits; /* a bit per bucket of the largest table, all clear between folds (used_sort) */
	struct dts__tlog *fold_tlog; /* room for the largest table's timer log, grouped by bucket (tlog_grouped) */
	size_t fold_tlog_bytes;
	struct dts_closed_minute *late[LATE_MINUTES]; /* late data of the table being folded, one per closed minute */
	struct late_index *late_ix[LATE_MINUTES]; /* for each late[k]: series -> its record (one record per series) */
	int64_t closed_upto; /* minutes < closed_upto are closed; INT64_MIN before the first step */
	int64_t pub_slot; /* slot of the last current-state publication */
	int64_t next_checkpoint_ms;
	_Atomic int64_t pub_as_of_ms; /* as_of_ms of the last publication (readers: idle series' states are as of it) */
	bool ckpt_full; /* the next checkpoint copies every open window (the first one, or one was lost) */
	struct ckpt_walk { /* the checkpoint being copied, slice by slice (inside one dts_merger_step) */
		int64_t lo, hi; /* its minutes */
		uint32_t pos, hw; /* next directory position; end of the walk */
		bool partial;
		bool split[LIVE_MINUTES]; /* a piece of minute lo + k was handed over before the walk ended */
		/* the pieces being filled (NULL: none could be allocated) */
		struct dts_closed_minute *out[LIVE_MINUTES];
	} ck;
	struct pub_walk { /* the publication in progress, slice by slice (inside one dts_merger_step) */
		int64_t cur_slot, now_s;
		uint32_t pos, hw;
	} pw;
	/* Series memory: records carved from 2 MiB slabs (huge pages) in size classes of SER_GRAIN bytes. */
	void **slabs;
	uint32_t nslabs, slabs_cap;
	uint32_t slab_take; /* slabs[0, slab_take) are being or have been carved; the rest are reserved, faulted in */
	uint8_t *slab_next, *slab_end; /* the unused part of the newest slab */
	struct cds_lfs_node **ser_free; /* per size class: free records, linked through lfs.next (merger-private) */
	unsigned ser_classes;
	struct __cds_lfs_stack ser_recycled; /* records past their grace period (series_free_rcu pushes) */
	struct recpool *recpool; /* closed minutes' record arrays for reuse (the merger holds one reference) */
	struct recbuf *recs_spare; /* arrays taken from the pool and not in use (merger-private, linked via next) */
	struct dts__procs *procs; /* process states and events (procs.c) */
	struct dts_sketch dec_sk; /* decode scratch of partials' sketches */
	struct dts_set dec_set; /* decode scratch of partials' sets */
	struct dts_merger_stats stats;
};

const char *dts_drop_name(enum dts_drop d)
{
	static const char *const names[DTS_DROP_COUNT] = {
		[DTS_DROP_TABLE_FULL] = "table_full", [DTS_DROP_LATE] = "late",
		[DTS_DROP_FUTURE] = "future",	      [DTS_DROP_NOMEM] = "nomem",
		[DTS_DROP_SERIES_LIMIT] = "series_limit",
	};
	return (unsigned)d < DTS_DROP_COUNT ? names[d] : "unknown";
}

void dts_merger_cfg_defaults(struct dts_merger_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cores = 1;
	dts_decode_cfg_defaults(&cfg->decode);
	cfg->user = "default";
	cfg->tick_ms = 1000;
	cfg->grace_s = 10;
	cfg->table_capacity = 1u << 16;
	cfg->table_capacity_max = 0;
	cfg->tables_per_core = 3;
	cfg->max_series = 4u << 20;
	cfg->expire_s = 600;
	dts_native_cfg_defaults(&cfg->native);
	cfg->client_period_s = DTS_SLOT_SECONDS;
	cfg->process_expire_s = 7 * 86400;
}

void dts_rcu_register_thread(void)
{
	urcu_memb_register_thread();
}

void dts_rcu_unregister_thread(void)
{
	urcu_memb_unregister_thread();
}

void dts_rcu_barrier(void)
{
	urcu_memb_barrier();
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- series ---------------------------------------------------------------------------------------------------- */

/*
 * Whether s is the series of identity id and type t, byte for byte. The fold does not call it: a series is found by
 * its identity hash and type alone (series_get), as the per-core tables find their entries. Debug builds check the
 * full identity with it after every lookup.
 */
static bool __attribute__((unused)) series_match(const struct series *s, const struct dts__ident *id, uint8_t t)
{
	const char *b = id->bytes, *n = ser_name_of(s, t); /* user\0process\0counter\0tags\0 */

	if (s->type != t || s->user_len != id->user_len || s->process_len != id->process_len ||
	    s->counter_len != id->counter_len || s->tags_len != id->tags_len)
		return 0;
	if (memcmp(n, b, id->user_len) != 0)
		return 0;
	n += id->user_len + 1;
	b += id->user_len;
	if (memcmp(n, b, id->process_len) != 0)
		return 0;
	n += id->process_len + 1;
	b += id->process_len;
	if (memcmp(n, b, id->counter_len) != 0)
		return 0;
	n += id->counter_len + 1;
	b += id->counter_len;
	return memcmp(n, b, id->tags_len) == 0;
}

static void win_reset(struct series *s, struct win *w, int64_t minute)
{
	struct dts_sketch *sk = win_sk(s, w);
	struct dts_set *set = win_set(s, w);

	w->minute = minute;
	w->closed = false;
	w->ckpt_dirty = false;
	w->fst_k = w->lst_k = 0;
	dts_agg_init(&w->agg);
	if (sk)
		dts_sketch_clear(sk);
	if (set) {
		dts_set_free(set);
		dts_set_init(set);
	}
}

/* Free the heap of a dead window's sketch or set (it is empty afterwards); its scalar aggregate stays. */
static void win_release(struct series *s, struct win *w)
{
	struct dts_sketch *sk = win_sk(s, w);
	struct dts_set *set = win_set(s, w);

	if (sk)
		dts_sketch_free(sk); /* leaves it empty and reusable, as dts_set_free does */
	if (set)
		dts_set_free(set);
}

/* ---- series memory ------------------------------------------------------------------------------------------- */

#define SLAB_BYTES ((size_t)2 << 20)
#define SER_GRAIN 64

/*
 * Bytes of the record of a series of type t whose name holds n bytes, rounded to the grain; its class is that /
 * SER_GRAIN. With the ~31-byte names of bench_engine: 512 B for counters, 704 B for gauges, 576 B for sets and
 * 832 B for timers (ext included).
 */
static inline size_t ser_bytes(uint8_t t, size_t n)
{
	return (sizeof(struct series) + ring_bytes(t) + ext_bytes(t) + n + SER_GRAIN - 1) & ~(size_t)(SER_GRAIN - 1);
}

/* Move every record past its grace period to the free list of its class. Merger thread. */
static void ser_take_recycled(struct dts_merger *m)
{
	struct cds_lfs_head *h = __cds_lfs_pop_all(&m->ser_recycled);
	struct cds_lfs_node *n = h ? &h->node : NULL;

	while (n) {
		struct cds_lfs_node *next = n->next;
		struct series *s = caa_container_of(n, struct series, lfs);

		dts__hb_acquire(s);
		n->next = m->ser_free[s->cls];
		m->ser_free[s->cls] = n;
		n = next;
	}
}

/* Map one more slab at the end of slabs[] (not yet faulted in), or NULL. Merger thread (or creation). */
static uint8_t *slab_new(struct dts_merger *m)
{
	void *slab;

	if (m->nslabs == m->slabs_cap) {
		uint32_t cap = m->slabs_cap ? m->slabs_cap * 2 : 64;
		void **v = realloc(m->slabs, cap * sizeof(*v));

		if (!v)
			return NULL;
		m->slabs = v;
		m->slabs_cap = cap;
	}
	slab = dts__big_alloc(SLAB_BYTES);
	if (slab) {
		m->slabs[m->nslabs++] = slab;
		__atomic_store_n(&m->stats.series_slab_bytes, (uint64_t)m->nslabs * SLAB_BYTES, __ATOMIC_RELAXED);
	}
	return slab;
}

/* A zeroed record of bytes (a multiple of SER_GRAIN, at most SLAB_BYTES), or NULL. Merger thread. */
static struct series *ser_alloc(struct dts_merger *m, size_t bytes)
{
	const unsigned cls = (unsigned)(bytes / SER_GRAIN);
	struct cds_lfs_node *n;
	void *p;

	if (cls >= m->ser_classes)
		return NULL;
	if (!m->ser_free[cls])
		ser_take_recycled(m);
	n = m->ser_free[cls];
	if (n) {
		m->ser_free[cls] = n->next;
		p = caa_container_of(n, struct series, lfs);
		memset(p, 0, bytes);
	} else {
		if ((size_t)(m->slab_end - m->slab_next) < bytes) {
			uint8_t *slab = m->slab_take < m->nslabs ? m->slabs[m->slab_take] : slab_new(m);

			if (!slab)
				return NULL;
			m->slab_take++;
			m->slab_next = slab;
			m->slab_end = m->slab_next + SLAB_BYTES;
		}
		p = m->slab_next; /* never used: still zero from the mapping */
		m->slab_next += bytes;
	}
	((struct series *)p)->cls = (uint8_t)cls;
	return p;
}

/* Free what a record's ext holds on the heap (bins, members); the record stays. */
static void series_free_ext(struct series *s)
{
	for (int i = 0; i < NWIN; i++) {
		struct dts_sketch *sk = win_sk(s, &s->win[i]);
		struct dts_set *set = win_set(s, &s->win[i]);

		if (sk)
			dts_sketch_free(sk);
		if (set)
			dts_set_free(set);
	}
	s->ext = NULL;
}

/* Free a series no reader can see (never published, or shutdown after the barrier). Merger thread. */
static void series_free_now(struct dts_merger *m, struct series *s)
{
	series_free_ext(s);
	s->lfs.next = m->ser_free[s->cls];
	m->ser_free[s->cls] = &s->lfs;
}

/* call_rcu callback: no reader holds the series any more; its record goes back to its merger. */
static void series_free_rcu(struct rcu_head *head)
{
	struct series *s = caa_container_of(head, struct series, rcu);

	dts__reclaim_begin();
	series_free_ext(s);
	dts__hb_release(s); /* the merger that pops it next writes it: nothing of s is touched after the push */
	cds_lfs_push(&s->home->ser_recycled, &s->lfs);
}

static struct series *series_new(struct dts_merger *m, const struct dts__ident *id, uint8_t type, uint64_t hash)
{
	size_t n = (size_t)id->user_len + id->process_len + id->counter_len + id->tags_len + 4;
	struct series *s = ser_alloc(m, ser_bytes(type, n));
	const char *src = id->bytes;
	char *p;

	if (!s)
		return NULL;
	s->hash = hash;
	s->type = type;
	s->user_len = id->user_len;
	s->process_len = id->process_len;
	s->counter_len = id->counter_len;
	s->tags_len = id->tags_len;
	p = ser_name(s);
#define COPY_PART(len)                     \
	do {                               \
		memcpy(p, src, (len));     \
		p[(len)] = '\0';           \
		p += (len) + 1;            \
		src += (len);              \
	} while (0)
	COPY_PART(id->user_len);
	COPY_PART(id->process_len);
	COPY_PART(id->counter_len);
	COPY_PART(id->tags_len);
#undef COPY_PART
	if (type == DTS_TIMER) {
		struct timer_ext *x = ser_ext_of(s, type);

		for (int i = 0; i < NWIN; i++)
			dts_sketch_init(&x->sk[i]);
		s->ext = x;
	} else if (type == DTS_SET) {
		struct set_ext *x = ser_ext_of(s, type);

		for (int i = 0; i < NWIN; i++)
			dts_set_init(&x->set[i]);
		s->ext = x;
	}
	for (int i = 0; i < NWIN; i++) {
		s->win[i].minute = -1;
		dts_agg_init(&s->win[i].agg);
	}
	s->ring_newest = -1; /* the first slot merged clears every position */
	return s;
}

/* ---- published current state ----------------------------------------------------------------------------------- */

static inline uint64_t dbits(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return u;
}

static inline double bitsd(uint64_t u)
{
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

/* Publish v as s's current state. Merger thread (the only writer); never waits. */
static void pub_write(struct series *s, const struct dts_current *v)
{
	struct pubstate *p = &s->pub;
	/* odd: a writer is inside. The RMW's acquire half keeps the field stores after it; the field stores are
	 * releases, so a reader whose acquire load sees one of them also sees the odd seq (and retries). */
	const uint32_t seq = atomic_fetch_add_explicit(&p->seq, 1, memory_order_acq_rel);

	atomic_store_explicit(&p->as_of_ms, v->as_of_ms, memory_order_release);
	atomic_store_explicit(&p->last_seen_s, v->last_seen_s, memory_order_release);
	atomic_store_explicit(&p->count, dbits(v->count), memory_order_release);
	atomic_store_explicit(&p->sum, dbits(v->sum), memory_order_release);
	atomic_store_explicit(&p->min, dbits(v->min), memory_order_release);
	atomic_store_explicit(&p->max, dbits(v->max), memory_order_release);
	atomic_store_explicit(&p->last, dbits(v->last), memory_order_release);
	if (s->type == DTS_TIMER) {
		struct timer_ext *x = s->ext;

		atomic_store_explicit(&x->q[0], dbits(v->bot10), memory_order_release);
		atomic_store_explicit(&x->q[1], dbits(v->top10), memory_order_release);
		atomic_store_explicit(&x->q[2], dbits(v->p50), memory_order_release);
		atomic_store_explicit(&x->q[3], dbits(v->p99), memory_order_release);
	} else if (s->type == DTS_SET) {
		atomic_store_explicit(&((struct set_ext *)s->ext)->distinct, dbits(v->distinct), memory_order_release);
	}
	atomic_store_explicit(&p->seq, seq + 2, memory_order_release); /* even again: published */
}

/*
 * A reader's copy of s's current state (rate and avg derived, NAN for what the type has not). false when nothing is
 * published yet. Any thread holding the RCU read side; retries while the merger is writing (a few stores long).
 */
static bool pub_read(const struct series *s, struct dts_current *v)
{
	const struct pubstate *p = &s->pub;
	uint32_t s1, s2;

	for (;;) {
		s1 = atomic_load_explicit(&p->seq, memory_order_acquire);
		if (s1 == 0)
			return false;
		if (s1 & 1) {
			caa_cpu_relax();
			continue;
		}
		v->as_of_ms = atomic_load_explicit(&p->as_of_ms, memory_order_acquire);
		v->last_seen_s = atomic_load_explicit(&p->last_seen_s, memory_order_acquire);
		v->count = bitsd(atomic_load_explicit(&p->count, memory_order_acquire));
		v->sum = bitsd(atomic_load_explicit(&p->sum, memory_order_acquire));
		v->min = bitsd(atomic_load_explicit(&p->min, memory_order_acquire));
		v->max = bitsd(atomic_load_explicit(&p->max, memory_order_acquire));
		v->last = bitsd(atomic_load_explicit(&p->last, memory_order_acquire));
		v->bot10 = v->top10 = v->p50 = v->p99 = v->distinct = NAN;
		if (s->type == DTS_TIMER) {
			const struct timer_ext *x = s->ext;

			v->bot10 = bitsd(atomic_load_explicit(&x->q[0], memory_order_acquire));
			v->top10 = bitsd(atomic_load_explicit(&x->q[1], memory_order_acquire));
			v->p50 = bitsd(atomic_load_explicit(&x->q[2], memory_order_acquire));
			v->p99 = bitsd(atomic_load_explicit(&x->q[3], memory_order_acquire));
		} else if (s->type == DTS_SET) {
			v->distinct = bitsd(atomic_load_explicit(&((const struct set_ext *)s->ext)->distinct,
								 memory_order_acquire));
		}
		/* acquire loads: none of the loads above moves after this one */
		s2 = atomic_load_explicit(&p->seq, memory_order_acquire);
		if (s1 == s2)
			break;
	}
	v->rate = v->sum / 60.0;
	v->avg = v->count == 0 ? NAN : v->sum / v->count;
	return true;
}

/*
 * w->agg += a, a being the aggregate of slot: like dts_agg_merge, but fst and lst follow slot time (the earliest and
 * the latest slot win; within one slot, the later merge takes lst), so a partial that arrives after a later slot's
 * data does not become the window's last value.
 */
static void win_merge(struct win *w, const struct dts_agg *a, int64_t slot)
{
	double fst = w->agg.fst, lst = w->agg.lst;
	bool had = w->agg.count > 0;
	uint8_t k = (uint8_t)(slot - w->minute * DTS_SLOTS_PER_MINUTE); /* slot is in w's minute */

	if (a->count == 0)
		return;
	dts_agg_merge(&w->agg, a);
	if (!had) {
		w->fst_k = w->lst_k = k;
		return;
	}
	if (k < w->fst_k) {
		w->fst_k = k;
		w->agg.fst = a->fst;
	} else {
		w->agg.fst = fst;
	}
	if (k >= w->lst_k)
		w->lst_k = k;
	else
		w->agg.lst = lst;
}

/* ---- index and directory --------------------------------------------------------------------------------------- */

/* The series at directory position i, or NULL (merger: relaxed is enough, it is the only writer). */
static inline struct series *dir_get(const struct dts_merger *m, uint32_t i, memory_order mo)
{
	_Atomic(struct series *) *chunk = atomic_load_explicit(&m->dir[i >> DIR_CHUNK_BITS], mo);

	return atomic_load_explicit(&chunk[i & (DIR_CHUNK - 1)], mo);
}

/* Give s a directory position and publish it there. 0, or -ENOMEM. Merger thread. */
static int dir_add(struct dts_merger *m, struct series *s)
{
	uint32_t i, hw = atomic_load_explicit(&m->dir_hw, memory_order_relaxed);
	_Atomic(struct series *) *chunk;

	if (m->dir_nfree) {
		i = m->dir_free[--m->dir_nfree];
	} else {
		if ((hw >> DIR_CHUNK_BITS) >= m->dir_nchunks)
			return -ENOMEM; /* cannot happen: max_series bounds the positions in use (checked at create) */
		i = hw;
		if ((i & (DIR_CHUNK - 1)) == 0) {
			chunk = calloc(DIR_CHUNK, sizeof(*chunk));
			if (!chunk)
				return -ENOMEM;
			atomic_store_explicit(&m->dir[i >> DIR_CHUNK_BITS], chunk, memory_order_release);
		}
	}
	s->dir_slot = i;
	chunk = atomic_load_explicit(&m->dir[i >> DIR_CHUNK_BITS], memory_order_relaxed);
	atomic_store_explicit(&chunk[i & (DIR_CHUNK - 1)], s, memory_order_release);
	if (i == hw)
		atomic_store_explicit(&m->dir_hw, hw + 1, memory_order_release);
	return 0;
}

/* Take s out of the directory (readers that already hold it keep it until their grace period ends). */
static void dir_del(struct dts_merger *m, struct series *s)
{
	_Atomic(struct series *) *chunk = atomic_load_explicit(&m->dir[s->dir_slot >> DIR_CHUNK_BITS],
							       memory_order_relaxed);

	atomic_store_explicit(&chunk[s->dir_slot & (DIR_CHUNK - 1)], NULL, memory_order_release);
	if (m->dir_nfree == m->dir_free_cap) {
		uint32_t cap = m->dir_free_cap ? m->dir_free_cap * 2 : 1024;
		uint32_t *f = realloc(m->dir_free, cap * sizeof(*f));

		if (!f)
			return; /* the position is not reused; the directory still bounds the walks by dir_hw */
		m->dir_free = f;
		m->dir_free_cap = cap;
	}
	m->dir_free[m->dir_nfree++] = s->dir_slot;
}

/*
 * The home slot of a hash: its top bits, as a table's home bucket is (dts__table_bucket_at), so a fold in bucket
 * order (used_sort) walks the index in order, and series created by one fold are laid out in that order.
 */
static inline uint64_t ix_home(const struct dts_merger *m, uint64_t hash)
{
	return hash >> m->ix_shift;
}

/* Rehash the index into at least twice its slots, and at least 2 * need. 0 or -ENOMEM (the index is unchanged). */
static int ix_grow(struct dts_merger *m, uint64_t need)
{
	uint64_t cap = (m->ix_mask + 1) * 2, mask;
	unsigned shift = m->ix_shift - 1;
	struct ix_ent *ix;

	while (cap < 2 * need && shift > 1) {
		cap *= 2;
		shift--;
	}
	mask = cap - 1;
	ix = dts__big_alloc(cap * sizeof(*ix));
	if (!ix)
		return -ENOMEM;
	for (uint64_t i = 0; i <= m->ix_mask; i++) {
		uint64_t j;

		if (!m->ix[i].s)
			continue;
		for (j = m->ix[i].hash >> shift; ix[j].s; j = (j + 1) & mask)
			;
		ix[j] = m->ix[i];
	}
	dts__big_free(m->ix, (m->ix_mask + 1) * sizeof(*ix));
	m->ix = ix;
	m->ix_mask = mask;
	m->ix_shift = shift;
	__atomic_store_n(&m->stats.index_slots, cap, __ATOMIC_RELAXED);
	return 0;
}

/* Remove s from the index: backward-shift deletion keeps every other entry reachable from its home slot. */
static void ix_del(struct dts_merger *m, const struct series *s)
{
	uint64_t i = ix_home(m, s->hash), j;

	while (m->ix[i].s != s) {
		if (!m->ix[i].s)
			return; /* not indexed (cannot happen) */
		i = (i + 1) & m->ix_mask;
	}
	for (j = i;;) {
		uint64_t home;

		j = (j + 1) & m->ix_mask;
		if (!m->ix[j].s)
			break;
		home = ix_home(m, m->ix[j].hash);
		/* the entry at j may move to the hole at i unless its home lies cyclically in (i, j] */
		if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		m->ix[i] = m->ix[j];
		i = j;
	}
	m->ix[i].s = NULL;
}

/* Take s out of the index and directory and free it after a grace period. Merger thread. */
static void series_retire(struct dts_merger *m, struct series *s)
{
	ix_del(m, s);
	dir_del(m, s);
	if (s->proc)
		dts__pstate_ref(s->proc, -1);
	m->nseries--;
	s->home = m;
	dts__call_rcu(&s->rcu, series_free_rcu);
}

/*
 * Find the series of a table entry, creating it if needed. Merger thread.
 * A series is its identity hash and type, as a table entry is: two identities of one type with one hash are one
 * series here as they already are in the per-core tables. The hash is keyed with a secret drawn at creation
 * (dts_merger_cfg.ident_key), so nobody can aim for that, and by chance it takes ~4e9 series of one type for an even
 * chance of one such pair (~3e-8 at a million). Comparing the names as well would cost two cache lines per folded
 * entry (the table's copy of the identity and the series' name) and could not undo a merge the tables have already
 * done. The type is compared: it decides what the entry's logs and encodings are merged into.
 */
static struct series *series_get(struct dts_merger *m, const struct dts__table *t, const struct dts__entry *e,
				  uint32_t left)
{
	uint64_t i = ix_home(m, e->hash), probes = 0;
	struct series *s;

	for (; (s = m->ix[i].s) != NULL; i = (i + 1) & m->ix_mask, probes++) {
		if (m->ix[i].hash == e->hash && s->type == e->type) {
			assert(series_match(s, dts__table_ident(t, e), e->type));
			DTS__STAT_ADD(m->stats.index_probes, probes);
			return s;
		}
	}
	DTS__STAT_ADD(m->stats.index_probes, probes);
	if (m->nseries >= m->cfg.max_series) {
		DTS__STAT_ADD(m->stats.dropped[DTS_DROP_SERIES_LIMIT], 1);
		return NULL;
	}
	/*
	 * Grow at half load, or sooner when the fold's new series crowd the part of the index it has reached. A fold
	 * visits hashes in order (used_sort), so the series it adds all home below the point it has reached: with more
	 * of them in this fold than the index has slots, that part fills up and every addition walks one long cluster
	 * (100,000 new series into a fresh index walked 168M slots: test_merger). A long walk with an index smaller
	 * than 4 * (series + entries left in this table) grows it to twice that at once, after which additions land
	 * where they belong.
	 */
	if ((m->nseries + 1) * 2 > m->ix_mask + 1 ||
	    (probes > IX_CROWDED && m->ix_mask + 1 < 4 * ((uint64_t)m->nseries + left))) {
		if (ix_grow(m, (uint64_t)m->nseries + left) != 0) {
			DTS__STAT_ADD(m->stats.dropped[DTS_DROP_NOMEM], 1);
			return NULL;
		}
		for (i = ix_home(m, e->hash); m->ix[i].s; i = (i + 1) & m->ix_mask)
			;
	}
	s = series_new(m, dts__table_ident(t, e), e->type, e->hash);
	if (!s || dir_add(m, s) != 0) {
		if (s)
			series_free_now(m, s);
		DTS__STAT_ADD(m->stats.dropped[DTS_DROP_NOMEM], 1);
		return NULL;
	}
	s->proc = dts__procs_get(m->procs, ser_user(s), s->user_len, ser_process(s), s->process_len);
	if (s->proc)
		dts__pstate_ref(s->proc, 1);
	m->ix[i].hash = e->hash;
	m->ix[i].s = s;
	m->nseries++;
	DTS__STAT_ADD(m->stats.series_created, 1);
	__atomic_store_n(&m->stats.series_live, m->nseries, __ATOMIC_RELAXED);
	return s;
}

/* The window of minute for s, or NULL (counted) when that minute is closed or too far ahead. */
static struct win *series_win(struct dts_merger *m, struct series *s, int64_t minute, int64_t now_min)
{
	struct win *w = &s->win[minute % NWIN];

	if (minute < m->closed_upto) {
		DTS__STAT_ADD(m->stats.dropped[DTS_DROP_LATE], 1);
		return NULL;
	}
	if (minute > now_min + 1) {
		DTS__STAT_ADD(m->stats.dropped[DTS_DROP_FUTURE], 1);
		return NULL;
	}
	if (w->minute != minute) {
		if (w->minute >= m->closed_upto) {
			/* the minute two before, still in grace, holds the position: data this far ahead is dropped */
			DTS__STAT_ADD(m->stats.dropped[DTS_DROP_FUTURE], 1);
			return NULL;
		}
		win_reset(s, w, minute);
	}
	return w;
}

/* Empty ring position r of a series whose positions keep min and max when extremes. */
static inline void slot_clear(double *r, bool extremes)
{
	r[RS_SUM] = 0;
	r[RS_COUNT] = 0;
	if (extremes) {
		r[RS_MIN] = INFINITY;
		r[RS_MAX] = -INFINITY;
	}
}

/*
 * The slot ring. Its invariant: N = ring_newest is the newest slot ever merged (-1 before the first). Ring position p
 * belongs to slot D(p) = N - ((N - p) mod 12), the one slot of (N - 12, N] at p. Bit p of ring_prev clear: p holds
 * the values merged for D(p). Bit set: p holds those of D(p) - 12 (a slot that data stamped after it pushed out of
 * (N - 12, N], and that can still be inside a published window), or nothing. Positions without data have count 0.
 *
 * So each position holds the newest slot merged at it, and a slot older than that is not merged, exactly as with a
 * slot number per position, except for slots 24 or more before N: those are dropped, which only changes a
 * publication whose window [P - 12, P) reaches 24 slots before N, i.e. after data stamped 12 slots (60 s) or more
 * ahead of the publication slot P was merged.
 * Merging slot S:
 *   - S > N: the positions of slots N + 1 .. S (the last 12 of them) move to their new slot k and get their bit set:
 *     each keeps its values if it held k - 12 (bit clear and k - 12 <= N), else it is emptied; N becomes S;
 *   - then, with j = (D(S % 12) - S) / 12: j = 0 merges at S % 12 (emptied first if its bit was set: it held an older
 *     slot, or nothing), j = 1 merges there if its bit is set (it holds S or nothing), else not (it holds D, newer);
 *     j >= 2 is not merged. A slot not merged still counts in its minute window.
 * current_publish adds the positions whose slot (D(p), or D(p) - 12 when the bit is set) is in the window [P - 12, P)
 * of the publication slot P.
 */
static void slot_merge(struct series *s, int64_t slot, const struct dts_agg *a)
{
	const unsigned w = ring_width(s->type);
	const bool extremes = w > RS_MAX; /* gauges and timers keep min and max */
	const int i = (int)(slot % DTS_SLOTS_PER_MINUTE);
	const uint16_t bit = (uint16_t)(1u << i);
	double *r = s->ring + (unsigned)i * w;
	int64_t n = s->ring_newest;

	if (slot > INT32_MAX)
		return; /* after the year 2310: in its minute only */
	if (n < 0 && slot >= 0) {
		/* The first slot of a series: what the loop below makes of its ring, without a test per position. Every
		 * position is emptied and gets its bit; the record is zeroed (ser_alloc), so emptying is setting the
		 * extremes. Slot's own position then has no bit: it is merged into below. */
		if (extremes)
			for (unsigned q = 0; q < DTS_SLOTS_PER_MINUTE; q++)
				slot_clear(s->ring + q * w, true);
		s->ring_prev = (uint16_t)(((1u << DTS_SLOTS_PER_MINUTE) - 1) & ~(unsigned)bit);
		s->ring_newest = (int32_t)slot;
		n = slot;
	} else if (slot > n) {
		int64_t k = slot - n > DTS_SLOTS_PER_MINUTE ? slot - DTS_SLOTS_PER_MINUTE + 1 : n + 1;
		unsigned q = (unsigned)(k % DTS_SLOTS_PER_MINUTE);
		unsigned prev = s->ring_prev;

		for (; k <= slot; k++) {
			if (k - DTS_SLOTS_PER_MINUTE > n || (prev >> q & 1))
				slot_clear(s->ring + q * w, extremes); /* it held a slot older than k - 12, or nothing */
			prev |= 1u << q;
			q = q + 1 == DTS_SLOTS_PER_MINUTE ? 0 : q + 1;
		}
		s->ring_prev = (uint16_t)prev;
		s->ring_newest = (int32_t)slot;
		n = slot;
	}
	/* j: D(i) is the newest slot <= n at i, so n - D(i) < 12 and (n - slot) / 12 = (D(i) - slot) / 12 */
	switch ((uint64_t)(n - slot) / DTS_SLOTS_PER_MINUTE) {
	case 0: /* slot is D(i) */
		if (s->ring_prev & bit) {
			s->ring_prev &= (uint16_t)~bit;
			slot_clear(r, extremes);
		}
		break;
	case 1: /* slot is D(i) - 12 */
		if (s->ring_prev & bit)
			break; /* the position holds that slot, or nothing */
		return; /* the position holds D(i), newer */
	default:
		return; /* older than the ring: counts in its minute, not in the current state */
	}
	r[RS_SUM] += a->sum;
	r[RS_COUNT] += a->count;
	if (extremes) {
		r[RS_MIN] = a->min < r[RS_MIN] ? a->min : r[RS_MIN];
		r[RS_MAX] = a->max > r[RS_MAX] ? a->max : r[RS_MAX];
	}
}

/* Fold one entry's scalar aggregate into window w and the slot ring; the process was heard at heard_ms. */
static void fold_entry(struct dts_merger *m, struct series *s, struct win *w, const struct dts__entry *e,
		       int64_t slot, int64_t heard_ms)
{
	struct dts_agg one;
	const struct dts_agg *a = &e->agg;

	if (s->type == DTS_GAUGE) {
		if (e->flags & DTS__ENT_GAUGE_ABS) {
			if (!s->gauge_known || slot >= s->gauge_slot) { /* an older slot's value arriving late is not news */
				s->gauge_value = e->agg.lst;
				s->gauge_slot = (int32_t)slot;
			}
		} else {
			/* only deltas arrived in this entry: apply them to the known value (0 if none yet) */
			s->gauge_value = (s->gauge_known ? s->gauge_value : 0) + e->agg.lst;
			dts_agg_init(&one);
			dts_agg_add(&one, s->gauge_value, 1.0);
			a = &one;
		}
		s->gauge_known = true;
	}
	win_merge(w, a, slot);
	w->ckpt_dirty = true;
	slot_merge(s, slot, a);
	s->pub_dirty = true;
	if (slot * DTS_SLOT_SECONDS > s->last_seen_s)
		s->last_seen_s = (uint32_t)(slot * DTS_SLOT_SECONDS);
	if (s->proc)
		dts__pstate_data(m->procs, s->proc, heard_ms);
}

static char *dup_ident(const struct series *s);

/* A closed minute's record of s with aggregate agg, its identity at id (user\0process\0counter\0tags\0, as in
 * the series' name), and an empty sketch and set. */
static void rec_fill(struct dts_minute_rec *r, const char *id, const struct series *s, const struct dts_agg *agg)
{
	r->user = id;
	r->process = id + s->user_len + 1;
	r->counter = r->process + s->process_len + 1;
	r->tags = r->counter + s->counter_len + 1;
	r->type = s->type;
	r->agg = *agg;
	dts_sketch_init(&r->sketch);
	dts_set_init(&r->set);
}
static void hand_to_sink(struct dts_closed_minute *cm, void (*fn)(void *, struct dts_closed_minute *), void *ctx);

/*
 * A record for an entry of an already closed minute, in that minute's late batch (created on first use with room for
 * every entry of the table, so records never move). NULL when the sink takes no closed minutes, when the entry cannot
 * be expressed as a partial (a gauge with only deltas: they need the value of a minute that is gone), or out of room.
 */
/*
 * One record per series in a late part: a table can hold several entries of one series for one closed minute (one
 * per 5-second slot), and the store writes a closed minute's records as distinct keys of one batch, so they must be
 * merged here (two records of one key would make the second put replace the first). Open addressing on the series
 * pointer; each record keeps the slot range merged into it so that fst/lst follow slot time, not arrival order.
 */
struct late_index {
	uint32_t mask;
	struct series **key;
	uint32_t *rec;
	int64_t *slot_lo, *slot_hi; /* per record */
};

static void late_index_free(struct late_index *ix)
{
	if (!ix)
		return;
	free(ix->key);
	free(ix->rec);
	free(ix->slot_lo);
	free(ix->slot_hi);
	free(ix);
}

static struct late_index *late_index_new(uint32_t nrecs)
{
	struct late_index *ix = calloc(1, sizeof(*ix));
	uint32_t cap = 16;

	while (cap < 2 * (uint64_t)nrecs)
		cap *= 2;
	if (!ix)
		return NULL;
	ix->mask = cap - 1;
	ix->key = calloc(cap, sizeof(*ix->key));
	ix->rec = malloc(cap * sizeof(*ix->rec));
	ix->slot_lo = malloc((nrecs ? nrecs : 1) * sizeof(*ix->slot_lo));
	ix->slot_hi = malloc((nrecs ? nrecs : 1) * sizeof(*ix->slot_hi));
	if (!ix->key || !ix->rec || !ix->slot_lo || !ix->slot_hi) {
		late_index_free(ix);
		return NULL;
	}
	return ix;
}

/* The bucket of s: its own, or the empty one where it goes. */
static uint32_t late_index_find(const struct late_index *ix, const struct series *s)
{
	uint32_t b = (uint32_t)(s->hash ^ (s->hash >> 32)) & ix->mask;

	while (ix->key[b] && ix->key[b] != s)
		b = (b + 1) & ix->mask;
	return b;
}

/* Merge src (an entry's aggregate for slot) into a record holding slots [*lo, *hi]: fst/lst by slot time. */
static void agg_merge_by_slot(struct dts_agg *dst, int64_t *lo, int64_t *hi, const struct dts_agg *src, int64_t slot)
{
	const double fst = dst->fst, lst = dst->lst;

	if (src->count == 0.0)
		return;
	if (dst->count == 0.0) {
		*dst = *src;
		*lo = *hi = slot;
		return;
	}
	dts_agg_merge(dst, src); /* sum, count, min, max; fst kept, lst = src's */
	if (slot > *hi) {
		*hi = slot;
	} else {
		dst->lst = lst; /* src is not the latest */
		if (slot < *lo) {
			dst->fst = src->fst;
			*lo = slot;
		} else {
			dst->fst = fst;
		}
	}
}

static struct dts_minute_rec *late_record(struct dts_merger *m, const struct dts__table *t, struct series *s,
					  const struct dts__entry *e, int64_t minute)
{
	const int64_t slot = (int64_t)t->base_slot + e->slot_rel;
	struct late_index *ix;
	uint32_t b;
	struct dts_closed_minute *cm = NULL;
	struct dts_minute_rec *r;
	char *id;
	int k;

	if (!m->cfg.sink.minute_closed || (s->type == DTS_GAUGE && !(e->flags & DTS__ENT_GAUGE_ABS)))
		return NULL;
	for (k = 0; k < LATE_MINUTES && m->late[k]; k++)
		if (m->late[k]->minute == minute)
			break;
	if (k == LATE_MINUTES)
		return NULL;
	if (!m->late[k]) {
		cm = calloc(1, sizeof(*cm));
		if (cm)
			cm->recs = malloc(t->n_used * sizeof(*cm->recs));
		m->late_ix[k] = late_index_new(t->n_used);
		if (!cm || !cm->recs || !m->late_ix[k]) {
			if (cm)
				free(cm->recs);
			free(cm);
			late_index_free(m->late_ix[k]);
			m->late_ix[k] = NULL;
			return NULL;
		}
		cm->minute = minute;
		cm->late = true;
		m->late[k] = cm;
	}
	cm = m->late[k];
	ix = m->late_ix[k];
	b = late_index_find(ix, s);
	if (ix->key[b]) { /* another slot of this series' minute: one record for both */
		r = &cm->recs[ix->rec[b]];
		agg_merge_by_slot(&r->agg, &ix->slot_lo[ix->rec[b]], &ix->slot_hi[ix->rec[b]], &e->agg, slot);
		return r;
	}
	id = dup_ident(s);
	if (!id)
		return NULL;
	ix->key[b] = s;
	ix->rec[b] = (uint32_t)cm->n;
	ix->slot_lo[cm->n] = ix->slot_hi[cm->n] = slot;
	r = &cm->recs[cm->n++];
	rec_fill(r, id, s, &e->agg);
	return r;
}

#define LATE_TAG ((uintptr_t)1)

/*
 * Merge the sketch and set encodings of a folded table's partials into the windows (or late records) their entries
 * went to (m->fold_map). The encodings were validated on the RX core, so a decode failure means memory.
 */
static void fold_blobs(struct dts_merger *m, const struct dts__table *t)
{
	uint32_t off = 0;
	uint64_t n = 0;

	for (uint32_t i = 0; i < t->n_blob; i++) {
		const struct dts__blob *b = (const struct dts__blob *)(t->blob + off);
		uintptr_t ref = (uintptr_t)m->fold_map[b->entry];
		struct dts_minute_rec *late = ref & LATE_TAG ? (struct dts_minute_rec *)(ref & ~LATE_TAG) : NULL;
		void *target = late ? NULL : (void *)ref; /* the window's sketch (timer entries) or set (set entries) */
		int r = 0;

		off += (uint32_t)((sizeof(*b) + b->len + 7) & ~(size_t)7);
		if (b->type == DTS_TIMER && (late || target)) {
			r = dts_sketch_decode(&m->dec_sk, b->bytes, b->len);
			if (r == (int)b->len)
				r = dts_sketch_merge(late ? &late->sketch : (struct dts_sketch *)target, &m->dec_sk);
		} else if (b->type == DTS_SET && (late || target)) {
			r = dts_set_decode(&m->dec_set, b->bytes, b->len);
			if (r == (int)b->len)
				r = dts_set_merge(late ? &late->set : (struct dts_set *)target, &m->dec_set);
		} else {
			continue; /* its entry was dropped (counted there) */
		}
		if (r != 0)
			DTS__STAT_ADD(m->stats.dropped[DTS_DROP_NOMEM], 1);
		else
			n++;
	}
	DTS__STAT_ADD(m->stats.encodings_merged, n);
}

/*
 * Prefetch what folding e will touch: the series of the first index slot on its probe path whose hash is e's (the
 * index line was prefetched earlier; at half load about 40% of series are not in their home slot): its header, and
 * the window and the slot's position e goes to.
 * Always inlined, and it must stay so: a function whose only effects are prefetches is "pure" to gcc (12), which
 * then deletes the call as having no use for its result. Until session 6 that is what happened: the release builds
 * never prefetched a series, and the fold waited on every header and name (docs/performance.md, "Session 6: the
 * fold's prefetches").
 */
static inline __attribute__((always_inline)) void fold_prefetch(const struct dts_merger *m,
								 const struct dts__table *t,
								 const struct dts__entry *e)
{
	const struct series *s = NULL;
	int64_t slot = (int64_t)t->base_slot + e->slot_rel;

	for (uint64_t i = ix_home(m, e->hash), n = 0; n < 4 && m->ix[i].s; i = (i + 1) & m->ix_mask, n++) {
		if (m->ix[i].hash == e->hash) {
			s = m->ix[i].s;
			break;
		}
	}
	if (!s)
		return;
	__builtin_prefetch(&s->type); /* the merger's header, the line after the published state */
	__builtin_prefetch(&s->win[(slot / DTS_SLOTS_PER_MINUTE) % NWIN]);
	/* the slot's position: 16 or 32 bytes at a 64-byte aligned ring, so within one line */
	__builtin_prefetch(s->ring + (size_t)(slot % DTS_SLOTS_PER_MINUTE) * ring_width(e->type));
}

/*
 * Order the table's used buckets for the fold: first the gauges' entries as they came (insertion order), then every
 * other entry in bucket order. Bucket order lets the fold read the entries as a stream, walk the index in order and
 * visit series in address order. It is the hash's order, not the slots', and only gauges care: a gauge's entries of
 * two slots (a value, then a delta in the next slot) must be folded as they arrived, since a delta adds to the value
 * before it. Logs and encodings name their entry by bucket, and for every other type the fold's result does not
 * depend on the order of the entries (windows and slots merge by slot keys). Every used bucket sets a bit (64 KiB at
 * 2^19 buckets) and the gauges' clear theirs again (the RX core lists them: t->gauges); the gauges go first, then one
 * pass over the words writes the others and clears the bits.
 */
static void used_sort(struct dts_merger *m, struct dts__table *t)
{
	uint64_t *bits = m->fold_bits;
	const uint32_t words = (t->mask + 64) / 64;
	uint32_t n = t->n_gauges;

	for (uint32_t i = 0; i < t->n_used; i++)
		bits[t->used[i] / 64] |= 1ull << (t->used[i] % 64);
	for (uint32_t i = 0; i < n; i++) {
		bits[t->gauges[i] / 64] &= ~(1ull << (t->gauges[i] % 64));
		t->used[i] = t->gauges[i];
	}
	for (uint32_t w = 0; w < words; w++) {
		uint64_t b = bits[w];

		if (!b)
			continue;
		bits[w] = 0;
		do {
			t->used[n++] = w * 64 + (uint32_t)__builtin_ctzll(b);
			b &= b - 1;
		} while (b);
	}
}

/*
 * The timer log of t in an order that keeps each window's sketch warm while its values go in. The log is in arrival
 * order, and at many series consecutive values go to different sketches, each cold (a sketch is read and written per
 * value: at a million series it costs a cache miss per value, ~130 ns, more than all the rest of a timer line). Once
 * the table holds TLOG_GROUP_ENTRIES entries or more, the log is copied to m->fold_tlog grouped by bucket range: a
 * counting sort on the bucket's top TLOG_GROUP_BITS bits (one pass to count, one to copy). The values of one entry are
 * then together, and those of a group's few hundred entries within a few thousand values, so each sketch is fetched
 * about once per table instead of once per value. The sort is stable: an entry's values stay in arrival order, and a
 * sketch receives the same values (its result does not depend on their order, up to the rounding of float weights).
 * Smaller tables keep their order: their series' sketches stay cached anyway and the copy would only cost.
 */
#define TLOG_GROUP_BITS 10
#define TLOG_GROUP_ENTRIES 16384
static const struct dts__tlog *tlog_grouped(struct dts_merger *m, const struct dts__table *t)
{
	uint32_t start[1u << TLOG_GROUP_BITS];
	const uint32_t n = t->n_tlog, bits = 32 - (uint32_t)__builtin_clz(t->mask + 1) - 1; /* buckets = 2^bits */
	const uint32_t shift = bits > TLOG_GROUP_BITS ? bits - TLOG_GROUP_BITS : 0;
	uint32_t at = 0;

	if (t->n_used < TLOG_GROUP_ENTRIES || n < 2)
		return t->tlog;
	memset(start, 0, sizeof(start));
	for (uint32_t i = 0; i < n; i++)
		start[t->tlog[i].entry >> shift]++;
	for (uint32_t g = 0; g < (1u << TLOG_GROUP_BITS); g++) {
		const uint32_t c = start[g];

		start[g] = at;
		at += c;
	}
	for (uint32_t i = 0; i < n; i++)
		m->fold_tlog[start[t->tlog[i].entry >> shift]++] = t->tlog[i];
	return m->fold_tlog;
}

static void fold_table(struct dts_merger *m, struct dts__table *t, int64_t now_s)
{
	const int64_t now_min = now_s / 60;
	uint64_t n = 0;

	used_sort(m, t);
	dts__read_lock();
	for (uint32_t i = 0; i < t->n_used; i++) {
		uint32_t idx = t->used[i];
		const struct dts__entry *e = &t->entries[idx];

		if (i + 2 * FOLD_AHEAD < t->n_used)
			__builtin_prefetch(&t->entries[t->used[i + 2 * FOLD_AHEAD]]);
		if (i + FOLD_AHEAD < t->n_used)
			__builtin_prefetch(&m->ix[ix_home(m, t->entries[t->used[i + FOLD_AHEAD]].hash)]);
		if (i + FOLD_AHEAD / 2 < t->n_used)
			fold_prefetch(m, t, &t->entries[t->used[i + FOLD_AHEAD / 2]]);
		int64_t slot = (int64_t)t->base_slot + e->slot_rel;
		int64_t minute = slot / DTS_SLOTS_PER_MINUTE;
		struct series *s = series_get(m, t, e, t->n_used - i);
		int64_t heard_s;
		struct win *w;

		m->fold_map[idx] = NULL;
		if (s && minute < m->closed_upto) {
			struct dts_minute_rec *r = late_record(m, t, s, e, minute);

			if (r) {
				m->fold_map[idx] = (void *)((uintptr_t)r | LATE_TAG);
				DTS__STAT_ADD(m->stats.late_forwarded, 1);
			} else {
				DTS__STAT_ADD(m->stats.dropped[DTS_DROP_LATE], 1);
			}
			continue;
		}
		w = s ? series_win(m, s, minute, now_min) : NULL;
		if (!w)
			continue;
		/* a blob's, tlog's or slog's entry has the blob's type, which is its series' type */
		if (s->type == DTS_TIMER)
			m->fold_map[idx] = win_sk(s, w);
		else if (s->type == DTS_SET)
			m->fold_map[idx] = win_set(s, w);
		/* statsd-only processes are heard through their data: at the end of its slot, or now if that is earlier */
		heard_s = (slot + 1) * DTS_SLOT_SECONDS < now_s ? (slot + 1) * DTS_SLOT_SECONDS : now_s;
		fold_entry(m, s, w, e, slot, heard_s * 1000);
		n++;
	}
	dts__read_unlock();

	const struct dts__tlog *tlog = tlog_grouped(m, t);

	for (uint32_t i = 0; i < t->n_tlog; i++) {
		const struct dts__tlog *l = &tlog[i];
		uintptr_t ref;

		/* Each value goes to a sketch that is cold at a million series: prefetch the sketch 16 values ahead and,
		 * once it has arrived, 8 ahead, the bin the value will land in (keys near lo: the store's first bins), or a
		 * sparse store's keys and weights. */
		if (i + 16 < t->n_tlog && !((uintptr_t)m->fold_map[tlog[i + 16].entry] & LATE_TAG))
			__builtin_prefetch(m->fold_map[tlog[i + 16].entry]);
		if (i + 8 < t->n_tlog) {
			const struct dts__tlog *a = &tlog[i + 8];
			uintptr_t r = (uintptr_t)m->fold_map[a->entry];

			if (r && !(r & LATE_TAG)) {
				const struct dts_sketch_store *st = a->negative ? &((struct dts_sketch *)r)->neg
										: &((struct dts_sketch *)r)->pos;

				if (st->sparse) { /* up to a few dozen entries: their keys, searched, and weights */
					__builtin_prefetch(st->bins + st->cap);
					__builtin_prefetch(st->bins);
				} else if (st->bins && a->key >= st->lo && a->key < st->lo + (int32_t)st->nbins)
					__builtin_prefetch(&st->bins[a->key - st->lo]);
			}
		}
		ref = (uintptr_t)m->fold_map[l->entry];
		struct dts_sketch *sk = ref & LATE_TAG ? &((struct dts_minute_rec *)(ref & ~LATE_TAG))->sketch
						       : (struct dts_sketch *)ref;

		if (sk && dts_sketch_add_key(sk, l->key == INT16_MIN ? INT32_MIN : l->key, l->negative, l->weight) != 0)
			DTS__STAT_ADD(m->stats.dropped[DTS_DROP_NOMEM], 1);
	}
	for (uint32_t i = 0; i < t->n_slog; i++) {
		const struct dts__slog *l = &t->slog[i];
		uintptr_t ref = (uintptr_t)m->fold_map[l->entry];
		struct dts_set *set = ref & LATE_TAG ? &((struct dts_minute_rec *)(ref & ~LATE_TAG))->set
						     : (struct dts_set *)ref;

		if (set && dts_set_add(set, l->member) != 0)
			DTS__STAT_ADD(m->stats.dropped[DTS_DROP_NOMEM], 1);
	}
	fold_blobs(m, t);
	dts__procs_fold(m->procs, t);
	for (int k = 0; k < LATE_MINUTES && m->late[k]; k++) {
		hand_to_sink(m->late[k], m->cfg.sink.minute_closed, m->cfg.sink.ctx);
		m->late[k] = NULL;
		late_index_free(m->late_ix[k]);
		m->late_ix[k] = NULL;
	}
	DTS__STAT_ADD(m->stats.entries_folded, n);
	DTS__STAT_ADD(m->stats.tables_folded, 1);
}

/* ---- current state --------------------------------------------------------------------------------------------- */

/* Compute and publish the current state of s as of the start of cur_slot. Merger thread. */
static void current_publish(struct series *s, int64_t cur_slot, int64_t now_s)
{
	struct dts_current cv, *v = &cv;
	const unsigned w = ring_width(s->type);
	const bool extremes = w > RS_MAX; /* gauges and timers */
	const int64_t newest = s->ring_newest;
	const int nq = (int)(newest % DTS_SLOTS_PER_MINUTE); /* newest's position */
	const int64_t base = newest - nq; /* position p's slot D(p) is base + p, or base + p - 12 past nq */

	memset(v, 0, sizeof(*v));
	v->as_of_ms = cur_slot * DTS_SLOT_SECONDS * 1000;
	v->last_seen_s = s->last_seen_s;
	v->min = INFINITY;
	v->max = -INFINITY;
	v->last = v->bot10 = v->top10 = v->p50 = v->p99 = v->distinct = NAN;
	/* positions in index order (the order of the sums); their slots as slot_merge describes */
	for (int i = 0; i < DTS_SLOTS_PER_MINUTE && newest >= 0; i++) {
		const double *r = s->ring + (unsigned)i * w;
		const int64_t rslot = base + i - (i > nq ? DTS_SLOTS_PER_MINUTE : 0) -
				      (s->ring_prev >> i & 1 ? DTS_SLOTS_PER_MINUTE : 0);

		if (rslot < cur_slot - DTS_SLOTS_PER_MINUTE || rslot >= cur_slot || r[RS_COUNT] <= 0)
			continue;
		v->sum += r[RS_SUM];
		v->count += r[RS_COUNT];
		if (extremes) {
			v->min = r[RS_MIN] < v->min ? r[RS_MIN] : v->min;
			v->max = r[RS_MAX] > v->max ? r[RS_MAX] : v->max;
		}
	}
	if (v->count == 0) {
		v->min = v->max = v->avg = NAN;
	} else {
		v->avg = v->sum / v->count;
	}
	if (!extremes) /* counters and sets keep none */
		v->min = v->max = NAN;
	v->rate = v->sum / 60.0;
	if (s->type == DTS_GAUGE)
		v->last = s->gauge_known ? s->gauge_value : NAN;
	if (s->type == DTS_TIMER) {
		int64_t min = now_s / 60;
		const struct win *wc = &s->win[min % NWIN], *wp = &s->win[(min - 1) % NWIN];
		double back = 1.0 - (double)(now_s - min * 60) / 60.0; /* share of the previous minute in the window */
		static const double qs[4] = { 0.10, 0.90, 0.50, 0.99 };
		double qv[4];

		/* the quantiles of this minute's sketch plus back times the previous minute's, in one walk of their bins */
		dts_sketch_quantiles2(wc->minute == min ? win_sk(s, wc) : NULL, wp->minute == min - 1 ? win_sk(s, wp) : NULL,
				      back, qs, 4, qv);
		v->bot10 = qv[0];
		v->top10 = qv[1];
		v->p50 = qv[2];
		v->p99 = qv[3];
	}
	if (s->type == DTS_SET) {
		const struct win *wc = &s->win[(now_s / 60) % NWIN];

		v->distinct = wc->minute == now_s / 60 && win_set(s, wc) ? dts_set_cardinality(win_set(s, wc)) : 0;
	}
	pub_write(s, v);
	s->pub_dirty = false;
}

static bool series_idle(const struct dts_merger *m, const struct series *s, int64_t now_s)
{
	if (s->last_seen_s + (int64_t)m->cfg.expire_s > now_s)
		return false;
	for (int i = 0; i < NWIN; i++)
		if (s->win[i].minute >= m->closed_upto)
			return false;
	return true;
}

/*
 * Whether s's published state can stay as it is: nothing folded since, and it already is the constant state of an
 * idle series (published after the series' data left every window). Merger thread.
 */
static bool pub_still_valid(const struct series *s)
{
	const struct pubstate *p = &s->pub;

	return !s->pub_dirty && atomic_load_explicit(&p->seq, memory_order_relaxed) != 0 &&
	       bitsd(atomic_load_explicit(&p->count, memory_order_relaxed)) == 0 &&
	       atomic_load_explicit(&p->last_seen_s, memory_order_relaxed) == s->last_seen_s &&
	       s->last_seen_s + IDLE_S <= atomic_load_explicit(&p->as_of_ms, memory_order_relaxed) / 1000;
}

/*
 * Republish the current state of every series that changed or is still inside its windows, and expire idle ones:
 * the directory positions [pw.pos, pw.pos + WALK_SLICE) of the walk publish_begin started. Walks the directory in
 * order (the pointer array streams; series are prefetched WALK_AHEAD ahead). Returns true while positions remain.
 * Merger thread.
 */
static bool publish_slice(struct dts_merger *m)
{
	struct pub_walk *pw = &m->pw;
	const uint32_t hw = pw->hw, end = hw - pw->pos > WALK_SLICE ? pw->pos + WALK_SLICE : hw;

	dts__read_lock();
	for (uint32_t i = pw->pos; i < end; i++) {
		struct series *s = dir_get(m, i, memory_order_relaxed), *ahead;

		/* what current_publish reads: WALK_AHEAD ahead the published state and the header; half as far ahead,
		 * once its header (the type) has arrived, the ring */
		if (i + WALK_AHEAD < hw && (ahead = dir_get(m, i + WALK_AHEAD, memory_order_relaxed)) != NULL) {
			__builtin_prefetch(ahead);
			__builtin_prefetch(&ahead->type);
		}
		if (i + WALK_AHEAD / 2 < hw && (ahead = dir_get(m, i + WALK_AHEAD / 2, memory_order_relaxed)) != NULL) {
			const char *p = (const char *)ahead->ring;
			const char *pend = p + ring_bytes(ahead->type);

			for (; p < pend; p += 64) /* the ring starts a cache line (sizeof(struct series) is 256) */
				__builtin_prefetch(p);
		}
		if (!s)
			continue;
		if (series_idle(m, s, pw->now_s)) {
			series_retire(m, s);
			DTS__STAT_ADD(m->stats.series_expired, 1);
			continue;
		}
		if (!pub_still_valid(s))
			current_publish(s, pw->cur_slot, pw->now_s);
	}
	dts__read_unlock();
	pw->pos = end;
	if (end < hw)
		return true;
	atomic_store_explicit(&m->pub_as_of_ms, pw->cur_slot * DTS_SLOT_SECONDS * 1000, memory_order_release);
	__atomic_store_n(&m->stats.series_live, m->nseries, __ATOMIC_RELAXED);
	return false;
}

/* Start the publication of slot cur_slot over every series in the directory now. Merger thread. */
static void publish_begin(struct dts_merger *m, int64_t cur_slot, int64_t now_s)
{
	m->pw.cur_slot = cur_slot;
	m->pw.now_s = now_s;
	m->pw.pos = 0;
	m->pw.hw = atomic_load_explicit(&m->dir_hw, memory_order_relaxed);
}

/* ---- minute close ---------------------------------------------------------------------------------------------- */

static bool win_has_data(const struct series *s, const struct win *w)
{
	const struct dts_sketch *sk = win_sk(s, w);
	const struct dts_set *set = win_set(s, w);

	return w->agg.count > 0 || (sk && sk->count > 0) || (set && dts_set_cardinality(set) > 0);
}

static char *dup_ident(const struct series *s)
{
	size_t n = (size_t)s->user_len + s->process_len + s->counter_len + s->tags_len + 4;
	char *p = malloc(n);

	if (p)
		memcpy(p, ser_name(s), n);
	return p;
}

/* Identity bytes of a closed minute's records: chunks of ARENA_CHUNK bytes, linked, freed together. */
#define ARENA_CHUNK (1u << 20)

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	char data[];
};

/* Copy the identity of s into cm's arena. Returns the copy (user\0process\0counter\0tags\0) or NULL. */
static char *arena_ident(struct dts_closed_minute *cm, const struct series *s)
{
	size_t n = (size_t)s->user_len + s->process_len + s->counter_len + s->tags_len + 4;
	struct arena_chunk *c = cm->arena;
	char *p;

	if (!c || c->cap - c->used < n) {
		size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;

		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = cm->arena;
		c->used = 0;
		c->cap = cap;
		cm->arena = c;
	}
	p = c->data + c->used;
	memcpy(p, ser_name(s), n);
	c->used += n;
	return p;
}

/*
 * Record arrays of closed minutes are reused. At a million series one array is ~170 MB, and a checkpoint takes up to
 * three of them every few seconds: allocated fresh, each would be mapped, faulted in and zeroed page by page, then
 * unmapped again by the storage thread. Instead the storage thread's release pushes the array on the pool's lock-free
 * stack and the merger, the only popper, takes it for the next minute. The pool outlives the merger while closed
 * minutes are still queued in a sink: merger and every closed minute from the pool hold a reference, and whoever
 * drops the last one frees what the pool holds.
 */
struct recpool {
	_Atomic long refs;
	struct __cds_lfs_stack stack; /* released arrays */
};

struct recbuf { /* the header before a pooled record array (32 bytes: the records stay 16-byte aligned) */
	struct cds_lfs_node lfs; /* in the pool's stack */
	struct recbuf *next; /* in the merger's list of spare arrays */
	size_t cap; /* records */
	size_t bytes; /* of the whole allocation (dts__big_alloc) */
};

/* Spare arrays the merger keeps beyond those in use: closes take one array for every series, checkpoints pieces of up
 * to CKPT_PIECE records, up to three at a time. */
#define RECS_KEEP_WHOLE 2
#define RECS_KEEP_PIECES 6

static void recpool_unref(struct recpool *p)
{
	struct cds_lfs_head *h;
	struct cds_lfs_node *n;

	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
		return;
	h = __cds_lfs_pop_all(&p->stack);
	for (n = h ? &h->node : NULL; n;) {
		struct recbuf *b = caa_container_of(n, struct recbuf, lfs);

		n = n->next;
		dts__big_free(b, b->bytes);
	}
	free(p);
}

void dts_closed_minute_release(struct dts_closed_minute *cm)
{
	if (!cm)
		return;
	for (size_t i = 0; i < cm->n; i++) {
		dts_sketch_free(&cm->recs[i].sketch);
		dts_set_free(&cm->recs[i].set);
		if (!cm->arena)
			free((char *)cm->recs[i].user);
	}
	for (struct arena_chunk *c = cm->arena, *next; c; c = next) {
		next = c->next;
		free(c);
	}
	if (cm->pool) {
		struct recbuf *b = (struct recbuf *)cm->recs - 1;
		struct recpool *p = cm->pool;

		dts__hb_release(b); /* the merger that pops it next writes it */
		cds_lfs_push(&p->stack, &b->lfs);
		recpool_unref(p);
	} else {
		free(cm->recs);
	}
	free(cm);
}

/* A record array of at least need records from the pool, or a new one; NULL when out of memory. Merger thread. */
static struct dts_minute_rec *recs_take(struct dts_merger *m, size_t need)
{
	struct cds_lfs_head *h = __cds_lfs_pop_all(&m->recpool->stack);
	const size_t piece = m->nseries < CKPT_PIECE ? m->nseries : CKPT_PIECE; /* the smallest array still useful */
	struct recbuf *b, *found = NULL, *keep = NULL;
	unsigned whole = 0, pieces = 0;

	/* what the storage thread released joins the merger's list */
	for (struct cds_lfs_node *n = h ? &h->node : NULL; n;) {
		b = caa_container_of(n, struct recbuf, lfs);
		n = n->next;
		dts__hb_acquire(b);
		b->next = m->recs_spare;
		m->recs_spare = b;
	}
	/* best fit (a checkpoint piece must not take the array the next close needs) */
	for (b = m->recs_spare; b; b = b->next)
		if (b->cap >= need && (!found || b->cap < found->cap))
			found = b;
	/* keep a few of the others; arrays too small for a piece of today's series count are freed */
	while ((b = m->recs_spare) != NULL) {
		bool is_piece = b->cap <= CKPT_PIECE + CKPT_PIECE / 4 + 64;

		m->recs_spare = b->next;
		if (b == found)
			continue;
		if (b->cap < piece || (is_piece ? pieces >= RECS_KEEP_PIECES : whole >= RECS_KEEP_WHOLE)) {
			dts__big_free(b, b->bytes);
			continue;
		}
		*(is_piece ? &pieces : &whole) += 1;
		b->next = keep;
		keep = b;
	}
	m->recs_spare = keep;
	if (!found) {
		size_t cap = need + need / 4 + 64; /* room to grow before the array must be replaced */
		size_t bytes = sizeof(struct recbuf) + cap * sizeof(struct dts_minute_rec);

		found = dts__big_alloc(bytes);
		if (!found)
			return NULL;
		found->cap = cap;
		found->bytes = bytes;
	}
	atomic_fetch_add_explicit(&m->recpool->refs, 1, memory_order_relaxed); /* the closed minute's reference */
	return (struct dts_minute_rec *)(found + 1);
}

/* A new empty closed minute with room for need records, or NULL (counted). */
static struct dts_closed_minute *closed_minute_new(struct dts_merger *m, int64_t minute, bool open, size_t need)
{
	struct dts_closed_minute *cm = calloc(1, sizeof(*cm));

	if (cm) {
		cm->recs = recs_take(m, need ? need : 1);
		cm->pool = m->recpool;
	}
	if (!cm || !cm->recs) {
		free(cm);
		DTS__STAT_ADD(m->stats.dropped[DTS_DROP_NOMEM], 1);
		return NULL;
	}
	cm->minute = minute;
	cm->open = open;
	return cm;
}

/* How many records cm's array holds (it came from recs_take). */
static size_t closed_minute_cap(const struct dts_closed_minute *cm)
{
	return ((const struct recbuf *)cm->recs - 1)->cap;
}

/* How many records a checkpoint piece takes before it goes to the sink. */
static size_t piece_max(const struct dts_closed_minute *cm)
{
	size_t cap = closed_minute_cap(cm);

	return cap < CKPT_PIECE ? cap : CKPT_PIECE;
}

/* Append a copy of s's window w to cm (false, counted, when memory runs out). */
static bool collect_one(struct dts_merger *m, struct dts_closed_minute *cm, const struct series *s,
			const struct win *w)
{
	struct dts_minute_rec *r;
	char *id = arena_ident(cm, s);

	if (!id) {
		DTS__STAT_ADD(m->stats.dropped[DTS_DROP_NOMEM], 1);
		return false;
	}
	r = &cm->recs[cm->n];
	rec_fill(r, id, s, &w->agg);
	if ((win_sk(s, w) && dts_sketch_copy(&r->sketch, win_sk(s, w)) != 0) ||
	    (win_set(s, w) && dts_set_merge(&r->set, win_set(s, w)) != 0)) {
		dts_sketch_free(&r->sketch);
		dts_set_free(&r->set);
		DTS__STAT_ADD(m->stats.dropped[DTS_DROP_NOMEM], 1);
		return false; /* its identity bytes stay in the arena until release: harmless */
	}
	cm->n++;
	return true;
}

/*
 * Copy the windows of minutes lo..hi (at most LIVE_MINUTES of them) of the series at directory positions
 * [from, to) into out[minute - lo]. close (lo == hi): the minute closes, its windows become read-only, and the
 * sketches and sets of the minute before it are released (the moving window no longer looks at them); out[0] has
 * room for every series.
 * Otherwise a checkpoint (m->ck): partial copies only the windows folded into since the previous checkpoint, and a
 * full piece goes to the sink at once and is replaced. out[k] is NULL when memory ran out (the next checkpoint is
 * then full).
 */
static void collect_range(struct dts_merger *m, int64_t lo, int64_t hi, bool close, bool partial,
			  struct dts_closed_minute **out, uint32_t from, uint32_t to)
{
	const int nmin = (int)(hi - lo + 1);

	for (uint32_t i = from; i < to; i++) {
		struct series *s = dir_get(m, i, memory_order_relaxed), *ahead;

		if (i + WALK_AHEAD < to && (ahead = dir_get(m, i + WALK_AHEAD, memory_order_relaxed)) != NULL) {
			__builtin_prefetch(&ahead->type);
			__builtin_prefetch(&ahead->win[lo % NWIN]);
			__builtin_prefetch(&ahead->win[hi % NWIN]);
		}
		/* the name follows the ring, whose length is the type's: half as far ahead, once the header is in */
		if (i + WALK_AHEAD / 2 < to && (ahead = dir_get(m, i + WALK_AHEAD / 2, memory_order_relaxed)) != NULL)
			__builtin_prefetch(ser_name(ahead));
		if (!s)
			continue;
		if (close && s->ext) {
			struct win *dead = &s->win[(lo + NWIN - 1) % NWIN];

			if (dead->minute == lo - 1 && dead->closed)
				win_release(s, dead);
		}
		for (int k = 0; k < nmin; k++) {
			struct win *w = &s->win[(lo + k) % NWIN];

			if (w->minute != lo + k)
				continue;
			if (close)
				w->closed = true;
			else if (partial && !w->ckpt_dirty)
				continue; /* unchanged since the previous checkpoint, which holds it */
			if (!out[k] || !win_has_data(s, w))
				continue;
			if (out[k]->n >= (close ? closed_minute_cap(out[k]) : piece_max(out[k]))) {
				if (close)
					continue; /* cannot happen: room for every series */
				/* a checkpoint piece is full: to the sink (as partial: the rest of the walk is not in it) */
				out[k]->partial = true;
				m->ck.split[k] = true;
				hand_to_sink(out[k], m->cfg.sink.checkpoint, m->cfg.sink.ctx);
				out[k] = closed_minute_new(m, lo + k, true, CKPT_PIECE);
				if (!out[k]) {
					m->ckpt_full = true;
					continue;
				}
			}
			if (collect_one(m, out[k], s, w))
				w->ckpt_dirty = false;
			else if (!close)
				m->ckpt_full = true;
		}
	}
}

/* Hand cm to a sink callback, or release it when it is empty or there is no callback. */
static void hand_to_sink(struct dts_closed_minute *cm, void (*fn)(void *, struct dts_closed_minute *), void *ctx)
{
	if (!cm)
		return;
	if (cm->n == 0 || !fn) {
		dts_closed_minute_release(cm); /* nothing to store: the sink only sees minutes with data */
		return;
	}
	fn(ctx, cm);
}

/* Close minute: copy its windows into a closed minute and hand it to the sink. */
static void close_minute(struct dts_merger *m, int64_t minute)
{
	int64_t t0 = mono_ns();
	struct dts_closed_minute *cm = closed_minute_new(m, minute, false, m->nseries);

	collect_range(m, minute, minute, true, false, &cm, 0, atomic_load_explicit(&m->dir_hw, memory_order_relaxed));
	m->closed_upto = minute + 1;
	DTS__STAT_ADD(m->stats.minutes_closed, 1);
	__atomic_store_n(&m->stats.close_ns_last, (uint64_t)(mono_ns() - t0), __ATOMIC_RELAXED);
	hand_to_sink(cm, m->cfg.sink.minute_closed, m->cfg.sink.ctx);
}

/*
 * Start a checkpoint: a copy of every open minute (in grace, current, next) for the sink's checkpoint callback,
 * made slice by slice (checkpoint_slice) and handed over in pieces of up to CKPT_PIECE records. A piece is partial
 * (earlier checkpoints stay valid for the series it lacks) unless the checkpoint is full and fits in one piece.
 */
static void checkpoint_begin(struct dts_merger *m, int64_t now_s)
{
	struct ckpt_walk *ck = &m->ck;
	int64_t hi = now_s / 60 + 1,
		lo = m->closed_upto > hi - (LIVE_MINUTES - 1) ? m->closed_upto : hi - (LIVE_MINUTES - 1);

	/* partial unless the sink cannot report a lost checkpoint, reports one now, or one could not be copied */
	if (m->cfg.sink.checkpoint_lost && m->cfg.sink.checkpoint_lost(m->cfg.sink.ctx))
		m->ckpt_full = true;
	ck->partial = m->cfg.sink.checkpoint_lost && !m->ckpt_full;
	m->ckpt_full = false;
	ck->lo = lo;
	ck->hi = hi;
	ck->pos = 0;
	ck->hw = atomic_load_explicit(&m->dir_hw, memory_order_relaxed);
	for (int k = 0; k < LIVE_MINUTES; k++) {
		ck->split[k] = false;
		ck->out[k] = NULL;
	}
	for (int k = 0; k <= hi - lo; k++) {
		ck->out[k] = closed_minute_new(m, lo + k, true, m->nseries < CKPT_PIECE ? m->nseries : CKPT_PIECE);
		if (!ck->out[k])
			m->ckpt_full = true;
	}
}

/* Copy the next WALK_SLICE directory positions of the checkpoint; at the end hand the last pieces over. Returns
 * true while positions remain. Merger thread. */
static bool checkpoint_slice(struct dts_merger *m)
{
	struct ckpt_walk *ck = &m->ck;
	const uint32_t end = ck->hw - ck->pos > WALK_SLICE ? ck->pos + WALK_SLICE : ck->hw;

	collect_range(m, ck->lo, ck->hi, false, ck->partial, ck->out, ck->pos, end);
	ck->pos = end;
	if (end < ck->hw)
		return true;
	for (int k = 0; k <= ck->hi - ck->lo; k++) {
		if (ck->out[k])
			ck->out[k]->partial = ck->partial || ck->split[k];
		hand_to_sink(ck->out[k], m->cfg.sink.checkpoint, m->cfg.sink.ctx);
		ck->out[k] = NULL;
	}
	return false;
}

int dts_merger_restore(struct dts_merger *m, const struct dts_closed_minute *cm, int64_t now_ms)
{
	const int64_t now_s = now_ms / 1000;
	char buf[sizeof(struct dts__ident) + 2 * DTS_MAX_USER + 2 * DTS_MAX_NAME + DTS_MAX_TAGS_LEN + 8];
	struct dts__ident *id = (struct dts__ident *)buf;
	int restored = 0;

	if (m->closed_upto == INT64_MIN)
		m->closed_upto = now_s / 60 - 1;
	dts__read_lock();
	for (size_t i = 0; i < cm->n; i++) {
		const struct dts_minute_rec *r = &cm->recs[i];
		struct dts_sample smp = {
			.user = r->user, .process = r->process, .counter = r->counter, .tags = r->tags,
			.user_len = (uint16_t)strlen(r->user), .process_len = (uint16_t)strlen(r->process),
			.counter_len = (uint16_t)strlen(r->counter), .tags_len = (uint16_t)strlen(r->tags),
			.type = r->type,
		};
		struct dts__entry e = { .type = r->type };
		struct dts__table t = { .keys = buf };
		struct series *s;
		struct win *w;

		if ((size_t)smp.user_len + smp.process_len + smp.counter_len + smp.tags_len + sizeof(*id) > sizeof(buf) ||
		    r->type >= DTS_NTYPES)
			continue; /* defensive: records come from this engine, whose bounds are smaller */
		id->user_len = smp.user_len;
		id->process_len = smp.process_len;
		id->counter_len = smp.counter_len;
		id->tags_len = smp.tags_len;
		memcpy(id->bytes, r->user, smp.user_len);
		memcpy(id->bytes + smp.user_len, r->process, smp.process_len);
		memcpy(id->bytes + smp.user_len + smp.process_len, r->counter, smp.counter_len);
		memcpy(id->bytes + smp.user_len + smp.process_len + smp.counter_len, r->tags, smp.tags_len);
		e.hash = dts__sample_hash(m->cores[0], &smp);
		s = series_get(m, &t, &e, 1);
		w = s ? series_win(m, s, cm->minute, now_s / 60) : NULL;
		if (!w)
			continue;
		win_merge(w, &r->agg, cm->minute * DTS_SLOTS_PER_MINUTE);
		if (s->type == DTS_GAUGE && r->agg.count > 0) {
			s->gauge_value = r->agg.lst;
			s->gauge_slot = (int32_t)(cm->minute * DTS_SLOTS_PER_MINUTE);
			s->gauge_known = true;
		}
		if ((win_sk(s, w) && dts_sketch_merge(win_sk(s, w), &r->sketch) != 0) ||
		    (win_set(s, w) && dts_set_merge(win_set(s, w), &r->set) != 0)) {
			DTS__STAT_ADD(m->stats.dropped[DTS_DROP_NOMEM], 1);
			dts__read_unlock();
			return -ENOMEM;
		}
		int64_t seen = cm->minute * 60 < now_s ? cm->minute * 60 : now_s;
		if (seen > s->last_seen_s)
			s->last_seen_s = (uint32_t)seen;
		restored++;
	}
	dts__read_unlock();
	return restored;
}

/* ---- lifecycle ------------------------------------------------------------------------------------------------- */

static struct dts_core *core_new(struct dts_merger *m, unsigned id)
{
	struct dts_core *c = aligned_alloc(DTS__CACHELINE, (sizeof(struct dts_core) + DTS__CACHELINE - 1) &
							      ~(size_t)(DTS__CACHELINE - 1));

	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->dcfg = &m->dcfg;
	c->user = m->user;
	c->user_len = (uint16_t)strlen(m->user);
	c->user_hash = dts_hash64(m->user, c->user_len, DTS_HASH_SEED);
	c->ident_key = m->cfg.ident_key;
	c->tick_ms = m->cfg.tick_ms;
	c->id = id;
	c->ncfg = &m->cfg.native;
	c->user_known = m->cfg.user_known;
	c->user_known_ctx = m->cfg.user_known_ctx;
	dts_auth_cache_init(&c->auth);
	c->replay = dts_native_replay_create(DTS_NATIVE_REPLAY_SLOTS);
	c->nscratch = dts_native_scratch_create();
	if (!c->replay || !c->nscratch) {
		dts_native_replay_destroy(c->replay);
		dts_native_scratch_destroy(c->nscratch);
		free(c);
		return NULL;
	}
	return c;
}

/* The sizes of a table of capacity buckets: every log and arena scales with the buckets (a smaller table takes the
 * same share of each: dts__table_grow). */
static void table_cfg(struct dts__table_cfg *tcfg, uint32_t capacity)
{
	memset(tcfg, 0, sizeof(*tcfg));
	tcfg->capacity = capacity;
	tcfg->keys_bytes = capacity * 48; /* ~96 identity bytes per entry at the 1/2 load mark */
	tcfg->tlog_entries = capacity * 4;
	tcfg->slog_entries = capacity;
	/* Partials: 32 bytes of encodings per bucket (a timer partial's sketch is typically 30-200 bytes, and the table
	 * hands over early when this fills); one process report per 16 buckets (reports of one batch share a record);
	 * 4 bytes of event text per bucket (256 KiB at the default capacity, some 500 errors per core and tick). */
	tcfg->blob_bytes = capacity * 32 > DTS__BLOB_MIN ? capacity * 32 : DTS__BLOB_MIN;
	tcfg->proc_entries = capacity / 16 > DTS__PROC_MIN ? capacity / 16 : DTS__PROC_MIN;
	tcfg->event_bytes = capacity * 4 > DTS__EVENT_MIN ? capacity * 4 : DTS__EVENT_MIN;
}

/* Free the merger's own allocations (no series may be left). Used by create's error path and by destroy. */
static void merger_free(struct dts_merger *m)
{
	for (unsigned i = 0; i < m->npool; i++)
		dts__table_destroy(m->pool[i]);
	for (unsigned i = 0; m->cores && i < m->cfg.cores; i++) {
		if (!m->cores[i])
			continue;
		dts_native_replay_destroy(m->cores[i]->replay);
		dts_native_scratch_destroy(m->cores[i]->nscratch);
		free(m->cores[i]);
	}
	if (m->dir)
		for (uint32_t i = 0; i < m->dir_nchunks; i++)
			free(atomic_load_explicit(&m->dir[i], memory_order_relaxed));
	free(m->dir);
	free(m->dir_free);
	for (uint32_t i = 0; i < m->nslabs; i++)
		dts__big_free(m->slabs[i], SLAB_BYTES);
	free(m->slabs);
	free(m->ser_free);
	for (struct recbuf *b = m->recs_spare, *next; b; b = next) {
		next = b->next;
		dts__big_free(b, b->bytes);
	}
	if (m->recpool)
		recpool_unref(m->recpool); /* closed minutes still in a sink keep it until they are released */
	dts__big_free(m->ix, (m->ix_mask + 1) * sizeof(*m->ix));
	dts__procs_free(m->procs);
	dts_sketch_free(&m->dec_sk);
	dts_set_free(&m->dec_set);
	free(m->pool);
	free(m->cores);
	free(m->growth);
	free(m->fold_map);
	free(m->fold_bits);
	dts__big_free(m->fold_tlog, m->fold_tlog_bytes);
	free(m->secret);
	free(m->default_process);
	free(m->user);
	free(m);
}

/*
 * A secret key for identity hashes. getrandom does not fail for 8 bytes on Linux >= 3.17 once the pool is ready (it
 * waits until then, early in boot); where it does fail, the clock, the process id and an address are mixed instead,
 * which still keeps the key from being known in advance.
 */
static uint64_t draw_ident_key(void)
{
	uint64_t k = 0;
	struct {
		struct timespec rt, mono;
		pid_t pid;
		const void *where;
	} fallback;

	if (getrandom(&k, sizeof(k), 0) == (ssize_t)sizeof(k) && k)
		return k;
	memset(&fallback, 0, sizeof(fallback));
	clock_gettime(CLOCK_REALTIME, &fallback.rt);
	clock_gettime(CLOCK_MONOTONIC, &fallback.mono);
	fallback.pid = getpid();
	fallback.where = &fallback;
	k = dts_hash64(&fallback, sizeof(fallback), DTS_HASH_SEED);
	return k ? k : 1;
}

/*
 * Fault in, now, the index (already sized for n) and the record slabs of n series at DTS_SERIES_RESERVE_BYTES each,
 * kept in slabs[] for ser_alloc to carve in order. 0 or -1 (ENOMEM). At creation.
 */
static int reserve_series(struct dts_merger *m, uint64_t n)
{
	const uint64_t nslabs = (n * DTS_SERIES_RESERVE_BYTES + SLAB_BYTES - 1) / SLAB_BYTES;

	if (dts__big_prefault(m->ix, (m->ix_mask + 1) * sizeof(*m->ix)) != 0)
		return -1;
	for (uint64_t i = 0; i < nslabs; i++) {
		uint8_t *slab = slab_new(m);

		if (!slab || dts__big_prefault(slab, SLAB_BYTES) != 0)
			return -1;
	}
	__atomic_store_n(&m->stats.series_reserved_bytes, nslabs * SLAB_BYTES, __ATOMIC_RELAXED);
	return 0;
}

struct dts_merger *dts_merger_create(const struct dts_merger_cfg *cfg)
{
	const uint32_t room = cfg->table_capacity_max ? cfg->table_capacity_max : cfg->table_capacity; /* largest table */
	struct dts__table_cfg tcfg;
	struct dts_merger *m;
	unsigned per = cfg->tables_per_core;

	if (cfg->cores < 1 || cfg->cores > 64 || cfg->tick_ms < 1 || cfg->grace_s > 60 || per < 2 ||
	    per > DTS__RING_SLOTS || !cfg->user || !*cfg->user || strlen(cfg->user) > DTS_MAX_USER ||
	    cfg->table_capacity < 1024 || (cfg->table_capacity & (cfg->table_capacity - 1)) ||
	    (cfg->table_capacity_max &&
	     (cfg->table_capacity_max < cfg->table_capacity || (cfg->table_capacity_max & (cfg->table_capacity_max - 1)) ||
	      cfg->table_capacity_max > DTS_TABLE_CAPACITY_LIMIT)) ||
	    cfg->table_capacity > DTS_TABLE_CAPACITY_LIMIT || cfg->max_series < 1 ||
	    cfg->max_series > DTS_MAX_SERIES_LIMIT || cfg->series_reserve > cfg->max_series ||
	    cfg->client_period_s < 1 || cfg->client_period_s > 3600 || cfg->native.max_past_s < 0 ||
	    cfg->native.max_future_s < 0 || cfg->native.max_past_s + cfg->native.max_future_s > 86400) {
		errno = EINVAL;
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		goto out_nomem;
	m->cfg = *cfg;
	if (!m->cfg.ident_key)
		m->cfg.ident_key = draw_ident_key();
	m->dcfg = cfg->decode;
	m->user = strdup(cfg->user);
	m->default_process = strndup(cfg->decode.default_process ? cfg->decode.default_process : "default",
				     cfg->decode.default_process ? cfg->decode.default_process_len : 7);
	if (!m->user || !m->default_process)
		goto out_free_merger;
	m->cfg.user = m->user;
	m->dcfg.default_process = m->default_process;
	m->dcfg.default_process_len = (uint16_t)strlen(m->default_process);
	if (cfg->decode.secret && cfg->decode.secret_len) {
		m->secret = malloc(cfg->decode.secret_len);
		if (!m->secret)
			goto out_free_merger;
		memcpy(m->secret, cfg->decode.secret, cfg->decode.secret_len);
		m->dcfg.secret = m->secret;
	} else {
		m->dcfg.secret = NULL;
		m->dcfg.secret_len = 0;
	}
	m->closed_upto = INT64_MIN;
	m->pub_slot = -1;
	m->ckpt_full = true;
	__cds_lfs_init(&m->ser_recycled);
	m->ser_classes = (unsigned)(ser_bytes(DTS_TIMER, 2 * DTS_MAX_USER + 2 * DTS_MAX_NAME + DTS_MAX_TAGS_LEN + 8) /
				    SER_GRAIN); /* the widest ring and ext (timers) and the longest name */
	m->ser_classes++;
	m->ser_free = calloc(m->ser_classes, sizeof(*m->ser_free));
	m->recpool = calloc(1, sizeof(*m->recpool));
	if (m->recpool) {
		atomic_init(&m->recpool->refs, 1);
		__cds_lfs_init(&m->recpool->stack);
	}
	dts_sketch_init(&m->dec_sk);
	dts_set_init(&m->dec_set);
	m->procs = dts__procs_create(&m->cfg, &m->stats);
	/* The index starts with room for the reserve at most half full: it never rehashes while the reserve fills. */
	unsigned ix_bits = IX_MIN_BITS;

	while (((uint64_t)1 << ix_bits) < 2 * cfg->series_reserve)
		ix_bits++;
	m->ix_mask = (1u << ix_bits) - 1;
	m->ix_shift = 64 - ix_bits;
	m->stats.index_slots = (uint64_t)1 << ix_bits;
	m->ix = dts__big_alloc((m->ix_mask + 1) * sizeof(*m->ix));
	m->dir_nchunks = (uint32_t)((cfg->max_series + DIR_CHUNK - 1) / DIR_CHUNK);
	m->dir = calloc(m->dir_nchunks, sizeof(*m->dir));
	m->cores = calloc(cfg->cores, sizeof(*m->cores));
	m->growth = calloc(cfg->cores, sizeof(*m->growth));
	m->pool = calloc((size_t)cfg->cores * per, sizeof(*m->pool));
	/* per bucket of the largest table; only as much as the tables have grown to is touched */
	m->fold_map = calloc(room, sizeof(*m->fold_map));
	m->fold_bits = calloc((room + 63) / 64, sizeof(*m->fold_bits));
	table_cfg(&tcfg, room);
	/* mapped at the largest log's size, resident only as far as the logs folded have filled it */
	m->fold_tlog_bytes = (size_t)tcfg.tlog_entries * sizeof(*m->fold_tlog);
	m->fold_tlog = dts__page_alloc(m->fold_tlog_bytes);
	if (!m->ix || !m->dir || !m->ser_free || !m->recpool || !m->cores || !m->pool || !m->fold_map ||
	    !m->fold_bits || !m->fold_tlog || !m->growth || !m->procs)
		goto out_free_merger;
	if (cfg->series_reserve && reserve_series(m, cfg->series_reserve) != 0)
		goto out_free_merger;

	tcfg.initial = cfg->table_capacity;
	for (unsigned i = 0; i < cfg->cores; i++) {
		struct dts_core *c = core_new(m, i);

		if (!c)
			goto out_free_merger;
		m->cores[i] = c;
		for (unsigned k = 0; k < per; k++) {
			struct dts__table *t = dts__table_create(&tcfg);

			if (!t)
				goto out_free_merger;
			m->pool[m->npool++] = t;
			DTS__STAT_ADD(m->stats.table_buckets, cfg->table_capacity);
			if (k == 0)
				c->active = t;
			else
				dts__ring_push(&c->free, t, 0);
		}
	}
	return m;

out_free_merger:
	merger_free(m);
out_nomem:
	errno = ENOMEM;
	return NULL;
}

int dts_merger_reserve_tables(struct dts_merger *m, unsigned core, uint64_t series)
{
	const unsigned per = m->cfg.tables_per_core;
	uint32_t cap = m->cfg.table_capacity;

	if (core >= m->cfg.cores) {
		errno = EINVAL;
		return -1;
	}
	if (series == 0)
		return 0;
	/* dts__table_prefault takes at most the table's room (table_capacity_max) */
	while (cap < DTS_TABLE_CAPACITY_LIMIT && cap < 2 * series)
		cap *= 2;
	/* the pool holds each core's tables together, in core order (dts_merger_create) */
	for (unsigned k = 0; k < per; k++) {
		size_t n = dts__table_prefault(m->pool[core * per + k], cap);

		if (n == SIZE_MAX) {
			errno = ENOMEM;
			return -1;
		}
		DTS__STAT_ADD(m->stats.table_reserved_bytes, n);
	}
	return 0;
}

struct dts_core *dts_merger_core(struct dts_merger *m, unsigned i)
{
	return i < m->cfg.cores ? m->cores[i] : NULL;
}

/*
 * The capacity a core's tables (or their logs) should have, given that a table of capacity cap, handed over at
 * stamp_ms, filled before its tick: enough for a whole tick at the rate it filled, measured from the core's previous
 * hand-over. A table that lasted a quarter of its tick wants four times its capacity (rounded up to a power of two,
 * at least twice), so a core that starts under a million series reaches its size in a fold or two instead of one
 * doubling per table and fold, dropping values meanwhile. Twice, when there was no previous hand-over to measure
 * from. Up to table_capacity_max.
 */
static uint32_t growth_want(const struct dts_merger *m, const struct core_growth *g, uint64_t cap, int64_t stamp_ms)
{
	const uint64_t room = m->cfg.table_capacity_max;
	const int64_t lasted = stamp_ms > g->last_stamp_ms ? stamp_ms - g->last_stamp_ms : 1;
	uint64_t want = cap * 2;

	while (g->last_stamp_ms && want < room && want * (uint64_t)lasted < cap * m->cfg.tick_ms)
		want *= 2;
	return want > room ? (uint32_t)room : (uint32_t)want;
}

/*
 * Fold every handed-over table, oldest hand-over first across all cores, so that order-sensitive aggregates (gauges,
 * first/last values) see the cores' data in the order it was handed over. Bounded by the pool size. A table comes
 * back grown to what its core's tables want (growth_want), whether it was the one that filled or not: more buckets
 * when series filled it (entries, identities, partials), bigger timer and set logs alone when values did - at a few
 * thousand series with many timer values a tick, more buckets would only spread the same entries over more pages
 * (docs/performance.md, "Session 8: logs that grow apart from the buckets").
 */
static unsigned fold_pending(struct dts_merger *m, int64_t now_ms)
{
	unsigned n = 0;
	int64_t t0 = mono_ns(), oldest = now_ms;

	for (;;) {
		struct dts_core *c = NULL;
		struct core_growth *g = NULL;
		struct dts__table *t;
		int64_t best = INT64_MAX, stamp = 0;
		uint32_t before;

		for (unsigned i = 0; i < m->cfg.cores; i++) {
			int64_t st = dts__ring_peek_stamp(&m->cores[i]->full);

			if (st < best) {
				best = st;
				c = m->cores[i];
				g = &m->growth[i];
			}
		}
		if (!c)
			break;
		t = dts__ring_pop(&c->full, &stamp);
		fold_table(m, t, now_ms / 1000);
		/* filled before its tick: by series, the core's tables want more buckets; by values, bigger logs */
		if (dts__table_entries_full(t) && t->mask + 1 < m->cfg.table_capacity_max) {
			uint32_t want = growth_want(m, g, (uint64_t)t->mask + 1, stamp);

			g->want = want > g->want ? want : g->want;
		}
		if (dts__table_logs_full(t) && t->log_capacity < m->cfg.table_capacity_max) {
			uint32_t want = growth_want(m, g, t->log_capacity, stamp);

			g->want_logs = want > g->want_logs ? want : g->want_logs;
		}
		g->last_stamp_ms = stamp;
		dts__table_reset(t);
		before = t->mask + 1;
		if (g->want > before && dts__table_grow(t, g->want)) {
			DTS__STAT_ADD(m->stats.tables_grown, 1);
			DTS__STAT_ADD(m->stats.table_buckets, g->want - before);
		}
		if (g->want_logs > t->log_capacity && dts__table_grow_logs(t, g->want_logs))
			DTS__STAT_ADD(m->stats.table_logs_grown, 1);
		dts__ring_push(&c->free, t, now_ms);
		oldest = stamp < oldest ? stamp : oldest;
		n++;
	}
	if (n) {
		__atomic_store_n(&m->stats.merge_lag_ms, (uint64_t)(now_ms - oldest), __ATOMIC_RELAXED);
		DTS__STAT_ADD(m->stats.fold_ns_total, (uint64_t)(mono_ns() - t0));
	}
	return n;
}

/*
 * Close every minute two or more behind the clock: past its deadline whatever grace_s (at most 60) is. Before a fold,
 * whose data for the open minute needs the window position such a minute still holds (two windows per series): with
 * grace_s = 60, or a merger that did not step for 60 - grace_s seconds, it would otherwise be dropped as future. Data
 * of the closed minute in the tables folded next goes to the sink as a late part, as after any close. Merger thread.
 */
static void close_overdue(struct dts_merger *m, int64_t now_s)
{
	while (m->closed_upto != INT64_MIN && m->closed_upto <= now_s / 60 - 2)
		close_minute(m, m->closed_upto);
}

unsigned dts_merger_step(struct dts_merger *m, int64_t now_ms)
{
	const int64_t now_s = now_ms / 1000;
	const int64_t cur_slot = now_s / DTS_SLOT_SECONDS;
	unsigned n;

	if (m->closed_upto == INT64_MIN)
		m->closed_upto = now_s / 60 - 1;
	close_overdue(m, now_s);
	n = fold_pending(m, now_ms);
	while ((m->closed_upto + 1) * 60 + (int64_t)m->cfg.grace_s <= now_s)
		close_minute(m, m->closed_upto);
	/* The walks below take a slice of the directory at a time and fold what the cores handed over in between. */
	if (cur_slot != m->pub_slot) {
		const int64_t t0 = mono_ns();

		publish_begin(m, cur_slot, now_s);
		while (publish_slice(m))
			n += fold_pending(m, now_ms);
		m->pub_slot = cur_slot;
		__atomic_store_n(&m->stats.publish_ns_last, (uint64_t)(mono_ns() - t0), __ATOMIC_RELAXED);
	}
	dts__procs_step(m->procs, now_ms, &m->cfg.sink, false);
	if (m->cfg.checkpoint_ms && m->cfg.sink.checkpoint && now_ms >= m->next_checkpoint_ms) {
		const int64_t t0 = mono_ns();

		checkpoint_begin(m, now_s);
		while (checkpoint_slice(m))
			n += fold_pending(m, now_ms);
		m->next_checkpoint_ms = now_ms + m->cfg.checkpoint_ms;
		__atomic_store_n(&m->stats.checkpoint_ns_last, (uint64_t)(mono_ns() - t0), __ATOMIC_RELAXED);
	}
	return n;
}

void dts_merger_destroy(struct dts_merger *m, int64_t now_ms)
{
	int64_t now_s = now_ms / 1000, last;

	if (!m)
		return;
	/* The cores have stopped: fold what they handed over and their active tables. */
	close_overdue(m, now_s);
	fold_pending(m, now_ms);
	if (m->closed_upto == INT64_MIN)
		m->closed_upto = now_s / 60 - 1;
	for (unsigned i = 0; i < m->cfg.cores; i++) {
		fold_table(m, m->cores[i]->active, now_s);
		dts__table_reset(m->cores[i]->active);
	}
	/* Close every minute that holds data, the open ones included (shutdown closes the open minute). */
	last = now_s / 60 + 1;
	while (m->closed_upto <= last)
		close_minute(m, m->closed_upto);
	/* Hand the last events and every unsaved process state to the sink. */
	dts__procs_step(m->procs, now_ms, &m->cfg.sink, true);

	/*
	 * Free every series at once rather than retiring each (an index deletion and a call_rcu per series: 0.6-1.5 s
	 * of CPU at a million series while the store writes the last minutes). Readers find series only through the
	 * directory, up to dir_hw: with dir_hw 0 no new walk sees one, and after one grace period no walk that
	 * started before holds one. The index and the process states' references go with the merger.
	 */
	const uint32_t hw = atomic_load_explicit(&m->dir_hw, memory_order_relaxed);

	atomic_store_explicit(&m->dir_hw, 0, memory_order_release);
	urcu_memb_synchronize_rcu();
	dts__reclaim_begin(); /* the readers' critical sections happen before the frees (rcu.h) */
	for (uint32_t i = 0; i < hw; i++) {
		struct series *s = dir_get(m, i, memory_order_relaxed);

		if (s)
			series_free_ext(s);
	}
	dts__procs_clear(m->procs);
	urcu_memb_barrier(); /* every callback queued before (series retired earlier, process states) has run */
	merger_free(m);
}

void dts_merger_stats_read(const struct dts_merger *m, struct dts_merger_stats *out)
{
	const uint64_t *src = (const uint64_t *)&m->stats;
	uint64_t *dst = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

size_t dts_merger_read_current(struct dts_merger *m, const char *user, dts_series_visit_fn fn, void *ctx)
{
	size_t n = 0;

	dts__read_lock();
	const int64_t pub_as_of = atomic_load_explicit(&m->pub_as_of_ms, memory_order_acquire);
	const uint32_t hw = atomic_load_explicit(&m->dir_hw, memory_order_acquire);

	for (uint32_t i = 0; i < hw; i++) {
		struct series *s = dir_get(m, i, memory_order_acquire);
		struct dts_series_view v;
		struct dts_current cv;

		if (!s || (user && strcmp(ser_user(s), user) != 0))
			continue;
		v.user = ser_user(s);
		v.process = ser_process(s);
		v.counter = ser_counter(s);
		v.tags = ser_tags(s);
		v.type = s->type;
		v.cur = NULL;
		if (pub_read(s, &cv)) {
			/* an idle series' state is not republished (pub_still_valid): it holds as of the latest one */
			if (cv.count == 0 && cv.last_seen_s + IDLE_S <= cv.as_of_ms / 1000 && pub_as_of > cv.as_of_ms)
				cv.as_of_ms = pub_as_of;
			v.cur = &cv;
		}
		n++;
		if (fn(ctx, &v))
			break;
	}
	dts__read_unlock();
	return n;
}

size_t dts_merger_read_processes(struct dts_merger *m, const char *user, dts_process_visit_fn fn, void *ctx)
{
	return dts__procs_read(m->procs, user, fn, ctx);
}

size_t dts_merger_read_events(struct dts_merger *m, const char *user, uint64_t after_seq, dts_event_visit_fn fn,
			      void *ctx)
{
	return dts__events_read(m->procs, user, after_seq, fn, ctx);
}

int dts_merger_restore_process(struct dts_merger *m, const struct dts_process *p)
{
	return dts__procs_restore(m->procs, p);
}

int dts_merger_restore_event(struct dts_merger *m, const struct dts_event *ev)
{
	return dts__events_restore(m->procs, ev);
}
