/*
 * test_statsd.c - dts_statsd_decode: the grammar case by case, every reject reason, normalisation, identity, bounds.
 *
 * Table-driven: ok_cases lists accepted lines with every expected field, reject_cases lists malformed lines with
 * their reason, bounds are generated at and one past each limit. Every line is decoded from a heap copy of exactly
 * its length (no NUL), so an ASan build catches reads past the line, and every returned span is checked to lie in
 * the line, the scratch buffer or the configured default process.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dts/decode.h"
#include "dts/hash.h"

#define NOW 1700000000LL

enum cfg_variant { CFG_DEFAULT = 0, CFG_NO_SPLIT, CFG_SEP_UNDERSCORE };

static void make_cfg(struct dts_decode_cfg *cfg, enum cfg_variant v)
{
	dts_decode_cfg_defaults(cfg);
	if (v == CFG_NO_SPLIT)
		cfg->split_process = false;
	if (v == CFG_SEP_UNDERSCORE)
		cfg->process_sep = '_';
}

static bool span_in(const char *p, size_t n, const void *base, size_t size)
{
	const char *b = base;

	return p >= b && p + n <= b + size;
}

/* Decode from an exact-size heap copy and check the invariants every result must hold. */
static int decode_ex(const struct dts_decode_cfg *cfg, const char *line, size_t len, unsigned max_out,
		     struct dts_sample *out, struct dts_scratch *scratch, char **copy_out)
{
	char *copy = malloc(len ? len : 1);

	cr_assert_not_null(copy);
	memcpy(copy, line, len);
	int r = dts_statsd_decode(cfg, copy, len, NOW, out, max_out, scratch);
	cr_assert(r >= -(DTS_REJ_COUNT - 1) && r <= (int)max_out, "return %d out of range", r);
	for (int k = 0; k < r; k++) {
		const struct dts_sample *s = &out[k];

		cr_assert(span_in(s->process, s->process_len, copy, len) ||
			  span_in(s->process, s->process_len, scratch->buf, sizeof(scratch->buf)) ||
			  span_in(s->process, s->process_len, cfg->default_process, cfg->default_process_len));
		cr_assert(span_in(s->counter, s->counter_len, copy, len) ||
			  span_in(s->counter, s->counter_len, scratch->buf, sizeof(scratch->buf)));
		cr_assert_not_null(s->tags);
		cr_assert(s->tags_len == 0 || span_in(s->tags, s->tags_len, scratch->buf, sizeof(scratch->buf)));
		cr_assert_null(s->user);
		cr_assert_eq(s->user_len, 0);
		cr_assert(isfinite(s->weight) && s->weight >= 1.0);
		cr_assert(s->type < DTS_NTYPES);
	}
	if (copy_out != NULL)
		*copy_out = copy;
	else
		free(copy);
	return r;
}

static int decode(const struct dts_decode_cfg *cfg, const char *line, size_t len, struct dts_sample *out,
		  struct dts_scratch *scratch)
{
	return decode_ex(cfg, line, len, DTS_MAX_VALUES_PER_LINE, out, scratch, NULL);
}

static bool span_eq(const char *p, size_t n, const char *want)
{
	return n == strlen(want) && memcmp(p, want, n) == 0;
}

#define D DTS_SAMPLE_GAUGE_DELTA
#define MAXV 4

struct ok_case {
	const char *line;
	size_t len; /* 0: strlen(line) */
	enum cfg_variant cfg;
	int n; /* samples */
	enum dts_type type;
	const char *process, *counter, *tags;
	double values[MAXV];
	uint8_t flags[MAXV];
	double weight;
	int64_t ts;
	const char *member; /* sets: the member text hashed */
};

static const struct ok_case ok_cases[] = {
	/* types */
	{ "api.query_123:153|ms", 0, 0, 1, DTS_TIMER, "api", "query_123", "", { 153 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.mem:12.5|g", 0, 0, 1, DTS_GAUGE, "api", "mem", "", { 12.5 }, { 0 }, 1, 0, NULL },
	{ "api.lat:7|h", 0, 0, 1, DTS_TIMER, "api", "lat", "", { 7 }, { 0 }, 1, 0, NULL },
	{ "api.lat:7|d", 0, 0, 1, DTS_TIMER, "api", "lat", "", { 7 }, { 0 }, 1, 0, NULL },
	{ "api.users:alice|s", 0, 0, 1, DTS_SET, "api", "users", "", { 0 }, { 0 }, 1, 0, "alice" },
	{ "api.users:12.5|s", 0, 0, 1, DTS_SET, "api", "users", "", { 0 }, { 0 }, 1, 0, "12.5" },
	{ "api.users: a b |s", 0, 0, 1, DTS_SET, "api", "users", "", { 0 }, { 0 }, 1, 0, " a b " },
	/* several values */
	{ "api.lat:1:2:3.5|ms", 0, 0, 3, DTS_TIMER, "api", "lat", "", { 1, 2, 3.5 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1:1:1:1|c|@0.5", 0, 0, 4, DTS_COUNTER, "api", "hits", "", { 1, 1, 1, 1 }, { 0 }, 2, 0, NULL },
	/* gauges: a sign makes a delta; the value keeps its sign */
	{ "api.mem:+3|g", 0, 0, 1, DTS_GAUGE, "api", "mem", "", { 3 }, { D }, 1, 0, NULL },
	{ "api.mem:-3|g", 0, 0, 1, DTS_GAUGE, "api", "mem", "", { -3 }, { D }, 1, 0, NULL },
	{ "api.mem:+1:-2.5:3|g", 0, 0, 3, DTS_GAUGE, "api", "mem", "", { 1, -2.5, 3 }, { D, D, 0 }, 1, 0, NULL },
	{ "api.mem:-3|c", 0, 0, 1, DTS_COUNTER, "api", "mem", "", { -3 }, { 0 }, 1, 0, NULL },
	{ "api.mem:-3|ms", 0, 0, 1, DTS_TIMER, "api", "mem", "", { -3 }, { 0 }, 1, 0, NULL },
	/* rates: counters and timers honour them, gauges and sets ignore them */
	{ "api.hits:1|c|@0.5", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 2, 0, NULL },
	{ "api.hits:1|c|@1", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|@0.25", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 4, 0, NULL },
	{ "api.lat:9|ms|@0.125", 0, 0, 1, DTS_TIMER, "api", "lat", "", { 9 }, { 0 }, 8, 0, NULL },
	{ "api.lat:9|h|@.5", 0, 0, 1, DTS_TIMER, "api", "lat", "", { 9 }, { 0 }, 2, 0, NULL },
	{ "api.hits:1|c|@1e-300", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1.0 / 1e-300, 0, NULL },
	{ "api.mem:12|g|@0.5", 0, 0, 1, DTS_GAUGE, "api", "mem", "", { 12 }, { 0 }, 1, 0, NULL },
	{ "api.users:bob|s|@0.5", 0, 0, 1, DTS_SET, "api", "users", "", { 0 }, { 0 }, 1, 0, "bob" },
	/* tags: canonical = normalised, sorted, deduplicated, ','-joined */
	{ "api.hits:1|c|#b,a", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,b", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|#a,b", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,b", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|#host:web-1,env:prod", 0, 0, 1, DTS_COUNTER, "api", "hits", "env:prod,host:web-1", { 1 },
	  { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|#a,a,b,a", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,b", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|#a:1,a", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,a:1", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|#a,,b,", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,b", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|#b , a", 0, 0, 1, DTS_COUNTER, "api", "hits", "_a,b_", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|#Env/Prod,x$y:1", 0, 0, 1, DTS_COUNTER, "api", "hits", "Env-Prod,xy:1", { 1 }, { 0 }, 1, 0,
	  NULL },
	{ "api.hits:1|c|#a,$$,b", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,b", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|#a:b:c", 0, 0, 1, DTS_COUNTER, "api", "hits", "a:b:c", { 1 }, { 0 }, 1, 0, NULL },
	/* sections in any order */
	{ "api.hits:1|c|#b,a|@0.5|T1700000000", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,b", { 1 }, { 0 }, 2, NOW,
	  NULL },
	{ "api.hits:1|c|T1700000000|@0.5|#a,b", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,b", { 1 }, { 0 }, 2, NOW,
	  NULL },
	{ "api.hits:1|c|@0.5|T1700000000|#a,b", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,b", { 1 }, { 0 }, 2, NOW,
	  NULL },
	/* container id: accepted, ignored, may repeat */
	{ "api.hits:1|c|c:abc123", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|c:abc|#a|c:", 0, 0, 1, DTS_COUNTER, "api", "hits", "a", { 1 }, { 0 }, 1, 0, NULL },
	/* |T within the skew window, both edges inclusive */
	{ "api.hits:1|c|T1700000000", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1, NOW, NULL },
	{ "api.hits:1|c|T1699999400", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1, NOW - 600, NULL },
	{ "api.hits:1|c|T1700000060", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1, NOW + 60, NULL },
	{ "api.hits:1|c|T0001700000000", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1, NOW, NULL },
	/* trailing '\r' */
	{ "api.hits:1|c\r", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.hits:1|c|#a\r", 0, 0, 1, DTS_COUNTER, "api", "hits", "a", { 1 }, { 0 }, 1, 0, NULL },
	/* identity: default process, leading separator, no split, another separator */
	{ "requests:1|c", 0, 0, 1, DTS_COUNTER, "default", "requests", "", { 1 }, { 0 }, 1, 0, NULL },
	{ ".requests:1|c", 0, 0, 1, DTS_COUNTER, "default", "requests", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "..requests:1|c", 0, 0, 1, DTS_COUNTER, "default", ".requests", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "a.b.c:1|c", 0, 0, 1, DTS_COUNTER, "a", "b.c", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "a..c:1|c", 0, 0, 1, DTS_COUNTER, "a", ".c", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "api.query:1|c", 0, CFG_NO_SPLIT, 1, DTS_COUNTER, "default", "api.query", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "api_query.x:1|c", 0, CFG_SEP_UNDERSCORE, 1, DTS_COUNTER, "api", "query.x", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "_e:1|c", 0, 0, 1, DTS_COUNTER, "default", "_e", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "_sc:1|c", 0, 0, 1, DTS_COUNTER, "default", "_sc", "", { 1 }, { 0 }, 1, 0, NULL },
	/* normalisation (Etsy statsd): whitespace runs -> '_', '/' -> '-', others dropped */
	{ "Api Query/x:1|c", 0, 0, 1, DTS_COUNTER, "default", "Api_Query-x", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "my  app\t.x:1|c", 0, 0, 1, DTS_COUNTER, "my_app_", "x", "", { 1 }, { 0 }, 1, 0, NULL },
	{ " \t lead.x:1|c", 0, 0, 1, DTS_COUNTER, "_lead", "x", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "a$b%c(d).e:1|c", 0, 0, 1, DTS_COUNTER, "abcd", "e", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "a \x01 b.c:1|c", 0, 0, 1, DTS_COUNTER, "a__b", "c", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "a\r\rb.c:1|c", 0, 0, 1, DTS_COUNTER, "a_b", "c", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "a//b.c:1|c", 0, 0, 1, DTS_COUNTER, "a--b", "c", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "a\0b.c:1|c", 9, 0, 1, DTS_COUNTER, "ab", "c", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "caf\xc3\xa9.x:1|c", 0, 0, 1, DTS_COUNTER, "caf", "x", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "a\xc2\xa0" "b.x:1|c", 0, 0, 1, DTS_COUNTER, "a_b", "x", "", { 1 }, { 0 }, 1, 0, NULL }, /* NBSP */
	{ "a\xe2\x80\x83\xe2\x80\x83" "b.x:1|c", 0, 0, 1, DTS_COUNTER, "a_b", "x", "", { 1 }, { 0 }, 1, 0,
	  NULL }, /* two EM SPACEs: one run */
	{ "a \xe3\x80\x80" "b.x:1|c", 0, 0, 1, DTS_COUNTER, "a_b", "x", "", { 1 }, { 0 }, 1, 0,
	  NULL }, /* ASCII + IDEOGRAPHIC SPACE */
	{ "a\xef\xbb\xbf" "b.x:1|c", 0, 0, 1, DTS_COUNTER, "a_b", "x", "", { 1 }, { 0 }, 1, 0, NULL }, /* BOM */
	{ "a\xe2\x80\xa0" "b.x:1|c", 0, 0, 1, DTS_COUNTER, "ab", "x", "", { 1 }, { 0 }, 1, 0, NULL }, /* U+2020 */
	{ "a\xc2\x85" "b.x:1|c", 0, 0, 1, DTS_COUNTER, "ab", "x", "", { 1 }, { 0 }, 1, 0,
	  NULL }, /* U+0085 is not \s in JS */
	{ "a\xe2\xc2\xa0" "b.x:1|c", 0, 0, 1, DTS_COUNTER, "a_b", "x", "", { 1 }, { 0 }, 1, 0,
	  NULL }, /* stray lead byte, then NBSP */
	{ "a\xe2\x80" "b.x:1|c", 0, 0, 1, DTS_COUNTER, "ab", "x", "", { 1 }, { 0 }, 1, 0, NULL }, /* truncated */
	{ "  :1|c", 0, 0, 1, DTS_COUNTER, "default", "_", "", { 1 }, { 0 }, 1, 0, NULL },
	/* values at the edges of the number fast path (15 digits, no exponent) and beyond it */
	{ "api.mem:4521.37|g", 0, 0, 1, DTS_GAUGE, "api", "mem", "", { 4521.37 }, { 0 }, 1, 0, NULL },
	{ "api.mem:-0|g", 0, 0, 1, DTS_GAUGE, "api", "mem", "", { -0.0 }, { D }, 1, 0, NULL },
	{ "api.mem:+.5|g", 0, 0, 1, DTS_GAUGE, "api", "mem", "", { 0.5 }, { D }, 1, 0, NULL },
	{ "api.hits:5.|c", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 5 }, { 0 }, 1, 0, NULL },
	{ "api.hits:123456789012345|c", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 123456789012345.0 }, { 0 }, 1, 0,
	  NULL },
	{ "api.hits:1234567890123456|c", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1234567890123456.0 }, { 0 }, 1, 0,
	  NULL },
	{ "api.hits:1e5|c", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1e5 }, { 0 }, 1, 0, NULL },
	{ "api.lat:2.5E-3|ms", 0, 0, 1, DTS_TIMER, "api", "lat", "", { 2.5e-3 }, { 0 }, 1, 0, NULL },
	{ "api.lat:1e2:2|ms", 0, 0, 2, DTS_TIMER, "api", "lat", "", { 100, 2 }, { 0 }, 1, 0, NULL },
	/* a rate with the fast path's "|@rate" at the end, and with other sections around it */
	{ "api.lat:20.5|ms|@0.5", 0, 0, 1, DTS_TIMER, "api", "lat", "", { 20.5 }, { 0 }, 2, 0, NULL },
	{ "api.lat:20.5|ms|@0.5\r", 0, 0, 1, DTS_TIMER, "api", "lat", "", { 20.5 }, { 0 }, 2, 0, NULL },
	{ "api.hits:1|c|@1e-1", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1 / 1e-1, 0, NULL },
	{ "api.hits:1|c|@0.3", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1 / 0.3, 0, NULL },
	{ "api.hits:1|c|@0.00000000000001", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 1 / 1e-14, 0,
	  NULL },
	{ "api.hits:1|c|@0.5|#b,a", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,b", { 1 }, { 0 }, 2, 0, NULL },
	{ "api.hits:1|c|#b,a|@0.5", 0, 0, 1, DTS_COUNTER, "api", "hits", "a,b", { 1 }, { 0 }, 2, 0, NULL },
	{ "api.hits:1|c|@0.5|c:abc", 0, 0, 1, DTS_COUNTER, "api", "hits", "", { 1 }, { 0 }, 2, 0, NULL },
	{ "api.mem:3|g|@0.25", 0, 0, 1, DTS_GAUGE, "api", "mem", "", { 3 }, { 0 }, 1, 0, NULL },
	{ "api.mem:3|g|T1700000000", 0, 0, 1, DTS_GAUGE, "api", "mem", "", { 3 }, { 0 }, 1, NOW, NULL },
	/* identity with the name scan's separator at the edges of its 8- and 16-byte loads */
	{ "abcdefg.hijklmno:1|c", 0, 0, 1, DTS_COUNTER, "abcdefg", "hijklmno", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "abcdefghijklmnop.q:1|c", 0, 0, 1, DTS_COUNTER, "abcdefghijklmnop", "q", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "abcdefghijklmnopqrstuvwxyz0123456789.x:1|c", 0, 0, 1, DTS_COUNTER, "abcdefghijklmnopqrstuvwxyz0123456789",
	  "x", "", { 1 }, { 0 }, 1, 0, NULL },
	{ "abcdefghijklmnop.qrstuvwxyz0123456789:1|c", 0, CFG_NO_SPLIT, 1, DTS_COUNTER, "default",
	  "abcdefghijklmnop.qrstuvwxyz0123456789", "", { 1 }, { 0 }, 1, 0, NULL },
};

Test(statsd, ok_table)
{
	struct dts_sample out[DTS_MAX_VALUES_PER_LINE];
	struct dts_scratch scratch;

	for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
		const struct ok_case *c = &ok_cases[i];
		struct dts_decode_cfg cfg;
		size_t len = c->len ? c->len : strlen(c->line);

		make_cfg(&cfg, c->cfg);
		char *copy;

		memset(out, 0xa5, sizeof(out));
		int r = decode_ex(&cfg, c->line, len, DTS_MAX_VALUES_PER_LINE, out, &scratch, &copy);

		cr_expect_eq(r, c->n, "case %zu \"%s\": returned %d, want %d", i, c->line, r, c->n);
		if (r != c->n)
			r = 0;
		for (int k = 0; k < r; k++) {
			const struct dts_sample *s = &out[k];

			cr_expect_eq(s->type, c->type, "case %zu \"%s\"[%d]: type %u", i, c->line, k, s->type);
			cr_expect(span_eq(s->process, s->process_len, c->process), "case %zu \"%s\": process \"%.*s\"",
				  i, c->line, s->process_len, s->process);
			cr_expect(span_eq(s->counter, s->counter_len, c->counter), "case %zu \"%s\": counter \"%.*s\"",
				  i, c->line, s->counter_len, s->counter);
			cr_expect(span_eq(s->tags, s->tags_len, c->tags), "case %zu \"%s\": tags \"%.*s\"", i, c->line,
				  s->tags_len, s->tags);
			cr_expect_eq(s->weight, c->weight, "case %zu \"%s\": weight %g", i, c->line, s->weight);
			cr_expect_eq(s->ts, c->ts, "case %zu \"%s\": ts %lld", i, c->line, (long long)s->ts);
			if (c->type == DTS_SET) {
				uint64_t h = dts_hash64(c->member, strlen(c->member), DTS_HASH_SEED);

				cr_expect_eq(s->set_member, h, "case %zu \"%s\": member hash", i, c->line);
				cr_expect_eq(s->flags, 0);
			} else {
				cr_expect_eq(s->value, c->values[k], "case %zu \"%s\"[%d]: value %g", i, c->line, k,
					     s->value);
				cr_expect_eq(s->flags, c->flags[k], "case %zu \"%s\"[%d]: flags %u", i, c->line, k,
					     s->flags);
			}
		}
		free(copy); /* the spans point into it */
	}
}

struct reject_case {
	const char *line;
	enum dts_reject why;
};

static const struct reject_case reject_cases[] = {
	/* no_value: the name is not followed by ':' */
	{ "api.query", DTS_REJ_NO_VALUE },
	{ "api.query|c", DTS_REJ_NO_VALUE },
	{ "|c", DTS_REJ_NO_VALUE },
	{ "api|#a:1", DTS_REJ_NO_VALUE },
	{ "   |c", DTS_REJ_NO_VALUE },
	{ "\x01", DTS_REJ_NO_VALUE },
	/* empty_name */
	{ ":1|c", DTS_REJ_EMPTY_NAME },
	{ "$$$:1|c", DTS_REJ_EMPTY_NAME },
	{ "\xc3\xa9:1|c", DTS_REJ_EMPTY_NAME },
	{ "api.:1|c", DTS_REJ_EMPTY_NAME },
	{ ".:1|c", DTS_REJ_EMPTY_NAME },
	{ "a.$:1|c", DTS_REJ_EMPTY_NAME },
	/* bad_value */
	{ "a:|c", DTS_REJ_BAD_VALUE },
	{ "a:abc|c", DTS_REJ_BAD_VALUE },
	{ "a:1:|c", DTS_REJ_BAD_VALUE },
	{ "a::1|c", DTS_REJ_BAD_VALUE },
	{ "a:1,5|c", DTS_REJ_BAD_VALUE },
	{ "a:0x10|c", DTS_REJ_BAD_VALUE },
	{ "a:inf|g", DTS_REJ_BAD_VALUE },
	{ "a:nan|ms", DTS_REJ_BAD_VALUE },
	{ "a:1e999|c", DTS_REJ_BAD_VALUE },
	{ "a: 1|c", DTS_REJ_BAD_VALUE },
	{ "a:1 |c", DTS_REJ_BAD_VALUE },
	{ "a:+-1|g", DTS_REJ_BAD_VALUE },
	{ "a:|s", DTS_REJ_BAD_VALUE },
	{ "a:1:2:x|ms", DTS_REJ_BAD_VALUE },
	/* too_many_values (a set takes exactly one) */
	{ "a:x:y|s", DTS_REJ_TOO_MANY_VALUES },
	{ "a:x:|s", DTS_REJ_TOO_MANY_VALUES },
	/* no_type */
	{ "a:1", DTS_REJ_NO_TYPE },
	{ "a:1:2", DTS_REJ_NO_TYPE },
	{ "a:1|", DTS_REJ_NO_TYPE },
	{ "a:1||c", DTS_REJ_NO_TYPE },
	{ "a:1|\r", DTS_REJ_NO_TYPE },
	/* bad_type */
	{ "a:1|x", DTS_REJ_BAD_TYPE },
	{ "a:1|C", DTS_REJ_BAD_TYPE },
	{ "a:1|MS", DTS_REJ_BAD_TYPE },
	{ "a:1|m", DTS_REJ_BAD_TYPE },
	{ "a:1|msx", DTS_REJ_BAD_TYPE },
	{ "a:1|cc", DTS_REJ_BAD_TYPE },
	{ "a:1| c", DTS_REJ_BAD_TYPE },
	{ "a:1|c ", DTS_REJ_BAD_TYPE },
	{ "a:1|@0.5", DTS_REJ_BAD_TYPE },
	/* bad_rate */
	{ "a:1|c|@", DTS_REJ_BAD_RATE },
	{ "a:1|c|@0", DTS_REJ_BAD_RATE },
	{ "a:1|c|@-0.5", DTS_REJ_BAD_RATE },
	{ "a:1|c|@1.0000001", DTS_REJ_BAD_RATE },
	{ "a:1|c|@2", DTS_REJ_BAD_RATE },
	{ "a:1|c|@abc", DTS_REJ_BAD_RATE },
	{ "a:1|c|@0.5x", DTS_REJ_BAD_RATE },
	{ "a:1|c|@nan", DTS_REJ_BAD_RATE },
	{ "a:1|c|@1e-320", DTS_REJ_BAD_RATE }, /* 1/rate would be infinite */
	{ "a:1|c|@0.5|@0.5", DTS_REJ_BAD_RATE }, /* at most once */
	{ "a:1|g|@0", DTS_REJ_BAD_RATE }, /* gauges ignore the rate but it must still be well formed */
	/* bad_tags */
	{ "a:1|c|#", DTS_REJ_BAD_TAGS },
	{ "a:1|c|#,", DTS_REJ_BAD_TAGS },
	{ "a:1|c|#$$", DTS_REJ_BAD_TAGS },
	{ "a:1|c|#a|#b", DTS_REJ_BAD_TAGS }, /* at most once */
	/* bad_timestamp */
	{ "a:1|c|T", DTS_REJ_BAD_TIMESTAMP },
	{ "a:1|c|T0", DTS_REJ_BAD_TIMESTAMP },
	{ "a:1|c|T-5", DTS_REJ_BAD_TIMESTAMP },
	{ "a:1|c|T+1700000000", DTS_REJ_BAD_TIMESTAMP },
	{ "a:1|c|T17000000a0", DTS_REJ_BAD_TIMESTAMP },
	{ "a:1|c|T1700000000.5", DTS_REJ_BAD_TIMESTAMP },
	{ "a:1|c|T99999999999999999999", DTS_REJ_BAD_TIMESTAMP },
	{ "a:1|c|T1700000000|T1700000000", DTS_REJ_BAD_TIMESTAMP }, /* at most once */
	/* timestamp_skew: one second past each edge (now - 600, now + 60) */
	{ "a:1|c|T1699999399", DTS_REJ_TIMESTAMP_SKEW },
	{ "a:1|c|T1700000061", DTS_REJ_TIMESTAMP_SKEW },
	{ "a:1|c|T1", DTS_REJ_TIMESTAMP_SKEW },
	{ "a:1|c|T9223372036854775807", DTS_REJ_TIMESTAMP_SKEW },
	/* bad_section */
	{ "a:1|c|x", DTS_REJ_BAD_SECTION },
	{ "a:1|c|", DTS_REJ_BAD_SECTION },
	{ "a:1|c||@0.5", DTS_REJ_BAD_SECTION },
	{ "a:1|c|c", DTS_REJ_BAD_SECTION },
	{ "a:1|c|cx", DTS_REJ_BAD_SECTION },
	{ "a:1|c| @0.5", DTS_REJ_BAD_SECTION },
	{ "a:1|c|t1700000000", DTS_REJ_BAD_SECTION },
	{ "a:1|c|e:abc", DTS_REJ_BAD_SECTION },
	/* unsupported: DogStatsD events and service checks */
	{ "_e{5,4}:title|text", DTS_REJ_UNSUPPORTED },
	{ "_e{5,4}:title|text|d:1700000000|#a", DTS_REJ_UNSUPPORTED },
	{ "_sc|my.check|0", DTS_REJ_UNSUPPORTED },
	{ "_sc|my.check|2|#a|m:down", DTS_REJ_UNSUPPORTED },
	/* around the fast path: each of these goes on to the full decoder, which names the reason */
	{ "a.b:.|c", DTS_REJ_BAD_VALUE },
	{ "a.b:-|c", DTS_REJ_BAD_VALUE },
	{ "a.b:1e|c", DTS_REJ_BAD_VALUE },
	{ "a.b:1.2.3|c", DTS_REJ_BAD_VALUE },
	{ "a.b:1e5x|c", DTS_REJ_BAD_VALUE },
	{ "a.b:1|m", DTS_REJ_BAD_TYPE },
	{ "a.b:1|msc", DTS_REJ_BAD_TYPE },
	{ "a.b:1|ms|", DTS_REJ_BAD_SECTION },
	{ "a.b:1|c|@0.5|", DTS_REJ_BAD_SECTION },
	{ "a.b:1|c|@0.5e", DTS_REJ_BAD_RATE },
	{ "a.b:1|c|@0.5:", DTS_REJ_BAD_RATE },
	{ "a.b:1|c|@.", DTS_REJ_BAD_RATE },
	{ "a.b:1|c|@1.5", DTS_REJ_BAD_RATE },
	{ "a.b:1|g|@-1", DTS_REJ_BAD_RATE },
	{ "a.b:1|c|@0.5\r\r", DTS_REJ_BAD_RATE },
	{ "a.b:1|c|@0.5|#", DTS_REJ_BAD_TAGS },
	{ "a.b:1|c|@0.5|x", DTS_REJ_BAD_SECTION },
	{ "a.:1|c|@0.5", DTS_REJ_EMPTY_NAME },
	/* order of checks: first failing one wins */
	{ "$$:x|y|z", DTS_REJ_EMPTY_NAME },
	{ "a:x|y|z", DTS_REJ_BAD_TYPE },
	{ "a:x|c|z", DTS_REJ_BAD_VALUE },
	{ "a:1|c|z|@5", DTS_REJ_BAD_SECTION },
	{ "a:1|c|@5|z", DTS_REJ_BAD_RATE },
};

Test(statsd, reject_table)
{
	struct dts_sample out[DTS_MAX_VALUES_PER_LINE];
	struct dts_scratch scratch;
	struct dts_decode_cfg cfg;

	make_cfg(&cfg, CFG_DEFAULT);
	for (size_t i = 0; i < sizeof(reject_cases) / sizeof(reject_cases[0]); i++) {
		const struct reject_case *c = &reject_cases[i];
		int r = decode(&cfg, c->line, strlen(c->line), out, &scratch);

		cr_expect_eq(r, -(int)c->why, "\"%s\": got %d (%s), want %s", c->line, r,
			     r < 0 ? dts_reject_name(-r) : "accepted", dts_reject_name(c->why));
	}
}

/* Every reason a statsd line can be rejected for appears in reject_cases or in a bounds test below. */
Test(statsd, every_reason_covered)
{
	static const enum dts_reject in_bounds_tests[] = { DTS_REJ_LINE_TOO_LONG, DTS_REJ_NAME_TOO_LONG };
	static const enum dts_reject statsd_reasons[] = {
		DTS_REJ_LINE_TOO_LONG, DTS_REJ_NO_VALUE,       DTS_REJ_EMPTY_NAME,     DTS_REJ_NAME_TOO_LONG,
		DTS_REJ_BAD_VALUE,     DTS_REJ_TOO_MANY_VALUES, DTS_REJ_NO_TYPE,	       DTS_REJ_BAD_TYPE,
		DTS_REJ_BAD_RATE,      DTS_REJ_BAD_TAGS,       DTS_REJ_BAD_TIMESTAMP, DTS_REJ_TIMESTAMP_SKEW,
		DTS_REJ_BAD_SECTION,   DTS_REJ_UNSUPPORTED,
	};

	for (size_t k = 0; k < sizeof(statsd_reasons) / sizeof(statsd_reasons[0]); k++) {
		bool found = false;

		for (size_t i = 0; i < sizeof(reject_cases) / sizeof(reject_cases[0]); i++)
			found |= reject_cases[i].why == statsd_reasons[k];
		for (size_t i = 0; i < sizeof(in_bounds_tests) / sizeof(in_bounds_tests[0]); i++)
			found |= in_bounds_tests[i] == statsd_reasons[k];
		cr_expect(found, "no test line for reason %s", dts_reject_name(statsd_reasons[k]));
	}
}

Test(statsd, blank_lines_return_zero)
{
	static const char *const blank[] = { "", "\r", " ", "   ", "\t \r", " \t\v\f ", "\r\r" };
	struct dts_sample out[4];
	struct dts_scratch scratch;
	struct dts_decode_cfg cfg;

	make_cfg(&cfg, CFG_DEFAULT);
	for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++)
		cr_expect_eq(decode(&cfg, blank[i], strlen(blank[i]), out, &scratch), 0, "blank case %zu", i);
}

/* A name that needs no change is not copied: the spans point into the line. One that does is in scratch. */
Test(statsd, fast_path_points_into_line)
{
	struct dts_sample out[4];
	struct dts_scratch scratch;
	struct dts_decode_cfg cfg;
	char *copy;

	make_cfg(&cfg, CFG_DEFAULT);
	cr_assert_eq(decode_ex(&cfg, "api.query_123:153|ms", 20, 4, out, &scratch, &copy), 1);
	cr_expect_eq(out[0].process, copy);
	cr_expect_eq(out[0].counter, copy + 4);
	free(copy);

	cr_assert_eq(decode_ex(&cfg, "api.query 123:153|ms", 20, 4, out, &scratch, &copy), 1);
	cr_expect_eq(out[0].process, scratch.buf);
	cr_expect_eq(out[0].counter, scratch.buf + 4);
	cr_expect(span_eq(out[0].counter, out[0].counter_len, "query_123"));
	free(copy);

	cr_assert_eq(decode_ex(&cfg, "requests:1|c", 12, 4, out, &scratch, &copy), 1);
	cr_expect_eq(out[0].process, cfg.default_process);
	cr_expect_eq(out[0].counter, copy);
	free(copy);
}

/* The same tags in every order give the same canonical string. */
Test(statsd, tags_order_insensitive)
{
	static const char *const t[4] = { "env:prod", "host:web-1", "az:b", "team" };
	static const int perm[24][4] = {
		{ 0, 1, 2, 3 }, { 0, 1, 3, 2 }, { 0, 2, 1, 3 }, { 0, 2, 3, 1 }, { 0, 3, 1, 2 }, { 0, 3, 2, 1 },
		{ 1, 0, 2, 3 }, { 1, 0, 3, 2 }, { 1, 2, 0, 3 }, { 1, 2, 3, 0 }, { 1, 3, 0, 2 }, { 1, 3, 2, 0 },
		{ 2, 0, 1, 3 }, { 2, 0, 3, 1 }, { 2, 1, 0, 3 }, { 2, 1, 3, 0 }, { 2, 3, 0, 1 }, { 2, 3, 1, 0 },
		{ 3, 0, 1, 2 }, { 3, 0, 2, 1 }, { 3, 1, 0, 2 }, { 3, 1, 2, 0 }, { 3, 2, 0, 1 }, { 3, 2, 1, 0 },
	};
	struct dts_sample out[4];
	struct dts_scratch scratch;
	struct dts_decode_cfg cfg;
	char line[256];

	make_cfg(&cfg, CFG_DEFAULT);
	for (int p = 0; p < 24; p++) {
		int n = snprintf(line, sizeof(line), "api.hits:1|c|#%s,%s,%s,%s%s", t[perm[p][0]], t[perm[p][1]],
				 t[perm[p][2]], t[perm[p][3]], p % 2 ? ",team" : "");

		cr_assert_eq(decode(&cfg, line, (size_t)n, out, &scratch), 1, "%s", line);
		cr_expect(span_eq(out[0].tags, out[0].tags_len, "az:b,env:prod,host:web-1,team"), "%s -> %.*s", line,
			  out[0].tags_len, out[0].tags);
	}
}

/* ---- bounds: exactly at, and one past, each limit ---- */

static int decode_built(const char *line, size_t len, unsigned max_out, struct dts_sample *out,
			struct dts_scratch *scratch)
{
	struct dts_decode_cfg cfg;

	make_cfg(&cfg, CFG_DEFAULT);
	return decode_ex(&cfg, line, len, max_out, out, scratch, NULL);
}

Test(statsd, bound_line_length)
{
	static char line[DTS_MAX_LINE + 2];
	struct dts_sample out[4];
	struct dts_scratch scratch;

	/* "a:000...01|c": a long but valid value fills the line to exactly DTS_MAX_LINE. */
	for (size_t len = DTS_MAX_LINE - 1; len <= DTS_MAX_LINE + 1; len++) {
		memcpy(line, "a:", 2);
		memset(line + 2, '0', len - 5);
		memcpy(line + len - 3, "1|c", 3);
		int r = decode_built(line, len, 4, out, &scratch);

		if (len <= DTS_MAX_LINE) {
			cr_expect_eq(r, 1, "len %zu: %d", len, r);
			cr_expect_eq(out[0].value, 1.0);
		} else {
			cr_expect_eq(r, -DTS_REJ_LINE_TOO_LONG, "len %zu: %d", len, r);
		}
	}
	/* A trailing '\r' does not count. */
	memcpy(line, "a:", 2);
	memset(line + 2, '0', DTS_MAX_LINE - 5);
	memcpy(line + DTS_MAX_LINE - 3, "1|c\r", 4);
	cr_expect_eq(decode_built(line, DTS_MAX_LINE + 1, 4, out, &scratch), 1);
}

Test(statsd, bound_name_length)
{
	char line[3 * DTS_MAX_NAME];
	struct dts_sample out[4];
	struct dts_scratch scratch;

	for (size_t n = DTS_MAX_NAME; n <= DTS_MAX_NAME + 1; n++) {
		int want = n <= DTS_MAX_NAME ? 1 : -DTS_REJ_NAME_TOO_LONG;

		/* fast path: name already normal */
		memset(line, 'x', n);
		line[3] = '.';
		memcpy(line + n, ":1|c", 4);
		cr_expect_eq(decode_built(line, n + 4, 4, out, &scratch), want, "fast, %zu", n);
		if (want == 1)
			cr_expect_eq(out[0].process_len + 1 + out[0].counter_len, n);

		/* slow path: the bound is on the normalised name ('$' are dropped, "  " becomes one '_') */
		size_t o = 0;
		for (size_t k = 0; k + 1 < n; k++) {
			line[o++] = k == 3 ? '.' : k == 10 ? '/' : 'y';
			if (k % 7 == 0)
				line[o++] = '$';
		}
		line[o++] = ' ';
		line[o++] = '\t';
		memcpy(line + o, ":1|c", 4);
		cr_expect_eq(decode_built(line, o + 4, 4, out, &scratch), want, "slow, %zu", n);
		if (want == 1) {
			cr_expect_eq(out[0].process_len + 1 + out[0].counter_len, n);
			cr_expect_eq(out[0].counter[out[0].counter_len - 1], '_');
			cr_expect(memchr(out[0].counter, '-', out[0].counter_len) != NULL);
		}
	}
}

Test(statsd, bound_values_per_line)
{
	char line[1024];
	struct dts_sample out[DTS_MAX_VALUES_PER_LINE + 1];
	struct dts_scratch scratch;

	for (unsigned n = DTS_MAX_VALUES_PER_LINE; n <= DTS_MAX_VALUES_PER_LINE + 1; n++) {
		size_t o = (size_t)snprintf(line, sizeof(line), "a.b");
		for (unsigned k = 0; k < n; k++)
			o += (size_t)snprintf(line + o, sizeof(line) - o, ":%u", k);
		o += (size_t)snprintf(line + o, sizeof(line) - o, "|ms");
		/* max_out larger than the line limit: the line limit applies */
		int r = decode_built(line, o, DTS_MAX_VALUES_PER_LINE + 1, out, &scratch);

		if (n <= DTS_MAX_VALUES_PER_LINE) {
			cr_expect_eq(r, (int)n);
			for (unsigned k = 0; k < n && r == (int)n; k++)
				cr_expect_eq(out[k].value, (double)k);
		} else {
			cr_expect_eq(r, -DTS_REJ_TOO_MANY_VALUES, "%u values: %d", n, r);
		}
	}
	/* max_out smaller than the line: exactly max_out is fine, one more is rejected */
	cr_expect_eq(decode_built("a:1:2|c", 7, 2, out, &scratch), 2);
	cr_expect_eq(decode_built("a:1:2:3|c", 9, 2, out, &scratch), -DTS_REJ_TOO_MANY_VALUES);
	cr_expect_eq(decode_built("a:1|c", 5, 0, out, &scratch), -DTS_REJ_TOO_MANY_VALUES);
	cr_expect_eq(decode_built("a:x|s", 5, 0, out, &scratch), -DTS_REJ_TOO_MANY_VALUES);
	cr_expect_eq(decode_built("a:x|s", 5, 1, out, &scratch), 1);
}

Test(statsd, bound_tag_count)
{
	char line[512];
	struct dts_sample out[4];
	struct dts_scratch scratch;

	for (unsigned n = DTS_MAX_TAGS; n <= DTS_MAX_TAGS + 1; n++) {
		size_t o = (size_t)snprintf(line, sizeof(line), "a:1|c|#");
		for (unsigned k = 0; k < n; k++)
			o += (size_t)snprintf(line + o, sizeof(line) - o, "%st%02u", k ? "," : "", n - k);
		int r = decode_built(line, o, 4, out, &scratch);

		cr_expect_eq(r, n <= DTS_MAX_TAGS ? 1 : -DTS_REJ_BAD_TAGS, "%u tags: %d", n, r);
		if (r == 1)
			cr_expect_eq(out[0].tags_len, n * 4 - 1);
	}
	/* Duplicates do not count: 17 items, 16 distinct. */
	size_t o = (size_t)snprintf(line, sizeof(line), "a:1|c|#");
	for (unsigned k = 0; k < DTS_MAX_TAGS; k++)
		o += (size_t)snprintf(line + o, sizeof(line) - o, "t%02u,", k);
	o += (size_t)snprintf(line + o, sizeof(line) - o, "t07");
	cr_expect_eq(decode_built(line, o, 4, out, &scratch), 1);
}

Test(statsd, bound_tags_length)
{
	char line[2048];
	struct dts_sample out[4];
	struct dts_scratch scratch;

	/* Two tags joined: len(a) + 1 + len(b) == limit, then limit + 1. */
	for (size_t total = DTS_MAX_TAGS_LEN; total <= DTS_MAX_TAGS_LEN + 1; total++) {
		size_t a = 100, b = total - 1 - a;
		size_t o = (size_t)snprintf(line, sizeof(line), "a:1|c|#");

		memset(line + o, 'b', b);
		o += b;
		line[o++] = ',';
		memset(line + o, 'a', a);
		o += a;
		int r = decode_built(line, o, 4, out, &scratch);

		cr_expect_eq(r, total <= DTS_MAX_TAGS_LEN ? 1 : -DTS_REJ_BAD_TAGS, "total %zu: %d", total, r);
		if (r == 1) {
			cr_expect_eq(out[0].tags_len, total);
			cr_expect_eq(out[0].tags[0], 'a');
		}
	}
	/* One tag of exactly the limit, repeated (a duplicate of a full-size tag must still be recognised). */
	for (size_t n = DTS_MAX_TAGS_LEN; n <= DTS_MAX_TAGS_LEN + 1; n++) {
		size_t o = (size_t)snprintf(line, sizeof(line), "a:1|c|#");

		for (int rep = 0; rep < 3; rep++) {
			if (rep)
				line[o++] = ',';
			memset(line + o, 'k', n);
			o += n;
		}
		int r = decode_built(line, o, 4, out, &scratch);
		cr_expect_eq(r, n <= DTS_MAX_TAGS_LEN ? 1 : -DTS_REJ_BAD_TAGS, "tag of %zu: %d", n, r);
		if (r == 1)
			cr_expect_eq(out[0].tags_len, n);
	}
	/* The bound is on the normalised text: 300 raw bytes that normalise to 200 are fine. */
	size_t o = (size_t)snprintf(line, sizeof(line), "a:1|c|#");
	for (int k = 0; k < 100; k++)
		o += (size_t)snprintf(line + o, sizeof(line) - o, "x$y");
	cr_expect_eq(decode_built(line, o, 4, out, &scratch), 1);
	cr_expect_eq(out[0].tags_len, 200);
}

/* Skew bounds come from the configuration, both sides. */
Test(statsd, timestamp_skew_configurable)
{
	struct dts_sample out[2];
	struct dts_scratch scratch;
	struct dts_decode_cfg cfg;
	char line[64];

	make_cfg(&cfg, CFG_DEFAULT);
	cfg.max_past_skew_s = 10;
	cfg.max_future_skew_s = 0;
	static const struct {
		long long ts;
		int want;
	} cases[] = {
		{ NOW - 10, 1 },
		{ NOW - 11, -DTS_REJ_TIMESTAMP_SKEW },
		{ NOW, 1 },
		{ NOW + 1, -DTS_REJ_TIMESTAMP_SKEW },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = snprintf(line, sizeof(line), "a:1|c|T%lld", cases[i].ts);

		cr_expect_eq(decode(&cfg, line, (size_t)n, out, &scratch), cases[i].want, "%s", line);
	}
	/* Extreme configuration values do not overflow. */
	cfg.max_past_skew_s = INT64_MAX;
	cfg.max_future_skew_s = INT64_MAX;
	cr_expect_eq(decode(&cfg, "a:1|c|T1", 8, out, &scratch), 1);
	cr_expect_eq(decode(&cfg, "a:1|c|T9223372036854775807", 26, out, &scratch), 1);
}

Test(statsd, defaults_and_dispatch)
{
	struct dts_decode_cfg cfg;

	memset(&cfg, 0xff, sizeof(cfg));
	dts_decode_cfg_defaults(&cfg);
	cr_expect_eq(cfg.process_sep, '.');
	cr_expect(cfg.split_process);
	cr_expect(span_eq(cfg.default_process, cfg.default_process_len, "default"));
	cr_expect_eq(cfg.max_past_skew_s, 600);
	cr_expect_eq(cfg.max_future_skew_s, 60);
	cr_expect_null(cfg.secret);
	cr_expect_eq(cfg.secret_len, 0);

	cr_expect_not(dts_line_is_dattss("a:1|c", 5));
	cr_expect_not(dts_line_is_dattss("_sc|x|0", 7));
	cr_expect(dts_line_is_dattss("42_abc:api:q:1c", 15));
	cr_expect(dts_line_is_dattss("", 0));
	/* only the given span counts */
	cr_expect(dts_line_is_dattss("a:1|c", 3));
}

/*
 * The name scan of the fast path classifies 8 or 16 bytes at a time (normalize.h: 8 + 8 bytes below 16, two
 * overlapping 16-byte loads up to 32, a loop above). Names of every length from 1 to 72 with one byte of each
 * class at each position, and the separator at positions around the load edges, must decode as the byte-by-byte
 * rules say (docs/protocols.md 2.2, 2.3), with the spans in the line exactly when nothing needed normalising.
 */
static size_t ref_normalise(const char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		    c == '-')
			out[o++] = (char)c;
		else if (c == ' ' || (c >= '\t' && c <= '\r'))
			out[o++] = '_'; /* single odd byte: never a run */
		else if (c == '/')
			out[o++] = '-';
	}
	return o;
}

Test(statsd, name_scan_every_length_and_position)
{
	static const unsigned char odd[] = { ' ', '\t', '/', '$', '@', '`', '[', '{', ',', '^', '\\', '!', '~', 0x7f,
					     0x80, 0xc2, 0xff, 0x00, '-', '.', '_', '0', '9', 'A', 'Z', 'a', 'z' };
	static const char *const tails[] = { ":7|c", ":7|ms|@0.5", ":7|g|#t:1" };
	struct dts_sample out[4];
	struct dts_scratch scratch;
	char name[80], line[128], norm[80];

	for (int variant = 0; variant < 3; variant++) {
		struct dts_decode_cfg cfg;
		char sep = variant == CFG_SEP_UNDERSCORE ? '_' : '.';

		make_cfg(&cfg, (enum cfg_variant)variant);
		for (size_t len = 1; len <= 72; len++) {
			size_t seps[] = { len, 0, 1, 7, 8, 15, 16, 17, 31, 32, len / 2, len - 1 };

			for (size_t si = 0; si < sizeof(seps) / sizeof(seps[0]); si++) {
				if (seps[si] > len)
					continue;
				for (size_t j = 0; j <= len; j++) { /* j == len: no odd byte */
					for (size_t b = 0; b < (j < len ? sizeof(odd) : 1); b++) {
						for (size_t k = 0; k < len; k++)
							name[k] = (char)('a' + k % 26);
						if (seps[si] < len)
							name[seps[si]] = sep;
						if (j < len)
							name[j] = (char)odd[b];
						const char *tail = tails[(len + j + b) % 3];
						size_t tl = strlen(tail);
						memcpy(line, name, len);
						memcpy(line + len, tail, tl);

						size_t nl = ref_normalise(name, len, norm);
						const char *cut = cfg.split_process ? memchr(norm, sep, nl) : NULL;
						const char *proc = "default", *cnt = norm;
						size_t proc_len = 7, cnt_len = nl;
						if (cut != NULL) {
							cnt = cut + 1;
							cnt_len = nl - (size_t)(cnt - norm);
							if (cut != norm) {
								proc = norm;
								proc_len = (size_t)(cut - norm);
							}
						}
						int want = nl == 0 || cnt_len == 0 ? -DTS_REJ_EMPTY_NAME : 1;
						char *copy;
						int r = decode_ex(&cfg, line, len + tl, 4, out, &scratch, &copy);

						cr_assert_eq(r, want, "cfg %d len %zu sep@%zu odd 0x%02x@%zu: %d", variant, len,
							     seps[si], j < len ? odd[b] : 0, j, r);
						if (r == 1) {
							cr_assert(out[0].process_len == proc_len &&
									  memcmp(out[0].process, proc, proc_len) == 0 &&
									  out[0].counter_len == cnt_len &&
									  memcmp(out[0].counter, cnt, cnt_len) == 0,
								  "cfg %d len %zu sep@%zu odd 0x%02x@%zu: %.*s / %.*s", variant,
								  len, seps[si], j < len ? odd[b] : 0, j, out[0].process_len,
								  out[0].process, out[0].counter_len, out[0].counter);
							bool in_line = nl == len && memcmp(norm, name, len) == 0;
							cr_assert_eq(out[0].counter >= copy && out[0].counter < copy + len, in_line);
							cr_assert_eq(out[0].value, 7.0);
						}
						free(copy);
					}
				}
			}
		}
	}
}

/*
 * A trailing '\r' changes nothing (docs/protocols.md 2.1). A line that ends in one always takes the full decoder
 * (statsd.c), so every table line decoded both ways also holds the fast path to the full decoder's answer.
 */
Test(statsd, trailing_cr_changes_nothing)
{
	struct dts_sample a[DTS_MAX_VALUES_PER_LINE], b[DTS_MAX_VALUES_PER_LINE];
	struct dts_scratch sa, sb;
	char line[512];
	size_t nok = sizeof(ok_cases) / sizeof(ok_cases[0]), nrej = sizeof(reject_cases) / sizeof(reject_cases[0]);

	for (size_t i = 0; i < nok + nrej; i++) {
		struct dts_decode_cfg cfg;
		const char *l = i < nok ? ok_cases[i].line : reject_cases[i - nok].line;
		size_t len = i < nok && ok_cases[i].len ? ok_cases[i].len : strlen(l);

		make_cfg(&cfg, i < nok ? ok_cases[i].cfg : CFG_DEFAULT);
		if (len == 0 || l[len - 1] == '\r' || len + 1 > sizeof(line))
			continue;
		memcpy(line, l, len);
		line[len] = '\r';
		char *ca, *cb;
		int ra = decode_ex(&cfg, line, len, DTS_MAX_VALUES_PER_LINE, a, &sa, &ca);
		int rb = decode_ex(&cfg, line, len + 1, DTS_MAX_VALUES_PER_LINE, b, &sb, &cb);

		cr_expect_eq(ra, rb, "\"%s\": %d, with '\\r' %d", l, ra, rb);
		for (int k = 0; k < ra && ra == rb; k++) {
			cr_expect(a[k].process_len == b[k].process_len &&
					  memcmp(a[k].process, b[k].process, a[k].process_len) == 0,
				  "\"%s\": process", l);
			cr_expect(a[k].counter_len == b[k].counter_len &&
					  memcmp(a[k].counter, b[k].counter, a[k].counter_len) == 0,
				  "\"%s\": counter", l);
			cr_expect(a[k].tags_len == b[k].tags_len && memcmp(a[k].tags, b[k].tags, a[k].tags_len) == 0,
				  "\"%s\": tags", l);
			cr_expect(a[k].type == b[k].type && a[k].flags == b[k].flags && a[k].ts == b[k].ts, "\"%s\"", l);
			cr_expect(memcmp(&a[k].value, &b[k].value, sizeof(double)) == 0, "\"%s\": value", l);
			cr_expect(memcmp(&a[k].weight, &b[k].weight, sizeof(double)) == 0, "\"%s\": weight", l);
			cr_expect_eq(a[k].set_member, b[k].set_member, "\"%s\": member", l);
		}
		free(ca);
		free(cb);
	}
}
