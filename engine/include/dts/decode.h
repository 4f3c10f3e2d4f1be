/*
 * decode.h - line decoders: statsd/DogStatsD and the original DaTtSs UDP line.
 *
 * Both decoders are pure functions of (config, line, scratch): no I/O, no allocation, no global state, bounded work
 * (O(line length + tags * log tags)). They are called from RX cores on the hot path and from the fuzz targets.
 *
 * A datagram is split into lines by the caller (dts_ingest in core.h); a line never contains '\n'. A line that contains
 * a '|' is statsd; a line without one is a DaTtSs line (dts_line_is_dattss).
 *
 * Series identity (docs/protocols.md): for statsd lines the user is the listener's (sample.user_len == 0), the process
 * is the first cfg->process_sep-separated segment of the normalised name and the counter the rest; a name without the
 * separator (or any name when cfg->split_process is false) goes to cfg->default_process with the whole name as counter.
 */
#ifndef DTS_DECODE_H
#define DTS_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dts/tunables.h"
#include "dts/types.h"

/* Read-only after setup; shared by all cores. */
struct dts_decode_cfg {
	char process_sep; /* '.' by default */
	bool split_process; /* true: process = first segment; false: everything goes to default_process */
	const char *default_process; /* "default" */
	uint16_t default_process_len;
	int64_t max_past_skew_s; /* |T accepted down to now - max_past_skew_s */
	int64_t max_future_skew_s; /* |T accepted up to now + max_future_skew_s */
	const uint8_t *secret; /* HMAC-SHA1 key for DaTtSs AUTH; NULL = DaTtSs lines rejected (no_secret) */
	size_t secret_len;
};

/* Fill cfg with the documented defaults ('.', split, "default", 600 s past, 60 s future, no secret). */
void dts_decode_cfg_defaults(struct dts_decode_cfg *cfg);

/* Per-call scratch for normalised names and canonical tags. Owned by the caller (one per core); reused per line. */
struct dts_scratch {
	char buf[DTS_SCRATCH_SIZE];
};

/*
 * Decode one statsd/DogStatsD line (without '\n'; a trailing '\r' is tolerated).
 * Samples without tags have tags pointing at "" (never NULL) and tags_len 0; user is NULL with user_len 0.
 * The process may also point at cfg->default_process. docs/protocols.md lists the order of the checks and the
 * reject reason of every malformed case.
 *   line:name[:value...]|type[|@rate][|#tags][|T<ts>][|c:container]
 * now is the receive time in unix seconds (for |T skew checks).
 * Returns the number of samples written to out (1..max_out, one per value), 0 for an empty or all-blank line (not an
 * error), or -(enum dts_reject) when the line is rejected; on rejection nothing in out is meaningful. A line with more
 * values than max_out is rejected with DTS_REJ_TOO_MANY_VALUES. The samples' spans point into line or scratch.
 * Any thread; the caller owns scratch.
 */
int dts_statsd_decode(const struct dts_decode_cfg *cfg, const char *line, size_t len, int64_t now,
		      struct dts_sample *out, unsigned max_out, struct dts_scratch *scratch);

/* True when the line has no '|' and so must be a DaTtSs line. */
bool dts_line_is_dattss(const char *line, size_t len);

/*
 * Per-core cache of verified AUTH tokens (direct-mapped, DTS_AUTH_CACHE_SIZE entries). Zero-initialise it
 * (dts_auth_cache_init). Single writer: the core that owns it.
 */
struct dts_auth_cache {
	uint64_t tag[DTS_AUTH_CACHE_SIZE]; /* dts_hash64 of the whole AUTH token, 0 = empty */
};
/*
 * Tag of a verified token (dattss_line.c): dts_hash64(token, len, dts_hash64(secret, secret_len, DTS_HASH_SEED)),
 * 0 mapped to 1, slot = tag % DTS_AUTH_CACHE_SIZE. Seeding with the secret makes tags unpredictable without it and
 * invalidates the whole cache when the secret changes. Only tokens whose MAC verified are stored; a hit skips the HMAC.
 */
void dts_auth_cache_init(struct dts_auth_cache *c);

/*
 * Decode one DaTtSs line "AUTH:PROCESS:STAT:VALUE" where VALUE is a number followed by its type (ms, c or g) and an
 * optional '!' (emphasis). AUTH is "<uid>_<40 hex HMAC-SHA1(secret, uid)>"; the sample's user is uid.
 * uid is [A-Za-z0-9@._+-]{1,DTS_MAX_USER}; the hex may be upper or lower case. The sample's user points into line,
 * its tags at "" (tags_len 0); weight is 1, ts 0. Malformed lines are rejected before any HMAC is computed.
 * Returns 1 with *out filled, 0 for a blank line, or -(enum dts_reject). cache may be NULL (every line verified).
 * Any thread; the caller owns cache and scratch.
 */
int dts_dattss_decode(const struct dts_decode_cfg *cfg, struct dts_auth_cache *cache, const char *line, size_t len,
		      struct dts_sample *out, struct dts_scratch *scratch);

/*
 * Compute the AUTH token for uid under secret into out (NUL-terminated). Returns its length, or -ENOSPC when out_size
 * is too small (uid_len + 42 bytes are needed). For tools and tests; not on the hot path.
 * The hex digits are lower case. uid is not checked against the uid charset (the decoder checks it). Also returns
 * -EINVAL when uid_len or secret_len exceed INT_MAX (OpenSSL's limits), -EIO if OpenSSL fails (out of memory).
 */
int dts_dattss_auth(const uint8_t *secret, size_t secret_len, const char *uid, size_t uid_len, char *out,
		    size_t out_size);

/*
 * Parse a decimal number (optional sign, digits, optional fraction, optional exponent) occupying exactly [p, p+len).
 * Returns 0 and sets *out, or -EINVAL (empty, junk, or not finite). Exact for up to 15 significant digits and
 * |exponent| <= 22, strtod-equivalent otherwise. Locale-independent.
 * No leading or trailing space, no hex, inf or nan; ".5" and "5." are accepted (as by strtod). Every result is
 * correctly rounded; overflow is -EINVAL, underflow gives a subnormal or signed zero (accepted). Never reads outside
 * [p, p+len). Any thread.
 */
int dts_parse_double(const char *p, size_t len, double *out);

#endif /* DTS_DECODE_H */
