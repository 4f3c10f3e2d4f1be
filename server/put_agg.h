/*
 * put_agg.h - the original DaTtSs HTTP protocol (PUT /agg?auth=AUTH, DESIGN §3.2): checking AUTH and decoding the
 * JSON body into partial aggregates the engine takes (dts_core_ingest_partial). docs/protocols.md §5 says what is
 * accepted and how a timer partial, which carries only bot/top/min/max/sum/cnt, becomes a sketch.
 *
 *   body  {"nam": process, "upt": uptime_s, "prt": {"c": [P...], "ms": [P...], "g": [P...]}}
 *   P     {"typ","nam","pct","sum","cnt","max","min","fst","lst","bot","top","emp"}
 *
 * Pure functions of their input (no I/O, no global state): http_api.c calls them on a request thread, the unit tests
 * and the fuzz target (tests/fuzz/fuzz_put_agg.c) directly. Prefix dts_put_agg_.
 */
#ifndef DTS_PUT_AGG_H
#define DTS_PUT_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dts/native.h"
#include "dts/sketch.h"
#include "dts/tunables.h"

/* Percentile of the original drivers when a partial has no "pct" (their DATTSS_PERCENTILE default). */
#define DTS_PUT_AGG_PCT 0.1
/* Most points added to a rebuilt timer sketch per segment between two known order statistics. */
#define DTS_PUT_AGG_SKETCH_POINTS 128

/*
 * Check AUTH = <user>_<40 hex digits of HMAC-SHA1(secret, user)> (the user may itself contain '_': the MAC is what
 * follows the last one; hex in either case). Returns NULL and copies the user into user, or a message saying what is
 * wrong (static text). Constant-time comparison of the MAC.
 */
const char *dts_put_agg_auth(const uint8_t *secret, size_t secret_len, const char *auth, char user[DTS_MAX_USER + 1]);

/*
 * A process or stat name as the engine takes it ([A-Za-z0-9_.-]) by the statsd normalisation (docs/protocols.md
 * §2.2): runs of whitespace become '_', '/' becomes '-', any other character is dropped (the original drivers allowed
 * '!' and ':' in stat names). Writes at most max bytes and a NUL into out (max + 1 bytes). Returns the length: 0 when
 * nothing is left, max + 1 when the name is longer than max (out then holds its first max bytes).
 */
size_t dts_put_agg_name(const char *in, char *out, size_t max);

/*
 * Add to s (initialised, normally empty) the distribution that a timer partial of n values describes: their sum, min
 * and max, and bot and top, the order statistics the driver took for percentile pct (0 < pct <= 0.5) at ranks
 * clamp(ceil(pct n)) and clamp(round((1 - pct) n)) (clamped to 0..n-1). One value per rank:
 *   - the known ranks get their known values (n <= 3 is reproduced exactly);
 *   - the ranks from where dts_sketch_quantile reads q = pct (q = 1 - pct), one or two below the driver's, up to the
 *     driver's get bot (top): read back alone, the partial gives its own bot and top, not a blend with min;
 *   - the other ranks get values between their two nearest known ranks on a power curve v_a + (v_b - v_a) f^e
 *     (f the rank's fraction of the way): e = 1/2 below bot and 2 above top (values crowd towards the 10th and 90th
 *     percentiles, as in any distribution whose density falls off in its tails), and between bot and top one
 *     exponent in [1/16, 16] chosen so that all values add up to sum (the sum says where the middle values crowd).
 * Segments of more than DTS_PUT_AGG_SKETCH_POINTS unknown ranks are represented by that many points of equal weight.
 * The four values are paired with the four ranks in sorted order (an inconsistent partial still gives a valid
 * distribution). Total weight added: n. Returns 0, -EINVAL (n < 1 or not finite, pct outside (0, 0.5], a value not
 * finite) or -ENOMEM.
 */
int dts_put_agg_sketch(struct dts_sketch *s, double n, double sum, double min, double bot, double top, double max,
		       double pct);

/* One partial aggregate taken from the body. */
struct dts_put_agg_part {
	char counter[DTS_MAX_NAME + 1]; /* normalised "nam" */
	uint8_t type; /* enum dts_type: c, ms or g */
	struct dts_agg agg; /* count = cnt; min/max widened to cover fst, lst, bot and top */
	struct dts_sketch sketch; /* timers: dts_put_agg_sketch; empty otherwise (owned) */
};

/* A decoded body. Owns parts (dts_put_agg_free). */
struct dts_put_agg_body {
	bool empty; /* the body was empty or blank: a heartbeat naming no process; nothing else is set */
	char process[DTS_NATIVE_MAX_PROCESS + 1]; /* normalised "nam" */
	double upt; /* "upt" in seconds, -1 when absent */
	struct dts_put_agg_part *parts;
	size_t n;
	size_t refused; /* partials left out because one of their fields was wrong */
	char first_error[256]; /* "prt.ms[2].cnt: must be a positive integer" for the first of them, "" when none */
};

/*
 * Decode body (len bytes, need not be NUL-terminated). Returns 0 with *out filled - possibly with refused partials,
 * each one a field error, which leave the others usable; or -EINVAL when the body as a whole is unusable (not JSON,
 * not an object, "nam" missing or bad, "upt" or "prt" of the wrong kind) with err saying which field and why; or
 * -ENOMEM. *out must be freed with dts_put_agg_free in every case. Any thread.
 */
int dts_put_agg_parse(const char *body, size_t len, struct dts_put_agg_body *out, char *err, size_t errlen);

void dts_put_agg_free(struct dts_put_agg_body *b);

#endif /* DTS_PUT_AGG_H */
