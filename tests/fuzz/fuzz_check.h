/*
 * fuzz_check.h - what the libFuzzer targets share: CHECK (an invariant broken is a crash libFuzzer reports, in every
 * build mode) and the comparison of two sketches bin for bin.
 */
#ifndef DTS_FUZZ_CHECK_H
#define DTS_FUZZ_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "dts/sketch.h"

#define CHECK(cond)                                                                                                  \
	do {                                                                                                         \
		if (!(cond))                                                                                         \
			abort();                                                                                     \
	} while (0)

/* The same spans and the same bins, by value, whatever the stores' forms. */
static inline void fuzz_same_bins(const struct dts_sketch *a, const struct dts_sketch *b)
{
	for (int neg = 0; neg < 2; neg++) {
		const struct dts_sketch_store *sa = neg ? &a->neg : &a->pos, *sb = neg ? &b->neg : &b->pos;

		CHECK(sa->nbins == sb->nbins && sa->nbins <= DTS_SKETCH_MAX_BINS);
		CHECK(sa->cap <= (sa->sparse ? DTS_SKETCH_SPARSE_MAX : DTS_SKETCH_MAX_BINS));
		CHECK(sa->nnz <= (sa->sparse ? sa->cap : 0));
		if (sa->nbins == 0)
			continue;
		CHECK(sa->lo == sb->lo);
		for (int32_t k = sa->lo; k < sa->lo + (int32_t)sa->nbins; k++)
			CHECK(dts_sketch_bin(a, neg, k) == dts_sketch_bin(b, neg, k));
	}
}

#endif /* DTS_FUZZ_CHECK_H */
