/*
 * user_cmd.c - `dattss user`: create, list, rotate and remove users and their keys.
 *
 *   dattss user add EMAIL              create a user (its id is the email) and print its credentials once
 *   dattss user list                   the users: id, email, key id, creation time, prometheus option
 *   dattss user rotate USER            new API key, key id and secret (the old ones stop working at once)
 *   dattss user remove USER --yes      delete the user's record and keys (its stored data stays)
 *   dattss user prometheus USER on|off expose the user's current values on /metrics or not
 *
 * Two ways to reach the users, chosen per call and said on stderr:
 *   - the store directly (server/users.c on the RocksDB store of --data-dir) when no dattssd holds it;
 *   - the running daemon's admin API (POST/GET/PATCH/DELETE /api/v1/admin/users, libcurl) when one does, at the URL
 *     it wrote to DATA_DIR/http.url, with the bearer token it wrote to DATA_DIR/admin.token. --http URL forces this
 *     path.
 * A running dattssd holds RocksDB's lock on DATA_DIR/LOCK (a POSIX record lock): F_GETLK tells whether another
 * process holds it without taking it, so the check neither disturbs the daemon nor races with its start in a way
 * that could corrupt anything (at worst the direct open fails with RocksDB's lock error, reported as such).
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "dts/storage.h"
#include "tool_cmds.h"
#include "users.h"

#define DEFAULT_DATA_DIR "./data"
#define DEFAULT_HTTP "http://127.0.0.1:8080"

static const char usage_user[] =
	"Usage: dattss user add EMAIL              [OPTIONS]\n"
	"       dattss user list                   [OPTIONS]\n"
	"       dattss user rotate USER            [OPTIONS]\n"
	"       dattss user remove USER --yes      [OPTIONS]\n"
	"       dattss user prometheus USER on|off [OPTIONS]\n"
	"\n"
	"Manage the users of a DaTtSs store and their keys. A user's id is its email ([A-Za-z0-9@._+-], at most 64\n"
	"characters). Each user has an HTTP API key (bearer token of the query API), a datagram key (key id + secret, for\n"
	"libdattss and 'dattss send') and an AUTH token for the original DaTtSs drivers. 'add' and 'rotate' print them\n"
	"once: the store keeps only a SHA-256 of the API key.\n"
	"\n"
	"When no dattssd holds the store, the store is changed directly; when one does (its lock on DATA_DIR/LOCK), the\n"
	"command goes through its admin API with the token in DATA_DIR/admin.token. Which one was used is said on stderr.\n"
	"\n"
	"  -d, --data-dir DIR     the store (dattssd's data_dir) [" DEFAULT_DATA_DIR "]\n"
	"      --http URL         use the admin API of a running dattssd at URL [when it runs: the URL it wrote to\n"
	"                         DATA_DIR/http.url, else " DEFAULT_HTTP "]\n"
	"      --token-file FILE  the admin token [DATA_DIR/admin.token]; or the environment's DATTSS_ADMIN_TOKEN\n"
	"  -j, --json             print JSON (the admin API's replies) instead of text\n"
	"  -y, --yes              confirm 'remove'\n"
	"  -h, --help             this help\n"
	"\n"
	"Exit status: 0 done, 1 failed (no such user, store or daemon unreachable), 2 usage error.\n"
	"\n"
	"Examples:\n"
	"  dattss user add alice@example.com --data-dir /var/lib/dattss\n"
	"  dattss user list --http http://10.0.0.5:8080 --token-file ./admin.token\n"
	"  dattss user rotate alice@example.com --data-dir /var/lib/dattss\n"
	"  dattss user remove alice@example.com --yes --data-dir /var/lib/dattss\n";

static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "dattss user: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(try 'dattss user --help')\n");
	return 2;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "dattss user: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* ---- the two back ends ----------------------------------------------------------------------------------------- */

struct backend {
	bool http;
	/* direct */
	struct dts_storage *st;
	struct dts_users *users;
	/* admin API */
	CURL *curl;
	char base[1024]; /* URL without a trailing '/' */
	char token[DTS_USERS_ADMIN_TOKEN_LEN + 2];
};

/* 1 when another process holds RocksDB's lock on dir/LOCK, 0 when not (or no LOCK file), -errno. */
static int store_locked(const char *dir)
{
	char path[4096];
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd, r;

	snprintf(path, sizeof(path), "%s/LOCK", dir);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	r = fcntl(fd, F_GETLK, &fl);
	close(fd); /* closing drops no lock of ours: F_GETLK took none */
	if (r != 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

static int read_token(const char *file, char *out, size_t len)
{
	FILE *f = fopen(file, "r");
	size_t n;

	if (!f)
		return -errno;
	if (!fgets(out, (int)len, f)) {
		fclose(f);
		return -EINVAL;
	}
	fclose(f);
	n = strcspn(out, "\r\n");
	out[n] = '\0';
	return n == DTS_USERS_ADMIN_TOKEN_LEN ? 0 : -EINVAL;
}

static int open_http(struct backend *b, const char *url, const char *token_file, const char *data_dir)
{
	const char *env = getenv("DATTSS_ADMIN_TOKEN");
	char tf[4096];
	size_t n = strlen(url);
	int r;

	while (n && url[n - 1] == '/')
		n--;
	if (n >= sizeof(b->base) || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)))
		return usage("--http: '%s' is not an http:// or https:// URL", url);
	memcpy(b->base, url, n);
	b->base[n] = '\0';
	if (token_file || !env || !*env) {
		if (!token_file) {
			snprintf(tf, sizeof(tf), "%s/admin.token", data_dir);
			token_file = tf;
		}
		r = read_token(token_file, b->token, sizeof(b->token));
		if (r == -EINVAL)
			return fail("%s: not an admin token (%d hex characters, written by dattssd at start)", token_file,
				    DTS_USERS_ADMIN_TOKEN_LEN);
		if (r)
			return fail("cannot read the admin token %s: %s (dattssd writes it at start; give --token-file "
				    "or DATTSS_ADMIN_TOKEN)", token_file, strerror(-r));
	} else {
		snprintf(b->token, sizeof(b->token), "%s", env);
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || !(b->curl = curl_easy_init()))
		return fail("libcurl initialisation failed");
	b->http = true;
	return 0;
}

/* The URL a running daemon wrote to DATA_DIR/http.url at start, else DEFAULT_HTTP. */
static const char *daemon_url(const char *dir, char *out, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/http.url", dir);
	f = fopen(path, "r");
	if (!f)
		return DEFAULT_HTTP;
	if (!fgets(out, (int)len, f))
		out[0] = '\0';
	fclose(f);
	out[strcspn(out, "\r\n")] = '\0';
	return out[0] ? out : DEFAULT_HTTP;
}

static int open_direct(struct backend *b, const char *dir)
{
	struct dts_storage_cfg cfg;
	struct stat sb;
	char path[4096], err[512];

	snprintf(path, sizeof(path), "%s/CURRENT", dir);
	if (stat(path, &sb) != 0)
		return fail("%s: no DaTtSs store there (start dattssd once with this data_dir, or give the right "
			    "--data-dir)", dir);
	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dir;
	cfg.mode = DTS_STORAGE_READ_WRITE;
	b->st = dts_storage_open(&cfg, err, sizeof(err));
	if (!b->st)
		return fail("cannot open the store %s: %s", dir, err);
	urcu_memb_register_thread();
	b->users = dts_users_open(b->st, NULL, NULL, 0, err, sizeof(err));
	if (!b->users) {
		urcu_memb_unregister_thread();
		dts_storage_close(b->st);
		b->st = NULL;
		return fail("cannot read the users of %s: %s", dir, err);
	}
	return 0;
}

static void backend_close(struct backend *b)
{
	if (b->curl) {
		curl_easy_cleanup(b->curl);
		curl_global_cleanup();
	}
	OPENSSL_cleanse(b->token, sizeof(b->token));
	if (b->users) {
		dts_users_close(b->users);
		urcu_memb_unregister_thread();
	}
	dts_storage_close(b->st);
}

struct resp {
	char *p;
	size_t len;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct resp *r = ctx;
	size_t n = size * nmemb;
	char *np = realloc(r->p, r->len + n + 1);

	if (!np)
		return 0;
	memcpy(np + r->len, data, n);
	r->len += n;
	np[r->len] = '\0';
	r->p = np;
	return n;
}

/*
 * One admin API call: method on base + path (user escaped by the caller), optional JSON body. Returns 0 with *out
 * the reply's JSON (NULL for 204) when the status is 2xx; else prints the server's error and returns 1.
 */
static int http_call(struct backend *b, const char *method, const char *path, json_t *body, json_t **out)
{
	char url[2048], auth[128], cerr[CURL_ERROR_SIZE] = "";
	struct curl_slist *h = NULL;
	struct resp r = { 0 };
	char *bs = body ? json_dumps(body, JSON_COMPACT) : NULL;
	long status = 0;
	CURLcode cc;
	json_t *j = NULL;
	int rc = 1;

	*out = NULL;
	snprintf(url, sizeof(url), "%s%s", b->base, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", b->token);
	h = curl_slist_append(h, auth);
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_reset(b->curl);
	curl_easy_setopt(b->curl, CURLOPT_URL, url);
	curl_easy_setopt(b->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(b->curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(b->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(b->curl, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(b->curl, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(b->curl, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(b->curl, CURLOPT_NOSIGNAL, 1L);
	if (bs) {
		curl_easy_setopt(b->curl, CURLOPT_POSTFIELDS, bs);
		curl_easy_setopt(b->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(bs));
	}
	cc = curl_easy_perform(b->curl);
	OPENSSL_cleanse(auth, sizeof(auth));
	curl_slist_free_all(h);
	free(bs);
	if (cc != CURLE_OK) {
		fail("the admin API at %s did not answer: %s (give --http http://BIND:HTTP_PORT of the running dattssd)",
		     b->base, cerr[0] ? cerr : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(b->curl, CURLINFO_RESPONSE_CODE, &status);
	if (r.len)
		j = json_loadb(r.p, r.len, 0, NULL);
	if (status >= 200 && status < 300) {
		*out = j;
		j = NULL;
		rc = 0;
	} else {
		const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;

		fail("%s (HTTP %ld)%s", msg ? msg : (r.p ? r.p : "no reply"), status,
		     status == 401 ? ": the admin token is rewritten at every start of dattssd; is --data-dir (or "
				     "--token-file) the running daemon's?"
				   : "");
	}
out:
	json_decref(j);
	if (r.p)
		OPENSSL_cleanse(r.p, r.len);
	free(r.p);
	return rc;
}

/* "/api/v1/admin/users/<escaped user><suffix>" */
static int user_path(struct backend *b, const char *user, const char *suffix, char *out, size_t len)
{
	char *e = curl_easy_escape(b->curl, user, 0);

	if (!e)
		return -ENOMEM;
	snprintf(out, len, "/api/v1/admin/users/%s%s", e, suffix);
	curl_free(e);
	return 0;
}

static json_t *creds_json(struct dts_user_creds *c, const char *email)
{
	json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s?}", "user", c->id, "email", email, "api_key", c->api_key,
			      "key_id", (json_int_t)c->key_id, "secret", c->secret, "auth", c->auth[0] ? c->auth : NULL);

	OPENSSL_cleanse(c, sizeof(*c));
	return j;
}

static json_t *info_json(const struct dts_user_info *u)
{
	return json_pack("{s:s,s:s,s:I,s:I,s:b}", "user", u->id, "email", u->email, "key_id", (json_int_t)u->key_id,
			 "created_s", (json_int_t)u->created_s, "prometheus", u->prometheus);
}

/* ---- output ---------------------------------------------------------------------------------------------------- */

static void print_creds(json_t *c, const char *verb, const char *http_hint)
{
	const char *user = json_string_value(json_object_get(c, "user"));
	const char *key = json_string_value(json_object_get(c, "api_key"));
	const char *secret = json_string_value(json_object_get(c, "secret"));
	const char *auth = json_string_value(json_object_get(c, "auth"));
	json_int_t key_id = json_integer_value(json_object_get(c, "key_id"));

	printf("%s user %s. Its credentials are shown only now (the store keeps a hash of the API key):\n\n", verb,
	       user ? user : "?");
	printf("  API key (HTTP)   %s\n", key ? key : "?");
	printf("                   curl -H 'Authorization: Bearer %s' %s/api/v1/current\n", key ? key : "?", http_hint);
	printf("  key id           %" JSON_INTEGER_FORMAT "\n", key_id);
	printf("  secret           %s\n", secret ? secret : "?");
	if (auth)
		printf("  AUTH token       %s\n", auth);
	else
		printf("  AUTH token       (dattssd uses its configured `secret`, which the store does not hold: run this\n"
		       "                   with dattssd running, or compute <user>_<hex HMAC-SHA1(secret, user)>)\n");
	printf("\nlibdattss and 'dattss send' take the datagram key from the environment:\n");
	printf("  export DATTSS_USER='%s' DATTSS_KEY_ID=%" JSON_INTEGER_FORMAT " DATTSS_SECRET=%s\n", user ? user : "?",
	       key_id, secret ? secret : "?");
	if (auth)
		printf("The original DaTtSs drivers use the AUTH token: PUT /agg?auth=TOKEN over HTTP, or\n"
		       "TOKEN:PROCESS:STAT:VALUE lines on the statsd UDP port.\n");
}

static void print_list(json_t *j)
{
	json_t *arr = json_object_get(j, "users"), *u;
	size_t i;

	printf("%-40s %-40s %8s  %-20s %s\n", "USER", "EMAIL", "KEY_ID", "CREATED (UTC)", "PROMETHEUS");
	json_array_foreach(arr, i, u) {
		time_t t = (time_t)json_integer_value(json_object_get(u, "created_s"));
		const char *email = json_string_value(json_object_get(u, "email"));
		struct tm tm;
		char when[32];

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("%-40s %-40s %8" JSON_INTEGER_FORMAT "  %-20s %s\n",
		       json_string_value(json_object_get(u, "user")), email && *email ? email : "-",
		       json_integer_value(json_object_get(u, "key_id")), when,
		       json_is_true(json_object_get(u, "prometheus")) ? "on" : "off");
	}
	if (!json_array_size(arr))
		printf("(no users)\n");
}

static void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
}

static int list_one(void *ctx, const struct dts_user_info *u)
{
	return json_array_append_new(ctx, info_json(u)) == 0 ? 0 : 1;
}

/* ---- the command ----------------------------------------------------------------------------------------------- */

int dts_tool_user(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "data-dir", required_argument, NULL, 'd' }, { "http", required_argument, NULL, 'H' },
		{ "token-file", required_argument, NULL, 'T' }, { "json", no_argument, NULL, 'j' },
		{ "yes", no_argument, NULL, 'y' }, { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	const char *data_dir = DEFAULT_DATA_DIR, *http = NULL, *token_file = NULL, *sub, *arg = NULL;
	bool json = false, yes = false, prom_on = false;
	struct backend b = { 0 };
	char err[512], path[512];
	json_t *res = NULL;
	int c, rc, nargs;

	optind = 1;
	while ((c = getopt_long(argc, argv, "d:jyh", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': data_dir = optarg; break;
		case 'H': http = optarg; break;
		case 'T': token_file = optarg; break;
		case 'j': json = true; break;
		case 'y': yes = true; break;
		case 'h': fputs(usage_user, stdout); return 0;
		default: return usage("%s", "bad option");
		}
	}
	if (optind >= argc)
		return usage("%s", "a subcommand is required: add, list, rotate, remove or prometheus");
	sub = argv[optind++];
	nargs = argc - optind;
	if (!strcmp(sub, "list")) {
		if (nargs != 0)
			return usage("list: unexpected argument '%s'", argv[optind]);
	} else if (!strcmp(sub, "add") || !strcmp(sub, "rotate") || !strcmp(sub, "remove")) {
		if (nargs != 1)
			return usage(!strcmp(sub, "add") ? "%s: expected one EMAIL" : "%s: expected one USER", sub);
		arg = argv[optind];
	} else if (!strcmp(sub, "prometheus")) {
		if (nargs != 2 || (strcmp(argv[optind + 1], "on") && strcmp(argv[optind + 1], "off")))
			return usage("%s: expected USER on|off", sub);
		arg = argv[optind];
		prom_on = !strcmp(argv[optind + 1], "on");
	} else {
		return usage("unknown subcommand '%s' (add, list, rotate, remove or prometheus)", sub);
	}
	if (!strcmp(sub, "add") && !dts_users_email_valid(arg, err, sizeof(err)))
		return usage("add: %s", err);
	if (!strcmp(sub, "remove") && !yes)
		return usage("remove: this deletes '%s' and its keys; add --yes to confirm", arg);

	if (http) {
		rc = open_http(&b, http, token_file, data_dir);
		if (rc)
			return rc;
		fprintf(stderr, "dattss user: using the admin API at %s\n", b.base);
	} else {
		rc = store_locked(data_dir);
		if (rc < 0)
			return fail("%s/LOCK: %s", data_dir, strerror(-rc));
		if (rc == 1) {
			char url[1024];

			rc = open_http(&b, daemon_url(data_dir, url, sizeof(url)), token_file, data_dir);
			if (rc)
				return rc;
			fprintf(stderr, "dattss user: dattssd is running on %s (it holds the store's lock): using its "
				"admin API at %s\n", data_dir, b.base);
		} else {
			rc = open_direct(&b, data_dir);
			if (rc)
				return rc;
			fprintf(stderr, "dattss user: no dattssd holds %s: changing the store directly\n", data_dir);
		}
	}

	rc = 0;
	if (!strcmp(sub, "list")) {
		if (b.http) {
			rc = http_call(&b, "GET", "/api/v1/admin/users", NULL, &res);
		} else {
			json_t *arr = json_array();

			dts_users_list(b.users, list_one, arr);
			res = json_pack("{s:o}", "users", arr);
		}
		if (!rc)
			json ? print_json(res) : print_list(res);
	} else if (!strcmp(sub, "add") || !strcmp(sub, "rotate")) {
		bool add = !strcmp(sub, "add");

		if (b.http) {
			json_t *body = add ? json_pack("{s:s}", "email", arg) : NULL;

			if (add)
				rc = http_call(&b, "POST", "/api/v1/admin/users", body, &res);
			else if (user_path(&b, arg, "/rotate", path, sizeof(path)) == 0)
				rc = http_call(&b, "POST", path, NULL, &res);
			else
				rc = fail("out of memory");
			json_decref(body);
		} else {
			struct dts_user_creds cr;
			struct dts_user_info info = { .email = "" };
			int r = add ? dts_users_add(b.users, arg, &cr, err, sizeof(err))
				    : dts_users_rotate(b.users, arg, &cr, err, sizeof(err));

			if (r) {
				rc = fail("%s", err);
			} else {
				dts_users_get(b.users, cr.id, &info);
				res = creds_json(&cr, info.email);
			}
		}
		if (!rc)
			json ? print_json(res) : print_creds(res, add ? "Created" : "Rotated the keys of",
							      b.http ? b.base : DEFAULT_HTTP);
	} else if (!strcmp(sub, "remove")) {
		if (b.http) {
			if (user_path(&b, arg, "", path, sizeof(path)) == 0)
				rc = http_call(&b, "DELETE", path, NULL, &res);
			else
				rc = fail("out of memory");
		} else {
			int r = dts_users_remove(b.users, arg, err, sizeof(err));

			if (r)
				rc = fail("%s", err);
		}
		if (!rc)
			printf("Removed user %s and its keys (its stored data is kept).\n", arg);
	} else { /* prometheus */
		if (b.http) {
			json_t *body = json_pack("{s:b}", "prometheus", prom_on);

			if (user_path(&b, arg, "", path, sizeof(path)) == 0)
				rc = http_call(&b, "PATCH", path, body, &res);
			else
				rc = fail("out of memory");
			json_decref(body);
		} else {
			struct dts_user_info info;
			int r = dts_users_set_prometheus(b.users, arg, prom_on, err, sizeof(err));

			if (r)
				rc = fail("%s", err);
			else if (dts_users_get(b.users, arg, &info))
				res = info_json(&info);
		}
		if (!rc)
			json && res ? print_json(res)
				    : (void)printf("User %s: prometheus %s.\n", arg, prom_on ? "on" : "off");
	}
	if (res) {
		/* the reply may hold secrets */
		json_t *s = json_object_get(res, "secret");

		if (json_is_string(s))
			json_string_set(s, "");
		json_decref(res);
	}
	fflush(stdout);
	backend_close(&b);
	return rc;
}
