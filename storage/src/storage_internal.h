/*
 * storage_internal.h - the store's private state, shared by the files of storage/src (prefix dts__).
 *
 * Who touches what:
 *   db, cf[], ro, wo, cfg, data_dir, compression     set by dts_storage_open, read-only afterwards (any thread)
 *   hwm, scratch (wr_*), rollup state (roll_*,       under write_lock (the single writer: the storage thread, or
 *   hsets)                                           dts_storage_restore before the merger runs)
 *   hour_done                                        written under write_lock (read-write mode) or by
 *                                                    dts_storage_catch_up (secondary); read by any reader with
 *                                                    acquire loads (dts__hour_done)
 *   stats                                            each field has one writer (see dts/storage.h), relaxed atomics
 *   sink                                             set/cleared by dts_storage_sink_start/stop (the owner thread)
 */
#ifndef DTS_STORAGE_INTERNAL_H
#define DTS_STORAGE_INTERNAL_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>

#include "dts/storage.h"

/* Column family indices; the order of dts__cf_names. "default" must exist in every RocksDB and is unused. */
enum {
	DTS__CF_DEFAULT = 0,
	DTS__CF_MINUTES,
	DTS__CF_HOURS,
	DTS__CF_CURRENT,
	DTS__CF_EVENTS,
	DTS__CF_META,
	DTS__CF_COUNT,
};
extern const char *const dts__cf_names[DTS__CF_COUNT];

/* Relaxed single-writer counter update (a plain load and store on x86), as in the engine. */
#define DTS__SSTAT_ADD(field, n)                                                                                     \
	__atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define DTS__SSTAT_SET(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

/* The retention filter of one column family (state of its compaction filter factory). */
struct dts__retention {
	struct dts_storage *st;
	enum dts_res res;
	unsigned days;
};

/*
 * A WriteBatch laid out in a reusable buffer (batch.c): reset, add records, finish into a rocksdb_writebatch_t (one
 * exact-size copy). An allocation failure is remembered in err and returned by every later call; finish then returns
 * NULL. One owner (the writer, under write_lock).
 */
struct dts__batch {
	uint8_t *p;
	size_t len, cap;
	uint32_t count;
	int err;
};

/*
 * Ask for transparent huge pages on the 2 MiB-aligned part of a large buffer (the writer's scratch, sized by the
 * number of series: tens of MB at 1M series). Its first use then takes one page fault per 2 MiB instead of one per
 * 4 KiB, which is most of what a store's first close of 1M series paid extra on a VM. Advice only: ignored where THP
 * is off, and small buffers are left alone.
 */
void dts__advise_huge(void *p, size_t n);

void dts__batch_reset(struct dts__batch *b);
void dts__batch_free(struct dts__batch *b);
/* Append a put of vlen value bytes and return where the caller writes them (NULL: out of memory). */
uint8_t *dts__batch_put_begin(struct dts__batch *b, uint32_t cf_id, const char *key, size_t klen, size_t vlen);
int dts__batch_put(struct dts__batch *b, uint32_t cf_id, const char *key, size_t klen, const void *val, size_t vlen);
int dts__batch_delete_range(struct dts__batch *b, uint32_t cf_id, const char *begin, size_t blen, const char *end,
			    size_t elen);
rocksdb_writebatch_t *dts__batch_finish(struct dts__batch *b);

struct dts_storage {
	rocksdb_t *db;
	rocksdb_column_family_handle_t *cf[DTS__CF_COUNT]; /* NULL for a family absent in a read-only open */
	uint32_t cf_id[DTS__CF_COUNT]; /* RocksDB's id of each family (for dts__batch) */
	rocksdb_column_family_handle_t **extra_cf; /* families we do not know (opened because RocksDB requires it) */
	size_t n_extra_cf;
	rocksdb_options_t *dbopts;
	rocksdb_options_t *cfopts[DTS__CF_COUNT]; /* [DTS__CF_DEFAULT] unused: dbopts holds the default family's */
	rocksdb_cache_t *cache;
	rocksdb_writeoptions_t *wo;
	rocksdb_readoptions_t *ro_get; /* for the writer's MultiGets */
	rocksdb_flushoptions_t *fo_nowait; /* the writer's memtable switch after a large close (write.c) */
	struct dts__retention retention[2]; /* minutes, hours */
	struct dts_storage_cfg cfg; /* copy; the strings point into data_dir / secondary_dir below */
	char *data_dir, *secondary_dir;
	const char *compression;

	pthread_mutex_t write_lock;
	int64_t hwm; /* highest minute stored (unix seconds / 60), INT64_MIN when none; under write_lock */
	uint8_t *wr_buf; /* value encoding scratch; under write_lock */
	size_t wr_buf_cap;
	char *wr_keys; /* key arena for one chunk of records; under write_lock */
	char *wr_series; /* "SERIES|" of every record of the minute being written; under write_lock */
	size_t wr_series_cap;
	void *wr_items, *wr_sort; /* the minute's items and their sort keys (write.c); under write_lock */
	size_t wr_items_cap, wr_sort_cap; /* in elements */
	struct dts_stored wr_tmp; /* decoded stored value; under write_lock */
	struct dts__batch wr_batch; /* the batch being built; under write_lock (its buffer is kept between minutes) */
	char last_err[512]; /* RocksDB's message of the last failed write; under write_lock (or by the committer while
			     * the writer waits for it) */
	struct dts__committer *committer; /* commits a closed minute's parts (write.c); started by the first split
					   * minute, stopped by dts_storage_close; under write_lock */
	_Atomic bool stopping; /* dts_storage_stopping was called: no memtable switch after a close, WAL synced at close */
	/* Checkpoints (ckpt.c), under write_lock: the chunk being built, the batch of a checkpoint's part (kept: its
	 * buffer is reused), the next chunk SEQ, and the minutes whose stored SEQs are known to be below it. */
	uint8_t *ck_buf;
	rocksdb_writebatch_t *ck_wb;
	uint64_t ck_seq;
#define DTS__CK_SEEN 8
	int64_t ck_seen[DTS__CK_SEEN];
	unsigned ck_seen_n; /* minutes looked up so far; the last DTS__CK_SEEN are in ck_seen */

	/* Hourly rollup (roll.c; docs/storage.md "Hourly rollups"). */
	int64_t hour_done; /* every hour <= it is complete in hours (meta "hour_done"); INT64_MIN: none yet */
	int64_t roll_hour; /* the hour being rolled up, INT64_MIN when none; under write_lock */
	char roll_cursor[DTS_STORAGE_SERIES_MAX + 1]; /* the last SERIES of roll_hour rolled up (marker key order) */
	size_t roll_cursor_len; /* 0: none yet */
	int64_t roll_next; /* hint: no marker below this hour (INT64_MAX: none known); under write_lock */
	int64_t scan_hour; /* a new store's first hour, rolled up by scanning the minutes family instead of markers
			    * (meta "hour_scan"); INT64_MIN: none. Set by the first close, cleared by the chunk that
			    * rolls it up; under write_lock */
	bool roll_scan; /* roll_hour is scan_hour: roll_cursor is in minute key order ("SERIES|"), not marker order */
	struct dts__hourset **hsets; /* per hour with markers: the series whose marker is stored; under write_lock */
	size_t n_hsets;
	struct dts_stored roll_acc, roll_tmp; /* the roller's scratch; under write_lock */
	int64_t roll_fail_logged_ns; /* storage thread: when a failing rollup was last logged */

	struct dts_storage_stats stats;
	/* Queue accounting, monotonic: enq_* written by the sink's producer (merger thread), deq_* by the storage
	 * thread; the depth is their difference. Kept here, not in the sink, so stats stay readable after a stop. */
	uint64_t q_enq_minutes, q_enq_records, q_deq_minutes, q_deq_records;
	struct dts_storage_sink *sink; /* the running sink, if any (set and cleared by its owner thread) */
	struct dts__evq *evq; /* the running sink's queue of event batches (events.c); set and cleared with sink */
};

int64_t dts__days_from_civil(int64_t y, unsigned m, unsigned d);
void dts__civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);
const char *dts__type_key_name(unsigned type);
int dts__type_from_name(const char *s, size_t n);

/* Write batch b (len bytes, for the counters) with the store's write options: 0, or -EIO with last_err set and
 * write_errors counted; batches and bytes_written counted on success. b is left as it is. Storage or committer thread. */
int dts__write(struct dts_storage *st, rocksdb_writebatch_t *b, size_t len);

/* Stop and free the committer thread (dts_storage_close; no writer running). */
void dts__committer_stop(struct dts_storage *st);

/* After a large close: switch the minutes family's memtable for a flush when it holds more than write_buffer_bytes,
 * without waiting (write.c). dts_storage_write_minute calls it, except while stopping: then the sink does, only when
 * another closed minute is queued (a flush started after the last close would be discarded by rocksdb_close). */
void dts__flush_after_close(struct dts_storage *st);

/* Account the build + commit time of a closed minute or a checkpoint that began at t0 (batch_ns_*); under write_lock. */
void dts__account_latency(struct dts_storage *st, int64_t t0);

/* Copy the last write error's message (takes write_lock). */
void dts__last_error(struct dts_storage *st, char *buf, size_t len);

/* The clock of the retention filters: cfg.clock or time(). */
int64_t dts__now_s(const struct dts_storage *st);

/* Monotonic nanoseconds (batch latency). */
int64_t dts__mono_ns(void);

/*
 * events.c: the queue of event batches from the merger (producer: dts__evq_push) to the storage thread (consumer:
 * dts__evq_drain writes what is queued; a failed write stays queued and is retried at the next call, dropped and
 * counted after DTS__EVQ_RETRIES, or at once when stopping). The sink creates it before its thread and destroys it
 * after the join (queued batches are then released and counted as dropped).
 */
struct dts__evq;
struct dts__evq *dts__evq_create(void);
void dts__evq_destroy(struct dts__evq *q);
void dts__evq_push(struct dts__evq *q, struct dts_event_batch *b);
void dts__evq_drain(struct dts_storage *st, bool stopping);

/*
 * roll.c: hourly rollups. Markers ("hourq|" HOUR '|' SERIES in current) say which series have minutes in an hour not
 * yet rolled up; the writer adds them (write.c), the roller turns them into hour values and meta "hour_done".
 */
#define DTS__MARKER_PREFIX "hourq|"
#define DTS__MARKER_PREFIX_LEN 6
#define DTS__MARKER_KEY_MAX (DTS__MARKER_PREFIX_LEN + DTS_STORAGE_TIME_LEN_HOUR + 1 + DTS_STORAGE_SERIES_MAX)

/* meta "hour_scan" = YYYYMMDDTHH: the first hour of a new store, whose closes put no markers; the roller rolls it up
 * by walking the minutes family, which holds little else then (docs/storage.md, "Hourly rollups"). */
#define DTS__META_HOUR_SCAN "hour_scan"
#define DTS__META_HOUR_SCAN_LEN 9

/* Seeds of the two 64-bit hashes (dts_hash64 of the SERIES bytes) that identify a series in the writer's marker sets
 * (128 bits: a collision, which would leave one series-hour without its rollup, is out of reach at any number of
 * series). */
#define DTS__MARK_SEED_A 0x6d61726b65723161ULL
#define DTS__MARK_SEED_B 0x9b1f3c7d5e2a4f61ULL

/* The series (SERIES bytes) with a stored marker for one hour: an open-addressing set of 128-bit hashes. */
struct dts__hourset {
	int64_t hour;
	uint64_t (*slot)[2]; /* {0, 0}: empty */
	size_t cap, n; /* cap: a power of two, or 0 */
};

/* "hourq|" YYYYMMDDTHH '|' SERIES into buf (DTS__MARKER_KEY_MAX bytes suffice). Returns the length or -EINVAL. */
int dts__marker_key(char *buf, int64_t hour, const char *series, size_t sl);

/* Is the hour of SERIES (sl bytes, no '|') already rolled up, so that new minutes must read-merge-write it? The other
 * case adds a marker (none in scan_hour). Under write_lock. */
bool dts__hour_rolled(const struct dts_storage *st, int64_t hour, const char *series, size_t sl);
/* Can dts__hour_rolled be true for any series of hour (then a minute of it may read-merge-write its hour)? */
bool dts__hour_rolled_any(const struct dts_storage *st, int64_t hour);

/* Marker bookkeeping of the writer: the set of hour (created when absent; NULL: out of memory; stays valid until that
 * hour is forgotten), and forgetting one hour's set (after a failed batch: its markers may not be stored; the next
 * minutes put them again). */
struct dts__hourset *dts__hourset_get(struct dts_storage *st, int64_t hour);
/* Add the series with hashes (a, b); returns true when it was already there. Out of memory: false, not added. */
bool dts__hourset_test_add(struct dts__hourset *hs, uint64_t a, uint64_t b);
/* Size the set for n series at once (a minute's series: no rehash on the way); out of memory: left as it is. */
void dts__hourset_reserve(struct dts__hourset *hs, size_t n);
void dts__hourset_forget(struct dts_storage *st, int64_t hour);

/* Fold one stored minute (value bytes, minute offset off in its hour, the series' type) into acc; *n counts the
 * minutes folded so far (0: acc is replaced). Returns 0, 1 (undecodable or of another type: skipped), -ENOMEM. */
int dts__hour_fold(struct dts_stored *acc, unsigned *n, struct dts_stored *tmp, const uint8_t *val, size_t len,
		   uint8_t off, uint8_t type);

/* May minutes of hour (unix seconds / 3600) have been dropped by the minutes' retention already? Then a stored hour
 * value is kept rather than replaced by a rollup of what is left. */
bool dts__hour_at_risk(const struct dts_storage *st, int64_t hour);

/* Readers: hour_done (acquire). The writer and the roller publish it with a release store after the commit. */
int64_t dts__hour_done(const struct dts_storage *st);
void dts__set_hour_done(struct dts_storage *st, int64_t hour);

/* At open (db.c): load meta "hour_done"; in read-write mode also migrate a store of the previous release (hwm but no
 * hour_done: its hours were maintained minute by minute, so hour_done = the hwm's hour), find the lowest marker, and
 * load the stored markers into the writer's sets (so the first close after a restart does not put them again).
 * Returns 0 or -EIO (message in err). Secondary: reload after a catch-up. */
int dts__roll_open(struct dts_storage *st, char *err, size_t err_len);
void dts__roll_reload(struct dts_storage *st);
void dts__roll_free(struct dts_storage *st);

/*
 * One chunk of rollups in one batch: the lowest hour <= last_hour (DTS_STORAGE_ROLL_DUE: the due ones) that has
 * markers or is scan_hour, from where the previous chunk stopped, until budget_ns has passed or max_series (0: the
 * default bound) series are visited (its markers in key order; for scan_hour, the series of the minutes family in key
 * order); the chunk that reaches the end also deletes the hour's markers (and meta hour_scan) and sets hour_done.
 * *progress: a chunk was committed. Returns the series rolled up (markers, or series visited by the scan), or -errno
 * (nothing changed). Takes write_lock.
 */
long dts__roll_chunk(struct dts_storage *st, int64_t last_hour, int64_t budget_ns, size_t max_series, bool *progress);

/* The storage thread, between queued minutes: one bounded chunk of due rollups (DTS_STORAGE_ROLL_BUDGET_US). Returns
 * true when it did some work (call again after looking at the queue), false when nothing is due or it failed
 * (logged, retried at the next call). */
bool dts__roll_idle(struct dts_storage *st);

/* Log through cfg.log (printf-style); silent without one. */
void dts__log(const struct dts_storage *st, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif /* DTS_STORAGE_INTERNAL_H */
