/*
 * test_set.c - distinct counting (dts_set_*): exact below DTS_SET_EXACT_MAX, HyperLogLog above.
 *
 * Members are hashed the way the decoders hash them (dts_hash64 of the member text), so the HLL error bounds are
 * checked on the real hash, not on ideal random bits.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dts/hash.h"
#include "dts/set.h"

#define HLL_M (1u << DTS_HLL_P)
/* the HLL estimate's standard error, and 3 of them */
#define HLL_SE (1.04 / sqrt((double)HLL_M))
#define HLL_3SE (3.0 * HLL_SE)

static uint64_t member(uint64_t i)
{
	char text[32];
	int n = snprintf(text, sizeof(text), "user-%llu", (unsigned long long)i);

	return dts_hash64(text, (size_t)n, DTS_HASH_SEED);
}

static void add_range(struct dts_set *s, uint64_t from, uint64_t to)
{
	for (uint64_t i = from; i < to; i++)
		cr_assert_eq(dts_set_add(s, member(i)), 0);
}

/* ---- exact ---- */

Test(set_exact, counts_exactly_up_to_the_limit)
{
	static const unsigned sizes[] = { 0, 1, 2, 3, 17, DTS_SET_EXACT_MAX - 1, DTS_SET_EXACT_MAX };

	for (size_t c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
		struct dts_set s;

		dts_set_init(&s);
		add_range(&s, 0, sizes[c]);
		add_range(&s, 0, sizes[c]); /* duplicates do not count */
		for (uint64_t i = sizes[c]; i-- > 0;) /* nor in reverse order */
			cr_assert_eq(dts_set_add(&s, member(i)), 0);
		cr_assert_eq(dts_set_cardinality(&s), (double)sizes[c], "size %u: %g", sizes[c],
			     dts_set_cardinality(&s));
		cr_assert_null(s.hll, "size %u should still be exact", sizes[c]);
		for (unsigned i = 1; i < s.n; i++)
			cr_assert_lt(s.exact[i - 1], s.exact[i], "sorted and distinct");
		cr_assert_leq(dts_set_heap_bytes(&s), DTS_SET_EXACT_MAX * sizeof(uint64_t));
		dts_set_free(&s);
		cr_assert_eq(dts_set_heap_bytes(&s), 0);
	}
}

Test(set_exact, converts_to_hll_past_the_limit)
{
	struct dts_set s;
	double est;

	dts_set_init(&s);
	add_range(&s, 0, DTS_SET_EXACT_MAX + 1);
	cr_assert_not_null(s.hll);
	cr_assert_null(s.exact);
	cr_assert_eq(s.n, 0);
	est = dts_set_cardinality(&s);
	cr_assert(fabs(est - (DTS_SET_EXACT_MAX + 1)) <= 2.0, "65 members estimated %g", est);
	cr_assert_eq(dts_set_heap_bytes(&s), HLL_M);
	/* nothing of the exact members was lost: re-adding them changes no register */
	{
		uint8_t before[HLL_M];

		memcpy(before, s.hll, HLL_M);
		add_range(&s, 0, DTS_SET_EXACT_MAX + 1);
		cr_assert_eq(memcmp(before, s.hll, HLL_M), 0);
	}
	dts_set_free(&s);
}

/* ---- HyperLogLog ---- */

/* Member i of the independent member list `list`: the hash of "list<list>-user-<i>" (formatted by hand because
 * snprintf would take most of the time of the test below). */
static uint64_t list_member(unsigned list, uint64_t i)
{
	char text[48], digits[24];
	size_t n = 0, d = 0;

	memcpy(text, "list", 4);
	n = 4;
	do
		digits[d++] = (char)('0' + list % 10);
	while ((list /= 10) != 0);
	while (d > 0)
		text[n++] = digits[--d];
	memcpy(text + n, "-user-", 6);
	n += 6;
	do
		digits[d++] = (char)('0' + i % 10);
	while ((i /= 10) != 0);
	while (d > 0)
		text[n++] = digits[--d];
	return dts_hash64(text, n, DTS_HASH_SEED);
}

/*
 * The estimator's error statistics over HLL_LISTS independent member lists, each grown to 1,000,000 members and
 * estimated on the way: the RMS relative error must be within 2 standard errors (3.25% at P = 12) and the worst within
 * 4 (6.5%) at every size. 500 is just above the exact limit, 10,000 is where the standard estimator with linear
 * counting was worst: on these lists RMS 3.20% and worst 4.45% there, inside those bounds, so n = 10,000 also has to
 * meet 1.5 standard errors (2.44%; Ertl's estimator gives 1.56%) to catch a return of that bias. About 1 s.
 */
#define HLL_LISTS 20

Test(set_hll, error_rms_and_worst_over_member_lists, .timeout = 60)
{
	static const uint64_t sizes[] = { 500, 2000, 10000, 50000, 200000, 1000000 };
	enum { NSIZES = sizeof(sizes) / sizeof(sizes[0]) };
	double sq[NSIZES] = { 0 }, worst[NSIZES] = { 0 };

	for (unsigned l = 0; l < HLL_LISTS; l++) {
		struct dts_set s;
		size_t next = 0;

		dts_set_init(&s);
		for (uint64_t i = 0; next < NSIZES; i++) {
			cr_assert_eq(dts_set_add(&s, list_member(l, i)), 0);
			if (i + 1 == sizes[next]) {
				double err = (dts_set_cardinality(&s) - (double)sizes[next]) / (double)sizes[next];

				cr_assert_not_null(s.hll);
				sq[next] += err * err;
				worst[next] = fabs(err) > worst[next] ? fabs(err) : worst[next];
				next++;
			}
		}
		dts_set_free(&s);
	}
	for (size_t k = 0; k < NSIZES; k++) {
		double rms = sqrt(sq[k] / HLL_LISTS);

		cr_log_info("n=%llu: RMS %.2f%%, worst %.2f%% over %d lists", (unsigned long long)sizes[k], 100 * rms,
			    100 * worst[k], HLL_LISTS);
		cr_assert(rms <= 2.0 * HLL_SE, "n=%llu: RMS error %.2f%% > %.2f%%", (unsigned long long)sizes[k], 100 * rms,
			  100 * 2.0 * HLL_SE);
		cr_assert(worst[k] <= 4.0 * HLL_SE, "n=%llu: worst error %.2f%% > %.2f%%", (unsigned long long)sizes[k],
			  100 * worst[k], 100 * 4.0 * HLL_SE);
		if (sizes[k] == 10000)
			cr_assert(rms <= 1.5 * HLL_SE, "n=10000: RMS error %.2f%% > %.2f%%: biased near 2.5 m", 100 * rms,
				  100 * 1.5 * HLL_SE);
	}
}

/* The estimator's edges: no register set estimates 0, one register set about 1, all registers saturated (only from
 * a crafted encoding) stays finite. */
Test(set_hll, estimator_edges)
{
	struct dts_set s;
	double est;

	dts_set_init(&s);
	add_range(&s, 0, DTS_SET_EXACT_MAX + 1);
	cr_assert_not_null(s.hll);
	memset(s.hll, 0, HLL_M);
	cr_assert_eq(dts_set_cardinality(&s), 0.0);
	s.hll[7] = 1;
	est = dts_set_cardinality(&s);
	cr_assert(est > 0.9 && est < 1.1, "one member estimated %g", est);
	memset(s.hll, 64 - DTS_HLL_P + 1, HLL_M);
	est = dts_set_cardinality(&s);
	cr_assert(isfinite(est) && est > 1e18, "saturated registers estimated %g", est);
	dts_set_free(&s);
}

/* The register index comes from the top P bits and rho from the leading zeros of the rest. */
Test(set_hll, register_layout)
{
	static const struct {
		uint64_t hash;
		uint32_t reg;
		uint8_t rho;
	} cases[] = {
		{ 0xffffffffffffffffULL, HLL_M - 1, 1 },
		{ 0x0008000000000000ULL, 0, 1 }, /* bit 51 set: first bit after a 12-bit index */
		{ 0x0004000000000000ULL, 0, 2 },
		{ 0x0000000000000001ULL, 0, 64 - DTS_HLL_P },
		{ 0x0010000000000000ULL, 1, 64 - DTS_HLL_P + 1 }, /* rest all zero: the maximum */
		{ 0x8000000000000000ULL, HLL_M / 2, 64 - DTS_HLL_P + 1 },
	};
	struct dts_set s;

	cr_assert_eq(DTS_HLL_P, 12, "the table assumes P = 12");
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		dts_set_init(&s);
		add_range(&s, 1000000, 1000000 + DTS_SET_EXACT_MAX + 1); /* make it an HLL */
		memset(s.hll, 0, HLL_M);
		cr_assert_eq(dts_set_add(&s, cases[c].hash), 0);
		for (uint32_t j = 0; j < HLL_M; j++)
			cr_assert_eq(s.hll[j], j == cases[c].reg ? cases[c].rho : 0, "case %zu register %u = %u", c, j,
				     s.hll[j]);
		dts_set_free(&s);
	}
}

/* ---- merge ---- */

struct merge_case {
	const char *name;
	uint64_t a_from, a_to, b_from, b_to; /* member ranges [from, to) */
	bool hll; /* the union must be an HLL */
};

static const struct merge_case merge_cases[] = {
	{ "empty into empty", 0, 0, 0, 0, false },
	{ "exact into empty", 0, 0, 0, 30, false },
	{ "empty into exact", 0, 30, 0, 0, false },
	{ "overlapping exact, union fits", 0, 40, 20, 60, false },
	{ "identical exact", 0, 64, 0, 64, false },
	{ "overlapping exact, union too big", 0, 40, 30, 70, true },
	{ "exact into hll", 0, 5000, 4990, 5030, true },
	{ "hll into exact", 4990, 5030, 0, 5000, true },
	{ "overlapping hlls", 0, 60000, 40000, 100000, true },
	{ "disjoint hlls", 0, 300000, 300000, 600000, true },
};

Test(set_merge, table, .timeout = 60)
{
	for (size_t c = 0; c < sizeof(merge_cases) / sizeof(merge_cases[0]); c++) {
		const struct merge_case *t = &merge_cases[c];
		uint64_t lo = t->a_from < t->b_from ? t->a_from : t->b_from;
		uint64_t hi = t->a_to > t->b_to ? t->a_to : t->b_to;
		struct dts_set a, b, u;
		double n = (double)(hi - lo), est, b_card;

		if (t->a_to == t->a_from)
			lo = t->b_from, hi = t->b_to, n = (double)(hi - lo);
		if (t->b_to == t->b_from)
			lo = t->a_from, hi = t->a_to, n = (double)(hi - lo);
		dts_set_init(&a);
		dts_set_init(&b);
		dts_set_init(&u);
		add_range(&a, t->a_from, t->a_to);
		add_range(&b, t->b_from, t->b_to);
		add_range(&u, lo, hi); /* the union added directly (every case's ranges overlap or touch) */
		b_card = dts_set_cardinality(&b);
		cr_assert_eq(dts_set_merge(&a, &b), 0, "%s", t->name);
		cr_assert_eq(a.hll != NULL, t->hll, "%s: representation", t->name);
		est = dts_set_cardinality(&a);
		if (t->hll) {
			/* register-wise max is exact: the merge equals the HLL of the union */
			cr_assert_not_null(u.hll);
			cr_assert_eq(memcmp(a.hll, u.hll, HLL_M), 0, "%s: registers differ from the union's", t->name);
			cr_assert(fabs(est - n) <= HLL_3SE * n, "%s: %g for %g", t->name, est, n);
		} else {
			cr_assert_eq(est, n, "%s: %g for %g", t->name, est, n);
			cr_assert_eq(a.n, u.n);
			if (u.n)
				cr_assert_eq(memcmp(a.exact, u.exact, u.n * sizeof(uint64_t)), 0, "%s", t->name);
		}
		cr_assert_eq(dts_set_cardinality(&b), b_card, "%s: src changed", t->name);
		dts_set_free(&a);
		dts_set_free(&b);
		dts_set_free(&u);
	}
}

Test(set_merge, self_merge_is_a_no_op)
{
	struct dts_set s;

	dts_set_init(&s);
	add_range(&s, 0, 10);
	cr_assert_eq(dts_set_merge(&s, &s), 0);
	cr_assert_eq(dts_set_cardinality(&s), 10.0);
	dts_set_free(&s);
}

/* ---- encoding ---- */

struct enc_case {
	const char *name;
	uint64_t members;
	uint8_t kind; /* byte 1 of the encoding */
	size_t size; /* 0: do not check */
};

static const struct enc_case enc_cases[] = {
	{ "empty", 0, 0, 3 },
	{ "one", 1, 0, 11 },
	{ "full exact", DTS_SET_EXACT_MAX, 0, 3 + 8 * DTS_SET_EXACT_MAX },
	{ "small hll is sparse", 100, 2, 0 },
	{ "1000 members still sparse", 1000, 2, 0 },
	{ "large hll is dense", 100000, 1, 3 + HLL_M },
};

static void build_set(struct dts_set *s, uint64_t n)
{
	dts_set_init(s);
	add_range(s, 0, n);
}

Test(set_encode, round_trip)
{
	for (size_t c = 0; c < sizeof(enc_cases) / sizeof(enc_cases[0]); c++) {
		const struct enc_case *t = &enc_cases[c];
		struct dts_set s, d;
		size_t size;
		uint8_t *buf, *again;

		build_set(&s, t->members);
		size = dts_set_encoded_size(&s);
		if (t->size)
			cr_assert_eq(size, t->size, "%s: size %zu", t->name, size);
		buf = malloc(size + 8);
		again = malloc(size + 8);
		memset(buf, 0xee, size + 8);
		cr_assert_eq(dts_set_encode(&s, buf, size), (int)size, "%s", t->name);
		cr_assert_eq(buf[size], 0xee);
		cr_assert_eq(buf[0], 1, "%s: version", t->name);
		cr_assert_eq(buf[1], t->kind, "%s: kind %u", t->name, buf[1]);
		if (size > 0)
			cr_assert_eq(dts_set_encode(&s, buf, size - 1), -ENOSPC);
		dts_set_init(&d);
		add_range(&d, 500, 600); /* decode replaces what was there */
		cr_assert_eq(dts_set_decode(&d, buf, size + 8), (int)size, "%s", t->name);
		cr_assert_eq(dts_set_cardinality(&d), dts_set_cardinality(&s), "%s", t->name);
		cr_assert_eq(d.hll != NULL, s.hll != NULL);
		if (s.hll)
			cr_assert_eq(memcmp(d.hll, s.hll, HLL_M), 0);
		else if (s.n)
			cr_assert_eq(memcmp(d.exact, s.exact, s.n * sizeof(uint64_t)), 0);
		cr_assert_eq(dts_set_encode(&d, again, size), (int)size);
		cr_assert_eq(memcmp(buf, again, size), 0, "%s: re-encoding differs", t->name);
		/* a decoded exact set keeps working: adding one more member still counts */
		if (!d.hll && d.n < DTS_SET_EXACT_MAX) {
			cr_assert_eq(dts_set_add(&d, member(999999)), 0);
			cr_assert_eq(dts_set_cardinality(&d), (double)s.n + 1);
		}
		/* every truncation fails and leaves the set alone */
		for (size_t n = 0; n < size; n++) {
			uint8_t *p = malloc(n + 1);
			double before = dts_set_cardinality(&d);

			memcpy(p, buf, n);
			cr_assert_eq(dts_set_decode(&d, p, n), -EINVAL, "%s truncated to %zu", t->name, n);
			cr_assert_eq(dts_set_cardinality(&d), before);
			free(p);
		}
		dts_set_free(&s);
		dts_set_free(&d);
		free(buf);
		free(again);
	}
}

struct bad_case {
	const char *name;
	uint8_t bytes[32];
	size_t len;
};

static const struct bad_case bad_cases[] = {
	{ "nothing", { 0 }, 0 },
	{ "version 0", { 0, 0, 0 }, 3 },
	{ "version 2", { 2, 0, 0 }, 3 },
	{ "unknown kind", { 1, 3, 0 }, 3 },
	{ "exact n beyond the limit", { 1, 0, DTS_SET_EXACT_MAX + 1 }, 3 },
	{ "exact members missing", { 1, 0, 1, 1, 2, 3 }, 6 },
	{ "exact not ascending", { 1, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 }, 19 },
	{ "exact duplicate", { 1, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 }, 19 },
	{ "hll wrong precision", { 1, 2, DTS_HLL_P + 1, 1, 0, 0, 0, 1 }, 8 },
	{ "sparse register zero", { 1, 2, DTS_HLL_P, 1, 0, 5, 0, 0 }, 8 },
	{ "sparse register too big", { 1, 2, DTS_HLL_P, 1, 0, 5, 0, 64 - DTS_HLL_P + 2 }, 8 },
	{ "sparse index out of range", { 1, 2, DTS_HLL_P, 1, 0, 0x00, 0x10, 1 }, 8 },
	{ "sparse indices not ascending", { 1, 2, DTS_HLL_P, 2, 0, 7, 0, 1, 7, 0, 1 }, 11 },
	{ "sparse count beyond input", { 1, 2, DTS_HLL_P, 3, 0, 7, 0, 1, 8, 0, 1 }, 11 },
	{ "sparse too big (dense is smaller)", { 1, 2, DTS_HLL_P, 0xff, 0x0f }, 5 },
	{ "dense truncated", { 1, 1, DTS_HLL_P, 0, 0, 0 }, 6 },
};

Test(set_encode, garbage_table)
{
	for (size_t c = 0; c < sizeof(bad_cases) / sizeof(bad_cases[0]); c++) {
		struct dts_set s;

		dts_set_init(&s);
		add_range(&s, 0, 3);
		cr_assert_eq(dts_set_decode(&s, bad_cases[c].bytes, bad_cases[c].len), -EINVAL, "%s", bad_cases[c].name);
		cr_assert_eq(dts_set_cardinality(&s), 3.0, "%s changed the set", bad_cases[c].name);
		dts_set_free(&s);
	}
}

/* Valid in every way except that it is sparse-sized data written densely: the decoder insists on the encoder's
 * choice so that decode then encode is the identity on bytes. */
Test(set_encode, dense_with_few_registers_rejected)
{
	uint8_t buf[3 + HLL_M] = { 1, 1, DTS_HLL_P };
	struct dts_set s;

	buf[3 + 17] = 4;
	dts_set_init(&s);
	cr_assert_eq(dts_set_decode(&s, buf, sizeof(buf)), -EINVAL);
	memset(buf + 3, 1, HLL_M); /* all registers set: dense is the right choice */
	cr_assert_eq(dts_set_decode(&s, buf, sizeof(buf)), (int)sizeof(buf));
	cr_assert_not_null(s.hll);
	cr_assert_gt(dts_set_cardinality(&s), 1000.0);
	buf[3 + 5] = 64 - DTS_HLL_P + 2; /* register value out of range */
	cr_assert_eq(dts_set_decode(&s, buf, sizeof(buf)), -EINVAL);
	dts_set_free(&s);
}

Test(set_encode, random_mutations_never_misparse)
{
	static const uint64_t sizes[] = { 0, 5, 64, 300, 50000 };
	uint8_t base[5][3 + HLL_M], buf[3 + HLL_M], again[3 + HLL_M];
	int len[5], accepted = 0, rejected = 0;
	uint64_t x = 12345;

	for (int c = 0; c < 5; c++) {
		struct dts_set s;

		build_set(&s, sizes[c]);
		len[c] = dts_set_encode(&s, base[c], sizeof(base[c]));
		cr_assert_gt(len[c], 0);
		dts_set_free(&s);
	}
	for (int i = 0; i < 20000; i++) {
		struct dts_set s;
		int c = i % 5, got;
		size_t n = (size_t)len[c];

		memcpy(buf, base[c], n);
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		buf[(x >> 33) % n] ^= (uint8_t)(1u << ((x >> 20) % 8));
		if (i % 3 == 0)
			n = (x >> 40) % (n + 1);
		dts_set_init(&s);
		got = dts_set_decode(&s, buf, n);
		cr_assert(got == -EINVAL || (got > 0 && (size_t)got <= n));
		if (got > 0) {
			accepted++;
			cr_assert_eq(dts_set_encode(&s, again, sizeof(again)), got);
			cr_assert_eq(memcmp(buf, again, (size_t)got), 0);
		} else {
			rejected++;
		}
		dts_set_free(&s);
	}
	cr_assert_gt(accepted, 100);
	cr_assert_gt(rejected, 100);
}
