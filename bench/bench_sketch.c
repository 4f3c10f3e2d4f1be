/*
 * bench_sketch.c - the moving window's timer quantiles: dts_sketch_quantiles2, as the merger's 5-second publication
 * calls it for every timer (bot10, top10, p50, p99 of the current minute with the previous one weighted 0.5).
 *
 * Builds --pairs pairs of sketches, each of 50-500 lognormal timer values (median 20 ms, sigma 1: two to three
 * decades, a few hundred bins), then calls dts_sketch_quantiles2 --calls times over them in turn. Prints one SUMMARY
 * line with the time per call and a checksum of every result's bits, which two builds must agree on when they claim
 * the same results. Under `valgrind --tool=callgrind --toggle-collect=dts_sketch_quantiles2` the instructions per
 * call are the function's Ir over `calls`.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "dts/sketch.h"

struct opts {
	uint64_t pairs, calls, seed;
	int quiet;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_sketch [--pairs N] [--calls N] [--seed N] [--quiet]\n"
		   "Times dts_sketch_quantiles2 on pairs of lognormal timer sketches (bench/bench_sketch.c).\n"
		   "  --pairs N   sketch pairs, 1..100000 (default 2000)\n"
		   "  --calls N   calls in total, over the pairs in turn, 1..10^10 (default 2000000)\n"
		   "  --seed N    seed of the values (default 1)\n"
		   "  --quiet     only the SUMMARY line\n"
		   "  --help      this text\n");
}

/* 0: run; 1: --help printed; 2: bad arguments (said on stderr). */
static int parse_args(int argc, char **argv, struct opts *o)
{
	const struct num_opt nums[] = { { "pairs", 1, 100000, &o->pairs },
					{ "calls", 1, 10000000000ULL, &o->calls },
					{ "seed", 0, UINT64_MAX, &o->seed } };

	*o = (struct opts){ .pairs = 2000, .calls = 2000000, .seed = 1 };
	return opt_parse_nums("bench_sketch", argc, argv, nums, 3, &o->quiet, usage);
}

/* A sketch of 50-500 lognormal values (median 20, sigma 1). Returns 0 or the error of dts_sketch_add. */
static int fill(struct dts_sketch *s, uint64_t *rng)
{
	const uint64_t n = 50 + rng_below(rng, 451);

	dts_sketch_init(s);
	for (uint64_t i = 0; i < n; i++) {
		int rc = dts_sketch_add(s, 20.0 * exp(rng_normal(rng)), 1.0);

		if (rc != 0)
			return rc;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const double q[4] = { 0.1, 0.9, 0.5, 0.99 };
	struct dts_sketch *sk;
	struct opts o;
	uint64_t rng, sum = 0;
	int64_t t0, ns;
	int rc = parse_args(argc, argv, &o);

	if (rc)
		return rc == 1 ? 0 : rc;
	rng = o.seed;
	sk = calloc(2 * o.pairs, sizeof(*sk));
	if (!sk) {
		fprintf(stderr, "bench_sketch: out of memory for %llu pairs\n", (unsigned long long)o.pairs);
		return 1;
	}
	for (uint64_t i = 0; i < 2 * o.pairs; i++) {
		if ((rc = fill(&sk[i], &rng)) != 0) {
			fprintf(stderr, "bench_sketch: building sketch %llu: %s\n", (unsigned long long)i, strerror(-rc));
			return 1;
		}
	}
	t0 = mono_ns();
	for (uint64_t c = 0, p = 0; c < o.calls; c++, p = p + 1 == o.pairs ? 0 : p + 1) {
		double out[4];

		dts_sketch_quantiles2(&sk[2 * p], &sk[2 * p + 1], 0.5, q, 4, out);
		for (int i = 0; i < 4; i++) {
			uint64_t b;

			memcpy(&b, &out[i], sizeof(b));
			sum = sum * 31 + b; /* every bit of every result, in order */
		}
	}
	ns = mono_ns() - t0;
	if (!o.quiet)
		printf("pairs=%llu calls=%llu seconds=%.3f\n", (unsigned long long)o.pairs, (unsigned long long)o.calls,
		       (double)ns / 1e9);
	printf("SUMMARY bench=sketch pairs=%llu calls=%llu ns_per_call=%.1f checksum=%016llx\n",
	       (unsigned long long)o.pairs, (unsigned long long)o.calls, (double)ns / (double)o.calls,
	       (unsigned long long)sum);
	for (uint64_t i = 0; i < 2 * o.pairs; i++)
		dts_sketch_free(&sk[i]);
	free(sk);
	return 0;
}
