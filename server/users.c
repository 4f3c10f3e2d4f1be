/*
 * users.c - the users and keys registry (contract in users.h).
 *
 * Where things live:
 *   meta "user/<id>"     one JSON record per user (layout in docs/storage.md, "meta records"):
 *                        {"v":1,"email":..,"key_id":N,"secret":"<64 hex>","api_key_sha256":"<64 hex>",
 *                         "created_s":N,"rotated_s":N,"prometheus":bool}
 *   meta "key_id_next"   ASCII decimal: the next key id to hand out. Key ids only go up, so an id that was rotated
 *                        away or removed is never reused (a datagram signed with an old key can never be taken for
 *                        a new key's).
 *   meta "secret/dattss" the server secret for the original AUTH tokens when none is configured: 64 hex characters,
 *                        whose characters are the HMAC-SHA1 key (so the same text can be put in `secret` later).
 *   meta "secret/source" "config" or "store": which secret the daemon used at its last start. A tool working on the
 *                        stopped store cannot know a configured secret, so it prints no AUTH token when "config".
 *   DATA_DIR/admin.token the operator's bearer token, random, rewritten at every start (never stored in meta).
 *
 * Readers and writers. The registry's state is one immutable snapshot (struct snap): every user with its SHA-256 API
 * key digest, its precomputed MAC key and two sorted indexes (by key id for the native decoder, by digest for the
 * HTTP bearer check). Readers find it with rcu_dereference inside a liburcu-memb read-side critical section (the
 * engine's flavour), so RX cores and HTTP threads never block and never touch RocksDB. Writers (admin API, tools,
 * start) serialise on wlock, write meta first, re-read every record from meta into a new snapshot, publish it with
 * rcu_assign_pointer, wait for a grace period and free the old one. Changes are rare (an operator's command), so a
 * full rebuild per change keeps one code path for load and update.
 *
 * Bearer lookups binary-search the digest index: the comparisons reveal at most where the digest of the presented
 * key falls among the stored digests, which says nothing about any stored key (SHA-256 is preimage resistant); the
 * final equality is CRYPTO_memcmp.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include <urcu/pointer.h>

#include "dts/decode.h"
#include "dts/meta.h"
#include "users.h"

#define USER_PREFIX "user/"
#define KEY_ID_NEXT "key_id_next"
#define SERVER_SECRET_KEY "secret/dattss"
#define SECRET_SOURCE_KEY "secret/source"
#define RECORD_VERSION 1
#define SERVER_SECRET_MAX 256 /* as the `secret` config key */

/* ThreadSanitizer cannot see liburcu's ordering (inline assembly, uninstrumented library): state the two edges RCU
 * provides, as engine/src/rcu.h does. Readers release a token when they leave the read side (ours here, the engine's
 * in its own read sections around dts_users_native_key); the writer acquires both after the grace period. */
#if defined(__SANITIZE_THREAD__)
#define USERS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define USERS_TSAN 1
#endif
#endif
#ifdef USERS_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char dts__rcu_reclaim_token; /* engine/src/merger.c */
static char reclaim_token;
#define hb_release(p) __tsan_release((void *)(p))
#define hb_acquire(p) __tsan_acquire((void *)(p))
#define hb_reclaim()                                      \
	do {                                              \
		__tsan_acquire(&reclaim_token);           \
		__tsan_acquire(&dts__rcu_reclaim_token); \
	} while (0)
#define read_unlock()                             \
	do {                                      \
		__tsan_release(&reclaim_token);   \
		urcu_memb_read_unlock();          \
	} while (0)
#else
#define hb_release(p) ((void)(p))
#define hb_acquire(p) ((void)(p))
#define hb_reclaim() ((void)0)
#define read_unlock() urcu_memb_read_unlock()
#endif

/* One user in a snapshot. Immutable once published. */
struct entry {
	struct dts_user_info info;
	uint8_t key_sha[32]; /* SHA-256 of the API key */
	struct dts_native_mac_key mac; /* HMAC-SHA256 state of the datagram secret */
	struct dts_native_key nkey; /* user -> info.id, mac -> mac */
};

/* What readers see: entries sorted by id, and index arrays sorted by key id and by digest. */
struct snap {
	size_t n;
	struct entry *e;
	uint32_t *by_key;
	uint32_t *by_sha;
};

struct dts_users {
	struct dts_storage *st;
	struct snap *cur; /* RCU-protected: rcu_dereference under the read side; replaced under wlock */
	pthread_mutex_t wlock; /* serialises writers (meta writes + publication) */
	char server_secret[SERVER_SECRET_MAX + 1];
	size_t server_secret_len;
	bool has_admin_token;
	char admin_token[DTS_USERS_ADMIN_TOKEN_LEN + 1];
};

/* ---- small helpers ----------------------------------------------------------------------------------------------- */

static int fill_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void to_hex(const uint8_t *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly 2n hex digits into n bytes. */
static bool from_hex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool is_hex(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (hex_val(s[i]) < 0)
			return false;
	return true;
}

static int sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
		return -EIO;
	return 0;
}

static bool id_valid(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= DTS_MAX_USER && dts_native_user_valid(s, n);
}

/* Write data to dir/name atomically (temporary file, fsync, rename) with mode 0600. */
static int write_private_file(const char *dir, const char *name, const char *data, char *path, size_t pathlen,
			      char *err, size_t errlen)
{
	char tmp[4096];
	size_t len = strlen(data);
	int fd, r = 0;

	if ((size_t)snprintf(path, pathlen, "%s/%s", dir, name) >= pathlen ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) >= sizeof(tmp)) {
		snprintf(err, errlen, "data_dir: path too long for %s", name);
		return -ENAMETOOLONG;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return r;
	}
	if (fchmod(fd, 0600) != 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) != 0)
		r = errno ? -errno : -EIO;
	if (close(fd) != 0 && !r)
		r = -errno;
	if (!r && rename(tmp, path) != 0)
		r = -errno;
	if (r) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(-r));
		unlink(tmp);
	}
	return r;
}

/* ---- snapshots -------------------------------------------------------------------------------------------------- */

static void snap_free(struct snap *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		dts_native_mac_key_wipe(&s->e[i].mac);
	free(s->e);
	free(s->by_key);
	free(s->by_sha);
	free(s);
}

/* Sort context for the index arrays (qsort_r). */
static int cmp_key(const void *a, const void *b, void *ctx)
{
	const struct entry *e = ctx;
	uint32_t x = e[*(const uint32_t *)a].info.key_id, y = e[*(const uint32_t *)b].info.key_id;

	return x < y ? -1 : x > y;
}

static int cmp_sha(const void *a, const void *b, void *ctx)
{
	const struct entry *e = ctx;

	return memcmp(e[*(const uint32_t *)a].key_sha, e[*(const uint32_t *)b].key_sha, 32);
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->info.id, ((const struct entry *)b)->info.id);
}

/* A decoded record (the parsed JSON of user/<id>). */
struct record {
	char email[256];
	uint32_t key_id;
	char secret[DTS_USERS_SECRET_LEN + 1];
	uint8_t key_sha[32];
	int64_t created_s, rotated_s;
	bool prometheus;
};

static int record_parse(const char *id, const char *val, size_t len, struct record *r, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j = json_loadb(val, len, 0, &je);
	const char *email = NULL, *secret = NULL, *sha = NULL;
	json_int_t v = 0, key_id = 0, created = 0, rotated = 0;
	int prom = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	if (!j) {
		snprintf(err, errlen, "meta user/%s: not JSON (%s)", id, je.text);
		return -EINVAL;
	}
	rc = json_unpack_ex(j, &je, 0, "{s:I,s:s,s:I,s:s,s:s,s:I,s?I,s?b}", "v", &v, "email", &email, "key_id", &key_id,
			    "secret", &secret, "api_key_sha256", &sha, "created_s", &created, "rotated_s", &rotated,
			    "prometheus", &prom);
	if (rc != 0) {
		snprintf(err, errlen, "meta user/%s: %s", id, je.text);
		json_decref(j);
		return -EINVAL;
	}
	if (v != RECORD_VERSION) {
		snprintf(err, errlen, "meta user/%s: record version %" JSON_INTEGER_FORMAT " not supported (this build "
			 "reads %d)", id, v, RECORD_VERSION);
		json_decref(j);
		return -EPROTONOSUPPORT;
	}
	if (key_id <= 0 || key_id > UINT32_MAX || strlen(email) >= sizeof(r->email) ||
	    !is_hex(secret, DTS_USERS_SECRET_LEN) || !from_hex(sha, r->key_sha, 32)) {
		snprintf(err, errlen, "meta user/%s: key_id, email, secret or api_key_sha256 out of range", id);
		json_decref(j);
		return -EINVAL;
	}
	strcpy(r->email, email);
	strcpy(r->secret, secret);
	r->key_id = (uint32_t)key_id;
	r->created_s = created;
	r->rotated_s = rotated ? rotated : created;
	r->prometheus = prom;
	json_decref(j);
	return 0;
}

static int record_put(struct dts_users *u, const char *id, const struct record *r, char *err, size_t errlen)
{
	char sha[65], key[sizeof(USER_PREFIX) + DTS_MAX_USER];
	json_t *j;
	char *s;
	int rc;

	to_hex(r->key_sha, 32, sha);
	j = json_pack("{s:i,s:s,s:I,s:s,s:s,s:I,s:I,s:b}", "v", RECORD_VERSION, "email", r->email, "key_id",
		      (json_int_t)r->key_id, "secret", r->secret, "api_key_sha256", sha, "created_s",
		      (json_int_t)r->created_s, "rotated_s", (json_int_t)r->rotated_s, "prometheus", r->prometheus);
	s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(j);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(key, sizeof(key), USER_PREFIX "%s", id);
	rc = dts_meta_put(u->st, key, s, strlen(s), err, errlen);
	OPENSSL_cleanse(s, strlen(s));
	free(s);
	if (rc == -EROFS)
		snprintf(err, errlen, "the store is open read-only: cannot change users");
	return rc;
}

struct load_ctx {
	struct entry *e;
	size_t n, cap;
	int rc;
	char *err;
	size_t errlen;
};

static int load_one(void *arg, const char *key, size_t key_len, const char *val, size_t val_len)
{
	struct load_ctx *c = arg;
	char id[DTS_MAX_USER + 1];
	size_t id_len = key_len - strlen(USER_PREFIX);
	struct record r;
	struct entry *e;

	if (id_len == 0 || id_len > DTS_MAX_USER || !dts_native_user_valid(key + strlen(USER_PREFIX), id_len)) {
		snprintf(c->err, c->errlen, "meta %.*s: not a valid user id", (int)key_len, key);
		c->rc = -EINVAL;
		return 1;
	}
	memcpy(id, key + strlen(USER_PREFIX), id_len);
	id[id_len] = '\0';
	c->rc = record_parse(id, val, val_len, &r, c->err, c->errlen);
	if (c->rc)
		return 1;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct entry *ne = realloc(c->e, cap * sizeof(*ne));

		if (!ne) {
			snprintf(c->err, c->errlen, "out of memory");
			c->rc = -ENOMEM;
			return 1;
		}
		c->e = ne;
		c->cap = cap;
	}
	e = &c->e[c->n];
	memset(e, 0, sizeof(*e));
	strcpy(e->info.id, id);
	strcpy(e->info.email, r.email);
	e->info.key_id = r.key_id;
	e->info.created_s = r.created_s;
	e->info.prometheus = r.prometheus;
	memcpy(e->key_sha, r.key_sha, 32);
	if (dts_native_mac_key_init(&e->mac, r.secret, strlen(r.secret)) != 0) {
		snprintf(c->err, c->errlen, "meta user/%s: cannot prepare the MAC key", id);
		c->rc = -EIO;
		return 1;
	}
	OPENSSL_cleanse(&r, sizeof(r));
	c->n++;
	return 0;
}

/* Read every user record into a new snapshot. Returns it, or NULL with *rc and err set. */
static struct snap *snap_load(struct dts_users *u, int *rc, char *err, size_t errlen)
{
	struct load_ctx c = { .err = err, .errlen = errlen };
	struct snap *s;
	long n;

	n = dts_meta_scan(u->st, USER_PREFIX, load_one, &c, err, errlen);
	if (n < 0 || c.rc) {
		for (size_t i = 0; i < c.n; i++)
			dts_native_mac_key_wipe(&c.e[i].mac);
		free(c.e);
		*rc = c.rc ? c.rc : (int)n;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s || (c.n && (!(s->by_key = calloc(c.n, sizeof(uint32_t))) || !(s->by_sha = calloc(c.n, sizeof(uint32_t)))))) {
		if (s) {
			s->e = c.e;
			s->n = c.n;
		} else {
			free(c.e);
		}
		snap_free(s);
		snprintf(err, errlen, "out of memory");
		*rc = -ENOMEM;
		return NULL;
	}
	s->e = c.e;
	s->n = c.n;
	/* Keys come from the scan in key order, which is id order; sort anyway so the invariant does not depend on it. */
	if (s->n > 1)
		qsort(s->e, s->n, sizeof(*s->e), cmp_id);
	for (size_t i = 0; i < s->n; i++) {
		s->e[i].nkey.user = s->e[i].info.id;
		s->e[i].nkey.user_len = strlen(s->e[i].info.id);
		s->e[i].nkey.mac = &s->e[i].mac;
		s->by_key[i] = s->by_sha[i] = (uint32_t)i;
	}
	if (s->n > 1) {
		qsort_r(s->by_key, s->n, sizeof(uint32_t), cmp_key, s->e);
		qsort_r(s->by_sha, s->n, sizeof(uint32_t), cmp_sha, s->e);
	}
	return s;
}

/* Swap in s and free the previous snapshot after a grace period. Called with wlock held (or at open/close). */
static void publish(struct dts_users *u, struct snap *s)
{
	struct snap *old = u->cur;

	hb_release(s);
	rcu_assign_pointer(u->cur, s);
	if (old) {
		urcu_memb_synchronize_rcu();
		hb_reclaim();
		snap_free(old);
	}
}

static int reload_locked(struct dts_users *u, char *err, size_t errlen)
{
	int rc = 0;
	struct snap *s = snap_load(u, &rc, err, errlen);

	if (!s)
		return rc;
	publish(u, s);
	return 0;
}

/* The current snapshot; caller is inside the read side. */
static struct snap *snap_get(struct dts_users *u)
{
	struct snap *s = rcu_dereference(u->cur);

	hb_acquire(s);
	return s;
}

static const struct entry *find_id(const struct snap *s, const char *id)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->e[mid].info.id, id);

		if (c == 0)
			return &s->e[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- the server secret, the admin token ------------------------------------------------------------------------ */

static int server_secret_load(struct dts_users *u, char *err, size_t errlen)
{
	char *val = NULL;
	long n = dts_meta_get(u->st, SERVER_SECRET_KEY, &val, err, errlen);

	if (n >= 0) {
		if (!is_hex(val, DTS_USERS_SECRET_LEN)) {
			snprintf(err, errlen, "meta " SERVER_SECRET_KEY ": expected %d hex characters", DTS_USERS_SECRET_LEN);
			free(val);
			return -EINVAL;
		}
		memcpy(u->server_secret, val, (size_t)n + 1);
		u->server_secret_len = (size_t)n;
		OPENSSL_cleanse(val, (size_t)n);
		free(val);
		return 0;
	}
	if (n != -ENOENT)
		return (int)n;
	/* First use: generate and keep it. A read-only store (a tool listing users) simply has none. */
	uint8_t raw[DTS_USERS_SECRET_LEN / 2];
	int rc = fill_random(raw, sizeof(raw));

	if (rc) {
		snprintf(err, errlen, "getrandom: %s", strerror(-rc));
		return rc;
	}
	to_hex(raw, sizeof(raw), u->server_secret);
	OPENSSL_cleanse(raw, sizeof(raw));
	rc = dts_meta_put(u->st, SERVER_SECRET_KEY, u->server_secret, DTS_USERS_SECRET_LEN, err, errlen);
	if (rc == -EROFS) {
		u->server_secret[0] = '\0';
		return 0;
	}
	if (rc)
		return rc;
	u->server_secret_len = DTS_USERS_SECRET_LEN;
	return 0;
}

static bool secret_source_is_config(struct dts_users *u)
{
	char *val = NULL, err[64];
	long n = dts_meta_get(u->st, SECRET_SOURCE_KEY, &val, err, sizeof(err));
	bool config = n >= 0 && strcmp(val, "config") == 0;

	free(val);
	return config;
}

static int admin_token_write(struct dts_users *u, const char *data_dir, char *err, size_t errlen)
{
	uint8_t raw[DTS_USERS_ADMIN_TOKEN_LEN / 2];
	char line[DTS_USERS_ADMIN_TOKEN_LEN + 2], path[4096];
	int rc = fill_random(raw, sizeof(raw));

	if (rc) {
		snprintf(err, errlen, "getrandom: %s", strerror(-rc));
		return rc;
	}
	to_hex(raw, sizeof(raw), u->admin_token);
	OPENSSL_cleanse(raw, sizeof(raw));
	snprintf(line, sizeof(line), "%s\n", u->admin_token);
	rc = write_private_file(data_dir, "admin.token", line, path, sizeof(path), err, errlen);
	OPENSSL_cleanse(line, sizeof(line));
	if (rc)
		return rc;
	u->has_admin_token = true;
	return 0;
}

/* ---- open / close ------------------------------------------------------------------------------------------------ */

struct dts_users *dts_users_open(struct dts_storage *st, const char *data_dir, const uint8_t *server_secret,
				 size_t server_secret_len, char *err, size_t errlen)
{
	struct dts_users *u;

	if (server_secret_len > SERVER_SECRET_MAX) {
		snprintf(err, errlen, "secret: longer than %d bytes", SERVER_SECRET_MAX);
		return NULL;
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	u->st = st;
	pthread_mutex_init(&u->wlock, NULL);
	if (server_secret_len) {
		memcpy(u->server_secret, server_secret, server_secret_len);
		u->server_secret_len = server_secret_len;
	} else if (server_secret_load(u, err, errlen) != 0) {
		goto out_free;
	}
	if (data_dir) {
		const char *src = server_secret_len ? "config" : "store";

		if (dts_meta_put(st, SECRET_SOURCE_KEY, src, strlen(src), err, errlen) != 0 ||
		    admin_token_write(u, data_dir, err, errlen) != 0)
			goto out_free;
	} else if (!server_secret_len && secret_source_is_config(u)) {
		OPENSSL_cleanse(u->server_secret, sizeof(u->server_secret));
		u->server_secret_len = 0; /* unknown here: creds get no AUTH token */
	}
	if (reload_locked(u, err, errlen) != 0)
		goto out_free;
	return u;

out_free:
	pthread_mutex_destroy(&u->wlock);
	OPENSSL_cleanse(u, sizeof(*u));
	free(u);
	return NULL;
}

void dts_users_close(struct dts_users *u)
{
	if (!u)
		return;
	snap_free(u->cur); /* every reader is gone (the caller's contract) */
	pthread_mutex_destroy(&u->wlock);
	OPENSSL_cleanse(u, sizeof(*u));
	free(u);
}

const uint8_t *dts_users_server_secret(const struct dts_users *u, size_t *len)
{
	*len = u->server_secret_len;
	return (const uint8_t *)u->server_secret;
}

/* ---- readers ----------------------------------------------------------------------------------------------------- */

bool dts_users_auth(struct dts_users *u, const char *api_key, char *user, size_t user_len)
{
	uint8_t d[32];
	bool ok = false;

	if (!api_key || sha256(api_key, strlen(api_key), d) != 0)
		return false;
	urcu_memb_read_lock();
	const struct snap *s = snap_get(u);
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct entry *e = &s->e[s->by_sha[mid]];
		int c = memcmp(e->key_sha, d, 32);

		if (c == 0) {
			ok = CRYPTO_memcmp(e->key_sha, d, 32) == 0 && strlen(e->info.id) < user_len;
			if (ok)
				strcpy(user, e->info.id);
			break;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	read_unlock();
	return ok;
}

bool dts_users_admin_ok(const struct dts_users *u, const char *token)
{
	if (!u->has_admin_token || !token || strlen(token) != DTS_USERS_ADMIN_TOKEN_LEN)
		return false;
	return CRYPTO_memcmp(u->admin_token, token, DTS_USERS_ADMIN_TOKEN_LEN) == 0;
}

const struct dts_native_key *dts_users_native_key(void *ctx, uint32_t key_id)
{
	struct dts_users *u = ctx;
	const struct snap *s = snap_get(u);
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct entry *e = &s->e[s->by_key[mid]];

		if (e->info.key_id == key_id)
			return &e->nkey;
		if (e->info.key_id < key_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

bool dts_users_exists(struct dts_users *u, const char *user)
{
	bool found;

	urcu_memb_read_lock();
	found = find_id(snap_get(u), user) != NULL;
	read_unlock();
	return found;
}

bool dts_users_known(void *ctx, const char *user, size_t len)
{
	char id[DTS_MAX_USER + 1];
	bool found;

	if (len > DTS_MAX_USER)
		return false;
	memcpy(id, user, len);
	id[len] = '\0';
	urcu_memb_read_lock();
	found = find_id(snap_get(ctx), id) != NULL;
	read_unlock();
	return found;
}

bool dts_users_get(struct dts_users *u, const char *user, struct dts_user_info *out)
{
	const struct entry *e;

	urcu_memb_read_lock();
	e = find_id(snap_get(u), user);
	if (e)
		*out = e->info;
	read_unlock();
	return e != NULL;
}

size_t dts_users_list(struct dts_users *u, dts_user_visit_fn fn, void *ctx)
{
	size_t n = 0;

	urcu_memb_read_lock();
	const struct snap *s = snap_get(u);

	for (; n < s->n; n++) {
		struct dts_user_info info = s->e[n].info;

		if (fn && fn(ctx, &info) != 0) {
			n++;
			break;
		}
	}
	read_unlock();
	return n;
}

/* ---- management ------------------------------------------------------------------------------------------------ */

bool dts_users_email_valid(const char *email, char *err, size_t errlen)
{
	size_t n = email ? strlen(email) : 0;
	const char *at = email ? strchr(email, '@') : NULL;
	const char *dot;

	if (!email || !n) {
		snprintf(err, errlen, "email: required");
		return false;
	}
	if (n > DTS_MAX_USER || !dts_native_user_valid(email, n)) {
		snprintf(err, errlen, "email: '%.80s%s' cannot be a user id: the id is the email and must be 1..%d "
			 "characters of [A-Za-z0-9@._+-]", email, n > 80 ? "..." : "", DTS_MAX_USER);
		return false;
	}
	dot = at ? strrchr(at, '.') : NULL;
	if (!at || at == email || strchr(at + 1, '@') || !dot || dot == at + 1 || !dot[1] || strstr(email, "..") ||
	    email[0] == '.' || at[-1] == '.' || email[n - 1] == '.') {
		snprintf(err, errlen, "email: '%s' is not an email address (expected local@domain.tld)", email);
		return false;
	}
	return true;
}

/* Next key id from the counter in meta (at least one above every id in use). Called with wlock held. */
static int key_id_alloc(struct dts_users *u, uint32_t *out, char *err, size_t errlen)
{
	char *val = NULL, buf[16];
	uint64_t next = 1;
	long n = dts_meta_get(u->st, KEY_ID_NEXT, &val, err, errlen);
	const struct snap *s = u->cur;
	int rc;

	if (n >= 0) {
		char *end;

		errno = 0;
		next = strtoull(val, &end, 10);
		if (errno || end == val || *end || next == 0 || next > UINT32_MAX) {
			snprintf(err, errlen, "meta " KEY_ID_NEXT ": '%.20s' is not a key id", val);
			free(val);
			return -EINVAL;
		}
		free(val);
	} else if (n != -ENOENT) {
		return (int)n;
	}
	/* Defensive: a counter lost or rolled back must still never hand out an id in use. */
	for (size_t i = 0; i < s->n; i++)
		if (s->e[i].info.key_id >= next)
			next = (uint64_t)s->e[i].info.key_id + 1;
	if (next > UINT32_MAX) {
		snprintf(err, errlen, "key ids exhausted");
		return -ENOSPC;
	}
	snprintf(buf, sizeof(buf), "%" PRIu64, next + 1);
	rc = dts_meta_put(u->st, KEY_ID_NEXT, buf, strlen(buf), err, errlen);
	if (rc == -EROFS)
		snprintf(err, errlen, "the store is open read-only: cannot change users");
	if (rc)
		return rc;
	*out = (uint32_t)next;
	return 0;
}

/* Fresh credentials into creds and rec (key id allocated, API key hashed). Called with wlock held. */
static int new_creds(struct dts_users *u, const char *id, struct record *rec, struct dts_user_creds *creds, char *err,
		     size_t errlen)
{
	static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
	uint8_t raw[25], sec[DTS_USERS_SECRET_LEN / 2];
	int rc;

	memset(creds, 0, sizeof(*creds));
	rc = fill_random(raw, sizeof(raw));
	if (!rc)
		rc = fill_random(sec, sizeof(sec));
	if (rc) {
		snprintf(err, errlen, "getrandom: %s", strerror(-rc));
		return rc;
	}
	/* 25 bytes = 200 bits = 40 base32 digits of 5 bits each. */
	memcpy(creds->api_key, "dk_", 3);
	for (size_t i = 0; i < 40; i++) {
		size_t bit = i * 5;
		unsigned v = (unsigned)raw[bit / 8] << 8 | (bit / 8 + 1 < sizeof(raw) ? raw[bit / 8 + 1] : 0);

		creds->api_key[3 + i] = b32[(v >> (11 - bit % 8)) & 31];
	}
	creds->api_key[DTS_USERS_API_KEY_LEN] = '\0';
	to_hex(sec, sizeof(sec), creds->secret);
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(sec, sizeof(sec));
	strcpy(creds->id, id);
	if (sha256(creds->api_key, DTS_USERS_API_KEY_LEN, rec->key_sha) != 0) {
		snprintf(err, errlen, "SHA-256 failed");
		return -EIO;
	}
	strcpy(rec->secret, creds->secret);
	rc = key_id_alloc(u, &creds->key_id, err, errlen);
	if (rc)
		return rc;
	rec->key_id = creds->key_id;
	if (u->server_secret_len &&
	    dts_dattss_auth((const uint8_t *)u->server_secret, u->server_secret_len, id, strlen(id), creds->auth,
			    sizeof(creds->auth)) < 0)
		creds->auth[0] = '\0';
	return 0;
}

/* The record of id as stored now (with wlock held). */
static int record_get(struct dts_users *u, const char *id, struct record *r, char *err, size_t errlen)
{
	char key[sizeof(USER_PREFIX) + DTS_MAX_USER], *val = NULL;
	long n;
	int rc;

	if (!id_valid(id)) {
		snprintf(err, errlen, "user: must be 1..%d characters of [A-Za-z0-9@._+-]", DTS_MAX_USER);
		return -EINVAL;
	}
	snprintf(key, sizeof(key), USER_PREFIX "%s", id);
	n = dts_meta_get(u->st, key, &val, err, errlen);
	if (n == -ENOENT) {
		snprintf(err, errlen, "user: no user '%s'", id);
		return -ENOENT;
	}
	if (n < 0)
		return (int)n;
	rc = record_parse(id, val, (size_t)n, r, err, errlen);
	OPENSSL_cleanse(val, (size_t)n);
	free(val);
	return rc;
}

static int create_locked(struct dts_users *u, const char *id, const char *email, struct dts_user_creds *out,
			 char *err, size_t errlen)
{
	struct record rec = { 0 };
	char key[sizeof(USER_PREFIX) + DTS_MAX_USER], *val = NULL;
	long n;
	int rc;

	snprintf(key, sizeof(key), USER_PREFIX "%s", id);
	n = dts_meta_get(u->st, key, &val, err, errlen);
	free(val);
	if (n >= 0) {
		snprintf(err, errlen, "email: user '%s' already exists (rotate its keys with 'dattss user rotate')", id);
		return -EEXIST;
	}
	if (n != -ENOENT)
		return (int)n;
	snprintf(rec.email, sizeof(rec.email), "%s", email);
	rec.created_s = rec.rotated_s = (int64_t)time(NULL);
	rc = new_creds(u, id, &rec, out, err, errlen);
	if (!rc)
		rc = record_put(u, id, &rec, err, errlen);
	OPENSSL_cleanse(&rec, sizeof(rec));
	if (!rc)
		rc = reload_locked(u, err, errlen);
	if (rc)
		OPENSSL_cleanse(out, sizeof(*out));
	return rc;
}

int dts_users_add(struct dts_users *u, const char *email, struct dts_user_creds *out, char *err, size_t errlen)
{
	int rc;

	if (!dts_users_email_valid(email, err, errlen))
		return -EINVAL;
	pthread_mutex_lock(&u->wlock);
	rc = create_locked(u, email, email, out, err, errlen);
	pthread_mutex_unlock(&u->wlock);
	return rc;
}

int dts_users_rotate(struct dts_users *u, const char *user, struct dts_user_creds *out, char *err, size_t errlen)
{
	struct record rec;
	int rc;

	pthread_mutex_lock(&u->wlock);
	rc = record_get(u, user, &rec, err, errlen);
	if (!rc) {
		rec.rotated_s = (int64_t)time(NULL);
		rc = new_creds(u, user, &rec, out, err, errlen);
	}
	if (!rc)
		rc = record_put(u, user, &rec, err, errlen);
	OPENSSL_cleanse(&rec, sizeof(rec));
	if (!rc)
		rc = reload_locked(u, err, errlen);
	if (rc)
		OPENSSL_cleanse(out, sizeof(*out));
	pthread_mutex_unlock(&u->wlock);
	return rc;
}

/* Keys of one meta prefix, collected by a scan (deleting inside the scan would race its iterator). */
struct key_list {
	char **k;
	size_t n, cap;
	bool oom;
};

static int collect_key(void *ctx, const char *key, size_t key_len, const char *val, size_t val_len)
{
	struct key_list *l = ctx;

	(void)val;
	(void)val_len;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		char **k = realloc(l->k, cap * sizeof(*k));

		if (!k) {
			l->oom = true;
			return 1;
		}
		l->k = k;
		l->cap = cap;
	}
	l->k[l->n] = strndup(key, key_len);
	if (!l->k[l->n]) {
		l->oom = true;
		return 1;
	}
	l->n++;
	return 0;
}

/* Delete every meta record under prefix (a removed user's alert rules and their history). */
static int delete_prefix(struct dts_users *u, const char *prefix, char *err, size_t errlen)
{
	struct key_list l = { 0 };
	long n = dts_meta_scan(u->st, prefix, collect_key, &l, err, errlen);
	int rc = n < 0 ? (int)n : l.oom ? -ENOMEM : 0;

	for (size_t i = 0; i < l.n; i++) {
		if (!rc)
			rc = dts_meta_delete(u->st, l.k[i], err, errlen);
		free(l.k[i]);
	}
	free(l.k);
	return rc;
}

int dts_users_remove(struct dts_users *u, const char *user, char *err, size_t errlen)
{
	struct record rec;
	char key[sizeof(USER_PREFIX) + DTS_MAX_USER];
	int rc;

	pthread_mutex_lock(&u->wlock);
	rc = record_get(u, user, &rec, err, errlen);
	OPENSSL_cleanse(&rec, sizeof(rec));
	if (!rc) {
		snprintf(key, sizeof(key), USER_PREFIX "%s", user);
		rc = dts_meta_delete(u->st, key, err, errlen);
		if (rc == -EROFS)
			snprintf(err, errlen, "the store is open read-only: cannot change users");
	}
	if (!rc) { /* what else the user owned in meta (dts/meta.h): alert rules and their history */
		char prefix[sizeof("alerthist/") + DTS_MAX_USER + 1];

		snprintf(prefix, sizeof(prefix), "alert/%s/", user);
		rc = delete_prefix(u, prefix, err, errlen);
		snprintf(prefix, sizeof(prefix), "alerthist/%s/", user);
		if (!rc)
			rc = delete_prefix(u, prefix, err, errlen);
	}
	if (!rc)
		rc = reload_locked(u, err, errlen);
	pthread_mutex_unlock(&u->wlock);
	return rc;
}

int dts_users_set_prometheus(struct dts_users *u, const char *user, bool on, char *err, size_t errlen)
{
	struct record rec;
	int rc;

	pthread_mutex_lock(&u->wlock);
	rc = record_get(u, user, &rec, err, errlen);
	if (!rc && rec.prometheus != on) {
		rec.prometheus = on;
		rc = record_put(u, user, &rec, err, errlen);
		if (!rc)
			rc = reload_locked(u, err, errlen);
	}
	OPENSSL_cleanse(&rec, sizeof(rec));
	pthread_mutex_unlock(&u->wlock);
	return rc;
}

int dts_users_reload(struct dts_users *u, char *err, size_t errlen)
{
	int rc;

	pthread_mutex_lock(&u->wlock);
	rc = reload_locked(u, err, errlen);
	pthread_mutex_unlock(&u->wlock);
	return rc;
}

int dts_users_bootstrap(struct dts_users *u, const char *user, const char *data_dir, char *path, size_t pathlen,
			char *err, size_t errlen)
{
	struct dts_user_creds c;
	char *val = NULL, line[DTS_USERS_API_KEY_LEN + 2];
	long n;
	int rc;

	if (!id_valid(user)) {
		snprintf(err, errlen, "user: '%s' must be 1..%d characters of [A-Za-z0-9@._+-]", user, DTS_MAX_USER);
		return -EINVAL;
	}
	pthread_mutex_lock(&u->wlock);
	if (u->cur->n) {
		rc = 0;
		goto out;
	}
	n = dts_meta_get(u->st, KEY_ID_NEXT, &val, err, errlen);
	free(val);
	if (n >= 0) { /* users existed once and were all removed: not a first start */
		rc = 0;
		goto out;
	}
	if (n != -ENOENT) {
		rc = (int)n;
		goto out;
	}
	rc = create_locked(u, user, "", &c, err, errlen);
	if (rc)
		goto out;
	snprintf(line, sizeof(line), "%s\n", c.api_key);
	rc = write_private_file(data_dir, "api.key", line, path, pathlen, err, errlen);
	OPENSSL_cleanse(line, sizeof(line));
	OPENSSL_cleanse(&c, sizeof(c));
	if (!rc)
		rc = 1;
out:
	pthread_mutex_unlock(&u->wlock);
	return rc;
}
