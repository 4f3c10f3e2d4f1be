/*
 * dattss_line.c - the original DaTtSs UDP line and its AUTH token (contract in dts/decode.h, docs/protocols.md).
 *
 *   AUTH:PROCESS:STAT:VALUE        e.g.  42_3c1b...(40 hex):api:query:153ms!
 *   AUTH  = <uid> '_' <40 hex digits of HMAC-SHA1(secret, uid)>      uid = [A-Za-z0-9@._+-]{1,DTS_MAX_USER}
 *   VALUE = <decimal number> ('ms' | 'c' | 'g') ['!']
 *
 * Checks run in this order; the first failing one names the reject reason:
 *   1. line: trailing '\r' dropped, empty or all blank -> 0, longer than DTS_MAX_LINE -> line_too_long;
 *   2. exactly four ':'-separated fields -> dattss_format;
 *   3. the server has a secret -> no_secret;
 *   4. AUTH's shape (uid charset and length, '_', 40 hex digits) -> auth_format;
 *   5. PROCESS and STAT, normalised like statsd names (normalize.h) -> empty_name / name_too_long
 *      (each non-empty, and "PROCESS.STAT" at most DTS_MAX_NAME bytes, the bound on a statsd name);
 *   6. VALUE -> bad_value (empty or not a number), no_type (a number without suffix), bad_type (another suffix);
 *   7. the MAC -> auth_mac. Last, so that malformed lines never cost an HMAC.
 *
 * The AUTH cache: a verified token is remembered per core by a 64-bit tag, so a steady client costs one short hash
 * per line instead of an HMAC (~1.5 us with OpenSSL 3's one-shot HMAC()). The tag is
 *     dts_hash64(token, len, dts_hash64(secret, secret_len, DTS_HASH_SEED)), with 0 mapped to 1,
 * i.e. keyed by the secret: a new secret invalidates every cached tag without a flush, and nobody who does not know
 * the secret can predict a tag (dts_hash64 is not collision resistant, so an unkeyed tag would let someone who
 * knows one valid token's tag search for a colliding forged token). slot = tag % DTS_AUTH_CACHE_SIZE; a slot holds
 * the last verified token that mapped to it. Only verified tokens are stored.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "dts/decode.h"
#include "dts/hash.h"
#include "normalize.h"

#define DTS__MAC_LEN 20 /* SHA-1 */
#define DTS__MAC_HEX (2 * DTS__MAC_LEN)

_Static_assert(DTS_SCRATCH_SIZE >= 2 * DTS_MAX_NAME, "scratch holds a normalised process and stat");
_Static_assert(DTS_MAX_USER <= UINT16_MAX, "user_len is a u16");

void dts_auth_cache_init(struct dts_auth_cache *c)
{
	memset(c, 0, sizeof(*c));
}

static inline bool uid_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '@' || c == '.' ||
	       c == '_' || c == '+' || c == '-';
}

static inline int hex_val(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20; /* ASCII lower case; non-letters stay outside 'a'..'f' */
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int hmac_sha1(const uint8_t *secret, size_t secret_len, const char *msg, size_t msg_len,
		     unsigned char md[DTS__MAC_LEN])
{
	unsigned char full[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	static const uint8_t empty_key[1];

	if (secret_len > INT_MAX)
		return -EINVAL;
	/* OpenSSL 3 refuses a NULL key even with length 0: pass a real (empty) one. */
	if (HMAC(EVP_sha1(), secret != NULL ? secret : empty_key, (int)secret_len, (const unsigned char *)msg,
		 msg_len, full, &n) == NULL ||
	    n != DTS__MAC_LEN)
		return -EIO;
	memcpy(md, full, DTS__MAC_LEN);
	return 0;
}

int dts_dattss_auth(const uint8_t *secret, size_t secret_len, const char *uid, size_t uid_len, char *out,
		    size_t out_size)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[DTS__MAC_LEN];
	int r;

	if (uid_len > (size_t)INT_MAX - (DTS__MAC_HEX + 2))
		return -EINVAL;
	if (out_size < uid_len + DTS__MAC_HEX + 2)
		return -ENOSPC;
	r = hmac_sha1(secret, secret_len, uid, uid_len, md);
	if (r != 0)
		return r;
	memcpy(out, uid, uid_len);
	out[uid_len] = '_';
	for (size_t i = 0; i < DTS__MAC_LEN; i++) {
		out[uid_len + 1 + 2 * i] = hex[md[i] >> 4];
		out[uid_len + 2 + 2 * i] = hex[md[i] & 15];
	}
	out[uid_len + 1 + DTS__MAC_HEX] = '\0';
	return (int)(uid_len + 1 + DTS__MAC_HEX);
}

/*
 * Normalise one name field into buf (capacity cap) unless it is already normal, in which case it is used in place.
 * Returns the normalised length (cap + 1 when longer than cap).
 */
static size_t name_field(const char *p, size_t n, char *buf, size_t cap, const char **out)
{
	size_t i = 0;

	while (i < n && dts__name_keep((unsigned char)p[i]))
		i++;
	if (i == n) {
		*out = p;
		return n <= cap ? n : cap + 1;
	}
	*out = buf;
	return dts__normalize(p, n, buf, cap, false);
}

int dts_dattss_decode(const struct dts_decode_cfg *cfg, struct dts_auth_cache *cache, const char *line, size_t len,
		      struct dts_sample *out, struct dts_scratch *scratch)
{
	/* 1. The line. */
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0)
		return 0;
	if (len > DTS_MAX_LINE)
		return -DTS_REJ_LINE_TOO_LONG;
	const char *lend = line + len;

	/* 2. Four fields. */
	const char *c1 = memchr(line, ':', len);
	if (c1 == NULL)
		return dts__is_blank(line, len) ? 0 : -DTS_REJ_DATTSS_FORMAT;
	const char *c2 = memchr(c1 + 1, ':', (size_t)(lend - c1 - 1));
	const char *c3 = c2 != NULL ? memchr(c2 + 1, ':', (size_t)(lend - c2 - 1)) : NULL;
	if (c3 == NULL || memchr(c3 + 1, ':', (size_t)(lend - c3 - 1)) != NULL)
		return -DTS_REJ_DATTSS_FORMAT;

	/* 3. A secret to check AUTH against. */
	if (cfg->secret == NULL)
		return -DTS_REJ_NO_SECRET;

	/* 4. AUTH = uid '_' 40 hex; uid may itself contain '_', so the separator is the 41st byte from the end. */
	size_t auth_len = (size_t)(c1 - line);
	if (auth_len < DTS__MAC_HEX + 2 || line[auth_len - DTS__MAC_HEX - 1] != '_')
		return -DTS_REJ_AUTH_FORMAT;
	size_t uid_len = auth_len - DTS__MAC_HEX - 1;
	if (uid_len > DTS_MAX_USER)
		return -DTS_REJ_AUTH_FORMAT;
	for (size_t i = 0; i < uid_len; i++)
		if (!uid_char((unsigned char)line[i]))
			return -DTS_REJ_AUTH_FORMAT;
	unsigned char want[DTS__MAC_LEN];
	const char *hx = line + uid_len + 1;
	for (size_t i = 0; i < DTS__MAC_LEN; i++) {
		int hi = hex_val((unsigned char)hx[2 * i]), lo = hex_val((unsigned char)hx[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -DTS_REJ_AUTH_FORMAT;
		want[i] = (unsigned char)(hi << 4 | lo);
	}

	/* 5. PROCESS and STAT: process in scratch[0, MAX_NAME), stat right after it when they need normalising. */
	const char *process, *stat;
	size_t plen = name_field(c1 + 1, (size_t)(c2 - c1 - 1), scratch->buf, DTS_MAX_NAME, &process);
	if (plen == 0)
		return -DTS_REJ_EMPTY_NAME;
	if (plen > DTS_MAX_NAME)
		return -DTS_REJ_NAME_TOO_LONG;
	size_t slen = name_field(c2 + 1, (size_t)(c3 - c2 - 1), scratch->buf + plen, DTS_MAX_NAME, &stat);
	if (slen == 0)
		return -DTS_REJ_EMPTY_NAME;
	if (plen + 1 + slen > DTS_MAX_NAME)
		return -DTS_REJ_NAME_TOO_LONG;

	/* 6. VALUE. */
	const char *vp = c3 + 1;
	size_t vn = (size_t)(lend - vp);
	uint8_t flags = 0;
	enum dts_type type;
	double value;
	if (vn > 0 && vp[vn - 1] == '!') {
		flags = DTS_SAMPLE_EMPHASIS;
		vn--;
	}
	if (vn == 0)
		return -DTS_REJ_BAD_VALUE;
	if (vn >= 2 && vp[vn - 2] == 'm' && vp[vn - 1] == 's') {
		type = DTS_TIMER;
		vn -= 2;
	} else if (vp[vn - 1] == 'c') {
		type = DTS_COUNTER;
		vn--;
	} else if (vp[vn - 1] == 'g') {
		type = DTS_GAUGE;
		vn--;
	} else if ((vp[vn - 1] >= '0' && vp[vn - 1] <= '9') || vp[vn - 1] == '.') {
		return -DTS_REJ_NO_TYPE;
	} else {
		return -DTS_REJ_BAD_TYPE;
	}
	if (dts_parse_double(vp, vn, &value) != 0)
		return -DTS_REJ_BAD_VALUE;

	/* 7. The MAC, unless this core verified the same token before. */
	uint64_t tag = dts_hash64(line, auth_len, dts_hash64(cfg->secret, cfg->secret_len, DTS_HASH_SEED));
	if (tag == 0)
		tag = 1;
	size_t slot = (size_t)(tag % DTS_AUTH_CACHE_SIZE);
	if (cache == NULL || cache->tag[slot] != tag) {
		unsigned char md[DTS__MAC_LEN];

		if (hmac_sha1(cfg->secret, cfg->secret_len, line, uid_len, md) != 0 ||
		    CRYPTO_memcmp(md, want, DTS__MAC_LEN) != 0)
			return -DTS_REJ_AUTH_MAC;
		if (cache != NULL)
			cache->tag[slot] = tag;
	}

	out->user = line;
	out->user_len = (uint16_t)uid_len;
	out->process = process;
	out->process_len = (uint16_t)plen;
	out->counter = stat;
	out->counter_len = (uint16_t)slen;
	out->tags = "";
	out->tags_len = 0;
	out->type = (uint8_t)type;
	out->flags = flags;
	out->value = value;
	out->weight = 1.0;
	out->set_member = 0;
	out->ts = 0;
	return 1;
}
