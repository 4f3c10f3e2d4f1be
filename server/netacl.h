/*
 * netacl.h - allowed source networks of a listener (config `statsd_allow`): a short list of IPv4/IPv6 CIDR prefixes
 * checked per datagram (UDP) or per connection (TCP) on the receive path.
 *
 * Representation: every network is an IPv6 prefix; an IPv4 network a.b.c.d/n is the IPv4-mapped ::ffff:a.b.c.d/96+n,
 * and an IPv4 source is mapped the same way, so one IPv6 socket receiving both families needs no special case. A
 * check is at most DTS_NETACL_MAX x (two 64-bit AND + compare): no system call, no allocation, no lock.
 *
 * Threading: parsed once at start (main thread), then read-only; any number of receive threads may check at once.
 */
#ifndef DTS_NETACL_H
#define DTS_NETACL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

/* Most networks in one list: enough for any sane allow list, and bounds the per-datagram work. */
#define DTS_NETACL_MAX 32

struct dts_net {
	uint64_t addr[2]; /* network address, 16 bytes in network order, host bits zero */
	uint64_t mask[2];
};

struct dts_netacl {
	unsigned n; /* 0 = every source allowed */
	struct dts_net net[DTS_NETACL_MAX];
};

/*
 * Parse "NET[,NET...]" where NET is ADDR[/PREFIX] (IPv4 or IPv6 literal; no prefix = that one host; spaces around
 * entries are ignored). An empty or all-blank string gives an empty list (no restriction). A network with host bits
 * set ("10.0.0.1/8") is refused, as it is almost always a typo. Returns 0, or -EINVAL with why set to a message
 * naming the bad entry (without the key name), e.g. "'10.0.0.1/8' has bits set after the prefix (10.0.0.0/8?)".
 * Pure; any thread.
 */
int dts_netacl_parse(const char *s, struct dts_netacl *out, char *why, size_t whylen);

/* The 16-byte IPv6 form of a source address (IPv4 mapped to ::ffff:a.b.c.d). False for other families. Pure. */
static inline bool dts_netacl_source(const struct sockaddr_storage *ss, uint64_t out[2])
{
	if (ss->ss_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
		return true;
	}
	if (ss->ss_family == AF_INET) {
		uint8_t b[16] = { [10] = 0xff, [11] = 0xff };

		memcpy(b + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		memcpy(out, b, 16);
		return true;
	}
	return false;
}

/* True when the list is empty or addr (as from dts_netacl_source) is in one of its networks. Pure; hot path. */
static inline bool dts_netacl_allows_addr(const struct dts_netacl *a, const uint64_t addr[2])
{
	for (unsigned i = 0; i < a->n; i++)
		if ((addr[0] & a->net[i].mask[0]) == a->net[i].addr[0] && (addr[1] & a->net[i].mask[1]) == a->net[i].addr[1])
			return true;
	return a->n == 0;
}

/* True when the list is empty or the source is allowed; a source of another family (or none) only when empty. */
static inline bool dts_netacl_allows(const struct dts_netacl *a, const struct sockaddr_storage *ss)
{
	uint64_t addr[2];

	if (a->n == 0)
		return true;
	return dts_netacl_source(ss, addr) && dts_netacl_allows_addr(a, addr);
}

#endif /* DTS_NETACL_H */
