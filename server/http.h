/*
 * http.h - dattssd's HTTP API (libmicrohttpd, JSON via jansson).
 *
 *   GET /healthz          {"ok":true,"uptime_s":N,"series":N}
 *   GET /metrics          self-metrics (and opted-in users' current values) in Prometheus text exposition format
 *   /api/v1/...           the query API, alerts and the operator API; PUT /agg; the dashboard (http_internal.h
 *                         lists the files; docs/api.md and docs/openapi.yaml describe every endpoint)
 * Errors are JSON: {"error":"message"} with a 4xx/5xx status.
 *
 * Request threads are libmicrohttpd's own (a small pool); each registers itself with RCU on first use and reads the
 * engine only under the RCU read side, so a slow client never delays the merger or the receive workers.
 */
#ifndef DTS_HTTP_H
#define DTS_HTTP_H

#include <pthread.h>
#include <stdint.h>

#include "config.h"
#include "dts/dpdk_rx.h"
#include "dts/engine.h"
#include "dts/storage.h"
#include "receive.h"

struct dts_http;
struct dts_users;
struct dts_alerts;
struct dts_graphite;

/* What the API reads. All pointers must outlive the server. */
struct dts_http_ctx {
	const struct dts_config *cfg;
	struct dts_merger *merger;
	struct dts_receiver *receiver; /* may be NULL (no socket counters) */
	struct dts_storage *storage; /* may be NULL (no store counters) */
	struct dts_dpdk *dpdk; /* NULL unless io = dpdk */
	struct dts_users *users; /* the user registry (server/users.h); NULL: every authenticated endpoint answers 401 */
	struct dts_alerts *alerts; /* the alert engine (server/alerts.h); NULL when not running */
	struct dts_core *api_core; /* engine core for data received over HTTP (PUT /agg); use under api_core_lock */
	pthread_mutex_t *api_core_lock;
	struct dts_graphite *graphite; /* the Graphite export (graphite.h), for its counters; NULL when off */
	unsigned cores; /* engine cores to report (receive cores + the stream core) */
	int64_t started_ms;
};

/*
 * Start serving on cfg->bind:cfg->http_port. Returns NULL with a message naming the address and port in err.
 * Main thread.
 */
struct dts_http *dts_http_start(const struct dts_http_ctx *ctx, char *err, size_t errlen);

/* Stop serving and join the request threads. NULL is accepted. Main thread. */
void dts_http_stop(struct dts_http *h);

#endif /* DTS_HTTP_H */
