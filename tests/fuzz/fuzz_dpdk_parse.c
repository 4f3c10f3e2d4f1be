/*
 * fuzz_dpdk_parse.c - libFuzzer target for the DPDK packet classifier (dpdk/src/parse.c).
 *
 * Input layout: byte 0 = receive offload flags (checksum-good/bad bits as the poll loop passes them), byte 1 = spare
 * tailroom (0..15) after the frame for replies built in place, the rest = the Ethernet frame.
 * Invariants: a UDP verdict's payload lies inside the frame; a reply fits in frame + tailroom. ASan checks that the
 * parser reads nothing outside the buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dts/dpdk_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dts_pkt_cfg cfg = { .mac = { 2, 0, 0, 0, 0, 1 }, .has_ipv4 = true, .ipv4 = { 192, 0, 2, 1 },
				   .has_ipv6 = true, .ipv6 = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 },
				   .udp_ports = { 8125 }, .n_udp_ports = 1 };
	struct dts_pkt_info info;
	enum dts_pkt_verdict v;
	unsigned flags;
	size_t extra, len;
	uint8_t *buf;

	if (size < 2)
		return 0;
	flags = data[0] & 0x1f;
	extra = data[1] & 15;
	len = size - 2;
	buf = malloc(len + extra + 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 2, len);
	v = dts_pkt_parse(&cfg, buf, len, len + extra, flags, &info);
	if (v == DTS_PKT_UDP && info.payload_off + info.payload_len > len)
		abort();
	if (v >= DTS_PKT_ARP_REPLY && v <= DTS_PKT_ICMP6_REPLY && info.reply_len > len + extra)
		abort();
	free(buf);
	return 0;
}
