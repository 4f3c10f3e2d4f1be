/*
 * http_admin.c - the operator API: users and keys (issue 5).
 *
 *   POST   /api/v1/admin/users                 {"email"}       201 {"user","email","api_key","key_id","secret","auth"}
 *   GET    /api/v1/admin/users                                 200 {"users":[{"user","email","key_id","created_s",
 *                                                                             "prometheus"}]}
 *   GET    /api/v1/admin/users/{user}                          200 one user as in the list
 *   POST   /api/v1/admin/users/{user}/rotate                   200 new credentials (as POST /users)
 *   PATCH  /api/v1/admin/users/{user}          {"prometheus"}  200 the user as in the list
 *   DELETE /api/v1/admin/users/{user}                          204
 *
 * Every request needs "Authorization: Bearer ADMIN_TOKEN" (DATA_DIR/admin.token, rewritten at each start); without
 * it the answer is 401 before anything else is looked at. Secrets appear only in the 201/200 replies of create and
 * rotate: the store keeps the API key as a SHA-256 and the AUTH token is derived, so they cannot be shown again.
 * Errors: 400 names the field ("email: ..."), 404 unknown user, 409 the user exists, 503 the store refused the write.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <string.h>

#include "alerts.h"
#include "http_internal.h"
#include "log.h"
#include "users.h"

#define USERS_PATH "/api/v1/admin/users"

static enum MHD_Result reply_errno(struct dts_http_req *req, int rc, const char *err)
{
	unsigned status;

	switch (-rc) {
	case EINVAL: status = 400; break;
	case ENOENT: status = 404; break;
	case EEXIST: status = 409; break;
	case EROFS:
	case EIO:
	case ENOMEM:
	case ENOSPC: status = 503; break;
	default: status = 500; break;
	}
	return dts_http_reply_error(req, status, "%s", err);
}

static json_t *info_json(const struct dts_user_info *u)
{
	return json_pack("{s:s,s:s,s:I,s:I,s:b}", "user", u->id, "email", u->email, "key_id", (json_int_t)u->key_id,
			 "created_s", (json_int_t)u->created_s, "prometheus", u->prometheus);
}

static enum MHD_Result reply_creds(struct dts_http_req *req, unsigned status, struct dts_user_creds *c,
				   const char *email)
{
	json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s?}", "user", c->id, "email", email, "api_key", c->api_key,
			      "key_id", (json_int_t)c->key_id, "secret", c->secret, "auth", c->auth[0] ? c->auth : NULL);

	OPENSSL_cleanse(c, sizeof(*c));
	if (!j)
		return dts_http_reply_error(req, 503, "out of memory");
	return dts_http_reply_json(req, status, j);
}

/* Parse the body as a JSON object whose keys are all in allowed (NULL-terminated). Returns it, or NULL after queueing
 * a 400 into *ret. */
static json_t *body_object(struct dts_http_req *req, const char *const *allowed, enum MHD_Result *ret)
{
	json_error_t je;
	json_t *j;
	const char *k;
	json_t *v;

	if (!req->body_len) {
		*ret = dts_http_reply_error(req, 400, "body: a JSON object is required");
		return NULL;
	}
	j = json_loadb(req->body, req->body_len, 0, &je);
	if (!j || !json_is_object(j)) {
		*ret = j ? dts_http_reply_error(req, 400, "body: must be a JSON object")
			 : dts_http_reply_error(req, 400, "body: not JSON (%s at line %d column %d)", je.text, je.line,
						je.column);
		json_decref(j);
		return NULL;
	}
	json_object_foreach(j, k, v) {
		bool ok = false;

		for (const char *const *a = allowed; *a; a++)
			ok |= strcmp(*a, k) == 0;
		if (!ok) {
			*ret = dts_http_reply_error(req, 400, "%.64s: unknown field", k);
			json_decref(j);
			return NULL;
		}
	}
	return j;
}

static enum MHD_Result users_create(struct dts_http_req *req)
{
	static const char *const allowed[] = { "email", NULL };
	struct dts_user_creds c;
	enum MHD_Result ret;
	char err[256], email[DTS_MAX_USER + 1];
	json_t *j, *e;
	int rc;

	if (!dts_http_auth_admin(req, &ret))
		return ret;
	j = body_object(req, allowed, &ret);
	if (!j)
		return ret;
	e = json_object_get(j, "email");
	if (!e || !json_is_string(e)) {
		json_decref(j);
		return dts_http_reply_error(req, 400, "email: required, a string");
	}
	if (!dts_users_email_valid(json_string_value(e), err, sizeof(err))) {
		json_decref(j);
		return dts_http_reply_error(req, 400, "%s", err);
	}
	snprintf(email, sizeof(email), "%s", json_string_value(e));
	json_decref(j);
	rc = dts_users_add(req->ctx->users, email, &c, err, sizeof(err));
	if (rc)
		return reply_errno(req, rc, err);
	dts_info("admin", "user '%s' created (key id %u)", c.id, c.key_id);
	return reply_creds(req, 201, &c, email);
}

static int list_one(void *ctx, const struct dts_user_info *u)
{
	return json_array_append_new(ctx, info_json(u)) == 0 ? 0 : 1;
}

static enum MHD_Result users_list(struct dts_http_req *req)
{
	enum MHD_Result ret;
	json_t *arr;

	if (!dts_http_auth_admin(req, &ret))
		return ret;
	arr = json_array();
	if (!arr)
		return dts_http_reply_error(req, 503, "out of memory");
	dts_users_list(req->ctx->users, list_one, arr);
	return dts_http_reply_json(req, 200, json_pack("{s:o}", "users", arr));
}

/* /api/v1/admin/users/{user}[/rotate] */
static enum MHD_Result users_one(struct dts_http_req *req)
{
	const char *rest = req->url + strlen(USERS_PATH "/");
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
	bool rotate = slash && strcmp(slash, "/rotate") == 0;
	struct dts_users *users = req->ctx->users;
	struct dts_user_info info;
	enum MHD_Result ret;
	char user[DTS_MAX_USER + 1], err[256];
	int rc;

	if (!dts_http_auth_admin(req, &ret))
		return ret;
	if (slash && !rotate)
		return dts_http_reply_error(req, 404, "no such endpoint: %s", req->url);
	if (n == 0 || n > DTS_MAX_USER || !dts_native_user_valid(rest, n))
		return dts_http_reply_error(req, 400, "user: must be 1..%d characters of [A-Za-z0-9@._+-]",
					    DTS_MAX_USER);
	memcpy(user, rest, n);
	user[n] = '\0';

	if (rotate) {
		struct dts_user_creds c;

		if (strcmp(req->method, "POST") != 0)
			return dts_http_reply_error(req, 405, "method %s not allowed on %s (use POST)", req->method,
						    req->url);
		rc = dts_users_rotate(users, user, &c, err, sizeof(err));
		if (rc)
			return reply_errno(req, rc, err);
		dts_info("admin", "user '%s' keys rotated (new key id %u)", user, c.key_id);
		if (!dts_users_get(users, user, &info))
			info.email[0] = '\0'; /* removed in between: the credentials are still the ones just made */
		return reply_creds(req, 200, &c, info.email);
	}
	if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) {
		if (!dts_users_get(users, user, &info))
			return dts_http_reply_error(req, 404, "user: no user '%s'", user);
		return dts_http_reply_json(req, 200, info_json(&info));
	}
	if (!strcmp(req->method, "DELETE")) {
		/* The user's alert rules go with it: stop evaluating them first (dts_users_remove then deletes any
		 * record left in meta, which is all there is when no alert engine runs). */
		if (req->ctx->alerts && dts_users_get(users, user, &info)) {
			json_t *list = dts_alerts_list(req->ctx->alerts, user);
			json_t *rule;
			size_t i;

			json_array_foreach(json_object_get(list, "rules"), i, rule)
				dts_alerts_remove(req->ctx->alerts, user, json_string_value(json_object_get(rule, "id")),
						  err, sizeof(err));
			json_decref(list);
		}
		rc = dts_users_remove(users, user, err, sizeof(err));
		if (rc)
			return reply_errno(req, rc, err);
		dts_info("admin", "user '%s' removed", user);
		return dts_http_reply(req, 204, "application/json", NULL, 0);
	}
	if (!strcmp(req->method, "PATCH")) {
		static const char *const allowed[] = { "prometheus", NULL };
		json_t *j = body_object(req, allowed, &ret), *p;

		if (!j)
			return ret;
		p = json_object_get(j, "prometheus");
		if (!p || !json_is_boolean(p)) {
			json_decref(j);
			return dts_http_reply_error(req, 400, "prometheus: required, true or false");
		}
		rc = dts_users_set_prometheus(users, user, json_is_true(p), err, sizeof(err));
		json_decref(j);
		if (rc)
			return reply_errno(req, rc, err);
		if (!dts_users_get(users, user, &info))
			return dts_http_reply_error(req, 404, "user: no user '%s'", user);
		dts_info("admin", "user '%s': prometheus %s", user, info.prometheus ? "on" : "off");
		return dts_http_reply_json(req, 200, info_json(&info));
	}
	return dts_http_reply_error(req, 405, "method %s not allowed on %s (GET, PATCH or DELETE)", req->method,
				    req->url);
}

const struct dts_http_route dts_http_routes_admin[] = {
	{ "GET", USERS_PATH, users_list },
	{ "POST", USERS_PATH, users_create },
	{ NULL, USERS_PATH "/*", users_one },
	{ NULL, NULL, NULL },
};
