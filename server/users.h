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
 * DATA_DIR/admin.token (mode 0600) for the operator API. Returns NULL with a message in err. Main thread.
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

#endif /* DTS_USERS_H */
