/*
 * netacl.c - parsing of allowed source network lists (contract in netacl.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netacl.h"

/* Longest entry: a full IPv6 literal with an embedded IPv4 tail and "/128". */
#define ENTRY_MAX (INET6_ADDRSTRLEN + 4)

static int parse_one(const char *e, struct dts_net *net, char *why, size_t whylen)
{
	char addr[ENTRY_MAX + 1], *slash, *end;
	uint8_t b[16] = { 0 }, m[16] = { 0 };
	unsigned bits, max, prefix;
	long p;

	if (strlen(e) > ENTRY_MAX) {
		snprintf(why, whylen, "'%.60s...' is not an address or network", e);
		return -EINVAL;
	}
	strcpy(addr, e);
	slash = strchr(addr, '/');
	if (slash)
		*slash++ = '\0';
	if (inet_pton(AF_INET, addr, b + 12) == 1) {
		b[10] = b[11] = 0xff;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, b) == 1) {
		max = 128;
	} else {
		snprintf(why, whylen, "'%s' is not an IPv4 or IPv6 address (expected ADDR or ADDR/PREFIX, e.g. "
			 "10.0.0.0/8 or fd00::/8)", e);
		return -EINVAL;
	}
	prefix = max;
	if (slash) {
		errno = 0;
		p = strtol(slash, &end, 10);
		if (!*slash || *end || errno || p < 0 || p > (long)max || *slash == '+' || *slash == '-') {
			snprintf(why, whylen, "'%s': the prefix length must be 0..%u", e, max);
			return -EINVAL;
		}
		prefix = (unsigned)p;
	}
	bits = prefix + (128 - max); /* an IPv4 prefix counts after the 96 bits of ::ffff:0:0/96 */
	for (unsigned i = 0; i < 16; i++) {
		unsigned take = bits >= 8 ? 8 : bits;

		m[i] = (uint8_t)(take ? 0xff << (8 - take) : 0);
		bits -= take;
		if (b[i] & ~m[i]) {
			char shown[INET6_ADDRSTRLEN];

			for (unsigned j = i; j < 16; j++)
				b[j] &= m[j];
			inet_ntop(max == 32 ? AF_INET : AF_INET6, max == 32 ? (void *)(b + 12) : (void *)b, shown,
				  sizeof(shown));
			snprintf(why, whylen, "'%s' has bits set after the prefix (%s/%u?)", e, shown, prefix);
			return -EINVAL;
		}
	}
	memcpy(net->addr, b, 16);
	memcpy(net->mask, m, 16);
	return 0;
}

int dts_netacl_parse(const char *s, struct dts_netacl *out, char *why, size_t whylen)
{
	struct dts_netacl a = { 0 };
	const char *p = s;

	while (*p) {
		const char *q = p, *end;
		char e[ENTRY_MAX + 2];
		size_t n;

		while (*q == ' ' || *q == '\t')
			q++;
		end = strchr(q, ',');
		if (!end)
			end = q + strlen(q);
		n = (size_t)(end - q);
		while (n && (q[n - 1] == ' ' || q[n - 1] == '\t'))
			n--;
		if (n == 0) {
			if (*end == ',' || p != s) {
				snprintf(why, whylen, "empty entry in the list (two commas, or a comma at an end)");
				return -EINVAL;
			}
		} else {
			if (a.n == DTS_NETACL_MAX) {
				snprintf(why, whylen, "more than %d networks", DTS_NETACL_MAX);
				return -EINVAL;
			}
			if (n > ENTRY_MAX)
				n = ENTRY_MAX + 1; /* parse_one reports it as too long */
			memcpy(e, q, n);
			e[n] = '\0';
			if (parse_one(e, &a.net[a.n], why, whylen) != 0)
				return -EINVAL;
			a.n++;
		}
		p = *end ? end + 1 : end;
		if (*end == ',' && !*p) {
			snprintf(why, whylen, "empty entry in the list (two commas, or a comma at an end)");
			return -EINVAL;
		}
	}
	*out = a;
	return 0;
}
