/*
 * hash.h - the 64-bit hash used for series identity, set members and the AUTH cache.
 *
 * Not cryptographic. It must be fast on short keys (20-80 bytes) and well mixed in every bit: the per-core tables
 * and the merger's index home an identity at its top bits, the sets and the AUTH cache at its low bits. The series
 * identity hash (engine/src/core.c, ident_hash) builds on the same mixing with a secret key; the tables and the
 * merger take two identities of one type with one such hash to be one series (probability ~ n^2 / 2^65: 3e-8 at a
 * million series; docs/architecture.md, "Identity by hash").
 */
#ifndef DTS_HASH_H
#define DTS_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DTS_HASH_SEED 0x9e3779b97f4a7c15ULL

static inline uint64_t dts__mix(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t dts__load64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint64_t dts__load32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/*
 * Hash n bytes at p. Any thread; pure function. Tails are read with fixed-size overlapping loads (no variable-length
 * memcpy): 8..15 bytes as two 8-byte loads, 4..7 as two 4-byte loads, 1..3 as three single bytes.
 */
static inline uint64_t dts_hash64(const void *data, size_t n, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t h = seed ^ dts__mix(n ^ 0xa0761d6478bd642fULL, 0xe7037ed1a0b428dbULL);
	uint64_t a, b;

	while (n > 16) {
		h = dts__mix(dts__load64(p) ^ 0xa0761d6478bd642fULL ^ h, dts__load64(p + 8) ^ 0xe7037ed1a0b428dbULL);
		p += 16;
		n -= 16;
	}
	if (n >= 8) {
		a = dts__load64(p);
		b = dts__load64(p + n - 8);
	} else if (n >= 4) {
		a = dts__load32(p);
		b = dts__load32(p + n - 4);
	} else if (n > 0) {
		a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
		b = 0;
	} else {
		a = b = 0;
	}
	h = dts__mix(a ^ 0x8ebc6af09c88c6e3ULL ^ h, b ^ 0x589965cc75374cc3ULL ^ n);
	return dts__mix(h, 0x9e3779b97f4a7c15ULL) ^ h;
}

/* Continue a hash with more bytes (for multi-part identities). */
static inline uint64_t dts_hash64_more(uint64_t h, const void *data, size_t n)
{
	return dts_hash64(data, n, h ^ 0x2d358dccaa6c78a5ULL);
}

#endif /* DTS_HASH_H */
