/*
 * fuzz_native.c - libFuzzer target for the native datagram decoder (dts_native_open and its iterators).
 *
 * Input: byte 0 is a mode, the rest the payload.
 *   mode bit 0: the harness appends a valid MAC (key 7, secret "s3cret") to the payload, so mutated contents get past
 *               the MAC check and reach the content parser; without it the payload is the whole datagram.
 *   mode bit 1: the harness first writes a plausible header prefix into the payload (magic, version, key id 7, a slot
 *               equal to the fixed "now"), so mutations of the rest are not all stopped by the first checks.
 * Whatever the input: the decoder returns 0 or one of the reject reasons, never reads outside the datagram (ASan),
 * never leaks. When it accepts:
 *   - the iterators return exactly npartials partials and nevents events, each with valid names and tags, a finite
 *     aggregate (empty exactly for PIECE partials), and, for timers and sets, an encoding that decodes through the
 *     scratch and re-encodes to the same bytes;
 *   - when the datagram has no PIECE partial and no version-1 sketch (decoded for old clients, re-encoded as version 2),
 *     encoding the decoded view again gives back the same bytes (the format is canonical), except the flags and part
 *     fields the encoder sets itself;
 *   - the same datagram a second time is rejected as replayed;
 *   - the engine (dts_core_ingest on a long-lived merger's core, hand-over, dts_merger_step) takes every partial of it
 *     or counts what it dropped, or rejects it as a replay of an earlier input; the merger decodes and merges its
 *     sketches, sets, process report and events without error (ASan watches the table's logs).
 * Seeds: corpus/native/ (made with the encoder: heartbeats, every type, tags, events, pieces of a split sketch).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dts/engine.h"
#include "dts/native.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000

static struct dts_native_mac_key mac;
static struct dts_native_key key = { .user = "42", .user_len = 2, .mac = &mac };
static struct dts_native_scratch *scratch;
static struct dts_native_enc enc;
static struct dts_merger *merger;

static const struct dts_native_key *lookup(void *ctx, uint32_t id)
{
	(void)ctx;
	return id == 7 ? &key : NULL;
}

struct out {
	uint8_t b[DTS_NATIVE_MAX_DATAGRAM];
	size_t len;
	unsigned n;
};

static int grab(void *ctx, const uint8_t *d, size_t len)
{
	struct out *o = ctx;

	memcpy(o->b, d, len);
	o->len = len;
	o->n++;
	return 0;
}

/* Re-encode the accepted view and compare (no PIECE partials: they cannot be given to the encoder). */
static void reencode(const uint8_t *buf, size_t len, const struct dts_native_msg *m)
{
	struct dts_native_hdr h = {
		.key_id = m->key_id,
		.instance = m->instance,
		.slot = m->slot,
		.user = m->user,
		.user_len = m->user_len,
		.process = m->process,
		.process_len = m->process_len,
		.stats = m->stats,
	};
	struct dts_native_iter it;
	struct dts_native_event ev;
	struct dts_native_partial p;
	static struct out o;
	struct dts_sketch sk;
	struct dts_set st;
	uint64_t seq = m->seq;

	o.n = 0;
	CHECK(dts_native_enc_begin(&enc, &h, &mac, &seq, grab, &o) == 0);
	dts_native_iter_events(m, &it);
	while (dts_native_next_event(&it, &ev))
		CHECK(dts_native_enc_event(&enc, &ev) == 0);
	dts_native_iter_partials(m, &it);
	while (dts_native_next_partial(&it, &p)) {
		dts_sketch_init(&sk);
		dts_set_init(&st);
		/* the scratch is reused per partial: copy it out so the encoder reads a stable object */
		if (p.type == DTS_TIMER) {
			CHECK(dts_sketch_copy(&sk, dts_native_partial_sketch(&p, scratch)) == 0);
			p.sketch = &sk;
		}
		if (p.type == DTS_SET) {
			CHECK(dts_set_merge(&st, dts_native_partial_set(&p, scratch)) == 0);
			p.set = &st;
		}
		CHECK(dts_native_enc_partial(&enc, &p) == 0);
		dts_sketch_free(&sk);
		dts_set_free(&st);
	}
	CHECK(dts_native_enc_end(&enc) == 1);
	CHECK(o.n == 1 && o.len == len);
	o.b[2] = buf[2]; /* flags: the encoder sets LAST */
	o.b[32] = buf[32]; /* part: the encoder counts from 0 */
	o.b[33] = buf[33];
	CHECK(memcmp(o.b, buf, len - DTS_NATIVE_MAC_LEN) == 0);
}

static void check_accepted(const uint8_t *buf, size_t len, const struct dts_native_msg *m)
{
	struct dts_native_iter it;
	struct dts_native_event ev;
	struct dts_native_partial p;
	unsigned n = 0;
	bool piece = false, legacy = false;

	CHECK(dts_native_user_valid(m->user, m->user_len) && m->user_len == 2 && memcmp(m->user, "42", 2) == 0);
	CHECK(m->slot == NOW - NOW % 5 || (m->slot % 5 == 0 && m->slot > 0));
	dts_native_iter_events(m, &it);
	while (dts_native_next_event(&it, &ev)) {
		CHECK(ev.kind <= DTS_NATIVE_WARNING && ev.len <= DTS_NATIVE_MAX_TEXT);
		CHECK((const uint8_t *)ev.text >= buf && (const uint8_t *)ev.text + ev.len <= buf + len);
		n++;
	}
	CHECK(n == m->nevents);
	n = 0;
	dts_native_iter_partials(m, &it);
	while (dts_native_next_partial(&it, &p)) {
		CHECK(dts_native_name_valid(p.name, p.name_len));
		CHECK(m->process_len + 1 + p.name_len <= DTS_MAX_NAME);
		CHECK(p.tags_len == 0 || dts_native_tags_valid(p.tags, p.tags_len));
		CHECK((const uint8_t *)p.name >= buf && (const uint8_t *)p.name + p.name_len <= buf + len);
		if (p.flags & DTS_NATIVE_PF_PIECE) {
			piece = true;
			CHECK(p.agg.count == 0.0);
		} else {
			CHECK(p.agg.count > 0.0 && isfinite(p.agg.sum) && p.agg.min <= p.agg.max);
		}
		if (p.type == DTS_TIMER && p.enc[0] == 1) {
			/* a version-1 sketch (accepted from old clients) re-encodes as version 2: it must decode again */
			const struct dts_sketch *s = dts_native_partial_sketch(&p, scratch);
			struct dts_sketch again;
			size_t sz;
			uint8_t *e;

			legacy = true;
			CHECK(s);
			sz = dts_sketch_encoded_size(s);
			e = malloc(sz);
			CHECK(e && dts_sketch_encode(s, e, sz) == (int)sz);
			dts_sketch_init(&again);
			CHECK(dts_sketch_decode(&again, e, sz) == (int)sz && again.count == s->count);
			dts_sketch_free(&again);
			free(e);
		} else if (p.type == DTS_TIMER) {
			const struct dts_sketch *s = dts_native_partial_sketch(&p, scratch);
			uint8_t *e;

			CHECK(s && dts_sketch_encoded_size(s) == p.enc_len);
			e = malloc(p.enc_len);
			CHECK(e && dts_sketch_encode(s, e, p.enc_len) == (int)p.enc_len);
			CHECK(memcmp(e, p.enc, p.enc_len) == 0);
			free(e);
		} else if (p.type == DTS_SET) {
			const struct dts_set *s = dts_native_partial_set(&p, scratch);

			CHECK(s && dts_set_encoded_size(s) == p.enc_len);
		} else {
			CHECK(p.enc == NULL && !dts_native_partial_sketch(&p, scratch) && !dts_native_partial_set(&p, scratch));
		}
		n++;
	}
	CHECK(n == m->npartials);
	if (!piece && !legacy)
		reencode(buf, len, m);
}

/* Through the engine: the same path as an RX core's in dattssd. */
static void engine_feed(const uint8_t *buf, size_t len, const struct dts_native_msg *m)
{
	struct dts_core *c = dts_merger_core(merger, 0);
	struct dts_core_stats a, b;
	uint64_t dropped = 0;
	unsigned got;

	dts_core_stats_read(c, &a);
	got = dts_core_ingest(c, (const char *)buf, len, NOW);
	dts_core_stats_read(c, &b);
	for (int d = 0; d < DTS_DROP_COUNT; d++)
		dropped += b.dropped[d] - a.dropped[d];
	if (b.native_datagrams == a.native_datagrams + 1) {
		CHECK(b.partials - a.partials == got && got + dropped == m->npartials);
		CHECK(b.events + b.events_dropped - a.events - a.events_dropped == m->nevents);
	} else {
		/* an earlier input had this (instance, sequence) */
		CHECK(got == 0 && b.native_rejected[DTS_NREJ_REPLAYED] + b.native_rejected[DTS_NREJ_REPLAY_TOO_OLD] +
					  b.native_rejected[DTS_NREJ_REPLAY_FULL] ==
				  a.native_rejected[DTS_NREJ_REPLAYED] + a.native_rejected[DTS_NREJ_REPLAY_TOO_OLD] +
					  a.native_rejected[DTS_NREJ_REPLAY_FULL] + 1);
	}
	dts_core_flush(c);
	dts_core_tick(c, (int64_t)NOW * 1000);
	dts_merger_step(merger, (int64_t)NOW * 1000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dts_native_cfg cfg;
	struct dts_native_replay *replay;
	struct dts_native_msg m;
	uint8_t mode, *buf;
	size_t n, len;
	int r;

	if (!scratch) {
		CHECK(dts_native_mac_key_init(&mac, "s3cret", 6) == 0);
		scratch = dts_native_scratch_create();
		CHECK(scratch);
		dts_native_cfg_defaults(&cfg);
		cfg.key_lookup = lookup;

		struct dts_merger_cfg mc;

		dts_rcu_register_thread();
		dts_merger_cfg_defaults(&mc);
		mc.table_capacity = 1024;
		mc.max_series = 100000; /* bounded memory over a long fuzzing run (beyond: counted drops) */
		mc.native = cfg;
		mc.ident_key = 0x6a09e667f3bcc908ULL; /* fixed: an input replays alike in every run */
		merger = dts_merger_create(&mc);
		CHECK(merger);
	}
	if (size < 1)
		return 0;
	mode = data[0];
	n = size - 1;
	len = n + ((mode & 1) ? DTS_NATIVE_MAC_LEN : 0);
	buf = malloc(len ? len : 1);
	CHECK(buf);
	memcpy(buf, data + 1, n);
	if ((mode & 2) && n >= 32) {
		uint64_t slot = NOW;

		buf[0] = DTS_NATIVE_MAGIC;
		buf[1] = DTS_NATIVE_VERSION;
		memcpy(buf + 4, "\x07\x00\x00\x00", 4);
		for (int i = 0; i < 8; i++)
			buf[24 + i] = (uint8_t)(slot >> (8 * i));
	}
	if (mode & 1)
		dts_native_mac(&mac, buf, n, buf + n);
	replay = dts_native_replay_create(16);
	CHECK(replay);
	r = dts_native_open(&cfg, replay, scratch, buf, len, NOW, &m);
	CHECK(r == 0 || (r < 0 && r > -DTS_NREJ_COUNT));
	if (r == 0) {
		check_accepted(buf, len, &m);
		CHECK(dts_native_open(&cfg, replay, scratch, buf, len, NOW, &m) == -DTS_NREJ_REPLAYED);
		engine_feed(buf, len, &m);
	}
	dts_native_replay_destroy(replay);
	free(buf);
	return 0;
}
