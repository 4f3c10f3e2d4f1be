/*
 * users.h - dattssd's users and keys (issue 5): the registry the daemon authenticates with.
 *
 * A user is named by an id [A-Za-z0-9@._+-]{1,64}, normally the email given to `dattss user add EMAIL`; the id is the
 * `user` of every series key, of the original AUTH token and of the native protocol. Each user has:
 *   - an API key (HTTP bearer token), stored only as its SHA-256;
 *   - a datagram key: key id (u32, unique) + 32-byte secret for the native protocol's MAC (stored: the server needs it
 *     to verify, a hash would not serve);
 *   - the original AUTH token  <id>_<hex HMAC-SHA1(server secret, id)>, derived, never stored.
 * Records live in the meta column family (dts/meta.h, prefix user/ and secret/; byte layout in docs/storage.md).
 *
 * The registry keeps an immutable snapshot of all users in memory, published by RCU pointer swap and replaced after
 * every change (add/rotate/remove through the admin API, or dts_users_reload). Lookups never block and never touch
 * RocksDB, so RX cores may call dts_users_native_key.
 */
#ifndef DTS_USERS_H
#define DTS_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dts/native.h"
#include "dts/storage.h"

struct dts_users;

/*
 * Load the registry from st's meta family. server_secret/len: the configured secret for the original AUTH token;
 * when len is 0 the secret stored in meta (secret/dattss) is used, generated and stored on first use. Also writes
 * DATA_DIR/admin.token (mode 0600) for the operator API; data_dir NULL writes no token (tools on a stopped store:
 * dts_users_admin_ok is then always false). The daemon (data_dir set) records in meta whether its secret was
 * configured; a tool (data_dir NULL, no secret given) then has no server secret when it was (len 0: credentials
 * get an empty auth). The registry reads st until dts_users_close. Returns NULL with a
 * message in err. Main thread.
 */
struct dts_users *dts_users_open(struct dts_storage *st, const char *data_dir, const uint8_t *server_secret,
				 size_t server_secret_len, char *err, size_t errlen);

/* Free the registry after every reader is done (after the receivers and the HTTP server stopped). Main thread. */
void dts_users_close(struct dts_users *u);

/* The server secret for the original AUTH token (valid while u lives). */
const uint8_t *dts_users_server_secret(const struct dts_users *u, size_t *len);

/*
 * API key -> user id (constant-time comparison of SHA-256 digests). Returns true and copies the id into user.
 * Any thread (takes the RCU read side itself: the caller must be a registered RCU thread).
 */
bool dts_users_auth(struct dts_users *u, const char *api_key, char *user, size_t user_len);

/* True when token equals the operator's admin token (constant time). Any thread. */
bool dts_users_admin_ok(const struct dts_users *u, const char *token);

/*
 * dts_native_key_fn for the engine (ctx = the registry): the key with this id or NULL. The caller must be inside an
 * RCU read-side critical section (registered RCU thread) for as long as it uses the result. Never blocks.
 */
const struct dts_native_key *dts_users_native_key(void *ctx, uint32_t key_id);

/*
 * For the engine's DaTtSs lines (struct dts_merger_cfg user_known; ctx = the registry): true when user (len bytes, not
 * NUL-terminated) exists. Never blocks; any registered RCU thread (RX cores included).
 */
bool dts_users_known(void *ctx, const char *user, size_t len);

/* True when a user with this id exists. Any registered RCU thread. */
bool dts_users_exists(struct dts_users *u, const char *user);

/* Options of one user that other modules read. */
struct dts_user_info {
	char id[DTS_MAX_USER + 1];
	char email[256];
	uint32_t key_id;
	int64_t created_s;
	bool prometheus; /* expose this user's current values on GET /metrics (opt-in) */
};

/* Visit every user in id order (a copy of the snapshot's fields). Returns the count. Any registered RCU thread. */
typedef int (*dts_user_visit_fn)(void *ctx, const struct dts_user_info *u);
size_t dts_users_list(struct dts_users *u, dts_user_visit_fn fn, void *ctx);

/* The fields of one user by id. Returns true when it exists. Any registered RCU thread. */
bool dts_users_get(struct dts_users *u, const char *user, struct dts_user_info *out);

/* ---- management (admin API, `dattss user`): writes to meta, then publishes a new snapshot ----------------------- */
/*
 * Every call below serialises on the registry's writer mutex, writes meta (synced), publishes the new snapshot and
 * waits for a grace period (synchronize_rcu) before freeing the old one: call them from a thread that is not inside
 * an RCU read-side critical section (an HTTP handler, the main thread, a tool), never from an RX core.
 * Errors are -errno with a message in err that names the field: -EINVAL (bad email or user id), -EEXIST, -ENOENT
 * (no such user), -EROFS (store opened read-only), -EIO (RocksDB), -ENOMEM.
 */

/* "dk_" + 40 characters of lower-case base32: 200 random bits. */
#define DTS_USERS_API_KEY_LEN 43
/* The datagram secret as printed and as libdattss takes it: 64 hex characters (32 random bytes); its characters are
 * the MAC key. */
#define DTS_USERS_SECRET_LEN 64
/* The admin token: 64 hex characters (32 random bytes). */
#define DTS_USERS_ADMIN_TOKEN_LEN 64

/* Credentials of a user, shown once when created or rotated. Only key_id and secret are kept; the API key is stored as
 * its SHA-256 and the AUTH token is derived. Wipe it (OPENSSL_cleanse) when done. */
struct dts_user_creds {
	char id[DTS_MAX_USER + 1];
	char api_key[DTS_USERS_API_KEY_LEN + 1];
	uint32_t key_id;
	char secret[DTS_USERS_SECRET_LEN + 1];
	char auth[DTS_MAX_USER + 42]; /* the original AUTH token: <id>_<40 hex>; "" when the server secret is unknown */
};

/* Check an email that is to become a user id: local@domain.tld, and [A-Za-z0-9@._+-]{1,64}. Returns true, or false
 * with a message naming `email` in err. Pure. */
bool dts_users_email_valid(const char *email, char *err, size_t errlen);

/* Create the user EMAIL (its id is the email) with fresh credentials. Returns 0 and fills *out, or -errno. */
int dts_users_add(struct dts_users *u, const char *email, struct dts_user_creds *out, char *err, size_t errlen);

/* Replace a user's API key, key id and secret (the old ones stop working at once). Returns 0 and fills *out. */
int dts_users_rotate(struct dts_users *u, const char *user, struct dts_user_creds *out, char *err, size_t errlen);

/* Delete a user's record and keys (its stored data is left alone). Returns 0 or -errno (-ENOENT). */
int dts_users_remove(struct dts_users *u, const char *user, char *err, size_t errlen);

/* Set a user's prometheus option. Returns 0 or -errno (-ENOENT). */
int dts_users_set_prometheus(struct dts_users *u, const char *user, bool on, char *err, size_t errlen);

/* Re-read every user from meta and publish a new snapshot. Returns 0 or -errno. */
int dts_users_reload(struct dts_users *u, char *err, size_t errlen);

/*
 * First start: when no user was ever created in this store (no user records and no key id allocated yet), create
 * the user `user` (the statsd listeners' user: any id of [A-Za-z0-9@._+-]{1,64}, no email required) and write its
 * API key to DATA_DIR/api.key (mode 0600). Returns 1 (created; path filled with the file's name), 0 (nothing to do),
 * or -errno. Main thread, at start.
 */
int dts_users_bootstrap(struct dts_users *u, const char *user, const char *data_dir, char *path, size_t pathlen,
			char *err, size_t errlen);

#endif /* DTS_USERS_H */
