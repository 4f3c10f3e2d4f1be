/*
 * bench_fault.c - what the first touch of fresh memory costs on this machine, with 4 KiB pages and with transparent
 * huge pages.
 *
 * Everything the engine allocates as it grows - series records, the series index, the per-core tables - is fresh
 * anonymous memory, and the kernel hands it over zeroed, one page fault per page, on its first touch. On bare metal
 * that is a few hundred nanoseconds per 4 KiB page and about 10 GB/s of zeroing. In a virtual machine each fault can
 * cost far more (a paravirtualised guest kernel traps to the host to change page tables), and memory the host has
 * not backed yet costs the host's own fault on every 4 KiB of it, whatever the guest's page size. For each round this
 * program maps --mb MiB, touches one byte per 4 KiB page (which faults every page in, zeroed), and times it; then it
 * writes the whole region again (memset: the cost of the same bytes once resident) and unmaps it. Rounds alternate
 * between 4 KiB pages and huge pages (MADV_HUGEPAGE on a 2 MiB-aligned region), so both see the same state of the
 * host. A later round of the same kind can be faster than the first: the guest kernel hands out memory that an
 * earlier round faulted in and the host had backed then.
 *
 * Output: one line per round (unless --quiet), then one SUMMARY line with the first and the best round of each kind.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench_common.h"

#define HUGE_BYTES ((size_t)2 << 20)
#define PAGE_BYTES 4096

struct opts {
	uint64_t mb;
	uint64_t rounds;
	int quiet;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_fault [--mb N] [--rounds N] [--quiet]\n"
		   "First touch of fresh anonymous memory, 4 KiB pages vs transparent huge pages (see the header of\n"
		   "bench/bench_fault.c).\n"
		   "  --mb N        MiB mapped and touched per round, 2..65536 (default 1024)\n"
		   "  --rounds N    rounds of each page kind, alternated, 1..100 (default 3)\n"
		   "  --quiet       only the SUMMARY line\n"
		   "  --help        this text\n");
}

/* 0: run; 1: --help printed; 2: bad arguments (said on stderr). */
static int parse_args(int argc, char **argv, struct opts *o)
{
	const struct num_opt nums[] = { { "mb", 2, 65536, &o->mb }, { "rounds", 1, 100, &o->rounds } };

	o->mb = 1024;
	o->rounds = 3;
	o->quiet = 0;
	return opt_parse_nums("bench_fault", argc, argv, nums, 2, &o->quiet, usage);
}

struct round {
	double touch_s; /* first touch, one byte per 4 KiB page */
	double write_s; /* memset of the whole region, once resident */
};

/* One round: map len bytes (2 MiB-aligned, advised for huge pages when huge), touch, write, unmap. */
static int run_round(size_t len, int huge, struct round *r)
{
	uint8_t *map, *p;
	size_t lead;
	int64_t t0, t1, t2;

	map = mmap(NULL, len + HUGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		return -errno;
	lead = (HUGE_BYTES - ((uintptr_t)map & (HUGE_BYTES - 1))) & (HUGE_BYTES - 1);
	p = map + lead;
	/* advice only: where THP is off or compiled out the round runs on 4 KiB pages, which the SUMMARY's thp field of
	 * /sys shows */
	(void)madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	t0 = mono_ns();
	for (size_t off = 0; off < len; off += PAGE_BYTES)
		((volatile uint8_t *)p)[off] = 1;
	t1 = mono_ns();
	memset(p, 2, len);
	t2 = mono_ns();
	if (p[len - 1] != 2) /* keeps the memset */
		return -EIO;
	munmap(map, len + HUGE_BYTES);
	r->touch_s = (double)(t1 - t0) / 1e9;
	r->write_s = (double)(t2 - t1) / 1e9;
	return 0;
}

static void thp_mode(char *out, size_t n)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	char line[128], *a, *b;

	snprintf(out, n, "unknown");
	if (!f)
		return;
	if (fgets(line, sizeof(line), f) && (a = strchr(line, '[')) && (b = strchr(a, ']'))) {
		*b = '\0';
		snprintf(out, n, "%s", a + 1);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct round first[2] = { { 0, 0 }, { 0, 0 } }, best[2] = { { 0, 0 }, { 0, 0 } };
	char thp[32];
	int rc = parse_args(argc, argv, &o);
	const size_t len = (size_t)o.mb << 20;
	const double pages = (double)len / PAGE_BYTES;

	if (rc)
		return rc == 1 ? 0 : rc;
	thp_mode(thp, sizeof(thp));
	for (uint64_t i = 0; i < o.rounds; i++) {
		for (int huge = 0; huge < 2; huge++) {
			struct round r;

			if ((rc = run_round(len, huge, &r)) != 0) {
				fprintf(stderr, "bench_fault: round %llu (%s pages): %s\n", (unsigned long long)i + 1,
					huge ? "huge" : "4 KiB", strerror(-rc));
				return 1;
			}
			if (i == 0)
				first[huge] = r;
			if (i == 0 || r.touch_s < best[huge].touch_s)
				best[huge] = r;
			if (!o.quiet)
				fprintf(stderr,
					"round %llu, %s pages: first touch %.3f s (%.0f ns per 4 KiB, %.2f GB/s), "
					"written again %.3f s (%.2f GB/s)\n",
					(unsigned long long)i + 1, huge ? "huge" : "4 KiB", r.touch_s,
					r.touch_s * 1e9 / pages, (double)len / r.touch_s / 1e9, r.write_s,
					(double)len / r.write_s / 1e9);
		}
	}
	printf("SUMMARY bench=fault mb=%llu rounds=%llu thp=%s", (unsigned long long)o.mb, (unsigned long long)o.rounds,
	       thp);
	printf(" small_first_ns_per_4k=%.0f small_best_ns_per_4k=%.0f", first[0].touch_s * 1e9 / pages,
	       best[0].touch_s * 1e9 / pages);
	printf(" huge_first_ns_per_4k=%.0f huge_best_ns_per_4k=%.0f", first[1].touch_s * 1e9 / pages,
	       best[1].touch_s * 1e9 / pages);
	printf(" resident_write_gb_per_s=%.2f\n", (double)len / best[1].write_s / 1e9);
	return 0;
}
