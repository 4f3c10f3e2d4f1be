/*
 * http.c - libmicrohttpd, request dispatch to the route tables, /healthz and /metrics.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "alerts.h"
#include "graphite.h"
#include "http_internal.h"
#include "strbuf.h"
#include "log.h"
#include "users.h"

#define HTTP_THREADS 2

/* ---- RCU registration of libmicrohttpd's threads --------------------------------------------------------------- */

static pthread_key_t rcu_key;
static pthread_once_t rcu_key_once = PTHREAD_ONCE_INIT;

static void rcu_thread_exit(void *unused)
{
	(void)unused;
	dts_rcu_unregister_thread();
}

static void rcu_key_init(void)
{
	pthread_key_create(&rcu_key, rcu_thread_exit);
}

/* Register the calling request thread with RCU once (it is unregistered when the thread exits), and lower its priority
 * to DTS_HTTP_NICE. */
static void ensure_rcu_thread(void)
{
	pthread_once(&rcu_key_once, rcu_key_init);
	if (!pthread_getspecific(rcu_key)) {
		dts_rcu_register_thread();
		setpriority(PRIO_PROCESS, (id_t)gettid(), DTS_HTTP_NICE);
		pthread_setspecific(rcu_key, (void *)1);
	}
}

/* ---- responses ------------------------------------------------------------------------------------------------- */

enum MHD_Result dts_http_reply(struct dts_http_req *req, unsigned status, const char *type, char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	ret = MHD_queue_response(req->conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result dts_http_reply_json(struct dts_http_req *req, unsigned status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;

	json_decref(j);
	if (!s)
		return MHD_NO;
	return dts_http_reply(req, status, "application/json", s, strlen(s));
}

enum MHD_Result dts_http_reply_error(struct dts_http_req *req, unsigned status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return dts_http_reply_json(req, status, json_pack("{s:s}", "error", msg));
}

json_t *dts_http_num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

const char *dts_http_arg(struct dts_http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* The bearer token of the request (header, else access_token=), or NULL. */
static const char *bearer(struct dts_http_req *req)
{
	const char *a = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");

	if (a) {
		if (strncasecmp(a, "Bearer ", 7) != 0)
			return NULL;
		a += 7;
		while (*a == ' ')
			a++;
		return *a ? a : NULL;
	}
	a = dts_http_arg(req, "access_token");
	return a && *a ? a : NULL;
}

static enum MHD_Result unauthorized(struct dts_http_req *req, const char *msg)
{
	struct MHD_Response *r;
	char *s = json_dumps(json_pack("{s:s}", "error", msg), JSON_COMPACT);
	enum MHD_Result ret;

	if (!s)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(s);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"dattss\"");
	ret = MHD_queue_response(req->conn, 401, r);
	MHD_destroy_response(r);
	return ret;
}

bool dts_http_auth(struct dts_http_req *req, enum MHD_Result *ret)
{
	const char *key = bearer(req);

	if (!key) {
		*ret = unauthorized(req, "authentication required: send the user's API key as 'Authorization: Bearer KEY'");
		return false;
	}
	if (!req->ctx->users || !dts_users_auth(req->ctx->users, key, req->user, sizeof(req->user))) {
		*ret = unauthorized(req, "unknown API key");
		return false;
	}
	return true;
}

bool dts_http_auth_admin(struct dts_http_req *req, enum MHD_Result *ret)
{
	const char *key = bearer(req);

	if (!key) {
		*ret = unauthorized(req, "authentication required: send DATA_DIR/admin.token as 'Authorization: Bearer TOKEN'");
		return false;
	}
	if (!req->ctx->users || !dts_users_admin_ok(req->ctx->users, key)) {
		*ret = unauthorized(req, "wrong admin token");
		return false;
	}
	return true;
}

/* ---- /metrics -------------------------------------------------------------------------------------------------- */

static void metric_head(struct dts_sb *b, const char *name, const char *type, const char *help)
{
	dts_sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric of one unlabelled sample: a count, or seconds printed with prec decimals. */
static void metric_u64(struct dts_sb *b, const char *name, const char *type, const char *help, uint64_t v)
{
	metric_head(b, name, type, help);
	dts_sb_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void metric_f64(struct dts_sb *b, const char *name, const char *type, const char *help, int prec, double v)
{
	metric_head(b, name, type, help);
	dts_sb_printf(b, "%s %.*f\n", name, prec, v);
}

/*
 * A metric of one sample per value of a single label, in the order given: name{label="value"} v.
 * METRIC_BY takes the rows as { "value", v } pairs and counts them.
 */
struct metric_row {
	const char *value;
	uint64_t v;
};

static void metric_rows(struct dts_sb *b, const char *name, const char *type, const char *help, const char *label,
			const struct metric_row *rows, size_t n)
{
	metric_head(b, name, type, help);
	for (size_t i = 0; i < n; i++)
		dts_sb_printf(b, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, rows[i].value, rows[i].v);
}

#define METRIC_BY(b, name, type, help, label, ...)                                                            \
	metric_rows(b, name, type, help, label, (const struct metric_row[]){ __VA_ARGS__ },                   \
		    sizeof((const struct metric_row[]){ __VA_ARGS__ }) / sizeof(struct metric_row))

/* Worker label of engine core i: UDP workers are "0".."n-2"; the last core serves TCP and the Unix socket. */
static const char *worker_label(unsigned i, unsigned n, char *buf, size_t len)
{
	if (i + 1 == n)
		return "api"; /* main.c: receive cores, then the stream core, then the API core */
	if (i + 2 == n)
		return "stream";
	snprintf(buf, len, "%u", i);
	return buf;
}

static enum MHD_Result metrics(struct dts_http_req *req)
{
	struct dts_http *h = req->h;
	char lb[16];

	unsigned n = h->ctx.cores;
	struct dts_core_stats *cs = calloc(n, sizeof(*cs));
	struct dts_merger_stats ms;
	struct dts_sb b = { .p = malloc(16384), .cap = 16384 };

	if (!cs || !b.p) {
		free(cs);
		free(b.p);
		return dts_http_reply_error(req, 503, "out of memory");
	}
	for (unsigned i = 0; i < n; i++)
		dts_core_stats_read(dts_merger_core(h->ctx.merger, i), &cs[i]);
	dts_merger_stats_read(h->ctx.merger, &ms);

	/* Worker label: UDP workers are 0..n-2; the last core serves TCP and the Unix socket ("stream"). */
#define PER_CORE(name, type, help, field)                                                      \
	do {                                                                                   \
		metric_head(&b, name, type, help);                                             \
		for (unsigned i = 0; i < n; i++)                                               \
			dts_sb_printf(&b, name "{worker=\"%s\"} %" PRIu64 "\n",                   \
				worker_label(i, n, lb, sizeof(lb)), cs[i].field);               \
	} while (0)
	PER_CORE("dattss_received_packets_total", "counter", "Datagrams (or stream reads) received.", packets);
	PER_CORE("dattss_received_bytes_total", "counter", "Payload bytes received.", bytes);
	PER_CORE("dattss_received_lines_total", "counter", "Non-blank lines received.", lines);
	PER_CORE("dattss_samples_total", "counter", "Values aggregated.", samples);
	PER_CORE("dattss_handovers_total", "counter", "Tables handed from a worker to the merger.", handovers);
	PER_CORE("dattss_handover_deferred_total", "counter",
		 "Hand-overs postponed because no clean table was free.", handover_deferred);
	PER_CORE("dattss_native_datagrams_total", "counter", "Native datagrams accepted (verified whole).",
		 native_datagrams);
	PER_CORE("dattss_partials_total", "counter", "Partial aggregates taken (native datagrams, PUT /agg).", partials);
	PER_CORE("dattss_heartbeats_total", "counter", "Process reports (native datagrams, PUT /agg).", heartbeats);
	PER_CORE("dattss_events_total", "counter", "Errors and warnings received.", events);
	PER_CORE("dattss_events_dropped_total", "counter", "Errors and warnings lost: a table's event arena was full.",
		 events_dropped);
#undef PER_CORE
	metric_head(&b, "dattss_decoded_lines_total", "counter", "Lines decoded, by protocol.");
	for (unsigned i = 0; i < n; i++) {
		const char *w = worker_label(i, n, lb, sizeof(lb));

		dts_sb_printf(&b, "dattss_decoded_lines_total{worker=\"%s\",protocol=\"statsd\"} %" PRIu64 "\n", w,
			cs[i].statsd_lines);
		dts_sb_printf(&b, "dattss_decoded_lines_total{worker=\"%s\",protocol=\"dattss\"} %" PRIu64 "\n", w,
			cs[i].dattss_lines);
	}
	metric_head(&b, "dattss_rejected_lines_total", "counter", "Malformed lines skipped, by reason.");
	for (unsigned i = 0; i < n; i++)
		for (unsigned r = 1; r < DTS_REJ_COUNT; r++)
			dts_sb_printf(&b, "dattss_rejected_lines_total{worker=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
				worker_label(i, n, lb, sizeof(lb)), dts_reject_name(r), cs[i].rejected[r]);
	metric_head(&b, "dattss_rejected_datagrams_total", "counter", "Native datagrams rejected whole, by reason.");
	for (unsigned i = 0; i < n; i++)
		for (unsigned r = 1; r < DTS_NREJ_COUNT; r++)
			dts_sb_printf(&b,
				"dattss_rejected_datagrams_total{worker=\"%s\",protocol=\"native\",reason=\"%s\"} %" PRIu64
				"\n",
				worker_label(i, n, lb, sizeof(lb)), dts_native_reject_name(r), cs[i].native_rejected[r]);
	metric_head(&b, "dattss_dropped_total", "counter", "Valid values or entries dropped, by stage and reason.");
	for (unsigned i = 0; i < n; i++)
		for (unsigned d = 0; d < DTS_DROP_COUNT; d++)
			dts_sb_printf(&b, "dattss_dropped_total{stage=\"worker\",worker=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
				worker_label(i, n, lb, sizeof(lb)), dts_drop_name(d), cs[i].dropped[d]);
	for (unsigned d = 0; d < DTS_DROP_COUNT; d++)
		dts_sb_printf(&b, "dattss_dropped_total{stage=\"merger\",reason=\"%s\"} %" PRIu64 "\n", dts_drop_name(d),
			ms.dropped[d]);
	if (h->ctx.receiver) {
		struct dts_receiver_stats rs;

		dts_receiver_stats_read(h->ctx.receiver, &rs);
		metric_u64(&b, "dattss_socket_errors_total", "counter", "Receive calls that failed.", rs.recv_errors);
		METRIC_BY(&b, "dattss_tcp_connections_total", "counter", "TCP connections, by outcome.", "outcome",
			  { "accepted", rs.tcp_accepted }, { "refused", rs.tcp_refused }, { "denied", rs.tcp_denied });
		metric_u64(&b, "dattss_denied_datagrams_total", "counter",
			   "UDP datagrams dropped because their source is not in statsd_allow.", rs.denied);
		metric_u64(&b, "dattss_receive_calls_total", "counter",
			   "Receive calls (recvmmsg, recv) that returned data: packets / calls is the batch per wake-up.",
			   rs.recv_calls);
		metric_f64(&b, "dattss_receive_paused_seconds_total", "counter",
			   "Time UDP workers left their sockets unread while their core was saturated (udp_backpressure).",
			   6, (double)rs.paused_ns / 1e9);
		metric_u64(&b, "dattss_socket_dropped_datagrams_total", "counter",
			   "Datagrams the kernel dropped at the UDP workers' sockets (receive buffer full).",
			   rs.socket_drops);
	}
	if (h->ctx.storage) {
		struct dts_storage_stats ss;
		struct dts_storage_usage u;

		dts_storage_stats_read(h->ctx.storage, &ss);
		metric_u64(&b, "dattss_store_batches_total", "counter", "WriteBatches committed to the store.",
			   ss.batches);
		metric_u64(&b, "dattss_store_minutes_written_total", "counter", "Closed minutes stored.",
			   ss.minutes_written);
		metric_u64(&b, "dattss_store_records_written_total", "counter", "Series-minutes stored.",
			   ss.records_written);
		metric_u64(&b, "dattss_store_records_merged_total", "counter",
			   "Series-minutes merged into an already stored minute (late data, restarts).",
			   ss.records_merged);
		metric_u64(&b, "dattss_store_checkpoints_written_total", "counter", "Open-minute checkpoints stored.",
			   ss.checkpoints_written);
		METRIC_BY(&b, "dattss_store_checkpoints_lost_total", "counter",
			  "Checkpoints refused (queue half full) or failed; the next one is then full.", "reason",
			  { "dropped", ss.checkpoints_dropped }, { "failed", ss.checkpoints_failed });
		metric_u64(&b, "dattss_store_minute_parts_total", "counter",
			   "WriteBatches of closed minutes (a large put-only minute is committed in parts).",
			   ss.minute_parts);
		metric_u64(&b, "dattss_store_bytes_written_total", "counter", "Bytes written to the store.",
			   ss.bytes_written);
		metric_f64(&b, "dattss_store_batch_seconds", "gauge", "Build + commit time of the last batch.", 6,
			   (double)ss.batch_ns_last / 1e9);
		metric_u64(&b, "dattss_store_write_errors_total", "counter", "Failed batch commits (each is retried).",
			   ss.write_errors);
		metric_u64(&b, "dattss_store_rollup_markers_total", "counter",
			   "Hourly rollup markers put by minute closes (one per series and hour).", ss.markers_written);
		metric_u64(&b, "dattss_store_hours_rolled_total", "counter", "Hours rolled up into the hours family.",
			   ss.hours_rolled);
		metric_u64(&b, "dattss_store_rollup_errors_total", "counter", "Failed rollup chunks (each is redone).",
			   ss.roll_errors);
		metric_f64(&b, "dattss_store_rollup_chunk_max_seconds", "gauge", "Longest rollup chunk so far.", 6,
			   (double)ss.roll_ns_max / 1e9);
		metric_head(&b, "dattss_store_hour_done", "gauge",
			    "Unix time of the last hour rolled up (every hour up to it is in the hours family); -1 when none.");
		dts_sb_printf(&b, "dattss_store_hour_done %" PRId64 "\n", ss.hour_done < 0 ? -1 : ss.hour_done * 3600);
		metric_u64(&b, "dattss_store_queue_minutes", "gauge", "Closed minutes and checkpoints waiting.",
			   ss.queue_minutes);
		metric_head(&b, "dattss_store_dropped_records_total", "counter", "Series-minutes the store dropped.");
		for (unsigned d = 0; d < DTS_SDROP_COUNT; d++)
			dts_sb_printf(&b, "dattss_store_dropped_records_total{reason=\"%s\"} %" PRIu64 "\n",
				dts_storage_drop_name(d), ss.dropped_records[d]);
		struct dts_storage_event_stats es;

		dts_storage_event_stats_read(h->ctx.storage, &es);
		METRIC_BY(&b, "dattss_store_event_batches_total", "counter",
			  "Batches of events and process states, by outcome.", "outcome",
			  { "written", es.batches_written }, { "dropped", es.batches_dropped });
		if (dts_storage_usage(h->ctx.storage, &u) == 0) {
			metric_head(&b, "dattss_store_sst_bytes", "gauge", "SST bytes per column family.");
			for (unsigned c = 0; c < DTS_STORAGE_CF_COUNT; c++)
				dts_sb_printf(&b, "dattss_store_sst_bytes{cf=\"%s\"} %" PRIu64 "\n", dts_storage_cf_names[c],
					u.sst_bytes[c]);
		}
	}
	if (h->ctx.dpdk) {
		struct dts_dpdk_stats *ds = malloc(sizeof(*ds));

		if (ds && dts_dpdk_stats_read(h->ctx.dpdk, ds) == 0) {
			metric_head(&b, "dattss_dpdk_link_up", "gauge", "1 when the DPDK port's link is up.");
			dts_sb_printf(&b, "dattss_dpdk_link_up{port=\"%u\"} %d\n", ds->port_id, ds->link_up ? 1 : 0);
			metric_head(&b, "dattss_dpdk_port_packets_total", "counter", "Port counters from the device.");
			dts_sb_printf(&b, "dattss_dpdk_port_packets_total{port=\"%u\",what=\"rx\"} %" PRIu64 "\n", ds->port_id,
				ds->port.ipackets);
			dts_sb_printf(&b, "dattss_dpdk_port_packets_total{port=\"%u\",what=\"missed\"} %" PRIu64 "\n",
				ds->port_id, ds->port.imissed);
			dts_sb_printf(&b, "dattss_dpdk_port_packets_total{port=\"%u\",what=\"errors\"} %" PRIu64 "\n",
				ds->port_id, ds->port.ierrors);
			dts_sb_printf(&b, "dattss_dpdk_port_packets_total{port=\"%u\",what=\"no_mbuf\"} %" PRIu64 "\n",
				ds->port_id, ds->port.rx_nombuf);
			metric_head(&b, "dattss_dpdk_queue_packets_total", "counter", "Per receive queue, by outcome.");
			for (unsigned q = 0; q < ds->queues; q++) {
				const struct dts_dpdk_queue_stats *qs = &ds->queue[q];
				const struct metric_row rows[] = {
					{ "rx", qs->rx_packets },	      { "bad_checksum", qs->bad_checksum },
					{ "truncated", qs->truncated },	      { "bad_header", qs->bad_header },
					{ "arp_replies", qs->arp_replies },   { "icmp_replies", qs->icmp_replies },
					{ "nd_replies", qs->nd_replies },     { "icmp6_replies", qs->icmp6_replies },
					{ "tx_dropped", qs->tx_dropped },     { "ipv4_fragments", qs->ipv4_fragments },
					{ "reassembled", qs->reassembled },   { "frag_dropped", qs->frag_dropped },
					{ "ipv6_fragments", qs->ipv6_fragments },
				};
				for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
					dts_sb_printf(&b, "dattss_dpdk_queue_packets_total{queue=\"%u\",what=\"%s\"} %" PRIu64 "\n",
						q, rows[r].value, rows[r].v);
			}
		}
		free(ds);
	}
	metric_f64(&b, "dattss_merge_lag_seconds", "gauge", "Age of the oldest table in the merger's last fold.", 3,
		   (double)ms.merge_lag_ms / 1000.0);
	metric_f64(&b, "dattss_merger_fold_seconds_total", "counter", "Time the merger spent folding tables.", 6,
		   (double)ms.fold_ns_total / 1e9);
	metric_u64(&b, "dattss_merger_tables_folded_total", "counter", "Tables folded by the merger.",
		   ms.tables_folded);
	metric_u64(&b, "dattss_merger_late_forwarded_total", "counter",
		   "Entries for already closed minutes handed to the store to merge.", ms.late_forwarded);
	metric_u64(&b, "dattss_minutes_closed_total", "counter", "Minute windows closed.", ms.minutes_closed);
	metric_f64(&b, "dattss_minute_close_seconds", "gauge", "Duration of the last minute close.", 6,
		   (double)ms.close_ns_last / 1e9);
	metric_f64(&b, "dattss_publish_seconds", "gauge",
		   "Duration of the last 5-second publication walk over every series (folds between slices included).", 6,
		   (double)ms.publish_ns_last / 1e9);
	metric_f64(&b, "dattss_checkpoint_copy_seconds", "gauge",
		   "Duration of the merger's last checkpoint walk (folds between slices included).", 6,
		   (double)ms.checkpoint_ns_last / 1e9);
	metric_u64(&b, "dattss_tables_grown_total", "counter",
		   "Worker tables given more buckets after their worker's table filled before its tick.",
		   ms.tables_grown);
	metric_u64(&b, "dattss_table_logs_grown_total", "counter",
		   "Worker tables given bigger timer and set logs alone after values filled one before its tick.",
		   ms.table_logs_grown);
	metric_u64(&b, "dattss_table_buckets", "gauge", "Buckets of all worker tables together.", ms.table_buckets);
	metric_u64(&b, "dattss_table_reserved_bytes", "gauge",
		   "Memory of the receive workers' tables faulted in at start for series_reserve.",
		   ms.table_reserved_bytes);
	METRIC_BY(&b, "dattss_series_memory_bytes", "gauge",
		  "Memory mapped for series records (2 MiB slabs); reserved: faulted in at start (series_reserve).", "part",
		  { "mapped", ms.series_slab_bytes }, { "reserved", ms.series_reserved_bytes });
	metric_u64(&b, "dattss_series_live", "gauge", "Series in the live map.", ms.series_live);
	metric_u64(&b, "dattss_series_created_total", "counter", "Series created.", ms.series_created);
	metric_u64(&b, "dattss_series_expired_total", "counter", "Idle series removed from the live map.",
		   ms.series_expired);
	METRIC_BY(&b, "dattss_processes", "gauge", "Processes with a state, by status.", "status",
		  { "online", ms.processes_online },
		  { "offline", ms.processes_live > ms.processes_online ? ms.processes_live - ms.processes_online : 0 });
	metric_u64(&b, "dattss_process_restarts_total", "counter", "Process restarts detected (uptime went down).",
		   ms.restarts);
	metric_u64(&b, "dattss_merger_events_total", "counter", "Errors and warnings numbered and kept by the merger.",
		   ms.events_total);
	metric_u64(&b, "dattss_merger_encodings_merged_total", "counter",
		   "Sketches and sets of partial aggregates merged exactly into minute windows.", ms.encodings_merged);
	if (h->ctx.graphite) {
		struct dts_graphite_stats gs;

		dts_graphite_stats_read(h->ctx.graphite, &gs);
		metric_u64(&b, "dattss_graphite_minutes_sent_total", "counter", "Closed minutes written to Graphite.",
			   gs.minutes_sent);
		metric_u64(&b, "dattss_graphite_lines_sent_total", "counter", "Graphite plaintext lines written.",
			   gs.lines_sent);
		metric_u64(&b, "dattss_graphite_connects_total", "counter", "Connections to carbon established.",
			   gs.connects);
		metric_u64(&b, "dattss_graphite_errors_total", "counter", "Failed resolutions, connects and writes.",
			   gs.errors);
		METRIC_BY(&b, "dattss_graphite_dropped_records_total", "counter",
			  "Series-minutes not exported: queue full or unsent at stop (queue_full); late parts (late_part).",
			  "reason", { "queue_full", gs.records_dropped }, { "late_part", gs.late_skipped });
		metric_u64(&b, "dattss_graphite_queue_records", "gauge", "Series-minutes waiting to be written.",
			   gs.queue_records);
	}
	metric_f64(&b, "dattss_uptime_seconds", "gauge", "Seconds since dattssd started.", 3,
		   (double)(dts_now_ms() - h->ctx.started_ms) / 1000.0);
	if (h->ctx.alerts) {
		char *text = dts_alerts_metrics(h->ctx.alerts); /* dattss_alert_*: rules, rounds, notifications */

		if (text)
			dts_sb_printf(&b, "%s", text);
		free(text);
	}
	{
		size_t vlen; /* the current values of the users who opted in (http_api.c) */
		char *values = dts__http_api_prometheus(h, &vlen);

		if (values)
			dts_sb_printf(&b, "%.*s", (int)vlen, values);
		free(values);
	}
	free(cs);
	if (b.oom) {
		free(b.p);
		return dts_http_reply_error(req, 503, "out of memory");
	}
	return dts_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
}

static enum MHD_Result healthz(struct dts_http_req *req)
{
	struct dts_merger_stats ms;

	dts_merger_stats_read(req->ctx->merger, &ms);
	return dts_http_reply_json(req, 200,
				   json_pack("{s:b,s:I,s:I}", "ok", 1, "uptime_s",
					     (json_int_t)((dts_now_ms() - req->ctx->started_ms) / 1000), "series",
					     (json_int_t)ms.series_live));
}

const struct dts_http_route dts_http_routes_self[] = {
	{ "GET", "/healthz", healthz },
	{ "GET", "/metrics", metrics },
	{ NULL, NULL, NULL },
};

/* Every route table, searched in this order. */
static const struct dts_http_route *const route_tables[] = {
	dts_http_routes_self,
	dts_http_routes_api,
	dts_http_routes_admin,
	dts_http_routes_alerts,
	dts_http_routes_web,
};

/* ---- dispatch -------------------------------------------------------------------------------------------------- */

/* Per-request state kept by libmicrohttpd between calls: the body collected so far. */
struct req_state {
	char *body;
	size_t len, cap;
	bool too_large;
};

static bool path_matches(const char *pattern, const char *url)
{
	size_t n = strlen(pattern);

	if (n && pattern[n - 1] == '*')
		return strncmp(pattern, url, n - 1) == 0;
	return strcmp(pattern, url) == 0;
}

static bool method_matches(const char *want, const char *method)
{
	return !want || strcmp(want, method) == 0 || (strcmp(want, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

static enum MHD_Result dispatch(struct dts_http *h, struct MHD_Connection *conn, const char *url, const char *method,
				struct req_state *rs)
{
	struct dts_http_req req = {
		.h = h, .ctx = &h->ctx, .conn = conn, .method = method, .url = url,
		.body = rs->body ? rs->body : "", .body_len = rs->len,
	};
	bool path_known = false;

	if (rs->too_large)
		return dts_http_reply_error(&req, 413, "request body larger than %u bytes", DTS_HTTP_MAX_BODY);
	for (size_t t = 0; t < sizeof(route_tables) / sizeof(route_tables[0]); t++) {
		for (const struct dts_http_route *r = route_tables[t]; r->path; r++) {
			if (!path_matches(r->path, url))
				continue;
			path_known = true;
			if (method_matches(r->method, method))
				return r->fn(&req);
		}
	}
	if (path_known)
		return dts_http_reply_error(&req, 405, "method %s not allowed on %s", method, url);
	return dts_http_reply_error(&req, 404, "no such endpoint: %s", url);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			      const char *version, const char *upload_data, size_t *upload_size, void **req_ctx)
{
	struct dts_http *h = cls;
	struct req_state *rs = *req_ctx;

	(void)version;
	if (!rs) {
		rs = calloc(1, sizeof(*rs)); /* headers only; collect the body, answer when it is complete */
		if (!rs)
			return MHD_NO;
		*req_ctx = rs;
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;

		*upload_size = 0;
		if (rs->too_large || rs->len + n > DTS_HTTP_MAX_BODY) {
			rs->too_large = true; /* keep reading (and discarding) so the client gets the 413 */
			return MHD_YES;
		}
		if (rs->len + n + 1 > rs->cap) {
			size_t cap = rs->cap ? rs->cap : 4096;
			char *nb;

			while (cap < rs->len + n + 1)
				cap *= 2;
			nb = realloc(rs->body, cap);
			if (!nb)
				return MHD_NO;
			rs->body = nb;
			rs->cap = cap;
		}
		memcpy(rs->body + rs->len, upload_data, n);
		rs->len += n;
		rs->body[rs->len] = '\0';
		return MHD_YES;
	}
	ensure_rcu_thread();
	return dispatch(h, conn, url, method, rs);
}

static void request_done(void *cls, struct MHD_Connection *conn, void **req_ctx, enum MHD_RequestTerminationCode toe)
{
	struct req_state *rs = *req_ctx;

	(void)cls;
	(void)conn;
	(void)toe;
	if (rs) {
		free(rs->body);
		free(rs);
		*req_ctx = NULL;
	}
}

struct dts_http *dts_http_start(const struct dts_http_ctx *ctx, char *err, size_t errlen)
{
	struct dts_http *h = calloc(1, sizeof(*h));
	struct sockaddr_storage ss;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	/* suspend/resume: Server-Sent Events streams hold no pool thread while idle (http_api.c) */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->ctx = *ctx;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ctx->cfg->bind, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(ctx->cfg->http_port);
	} else if (inet_pton(AF_INET6, ctx->cfg->bind, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(ctx->cfg->http_port);
		flags |= MHD_USE_IPv6;
	} else {
		snprintf(err, errlen, "bind: '%s' is not an IPv4 or IPv6 address", ctx->cfg->bind);
		free(h);
		return NULL;
	}
	if (dts__http_api_start(h) != 0) {
		snprintf(err, errlen, "http: cannot start the event stream thread");
		free(h);
		return NULL;
	}
	h->d = MHD_start_daemon(flags, ctx->cfg->http_port, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, &ss,
				MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_THREADS, MHD_OPTION_CONNECTION_TIMEOUT,
				(unsigned)30, MHD_OPTION_CONNECTION_LIMIT, (unsigned)512, MHD_OPTION_NOTIFY_COMPLETED,
				request_done, NULL, MHD_OPTION_END);
	if (!h->d) {
		snprintf(err, errlen, "http %s port %u: cannot listen (address in use or not permitted?)",
			 ctx->cfg->bind, ctx->cfg->http_port);
		dts__http_api_stop(h);
		dts__http_api_free(h);
		free(h);
		return NULL;
	}
	dts_info("http", "serving http://%s%s%s:%u/", ss.ss_family == AF_INET6 ? "[" : "", ctx->cfg->bind,
		 ss.ss_family == AF_INET6 ? "]" : "", ctx->cfg->http_port);
	return h;
}

void dts_http_stop(struct dts_http *h)
{
	if (!h)
		return;
	dts__http_api_stop(h); /* ends the event streams: libmicrohttpd must not stop with suspended connections */
	MHD_stop_daemon(h->d);
	dts__http_api_free(h);
	free(h);
}
