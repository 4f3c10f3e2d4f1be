/*
 * meta.c - key/value access to the `meta` column family (contract in dts/meta.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dts/meta.h"
#include "storage_internal.h"

static void meta_err(char *err, size_t err_len, const char *what, const char *key, const char *rerr)
{
	if (err && err_len)
		snprintf(err, err_len, "meta %s '%s': %s", what, key, rerr);
}

long dts_meta_get(struct dts_storage *st, const char *key, char **out, char *err, size_t err_len)
{
	char *rerr = NULL, *val, *copy;
	size_t vlen = 0;

	*out = NULL;
	if (!st->cf[DTS__CF_META])
		return -ENOENT;
	val = rocksdb_get_cf(st->db, st->ro_get, st->cf[DTS__CF_META], key, strlen(key), &vlen, &rerr);
	if (rerr) {
		meta_err(err, err_len, "get", key, rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	if (!val)
		return -ENOENT;
	copy = malloc(vlen + 1);
	if (!copy) {
		rocksdb_free(val);
		return -ENOMEM;
	}
	memcpy(copy, val, vlen);
	copy[vlen] = '\0';
	rocksdb_free(val);
	*out = copy;
	return (long)vlen;
}

/* Meta records are rare and precious (a user's keys): every write is synced whatever the store's sync setting. */
static int meta_write(struct dts_storage *st, const char *key, const void *val, size_t len, bool del, char *err,
		      size_t err_len)
{
	rocksdb_writeoptions_t *wo;
	char *rerr = NULL;

	if (st->cfg.mode != DTS_STORAGE_READ_WRITE)
		return -EROFS;
	wo = rocksdb_writeoptions_create();
	if (!wo)
		return -ENOMEM;
	rocksdb_writeoptions_set_sync(wo, 1);
	if (del)
		rocksdb_delete_cf(st->db, wo, st->cf[DTS__CF_META], key, strlen(key), &rerr);
	else
		rocksdb_put_cf(st->db, wo, st->cf[DTS__CF_META], key, strlen(key), val, len, &rerr);
	rocksdb_writeoptions_destroy(wo);
	if (rerr) {
		meta_err(err, err_len, del ? "delete" : "put", key, rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	return 0;
}

int dts_meta_put(struct dts_storage *st, const char *key, const void *val, size_t len, char *err, size_t err_len)
{
	return meta_write(st, key, val, len, false, err, err_len);
}

int dts_meta_delete(struct dts_storage *st, const char *key, char *err, size_t err_len)
{
	return meta_write(st, key, NULL, 0, true, err, err_len);
}

long dts_meta_scan(struct dts_storage *st, const char *prefix, dts_meta_visit_fn fn, void *ctx, char *err,
		   size_t err_len)
{
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	size_t plen = strlen(prefix);
	char *rerr = NULL;
	long n = 0;

	if (!st->cf[DTS__CF_META])
		return 0;
	ro = rocksdb_readoptions_create();
	if (!ro)
		return -ENOMEM;
	it = rocksdb_create_iterator_cf(st->db, ro, st->cf[DTS__CF_META]);
	for (rocksdb_iter_seek(it, prefix, plen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);

		if (klen < plen || memcmp(k, prefix, plen) != 0)
			break;
		n++;
		if (fn(ctx, k, klen, v, vlen))
			break;
	}
	rocksdb_iter_get_error(it, &rerr);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (rerr) {
		meta_err(err, err_len, "scan", prefix, rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	return n;
}
