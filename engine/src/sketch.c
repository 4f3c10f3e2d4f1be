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
 * A store covers a span of keys, exactly [min key, max key] of what was added (at the current level), and holds its
 * bins sparse (sorted entries) or dense (an array over the span): see "stores" below. A key that would make a store
 * span more than DTS_SKETCH_MAX_BINS raises the sketch's level until the span fits: key_l = ceil(key0 / 2^l), one
 * level being (k + 1) >> 1 with an arithmetic shift. Because ceil(ceil(x/2)/2) = ceil(x/4) and "fits at level l"
 * implies "fits at level l+1", the level of a sketch is always the smallest level at which everything it was given
 * fits, whatever the order of adds and merges. That is why merging any partition of the data gives bin for bin the
 * sketch of the whole (with integral weights, whose float sums are exact below 2^24 per bin).
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
 *                     dense:  nbins x f32 (finite, >= 0; an empty bin is +0.0): weight of keys lo .. lo + nbins - 1
 *                     sparse: nnz varint (<= nbins), then nnz x { gap varint: bins skipped since the previous entry
 *                             (the first: since lo); weight: varint 2n for an integral weight n in 1 .. 2^24, or
 *                             varint 1 followed by the f32 (finite, > 0, any other value) }
 *
 * The encoder writes sparse when it is strictly smaller than dense (a timer minute of 20 values over a 250-key span:
 * ~45 bytes instead of ~1 KB), dense otherwise; zero-weight bins are not listed in sparse form. An empty store is
 * written lo = 0, nbins = 0 (2 bytes, no form); an empty sketch is 22 bytes, a full one at most
 * 18 + 2 * (3 + 2 + 1 + 1024) = 2078. Keys must lie in the range dts_sketch_key can produce, collapsed to `level`.
 * The decoder accepts exactly what the encoder can write (canonical varints, lo = 0 for empty stores, the smaller form,
 * the short weight form whenever it applies, +0.0 for an empty dense bin), so decode then encode gives back the same
 * bytes. Version 1 (the first release) had no form byte and always dense stores; it is still decoded (stored minutes,
 * old clients; a -0.0 bin is read as an empty one) and re-encoded as version 2.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

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
#define MIN_SPARSE_CAP 4

_Static_assert(DTS_SKETCH_SPARSE_MAX >= MIN_SPARSE_CAP && DTS_SKETCH_SPARSE_MAX <= 255, "a store's nnz is uint8");
_Static_assert(MIN_SPARSE_CAP >= 4 && (MIN_SPARSE_CAP & (MIN_SPARSE_CAP - 1)) == 0 && DTS_SKETCH_SPARSE_MAX % 16 == 0,
	       "sp_lower reads a sparse store's keys 16 at a time, or 8 or 4 when that is its capacity");

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
	s->pos.nnz = 0;
	s->neg.lo = 0;
	s->neg.nbins = 0;
	s->neg.nnz = 0;
	s->zero = 0.0;
	s->count = 0.0;
	s->level = 0;
}

/* ---- stores: a span of keys, its bins dense or sparse ----------------------------------------------------------- */

/*
 * A store's span [lo, lo + nbins) is what decides levels, in both forms: it is the range of every key added or merged
 * in at the current level, empty bins included. Dense, bins[i] is the weight of key lo + i. Sparse, bins[i] is the
 * weight of entry i and sp_keys(st)[i] its key, entries in ascending key order and of weight > 0 (a weight that
 * rounds to 0.0f as a float grows the span and adds no entry, as a dense bin would stay 0). A sparse store always has
 * an allocation; a store with no allocation (cap 0) is dense and empty. Items, in both forms, are what the readers
 * walk in ascending key order: the span's bins (dense) or the entries (sparse), weight bins[i], key item_key(st, i).
 * Every float sum is made in the same order in both forms (a dense bin starts at 0.0f, and 0.0f + w is w), so the
 * form never changes a result.
 */
#define SP_ENTRY (sizeof(float) + sizeof(int16_t))

static inline int16_t *sp_keys(const struct dts_sketch_store *st)
{
	return (int16_t *)(void *)(st->bins + st->cap);
}

static inline uint32_t store_items(const struct dts_sketch_store *st)
{
	return st->sparse ? st->nnz : st->nbins;
}

static inline int32_t item_key(const struct dts_sketch_store *st, uint32_t i)
{
	return st->sparse ? sp_keys(st)[i] : st->lo + (int32_t)i;
}

/*
 * Index of the first entry of a sparse store whose key is >= k (nnz when none), k inside the store's span (so within
 * int16). The keys are sorted, so that index is the number of keys below k: it is counted 16 keys at a time (AVX2) or
 * 8 (SSE2) with no branch on the keys, where a binary search mispredicts about half of its 6 steps (callgrind: 3.8
 * mispredicts per timer value folded into a sparse store). The loop runs over the store's capacity, a power of two
 * that changes far less often than nnz, so its exit is predicted too; lanes at nnz and past it are masked off. A
 * store's key array holds cap keys, cap a power of two >= 4: the loads stay inside it (a store of cap 4 is read with
 * one 8-byte load, one of cap 8 with one 16-byte load).
 */
static inline uint32_t sp_lower(const struct dts_sketch_store *st, int32_t k)
{
	const int16_t *key = sp_keys(st);
	const uint32_t n = st->nnz, cap = st->cap;
#if defined(__SSE2__)
	const __m128i kv = _mm_set1_epi16((int16_t)k);
	uint32_t below = 0;

	if (cap < 16) {
		const __m128i v = cap < 8 ? _mm_loadl_epi64((const __m128i *)(const void *)key)
					  : _mm_loadu_si128((const __m128i *)(const void *)key);

		return (uint32_t)__builtin_popcount((unsigned)_mm_movemask_epi8(_mm_cmpgt_epi16(kv, v)) &
						    ((1u << (2 * n)) - 1)) / 2;
	}
	/* lane j of a chunk counts when its key is below k and its index, i + j, is below nnz: both tests are
	 * compares of vectors, so nothing in the loop but its exit is a branch */
#if defined(__AVX2__)
	const __m256i kw = _mm256_set1_epi16((int16_t)k), nw = _mm256_set1_epi16((int16_t)n);
	const __m256i step = _mm256_set1_epi16(16);
	__m256i ix = _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

	for (uint32_t i = 0; i < cap; i += 16, ix = _mm256_add_epi16(ix, step)) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(key + i));
		const __m256i in = _mm256_and_si256(_mm256_cmpgt_epi16(kw, v), _mm256_cmpgt_epi16(nw, ix));

		below += (uint32_t)__builtin_popcount((uint32_t)_mm256_movemask_epi8(in));
	}
#else
	const __m128i nv = _mm_set1_epi16((int16_t)n), step = _mm_set1_epi16(8);
	__m128i ix = _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7);

	for (uint32_t i = 0; i < cap; i += 8, ix = _mm_add_epi16(ix, step)) {
		const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(key + i));
		const __m128i in = _mm_and_si128(_mm_cmpgt_epi16(kv, v), _mm_cmpgt_epi16(nv, ix));

		below += (uint32_t)__builtin_popcount((uint32_t)_mm_movemask_epi8(in));
	}
#endif
	return below / 2;
#else
	uint32_t lo = 0, hi = n;

	(void)cap;
	while (lo < hi) {
		uint32_t mid = (lo + hi) >> 1;

		if (key[mid] < k)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
#endif
}

size_t dts_sketch_heap_bytes(const struct dts_sketch *s)
{
	return (size_t)s->pos.cap * (s->pos.sparse ? SP_ENTRY : sizeof(float)) +
	       (size_t)s->neg.cap * (s->neg.sparse ? SP_ENTRY : sizeof(float));
}

float dts_sketch_bin(const struct dts_sketch *s, bool negative, int32_t key)
{
	const struct dts_sketch_store *st = negative ? &s->neg : &s->pos;
	uint32_t i;

	if (st->nbins == 0 || key < st->lo || key >= st->lo + (int32_t)st->nbins)
		return 0.0f;
	if (!st->sparse)
		return st->bins[key - st->lo];
	i = sp_lower(st, key);
	return i < st->nnz && sp_keys(st)[i] == key ? st->bins[i] : 0.0f;
}

/* The smallest power of two >= n and >= min, at most max. */
static inline uint16_t pow2_cap(uint32_t n, uint32_t min, uint32_t max)
{
	const uint32_t c = n <= min ? min : 1u << (32 - __builtin_clz(n - 1));

	return (uint16_t)(c > max ? max : c);
}

/* Capacity for n bins: a power of two >= MIN_CAP, never above DTS_SKETCH_MAX_BINS (n <= DTS_SKETCH_MAX_BINS). */
static uint16_t cap_for(uint32_t n)
{
	return pow2_cap(n, MIN_CAP, DTS_SKETCH_MAX_BINS);
}

/* Capacity for n entries (n <= DTS_SKETCH_SPARSE_MAX): a power of two >= MIN_SPARSE_CAP, at most the limit. */
static uint16_t sp_cap_for(uint32_t n)
{
	return pow2_cap(n, MIN_SPARSE_CAP, DTS_SKETCH_SPARSE_MAX);
}

/* Whether a store of n non-empty bins over a span of `span` keys is better dense: past the sparse limit, or when the
 * dense array would be no larger than the entries. */
static bool want_dense(uint32_t n, uint32_t span)
{
	return n > DTS_SKETCH_SPARSE_MAX || (size_t)cap_for(span) * sizeof(float) <= (size_t)sp_cap_for(n) * SP_ENTRY;
}

/* Dense: room for n bins; contents are kept. Returns 0 or -ENOMEM (store unchanged). */
static int dense_reserve(struct dts_sketch_store *st, uint32_t n)
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

/* Sparse (or not allocated yet): room for n entries, sparse; contents are kept. 0 or -ENOMEM (store unchanged). */
static int sparse_reserve(struct dts_sketch_store *st, uint32_t n)
{
	const uint16_t old = st->cap;
	uint16_t cap;
	float *p;

	if (n <= old && old > 0)
		return 0;
	cap = sp_cap_for(n);
	p = realloc(st->bins, (size_t)cap * SP_ENTRY);
	if (!p)
		return -ENOMEM;
	/* the keys follow the weights: move them up to the new capacity's end of the weights */
	memmove(p + cap, p + old, (size_t)st->nnz * sizeof(int16_t));
	st->bins = p;
	st->cap = cap;
	st->sparse = 1;
	return 0;
}

/* A sparse store's bins as a dense array over its span, into out[0 .. nbins). */
static void sp_scatter(const struct dts_sketch_store *st, float *out)
{
	memset(out, 0, (size_t)st->nbins * sizeof(float));
	for (uint32_t i = 0; i < st->nnz; i++)
		out[sp_keys(st)[i] - st->lo] = st->bins[i];
}

/* Sparse to dense, with room for `span` bins as well as the current span. 0 or -ENOMEM (store unchanged). */
static int store_densify(struct dts_sketch_store *st, uint32_t span)
{
	const uint16_t cap = cap_for(span > st->nbins ? span : st->nbins);
	float *p = malloc((size_t)cap * sizeof(float));

	if (!p)
		return -ENOMEM;
	sp_scatter(st, p); /* bins past the span are zeroed as store_extend reaches them */
	free(st->bins);
	st->bins = p;
	st->cap = cap;
	st->nnz = 0;
	st->sparse = 0;
	return 0;
}

/*
 * Make room, contents kept, for what the store will hold after an add or a merge: a span of `span` bins (at the new
 * level) and at most n entries. A dense store stays dense; a sparse one with room for n stays sparse; otherwise a
 * sparse or unallocated store grows sparse unless want_dense says dense. Returns 0 or -ENOMEM (the store's contents
 * unchanged either way).
 */
static int store_room(struct dts_sketch_store *st, uint32_t span, uint32_t n)
{
	if (!st->sparse && st->cap > 0)
		return dense_reserve(st, span);
	if (st->sparse && n <= st->cap)
		return 0;
	if (want_dense(n, span))
		return st->cap > 0 ? store_densify(st, span) : dense_reserve(st, span);
	return sparse_reserve(st, n);
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

/*
 * Collapse a store in place by d levels. Dense: bin i goes to ceil((lo + i) / 2^d) - new lo, which is <= i, so a
 * forward pass that overwrites each target on its first visit never reads a bin it already wrote. Sparse: the same
 * walk over the entries, whose collapsed keys stay in ascending order. Either way a target's bins are summed in
 * ascending key order.
 */
static void store_collapse(struct dts_sketch_store *st, unsigned d)
{
	int32_t nlo, nhi;
	int32_t prev = -1;

	if (d == 0 || st->nbins == 0)
		return;
	nlo = key_collapse(st->lo, d);
	nhi = key_collapse(st->lo + st->nbins - 1, d);
	if (st->sparse) {
		int16_t *key = sp_keys(st);
		int32_t j = -1;

		for (uint32_t i = 0; i < st->nnz; i++) {
			const int32_t k = key_collapse(key[i], d);

			if (j >= 0 && key[j] == k) {
				st->bins[j] += st->bins[i];
			} else {
				j++;
				key[j] = (int16_t)k;
				st->bins[j] = st->bins[i];
			}
		}
		st->nnz = (uint8_t)(j + 1);
	} else {
		for (uint32_t i = 0; i < st->nbins; i++) {
			int32_t j = key_collapse(st->lo + (int32_t)i, d) - nlo;

			if (j != prev)
				st->bins[j] = st->bins[i];
			else
				st->bins[j] += st->bins[i];
			prev = j;
		}
	}
	st->nbins = (uint16_t)(nhi - nlo + 1);
	st->lo = (int16_t)nlo;
}

/* Grow the span to include key k (no bins touched). Returns the number of keys added below the old lo. */
static uint32_t span_include(struct dts_sketch_store *st, int32_t k)
{
	uint32_t below = 0;

	if (st->nbins == 0) {
		st->lo = (int16_t)k;
		st->nbins = 1;
	} else if (k < st->lo) {
		below = (uint32_t)(st->lo - k);
		st->lo = (int16_t)k;
		st->nbins = (uint16_t)(st->nbins + below);
	} else if (k >= st->lo + st->nbins) {
		st->nbins = (uint16_t)(k - st->lo + 1);
	}
	return below;
}

/* Dense: extend the span to include key k; capacity must already be there. New bins are zero. */
static void store_extend(struct dts_sketch_store *st, int32_t k)
{
	const uint32_t old = st->nbins, below = span_include(st, k);

	if (below) {
		memmove(st->bins + below, st->bins, (size_t)old * sizeof(float));
		memset(st->bins, 0, (size_t)below * sizeof(float));
	} else if (st->nbins > old) {
		memset(st->bins + old, 0, (size_t)(st->nbins - old) * sizeof(float));
	}
}

/* Insert entry (k, w) at index i of a sparse store with room for it (i = sp_lower(st, k), k not there yet). */
static inline void sp_insert(struct dts_sketch_store *st, uint32_t i, int32_t k, float w)
{
	int16_t *key = sp_keys(st);

	memmove(st->bins + i + 1, st->bins + i, (size_t)(st->nnz - i) * sizeof(float));
	memmove(key + i + 1, key + i, (size_t)(st->nnz - i) * sizeof(int16_t));
	st->bins[i] = w;
	key[i] = (int16_t)k;
	st->nnz++;
}

/* Add w to key k's bin; room must already be there (store_room). */
static void store_put(struct dts_sketch_store *st, int32_t k, float w)
{
	int16_t *key;
	uint32_t i;

	if (!st->sparse) {
		store_extend(st, k);
		st->bins[k - st->lo] += w;
		return;
	}
	span_include(st, k);
	if (!(w > 0.0f))
		return;
	key = sp_keys(st);
	i = sp_lower(st, k);
	if (i < st->nnz && key[i] == k)
		st->bins[i] += w;
	else
		sp_insert(st, i, k, w);
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

/* The slow path of add: key0's bin is outside its store's range, or a new entry of a sparse store. */
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
	err = store_room(st, span, (uint32_t)st->nnz + 1);
	if (err)
		return err;
	sketch_collapse_to(s, level);
	store_put(st, k, w);
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
		if (!st->sparse) {
			st->bins[k - st->lo] += (float)w;
			goto done;
		}
		uint32_t i = sp_lower(st, k);

		if (i < st->nnz && sp_keys(st)[i] == k) {
			st->bins[i] += (float)w;
			goto done;
		}
		if (st->nnz < st->cap && (float)w > 0.0f) { /* a new entry inside the span, with room: no level change */
			sp_insert(st, i, k, (float)w);
			goto done;
		}
	}
	err = add_key_slow(s, st, key0, (float)w);
	if (err)
		return err;
done:
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

/*
 * Sparse dst (room reserved: at most DTS_SKETCH_SPARSE_MAX entries result) += factor * src's items moved up by d
 * levels, src in either form. The result is built aside and copied back, so dst == src works. A key's weight is dst's
 * (or nothing) plus each of src's items that land on it, in src's order: the sums store_merge makes in a dense dst.
 */
static void sparse_merge(struct dts_sketch_store *dst, const struct dts_sketch_store *src, unsigned d, double factor)
{
	float w[DTS_SKETCH_SPARSE_MAX];
	int16_t key[DTS_SKETCH_SPARSE_MAX];
	const int16_t *dkey = dst->nnz ? sp_keys(dst) : NULL;
	const uint32_t nsrc = store_items(src);
	uint32_t i = 0, n = 0;

	for (uint32_t j = 0; j < nsrc; j++) {
		const int32_t k = key_collapse(item_key(src, j), d);
		const float x = (float)((double)src->bins[j] * factor);

		while (i < dst->nnz && dkey[i] < k) {
			key[n] = dkey[i];
			w[n++] = dst->bins[i++];
		}
		if (n > 0 && key[n - 1] == k) {
			w[n - 1] += x;
		} else if (i < dst->nnz && dkey[i] == k) {
			key[n] = dkey[i];
			w[n++] = dst->bins[i++] + x;
		} else if (x > 0.0f) {
			key[n] = (int16_t)k;
			w[n++] = x;
		}
	}
	for (; i < dst->nnz; i++) {
		key[n] = dkey[i];
		w[n++] = dst->bins[i];
	}
	memcpy(dst->bins, w, (size_t)n * sizeof(float));
	memcpy(sp_keys(dst), key, (size_t)n * sizeof(int16_t));
	dst->nnz = (uint8_t)n;
}

/* dst (already at `level`, room reserved) += factor * src's bins moved up by d levels. Each of src's bins is scaled
 * before it is added, so with factor 1 this adds exactly src's floats. */
static void store_merge(struct dts_sketch_store *dst, const struct dts_sketch_store *src, unsigned d, double factor)
{
	const int32_t lo = key_collapse(src->lo, d), hi = key_collapse(src->lo + src->nbins - 1, d);

	if (src->nbins == 0)
		return;
	if (dst->sparse) {
		span_include(dst, lo);
		span_include(dst, hi);
		sparse_merge(dst, src, d, factor);
		return;
	}
	store_extend(dst, lo);
	store_extend(dst, hi);
	for (uint32_t i = 0, n = store_items(src); i < n; i++)
		dst->bins[key_collapse(item_key(src, i), d) - dst->lo] += (float)((double)src->bins[i] * factor);
}

/*
 * Entries a sparse (or unallocated) dst holds once src is merged in: the distinct keys of dst's entries moved up dd
 * levels and of src's non-empty bins moved up ds levels (both lists stay in ascending key order when moved up).
 */
static uint32_t merge_entries(const struct dts_sketch_store *dst, unsigned dd, const struct dts_sketch_store *src,
			      unsigned ds)
{
	const uint32_t nd = dst->nnz, ns = store_items(src);
	const int16_t *dkey = nd ? sp_keys(dst) : NULL;
	uint32_t i = 0, j = 0, n = 0;
	int32_t last = INT32_MIN;

	for (;;) {
		int32_t a, b, k;

		while (j < ns && !(src->bins[j] > 0.0f))
			j++;
		if (i == nd && j == ns)
			return n;
		a = i < nd ? key_collapse(dkey[i], dd) : INT32_MAX;
		b = j < ns ? key_collapse(item_key(src, j), ds) : INT32_MAX;
		if (a <= b) {
			k = a;
			i++;
		} else {
			k = b;
			j++;
		}
		n += k != last;
		last = k;
	}
}

/* Room in dst (dd levels below the merge's) for src (ds below) over a merged span of `span` bins. 0 or -ENOMEM. */
static int merge_room(struct dts_sketch_store *dst, unsigned dd, const struct dts_sketch_store *src, unsigned ds,
		      uint32_t span)
{
	if (src->nbins == 0)
		return 0;
	return store_room(dst, span, !dst->sparse && dst->cap > 0 ? 0 : merge_entries(dst, dd, src, ds));
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
	err = merge_room(&dst->pos, level - dst->level, &src->pos, level - src->level, pspan);
	if (!err)
		err = merge_room(&dst->neg, level - dst->level, &src->neg, level - src->level, nspan);
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
		for (uint32_t i = 0, n = store_items(st[k]); i < n; i++)
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

/* An array for a store's new contents, from form_buffer, installed by store_adopt. */
struct store_buf {
	float *p;
	uint16_t cap;
	bool sparse;
};

/*
 * An array for a store's new contents, nnz non-empty bins over a span of nbins: the store's own when the contents
 * are empty or it can hold them in its form (no allocation: the native decoder's scratch relies on it), else a new
 * one in the form want_dense chooses (the store is not changed: store_adopt installs it). 0 or -ENOMEM.
 */
static int form_buffer(const struct dts_sketch_store *st, uint32_t nnz, uint32_t nbins, struct store_buf *b)
{
	if (nbins == 0 || (st->cap > 0 && (st->sparse ? nnz <= st->cap : nbins <= st->cap))) {
		*b = (struct store_buf){ st->bins, st->cap, st->sparse };
		return 0;
	}
	b->sparse = !want_dense(nnz, nbins);
	b->cap = b->sparse ? sp_cap_for(nnz) : cap_for(nbins);
	b->p = malloc((size_t)b->cap * (b->sparse ? SP_ENTRY : sizeof(float)));
	return b->p ? 0 : -ENOMEM;
}

/* form_buffer for both of s's stores (positive, then negative), before either changes: 0, or -ENOMEM with nothing
 * allocated. */
static int sketch_buffers(const struct dts_sketch *s, const uint32_t nnz[2], const uint32_t nbins[2],
			  struct store_buf b[2])
{
	if (form_buffer(&s->pos, nnz[0], nbins[0], &b[0]))
		return -ENOMEM;
	if (form_buffer(&s->neg, nnz[1], nbins[1], &b[1])) {
		if (b[0].p != s->pos.bins)
			free(b[0].p);
		return -ENOMEM;
	}
	return 0;
}

/* Install an array from form_buffer (freeing the store's old one when it is new); the store is emptied. */
static void store_adopt(struct dts_sketch_store *st, const struct store_buf *b)
{
	if (b->p != st->bins) {
		free(st->bins);
		st->bins = b->p;
		st->cap = b->cap;
		st->sparse = b->sparse;
	}
	st->lo = 0;
	st->nbins = 0;
	st->nnz = 0;
}

/* Non-empty bins of a store. */
static uint32_t store_nonempty(const struct dts_sketch_store *st)
{
	uint32_t n = 0;

	if (st->sparse)
		return st->nnz;
	for (uint32_t i = 0; i < st->nbins; i++)
		n += st->bins[i] > 0.0f;
	return n;
}

int dts_sketch_copy(struct dts_sketch *dst, const struct dts_sketch *src)
{
	const struct dts_sketch_store *from[2] = { &src->pos, &src->neg };
	struct dts_sketch_store *to[2] = { &dst->pos, &dst->neg };
	const uint32_t nnz[2] = { store_nonempty(&src->pos), store_nonempty(&src->neg) };
	const uint32_t nbins[2] = { src->pos.nbins, src->neg.nbins };
	struct store_buf b[2];

	if (dst == src)
		return 0;
	if (sketch_buffers(dst, nnz, nbins, b))
		return -ENOMEM;
	for (int k = 0; k < 2; k++) {
		const struct dts_sketch_store *f = from[k];
		struct dts_sketch_store *t = to[k];

		store_adopt(t, &b[k]);
		if (f->nbins == 0)
			continue;
		t->lo = f->lo;
		t->nbins = f->nbins;
		if (t->sparse == f->sparse) {
			memcpy(t->bins, f->bins, (size_t)store_items(f) * sizeof(float));
			if (f->sparse)
				memcpy(sp_keys(t), sp_keys(f), (size_t)f->nnz * sizeof(int16_t));
			t->nnz = f->nnz;
		} else if (t->sparse) { /* dense to sparse: its non-empty bins */
			for (uint32_t i = 0; i < f->nbins; i++)
				if (f->bins[i] > 0.0f) {
					sp_keys(t)[t->nnz] = (int16_t)(f->lo + (int32_t)i);
					t->bins[t->nnz++] = f->bins[i];
				}
		} else {
			sp_scatter(f, t->bins);
		}
	}
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
	for (int32_t i = (int32_t)store_items(neg) - 1; i >= 0; i--) {
		if (neg->bins[i] <= 0.0f)
			continue;
		last = -1;
		lastk = item_key(neg, (uint32_t)i);
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
	for (uint32_t i = 0, n = store_items(pos); i < n; i++) {
		if (pos->bins[i] <= 0.0f)
			continue;
		last = 2;
		lastk = item_key(pos, i);
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

/* t[j] += (float)((double)bin * w) for each item of st in key order, its key moved up d levels being base + dir * j:
 * what store_merge adds. With w = 1 that is the bin itself, as store_collapse adds it. */
static void merge_into(float *t, int32_t base, int dir, const struct dts_sketch_store *st, unsigned d, double w)
{
	const float *bins = st->bins;
	const uint32_t nb = store_items(st);
	const int32_t lo = st->lo;
	uint32_t i = 0;

	if (nb == 0)
		return;
	if (st->sparse) {
		const int16_t *key = sp_keys(st);

		for (; i < nb; i++)
			t[dir > 0 ? key_collapse(key[i], d) - base : base - key_collapse(key[i], d)] +=
				(float)((double)bins[i] * w);
	} else if (d == 0 && dir > 0) {
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
	uint32_t nnz = 0;
	int32_t next = st->lo; /* the key after the previous non-empty bin */

	for (uint32_t i = 0, items = store_items(st); i < items; i++) {
		const float w = st->bins[i];
		const int32_t k = item_key(st, i);

		if (!(w > 0.0f))
			continue;
		n += dts_varint_len((uint32_t)(k - next)) + weight_len(w);
		next = k + 1;
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
	const uint32_t items = store_items(st);
	int32_t next = st->lo;
	size_t n;

	if (st->nbins == 0) {
		p[0] = 0;
		p[1] = 0;
		return 2;
	}
	n = dts_put_varint(p, zigzag(st->lo));
	n += dts_put_varint(p + n, st->nbins);
	if (!pl->sparse) {
		p[n++] = FORM_DENSE;
		if (st->sparse) /* the span's empty bins, then the entries (0.0f is four zero bytes) */
			memset(p + n, 0, (size_t)st->nbins * 4);
		for (uint32_t i = 0; i < items; i++)
			dts_wrf32(p + n + 4 * (size_t)(item_key(st, i) - st->lo), st->bins[i]);
		return n + (size_t)st->nbins * 4;
	}
	p[n++] = FORM_SPARSE;
	n += dts_put_varint(p + n, pl->nnz);
	for (uint32_t i = 0; i < items; i++) {
		const float w = st->bins[i];
		const int32_t k = item_key(st, i);

		if (!(w > 0.0f))
			continue;
		n += dts_put_varint(p + n, (uint32_t)(k - next));
		next = k + 1;
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
	uint32_t nnz; /* non-empty bins (the sparse form: its entries) */
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

		if (!weight_valid(w) || (version >= 2 && signbit(w))) /* -0.0: no encoder writes it */
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
	v->nnz = nnz;
	/* Canonical (version 2): dense only when sparse would not be smaller. */
	if (version >= 2 && dts_varint_len(nnz) + sparse < (size_t)v->nbins * 4)
		return -EINVAL;
	return 0;
}

/* Fill a store (emptied by store_adopt, with room in its form) from a validated view. */
static void store_fill(struct dts_sketch_store *st, const uint8_t *buf, const struct store_view *v)
{
	size_t pos = v->bins_off;
	uint32_t k = 0, gap;
	float w = 0.0f;

	st->lo = (int16_t)v->lo;
	st->nbins = (uint16_t)v->nbins;
	if (v->nbins == 0)
		return;
	if (st->sparse) {
		int16_t *key = sp_keys(st);
		uint32_t n = 0;

		if (v->form == FORM_SPARSE) {
			for (uint32_t i = 0; i < v->nnz; i++) {
				get_varint(buf, SIZE_MAX, &pos, &gap); /* validated by store_parse */
				sparse_weight(buf, SIZE_MAX, &pos, &w);
				k += gap;
				key[n] = (int16_t)(v->lo + (int32_t)k++);
				st->bins[n++] = w;
			}
		} else {
			for (uint32_t i = 0; i < v->nbins; i++) {
				w = dts_rdf32(buf + v->bins_off + 4 * (size_t)i);
				if (w > 0.0f) {
					key[n] = (int16_t)(v->lo + (int32_t)i);
					st->bins[n++] = w;
				}
			}
		}
		st->nnz = (uint8_t)n;
		return;
	}
	if (v->form == FORM_SPARSE) {
		memset(st->bins, 0, (size_t)v->nbins * sizeof(st->bins[0]));
		for (uint32_t i = 0; i < v->nnz; i++) {
			get_varint(buf, SIZE_MAX, &pos, &gap); /* validated by store_parse */
			sparse_weight(buf, SIZE_MAX, &pos, &w);
			k += gap;
			st->bins[k++] = w;
		}
		return;
	}
	for (uint32_t i = 0; i < v->nbins; i++) {
		w = dts_rdf32(buf + v->bins_off + 4 * (size_t)i);
		st->bins[i] = w > 0.0f ? w : 0.0f; /* a version-1 -0.0 is empty, as the sparse form reads it */
	}
}

/* Validate everything first, then allocate, then fill: on any error s is unchanged. */
int dts_sketch_decode(struct dts_sketch *s, const uint8_t *buf, size_t len)
{
	struct store_view v[2];
	struct dts_sketch_store *to[2] = { &s->pos, &s->neg };
	struct store_buf b[2];
	double zero, count;
	unsigned level, version;
	size_t pos = HEADER_BYTES;

	if (len < HEADER_BYTES || buf[0] < 1 || buf[0] > FORMAT_VERSION || buf[1] > DTS__SKETCH_MAX_LEVEL)
		return -EINVAL;
	version = buf[0];
	level = buf[1];
	zero = dts_rdf64(buf + 2);
	count = dts_rdf64(buf + 10);
	if (!weight_valid(zero) || !weight_valid(count))
		return -EINVAL;
	if (store_parse(buf, len, &pos, level, version, &v[0]) || store_parse(buf, len, &pos, level, version, &v[1]))
		return -EINVAL;
	if (sketch_buffers(s, (const uint32_t[2]){ v[0].nnz, v[1].nnz }, (const uint32_t[2]){ v[0].nbins, v[1].nbins }, b))
		return -ENOMEM;
	for (int k = 0; k < 2; k++) {
		store_adopt(to[k], &b[k]);
		store_fill(to[k], buf, &v[k]);
	}
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
