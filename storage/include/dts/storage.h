/*
 * storage.h - the RocksDB store: closed minutes and hourly rollups, open-minute checkpoints, retention, reads.
 *
 *   merger thread   dts_storage_sink: minute_closed / checkpoint  -> bounded queue (never blocks; full = counted drop)
 *   storage thread  one WriteBatch per closed minute: minutes CF + a marker per series new in a pending hour
 *                   + the minute's high-water mark in meta + deletion of the minute's checkpoint data in current
 *                   (a large minute that only puts: parts of ~8 MB on two committer threads, hwm in the last);
 *                   between minutes, the roller: hours whose minutes are all stored, in bounded chunks, from the
 *                   minutes into the hours CF (dts_storage_roll_hours)
 *   readers         dts_storage_read / dts_storage_week_bucket / dts_storage_list_* (any thread, one iterator each)
 *   startup         dts_storage_restore: checkpoints of minutes that were open at a crash go back into the merger
 *
 * Column families (bytewise comparator, no merge operator, so `ldb` reads every value faithfully):
 *
 *   CF        key                                  value                    written by
 *   minutes   SERIES '|' YYYYMMDD 'T' HHMM         value table below        each closed minute
 *   hours     SERIES '|' YYYYMMDD 'T' HH           value table below        the roller, once per hour and series;
 *                                                                           read-merge-write by minutes that arrive
 *                                                                           after their hour was rolled up
 *   current   YYYYMMDD 'T' HHMM '#' SEQ            checkpoint chunk below   checkpoints of open minutes (the minute's
 *                                                                           chunks and format-1 rows are deleted when
 *                                                                           it closes)
 *   current   YYYYMMDD 'T' HHMM '|' SERIES         value table below        format-1 checkpoint rows (schema 1; only
 *                                                                           read and deleted now)
 *   current   "hourq|" YYYYMMDD 'T' HH '|' SERIES  empty                    rollup marker: the series has (or, pre-
 *                                                                           marked, may have) minutes in that hour,
 *                                                                           not yet rolled up (put by minute closes,
 *                                                                           range-deleted by the roller)
 *   events    USER '/' KIND '/' SEQ                event value (section "events and process states" below)
 *   current   "p/" USER '/' PROCESS                process state value (same section)
 *   meta      "schema_version"                     ASCII decimal ("2")      open (read-write): created, or raised
 *                                                                           from 1
 *             "hwm_minute"                         ASCII YYYYMMDDTHHMM      each closed minute (highest so far)
 *             "hour_done"                          ASCII YYYYMMDDTHH        the roller: every hour up to this one is
 *                                                                           complete in hours (later hours are read
 *                                                                           from minutes)
 *
 *   SERIES = USER '/' PROCESS '/' COUNTER '/' TYPE [ '/' TAGS ]      e.g.  default/api/query/ms/env:prod,region:eu
 *     USER, PROCESS, COUNTER: 1 or more printable ASCII bytes (0x21..0x7e) other than '/' and '|'
 *     TYPE: c | ms | g | s          TAGS: canonical DogStatsD tags (sorted, ','-joined), printable, no '|'
 *   Times are UTC and fixed width, so byte order is time order. Because no SERIES contains '|', the bytes
 *   "SERIES|" begin exactly the keys of one series: one series' minutes are contiguous and in time order, and no
 *   series is a key prefix of another (a scan from "SERIES|" to "SERIES}" covers one series and nothing else; '}'
 *   is the byte after '|'). Likewise "USER/" and "USER/PROCESS/" begin exactly one user's / one process's keys.
 *
 * Value (version 1, little-endian), the same in minutes, hours and current:
 *
 *   offset  size  field
 *   0       1     version = 1 (a reader refuses higher versions: -EPROTONOSUPPORT)
 *   1       1     type: 0 counter, 1 timer, 2 gauge, 3 set (enum dts_type); equals the key's TYPE
 *   2       1     first: minute offset (0..59) within the period of the earliest minute merged in (0 in minutes)
 *   3       1     last: minute offset (0..59) of the latest minute merged in (0 in minutes); first <= last
 *   4       8     sum    f64 \
 *   12      8     count  f64  |  struct dts_agg: count is a weight (finite, >= 0); min/max are +inf/-inf and
 *   20      8     min    f64  |  fst/lst 0 when count is 0
 *   28      8     max    f64  |
 *   36      8     fst    f64  |  first value in time
 *   44      8     lst    f64 /   last value in time (gauges: the gauge's value)
 *   52      ...   timers: dts_sketch_encode() bytes (22 .. 2078); sets: dts_set_encode() bytes; counters and
 *                 gauges: nothing (the value is exactly 52 bytes)
 *
 * Checkpoint chunk (format 2: the records of many series of one open minute in one value; ckpt.c):
 *
 *   key:    YYYYMMDD 'T' HHMM '#' SEQ     SEQ: 16 lower-case hex digits, increasing with every chunk the store writes
 *                                         (so byte order is write order within a minute)
 *   value:  offset  size  field
 *           0       1     version = 2 (DTS_STORAGE_CKPT_VERSION; a format-1 value starts with 1)
 *           1       4     n: records, u32 LE
 *           5       ...   n records: varint32 slen, SERIES (slen bytes), varint32 vlen, value (vlen bytes, the
 *                         value table above, first = last = 0); varints LEB128, minimal; no trailing byte
 *   A series can be in several chunks of a minute (each partial checkpoint that saw it change): its state is its copy
 *   in the chunk with the highest SEQ; format-1 rows of a minute (TIME '|' SERIES) are older than all its chunks.
 *
 * Merge rule (dts_storage_value_merge): used when a closed minute meets a stored value of the same minute (data that
 * arrived after its minute was stored, or a minute closed again after a restart) and for every hourly rollup.
 * sum, count, min, max, the sketch and the set combine exactly; fst comes from the side whose `first` is earlier,
 * lst from the side whose `last` is later, with ties going to the stored value for fst and to the incoming value
 * for lst (it arrived later). An hour is the merge of its minutes in time order (the roller rebuilds it from them,
 * so rolling an hour again gives the same value); a minute that arrives after its hour was rolled up merges its
 * incoming record, never the merged minute, into the hour, so every datum is counted once in its minute and once in
 * its hour, whatever the order of arrival.
 *
 * Threading: a struct dts_storage is shared by every thread. Reads take no lock (RocksDB handles concurrency);
 * writes (dts_storage_write_minute, dts_storage_write_checkpoint, dts_storage_restore, dts_storage_roll_hours)
 * serialise on one internal mutex because the read-merge-write of minutes and hours must have a single writer. The
 * sink's storage thread is normally the only writer, so the mutex is uncontended. The merger thread never takes it.
 */
#ifndef DTS_STORAGE_H
#define DTS_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dts/engine.h"
#include "dts/set.h"
#include "dts/sketch.h"
#include "dts/tunables.h"

/* Schema of the store as a whole (column families, key layouts); kept in meta "schema_version". A store with a
 * higher number is refused at open; a lower one is migrated by the opening build (read-write). 2: checkpoints as
 * chunks (TIME '#' SEQ); a schema-1 store's checkpoint rows (TIME '|' SERIES) are still restored, so 1 -> 2 only
 * raises the number, which keeps a schema-1 build (that would leave chunks behind forever) from opening the store. */
#define DTS_STORAGE_SCHEMA_VERSION 2

/* Version byte of every value (offset 0). */
#define DTS_STORAGE_VALUE_VERSION 1
#define DTS_STORAGE_VALUE_HEADER 52

/* Column family names. */
#define DTS_CF_MINUTES "minutes"
#define DTS_CF_HOURS "hours"
#define DTS_CF_CURRENT "current"
#define DTS_CF_EVENTS "events"
#define DTS_CF_META "meta"

/* Longest series the store accepts: a user of DTS_MAX_USER bytes, a process and a counter of up to DTS_MAX_NAME bytes
 * each, a 2-byte type, DTS_MAX_TAGS_LEN bytes of tags and 4 separators (the engine's names are shorter: process and
 * counter share DTS_MAX_NAME). Longest key: series + '|' + 13-byte time. A buffer of these sizes + 1 (the NUL)
 * always suffices. */
#define DTS_STORAGE_SERIES_MAX (DTS_MAX_USER + 2 * DTS_MAX_NAME + 2 + DTS_MAX_TAGS_LEN + 4)
#define DTS_STORAGE_TIME_LEN_MINUTE 13 /* YYYYMMDDTHHMM */
#define DTS_STORAGE_TIME_LEN_HOUR 11 /* YYYYMMDDTHH */
#define DTS_STORAGE_KEY_MAX (DTS_STORAGE_SERIES_MAX + 1 + DTS_STORAGE_TIME_LEN_MINUTE)

/* Largest time a key can hold: 9999-12-31T23:59:59Z. Times before 1970 are refused too. */
#define DTS_STORAGE_TIME_MAX 253402300799LL

/* Resolution of a stored series. */
enum dts_res {
	DTS_RES_MINUTE = 0, /* minutes CF */
	DTS_RES_HOUR = 1, /* hours CF */
};

/* "minute" / "hour". */
const char *dts_storage_res_name(enum dts_res res);

/* ---- keys ------------------------------------------------------------------------------------------------------ */

/* A series identity as the engine hands it over (NUL-terminated strings; tags NULL or "" when none). */
struct dts_series_id {
	const char *user, *process, *counter, *tags;
	uint8_t type; /* enum dts_type */
};

/* A decoded key or series: spans into the caller's bytes (not NUL-terminated). */
struct dts_key_view {
	const char *series; /* the whole SERIES part */
	size_t series_len;
	const char *user, *process, *counter, *tags;
	size_t user_len, process_len, counter_len, tags_len; /* tags_len 0: no tags */
	uint8_t type; /* enum dts_type */
	int64_t t; /* start of the minute or hour, unix seconds (0 for a bare series) */
};

/*
 * Encode SERIES into buf (NUL-terminated). Returns its length (without the NUL), -EINVAL when a component is empty
 * or holds a byte that keys cannot carry (see the table above) or the type is unknown, -ENOSPC when buf_len is too
 * small (DTS_STORAGE_SERIES_MAX + 1 always suffices). Pure; any thread.
 */
int dts_storage_series_encode(char *buf, size_t buf_len, const struct dts_series_id *id);

/* Parse SERIES (exactly len bytes). Returns 0 or -EINVAL. Pure. */
int dts_storage_series_decode(const char *s, size_t len, struct dts_key_view *out);

/*
 * The time part: YYYYMMDDTHHMM (minute) or YYYYMMDDTHH (hour) of t_s rounded down, UTC, NUL-terminated.
 * Returns the length (13 or 11), -EINVAL when t_s is outside [0, DTS_STORAGE_TIME_MAX], -ENOSPC. Pure.
 */
int dts_storage_time_encode(char *buf, size_t buf_len, enum dts_res res, int64_t t_s);

/* Parse exactly what dts_storage_time_encode writes (a valid calendar time). Returns 0 or -EINVAL. Pure. */
int dts_storage_time_decode(const char *s, size_t len, enum dts_res res, int64_t *t_s);

/* SERIES '|' TIME for the minutes or hours CF. Returns the key length or -EINVAL/-ENOSPC as above. Pure. */
int dts_storage_key_encode(char *buf, size_t buf_len, const struct dts_series_id *id, enum dts_res res, int64_t t_s);

/* Parse a minutes (res = minute) or hours key. Returns 0 or -EINVAL. Pure. */
int dts_storage_key_decode(const char *key, size_t len, enum dts_res res, struct dts_key_view *out);

/* Parse a format-1 checkpoint key of the current CF (TIME '|' SERIES, minute resolution). Returns 0 or -EINVAL.
 * Pure. */
int dts_storage_ckpt_key_decode(const char *key, size_t len, struct dts_key_view *out);

/* Checkpoint chunks (format 2, table above). */
#define DTS_STORAGE_CKPT_VERSION 2
#define DTS_STORAGE_CKPT_SEQ_LEN 16
#define DTS_STORAGE_CKPT_KEY_LEN (DTS_STORAGE_TIME_LEN_MINUTE + 1 + DTS_STORAGE_CKPT_SEQ_LEN)

/* TIME '#' SEQ of the minute holding t_s into buf (NUL-terminated). Returns DTS_STORAGE_CKPT_KEY_LEN, -EINVAL (time
 * out of range), -ENOSPC (buf_len <= DTS_STORAGE_CKPT_KEY_LEN). Pure. */
int dts_storage_ckpt_chunk_key(char *buf, size_t buf_len, int64_t t_s, uint64_t seq);
/* Parse a chunk key: exactly TIME '#' and 16 lower-case hex digits. Returns 0 or -EINVAL. Pure. */
int dts_storage_ckpt_chunk_key_decode(const char *key, size_t len, int64_t *t_s, uint64_t *seq);

/* Walks the records of one chunk value (views into its bytes, which must outlive it). */
struct dts_ckpt_reader {
	const uint8_t *p, *end;
	uint32_t left; /* records not yet returned */
};
/* Start reading a chunk value. Returns 0, -EINVAL (shorter than its header, or not a chunk), -EPROTONOSUPPORT (a
 * newer chunk version). Pure. */
int dts_storage_ckpt_chunk_open(struct dts_ckpt_reader *r, const uint8_t *buf, size_t len);
/* The next record: its SERIES bytes (not validated: dts_storage_series_decode) and value bytes (not decoded:
 * dts_storage_value_decode). Returns 1, 0 at the end (every record read, no byte left), -EINVAL (damaged: a length
 * past the end, a non-minimal varint, an empty series, bytes after the last record); never reads outside the value.
 * Pure. */
int dts_storage_ckpt_chunk_next(struct dts_ckpt_reader *r, const char **series, size_t *slen, const uint8_t **val,
				size_t *vlen);

/* ---- values ---------------------------------------------------------------------------------------------------- */

/* A decoded value. Owns the sketch's and the set's memory (dts_stored_free). */
struct dts_stored {
	uint8_t type; /* enum dts_type */
	uint8_t first, last; /* minute offsets within the period, see the value table */
	struct dts_agg agg;
	struct dts_sketch sketch; /* timers; empty otherwise */
	struct dts_set set; /* sets; empty otherwise */
};

/* Empty value of type counter (no allocation). */
void dts_stored_init(struct dts_stored *v);
void dts_stored_free(struct dts_stored *v);

/* Exact encoded size of v. */
size_t dts_storage_value_size(const struct dts_stored *v);

/*
 * Encode v into buf. Returns bytes written (= dts_storage_value_size(v)), -ENOSPC when buf_len is smaller (buf's
 * bytes are then unspecified), -EINVAL for an unknown type or offsets outside 0 <= first <= last <= 59. Pure.
 */
int dts_storage_value_encode(const struct dts_stored *v, uint8_t *buf, size_t buf_len);

/*
 * Decode exactly len bytes into an initialised v, replacing its contents (allocations are reused). Returns 0,
 * -EPROTONOSUPPORT (a newer value version), -EINVAL (malformed: never reads past len) or -ENOMEM. On error type,
 * offsets and agg are unchanged; the sketch or set is unchanged too, except after a payload followed by extra bytes,
 * which leaves it empty. v can always be reused or freed.
 */
int dts_storage_value_decode(struct dts_stored *v, const uint8_t *buf, size_t len);

/* dst = dst merged with src by the merge rule above (src unchanged). Returns 0, -EINVAL (types differ) or -ENOMEM
 * (dst unchanged then). */
int dts_storage_value_merge(struct dts_stored *dst, const struct dts_stored *src);

/* ---- opening --------------------------------------------------------------------------------------------------- */

enum dts_storage_mode {
	DTS_STORAGE_READ_WRITE = 0, /* the daemon: creates the store and missing column families */
	DTS_STORAGE_READ_ONLY, /* a stopped store (or a checkpoint); sees what was there at open */
	DTS_STORAGE_SECONDARY, /* a live store: follows the daemon's writes (dts_storage_catch_up) */
};

/* Unix seconds now: the retention filters' clock (tests inject one). Called from RocksDB's compaction threads. */
typedef int64_t (*dts_storage_clock_fn)(void *ctx);

/* Log one event (level as in the daemon's log.h: 0 error, 1 warn, 2 info). Called from the storage thread and
 * from dts_storage_open; never from the merger thread. */
typedef void (*dts_storage_log_fn)(void *ctx, int level, const char *msg);

/* Why the store dropped a closed minute (or some of its records). Append-only: indices of counter arrays. */
enum dts_storage_drop {
	DTS_SDROP_QUEUE_FULL = 0, /* the sink's queue was full (the store was too slow or failing) */
	DTS_SDROP_INVALID, /* a record whose identity cannot be a key (a byte keys cannot carry, too long) */
	DTS_SDROP_WRITE_FAILED, /* still failing when the sink was stopped (after stop_timeout_ms of retries) */
};
#define DTS_SDROP_COUNT 3
const char *dts_storage_drop_name(enum dts_storage_drop d);

struct dts_storage_cfg {
	const char *data_dir; /* the RocksDB directory (created with its parents in read-write mode) */
	enum dts_storage_mode mode;
	const char *secondary_dir; /* SECONDARY only: a private directory for the secondary's own files */
	unsigned minutes_days; /* minutes kept this many days [15; >= 8 for "today against last week"] */
	unsigned hours_days; /* hourly rollups kept [400] */
	size_t block_cache_bytes; /* shared LRU block cache [256 MiB] */
	size_t write_buffer_bytes; /* memtable size of minutes and hours [64 MiB] */
	bool sync; /* fsync the WAL on every batch [false: a process crash loses nothing, a power cut ~1 s] */
	const char *rocksdb_log_dir; /* RocksDB's own LOG files, at INFO level [NULL: only a header in data_dir, because
				      * a LOG on a full data disk aborts Debian's librocksdb; docs/storage.md] */
	unsigned queue_minutes; /* sink queue bound, in closed minutes and checkpoints [64: an hour of outage] */
	size_t queue_records; /* sink queue bound, in series-minutes [4M: a few GiB at most while the store is down] */
	unsigned retry_min_ms, retry_max_ms; /* write retry backoff [100, 5000] */
	unsigned stop_timeout_ms; /* dts_storage_sink_stop keeps retrying this long before dropping [30000] */
	dts_storage_clock_fn clock; /* NULL: time() */
	void *clock_ctx;
	dts_storage_log_fn log; /* NULL: silent */
	void *log_ctx;
};

/* The defaults in brackets above. */
void dts_storage_cfg_defaults(struct dts_storage_cfg *cfg);

struct dts_storage;

/*
 * Open (read-write: create) the store. On failure returns NULL with errno set and a one-line message in err naming
 * the path and RocksDB's reason (bad path, permissions, lock held by another process, not a DaTtSs store, a schema
 * newer than DTS_STORAGE_SCHEMA_VERSION). cfg is copied. Any thread; blocking (disk I/O, WAL replay).
 */
struct dts_storage *dts_storage_open(const struct dts_storage_cfg *cfg, char *err, size_t err_len);

/* Close the store. A running sink must have been stopped first. NULL is a no-op. */
void dts_storage_close(struct dts_storage *st);

/* The compression in use: "lz4+zstd" (LZ4, ZSTD on the bottommost level), "snappy" or "none". */
const char *dts_storage_compression(const struct dts_storage *st);

/* Secondary mode: apply the primary's newer writes. Returns 0, -EIO (message in err), -EINVAL (not secondary). */
int dts_storage_catch_up(struct dts_storage *st, char *err, size_t err_len);

/* ---- writing (single writer: see Threading) -------------------------------------------------------------------- */

/*
 * Store one closed minute in one WriteBatch: each record's minute (merged into a stored value of that minute if one
 * exists), the high-water mark, and the deletion of the minute's checkpoint data. The hour: when it is not rolled up
 * yet, a rollup marker for each series that has none for that hour (the writer remembers which it stored); when it is
 * (late data), a read-merge-write of the hour value. cm->late changes nothing here: what to read follows from the
 * high-water mark and hour_done. Records whose identity cannot be a key are skipped and counted (DTS_SDROP_INVALID).
 * A minute above the high-water mark whose hour is not rolled up (the usual close: puts only, no reads) is committed
 * in parts of ~8 MB by the store's committer threads while the next part is built, the high-water mark and the
 * checkpoint deletion in the last part (docs/storage.md, "Closing a minute"): on error some of its series may be
 * stored, with complete values, and a retry puts the same values again. Any other minute: nothing is written on error.
 * Returns 0, -EIO (RocksDB failed: retry later), -ENOMEM, -EROFS (opened read-only/secondary).
 * cm stays the caller's. Blocking; any thread (serialised with the other writers).
 */
int dts_storage_write_minute(struct dts_storage *st, const struct dts_closed_minute *cm);

/* Store a checkpoint of an open minute (cm->open) in the current CF as chunks (format 2) after the minute's earlier
 * ones: its copies of the series replace their earlier ones; the minute's other series keep theirs. A full checkpoint
 * (!cm->partial) also deletes the minute's earlier chunks and format-1 rows. Committed in parts of ~8 MB: on error
 * some of its series may be stored (each whole). Returns 0, -EIO, -ENOMEM, -EROFS. As dts_storage_write_minute
 * otherwise. */
int dts_storage_write_checkpoint(struct dts_storage *st, const struct dts_closed_minute *cm);

/*
 * Startup: give back the checkpoints left by a crash, each series of a minute in its newest copy (chunks by SEQ, then
 * format-1 rows; undecodable records are logged and skipped). A checkpointed minute the merger still has a window for
 * (now_minute - 1 .. now_minute + 1) is merged into it with dts_merger_restore; an older one is stored as a closed
 * minute (merge rule) and its rows deleted; m may be NULL, and then every checkpoint is stored that way. Returns the
 * records restored or stored, or -errno. Call on the merger thread (a registered RCU thread) before its first
 * dts_merger_step, with the sink already started or not (the writes serialise with the storage thread's).
 */
long dts_storage_restore(struct dts_storage *st, struct dts_merger *m, int64_t now_ms);

/*
 * Hourly rollups. An hour is rolled up once the minute DTS_STORAGE_ROLL_DELAY_MIN after its end has been stored: the
 * engine hands over late data (native partials up to DTS_NATIVE_MAX_PAST_S = 300 s old) as late parts of closed
 * minutes, so by then the hour's minutes are normally all in. Data that comes even later is still merged into the
 * hour, at the cost of a read. The storage thread rolls in chunks of about DTS_STORAGE_ROLL_BUDGET_US between queued
 * minutes, so a closed minute waits at most about that long behind the roller.
 */
#define DTS_STORAGE_ROLL_DELAY_MIN 6
#define DTS_STORAGE_ROLL_BUDGET_US 3000 /* plus the chunk's commit (<= 1,024 hour values): ~5 ms in all */
#define DTS_STORAGE_ROLL_DUE INT64_MIN /* last_hour of dts_storage_roll_hours: the hours due by the rule above */

/*
 * Roll up the hours not yet rolled up, up to last_hour (unix seconds / 3600; DTS_STORAGE_ROLL_DUE: those due), oldest
 * first: for every series with a marker (for a new store's first hour, meta "hour_scan": every series of the minutes
 * family), its minutes of the hour (one iterator range) merged in time order into the hour value; the hour's markers
 * are then deleted and meta "hour_done" set in one batch. Rolling an hour that is still open is allowed (tests,
 * tools): its later minutes then read-merge-write it. budget_us > 0: one chunk of about that long and at most 1,024
 * series (what the storage thread does between minutes); 0: everything up to last_hour.
 * Returns the series rolled up or, in a scanned hour, visited (0: nothing was due), -EIO (RocksDB: the chunk changed nothing, call again), -ENOMEM,
 * -EROFS. Blocking; any thread (serialised with the other writers). The sink's storage thread calls it by itself;
 * call it only without a sink, or in tests and tools.
 */
long dts_storage_roll_hours(struct dts_storage *st, int64_t last_hour, unsigned budget_us);

/* Flush the memtables of minutes and hours to SST files (tests, tools). Returns 0 or -EIO. */
int dts_storage_flush(struct dts_storage *st);

/* Compact a whole column family now, running the retention filter (tests; operators: see docs/operations.md).
 * Returns 0 or -EIO. Blocking; read-write mode only (-EROFS). */
int dts_storage_compact(struct dts_storage *st, enum dts_res res);

/*
 * RocksDB checkpoint of the live store into dir (which must not exist): hard links on the same filesystem, a
 * consistent copy that `ldb` and `dattss inspect` can open without touching the daemon's files. Returns 0, -EIO
 * (message in err), -EROFS. Read-write mode only (RocksDB needs the primary; `ldb checkpoint` cannot do it on a
 * live store because the daemon holds the LOCK).
 */
int dts_storage_checkpoint(struct dts_storage *st, const char *dir, char *err, size_t err_len);

/* ---- the sink (merger -> storage thread) ----------------------------------------------------------------------- */

struct dts_storage_sink;

/*
 * Start the storage thread and its queue. Returns NULL with errno set (and err) on failure; at most one sink per
 * store. Then put dts_storage_sink_get() into dts_merger_cfg.sink.
 */
struct dts_storage_sink *dts_storage_sink_start(struct dts_storage *st, char *err, size_t err_len);

/*
 * The engine callbacks. minute_closed queues the closed minute; checkpoint queues it only while the queue is less
 * than half full (checkpoints never crowd out closed minutes). A full queue releases cm at once and counts the drop.
 * Both run on the merger thread, never block, take no lock, and do O(1) work except when dropping (the release).
 */
struct dts_sink dts_storage_sink_get(struct dts_storage_sink *s);

/*
 * Stop: write everything queued (retrying failed writes for up to stop_timeout_ms, then dropping and counting what
 * is left), join the thread, free. Call after the merger is destroyed (its destroy closes the open minutes into the
 * sink). NULL is a no-op.
 */
void dts_storage_sink_stop(struct dts_storage_sink *s);

/*
 * The daemon is stopping: the closed minutes still to be written are the last ones before dts_storage_close. From now
 * on the sink switches the minutes family's memtable for a flush after a large close only when another closed minute
 * is queued behind it (a flush still running when RocksDB closes is waited for, then thrown away: the last closes stay
 * in the memtable and the WAL, which the next open replays), each closed minute written is logged at info level
 * (otherwise debug), and dts_storage_close syncs the WAL before closing. Any thread; idempotent. Call it before the
 * merger's destroy hands over the open minutes.
 */
void dts_storage_stopping(struct dts_storage *st);

/* ---- statistics ------------------------------------------------------------------------------------------------ */

/*
 * Each counter has exactly one writer (the storage thread, or the merger thread for the queue_full drops and the
 * enqueue counters) and is read with relaxed loads: fine for /metrics. Monotonic unless marked gauge.
 */
struct dts_storage_stats {
	uint64_t batches; /* WriteBatches committed (closed minutes' parts and checkpoints) */
	uint64_t minutes_written; /* closed minutes committed */
	uint64_t records_written; /* series-minutes committed */
	uint64_t records_merged; /* of those, merged into an already stored minute (late data, restart) */
	uint64_t checkpoints_written;
	uint64_t
		checkpoints_skipped; /* superseded by a newer checkpoint or the close of the same minute in the queue */
	uint64_t checkpoints_dropped; /* refused: queue at least half full (merger thread) */
	uint64_t checkpoints_failed; /* written once and failed: not retried, the merger's next checkpoint is full */
	uint64_t bytes_written; /* WriteBatch bytes (keys, values, batch overhead) */
	uint64_t batch_ns_last; /* gauge: build + commit time of the last batch */
	uint64_t batch_ns_max;
	uint64_t batch_ns_total;
	uint64_t write_errors; /* failed batch commits (each is retried) */
	uint64_t retries;
	uint64_t corrupt_values; /* stored values that could not be decoded and were replaced by the incoming one */
	uint64_t queue_minutes; /* gauge: closed minutes and checkpoints waiting */
	uint64_t queue_records; /* gauge: their records */
	uint64_t dropped_minutes[DTS_SDROP_COUNT]; /* whole closed minutes (QUEUE_FULL, WRITE_FAILED) */
	uint64_t dropped_records[DTS_SDROP_COUNT]; /* series-minutes, whatever the reason */
	int64_t hwm_minute; /* gauge: highest minute stored (unix seconds / 60), -1 when none */
	/* hourly rollups (storage thread) */
	uint64_t markers_written; /* rollup markers put by minute closes (one per series and hour, some pre-marked) */
	uint64_t hours_late; /* series-minutes whose hour was already rolled up: read-merge-written into it */
	uint64_t hours_rolled; /* hours whose rollup completed (markers deleted, hour_done advanced) */
	uint64_t series_rolled; /* markers rolled up (an hour value written, or kept or not needed: docs/storage.md) */
	uint64_t roll_chunks; /* rollup batches committed */
	uint64_t roll_ns_last; /* gauge: time of the last chunk (reads, merges, commit) */
	uint64_t roll_ns_max;
	uint64_t roll_ns_total;
	uint64_t roll_errors; /* failed chunks (each is redone) */
	int64_t hour_done; /* gauge: every hour up to this one (unix seconds / 3600) is in hours; -1 when none */
	uint64_t minute_parts; /* WriteBatches of closed minutes: a large minute that only puts is committed in parts */
};

/* Any thread, any time (relaxed loads). */
void dts_storage_stats_read(const struct dts_storage *st, struct dts_storage_stats *out);

/* Column family names in the order of struct dts_storage_usage's arrays: minutes, hours, current, events, meta. */
#define DTS_STORAGE_CF_COUNT 5
extern const char *const dts_storage_cf_names[DTS_STORAGE_CF_COUNT];

/* Space used per column family, from RocksDB's properties (cheap: no I/O). */
struct dts_storage_usage {
	uint64_t sst_bytes[DTS_STORAGE_CF_COUNT]; /* "rocksdb.total-sst-files-size" (live + obsolete not yet deleted) */
	uint64_t live_bytes[DTS_STORAGE_CF_COUNT]; /* "rocksdb.estimate-live-data-size" */
	uint64_t memtable_bytes[DTS_STORAGE_CF_COUNT]; /* "rocksdb.cur-size-all-mem-tables" */
	uint64_t keys[DTS_STORAGE_CF_COUNT]; /* "rocksdb.estimate-num-keys" (an estimate) */
};

/* Fill u (0 for a family not open). Any thread. Returns 0. */
int dts_storage_usage(struct dts_storage *st, struct dts_storage_usage *u);

/* ---- reading (any thread; each call uses one iterator per family it reads and no point lookups) ---------------- */

/*
 * Visit the points of one series (SERIES as encoded above, NUL-terminated) at res over [from_s, to_s), in time
 * order. t is the start of the minute or hour (unix seconds). v is NULL for a value that cannot be decoded (newer
 * version or damaged): such points are reported, not hidden. v is valid only during the call. Returning non-zero
 * from fn stops the walk. Hours: every hour up to hour_done comes from the hours family; a later hour (not rolled up
 * yet) is the merge of its minutes, computed on the fly with a second iterator, equal to what the roller will store
 * (a stored value is used for such an hour only when it has no minutes, or when its minutes may have expired: see
 * dts_storage_roll_hours). Returns the points visited, or -EINVAL (bad series), -EIO, -ENOMEM.
 */
typedef int (*dts_storage_point_fn)(void *ctx, int64_t t, const struct dts_stored *v);
long dts_storage_read(struct dts_storage *st, enum dts_res res, const char *series, int64_t from_s, int64_t to_s,
		      dts_storage_point_fn fn, void *ctx);

/* The summary of one bucket (several minutes merged). Fields without meaning for the type are NAN. */
struct dts_bucket {
	unsigned minutes; /* minutes with data in the bucket; 0 = no data (every field NAN) */
	double count, sum, min, max, avg; /* avg = sum / count */
	double bot10, top10, p50, p99; /* timers: from the merged sketch */
	double distinct; /* sets: of the merged set */
};

/*
 * "The same bucket over the last days": day[0] summarises [bucket_s, bucket_s + bucket_len_s) (today), day[d] the
 * same interval d * 86400 s earlier (d = 1..days); avg is the field-by-field average of day[1..days] over the days
 * that have data (avg.minutes = days with data). day may be NULL; otherwise it has days + 1 entries. One iterator,
 * days + 1 seeks. Returns the number of past days with data, or -EINVAL (bad series, days 0 or > 366, bucket_len_s 0
 * or > 86400), -EIO, -ENOMEM.
 */
int dts_storage_week_bucket(struct dts_storage *st, const char *series, int64_t bucket_s, unsigned bucket_len_s,
			    unsigned days, struct dts_bucket *day, struct dts_bucket *avg);

/*
 * Listing by key scan, skipping each name with one Seek past it (cost: one seek per name listed, not per key; at hour
 * resolution one per name in each of the hours and minutes families: the union, so that series whose hours are not
 * rolled up yet are listed).
 * Names come in key order, i.e. ordered as "name/" (series: as "SERIES|"), so "alice.b" comes before "alice" and a
 * tagged series before its untagged one; sort them if a display needs another order. Names are passed without NUL
 * termination; returning non-zero from fn stops. Return the count listed or -errno.
 *   users:     every USER in res's CF
 *   processes: every PROCESS of user
 *   series:    every SERIES of user (process NULL) or of user/process
 */
typedef int (*dts_storage_name_fn)(void *ctx, const char *name, size_t len);
long dts_storage_list_users(struct dts_storage *st, enum dts_res res, dts_storage_name_fn fn, void *ctx);
long dts_storage_list_processes(struct dts_storage *st, enum dts_res res, const char *user, dts_storage_name_fn fn,
				void *ctx);
long dts_storage_list_series(struct dts_storage *st, enum dts_res res, const char *user, const char *process,
			     dts_storage_name_fn fn, void *ctx);

/* ---- events and process states ---------------------------------------------------------------------------------
 *
 * Written by the storage thread from the merger's event batches (struct dts_event_batch, sink callback `events`),
 * read back at startup into the merger (dts_storage_restore_state). docs/storage.md has the same tables.
 *
 *   CF       key                              value
 *   events   USER '/' KIND '/' SEQ            event value v1      KIND: "error" | "warning"
 *                                                                 SEQ: the event's seq, 20 decimal digits (zero-padded)
 *   current  "p/" USER '/' PROCESS            process value v1    (after every checkpoint key: 'p' is not a digit)
 *
 *   USER, PROCESS: printable ASCII (0x21..0x7e) other than '/' and '|', as in SERIES. Fixed-width SEQ makes byte order
 *   arrival order: one user's events of one kind are contiguous and oldest first ("USER/error/" begins exactly them).
 *   Only the last DTS_EVENTS_KEPT per user and kind are kept: each stored event deletes the one it pushed out of the
 *   merger's memory (evicted_seq), and dts_storage_restore_state deletes any older leftover.
 *
 * Event value (version 1, little-endian; exactly 29 + P + T bytes):
 *   offset  size  field
 *   0       1     version = 1
 *   1       1     kind: 0 error, 1 warning (equals the key's KIND)
 *   2       8     seq u64 (equals the key's SEQ)
 *   10      8     ts_ms i64: when the client reported it (client clock)
 *   18      8     recv_ms i64: when the server received it
 *   26      1     P: process length, 1 .. DTS_MAX_NAME
 *   27      P     process
 *   27+P    2     T: text length u16, 0 .. DTS_NATIVE_MAX_TEXT
 *   29+P    T     text (UTF-8, no NUL)
 *
 * Process value (version 1, little-endian; exactly 82 bytes):
 *   offset  size  field
 *   0       1     version = 1
 *   1       1     flags: bit 0 online, bit 1 has_stats, bit 2 has_uptime; bits 3-7 zero
 *   2       8     last_heard_ms i64
 *   10      8     online_since_ms i64 (0 while offline)
 *   18      8     stats_ms i64: when the statistics were received (0: never)
 *   26      4     restarts u32
 *   30      8     last_restart_ms i64 (0: never)
 *   38      8     instance u64 (0: unknown)
 *   46      36    statistics, the native protocol's layout (docs/protocol.md 3.2): uptime_s u32, rss_bytes u64,
 *                 cpu_us u64, cpu_pct f32, errors u32, warnings u32, dropped u32
 */

#define DTS_STORAGE_EVENT_VERSION 1
#define DTS_STORAGE_EVENT_FIXED 29 /* value bytes besides the process and the text */
#define DTS_STORAGE_PROCESS_VERSION 1
#define DTS_STORAGE_PROCESS_VALUE 82
/* Longest keys: events USER/warning/SEQ, current p/USER/PROCESS (DTS_NATIVE_MAX_PROCESS < DTS_MAX_NAME). */
#define DTS_STORAGE_EVENT_KEY_MAX (DTS_MAX_USER + 1 + 7 + 1 + 20)
#define DTS_STORAGE_PROCESS_KEY_MAX (2 + DTS_MAX_USER + 1 + DTS_MAX_NAME)

/* "error" / "warning"; NULL for another kind. Pure. */
const char *dts_storage_event_kind_name(unsigned kind);

/* Keys (NUL-terminated). Return the length, -EINVAL (user or process empty, too long, or with a byte keys cannot
 * carry; kind unknown), -ENOSPC (buf too small; the _KEY_MAX sizes + 1 always suffice). Pure. */
int dts_storage_event_key(char *buf, size_t buf_len, const char *user, unsigned kind, uint64_t seq);
int dts_storage_process_key(char *buf, size_t buf_len, const char *user, const char *process);

/*
 * Values. encode returns the bytes written or -ENOSPC / -EINVAL (a string too long or empty, kind unknown, an event's
 * process with a byte keys cannot carry or its text with a NUL). decode
 * parses exactly len bytes; strings in *out point into buf (not NUL-terminated: lengths in the _len outputs), so copy
 * them before buf goes. Returns 0, -EPROTONOSUPPORT (newer version) or -EINVAL (also for an event encode would refuse).
 * Pure.
 */
struct dts_stored_event {
	struct dts_event ev; /* ev.user is NULL (the key has it); ev.process and ev.text point into the value */
	size_t process_len;
};
int dts_storage_event_encode(const struct dts_event *ev, uint8_t *buf, size_t buf_len);
int dts_storage_event_decode(const uint8_t *buf, size_t len, struct dts_stored_event *out);
/* The process value: identity (user, process) and removed are not stored (the key holds the identity). */
int dts_storage_process_encode(const struct dts_process *p, uint8_t *buf, size_t buf_len);
int dts_storage_process_decode(const uint8_t *buf, size_t len, struct dts_process *out);

/*
 * Write one batch in one WriteBatch: each event (and the deletion of the event it pushed out), each process state
 * (deleted when removed). Entries whose identity cannot be a key are skipped. Returns 0, -EIO (RocksDB: retry),
 * -ENOMEM, -EROFS. b stays the caller's. Blocking; any thread (the storage thread normally).
 */
int dts_storage_write_events(struct dts_storage *st, const struct dts_event_batch *b);

/*
 * Read back. Events: user's (NULL: every user's), in key order (user, kind, seq), NUL-terminated strings valid during
 * the call. Processes: user's (NULL: all). Undecodable values are skipped and counted in the return of neither.
 * Returning non-zero from fn stops. Return the number visited, or -EIO / -ENOMEM / -EINVAL (a user keys cannot carry).
 * Any thread.
 */
long dts_storage_read_events(struct dts_storage *st, const char *user, dts_event_visit_fn fn, void *ctx);
long dts_storage_read_processes(struct dts_storage *st, const char *user, dts_process_visit_fn fn, void *ctx);

/*
 * Startup, next to dts_storage_restore: every stored process state and the last DTS_EVENTS_KEPT events of each user
 * and kind go back into m (dts_merger_restore_process / _event), and older events left behind (a batch dropped while
 * the store failed) are deleted. m NULL only trims. Returns the states and events restored, or -errno. Merger thread
 * (a registered RCU thread) before its first dts_merger_step.
 */
long dts_storage_restore_state(struct dts_storage *st, struct dts_merger *m, int64_t now_ms);

/* Counters of the events path (the sink's event queue and its writes). Writers: the merger thread (queued, dropped
 * at the queue) and the storage thread; read with relaxed loads. All zero while no sink runs. */
struct dts_storage_event_stats {
	uint64_t batches_queued;
	uint64_t batches_written;
	uint64_t batches_dropped; /* queue full (1024 batches), or still failing after 10 s of retries */
	uint64_t events_written;
	uint64_t processes_written;
	uint64_t write_errors; /* failed commits (each retried) */
	uint64_t queue; /* gauge: batches waiting */
};

void dts_storage_event_stats_read(const struct dts_storage *st, struct dts_storage_event_stats *out);

#endif /* DTS_STORAGE_H */
