/*
 * value.c - the versioned value layout (byte table in dts/storage.h and docs/storage.md) and the merge rule.
 *
 * Doubles are written little-endian through their bit patterns, so the layout does not depend on the host. The
 * decoder accepts only what the encoder writes (known version and type, first <= last <= 59, a finite non-negative
 * count, a payload that the sketch or set decoder consumes exactly, nothing after it) and never reads past len.
 *
 * Pure functions; callable from any thread on values that thread owns.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "dts/bytes.h"
#include "storage_internal.h"

void dts_stored_init(struct dts_stored *v)
{
	memset(v, 0, sizeof(*v));
	v->type = DTS_COUNTER;
	dts_agg_init(&v->agg);
	dts_sketch_init(&v->sketch);
	dts_set_init(&v->set);
}

void dts_stored_free(struct dts_stored *v)
{
	dts_sketch_free(&v->sketch);
	dts_set_free(&v->set);
}



size_t dts_storage_value_size(const struct dts_stored *v)
{
	size_t n = DTS_STORAGE_VALUE_HEADER;

	if (v->type == DTS_TIMER)
		n += dts_sketch_encoded_size(&v->sketch);
	else if (v->type == DTS_SET)
		n += dts_set_encoded_size(&v->set);
	return n;
}

/* The payload's size is not computed up front: the sketch and set encoders check their room themselves, and a timer's
 * size is a walk over its bins (a checkpoint of 1M series spent a fifth of its time in sizes computed twice). */
int dts_storage_value_encode(const struct dts_stored *v, uint8_t *buf, size_t buf_len)
{
	int rc = 0;

	if (v->type >= DTS_NTYPES || v->first > v->last || v->last > 59)
		return -EINVAL;
	if (buf_len < DTS_STORAGE_VALUE_HEADER)
		return -ENOSPC;
	buf[0] = DTS_STORAGE_VALUE_VERSION;
	buf[1] = v->type;
	buf[2] = v->first;
	buf[3] = v->last;
	dts_wrf64(buf + 4, v->agg.sum);
	dts_wrf64(buf + 12, v->agg.count);
	dts_wrf64(buf + 20, v->agg.min);
	dts_wrf64(buf + 28, v->agg.max);
	dts_wrf64(buf + 36, v->agg.fst);
	dts_wrf64(buf + 44, v->agg.lst);
	if (v->type == DTS_TIMER)
		rc = dts_sketch_encode(&v->sketch, buf + DTS_STORAGE_VALUE_HEADER, buf_len - DTS_STORAGE_VALUE_HEADER);
	else if (v->type == DTS_SET)
		rc = dts_set_encode(&v->set, buf + DTS_STORAGE_VALUE_HEADER, buf_len - DTS_STORAGE_VALUE_HEADER);
	if (rc < 0)
		return rc; /* -ENOSPC */
	return DTS_STORAGE_VALUE_HEADER + rc;
}

int dts_storage_value_decode(struct dts_stored *v, const uint8_t *buf, size_t len)
{
	struct dts_agg a;
	const uint8_t *payload = buf + DTS_STORAGE_VALUE_HEADER;
	size_t plen;
	int rc;

	if (len < 1)
		return -EINVAL;
	if (buf[0] > DTS_STORAGE_VALUE_VERSION)
		return -EPROTONOSUPPORT;
	if (buf[0] != DTS_STORAGE_VALUE_VERSION || len < DTS_STORAGE_VALUE_HEADER || buf[1] >= DTS_NTYPES ||
	    buf[2] > buf[3] || buf[3] > 59)
		return -EINVAL;
	a.sum = dts_rdf64(buf + 4);
	a.count = dts_rdf64(buf + 12);
	a.min = dts_rdf64(buf + 20);
	a.max = dts_rdf64(buf + 28);
	a.fst = dts_rdf64(buf + 36);
	a.lst = dts_rdf64(buf + 44);
	if (!isfinite(a.count) || a.count < 0)
		return -EINVAL;
	plen = len - DTS_STORAGE_VALUE_HEADER;
	/* The payload is decoded in place (reusing v's allocations: the reader decodes thousands of values into one v).
	 * The sketch and set decoders leave their target unchanged on their own errors; only a payload followed by
	 * extra bytes is found out after decoding, and then the freshly decoded payload is emptied. */
	switch (buf[1]) {
	case DTS_TIMER:
		rc = dts_sketch_decode(&v->sketch, payload, plen);
		if (rc >= 0 && (size_t)rc != plen) {
			dts_sketch_clear(&v->sketch);
			rc = -EINVAL;
		}
		if (rc < 0)
			return rc;
		dts_set_free(&v->set);
		break;
	case DTS_SET:
		rc = dts_set_decode(&v->set, payload, plen);
		if (rc >= 0 && (size_t)rc != plen) {
			dts_set_free(&v->set);
			rc = -EINVAL;
		}
		if (rc < 0)
			return rc;
		dts_sketch_clear(&v->sketch);
		break;
	default:
		if (plen != 0)
			return -EINVAL;
		dts_sketch_clear(&v->sketch);
		dts_set_free(&v->set);
		break;
	}
	v->type = buf[1];
	v->first = buf[2];
	v->last = buf[3];
	v->agg = a;
	return 0;
}

int dts_storage_value_merge(struct dts_stored *dst, const struct dts_stored *src)
{
	struct dts_agg m = dst->agg;
	int rc = 0;

	if (dst->type != src->type)
		return -EINVAL;
	if (dst->type == DTS_TIMER)
		rc = dts_sketch_merge(&dst->sketch, &src->sketch);
	else if (dst->type == DTS_SET)
		rc = dts_set_merge(&dst->set, &src->set);
	if (rc < 0)
		return rc;
	/* dts_agg_merge takes fst from its first argument and lst from its second (or from whichever is non-empty). */
	dts_agg_merge(&m, &src->agg);
	if (dst->agg.count > 0 && src->agg.count > 0) {
		m.fst = src->first < dst->first ? src->agg.fst : dst->agg.fst;
		m.lst = src->last >= dst->last ? src->agg.lst : dst->agg.lst;
	}
	dst->agg = m;
	dst->first = src->first < dst->first ? src->first : dst->first;
	dst->last = src->last > dst->last ? src->last : dst->last;
	return 0;
}
