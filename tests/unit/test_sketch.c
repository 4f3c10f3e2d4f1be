/*
 * test_sketch.c - the quantile sketch (dts_sketch_*) and the scalar aggregate (dts_agg_*).
 *
 * Accuracy is checked against exact order statistics on fixed-seed data: for every q in 0, 0.01 .. 0.99, 1 the
 * sketch's answer must be within dts_sketch_level_alpha(level) of the element of rank floor(q * (n - 1)), and the level
 * must be the smallest at which the data fits (computed here independently from the keys).
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dts/sketch.h"

/* ---- deterministic data ---- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
	rng_state = seed;
}

static uint64_t rng_next(void) /* splitmix64 */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double rng_uniform(void) /* (0, 1) */
{
	return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(void)
{
	return sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform());
}

static double gen_uniform_1_100(void)
{
	return 1.0 + 99.0 * rng_uniform();
}

static double gen_uniform_0_1000(void)
{
	return 1000.0 * rng_uniform();
}

static double gen_exponential(void)
{
	return -50.0 * log(rng_uniform());
}

static double gen_lognormal(void)
{
	return exp(3.0 + 1.5 * rng_normal());
}

static double gen_pareto(void) /* x_m = 1, shape 1.16 ("80/20"): a heavy tail */
{
	return pow(rng_uniform(), -1.0 / 1.16);
}

static double gen_bimodal(void)
{
	return rng_uniform() < 0.5 ? fabs(20.0 + 2.0 * rng_normal()) : fabs(2000.0 + 100.0 * rng_normal());
}

static double gen_constant(void)
{
	return 42.0;
}

static double gen_tiny(void) /* zeros, values that go to the zero bin, and micro values */
{
	double u = rng_uniform();

	if (u < 0.2)
		return 0.0;
	if (u < 0.3)
		return 1e-12;
	return 1e-7 * pow(100.0, rng_uniform());
}

static double gen_signed(void)
{
	return 100.0 * rng_normal();
}

static double gen_negative(void)
{
	return -exp(2.0 + rng_normal());
}

static double gen_wide(void) /* 1e-3 .. 1e6: forces collapses */
{
	return 1e-3 * pow(1e9, rng_uniform());
}

struct dist {
	const char *name;
	double (*gen)(void);
	size_t n;
	unsigned min_level; /* the data must need at least this level (shows the case exercises what it claims) */
};

static const struct dist dists[] = {
	{ "uniform(1,100)", gen_uniform_1_100, 50000, 0 },
	{ "uniform(0,1000)", gen_uniform_0_1000, 50000, 1 },
	{ "exponential(50)", gen_exponential, 50000, 1 },
	{ "lognormal(3,1.5)", gen_lognormal, 50000, 1 },
	{ "pareto(1.16)", gen_pareto, 50000, 1 },
	{ "bimodal(20,2000)", gen_bimodal, 50000, 1 },
	{ "constant(42)", gen_constant, 1000, 0 },
	{ "tiny+zeros", gen_tiny, 50000, 0 },
	{ "normal(0,100) signed", gen_signed, 50000, 1 },
	{ "negative lognormal", gen_negative, 50000, 0 },
	{ "wide(1e-3..1e6)", gen_wide, 50000, 2 },
};
#define NDISTS (sizeof(dists) / sizeof(dists[0]))

static double *make_data(const struct dist *d, uint64_t seed)
{
	double *x = malloc(d->n * sizeof(double));

	cr_assert_not_null(x);
	rng_seed(seed);
	for (size_t i = 0; i < d->n; i++)
		x[i] = d->gen();
	return x;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* ---- helpers ---- */

static void sketch_all(struct dts_sketch *s, const double *x, size_t n)
{
	dts_sketch_init(s);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(dts_sketch_add(s, x[i], 1.0), 0);
}

static void assert_same_sketch(const struct dts_sketch *a, const struct dts_sketch *b, const char *what)
{
	const struct dts_sketch_store *sa[2] = { &a->pos, &a->neg }, *sb[2] = { &b->pos, &b->neg };

	cr_assert_eq(a->level, b->level, "%s: level %u != %u", what, a->level, b->level);
	cr_assert_eq(a->zero, b->zero, "%s: zero %g != %g", what, a->zero, b->zero);
	cr_assert_eq(a->count, b->count, "%s: count %g != %g", what, a->count, b->count);
	for (int k = 0; k < 2; k++) {
		cr_assert_eq(sa[k]->nbins, sb[k]->nbins, "%s: store %d nbins %u != %u", what, k, sa[k]->nbins,
			     sb[k]->nbins);
		if (sa[k]->nbins == 0)
			continue;
		cr_assert_eq(sa[k]->lo, sb[k]->lo, "%s: store %d lo %d != %d", what, k, sa[k]->lo, sb[k]->lo);
		for (int32_t key = sa[k]->lo; key < sa[k]->lo + (int32_t)sa[k]->nbins; key++)
			cr_assert_eq(dts_sketch_bin(a, k, key), dts_sketch_bin(b, k, key), "%s: store %d key %d: %g != %g",
				     what, k, key, (double)dts_sketch_bin(a, k, key), (double)dts_sketch_bin(b, k, key));
	}
}

/* ceil(k / 2^l), written differently from the library on purpose */
static int32_t ref_collapse(int32_t k, unsigned l)
{
	return (int32_t)ceil((double)k / ldexp(1.0, (int)l));
}

/* Smallest level at which each sign's keys span at most DTS_SKETCH_MAX_BINS. */
static unsigned ref_level(const double *x, size_t n)
{
	int32_t lo[2] = { INT32_MAX, INT32_MAX }, hi[2] = { INT32_MIN, INT32_MIN };
	unsigned l;

	for (size_t i = 0; i < n; i++) {
		int neg = x[i] < 0;
		int32_t k;

		if (fabs(x[i]) <= DTS_SKETCH_MIN_VALUE)
			continue;
		k = dts_sketch_key(x[i]);
		lo[neg] = k < lo[neg] ? k : lo[neg];
		hi[neg] = k > hi[neg] ? k : hi[neg];
	}
	for (l = 0;; l++) {
		bool fits = true;

		for (int s = 0; s < 2; s++)
			if (lo[s] <= hi[s] && ref_collapse(hi[s], l) - ref_collapse(lo[s], l) + 1 > DTS_SKETCH_MAX_BINS)
				fits = false;
		if (fits)
			return l;
	}
}

/* Max relative error over q = 0, 0.01 .. 0.99, 1 against the sorted data (asserting each one on the way). */
static double check_quantiles(const struct dts_sketch *s, const double *sorted, size_t n, const char *what)
{
	double alpha = dts_sketch_level_alpha(s->level);
	double worst = 0.0;

	for (int i = 0; i <= 100; i++) {
		double q = i / 100.0;
		double x = sorted[(size_t)floor(q * (double)(n - 1))];
		double e = dts_sketch_quantile(s, q);
		double err = fabs(e - x);

		cr_assert(!isnan(e), "%s: q=%g is NaN", what, q);
		cr_assert(err <= alpha * fabs(x) * (1.0 + 1e-9) + DTS_SKETCH_MIN_VALUE,
			  "%s: q=%.2f exact %.17g sketch %.17g rel err %g > alpha %g (level %u)", what, q, x, e,
			  err / fabs(x), alpha, s->level);
		if (fabs(x) > DTS_SKETCH_MIN_VALUE && err / fabs(x) > worst)
			worst = err / fabs(x);
	}
	return worst;
}

/* ---- key mapping ---- */

Test(sketch_key, monotone_dense_sweep_and_within_alpha)
{
	/* Steps of sqrt(gamma) are narrower than any bin (a bin spans at least ln(gamma) * 35/37 in ln v), so consecutive
	 * values must land in the same or the next key: keys are monotone and none is skipped. */
	const double step = sqrt((1.0 + DTS_SKETCH_ALPHA) / (1.0 - DTS_SKETCH_ALPHA));
	int32_t prev = dts_sketch_key(DTS_SKETCH_MIN_VALUE * 1.0000001);
	double worst = 0.0;
	size_t n = 0;

	for (double v = DTS_SKETCH_MIN_VALUE * 1.0000001; v < 1e270; v *= step, n++) {
		int32_t k = dts_sketch_key(v);
		double r = dts_sketch_key_value(k, 0);

		cr_assert(k == prev || k == prev + 1, "key(%.17g) = %d after %d", v, k, prev);
		cr_assert_eq(dts_sketch_key(-v), k, "key(-v) != key(v) at %g", v);
		cr_assert(fabs(r - v) <= DTS_SKETCH_ALPHA * v * (1.0 + 1e-12), "value %g of key %d, v %g", r, k, v);
		worst = fmax(worst, fabs(r - v) / v);
		prev = k;
	}
	cr_assert_gt(n, 50000);
	cr_assert_gt(worst, 0.0099, "the bound should be nearly reached somewhere (worst %g)", worst);
}

Test(sketch_key, monotone_around_powers_of_two)
{
	for (int e = -29; e <= 899; e++) {
		double p = ldexp(1.0, e);
		double below = nextafter(p, 0.0), above = nextafter(p, INFINITY);

		cr_assert_leq(dts_sketch_key(below), dts_sketch_key(p), "2^%d", e);
		cr_assert_leq(dts_sketch_key(p), dts_sketch_key(above), "2^%d", e);
		/* L is exact at powers of two: key0(2^e) = ceil(e * m), and every octave has the same keys */
		if (e > -29)
			cr_assert_leq(abs(dts_sketch_key(p) - dts_sketch_key(p / 2) - 35), 1, "octave below 2^%d", e);
	}
}

Test(sketch_key, about_one_percent_more_keys_than_exact_log)
{
	double exact_per_decade = log(10.0) / log((1.0 + DTS_SKETCH_ALPHA) / (1.0 - DTS_SKETCH_ALPHA));
	double keys = (dts_sketch_key(1e6) - dts_sketch_key(1e-3)) / 9.0;

	cr_assert(keys / exact_per_decade > 1.005 && keys / exact_per_decade < 1.015, "keys/decade %g vs log %g", keys,
		  exact_per_decade);
}

Test(sketch_key, extremes_fit_int16_and_are_clamped)
{
	static const struct {
		double v;
		int32_t same_as_key_of;
	} cases[] = {
		{ 1e300, 0 }, { DBL_MAX, 0 }, { INFINITY, 0 }, { -INFINITY, 0 },
		{ 0.0, 1 },   { 1e-300, 1 },  { NAN, 1 },      { 5e-324, 1 },
	};
	int32_t kmax = dts_sketch_key(0x1p900), kmin = dts_sketch_key(DTS_SKETCH_MIN_VALUE);

	/* preconditions of sketch.c's constants (floating point, so not _Static_asserts there) */
	cr_assert(DTS_SKETCH_ALPHA > 0.0 && DTS_SKETCH_ALPHA <= 0.05, "the ln(gamma) series needs alpha <= 5%%");
	cr_assert(0x1p-30 < DTS_SKETCH_MIN_VALUE);
	cr_assert_lt(kmax, INT16_MAX);
	cr_assert_gt(kmin, INT16_MIN);
	cr_assert_eq(kmax, (int32_t)ceil(900.0 * 7.0 / (10.0 * log((1.0 + DTS_SKETCH_ALPHA) / (1.0 - DTS_SKETCH_ALPHA)))));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(dts_sketch_key(cases[i].v), cases[i].same_as_key_of ? kmin : kmax, "case %zu", i);
	cr_assert_lt(dts_sketch_key(0x1p899), kmax);
	cr_assert(isfinite(dts_sketch_key_value(kmax, 0)));
	cr_assert_gt(dts_sketch_key_value(kmax, 0), 1e270);
}

Test(sketch_key, level_alpha_table)
{
	double lg = log((1.0 + DTS_SKETCH_ALPHA) / (1.0 - DTS_SKETCH_ALPHA));

	for (unsigned l = 0; l <= 8; l++) {
		double g = exp(lg * ldexp(1.0, (int)l));
		double want = (g - 1.0) / (g + 1.0);

		cr_assert(fabs(dts_sketch_level_alpha(l) - want) <= 1e-12 * want, "level %u: %.15g vs %.15g", l,
			  dts_sketch_level_alpha(l), want);
	}
	cr_assert(fabs(dts_sketch_level_alpha(1) - 0.02) < 1e-4);
	cr_assert(fabs(dts_sketch_level_alpha(2) - 0.04) < 1e-4);
}

Test(sketch_key, collapsed_bins_within_level_alpha)
{
	const double step = 1.0 + DTS_SKETCH_ALPHA / 3.0;

	for (unsigned l = 0; l <= 8; l++) {
		double alpha = dts_sketch_level_alpha(l);

		for (double v = 1.5e-9; v < 1e200; v *= step) {
			int32_t k = ref_collapse(dts_sketch_key(v), l);
			double r = dts_sketch_key_value(k, l);

			cr_assert(fabs(r - v) <= alpha * v * (1.0 + 1e-9), "level %u v %g key %d value %g", l, v, k, r);
		}
	}
}

/* ---- accuracy ---- */

Test(sketch_accuracy, every_quantile_within_level_alpha, .timeout = 60)
{
	for (size_t d = 0; d < NDISTS; d++) {
		double *x = make_data(&dists[d], 1000 + d);
		struct dts_sketch s;

		sketch_all(&s, x, dists[d].n);
		cr_assert_eq(s.count, (double)dists[d].n);
		cr_assert_eq(s.level, ref_level(x, dists[d].n), "%s: level %u, smallest that fits %u", dists[d].name,
			     s.level, ref_level(x, dists[d].n));
		cr_assert_geq(s.level, dists[d].min_level, "%s", dists[d].name);
		qsort(x, dists[d].n, sizeof(double), cmp_double);
		check_quantiles(&s, x, dists[d].n, dists[d].name);
		cr_assert_leq(s.pos.nbins, DTS_SKETCH_MAX_BINS);
		cr_assert_leq(s.neg.nbins, DTS_SKETCH_MAX_BINS);
		dts_sketch_free(&s);
		free(x);
	}
}

/* 1000 random pieces sketched separately and merged give the sketch of everything, bin for bin. */
Test(sketch_accuracy, merge_of_1000_pieces_is_exact, .timeout = 60)
{
	enum { PIECES = 1000 };

	for (size_t d = 0; d < NDISTS; d++) {
		double *x = make_data(&dists[d], 2000 + d);
		struct dts_sketch whole, merged, tree[PIECES];
		struct dts_sketch *piece = calloc(PIECES, sizeof(*piece));
		unsigned levels_seen = 0;

		cr_assert_not_null(piece);
		sketch_all(&whole, x, dists[d].n);
		for (size_t p = 0; p < PIECES; p++)
			dts_sketch_init(&piece[p]);
		rng_seed(3000 + d);
		for (size_t i = 0; i < dists[d].n; i++)
			cr_assert_eq(dts_sketch_add(&piece[rng_next() % PIECES], x[i], 1.0), 0);

		/* sequentially, in piece order */
		dts_sketch_init(&merged);
		for (size_t p = 0; p < PIECES; p++) {
			levels_seen |= 1u << piece[p].level;
			cr_assert_eq(dts_sketch_merge(&merged, &piece[p]), 0);
		}
		assert_same_sketch(&merged, &whole, dists[d].name);

		/* as a balanced tree of copies */
		for (size_t p = 0; p < PIECES; p++) {
			dts_sketch_init(&tree[p]);
			cr_assert_eq(dts_sketch_copy(&tree[p], &piece[p]), 0);
		}
		for (size_t w = 1; w < PIECES; w *= 2)
			for (size_t p = 0; p + w < PIECES; p += 2 * w)
				cr_assert_eq(dts_sketch_merge(&tree[p], &tree[p + w]), 0);
		assert_same_sketch(&tree[0], &whole, dists[d].name);

		qsort(x, dists[d].n, sizeof(double), cmp_double);
		check_quantiles(&merged, x, dists[d].n, dists[d].name);
		if (whole.level > 0) /* the pieces were at lower levels: the merge had to align them */
			cr_assert(levels_seen & ((1u << whole.level) - 1), "%s: no piece below level %u", dists[d].name,
				  whole.level);

		for (size_t p = 0; p < PIECES; p++) {
			dts_sketch_free(&piece[p]);
			dts_sketch_free(&tree[p]);
		}
		free(piece);
		dts_sketch_free(&merged);
		dts_sketch_free(&whole);
		free(x);
	}
}

Test(sketch_accuracy, merge_into_and_from_empty_and_self)
{
	struct dts_sketch a, b, e, twice;

	dts_sketch_init(&a);
	dts_sketch_init(&b);
	dts_sketch_init(&e);
	dts_sketch_init(&twice);
	for (int i = 1; i <= 100; i++) {
		cr_assert_eq(dts_sketch_add(&a, i * 1.5, 1.0), 0);
		cr_assert_eq(dts_sketch_add(&a, -i * 0.5, 1.0), 0);
		cr_assert_eq(dts_sketch_add(&twice, i * 1.5, 2.0), 0);
		cr_assert_eq(dts_sketch_add(&twice, -i * 0.5, 2.0), 0);
	}
	cr_assert_eq(dts_sketch_add(&a, 0.0, 1.0), 0);
	cr_assert_eq(dts_sketch_add(&twice, 0.0, 2.0), 0);
	cr_assert_eq(dts_sketch_merge(&b, &a), 0); /* into empty */
	assert_same_sketch(&b, &a, "into empty");
	cr_assert_eq(dts_sketch_merge(&b, &e), 0); /* from empty */
	assert_same_sketch(&b, &a, "from empty");
	cr_assert_eq(dts_sketch_merge(&b, &b), 0); /* self */
	assert_same_sketch(&b, &twice, "self");
	dts_sketch_free(&a);
	dts_sketch_free(&b);
	dts_sketch_free(&twice);
}

/* ---- scaled merge ---- */

/* dts_sketch_merge_scaled(.., 1.0) is dts_sketch_merge bin for bin: whole distributions merged into each other (at
 * their own levels, so both directions of level alignment occur), into an empty sketch, and into themselves. */
Test(sketch_merge_scaled, factor_one_is_merge, .timeout = 60)
{
	for (size_t d = 0; d < NDISTS; d++) {
		size_t e = (d + 4) % NDISTS; /* another distribution, often at another level */
		double *x = make_data(&dists[d], 6000 + d), *y = make_data(&dists[e], 7000 + e);
		struct dts_sketch a, b, merged, scaled;
		char what[96];

		sketch_all(&a, x, dists[d].n);
		sketch_all(&b, y, dists[e].n);
		dts_sketch_init(&merged);
		dts_sketch_init(&scaled);
		snprintf(what, sizeof(what), "%s += %s", dists[d].name, dists[e].name);
		cr_assert_eq(dts_sketch_copy(&merged, &a), 0);
		cr_assert_eq(dts_sketch_copy(&scaled, &a), 0);
		cr_assert_eq(dts_sketch_merge(&merged, &b), 0);
		cr_assert_eq(dts_sketch_merge_scaled(&scaled, &b, 1.0), 0);
		assert_same_sketch(&scaled, &merged, what);
		cr_assert_eq(dts_sketch_merge(&merged, &merged), 0); /* self */
		cr_assert_eq(dts_sketch_merge_scaled(&scaled, &scaled, 1.0), 0);
		assert_same_sketch(&scaled, &merged, what);
		dts_sketch_clear(&scaled); /* into empty */
		cr_assert_eq(dts_sketch_merge_scaled(&scaled, &a, 1.0), 0);
		assert_same_sketch(&scaled, &a, dists[d].name);
		dts_sketch_free(&a);
		dts_sketch_free(&b);
		dts_sketch_free(&merged);
		dts_sketch_free(&scaled);
		free(x);
		free(y);
	}
}

/*
 * dst gets level-0 keys [dst_from, dst_to] with weight 1, src gets [src_from, src_to] with weight 2 (from > to: none),
 * each in the negative store when its *_neg is set, and both a zero-bin weight. dst += factor * src must then be bin
 * for bin the sketch of dst's keys at weight 1 and src's at 2 * factor added one by one (factors are powers of two or
 * small integers, so every float sum is exact), at the expected level.
 */
struct scaled_case {
	const char *name;
	int32_t dst_from, dst_to;
	bool dst_neg;
	int32_t src_from, src_to;
	bool src_neg;
	double factor;
	unsigned dst_level, src_level, level; /* before (checked, so each case shows what it claims) and after */
};

static const struct scaled_case scaled_cases[] = {
	{ "same level, factor 1", 0, 100, false, 50, 200, false, 1.0, 0, 0, 0 },
	{ "into empty, halves", 1, 0, false, 0, 200, false, 0.5, 0, 0, 0 },
	{ "src a level up, factor 1/4", 0, 100, false, -300, 300, false, 0.25, 0, 2, 2 },
	{ "dst a level up, factor 1/4", -300, 300, false, 0, 100, false, 0.25, 2, 0, 2 },
	{ "both stores, src up", 0, 100, false, 0, 300, true, 0.5, 0, 1, 1 },
	{ "factor 3", 0, 100, true, -40, 60, true, 3.0, 0, 0, 0 },
	/* each side fits in 256 bins at level 0, the union spans 257: one level up */
	{ "257 bins at level 0", 0, 128, false, 129, 256, false, 0.5, 0, 0, 1 },
	/* src at level 1 fills 256 bins (keys 0..510 -> 0..255), dst's key 512 -> 256 makes 257: level 2 */
	{ "257 bins at src's level", 512, 512, false, 0, 510, false, 0.5, 0, 1, 2 },
	{ "257 bins at dst's level", 0, 510, false, 512, 512, false, 0.5, 1, 0, 2 },
	{ "257 bins at level 1 in the negative store", -512, -512, true, -510, 0, true, 0.125, 0, 1, 2 },
};

static void add_keys(struct dts_sketch *s, int32_t from, int32_t to, bool negative, double w)
{
	for (int32_t k = from; k <= to; k++)
		cr_assert_eq(dts_sketch_add_key(s, k, negative, w), 0);
}

Test(sketch_merge_scaled, table)
{
	for (size_t c = 0; c < sizeof(scaled_cases) / sizeof(scaled_cases[0]); c++) {
		const struct scaled_case *t = &scaled_cases[c];
		struct dts_sketch dst, src, src_before, want;

		dts_sketch_init(&dst);
		dts_sketch_init(&src);
		dts_sketch_init(&src_before);
		dts_sketch_init(&want);
		add_keys(&dst, t->dst_from, t->dst_to, t->dst_neg, 1.0);
		cr_assert_eq(dts_sketch_add_key(&dst, INT32_MIN, false, 1.0), 0);
		add_keys(&src, t->src_from, t->src_to, t->src_neg, 2.0);
		cr_assert_eq(dts_sketch_add_key(&src, INT32_MIN, false, 2.0), 0);
		cr_assert_eq(dst.level, t->dst_level, "%s: dst level %u", t->name, dst.level);
		cr_assert_eq(src.level, t->src_level, "%s: src level %u", t->name, src.level);
		add_keys(&want, t->dst_from, t->dst_to, t->dst_neg, 1.0);
		add_keys(&want, t->src_from, t->src_to, t->src_neg, 2.0 * t->factor);
		cr_assert_eq(dts_sketch_add_key(&want, INT32_MIN, false, 1.0 + 2.0 * t->factor), 0);
		cr_assert_eq(dts_sketch_copy(&src_before, &src), 0);

		cr_assert_eq(dts_sketch_merge_scaled(&dst, &src, t->factor), 0, "%s", t->name);
		cr_assert_eq(dst.level, t->level, "%s: level %u", t->name, dst.level);
		assert_same_sketch(&dst, &want, t->name);
		assert_same_sketch(&src, &src_before, t->name);
		dts_sketch_free(&dst);
		dts_sketch_free(&src);
		dts_sketch_free(&src_before);
		dts_sketch_free(&want);
	}
}

/* What quantiles2 must equal: the quantiles of an empty sketch after merge_scaled(a, 1) and merge_scaled(b, wb). */
static void quantiles_by_merging(const struct dts_sketch *a, const struct dts_sketch *b, double wb, const double *q,
				 size_t n, double *out)
{
	struct dts_sketch m;

	dts_sketch_init(&m);
	if (a)
		cr_assert_eq(dts_sketch_merge_scaled(&m, a, 1.0), 0);
	if (b)
		cr_assert_eq(dts_sketch_merge_scaled(&m, b, wb), 0);
	for (size_t i = 0; i < n; i++)
		out[i] = dts_sketch_quantile(&m, q[i]);
	dts_sketch_free(&m);
}

static void assert_same_quantiles(const struct dts_sketch *a, const struct dts_sketch *b, double wb, const char *what)
{
	static const double q[] = { 0.99, 0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, 1.0, NAN, -1.0, 2.0 };
	const size_t n = sizeof(q) / sizeof(q[0]);
	double want[sizeof(q) / sizeof(q[0])], got[sizeof(q) / sizeof(q[0])];

	quantiles_by_merging(a, b, wb, q, n, want);
	dts_sketch_quantiles2(a, b, wb, q, n, got);
	for (size_t i = 0; i < n; i++)
		cr_assert(memcmp(&want[i], &got[i], sizeof(double)) == 0 || (isnan(want[i]) && isnan(got[i])),
			  "%s, wb %g, q %g: %.17g by merging, %.17g in one walk", what, wb, q[i], want[i], got[i]);
}

/* The moving window's quantiles in one walk equal, bit for bit, those of the merged sketch: every pair of
 * distributions (levels differ, both signs, zero bins), shares of the previous minute that round in float, one side
 * missing; and every merge_scaled table case with a factor <= 1 (collapses to a common level, spans past 256 bins). */
Test(sketch_quantiles2, equal_to_merging_then_quantile, .timeout = 60)
{
	static const double shares[] = { 1.0, 0.5, 0.37, 1.0 / 3.0, 0.01, 1e-30, 0.0 };

	for (size_t d = 0; d < NDISTS; d++) {
		size_t e = (d + 4) % NDISTS;
		double *x = make_data(&dists[d], 8000 + d), *y = make_data(&dists[e], 9000 + e);
		struct dts_sketch a, b;
		char what[96];

		sketch_all(&a, x, dists[d].n);
		sketch_all(&b, y, dists[e].n);
		snprintf(what, sizeof(what), "%s + %s", dists[d].name, dists[e].name);
		for (size_t k = 0; k < sizeof(shares) / sizeof(shares[0]); k++) {
			assert_same_quantiles(&a, &b, shares[k], what);
			assert_same_quantiles(&b, &a, shares[k], what);
			assert_same_quantiles(NULL, &b, shares[k], what);
		}
		assert_same_quantiles(&a, NULL, 0.5, what);
		assert_same_quantiles(NULL, NULL, 0.5, "nothing");
		dts_sketch_free(&a);
		dts_sketch_free(&b);
		free(x);
		free(y);
	}
	for (size_t c = 0; c < sizeof(scaled_cases) / sizeof(scaled_cases[0]); c++) {
		const struct scaled_case *t = &scaled_cases[c];
		struct dts_sketch dst, src;

		if (t->factor > 1.0)
			continue;
		dts_sketch_init(&dst);
		dts_sketch_init(&src);
		add_keys(&dst, t->dst_from, t->dst_to, t->dst_neg, 1.0);
		cr_assert_eq(dts_sketch_add_key(&dst, INT32_MIN, false, 1.0), 0);
		add_keys(&src, t->src_from, t->src_to, t->src_neg, 2.0);
		cr_assert_eq(dts_sketch_add_key(&src, INT32_MIN, false, 2.0), 0);
		assert_same_quantiles(&dst, &src, t->factor, t->name);
		assert_same_quantiles(&dst, &src, 0.3, t->name);
		dts_sketch_free(&dst);
		dts_sketch_free(&src);
	}
}

/* One random sketch for the differential test below: `kind` picks the shape (see the table in the test). */
static void random_sketch(struct dts_sketch *s, int kind)
{
	const int n = kind == 0 ? 0 : kind == 1 ? 1 + (int)(rng_next() % 3) : 50 + (int)(rng_next() % 451);
	const double median = exp(6.0 * rng_normal()), sigma = 3.0 * rng_uniform();

	dts_sketch_init(s);
	for (int i = 0; i < n; i++) {
		double v = median * exp(sigma * rng_normal());
		double w = kind == 7 ? 1e-3 * rng_uniform() : rng_next() % 4 == 0 ? 4.0 * rng_uniform() : 1.0;

		if (kind == 3 || (kind == 4 && rng_next() % 3 == 0))
			v = -v;
		if (kind == 5 && rng_next() % 4 == 0)
			v = rng_next() % 2 ? 0.0 : -1e-12; /* the zero bin */
		if (kind == 6)
			v = exp(40.0 * rng_normal()); /* 1e-17 .. 1e17 and more: collapsed a few levels */
		if (kind == 8)
			v = 20.0 * exp(rng_normal()); /* a timer: lognormal, median 20 ms, sigma 1 */
		cr_assert_eq(dts_sketch_add(s, v, w), 0);
	}
}

static void assert_same_quantiles_n(const struct dts_sketch *a, const struct dts_sketch *b, double wb, const double *q,
				    size_t n, const char *what)
{
	double want[DTS_SKETCH_QUANTILES_MAX], got[DTS_SKETCH_QUANTILES_MAX];

	quantiles_by_merging(a, b, wb, q, n, want);
	dts_sketch_quantiles2(a, b, wb, q, n, got);
	for (size_t i = 0; i < n; i++)
		cr_assert(memcmp(&want[i], &got[i], sizeof(double)) == 0 || (isnan(want[i]) && isnan(got[i])),
			  "%s, wb %g, q[%zu] = %g of %zu: %.17g by merging, %.17g in one walk", what, wb, i, q[i], n,
			  want[i], got[i]);
}

/* quantiles2 equals merging then dts_sketch_quantile, bit for bit, on random pairs of every shape: either side empty,
 * a few values, only negatives, both signs, zero bins, levels collapsed differently on each side, fractional and tiny
 * weights (a total below 1 makes the ranks negative), timer minutes; shares of the previous minute 0, below the
 * smallest float, 1/60ths and random; 1 to DTS_SKETCH_QUANTILES_MAX quantiles in any order, NaN and outside [0, 1]. */
Test(sketch_quantiles2, random_pairs_equal_merging_then_quantile, .timeout = 60)
{
	static const char *const kinds[] = { "empty", "1..3 values", "positive", "negative", "signed",
					     "with zero bin", "very wide", "tiny weights", "timer" };
	static const double fixed_q[] = { 0.1, 0.9, 0.5, 0.99, 0.0, 1.0, NAN, -0.5, 1.5, 0.999, 0.01, 0.25 };
	const int nkinds = (int)(sizeof(kinds) / sizeof(kinds[0]));

	rng_seed(4242);
	for (int it = 0; it < 3000; it++) {
		const int ka = (int)(rng_next() % (uint64_t)nkinds), kb = (int)(rng_next() % (uint64_t)nkinds);
		const uint64_t r = rng_next() % 6;
		const double wb = r == 0 ? 0.0 : r == 1 ? 1e-46 : r == 2 ? (double)(rng_next() % 61) / 60.0
							 : r == 3 ? 1.0 : rng_uniform();
		const size_t n = 1 + rng_next() % DTS_SKETCH_QUANTILES_MAX;
		struct dts_sketch a, b;
		double q[DTS_SKETCH_QUANTILES_MAX];
		char what[96];

		random_sketch(&a, ka);
		random_sketch(&b, kb);
		for (size_t i = 0; i < n; i++)
			q[i] = rng_next() % 2 ? fixed_q[rng_next() % (sizeof(fixed_q) / sizeof(fixed_q[0]))]
					      : rng_uniform();
		snprintf(what, sizeof(what), "#%d: %s (level %u) + %s (level %u)", it, kinds[ka], a.level, kinds[kb],
			 b.level);
		assert_same_quantiles_n(&a, &b, wb, q, n, what);
		assert_same_quantiles_n(&b, &a, wb, q, n, what);
		assert_same_quantiles_n(NULL, &b, wb, q, n, what);
		assert_same_quantiles_n(&a, NULL, wb, q, n, what);
		assert_same_quantiles_n(&a, &a, wb, q, n, what);
		dts_sketch_free(&a);
		dts_sketch_free(&b);
	}
}

/* The walk's edges: a total weight below 1 makes the rank negative, and the merged store's first bin can be empty (b's
 * bin scaled below the smallest float), so the answer is the first non-empty bin, not the first bin; many quantiles
 * in one bin; a rank reached exactly at a block of 8 bins' end; every rank past the end (the last non-empty bin). */
Test(sketch_quantiles2, walk_edges)
{
	static const double q[] = { 0.0, 0.5, 1.0, 0.25, 0.75, 0.1, 0.9, 0.99,
				    0.999, 0.01, 0.3, 0.6, 0.7, 0.8, 0.2, 0.4 };
	struct dts_sketch a, b;

	dts_sketch_init(&a);
	dts_sketch_init(&b);
	cr_assert_eq(dts_sketch_add(&a, 100.0, 0.5), 0);
	cr_assert_eq(dts_sketch_add(&b, 1.0, 1.0), 0); /* below a's bin; x 1e-46 is 0.0f */
	for (size_t n = 1; n <= DTS_SKETCH_QUANTILES_MAX; n++) {
		double got[DTS_SKETCH_QUANTILES_MAX];

		dts_sketch_quantiles2(&a, &b, 1e-46, q, n, got);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(got[i], dts_sketch_key_value(dts_sketch_key(100.0), 0), "n %zu q %g: %.17g", n,
				     q[i], got[i]);
		assert_same_quantiles_n(&a, &b, 1e-46, q, n, "negative ranks");
	}
	dts_sketch_free(&a);
	dts_sketch_free(&b);
	/* keys 0..15 at weight 1 each, b empty: rank r (= floor(q * 15)) is passed at key r, 8 and 16 bins being block
	 * ends */
	dts_sketch_init(&a);
	add_keys(&a, 0, 15, false, 1.0);
	for (int r = 0; r <= 15; r++) {
		const double qr[2] = { (r + 0.5) / 15.0, (15 - r + 0.5) / 15.0 };
		double got[2];

		dts_sketch_quantiles2(&a, NULL, 0.0, qr, 2, got);
		cr_assert_eq(got[0], dts_sketch_key_value(r, 0), "rank %d: %.17g", r, got[0]);
		cr_assert_eq(got[1], dts_sketch_key_value(15 - r, 0), "rank %d: %.17g", 15 - r, got[1]);
		assert_same_quantiles_n(&a, NULL, 0.0, qr, 2, "ranks at block ends");
	}
	dts_sketch_free(&a);
	/* weights that sum to a little less than count in float: ranks near count - 1 run off the end, and the answer
	 * is the last non-empty bin, below b's bin scaled to 0.0f */
	dts_sketch_init(&a);
	dts_sketch_init(&b);
	cr_assert_eq(dts_sketch_add(&a, 5.0, 16777216.0), 0);
	cr_assert_eq(dts_sketch_add(&a, 5.0, 1.0), 0); /* 2^24 + 1 rounds to 2^24 in the float bin */
	cr_assert_eq(dts_sketch_add(&a, -3.0, 1.0), 0);
	cr_assert_eq(dts_sketch_add(&b, 50.0, 1.0), 0); /* within 256 bins of 5.0: level 0 */
	assert_same_quantiles_n(&a, &b, 1e-46, q, DTS_SKETCH_QUANTILES_MAX, "off the end");
	{
		const double one = 1.0;
		double got;

		dts_sketch_quantiles2(&a, &b, 1e-46, &one, 1, &got);
		cr_assert_eq(got, dts_sketch_key_value(dts_sketch_key(5.0), 0), "off the end: %.17g", got);
	}
	dts_sketch_free(&a);
	dts_sketch_free(&b);
}

/* Halving is exact in float: 0.5 x a sketch of fractional weights (collapsed, both signs, zero bin) is bin for bin the
 * sketch of the halved weights; merging a sketch into itself with factor 0.5 multiplies it by 1.5. */
Test(sketch_merge_scaled, half_halves_every_count)
{
	struct dts_sketch a, half, want, self;

	dts_sketch_init(&a);
	dts_sketch_init(&half);
	dts_sketch_init(&want);
	dts_sketch_init(&self);
	for (int i = 1; i <= 1000; i++) {
		double v = (i % 7 == 0 ? -1.0 : 1.0) * i * 0.37, w = 0.25 * (1 + i % 5);

		cr_assert_eq(dts_sketch_add(&a, v, w), 0);
		cr_assert_eq(dts_sketch_add(&want, v, 0.5 * w), 0);
		cr_assert_eq(dts_sketch_add(&self, v, 1.5 * w), 0);
	}
	cr_assert_eq(dts_sketch_add(&a, 0.0, 3.0), 0);
	cr_assert_eq(dts_sketch_add(&want, 0.0, 1.5), 0);
	cr_assert_eq(dts_sketch_add(&self, 0.0, 4.5), 0);
	cr_assert_gt(a.level, 0, "the data should need a collapse");
	cr_assert_eq(dts_sketch_merge_scaled(&half, &a, 0.5), 0);
	assert_same_sketch(&half, &want, "0.5 x");
	cr_assert_eq(dts_sketch_merge_scaled(&a, &a, 0.5), 0);
	assert_same_sketch(&a, &self, "self, 1.5 x");
	dts_sketch_free(&a);
	dts_sketch_free(&half);
	dts_sketch_free(&want);
	dts_sketch_free(&self);
}

/* factor 0 is a no-op; negative, NaN and infinite factors and scaled bins above FLT_MAX are -EINVAL; dst is unchanged
 * either way. */
Test(sketch_merge_scaled, zero_and_invalid_factors_leave_dst_unchanged)
{
	static const double bad[] = { -1.0, -1e-300, NAN, INFINITY, -INFINITY };
	struct dts_sketch dst, before, src, big;

	dts_sketch_init(&dst);
	dts_sketch_init(&before);
	dts_sketch_init(&src);
	dts_sketch_init(&big);
	add_keys(&dst, 0, 100, false, 1.0);
	add_keys(&src, -500, 500, true, 1.0); /* would collapse dst's stores if it went in */
	cr_assert_eq(dts_sketch_add(&big, 7.0, FLT_MAX / 2), 0);
	cr_assert_eq(dts_sketch_copy(&before, &dst), 0);
	cr_assert_eq(dts_sketch_merge_scaled(&dst, &src, 0.0), 0);
	assert_same_sketch(&dst, &before, "factor 0");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(dts_sketch_merge_scaled(&dst, &src, bad[i]), -EINVAL, "factor %g", bad[i]);
		assert_same_sketch(&dst, &before, "bad factor");
	}
	cr_assert_eq(dts_sketch_merge_scaled(&dst, &big, 4.0), -EINVAL);
	assert_same_sketch(&dst, &before, "bin above FLT_MAX");
	cr_assert_eq(dts_sketch_merge_scaled(&dst, &big, 2.0), 0); /* exactly FLT_MAX is still a weight */
	cr_assert_eq(dst.count, 101.0 + FLT_MAX);
	dts_sketch_free(&dst);
	dts_sketch_free(&before);
	dts_sketch_free(&src);
	dts_sketch_free(&big);
}

/* ---- collapsing ---- */

struct collapse_case {
	const char *name;
	int32_t pos_from, pos_to; /* level-0 keys added to the positive store (inclusive; from > to: none) */
	int32_t neg_from, neg_to;
	unsigned level;
	int32_t pos_lo;
	unsigned pos_nbins;
	int32_t neg_lo;
	unsigned neg_nbins;
};

static const struct collapse_case collapse_cases[] = {
	{ "256 keys fit", 0, 255, 1, 0, 0, 0, 256, 0, 0 },
	{ "257 keys collapse once", 0, 256, 1, 0, 1, 0, 129, 0, 0 },
	{ "negative keys fit", -300, -45, 1, 0, 0, -300, 256, 0, 0 },
	{ "straddling zero collapses", -10, 246, 1, 0, 1, -5, 129, 0, 0 },
	{ "0..1000 needs level 2", 0, 1000, 1, 0, 2, 0, 251, 0, 0 },
	{ "-1000..1000 needs level 3", -1000, 1000, 1, 0, 3, -125, 251, 0, 0 },
	{ "negative store alone", 1, 0, 0, 300, 1, 0, 0, 0, 151 },
	{ "negative store collapses both", 0, 200, 0, 300, 1, 0, 101, 0, 151 },
	{ "whole key range", -1046, 31499, 1, 0, 7, -8, 256, 0, 0 },
};

Test(sketch_collapse, table)
{
	for (size_t c = 0; c < sizeof(collapse_cases) / sizeof(collapse_cases[0]); c++) {
		const struct collapse_case *t = &collapse_cases[c];
		struct dts_sketch s, rev;
		double total = 0.0;

		dts_sketch_init(&s);
		dts_sketch_init(&rev);
		for (int32_t k = t->pos_from; k <= t->pos_to; k++)
			cr_assert_eq(dts_sketch_add_key(&s, k, false, 1.0), 0, "%s", t->name);
		for (int32_t k = t->neg_from; k <= t->neg_to; k++)
			cr_assert_eq(dts_sketch_add_key(&s, k, true, 1.0), 0, "%s", t->name);
		/* the same keys in the opposite order end in the same state */
		for (int32_t k = t->neg_to; k >= t->neg_from; k--)
			cr_assert_eq(dts_sketch_add_key(&rev, k, true, 1.0), 0, "%s", t->name);
		for (int32_t k = t->pos_to; k >= t->pos_from; k--)
			cr_assert_eq(dts_sketch_add_key(&rev, k, false, 1.0), 0, "%s", t->name);

		cr_assert_eq(s.level, t->level, "%s: level %u", t->name, s.level);
		cr_assert_eq(s.pos.nbins, t->pos_nbins, "%s: pos nbins %u", t->name, s.pos.nbins);
		cr_assert_eq(s.neg.nbins, t->neg_nbins, "%s: neg nbins %u", t->name, s.neg.nbins);
		if (t->pos_nbins)
			cr_assert_eq(s.pos.lo, t->pos_lo, "%s: pos lo %d", t->name, s.pos.lo);
		if (t->neg_nbins)
			cr_assert_eq(s.neg.lo, t->neg_lo, "%s: neg lo %d", t->name, s.neg.lo);
		assert_same_sketch(&s, &rev, t->name);

		/* each bin holds exactly the keys k with ceil(k / 2^level) == its key */
		for (unsigned i = 0; i < s.pos.nbins; i++) {
			int32_t K = s.pos.lo + (int32_t)i;
			int n = 0;

			for (int32_t k = t->pos_from; k <= t->pos_to; k++)
				n += ref_collapse(k, s.level) == K;
			cr_assert_eq(dts_sketch_bin(&s, false, K), (float)n, "%s: bin %d holds %g, want %d", t->name, K,
				     (double)dts_sketch_bin(&s, false, K), n);
			total += dts_sketch_bin(&s, false, K);
		}
		for (unsigned i = 0; i < s.neg.nbins; i++)
			total += dts_sketch_bin(&s, true, s.neg.lo + (int32_t)i);
		cr_assert_eq(total, s.count, "%s", t->name);
		dts_sketch_free(&s);
		dts_sketch_free(&rev);
	}
}

Test(sketch_collapse, accuracy_after_collapse_within_level_alpha)
{
	static const struct {
		double lo, hi; /* log-uniform data over [lo, hi] */
		unsigned level;
	} cases[] = {
		{ 1.0, 100.0, 0 }, { 1.0, 1e4, 1 }, { 1e-3, 1e5, 2 }, { 1e-6, 1e9, 3 }, { 1e-9, 1e30, 5 },
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		enum { N = 20000 };
		double *x = malloc(N * sizeof(double));
		struct dts_sketch s;
		char what[64];

		rng_seed(4000 + c);
		for (size_t i = 0; i < N; i++)
			x[i] = cases[c].lo * pow(cases[c].hi / cases[c].lo, rng_uniform());
		sketch_all(&s, x, N);
		snprintf(what, sizeof(what), "log-uniform %g..%g", cases[c].lo, cases[c].hi);
		cr_assert_eq(s.level, cases[c].level, "%s: level %u", what, s.level);
		cr_assert_eq(s.level, ref_level(x, N), "%s: level %u is not the smallest that fits", what, s.level);
		qsort(x, N, sizeof(double), cmp_double);
		check_quantiles(&s, x, N, what);
		dts_sketch_free(&s);
		free(x);
	}
}

Test(sketch_collapse, heap_bounded_by_cap)
{
	struct dts_sketch s;

	dts_sketch_init(&s);
	cr_assert_eq(dts_sketch_heap_bytes(&s), 0);
	cr_assert_eq(dts_sketch_add(&s, 3.0, 1.0), 0);
	cr_assert_gt(dts_sketch_heap_bytes(&s), 0);
	cr_assert_leq(dts_sketch_heap_bytes(&s), 64, "one value should cost a small array, not %zu bytes",
		      dts_sketch_heap_bytes(&s));
	rng_seed(5);
	for (int i = 0; i < 1000000; i++) {
		double v = exp(1400.0 * rng_uniform() - 700.0);

		cr_assert_eq(dts_sketch_add(&s, (rng_next() & 1) ? v : -v, 1.0), 0);
		if ((i & 0xffff) == 0)
			cr_assert_leq(dts_sketch_heap_bytes(&s), 2 * DTS_SKETCH_MAX_BINS * sizeof(float));
	}
	cr_assert_leq(s.pos.cap, DTS_SKETCH_MAX_BINS);
	cr_assert_leq(s.neg.cap, DTS_SKETCH_MAX_BINS);
	cr_assert_eq(dts_sketch_heap_bytes(&s), 2 * DTS_SKETCH_MAX_BINS * sizeof(float));
	cr_assert_eq(s.count, 1000001.0);
	dts_sketch_clear(&s); /* keeps the arrays */
	cr_assert_eq(s.count, 0.0);
	cr_assert(isnan(dts_sketch_quantile(&s, 0.5)));
	cr_assert_eq(dts_sketch_heap_bytes(&s), 2 * DTS_SKETCH_MAX_BINS * sizeof(float));
	cr_assert_eq(dts_sketch_add(&s, 7.0, 1.0), 0);
	cr_assert_eq(s.level, 0);
	cr_assert(fabs(dts_sketch_quantile(&s, 0.5) - 7.0) <= 0.07);
	dts_sketch_free(&s);
	cr_assert_eq(dts_sketch_heap_bytes(&s), 0);
	cr_assert_null(s.pos.bins);
}

/* ---- adding ---- */

Test(sketch_add, add_key_equals_add)
{
	static const double values[] = { 0.0,    -0.0,  1e-12, -1e-10, 1e-9,   1.1e-9, 1.0,    -1.0,    0.5,
					 2.0,    3.0,   -3.0,  1000.0, 1e6,    -1e6,   123.456, 1e-5,  -7e-7,
					 1e30,   -1e30, 42.0,  42.0,   0.001,  99.99,  -5e4,    1e300, -1e300 };
	static const double weights[] = { 1.0, 2.0, 0.5, 10.0, 1.0 / 0.3 };
	struct dts_sketch a, b;

	dts_sketch_init(&a);
	dts_sketch_init(&b);
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		double v = values[i], w = weights[i % 5];
		int32_t k = fabs(v) <= DTS_SKETCH_MIN_VALUE ? INT32_MIN : dts_sketch_key(v);

		cr_assert_eq(dts_sketch_add(&a, v, w), 0, "value %g", v);
		cr_assert_eq(dts_sketch_add_key(&b, k, v < 0, w), 0, "value %g", v);
	}
	assert_same_sketch(&a, &b, "add vs add_key");
	cr_assert_eq(a.zero, 1.0 + 2.0 + 0.5 + 10.0 + 1.0 / 0.3, "0, -0, 1e-12, -1e-10, 1e-9 go to the zero bin");
	dts_sketch_free(&a);
	dts_sketch_free(&b);
}

Test(sketch_add, invalid_input_rejected_and_sketch_unchanged)
{
	static const struct {
		double v, w;
	} bad[] = {
		{ NAN, 1.0 }, { 1.0, 0.0 }, { 1.0, -1.0 }, { 1.0, NAN }, { 1.0, INFINITY }, { 1.0, 1e300 }, { 0.0, 0.0 },
	};
	struct dts_sketch s, before;

	dts_sketch_init(&s);
	dts_sketch_init(&before);
	cr_assert_eq(dts_sketch_add(&s, 5.0, 1.0), 0);
	cr_assert_eq(dts_sketch_copy(&before, &s), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(dts_sketch_add(&s, bad[i].v, bad[i].w), -EINVAL, "case %zu", i);
	cr_assert_eq(dts_sketch_add_key(&s, 40000, false, 1.0), -EINVAL);
	cr_assert_eq(dts_sketch_add_key(&s, -2000, true, 1.0), -EINVAL);
	assert_same_sketch(&s, &before, "after rejected adds");
	dts_sketch_free(&s);
	dts_sketch_free(&before);
}

struct weight_case {
	const char *name;
	double v[3], w[3];
	int n;
	double q, want;
};

static const struct weight_case weight_cases[] = {
	{ "9x1 then 1x100, median", { 1, 100 }, { 9, 1 }, 2, 0.5, 1.0 },
	{ "9x1 then 1x100, q=0.9 is rank 8", { 1, 100 }, { 9, 1 }, 2, 0.9, 1.0 },
	{ "9x1 then 1x100, max", { 1, 100 }, { 9, 1 }, 2, 1.0, 100.0 },
	{ "sample rate 0.1 on 10", { 10, 20 }, { 10, 1 }, 2, 0.95, 10.0 },
	{ "rank 0 is the single 10", { 10, 20 }, { 1, 10 }, 2, 0.05, 10.0 },
	{ "sample rate 0.1 on 20", { 10, 20 }, { 1, 10 }, 2, 0.1, 20.0 },
	{ "min with weights", { 5, -3, 0 }, { 2, 2, 2 }, 3, 0.0, -3.0 },
	{ "zero bin in the middle", { 5, -3, 0 }, { 2, 2, 2 }, 3, 0.5, 0.0 },
	{ "fractional weights", { 1, 2, 3 }, { 0.25, 0.5, 0.25 }, 3, 0.0, 1.0 },
};

Test(sketch_add, sample_weights)
{
	for (size_t c = 0; c < sizeof(weight_cases) / sizeof(weight_cases[0]); c++) {
		const struct weight_case *t = &weight_cases[c];
		struct dts_sketch s;
		double got;

		dts_sketch_init(&s);
		for (int i = 0; i < t->n; i++)
			cr_assert_eq(dts_sketch_add(&s, t->v[i], t->w[i]), 0);
		got = dts_sketch_quantile(&s, t->q);
		cr_assert(fabs(got - t->want) <= DTS_SKETCH_ALPHA * fabs(t->want), "%s: got %g want %g", t->name, got,
			  t->want);
		dts_sketch_free(&s);
	}
}

Test(sketch_add, weight_n_equals_n_adds)
{
	struct dts_sketch a, b;

	dts_sketch_init(&a);
	dts_sketch_init(&b);
	rng_seed(77);
	for (int i = 0; i < 2000; i++) {
		double v = gen_lognormal() * ((i % 3) ? 1 : -1);

		cr_assert_eq(dts_sketch_add(&a, v, 10.0), 0);
		for (int r = 0; r < 10; r++)
			cr_assert_eq(dts_sketch_add(&b, v, 1.0), 0);
	}
	assert_same_sketch(&a, &b, "weight 10 vs 10 adds");
	dts_sketch_free(&a);
	dts_sketch_free(&b);
}

Test(sketch_add, quantile_edges)
{
	struct dts_sketch s;

	dts_sketch_init(&s);
	cr_assert(isnan(dts_sketch_quantile(&s, 0.5)));
	cr_assert_eq(dts_sketch_add(&s, -8.0, 1.0), 0);
	cr_assert_eq(dts_sketch_add(&s, 64.0, 1.0), 0);
	cr_assert(fabs(dts_sketch_quantile(&s, -1.0) + 8.0) <= 0.08, "q < 0 is the minimum");
	cr_assert(fabs(dts_sketch_quantile(&s, 2.0) - 64.0) <= 0.64, "q > 1 is the maximum");
	cr_assert(fabs(dts_sketch_quantile(&s, 0.5) + 8.0) <= 0.08, "rank floor(0.5 * 1) = 0");
	cr_assert(isnan(dts_sketch_quantile(&s, NAN)));
	dts_sketch_free(&s);
}

/* ---- encoding ---- */

static void build_case(struct dts_sketch *s, int which)
{
	dts_sketch_init(s);
	rng_seed(600 + (uint64_t)which);
	switch (which) {
	case 0: /* empty */
		break;
	case 1: /* zero bin only */
		cr_assert_eq(dts_sketch_add(s, 0.0, 3.0), 0);
		break;
	case 2: /* positive, level 0 */
		for (int i = 0; i < 1000; i++)
			cr_assert_eq(dts_sketch_add(s, gen_uniform_1_100(), 1.0), 0);
		break;
	case 3: /* both signs and zero, collapsed */
		for (int i = 0; i < 5000; i++)
			cr_assert_eq(dts_sketch_add(s, gen_signed(), 1.0 / 0.3), 0);
		cr_assert_eq(dts_sketch_add(s, 0.0, 1.0), 0);
		break;
	case 4: /* the extremes of the key range, fully collapsed */
		cr_assert_eq(dts_sketch_add(s, 1e-8, 1.0), 0);
		cr_assert_eq(dts_sketch_add(s, 1e300, 1.0), 0);
		cr_assert_eq(dts_sketch_add(s, -1e300, 1.0), 0);
		cr_assert_eq(dts_sketch_add(s, -1e-8, 1.0), 0);
		break;
	}
}
#define NCASES 5

Test(sketch_encode, round_trip)
{
	for (int c = 0; c < NCASES; c++) {
		struct dts_sketch s, d;
		size_t size;
		uint8_t *buf, *again;

		build_case(&s, c);
		size = dts_sketch_encoded_size(&s);
		buf = malloc(size + 16);
		again = malloc(size + 16);
		memset(buf, 0xee, size + 16);
		cr_assert_eq(dts_sketch_encode(&s, buf, size + 16), (int)size, "case %d", c);
		cr_assert_eq(buf[size], 0xee, "case %d wrote past its size", c);
		dts_sketch_init(&d);
		cr_assert_eq(dts_sketch_add(&d, 12345.0, 1.0), 0); /* decode replaces what was there */
		cr_assert_eq(dts_sketch_decode(&d, buf, size + 16), (int)size, "case %d: trailing bytes are not consumed",
			     c);
		assert_same_sketch(&d, &s, "round trip");
		for (int i = 0; i <= 100; i++) {
			double a = dts_sketch_quantile(&s, i / 100.0), b = dts_sketch_quantile(&d, i / 100.0);

			cr_assert((isnan(a) && isnan(b)) || a == b, "case %d q %d", c, i);
		}
		cr_assert_eq(dts_sketch_encode(&d, again, size), (int)size);
		cr_assert_eq(memcmp(buf, again, size), 0, "case %d: re-encoding differs", c);
		dts_sketch_free(&s);
		dts_sketch_free(&d);
		free(buf);
		free(again);
	}
}

Test(sketch_encode, sizes_and_enospc)
{
	struct dts_sketch s;
	uint8_t buf[4096];

	build_case(&s, 0);
	cr_assert_eq(dts_sketch_encoded_size(&s), 22);
	cr_assert_eq(dts_sketch_encode(&s, buf, 21), -ENOSPC);
	dts_sketch_free(&s);
	build_case(&s, 3);
	cr_assert_eq(s.pos.nbins, 252, "the case's data changed: fix the expected size");
	cr_assert_eq(s.neg.nbins, 228);
	cr_assert_eq(s.pos.lo, -102); /* zigzag 203: 2 bytes, nbins 252: 2 bytes */
	cr_assert_eq(s.neg.lo, -76); /* zigzag 151: 2 bytes, nbins 228: 2 bytes */
	/* never larger than dense stores (lo, nbins, form: 5 bytes each); this case's collapsed tails have empty bins,
	 * so at least one store is smaller sparse even with its 1/0.3 weights costing 6 bytes an entry */
	cr_assert_lt(dts_sketch_encoded_size(&s), 18 + 5 + 4 * 252 + 5 + 4 * 228, "size %zu", dts_sketch_encoded_size(&s));
	cr_assert_eq(dts_sketch_encode(&s, buf, sizeof(buf)), (int)dts_sketch_encoded_size(&s));
	for (size_t n = 0; n < dts_sketch_encoded_size(&s); n++)
		cr_assert_eq(dts_sketch_encode(&s, buf, n), -ENOSPC, "buf_len %zu", n);
	cr_assert_leq(dts_sketch_encoded_size(&s), 18 + 2 * (5 + 3 + 1 + 4 * DTS_SKETCH_MAX_BINS));
	dts_sketch_free(&s);
}

/* A timer minute with few values over a wide span is written sparse: the size a stored minute or a datagram pays. */
Test(sketch_encode, sparse_form)
{
	struct dts_sketch s, d;
	uint8_t buf[4096];
	size_t expect;
	int n;

	dts_sketch_init(&s);
	cr_assert_eq(dts_sketch_add(&s, 10.0, 3.0), 0);
	cr_assert_eq(dts_sketch_add(&s, 20.0, 1.0), 0);
	cr_assert_eq(dts_sketch_add(&s, 20.5, 0.25), 0); /* a sample-rate weight: the f32 form */
	cr_assert_gt(s.pos.nbins, 30, "a span wide enough that dense would be far larger");
	cr_assert_lt(s.pos.nbins, 128, "gaps fit one varint byte");
	/* lo (zigzag: 1 or 2 bytes), nbins, form, nnz = 3, then {gap 0, 2*3}, {gap, 2*1}, {gap 0 or more, 1 + f32} */
	expect = 18 + ((s.pos.lo >= -64 && s.pos.lo < 64 ? 1 : 2) + 1 + 1 + 1 + (1 + 1) + (1 + 1) + (1 + 5)) + 2;
	if (dts_sketch_key(20.5) == dts_sketch_key(20.0))
		expect -= 2 + 1; /* same bin: weights summed to 1.25, one entry fewer */
	n = dts_sketch_encode(&s, buf, sizeof(buf));
	cr_assert_eq(n, (int)expect, "got %d want %zu", n, expect);
	const size_t lo_len = s.pos.lo >= -64 && s.pos.lo < 64 ? 1 : 2, form_off = 18 + lo_len + 1;

	cr_assert_eq(buf[form_off], 1, "form byte: sparse");
	dts_sketch_init(&d);
	cr_assert_eq(dts_sketch_decode(&d, buf, (size_t)n), n);
	cr_assert_eq(d.pos.lo, s.pos.lo);
	cr_assert_eq(d.pos.nbins, s.pos.nbins);
	for (int32_t k = s.pos.lo; k < s.pos.lo + (int32_t)s.pos.nbins; k++)
		cr_assert_eq(dts_sketch_bin(&d, false, k), dts_sketch_bin(&s, false, k), "key %d", k);
	/* a dense form of the same bins is not canonical: rejected */
	{
		uint8_t dense[4096];
		size_t m = 18;

		memcpy(dense, buf, form_off); /* header, lo, nbins */
		m = form_off;
		dense[m++] = 0;
		for (int32_t k = s.pos.lo; k < s.pos.lo + (int32_t)s.pos.nbins; k++, m += 4) {
			const float w = dts_sketch_bin(&s, false, k);

			memcpy(dense + m, &w, 4);
		}
		dense[m++] = 0;
		dense[m++] = 0;
		cr_assert_eq(dts_sketch_decode(&d, dense, m), -EINVAL);
		dense[0] = 1; /* ... but as version 1 (no form byte) it is the old layout: decoded, same bins */
		memmove(dense + form_off, dense + form_off + 1, m - form_off - 1);
		cr_assert_eq(dts_sketch_decode(&d, dense, m - 1), (int)m - 1);
		for (int32_t k = s.pos.lo; k < s.pos.lo + (int32_t)s.pos.nbins; k++)
			cr_assert_eq(dts_sketch_bin(&d, false, k), dts_sketch_bin(&s, false, k), "key %d", k);
	}
	dts_sketch_free(&d);
	dts_sketch_free(&s);
}

Test(sketch_encode, truncated_input_rejected)
{
	for (int c = 0; c < NCASES; c++) {
		struct dts_sketch s, d, before;
		uint8_t buf[4096];
		int size;

		build_case(&s, c);
		size = dts_sketch_encode(&s, buf, sizeof(buf));
		cr_assert_gt(size, 0);
		dts_sketch_init(&d);
		dts_sketch_init(&before);
		cr_assert_eq(dts_sketch_add(&d, -3.0, 2.0), 0);
		cr_assert_eq(dts_sketch_copy(&before, &d), 0);
		for (int n = 0; n < size; n++) {
			/* a copy of exactly n bytes so ASan catches any read past the end */
			uint8_t *p = malloc((size_t)n + 1);

			memcpy(p, buf, (size_t)n);
			cr_assert_eq(dts_sketch_decode(&d, p, (size_t)n), -EINVAL, "case %d truncated to %d", c, n);
			free(p);
		}
		assert_same_sketch(&d, &before, "a failed decode leaves the sketch alone");
		dts_sketch_free(&s);
		dts_sketch_free(&d);
		dts_sketch_free(&before);
	}
}

/* An independent writer of the version-1 layout (the byte table in sketch.c), so fields can be set to bad values.
 * Positive store: lo, nbins and `present` bins of value `bin`; negative store empty. Returns the length. */
struct field_case {
	const char *name;
	uint8_t version, level;
	double zero, count;
	int32_t lo;
	uint32_t nbins, present;
	float bin;
	bool ok;
};

static size_t put_uvarint(uint8_t *p, uint32_t v)
{
	size_t n = 0;

	do {
		p[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			p[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

static size_t build_bytes(const struct field_case *t, uint8_t *buf)
{
	size_t n = 0;
	uint32_t zz = t->lo >= 0 ? 2u * (uint32_t)t->lo : 2u * (uint32_t)(-(int64_t)t->lo) - 1u;

	buf[n++] = t->version;
	buf[n++] = t->level;
	memcpy(buf + n, &t->zero, 8); /* the test host is little-endian (x86-64, arm64) */
	memcpy(buf + n + 8, &t->count, 8);
	n += 16;
	n += put_uvarint(buf + n, zz);
	n += put_uvarint(buf + n, t->nbins);
	for (uint32_t i = 0; i < t->present; i++, n += 4)
		memcpy(buf + n, &t->bin, 4);
	buf[n++] = 0; /* negative store: lo 0 */
	buf[n++] = 0; /* nbins 0 */
	return n;
}

static const struct field_case field_cases[] = {
	{ "valid", 1, 0, 0, 3, 5, 2, 2, 1.5f, true },
	{ "version 0", 0, 0, 0, 3, 5, 2, 2, 1.5f, false },
	{ "version 2", 2, 0, 0, 3, 5, 2, 2, 1.5f, false },
	{ "level 3", 1, 3, 0, 3, 5, 2, 2, 1.5f, true },
	{ "level 16, lo 1", 1, 16, 0, 3, 1, 1, 1, 1.5f, true },
	{ "level 16, lo 5 beyond the range", 1, 16, 0, 3, 5, 1, 1, 1.5f, false },
	{ "level 17", 1, 17, 0, 3, 0, 1, 1, 1.5f, false },
	{ "level 255", 1, 255, 0, 3, 0, 1, 1, 1.5f, false },
	{ "top key", 1, 0, 0, 1, 31499, 1, 1, 1.0f, true },
	{ "past the top key", 1, 0, 0, 2, 31499, 2, 2, 1.0f, false },
	{ "lo past the top key", 1, 0, 0, 1, 31500, 1, 1, 1.0f, false },
	{ "top key at level 1", 1, 1, 0, 1, 15750, 1, 1, 1.0f, true },
	{ "past the top key at level 1", 1, 1, 0, 1, 15751, 1, 1, 1.0f, false },
	{ "key of 1e-9", 1, 0, 0, 1, -1046, 1, 1, 1.0f, true },
	{ "far below the key range", 1, 0, 0, 1, -1100, 1, 1, 1.0f, false },
	{ "INT32_MIN lo", 1, 0, 0, 1, INT32_MIN, 1, 1, 1.0f, false },
	{ "INT32_MAX lo", 1, 0, 0, 1, INT32_MAX, 1, 1, 1.0f, false },
	{ "zero NaN", 1, 0, NAN, 3, 5, 2, 2, 1.5f, false },
	{ "zero inf", 1, 0, INFINITY, 3, 5, 2, 2, 1.5f, false },
	{ "zero -1", 1, 0, -1, 3, 5, 2, 2, 1.5f, false },
	{ "count NaN", 1, 0, 0, NAN, 5, 2, 2, 1.5f, false },
	{ "count inf", 1, 0, 0, INFINITY, 5, 2, 2, 1.5f, false },
	{ "count -3", 1, 0, 0, -3, 5, 2, 2, 1.5f, false },
	{ "bin NaN", 1, 0, 0, 3, 5, 2, 2, NAN, false },
	{ "bin inf", 1, 0, 0, 3, 5, 2, 2, INFINITY, false },
	{ "bin -1", 1, 0, 0, 3, 5, 2, 2, -1.0f, false },
	{ "256 bins", 1, 0, 0, 256, 0, 256, 256, 1.0f, true },
	{ "257 bins", 1, 0, 0, 257, 0, 257, 257, 1.0f, false },
	{ "fewer bins than nbins", 1, 0, 0, 3, 5, 3, 2, 1.0f, false },
	{ "empty store with lo 7", 1, 0, 0, 0, 7, 0, 0, 1.0f, false },
};

Test(sketch_encode, field_table)
{
	static uint8_t buf[2048];

	for (size_t c = 0; c < sizeof(field_cases) / sizeof(field_cases[0]); c++) {
		const struct field_case *t = &field_cases[c];
		size_t n = build_bytes(t, buf);
		struct dts_sketch s;
		int got;

		dts_sketch_init(&s);
		got = dts_sketch_decode(&s, buf, n);
		if (!t->ok) {
			cr_assert_eq(got, -EINVAL, "%s: got %d", t->name, got);
			cr_assert_eq(s.count, 0.0, "%s: a failed decode changed the sketch", t->name);
		} else {
			cr_assert_eq(got, (int)n, "%s: got %d want %zu", t->name, got, n);
			cr_assert_eq(s.level, t->level, "%s", t->name);
			cr_assert_eq(s.count, t->count, "%s", t->name);
			cr_assert_eq(s.pos.lo, t->lo, "%s", t->name);
			cr_assert_eq(s.pos.nbins, t->nbins, "%s", t->name);
			cr_assert_eq(dts_sketch_bin(&s, false, t->lo + (int32_t)t->nbins - 1), t->bin, "%s", t->name);
			cr_assert_eq(s.neg.nbins, 0, "%s", t->name);
		}
		dts_sketch_free(&s);
	}
}

/* Byte patches of the "valid" case above that break the varint rules. */
Test(sketch_encode, bad_varints)
{
	static const struct {
		const char *name;
		uint8_t bytes[6];
		size_t len;
	} cases[] = {
		{ "non-minimal lo", { 0x8a, 0x00, 0x02 }, 3 },
		{ "non-minimal nbins", { 0x0a, 0x82, 0x00 }, 3 },
		{ "lo of 6 bytes", { 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 }, 6 },
		{ "lo above 2^32", { 0xff, 0xff, 0xff, 0xff, 0x1f, 0x02 }, 6 },
	};
	uint8_t buf[64];
	size_t n = build_bytes(&field_cases[0], buf);

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint8_t patched[64];
		struct dts_sketch s;

		/* replace the two varints at offset 18 (lo = 10, nbins = 2) by the case's bytes, keep the rest */
		memcpy(patched, buf, 18);
		memcpy(patched + 18, cases[c].bytes, cases[c].len);
		memcpy(patched + 18 + cases[c].len, buf + 20, n - 20);
		dts_sketch_init(&s);
		cr_assert_eq(dts_sketch_decode(&s, patched, n - 2 + cases[c].len), -EINVAL, "%s", cases[c].name);
		dts_sketch_free(&s);
	}
}

/* Random bytes, and valid encodings with a few bytes flipped or cut: decode either rejects them or accepts something
 * that re-encodes to exactly the bytes it consumed (the format is canonical). */
Test(sketch_encode, random_garbage_never_misparses)
{
	uint8_t base[NCASES][4096], buf[4096], again[4096];
	int base_len[NCASES];
	int accepted = 0, rejected = 0;

	for (int c = 0; c < NCASES; c++) {
		struct dts_sketch s;

		build_case(&s, c);
		base_len[c] = dts_sketch_encode(&s, base[c], sizeof(base[c]));
		cr_assert_gt(base_len[c], 0);
		dts_sketch_free(&s);
	}
	rng_seed(99);
	for (int i = 0; i < 100000; i++) {
		struct dts_sketch s;
		size_t n;
		int got;

		if (i % 4 == 0) {
			n = rng_next() % 64;
			for (size_t j = 0; j < n; j++)
				buf[j] = (uint8_t)rng_next();
		} else {
			int c = (int)(rng_next() % NCASES);
			int flips = 1 + (int)(rng_next() % 3);

			n = (size_t)base_len[c];
			memcpy(buf, base[c], n);
			for (int f = 0; f < flips; f++)
				buf[rng_next() % n] ^= (uint8_t)(1u << (rng_next() % 8));
			if (i % 4 == 3)
				n = rng_next() % (n + 1);
		}
		dts_sketch_init(&s);
		got = dts_sketch_decode(&s, buf, n);
		cr_assert(got == -EINVAL || (got > 0 && (size_t)got <= n), "got %d for %zu bytes", got, n);
		if (got > 0) {
			accepted++;
			if (buf[0] == 2) { /* the current version is canonical: the same bytes come back */
				cr_assert_eq(dts_sketch_encode(&s, again, sizeof(again)), got);
				cr_assert_eq(memcmp(buf, again, (size_t)got), 0);
			} else { /* version 1 is re-encoded as version 2, which must decode to the same bins */
				struct dts_sketch r;
				int m = dts_sketch_encode(&s, again, sizeof(again));

				dts_sketch_init(&r);
				cr_assert_eq(dts_sketch_decode(&r, again, (size_t)m), m);
				cr_assert_eq(r.pos.nbins, s.pos.nbins);
				cr_assert_eq(r.neg.nbins, s.neg.nbins);
				for (int32_t k = s.pos.lo; k < s.pos.lo + (int32_t)s.pos.nbins; k++)
					cr_assert(dts_sketch_bin(&r, false, k) == dts_sketch_bin(&s, false, k));
				dts_sketch_free(&r);
			}
			cr_assert(s.pos.nbins <= DTS_SKETCH_MAX_BINS && s.neg.nbins <= DTS_SKETCH_MAX_BINS);
			cr_assert(!isinf(dts_sketch_quantile(&s, 1.0)));
		} else {
			rejected++;
		}
		dts_sketch_free(&s);
	}
	cr_assert_gt(accepted, 1000, "bit flips in bins should mostly decode (%d)", accepted);
	cr_assert_gt(rejected, 1000, "bit flips in the header should mostly fail (%d)", rejected);
}

/* ---- dts_agg ---- */

struct agg_case {
	const char *name;
	double a[3];
	int na;
	double b[3];
	int nb;
	double sum, count, min, max, fst, lst;
};

static const struct agg_case agg_cases[] = {
	{ "both empty", { 0 }, 0, { 0 }, 0, 0, 0, INFINITY, -INFINITY, 0, 0 },
	{ "later empty", { 3, 1, 2 }, 3, { 0 }, 0, 6, 3, 1, 3, 3, 2 },
	{ "earlier empty", { 0 }, 0, { 5, 9 }, 2, 14, 2, 5, 9, 5, 9 },
	{ "fst from earlier, lst from later", { 4, -1 }, 2, { 7, 2 }, 2, 12, 4, -1, 7, 4, 2 },
	{ "single values", { 10 }, 1, { -10 }, 1, 0, 2, -10, 10, 10, -10 },
};

Test(agg, merge_order_semantics)
{
	for (size_t c = 0; c < sizeof(agg_cases) / sizeof(agg_cases[0]); c++) {
		const struct agg_case *t = &agg_cases[c];
		struct dts_agg a, b;

		dts_agg_init(&a);
		dts_agg_init(&b);
		for (int i = 0; i < t->na; i++)
			dts_agg_add(&a, t->a[i], 1.0);
		for (int i = 0; i < t->nb; i++)
			dts_agg_add(&b, t->b[i], 1.0);
		dts_agg_merge(&a, &b);
		cr_assert_eq(a.sum, t->sum, "%s: sum %g", t->name, a.sum);
		cr_assert_eq(a.count, t->count, "%s: count %g", t->name, a.count);
		cr_assert_eq(a.min, t->min, "%s: min %g", t->name, a.min);
		cr_assert_eq(a.max, t->max, "%s: max %g", t->name, a.max);
		cr_assert_eq(a.fst, t->fst, "%s: fst %g", t->name, a.fst);
		cr_assert_eq(a.lst, t->lst, "%s: lst %g", t->name, a.lst);
	}
}

Test(agg, weights_scale_sum_and_count)
{
	struct dts_agg a;

	dts_agg_init(&a);
	dts_agg_add(&a, 2.0, 10.0);
	dts_agg_add(&a, 4.0, 0.5);
	cr_assert_eq(a.sum, 22.0);
	cr_assert_eq(a.count, 10.5);
	cr_assert_eq(a.fst, 2.0);
	cr_assert_eq(a.lst, 4.0);
}

/* ---- the two forms of a store: sparse while few bins are used, dense after ---- */

/* A sketch whose stores are dense whatever they will hold: full-size arrays, kept by dts_sketch_clear. */
static void dense_sketch(struct dts_sketch *s)
{
	dts_sketch_init(s);
	for (int32_t k = 0; k < DTS_SKETCH_MAX_BINS; k++) {
		cr_assert_eq(dts_sketch_add_key(s, k, false, 1.0), 0);
		cr_assert_eq(dts_sketch_add_key(s, k, true, 1.0), 0);
	}
	dts_sketch_clear(s);
	cr_assert(!s->pos.sparse && !s->neg.sparse && s->pos.cap == DTS_SKETCH_MAX_BINS);
}

/* The same bins (assert_same_sketch), the same encoding byte for byte, and the same quantiles bit for bit. */
static void assert_same_everything(const struct dts_sketch *a, const struct dts_sketch *b, const char *what)
{
	size_t na = dts_sketch_encoded_size(a), nb = dts_sketch_encoded_size(b);
	uint8_t *ea = malloc(na), *eb = malloc(nb);

	assert_same_sketch(a, b, what);
	cr_assert_eq(na, nb, "%s: encoded sizes %zu != %zu", what, na, nb);
	cr_assert_eq(dts_sketch_encode(a, ea, na), (int)na);
	cr_assert_eq(dts_sketch_encode(b, eb, nb), (int)nb);
	cr_assert_eq(memcmp(ea, eb, na), 0, "%s: encodings differ", what);
	for (int i = 0; i <= 20; i++) {
		double qa = dts_sketch_quantile(a, i / 20.0), qb = dts_sketch_quantile(b, i / 20.0);

		cr_assert(memcmp(&qa, &qb, sizeof(qa)) == 0 || (isnan(qa) && isnan(qb)), "%s: q %d: %.17g != %.17g", what,
			  i, qa, qb);
	}
	free(ea);
	free(eb);
}

/* What a store costs: a timer's minute of a dozen values, and a constant, are a few dozen bytes. */
Test(sketch_forms, a_timer_minute_is_sparse_and_small)
{
	struct dts_sketch s, d;

	rng_seed(11);
	dts_sketch_init(&s);
	dense_sketch(&d);
	for (int i = 0; i < 12; i++) {
		double v = 20.0 * exp(rng_normal());

		cr_assert_eq(dts_sketch_add(&s, v, 1.0), 0);
		cr_assert_eq(dts_sketch_add(&d, v, 1.0), 0);
	}
	cr_assert(s.pos.sparse);
	cr_assert_gt(s.pos.nbins, 64, "a span a dense store would spend %u floats on", s.pos.nbins);
	cr_assert_leq(dts_sketch_heap_bytes(&s), 16 * 6, "12 entries of 6 bytes in room for 16, not %zu bytes",
		      dts_sketch_heap_bytes(&s));
	cr_assert_eq(s.neg.cap, 0, "no negative value: no allocation");
	assert_same_everything(&s, &d, "12 lognormal values");
	dts_sketch_free(&s);
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(dts_sketch_add(&s, 42.0, 1.0), 0);
	cr_assert_leq(dts_sketch_heap_bytes(&s), 4 * 6, "a constant is one entry");
	dts_sketch_free(&s);
	dts_sketch_free(&d);
}

/* Past DTS_SKETCH_SPARSE_MAX entries, or when a dense array is no larger, a store is dense. */
Test(sketch_forms, many_bins_or_a_narrow_span_are_dense)
{
	struct dts_sketch s;

	dts_sketch_init(&s);
	for (int32_t k = 0; k < DTS_SKETCH_SPARSE_MAX; k++)
		cr_assert_eq(dts_sketch_add_key(&s, 1000 + 3 * k, false, 1.0), 0);
	cr_assert(s.pos.sparse, "%d entries 3 keys apart", DTS_SKETCH_SPARSE_MAX);
	cr_assert_eq(s.pos.nnz, DTS_SKETCH_SPARSE_MAX);
	cr_assert_eq(dts_sketch_add_key(&s, 1001, false, 1.0), 0);
	cr_assert(!s.pos.sparse, "one more entry than the sparse form holds");
	cr_assert_eq(dts_sketch_bin(&s, false, 1001), 1.0f);
	cr_assert_eq(dts_sketch_bin(&s, false, 1000 + 3 * 63), 1.0f);
	cr_assert_eq(dts_sketch_bin(&s, false, 1002), 0.0f);
	dts_sketch_free(&s);

	/* 6 adjacent keys: 6 entries of 6 bytes (room for 8: 48 B) against 8 floats (32 B) */
	for (int32_t k = 0; k < 6; k++)
		cr_assert_eq(dts_sketch_add_key(&s, 500 + k, false, 2.0), 0);
	cr_assert(!s.pos.sparse);
	cr_assert_eq(dts_sketch_heap_bytes(&s), 8 * sizeof(float));
	dts_sketch_free(&s);
}

/*
 * Every operation gives the same result whatever the form of the stores it reads and writes, bit for bit: adds
 * (through the sparse form's limit and collapses), merges both ways between the forms, scaled merges whose weights
 * underflow, the one-walk quantiles, copies and decodes into either form.
 */
Test(sketch_forms, the_form_never_changes_a_result, .timeout = 60)
{
	static const int sizes[] = { 0, 1, 5, 30, 63, 64, 65, 100, 400 };
	static const double factors[] = { 1.0, 0.37, 1e-40, 3.0 };

	rng_seed(77);
	for (int r = 0; r < 240; r++) {
		const int n = sizes[r % 9], kind = r / 9 % 9;
		const double median = exp(4.0 * rng_normal()), sigma = 2.0 * rng_uniform(), f = factors[r % 4];
		struct dts_sketch sp, dn, other, m1, m2, c1, c2;
		double q[4] = { 0.1, 0.5, 0.9, 0.99 }, o1[4], o2[4];
		char what[64];
		uint8_t *buf;
		size_t size;

		dts_sketch_init(&sp);
		dense_sketch(&dn);
		for (int i = 0; i < n; i++) {
			double v = kind == 6 ? exp(40.0 * rng_normal()) : median * exp(sigma * rng_normal());
			double w = kind == 7 ? 1e-3 * rng_uniform() : rng_next() % 4 == 0 ? 4.0 * rng_uniform() : 1.0;

			if (kind == 3 || (kind == 4 && rng_next() % 3 == 0))
				v = -v;
			if (kind == 5 && rng_next() % 4 == 0)
				v = 0.0;
			if (kind == 8)
				v = round(v); /* few distinct keys, many values each */
			cr_assert_eq(dts_sketch_add(&sp, v, w), 0);
			cr_assert_eq(dts_sketch_add(&dn, v, w), 0);
		}
		snprintf(what, sizeof(what), "round %d (n %d, kind %d)", r, n, kind);
		assert_same_everything(&sp, &dn, what);
		random_sketch(&other, (int)(rng_next() % 9));

		/* merges: into each form, and each form into a sparse and a dense destination */
		dts_sketch_init(&m1);
		dense_sketch(&m2);
		cr_assert_eq(dts_sketch_merge(&m1, &other), 0);
		cr_assert_eq(dts_sketch_merge(&m2, &other), 0);
		cr_assert_eq(dts_sketch_merge_scaled(&m1, &sp, f), 0);
		cr_assert_eq(dts_sketch_merge_scaled(&m2, &dn, f), 0);
		assert_same_everything(&m1, &m2, what);
		cr_assert_eq(dts_sketch_merge_scaled(&sp, &other, f), 0);
		cr_assert_eq(dts_sketch_merge_scaled(&dn, &other, f), 0);
		assert_same_everything(&sp, &dn, what);
		cr_assert_eq(dts_sketch_merge(&sp, &sp), 0); /* itself */
		cr_assert_eq(dts_sketch_merge(&dn, &dn), 0);
		assert_same_everything(&sp, &dn, what);

		/* the one-walk quantiles of a pair */
		dts_sketch_quantiles2(&sp, &other, 0.25, q, 4, o1);
		dts_sketch_quantiles2(&dn, &other, 0.25, q, 4, o2);
		cr_assert_eq(memcmp(o1, o2, sizeof(o1)), 0, "%s: quantiles2", what);

		/* copies and decodes into a fresh sketch and into dense stores */
		dts_sketch_init(&c1);
		dense_sketch(&c2);
		cr_assert_eq(dts_sketch_copy(&c1, &dn), 0);
		cr_assert_eq(dts_sketch_copy(&c2, &sp), 0);
		assert_same_everything(&c1, &c2, what);
		size = dts_sketch_encoded_size(&sp);
		buf = malloc(size);
		cr_assert_eq(dts_sketch_encode(&sp, buf, size), (int)size);
		cr_assert_eq(dts_sketch_decode(&c1, buf, size), (int)size);
		dts_sketch_free(&c2);
		dense_sketch(&c2);
		cr_assert_eq(dts_sketch_decode(&c2, buf, size), (int)size);
		assert_same_everything(&c1, &c2, what);
		assert_same_everything(&c1, &sp, what);
		free(buf);
		dts_sketch_free(&sp);
		dts_sketch_free(&dn);
		dts_sketch_free(&other);
		dts_sketch_free(&m1);
		dts_sketch_free(&m2);
		dts_sketch_free(&c1);
		dts_sketch_free(&c2);
	}
}

/*
 * A dense bin of -0.0 is not canonical in version 2 (no encoder writes it: empty bins are +0.0), and a version-1 one
 * is an empty bin, in whichever form the store decodes into. (A sparse store cannot hold -0.0: kept, it would have
 * made the decoded sketch, and so its encoding, depend on the destination's form.)
 */
Test(sketch_forms, negative_zero_bins_in_dense_encodings)
{
	uint8_t buf[64], again[64];
	struct dts_sketch a, b;
	size_t n = 0;
	int m;

	buf[n++] = 2; /* version */
	buf[n++] = 0; /* level */
	memset(buf + n, 0, 8); /* zero: 0.0 */
	n += 8;
	{
		const double count = 4.5;

		memcpy(buf + n, &count, 8); /* little-endian f64, as dts_wrf64 writes it on this (x86) machine */
		n += 8;
	}
	buf[n++] = 0xc8; /* lo = 100, zigzag 200 */
	buf[n++] = 0x01;
	buf[n++] = 4; /* nbins */
	buf[n++] = 0; /* dense: 16 bytes, sparse with these weights 19 */
	{
		const float w[4] = { 1.5f, -0.0f, 1.5f, 1.5f };

		memcpy(buf + n, w, sizeof(w));
		n += sizeof(w);
	}
	buf[n++] = 0; /* empty negative store */
	buf[n++] = 0;
	dts_sketch_init(&a);
	dense_sketch(&b);
	cr_assert_eq(dts_sketch_decode(&a, buf, n), -EINVAL, "version 2 with a -0.0 bin");
	cr_assert_eq(dts_sketch_decode(&b, buf, n), -EINVAL);
	/* the same as version 1: no form byte */
	buf[0] = 1;
	memmove(buf + 21, buf + 22, n - 22);
	n--;
	cr_assert_eq(dts_sketch_decode(&a, buf, n), (int)n);
	cr_assert_eq(dts_sketch_decode(&b, buf, n), (int)n);
	cr_assert(a.pos.sparse && !b.pos.sparse, "one of each form");
	for (int32_t k = 100; k < 104; k++) {
		const float wa = dts_sketch_bin(&a, false, k), wb = dts_sketch_bin(&b, false, k);

		cr_assert_eq(memcmp(&wa, &wb, sizeof(wa)), 0, "key %d: %g against %g, bit for bit", k, (double)wa,
			     (double)wb);
	}
	cr_assert(!signbit(dts_sketch_bin(&b, false, 101)));
	assert_same_everything(&a, &b, "version 1 with a -0.0 bin");
	m = dts_sketch_encode(&b, again, sizeof(again));
	cr_assert_gt(m, 0);
	cr_assert_eq(dts_sketch_decode(&a, again, (size_t)m), m, "re-encoded as version 2: canonical");
	dts_sketch_free(&a);
	dts_sketch_free(&b);
}
