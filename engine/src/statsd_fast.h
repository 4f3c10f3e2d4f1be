/*
 * statsd_fast.h - the statsd decoder's fast path, inline, for the RX core's line loop and dts_statsd_decode
 * (engine-internal).
 *
 * It takes the line most clients send, "name:value|type" or "name:value|type|@rate", where the name is all
 * [A-Za-z0-9_.-] (used in place, no copy) and there is one value: a number that dts__parse_number_fast takes (up to
 * 15 digits, no exponent), or a set member. One pass over the name classifies it and finds the process separator
 * (dts__keep_span), the value is parsed where it starts and ends at the '|', the type letters and a trailing "|@rate"
 * are read in place, and the sample is written once.
 *
 * The line need not be split off its datagram first: the scan runs from the line's start up to `end` (the end of the
 * datagram, or of the line) and stops at the line's '\n' by itself, because '\n' is in no name, number or type.
 * So the RX core finds the end of each line it takes here for free (no search for the '\n'); only the lines it does
 * not take are split the usual way and decoded by dts_statsd_decode, which runs this same code on the bounded line.
 *
 * Results:
 *   DTS__FAST_DONE      out[0] is the line's one sample; *next is the end of the line (its '\n', or end).
 *   DTS__FAST_SECTIONS  out[0] is complete but for the sections from *next (a '|') on: weight 1, no tags, ts 0.
 *                       The caller finds the end of the line and, unless the line is longer than DTS_MAX_LINE or
 *                       ends in '\r' (the full decoder's business), applies them with dts__statsd_sections.
 *   DTS__FAST_NO        not such a line (or malformed): out[0] means nothing; decode the line with
 *                       dts_statsd_decode, whose full decoder decides every reject reason.
 * For a line it takes (DONE or SECTIONS), every check of the full decoder (statsd.c, decode_full) passes the same
 * way: the name is used as is, the one number is the whole value text, the type token is the same. So both give the
 * same sample; test_statsd and fuzz_statsd hold the two to each other (a line with a '\r' added always takes the full
 * decoder and must decode the same).
 *
 * Pure function; any thread. Reads only [line, end): at most DTS_MAX_NAME + 1 bytes of name, then the value up to
 * the first byte that ends it, the type and the rate.
 */
#ifndef DTS_STATSD_FAST_H
#define DTS_STATSD_FAST_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dts/decode.h"
#include "dts/hash.h"
#include "normalize.h"

enum { DTS__FAST_NO = 0, DTS__FAST_DONE = 1, DTS__FAST_SECTIONS = 2 };

/* A fast line is at most a name, one value of 17 bytes, "|ms" and a "|@rate": never longer than a line may be. */
_Static_assert(DTS_MAX_NAME + 1 + 17 + 3 + 2 + 17 < DTS_MAX_LINE, "a fast-path line is never too long");

/* The separator the name scan looks for: without split_process ':', which is never in a name (nothing splits). */
static inline char dts__statsd_sep(const struct dts_decode_cfg *cfg)
{
	return cfg->split_process ? cfg->process_sep : ':';
}

/* The four lengths of a sample are one 8-byte word: the fast path writes them with one store (dts__sample_lens). */
_Static_assert(offsetof(struct dts_sample, process_len) == offsetof(struct dts_sample, user_len) + 2 &&
		       offsetof(struct dts_sample, counter_len) == offsetof(struct dts_sample, user_len) + 4 &&
		       offsetof(struct dts_sample, tags_len) == offsetof(struct dts_sample, user_len) + 6 &&
		       offsetof(struct dts_sample, user_len) % 8 == 0,
	       "dts_sample's lengths are one aligned 8-byte word");

/* Store user_len = 0, process_len, counter_len and tags_len = 0 at once (little-endian: user_len is the low word). */
static inline void dts__sample_lens(struct dts_sample *s, size_t process_len, size_t counter_len)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	const uint64_t w = (uint64_t)(uint16_t)process_len << 16 | (uint64_t)(uint16_t)counter_len << 32;

	memcpy((char *)s + offsetof(struct dts_sample, user_len), &w, sizeof(w));
#else
	s->user_len = 0;
	s->process_len = (uint16_t)process_len;
	s->counter_len = (uint16_t)counter_len;
	s->tags_len = 0;
#endif
}

/* True when p ends a fast line's last token: the end of the datagram, or its '\n'. */
#define DTS__FAST_EOL(p, end) ((p) == (end) || *(p) == '\n')

/*
 * Decode the line at [line, end) (end: the datagram's end, or the line's). sep is dts__statsd_sep(cfg). See above
 * for the results. *joined is the name's length when the name is "process SEP counter" as the identity hash joins
 * them (line holds the identity's bytes), 0 when the process is the default one. Always inlined into its two callers:
 * it is the whole per-line decode of the common line.
 * full (a constant): write every field of out[0]. The RX core passes false: then the fields whose value the lengths
 * already say or that its table update does not read are left as they were - user and tags (user_len and tags_len
 * are 0), ts (its fast lines take the receive time), set_member unless the type is DTS_SET, value when it is - so
 * the sample is only for that core (dts__statsd_sections still completes tags, ts and weight).
 */
static inline __attribute__((always_inline)) int dts__statsd_fast(const struct dts_decode_cfg *cfg, char sep,
								  const char *line, const char *end,
								  struct dts_sample *out, const char **next,
								  size_t *joined, const bool full)
{
	size_t avail = (size_t)(end - line), k, sep_at;

	/* The name, ending at ':'. A name longer than DTS_MAX_NAME is the full decoder's (name_too_long). */
	k = dts__keep_span(line, avail <= DTS_MAX_NAME + 1 ? avail : DTS_MAX_NAME + 1, sep, &sep_at);
	if (k == 0 || k > DTS_MAX_NAME || k == avail || line[k] != ':')
		return DTS__FAST_NO;

	/* The identity (see decode_full in statsd.c), stored at once: out[0] means nothing if this returns NO. */
	const char *counter = line, *process = cfg->default_process;
	size_t process_len = cfg->default_process_len;
	*joined = 0;
	if (sep_at < k) {
		counter = line + sep_at + 1;
		if (sep_at > 0) {
			process = line;
			process_len = sep_at;
			*joined = k;
		}
	}
	if (counter == line + k)
		return DTS__FAST_NO; /* "api.": empty_name */
	out[0].process = process;
	out[0].counter = counter;
	dts__sample_lens(&out[0], process_len, (size_t)(line + k - counter));

	/* One value, then '|': a number, or the text of a set member ("users:alice|s", checked with the type). */
	const char *v = line + k + 1;
	const struct dts__num x = dts__parse_number_fast_lo(v, end, line);
	const char *bar = x.end, *s;
	enum dts_type type;
	uint8_t flags = 0;
	if (__builtin_expect(bar == NULL || bar == end || *bar != '|', 0)) {
		for (bar = v; bar < end && *bar != '|' && *bar != ':' && *bar != '\n'; bar++)
			;
		if (bar != v && bar + 1 < end && *bar == '|' && bar[1] == 's' &&
		    (DTS__FAST_EOL(bar + 2, end) || bar[2] == '|'))
			goto set;
		return DTS__FAST_NO;
	}

	/* The type, then the end of the line or a section. */
	const char *t = bar + 1;
	if (t == end)
		return DTS__FAST_NO; /* no_type */
	if (t + 1 == end || t[1] == '|' || t[1] == '\n') {
		switch (t[0]) {
		case 'c':
			type = DTS_COUNTER;
			break;
		case 'g':
			type = DTS_GAUGE;
			if (v[0] == '+' || v[0] == '-')
				flags = DTS_SAMPLE_GAUGE_DELTA;
			break;
		case 'h':
		case 'd':
			type = DTS_TIMER;
			break;
		case 's':
			goto set; /* a member that looks like a number ("users:42|s") */
		default:
			return DTS__FAST_NO;
		}
		s = t + 1;
	} else if (t[0] == 'm' && t[1] == 's' && (t + 2 == end || t[2] == '|' || t[2] == '\n')) {
		type = DTS_TIMER;
		s = t + 2;
	} else {
		return DTS__FAST_NO;
	}
	out[0].value = x.v;
	if (full)
		out[0].set_member = 0;
	out[0].flags = flags;
	goto sample;

set:
	/* One member, the raw text [v, bar): not empty, no ':' (both checked above); the type 's' ends at bar + 2. */
	type = DTS_SET;
	s = bar + 2;
	if (full)
		out[0].value = 0;
	out[0].set_member = dts_hash64(v, (size_t)(bar - v), DTS_HASH_SEED);
	out[0].flags = 0;

sample:
	out[0].type = (uint8_t)type;
	out[0].weight = 1.0;
	if (full) {
		out[0].user = NULL;
		out[0].tags = "";
		out[0].ts = 0;
	}
	if (DTS__FAST_EOL(s, end)) {
		*next = s;
		return DTS__FAST_DONE;
	}

	/* s is at a '|'. The usual single section, "|@rate" at the end of the line, here; any other the general way. */
	if (s + 1 < end && s[1] == '@') {
		const struct dts__num rate = dts__parse_number_fast_lo(s + 2, end, line);

		if (rate.end != NULL && DTS__FAST_EOL(rate.end, end) && rate.v > 0.0 && rate.v <= 1.0) {
			if (type == DTS_COUNTER || type == DTS_TIMER)
				out[0].weight = 1.0 / rate.v; /* finite: rate >= 1e-14 */
			*next = rate.end;
			return DTS__FAST_DONE;
		}
	}
	*next = s;
	return DTS__FAST_SECTIONS;
}

/*
 * The sections [s, lend) of a line dts__statsd_fast returned DTS__FAST_SECTIONS for (s at a '|'; lend the end of the
 * line, which is at most DTS_MAX_LINE long and does not end in '\r'). Returns 1 with out[0] complete, or the first
 * failing section's -reject (statsd.c). Tags go to scratch.
 */
int dts__statsd_sections(const struct dts_decode_cfg *cfg, const char *s, const char *lend, int64_t now,
			 struct dts_scratch *scratch, struct dts_sample *out);

#endif /* DTS_STATSD_FAST_H */
