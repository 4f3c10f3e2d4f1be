/*
 * sketch.h - mergeable relative-error quantile sketch (DDSketch with a float-bits cubic mapping, bounded by uniform
 * collapsing as in UDDSketch) and the scalar partial aggregate.
 *
 * Key mapping. For v > DTS_SKETCH_MIN_VALUE write v = 2^e * (1 + s), s in [0, 1), and let
 *     L(v) = e + A s^3 + B s^2 + C s,   A = 6/35, B = -3/5, C = 10/7
 * (a monotone cubic approximation of log2 that is exact at powers of two). The level-0 key is
 *     key0(v) = ceil(L(v) * m),   m = 7 / (10 * ln(gamma)),  gamma = (1 + alpha) / (1 - alpha)
 * so that every bin spans at most ln(gamma) in ln(v): any value in the bin is within alpha of the bin's representative
 * 2*lo*hi/(lo+hi). A sketch at collapse level l stores key_l = ceil(key0 / 2^l): each collapse merges bins pairwise,
 * which is the same as using gamma^(2^l), so the guarantee after l collapses is alpha_l = (g_l - 1)/(g_l + 1) with
 * g_l = gamma^(2^l) (2.0% at l=1, 4.0% at l=2). Keys of level-0 values fit in int16 for every finite double the
 * decoders accept (|key0| <= 64 * m * 1.01 < 2300).
 *
 * Merging two sketches adds bins after bringing both to the higher level: it is exact (the result is the sketch of the
 * union of the inputs), so the accuracy of any number of merges is the accuracy of the final level.
 *
 * Memory: bins are float counts (sample rates make counts fractional) in one dense array covering [lo, lo + nbins);
 * it grows by doubling up to DTS_SKETCH_MAX_BINS and then collapses. Negative values are mirrored into a second store.
 *
 * Threading: a sketch has one writer and no internal synchronisation. The merger owns the sketches in the global
 * windows; readers only see immutable copies.
 */
#ifndef DTS_SKETCH_H
#define DTS_SKETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dts/tunables.h"

/* Level-0 key of |v| for |v| > DTS_SKETCH_MIN_VALUE (values above 1e300 are clamped). Pure; any thread; ~3 ns. */
int32_t dts_sketch_key(double v);

/* Representative value of key at collapse level (the value minimising relative error over the bin). Pure. */
double dts_sketch_key_value(int32_t key, unsigned level);

/* Relative accuracy guaranteed at a collapse level (alpha at level 0). */
double dts_sketch_level_alpha(unsigned level);

/* One dense store of bins. Private fields: use the functions below. */
struct dts_sketch_store {
	float *bins; /* owned; NULL when empty */
	int32_t lo; /* key of bins[0] */
	uint16_t nbins; /* bins in use: keys lo .. lo + nbins - 1 */
	uint16_t cap; /* allocated bins */
};

struct dts_sketch {
	struct dts_sketch_store pos; /* values > MIN_VALUE */
	struct dts_sketch_store neg; /* values < -MIN_VALUE, by key of |v| */
	double zero; /* weight of values with |v| <= MIN_VALUE */
	double count; /* total weight */
	uint8_t level; /* collapse level, 0 = alpha */
};

/* Initialise an empty sketch (no allocation). */
void dts_sketch_init(struct dts_sketch *s);

/* Free the bins; the sketch is empty (and may be reused) afterwards. */
void dts_sketch_free(struct dts_sketch *s);

/* Reset to empty, keeping allocations for reuse. */
void dts_sketch_clear(struct dts_sketch *s);

/* Add value v with weight w (> 0). Returns 0 or -ENOMEM (the sketch is unchanged then). */
int dts_sketch_add(struct dts_sketch *s, double v, double w);

/*
 * Add weight w to the bin of a precomputed level-0 key (as produced by dts_sketch_key) with the sign of the original
 * value (negative != 0 for values < 0). key == INT32_MIN means the zero bin. Returns 0 or -ENOMEM.
 * This is how the merger folds the keys that RX cores computed.
 */
int dts_sketch_add_key(struct dts_sketch *s, int32_t key0, bool negative, double w);

/* dst += src (src unchanged). Returns 0 or -ENOMEM (dst may then be collapsed but holds no partial data of src). */
int dts_sketch_merge(struct dts_sketch *dst, const struct dts_sketch *src);

/* Deep copy src into dst (dst must be initialised; its old bins are reused or freed). Returns 0 or -ENOMEM. */
int dts_sketch_copy(struct dts_sketch *dst, const struct dts_sketch *src);

/*
 * The q-quantile (0 <= q <= 1) with DDSketch's rank convention: the value of the bin holding the element of rank
 * floor(q * (count - 1)) in ascending order. BOT10 is q = 0.1, TOP10 is q = 0.9. Returns NAN when empty.
 */
double dts_sketch_quantile(const struct dts_sketch *s, double q);

/* Bytes of heap the sketch holds (for memory accounting). */
size_t dts_sketch_heap_bytes(const struct dts_sketch *s);

/*
 * Serialise into buf (see docs/storage.md "sketch encoding"). Returns bytes written, or -ENOSPC when buf_len is too
 * small; dts_sketch_encoded_size gives the exact size. dts_sketch_decode parses what encode wrote into an initialised
 * sketch: returns bytes consumed, or -EINVAL on malformed input (never reads past len), -ENOMEM.
 */
size_t dts_sketch_encoded_size(const struct dts_sketch *s);
int dts_sketch_encode(const struct dts_sketch *s, uint8_t *buf, size_t buf_len);
int dts_sketch_decode(struct dts_sketch *s, const uint8_t *buf, size_t len);

/*
 * Scalar partial aggregate of some values over a time slot. Merge-able in time order.
 * count is a weight (sample rates make it fractional). min/max are +inf/-inf when count == 0.
 * fst/lst: first and last value in time. For gauges lst is the gauge's value (see dts_agg_gauge_*).
 */
struct dts_agg {
	double sum;
	double count;
	double min;
	double max;
	double fst;
	double lst;
};

void dts_agg_init(struct dts_agg *a);

/* Record value v with weight w (counters pass the raw value; sum grows by v * w). */
static inline void dts_agg_add(struct dts_agg *a, double v, double w)
{
	if (a->count == 0)
		a->fst = v;
	a->sum += v * w;
	a->count += w;
	a->min = v < a->min ? v : a->min;
	a->max = v > a->max ? v : a->max;
	a->lst = v;
}

/* dst = dst followed in time by later. Either may be empty. */
void dts_agg_merge(struct dts_agg *dst, const struct dts_agg *later);

#endif /* DTS_SKETCH_H */
