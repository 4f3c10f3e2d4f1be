/*
 * test_dattss.c - the DaTtSs UDP line (dts_dattss_decode), its AUTH token (dts_dattss_auth) and the AUTH cache.
 *
 * Lines are written as templates where "%A" stands for a valid AUTH token of the case's uid under the test secret
 * (computed with dts_dattss_auth, itself checked against tokens computed independently with the openssl CLI).
 * Every line is decoded from a heap copy of exactly its length, so an ASan build catches reads past it.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dts/decode.h"
#include "dts/hash.h"

static const uint8_t SECRET[] = "secret";
#define SECRET_LEN (sizeof(SECRET) - 1)

/*
 * Computed once, independently of this code:
 *   printf %s 42 | openssl dgst -sha1 -hmac secret                     -> d260a025bdbbc1e866f068473937711aa608417a
 *   printf %s 'jane.doe+ops@example.com' | openssl dgst -sha1 -hmac 'k3y!' -> bbf1c3575b089bddd6f66b26c8e18189982857af
 *   printf %s 42 | openssl dgst -sha1 -hmac ''                           -> d07aa4ddefe96fc1400d207398a27efdb188cf61
 */
#define TOKEN_42 "42_d260a025bdbbc1e866f068473937711aa608417a"
#define TOKEN_JANE "jane.doe+ops@example.com_bbf1c3575b089bddd6f66b26c8e18189982857af"
#define TOKEN_42_EMPTY_KEY "42_d07aa4ddefe96fc1400d207398a27efdb188cf61"

static void make_cfg(struct dts_decode_cfg *cfg)
{
	dts_decode_cfg_defaults(cfg);
	cfg->secret = SECRET;
	cfg->secret_len = SECRET_LEN;
}

static void token(const char *uid, char *out, size_t size)
{
	int n = dts_dattss_auth(SECRET, SECRET_LEN, uid, strlen(uid), out, size);

	cr_assert_eq(n, (int)strlen(uid) + 41, "auth(%s) = %d", uid, n);
}

/* Expand "%A" in tmpl with uid's token. */
static size_t expand(const char *tmpl, const char *uid, char *out, size_t size)
{
	char tok[DTS_MAX_USER + 64];
	size_t o = 0;

	token(uid, tok, sizeof(tok));
	for (const char *p = tmpl; *p; p++) {
		if (p[0] == '%' && p[1] == 'A') {
			size_t n = strlen(tok);
			cr_assert(o + n < size);
			memcpy(out + o, tok, n);
			o += n;
			p++;
		} else {
			cr_assert(o + 1 < size);
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	return o;
}

static bool span_in(const char *p, size_t n, const void *base, size_t size)
{
	const char *b = base;

	return p >= b && p + n <= b + size;
}

static bool span_eq(const char *p, size_t n, const char *want)
{
	return n == strlen(want) && memcmp(p, want, n) == 0;
}

/* Decode from an exact-size heap copy (kept in *copy for span checks) and check the result's invariants. */
static int decode_ex(const struct dts_decode_cfg *cfg, struct dts_auth_cache *cache, const char *line, size_t len,
		     struct dts_sample *out, struct dts_scratch *scratch, char **copy)
{
	*copy = malloc(len ? len : 1);
	cr_assert_not_null(*copy);
	memcpy(*copy, line, len);
	int r = dts_dattss_decode(cfg, cache, *copy, len, out, scratch);

	cr_assert(r >= -(DTS_REJ_COUNT - 1) && r <= 1, "return %d out of range", r);
	if (r == 1) {
		cr_assert(span_in(out->user, out->user_len, *copy, len));
		cr_assert(out->user_len >= 1 && out->user_len <= DTS_MAX_USER);
		cr_assert(span_in(out->process, out->process_len, *copy, len) ||
			  span_in(out->process, out->process_len, scratch->buf, sizeof(scratch->buf)));
		cr_assert(span_in(out->counter, out->counter_len, *copy, len) ||
			  span_in(out->counter, out->counter_len, scratch->buf, sizeof(scratch->buf)));
		cr_assert(out->process_len + 1 + out->counter_len <= DTS_MAX_NAME);
		cr_assert_not_null(out->tags);
		cr_assert_eq(out->tags_len, 0);
		cr_assert_eq(out->weight, 1.0);
		cr_assert_eq(out->ts, 0);
		cr_assert(isfinite(out->value));
	}
	return r;
}

static int decode(const struct dts_decode_cfg *cfg, struct dts_auth_cache *cache, const char *line, size_t len,
		  struct dts_sample *out, struct dts_scratch *scratch)
{
	char *copy;
	int r = decode_ex(cfg, cache, line, len, out, scratch, &copy);

	free(copy);
	return r;
}

Test(dattss, auth_matches_openssl_cli)
{
	char out[128];

	cr_expect_eq(dts_dattss_auth(SECRET, SECRET_LEN, "42", 2, out, sizeof(out)), (int)strlen(TOKEN_42));
	cr_expect_str_eq(out, TOKEN_42);

	const char *uid = "jane.doe+ops@example.com";
	cr_expect_eq(dts_dattss_auth((const uint8_t *)"k3y!", 4, uid, strlen(uid), out, sizeof(out)),
		     (int)strlen(TOKEN_JANE));
	cr_expect_str_eq(out, TOKEN_JANE);

	/* An empty key is a valid (weak) HMAC key; a NULL one with length 0 means the same. */
	cr_expect_eq(dts_dattss_auth((const uint8_t *)"", 0, "42", 2, out, sizeof(out)), 43);
	cr_expect_str_eq(out, TOKEN_42_EMPTY_KEY);
	cr_expect_eq(dts_dattss_auth(NULL, 0, "42", 2, out, sizeof(out)), 43);
	cr_expect_str_eq(out, TOKEN_42_EMPTY_KEY);
}

Test(dattss, auth_buffer_size)
{
	char out[64];

	memset(out, 'z', sizeof(out));
	/* uid_len + 42 bytes needed: one less is -ENOSPC and nothing is written. */
	cr_expect_eq(dts_dattss_auth(SECRET, SECRET_LEN, "42", 2, out, 43), -ENOSPC);
	cr_expect_eq(out[0], 'z');
	cr_expect_eq(dts_dattss_auth(SECRET, SECRET_LEN, "42", 2, out, 44), 43);
	cr_expect_eq(out[43], '\0');
	cr_expect_eq(dts_dattss_auth(SECRET, SECRET_LEN, "42", 2, out, 0), -ENOSPC);
}

#define E DTS_SAMPLE_EMPHASIS

struct ok_case {
	const char *uid;
	const char *tmpl;
	enum dts_type type;
	const char *process, *counter;
	double value;
	uint8_t flags;
};

static const struct ok_case ok_cases[] = {
	{ "42", "%A:api:query:153ms", DTS_TIMER, "api", "query", 153, 0 },
	{ "42", "%A:api:hits:1c", DTS_COUNTER, "api", "hits", 1, 0 },
	{ "42", "%A:api:mem:23.5g", DTS_GAUGE, "api", "mem", 23.5, 0 },
	{ "42", "%A:api:errors:1c!", DTS_COUNTER, "api", "errors", 1, E },
	{ "42", "%A:api:slow:2500ms!", DTS_TIMER, "api", "slow", 2500, E },
	{ "42", "%A:api:delta:-2.5g", DTS_GAUGE, "api", "delta", -2.5, 0 },
	{ "42", "%A:api:delta:+2g", DTS_GAUGE, "api", "delta", 2, 0 }, /* no gauge deltas in DaTtSs */
	{ "42", "%A:api:x:1e3ms", DTS_TIMER, "api", "x", 1000, 0 },
	{ "42", "%A:api:x:.5c", DTS_COUNTER, "api", "x", 0.5, 0 },
	{ "42", "%A:api:query.sub:1c", DTS_COUNTER, "api", "query.sub", 1, 0 },
	{ "42", "%A:My App:query/x:1c", DTS_COUNTER, "My_App", "query-x", 1, 0 },
	{ "42", "%A:a$b:c%d:1c", DTS_COUNTER, "ab", "cd", 1, 0 },
	{ "42", "%A:api:query:1c\r", DTS_COUNTER, "api", "query", 1, 0 },
	{ "jane.doe+ops@example.com", "%A:web:render:12ms", DTS_TIMER, "web", "render", 12, 0 },
	{ "a_b_c", "%A:p:s:1c", DTS_COUNTER, "p", "s", 1, 0 }, /* uid with '_': split at the last one */
	{ "A-Z.0+9@x", "%A:p:s:1c", DTS_COUNTER, "p", "s", 1, 0 },
};

Test(dattss, ok_table)
{
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;
	struct dts_auth_cache cache;
	char line[512];

	make_cfg(&cfg);
	dts_auth_cache_init(&cache);
	for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
		const struct ok_case *c = &ok_cases[i];
		size_t len = expand(c->tmpl, c->uid, line, sizeof(line));

		/* Twice: once verified by HMAC (cache miss), once from the cache; and once without a cache. */
		for (int pass = 0; pass < 3; pass++) {
			char *copy;

			memset(&out, 0xa5, sizeof(out));
			int r = decode_ex(&cfg, pass == 2 ? NULL : &cache, line, len, &out, &scratch, &copy);

			cr_expect_eq(r, 1, "case %zu pass %d \"%s\": %d (%s)", i, pass, line, r,
				     r < 0 ? dts_reject_name(-r) : "");
			if (r == 1) {
				cr_expect(span_eq(out.user, out.user_len, c->uid), "case %zu: user %.*s", i, out.user_len,
					  out.user);
				cr_expect(span_eq(out.process, out.process_len, c->process), "case %zu: process %.*s", i,
					  out.process_len, out.process);
				cr_expect(span_eq(out.counter, out.counter_len, c->counter), "case %zu: counter %.*s", i,
					  out.counter_len, out.counter);
				cr_expect_eq(out.type, c->type, "case %zu: type %u", i, out.type);
				cr_expect_eq(out.value, c->value, "case %zu: value %g", i, out.value);
				cr_expect_eq(out.flags, c->flags, "case %zu: flags %u", i, out.flags);
				cr_expect_eq(out.set_member, 0);
			}
			free(copy);
		}
	}
}

Test(dattss, uppercase_hex_accepted)
{
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;
	char line[128];

	make_cfg(&cfg);
	size_t len = expand("%A:api:q:1c", "42", line, sizeof(line));
	for (size_t k = 3; k < 43; k++)
		line[k] = (char)(line[k] >= 'a' && line[k] <= 'f' ? line[k] - 32 : line[k]);
	cr_expect(memchr(line, 'D', len) != NULL, "the token has letters to upper-case");
	cr_expect_eq(decode(&cfg, NULL, line, len, &out, &scratch), 1);
}

struct reject_case {
	const char *tmpl;
	enum dts_reject why;
};

static const struct reject_case reject_cases[] = {
	/* dattss_format: not exactly four ':'-separated fields */
	{ "garbage", DTS_REJ_DATTSS_FORMAT },
	{ "a:b:c", DTS_REJ_DATTSS_FORMAT },
	{ "%A:api:1c", DTS_REJ_DATTSS_FORMAT },
	{ "%A:api:query:1c:extra", DTS_REJ_DATTSS_FORMAT },
	{ "%A:api:query:1c:", DTS_REJ_DATTSS_FORMAT },
	{ "  x  ", DTS_REJ_DATTSS_FORMAT },
	/* auth_format */
	{ "42:api:q:1c", DTS_REJ_AUTH_FORMAT },
	{ ":api:q:1c", DTS_REJ_AUTH_FORMAT },
	{ "42_abc:api:q:1c", DTS_REJ_AUTH_FORMAT },
	{ "_d260a025bdbbc1e866f068473937711aa608417a:api:q:1c", DTS_REJ_AUTH_FORMAT }, /* empty uid */
	{ "42-d260a025bdbbc1e866f068473937711aa608417a:api:q:1c", DTS_REJ_AUTH_FORMAT }, /* no '_' */
	{ "42_d260a025bdbbc1e866f068473937711aa608417:api:q:1c", DTS_REJ_AUTH_FORMAT }, /* 39 hex */
	{ "42_d260a025bdbbc1e866f068473937711aa608417a0:api:q:1c", DTS_REJ_AUTH_FORMAT }, /* 41 hex */
	{ "42_g260a025bdbbc1e866f068473937711aa608417a:api:q:1c", DTS_REJ_AUTH_FORMAT }, /* 'g' */
	{ "42_d260a025bdbbc1e866f068473937711aa60841 a:api:q:1c", DTS_REJ_AUTH_FORMAT }, /* ' ' */
	{ "4 2_d260a025bdbbc1e866f068473937711aa608417a:api:q:1c", DTS_REJ_AUTH_FORMAT }, /* uid charset */
	{ "4/2_d260a025bdbbc1e866f068473937711aa608417a:api:q:1c", DTS_REJ_AUTH_FORMAT },
	{ "\xc3\xa9_d260a025bdbbc1e866f068473937711aa608417a:api:q:1c", DTS_REJ_AUTH_FORMAT },
	/* auth_mac: well formed, wrong MAC */
	{ "43_d260a025bdbbc1e866f068473937711aa608417a:api:q:1c", DTS_REJ_AUTH_MAC }, /* 42's MAC for uid 43 */
	{ "42_d260a025bdbbc1e866f068473937711aa608417b:api:q:1c", DTS_REJ_AUTH_MAC }, /* last digit flipped */
	{ "42_0000000000000000000000000000000000000000:api:q:1c", DTS_REJ_AUTH_MAC },
	{ TOKEN_42_EMPTY_KEY ":api:q:1c", DTS_REJ_AUTH_MAC }, /* MAC under another secret */
	/* empty_name */
	{ "%A::q:1c", DTS_REJ_EMPTY_NAME },
	{ "%A:api::1c", DTS_REJ_EMPTY_NAME },
	{ "%A:$$:q:1c", DTS_REJ_EMPTY_NAME },
	{ "%A:api:\xc3\xa9:1c", DTS_REJ_EMPTY_NAME },
	/* bad_value */
	{ "%A:api:q:", DTS_REJ_BAD_VALUE },
	{ "%A:api:q:!", DTS_REJ_BAD_VALUE },
	{ "%A:api:q:c", DTS_REJ_BAD_VALUE },
	{ "%A:api:q:ms!", DTS_REJ_BAD_VALUE },
	{ "%A:api:q:abcc", DTS_REJ_BAD_VALUE },
	{ "%A:api:q:1e999c", DTS_REJ_BAD_VALUE },
	{ "%A:api:q:1 c", DTS_REJ_BAD_VALUE },
	{ "%A:api:q:1!c", DTS_REJ_BAD_VALUE },
	{ "%A:api:q:1c!!", DTS_REJ_BAD_TYPE },
	/* no_type: a number without its suffix */
	{ "%A:api:q:153", DTS_REJ_NO_TYPE },
	{ "%A:api:q:153!", DTS_REJ_NO_TYPE },
	{ "%A:api:q:1.", DTS_REJ_NO_TYPE },
	/* bad_type: another suffix */
	{ "%A:api:q:153s", DTS_REJ_BAD_TYPE },
	{ "%A:api:q:153x", DTS_REJ_BAD_TYPE },
	{ "%A:api:q:153h", DTS_REJ_BAD_TYPE },
	{ "%A:api:q:153MS", DTS_REJ_BAD_TYPE },
	{ "%A:api:q:153C", DTS_REJ_BAD_TYPE },
	{ "%A:api:q:153 ", DTS_REJ_BAD_TYPE },
	/* order: cheap checks before the MAC, the format before everything */
	{ "43_d260a025bdbbc1e866f068473937711aa608417a::q:1c", DTS_REJ_EMPTY_NAME },
	{ "43_d260a025bdbbc1e866f068473937711aa608417a:api:q:1", DTS_REJ_NO_TYPE },
	{ "43_d260a025bdbbc1e866f068473937711aa608417a:api:q:xc", DTS_REJ_BAD_VALUE },
	{ "42:::", DTS_REJ_AUTH_FORMAT },
};

Test(dattss, reject_table)
{
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;
	struct dts_auth_cache cache;
	char line[512];

	make_cfg(&cfg);
	dts_auth_cache_init(&cache);
	for (size_t i = 0; i < sizeof(reject_cases) / sizeof(reject_cases[0]); i++) {
		const struct reject_case *c = &reject_cases[i];
		size_t len = expand(c->tmpl, "42", line, sizeof(line));
		int r = decode(&cfg, &cache, line, len, &out, &scratch);

		cr_expect_eq(r, -(int)c->why, "case %zu \"%s\": got %d (%s), want %s", i, line, r,
			     r < 0 ? dts_reject_name(-r) : "accepted", dts_reject_name(c->why));
		/* The cache is never touched by a rejected line. */
		for (size_t k = 0; k < DTS_AUTH_CACHE_SIZE; k++)
			cr_assert_eq(cache.tag[k], 0, "case %zu \"%s\" filled slot %zu", i, line, k);
	}
}

Test(dattss, no_secret)
{
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;

	dts_decode_cfg_defaults(&cfg);
	cr_expect_eq(decode(&cfg, NULL, TOKEN_42 ":api:q:1c", strlen(TOKEN_42) + 9, &out, &scratch),
		     -DTS_REJ_NO_SECRET);
	/* Malformed lines still say what is wrong with them first. */
	cr_expect_eq(decode(&cfg, NULL, "garbage", 7, &out, &scratch), -DTS_REJ_DATTSS_FORMAT);
	/* With the secret set, the same line passes. */
	make_cfg(&cfg);
	cr_expect_eq(decode(&cfg, NULL, TOKEN_42 ":api:q:1c", strlen(TOKEN_42) + 9, &out, &scratch), 1);
}

Test(dattss, blank_lines_return_zero)
{
	static const char *const blank[] = { "", "\r", " ", " \t ", "\t\r" };
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;

	make_cfg(&cfg);
	for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++)
		cr_expect_eq(decode(&cfg, NULL, blank[i], strlen(blank[i]), &out, &scratch), 0, "blank %zu", i);
	/* blank with no secret too: nothing to count */
	dts_decode_cfg_defaults(&cfg);
	cr_expect_eq(decode(&cfg, NULL, " ", 1, &out, &scratch), 0);
}

Test(dattss, every_reason_covered)
{
	static const enum dts_reject reasons[] = {
		DTS_REJ_LINE_TOO_LONG, DTS_REJ_DATTSS_FORMAT, DTS_REJ_NO_SECRET, DTS_REJ_AUTH_FORMAT,
		DTS_REJ_AUTH_MAC,      DTS_REJ_EMPTY_NAME,    DTS_REJ_NAME_TOO_LONG, DTS_REJ_BAD_VALUE,
		DTS_REJ_NO_TYPE,       DTS_REJ_BAD_TYPE,
	};
	/* Covered by their own tests: bounds (line, name, uid) and no_secret. */
	static const enum dts_reject elsewhere[] = { DTS_REJ_LINE_TOO_LONG, DTS_REJ_NAME_TOO_LONG, DTS_REJ_NO_SECRET };

	for (size_t k = 0; k < sizeof(reasons) / sizeof(reasons[0]); k++) {
		bool found = false;

		for (size_t i = 0; i < sizeof(reject_cases) / sizeof(reject_cases[0]); i++)
			found |= reject_cases[i].why == reasons[k];
		for (size_t i = 0; i < sizeof(elsewhere) / sizeof(elsewhere[0]); i++)
			found |= elsewhere[i] == reasons[k];
		cr_expect(found, "no test line for %s", dts_reject_name(reasons[k]));
	}
}

/* ---- bounds ---- */

Test(dattss, bound_line_length)
{
	static char line[DTS_MAX_LINE + 2];
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;

	make_cfg(&cfg);
	for (size_t len = DTS_MAX_LINE; len <= DTS_MAX_LINE + 1; len++) {
		/* TOKEN:api:q:000...01c */
		size_t o = (size_t)snprintf(line, sizeof(line), "%s:api:q:", TOKEN_42);

		memset(line + o, '0', len - o - 2);
		memcpy(line + len - 2, "1c", 2);
		int r = decode(&cfg, NULL, line, len, &out, &scratch);

		cr_expect_eq(r, len <= DTS_MAX_LINE ? 1 : -DTS_REJ_LINE_TOO_LONG, "len %zu: %d", len, r);
	}
}

Test(dattss, bound_uid_length)
{
	char uid[DTS_MAX_USER + 2];
	char line[256];
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;

	make_cfg(&cfg);
	for (size_t n = DTS_MAX_USER; n <= DTS_MAX_USER + 1; n++) {
		memset(uid, 'u', n);
		uid[n] = '\0';
		size_t len = expand("%A:api:q:1c", uid, line, sizeof(line));
		int r = decode(&cfg, NULL, line, len, &out, &scratch);

		cr_expect_eq(r, n <= DTS_MAX_USER ? 1 : -DTS_REJ_AUTH_FORMAT, "uid of %zu: %d", n, r);
		if (r == 1)
			cr_expect_eq(out.user_len, n);
	}
}

/* "PROCESS.STAT" is bounded like a statsd name: at most DTS_MAX_NAME bytes once normalised. */
Test(dattss, bound_name_length)
{
	char line[1024];
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;

	make_cfg(&cfg);
	for (size_t total = DTS_MAX_NAME; total <= DTS_MAX_NAME + 1; total++) {
		int want = total <= DTS_MAX_NAME ? 1 : -DTS_REJ_NAME_TOO_LONG;

		for (size_t plen = 1; plen < total - 1; plen += 37) {
			size_t slen = total - 1 - plen;

			for (int slow = 0; slow < 2; slow++) {
				size_t o = (size_t)snprintf(line, sizeof(line), "%s:", TOKEN_42);

				for (size_t k = 0; k < plen; k++) {
					line[o++] = 'p';
					if (slow && k % 5 == 0)
						line[o++] = '$'; /* dropped */
				}
				line[o++] = ':';
				for (size_t k = 0; k < slen; k++) {
					line[o++] = slow && k % 9 == 0 ? '/' : 's';
					if (slow && k % 3 == 0)
						line[o++] = '%';
				}
				o += (size_t)snprintf(line + o, sizeof(line) - o, ":1c");
				int r = decode(&cfg, NULL, line, o, &out, &scratch);

				cr_expect_eq(r, want, "total %zu plen %zu slow %d: %d", total, plen, slow, r);
				if (r == 1) {
					cr_expect_eq(out.process_len, plen);
					cr_expect_eq(out.counter_len, slen);
				}
			}
		}
	}
	/* A process alone longer than the bound. */
	size_t o = (size_t)snprintf(line, sizeof(line), "%s:", TOKEN_42);
	memset(line + o, 'p', DTS_MAX_NAME + 1);
	o += DTS_MAX_NAME + 1;
	o += (size_t)snprintf(line + o, sizeof(line) - o, ":s:1c");
	cr_expect_eq(decode(&cfg, NULL, line, o, &out, &scratch), -DTS_REJ_NAME_TOO_LONG);
}

/* ---- the AUTH cache ---- */

static uint64_t expected_tag(const uint8_t *secret, size_t secret_len, const char *tok, size_t n)
{
	uint64_t t = dts_hash64(tok, n, dts_hash64(secret, secret_len, DTS_HASH_SEED));

	return t ? t : 1;
}

static size_t filled_slots(const struct dts_auth_cache *c)
{
	size_t n = 0;

	for (size_t k = 0; k < DTS_AUTH_CACHE_SIZE; k++)
		n += c->tag[k] != 0;
	return n;
}

Test(dattss, cache_init_clears)
{
	struct dts_auth_cache c;

	memset(&c, 0x5a, sizeof(c));
	dts_auth_cache_init(&c);
	cr_expect_eq(filled_slots(&c), 0);
}

/* A verified token lands in its slot with the documented tag; nothing else is filled. */
Test(dattss, cache_miss_fills_slot)
{
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;
	struct dts_auth_cache cache;
	const char *line = TOKEN_42 ":api:q:1c";
	uint64_t tag = expected_tag(SECRET, SECRET_LEN, TOKEN_42, strlen(TOKEN_42));

	make_cfg(&cfg);
	dts_auth_cache_init(&cache);
	cr_assert_eq(decode(&cfg, &cache, line, strlen(line), &out, &scratch), 1);
	cr_expect_eq(cache.tag[tag % DTS_AUTH_CACHE_SIZE], tag);
	cr_expect_eq(filled_slots(&cache), 1);
	/* The same token again: still one slot. */
	cr_assert_eq(decode(&cfg, &cache, line, strlen(line), &out, &scratch), 1);
	cr_expect_eq(filled_slots(&cache), 1);
}

/* A hit skips the HMAC: plant the tag of a forged token and it is accepted (so nothing recomputed the MAC). */
Test(dattss, cache_hit_skips_hmac)
{
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;
	struct dts_auth_cache cache;
	const char *forged = "42_0000000000000000000000000000000000000000";
	char line[128];
	int n = snprintf(line, sizeof(line), "%s:api:q:1c", forged);
	uint64_t tag = expected_tag(SECRET, SECRET_LEN, forged, strlen(forged));

	make_cfg(&cfg);
	dts_auth_cache_init(&cache);
	cr_expect_eq(decode(&cfg, &cache, line, (size_t)n, &out, &scratch), -DTS_REJ_AUTH_MAC);
	cache.tag[tag % DTS_AUTH_CACHE_SIZE] = tag;
	cr_expect_eq(decode(&cfg, &cache, line, (size_t)n, &out, &scratch), 1);
	/* Without the cache the MAC is checked again. */
	cr_expect_eq(decode(&cfg, NULL, line, (size_t)n, &out, &scratch), -DTS_REJ_AUTH_MAC);
	/* A tag in the wrong slot is not a hit. */
	dts_auth_cache_init(&cache);
	cache.tag[(tag + 1) % DTS_AUTH_CACHE_SIZE] = tag;
	cr_expect_eq(decode(&cfg, &cache, line, (size_t)n, &out, &scratch), -DTS_REJ_AUTH_MAC);
	/* Even on a hit the rest of the line is still checked. */
	cache.tag[tag % DTS_AUTH_CACHE_SIZE] = tag;
	n = snprintf(line, sizeof(line), "%s:api:q:1x", forged);
	cr_expect_eq(decode(&cfg, &cache, line, (size_t)n, &out, &scratch), -DTS_REJ_BAD_TYPE);
}

/* Tags are keyed by the secret: a token verified under one secret is not a hit under another. */
Test(dattss, cache_keyed_by_secret)
{
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;
	struct dts_auth_cache cache;
	const char *line = TOKEN_42 ":api:q:1c";

	make_cfg(&cfg);
	dts_auth_cache_init(&cache);
	cr_assert_eq(decode(&cfg, &cache, line, strlen(line), &out, &scratch), 1);
	cfg.secret = (const uint8_t *)"rotated";
	cfg.secret_len = 7;
	cr_expect_eq(decode(&cfg, &cache, line, strlen(line), &out, &scratch), -DTS_REJ_AUTH_MAC);
	cr_expect_eq(filled_slots(&cache), 1);
}

/* Two verified tokens in one slot: the later one evicts the earlier, which is then re-verified and re-cached. */
Test(dattss, cache_slot_eviction)
{
	struct dts_decode_cfg cfg;
	struct dts_sample out;
	struct dts_scratch scratch;
	struct dts_auth_cache cache;
	char tok[2][64], uid[2][16], line[2][128];
	int nl[2];
	uint64_t tag[2];
	int found = 0;

	make_cfg(&cfg);
	/* uid "0", then the first other uid whose token shares its slot (256 slots: a few hundred uids suffice). */
	for (int u = 0; u < 100000 && found < 2; u++) {
		char cand[16], ct[64];
		snprintf(cand, sizeof(cand), "%d", u);
		int n = dts_dattss_auth(SECRET, SECRET_LEN, cand, strlen(cand), ct, sizeof(ct));
		uint64_t t = expected_tag(SECRET, SECRET_LEN, ct, (size_t)n);

		if (found == 1 && (t % DTS_AUTH_CACHE_SIZE != tag[0] % DTS_AUTH_CACHE_SIZE || t == tag[0]))
			continue;
		strcpy(uid[found], cand);
		strcpy(tok[found], ct);
		tag[found] = t;
		found++;
	}
	cr_assert_eq(found, 2);
	for (int k = 0; k < 2; k++)
		nl[k] = snprintf(line[k], sizeof(line[k]), "%s:api:q:1c", tok[k]);

	size_t slot = tag[0] % DTS_AUTH_CACHE_SIZE;
	dts_auth_cache_init(&cache);
	cr_assert_eq(decode(&cfg, &cache, line[0], (size_t)nl[0], &out, &scratch), 1);
	cr_expect_eq(cache.tag[slot], tag[0]);
	char *copy;
	cr_assert_eq(decode_ex(&cfg, &cache, line[1], (size_t)nl[1], &out, &scratch, &copy), 1);
	cr_expect_eq(cache.tag[slot], tag[1]);
	cr_expect(span_eq(out.user, out.user_len, uid[1]));
	free(copy);
	cr_assert_eq(decode(&cfg, &cache, line[0], (size_t)nl[0], &out, &scratch), 1);
	cr_expect_eq(cache.tag[slot], tag[0]);
	cr_expect_eq(filled_slots(&cache), 1);
}
