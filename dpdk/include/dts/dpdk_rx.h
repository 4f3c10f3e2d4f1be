/*
 * dpdk_rx.h - poll-mode UDP receive with DPDK: one receive queue per lcore, each lcore decoding straight into its own
 * engine core (the same dts_core_ingest_burst/dts_core_tick the kernel-socket workers call: one engine, two receive
 * paths).
 *
 *   lcore i (queue i)   rte_eth_rx_burst -> dts_pkt_parse -> dts_core_ingest_burst(core first_core + i, the burst's
 *                       UDP payloads)
 *                       ARP / ICMP echo / NS / ICMPv6 echo -> reply in place -> rte_eth_tx_burst(tx queue i)
 *                       IPv4 fragments -> rte_ipv4_frag_reassemble_packet (per-lcore table) -> ingest
 *                       dts_core_tick(core, now_ms) every loop; bounded work per loop (one burst)
 *
 * Threads: queue 0 runs on a thread this library starts, pinned to the CPUs of the EAL main lcore and registered
 * with EAL (rte_thread_register); queues 1..N-1 run on the EAL worker lcores, in the order of the EAL lcore list. The
 * caller's thread gets its CPU affinity back after rte_eal_init (EAL pins it to the main lcore), so the daemon's
 * other threads are not confined to one CPU. RX lcores never enter an RCU read-side critical section: they touch
 * only their engine core (see docs/architecture.md), so there is no quiescent state to report.
 *
 * EAL is process-wide and DPDK cannot initialise it twice in one process: dts_dpdk_start may succeed once per
 * process (dts_dpdk_stop calls rte_eal_cleanup); a second call fails with -EALREADY.
 *
 * docs/dpdk.md: running on a real NIC and on vdevs, mempool sizing, the counters, every error message.
 */
#ifndef DTS_DPDK_RX_H
#define DTS_DPDK_RX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dts/dpdk_parse.h"
#include "dts/engine.h"

/* Most receive queues (= lcores) one port is polled with. More than the 64 engine cores make no sense, and 16 covers
 * the NICs and hosts this appliance targets; per-queue state is preallocated for this many. */
#define DTS_DPDK_MAX_QUEUES 16
/* Packets asked of rte_eth_rx_burst per loop: 32 is DPDK's usual burst (enough to amortise the call and the
 * prefetches, small enough that one loop stays well under a microsecond of work per packet batch). */
#define DTS_DPDK_BURST 32
/* How often an lcore sweeps its fragment table for datagrams whose fragments stopped coming: they hold mbufs until
 * then. 100 ms is well under the default 2 s fragment lifetime, and one sweep frees at most a death row's worth, so
 * it stays a bounded step of the loop. */
#define DTS_DPDK_FRAG_SWEEP_MS 100
/* EAL arguments accepted (a program name is prepended). */
#define DTS_DPDK_MAX_EAL_ARGS 64

/* Log levels of the optional log callback (same order as the daemon's log.h). */
enum dts_dpdk_log_level { DTS_DPDK_LOG_ERROR = 0, DTS_DPDK_LOG_WARN, DTS_DPDK_LOG_INFO, DTS_DPDK_LOG_DEBUG };

/*
 * Everything dts_dpdk_start needs. Fill with dts_dpdk_cfg_defaults, then set fields (or use dts_dpdk_cfg_set).
 * Each field: meaning [default; range]. Read by dts_dpdk_start only: the struct (and eal_argv) may be freed after it
 * returns.
 */
struct dts_dpdk_cfg {
	/* EAL arguments passed through to rte_eal_init, without a program name, e.g. { "--no-pci", "--in-memory",
	 * "--vdev=net_af_packet0,iface=veth0,qpairs=2", "-l", "0-1" } [none; at most DTS_DPDK_MAX_EAL_ARGS] */
	const char *const *eal_argv;
	unsigned eal_argc;
	uint16_t port_id; /* ethdev port to receive on [0] */
	unsigned queues; /* receive queues = lcores polling [0 = one per EAL lcore; 1..DTS_DPDK_MAX_QUEUES, at most
			  * the EAL lcore count] */
	unsigned rx_desc; /* receive ring size per queue [1024; 64..16384, adjusted to the device's limits] */
	unsigned tx_desc; /* transmit ring size per queue, replies only [256; 64..4096] */
	unsigned mbufs_per_queue; /* mbufs in each queue's pool [0 = auto: rx_desc + tx_desc + 2 * burst +
				   * frag_flows * RTE_LIBRTE_IP_FRAG_MAX_FRAG + mbuf_cache, rounded up to 2^k - 1;
				   * 1023..1048575] */
	unsigned mbuf_cache; /* per-lcore mempool cache [256; 0..512] */
	unsigned mbuf_size; /* data room of each mbuf, 128 bytes of headroom included [2176 (2048 + 128, DPDK's
			     * default); 2176..65535]. Frames longer than the data room arrive in several segments
			     * (drivers with scattered RX) or not at all: raise it for jumbo frames, and for af_packet
			     * together with its framesz (the kernel reassembles IPv4 before af_packet sees it). */
	unsigned frag_flows; /* IPv4 datagrams being reassembled at once per queue [256; 16..65536]; more are dropped
			      * and counted */
	unsigned frag_ttl_ms; /* a datagram whose fragments have not all arrived after this is dropped [2000;
			       * 10..30000] */
	uint16_t udp_ports[DTS_PKT_MAX_UDP_PORTS]; /* UDP destination ports ingested, host order [{8125}] */
	unsigned n_udp_ports; /* [1; 1..DTS_PKT_MAX_UDP_PORTS] */
	bool has_ipv4; /* answer ARP and ICMP echo for ipv4, and accept UDP only to it [false: UDP to any IPv4
			* address, no ARP/ICMP answers] */
	uint8_t ipv4[4]; /* network order */
	bool has_ipv6; /* answer NS and ICMPv6 echo for ipv6, and accept UDP only to it [false] */
	uint8_t ipv6[16];
	bool has_mac; /* use mac instead of the port's own address; the port is then set to it, or put in
		       * promiscuous mode when the driver cannot change its address [false] */
	uint8_t mac[6];
	bool promiscuous; /* receive every frame on the wire [false] */
	/* Where start/stop messages go (link status, fallbacks); NULL = stderr with a "dpdk: " prefix. Called from the
	 * thread that called dts_dpdk_start/stop, and for link changes from EAL's interrupt thread. */
	void (*log)(void *ctx, enum dts_dpdk_log_level level, const char *msg);
	void *log_ctx;
};

/* Fill c with the defaults above. Never fails. */
void dts_dpdk_cfg_defaults(struct dts_dpdk_cfg *c);

/*
 * Set one field from text, for config files and flags: key is one of port, queues, rx_desc, tx_desc, mbufs,
 * mbuf_cache, frag_flows, frag_ttl_ms, udp_ports ("8125" or "8125,8126"), ipv4 ("192.0.2.10" or "" for none),
 * ipv6 ("2001:db8::10" or ""), mac ("02:00:00:00:00:01" or ""), promiscuous ("true"/"false").
 * EAL arguments are not set here (see dts_dpdk_eal_split). Returns 0, or -EINVAL with a one-line message in err
 * naming the key, the accepted range and the value (c unchanged), or -ENOENT for an unknown key. Startup only.
 */
int dts_dpdk_cfg_set(struct dts_dpdk_cfg *c, const char *key, const char *value, char *err, size_t errlen);

/*
 * Split a whitespace-separated EAL argument line ("--no-pci --in-memory -l 0-1") into argv[0..max_args), copying
 * the words into buf (buflen bytes). There is no quoting: EAL arguments contain no spaces. Returns the number of
 * arguments, or -E2BIG when they do not fit in buf or max_args. argv points into buf. Any thread.
 */
int dts_dpdk_eal_split(const char *line, char *buf, size_t buflen, const char **argv, unsigned max_args);

struct dts_dpdk;

/*
 * Initialise EAL with cfg->eal_argv, set up cfg->port_id with one receive and one transmit queue per lcore (RSS on
 * IPv4/IPv6 UDP when there are several queues and the device supports it; checksum offloads when it has them), start
 * it, and launch one poll loop per queue writing into engine core first_core + i of m. m must have at least
 * first_core + queues cores, and nothing else may write those cores while the loops run.
 * Returns the running receiver, or NULL with errno set and a one-line message in err (errlen > 0): EINVAL for a bad
 * config or bad EAL arguments, EACCES/ENOMEM when EAL could not get its memory (hugepages), ENODEV when there is no
 * such port, EALREADY when EAL was already initialised in this process, or the errno of the failing DPDK call.
 * On failure nothing is left running and the port is closed (EAL itself stays initialised: DPDK cannot undo that).
 * Main thread, once.
 */
struct dts_dpdk *dts_dpdk_start(const struct dts_dpdk_cfg *cfg, struct dts_merger *m, unsigned first_core, char *err,
				size_t errlen);

/*
 * Stop every poll loop and wait for it, stop and close the port, free the fragment tables (and the fragments they
 * held) and the mempools, rte_eal_cleanup(), and remove EAL's runtime directory when it is empty. Afterwards no lcore touches the engine cores, so
 * dts_merger_destroy may fold their tables. NULL is accepted. Main thread (the one that called dts_dpdk_start).
 */
void dts_dpdk_stop(struct dts_dpdk *d);

/* Counters of one receive queue, kept by its lcore (single writer, relaxed stores; monotonic). */
struct dts_dpdk_queue_stats {
	uint64_t rx_packets; /* frames rte_eth_rx_burst returned */
	uint64_t rx_bytes;
	uint64_t udp_datagrams; /* UDP payloads handed to the engine (reassembled datagrams included) */
	uint64_t udp_bytes; /* their payload bytes */
	uint64_t not_for_us; /* other MAC, address, protocol or port */
	uint64_t bad_checksum; /* IPv4 header, UDP, ICMP, ICMPv6 */
	uint64_t truncated; /* a header ran past the end of the frame */
	uint64_t bad_header; /* bad version, IHL, lengths, options, extension header chain */
	uint64_t arp_replies; /* replies handed to rte_eth_tx_burst (see tx_dropped) */
	uint64_t icmp_replies;
	uint64_t nd_replies;
	uint64_t icmp6_replies;
	uint64_t tx_dropped; /* replies the transmit queue did not take (freed), or no transmit queue for this lcore */
	uint64_t ipv4_fragments; /* IPv4 fragments handed to reassembly */
	uint64_t reassembled; /* datagrams reassembled from them */
	uint64_t frag_dropped; /* fragment mbufs freed without a datagram: timed out, table full, bad or duplicate */
	uint64_t ipv6_fragments; /* counted and dropped: IPv6 fragments are not reassembled */
	uint64_t loops; /* poll loop iterations (idle ones included) */
	uint64_t hw_packets; /* the device's per-queue counters (q_ipackets, q_errors) where it keeps them */
	uint64_t hw_errors;
};

/* Counters of the port, from rte_eth_stats_get (the device's own; monotonic until the port is closed). */
struct dts_dpdk_port_stats {
	uint64_t ipackets, ibytes;
	uint64_t imissed; /* dropped by the device because the receive ring was full: the lcore did not keep up */
	uint64_t ierrors; /* erroneous frames (bad FCS, too long ...) */
	uint64_t rx_nombuf; /* receive failures for lack of an mbuf: the pool is too small (docs/dpdk.md) */
	uint64_t opackets, oerrors;
};

struct dts_dpdk_stats {
	uint16_t port_id;
	unsigned queues;
	bool link_up;
	uint32_t link_speed_mbps;
	struct dts_dpdk_port_stats port;
	struct dts_dpdk_queue_stats total; /* the sum over queues */
	struct dts_dpdk_queue_stats queue[DTS_DPDK_MAX_QUEUES]; /* [0, queues) valid */
};

/*
 * Read every counter into out. Any thread, while d runs (not concurrently with or after dts_dpdk_stop). Returns 0,
 * or the negative errno of rte_eth_stats_get (out->port is then zero, the rest valid).
 */
int dts_dpdk_stats_read(const struct dts_dpdk *d, struct dts_dpdk_stats *out);

/* The MAC the receiver answers with (the port's, or cfg->mac). Any thread while d runs. */
void dts_dpdk_mac(const struct dts_dpdk *d, uint8_t mac[6]);

#endif /* DTS_DPDK_RX_H */
