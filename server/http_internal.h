/*
 * http_internal.h - what the HTTP modules of dattssd share: the request, replies, authentication and the route tables.
 *
 * http.c owns libmicrohttpd and dispatches each request to the first route that matches; the endpoints live in one
 * file per area, each exporting a route table that http.c lists:
 *   http.c          /healthz, /metrics                        (self)
 *   http_api.c      /api/v1/... query API, SSE, PUT /agg       (issue 6, issue 5 original HTTP protocol)
 *   http_admin.c    /api/v1/admin/... users and keys           (issue 5)
 *   http_alerts.c   /api/v1/alerts...                          (issue 7)
 *   http_web.c      /, /assets/... the dashboard               (issue 6)
 *
 * Thread context: handlers run on libmicrohttpd's pool threads, already registered with RCU. They may block briefly
 * (a RocksDB read) but never on the engine: engine reads go through the RCU read side.
 */
#ifndef DTS_HTTP_INTERNAL_H
#define DTS_HTTP_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "dts/types.h"
#include "http.h"

/* Nice value of the request threads (and of http_api.c's stream thread): under CPU saturation the receive workers and
 * the merger win over serving, so readers cannot slow ingestion (bench/bench_api.c: 50 clients pulling a 10,000-series
 * state back to back cost unpaced ingestion 54% of its rate at nice 0, 12% at 10 on 2 cores). */
#define DTS_HTTP_NICE 10

/* Largest request body accepted (PUT /agg of the original drivers, admin and alert JSON): 1 MiB. */
#define DTS_HTTP_MAX_BODY (1u << 20)

struct dts_http_api; /* http_api.c's state: the Server-Sent Events hub, the daily view's cache */

struct dts_http {
	struct MHD_Daemon *d;
	struct dts_http_ctx ctx;
	struct dts_http_api *api; /* NULL until dts__http_api_start */
};

/* One request as handlers see it. The body is NUL-terminated (body[body_len] == 0); empty when none was sent. */
struct dts_http_req {
	struct dts_http *h;
	const struct dts_http_ctx *ctx; /* &h->ctx */
	struct MHD_Connection *conn;
	const char *method; /* "GET", "HEAD", "PUT", "POST", "DELETE" */
	const char *url; /* path without the query string */
	const char *body;
	size_t body_len;
	char user[DTS_MAX_USER + 1]; /* set by dts_http_auth */
};

/* A route: method ("GET" also matches HEAD; NULL matches any) and path. A path ending in '*' matches any path with
 * that prefix (the handler reads the rest from req->url). */
struct dts_http_route {
	const char *method;
	const char *path;
	enum MHD_Result (*fn)(struct dts_http_req *req);
};

/* Route tables, each ended by an entry with path NULL. */
extern const struct dts_http_route dts_http_routes_self[];
extern const struct dts_http_route dts_http_routes_api[];
extern const struct dts_http_route dts_http_routes_admin[];
extern const struct dts_http_route dts_http_routes_alerts[];
extern const struct dts_http_route dts_http_routes_web[];

/* ---- replies (each queues the response and returns what the handler must return) ---- */

/* body is malloc'd and freed by the reply. */
enum MHD_Result dts_http_reply(struct dts_http_req *req, unsigned status, const char *type, char *body, size_t len);
/* Steals the reference to j. */
enum MHD_Result dts_http_reply_json(struct dts_http_req *req, unsigned status, json_t *j);
/* {"error": message} */
enum MHD_Result dts_http_reply_error(struct dts_http_req *req, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A JSON number, or null for NaN/inf (JSON has neither). */
json_t *dts_http_num(double v);

/* Query argument, or NULL when absent. */
const char *dts_http_arg(struct dts_http_req *req, const char *name);

/*
 * Authenticate the request: an API key as "Authorization: Bearer KEY" (or, for EventSource which cannot set headers,
 * the query argument access_token=KEY). On success fills req->user and returns true. On failure queues a 401 reply,
 * stores its result in *ret, and returns false: the handler returns *ret.
 */
bool dts_http_auth(struct dts_http_req *req, enum MHD_Result *ret);

/*
 * Authenticate an operator request for /api/v1/admin: "Authorization: Bearer ADMIN_TOKEN" where ADMIN_TOKEN is the
 * content of DATA_DIR/admin.token (written by dattssd at start, mode 0600). Same convention as dts_http_auth.
 */
bool dts_http_auth_admin(struct dts_http_req *req, enum MHD_Result *ret);

/*
 * http_api.c's life cycle, called by dts_http_start/stop (main thread): start its stream hub before the daemon
 * serves (0 or -errno); stop it before MHD_stop_daemon (ends every stream and resumes the suspended ones, which
 * libmicrohttpd requires); free it after MHD_stop_daemon. The daemon must run with MHD_ALLOW_SUSPEND_RESUME.
 */
int dts__http_api_start(struct dts_http *h);
void dts__http_api_stop(struct dts_http *h);
void dts__http_api_free(struct dts_http *h);

/* The users' current values for GET /metrics (users who opted in): exposition text, malloc'd, or NULL when there is
 * none or memory ran out; *len its length. A request thread (registered RCU thread). */
char *dts__http_api_prometheus(struct dts_http *h, size_t *len);

#endif /* DTS_HTTP_INTERNAL_H */
