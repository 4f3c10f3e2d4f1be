/*
 * alert_cmd.c - `dattss alert add|list|remove|history`: a user's alert rules through the running daemon's API
 * (/api/v1/alerts, docs/alerts.md), with the user's API key.
 *
 * The daemon validates every rule and names the field of any error; this command only builds the JSON from flags
 * (checking that numbers are numbers, so a typo is named by its flag) and prints the answers. libcurl is the HTTP
 * client. Exit status: 0 success, 1 the daemon refused or could not be reached, 2 usage error.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool_cmds.h"

#define DEFAULT_HTTP "http://127.0.0.1:8080"

static const char usage_alert[] =
	"Usage: dattss alert COMMAND [OPTIONS]\n"
	"\n"
	"Alert rules of the user whose API key is given, through the running dattssd's API (docs/alerts.md).\n"
	"\n"
	"Commands:\n"
	"  list                       the rules with their state (ok, pending, firing, resolved)\n"
	"  add RULE-OPTIONS           create a rule; prints its id\n"
	"  remove ID                  delete a rule and its history\n"
	"  history ID [--limit N]     the rule's state changes, newest first\n"
	"\n"
	"Rule options (add):\n"
	"  --kind K                   above, below, stopped_working or stopped_responding\n"
	"  --name TEXT                a name for people (subjects, messages)\n"
	"  --process P                the process\n"
	"  --counter C --type T       the counter and its type (c, ms, g, s) - not for stopped_responding\n"
	"  --tags TAGS                the series' tags, canonical (sorted, ','-joined); default none\n"
	"  --stat S --limit X         above/below: the statistic (avg, sum, count, min, max, bot10, top10, lst,\n"
	"                             rate) and the limit\n"
	"  --window-min N             above/below: window in minutes [1: the live 60 s]\n"
	"  --for M                    above/below: consecutive evaluations before firing [1]\n"
	"  --after-min N              stopped_working: minutes without data\n"
	"  --after-s N                stopped_responding: seconds without a heartbeat\n"
	"  --email ADDR[,ADDR...]     send email (repeatable; all addresses go in one message)\n"
	"  --sms NUMBER               send an SMS to +E.164 NUMBER (repeatable)\n"
	"  --call NUMBER              place a phone call (repeatable)\n"
	"  --webhook URL              POST JSON to URL (repeatable)\n"
	"\n"
	"Common options:\n"
	"  --http URL                 the daemon's HTTP API [$DATTSS_HTTP, else " DEFAULT_HTTP "]\n"
	"  --key KEY                  the user's API key [$DATTSS_API_KEY]\n"
	"  --json                     print the daemon's JSON answer\n"
	"  -h, --help                 this help\n"
	"\n"
	"Examples:\n"
	"  export DATTSS_API_KEY=$(cat data/api.key)\n"
	"  dattss alert add --kind above --process api --counter query --type ms --stat top10 --limit 250 --for 3 \\\n"
	"                   --email ops@example.com --name 'slow queries'\n"
	"  dattss alert add --kind stopped_responding --process worker --after-s 30 --sms +15551234567\n"
	"  dattss alert list\n"
	"  dattss alert history 0123456789ab\n"
	"  dattss alert remove 0123456789ab\n";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "dattss alert: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(try 'dattss alert --help')\n");
	return 2;
}

/* ---- HTTP ------------------------------------------------------------------------------------------------------ */

struct reply {
	char *p;
	size_t len;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct reply *r = ctx;
	size_t n = size * nmemb;
	char *np = r->len + n < (16u << 20) ? realloc(r->p, r->len + n + 1) : NULL;

	if (!np)
		return 0; /* libcurl reports a write error */
	memcpy(np + r->len, data, n);
	r->p = np;
	r->len += n;
	r->p[r->len] = '\0';
	return n;
}

/*
 * method base+path with the bearer key and an optional JSON body. Returns the HTTP status (0 when the daemon could not
 * be reached: the reason is printed) and *out = the parsed JSON answer (NULL for none or a 204).
 */
static long request(const char *base, const char *key, const char *method, const char *path, const json_t *body,
		    json_t **out)
{
	char url[2048], auth[600], cerr[CURL_ERROR_SIZE] = "";
	struct curl_slist *h = NULL, *t;
	struct reply r = { 0 };
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	CURL *c = curl_easy_init();
	long status = 0;
	CURLcode cc;

	*out = NULL;
	if (!c || (body && !text)) {
		fprintf(stderr, "dattss alert: out of memory\n");
		curl_easy_cleanup(c);
		free(text);
		return 0;
	}
	snprintf(url, sizeof(url), "%s%s", base, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	t = curl_slist_append(h, auth);
	h = t ? t : h;
	t = curl_slist_append(h, "Content-Type: application/json");
	h = t ? t : h;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	if (text) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
	}
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		fprintf(stderr, "dattss alert: the API at %s did not answer: %s (is dattssd running? --http URL)\n",
			base, cerr[0] ? cerr : curl_easy_strerror(cc));
	} else {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (r.len)
			*out = json_loadb(r.p, r.len, 0, NULL);
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(r.p);
	free(text);
	return status;
}

/* Print the daemon's refusal ("dattss alert add: limit: must be a number") and return 1. */
static int refused(const char *cmd, long status, json_t *j)
{
	const char *msg = json_string_value(json_object_get(j, "error"));

	if (status == 401)
		fprintf(stderr, "dattss alert %s: the daemon refused the API key (%s); give the user's key with --key "
				"or DATTSS_API_KEY\n", cmd, msg ? msg : "401");
	else if (status)
		fprintf(stderr, "dattss alert %s: %s (HTTP %ld)\n", cmd, msg ? msg : "request refused", status);
	json_decref(j);
	return 1;
}

/* ---- printing -------------------------------------------------------------------------------------------------- */

static void utc(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* What a rule watches, in one line (the same words as the daemon's messages, from the JSON). */
static void rule_text(json_t *r, char *buf, size_t len)
{
	const char *kind = json_string_value(json_object_get(r, "kind"));
	const char *tags = json_string_value(json_object_get(r, "tags"));
	const char *process = json_string_value(json_object_get(r, "process"));
	const char *counter = json_string_value(json_object_get(r, "counter"));
	const char *type = json_string_value(json_object_get(r, "type"));
	char series[600];

	snprintf(series, sizeof(series), "%s/%s (%s)%s%s%s", process ? process : "?", counter ? counter : "",
		 type ? type : "", tags && *tags ? " {" : "", tags ? tags : "", tags && *tags ? "}" : "");
	if (!kind)
		snprintf(buf, len, "?");
	else if (!strcmp(kind, "above") || !strcmp(kind, "below"))
		snprintf(buf, len, "%s of %s over %" JSON_INTEGER_FORMAT " min %s %.15g (for %" JSON_INTEGER_FORMAT ")",
			 json_string_value(json_object_get(r, "stat")), series,
			 json_integer_value(json_object_get(r, "window_min")), kind,
			 json_number_value(json_object_get(r, "limit")), json_integer_value(json_object_get(r, "for")));
	else if (!strcmp(kind, "stopped_working"))
		snprintf(buf, len, "%s: no data for %" JSON_INTEGER_FORMAT " min", series,
			 json_integer_value(json_object_get(r, "after_min")));
	else
		snprintf(buf, len, "process %s: no heartbeat for %" JSON_INTEGER_FORMAT " s", process ? process : "?",
			 json_integer_value(json_object_get(r, "after_s")));
}

static void channels_text(json_t *r, char *buf, size_t len)
{
	size_t i, k = 0;
	json_t *c;

	buf[0] = '\0';
	json_array_foreach(json_object_get(r, "channels"), i, c) {
		const char *type = json_string_value(json_object_get(c, "type"));
		json_t *to = json_object_get(c, "to");
		char dest[300] = "";

		const char *url = json_string_value(json_object_get(c, "url"));

		if (json_is_array(to))
			snprintf(dest, sizeof(dest), "%zu address%s", json_array_size(to),
				 json_array_size(to) == 1 ? "" : "es");
		else
			snprintf(dest, sizeof(dest), "%s",
				 json_string_value(to) ? json_string_value(to) : url ? url : "?");
		k += (size_t)snprintf(buf + k, k < len ? len - k : 0, "%s%s:%s", i ? " " : "", type ? type : "?", dest);
		if (k >= len)
			break;
	}
	if (!buf[0])
		snprintf(buf, len, "-");
}

static void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
	fputc('\n', stdout);
}

/* ---- commands -------------------------------------------------------------------------------------------------- */

struct common {
	const char *http, *key;
	bool json;
};

static int cmd_list(const struct common *o)
{
	json_t *j, *r;
	long st = request(o->http, o->key, "GET", "/api/v1/alerts", NULL, &j);
	size_t i;

	if (st != 200)
		return refused("list", st, j);
	if (o->json) {
		print_json(j);
		json_decref(j);
		return 0;
	}
	printf("%-12s  %-8s  %-20s  %-20s  %s\n", "ID", "STATE", "SINCE", "NAME", "WATCHES / CHANNELS");
	json_array_foreach(json_object_get(j, "rules"), i, r) {
		char since[32], what[1024], chans[1024];

		utc(json_integer_value(json_object_get(r, "since_ms")), since, sizeof(since));
		rule_text(r, what, sizeof(what));
		channels_text(r, chans, sizeof(chans));
		printf("%-12s  %-8s  %-20s  %-20s  %s -> %s\n", json_string_value(json_object_get(r, "id")),
		       json_string_value(json_object_get(r, "state")), since,
		       json_string_value(json_object_get(r, "name")), what, chans);
	}
	if (!json_array_size(json_object_get(j, "rules")))
		printf("(no rules)\n");
	json_decref(j);
	return 0;
}

static bool valid_id(const char *id)
{
	if (strlen(id) != 12)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static int cmd_remove(const struct common *o, const char *id)
{
	char path[64];
	json_t *j;
	long st;

	snprintf(path, sizeof(path), "/api/v1/alerts/%s", id);
	st = request(o->http, o->key, "DELETE", path, NULL, &j);
	if (st != 204)
		return refused("remove", st, j);
	json_decref(j);
	printf("removed rule %s\n", id);
	return 0;
}

static int cmd_history(const struct common *o, const char *id, unsigned limit)
{
	char path[96];
	json_t *j, *h;
	size_t i;
	long st;

	snprintf(path, sizeof(path), "/api/v1/alerts/%s/history?limit=%u", id, limit);
	st = request(o->http, o->key, "GET", path, NULL, &j);
	if (st != 200)
		return refused("history", st, j);
	if (o->json) {
		print_json(j);
		json_decref(j);
		return 0;
	}
	printf("%-20s  %-8s     %-8s  %s\n", "TIME", "FROM", "TO", "VALUE");
	json_array_foreach(json_object_get(j, "history"), i, h) {
		char when[32], val[48] = "-";

		utc(json_integer_value(json_object_get(h, "ts_ms")), when, sizeof(when));
		if (json_is_number(json_object_get(h, "value")))
			snprintf(val, sizeof(val), "%.6g", json_number_value(json_object_get(h, "value")));
		printf("%-20s  %-8s  -> %-8s  %s\n", when, json_string_value(json_object_get(h, "from")),
		       json_string_value(json_object_get(h, "to")), val);
	}
	json_decref(j);
	return 0;
}

/* A whole decimal number for flag name, or -1 (after printing the usage error). */
static long long number_flag(const char *name, const char *v, bool integer, double *d)
{
	char *end;

	errno = 0;
	*d = strtod(v, &end);
	if (!*v || *end || errno || (integer && (*d != (double)(long long)*d || *d < 0)))
		return usage("%s: '%s' is not %s", name, v, integer ? "a whole number" : "a number"), -1;
	return 0;
}

/* Append one channel {"type": type, key: value} to arr. */
static void add_channel(json_t *arr, const char *type, const char *key, json_t *value)
{
	json_array_append_new(arr, json_pack("{s:s,s:o}", "type", type, key, value));
}

static int cmd_add(const struct common *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "kind", required_argument, NULL, 'k' },      { "name", required_argument, NULL, 'n' },
		{ "process", required_argument, NULL, 'p' },   { "counter", required_argument, NULL, 'c' },
		{ "type", required_argument, NULL, 't' },      { "tags", required_argument, NULL, 'T' },
		{ "stat", required_argument, NULL, 's' },      { "limit", required_argument, NULL, 'l' },
		{ "window-min", required_argument, NULL, 'w' }, { "for", required_argument, NULL, 'f' },
		{ "after-min", required_argument, NULL, 'm' }, { "after-s", required_argument, NULL, 'a' },
		{ "email", required_argument, NULL, 'e' },     { "sms", required_argument, NULL, 'S' },
		{ "call", required_argument, NULL, 'C' },      { "webhook", required_argument, NULL, 'W' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *rule = json_object(), *chans = json_array(), *emails = json_array(), *j;
	int opt, rc = 2;
	long st;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		const char *names[] = { ['k'] = "kind", ['n'] = "name", ['p'] = "process", ['c'] = "counter",
					['t'] = "type", ['T'] = "tags", ['s'] = "stat" };
		double d;

		switch (opt) {
		case 'k': case 'n': case 'p': case 'c': case 't': case 'T': case 's':
			json_object_set_new(rule, names[opt], json_string(optarg));
			break;
		case 'l':
			if (number_flag("--limit", optarg, false, &d) < 0)
				goto out;
			json_object_set_new(rule, "limit", json_real(d));
			break;
		case 'w': case 'f': case 'm': case 'a': {
			const char *flag = opt == 'w'	? "--window-min"
					   : opt == 'f' ? "--for"
					   : opt == 'm' ? "--after-min"
							: "--after-s";
			const char *field = flag + 2; /* the JSON field: the flag without "--", '-' as '_' */
			char fname[16];

			snprintf(fname, sizeof(fname), "%s", field);
			for (char *p = fname; *p; p++)
				*p = *p == '-' ? '_' : *p;

			if (number_flag(flag, optarg, true, &d) < 0)
				goto out;
			json_object_set_new(rule, fname, json_integer((json_int_t)d));
			break;
		}
		case 'e': {
			char *list = strdup(optarg), *save = NULL;

			for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save))
				json_array_append_new(emails, json_string(a));
			free(list);
			break;
		}
		case 'S':
			add_channel(chans, "sms", "to", json_string(optarg));
			break;
		case 'C':
			add_channel(chans, "call", "to", json_string(optarg));
			break;
		case 'W':
			add_channel(chans, "webhook", "url", json_string(optarg));
			break;
		default:
			usage("add: unknown option or missing value: '%s'", argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		usage("add: unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (!json_object_get(rule, "kind")) {
		usage("add: --kind is required (above, below, stopped_working or stopped_responding)");
		goto out;
	}
	if (json_array_size(emails))
		json_array_insert_new(chans, 0, json_pack("{s:s,s:O}", "type", "email", "to", emails));
	json_object_set(rule, "channels", chans);

	st = request(o->http, o->key, "POST", "/api/v1/alerts", rule, &j);
	if (st != 201) {
		rc = refused("add", st, j);
		goto out;
	}
	if (o->json) {
		print_json(j);
	} else {
		json_t *r = json_object_get(j, "rule");
		char what[1024];

		rule_text(r, what, sizeof(what));
		printf("added rule %s: %s\n", json_string_value(json_object_get(r, "id")), what);
	}
	json_decref(j);
	rc = 0;
out:
	json_decref(rule);
	json_decref(chans);
	json_decref(emails);
	return rc;
}

int dts_tool_alert(int argc, char **argv)
{
	struct common o = { .http = getenv("DATTSS_HTTP"), .key = getenv("DATTSS_API_KEY") };
	const char *cmd;
	char **rest;
	int nrest = 0, rc;
	unsigned limit = 100;

	if (argc < 2)
		return usage("a command is required: add, list, remove or history");
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		fputs(usage_alert, stdout);
		return 0;
	}
	if (strcmp(cmd, "add") && strcmp(cmd, "list") && strcmp(cmd, "remove") && strcmp(cmd, "history"))
		return usage("unknown command '%s' (add, list, remove or history)", cmd);

	/* Take the common options out of argv (anywhere after the command); the rest goes to the command. */
	rest = calloc((size_t)argc + 1, sizeof(*rest));
	if (!rest)
		return usage("out of memory");
	rest[nrest++] = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = NULL;
		size_t n;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_alert, stdout);
			free(rest);
			return 0;
		}
		if (!strcmp(a, "--json")) {
			o.json = true;
			continue;
		}
		if (!strncmp(a, "--http", 6))
			n = 6;
		else if (!strncmp(a, "--key", 5))
			n = 5;
		else if (!strncmp(a, "--limit", 7) && !strcmp(cmd, "history"))
			n = 7; /* for add, --limit is the rule's limit */
		else
			n = 0;
		if (n && (a[n] == '=' || a[n] == '\0')) {
			v = a[n] == '=' ? a + n + 1 : i + 1 < argc ? argv[++i] : NULL;
			if (!v) {
				free(rest);
				return usage("%s needs a value", a);
			}
			if (n == 6)
				o.http = v;
			else if (n == 5)
				o.key = v;
			else {
				double d;

				if (number_flag("--limit", v, true, &d) < 0) {
					free(rest);
					return 2;
				}
				limit = (unsigned)d;
			}
			continue;
		}
		rest[nrest++] = argv[i];
	}
	if (!o.http || !*o.http)
		o.http = DEFAULT_HTTP;
	if (strncmp(o.http, "http://", 7) && strncmp(o.http, "https://", 8)) {
		free(rest);
		return usage("--http: '%s' is not an http:// or https:// URL", o.http);
	}
	if (!o.key || !*o.key) {
		free(rest);
		return usage("the user's API key is required: --key KEY or DATTSS_API_KEY (the first user's is in "
			     "DATA_DIR/api.key)");
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		free(rest);
		fprintf(stderr, "dattss alert: libcurl initialisation failed\n");
		return 1;
	}
	if (!strcmp(cmd, "add")) {
		rc = cmd_add(&o, nrest, rest);
	} else if (!strcmp(cmd, "list")) {
		rc = nrest == 1 ? cmd_list(&o) : usage("list: unexpected argument '%s'", rest[1]);
	} else {
		if (nrest != 2 || !valid_id(rest[1]))
			rc = usage("%s: expected one rule ID (12 hex digits, as 'dattss alert list' shows)", cmd);
		else if (!strcmp(cmd, "remove"))
			rc = cmd_remove(&o, rest[1]);
		else
			rc = cmd_history(&o, rest[1], limit);
	}
	curl_global_cleanup();
	free(rest);
	return rc;
}
