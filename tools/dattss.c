/*
 * dattss.c - the DaTtSs command-line tool.
 *
 *   dattss inspect --data-dir DIR                                    users in the store
 *   dattss inspect --data-dir DIR --user U                           processes of U
 *   dattss inspect --data-dir DIR --user U --process P               series of U/P
 *   dattss inspect --data-dir DIR --series SERIES [--from T] [--to T] [--resolution minute|hour]
 *                                                                    one series, decoded, one row per minute/hour
 *   dattss decode HEX                                                one value as `ldb --value_hex` shows it
 *   dattss user add|list|rotate|remove|prometheus ...                users and keys (user_cmd.c)
 *   dattss send [--process P] NAME VALUE                             one value through libdattss (send_cmd.c)
 *   dattss alert add|list|remove|history ...                         alert rules through the API (alert_cmd.c)
 *
 * The store is opened as a RocksDB secondary instance in a private temporary directory (removed on exit), so inspect
 * works on the store of a running dattssd without disturbing it and sees its latest writes; --read-only opens it
 * read-only instead (a stopped store or a checkpoint). inspect and decode never write to the store; `user` does
 * (directly on a stopped store, else through the running daemon's admin API).
 *
 * Exit status: 0 success, 1 the store could not be read, 2 usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dts/cpu.h"
#include "dts/storage.h"
#include "tool_cmds.h"

DTS_CPU_CHECK("dattss")

#ifndef DTS_VERSION
#define DTS_VERSION "0.1.0"
#endif

enum format { FMT_CSV, FMT_JSON };

static const char *const type_names[DTS_NTYPES] = { "c", "ms", "g", "s" };

static const char usage_main[] =
	"Usage: dattss COMMAND [OPTIONS]\n"
	"\n"
	"Commands:\n"
	"  inspect   list users, processes and series of a DaTtSs store, or dump one series decoded\n"
	"  decode    decode one stored value given in hex (as `ldb --value_hex` prints it)\n"
	"  user      add, list, rotate or remove users and their keys\n"
	"  send      send one value through libdattss (e.g. 'dattss send --process api query 153ms')\n"
	"  alert     add, list or remove alert rules, show their history (through the daemon's API)\n"
	"\n"
	"Options:\n"
	"  -h, --help      this help ('dattss COMMAND --help' for a command's options)\n"
	"  -V, --version   print the version\n";

static const char usage_inspect[] =
	"Usage: dattss inspect --data-dir DIR [--user U [--process P]] [--series SERIES] [--from T] [--to T]\n"
	"                      [--resolution minute|hour] [--format csv|json] [--read-only]\n"
	"\n"
	"Without --user or --series: list the users. With --user: list U's processes. With --user and --process:\n"
	"list the series of U/P. With --series: dump that series over [--from, --to), one row per minute (or hour).\n"
	"\n"
	"  -d, --data-dir DIR      the store (dattssd's --data-dir); may be live (opened as a secondary instance)\n"
	"  -u, --user U            a user\n"
	"  -p, --process P         a process of --user\n"
	"  -s, --series SERIES     USER/PROCESS/COUNTER/TYPE[/TAGS], e.g. default/api/query/ms or u/p/c/c/env:prod\n"
	"  -f, --from T            first time (default: the beginning)\n"
	"  -t, --to T              end time, exclusive (default: the end)\n"
	"  -r, --resolution R      minute (default) or hour (the hourly rollups, kept longer)\n"
	"  -o, --format F          csv (default) or json\n"
	"      --read-only         open read-only instead of as a secondary (a stopped store or a checkpoint)\n"
	"  -h, --help              this help\n"
	"\n"
	"Times T: 2024-05-01, 2024-05-01T12:30[:00][Z], 20240501T1230 (as in keys), @1714566600 or 1714566600 (unix\n"
	"seconds), now, now-2h or -2h (units s m h d w). All times are UTC.\n"
	"\n"
	"Columns: time (UTC, start of the minute or hour), count, sum, min, max, avg (sum/count), fst, lst (first and\n"
	"last value), bot10, top10, p50, p99 (timers: from the stored sketch, 1% relative accuracy), distinct (sets),\n"
	"note (\"undecodable\" for a damaged or newer value). Empty cells / null: not defined for the type.\n"
	"\n"
	"Examples:\n"
	"  dattss inspect --data-dir /var/lib/dattss\n"
	"  dattss inspect --data-dir /var/lib/dattss --user default --process api\n"
	"  dattss inspect --data-dir /var/lib/dattss --series default/api/query/ms --from -1h\n"
	"  dattss inspect --data-dir /var/lib/dattss --series default/api/hits/c --resolution hour --format json\n";

static const char usage_decode[] =
	"Usage: dattss decode [--format csv|json] HEX\n"
	"\n"
	"Decode one value of the minutes, hours or current column family, given as hex digits\n"
	"(an optional 0x prefix, as `ldb --value_hex` prints it).\n"
	"\n"
	"  -o, --format F   csv (default) or json\n"
	"  -h, --help       this help\n";

/* ---- output of points ------------------------------------------------------------------------------------------ */

struct row {
	double count, sum, min, max, avg, fst, lst, bot10, top10, p50, p99, distinct;
};

static void row_of(const struct dts_stored *v, struct row *r)
{
	const bool has = v->agg.count > 0;

	r->count = v->agg.count;
	r->sum = v->agg.sum;
	r->min = has ? v->agg.min : NAN;
	r->max = has ? v->agg.max : NAN;
	r->avg = has ? v->agg.sum / v->agg.count : NAN;
	r->fst = has ? v->agg.fst : NAN;
	r->lst = has ? v->agg.lst : NAN;
	r->bot10 = r->top10 = r->p50 = r->p99 = r->distinct = NAN;
	if (v->type == DTS_TIMER && v->sketch.count > 0) {
		r->bot10 = dts_sketch_quantile(&v->sketch, 0.1);
		r->top10 = dts_sketch_quantile(&v->sketch, 0.9);
		r->p50 = dts_sketch_quantile(&v->sketch, 0.5);
		r->p99 = dts_sketch_quantile(&v->sketch, 0.99);
	}
	if (v->type == DTS_SET)
		r->distinct = dts_set_cardinality(&v->set);
}

static const char *const row_names[] = { "count", "sum",   "min", "max", "avg", "fst",
					 "lst",	  "bot10", "top10", "p50", "p99", "distinct" };
#define ROW_FIELDS (sizeof(row_names) / sizeof(row_names[0]))
#define ROW_FIRST_ESTIMATE 7 /* bot10 and after: estimates, printed with 6 significant digits in CSV */

static double row_field(const struct row *r, size_t i)
{
	const double f[ROW_FIELDS] = { r->count, r->sum, r->min,   r->max, r->avg, r->fst,
				       r->lst,	 r->bot10, r->top10, r->p50, r->p99, r->distinct };

	return f[i];
}

static void iso_time(char *buf, size_t len, int64_t t, enum dts_res res)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, res == DTS_RES_HOUR ? "%Y-%m-%dT%H:00Z" : "%Y-%m-%dT%H:%MZ", &tm);
}

struct dump {
	enum format fmt;
	enum dts_res res;
	json_t *points; /* JSON: the array being filled */
	long undecodable;
};

static void csv_header(void)
{
	fputs("time", stdout);
	for (size_t i = 0; i < ROW_FIELDS; i++)
		printf(",%s", row_names[i]);
	fputs(",note\n", stdout);
}

static void csv_row(const char *time, const struct dts_stored *v)
{
	struct row r;

	fputs(time, stdout);
	if (!v) {
		for (size_t i = 0; i < ROW_FIELDS; i++)
			fputc(',', stdout);
		fputs(",undecodable\n", stdout);
		return;
	}
	row_of(v, &r);
	for (size_t i = 0; i < ROW_FIELDS; i++) {
		const double x = row_field(&r, i);

		if (isnan(x))
			fputc(',', stdout);
		else
			printf(i >= ROW_FIRST_ESTIMATE ? ",%.6g" : ",%.15g",
			       x); /* estimates: 1% (sketch) or 1.6% (HLL) */
	}
	fputs(",\n", stdout);
}

static json_t *json_row(const char *time, int64_t t, const struct dts_stored *v)
{
	json_t *o = json_object();
	struct row r;

	json_object_set_new(o, "time", json_string(time));
	json_object_set_new(o, "t", json_integer(t));
	if (!v) {
		json_object_set_new(o, "error", json_string("undecodable value"));
		return o;
	}
	row_of(v, &r);
	for (size_t i = 0; i < ROW_FIELDS; i++) {
		const double x = row_field(&r, i);

		json_object_set_new(o, row_names[i], isfinite(x) ? json_real(x) : json_null());
	}
	return o;
}

static int dump_point(void *ctx, int64_t t, const struct dts_stored *v)
{
	struct dump *d = ctx;
	char when[32];

	iso_time(when, sizeof(when), t, d->res);
	d->undecodable += v == NULL;
	if (d->fmt == FMT_CSV)
		csv_row(when, v);
	else
		json_array_append_new(d->points, json_row(when, t, v));
	return 0;
}

/* ---- listing --------------------------------------------------------------------------------------------------- */

struct list {
	enum format fmt;
	json_t *arr;
};

static int list_name(void *ctx, const char *name, size_t len)
{
	struct list *l = ctx;

	if (l->fmt == FMT_CSV)
		printf("%.*s\n", (int)len, name);
	else
		json_array_append_new(l->arr, json_stringn(name, len));
	return 0;
}

/* ---- time arguments -------------------------------------------------------------------------------------------- */

static int parse_time(const char *s, int64_t now, int64_t *out)
{
	char *end;
	long long v;
	struct tm tm;
	const char *p;

	if (!strncmp(s, "now", 3) || s[0] == '-') {
		const char *r = s[0] == '-' ? s : s + 3;
		long long mult;

		if (*r == '\0') {
			*out = now;
			return 0;
		}
		if (*r != '-')
			return -EINVAL;
		errno = 0;
		v = strtoll(r + 1, &end, 10);
		if (errno || end == r + 1 || v < 0)
			return -EINVAL;
		switch (*end) {
		case 's': mult = 1; break;
		case 'm': mult = 60; break;
		case 'h': mult = 3600; break;
		case 'd': mult = 86400; break;
		case 'w': mult = 7 * 86400; break;
		default: return -EINVAL;
		}
		if (end[1] != '\0' || v > (now / mult))
			return -EINVAL;
		*out = now - v * mult;
		return 0;
	}
	if (s[0] == '@' || (strspn(s, "0123456789") == strlen(s) && strlen(s) != 8 && s[0])) {
		errno = 0;
		v = strtoll(s + (s[0] == '@'), &end, 10);
		if (errno || *end || end == s + (s[0] == '@') || v < 0)
			return -EINVAL;
		*out = v;
		return 0;
	}
	if (strlen(s) == 13 && s[8] == 'T')
		return dts_storage_time_decode(s, 13, DTS_RES_MINUTE, out);
	if (strlen(s) == 11 && s[8] == 'T')
		return dts_storage_time_decode(s, 11, DTS_RES_HOUR, out);
	memset(&tm, 0, sizeof(tm));
	if (strlen(s) == 8) { /* YYYYMMDD */
		char buf[16];

		snprintf(buf, sizeof(buf), "%sT00", s);
		return dts_storage_time_decode(buf, 11, DTS_RES_HOUR, out);
	}
	p = strptime(s, "%Y-%m-%d", &tm);
	if (p && (*p == 'T' || *p == ' ')) {
		const char *q = strptime(p + 1, "%H:%M:%S", &tm);

		p = q ? q : strptime(p + 1, "%H:%M", &tm);
	}
	if (p && *p == 'Z')
		p++;
	if (!p || *p)
		return -EINVAL;
	*out = (int64_t)timegm(&tm);
	return *out < 0 ? -EINVAL : 0;
}

/* ---- inspect --------------------------------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
	fprintf(stderr, "dattss%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(try 'dattss%s%s --help')\n", cmd ? " " : "", cmd ? cmd : "");
	return 2;
}

static int parse_format(const char *s, enum format *f)
{
	if (!strcmp(s, "csv"))
		*f = FMT_CSV;
	else if (!strcmp(s, "json"))
		*f = FMT_JSON;
	else
		return -EINVAL;
	return 0;
}

static int print_json(json_t *j)
{
	int rc = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));

	fputc('\n', stdout);
	json_decref(j);
	return rc;
}

static int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data-dir", required_argument, NULL, 'd' }, { "user", required_argument, NULL, 'u' },
		{ "process", required_argument, NULL, 'p' },  { "series", required_argument, NULL, 's' },
		{ "from", required_argument, NULL, 'f' },     { "to", required_argument, NULL, 't' },
		{ "resolution", required_argument, NULL, 'r' }, { "format", required_argument, NULL, 'o' },
		{ "read-only", no_argument, NULL, 'R' },      { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *user = NULL, *process = NULL, *series = NULL;
	const int64_t now = (int64_t)time(NULL);
	int64_t from = 0, to = DTS_STORAGE_TIME_MAX + 1;
	enum format fmt = FMT_CSV;
	enum dts_res res = DTS_RES_MINUTE;
	bool read_only = false;
	struct dts_storage_cfg cfg;
	struct dts_storage *st;
	char secdir[] = "/tmp/dattss-inspect-XXXXXX";
	char err[1024];
	long n;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "d:u:p:s:f:t:r:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'u': user = optarg; break;
		case 'p': process = optarg; break;
		case 's': series = optarg; break;
		case 'f':
			if (parse_time(optarg, now, &from) != 0)
				return usage_error("inspect", "bad --from time '%s'", optarg);
			break;
		case 't':
			if (parse_time(optarg, now, &to) != 0)
				return usage_error("inspect", "bad --to time '%s'", optarg);
			break;
		case 'r':
			if (!strcmp(optarg, "minute"))
				res = DTS_RES_MINUTE;
			else if (!strcmp(optarg, "hour"))
				res = DTS_RES_HOUR;
			else
				return usage_error("inspect", "--resolution must be minute or hour, not '%s'", optarg);
			break;
		case 'o':
			if (parse_format(optarg, &fmt) != 0)
				return usage_error("inspect", "--format must be csv or json, not '%s'", optarg);
			break;
		case 'R': read_only = true; break;
		case 'h': fputs(usage_inspect, stdout); return 0;
		default: return usage_error("inspect", "%s", "bad option");
		}
	}
	if (optind < argc)
		return usage_error("inspect", "unexpected argument '%s'", argv[optind]);
	if (!dir)
		return usage_error("inspect", "%s", "--data-dir is required");
	if (process && !user)
		return usage_error("inspect", "%s", "--process needs --user");
	if (series) {
		struct dts_key_view kv;

		if (dts_storage_series_decode(series, strlen(series), &kv) != 0)
			return usage_error(
				"inspect",
				"bad --series '%s': expected USER/PROCESS/COUNTER/TYPE[/TAGS], TYPE one of c ms g s",
				series);
	}

	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dir;
	cfg.block_cache_bytes = 32 << 20;
	if (read_only) {
		cfg.mode = DTS_STORAGE_READ_ONLY;
	} else {
		if (!mkdtemp(secdir)) {
			fprintf(stderr, "dattss inspect: cannot create a temporary directory: %s\n", strerror(errno));
			return 1;
		}
		cfg.mode = DTS_STORAGE_SECONDARY;
		cfg.secondary_dir = secdir;
	}
	st = dts_storage_open(&cfg, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "dattss inspect: %s\n", err);
		rc = 1;
		goto out;
	}

	if (series) {
		struct dump d = { .fmt = fmt, .res = res };
		struct dts_key_view kv;

		dts_storage_series_decode(series, strlen(series), &kv);
		if (fmt == FMT_CSV)
			csv_header();
		else
			d.points = json_array();
		n = dts_storage_read(st, res, series, from, to, dump_point, &d);
		if (n >= 0 && fmt == FMT_JSON) {
			json_t *o = json_object();

			json_object_set_new(o, "series", json_string(series));
			json_object_set_new(o, "type", json_string(type_names[kv.type]));
			json_object_set_new(o, "resolution", json_string(dts_storage_res_name(res)));
			json_object_set_new(o, "points", d.points);
			d.points = NULL;
			print_json(o);
		}
		json_decref(d.points);
		if (n == 0)
			fprintf(stderr, "dattss inspect: no %s points for '%s' in that range\n",
				dts_storage_res_name(res), series);
		if (d.undecodable)
			fprintf(stderr,
				"dattss inspect: %ld values could not be decoded (damaged, or written by a newer "
				"dattss)\n",
				d.undecodable);
	} else {
		struct list l = { .fmt = fmt, .arr = fmt == FMT_JSON ? json_array() : NULL };
		const char *what = process ? "series" : user ? "process" : "user";

		if (fmt == FMT_CSV)
			puts(what);
		if (process)
			n = dts_storage_list_series(st, res, user, process, list_name, &l);
		else if (user)
			n = dts_storage_list_processes(st, res, user, list_name, &l);
		else
			n = dts_storage_list_users(st, res, list_name, &l);
		if (n >= 0 && fmt == FMT_JSON) {
			json_t *o = json_object();

			json_object_set_new(o, process ? "series" : user ? "processes" : "users", l.arr);
			l.arr = NULL;
			print_json(o);
		}
		json_decref(l.arr);
		if (n == -EINVAL) {
			dts_storage_close(st);
			rc = usage_error("inspect", "bad --user or --process '%s'", process ? process : user);
			goto out;
		}
	}
	if (n < 0) {
		fprintf(stderr, "dattss inspect: reading store '%s': %s\n", dir, strerror((int)-n));
		rc = 1;
	}
	dts_storage_close(st);
out:
	if (!read_only)
		nftw(secdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}

/* ---- decode ---------------------------------------------------------------------------------------------------- */

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' :
	       c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 :
				      -1;
}

static int cmd_decode(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum format fmt = FMT_CSV;
	const char *hex;
	uint8_t *buf;
	size_t n, len;
	struct dts_stored v;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (parse_format(optarg, &fmt) != 0)
				return usage_error("decode", "--format must be csv or json, not '%s'", optarg);
			break;
		case 'h': fputs(usage_decode, stdout); return 0;
		default: return usage_error("decode", "%s", "bad option");
		}
	}
	if (optind + 1 != argc)
		return usage_error("decode", "%s", "expected exactly one HEX argument");
	hex = argv[optind];
	if (hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X'))
		hex += 2;
	n = strlen(hex);
	if (n == 0 || n % 2)
		return usage_error("decode", "'%s' is not an even number of hex digits", argv[optind]);
	len = n / 2;
	buf = malloc(len);
	if (!buf)
		return 1;
	for (size_t i = 0; i < len; i++) {
		int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			free(buf);
			return usage_error("decode", "'%s' is not hex", argv[optind]);
		}
		buf[i] = (uint8_t)(hi << 4 | lo);
	}
	dts_stored_init(&v);
	rc = dts_storage_value_decode(&v, buf, len);
	free(buf);
	if (rc != 0) {
		fprintf(stderr, "dattss decode: not a valid value (%s)\n",
			rc == -EPROTONOSUPPORT ? "written by a newer dattss: value version above 1" : "malformed");
		dts_stored_free(&v);
		return 1;
	}
	if (fmt == FMT_CSV) {
		printf("type,first,last");
		for (size_t i = 0; i < ROW_FIELDS; i++)
			printf(",%s", row_names[i]);
		printf(",note\n%s,%u,%u", type_names[v.type], v.first, v.last);
		csv_row("", &v);
	} else {
		json_t *o = json_row("", 0, &v);

		json_object_del(o, "time");
		json_object_del(o, "t");
		json_object_set_new(o, "type", json_string(type_names[v.type]));
		json_object_set_new(o, "first", json_integer(v.first));
		json_object_set_new(o, "last", json_integer(v.last));
		if (v.type == DTS_TIMER)
			json_object_set_new(o, "sketch_level", json_integer(v.sketch.level));
		print_json(o);
	}
	dts_stored_free(&v);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage_error(NULL, "%s", "a command is required");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		printf("dattss %s (store schema %d, RocksDB via librocksdb)\n", DTS_VERSION,
		       DTS_STORAGE_SCHEMA_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "inspect"))
		return cmd_inspect(argc - 1, argv + 1);
	if (!strcmp(argv[1], "decode"))
		return cmd_decode(argc - 1, argv + 1);
	if (!strcmp(argv[1], "user"))
		return dts_tool_user(argc - 1, argv + 1);
	if (!strcmp(argv[1], "send"))
		return dts_tool_send(argc - 1, argv + 1);
	if (!strcmp(argv[1], "alert"))
		return dts_tool_alert(argc - 1, argv + 1);
	return usage_error(NULL, "unknown command '%s'", argv[1]);
}
