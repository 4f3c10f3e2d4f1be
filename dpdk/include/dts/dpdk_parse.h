/*
 * dpdk_parse.h - the packet classifier of the DPDK receive path: one Ethernet frame in a plain buffer -> what the
 * poll loop does with it (ingest a UDP payload, send a reply built in place, reassemble, or count and drop).
 *
 * Pure: no DPDK types, no EAL, no allocation, no global state, so it is unit tested on crafted frames and fuzzed
 * without EAL (library dts_dpdk_parse, which does not link libdpdk). Bounded work: at most DTS_PKT_MAX_VLANS tags and
 * DTS_PKT_MAX_EXT_HDRS IPv6 extension headers are walked, and checksums are O(frame length).
 *
 * What is checked, in order (docs/dpdk.md has the same list with the counter each case lands in):
 *   Ethernet   14 bytes; a unicast destination MAC other than ours is not for us (broadcast/multicast pass);
 *              up to two VLAN tags (0x8100, 0x88a8, 0x9100).
 *   ARP        request (op 1) for our IPv4 -> ARP reply in place; anything else is not for us.
 *   IPv4       version 4, IHL >= 5, IHL*4 <= frame, IHL*4 <= total length <= frame (Ethernet padding ignored);
 *              destination = our IPv4 (any when none is configured); header checksum (unless DTS_PKT_HW_IP4_GOOD/BAD
 *              says); fragments of UDP datagrams -> DTS_PKT_FRAG4 (of anything else: not for us); ICMP echo
 *              request -> echo reply in place.
 *   IPv6       version 6, 40 bytes, payload length <= frame; hop-by-hop, routing and destination-options headers
 *              skipped (bounded); a fragment header -> DTS_PKT_FRAG6 (counted, not reassembled); destination = our
 *              IPv6 (or its solicited-node multicast group, for Neighbour Solicitations only); ICMPv6 echo request ->
 *              echo reply, NS for our address -> Neighbour Advertisement.
 *   UDP        8 bytes, 8 <= UDP length <= IP payload; destination port in cfg->udp_ports; then the checksum, unless
 *              DTS_PKT_HW_L4_GOOD/BAD says (zero means "none" on IPv4, and is invalid on IPv6, RFC 8200 8.1).
 * Replies are only built for requests to us from a unicast source (an NS from the unspecified address, duplicate
 * address detection, is answered to all nodes), keep the request's VLAN tags, and get fresh checksums.
 *
 * Thread context: any thread; reentrant. The caller owns every buffer.
 */
#ifndef DTS_DPDK_PARSE_H
#define DTS_DPDK_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* VLAN tags skipped: one (802.1Q) or two (QinQ, 802.1ad). Deeper stacks are not statsd traffic. */
#define DTS_PKT_MAX_VLANS 2
/* IPv6 extension headers walked before giving up (DTS_PKT_BAD_HDR): bounds the work of one frame. Real traffic has
 * zero or one. */
#define DTS_PKT_MAX_EXT_HDRS 8
/* UDP destination ports accepted (statsd, and later the native protocol's own port). */
#define DTS_PKT_MAX_UDP_PORTS 4

/* What the parser answers for, and who we are. Read-only while parsing; one copy per lcore in the poll loop. */
struct dts_pkt_cfg {
	uint8_t mac[6]; /* our MAC: source of replies, and the only unicast destination accepted */
	bool has_ipv4; /* false: UDP to any IPv4 destination is accepted, and ARP/ICMP are never answered */
	uint8_t ipv4[4]; /* network byte order */
	bool has_ipv6; /* false: UDP to any IPv6 destination is accepted, and NS/ICMPv6 are never answered */
	uint8_t ipv6[16];
	uint16_t udp_ports[DTS_PKT_MAX_UDP_PORTS]; /* host byte order */
	unsigned n_udp_ports; /* 0..DTS_PKT_MAX_UDP_PORTS */
};

/* The parser's answer. Append-only: the values index counter arrays. */
enum dts_pkt_verdict {
	DTS_PKT_UDP = 0, /* a datagram for one of our ports: info->payload_off/payload_len, info->port_index */
	DTS_PKT_ARP_REPLY, /* ARP request for our IPv4: the frame now holds the reply, info->reply_len bytes long */
	DTS_PKT_ICMP4_REPLY, /* ICMP echo request: the frame now holds the echo reply */
	DTS_PKT_ND_REPLY, /* Neighbour Solicitation for our IPv6: the frame now holds the Neighbour Advertisement */
	DTS_PKT_ICMP6_REPLY, /* ICMPv6 echo request: the frame now holds the echo reply */
	DTS_PKT_FRAG4, /* a fragment of a UDP datagram to us: info->l2_len, info->l3_len set for reassembly */
	DTS_PKT_FRAG6, /* an IPv6 fragment to us: counted and dropped (IPv6 fragments are not reassembled) */
	DTS_PKT_NOT_FOR_US, /* other MAC, address, protocol or port; ARP/ICMP we do not answer */
	DTS_PKT_BAD_CSUM, /* IPv4 header, UDP, ICMP or ICMPv6 checksum wrong (or the NIC said so) */
	DTS_PKT_TRUNCATED, /* a header runs past the end of the frame */
	DTS_PKT_BAD_HDR, /* bad version, IHL, total/payload/UDP length, ND option, extension header chain */
};
#define DTS_PKT_NVERDICTS 11

/* Short name of a verdict for logs and /metrics ("udp", "arp_reply", ... "bad_header"). Never NULL. */
const char *dts_pkt_verdict_name(enum dts_pkt_verdict v);

/* Flags to dts_pkt_parse: what the NIC already established (from the mbuf's ol_flags), and what not to do. */
#define DTS_PKT_HW_IP4_GOOD 0x01u /* IPv4 header checksum verified good: skip it */
#define DTS_PKT_HW_IP4_BAD 0x02u /* ... verified bad: DTS_PKT_BAD_CSUM */
#define DTS_PKT_HW_L4_GOOD 0x04u /* UDP checksum verified good: skip it */
#define DTS_PKT_HW_L4_BAD 0x08u /* ... verified bad: DTS_PKT_BAD_CSUM */
#define DTS_PKT_NO_REPLY 0x10u /* never rewrite the frame (a reassembled or copied frame): would-be replies are
				* DTS_PKT_NOT_FOR_US */

/* Where things are in the frame. Fields not relevant to the verdict are 0. */
struct dts_pkt_info {
	uint16_t l2_len; /* Ethernet header + VLAN tags */
	uint16_t l3_len; /* IPv4 header with options, or IPv6 header + extension headers */
	uint32_t payload_off; /* DTS_PKT_UDP: offset of the UDP payload in the frame */
	uint32_t payload_len; /* DTS_PKT_UDP: bytes of UDP payload (UDP length - 8) */
	uint16_t src_port, dst_port; /* DTS_PKT_UDP, host byte order */
	uint8_t port_index; /* DTS_PKT_UDP: index of dst_port in cfg->udp_ports */
	uint8_t ip_version; /* 4 or 6 once an IP header was seen, else 0 */
	uint32_t reply_len; /* *_REPLY: length of the reply frame now at the start of the buffer */
};

/*
 * Classify the Ethernet frame buf[0..len) for cfg. hw_flags: DTS_PKT_HW_* and DTS_PKT_NO_REPLY.
 * cap >= len is the writable size of buf: a reply may be longer than its request (an NA with its target link-layer
 * option answering an NS without one needs up to 8 bytes more); a reply that does not fit in cap is not built and the
 * frame is DTS_PKT_NOT_FOR_US.
 * Returns the verdict and fills *info. Writes to buf only for the *_REPLY verdicts (the reply replaces the request
 * in place, starting at buf[0]). Never reads outside buf[0..len).
 */
enum dts_pkt_verdict dts_pkt_parse(const struct dts_pkt_cfg *cfg, uint8_t *buf, size_t len, size_t cap,
				   unsigned hw_flags, struct dts_pkt_info *info);

/*
 * The Internet checksum (RFC 1071), for packet generators (bench, tests) and the parser itself. Any thread.
 * dts_pkt_csum_add: the one's-complement sum of buf[0..len) added to seed (0 to start, or an earlier result), folded to
 * 16 bits, in the byte order of the data; chain calls on even-length pieces only.
 * dts_pkt_csum_final: the checksum to store from such a sum (its complement; store the 16 bits with memcpy). A region
 * whose stored checksum is right sums to 0xffff.
 */
uint32_t dts_pkt_csum_add(uint32_t seed, const void *buf, size_t len);
uint16_t dts_pkt_csum_final(uint32_t sum);

#endif /* DTS_DPDK_PARSE_H */
