/*
 * http_api.c - the query API of dattssd (docs/api.md, docs/openapi.yaml) and the original DaTtSs HTTP protocol.
 *
 *   GET /api/v1/current   current state of the key owner's processes and series      (engine, RCU read side)
 *   GET /api/v1/series    one series over a time range, minute or hour resolution    (store, one iterator)
 *   GET /api/v1/daily     today in 10-minute buckets against the past 7 days          (store, one iterator; the past
 *                                                                                      week kept a minute: week_get)
 *   GET /api/v1/events    the last errors and warnings                                (engine)
 *   GET /api/v1/stream    Server-Sent Events: current state and events, live         (the stream hub below)
 *   PUT /agg?auth=AUTH    the original DaTtSs drivers' 5-second partial aggregates   (engine, the API core)
 * and the users' current values on GET /metrics (dts__http_api_prometheus, called by http.c).
 *
 * Every /api/v1 endpoint is scoped to the owner of the bearer key (dts_http_auth); no parameter names a user. The
 * JSON replies carry Server-Timing (the handler's wall and CPU time), which bench/bench_api.c measures.
 *
 * Why a hand-written JSON writer for the replies: a user with 10,000 series makes /api/v1/current about 3 MB of JSON
 * with 100,000 numbers. Building that as jansson objects and dumping it takes ~60 ms here and glibc's "%.15g" ~250 ns
 * per number; the writer below appends straight into one buffer and formats numbers itself (integers exactly, others
 * to 15 significant digits), which keeps the reply within the 20 ms target. jansson still parses every request body
 * and builds the small replies.
 *
 * The stream hub. An SSE connection must hold no libmicrohttpd pool thread while idle, so its response is a
 * content-reader callback that suspends the connection when it has nothing to send (MHD_suspend_connection; http.c
 * starts the daemon with MHD_ALLOW_SUSPEND_RESUME). One hub thread wakes every HUB_PERIOD_MS, renders the current
 * state of each user that has streams (at most once per second, sent only when it changed), reads new events, appends
 * the frames to each stream's buffer and resumes the connections that have something to send. A suspended connection
 * is not subject to the connection timeout; while resumed it has its own timeout (SSE_TIMEOUT_S) instead of the
 * server's 30 s, and the 15-second keepalive comment lets a vanished client be noticed.
 *
 * Locking: hub->lock protects the stream list and every stream's buffer and flags. The reader callback takes it and
 * calls MHD_suspend_connection under it; the hub thread never calls into libmicrohttpd while holding it (it resumes
 * after unlocking: a suspended connection cannot be closed, so its pointer stays valid until it is resumed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dts/hash.h"
#include "http_internal.h"
#include "strbuf.h"
#include "put_agg.h"
#include "users.h"

/* Tunables of the API, each with the reason for its value. */
#define MAX_POINTS 20160 /* a series reply: 14 days of minutes, or 840 days of hours; ~2 MB of JSON at most */
#define SERIES_DEFAULT_MINUTE_S (6 * 3600) /* the default range at minute resolution: a screen of recent history */
#define SERIES_DEFAULT_HOUR_S (8 * 86400) /* ... at hour resolution: the week the daily view compares with */
#define DAILY_BUCKET_S 600 /* the original's 10-minute buckets: 144 per day */
#define DAILY_BUCKETS (86400 / DAILY_BUCKET_S)
#define DAILY_PAST_DAYS 7
#define TZ_OFFSET_MAX_MIN 1080 /* +-18 h: every real UTC offset (-12:00 .. +14:00) with room */
#define EVENTS_MAX DTS_EVENTS_KEPT /* limit of GET /api/v1/events: the engine keeps that many per user and kind */
#define SSE_MAX_STREAMS 128 /* concurrent streams, all users: each holds a connection (of 512) and a buffer */
#define SSE_MAX_PENDING (4u << 20) /* a stream whose client does not read 4 MiB is closed (bounded memory) */
#define SSE_TIMEOUT_S 60 /* a resumed stream that cannot write for this long is closed (keepalives are 15 s) */
#define SSE_KEEPALIVE_MS 15000
#define SSE_CURRENT_MS 1000 /* current state at most once per second */
#define HUB_PERIOD_MS 250 /* how soon an event reaches the stream after the engine has it */
#define WEEK_CACHE_ENTRIES 64 /* series-dates whose past week is kept: 64 x 72 KiB; a dashboard shows a few dozen */
#define WEEK_CACHE_MS 60000 /* past days change only through late data (merged into stored minutes): a minute old at
			     * most, and the 10,080 minutes behind a daily view are read once a minute, not per request */

/* ---- output buffer and JSON writer --------------------------------------------------------------------------- */

/* A JSON string: '"', '\\' and control characters escaped; other bytes as they are (names are ASCII, event texts
 * valid UTF-8 as checked by the decoders). */
static void sb_str(struct dts_sb *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(s);
	char *o;

	if (!dts_sb_reserve(b, 6 * n + 2))
		return;
	o = b->p + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			*o++ = '\\';
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	*o++ = '"';
	b->len = (size_t)(o - b->p);
	b->p[b->len] = '\0';
}

static size_t fmt_u64(char *o, uint64_t v)
{
	char tmp[24];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		o[i] = tmp[n - 1 - i];
	return n;
}

static size_t fmt_i64(char *o, int64_t v)
{
	if (v < 0) {
		o[0] = '-';
		return 1 + fmt_u64(o + 1, (uint64_t)0 - (uint64_t)v);
	}
	return fmt_u64(o, (uint64_t)v);
}

/* 10^k for 0 <= k <= 22: exact in a double. */
static const double pow10_exact[] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
				      1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };

/* a * 10^k with one rounding when |k| <= 22 (exact powers), pow() otherwise. */
static double scale10(double a, int k)
{
	if (k >= 0 && k <= 22)
		return a * pow10_exact[k];
	if (k < 0 && k >= -22)
		return a / pow10_exact[-k];
	return a * pow(10.0, k);
}

/*
 * A JSON number for v into o (at least 32 bytes): "null" when not finite, integers of magnitude below 2^53 exactly,
 * anything else with 15 significant digits, trailing zeros dropped, in exponent form when the exponent is below -4
 * or above 14 (as "%.15g", without its '+' and leading exponent zeros). The 15th digit may differ from correct
 * rounding by one unit (in ~4% of random values: the scaling is one floating multiplication, relative error below
 * 1.1e-14); that is noise for statistics, and ~60 ns against glibc's ~250 ns.
 */
static size_t fmt_num(char *o, double v)
{
	char d[20];
	size_t n = 0, nd;
	uint64_t m;
	double a;
	int e;

	if (!isfinite(v)) {
		memcpy(o, "null", 4);
		return 4;
	}
	a = fabs(v);
	if (a < 9007199254740992.0 && a == floor(a))
		return fmt_i64(o, (int64_t)v);
	e = (int)floor(log10(a));
	if (e < -290 || e > 290) /* subnormals and near-overflow: the scaling below would lose them */
		return (size_t)snprintf(o, 32, "%.15g", v);
	m = (uint64_t)llround(scale10(a, 14 - e));
	if (m >= 1000000000000000ULL) { /* log10 rounded down a power of ten, or rounding carried: one digit more */
		e++;
		m = (uint64_t)llround(scale10(a, 14 - e));
	} else if (m < 100000000000000ULL) { /* log10 rounded up */
		e--;
		m = (uint64_t)llround(scale10(a, 14 - e));
	}
	if (m >= 1000000000000000ULL) /* defensive: keep 15 digits whatever the rounding did */
		m = 999999999999999ULL;
	for (int i = 14; i >= 0; i--) {
		d[i] = (char)('0' + m % 10);
		m /= 10;
	}
	for (nd = 15; nd > 1 && d[nd - 1] == '0'; nd--)
		;
	if (v < 0)
		o[n++] = '-';
	if (e < -4 || e > 14) {
		o[n++] = d[0];
		if (nd > 1) {
			o[n++] = '.';
			memcpy(o + n, d + 1, nd - 1);
			n += nd - 1;
		}
		o[n++] = 'e';
		n += fmt_i64(o + n, e);
	} else if (e < 0) {
		o[n++] = '0';
		o[n++] = '.';
		for (int i = -1; i > e; i--)
			o[n++] = '0';
		memcpy(o + n, d, nd);
		n += nd;
	} else {
		for (int i = 0; i <= e; i++)
			o[n++] = i < (int)nd ? d[i] : '0';
		if ((int)nd > e + 1) {
			o[n++] = '.';
			memcpy(o + n, d + e + 1, nd - (size_t)e - 1);
			n += nd - (size_t)e - 1;
		}
	}
	return n;
}

static void sb_num(struct dts_sb *b, double v)
{
	if (!dts_sb_reserve(b, 32))
		return;
	b->len += fmt_num(b->p + b->len, v);
	b->p[b->len] = '\0';
}

static void sb_int(struct dts_sb *b, int64_t v)
{
	if (!dts_sb_reserve(b, 24))
		return;
	b->len += fmt_i64(b->p + b->len, v);
	b->p[b->len] = '\0';
}

/* ,"key":  (key: a literal that needs no escaping); first == true omits the comma. */
static void sb_key(struct dts_sb *b, const char *key, bool first)
{
	size_t n = strlen(key);

	if (!dts_sb_reserve(b, n + 4))
		return;
	if (!first)
		b->p[b->len++] = ',';
	b->p[b->len++] = '"';
	memcpy(b->p + b->len, key, n);
	b->len += n;
	b->p[b->len++] = '"';
	b->p[b->len++] = ':';
	b->p[b->len] = '\0';
}

/*
 * When the current request's handler started (wall and thread CPU clocks), for the Server-Timing header of its reply:
 * "app;dur=WALL_MS, cpu;dur=CPU_MS" - the time spent building the reply at the server, without the network (what
 * bench/bench_api.c reports against the targets; a browser shows it in its network panel). Request threads only.
 */
static __thread int64_t req_wall_ns, req_cpu_ns;

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void timing_start(void)
{
	req_wall_ns = clock_ns(CLOCK_MONOTONIC);
	req_cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* Reply 200 with the buffer as JSON (ownership passes to the reply). */
static enum MHD_Result reply_sb(struct dts_http_req *req, struct dts_sb *b)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char timing[96];

	if (b->oom) {
		dts_sb_free(b);
		return dts_http_reply_error(req, 503, "out of memory while building the reply");
	}
	if (!b->p)
		dts_sb_put(b, "", 0);
	r = MHD_create_response_from_buffer(b->len, b->p, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		dts_sb_free(b);
		return MHD_NO;
	}
	snprintf(timing, sizeof(timing), "app;dur=%.3f, cpu;dur=%.3f",
		 (double)(clock_ns(CLOCK_MONOTONIC) - req_wall_ns) / 1e6,
		 (double)(clock_ns(CLOCK_THREAD_CPUTIME_ID) - req_cpu_ns) / 1e6);
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "Server-Timing", timing);
	ret = MHD_queue_response(req->conn, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- parameters ---------------------------------------------------------------------------------------------- */

/* A process or counter name as the store keys it: 1..DTS_MAX_NAME printable ASCII bytes other than '/' and '|'. */
static bool name_ok(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e || s[n] == '/' || s[n] == '|')
			return false;
	return n > 0 && n <= DTS_MAX_NAME;
}

#define NAME_RULE "1..200 printable ASCII characters other than '/' and '|'"

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Tags into their canonical form (the form the statsd decoder stores: sorted bytewise, duplicates removed, joined by
 * ','), so "b:2,a:1" finds the series tagged a:1,b:2. Returns false when a tag is empty or has a byte a key cannot
 * hold, there are more than DTS_MAX_TAGS, or the result is longer than DTS_MAX_TAGS_LEN.
 */
static bool tags_canonical(const char *in, char out[DTS_MAX_TAGS_LEN + 1])
{
	char copy[DTS_MAX_TAGS_LEN + 1], *tags[DTS_MAX_TAGS + 1], *save = NULL, *t;
	size_t n = 0, len = 0, inlen = strlen(in);

	if (inlen > DTS_MAX_TAGS_LEN)
		return false;
	if (inlen == 0) {
		out[0] = '\0';
		return true;
	}
	for (size_t i = 0; i < inlen; i++)
		if ((unsigned char)in[i] < 0x21 || (unsigned char)in[i] > 0x7e || in[i] == '|')
			return false;
	if (in[0] == ',' || in[inlen - 1] == ',' || strstr(in, ",,"))
		return false;
	memcpy(copy, in, inlen + 1);
	for (t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == DTS_MAX_TAGS)
			return false;
		tags[n++] = t;
	}
	qsort(tags, n, sizeof(tags[0]), str_cmp);
	for (size_t i = 0; i < n; i++) {
		size_t tl = strlen(tags[i]);

		if (i > 0 && strcmp(tags[i], tags[i - 1]) == 0)
			continue;
		if (len + (len ? 1 : 0) + tl > DTS_MAX_TAGS_LEN)
			return false;
		if (len)
			out[len++] = ',';
		memcpy(out + len, tags[i], tl);
		len += tl;
	}
	out[len] = '\0';
	return true;
}

static bool parse_type(const char *s, uint8_t *type)
{
	for (unsigned t = 0; t < DTS_NTYPES; t++)
		if (strcmp(s, dts_type_name(t)) == 0) {
			*type = (uint8_t)t;
			return true;
		}
	return false;
}

/* A decimal integer in [min, max], nothing else (no sign but '-', no spaces). */
static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	const char *p = s;
	bool neg = *p == '-';
	int64_t v = 0;

	if (neg)
		p++;
	if (!*p || strlen(p) > 18)
		return false;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	v = neg ? -v : v;
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* n decimal digits at s into *out. */
static bool digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* YYYY-MM-DD (a real calendar date, 1970..9999) at s into unix seconds of its 00:00 UTC; *end after it. */
static bool parse_date(const char *s, int64_t *t, const char **end)
{
	struct tm tm = { 0 }, back;
	int y, mo, d;
	time_t tt;

	if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d))
		return false;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31)
		return false;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tt = timegm(&tm);
	if (!gmtime_r(&tt, &back) || back.tm_mday != d || back.tm_mon != mo - 1) /* 2023-02-30 rolls over */
		return false;
	*t = (int64_t)tt;
	*end = s + 10;
	return true;
}

/*
 * A time: unix seconds (a decimal integer >= 0), or RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)"
 * ('T' and 'Z' in either case; the fraction is dropped). Returns false for anything else.
 */
static bool parse_time(const char *s, int64_t *out)
{
	const char *p;
	int64_t day;
	int h, mi, sec, oh = 0, om = 0, sign = 0;

	if (s[0] >= '0' && s[0] <= '9' && strlen(s) < 12 && !strchr(s, '-'))
		return parse_int(s, 0, DTS_STORAGE_TIME_MAX, out);
	if (!parse_date(s, &day, &p))
		return false;
	if ((*p != 'T' && *p != 't') || !digits(p + 1, 2, &h) || p[3] != ':' || !digits(p + 4, 2, &mi) ||
	    p[6] != ':' || !digits(p + 7, 2, &sec) || h > 23 || mi > 59 || sec > 60)
		return false;
	p += 9;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return false;
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		sign = 0;
	} else if ((*p == '+' || *p == '-') && digits(p + 1, 2, &oh) && p[3] == ':' && digits(p + 4, 2, &om) &&
		   p[6] == '\0' && oh <= 23 && om <= 59) {
		sign = *p == '+' ? 1 : -1;
	} else {
		return false;
	}
	*out = day + h * 3600 + mi * 60 + (sec == 60 ? 59 : sec) - sign * (oh * 3600 + om * 60);
	return *out >= 0 && *out <= DTS_STORAGE_TIME_MAX;
}

/* The series named by process, counter, type and tags (all required but tags). On a bad parameter queues the 400
 * and returns false with *ret set. */
struct series_args {
	const char *process, *counter;
	uint8_t type;
	char tags[DTS_MAX_TAGS_LEN + 1];
	char key[DTS_STORAGE_SERIES_MAX + 1]; /* the store's SERIES */
};

static bool series_args(struct dts_http_req *req, struct series_args *a, enum MHD_Result *ret)
{
	const char *type = dts_http_arg(req, "type"), *tags = dts_http_arg(req, "tags");
	struct dts_series_id id;

	a->process = dts_http_arg(req, "process");
	a->counter = dts_http_arg(req, "counter");
	if (!a->process || !name_ok(a->process)) {
		*ret = dts_http_reply_error(req, 400, "process: %s; must be " NAME_RULE,
					    a->process ? "bad name" : "required");
		return false;
	}
	if (!a->counter || !name_ok(a->counter)) {
		*ret = dts_http_reply_error(req, 400, "counter: %s; must be " NAME_RULE,
					    a->counter ? "bad name" : "required");
		return false;
	}
	if (!type || !parse_type(type, &a->type)) {
		*ret = dts_http_reply_error(req, 400, "type: %s; must be one of c, ms, g, s",
					    type ? "unknown type" : "required");
		return false;
	}
	if (!tags_canonical(tags ? tags : "", a->tags)) {
		*ret = dts_http_reply_error(req, 400,
					    "tags: must be up to %d ','-separated non-empty tags of printable ASCII "
					    "without '|', at most %d characters",
					    DTS_MAX_TAGS, DTS_MAX_TAGS_LEN);
		return false;
	}
	id = (struct dts_series_id){ .user = req->user, .process = a->process, .counter = a->counter,
				     .tags = a->tags, .type = a->type };
	if (dts_storage_series_encode(a->key, sizeof(a->key), &id) < 0) { /* defensive: every part was checked */
		*ret = dts_http_reply_error(req, 400, "process: the series cannot be named in the store");
		return false;
	}
	return true;
}

static void sb_series_head(struct dts_sb *b, const struct series_args *a)
{
	sb_key(b, "process", true);
	sb_str(b, a->process);
	sb_key(b, "counter", false);
	sb_str(b, a->counter);
	sb_key(b, "type", false);
	sb_str(b, dts_type_name(a->type));
	sb_key(b, "tags", false);
	sb_str(b, a->tags);
}

static bool need_storage(struct dts_http_req *req, enum MHD_Result *ret)
{
	if (req->ctx->storage)
		return true;
	*ret = dts_http_reply_error(req, 503, "the store is not open");
	return false;
}

/* ---- current state ------------------------------------------------------------------------------------------- */

/* One series as copied out of the RCU read side: identity strings at offsets into the collection's arena. */
struct cur_row {
	uint32_t process, counter, tags; /* offsets into arena */
	uint8_t type;
	bool has_cur;
	struct dts_current cur;
};

struct cur_collect {
	struct cur_row *rows;
	size_t n, cap;
	struct dts_sb arena;
	const char *process; /* filter, NULL = all */
	bool oom;
};

static uint32_t arena_add(struct dts_sb *a, const char *s)
{
	size_t off = a->len;

	dts_sb_put(a, s, strlen(s) + 1);
	return (uint32_t)off;
}

static int collect_row(void *arg, const struct dts_series_view *v)
{
	struct cur_collect *c = arg;
	struct cur_row *row;

	if (c->process && strcmp(c->process, v->process) != 0)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct cur_row *nr = realloc(c->rows, cap * sizeof(*nr));

		if (!nr) {
			c->oom = true;
			return 1;
		}
		c->rows = nr;
		c->cap = cap;
	}
	row = &c->rows[c->n];
	row->process = arena_add(&c->arena, v->process);
	row->counter = arena_add(&c->arena, v->counter);
	row->tags = arena_add(&c->arena, v->tags ? v->tags : "");
	if (c->arena.oom || c->arena.len > UINT32_MAX) {
		c->oom = true;
		return 1;
	}
	row->type = v->type;
	row->has_cur = v->cur != NULL;
	if (v->cur)
		row->cur = *v->cur;
	c->n++;
	return 0;
}

static int row_cmp(const void *a, const void *b, void *arena)
{
	const struct cur_row *x = a, *y = b;
	const char *s = arena;
	int c = strcmp(s + x->process, s + y->process);

	if (c)
		return c;
	c = strcmp(s + x->counter, s + y->counter);
	if (c)
		return c;
	c = strcmp(s + x->tags, s + y->tags);
	return c ? c : (int)x->type - (int)y->type;
}

static void cur_collect_free(struct cur_collect *c)
{
	free(c->rows);
	dts_sb_free(&c->arena);
}

/* Read the user's series (one process or all) out of the engine, sorted. Returns 0 or -ENOMEM. */
static int cur_collect(const struct dts_http_ctx *ctx, const char *user, const char *process, struct cur_collect *c)
{
	memset(c, 0, sizeof(*c));
	c->process = process;
	dts_merger_read_current(ctx->merger, user, collect_row, c);
	if (c->oom) {
		cur_collect_free(c);
		return -ENOMEM;
	}
	if (c->n > 1) /* rows is NULL when the user has no series: qsort(NULL, ...) is undefined */
		qsort_r(c->rows, c->n, sizeof(*c->rows), row_cmp, c->arena.p);
	return 0;
}

/* The "current" object of one series: every statistic, null where the type has no such value. */
static void sb_current(struct dts_sb *b, const struct cur_row *r)
{
	const struct dts_current *c = &r->cur;
	const bool timer = r->type == DTS_TIMER;

	sb_key(b, "count", true);
	sb_num(b, c->count);
	sb_key(b, "sum", false);
	sb_num(b, r->type == DTS_SET ? NAN : c->sum);
	sb_key(b, "rate", false);
	sb_num(b, r->type == DTS_COUNTER ? c->rate : NAN);
	sb_key(b, "avg", false);
	sb_num(b, r->type == DTS_TIMER || r->type == DTS_GAUGE ? c->avg : NAN);
	sb_key(b, "min", false);
	sb_num(b, r->type == DTS_SET ? NAN : c->min);
	sb_key(b, "max", false);
	sb_num(b, r->type == DTS_SET ? NAN : c->max);
	sb_key(b, "last", false);
	sb_num(b, r->type == DTS_SET ? NAN : c->last);
	sb_key(b, "bot10", false);
	sb_num(b, timer ? c->bot10 : NAN);
	sb_key(b, "top10", false);
	sb_num(b, timer ? c->top10 : NAN);
	sb_key(b, "p50", false);
	sb_num(b, timer ? c->p50 : NAN);
	sb_key(b, "p99", false);
	sb_num(b, timer ? c->p99 : NAN);
	sb_key(b, "distinct", false);
	sb_num(b, r->type == DTS_SET ? c->distinct : NAN);
	sb_key(b, "as_of_ms", false);
	sb_int(b, c->as_of_ms);
}

static void sb_counter(struct dts_sb *b, const struct cur_collect *c, const struct cur_row *r)
{
	const char *tags = c->arena.p + r->tags;

	dts_sb_put(b, "{", 1);
	sb_key(b, "counter", true);
	sb_str(b, c->arena.p + r->counter);
	sb_key(b, "type", false);
	sb_str(b, dts_type_name(r->type));
	if (tags[0]) { /* absent when untagged, as in the store's keys */
		sb_key(b, "tags", false);
		sb_str(b, tags);
	}
	sb_key(b, "last_seen_s", false);
	if (r->has_cur)
		sb_int(b, r->cur.last_seen_s);
	else
		dts_sb_put(b, "null", 4);
	sb_key(b, "current", false);
	if (r->has_cur) {
		dts_sb_put(b, "{", 1);
		sb_current(b, r);
		dts_sb_put(b, "}", 1);
	} else {
		dts_sb_put(b, "null", 4); /* seen, but its first 5-second slot has not closed yet */
	}
	dts_sb_put(b, "}", 1);
}

/* One process state as copied out of the RCU read side. */
struct proc_row {
	uint32_t name; /* offset into the collection's arena */
	struct dts_process p; /* user and process pointers are not valid after the read: use name */
};

struct proc_collect {
	struct proc_row *rows;
	size_t n, cap;
	struct dts_sb *arena;
	const char *process; /* filter, NULL = all */
	bool oom;
};

static int collect_proc(void *arg, const struct dts_process *p)
{
	struct proc_collect *c = arg;
	struct proc_row *row;

	if (c->process && strcmp(c->process, p->process) != 0)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct proc_row *nr = realloc(c->rows, cap * sizeof(*nr));

		if (!nr) {
			c->oom = true;
			return 1;
		}
		c->rows = nr;
		c->cap = cap;
	}
	row = &c->rows[c->n++];
	row->p = *p;
	row->p.user = row->p.process = NULL;
	row->name = arena_add(c->arena, p->process);
	if (c->arena->oom || c->arena->len > UINT32_MAX) {
		c->oom = true;
		return 1;
	}
	return 0;
}

static int proc_cmp(const void *a, const void *b, void *arena)
{
	const struct proc_row *x = a, *y = b;

	return strcmp((const char *)arena + x->name, (const char *)arena + y->name);
}

/* A process object without its counters array: {"process":..,"online":..,...,"counters":[ */
static void sb_process_head(struct dts_sb *b, const char *name, const struct dts_process *p)
{
	dts_sb_put(b, "{", 1);
	sb_key(b, "process", true);
	sb_str(b, name);
	sb_key(b, "online", false);
	dts_sb_cstr(b, p && p->online ? "true" : "false");
	sb_key(b, "online_since_ms", false);
	if (p && p->online && p->online_since_ms)
		sb_int(b, p->online_since_ms);
	else
		dts_sb_put(b, "null", 4);
	sb_key(b, "last_heard_ms", false);
	if (p && p->last_heard_ms)
		sb_int(b, p->last_heard_ms);
	else
		dts_sb_put(b, "null", 4);
	sb_key(b, "restarts", false);
	sb_int(b, p ? p->restarts : 0);
	sb_key(b, "stats", false);
	if (p && (p->has_stats || p->has_uptime)) {
		dts_sb_put(b, "{", 1);
		sb_key(b, "uptime_s", true);
		sb_int(b, p->stats.uptime_s);
		sb_key(b, "rss_bytes", false);
		sb_num(b, p->has_stats ? (double)p->stats.rss_bytes : NAN);
		sb_key(b, "cpu_pct", false);
		sb_num(b, p->has_stats ? (double)p->stats.cpu_pct : NAN);
		sb_key(b, "errors", false);
		sb_num(b, p->has_stats ? (double)p->stats.errors : NAN);
		sb_key(b, "warnings", false);
		sb_num(b, p->has_stats ? (double)p->stats.warnings : NAN);
		dts_sb_put(b, "}", 1);
	} else {
		dts_sb_put(b, "null", 4);
	}
	sb_key(b, "counters", false);
	dts_sb_put(b, "[", 1);
}

/*
 * The "processes" array of the user's current state (one process or all): the processes that have a state or live
 * series, sorted by name, each with its counters sorted by name, tags and type. Returns 0 or -ENOMEM (b may hold
 * part of it then). Any registered RCU thread.
 */
static int render_processes(const struct dts_http_ctx *ctx, const char *user, const char *process, struct dts_sb *b)
{
	struct cur_collect c;
	struct dts_sb parena = { 0 };
	struct proc_collect pc = { .arena = &parena, .process = process };
	size_t i = 0, k = 0;
	bool first = true;

	if (cur_collect(ctx, user, process, &c) != 0)
		return -ENOMEM;
	dts_merger_read_processes(ctx->merger, user, collect_proc, &pc);
	if (pc.oom) {
		free(pc.rows);
		dts_sb_free(&parena);
		cur_collect_free(&c);
		return -ENOMEM;
	}
	if (pc.n > 1)
		qsort_r(pc.rows, pc.n, sizeof(*pc.rows), proc_cmp, parena.p);
	dts_sb_reserve(b, c.n * 320 + pc.n * 256 + 16); /* one allocation for the usual sizes of a counter and a process */
	dts_sb_put(b, "[", 1);
	/* Merge the two sorted lists: a process may have a state without live series (heartbeats only) or live series
	 * without a state (not reported by the engine yet). */
	while (i < c.n || k < pc.n) {
		const char *rn = i < c.n ? c.arena.p + c.rows[i].process : NULL;
		const char *pn = k < pc.n ? parena.p + pc.rows[k].name : NULL;
		int cmp = !rn ? 1 : !pn ? -1 : strcmp(rn, pn);
		const char *name = cmp <= 0 ? rn : pn;
		bool first_counter = true;

		if (!first)
			dts_sb_put(b, ",", 1);
		first = false;
		sb_process_head(b, name, cmp >= 0 ? &pc.rows[k].p : NULL);
		if (cmp >= 0)
			k++;
		for (; cmp <= 0 && i < c.n && strcmp(c.arena.p + c.rows[i].process, name) == 0; i++) {
			if (!first_counter)
				dts_sb_put(b, ",", 1);
			first_counter = false;
			sb_counter(b, &c, &c.rows[i]);
		}
		dts_sb_put(b, "]}", 2);
	}
	dts_sb_put(b, "]", 1);
	free(pc.rows);
	dts_sb_free(&parena);
	cur_collect_free(&c);
	return b->oom ? -ENOMEM : 0;
}

/* The /api/v1/current document up to its processes array: {"user":..,"now_ms":..,"window_s":60,"processes": */
static void sb_current_head(struct dts_sb *b, const char *user, int64_t now_ms)
{
	dts_sb_put(b, "{", 1);
	sb_key(b, "user", true);
	sb_str(b, user);
	sb_key(b, "now_ms", false);
	sb_int(b, now_ms);
	sb_key(b, "window_s", false);
	sb_int(b, 60);
	sb_key(b, "processes", false);
}

/* The whole /api/v1/current document around a rendered processes array. */
static void sb_current_doc(struct dts_sb *b, const char *user, int64_t now_ms, const char *procs, size_t len)
{
	sb_current_head(b, user, now_ms);
	dts_sb_put(b, procs, len);
	dts_sb_put(b, "}", 1);
}

static enum MHD_Result api_current(struct dts_http_req *req)
{
	const char *process = dts_http_arg(req, "process");
	struct dts_sb b = { 0 };
	enum MHD_Result ret;
	int64_t now_ms = dts_now_ms();

	timing_start();
	if (!dts_http_auth(req, &ret))
		return ret;
	if (process && !name_ok(process))
		return dts_http_reply_error(req, 400, "process: must be " NAME_RULE);
	sb_current_head(&b, req->user, now_ms);
	if (render_processes(req->ctx, req->user, process, &b) != 0) {
		dts_sb_free(&b);
		return dts_http_reply_error(req, 503, "out of memory while reading the current state");
	}
	dts_sb_put(&b, "}", 1);
	return reply_sb(req, &b);
}

/* ---- GET /api/v1/series -------------------------------------------------------------------------------------- */

struct series_walk {
	struct dts_sb *b;
	uint8_t type;
	bool first;
};

/* One stored point: every field; quantiles only for timers, distinct only for sets. */
static int series_point(void *arg, int64_t t, const struct dts_stored *v)
{
	struct series_walk *w = arg;
	struct dts_sb *b = w->b;
	const bool timer = w->type == DTS_TIMER;

	dts_sb_put(b, w->first ? "{" : ",{", w->first ? 1 : 2);
	w->first = false;
	sb_key(b, "t", true);
	sb_int(b, t);
	if (!v) { /* a value this build cannot decode (newer version or damaged): shown, not hidden */
		sb_key(b, "damaged", false);
		dts_sb_put(b, "true}", 5);
		return b->oom;
	}
	sb_key(b, "sum", false);
	sb_num(b, v->agg.sum);
	sb_key(b, "count", false);
	sb_num(b, v->agg.count);
	sb_key(b, "min", false);
	sb_num(b, v->agg.min);
	sb_key(b, "max", false);
	sb_num(b, v->agg.max);
	sb_key(b, "avg", false);
	sb_num(b, v->agg.count > 0 ? v->agg.sum / v->agg.count : NAN);
	sb_key(b, "bot10", false);
	sb_num(b, timer ? dts_sketch_quantile(&v->sketch, 0.1) : NAN);
	sb_key(b, "top10", false);
	sb_num(b, timer ? dts_sketch_quantile(&v->sketch, 0.9) : NAN);
	sb_key(b, "p50", false);
	sb_num(b, timer ? dts_sketch_quantile(&v->sketch, 0.5) : NAN);
	sb_key(b, "p99", false);
	sb_num(b, timer ? dts_sketch_quantile(&v->sketch, 0.99) : NAN);
	sb_key(b, "fst", false);
	sb_num(b, v->agg.fst);
	sb_key(b, "lst", false);
	sb_num(b, v->agg.lst);
	if (w->type == DTS_SET) {
		sb_key(b, "distinct", false);
		sb_num(b, dts_set_cardinality(&v->set));
	}
	dts_sb_put(b, "}", 1);
	return b->oom; /* stop the walk when out of memory */
}

static enum MHD_Result api_series(struct dts_http_req *req)
{
	const char *res_s = dts_http_arg(req, "res"), *from_s = dts_http_arg(req, "from"), *to_s = dts_http_arg(req, "to");
	struct series_args a;
	struct series_walk w;
	struct dts_sb b = { 0 };
	enum dts_res res = DTS_RES_MINUTE;
	enum MHD_Result ret;
	int64_t from, to, period;
	long n;

	timing_start();
	if (!dts_http_auth(req, &ret) || !series_args(req, &a, &ret) || !need_storage(req, &ret))
		return ret;
	if (res_s && strcmp(res_s, "minute") == 0)
		res = DTS_RES_MINUTE;
	else if (res_s && strcmp(res_s, "hour") == 0)
		res = DTS_RES_HOUR;
	else if (res_s)
		return dts_http_reply_error(req, 400, "res: must be minute or hour");
	period = res == DTS_RES_HOUR ? 3600 : 60;
	if (to_s) {
		if (!parse_time(to_s, &to))
			return dts_http_reply_error(req, 400, "to: must be unix seconds or an RFC 3339 time "
							      "(2024-05-01T12:00:00Z)");
	} else {
		to = dts_now_ms() / 1000;
	}
	if (from_s) {
		if (!parse_time(from_s, &from))
			return dts_http_reply_error(req, 400, "from: must be unix seconds or an RFC 3339 time "
								"(2024-05-01T12:00:00Z)");
	} else {
		from = to - (res == DTS_RES_HOUR ? SERIES_DEFAULT_HOUR_S : SERIES_DEFAULT_MINUTE_S);
		from = from < 0 ? 0 : from;
	}
	if (from >= to)
		return dts_http_reply_error(req, 400, "from: must be before to (from %" PRId64 ", to %" PRId64 ")", from,
					    to);
	/* points whose minute (hour) starts in [from rounded down, to) */
	if ((to - from / period * period + period - 1) / period > MAX_POINTS)
		return dts_http_reply_error(req, 400, "from: [from, to) spans more than %d %ss; narrow it%s", MAX_POINTS,
					    dts_storage_res_name(res), res == DTS_RES_MINUTE ? " or use res=hour" : "");
	dts_sb_put(&b, "{", 1);
	sb_series_head(&b, &a);
	sb_key(&b, "res", false);
	sb_str(&b, dts_storage_res_name(res));
	sb_key(&b, "from", false);
	sb_int(&b, from);
	sb_key(&b, "to", false);
	sb_int(&b, to);
	sb_key(&b, "points", false);
	dts_sb_put(&b, "[", 1);
	w = (struct series_walk){ .b = &b, .type = a.type, .first = true };
	n = dts_storage_read(req->ctx->storage, res, a.key, from, to, series_point, &w);
	if (n < 0 && !b.oom) {
		dts_sb_free(&b);
		return dts_http_reply_error(req, 503, "reading the store failed (%s)", strerror((int)-n));
	}
	dts_sb_put(&b, "]}", 2);
	return reply_sb(req, &b);
}

/* ---- GET /api/v1/daily --------------------------------------------------------------------------------------- */

/* The summary of one 10-minute bucket of one day. */
struct daily_cell {
	unsigned minutes; /* 0: no data */
	double sum, count, min, max, avg, bot10, top10;
};

struct daily_walk {
	int64_t start; /* first second read: day_start - 7 days */
	uint8_t type;
	int cell; /* index (day * DAILY_BUCKETS + bucket) being accumulated, -1 none */
	struct dts_agg agg;
	struct dts_sketch sketch;
	unsigned minutes;
	int err;
	struct daily_cell cells[(DAILY_PAST_DAYS + 1) * DAILY_BUCKETS]; /* day 0 = 7 days ago .. day 7 = the date */
};

static void daily_close_cell(struct daily_walk *w)
{
	struct daily_cell *c;

	if (w->cell < 0)
		return;
	c = &w->cells[w->cell];
	c->minutes = w->minutes;
	c->sum = w->agg.sum;
	c->count = w->agg.count;
	c->min = w->agg.min;
	c->max = w->agg.max;
	c->avg = w->agg.count > 0 ? w->agg.sum / w->agg.count : NAN;
	c->bot10 = w->type == DTS_TIMER ? dts_sketch_quantile(&w->sketch, 0.1) : NAN;
	c->top10 = w->type == DTS_TIMER ? dts_sketch_quantile(&w->sketch, 0.9) : NAN;
	w->cell = -1;
}

/* Minutes arrive in time order: accumulate into the current cell, close it when the next minute is in another. */
static int daily_point(void *arg, int64_t t, const struct dts_stored *v)
{
	struct daily_walk *w = arg;
	int cell = (int)((t - w->start) / DAILY_BUCKET_S);

	if (!v || v->type != w->type || cell < 0 || cell >= (DAILY_PAST_DAYS + 1) * DAILY_BUCKETS)
		return 0; /* damaged values are left out of the summaries, as dts_storage_week_bucket does */
	if (cell != w->cell) {
		daily_close_cell(w);
		w->cell = cell;
		w->minutes = 0;
		dts_agg_init(&w->agg);
		dts_sketch_clear(&w->sketch);
	}
	dts_agg_merge(&w->agg, &v->agg);
	if (w->type == DTS_TIMER && v->sketch.count > 0 && dts_sketch_merge(&w->sketch, &v->sketch) != 0) {
		w->err = -ENOMEM;
		return 1;
	}
	w->minutes++;
	return 0;
}

static void sb_cell(struct dts_sb *b, int64_t t, const struct daily_cell *c, int days)
{
	dts_sb_put(b, "{", 1);
	sb_key(b, "t", true);
	sb_int(b, t);
	sb_key(b, "sum", false);
	sb_num(b, c->sum);
	sb_key(b, "count", false);
	sb_num(b, c->count);
	sb_key(b, "min", false);
	sb_num(b, c->min);
	sb_key(b, "max", false);
	sb_num(b, c->max);
	sb_key(b, "avg", false);
	sb_num(b, c->avg);
	sb_key(b, "bot10", false);
	sb_num(b, c->bot10);
	sb_key(b, "top10", false);
	sb_num(b, c->top10);
	if (days >= 0) {
		sb_key(b, "days", false);
		sb_int(b, days);
	}
	dts_sb_put(b, "}", 1);
}

struct dts_http_api;
static bool week_get(struct dts_http_api *api, const char *key, int64_t day_start, struct daily_cell *cells);
static void week_put(struct dts_http_api *api, const char *key, int64_t day_start, const struct daily_cell *cells);

/* Field-by-field average of one field over the past days that have a finite value of it. */
static double past_avg(const struct daily_walk *w, int bucket, size_t field_off)
{
	double s = 0;
	unsigned n = 0;

	for (int d = 0; d < DAILY_PAST_DAYS; d++) {
		const struct daily_cell *c = &w->cells[d * DAILY_BUCKETS + bucket];
		double v = *(const double *)(const void *)((const char *)c + field_off);

		if (c->minutes && isfinite(v)) {
			s += v;
			n++;
		}
	}
	return n ? s / n : NAN;
}

static enum MHD_Result api_daily(struct dts_http_req *req)
{
	const char *tz_s = dts_http_arg(req, "tz_offset_min"), *date_s = dts_http_arg(req, "date");
	struct series_args a;
	struct daily_walk *w;
	struct dts_sb b = { 0 };
	enum MHD_Result ret;
	bool cached;
	int64_t tz = 0, day_start, date_utc;
	char date[16];
	struct tm tm;
	time_t tt;
	long n;

	timing_start();
	if (!dts_http_auth(req, &ret) || !series_args(req, &a, &ret) || !need_storage(req, &ret))
		return ret;
	if (tz_s && !parse_int(tz_s, -TZ_OFFSET_MAX_MIN, TZ_OFFSET_MAX_MIN, &tz))
		return dts_http_reply_error(req, 400, "tz_offset_min: must be an integer between %d and %d (minutes "
						      "east of UTC)", -TZ_OFFSET_MAX_MIN, TZ_OFFSET_MAX_MIN);
	if (date_s) {
		const char *end;

		if (!parse_date(date_s, &date_utc, &end) || *end)
			return dts_http_reply_error(req, 400, "date: must be a calendar date YYYY-MM-DD from 1970 on");
	} else {
		int64_t local = dts_now_ms() / 1000 + tz * 60;

		date_utc = local - (local % 86400 + 86400) % 86400;
	}
	day_start = date_utc - tz * 60; /* local midnight of the date, in unix seconds */
	tt = (time_t)date_utc;
	gmtime_r(&tt, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d", &tm);

	w = malloc(sizeof(*w));
	if (!w)
		return dts_http_reply_error(req, 503, "out of memory");
	memset(w->cells, 0, sizeof(w->cells));
	w->start = day_start - (int64_t)DAILY_PAST_DAYS * 86400;
	w->type = a.type;
	w->cell = -1;
	w->minutes = 0;
	w->err = 0;
	dts_agg_init(&w->agg);
	dts_sketch_init(&w->sketch);
	/* One iterator over the 8 days (at most 11,520 minutes), bucketed here in time order; or over the date alone when
	 * the 7 days before it were summarised less than WEEK_CACHE_MS ago. */
	cached = week_get(req->h->api, a.key, day_start, w->cells);
	n = dts_storage_read(req->ctx->storage, DTS_RES_MINUTE, a.key, cached ? day_start : w->start,
			     day_start + 86400, daily_point, w);
	daily_close_cell(w);
	dts_sketch_free(&w->sketch);
	if (n >= 0 && !w->err && !cached)
		week_put(req->h->api, a.key, day_start, w->cells);
	if (n < 0 || w->err) {
		int e = n < 0 ? (int)-n : -w->err;

		free(w);
		return dts_http_reply_error(req, 503, "reading the store failed (%s)", strerror(e));
	}

	dts_sb_put(&b, "{", 1);
	sb_series_head(&b, &a);
	sb_key(&b, "date", false);
	sb_str(&b, date);
	sb_key(&b, "tz_offset_min", false);
	sb_int(&b, tz);
	sb_key(&b, "bucket_s", false);
	sb_int(&b, DAILY_BUCKET_S);
	sb_key(&b, "day_start", false);
	sb_int(&b, day_start);
	sb_key(&b, "today", false);
	dts_sb_put(&b, "[", 1);
	for (int i = 0; i < DAILY_BUCKETS; i++) {
		const struct daily_cell *c = &w->cells[DAILY_PAST_DAYS * DAILY_BUCKETS + i];

		if (i)
			dts_sb_put(&b, ",", 1);
		if (c->minutes)
			sb_cell(&b, day_start + (int64_t)i * DAILY_BUCKET_S, c, -1);
		else
			dts_sb_put(&b, "null", 4);
	}
	dts_sb_put(&b, "]", 1);
	sb_key(&b, "week", false);
	dts_sb_put(&b, "[", 1);
	for (int i = 0; i < DAILY_BUCKETS; i++) {
		struct daily_cell avg = { 0 };
		int days = 0;

		for (int d = 0; d < DAILY_PAST_DAYS; d++)
			days += w->cells[d * DAILY_BUCKETS + i].minutes > 0;
		if (i)
			dts_sb_put(&b, ",", 1);
		if (!days) {
			dts_sb_put(&b, "null", 4);
			continue;
		}
		avg.sum = past_avg(w, i, offsetof(struct daily_cell, sum));
		avg.count = past_avg(w, i, offsetof(struct daily_cell, count));
		avg.min = past_avg(w, i, offsetof(struct daily_cell, min));
		avg.max = past_avg(w, i, offsetof(struct daily_cell, max));
		avg.avg = past_avg(w, i, offsetof(struct daily_cell, avg));
		avg.bot10 = past_avg(w, i, offsetof(struct daily_cell, bot10));
		avg.top10 = past_avg(w, i, offsetof(struct daily_cell, top10));
		sb_cell(&b, day_start + (int64_t)i * DAILY_BUCKET_S, &avg, days);
	}
	dts_sb_put(&b, "]}", 2);
	free(w);
	return reply_sb(req, &b);
}

/* ---- events -------------------------------------------------------------------------------------------------- */

static const char *event_kind_name(uint8_t kind)
{
	return kind == DTS_NATIVE_ERROR ? "error" : "warning";
}

/* One event object (the contract of GET /api/v1/events and of the stream's "event" frames). */
static void sb_event(struct dts_sb *b, const struct dts_event *ev)
{
	dts_sb_put(b, "{", 1);
	sb_key(b, "seq", true);
	sb_int(b, (int64_t)ev->seq);
	sb_key(b, "ts_ms", false);
	sb_int(b, ev->ts_ms);
	sb_key(b, "process", false);
	sb_str(b, ev->process);
	sb_key(b, "kind", false);
	sb_str(b, event_kind_name(ev->kind));
	sb_key(b, "text", false);
	sb_str(b, ev->text);
	dts_sb_put(b, "}", 1);
}

/* The rendered events of a read, in increasing seq; each entry's JSON is at [off, off + len) of b. */
struct ev_collect {
	struct dts_sb b;
	struct {
		uint64_t seq;
		uint32_t off, len;
	} ev[2 * DTS_EVENTS_KEPT];
	size_t n;
	int kind; /* filter: -1 any */
	const char *process; /* filter, NULL any */
};

static int collect_event(void *arg, const struct dts_event *ev)
{
	struct ev_collect *c = arg;
	size_t off = c->b.len;

	if (c->n == sizeof(c->ev) / sizeof(c->ev[0]))
		return 1; /* defensive: the engine keeps at most 2 * DTS_EVENTS_KEPT per user */
	if ((c->kind >= 0 && ev->kind != c->kind) || (c->process && strcmp(c->process, ev->process) != 0))
		return 0;
	sb_event(&c->b, ev);
	if (c->b.oom)
		return 1;
	c->ev[c->n].seq = ev->seq;
	c->ev[c->n].off = (uint32_t)off;
	c->ev[c->n].len = (uint32_t)(c->b.len - off);
	c->n++;
	return 0;
}

static enum MHD_Result api_events(struct dts_http_req *req)
{
	const char *kind_s = dts_http_arg(req, "kind"), *process = dts_http_arg(req, "process");
	const char *limit_s = dts_http_arg(req, "limit");
	struct ev_collect *c;
	struct dts_sb b = { 0 };
	enum MHD_Result ret;
	int64_t limit = EVENTS_MAX;
	int kind = -1;

	timing_start();
	if (!dts_http_auth(req, &ret))
		return ret;
	if (kind_s && strcmp(kind_s, "error") == 0)
		kind = DTS_NATIVE_ERROR;
	else if (kind_s && strcmp(kind_s, "warning") == 0)
		kind = DTS_NATIVE_WARNING;
	else if (kind_s)
		return dts_http_reply_error(req, 400, "kind: must be error or warning");
	if (process && !name_ok(process))
		return dts_http_reply_error(req, 400, "process: must be " NAME_RULE);
	if (limit_s && !parse_int(limit_s, 1, EVENTS_MAX, &limit))
		return dts_http_reply_error(req, 400, "limit: must be an integer between 1 and %d", EVENTS_MAX);
	c = calloc(1, sizeof(*c));
	if (!c)
		return dts_http_reply_error(req, 503, "out of memory");
	c->kind = kind;
	c->process = process;
	dts_merger_read_events(req->ctx->merger, req->user, 0, collect_event, c);
	dts_sb_cstr(&b, "{\"events\":[");
	for (size_t i = 0, shown = 0; i < c->n && shown < (size_t)limit; i++, shown++) { /* newest first */
		if (shown)
			dts_sb_put(&b, ",", 1);
		dts_sb_put(&b, c->b.p + c->ev[c->n - 1 - i].off, c->ev[c->n - 1 - i].len);
	}
	dts_sb_put(&b, "]}", 2);
	if (c->b.oom)
		b.oom = true;
	dts_sb_free(&c->b);
	free(c);
	return reply_sb(req, &b);
}

/* ---- GET /api/v1/stream: Server-Sent Events ------------------------------------------------------------------ */

/* One open stream. Every field after conn is under hub->lock. */
struct sse_stream {
	struct sse_stream *next, *prev;
	struct dts_http_api *hub;
	struct MHD_Connection *conn;
	char user[DTS_MAX_USER + 1];
	struct dts_sb out; /* frames not yet handed to libmicrohttpd, from out_off */
	size_t out_off;
	uint64_t last_seq; /* newest event sent (or skipped at connect) */
	uint64_t procs_hash; /* hash of the last current state sent */
	int64_t last_write_ms; /* for the keepalive */
	bool suspended; /* the reader suspended the connection; only the hub resumes it */
	bool ended; /* end the response once out is drained (shutdown) */
	bool failed; /* end it at once (the client stopped reading) */
};

/* The hub: one per HTTP server (struct dts_http's api). */
struct dts_http_api {
	struct dts_http *h;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct sse_stream *streams; /* under lock */
	unsigned nstreams; /* under lock */
	bool stop; /* under lock */
	bool thread_running;
	pthread_t thread;
	/* the daily view's past days (week_get/week_put), under cache_lock */
	pthread_mutex_t cache_lock;
	struct week_entry *week[WEEK_CACHE_ENTRIES];
	unsigned week_next; /* the slot replaced next (round robin: the oldest) */
};

/* ---- the daily view's past days, kept for WEEK_CACHE_MS --------------------------------------------------------- */

/* The 7 x 144 cells of the days before one date of one series: they change only through late data, so they are
 * summarised once (reading 10,080 minutes) and kept for a minute, and a request reads only its date's minutes. */
struct week_entry {
	char key[DTS_STORAGE_SERIES_MAX + 1];
	int64_t day_start;
	int64_t made_ms;
	struct daily_cell cells[DAILY_PAST_DAYS * DAILY_BUCKETS];
};

static bool week_get(struct dts_http_api *api, const char *key, int64_t day_start, struct daily_cell *cells)
{
	int64_t now = dts_now_ms();
	bool hit = false;

	if (!api)
		return false;
	pthread_mutex_lock(&api->cache_lock);
	for (unsigned i = 0; i < WEEK_CACHE_ENTRIES && !hit; i++) {
		const struct week_entry *e = api->week[i];

		if (e && e->day_start == day_start && now - e->made_ms < WEEK_CACHE_MS && strcmp(e->key, key) == 0) {
			memcpy(cells, e->cells, sizeof(e->cells));
			hit = true;
		}
	}
	pthread_mutex_unlock(&api->cache_lock);
	return hit;
}

static void week_put(struct dts_http_api *api, const char *key, int64_t day_start, const struct daily_cell *cells)
{
	struct week_entry *e;

	if (!api)
		return;
	pthread_mutex_lock(&api->cache_lock);
	e = api->week[api->week_next];
	if (!e)
		e = api->week[api->week_next] = malloc(sizeof(*e));
	if (e) {
		snprintf(e->key, sizeof(e->key), "%s", key);
		e->day_start = day_start;
		e->made_ms = dts_now_ms();
		memcpy(e->cells, cells, sizeof(e->cells));
		api->week_next = (api->week_next + 1) % WEEK_CACHE_ENTRIES;
	}
	pthread_mutex_unlock(&api->cache_lock);
}

static void sse_append_current(struct sse_stream *s, const char *user, int64_t now_ms, const struct dts_sb *procs)
{
	dts_sb_cstr(&s->out, "event: current\ndata: ");
	sb_current_doc(&s->out, user, now_ms, procs->p, procs->len);
	dts_sb_put(&s->out, "\n\n", 2);
}

static void sse_append_event(struct sse_stream *s, uint64_t seq, const char *json, size_t len)
{
	dts_sb_printf(&s->out, "event: event\nid: %" PRIu64 "\ndata: ", seq);
	dts_sb_put(&s->out, json, len);
	dts_sb_put(&s->out, "\n\n", 2);
}

/* The content reader: hand over what is buffered; with nothing buffered, suspend until the hub has more. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse_stream *s = cls;
	struct dts_http_api *hub = s->hub;
	ssize_t n;

	(void)pos;
	pthread_mutex_lock(&hub->lock);
	if (s->failed) {
		n = MHD_CONTENT_READER_END_WITH_ERROR;
	} else if (s->out.len > s->out_off) {
		size_t k = s->out.len - s->out_off;

		k = k < max ? k : max;
		memcpy(buf, s->out.p + s->out_off, k);
		s->out_off += k;
		if (s->out_off == s->out.len) {
			s->out.len = s->out_off = 0;
		} else if (s->out_off > s->out.len / 2) { /* a client that lags a little keeps the buffer small */
			memmove(s->out.p, s->out.p + s->out_off, s->out.len - s->out_off);
			s->out.len -= s->out_off;
			s->out_off = 0;
		}
		n = (ssize_t)k;
	} else if (s->ended) {
		n = MHD_CONTENT_READER_END_OF_STREAM;
	} else {
		s->suspended = true;
		MHD_suspend_connection(s->conn);
		n = 0;
	}
	pthread_mutex_unlock(&hub->lock);
	return n;
}

/* The response is gone (connection closed, or the daemon stopped): forget the stream. */
static void sse_free(void *cls)
{
	struct sse_stream *s = cls;
	struct dts_http_api *hub = s->hub;

	pthread_mutex_lock(&hub->lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		hub->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	hub->nstreams--;
	pthread_mutex_unlock(&hub->lock);
	dts_sb_free(&s->out);
	free(s);
}

/* The distinct users with streams (copied under the lock). Returns the count; *users is malloc'd. */
static size_t hub_users(struct dts_http_api *hub, char (**users)[DTS_MAX_USER + 1])
{
	size_t n = 0;

	*users = malloc((hub->nstreams + 1) * sizeof(**users));
	if (!*users)
		return 0;
	for (struct sse_stream *s = hub->streams; s; s = s->next) {
		size_t i = 0;

		while (i < n && strcmp((*users)[i], s->user) != 0)
			i++;
		if (i == n)
			memcpy((*users)[n++], s->user, sizeof(s->user));
	}
	return n;
}

/*
 * One round for one user (hub->lock not held on entry or exit): render its current state when due, read its new
 * events, append frames to each of its streams, and resume the suspended ones that got something.
 */
static void hub_user_round(struct dts_http_api *hub, const char *user, bool current_due, int64_t now_ms)
{
	const struct dts_http_ctx *ctx = &hub->h->ctx;
	struct MHD_Connection **resume = NULL;
	struct ev_collect *ev = calloc(1, sizeof(*ev));
	struct dts_sb procs = { 0 };
	uint64_t hash = 0, after = UINT64_MAX;
	size_t nresume = 0;
	bool have_procs = false;

	if (!ev)
		return;
	ev->kind = -1;
	if (current_due && render_processes(ctx, user, NULL, &procs) == 0) {
		have_procs = true;
		hash = dts_hash64(procs.p, procs.len, DTS_HASH_SEED);
	}
	pthread_mutex_lock(&hub->lock);
	for (struct sse_stream *s = hub->streams; s; s = s->next)
		if (strcmp(s->user, user) == 0 && s->last_seq < after)
			after = s->last_seq;
	pthread_mutex_unlock(&hub->lock);
	if (after != UINT64_MAX)
		dts_merger_read_events(ctx->merger, user, after, collect_event, ev);

	pthread_mutex_lock(&hub->lock);
	resume = malloc((hub->nstreams + 1) * sizeof(*resume)); /* streams may have come since the first look */
	for (struct sse_stream *s = hub->streams; s && resume; s = s->next) {
		size_t before;

		if (strcmp(s->user, user) != 0 || s->ended || s->failed)
			continue;
		before = s->out.len;
		if (have_procs && hash != s->procs_hash) {
			sse_append_current(s, user, now_ms, &procs);
			s->procs_hash = hash;
		}
		for (size_t i = 0; i < ev->n; i++) {
			if (ev->ev[i].seq <= s->last_seq)
				continue;
			sse_append_event(s, ev->ev[i].seq, ev->b.p + ev->ev[i].off, ev->ev[i].len);
			s->last_seq = ev->ev[i].seq;
		}
		if (s->out.len == before && now_ms - s->last_write_ms >= SSE_KEEPALIVE_MS)
			dts_sb_cstr(&s->out, ": keepalive\n\n");
		if (s->out.len != before)
			s->last_write_ms = now_ms;
		if (s->out.oom || s->out.len - s->out_off > SSE_MAX_PENDING)
			s->failed = true; /* the client does not keep up: end it rather than grow without bound */
		if (s->suspended && (s->out.len > s->out_off || s->failed)) {
			s->suspended = false;
			resume[nresume++] = s->conn;
		}
	}
	pthread_mutex_unlock(&hub->lock);
	/* A suspended connection cannot be closed until it is resumed, so these pointers are still valid. */
	for (size_t i = 0; i < nresume; i++)
		MHD_resume_connection(resume[i]);
	free(resume);
	dts_sb_free(&procs);
	dts_sb_free(&ev->b);
	free(ev);
}

static void *hub_main(void *arg)
{
	struct dts_http_api *hub = arg;
	int64_t last_current = 0;

	pthread_setname_np(pthread_self(), "dts-sse");
	setpriority(PRIO_PROCESS, (id_t)gettid(), DTS_HTTP_NICE); /* as the request threads (http_internal.h) */
	dts_rcu_register_thread();
	pthread_mutex_lock(&hub->lock);
	while (!hub->stop) {
		struct timespec until;
		char(*users)[DTS_MAX_USER + 1] = NULL;
		size_t n;
		int64_t now_ms;
		bool current_due;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += HUB_PERIOD_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&hub->wake, &hub->lock, &until);
		if (hub->stop || !hub->nstreams)
			continue;
		n = hub_users(hub, &users);
		pthread_mutex_unlock(&hub->lock);
		now_ms = dts_now_ms();
		current_due = now_ms - last_current >= SSE_CURRENT_MS;
		if (current_due)
			last_current = now_ms;
		for (size_t i = 0; i < n; i++)
			hub_user_round(hub, users[i], current_due, now_ms);
		free(users);
		pthread_mutex_lock(&hub->lock);
	}
	pthread_mutex_unlock(&hub->lock);
	dts_rcu_unregister_thread();
	return NULL;
}

static enum MHD_Result api_stream(struct dts_http_req *req)
{
	struct dts_http_api *hub = req->h->api;
	const char *last_id = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Last-Event-ID");
	struct dts_merger_stats ms;
	struct MHD_Response *r;
	struct sse_stream *s;
	struct dts_sb procs = { 0 };
	enum MHD_Result ret;
	int64_t now_ms = dts_now_ms(), resume_from = -1;

	if (!dts_http_auth(req, &ret))
		return ret;
	if (last_id && *last_id && !parse_int(last_id, 0, INT64_MAX, &resume_from))
		return dts_http_reply_error(req, 400, "Last-Event-ID: must be the id of an event (a decimal integer)");
	if (strcmp(req->method, "HEAD") == 0)
		return dts_http_reply(req, 200, "text/event-stream", strdup(""), 0);
	if (!hub)
		return dts_http_reply_error(req, 503, "streaming is not available");
	s = calloc(1, sizeof(*s));
	if (!s || render_processes(req->ctx, req->user, NULL, &procs) != 0) {
		free(s);
		dts_sb_free(&procs);
		return dts_http_reply_error(req, 503, "out of memory");
	}
	s->hub = hub;
	s->conn = req->conn;
	memcpy(s->user, req->user, sizeof(s->user));
	s->last_write_ms = now_ms;
	/* Without Last-Event-ID the stream starts with what happens from now on (GET /api/v1/events has the past). */
	dts_merger_stats_read(req->ctx->merger, &ms);
	s->last_seq = resume_from >= 0 ? (uint64_t)resume_from : ms.event_seq;
	s->procs_hash = dts_hash64(procs.p, procs.len, DTS_HASH_SEED);
	dts_sb_cstr(&s->out, "retry: 3000\n\n");
	sse_append_current(s, req->user, now_ms, &procs);
	dts_sb_free(&procs);
	if (s->out.oom) {
		dts_sb_free(&s->out);
		free(s);
		return dts_http_reply_error(req, 503, "out of memory");
	}
	pthread_mutex_lock(&hub->lock);
	if (hub->stop || hub->nstreams >= SSE_MAX_STREAMS) {
		bool stopping = hub->stop;

		pthread_mutex_unlock(&hub->lock);
		dts_sb_free(&s->out);
		free(s);
		if (stopping)
			return dts_http_reply_error(req, 503, "the server is shutting down");
		return dts_http_reply_error(req, 503, "too many open streams (%d); close one and retry",
					    SSE_MAX_STREAMS);
	}
	s->next = hub->streams;
	if (hub->streams)
		hub->streams->prev = s;
	hub->streams = s;
	hub->nstreams++;
	pthread_mutex_unlock(&hub->lock);
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, s, sse_free);
	if (!r) {
		sse_free(s); /* unlinks and frees */
		return MHD_NO;
	}
	/* Events already taken after resume_from are delivered by the hub's next round (within HUB_PERIOD_MS). */
	MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Accel-Buffering", "no"); /* a reverse proxy must not buffer the stream */
	MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)SSE_TIMEOUT_S);
	ret = MHD_queue_response(req->conn, 200, r);
	MHD_destroy_response(r);
	return ret;
}

int dts__http_api_start(struct dts_http *h)
{
	struct dts_http_api *hub = calloc(1, sizeof(*hub));

	if (!hub)
		return -ENOMEM;
	hub->h = h;
	pthread_mutex_init(&hub->lock, NULL);
	pthread_mutex_init(&hub->cache_lock, NULL);
	pthread_cond_init(&hub->wake, NULL);
	if (pthread_create(&hub->thread, NULL, hub_main, hub) != 0) {
		pthread_cond_destroy(&hub->wake);
		pthread_mutex_destroy(&hub->cache_lock);
		pthread_mutex_destroy(&hub->lock);
		free(hub);
		return -EAGAIN;
	}
	hub->thread_running = true;
	h->api = hub;
	return 0;
}

void dts__http_api_stop(struct dts_http *h)
{
	struct dts_http_api *hub = h->api;
	struct MHD_Connection **resume;
	size_t n = 0;

	if (!hub)
		return;
	pthread_mutex_lock(&hub->lock);
	hub->stop = true;
	resume = calloc(hub->nstreams + 1, sizeof(*resume));
	for (struct sse_stream *s = hub->streams; s; s = s->next) {
		s->ended = true;
		if (s->suspended && resume) {
			s->suspended = false;
			resume[n++] = s->conn;
		}
	}
	pthread_cond_signal(&hub->wake);
	pthread_mutex_unlock(&hub->lock);
	/* libmicrohttpd must not be stopped with suspended connections: resume them; their reader ends the response. */
	for (size_t i = 0; i < n; i++)
		MHD_resume_connection(resume[i]);
	free(resume);
	if (hub->thread_running)
		pthread_join(hub->thread, NULL);
	hub->thread_running = false;
}

void dts__http_api_free(struct dts_http *h)
{
	struct dts_http_api *hub = h->api;

	if (!hub)
		return;
	for (unsigned i = 0; i < WEEK_CACHE_ENTRIES; i++)
		free(hub->week[i]);
	pthread_cond_destroy(&hub->wake);
	pthread_mutex_destroy(&hub->cache_lock);
	pthread_mutex_destroy(&hub->lock);
	free(hub);
	h->api = NULL;
}

/* ---- PUT /agg: the original DaTtSs HTTP protocol ------------------------------------------------------------- */

/* The reply of PUT /agg: {"ok":true}, or {"ok":false,"error":msg} (plus what was taken when some partials were). */
__attribute__((format(printf, 3, 4))) static enum MHD_Result agg_error(struct dts_http_req *req, unsigned status,
								       const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return dts_http_reply_json(req, status, json_pack("{s:b,s:s}", "ok", 0, "error", msg));
}

static enum MHD_Result agg_put(struct dts_http_req *req)
{
	const struct dts_http_ctx *ctx = req->ctx;
	const char *auth = dts_http_arg(req, "auth"), *why;
	const uint8_t *secret = NULL;
	size_t secret_len = 0, taken = 0, full = 0;
	char user[DTS_MAX_USER + 1], err[256];
	struct dts_put_agg_body body;
	int64_t now_s = dts_now_ms() / 1000;
	int rc;

	if (!auth)
		return agg_error(req, 401, "auth: required (PUT /agg?auth=AUTH)");
	if (ctx->users)
		secret = dts_users_server_secret(ctx->users, &secret_len);
	why = dts_put_agg_auth(secret, secret_len, auth, user);
	if (!why && !dts_users_exists(ctx->users, user))
		why = "unknown user (removed?)";
	if (why)
		return agg_error(req, 401, "auth: %s", why);
	rc = dts_put_agg_parse(req->body, req->body_len, &body, err, sizeof(err));
	if (rc < 0) {
		dts_put_agg_free(&body);
		return agg_error(req, rc == -ENOMEM ? 503 : 400, "%s", err);
	}
	if (body.empty) /* an empty body: a heartbeat that names no process, nothing to record */
		return dts_http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));

	/* Everything valid goes in, under the API core's lock (its owner is whoever holds it). */
	pthread_mutex_lock(ctx->api_core_lock);
	if (body.upt >= 0 && dts_core_ingest_proc(ctx->api_core, user, body.process,
						  body.upt > UINT32_MAX ? UINT32_MAX : (uint32_t)body.upt,
						  now_s) == -ENOSPC)
		full++;
	for (size_t i = 0; i < body.n; i++) {
		const struct dts_put_agg_part *p = &body.parts[i];
		struct dts_partial_in in = {
			.user = user, .process = body.process, .counter = p->counter, .tags = NULL, .type = p->type,
			.slot_s = now_s, .agg = p->agg, .sketch = p->type == DTS_TIMER ? &p->sketch : NULL,
		};

		rc = dts_core_ingest_partial(ctx->api_core, &in, now_s);
		if (rc == 0)
			taken++;
		else if (rc == -ENOSPC)
			full++;
		else if (!body.refused++) /* defensive: every field was checked by dts_put_agg_parse */
			snprintf(body.first_error, sizeof(body.first_error), "prt: '%s' refused by the engine (%s)",
				 p->counter, strerror(-rc));
	}
	pthread_mutex_unlock(ctx->api_core_lock);
	dts_put_agg_free(&body);
	if (body.refused)
		return dts_http_reply_json(req, 400, json_pack("{s:b,s:s,s:I,s:I}", "ok", 0, "error", body.first_error,
							       "taken", (json_int_t)taken, "refused",
							       (json_int_t)body.refused));
	if (full)
		return agg_error(req, 503, "server busy: %zu partials or reports dropped (table full); send again", full);
	return dts_http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* ---- users' current values on GET /metrics ------------------------------------------------------------------- */

struct prom_users {
	char (*ids)[DTS_MAX_USER + 1];
	size_t n, cap;
	bool oom;
};

static int prom_user(void *arg, const struct dts_user_info *u)
{
	struct prom_users *p = arg;

	if (!u->prometheus)
		return 0;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		void *ni = realloc(p->ids, cap * sizeof(*p->ids));

		if (!ni) {
			p->oom = true;
			return 1;
		}
		p->ids = ni;
		p->cap = cap;
	}
	snprintf(p->ids[p->n++], sizeof(p->ids[0]), "%s", u->id);
	return 0;
}

/* A label value: backslash, double quote and newline escaped (the exposition format's rules). */
static void sb_label(struct dts_sb *b, const char *s)
{
	dts_sb_put(b, "\"", 1);
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			dts_sb_put(b, "\\", 1);
		if (*s == '\n')
			dts_sb_put(b, "\\n", 2);
		else
			dts_sb_put(b, s, 1);
	}
	dts_sb_put(b, "\"", 1);
}

char *dts__http_api_prometheus(struct dts_http *h, size_t *len)
{
	static const struct {
		const char *stat;
		unsigned types; /* bit per enum dts_type */
		size_t off;
	} stats[] = {
		{ "count", 0xf, offsetof(struct dts_current, count) },
		{ "sum", 1u << DTS_COUNTER | 1u << DTS_TIMER, offsetof(struct dts_current, sum) },
		{ "rate", 1u << DTS_COUNTER, offsetof(struct dts_current, rate) },
		{ "last", 1u << DTS_GAUGE, offsetof(struct dts_current, last) },
		{ "avg", 1u << DTS_TIMER | 1u << DTS_GAUGE, offsetof(struct dts_current, avg) },
		{ "min", 1u << DTS_TIMER | 1u << DTS_GAUGE, offsetof(struct dts_current, min) },
		{ "max", 1u << DTS_TIMER | 1u << DTS_GAUGE, offsetof(struct dts_current, max) },
		{ "bot10", 1u << DTS_TIMER, offsetof(struct dts_current, bot10) },
		{ "top10", 1u << DTS_TIMER, offsetof(struct dts_current, top10) },
		{ "p50", 1u << DTS_TIMER, offsetof(struct dts_current, p50) },
		{ "p99", 1u << DTS_TIMER, offsetof(struct dts_current, p99) },
		{ "distinct", 1u << DTS_SET, offsetof(struct dts_current, distinct) },
	};
	struct prom_users pu = { 0 };
	struct dts_sb b = { 0 };
	char num[32];

	*len = 0;
	if (!h->ctx.users)
		return NULL;
	dts_users_list(h->ctx.users, prom_user, &pu);
	for (size_t u = 0; u < pu.n && !pu.oom && !b.oom; u++) {
		struct cur_collect c;

		if (cur_collect(&h->ctx, pu.ids[u], NULL, &c) != 0) {
			b.oom = true;
			break;
		}
		if (!b.len)
			dts_sb_cstr(&b, "# HELP dattss_value Current value (1-minute window) of the series of users who "
				    "opted in.\n# TYPE dattss_value gauge\n");
		for (size_t i = 0; i < c.n; i++) {
			const struct cur_row *r = &c.rows[i];

			if (!r->has_cur)
				continue;
			for (size_t k = 0; k < sizeof(stats) / sizeof(stats[0]); k++) {
				double v = *(const double *)(const void *)((const char *)&r->cur + stats[k].off);

				if (!(stats[k].types & (1u << r->type)) || !isfinite(v))
					continue;
				dts_sb_cstr(&b, "dattss_value{user=");
				sb_label(&b, pu.ids[u]);
				dts_sb_cstr(&b, ",process=");
				sb_label(&b, c.arena.p + r->process);
				dts_sb_cstr(&b, ",counter=");
				sb_label(&b, c.arena.p + r->counter);
				dts_sb_cstr(&b, ",type=");
				sb_label(&b, dts_type_name(r->type));
				dts_sb_cstr(&b, ",tags=");
				sb_label(&b, c.arena.p + r->tags);
				dts_sb_cstr(&b, ",stat=");
				sb_label(&b, stats[k].stat);
				dts_sb_put(&b, "} ", 2);
				dts_sb_put(&b, num, fmt_num(num, v));
				dts_sb_put(&b, "\n", 1);
			}
		}
		cur_collect_free(&c);
	}
	free(pu.ids);
	if (b.oom || pu.oom) {
		dts_sb_free(&b);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

/* ---- routes -------------------------------------------------------------------------------------------------- */

const struct dts_http_route dts_http_routes_api[] = {
	{ "GET", "/api/v1/current", api_current },
	{ "GET", "/api/v1/series", api_series },
	{ "GET", "/api/v1/daily", api_daily },
	{ "GET", "/api/v1/events", api_events },
	{ "GET", "/api/v1/stream", api_stream },
	{ "PUT", "/agg", agg_put },
	{ NULL, NULL, NULL },
};
