/*
 * meta.h - small records in the `meta` column family: users and keys, alert rules and their history, server secrets.
 *
 * The meta family holds few, small values that change rarely (schema_version, hwm_minute, users, rules). This API is a
 * plain key/value view of it for the modules that own those records (server/users.c, server/alerts.c); each module
 * documents its key prefix and value layout in docs/storage.md. Key prefixes in use:
 *   schema_version, hwm_minute      the store itself (storage/src/db.c)
 *   secret/                         server secrets (server/users.c)
 *   user/<name>                     one user and its keys (server/users.c)
 *   alert/<user>/<id>               alert rules; alerthist/<user>/<id>/<ts> their history (server/alerts.c)
 *
 * Every call is synchronous (RocksDB Get/Put/Delete with the store's write options) and safe from any thread; none may
 * run on an RX core. A store opened read-only or as a secondary refuses writes with -EROFS.
 */
#ifndef DTS_META_H
#define DTS_META_H

#include <stddef.h>
#include <stdint.h>

#include "dts/storage.h"

/*
 * Read key. Returns the value length (>= 0) and *out = a malloc'd copy with a NUL byte after the value (the caller
 * frees it), -ENOENT when absent, -EIO (message in err) when RocksDB fails.
 */
long dts_meta_get(struct dts_storage *st, const char *key, char **out, char *err, size_t err_len);

/* Write key = val (replacing). Returns 0, -EROFS, or -EIO (message in err). The write is synced to the WAL. */
int dts_meta_put(struct dts_storage *st, const char *key, const void *val, size_t len, char *err, size_t err_len);

/* Delete key (absent is not an error). Returns 0, -EROFS, or -EIO. */
int dts_meta_delete(struct dts_storage *st, const char *key, char *err, size_t err_len);

/*
 * Visit every key starting with prefix, in key order. The callback sees the key and the value (valid only during the
 * call); returning non-zero stops the scan. Returns the number of records visited, or -EIO.
 */
typedef int (*dts_meta_visit_fn)(void *ctx, const char *key, size_t key_len, const char *val, size_t val_len);
long dts_meta_scan(struct dts_storage *st, const char *prefix, dts_meta_visit_fn fn, void *ctx, char *err,
		   size_t err_len);

#endif /* DTS_META_H */
