/*
 * engine.h - the aggregation engine: RX cores, the merger, the global minute windows and the current state.
 *
 *   RX core i   dts_core_ingest(core i, datagram)  -> decode -> core i's table    (single writer; no locks, no atomics
 *               dts_core_tick(core i, now)          hand the table over when the tick elapsed   on the per-line path,
 *                                                   and take a clean one, never waiting          no malloc, no I/O)
 *   merger      dts_merger_step(now)                fold handed-over tables into the series map, roll 5-second slots,
 *                                                   publish current state (RCU), close minutes into the sink
 *   readers     dts_merger_read_current(...)        under RCU read side: never block the merger or the cores
 *
 * Why RX cores never touch RCU data: a core only writes its own table and pushes/pops two single-producer
 * single-consumer rings (one release store per hand-over). It needs no read-side critical section, so it never
 * holds back a grace period, and the merger never waits for it.
 *
 * The engine starts no threads and does no I/O: the daemon (server/) or a DPDK lcore owns the loops and calls these
 * functions; tests drive them with a fake clock.
 */
#ifndef DTS_ENGINE_H
#define DTS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dts/decode.h"
#include "dts/set.h"
#include "dts/sketch.h"
#include "dts/types.h"

/* Why samples or tables were dropped (not rejected: these were valid). Append-only; indices of counter arrays. */
enum dts_drop {
	DTS_DROP_TABLE_FULL = 0, /* core's table full and no clean table to switch to */
	DTS_DROP_LATE, /* data for a minute already closed */
	DTS_DROP_FUTURE, /* data for a minute beyond the open windows */
	DTS_DROP_NOMEM, /* merger could not allocate (series, sketch bins) */
	DTS_DROP_SERIES_LIMIT, /* more live series than max_series */
};
#define DTS_DROP_COUNT 5
const char *dts_drop_name(enum dts_drop d);

/*
 * Per-core counters. Written only by the owning core with relaxed atomic stores (plain moves on x86), read by anyone
 * with relaxed loads; each counter is monotonic. Summed across cores by the reader.
 */
struct dts_core_stats {
	uint64_t packets; /* datagrams (or stream chunks) ingested */
	uint64_t bytes;
	uint64_t lines; /* non-blank lines seen */
	uint64_t samples; /* values aggregated */
	uint64_t statsd_lines; /* lines decoded as statsd */
	uint64_t dattss_lines; /* lines decoded as DaTtSs */
	uint64_t handovers; /* tables handed to the merger */
	uint64_t handover_deferred; /* tick elapsed but no clean table was free yet (the core kept its table) */
	uint64_t rejected[DTS_REJ_COUNT];
	uint64_t dropped[DTS_DROP_COUNT];
};

/* Merger-side counters: written by the merger thread only (relaxed stores), read by anyone. */
struct dts_merger_stats {
	uint64_t tables_folded;
	uint64_t entries_folded;
	uint64_t minutes_closed;
	uint64_t series_live; /* gauge: series in the map */
	uint64_t series_created;
	uint64_t series_expired;
	uint64_t merge_lag_ms; /* gauge: age of the oldest table folded in the last step */
	uint64_t fold_ns_total; /* time spent folding, for CPU accounting */
	uint64_t close_ns_last; /* duration of the last minute close */
	uint64_t late_forwarded; /* entries for already closed minutes handed to the sink to merge into the store */
	uint64_t dropped[DTS_DROP_COUNT];
};

/*
 * A closed minute handed to the sink: one record per series with data in that minute. Records and identity strings
 * are owned by the closed minute; the sink must call dts_closed_minute_release() exactly once when it is done (from
 * any registered RCU thread or none); memory is freed after an RCU grace period.
 */
struct dts_minute_rec {
	const char *user, *process, *counter, *tags; /* NUL-terminated, owned by the closed minute */
	uint8_t type; /* enum dts_type */
	struct dts_agg agg;
	struct dts_sketch sketch; /* timers; empty otherwise */
	struct dts_set set; /* sets; empty otherwise */
};

struct dts_closed_minute {
	int64_t minute; /* unix seconds / 60 */
	bool open; /* true for a checkpoint: a copy of a minute that is still open (more data may come) */
	bool late; /* true for data that arrived after its minute closed: merge it into the stored minute */
	size_t n;
	struct dts_minute_rec *recs;
	void *arena; /* private: when not NULL, the records' identity strings live in these chunks; when NULL, each
		      * record's user is its own allocation holding user, process, counter and tags (hand-built minutes) */
};

void dts_closed_minute_release(struct dts_closed_minute *cm);

/*
 * Where closed minutes go. Both callbacks run on the merger thread, take ownership of cm, and must not block for long
 * (queue the work elsewhere).
 *   minute_closed: the final aggregates of minute cm->minute (only minutes with data are handed over); or, with
 *                  cm->late set, data that arrived after that minute closed: the store must merge it into the
 *                  minute it already holds (a minute can be handed over once plus any number of late parts).
 *   checkpoint:    optional; every cfg.checkpoint_ms, a copy of each open minute window with data (cm->open is
 *                  true). A store that keeps the latest checkpoint of each minute can give it back through
 *                  dts_merger_restore after a crash, so a kill -9 loses at most one checkpoint interval.
 */
struct dts_sink {
	void (*minute_closed)(void *ctx, struct dts_closed_minute *cm);
	void (*checkpoint)(void *ctx, struct dts_closed_minute *cm);
	void *ctx;
};

struct dts_merger_cfg {
	unsigned cores; /* RX cores that will ingest (1..64) */
	struct dts_decode_cfg decode; /* copied; the secret bytes are copied too */
	const char *user; /* the listener's user for statsd lines ("default") */
	unsigned tick_ms; /* hand-over period of each core */
	unsigned grace_s; /* close minute M at (M + 1) * 60 + grace_s; 0..60 */
	uint32_t table_capacity; /* buckets per core table (power of two) */
	uint32_t tables_per_core; /* tables in each core's pool (>= 2) */
	uint64_t max_series; /* live series bound (memory bound); new series beyond it are dropped and counted */
	unsigned expire_s; /* a series without data for this long leaves the map (and the current state) */
	unsigned checkpoint_ms; /* period of sink.checkpoint calls; 0 = no checkpoints */
	struct dts_sink sink; /* may have a NULL callback: closed minutes are then released at once */
};

/* Documented defaults: 1 core, tick 1000 ms, grace 10 s, 2^16 buckets, 3 tables per core, 4M series, expiry 600 s. */
void dts_merger_cfg_defaults(struct dts_merger_cfg *cfg);

struct dts_merger;
struct dts_core;

/*
 * Create the merger, its series map and every core's table pool. Returns NULL with errno set (EINVAL for a bad config,
 * ENOMEM). The calling thread must be a registered RCU thread before calling dts_merger_step or the readers (see
 * dts_rcu_register_thread).
 */
struct dts_merger *dts_merger_create(const struct dts_merger_cfg *cfg);

/*
 * Destroy: fold what the cores handed over, close every open minute into the sink, free everything. The cores must
 * have stopped calling into the engine. Call from the merger thread.
 */
void dts_merger_destroy(struct dts_merger *m, int64_t now_ms);

/* The handle of RX core i (0 <= i < cfg.cores). Owned by the merger; valid until dts_merger_destroy. */
struct dts_core *dts_merger_core(struct dts_merger *m, unsigned i);

/*
 * Decode one datagram (lines separated by '\n', last line may lack it) into core's table. now_s is the receive time
 * (unix seconds). user/user_len: the listener's user for statsd lines (NULL = the merger's default user).
 * Returns the number of samples aggregated. Malformed lines are counted by reason and skipped. RX core only; never
 * blocks; bounded work (O(len)).
 */
unsigned dts_core_ingest(struct dts_core *c, const char *buf, size_t len, int64_t now_s);

/*
 * Ingest a byte stream (TCP): complete lines are ingested, a trailing partial line is left in place. Returns the number
 * of bytes consumed (the caller keeps the rest and appends more). A partial line longer than DTS_MAX_LINE is rejected
 * (line_too_long) and consumed. RX/stream thread only.
 */
size_t dts_core_ingest_stream(struct dts_core *c, const char *buf, size_t len, int64_t now_s);

/*
 * Hand the table over when the tick has elapsed (or it is filling up) and a clean table is free. Call once per loop
 * iteration of the RX core. Never blocks. Returns true when a hand-over happened.
 */
bool dts_core_tick(struct dts_core *c, int64_t now_ms);

/*
 * True when the core's table is past its hand-over mark and no clean table was free at the last dts_core_tick: further
 * new series or timer values may be dropped (counted). Receivers that can push back on their sender (TCP, tests) stop
 * reading while this holds; UDP receivers cannot and keep going. RX core only.
 */
bool dts_core_saturated(const struct dts_core *c);

/* Force the hand-over at the next dts_core_tick regardless of the tick (shutdown, tests). RX core only. */
void dts_core_flush(struct dts_core *c);

/* The core's counters (live; read with relaxed loads via dts_core_stats_read). */
void dts_core_stats_read(const struct dts_core *c, struct dts_core_stats *out);

/*
 * One merger step: fold every table the cores handed over, roll the 5-second slots up to now, publish the current
 * state of series whose slot changed, close minutes whose grace has passed (handing them to the sink), expire idle
 * series. Bounded by what the cores handed over. Merger thread only (a registered RCU thread).
 * Returns the number of tables folded.
 */
unsigned dts_merger_step(struct dts_merger *m, int64_t now_ms);

void dts_merger_stats_read(const struct dts_merger *m, struct dts_merger_stats *out);

/*
 * Merge a minute's records (a checkpoint written before a crash, or any partial aggregates of an open minute) back
 * into the windows, creating series as needed, as if the data had just been folded. Records of a minute that is
 * already closed at now_ms, or too far ahead, are refused (counted as late/future drops). cm stays the caller's.
 * Returns the number of records restored, or -ENOMEM. Merger thread only, typically before the first
 * dts_merger_step.
 */
int dts_merger_restore(struct dts_merger *m, const struct dts_closed_minute *cm, int64_t now_ms);

/*
 * Current state of one series: the 1-minute moving window over the last 12 closed 5-second slots (DESIGN §2).
 * Immutable once published; valid only inside the read-side critical section in which it was obtained.
 */
struct dts_current {
	int64_t as_of_ms; /* end of the newest slot included */
	int64_t last_seen_s; /* unix seconds of the newest data */
	double count; /* weight of values in the window */
	double sum;
	double rate; /* counters: sum / 60 per second */
	double avg; /* sum / count */
	double min, max;
	double last; /* gauges: the value; others: last value seen */
	double bot10, top10, p50, p99; /* timers: quantiles over the window (NAN otherwise) */
	double distinct; /* sets: distinct members in the current minute (NAN otherwise) */
};

/* Identity of a series as seen by a reader (strings valid inside the read-side critical section). */
struct dts_series_view {
	const char *user, *process, *counter, *tags;
	uint8_t type;
	const struct dts_current *cur; /* NULL until its first slot closes */
};

/*
 * Visit every live series of user (NULL = all users) under the RCU read side. The callback must not block; returning
 * non-zero stops the walk. Returns the number of series visited. Any registered RCU thread; never blocks the merger
 * or the cores.
 */
typedef int (*dts_series_visit_fn)(void *ctx, const struct dts_series_view *v);
size_t dts_merger_read_current(struct dts_merger *m, const char *user, dts_series_visit_fn fn, void *ctx);

/* RCU thread registration for threads that call dts_merger_step or the readers (wraps liburcu-memb). */
void dts_rcu_register_thread(void);
void dts_rcu_unregister_thread(void);
/* Wait for pending RCU callbacks (frees) to run; for shutdown and tests. Not from a read-side critical section. */
void dts_rcu_barrier(void);

#endif /* DTS_ENGINE_H */
