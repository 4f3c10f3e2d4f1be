/*
 * set.h - distinct counting for statsd sets ('s'): exact while small, HyperLogLog beyond.
 *
 * Members arrive as 64-bit hashes (dts_hash64 of the member text). Up to DTS_SET_EXACT_MAX distinct hashes are kept in
 * a sorted array and the cardinality is exact; the next distinct member converts the set to a HyperLogLog with
 * 2^DTS_HLL_P one-byte registers (standard error 1.04/sqrt(2^P) = 1.6%; cardinality by Ertl's improved estimator, unbiased across the whole range,
 * measured in docs/sketch.md).
 * Merging is exact for exact sets and register-wise max for HLLs, so any number of merges keeps the stated error.
 *
 * Threading: one writer, no internal synchronisation (like dts_sketch).
 */
#ifndef DTS_SET_H
#define DTS_SET_H

#include <stddef.h>
#include <stdint.h>

#include "dts/tunables.h"

struct dts_set {
	uint64_t *exact; /* sorted distinct hashes, owned; NULL once converted to HLL or while empty */
	uint8_t *hll; /* 2^DTS_HLL_P registers, owned; NULL while exact */
	uint16_t n; /* members in exact */
	uint16_t cap; /* allocated slots in exact */
};

void dts_set_init(struct dts_set *s);
void dts_set_free(struct dts_set *s);

/* Add one member hash. Returns 0 or -ENOMEM (set unchanged). */
int dts_set_add(struct dts_set *s, uint64_t member_hash);

/* dst |= src (src unchanged). Returns 0 or -ENOMEM (dst unchanged then). */
int dts_set_merge(struct dts_set *dst, const struct dts_set *src);

/* Distinct members: exact while small, HLL estimate otherwise. */
double dts_set_cardinality(const struct dts_set *s);

size_t dts_set_heap_bytes(const struct dts_set *s);

/*
 * Serialisation as for the sketch (byte table at the top of set.c and in docs/sketch.md): encode returns bytes written
 * or -ENOSPC; decode replaces the set's contents and returns bytes consumed, -EINVAL (never reads past len) or
 * -ENOMEM, leaving the set unchanged on error. Exact sets, sparse HLLs (few non-zero registers) and dense HLLs have
 * their own layouts; decode accepts only what encode would write.
 */
size_t dts_set_encoded_size(const struct dts_set *s);
int dts_set_encode(const struct dts_set *s, uint8_t *buf, size_t buf_len);
int dts_set_decode(struct dts_set *s, const uint8_t *buf, size_t len);

#endif /* DTS_SET_H */
