/*
 * fuzz_statsd.c - libFuzzer target for dts_statsd_decode.
 *
 * The input is a datagram: it is split on '\n' and every line decoded, as dts_ingest does. Each line is first copied
 * into a heap buffer of exactly its length so ASan sees any read past it. Invariants checked on every result:
 *   - the return is 0..max_out or -(a reject reason in 1..DTS_REJ_COUNT-1);
 *   - every span lies inside the line, the scratch buffer or the configured default process;
 *   - lengths are within the limits (name, tags), the user is the listener's (NULL/0);
 *   - names hold only [A-Za-z0-9_.-], tags only those and ':' and ',', and tags are sorted and distinct;
 *   - value finite, weight finite and >= 1, type in range, ts 0 or within the skew window;
 *   - decoding is deterministic (a second decode gives the same result);
 *   - a trailing '\r' changes nothing: the line with one added decodes to the same result. Such a line always takes
 *     the full decoder (statsd.c), so this also holds the fast path to the full decoder's answer;
 *   - dts_parse_double (its inline fast path included) agrees with glibc's strtod, bit for bit, on the whole line and
 *     on each text between ':' and '|' or ':' and on "|@" rates, whenever the text is made of number characters only;
 *   - the fast path as the RX core runs it (statsd_fast.h: from each line's start to the end of the whole datagram)
 *     ends a line it takes exactly at the line's end and gives what dts_statsd_decode gives for the line alone, and
 *     stops a line it leaves at its sections inside that line.
 * The configuration alternates between the defaults and no-split with '_' as separator, chosen by the first byte.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dts/decode.h"
#include "../../engine/src/statsd_fast.h"
#include "fuzz_check.h"

#define NOW 1700000000LL
#define MAX_OUT 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

static void check_tags(const char *t, size_t n)
{
	const char *prev = NULL;
	size_t prev_len = 0;
	size_t a = 0;

	CHECK(n <= DTS_MAX_TAGS_LEN);
	if (n == 0)
		return;
	unsigned count = 0;
	for (;;) {
		size_t b = a;
		while (b < n && t[b] != ',')
			b++;
		CHECK(b > a); /* no empty tag */
		for (size_t i = a; i < b; i++)
			CHECK(name_chars_ok(t + i, 1) || t[i] == ':');
		if (prev != NULL) {
			size_t m = prev_len < b - a ? prev_len : b - a;
			int c = memcmp(prev, t + a, m);
			CHECK(c < 0 || (c == 0 && prev_len < b - a)); /* strictly increasing */
		}
		prev = t + a;
		prev_len = b - a;
		count++;
		if (b == n)
			break;
		a = b + 1;
	}
	CHECK(count <= DTS_MAX_TAGS);
}

/*
 * Differential check of the number parser: on a text of [0-9+-.eE] only, strtod's grammar (in the C locale, which
 * this target never changes) is exactly dts_parse_double's, so both must accept with the same bits or both reject
 * (strtod: not all consumed, or overflow). Other texts would only exercise strtod's extras (spaces, hex, inf, nan).
 */
static void check_number(const char *p, size_t n)
{
	static const char chars[] = "0123456789+-.eE";
	char buf[600], *end;
	double got = 0;

	if (n == 0 || n >= sizeof(buf))
		return;
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\0' || strchr(chars, p[i]) == NULL)
			return;
	memcpy(buf, p, n);
	buf[n] = '\0';
	double want = strtod(buf, &end);
	int want_ok = end == buf + n && isfinite(want);
	int r = dts_parse_double(p, n, &got);

	if ((r == 0) != want_ok || (r == 0 && memcmp(&got, &want, sizeof(got)) != 0)) {
		fprintf(stderr, "dts_parse_double(\"%s\") = %d, %.17g; strtod: %s %.17g\n", buf, r, got,
			want_ok ? "ok" : "rejects", want);
		abort();
	}
}

/* The number texts of a line: all of it, each value between the first ':' and the next '|', each "|@" rate. */
static void check_numbers(const char *line, size_t len)
{
	const char *end = line + len, *bar = memchr(line, '|', len), *a = memchr(line, ':', len);

	check_number(line, len);
	if (a != NULL && (bar == NULL || a < bar)) {
		const char *vend = bar != NULL ? bar : end;

		for (a++;;) {
			const char *b = memchr(a, ':', (size_t)(vend - a));

			check_number(a, (size_t)((b != NULL ? b : vend) - a));
			if (b == NULL)
				break;
			a = b + 1;
		}
	}
	for (const char *s = bar; s != NULL && s + 1 < end; s = memchr(s + 1, '|', (size_t)(end - s - 1))) {
		if (s[1] == '@') {
			const char *e = memchr(s + 1, '|', (size_t)(end - s - 1));

			check_number(s + 2, (size_t)((e != NULL ? e : end) - (s + 2)));
		}
	}
}

static void decode_line(const struct dts_decode_cfg *cfg, const char *src, size_t len)
{
	static struct dts_sample out[MAX_OUT], out2[MAX_OUT];
	static struct dts_scratch scratch, scratch2;
	char *line = malloc(len ? len : 1);

	CHECK(line != NULL);
	memcpy(line, src, len);
	int r = dts_statsd_decode(cfg, line, len, NOW, out, MAX_OUT, &scratch);
	CHECK(r <= MAX_OUT && r > -DTS_REJ_COUNT);
	CHECK(dts_reject_name(r < 0 ? -r : 0) != NULL);
	for (int k = 0; k < r; k++) {
		const struct dts_sample *s = &out[k];

		CHECK(in(s->process, s->process_len, line, len) ||
		      in(s->process, s->process_len, scratch.buf, sizeof(scratch.buf)) ||
		      in(s->process, s->process_len, cfg->default_process, cfg->default_process_len));
		CHECK(in(s->counter, s->counter_len, line, len) ||
		      in(s->counter, s->counter_len, scratch.buf, sizeof(scratch.buf)));
		CHECK(s->tags != NULL);
		CHECK(s->tags_len == 0 || in(s->tags, s->tags_len, scratch.buf, sizeof(scratch.buf)));
		CHECK(s->user == NULL && s->user_len == 0);
		CHECK(s->counter_len >= 1 && s->counter_len <= DTS_MAX_NAME);
		CHECK(s->process == cfg->default_process || s->process_len + 1 + s->counter_len <= DTS_MAX_NAME);
		CHECK(s->process_len >= 1);
		CHECK(name_chars_ok(s->counter, s->counter_len));
		if (s->process != cfg->default_process)
			CHECK(name_chars_ok(s->process, s->process_len));
		check_tags(s->tags, s->tags_len);
		CHECK(s->type < DTS_NTYPES);
		CHECK(isfinite(s->value));
		CHECK(isfinite(s->weight) && s->weight >= 1.0);
		CHECK((s->flags & ~DTS_SAMPLE_GAUGE_DELTA) == 0);
		CHECK(s->type == DTS_GAUGE || s->flags == 0);
		CHECK(s->type == DTS_SET || s->set_member == 0);
		CHECK(s->ts == 0 || (s->ts >= NOW - cfg->max_past_skew_s && s->ts <= NOW + cfg->max_future_skew_s));
		CHECK(k == 0 || s->type == DTS_SET || (s->process == out[0].process && s->counter == out[0].counter));
	}
	CHECK(r <= 0 || dts_line_is_dattss(line, len) == 0);

	int r2 = dts_statsd_decode(cfg, line, len, NOW, out2, MAX_OUT, &scratch2);
	CHECK(r2 == r);
	for (int k = 0; k < r; k++) {
		CHECK(out2[k].process_len == out[k].process_len && out2[k].counter_len == out[k].counter_len);
		CHECK(memcmp(out2[k].counter, out[k].counter, out[k].counter_len) == 0);
		CHECK(out2[k].tags_len == out[k].tags_len && memcmp(out2[k].tags, out[k].tags, out[k].tags_len) == 0);
		CHECK(memcmp(&out2[k].value, &out[k].value, sizeof(double)) == 0);
		CHECK(out2[k].set_member == out[k].set_member && out2[k].flags == out[k].flags);
	}
	/* The same line with a '\r' added: the full decoder, which drops it. */
	if (len == 0 || line[len - 1] != '\r') {
		char *crlf = malloc(len + 1);

		CHECK(crlf != NULL);
		memcpy(crlf, line, len);
		crlf[len] = '\r';
		r2 = dts_statsd_decode(cfg, crlf, len + 1, NOW, out2, MAX_OUT, &scratch2);
		CHECK(r2 == r);
		for (int k = 0; k < r; k++) {
			CHECK(out2[k].process_len == out[k].process_len &&
			      memcmp(out2[k].process, out[k].process, out[k].process_len) == 0);
			CHECK(out2[k].counter_len == out[k].counter_len &&
			      memcmp(out2[k].counter, out[k].counter, out[k].counter_len) == 0);
			CHECK(out2[k].tags_len == out[k].tags_len && memcmp(out2[k].tags, out[k].tags, out[k].tags_len) == 0);
			CHECK(out2[k].type == out[k].type && out2[k].flags == out[k].flags && out2[k].ts == out[k].ts);
			CHECK(memcmp(&out2[k].value, &out[k].value, sizeof(double)) == 0);
			CHECK(memcmp(&out2[k].weight, &out[k].weight, sizeof(double)) == 0);
			CHECK(out2[k].set_member == out[k].set_member);
			/* in the line exactly when the other is */
			CHECK(in(out2[k].counter, out2[k].counter_len, crlf, len + 1) ==
			      in(out[k].counter, out[k].counter_len, line, len));
		}
		free(crlf);
	}
	check_numbers(line, len);
	free(line);
}

/*
 * The fast path on [p, end) (end: the datagram's end, in a buffer of exactly the datagram) against the line alone.
 * The RX core's form (full = false, writing only what its table update reads) against the complete one too.
 */
static void check_fast(const struct dts_decode_cfg *cfg, const char *p, const char *end)
{
	static struct dts_sample out, lean, ref[MAX_OUT];
	static struct dts_scratch scratch;
	const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl != NULL ? nl : end;
	const char *next = NULL, *lean_next = NULL;
	size_t joined = 0, lean_joined = 0;
	int r = dts__statsd_fast(cfg, dts__statsd_sep(cfg), p, end, &out, &next, &joined, true);

	memset(&lean, 0xa5, sizeof(lean)); /* what the lean form does not write stays visibly stale */
	CHECK(dts__statsd_fast(cfg, dts__statsd_sep(cfg), p, end, &lean, &lean_next, &lean_joined, false) == r);
	if (r == DTS__FAST_NO)
		return;
	CHECK(lean_next == next && lean_joined == joined);
	CHECK(lean.process == out.process && lean.process_len == out.process_len && lean.counter == out.counter &&
	      lean.counter_len == out.counter_len && lean.user_len == 0 && lean.tags_len == 0);
	CHECK(lean.type == out.type && lean.flags == out.flags &&
	      memcmp(&lean.weight, &out.weight, sizeof(double)) == 0);
	CHECK(out.type == DTS_SET ? lean.set_member == out.set_member
				  : memcmp(&lean.value, &out.value, sizeof(double)) == 0);
	CHECK(r == DTS__FAST_DONE || r == DTS__FAST_SECTIONS);
	CHECK(joined == 0 || (out.process == p && joined == (size_t)out.process_len + 1 + out.counter_len &&
			      p[out.process_len] == dts__statsd_sep(cfg)));
	if (r == DTS__FAST_SECTIONS) {
		CHECK(next > p && next < le && *next == '|');
		return;
	}
	CHECK(next == le);
	if ((size_t)(le - p) < 4 || le[-1] == '\r')
		return; /* decode_full's alone: a fast line never ends in '\r' and is at least "a:1|c" long */
	CHECK(dts_statsd_decode(cfg, p, (size_t)(le - p), NOW, ref, MAX_OUT, &scratch) == 1);
	CHECK(ref[0].process == out.process && ref[0].process_len == out.process_len);
	CHECK(ref[0].counter == out.counter && ref[0].counter_len == out.counter_len);
	CHECK(ref[0].tags_len == 0 && out.tags_len == 0 && ref[0].type == out.type && ref[0].flags == out.flags);
	CHECK(memcmp(&ref[0].value, &out.value, sizeof(double)) == 0);
	CHECK(memcmp(&ref[0].weight, &out.weight, sizeof(double)) == 0);
	CHECK(ref[0].set_member == out.set_member && out.ts == 0 && out.user == NULL && out.user_len == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dts_decode_cfg cfg;
	const char *p = (const char *)data, *end = p + size;

	dts_decode_cfg_defaults(&cfg);
	if (size > 0 && (data[0] & 0x80)) {
		cfg.split_process = data[0] & 1;
		cfg.process_sep = '_';
	}
	while (p <= end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl != NULL ? nl : end;

		decode_line(&cfg, p, (size_t)(e - p));
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	/* The whole datagram again, each line through the fast path as the RX core runs it. */
	char *dgram = malloc(size ? size : 1);

	CHECK(dgram != NULL);
	memcpy(dgram, data, size);
	for (p = dgram, end = dgram + size; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl != p)
			check_fast(&cfg, p, end);
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	free(dgram);
	return 0;
}
