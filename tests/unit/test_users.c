/*
 * test_users.c - the users and keys registry (server/users.c) on a real RocksDB store in a temporary directory, and
 * the allowed-source-network lists of statsd_allow (server/netacl.c).
 *
 * What a user of the daemon depends on: a created user's API key authenticates as that user and no other key does;
 * rotation makes the old API key and key id useless at once and the new ones work; removal makes every key useless;
 * key ids are never handed out twice, across restarts too; the store never holds an API key in the clear; the server
 * secret for AUTH tokens survives a restart; the admin token file is private and is what the registry accepts; the
 * native decoder's key lookup returns the owner and a MAC key equal to the one libdattss derives from the secret.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <urcu/urcu-memb.h>

#include "dts/decode.h"
#include "dts/meta.h"
#include "dts/native.h"
#include "dts/storage.h"
#include "netacl.h"
#include "users.h"

static char tmpdir[64];
static char dbdir[128];
static struct dts_storage *st;
static struct dts_users *users;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static struct dts_storage *open_store(enum dts_storage_mode mode)
{
	struct dts_storage_cfg cfg;
	char err[512] = "";
	struct dts_storage *s;

	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dbdir;
	cfg.mode = mode;
	cfg.block_cache_bytes = 8 << 20;
	cfg.write_buffer_bytes = 4 << 20;
	s = dts_storage_open(&cfg, err, sizeof(err));
	cr_assert_not_null(s, "store: %s", err);
	return s;
}

/* Open the registry as the daemon does (admin token in dbdir). */
static struct dts_users *open_users(const char *secret)
{
	char err[512] = "";
	struct dts_users *u = dts_users_open(st, dbdir, (const uint8_t *)secret, secret ? strlen(secret) : 0, err,
					     sizeof(err));

	cr_assert_not_null(u, "dts_users_open: %s", err);
	return u;
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/dts-users-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(dbdir, sizeof(dbdir), "%s/db", tmpdir);
	urcu_memb_register_thread();
	st = open_store(DTS_STORAGE_READ_WRITE);
	users = open_users(NULL);
}

static void teardown(void)
{
	dts_users_close(users);
	users = NULL;
	dts_storage_close(st);
	st = NULL;
	urcu_memb_unregister_thread();
	if (tmpdir[0])
		nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

/* Close and reopen store and registry (a daemon restart). */
static void reopen(const char *secret)
{
	dts_users_close(users);
	dts_storage_close(st);
	st = open_store(DTS_STORAGE_READ_WRITE);
	users = open_users(secret);
}

static void add_ok(const char *email, struct dts_user_creds *c)
{
	char err[256] = "";
	int rc = dts_users_add(users, email, c, err, sizeof(err));

	cr_assert_eq(rc, 0, "add %s: %d %s", email, rc, err);
}

static bool auth_is(const char *key, const char *want)
{
	char who[DTS_MAX_USER + 1] = "";

	if (!dts_users_auth(users, key, who, sizeof(who)))
		return want == NULL;
	return want && strcmp(who, want) == 0;
}

/* The key lookup as the engine does it: inside a read-side critical section. Copies what it needs out. */
static bool native_lookup(uint32_t key_id, char *owner, size_t owner_len, struct dts_native_mac_key *mac)
{
	const struct dts_native_key *k;
	bool found;

	urcu_memb_read_lock();
	k = dts_users_native_key(users, key_id);
	found = k != NULL;
	if (k) {
		snprintf(owner, owner_len, "%.*s", (int)k->user_len, k->user);
		*mac = *k->mac;
	}
	urcu_memb_read_unlock();
	return found;
}

/* The MAC the server computes with the looked-up key equals the one libdattss computes from the printed secret. */
static void assert_mac_matches(const struct dts_native_mac_key *server, const char *secret)
{
	struct dts_native_mac_key client;
	uint8_t a[DTS_NATIVE_MAC_LEN], b[DTS_NATIVE_MAC_LEN];
	static const char msg[] = "a datagram";

	cr_assert_eq(dts_native_mac_key_init(&client, secret, strlen(secret)), 0);
	dts_native_mac(server, msg, sizeof(msg), a);
	dts_native_mac(&client, msg, sizeof(msg), b);
	cr_assert_arr_eq(a, b, sizeof(a), "server and client MAC keys differ");
}

TestSuite(users, .init = setup, .fini = teardown);

Test(users, add_prints_well_formed_credentials_that_authenticate)
{
	struct dts_user_creds c;
	char auth[DTS_MAX_USER + 42];
	const uint8_t *secret;
	size_t secret_len;

	add_ok("alice@example.com", &c);
	cr_assert_str_eq(c.id, "alice@example.com");
	cr_assert_eq(strlen(c.api_key), DTS_USERS_API_KEY_LEN);
	cr_assert_eq(strncmp(c.api_key, "dk_", 3), 0);
	cr_assert_eq(strspn(c.api_key + 3, "abcdefghijklmnopqrstuvwxyz234567"), 40, "key %s", c.api_key);
	cr_assert_eq(strlen(c.secret), DTS_USERS_SECRET_LEN);
	cr_assert_eq(strspn(c.secret, "0123456789abcdef"), DTS_USERS_SECRET_LEN);
	cr_assert_gt(c.key_id, 0);

	/* the AUTH token is the original's, under the server secret */
	secret = dts_users_server_secret(users, &secret_len);
	cr_assert_eq(secret_len, 64, "a generated server secret is 64 hex characters");
	cr_assert_gt(dts_dattss_auth(secret, secret_len, c.id, strlen(c.id), auth, sizeof(auth)), 0);
	cr_assert_str_eq(c.auth, auth);

	cr_assert(auth_is(c.api_key, "alice@example.com"));
	cr_assert(dts_users_exists(users, "alice@example.com"));
	cr_assert_not(dts_users_exists(users, "bob@example.com"));
}

Test(users, wrong_keys_are_refused)
{
	struct dts_user_creds c;
	char bad[DTS_USERS_API_KEY_LEN + 1];

	add_ok("alice@example.com", &c);
	strcpy(bad, c.api_key);
	bad[10] = bad[10] == 'a' ? 'b' : 'a';
	cr_assert(auth_is(bad, NULL), "a key differing in one character must fail");
	cr_assert(auth_is("", NULL));
	cr_assert(auth_is(c.secret, NULL), "the datagram secret is not an API key");
	cr_assert(auth_is(c.auth, NULL), "the AUTH token is not an API key");
	{
		char who[4];

		cr_assert_not(dts_users_auth(users, c.api_key, who, sizeof(who)), "id does not fit the buffer");
	}
}

Test(users, two_users_each_key_names_its_owner)
{
	struct dts_user_creds a, b;

	add_ok("alice@example.com", &a);
	add_ok("bob@example.org", &b);
	cr_assert(auth_is(a.api_key, "alice@example.com"));
	cr_assert(auth_is(b.api_key, "bob@example.org"));
	cr_assert_neq(a.key_id, b.key_id);
	cr_assert_str_neq(a.secret, b.secret);
}

Test(users, rotate_refuses_old_key_accepts_new)
{
	struct dts_user_creds old, neu;
	struct dts_native_mac_key mac;
	char owner[DTS_MAX_USER + 1], err[256] = "";

	add_ok("alice@example.com", &old);
	cr_assert_eq(dts_users_rotate(users, "alice@example.com", &neu, err, sizeof(err)), 0, "%s", err);
	cr_assert(auth_is(old.api_key, NULL), "old API key still accepted after rotate");
	cr_assert(auth_is(neu.api_key, "alice@example.com"));
	cr_assert_gt(neu.key_id, old.key_id);
	cr_assert_str_neq(neu.secret, old.secret);
	cr_assert_not(native_lookup(old.key_id, owner, sizeof(owner), &mac), "old key id still known");
	cr_assert(native_lookup(neu.key_id, owner, sizeof(owner), &mac));
	cr_assert_str_eq(owner, "alice@example.com");
	assert_mac_matches(&mac, neu.secret);
	cr_assert_str_eq(neu.auth, old.auth, "the AUTH token is derived from the server secret and the id only");
}

Test(users, remove_refuses_every_key)
{
	struct dts_user_creds c, other;
	struct dts_native_mac_key mac;
	char owner[DTS_MAX_USER + 1], err[256] = "";

	add_ok("alice@example.com", &c);
	add_ok("bob@example.org", &other);
	cr_assert_eq(dts_users_remove(users, "alice@example.com", err, sizeof(err)), 0, "%s", err);
	cr_assert(auth_is(c.api_key, NULL));
	cr_assert_not(native_lookup(c.key_id, owner, sizeof(owner), &mac));
	cr_assert_not(dts_users_exists(users, "alice@example.com"));
	cr_assert(auth_is(other.api_key, "bob@example.org"), "the other user is untouched");
	cr_assert_eq(dts_users_remove(users, "alice@example.com", err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "user") != NULL, "error names the user: %s", err);
	cr_assert_eq(dts_users_rotate(users, "nobody@example.com", &c, err, sizeof(err)), -ENOENT);
}

Test(users, add_twice_is_eexist)
{
	struct dts_user_creds c;
	char err[256] = "";

	add_ok("alice@example.com", &c);
	cr_assert_eq(dts_users_add(users, "alice@example.com", &c, err, sizeof(err)), -EEXIST);
	cr_assert(strncmp(err, "email: ", 7) == 0, "%s", err);
}

Test(users, key_ids_are_unique_and_never_reused_across_restarts)
{
	struct dts_user_creds c;
	uint32_t seen[16];
	size_t n = 0;
	char err[256] = "";

	add_ok("a@example.com", &c);
	seen[n++] = c.key_id;
	add_ok("b@example.com", &c);
	seen[n++] = c.key_id;
	cr_assert_eq(dts_users_rotate(users, "a@example.com", &c, err, sizeof(err)), 0);
	seen[n++] = c.key_id;
	cr_assert_eq(dts_users_remove(users, "b@example.com", err, sizeof(err)), 0);
	reopen(NULL);
	add_ok("b@example.com", &c); /* same id again: must get a new key id */
	seen[n++] = c.key_id;
	cr_assert_eq(dts_users_rotate(users, "a@example.com", &c, err, sizeof(err)), 0);
	seen[n++] = c.key_id;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			cr_assert_lt(seen[i], seen[j], "key id %u handed out after %u", seen[j], seen[i]);
}

struct scan_ctx {
	const char *needle;
	int hits;
	long records;
};

static int scan_value(void *arg, const char *key, size_t key_len, const char *val, size_t val_len)
{
	struct scan_ctx *c = arg;

	c->records++;
	if (memmem(val, val_len, c->needle, strlen(c->needle)) || memmem(key, key_len, c->needle, strlen(c->needle)))
		c->hits++;
	return 0;
}

/* How many files under dir contain needle. */
static int files_containing(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int hits = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL) {
		char path[512];
		FILE *f;
		char *buf;
		long len;

		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = e->d_type == DT_REG ? fopen(path, "rb") : NULL;
		if (!f)
			continue;
		fseek(f, 0, SEEK_END);
		len = ftell(f);
		fseek(f, 0, SEEK_SET);
		buf = malloc((size_t)len + 1);
		cr_assert_not_null(buf);
		cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
		fclose(f);
		if (memmem(buf, (size_t)len, needle, strlen(needle)))
			hits++;
		free(buf);
	}
	closedir(d);
	return hits;
}

Test(users, the_store_never_holds_an_api_key_in_the_clear)
{
	struct dts_user_creds a, b;
	char err[256] = "", key_a[64], key_b[64];
	struct scan_ctx c = { 0 };

	add_ok("alice@example.com", &a);
	strcpy(key_a, a.api_key);
	cr_assert_eq(dts_users_rotate(users, "alice@example.com", &b, err, sizeof(err)), 0);
	strcpy(key_b, b.api_key);

	/* every meta record, decoded by RocksDB */
	c.needle = key_a + 3; /* the random part, with or without the prefix */
	cr_assert_geq(dts_meta_scan(st, "", scan_value, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_gt(c.records, 2);
	cr_assert_eq(c.hits, 0, "old API key found in meta");
	c.needle = key_b + 3;
	c.hits = 0;
	dts_meta_scan(st, "", scan_value, &c, err, sizeof(err));
	cr_assert_eq(c.hits, 0, "API key found in meta");

	/* and the raw bytes of every file of the store (WAL, SSTs, MANIFEST) after a close */
	dts_users_close(users);
	dts_storage_close(st);
	cr_assert_eq(files_containing(dbdir, key_a + 3), 0);
	cr_assert_eq(files_containing(dbdir, key_b + 3), 0);
	/* the secret is stored (the server needs it): the scan does find bytes that are there */
	cr_assert_gt(files_containing(dbdir, b.secret), 0, "the scan must be able to see stored values");
	st = open_store(DTS_STORAGE_READ_WRITE);
	users = open_users(NULL);
	cr_assert(auth_is(key_b, "alice@example.com"), "the hash still authenticates after a restart");
	cr_assert(auth_is(key_a, NULL));
}

Test(users, native_key_lookup_gives_owner_and_mac)
{
	struct dts_user_creds a, b;
	struct dts_native_mac_key mac;
	char owner[DTS_MAX_USER + 1];

	add_ok("alice@example.com", &a);
	add_ok("bob@example.org", &b);
	cr_assert(native_lookup(b.key_id, owner, sizeof(owner), &mac));
	cr_assert_str_eq(owner, "bob@example.org");
	assert_mac_matches(&mac, b.secret);
	cr_assert(native_lookup(a.key_id, owner, sizeof(owner), &mac));
	cr_assert_str_eq(owner, "alice@example.com");
	assert_mac_matches(&mac, a.secret);
	cr_assert_not(native_lookup(0, owner, sizeof(owner), &mac));
	cr_assert_not(native_lookup(b.key_id + 100, owner, sizeof(owner), &mac));
	/* survives a restart: the secret is what is stored */
	reopen(NULL);
	cr_assert(native_lookup(a.key_id, owner, sizeof(owner), &mac));
	assert_mac_matches(&mac, a.secret);
}

Test(users, server_secret_persists_and_config_overrides)
{
	const uint8_t *s;
	size_t len;
	char first[65];

	s = dts_users_server_secret(users, &len);
	cr_assert_eq(len, 64);
	memcpy(first, s, 64);
	first[64] = '\0';
	cr_assert_eq(strspn(first, "0123456789abcdef"), 64);
	reopen(NULL);
	s = dts_users_server_secret(users, &len);
	cr_assert_eq(len, 64);
	cr_assert_arr_eq(s, first, 64, "the stored server secret changed across a restart");
	reopen("configured");
	s = dts_users_server_secret(users, &len);
	cr_assert_eq(len, strlen("configured"));
	cr_assert_arr_eq(s, "configured", len);
	reopen(NULL);
	s = dts_users_server_secret(users, &len);
	cr_assert_arr_eq(s, first, 64, "a configured secret must not replace the stored one");
}

static void read_token_file(char *out, size_t len, mode_t *mode)
{
	char path[256];
	struct stat sb;
	FILE *f;

	snprintf(path, sizeof(path), "%s/admin.token", dbdir);
	cr_assert_eq(stat(path, &sb), 0, "admin.token missing");
	*mode = sb.st_mode & 0777;
	f = fopen(path, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(out, (int)len, f));
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

Test(users, admin_token_is_private_random_and_regenerated)
{
	char t1[128], t2[128];
	mode_t mode;

	read_token_file(t1, sizeof(t1), &mode);
	cr_assert_eq(mode, 0600, "admin.token mode %o", (unsigned)mode);
	cr_assert_eq(strlen(t1), DTS_USERS_ADMIN_TOKEN_LEN);
	cr_assert(dts_users_admin_ok(users, t1));
	cr_assert_not(dts_users_admin_ok(users, ""));
	cr_assert_not(dts_users_admin_ok(users, NULL));
	t1[5] ^= 1;
	cr_assert_not(dts_users_admin_ok(users, t1));
	t1[5] ^= 1;
	reopen(NULL);
	read_token_file(t2, sizeof(t2), &mode);
	cr_assert_str_neq(t1, t2, "the token must change at each start");
	cr_assert_not(dts_users_admin_ok(users, t1), "the previous start's token must not work");
	cr_assert(dts_users_admin_ok(users, t2));
}

Test(users, a_tool_gives_no_auth_token_when_the_daemon_secret_is_configured)
{
	struct dts_user_creds c;
	const uint8_t *s;
	size_t len;
	char err[256] = "";

	reopen("configured"); /* the daemon's start with `secret` set */
	dts_users_close(users);
	users = dts_users_open(st, NULL, NULL, 0, err, sizeof(err)); /* a tool on the stopped store */
	cr_assert_not_null(users, "%s", err);
	s = dts_users_server_secret(users, &len);
	(void)s;
	cr_assert_eq(len, 0, "the tool cannot know the configured secret");
	add_ok("alice@example.com", &c);
	cr_assert_str_eq(c.auth, "", "a token under the wrong secret would be printed");
	reopen(NULL); /* started again without `secret`: the stored one is in use again */
	dts_users_close(users);
	users = dts_users_open(st, NULL, NULL, 0, err, sizeof(err));
	cr_assert_not_null(users, "%s", err);
	add_ok("bob@example.com", &c);
	cr_assert(strncmp(c.auth, "bob@example.com_", 16) == 0, "auth '%s'", c.auth);
}

Test(users, no_admin_token_without_data_dir)
{
	char err[256];

	dts_users_close(users);
	users = dts_users_open(st, NULL, NULL, 0, err, sizeof(err));
	cr_assert_not_null(users, "%s", err);
	cr_assert_not(dts_users_admin_ok(users, "0000000000000000000000000000000000000000000000000000000000000000"));
}

Test(users, bootstrap_creates_the_listener_user_once)
{
	char path[512], err[256] = "", key[128];
	struct stat sb;
	FILE *f;
	int rc;

	rc = dts_users_bootstrap(users, "default", dbdir, path, sizeof(path), err, sizeof(err));
	cr_assert_eq(rc, 1, "%d %s", rc, err);
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(key, sizeof(key), f));
	fclose(f);
	key[strcspn(key, "\n")] = '\0';
	cr_assert(auth_is(key, "default"));
	cr_assert_eq(dts_users_bootstrap(users, "default", dbdir, path, sizeof(path), err, sizeof(err)), 0);
	reopen(NULL);
	cr_assert_eq(dts_users_bootstrap(users, "default", dbdir, path, sizeof(path), err, sizeof(err)), 0);
	cr_assert(auth_is(key, "default"), "the key in api.key survives a restart");
	/* all users removed later: a restart is not a first start */
	cr_assert_eq(dts_users_remove(users, "default", err, sizeof(err)), 0);
	reopen(NULL);
	cr_assert_eq(dts_users_bootstrap(users, "default", dbdir, path, sizeof(path), err, sizeof(err)), 0);
	cr_assert_not(dts_users_exists(users, "default"));
	cr_assert_eq(dts_users_bootstrap(users, "bad/name", dbdir, path, sizeof(path), err, sizeof(err)), -EINVAL);
}

Test(users, bootstrap_does_nothing_when_users_exist)
{
	struct dts_user_creds c;
	char path[512], err[256];

	add_ok("alice@example.com", &c);
	cr_assert_eq(dts_users_bootstrap(users, "default", dbdir, path, sizeof(path), err, sizeof(err)), 0);
	cr_assert_not(dts_users_exists(users, "default"));
}

struct list_ctx {
	char ids[8][DTS_MAX_USER + 1];
	bool prom[8];
	size_t n;
};

static int list_cb(void *arg, const struct dts_user_info *u)
{
	struct list_ctx *c = arg;

	strcpy(c->ids[c->n], u->id);
	c->prom[c->n++] = u->prometheus;
	return 0;
}

Test(users, list_in_id_order_and_prometheus_option)
{
	struct dts_user_creds c;
	struct list_ctx l = { 0 };
	struct dts_user_info info;
	char err[256] = "";

	add_ok("carol@example.com", &c);
	add_ok("alice@example.com", &c);
	add_ok("bob@example.com", &c);
	cr_assert_eq(dts_users_set_prometheus(users, "bob@example.com", true, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(dts_users_list(users, list_cb, &l), 3);
	cr_assert_str_eq(l.ids[0], "alice@example.com");
	cr_assert_str_eq(l.ids[1], "bob@example.com");
	cr_assert_str_eq(l.ids[2], "carol@example.com");
	cr_assert_not(l.prom[0]);
	cr_assert(l.prom[1]);
	reopen(NULL);
	cr_assert(dts_users_get(users, "bob@example.com", &info));
	cr_assert(info.prometheus, "the option is stored");
	cr_assert_str_eq(info.email, "bob@example.com");
	cr_assert_gt(info.created_s, 1600000000);
	cr_assert_eq(dts_users_set_prometheus(users, "zed@example.com", true, err, sizeof(err)), -ENOENT);
}

Test(users, read_only_store_refuses_changes)
{
	struct dts_user_creds c;
	char err[256] = "";

	add_ok("alice@example.com", &c);
	dts_users_close(users);
	dts_storage_close(st);
	st = open_store(DTS_STORAGE_READ_ONLY);
	users = dts_users_open(st, NULL, NULL, 0, err, sizeof(err));
	cr_assert_not_null(users, "%s", err);
	cr_assert(auth_is(c.api_key, "alice@example.com"), "a read-only store still authenticates");
	cr_assert_eq(dts_users_add(users, "bob@example.com", &c, err, sizeof(err)), -EROFS);
	cr_assert(strstr(err, "read-only") != NULL, "%s", err);
}

/* ---- email validation (table) ---------------------------------------------------------------------------------- */

Test(users, email_validation)
{
	static const struct {
		const char *email;
		bool ok;
		const char *msg; /* part of the error */
	} cases[] = {
		{ "a@b.co", true, NULL },
		{ "first.last+tag@sub.example.com", true, NULL },
		{ "x_y-z@example.io", true, NULL },
		{ "", false, "required" },
		{ "alice", false, "not an email address" },
		{ "@example.com", false, "not an email address" },
		{ "alice@", false, "not an email address" },
		{ "alice@example", false, "not an email address" },
		{ "alice@example.", false, "not an email address" },
		{ "alice@.com", false, "not an email address" },
		{ "a@b@example.com", false, "not an email address" },
		{ "a..b@example.com", false, "not an email address" },
		{ ".a@example.com", false, "not an email address" },
		{ "a.@example.com", false, "not an email address" },
		{ "alice smith@example.com", false, "[A-Za-z0-9@._+-]" },
		{ "alice/x@example.com", false, "[A-Za-z0-9@._+-]" },
		{ "\xc3\xa9@example.com", false, "[A-Za-z0-9@._+-]" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com", false, "64" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		bool ok = dts_users_email_valid(cases[i].email, err, sizeof(err));

		cr_expect_eq(ok, cases[i].ok, "'%s': %s", cases[i].email, err);
		if (!cases[i].ok) {
			cr_expect(strncmp(err, "email: ", 7) == 0, "'%s': error does not name email: %s", cases[i].email,
				  err);
			cr_expect(strstr(err, cases[i].msg) != NULL, "'%s': %s", cases[i].email, err);
		}
	}
}

/* ---- statsd_allow network lists (table) ------------------------------------------------------------------------ */

static struct sockaddr_storage sa(const char *ip)
{
	struct sockaddr_storage ss = { 0 };

	if (strchr(ip, ':')) {
		ss.ss_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
	} else {
		ss.ss_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr), 1);
	}
	return ss;
}

Test(netacl, matches)
{
	static const struct {
		const char *list, *src;
		bool allowed;
	} cases[] = {
		{ "", "203.0.113.9", true },
		{ "  ", "2001:db8::1", true },
		{ "127.0.0.1", "127.0.0.1", true },
		{ "127.0.0.1", "127.0.0.2", false },
		{ "10.0.0.0/8", "10.255.1.2", true },
		{ "10.0.0.0/8", "11.0.0.1", false },
		{ "192.168.1.0/24, 10.0.0.0/8", "192.168.1.77", true },
		{ "192.168.1.0/24, 10.0.0.0/8", "192.168.2.77", false },
		{ "0.0.0.0/0", "198.51.100.1", true },
		{ "0.0.0.0/0", "2001:db8::1", false }, /* all of IPv4 is not all of IPv6 */
		{ "10.0.0.0/8", "::ffff:10.1.2.3", true }, /* IPv4 source on an IPv6 socket */
		{ "::ffff:10.0.0.0/104", "10.1.2.3", true },
		{ "fd00::/8", "fd12:3456::1", true },
		{ "fd00::/8", "fe80::1", false },
		{ "2001:db8::/32", "2001:db8:ffff::1", true },
		{ "2001:db8::/33", "2001:db8:8000::1", false },
		{ "::1", "::1", true },
		{ "::/0", "::1", true },
		{ "127.0.0.0/31", "127.0.0.1", true },
		{ "127.0.0.2/32", "127.0.0.3", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dts_netacl a;
		struct sockaddr_storage ss = sa(cases[i].src);
		char why[256] = "";

		cr_assert_eq(dts_netacl_parse(cases[i].list, &a, why, sizeof(why)), 0, "'%s': %s", cases[i].list, why);
		cr_expect_eq(dts_netacl_allows(&a, &ss), cases[i].allowed, "list '%s', source %s", cases[i].list,
			     cases[i].src);
	}
}

Test(netacl, bad_lists_are_named)
{
	static const struct {
		const char *list, *msg;
	} cases[] = {
		{ "10.0.0.1/8", "bits set after the prefix (10.0.0.0/8?)" },
		{ "fd00::1/8", "(fd00::/8?)" },
		{ "10.0.0.0/33", "prefix length must be 0..32" },
		{ "fd00::/129", "prefix length must be 0..128" },
		{ "10.0.0.0/", "prefix length" },
		{ "10.0.0.0/-1", "prefix length" },
		{ "10.0.0.0/8x", "prefix length" },
		{ "localhost", "'localhost' is not an IPv4 or IPv6 address" },
		{ "10.0.0.0/8,,fd00::/8", "empty entry" },
		{ "10.0.0.0/8,", "empty entry" },
		{ ",10.0.0.0/8", "empty entry" },
		{ "300.1.1.1", "not an IPv4 or IPv6 address" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dts_netacl a = { .n = 7 };
		char why[256] = "";

		cr_expect_eq(dts_netacl_parse(cases[i].list, &a, why, sizeof(why)), -EINVAL, "'%s' accepted",
			     cases[i].list);
		cr_expect(strstr(why, cases[i].msg) != NULL, "'%s': %s", cases[i].list, why);
		cr_expect_eq(a.n, 7u, "a failed parse must not change the output");
	}
}

Test(netacl, at_most_32_networks)
{
	char list[1024] = "";
	struct dts_netacl a;
	char why[256];

	for (int i = 0; i < DTS_NETACL_MAX; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s10.%d.0.0/16", i ? "," : "", i);
	cr_assert_eq(dts_netacl_parse(list, &a, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(a.n, DTS_NETACL_MAX);
	strcat(list, ",10.200.0.0/16");
	cr_assert_eq(dts_netacl_parse(list, &a, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "more than 32") != NULL, "%s", why);
}
