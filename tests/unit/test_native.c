/*
 * test_native.c - the native protocol codec (engine/src/native.c): round trips of every field and type, splitting of
 * large batches and of sketches and sets too big for one datagram, and every reject reason.
 *
 * Datagrams are made by the encoder (dts_native_enc_*) and checked by the decoder (dts_native_open and the
 * iterators). Malformed contents that the encoder refuses to write are crafted: a real header from the encoder,
 * a hand-written body, the counts patched and the MAC recomputed (so they reach the content checks). Every decode
 * reads from a heap copy of exactly the datagram's length, so an ASan build catches a read past it.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <openssl/hmac.h>

#include "dts/hash.h"
#include "dts/native.h"

#define NOW INT64_C(1700000000) /* a multiple of 5 */
#define MAXD 512 /* datagrams one test batch may produce */

/* ---------------------------------------------------------------------------------------------------------------- */
/* Keys                                                                                                             */

struct test_key {
	uint32_t id;
	const char *user;
	const char *secret;
	struct dts_native_mac_key mac;
	struct dts_native_key k;
};

static struct test_key keys[] = {
	{ .id = 7, .user = "42", .secret = "s3cret" },
	{ .id = 8, .user = "jane.doe+ops@example.com", .secret = "another secret" },
	{ .id = 9, .user = "42", .secret = "rotated-secret-of-42" },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct dts_native_key *lookup(void *ctx, uint32_t id)
{
	(void)ctx;
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].id == id)
			return &keys[i].k;
	return NULL;
}

static void keys_init(void)
{
	for (size_t i = 0; i < NKEYS; i++) {
		cr_assert_eq(dts_native_mac_key_init(&keys[i].mac, keys[i].secret, strlen(keys[i].secret)), 0);
		keys[i].k = (struct dts_native_key){ .user = keys[i].user, .user_len = strlen(keys[i].user),
						     .mac = &keys[i].mac };
	}
}

static const struct dts_native_mac_key *mac_of(uint32_t id)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].id == id)
			return &keys[i].mac;
	return NULL;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Batches                                                                                                          */

struct dgram {
	uint8_t *b;
	size_t len;
};

struct batch {
	struct dgram d[MAXD];
	unsigned n;
	uint64_t seq;
};

static int collect(void *ctx, const uint8_t *dgram, size_t len)
{
	struct batch *b = ctx;

	cr_assert_lt(b->n, MAXD);
	cr_assert_leq(len, DTS_NATIVE_MAX_DATAGRAM);
	b->d[b->n].b = malloc(len);
	cr_assert_not_null(b->d[b->n].b);
	memcpy(b->d[b->n].b, dgram, len);
	b->d[b->n].len = len;
	b->n++;
	return 0;
}

static void batch_free(struct batch *b)
{
	for (unsigned i = 0; i < b->n; i++)
		free(b->d[i].b);
	b->n = 0;
}

static struct dts_native_hdr hdr_default(void)
{
	return (struct dts_native_hdr){
		.key_id = 7,
		.instance = 0x1122334455667788ULL,
		.slot = NOW,
		.user = "42",
		.user_len = 2,
		.process = "api",
		.process_len = 3,
		.stats = { .uptime_s = 3600, .rss_bytes = 12345678, .cpu_us = 987654, .cpu_pct = 12.5f, .errors = 3,
			   .warnings = 4, .dropped = 5 },
	};
}

/* Encode events then partials into b with hdr; returns the encoder's final result. */
static int encode(struct batch *b, const struct dts_native_hdr *h, const struct dts_native_event *ev, size_t nev,
		  const struct dts_native_partial *p, size_t np)
{
	static struct dts_native_enc e; /* 5.5 KiB: off the stack */
	int r;

	if (!b->seq)
		b->seq = 1;
	r = dts_native_enc_begin(&e, h, mac_of(h->key_id) ? mac_of(h->key_id) : &keys[0].mac, &b->seq, collect, b);
	cr_assert_eq(r, 0, "begin: %d", r);
	for (size_t i = 0; i < nev; i++)
		cr_assert_eq(dts_native_enc_event(&e, &ev[i]), 0, "event %zu", i);
	for (size_t i = 0; i < np; i++)
		cr_assert_eq(dts_native_enc_partial(&e, &p[i]), 0, "partial %zu", i);
	return dts_native_enc_end(&e);
}

struct decoder {
	struct dts_native_cfg cfg;
	struct dts_native_replay *replay;
	struct dts_native_scratch *scratch;
};

static void dec_init(struct decoder *d, uint32_t slots)
{
	keys_init();
	dts_native_cfg_defaults(&d->cfg);
	d->cfg.key_lookup = lookup;
	d->replay = dts_native_replay_create(slots);
	d->scratch = dts_native_scratch_create();
	cr_assert_not_null(d->replay);
	cr_assert_not_null(d->scratch);
}

static void dec_fini(struct decoder *d)
{
	dts_native_replay_destroy(d->replay);
	dts_native_scratch_destroy(d->scratch);
}

/* Decode from a heap copy of exactly len bytes. The copy is kept in *copy (the view points into it). */
static int open_copy(struct decoder *d, const uint8_t *buf, size_t len, int64_t now, struct dts_native_msg *m,
		     uint8_t **copy)
{
	uint8_t *c = malloc(len ? len : 1);
	int r;

	cr_assert_not_null(c);
	memcpy(c, buf, len);
	r = dts_native_open(&d->cfg, d->replay, d->scratch, c, len, now, m);
	if (copy)
		*copy = c;
	else
		free(c);
	return r;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* MAC                                                                                                              */

static void unhex(const char *h, uint8_t *out)
{
	for (size_t i = 0; h[2 * i]; i++)
		sscanf(h + 2 * i, "%2hhx", &out[i]);
}

struct mac_case {
	const char *name;
	size_t key_len;
	uint8_t key_byte; /* key of key_len bytes of this value, unless key_text */
	const char *key_text;
	const char *data;
	const char *want_hex; /* full HMAC-SHA256, from RFC 4231 */
};

static const struct mac_case mac_cases[] = {
	{ "rfc4231_2", 0, 0, "Jefe", "what do ya want for nothing?",
	  "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
	{ "rfc4231_1", 20, 0x0b, NULL, "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
	{ "rfc4231_6_long_key", 131, 0xaa, NULL, "Test Using Larger Than Block-Size Key - Hash Key First",
	  "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
};

Test(native_mac, rfc4231_vectors_truncated_to_16)
{
	for (size_t i = 0; i < sizeof(mac_cases) / sizeof(mac_cases[0]); i++) {
		const struct mac_case *c = &mac_cases[i];
		uint8_t key[256], want[32], got[DTS_NATIVE_MAC_LEN];
		size_t klen = c->key_text ? strlen(c->key_text) : c->key_len;
		struct dts_native_mac_key k;

		if (c->key_text)
			memcpy(key, c->key_text, klen);
		else
			memset(key, c->key_byte, klen);
		unhex(c->want_hex, want);
		cr_assert_eq(dts_native_mac_key_init(&k, key, klen), 0);
		dts_native_mac(&k, c->data, strlen(c->data), got);
		cr_assert_arr_eq(got, want, DTS_NATIVE_MAC_LEN, "%s", c->name);
	}
}

Test(native_mac, matches_openssl_hmac_for_all_lengths)
{
	uint8_t data[300], key[100], want[32], got[DTS_NATIVE_MAC_LEN];
	unsigned int wl;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + 7);
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 17 + 3);
	for (size_t kl = 0; kl <= sizeof(key); kl += 7) {
		struct dts_native_mac_key k;

		cr_assert_eq(dts_native_mac_key_init(&k, key, kl), 0);
		for (size_t dl = 0; dl <= sizeof(data); dl += 13) {
			cr_assert_not_null(HMAC(EVP_sha256(), key, (int)kl, data, dl, want, &wl));
			dts_native_mac(&k, data, dl, got);
			cr_assert_arr_eq(got, want, DTS_NATIVE_MAC_LEN, "key %zu data %zu", kl, dl);
		}
	}
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Round trips                                                                                                      */

static bool same_bits(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

static void assert_agg_eq(const struct dts_agg *a, const struct dts_agg *b, const char *what)
{
	cr_assert(same_bits(a->sum, b->sum) && same_bits(a->count, b->count) && same_bits(a->min, b->min) &&
			  same_bits(a->max, b->max) && same_bits(a->fst, b->fst) && same_bits(a->lst, b->lst),
		  "%s: agg (%g %g %g %g %g %g) != (%g %g %g %g %g %g)", what, a->sum, a->count, a->min, a->max, a->fst,
		  a->lst, b->sum, b->count, b->min, b->max, b->fst, b->lst);
}

/* Bin for bin: equal encodings (the encoding is canonical). */
static void assert_sketch_eq(const struct dts_sketch *a, const struct dts_sketch *b, const char *what)
{
	size_t na = dts_sketch_encoded_size(a), nb = dts_sketch_encoded_size(b);
	uint8_t *ea = malloc(na), *eb = malloc(nb);

	cr_assert_eq(na, nb, "%s: sketch sizes %zu != %zu", what, na, nb);
	cr_assert_eq(dts_sketch_encode(a, ea, na), (int)na);
	cr_assert_eq(dts_sketch_encode(b, eb, nb), (int)nb);
	cr_assert_arr_eq(ea, eb, na, "%s: sketch bins differ", what);
	free(ea);
	free(eb);
}

static void assert_set_eq(const struct dts_set *a, const struct dts_set *b, const char *what)
{
	size_t na = dts_set_encoded_size(a), nb = dts_set_encoded_size(b);
	uint8_t *ea = malloc(na), *eb = malloc(nb);

	cr_assert_eq(na, nb, "%s: set sizes %zu != %zu", what, na, nb);
	cr_assert_eq(dts_set_encode(a, ea, na), (int)na);
	cr_assert_eq(dts_set_encode(b, eb, nb), (int)nb);
	cr_assert_arr_eq(ea, eb, na, "%s: sets differ", what);
	free(ea);
	free(eb);
}

struct stats_case {
	const char *name;
	struct dts_native_hdr h;
};

Test(native_roundtrip, header_and_stats)
{
	static char long_process[DTS_NATIVE_MAX_PROCESS + 1];
	static char long_user[DTS_MAX_USER + 1];
	struct decoder d;
	struct stats_case cases[4];

	memset(long_process, 'p', DTS_NATIVE_MAX_PROCESS);
	memset(long_user, 'u', DTS_MAX_USER);
	memcpy(long_user, "a.b@c_d+e-f", 11);
	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	cases[0] = (struct stats_case){ "default", hdr_default() };
	cases[1] = (struct stats_case){ "zeros", hdr_default() };
	memset(&cases[1].h.stats, 0, sizeof(cases[1].h.stats));
	cases[1].h.instance = 0;
	cases[2] = (struct stats_case){ "extremes", hdr_default() };
	cases[2].h.stats = (struct dts_native_stats){ UINT32_MAX, UINT64_MAX, UINT64_MAX, 3.4e38f, UINT32_MAX,
						      UINT32_MAX, UINT32_MAX };
	cases[2].h.instance = UINT64_MAX;
	cases[2].h.key_id = 8;
	cases[2].h.user = "jane.doe+ops@example.com";
	cases[2].h.user_len = strlen(cases[2].h.user);
	cases[3] = (struct stats_case){ "longest_strings", hdr_default() };
	cases[3].h.process = long_process;
	cases[3].h.process_len = DTS_NATIVE_MAX_PROCESS;
	cases[3].h.slot = NOW - 295;

	for (size_t i = 0; i < 4; i++) {
		const struct dts_native_hdr *h = &cases[i].h;
		struct batch b = { .seq = 1000 + i };
		struct dts_native_msg m;
		uint8_t *copy;
		int r = encode(&b, h, NULL, 0, NULL, 0);

		cr_assert_eq(r, 1, "%s: an empty batch is one heartbeat datagram (%d)", cases[i].name, r);
		cr_assert_eq(b.d[0].len, DTS_NATIVE_MIN_DATAGRAM - 2 + h->user_len + h->process_len);
		r = open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, &copy);
		cr_assert_eq(r, 0, "%s: %s", cases[i].name, dts_native_reject_name(-r));
		cr_assert_eq(m.key_id, h->key_id);
		cr_assert_eq(m.instance, h->instance);
		cr_assert_eq(m.seq, 1000 + i);
		cr_assert_eq(b.seq, 1001 + i, "the sequence advances per datagram");
		cr_assert_eq(m.slot, h->slot);
		cr_assert_eq(m.part, 0);
		cr_assert_eq(m.flags, DTS_NATIVE_F_LAST);
		cr_assert_eq(m.npartials, 0);
		cr_assert_eq(m.nevents, 0);
		cr_assert_eq(m.user_len, h->user_len);
		cr_assert_arr_eq(m.user, h->user, h->user_len);
		cr_assert_eq(m.process_len, h->process_len);
		cr_assert_arr_eq(m.process, h->process, h->process_len);
		cr_assert_arr_eq(&m.stats, &h->stats, sizeof(m.stats), "%s: stats", cases[i].name);
		free(copy);
		batch_free(&b);
	}
	(void)long_user;
	dec_fini(&d);
}

Test(native_roundtrip, header_rejected_by_encoder)
{
	static struct dts_native_enc e;
	struct batch b = { 0 };
	struct dts_native_hdr h;
	uint64_t seq = 1;

	keys_init();
	h = hdr_default();
	h.slot = NOW + 1;
	cr_assert_eq(dts_native_enc_begin(&e, &h, &keys[0].mac, &seq, collect, &b), -EINVAL, "slot not a multiple of 5");
	cr_assert_eq(dts_native_enc_end(&e), -EINVAL, "unusable after a failed begin");
	h = hdr_default();
	h.user = "a b";
	h.user_len = 3;
	cr_assert_eq(dts_native_enc_begin(&e, &h, &keys[0].mac, &seq, collect, &b), -EINVAL, "user charset");
	h = hdr_default();
	h.process_len = 0;
	cr_assert_eq(dts_native_enc_begin(&e, &h, &keys[0].mac, &seq, collect, &b), -EINVAL, "empty process");
	h = hdr_default();
	h.stats.cpu_pct = NAN;
	cr_assert_eq(dts_native_enc_begin(&e, &h, &keys[0].mac, &seq, collect, &b), -EINVAL, "cpu NaN");
	cr_assert_eq(b.n, 0);
}

/* A partial to round-trip: the aggregate, and for timers and sets the values that made them. */
struct part_case {
	const char *name;
	const char *counter;
	const char *tags;
	uint8_t type;
	uint8_t flags;
	int nvalues; /* values i = 0 .. n-1 given by gen(i) */
	double (*gen)(int i);
};

static double g_ones(int i)
{
	(void)i;
	return 1.0;
}
static double g_ints(int i)
{
	return (double)(i * 37 % 1000) - 200.0;
}
static double g_frac(int i)
{
	return 0.001 * (i + 1) * 1.37;
}
static double g_huge(int i)
{
	return i % 2 ? 1e300 : -3.5e15;
}
static double g_negzero(int i)
{
	(void)i;
	return -0.0;
}
static double g_lognormal(int i)
{
	/* deterministic pseudo-lognormal: exp of a triangular variable, spread over 4 decades */
	uint64_t h = dts__mix((uint64_t)i + 1, 0x9e3779b97f4a7c15ULL);
	double u = (double)(h >> 11) / 9007199254740992.0, v = (double)(h & 0x7ff) / 2048.0;

	return exp(3.0 + 4.0 * (u + v - 1.0));
}
static double g_wide(int i)
{
	/* both signs, 1e-6 .. 1e9 and zeros: both stores full, a 2,000+ byte sketch */
	uint64_t h = dts__mix((uint64_t)i + 7, 0xc2b2ae3d27d4eb4fULL);
	double m = pow(10.0, -6.0 + 15.0 * (double)(h >> 11) / 9007199254740992.0);

	return i % 11 == 0 ? 0.0 : (h & 1) ? m : -m;
}
static double g_member(int i)
{
	return (double)i;
}

static const struct part_case part_cases[] = {
	{ "counter_single", "requests", NULL, DTS_COUNTER, 0, 1, g_ones },
	{ "counter_ones", "requests", NULL, DTS_COUNTER, 0, 1000, g_ones },
	{ "counter_ints_signed", "delta", NULL, DTS_COUNTER, 0, 500, g_ints },
	{ "counter_fractions", "bytes.ratio", NULL, DTS_COUNTER, DTS_NATIVE_PF_EMPHASIS, 77, g_frac },
	{ "counter_huge", "big", NULL, DTS_COUNTER, 0, 4, g_huge },
	{ "counter_negative_zero", "nz", NULL, DTS_COUNTER, 0, 1, g_negzero },
	{ "gauge_single", "queue_len", "env:prod,host:a", DTS_GAUGE, 0, 1, g_ints },
	{ "gauge_many", "temp-c", NULL, DTS_GAUGE, 0, 50, g_frac },
	{ "timer_single", "query", NULL, DTS_TIMER, 0, 1, g_ones },
	{ "timer_lognormal", "query", "db:main", DTS_TIMER, DTS_NATIVE_PF_EMPHASIS, 5000, g_lognormal },
	{ "timer_both_signs_full", "skew", NULL, DTS_TIMER, 0, 20000, g_wide },
	{ "set_small", "users", NULL, DTS_SET, 0, 10, g_member },
	{ "set_exact_max", "users", NULL, DTS_SET, 0, 64, g_member },
	{ "set_hll_sparse", "users", NULL, DTS_SET, 0, 300, g_member },
	{ "set_hll_dense", "users", "a,b,c", DTS_SET, 0, 20000, g_member },
};

/* Build the aggregate, sketch and set of a case. */
static void build(const struct part_case *c, struct dts_native_partial *p, struct dts_sketch *sk, struct dts_set *st)
{
	memset(p, 0, sizeof(*p));
	p->name = c->counter;
	p->name_len = (uint16_t)strlen(c->counter);
	p->tags = c->tags ? c->tags : "";
	p->tags_len = c->tags ? (uint16_t)strlen(c->tags) : 0;
	p->type = c->type;
	p->flags = c->flags;
	dts_agg_init(&p->agg);
	for (int i = 0; i < c->nvalues; i++) {
		double v = c->gen(i);

		if (c->type == DTS_SET) {
			char txt[32];
			int n = snprintf(txt, sizeof(txt), "member-%d", (int)v);

			cr_assert_eq(dts_set_add(st, dts_hash64(txt, (size_t)n, DTS_HASH_SEED)), 0);
			dts_agg_add(&p->agg, 0.0, 1.0);
		} else {
			dts_agg_add(&p->agg, v, 1.0);
			if (c->type == DTS_TIMER)
				cr_assert_eq(dts_sketch_add(sk, v, 1.0), 0);
		}
	}
	if (c->type == DTS_TIMER)
		p->sketch = sk;
	if (c->type == DTS_SET)
		p->set = st;
}

/*
 * Decode every datagram of b and fold the partials named `name` back together: the aggregate of the non-PIECE
 * partial, the merge of all sketch / set pieces. Returns the number of pieces seen.
 */
static unsigned fold(struct decoder *d, struct batch *b, const char *name, struct dts_agg *agg, struct dts_sketch *sk,
		     struct dts_set *st, uint8_t *flags_out, const char **tags_out, size_t *tags_len)
{
	unsigned pieces = 0;

	dts_agg_init(agg);
	for (unsigned i = 0; i < b->n; i++) {
		struct dts_native_msg m;
		struct dts_native_iter it;
		struct dts_native_partial p;
		uint8_t *copy;
		int r = open_copy(d, b->d[i].b, b->d[i].len, NOW, &m, &copy);

		cr_assert_eq(r, 0, "datagram %u: %s", i, dts_native_reject_name(-r));
		cr_assert_eq(m.part, i);
		cr_assert_eq(m.flags, i + 1 == b->n ? DTS_NATIVE_F_LAST : 0);
		dts_native_iter_partials(&m, &it);
		while (dts_native_next_partial(&it, &p)) {
			if (p.name_len != strlen(name) || memcmp(p.name, name, p.name_len))
				continue;
			pieces++;
			if (!(p.flags & DTS_NATIVE_PF_PIECE)) {
				dts_agg_merge(agg, &p.agg);
				*flags_out = p.flags;
				*tags_out = NULL;
				*tags_len = p.tags_len;
				if (p.tags_len) {
					static char tags[DTS_MAX_TAGS_LEN];

					memcpy(tags, p.tags, p.tags_len);
					*tags_out = tags;
				}
			} else {
				cr_assert_eq(p.agg.count, 0.0, "a piece carries no aggregate");
			}
			if (p.type == DTS_TIMER) {
				const struct dts_sketch *s = dts_native_partial_sketch(&p, d->scratch);

				cr_assert_not_null(s);
				cr_assert_eq(dts_sketch_merge(sk, s), 0);
			}
			if (p.type == DTS_SET) {
				const struct dts_set *s = dts_native_partial_set(&p, d->scratch);

				cr_assert_not_null(s);
				cr_assert_eq(dts_set_merge(st, s), 0);
			}
		}
		free(copy);
	}
	return pieces;
}

Test(native_roundtrip, every_type_bin_for_bin)
{
	struct decoder d;

	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	for (size_t i = 0; i < sizeof(part_cases) / sizeof(part_cases[0]); i++) {
		const struct part_case *c = &part_cases[i];
		struct dts_native_hdr h = hdr_default();
		struct dts_native_partial p;
		struct dts_sketch sk, sk2;
		struct dts_set st, st2;
		struct dts_agg agg;
		struct batch b = { .seq = 1 + 1000 * i };
		uint8_t flags = 0xff;
		const char *tags;
		size_t tags_len;
		unsigned pieces;
		size_t enc_size;

		dts_sketch_init(&sk);
		dts_sketch_init(&sk2);
		dts_set_init(&st);
		dts_set_init(&st2);
		build(c, &p, &sk, &st);
		cr_assert_gt(encode(&b, &h, NULL, 0, &p, 1), 0, "%s", c->name);
		pieces = fold(&d, &b, c->counter, &agg, &sk2, &st2, &flags, &tags, &tags_len);
		assert_agg_eq(&agg, &p.agg, c->name);
		cr_assert_eq(flags, c->flags, "%s: flags", c->name);
		cr_assert_eq(tags_len, p.tags_len, "%s: tags", c->name);
		if (tags_len)
			cr_assert_arr_eq(tags, p.tags, tags_len, "%s: tags", c->name);
		enc_size = c->type == DTS_TIMER ? dts_sketch_encoded_size(&sk) : c->type == DTS_SET ? dts_set_encoded_size(&st) : 0;
		if (c->type == DTS_TIMER)
			assert_sketch_eq(&sk2, &sk, c->name);
		if (c->type == DTS_SET) {
			assert_set_eq(&st2, &st, c->name);
			cr_assert_eq(dts_set_cardinality(&st2), dts_set_cardinality(&st));
		}
		/* pieces exactly when the encoding cannot fit one datagram (80 bytes of header and stats here) */
		if (enc_size > DTS_NATIVE_MAX_DATAGRAM - DTS_NATIVE_MAC_LEN - 80)
			cr_assert_gt(pieces, 1, "%s: %zu bytes must be split", c->name, enc_size);
		else if (enc_size + 2 + p.name_len + 3 + p.tags_len + 49 + 2 <= DTS_NATIVE_MAX_DATAGRAM - DTS_NATIVE_MAC_LEN - 80)
			cr_assert_eq(pieces, 1, "%s: %zu bytes fit", c->name, enc_size);
		dts_sketch_free(&sk);
		dts_sketch_free(&sk2);
		dts_set_free(&st);
		dts_set_free(&st2);
		batch_free(&b);
	}
	dec_fini(&d);
}

Test(native_roundtrip, events)
{
	static char longest[DTS_NATIVE_MAX_TEXT];
	struct dts_native_event ev[] = {
		{ DTS_NATIVE_ERROR, 1700000001234, "database unreachable", 20 },
		{ DTS_NATIVE_WARNING, 1700000002000, "", 0 },
		{ DTS_NATIVE_WARNING, -5, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 tab\tand\nnewline", 0 },
		{ DTS_NATIVE_ERROR, INT64_MAX, longest, DTS_NATIVE_MAX_TEXT },
		{ DTS_NATIVE_ERROR, 0, longest, DTS_NATIVE_MAX_TEXT },
		{ DTS_NATIVE_ERROR, 0, longest, DTS_NATIVE_MAX_TEXT },
	};
	size_t nev = sizeof(ev) / sizeof(ev[0]), seen = 0;
	struct dts_native_hdr h = hdr_default();
	struct dts_native_partial p = { .name = "after", .name_len = 5, .tags = "", .type = DTS_COUNTER };
	struct batch b = { 0 };
	struct decoder d;

	memset(longest, 'x', sizeof(longest));
	ev[2].len = (uint16_t)strlen(ev[2].text);
	dts_agg_init(&p.agg);
	dts_agg_add(&p.agg, 2, 1);
	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	cr_assert_gt(encode(&b, &h, ev, nev, &p, 1), 1, "three 512-byte texts need more than one datagram");
	for (unsigned i = 0; i < b.n; i++) {
		struct dts_native_msg m;
		struct dts_native_iter it;
		struct dts_native_event e;
		uint8_t *copy;

		cr_assert_eq(open_copy(&d, b.d[i].b, b.d[i].len, NOW, &m, &copy), 0);
		dts_native_iter_events(&m, &it);
		while (dts_native_next_event(&it, &e)) {
			cr_assert_lt(seen, nev);
			cr_assert_eq(e.kind, ev[seen].kind);
			cr_assert_eq(e.ts_ms, ev[seen].ts_ms);
			cr_assert_eq(e.len, ev[seen].len);
			cr_assert_arr_eq(e.text, ev[seen].text, e.len);
			seen++;
		}
		free(copy);
	}
	cr_assert_eq(seen, nev);
	batch_free(&b);
	dec_fini(&d);
}

Test(native_roundtrip, encoder_refuses_bad_items)
{
	static struct dts_native_enc e;
	struct dts_native_hdr h = hdr_default();
	struct batch b = { 0 };
	uint64_t seq = 1;
	char name[DTS_MAX_NAME + 1];
	struct dts_native_partial p = { .name = "q", .name_len = 1, .tags = "", .type = DTS_COUNTER };
	struct dts_native_event bad_utf8 = { DTS_NATIVE_ERROR, 0, "\xff", 1 };
	struct dts_native_event too_long = { DTS_NATIVE_ERROR, 0, name, DTS_NATIVE_MAX_TEXT + 1 };
	struct dts_native_event bad_kind = { 2, 0, "x", 1 };

	keys_init();
	memset(name, 'n', sizeof(name));
	dts_agg_init(&p.agg);
	dts_agg_add(&p.agg, 1, 1);
	cr_assert_eq(dts_native_enc_begin(&e, &h, &keys[0].mac, &seq, collect, &b), 0);
	cr_assert_eq(dts_native_enc_event(&e, &bad_utf8), -EINVAL);
	cr_assert_eq(dts_native_enc_event(&e, &too_long), -EMSGSIZE);
	cr_assert_eq(dts_native_enc_event(&e, &bad_kind), -EINVAL);
	p.name_len = DTS_MAX_NAME - 3; /* process "api" + '.' + 197 = 201 */
	p.name = name;
	cr_assert_eq(dts_native_enc_partial(&e, &p), -EINVAL, "process.name over 200");
	p.name_len = DTS_MAX_NAME - 4;
	cr_assert_eq(dts_native_enc_partial(&e, &p), 0, "process.name of exactly 200");
	p.name = "a b";
	p.name_len = 3;
	cr_assert_eq(dts_native_enc_partial(&e, &p), -EINVAL, "name charset");
	p.name = "q";
	p.name_len = 1;
	p.tags = "b,a";
	p.tags_len = 3;
	cr_assert_eq(dts_native_enc_partial(&e, &p), -EINVAL, "tags not canonical");
	p.tags_len = 0;
	p.type = DTS_TIMER;
	cr_assert_eq(dts_native_enc_partial(&e, &p), -EINVAL, "timer without sketch");
	p.type = DTS_COUNTER;
	p.agg.min = 5;
	cr_assert_eq(dts_native_enc_partial(&e, &p), -EINVAL, "min > max");
	p.agg.min = 1;
	p.agg.sum = INFINITY;
	cr_assert_eq(dts_native_enc_partial(&e, &p), -EINVAL, "not finite");
	p.agg.sum = 1;
	cr_assert_eq(dts_native_enc_event(&e, &bad_kind), -EINVAL, "events after partials");
	cr_assert_eq(dts_native_enc_end(&e), 1);
	batch_free(&b);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Splitting                                                                                                        */

Test(native_split, big_batch_of_counters)
{
	enum { N = 3000 };
	static struct dts_native_partial p[N];
	static char names[N][40];
	static bool seen[N];
	struct dts_native_hdr h = hdr_default();
	struct batch b = { .seq = 77 };
	struct decoder d;
	size_t total = 0;
	int r;

	for (int i = 0; i < N; i++) {
		int n = snprintf(names[i], sizeof(names[i]), "service.endpoint_%05d.requests", i);

		p[i] = (struct dts_native_partial){ .name = names[i], .name_len = (uint16_t)n, .tags = "",
						    .type = (uint8_t)(i % 2 ? DTS_COUNTER : DTS_GAUGE) };
		dts_agg_init(&p[i].agg);
		dts_agg_add(&p[i].agg, i, 1);
		dts_agg_add(&p[i].agg, i * 0.5, 1);
	}
	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	r = encode(&b, &h, NULL, 0, p, N);
	cr_assert_eq(r, (int)b.n);
	cr_assert_gt(b.n, 50, "3000 partials need many datagrams");
	cr_assert_eq(b.seq, 77 + b.n);
	for (unsigned i = 0; i < b.n; i++) {
		struct dts_native_msg m;
		struct dts_native_iter it;
		struct dts_native_partial q;
		uint8_t *copy;

		cr_assert_leq(b.d[i].len, DTS_NATIVE_MAX_DATAGRAM);
		if (i + 1 < b.n)
			cr_assert_geq(b.d[i].len, DTS_NATIVE_MAX_DATAGRAM - 80, "datagram %u is filled", i);
		cr_assert_eq(open_copy(&d, b.d[i].b, b.d[i].len, NOW, &m, &copy), 0);
		cr_assert_eq(m.seq, 77 + i);
		cr_assert_eq(m.part, i);
		cr_assert_eq(m.flags, i + 1 == b.n ? DTS_NATIVE_F_LAST : 0);
		dts_native_iter_partials(&m, &it);
		while (dts_native_next_partial(&it, &q)) {
			int k = atoi(q.name + strlen("service.endpoint_"));

			cr_assert(!seen[k], "partial %d twice", k);
			seen[k] = true;
			cr_assert_arr_eq(q.name, names[k], q.name_len);
			assert_agg_eq(&q.agg, &p[k].agg, names[k]);
			total++;
		}
		free(copy);
	}
	cr_assert_eq(total, N);
	batch_free(&b);
	dec_fini(&d);
}

/* The hardest fit: the longest process, a 0-length-room header, the longest name and tags, and sketches and sets that
 * must be cut into many pieces. */
Test(native_split, pieces_with_longest_names_and_tags)
{
	static char process[DTS_NATIVE_MAX_PROCESS + 1], name[2];
	char tags[DTS_MAX_TAGS_LEN + 1];
	struct dts_native_hdr h = hdr_default();
	struct dts_native_partial p;
	struct dts_sketch sk, sk2;
	struct dts_set st, st2;
	struct dts_agg agg;
	struct decoder d;
	size_t o = 0;
	uint8_t flags;
	const char *t;
	size_t tl;

	/* 16 sorted tags of 15 bytes: 16 * 16 - 1 = 255 bytes */
	for (int i = 0; i < 16; i++)
		o += (size_t)snprintf(tags + o, sizeof(tags) - o, "%s%c%014d", i ? "," : "", 'a' + i, i);
	cr_assert(dts_native_tags_valid(tags, o));
	memset(process, 'p', DTS_NATIVE_MAX_PROCESS);
	h.process = process;
	h.process_len = DTS_NATIVE_MAX_PROCESS;
	h.user = "jane.doe+ops@example.com";
	h.user_len = strlen(h.user);
	h.key_id = 8;
	name[0] = 'n';
	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	for (int type = DTS_TIMER; type <= DTS_SET; type += DTS_SET - DTS_TIMER) {
		struct part_case c = { "longest", name, NULL, (uint8_t)type, 0, 20000, type == DTS_TIMER ? g_wide : g_member };
		struct batch b = { .seq = 1 + 100000 * (unsigned)type };

		dts_sketch_init(&sk);
		dts_sketch_init(&sk2);
		dts_set_init(&st);
		dts_set_init(&st2);
		build(&c, &p, &sk, &st);
		if (type == DTS_TIMER) {
			/* sample-rate weights (1/0.3) keep every bin non-integral, so the sketch stays dense (~2 KB) even in
			 * the sparse-capable encoding and must be split into pieces */
			dts_sketch_free(&sk);
			dts_sketch_init(&sk);
			dts_agg_init(&p.agg);
			for (int i = 0; i < c.nvalues; i++) {
				cr_assert_eq(dts_sketch_add(&sk, c.gen(i), 1.0 / 0.3), 0);
				dts_agg_add(&p.agg, c.gen(i), 1.0 / 0.3);
			}
			p.sketch = &sk;
		}
		p.tags = tags;
		p.tags_len = (uint16_t)o;
		cr_assert_gt(encode(&b, &h, NULL, 0, &p, 1), 2);
		cr_assert_gt(fold(&d, &b, name, &agg, &sk2, &st2, &flags, &t, &tl), 2);
		assert_agg_eq(&agg, &p.agg, "longest");
		if (type == DTS_TIMER)
			assert_sketch_eq(&sk2, &sk, "longest timer");
		else
			assert_set_eq(&st2, &st, "longest set");
		dts_sketch_free(&sk);
		dts_sketch_free(&sk2);
		dts_set_free(&st);
		dts_set_free(&st2);
		batch_free(&b);
	}
	dec_fini(&d);
}

/* Pieces are sized by the dense form (lo, nbins, form byte, bins): a sketch whose stores stay dense (fractional
 * weights: 6 bytes an entry sparse) over both signs must be cut so that no datagram exceeds the maximum, and the
 * pieces must merge back bin for bin. (The bound once lacked the form byte: a 2,235-byte datagram.) */
Test(native_split, dense_pieces_fit_a_datagram)
{
	struct dts_native_hdr h = hdr_default();
	struct dts_native_partial p;
	struct dts_sketch sk, sk2;
	struct dts_set st2;
	struct dts_agg agg;
	struct decoder d;
	struct batch b = { .seq = 7 };
	uint8_t flags;
	const char *t;
	size_t tl;
	int split = 0;

	for (int n = 300; n <= 700; n += 30) {
		memset(&p, 0, sizeof(p));
		p.name = "w";
		p.name_len = 1;
		p.tags = "";
		p.type = DTS_TIMER;
		dts_agg_init(&p.agg);
		dts_sketch_init(&sk);
		for (int i = 0; i < n; i++) {
			double v = pow(1.0105, i) * (i % 2 ? -1.0 : 1.0);

			cr_assert_eq(dts_sketch_add(&sk, v, 0.37), 0);
			dts_agg_add(&p.agg, v, 0.37);
		}
		p.sketch = &sk;
		dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
		dts_sketch_init(&sk2);
		dts_set_init(&st2);
		split += encode(&b, &h, NULL, 0, &p, 1) > 1; /* collect() checks every datagram's size */
		cr_assert_gt(fold(&d, &b, "w", &agg, &sk2, &st2, &flags, &t, &tl), 0);
		assert_sketch_eq(&sk2, &sk, "dense pieces");
		dts_sketch_free(&sk);
		dts_sketch_free(&sk2);
		dts_set_free(&st2);
		batch_free(&b);
		dec_fini(&d);
		b.n = 0;
	}
	cr_assert_gt(split, 3, "most of these sketches need pieces (%d did)", split);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Rejections                                                                                                       */

/* One valid datagram with an event, a counter, a timer and a set (about 600 bytes). */
static void sample_datagram(struct batch *b, uint64_t seq, int64_t slot, uint32_t key_id, const char *user)
{
	static struct dts_sketch sk;
	static struct dts_set st;
	struct dts_native_hdr h = hdr_default();
	struct dts_native_event ev = { DTS_NATIVE_ERROR, 1700000000123, "oops", 4 };
	struct dts_native_partial p[3] = {
		{ .name = "hits", .name_len = 4, .tags = "", .type = DTS_COUNTER },
		{ .name = "lat", .name_len = 3, .tags = "db:x", .tags_len = 4, .type = DTS_TIMER, .sketch = &sk },
		{ .name = "who", .name_len = 3, .tags = "", .type = DTS_SET, .set = &st },
	};

	dts_sketch_free(&sk);
	dts_set_free(&st);
	for (int i = 0; i < 3; i++)
		dts_agg_init(&p[i].agg);
	for (int i = 0; i < 40; i++) {
		dts_agg_add(&p[0].agg, 1, 1);
		dts_agg_add(&p[1].agg, 10 + i * 3.3, 1);
		dts_sketch_add(&sk, 10 + i * 3.3, 1);
		dts_agg_add(&p[2].agg, 0, 1);
		dts_set_add(&st, dts__mix((uint64_t)i % 7 + 1, 3));
	}
	h.slot = slot;
	h.key_id = key_id;
	h.user = user;
	h.user_len = strlen(user);
	b->seq = seq;
	cr_assert_eq(encode(b, &h, &ev, 1, p, 3), 1);
}

Test(native_reject, every_flipped_bit)
{
	struct batch b = { 0 };
	struct decoder d;
	struct dts_native_msg m;
	uint8_t *buf;
	size_t len, head;

	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	sample_datagram(&b, 5, NOW, 7, "42");
	buf = b.d[0].b;
	len = b.d[0].len;
	head = DTS_NATIVE_HEADER_FIXED + 2 + 1 + 3;
	for (size_t bit = 0; bit < len * 8; bit++) {
		int r;

		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		r = open_copy(&d, buf, len, NOW, &m, NULL);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		cr_assert_lt(r, 0, "bit %zu flipped: accepted", bit);
		/* Past the fields checked before the MAC (magic, version, key id, flags, lengths, user, process, slot),
		 * every flip is caught by the MAC. */
		if ((bit / 8 >= 8 && bit / 8 < 24) || (bit / 8 >= 32 && bit / 8 < 37) || bit / 8 >= head)
			cr_assert_eq(r, -DTS_NREJ_BAD_MAC, "bit %zu: %s", bit, dts_native_reject_name(-r));
	}
	/* none of that left a trace in the replay window */
	cr_assert_eq(open_copy(&d, buf, len, NOW, &m, NULL), 0);
	batch_free(&b);
	dec_fini(&d);
}

Test(native_reject, truncated_at_every_offset)
{
	struct batch b = { 0 };
	struct decoder d;
	struct dts_native_msg m;
	uint8_t *buf, *re;
	size_t len;

	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	sample_datagram(&b, 5, NOW, 7, "42");
	buf = b.d[0].b;
	len = b.d[0].len;
	re = malloc(len);
	for (size_t n = 0; n < len; n++) {
		int r = open_copy(&d, buf, n, NOW, &m, NULL);

		cr_assert_lt(r, 0, "truncated to %zu: accepted", n);
		if (n < DTS_NATIVE_MIN_DATAGRAM)
			cr_assert_eq(r, -DTS_NREJ_TOO_SHORT, "%zu: %s", n, dts_native_reject_name(-r));
		/* the same cut with a valid MAC over what is left: the contents checks catch it */
		if (n >= DTS_NATIVE_MIN_DATAGRAM - DTS_NATIVE_MAC_LEN + 6 && n < len - DTS_NATIVE_MAC_LEN) {
			memcpy(re, buf, n);
			dts_native_mac(&keys[0].mac, re, n, re + n);
			r = open_copy(&d, re, n + DTS_NATIVE_MAC_LEN, NOW, &m, NULL);
			cr_assert_lt(r, 0, "cut at %zu and re-MACed: accepted", n);
			cr_assert(r == -DTS_NREJ_TRUNCATED || r == -DTS_NREJ_BAD_HEADER || r == -DTS_NREJ_BAD_SKETCH ||
					  r == -DTS_NREJ_BAD_SET || r == -DTS_NREJ_BAD_PARTIAL || r == -DTS_NREJ_BAD_EVENT,
				  "cut at %zu: %s", n, dts_native_reject_name(-r));
		}
	}
	cr_assert_eq(open_copy(&d, buf, len, NOW, &m, NULL), 0);
	free(re);
	batch_free(&b);
	dec_fini(&d);
}

Test(native_reject, keys_users_versions_sizes)
{
	struct batch b = { 0 }, other = { 0 }, unknown = { 0 }, wrong = { 0 }, rotated = { 0 };
	struct dts_native_mac_key saved;
	struct decoder d;
	struct dts_native_msg m;
	uint8_t big[DTS_NATIVE_MAX_DATAGRAM + 1];

	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	sample_datagram(&b, 5, NOW, 7, "42");

	/* wrong key: the server knows key 7 with another secret */
	saved = keys[0].mac;
	cr_assert_eq(dts_native_mac_key_init(&keys[0].mac, "not the secret", 14), 0);
	cr_assert_eq(open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, NULL), -DTS_NREJ_BAD_MAC);
	keys[0].mac = saved;

	/* a datagram MACed with key 8's secret but claiming key 7 */
	sample_datagram(&other, 5, NOW, 8, "jane.doe+ops@example.com");
	memcpy(other.d[0].b + 4, "\x07\x00\x00\x00", 4);
	cr_assert_eq(open_copy(&d, other.d[0].b, other.d[0].len, NOW, &m, NULL), -DTS_NREJ_WRONG_USER);

	/* unknown key id */
	sample_datagram(&unknown, 5, NOW, 99, "42");
	cr_assert_eq(open_copy(&d, unknown.d[0].b, unknown.d[0].len, NOW, &m, NULL), -DTS_NREJ_UNKNOWN_KEY);

	/* key 7 belongs to user 42: user jane with key 7 is a wrong user, even with a valid MAC */
	sample_datagram(&wrong, 5, NOW, 7, "jane.doe+ops@example.com");
	cr_assert_eq(open_copy(&d, wrong.d[0].b, wrong.d[0].len, NOW, &m, NULL), -DTS_NREJ_WRONG_USER);

	/* rotation: user 42's second key is accepted on its own */
	sample_datagram(&rotated, 5, NOW, 9, "42");
	cr_assert_eq(open_copy(&d, rotated.d[0].b, rotated.d[0].len, NOW, &m, NULL), 0);

	/* version, magic, sizes */
	b.d[0].b[1] = 2;
	cr_assert_eq(open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, NULL), -DTS_NREJ_BAD_VERSION);
	b.d[0].b[1] = 0;
	cr_assert_eq(open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, NULL), -DTS_NREJ_BAD_VERSION);
	b.d[0].b[1] = DTS_NATIVE_VERSION;
	b.d[0].b[0] = 'a';
	cr_assert_eq(open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, NULL), -DTS_NREJ_BAD_MAGIC);
	cr_assert(!dts_native_is(b.d[0].b, b.d[0].len));
	b.d[0].b[0] = DTS_NATIVE_MAGIC;
	cr_assert(dts_native_is(b.d[0].b, b.d[0].len));
	memset(big, 0, sizeof(big));
	memcpy(big, b.d[0].b, b.d[0].len);
	cr_assert_eq(open_copy(&d, big, sizeof(big), NOW, &m, NULL), -DTS_NREJ_TOO_LONG);
	cr_assert_eq(open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, NULL), 0);

	batch_free(&b);
	batch_free(&other);
	batch_free(&unknown);
	batch_free(&wrong);
	batch_free(&rotated);
	dec_fini(&d);
}

Test(native_reject, time_window)
{
	struct {
		const char *name;
		int64_t slot;
		int64_t now;
		int want;
	} cases[] = {
		{ "now", NOW, NOW, 0 },
		{ "oldest_accepted", NOW - DTS_NATIVE_MAX_PAST_S, NOW, 0 },
		{ "stale", NOW - DTS_NATIVE_MAX_PAST_S - 5, NOW, -DTS_NREJ_STALE },
		{ "stale_by_a_second", NOW - DTS_NATIVE_MAX_PAST_S, NOW + 1, -DTS_NREJ_STALE },
		{ "newest_accepted", NOW + DTS_NATIVE_MAX_FUTURE_S, NOW, 0 },
		{ "future", NOW + DTS_NATIVE_MAX_FUTURE_S + 5, NOW, -DTS_NREJ_FUTURE },
		{ "far_future", NOW * 2, NOW, -DTS_NREJ_FUTURE },
		{ "year_1970", 5, NOW, -DTS_NREJ_STALE },
	};
	struct decoder d;

	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct batch b = { 0 };
		struct dts_native_msg m;
		int r;

		sample_datagram(&b, 100 + i, cases[i].slot, 7, "42");
		r = open_copy(&d, b.d[0].b, b.d[0].len, cases[i].now, &m, NULL);
		cr_assert_eq(r, cases[i].want, "%s: %s", cases[i].name, dts_native_reject_name(-r));
		batch_free(&b);
	}
	dec_fini(&d);
}

Test(native_reject, replay_window)
{
	struct {
		uint64_t seq;
		int want;
	} steps[] = {
		{ 100, 0 }, { 100, -DTS_NREJ_REPLAYED }, { 99, 0 }, { 99, -DTS_NREJ_REPLAYED },
		{ 37, 0 }, /* 63 below the highest: inside the window */
		{ 36, -DTS_NREJ_REPLAY_TOO_OLD }, /* 64 below */
		{ 1, -DTS_NREJ_REPLAY_TOO_OLD }, { 37, -DTS_NREJ_REPLAYED }, { 164, 0 }, /* moves the window by 64 */
		{ 100, -DTS_NREJ_REPLAY_TOO_OLD }, { 101, 0 }, { 163, 0 }, { 164, -DTS_NREJ_REPLAYED },
		{ 1000, 0 }, /* a jump clears the bitmap */
		{ 990, 0 }, { 990, -DTS_NREJ_REPLAYED }, { 164, -DTS_NREJ_REPLAY_TOO_OLD },
	};
	struct decoder d;

	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct batch b = { 0 };
		struct dts_native_msg m;
		int r;

		sample_datagram(&b, steps[i].seq, NOW, 7, "42");
		r = open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, NULL);
		cr_assert_eq(r, steps[i].want, "step %zu (seq %llu): %s", i, (unsigned long long)steps[i].seq,
			     dts_native_reject_name(-r));
		batch_free(&b);
	}
	dec_fini(&d);
}

Test(native_reject, replay_instances_keys_and_full_table)
{
	struct decoder d;
	struct dts_native_msg m;
	int64_t expire = DTS_NATIVE_MAX_PAST_S + DTS_NATIVE_MAX_FUTURE_S + 1;

	dec_init(&d, 16); /* the smallest table: one probe window */
	/* 16 instances of key 7 fill it; the same sequence number is fine for each */
	for (uint64_t inst = 1; inst <= 17; inst++) {
		struct dts_native_hdr h = hdr_default();
		struct batch b = { .seq = 1 };
		int r;

		h.instance = inst;
		encode(&b, &h, NULL, 0, NULL, 0);
		r = open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, NULL);
		cr_assert_eq(r, inst <= 16 ? 0 : -DTS_NREJ_REPLAY_FULL, "instance %llu: %s", (unsigned long long)inst,
			     dts_native_reject_name(-r));
		/* once every entry is older than the window, the slot is reused */
		if (inst == 17) {
			int64_t later = NOW + expire + 1;

			batch_free(&b);
			h.slot = later - later % 5;
			b.seq = 1;
			encode(&b, &h, NULL, 0, NULL, 0);
			r = open_copy(&d, b.d[0].b, b.d[0].len, later, &m, NULL);
			cr_assert_eq(r, 0, "reuse of an expired slot: %s", dts_native_reject_name(-r));
		}
		batch_free(&b);
	}
	dec_fini(&d);

	/* the same (instance, sequence) under two keys are two windows */
	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	for (int k = 0; k < 2; k++) {
		struct batch b = { 0 };

		sample_datagram(&b, 5, NOW, k ? 9 : 7, "42");
		cr_assert_eq(open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, NULL), 0);
		cr_assert_eq(open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, NULL), -DTS_NREJ_REPLAYED);
		batch_free(&b);
	}
	dec_fini(&d);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Crafted contents                                                                                                 */

/* Header of a real datagram (user "42", process "api", key 7), then body, counts patched, MAC recomputed. */
static size_t craft(uint8_t *out, const uint8_t *body, size_t body_len, uint16_t np, uint8_t ne)
{
	struct dts_native_hdr h = hdr_default();
	struct batch b = { .seq = 1 };
	size_t head;

	encode(&b, &h, NULL, 0, NULL, 0);
	head = b.d[0].len - DTS_NATIVE_MAC_LEN;
	memcpy(out, b.d[0].b, head);
	memcpy(out + head, body, body_len);
	out[34] = (uint8_t)np;
	out[35] = (uint8_t)(np >> 8);
	out[36] = ne;
	dts_native_mac(&keys[0].mac, out, head + body_len, out + head + body_len);
	batch_free(&b);
	return head + body_len + DTS_NATIVE_MAC_LEN;
}

/* Re-MAC a datagram after patching it. */
static void remac(uint8_t *buf, size_t len)
{
	dts_native_mac(&keys[0].mac, buf, len - DTS_NATIVE_MAC_LEN, buf + len - DTS_NATIVE_MAC_LEN);
}

#define B(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

struct body_case {
	const char *name;
	const uint8_t *body;
	size_t len;
	uint16_t np;
	uint8_t ne;
	int want;
};

Test(native_reject, crafted_contents)
{
	static const uint8_t sketch_one[] = { 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0 };
	/* ^ a valid empty-bins sketch with count 1.0 (zero 0): 22 bytes */
	static uint8_t timer_ok[64], timer_extra[64], timer_bad[64];
	size_t tl;
	const struct body_case cases[] = {
		{ "counter_single", B(0x00, 1, 'q', 0x40, 0x02), 1, 0, 0 },
		{ "counter_full", B(0x00, 1, 'q', 0x00, 4, 4, 2, 6, 2, 6), 1, 0, 0 },
		{ "tags_sorted", B(0x04, 1, 'q', 3, 'a', ',', 'b', 0x40, 0x02), 1, 0, 0 },
		{ "emphasis", B(0x08, 1, 'q', 0x40, 0x02), 1, 0, 0 },
		{ "two_partials", B(0x00, 1, 'q', 0x40, 0x02, 0x02, 1, 'g', 0x40, 0x01), 2, 0, 0 },
		{ "event_ok", B(0, 1, 2, 3, 4, 5, 6, 7, 8, 2, 0, 'h', 'i'), 0, 1, 0 },
		{ "event_empty_text", B(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0, 1, 0 },
		{ "reserved_pflag", B(0x20, 1, 'q', 0x40, 0x02), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "empty_name", B(0x00, 0, 0x40, 0x02), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "name_charset", B(0x00, 1, '$', 0x40, 0x02), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "piece_on_counter", B(0x10, 1, 'q', 0x80), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "empty_agg_not_piece", B(0x00, 1, 'q', 0x80), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "empty_agg_with_bits", B(0x00, 1, 'q', 0x81), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "single_with_bits", B(0x00, 1, 'q', 0x42, 0x02), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "f64_holding_integer", B(0x00, 1, 'q', 0x41, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "f64_nan", B(0x00, 1, 'q', 0x41, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "f64_inf", B(0x00, 1, 'q', 0x41, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "varint_not_minimal", B(0x00, 1, 'q', 0x40, 0x82, 0x00), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "varint_over_2p53", B(0x00, 1, 'q', 0x40, 0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01), 1, 0,
		  -DTS_NREJ_BAD_PARTIAL },
		{ "full_that_is_single", B(0x00, 1, 'q', 0x00, 2, 2, 2, 2, 2, 2), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "min_above_max", B(0x00, 1, 'q', 0x00, 4, 4, 6, 2, 2, 6), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "count_zero", B(0x00, 1, 'q', 0x00, 0, 0, 0, 0, 0, 2), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "count_negative", B(0x00, 1, 'q', 0x00, 4, 3, 2, 2, 2, 2), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "tags_unsorted", B(0x04, 1, 'q', 3, 'b', ',', 'a', 0x40, 0x02), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "tags_duplicate", B(0x04, 1, 'q', 3, 'a', ',', 'a', 0x40, 0x02), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "tags_empty_tag", B(0x04, 1, 'q', 2, 'a', ',', 0x40, 0x02), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "tags_zero_length", B(0x04, 1, 'q', 0, 0x40, 0x02), 1, 0, -DTS_NREJ_BAD_PARTIAL },
		{ "timer_no_sketch", B(0x01, 1, 'q', 0x40, 0x02), 1, 0, -DTS_NREJ_TRUNCATED },
		{ "timer_sketch_len_0", B(0x01, 1, 'q', 0x40, 0x02, 0x00), 1, 0, -DTS_NREJ_BAD_SKETCH },
		{ "timer_sketch_garbage", B(0x01, 1, 'q', 0x40, 0x02, 22, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
					    9, 9, 9, 9, 9, 9),
		  1, 0, -DTS_NREJ_BAD_SKETCH },
		{ "set_garbage", B(0x03, 1, 'q', 0x40, 0x00, 3, 1, 0, 9), 1, 0, -DTS_NREJ_BAD_SET },
		{ "set_len_1", B(0x03, 1, 'q', 0x40, 0x00, 1, 1), 1, 0, -DTS_NREJ_BAD_SET },
		{ "set_exact_unsorted", B(0x03, 1, 'q', 0x40, 0x00, 19, 1, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
					  0),
		  1, 0, -DTS_NREJ_BAD_SET },
		{ "fewer_partials_than_counted", B(0x00, 1, 'q', 0x40, 0x02), 2, 0, -DTS_NREJ_TRUNCATED },
		{ "more_partials_than_counted", B(0x00, 1, 'q', 0x40, 0x02, 0x00, 1, 'q', 0x40, 0x02), 1, 0,
		  -DTS_NREJ_TRAILING },
		{ "trailing_byte", B(0x00, 1, 'q', 0x40, 0x02, 0x00), 1, 0, -DTS_NREJ_TRAILING },
		{ "event_kind", B(2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0, 1, -DTS_NREJ_BAD_EVENT },
		{ "event_not_utf8", B(0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff), 0, 1, -DTS_NREJ_BAD_EVENT },
		{ "event_overlong_utf8", B(0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xc0, 0xaf), 0, 1, -DTS_NREJ_BAD_EVENT },
		{ "event_surrogate", B(0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0xed, 0xa0, 0x80), 0, 1, -DTS_NREJ_BAD_EVENT },
		{ "event_nul", B(0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0), 0, 1, -DTS_NREJ_BAD_EVENT },
		{ "event_text_too_long", B(0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02), 0, 1, -DTS_NREJ_BAD_EVENT },
		{ "event_cut", B(0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 'a'), 0, 1, -DTS_NREJ_TRUNCATED },
		{ "event_missing", B(0x00, 1, 'q', 0x40, 0x02), 1, 1, -DTS_NREJ_TRUNCATED },
	};
	struct decoder d;
	uint8_t buf[DTS_NATIVE_MAX_DATAGRAM];

	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	/* timers with a real sketch: valid, with a byte too many inside the span, and with a bad version */
	tl = 0;
	memcpy(timer_ok, B(0x01, 1, 't', 0x40, 0x02, sizeof(sketch_one)));
	tl = 6;
	memcpy(timer_ok + tl, sketch_one, sizeof(sketch_one));
	memcpy(timer_extra, timer_ok, tl + sizeof(sketch_one));
	timer_extra[5] = sizeof(sketch_one) + 1;
	timer_extra[tl + sizeof(sketch_one)] = 0;
	memcpy(timer_bad, timer_ok, tl + sizeof(sketch_one));
	timer_bad[tl] = 3; /* sketch encodings are versions 1 and 2 */
	{
		struct body_case extra[] = {
			{ "timer_ok", timer_ok, tl + sizeof(sketch_one), 1, 0, 0 },
			{ "timer_sketch_span_too_long", timer_extra, tl + sizeof(sketch_one) + 1, 1, 0, -DTS_NREJ_BAD_SKETCH },
			{ "timer_sketch_version", timer_bad, tl + sizeof(sketch_one), 1, 0, -DTS_NREJ_BAD_SKETCH },
		};

		for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
			struct dts_native_msg m;
			size_t n = craft(buf, extra[i].body, extra[i].len, extra[i].np, extra[i].ne);
			int r = open_copy(&d, buf, n, NOW, &m, NULL);

			cr_assert_eq(r, extra[i].want, "%s: %s", extra[i].name, dts_native_reject_name(-r));
			dts_native_replay_destroy(d.replay);
			d.replay = dts_native_replay_create(DTS_NATIVE_REPLAY_SLOTS);
		}
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dts_native_msg m;
		size_t n = craft(buf, cases[i].body, cases[i].len, cases[i].np, cases[i].ne);
		int r = open_copy(&d, buf, n, NOW, &m, NULL);

		cr_assert_eq(r, cases[i].want, "%s: %s", cases[i].name, dts_native_reject_name(-r));
		/* every crafted datagram has sequence 1: a fresh window for the next */
		dts_native_replay_destroy(d.replay);
		d.replay = dts_native_replay_create(DTS_NATIVE_REPLAY_SLOTS);
	}
	dec_fini(&d);
}

Test(native_reject, crafted_header)
{
	struct {
		const char *name;
		size_t off;
		uint8_t val;
		int want;
	} cases[] = {
		{ "flags_unknown_bit", 2, 0x02, -DTS_NREJ_BAD_HEADER },
		{ "reserved", 3, 0x01, -DTS_NREJ_BAD_HEADER },
		{ "user_len_0", 37, 0, -DTS_NREJ_BAD_HEADER },
		{ "user_len_past_end", 37, 255, -DTS_NREJ_BAD_HEADER },
		{ "user_charset", 38, '#', -DTS_NREJ_BAD_HEADER },
		{ "user_other", 38, '5', -DTS_NREJ_WRONG_USER },
		{ "process_len_0", 40, 0, -DTS_NREJ_BAD_HEADER },
		{ "process_len_past_end", 40, 250, -DTS_NREJ_BAD_HEADER },
		{ "process_charset", 41, ':', -DTS_NREJ_BAD_HEADER },
		{ "slot_not_multiple_of_5", 24, (uint8_t)(NOW + 1), -DTS_NREJ_BAD_SLOT },
		{ "slot_negative", 31, 0x80, -DTS_NREJ_BAD_SLOT },
		{ "cpu_pct_negative", 44 + 23, 0xbf, -DTS_NREJ_BAD_STATS },
		{ "cpu_pct_nan", 44 + 23, 0x7f, -DTS_NREJ_BAD_STATS },
	};
	struct decoder d;

	dec_init(&d, DTS_NATIVE_REPLAY_SLOTS);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct batch b = { 0 };
		struct dts_native_msg m;
		int r;

		sample_datagram(&b, 1, NOW, 7, "42");
		if (strcmp(cases[i].name, "cpu_pct_nan") == 0)
			b.d[0].b[44 + 22] = 0xc0; /* 0x7fc0.... */
		b.d[0].b[cases[i].off] = cases[i].val;
		remac(b.d[0].b, b.d[0].len);
		r = open_copy(&d, b.d[0].b, b.d[0].len, NOW, &m, NULL);
		cr_assert_eq(r, cases[i].want, "%s: %s", cases[i].name, dts_native_reject_name(-r));
		batch_free(&b);
	}
	dec_fini(&d);
}

Test(native_reject, names_are_stable)
{
	cr_assert_str_eq(dts_native_reject_name(DTS_NREJ_NONE), "none");
	cr_assert_str_eq(dts_native_reject_name(DTS_NREJ_BAD_MAC), "bad_mac");
	cr_assert_str_eq(dts_native_reject_name(DTS_NREJ_TRAILING), "trailing");
	cr_assert_str_eq(dts_native_reject_name(DTS_NREJ_COUNT), "unknown");
	for (int r = 0; r < DTS_NREJ_COUNT; r++) {
		const char *n = dts_native_reject_name((enum dts_native_reject)r);

		cr_assert(n && strcmp(n, "unknown") != 0, "reason %d has a name", r);
		for (int s = 0; s < r; s++)
			cr_assert_str_neq(n, dts_native_reject_name((enum dts_native_reject)s));
	}
}
