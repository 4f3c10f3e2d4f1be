/*
 * normalize.h - metric name normalisation shared by the statsd and DaTtSs line decoders (engine-internal).
 *
 * The rules are Etsy statsd's sanitizeKeyName(), applied in its order:
 *     key.replace(/\s+/g, '_').replace(/\//g, '-').replace(/[^a-zA-Z_\-0-9\.]/g, '')
 * done here in one pass over the bytes:
 *   - a run of whitespace becomes one '_'. Whitespace is JavaScript's \s: ASCII \t \n \v \f \r and space, and the
 *     UTF-8 encodings of U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 and U+FEFF. Runs are
 *     found in the original text, so a dropped character between two spaces splits the run (" \x01 " -> "__"),
 *     as it does in Etsy (its whitespace pass runs before its drop pass);
 *   - '/' becomes '-';
 *   - every other byte outside [A-Za-z0-9_.-] is dropped. Bytes >= 0x80 that do not start one of the whitespace
 *     sequences above are dropped one by one, which is what Etsy does to the non-ASCII characters of its UTF-16
 *     string (invalid UTF-8 decodes to U+FFFD, also dropped). Lead bytes of those sequences are never UTF-8
 *     continuation bytes, so byte-wise matching finds exactly the characters a UTF-8 decoder would.
 * Tags use the same rules with ':' kept (key:value).
 *
 * Also here, because both line decoders need them and they are internal: dts__keep_span (the hot name scan) and
 * dts__parse_number (numparse.c: dts_parse_double that reports where the number ended).
 *
 * Everything here is a pure function; callable from any thread.
 */
#ifndef DTS_NORMALIZE_H
#define DTS_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Byte classes. DTS__NC_KEEP bytes are copied unchanged; a name made only of them needs no copy. */
enum {
	DTS__NC_DROP = 0, /* any other ASCII byte: dropped */
	DTS__NC_KEEP, /* [A-Za-z0-9_.-] */
	DTS__NC_SPACE, /* ASCII whitespace */
	DTS__NC_SLASH, /* '/' -> '-' */
	DTS__NC_COLON, /* ':' - ends a statsd name; kept in tags; dropped in DaTtSs names (never occurs there) */
	DTS__NC_PIPE, /* '|' - ends a statsd name */
	DTS__NC_HIGH, /* >= 0x80: maybe a UTF-8 whitespace character, otherwise dropped */
};

static const uint8_t dts__name_class[256] = {
	['\t'] = DTS__NC_SPACE, ['\n'] = DTS__NC_SPACE, ['\v'] = DTS__NC_SPACE, ['\f'] = DTS__NC_SPACE,
	['\r'] = DTS__NC_SPACE, [' '] = DTS__NC_SPACE,	['/'] = DTS__NC_SLASH,	[':'] = DTS__NC_COLON,
	['|'] = DTS__NC_PIPE,	['-'] = DTS__NC_KEEP,	['.'] = DTS__NC_KEEP,	['_'] = DTS__NC_KEEP,
	['0' ... '9'] = DTS__NC_KEEP,			['A' ... 'Z'] = DTS__NC_KEEP,
	['a' ... 'z'] = DTS__NC_KEEP,			[0x80 ... 0xff] = DTS__NC_HIGH,
};

static inline bool dts__name_keep(unsigned char c)
{
	return dts__name_class[c] == DTS__NC_KEEP;
}

/*
 * The name scan of the fast path, in one pass: returns k, the index of the first byte of [p, p + n) that is not
 * DTS__NC_KEEP (n when there is none), and sets *sep_at to the index of the first byte equal to sep in [0, k), or k
 * when there is none. Never reads outside [p, p + n). A sep that is not a keep byte is never found.
 *
 * With SSE2 (every x86-64) 16 bytes are classified at once: [A-Za-z] as (c | 0x20) - 'a' < 26, [0-9], '-' and '.'
 * (adjacent) as unsigned range checks done with a signed compare after a bias of 0x80, '_' by equality. The last
 * chunk is the line's last 16 bytes (overlapping bytes already seen are masked off), and a line of 8..15 bytes is read
 * as its first and last 8, so no load crosses the span. Shorter spans, and targets without SSE2, use the table.
 */
static inline size_t dts__keep_span_scalar(const char *p, size_t n, char sep, size_t *sep_at)
{
	size_t i = 0;

	while (i < n && dts__name_keep((unsigned char)p[i]) && p[i] != sep)
		i++;
	*sep_at = i;
	while (i < n && dts__name_keep((unsigned char)p[i]))
		i++;
	if (*sep_at > i)
		*sep_at = i;
	return i;
}

#if defined(__SSE2__)
/* Bit j set when byte j of x is not in [A-Za-z0-9_.-]. */
static inline unsigned dts__nonkeep_mask16(__m128i x)
{
	const __m128i alpha =
		_mm_cmplt_epi8(_mm_add_epi8(_mm_or_si128(x, _mm_set1_epi8(0x20)), _mm_set1_epi8((char)(0x80 - 'a'))),
			       _mm_set1_epi8((char)(0x80 + 26)));
	const __m128i digit =
		_mm_cmplt_epi8(_mm_add_epi8(x, _mm_set1_epi8((char)(0x80 - '0'))), _mm_set1_epi8((char)(0x80 + 10)));
	const __m128i dash_dot =
		_mm_cmplt_epi8(_mm_add_epi8(x, _mm_set1_epi8((char)(0x80 - '-'))), _mm_set1_epi8((char)(0x80 + 2)));
	const __m128i under = _mm_cmpeq_epi8(x, _mm_set1_epi8('_'));
	const __m128i keep = _mm_or_si128(_mm_or_si128(alpha, digit), _mm_or_si128(dash_dot, under));

	return ~(unsigned)_mm_movemask_epi8(keep) & 0xffffu;
}

static inline size_t dts__keep_span(const char *p, size_t n, char sep, size_t *sep_at)
{
	const __m128i sv = _mm_set1_epi8(sep);
	size_t i = 0, s = SIZE_MAX;
	unsigned bad, sm;

	if (n < 8)
		return dts__keep_span_scalar(p, n, sep, sep_at);
	if (n < 16) {
		/* Bytes [0, 8) in the low half, [n - 8, n) in the high half; the overlap is seen twice, harmlessly. */
		__m128i x = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)p),
					       _mm_loadl_epi64((const __m128i *)(p + n - 8)));
		bad = dts__nonkeep_mask16(x);
		sm = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, sv));
		size_t k = (bad & 0xff) ? (size_t)__builtin_ctz(bad) :
			   (bad != 0)	 ? n - 8 + (size_t)__builtin_ctz(bad >> 8) :
					   n;
		s = (sm & 0xff) ? (size_t)__builtin_ctz(sm) : (sm != 0) ? n - 8 + (size_t)__builtin_ctz(sm >> 8) : n;
		*sep_at = s < k ? s : k;
		return k;
	}
	for (;;) {
		size_t base = i, skip = 0;

		if (i + 16 > n) {
			if (i == n)
				break;
			base = n - 16;
			skip = i - base;
		}
		__m128i x = _mm_loadu_si128((const __m128i *)(p + base));
		bad = dts__nonkeep_mask16(x) >> skip;
		sm = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, sv)) >> skip;
		if (s == SIZE_MAX && sm != 0)
			s = i + (size_t)__builtin_ctz(sm);
		if (bad != 0) {
			i += (size_t)__builtin_ctz(bad);
			break;
		}
		i = base + 16;
	}
	*sep_at = s < i ? s : i;
	return i;
}
#else
static inline size_t dts__keep_span(const char *p, size_t n, char sep, size_t *sep_at)
{
	return dts__keep_span_scalar(p, n, sep, sep_at);
}
#endif

/* Length of the UTF-8 whitespace character (JavaScript \s, non-ASCII part) starting at p, or 0. */
static inline size_t dts__utf8_space(const unsigned char *p, size_t n)
{
	switch (p[0]) {
	case 0xc2: /* U+00A0 */
		return n >= 2 && p[1] == 0xa0 ? 2 : 0;
	case 0xe1: /* U+1680 */
		return n >= 3 && p[1] == 0x9a && p[2] == 0x80 ? 3 : 0;
	case 0xe2:
		if (n < 3)
			return 0;
		if (p[1] == 0x80) /* U+2000..U+200A, U+2028, U+2029, U+202F */
			return (p[2] >= 0x80 && p[2] <= 0x8a) || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf ? 3 : 0;
		return p[1] == 0x81 && p[2] == 0x9f ? 3 : 0; /* U+205F */
	case 0xe3: /* U+3000 */
		return n >= 3 && p[1] == 0x80 && p[2] == 0x80 ? 3 : 0;
	case 0xef: /* U+FEFF */
		return n >= 3 && p[1] == 0xbb && p[2] == 0xbf ? 3 : 0;
	default:
		return 0;
	}
}

/*
 * Normalise [in, in + len) into out, writing at most cap bytes. keep_colon keeps ':' (tags); otherwise ':' and '|'
 * are dropped like any other byte. Returns the normalised length, or cap + 1 when the result would be longer than
 * cap (out then holds a cap-byte prefix). Work: O(len).
 */
static inline size_t dts__normalize(const char *in, size_t len, char *out, size_t cap, bool keep_colon)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0;
	bool in_space = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];
		unsigned cls = dts__name_class[c];
		size_t ws = cls == DTS__NC_SPACE ? 1 : cls == DTS__NC_HIGH ? dts__utf8_space(p + i, len - i) : 0;

		if (ws != 0) {
			i += ws - 1;
			if (in_space)
				continue;
			in_space = true;
			c = '_';
		} else {
			in_space = false;
			if (cls == DTS__NC_SLASH)
				c = '-';
			else if (cls != DTS__NC_KEEP && !(cls == DTS__NC_COLON && keep_colon))
				continue;
		}
		if (o == cap)
			return cap + 1;
		out[o++] = (char)c;
	}
	return o;
}

/* True when every byte of [p, p + n) is ASCII whitespace (a blank line). */
static inline bool dts__is_blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (dts__name_class[(unsigned char)p[i]] != DTS__NC_SPACE)
			return false;
	return true;
}

/*
 * dts_parse_double (decode.h) for a number that starts at p and is followed by anything: parses the longest prefix of
 * [p, end) that the number grammar can continue through, sets *out and returns the first byte after the number.
 * Returns NULL, *out untouched, when there is no mantissa digit, an exponent marker is not followed by exponent
 * digits ("1e", "1e+x"), or the value overflows. So dts_parse_double(p, len) succeeds exactly when this returns
 * p + len, and a decoder can parse a value and find the delimiter after it in one read. Never reads outside
 * [p, end). Defined in numparse.c. Any thread.
 */
const char *dts__parse_number(const char *p, const char *end, double *out);

#endif /* DTS_NORMALIZE_H */
