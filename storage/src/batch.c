/*
 * batch.c - building a RocksDB WriteBatch in one reusable buffer.
 *
 * rocksdb_writebatch_put_cf appends to the batch's std::string, which doubles as it grows: a closed minute of 1M series
 * (~200 MB of puts) copied the batch so far at every doubling into freshly mapped memory, and on this VM the page
 * faults of fresh memory cost more than the copies (docs/performance.md, "Storage"). Here the writer lays the batch
 * out itself in a buffer it keeps between minutes (its pages are faulted once), encodes values straight into it, and
 * hands the finished bytes to rocksdb_writebatch_create_from, which makes one exact-size copy.
 *
 * The layout is RocksDB's WriteBatch representation (db/write_batch.cc), which is also its write-ahead-log record
 * format and so stable across releases (a newer RocksDB must replay an older one's WAL):
 *
 *   offset  size  field
 *   0       8     sequence number, fixed64 LE (0: assigned by the write)
 *   8       4     count of records, fixed32 LE
 *   12      ...   records:
 *                   put in a column family:          0x05 varint32(cf id) varint32(klen) key varint32(vlen) value
 *                   delete range in a column family: 0x0E varint32(cf id) varint32(blen) begin varint32(elen) end
 *
 * tests/unit/test_storage.c builds the same batch both ways and compares rocksdb_writebatch_data's bytes, so a
 * RocksDB that changed the format would fail the tests instead of corrupting a store.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "dts/bytes.h"
#include "storage_internal.h"

#define HEADER 12
#define TAG_CF_PUT 0x05
#define TAG_CF_DELETE_RANGE 0x0E

void dts__advise_huge(void *p, size_t n)
{
	const uintptr_t huge = (uintptr_t)2 << 20, a = ((uintptr_t)p + huge - 1) & ~(huge - 1),
			e = ((uintptr_t)p + n) & ~(huge - 1);

	if (n >= 4 * huge && e > a)
		madvise((void *)a, e - a, MADV_HUGEPAGE); /* a failure only leaves the 4 KiB pages */
}

void dts__batch_reset(struct dts__batch *b)
{
	b->len = HEADER;
	b->count = 0;
	b->err = 0;
}

void dts__batch_free(struct dts__batch *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Make room for n more bytes. */
static uint8_t *reserve(struct dts__batch *b, size_t n)
{
	if (b->err)
		return NULL;
	if (b->cap - b->len < n || !b->p) {
		size_t cap = b->cap ? b->cap : 1 << 20;
		uint8_t *p;

		while (cap - b->len < n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		if (!b->p)
			memset(p, 0, HEADER);
		b->p = p;
		b->cap = cap;
		dts__advise_huge(p, cap);
	}
	return b->p + b->len;
}

uint8_t *dts__batch_put_begin(struct dts__batch *b, uint32_t cf_id, const char *key, size_t klen, size_t vlen)
{
	uint8_t *p = reserve(b, 1 + 5 + 5 + klen + 5 + vlen), *q;

	if (!p)
		return NULL;
	q = p;
	*q++ = TAG_CF_PUT;
	q += dts_put_varint(q, cf_id);
	q += dts_put_varint(q, klen);
	memcpy(q, key, klen);
	q += klen;
	q += dts_put_varint(q, vlen);
	b->len += (size_t)(q - p) + vlen;
	b->count++;
	return q;
}

int dts__batch_put(struct dts__batch *b, uint32_t cf_id, const char *key, size_t klen, const void *val, size_t vlen)
{
	uint8_t *v = dts__batch_put_begin(b, cf_id, key, klen, vlen);

	if (!v)
		return b->err;
	memcpy(v, val, vlen);
	return 0;
}

int dts__batch_delete_range(struct dts__batch *b, uint32_t cf_id, const char *begin, size_t blen, const char *end,
			    size_t elen)
{
	uint8_t *p = reserve(b, 1 + 5 + 5 + blen + 5 + elen), *q;

	if (!p)
		return b->err;
	q = p;
	*q++ = TAG_CF_DELETE_RANGE;
	q += dts_put_varint(q, cf_id);
	q += dts_put_varint(q, blen);
	memcpy(q, begin, blen);
	q += blen;
	q += dts_put_varint(q, elen);
	memcpy(q, end, elen);
	q += elen;
	b->len += (size_t)(q - p);
	b->count++;
	return 0;
}

rocksdb_writebatch_t *dts__batch_finish(struct dts__batch *b)
{
	if (b->err || !reserve(b, 0))
		return NULL;
	memset(b->p, 0, 8);
	dts_wr32(b->p + 8, b->count);
	return rocksdb_writebatch_create_from((const char *)b->p, b->len);
}
