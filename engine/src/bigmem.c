/*
 * bigmem.c - large zeroed allocations backed by transparent huge pages where possible (see bigmem.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "bigmem.h"

#define HUGE_BYTES ((size_t)2 << 20)

void *dts__big_alloc(size_t bytes)
{
	size_t len, lead;
	uint8_t *p;

	if (bytes < HUGE_BYTES)
		return calloc(1, bytes ? bytes : 1);
	len = (bytes + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
	/* Over-map by one huge page and trim, so the region starts on a 2 MiB boundary. */
	p = mmap(NULL, len + HUGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	lead = (HUGE_BYTES - ((uintptr_t)p & (HUGE_BYTES - 1))) & (HUGE_BYTES - 1);
	if (lead)
		munmap(p, lead);
	munmap(p + lead + len, HUGE_BYTES - lead);
	p += lead;
	(void)madvise(p, len, MADV_HUGEPAGE); /* advice only: EINVAL where THP is compiled out changes nothing */
	return p;
}

void dts__big_free(void *p, size_t bytes)
{
	if (!p)
		return;
	if (bytes < HUGE_BYTES) {
		free(p);
		return;
	}
	munmap(p, (bytes + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1));
}
