/*
 * types.h - the vocabulary shared by the decoders, the per-core tables and the merger.
 *
 * A decoder turns one line of text into one or more struct dts_sample (one per value: statsd v1.1 lines carry
 * several). A sample's name spans point either into the caller's line buffer or into the decoder's scratch buffer;
 * they are valid until the next call that reuses that scratch or until the caller's buffer changes.
 */
#ifndef DTS_TYPES_H
#define DTS_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Series types. statsd's h (histogram) and d (distribution) are timers; the wire letter is not kept. */
enum dts_type {
	DTS_COUNTER = 0,
	DTS_TIMER = 1,
	DTS_GAUGE = 2,
	DTS_SET = 3,
};
#define DTS_NTYPES 4

/* Short name of a type as used in keys, JSON and docs: "c", "ms", "g", "s". */
const char *dts_type_name(enum dts_type t);

/* Sample flags. */
#define DTS_SAMPLE_GAUGE_DELTA 0x01 /* gauge value is a +N/-N delta, not an absolute value */
#define DTS_SAMPLE_EMPHASIS 0x02 /* DaTtSs line ended in '!' (kept for the original protocol; not aggregated) */

struct dts_sample {
	const char *user; /* NULL/0: the listener's configured user */
	const char *process;
	const char *counter;
	const char *tags; /* canonical tags: sorted, deduplicated, ','-joined; len 0 when none */
	uint16_t user_len;
	uint16_t process_len;
	uint16_t counter_len;
	uint16_t tags_len;
	uint8_t type; /* enum dts_type */
	uint8_t flags; /* DTS_SAMPLE_* */
	double value; /* the value (counters: before sample-rate scaling); unused for sets */
	double weight; /* 1 / sample rate; 1.0 without '@' */
	uint64_t set_member; /* dts_hash64 of the set member's text, DTS_SET only */
	int64_t ts; /* unix seconds from DogStatsD |T; 0 means "use the receive time" */
};

/*
 * Why a line was rejected. Every rejected line is counted under exactly one reason; the names (dts_reject_name)
 * appear in /metrics as reason="...". Keep the list append-only: the values are indices of counter arrays.
 */
enum dts_reject {
	DTS_REJ_NONE = 0,
	DTS_REJ_LINE_TOO_LONG, /* longer than DTS_MAX_LINE */
	DTS_REJ_NO_VALUE, /* no ':' after the name */
	DTS_REJ_EMPTY_NAME, /* name empty after normalisation */
	DTS_REJ_NAME_TOO_LONG, /* normalised name longer than DTS_MAX_NAME */
	DTS_REJ_BAD_VALUE, /* value is not a finite number (or empty) */
	DTS_REJ_TOO_MANY_VALUES, /* more than DTS_MAX_VALUES_PER_LINE values (or than max_out; a set takes one) */
	DTS_REJ_NO_TYPE, /* no '|type' section (DaTtSs: a number without its ms/c/g suffix) */
	DTS_REJ_BAD_TYPE, /* type not one of c g ms h s d (DaTtSs: suffix not one of ms c g) */
	DTS_REJ_BAD_RATE, /* '@rate' not a number in (0, 1] */
	DTS_REJ_BAD_TAGS, /* '#tags' empty, too many or too long */
	DTS_REJ_BAD_TIMESTAMP, /* '|T' not a positive integer */
	DTS_REJ_TIMESTAMP_SKEW, /* '|T' outside the accepted window around the receive time */
	DTS_REJ_BAD_SECTION, /* an unknown '|x' section */
	DTS_REJ_UNSUPPORTED, /* DogStatsD events (_e) and service checks (_sc) */
	DTS_REJ_DATTSS_FORMAT, /* DaTtSs line without exactly four ':'-separated fields */
	DTS_REJ_AUTH_FORMAT, /* AUTH not "<uid>_<40 hex digits>" */
	DTS_REJ_AUTH_MAC, /* AUTH's HMAC does not match the server secret */
	DTS_REJ_NO_SECRET, /* DaTtSs line received but the server has no secret configured */
	DTS_REJ_UNKNOWN_USER, /* DaTtSs line whose AUTH verifies but whose user does not exist (removed) */
};
#define DTS_REJ_COUNT 20

/* Stable snake_case name of a reason ("bad_value"); "unknown" for out-of-range values. */
const char *dts_reject_name(enum dts_reject r);

#endif /* DTS_TYPES_H */
