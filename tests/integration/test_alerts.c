/*
 * test_alerts.c - alerts end to end with the real dattssd (docs/alerts.md): rules created through the API, driven to
 * firing and back to resolved by real traffic (statsd over UDP; heartbeats of libdattss, the native protocol), and the
 * notifications checked where they arrive:
 *   - a tiny SMTP server on loopback (a thread of this test): the envelope (MAIL FROM, RCPT TO), the headers and the
 *     body of each email;
 *   - a tiny HTTP receiver on loopback (a thread): the Twilio-style form POSTs of SMS and calls (path, basic auth,
 *     To, From, Body, Twiml) and the webhook's JSON.
 * A second test flaps a rule under a tight rate limit and makes the first webhook delivery fail: the flapping is
 * rate-limited (held notifications are counted and said in the next message) and the failure is retried.
 *
 * Timing: the daemon evaluates every second (--alert-eval-s 1) and a minute of after_min lasts 5 s (--alert-minute-s
 * 5, a test-only setting), so stopped_working fires after 10 s without data. The current state the rules read is
 * republished every 5 s, so a change takes up to ~6 s to show; each wait below allows several times that. The two
 * tests run in parallel (ctest passes --jobs=2), about 60 s of wall time in all.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dattss.h"
#include "integration/daemon_harness.h"

#define WAIT_MS 30000 /* longest wait for a state change: several 5-second publications on a loaded machine */

/* ---- loopback receivers (threads of this test) ----------------------------------------------------------------- */

struct message {
	/* SMTP */
	char from[256];
	char rcpt[4][256];
	unsigned nrcpt;
	/* HTTP */
	char method[16];
	char path[256];
	char auth[256];
	char ctype[128];
	int status; /* what the receiver answered */
	/* both: the DATA of an email, the body of a request */
	char *body;
};

struct receiver {
	int fd;
	uint16_t port;
	bool smtp;
	pthread_t thread;
	pthread_mutex_t mu;
	volatile bool stop;
	unsigned fail_first; /* HTTP: answer this many requests with 500 */
	struct message msgs[64];
	size_t n;
};

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fd, 16), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* A buffered reader over a connection, with a time limit per read. */
struct conn {
	int fd;
	char buf[65536];
	size_t len;
};

static bool conn_fill(struct conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	ssize_t r;

	if (c->len == sizeof(c->buf) || poll(&p, 1, 5000) <= 0)
		return false;
	r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
	if (r <= 0)
		return false;
	c->len += (size_t)r;
	return true;
}

/* One CRLF-terminated line (without the CRLF) into out. */
static bool conn_line(struct conn *c, char *out, size_t outlen)
{
	for (;;) {
		char *nl = memmem(c->buf, c->len, "\r\n", 2);

		if (nl) {
			size_t n = (size_t)(nl - c->buf);

			snprintf(out, outlen, "%.*s", (int)n, c->buf);
			memmove(c->buf, nl + 2, c->len - n - 2);
			c->len -= n + 2;
			return true;
		}
		if (!conn_fill(c))
			return false;
	}
}

static void say(int fd, const char *s)
{
	ssize_t w = write(fd, s, strlen(s));

	(void)w;
}

static void store(struct receiver *r, struct message *m)
{
	pthread_mutex_lock(&r->mu);
	if (r->n < sizeof(r->msgs) / sizeof(r->msgs[0]))
		r->msgs[r->n++] = *m;
	else
		free(m->body);
	pthread_mutex_unlock(&r->mu);
}

/* The SMTP dialogue of one connection (RFC 5321, just enough for libcurl: EHLO, MAIL, RCPT, DATA, QUIT). */
static void smtp_session(struct receiver *r, int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct message m = { 0 };
	char line[4096];

	c->fd = fd;
	say(fd, "220 smtp.test ESMTP\r\n");
	while (conn_line(c, line, sizeof(line))) {
		if (!strncasecmp(line, "EHLO", 4)) {
			say(fd, "250-smtp.test\r\n250 8BITMIME\r\n");
		} else if (!strncasecmp(line, "HELO", 4) || !strncasecmp(line, "NOOP", 4) ||
			   !strncasecmp(line, "RSET", 4)) {
			say(fd, "250 OK\r\n");
		} else if (!strncasecmp(line, "MAIL FROM:", 10)) {
			snprintf(m.from, sizeof(m.from), "%.255s", line + 10);
			say(fd, "250 OK\r\n");
		} else if (!strncasecmp(line, "RCPT TO:", 8)) {
			if (m.nrcpt < 4)
				snprintf(m.rcpt[m.nrcpt++], sizeof(m.rcpt[0]), "%.255s", line + 8);
			say(fd, "250 OK\r\n");
		} else if (!strncasecmp(line, "DATA", 4)) {
			size_t len = 0, cap = 65536;
			char *data = malloc(cap);

			say(fd, "354 End data with <CR><LF>.<CR><LF>\r\n");
			while (conn_line(c, line, sizeof(line)) && strcmp(line, ".") != 0) {
				const char *l = line[0] == '.' ? line + 1 : line; /* dot-stuffing */
				size_t n = strlen(l);

				if (len + n + 2 < cap) {
					memcpy(data + len, l, n);
					memcpy(data + len + n, "\n", 2);
					len += n + 1;
				}
			}
			data[len] = '\0';
			m.body = data;
			store(r, &m);
			memset(&m, 0, sizeof(m));
			say(fd, "250 OK queued\r\n");
		} else if (!strncasecmp(line, "QUIT", 4)) {
			say(fd, "221 Bye\r\n");
			break;
		} else {
			say(fd, "502 Command not implemented\r\n");
		}
	}
	free(m.body);
	free(c);
}

/* One HTTP/1.1 request: headers, Content-Length body; answer 200 {} (or 500 while fail_first lasts); close. */
static void http_session(struct receiver *r, int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct message m = { 0 };
	char line[4096], reply[256];
	size_t clen = 0;
	bool fail;

	c->fd = fd;
	if (!conn_line(c, line, sizeof(line)) || sscanf(line, "%15s %255s", m.method, m.path) != 2)
		goto out;
	while (conn_line(c, line, sizeof(line)) && line[0]) {
		if (!strncasecmp(line, "Content-Length:", 15))
			clen = strtoul(line + 15, NULL, 10);
		else if (!strncasecmp(line, "Authorization:", 14))
			snprintf(m.auth, sizeof(m.auth), "%.255s", line + 15);
		else if (!strncasecmp(line, "Content-Type:", 13))
			snprintf(m.ctype, sizeof(m.ctype), "%.127s", line + 14);
		else if (!strncasecmp(line, "Expect: 100-continue", 20))
			say(fd, "HTTP/1.1 100 Continue\r\n\r\n");
	}
	while (c->len < clen && conn_fill(c))
		;
	m.body = strndup(c->buf, clen < c->len ? clen : c->len);
	pthread_mutex_lock(&r->mu);
	fail = r->fail_first > 0;
	if (fail)
		r->fail_first--;
	pthread_mutex_unlock(&r->mu);
	m.status = fail ? 500 : 200;
	snprintf(reply, sizeof(reply), "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
				       "Connection: close\r\n\r\n%s",
		 fail ? "500 Internal Server Error" : "200 OK", fail ? 14 : 2, fail ? "{\"error\":\"x\"}\n" : "{}");
	say(fd, reply);
	store(r, &m);
out:
	free(c);
}

static void *receiver_main(void *arg)
{
	struct receiver *r = arg;

	while (!r->stop) {
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, 100) <= 0)
			continue;
		fd = accept4(r->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (r->smtp)
			smtp_session(r, fd);
		else
			http_session(r, fd);
		close(fd);
	}
	return NULL;
}

static void receiver_start(struct receiver *r, bool smtp)
{
	memset(r, 0, sizeof(*r));
	r->smtp = smtp;
	r->fd = listen_loopback(&r->port);
	pthread_mutex_init(&r->mu, NULL);
	cr_assert_eq(pthread_create(&r->thread, NULL, receiver_main, r), 0);
}

static void receiver_stop(struct receiver *r)
{
	if (!r->fd)
		return;
	r->stop = true;
	pthread_join(r->thread, NULL);
	close(r->fd);
	for (size_t i = 0; i < r->n; i++)
		free(r->msgs[i].body);
	r->fd = 0;
}

/* Messages whose path starts with prefix (HTTP), or all (prefix NULL). */
static size_t count(struct receiver *r, const char *prefix)
{
	size_t k = 0;

	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->n; i++)
		k += !prefix || strncmp(r->msgs[i].path, prefix, strlen(prefix)) == 0;
	pthread_mutex_unlock(&r->mu);
	return k;
}

/* The k-th message whose path starts with prefix (a copy of the struct; the body stays the receiver's). */
static struct message nth(struct receiver *r, const char *prefix, size_t k)
{
	struct message m = { 0 };

	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->n; i++)
		if (!prefix || strncmp(r->msgs[i].path, prefix, strlen(prefix)) == 0) {
			if (k-- == 0) {
				m = r->msgs[i];
				break;
			}
		}
	pthread_mutex_unlock(&r->mu);
	return m;
}

/* A field of an application/x-www-form-urlencoded body, decoded (%XX and '+'), into out; false when absent. */
static bool form_get(const char *body, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name), k = 0;

	for (const char *p = body; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, name, nl) != 0 || p[nl] != '=')
			continue;
		for (p += nl + 1; *p && *p != '&' && k + 1 < outlen; p++) {
			if (*p == '%' && p[1] && p[2]) {
				char hex[3] = { p[1], p[2], 0 };

				out[k++] = (char)strtol(hex, NULL, 16);
				p += 2;
			} else {
				out[k++] = *p == '+' ? ' ' : *p;
			}
		}
		out[k] = '\0';
		return true;
	}
	return false;
}

/* ---- the daemon ------------------------------------------------------------------------------------------------ */

static struct dh_daemon dmn;
static struct receiver smtp, http;
static bool test_passed;

static void fini(void)
{
	if (!test_passed)
		dh_dump_log(&dmn, stderr);
	dh_destroy(&dmn);
	receiver_stop(&smtp);
	receiver_stop(&http);
}

/* Start the receivers and the daemon with the alert settings plus extra flags (NULL-terminated). */
static void start(const char *const *extra)
{
	char smtp_url[64], sms_url[64], call_url[64], err[256];
	const char *argv[40];
	size_t n = 0;

	test_passed = false;
	receiver_start(&smtp, true);
	receiver_start(&http, false);
	snprintf(smtp_url, sizeof(smtp_url), "smtp://127.0.0.1:%u", smtp.port);
	snprintf(sms_url, sizeof(sms_url), "http://127.0.0.1:%u/sms/2010-04-01/", http.port);
	snprintf(call_url, sizeof(call_url), "http://127.0.0.1:%u/voice", http.port);
	const char *base[] = {
		"--smtp-url", smtp_url, "--smtp-from", "alerts@dattss.test", "--no-smtp-starttls",
		"--sms-url", sms_url, "--sms-account", "ACtest", "--sms-token", "tok", "--sms-from", "+15550000001",
		"--call-url", call_url, "--alert-eval-s", "1", "--alert-minute-s", "5", "--notify-timeout-s", "5",
	};
	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
		argv[n++] = base[i];
	for (size_t i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	cr_assert_eq(dh_start(&dmn, argv, err, sizeof(err)), 0, "cannot start %s: %s", DATTSSD_PATH, err);
}

/* A request with bearer; the JSON reply with the wanted status (asserted). */
static json_t *call(const char *method, const char *path, const char *key, const char *body, int want)
{
	struct dh_reply r;
	json_t *j;

	cr_assert_eq(dh_request(&dmn, method, path, key, body, body ? strlen(body) : 0, &r), 0, "%s %s", method, path);
	cr_assert_eq(r.status, want, "%s %s -> %d: %s", method, path, r.status, r.body);
	j = r.body_len ? json_loads(r.body, 0, NULL) : json_object();
	cr_assert_not_null(j, "%s %s: not JSON: %s", method, path, r.body);
	dh_reply_free(&r);
	return j;
}

/* POST a rule; returns its id (static storage per slot). */
static const char *add_rule(const char *key, const char *rule, char id[16])
{
	json_t *j = call("POST", "/api/v1/alerts", key, rule, 201);

	snprintf(id, 16, "%s", json_string_value(json_object_get(json_object_get(j, "rule"), "id")));
	cr_assert_eq(strlen(id), 12, "id of %s", rule);
	json_decref(j);
	return id;
}

static char state_buf[16];

static const char *state_of(const char *key, const char *id)
{
	json_t *j = call("GET", "/api/v1/alerts", key, NULL, 200), *r;
	size_t i;

	state_buf[0] = '\0';
	json_array_foreach(json_object_get(j, "rules"), i, r)
		if (strcmp(json_string_value(json_object_get(r, "id")), id) == 0)
			snprintf(state_buf, sizeof(state_buf), "%s", json_string_value(json_object_get(r, "state")));
	json_decref(j);
	return state_buf;
}

static void statsd(int fd, const char *line)
{
	cr_assert_eq(dh_udp_send(fd, line, strlen(line)), 0);
}

/* The process "worker" of user: libdattss sends its statistics (a heartbeat) now and every 5 s from its thread. */
static struct dts *worker_start(const char *user, uint32_t key_id, const char *secret)
{
	char server[32];
	struct dts *d;

	snprintf(server, sizeof(server), "127.0.0.1:%u", dmn.statsd_port);
	d = dts_open(server, user, key_id, secret, "worker");
	cr_assert_not_null(d, "dts_open: %s", strerror(errno));
	cr_assert_eq(dts_count(d, "beats", 1), 0);
	cr_assert_eq(dts_flush(d), 0);
	return d;
}

/* ---- every kind to firing and back ----------------------------------------------------------------------------- */

TestSuite(alerts, .fini = fini, .timeout = 150);

Test(alerts, every_kind_fires_and_resolves)
{
	const char *extra[] = { "--alert-repeat-s", "0", "--alert-rate-burst", "50", NULL };
	char id1[16], id2[16], id3[16], id4[16], admin[128], path[300], user2[80], key2[128], secret2[128];
	char hook1[128], hook4[128], rule[1024], v[2048];
	const char *key;
	uint32_t key_id2;
	struct dts *client;
	int fd;
	json_t *j;
	FILE *f;

	start(extra);
	key = dh_api_key(&dmn);
	cr_assert(key[0], "no API key");

	/* A second user, for the heartbeats of its process "worker" (native protocol through libdattss). */
	snprintf(path, sizeof(path), "%s/admin.token", dmn.data_dir);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	cr_assert_not_null(fgets(admin, sizeof(admin), f));
	fclose(f);
	admin[strcspn(admin, "\r\n")] = '\0';
	j = call("POST", "/api/v1/admin/users", admin, "{\"email\":\"team@example.com\"}", 201);
	snprintf(user2, sizeof(user2), "%s", json_string_value(json_object_get(j, "user")));
	snprintf(key2, sizeof(key2), "%s", json_string_value(json_object_get(j, "api_key")));
	snprintf(secret2, sizeof(secret2), "%s", json_string_value(json_object_get(j, "secret")));
	key_id2 = (uint32_t)json_integer_value(json_object_get(j, "key_id"));
	json_decref(j);

	snprintf(hook1, sizeof(hook1), "http://127.0.0.1:%u/hook/1", http.port);
	snprintf(hook4, sizeof(hook4), "http://127.0.0.1:%u/hook/4", http.port);
	snprintf(rule, sizeof(rule),
		 "{\"kind\":\"above\",\"name\":\"temp high\",\"process\":\"app\",\"counter\":\"temp\",\"type\":\"g\","
		 "\"stat\":\"lst\",\"limit\":100,\"for\":2,\"channels\":[{\"type\":\"email\",\"to\":[\"ops@example.com\","
		 "\"oncall@example.com\"]},{\"type\":\"webhook\",\"url\":\"%s\"}]}", hook1);
	add_rule(key, rule, id1);
	add_rule(key, "{\"kind\":\"below\",\"name\":\"level low\",\"process\":\"app\",\"counter\":\"level\","
		      "\"type\":\"g\",\"stat\":\"lst\",\"limit\":10,\"channels\":[{\"type\":\"sms\",\"to\":\"+15551230001\"}]}",
		 id2);
	add_rule(key, "{\"kind\":\"stopped_working\",\"name\":\"hits stopped\",\"process\":\"app\",\"counter\":\"hits\","
		      "\"type\":\"c\",\"after_min\":2,\"channels\":[{\"type\":\"call\",\"to\":\"+15551230002\"}]}",
		 id3);
	snprintf(rule, sizeof(rule),
		 "{\"kind\":\"stopped_responding\",\"name\":\"worker down\",\"process\":\"worker\",\"after_s\":8,"
		 "\"channels\":[{\"type\":\"webhook\",\"url\":\"%s\"}]}", hook4);
	add_rule(key2, rule, id4);
	/* Users are separate: the default user does not see the second user's rule. */
	cr_expect_str_eq(state_of(key, id4), "");
	json_decref(call("DELETE", "/api/v1/alerts/000000000000", key, NULL, 404));

	/* Phase 1: temp above, level below, hits flowing, the worker beating. */
	fd = dh_udp_socket(&dmn);
	cr_assert_geq(fd, 0);
	client = worker_start(user2, key_id2, secret2);
	int64_t end = dh_now_ms() + WAIT_MS;
	bool fired = false;
	while (!fired && dh_now_ms() < end) {
		statsd(fd, "app.temp:150|g\napp.level:5|g\napp.hits:1|c");
		dh_sleep_ms(500);
		fired = !strcmp(state_of(key, id1), "firing") && !strcmp(state_of(key, id2), "firing");
	}
	cr_assert(fired, "temp high: %s, level low: %s", state_of(key, id1), state_of(key, id2));
	cr_expect_str_eq(state_of(key, id3), "ok", "hits keep coming");
	cr_expect_str_eq(state_of(key2, id4), "ok", "the worker beats every 5 s");

	/* Phase 2: hits stop; the worker stops (its client closes). */
	dts_close(client);
	end = dh_now_ms() + WAIT_MS;
	while (dh_now_ms() < end && (strcmp(state_of(key, id3), "firing") || strcmp(state_of(key2, id4), "firing")))
		dh_sleep_ms(500);
	cr_assert_str_eq(state_of(key, id3), "firing", "hits stopped");
	cr_assert_str_eq(state_of(key2, id4), "firing", "worker down");

	/* Phase 3: everything back to normal. */
	client = worker_start(user2, key_id2, secret2);
	end = dh_now_ms() + WAIT_MS;
	bool resolved = false;
	while (!resolved && dh_now_ms() < end) {
		statsd(fd, "app.temp:50|g\napp.level:50|g\napp.hits:1|c");
		dh_sleep_ms(500);
		resolved = !strcmp(state_of(key, id1), "resolved") && !strcmp(state_of(key, id2), "resolved") &&
			   !strcmp(state_of(key, id3), "resolved") && !strcmp(state_of(key2, id4), "resolved");
	}
	cr_assert(resolved, "states: %s %s %s %s", state_of(key, id1), state_of(key, id2), state_of(key, id3),
		  state_of(key2, id4));
	dts_close(client);
	close(fd);

	/* Everything that was sent has arrived (deliveries follow the round within a second). */
	end = dh_now_ms() + 10000;
	while (dh_now_ms() < end && (count(&smtp, NULL) < 2 || count(&http, "/sms/") < 2 || count(&http, "/voice/") < 2 ||
				     count(&http, "/hook/1") < 2 || count(&http, "/hook/4") < 2))
		dh_sleep_ms(200);

	/* Email: the envelope, the headers, the body, for firing then resolved. */
	cr_assert_eq(count(&smtp, NULL), 2, "emails: %zu", count(&smtp, NULL));
	for (size_t i = 0; i < 2; i++) {
		struct message m = nth(&smtp, NULL, i);
		const char *word = i == 0 ? "FIRING" : "RESOLVED";

		cr_expect_str_eq(m.from, "<alerts@dattss.test>");
		cr_expect_eq(m.nrcpt, 2);
		cr_expect_str_eq(m.rcpt[0], "<ops@example.com>");
		cr_expect_str_eq(m.rcpt[1], "<oncall@example.com>");
		cr_expect(strstr(m.body, "From: DaTtSs alerts <alerts@dattss.test>\n"), "%s", m.body);
		cr_expect(strstr(m.body, "To: ops@example.com, oncall@example.com\n"), "%s", m.body);
		snprintf(v, sizeof(v), "Subject: [DaTtSs] %s: temp high\n", word);
		cr_expect(strstr(m.body, v), "want %s in\n%s", v, m.body);
		cr_expect(strstr(m.body, "Content-Type: text/plain; charset=utf-8\n"), "%s", m.body);
		snprintf(v, sizeof(v), "\n%s: temp high\n  watches: lst of app/temp (g) over 1 min above 100 for 2 "
				       "evaluations\n  value:   %s\n", word, i == 0 ? "150" : "50");
		cr_expect(strstr(m.body, v), "want\n%s\nin\n%s", v, m.body);
		snprintf(v, sizeof(v), "  rule:    %s (above)\n", id1);
		cr_expect(strstr(m.body, v), "%s", m.body);
		cr_expect(strstr(m.body, "Alerts of user default at "), "%s", m.body);
	}

	/* SMS: Twilio-style form POSTs with basic auth. */
	cr_assert_eq(count(&http, "/sms/"), 2);
	for (size_t i = 0; i < 2; i++) {
		struct message m = nth(&http, "/sms/", i);

		cr_expect_str_eq(m.method, "POST");
		cr_expect_str_eq(m.path, "/sms/2010-04-01/Accounts/ACtest/Messages.json");
		cr_expect_str_eq(m.auth, "Basic QUN0ZXN0OnRvaw==", "account:token");
		cr_expect_str_eq(m.ctype, "application/x-www-form-urlencoded");
		cr_expect(form_get(m.body, "To", v, sizeof(v)) && !strcmp(v, "+15551230001"), "To in %s", m.body);
		cr_expect(form_get(m.body, "From", v, sizeof(v)) && !strcmp(v, "+15550000001"), "From in %s", m.body);
		cr_expect(form_get(m.body, "Body", v, sizeof(v)), "Body in %s", m.body);
		cr_expect_str_eq(v, i == 0 ? "DaTtSs FIRING level low: 5" : "DaTtSs RESOLVED level low: 50");
	}

	/* Call: To, From and an inline TwiML that says it. */
	cr_assert_eq(count(&http, "/voice/"), 2);
	for (size_t i = 0; i < 2; i++) {
		struct message m = nth(&http, "/voice/", i);

		cr_expect_str_eq(m.path, "/voice/Accounts/ACtest/Calls.json");
		cr_expect_str_eq(m.auth, "Basic QUN0ZXN0OnRvaw==");
		cr_expect(form_get(m.body, "To", v, sizeof(v)) && !strcmp(v, "+15551230002"), "To in %s", m.body);
		cr_expect(form_get(m.body, "From", v, sizeof(v)) && !strcmp(v, "+15550000001"), "From in %s", m.body);
		cr_expect(form_get(m.body, "Twiml", v, sizeof(v)), "Twiml in %s", m.body);
		cr_expect(!strncmp(v, "<Response><Say>DaTtSs alert for user default. ", 46), "%s", v);
		cr_expect(strstr(v, i == 0 ? " Firing: hits stopped. Value no data for " : " Resolved: hits stopped. "), "%s",
			  v);
		cr_expect(strstr(v, "</Say></Response>"), "%s", v);
	}

	/* Webhooks: the JSON of each notice. */
	for (int w = 0; w < 2; w++) {
		const char *prefix = w == 0 ? "/hook/1" : "/hook/4";

		cr_assert_eq(count(&http, prefix), 2, "%s", prefix);
		for (size_t i = 0; i < 2; i++) {
			struct message m = nth(&http, prefix, i);
			json_t *h = json_loads(m.body, 0, NULL), *a;

			cr_assert_not_null(h, "%s", m.body);
			cr_expect_str_eq(m.ctype, "application/json");
			cr_expect_str_eq(json_string_value(json_object_get(h, "user")), w == 0 ? "default" : user2);
			cr_expect_eq(json_integer_value(json_object_get(h, "suppressed")), 0);
			cr_assert_eq(json_array_size(json_object_get(h, "alerts")), 1, "%s", m.body);
			a = json_array_get(json_object_get(h, "alerts"), 0);
			cr_expect_str_eq(json_string_value(json_object_get(a, "state")), i == 0 ? "firing" : "resolved");
			cr_expect_str_eq(json_string_value(json_object_get(a, "notice")), i == 0 ? "firing" : "resolved");
			cr_expect_str_eq(json_string_value(json_object_get(json_object_get(a, "rule"), "id")),
					 w == 0 ? id1 : id4);
			cr_expect_gt(json_integer_value(json_object_get(a, "ts_ms")), 0);
			cr_expect_gt(json_integer_value(json_object_get(a, "fired_ms")), 0);
			if (w == 0)
				cr_expect_float_eq(json_number_value(json_object_get(a, "value")), i == 0 ? 150 : 50, 1e-9);
			else
				cr_expect_geq(json_number_value(json_object_get(a, "value")), i == 0 ? 8 : 0);
			json_decref(h);
		}
	}

	/* History of the above rule, newest first; and the metrics. */
	snprintf(path, sizeof(path), "/api/v1/alerts/%s/history", id1);
	j = call("GET", path, key, NULL, 200);
	{
		const char *want[][2] = { { "firing", "resolved" }, { "pending", "firing" }, { "ok", "pending" } };
		json_t *h = json_object_get(j, "history");

		cr_assert_eq(json_array_size(h), 3, "%s", json_dumps(j, 0));
		for (size_t i = 0; i < 3; i++) {
			cr_expect_str_eq(json_string_value(json_object_get(json_array_get(h, i), "from")), want[i][0]);
			cr_expect_str_eq(json_string_value(json_object_get(json_array_get(h, i), "to")), want[i][1]);
		}
	}
	json_decref(j);
	json_decref(call("GET", path, key2, NULL, 404)); /* another user's rule */
	{
		const char *email[] = { "channel=\"email\"", NULL }, *sms[] = { "channel=\"sms\"", NULL },
			   *voice[] = { "channel=\"call\"", NULL }, *hook[] = { "channel=\"webhook\"", NULL };

		cr_expect_eq(dh_metric(&dmn, "dattss_alert_notifications_sent_total", email, NULL), 2);
		cr_expect_eq(dh_metric(&dmn, "dattss_alert_notifications_sent_total", sms, NULL), 2);
		cr_expect_eq(dh_metric(&dmn, "dattss_alert_notifications_sent_total", voice, NULL), 2);
		cr_expect_eq(dh_metric(&dmn, "dattss_alert_notifications_sent_total", hook, NULL), 4);
		cr_expect_eq(dh_metric(&dmn, "dattss_alert_rules", NULL, NULL), 4);
		cr_expect_eq(dh_metric(&dmn, "dattss_alert_notify_errors_total", NULL, NULL), 0);
	}

	/* Removal through the API. */
	snprintf(path, sizeof(path), "/api/v1/alerts/%s", id2);
	json_decref(call("DELETE", path, key2, NULL, 404));
	json_decref(call("DELETE", path, key, NULL, 204));
	cr_expect_str_eq(state_of(key, id2), "");
	test_passed = true;
}

/* ---- a flapping rule under a tight rate limit, and a failed delivery retried ---------------------------------- */

Test(alerts, flapping_rule_is_rate_limited_and_failures_retried)
{
	/*
	 * One message per 30 s per user, no burst beyond it: slower than the rule flaps, whatever the phase of the
	 * publications, so the held notices of several transitions go out as one message. (With one per 10 s, a run
	 * that saw a transition only every 7-10 s could deliver each one on its own, held or not.)
	 */
	const char *extra[] = { "--alert-rate-burst", "1", "--alert-rate-per-hour", "120", NULL };
	char id[16], rule[512];
	const char *key;
	size_t requests, delivered = 0, with_suppressed = 0;
	double transitions, suppressed, elapsed_s;
	int64_t t0;
	int fd;

	start(extra);
	http.fail_first = 1;
	key = dh_api_key(&dmn);
	snprintf(rule, sizeof(rule),
		 "{\"kind\":\"above\",\"name\":\"flappy\",\"process\":\"app\",\"counter\":\"flap\",\"type\":\"g\","
		 "\"stat\":\"lst\",\"limit\":100,\"channels\":[{\"type\":\"webhook\",\"url\":\"http://127.0.0.1:%u/flap\"}]}",
		 http.port);
	add_rule(key, rule, id);
	fd = dh_udp_socket(&dmn);
	cr_assert_geq(fd, 0);

	/*
	 * The gauge crosses the limit at every 5-second publication for 30 s: one value per slot, sent 1.5 s into it,
	 * so the workers' next tick (1 s) and the fold have 3.5 s to bring it in before the slot's end publishes it.
	 * (Values sent at a fixed period from an arbitrary start could land just before a slot's end and be folded
	 * before or after its publication, depending on the tick's phase: CI's ASan tier saw only 2 changes in 30 s.)
	 */
	t0 = dh_now_ms();
	for (int i = 0; i < 6; i++) {
		int64_t now = dh_now_ms(), at = now / 5000 * 5000 + 1500;

		dh_sleep_ms(at > now ? at - now : at + 5000 - now);
		statsd(fd, i % 2 ? "app.flap:50|g" : "app.flap:150|g");
	}
	dh_sleep_ms(5000); /* the last slot's publication */
	close(fd);
	dh_sleep_ms(15000); /* the next token (30 s after the first message), and the retry */
	elapsed_s = (double)(dh_now_ms() - t0) / 1000;

	transitions = dh_metric(&dmn, "dattss_alert_transitions_total", (const char *[]){ "to=\"firing\"", NULL }, NULL) +
		      dh_metric(&dmn, "dattss_alert_transitions_total", (const char *[]){ "to=\"resolved\"", NULL }, NULL);
	suppressed = dh_metric(&dmn, "dattss_alert_suppressed_total", NULL, NULL);
	requests = count(&http, "/flap");
	for (size_t i = 0; i < requests; i++) {
		struct message m = nth(&http, "/flap", i);
		json_t *h = json_loads(m.body, 0, NULL);

		cr_assert_not_null(h, "%s", m.body);
		if (m.status == 200) {
			delivered++;
			with_suppressed += json_integer_value(json_object_get(h, "suppressed")) > 0;
		}
		json_decref(h);
	}
	cr_expect_geq(transitions, 4, "the rule flapped: %g changes", transitions);
	cr_expect_gt(suppressed, 0, "some notifications were held back");
	cr_expect_lt(delivered, transitions, "fewer messages (%zu) than notices (%g)", delivered, transitions);
	cr_expect_leq(delivered, 1 + (size_t)(elapsed_s / 30) + 1, "at most the burst plus one per 30 s: %zu in %.1f s",
		      delivered, elapsed_s);
	cr_expect_geq(with_suppressed, 1, "a message said how many were held back");
	cr_expect_eq(requests, delivered + 1, "exactly one failed attempt, retried");
	if (requests >= 2) {
		struct message a = nth(&http, "/flap", 0), b = nth(&http, "/flap", 1);

		cr_expect_eq(a.status, 500);
		cr_expect_str_eq(a.body, b.body, "the retry sends the same message");
	}
	cr_expect_eq(dh_metric(&dmn, "dattss_alert_notify_errors_total", (const char *[]){ "channel=\"webhook\"", NULL },
			       NULL), 1);
	cr_expect_eq(dh_metric(&dmn, "dattss_alert_notify_retries_total", (const char *[]){ "channel=\"webhook\"", NULL },
			       NULL), 1);
	test_passed = true;
}
