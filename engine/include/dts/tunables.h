/*
 * tunables.h - every compile-time limit of the engine, each with the reason for its value.
 *
 * Runtime settings (ports, workers, tick, grace) live in the daemon's config; these are the sizes that shape memory
 * layout and bound the work of one call. Changing one changes memory per series or per core, so docs/architecture.md
 * and docs/performance.md quote them.
 */
#ifndef DTS_TUNABLES_H
#define DTS_TUNABLES_H

/* Longest statsd line accepted. DogStatsD clients cap datagrams at 8 KiB by default; a single line longer than that
 * is almost certainly garbage, and bounding it bounds the decoder's work per line. */
#define DTS_MAX_LINE 8192

/* Longest normalised metric name (process + separator + counter). statsd servers commonly cap at 255; keys in
 * RocksDB embed the name, so a short bound keeps keys printable on one terminal line. */
#define DTS_MAX_NAME 200

/* DogStatsD tags: at most this many per line and this many bytes once canonicalised. Tags are part of a series'
 * identity, so unbounded tags would be unbounded cardinality in one line. */
#define DTS_MAX_TAGS 16
#define DTS_MAX_TAGS_LEN 256

/* Values per line (statsd v1.1 "a:1:2:3|ms"). Bounds the samples one line can emit into a caller's array. */
#define DTS_MAX_VALUES_PER_LINE 64

/* Longest user id (the DaTtSs uid, or a listener's configured user name). */
#define DTS_MAX_USER 64

/* Scratch bytes a decoder may use for one line's normalised name and sorted tags. */
#define DTS_SCRATCH_SIZE (DTS_MAX_NAME + DTS_MAX_TAGS_LEN + 64)

/* Quantile sketch relative accuracy at collapse level 0. 1% is the DDSketch default: about 116 bins per decade. */
#define DTS_SKETCH_ALPHA 0.01

/* Bins a sketch may hold before it collapses uniformly (gamma -> gamma^2). 256 float bins = 1 KiB, the memory budget
 * of one timer series; at 1% they span values over a ratio of about 150 (2.2 decades), at 2% 4.4 decades, at 4%
 * 8.8 decades. Real timer distributions rarely span more than 3 decades within a minute. */
#define DTS_SKETCH_MAX_BINS 256

/* Non-empty bins a sketch's store keeps as sorted key/weight entries (6 bytes each) before it turns dense (4 bytes per
 * key of its span, empty ones included); it turns dense earlier once that is no larger. A timer of a few dozen values
 * a minute stays sparse. At most 255 (uint8 count); inserting an entry moves up to this many. */
#define DTS_SKETCH_SPARSE_MAX 64

/* Values at or below this go to the sketch's zero bin (statsd timers of 0 ms are common). */
#define DTS_SKETCH_MIN_VALUE 1e-9

/* Exact distinct counting for sets up to this many members, HyperLogLog beyond. */
#define DTS_SET_EXACT_MAX 64

/* HyperLogLog precision: 2^12 registers of one byte, standard error 1.04/sqrt(4096) = 1.6%. */
#define DTS_HLL_P 12

/* DaTtSs AUTH tokens verified per core are cached (direct-mapped) so a steady client costs one hash, not an HMAC,
 * per line. 256 entries cover far more distinct clients than one core sees per second. */
#define DTS_AUTH_CACHE_SIZE 256

/* Length of one current-state slot (clients pre-aggregate 5-second partials; the original protocol's period). */
#define DTS_SLOT_SECONDS 5
#define DTS_SLOTS_PER_MINUTE (60 / DTS_SLOT_SECONDS)

/* Samples decoded before their table buckets are prefetched and applied: enough to hide DRAM latency (~100 ns)
 * behind the decode of the following lines, small enough to stay in L1. */
#define DTS_INGEST_BATCH 16

#endif /* DTS_TUNABLES_H */
