/*
 * test_put_agg.c - the original DaTtSs HTTP protocol's decoder (server/put_agg.c): AUTH, names, the JSON body with
 * every error, and the sketch rebuilt from a timer partial's bot/top/min/max - against partials computed here exactly
 * as the original node driver computes them (make_partials in clients/nodejs/lib/dattss.js), and, merged over a
 * minute, against the exact order statistics and against the original server's own merge (lib/partials.js).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dts/decode.h"
#include "dts/types.h"
#include "put_agg.h"

static const uint8_t SECRET[] = "secret";
#define SECRET_LEN (sizeof(SECRET) - 1)
/* printf %s 42 | openssl dgst -sha1 -hmac secret -> d260a025bdbbc1e866f068473937711aa608417a */
#define TOKEN_42 "42_d260a025bdbbc1e866f068473937711aa608417a"

/* ---- AUTH ---------------------------------------------------------------------------------------------------- */

Test(put_agg, auth_tokens)
{
	static const struct {
		const char *auth;
		const char *user; /* NULL: refused */
		const char *why; /* part of the message when refused */
	} cases[] = {
		{ TOKEN_42, "42", NULL },
		{ "42_D260A025BDBBC1E866F068473937711AA608417A", "42", NULL }, /* hex in upper case */
		{ "42_d260a025bdbbc1e866f068473937711aa608417b", NULL, "wrong MAC" },
		{ "43_d260a025bdbbc1e866f068473937711aa608417a", NULL, "wrong MAC" },
		{ "42_d260a025bdbbc1e866f068473937711aa60841", NULL, "40 hex" },
		{ "42_d260a025bdbbc1e866f068473937711aa608417g", NULL, "40 hex" },
		{ "d260a025bdbbc1e866f068473937711aa608417a", NULL, "40 hex" },
		{ "_d260a025bdbbc1e866f068473937711aa608417a", NULL, "40 hex" },
		{ "4*2_d260a025bdbbc1e866f068473937711aa608417a", NULL, "user part" },
		{ "", NULL, "40 hex" },
	};
	char user[DTS_MAX_USER + 1];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = dts_put_agg_auth(SECRET, SECRET_LEN, cases[i].auth, user);

		if (cases[i].user) {
			cr_expect_null(why, "%s: refused: %s", cases[i].auth, why);
			cr_expect_str_eq(user, cases[i].user);
		} else {
			cr_expect_not_null(why, "%s: accepted", cases[i].auth);
			if (why)
				cr_expect(strstr(why, cases[i].why) != NULL, "%s: \"%s\" lacks \"%s\"", cases[i].auth, why,
					  cases[i].why);
		}
	}
	cr_expect_not_null(dts_put_agg_auth(NULL, 0, TOKEN_42, user), "accepted without a secret");
}

Test(put_agg, auth_user_with_underscores)
{
	char tok[DTS_MAX_USER + 48], user[DTS_MAX_USER + 1];

	cr_assert_gt(dts_dattss_auth(SECRET, SECRET_LEN, "a_b_c", 5, tok, sizeof(tok)), 0);
	cr_expect_null(dts_put_agg_auth(SECRET, SECRET_LEN, tok, user));
	cr_expect_str_eq(user, "a_b_c");
}

/* ---- names --------------------------------------------------------------------------------------------------- */

Test(put_agg, names_normalised_like_statsd)
{
	static const struct {
		const char *in, *out;
		size_t ret;
	} cases[] = {
		{ "query", "query", 5 },       { "my app", "my_app", 6 },  { "a \t b", "a_b", 3 },
		{ "x/y", "x-y", 3 },	       { "hits!", "hits", 4 },	   { "a:b.c", "ab.c", 4 },
		{ "!!!", "", 0 },	       { "", "", 0 },		   { "abcdefghij", "abcdefgh", 9 }, /* max 8 */
		{ "ab!!cdefgh", "abcdefgh", 8 }, { "abcdefgh ", "abcdefgh", 9 },
	};
	char out[16];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = dts_put_agg_name(cases[i].in, out, 8);

		cr_expect_eq(n, cases[i].ret, "'%s': %zu, want %zu", cases[i].in, n, cases[i].ret);
		cr_expect_str_eq(out, cases[i].out, "'%s'", cases[i].in);
	}
}

/* ---- the rebuilt timer distribution ------------------------------------------------------------------------- */

/* What the original node driver sends for these values (already sorted by value; time order = given order). */
struct driver_partial {
	double n, sum, min, max, bot, top;
};

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static struct driver_partial driver(const double *v, size_t n, double pct)
{
	double *s = malloc(n * sizeof(*s));
	struct driver_partial p = { .n = (double)n };
	size_t bidx, tidx;

	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), dbl_cmp);
	for (size_t i = 0; i < n; i++)
		p.sum += s[i];
	p.min = s[0];
	p.max = s[n - 1];
	bidx = (size_t)fmax(fmin(ceil(pct * (double)n), (double)n - 1), 0);
	tidx = (size_t)fmax(fmin(floor((1 - pct) * (double)n + 0.5), (double)n - 1), 0);
	p.bot = s[bidx];
	p.top = s[tidx];
	free(s);
	return p;
}

/* Within the sketch's guarantee at its collapse level (1% at level 0, 2% after one collapse: a value range over ~150). */
static bool near_s(const struct dts_sketch *s, double got, double want)
{
	return fabs(got - want) <= (dts_sketch_level_alpha(s->level) + 1e-6) * fabs(want) + 1e-12;
}

#define near(got, want) near_s(&s, (got), (want))

Test(put_agg, small_partials_are_reproduced_exactly)
{
	static const double sets[][4] = { { 7 }, { 3, 9 }, { 2, 5, 40 }, { 1, 4, 9, 100 } };

	for (size_t k = 0; k < 4; k++) {
		size_t n = k + 1;
		struct driver_partial p = driver(sets[k], n, 0.1);
		struct dts_sketch s;

		dts_sketch_init(&s);
		cr_assert_eq(dts_put_agg_sketch(&s, p.n, p.sum, p.min, p.bot, p.top, p.max, 0.1), 0);
		cr_expect_eq(s.count, (double)n);
		/* with n <= 3 every rank is known; with 4, rank 2 is not (the driver's top is then the max) */
		for (size_t r = 0; r < n; r++) {
			double q = n == 1 ? 0 : (double)r / (double)(n - 1);

			if (n == 4 && r == 2)
				continue;
			cr_expect(near(dts_sketch_quantile(&s, q), sets[k][r]), "n %zu rank %zu: %g, want %g", n, r,
				  dts_sketch_quantile(&s, q), sets[k][r]);
		}
		dts_sketch_free(&s);
	}
}

Test(put_agg, a_partial_read_back_alone_gives_its_own_fields)
{
	static const size_t sizes[] = { 5, 10, 11, 37, 100, 1000, 100000 };
	static const double pcts[] = { 0.1, 0.05, 0.25, 0.5 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (size_t k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++) {
			size_t n = sizes[i];
			double *v = malloc(n * sizeof(*v)), pct = pcts[k];
			struct driver_partial p;
			struct dts_sketch s;

			for (size_t j = 0; j < n; j++) /* a skewed distribution: 1 .. ~1000 */
				v[j] = 1 + pow((double)j / (double)n, 3) * 1000;
			p = driver(v, n, pct);
			dts_sketch_init(&s);
			cr_assert_eq(dts_put_agg_sketch(&s, p.n, p.sum, p.min, p.bot, p.top, p.max, pct), 0);
			cr_expect(fabs(s.count - (double)n) < 1e-6 * (double)n, "n %zu: sketch count %g", n, s.count);
			cr_expect(near(dts_sketch_quantile(&s, 0), p.min), "n %zu: q0 %g min %g", n,
				  dts_sketch_quantile(&s, 0), p.min);
			cr_expect(near(dts_sketch_quantile(&s, 1), p.max), "n %zu: q1 %g max %g", n,
				  dts_sketch_quantile(&s, 1), p.max);
			/* where q = pct reads a rank of its own (not min's, rank 0) and the driver's bot is not the max,
			 * it reads bot; likewise q = 1 - pct reads top unless the driver's top is the max (n <= 1.5 / pct) */
			if (floor(pct * (double)(n - 1)) >= 1 && ceil(pct * (double)n) < (double)n - 1)
				cr_expect(near(dts_sketch_quantile(&s, pct), p.bot), "n %zu pct %g: bot %g, want %g", n,
					  pct, dts_sketch_quantile(&s, pct), p.bot);
			if (floor((1 - pct) * (double)n + 0.5) < (double)n - 1)
				cr_expect(near(dts_sketch_quantile(&s, 1 - pct), p.top), "n %zu pct %g: top %g, want %g",
					  n, pct, dts_sketch_quantile(&s, 1 - pct), p.top);
			else /* the driver's top is the max: q = 1 - pct reads between bot and max */
				cr_expect(dts_sketch_quantile(&s, 1 - pct) >= p.bot * 0.98 &&
						  dts_sketch_quantile(&s, 1 - pct) <= p.max * 1.02,
					  "n %zu pct %g: q %g outside [bot, max]", n, pct, dts_sketch_quantile(&s, 1 - pct));
			dts_sketch_free(&s);
			free(v);
		}
	}
}

Test(put_agg, inconsistent_partials_still_make_a_distribution)
{
	struct dts_sketch s;

	/* the original driver loses a 0 in min (values 0, 5, 9: min 5, bot 5) and can send min > bot */
	dts_sketch_init(&s);
	cr_assert_eq(dts_put_agg_sketch(&s, 10, 50, 5, 0, 9, 9, 0.1), 0);
	cr_expect_eq(s.count, 10);
	cr_expect(near(dts_sketch_quantile(&s, 0), 0));
	cr_expect(near(dts_sketch_quantile(&s, 1), 9));
	dts_sketch_free(&s);
	dts_sketch_init(&s);
	cr_expect_eq(dts_put_agg_sketch(&s, 0, 0, 1, 1, 1, 1, 0.1), -EINVAL);
	cr_expect_eq(dts_put_agg_sketch(&s, 3, 3, 1, 1, 1, 1, 0.6), -EINVAL);
	cr_expect_eq(dts_put_agg_sketch(&s, 3, 3, 1, NAN, 1, 1, 0.1), -EINVAL);
	cr_expect_eq(s.count, 0);
	dts_sketch_free(&s);
}

/* The original server's merge of a minute's partials (lib/partials.js agg_partials): its top and bot. */
static void original_merge(const struct driver_partial *p, size_t n, double pct, double *bot, double *top)
{
	double cnt = 0, acc;
	size_t *idx = malloc(n * sizeof(*idx));

	for (size_t i = 0; i < n; i++) {
		cnt += p[i].n;
		idx[i] = i;
	}
	/* top: partials by decreasing top, until the ceil(cnt_i * pct) add up to cnt * pct */
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (p[idx[j]].top > p[idx[i]].top) {
				size_t t = idx[i];
				idx[i] = idx[j];
				idx[j] = t;
			}
	acc = 0;
	for (size_t i = 0; i < n; i++) {
		*top = p[idx[i]].top;
		acc += ceil(p[idx[i]].n * pct);
		if (acc >= cnt * pct)
			break;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (p[idx[j]].bot < p[idx[i]].bot) {
				size_t t = idx[i];
				idx[i] = idx[j];
				idx[j] = t;
			}
	acc = 0;
	for (size_t i = 0; i < n; i++) {
		*bot = p[idx[i]].bot;
		acc += ceil(p[idx[i]].n * pct);
		if (acc >= cnt * pct)
			break;
	}
	free(idx);
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static double uniform(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

/*
 * Minutes of 12 five-second partials (20..200 values each, log-normal with sigma 0.8) whose scale drifts during the
 * minute by a factor up to 1 + drift (latency that rises and falls: the case where merging percentiles is hard). The
 * rebuilt sketches, merged, give each minute's BOT10 and TOP10; so does the original server's merge of bot and top.
 * Both are compared with the exact order statistics of the minute's values. docs/protocols.md §5.3 quotes the mean
 * relative errors this test logs (criterion --verbose).
 */
static void merged_errors(double drift, double err[4])
{
	const int minutes = 200;

	memset(err, 0, 4 * sizeof(err[0]));
	for (int m = 0; m < minutes; m++) {
		struct driver_partial parts[12];
		double *all = malloc(12 * 200 * sizeof(*all)), exact_b, exact_t, ob, ot;
		size_t total = 0;
		struct dts_sketch merged;

		dts_sketch_init(&merged);
		for (int s = 0; s < 12; s++) {
			size_t n = 20 + (size_t)(uniform() * 180);
			double scale = 10 * (1 + drift * sin(M_PI * s / 12.0) * uniform());
			struct dts_sketch one;

			for (size_t j = 0; j < n; j++) /* log-normal around scale */
				all[total + j] = scale * exp(0.8 * sqrt(-2 * log(uniform())) * cos(2 * M_PI * uniform()));
			parts[s] = driver(all + total, n, 0.1);
			total += n;
			dts_sketch_init(&one);
			cr_assert_eq(dts_put_agg_sketch(&one, parts[s].n, parts[s].sum, parts[s].min, parts[s].bot,
							parts[s].top, parts[s].max, 0.1),
				     0);
			cr_assert_eq(dts_sketch_merge(&merged, &one), 0);
			dts_sketch_free(&one);
		}
		qsort(all, total, sizeof(*all), dbl_cmp);
		exact_b = all[(size_t)floor(0.1 * (double)(total - 1))];
		exact_t = all[(size_t)floor(0.9 * (double)(total - 1))];
		original_merge(parts, 12, 0.1, &ob, &ot);
		err[0] += fabs(dts_sketch_quantile(&merged, 0.1) - exact_b) / exact_b / minutes;
		err[1] += fabs(ob - exact_b) / exact_b / minutes;
		err[2] += fabs(dts_sketch_quantile(&merged, 0.9) - exact_t) / exact_t / minutes;
		err[3] += fabs(ot - exact_t) / exact_t / minutes;
		dts_sketch_free(&merged);
		free(all);
	}
}

Test(put_agg, merged_partials_beat_the_original_merge)
{
	static const double drifts[] = { 0, 1, 4 };

	for (size_t i = 0; i < sizeof(drifts) / sizeof(drifts[0]); i++) {
		double err[4];

		merged_errors(drifts[i], err);
		cr_log_info("drift %g: mean relative error over 200 minutes: BOT10 ours %.1f%% original %.1f%%, TOP10 ours "
			    "%.1f%% original %.1f%%",
			    drifts[i], 100 * err[0], 100 * err[1], 100 * err[2], 100 * err[3]);
		cr_expect_lt(err[0], err[1], "drift %g: BOT10 ours %g, original %g", drifts[i], err[0], err[1]);
		cr_expect_lt(err[2], err[3], "drift %g: TOP10 ours %g, original %g", drifts[i], err[2], err[3]);
	}
}

/* ---- the body ------------------------------------------------------------------------------------------------ */

Test(put_agg, the_original_drivers_body)
{
	const char *body =
		"{\"nam\":\"api server\",\"upt\":12.345,\"prt\":{\"c\":[{\"typ\":\"c\",\"nam\":\"hits\",\"pct\":0.1,"
		"\"sum\":5,\"cnt\":3,\"emp\":false,\"max\":3,\"min\":1,\"lst\":3,\"fst\":1,\"bot\":1,\"top\":3}],\"ms\":["
		"{\"typ\":\"ms\",\"nam\":\"query\",\"pct\":0.1,\"sum\":1122,\"cnt\":10,\"emp\":true,\"max\":300,\"min\":"
		"12,\"lst\":80,\"fst\":12,\"bot\":20,\"top\":300}],\"g\":[{\"typ\":\"g\",\"nam\":\"queue\",\"pct\":0.1,"
		"\"sum\":17,\"cnt\":1,\"emp\":false,\"max\":17,\"min\":17,\"lst\":17,\"fst\":17,\"bot\":17,\"top\":17}]}}";
	struct dts_put_agg_body b;
	char err[256];

	cr_assert_eq(dts_put_agg_parse(body, strlen(body), &b, err, sizeof(err)), 0, "%s", err);
	cr_expect(!b.empty);
	cr_expect_str_eq(b.process, "api_server");
	cr_expect_eq(b.upt, 12.345);
	cr_assert_eq(b.n, 3);
	cr_expect_eq(b.refused, 0);
	cr_expect_str_eq(b.parts[0].counter, "hits");
	cr_expect_eq(b.parts[0].type, DTS_COUNTER);
	cr_expect_eq(b.parts[0].agg.sum, 5);
	cr_expect_eq(b.parts[0].agg.count, 3);
	cr_expect_eq(b.parts[0].sketch.count, 0);
	cr_expect_eq(b.parts[1].type, DTS_TIMER);
	cr_expect_eq(b.parts[1].agg.count, 10);
	cr_expect_eq(b.parts[1].agg.min, 12);
	cr_expect_eq(b.parts[1].agg.max, 300);
	cr_expect_eq(b.parts[1].agg.fst, 12);
	cr_expect_eq(b.parts[1].agg.lst, 80);
	cr_expect_eq(b.parts[1].sketch.count, 10);
	cr_expect_eq(b.parts[2].type, DTS_GAUGE);
	cr_expect_eq(b.parts[2].agg.lst, 17);
	dts_put_agg_free(&b);
}

Test(put_agg, bodies_and_their_errors)
{
	static const struct {
		const char *body;
		int rc;
		const char *error; /* prefix of err (rc < 0) or of first_error */
		size_t n, refused;
	} cases[] = {
		{ "", 0, NULL, 0, 0 },
		{ " \r\n", 0, NULL, 0, 0 },
		{ "{\"nam\":\"p\"}", 0, NULL, 0, 0 },
		{ "{\"nam\":\"p\",\"upt\":null,\"prt\":null}", 0, NULL, 0, 0 },
		{ "{\"nam\":\"p\",\"mem\":123,\"prt\":{\"c\":[],\"ms\":[],\"g\":[]}}", 0, NULL, 0, 0 }, /* older drivers */
		{ "nope", -EINVAL, "body: not JSON", 0, 0 },
		{ "\"p\"", -EINVAL, "body: not JSON", 0, 0 },
		{ "[{\"nam\":\"p\"}]", -EINVAL, "body: must be a JSON object", 0, 0 },
		{ "{}", -EINVAL, "nam: required", 0, 0 },
		{ "{\"nam\":3}", -EINVAL, "nam: must be a string", 0, 0 },
		{ "{\"nam\":\"***\"}", -EINVAL, "nam: must have", 0, 0 },
		{ "{\"nam\":\"p\",\"upt\":-1}", -EINVAL, "upt:", 0, 0 },
		{ "{\"nam\":\"p\",\"prt\":5}", -EINVAL, "prt:", 0, 0 },
		{ "{\"nam\":\"p\",\"prt\":{\"g\":5}}", 0, "prt.g: must be an array", 0, 1 },
		{ "{\"nam\":\"p\",\"prt\":{\"c\":[3]}}", 0, "prt.c[0]: must be an object", 0, 1 },
		{ "{\"nam\":\"p\",\"prt\":{\"c\":[{\"nam\":\"x\",\"sum\":1,\"cnt\":1.5,\"min\":1,\"max\":1,\"fst\":1,"
		  "\"lst\":1}]}}",
		  0, "prt.c[0].cnt: must be a positive integer", 0, 1 },
		{ "{\"nam\":\"p\",\"prt\":{\"c\":[{\"nam\":\"x\",\"sum\":\"1\",\"cnt\":1,\"min\":1,\"max\":1,\"fst\":1,"
		  "\"lst\":1}]}}",
		  0, "prt.c[0].sum: must be a finite number", 0, 1 },
		{ "{\"nam\":\"p\",\"prt\":{\"c\":[{\"sum\":1,\"cnt\":1,\"min\":1,\"max\":1,\"fst\":1,\"lst\":1}]}}", 0,
		  "prt.c[0].nam: required", 0, 1 },
		{ "{\"nam\":\"p\",\"prt\":{\"c\":[{\"nam\":\"!\",\"sum\":1,\"cnt\":1,\"min\":1,\"max\":1,\"fst\":1,"
		  "\"lst\":1}]}}",
		  0, "prt.c[0].nam: no character", 0, 1 },
		{ "{\"nam\":\"p\",\"prt\":{\"c\":[{\"nam\":\"x\",\"sum\":1,\"cnt\":1,\"min\":1,\"max\":1,\"fst\":1,\"lst\":1,"
		  "\"emp\":1}]}}",
		  0, "prt.c[0].emp:", 0, 1 },
		{ "{\"nam\":\"p\",\"prt\":{\"ms\":[{\"nam\":\"x\",\"sum\":1,\"cnt\":1,\"min\":1,\"max\":1,\"fst\":1,\"lst\":1,"
		  "\"bot\":1}]}}",
		  0, "prt.ms[0].top: required", 0, 1 },
		{ "{\"nam\":\"p\",\"prt\":{\"c\":[{\"nam\":\"x\",\"sum\":1,\"cnt\":1,\"min\":1,\"max\":1,\"fst\":1,\"lst\":1},"
		  "{\"nam\":\"y\"}],\"g\":[{\"nam\":\"z\",\"sum\":1,\"cnt\":1,\"min\":1,\"max\":1,\"fst\":1,\"lst\":1}]}}",
		  0, "prt.c[1].cnt: required", 2, 1 },
		{ "{\"nam\":\"p\",\"prt\":{\"c\":[{\"nam\":\"x\",\"sum\":1,\"cnt\":1e300,\"min\":1,\"max\":1,\"fst\":1,"
		  "\"lst\":1}]}}",
		  0, "prt.c[0].cnt:", 0, 1 },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dts_put_agg_body b;
		char *copy = malloc(strlen(cases[i].body) + 1); /* exact size: ASan sees an over-read */
		int rc;

		memcpy(copy, cases[i].body, strlen(cases[i].body));
		err[0] = '\0';
		rc = dts_put_agg_parse(copy, strlen(cases[i].body), &b, err, sizeof(err));
		cr_expect_eq(rc, cases[i].rc, "%s: rc %d, want %d (%s)", cases[i].body, rc, cases[i].rc, err);
		if (rc < 0 && cases[i].error)
			cr_expect(strncmp(err, cases[i].error, strlen(cases[i].error)) == 0, "%s: \"%s\", want \"%s...\"",
				  cases[i].body, err, cases[i].error);
		if (rc == 0) {
			cr_expect_eq(b.n, cases[i].n, "%s: %zu partials, want %zu", cases[i].body, b.n, cases[i].n);
			cr_expect_eq(b.refused, cases[i].refused, "%s: %zu refused", cases[i].body, b.refused);
			if (cases[i].error)
				cr_expect(strncmp(b.first_error, cases[i].error, strlen(cases[i].error)) == 0,
					  "%s: \"%s\", want \"%s...\"", cases[i].body, b.first_error, cases[i].error);
		}
		dts_put_agg_free(&b);
		free(copy);
	}
}

Test(put_agg, min_and_max_cover_every_value_named)
{
	/* the original driver loses a 0: values 0, 5 -> min 5 ("p.min || v" treats 0 as unset) but fst 0 */
	const char *body = "{\"nam\":\"p\",\"prt\":{\"ms\":[{\"nam\":\"x\",\"sum\":5,\"cnt\":2,\"min\":5,\"max\":5,"
			   "\"fst\":0,\"lst\":5,\"bot\":5,\"top\":5}]}}";
	struct dts_put_agg_body b;
	char err[256];

	cr_assert_eq(dts_put_agg_parse(body, strlen(body), &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(b.n, 1);
	cr_expect_eq(b.parts[0].agg.min, 0);
	cr_expect_eq(b.parts[0].agg.max, 5);
	cr_expect_eq(b.parts[0].sketch.count, 2);
	dts_put_agg_free(&b);
}
