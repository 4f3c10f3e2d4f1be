/*
 * native.c - encoder and verifying decoder of the native binary protocol (byte tables in dts/native.h and
 * docs/protocol.md). Compiled into dts_engine (server) and into libdattss (client): one codec, two users.
 *
 * Why it is built this way
 * ------------------------
 * The decoder runs on RX cores, so it allocates nothing, holds no lock and keeps no state but the caller's replay
 * window. It checks cheap things first and the HMAC only once the datagram could be genuine (size, magic, version, a
 * known key, a plausible header, a slot inside the time window), so junk costs no hash. A datagram is accepted whole or
 * not at all: dts_native_open walks the whole contents once (decoding each sketch and set into the core's scratch,
 * which is how they are validated without a second copy of their format rules), and only then records the sequence
 * number and returns. The iterators walk the same bytes again without checks: what they read was validated.
 *
 * The HMAC uses OpenSSL's SHA256_CTX directly rather than EVP_MAC: a key's inner and outer states are computed once
 * (dts_native_mac_key_init) and copied by value per datagram, so the hot path has no allocation, no context set-up
 * and no reference counts shared between cores (EVP contexts of one fetched digest bump a shared refcount when
 * copied). SHA256_Init/Update/Final are deprecated in OpenSSL 3 but present, and use the same SHA-NI / AVX2 assembly
 * as EVP. If a future OpenSSL drops them, per-core EVP_MAC_CTX copies are the replacement.
 *
 * Split timers and sets (PIECE partials) are built as read-only views of the original's bins or members and encoded
 * with dts_sketch_encode / dts_set_encode, so the sketch and set formats are written and read in one place only
 * (sketch.c, set.c). The one thing this file knows of them: a set encoding's byte 1 is its kind (0 exact, else HLL),
 * used to pick the pre-grown scratch set that decodes it without allocating (docs/sketch.md, "Set (version 1)").
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_CTX: see above */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "dts/hash.h"
#include "dts/bytes.h"
#include "dts/native.h"

/* Offsets of the fixed header. */
#define OFF_MAGIC 0
#define OFF_VERSION 1
#define OFF_FLAGS 2
#define OFF_RESERVED 3
#define OFF_KEY 4
#define OFF_INSTANCE 8
#define OFF_SEQ 16
#define OFF_SLOT 24
#define OFF_PART 32
#define OFF_NPARTIALS 34
#define OFF_NEVENTS 36
#define OFF_USER_LEN 37

#define EVENT_FIXED 11 /* kind, ts_ms, text length */
#define AGG_EMPTY 0x80
#define AGG_SINGLE 0x40
#define AGG_F64_MASK 0x3f
#define PF_KNOWN (DTS_NATIVE_PF_TYPE | DTS_NATIVE_PF_TAGS | DTS_NATIVE_PF_EMPHASIS | DTS_NATIVE_PF_PIECE)
#define MAX_PARTIAL_NAME (DTS_MAX_NAME - 1)
#define VARINT_MAX 10

_Static_assert(DTS_NATIVE_MIN_DATAGRAM == 93, "byte table in native.h");
_Static_assert(DTS_NATIVE_MAX_DATAGRAM < 65536, "lengths fit u16");

/* ---------------------------------------------------------------------------------------------------------------- */
/* Little-endian fields and varints                                                                                 */

/* Read a shortest-form varint from [*pos, end). Returns 0 (and advances *pos), VARINT_CUT when the bytes end inside it,
 * or VARINT_BAD when it is not minimal or longer than 64 bits. */
#define VARINT_CUT (-1)
#define VARINT_BAD (-2)
static int get_varint(const uint8_t *buf, size_t end, size_t *pos, uint64_t *out)
{
	uint64_t v = 0;
	size_t p = *pos;

	for (unsigned i = 0; i < VARINT_MAX; i++) {
		uint8_t b;

		if (p >= end)
			return VARINT_CUT;
		b = buf[p++];
		if (i == VARINT_MAX - 1 && b > 1)
			return VARINT_BAD; /* more than 64 bits */
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			if (b == 0 && i > 0)
				return VARINT_BAD; /* not minimal */
			*pos = p;
			*out = v;
			return 0;
		}
	}
	return VARINT_BAD;
}

static inline uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t unzigzag(uint64_t u)
{
	return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Character classes and text checks                                                                                */

enum { CC_NAME = 1, CC_USER = 2, CC_TAG = 4 };

static const uint8_t cclass[256] = {
	['0' ... '9'] = CC_NAME | CC_USER | CC_TAG,
	['A' ... 'Z'] = CC_NAME | CC_USER | CC_TAG,
	['a' ... 'z'] = CC_NAME | CC_USER | CC_TAG,
	['_'] = CC_NAME | CC_USER | CC_TAG,
	['.'] = CC_NAME | CC_USER | CC_TAG,
	['-'] = CC_NAME | CC_USER | CC_TAG,
	['@'] = CC_USER,
	['+'] = CC_USER,
	[':'] = CC_TAG,
};

static bool all_class(const char *p, size_t n, uint8_t cls)
{
	for (size_t i = 0; i < n; i++)
		if (!(cclass[(unsigned char)p[i]] & cls))
			return false;
	return true;
}

bool dts_native_name_valid(const char *p, size_t n)
{
	return n >= 1 && n <= MAX_PARTIAL_NAME && all_class(p, n, CC_NAME);
}

bool dts_native_user_valid(const char *p, size_t n)
{
	return n >= 1 && n <= DTS_MAX_USER && all_class(p, n, CC_USER);
}

/* The statsd decoder's canonical form: non-empty tags of [A-Za-z0-9_.:-], strictly ascending bytewise (a shorter
 * prefix first), at most DTS_MAX_TAGS, joined with ','; at most DTS_MAX_TAGS_LEN bytes. */
bool dts_native_tags_valid(const char *p, size_t n)
{
	const char *prev = NULL;
	size_t prev_len = 0, i = 0;
	unsigned ntags = 0;

	if (n < 1 || n > DTS_MAX_TAGS_LEN)
		return false;
	while (i <= n) {
		size_t j = i;
		int c;

		while (j < n && p[j] != ',')
			j++;
		if (j == i || !all_class(p + i, j - i, CC_TAG) || ++ntags > DTS_MAX_TAGS)
			return false;
		if (prev) {
			c = memcmp(prev, p + i, prev_len < j - i ? prev_len : j - i);
			if (c > 0 || (c == 0 && prev_len >= j - i))
				return false;
		}
		prev = p + i;
		prev_len = j - i;
		i = j + 1;
	}
	return true;
}

/* Valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF) without NUL. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t k;
		uint32_t cp, min;

		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (n - i - 1 < k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* MAC                                                                                                              */

struct mac_state {
	SHA256_CTX inner; /* after (key ^ ipad) */
	SHA256_CTX outer; /* after (key ^ opad) */
};
_Static_assert(sizeof(struct mac_state) <= sizeof(((struct dts_native_mac_key *)0)->priv), "mac key too small");

int dts_native_mac_key_init(struct dts_native_mac_key *key, const void *secret, size_t secret_len)
{
	uint8_t k[SHA256_CBLOCK], pad[SHA256_CBLOCK];
	struct mac_state st;

	if (!secret && secret_len)
		return -EINVAL;
	memset(k, 0, sizeof(k));
	if (secret_len > SHA256_CBLOCK)
		SHA256(secret, secret_len, k);
	else if (secret_len)
		memcpy(k, secret, secret_len);
	for (int i = 0; i < SHA256_CBLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	SHA256_Init(&st.inner);
	SHA256_Update(&st.inner, pad, sizeof(pad));
	for (int i = 0; i < SHA256_CBLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	SHA256_Init(&st.outer);
	SHA256_Update(&st.outer, pad, sizeof(pad));
	memset(key->priv, 0, sizeof(key->priv));
	memcpy(key->priv, &st, sizeof(st));
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(pad, sizeof(pad));
	OPENSSL_cleanse(&st, sizeof(st));
	return 0;
}

void dts_native_mac_key_wipe(struct dts_native_mac_key *key)
{
	OPENSSL_cleanse(key->priv, sizeof(key->priv));
}

void dts_native_mac(const struct dts_native_mac_key *key, const void *data, size_t len,
		    uint8_t out[DTS_NATIVE_MAC_LEN])
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	SHA256_CTX c;

	memcpy(&c, key->priv + offsetof(struct mac_state, inner), sizeof(c));
	SHA256_Update(&c, data, len);
	SHA256_Final(h, &c);
	memcpy(&c, key->priv + offsetof(struct mac_state, outer), sizeof(c));
	SHA256_Update(&c, h, sizeof(h));
	SHA256_Final(h, &c);
	memcpy(out, h, DTS_NATIVE_MAC_LEN);
	OPENSSL_cleanse(&c, sizeof(c));
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Aggregates                                                                                                       */

/* The varint form of x: an integer of magnitude <= 2^53 that is not -0.0. */
static bool int_form(double x, int64_t *out)
{
	int64_t i;

	if (!(x >= -0x1p53 && x <= 0x1p53))
		return false; /* also NaN */
	i = (int64_t)x;
	if ((double)i != x || (x == 0.0 && signbit(x)))
		return false;
	*out = i;
	return true;
}

static bool same_bits(double a, double b)
{
	return memcmp(&a, &b, sizeof(double)) == 0;
}

static bool agg_single(const struct dts_agg *a)
{
	return a->count == 1.0 && same_bits(a->min, a->sum) && same_bits(a->max, a->sum) && same_bits(a->fst, a->sum) &&
	       same_bits(a->lst, a->sum);
}

static bool agg_valid(const struct dts_agg *a)
{
	return isfinite(a->sum) && isfinite(a->count) && isfinite(a->min) && isfinite(a->max) && isfinite(a->fst) &&
	       isfinite(a->lst) && a->count > 0.0 && a->min <= a->max;
}

static size_t num_size(double x)
{
	int64_t i;

	return int_form(x, &i) ? dts_varint_len(zigzag(i)) : 8;
}

static size_t num_write(uint8_t *p, double x, uint8_t *form, unsigned bit)
{
	int64_t i;

	if (int_form(x, &i))
		return dts_put_varint(p, zigzag(i));
	*form |= (uint8_t)(1u << bit);
	dts_wrf64(p, x);
	return 8;
}

/* Encoded size of an aggregate (empty: one byte). a must be valid or empty. */
static size_t agg_size(const struct dts_agg *a, bool empty)
{
	if (empty)
		return 1;
	if (agg_single(a))
		return 1 + num_size(a->sum);
	return 1 + num_size(a->sum) + num_size(a->count) + num_size(a->min) + num_size(a->max) + num_size(a->fst) +
	       num_size(a->lst);
}

static size_t agg_write(uint8_t *p, const struct dts_agg *a, bool empty)
{
	const double f[6] = { a->sum, a->count, a->min, a->max, a->fst, a->lst };
	uint8_t form = 0;
	size_t n = 1;

	if (empty) {
		p[0] = AGG_EMPTY;
		return 1;
	}
	if (agg_single(a)) {
		form = AGG_SINGLE;
		n += num_write(p + n, a->sum, &form, 0);
	} else {
		for (unsigned i = 0; i < 6; i++)
			n += num_write(p + n, f[i], &form, i);
	}
	p[0] = form;
	return n;
}

static int num_read(const uint8_t *buf, size_t end, size_t *pos, bool f64, double *out)
{
	if (f64) {
		int64_t i;

		if (end - *pos < 8)
			return -DTS_NREJ_TRUNCATED;
		*out = dts_rdf64(buf + *pos);
		*pos += 8;
		/* canonical: an integral value must have been a varint; and every value finite */
		return (!isfinite(*out) || int_form(*out, &i)) ? -DTS_NREJ_BAD_PARTIAL : 0;
	} else {
		uint64_t u;
		int64_t i;
		size_t p = *pos;

		int r = get_varint(buf, end, &p, &u);

		if (r)
			return r == VARINT_CUT ? -DTS_NREJ_TRUNCATED : -DTS_NREJ_BAD_PARTIAL;
		i = unzigzag(u);
		if (i < -((int64_t)1 << 53) || i > ((int64_t)1 << 53))
			return -DTS_NREJ_BAD_PARTIAL;
		*pos = p;
		*out = (double)i;
		return 0;
	}
}

/* Parse an aggregate; empty_expected: PIECE partials carry exactly the EMPTY form, others never. */
static int agg_read(const uint8_t *buf, size_t end, size_t *pos, bool empty_expected, bool check, struct dts_agg *a)
{
	double f[6];
	uint8_t form;
	int r;

	if (*pos >= end)
		return -DTS_NREJ_TRUNCATED;
	form = buf[(*pos)++];
	if (form & AGG_EMPTY) {
		if (check && (form != AGG_EMPTY || !empty_expected))
			return -DTS_NREJ_BAD_PARTIAL;
		dts_agg_init(a);
		return 0;
	}
	if (check && empty_expected)
		return -DTS_NREJ_BAD_PARTIAL;
	if (form & AGG_SINGLE) {
		if (check && (form & ~(AGG_SINGLE | 1)))
			return -DTS_NREJ_BAD_PARTIAL;
		r = num_read(buf, end, pos, form & 1, &a->sum);
		if (r)
			return r;
		a->count = 1.0;
		a->min = a->max = a->fst = a->lst = a->sum;
		return 0;
	}
	for (unsigned i = 0; i < 6; i++) {
		r = num_read(buf, end, pos, form & (1u << i), &f[i]);
		if (r)
			return r;
	}
	a->sum = f[0];
	a->count = f[1];
	a->min = f[2];
	a->max = f[3];
	a->fst = f[4];
	a->lst = f[5];
	if (check && (!agg_valid(a) || agg_single(a)))
		return -DTS_NREJ_BAD_PARTIAL;
	return 0;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Encoder                                                                                                          */

static void enc_reset_body(struct dts_native_enc *e)
{
	e->len = e->head_len;
	e->npartials = 0;
	e->nevents = 0;
}

/* Finish the datagram in buf (flags, counters, sequence, MAC) and hand it to emit. */
static int enc_flush(struct dts_native_enc *e, bool last)
{
	int r;

	e->buf[OFF_FLAGS] = last ? DTS_NATIVE_F_LAST : 0;
	dts_wr64(e->buf + OFF_SEQ, *e->seq);
	dts_wr16(e->buf + OFF_PART, e->part);
	dts_wr16(e->buf + OFF_NPARTIALS, e->npartials);
	e->buf[OFF_NEVENTS] = e->nevents;
	dts_native_mac(e->key, e->buf, e->len, e->buf + e->len);
	r = e->emit(e->ctx, e->buf, e->len + DTS_NATIVE_MAC_LEN);
	(*e->seq)++;
	e->part++;
	e->emitted++;
	enc_reset_body(e);
	if (r < 0)
		e->err = r;
	return r < 0 ? r : 0;
}

static size_t enc_room(const struct dts_native_enc *e)
{
	return DTS_NATIVE_MAX_DATAGRAM - DTS_NATIVE_MAC_LEN - e->len;
}

static bool enc_body_empty(const struct dts_native_enc *e)
{
	return e->npartials == 0 && e->nevents == 0;
}

int dts_native_enc_begin(struct dts_native_enc *e, const struct dts_native_hdr *h,
			 const struct dts_native_mac_key *key, uint64_t *seq, dts_native_emit_fn emit, void *ctx)
{
	const struct dts_native_stats *s = &h->stats;
	uint8_t *p = e->buf;
	size_t n;

	memset(e, 0, offsetof(struct dts_native_enc, buf));
	e->err = -EINVAL;
	if (!key || !seq || !emit || !dts_native_user_valid(h->user, h->user_len) || h->process_len < 1 ||
	    h->process_len > DTS_NATIVE_MAX_PROCESS || !all_class(h->process, h->process_len, CC_NAME) ||
	    h->slot <= 0 || h->slot % DTS_SLOT_SECONDS != 0 || !(s->cpu_pct >= 0.0f && isfinite(s->cpu_pct)))
		return -EINVAL;
	e->key = key;
	e->emit = emit;
	e->ctx = ctx;
	e->seq = seq;
	memset(p, 0, DTS_NATIVE_HEADER_FIXED);
	p[OFF_MAGIC] = DTS_NATIVE_MAGIC;
	p[OFF_VERSION] = DTS_NATIVE_VERSION;
	dts_wr32(p + OFF_KEY, h->key_id);
	dts_wr64(p + OFF_INSTANCE, h->instance);
	dts_wr64(p + OFF_SLOT, (uint64_t)h->slot);
	p[OFF_USER_LEN] = (uint8_t)h->user_len;
	n = DTS_NATIVE_HEADER_FIXED;
	memcpy(p + n, h->user, h->user_len);
	n += h->user_len;
	p[n++] = (uint8_t)h->process_len;
	memcpy(p + n, h->process, h->process_len);
	n += h->process_len;
	dts_wr32(p + n, s->uptime_s);
	dts_wr64(p + n + 4, s->rss_bytes);
	dts_wr64(p + n + 12, s->cpu_us);
	dts_wrf32(p + n + 20, s->cpu_pct);
	dts_wr32(p + n + 24, s->errors);
	dts_wr32(p + n + 28, s->warnings);
	dts_wr32(p + n + 32, s->dropped);
	n += DTS_NATIVE_STATS_LEN;
	e->head_len = n;
	e->err = 0;
	enc_reset_body(e);
	return 0;
}

int dts_native_enc_event(struct dts_native_enc *e, const struct dts_native_event *ev)
{
	size_t need;
	uint8_t *p;

	if (e->err)
		return e->err;
	if (e->partials_started || ev->kind > DTS_NATIVE_WARNING || (ev->len && !ev->text))
		return -EINVAL;
	if (ev->len > DTS_NATIVE_MAX_TEXT)
		return -EMSGSIZE;
	if (!utf8_valid((const uint8_t *)ev->text, ev->len))
		return -EINVAL;
	need = EVENT_FIXED + ev->len;
	if (need > enc_room(e) || e->nevents == UINT8_MAX) {
		int r = enc_flush(e, false);

		if (r)
			return r;
	}
	p = e->buf + e->len;
	p[0] = ev->kind;
	dts_wr64(p + 1, (uint64_t)ev->ts_ms);
	dts_wr16(p + 9, ev->len);
	if (ev->len)
		memcpy(p + EVENT_FIXED, ev->text, ev->len);
	e->len += need;
	e->nevents++;
	return 0;
}

/* Bytes of a partial before its sketch/set field. */
static size_t partial_fixed(const struct dts_native_partial *p, bool piece)
{
	size_t n = 2 + p->name_len + agg_size(&p->agg, piece);

	if (p->tags_len)
		n += dts_varint_len(p->tags_len) + p->tags_len;
	return n;
}

/* Write a partial whose sketch/set encoding (enc_len bytes) is produced by put(). */
static void write_partial(struct dts_native_enc *e, const struct dts_native_partial *p, bool piece, size_t enc_len,
			  int (*put)(const void *obj, uint8_t *buf, size_t len), const void *obj)
{
	uint8_t *b = e->buf + e->len;
	size_t n = 0;

	b[n++] = (uint8_t)(p->type | (p->tags_len ? DTS_NATIVE_PF_TAGS : 0) | (p->flags & DTS_NATIVE_PF_EMPHASIS) |
			   (piece ? DTS_NATIVE_PF_PIECE : 0));
	b[n++] = (uint8_t)p->name_len;
	memcpy(b + n, p->name, p->name_len);
	n += p->name_len;
	if (p->tags_len) {
		n += dts_put_varint(b + n, p->tags_len);
		memcpy(b + n, p->tags, p->tags_len);
		n += p->tags_len;
	}
	n += agg_write(b + n, &p->agg, piece);
	if (put) {
		int w;

		n += dts_put_varint(b + n, enc_len);
		w = put(obj, b + n, enc_len);
		(void)w; /* sized exactly beforehand: cannot fail */
		n += enc_len;
	}
	e->len += n;
	e->npartials++;
}

static int put_sketch(const void *obj, uint8_t *buf, size_t len)
{
	return dts_sketch_encode(obj, buf, len);
}

static int put_set(const void *obj, uint8_t *buf, size_t len)
{
	return dts_set_encode(obj, buf, len);
}

/* Make room for need bytes: flush the current datagram when it holds anything. Returns 0, 1 (does not fit even in
 * an empty datagram) or the emit error. */
static int enc_make_room(struct dts_native_enc *e, size_t need)
{
	if (need <= enc_room(e) && e->npartials < UINT16_MAX)
		return 0;
	if (!enc_body_empty(e)) {
		int r = enc_flush(e, false);

		if (r)
			return r;
	}
	return need <= enc_room(e) ? 0 : 1;
}

/* Upper bound of a store's encoded size: the dense form (lo, nbins, form byte, f32 bins); the encoder writes the
 * sparse form only when it is smaller. */
static size_t store_piece_size(uint32_t nbins, int32_t lo)
{
	return nbins ? dts_varint_len(zigzag(lo)) + dts_varint_len(nbins) + 1 + 4 * (size_t)nbins : 2;
}

/* The bins of keys lo .. lo + n - 1 of one of s's stores, into out[] (a piece is one store's at most). */
static float *piece_bins(const struct dts_sketch *s, bool negative, int32_t lo, uint32_t n, float *out)
{
	for (uint32_t i = 0; i < n; i++)
		out[i] = dts_sketch_bin(s, negative, lo + (int32_t)i);
	return out;
}

/*
 * A timer whose sketch does not fit a datagram: pieces of consecutive bins (positive store first, then negative),
 * each a valid sketch at the original level; the first keeps zero and count and the aggregate.
 */
static int enc_sketch_pieces(struct dts_native_enc *e, const struct dts_native_partial *p)
{
	const struct dts_sketch *s = p->sketch;
	float pbins[DTS_SKETCH_MAX_BINS], nbins[DTS_SKETCH_MAX_BINS]; /* a piece's bins, dense, whatever s's forms */
	uint32_t ip = 0, in = 0;
	bool first = true;

	while (first || ip < s->pos.nbins || in < s->neg.nbins) {
		struct dts_sketch v = { .zero = first ? s->zero : 0.0, .count = first ? s->count : 0.0, .level = s->level };
		size_t fixed = partial_fixed(p, !first) + 2; /* + the length varint (< 16384) */
		size_t room, budget, size;
		int r;

		r = enc_make_room(e, fixed + 18 + 2 + 2 + 4 + 10); /* at least one bin */
		if (r)
			return r < 0 ? r : -EMSGSIZE;
		room = enc_room(e);
		budget = room - fixed - 18; /* bytes for the two stores */
		if (ip < s->pos.nbins) {
			uint32_t k = s->pos.nbins - ip;

			while (k > 0 && store_piece_size(k, s->pos.lo + (int32_t)ip) + 2 > budget)
				k--;
			v.pos.bins = piece_bins(s, false, s->pos.lo + (int32_t)ip, k, pbins);
			v.pos.lo = (int16_t)(s->pos.lo + (int32_t)ip);
			v.pos.nbins = v.pos.cap = (uint16_t)k;
			ip += k;
			budget -= store_piece_size(k, v.pos.lo);
		} else {
			budget -= 2;
		}
		if (ip >= s->pos.nbins && in < s->neg.nbins) {
			uint32_t k = s->neg.nbins - in;

			while (k > 0 && store_piece_size(k, s->neg.lo + (int32_t)in) > budget)
				k--;
			v.neg.bins = piece_bins(s, true, s->neg.lo + (int32_t)in, k, nbins);
			v.neg.lo = (int16_t)(s->neg.lo + (int32_t)in);
			v.neg.nbins = v.neg.cap = (uint16_t)k;
			in += k;
		}
		size = dts_sketch_encoded_size(&v);
		write_partial(e, p, !first, size, put_sketch, &v);
		first = false;
	}
	return 0;
}

/* A set that does not fit: exact sets as runs of members, HLLs as sparse HLLs of runs of non-zero registers. */
static int enc_set_pieces(struct dts_native_enc *e, const struct dts_native_partial *p)
{
	const struct dts_set *s = p->set;
	uint32_t i = 0, total = s->hll ? (1u << DTS_HLL_P) : s->n;
	bool first = true;

	while (first || i < total) {
		size_t fixed = partial_fixed(p, !first) + 2;
		struct dts_set v;
		size_t room, size;
		uint32_t k = 0;
		int r;

		r = enc_make_room(e, fixed + 5 + 8);
		if (r)
			return r < 0 ? r : -EMSGSIZE;
		room = enc_room(e) - fixed;
		if (!s->hll) {
			k = (uint32_t)((room - 3) / 8);
			if (k > total - i)
				k = total - i;
			v = (struct dts_set){ .exact = s->exact ? s->exact + i : NULL, .n = (uint16_t)k, .cap = (uint16_t)k };
			i += k;
		} else {
			uint32_t max = (uint32_t)((room - 5) / 3);

			memset(e->hll, 0, sizeof(e->hll));
			for (; i < total && k < max; i++) {
				if (s->hll[i]) {
					e->hll[i] = s->hll[i];
					k++;
				}
			}
			/* skip trailing zero registers so the loop ends */
			while (i < total && !s->hll[i])
				i++;
			v = (struct dts_set){ .hll = e->hll };
		}
		size = dts_set_encoded_size(&v);
		write_partial(e, p, !first, size, put_set, &v);
		first = false;
	}
	return 0;
}

static bool partial_valid(const struct dts_native_enc *e, const struct dts_native_partial *p)
{
	size_t plen = e->buf[DTS_NATIVE_HEADER_FIXED + e->buf[OFF_USER_LEN]];

	if (p->type >= DTS_NTYPES || (p->flags & ~DTS_NATIVE_PF_EMPHASIS) || !dts_native_name_valid(p->name, p->name_len) ||
	    plen + 1 + p->name_len > DTS_MAX_NAME || !agg_valid(&p->agg))
		return false;
	if (p->tags_len && (!p->tags || !dts_native_tags_valid(p->tags, p->tags_len)))
		return false;
	if (p->type == DTS_TIMER && !p->sketch)
		return false;
	if (p->type == DTS_SET && !p->set)
		return false;
	return true;
}

int dts_native_enc_partial(struct dts_native_enc *e, const struct dts_native_partial *p)
{
	size_t need, enc_len = 0;
	int r;

	if (e->err)
		return e->err;
	if (!partial_valid(e, p))
		return -EINVAL;
	e->partials_started = true;
	need = partial_fixed(p, false);
	if (p->type == DTS_TIMER)
		enc_len = dts_sketch_encoded_size(p->sketch);
	else if (p->type == DTS_SET)
		enc_len = dts_set_encoded_size(p->set);
	if (p->type == DTS_TIMER || p->type == DTS_SET)
		need += dts_varint_len(enc_len) + enc_len;
	r = enc_make_room(e, need);
	if (r < 0)
		return r;
	if (r == 0) {
		if (p->type == DTS_TIMER)
			write_partial(e, p, false, enc_len, put_sketch, p->sketch);
		else if (p->type == DTS_SET)
			write_partial(e, p, false, enc_len, put_set, p->set);
		else
			write_partial(e, p, false, 0, NULL, NULL);
		return 0;
	}
	if (p->type == DTS_TIMER)
		return enc_sketch_pieces(e, p);
	if (p->type == DTS_SET)
		return enc_set_pieces(e, p);
	return -EMSGSIZE; /* cannot happen within the name and tag bounds */
}

int dts_native_enc_end(struct dts_native_enc *e)
{
	int r;

	if (e->err)
		return e->err;
	r = enc_flush(e, true);
	e->err = r ? r : -EINVAL; /* the batch is over */
	return r ? r : (int)e->emitted;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Replay window                                                                                                    */

/* One (key, instance): 40 bytes. last_s is the server time of the last acceptance. used never goes back to 0, so
 * probe chains have no holes; stale entries are reused in place. */
struct replay_ent {
	uint64_t instance;
	uint64_t highest;
	uint64_t bitmap; /* bit d: highest - d was accepted */
	int64_t last_s;
	uint32_t key_id;
	uint32_t used;
};

struct dts_native_replay {
	uint32_t mask;
	struct replay_ent ent[];
};

/* Where the check put the datagram: the slot, and whether it is a new entry. */
struct replay_ticket {
	uint32_t slot;
	bool fresh;
};

struct dts_native_replay *dts_native_replay_create(uint32_t slots)
{
	struct dts_native_replay *r;

	if (slots < DTS_NATIVE_REPLAY_PROBE || (slots & (slots - 1)) || slots > (1u << 26)) {
		errno = EINVAL;
		return NULL;
	}
	r = calloc(1, sizeof(*r) + (size_t)slots * sizeof(struct replay_ent));
	if (!r)
		return NULL;
	r->mask = slots - 1;
	return r;
}

void dts_native_replay_destroy(struct dts_native_replay *r)
{
	free(r);
}

static int replay_check(const struct dts_native_replay *r, uint32_t key_id, uint64_t instance, uint64_t seq,
			int64_t now_s, int64_t expire_s, struct replay_ticket *t)
{
	uint32_t home = (uint32_t)dts__mix(instance ^ 0x243f6a8885a308d3ULL, key_id ^ 0x13198a2e03707344ULL);
	int64_t free_slot = -1;

	for (uint32_t i = 0; i < DTS_NATIVE_REPLAY_PROBE; i++) {
		uint32_t s = (home + i) & r->mask;
		const struct replay_ent *e = &r->ent[s];

		if (!e->used) {
			if (free_slot < 0)
				free_slot = s;
			break;
		}
		if (e->key_id == key_id && e->instance == instance) {
			t->slot = s;
			t->fresh = false;
			if (seq > e->highest)
				return 0;
			if (e->highest - seq >= 64)
				return -DTS_NREJ_REPLAY_TOO_OLD;
			return (e->bitmap >> (e->highest - seq)) & 1 ? -DTS_NREJ_REPLAYED : 0;
		}
		if (free_slot < 0 && e->last_s < now_s - expire_s)
			free_slot = s;
	}
	if (free_slot < 0)
		return -DTS_NREJ_REPLAY_FULL;
	t->slot = (uint32_t)free_slot;
	t->fresh = true;
	return 0;
}

static void replay_commit(struct dts_native_replay *r, const struct replay_ticket *t, uint32_t key_id,
			  uint64_t instance, uint64_t seq, int64_t now_s)
{
	struct replay_ent *e = &r->ent[t->slot];

	if (t->fresh) {
		e->key_id = key_id;
		e->instance = instance;
		e->highest = seq;
		e->bitmap = 1;
		e->used = 1;
	} else if (seq > e->highest) {
		uint64_t shift = seq - e->highest;

		e->bitmap = shift >= 64 ? 1 : (e->bitmap << shift) | 1;
		e->highest = seq;
	} else {
		e->bitmap |= 1ULL << (e->highest - seq);
	}
	e->last_s = now_s;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Decoder                                                                                                          */

struct dts_native_scratch {
	struct dts_sketch sketch; /* both stores at DTS_SKETCH_MAX_BINS capacity */
	struct dts_set exact; /* exact, capacity DTS_SET_EXACT_MAX */
	struct dts_set hll; /* an HLL */
};

struct dts_native_scratch *dts_native_scratch_create(void)
{
	struct dts_native_scratch *s = calloc(1, sizeof(*s));
	int err = 0;

	if (!s)
		return NULL;
	dts_sketch_init(&s->sketch);
	dts_set_init(&s->exact);
	dts_set_init(&s->hll);
	/* keys 0 .. MAX_BINS - 1 span exactly the cap at level 0, and are too many entries for the sparse form: both
	 * stores are dense at full size without collapsing, and decoding into them never allocates */
	for (int32_t k = 0; k < DTS_SKETCH_MAX_BINS && !err; k++)
		err |= dts_sketch_add_key(&s->sketch, k, false, 1.0) | dts_sketch_add_key(&s->sketch, k, true, 1.0);
	for (uint64_t i = 1; i <= DTS_SET_EXACT_MAX && !err; i++)
		err |= dts_set_add(&s->exact, dts__mix(i, 0x9e3779b97f4a7c15ULL));
	for (uint64_t i = 1; i <= DTS_SET_EXACT_MAX + 1 && !err; i++)
		err |= dts_set_add(&s->hll, dts__mix(i, 0x9e3779b97f4a7c15ULL));
	if (err || !s->hll.hll || s->exact.cap < DTS_SET_EXACT_MAX ||
	    dts_sketch_heap_bytes(&s->sketch) < 2 * DTS_SKETCH_MAX_BINS * sizeof(float)) {
		dts_native_scratch_destroy(s);
		errno = ENOMEM;
		return NULL;
	}
	dts_sketch_clear(&s->sketch);
	return s;
}

void dts_native_scratch_destroy(struct dts_native_scratch *s)
{
	if (!s)
		return;
	dts_sketch_free(&s->sketch);
	dts_set_free(&s->exact);
	dts_set_free(&s->hll);
	free(s);
}

void dts_native_cfg_defaults(struct dts_native_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_past_s = DTS_NATIVE_MAX_PAST_S;
	cfg->max_future_s = DTS_NATIVE_MAX_FUTURE_S;
}

static int parse_event(const uint8_t *buf, size_t end, size_t *pos, bool check, struct dts_native_event *ev)
{
	size_t p = *pos;

	if (end - p < EVENT_FIXED)
		return -DTS_NREJ_TRUNCATED;
	ev->kind = buf[p];
	ev->ts_ms = (int64_t)dts_rd64(buf + p + 1);
	ev->len = dts_rd16(buf + p + 9);
	ev->text = (const char *)buf + p + EVENT_FIXED;
	if (check && (ev->kind > DTS_NATIVE_WARNING || ev->len > DTS_NATIVE_MAX_TEXT))
		return -DTS_NREJ_BAD_EVENT;
	if (end - p - EVENT_FIXED < ev->len)
		return -DTS_NREJ_TRUNCATED;
	if (check && !utf8_valid(buf + p + EVENT_FIXED, ev->len))
		return -DTS_NREJ_BAD_EVENT;
	*pos = p + EVENT_FIXED + ev->len;
	return 0;
}

/*
 * Parse one partial at *pos. check: validate everything (names, tags, canonical aggregate, the sketch or set by
 * decoding it into scratch); without it, only walk (the bytes were validated before).
 */
static int parse_partial(const uint8_t *buf, size_t end, size_t *pos, size_t process_len, bool check,
			 struct dts_native_scratch *sc, struct dts_native_partial *out)
{
	size_t p = *pos;
	uint8_t pf;
	uint64_t u;
	int r;

	if (end - p < 2)
		return -DTS_NREJ_TRUNCATED;
	pf = buf[p];
	out->type = pf & DTS_NATIVE_PF_TYPE;
	out->flags = pf & (DTS_NATIVE_PF_EMPHASIS | DTS_NATIVE_PF_PIECE);
	out->name_len = buf[p + 1];
	out->name = (const char *)buf + p + 2;
	out->sketch = NULL;
	out->set = NULL;
	out->enc = NULL;
	out->enc_len = 0;
	if (check && ((pf & ~PF_KNOWN) || out->name_len < 1 || out->name_len > MAX_PARTIAL_NAME ||
		      process_len + 1 + out->name_len > DTS_MAX_NAME))
		return -DTS_NREJ_BAD_PARTIAL;
	if ((pf & DTS_NATIVE_PF_PIECE) && check && out->type != DTS_TIMER && out->type != DTS_SET)
		return -DTS_NREJ_BAD_PARTIAL;
	p += 2;
	if (end - p < out->name_len)
		return -DTS_NREJ_TRUNCATED;
	if (check && !all_class(out->name, out->name_len, CC_NAME))
		return -DTS_NREJ_BAD_PARTIAL;
	p += out->name_len;
	out->tags = "";
	out->tags_len = 0;
	if (pf & DTS_NATIVE_PF_TAGS) {
		r = get_varint(buf, end, &p, &u);
		if (r)
			return r == VARINT_CUT ? -DTS_NREJ_TRUNCATED : -DTS_NREJ_BAD_PARTIAL;
		if (u > DTS_MAX_TAGS_LEN)
			return -DTS_NREJ_BAD_PARTIAL;
		if (end - p < u)
			return -DTS_NREJ_TRUNCATED;
		out->tags = (const char *)buf + p;
		out->tags_len = (uint16_t)u;
		if (check && !dts_native_tags_valid(out->tags, out->tags_len))
			return -DTS_NREJ_BAD_PARTIAL;
		p += u;
	}
	r = agg_read(buf, end, &p, pf & DTS_NATIVE_PF_PIECE, check, &out->agg);
	if (r)
		return r;
	if (out->type == DTS_TIMER || out->type == DTS_SET) {
		int bad = out->type == DTS_TIMER ? -DTS_NREJ_BAD_SKETCH : -DTS_NREJ_BAD_SET;

		r = get_varint(buf, end, &p, &u);
		if (r)
			return r == VARINT_CUT ? -DTS_NREJ_TRUNCATED : bad;
		if (end - p < u)
			return -DTS_NREJ_TRUNCATED;
		if (u == 0 || u > DTS_NATIVE_MAX_DATAGRAM)
			return bad;
		out->enc = buf + p;
		out->enc_len = (uint16_t)u;
		if (check) {
			struct dts_set *set = (u >= 2 && out->enc[1] == 0) ? &sc->exact : &sc->hll;
			int n = out->type == DTS_TIMER ? dts_sketch_decode(&sc->sketch, out->enc, out->enc_len)
						       : dts_set_decode(set, out->enc, out->enc_len);
			/* -ENOMEM cannot happen (pre-grown scratch); any failure is a bad encoding */
			if (n != (int)u)
				return bad;
		}
		p += u;
	}
	*pos = p;
	return 0;
}

int dts_native_open(const struct dts_native_cfg *cfg, struct dts_native_replay *replay,
		    struct dts_native_scratch *scratch, const uint8_t *buf, size_t len, int64_t now_s,
		    struct dts_native_msg *m)
{
	const struct dts_native_key *key;
	struct replay_ticket ticket;
	uint8_t mac[DTS_NATIVE_MAC_LEN];
	size_t pos, end;
	uint32_t key_id;
	int r;

	/* 1. size, magic, version */
	if (len < DTS_NATIVE_MIN_DATAGRAM)
		return -DTS_NREJ_TOO_SHORT;
	if (len > DTS_NATIVE_MAX_DATAGRAM)
		return -DTS_NREJ_TOO_LONG;
	if (buf[OFF_MAGIC] != DTS_NATIVE_MAGIC)
		return -DTS_NREJ_BAD_MAGIC;
	if (buf[OFF_VERSION] != DTS_NATIVE_VERSION)
		return -DTS_NREJ_BAD_VERSION;
	end = len - DTS_NATIVE_MAC_LEN;

	/* 2. key */
	key_id = dts_rd32(buf + OFF_KEY);
	key = cfg->key_lookup ? cfg->key_lookup(cfg->key_ctx, key_id) : NULL;
	if (!key)
		return -DTS_NREJ_UNKNOWN_KEY;

	/* 3. header strings, owner */
	m->user_len = buf[OFF_USER_LEN];
	m->user = (const char *)buf + DTS_NATIVE_HEADER_FIXED;
	pos = DTS_NATIVE_HEADER_FIXED + m->user_len;
	if ((buf[OFF_FLAGS] & ~DTS_NATIVE_F_LAST) || buf[OFF_RESERVED] != 0 || pos + 1 > end ||
	    !dts_native_user_valid(m->user, m->user_len))
		return -DTS_NREJ_BAD_HEADER;
	m->process_len = buf[pos++];
	m->process = (const char *)buf + pos;
	if (m->process_len < 1 || m->process_len > DTS_NATIVE_MAX_PROCESS ||
	    end - pos < (size_t)m->process_len + DTS_NATIVE_STATS_LEN ||
	    !all_class(m->process, m->process_len, CC_NAME))
		return -DTS_NREJ_BAD_HEADER;
	pos += m->process_len;
	if (key->user_len != m->user_len || memcmp(key->user, m->user, m->user_len) != 0)
		return -DTS_NREJ_WRONG_USER;

	/* 4. slot time */
	m->slot = (int64_t)dts_rd64(buf + OFF_SLOT);
	if (m->slot <= 0 || m->slot % DTS_SLOT_SECONDS != 0)
		return -DTS_NREJ_BAD_SLOT;
	if (m->slot < now_s - cfg->max_past_s)
		return -DTS_NREJ_STALE;
	if (m->slot > now_s + cfg->max_future_s)
		return -DTS_NREJ_FUTURE;

	/* 5. MAC */
	dts_native_mac(key->mac, buf, end, mac);
	if (CRYPTO_memcmp(mac, buf + end, DTS_NATIVE_MAC_LEN) != 0)
		return -DTS_NREJ_BAD_MAC;

	/* 6. replay window (checked; committed once the contents are valid) */
	m->key_id = key_id;
	m->instance = dts_rd64(buf + OFF_INSTANCE);
	m->seq = dts_rd64(buf + OFF_SEQ);
	r = replay_check(replay, key_id, m->instance, m->seq, now_s, cfg->max_past_s + cfg->max_future_s + 1, &ticket);
	if (r)
		return r;

	/* 7. contents */
	m->flags = buf[OFF_FLAGS];
	m->part = dts_rd16(buf + OFF_PART);
	m->npartials = dts_rd16(buf + OFF_NPARTIALS);
	m->nevents = buf[OFF_NEVENTS];
	m->stats.uptime_s = dts_rd32(buf + pos);
	m->stats.rss_bytes = dts_rd64(buf + pos + 4);
	m->stats.cpu_us = dts_rd64(buf + pos + 12);
	m->stats.cpu_pct = dts_rdf32(buf + pos + 20);
	m->stats.errors = dts_rd32(buf + pos + 24);
	m->stats.warnings = dts_rd32(buf + pos + 28);
	m->stats.dropped = dts_rd32(buf + pos + 32);
	if (!(m->stats.cpu_pct >= 0.0f && isfinite(m->stats.cpu_pct)))
		return -DTS_NREJ_BAD_STATS;
	pos += DTS_NATIVE_STATS_LEN;
	m->events_off = (uint32_t)pos;
	for (unsigned i = 0; i < m->nevents; i++) {
		struct dts_native_event ev;

		r = parse_event(buf, end, &pos, true, &ev);
		if (r)
			return r;
	}
	m->partials_off = (uint32_t)pos;
	for (unsigned i = 0; i < m->npartials; i++) {
		struct dts_native_partial p;

		r = parse_partial(buf, end, &pos, m->process_len, true, scratch, &p);
		if (r)
			return r;
	}
	if (pos != end)
		return -DTS_NREJ_TRAILING;
	m->end_off = (uint32_t)end;
	m->buf = buf;

	/* 8. accepted */
	replay_commit(replay, &ticket, key_id, m->instance, m->seq, now_s);
	return 0;
}

void dts_native_iter_events(const struct dts_native_msg *m, struct dts_native_iter *it)
{
	it->buf = m->buf;
	it->pos = m->events_off;
	it->left = m->nevents;
}

void dts_native_iter_partials(const struct dts_native_msg *m, struct dts_native_iter *it)
{
	it->buf = m->buf;
	it->pos = m->partials_off;
	it->left = m->npartials;
}

bool dts_native_next_event(struct dts_native_iter *it, struct dts_native_event *out)
{
	size_t pos = it->pos;

	if (!it->left)
		return false;
	parse_event(it->buf, SIZE_MAX, &pos, false, out);
	it->pos = (uint32_t)pos;
	it->left--;
	return true;
}

bool dts_native_next_partial(struct dts_native_iter *it, struct dts_native_partial *out)
{
	size_t pos = it->pos;

	if (!it->left)
		return false;
	parse_partial(it->buf, SIZE_MAX, &pos, 0, false, NULL, out);
	it->pos = (uint32_t)pos;
	it->left--;
	return true;
}

const struct dts_sketch *dts_native_partial_sketch(const struct dts_native_partial *p,
						   struct dts_native_scratch *sc)
{
	if (p->type != DTS_TIMER || !p->enc)
		return NULL;
	return dts_sketch_decode(&sc->sketch, p->enc, p->enc_len) == (int)p->enc_len ? &sc->sketch : NULL;
}

const struct dts_set *dts_native_partial_set(const struct dts_native_partial *p, struct dts_native_scratch *sc)
{
	struct dts_set *s;

	if (p->type != DTS_SET || !p->enc || p->enc_len < 2)
		return NULL;
	s = p->enc[1] == 0 ? &sc->exact : &sc->hll;
	return dts_set_decode(s, p->enc, p->enc_len) == (int)p->enc_len ? s : NULL;
}

const char *dts_native_reject_name(enum dts_native_reject r)
{
	static const char *const names[DTS_NREJ_COUNT] = {
		[DTS_NREJ_NONE] = "none",
		[DTS_NREJ_TOO_SHORT] = "too_short",
		[DTS_NREJ_TOO_LONG] = "too_long",
		[DTS_NREJ_BAD_MAGIC] = "bad_magic",
		[DTS_NREJ_BAD_VERSION] = "bad_version",
		[DTS_NREJ_UNKNOWN_KEY] = "unknown_key",
		[DTS_NREJ_BAD_HEADER] = "bad_header",
		[DTS_NREJ_WRONG_USER] = "wrong_user",
		[DTS_NREJ_BAD_SLOT] = "bad_slot",
		[DTS_NREJ_STALE] = "stale",
		[DTS_NREJ_FUTURE] = "future",
		[DTS_NREJ_BAD_MAC] = "bad_mac",
		[DTS_NREJ_REPLAYED] = "replayed",
		[DTS_NREJ_REPLAY_TOO_OLD] = "replay_too_old",
		[DTS_NREJ_REPLAY_FULL] = "replay_full",
		[DTS_NREJ_BAD_STATS] = "bad_stats",
		[DTS_NREJ_BAD_EVENT] = "bad_event",
		[DTS_NREJ_BAD_PARTIAL] = "bad_partial",
		[DTS_NREJ_BAD_SKETCH] = "bad_sketch",
		[DTS_NREJ_BAD_SET] = "bad_set",
		[DTS_NREJ_TRUNCATED] = "truncated",
		[DTS_NREJ_TRAILING] = "trailing",
	};

	return (unsigned)r < DTS_NREJ_COUNT ? names[r] : "unknown";
}
