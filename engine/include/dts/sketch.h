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
 * g_l = gamma^(2^l) (2.0% at l=1, 4.0% at l=2). |v| is clamped to [DTS_SKETCH_MIN_VALUE, 2^900 (~8.5e270)] before
 * mapping, so level-0 keys lie in [-1046, 31499] at alpha = 1% and fit in int16 with INT16_MIN free, for every double
 * (values above 2^900 all land in the top bin and lose their accuracy).
 *
 * Merging two sketches adds bins after bringing both to the higher level: it is exact (the result is the sketch of the
 * union of the inputs), so the accuracy of any number of merges is the accuracy of the final level.
 *
 * Memory: bins are float counts (sample rates make counts fractional). A store covers the span [lo, lo + nbins) of
 * keys and holds its bins in one of two forms: sparse (the non-empty bins as sorted key/weight entries, 6 bytes each,
 * while there are few: a timer's minute of a dozen values holds ~100 bytes instead of ~1 KB), or dense (one float per
 * key of the span) once that is no larger or the entries pass DTS_SKETCH_SPARSE_MAX. Either grows by doubling; a
 * span past DTS_SKETCH_MAX_BINS collapses. The form is memory layout only: every result (levels, bins, quantiles,
 * encodings) is the same whichever form a store is in. Negative values are mirrored into a second store.
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

/* Level-0 key of |v| for |v| > DTS_SKETCH_MIN_VALUE (values above 2^900 are clamped to it; smaller values and NaN
 * give the key of DTS_SKETCH_MIN_VALUE). Pure; any thread; ~2.5 ns. */
int32_t dts_sketch_key(double v);

/* Representative value of key at collapse level (the value minimising relative error over the bin). Pure. */
double dts_sketch_key_value(int32_t key, unsigned level);

/* Relative accuracy guaranteed at a collapse level (alpha at level 0). */
double dts_sketch_level_alpha(unsigned level);

/* One store of bins. Private fields: use the functions below (dts_sketch_bin reads one bin). */
struct dts_sketch_store {
	float *bins; /* owned; NULL before the first allocation. Dense: the weights of keys lo .. lo + nbins - 1.
		      * Sparse: the weights of the nnz entries, then (at bins + cap) their keys as int16_t. */
	int16_t lo; /* key of the span's first bin (keys at any level fit in int16) */
	uint16_t nbins; /* the span: keys lo .. lo + nbins - 1, in either form */
	uint16_t cap; /* allocated bins (dense) or entries (sparse) */
	uint8_t nnz; /* sparse: entries in use, in ascending key order, each of weight > 0 */
	uint8_t sparse; /* 1: sparse form; 0: dense (or nothing allocated yet) */
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

/* Add value v with weight w (> 0). Returns 0, -EINVAL (v is NaN, or w is not in (0, FLT_MAX]) or -ENOMEM; the sketch
 * is unchanged on error. */
int dts_sketch_add(struct dts_sketch *s, double v, double w);

/*
 * Add weight w to the bin of a precomputed level-0 key (as produced by dts_sketch_key) with the sign of the original
 * value (negative != 0 for values < 0). key == INT32_MIN means the zero bin. Returns 0, -EINVAL (key0 outside what
 * dts_sketch_key returns, or w not in (0, FLT_MAX]) or -ENOMEM; the sketch is unchanged on error. Amortised O(1) in a
 * dense store; in a sparse one the entries below the key are counted (at most DTS_SKETCH_SPARSE_MAX, 16 or 8 to a
 * vector compare), and up to that many are moved when the key is new.
 * This is how the merger folds the keys that RX cores computed. For v not NaN, dts_sketch_add(s, v, w) is exactly
 * dts_sketch_add_key(s, |v| <= DTS_SKETCH_MIN_VALUE ? INT32_MIN : dts_sketch_key(v), v < 0, w).
 */
int dts_sketch_add_key(struct dts_sketch *s, int32_t key0, bool negative, double w);

/* dst += src (src unchanged; dst == src doubles dst). Returns 0 or -ENOMEM (dst unchanged then). */
int dts_sketch_merge(struct dts_sketch *dst, const struct dts_sketch *src);

/*
 * dst += factor * src, bin by bin (src unchanged; dst == src multiplies dst by 1 + factor). Levels are aligned exactly
 * as by dts_sketch_merge and each of src's bins is scaled before it is added, so the result, at whatever level it ends,
 * is up to float rounding the sketch of dst's data plus src's data with every weight multiplied by factor; factor 1 is
 * bin for bin dts_sketch_merge. Scaled bins below the smallest float become 0 (count keeps the total). factor 0 is a
 * no-op returning 0. Returns 0, -EINVAL (factor negative, NaN or infinite, or a scaled bin above FLT_MAX) or -ENOMEM;
 * dst is unchanged on error. Used for the merger's sliding one-minute window (a share of the previous minute).
 */
int dts_sketch_merge_scaled(struct dts_sketch *dst, const struct dts_sketch *src, double factor);

/* Deep copy src into dst (dst must be initialised; its old bins are reused or freed). Returns 0 or -ENOMEM. */
int dts_sketch_copy(struct dts_sketch *dst, const struct dts_sketch *src);

/*
 * The q-quantile (0 <= q <= 1) with DDSketch's rank convention: the value of the bin holding the element of rank
 * floor(q * (count - 1)) in ascending order. BOT10 is q = 0.1, TOP10 is q = 0.9. Returns NAN when empty or q is NaN;
 * q outside [0, 1] is clamped.
 */
double dts_sketch_quantile(const struct dts_sketch *s, double q);

/*
 * Quantiles of a's data together with b's data weighted by wb, without building that sketch: out[i] is exactly what
 * dts_sketch_quantile(m, q[i]) returns for m = an empty sketch after dts_sketch_merge_scaled(m, a, 1) and
 * dts_sketch_merge_scaled(m, b, wb) (the same level, the same float bin sums in the same order). a or b may be NULL
 * (no data); wb must be in [0, 1]. One walk of the bins for all n (<= 16) quantiles, in any order; no allocation.
 * out[i] is NAN when the union is empty or q[i] is NaN. Pure; any thread. The merger's moving-window quantiles.
 */
#define DTS_SKETCH_QUANTILES_MAX 16
void dts_sketch_quantiles2(const struct dts_sketch *a, const struct dts_sketch *b, double wb, const double *q, size_t n,
			   double *out);

/* Bytes of heap the sketch holds (for memory accounting). */
size_t dts_sketch_heap_bytes(const struct dts_sketch *s);

/*
 * The weight of the bin of key (a key at the sketch's current level, as the store's lo counts them) in the positive
 * store, or in the negative one when negative is true; 0 for a key outside the store or an empty bin. Pure; any
 * thread; O(log entries). For tests and tools that look at a sketch bin by bin, whatever the form of its stores.
 */
float dts_sketch_bin(const struct dts_sketch *s, bool negative, int32_t key);

/*
 * Serialise into buf (byte table at the top of sketch.c and in docs/sketch.md). Returns bytes written, or -ENOSPC
 * when buf_len is too small; dts_sketch_encoded_size gives the exact size. dts_sketch_decode parses what encode wrote
 * into an initialised sketch, replacing its contents: returns bytes consumed (bytes after the encoding are left
 * alone), or -EINVAL on malformed input (never reads past len), -ENOMEM; the sketch is unchanged on error. Decode
 * accepts only canonical encodings, so re-encoding a decoded sketch gives the same bytes.
 */
size_t dts_sketch_encoded_size(const struct dts_sketch *s);
int dts_sketch_encode(const struct dts_sketch *s, uint8_t *buf, size_t buf_len);
int dts_sketch_decode(struct dts_sketch *s, const uint8_t *buf, size_t len);

/*
 * Scalar partial aggregate of some values over a time slot. Merge-able in time order.
 * count is a weight (sample rates make it fractional). min/max are +inf/-inf and fst/lst 0 when count == 0.
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

/* dst = dst followed in time by later: fst from dst, lst from later (from the non-empty one if either is empty). */
void dts_agg_merge(struct dts_agg *dst, const struct dts_agg *later);

#endif /* DTS_SKETCH_H */
