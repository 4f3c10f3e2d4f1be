/*
 * native.h - the native binary protocol of libdattss: authenticated datagrams of 5-second partial aggregates.
 *
 * One codec shared by the client library (encoder) and the server (decoder): client/ compiles engine/src/native.c,
 * the server links it through dts_engine. docs/protocol.md is the prose version of the byte tables below.
 *
 *   client, every 5 s   dts_native_enc_begin / _event / _partial / _end  -> datagrams of <= 1400 bytes, each MACed
 *   server RX core      dts_native_is(buf)   -> dts_native_open(...)     -> verified view of one datagram
 *                       dts_native_next_partial / dts_native_next_event  -> its contents, no allocation
 *
 * Datagram (version 1). All integers little-endian; "varint" is unsigned LEB128 in its shortest form.
 *
 *   offset      size  field
 *   0           1     magic 0xF7 (DTS_NATIVE_MAGIC): never the first byte of valid UTF-8 text, so never of a statsd
 *                     or DaTtSs line sent by a sane client; the server routes each datagram on this byte alone
 *   1           1     version = 1
 *   2           1     flags: bit 0 LAST (the last datagram of this slot's batch); bits 1-7 zero
 *   3           1     reserved, zero
 *   4           4     key id, u32: which of the user's keys made the MAC (the server looks up user + secret)
 *   8           8     instance, u64: random, chosen by the client at start; replay windows are per (key, instance)
 *   16          8     sequence, u64: per instance, +1 for every datagram sent (1, 2, ...)
 *   24          8     slot, i64: unix seconds of the start of the 5-second slot the data belongs to (multiple of 5)
 *   32          2     part, u16: index of this datagram within the slot's batch (0, 1, ...)
 *   34          2     npartials, u16
 *   36          1     nevents, u8
 *   37          1     user length U, 1 .. 64
 *   38          U     user id: [A-Za-z0-9@._+-]; must be the owner of the key
 *   38+U        1     process length P, 1 .. 198
 *   39+U        P     process name: [A-Za-z0-9_.-]
 *   39+U+P      36    process statistics (fixed, below)
 *   75+U+P      ...   nevents events, then npartials partials (below)
 *   len-16      16    MAC: the first 16 bytes of HMAC-SHA256(key secret, bytes [0, len - 16))
 *
 * Process statistics (36 bytes; cumulative values, so repeating them in every datagram of a batch is harmless):
 *
 *   0   4   uptime_s, u32: seconds since the client library was opened (a decrease means a restart)
 *   4   8   rss_bytes, u64: resident memory (/proc/self/statm)
 *   12  8   cpu_us, u64: user + system CPU time since process start, microseconds
 *   20  4   cpu_pct, f32: CPU usage over the last period, percent of one core (finite, >= 0)
 *   24  4   errors, u32: dts_error calls since open
 *   28  4   warnings, u32: dts_warning calls since open
 *   32  4   dropped, u32: values and events the client dropped since open (table full, bad name, send failure)
 *
 * Event (an error or a warning reported with its text):
 *
 *   0   1   kind: 0 error, 1 warning
 *   1   8   ts_ms, i64: unix milliseconds when it was reported
 *   9   2   text length T, u16, 0 .. DTS_NATIVE_MAX_TEXT
 *   11  T   text: valid UTF-8 without NUL
 *
 * Partial (one partial aggregate of one series over the slot):
 *
 *   0   1   pflags: bits 0-1 type (enum dts_type), bit 2 TAGS, bit 3 EMPHASIS, bit 4 PIECE; bits 5-7 zero
 *   1   1   name length N, 1 .. 199, and P + 1 + N <= DTS_MAX_NAME (as a DaTtSs line's PROCESS.STAT)
 *   2   N   counter name: [A-Za-z0-9_.-]
 *   ..  v+T if TAGS: varint T (1 .. 256), then canonical tags (sorted, distinct, ','-joined, each [A-Za-z0-9_.:-]+,
 *           at most 16): the form the statsd decoder produces
 *   ..  ..  aggregate (below)
 *   ..  v+S timers and sets only: varint S, then S bytes: dts_sketch_encode (timers) or dts_set_encode (sets), as
 *           specified in docs/sketch.md
 *
 * Aggregate (struct dts_agg; fields in the order sum, count, min, max, fst, lst):
 *
 *   0   1   form: bit 7 EMPTY (count 0; nothing follows; PIECE partials only and always)
 *                 bit 6 SINGLE (count 1 and min = max = fst = lst = sum: only sum follows)
 *                 bit i (0..5): field i is written as f64 (8 bytes); clear: as a zigzag varint of an integer
 *   ..  ..  the fields: f64 when the value is not an integer of magnitude <= 2^53 (or is -0.0), varint otherwise
 *
 * The encoding is canonical: the decoder accepts only what the encoder writes (shortest varints, varint for every
 * integral value, SINGLE whenever it applies), all values finite, count > 0 and min <= max for a non-empty aggregate.
 *
 * PIECE partials. A timer sketch (up to 2,076 bytes) or a set (up to 4,099) can be larger than a datagram. The
 * encoder then cuts it into pieces that each fit: the first piece carries the aggregate and the sketch's zero and
 * count with a first range of bins; every further piece has the PIECE flag, an EMPTY aggregate, zero = count = 0 and
 * the next range of bins (sets: the next members of an exact set, the next non-zero registers of an HLL, as a sparse
 * HLL). Each piece is a valid sketch or set encoding at the original's level, and merging the pieces (in any order, in
 * one datagram or several) gives bin for bin the original, so the server merges them like any partial.
 *
 * Verification, in this order (dts_native_open); each failure is one distinct enum dts_native_reject:
 *   1. size (DTS_NATIVE_MIN_DATAGRAM .. DTS_NATIVE_MAX_DATAGRAM), magic, version;
 *   2. key lookup through the caller's callback (key id -> owner + MAC key): unknown_key;
 *   3. the header's strings and reserved bits (bad_header), the user against the key's owner (wrong_user);
 *   4. slot: a positive multiple of 5 (bad_slot) within [now - max_past_s, now + max_future_s] (stale, future);
 *   5. MAC, compared in constant time (CRYPTO_memcmp): bad_mac;
 *   6. replay window of (key id, instance): replayed, replay_too_old, replay_full (checked here, committed in 8);
 *   7. contents: statistics, events, partials (sketches and sets decoded into the caller's scratch), nothing left
 *      between the last partial and the MAC;
 *   8. commit the sequence number to the replay window and return the view.
 * So a datagram is either accepted whole or rejected whole: nothing of a rejected datagram is handed out. A datagram
 * without the key's secret costs at most one HMAC (it fails at step 5 and leaves no state behind).
 *
 * Replay window (struct dts_native_replay, one per RX core, single owner): for each (key id, instance) the highest
 * sequence number accepted and a 64-bit bitmap of which of the 64 numbers up to it were seen. A number above the
 * highest moves the window; one inside it is accepted once; one 64 or more below the highest is replay_too_old. An
 * entry whose last acceptance is older than max_past_s + max_future_s + 1 seconds may be reused: every datagram it
 * guarded is stale by then. When DTS_NATIVE_REPLAY_PROBE slots around a new pair's home are all live entries the
 * datagram is rejected (replay_full: fail closed, counted). Windows are per core: docs/protocol.md says what that
 * means when one client's datagrams reach several cores.
 *
 * Threading: every function here is pure or works on objects its caller owns; cfg and MAC keys are read-only and may
 * be shared by all cores. Nothing allocates except the *_create functions.
 */
#ifndef DTS_NATIVE_H
#define DTS_NATIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dts/set.h"
#include "dts/sketch.h"
#include "dts/tunables.h"
#include "dts/types.h"

#define DTS_NATIVE_MAGIC 0xF7
#define DTS_NATIVE_VERSION 1

/* Largest datagram: fits a 1500-byte Ethernet MTU with IPv6 (40) + UDP (8) headers and room for tunnels (VXLAN 50):
 * a datagram that fragments at the IP layer is lost whole when any fragment is. Both ends enforce it. */
#define DTS_NATIVE_MAX_DATAGRAM 1400

/* MAC bytes: HMAC-SHA256 truncated to 128 bits. An attacker gets no answer from the server, so a forgery is a blind
 * guess with probability 2^-128; truncation to 128 bits is what RFC 4868 / NIST SP 800-107 allow. Saves 16 bytes a
 * datagram. */
#define DTS_NATIVE_MAC_LEN 16

/* Fixed part of the header (up to the user's length byte included) and the smallest possible datagram. */
#define DTS_NATIVE_HEADER_FIXED 38
#define DTS_NATIVE_STATS_LEN 36
#define DTS_NATIVE_MIN_DATAGRAM (DTS_NATIVE_HEADER_FIXED + 1 + 1 + 1 + DTS_NATIVE_STATS_LEN + DTS_NATIVE_MAC_LEN)

/* Longest event text. Error messages longer than this are truncated by the client (at a UTF-8 boundary); 512 bytes
 * keeps two events in a datagram next to a full header. */
#define DTS_NATIVE_MAX_TEXT 512

/* Longest process name: process + '.' + counter is bounded by DTS_MAX_NAME, and a counter has at least one byte. */
#define DTS_NATIVE_MAX_PROCESS (DTS_MAX_NAME - 2)

/* Default accepted slot times: down to 300 s in the past (a slot is sent 5 s after it starts; the rest absorbs client
 * clocks running behind and a stalled sender), up to 60 s in the future (clocks running ahead). Replay entries live
 * max_past_s + max_future_s + 1 seconds, so these also bound how long a replay window must remember an instance. */
#define DTS_NATIVE_MAX_PAST_S 300
#define DTS_NATIVE_MAX_FUTURE_S 60

/* Replay window: slots per core (a power of two; 40 bytes each: 320 KiB per core for 8,192 clients heard within the
 * last 6 minutes on that core) and the probe length (bounds the work of one lookup). */
#define DTS_NATIVE_REPLAY_SLOTS 8192
#define DTS_NATIVE_REPLAY_PROBE 16

/* pflags bits. */
#define DTS_NATIVE_PF_TYPE 0x03
#define DTS_NATIVE_PF_TAGS 0x04
#define DTS_NATIVE_PF_EMPHASIS 0x08 /* the original protocol's trailing '!': kept, not aggregated */
#define DTS_NATIVE_PF_PIECE 0x10 /* a further piece of a split sketch or set; its aggregate is empty */

/* Header flags. */
#define DTS_NATIVE_F_LAST 0x01

enum dts_native_event_kind {
	DTS_NATIVE_ERROR = 0,
	DTS_NATIVE_WARNING = 1,
};

/*
 * Why a native datagram was rejected; one reason per datagram, in the order they are checked. Append-only: the
 * values index counter arrays. Names (dts_native_reject_name) appear in /metrics as reason="...".
 */
enum dts_native_reject {
	DTS_NREJ_NONE = 0,
	DTS_NREJ_TOO_SHORT, /* shorter than DTS_NATIVE_MIN_DATAGRAM */
	DTS_NREJ_TOO_LONG, /* longer than DTS_NATIVE_MAX_DATAGRAM */
	DTS_NREJ_BAD_MAGIC, /* first byte not DTS_NATIVE_MAGIC */
	DTS_NREJ_BAD_VERSION, /* version byte not DTS_NATIVE_VERSION */
	DTS_NREJ_UNKNOWN_KEY, /* the key lookup found no key with this id */
	DTS_NREJ_BAD_HEADER, /* reserved bits set, user or process length or characters invalid */
	DTS_NREJ_WRONG_USER, /* the user id is not the key's owner */
	DTS_NREJ_BAD_SLOT, /* slot not a positive multiple of DTS_SLOT_SECONDS */
	DTS_NREJ_STALE, /* slot older than now - max_past_s */
	DTS_NREJ_FUTURE, /* slot newer than now + max_future_s */
	DTS_NREJ_BAD_MAC, /* MAC does not verify under the key's secret */
	DTS_NREJ_REPLAYED, /* sequence number already accepted from this (key, instance) */
	DTS_NREJ_REPLAY_TOO_OLD, /* sequence number 64 or more below the highest accepted */
	DTS_NREJ_REPLAY_FULL, /* no replay window slot free for a new (key, instance) */
	DTS_NREJ_BAD_STATS, /* process statistics invalid (cpu_pct not finite and >= 0) */
	DTS_NREJ_BAD_EVENT, /* event kind unknown, text too long, not UTF-8 or with NUL */
	DTS_NREJ_BAD_PARTIAL, /* partial flags, name, tags or aggregate invalid or not canonical */
	DTS_NREJ_BAD_SKETCH, /* a timer's sketch missing or not a valid encoding */
	DTS_NREJ_BAD_SET, /* a set's encoding missing or invalid */
	DTS_NREJ_TRUNCATED, /* contents run into the MAC */
	DTS_NREJ_TRAILING, /* bytes left between the contents and the MAC */
};
#define DTS_NREJ_COUNT 22

/* Stable snake_case name of a reason ("bad_mac"); "unknown" for out-of-range values. Any thread. */
const char *dts_native_reject_name(enum dts_native_reject r);

/* True when the datagram is for the native decoder (first byte DTS_NATIVE_MAGIC). Pure; the server's router. */
static inline bool dts_native_is(const void *buf, size_t len)
{
	return len > 0 && *(const uint8_t *)buf == DTS_NATIVE_MAGIC;
}

/*
 * A key's MAC state: the HMAC-SHA256 inner and outer hash states after the padded key block, precomputed once so a
 * datagram costs two hash finalisations and no allocation. Opaque bytes, copyable, no pointers inside; read-only after
 * dts_native_mac_key_init, so one object may be used by every core at once.
 */
struct dts_native_mac_key {
	_Alignas(16) unsigned char priv[256];
};

/* Prepare key from the secret's bytes (any length; longer than 64 bytes is hashed first, as HMAC does). Returns 0 or
 * -EINVAL (secret NULL with a non-zero length). Any thread. */
int dts_native_mac_key_init(struct dts_native_mac_key *key, const void *secret, size_t secret_len);

/* Overwrite the key state with zeros (OPENSSL_cleanse). */
void dts_native_mac_key_wipe(struct dts_native_mac_key *key);

/* HMAC-SHA256(key, data) truncated to DTS_NATIVE_MAC_LEN bytes into out. Pure; any thread. */
void dts_native_mac(const struct dts_native_mac_key *key, const void *data, size_t len,
		    uint8_t out[DTS_NATIVE_MAC_LEN]);

/* Process statistics carried by every datagram (table above). */
struct dts_native_stats {
	uint32_t uptime_s;
	uint64_t rss_bytes;
	uint64_t cpu_us;
	float cpu_pct;
	uint32_t errors;
	uint32_t warnings;
	uint32_t dropped;
};

/*
 * One partial aggregate. Decoding fills it with spans into the datagram (name, tags, enc); encoding reads name, tags,
 * type, flags (EMPHASIS only), agg and the sketch (timers) or set (sets).
 */
struct dts_native_partial {
	const char *name; /* counter name, not NUL-terminated */
	const char *tags; /* canonical tags, "" when none */
	uint16_t name_len;
	uint16_t tags_len;
	uint8_t type; /* enum dts_type */
	uint8_t flags; /* DTS_NATIVE_PF_EMPHASIS, DTS_NATIVE_PF_PIECE */
	struct dts_agg agg; /* empty (count 0) for PIECE partials */
	const struct dts_sketch *sketch; /* encode: the timer's sketch (required for timers); decode: NULL */
	const struct dts_set *set; /* encode: the set (required for sets); decode: NULL */
	const uint8_t *enc; /* decode: the validated dts_sketch/dts_set encoding (timers, sets), else NULL */
	uint16_t enc_len;
};

/* One event. Decoding points text into the datagram; encoding reads it. */
struct dts_native_event {
	uint8_t kind; /* enum dts_native_event_kind */
	int64_t ts_ms;
	const char *text; /* UTF-8, not NUL-terminated */
	uint16_t len;
};

/* ---------------------------------------------------------------------------------------------------------------- */
/* Encoder (client side)                                                                                            */

/* What every datagram of a batch repeats. Strings are copied by dts_native_enc_begin. */
struct dts_native_hdr {
	uint32_t key_id;
	uint64_t instance;
	int64_t slot; /* multiple of DTS_SLOT_SECONDS */
	const char *user;
	size_t user_len;
	const char *process;
	size_t process_len;
	struct dts_native_stats stats;
};

/*
 * Called with each finished datagram (MACed). The bytes are valid only during the call: send or copy them. Return 0 to
 * go on or a negative errno to stop the batch (the encoder returns it).
 */
typedef int (*dts_native_emit_fn)(void *ctx, const uint8_t *dgram, size_t len);

/*
 * Streaming encoder of one slot's batch: begin, then events, then partials, then end. It fills a datagram, emits it
 * when the next item does not fit, and splits timers and sets that do not fit a datagram of their own into PIECE
 * partials. Sequence numbers are taken from *seq (incremented per datagram emitted). Private fields; one thread.
 * About 5.5 KiB: keep it in the sender's state, not necessarily on a small stack.
 */
struct dts_native_enc {
	const struct dts_native_mac_key *key;
	dts_native_emit_fn emit;
	void *ctx;
	uint64_t *seq;
	size_t head_len; /* bytes of header + stats, identical in every datagram */
	size_t len; /* bytes used in buf */
	uint16_t part; /* index of the datagram being filled */
	uint16_t npartials;
	uint8_t nevents;
	bool partials_started; /* events must come first */
	int err; /* first error: every later call returns it */
	unsigned emitted;
	uint8_t buf[DTS_NATIVE_MAX_DATAGRAM];
	uint8_t hll[1u << DTS_HLL_P]; /* registers of one HLL piece */
};

/*
 * Start a batch. hdr's strings must be valid (user [A-Za-z0-9@._+-]{1,64}, process [A-Za-z0-9_.-]{1,198}) and slot a
 * positive multiple of 5; key, seq and ctx must stay valid until dts_native_enc_end returns. Returns 0 or -EINVAL (the
 * encoder is then unusable: every later call returns -EINVAL).
 */
int dts_native_enc_begin(struct dts_native_enc *e, const struct dts_native_hdr *hdr,
			 const struct dts_native_mac_key *key, uint64_t *seq, dts_native_emit_fn emit, void *ctx);

/* Add one event (before any partial). Text longer than DTS_NATIVE_MAX_TEXT is -EMSGSIZE; not UTF-8 or with NUL,
 * or an unknown kind, -EINVAL (nothing added; the batch goes on). Returns 0, those, or the emit callback's error. */
int dts_native_enc_event(struct dts_native_enc *e, const struct dts_native_event *ev);

/*
 * Add one partial. The name must be [A-Za-z0-9_.-], 1 .. 199 bytes with process + 1 + name <= DTS_MAX_NAME; tags
 * empty or canonical; the aggregate finite with count > 0 and min <= max; a timer needs its sketch, a set its set.
 * Returns 0; -EINVAL for an invalid partial (nothing added; the batch goes on); or the emit callback's error (the batch
 * is then over). A partial's sketch and set are only read.
 */
int dts_native_enc_partial(struct dts_native_enc *e, const struct dts_native_partial *p);

/* Emit the last datagram (flag LAST). A batch always emits at least one datagram, so an empty batch is a heartbeat.
 * Returns the number of datagrams emitted by the batch, or the first error. */
int dts_native_enc_end(struct dts_native_enc *e);

/* ---------------------------------------------------------------------------------------------------------------- */
/* Decoder (server side)                                                                                            */

/* A key as the server knows it. user is the key's owner (not NUL-terminated). */
struct dts_native_key {
	const char *user;
	size_t user_len;
	const struct dts_native_mac_key *mac;
};

/*
 * Key lookup: the key with this id, or NULL when there is none. Called once per datagram from the RX core: it must not
 * block. The returned key (and what it points to) must stay valid until dts_native_open returns; nothing of it is kept.
 */
typedef const struct dts_native_key *(*dts_native_key_fn)(void *ctx, uint32_t key_id);

/* Read-only after setup; shared by all cores. */
struct dts_native_cfg {
	dts_native_key_fn key_lookup;
	void *key_ctx;
	int64_t max_past_s; /* slot accepted down to now - max_past_s (DTS_NATIVE_MAX_PAST_S) */
	int64_t max_future_s; /* slot accepted up to now + max_future_s (DTS_NATIVE_MAX_FUTURE_S) */
};

/* Fill the documented defaults (no key lookup: set it). */
void dts_native_cfg_defaults(struct dts_native_cfg *cfg);

/* Per-core replay window (layout in native.c). Single owner. */
struct dts_native_replay;

/* slots: a power of two >= DTS_NATIVE_REPLAY_PROBE (DTS_NATIVE_REPLAY_SLOTS by default). Returns NULL with errno
 * EINVAL or ENOMEM. Cold path. */
struct dts_native_replay *dts_native_replay_create(uint32_t slots);
void dts_native_replay_destroy(struct dts_native_replay *r);

/*
 * Per-core decode scratch: one sketch with both stores grown to DTS_SKETCH_MAX_BINS and two sets (one exact at
 * DTS_SET_EXACT_MAX, one HLL), so decoding any valid sketch or set into it never allocates. About 6.5 KiB of heap.
 * Single owner. Returns NULL with errno ENOMEM.
 */
struct dts_native_scratch;
struct dts_native_scratch *dts_native_scratch_create(void);
void dts_native_scratch_destroy(struct dts_native_scratch *s);

/* A verified datagram: header fields and spans into the datagram, which must outlive the view. */
struct dts_native_msg {
	uint32_t key_id;
	uint8_t flags; /* DTS_NATIVE_F_LAST */
	uint64_t instance;
	uint64_t seq;
	int64_t slot;
	uint16_t part;
	uint16_t npartials;
	uint8_t nevents;
	uint8_t user_len;
	uint8_t process_len;
	const char *user; /* equal to the key's owner */
	const char *process;
	struct dts_native_stats stats;
	/* private: where the events and the partials start, where the MAC starts */
	const uint8_t *buf;
	uint32_t events_off, partials_off, end_off;
};

/*
 * Verify and parse one datagram (the order of checks is at the top of this file). now_s: the receive time, unix
 * seconds. Returns 0 with *msg filled and the sequence number recorded in replay, or -(enum dts_native_reject) with
 * replay unchanged and *msg meaningless. Never reads outside [buf, buf + len), never allocates; work is O(len) plus
 * one key lookup and at most one HMAC. RX core only: replay and scratch belong to the calling core.
 */
int dts_native_open(const struct dts_native_cfg *cfg, struct dts_native_replay *replay,
		    struct dts_native_scratch *scratch, const uint8_t *buf, size_t len, int64_t now_s,
		    struct dts_native_msg *msg);

/* Iteration over a verified datagram's events or partials. Private fields. */
struct dts_native_iter {
	const uint8_t *buf;
	uint32_t pos;
	uint32_t left;
};

void dts_native_iter_events(const struct dts_native_msg *m, struct dts_native_iter *it);
void dts_native_iter_partials(const struct dts_native_msg *m, struct dts_native_iter *it);

/* Next event / partial of a verified datagram: true with *out filled (spans into the datagram), false at the end.
 * Cannot fail: dts_native_open validated everything. O(size of the item). */
bool dts_native_next_event(struct dts_native_iter *it, struct dts_native_event *out);
bool dts_native_next_partial(struct dts_native_iter *it, struct dts_native_partial *out);

/*
 * Decode a timer partial's sketch / a set partial's set into the scratch and return it, valid until the next call with
 * the same scratch; NULL when the partial has no such encoding. Never allocates (the scratch is pre-grown) and cannot
 * fail on a partial from dts_native_next_partial. The caller merges it (dts_sketch_merge / dts_set_merge) where it
 * keeps its aggregates, or copies p->enc and decodes later elsewhere.
 */
const struct dts_sketch *dts_native_partial_sketch(const struct dts_native_partial *p,
						   struct dts_native_scratch *scratch);
const struct dts_set *dts_native_partial_set(const struct dts_native_partial *p, struct dts_native_scratch *scratch);

/* Validation helpers, shared with the client: names [A-Za-z0-9_.-], users [A-Za-z0-9@._+-], canonical tags. */
bool dts_native_name_valid(const char *p, size_t n);
bool dts_native_user_valid(const char *p, size_t n);
bool dts_native_tags_valid(const char *p, size_t n);

#endif /* DTS_NATIVE_H */
