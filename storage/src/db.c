/*
 * db.c - opening and closing the store: column families and their tuning, compression, the schema version, the
 * retention compaction filters, checkpoints, statistics.
 *
 * Why the options are what they are (docs/storage.md has the long form):
 *   - Bytewise comparator and no merge operator anywhere: `ldb` must open the store and show every value as it is.
 *     Late data is merged by read-merge-write on the single writer instead of by a merge operator.
 *   - Level compaction with dynamic level sizes: the data is append-mostly in time order per series, reads are range
 *     scans of one series, and space amplification stays near 1.1 (dynamic levels), which matters more here than
 *     write amplification (a minute of a million series is ~100 MB; the disk sees a few MB/s).
 *   - Whole-key Bloom filters (10 bits/key, full filters) on minutes and hours, not prefix filters: the writer's
 *     point reads (stored minute on late data, the hour on every minute) are whole-key lookups; series scans do one
 *     Seek per level, which a prefix filter could only shorten when the series is absent. A fixed or capped prefix
 *     does not fit a variable-length SERIES either: short enough to lie inside every series it distinguishes only
 *     users, long enough to distinguish series it runs into the time part of short keys. optimize_filters_for_hits
 *     drops the filter of the bottommost level (about 90% of the keys): the lookups that reach it are hits.
 *   - LZ4 on the upper levels (cheap, fast flushes) and ZSTD on the bottommost level (where ~90% of the bytes end up
 *     and are read rarely); values are mostly doubles and sketch bins, keys share long prefixes that the block
 *     format's delta encoding already removes.
 *   - Retention is a compaction filter that compares the key's time digits with a cutoff (no value decoding), plus
 *     periodic_compaction_seconds = 1 day so that files nobody compacts still get filtered.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage_internal.h"

const char *const dts__cf_names[DTS__CF_COUNT] = {
	"default", DTS_CF_MINUTES, DTS_CF_HOURS, DTS_CF_CURRENT, DTS_CF_EVENTS, DTS_CF_META,
};

/* Families that must exist for a read-only or secondary open to make sense. */
static const bool cf_required[DTS__CF_COUNT] = {
	[DTS__CF_DEFAULT] = true, [DTS__CF_MINUTES] = true, [DTS__CF_HOURS] = true, [DTS__CF_META] = true,
};

#define MIB ((size_t)1 << 20)

/* Compression choices, best first; the next is tried when RocksDB says the previous is not linked in. */
enum { COMP_LZ4_ZSTD, COMP_SNAPPY, COMP_NONE, COMP_CHOICES };
static const char *const comp_names[COMP_CHOICES] = { "lz4+zstd", "snappy", "none" };

void dts_storage_cfg_defaults(struct dts_storage_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->data_dir = "./data";
	cfg->mode = DTS_STORAGE_READ_WRITE;
	cfg->minutes_days = 15;
	cfg->hours_days = 400;
	cfg->block_cache_bytes = 256 * MIB;
	cfg->write_buffer_bytes = 64 * MIB;
	cfg->sync = false;
	cfg->queue_minutes = 64;
	cfg->queue_records = (size_t)4 << 20;
	cfg->retry_min_ms = 100;
	cfg->retry_max_ms = 5000;
	cfg->stop_timeout_ms = 30000;
}

const char *dts_storage_drop_name(enum dts_storage_drop d)
{
	switch (d) {
	case DTS_SDROP_QUEUE_FULL:
		return "queue_full";
	case DTS_SDROP_INVALID:
		return "invalid";
	case DTS_SDROP_WRITE_FAILED:
		return "write_failed";
	}
	return "unknown";
}

int64_t dts__now_s(const struct dts_storage *st)
{
	return st->cfg.clock ? st->cfg.clock(st->cfg.clock_ctx) : (int64_t)time(NULL);
}

int64_t dts__mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void dts__log(const struct dts_storage *st, int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!st->cfg.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st->cfg.log(st->cfg.log_ctx, level, msg);
}

static void set_err(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

/* ---- retention ------------------------------------------------------------------------------------------------- */

/* One compaction's filter: keys whose time digits sort before cutoff are dropped. */
struct ret_filter {
	char cutoff[DTS_STORAGE_TIME_LEN_MINUTE + 1];
	size_t len; /* 0: keep everything (cutoff before 1970) */
	char name[32];
};

static unsigned char ret_filter_fn(void *state, int level, const char *key, size_t klen, const char *val,
				   size_t vlen, char **new_val, size_t *new_vlen, unsigned char *changed)
{
	const struct ret_filter *f = state;
	const char *t;

	(void)level, (void)val, (void)vlen, (void)new_val, (void)new_vlen, (void)changed;
	if (f->len == 0 || klen < f->len + 2 || key[klen - f->len - 1] != '|')
		return 0; /* not a key of ours: never delete what we do not understand */
	t = key + klen - f->len;
	if (t[8] != 'T')
		return 0;
	return memcmp(t, f->cutoff, f->len) < 0;
}

static const char *ret_filter_name(void *state)
{
	return ((const struct ret_filter *)state)->name;
}

static void ret_filter_free(void *state)
{
	free(state);
}

/* Called by RocksDB at the start of each compaction of the family: the cutoff is taken from the clock now. */
static rocksdb_compactionfilter_t *ret_factory_create(void *state, rocksdb_compactionfiltercontext_t *ctx)
{
	const struct dts__retention *r = state;
	struct ret_filter *f = calloc(1, sizeof(*f));
	int64_t cut;
	int n;

	(void)ctx;
	if (!f)
		return NULL; /* RocksDB then compacts without a filter: data is kept, never lost */
	snprintf(f->name, sizeof(f->name), "dts.retention.%s", dts__cf_names[r->res == DTS_RES_HOUR ? DTS__CF_HOURS :
												DTS__CF_MINUTES]);
	cut = dts__now_s(r->st) - (int64_t)r->days * 86400;
	n = dts_storage_time_encode(f->cutoff, sizeof(f->cutoff), r->res, cut);
	f->len = n > 0 ? (size_t)n : 0;
	return rocksdb_compactionfilter_create(f, ret_filter_free, ret_filter_fn, ret_filter_name);
}

/* The factory's state is st->retention[], freed with st: RocksDB calls this destructor (never NULL) on destroy. */
static void ret_factory_free(void *state)
{
	(void)state;
}

static const char *ret_factory_name(void *state)
{
	return ((const struct dts__retention *)state)->res == DTS_RES_HOUR ? "dts.retention.hours" :
									       "dts.retention.minutes";
}

/* ---- options --------------------------------------------------------------------------------------------------- */

static void set_compression(rocksdb_options_t *o, int comp, bool compress)
{
	if (!compress || comp == COMP_NONE) {
		rocksdb_options_set_compression(o, rocksdb_no_compression);
		return;
	}
	if (comp == COMP_SNAPPY) {
		rocksdb_options_set_compression(o, rocksdb_snappy_compression);
		return;
	}
	rocksdb_options_set_compression(o, rocksdb_lz4_compression);
	rocksdb_options_set_bottommost_compression(o, rocksdb_zstd_compression);
}

/* Options of one column family. */
static rocksdb_options_t *cf_options(struct dts_storage *st, int cf, int comp)
{
	rocksdb_options_t *base = rocksdb_options_create(), *o = rocksdb_options_create();
	rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
	char *err = NULL;
	const size_t wb = st->cfg.write_buffer_bytes;

	/* periodic_compaction_seconds has no C setter: set it through the options-string parser first. */
	if (cf == DTS__CF_MINUTES || cf == DTS__CF_HOURS) {
		rocksdb_get_options_from_string(base, "periodic_compaction_seconds=86400", o, &err);
		if (err) {
			rocksdb_free(err);
			err = NULL; /* not fatal: RocksDB's default (30 days with a compaction filter) applies */
		}
	}
	rocksdb_options_destroy(base);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
	rocksdb_block_based_options_set_block_cache(t, st->cache);
	rocksdb_block_based_options_set_format_version(t, 5);
	rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
	rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
	switch (cf) {
	case DTS__CF_MINUTES:
	case DTS__CF_HOURS: {
		struct dts__retention *r = &st->retention[cf == DTS__CF_HOURS];

		/* minutes: room for a whole closed minute (~110 MB at 1M series) in the active memtable, which the
		 * writer switches after each large close (dts__flush_after_close): its flush then runs between closes,
		 * not during one */
		rocksdb_options_set_write_buffer_size(o, cf == DTS__CF_MINUTES ? 4 * wb : wb);
		rocksdb_options_set_max_write_buffer_number(o, 4);
		rocksdb_options_set_target_file_size_base(o, 64 * MIB);
		rocksdb_options_set_max_bytes_for_level_base(o, 512 * MIB);
		rocksdb_options_set_optimize_filters_for_hits(o, 1);
		rocksdb_block_based_options_set_block_size(t, 16 * 1024);
		rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom_full(10));
		set_compression(o, comp, true);
		if (st->cfg.mode == DTS_STORAGE_READ_WRITE)
			rocksdb_options_set_compaction_filter_factory(
				o, rocksdb_compactionfilterfactory_create(r, ret_factory_free, ret_factory_create,
											ret_factory_name));
		break;
	}
	case DTS__CF_CURRENT: /* checkpoints: overwritten every few seconds, scanned once at startup */
		rocksdb_options_set_write_buffer_size(o, wb / 2);
		rocksdb_options_set_max_write_buffer_number(o, 3);
		set_compression(o, comp, true);
		break;
	case DTS__CF_EVENTS: /* append-mostly, small */
		rocksdb_options_set_write_buffer_size(o, 16 * MIB);
		set_compression(o, comp, true);
		break;
	default: /* meta, default: a few keys */
		rocksdb_options_set_write_buffer_size(o, 4 * MIB);
		rocksdb_block_based_options_set_block_size(t, 4096);
		set_compression(o, comp, false);
		break;
	}
	rocksdb_options_set_block_based_table_factory(o, t); /* copies t (the filter policy and cache are shared) */
	rocksdb_block_based_options_destroy(t);
	return o;
}

static rocksdb_options_t *db_options(struct dts_storage *st, int comp)
{
	rocksdb_options_t *o = cf_options(st, DTS__CF_DEFAULT, comp);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	rocksdb_options_set_create_if_missing(o, st->cfg.mode == DTS_STORAGE_READ_WRITE);
	rocksdb_options_set_create_missing_column_families(o, st->cfg.mode == DTS_STORAGE_READ_WRITE);
	rocksdb_options_set_max_background_jobs(o, ncpu > 4 ? 4 : ncpu > 2 ? (int)ncpu : 2);
	rocksdb_options_set_bytes_per_sync(o, MIB);
	rocksdb_options_set_keep_log_file_num(o, 5);
	rocksdb_options_set_max_log_file_size(o, 16 * MIB);
	/*
	 * RocksDB's own LOG. Debian's librocksdb is built with assertions, and a LOG write that failed once (disk full)
	 * makes the next LOG line abort the process (WritableFileWriter's "sync_without_flush_called_" assertion, seen
	 * with 7.8.3). So the LOG is written at INFO level only where the operator put it (rocksdb_log_dir, another
	 * filesystem); in data_dir it gets only the header lines written at open. The daemon's own log still reports
	 * every failed write with RocksDB's message.
	 */
	if (st->cfg.rocksdb_log_dir && st->cfg.rocksdb_log_dir[0]) {
		rocksdb_options_set_db_log_dir(o, st->cfg.rocksdb_log_dir);
		rocksdb_options_set_info_log_level(o, 1); /* INFO_LEVEL */
	} else {
		rocksdb_options_set_info_log_level(o, 5); /* HEADER_LEVEL: nothing after open */
	}
	/* The meta family gets one small write per minute and would otherwise pin every WAL file until it flushes. */
	rocksdb_options_set_max_total_wal_size(o, 4 * st->cfg.write_buffer_bytes);
	rocksdb_options_set_max_open_files(o, -1); /* required by secondary instances; fine for a daemon */
	return o;
}

/* ---- open ------------------------------------------------------------------------------------------------------ */

/* mkdir -p */
static int make_dirs(const char *path, char *err, size_t err_len)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf)) {
		set_err(err, err_len, "bad data directory path '%s'", path);
		return -EINVAL;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];

		buf[i] = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
			int e = errno;

			set_err(err, err_len, "cannot create data directory '%s': %s", buf, strerror(e));
			return -e;
		}
		buf[i] = c;
	}
	struct stat sb;

	if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		set_err(err, err_len, "data directory '%s' is not a directory", path);
		return -ENOTDIR;
	}
	return 0;
}

static void free_options(struct dts_storage *st)
{
	for (int i = 0; i < DTS__CF_COUNT; i++) {
		if (st->cfopts[i])
			rocksdb_options_destroy(st->cfopts[i]);
		st->cfopts[i] = NULL;
	}
	if (st->dbopts)
		rocksdb_options_destroy(st->dbopts);
	st->dbopts = NULL;
}

/* Open with compression choice comp. Returns 0, or -errno with *rerr set to RocksDB's message (caller frees). */
static int try_open(struct dts_storage *st, int comp, char **existing, size_t n_existing, char **rerr)
{
	const char *names[DTS__CF_COUNT + 64];
	const rocksdb_options_t *opts[DTS__CF_COUNT + 64];
	rocksdb_column_family_handle_t *h[DTS__CF_COUNT + 64];
	int idx[DTS__CF_COUNT + 64]; /* our index, or -1 for an extra family */
	size_t n = 0;

	free_options(st);
	st->dbopts = db_options(st, comp);
	for (int i = 0; i < DTS__CF_COUNT; i++) {
		bool present = st->cfg.mode == DTS_STORAGE_READ_WRITE;

		for (size_t j = 0; !present && j < n_existing; j++)
			present = strcmp(existing[j], dts__cf_names[i]) == 0;
		st->cfopts[i] = i == DTS__CF_DEFAULT ? NULL : cf_options(st, i, comp);
		if (!present)
			continue;
		names[n] = dts__cf_names[i];
		opts[n] = i == DTS__CF_DEFAULT ? st->dbopts : st->cfopts[i];
		idx[n++] = i;
	}
	/* RocksDB refuses a read-write open that leaves an existing family out: open unknown ones with defaults. */
	for (size_t j = 0; j < n_existing && n < DTS__CF_COUNT + 64; j++) {
		bool ours = false;

		for (int i = 0; i < DTS__CF_COUNT; i++)
			ours = ours || strcmp(existing[j], dts__cf_names[i]) == 0;
		if (ours)
			continue;
		names[n] = existing[j];
		opts[n] = st->dbopts;
		idx[n++] = -1;
	}
	switch (st->cfg.mode) {
	case DTS_STORAGE_READ_ONLY:
		st->db = rocksdb_open_for_read_only_column_families(st->dbopts, st->data_dir, (int)n, names, opts, h, 0,
								    rerr);
		break;
	case DTS_STORAGE_SECONDARY:
		st->db = rocksdb_open_as_secondary_column_families(st->dbopts, st->data_dir, st->secondary_dir, (int)n,
								   names, opts, h, rerr);
		break;
	default:
		st->db = rocksdb_open_column_families(st->dbopts, st->data_dir, (int)n, names, opts, h, rerr);
		break;
	}
	if (*rerr)
		return -EIO;
	st->extra_cf = calloc(n, sizeof(*st->extra_cf));
	for (size_t k = 0; k < n; k++) {
		if (idx[k] >= 0) {
			st->cf[idx[k]] = h[k];
			st->cf_id[idx[k]] = rocksdb_column_family_handle_get_id(h[k]);
		} else if (st->extra_cf)
			st->extra_cf[st->n_extra_cf++] = h[k];
		else
			rocksdb_column_family_handle_destroy(h[k]);
	}
	st->compression = comp_names[comp];
	return 0;
}

static int check_schema(struct dts_storage *st, bool fresh, char *err, size_t err_len)
{
	char *rerr = NULL, *val;
	size_t vlen;
	char buf[32];
	long v;

	val = rocksdb_get_cf(st->db, st->ro_get, st->cf[DTS__CF_META], "schema_version", 14, &vlen, &rerr);
	if (rerr) {
		set_err(err, err_len, "cannot read the schema version of store '%s': %s", st->data_dir, rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	if (!val) {
		if (st->cfg.mode != DTS_STORAGE_READ_WRITE || !fresh) {
			set_err(err, err_len,
				"'%s' is not a DaTtSs store (no schema_version in its meta column family)",
				st->data_dir);
			return -EINVAL;
		}
		snprintf(buf, sizeof(buf), "%d", DTS_STORAGE_SCHEMA_VERSION);
		rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_META], "schema_version", 14, buf, strlen(buf), &rerr);
		if (rerr) {
			set_err(err, err_len, "cannot write the schema version of store '%s': %s", st->data_dir, rerr);
			rocksdb_free(rerr);
			return -EIO;
		}
		return 0;
	}
	snprintf(buf, sizeof(buf), "%.*s", (int)(vlen < 31 ? vlen : 31), val);
	rocksdb_free(val);
	char *end;

	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno || end == buf || *end || v < 1) {
		set_err(err, err_len, "store '%s' has an unreadable schema version '%s'", st->data_dir, buf);
		return -EINVAL;
	}
	if (v > DTS_STORAGE_SCHEMA_VERSION) {
		set_err(err, err_len, "store '%s' has schema version %ld, newer than the %d this build understands: %s",
			st->data_dir, v, DTS_STORAGE_SCHEMA_VERSION, "use a newer dattss");
		return -EPROTONOSUPPORT;
	}
	if (v < DTS_STORAGE_SCHEMA_VERSION && st->cfg.mode == DTS_STORAGE_READ_WRITE) {
		/* 1 -> 2: nothing to convert (a schema-1 store's checkpoint rows are restored as they are); the new number
		 * keeps a schema-1 build, which would leave this build's checkpoint chunks behind, from opening it */
		snprintf(buf, sizeof(buf), "%d", DTS_STORAGE_SCHEMA_VERSION);
		rocksdb_put_cf(st->db, st->wo, st->cf[DTS__CF_META], "schema_version", 14, buf, strlen(buf), &rerr);
		if (rerr) {
			set_err(err, err_len, "cannot raise the schema version of store '%s' to %s: %s", st->data_dir,
				buf, rerr);
			rocksdb_free(rerr);
			return -EIO;
		}
		dts__log(st, 2, "store '%s': schema version %ld raised to %s", st->data_dir, v, buf);
	}
	return 0;
}

static void load_hwm(struct dts_storage *st)
{
	char *rerr = NULL, *val;
	size_t vlen;
	int64_t t;

	st->hwm = INT64_MIN;
	val = rocksdb_get_cf(st->db, st->ro_get, st->cf[DTS__CF_META], "hwm_minute", 10, &vlen, &rerr);
	if (rerr)
		rocksdb_free(rerr);
	if (val && dts_storage_time_decode(val, vlen, DTS_RES_MINUTE, &t) == 0)
		st->hwm = t / 60;
	rocksdb_free(val);
	DTS__SSTAT_SET(st->stats.hwm_minute, st->hwm == INT64_MIN ? -1 : st->hwm);
}

struct dts_storage *dts_storage_open(const struct dts_storage_cfg *cfg, char *err, size_t err_len)
{
	struct dts_storage *st;
	char **existing = NULL, *rerr = NULL;
	size_t n_existing = 0;
	bool fresh;
	int rc = -ENOMEM;

	if (!cfg || !cfg->data_dir || !cfg->data_dir[0] ||
	    (cfg->mode == DTS_STORAGE_SECONDARY && (!cfg->secondary_dir || !cfg->secondary_dir[0])) ||
	    cfg->minutes_days == 0 || cfg->hours_days == 0 || cfg->queue_minutes == 0 || cfg->queue_records == 0 ||
	    cfg->write_buffer_bytes < MIB) {
		set_err(err, err_len, "bad storage configuration (data_dir, secondary_dir, retention, queue, buffers)");
		errno = EINVAL;
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		goto out_nomem;
	st->cfg = *cfg;
	st->data_dir = strdup(cfg->data_dir);
	st->secondary_dir = cfg->secondary_dir ? strdup(cfg->secondary_dir) : NULL;
	st->wr_buf_cap = 8192;
	st->wr_buf = malloc(st->wr_buf_cap);
	st->cache = rocksdb_cache_create_lru(cfg->block_cache_bytes ? cfg->block_cache_bytes : 8 * MIB);
	st->wo = rocksdb_writeoptions_create();
	st->ro_get = rocksdb_readoptions_create();
	st->fo_nowait = rocksdb_flushoptions_create();
	if (!st->data_dir || (cfg->secondary_dir && !st->secondary_dir) || !st->wr_buf || !st->cache || !st->wo ||
	    !st->ro_get || !st->fo_nowait)
		goto out_nomem;
	rocksdb_flushoptions_set_wait(st->fo_nowait, 0);
	st->cfg.data_dir = st->data_dir;
	st->cfg.secondary_dir = st->secondary_dir;
	rocksdb_writeoptions_set_sync(st->wo, cfg->sync);
	pthread_mutex_init(&st->write_lock, NULL);
	dts_stored_init(&st->wr_tmp);
	dts_stored_init(&st->roll_acc);
	dts_stored_init(&st->roll_tmp);
	st->hour_done = st->roll_hour = INT64_MIN;
	st->roll_next = INT64_MAX;
	st->retention[0] = (struct dts__retention){ .st = st, .res = DTS_RES_MINUTE, .days = cfg->minutes_days };
	st->retention[1] = (struct dts__retention){ .st = st, .res = DTS_RES_HOUR, .days = cfg->hours_days };

	if (cfg->mode == DTS_STORAGE_READ_WRITE) {
		rc = make_dirs(st->data_dir, err, err_len);
		if (rc < 0)
			goto out_free;
	} else {
		struct stat sb;
		char cur[4200];

		snprintf(cur, sizeof(cur), "%s/CURRENT", st->data_dir);
		if (stat(st->data_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
			rc = -ENOENT;
			set_err(err, err_len, "cannot open store '%s': no such directory", st->data_dir);
			goto out_free;
		}
		if (access(cur, R_OK) != 0) {
			rc = -errno;
			set_err(err, err_len, "cannot open store '%s': %s: %s (not a RocksDB store?)", st->data_dir,
				cur, strerror(errno));
			goto out_free;
		}
	}
	{
		rocksdb_options_t *lo = rocksdb_options_create();

		existing = rocksdb_list_column_families(lo, st->data_dir, &n_existing, &rerr);
		rocksdb_options_destroy(lo);
	}
	if (rerr) {
		/* A new store (read-write mode) has no CURRENT yet: that is the only expected failure here. */
		rocksdb_free(rerr);
		rerr = NULL;
		if (existing)
			rocksdb_list_column_families_destroy(existing, 0); /* an empty array is still allocated */
		existing = NULL;
		n_existing = 0;
	}
	fresh = n_existing == 0;
	if (!fresh) {
		bool has_meta = false;

		for (size_t j = 0; j < n_existing; j++)
			has_meta = has_meta || strcmp(existing[j], DTS_CF_META) == 0;
		if (!has_meta) {
			rc = -EINVAL;
			set_err(err, err_len, "'%s' is a RocksDB store but not a DaTtSs store (no '%s' column family)",
				st->data_dir, DTS_CF_META);
			goto out_free;
		}
		for (int i = 0; i < DTS__CF_COUNT && cfg->mode != DTS_STORAGE_READ_WRITE; i++) {
			bool present = false;

			for (size_t j = 0; j < n_existing; j++)
				present = present || strcmp(existing[j], dts__cf_names[i]) == 0;
			if (cf_required[i] && !present) {
				rc = -EINVAL;
				set_err(err, err_len, "store '%s' has no '%s' column family", st->data_dir,
					dts__cf_names[i]);
				goto out_free;
			}
		}
	} else if (cfg->mode != DTS_STORAGE_READ_WRITE) {
		rc = -EINVAL;
		set_err(err, err_len, "cannot open store '%s': no column families (not a RocksDB store?)",
			st->data_dir);
		goto out_free;
	}
	for (int comp = 0; comp < COMP_CHOICES; comp++) {
		rc = try_open(st, comp, existing, n_existing, &rerr);
		if (rc == 0)
			break;
		if (!strstr(rerr, "is not linked with the binary") || comp + 1 == COMP_CHOICES) {
			set_err(err, err_len, "cannot open store '%s': %s", st->data_dir, rerr);
			rocksdb_free(rerr);
			goto out_free;
		}
		dts__log(st, 1, "store '%s': %s compression not available (%s): trying %s", st->data_dir,
			 comp_names[comp], rerr, comp_names[comp + 1]);
		rocksdb_free(rerr);
		rerr = NULL;
	}
	rc = check_schema(st, fresh, err, err_len);
	if (rc < 0)
		goto out_free;
	load_hwm(st);
	rc = dts__roll_open(st, err, err_len);
	if (rc < 0)
		goto out_free;
	if (existing)
		rocksdb_list_column_families_destroy(existing, n_existing);
	dts__log(st, 2, "store '%s' open (%s, compression %s, minutes kept %u days, hours %u days)", st->data_dir,
		 cfg->mode == DTS_STORAGE_READ_WRITE ? "read-write" : cfg->mode == DTS_STORAGE_READ_ONLY ? "read-only" :
										   "secondary",
		 st->compression, cfg->minutes_days, cfg->hours_days);
	return st;

out_nomem:
	set_err(err, err_len, "cannot open store '%s': out of memory", cfg->data_dir);
	rc = -ENOMEM;
out_free:
	if (existing)
		rocksdb_list_column_families_destroy(existing, n_existing);
	dts_storage_close(st);
	errno = -rc;
	return NULL;
}

void dts_storage_stopping(struct dts_storage *st)
{
	if (st)
		atomic_store_explicit(&st->stopping, true, memory_order_relaxed);
}

void dts_storage_close(struct dts_storage *st)
{
	if (!st)
		return;
	dts__committer_stop(st);
	for (int i = 0; i < DTS__CF_COUNT; i++)
		if (st->cf[i])
			rocksdb_column_family_handle_destroy(st->cf[i]);
	for (size_t i = 0; i < st->n_extra_cf; i++)
		rocksdb_column_family_handle_destroy(st->extra_cf[i]);
	free(st->extra_cf);
	if (st->db && st->cfg.mode == DTS_STORAGE_READ_WRITE && atomic_load(&st->stopping)) {
		/* The last minutes are in the WAL and the memtables, not in SST files (no flush at a stop): make the WAL
		 * durable now rather than when the kernel writes it back. */
		char *rerr = NULL;

		rocksdb_flush_wal(st->db, 1, &rerr);
		if (rerr) {
			dts__log(st, 0, "store '%s': syncing the WAL at close: %s", st->data_dir, rerr);
			rocksdb_free(rerr);
		}
	}
	if (st->db)
		rocksdb_close(st->db);
	free_options(st);
	if (st->cache)
		rocksdb_cache_destroy(st->cache);
	if (st->wo)
		rocksdb_writeoptions_destroy(st->wo);
	if (st->ro_get)
		rocksdb_readoptions_destroy(st->ro_get);
	if (st->fo_nowait)
		rocksdb_flushoptions_destroy(st->fo_nowait);
	if (st->wr_buf) {
		dts_stored_free(&st->wr_tmp);
		dts__roll_free(st);
		pthread_mutex_destroy(&st->write_lock);
	}
	free(st->wr_buf);
	dts__batch_free(&st->wr_batch);
	free(st->wr_keys);
	free(st->wr_series);
	free(st->wr_items);
	free(st->wr_sort);
	free(st->ck_buf);
	if (st->ck_wb)
		rocksdb_writebatch_destroy(st->ck_wb);
	free(st->data_dir);
	free(st->secondary_dir);
	free(st);
}

const char *dts_storage_compression(const struct dts_storage *st)
{
	return st->compression;
}

int dts_storage_catch_up(struct dts_storage *st, char *err, size_t err_len)
{
	char *rerr = NULL;

	if (st->cfg.mode != DTS_STORAGE_SECONDARY)
		return -EINVAL;
	rocksdb_try_catch_up_with_primary(st->db, &rerr);
	if (rerr) {
		set_err(err, err_len, "store '%s': catching up with the primary: %s", st->data_dir, rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	dts__roll_reload(st); /* after the data: a reader never sees an hour_done newer than the hours it reads */
	return 0;
}

int dts_storage_flush(struct dts_storage *st)
{
	rocksdb_flushoptions_t *fo;
	char *rerr = NULL;
	int rc = 0;

	if (st->cfg.mode != DTS_STORAGE_READ_WRITE)
		return -EROFS;
	fo = rocksdb_flushoptions_create();
	if (!fo)
		return -ENOMEM;
	rocksdb_flushoptions_set_wait(fo, 1);
	for (int i = DTS__CF_MINUTES; i <= DTS__CF_HOURS && rc == 0; i++) {
		rocksdb_flush_cf(st->db, fo, st->cf[i], &rerr);
		if (rerr) {
			dts__log(st, 0, "store '%s': flush: %s", st->data_dir, rerr);
			rocksdb_free(rerr);
			rc = -EIO;
		}
	}
	rocksdb_flushoptions_destroy(fo);
	return rc;
}

int dts_storage_compact(struct dts_storage *st, enum dts_res res)
{
	if (st->cfg.mode != DTS_STORAGE_READ_WRITE)
		return -EROFS;
	/* The C API reports no error for compact_range; a failure shows up in RocksDB's LOG and the next write. */
	rocksdb_compact_range_cf(st->db, st->cf[res == DTS_RES_HOUR ? DTS__CF_HOURS : DTS__CF_MINUTES], NULL, 0, NULL,
				 0);
	return 0;
}

int dts_storage_checkpoint(struct dts_storage *st, const char *dir, char *err, size_t err_len)
{
	rocksdb_checkpoint_t *cp;
	char *rerr = NULL;

	if (st->cfg.mode != DTS_STORAGE_READ_WRITE)
		return -EROFS;
	cp = rocksdb_checkpoint_object_create(st->db, &rerr);
	if (!rerr)
		rocksdb_checkpoint_create(cp, dir, 0, &rerr);
	if (cp)
		rocksdb_checkpoint_object_destroy(cp);
	if (rerr) {
		set_err(err, err_len, "store '%s': checkpoint into '%s': %s", st->data_dir, dir, rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	return 0;
}

const char *const dts_storage_cf_names[DTS_STORAGE_CF_COUNT] = {
	DTS_CF_MINUTES, DTS_CF_HOURS, DTS_CF_CURRENT, DTS_CF_EVENTS, DTS_CF_META,
};

static uint64_t prop_u64(struct dts_storage *st, rocksdb_column_family_handle_t *cf, const char *name)
{
	char *v = rocksdb_property_value_cf(st->db, cf, name);
	uint64_t n = v ? strtoull(v, NULL, 10) : 0;

	rocksdb_free(v);
	return n;
}

int dts_storage_usage(struct dts_storage *st, struct dts_storage_usage *u)
{
	_Static_assert(DTS_STORAGE_CF_COUNT == DTS__CF_COUNT - 1, "every family but default");
	memset(u, 0, sizeof(*u));
	for (int i = 0; i < DTS_STORAGE_CF_COUNT; i++) {
		rocksdb_column_family_handle_t *cf = st->cf[i + 1];

		if (!cf)
			continue;
		u->sst_bytes[i] = prop_u64(st, cf, "rocksdb.total-sst-files-size");
		u->live_bytes[i] = prop_u64(st, cf, "rocksdb.estimate-live-data-size");
		u->memtable_bytes[i] = prop_u64(st, cf, "rocksdb.cur-size-all-mem-tables");
		u->keys[i] = prop_u64(st, cf, "rocksdb.estimate-num-keys");
	}
	return 0;
}
