/*
 * fuzz_put_agg.c - libFuzzer target for the original DaTtSs HTTP protocol's decoder (dts_put_agg_parse) and its
 * AUTH check (dts_put_agg_auth).
 *
 * The input is a PUT /agg body, decoded from an exact-size heap copy (ASan sees any over-read). Invariants of an
 * accepted body: the process is 1..DTS_NATIVE_MAX_PROCESS characters of [A-Za-z0-9_.-]; every partial has a counter
 * of [A-Za-z0-9_.-] with process + '.' + counter within DTS_MAX_NAME, a type c/ms/g, a finite aggregate with a
 * positive integral count and min <= max covering fst and lst; a timer's sketch weighs exactly its count (the rebuilt
 * distribution has one unit per value) and its quantiles stay within [min, max] give or take the sketch's accuracy
 * at its collapse level;
 * other types carry no sketch. A refused partial leaves a message; a refused body leaves one too. The first line of
 * the input is also tried as an AUTH token: accepted only with the MAC of its user.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dts/decode.h"
#include "dts/types.h"
#include "put_agg.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t SECRET[] = "fuzz-secret";

static int name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = malloc(size ? size : 1), err[256] = "", user[DTS_MAX_USER + 1], line[256], want[DTS_MAX_USER + 48];
	struct dts_put_agg_body b;
	const char *nl;
	int rc;

	memcpy(body, data, size);
	rc = dts_put_agg_parse(body, size, &b, err, sizeof(err));
	CHECK(rc == 0 || rc == -22 /* EINVAL */ || rc == -12 /* ENOMEM */);
	if (rc < 0) {
		CHECK(err[0] != '\0');
	} else if (!b.empty) {
		CHECK(name_ok(b.process, DTS_NATIVE_MAX_PROCESS));
		CHECK(b.upt == -1 || (b.upt >= 0 && isfinite(b.upt)));
		CHECK(b.refused == 0 || b.first_error[0] != '\0');
		for (size_t i = 0; i < b.n; i++) {
			const struct dts_put_agg_part *p = &b.parts[i];

			CHECK(name_ok(p->counter, DTS_MAX_NAME) &&
			      strlen(b.process) + 1 + strlen(p->counter) <= DTS_MAX_NAME);
			CHECK(p->type == DTS_COUNTER || p->type == DTS_TIMER || p->type == DTS_GAUGE);
			CHECK(p->agg.count >= 1 && p->agg.count == floor(p->agg.count));
			CHECK(isfinite(p->agg.sum) && p->agg.min <= p->agg.max);
			CHECK(p->agg.min <= p->agg.fst && p->agg.fst <= p->agg.max);
			CHECK(p->agg.min <= p->agg.lst && p->agg.lst <= p->agg.max);
			if (p->type == DTS_TIMER) {
				double lo = dts_sketch_quantile(&p->sketch, 0), hi = dts_sketch_quantile(&p->sketch, 1);
				double slack = dts_sketch_level_alpha(p->sketch.level) *
						       fmax(fabs(p->agg.min), fabs(p->agg.max)) +
					       1e-300;

				CHECK(fabs(p->sketch.count - p->agg.count) <= 1e-6 * p->agg.count);
				CHECK(lo >= p->agg.min - slack && hi <= p->agg.max + slack);
			} else {
				CHECK(p->sketch.count == 0);
			}
		}
	} else {
		CHECK(b.n == 0);
	}
	dts_put_agg_free(&b);

	/* the first line as an AUTH token */
	nl = memchr(data, '\n', size);
	if (nl && (size_t)(nl - (const char *)data) < sizeof(line) && !memchr(data, 0, (size_t)(nl - (const char *)data))) {
		memcpy(line, data, (size_t)(nl - (const char *)data));
		line[nl - (const char *)data] = '\0';
		if (!dts_put_agg_auth(SECRET, sizeof(SECRET) - 1, line, user)) {
			CHECK(dts_dattss_auth(SECRET, sizeof(SECRET) - 1, user, strlen(user), want, sizeof(want)) > 0);
			CHECK(strcasecmp(want, line) == 0);
		}
	}
	free(body);
	return 0;
}
