/*
 * sketch.c - DDSketch-style relative-error quantile sketch with the float-bits cubic key mapping, bounded by uniform
 * collapsing (UDDSketch), and the scalar partial aggregate.
 *
 * Why it is built this way
 * ------------------------
 * RX cores compute a level-0 key per timer value (dts_sketch_key) on the receive path, so the mapping must not call
 * log(): it reads the exponent e and the mantissa s of the double from its bits and evaluates the cubic
 *     L(v) = e + A s^3 + B s^2 + C s      (A = 6/35, B = -3/5, C = 10/7, exact at powers of two)
 * which is monotone and whose slope in ln(v) is at least C = 10/7 (at s = 0) and at most 52/35 (at s -> 1). With
 * m = 7 / (10 ln gamma), a key spans 1/m in L and so at most ln(gamma) in ln(v): every value of a bin is within alpha
 * of the bin's representative 2*lo*hi/(lo+hi). An exact log mapping needs 1/log2(gamma) = ln 2/ln gamma keys per
 * octave; this one uses m = 0.7/ln gamma, 1% more.
 *
 * Stores are dense arrays covering exactly [min key, max key] of what was added (at the current level), grown by
 * doubling up to DTS_SKETCH_MAX_BINS. A key that would make a store span more than that raises the sketch's level until
 * the span fits: key_l = ceil(key0 / 2^l), one level being (k + 1) >> 1 with an arithmetic shift. Because
 * ceil(ceil(x/2)/2) = ceil(x/4) and "fits at level l" implies "fits at level l+1", the level of a sketch is always the
 * smallest level at which everything it was given fits, whatever the order of adds and merges. That is why merging
 * any partition of the data gives bin for bin the sketch of the whole (with integral weights, whose float sums are
 * exact below 2^24 per bin).
 *
 * Every operation that can fail (allocation) first computes the target level and sizes, allocates, and only then
 * changes the sketch, so a failed call leaves the sketch as it was.
 *
 * Encoding (version 2, little-endian; a store is "positive" then "negative", both at the sketch's level):
 *
 *   offset  size    field
 *   0       1       version = 2 (decoders accept 1 too: see below)
 *   1       1       level (0 .. DTS__SKETCH_MAX_LEVEL)
 *   2       8       zero: f64, weight of |v| <= DTS_SKETCH_MIN_VALUE (finite, >= 0)
 *   10      8       count: f64, total weight (finite, >= 0)
 *   18      ...     positive store, then negative store, each:
 *                     lo      zigzag LEB128 varint (1..5 bytes, minimal): key of the first bin at `level`
 *                     nbins   LEB128 varint (minimal), 0 .. DTS_SKETCH_MAX_BINS: the span lo .. lo + nbins - 1
 *                     (when nbins > 0:)
 *                     form    u8: 0 = dense, 1 = sparse
 *                     dense:  nbins x f32 (finite, >= 0): weight of keys lo .. lo + nbins - 1
 *                     sparse: nnz varint (<= nbins), then nnz x { gap varint: bins skipped since the previous entry
 *                             (the first: since lo); weight: varint 2n for an integral weight n in 1 .. 2^24, or
 *                             varint 1 followed by the f32 (finite, > 0, any other value) }
 *
 * The encoder writes sparse when it is strictly smaller than dense (a timer minute of 20 values over a 250-key span:
 * ~45 bytes instead of ~1 KB), dense otherwise; zero-weight bins are not listed in sparse form. An empty store is
 * written lo = 0, nbins = 0 (2 bytes, no form); an empty sketch is 22 bytes, a full one at most
 * 18 + 2 * (3 + 2 + 1 + 1024) = 2078. Keys must lie in the range dts_sketch_key can produce, collapsed to `level`.
 * The decoder accepts exactly what the encoder can write (canonical varints, lo = 0 for empty stores, the smaller form,
 * the short weight form whenever it applies), so decode then encode gives back the same bytes. Version 1 (the first
 * release) had no form byte and always dense stores; it is still decoded (stored minutes, old clients) and re-encoded
 * as version 2.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dts/bytes.h"
#include "dts/sketch.h"

/* The cubic's coefficients and the mapping's multiplier. ln(gamma) = 2 atanh(alpha) as a series so that it is a
 * compile-time constant (error < alpha^11, far below double precision for alpha <= 0.05). */
#define CUB_A (6.0 / 35.0)
#define CUB_B (-3.0 / 5.0)
#define CUB_C (10.0 / 7.0)
#define ALPHA_ DTS_SKETCH_ALPHA
#define LN_GAMMA                                                                                                     \
	(2.0 * (ALPHA_ + ALPHA_ * ALPHA_ * ALPHA_ / 3.0 + ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ / 5.0 +          \
		ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ / 7.0 +                                  \
		ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ * ALPHA_ / 9.0))
#define KEY_MULT (7.0 / (10.0 * LN_GAMMA))

/* Values are clamped to 2^900 (~8.5e270) so that level-0 keys fit in int16 with INT16_MIN left free: the per-core
 * timer log (table.h) stores them that way. key0(2^900) = ceil(900 * m) = 31499 at 1%. */
#define MAX_EXP 900
#define MAX_VALUE 0x1p900

/* Floating-point conditions are not integer constant expressions for every compiler, so "alpha <= 5%" and "key0(2^900)
 * < INT16_MAX" are checked by tests/unit/test_sketch.c (sketch_key.extremes_fit_int16_and_are_clamped and
 * sketch_key.level_alpha_table), not by _Static_assert. A smaller alpha than about 0.0097 needs a lower MAX_EXP. */
_Static_assert(DTS_SKETCH_MAX_BINS >= 4 && DTS_SKETCH_MAX_BINS <= 65535, "nbins and cap are uint16");

/* Highest level a sketch may be at. The whole key range (-1046 .. 31499, 32546 keys) fits in 256 bins at level 7; 16
 * leaves room for a smaller DTS_SKETCH_MAX_BINS and keeps every shift below well defined. */
#define DTS__SKETCH_MAX_LEVEL 16

#define FORMAT_VERSION 2 /* decoders also accept version 1 (dense stores, no form byte) */
#define FORM_DENSE 0
#define FORM_SPARSE 1
#define HEADER_BYTES 18
#define MIN_CAP 8

/* GCC/clang vectors (any target; SSE2 here) for arithmetic done lane by lane exactly as the scalar code would:
 * quantile values (two Newton solves at once) and quantiles2's scaling of bins that line up. */
typedef double v2d __attribute__((vector_size(16)));
typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

int32_t dts_sketch_key(double v)
{
	uint64_t b;
	double s;
	double y;
	int32_t k;
	int e;

	v = fabs(v);
	if (!(v > DTS_SKETCH_MIN_VALUE)) /* also NaN */
		v = DTS_SKETCH_MIN_VALUE;
	if (v > MAX_VALUE)
		v = MAX_VALUE;
	memcpy(&b, &v, sizeof(b));
	e = (int)(b >> 52) - 1023; /* v is normal here: no subnormal case */
	b = (b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
	memcpy(&s, &b, sizeof(s));
	s -= 1.0;
	y = ((double)e + ((CUB_A * s + CUB_B) * s + CUB_C) * s) * KEY_MULT;
	k = (int32_t)y; /* truncation; ceil below without a libm call */
	return k + (y > (double)k);
}

/* Bounds of the level-0 keys: dts_sketch_key returns keys in [key0(2^-30), key0(2^900)] (2^-30 < MIN_VALUE, checked
 * by the tests), and add_key and decode accept exactly that range, so whatever a sketch holds can be encoded and
 * decoded. At powers of two L(v) = e exactly, so the bounds are ceil(e * m) (-1049 and 31499 at 1%). */
#define MIN_EXP (-30)
#define KEY0_MIN ((int32_t)(MIN_EXP * KEY_MULT)) /* truncation of a negative non-integer = ceil */
#define KEY0_MAX ((int32_t)(MAX_EXP * KEY_MULT) + 1)

/* ceil(k / 2^d) for d in 0..31, with an arithmetic shift. */
static inline int32_t key_collapse(int32_t k, unsigned d)
{
	return (int32_t)(((int64_t)k + (((int64_t)1 << d) - 1)) >> d);
}

/* 2^e for -1022 <= e <= 1023, from its bits: multiplying by it is exactly ldexp while the product is normal. */
static inline double pow2(int e)
{
	const uint64_t b = (uint64_t)(e + 1023) << 52;
	double r;

	memcpy(&r, &b, sizeof(r));
	return r;
}

/*
 * dts_sketch_key_value of n (1 .. DTS_SKETCH_QUANTILES_MAX) keys at one level (<= 62), into v[]. A bin's value is
 * the harmonic mean of its bounds lo and hi, the values whose L are (key - 1) 2^level / m and key 2^level / m: with
 * y = e + P(s), P(s) = A s^3 + B s^2 + C s increasing on [0, 1] (P' >= 26/35), solved by Newton from s = frac(y)
 * (P(s) stays within 0.09 of s); 6 steps reach full double precision. The 2n solves run side by side, lo and hi in
 * the two lanes of a vector, so that they share instructions and the divisions' latency; each lane does exactly the
 * scalar arithmetic. Quantile results only (quantiles2 computes one per quantile of every timer it publishes).
 */
static void key_values(const int32_t *key, unsigned n, unsigned level, double *v)
{
	v2d e[DTS_SKETCH_QUANTILES_MAX], f[DTS_SKETCH_QUANTILES_MAX], s[DTS_SKETCH_QUANTILES_MAX];
	const double scale = pow2((int)level); /* key * 2^level is exact (|key| <= 2^31): the same as ldexp */

	for (unsigned i = 0; i < n; i++) {
		const v2d y = { ((double)key[i] - 1.0) * scale / KEY_MULT, (double)key[i] * scale / KEY_MULT };

		e[i] = (v2d){ floor(y[0]), floor(y[1]) };
		s[i] = f[i] = y - e[i];
	}
	for (int step = 0; step < 6; step++)
		for (unsigned i = 0; i < n; i++) {
			const v2d p = ((CUB_A * s[i] + CUB_B) * s[i] + CUB_C) * s[i] - f[i];
			const v2d dp = (3.0 * CUB_A * s[i] + 2.0 * CUB_B) * s[i] + CUB_C;

			s[i] -= p / dp;
		}
	for (unsigned i = 0; i < n; i++) {
		double b[2];

		for (int l = 0; l < 2; l++) {
			const double sl = s[i][l] < 0.0 ? 0.0 : s[i][l] > 1.0 ? 1.0 : s[i][l];

			/* 1 + s is in [1, 2], so for |e| <= 1022 the product is normal and the multiplication exact, as
			 * ldexp */
			b[l] = e[i][l] >= -1022.0 && e[i][l] <= 1022.0 ? (1.0 + sl) * pow2((int)e[i][l])
								      : ldexp(1.0 + sl, (int)e[i][l]);
		}
		/* = 2 lo hi / (lo + hi) without overflowing lo * hi */
		v[i] = !(b[0] > 0.0) ? 0.0 : 2.0 / (1.0 / b[0] + 1.0 / b[1]);
	}
}

double dts_sketch_key_value(int32_t key, unsigned level)
{
	double v;

	if (level > 62)
		return NAN;
	key_values(&key, 1, level, &v);
	return v;
}

double dts_sketch_level_alpha(unsigned level)
{
	if (level == 0)
		return DTS_SKETCH_ALPHA;
	/* (g - 1)/(g + 1) with ln g = 2^level ln gamma */
	return tanh(ldexp(LN_GAMMA, (int)(level > 62 ? 62 : level)) / 2.0);
}

void dts_sketch_init(struct dts_sketch *s)
{
	memset(s, 0, sizeof(*s));
}

void dts_sketch_free(struct dts_sketch *s)
{
	free(s->pos.bins);
	free(s->neg.bins);
	dts_sketch_init(s);
}

void dts_sketch_clear(struct dts_sketch *s)
{
	s->pos.lo = 0;
	s->pos.nbins = 0;
	s->neg.lo = 0;
	s->neg.nbins = 0;
	s->zero = 0.0;
	s->count = 0.0;
	s->level = 0;
}

size_t dts_sketch_heap_bytes(const struct dts_sketch *s)
{
	return ((size_t)s->pos.cap + s->neg.cap) * sizeof(float);
}

/* Capacity for n bins: a power of two >= MIN_CAP, never above DTS_SKETCH_MAX_BINS (n <= DTS_SKETCH_MAX_BINS). */
static uint16_t cap_for(uint32_t n)
{
	uint32_t c = MIN_CAP;

	while (c < n)
		c <<= 1;
	return (uint16_t)(c > DTS_SKETCH_MAX_BINS ? DTS_SKETCH_MAX_BINS : c);
}

/* Make room for n bins; contents are kept. Returns 0 or -ENOMEM (store unchanged). */
static int store_reserve(struct dts_sketch_store *st, uint32_t n)
{
	uint16_t cap;
	float *p;

	if (n <= st->cap)
		return 0;
	cap = cap_for(n);
	p = realloc(st->bins, (size_t)cap * sizeof(float));
	if (!p)
		return -ENOMEM;
	st->bins = p;
	st->cap = cap;
	return 0;
}

/* Span, in bins at `d` levels above the store's, of the store's keys together with key k (already at the new
 * level); has_k false: of the store alone. 0 for an empty store without k. */
static uint32_t span_with(const struct dts_sketch_store *st, unsigned d, bool has_k, int32_t k)
{
	int32_t lo, hi;

	if (st->nbins == 0)
		return has_k ? 1 : 0;
	lo = key_collapse(st->lo, d);
	hi = key_collapse(st->lo + st->nbins - 1, d);
	if (has_k) {
		lo = k < lo ? k : lo;
		hi = k > hi ? k : hi;
	}
	return (uint32_t)(hi - lo) + 1;
}

/* Collapse a store in place by d levels: bin i goes to ceil((lo + i) / 2^d) - new lo, which is <= i, so a forward
 * pass that overwrites each target on its first visit never reads a bin it already wrote. */
static void store_collapse(struct dts_sketch_store *st, unsigned d)
{
	int32_t nlo;
	int32_t prev = -1;

	if (d == 0 || st->nbins == 0)
		return;
	nlo = key_collapse(st->lo, d);
	for (uint32_t i = 0; i < st->nbins; i++) {
		int32_t j = key_collapse(st->lo + (int32_t)i, d) - nlo;

		if (j != prev)
			st->bins[j] = st->bins[i];
		else
			st->bins[j] += st->bins[i];
		prev = j;
	}
	st->nbins = (uint16_t)(prev + 1);
	st->lo = nlo;
}

/* Extend a store's range to include key k; capacity must already be there. New bins are zero. */
static void store_extend(struct dts_sketch_store *st, int32_t k)
{
	if (st->nbins == 0) {
		st->lo = k;
		st->nbins = 1;
		st->bins[0] = 0.0f;
	} else if (k < st->lo) {
		uint32_t shift = (uint32_t)(st->lo - k);

		memmove(st->bins + shift, st->bins, (size_t)st->nbins * sizeof(float));
		memset(st->bins, 0, (size_t)shift * sizeof(float));
		st->lo = k;
		st->nbins = (uint16_t)(st->nbins + shift);
	} else if (k >= st->lo + st->nbins) {
		uint32_t n = (uint32_t)(k - st->lo) + 1;

		memset(st->bins + st->nbins, 0, (size_t)(n - st->nbins) * sizeof(float));
		st->nbins = (uint16_t)n;
	}
}

/* Bring the whole sketch to `level` (>= its level). */
static void sketch_collapse_to(struct dts_sketch *s, unsigned level)
{
	unsigned d = level - s->level;

	store_collapse(&s->pos, d);
	store_collapse(&s->neg, d);
	s->level = (uint8_t)level;
}

static bool weight_ok(double w)
{
	return w > 0.0 && w <= FLT_MAX; /* false for NaN; FLT_MAX: bins are float */
}

/* The slow path of add: key0's bin is outside its store's range. */
static int add_key_slow(struct dts_sketch *s, struct dts_sketch_store *st, int32_t key0, float w)
{
	unsigned level = s->level;
	int32_t k = key_collapse(key0, level);
	uint32_t span = span_with(st, 0, true, k);
	int err;

	while (span > DTS_SKETCH_MAX_BINS && level < DTS__SKETCH_MAX_LEVEL) {
		level++;
		k = key_collapse(key0, level);
		span = span_with(st, level - s->level, true, k);
	}
	if (span > DTS_SKETCH_MAX_BINS) /* defensive: cannot happen for keys in dts_sketch_key's range */
		return -EINVAL;
	err = store_reserve(st, span);
	if (err)
		return err;
	sketch_collapse_to(s, level);
	store_extend(st, k);
	st->bins[k - st->lo] += w;
	return 0;
}

int dts_sketch_add_key(struct dts_sketch *s, int32_t key0, bool negative, double w)
{
	struct dts_sketch_store *st;
	int32_t k;
	int err;

	if (!weight_ok(w))
		return -EINVAL;
	if (key0 == INT32_MIN) {
		s->zero += w;
		s->count += w;
		return 0;
	}
	if (key0 < KEY0_MIN || key0 > KEY0_MAX)
		return -EINVAL;
	st = negative ? &s->neg : &s->pos;
	k = key_collapse(key0, s->level);
	if (st->nbins != 0 && k >= st->lo && k < st->lo + (int32_t)st->nbins) {
		st->bins[k - st->lo] += (float)w;
	} else {
		err = add_key_slow(s, st, key0, (float)w);
		if (err)
			return err;
	}
	s->count += w;
	return 0;
}

int dts_sketch_add(struct dts_sketch *s, double v, double w)
{
	if (isnan(v))
		return -EINVAL;
	if (fabs(v) <= DTS_SKETCH_MIN_VALUE)
		return dts_sketch_add_key(s, INT32_MIN, false, w);
	return dts_sketch_add_key(s, dts_sketch_key(v), v < 0.0, w);
}

/* Range of a store once moved to `level` and merged with src (at src_level <= level); lo/hi out, returns the span. */
static uint32_t union_span(const struct dts_sketch_store *a, unsigned a_up, const struct dts_sketch_store *b,
			   unsigned b_up)
{
	int32_t lo, hi;

	if (a->nbins == 0 && b->nbins == 0)
		return 0;
	if (a->nbins == 0)
		return span_with(b, b_up, false, 0);
	if (b->nbins == 0)
		return span_with(a, a_up, false, 0);
	lo = key_collapse(a->lo, a_up);
	hi = key_collapse(a->lo + a->nbins - 1, a_up);
	if (key_collapse(b->lo, b_up) < lo)
		lo = key_collapse(b->lo, b_up);
	if (key_collapse(b->lo + b->nbins - 1, b_up) > hi)
		hi = key_collapse(b->lo + b->nbins - 1, b_up);
	return (uint32_t)(hi - lo) + 1;
}

/* dst (already at `level`, capacity reserved) += factor * src's bins moved up by d levels. Each of src's bins is
 * scaled before it is added, so with factor 1 this adds exactly src's floats. */
static void store_merge(struct dts_sketch_store *dst, const struct dts_sketch_store *src, unsigned d, double factor)
{
	if (src->nbins == 0)
		return;
	store_extend(dst, key_collapse(src->lo, d));
	store_extend(dst, key_collapse(src->lo + src->nbins - 1, d));
	for (uint32_t i = 0; i < src->nbins; i++)
		dst->bins[key_collapse(src->lo + (int32_t)i, d) - dst->lo] += (float)((double)src->bins[i] * factor);
}

/* dst += factor * src for a factor already checked (see scaled_ok). */
static int merge_scaled(struct dts_sketch *dst, const struct dts_sketch *src, double factor)
{
	unsigned level = dst->level > src->level ? dst->level : src->level;
	uint32_t pspan, nspan;
	int err;

	/* dst == src works too: same level and ranges, so nothing collapses and each bin is read before it is written */
	for (;;) {
		pspan = union_span(&dst->pos, level - dst->level, &src->pos, level - src->level);
		nspan = union_span(&dst->neg, level - dst->level, &src->neg, level - src->level);
		if ((pspan <= DTS_SKETCH_MAX_BINS && nspan <= DTS_SKETCH_MAX_BINS) || level >= DTS__SKETCH_MAX_LEVEL)
			break;
		level++;
	}
	if (pspan > DTS_SKETCH_MAX_BINS || nspan > DTS_SKETCH_MAX_BINS) /* defensive: keys out of range */
		return -EINVAL;
	err = store_reserve(&dst->pos, pspan);
	if (!err)
		err = store_reserve(&dst->neg, nspan);
	if (err)
		return err;
	sketch_collapse_to(dst, level);
	store_merge(&dst->pos, &src->pos, level - src->level, factor);
	store_merge(&dst->neg, &src->neg, level - src->level, factor);
	dst->zero += src->zero * factor;
	dst->count += src->count * factor;
	return 0;
}

int dts_sketch_merge(struct dts_sketch *dst, const struct dts_sketch *src)
{
	return merge_scaled(dst, src, 1.0);
}

/* Whether src's weights times factor (> 0, finite) are still weights a sketch can hold: bins at most FLT_MAX (a float
 * cast above it is undefined, and decode rejects inf), zero and count finite. A factor <= 1 cannot grow anything. */
static bool scaled_ok(const struct dts_sketch *src, double factor)
{
	const struct dts_sketch_store *st[2] = { &src->pos, &src->neg };

	if (!(factor > 0.0 && factor <= DBL_MAX))
		return false;
	if (factor <= 1.0)
		return true;
	if (!(src->count * factor <= DBL_MAX) || !(src->zero * factor <= DBL_MAX))
		return false;
	for (int k = 0; k < 2; k++)
		for (uint32_t i = 0; i < st[k]->nbins; i++)
			if (!((double)st[k]->bins[i] * factor <= FLT_MAX))
				return false;
	return true;
}

int dts_sketch_merge_scaled(struct dts_sketch *dst, const struct dts_sketch *src, double factor)
{
	if (factor == 0.0)
		return 0;
	if (!scaled_ok(src, factor))
		return -EINVAL;
	return merge_scaled(dst, src, factor);
}

int dts_sketch_copy(struct dts_sketch *dst, const struct dts_sketch *src)
{
	int err;

	if (dst == src)
		return 0;
	err = store_reserve(&dst->pos, src->pos.nbins);
	if (!err)
		err = store_reserve(&dst->neg, src->neg.nbins);
	if (err)
		return err;
	if (src->pos.nbins)
		memcpy(dst->pos.bins, src->pos.bins, (size_t)src->pos.nbins * sizeof(float));
	if (src->neg.nbins)
		memcpy(dst->neg.bins, src->neg.bins, (size_t)src->neg.nbins * sizeof(float));
	dst->pos.lo = src->pos.lo;
	dst->pos.nbins = src->pos.nbins;
	dst->neg.lo = src->neg.lo;
	dst->neg.nbins = src->neg.nbins;
	dst->zero = src->zero;
	dst->count = src->count;
	dst->level = src->level;
	return 0;
}

/*
 * Walk the bins in ascending order of value (negative store from its highest key down, zero, positive store up) and
 * return the value of the first bin whose cumulative weight exceeds the rank. Float bins can sum to a little less
 * than count (precision beyond 2^24 per bin), so running off the end returns the highest non-empty bin.
 */
double dts_sketch_quantile(const struct dts_sketch *s, double q)
{
	const struct dts_sketch_store *neg = &s->neg, *pos = &s->pos;
	double rank, cum = 0.0;
	int last = 0; /* the last non-empty bin walked: -1 negative (at key lastk), 0 none, 1 zero, 2 positive */
	int32_t lastk = 0;

	if (!(s->count > 0.0) || isnan(q))
		return NAN;
	q = q < 0.0 ? 0.0 : (q > 1.0 ? 1.0 : q);
	rank = floor(q * (s->count - 1.0));
	/* a bin's value (two cubic inversions) is computed only for the bin returned */
	for (int32_t i = (int32_t)neg->nbins - 1; i >= 0; i--) {
		if (neg->bins[i] <= 0.0f)
			continue;
		last = -1;
		lastk = neg->lo + i;
		cum += neg->bins[i];
		if (cum > rank)
			return -dts_sketch_key_value(lastk, s->level);
	}
	if (s->zero > 0.0) {
		last = 1;
		cum += s->zero;
		if (cum > rank)
			return 0.0;
	}
	for (uint32_t i = 0; i < pos->nbins; i++) {
		if (pos->bins[i] <= 0.0f)
			continue;
		last = 2;
		lastk = pos->lo + (int32_t)i;
		cum += pos->bins[i];
		if (cum > rank)
			return dts_sketch_key_value(lastk, s->level);
	}
	return last == 2 ? dts_sketch_key_value(lastk, s->level)
			 : last == 1 ? 0.0 : last == -1 ? -dts_sketch_key_value(lastk, s->level) : NAN;
}

/* Key range [*lo, *hi] of two stores once moved up da and db levels (to quantiles2's level); false when both are
 * empty. */
static bool pair_range(const struct dts_sketch_store *a, unsigned da, const struct dts_sketch_store *b, unsigned db,
		       int32_t *lo, int32_t *hi)
{
	if (!a->nbins && !b->nbins)
		return false;
	if (a->nbins) {
		*lo = key_collapse(a->lo, da);
		*hi = key_collapse(a->lo + a->nbins - 1, da);
	}
	if (b->nbins) {
		int32_t blo = key_collapse(b->lo, db), bhi = key_collapse(b->lo + b->nbins - 1, db);

		*lo = a->nbins && *lo < blo ? *lo : blo;
		*hi = a->nbins && *hi > bhi ? *hi : bhi;
	}
	return true;
}

/* t[j] += (float)((double)bin * w) for each bin of st in index order, its key moved up d levels being base + dir * j:
 * what store_merge adds. With w = 1 that is the bin itself, as store_collapse adds it. */
static void merge_into(float *t, int32_t base, int dir, const struct dts_sketch_store *st, unsigned d, double w)
{
	const float *bins = st->bins;
	const uint32_t nb = st->nbins;
	const int32_t lo = st->lo;
	uint32_t i = 0;

	if (nb == 0)
		return;
	if (d == 0 && dir > 0) {
		float *dst = t + (lo - base);

		/* four at a time in vectors: each lane converted, scaled, rounded and added as below */
		for (; i + 4 <= nb; i += 4) {
			v4f x, y;

			memcpy(&x, bins + i, sizeof(x));
			memcpy(&y, dst + i, sizeof(y));
			y += __builtin_convertvector(__builtin_convertvector(x, v4d) * w, v4f);
			memcpy(dst + i, &y, sizeof(y));
		}
		for (; i < nb; i++)
			dst[i] += (float)((double)bins[i] * w);
	} else if (dir > 0) {
		for (; i < nb; i++)
			t[key_collapse(lo + (int32_t)i, d) - base] += (float)((double)bins[i] * w);
	} else {
		for (; i < nb; i++)
			t[base - key_collapse(lo + (int32_t)i, d)] += (float)((double)bins[i] * w);
	}
}

/*
 * One sign's store of the merged sketch, as merge_scaled builds it at quantiles2's level, into t[] in walking order:
 * dir 1 puts key lo + j at t[j] (positive store, walked up), dir -1 puts key hi - j there (negative store, walked
 * down). Bin for bin the same float sums in the same order: a's bins moved up da levels and added in index order
 * (store_collapse), then b's moved up db levels, each scaled by wb and added in index order (store_merge). A bin
 * starts at 0.0f, and 0.0f + x is x for every weight (-0.0f becomes 0.0f: still empty). Returns the number of bins
 * (0 when both are empty) and the key of t[0] in *base.
 */
static uint32_t pair_merge(const struct dts_sketch_store *a, unsigned da, const struct dts_sketch_store *b, unsigned db,
			   double wb, int dir, float t[DTS_SKETCH_MAX_BINS], int32_t *base)
{
	int32_t lo, hi;
	uint32_t n;

	if (!pair_range(a, da, b, db, &lo, &hi))
		return 0;
	n = (uint32_t)(hi - lo) + 1; /* <= DTS_SKETCH_MAX_BINS at quantiles2's level */
	*base = dir > 0 ? lo : hi;
	memset(t, 0, (size_t)n * sizeof(float));
	merge_into(t, *base, dir, a, da, 1.0);
	merge_into(t, *base, dir, b, db, wb);
	return n;
}

/* The quantiles being found while a walk goes up the merged bins (quantiles2). side: -1 negative bin, 1 the zero bin,
 * 2 positive bin; 0 before the first. */
struct qacc {
	double rank[DTS_SKETCH_QUANTILES_MAX], cum;
	unsigned order[DTS_SKETCH_QUANTILES_MAX], pending, next; /* indices of out by rank; next: the first not found */
	int side[DTS_SKETCH_QUANTILES_MAX]; /* the bin found for order[p]: side[p] (0: none), key[p] */
	int32_t key[DTS_SKETCH_QUANTILES_MAX];
	int last; /* side of the last non-empty bin (kept up to date only while it may be needed: see qacc_walk) */
	int32_t lastk;
};

/* Give bin (side, k) to the next quantile by rank. */
static inline void qacc_found(struct qacc *qa, int side, int32_t k)
{
	qa->side[qa->next] = side;
	qa->key[qa->next] = k;
	qa->next++;
}

/* Add a non-empty bin of weight f; give it to every quantile whose rank it passes. */
static inline void qacc_add(struct qacc *qa, double f, int32_t k, int side)
{
	qa->last = side;
	qa->lastk = k;
	qa->cum += f;
	while (qa->next < qa->pending && qa->cum > qa->rank[qa->order[qa->next]])
		qacc_found(qa, side, k);
}

/* out[] for the bins found: each distinct bin's value once (the quantiles of one bin are next to each other by rank),
 * all solved together. */
static void qacc_values(const struct qacc *qa, unsigned level, double *out)
{
	int32_t keys[DTS_SKETCH_QUANTILES_MAX];
	unsigned idx[DTS_SKETCH_QUANTILES_MAX];
	double v[DTS_SKETCH_QUANTILES_MAX];
	unsigned nk = 0;

	for (unsigned p = 0; p < qa->pending; p++) {
		if (qa->side[p] != -1 && qa->side[p] != 2)
			continue;
		if (!nk || qa->side[p] != qa->side[p - 1] || qa->key[p] != keys[nk - 1])
			keys[nk++] = qa->key[p];
		idx[p] = nk - 1;
	}
	if (nk)
		key_values(keys, nk, level, v);
	for (unsigned p = 0; p < qa->pending; p++)
		out[qa->order[p]] = qa->side[p] == 2 ? v[idx[p]] : qa->side[p] == -1 ? -v[idx[p]]
								 : qa->side[p] == 1 ? 0.0 : NAN;
}

/*
 * qacc_add for each non-empty bin of t[0 .. n) in order (key base + dir * j), with the same result and fewer steps
 * (qa->next < qa->pending on entry). An empty bin adds 0.0 to cum, which changes nothing, so every bin is added
 * without a test. cum never decreases (weights >= 0), so a block of 8 bins whose sum, added one by one as the walk
 * would, stays at or below the next rank passes no rank and the walk goes on from that sum; otherwise the block is
 * walked again bin by bin from where it started. A rank is passed only at a non-empty bin: before the first one cum is
 * 0 and may exceed a negative rank (count < 1). The last non-empty bin is found only when the walk ends with quantiles
 * left (qacc_add keeps it at every bin).
 */
static void qacc_walk(struct qacc *qa, const float *t, uint32_t n, int32_t base, int dir, int side)
{
	double cum = qa->cum, rank = qa->rank[qa->order[qa->next]];
	uint32_t j = 0;

	for (;;) {
		for (; j + 8 <= n; j += 8) {
			double c = cum;

			c += t[j];
			c += t[j + 1];
			c += t[j + 2];
			c += t[j + 3];
			c += t[j + 4];
			c += t[j + 5];
			c += t[j + 6];
			c += t[j + 7];
			if (c > rank)
				break;
			cum = c;
		}
		for (; j < n; j++) {
			cum += t[j];
			if (cum > rank && t[j] > 0.0f)
				break;
		}
		if (j == n)
			break;
		do
			qacc_found(qa, side, base + dir * (int32_t)j);
		while (qa->next < qa->pending && cum > qa->rank[qa->order[qa->next]]);
		j++;
		if (qa->next == qa->pending)
			break;
		rank = qa->rank[qa->order[qa->next]];
	}
	qa->cum = cum;
	if (qa->next < qa->pending)
		for (uint32_t i = n; i-- > 0;)
			if (t[i] > 0.0f) {
				qa->last = side;
				qa->lastk = base + dir * (int32_t)i;
				break;
			}
}

void dts_sketch_quantiles2(const struct dts_sketch *a, const struct dts_sketch *b, double wb, const double *q, size_t n,
			   double *out)
{
	static const struct dts_sketch none = { .count = 0.0 };
	struct qacc qa = { .cum = 0.0, .pending = 0, .next = 0, .last = 0, .lastk = 0 };
	float t[DTS_SKETCH_MAX_BINS];
	unsigned level, da, db;
	double count, zero;
	uint32_t pspan, nspan, nb;
	int32_t base = 0;

	if (n > DTS_SKETCH_QUANTILES_MAX)
		n = DTS_SKETCH_QUANTILES_MAX;
	if (!a)
		a = &none;
	if (!b || !(wb > 0.0)) {
		b = &none;
		wb = 0.0;
	}
	/* the level merge_scaled would reach: an empty destination takes a's level, then b's merge may raise it */
	for (level = a->level > b->level ? a->level : b->level;; level++) {
		pspan = union_span(&a->pos, level - a->level, &b->pos, level - b->level);
		nspan = union_span(&a->neg, level - a->level, &b->neg, level - b->level);
		if ((pspan <= DTS_SKETCH_MAX_BINS && nspan <= DTS_SKETCH_MAX_BINS) || level >= DTS__SKETCH_MAX_LEVEL)
			break;
	}
	da = level - a->level;
	db = level - b->level;
	/* as merge_scaled sums them (with no b, + 0.0 changes nothing) */
	count = a->count + b->count * wb;
	zero = a->zero + b->zero * wb;
	for (size_t i = 0; i < n; i++) {
		out[i] = NAN;
		if (!(count > 0.0) || isnan(q[i]))
			continue;
		qa.rank[i] = floor((q[i] < 0.0 ? 0.0 : q[i] > 1.0 ? 1.0 : q[i]) * (count - 1.0));
		/* insertion into order[], by rank */
		unsigned j = qa.pending++;

		for (; j > 0 && qa.rank[qa.order[j - 1]] > qa.rank[i]; j--)
			qa.order[j] = qa.order[j - 1];
		qa.order[j] = (unsigned)i;
	}
	if (!qa.pending)
		return;
	if (pspan > DTS_SKETCH_MAX_BINS || nspan > DTS_SKETCH_MAX_BINS) /* defensive: keys out of range (merge fails) */
		return;
	/* the negative store from its highest key down, the zero bin, the positive store up */
	if ((nb = pair_merge(&a->neg, da, &b->neg, db, wb, -1, t, &base)) > 0)
		qacc_walk(&qa, t, nb, base, -1, -1);
	if (qa.next < qa.pending && zero > 0.0)
		qacc_add(&qa, zero, 0, 1);
	if (qa.next < qa.pending && (nb = pair_merge(&a->pos, da, &b->pos, db, wb, 1, t, &base)) > 0)
		qacc_walk(&qa, t, nb, base, 1, 2);
	/* rounding left cum at or below a rank: the last non-empty bin, as dts_sketch_quantile does (0: none) */
	while (qa.next < qa.pending)
		qacc_found(&qa, qa.last, qa.lastk);
	qacc_values(&qa, level, out);
}

/* Read a minimal LEB128 varint of at most 32 bits at *pos (writers and little-endian fields: dts/bytes.h).
 * Returns 0 or -EINVAL. */
static int get_varint_long(const uint8_t *buf, size_t len, size_t *pos, uint32_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < 5; i++) {
		uint8_t b;

		if (*pos + i >= len)
			return -EINVAL;
		b = buf[*pos + i];
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			if (i > 0 && b == 0) /* non-minimal */
				return -EINVAL;
			if (v > UINT32_MAX)
				return -EINVAL;
			*pos += i + 1;
			*out = (uint32_t)v;
			return 0;
		}
	}
	return -EINVAL;
}

/* The same, with the one-byte case (almost every gap and small weight of a sparse store) inlined: decoding a timer
 * read of 8 days is mostly this. */
static inline int get_varint(const uint8_t *buf, size_t len, size_t *pos, uint32_t *out)
{
	if (__builtin_expect(*pos < len && buf[*pos] < 0x80, 1)) {
		*out = buf[(*pos)++];
		return 0;
	}
	return get_varint_long(buf, len, pos, out);
}

static uint32_t zigzag(int32_t v)
{
	return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
}

static int32_t unzigzag(uint32_t u)
{
	return (int32_t)((u >> 1) ^ (~(u & 1) + 1));
}





/* ---- encoding ------------------------------------------------------------------------------------------------ */

/* A sparse weight: even varint 2n for an integral weight n in [1, 2^24] (exact in f32), else varint 1 + the f32. */
#define INT_WEIGHT_MAX 16777216.0f

static bool weight_is_small_int(float w)
{
	return w >= 1.0f && w <= INT_WEIGHT_MAX && w == (float)(uint32_t)w;
}

static size_t weight_len(float w)
{
	return weight_is_small_int(w) ? dts_varint_len((uint64_t)(uint32_t)w << 1) : 1 + 4;
}

/* Bytes of a non-empty store's bins in each form. */
static size_t store_sparse_bytes(const struct dts_sketch_store *st, uint32_t *nnz_out)
{
	size_t n = 0;
	uint32_t nnz = 0, gap = 0;

	for (uint32_t i = 0; i < st->nbins; i++) {
		const float w = st->bins[i];

		if (!(w > 0.0f)) {
			gap++;
			continue;
		}
		n += dts_varint_len(gap) + weight_len(w);
		gap = 0;
		nnz++;
	}
	*nnz_out = nnz;
	return dts_varint_len(nnz) + n;
}

/*
 * How a store is written: the form (the smaller, dense on a tie, so the choice is a function of the bins: canonical),
 * its non-zero bins, and its encoded size. Computed once per store by encoded_size and by encode.
 */
struct store_plan {
	bool sparse;
	uint32_t nnz;
	size_t bytes; /* the whole store: lo, nbins, form, bins */
};

static size_t store_plan(const struct dts_sketch_store *st, struct store_plan *pl)
{
	size_t dense = (size_t)st->nbins * 4, sparse;

	if (st->nbins == 0) {
		pl->sparse = false;
		pl->nnz = 0;
		pl->bytes = 2;
		return 2;
	}
	sparse = store_sparse_bytes(st, &pl->nnz);
	pl->sparse = sparse < dense;
	pl->bytes = dts_varint_len(zigzag(st->lo)) + dts_varint_len(st->nbins) + 1 + (pl->sparse ? sparse : dense);
	return pl->bytes;
}

size_t dts_sketch_encoded_size(const struct dts_sketch *s)
{
	struct store_plan pp, pn;

	return HEADER_BYTES + store_plan(&s->pos, &pp) + store_plan(&s->neg, &pn);
}

static size_t store_encode(const struct dts_sketch_store *st, const struct store_plan *pl, uint8_t *p)
{
	size_t n;
	uint32_t gap = 0;

	if (st->nbins == 0) {
		p[0] = 0;
		p[1] = 0;
		return 2;
	}
	n = dts_put_varint(p, zigzag(st->lo));
	n += dts_put_varint(p + n, st->nbins);
	if (!pl->sparse) {
		p[n++] = FORM_DENSE;
		for (uint32_t i = 0; i < st->nbins; i++, n += 4)
			dts_wrf32(p + n, st->bins[i]);
		return n;
	}
	p[n++] = FORM_SPARSE;
	n += dts_put_varint(p + n, pl->nnz);
	for (uint32_t i = 0; i < st->nbins; i++) {
		const float w = st->bins[i];

		if (!(w > 0.0f)) {
			gap++;
			continue;
		}
		n += dts_put_varint(p + n, gap);
		gap = 0;
		if (weight_is_small_int(w)) {
			n += dts_put_varint(p + n, (uint64_t)(uint32_t)w << 1);
		} else {
			p[n++] = 1;
			dts_wrf32(p + n, w);
			n += 4;
		}
	}
	return n;
}

int dts_sketch_encode(const struct dts_sketch *s, uint8_t *buf, size_t buf_len)
{
	struct store_plan pp, pn;
	size_t n;

	if (buf_len < HEADER_BYTES + store_plan(&s->pos, &pp) + store_plan(&s->neg, &pn))
		return -ENOSPC;
	buf[0] = FORMAT_VERSION;
	buf[1] = s->level;
	dts_wrf64(buf + 2, s->zero);
	dts_wrf64(buf + 10, s->count);
	n = HEADER_BYTES;
	n += store_encode(&s->pos, &pp, buf + n);
	n += store_encode(&s->neg, &pn, buf + n);
	return (int)n;
}

/* Where one store's fields are in the input, after validation. */
struct store_view {
	int32_t lo;
	uint32_t nbins;
	uint32_t nnz; /* sparse: entries */
	uint8_t form; /* FORM_DENSE or FORM_SPARSE (version 1: always dense) */
	size_t bins_off;
};

static bool weight_valid(double w)
{
	return w >= 0.0 && w <= DBL_MAX; /* false for NaN and inf */
}

/* Parse one sparse weight at *pos. Canonical: an integral weight in [1, 2^24] must use the short form. */
static int sparse_weight_long(const uint8_t *buf, size_t len, size_t *pos, float *w)
{
	uint32_t x;

	if (get_varint(buf, len, pos, &x))
		return -EINVAL;
	if (!(x & 1)) {
		if (x == 0 || x > ((uint32_t)INT_WEIGHT_MAX << 1))
			return -EINVAL;
		*w = (float)(x >> 1);
		return 0;
	}
	if (x != 1 || len - *pos < 4)
		return -EINVAL;
	*w = dts_rdf32(buf + *pos);
	*pos += 4;
	if (!(*w > 0.0f) || !weight_valid(*w) || weight_is_small_int(*w))
		return -EINVAL;
	return 0;
}

/* The same, with a one-byte integral weight (1..63: the usual bin of a minute) inlined. */
static inline int sparse_weight(const uint8_t *buf, size_t len, size_t *pos, float *w)
{
	if (__builtin_expect(*pos < len, 1)) {
		const uint8_t b = buf[*pos];

		if (__builtin_expect(b < 0x80 && !(b & 1) && b != 0, 1)) {
			*w = (float)(b >> 1);
			(*pos)++;
			return 0;
		}
	}
	return sparse_weight_long(buf, len, pos, w);
}

static int store_parse(const uint8_t *buf, size_t len, size_t *pos, unsigned level, unsigned version,
		       struct store_view *v)
{
	uint32_t zz;
	int32_t kmin = key_collapse(KEY0_MIN, level), kmax = key_collapse(KEY0_MAX, level);

	if (get_varint(buf, len, pos, &zz) || get_varint(buf, len, pos, &v->nbins))
		return -EINVAL;
	v->lo = unzigzag(zz);
	v->form = FORM_DENSE;
	if (v->nbins == 0)
		return v->lo == 0 ? 0 : -EINVAL;
	if (v->nbins > DTS_SKETCH_MAX_BINS || v->lo < kmin || v->lo > kmax || v->nbins - 1 > (uint32_t)(kmax - v->lo))
		return -EINVAL;
	if (version >= 2) {
		if (*pos >= len || buf[*pos] > FORM_SPARSE)
			return -EINVAL;
		v->form = buf[(*pos)++];
	}
	if (v->form == FORM_SPARSE) {
		size_t start, bytes;
		uint64_t span = 0;
		float w;

		start = *pos;
		if (get_varint(buf, len, pos, &v->nnz) || v->nnz > v->nbins)
			return -EINVAL;
		v->bins_off = *pos;
		for (uint32_t i = 0; i < v->nnz; i++) {
			uint32_t gap;

			if (get_varint(buf, len, pos, &gap) || sparse_weight(buf, len, pos, &w))
				return -EINVAL;
			span += (uint64_t)gap + 1;
			if (span > v->nbins)
				return -EINVAL;
		}
		/* Canonical: the encoder writes sparse only when it is strictly smaller than dense. */
		bytes = *pos - start;
		return bytes < (size_t)v->nbins * 4 ? 0 : -EINVAL;
	}
	if (len - *pos < (size_t)v->nbins * 4)
		return -EINVAL;
	v->bins_off = *pos;
	size_t sparse = 0;
	uint32_t nnz = 0, gap = 0;

	for (uint32_t i = 0; i < v->nbins; i++) {
		const float w = dts_rdf32(buf + *pos + 4 * (size_t)i);

		if (!weight_valid(w))
			return -EINVAL;
		if (!(w > 0.0f)) {
			gap++;
			continue;
		}
		sparse += dts_varint_len(gap) + weight_len(w);
		gap = 0;
		nnz++;
	}
	*pos += (size_t)v->nbins * 4;
	/* Canonical (version 2): dense only when sparse would not be smaller. */
	if (version >= 2 && dts_varint_len(nnz) + sparse < (size_t)v->nbins * 4)
		return -EINVAL;
	return 0;
}

static void store_fill(struct dts_sketch_store *st, const uint8_t *buf, const struct store_view *v)
{
	st->lo = v->lo;
	st->nbins = (uint16_t)v->nbins;
	if (v->form == FORM_SPARSE) {
		size_t pos = v->bins_off;
		uint32_t k = 0, gap;
		float w = 0.0f;

		memset(st->bins, 0, (size_t)v->nbins * sizeof(st->bins[0]));
		for (uint32_t i = 0; i < v->nnz; i++) {
			get_varint(buf, SIZE_MAX, &pos, &gap); /* validated by store_parse */
			sparse_weight(buf, SIZE_MAX, &pos, &w);
			k += gap;
			st->bins[k++] = w;
		}
		return;
	}
	for (uint32_t i = 0; i < v->nbins; i++)
		st->bins[i] = dts_rdf32(buf + v->bins_off + 4 * (size_t)i);
}

/* Validate everything first, then reserve, then fill: on any error s is unchanged. */
int dts_sketch_decode(struct dts_sketch *s, const uint8_t *buf, size_t len)
{
	struct store_view pv, nv;
	double zero, count;
	unsigned level, version;
	size_t pos = HEADER_BYTES;
	int err;

	if (len < HEADER_BYTES || buf[0] < 1 || buf[0] > FORMAT_VERSION || buf[1] > DTS__SKETCH_MAX_LEVEL)
		return -EINVAL;
	version = buf[0];
	level = buf[1];
	zero = dts_rdf64(buf + 2);
	count = dts_rdf64(buf + 10);
	if (!weight_valid(zero) || !weight_valid(count))
		return -EINVAL;
	if (store_parse(buf, len, &pos, level, version, &pv) || store_parse(buf, len, &pos, level, version, &nv))
		return -EINVAL;
	err = store_reserve(&s->pos, pv.nbins);
	if (!err)
		err = store_reserve(&s->neg, nv.nbins);
	if (err)
		return err;
	store_fill(&s->pos, buf, &pv);
	store_fill(&s->neg, buf, &nv);
	s->zero = zero;
	s->count = count;
	s->level = (uint8_t)level;
	return (int)pos;
}

void dts_agg_init(struct dts_agg *a)
{
	a->sum = 0.0;
	a->count = 0.0;
	a->min = INFINITY;
	a->max = -INFINITY;
	a->fst = 0.0;
	a->lst = 0.0;
}

void dts_agg_merge(struct dts_agg *dst, const struct dts_agg *later)
{
	if (later->count == 0.0)
		return;
	if (dst->count == 0.0) {
		*dst = *later;
		return;
	}
	dst->sum += later->sum;
	dst->count += later->count;
	dst->min = later->min < dst->min ? later->min : dst->min;
	dst->max = later->max > dst->max ? later->max : dst->max;
	dst->lst = later->lst;
}
