/*
 * bigmem.h - large, long-lived, zeroed allocations: the per-core tables' buckets and the merger's series index.
 *
 * Both are probed at a random position per line or per folded entry. Backed by 4 KiB pages, a table of 2^21 buckets
 * (128 MiB) costs a TLB miss - a page walk that itself misses the cache - on nearly every access. Regions of at least
 * 2 MiB are therefore mapped 2 MiB-aligned and marked MADV_HUGEPAGE, so that transparent huge pages back them when the
 * system allows it (/sys/kernel/mm/transparent_hugepage/enabled set to "madvise" or "always"); where it does not, or
 * no huge page is free, they are ordinary pages and everything works the same, only slower. Smaller regions come from
 * calloc. Any thread; not for hot paths (mmap is a system call).
 */
#ifndef DTS_BIGMEM_H
#define DTS_BIGMEM_H

#include <stddef.h>

/* bytes of zeroed memory, aligned to at least 64 bytes, or NULL (errno set). Free with dts__big_free(p, bytes). */
void *dts__big_alloc(size_t bytes);

/* Free what dts__big_alloc(bytes) returned (bytes must be the same; NULL is ignored). */
void dts__big_free(void *p, size_t bytes);

#endif /* DTS_BIGMEM_H */
