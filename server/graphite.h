/*
 * graphite.h - export of closed minutes to Graphite (carbon) in its plaintext protocol, for existing dashboards.
 *
 *   merger thread     dts_graphite_minute(cm)  copies what it needs of a closed minute into a batch (identity strings,
 *                                              the aggregate, timer quantiles) and queues it; never blocks, never
 *                                              does I/O; a full queue drops the minute (counted)
 *   graphite thread   formats the batch as lines "PATH VALUE TIMESTAMP\n" and writes them over one TCP connection,
 *                     reconnecting with exponential backoff; a batch that failed half-way is sent again whole
 *                     (carbon keeps the last value of a path and timestamp, so a repeat changes nothing)
 *
 * PATH = PREFIX '.' USER '.' PROCESS '.' COUNTER '.' STAT [ ';' TAG=VALUE ... ]   (docs/configuration.md, "Graphite")
 *   USER: '.' and '@' and anything outside [A-Za-z0-9_-] become '_' (an email stays one path node);
 *   PROCESS, COUNTER: as stored ([A-Za-z0-9_.-]; a '.' makes a deeper node, as statsd names do in Graphite);
 *   STAT per type: c count sum rate | ms count sum avg min max bot10 top10 p50 p99 | g value count avg min max |
 *   s count distinct;  TAG=VALUE: the series' DogStatsD tags k:v as Graphite 1.1 tags k=v (a bare tag k is k=true).
 * TIMESTAMP is the start of the minute (unix seconds). Late parts of a closed minute are not sent (carbon would
 * replace the minute's value with the late part alone); they are counted.
 */
#ifndef DTS_GRAPHITE_H
#define DTS_GRAPHITE_H

#include <stddef.h>
#include <stdint.h>

#include "dts/engine.h"

struct dts_graphite_cfg {
	const char *host; /* carbon host name or address */
	uint16_t port; /* plaintext port [2003] */
	const char *prefix; /* first path node(s), "" for none ["dattss"] */
	unsigned queue_minutes; /* closed minutes waiting at most [10] */
	size_t queue_records; /* series-minutes waiting at most [1M: ~150 MB of copies at worst] */
	unsigned retry_min_ms, retry_max_ms; /* reconnect backoff [1000, 30000] */
	unsigned io_timeout_ms; /* connect and send timeout [5000] */
	unsigned stop_timeout_ms; /* dts_graphite_stop keeps trying to send what is queued this long [5000] */
};

/* The defaults in brackets (host NULL, port 2003). */
void dts_graphite_cfg_defaults(struct dts_graphite_cfg *cfg);

struct dts_graphite;

/* Start the export thread (strings are copied). Returns NULL with errno and a message in err. Main thread. */
struct dts_graphite *dts_graphite_start(const struct dts_graphite_cfg *cfg, char *err, size_t errlen);

/*
 * Queue closed minute cm (cm stays the caller's; only read during the call). Checkpoints (cm->open) are ignored,
 * late parts (cm->late) counted and skipped. Merger thread (the only producer); never blocks on I/O; O(cm->n) copy.
 */
void dts_graphite_minute(struct dts_graphite *g, const struct dts_closed_minute *cm);

/* Send what is queued (for up to stop_timeout_ms), stop the thread, free. NULL is a no-op. After the merger stopped. */
void dts_graphite_stop(struct dts_graphite *g);

/* Counters: each written by one thread, read with relaxed loads (for /metrics). Monotonic unless marked gauge. */
struct dts_graphite_stats {
	uint64_t minutes_sent; /* closed minutes written whole */
	uint64_t lines_sent;
	uint64_t bytes_sent;
	uint64_t connects; /* connections established */
	uint64_t errors; /* failed connects, resolutions and writes (each followed by a backoff) */
	uint64_t minutes_dropped; /* queue full, or still unsent at stop */
	uint64_t records_dropped; /* their series-minutes */
	uint64_t late_skipped; /* series-minutes of late parts, not sent */
	uint64_t queue_records; /* gauge: series-minutes waiting */
};

void dts_graphite_stats_read(const struct dts_graphite *g, struct dts_graphite_stats *out);

#endif /* DTS_GRAPHITE_H */
