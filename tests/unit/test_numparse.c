/*
 * test_numparse.c - dts_parse_double: exact results, rejects, bounded reads, and agreement with glibc's strtod; the
 * inline fast path (normalize.h: its 8-byte word form and its bytewise scan) against the general parser.
 *
 * Expected values are C literals (the compiler rounds them correctly, independently of the code under test) or, for
 * generated inputs, glibc strtod in the C locale. Every input is copied into a heap buffer of exactly its length,
 * without a NUL, so an ASan build catches any read past the span.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "../../engine/src/normalize.h"
#include "dts/decode.h"

/* Parse s[0, len) from an exact-size heap copy. */
static int parse_n(const char *s, size_t len, double *out)
{
	char *copy = malloc(len ? len : 1);
	int r;

	cr_assert_not_null(copy);
	memcpy(copy, s, len);
	r = dts_parse_double(copy, len, out);
	free(copy);
	return r;
}

static int parse(const char *s, double *out)
{
	return parse_n(s, strlen(s), out);
}

static bool same_bits(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

struct ok_case {
	const char *in;
	double want;
};

static const struct ok_case ok_cases[] = {
	{ "0", 0.0 },
	{ "-0", -0.0 },
	{ "+0", 0.0 },
	{ "0.000", 0.0 },
	{ "-0e999999999", -0.0 },
	{ "1", 1.0 },
	{ "153", 153.0 },
	{ "+3", 3.0 },
	{ "-42", -42.0 },
	{ "1.5", 1.5 },
	{ "-2.25", -2.25 },
	{ "0.1", 0.1 },
	{ "0.3", 0.3 },
	{ "12.75", 12.75 },
	{ ".5", 0.5 },
	{ "5.", 5.0 },
	{ "-.5", -0.5 },
	{ "1e3", 1e3 },
	{ "1E3", 1e3 },
	{ "1e+3", 1e3 },
	{ "1e-3", 1e-3 },
	{ "2.5e-3", 2.5e-3 },
	{ "0.000001", 1e-6 },
	{ "000123", 123.0 },
	{ "0.0000000000000000000000000001", 1e-28 },
	{ "123456789012345", 123456789012345.0 },
	{ "1234567890.12345", 1234567890.12345 },
	{ "9007199254740992", 9007199254740992.0 }, /* 2^53: last exact mantissa of the fast path */
	{ "9007199254740993", 9007199254740992.0 }, /* 2^53 + 1: halfway, ties to even (slow path) */
	{ "9007199254740995", 9007199254740996.0 }, /* halfway, ties to even, upwards */
	{ "18446744073709551615", 18446744073709551615.0 }, /* 2^64 - 1: 20 digits, truncated mantissa */
	{ "18446744073709551616", 18446744073709551616.0 }, /* 2^64: would wrap a 20-digit uint64 to 0 */
	{ "36893488147419103233", 36893488147419103233.0 }, /* 2^65 + 1: would wrap to 1 */
	{ "1844674407370955161.6", 1844674407370955161.6 }, /* the 20th digit after the point */
	{ "1e22", 1e22 }, /* last exact power of ten */
	{ "1e23", 1e23 }, /* 10 * 1e22: Clinger's extended fast path, correctly rounded */
	{ "1e30", 1e30 },
	{ "123e35", 123e35 },
	{ "1e-22", 1e-22 },
	{ "1e-23", 1e-23 }, /* beyond the fast path: strtod */
	{ "3.14159265358979323846264338327950288", 3.14159265358979323846264338327950288 },
	{ "0.1000000000000000055511151231257827021181583404541015625", 0.1 }, /* the exact binary value of 0.1 */
	{ "1.7976931348623157e308", 1.7976931348623157e308 }, /* DBL_MAX */
	{ "2.2250738585072014e-308", 2.2250738585072014e-308 }, /* DBL_MIN */
	{ "4.9406564584124654e-324", 4.9406564584124654e-324 }, /* smallest subnormal */
	{ "1e-400", 0.0 }, /* underflow to zero: accepted */
	{ "-1e-400", -0.0 },
	{ "1e0000000000000000000000000001", 10.0 }, /* long exponent text */
	/* The inline fast path (1..15 digits, no exponent) and its edges. */
	{ "-0.0", -0.0 },
	{ "+.5", 0.5 },
	{ "1.", 1.0 },
	{ "-5.", -5.0 },
	{ "0.5", 0.5 },
	{ "4521.37", 4521.37 },
	{ "20.5", 20.5 },
	{ "00000000000000.1", 0.1 }, /* 15 digits, 14 of them leading zeros */
	{ "000000000000000.1", 0.1 }, /* 16 digits counting leading zeros: the general path */
	{ "0.00000000000001", 1e-14 }, /* 15 digits */
	{ "0.000000000000001", 1e-15 }, /* 16 digits */
	{ "999999999999999", 999999999999999.0 }, /* 15 significant digits, the largest fast-path mantissa */
	{ "9999999999999999", 9999999999999999.0 }, /* 16: m < 2^53, general path, still exact */
	{ "99999999999999999", 99999999999999999.0 }, /* 17: m > 2^53, strtod */
	{ "99999999999999.9", 99999999999999.9 },
	{ "999999999999999.9", 999999999999999.9 },
	{ "9999999999999999.9", 9999999999999999.9 },
	{ "0.123456789012345", 0.123456789012345 },
	{ "0.1234567890123456", 0.1234567890123456 },
	{ "0.12345678901234567", 0.12345678901234567 },
	{ "1234567890123.45", 1234567890123.45 },
	{ "-1234567890123.45", -1234567890123.45 },
	{ "12345678901234.56", 12345678901234.56 },
	{ "5e0", 5.0 }, /* an exponent after a fast-path mantissa */
	{ "5.e1", 50.0 },
	{ "0.5E-1", 0.05 },
	{ "1.5e22", 1.5e22 }, /* m * 10^(22 - 1): exact */
	{ "15e22", 15e22 }, /* 10^23 path: 15 * 10 exact, times 1e22 */
	{ "0.1e23", 1e22 },
	{ "12e-23", 12e-23 }, /* beyond the fast exponent range: strtod */
	{ "1.2e-22", 1.2e-22 },
	{ "9007199254740991e22", 9007199254740991e22 },
	{ "9007199254740991e23", 9007199254740991e23 },
};

Test(numparse, exact_values)
{
	for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
		const struct ok_case *c = &ok_cases[i];
		double got = NAN;

		cr_expect_eq(parse(c->in, &got), 0, "\"%s\" rejected", c->in);
		cr_expect(same_bits(got, c->want), "\"%s\": got %.17g, want %.17g", c->in, got, c->want);
	}
}

static const char *const bad_cases[] = {
	"",	 "+",	 "-",	 ".",	   "+.",   "-.",   "e5",   ".e5",  "1e",   "1e+",	"1e-",	  "1.2.3", " 1",
	"1 ",	 "\t1",	 "1\r",	 "0x10",   "0X1p3", "inf", "-inf", "INF",  "nan",  "NaN",	"Infinity", "1,5",
	"1_000", "--1",	 "+-1",	 "1e1.5",  "1e5e5", "e",   "1f",   "1d",   "1ms",  "١",	"1e309",    "-1e309",
	"1.8e308", "12a", "a12",
	/* around the fast path */
	"5e", "5.e", "5.5e+", "1.5.", "..5", "5..", "+.", "-.e1", ".e", "1-", "1+1", "0.5|", "5:",
	"123456789012345x", "1234567890123456x",
};

Test(numparse, rejects)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		double got = 12345.0;

		cr_expect_eq(parse(bad_cases[i], &got), -EINVAL, "\"%s\" accepted as %.17g", bad_cases[i], got);
		cr_expect_eq(got, 12345.0, "\"%s\": out written on rejection", bad_cases[i]);
	}
}

Test(numparse, span_not_string)
{
	double v = 0;

	/* Only [p, p+len) counts: no NUL is needed and the bytes after the span are ignored. */
	cr_expect_eq(dts_parse_double("12345", 3, &v), 0);
	cr_expect_eq(v, 123.0);
	cr_expect_eq(dts_parse_double("1.5|ms", 3, &v), 0);
	cr_expect_eq(v, 1.5);
	cr_expect_eq(dts_parse_double("1e5:7", 3, &v), 0);
	cr_expect_eq(v, 1e5);
	/* An embedded NUL is junk, not an end. */
	cr_expect_eq(parse_n("1\0002", 3, &v), -EINVAL);
	cr_expect_eq(parse_n("1\0", 2, &v), -EINVAL);
}

/* Build '9007199254740993' '.' zeros... then tail: rounding must see digits far beyond the 800 kept. */
Test(numparse, sticky_digits_beyond_the_cut)
{
	size_t nz = 2000;
	size_t cap = 64 + nz;
	char *s = malloc(cap);
	double v;

	cr_assert_not_null(s);
	/* Halfway between 2^53 and 2^53 + 2, plus a tiny bit at the 2017th digit: must round up. */
	int n = snprintf(s, cap, "9007199254740993.");
	memset(s + n, '0', nz);
	s[n + nz] = '1';
	cr_expect_eq(parse_n(s, n + nz + 1, &v), 0);
	cr_expect_eq(v, 9007199254740994.0, "got %.17g", v);
	/* Exactly halfway (only zeros after it): ties to even, down. */
	cr_expect_eq(parse_n(s, n + nz, &v), 0);
	cr_expect_eq(v, 9007199254740992.0, "got %.17g", v);
	/* Leading zeros do not count against the kept digits: 0.000...0001e2001 == 1. */
	n = snprintf(s, cap, "0.");
	memset(s + n, '0', nz);
	n += (int)nz;
	n += snprintf(s + n, cap - n, "1e%zu", nz + 1);
	cr_expect_eq(parse_n(s, n, &v), 0);
	cr_expect_eq(v, 1.0, "got %.17g", v);
	/* Trailing zeros scale: 1000...0e-2000 == 1. */
	s[0] = '1';
	memset(s + 1, '0', nz);
	n = 1 + (int)nz + snprintf(s + 1 + nz, cap - 1 - nz, "e-%zu", nz);
	cr_expect_eq(parse_n(s, n, &v), 0);
	cr_expect_eq(v, 1.0, "got %.17g", v);
	free(s);
}

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng_state = 0x243f6a8885a308d3ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/* The fast path claims exactness for m <= 2^53 and |e| <= 22: check against strtod on random such inputs. */
Test(numparse, fast_path_matches_strtod)
{
	char buf[64];

	for (int i = 0; i < 200000; i++) {
		uint64_t m = rnd() % ((1ULL << 53) + 1);
		int e = (int)(rnd() % 45) - 22;
		int n = snprintf(buf, sizeof(buf), "%llue%d", (unsigned long long)m, e);
		double got, want = strtod(buf, NULL);

		cr_assert_eq(parse_n(buf, (size_t)n, &got), 0, "\"%s\" rejected", buf);
		cr_assert(same_bits(got, want), "\"%s\": got %.17g, strtod %.17g", buf, got, want);
	}
}

/* Random shapes (digit counts, points, exponents, long mantissas) against strtod, bit for bit. */
Test(numparse, random_shapes_match_strtod)
{
	static char buf[4096];

	for (int i = 0; i < 100000; i++) {
		size_t n = 0;
		unsigned nint = (unsigned)(rnd() % 30), nfrac = (unsigned)(rnd() % 30);

		if (rnd() % 50 == 0)
			nint = 300 + (unsigned)(rnd() % 1200); /* beyond the 800 kept digits */
		if (rnd() % 3 == 0)
			buf[n++] = rnd() % 2 ? '-' : '+';
		for (unsigned k = 0; k < nint; k++)
			buf[n++] = (char)('0' + (k == 0 && rnd() % 4 == 0 ? 0 : rnd() % 10));
		if (nfrac > 0 || rnd() % 2) {
			buf[n++] = '.';
			for (unsigned k = 0; k < nfrac; k++)
				buf[n++] = (char)('0' + rnd() % 10);
		}
		if (nint == 0 && nfrac == 0)
			buf[n++] = '7';
		if (rnd() % 2)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "e%d", (int)(rnd() % 700) - 350);
		buf[n] = '\0';

		char *end;
		double want = strtod(buf, &end), got = 0;
		int r = parse_n(buf, n, &got);

		cr_assert_eq(end, buf + n, "generator made a bad number: %s", buf);
		if (!isfinite(want)) {
			cr_assert_eq(r, -EINVAL, "\"%s\" overflows but was accepted", buf);
			continue;
		}
		cr_assert_eq(r, 0, "\"%s\" rejected", buf);
		cr_assert(same_bits(got, want), "\"%s\": got %.17g, strtod %.17g", buf, got, want);
	}
}

/* Short decimals, the shape of most statsd values: exactly what the inline fast path takes (1..15 digits, a point
 * anywhere, a sign) and just beyond it (16, 17 digits), against strtod bit for bit. */
Test(numparse, short_decimals_match_strtod)
{
	char buf[64];

	for (int i = 0; i < 300000; i++) {
		unsigned nd = 1 + (unsigned)(rnd() % 17);
		unsigned point = (unsigned)(rnd() % (nd + 2)); /* nd + 1: no point */
		size_t n = 0;

		if (rnd() % 4 == 0)
			buf[n++] = rnd() % 2 ? '-' : '+';
		for (unsigned k = 0; k < nd; k++) {
			if (k == point)
				buf[n++] = '.';
			buf[n++] = (char)('0' + (rnd() % 3 == 0 ? 0 : rnd() % 10));
		}
		if (point == nd)
			buf[n++] = '.';
		buf[n] = '\0';

		double want = strtod(buf, NULL), got = 0;

		cr_assert_eq(parse_n(buf, n, &got), 0, "\"%s\" rejected", buf);
		cr_assert(same_bits(got, want), "\"%s\": got %.17g, strtod %.17g", buf, got, want);
	}
}

/*
 * The inline fast path on random text (digits, points, signs, exponent markers, delimiters, other bytes), with 0 to 11
 * readable bytes before the number, so that both of its word loads (from p, and ending at end) and its bytewise scan
 * run, in exact-size heap buffers (an ASan build catches a read outside [lo, end)). It must take exactly
 * [+-] digits [. digits] with 1 to 15 digits, end where that text ends, and give the general parser's double, bit for
 * bit, wherever the general parser reads the same text (no exponent marker after it).
 */
Test(numparse, fast_path_matches_general_on_random_text)
{
	static const char alpha[] = "01234567890123456789012345678901234567890123456789..+-|:eE\n/ az\x80";

	for (int i = 0; i < 2000000; i++) {
		size_t total = (size_t)(rnd() % 28), pre = (size_t)(rnd() % 12), k = 0, nd = 0;
		char *buf = malloc(pre + total + 1);

		cr_assert_not_null(buf);
		for (size_t j = 0; j < pre + total; j++)
			buf[j] = alpha[rnd() % (sizeof(alpha) - 1)];
		if (rnd() % 2) /* most values are short: cut the text after a few bytes of digits */
			for (size_t j = pre; j < pre + total; j++)
				if (j - pre > rnd() % 10)
					buf[j] = "|:\n"[rnd() % 3];

		const char *lo = buf, *p = buf + pre, *end = p + total;
		struct dts__num f = dts__parse_number_fast_lo(p, end, lo);

		/* What the fast path takes: [+-] digits [. digits], 1 to 15 digits. */
		if (k < total && (p[k] == '+' || p[k] == '-'))
			k++;
		for (; k < total && p[k] >= '0' && p[k] <= '9'; k++)
			nd++;
		if (k < total && p[k] == '.')
			for (k++; k < total && p[k] >= '0' && p[k] <= '9'; k++)
				nd++;
		if (nd < 1 || nd > 15) {
			cr_assert_null(f.end, "\"%.*s\": %zu digits taken", (int)total, p, nd);
			free(buf);
			continue;
		}
		cr_assert_eq(f.end, p + k, "\"%.*s\": ended at %td, not %zu", (int)total, p, f.end ? f.end - p : -1, k);
		if (k == total || (p[k] | 0x20) != 'e') {
			struct dts__num g = dts__parse_number_general(p, end);

			cr_assert_eq(g.end, f.end, "\"%.*s\": the general parser ends elsewhere", (int)total, p);
			cr_assert(same_bits(f.v, g.v), "\"%.*s\": fast %.17g, general %.17g", (int)total, p, f.v, g.v);
		}
		free(buf);
	}
}
