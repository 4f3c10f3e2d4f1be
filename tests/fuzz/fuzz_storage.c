/*
 * fuzz_storage.c - libFuzzer target for the store's decoders (dts/storage.h): what a damaged or hostile RocksDB store
 * hands to restore at startup, to the API's reads and to `dattss inspect`.
 *
 * Byte 0 (modulo MODES) chooses the decoder; the rest is one key or value:
 *   0 value        dts_storage_value_decode, into a fresh value and into one already holding a gauge, a sketch and a
 *                  set. Both calls return the same code (0, -EPROTONOSUPPORT exactly for a version above 1, -EINVAL or
 *                  -ENOMEM). On error the used value keeps its type, offsets and agg (bit for bit), and its sketch and
 *                  set are unchanged or empty. On success both decodes agree; first <= last <= 59, count finite and
 *                  >= 0; the payload not of the type is empty; the value re-encodes (-ENOSPC one byte short) to
 *                  exactly dts_storage_value_size bytes, equal to the input unless a timer's sketch was in version 1
 *                  (re-encoded as version 2); decoding that gives the same type, offsets, agg bits, sketch (level,
 *                  weights, bins, same encoding) and set (same encoding, same cardinality).
 *   1 chunk        dts_storage_ckpt_chunk_open, then _next until the end or an error: -EPROTONOSUPPORT exactly for a
 *                  newer version; every record's spans lie inside the value, in order, with slen >= 1; writing the
 *                  records again (minimal LEB128 varints) gives back the bytes read so far, and at the end exactly the
 *                  whole value with the declared number of records. Each record's series goes through the series
 *                  checks below, its value through the value checks above.
 *   2, 3 key       dts_storage_key_decode at minute / hour resolution;
 *   4 ckpt key     dts_storage_ckpt_key_decode (format 1, TIME '|' SERIES);
 *   5 chunk key    dts_storage_ckpt_chunk_key_decode;
 *   6, 7 time      dts_storage_time_decode at minute / hour resolution;
 *   8 series       dts_storage_series_decode:
 *                  when one accepts, the view's spans lie inside the input, the time is in range and on its
 *                  resolution's boundary, and the encoder (dts_storage_key_encode, dts_storage_time_encode + '|' +
 *                  dts_storage_series_encode, dts_storage_ckpt_chunk_key, dts_storage_time_encode,
 *                  dts_storage_series_encode) gives back exactly the input, or -ENOSPC without room for the NUL.
 *   9 event        dts_storage_event_decode: the value is exactly 29 + P + T bytes with P and T in range, the spans
 *                  point at offsets 27 and 29 + P; re-encoding gives back the input (when the process holds no NUL:
 *                  the encoder takes a C string), -ENOSPC one byte short.
 *   10 process     dts_storage_process_decode: exactly 82 bytes; re-encoding gives back the input, -ENOSPC when short.
 * Whatever the input: no read outside it (ASan), no undefined behaviour (UBSan), no leak. Seeds: corpus/storage/
 * (made with the encoders: each kind of key, values of every type, chunks, events, process states).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dts/bytes.h"
#include "dts/native.h"
#include "dts/storage.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum mode {
	M_VALUE,
	M_CHUNK,
	M_KEY_MINUTE,
	M_KEY_HOUR,
	M_CKPT_KEY,
	M_CHUNK_KEY,
	M_TIME_MINUTE,
	M_TIME_HOUR,
	M_SERIES,
	M_EVENT,
	M_PROCESS,
	MODES
};

/* malloc(len), at least one byte; aborts instead of failing. */
static uint8_t *scratch(size_t len)
{
	uint8_t *b = malloc(len ? len : 1);

	CHECK(b);
	return b;
}

static bool same_bits(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

static bool same_agg(const struct dts_agg *a, const struct dts_agg *b)
{
	return same_bits(a->sum, b->sum) && same_bits(a->count, b->count) && same_bits(a->min, b->min) &&
	       same_bits(a->max, b->max) && same_bits(a->fst, b->fst) && same_bits(a->lst, b->lst);
}

static bool sketch_empty(const struct dts_sketch *s)
{
	return s->pos.nbins == 0 && s->neg.nbins == 0 && s->count == 0.0 && s->zero == 0.0;
}

static bool set_empty(const struct dts_set *s)
{
	return s->hll == NULL && s->n == 0;
}

/* The encoding of a sketch or set (malloc'd, *len bytes); sketches and sets are compared through these. */
static uint8_t *sketch_bytes(const struct dts_sketch *s, size_t *len)
{
	uint8_t *b;

	*len = dts_sketch_encoded_size(s);
	b = scratch(*len);
	CHECK(dts_sketch_encode(s, b, *len) == (int)*len);
	return b;
}

static uint8_t *set_bytes(const struct dts_set *s, size_t *len)
{
	uint8_t *b;

	*len = dts_set_encoded_size(s);
	b = scratch(*len);
	CHECK(dts_set_encode(s, b, *len) == (int)*len);
	return b;
}

static bool same_sketch_bytes(const struct dts_sketch *a, const struct dts_sketch *b)
{
	size_t la, lb;
	uint8_t *ea = sketch_bytes(a, &la), *eb = sketch_bytes(b, &lb);
	bool same = la == lb && memcmp(ea, eb, la) == 0;

	free(ea);
	free(eb);
	return same;
}

static bool same_set_bytes(const struct dts_set *a, const struct dts_set *b)
{
	size_t la, lb;
	uint8_t *ea = set_bytes(a, &la), *eb = set_bytes(b, &lb);
	bool same = la == lb && memcmp(ea, eb, la) == 0;

	free(ea);
	free(eb);
	return same;
}

/* ---- values ---------------------------------------------------------------------------------------------------- */

/* A value already in use (a gauge with a sketch and a set in it), as the readers reuse one value for many decodes. */
static struct dts_stored used;

static void used_init(void)
{
	dts_stored_init(&used);
	used.type = DTS_GAUGE;
	used.first = 3;
	used.last = 17;
	used.agg = (struct dts_agg){ .sum = 12.5, .count = 3, .min = -1, .max = 9, .fst = 2, .lst = 7 };
	for (int i = -20; i <= 20; i++)
		CHECK(dts_sketch_add(&used.sketch, i * 1.75, 1.0) == 0);
	for (uint64_t i = 1; i <= 40; i++)
		CHECK(dts_set_add(&used.set, i * 0x9e3779b97f4a7c15ULL) == 0);
}

static void used_copy(struct dts_stored *v)
{
	dts_stored_init(v);
	v->type = used.type;
	v->first = used.first;
	v->last = used.last;
	v->agg = used.agg;
	CHECK(dts_sketch_copy(&v->sketch, &used.sketch) == 0);
	CHECK(dts_set_merge(&v->set, &used.set) == 0);
}

static void check_decoded(const struct dts_stored *v)
{
	CHECK(v->type < DTS_NTYPES && v->first <= v->last && v->last <= 59);
	CHECK(isfinite(v->agg.count) && v->agg.count >= 0);
	if (v->type != DTS_TIMER)
		CHECK(sketch_empty(&v->sketch));
	if (v->type != DTS_SET)
		CHECK(set_empty(&v->set));
}

static void fuzz_value(const uint8_t *data, size_t size)
{
	struct dts_stored v, w, t;
	uint8_t *buf;
	size_t n;
	int rc;

	dts_stored_init(&v);
	dts_stored_init(&t);
	used_copy(&w);
	rc = dts_storage_value_decode(&v, data, size);
	CHECK(rc == 0 || rc == -EINVAL || rc == -EPROTONOSUPPORT || rc == -ENOMEM);
	CHECK((rc == -EPROTONOSUPPORT) == (size >= 1 && data[0] > DTS_STORAGE_VALUE_VERSION));
	CHECK(dts_storage_value_decode(&w, data, size) == rc);
	if (rc < 0) {
		/* the used value: type, offsets and agg unchanged; sketch and set unchanged or emptied */
		CHECK(w.type == used.type && w.first == used.first && w.last == used.last);
		CHECK(same_agg(&w.agg, &used.agg));
		CHECK(sketch_empty(&w.sketch) || same_sketch_bytes(&w.sketch, &used.sketch));
		CHECK(set_empty(&w.set) || same_set_bytes(&w.set, &used.set));
		goto out;
	}
	check_decoded(&v);
	check_decoded(&w);
	CHECK(w.type == v.type && w.first == v.first && w.last == v.last && same_agg(&w.agg, &v.agg));
	CHECK(same_sketch_bytes(&w.sketch, &v.sketch) && same_set_bytes(&w.set, &v.set));

	n = dts_storage_value_size(&v);
	buf = scratch(n);
	CHECK(dts_storage_value_encode(&v, buf, n - 1) == -ENOSPC);
	CHECK(dts_storage_value_encode(&v, buf, n) == (int)n);
	if (v.type != DTS_TIMER || data[DTS_STORAGE_VALUE_HEADER] != 1) /* not a version-1 sketch: canonical */
		CHECK(n == size && memcmp(buf, data, n) == 0);
	CHECK(dts_storage_value_decode(&t, buf, n) == 0);
	check_decoded(&t);
	CHECK(t.type == v.type && t.first == v.first && t.last == v.last && same_agg(&t.agg, &v.agg));
	CHECK(t.sketch.level == v.sketch.level && same_bits(t.sketch.zero, v.sketch.zero) &&
	      same_bits(t.sketch.count, v.sketch.count));
	fuzz_same_bins(&v.sketch, &t.sketch);
	CHECK(same_sketch_bytes(&t.sketch, &v.sketch));
	CHECK((t.set.hll == NULL) == (v.set.hll == NULL) && t.set.n == v.set.n);
	CHECK(same_set_bytes(&t.set, &v.set));
	CHECK(same_bits(dts_set_cardinality(&t.set), dts_set_cardinality(&v.set)));
	free(buf);
out:
	dts_stored_free(&v);
	dts_stored_free(&w);
	dts_stored_free(&t);
}

/* ---- keys ------------------------------------------------------------------------------------------------------ */

static bool inside(const char *p, size_t n, const char *s, size_t len)
{
	return p >= s && p + n <= s + len;
}

static char *cstr(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	CHECK(s);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* A decoded SERIES (the len bytes at s): spans inside it and dts_storage_series_encode gives back exactly those bytes.
 * When key is not NULL, the series is followed there by '|' and the time of resolution res at t: the key encoder must
 * give back the whole key (klen bytes). */
static void check_series(const struct dts_key_view *kv, const char *s, size_t len, const char *key, size_t klen,
			 enum dts_res res)
{
	char buf[DTS_STORAGE_KEY_MAX + 1];
	struct dts_series_id id;
	char *u, *p, *c, *tg;

	CHECK(kv->series == s && kv->series_len == len && kv->type < DTS_NTYPES);
	CHECK(kv->user_len >= 1 && kv->user_len <= DTS_MAX_USER && inside(kv->user, kv->user_len, s, len));
	CHECK(kv->process_len >= 1 && kv->process_len <= DTS_MAX_NAME && inside(kv->process, kv->process_len, s, len));
	CHECK(kv->counter_len >= 1 && kv->counter_len <= DTS_MAX_NAME && inside(kv->counter, kv->counter_len, s, len));
	CHECK(kv->tags_len <= DTS_MAX_TAGS_LEN && (kv->tags_len == 0 || inside(kv->tags, kv->tags_len, s, len)));
	u = cstr(kv->user, kv->user_len);
	p = cstr(kv->process, kv->process_len);
	c = cstr(kv->counter, kv->counter_len);
	tg = cstr(kv->tags, kv->tags_len);
	id = (struct dts_series_id){ .user = u, .process = p, .counter = c, .tags = tg, .type = kv->type };
	CHECK(len <= DTS_STORAGE_SERIES_MAX);
	CHECK(dts_storage_series_encode(buf, len, &id) == -ENOSPC);
	CHECK(dts_storage_series_encode(buf, sizeof(buf), &id) == (int)len && memcmp(buf, s, len) == 0);
	if (key) {
		CHECK(klen <= DTS_STORAGE_KEY_MAX);
		CHECK(dts_storage_key_encode(buf, klen, &id, res, kv->t) == -ENOSPC);
		CHECK(dts_storage_key_encode(buf, sizeof(buf), &id, res, kv->t) == (int)klen &&
		      memcmp(buf, key, klen) == 0);
	}
	free(u);
	free(p);
	free(c);
	free(tg);
}

/* A decoded time t of resolution res from the len bytes at s: in range, on its boundary, and encoded back exactly. */
static void check_time(int64_t t, const char *s, size_t len, enum dts_res res)
{
	char buf[DTS_STORAGE_TIME_LEN_MINUTE + 1];

	CHECK(t >= 0 && t <= DTS_STORAGE_TIME_MAX && t % (res == DTS_RES_HOUR ? 3600 : 60) == 0);
	CHECK(dts_storage_time_encode(buf, len, res, t) == -ENOSPC);
	CHECK(dts_storage_time_encode(buf, sizeof(buf), res, t) == (int)len && memcmp(buf, s, len) == 0);
}

static void fuzz_key(const char *s, size_t len, enum dts_res res)
{
	const size_t tl = res == DTS_RES_HOUR ? DTS_STORAGE_TIME_LEN_HOUR : DTS_STORAGE_TIME_LEN_MINUTE;
	struct dts_key_view kv;

	if (dts_storage_key_decode(s, len, res, &kv) != 0)
		return;
	CHECK(len >= tl + 2);
	check_time(kv.t, s + len - tl, tl, res);
	check_series(&kv, s, len - tl - 1, s, len, res);
}

static void fuzz_ckpt_key(const char *s, size_t len)
{
	const size_t tl = DTS_STORAGE_TIME_LEN_MINUTE;
	struct dts_key_view kv;

	if (dts_storage_ckpt_key_decode(s, len, &kv) != 0)
		return;
	CHECK(len >= tl + 2 && s[tl] == '|');
	check_time(kv.t, s, tl, DTS_RES_MINUTE);
	check_series(&kv, s + tl + 1, len - tl - 1, NULL, 0, DTS_RES_MINUTE);
}

static void fuzz_chunk_key(const char *s, size_t len)
{
	char buf[DTS_STORAGE_CKPT_KEY_LEN + 1];
	uint64_t seq;
	int64_t t;

	if (dts_storage_ckpt_chunk_key_decode(s, len, &t, &seq) != 0)
		return;
	CHECK(len == DTS_STORAGE_CKPT_KEY_LEN);
	check_time(t, s, DTS_STORAGE_TIME_LEN_MINUTE, DTS_RES_MINUTE);
	CHECK(dts_storage_ckpt_chunk_key(buf, len, t, seq) == -ENOSPC);
	CHECK(dts_storage_ckpt_chunk_key(buf, sizeof(buf), t, seq) == (int)len && memcmp(buf, s, len) == 0);
}

static void fuzz_time(const char *s, size_t len, enum dts_res res)
{
	int64_t t;

	if (dts_storage_time_decode(s, len, res, &t) == 0)
		check_time(t, s, len, res);
}

static void fuzz_series(const char *s, size_t len)
{
	struct dts_key_view kv;

	if (dts_storage_series_decode(s, len, &kv) != 0)
		return;
	CHECK(kv.t == 0);
	check_series(&kv, s, len, NULL, 0, DTS_RES_MINUTE);
}

/* ---- checkpoint chunks ----------------------------------------------------------------------------------------- */

static void fuzz_chunk(const uint8_t *data, size_t size)
{
	struct dts_ckpt_reader r;
	const uint8_t *val, *prev = data;
	const char *series;
	size_t slen, vlen, w;
	uint32_t nrec = 0;
	uint8_t *out;
	int rc;

	rc = dts_storage_ckpt_chunk_open(&r, data, size);
	CHECK(rc == 0 || rc == -EINVAL || rc == -EPROTONOSUPPORT);
	CHECK((rc == -EPROTONOSUPPORT) == (size >= 5 && data[0] > DTS_STORAGE_CKPT_VERSION));
	if (rc < 0)
		return;
	CHECK(size >= 5 && data[0] == DTS_STORAGE_CKPT_VERSION);
	/* the records written again, one by one, must be the bytes read so far (each varint adds at most 5 bytes) */
	out = scratch(size + 10);
	memcpy(out, data, 5);
	w = 5;
	while ((rc = dts_storage_ckpt_chunk_next(&r, &series, &slen, &val, &vlen)) == 1) {
		struct dts_key_view kv;

		CHECK(slen >= 1 && (const uint8_t *)series >= prev && inside(series, slen, (const char *)data, size));
		CHECK(val >= (const uint8_t *)series + slen && val + vlen <= data + size);
		prev = val + vlen;
		w += dts_put_varint(out + w, slen);
		CHECK(w + slen <= size);
		memcpy(out + w, series, slen);
		w += slen;
		w += dts_put_varint(out + w, vlen);
		CHECK(w + vlen <= size);
		memcpy(out + w, val, vlen);
		w += vlen;
		CHECK(w == (size_t)(prev - data) && memcmp(out, data, w) == 0);
		nrec++;
		if (dts_storage_series_decode(series, slen, &kv) == 0)
			check_series(&kv, series, slen, NULL, 0, DTS_RES_MINUTE);
		fuzz_value(val, vlen);
	}
	CHECK(rc == 0 || rc == -EINVAL);
	if (rc == 0) /* the whole value, and the declared number of records */
		CHECK(w == size && nrec == (uint32_t)data[1] + ((uint32_t)data[2] << 8) + ((uint32_t)data[3] << 16) +
						   ((uint32_t)data[4] << 24));
	free(out);
}

/* ---- events and process states --------------------------------------------------------------------------------- */

static void fuzz_event(const uint8_t *data, size_t size)
{
	struct dts_stored_event se;
	struct dts_event ev;
	uint8_t *buf;
	int rc;

	rc = dts_storage_event_decode(data, size, &se);
	CHECK(rc == 0 || rc == -EINVAL || rc == -EPROTONOSUPPORT);
	CHECK((rc == -EPROTONOSUPPORT) == (size >= 1 && data[0] > DTS_STORAGE_EVENT_VERSION));
	if (rc < 0)
		return;
	CHECK(se.process_len >= 1 && se.process_len <= DTS_MAX_NAME && se.ev.text_len <= DTS_NATIVE_MAX_TEXT);
	CHECK(size == DTS_STORAGE_EVENT_FIXED + se.process_len + se.ev.text_len && se.ev.kind <= 1);
	CHECK(se.ev.user == NULL && se.ev.process == (const char *)data + 27 &&
	      se.ev.text == (const char *)data + 29 + se.process_len);
	if (memchr(se.ev.process, '\0', se.process_len))
		return; /* the encoder takes the process as a C string */
	ev = se.ev;
	ev.process = cstr(se.ev.process, se.process_len);
	buf = scratch(size);
	CHECK(dts_storage_event_encode(&ev, buf, size - 1) == -ENOSPC);
	CHECK(dts_storage_event_encode(&ev, buf, size) == (int)size && memcmp(buf, data, size) == 0);
	free((char *)ev.process);
	free(buf);
}

static void fuzz_process(const uint8_t *data, size_t size)
{
	uint8_t buf[DTS_STORAGE_PROCESS_VALUE];
	struct dts_process p;
	int rc;

	rc = dts_storage_process_decode(data, size, &p);
	CHECK(rc == 0 || rc == -EINVAL || rc == -EPROTONOSUPPORT);
	CHECK((rc == -EPROTONOSUPPORT) == (size >= 1 && data[0] > DTS_STORAGE_PROCESS_VERSION));
	if (rc < 0)
		return;
	CHECK(size == DTS_STORAGE_PROCESS_VALUE);
	CHECK(dts_storage_process_encode(&p, buf, sizeof(buf) - 1) == -ENOSPC);
	CHECK(dts_storage_process_encode(&p, buf, sizeof(buf)) == (int)size && memcmp(buf, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data + 1;

	if (size < 1)
		return 0;
	if (!used.sketch.count)
		used_init();
	switch (data[0] % MODES) {
	case M_VALUE:
		fuzz_value(data + 1, size - 1);
		break;
	case M_CHUNK:
		fuzz_chunk(data + 1, size - 1);
		break;
	case M_KEY_MINUTE:
		fuzz_key(s, size - 1, DTS_RES_MINUTE);
		break;
	case M_KEY_HOUR:
		fuzz_key(s, size - 1, DTS_RES_HOUR);
		break;
	case M_CKPT_KEY:
		fuzz_ckpt_key(s, size - 1);
		break;
	case M_CHUNK_KEY:
		fuzz_chunk_key(s, size - 1);
		break;
	case M_TIME_MINUTE:
		fuzz_time(s, size - 1, DTS_RES_MINUTE);
		break;
	case M_TIME_HOUR:
		fuzz_time(s, size - 1, DTS_RES_HOUR);
		break;
	case M_SERIES:
		fuzz_series(s, size - 1);
		break;
	case M_EVENT:
		fuzz_event(data + 1, size - 1);
		break;
	case M_PROCESS:
		fuzz_process(data + 1, size - 1);
		break;
	}
	return 0;
}
