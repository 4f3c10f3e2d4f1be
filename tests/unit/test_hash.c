/*
 * test_hash.c - the identity hash: every byte of every length counts, lengths are part of the hash, bits are mixed
 * (tables index with hash & mask, so the low bits matter most).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "dts/hash.h"

Test(hash, every_byte_of_every_length_matters)
{
	unsigned char buf[80];

	for (size_t n = 1; n <= sizeof(buf); n++) {
		memset(buf, 'a', sizeof(buf));
		uint64_t h0 = dts_hash64(buf, n, DTS_HASH_SEED);

		for (size_t i = 0; i < n; i++) {
			buf[i] ^= 0x01;
			cr_expect_neq(dts_hash64(buf, n, DTS_HASH_SEED), h0, "length %zu, byte %zu ignored", n, i);
			buf[i] ^= 0x01;
		}
	}
}

Test(hash, length_is_part_of_the_hash)
{
	static const unsigned char zeros[64];

	for (size_t n = 0; n < 63; n++)
		cr_expect_neq(dts_hash64(zeros, n, DTS_HASH_SEED), dts_hash64(zeros, n + 1, DTS_HASH_SEED), "n=%zu", n);
}

Test(hash, seed_changes_the_hash)
{
	cr_expect_neq(dts_hash64("api.query", 9, 1), dts_hash64("api.query", 9, 2));
	cr_expect_neq(dts_hash64_more(7, "x", 1), dts_hash64("x", 1, 7));
}

Test(hash, low_bits_are_well_mixed)
{
	/* Sequential names (counter_0 .. counter_65535) must spread evenly over 1024 buckets (hash & 1023). */
	unsigned counts[1024] = { 0 };
	char name[32];

	for (unsigned i = 0; i < 65536; i++) {
		int n = snprintf(name, sizeof(name), "counter_%u", i);
		counts[dts_hash64(name, (size_t)n, DTS_HASH_SEED) & 1023]++;
	}
	for (unsigned b = 0; b < 1024; b++)
		cr_expect(counts[b] > 24 && counts[b] < 104, "bucket %u holds %u of 65536 (expected ~64)", b, counts[b]);
}

Test(hash, bit_flips_change_about_half_the_output)
{
	unsigned char buf[24] = "proc7.counter_12345:1|c";
	uint64_t h0 = dts_hash64(buf, 23, DTS_HASH_SEED);
	unsigned total = 0, trials = 0;

	for (size_t i = 0; i < 23; i++)
		for (int bit = 0; bit < 8; bit++) {
			buf[i] ^= (unsigned char)(1u << bit);
			total += (unsigned)__builtin_popcountll(dts_hash64(buf, 23, DTS_HASH_SEED) ^ h0);
			trials++;
			buf[i] ^= (unsigned char)(1u << bit);
		}
	double avg = (double)total / trials;
	cr_expect(avg > 28 && avg < 36, "average flipped output bits %.1f, want ~32", avg);
}
