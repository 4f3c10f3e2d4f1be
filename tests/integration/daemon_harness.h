/*
 * daemon_harness.h - start the real dattssd on loopback for integration tests, talk to it, tear it down.
 *
 * One struct dh_daemon is one dattssd child process with its own temporary directory (mkdtemp under /tmp):
 *     DIR/dattssd.log      the daemon's stdout and stderr
 *     DIR/data/            --data-dir
 *     DIR/statsd.sock      --unix-socket
 * and free loopback ports for statsd (UDP and TCP share the number) and HTTP, picked by binding port 0 and retried
 * when the daemon loses the race for them. The child gets PR_SET_PDEATHSIG(SIGKILL), so a test process that crashes
 * or is killed by Criterion's timeout does not leave a daemon behind.
 *
 * Prefix: dh_ ("daemon harness"); test code only, never linked into the product.
 *
 * Threads: none. Every function is for the test process's main thread. Error convention as in the project: actions
 * return 0 or -errno; functions returning a pointer return NULL on failure; JSON values are jansson references the
 * caller owns (json_decref) unless a comment says "borrowed".
 *
 * Nothing here asserts: the test decides what a failure means and calls dh_dump_log() to show the daemon's side.
 */
#ifndef DTS_TESTS_DAEMON_HARNESS_H
#define DTS_TESTS_DAEMON_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* The secret every harness daemon is started with (--secret), for DaTtSs AUTH tokens. */
#define DH_SECRET "s3cret"

/* How long dh_start waits for GET /healthz to answer before giving up on one attempt. Startup takes ~50-300 ms; on
 * the shared 2-vCPU machine both daemons of test_durability once missed a 5 s limit while other builds saturated it. */
#define DH_START_TIMEOUT_MS 15000
/* Attempts with fresh ports when the daemon exits because a port was taken in the meantime. */
#define DH_START_ATTEMPTS 5
/* dh_restart: attempts on the same ports, and the pause between them, when a port is still held (~2 s in all). */
#define DH_RESTART_ATTEMPTS 20
#define DH_RESTART_RETRY_MS 100
/* Send/receive timeout of every harness socket: a wedged daemon fails a test instead of hanging it. */
#define DH_IO_TIMEOUT_MS 3000

struct dh_daemon {
	pid_t pid; /* 0 when not running */
	bool exited; /* the child was reaped; status below is valid */
	int status; /* waitpid() status of the child */
	uint16_t statsd_port; /* UDP and TCP */
	uint16_t http_port;
	char dir[64]; /* mkdtemp directory, "" when none */
	char data_dir[128];
	char unix_path[108]; /* sun_path size */
	char log_path[128];
};

/* An HTTP reply. Free with dh_reply_free(). */
struct dh_reply {
	int status; /* HTTP status code, 0 when there was no valid status line */
	char *headers; /* status line and headers, NUL-terminated */
	char *body; /* NUL-terminated (a body with NUL bytes is cut there) */
	size_t body_len; /* bytes received after the header block */
};

/* ---- lifecycle ---------------------------------------------------------------------------------------------- */

/*
 * Start dattssd (path from the DATTSSD_PATH macro of the test build) with the harness flags
 *     --data-dir DIR/data --bind 127.0.0.1 --statsd-port P --http-port H --unix-socket DIR/statsd.sock
 *     --tick-ms 100 --grace-s 1 --workers 2 --secret s3cret --log-level debug
 * followed by extra (a NULL-terminated argv fragment, may be NULL), and wait until GET /healthz answers
 * {"ok":true}. Returns 0, or -errno with err holding one line of explanation; on failure the log has been printed to
 * stderr and nothing is left behind (no child, no directory), so a test fixture's init may simply assert.
 */
int dh_start(struct dh_daemon *d, const char *const *extra, char *err, size_t errlen);

/*
 * Send SIGTERM and wait up to timeout_ms for the child to exit; SIGKILL it (and reap it) after that.
 * Returns 0 when it exited by itself (d->status holds its status), -ETIMEDOUT when it had to be killed, 0 at once
 * when it is not running. Keeps the directory (and so the log) for inspection.
 */
int dh_stop(struct dh_daemon *d, int timeout_ms);

/*
 * Start dattssd again after it stopped (dh_stop, dh_kill or a crash), in the same directory: the same data dir, log
 * (appended to), Unix socket path and loopback ports, so a client keeps sending where it did. extra as for dh_start
 * (pass the same flags again: nothing is remembered). Waits for /healthz like dh_start. Returns 0, -EINVAL (never
 * started), -EBUSY (still running) or -errno with err set; on failure the log has been printed and the directory is
 * kept (dh_destroy removes it).
 */
int dh_restart(struct dh_daemon *d, const char *const *extra, char *err, size_t errlen);

/*
 * Send sig to the daemon. For SIGKILL also reap it (it is gone when this returns: d->status says "killed by signal
 * 9"); other signals return at once (dh_stop waits for SIGTERM). Returns 0, -ESRCH (not running) or -errno.
 */
int dh_kill(struct dh_daemon *d, int sig);

/* True while the child runs; reaps it (filling d->status) once it has exited, whoever stopped it. */
bool dh_alive(struct dh_daemon *d);

/* "running", "exited with status N" or "killed by signal N (name)" into buf; returns buf. */
const char *dh_state_text(const struct dh_daemon *d, char *buf, size_t len);

/* dh_stop(d, 5000) if still running, then remove the directory tree. Idempotent; safe on a zeroed struct. */
void dh_destroy(struct dh_daemon *d);

/* Print the daemon's log to out between two marker lines (for failed tests). */
void dh_dump_log(const struct dh_daemon *d, FILE *out);

/* The whole log as a NUL-terminated string (caller frees), or NULL. */
char *dh_read_log(const struct dh_daemon *d);

/* ---- sending ------------------------------------------------------------------------------------------------ */

/* A UDP socket connected to the statsd port (one socket = one source port = one receive worker).
 * Returns the fd or -errno. */
int dh_udp_socket(const struct dh_daemon *d);
/* Send one datagram on fd. Returns 0 or -errno (a short send is -EMSGSIZE). */
int dh_udp_send(int fd, const char *buf, size_t len);
/* A TCP connection to the statsd port. Returns fd or -errno. */
int dh_tcp_connect(const struct dh_daemon *d);
/* Write all of buf to fd. Returns 0 or -errno. */
int dh_write_all(int fd, const char *buf, size_t len);
/* Send one datagram to the daemon's Unix datagram socket (a fresh unbound socket each time). Returns 0 or -errno. */
int dh_unix_send(const struct dh_daemon *d, const char *buf, size_t len);

/* ---- HTTP and JSON ------------------------------------------------------------------------------------------ */

/*
 * One HTTP/1.0 request to the daemon's HTTP port (the server closes the connection after the reply).
 * Returns 0 with *out filled, or -errno (connect/IO failure or timeout).
 */
int dh_http(const struct dh_daemon *d, const char *method, const char *path, struct dh_reply *out);
/* Any request: bearer token (NULL or "" = no Authorization header) and body (NULL = none). dh_http is this with the
 * default user's key (dh_api_key) and no body. */
int dh_request(const struct dh_daemon *d, const char *method, const char *path, const char *bearer, const char *body,
	       size_t body_len, struct dh_reply *out);
/* The default user's API key as dattssd wrote it to DATA_DIR/api.key, "" when absent (static buffer). */
const char *dh_api_key(const struct dh_daemon *d);
void dh_reply_free(struct dh_reply *r);

/* GET path and parse the body as JSON. Returns the JSON value (caller owns) or NULL; *status gets the HTTP status
 * (0 when the request failed). */
json_t *dh_get_json(const struct dh_daemon *d, const char *path, int *status);

/*
 * In a GET /api/v1/current reply, the counter object of (process, counter, type) whose "tags" equals tags (NULL: the
 * object must have no "tags"). Borrowed reference into root, or NULL.
 */
json_t *dh_find_series(json_t *root, const char *process, const char *counter, const char *type, const char *tags);

/* A number field of a JSON object as double; NAN when missing, null or not a number. */
double dh_num(const json_t *obj, const char *field);

/*
 * Poll GET path (an /api/v1/current URL) every 100 ms until the series' field equals want exactly, timeout_ms
 * passed, or the daemon exited. Returns a new reference to the last version of the series object seen (check the
 * field yourself: at timeout it is the last value, not want), or NULL when the series never appeared with a current
 * state.
 */
json_t *dh_wait_series(struct dh_daemon *d, const char *path, const char *process, const char *counter,
		       const char *type, const char *tags, const char *field, double want, int timeout_ms);

/*
 * Sum the samples of metric name in Prometheus text whose label set contains every "key=\"value\"" string of the
 * NULL-terminated labels list (labels may be NULL: every sample of the metric). *matched (may be NULL) gets how many
 * samples were summed, so that "absent" can be told from "zero".
 */
double dh_metric_sum(const char *text, const char *name, const char *const *labels, unsigned *matched);

/* GET /metrics and return dh_metric_sum over it; NAN when the request failed. */
double dh_metric(const struct dh_daemon *d, const char *name, const char *const *labels, unsigned *matched);

/* ---- running other commands and time ----------------------------------------------------------------------- */

/*
 * Run argv (argv[0] a path) with stdin from /dev/null, stdout and stderr captured, for at most timeout_ms (then
 * SIGKILL). Returns 0 with *status the waitpid status and *out, *errout (each may be NULL) malloc'd NUL-terminated
 * captures, or -errno.
 */
int dh_run(const char *const *argv, int timeout_ms, int *status, char **out, char **errout);

/* Wall-clock milliseconds (CLOCK_REALTIME, the daemon's clock). */
int64_t dh_now_ms(void);
void dh_sleep_ms(int ms);

#endif /* DTS_TESTS_DAEMON_HARNESS_H */
