/*
 * http_alerts.c - /api/v1/alerts: a user's alert rules, their states and history (docs/alerts.md).
 *
 * Every endpoint is scoped to the owner of the API key (dts_http_auth); one user never sees or touches another's
 * rules: a rule id of another user is answered exactly like an unknown id (404).
 *
 *   GET    /api/v1/alerts                  {"rules":[rule + "state","since_ms","value"]}
 *   POST   /api/v1/alerts   body = rule    201 {"rule":{...,"id"}}      400 {"error":"field: message"}
 *   DELETE /api/v1/alerts/{id}             204
 *   GET    /api/v1/alerts/{id}/history     {"history":[{"ts_ms","from","to","value"}]} newest first [?limit=N<=200]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "http_internal.h"

#define PREFIX "/api/v1/alerts/"

static bool alerts_ready(struct dts_http_req *req, enum MHD_Result *ret)
{
	if (!dts_http_auth(req, ret))
		return false;
	if (!req->ctx->alerts) {
		*ret = dts_http_reply_error(req, 503, "alerts: the alert engine is not running");
		return false;
	}
	return true;
}

static enum MHD_Result list_rules(struct dts_http_req *req)
{
	enum MHD_Result ret;
	json_t *j;

	if (!alerts_ready(req, &ret))
		return ret;
	j = dts_alerts_list(req->ctx->alerts, req->user);
	if (!j)
		return dts_http_reply_error(req, 503, "out of memory");
	return dts_http_reply_json(req, 200, j);
}

static enum MHD_Result add_rule(struct dts_http_req *req)
{
	enum MHD_Result ret;
	json_error_t je;
	json_t *in, *out = NULL;
	char err[512];
	int rc;

	if (!alerts_ready(req, &ret))
		return ret;
	if (req->body_len == 0)
		return dts_http_reply_error(req, 400, "body: required: a rule as JSON (docs/alerts.md)");
	in = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
	if (!in)
		return dts_http_reply_error(req, 400, "body: invalid JSON at line %d column %d: %s", je.line, je.column,
					    je.text);
	rc = dts_alerts_add(req->ctx->alerts, req->user, in, &out, err, sizeof(err));
	json_decref(in);
	switch (rc) {
	case 0:
		return dts_http_reply_json(req, 201, json_pack("{s:o}", "rule", out));
	case -EINVAL:
		return dts_http_reply_error(req, 400, "%s", err);
	case -ENOSPC:
		return dts_http_reply_error(req, 400, "%s", err);
	default:
		return dts_http_reply_error(req, 503, "%s", err);
	}
}

/*
 * Split "/api/v1/alerts/{id}[/history]" into id and whether it names the history. Returns false for any other
 * shape (404).
 */
static bool parse_path(const char *url, char *id, bool *history)
{
	const char *p = url + strlen(PREFIX);
	size_t n = strcspn(p, "/");

	if (n != DTS_ALERT_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	memcpy(id, p, n);
	id[n] = '\0';
	if (p[n] == '\0') {
		*history = false;
		return true;
	}
	*history = true;
	return strcmp(p + n, "/history") == 0;
}

static enum MHD_Result remove_rule(struct dts_http_req *req)
{
	char id[DTS_ALERT_ID_LEN + 1], err[512];
	enum MHD_Result ret;
	bool history;
	int rc;

	if (!alerts_ready(req, &ret))
		return ret;
	if (!parse_path(req->url, id, &history))
		return dts_http_reply_error(req, 404, "no such endpoint: %s", req->url);
	if (history)
		return dts_http_reply_error(req, 405, "method DELETE not allowed on %s", req->url);
	rc = dts_alerts_remove(req->ctx->alerts, req->user, id, err, sizeof(err));
	if (rc == -ENOENT)
		return dts_http_reply_error(req, 404, "id: no alert rule %s", id);
	if (rc)
		return dts_http_reply_error(req, 503, "%s", err);
	return dts_http_reply(req, 204, "application/json", NULL, 0);
}

static enum MHD_Result rule_history(struct dts_http_req *req)
{
	char id[DTS_ALERT_ID_LEN + 1];
	const char *ls = dts_http_arg(req, "limit");
	unsigned long limit = 100;
	enum MHD_Result ret;
	bool history;
	json_t *out;
	int rc;

	if (!alerts_ready(req, &ret))
		return ret;
	if (!parse_path(req->url, id, &history))
		return dts_http_reply_error(req, 404, "no such endpoint: %s", req->url);
	if (!history)
		return dts_http_reply_error(req, 405,
					    "method GET not allowed on %s (GET /api/v1/alerts lists the rules; "
					    "the history is at %s/history)", req->url, req->url);
	if (ls) {
		char *end;

		limit = strtoul(ls, &end, 10);
		if (!*ls || *end || limit < 1 || limit > DTS_ALERT_HISTORY_MAX)
			return dts_http_reply_error(req, 400, "limit: must be an integer between 1 and %d",
						    DTS_ALERT_HISTORY_MAX);
	}
	rc = dts_alerts_history(req->ctx->alerts, req->user, id, (unsigned)limit, &out);
	if (rc == -ENOENT)
		return dts_http_reply_error(req, 404, "id: no alert rule %s", id);
	if (rc)
		return dts_http_reply_error(req, 503, "history: cannot be read (%s)", strerror(-rc));
	return dts_http_reply_json(req, 200, out);
}

const struct dts_http_route dts_http_routes_alerts[] = {
	{ "GET", "/api/v1/alerts", list_rules },
	{ "POST", "/api/v1/alerts", add_rule },
	{ "DELETE", PREFIX "*", remove_rule },
	{ "GET", PREFIX "*", rule_history },
	{ NULL, NULL, NULL },
};
