/*
 * main.c - dattssd: configuration, threads, signals, orderly shutdown.
 *
 * Threads: the UDP workers and the stream thread (receive.c), the merger (here), libmicrohttpd's request threads
 * (http.c), liburcu's call_rcu thread. The main thread only waits for SIGINT/SIGTERM (blocked everywhere else).
 *
 * Shutdown order matters: stop HTTP (no more readers), stop the receive threads (no more writers to the cores), then
 * the merger folds what the cores held and closes the open minute into the sink before exiting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "dts/engine.h"
#include "dts/dpdk_rx.h"
#include "dts/storage.h"
#include "http.h"
#include "log.h"
#include "receive.h"

/* The merger wakes this often to fold hand-overs: well under the default 1 s tick so lag stays small. */
#define MERGER_PERIOD_MS 20

struct merger_thread {
	struct dts_merger *m;
	struct dts_storage *st; /* checkpoints of a previous life are restored from it before the first step */
	struct dts_sink store; /* the storage sink; closed minutes are logged, then passed on */
	struct dts_core *api_core; /* engine core of PUT /agg; ticked by the merger thread, used under api_core_lock */
	pthread_mutex_t api_core_lock;
	_Atomic bool stop;
	pthread_t thread;
};

/* Log each closed minute (one line), then hand it to the storage sink. Merger thread. */
static void minute_closed(void *ctx, struct dts_closed_minute *cm)
{
	struct merger_thread *mt = ctx;
	time_t t = (time_t)(cm->minute * 60);
	struct tm tm;
	char when[32];

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%MZ", &tm);
	dts_info("merger", "minute %s closed: %zu series", when, cm->n);
	mt->store.minute_closed(mt->store.ctx, cm);
}

static void checkpoint(void *ctx, struct dts_closed_minute *cm)
{
	struct merger_thread *mt = ctx;

	mt->store.checkpoint(mt->store.ctx, cm);
}

static void storage_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	dts_log(level, "storage", "%s", msg);
}

static void dpdk_log(void *ctx, enum dts_dpdk_log_level level, const char *msg)
{
	(void)ctx;
	dts_log((int)level, "dpdk", "%s", msg);
}

/* Build the DPDK receiver's config from the daemon's (every value was validated when the config was parsed). */
static int dpdk_config(const struct dts_config *cfg, struct dts_dpdk_cfg *dc, char *words, size_t wlen,
		       const char **argv, char *err, size_t errlen)
{
	const struct {
		const char *key, *value;
	} opts[] = {
		{ "port", cfg->dpdk_port }, { "queues", cfg->dpdk_queues }, { "ipv4", cfg->dpdk_ipv4 },
		{ "ipv6", cfg->dpdk_ipv6 }, { "mac", cfg->dpdk_mac }, { "udp_ports", cfg->dpdk_udp_ports },
		{ "rx_desc", cfg->dpdk_rx_desc }, { "mbufs", cfg->dpdk_mbufs }, { "mbuf_size", cfg->dpdk_mbuf_size },
		{ "promiscuous", cfg->dpdk_promiscuous },
	};
	char port[8];
	int n;

	dts_dpdk_cfg_defaults(dc);
	n = dts_dpdk_eal_split(cfg->dpdk_eal, words, wlen, argv, DTS_DPDK_MAX_EAL_ARGS);
	if (n < 0) {
		snprintf(err, errlen, "dpdk_eal: too many arguments");
		return n;
	}
	dc->eal_argv = argv;
	dc->eal_argc = (unsigned)n;
	snprintf(port, sizeof(port), "%u", cfg->statsd_port);
	if (dts_dpdk_cfg_set(dc, "udp_ports", port, err, errlen) != 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (opts[i].value[0] && dts_dpdk_cfg_set(dc, opts[i].key, opts[i].value, err, errlen) != 0)
			return -EINVAL;
	dc->log = dpdk_log;
	return 0;
}

static void *merger_main(void *arg)
{
	struct merger_thread *mt = arg;
	struct timespec period = { 0, MERGER_PERIOD_MS * 1000000L };

	pthread_setname_np(pthread_self(), "dts-merger");
	dts_rcu_register_thread();
	long restored = dts_storage_restore(mt->st, mt->m, dts_now_ms());
	if (restored < 0)
		dts_err("main", "restoring checkpoints from the store failed (%ld): starting empty", restored);
	else if (restored > 0)
		dts_info("main", "restored %ld series-minutes of open minutes from the store", restored);
	while (!atomic_load(&mt->stop)) {
		/* The API core has no loop of its own: its owner is whoever holds api_core_lock, and this thread hands its
		 * table over on the tick like a receive worker would. */
		if (pthread_mutex_trylock(&mt->api_core_lock) == 0) {
			dts_core_tick(mt->api_core, dts_now_ms());
			pthread_mutex_unlock(&mt->api_core_lock);
		}
		dts_merger_step(mt->m, dts_now_ms());
		nanosleep(&period, NULL);
	}
	pthread_mutex_lock(&mt->api_core_lock);
	dts_core_flush(mt->api_core);
	dts_core_tick(mt->api_core, dts_now_ms());
	pthread_mutex_unlock(&mt->api_core_lock);
	dts_merger_destroy(mt->m, dts_now_ms());
	dts_rcu_unregister_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	struct dts_config cfg;
	struct dts_merger_cfg mcfg;
	struct merger_thread mt = { 0 };
	struct dts_storage_cfg scfg;
	struct dts_storage_sink *sink;
	struct dts_receiver *rx = NULL;
	struct dts_dpdk *dpdk = NULL;
	struct dts_dpdk_cfg dcfg;
	const char *eal_argv[DTS_DPDK_MAX_EAL_ARGS];
	char eal_words[DTS_CONFIG_EAL_SIZE];
	bool use_dpdk;
	unsigned rx_cores;
	struct dts_http *http = NULL;
	char err[512];
	sigset_t sigs;
	int rc, sig = 0;

	dts_config_defaults(&cfg);
	rc = dts_config_parse_args(&cfg, argc, argv, err, sizeof(err));
	if (rc == DTS_CONFIG_EXIT)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "dattssd: %s\n(try 'dattssd --help')\n", err);
		return 2;
	}
	dts_log_set_level(cfg.log_level);
	if (dts_log_enabled(DTS_LOG_DEBUG))
		dts_config_dump(&cfg, stderr);

	/* Block the shutdown signals before any thread starts so that only the main thread receives them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* The store first: without it closed minutes would have nowhere to go, so a store that cannot be opened is fatal
	 * at start (write failures later are retried with a bounded queue, and counted). */
	dts_storage_cfg_defaults(&scfg);
	scfg.data_dir = cfg.data_dir;
	scfg.minutes_days = cfg.retention_minutes_days;
	scfg.hours_days = cfg.retention_hours_days;
	scfg.rocksdb_log_dir = cfg.rocksdb_log_dir[0] ? cfg.rocksdb_log_dir : NULL;
	scfg.log = storage_log;
	mt.st = dts_storage_open(&scfg, err, sizeof(err));
	if (!mt.st) {
		dts_err("main", "%s", err);
		return 1;
	}
	sink = dts_storage_sink_start(mt.st, err, sizeof(err));
	if (!sink) {
		dts_err("main", "%s", err);
		dts_storage_close(mt.st);
		return 1;
	}
	mt.store = dts_storage_sink_get(sink);
	dts_info("main", "store %s open (compression %s, minutes kept %u days, hours %u days)", cfg.data_dir,
		 dts_storage_compression(mt.st), cfg.retention_minutes_days, cfg.retention_hours_days);

	/* Engine cores: one per receive thread (UDP worker or DPDK lcore), the stream core (TCP, Unix socket), and the
	 * API core (data received over HTTP: PUT /agg), shared by the HTTP threads under api_core_lock. */
	use_dpdk = strcmp(cfg.io, "dpdk") == 0;
	rx_cores = cfg.workers;
	if (use_dpdk) {
		if (dpdk_config(&cfg, &dcfg, eal_words, sizeof(eal_words), eal_argv, err, sizeof(err)) != 0) {
			dts_err("main", "%s", err);
			return 2;
		}
		rx_cores = dcfg.queues;
	}
	dts_merger_cfg_defaults(&mcfg);
	mcfg.cores = rx_cores + 2;
	mcfg.user = cfg.user;
	mcfg.tick_ms = cfg.tick_ms;
	mcfg.grace_s = cfg.grace_s;
	mcfg.decode.process_sep = cfg.process_sep;
	mcfg.decode.split_process = cfg.split_process;
	mcfg.decode.default_process = cfg.default_process;
	mcfg.decode.default_process_len = (uint16_t)strlen(cfg.default_process);
	mcfg.decode.max_past_skew_s = cfg.max_past_skew_s;
	mcfg.decode.max_future_skew_s = cfg.max_future_skew_s;
	mcfg.decode.secret = (const uint8_t *)cfg.secret;
	mcfg.decode.secret_len = strlen(cfg.secret);
	mcfg.sink.minute_closed = minute_closed;
	mcfg.sink.checkpoint = checkpoint;
	mcfg.sink.ctx = &mt;
	mcfg.checkpoint_ms = cfg.checkpoint_ms;
	mt.m = dts_merger_create(&mcfg);
	if (!mt.m) {
		dts_err("main", "cannot create the engine: %s", strerror(errno));
		dts_storage_sink_stop(sink);
		dts_storage_close(mt.st);
		return 1;
	}
	mt.api_core = dts_merger_core(mt.m, rx_cores + 1);
	pthread_mutex_init(&mt.api_core_lock, NULL);
	if (!cfg.secret[0])
		dts_warn("main", "no secret configured: DaTtSs 'AUTH:PROCESS:STAT:VALUE' lines will be rejected");

	if (pthread_create(&mt.thread, NULL, merger_main, &mt) != 0) {
		dts_err("main", "cannot start the merger thread");
		return 1;
	}
	if (use_dpdk) {
		dpdk = dts_dpdk_start(&dcfg, mt.m, 0, err, sizeof(err));
		if (!dpdk) {
			dts_err("main", "%s", err);
			rc = 1;
			goto out_stop_merger;
		}
	}
	rx = dts_receiver_start(&cfg, mt.m, use_dpdk ? 0 : rx_cores, rx_cores, err, sizeof(err));
	if (!rx) {
		dts_err("main", "%s", err);
		rc = 1;
		goto out_stop_dpdk;
	}
	if (cfg.http_port) {
		struct dts_http_ctx hctx = {
			.cfg = &cfg, .merger = mt.m, .receiver = rx, .storage = mt.st, .dpdk = dpdk, .cores = mcfg.cores,
			.api_core = mt.api_core, .api_core_lock = &mt.api_core_lock,
			.started_ms = dts_now_ms(),
		};

		http = dts_http_start(&hctx, err, sizeof(err));
		if (!http) {
			dts_err("main", "%s", err);
			rc = 1;
			goto out_stop_receiver;
		}
	}
	dts_info("main", "dattssd ready (io %s, %u receive cores, tick %u ms, grace %u s, user '%s')", cfg.io, rx_cores,
		 cfg.tick_ms, cfg.grace_s, cfg.user);
	while (sigwait(&sigs, &sig) != 0)
		;
	dts_info("main", "%s received: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
	rc = 0;

	dts_http_stop(http);
out_stop_receiver:
	dts_receiver_stop(rx);
out_stop_dpdk:
	dts_dpdk_stop(dpdk); /* before the merger folds the cores' tables */
out_stop_merger:
	atomic_store(&mt.stop, true);
	pthread_join(mt.thread, NULL); /* its destroy closed the open minutes into the sink */
	dts_storage_sink_stop(sink); /* writes what is queued */
	dts_storage_close(mt.st);
	dts_info("main", "stopped");
	return rc;
}
