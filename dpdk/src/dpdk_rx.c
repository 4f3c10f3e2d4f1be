/*
 * dpdk_rx.c - EAL and port setup, the per-lcore poll loop, teardown, counters (dpdk_rx.h).
 *
 * Why it is shaped this way:
 * - One receive queue per lcore, one mempool per queue, one fragment table per queue, one transmit queue per lcore
 *   for replies: an lcore shares nothing writable with any other thread except its engine core's hand-over rings
 *   (engine.h) and its published counters. No locks, no atomic read-modify-write, no allocation on the hot path.
 * - The loop handles exactly the packets rte_eth_rx_burst returned, prefetching the next packet's data while the
 *   current one is parsed, and does one burst of work per iteration: one rx burst, at most one tx burst, freeing the
 *   reassembly death row, and dts_core_tick. Every DTS_DPDK_FRAG_SWEEP_MS it also expires stale fragments, bounded by
 *   the death row's capacity. So the hand-over tick is never late by more than one burst.
 * - The UDP payloads of a burst are queued and given to the engine in one dts_core_ingest_burst call once the burst is
 *   parsed (before its mbufs are freed), so the engine's decode batch spans the burst's datagrams: one-line datagrams
 *   overlap their table misses as packed ones do. A payload copied into the queue's scratch buffer (a scattered frame,
 *   a reassembled datagram) is ingested at once with those queued before it, as the next one would overwrite it.
 * - The parser (parse.c) works on a plain buffer; this file maps mbufs to buffers and verdicts to actions. A frame
 *   in several segments (or a reassembled datagram) is copied into the queue's scratch buffer first and is never
 *   answered (DTS_PKT_NO_REPLY): replies are built in place in single-segment mbufs only.
 * - Counters are counted in a private copy and published with relaxed stores once per burst, so a reader on another
 *   CPU never pulls the lcore's hot cache line away per packet.
 * - IPv4 fragments: RSS and af_packet's fanout hash fragments by addresses only, so every fragment of a datagram
 *   reaches the same queue and its table (docs/dpdk.md: NICs whose RSS hashes UDP ports of first fragments break
 *   this; the fallback is one queue for fragments). Reassembled datagrams go back through the parser with the IPv4
 *   header checksum trusted (rte_ipv4_frag_reassemble_packet rewrites the header and zeroes the checksum; each
 *   fragment's header was verified) and the UDP checksum verified over the whole datagram.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ip_frag.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>

#include "dts/dpdk_rx.h"

/* Largest frame handled as one buffer: a reassembled IPv4 datagram (65535) behind two VLAN tags, with room. */
#define SCRATCH_SIZE (65536 + 64)
/* Bucket depth of the fragment hash table, as in DPDK's ip_reassembly example (a power of two). The table gets twice
 * as many entries as frag_flows (frag_flows / 8 buckets): collisions then rarely refuse a flow before the table is
 * full, at about 1 KiB per flow (256 KiB per queue by default). */
#define FRAG_BUCKET_ENTRIES 16
/* Name of our program in EAL's argv[0] (EAL prints it in its usage text). */
#define EAL_PROGRAM "dattssd"

#define STAT_PUB(dst, src) __atomic_store_n(&(dst), (src), __ATOMIC_RELAXED)

/* EAL's life in this process: it can be initialised once, and never again after rte_eal_cleanup. */
enum eal_state { EAL_NEVER = 0, EAL_UP, EAL_DONE };
static enum eal_state eal_state;

/* One receive queue and the lcore that polls it. Written only by that lcore while it runs, except `pub` (read by
 * dts_dpdk_stats_read with relaxed loads) and the setup fields (written before launch, read-only after). */
struct rxq {
	/* setup, read-only while running */
	struct dts_dpdk *d;
	struct dts_core *core;
	struct rte_mempool *pool;
	struct rte_ip_frag_tbl *frag_tbl;
	uint8_t *scratch; /* SCRATCH_SIZE bytes */
	uint16_t port;
	uint16_t qid;
	bool has_txq;
	unsigned lcore; /* EAL lcore polling it; the main lcore means our own registered thread */
	bool on_main; /* runs on `thread` (pinned to the main lcore's CPUs), not on an EAL worker */
	bool launched;
	pthread_t thread;
	uint64_t sweep_cycles; /* TSC cycles between fragment table sweeps */
	struct dts_pkt_cfg pcfg;
	/* lcore-private */
	uint64_t next_sweep;
	unsigned ntx;
	struct rte_mbuf *tx[DTS_DPDK_BURST];
	unsigned ndg;
	struct dts_dgram dg[DTS_DPDK_BURST]; /* UDP payloads of the burst being parsed, for dts_core_ingest_burst */
	struct rte_ip_frag_death_row dr;
	struct dts_dpdk_queue_stats w; /* working counters */
	/* published once per burst */
	struct dts_dpdk_queue_stats pub __rte_cache_aligned;
} __rte_cache_aligned;

struct dts_dpdk {
	_Atomic bool stop;
	uint16_t port;
	bool port_configured; /* close the port at teardown */
	bool port_started;
	bool lsc_registered;
	unsigned nq;
	struct rxq *q; /* nq entries, cache-line aligned */
	uint8_t mac[6];
	void (*log)(void *ctx, enum dts_dpdk_log_level level, const char *msg);
	void *log_ctx;
	char *eal_own[DTS_DPDK_MAX_EAL_ARGS + 2]; /* our copies of the arguments: EAL may keep pointers to them */
	char *eal_argv[DTS_DPDK_MAX_EAL_ARGS + 2]; /* what rte_eal_init gets: it permutes it, and overwrites the
						    * entry before the first non-EAL argument with argv[0] */
};

static void dlog(const struct dts_dpdk *d, enum dts_dpdk_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void dlog(const struct dts_dpdk *d, enum dts_dpdk_log_level lvl, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (d->log)
		d->log(d->log_ctx, lvl, msg);
	else
		fprintf(stderr, "dpdk: %s\n", msg);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Configuration */

void dts_dpdk_cfg_defaults(struct dts_dpdk_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->rx_desc = 1024;
	c->tx_desc = 256;
	c->mbuf_cache = 256;
	c->mbuf_size = RTE_MBUF_DEFAULT_BUF_SIZE;
	c->frag_flows = 256;
	c->frag_ttl_ms = 2000;
	c->udp_ports[0] = 8125;
	c->n_udp_ports = 1;
}

static int parse_uint(const char *key, const char *v, unsigned long lo, unsigned long hi, unsigned long *out,
		      char *err, size_t errlen)
{
	char *end;
	unsigned long x;

	errno = 0;
	x = strtoul(v, &end, 10);
	if (!*v || *end || errno || x < lo || x > hi || v[0] == '-') {
		snprintf(err, errlen, "%s: must be an integer between %lu and %lu, got '%s'", key, lo, hi, v);
		return -EINVAL;
	}
	*out = x;
	return 0;
}

static int parse_mac(const char *v, uint8_t mac[6])
{
	unsigned b[6];
	char tail;

	if (sscanf(v, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6 ||
	    strlen(v) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return 0;
}

int dts_dpdk_cfg_set(struct dts_dpdk_cfg *c, const char *key, const char *value, char *err, size_t errlen)
{
	static const struct {
		const char *key;
		size_t off;
		unsigned long lo, hi;
	} nums[] = {
		{ "queues", offsetof(struct dts_dpdk_cfg, queues), 0, DTS_DPDK_MAX_QUEUES },
		{ "rx_desc", offsetof(struct dts_dpdk_cfg, rx_desc), 64, 16384 },
		{ "tx_desc", offsetof(struct dts_dpdk_cfg, tx_desc), 64, 4096 },
		{ "mbufs", offsetof(struct dts_dpdk_cfg, mbufs_per_queue), 0, 1048575 },
		{ "mbuf_cache", offsetof(struct dts_dpdk_cfg, mbuf_cache), 0, 512 },
		{ "mbuf_size", offsetof(struct dts_dpdk_cfg, mbuf_size), RTE_MBUF_DEFAULT_BUF_SIZE, 65535 },
		{ "frag_flows", offsetof(struct dts_dpdk_cfg, frag_flows), 16, 65536 },
		{ "frag_ttl_ms", offsetof(struct dts_dpdk_cfg, frag_ttl_ms), 10, 30000 },
	};
	unsigned long x;
	int rc;

	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		if (strcmp(key, nums[i].key) != 0)
			continue;
		rc = parse_uint(key, value, nums[i].lo, nums[i].hi, &x, err, errlen);
		if (rc == 0 && strcmp(key, "mbufs") == 0 && x != 0 && x < 1023) {
			snprintf(err, errlen, "mbufs: must be 0 (auto) or between 1023 and 1048575, got '%s'", value);
			rc = -EINVAL;
		}
		if (rc == 0)
			*(unsigned *)((char *)c + nums[i].off) = (unsigned)x;
		return rc;
	}
	if (strcmp(key, "port") == 0) {
		rc = parse_uint(key, value, 0, RTE_MAX_ETHPORTS - 1, &x, err, errlen);
		if (rc == 0)
			c->port_id = (uint16_t)x;
		return rc;
	}
	if (strcmp(key, "udp_ports") == 0) {
		uint16_t ports[DTS_PKT_MAX_UDP_PORTS];
		unsigned n = 0;
		char tmp[128], *save = NULL;

		if (strlen(value) >= sizeof(tmp))
			goto out_ports;
		strcpy(tmp, value);
		for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			char *end;
			unsigned long p = strtoul(t, &end, 10);

			if (*end || !*t || p == 0 || p > 65535 || n == DTS_PKT_MAX_UDP_PORTS)
				goto out_ports;
			ports[n++] = (uint16_t)p;
		}
		if (n == 0)
			goto out_ports;
		memcpy(c->udp_ports, ports, n * sizeof(ports[0]));
		c->n_udp_ports = n;
		return 0;
out_ports:
		snprintf(err, errlen, "udp_ports: must be 1 to %d ports (1..65535) separated by ',', got '%s'",
			 DTS_PKT_MAX_UDP_PORTS, value);
		return -EINVAL;
	}
	if (strcmp(key, "ipv4") == 0) {
		uint8_t a[4];

		if (!*value) {
			c->has_ipv4 = false;
			return 0;
		}
		if (inet_pton(AF_INET, value, a) != 1) {
			snprintf(err, errlen, "ipv4: must be an IPv4 address (or empty for none), got '%s'", value);
			return -EINVAL;
		}
		memcpy(c->ipv4, a, 4);
		c->has_ipv4 = true;
		return 0;
	}
	if (strcmp(key, "ipv6") == 0) {
		uint8_t a[16];

		if (!*value) {
			c->has_ipv6 = false;
			return 0;
		}
		if (inet_pton(AF_INET6, value, a) != 1 || a[0] == 0xff) {
			snprintf(err, errlen, "ipv6: must be a unicast IPv6 address (or empty for none), got '%s'", value);
			return -EINVAL;
		}
		memcpy(c->ipv6, a, 16);
		c->has_ipv6 = true;
		return 0;
	}
	if (strcmp(key, "mac") == 0) {
		uint8_t m[6];

		if (!*value) {
			c->has_mac = false;
			return 0;
		}
		if (parse_mac(value, m) != 0 || (m[0] & 1)) {
			snprintf(err, errlen, "mac: must be a unicast MAC like 02:00:00:00:00:01 (or empty), got '%s'",
				 value);
			return -EINVAL;
		}
		memcpy(c->mac, m, 6);
		c->has_mac = true;
		return 0;
	}
	if (strcmp(key, "promiscuous") == 0) {
		if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0) {
			c->promiscuous = true;
			return 0;
		}
		if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "no") == 0) {
			c->promiscuous = false;
			return 0;
		}
		snprintf(err, errlen, "promiscuous: must be true or false, got '%s'", value);
		return -EINVAL;
	}
	snprintf(err, errlen, "unknown DPDK setting '%s'", key);
	return -ENOENT;
}

int dts_dpdk_eal_split(const char *line, char *buf, size_t buflen, const char **argv, unsigned max_args)
{
	unsigned n = 0;
	size_t used = 0;

	for (const char *p = line; *p;) {
		size_t wl;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (!*p)
			break;
		wl = strcspn(p, " \t\n");
		if (n == max_args || used + wl + 1 > buflen)
			return -E2BIG;
		memcpy(buf + used, p, wl);
		buf[used + wl] = '\0';
		argv[n++] = buf + used;
		used += wl + 1;
		p += wl;
	}
	return (int)n;
}

static int check_cfg(const struct dts_dpdk_cfg *c, char *err, size_t errlen)
{
	if (c->eal_argc > DTS_DPDK_MAX_EAL_ARGS || (c->eal_argc && !c->eal_argv)) {
		snprintf(err, errlen, "at most %d EAL arguments, got %u", DTS_DPDK_MAX_EAL_ARGS, c->eal_argc);
		return -EINVAL;
	}
	for (unsigned i = 0; i < c->eal_argc; i++)
		if (!c->eal_argv[i]) {
			snprintf(err, errlen, "EAL argument %u is NULL", i);
			return -EINVAL;
		}
	if (c->queues > DTS_DPDK_MAX_QUEUES || c->n_udp_ports == 0 || c->n_udp_ports > DTS_PKT_MAX_UDP_PORTS ||
	    c->rx_desc < 64 || c->rx_desc > 16384 || c->tx_desc < 64 || c->tx_desc > 4096 ||
	    (c->mbufs_per_queue && c->mbufs_per_queue < 1023) || c->mbufs_per_queue > 1048575 ||
	    c->mbuf_cache > 512 || c->mbuf_size < RTE_MBUF_DEFAULT_BUF_SIZE || c->mbuf_size > 65535 ||
	    c->frag_flows < 16 || c->frag_flows > 65536 || c->frag_ttl_ms < 10 ||
	    c->frag_ttl_ms > 30000) {
		snprintf(err, errlen, "DPDK settings out of range (queues <= %d, 1..%d udp ports, rx_desc 64..16384, "
			 "tx_desc 64..4096, mbufs 0 or 1023..1048575, mbuf_cache <= 512, mbuf_size 2176..65535, "
			 "frag_flows 16..65536, "
			 "frag_ttl_ms 10..30000)", DTS_DPDK_MAX_QUEUES, DTS_PKT_MAX_UDP_PORTS);
		return -EINVAL;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* The poll loop */

/* What the NIC established about checksums, in the parser's terms. NONE ("bad in the data, but integrity checked")
 * counts as good, as DPDK documents it. */
static inline unsigned hw_flags(uint64_t f)
{
	unsigned h = 0;

	switch (f & RTE_MBUF_F_RX_IP_CKSUM_MASK) {
	case RTE_MBUF_F_RX_IP_CKSUM_GOOD:
	case RTE_MBUF_F_RX_IP_CKSUM_NONE:
		h |= DTS_PKT_HW_IP4_GOOD;
		break;
	case RTE_MBUF_F_RX_IP_CKSUM_BAD:
		h |= DTS_PKT_HW_IP4_BAD;
		break;
	}
	switch (f & RTE_MBUF_F_RX_L4_CKSUM_MASK) {
	case RTE_MBUF_F_RX_L4_CKSUM_GOOD:
	case RTE_MBUF_F_RX_L4_CKSUM_NONE:
		h |= DTS_PKT_HW_L4_GOOD;
		break;
	case RTE_MBUF_F_RX_L4_CKSUM_BAD:
		h |= DTS_PKT_HW_L4_BAD;
		break;
	}
	return h;
}

/* Count a verdict that ends the packet's life here (the caller frees it). */
static inline void count_drop(struct rxq *q, enum dts_pkt_verdict v)
{
	switch (v) {
	case DTS_PKT_NOT_FOR_US:
		q->w.not_for_us++;
		break;
	case DTS_PKT_BAD_CSUM:
		q->w.bad_checksum++;
		break;
	case DTS_PKT_TRUNCATED:
		q->w.truncated++;
		break;
	case DTS_PKT_BAD_HDR:
		q->w.bad_header++;
		break;
	case DTS_PKT_FRAG6:
		q->w.ipv6_fragments++;
		break;
	default: /* defensive: every other verdict is handled by the caller */
		q->w.not_for_us++;
		break;
	}
}

/* Ingest the payloads queued since the last call (one decode batch across them); their mbufs are still held. */
static inline void ingest_queued(struct rxq *q, int64_t now_s)
{
	if (q->ndg) {
		dts_core_ingest_burst(q->core, q->dg, q->ndg, now_s);
		q->ndg = 0;
	}
}

/*
 * Queue a UDP payload for the burst's dts_core_ingest_burst. One in q->scratch (in_scratch) is ingested at once, with
 * those before it to keep the order: the next scattered frame or reassembled datagram would overwrite it. Every frame
 * of a burst queues at most one payload, so the queue (DTS_DPDK_BURST) cannot overflow; the check is defensive.
 */
static inline void queue_payload(struct rxq *q, const uint8_t *p, uint32_t len, bool in_scratch, int64_t now_s)
{
	if (unlikely(q->ndg == DTS_DPDK_BURST))
		ingest_queued(q, now_s);
	q->dg[q->ndg].buf = (const char *)p;
	q->dg[q->ndg++].len = len;
	if (unlikely(in_scratch))
		ingest_queued(q, now_s);
	q->w.udp_datagrams++;
	q->w.udp_bytes += len;
}

/* A datagram rte_ipv4_frag_reassemble_packet completed: copy it out of its segment chain and ingest it. */
static void ingest_reassembled(struct rxq *q, struct rte_mbuf *mo, int64_t now_s)
{
	struct dts_pkt_info info;
	enum dts_pkt_verdict v;
	const uint8_t *buf;
	uint32_t len = mo->pkt_len;

	q->w.reassembled++;
	if (len > SCRATCH_SIZE) { /* defensive: reassembly caps a datagram at 65535 bytes of IP */
		q->w.bad_header++;
		return;
	}
	buf = rte_pktmbuf_read(mo, 0, len, q->scratch);
	if (buf != q->scratch) {
		memcpy(q->scratch, buf, len);
		buf = q->scratch;
	}
	v = dts_pkt_parse(&q->pcfg, q->scratch, len, len, DTS_PKT_HW_IP4_GOOD | DTS_PKT_NO_REPLY, &info);
	if (v == DTS_PKT_UDP)
		queue_payload(q, buf + info.payload_off, info.payload_len, true, now_s);
	else
		count_drop(q, v);
}

/*
 * One received frame. Returns the mbuf the caller must free, or NULL when it was kept (queued for transmit, or held
 * by the fragment table).
 */
static inline struct rte_mbuf *handle(struct rxq *q, struct rte_mbuf *m, int64_t now_s, uint64_t tsc)
{
	uint8_t *buf = rte_pktmbuf_mtod(m, uint8_t *);
	size_t len = m->data_len, cap = len + rte_pktmbuf_tailroom(m);
	unsigned flags = hw_flags(m->ol_flags);
	struct dts_pkt_info info;
	enum dts_pkt_verdict v;

	q->w.rx_bytes += m->pkt_len;
	if (unlikely(m->nb_segs > 1)) { /* scattered frame: parse a copy, never answer it */
		const uint8_t *p;

		if (m->pkt_len > SCRATCH_SIZE) {
			q->w.bad_header++;
			return m;
		}
		len = m->pkt_len;
		p = rte_pktmbuf_read(m, 0, len, q->scratch);
		if (p != q->scratch)
			memcpy(q->scratch, p, len);
		buf = q->scratch;
		cap = len;
		flags |= DTS_PKT_NO_REPLY;
	}
	v = dts_pkt_parse(&q->pcfg, buf, len, cap, flags, &info);
	switch (v) {
	case DTS_PKT_UDP:
		queue_payload(q, buf + info.payload_off, info.payload_len, buf == q->scratch, now_s);
		return m;
	case DTS_PKT_ARP_REPLY:
	case DTS_PKT_ICMP4_REPLY:
	case DTS_PKT_ND_REPLY:
	case DTS_PKT_ICMP6_REPLY:
		if (v == DTS_PKT_ARP_REPLY)
			q->w.arp_replies++;
		else if (v == DTS_PKT_ICMP4_REPLY)
			q->w.icmp_replies++;
		else if (v == DTS_PKT_ND_REPLY)
			q->w.nd_replies++;
		else
			q->w.icmp6_replies++;
		if (!q->has_txq || q->ntx == DTS_DPDK_BURST) {
			q->w.tx_dropped++;
			return m;
		}
		m->data_len = (uint16_t)info.reply_len;
		m->pkt_len = info.reply_len;
		m->ol_flags = 0; /* no transmit offloads: the parser wrote every checksum */
		q->tx[q->ntx++] = m;
		return NULL;
	case DTS_PKT_FRAG4: {
		struct rte_mbuf *mo;

		q->w.ipv4_fragments++;
		if (unlikely(m->data_len < (uint32_t)info.l2_len + info.l3_len)) { /* header split across segments */
			q->w.frag_dropped++;
			return m;
		}
		m->l2_len = info.l2_len;
		m->l3_len = info.l3_len;
		mo = rte_ipv4_frag_reassemble_packet(q->frag_tbl, &q->dr, m, tsc,
						     rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, info.l2_len));
		if (!mo) /* held until the rest arrives, or put on the death row */
			return NULL;
		ingest_reassembled(q, mo, now_s);
		return mo;
	}
	default:
		count_drop(q, v);
		return m;
	}
}

_Static_assert(sizeof(struct dts_dpdk_queue_stats) % sizeof(uint64_t) == 0, "queue counters are all uint64_t");

static void publish(struct rxq *q)
{
	const uint64_t *src = (const uint64_t *)&q->w;
	uint64_t *dst = (uint64_t *)&q->pub;

	for (size_t i = 0; i < sizeof(q->w) / sizeof(uint64_t); i++)
		STAT_PUB(dst[i], src[i]);
}

/* Free the death row, counting what reassembly gave up on (timed out, table full, bad or duplicate fragments). */
static inline void free_death_row(struct rxq *q)
{
	if (q->dr.cnt) {
		q->w.frag_dropped += q->dr.cnt;
		rte_ip_frag_free_death_row(&q->dr, 3);
	}
}

static int rxq_loop(void *arg)
{
	struct rxq *q = arg;
	struct rte_mbuf *pkts[DTS_DPDK_BURST], *done[DTS_DPDK_BURST];

	dts_rcu_register_thread(); /* native datagrams look their key up under the RCU read side (engine.h) */
	while (!atomic_load_explicit(&q->d->stop, memory_order_relaxed)) {
		struct timespec ts;
		int64_t now_ms;
		uint16_t n;

		/* CLOCK_REALTIME_COARSE: a vDSO read of the last tick (1-4 ms resolution), cheaper than the precise
		 * clock and plenty for 1-second receive times and hand-over ticks. */
		clock_gettime(CLOCK_REALTIME_COARSE, &ts);
		now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		n = rte_eth_rx_burst(q->port, q->qid, pkts, DTS_DPDK_BURST);
		if (n) {
			uint64_t tsc = rte_rdtsc();
			unsigned ndone = 0;

			rte_prefetch0(rte_pktmbuf_mtod(pkts[0], void *));
			for (uint16_t i = 0; i < n; i++) {
				struct rte_mbuf *f;

				if (i + 1 < n)
					rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void *));
				f = handle(q, pkts[i], ts.tv_sec, tsc);
				if (f)
					done[ndone++] = f;
			}
			ingest_queued(q, ts.tv_sec); /* before the mbufs holding the payloads are freed */
			if (ndone)
				rte_pktmbuf_free_bulk(done, ndone);
			q->w.rx_packets += n;
		}
		if (q->ntx) {
			uint16_t sent = rte_eth_tx_burst(q->port, q->qid, q->tx, (uint16_t)q->ntx);

			if (sent < q->ntx) {
				rte_pktmbuf_free_bulk(q->tx + sent, q->ntx - sent);
				q->w.tx_dropped += q->ntx - sent;
			}
			q->ntx = 0;
		}
		if (unlikely(q->frag_tbl && rte_rdtsc() >= q->next_sweep)) {
			rte_ip_frag_table_del_expired_entries(q->frag_tbl, &q->dr, rte_rdtsc());
			q->next_sweep = rte_rdtsc() + q->sweep_cycles;
		}
		free_death_row(q);
		dts_core_tick(q->core, now_ms);
		q->w.loops++;
		if (n || (q->w.loops & 1023) == 0)
			publish(q);
	}
	publish(q);
	dts_rcu_unregister_thread();
	return 0;
}

/* Queue 0 when it runs on the main lcore's CPUs: a thread of ours, registered with EAL for a mempool cache. */
static void *main_lcore_thread(void *arg)
{
	struct rxq *q = arg;
	rte_cpuset_t set = rte_lcore_cpuset(rte_get_main_lcore());
	bool registered;

	pthread_setname_np(pthread_self(), "dts-dpdk-q0");
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	registered = rte_thread_register() == 0;
	if (!registered)
		dlog(q->d, DTS_DPDK_LOG_WARN, "queue 0: could not register with EAL (%s): polling without a mempool "
		     "cache", rte_strerror(rte_errno));
	rxq_loop(q);
	if (registered)
		rte_thread_unregister();
	return NULL;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Setup and teardown */

static int lsc_event(uint16_t port, enum rte_eth_event_type type, void *arg, void *ret_param)
{
	struct dts_dpdk *d = arg;
	struct rte_eth_link link;
	char s[RTE_ETH_LINK_MAX_STR_LEN];

	(void)type;
	(void)ret_param;
	if (rte_eth_link_get_nowait(port, &link) == 0 && rte_eth_link_to_str(s, sizeof(s), &link) > 0)
		dlog(d, link.link_status ? DTS_DPDK_LOG_INFO : DTS_DPDK_LOG_WARN, "port %u: %s", port, s);
	return 0;
}

static unsigned pool_size(const struct dts_dpdk_cfg *c, unsigned rxd, unsigned txd)
{
	unsigned long n = (unsigned long)rxd + txd + 2 * DTS_DPDK_BURST +
			  (unsigned long)c->frag_flows * RTE_LIBRTE_IP_FRAG_MAX_FRAG + c->mbuf_cache * 3 / 2;
	unsigned long p = 1024;

	if (c->mbufs_per_queue)
		return c->mbufs_per_queue;
	while (p - 1 < n)
		p <<= 1;
	return (unsigned)(p - 1); /* 2^k - 1: the mempool ring's optimum */
}

/* Everything but EAL itself. Safe on a partly set up d. */
static void teardown(struct dts_dpdk *d)
{
	atomic_store(&d->stop, true);
	for (unsigned i = 0; d->q && i < d->nq; i++) {
		struct rxq *q = &d->q[i];

		if (!q->launched)
			continue;
		if (q->on_main)
			pthread_join(q->thread, NULL);
		else
			rte_eal_wait_lcore(q->lcore);
		q->launched = false;
	}
	if (d->lsc_registered)
		rte_eth_dev_callback_unregister(d->port, RTE_ETH_EVENT_INTR_LSC, lsc_event, d);
	if (d->port_started)
		rte_eth_dev_stop(d->port);
	if (d->port_configured)
		rte_eth_dev_close(d->port); /* releases the queues, and the mbufs in their rings go back to the pools */
	for (unsigned i = 0; d->q && i < d->nq; i++) {
		struct rxq *q = &d->q[i];

		if (q->ntx)
			rte_pktmbuf_free_bulk(q->tx, q->ntx);
		rte_ip_frag_free_death_row(&q->dr, 0);
		if (q->frag_tbl)
			rte_ip_frag_table_destroy(q->frag_tbl); /* frees the fragments it still held */
		rte_mempool_free(q->pool);
		free(q->scratch);
	}
	free(d->q);
	d->q = NULL;
}

/*
 * rte_eal_cleanup, then remove EAL's runtime directory (/var/run/dpdk/PREFIX) when it is empty, as it is with
 * --in-memory or --no-shconf: EAL creates it at every start and never removes it. rmdir refuses a directory another
 * process still keeps files in.
 */
static void eal_cleanup(void)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", rte_eal_get_runtime_dir());
	rte_eal_cleanup();
	eal_state = EAL_DONE;
	if (dir[0])
		rmdir(dir);
}

/* Last, after rte_eal_cleanup: EAL may keep pointers into argv until then. */
static void free_dpdk(struct dts_dpdk *d)
{
	for (unsigned i = 0; i < DTS_DPDK_MAX_EAL_ARGS + 2; i++)
		free(d->eal_own[i]);
	free(d);
}

static int eal_init(struct dts_dpdk *d, const struct dts_dpdk_cfg *c, char *err, size_t errlen)
{
	char args[512] = "";
	cpu_set_t saved;
	bool have_saved;
	int argc = 0, rc, e;

	d->eal_own[argc++] = strdup(EAL_PROGRAM);
	for (unsigned i = 0; i < c->eal_argc; i++) {
		d->eal_own[argc++] = strdup(c->eal_argv[i]);
		if (strlen(args) + strlen(c->eal_argv[i]) + 2 < sizeof(args)) {
			if (i)
				strcat(args, " ");
			strcat(args, c->eal_argv[i]);
		}
	}
	for (int i = 0; i < argc; i++) {
		if (!d->eal_own[i]) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		d->eal_argv[i] = d->eal_own[i];
	}
	if (eal_state != EAL_NEVER) {
		snprintf(err, errlen, "EAL was already initialised in this process: DPDK can be started once per process");
		return -EALREADY;
	}
	/* rte_eal_init pins the calling thread to the main lcore; give it its own affinity back afterwards so the
	 * threads the daemon starts later are not all confined to that CPU. */
	have_saved = pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved) == 0;
	rc = rte_eal_init(argc, d->eal_argv);
	e = rte_errno;
	if (have_saved)
		pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
	if (rc >= 0) {
		eal_state = EAL_UP;
		return 0;
	}
	switch (e) {
	case EALREADY:
		eal_state = EAL_DONE;
		snprintf(err, errlen, "EAL was already initialised in this process: DPDK can be started once per process");
		return -EALREADY;
	case EACCES:
	case ENOMEM:
		snprintf(err, errlen, "EAL could not get its memory (%s) with '%s': reserve hugepages (echo 512 > "
			 "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages) or run without them (--no-huge -m 256)",
			 rte_strerror(e), args);
		return -e;
	case EINVAL:
		snprintf(err, errlen, "bad EAL arguments '%s': EAL printed the reason above its usage text", args);
		return -EINVAL;
	default:
		snprintf(err, errlen, "rte_eal_init failed with '%s': %s", args, rte_strerror(e));
		return e > 0 ? -e : -EIO;
	}
}

/* Configure the port: queues, RSS, checksum offloads, MAC. */
static int port_setup(struct dts_dpdk *d, const struct dts_dpdk_cfg *c, char *err, size_t errlen)
{
	struct rte_eth_conf conf = { 0 };
	struct rte_eth_dev_info di;
	struct rte_ether_addr mac;
	uint16_t port = c->port_id, rxd = (uint16_t)c->rx_desc, txd = (uint16_t)c->tx_desc;
	unsigned ntxq;
	int rc, socket;

	if (rte_eth_dev_count_avail() == 0) {
		snprintf(err, errlen, "no DPDK ports: give a --vdev (net_af_packet0,iface=IFACE; net_pcap0,rx_pcap=FILE) "
			 "or bind a NIC with dpdk-devbind.py; a --vdev that failed to probe is reported by EAL above");
		return -ENODEV;
	}
	if (!rte_eth_dev_is_valid_port(port)) {
		snprintf(err, errlen, "no DPDK port %u: EAL found %u port(s), numbered from 0 in the order of the "
			 "--vdev / PCI devices", port, rte_eth_dev_count_avail());
		return -ENODEV;
	}
	d->port = port;
	rc = rte_eth_dev_info_get(port, &di);
	if (rc != 0) {
		snprintf(err, errlen, "port %u: rte_eth_dev_info_get: %s", port, rte_strerror(-rc));
		return rc;
	}
	if (d->nq > di.max_rx_queues) {
		snprintf(err, errlen, "port %u (%s) has at most %u receive queues, %u lcores asked for one each (for "
			 "net_af_packet give qpairs=%u)", port, di.driver_name, di.max_rx_queues, d->nq, d->nq);
		return -EINVAL;
	}
	ntxq = RTE_MIN(d->nq, (unsigned)di.max_tx_queues);
	if (ntxq < d->nq)
		dlog(d, DTS_DPDK_LOG_WARN, "port %u (%s) has %u transmit queues for %u lcores: lcores %u.. send no "
		     "ARP/ICMP/ND replies", port, di.driver_name, ntxq, d->nq, ntxq);
	if (d->nq > 1) {
		uint64_t want = RTE_ETH_RSS_NONFRAG_IPV4_UDP | RTE_ETH_RSS_NONFRAG_IPV6_UDP | RTE_ETH_RSS_IPV4 |
				RTE_ETH_RSS_FRAG_IPV4 | RTE_ETH_RSS_IPV6 | RTE_ETH_RSS_FRAG_IPV6;
		uint64_t have = want & di.flow_type_rss_offloads;

		if (have) {
			conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
			conf.rx_adv_conf.rss_conf.rss_hf = have;
			dlog(d, DTS_DPDK_LOG_INFO, "port %u (%s): RSS over %u queues (hash types 0x%" PRIx64 ")%s", port,
			     di.driver_name, d->nq, have,
			     (have & (RTE_ETH_RSS_NONFRAG_IPV4_UDP | RTE_ETH_RSS_NONFRAG_IPV6_UDP)) ? "" :
			     " without UDP ports: by addresses only");
		} else {
			dlog(d, DTS_DPDK_LOG_INFO, "port %u (%s) has no RSS: the driver spreads packets over the %u "
			     "queues itself (af_packet: the kernel's fanout hash)", port, di.driver_name, d->nq);
		}
	}
	conf.rxmode.offloads = di.rx_offload_capa & (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM);
	if (di.dev_flags && (*di.dev_flags & RTE_ETH_DEV_INTR_LSC))
		conf.intr_conf.lsc = 1;
	rc = rte_eth_dev_configure(port, (uint16_t)d->nq, (uint16_t)ntxq, &conf);
	if (rc != 0) {
		snprintf(err, errlen, "port %u (%s): rte_eth_dev_configure(%u rx, %u tx queues): %s", port,
			 di.driver_name, d->nq, ntxq, rte_strerror(-rc));
		return rc;
	}
	d->port_configured = true;
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
	if (rc != 0) {
		snprintf(err, errlen, "port %u: rte_eth_dev_adjust_nb_rx_tx_desc: %s", port, rte_strerror(-rc));
		return rc;
	}
	socket = rte_eth_dev_socket_id(port);
	if (socket < 0)
		socket = (int)rte_socket_id();
	for (unsigned i = 0; i < d->nq; i++) {
		struct rxq *q = &d->q[i];
		char name[RTE_MEMPOOL_NAMESIZE];
		unsigned n = pool_size(c, rxd, txd);

		snprintf(name, sizeof(name), "dts_p%u_q%u", port, i);
		q->pool = rte_pktmbuf_pool_create(name, n, c->mbuf_cache, 0, (uint16_t)c->mbuf_size, socket);
		if (!q->pool) {
			snprintf(err, errlen, "queue %u: cannot create a pool of %u mbufs (%.1f MiB): %s; lower mbufs or "
				 "give EAL more memory (-m, hugepages)", i, n,
				 n * (double)(c->mbuf_size + sizeof(struct rte_mbuf)) / 1048576.0,
				 rte_strerror(rte_errno));
			return -ENOMEM;
		}
		rc = rte_eth_rx_queue_setup(port, (uint16_t)i, rxd, (unsigned)socket, NULL, q->pool);
		if (rc != 0) {
			snprintf(err, errlen, "port %u: receive queue %u: %s (the driver says why above; net_af_packet "
				 "needs framesz <= mbuf_size - 96)", port, i, rte_strerror(-rc));
			return rc;
		}
		if (i < ntxq) {
			rc = rte_eth_tx_queue_setup(port, (uint16_t)i, txd, (unsigned)socket, NULL);
			if (rc != 0) {
				snprintf(err, errlen, "port %u: transmit queue %u: %s", port, i, rte_strerror(-rc));
				return rc;
			}
			q->has_txq = true;
		}
		q->frag_tbl = rte_ip_frag_table_create(rte_align32pow2(c->frag_flows * 2 / FRAG_BUCKET_ENTRIES),
						       FRAG_BUCKET_ENTRIES, c->frag_flows,
						       (rte_get_tsc_hz() + 999) / 1000 * c->frag_ttl_ms, socket);
		if (!q->frag_tbl) {
			snprintf(err, errlen, "queue %u: cannot create a fragment table of %u flows: %s", i,
				 c->frag_flows, rte_strerror(rte_errno));
			return -ENOMEM;
		}
	}
	if (c->has_mac) {
		memcpy(mac.addr_bytes, c->mac, 6);
		rc = rte_eth_dev_default_mac_addr_set(port, &mac);
		if (rc != 0) {
			dlog(d, DTS_DPDK_LOG_WARN, "port %u (%s) cannot take MAC %02x:%02x:%02x:%02x:%02x:%02x (%s): "
			     "promiscuous mode instead", port, di.driver_name, c->mac[0], c->mac[1], c->mac[2], c->mac[3],
			     c->mac[4], c->mac[5], rte_strerror(-rc));
			rte_eth_promiscuous_enable(port);
		}
		memcpy(d->mac, c->mac, 6);
	} else {
		rc = rte_eth_macaddr_get(port, &mac);
		if (rc != 0) {
			snprintf(err, errlen, "port %u: rte_eth_macaddr_get: %s", port, rte_strerror(-rc));
			return rc;
		}
		memcpy(d->mac, mac.addr_bytes, 6);
	}
	if (c->promiscuous && (rc = rte_eth_promiscuous_enable(port)) != 0)
		dlog(d, DTS_DPDK_LOG_WARN, "port %u: promiscuous mode: %s", port, rte_strerror(-rc));
	return 0;
}

/* Map queues to lcores: the first nq worker lcores when there are enough, else the main lcore's CPUs (our thread)
 * for queue 0 and the workers for the rest. */
static void assign_lcores(struct dts_dpdk *d)
{
	unsigned workers = rte_lcore_count() - 1, i = 0, lc;

	if (d->nq > workers) {
		d->q[0].lcore = rte_get_main_lcore();
		d->q[0].on_main = true;
		i = 1;
	}
	RTE_LCORE_FOREACH_WORKER(lc) {
		if (i == d->nq)
			break;
		d->q[i++].lcore = lc;
	}
}

struct dts_dpdk *dts_dpdk_start(const struct dts_dpdk_cfg *c, struct dts_merger *m, unsigned first_core, char *err,
				size_t errlen)
{
	struct dts_dpdk *d;
	struct rte_eth_link link;
	char ls[RTE_ETH_LINK_MAX_STR_LEN] = "link status unknown";
	int rc;

	if (errlen)
		err[0] = '\0';
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	d->log = c->log;
	d->log_ctx = c->log_ctx;
	rc = check_cfg(c, err, errlen);
	if (rc == 0)
		rc = eal_init(d, c, err, errlen);
	if (rc != 0) {
		free_dpdk(d);
		errno = -rc;
		return NULL;
	}

	d->nq = c->queues ? c->queues : rte_lcore_count();
	if (d->nq > rte_lcore_count() || d->nq > DTS_DPDK_MAX_QUEUES) {
		snprintf(err, errlen, "%u queues need as many lcores, EAL has %u (-l / --lcores)%s", d->nq,
			 rte_lcore_count(), d->nq > DTS_DPDK_MAX_QUEUES ? " and at most 16 are supported" : "");
		rc = -EINVAL;
		goto out_fail;
	}
	for (unsigned i = 0; i < d->nq; i++)
		if (!dts_merger_core(m, first_core + i)) {
			snprintf(err, errlen, "the engine has no core %u: create the merger with at least %u cores "
				 "(first_core %u + %u queues)", first_core + i, first_core + d->nq, first_core, d->nq);
			rc = -EINVAL;
			goto out_fail;
		}
	d->q = aligned_alloc(RTE_CACHE_LINE_SIZE, sizeof(struct rxq) * d->nq);
	if (!d->q) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out_fail;
	}
	memset(d->q, 0, sizeof(struct rxq) * d->nq);
	for (unsigned i = 0; i < d->nq; i++) {
		d->q[i].scratch = malloc(SCRATCH_SIZE);
		if (!d->q[i].scratch) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			goto out_fail;
		}
	}
	rc = port_setup(d, c, err, errlen);
	if (rc != 0)
		goto out_fail;
	assign_lcores(d);
	for (unsigned i = 0; i < d->nq; i++) {
		struct rxq *q = &d->q[i];

		q->d = d;
		q->core = dts_merger_core(m, first_core + i);
		q->port = d->port;
		q->qid = (uint16_t)i;
		q->sweep_cycles = rte_get_tsc_hz() / 1000 * DTS_DPDK_FRAG_SWEEP_MS;
		q->next_sweep = rte_rdtsc() + q->sweep_cycles;
		memcpy(q->pcfg.mac, d->mac, 6);
		q->pcfg.has_ipv4 = c->has_ipv4;
		memcpy(q->pcfg.ipv4, c->ipv4, 4);
		q->pcfg.has_ipv6 = c->has_ipv6;
		memcpy(q->pcfg.ipv6, c->ipv6, 16);
		memcpy(q->pcfg.udp_ports, c->udp_ports, sizeof(c->udp_ports));
		q->pcfg.n_udp_ports = c->n_udp_ports;
	}
	if (rte_eth_dev_callback_register(d->port, RTE_ETH_EVENT_INTR_LSC, lsc_event, d) == 0)
		d->lsc_registered = true;
	rc = rte_eth_dev_start(d->port);
	if (rc != 0) {
		snprintf(err, errlen, "port %u: rte_eth_dev_start: %s", d->port, rte_strerror(-rc));
		goto out_fail;
	}
	d->port_started = true;
	if (rte_eth_link_get_nowait(d->port, &link) == 0)
		rte_eth_link_to_str(ls, sizeof(ls), &link);
	{
		char map[256];
		size_t ml = 0;

		map[0] = '\0';
		for (unsigned i = 0; i < d->nq && ml < sizeof(map); i++)
			ml += (size_t)snprintf(map + ml, sizeof(map) - ml, "%s%u:%s%u", i ? " " : "", i,
					       d->q[i].on_main ? "main lcore " : "lcore ", d->q[i].lcore);
		dlog(d, DTS_DPDK_LOG_INFO, "port %u: %s, MAC %02x:%02x:%02x:%02x:%02x:%02x, queue:lcore %s", d->port, ls,
		     d->mac[0], d->mac[1], d->mac[2], d->mac[3], d->mac[4], d->mac[5], map);
	}

	for (unsigned i = 0; i < d->nq; i++) {
		struct rxq *q = &d->q[i];

		if (q->on_main)
			rc = pthread_create(&q->thread, NULL, main_lcore_thread, q) == 0 ? 0 : -EAGAIN;
		else
			rc = rte_eal_remote_launch(rxq_loop, q, q->lcore);
		if (rc != 0) {
			snprintf(err, errlen, "queue %u: cannot launch its poll loop on lcore %u: %s", i, q->lcore,
				 rte_strerror(-rc));
			goto out_fail;
		}
		q->launched = true;
	}
	return d;

out_fail:
	teardown(d);
	eal_cleanup();
	free_dpdk(d);
	errno = rc < 0 ? -rc : EIO;
	return NULL;
}

void dts_dpdk_stop(struct dts_dpdk *d)
{
	if (!d)
		return;
	teardown(d);
	eal_cleanup();
	free_dpdk(d);
}

int dts_dpdk_stats_read(const struct dts_dpdk *d, struct dts_dpdk_stats *out)
{
	struct rte_eth_stats es;
	struct rte_eth_link link;
	int rc;

	memset(out, 0, sizeof(*out));
	out->port_id = d->port;
	out->queues = d->nq;
	for (unsigned i = 0; i < d->nq; i++) {
		const uint64_t *src = (const uint64_t *)&d->q[i].pub;
		uint64_t *dst = (uint64_t *)&out->queue[i], *tot = (uint64_t *)&out->total;

		for (size_t k = 0; k < sizeof(struct dts_dpdk_queue_stats) / sizeof(uint64_t); k++) {
			dst[k] = __atomic_load_n(&src[k], __ATOMIC_RELAXED);
			tot[k] += dst[k];
		}
	}
	if (rte_eth_link_get_nowait(d->port, &link) == 0) {
		out->link_up = link.link_status == RTE_ETH_LINK_UP;
		out->link_speed_mbps = link.link_speed;
	}
	rc = rte_eth_stats_get(d->port, &es);
	if (rc != 0)
		return rc;
	out->port = (struct dts_dpdk_port_stats){
		.ipackets = es.ipackets,
		.ibytes = es.ibytes,
		.imissed = es.imissed,
		.ierrors = es.ierrors,
		.rx_nombuf = es.rx_nombuf,
		.opackets = es.opackets,
		.oerrors = es.oerrors,
	};
	out->total.hw_packets = out->total.hw_errors = 0;
	for (unsigned i = 0; i < d->nq && i < RTE_ETHDEV_QUEUE_STAT_CNTRS; i++) {
		out->queue[i].hw_packets = es.q_ipackets[i];
		out->queue[i].hw_errors = es.q_errors[i];
		out->total.hw_packets += es.q_ipackets[i];
		out->total.hw_errors += es.q_errors[i];
	}
	return 0;
}

void dts_dpdk_mac(const struct dts_dpdk *d, uint8_t mac[6])
{
	memcpy(mac, d->mac, 6);
}
