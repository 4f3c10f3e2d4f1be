/*
 * fuzz_dattss.c - libFuzzer target for dts_dattss_decode (and dts_dattss_auth).
 *
 * The input is a datagram split on '\n'; each line is decoded from an exact-size heap copy (ASan sees any over-read),
 * with and without an AUTH cache. Random bytes almost never carry a valid MAC, so each line is also decoded a second
 * time with its AUTH field replaced by the valid token of its uid (when the uid part is plausible): that drives the
 * fuzzer through the accepting path too. Invariants:
 *   - the return is 0, 1 or -(a reject reason in 1..DTS_REJ_COUNT-1); the cached and uncached decodes agree;
 *   - a rejected line never changes the cache; an accepted one leaves its token's tag in the cache;
 *   - spans inside the line or scratch, user 1..DTS_MAX_USER bytes of the uid charset, "PROCESS.STAT" within
 *     DTS_MAX_NAME, names only [A-Za-z0-9_.-], value finite, weight 1, type c/ms/g, only the emphasis flag.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dts/decode.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t SECRET[] = "fuzz-secret";
static struct dts_auth_cache cache; /* persists across inputs, like a core's */

static int in(const char *p, size_t n, const void *base, size_t size)
{
	const char *b = base;

	return p >= b && p + n <= b + size;
}

static int name_chars_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

static int uid_chars_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!name_chars_ok(p + i, 1) && p[i] != '@' && p[i] != '+')
			return 0;
	return 1;
}

static void decode_line(const struct dts_decode_cfg *cfg, const char *src, size_t len)
{
	struct dts_sample out, out2;
	struct dts_scratch scratch, scratch2;
	struct dts_auth_cache before;
	char *line = malloc(len ? len : 1);

	CHECK(line != NULL);
	memcpy(line, src, len);
	memcpy(&before, &cache, sizeof(cache));
	int r = dts_dattss_decode(cfg, &cache, line, len, &out, &scratch);
	int r2 = dts_dattss_decode(cfg, NULL, line, len, &out2, &scratch2);

	CHECK(r <= 1 && r > -DTS_REJ_COUNT);
	CHECK(r == r2);
	if (r != 1)
		CHECK(memcmp(&before, &cache, sizeof(cache)) == 0);
	if (r == 1) {
		CHECK(in(out.user, out.user_len, line, len) && out.user == line);
		CHECK(out.user_len >= 1 && out.user_len <= DTS_MAX_USER && uid_chars_ok(out.user, out.user_len));
		CHECK(in(out.process, out.process_len, line, len) ||
		      in(out.process, out.process_len, scratch.buf, sizeof(scratch.buf)));
		CHECK(in(out.counter, out.counter_len, line, len) ||
		      in(out.counter, out.counter_len, scratch.buf, sizeof(scratch.buf)));
		CHECK(out.process_len >= 1 && out.counter_len >= 1);
		CHECK(out.process_len + 1 + out.counter_len <= DTS_MAX_NAME);
		CHECK(name_chars_ok(out.process, out.process_len) && name_chars_ok(out.counter, out.counter_len));
		CHECK(out.tags != NULL && out.tags_len == 0);
		CHECK(out.type == DTS_COUNTER || out.type == DTS_TIMER || out.type == DTS_GAUGE);
		CHECK((out.flags & ~DTS_SAMPLE_EMPHASIS) == 0);
		CHECK(isfinite(out.value) && out.weight == 1.0 && out.ts == 0 && out.set_member == 0);
		CHECK(out2.process_len == out.process_len && out2.counter_len == out.counter_len);
		CHECK(memcmp(&out2.value, &out.value, sizeof(double)) == 0 && out2.type == out.type);
		/* a second decode is now a cache hit and must agree */
		CHECK(dts_dattss_decode(cfg, &cache, line, len, &out2, &scratch2) == 1);
	}
	free(line);
}

/* Replace the AUTH field (up to the first ':') with the valid token of its uid (text before the last '_'). */
static void decode_with_valid_auth(const struct dts_decode_cfg *cfg, const char *p, size_t len)
{
	const char *colon = memchr(p, ':', len);
	char buf[DTS_MAX_LINE + 128];
	char tok[DTS_MAX_USER + 64];

	if (colon == NULL)
		return;
	size_t auth_len = (size_t)(colon - p), uid_len = auth_len;
	for (size_t i = auth_len; i > 0; i--) {
		if (p[i - 1] == '_') {
			uid_len = i - 1;
			break;
		}
	}
	if (uid_len == 0 || uid_len > DTS_MAX_USER)
		return;
	int n = dts_dattss_auth(cfg->secret, cfg->secret_len, p, uid_len, tok, sizeof(tok));
	CHECK(n == (int)uid_len + 41);
	size_t rest = len - auth_len;
	if ((size_t)n + rest > sizeof(buf))
		return;
	memcpy(buf, tok, (size_t)n);
	memcpy(buf + n, colon, rest);
	decode_line(cfg, buf, (size_t)n + rest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dts_decode_cfg cfg;
	const char *p = (const char *)data, *end = p + size;

	dts_decode_cfg_defaults(&cfg);
	cfg.secret = SECRET;
	cfg.secret_len = sizeof(SECRET) - 1;
	while (p <= end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl != NULL ? nl : end;

		decode_line(&cfg, p, (size_t)(e - p));
		decode_with_valid_auth(&cfg, p, (size_t)(e - p));
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return 0;
}
