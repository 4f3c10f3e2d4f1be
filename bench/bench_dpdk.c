/*
 * bench_dpdk.c - receive throughput of the DPDK path: pcap replay -> rte_eth_rx_burst -> dts_pkt_parse ->
 * dts_core_ingest, one lcore per queue, with the merger folding on its own thread as in the daemon.
 *
 * What is measured. The capture is generated first (statsd datagrams to 192.0.2.1:8125 with valid IPv4 and UDP
 * checksums, so the parser verifies both in software as it would for a NIC without checksum offload), then replayed
 * forever by net_pcap (infinite_rx=1: the driver copies each packet into a fresh mbuf from our pool, about what a NIC
 * costs in memory traffic). Each queue replays its own copy of the capture. After a warm-up of one second, counters
 * are sampled over --seconds: frames per lcore from the queue counters, lines per lcore from the engine cores.
 *   --mode single: one line per datagram (the firehose of statsd clients that do not batch)
 *   --mode packed: lines joined into datagrams of up to 1400 bytes (a batching client, or DogStatsD)
 * Names are 'proc<k%50>.<type>_<k>' with k drawn uniformly from [0, --names) by a fixed-seed PRNG; the type of a name
 * is a fixed function of k and --mix, as in bench_engine.
 *
 * What is not measured: a NIC (the replay costs a memcpy per packet, which a NIC's DMA does not), RSS, the kernel.
 *
 * Without --lcores and --mode, the binary runs the matrix {single, packed} x {1, 2 lcores}, each in a child process
 * (EAL can be initialised once per process), and prints the children's SUMMARY lines. Each run prints exactly one:
 *   SUMMARY bench=dpdk mode=... lcores=N names=K mix=... lines_per_datagram=... seconds=... packets=... lines=...
 *           pkts_per_sec=... pkts_per_sec_per_lcore=... lines_per_sec=... lines_per_sec_per_lcore=...
 *           q_pkts_per_sec=a/b imissed=... rx_nombuf=... not_for_us=... bad=... rejected=... dropped=...
 * Exit status 1 when a generated line was rejected or a frame was not ingested (generator or parser bug), 2 for bad
 * arguments, 3 when DPDK could not start.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dts/dpdk_rx.h"
#include "dts/engine.h"

#define PACK_BYTES 1400 /* packed datagrams: lines joined up to this size, as in bench_engine */
#define MERGE_PERIOD_MS 20 /* dattssd's merger period */
#define WARMUP_MS 1000
#define HUGEPAGES_NEEDED 256 /* 512 MB of 2 MB pages: two pools of 16383 mbufs and the engine's tables fit */

static const char *const type_key[DTS_NTYPES] = { "c", "ms", "g", "s" };

struct opts {
	unsigned lcores; /* 0 = the matrix */
	int packed; /* -1 = the matrix */
	double seconds;
	uint64_t names;
	unsigned mix[DTS_NTYPES];
	unsigned packets; /* distinct frames in the capture */
	const char *mem; /* EAL memory arguments; NULL = hugepages when free, else --no-huge */
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static enum dts_type name_type(const struct opts *o, uint64_t k)
{
	unsigned total = 0, r;

	for (int t = 0; t < DTS_NTYPES; t++)
		total += o->mix[t];
	r = (unsigned)((k * 2654435761u) % total);
	for (int t = 0; t < DTS_NTYPES; t++) {
		if (r < o->mix[t])
			return (enum dts_type)t;
		r -= o->mix[t];
	}
	return DTS_COUNTER;
}

static size_t gen_line(const struct opts *o, char *out)
{
	uint64_t k = rng() % o->names;
	enum dts_type t = name_type(o, k);

	switch (t) {
	case DTS_TIMER:
		return (size_t)sprintf(out, "proc%u.timer_%" PRIu64 ":%u|ms", (unsigned)(k % 50), k,
				       (unsigned)(rng() % 500 + 1));
	case DTS_GAUGE:
		return (size_t)sprintf(out, "proc%u.gauge_%" PRIu64 ":%u|g", (unsigned)(k % 50), k,
				       (unsigned)(rng() % 10000));
	case DTS_SET:
		return (size_t)sprintf(out, "proc%u.set_%" PRIu64 ":user%u|s", (unsigned)(k % 50), k,
				       (unsigned)(rng() % 10000));
	default:
		return (size_t)sprintf(out, "proc%u.counter_%" PRIu64 ":%u|c", (unsigned)(k % 50), k,
				       (unsigned)(rng() % 10 + 1));
	}
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Write the capture: --packets frames; returns the lines it holds, or 0 on error. */
static uint64_t write_pcap(const struct opts *o, const char *path, bool packed, double *lines_per_dgram)
{
	static const uint8_t mac_us[6] = { 2, 0, 0, 0, 0, 1 }, mac_peer[6] = { 2, 0, 0, 0, 0, 2 };
	static const uint8_t ip_peer[4] = { 192, 0, 2, 2 }, ip_us[4] = { 192, 0, 2, 1 };
	uint32_t gh[6] = { 0xa1b2c3d4u, 2 | (4u << 16), 0, 0, 65535, 1 };
	uint8_t frame[1600];
	char line[160];
	uint64_t lines = 0;
	FILE *f = fopen(path, "wb");

	if (!f)
		return 0;
	fwrite(gh, sizeof(gh), 1, f);
	for (unsigned p = 0; p < o->packets; p++) {
		uint8_t *ip = frame + 14, *udp = ip + 20, *data = udp + 8, pseudo[12];
		size_t n = 0;
		uint32_t rec[4];

		do { /* one line, or lines up to PACK_BYTES */
			size_t l = gen_line(o, line);

			if (n && n + 1 + l > PACK_BYTES)
				break;
			if (n)
				data[n++] = '\n';
			memcpy(data + n, line, l);
			n += l;
			lines++;
		} while (packed);
		memcpy(frame, mac_us, 6);
		memcpy(frame + 6, mac_peer, 6);
		put16(frame + 12, 0x0800);
		memset(ip, 0, 20);
		ip[0] = 0x45;
		put16(ip + 2, (unsigned)(28 + n));
		put16(ip + 4, p & 0xffff);
		ip[8] = 64;
		ip[9] = 17;
		memcpy(ip + 12, ip_peer, 4);
		memcpy(ip + 16, ip_us, 4);
		{
			uint16_t c = dts_pkt_csum_final(dts_pkt_csum_add(0, ip, 20));

			memcpy(ip + 10, &c, 2);
		}
		put16(udp, 40000 + (p % 1000));
		put16(udp + 2, 8125);
		put16(udp + 4, (unsigned)(8 + n));
		put16(udp + 6, 0);
		memcpy(pseudo, ip + 12, 8);
		pseudo[8] = 0;
		pseudo[9] = 17;
		put16(pseudo + 10, (unsigned)(8 + n));
		{
			uint16_t c = dts_pkt_csum_final(dts_pkt_csum_add(dts_pkt_csum_add(0, pseudo, 12), udp, 8 + n));

			if (c == 0)
				c = 0xffff;
			memcpy(udp + 6, &c, 2);
		}
		rec[0] = 1700000000u;
		rec[1] = p;
		rec[2] = rec[3] = (uint32_t)(42 + n);
		fwrite(rec, sizeof(rec), 1, f);
		fwrite(frame, 42 + n, 1, f);
	}
	if (fclose(f) != 0)
		return 0;
	*lines_per_dgram = (double)lines / o->packets;
	return lines;
}

struct merger_thread {
	struct dts_merger *m;
	_Atomic bool stop;
	pthread_t thread;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *merger_main(void *arg)
{
	struct merger_thread *mt = arg;
	struct timespec period = { 0, MERGE_PERIOD_MS * 1000000L };

	dts_rcu_register_thread();
	while (!atomic_load(&mt->stop)) {
		dts_merger_step(mt->m, now_ms());
		nanosleep(&period, NULL);
	}
	dts_merger_destroy(mt->m, now_ms());
	dts_rcu_unregister_thread();
	return NULL;
}

struct sample {
	struct dts_dpdk_stats d;
	struct dts_core_stats c[DTS_DPDK_MAX_QUEUES];
	double t;
};

static void take(struct dts_dpdk *d, struct dts_merger *m, unsigned n, struct sample *s)
{
	dts_dpdk_stats_read(d, &s->d);
	for (unsigned i = 0; i < n; i++)
		dts_core_stats_read(dts_merger_core(m, i), &s->c[i]);
	s->t = mono_s();
}

/* The first two CPUs this process may run on (one twice when there is only one). */
static void two_cpus(unsigned cpu[2])
{
	cpu_set_t set;
	unsigned k = 0;

	cpu[0] = cpu[1] = 0;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return;
	for (unsigned c = 0; c < CPU_SETSIZE && k < 2; c++)
		if (CPU_ISSET(c, &set))
			cpu[k++] = c;
	if (k == 1)
		cpu[1] = cpu[0];
}

static const char *auto_mem(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
	unsigned long free_pages = 0;

	if (f) {
		if (fscanf(f, "%lu", &free_pages) != 1)
			free_pages = 0;
		fclose(f);
	}
	return free_pages >= HUGEPAGES_NEEDED ? "--in-memory" : "--no-huge -m 1024 --no-shconf";
}

static int run_one(const struct opts *o)
{
	char pcap[64], eal_line[1024], eal_buf[1024], err[512], mixs[64] = "", lcores[32];
	const char *eal_argv[DTS_DPDK_MAX_EAL_ARGS];
	struct dts_dpdk_cfg cfg;
	struct dts_merger_cfg mc;
	struct merger_thread mt = { 0 };
	struct dts_dpdk *d;
	struct sample *a, *b;
	unsigned cpu[2], n = o->lcores;
	double lpd = 0, secs;
	uint64_t pkts = 0, lines = 0, rejected = 0, dropped = 0, bad;
	char qrates[128] = "";
	int argc, rc = 0;
	size_t ml = 0;

	for (int t = 0; t < DTS_NTYPES; t++)
		if (o->mix[t])
			ml += (size_t)snprintf(mixs + ml, sizeof(mixs) - ml, "%s%s=%u", ml ? "," : "", type_key[t], o->mix[t]);
	snprintf(pcap, sizeof(pcap), "/tmp/bench_dpdk.%d.pcap", (int)getpid());
	if (!write_pcap(o, pcap, o->packed, &lpd)) {
		fprintf(stderr, "bench_dpdk: cannot write %s: %s\n", pcap, strerror(errno));
		return 1;
	}
	two_cpus(cpu);
	if (n > 1)
		snprintf(lcores, sizeof(lcores), "0@%u,1@%u", cpu[0], cpu[1]);
	else
		snprintf(lcores, sizeof(lcores), "0@%u", cpu[0]);
	snprintf(eal_line, sizeof(eal_line),
		 "--no-pci %s --file-prefix=bdpdk%d --no-telemetry --vdev=net_pcap0,rx_pcap=%s%s%s,infinite_rx=1 --lcores=%s",
		 o->mem ? o->mem : auto_mem(), (int)getpid(), pcap, n > 1 ? ",rx_pcap=" : "", n > 1 ? pcap : "", lcores);
	argc = dts_dpdk_eal_split(eal_line, eal_buf, sizeof(eal_buf), eal_argv, DTS_DPDK_MAX_EAL_ARGS);
	dts_dpdk_cfg_defaults(&cfg);
	cfg.eal_argv = eal_argv;
	cfg.eal_argc = (unsigned)argc;
	cfg.queues = n;
	cfg.mbufs_per_queue = 16383; /* the replay ring holds --packets mbufs of the pool for good */
	dts_dpdk_cfg_set(&cfg, "ipv4", "192.0.2.1", err, sizeof(err));
	dts_dpdk_cfg_set(&cfg, "mac", "02:00:00:00:00:01", err, sizeof(err));

	dts_merger_cfg_defaults(&mc);
	mc.cores = n;
	mt.m = dts_merger_create(&mc);
	if (!mt.m) {
		fprintf(stderr, "bench_dpdk: dts_merger_create: %s\n", strerror(errno));
		unlink(pcap);
		return 1;
	}
	d = dts_dpdk_start(&cfg, mt.m, 0, err, sizeof(err));
	unlink(pcap); /* the driver has read it */
	if (!d) {
		fprintf(stderr, "bench_dpdk: %s\n", err);
		dts_rcu_register_thread();
		dts_merger_destroy(mt.m, now_ms());
		dts_rcu_unregister_thread();
		return 3;
	}
	pthread_create(&mt.thread, NULL, merger_main, &mt);
	a = calloc(1, sizeof(*a));
	b = calloc(1, sizeof(*b));
	usleep(WARMUP_MS * 1000);
	take(d, mt.m, n, a);
	usleep((useconds_t)(o->seconds * 1e6));
	take(d, mt.m, n, b);
	secs = b->t - a->t;

	for (unsigned i = 0; i < n; i++) {
		uint64_t qp = b->d.queue[i].rx_packets - a->d.queue[i].rx_packets;
		size_t l = strlen(qrates);

		pkts += qp;
		lines += b->c[i].lines - a->c[i].lines;
		for (int r = 0; r < DTS_REJ_COUNT; r++)
			rejected += b->c[i].rejected[r];
		for (int r = 0; r < DTS_DROP_COUNT; r++)
			dropped += b->c[i].dropped[r];
		snprintf(qrates + l, sizeof(qrates) - l, "%s%.0f", i ? "/" : "", qp / secs);
	}
	bad = b->d.total.not_for_us + b->d.total.bad_checksum + b->d.total.truncated + b->d.total.bad_header;
	printf("SUMMARY bench=dpdk mode=%s lcores=%u names=%" PRIu64 " mix=%s lines_per_datagram=%.1f seconds=%.2f "
	       "packets=%" PRIu64 " lines=%" PRIu64 " pkts_per_sec=%.0f pkts_per_sec_per_lcore=%.0f lines_per_sec=%.0f "
	       "lines_per_sec_per_lcore=%.0f q_pkts_per_sec=%s imissed=%" PRIu64 " rx_nombuf=%" PRIu64
	       " not_for_us=%" PRIu64 " bad=%" PRIu64 " rejected=%" PRIu64 " dropped=%" PRIu64 "\n",
	       o->packed ? "packed" : "single", n, o->names, mixs, lpd, secs, pkts, lines, pkts / secs, pkts / secs / n,
	       lines / secs, lines / secs / n, qrates, b->d.port.imissed, b->d.port.rx_nombuf, b->d.total.not_for_us,
	       bad - b->d.total.not_for_us, rejected, dropped);
	fflush(stdout);
	if (rejected || bad)
		rc = 1;

	dts_dpdk_stop(d);
	atomic_store(&mt.stop, true);
	pthread_join(mt.thread, NULL);
	free(a);
	free(b);
	return rc;
}

/* Run the matrix: this binary again, once per configuration (EAL starts once per process). */
static int run_matrix(int argc, char **argv)
{
	static const char *const modes[] = { "single", "packed" };
	static const char *const lcores[] = { "1", "2" };
	int worst = 0;

	for (int m = 0; m < 2; m++)
		for (int l = 0; l < 2; l++) {
			char *args[64];
			int k = 0, status;
			pid_t pid;

			args[k++] = argv[0];
			for (int i = 1; i < argc && k < 58; i++)
				args[k++] = argv[i];
			args[k++] = (char *)"--mode";
			args[k++] = (char *)modes[m];
			args[k++] = (char *)"--lcores";
			args[k++] = (char *)lcores[l];
			args[k] = NULL;
			fflush(stdout);
			pid = fork();
			if (pid == 0) {
				execv("/proc/self/exe", args);
				_exit(127);
			}
			if (pid < 0 || waitpid(pid, &status, 0) < 0) {
				fprintf(stderr, "bench_dpdk: cannot run a child: %s\n", strerror(errno));
				return 3;
			}
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				fprintf(stderr, "bench_dpdk: --mode %s --lcores %s failed (status %d)\n", modes[m], lcores[l],
					status);
				worst = WIFEXITED(status) ? WEXITSTATUS(status) : 3;
			}
		}
	return worst;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_dpdk [--mode single|packed] [--lcores 1|2] [--seconds S] [--names K] [--mix c=70,ms=20,g=10]\n"
		"                  [--packets N] [--mem 'EAL memory args']\n"
		"Replays a generated capture of statsd datagrams through net_pcap (infinite_rx) into the DPDK receive path and\n"
		"the engine; prints one SUMMARY line per run. Without --mode and --lcores: runs single/packed x 1/2 lcores.\n"
		"  --seconds S   measured time after a 1 s warm-up (default 3)\n"
		"  --names K     distinct metric names (default 10000)\n"
		"  --packets N   distinct frames in the capture, each queue replays them in a loop (default 8192)\n"
		"  --mem ARGS    EAL memory arguments (default: --in-memory with >= 256 free 2 MB hugepages,\n"
		"                else '--no-huge -m 1024 --no-shconf')\n");
}

static int parse_mix(const char *s, unsigned mix[DTS_NTYPES])
{
	char buf[128], *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	memset(mix, 0, DTS_NTYPES * sizeof(mix[0]));
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(t, '=');
		int k;

		if (!eq)
			return -1;
		*eq = '\0';
		for (k = 0; k < DTS_NTYPES && strcmp(t, type_key[k]) != 0; k++)
			;
		if (k == DTS_NTYPES)
			return -1;
		mix[k] = (unsigned)atoi(eq + 1);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "mode", required_argument, NULL, 'm' },    { "lcores", required_argument, NULL, 'l' },
		{ "seconds", required_argument, NULL, 's' }, { "names", required_argument, NULL, 'n' },
		{ "mix", required_argument, NULL, 'x' },     { "packets", required_argument, NULL, 'p' },
		{ "mem", required_argument, NULL, 'e' },     { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .lcores = 0, .packed = -1, .seconds = 3, .names = 10000, .packets = 8192 };
	int c;

	parse_mix("c=70,ms=20,g=10", o.mix);
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (strcmp(optarg, "single") && strcmp(optarg, "packed")) {
				usage(stderr);
				return 2;
			}
			o.packed = strcmp(optarg, "packed") == 0;
			break;
		case 'l':
			o.lcores = (unsigned)atoi(optarg);
			if (o.lcores < 1 || o.lcores > 2) {
				fprintf(stderr, "bench_dpdk: --lcores must be 1 or 2\n");
				return 2;
			}
			break;
		case 's':
			o.seconds = atof(optarg);
			break;
		case 'n':
			o.names = strtoull(optarg, NULL, 10);
			break;
		case 'x':
			if (parse_mix(optarg, o.mix) != 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'p':
			o.packets = (unsigned)atoi(optarg);
			break;
		case 'e':
			o.mem = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (o.seconds <= 0 || o.names == 0 || o.packets == 0 || o.packets > 12000) {
		fprintf(stderr, "bench_dpdk: need --seconds > 0, --names > 0, 1 <= --packets <= 12000\n");
		return 2;
	}
	if (o.lcores == 0 || o.packed < 0)
		return o.lcores == 0 && o.packed < 0 ? run_matrix(argc, argv) : (usage(stderr), 2);
	return run_one(&o);
}
