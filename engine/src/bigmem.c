/*
 * bigmem.c - large zeroed allocations backed by transparent huge pages where possible (see bigmem.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bigmem.h"

/*
 * LeakSanitizer scans the heap, stacks and globals for pointers, not mmap'd memory. Series records, the index and
 * closed minutes' record arrays live in these regions and hold the only pointers to heap blocks (a timer's sketch
 * bins, a set's members), so under ASan/LSan the regions are registered as roots; otherwise those blocks would be
 * reported as leaked while in use (libFuzzer checks for leaks after each input).
 */
#if defined(__SANITIZE_ADDRESS__)
#define DTS__LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define DTS__LSAN 1
#endif
#endif
#ifdef DTS__LSAN
#include <sanitizer/lsan_interface.h>
#define lsan_root_add(p, n) __lsan_register_root_region((p), (n))
#define lsan_root_del(p, n) __lsan_unregister_root_region((p), (n))
#else
#define lsan_root_add(p, n) ((void)(p), (void)(n))
#define lsan_root_del(p, n) ((void)(p), (void)(n))
#endif

#define HUGE_BYTES ((size_t)2 << 20)
#define SMALL_BYTES ((size_t)64 << 10) /* below this, the heap: a mapping of its own would waste a page per region */

/* The length dts__big_alloc maps for bytes (at least SMALL_BYTES): whole pages, whole huge pages from 2 MiB. */
static size_t map_len(size_t bytes)
{
	const size_t unit = bytes >= HUGE_BYTES ? HUGE_BYTES : 4096;

	return (bytes + unit - 1) & ~(unit - 1);
}

static void *alloc(size_t bytes, bool huge)
{
	size_t len, lead, extra;
	uint8_t *p;

	if (bytes < SMALL_BYTES) {
		/* calloc aligns to 16 bytes only */
		p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
		if (p)
			memset(p, 0, (bytes + 63) & ~(size_t)63);
		return p;
	}
	len = map_len(bytes);
	/* From 2 MiB, over-map by one huge page and trim, so the region starts on a 2 MiB boundary; below, a mapping
	 * of its own still keeps untouched pages out of the resident set, which the heap would not promise. */
	extra = bytes >= HUGE_BYTES ? HUGE_BYTES : 0;
	p = mmap(NULL, len + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (extra) {
		lead = (HUGE_BYTES - ((uintptr_t)p & (HUGE_BYTES - 1))) & (HUGE_BYTES - 1);
		if (lead)
			munmap(p, lead);
		munmap(p + lead + len, HUGE_BYTES - lead);
		p += lead;
		if (huge) /* advice only: EINVAL where THP is compiled out changes nothing */
			(void)madvise(p, len, MADV_HUGEPAGE);
	}
	lsan_root_add(p, len);
	return p;
}

void *dts__big_alloc(size_t bytes)
{
	return alloc(bytes, true);
}

void *dts__page_alloc(size_t bytes)
{
	return alloc(bytes, false);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

int dts__big_prefault(void *p, size_t bytes)
{
	if (!p || bytes < SMALL_BYTES)
		return 0; /* heap memory: alloc() wrote it already */
	/* One call that faults every page in as a write would; before Linux 5.14 (EINVAL), a write to each page. */
	if (madvise(p, map_len(bytes), MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -1;
	for (size_t o = 0; o < bytes; o += 4096)
		((volatile uint8_t *)p)[o] = 0;
	return 0;
}

void dts__big_free(void *p, size_t bytes)
{
	if (!p)
		return;
	if (bytes < SMALL_BYTES) {
		free(p);
		return;
	}
	lsan_root_del(p, map_len(bytes));
	munmap(p, map_len(bytes));
}
