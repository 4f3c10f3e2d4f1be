/*
 * bytes.h - little-endian fields and LEB128 varints for the project's byte formats (sketch and set encodings, the
 * native protocol, stored values). One definition for engine, storage and client: the formats are documented as byte
 * tables elsewhere (docs/sketch.md, docs/protocol.md, docs/storage.md); these are only the primitives. Pure; any
 * thread. Readers of varints stay with each format, because their bounds differ (32- or 64-bit, minimal form).
 */
#ifndef DTS_BYTES_H
#define DTS_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t dts_rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t dts_rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t dts_rd64(const uint8_t *p)
{
	return (uint64_t)dts_rd32(p) | (uint64_t)dts_rd32(p + 4) << 32;
}

static inline void dts_wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void dts_wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void dts_wr64(uint8_t *p, uint64_t v)
{
	dts_wr32(p, (uint32_t)v);
	dts_wr32(p + 4, (uint32_t)(v >> 32));
}

static inline double dts_rdf64(const uint8_t *p)
{
	uint64_t u = dts_rd64(p);
	double d;

	memcpy(&d, &u, 8);
	return d;
}

static inline void dts_wrf64(uint8_t *p, double d)
{
	uint64_t u;

	memcpy(&u, &d, 8);
	dts_wr64(p, u);
}

static inline float dts_rdf32(const uint8_t *p)
{
	uint32_t u = dts_rd32(p);
	float f;

	memcpy(&f, &u, 4);
	return f;
}

static inline void dts_wrf32(uint8_t *p, float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	dts_wr32(p, u);
}

static inline size_t dts_varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static inline size_t dts_put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

#endif /* DTS_BYTES_H */
