/*
 * bench_mem.c - what a random cache-line access costs on this machine, by how far the lines are spread.
 *
 * The engine's costs at a million series are random accesses to large tables and to series records. On bare metal
 * with huge pages such an access costs a cache miss, which prefetching hides. In a virtual machine whose host maps
 * guest memory with 4 KiB pages, every access to a page outside the TLB's reach also needs a two-dimensional page
 * walk, whatever the guest's huge pages. This program tells the two apart: for each span S it reads the same number
 * of distinct lines (S / 4160) in the same random order, prefetched AHEAD accesses ahead as the engine does, once
 * packed together ("dense": 64 bytes apart, fits the caches and the TLB) and once spread over S ("spread": one line
 * every 4,160 bytes, a line of its own page with a changing cache set). spread minus dense is what the spread costs:
 * cache misses beyond the caches, and page walks beyond the TLB.
 *
 * Output: one line per span (unless --quiet), then one SUMMARY line. Exit 1 if the reads did not all happen (their
 * sum is checked, which also keeps the compiler from leaving them out).
 *
 * --work N puts N rounds of arithmetic (four chained add, xor and shift updates and the loop's own, ~10 instructions a
 * round, no memory) between two reads, as the engine decodes a line between two table accesses (~250-300
 * instructions: --work 30). --grouped issues the prefetches of the next AHEAD reads together, in a loop of their own,
 * while the current AHEAD are read, instead of one prefetch per read. docs/performance.md, "Session 15", says what
 * the two showed here: with work between the reads a spread read costs several times what the plain loop says, and
 * grouped prefetches take most of that back in this loop - but not in the engine's line loop, where the same change
 * was measured and left out.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench_common.h"

#define STRIDE 4160 /* a page and a line: each line on a page of its own, in a different cache set */
#define SPANS_MAX 16

struct opts {
	uint64_t spans_mb[SPANS_MAX];
	unsigned nspans;
	uint64_t accesses;
	unsigned ahead;
	unsigned work;
	int grouped;
	int huge;
	int quiet;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_mem [--spans MB,MB,...] [--accesses N] [--ahead N] [--work N] [--grouped]\n"
		   "                 [--no-huge] [--quiet]\n"
		   "Random cache-line reads, packed vs spread over each span (see the header of bench/bench_mem.c).\n"
		   "  --spans LIST    spans in MiB, comma-separated, 1..65536 each (default 4,16,64,256,1024)\n"
		   "  --accesses N    reads per pattern and span (default 8388608)\n"
		   "  --ahead N       prefetch distance in accesses, 0..64 (default 16, as the merger's fold)\n"
		   "  --work N        rounds of arithmetic between two reads, 0..1000 (default 0; ~10 instructions\n"
		   "                  each)\n"
		   "  --grouped       prefetch the next AHEAD reads together, not one per read (needs --ahead >= 1)\n"
		   "  --no-huge       advise against transparent huge pages (default: advise for them)\n"
		   "  --quiet         only the SUMMARY line\n"
		   "  --help          this text\n");
}

static int parse_spans(const char *s, struct opts *o)
{
	char buf[256], *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	o->nspans = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (o->nspans == SPANS_MAX || parse_u64_in(tok, 1, 65536, &v) != 0)
			return -EINVAL;
		o->spans_mb[o->nspans++] = v;
	}
	return o->nspans ? 0 : -EINVAL;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = { { "spans", required_argument, NULL, 's' },
					    { "accesses", required_argument, NULL, 'n' },
					    { "ahead", required_argument, NULL, 'a' },
					    { "work", required_argument, NULL, 'w' },
					    { "grouped", no_argument, NULL, 'g' },
					    { "no-huge", no_argument, NULL, 'H' },
					    { "quiet", no_argument, NULL, 'q' },
					    { "help", no_argument, NULL, 'h' },
					    { NULL, 0, NULL, 0 } };
	uint64_t v;
	int ch, rc;

	*o = (struct opts){ .spans_mb = { 4, 16, 64, 256, 1024 }, .nspans = 5, .accesses = 8u << 20, .ahead = 16,
			    .huge = 1 };
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's':
			if (parse_spans(optarg, o) != 0) {
				fprintf(stderr,
					"bench_mem: --spans: '%s' is not a list of 1..16 spans of 1..65536 MiB\n",
					optarg);
				return 2;
			}
			break;
		case 'n':
			if (opt_u64("bench_mem", "accesses", optarg, 1024, 1ull << 32, &o->accesses) != 0)
				return 2;
			break;
		case 'a':
			if (opt_u64("bench_mem", "ahead", optarg, 0, 64, &v) != 0)
				return 2;
			o->ahead = (unsigned)v;
			break;
		case 'w':
			if (opt_u64("bench_mem", "work", optarg, 0, 1000, &v) != 0)
				return 2;
			o->work = (unsigned)v;
			break;
		case 'g':
			o->grouped = 1;
			break;
		case 'H':
			o->huge = 0;
			break;
		default:
			if ((rc = opt_common(ch, &o->quiet, usage)) != 0)
				return rc;
			break;
		}
	}
	if (o->grouped && o->ahead == 0) {
		fprintf(stderr, "bench_mem: --grouped needs --ahead of 1 or more (the size of a group)\n");
		return 2;
	}
	return opt_no_operands("bench_mem", argc, argv, usage) ? 2 : 0;
}

static volatile uint64_t work_sink; /* where the arithmetic's result goes */

/* rounds of arithmetic on four chained values, kept by the empty asm (the compiler cannot fold them away) */
static inline uint64_t work(uint64_t x, unsigned rounds)
{
	uint64_t a = x, b = x + 1, c = x + 2, d = x + 3;

	for (unsigned i = 0; i < rounds; i++) {
		a += i;
		b ^= a;
		c += b >> 3;
		d ^= c + i;
		__asm__ volatile("" : "+r"(a), "+r"(b), "+r"(c), "+r"(d));
	}
	return a ^ b ^ c ^ d;
}

/*
 * Nanoseconds per read of base + idx[i] * step, with o->work rounds of arithmetic before each; prefetching o->ahead
 * reads ahead, one per read, or (o->grouped) the next group of o->ahead reads all at once while a group is read.
 */
static double run(const struct opts *o, const uint8_t *base, size_t step, const uint32_t *idx, uint64_t n,
		  uint64_t *sink)
{
	const unsigned ahead = o->ahead;
	uint64_t sum = 0, w = 1;
	int64_t t0 = mono_ns();

	if (!o->grouped) {
		for (uint64_t i = 0; i < n; i++) {
			if (ahead && i + ahead < n)
				__builtin_prefetch(base + (size_t)idx[i + ahead] * step);
			w = work(w, o->work);
			sum += base[(size_t)idx[i] * step];
		}
	} else {
		for (uint64_t g = 0; g < n; g += ahead) {
			const uint64_t end = g + ahead < n ? g + ahead : n;
			const uint64_t next_end = end + ahead < n ? end + ahead : n;

			if (g == 0)
				for (uint64_t i = 0; i < end; i++)
					__builtin_prefetch(base + (size_t)idx[i] * step);
			for (uint64_t i = end; i < next_end; i++)
				__builtin_prefetch(base + (size_t)idx[i] * step);
			for (uint64_t i = g; i < end; i++) {
				w = work(w, o->work);
				sum += base[(size_t)idx[i] * step];
			}
		}
	}
	*sink += sum;
	work_sink ^= w;
	return (double)(mono_ns() - t0) / (double)n;
}

int main(int argc, char **argv)
{
	struct opts o;
	double spread[SPANS_MAX], dense[SPANS_MAX];
	uint64_t rng = 0x243f6a8885a308d3ull, sink = 0;
	uint32_t *idx;
	int rc = parse_args(argc, argv, &o);

	if (rc)
		return rc == 1 ? 0 : rc;
	idx = malloc(o.accesses * sizeof(*idx));
	if (!idx) {
		fprintf(stderr, "bench_mem: out of memory for %llu accesses\n", (unsigned long long)o.accesses);
		return 1;
	}
	for (unsigned k = 0; k < o.nspans; k++) {
		const size_t bytes = (size_t)o.spans_mb[k] << 20, lines = bytes / STRIDE;
		uint8_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED) {
			fprintf(stderr, "bench_mem: mmap of %llu MiB: %s\n", (unsigned long long)o.spans_mb[k],
				strerror(errno));
			free(idx);
			return 1;
		}
		(void)madvise(p, bytes, o.huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		memset(p, 1, bytes);
		for (uint64_t i = 0; i < o.accesses; i++)
			idx[i] = (uint32_t)rng_below(&rng, lines ? lines : 1);
		dense[k] = run(&o, p, 64, idx, o.accesses, &sink);
		spread[k] = run(&o, p, STRIDE, idx, o.accesses, &sink);
		munmap(p, bytes);
		if (!o.quiet)
			printf("span_mb=%llu lines=%zu dense_ns=%.2f spread_ns=%.2f\n",
			       (unsigned long long)o.spans_mb[k], lines, dense[k], spread[k]);
	}
	free(idx);
	if (sink != 2 * o.accesses * o.nspans) { /* every byte is 1: the sum is the number of reads */
		fprintf(stderr, "bench_mem: read %llu bytes of value 1, expected %llu\n", (unsigned long long)sink,
			(unsigned long long)(2 * o.accesses * o.nspans));
		return 1;
	}
	printf("SUMMARY bench=mem accesses=%llu ahead=%u work=%u grouped=%d huge=%d", (unsigned long long)o.accesses,
	       o.ahead, o.work, o.grouped, o.huge);
	for (unsigned k = 0; k < o.nspans; k++)
		printf(" spread_ns_%llumb=%.2f dense_ns_%llumb=%.2f", (unsigned long long)o.spans_mb[k], spread[k],
		       (unsigned long long)o.spans_mb[k], dense[k]);
	printf("\n");
	return 0;
}
