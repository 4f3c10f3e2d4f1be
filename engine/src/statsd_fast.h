/*
 * statsd_fast.h - the statsd decoder's fast path, inline, for the RX core's line loop and dts_statsd_decode
 * (engine-internal).
 *
 * It takes the line most clients send, "name:value|type" or "name:value|type|@rate", where the name is all
 * [A-Za-z0-9_.-] (used in place, no copy) and there is one value: a number that dts__parse_number_fast takes (up to
 * 15 digits, no exponent), or a set member. One pass over the name classifies it and finds the process separator
 * (dts__keep_span), the value is parsed where it starts and ends at the '|', the type letters and a trailing "|@rate"
 * are read in place, and the sample is written once. The commonest shapes are told by comparing one word with a
 * pattern instead of byte by byte: a one-digit counter value with its type ("1|c\n", "1|c|"), the type after any
 * number ("|ms\n", "|ms|", "|c\n", "|g\n") and a rate of "0.1" to "0.9" ("|@0.5\n"); the end of the datagram reads
 * as a '\n' there (dts__word4_eol). Anything else is read byte by byte as before, so both give the same sample.
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
 * the first byte that ends it, the type and the rate, and the 4- or 8-byte words around them that lie in it.
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

/* Store user_len = 0, process_len, counter_len and tags_len = 0 at once (little-endian: user_len is the low word).
 * Both lengths are below 2^16 (names are at most DTS_MAX_NAME bytes). */
static inline void dts__sample_lens(struct dts_sample *s, size_t process_len, size_t counter_len)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	const uint64_t w = (uint64_t)process_len << 16 | (uint64_t)counter_len << 32;

	memcpy((char *)s + offsetof(struct dts_sample, user_len), &w, sizeof(w));
#else
	s->user_len = 0;
	s->process_len = (uint16_t)process_len;
	s->counter_len = (uint16_t)counter_len;
	s->tags_len = 0;
#endif
}

/* type and flags are neighbours: one 2-byte store (little-endian: type is the low byte). */
_Static_assert(offsetof(struct dts_sample, flags) == offsetof(struct dts_sample, type) + 1,
	       "dts_sample's type and flags are one 2-byte word");

static inline void dts__sample_type_flags(struct dts_sample *s, unsigned type, unsigned flags)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	const uint16_t w = (uint16_t)(type | flags << 8);

	memcpy((char *)s + offsetof(struct dts_sample, type), &w, sizeof(w));
#else
	s->type = (uint8_t)type;
	s->flags = (uint8_t)flags;
#endif
}

/* Four bytes as one little-endian word (DTS__W4: the word of four given bytes), whatever the machine's order. */
static inline uint32_t dts__load32u(const char *p)
{
	uint32_t w;

	memcpy(&w, p, sizeof(w));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w = __builtin_bswap32(w);
#endif
	return w;
}
#define DTS__W4(a, b, c, d)                                                                                          \
	((uint32_t)(uint8_t)(a) | (uint32_t)(uint8_t)(b) << 8 | (uint32_t)(uint8_t)(c) << 16 |                       \
	 (uint32_t)(uint8_t)(d) << 24)

/* Eight bytes as one little-endian word (DTS__W8 likewise). */
static inline uint64_t dts__load64u(const char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w = __builtin_bswap64(w);
#endif
	return w;
}
#define DTS__W8(a, b, c, d, e, f, g, h) ((uint64_t)DTS__W4(a, b, c, d) | (uint64_t)DTS__W4(e, f, g, h) << 32)

/*
 * The 4 (8) bytes from p as dts__load32u (dts__load64u) gives them, except that a line ending at the end of the
 * datagram looks as if it ended in '\n' there: the byte at end reads as '\n', those after it as 0. [lo, end) is
 * readable. When fewer than 4 (8) bytes are left, the word is read as the 4 (8) bytes that end at end, which lo must
 * leave room for; else, or when p == end, the result is 0, which no pattern the fast path compares with matches.
 */
static inline __attribute__((always_inline)) uint32_t dts__word4_eol(const char *p, const char *end, const char *lo)
{
	const size_t a = (size_t)(end - p);

	if (__builtin_expect(a >= 4, 1))
		return dts__load32u(p);
	if (a == 0 || end - lo < 4)
		return 0;
	return dts__load32u(end - 4) >> (8 * (4 - a)) | (uint32_t)'\n' << (8 * a);
}

static inline __attribute__((always_inline)) uint64_t dts__word8_eol(const char *p, const char *end, const char *lo)
{
	const size_t a = (size_t)(end - p);

	if (__builtin_expect(a >= 8, 1))
		return dts__load64u(p);
	if (a == 0 || end - lo < 8)
		return 0;
	return dts__load64u(end - 8) >> (8 * (8 - a)) | (uint64_t)'\n' << (8 * a);
}

/* True when p ends a fast line's last token: the end of the datagram, or its '\n'. */
#define DTS__FAST_EOL(p, end) ((p) == (end) || *(p) == '\n')

/*
 * Decode the line at [line, end) (end: the datagram's end, or the line's). sep is dts__statsd_sep(cfg). See above
 * for the results. *joined is the name's length when the name is "process SEP counter" as the identity hash joins
 * them (line holds the identity's bytes), 0 when the process is the default one; *plen_out is then the process's
 * length (out[0].process_len), and *type_out is out[0].type for a line it takes: the caller has both in registers
 * instead of reading back what was just stored. Always inlined into its callers: it is the whole per-line decode of
 * the common line.
 * full (a constant): write every field of out[0]. The RX core passes false: then the fields whose value the lengths
 * already say or that its table update does not read are left as they were - user and tags (user_len and tags_len
 * are 0), ts (its fast lines take the receive time), set_member unless the type is DTS_SET, value when it is - so
 * the sample is only for that core (dts__statsd_sections still completes tags, ts and weight).
 */
static inline __attribute__((always_inline)) int dts__statsd_fast_id(const struct dts_decode_cfg *cfg, char sep,
								     const char *line, const char *end,
								     struct dts_sample *out, const char **next,
								     size_t *joined, size_t *plen_out,
								     uint8_t *type_out, const bool full)
{
	const size_t avail = (size_t)(end - line);
	size_t k, sep_at;

	/* The name, ending at ':'. A name longer than DTS_MAX_NAME is the full decoder's (name_too_long). The span
	 * scanned is lim = min(avail, DTS_MAX_NAME + 1) bytes and k <= lim, so 1 <= k < lim says at once: not empty, at
	 * most DTS_MAX_NAME, and line[k] is readable. The usual case, a datagram going on past the longest name, scans
	 * a span of constant length (no test of its length class). */
	if (__builtin_expect(avail > DTS_MAX_NAME + 1, 1)) {
		k = dts__keep_span(line, DTS_MAX_NAME + 1, sep, &sep_at);
		if (k - 1 >= DTS_MAX_NAME)
			return DTS__FAST_NO;
	} else {
		k = dts__keep_span(line, avail, sep, &sep_at);
		if (k - 1 >= avail - 1)
			return DTS__FAST_NO;
	}
	if (line[k] != ':')
		return DTS__FAST_NO;

	/* The identity (see decode_full in statsd.c), stored at once: out[0] means nothing if this returns NO. Usually
	 * "process SEP counter", both parts non-empty. */
	const char *counter, *process;
	size_t process_len;
	if (__builtin_expect(sep_at != 0 && sep_at + 1 < k, 1)) {
		process = line;
		process_len = sep_at;
		counter = line + sep_at + 1;
		*joined = k;
		*plen_out = sep_at;
	} else {
		counter = line;
		process = cfg->default_process;
		process_len = cfg->default_process_len;
		*joined = 0;
		*plen_out = 0;
		if (sep_at < k) {
			counter = line + sep_at + 1;
			if (counter == line + k)
				return DTS__FAST_NO; /* "api.": empty_name */
		}
	}
	out[0].process = process;
	out[0].counter = counter;
	dts__sample_lens(&out[0], process_len, (size_t)(line + k - counter));

	/* The commonest line of all, a one-digit counter ("...:1|c\n", or "...:1|c|@0.1" with a section), is one
	 * 4-byte word: d ^ '0' is the digit exactly when d is one (0..9), and the two bytes after it must be "|c". One
	 * test for both ends, then the byte after the type: with the types of a mix in random order, each test of the
	 * line's shape is a mispredicted branch for a good share of the lines, so the shape takes one test and the
	 * line's end ('\n' for most) is told apart once the line is known to be a one-digit counter. Any other byte
	 * there goes the general way ("1|cx" is the full decoder's bad_type). */
	const char *v = line + k + 1, *s;
	enum dts_type type;
	uint8_t flags = 0;
	{
		const uint32_t d = dts__word4_eol(v, end, line) ^ DTS__W4('0', '|', 'c', 0);

		if ((d & 0xffffff) < 10) {
			out[0].value = (double)(d & 0xff);
			type = DTS_COUNTER;
			s = v + 3;
			if (d >> 24 == '\n')
				goto scalar_eol;
			if (d >> 24 == '|')
				goto scalar;
		}
	}

	/* One value, then '|': a number, or the text of a set member ("users:alice|s", checked with the type). */
	const struct dts__num x = dts__parse_number_fast_lo(v, end, line);
	const char *bar = x.end;
	/* The usual ends of a number's line, one word each: "|ms\n", "|c\n", "|g\n" (or the datagram's end). */
	if (__builtin_expect(bar != NULL, 1)) {
		const uint32_t w = dts__word4_eol(bar, end, line);

		if (w == DTS__W4('|', 'm', 's', '\n')) {
			type = DTS_TIMER;
			s = bar + 3;
			out[0].value = x.v;
			goto scalar_eol;
		}
		if (w == DTS__W4('|', 'm', 's', '|')) {
			type = DTS_TIMER;
			s = bar + 3;
			out[0].value = x.v;
			goto scalar;
		}
		if ((w & 0xffffff) == DTS__W4('|', 'c', '\n', 0)) {
			type = DTS_COUNTER;
			s = bar + 2;
			out[0].value = x.v;
			goto scalar_eol;
		}
		if ((w & 0xffffff) == DTS__W4('|', 'g', '\n', 0)) {
			type = DTS_GAUGE;
			if (v[0] == '+' || v[0] == '-')
				flags = DTS_SAMPLE_GAUGE_DELTA;
			s = bar + 2;
			out[0].value = x.v;
			goto scalar_eol;
		}
	}
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
scalar:
	/* A number's line (value stored) whose type ends at s. */
	if (full)
		out[0].set_member = 0;
	out[0].flags = flags;
	goto sample;

scalar_eol:
	/* A number's line whose '\n' is at s (value stored). */
	*type_out = (uint8_t)type;
	if (full) {
		out[0].set_member = 0;
		out[0].user = NULL;
		out[0].tags = "";
		out[0].ts = 0;
	}
	dts__sample_type_flags(&out[0], type, flags);
	out[0].weight = 1.0;
	*next = s;
	return DTS__FAST_DONE;

set:
	/* One member, the raw text [v, bar): not empty, no ':' (both checked above); the type 's' ends at bar + 2. */
	type = DTS_SET;
	s = bar + 2;
	if (full)
		out[0].value = 0;
	out[0].set_member = dts_hash64(v, (size_t)(bar - v), DTS_HASH_SEED);
	out[0].flags = 0;

sample:
	*type_out = (uint8_t)type;
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
		/* The usual rate, "0.1" to "0.9" and the line's '\n', in one word: then u (the word, turned by 4
		 * bytes) is the digit and nothing else, and the rate the number the general parse gives (u / 10). */
		{
			const uint64_t rw = DTS__W8('|', '@', '0', '.', '0', '\n', 0, 0);
			const uint64_t y = (dts__word8_eol(s, end, line) ^ rw) & 0xffffffffffffULL;
			const uint64_t u = y >> 32 | y << 32;

			/* 1 / rate as the general parse and the division give it, folded at compile time (the same
			 * double: constant folding rounds as the run-time division does) instead of two divisions */
			static const double rate_w[10] = {
				1.0,		   1.0 / (1.0 / 1e1), 1.0 / (2.0 / 1e1), 1.0 / (3.0 / 1e1),
				1.0 / (4.0 / 1e1), 1.0 / (5.0 / 1e1), 1.0 / (6.0 / 1e1), 1.0 / (7.0 / 1e1),
				1.0 / (8.0 / 1e1), 1.0 / (9.0 / 1e1),
			};

			if (u - 1 < 9) {
				if (type == DTS_COUNTER || type == DTS_TIMER)
					out[0].weight = rate_w[u];
				*next = s + 5;
				return DTS__FAST_DONE;
			}
		}
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

/* dts__statsd_fast_id without its two extra results: what dts_statsd_decode and the fuzz target call. */
static inline __attribute__((always_inline)) int dts__statsd_fast(const struct dts_decode_cfg *cfg, char sep,
								  const char *line, const char *end,
								  struct dts_sample *out, const char **next,
								  size_t *joined, const bool full)
{
	size_t plen;
	uint8_t type;

	return dts__statsd_fast_id(cfg, sep, line, end, out, next, joined, &plen, &type, full);
}

/*
 * The sections [s, lend) of a line dts__statsd_fast returned DTS__FAST_SECTIONS for (s at a '|'; lend the end of the
 * line, which is at most DTS_MAX_LINE long and does not end in '\r'). Returns 1 with out[0] complete, or the first
 * failing section's -reject (statsd.c). Tags go to scratch.
 */
int dts__statsd_sections(const struct dts_decode_cfg *cfg, const char *s, const char *lend, int64_t now,
			 struct dts_scratch *scratch, struct dts_sample *out);

#endif /* DTS_STATSD_FAST_H */
