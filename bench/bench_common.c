/*
 * bench_common.c - what the benchmark binaries share: a fixed-seed PRNG (splitmix64), option parsing helpers, the
 * type mix, a monotonic clock. Benchmarks only; not part of the product.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"

const char *const type_key[DTS_NTYPES] = { "c", "ms", "g", "s" };

uint64_t rng_next(uint64_t *s)
{
	__uint128_t t;

	*s += 0xa0761d6478bd642fULL;
	t = (__uint128_t)*s * (*s ^ 0xe7037ed1a0b428dbULL);
	return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

/* Uniform in [0, n) (Lemire's multiply; the bias is below 2^-40 for the n used here). */
uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return (uint64_t)(((__uint128_t)rng_next(s) * n) >> 64);
}

double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * 0x1p-53;
}

double rng_normal(uint64_t *s)
{
	double u = rng_unit(s), v = rng_unit(s);

	return sqrt(-2.0 * log(u > 0 ? u : 0x1p-53)) * cos(2.0 * M_PI * v);
}

int parse_u64(const char *s, uint64_t *out)
{
	char *e;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &e, 10);
	if (errno || e == s || *e || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

int opt_u64(const char *prog, const char *name, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out)
{
	uint64_t v;

	if (parse_u64(arg, &v) != 0 || v < lo || v > hi) {
		fprintf(stderr, "%s: --%s: '%s' is not a number in %llu..%llu\n", prog, name, arg, (unsigned long long)lo,
			(unsigned long long)hi);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int opt_common(int ch, int *quiet, void (*usage)(FILE *))
{
	switch (ch) {
	case 'q':
		*quiet = 1;
		return 0;
	case 'h':
		usage(stdout);
		return 1;
	default:
		usage(stderr);
		return 2;
	}
}

int opt_no_operands(const char *prog, int argc, char **argv, void (*usage)(FILE *))
{
	if (optind >= argc)
		return 0;
	fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
	usage(stderr);
	return -EINVAL;
}

/* "c=70,ms=20,g=10,s=0" -> weights. Returns 0 or -EINVAL. */
int parse_mix(const char *s, unsigned mix[DTS_NTYPES])
{
	char buf[128];
	unsigned total = 0;
	char *save, *tok;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	memset(mix, 0, DTS_NTYPES * sizeof(mix[0]));
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		uint64_t v;
		int t;

		if (!eq)
			return -EINVAL;
		*eq = '\0';
		for (t = 0; t < DTS_NTYPES; t++)
			if (strcmp(tok, type_key[t]) == 0)
				break;
		if (t == DTS_NTYPES || parse_u64(eq + 1, &v) != 0 || v > 1000000)
			return -EINVAL;
		mix[t] = (unsigned)v;
		total += (unsigned)v;
	}
	return total ? 0 : -EINVAL;
}

int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
