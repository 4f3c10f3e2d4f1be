/*
 * test_dpdk_veth.c - the two ends of the DPDK veth integration test (driven by test_dpdk_veth.sh, which makes the
 * namespaces and the veth pair and checks what this prints).
 *
 *   test_dpdk_veth serve --eal "EAL ARGS" [--queues N] [--ipv4 A] [--ipv6 A] [--udp-ports P[,P]]
 *                        [--set KEY=VALUE ...] [--run-ms MS]
 *       The receiving side: the engine (merger + N cores) fed by dts_dpdk_start on the port EAL found (--set:
 *       any dts_dpdk_cfg_set key). Prints "READY ..." once the poll loops run; on SIGTERM/SIGINT (or after MS
 *       milliseconds) prints the current state, the DPDK counters, stops
 *       DPDK, closes every minute through dts_merger_destroy and prints each series' closed-minute totals:
 *           CURRENT <process>.<counter> <type> <count> <sum>
 *           STAT <name> <value>              (queue totals, port counters)
 *           QSTAT <queue> <name> <value>
 *           SERIES <process>.<counter> <type> <sum> <count>
 *       then "DONE". Exit status 0, or 1 with a message when DPDK could not start.
 *   test_dpdk_veth send --dst ADDR [--port P] [--sockets N] [--datagrams K] [--prefix NAME]
 *       N ordinary UDP sockets (so N source ports), each sending K datagrams of three lines:
 *           NAME.hits:1|c   NAME.s<i>:<i+1>|c   NAME.lat:<k % 50 + 1>|ms
 *       Expected totals: NAME.hits = N*K, NAME.s<i> = K*(i+1), NAME.lat count = N*K.
 *   test_dpdk_veth send-big --dst ADDR [--port P] [--lines L] [--name NAME]
 *       One datagram of L lines "NAME:1|c" (13+ bytes each: 3000+ bytes for L = 250), so IP fragments it.
 *   test_dpdk_veth frag-pcap FILE
 *       A pcap of IPv4 fragments (in order, reversed, incomplete, behind a VLAN tag, bad UDP checksum) to
 *       192.0.2.1:8125 from MAC 02:00:00:00:00:02 to 02:00:00:00:00:01, for net_pcap0,rx_pcap=FILE: DPDK's
 *       reassembly (rte_ipv4_frag_reassemble_packet) sees raw fragments there, which af_packet never delivers
 *       (its fanout defragments IPv4 in the kernel). Expected results: above frag_pcap().
 *
 * Test code: not part of the product.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dts/dpdk_rx.h"
#include "dts/engine.h"

#define MAX_SERIES 4096

struct series_total {
	char name[160];
	uint8_t type;
	double sum, count;
};

/* Written by the merger thread only (sink callbacks), read by main after that thread was joined. */
static struct series_total totals[MAX_SERIES];
static size_t ntotals;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sink_closed(void *ctx, struct dts_closed_minute *cm)
{
	(void)ctx;
	for (size_t i = 0; i < cm->n; i++) {
		const struct dts_minute_rec *r = &cm->recs[i];
		char name[160];
		size_t k;

		snprintf(name, sizeof(name), "%s.%s", r->process, r->counter);
		for (k = 0; k < ntotals; k++)
			if (totals[k].type == r->type && strcmp(totals[k].name, name) == 0)
				break;
		if (k == ntotals) {
			if (ntotals == MAX_SERIES)
				continue;
			snprintf(totals[k].name, sizeof(totals[k].name), "%s", name);
			totals[k].type = r->type;
			ntotals++;
		}
		totals[k].sum += r->agg.sum;
		totals[k].count += r->agg.count;
	}
	dts_closed_minute_release(cm);
}

struct merger_thread {
	struct dts_merger *m;
	_Atomic bool stop;
	pthread_t thread;
};

static void *merger_main(void *arg)
{
	struct merger_thread *mt = arg;
	struct timespec period = { 0, 20 * 1000000L };

	dts_rcu_register_thread();
	while (!atomic_load(&mt->stop)) {
		dts_merger_step(mt->m, now_ms());
		nanosleep(&period, NULL);
	}
	dts_merger_destroy(mt->m, now_ms()); /* folds what the cores handed over and closes every minute */
	dts_rcu_unregister_thread();
	return NULL;
}

static int print_current(void *ctx, const struct dts_series_view *v)
{
	(void)ctx;
	if (v->cur)
		printf("CURRENT %s.%s %s %.17g %.17g\n", v->process, v->counter, dts_type_name(v->type), v->cur->count,
		       v->cur->sum);
	return 0;
}

static void print_stats(const struct dts_dpdk *d)
{
	struct dts_dpdk_stats s;
	static const char *const names[] = {
		"rx_packets", "rx_bytes", "udp_datagrams", "udp_bytes", "not_for_us", "bad_checksum", "truncated",
		"bad_header", "arp_replies", "icmp_replies", "nd_replies", "icmp6_replies", "tx_dropped",
		"ipv4_fragments", "reassembled", "frag_dropped", "ipv6_fragments", "loops", "hw_packets", "hw_errors",
	};
	_Static_assert(sizeof(names) / sizeof(names[0]) == sizeof(struct dts_dpdk_queue_stats) / sizeof(uint64_t),
		       "one name per queue counter");

	if (dts_dpdk_stats_read(d, &s) != 0)
		printf("STAT port_stats_error 1\n");
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		printf("STAT %s %llu\n", names[k], (unsigned long long)((const uint64_t *)&s.total)[k]);
		for (unsigned q = 0; q < s.queues; q++)
			printf("QSTAT %u %s %llu\n", q, names[k], (unsigned long long)((const uint64_t *)&s.queue[q])[k]);
	}
	printf("STAT port_ipackets %llu\nSTAT port_imissed %llu\nSTAT port_ierrors %llu\nSTAT port_rx_nombuf %llu\n"
	       "STAT port_opackets %llu\nSTAT link_up %d\n",
	       (unsigned long long)s.port.ipackets, (unsigned long long)s.port.imissed,
	       (unsigned long long)s.port.ierrors, (unsigned long long)s.port.rx_nombuf,
	       (unsigned long long)s.port.opackets, s.link_up);
}

static int serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "eal", required_argument, NULL, 'e' },   { "queues", required_argument, NULL, 'q' },
		{ "ipv4", required_argument, NULL, '4' },  { "ipv6", required_argument, NULL, '6' },
		{ "udp-ports", required_argument, NULL, 'p' }, { "set", required_argument, NULL, 's' },
		{ "run-ms", required_argument, NULL, 'r' }, { NULL, 0, NULL, 0 },
	};
	struct dts_dpdk_cfg cfg;
	struct dts_merger_cfg mc;
	struct merger_thread mt = { 0 };
	struct dts_dpdk *d;
	const char *eal_argv[DTS_DPDK_MAX_EAL_ARGS];
	char eal_buf[2048], err[512];
	const char *eal = "";
	unsigned queues = 2, run_ms = 0;
	sigset_t sigs;
	int c, n, sig;

	dts_dpdk_cfg_defaults(&cfg);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char kv[256], *key = kv, *val;

		if (c == 'e') {
			eal = optarg;
			continue;
		}
		if (c == 'r') {
			run_ms = (unsigned)atoi(optarg);
			continue;
		}
		if (c == '?') {
			fprintf(stderr, "serve: bad option\n");
			return 2;
		}
		snprintf(kv, sizeof(kv), "%s=%s", c == '4' ? "ipv4" : c == '6' ? "ipv6" : c == 'p' ? "udp_ports" :
			 c == 'q' ? "queues" : "", optarg);
		if (c == 's')
			snprintf(kv, sizeof(kv), "%s", optarg);
		val = strchr(kv, '=');
		if (!val) {
			fprintf(stderr, "serve: --set needs key=value\n");
			return 2;
		}
		*val++ = '\0';
		if (dts_dpdk_cfg_set(&cfg, key, val, err, sizeof(err)) != 0) {
			fprintf(stderr, "serve: %s\n", err);
			return 2;
		}
	}
	if (cfg.queues)
		queues = cfg.queues;
	cfg.queues = queues;
	n = dts_dpdk_eal_split(eal, eal_buf, sizeof(eal_buf), eal_argv, DTS_DPDK_MAX_EAL_ARGS);
	if (n < 0) {
		fprintf(stderr, "serve: --eal: too many arguments\n");
		return 2;
	}
	cfg.eal_argv = eal_argv;
	cfg.eal_argc = (unsigned)n;

	dts_merger_cfg_defaults(&mc);
	mc.cores = queues;
	mc.tick_ms = 100;
	mc.table_capacity = 1u << 12;
	mc.sink.minute_closed = sink_closed;

	/* SIGTERM/SIGINT are taken by sigwait below: block them before any thread (EAL's included) exists. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	mt.m = dts_merger_create(&mc);
	if (!mt.m) {
		fprintf(stderr, "serve: dts_merger_create: %s\n", strerror(errno));
		return 1;
	}
	d = dts_dpdk_start(&cfg, mt.m, 0, err, sizeof(err));
	if (!d) {
		fprintf(stderr, "serve: dts_dpdk_start: %s (%s)\n", err, strerror(errno));
		dts_rcu_register_thread();
		dts_merger_destroy(mt.m, now_ms());
		dts_rcu_unregister_thread();
		return 1;
	}
	if (pthread_create(&mt.thread, NULL, merger_main, &mt) != 0) {
		fprintf(stderr, "serve: cannot start the merger thread\n");
		dts_dpdk_stop(d);
		return 1;
	}
	{
		uint8_t mac[6];

		dts_dpdk_mac(d, mac);
		printf("READY mac=%02x:%02x:%02x:%02x:%02x:%02x queues=%u\n", mac[0], mac[1], mac[2], mac[3], mac[4],
		       mac[5], queues);
		fflush(stdout);
	}
	if (run_ms) {
		struct timespec ts = { run_ms / 1000, (long)(run_ms % 1000) * 1000000L };

		sigtimedwait(&sigs, NULL, &ts);
	} else {
		sigwait(&sigs, &sig);
	}

	/* Let the cores hand over what they hold (tick 100 ms) and the merger publish it, then read. */
	usleep(300 * 1000);
	dts_rcu_register_thread();
	dts_merger_read_current(mt.m, NULL, print_current, NULL);
	dts_rcu_unregister_thread();
	print_stats(d);
	dts_dpdk_stop(d);
	atomic_store(&mt.stop, true);
	pthread_join(mt.thread, NULL);
	for (size_t k = 0; k < ntotals; k++)
		printf("SERIES %s %s %.17g %.17g\n", totals[k].name, dts_type_name(totals[k].type), totals[k].sum,
		       totals[k].count);
	printf("DONE\n");
	fflush(stdout);
	return 0;
}

static int resolve(const char *dst, unsigned port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, dst, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, dst, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
		return 0;
	}
	return -1;
}

static int send_main(int argc, char **argv, bool big)
{
	static const struct option opts[] = {
		{ "dst", required_argument, NULL, 'd' },      { "port", required_argument, NULL, 'p' },
		{ "sockets", required_argument, NULL, 's' },  { "datagrams", required_argument, NULL, 'k' },
		{ "prefix", required_argument, NULL, 'x' },   { "lines", required_argument, NULL, 'l' },
		{ "name", required_argument, NULL, 'n' },     { NULL, 0, NULL, 0 },
	};
	const char *dst = NULL, *prefix = "veth", *name = "big.frag";
	unsigned port = 8125, sockets = 16, datagrams = 100, lines = 250;
	struct sockaddr_storage ss;
	socklen_t slen;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dst = optarg; break;
		case 'p': port = (unsigned)atoi(optarg); break;
		case 's': sockets = (unsigned)atoi(optarg); break;
		case 'k': datagrams = (unsigned)atoi(optarg); break;
		case 'x': prefix = optarg; break;
		case 'l': lines = (unsigned)atoi(optarg); break;
		case 'n': name = optarg; break;
		default: return 2;
		}
	}
	if (!dst || resolve(dst, port, &ss, &slen) != 0 || sockets == 0 || sockets > 256) {
		fprintf(stderr, "send: need --dst IPv4/IPv6 address (and 1..256 sockets)\n");
		return 2;
	}
	if (big) {
		char *buf = malloc((size_t)lines * (strlen(name) + 8) + 1);
		size_t len = 0;
		int fd = socket(ss.ss_family, SOCK_DGRAM, 0);

		for (unsigned i = 0; buf && i < lines; i++)
			len += (size_t)sprintf(buf + len, "%s:1|c\n", name);
		if (!buf || fd < 0 || sendto(fd, buf, len, 0, (struct sockaddr *)&ss, slen) != (ssize_t)len) {
			fprintf(stderr, "send-big: %s\n", strerror(errno));
			return 1;
		}
		printf("sent 1 datagram of %zu bytes (%u lines)\n", len, lines);
		close(fd);
		free(buf);
		return 0;
	}

	int fds[256];
	char buf[512];

	for (unsigned i = 0; i < sockets; i++) {
		fds[i] = socket(ss.ss_family, SOCK_DGRAM, 0);
		if (fds[i] < 0) {
			fprintf(stderr, "send: socket: %s\n", strerror(errno));
			return 1;
		}
	}
	for (unsigned k = 0; k < datagrams; k++) {
		for (unsigned i = 0; i < sockets; i++) {
			int len = snprintf(buf, sizeof(buf), "%s.hits:1|c\n%s.s%u:%u|c\n%s.lat:%u|ms", prefix, prefix, i,
					   i + 1, prefix, k % 50 + 1);

			if (sendto(fds[i], buf, (size_t)len, 0, (struct sockaddr *)&ss, slen) != len) {
				fprintf(stderr, "send: sendto: %s\n", strerror(errno));
				return 1;
			}
		}
		if (k % 10 == 9)
			usleep(2000); /* pace: a veth and an af_packet ring are lossless only while they are not full */
	}
	for (unsigned i = 0; i < sockets; i++)
		close(fds[i]);
	printf("sent %u datagrams from %u sockets\n", sockets * datagrams, sockets);
	return 0;
}

/* ---- frag-pcap: a capture of fragmented statsd datagrams for the reassembly phase (replayed by net_pcap) ---- */

#define FP_OUR_MAC "\x02\x00\x00\x00\x00\x01"
#define FP_PEER_MAC "\x02\x00\x00\x00\x00\x02"

static uint32_t fp_sum(uint32_t s, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s;
}

static void fp_put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void fp_record(FILE *f, const uint8_t *frame, size_t len)
{
	uint32_t h[4] = { 1700000000u, 0, (uint32_t)len, (uint32_t)len };

	fwrite(h, sizeof(h), 1, f);
	fwrite(frame, len, 1, f);
}

/*
 * Write the IPv4 fragments of one UDP datagram (lines x "NAME:1|c\n" to 192.0.2.1:8125) in the given order of
 * fragment indexes (-1 ends the list); vlan adds an 802.1Q tag; bad_csum corrupts the UDP checksum.
 */
static void fp_datagram(FILE *f, const char *name, unsigned lines, unsigned ip_id, const int *order, bool vlan,
			bool bad_csum)
{
	static uint8_t dgram[65536], frame[2048];
	size_t n = 8, frag_payload = 1480, l2 = vlan ? 18 : 14;
	uint8_t pseudo[12] = { 192, 0, 2, 2, 192, 0, 2, 1, 0, 17, 0, 0 };
	unsigned nfrags;

	for (unsigned i = 0; i < lines; i++)
		n += (size_t)sprintf((char *)dgram + n, "%s:1|c\n", name);
	fp_put16(dgram, 40001);
	fp_put16(dgram + 2, 8125);
	fp_put16(dgram + 4, (unsigned)n);
	fp_put16(dgram + 6, 0);
	fp_put16(pseudo + 10, (unsigned)n);
	fp_put16(dgram + 6, ~fp_sum(fp_sum(0, pseudo, 12), dgram, n) & 0xffff);
	if (bad_csum)
		dgram[6] ^= 0x40;
	nfrags = (unsigned)((n + frag_payload - 1) / frag_payload);
	for (const int *o = order; *o >= 0; o++) {
		size_t off = (size_t)*o * frag_payload, len = n - off < frag_payload ? n - off : frag_payload;
		uint8_t *ip = frame + l2;

		if ((unsigned)*o >= nfrags)
			continue;
		memcpy(frame, FP_OUR_MAC, 6);
		memcpy(frame + 6, FP_PEER_MAC, 6);
		if (vlan) {
			fp_put16(frame + 12, 0x8100);
			fp_put16(frame + 14, 42);
		}
		fp_put16(frame + l2 - 2, 0x0800);
		memset(ip, 0, 20);
		ip[0] = 0x45;
		fp_put16(ip + 2, (unsigned)(20 + len));
		fp_put16(ip + 4, ip_id);
		fp_put16(ip + 6, (unsigned)((off / 8) | ((unsigned)*o + 1 < nfrags ? 0x2000 : 0)));
		ip[8] = 64;
		ip[9] = 17;
		memcpy(ip + 12, pseudo, 8);
		fp_put16(ip + 10, ~fp_sum(0, ip, 20) & 0xffff);
		memcpy(ip + 20, dgram + off, len);
		fp_record(f, frame, l2 + 20 + len);
	}
}

/*
 * The capture, and what the reassembly phase of test_dpdk_veth.sh expects from it:
 *   fragA.x  300 lines (3608 bytes), 3 fragments in order      -> SERIES fragA.x c 300
 *   fragB.x  300 lines, 3 fragments last first                  -> SERIES fragB.x c 300
 *   fragC.x  300 lines, middle fragment missing                 -> no series; its 2 fragments expire (frag_dropped)
 *   fragD.x  150 lines (1808 bytes), 2 fragments behind a VLAN tag -> SERIES fragD.x c 150
 *   fragE.x  300 lines, 3 fragments, UDP checksum wrong         -> no series; bad_checksum 1
 * ipv4_fragments = 13, reassembled = 4, frag_dropped = 2 (once frag_ttl_ms has passed), udp_datagrams = 3.
 */
static int frag_pcap(int argc, char **argv)
{
	static const int in_order[] = { 0, 1, 2, -1 }, reversed[] = { 2, 1, 0, -1 }, gap[] = { 0, 2, -1 };
	uint32_t gh[6] = { 0xa1b2c3d4u, 2 | (4u << 16), 0, 0, 65535, 1 }; /* magic, v2.4, tz, sigfigs, snaplen, EN10MB */
	FILE *f;

	if (argc < 2) {
		fprintf(stderr, "usage: frag-pcap FILE\n");
		return 2;
	}
	f = fopen(argv[1], "wb");
	if (!f) {
		fprintf(stderr, "frag-pcap: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	fwrite(gh, sizeof(gh), 1, f);
	fp_datagram(f, "fragA.x", 300, 101, in_order, false, false);
	fp_datagram(f, "fragB.x", 300, 102, reversed, false, false);
	fp_datagram(f, "fragC.x", 300, 103, gap, false, false);
	fp_datagram(f, "fragD.x", 150, 104, in_order, true, false);
	fp_datagram(f, "fragE.x", 300, 105, in_order, false, true);
	if (fclose(f) != 0) {
		fprintf(stderr, "frag-pcap: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "serve") == 0)
		return serve(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "send") == 0)
		return send_main(argc - 1, argv + 1, false);
	if (argc >= 2 && strcmp(argv[1], "send-big") == 0)
		return send_main(argc - 1, argv + 1, true);
	if (argc >= 2 && strcmp(argv[1], "frag-pcap") == 0)
		return frag_pcap(argc - 1, argv + 1);
	fprintf(stderr, "usage: %s serve|send|send-big [options] (see the header of test_dpdk_veth.c)\n", argv[0]);
	return 2;
}
