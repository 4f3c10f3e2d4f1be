/*
 * fuzz_sketch_decode.c - libFuzzer target for the stored encodings of sketches and sets.
 *
 * Byte 0 chooses the decoder (even: dts_sketch_decode, odd: dts_set_decode); the rest is the encoding. Whatever the
 * input, decode must return -EINVAL or the bytes it consumed, never read past the input (ASan) and never leak. When it
 * accepts, the encoding is canonical: encoding the result gives back exactly the consumed bytes, and decoding those
 * again gives the same sketch or set (same bins, same quantiles, same cardinality). Seeds: corpus/sketch_decode/.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dts/set.h"
#include "dts/sketch.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_double(double a, double b)
{
	return (isnan(a) && isnan(b)) || a == b;
}

static void fuzz_sketch(const uint8_t *data, size_t size)
{
	struct dts_sketch s, t;
	uint8_t *buf;
	int n, m;

	dts_sketch_init(&s);
	dts_sketch_init(&t);
	n = dts_sketch_decode(&s, data, size);
	CHECK(n == -EINVAL || (n > 0 && (size_t)n <= size));
	if (n < 0)
		goto out;
	if (data[0] == 2) { /* the current version is canonical: re-encoding gives the same bytes */
		CHECK(dts_sketch_encoded_size(&s) == (size_t)n);
	} else { /* version 1 (dense stores only) is re-encoded as version 2 */
		CHECK(data[0] == 1);
		n = (int)dts_sketch_encoded_size(&s);
	}
	buf = malloc((size_t)n);
	CHECK(buf);
	CHECK(dts_sketch_encode(&s, buf, (size_t)n - 1) == -ENOSPC);
	m = dts_sketch_encode(&s, buf, (size_t)n);
	CHECK(m == n && (data[0] != 2 || memcmp(buf, data, (size_t)n) == 0));
	CHECK(dts_sketch_decode(&t, buf, (size_t)m) == m);
	CHECK(s.level == t.level && same_double(s.zero, t.zero) && same_double(s.count, t.count));
	fuzz_same_bins(&s, &t);
	for (int i = 0; i <= 10; i++) {
		double q = dts_sketch_quantile(&s, i / 10.0);

		CHECK(same_double(q, dts_sketch_quantile(&t, i / 10.0)));
		CHECK(!isinf(q));
	}
	/* a decoded sketch is a working sketch: merging it into itself and adding to it must hold the invariants */
	CHECK(dts_sketch_merge(&t, &s) == 0);
	CHECK(dts_sketch_add(&t, 1.0, 1.0) == 0);
	CHECK(t.pos.nbins <= DTS_SKETCH_MAX_BINS && t.neg.nbins <= DTS_SKETCH_MAX_BINS);
	CHECK(dts_sketch_heap_bytes(&t) <= 2 * DTS_SKETCH_MAX_BINS * sizeof(float));
	free(buf);
out:
	dts_sketch_free(&s);
	dts_sketch_free(&t);
}

static void fuzz_set(const uint8_t *data, size_t size)
{
	struct dts_set s, t;
	uint8_t *buf;
	int n, m;

	dts_set_init(&s);
	dts_set_init(&t);
	n = dts_set_decode(&s, data, size);
	CHECK(n == -EINVAL || (n > 0 && (size_t)n <= size));
	if (n < 0)
		goto out;
	CHECK(dts_set_encoded_size(&s) == (size_t)n);
	buf = malloc((size_t)n);
	CHECK(buf);
	CHECK(dts_set_encode(&s, buf, (size_t)n - 1) == -ENOSPC);
	m = dts_set_encode(&s, buf, (size_t)n);
	CHECK(m == n && memcmp(buf, data, (size_t)n) == 0);
	CHECK(dts_set_decode(&t, buf, (size_t)m) == m);
	CHECK((s.hll == NULL) == (t.hll == NULL) && s.n == t.n);
	CHECK(same_double(dts_set_cardinality(&s), dts_set_cardinality(&t)));
	CHECK(dts_set_cardinality(&s) >= 0.0);
	CHECK(dts_set_merge(&t, &s) == 0);
	CHECK(dts_set_add(&t, 0x0123456789abcdefULL) == 0);
	free(buf);
out:
	dts_set_free(&s);
	dts_set_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		fuzz_set(data + 1, size - 1);
	else
		fuzz_sketch(data + 1, size - 1);
	return 0;
}
