/*
 * engine_internal.h - structures shared by core.c (RX side), merger.c and procs.c (merger side).
 *
 * Hand-over protocol between core i and the merger (two single-producer single-consumer rings per core):
 *   full: written by the core (head), read by the merger (tail)   - tables waiting to be folded
 *   free: written by the merger (head), read by the core (tail)   - clean tables
 * A table is in exactly one place at a time: the core's active pointer, one ring, or the merger's hands. The
 * release store of a ring's head publishes every write made to the table before it; the consumer's acquire load of
 * head makes them visible. Ring capacity >= tables per core, so a push can never fail.
 */
#ifndef DTS_ENGINE_INTERNAL_H
#define DTS_ENGINE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dts/engine.h"
#include "table.h"

#define DTS__RING_SLOTS 16 /* power of two, >= max tables per core */
#define DTS__CACHELINE 64

struct dts__ring {
	_Alignas(DTS__CACHELINE) _Atomic uint32_t head; /* producer */
	_Alignas(DTS__CACHELINE) _Atomic uint32_t tail; /* consumer */
	struct dts__table *slot[DTS__RING_SLOTS];
	int64_t stamp_ms[DTS__RING_SLOTS]; /* when the producer pushed (merge-lag accounting) */
};

/* Producer side. Returns false when full (cannot happen when capacity >= pool size). */
static inline bool dts__ring_push(struct dts__ring *r, struct dts__table *t, int64_t now_ms)
{
	uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint32_t tl = atomic_load_explicit(&r->tail, memory_order_acquire);

	if (h - tl == DTS__RING_SLOTS)
		return false;
	r->slot[h & (DTS__RING_SLOTS - 1)] = t;
	r->stamp_ms[h & (DTS__RING_SLOTS - 1)] = now_ms;
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
	return true;
}

/* Consumer side: the push time of the oldest entry, or INT64_MAX when empty. */
static inline int64_t dts__ring_peek_stamp(struct dts__ring *r)
{
	uint32_t tl = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t h = atomic_load_explicit(&r->head, memory_order_acquire);

	return h == tl ? INT64_MAX : r->stamp_ms[tl & (DTS__RING_SLOTS - 1)];
}

/* Consumer side. Returns NULL when empty. */
static inline struct dts__table *dts__ring_pop(struct dts__ring *r, int64_t *stamp_ms)
{
	uint32_t tl = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t h = atomic_load_explicit(&r->head, memory_order_acquire);
	struct dts__table *t;

	if (h == tl)
		return NULL;
	t = r->slot[tl & (DTS__RING_SLOTS - 1)];
	if (stamp_ms)
		*stamp_ms = r->stamp_ms[tl & (DTS__RING_SLOTS - 1)];
	atomic_store_explicit(&r->tail, tl + 1, memory_order_release);
	return t;
}

/* Single-writer counter update: a relaxed load and store (plain moves on x86), race-free for relaxed readers. */
#define DTS__STAT_ADD(field, n) __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), \
						 __ATOMIC_RELAXED)

/*
 * Per-RX-core state. Cache-line aligned; everything above `rings` is written only by the owning core.
 */
struct dts_core {
	_Alignas(DTS__CACHELINE) struct dts__table *active;
	const struct dts_decode_cfg *dcfg; /* read-only, the merger's copy */
	uint64_t user_hash; /* hash of the listener's user */
	uint64_t ident_key; /* the merger's secret key of identity hashes (dts_merger_cfg.ident_key) */
	int64_t now_s; /* receive clock of the datagram being ingested (set by each dts_core_ingest* entry point) */
	const char *user;
	uint16_t user_len;
	bool flush_req;
	bool deferring; /* a hand-over is due but no clean table is free */
	int64_t next_tick_ms;
	unsigned tick_ms;
	unsigned id;
	const struct dts_native_cfg *ncfg; /* read-only, the merger's copy */
	bool (*user_known)(void *ctx, const char *user, size_t len); /* the merger cfg's (DaTtSs lines), may be NULL */
	void *user_known_ctx;
	struct dts_native_replay *replay; /* this core's replay window of native datagrams (owned by the core) */
	struct dts_native_scratch *nscratch; /* decode scratch of native datagrams (owned by the core) */
	struct dts_core_stats stats; /* relaxed single-writer counters */
	struct dts_auth_cache auth;
	struct dts_scratch scratch[DTS_INGEST_BATCH];
	struct dts__ring full;
	struct dts__ring free;
};

/* Identity hash of a decoded sample for the given listener user hash (see core.c). */
uint64_t dts__sample_hash(const struct dts_core *c, const struct dts_sample *s);

/*
 * procs.c: the merger's process states and events (docs/architecture.md "Processes and events"). Every function runs
 * on the merger thread (a registered RCU thread) except the readers in engine.h.
 */
struct dts__procs;
struct dts__pstate; /* the state of one (user, process) */

/* Returns NULL (errno ENOMEM). cfg and stats must outlive it; stats is the merger's (procs.c writes its fields). */
struct dts__procs *dts__procs_create(const struct dts_merger_cfg *cfg, struct dts_merger_stats *stats);

/* The state of (user, process), created when missing (published at the next step). NULL when out of memory.
 * Caller holds the RCU read side. */
struct dts__pstate *dts__procs_get(struct dts__procs *p, const char *user, size_t user_len, const char *process,
				   size_t process_len);

/* Series that point at a state keep it from expiring: +1 when a series takes the pointer, -1 when it is deleted. */
void dts__pstate_ref(struct dts__pstate *ps, int delta);

/* Data of the process was heard at heard_ms (statsd-only processes are "heard" through their data). */
void dts__pstate_data(struct dts__procs *p, struct dts__pstate *ps, int64_t heard_ms);

/* Take a handed-over table's process reports and events (in table order). Takes the RCU read side itself. */
void dts__procs_fold(struct dts__procs *p, const struct dts__table *t);

/* Re-evaluate online states (once per second), publish changed states, expire forgotten processes, and hand what
 * changed to sink->events. final: hand every unsaved state over (shutdown). */
void dts__procs_step(struct dts__procs *p, int64_t now_ms, const struct dts_sink *sink, bool final);

/* Shutdown, step 1: unpublish every state and event ring (freed after a grace period). Step 2, after rcu_barrier:
 * dts__procs_free. dts__procs_free alone is enough for an object that never published anything. */
void dts__procs_clear(struct dts__procs *p);
void dts__procs_free(struct dts__procs *p);

size_t dts__procs_read(struct dts__procs *p, const char *user, dts_process_visit_fn fn, void *ctx);
size_t dts__events_read(struct dts__procs *p, const char *user, uint64_t after_seq, dts_event_visit_fn fn, void *ctx);
int dts__procs_restore(struct dts__procs *p, const struct dts_process *st);
int dts__events_restore(struct dts__procs *p, const struct dts_event *ev);

#endif /* DTS_ENGINE_INTERNAL_H */
