/*
 * put_agg.c - the original DaTtSs HTTP protocol: AUTH check and JSON body decoding (contract in put_agg.h, prose in
 * docs/protocols.md §5).
 *
 * The body is decoded with jansson (numbers as doubles: JSON_DECODE_INT_AS_REAL, so a large integer is a number, not
 * an error). Errors name the field by its JSON path ("prt.ms[2].cnt: must be a positive integer"). A partial with a
 * wrong field is left out and counted; the rest of the body is still used, since one bad stat must not cost a
 * process its other stats (the original drivers send every stat of a process in one body).
 */
#define _GNU_SOURCE
#include "put_agg.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dts/decode.h"
#include "dts/types.h"

const char *dts_put_agg_auth(const uint8_t *secret, size_t secret_len, const char *auth, char user[DTS_MAX_USER + 1])
{
	const char *us = strrchr(auth, '_');
	size_t ulen;
	char want[DTS_MAX_USER + 48], got[40];

	if (!us || us == auth || (size_t)(us - auth) > DTS_MAX_USER || strlen(us + 1) != 40)
		return "must be <user>_<40 hex digits>";
	ulen = (size_t)(us - auth);
	for (size_t i = 0; i < ulen; i++) {
		char c = auth[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("@._+-", c)))
			return "the user part must be 1..64 characters of [A-Za-z0-9@._+-]";
	}
	for (size_t i = 0; i < 40; i++) {
		char c = us[1 + i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return "must be <user>_<40 hex digits>";
		got[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
	}
	if (!secret || !secret_len)
		return "the server has no secret for AUTH tokens";
	if (dts_dattss_auth(secret, secret_len, auth, ulen, want, sizeof(want)) != (int)(ulen + 41) ||
	    CRYPTO_memcmp(want + ulen + 1, got, 40) != 0)
		return "wrong MAC (not a token of this server)";
	memcpy(user, auth, ulen);
	user[ulen] = '\0';
	return NULL;
}

size_t dts_put_agg_name(const char *in, char *out, size_t max)
{
	size_t n = 0;
	bool space = false;

	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		char c = (char)*p;

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
			if (!space && n == max) {
				out[max] = '\0';
				return max + 1; /* too long */
			}
			if (!space)
				out[n++] = '_';
			space = true;
			continue;
		}
		space = false;
		if (c == '/')
			c = '-';
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '.' || c == '-'))
			continue;
		if (n == max) {
			out[max] = '\0';
			return max + 1; /* too long */
		}
		out[n++] = c;
	}
	out[n] = '\0';
	return n;
}

/* A number member of a partial, required or optional (absent: *out unchanged). Returns NULL or what is wrong. */
static const char *member_num(json_t *p, const char *key, bool required, double *out)
{
	json_t *v = json_object_get(p, key);

	if (!v)
		return required ? "required" : NULL;
	if (!json_is_number(v) || !isfinite(json_number_value(v)))
		return "must be a finite number";
	*out = json_number_value(v);
	return NULL;
}

/* Shape exponents of the unknown ranks (docs/protocols.md §5.3): below bot values crowd towards bot, above top towards
 * top (the quantile function of any distribution whose density falls off in its tails is concave below its 10th
 * percentile and convex above its 90th); between bot and top the exponent follows from the sum, within these bounds. */
#define GAMMA_LOW 0.5
#define GAMMA_HIGH 2.0
#define GAMMA_MIN 0.0625
#define GAMMA_MAX 16.0

/* See put_agg.h; worked through in docs/protocols.md §5.3. */
int dts_put_agg_sketch(struct dts_sketch *s, double n, double sum, double min, double bot, double top, double max,
		       double pct)
{
	double v[4] = { min, bot, top, max };
	double bidx = fmin(fmax(ceil(pct * n), 0), n - 1), tidx = fmin(fmax(floor((1 - pct) * n + 0.5), 0), n - 1);
	double qb = floor(pct * (n - 1)), qt = floor((1 - pct) * (n - 1));
	double known = 0, spread = 0, half = 0, gamma = 1, e[6];
	struct {
		double r, v;
	} pt[6];
	int np = 0, rc = 0;

	if (!(n >= 1) || !isfinite(n) || !(pct > 0 && pct <= 0.5) || !isfinite(sum) || !isfinite(min) ||
	    !isfinite(bot) || !isfinite(top) || !isfinite(max))
		return -EINVAL;
	for (int i = 1; i < 4; i++) /* insertion sort of four values */
		for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
			double t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	/* the known ranks, strictly increasing; min and max win where a percentile falls on an end */
	pt[np].r = 0;
	pt[np++].v = v[0];
	if (bidx > 0 && bidx < n - 1) {
		if (qb > 0 && qb < bidx) {
			pt[np].r = qb;
			pt[np++].v = v[1];
		}
		pt[np].r = bidx;
		pt[np++].v = v[1];
	}
	if (tidx > fmax(bidx, 0) && tidx < n - 1) {
		if (qt > pt[np - 1].r && qt < tidx) {
			pt[np].r = qt;
			pt[np++].v = v[2];
		}
		pt[np].r = tidx;
		pt[np++].v = v[2];
	}
	if (n - 1 > 0) {
		pt[np].r = n - 1;
		pt[np++].v = v[3];
	}
	/*
	 * The unknown ranks of a segment (a, b) of g = r_b - r_a ranks get v_a + (v_b - v_a) f^e, f = (r - r_a) / g, with
	 * e = GAMMA_LOW below bot, GAMMA_HIGH above top, and between them one exponent gamma chosen so that all values
	 * add up to sum. With sum_{j=1}^{g-1} (j/g)^e ~ g / (e + 1) - 1/2 (Euler-Maclaurin), the total is
	 * known + spread / (gamma + 1) - half, where spread and half gather the middle segments; hence gamma below, and
	 * a sum outside what any exponent in [GAMMA_MIN, GAMMA_MAX] gives is clamped.
	 */
	for (int i = 0; i < np; i++) {
		known += pt[i].v;
		if (i + 1 < np) {
			double g = pt[i + 1].r - pt[i].r, d = pt[i + 1].v - pt[i].v;

			e[i] = pt[i + 1].r <= bidx ? GAMMA_LOW : pt[i].r >= tidx ? GAMMA_HIGH : 0; /* 0: middle */
			known += (g - 1) * pt[i].v;
			if (e[i] > 0) {
				known += d * (g / (e[i] + 1) - 0.5);
			} else {
				spread += d * g;
				half += d / 2;
			}
		}
	}
	if (spread > 0) {
		double room = sum - known + half;

		gamma = room > 0 ? spread / room - 1 : GAMMA_MAX;
		gamma = fmin(fmax(gamma, GAMMA_MIN), GAMMA_MAX);
	}
	for (int i = 0; i + 1 < np; i++)
		e[i] = e[i] > 0 ? e[i] : gamma;
	for (int i = 0; i < np && rc == 0; i++) {
		double k, parts;

		rc = dts_sketch_add(s, pt[i].v, 1);
		if (i + 1 == np)
			break;
		k = pt[i + 1].r - pt[i].r - 1; /* unknown ranks between this point and the next */
		parts = k > DTS_PUT_AGG_SKETCH_POINTS ? DTS_PUT_AGG_SKETCH_POINTS : k;
		for (double j = 0; j < parts && rc == 0; j++) {
			double r = k > DTS_PUT_AGG_SKETCH_POINTS ? pt[i].r + 0.5 + (j + 0.5) * k / parts : pt[i].r + 1 + j;
			double f = (r - pt[i].r) / (pt[i + 1].r - pt[i].r);

			rc = dts_sketch_add(s, pt[i].v + (pt[i + 1].v - pt[i].v) * pow(f, e[i]), k / parts);
		}
	}
	return rc;
}

/* Validate prt.<list>[i] into *out (which then owns a sketch). Returns true, or false with "prt.L[i].field: reason"
 * in err. */
static bool partial(json_t *p, const char *list, size_t i, uint8_t type, size_t process_len, struct dts_put_agg_part *out,
			char *err, size_t errlen)
{
	const char *why = NULL, *field = NULL;
	double sum = 0, cnt = 0, min = 0, max = 0, fst = 0, lst = 0, bot = NAN, top = NAN, pct = DTS_PUT_AGG_PCT;
	json_t *v;
	size_t n;

#define CHECK_NUM(key, req, dst)                               \
	do {                                                   \
		if (!why && (why = member_num(p, key, req, dst))) \
			field = key;                           \
	} while (0)

	if (!json_is_object(p)) {
		snprintf(err, errlen, "prt.%s[%zu]: must be an object", list, i);
		return false;
	}
	v = json_object_get(p, "typ");
	if (v && (!json_is_string(v) || strcmp(json_string_value(v), list) != 0)) {
		field = "typ";
		why = "must equal the list it is in";
	}
	v = json_object_get(p, "nam");
	if (!why && (!v || !json_is_string(v))) {
		field = "nam";
		why = v ? "must be a string" : "required";
	}
	if (!why) {
		n = dts_put_agg_name(json_string_value(v), out->counter, DTS_MAX_NAME);
		if (n == 0 || n + 1 + process_len > DTS_MAX_NAME) {
			field = "nam";
			why = n == 0 ? "no character of [A-Za-z0-9_.-] in it" : "too long (process + '.' + name > 200)";
		}
	}
	CHECK_NUM("cnt", true, &cnt);
	if (!why && (cnt < 1 || cnt > 9007199254740992.0 || cnt != floor(cnt))) {
		field = "cnt";
		why = "must be a positive integer";
	}
	CHECK_NUM("sum", true, &sum);
	CHECK_NUM("min", true, &min);
	CHECK_NUM("max", true, &max);
	CHECK_NUM("fst", true, &fst);
	CHECK_NUM("lst", true, &lst);
	CHECK_NUM("bot", type == DTS_TIMER, &bot);
	CHECK_NUM("top", type == DTS_TIMER, &top);
	CHECK_NUM("pct", false, &pct);
	if (!why && !(pct > 0 && pct <= 0.5)) {
		field = "pct";
		why = "must be in (0, 0.5]";
	}
	v = json_object_get(p, "emp");
	if (!why && v && !json_is_boolean(v)) {
		field = "emp";
		why = "must be true or false";
	}
#undef CHECK_NUM
	if (why) {
		snprintf(err, errlen, "prt.%s[%zu].%s: %s", list, i, field, why);
		return false;
	}
	/* min and max cover every value the partial names (see dts_put_agg_sketch on the original driver's min and max) */
	for (unsigned k = 0; k < 4; k++) {
		double x = k == 0 ? fst : k == 1 ? lst : k == 2 ? bot : top;

		if (isfinite(x)) {
			min = x < min ? x : min;
			max = x > max ? x : max;
		}
	}
	out->type = type;
	out->agg = (struct dts_agg){ .sum = sum, .count = cnt, .min = min, .max = max, .fst = fst, .lst = lst };
	dts_sketch_init(&out->sketch);
	if (type == DTS_TIMER && dts_put_agg_sketch(&out->sketch, cnt, sum, min, bot, top, max, pct) != 0) {
		dts_sketch_free(&out->sketch);
		snprintf(err, errlen, "prt.%s[%zu]: out of memory", list, i);
		return false;
	}
	return true;
}

int dts_put_agg_parse(const char *body, size_t len, struct dts_put_agg_body *out, char *err, size_t errlen)
{
	static const struct {
		const char *list;
		uint8_t type;
	} lists[] = { { "c", DTS_COUNTER }, { "ms", DTS_TIMER }, { "g", DTS_GAUGE } };
	json_t *root, *v, *prt;
	json_error_t jerr;
	size_t n, cap = 0;
	bool blank = true;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->upt = -1;
	for (size_t i = 0; i < len && blank; i++)
		blank = body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n';
	if (blank) {
		out->empty = true;
		return 0;
	}
	root = json_loadb(body, len, JSON_DECODE_INT_AS_REAL, &jerr);
	if (!root) {
		snprintf(err, errlen, "body: not JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "body: must be a JSON object {\"nam\",\"upt\",\"prt\"}");
		rc = -EINVAL;
		goto out;
	}
	v = json_object_get(root, "nam");
	if (!v || !json_is_string(v)) {
		snprintf(err, errlen, "nam: %s", v ? "must be a string (the process name)" : "required (the process name)");
		rc = -EINVAL;
		goto out;
	}
	n = dts_put_agg_name(json_string_value(v), out->process, DTS_NATIVE_MAX_PROCESS);
	if (n == 0 || n > DTS_NATIVE_MAX_PROCESS) {
		snprintf(err, errlen, "nam: must have 1..%d characters of [A-Za-z0-9_.-] (others are dropped)",
			 DTS_NATIVE_MAX_PROCESS);
		rc = -EINVAL;
		goto out;
	}
	v = json_object_get(root, "upt");
	if (v && !json_is_null(v)) {
		if (!json_is_number(v) || !(json_number_value(v) >= 0) || !isfinite(json_number_value(v))) {
			snprintf(err, errlen, "upt: must be a number of seconds >= 0");
			rc = -EINVAL;
			goto out;
		}
		out->upt = json_number_value(v);
	}
	prt = json_object_get(root, "prt");
	if (prt && !json_is_object(prt) && !json_is_null(prt)) {
		snprintf(err, errlen, "prt: must be an object {\"c\":[..],\"ms\":[..],\"g\":[..]}");
		rc = -EINVAL;
		goto out;
	}
	for (size_t l = 0; l < 3 && json_is_object(prt); l++) {
		json_t *arr = json_object_get(prt, lists[l].list), *p;
		size_t i;

		if (!arr || json_is_null(arr))
			continue;
		if (!json_is_array(arr)) {
			if (!out->refused++)
				snprintf(out->first_error, sizeof(out->first_error), "prt.%s: must be an array",
					 lists[l].list);
			continue;
		}
		json_array_foreach(arr, i, p) {
			char why[256];

			if (out->n == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct dts_put_agg_part *np = realloc(out->parts, nc * sizeof(*np));

				if (!np) {
					snprintf(err, errlen, "out of memory");
					rc = -ENOMEM;
					goto out;
				}
				out->parts = np;
				cap = nc;
			}
			if (partial(p, lists[l].list, i, lists[l].type, strlen(out->process), &out->parts[out->n], why,
				    sizeof(why)))
				out->n++;
			else if (!out->refused++)
				snprintf(out->first_error, sizeof(out->first_error), "%s", why);
		}
	}
out:
	json_decref(root);
	return rc;
}

void dts_put_agg_free(struct dts_put_agg_body *b)
{
	for (size_t i = 0; i < b->n; i++)
		dts_sketch_free(&b->parts[i].sketch);
	free(b->parts);
	b->parts = NULL;
	b->n = 0;
}
