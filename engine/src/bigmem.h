/*
 * bigmem.h - large, long-lived, zeroed allocations: the per-core tables' arrays, the merger's series memory and index.
 *
 * Both are probed at a random position per line or per folded entry. Backed by 4 KiB pages, a table of 2^21 buckets
 * (128 MiB) costs a TLB miss - a page walk that itself misses the cache - on nearly every access. Regions of at least
 * 2 MiB are therefore mapped 2 MiB-aligned and marked MADV_HUGEPAGE, so that transparent huge pages back them when the
 * system allows it (/sys/kernel/mm/transparent_hugepage/enabled set to "madvise" or "always"); where it does not, or
 * no huge page is free, they are ordinary pages and everything works the same, only slower. Huge pages also make the
 * first touch cheaper: one fault per 2 MiB instead of 512 (a fault costs ~12 us of CPU on the paravirtualised test
 * machine, docs/performance.md "Session 8"). Regions of 64 KiB to 2 MiB get a mapping of their own (page-aligned,
 * resident only as touched), smaller ones come from the heap. Any thread; not for hot paths (mmap is a system call).
 */
#ifndef DTS_BIGMEM_H
#define DTS_BIGMEM_H

#include <stddef.h>

/* bytes of zeroed memory, aligned to at least 64 bytes, or NULL (errno set). Free with dts__big_free(p, bytes). */
void *dts__big_alloc(size_t bytes);

/*
 * The same without the huge-page advice, for arrays that are large when mapped at their room but are touched only a
 * little at a time, where a 2 MiB page per touched region would waste more memory than the faults it saves.
 */
void *dts__page_alloc(size_t bytes);

/*
 * Fault in the first bytes of a region that dts__big_alloc or dts__page_alloc returned, writable, now: its later first
 * use then costs no page fault and no zeroing (huge pages where the region has them). Slow, since the kernel zeroes
 * every page: 2-3 ns per byte on the test machine for memory its host has not backed yet. 0, or -1 with errno set
 * (ENOMEM) when the system could not provide the memory; the region stays usable either way. Any thread.
 */
int dts__big_prefault(void *p, size_t bytes);

/* Free what dts__big_alloc(bytes) or dts__page_alloc(bytes) returned (bytes must be the same; NULL is ignored). */
void dts__big_free(void *p, size_t bytes);

#endif /* DTS_BIGMEM_H */
