/*
 * test_users.c - integration tests of users and keys with the real dattssd (issue 5): the files written at first
 * start, the admin API and its errors, `dattss user` on a stopped store and through a running daemon, statsd_allow
 * dropping traffic from a source outside the allowed networks, and `dattss send` whose value is read back with the
 * user's own API key.
 *
 * Each test gets its own daemon (daemon_harness.h; Criterion runs every test in its own process). The admin token is
 * read from DATA_DIR/admin.token as an operator would. Values reach GET /api/v1/current within one 5-second slot plus
 * a tick, so reads poll for up to WAIT_MS.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "integration/daemon_harness.h"

#define WAIT_MS 15000
#define USERS "/api/v1/admin/users"
#define CURRENT "/api/v1/current"

static struct dh_daemon dmn;
static bool test_passed;

static void start_with(const char *const *extra)
{
	char err[256];
	int rc = dh_start(&dmn, extra, err, sizeof(err));

	cr_assert_eq(rc, 0, "cannot start %s: %s", DATTSSD_PATH, err);
}

static void daemon_up(void)
{
	test_passed = false;
	start_with(NULL);
}

static void daemon_down(void)
{
	dh_stop(&dmn, 5000);
	if (!test_passed)
		dh_dump_log(&dmn, stderr);
	dh_destroy(&dmn);
}

static void passed(void)
{
	char state[96];

	cr_assert(dh_alive(&dmn), "dattssd died during the test: %s", dh_state_text(&dmn, state, sizeof(state)));
	test_passed = true;
}

TestSuite(users, .init = daemon_up, .fini = daemon_down, .timeout = 60);
/* Suites whose tests start the daemon themselves (other flags). */
TestSuite(users_custom, .fini = daemon_down, .timeout = 60);

/* ---- helpers --------------------------------------------------------------------------------------------------- */

static const char *admin_token(void)
{
	static char tok[128];
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/admin.token", dmn.data_dir);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s missing", path);
	cr_assert_not_null(fgets(tok, sizeof(tok), f));
	fclose(f);
	tok[strcspn(tok, "\r\n")] = '\0';
	return tok;
}

/* A request; asserts it got an answer. Returns the status; *body (may be NULL) gets the parsed JSON (caller owns). */
static int req(const char *method, const char *path, const char *bearer, const char *body, json_t **json)
{
	struct dh_reply r;
	int rc = dh_request(&dmn, method, path, bearer, body, body ? strlen(body) : 0, &r);
	int status;

	cr_assert_eq(rc, 0, "%s %s: %s", method, path, strerror(-rc));
	status = r.status;
	if (json)
		*json = r.body_len ? json_loads(r.body, 0, NULL) : NULL;
	dh_reply_free(&r);
	return status;
}

/* The "error" string of an error reply (borrowed). */
static const char *error_of(json_t *j)
{
	const char *e = json_string_value(json_object_get(j, "error"));

	return e ? e : "(no error field)";
}

struct creds {
	char user[80], api_key[64], secret[80], auth[160];
	long long key_id;
};

static void creds_from(json_t *j, struct creds *c)
{
	cr_assert(json_is_object(j), "credentials are not a JSON object");
	snprintf(c->user, sizeof(c->user), "%s", json_string_value(json_object_get(j, "user")));
	snprintf(c->api_key, sizeof(c->api_key), "%s", json_string_value(json_object_get(j, "api_key")));
	snprintf(c->secret, sizeof(c->secret), "%s", json_string_value(json_object_get(j, "secret")));
	snprintf(c->auth, sizeof(c->auth), "%s", json_string_value(json_object_get(j, "auth")));
	c->key_id = json_integer_value(json_object_get(j, "key_id"));
	cr_assert_eq(strncmp(c->api_key, "dk_", 3), 0, "api_key '%s'", c->api_key);
	cr_assert_eq(strlen(c->secret), 64, "secret '%s'", c->secret);
	cr_assert_gt(c->key_id, 0);
}

/* Create a user through the admin API. */
static void create_user(const char *email, struct creds *c)
{
	char body[256];
	json_t *j;
	int st;

	snprintf(body, sizeof(body), "{\"email\":\"%s\"}", email);
	st = req("POST", USERS, admin_token(), body, &j);
	cr_assert_eq(st, 201, "POST %s: %d %s", USERS, st, error_of(j));
	creds_from(j, c);
	cr_assert_str_eq(c->user, email);
	json_decref(j);
}

/* Is user listed by GET /api/v1/admin/users? */
static bool listed(const char *user)
{
	json_t *j, *u;
	size_t i;
	bool found = false;
	int st = req("GET", USERS, admin_token(), NULL, &j);

	cr_assert_eq(st, 200, "GET %s: %d", USERS, st);
	json_array_foreach(json_object_get(j, "users"), i, u)
		found |= strcmp(json_string_value(json_object_get(u, "user")), user) == 0;
	json_decref(j);
	return found;
}

/* A field of a counter object: API.md nests the statistics under "current"; older replies have them at top level. */
static double stat_of(json_t *counter, const char *field)
{
	json_t *cur = json_object_get(counter, "current");

	return dh_num(json_is_object(cur) ? cur : counter, field);
}

static json_t *find_counter(json_t *root, const char *process, const char *counter, const char *type)
{
	json_t *p, *c;
	size_t i, k;

	json_array_foreach(json_object_get(root, "processes"), i, p) {
		if (strcmp(json_string_value(json_object_get(p, "process")) ?: "", process) != 0)
			continue;
		json_array_foreach(json_object_get(p, "counters"), k, c) {
			const char *tags = json_string_value(json_object_get(c, "tags"));

			if (!strcmp(json_string_value(json_object_get(c, "counter")) ?: "", counter) &&
			    !strcmp(json_string_value(json_object_get(c, "type")) ?: "", type) && (!tags || !*tags))
				return c;
		}
	}
	return NULL;
}

/* Poll GET /api/v1/current with key until process/counter/type has field == want; returns the last value seen. */
static double wait_stat(const char *key, const char *process, const char *counter, const char *type,
			const char *field, double want)
{
	int64_t end = dh_now_ms() + WAIT_MS;
	double got = NAN;

	do {
		json_t *j, *c;
		int st = req("GET", CURRENT, key, NULL, &j);

		cr_assert_eq(st, 200, "GET %s with the user's key: %d %s", CURRENT, st, error_of(j));
		c = find_counter(j, process, counter, type);
		if (c)
			got = stat_of(c, field);
		json_decref(j);
		if (got == want)
			break;
		dh_sleep_ms(100);
	} while (dh_now_ms() < end && dh_alive(&dmn));
	return got;
}

/* The "user" a key reads /api/v1/current as (the reply's "user"), or the HTTP status when not 200. */
static int current_as(const char *key, char *user, size_t len)
{
	json_t *j;
	int st = req("GET", CURRENT, key, NULL, &j);

	snprintf(user, len, "%s", json_string_value(json_object_get(j, "user")) ?: "");
	json_decref(j);
	return st;
}

/* Run the dattss tool; returns the exit status (asserts it exited normally); out/err captured (caller frees). */
static int run_tool(const char *const *argv, char **out, char **err)
{
	int status, rc = dh_run(argv, 20000, &status, out, err);

	cr_assert_eq(rc, 0, "cannot run %s: %s", argv[0], strerror(-rc));
	cr_assert(WIFEXITED(status), "%s %s did not exit normally", argv[0], argv[1]);
	return WEXITSTATUS(status);
}

/* A UDP or TCP socket bound to src (a loopback address), connected to the daemon's statsd port. */
static int socket_from(const char *src, int type)
{
	struct sockaddr_in a = { .sin_family = AF_INET }, to = { .sin_family = AF_INET };
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	inet_pton(AF_INET, src, &a.sin_addr);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind %s: %s", src, strerror(errno));
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	to.sin_port = htons(dmn.statsd_port);
	cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0, "connect from %s: %s", src, strerror(errno));
	return fd;
}

/* ---- first start ----------------------------------------------------------------------------------------------- */

Test(users, first_start_writes_private_key_files_and_the_default_user)
{
	char path[256], user[80];
	struct stat sb;
	FILE *f;
	char url[128] = "", want[128];

	snprintf(path, sizeof(path), "%s/api.key", dmn.data_dir);
	cr_assert_eq(stat(path, &sb), 0, "api.key missing");
	cr_assert_eq(sb.st_mode & 0777, 0600, "api.key mode %o", (unsigned)(sb.st_mode & 0777));
	snprintf(path, sizeof(path), "%s/admin.token", dmn.data_dir);
	cr_assert_eq(stat(path, &sb), 0, "admin.token missing");
	cr_assert_eq(sb.st_mode & 0777, 0600, "admin.token mode %o", (unsigned)(sb.st_mode & 0777));
	snprintf(path, sizeof(path), "%s/http.url", dmn.data_dir);
	f = fopen(path, "r");
	cr_assert_not_null(f, "http.url missing");
	cr_assert_not_null(fgets(url, sizeof(url), f));
	fclose(f);
	snprintf(want, sizeof(want), "http://127.0.0.1:%u\n", dmn.http_port);
	cr_assert_str_eq(url, want);

	cr_assert(listed("default"), "the statsd listener's user is created at first start");
	cr_assert_eq(current_as(dh_api_key(&dmn), user, sizeof(user)), 200);
	cr_assert_str_eq(user, "default");
	passed();
}

/* ---- admin API ------------------------------------------------------------------------------------------------- */

Test(users, admin_api_refuses_without_the_admin_token)
{
	struct dh_reply r;
	json_t *j;

	cr_assert_eq(dh_request(&dmn, "GET", USERS, NULL, NULL, 0, &r), 0);
	cr_assert_eq(r.status, 401);
	cr_assert(strcasestr(r.headers, "WWW-Authenticate: Bearer") != NULL, "401 without WWW-Authenticate");
	dh_reply_free(&r);
	cr_assert_eq(req("POST", USERS, NULL, "{\"email\":\"a@example.com\"}", NULL), 401);
	cr_assert_eq(req("GET", USERS, dh_api_key(&dmn), NULL, NULL), 401, "a user's API key is not the admin token");
	cr_assert_eq(req("DELETE", USERS "/default", "0000", NULL, &j), 401);
	json_decref(j);
	cr_assert(listed("default"), "nothing was removed");
	passed();
}

Test(users, admin_api_bad_requests_name_the_field)
{
	static const struct {
		const char *method, *path, *body;
		int status;
		const char *msg; /* start of the error */
	} cases[] = {
		{ "POST", USERS, "{\"email\":\"bob\"}", 400, "email: 'bob' is not an email address" },
		{ "POST", USERS, "{\"email\":\"a b@example.com\"}", 400, "email: " },
		{ "POST", USERS, "{\"email\":\"a/b@example.com\"}", 400, "email: " },
		{ "POST", USERS, "{\"email\":42}", 400, "email: " },
		{ "POST", USERS, "{}", 400, "email: required" },
		{ "POST", USERS, "", 400, "body: " },
		{ "POST", USERS, "{\"email\":", 400, "body: not JSON" },
		{ "POST", USERS, "[1]", 400, "body: must be a JSON object" },
		{ "POST", USERS, "{\"email\":\"c@example.com\",\"admin\":true}", 400, "admin: unknown field" },
		{ "POST", USERS "/nobody@example.com/rotate", NULL, 404, "user: no user 'nobody@example.com'" },
		{ "DELETE", USERS "/nobody@example.com", NULL, 404, "user: no user" },
		{ "PATCH", USERS "/nobody@example.com", "{\"prometheus\":true}", 404, "user: no user" },
		{ "GET", USERS "/nobody@example.com", NULL, 404, "user: no user" },
		{ "PATCH", USERS "/default", "{\"prometheus\":\"yes\"}", 400, "prometheus: " },
		{ "DELETE", USERS "/bad%20name", NULL, 400, "user: must be 1..64 characters" },
		{ "GET", USERS "/default/keys", NULL, 404, "no such endpoint" },
		{ "PUT", USERS, "{}", 405, "method PUT not allowed" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *j = NULL;
		int st = req(cases[i].method, cases[i].path, admin_token(), cases[i].body, &j);

		cr_expect_eq(st, cases[i].status, "%s %s %s: status %d (%s)", cases[i].method, cases[i].path,
			     cases[i].body ? cases[i].body : "", st, error_of(j));
		cr_expect(strncmp(error_of(j), cases[i].msg, strlen(cases[i].msg)) == 0, "%s %s: error '%s', want '%s...'",
			  cases[i].method, cases[i].path, error_of(j), cases[i].msg);
		json_decref(j);
	}
	{
		struct creds c;
		json_t *j;

		create_user("dup@example.com", &c);
		cr_assert_eq(req("POST", USERS, admin_token(), "{\"email\":\"dup@example.com\"}", &j), 409);
		cr_assert(strncmp(error_of(j), "email: ", 7) == 0, "%s", error_of(j));
		json_decref(j);
	}
	passed();
}

Test(users, admin_api_create_rotate_remove_scopes_the_keys)
{
	struct creds a, a2;
	char user[80];
	json_t *j;

	create_user("alice@example.com", &a);
	cr_assert(listed("alice@example.com"));
	cr_assert_eq(current_as(a.api_key, user, sizeof(user)), 200);
	cr_assert_str_eq(user, "alice@example.com", "the key reads as its own user");

	cr_assert_eq(req("POST", USERS "/alice@example.com/rotate", admin_token(), NULL, &j), 200);
	creds_from(j, &a2);
	json_decref(j);
	cr_assert_gt(a2.key_id, a.key_id);
	cr_assert_eq(current_as(a.api_key, user, sizeof(user)), 401, "the old key must stop working at once");
	cr_assert_eq(current_as(a2.api_key, user, sizeof(user)), 200);
	cr_assert_str_eq(user, "alice@example.com");

	cr_assert_eq(req("PATCH", USERS "/alice%40example.com", admin_token(), "{\"prometheus\":true}", &j), 200);
	cr_assert(json_is_true(json_object_get(j, "prometheus")));
	json_decref(j);

	cr_assert_eq(req("DELETE", USERS "/alice@example.com", admin_token(), NULL, NULL), 204);
	cr_assert_eq(current_as(a2.api_key, user, sizeof(user)), 401, "a removed user's key must stop working");
	cr_assert_not(listed("alice@example.com"));
	cr_assert_eq(current_as(dh_api_key(&dmn), user, sizeof(user)), 200, "the other user is untouched");
	passed();
}

/* A removed user's alert rules go with it: a user re-created under the same email starts with none. */
Test(users, removing_a_user_removes_its_alert_rules)
{
	struct creds b, b2;
	json_t *j;
	int st;

	create_user("bob@example.com", &b);
	st = req("POST", "/api/v1/alerts", b.api_key,
		 "{\"kind\":\"above\",\"process\":\"api\",\"counter\":\"hits\",\"type\":\"c\",\"stat\":\"sum\","
		 "\"limit\":10,\"window_min\":1,\"for\":1,\"channels\":[{\"type\":\"webhook\","
		 "\"url\":\"http://127.0.0.1:9/hook\"}]}",
		 &j);
	cr_assert_eq(st, 201, "POST /api/v1/alerts: %d %s", st, error_of(j));
	json_decref(j);
	cr_assert_eq(req("GET", "/api/v1/alerts", b.api_key, NULL, &j), 200);
	cr_assert_eq(json_array_size(json_object_get(j, "rules")), 1);
	json_decref(j);

	cr_assert_eq(req("DELETE", USERS "/bob@example.com", admin_token(), NULL, NULL), 204);
	create_user("bob@example.com", &b2);
	cr_assert_eq(req("GET", "/api/v1/alerts", b2.api_key, NULL, &j), 200);
	cr_assert_eq(json_array_size(json_object_get(j, "rules")), 0, "the old user's rule survived its removal");
	json_decref(j);
	passed();
}

/* ---- dattss user ----------------------------------------------------------------------------------------------- */

Test(users, cli_add_on_a_stopped_store)
{
	const char *add[] = { DATTSS_PATH, "user", "add", "carol@example.com", "--data-dir", dmn.data_dir, "--json", NULL };
	const char *list[] = { DATTSS_PATH, "user", "list", "--data-dir", dmn.data_dir, "--json", NULL };
	char *out = NULL, *err = NULL, e[256], user[80];
	struct creds c;
	json_t *j;
	int code;

	cr_assert_eq(dh_stop(&dmn, 5000), 0);
	code = run_tool(add, &out, &err);
	cr_assert_eq(code, 0, "dattss user add: exit %d: %s", code, err);
	cr_assert(strstr(err, "changing the store directly") != NULL, "stderr: %s", err);
	j = json_loads(out, 0, NULL);
	creds_from(j, &c);
	cr_assert_str_eq(c.user, "carol@example.com");
	cr_assert(json_is_null(json_object_get(j, "auth")), "the harness daemon has a configured secret the store does not hold: "
			"no AUTH token may be printed");
	json_decref(j);
	free(out);
	free(err);

	code = run_tool(list, &out, &err);
	cr_assert_eq(code, 0, "dattss user list: %s", err);
	cr_assert(strstr(out, "\"carol@example.com\"") && strstr(out, "\"default\""), "list: %s", out);
	free(out);
	free(err);

	cr_assert_eq(dh_restart(&dmn, NULL, e, sizeof(e)), 0, "%s", e);
	cr_assert(listed("carol@example.com"));
	cr_assert_eq(current_as(c.api_key, user, sizeof(user)), 200, "the key made on the stopped store works");
	cr_assert_str_eq(user, "carol@example.com");
	passed();
}

Test(users, cli_through_the_running_daemon)
{
	const char *add[] = { DATTSS_PATH, "user", "add", "dave@example.com", "--data-dir", dmn.data_dir, "--json", NULL };
	const char *rot[] = { DATTSS_PATH, "user", "rotate", "dave@example.com", "--data-dir", dmn.data_dir, "--json",
			      NULL };
	const char *rm_no[] = { DATTSS_PATH, "user", "remove", "dave@example.com", "--data-dir", dmn.data_dir, NULL };
	const char *rm[] = { DATTSS_PATH, "user", "remove", "dave@example.com", "--yes", "--data-dir", dmn.data_dir,
			     NULL };
	const char *bad[] = { DATTSS_PATH, "user", "add", "not-an-email", "--data-dir", dmn.data_dir, NULL };
	char *out = NULL, *err = NULL, user[80];
	struct creds c, c2;
	json_t *j;
	int code;

	code = run_tool(add, &out, &err);
	cr_assert_eq(code, 0, "dattss user add: exit %d: %s", code, err);
	cr_assert(strstr(err, "dattssd is running") && strstr(err, "admin API"), "stderr: %s", err);
	j = json_loads(out, 0, NULL);
	creds_from(j, &c);
	json_decref(j);
	free(out);
	free(err);
	cr_assert(listed("dave@example.com"), "the running daemon knows the new user at once");
	cr_assert_eq(current_as(c.api_key, user, sizeof(user)), 200);

	code = run_tool(rot, &out, &err);
	cr_assert_eq(code, 0, "dattss user rotate: %s", err);
	j = json_loads(out, 0, NULL);
	creds_from(j, &c2);
	json_decref(j);
	free(out);
	free(err);
	cr_assert_eq(current_as(c.api_key, user, sizeof(user)), 401);
	cr_assert_eq(current_as(c2.api_key, user, sizeof(user)), 200);

	code = run_tool(rm_no, &out, &err);
	cr_assert_eq(code, 2, "remove without --yes must refuse");
	cr_assert(strstr(err, "--yes") != NULL, "%s", err);
	free(out);
	free(err);
	cr_assert(listed("dave@example.com"));
	code = run_tool(rm, &out, &err);
	cr_assert_eq(code, 0, "dattss user remove --yes: %s", err);
	free(out);
	free(err);
	cr_assert_not(listed("dave@example.com"));
	code = run_tool(rm, &out, &err);
	cr_assert_eq(code, 1, "removing an unknown user fails");
	cr_assert(strstr(err, "no user 'dave@example.com'") != NULL, "%s", err);
	free(out);
	free(err);

	code = run_tool(bad, &out, &err);
	cr_assert_eq(code, 2);
	cr_assert(strstr(err, "email: 'not-an-email' is not an email address") != NULL, "%s", err);
	free(out);
	free(err);
	passed();
}

/* ---- statsd_allow ---------------------------------------------------------------------------------------------- */

Test(users_custom, statsd_allow_drops_other_sources)
{
	const char *extra[] = { "--statsd-allow", "127.0.0.1/32", NULL };
	int udp_ok, udp_bad, tcp_bad;
	char buf[16];
	unsigned n;

	test_passed = false;
	start_with(extra);
	udp_bad = socket_from("127.0.0.2", SOCK_DGRAM);
	cr_assert_eq(dh_udp_send(udp_bad, "allow.denied:100|c", 18), 0);
	cr_assert_eq(dh_udp_send(udp_bad, "allow.ok:100|c", 14), 0);
	tcp_bad = socket_from("127.0.0.2", SOCK_STREAM);
	(void)!write(tcp_bad, "allow.ok:1000|c\n", 16);
	/* the daemon closes a denied connection at once: the read sees EOF (or a reset), never a hang */
	cr_assert_leq(read(tcp_bad, buf, sizeof(buf)), 0);
	close(tcp_bad);
	close(udp_bad);
	udp_ok = socket_from("127.0.0.1", SOCK_DGRAM);
	cr_assert_eq(dh_udp_send(udp_ok, "allow.ok:1|c", 12), 0);
	close(udp_ok);

	cr_assert_eq(wait_stat(dh_api_key(&dmn), "allow", "ok", "c", "sum", 1), 1,
		     "only the allowed source's value may count");
	cr_assert_eq(dh_metric(&dmn, "dattss_denied_datagrams_total", NULL, &n), 2);
	cr_assert_eq(n, 1);
	{
		const char *lab[] = { "outcome=\"denied\"", NULL };

		cr_assert_eq(dh_metric(&dmn, "dattss_tcp_connections_total", lab, &n), 1);
	}
	{
		json_t *j;

		cr_assert_eq(req("GET", CURRENT, dh_api_key(&dmn), NULL, &j), 200);
		cr_assert_null(find_counter(j, "allow", "denied", "c"), "a denied datagram reached the engine");
		json_decref(j);
	}
	passed();
}

Test(users_custom, statsd_allow_is_validated)
{
	const char *argv[] = { DATTSSD_PATH, "--statsd-allow", "10.0.0.1/8", "--data-dir", "/nonexistent/x", NULL };
	char *out = NULL, *err = NULL;
	int code;

	code = run_tool(argv, &out, &err);
	cr_assert_eq(code, 2);
	cr_assert(strstr(err, "statsd-allow") && strstr(err, "10.0.0.0/8?"), "%s", err);
	free(out);
	free(err);
	test_passed = true;
}

/* ---- dattss send and the AUTH token ---------------------------------------------------------------------------- */

Test(users, dattss_send_value_arrives_for_its_user_only)
{
	struct creds c;
	char server[64], kid[24], *out = NULL, *err = NULL;
	int code;

	create_user("sender@example.com", &c);
	snprintf(server, sizeof(server), "127.0.0.1:%u", dmn.statsd_port);
	snprintf(kid, sizeof(kid), "%lld", c.key_id);
	{
		const char *argv[] = { DATTSS_PATH, "send", "--server", server, "--process", "api", "--user", c.user,
				       "--key-id", kid, "--secret", c.secret, "query", "153ms", NULL };

		code = run_tool(argv, &out, &err);
		cr_assert_eq(code, 0, "dattss send: exit %d: %s", code, err);
		free(out);
		free(err);
	}
	cr_assert_eq(wait_stat(c.api_key, "api", "query", "ms", "count", 1), 1, "the value never arrived");
	{
		json_t *j, *s;

		cr_assert_eq(req("GET", CURRENT, c.api_key, NULL, &j), 200);
		s = find_counter(j, "api", "query", "ms");
		cr_assert_not_null(s);
		cr_assert_eq(stat_of(s, "max"), 153);
		json_decref(j);
		cr_assert_eq(req("GET", CURRENT, dh_api_key(&dmn), NULL, &j), 200);
		cr_assert_null(find_counter(j, "api", "query", "ms"), "another user's key sees the value");
		json_decref(j);
	}
	{
		/* a wrong secret: sent (UDP has no answer) but never aggregated. A good value sent after it shows when
		 * the forged one has been through the decoder too. */
		const char *forged[] = { DATTSS_PATH, "send", "--server", server, "--process", "api", "--user", c.user,
					 "--key-id", kid, "--secret", "0000", "forged", "1c", NULL };
		const char *after[] = { DATTSS_PATH, "send", "--server", server, "--process", "api", "--user", c.user,
					"--key-id", kid, "--secret", c.secret, "after", "2c", NULL };
		json_t *j;

		cr_assert_eq(run_tool(forged, &out, &err), 0, "%s", err);
		free(out);
		free(err);
		cr_assert_eq(run_tool(after, &out, &err), 0, "%s", err);
		free(out);
		free(err);
		cr_assert_eq(wait_stat(c.api_key, "api", "after", "c", "sum", 2), 2);
		dh_sleep_ms(300);
		cr_assert_eq(req("GET", CURRENT, c.api_key, NULL, &j), 200);
		cr_assert_null(find_counter(j, "api", "forged", "c"), "a datagram with a wrong secret was aggregated");
		json_decref(j);
		{
			const char *lab[] = { "protocol=\"native\"", "reason=\"bad_mac\"", NULL };
			unsigned n;

			cr_assert_eq(dh_metric(&dmn, "dattss_rejected_datagrams_total", lab, &n), 1,
				     "the forged datagram is counted as bad_mac");
		}
	}
	passed();
}

Test(users, dattss_send_errors_name_the_argument)
{
	static const struct {
		const char *args[6];
		const char *msg;
	} cases[] = {
		{ { "query", "153ms" }, "user: missing" },
		{ { "--user", "u@example.com", "query", "153ms" }, "key id: missing" },
		{ { "--user", "u@example.com", "--key-id", "x", "query", "153ms" }, "key id: 'x'" },
		{ { "--user", "u@example.com", "--key-id", "3", "query", "153ms" }, "secret: missing" },
		{ { "--user", "bad user", "--key-id", "3", "q", "1c" }, "user: 'bad user'" },
	};
	static const char *const values[] = { "153", "1x", "ms", "1e999c", "0x10c" };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[12] = { DATTSS_PATH, "send" };
		char *out = NULL, *err = NULL;
		size_t n = 2;

		for (size_t k = 0; k < 6 && cases[i].args[k]; k++)
			argv[n++] = cases[i].args[k];
		cr_expect_eq(run_tool(argv, &out, &err), 2, "case %zu", i);
		cr_expect(strstr(err, cases[i].msg) != NULL, "case %zu: %s", i, err);
		free(out);
		free(err);
	}
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		const char *argv[] = { DATTSS_PATH, "send", "--user", "u@example.com", "--key-id", "3", "--secret", "ab",
				       "q", values[i], NULL };
		char *out = NULL, *err = NULL;

		cr_expect_eq(run_tool(argv, &out, &err), 2, "value %s", values[i]);
		cr_expect(strstr(err, "VALUE: ") != NULL, "value %s: %s", values[i], err);
		free(out);
		free(err);
	}
	passed();
}

Test(users, auth_token_from_admin_api_is_accepted_on_udp)
{
	struct creds c;
	char line[256];
	int fd;

	create_user("orig@example.com", &c);
	cr_assert(strncmp(c.auth, "orig@example.com_", 17) == 0, "auth '%s'", c.auth);
	fd = dh_udp_socket(&dmn);
	cr_assert_geq(fd, 0);
	snprintf(line, sizeof(line), "%s:legacy:hits:7c", c.auth);
	cr_assert_eq(dh_udp_send(fd, line, strlen(line)), 0);
	cr_assert_eq(wait_stat(c.api_key, "legacy", "hits", "c", "sum", 7), 7);

	/* removing the user revokes the token, although it derives from the server secret alone */
	{
		const char *const lbl[] = { "reason=\"unknown_user\"", NULL };
		int64_t deadline = dh_now_ms() + WAIT_MS;
		double refused = 0;
		unsigned matched;

		cr_assert_eq(req("DELETE", USERS "/orig@example.com", admin_token(), NULL, NULL), 204);
		cr_assert_eq(dh_udp_send(fd, line, strlen(line)), 0);
		while (refused < 1 && dh_now_ms() < deadline) {
			refused = dh_metric(&dmn, "dattss_rejected_lines_total", lbl, &matched);
			if (refused < 1)
				dh_sleep_ms(50);
		}
		cr_assert_eq(refused, 1, "the removed user's line was not refused as unknown_user");
	}
	close(fd);
	passed();
}

Test(users_custom, stored_server_secret_is_used_when_none_is_configured)
{
	const char *extra[] = { "--secret", "", NULL };
	struct creds c;
	char line[256];
	int fd;

	test_passed = false;
	start_with(extra);
	create_user("nosecret@example.com", &c);
	fd = dh_udp_socket(&dmn);
	cr_assert_geq(fd, 0);
	snprintf(line, sizeof(line), "%s:legacy:hits:3c", c.auth);
	cr_assert_eq(dh_udp_send(fd, line, strlen(line)), 0);
	close(fd);
	cr_assert_eq(wait_stat(c.api_key, "legacy", "hits", "c", "sum", 3), 3,
		     "a token derived from the stored server secret must be accepted");
	passed();
}
