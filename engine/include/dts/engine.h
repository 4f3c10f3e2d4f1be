/*
 * engine.h - the aggregation engine: RX cores, the merger, the global minute windows and the current state.
 *
 *   RX core i   dts_core_ingest(core i, datagram)  -> decode -> core i's table    (single writer; no locks, no atomics
 *               dts_core_tick(core i, now)          hand the table over when the tick elapsed   on the per-line path,
 *                                                   and take a clean one, never waiting          no malloc, no I/O)
 *               (native datagrams: verify, then partials, process statistics and events into the same table)
 *   merger      dts_merger_step(now)                fold handed-over tables into the series, roll 5-second slots,
 *                                                   publish current state (RCU), close minutes into the sink;
 *                                                   process states and the last events per user (RCU), to the sink
 *   readers     dts_merger_read_current(...)        under RCU read side: never block the merger or the cores
 *               dts_merger_read_processes / _events
 *
 * RX cores and RCU: a core writes only its own table and pushes/pops two single-producer single-consumer rings (one
 * release store per hand-over). The one exception is the key lookup of a native datagram: the users registry keeps
 * its keys under RCU, so the core holds a read-side critical section (urcu-memb, a few ns, never blocking) around
 * dts_native_open. It never holds one across a loop iteration, so it never holds back a grace period for long; the
 * threads that ingest native datagrams must therefore be registered RCU threads (dts_rcu_register_thread).
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
#include "dts/native.h"
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
	uint64_t dropped[DTS_DROP_COUNT]; /* partials, process reports and their sketches/sets count here too */
	uint64_t native_datagrams; /* native datagrams accepted (verified whole) */
	uint64_t partials; /* partial aggregates taken into the table (native, dts_core_ingest_partial) */
	uint64_t heartbeats; /* process reports (every accepted native datagram, dts_core_ingest_proc) */
	uint64_t events; /* errors and warnings copied into the table */
	uint64_t events_dropped; /* errors and warnings lost: the table's event arena was full */
	uint64_t native_rejected[DTS_NREJ_COUNT]; /* native datagrams rejected, by enum dts_native_reject */
};

/* Merger-side counters: written by the merger thread only (relaxed stores), read by anyone. */
struct dts_merger_stats {
	uint64_t tables_folded;
	uint64_t entries_folded;
	uint64_t minutes_closed;
	uint64_t series_live; /* gauge: series in the map */
	uint64_t series_created;
	uint64_t index_slots; /* gauge: slots of the merger's series index (16 B each; at most half are used) */
	uint64_t index_probes; /* index slots stepped over past a series' home slot, finding or adding it: at half load
				* about 0.5 per lookup; many more per series created says the index is crowded */
	uint64_t series_expired;
	uint64_t merge_lag_ms; /* gauge: age of the oldest table folded in the last step */
	uint64_t fold_ns_total; /* time spent folding, for CPU accounting */
	uint64_t close_ns_last; /* duration of the last minute close */
	uint64_t late_forwarded; /* entries for already closed minutes handed to the sink to merge into the store */
	uint64_t dropped[DTS_DROP_COUNT];
	uint64_t encodings_merged; /* sketches and sets of partial aggregates merged into windows */
	uint64_t processes_live; /* gauge: processes with a state (see dts_merger_read_processes) */
	uint64_t processes_online; /* gauge */
	uint64_t restarts; /* process restarts detected */
	uint64_t events_total; /* errors and warnings taken (each got a sequence number) */
	uint64_t event_seq; /* gauge: the last sequence number given */
	uint64_t event_batches_dropped; /* batches of events/process states not handed over: no memory */
	uint64_t tables_grown; /* core tables given more buckets (dts_merger_cfg.table_capacity_max) */
	uint64_t table_logs_grown; /* core tables given bigger timer and set logs alone (values filled them) */
	uint64_t table_buckets; /* gauge: buckets of every core's tables together */
	uint64_t publish_ns_last; /* duration of the last current-state publication walk (folds between slices included) */
	uint64_t checkpoint_ns_last; /* duration of the last checkpoint walk (the same) */
	uint64_t series_slab_bytes; /* gauge: memory mapped for series records (2 MiB slabs), the reserve included */
	uint64_t series_reserved_bytes; /* gauge: of that, faulted in at creation for series_reserve */
	uint64_t table_reserved_bytes; /* gauge: core table memory faulted in by dts_merger_reserve_tables */
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
	bool partial; /* checkpoint only: holds just the series whose window changed since the previous checkpoint of
		       * this minute; the records of earlier checkpoints stay valid for the others. A sink must not skip
		       * a partial checkpoint for a later one, only for a later full one or the minute's close */
	bool late; /* true for data that arrived after its minute closed: merge it into the stored minute */
	size_t n;
	struct dts_minute_rec *recs;
	void *arena; /* private: when not NULL, the records' identity strings live in these chunks; when NULL, each
		      * record's user is its own allocation holding user, process, counter and tags (hand-built minutes) */
	void *pool; /* private: when not NULL, recs came from the merger's reuse pool and go back to it on release;
		     * when NULL, recs is freed (hand-built minutes: malloc it) */
};

void dts_closed_minute_release(struct dts_closed_minute *cm);

/* Errors and warnings kept per user and kind, in memory and in the store. */
#define DTS_EVENTS_KEPT 100

/*
 * One error or warning. Readers (dts_merger_read_events) get a view of an immutable copy, valid inside the callback;
 * sink batches own theirs.
 */
struct dts_event {
	uint64_t seq; /* > 0, increasing in the order the merger took events (all users; continues after a restore) */
	int64_t ts_ms; /* when the client reported it (its clock), unix milliseconds */
	int64_t recv_ms; /* when the server received it (receive second * 1000) */
	const char *user, *process; /* NUL-terminated */
	const char *text; /* UTF-8 without NUL, text_len bytes, NUL-terminated */
	uint16_t text_len;
	uint8_t kind; /* enum dts_native_event_kind: 0 error, 1 warning */
	uint64_t evicted_seq; /* sink batches: the event of the same user and kind this one pushed out of the last
			       * DTS_EVENTS_KEPT (0: none), for the store to delete; readers: 0 */
};

/*
 * The state of one process of a user (DESIGN §2 "process statistics"). A process is known from its reports (native
 * datagrams carry statistics, PUT /agg an uptime) and from its series' data (statsd-only processes have no stats:
 * last_heard_ms is then the time of their newest data). Readers get a view of an immutable snapshot (replaced whole by
 * the merger), valid inside the callback.
 */
struct dts_process {
	const char *user, *process; /* NUL-terminated */
	bool online; /* heard within 2.5 client periods, as of the merger's last evaluation (at most 1 s old) */
	bool has_stats; /* stats holds a full native report */
	bool has_uptime; /* stats.uptime_s is known (a native report, or PUT /agg's upt); other fields 0 without stats */
	bool removed; /* sink batches only: the process was forgotten (process_expire_s); delete its stored state */
	int64_t last_heard_ms; /* newest report or data, unix ms (0: never) */
	int64_t online_since_ms; /* start of the current online period (0 while offline) */
	int64_t stats_ms; /* when stats was received (0: never) */
	struct dts_native_stats stats; /* the newest report (cumulative counters as the client sent them) */
	uint32_t restarts; /* restarts detected since the state was created: uptime went down */
	int64_t last_restart_ms; /* when the last one was detected (0: never) */
	uint64_t instance; /* the native client's instance of the newest report (0: unknown, PUT /agg) */
};

/*
 * What the merger hands to the sink's events callback: the events it took since the last batch (in seq order) and the
 * process states that changed (each at most every few seconds, at once on a restart, an online change or removal).
 * Owned by the sink after the call; release with dts_event_batch_release (any thread).
 */
struct dts_event_batch {
	size_t n_events;
	struct dts_event *events;
	size_t n_procs;
	struct dts_process *procs;
	void *arena; /* private: the strings */
};

void dts_event_batch_release(struct dts_event_batch *b);

/*
 * Where closed minutes go. Both callbacks run on the merger thread, take ownership of cm, and must not block for long
 * (queue the work elsewhere).
 *   minute_closed: the final aggregates of minute cm->minute (only minutes with data are handed over); or, with
 *                  cm->late set, data that arrived after that minute closed: the store must merge it into the
 *                  minute it already holds (a minute can be handed over once plus any number of late parts).
 *   checkpoint:    optional; every cfg.checkpoint_ms, a copy of each open minute window with data (cm->open is
 *                  true). A store that keeps the latest checkpoint of each minute can give it back through
 *                  dts_merger_restore after a crash, so a kill -9 loses at most one checkpoint interval. One
 *                  checkpoint of many series comes as several calls per minute, pieces of up to 65,536 records
 *                  made between folds (see dts_merger_step); every piece of a split checkpoint is partial.
 *   events:        optional; at the end of a dts_merger_step that took events or changed process states (see
 *                  struct dts_event_batch), and at destroy. Without it batches are not built.
 */
struct dts_sink {
	void (*minute_closed)(void *ctx, struct dts_closed_minute *cm);
	void (*checkpoint)(void *ctx, struct dts_closed_minute *cm);
	/*
	 * Optional. Called by the merger before each checkpoint: true when a checkpoint it handed over since the last
	 * call was not written (dropped, failed); the merger then copies every open window instead of only the changed
	 * ones. NULL: every checkpoint is full (partial is never set).
	 */
	bool (*checkpoint_lost)(void *ctx);
	void (*events)(void *ctx, struct dts_event_batch *b);
	void *ctx;
};

#define DTS_MAX_SERIES_LIMIT (1ull << 30)
/* Record bytes dts_merger_cfg.series_reserve sets aside per series: the mean of a mix of counters (512 B with a
 * 31-byte name), gauges (704 B) and timers (832 B), rounded up (docs/architecture.md "Memory"). */
#define DTS_SERIES_RESERVE_BYTES 640
#define DTS_TABLE_CAPACITY_LIMIT (1u << 24) /* most buckets of one core table */

struct dts_merger_cfg {
	unsigned cores; /* RX cores that will ingest (1..64) */
	struct dts_decode_cfg decode; /* copied; the secret bytes are copied too */
	const char *user; /* the listener's user for statsd lines ("default") */
	unsigned tick_ms; /* hand-over period of each core */
	unsigned grace_s; /* close minute M at (M + 1) * 60 + grace_s; 0..60 */
	uint32_t table_capacity; /* buckets per core table (power of two) */
	/* Growth: when a table fills up before its tick (more distinct series and slots per tick than half its
	 * buckets, or more timer values, set members or identity bytes than its logs and arena hold: they scale with
	 * the buckets), its core's tables are sized for a whole tick at the rate it filled (at least twice its buckets)
	 * and each gets that size once the merger has folded and emptied it, up to this many (a power of two >=
	 * table_capacity; 0: table_capacity, no growth). Each table is mapped at this size at creation and
	 * touches only what its current capacity uses, so growing allocates nothing; a core only ever takes a ready
	 * table from its ring. Tables never shrink. */
	uint32_t table_capacity_max;
	uint32_t tables_per_core; /* tables in each core's pool (>= 2) */
	uint64_t max_series; /* live series bound, 1..DTS_MAX_SERIES_LIMIT; new series beyond it are dropped, counted */
	/*
	 * Series whose memory dts_merger_create maps and faults in at once (0..max_series; 0, the default: none): an
	 * index that holds them without rehashing, and record slabs at DTS_SERIES_RESERVE_BYTES per series, which
	 * the merger carves before it maps more. A burst of new series - a start or restart under full load - then
	 * costs the merger no page faults and no zeroing of fresh memory until the reserve is used up, which leaves
	 * it time to fold the tables and keep the cores from dropping. It costs that memory from the start and the
	 * time to fault it in (dts_merger_create: ~1.4 s per million series on the test machine, docs/operations.md
	 * "Many series"). The cores' tables have a reserve of their own, per core: dts_merger_reserve_tables.
	 */
	uint64_t series_reserve;
	unsigned expire_s; /* a series without data for this long leaves the map (and the current state) */
	unsigned checkpoint_ms; /* period of sink.checkpoint calls; 0 = no checkpoints */
	/*
	 * DaTtSs lines: is the user of a line whose AUTH verified a known user? The original AUTH token derives from the
	 * server secret only, so without this a removed user's token would keep working. Called for each decoded DaTtSs
	 * line on the RX core, inside an RCU read-side section the core takes; must not block. NULL: every user whose
	 * AUTH verifies is accepted. A refused line is counted as unknown_user.
	 */
	bool (*user_known)(void *ctx, const char *user, size_t len);
	void *user_known_ctx;
	struct dts_sink sink; /* may have a NULL callback: closed minutes are then released at once */
	struct dts_native_cfg native; /* native datagrams: key lookup (NULL: every one is rejected unknown_key) and the
				       * accepted slot window (also for dts_core_ingest_partial); copied */
	unsigned client_period_s; /* the clients' send period: a process is online while heard within 2.5 periods */
	unsigned process_expire_s; /* a process not heard for this long and without live series is forgotten */
	/*
	 * Secret key of the series identity hash, which the per-core tables and the merger trust as the identity (two
	 * identities of one type with one hash are one series). 0 (the default): drawn from getrandom at creation, so
	 * that senders can neither aim names at one bucket nor make two series collide. Set it only to reproduce a
	 * table layout (tests, fuzz targets). Hashes are never stored, so a new key at each start changes nothing else.
	 */
	uint64_t ident_key;
};

/* Documented defaults: 1 core, tick 1000 ms, grace 10 s, 2^16 buckets (no growth), 3 tables per core, 4M series,
 * expiry 600 s, dts_native_cfg_defaults (no key lookup), client period DTS_SLOT_SECONDS, processes forgotten after 7 days. */
void dts_merger_cfg_defaults(struct dts_merger_cfg *cfg);

struct dts_merger;
struct dts_core;

/*
 * Create the merger, its series index and directory, the process states and event rings, and every core's table pool, native replay
 * window (DTS_NATIVE_REPLAY_SLOTS entries, 320 KiB) and decode scratch. Returns NULL with errno set (EINVAL for a bad
 * config: cores, tick, grace, capacity, client_period_s outside 1..3600, a native slot window over a day; ENOMEM).
 * The calling thread must be a registered RCU thread before calling dts_merger_step or the readers (see
 * dts_rcu_register_thread).
 */
struct dts_merger *dts_merger_create(const struct dts_merger_cfg *cfg);

/*
 * Destroy: fold what the cores handed over, close every open minute into the sink, hand the last events and every
 * unsaved process state to sink.events, free everything. The cores must have stopped calling into the engine, and no
 * reader may start a read once this is called (one still inside dts_merger_read_* is waited for, one grace period,
 * before the series are freed). Call from the merger thread.
 */
void dts_merger_destroy(struct dts_merger *m, int64_t now_ms);

/* The handle of RX core i (0 <= i < cfg.cores). Owned by the merger; valid until dts_merger_destroy. */
struct dts_core *dts_merger_core(struct dts_merger *m, unsigned i);

/*
 * Fault in, now, the memory that core i's tables touch while each fills with up to `series` distinct series per
 * hand-over: in every table of its pool, the buckets, the lists of used buckets and the identity arena of a table of
 * 2 x series buckets (rounded up to a power of two, at most the largest table: table_capacity_max, else
 * table_capacity). The timer and set logs and the partials' arenas still fault in as they fill. Tables keep their
 * capacity and grow as before; a growth up to there, and the first fills, then cost the core no page fault and no
 * zeroing of fresh memory, which a start under full load would otherwise pay on the receive path while the socket
 * fills (docs/performance.md, "Session 10"). The cost is that memory, resident from now on, and the time to fault it
 * in (the kernel zeroes it). For the cores that will carry the traffic (dattssd: its receive workers, with
 * series_reserve over the workers). series 0 does nothing. Returns 0, or -1 with errno EINVAL (no core i) or ENOMEM
 * (the system could not provide the memory; the tables faulted in before stay so, and the engine is usable).
 * stats.table_reserved_bytes adds up the tables faulted in. Call from the thread that created the merger, before
 * core i ingests anything.
 */
int dts_merger_reserve_tables(struct dts_merger *m, unsigned core, uint64_t series);

/*
 * Decode one datagram into core's table. now_s is the receive time (unix seconds).
 *   - A native datagram (first byte DTS_NATIVE_MAGIC, docs/protocol.md) is verified whole with the core's replay
 *     window and scratch under an RCU read-side critical section around the key lookup (the calling thread must be a
 *     registered RCU thread); a rejected one is counted under native_rejected[reason] and nothing of it is kept.
 *     An accepted one gives a process report (its statistics), its events and its partial aggregates (timers' and
 *     sets' encodings are copied for the merger to merge exactly). Returns the number of partials taken.
 *   - Anything else is lines separated by '\n' (the last may lack it) of statsd or DaTtSs, for the merger's default
 *     user. Malformed lines are counted by reason and skipped. Returns the number of samples aggregated.
 * RX core only; never blocks, never allocates; bounded work (O(len), at most one HMAC).
 */
unsigned dts_core_ingest(struct dts_core *c, const char *buf, size_t len, int64_t now_s);

/* One datagram of a burst: its payload, read-only. */
struct dts_dgram {
	const char *buf;
	size_t len;
};

/*
 * Decode the n datagrams d[0..n) into core's table, as n calls of dts_core_ingest in that order would, with every
 * result the same (samples and partials, counters, rejections by reason, drops, gauge/first/last order), but with the
 * decode batch carried from one datagram to the next: the table buckets of the following lines are prefetched while
 * the earlier ones are still in flight, so a burst of one-line datagrams aggregates as fast as one packed datagram.
 * Native datagrams are taken as dts_core_ingest takes them (the lines before one are aggregated first).
 * The datagrams' buffers are only read, during the call (the caller may reuse them on return); d may be reused too.
 * Returns the sum of what dts_core_ingest would return for each datagram (samples aggregated plus native partials
 * taken); all n datagrams are always consumed. n = 0 is a no-op.
 * RX core only (the core's owner thread, a registered RCU thread when native datagrams can come); never blocks,
 * never allocates; bounded work (O(total bytes), at most one HMAC per native datagram).
 */
unsigned dts_core_ingest_burst(struct dts_core *c, const struct dts_dgram *d, unsigned n, int64_t now_s);

/*
 * A partial aggregate from a source without a datagram (the original HTTP protocol, PUT /agg). Strings are
 * NUL-terminated and only read during the call.
 */
struct dts_partial_in {
	const char *user; /* [A-Za-z0-9@._+-]{1,64} */
	const char *process; /* [A-Za-z0-9_.-]{1,198}, and process + 1 + counter <= DTS_MAX_NAME */
	const char *counter; /* [A-Za-z0-9_.-]{1,199} */
	const char *tags; /* NULL or "" for none, else canonical (sorted, distinct, ','-joined; docs/protocols.md) */
	uint8_t type; /* enum dts_type */
	int64_t slot_s; /* unix seconds inside the slot the aggregate covers (rounded down to its 5-second slot) */
	struct dts_agg agg; /* finite, count > 0, min <= max */
	const struct dts_sketch *sketch; /* timers only, optional: merged bin for bin into the series' windows (without
					  * one the minute's quantiles come from the other partials' sketches only) */
};

/*
 * Take one partial into core's table, as a native partial of its slot. Returns 0; -EINVAL (a name, the tags, the
 * type or the aggregate invalid, or a sketch on a non-timer); -ERANGE (slot_s outside [now_s - native.max_past_s,
 * now_s + native.max_future_s], counted as a late or future drop); -ENOSPC (table full: counted as table_full).
 * Owner of the core only (RX core; the API core's lock holder); never blocks, never allocates.
 */
int dts_core_ingest_partial(struct dts_core *c, const struct dts_partial_in *p, int64_t now_s);

/*
 * A heartbeat with an uptime, for the original HTTP protocol (its "upt"; instance unknown): the process's last heard
 * time becomes now_s, and an uptime lower than the previous one counts a restart. Returns 0, -EINVAL (bad user or
 * process name), -ENOSPC (table full: counted as table_full). Owner of the core only; never blocks.
 */
int dts_core_ingest_proc(struct dts_core *c, const char *user, const char *process, uint32_t uptime_s,
			 int64_t now_s);

/*
 * One error or warning (kind: enum dts_native_event_kind) with its text (UTF-8 checked by the caller, no NUL, at most
 * DTS_NATIVE_MAX_TEXT bytes) reported at ts_ms by process. Returns 0, -EINVAL (names, kind, a NUL in text),
 * -EMSGSIZE (text too long), -ENOSPC (event arena full: counted in events_dropped). Owner of the core only.
 */
int dts_core_ingest_event(struct dts_core *c, const char *user, const char *process, uint8_t kind, int64_t ts_ms,
			  const char *text, size_t len, int64_t now_s);

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
 * new series or timer values may be dropped (counted). Receivers that can wait stop reading while this holds and call
 * dts_core_tick until it no longer does: dattssd's TCP connections (flow control slows the sender) and its UDP
 * workers while their socket buffer can queue (udp_backpressure). RX core only.
 */
bool dts_core_saturated(const struct dts_core *c);

/* Force the hand-over at the next dts_core_tick regardless of the tick (shutdown, tests). RX core only. */
void dts_core_flush(struct dts_core *c);

/* The core's counters (live; read with relaxed loads via dts_core_stats_read). */
void dts_core_stats_read(const struct dts_core *c, struct dts_core_stats *out);

/*
 * One merger step: fold every table the cores handed over (entries, partials' sketches and sets, process reports,
 * events), roll the 5-second slots up to now, publish the current state of series whose slot changed, close minutes
 * whose grace has passed (handing them to the sink), expire idle series, re-evaluate process states (online: once
 * per second of now_ms) and hand the step's events and changed states to sink.events. Bounded by what the cores
 * handed over (and the number of processes, once a second). The walks over every series (the 5-second publication,
 * a checkpoint) go a slice of 8,192 series at a time and fold what the cores handed over in between, so the cores
 * find a clean table while a walk of a million series runs; they end within the step. Merger thread only (a
 * registered RCU thread). Returns the number of tables folded.
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
	double min, max; /* gauges and timers (NAN otherwise) */
	double last; /* gauges: the value (NAN otherwise) */
	double bot10, top10, p50, p99; /* timers: quantiles over the window (NAN otherwise) */
	double distinct; /* sets: distinct members in the current minute (NAN otherwise) */
};

/* Identity of a series as seen by a reader (strings valid inside the read-side critical section). */
struct dts_series_view {
	const char *user, *process, *counter, *tags;
	uint8_t type;
	const struct dts_current *cur; /* NULL until its first slot closes. Points to a copy on the reader's stack,
					* rebuilt from the compact published state: valid only during the callback (copy
					* what you keep) */
};

/*
 * Visit every live series of user (NULL = all users) under the RCU read side. The callback must not block; returning
 * non-zero stops the walk. Returns the number of series visited. Any registered RCU thread; never blocks the merger
 * or the cores.
 */
typedef int (*dts_series_visit_fn)(void *ctx, const struct dts_series_view *v);
size_t dts_merger_read_current(struct dts_merger *m, const char *user, dts_series_visit_fn fn, void *ctx);

/*
 * Visit the process states of user (NULL = all users) under the RCU read side, in no particular order. The callback
 * must not block; returning non-zero stops. Returns the number visited. Any registered RCU thread; never blocks the
 * merger or the cores.
 */
typedef int (*dts_process_visit_fn)(void *ctx, const struct dts_process *p);
size_t dts_merger_read_processes(struct dts_merger *m, const char *user, dts_process_visit_fn fn, void *ctx);

/*
 * Visit the kept events of user (both kinds, at most 2 * DTS_EVENTS_KEPT) with seq > after_seq, in increasing seq,
 * under the RCU read side. Every event with a seq up to the highest one visited that is still kept was visited: a
 * reader that resumes from the last seq it saw (SSE) misses nothing that was not pushed out meanwhile. The callback
 * must not block; returning non-zero stops. Returns the number visited. Any registered RCU thread.
 */
typedef int (*dts_event_visit_fn)(void *ctx, const struct dts_event *ev);
size_t dts_merger_read_events(struct dts_merger *m, const char *user, uint64_t after_seq, dts_event_visit_fn fn,
			      void *ctx);

/*
 * Startup: give back a process state / an event the store kept (dts_storage_restore_state). Strings are copied.
 * Events of one user and kind must come in increasing seq (the last DTS_EVENTS_KEPT are kept); later seq numbers
 * continue above the highest restored. Nothing restored goes back to the sink. Returns 0, -EINVAL (missing user or
 * process, bad kind), -ENOMEM. Merger thread, before the first dts_merger_step.
 */
int dts_merger_restore_process(struct dts_merger *m, const struct dts_process *p);
int dts_merger_restore_event(struct dts_merger *m, const struct dts_event *ev);

/* RCU thread registration for threads that call dts_merger_step or the readers (wraps liburcu-memb). */
void dts_rcu_register_thread(void);
void dts_rcu_unregister_thread(void);
/* Wait for pending RCU callbacks (frees) to run; for shutdown and tests. Not from a read-side critical section. */
void dts_rcu_barrier(void);

#endif /* DTS_ENGINE_H */
