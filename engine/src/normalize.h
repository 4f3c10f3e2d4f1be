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
 * Also here, because the line decoders share them and they are internal: dts__keep_span, the name scan of the
 * statsd fast path, and dts__parse_number, the number scanner behind dts_parse_double that reports where the
 * number ended (its fast path inline below, the general path in numparse.c).
 *
 * Everything here is a pure function; callable from any thread.
 */
#ifndef DTS_NORMALIZE_H
#define DTS_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__SSSE3__)
#include <tmmintrin.h>
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
 * dts__keep_span(p, n, sep, &sep_at): the name scan of the fast path, in one pass. Returns k, the index of the first
 * byte of [p, p + n) that is not DTS__NC_KEEP (n when there is none), and sets *sep_at to the index of the first byte
 * equal to sep in [0, k), or k when there is none. Never reads outside [p, p + n). A sep that is not a keep byte is
 * never found. Always inlined: it is most of the fast path's work, and a call would cost the registers it keeps.
 * This is the byte-at-a-time version, used for short spans and where SSSE3 is missing.
 */
static inline size_t dts__keep_span_scalar(const char *p, size_t n, char sep, size_t *sep_at)
{
	size_t i = 0;

	while (i < n && dts__name_keep((unsigned char)p[i]) && p[i] != sep)
		i++;
	*sep_at = i;
	while (i < n && dts__name_keep((unsigned char)p[i]))
		i++;
	return i;
}

#if defined(__SSSE3__)
/*
 * With SSSE3 (x86-64-v2 and up; every build targets x86-64-v3 unless DTS_MARCH says otherwise, CMakeLists.txt) 16
 * bytes are classified at once by two nibble lookups (pshufb): byte c is kept when lo[c & 15] & hi[c >> 4] != 0,
 * where each bit stands for one row of the ASCII table:
 *   bit 0: 0x2d-0x2e "-."    bit 1: 0x30-0x39 digits    bit 2: 0x41-0x4f, 0x61-0x6f    bit 3: 0x50-0x5a, 0x5f
 *   bit 4: 0x70-0x7a
 * pshufb gives 0 for an index byte >= 0x80, so bytes >= 0x80 are never kept. Spans of 8..32 bytes take no loop and
 * no branch: the first and the last 8 or 16 bytes are loaded (they overlap; a byte seen twice gets the same class)
 * and their masks are merged. Longer spans (a name scanned up to the end of its datagram, see statsd_fast.h) load
 * the first 32 bytes at once (most names are 16-32 bytes long: one test, not one per half), then 16 at a time, the
 * last load again ending at p + n.
 * dts__nonkeep16 returns a mask with bit j set when byte j is not kept, and in *sepm bit j set when byte j is sep.
 */
static inline unsigned dts__nonkeep16(__m128i x, __m128i sepv, unsigned *sepm)
{
	const __m128i lo_tbl = _mm_setr_epi8(0x1a, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1e, 0x1c, 0x04,
					     0x04, 0x05, 0x05, 0x0c);
	const __m128i hi_tbl = _mm_setr_epi8(0, 0, 0x01, 0x02, 0x04, 0x08, 0x04, 0x10, 0, 0, 0, 0, 0, 0, 0, 0);
	const __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), _mm_set1_epi8(0x0f));
	const __m128i cls = _mm_and_si128(_mm_shuffle_epi8(lo_tbl, x), _mm_shuffle_epi8(hi_tbl, hi));

	*sepm = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, sepv));
	return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(cls, _mm_setzero_si128()));
}

static inline __attribute__((always_inline)) size_t dts__keep_span(const char *p, size_t n, char sep, size_t *sep_at)
{
	const __m128i sv = _mm_set1_epi8(sep);
	uint64_t bad, sm;
	unsigned b0, b1, s0, s1;

	if (n < 8)
		return dts__keep_span_scalar(p, n, sep, sep_at);
	if (n <= 32) {
		if (n < 16) {
			/* Bytes [0, 8) in the low half, [n - 8, n) in the high half. */
			__m128i x = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)p),
						       _mm_loadl_epi64((const __m128i *)(p + n - 8)));
			b0 = dts__nonkeep16(x, sv, &s0);
			bad = (b0 & 0xffu) | (uint64_t)(b0 >> 8) << (n - 8);
			sm = (s0 & 0xffu) | (uint64_t)(s0 >> 8) << (n - 8);
		} else {
			b0 = dts__nonkeep16(_mm_loadu_si128((const __m128i *)p), sv, &s0);
			b1 = dts__nonkeep16(_mm_loadu_si128((const __m128i *)(p + n - 16)), sv, &s1);
			bad = b0 | (uint64_t)b1 << (n - 16);
			sm = s0 | (uint64_t)s1 << (n - 16);
		}
		/* A sentinel bit at n: k = n when every byte is kept. The first separator, or k when none is before it. */
		bad |= (uint64_t)1 << n;
		*sep_at = (unsigned)__builtin_ctzll(sm | bad);
		return (unsigned)__builtin_ctzll(bad);
	}
	/* Longer spans (and a name scanned up to a datagram's end): 32 bytes, then a loop. */
	b0 = dts__nonkeep16(_mm_loadu_si128((const __m128i *)p), sv, &s0);
	b1 = dts__nonkeep16(_mm_loadu_si128((const __m128i *)(p + 16)), sv, &s1);
	bad = b0 | (uint64_t)b1 << 16;
	sm = s0 | (uint64_t)s1 << 16;
	if (bad != 0) {
		*sep_at = (unsigned)__builtin_ctzll(sm | bad);
		return (unsigned)__builtin_ctzll(bad);
	}
	size_t i = 32, s = sm != 0 ? (size_t)__builtin_ctzll(sm) : SIZE_MAX; /* n > 32: more to scan */
	for (;;) {
		size_t base = i + 16 <= n ? i : n - 16;

		b0 = dts__nonkeep16(_mm_loadu_si128((const __m128i *)(p + base)), sv, &s0) >> (i - base);
		s0 >>= i - base;
		if (s == SIZE_MAX && s0 != 0)
			s = i + (size_t)__builtin_ctz(s0);
		if (b0 != 0) {
			i += (size_t)__builtin_ctz(b0);
			break;
		}
		i = base + 16;
		if (i == n)
			break;
	}
	*sep_at = s < i ? s : i;
	return i;
}
#else
static inline __attribute__((always_inline)) size_t dts__keep_span(const char *p, size_t n, char sep, size_t *sep_at)
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
 * Number scanning for the line decoders: dts_parse_double (decode.h) for a number that starts at p and is followed by
 * anything. Parses the longest prefix of [p, end) that the number grammar can continue through and returns its value
 * and the first byte after it, or end == NULL when there is no mantissa digit, an exponent marker is not followed by
 * exponent digits ("1e", "1e+x"), or the value overflows. So dts_parse_double(p, len) succeeds exactly when .end is
 * p + len, and a decoder parses a value and finds the delimiter after it in one read. Returned in registers (rax,
 * xmm0), so callers keep no address-taken locals. Never reads outside [p, end) (dts__parse_number_fast_lo: outside
 * [lo, end)). Any thread.
 */
struct dts__num {
	const char *end;
	double v;
};

/* The full grammar (numparse.c): any digit count, exponents, correctly rounded (strtod beyond the fast paths). */
struct dts__num dts__parse_number_general(const char *p, const char *end);

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define DTS__NUM_SWAR 1
/*
 * The common number in one 8-byte word (SWAR): x holds the bytes from p on (byte 0 = p[0]; bytes past the readable
 * span are 0, which is no digit). Finds the first byte that is not a digit (i) and, when it is '.', the next one
 * (j); both must lie in the word. The digits before j but the '.' are packed into one word and converted with three
 * multiplications (each step joins neighbouring groups: 1+1 -> 2, 2+2 -> 4, 4+4 -> 8 digits); one digit is taken as
 * is. Returns false when this does not apply - no digit before the first other byte (a sign, or no number: the
 * bytewise scan decides), or the number's end is not in the word - else sets m (1 to 7 digits), nfrac and the
 * length of the number text.
 * The non-digit test is per byte: t = byte ^ '0' is 0..9 exactly for a digit, and t | (t + 0x76) has bit 7 set
 * exactly when t >= 10. Carries of the addition cross into the next byte only from a byte with t >= 0x8a, a non-digit
 * other than '.', so the first non-digit and, after a '.', the next one are found exactly.
 */
static inline __attribute__((always_inline)) bool dts__digits_swar(uint64_t x, uint64_t *m_out, size_t *nfrac_out,
								   size_t *len_out)
{
	const uint64_t t = x ^ 0x3030303030303030ULL;
	const uint64_t bad = (t | (t + 0x7676767676767676ULL)) & 0x8080808080808080ULL;
	uint64_t d = t;
	size_t sh, nd;

	if (__builtin_expect(bad == 0, 0))
		return false;
	sh = (size_t)__builtin_ctzll(bad) - 7; /* 8 * i */
	if (__builtin_expect((uint8_t)(x >> sh) == '.', 0)) {
		const uint64_t rest = bad & (bad - 1);
		const uint64_t keep = ((uint64_t)1 << sh) - 1; /* the i bytes before the '.' (i < 8) */
		size_t j;

		if (rest == 0)
			return false;
		j = (size_t)__builtin_ctzll(rest) >> 3;
		d = (t & keep) | ((t >> 8) & ~keep); /* the fraction's digits move down over the '.' */
		nd = j - 1;
		*nfrac_out = j - 1 - (sh >> 3);
		*len_out = j;
	} else {
		nd = sh >> 3;
		*nfrac_out = 0;
		*len_out = nd;
	}
	if (nd <= 1) {
		if (nd == 0)
			return false;
		*m_out = d & 0xff;
		return true;
	}
	/* The nd digits to the top of the word (the first digit is the most significant), zeros below. */
	d <<= 64 - 8 * nd;
	d = (d * 2561) >> 8; /* byte pairs: 10 * a + b */
	d = ((d & 0x00ff00ff00ff00ffULL) * 6553601) >> 16; /* 100 * ab + cd */
	*m_out = ((d & 0x0000ffff0000ffffULL) * 42949672960001ULL) >> 32; /* 10000 * abcd + efgh */
	return true;
}
#endif

/*
 * The fast path, inline, for what statsd values are ("5", "+3", "20.5", "4521.37"): [+-] digits [. digits] with 1 to
 * 15 digits. Every digit, leading zeros included, goes into m, so m < 10^15 < 2^53 and both m and 10^nfrac are exact
 * doubles: one IEEE division rounds correctly (Clinger 1990; the general path's first case, bit for bit). Returns
 * end == NULL for no digit or more than 15 (the general path decides those). It does not look at the byte after the
 * number: when that is 'e' or 'E' the number goes on (an exponent), so a caller must not take the result then; a
 * caller that requires a delimiter ('|', ':', the end) after the number has that for free. Always inlined: a call
 * would cost more than the common value ("1") does.
 * lo <= p: [lo, end) is readable. An unsigned number of up to 7 digits whose end lies within 8 bytes is read as one
 * word (dts__digits_swar): the 8 bytes from p when they are there, else the 8 bytes that end at end when lo leaves
 * room (a datagram's last value); anything else is scanned bytewise. Both give the same m, so the same double.
 */
static inline __attribute__((always_inline)) struct dts__num dts__parse_number_fast_lo(const char *p, const char *end,
										     const char *lo)
{
	static const double pow10[16] = {
		1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
	};
	const unsigned char *s = (const unsigned char *)p, *e = (const unsigned char *)end, *d0;
	struct dts__num r = { NULL, 0.0 };
	uint64_t m = 0;
	unsigned d;
	size_t nd, nfrac = 0;
	bool neg = false;

#if defined(DTS__NUM_SWAR)
	{
		const size_t avail = (size_t)(end - p);
		size_t len;
		uint64_t x;

		if (__builtin_expect(avail >= 8, 1)) {
			__builtin_memcpy(&x, p, 8);
		} else if (avail > 0 && (size_t)(end - lo) >= 8) {
			__builtin_memcpy(&x, end - 8, 8);
			x >>= 64 - 8 * avail; /* p[0] to byte 0; zeros (no digit) past end */
		} else {
			goto bytewise;
		}
		/* One digit, not followed by a digit or '.' (a counter's "1|c"): no word arithmetic. */
		const unsigned c0 = (unsigned)(uint8_t)x - '0', c1 = (unsigned)(uint8_t)(x >> 8);

		if (c0 < 10 && c1 - '0' >= 10 && c1 != '.') {
			r.v = (double)c0;
			r.end = p + 1;
			return r;
		}
		if (__builtin_expect(dts__digits_swar(x, &m, &nfrac, &len), 1)) {
			r.v = (double)(int64_t)m; /* m < 10^7 */
			if (nfrac != 0)
				r.v /= pow10[nfrac];
			r.end = p + len;
			return r;
		}
		m = 0;
		nfrac = 0;
	}
bytewise:
#else
	(void)lo;
#endif
	if (s < e && (*s == '-' || *s == '+')) {
		neg = *s == '-';
		s++;
	}
	d0 = s;
	while (s < e && (d = (unsigned)*s - '0') < 10) {
		m = m * 10 + d;
		s++;
	}
	nd = (size_t)(s - d0);
	if (s < e && *s == '.') {
		const unsigned char *f0 = ++s;

		while (s < e && (d = (unsigned)*s - '0') < 10) {
			m = m * 10 + d;
			s++;
		}
		nfrac = (size_t)(s - f0);
		nd += nfrac;
	}
	if (nd - 1 >= 15)
		return r;
	r.v = (double)(int64_t)m; /* m < 10^15 */
	if (nfrac != 0)
		r.v /= pow10[nfrac];
	if (neg)
		r.v = -r.v;
	r.end = (const char *)s;
	return r;
}

/* dts__parse_number_fast_lo with nothing readable before p. */
static inline __attribute__((always_inline)) struct dts__num dts__parse_number_fast(const char *p, const char *end)
{
	return dts__parse_number_fast_lo(p, end, p);
}

/* The fast path when it applies (not followed by an exponent), the general one otherwise. */
static inline struct dts__num dts__parse_number(const char *p, const char *end)
{
	struct dts__num r = dts__parse_number_fast(p, end);

	if (r.end == NULL || (r.end < end && (*r.end | 0x20) == 'e'))
		return dts__parse_number_general(p, end);
	return r;
}

#endif /* DTS_NORMALIZE_H */
