/*
 * main.c - dattssd: configuration, threads, signals, orderly shutdown.
 *
 * Threads: the UDP workers and the stream thread (receive.c), the merger (here), libmicrohttpd's request threads
 * (http.c), the alert evaluator and notifier (alerts.c, notify.c), liburcu's call_rcu thread. The main thread only
 * waits for SIGINT/SIGTERM (blocked everywhere else).
 *
 * Shutdown order matters: stop HTTP (no more readers), stop the alert threads (readers of the engine and the store),
 * stop the receive threads (no more writers to the cores), then
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
#include "dts/cpu.h"
#include "dts/engine.h"
#include "dts/dpdk_rx.h"
#include "dts/storage.h"
#include "alerts.h"
#include "graphite.h"
#include "http.h"
#include "log.h"
#include "notify.h"
#include "receive.h"
#include "users.h"

DTS_CPU_CHECK("dattssd")

/*
 * The merger wakes this often while the cores hand tables over: well under the default 1 s tick so lag stays small.
 * After a step that folded nothing it sleeps twice as long each time, up to MERGER_IDLE_MS: a quiet merger pays for
 * every wake-up and step with nothing to fold (a wake-up alone costs ~10 us of CPU in the test VM: bench/bench_wake.c),
 * and the daemon's budget is 15 us per thousand lines (issue 2). A table handed over meanwhile waits at most that
 * long; 50 ms keeps a burst from idle from running a core out of tables: at a million names a new 65,536-bucket table
 * fills in ~20 ms, and a core has three, the last of which takes ~75% more before it drops anything.
 */
#define MERGER_PERIOD_MS 20
#define MERGER_IDLE_MS 50

/* Seconds on the monotonic clock: the shutdown logs how long each of its steps took. */
static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct merger_thread {
	struct dts_merger *m;
	struct dts_storage *st; /* checkpoints of a previous life are restored from it before the first step */
	struct dts_sink store; /* the storage sink; closed minutes are logged, then passed on */
	struct dts_core *api_core; /* engine core of PUT /agg; ticked by the merger thread, used under api_core_lock */
	pthread_mutex_t api_core_lock;
	struct dts_graphite *graphite; /* Graphite export of closed minutes; NULL unless graphite_host is set */
	_Atomic bool stop;
	pthread_t thread;
};

/* Log each closed minute (one line), copy it for Graphite, then hand it to the storage sink. Merger thread. */
static void minute_closed(void *ctx, struct dts_closed_minute *cm)
{
	struct merger_thread *mt = ctx;
	time_t t = (time_t)(cm->minute * 60);
	struct tm tm;
	char when[32];

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%MZ", &tm);
	dts_info("merger", "minute %s closed: %zu series", when, cm->n);
	if (mt->graphite)
		dts_graphite_minute(mt->graphite, cm); /* copies what it sends: the store takes cm */
	mt->store.minute_closed(mt->store.ctx, cm);
}

static void checkpoint(void *ctx, struct dts_closed_minute *cm)
{
	struct merger_thread *mt = ctx;

	mt->store.checkpoint(mt->store.ctx, cm);
}

static bool checkpoint_lost(void *ctx)
{
	struct merger_thread *mt = ctx;

	return mt->store.checkpoint_lost(mt->store.ctx);
}

/* Events and process states to the store (the events family and current's p/ rows). Merger thread. */
static void events(void *ctx, struct dts_event_batch *b)
{
	struct merger_thread *mt = ctx;

	mt->store.events(mt->store.ctx, b);
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

/*
 * DATA_DIR/http.url: where this daemon's HTTP API answers, for `dattss user`, which finds a running daemon by the
 * store's lock and then needs its admin API (the token is in DATA_DIR/admin.token). A wildcard bind is reached on
 * loopback. Failing to write it only costs the operator a --http flag, so it is a warning.
 */
static void write_http_url(const struct dts_config *cfg)
{
	const char *host = cfg->bind;
	bool v6 = strchr(host, ':') != NULL;
	char path[4096], tmp[4096];
	bool ok = false;
	FILE *f;

	if (!strcmp(host, "0.0.0.0"))
		host = "127.0.0.1";
	else if (!strcmp(host, "::"))
		host = "::1";
	snprintf(path, sizeof(path), "%s/http.url", cfg->data_dir);
	snprintf(tmp, sizeof(tmp), "%s/.http.url.tmp", cfg->data_dir);

	f = fopen(tmp, "w");
	if (f) {
		ok = fprintf(f, "http://%s%s%s:%u\n", v6 ? "[" : "", host, v6 ? "]" : "", cfg->http_port) > 0;
		ok = fclose(f) == 0 && ok;
		ok = ok && rename(tmp, path) == 0;
	}
	if (!ok)
		dts_warn("main", "cannot write %s: %s ('dattss user' will need --http)", path, strerror(errno));
}

static void *merger_main(void *arg)
{
	struct merger_thread *mt = arg;
	long period_ms = MERGER_PERIOD_MS;

	pthread_setname_np(pthread_self(), "dts-merger");
	dts_rcu_register_thread();
	long restored = dts_storage_restore(mt->st, mt->m, dts_now_ms());
	if (restored < 0)
		dts_err("main", "restoring checkpoints from the store failed (%ld): starting empty", restored);
	else if (restored > 0)
		dts_info("main", "restored %ld series-minutes of open minutes from the store", restored);
	restored = dts_storage_restore_state(mt->st, mt->m, dts_now_ms());
	if (restored < 0)
		dts_err("main", "restoring process states and events from the store failed (%ld)", restored);
	else if (restored > 0)
		dts_info("main", "restored %ld process states and events from the store", restored);
	while (!atomic_load(&mt->stop)) {
		/* The API core has no loop of its own: its owner is whoever holds api_core_lock, and this thread hands its
		 * table over on the tick like a receive worker would. */
		if (pthread_mutex_trylock(&mt->api_core_lock) == 0) {
			dts_core_tick(mt->api_core, dts_now_ms());
			pthread_mutex_unlock(&mt->api_core_lock);
		}
		if (dts_merger_step(mt->m, dts_now_ms()) > 0)
			period_ms = MERGER_PERIOD_MS;
		else if ((period_ms *= 2) > MERGER_IDLE_MS)
			period_ms = MERGER_IDLE_MS;
		nanosleep(&(struct timespec){ .tv_sec = 0, .tv_nsec = period_ms * 1000000L }, NULL);
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
	struct dts_notifier *notifier = NULL;
	struct dts_alerts *alerts = NULL;
	struct dts_users *users;
	const uint8_t *server_secret;
	size_t server_secret_len;
	char err[512], path[4096];
	sigset_t sigs;
	double t_stop = mono_s(), t;
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

	/* Users and keys: the registry reads meta once here; lookups are in memory from now on. */
	users = dts_users_open(mt.st, cfg.data_dir, (const uint8_t *)cfg.secret, strlen(cfg.secret), err, sizeof(err));
	if (!users) {
		dts_err("main", "users: %s", err);
		dts_storage_sink_stop(sink);
		dts_storage_close(mt.st);
		return 1;
	}
	rc = dts_users_bootstrap(users, cfg.user, cfg.data_dir, path, sizeof(path), err, sizeof(err));
	if (rc < 0) {
		dts_err("main", "users: creating the first user '%s': %s", cfg.user, err);
		dts_users_close(users);
		dts_storage_sink_stop(sink);
		dts_storage_close(mt.st);
		return 1;
	}
	if (rc == 1)
		dts_info("main", "first start: created user '%s'; its API key is in %s (mode 0600)", cfg.user, path);
	dts_info("main", "users: %zu; admin token in %s/admin.token", dts_users_list(users, NULL, NULL), cfg.data_dir);
	server_secret = dts_users_server_secret(users, &server_secret_len);

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
	mcfg.table_capacity = cfg.table_capacity;
	/* at or below table_capacity: no growth (the engine's 0) */
	mcfg.table_capacity_max = cfg.table_capacity_max > cfg.table_capacity ? cfg.table_capacity_max : 0;
	mcfg.max_series = cfg.max_series;
	mcfg.decode.process_sep = cfg.process_sep;
	mcfg.decode.split_process = cfg.split_process;
	mcfg.decode.default_process = cfg.default_process;
	mcfg.decode.default_process_len = (uint16_t)strlen(cfg.default_process);
	mcfg.decode.max_past_skew_s = cfg.max_past_skew_s;
	mcfg.decode.max_future_skew_s = cfg.max_future_skew_s;
	mcfg.decode.secret = server_secret; /* the configured secret, else the one kept in meta (secret/dattss) */
	mcfg.decode.secret_len = server_secret_len;
	mcfg.sink.minute_closed = minute_closed;
	mcfg.sink.checkpoint = checkpoint;
	mcfg.sink.checkpoint_lost = checkpoint_lost;
	mcfg.sink.events = events;
	mcfg.sink.ctx = &mt;
	mcfg.checkpoint_ms = cfg.checkpoint_ms;
	mcfg.native.key_lookup = dts_users_native_key; /* in-memory snapshot, RCU: never blocks an RX core */
	mcfg.native.key_ctx = users;
	mcfg.user_known = dts_users_known; /* a removed user's original AUTH token stops working too */
	mcfg.user_known_ctx = users;
	mcfg.series_reserve = cfg.series_reserve;
	int64_t create_ms = dts_now_ms();

	mt.m = dts_merger_create(&mcfg);
	if (!mt.m) {
		if (cfg.series_reserve)
			dts_err("main", "cannot create the engine with series_reserve = %u (~%llu MiB): %s",
				cfg.series_reserve,
				(unsigned long long)cfg.series_reserve * DTS_SERIES_RESERVE_BYTES >> 20, strerror(errno));
		else
			dts_err("main", "cannot create the engine: %s", strerror(errno));
		dts_users_close(users);
		dts_storage_sink_stop(sink);
		dts_storage_close(mt.st);
		return 1;
	}
	if (cfg.series_reserve) {
		/* the receive cores' tables too: a worker that faults in its table memory under load lets its socket
		 * overflow (docs/performance.md, "Session 10") */
		const uint64_t per_core = ((uint64_t)cfg.series_reserve + rx_cores - 1) / rx_cores;
		struct dts_merger_stats ms;

		for (unsigned i = 0; i < rx_cores; i++) {
			if (dts_merger_reserve_tables(mt.m, i, per_core) != 0) {
				dts_err("main", "cannot fault in the receive tables for series_reserve = %u: %s",
					cfg.series_reserve, strerror(errno));
				dts_users_close(users); /* the engine holds no data yet: exiting frees it */
				dts_storage_sink_stop(sink);
				dts_storage_close(mt.st);
				return 1;
			}
		}
		dts_merger_stats_read(mt.m, &ms);
		dts_info("main", "faulted in %llu MiB of series memory and %llu MiB of receive tables for series_reserve "
			 "= %u in %lld ms", (unsigned long long)ms.series_reserved_bytes >> 20,
			 (unsigned long long)ms.table_reserved_bytes >> 20, cfg.series_reserve,
			 (long long)(dts_now_ms() - create_ms));
	}
	mt.api_core = dts_merger_core(mt.m, rx_cores + 1);
	pthread_mutex_init(&mt.api_core_lock, NULL);
	if (!cfg.secret[0])
		dts_info("main", "no secret configured: AUTH tokens use the server secret kept in the store "
			 "('dattss user add' prints a user's token)");

	if (cfg.graphite_host[0]) {
		struct dts_graphite_cfg gcfg;

		dts_graphite_cfg_defaults(&gcfg);
		gcfg.host = cfg.graphite_host;
		gcfg.port = cfg.graphite_port;
		gcfg.prefix = cfg.graphite_prefix;
		mt.graphite = dts_graphite_start(&gcfg, err, sizeof(err));
		if (!mt.graphite)
			dts_err("main", "%s: closed minutes are not exported", err);
		else
			dts_info("main", "exporting closed minutes to Graphite at %s port %u, prefix '%s'", cfg.graphite_host,
				 cfg.graphite_port, cfg.graphite_prefix);
	}
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
	/* Alerts: rules from the store, an evaluator thread reading the engine (RCU) and the store, and a notifier
	 * thread that sends. Both stop before the engine and the store go (out_stop_receiver). */
	{
		struct dts_notify_cfg ncfg;
		struct dts_alerts_cfg acfg;

		dts_notify_cfg_from_config(&ncfg, &cfg);
		notifier = dts_notifier_create(&ncfg, err, sizeof(err));
		dts_alerts_cfg_defaults(&acfg);
		acfg.st = mt.st;
		acfg.merger = mt.m;
		acfg.notifier = notifier;
		acfg.eval_s = cfg.alert_eval_s;
		acfg.grace_s = cfg.grace_s;
		acfg.timing.minute_s = cfg.alert_minute_s;
		acfg.timing.repeat_s = cfg.alert_repeat_s;
		acfg.timing.resolved_hold_s = cfg.alert_resolved_s;
		acfg.max_rules = cfg.alert_max_rules;
		acfg.channels_ok = notifier ? dts_notifier_channels(notifier) : 0;
		alerts = notifier ? dts_alerts_open(&acfg, err, sizeof(err)) : NULL;
		if (!alerts || dts_notifier_start(notifier, err, sizeof(err)) != 0 ||
		    dts_alerts_start(alerts, err, sizeof(err)) != 0) {
			dts_err("main", "%s", err);
			rc = 1;
			goto out_stop_receiver;
		}
	}
	if (cfg.http_port) {
		struct dts_http_ctx hctx = {
			.cfg = &cfg, .merger = mt.m, .receiver = rx, .storage = mt.st, .dpdk = dpdk, .cores = mcfg.cores,
			.users = users,
			.api_core = mt.api_core, .api_core_lock = &mt.api_core_lock,
			.graphite = mt.graphite,
			.alerts = alerts,
			.started_ms = dts_now_ms(),
		};

		http = dts_http_start(&hctx, err, sizeof(err));
		if (!http) {
			dts_err("main", "%s", err);
			rc = 1;
			goto out_stop_receiver;
		}
		write_http_url(&cfg);
	}
	dts_info("main", "dattssd ready (io %s, %u receive cores, tick %u ms, grace %u s, user '%s')", cfg.io, rx_cores,
		 cfg.tick_ms, cfg.grace_s, cfg.user);
	while (sigwait(&sigs, &sig) != 0)
		;
	dts_info("main", "%s received: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
	rc = 0;

	t_stop = mono_s();
	dts_http_stop(http);
out_stop_receiver:
	dts_alerts_close(alerts); /* no more rounds: it reads the engine and the store */
	dts_notifier_destroy(notifier); /* one last attempt at what is queued */
	dts_receiver_stop(rx);
out_stop_dpdk:
	dts_dpdk_stop(dpdk); /* before the merger folds the cores' tables */
	if (rc == 0)
		dts_info("main", "HTTP, alerts and receivers stopped in %.2f s; closing the open minutes",
			 mono_s() - t_stop);
out_stop_merger:
	t = mono_s();
	dts_storage_stopping(mt.st); /* the minutes the merger closes now are the last: no memtable flush after them */
	atomic_store(&mt.stop, true);
	pthread_join(mt.thread, NULL); /* its destroy closed the open minutes into the sink */
	dts_info("main", "engine stopped in %.2f s (open minutes handed to the store)", mono_s() - t);
	dts_graphite_stop(mt.graphite); /* sends what is queued, for a few seconds at most */
	dts_users_close(users); /* no reader left: HTTP, receivers and cores are stopped */
	t = mono_s();
	dts_storage_sink_stop(sink); /* writes what is queued */
	dts_info("main", "store queue written in %.2f s", mono_s() - t);
	t = mono_s();
	dts_storage_close(mt.st);
	dts_info("main", "store closed in %.2f s; stopped%s", mono_s() - t, rc == 0 ? "" : " (after an error)");
	if (rc == 0)
		dts_info("main", "shutdown took %.2f s", mono_s() - t_stop);
	return rc;
}
