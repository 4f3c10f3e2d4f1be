/*
 * table.h - the per-core aggregation table (engine-internal).
 *
 * One table collects everything one RX core decoded during one tick: an open-addressing hash table of
 * (series, 5-second slot) -> scalar partial aggregate, an arena holding each series' identity bytes, and append-only
 * logs for what cannot be summed in place: timer sketch keys and set member hashes (statsd lines), sketch and set
 * encodings of partial aggregates (the blob arena: the merger decodes and merges them exactly), process reports and
 * errors/warnings with their text (native datagrams, PUT /agg). Nothing in it is shared while the
 * core writes it: the core owns the table until it hands it over (core.c), then the merger owns it until it is reset
 * and handed back. Hand-over goes through a release/acquire pair on the rings, which orders every write below.
 *
 * Memory is allocated once at creation (no malloc afterwards); every structure has a fixed capacity, and when one
 * fills the table asks for an early hand-over (dts__table_wants_handover). Filling up completely is a counted drop.
 *
 * Layout of one entry (64 bytes, one cache line; entries are 64-byte aligned):
 *   0  hash      u64  series hash (0 = empty bucket)
 *   8  key_off   u32  offset of the identity record in the key arena
 *  12  slot_rel  i16  slot - table.base_slot (slot = unix seconds / DTS_SLOT_SECONDS)
 *  14  type      u8   enum dts_type
 *  15  flags     u8   DTS__ENT_*
 *  16  agg       struct dts_agg (sum count min max fst lst, 6 x f64)
 */
#ifndef DTS_TABLE_H
#define DTS_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dts/native.h"
#include "dts/sketch.h"
#include "dts/types.h"

#define DTS__ENT_GAUGE_ABS 0x01 /* gauge: an absolute value was seen in this entry (lst is absolute) */
#define DTS__ENT_GAUGE_PENDING 0x02 /* gauge: deltas seen before any absolute value (lst holds their sum) */

struct dts__entry {
	uint64_t hash;
	uint32_t key_off;
	int16_t slot_rel;
	uint8_t type;
	uint8_t flags;
	struct dts_agg agg;
};

/* Identity record in the key arena (8-byte aligned): lengths then the bytes user|process|counter|tags, unseparated. */
struct dts__ident {
	uint16_t user_len;
	uint16_t process_len;
	uint16_t counter_len;
	uint16_t tags_len;
	char bytes[];
};

/* One timer value: its entry, its level-0 sketch key (INT16_MIN = zero bin), sign, weight. */
struct dts__tlog {
	uint32_t entry;
	int16_t key;
	uint8_t negative;
	uint8_t pad;
	float weight;
};

/* One set member: its entry and member hash. */
struct dts__slog {
	uint32_t entry;
	uint32_t pad;
	uint64_t member;
};

/*
 * A sketch (timer) or set encoding of a partial aggregate, already validated (dts_native_open or the encoder), to be
 * merged into its entry's window. Records are 8-byte aligned in the blob arena: header, then len bytes.
 */
struct dts__blob {
	uint32_t entry; /* bucket index of the entry */
	uint16_t len;
	uint8_t type; /* DTS_TIMER or DTS_SET */
	uint8_t pad;
	uint8_t bytes[];
};

#define DTS__PROC_UPTIME 0x01 /* stats.uptime_s is valid */
#define DTS__PROC_STATS 0x02 /* every field of stats is valid (a native report) */

/* A process report: a heartbeat, with an uptime or full statistics. Identity (user, process; counter and tags
 * empty) in the key arena. */
struct dts__proc {
	uint32_t ident_off;
	uint8_t flags; /* DTS__PROC_* */
	uint64_t instance; /* native client instance, 0 unknown */
	int64_t heard_ms; /* receive time */
	int64_t slot_s; /* the report's slot (native) or receive time: orders reports of one instance */
	struct dts_native_stats stats;
};

/* An error or warning. 8-byte aligned records in the event arena: header, then user|process|text. */
struct dts__event {
	int64_t ts_ms;
	int64_t heard_ms;
	uint16_t user_len;
	uint16_t process_len;
	uint16_t text_len;
	uint8_t kind;
	uint8_t pad;
	char bytes[];
};

struct dts__table {
	struct dts__entry *entries; /* mask + 1 buckets in use, room for cfg.capacity */
	uint32_t *used; /* indices of occupied buckets, in insertion order (n_used of them; the merger reorders them) */
	uint32_t *gauges; /* the buckets of gauge entries among them, in insertion order (n_gauges of them) */
	char *keys; /* identity arena */
	struct dts__tlog *tlog;
	struct dts__slog *slog;
	uint8_t *blob; /* struct dts__blob records */
	struct dts__proc *proc;
	uint8_t *ev; /* struct dts__event records */
	uint32_t mask; /* capacity - 1 */
	uint32_t log_capacity; /* the capacity the timer and set logs are sized for: at least mask + 1 */
	uint32_t shift; /* 32 - log2(capacity): a home bucket is top bits (dts__table_bucket_at) */
	uint32_t max_used; /* hand over beyond this many entries (load factor bound) */
	uint32_t n_used;
	uint32_t n_gauges;
	uint32_t keys_cap, keys_used;
	uint32_t tlog_cap, n_tlog;
	uint32_t slog_cap, n_slog;
	uint32_t blob_cap, blob_used, n_blob;
	uint32_t proc_cap, n_proc;
	uint32_t ev_cap, ev_used, n_ev;
	uint32_t base_slot; /* slot_rel is relative to this */
	bool has_base;
	struct dts__table_cfg_sizes {
		uint32_t capacity, keys_bytes, tlog_entries, slog_entries, blob_bytes, proc_entries, event_bytes;
	} room; /* what is allocated: the sizes at the largest capacity */
};

/* Sizes at the largest capacity. Every structure is allocated at its largest size up front but touched only as far
 * as the current capacity reaches (the memory of a larger capacity is mapped, not resident, until a table grows). */
struct dts__table_cfg {
	uint32_t capacity; /* buckets, power of two: the largest the table can grow to */
	uint32_t keys_bytes;
	uint32_t tlog_entries;
	uint32_t slog_entries;
	uint32_t blob_bytes; /* 0: no partial encodings (timer and set partials are dropped), else >= DTS__BLOB_MIN */
	uint32_t proc_entries; /* 0: no process reports, else >= DTS__PROC_MIN */
	uint32_t event_bytes; /* 0: no events, else >= DTS__EVENT_MIN */
	uint32_t initial; /* buckets at creation, a power of two in 64..capacity (0: capacity) */
};

/* Early hand-over marks of the partial-aggregate logs: room for a few whole datagrams' worth (a native datagram's
 * encodings total at most DTS_NATIVE_MAX_DATAGRAM bytes, its events at most that plus 8 headers' padding each). */
#define DTS__BLOB_MARK (4 * DTS_NATIVE_MAX_DATAGRAM + 1024)
#define DTS__PROC_MARK 64
#define DTS__EVENT_MARK (4 * DTS_NATIVE_MAX_DATAGRAM + 1024)
#define DTS__BLOB_MIN (4 * DTS__BLOB_MARK)
#define DTS__PROC_MIN (4 * DTS__PROC_MARK)
#define DTS__EVENT_MIN (4 * DTS__EVENT_MARK)

/* Allocate a table. Returns NULL with errno set (EINVAL for a capacity that is not a power of two, ENOMEM). */
struct dts__table *dts__table_create(const struct dts__table_cfg *cfg);
void dts__table_destroy(struct dts__table *t);

/* Empty the table (touches only used buckets). Owner only. */
void dts__table_reset(struct dts__table *t);

/* Give an empty table capacity buckets (a power of two from its current capacity up to its cfg.capacity) and every
 * log and arena the same share of its room (the timer and set logs at least: they may have grown further). Returns
 * false, changing nothing, outside that range or when not empty. Owner only. */
bool dts__table_grow(struct dts__table *t, uint32_t capacity);

/*
 * Fault in, now, what the table touches as it fills at capacity buckets (at most its cfg.capacity): the buckets, the
 * lists of used buckets and of gauges, and the identity arena's share; not the timer and set logs, which fill with
 * values, nor the partials' arenas. The capacity is unchanged (dts__table_grow later costs no fault up to there).
 * Returns the bytes faulted in, or SIZE_MAX (errno ENOMEM) when the system could not provide them; the table stays
 * usable either way. Only on a table not in use yet: where the kernel cannot populate, every page is written with a
 * zero. Slow (the kernel zeroes every page; see bigmem.h). Owner only.
 */
size_t dts__table_prefault(struct dts__table *t, uint32_t capacity);

/* Give an empty table's timer and set logs the share of their room of a table of capacity buckets (a power of two
 * above its log_capacity, up to its cfg.capacity), its buckets unchanged: values, not series, filled them. Returns
 * false, changing nothing, outside that range or when not empty. Owner only. */
bool dts__table_grow_logs(struct dts__table *t, uint32_t capacity);

/* Room kept free in a log or arena of cap units after its early hand-over mark: a sixteenth of it, at least lo. A core
 * ticks once per receive burst, and a burst of 64 packed datagrams of short timer lines carries ~7,000 values: with
 * the default table's 262,144-entry timer log that fits in the 16,384 kept free, where a fixed 1,024 let the log
 * overflow (values dropped as table_full) while a clean table was waiting. */
static inline uint32_t dts__table_margin(uint32_t cap, uint32_t lo)
{
	return cap / 16 > lo ? cap / 16 : lo;
}

/* True when the timer or the set log is past its early hand-over mark (values filled the table, not series). */
static inline bool dts__table_logs_full(const struct dts__table *t)
{
	return t->n_tlog + dts__table_margin(t->tlog_cap, 1024) > t->tlog_cap ||
	       t->n_slog + dts__table_margin(t->slog_cap, 256) > t->slog_cap;
}

/* True when the buckets or what scales with them (identities, partials, reports, events) are past their early
 * hand-over mark. */
static inline bool dts__table_entries_full(const struct dts__table *t)
{
	return t->n_used >= t->max_used || t->keys_used + dts__table_margin(t->keys_cap, 1024) > t->keys_cap ||
	       (t->blob_cap && t->blob_used + DTS__BLOB_MARK > t->blob_cap) ||
	       (t->proc_cap && t->n_proc + DTS__PROC_MARK > t->proc_cap) ||
	       (t->ev_cap && t->ev_used + DTS__EVENT_MARK > t->ev_cap);
}

/* True when one of the capacities is past its early hand-over mark. */
static inline bool dts__table_wants_handover(const struct dts__table *t)
{
	return dts__table_entries_full(t) || dts__table_logs_full(t);
}

/* True when the table holds nothing for the merger (no entry, no process report, no event). */
static inline bool dts__table_empty(const struct dts__table *t)
{
	return t->n_used == 0 && t->n_proc == 0 && t->n_ev == 0;
}

static inline const struct dts__ident *dts__table_ident(const struct dts__table *t, const struct dts__entry *e)
{
	return (const struct dts__ident *)(t->keys + e->key_off);
}

/* The home bucket of (hash, slot). dts__table_bucket_at takes dts__slot_mix(slot), computed once for many lines. */
static inline uint64_t dts__slot_mix(uint32_t slot)
{
	return (uint64_t)slot * 0x9e3779b1u;
}

/*
 * The top bits of the hash, XORed with the slot's mix: the merger's index also homes a series at the top bits of its
 * hash (merger.c, ix_home), so folding a table in bucket order walks the index in order too, block by block (an XOR
 * with one slot's mix only permutes aligned blocks of buckets). The XOR keeps one series' slots apart.
 */
static inline uint32_t dts__table_bucket_at(const struct dts__table *t, uint64_t hash, uint64_t slot_mix)
{
	return ((uint32_t)(hash >> 32) ^ (uint32_t)slot_mix) >> t->shift;
}

static inline uint32_t dts__table_bucket(const struct dts__table *t, uint64_t hash, uint32_t slot)
{
	return dts__table_bucket_at(t, hash, dts__slot_mix(slot));
}

#endif /* DTS_TABLE_H */
