/*
 * test_dpdk_parse.c - dts_pkt_parse (dpdk/include/dts/dpdk_parse.h) on crafted frames, without EAL.
 *
 * Table-driven: each case builds a valid frame with a builder, optionally breaks it with a mutator, parses it with a
 * config variant and hardware flags, and checks the verdict; UDP cases check the payload handed to the engine, reply
 * cases compare the whole reply with one built independently (roles swapped, checksums from this file's own naive
 * 16-bit big-endian checksum, not the library's). A sweep truncates valid frames at every length.
 * Every frame is parsed from a heap buffer of exactly its size (plus the room a reply may need), so an ASan build
 * catches any read past the frame.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dts/dpdk_parse.h"

static const uint8_t OUR_MAC[6] = { 0x02, 0, 0, 0, 0, 0x01 };
static const uint8_t PEER_MAC[6] = { 0x02, 0, 0, 0, 0, 0x02 };
static const uint8_t OTHER_MAC[6] = { 0x02, 0, 0, 0, 0, 0x03 };
static const uint8_t BCAST_MAC[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t OUR_IP4[4] = { 192, 0, 2, 1 };
static const uint8_t PEER_IP4[4] = { 192, 0, 2, 2 };
static const uint8_t OTHER_IP4[4] = { 192, 0, 2, 3 };
static const uint8_t OUR_IP6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x01 };
static const uint8_t PEER_IP6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x02 };
static const uint8_t OTHER_IP6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x03 };
static const uint8_t UNSPEC_IP6[16] = { 0 };
static const uint8_t ALL_NODES_IP6[16] = { 0xff, 0x02, [15] = 0x01 };
static const uint8_t ALL_NODES_MAC[6] = { 0x33, 0x33, 0, 0, 0, 0x01 };
/* ff02::1:ff00:1, the solicited-node group of OUR_IP6, and its MAC */
static const uint8_t SNM_IP6[16] = { 0xff, 0x02, [11] = 0x01, [12] = 0xff, [13] = 0x00, [14] = 0x00, [15] = 0x01 };
static const uint8_t SNM_MAC[6] = { 0x33, 0x33, 0xff, 0x00, 0x00, 0x01 };

#define PAYLOAD "api.query:1|c\napi.lat:12|ms"
#define SPORT 40000
#define DPORT 8125
#define DPORT2 8126

enum cfg_variant { CFG_FULL = 0, CFG_NO_IP };

static void make_cfg(struct dts_pkt_cfg *c, enum cfg_variant v)
{
	memset(c, 0, sizeof(*c));
	memcpy(c->mac, OUR_MAC, 6);
	if (v == CFG_FULL) {
		c->has_ipv4 = true;
		memcpy(c->ipv4, OUR_IP4, 4);
		c->has_ipv6 = true;
		memcpy(c->ipv6, OUR_IP6, 16);
	}
	c->udp_ports[0] = DPORT;
	c->udp_ports[1] = DPORT2;
	c->n_udp_ports = 2;
}

/* ---- an independent checksum: 16-bit big-endian words, end-around carry ---- */

static uint32_t naive_sum(uint32_t s, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s;
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p)
{
	return (unsigned)(p[0] << 8 | p[1]);
}

static uint32_t pseudo4(const uint8_t *ip, unsigned proto, size_t l4len)
{
	uint8_t t[4] = { 0, (uint8_t)proto, (uint8_t)(l4len >> 8), (uint8_t)l4len };

	return naive_sum(naive_sum(0, ip + 12, 8), t, 4);
}

static uint32_t pseudo6(const uint8_t *ip, unsigned proto, size_t l4len)
{
	uint8_t t[8] = { 0, 0, (uint8_t)(l4len >> 8), (uint8_t)l4len, 0, 0, 0, (uint8_t)proto };

	return naive_sum(naive_sum(0, ip + 8, 32), t, 8);
}

static void fix_csum(uint8_t *field, uint32_t sum_without)
{
	put16(field, ~sum_without & 0xffff);
}

/* ---- frame builders: each writes a complete, valid frame into f and returns its length ---- */

struct frame {
	uint8_t b[4096];
	size_t len;
	size_t l3; /* offset of the IP/ARP header */
	size_t l4; /* offset of the UDP/ICMP header */
};

static void eth(struct frame *f, const uint8_t *dst, const uint8_t *src, int vlans, unsigned et)
{
	memcpy(f->b, dst, 6);
	memcpy(f->b + 6, src, 6);
	f->len = 12;
	for (int i = 0; i < vlans; i++) {
		put16(f->b + f->len, i == 0 && vlans > 1 ? 0x88a8 : 0x8100);
		put16(f->b + f->len + 2, 100 + (unsigned)i);
		f->len += 4;
	}
	put16(f->b + f->len, et);
	f->len += 2;
	f->l3 = f->len;
}

/* IPv4 header at f->l3 with l4len bytes to follow; checksum filled. */
static void ipv4(struct frame *f, const uint8_t *src, const uint8_t *dst, unsigned proto, size_t l4len,
		 unsigned ihl_words, unsigned frag, unsigned ttl)
{
	uint8_t *ip = f->b + f->l3;
	size_t ihl = ihl_words * 4;

	memset(ip, 0, ihl);
	ip[0] = (uint8_t)(0x40 | ihl_words);
	put16(ip + 2, (unsigned)(ihl + l4len));
	put16(ip + 4, 0x1234);
	put16(ip + 6, frag);
	ip[8] = (uint8_t)ttl;
	ip[9] = (uint8_t)proto;
	memcpy(ip + 12, src, 4);
	memcpy(ip + 16, dst, 4);
	for (size_t i = 20; i < ihl; i++)
		ip[i] = 1; /* NOP options */
	fix_csum(ip + 10, naive_sum(0, ip, ihl));
	f->l4 = f->l3 + ihl;
	f->len = f->l4 + l4len;
}

/* IPv6 header at f->l3, then `next` extension headers of 8 bytes each (types in ext[]), then l4len bytes. */
static void ipv6(struct frame *f, const uint8_t *src, const uint8_t *dst, unsigned proto, size_t l4len,
		 const uint8_t *ext, int next, unsigned hop)
{
	uint8_t *ip = f->b + f->l3;
	size_t pos = f->l3 + 40;

	memset(ip, 0, 40);
	ip[0] = 0x60;
	put16(ip + 4, (unsigned)(l4len + 8 * (size_t)next));
	ip[6] = next ? ext[0] : (uint8_t)proto;
	ip[7] = (uint8_t)hop;
	memcpy(ip + 8, src, 16);
	memcpy(ip + 24, dst, 16);
	for (int i = 0; i < next; i++) {
		memset(f->b + pos, 0, 8);
		f->b[pos] = i + 1 < next ? ext[i + 1] : (uint8_t)proto;
		f->b[pos + 1] = 0; /* 8 bytes */
		if (ext[i] == 0 || ext[i] == 60) { /* PadN option filling the header */
			f->b[pos + 2] = 1;
			f->b[pos + 3] = 4;
		}
		if (ext[i] == 43) /* routing type 4 (segment routing) with 0 segments left */
			f->b[pos + 2] = 4;
		pos += 8;
	}
	f->l4 = pos;
	f->len = pos + l4len;
}

static void udp(struct frame *f, unsigned dport, const char *payload, bool v6)
{
	uint8_t *u = f->b + f->l4;
	size_t n = strlen(payload);

	put16(u, SPORT);
	put16(u + 2, dport);
	put16(u + 4, (unsigned)(8 + n));
	put16(u + 6, 0);
	memcpy(u + 8, payload, n);
	fix_csum(u + 6, naive_sum(v6 ? pseudo6(f->b + f->l3, 17, 8 + n) : pseudo4(f->b + f->l3, 17, 8 + n), u, 8 + n));
	if (get16(u + 6) == 0)
		put16(u + 6, 0xffff);
}

static void f_udp4_ex(struct frame *f, int vlans, unsigned ihl_words, unsigned dport, const char *payload)
{
	eth(f, OUR_MAC, PEER_MAC, vlans, 0x0800);
	ipv4(f, PEER_IP4, OUR_IP4, 17, 8 + strlen(payload), ihl_words, 0, 64);
	udp(f, dport, payload, false);
}

static void f_udp4(struct frame *f)
{
	f_udp4_ex(f, 0, 5, DPORT, PAYLOAD);
}

static void f_udp4_vlan(struct frame *f)
{
	f_udp4_ex(f, 1, 5, DPORT, PAYLOAD);
}

static void f_udp4_qinq(struct frame *f)
{
	f_udp4_ex(f, 2, 5, DPORT, PAYLOAD);
}

static void f_udp4_3vlans(struct frame *f)
{
	f_udp4_ex(f, 3, 5, DPORT, PAYLOAD);
}

static void f_udp4_opts(struct frame *f)
{
	f_udp4_ex(f, 0, 7, DPORT, PAYLOAD);
}

static void f_udp4_port2(struct frame *f)
{
	f_udp4_ex(f, 0, 5, DPORT2, PAYLOAD);
}

static void f_udp4_otherport(struct frame *f)
{
	f_udp4_ex(f, 0, 5, 53, PAYLOAD);
}

static void f_udp4_empty(struct frame *f)
{
	f_udp4_ex(f, 0, 5, DPORT, "");
}

static void f_udp6_ex(struct frame *f, int vlans, const uint8_t *ext, int next)
{
	eth(f, OUR_MAC, PEER_MAC, vlans, 0x86dd);
	ipv6(f, PEER_IP6, OUR_IP6, 17, 8 + strlen(PAYLOAD), ext, next, 64);
	udp(f, DPORT, PAYLOAD, true);
}

static void f_udp6(struct frame *f)
{
	f_udp6_ex(f, 0, NULL, 0);
}

static void f_udp6_vlan(struct frame *f)
{
	f_udp6_ex(f, 1, NULL, 0);
}

static void f_udp6_hbh(struct frame *f)
{
	static const uint8_t ext[] = { 0 };

	f_udp6_ex(f, 0, ext, 1);
}

static void f_udp6_3ext(struct frame *f)
{
	static const uint8_t ext[] = { 0, 43, 60 };

	f_udp6_ex(f, 0, ext, 3);
}

static void f_udp6_9ext(struct frame *f)
{
	static const uint8_t ext[] = { 60, 60, 60, 60, 60, 60, 60, 60, 60 };

	f_udp6_ex(f, 0, ext, 9);
}

static void f_udp6_8ext(struct frame *f)
{
	static const uint8_t ext[] = { 0, 60, 60, 60, 60, 60, 60, 60 };

	f_udp6_ex(f, 0, ext, 8);
}

/* The first fragment of a UDP datagram (MF, offset 0): the UDP header and some payload. */
static void f_frag4_first(struct frame *f)
{
	eth(f, OUR_MAC, PEER_MAC, 0, 0x0800);
	ipv4(f, PEER_IP4, OUR_IP4, 17, 24, 5, 0x2000, 64);
	memset(f->b + f->l4, 'x', 24);
}

/* A later fragment (offset 24 bytes = 3 units, no MF). */
static void f_frag4_last(struct frame *f)
{
	eth(f, OUR_MAC, PEER_MAC, 0, 0x0800);
	ipv4(f, PEER_IP4, OUR_IP4, 17, 16, 5, 3, 64);
	memset(f->b + f->l4, 'y', 16);
}

static void f_frag4_icmp(struct frame *f)
{
	eth(f, OUR_MAC, PEER_MAC, 0, 0x0800);
	ipv4(f, PEER_IP4, OUR_IP4, 1, 24, 5, 0x2000, 64);
	memset(f->b + f->l4, 'x', 24);
}

static void f_frag6(struct frame *f)
{
	static const uint8_t ext[] = { 44 };

	eth(f, OUR_MAC, PEER_MAC, 0, 0x86dd);
	ipv6(f, PEER_IP6, OUR_IP6, 17, 16, ext, 1, 64);
	put16(f->b + f->l4 - 8 + 2, 0x0001); /* offset 0, M set */
	memset(f->b + f->l4, 'z', 16);
}

static void f_frag6_after_hbh(struct frame *f)
{
	static const uint8_t ext[] = { 0, 44 };

	eth(f, OUR_MAC, PEER_MAC, 0, 0x86dd);
	ipv6(f, PEER_IP6, OUR_IP6, 17, 16, ext, 2, 64);
	memset(f->b + f->l4, 'z', 16);
}

static void arp(struct frame *f, const uint8_t *edst, const uint8_t *esrc, unsigned op, const uint8_t *sha,
		const uint8_t *spa, const uint8_t *tha, const uint8_t *tpa)
{
	uint8_t *a;

	eth(f, edst, esrc, 0, 0x0806);
	a = f->b + f->l3;
	put16(a, 1);
	put16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, sha, 6);
	memcpy(a + 14, spa, 4);
	memcpy(a + 18, tha, 6);
	memcpy(a + 24, tpa, 4);
	f->len = f->l3 + 28;
}

static const uint8_t ZERO_MAC[6] = { 0 };

static void f_arp_req(struct frame *f)
{
	arp(f, BCAST_MAC, PEER_MAC, 1, PEER_MAC, PEER_IP4, ZERO_MAC, OUR_IP4);
}

static void f_arp_req_padded(struct frame *f)
{
	f_arp_req(f);
	memset(f->b + f->len, 0, 60 - f->len); /* minimum Ethernet frame: 18 bytes of padding */
	f->len = 60;
}

static void f_arp_req_other(struct frame *f)
{
	arp(f, BCAST_MAC, PEER_MAC, 1, PEER_MAC, PEER_IP4, ZERO_MAC, OTHER_IP4);
}

static void f_arp_reply_in(struct frame *f)
{
	arp(f, OUR_MAC, PEER_MAC, 2, PEER_MAC, PEER_IP4, OUR_MAC, OUR_IP4);
}

/* The ARP reply we expect for f_arp_req */
static void x_arp_reply(struct frame *f)
{
	arp(f, PEER_MAC, OUR_MAC, 2, OUR_MAC, OUR_IP4, PEER_MAC, PEER_IP4);
}

static void icmp4(struct frame *f, const uint8_t *edst, const uint8_t *esrc, const uint8_t *src, const uint8_t *dst,
		  unsigned type, unsigned ttl, int vlans)
{
	static const char data[] = "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEF";
	uint8_t *ic;
	size_t n = 8 + sizeof(data) - 1;

	eth(f, edst, esrc, vlans, 0x0800);
	ipv4(f, src, dst, 1, n, 5, 0, ttl);
	ic = f->b + f->l4;
	ic[0] = (uint8_t)type;
	ic[1] = 0;
	put16(ic + 2, 0);
	put16(ic + 4, 0x4242); /* id */
	put16(ic + 6, 7); /* sequence */
	memcpy(ic + 8, data, sizeof(data) - 1);
	fix_csum(ic + 2, naive_sum(0, ic, n));
}

static void f_icmp4_echo(struct frame *f)
{
	icmp4(f, OUR_MAC, PEER_MAC, PEER_IP4, OUR_IP4, 8, 55, 0);
}

static void f_icmp4_echo_vlan(struct frame *f)
{
	icmp4(f, OUR_MAC, PEER_MAC, PEER_IP4, OUR_IP4, 8, 55, 1);
}

static void f_icmp4_echo_padded(struct frame *f)
{
	f_icmp4_echo(f);
	memset(f->b + f->len, 0xee, 6); /* trailing Ethernet bytes beyond the IP total length */
	f->len += 6;
}

static void f_icmp4_echo_reply_in(struct frame *f)
{
	icmp4(f, OUR_MAC, PEER_MAC, PEER_IP4, OUR_IP4, 0, 55, 0);
}

static void x_icmp4_reply(struct frame *f)
{
	icmp4(f, PEER_MAC, OUR_MAC, OUR_IP4, PEER_IP4, 0, 64, 0);
}

static void x_icmp4_reply_vlan(struct frame *f)
{
	icmp4(f, PEER_MAC, OUR_MAC, OUR_IP4, PEER_IP4, 0, 64, 1);
}

/* ICMPv6 message of n bytes at f->l4, checksum filled. */
static void icmp6_csum(struct frame *f, size_t n)
{
	uint8_t *ic = f->b + f->l4;

	put16(ic + 2, 0);
	fix_csum(ic + 2, naive_sum(pseudo6(f->b + f->l3, 58, n), ic, n));
}

static void icmp6_echo(struct frame *f, const uint8_t *edst, const uint8_t *esrc, const uint8_t *src,
		       const uint8_t *dst, unsigned type, unsigned hop, const uint8_t *ext, int next)
{
	static const char data[] = "ping6 payload 0123456789";
	size_t n = 8 + sizeof(data) - 1;
	uint8_t *ic;

	eth(f, edst, esrc, 0, 0x86dd);
	ipv6(f, src, dst, 58, n, ext, next, hop);
	ic = f->b + f->l4;
	ic[0] = (uint8_t)type;
	ic[1] = 0;
	put16(ic + 4, 0x77);
	put16(ic + 6, 3);
	memcpy(ic + 8, data, sizeof(data) - 1);
	icmp6_csum(f, n);
}

static void f_icmp6_echo(struct frame *f)
{
	icmp6_echo(f, OUR_MAC, PEER_MAC, PEER_IP6, OUR_IP6, 128, 64, NULL, 0);
}

static void f_icmp6_echo_ext(struct frame *f)
{
	static const uint8_t ext[] = { 60 };

	icmp6_echo(f, OUR_MAC, PEER_MAC, PEER_IP6, OUR_IP6, 128, 64, ext, 1);
}

static void f_icmp6_echo_snm(struct frame *f)
{
	icmp6_echo(f, SNM_MAC, PEER_MAC, PEER_IP6, SNM_IP6, 128, 64, NULL, 0);
}

static void x_icmp6_reply(struct frame *f)
{
	icmp6_echo(f, PEER_MAC, OUR_MAC, OUR_IP6, PEER_IP6, 129, 64, NULL, 0);
}

/* Neighbour Solicitation for target, optionally with a source link-layer address option. */
static void ns(struct frame *f, const uint8_t *edst, const uint8_t *src, const uint8_t *dst, const uint8_t *target,
	       bool slla, unsigned hop)
{
	size_t n = 24 + (slla ? 8 : 0);
	uint8_t *m;

	eth(f, edst, PEER_MAC, 0, 0x86dd);
	ipv6(f, src, dst, 58, n, NULL, 0, hop);
	m = f->b + f->l4;
	memset(m, 0, n);
	m[0] = 135;
	memcpy(m + 8, target, 16);
	if (slla) {
		m[24] = 1;
		m[25] = 1;
		memcpy(m + 26, PEER_MAC, 6);
	}
	icmp6_csum(f, n);
}

static void f_ns(struct frame *f)
{
	ns(f, SNM_MAC, PEER_IP6, SNM_IP6, OUR_IP6, true, 255);
}

static void f_ns_unicast_no_slla(struct frame *f)
{
	ns(f, OUR_MAC, PEER_IP6, OUR_IP6, OUR_IP6, false, 255);
}

static void f_ns_other_target(struct frame *f)
{
	ns(f, SNM_MAC, PEER_IP6, SNM_IP6, OTHER_IP6, true, 255);
}

static void f_ns_hop64(struct frame *f)
{
	ns(f, SNM_MAC, PEER_IP6, SNM_IP6, OUR_IP6, true, 64);
}

static void f_ns_dad(struct frame *f)
{
	ns(f, SNM_MAC, UNSPEC_IP6, SNM_IP6, OUR_IP6, false, 255);
}

static void f_ns_bad_optlen(struct frame *f)
{
	f_ns(f);
	f->b[f->l4 + 25] = 0; /* option length 0 is invalid */
	icmp6_csum(f, 32);
}

static void na(struct frame *f, const uint8_t *edst, const uint8_t *dst, unsigned flags)
{
	uint8_t *m;

	eth(f, edst, OUR_MAC, 0, 0x86dd);
	ipv6(f, OUR_IP6, dst, 58, 32, NULL, 0, 255);
	m = f->b + f->l4;
	memset(m, 0, 32);
	m[0] = 136;
	m[4] = (uint8_t)flags;
	memcpy(m + 8, OUR_IP6, 16);
	m[24] = 2;
	m[25] = 1;
	memcpy(m + 26, OUR_MAC, 6);
	icmp6_csum(f, 32);
}

static void x_na(struct frame *f)
{
	na(f, PEER_MAC, PEER_IP6, 0x60); /* solicited + override */
}

static void x_na_dad(struct frame *f)
{
	na(f, ALL_NODES_MAC, ALL_NODES_IP6, 0x20); /* override only, to all nodes */
}

static void f_unknown_ethertype(struct frame *f)
{
	eth(f, OUR_MAC, PEER_MAC, 0, 0x88cc); /* LLDP */
	memset(f->b + f->len, 0, 46);
	f->len += 46;
}

static void f_tcp4(struct frame *f)
{
	eth(f, OUR_MAC, PEER_MAC, 0, 0x0800);
	ipv4(f, PEER_IP4, OUR_IP4, 6, 20, 5, 0, 64);
	memset(f->b + f->l4, 0, 20);
}

static void f_udp4_to_other_ip(struct frame *f)
{
	eth(f, OUR_MAC, PEER_MAC, 0, 0x0800);
	ipv4(f, PEER_IP4, OTHER_IP4, 17, 8 + strlen(PAYLOAD), 5, 0, 64);
	udp(f, DPORT, PAYLOAD, false);
}

static void f_udp6_to_other_ip(struct frame *f)
{
	eth(f, OUR_MAC, PEER_MAC, 0, 0x86dd);
	ipv6(f, PEER_IP6, OTHER_IP6, 17, 8 + strlen(PAYLOAD), NULL, 0, 64);
	udp(f, DPORT, PAYLOAD, true);
}

/* ---- mutators: break one thing; re-fix checksums where the case is about something else ---- */

static void refix_ip4(struct frame *f)
{
	uint8_t *ip = f->b + f->l3;
	size_t ihl = (size_t)(ip[0] & 15) * 4;

	if (ihl < 20)
		ihl = 20;
	put16(ip + 10, 0);
	fix_csum(ip + 10, naive_sum(0, ip, ihl));
}

static void m_ihl4(struct frame *f)
{
	f->b[f->l3] = 0x44;
	refix_ip4(f);
}

static void m_ihl15(struct frame *f)
{
	f->b[f->l3] = 0x4f; /* 60-byte header in a frame that has 20 + 35 */
}

static void m_version(struct frame *f)
{
	f->b[f->l3] = 0x55;
	refix_ip4(f);
}

static void m_totlen_big(struct frame *f)
{
	put16(f->b + f->l3 + 2, get16(f->b + f->l3 + 2) + 100);
	refix_ip4(f);
}

static void m_totlen_small(struct frame *f)
{
	put16(f->b + f->l3 + 2, 12);
	refix_ip4(f);
}

static void m_ip4_csum(struct frame *f)
{
	f->b[f->l3 + 10] ^= 0x01;
}

static void m_udp_csum(struct frame *f)
{
	f->b[f->l4 + 6] ^= 0x10;
}

static void m_udp_payload_flip(struct frame *f)
{
	f->b[f->l4 + 9] ^= 0x02; /* data corrupted, checksum kept */
}

static void m_udp_csum_zero(struct frame *f)
{
	put16(f->b + f->l4 + 6, 0);
}

static void m_udp_len_big(struct frame *f)
{
	put16(f->b + f->l4 + 4, get16(f->b + f->l4 + 4) + 1);
}

static void m_udp_len_7(struct frame *f)
{
	put16(f->b + f->l4 + 4, 7);
}

/* UDP length 8 + 3 inside a longer IP payload: the rest is IP-level padding, ignored. */
static void m_udp_len_short(struct frame *f)
{
	uint8_t *u = f->b + f->l4;
	bool v6 = (f->b[f->l3] >> 4) == 6;

	put16(u + 4, 11);
	put16(u + 6, 0);
	fix_csum(u + 6, naive_sum(v6 ? pseudo6(f->b + f->l3, 17, 11) : pseudo4(f->b + f->l3, 17, 11), u, 11));
}

/* An IPv4 datagram whose UDP header is cut: IP total length = IHL + 4, consistent with the frame. */
static void m_udp_hdr_cut(struct frame *f)
{
	put16(f->b + f->l3 + 2, 20 + 4);
	refix_ip4(f);
	f->len = f->l4 + 4;
}

/* An IPv6 extension header that runs past the payload length. */
static void m_ext_cut(struct frame *f)
{
	put16(f->b + f->l3 + 4, 4);
	f->len = f->l3 + 40 + 4;
}

static void m_ip6_plen_big(struct frame *f)
{
	put16(f->b + f->l3 + 4, get16(f->b + f->l3 + 4) + 1);
}

static void m_ip6_version(struct frame *f)
{
	f->b[f->l3] = 0x40;
}

static void m_ip6_tcp(struct frame *f)
{
	f->b[f->l3 + 6] = 6;
}

static void m_dst_mac_other(struct frame *f)
{
	memcpy(f->b, OTHER_MAC, 6);
}

static void m_dst_mac_bcast(struct frame *f)
{
	memcpy(f->b, BCAST_MAC, 6);
}

static void m_icmp_csum(struct frame *f)
{
	f->b[f->l4 + 2] ^= 0x01;
}

static void m_pad(struct frame *f)
{
	memset(f->b + f->len, 0, 10);
	f->len += 10;
}

static void m_src_bcast4(struct frame *f)
{
	memset(f->b + f->l3 + 12, 0xff, 4);
	refix_ip4(f);
	put16(f->b + f->l4 + 2, 0);
	fix_csum(f->b + f->l4 + 2, naive_sum(0, f->b + f->l4, f->len - f->l4));
}

/* ---- the table ---- */

struct pcase {
	const char *name;
	void (*build)(struct frame *f);
	void (*mutate)(struct frame *f); /* NULL: the frame as built */
	enum cfg_variant cfg;
	unsigned hw;
	enum dts_pkt_verdict want;
	const char *payload; /* DTS_PKT_UDP: the payload expected (NULL: PAYLOAD) */
	unsigned port_index; /* DTS_PKT_UDP */
	void (*reply)(struct frame *f); /* *_REPLY: builds the expected reply */
	size_t extra_cap; /* writable room after the frame */
	uint16_t l2_len, l3_len; /* checked when non-zero */
};

static const struct pcase cases[] = {
	/* valid UDP */
	{ "ipv4/udp", f_udp4, NULL, CFG_FULL, 0, DTS_PKT_UDP, .l2_len = 14, .l3_len = 20 },
	{ "ipv4/udp second port", f_udp4_port2, NULL, CFG_FULL, 0, DTS_PKT_UDP, .port_index = 1 },
	{ "ipv4/udp empty payload", f_udp4_empty, NULL, CFG_FULL, 0, DTS_PKT_UDP, .payload = "" },
	{ "ipv4/udp with IP options", f_udp4_opts, NULL, CFG_FULL, 0, DTS_PKT_UDP, .l3_len = 28 },
	{ "vlan ipv4/udp", f_udp4_vlan, NULL, CFG_FULL, 0, DTS_PKT_UDP, .l2_len = 18 },
	{ "qinq ipv4/udp", f_udp4_qinq, NULL, CFG_FULL, 0, DTS_PKT_UDP, .l2_len = 22 },
	{ "ipv6/udp", f_udp6, NULL, CFG_FULL, 0, DTS_PKT_UDP, .l2_len = 14, .l3_len = 40 },
	{ "vlan ipv6/udp", f_udp6_vlan, NULL, CFG_FULL, 0, DTS_PKT_UDP, .l2_len = 18 },
	{ "ipv6 hop-by-hop/udp", f_udp6_hbh, NULL, CFG_FULL, 0, DTS_PKT_UDP, .l3_len = 48 },
	{ "ipv6 hbh+routing+dstopts/udp", f_udp6_3ext, NULL, CFG_FULL, 0, DTS_PKT_UDP, .l3_len = 64 },
	{ "ipv6 8 extension headers/udp", f_udp6_8ext, NULL, CFG_FULL, 0, DTS_PKT_UDP, .l3_len = 104 },
	{ "ipv4/udp ethernet padding", f_udp4, m_pad, CFG_FULL, 0, DTS_PKT_UDP },
	{ "ipv4/udp to broadcast MAC", f_udp4, m_dst_mac_bcast, CFG_FULL, 0, DTS_PKT_UDP },
	{ "ipv4/udp any address without ipv4", f_udp4_to_other_ip, NULL, CFG_NO_IP, 0, DTS_PKT_UDP },
	{ "ipv6/udp any address without ipv6", f_udp6_to_other_ip, NULL, CFG_NO_IP, 0, DTS_PKT_UDP },
	{ "ipv4/udp short UDP length", f_udp4, m_udp_len_short, CFG_FULL, 0, DTS_PKT_UDP, .payload = "api" },
	{ "ipv6/udp short UDP length", f_udp6, m_udp_len_short, CFG_FULL, 0, DTS_PKT_UDP, .payload = "api" },
	/* checksums */
	{ "ipv4 bad header checksum", f_udp4, m_ip4_csum, CFG_FULL, 0, DTS_PKT_BAD_CSUM },
	{ "ipv4 bad header checksum, NIC said good", f_udp4, m_ip4_csum, CFG_FULL, DTS_PKT_HW_IP4_GOOD, DTS_PKT_UDP },
	{ "ipv4 NIC said header bad", f_udp4, NULL, CFG_FULL, DTS_PKT_HW_IP4_BAD, DTS_PKT_BAD_CSUM },
	{ "ipv4 bad udp checksum", f_udp4, m_udp_csum, CFG_FULL, 0, DTS_PKT_BAD_CSUM },
	{ "ipv4 corrupted udp payload", f_udp4, m_udp_payload_flip, CFG_FULL, 0, DTS_PKT_BAD_CSUM },
	{ "ipv4 bad udp checksum, NIC said good", f_udp4, m_udp_csum, CFG_FULL, DTS_PKT_HW_L4_GOOD, DTS_PKT_UDP },
	{ "ipv4 NIC said udp bad", f_udp4, NULL, CFG_FULL, DTS_PKT_HW_L4_BAD, DTS_PKT_BAD_CSUM },
	{ "ipv4 zero udp checksum", f_udp4, m_udp_csum_zero, CFG_FULL, 0, DTS_PKT_UDP },
	{ "ipv6 bad udp checksum", f_udp6, m_udp_csum, CFG_FULL, 0, DTS_PKT_BAD_CSUM },
	{ "ipv6 zero udp checksum", f_udp6, m_udp_csum_zero, CFG_FULL, 0, DTS_PKT_BAD_CSUM },
	{ "ipv6 bad udp checksum behind ext headers", f_udp6_3ext, m_udp_csum, CFG_FULL, 0, DTS_PKT_BAD_CSUM },
	/* bad headers */
	{ "ipv4 IHL 4", f_udp4, m_ihl4, CFG_FULL, 0, DTS_PKT_BAD_HDR },
	{ "ipv4 IHL past the frame", f_udp4, m_ihl15, CFG_FULL, 0, DTS_PKT_TRUNCATED },
	{ "ipv4 version 5", f_udp4, m_version, CFG_FULL, 0, DTS_PKT_BAD_HDR },
	{ "ipv4 total length past the frame", f_udp4, m_totlen_big, CFG_FULL, 0, DTS_PKT_BAD_HDR },
	{ "ipv4 total length below IHL", f_udp4, m_totlen_small, CFG_FULL, 0, DTS_PKT_BAD_HDR },
	{ "udp length past the IP payload", f_udp4, m_udp_len_big, CFG_FULL, 0, DTS_PKT_BAD_HDR },
	{ "udp length 7", f_udp4, m_udp_len_7, CFG_FULL, 0, DTS_PKT_BAD_HDR },
	{ "udp header cut (IP length consistent)", f_udp4, m_udp_hdr_cut, CFG_FULL, 0, DTS_PKT_TRUNCATED },
	{ "ipv6 version 4", f_udp6, m_ip6_version, CFG_FULL, 0, DTS_PKT_BAD_HDR },
	{ "ipv6 payload length past the frame", f_udp6, m_ip6_plen_big, CFG_FULL, 0, DTS_PKT_BAD_HDR },
	{ "ipv6 extension header cut", f_udp6_hbh, m_ext_cut, CFG_FULL, 0, DTS_PKT_TRUNCATED },
	{ "ipv6 9 extension headers", f_udp6_9ext, NULL, CFG_FULL, 0, DTS_PKT_BAD_HDR },
	/* not for us */
	{ "wrong udp port", f_udp4_otherport, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "ipv4 to another address", f_udp4_to_other_ip, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "ipv6 to another address", f_udp6_to_other_ip, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "unicast to another MAC", f_udp4, m_dst_mac_other, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "three VLAN tags", f_udp4_3vlans, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "unknown ethertype", f_unknown_ethertype, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "ipv4 tcp", f_tcp4, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "ipv6 tcp", f_udp6, m_ip6_tcp, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	/* fragments */
	{ "ipv4 first fragment", f_frag4_first, NULL, CFG_FULL, 0, DTS_PKT_FRAG4, .l2_len = 14, .l3_len = 20 },
	{ "ipv4 last fragment", f_frag4_last, NULL, CFG_FULL, 0, DTS_PKT_FRAG4, .l2_len = 14, .l3_len = 20 },
	{ "ipv4 fragment, bad header checksum", f_frag4_first, m_ip4_csum, CFG_FULL, 0, DTS_PKT_BAD_CSUM },
	{ "ipv4 icmp fragment", f_frag4_icmp, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "ipv6 fragment", f_frag6, NULL, CFG_FULL, 0, DTS_PKT_FRAG6, .l3_len = 40 },
	{ "ipv6 fragment after hop-by-hop", f_frag6_after_hbh, NULL, CFG_FULL, 0, DTS_PKT_FRAG6, .l3_len = 48 },
	/* ARP */
	{ "arp request for us", f_arp_req, NULL, CFG_FULL, 0, DTS_PKT_ARP_REPLY, .reply = x_arp_reply },
	{ "arp request for us, padded to 60", f_arp_req_padded, NULL, CFG_FULL, 0, DTS_PKT_ARP_REPLY,
	  .reply = x_arp_reply },
	{ "arp request for another address", f_arp_req_other, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "arp reply", f_arp_reply_in, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "arp request without ipv4", f_arp_req, NULL, CFG_NO_IP, 0, DTS_PKT_NOT_FOR_US },
	{ "arp request, no reply allowed", f_arp_req, NULL, CFG_FULL, DTS_PKT_NO_REPLY, DTS_PKT_NOT_FOR_US },
	/* ICMP */
	{ "icmp echo", f_icmp4_echo, NULL, CFG_FULL, 0, DTS_PKT_ICMP4_REPLY, .reply = x_icmp4_reply },
	{ "vlan icmp echo", f_icmp4_echo_vlan, NULL, CFG_FULL, 0, DTS_PKT_ICMP4_REPLY, .reply = x_icmp4_reply_vlan },
	{ "icmp echo with ethernet padding", f_icmp4_echo_padded, NULL, CFG_FULL, 0, DTS_PKT_ICMP4_REPLY,
	  .reply = x_icmp4_reply },
	{ "icmp echo bad checksum", f_icmp4_echo, m_icmp_csum, CFG_FULL, 0, DTS_PKT_BAD_CSUM },
	{ "icmp echo reply", f_icmp4_echo_reply_in, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "icmp echo from broadcast", f_icmp4_echo, m_src_bcast4, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "icmp echo without ipv4", f_icmp4_echo, NULL, CFG_NO_IP, 0, DTS_PKT_NOT_FOR_US },
	{ "icmp echo, no reply allowed", f_icmp4_echo, NULL, CFG_FULL, DTS_PKT_NO_REPLY, DTS_PKT_NOT_FOR_US },
	/* IPv6 neighbour discovery and echo */
	{ "ns for us (solicited-node, slla)", f_ns, NULL, CFG_FULL, 0, DTS_PKT_ND_REPLY, .reply = x_na },
	{ "ns for us (unicast, no slla)", f_ns_unicast_no_slla, NULL, CFG_FULL, 0, DTS_PKT_ND_REPLY, .reply = x_na,
	  .extra_cap = 8 },
	{ "ns for us (unicast, no slla), no room", f_ns_unicast_no_slla, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "ns duplicate address detection", f_ns_dad, NULL, CFG_FULL, 0, DTS_PKT_ND_REPLY, .reply = x_na_dad,
	  .extra_cap = 8 },
	{ "ns for another target", f_ns_other_target, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "ns with hop limit 64", f_ns_hop64, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "ns bad checksum", f_ns, m_icmp_csum, CFG_FULL, 0, DTS_PKT_BAD_CSUM },
	{ "ns option length 0", f_ns_bad_optlen, NULL, CFG_FULL, 0, DTS_PKT_BAD_HDR },
	{ "ns without ipv6", f_ns, NULL, CFG_NO_IP, 0, DTS_PKT_NOT_FOR_US },
	{ "icmp6 echo", f_icmp6_echo, NULL, CFG_FULL, 0, DTS_PKT_ICMP6_REPLY, .reply = x_icmp6_reply },
	{ "icmp6 echo behind dstopts", f_icmp6_echo_ext, NULL, CFG_FULL, 0, DTS_PKT_ICMP6_REPLY,
	  .reply = x_icmp6_reply },
	{ "icmp6 echo bad checksum", f_icmp6_echo, m_icmp_csum, CFG_FULL, 0, DTS_PKT_BAD_CSUM },
	{ "icmp6 echo to solicited-node group", f_icmp6_echo_snm, NULL, CFG_FULL, 0, DTS_PKT_NOT_FOR_US },
	{ "icmp6 echo, no reply allowed", f_icmp6_echo, NULL, CFG_FULL, DTS_PKT_NO_REPLY, DTS_PKT_NOT_FOR_US },
};

/* Parse a copy of f in a heap buffer of exactly len + extra_cap bytes. Returns the buffer (caller frees). */
static uint8_t *parse_copy(const struct frame *f, size_t len, size_t extra_cap, enum cfg_variant cv, unsigned hw,
			   enum dts_pkt_verdict *v, struct dts_pkt_info *info)
{
	struct dts_pkt_cfg cfg;
	uint8_t *buf = malloc(len + extra_cap ? len + extra_cap : 1);

	cr_assert_not_null(buf);
	memcpy(buf, f->b, len);
	make_cfg(&cfg, cv);
	*v = dts_pkt_parse(&cfg, buf, len, len + extra_cap, hw, info);
	return buf;
}

Test(dpdk_parse, table)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pcase *c = &cases[i];
		struct frame f = { 0 }, want = { 0 };
		struct dts_pkt_info info;
		enum dts_pkt_verdict v;
		uint8_t *buf;

		c->build(&f);
		if (c->mutate)
			c->mutate(&f);
		buf = parse_copy(&f, f.len, c->extra_cap, c->cfg, c->hw, &v, &info);
		cr_expect_eq(v, c->want, "%s: verdict %s, want %s", c->name, dts_pkt_verdict_name(v),
			     dts_pkt_verdict_name(c->want));
		if (v == c->want && v == DTS_PKT_UDP) {
			const char *p = c->payload ? c->payload : PAYLOAD;

			cr_expect_eq(info.payload_len, strlen(p), "%s: payload length %u", c->name, info.payload_len);
			cr_expect(info.payload_off + info.payload_len <= f.len, "%s: payload outside the frame", c->name);
			if (info.payload_len == strlen(p))
				cr_expect(memcmp(buf + info.payload_off, p, strlen(p)) == 0, "%s: payload bytes", c->name);
			cr_expect_eq(info.port_index, c->port_index, "%s: port index", c->name);
			cr_expect_eq(info.src_port, SPORT, "%s: source port", c->name);
			cr_expect_eq(info.dst_port, c->port_index ? DPORT2 : DPORT, "%s: destination port", c->name);
		}
		if (v == c->want && c->reply) {
			c->reply(&want);
			cr_expect_eq(info.reply_len, want.len, "%s: reply length %u, want %zu", c->name, info.reply_len,
				     want.len);
			if (info.reply_len == want.len) {
				for (size_t k = 0; k < want.len; k++)
					if (buf[k] != want.b[k]) {
						cr_expect_fail("%s: reply byte %zu is 0x%02x, want 0x%02x", c->name, k,
							       buf[k], want.b[k]);
						break;
					}
			}
		}
		if (v == c->want && c->l2_len)
			cr_expect_eq(info.l2_len, c->l2_len, "%s: l2_len %u", c->name, info.l2_len);
		if (v == c->want && c->l3_len)
			cr_expect_eq(info.l3_len, c->l3_len, "%s: l3_len %u", c->name, info.l3_len);
		/* A frame the parser did not answer is left untouched. */
		if (!c->reply)
			cr_expect(memcmp(buf, f.b, f.len) == 0, "%s: frame modified without a reply", c->name);
		free(buf);
	}
}

/*
 * Every prefix of a valid frame: cut inside the fixed headers (Ethernet, VLAN tags, the 20/40-byte IP header, the
 * 28-byte ARP body) it is TRUNCATED; cut after them, the IP length field claims bytes the frame lacks: BAD_HDR.
 * Never anything the loop would act on.
 */
Test(dpdk_parse, truncated_at_every_length)
{
	static const struct {
		void (*build)(struct frame *f);
		size_t fixed; /* l2 + fixed l3 header */
	} bases[] = {
		{ f_udp4, 14 + 20 }, { f_udp4_vlan, 18 + 20 }, { f_udp4_qinq, 22 + 20 }, { f_udp4_opts, 14 + 28 },
		{ f_udp6, 14 + 40 }, { f_udp6_3ext, 14 + 40 }, { f_frag4_first, 14 + 20 }, { f_frag6, 14 + 40 },
		{ f_arp_req, 14 + 28 }, { f_icmp4_echo, 14 + 20 }, { f_ns, 14 + 40 }, { f_icmp6_echo, 14 + 40 },
	};

	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
		struct frame f = { 0 };

		bases[b].build(&f);
		for (size_t cut = 0; cut < f.len; cut++) {
			struct dts_pkt_info info;
			enum dts_pkt_verdict v, want = cut < bases[b].fixed ? DTS_PKT_TRUNCATED : DTS_PKT_BAD_HDR;
			uint8_t *buf = parse_copy(&f, cut, 0, CFG_FULL, 0, &v, &info);

			cr_expect_eq(v, want, "base %zu cut at %zu of %zu: %s, want %s", b, cut, f.len,
				     dts_pkt_verdict_name(v), dts_pkt_verdict_name(want));
			free(buf);
		}
	}
}

/* The library's checksum against the naive one, on every length and alignment up to 80 bytes. */
Test(dpdk_parse, checksum_matches_naive)
{
	uint8_t data[96];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 37 + 11);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len <= 80; len++) {
			uint32_t lib = dts_pkt_csum_add(0, data + off, len);
			uint32_t ref = naive_sum(0, data + off, len);
			uint16_t lib_be;
			uint8_t b[2];

			/* the library sums in memory order: compare as bytes */
			lib_be = (uint16_t)lib;
			memcpy(b, &lib_be, 2);
			cr_expect_eq(get16(b), ref, "off %zu len %zu: 0x%04x vs 0x%04x", off, len, get16(b), ref);
		}
}

Test(dpdk_parse, verdict_names)
{
	for (int v = 0; v < DTS_PKT_NVERDICTS; v++) {
		cr_expect_not_null(dts_pkt_verdict_name((enum dts_pkt_verdict)v));
		cr_expect_str_neq(dts_pkt_verdict_name((enum dts_pkt_verdict)v), "unknown");
	}
	cr_expect_str_eq(dts_pkt_verdict_name((enum dts_pkt_verdict)99), "unknown");
}
