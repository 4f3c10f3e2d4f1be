/*
 * test_ldb.c - RocksDB's own `ldb` (rocksdb-tools) and the project's `dattss` tool on a store written by the storage
 * library: the column families are listed, a series is scanned in key order (also with --from/--to), one value is
 * fetched as hex and decodes to what was written, a live store is read through a secondary instance, and a
 * checkpoint of the live store is readable. These are the commands docs/operations.md shows.
 *
 * ldb is found on PATH (or at LDB_PATH); dattss at DATTSS_PATH when the build defines it (the dattss tests are
 * compiled only then). A missing ldb fails the tests: install rocksdb-tools (scripts/install-deps.sh test).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "dts/storage.h"

#ifndef LDB_PATH
#define LDB_PATH "ldb"
#endif

#define T0 1700000040LL /* 2023-11-14T22:14:00Z */
#define M0 (T0 / 60)

static char tmpdir[64];
static char dbdir[128];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

/* The store's clock: T0, so that the 2023 test data is not expired by the retention filter during compactions. */
static int64_t clock_t0(void *ctx)
{
	(void)ctx;
	return T0;
}

static struct dts_storage *open_rw(void)
{
	struct dts_storage_cfg cfg;
	char err[512];
	struct dts_storage *st;

	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dbdir;
	cfg.clock = clock_t0;
	cfg.block_cache_bytes = 8 << 20;
	cfg.write_buffer_bytes = 4 << 20;
	st = dts_storage_open(&cfg, err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
	return st;
}

static void rec_init(struct dts_minute_rec *r, const char *counter, const char *tags, uint8_t type)
{
	memset(r, 0, sizeof(*r));
	r->user = "u";
	r->process = "api";
	r->counter = counter;
	r->tags = tags;
	r->type = type;
	dts_agg_init(&r->agg);
	dts_sketch_init(&r->sketch);
	dts_set_init(&r->set);
}

/* Five minutes of three series: u/api/hits/c, u/api/lat/ms, u/api/lat/ms/env:prod (value of minute i: i + 1). */
static void write_sample(struct dts_storage *st)
{
	for (int i = 0; i < 5; i++) {
		struct dts_minute_rec r[3];
		struct dts_closed_minute cm = { .minute = M0 + i, .n = 3, .recs = r };

		rec_init(&r[0], "hits", "", DTS_COUNTER);
		rec_init(&r[1], "lat", "", DTS_TIMER);
		rec_init(&r[2], "lat", "env:prod", DTS_TIMER);
		dts_agg_add(&r[0].agg, i + 1, 1);
		for (int k = 1; k <= 3; k++) {
			dts_agg_add(&r[1].agg, 10 * k + i, 1);
			cr_assert_eq(dts_sketch_add(&r[1].sketch, 10 * k + i, 1), 0);
		}
		dts_agg_add(&r[2].agg, 7, 1);
		cr_assert_eq(dts_sketch_add(&r[2].sketch, 7, 1), 0);
		cr_assert_eq(dts_storage_write_minute(st, &cm), 0);
		dts_sketch_free(&r[1].sketch);
		dts_sketch_free(&r[2].sketch);
	}
}

static void setup(void)
{
	struct dts_storage *st;

	strcpy(tmpdir, "/tmp/dts-ldb-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(dbdir, sizeof(dbdir), "%s/db", tmpdir);
	st = open_rw();
	write_sample(st);
	/* the daemon rolls an hour up once it is over; here at once, so that the hours family has its values */
	cr_assert_eq(dts_storage_roll_hours(st, M0 / 60, 0), 3);
	dts_storage_close(st);
}

static void teardown(void)
{
	if (tmpdir[0])
		nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

TestSuite(ldb, .init = setup, .fini = teardown, .timeout = 60);

/* Run a shell command; returns its exit status and its stdout+stderr (caller frees) in *out. */
static int run(char **out, size_t *out_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char **out, size_t *out_len, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	FILE *p;
	size_t n = 0, cap = 4096;
	char *buf = malloc(cap);
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	strcat(cmd, " 2>&1");
	p = popen(cmd, "r");
	cr_assert_not_null(p, "popen %s", cmd);
	for (;;) {
		if (cap - n < 2048) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
		size_t r = fread(buf + n, 1, cap - n - 1, p);

		if (r == 0)
			break;
		n += r;
	}
	buf[n] = '\0';
	st = pclose(p);
	*out = buf;
	if (out_len)
		*out_len = n;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void need_ldb(void)
{
	char *out;
	int rc = run(&out, NULL, "%s --version", LDB_PATH);

	cr_assert(rc == 0 && strstr(out, "RocksDB"), "ldb not usable (%s): install rocksdb-tools\n%s", LDB_PATH, out);
	free(out);
}

Test(ldb, lists_the_column_families)
{
	char *out;

	need_ldb();
	cr_assert_eq(run(&out, NULL, "%s --db=%s list_column_families", LDB_PATH, dbdir), 0, "%s", out);
	for (int i = 0; i < DTS_STORAGE_CF_COUNT; i++)
		cr_expect(strstr(out, dts_storage_cf_names[i]), "'%s' missing in:\n%s", dts_storage_cf_names[i], out);
	cr_expect(strstr(out, "{default, minutes, hours, current, events, meta}"), "%s", out);
	free(out);
}

/* The exact scan of docs/operations.md: every key, one series' minutes contiguous and in time order. */
Test(ldb, scans_minutes_in_key_order)
{
	static const char *const want[] = {
		"u/api/hits/c|20231114T2214",	       "u/api/hits/c|20231114T2215",
		"u/api/hits/c|20231114T2216",	       "u/api/hits/c|20231114T2217",
		"u/api/hits/c|20231114T2218",	       "u/api/lat/ms/env:prod|20231114T2214",
		"u/api/lat/ms/env:prod|20231114T2215", "u/api/lat/ms/env:prod|20231114T2216",
		"u/api/lat/ms/env:prod|20231114T2217", "u/api/lat/ms/env:prod|20231114T2218",
		"u/api/lat/ms|20231114T2214",	       "u/api/lat/ms|20231114T2215",
		"u/api/lat/ms|20231114T2216",	       "u/api/lat/ms|20231114T2217",
		"u/api/lat/ms|20231114T2218",
	};
	char *out, *line, *save = NULL;
	size_t len, i = 0;

	need_ldb();
	/* raw values are binary: look for the keys in the bytes */
	cr_assert_eq(run(&out, &len, "%s --db=%s --column_family=minutes scan", LDB_PATH, dbdir), 0, "%s", out);
	for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++)
		cr_expect(memmem(out, len, want[k], strlen(want[k])), "%s missing", want[k]);
	free(out);
	/* with --no_value the output is one "KEY : " line per key: check the exact order */
	cr_assert_eq(run(&out, &len, "%s --db=%s --column_family=minutes scan --no_value", LDB_PATH, dbdir), 0, "%s",
		     out);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *sp = strstr(line, " :");

		if (sp)
			*sp = '\0';
		cr_assert_lt(i, sizeof(want) / sizeof(want[0]), "extra key %s", line);
		cr_expect_str_eq(line, want[i], "key %zu", i);
		i++;
	}
	cr_expect_eq(i, sizeof(want) / sizeof(want[0]));
	free(out);
}

Test(ldb, scans_one_series_from_to)
{
	char *out, *save = NULL;
	int n = 0;

	need_ldb();
	cr_assert_eq(run(&out, NULL,
			 "%s --db=%s --column_family=minutes scan --from='u/api/lat/ms|20231114T2215' "
			 "--to='u/api/lat/ms|20231114T2218' --value_hex",
			 LDB_PATH, dbdir),
		     0, "%s", out);
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++)
		cr_expect(strncmp(line, "u/api/lat/ms|2023111", 20) == 0, "%s", line);
	cr_expect_eq(n, 3, "minutes 22:15, 22:16, 22:17 ([from, to))");
	free(out);
	/* a whole series: from "SERIES|" to "SERIES}" */
	cr_assert_eq(run(&out, NULL,
			 "%s --db=%s --column_family=minutes scan --from='u/api/lat/ms|' --to='u/api/lat/ms}'"
			 " --no_value | wc -l",
			 LDB_PATH, dbdir),
		     0);
	cr_expect_eq(atoi(out), 5, "%s", out);
	free(out);
}

static size_t unhex(const char *s, uint8_t *buf, size_t cap)
{
	size_t n = 0;

	if (s[0] == '0' && s[1] == 'x')
		s += 2;
	while (s[0] && s[1] && s[0] != '\n' && n < cap) {
		unsigned v;

		cr_assert_eq(sscanf(s, "%2x", &v), 1);
		buf[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

Test(ldb, get_value_hex_decodes_to_what_was_written)
{
	char *out;
	uint8_t buf[4096];
	struct dts_stored v;
	size_t n;

	need_ldb();
	cr_assert_eq(run(&out, NULL, "%s --db=%s --column_family=minutes get 'u/api/lat/ms|20231114T2216' --value_hex",
			 LDB_PATH, dbdir),
		     0, "%s", out);
	n = unhex(out, buf, sizeof(buf));
	free(out);
	dts_stored_init(&v);
	cr_assert_eq(dts_storage_value_decode(&v, buf, n), 0);
	cr_expect_eq(v.type, DTS_TIMER);
	cr_expect_eq(v.agg.count, 3);
	cr_expect_eq(v.agg.sum, 12 + 22 + 32);
	cr_expect_eq(v.agg.min, 12);
	cr_expect_eq(v.agg.max, 32);
	cr_expect_eq(v.sketch.count, 3);
	dts_stored_free(&v);
	/* the hour and the schema version */
	cr_assert_eq(run(&out, NULL, "%s --db=%s --column_family=hours get 'u/api/hits/c|20231114T22' --value_hex",
			 LDB_PATH, dbdir),
		     0, "%s", out);
	n = unhex(out, buf, sizeof(buf));
	free(out);
	dts_stored_init(&v);
	cr_assert_eq(dts_storage_value_decode(&v, buf, n), 0);
	cr_expect_eq(v.agg.sum, 1 + 2 + 3 + 4 + 5);
	cr_expect_eq(v.first, 14);
	cr_expect_eq(v.last, 18);
	dts_stored_free(&v);
	cr_assert_eq(run(&out, NULL, "%s --db=%s --column_family=meta get schema_version", LDB_PATH, dbdir), 0);
	cr_expect_str_eq(out, "2\n");
	free(out);
}

/* While the daemon holds the store: a secondary instance reads it, `ldb checkpoint` cannot (the LOCK), the library's
 * checkpoint can, and the checkpoint is a normal store for ldb. */
Test(ldb, live_store_secondary_and_checkpoint)
{
	struct dts_storage *st = open_rw();
	char *out, sec[160], ck[160], err[512];
	size_t len;

	need_ldb();
	snprintf(sec, sizeof(sec), "%s/secondary", tmpdir);
	snprintf(ck, sizeof(ck), "%s/checkpoint", tmpdir);
	cr_assert_eq(run(&out, &len, "%s --db=%s --secondary_path=%s --column_family=minutes scan --no_value", LDB_PATH,
			 dbdir, sec),
		     0, "%s", out);
	cr_expect(strstr(out, "u/api/hits/c|20231114T2218"), "%s", out);
	free(out);
	cr_expect_neq(run(&out, NULL, "%s --db=%s checkpoint --checkpoint_dir=%s/ldb-ck", LDB_PATH, dbdir, tmpdir), 0,
		      "ldb checkpoint needs the LOCK the daemon holds: %s", out);
	cr_expect(strstr(out, "LOCK"), "%s", out);
	free(out);
	cr_assert_eq(dts_storage_checkpoint(st, ck, err, sizeof(err)), 0, "%s", err);
	dts_storage_close(st);
	cr_assert_eq(run(&out, NULL, "%s --db=%s --column_family=minutes scan --no_value | wc -l", LDB_PATH, ck), 0);
	cr_expect_eq(atoi(out), 15, "%s", out);
	free(out);
}

#ifdef DATTSS_PATH
Test(ldb, dattss_inspect_lists_and_dumps)
{
	char *out;
	json_t *j;
	json_error_t je;

	cr_assert_eq(run(&out, NULL, "%s inspect --data-dir %s", DATTSS_PATH, dbdir), 0, "%s", out);
	cr_expect_str_eq(out, "user\nu\n");
	free(out);
	cr_assert_eq(run(&out, NULL, "%s inspect --data-dir %s --user u --process api", DATTSS_PATH, dbdir), 0, "%s",
		     out);
	cr_expect_str_eq(out, "series\nu/api/hits/c\nu/api/lat/ms/env:prod\nu/api/lat/ms\n");
	free(out);
	cr_assert_eq(run(&out, NULL,
			 "%s inspect --data-dir %s --series u/api/lat/ms --from 2023-11-14T22:16Z --to 20231114T2218",
			 DATTSS_PATH, dbdir),
		     0, "%s", out);
	cr_expect(strstr(out, "time,count,sum,min,max,avg,fst,lst,bot10,top10,p50,p99,distinct,note\n"), "%s", out);
	cr_expect(strstr(out, "2023-11-14T22:16Z,3,66,12,32,22,12,32,"), "%s", out);
	cr_expect(strstr(out, "2023-11-14T22:17Z,3,69,13,33,23,13,33,"), "%s", out);
	cr_expect(!strstr(out, "22:18Z"), "--to is exclusive: %s", out);
	free(out);
	cr_assert_eq(run(&out, NULL, "%s inspect --data-dir %s --series u/api/hits/c --resolution hour --format json",
			 DATTSS_PATH, dbdir),
		     0, "%s", out);
	j = json_loads(out, 0, &je);
	cr_assert_not_null(j, "%s: %s", je.text, out);
	cr_expect_str_eq(json_string_value(json_object_get(j, "type")), "c");
	cr_expect_eq(json_array_size(json_object_get(j, "points")), 1);
	cr_expect_eq(json_real_value(json_object_get(json_array_get(json_object_get(j, "points"), 0), "sum")), 15);
	json_decref(j);
	free(out);
	/* errors: a bad series is a usage error (2), a missing store a runtime error (1) naming the path */
	cr_expect_eq(run(&out, NULL, "%s inspect --data-dir %s --series nope", DATTSS_PATH, dbdir), 2, "%s", out);
	free(out);
	cr_expect_eq(run(&out, NULL, "%s inspect --data-dir %s/missing", DATTSS_PATH, tmpdir), 1, "%s", out);
	cr_expect(strstr(out, "missing"), "%s", out);
	free(out);
}

Test(ldb, dattss_decodes_what_ldb_prints)
{
	char *hex, *out;

	need_ldb();
	cr_assert_eq(run(&hex, NULL, "%s --db=%s --column_family=minutes get 'u/api/hits/c|20231114T2217' --value_hex",
			 LDB_PATH, dbdir),
		     0, "%s", hex);
	hex[strcspn(hex, "\n")] = '\0';
	cr_assert_eq(run(&out, NULL, "%s decode %s", DATTSS_PATH, hex), 0, "%s", out);
	cr_expect(strstr(out, "\nc,0,0,1,4,4,4,4,4,4,"), "%s", out);
	free(out);
	free(hex);
}
#endif
