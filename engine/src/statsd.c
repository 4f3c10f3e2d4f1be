/*
 * statsd.c - the statsd / DogStatsD line decoder (contract in dts/decode.h, grammar in docs/protocols.md).
 *
 *   name:value[:value...]|type[|@rate][|#tag[,tag...]][|T<unix seconds>][|c:<container>]
 *
 * One left-to-right pass over the line, in this order (the first failing check names the reject reason):
 *   1. the line: trailing '\r' dropped, empty -> 0, longer than DTS_MAX_LINE -> line_too_long, DogStatsD event
 *      ("_e{") or service check ("_sc|") -> unsupported;
 *   2. the name, up to the first ':' (a '|' or the end first -> no_value; an all-blank line -> 0), normalised
 *      (normalize.h) -> empty_name / name_too_long, then split into process and counter -> empty_name for "x.";
 *   3. the type after the first '|' -> no_type (no '|', or an empty type) / bad_type;
 *   4. the values between the name's ':' and that '|', split on ':' -> bad_value / too_many_values;
 *   5. the sections after the type, in any order -> bad_rate, bad_tags, bad_timestamp, timestamp_skew, bad_section.
 *
 * The common line ("api.query_123:153|ms") takes the fast path: the name is all [A-Za-z0-9_.-], so the sample's
 * process and counter point into the line (no copy), the value is parsed by dts_parse_double's exact integer path,
 * and nothing else is touched. Only names that need normalising and tags use the scratch buffer:
 *   scratch.buf[0, DTS_MAX_NAME)                            normalised name
 *   scratch.buf[DTS_MAX_NAME, DTS_MAX_NAME + DTS_MAX_TAGS_LEN)  canonical tags
 *
 * Pure function: no allocation (a ~600-byte stack area for tag sorting), no global state, O(line length) work plus
 * O(tags * log DTS_MAX_TAGS) comparisons.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dts/decode.h"
#include "dts/hash.h"
#include "normalize.h"

_Static_assert(DTS_SCRATCH_SIZE >= DTS_MAX_NAME + DTS_MAX_TAGS_LEN, "scratch holds a name and the tags");
_Static_assert(DTS_MAX_NAME <= UINT16_MAX && DTS_MAX_TAGS_LEN <= UINT16_MAX, "lengths fit the sample's u16");

void dts_decode_cfg_defaults(struct dts_decode_cfg *cfg)
{
	static const char default_process[] = "default";

	memset(cfg, 0, sizeof(*cfg));
	cfg->process_sep = '.';
	cfg->split_process = true;
	cfg->default_process = default_process;
	cfg->default_process_len = sizeof(default_process) - 1;
	cfg->max_past_skew_s = 600;
	cfg->max_future_skew_s = 60;
	cfg->secret = NULL;
	cfg->secret_len = 0;
}

bool dts_line_is_dattss(const char *line, size_t len)
{
	return memchr(line, '|', len) == NULL;
}

/* One normalised tag inside the sort area: offset and length. */
struct tag_ref {
	uint16_t off;
	uint16_t len;
};

static int tag_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/*
 * Canonicalise "#a:1,b" (t points after the '#'): split on ',', normalise each tag (':' kept), drop tags that are
 * empty after that, sort bytewise, deduplicate, join with ',' into scratch at DTS_MAX_NAME. Rejects (bad_tags) when
 * no tag is left, when more than DTS_MAX_TAGS distinct tags remain, or when the joined string exceeds
 * DTS_MAX_TAGS_LEN. Returns 0 or -DTS_REJ_BAD_TAGS.
 */
static int parse_tags(const char *t, size_t tl, struct dts_scratch *scratch, const char **tags, uint16_t *tags_len)
{
	/* Distinct tags so far (<= DTS_MAX_TAGS_LEN bytes in all), then room for the one being normalised. */
	char area[2 * DTS_MAX_TAGS_LEN];
	struct tag_ref ref[DTS_MAX_TAGS];
	unsigned nt = 0;
	size_t used = 0;
	size_t a = 0;

	for (;;) {
		size_t b = a;

		while (b < tl && t[b] != ',')
			b++;
		size_t n = dts__normalize(t + a, b - a, area + used, DTS_MAX_TAGS_LEN, true);
		if (n > DTS_MAX_TAGS_LEN)
			return -DTS_REJ_BAD_TAGS;
		if (n > 0) {
			/* Binary search for the insertion point; equal -> duplicate, nothing to add. */
			unsigned lo = 0, hi = nt;
			bool dup = false;

			while (lo < hi) {
				unsigned mid = (lo + hi) / 2;
				int c = tag_cmp(area + ref[mid].off, ref[mid].len, area + used, n);

				if (c == 0) {
					dup = true;
					break;
				}
				if (c < 0)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (!dup) {
				if (nt == DTS_MAX_TAGS)
					return -DTS_REJ_BAD_TAGS;
				memmove(&ref[lo + 1], &ref[lo], (nt - lo) * sizeof(ref[0]));
				ref[lo].off = (uint16_t)used;
				ref[lo].len = (uint16_t)n;
				nt++;
				used += n;
				if (used + nt - 1 > DTS_MAX_TAGS_LEN)
					return -DTS_REJ_BAD_TAGS; /* joined length only grows */
			}
		}
		if (b == tl)
			break;
		a = b + 1;
	}
	if (nt == 0)
		return -DTS_REJ_BAD_TAGS;

	char *o = scratch->buf + DTS_MAX_NAME;
	size_t ol = 0;
	for (unsigned k = 0; k < nt; k++) {
		if (k > 0)
			o[ol++] = ',';
		memcpy(o + ol, area + ref[k].off, ref[k].len);
		ol += ref[k].len;
	}
	*tags = o;
	*tags_len = (uint16_t)ol;
	return 0;
}

/* "|T1700000000": a positive decimal integer within [now - max_past, now + max_future]. */
static int parse_timestamp(const struct dts_decode_cfg *cfg, const char *p, size_t n, int64_t now, int64_t *ts)
{
	int64_t v = 0;

	if (n == 0)
		return -DTS_REJ_BAD_TIMESTAMP;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned char)p[i] - (unsigned)'0';

		if (d > 9 || v > (INT64_MAX - (int64_t)d) / 10)
			return -DTS_REJ_BAD_TIMESTAMP;
		v = v * 10 + (int64_t)d;
	}
	if (v == 0)
		return -DTS_REJ_BAD_TIMESTAMP;

	int64_t lo, hi;
	if (__builtin_sub_overflow(now, cfg->max_past_skew_s, &lo))
		lo = cfg->max_past_skew_s > 0 ? INT64_MIN : INT64_MAX;
	if (__builtin_add_overflow(now, cfg->max_future_skew_s, &hi))
		hi = cfg->max_future_skew_s > 0 ? INT64_MAX : INT64_MIN;
	if (v < lo || v > hi)
		return -DTS_REJ_TIMESTAMP_SKEW;
	*ts = v;
	return 0;
}

/* The type letters after the '|': 1 or 2 bytes up to the next '|' or the end. Returns the type or -reject. */
static int parse_type(const char *t, const char *lend, size_t *tlp)
{
	size_t rem = (size_t)(lend - t), tl;

	/* The common case first: one known type, then '|' or the end. */
	if (rem >= 1 && (rem == 1 || t[1] == '|')) {
		*tlp = 1;
		switch (t[0]) {
		case 'c':
			return DTS_COUNTER;
		case 'g':
			return DTS_GAUGE;
		case 'h':
		case 'd':
			return DTS_TIMER;
		case 's':
			return DTS_SET;
		default:
			break;
		}
	} else if (rem >= 2 && t[0] == 'm' && t[1] == 's' && (rem == 2 || t[2] == '|')) {
		*tlp = 2;
		return DTS_TIMER;
	}
	for (tl = 0; tl < rem && t[tl] != '|'; tl++)
		;
	return tl == 0 ? -DTS_REJ_NO_TYPE : -DTS_REJ_BAD_TYPE;
}

int dts_statsd_decode(const struct dts_decode_cfg *cfg, const char *line, size_t len, int64_t now,
		      struct dts_sample *out, unsigned max_out, struct dts_scratch *scratch)
{
	const char *lend;
	const char *name = line;
	size_t name_len, i, sep_at;
	bool normalised = false;

	/* 1. The line. */
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0)
		return 0;
	if (len > DTS_MAX_LINE)
		return -DTS_REJ_LINE_TOO_LONG;
	if (line[0] == '_' && len >= 3 &&
	    ((line[1] == 'e' && line[2] == '{') || (len >= 4 && line[1] == 's' && line[2] == 'c' && line[3] == '|')))
		return -DTS_REJ_UNSUPPORTED;
	lend = line + len;

	/*
	 * 2. The name. Fast path: every byte is kept as is and it ends at ':'; the same pass finds the first separator.
	 * Without split_process the separator is ':', which never occurs in a name, so nothing splits.
	 */
	const char sep = cfg->split_process ? cfg->process_sep : ':';
	i = dts__keep_span(line, len, sep, &sep_at);
	name_len = i;
	if (i == len || line[i] != ':') {
		while (i < len && line[i] != ':' && line[i] != '|')
			i++;
		if (i == len || line[i] == '|')
			return i == len && dts__is_blank(line, len) ? 0 : -DTS_REJ_NO_VALUE;
		name_len = dts__normalize(line, i, scratch->buf, DTS_MAX_NAME, false);
		name = scratch->buf;
		normalised = true;
	}
	if (name_len == 0)
		return -DTS_REJ_EMPTY_NAME;
	if (name_len > DTS_MAX_NAME)
		return -DTS_REJ_NAME_TOO_LONG;
	if (normalised) {
		/* The separator of a normalised name. An inline scan: it is usually a few bytes in. */
		for (sep_at = 0; sep_at < name_len && name[sep_at] != sep; sep_at++)
			;
	}

	/*
	 * Identity. "api.query" -> (api, query); "query" -> (default, query). A leading separator (".query") is an empty
	 * process: the default process is used, as if it were absent. A trailing one ("api.") leaves no counter and is
	 * rejected as empty_name.
	 */
	const char *process, *counter;
	size_t process_len, counter_len;
	if (sep_at < name_len && sep_at > 0) {
		process = name;
		process_len = sep_at;
		counter = name + sep_at + 1;
	} else {
		process = cfg->default_process;
		process_len = cfg->default_process_len;
		counter = sep_at < name_len ? name + sep_at + 1 : name;
	}
	counter_len = (size_t)(name + name_len - counter);
	if (counter_len == 0)
		return -DTS_REJ_EMPTY_NAME;

	/*
	 * 3. The type, after the first '|' past the values. The common line has one numeric value: it is parsed here,
	 * speculatively, and where it stops is that '|'. Its errors only count after the type's (section 2.4 order).
	 */
	const char *v = line + i + 1;
	double x0 = 0;
	const char *bar = dts__parse_number(v, lend, &x0);
	const bool one_value = bar != NULL && bar < lend && *bar == '|';
	if (!one_value) {
		bar = v;
		while (bar < lend && *bar != '|')
			bar++;
		if (bar == lend)
			return -DTS_REJ_NO_TYPE;
	}
	const char *t = bar + 1;
	size_t tl = 0;
	int r = parse_type(t, lend, &tl);
	if (r < 0)
		return r;
	const enum dts_type type = (enum dts_type)r;

	/* 4. The values. */
	unsigned limit = max_out < DTS_MAX_VALUES_PER_LINE ? max_out : DTS_MAX_VALUES_PER_LINE;
	unsigned n = 0;
	if (type == DTS_SET) {
		/* One member, taken as raw text (not a number). */
		size_t vl = (size_t)(bar - v);

		if (vl == 0)
			return -DTS_REJ_BAD_VALUE;
		if (memchr(v, ':', vl) != NULL || limit == 0)
			return -DTS_REJ_TOO_MANY_VALUES;
		out[0].value = 0;
		out[0].flags = 0;
		out[0].set_member = dts_hash64(v, vl, DTS_HASH_SEED);
		n = 1;
	} else if (one_value) {
		if (limit == 0)
			return -DTS_REJ_TOO_MANY_VALUES;
		out[0].value = x0;
		out[0].flags = type == DTS_GAUGE && (v[0] == '+' || v[0] == '-') ? DTS_SAMPLE_GAUGE_DELTA : 0;
		out[0].set_member = 0;
		n = 1;
	} else {
		/* Each value must end exactly at a ':' or at the '|' (the number grammar has neither). */
		const char *a = v;

		for (;;) {
			double x;

			if (n == limit)
				return -DTS_REJ_TOO_MANY_VALUES;
			const char *b = dts__parse_number(a, bar, &x);
			if (b == NULL || (b != bar && *b != ':'))
				return -DTS_REJ_BAD_VALUE;
			out[n].value = x;
			out[n].flags = type == DTS_GAUGE && (a[0] == '+' || a[0] == '-') ? DTS_SAMPLE_GAUGE_DELTA : 0;
			out[n].set_member = 0;
			n++;
			if (b == bar)
				break;
			a = b + 1;
		}
	}

	/* 5. The sections after the type, in any order, each at most once ('c:' excepted: ignored). */
	double rate = 1.0;
	const char *tags = "";
	uint16_t tags_len = 0;
	int64_t ts = 0;
	bool have_rate = false, have_tags = false, have_ts = false;
	for (const char *s = t + tl; s < lend;) {
		const char *e = ++s; /* past the '|' */

		if (s < lend && s[0] == '@') {
			/* The rate ends where the number does, which must be the section's end. */
			e = have_rate ? NULL : dts__parse_number(s + 1, lend, &rate);
			if (e == NULL || (e < lend && *e != '|') || !(rate > 0.0 && rate <= 1.0) || !isfinite(1.0 / rate))
				return -DTS_REJ_BAD_RATE;
			have_rate = true;
			s = e;
			continue;
		}
		while (e < lend && *e != '|')
			e++;
		size_t sl = (size_t)(e - s);
		if (sl == 0)
			return -DTS_REJ_BAD_SECTION;
		switch (s[0]) {
		case '#':
			if (have_tags)
				return -DTS_REJ_BAD_TAGS;
			r = parse_tags(s + 1, sl - 1, scratch, &tags, &tags_len);
			if (r != 0)
				return r;
			have_tags = true;
			break;
		case 'T':
			if (have_ts)
				return -DTS_REJ_BAD_TIMESTAMP;
			r = parse_timestamp(cfg, s + 1, sl - 1, now, &ts);
			if (r != 0)
				return r;
			have_ts = true;
			break;
		case 'c':
			if (sl >= 2 && s[1] == ':')
				break; /* DogStatsD container id: accepted, ignored */
			return -DTS_REJ_BAD_SECTION;
		default:
			return -DTS_REJ_BAD_SECTION;
		}
		s = e;
	}

	/* Counters and timers were sampled: each value stands for 1/rate of them. Gauges and sets ignore the rate. */
	double weight = have_rate && (type == DTS_COUNTER || type == DTS_TIMER) ? 1.0 / rate : 1.0;
	for (unsigned k = 0; k < n; k++) {
		struct dts_sample *o = &out[k];

		o->user = NULL;
		o->user_len = 0;
		o->process = process;
		o->process_len = (uint16_t)process_len;
		o->counter = counter;
		o->counter_len = (uint16_t)counter_len;
		o->tags = tags;
		o->tags_len = tags_len;
		o->type = (uint8_t)type;
		o->weight = weight;
		o->ts = ts;
	}
	return (int)n;
}
