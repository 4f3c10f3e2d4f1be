/*
 * daemon_harness.c - the real dattssd as a child process on loopback (contract in daemon_harness.h).
 *
 * Why ports are picked by binding port 0 and then released: dattssd takes ports on its command line, not a listening
 * socket, so there is a window between our close() and its bind(). Another process may take the port in that window;
 * the daemon then exits at startup ("address in use") and dh_start tries again with fresh ports. The kernel never
 * hands out a port that is bound, so while one harness daemon runs, another test cannot be given its ports.
 */
#define _GNU_SOURCE
#include "daemon_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef DATTSSD_PATH
#error "DATTSSD_PATH (the built dattssd) must be defined by the build (tests/CMakeLists.txt)"
#endif

#define LOOPBACK "127.0.0.1"

int64_t dh_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dh_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void set_timeouts(int fd)
{
	struct timeval tv = { DH_IO_TIMEOUT_MS / 1000, (DH_IO_TIMEOUT_MS % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static struct sockaddr_in loopback(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	inet_pton(AF_INET, LOOPBACK, &a.sin_addr);
	return a;
}

/* ---- files ---------------------------------------------------------------------------------------------------- */

/* Read a whole file into a NUL-terminated buffer. NULL on error. */
static char *slurp(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, cap = 4096;
	char *buf;

	if (fd < 0)
		return NULL;
	buf = malloc(cap);
	while (buf) {
		ssize_t n;

		if (len + 1 == cap) {
			char *nb = realloc(buf, cap * 2);

			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (buf)
		buf[len] = '\0';
	close(fd);
	return buf;
}

char *dh_read_log(const struct dh_daemon *d)
{
	return d->log_path[0] ? slurp(d->log_path) : NULL;
}

void dh_dump_log(const struct dh_daemon *d, FILE *out)
{
	char *log = dh_read_log(d);

	fprintf(out, "---- dattssd log %s ----\n%s%s---- end of dattssd log ----\n", d->log_path,
		log ? log : "(unreadable)\n", log && *log && log[strlen(log) - 1] != '\n' ? "\n" : "");
	fflush(out);
	free(log);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0; /* keep going: remove what can be removed */
}

static void rm_tree(const char *dir)
{
	if (dir[0])
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- ports ---------------------------------------------------------------------------------------------------- */

/* Bind type on 127.0.0.1:port (0 = any). Returns fd or -errno; *bound gets the port. */
static int bind_port(int type, uint16_t port, uint16_t *bound)
{
	struct sockaddr_in a = loopback(port);
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0), e;

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		e = errno;
		close(fd);
		return -e;
	}
	*bound = ntohs(a.sin_port);
	return fd;
}

/* A statsd port free for both UDP and TCP, and a different free TCP port for HTTP. Returns 0 or -errno. */
static int pick_ports(uint16_t *statsd, uint16_t *http)
{
	for (int tries = 0; tries < 50; tries++) {
		uint16_t p, h, u;
		int tfd = bind_port(SOCK_STREAM, 0, &p), ufd, hfd;

		if (tfd < 0)
			return tfd;
		ufd = bind_port(SOCK_DGRAM, p, &u);
		if (ufd < 0) {
			close(tfd);
			continue; /* that number is taken for UDP: another one */
		}
		hfd = bind_port(SOCK_STREAM, 0, &h); /* p is still bound, so h != p */
		close(tfd);
		close(ufd);
		if (hfd < 0)
			return hfd;
		close(hfd);
		*statsd = p;
		*http = h;
		return 0;
	}
	return -EADDRINUSE;
}

/* ---- child process -------------------------------------------------------------------------------------------- */

/* Reap the child if it exited. Returns true when it is gone. */
static bool reap(struct dh_daemon *d, bool block)
{
	int st;
	pid_t r;

	if (d->pid <= 0)
		return true;
	do
		r = waitpid(d->pid, &st, block ? 0 : WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == d->pid || (r < 0 && errno == ECHILD)) {
		d->status = r == d->pid ? st : 0;
		d->exited = true;
		d->pid = 0;
		return true;
	}
	return false;
}

/* fork + exec argv with stdin from /dev/null and stdout/stderr into out_fd/err_fd. Returns the pid or -errno. */
static pid_t spawn(const char *const *argv, int out_fd, int err_fd, bool die_with_parent)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		if (die_with_parent) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(127); /* the parent died before prctl took effect */
		}
		/* Whatever the test runner set, the daemon starts with an empty mask and default dispositions (ignored
		 * signals survive exec). */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
			_exit(127);
		execv(argv[0], (char *const *)argv);
		dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/* GET /healthz answers 200 with "ok": true. */
static bool healthy(const struct dh_daemon *d)
{
	int status = 0;
	json_t *j = dh_get_json(d, "/healthz", &status);
	bool ok = j && status == 200 && json_is_true(json_object_get(j, "ok"));

	json_decref(j);
	return ok;
}

/* One start attempt, on fresh ports or on d's current ones. Returns 0, -EADDRINUSE (a port was taken: try again) or
 * another -errno. */
static int start_once(struct dh_daemon *d, const char *const *extra, bool fresh_ports, char *err, size_t errlen)
{
	char statsd[8], http[8];
	const char *argv[64];
	size_t n = 0;
	int log_fd, rc;
	pid_t pid;

	rc = fresh_ports ? pick_ports(&d->statsd_port, &d->http_port) : 0;
	if (rc < 0) {
		errf(err, errlen, "no free loopback ports: %s", strerror(-rc));
		return rc;
	}
	snprintf(statsd, sizeof(statsd), "%u", d->statsd_port);
	snprintf(http, sizeof(http), "%u", d->http_port);
	const char *base[] = { DATTSSD_PATH, "--data-dir", d->data_dir, "--bind", LOOPBACK, "--statsd-port", statsd,
			       "--http-port", http, "--unix-socket", d->unix_path, "--tick-ms", "100", "--grace-s", "1",
			       "--workers", "2", "--secret", DH_SECRET, "--log-level", "debug" };
	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
		argv[n++] = base[i];
	for (size_t i = 0; extra && extra[i] && n < sizeof(argv) / sizeof(argv[0]) - 1; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	log_fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (log_fd < 0) {
		rc = -errno;
		errf(err, errlen, "cannot open %s: %s", d->log_path, strerror(-rc));
		return rc;
	}
	dprintf(log_fd, "harness: starting dattssd statsd_port=%s http_port=%s\n", statsd, http);
	pid = spawn(argv, log_fd, log_fd, true);
	close(log_fd);
	if (pid < 0) {
		errf(err, errlen, "fork: %s", strerror((int)-pid));
		return (int)pid;
	}
	d->pid = pid;
	d->exited = false;

	for (int64_t deadline = mono_ms() + DH_START_TIMEOUT_MS; mono_ms() < deadline; dh_sleep_ms(25)) {
		if (reap(d, false)) {
			char *log = dh_read_log(d);
			bool in_use = log && (strstr(log, "in use") || strstr(log, "cannot listen"));

			free(log);
			errf(err, errlen, "dattssd exited during startup (%s %d)%s",
			     WIFEXITED(d->status) ? "status" : "signal",
			     WIFEXITED(d->status) ? WEXITSTATUS(d->status) : WTERMSIG(d->status),
			     in_use ? ": port taken, retrying" : "");
			return in_use ? -EADDRINUSE : -ECHILD;
		}
		if (healthy(d))
			return 0;
	}
	errf(err, errlen, "GET /healthz did not answer within %d ms", DH_START_TIMEOUT_MS);
	dh_stop(d, 1000);
	return -ETIMEDOUT;
}

int dh_start(struct dh_daemon *d, const char *const *extra, char *err, size_t errlen)
{
	int rc = -EADDRINUSE;

	memset(d, 0, sizeof(*d));
	strcpy(d->dir, "/tmp/dattss-it-XXXXXX");
	if (!mkdtemp(d->dir)) {
		rc = -errno;
		errf(err, errlen, "mkdtemp: %s", strerror(-rc));
		d->dir[0] = '\0';
		return rc;
	}
	snprintf(d->data_dir, sizeof(d->data_dir), "%s/data", d->dir);
	snprintf(d->unix_path, sizeof(d->unix_path), "%s/statsd.sock", d->dir);
	snprintf(d->log_path, sizeof(d->log_path), "%s/dattssd.log", d->dir);
	if (mkdir(d->data_dir, 0700) != 0) {
		rc = -errno;
		errf(err, errlen, "mkdir %s: %s", d->data_dir, strerror(-rc));
		goto out_fail;
	}
	for (int attempt = 0; attempt < DH_START_ATTEMPTS && rc == -EADDRINUSE; attempt++)
		rc = start_once(d, extra, true, err, errlen);
	if (rc == 0)
		return 0;
out_fail:
	dh_dump_log(d, stderr);
	dh_destroy(d);
	return rc;
}

int dh_restart(struct dh_daemon *d, const char *const *extra, char *err, size_t errlen)
{
	int rc = -EADDRINUSE;

	if (!d->dir[0] || !d->statsd_port) {
		errf(err, errlen, "dh_restart: no daemon was started with dh_start");
		return -EINVAL;
	}
	if (dh_alive(d)) {
		errf(err, errlen, "dh_restart: dattssd (pid %d) is still running", (int)d->pid);
		return -EBUSY;
	}
	/* The ports were ours a moment ago; if something holds one now it is usually a socket of the old process that
	 * the kernel has not released yet, so wait and try the same numbers again rather than moving. */
	for (int attempt = 0; attempt < DH_RESTART_ATTEMPTS && rc == -EADDRINUSE; attempt++) {
		if (attempt)
			dh_sleep_ms(DH_RESTART_RETRY_MS);
		rc = start_once(d, extra, false, err, errlen);
	}
	if (rc != 0)
		dh_dump_log(d, stderr);
	return rc;
}

int dh_kill(struct dh_daemon *d, int sig)
{
	if (d->pid <= 0)
		return -ESRCH;
	if (kill(d->pid, sig) != 0)
		return -errno;
	if (sig == SIGKILL)
		reap(d, true); /* cannot be caught: it is gone once reaped */
	return 0;
}

bool dh_alive(struct dh_daemon *d)
{
	return !reap(d, false);
}

const char *dh_state_text(const struct dh_daemon *d, char *buf, size_t len)
{
	if (d->pid > 0)
		snprintf(buf, len, "running");
	else if (!d->exited)
		snprintf(buf, len, "not started");
	else if (WIFEXITED(d->status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(d->status));
	else if (WIFSIGNALED(d->status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(d->status), strsignal(WTERMSIG(d->status)));
	else
		snprintf(buf, len, "wait status 0x%x", (unsigned)d->status);
	return buf;
}

int dh_stop(struct dh_daemon *d, int timeout_ms)
{
	if (d->pid <= 0)
		return 0;
	kill(d->pid, SIGTERM);
	for (int64_t deadline = mono_ms() + timeout_ms; mono_ms() < deadline; dh_sleep_ms(10))
		if (reap(d, false))
			return 0;
	kill(d->pid, SIGKILL);
	reap(d, true);
	return -ETIMEDOUT;
}

void dh_destroy(struct dh_daemon *d)
{
	dh_stop(d, 5000);
	rm_tree(d->dir);
	d->dir[0] = '\0';
}

/* ---- sending -------------------------------------------------------------------------------------------------- */

int dh_udp_socket(const struct dh_daemon *d)
{
	struct sockaddr_in a = loopback(d->statsd_port);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), e;

	if (fd < 0)
		return -errno;
	set_timeouts(fd);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int dh_udp_send(int fd, const char *buf, size_t len)
{
	ssize_t n = send(fd, buf, len, 0);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

int dh_tcp_connect(const struct dh_daemon *d)
{
	struct sockaddr_in a = loopback(d->statsd_port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), e;

	if (fd < 0)
		return -errno;
	set_timeouts(fd);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int dh_write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int dh_unix_send(const struct dh_daemon *d, const char *buf, size_t len)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	set_timeouts(fd);
	strcpy(a.sun_path, d->unix_path); /* sizes match: both are sun_path */
	n = sendto(fd, buf, len, 0, (struct sockaddr *)&a, sizeof(a));
	if (n < 0)
		rc = -errno;
	else if ((size_t)n != len)
		rc = -EMSGSIZE;
	close(fd);
	return rc;
}

/* ---- HTTP ----------------------------------------------------------------------------------------------------- */

/* The default user's API key from DATA_DIR/api.key (written by dattssd), or "" when there is none yet. */
const char *dh_api_key(const struct dh_daemon *d)
{
	static char key[256];
	char path[192];
	FILE *f;

	key[0] = '\0';
	snprintf(path, sizeof(path), "%s/api.key", d->data_dir);
	f = fopen(path, "r");
	if (!f)
		return key;
	if (!fgets(key, sizeof(key), f))
		key[0] = '\0';
	fclose(f);
	key[strcspn(key, "\r\n")] = '\0';
	return key;
}

int dh_http(const struct dh_daemon *d, const char *method, const char *path, struct dh_reply *out)
{
	return dh_request(d, method, path, dh_api_key(d), NULL, 0, out);
}

int dh_request(const struct dh_daemon *d, const char *method, const char *path, const char *bearer, const char *body,
	       size_t body_len, struct dh_reply *out)
{
	struct sockaddr_in a = loopback(d->http_port);
	char req[2048], auth[320] = "";
	size_t len = 0, cap = 8192;
	char *buf = NULL, *hdr_end;
	int fd, rc = 0, n;

	memset(out, 0, sizeof(*out));
	if (bearer && *bearer)
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", bearer);
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: " LOOPBACK ":%u\r\n%sContent-Length: %zu\r\n\r\n",
		     method, path, d->http_port, auth, body ? body_len : 0);
	if (n < 0 || (size_t)n >= sizeof(req))
		return -ENAMETOOLONG;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	set_timeouts(fd);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		rc = -errno;
		goto out_close;
	}
	rc = dh_write_all(fd, req, (size_t)n);
	if (!rc && body && body_len)
		rc = dh_write_all(fd, body, body_len);
	if (rc)
		goto out_close;
	buf = malloc(cap);
	for (;;) {
		ssize_t r;

		if (!buf) {
			rc = -ENOMEM;
			goto out_close;
		}
		if (len + 1 == cap) {
			char *nb = realloc(buf, cap * 2);

			if (!nb) {
				rc = -ENOMEM;
				goto out_close;
			}
			buf = nb;
			cap *= 2;
		}
		r = recv(fd, buf + len, cap - 1 - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno; /* EAGAIN: the timeout */
			goto out_close;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	hdr_end = strstr(buf, "\r\n\r\n");
	if (!hdr_end) {
		rc = -EPROTO;
		goto out_close;
	}
	*hdr_end = '\0';
	if (sscanf(buf, "HTTP/%*d.%*d %d", &out->status) != 1)
		out->status = 0;
	out->body_len = len - (size_t)(hdr_end + 4 - buf);
	out->headers = strdup(buf);
	out->body = malloc(out->body_len + 1);
	if (!out->headers || !out->body) {
		dh_reply_free(out);
		rc = -ENOMEM;
		goto out_close;
	}
	memcpy(out->body, hdr_end + 4, out->body_len);
	out->body[out->body_len] = '\0';
out_close:
	free(buf);
	close(fd);
	return rc;
}

void dh_reply_free(struct dh_reply *r)
{
	free(r->headers);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

json_t *dh_get_json(const struct dh_daemon *d, const char *path, int *status)
{
	struct dh_reply r;
	json_t *j;

	*status = 0;
	if (dh_http(d, "GET", path, &r) != 0)
		return NULL;
	*status = r.status;
	j = json_loadb(r.body, r.body_len, 0, NULL);
	dh_reply_free(&r);
	return j;
}

json_t *dh_find_series(json_t *root, const char *process, const char *counter, const char *type, const char *tags)
{
	json_t *procs = json_object_get(root, "processes"), *p, *c;
	size_t i, k;

	json_array_foreach(procs, i, p) {
		const char *pn = json_string_value(json_object_get(p, "process"));

		if (!pn || strcmp(pn, process) != 0)
			continue;
		json_array_foreach(json_object_get(p, "counters"), k, c) {
			const json_t *t = json_object_get(c, "tags");
			const char *cn = json_string_value(json_object_get(c, "counter"));
			const char *ty = json_string_value(json_object_get(c, "type"));

			if (!cn || !ty || strcmp(cn, counter) != 0 || strcmp(ty, type) != 0)
				continue;
			if (tags ? json_is_string(t) && strcmp(json_string_value(t), tags) == 0 : t == NULL)
				return c;
		}
	}
	return NULL;
}

double dh_num(const json_t *obj, const char *field)
{
	const json_t *v = json_object_get(obj, field);

	return json_is_number(v) ? json_number_value(v) : NAN;
}

json_t *dh_wait_series(struct dh_daemon *d, const char *path, const char *process, const char *counter,
		       const char *type, const char *tags, const char *field, double want, int timeout_ms)
{
	json_t *last = NULL;

	for (int64_t deadline = mono_ms() + timeout_ms;; dh_sleep_ms(100)) {
		int status;
		json_t *root = dh_get_json(d, path, &status);
		json_t *s = root && status == 200 ? dh_find_series(root, process, counter, type, tags) : NULL;

		if (s && !json_is_true(json_object_get(s, "pending"))) {
			json_decref(last);
			last = json_incref(s);
		}
		json_decref(root);
		if ((last && dh_num(last, field) == want) || mono_ms() >= deadline || !dh_alive(d))
			return last;
	}
}

/* ---- /metrics ------------------------------------------------------------------------------------------------- */

double dh_metric_sum(const char *text, const char *name, const char *const *labels, unsigned *matched)
{
	size_t nl = strlen(name);
	double sum = 0;
	unsigned n = 0;

	for (const char *line = text; line && *line;) {
		const char *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);

		if (len > nl && strncmp(line, name, nl) == 0 && (line[nl] == '{' || line[nl] == ' ')) {
			const char *val = line + nl;
			bool ok = true;

			if (*val == '{') {
				const char *close = memchr(val, '}', len - nl);

				if (!close)
					ok = false;
				for (size_t i = 0; ok && labels && labels[i]; i++)
					ok = memmem(val, (size_t)(close - val), labels[i], strlen(labels[i])) != NULL;
				val = close ? close + 1 : val;
			} else if (labels && labels[0]) {
				ok = false; /* no labels at all cannot match a label filter */
			}
			if (ok) {
				sum += strtod(val, NULL);
				n++;
			}
		}
		line = eol ? eol + 1 : NULL;
	}
	if (matched)
		*matched = n;
	return sum;
}

double dh_metric(const struct dh_daemon *d, const char *name, const char *const *labels, unsigned *matched)
{
	struct dh_reply r;
	double v;

	if (matched)
		*matched = 0;
	if (dh_http(d, "GET", "/metrics", &r) != 0)
		return NAN;
	v = r.status == 200 ? dh_metric_sum(r.body, name, labels, matched) : NAN;
	dh_reply_free(&r);
	return v;
}

/* ---- other commands ------------------------------------------------------------------------------------------- */

int dh_run(const char *const *argv, int timeout_ms, int *status, char **out, char **errout)
{
	char dir[] = "/tmp/dattss-run-XXXXXX", opath[64], epath[64];
	int ofd, efd, rc = 0;
	struct dh_daemon child = { 0 }; /* reused for its reap/stop helpers */

	if (!mkdtemp(dir))
		return -errno;
	snprintf(opath, sizeof(opath), "%s/stdout", dir);
	snprintf(epath, sizeof(epath), "%s/stderr", dir);
	ofd = open(opath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	efd = open(epath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (ofd < 0 || efd < 0) {
		rc = -errno;
		goto out;
	}
	child.pid = spawn(argv, ofd, efd, true);
	if (child.pid < 0) {
		rc = (int)child.pid;
		child.pid = 0;
		goto out;
	}
	for (int64_t deadline = mono_ms() + timeout_ms; !reap(&child, false); dh_sleep_ms(10)) {
		if (mono_ms() >= deadline) {
			kill(child.pid, SIGKILL);
			reap(&child, true);
			rc = -ETIMEDOUT;
			break;
		}
	}
	*status = child.status;
	if (out)
		*out = slurp(opath);
	if (errout)
		*errout = slurp(epath);
out:
	if (ofd >= 0)
		close(ofd);
	if (efd >= 0)
		close(efd);
	rm_tree(dir);
	return rc;
}
