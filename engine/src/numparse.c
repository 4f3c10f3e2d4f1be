/*
 * numparse.c - locale-free decimal parsing for the line decoders (dts_parse_double, contract in dts/decode.h).
 *
 * Why not strtod: it needs a NUL-terminated string (our spans are not), it depends on LC_NUMERIC (a daemon that
 * calls setlocale() would read "1.5" as 1), it accepts hex, inf, nan and leading spaces, and it costs ~60 ns where
 * the common statsd value ("153", "0.25") needs ~5.
 *
 * The parser is dts__parse_number (normalize.h): it reads a number from where it starts and reports where it ended,
 * so the statsd decoder parses a value and finds the '|' or ':' after it in one read; dts_parse_double is that with
 * "ended exactly at p + len". Its inline fast path takes [+-] digits [. digits] with at most 15 digits (every statsd
 * value in practice) as m / 10^nfrac, the first case below: a lone digit in ~15 instructions, an unsigned value of up
 * to 7 digits as one 8-byte word (no loop per digit), others bytewise. Everything else comes here, to
 * dts__parse_number_general, which starts again from p.
 *
 * How: one pass validates the grammar
 *     [+-] digits [ '.' digits ] [ (e|E) [+-] digits ]      (at least one mantissa digit, on either side of the '.')
 * and accumulates the first 19 significant digits into a uint64 mantissa m and a decimal exponent e, so that the
 * value is m * 10^e (exactly, unless more than 19 significant digits were seen).
 *
 * Fast path (Clinger 1990): when m <= 2^53 and |e| <= 22, both m and 10^|e| are exact doubles, so one IEEE multiply
 * or divide gives the correctly rounded result. Also when e > 22 but m * 10^(e-22) is still an exact integer
 * <= 2^53 (e.g. "1e30"). m == 0 gives a signed zero at any exponent.
 *
 * Slow path (everything else: more than 19 significant digits, m > 2^53, |e| beyond the fast range): the digits are
 * rewritten on the stack as an integer mantissa and an exponent ("12345e-30": no decimal point, so LC_NUMERIC cannot
 * change the result) and handed to strtod, which rounds correctly. A mantissa longer than DTS__MAX_DIGITS significant
 * digits is cut to that many plus a sticky '1' when anything non-zero was cut: halfway points between doubles have
 * at most 767 significant digits, so the cut never changes the rounding, and the copy stays bounded (~830 bytes)
 * whatever the input length.
 *
 * Results: overflow (|x| > DBL_MAX after rounding) is rejected as not finite; underflow rounds to a subnormal or
 * signed zero as strtod does and is accepted.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "dts/decode.h"
#include "normalize.h"

/* Significant digits kept for strtod on the slow path (>= 768 keeps the rounding exact; see above). */
#define DTS__MAX_DIGITS 800
/* Exponent magnitudes are clamped here: beyond it every mantissa of up to DTS_MAX_LINE digits is 0 or inf anyway. */
#define DTS__EXP_CLAMP 100000

static const double pow10_exact[23] = {
	1e0,  1e1,  1e2,  1e3,	1e4,  1e5,  1e6,  1e7,	1e8,  1e9,  1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static const uint64_t pow10_u64[16] = {
	1ULL,
	10ULL,
	100ULL,
	1000ULL,
	10000ULL,
	100000ULL,
	1000000ULL,
	10000000ULL,
	100000000ULL,
	1000000000ULL,
	10000000000ULL,
	100000000000ULL,
	1000000000000ULL,
	10000000000000ULL,
	100000000000000ULL,
	1000000000000000ULL,
};

#define DTS__TWO53 (1ULL << 53)

static inline bool is_digit(unsigned char c)
{
	return (unsigned)(c - '0') < 10u;
}

/*
 * Slow path: rebuild "[-]DIGITSe[-]EXP" from the validated text and let strtod round it. p/len is known to match the
 * grammar; exp10 is the already-parsed (clamped) explicit exponent.
 */
static int parse_slow(const char *p, size_t len, bool neg, long exp10, double *out)
{
	char buf[1 + DTS__MAX_DIGITS + 1 + 1 + 12 + 1];
	size_t o = 0, i = 0, nd = 0;
	long scale = 0; /* value = int(digits kept) * 10^(scale + exp10) */
	bool frac = false, sticky = false;
	size_t zeros = 0; /* trailing zeros seen but not yet written (written only if a non-zero digit follows) */

	if (neg)
		buf[o++] = '-';
	if (p[i] == '+' || p[i] == '-')
		i++;
	for (; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '.') {
			frac = true;
			continue;
		}
		if (!is_digit(c))
			break; /* the exponent marker */
		if (frac)
			scale--;
		if (c == '0') {
			if (nd == 0)
				continue; /* leading zero: no effect on the integer value */
			zeros++;
			continue;
		}
		/* A non-zero digit: first flush the zeros before it. */
		while (zeros > 0 && nd < DTS__MAX_DIGITS) {
			buf[o++] = '0';
			nd++;
			zeros--;
		}
		if (nd < DTS__MAX_DIGITS) {
			buf[o++] = (char)c;
			nd++;
		} else {
			/* Cut: this digit and the zeros before it are dropped, each one a power of ten. */
			scale += (long)zeros + 1;
			zeros = 0;
			sticky = true;
		}
	}
	/* Trailing zeros were not written: each one scales the integer by ten. */
	scale += (long)zeros;
	if (nd == 0) {
		*out = neg ? -0.0 : 0.0;
		return 0;
	}
	if (sticky) {
		buf[o++] = '1';
		scale--;
	}
	/* scale is bounded by +-DTS_MAX_LINE-ish and exp10 by DTS__EXP_CLAMP: no overflow in long. */
	long e = scale + exp10;
	if (e > DTS__EXP_CLAMP)
		e = DTS__EXP_CLAMP;
	if (e < -DTS__EXP_CLAMP)
		e = -DTS__EXP_CLAMP;
	buf[o++] = 'e';
	if (e < 0) {
		buf[o++] = '-';
		e = -e;
	}
	char tmp[12];
	size_t t = 0;
	do {
		tmp[t++] = (char)('0' + e % 10);
		e /= 10;
	} while (e > 0);
	while (t > 0)
		buf[o++] = tmp[--t];
	buf[o] = '\0';

	char *end;
	double v = strtod(buf, &end);
	if (end != buf + o || !isfinite(v))
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * Everything dts__parse_number's inline fast path leaves (normalize.h): more than 15 digits, an exponent, no digit.
 * The grammar again from p, with up to 19 significant digits in m, the Clinger checks, and strtod for the rest.
 */
struct dts__num dts__parse_number_general(const char *p, const char *end)
{
	const struct dts__num fail = { NULL, 0.0 };
	const unsigned char *s = (const unsigned char *)p;
	size_t len = (size_t)(end - p);
	size_t i = 0;
	bool neg = false;
	uint64_t m = 0;
	unsigned nd = 0; /* significant digits accumulated into m (at most 19) */
	bool truncated = false; /* significant digits beyond the 19th */
	long e = 0; /* decimal exponent of m from the position of the point */
	size_t ndigits = 0; /* mantissa digits seen, including leading zeros */

	if (len == 0)
		return fail;
	if (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-';
		i = 1;
	}
	/* Integer part. */
	for (; i < len && is_digit(s[i]); i++) {
		unsigned d = s[i] - '0';

		ndigits++;
		if (nd < 19) {
			m = m * 10 + d;
			nd += (m != 0);
		} else {
			e++;
			truncated |= (d != 0);
		}
	}
	/* Fraction. */
	if (i < len && s[i] == '.') {
		for (i++; i < len && is_digit(s[i]); i++) {
			unsigned d = s[i] - '0';

			ndigits++;
			if (nd < 19) {
				m = m * 10 + d;
				nd += (m != 0);
				e--;
			} else {
				truncated |= (d != 0);
			}
		}
	}
	if (ndigits == 0)
		return fail; /* "", "+", ".", "e5", "inf", "nan", ... */
	/* Exponent. */
	long x = 0;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		bool xneg = false;
		size_t xdigits = 0;

		i++;
		if (i < len && (s[i] == '-' || s[i] == '+')) {
			xneg = s[i] == '-';
			i++;
		}
		for (; i < len && is_digit(s[i]); i++) {
			xdigits++;
			if (x < DTS__EXP_CLAMP)
				x = x * 10 + (s[i] - '0');
		}
		if (xdigits == 0)
			return fail; /* "1e", "1e+", "1ex" */
		if (xneg)
			x = -x;
	}
	/* The number is [p, p + i). */
	if (m == 0 && !truncated)
		return (struct dts__num){ p + i, neg ? -0.0 : 0.0 };
	if (!truncated && m <= DTS__TWO53) {
		long ex = e + x;
		double v = (double)m;

		if (ex >= 0 && ex <= 22) {
			v *= pow10_exact[ex];
			return (struct dts__num){ p + i, neg ? -v : v };
		}
		if (ex < 0 && ex >= -22) {
			v /= pow10_exact[-ex];
			return (struct dts__num){ p + i, neg ? -v : v };
		}
		if (ex > 22 && ex <= 22 + 15) {
			/* m * 10^(ex-22) may still be an exact integer <= 2^53: then one multiply by 1e22 is exact. */
			uint64_t f = pow10_u64[ex - 22];
			if (m <= DTS__TWO53 / f) {
				v = (double)(m * f) * pow10_exact[22];
				return (struct dts__num){ p + i, neg ? -v : v };
			}
		}
	}
	double v;
	return parse_slow(p, i, neg, x, &v) == 0 ? (struct dts__num){ p + i, v } : fail;
}

int dts_parse_double(const char *p, size_t len, double *out)
{
	if (len == 0)
		return -EINVAL;
	struct dts__num r = dts__parse_number(p, p + len);
	if (r.end != p + len)
		return -EINVAL; /* NULL, or junk after the number: "1.2.3", "0x10", "1 ", "1,5" */
	*out = r.v;
	return 0;
}
