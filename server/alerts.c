/*
 * alerts.c - alert rules: validation, JSON, the evaluation core, persistence in meta, the evaluator thread
 * (contract in alerts.h, user guide in docs/alerts.md).
 *
 * How a round works (dts_alerts_round):
 *   1. copy the rules and their evaluation state under the lock (the lock is never held across I/O);
 *   2. observe every rule: one RCU walk of the engine's live series and one of its process states per round (rules
 *      are found by a hash of their user and series identity, so a walk costs one hash per live series), then the
 *      store for windows longer than 60 s and for series that have left the live map;
 *   3. dts_alert_step() per rule (pure);
 *   4. append each state change to the rule's history in meta, write the states back under the lock, and hand one
 *      batch per user to the notifier (which never blocks us).
 * round_mu serialises a round with rule removal, so a removed rule's history cannot be written again after the
 * removal deleted it.
 */
#define _GNU_SOURCE
#include "alerts.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "dts/hash.h"
#include "dts/meta.h"
#include "dts/sketch.h"
#include "log.h"
#include "notify.h"

#define HIST_TS_DIGITS 16 /* zero-padded unix ms in history keys: byte order is time order until year 318857 */
#define META_KEY_MAX (16 + DTS_MAX_USER + DTS_ALERT_ID_LEN + HIST_TS_DIGITS + 8)
#define STORE_LOOKBACK_MAX_S (8 * 86400) /* stopped_working: how far back the store is searched for the last data */

/* ---- names ----------------------------------------------------------------------------------------------------- */

static const char *const kind_names[DTS_ALERT_KIND_COUNT] = { "above", "below", "stopped_working",
							      "stopped_responding" };
static const char *const stat_names[DTS_ALERT_STAT_NUM] = { "avg", "sum", "count", "min", "max",
							    "bot10", "top10", "lst", "rate" };
static const char *const state_names[DTS_ALERT_STATE_COUNT] = { "ok", "pending", "firing", "resolved" };
static const char *const chan_names[DTS_CHAN_COUNT] = { "email", "sms", "call", "webhook" };
static const char *const type_names[DTS_NTYPES] = { "c", "ms", "g", "s" };

const char *dts_alert_kind_name(unsigned kind)
{
	return kind < DTS_ALERT_KIND_COUNT ? kind_names[kind] : "?";
}

const char *dts_alert_stat_name(unsigned stat)
{
	return stat < DTS_ALERT_STAT_NUM ? stat_names[stat] : "?";
}

const char *dts_alert_state_name(unsigned state)
{
	return state < DTS_ALERT_STATE_COUNT ? state_names[state] : "?";
}

const char *dts_channel_name(unsigned ch)
{
	return ch < DTS_CHAN_COUNT ? chan_names[ch] : "?";
}

static int find_name(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

int dts_alert_state_parse(const char *name)
{
	return name ? find_name(state_names, DTS_ALERT_STATE_COUNT, name) : -1;
}

/* ---- validation ------------------------------------------------------------------------------------------------ */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Input text as an error quotes it: at most 64 bytes, control characters as '?' (an error stays one line). */
static const char *shown_text(const char *in, char out[68])
{
	size_t i = 0;

	for (; in[i] && i < 64; i++)
		out[i] = (unsigned char)in[i] < 0x20 || in[i] == 0x7f ? '?' : in[i];
	out[i] = '\0';
	return out;
}

/*
 * A field name from the input as an error starts with it ("field: message"): as shown_text, and in double quotes when
 * it is empty or holds a ':', a space or a quote, so that the error's own ": " stays the first one a reader or a
 * program finds after the field (a key ": " showed as ": : unknown field").
 */
static const char *shown_key(const char *key, char out[68])
{
	char inner[68];

	if (*key && !strpbrk(key, ": \""))
		return shown_text(key, out);
	shown_text(key, inner); /* at most 64 bytes: quoted, 66 */
	snprintf(out, 68, "\"%.64s\"", inner);
	return out;
}

/* A series name component as the store's keys carry it: 1..max printable ASCII bytes other than '/' and '|'. */
static bool valid_component(const char *s, size_t max)
{
	size_t n = 0;

	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e || s[n] == '/' || s[n] == '|')
			return false;
	return n >= 1 && n <= max;
}

static bool valid_tags(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e || s[n] == '|')
			return false;
	return n <= DTS_MAX_TAGS_LEN;
}

/* Free text: no control characters (it goes into subjects and SMS bodies), at most max bytes. */
static bool valid_text(const char *s, size_t max)
{
	size_t n = 0;

	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
			return false;
	return n <= max;
}

/* An email address as an SMTP envelope takes it: local@domain, printable ASCII without spaces, quotes, angle
 * brackets, commas or semicolons (no display names: those belong to a mail client, not to a rule). */
static bool valid_email(const char *s)
{
	const char *at = strchr(s, '@');
	size_t n = strlen(s);

	if (n < 3 || n > 254 || !at || at == s || !at[1] || strchr(at + 1, '@'))
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e || strchr("<>()[]\\,;:\"'", *p))
			return false;
	if (at[1] == '.' || s[n - 1] == '.' || strstr(at, ".."))
		return false;
	return true;
}

/* E.164: '+' and 6 to 15 digits (shorter numbers are not reachable by SMS/call providers from abroad). */
static bool valid_phone(const char *s)
{
	size_t n = 0;

	if (*s++ != '+')
		return false;
	for (; s[n]; n++)
		if (s[n] < '0' || s[n] > '9')
			return false;
	return n >= 6 && n <= 15;
}

static bool valid_url(const char *s)
{
	size_t n = strlen(s);

	if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
		return false;
	if (n > DTS_ALERT_DEST_MAX || n <= (size_t)(s[4] == 's' ? 8 : 7))
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
			return false;
	return true;
}

/* The integer field name of obj in [min, max]; absent: def (or an error when def < 0: required). */
static int get_uint(const json_t *obj, const char *name, long long min, long long max, long long def,
		    unsigned *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, name);
	long long x;

	if (!v || json_is_null(v)) {
		if (def < 0)
			return fail(err, errlen, "%s: required (an integer between %lld and %lld)", name, min, max);
		*out = (unsigned)def;
		return 0;
	}
	if (json_is_integer(v))
		x = (long long)json_integer_value(v);
	else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
		 fabs(json_real_value(v)) < 1e15)
		x = (long long)json_real_value(v);
	else
		return fail(err, errlen, "%s: must be an integer between %lld and %lld", name, min, max);
	if (x < min || x > max)
		return fail(err, errlen, "%s: must be an integer between %lld and %lld, got %lld", name, min, max, x);
	*out = (unsigned)x;
	return 0;
}

/* The string field name of obj, or NULL when absent or null; an error when it is another JSON type. */
static int get_str(const json_t *obj, const char *name, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, name);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return fail(err, errlen, "%s: must be a string", name);
	*out = json_string_value(v);
	return 0;
}

/* Which top-level fields each kind takes (bit per kind). */
#define K_ABOVE (1u << DTS_ALERT_ABOVE)
#define K_BELOW (1u << DTS_ALERT_BELOW)
#define K_SW (1u << DTS_ALERT_STOPPED_WORKING)
#define K_SR (1u << DTS_ALERT_STOPPED_RESPONDING)
#define K_ALL (K_ABOVE | K_BELOW | K_SW | K_SR)

static const struct {
	const char *name;
	unsigned kinds; /* 0: ignored on input (server-assigned or output-only) */
} rule_fields[] = {
	{ "kind", K_ALL },	     { "name", K_ALL },		  { "process", K_ALL },
	{ "counter", K_ABOVE | K_BELOW | K_SW },		  { "type", K_ABOVE | K_BELOW | K_SW },
	{ "tags", K_ABOVE | K_BELOW | K_SW },			  { "stat", K_ABOVE | K_BELOW },
	{ "limit", K_ABOVE | K_BELOW }, { "window_min", K_ABOVE | K_BELOW }, { "for", K_ABOVE | K_BELOW },
	{ "after_min", K_SW },	     { "after_s", K_SR },	  { "channels", K_ALL },
	{ "id", 0 },		     { "user", 0 },		  { "created_ms", 0 },
	{ "state", 0 },		     { "since_ms", 0 },		  { "value", 0 },
	{ "v", 0 },
};

static const char *kinds_text(unsigned kinds)
{
	switch (kinds) {
	case K_ABOVE | K_BELOW:
		return "above and below rules";
	case K_ABOVE | K_BELOW | K_SW:
		return "above, below and stopped_working rules";
	case K_SW:
		return "stopped_working rules";
	case K_SR:
		return "stopped_responding rules";
	default:
		return "other rules";
	}
}

static int parse_type(const char *s)
{
	int t = find_name(type_names, DTS_NTYPES, s);

	if (t < 0 && (strcmp(s, "h") == 0 || strcmp(s, "d") == 0))
		t = DTS_TIMER; /* statsd histograms and distributions are timers here (DESIGN 2) */
	return t;
}

/* Which statistics make sense for a series type (the current state has no rate for gauges, no quantiles but for
 * timers, and only a count of members for sets). */
static int check_stat(unsigned stat, unsigned type, char *err, size_t errlen)
{
	if (stat == DTS_STAT_RATE && type != DTS_COUNTER)
		return fail(err, errlen, "stat: rate is only for counters (type c)");
	if ((stat == DTS_STAT_BOT10 || stat == DTS_STAT_TOP10) && type != DTS_TIMER)
		return fail(err, errlen, "stat: %s is only for timers (type ms)", stat_names[stat]);
	if (type == DTS_SET && stat != DTS_STAT_COUNT)
		return fail(err, errlen, "stat: sets (type s) support count only");
	return 0;
}

static const char *chan_config_keys[DTS_CHAN_COUNT] = {
	"smtp_url and smtp_from", "sms_url, sms_account, sms_token and sms_from",
	"sms_url (or call_url), sms_account, sms_token and sms_from", "",
};

static int parse_channel(const json_t *c, size_t i, unsigned channels_ok, struct dts_alert_channel *out, char *err,
			 size_t errlen)
{
	const char *type, *url = NULL;
	char shown[68];
	json_t *to;
	const char *key;
	json_t *val;
	int t;

	if (!json_is_object(c))
		return fail(err, errlen,
			    "channels[%zu]: must be an object like "
			    "{\"type\":\"email\",\"to\":[\"ops@example.com\"]}", i);
	if (!json_is_string(json_object_get(c, "type")))
		return fail(err, errlen, "channels[%zu].type: required: email, sms, call or webhook", i);
	type = json_string_value(json_object_get(c, "type"));
	t = find_name(chan_names, DTS_CHAN_COUNT, type);
	if (t < 0)
		return fail(err, errlen, "channels[%zu].type: must be email, sms, call or webhook, got '%s'", i,
			    shown_text(type, shown));
	if (!(channels_ok & (1u << t)))
		return fail(err, errlen, "channels[%zu].type: %s is not configured on this server (needs %s)", i, type,
			    chan_config_keys[t]);
	json_object_foreach((json_t *)c, key, val) {
		bool known = strcmp(key, "type") == 0 || (t == DTS_CHAN_WEBHOOK ? strcmp(key, "url") == 0
										 : strcmp(key, "to") == 0);
		if (!known)
			return fail(err, errlen, "channels[%zu].%s: unknown field (%s channels take type and %s)", i,
				    shown_key(key, shown), type, t == DTS_CHAN_WEBHOOK ? "url" : "to");
	}
	out->type = (uint8_t)t;
	out->dest[0] = '\0';
	to = json_object_get(c, "to");
	switch (t) {
	case DTS_CHAN_EMAIL: {
		size_t n, len = 0;

		if (json_is_string(to)) {
			n = 1;
		} else if (json_is_array(to)) {
			n = json_array_size(to);
			if (n < 1 || n > DTS_ALERT_MAX_EMAILS)
				return fail(err, errlen, "channels[%zu].to: must list 1 to %d email addresses", i,
					    DTS_ALERT_MAX_EMAILS);
		} else {
			return fail(err, errlen, "channels[%zu].to: required: an array of email addresses", i);
		}
		for (size_t k = 0; k < n; k++) {
			json_t *a = json_is_string(to) ? to : json_array_get(to, k);
			const char *s = json_string_value(a);

			if (!s || !valid_email(s))
				return fail(err, errlen,
					    "channels[%zu].to[%zu]: must be an email address like "
					    "ops@example.com, got '%s'", i, k,
					    s ? shown_text(s, shown) : "(not a string)");
			if (len + strlen(s) + 1 > DTS_ALERT_DEST_MAX)
				return fail(err, errlen,
					    "channels[%zu].to: the addresses are longer than %d bytes in all", i,
					    DTS_ALERT_DEST_MAX);
			len += (size_t)snprintf(out->dest + len, sizeof(out->dest) - len, "%s%s", k ? "," : "", s);
		}
		return 0;
	}
	case DTS_CHAN_SMS:
	case DTS_CHAN_CALL:
		if (!json_is_string(to) || !valid_phone(json_string_value(to)))
			return fail(err, errlen,
				    "channels[%zu].to: must be a phone number in E.164 form, like +15551234567", i);
		snprintf(out->dest, sizeof(out->dest), "%s", json_string_value(to));
		return 0;
	default:
		url = json_string_value(json_object_get(c, "url"));
		if (!url || !valid_url(url))
			return fail(err, errlen,
				    "channels[%zu].url: must be an http:// or https:// URL of at most %d bytes "
				    "without spaces", i, DTS_ALERT_DEST_MAX);
		snprintf(out->dest, sizeof(out->dest), "%s", url);
		return 0;
	}
}

int dts_alert_rule_parse(const json_t *j, unsigned channels_ok, struct dts_alert_rule *r, char *err, size_t errlen)
{
	const char *kind, *s;
	char shown[68];
	const char *key;
	json_t *val, *ch;
	int k, rc;

	memset(r, 0, sizeof(*r));
	if (!json_is_object(j))
		return fail(err, errlen, "body: must be a JSON object (a rule)");
	if ((rc = get_str(j, "kind", &kind, err, errlen)) != 0)
		return rc;
	if (!kind)
		return fail(err, errlen, "kind: required: above, below, stopped_working or stopped_responding");
	k = find_name(kind_names, DTS_ALERT_KIND_COUNT, kind);
	if (k < 0)
		return fail(err, errlen, "kind: must be above, below, stopped_working or stopped_responding, got '%s'",
			    shown_text(kind, shown));
	r->kind = (uint8_t)k;
	json_object_foreach((json_t *)j, key, val) {
		size_t f = 0;

		for (; f < sizeof(rule_fields) / sizeof(rule_fields[0]); f++)
			if (strcmp(rule_fields[f].name, key) == 0)
				break;
		if (f == sizeof(rule_fields) / sizeof(rule_fields[0]))
			return fail(err, errlen, "%s: unknown field", shown_key(key, shown));
		if (rule_fields[f].kinds && !(rule_fields[f].kinds & (1u << k)) && !json_is_null(val))
			return fail(err, errlen, "%s: only for %s, not %s", key, kinds_text(rule_fields[f].kinds),
				    kind);
	}

	if ((rc = get_str(j, "name", &s, err, errlen)) != 0)
		return rc;
	if (s && !valid_text(s, DTS_ALERT_NAME_MAX))
		return fail(err, errlen, "name: must be at most %d bytes without control characters",
			    DTS_ALERT_NAME_MAX);
	snprintf(r->name, sizeof(r->name), "%s", s ? s : "");

	if ((rc = get_str(j, "process", &s, err, errlen)) != 0)
		return rc;
	if (!s || !valid_component(s, DTS_MAX_NAME))
		return fail(err, errlen, "process: required: 1 to %d printable characters other than '/' and '|'",
			    DTS_MAX_NAME);
	snprintf(r->process, sizeof(r->process), "%s", s);

	if (r->kind != DTS_ALERT_STOPPED_RESPONDING) {
		int t;

		if ((rc = get_str(j, "counter", &s, err, errlen)) != 0)
			return rc;
		if (!s || !valid_component(s, DTS_MAX_NAME))
			return fail(err, errlen,
				    "counter: required: 1 to %d printable characters other than '/' and '|'",
				    DTS_MAX_NAME);
		snprintf(r->counter, sizeof(r->counter), "%s", s);
		if ((rc = get_str(j, "type", &s, err, errlen)) != 0)
			return rc;
		if (!s)
			return fail(err, errlen, "type: required: c, ms, g or s (h and d are taken as ms)");
		t = parse_type(s);
		if (t < 0)
			return fail(err, errlen, "type: must be c, ms, g or s (h and d are taken as ms), got '%s'",
				    shown_text(s, shown));
		r->type = (uint8_t)t;
		if ((rc = get_str(j, "tags", &s, err, errlen)) != 0)
			return rc;
		if (s && !valid_tags(s))
			return fail(err, errlen,
				    "tags: must be the series' canonical tags (sorted, ','-joined, printable, "
				    "no '|'), at most %d bytes", DTS_MAX_TAGS_LEN);
		snprintf(r->tags, sizeof(r->tags), "%s", s ? s : "");
	}

	r->for_n = 1;
	switch (r->kind) {
	case DTS_ALERT_ABOVE:
	case DTS_ALERT_BELOW: {
		json_t *lim = json_object_get(j, "limit");
		int st;

		if ((rc = get_str(j, "stat", &s, err, errlen)) != 0)
			return rc;
		if (!s)
			return fail(err, errlen,
				    "stat: required: avg, sum, count, min, max, bot10, top10, lst or rate");
		st = find_name(stat_names, DTS_ALERT_STAT_NUM, s);
		if (st < 0)
			return fail(err, errlen,
				    "stat: must be avg, sum, count, min, max, bot10, top10, lst or rate, got '%s'",
				    shown_text(s, shown));
		r->stat = (uint8_t)st;
		if ((rc = check_stat(r->stat, r->type, err, errlen)) != 0)
			return rc;
		if (!lim || json_is_null(lim))
			return fail(err, errlen, "limit: required: a number");
		if (!json_is_number(lim) || !isfinite(json_number_value(lim)))
			return fail(err, errlen, "limit: must be a number");
		r->limit = json_number_value(lim);
		if ((rc = get_uint(j, "window_min", 1, DTS_ALERT_WINDOW_MAX, 1, &r->window_min, err, errlen)) != 0)
			return rc;
		if ((rc = get_uint(j, "for", 1, DTS_ALERT_FOR_MAX, 1, &r->for_n, err, errlen)) != 0)
			return rc;
		break;
	}
	case DTS_ALERT_STOPPED_WORKING:
		if ((rc = get_uint(j, "after_min", 1, DTS_ALERT_AFTER_MIN_MAX, -1, &r->after_min, err, errlen)) != 0)
			return rc;
		break;
	default:
		if ((rc = get_uint(j, "after_s", DTS_ALERT_AFTER_S_MIN, DTS_ALERT_AFTER_S_MAX, -1, &r->after_s, err,
				   errlen)) != 0)
			return rc;
		break;
	}

	ch = json_object_get(j, "channels");
	if (ch && !json_is_null(ch)) {
		if (!json_is_array(ch) || json_array_size(ch) > DTS_ALERT_MAX_CHANNELS)
			return fail(err, errlen, "channels: must be an array of at most %d channels",
				    DTS_ALERT_MAX_CHANNELS);
		for (size_t i = 0; i < json_array_size(ch); i++) {
			rc = parse_channel(json_array_get(ch, i), i, channels_ok, &r->ch[i], err, errlen);
			if (rc)
				return rc;
		}
		r->nchannels = (unsigned)json_array_size(ch);
	}
	return 0;
}

/* ---- JSON and text --------------------------------------------------------------------------------------------- */

json_t *dts_alert_rule_json(const struct dts_alert_rule *r)
{
	json_t *o = json_object(), *chans = json_array();

	if (!o || !chans) {
		json_decref(o);
		json_decref(chans);
		return NULL;
	}
	if (r->id[0])
		json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "name", json_string(r->name));
	json_object_set_new(o, "kind", json_string(dts_alert_kind_name(r->kind)));
	json_object_set_new(o, "process", json_string(r->process));
	if (r->kind != DTS_ALERT_STOPPED_RESPONDING) {
		json_object_set_new(o, "counter", json_string(r->counter));
		json_object_set_new(o, "type", json_string(r->type < DTS_NTYPES ? type_names[r->type] : "?"));
		json_object_set_new(o, "tags", json_string(r->tags));
	}
	switch (r->kind) {
	case DTS_ALERT_ABOVE:
	case DTS_ALERT_BELOW:
		json_object_set_new(o, "stat", json_string(dts_alert_stat_name(r->stat)));
		json_object_set_new(o, "limit", json_real(r->limit));
		json_object_set_new(o, "window_min", json_integer(r->window_min));
		json_object_set_new(o, "for", json_integer(r->for_n));
		break;
	case DTS_ALERT_STOPPED_WORKING:
		json_object_set_new(o, "after_min", json_integer(r->after_min));
		break;
	default:
		json_object_set_new(o, "after_s", json_integer(r->after_s));
		break;
	}
	for (unsigned i = 0; i < r->nchannels; i++) {
		const struct dts_alert_channel *c = &r->ch[i];
		json_t *cj = json_pack("{s:s}", "type", dts_channel_name(c->type));

		if (c->type == DTS_CHAN_EMAIL) {
			json_t *to = json_array();
			char buf[DTS_ALERT_DEST_MAX + 1], *save = NULL;

			snprintf(buf, sizeof(buf), "%s", c->dest);
			for (char *a = strtok_r(buf, ",", &save); a; a = strtok_r(NULL, ",", &save))
				json_array_append_new(to, json_string(a));
			json_object_set_new(cj, "to", to);
		} else if (c->type == DTS_CHAN_WEBHOOK) {
			json_object_set_new(cj, "url", json_string(c->dest));
		} else {
			json_object_set_new(cj, "to", json_string(c->dest));
		}
		json_array_append_new(chans, cj);
	}
	json_object_set_new(o, "channels", chans);
	if (r->created_ms)
		json_object_set_new(o, "created_ms", json_integer(r->created_ms));
	return o;
}

/* The series as people read it: process/counter (type) and {tags} when there are any. */
static void series_text(const struct dts_alert_rule *r, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s (%s)%s%s%s", r->process, r->counter, r->type < DTS_NTYPES ? type_names[r->type] : "?",
		 r->tags[0] ? " {" : "", r->tags, r->tags[0] ? "}" : "");
}

void dts_alert_rule_describe(const struct dts_alert_rule *r, char *buf, size_t len)
{
	char series[DTS_MAX_NAME * 2 + DTS_MAX_TAGS_LEN + 16];

	series_text(r, series, sizeof(series));
	switch (r->kind) {
	case DTS_ALERT_ABOVE:
	case DTS_ALERT_BELOW: {
		char times[48] = "";

		if (r->for_n > 1)
			snprintf(times, sizeof(times), " for %u evaluations", r->for_n);
		snprintf(buf, len, "%s of %s over %u min %s %.15g%s", dts_alert_stat_name(r->stat), series,
			 r->window_min, r->kind == DTS_ALERT_ABOVE ? "above" : "below", r->limit, times);
		break;
	}
	case DTS_ALERT_STOPPED_WORKING:
		snprintf(buf, len, "%s received no data for %u min", series, r->after_min);
		break;
	default:
		snprintf(buf, len, "process %s sent no heartbeat for %u s", r->process, r->after_s);
		break;
	}
}

/* ---- the evaluation core --------------------------------------------------------------------------------------- */

void dts_alert_rt_init(struct dts_alert_rt *rt)
{
	memset(rt, 0, sizeof(*rt));
	rt->state = DTS_ALERT_OK;
	rt->value = NAN;
}

static void enter(struct dts_alert_rt *rt, unsigned state, int64_t now_ms)
{
	rt->state = (uint8_t)state;
	rt->since_ms = now_ms;
}

bool dts_alert_step(const struct dts_alert_rule *r, struct dts_alert_rt *rt, const struct dts_alert_obs *obs,
		    int64_t now_ms, const struct dts_alert_timing *t, struct dts_alert_change *out)
{
	bool cond = false;
	double value = NAN;
	unsigned for_n = r->for_n ? r->for_n : 1;

	switch (r->kind) {
	case DTS_ALERT_ABOVE:
	case DTS_ALERT_BELOW:
		if (obs->has_value) {
			value = obs->value;
			cond = r->kind == DTS_ALERT_ABOVE ? value > r->limit : value < r->limit;
			rt->value_ms = now_ms;
		} else if (rt->state != DTS_ALERT_OK && rt->state != DTS_ALERT_RESOLVED &&
			   now_ms - rt->value_ms < (int64_t)t->nodata_hold_s * 1000) {
			/* No data is no evidence either way: keep the state (and the streak) for a while. */
			out->from = out->to = rt->state;
			out->notice = DTS_NOTICE_NONE;
			out->value = NAN;
			out->fired_ms = rt->fired_ms;
			return false;
		}
		break;
	case DTS_ALERT_STOPPED_WORKING:
	case DTS_ALERT_STOPPED_RESPONDING: {
		int64_t after_ms = r->kind == DTS_ALERT_STOPPED_WORKING
					   ? (int64_t)r->after_min * (t->minute_s ? t->minute_s : 60) * 1000
					   : (int64_t)r->after_s * 1000;

		if (obs->last_ms > rt->last_data_ms)
			rt->last_data_ms = obs->last_ms;
		if (rt->last_data_ms > 0) {
			value = (double)(now_ms - rt->last_data_ms) / 1000.0;
			cond = now_ms - rt->last_data_ms >= after_ms;
		}
		for_n = 1;
		break;
	}
	default:
		break;
	}

	out->from = rt->state;
	out->notice = DTS_NOTICE_NONE;
	out->value = value;
	rt->value = value;
	if (cond) {
		if (rt->streak < UINT32_MAX)
			rt->streak++;
		if (rt->state == DTS_ALERT_FIRING) {
			if (t->repeat_s && now_ms - rt->notified_ms >= (int64_t)t->repeat_s * 1000) {
				out->notice = DTS_NOTICE_REPEAT;
				rt->notified_ms = now_ms;
			}
		} else if (rt->streak >= for_n) {
			enter(rt, DTS_ALERT_FIRING, now_ms);
			rt->fired_ms = now_ms;
			rt->notified_ms = now_ms;
			out->notice = DTS_NOTICE_FIRING;
		} else if (rt->state != DTS_ALERT_PENDING) {
			enter(rt, DTS_ALERT_PENDING, now_ms);
		}
	} else {
		rt->streak = 0;
		switch (rt->state) {
		case DTS_ALERT_PENDING:
			enter(rt, DTS_ALERT_OK, now_ms);
			break;
		case DTS_ALERT_FIRING:
			enter(rt, DTS_ALERT_RESOLVED, now_ms);
			out->notice = DTS_NOTICE_RESOLVED;
			break;
		case DTS_ALERT_RESOLVED:
			if (now_ms - rt->since_ms >= (int64_t)t->resolved_hold_s * 1000)
				enter(rt, DTS_ALERT_OK, now_ms);
			break;
		default:
			break;
		}
	}
	out->to = rt->state;
	out->fired_ms = rt->fired_ms;
	return out->from != out->to || out->notice != DTS_NOTICE_NONE;
}

/* ---- the alert engine ------------------------------------------------------------------------------------------ */

struct entry {
	struct dts_alert_rule r;
	struct dts_alert_rt rt;
	uint64_t serial; /* increases with every rule added: list order = serial order */
};

struct dts_alerts {
	struct dts_alerts_cfg cfg;
	/* The rules, in serial order. Written by the API (add, remove) and the evaluator (rt write-back) under lock. */
	pthread_mutex_t lock;
	struct entry **rules;
	size_t n, cap;
	uint64_t next_serial;
	pthread_mutex_t round_mu; /* one round at a time, and no removal during a round */

	/* Evaluator thread. */
	pthread_t thread;
	bool started;
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	bool stop;

	/* Round scratch (evaluator only). */
	struct dts_alert_rule *rr;
	struct dts_alert_rt *rrt;
	uint64_t *rserial;
	struct dts_alert_obs *robs;
	size_t rcap;

	/* Counters: single writer each (the evaluator; rules by whoever holds lock), relaxed atomics. */
	_Atomic uint64_t rounds, round_ns_last, nrules, firing, history_errors, batches;
	_Atomic uint64_t transitions[DTS_ALERT_STATE_COUNT];
};

static int64_t wall_ms(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_of(const struct dts_alerts *a)
{
	return a->cfg.clock(a->cfg.clock_ctx);
}

static void default_observe(void *ctx, const struct dts_alert_rule *rules, size_t n, int64_t now_ms,
			    struct dts_alert_obs *obs);

void dts_alerts_cfg_defaults(struct dts_alerts_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->eval_s = 5;
	cfg->grace_s = 10;
	cfg->timing.minute_s = 60;
	cfg->timing.repeat_s = 3600;
	cfg->timing.resolved_hold_s = DTS_ALERT_RESOLVED_HOLD_S;
	cfg->timing.nodata_hold_s = DTS_ALERT_NODATA_HOLD_S;
	cfg->max_rules = 100;
	cfg->channels_ok = DTS_CHAN_ALL;
}

static int rule_key(char *buf, size_t len, const char *user, const char *id)
{
	return snprintf(buf, len, "alert/%s/%s", user, id) >= (int)len ? -ENOSPC : 0;
}

static int hist_prefix(char *buf, size_t len, const char *user, const char *id)
{
	return snprintf(buf, len, "alerthist/%s/%s/", user, id) >= (int)len ? -ENOSPC : 0;
}

/* Insert e at the end of the list (serial order). Caller holds lock. */
static int list_append(struct dts_alerts *a, struct entry *e)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		struct entry **nr = realloc(a->rules, cap * sizeof(*nr));

		if (!nr)
			return -ENOMEM;
		a->rules = nr;
		a->cap = cap;
	}
	e->serial = a->next_serial++;
	a->rules[a->n++] = e;
	atomic_store_explicit(&a->nrules, a->n, memory_order_relaxed);
	return 0;
}

/* ---- loading --------------------------------------------------------------------------------------------------- */

struct load_ctx {
	struct dts_alerts *a;
	int rc;
};

/* Split "alert/<user>/<id>" (or the part after "alerthist/") into user and id; false when malformed. */
static bool split_user_id(const char *p, size_t len, char *user, char *id, const char **rest)
{
	const char *slash = memchr(p, '/', len);
	size_t ul, il;
	const char *idp, *end;

	if (!slash)
		return false;
	ul = (size_t)(slash - p);
	idp = slash + 1;
	end = memchr(idp, '/', len - ul - 1);
	il = end ? (size_t)(end - idp) : len - ul - 1;
	if (ul == 0 || ul > DTS_MAX_USER || il != DTS_ALERT_ID_LEN)
		return false;
	memcpy(user, p, ul);
	user[ul] = '\0';
	memcpy(id, idp, il);
	id[il] = '\0';
	if (rest)
		*rest = end ? end + 1 : NULL;
	return true;
}

static int load_rule(void *arg, const char *key, size_t key_len, const char *val, size_t val_len)
{
	struct load_ctx *lc = arg;
	struct entry *e = calloc(1, sizeof(*e));
	char user[DTS_MAX_USER + 1], id[DTS_ALERT_ID_LEN + 1], err[256];
	json_error_t je;
	json_t *j;

	if (!e) {
		lc->rc = -ENOMEM;
		return 1;
	}
	if (!split_user_id(key + 6, key_len - 6, user, id, NULL)) {
		dts_warn("alerts", "meta key '%.*s' is not alert/<user>/<id>: skipped", (int)key_len, key);
		free(e);
		return 0;
	}
	j = json_loadb(val, val_len, 0, &je);
	if (!j || dts_alert_rule_parse(j, DTS_CHAN_ALL, &e->r, err, sizeof(err)) != 0) {
		dts_err("alerts", "rule %s of user %s in the store cannot be read (%s): skipped", id, user,
			j ? err : je.text);
		json_decref(j);
		free(e);
		return 0;
	}
	snprintf(e->r.id, sizeof(e->r.id), "%s", id);
	snprintf(e->r.user, sizeof(e->r.user), "%s", user);
	e->r.created_ms = json_integer_value(json_object_get(j, "created_ms"));
	json_decref(j);
	dts_alert_rt_init(&e->rt);
	if (list_append(lc->a, e) != 0) {
		free(e);
		lc->rc = -ENOMEM;
		return 1;
	}
	return 0;
}

/* Find user's rule id in the list (caller holds lock, or is the only thread). */
static struct entry *find_rule(struct dts_alerts *a, const char *user, const char *id, size_t *idx)
{
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->rules[i]->r.id, id) == 0 && strcmp(a->rules[i]->r.user, user) == 0) {
			if (idx)
				*idx = i;
			return a->rules[i];
		}
	return NULL;
}

/* Every history record, in key order: count per rule, and the newest one restores the rule's state. */
static int load_history(void *arg, const char *key, size_t key_len, const char *val, size_t val_len)
{
	struct load_ctx *lc = arg;
	char user[DTS_MAX_USER + 1], id[DTS_ALERT_ID_LEN + 1];
	const char *ts;
	struct entry *e;
	json_t *j;
	int to;

	if (!split_user_id(key + 10, key_len - 10, user, id, &ts) || !ts)
		return 0;
	e = find_rule(lc->a, user, id, NULL);
	if (!e)
		return 0; /* a rule removed while its history was being deleted (crash): harmless, never shown */
	e->rt.history_n++;
	j = json_loadb(val, val_len, 0, NULL);
	to = dts_alert_state_parse(json_string_value(json_object_get(j, "to")));
	if (to >= 0) {
		e->rt.state = (uint8_t)to;
		e->rt.since_ms = json_integer_value(json_object_get(j, "ts_ms"));
		e->rt.value = json_number_value(json_object_get(j, "value"));
		if (!json_is_number(json_object_get(j, "value")))
			e->rt.value = NAN;
		if (to == DTS_ALERT_FIRING) {
			/* Still firing after a restart: no new "firing" notification; the repeat interval counts
			 * from the time it fired. */
			e->rt.fired_ms = e->rt.since_ms;
			e->rt.notified_ms = e->rt.since_ms;
			e->rt.streak = e->r.for_n;
		} else {
			e->rt.streak = 0;
		}
	}
	json_decref(j);
	return 0;
}

struct dts_alerts *dts_alerts_open(const struct dts_alerts_cfg *cfg, char *err, size_t errlen)
{
	struct dts_alerts *a;
	struct load_ctx lc;
	char merr[256];
	long n;

	if (!cfg->st || cfg->eval_s == 0) {
		snprintf(err, errlen, "alerts: a store and eval_s > 0 are required");
		errno = EINVAL;
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "alerts: out of memory");
		errno = ENOMEM;
		return NULL;
	}
	a->cfg = *cfg;
	if (!a->cfg.clock)
		a->cfg.clock = wall_ms;
	if (!a->cfg.observe) {
		a->cfg.observe = default_observe;
		a->cfg.observe_ctx = a;
	}
	if (!a->cfg.timing.minute_s)
		a->cfg.timing.minute_s = 60;
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->round_mu, NULL);
	pthread_mutex_init(&a->stop_mu, NULL);
	pthread_cond_init(&a->stop_cv, NULL);
	a->next_serial = 1;

	lc = (struct load_ctx){ .a = a };
	n = dts_meta_scan(a->cfg.st, "alert/", load_rule, &lc, merr, sizeof(merr));
	if (n >= 0 && lc.rc == 0)
		n = dts_meta_scan(a->cfg.st, "alerthist/", load_history, &lc, merr, sizeof(merr));
	if (n < 0 || lc.rc != 0) {
		snprintf(err, errlen, "alerts: cannot load the rules from the store: %s",
			 n < 0 ? merr : strerror(-lc.rc));
		dts_alerts_close(a);
		errno = n < 0 ? EIO : -lc.rc;
		return NULL;
	}
	for (size_t i = 0; i < a->n; i++) {
		a->rules[i]->rt.value_ms = now_of(a); /* the current state refills after a restart: give it time */
		if (a->rules[i]->rt.state == DTS_ALERT_FIRING)
			atomic_fetch_add_explicit(&a->firing, 1, memory_order_relaxed);
	}
	dts_info("alerts", "%zu alert rule%s loaded", a->n, a->n == 1 ? "" : "s");
	return a;
}

/* ---- API ------------------------------------------------------------------------------------------------------- */

static void random_id(char *out)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[DTS_ALERT_ID_LEN / 2];
	size_t got = 0;

	while (got < sizeof(b)) {
		ssize_t r = getrandom(b + got, sizeof(b) - got, 0);

		if (r > 0)
			got += (size_t)r;
		else if (r < 0 && errno != EINTR)
			break; /* defensive: getrandom on Linux >= 3.17 does not fail for 6 bytes; fall back below */
	}
	if (got < sizeof(b)) {
		uint64_t x = dts_hash64(&got, sizeof(got), (uint64_t)wall_ms(NULL) ^ (uint64_t)(uintptr_t)out);

		memcpy(b, &x, sizeof(b));
	}
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[DTS_ALERT_ID_LEN] = '\0';
}

static json_t *rule_with_state(const struct entry *e)
{
	json_t *o = dts_alert_rule_json(&e->r);

	if (!o)
		return NULL;
	json_object_set_new(o, "state", json_string(dts_alert_state_name(e->rt.state)));
	json_object_set_new(o, "since_ms", json_integer(e->rt.since_ms ? e->rt.since_ms : e->r.created_ms));
	json_object_set_new(o, "value", isfinite(e->rt.value) ? json_real(e->rt.value) : json_null());
	return o;
}

int dts_alerts_add(struct dts_alerts *a, const char *user, const json_t *in, json_t **out, char *err, size_t errlen)
{
	struct entry *e = calloc(1, sizeof(*e));
	char key[META_KEY_MAX], merr[256];
	size_t have = 0;
	json_t *stored;
	char *text;
	int rc;

	*out = NULL;
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = dts_alert_rule_parse(in, a->cfg.channels_ok, &e->r, err, errlen);
	if (rc) {
		free(e);
		return rc;
	}
	snprintf(e->r.user, sizeof(e->r.user), "%s", user);
	e->r.created_ms = now_of(a);
	dts_alert_rt_init(&e->rt);

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n; i++)
		have += strcmp(a->rules[i]->r.user, user) == 0;
	do
		random_id(e->r.id);
	while (find_rule(a, user, e->r.id, NULL));
	pthread_mutex_unlock(&a->lock);
	if (have >= a->cfg.max_rules) {
		snprintf(err, errlen, "rules: this user already has %zu rules, the most allowed (alert_max_rules)",
			 have);
		free(e);
		return -ENOSPC;
	}

	stored = dts_alert_rule_json(&e->r);
	if (stored) {
		json_object_set_new(stored, "v", json_integer(1));
		json_object_set_new(stored, "user", json_string(user));
	}
	text = stored ? json_dumps(stored, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
	json_decref(stored);
	if (!text || rule_key(key, sizeof(key), user, e->r.id) != 0) {
		free(text);
		free(e);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = dts_meta_put(a->cfg.st, key, text, strlen(text), merr, sizeof(merr));
	free(text);
	if (rc) {
		snprintf(err, errlen, "store: %s", merr);
		free(e);
		return rc == -EROFS ? -EIO : rc;
	}
	pthread_mutex_lock(&a->lock);
	rc = list_append(a, e);
	if (rc == 0)
		*out = rule_with_state(e);
	pthread_mutex_unlock(&a->lock);
	if (rc) {
		dts_meta_delete(a->cfg.st, key, merr, sizeof(merr));
		free(e);
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	dts_info("alerts", "user %s added rule %s (%s)", user, e->r.id, dts_alert_kind_name(e->r.kind));
	return 0;
}

json_t *dts_alerts_list(struct dts_alerts *a, const char *user)
{
	json_t *arr = json_array();

	if (!arr)
		return NULL;
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->rules[i]->r.user, user) == 0)
			json_array_append_new(arr, rule_with_state(a->rules[i]));
	pthread_mutex_unlock(&a->lock);
	return json_pack("{s:o}", "rules", arr);
}

struct key_list {
	char **keys;
	size_t n, cap;
	int rc;
	size_t limit; /* stop after this many (0 = all) */
	json_t *out; /* history: records collected */
};

static int collect_key(void *arg, const char *key, size_t key_len, const char *val, size_t val_len)
{
	struct key_list *kl = arg;

	(void)val, (void)val_len;
	if (kl->n == kl->cap) {
		size_t cap = kl->cap ? kl->cap * 2 : 64;
		char **nk = realloc(kl->keys, cap * sizeof(*nk));

		if (!nk) {
			kl->rc = -ENOMEM;
			return 1;
		}
		kl->keys = nk;
		kl->cap = cap;
	}
	kl->keys[kl->n] = strndup(key, key_len);
	if (!kl->keys[kl->n]) {
		kl->rc = -ENOMEM;
		return 1;
	}
	kl->n++;
	return kl->limit && kl->n >= kl->limit;
}

static void key_list_free(struct key_list *kl)
{
	for (size_t i = 0; i < kl->n; i++)
		free(kl->keys[i]);
	free(kl->keys);
}

/* Delete the oldest history records of a rule so that at most keep remain (keep 0: all). Returns 0 or -errno. */
static int prune_history(struct dts_alerts *a, const char *user, const char *id, size_t keep, size_t have)
{
	struct key_list kl = { .limit = have > keep ? have - keep : 0 };
	char prefix[META_KEY_MAX], merr[256];
	long n;
	int rc = 0;

	if (keep && have <= keep)
		return 0;
	if (hist_prefix(prefix, sizeof(prefix), user, id) != 0)
		return -ENOSPC;
	n = dts_meta_scan(a->cfg.st, prefix, collect_key, &kl, merr, sizeof(merr));
	if (n < 0 || kl.rc) {
		key_list_free(&kl);
		return n < 0 ? (int)n : kl.rc;
	}
	for (size_t i = 0; i < kl.n && rc == 0; i++)
		rc = dts_meta_delete(a->cfg.st, kl.keys[i], merr, sizeof(merr));
	key_list_free(&kl);
	return rc;
}

int dts_alerts_remove(struct dts_alerts *a, const char *user, const char *id, char *err, size_t errlen)
{
	char key[META_KEY_MAX], merr[256];
	struct entry *e;
	size_t idx;
	int rc;

	if (strlen(id) != DTS_ALERT_ID_LEN || strlen(user) > DTS_MAX_USER)
		return -ENOENT;
	pthread_mutex_lock(&a->round_mu);
	pthread_mutex_lock(&a->lock);
	e = find_rule(a, user, id, &idx);
	pthread_mutex_unlock(&a->lock);
	if (!e) {
		pthread_mutex_unlock(&a->round_mu);
		return -ENOENT;
	}
	rule_key(key, sizeof(key), user, id);
	rc = dts_meta_delete(a->cfg.st, key, merr, sizeof(merr));
	if (rc) {
		pthread_mutex_unlock(&a->round_mu);
		snprintf(err, errlen, "store: %s", merr);
		return -EIO;
	}
	pthread_mutex_lock(&a->lock);
	memmove(&a->rules[idx], &a->rules[idx + 1], (a->n - idx - 1) * sizeof(a->rules[0]));
	a->n--;
	atomic_store_explicit(&a->nrules, a->n, memory_order_relaxed);
	if (e->rt.state == DTS_ALERT_FIRING)
		atomic_fetch_sub_explicit(&a->firing, 1, memory_order_relaxed);
	pthread_mutex_unlock(&a->lock);
	/* The rule is gone; its history goes too (a failure leaves unreachable records: logged, not an API error). */
	if (prune_history(a, user, id, 0, 0) != 0)
		dts_warn("alerts", "history of removed rule %s of user %s could not be deleted completely", id, user);
	pthread_mutex_unlock(&a->round_mu);
	dts_info("alerts", "user %s removed rule %s", user, id);
	free(e);
	return 0;
}

static int collect_history(void *arg, const char *key, size_t key_len, const char *val, size_t val_len)
{
	struct key_list *kl = arg;
	json_t *j = json_loadb(val, val_len, 0, NULL);

	(void)key, (void)key_len;
	if (!j)
		return 0; /* not ours to repair; skip a damaged record */
	json_object_del(j, "v");
	json_array_insert_new(kl->out, 0, j); /* keys ascend in time: inserting first gives newest first */
	if (kl->limit && json_array_size(kl->out) > kl->limit)
		json_array_remove(kl->out, json_array_size(kl->out) - 1);
	return 0;
}

int dts_alerts_history(struct dts_alerts *a, const char *user, const char *id, unsigned limit, json_t **out)
{
	char prefix[META_KEY_MAX], merr[256];
	struct key_list kl = { .limit = limit };
	bool found;
	long n;

	*out = NULL;
	if (strlen(id) != DTS_ALERT_ID_LEN || strlen(user) > DTS_MAX_USER)
		return -ENOENT;
	pthread_mutex_lock(&a->lock);
	found = find_rule(a, user, id, NULL) != NULL;
	pthread_mutex_unlock(&a->lock);
	if (!found)
		return -ENOENT;
	hist_prefix(prefix, sizeof(prefix), user, id);
	kl.out = json_array();
	if (!kl.out)
		return -ENOMEM;
	n = dts_meta_scan(a->cfg.st, prefix, collect_history, &kl, merr, sizeof(merr));
	if (n < 0) {
		json_decref(kl.out);
		return -EIO;
	}
	*out = json_pack("{s:o}", "history", kl.out);
	return *out ? 0 : -ENOMEM;
}

/* ---- observing: the engine's current state and the store ------------------------------------------------------- */

/* Identity hash of a series rule (process, counter, tags, type) or of a process (stopped_responding). */
static uint64_t series_hash(const char *user, const char *process, const char *counter, const char *tags,
			    unsigned type)
{
	uint64_t h = dts_hash64(user, strlen(user) + 1, 0x616c657274ULL);

	h = dts_hash64_more(h, process, strlen(process) + 1);
	h = dts_hash64_more(h, counter, strlen(counter) + 1);
	h = dts_hash64_more(h, tags, strlen(tags) + 1);
	return dts_hash64_more(h, &type, sizeof(type));
}

static uint64_t process_hash(const char *user, const char *process)
{
	return dts_hash64_more(dts_hash64(user, strlen(user) + 1, 0x70726f63ULL), process, strlen(process));
}

struct hidx {
	uint64_t h;
	size_t i; /* rule index */
};

static int hidx_cmp(const void *x, const void *y)
{
	const struct hidx *a = x, *b = y;

	return a->h < b->h ? -1 : a->h > b->h;
}

struct walk {
	const struct dts_alert_rule *rules;
	struct dts_alert_obs *obs;
	bool *seen;
	struct hidx *series, *procs;
	size_t nseries, nprocs;
	int64_t now_ms;
};

/*
 * Whether a threshold rule reads the engine's live state (window_min 1) or the store's closed minutes. The live state
 * keeps per 5-second slot only what each type publishes (docs/architecture.md, "Current state"): no min, max or last
 * value of a counter's increments, and no last value of a timer. Rules on those stats with window_min 1 read the last
 * closed minute instead (docs/alerts.md).
 */
static bool reads_live_state(const struct dts_alert_rule *r)
{
	if (r->window_min > 1)
		return false;
	if (r->type == DTS_COUNTER)
		return r->stat != DTS_STAT_MIN && r->stat != DTS_STAT_MAX && r->stat != DTS_STAT_LST;
	return r->type != DTS_TIMER || r->stat != DTS_STAT_LST;
}

/* The statistic of a current state; false when it has no value (see struct dts_alert_obs). */
static bool current_value(const struct dts_alert_rule *r, const struct dts_current *c, double *out)
{
	bool data = c->count > 0;

	switch (r->stat) {
	case DTS_STAT_AVG:
		*out = c->avg;
		break;
	case DTS_STAT_SUM:
		*out = data ? c->sum : 0;
		return true;
	case DTS_STAT_COUNT:
		*out = data ? c->count : 0;
		return true;
	case DTS_STAT_RATE:
		*out = data ? c->rate : 0;
		return true;
	case DTS_STAT_MIN:
		*out = c->min;
		break;
	case DTS_STAT_MAX:
		*out = c->max;
		break;
	case DTS_STAT_BOT10:
		*out = c->bot10;
		break;
	case DTS_STAT_TOP10:
		*out = c->top10;
		break;
	default:
		*out = c->last;
		/* A gauge keeps its value while nobody sets it: its last value is the value even in an empty window. */
		return isfinite(*out) && (data || r->type == DTS_GAUGE);
	}
	return data && isfinite(*out);
}

static const struct hidx *hidx_find(const struct hidx *arr, size_t n, uint64_t h)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (arr[mid].h < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && arr[lo].h == h ? &arr[lo] : NULL;
}

/* Under the RCU read side (dts_merger_read_current): match one live series against the user's rules. */
static int walk_series(void *arg, const struct dts_series_view *v)
{
	struct walk *w = arg;
	uint64_t h = series_hash(v->user, v->process, v->counter, v->tags, v->type);

	for (const struct hidx *p = hidx_find(w->series, w->nseries, h); p && p < w->series + w->nseries && p->h == h;
	     p++) {
		const struct dts_alert_rule *r = &w->rules[p->i];
		struct dts_alert_obs *o = &w->obs[p->i];

		if (r->type != v->type || strcmp(r->process, v->process) || strcmp(r->counter, v->counter) ||
		    strcmp(r->tags, v->tags) || strcmp(r->user, v->user))
			continue;
		w->seen[p->i] = true;
		if (!v->cur)
			continue;
		if (r->kind == DTS_ALERT_STOPPED_WORKING) {
			/* The live state knows data by 5-second slot: the newest data came before that slot's end. Its
			 * start would age the data by up to 5 s more, and with the 5 s publication delay a rule could see
			 * up to 10 s without data while data keeps coming. */
			int64_t end_ms = (v->cur->last_seen_s + DTS_SLOT_SECONDS) * 1000;

			o->last_ms = v->cur->last_seen_s > 0 ? (end_ms < w->now_ms ? end_ms : w->now_ms) : 0;
		}
		else if (reads_live_state(r))
			o->has_value = current_value(r, v->cur, &o->value);
	}
	return 0;
}

/* Under the RCU read side (dts_merger_read_processes): the newest heartbeat of a process named by a rule. */
static int walk_process(void *arg, const struct dts_process *pv)
{
	struct walk *w = arg;
	uint64_t h = process_hash(pv->user, pv->process);

	for (const struct hidx *p = hidx_find(w->procs, w->nprocs, h); p && p < w->procs + w->nprocs && p->h == h; p++)
		if (strcmp(w->rules[p->i].process, pv->process) == 0 && strcmp(w->rules[p->i].user, pv->user) == 0 &&
		    pv->last_heard_ms > w->obs[p->i].last_ms)
			w->obs[p->i].last_ms = pv->last_heard_ms;
	return 0;
}

struct store_acc {
	struct dts_agg agg;
	struct dts_sketch sk;
	int64_t last_t; /* start of the newest minute with data */
	int rc;
};

static int store_point(void *arg, int64_t t, const struct dts_stored *v)
{
	struct store_acc *acc = arg;

	if (!v || v->agg.count <= 0)
		return 0;
	dts_agg_merge(&acc->agg, &v->agg);
	if (v->type == DTS_TIMER && acc->rc == 0)
		acc->rc = dts_sketch_merge(&acc->sk, &v->sketch);
	acc->last_t = t;
	return 0;
}

/* Read [from_s, to_s) of the rule's series from the store into acc. Returns the points read or -errno. */
static long store_window(struct dts_alerts *a, const struct dts_alert_rule *r, int64_t from_s, int64_t to_s,
			 struct store_acc *acc)
{
	char series[DTS_STORAGE_SERIES_MAX + 1];
	struct dts_series_id id = {
		.user = r->user, .process = r->process, .counter = r->counter, .tags = r->tags, .type = r->type,
	};

	dts_agg_init(&acc->agg);
	dts_sketch_init(&acc->sk);
	acc->last_t = 0;
	acc->rc = 0;
	if (dts_storage_series_encode(series, sizeof(series), &id) < 0)
		return -EINVAL;
	return dts_storage_read(a->cfg.st, DTS_RES_MINUTE, series, from_s, to_s, store_point, acc);
}

/* The statistic over the last window_min closed minutes of the store. */
static void observe_store_window(struct dts_alerts *a, const struct dts_alert_rule *r, int64_t now_ms,
				 struct dts_alert_obs *o)
{
	int64_t last_closed = (now_ms / 1000 - (int64_t)a->cfg.grace_s) / 60 - 1; /* minute number */
	int64_t from_s = (last_closed - (int64_t)r->window_min + 1) * 60, to_s = (last_closed + 1) * 60;
	struct store_acc acc;
	bool data;
	double v = NAN;

	if (store_window(a, r, from_s, to_s, &acc) < 0 || acc.rc) {
		dts_sketch_free(&acc.sk);
		o->has_value = false; /* the store failed: unknown, not zero */
		return;
	}
	data = acc.agg.count > 0;
	switch (r->stat) {
	case DTS_STAT_AVG:
		v = data ? acc.agg.sum / acc.agg.count : NAN;
		break;
	case DTS_STAT_SUM:
		v = data ? acc.agg.sum : 0;
		break;
	case DTS_STAT_COUNT:
		v = data ? acc.agg.count : 0;
		break;
	case DTS_STAT_RATE:
		v = data ? acc.agg.sum / ((double)r->window_min * 60) : 0;
		break;
	case DTS_STAT_MIN:
		v = data ? acc.agg.min : NAN;
		break;
	case DTS_STAT_MAX:
		v = data ? acc.agg.max : NAN;
		break;
	case DTS_STAT_BOT10:
		v = data ? dts_sketch_quantile(&acc.sk, 0.1) : NAN;
		break;
	case DTS_STAT_TOP10:
		v = data ? dts_sketch_quantile(&acc.sk, 0.9) : NAN;
		break;
	default:
		v = data ? acc.agg.lst : NAN;
		break;
	}
	dts_sketch_free(&acc.sk);
	o->has_value = isfinite(v);
	o->value = v;
}

/* stopped_working for a series that is not live: the end of its newest stored minute, within the lookback. */
static void observe_store_last(struct dts_alerts *a, const struct dts_alert_rule *r, int64_t now_ms,
			       struct dts_alert_obs *o)
{
	int64_t look = (int64_t)r->after_min * a->cfg.timing.minute_s + 3600;
	struct store_acc acc;

	if (look > STORE_LOOKBACK_MAX_S)
		look = STORE_LOOKBACK_MAX_S;
	if (store_window(a, r, now_ms / 1000 - look, now_ms / 1000 + 60, &acc) > 0 && acc.agg.count > 0) {
		int64_t end_ms = (acc.last_t + 60) * 1000;

		o->last_ms = end_ms < now_ms ? end_ms : now_ms;
	}
	dts_sketch_free(&acc.sk);
}

/*
 * One walk of the live series and one of the process states for all rules of all users (the engine's readers walk
 * the whole map whatever the user filter, so one walk per round beats one per user), then the store where the live
 * state cannot answer.
 */
static void default_observe(void *ctx, const struct dts_alert_rule *rules, size_t n, int64_t now_ms,
			    struct dts_alert_obs *obs)
{
	struct dts_alerts *a = ctx;
	struct hidx *series = malloc((n ? n : 1) * sizeof(*series)), *procs = malloc((n ? n : 1) * sizeof(*procs));
	bool *seen = calloc(n ? n : 1, sizeof(*seen));
	struct walk w = { .rules = rules, .obs = obs, .seen = seen, .series = series, .procs = procs, .now_ms = now_ms };

	if (!series || !procs || !seen) {
		free(series);
		free(procs);
		free(seen);
		return; /* out of memory: every observation stays "no data"; the next round tries again */
	}
	for (size_t i = 0; i < n; i++) {
		const struct dts_alert_rule *r = &rules[i];

		if (r->kind == DTS_ALERT_STOPPED_RESPONDING)
			procs[w.nprocs++] = (struct hidx){ process_hash(r->user, r->process), i };
		else if (r->kind == DTS_ALERT_STOPPED_WORKING || reads_live_state(r))
			series[w.nseries++] =
				(struct hidx){ series_hash(r->user, r->process, r->counter, r->tags, r->type), i };
	}
	qsort(series, w.nseries, sizeof(*series), hidx_cmp);
	qsort(procs, w.nprocs, sizeof(*procs), hidx_cmp);
	if (w.nseries && a->cfg.merger)
		dts_merger_read_current(a->cfg.merger, NULL, walk_series, &w);
	if (w.nprocs && a->cfg.merger)
		dts_merger_read_processes(a->cfg.merger, NULL, walk_process, &w);
	for (size_t i = 0; i < n; i++) {
		const struct dts_alert_rule *r = &rules[i];
		bool threshold = r->kind == DTS_ALERT_ABOVE || r->kind == DTS_ALERT_BELOW;

		if (threshold && !reads_live_state(r))
			observe_store_window(a, r, now_ms, &obs[i]);
		else if (threshold && !seen[i] &&
			 (r->stat == DTS_STAT_SUM || r->stat == DTS_STAT_COUNT || r->stat == DTS_STAT_RATE))
			obs[i] = (struct dts_alert_obs){ .has_value = true, .value = 0 }; /* not live: nothing came */
		else if (r->kind == DTS_ALERT_STOPPED_WORKING && !seen[i])
			observe_store_last(a, r, now_ms, &obs[i]);
	}
	free(series);
	free(procs);
	free(seen);
}

/* ---- the round ------------------------------------------------------------------------------------------------- */

struct round_change {
	size_t i; /* index into the round arrays */
	struct dts_alert_change c;
};

static int change_user_cmp(const void *x, const void *y, void *arg)
{
	const struct round_change *a = x, *b = y;
	const struct dts_alert_rule *rr = arg;
	int c = strcmp(rr[a->i].user, rr[b->i].user);

	return c ? c : (a->i > b->i) - (a->i < b->i);
}

/* The round's copies are sorted by user, serial order within a user: one engine walk and one batch per user. */
struct round_sort {
	struct dts_alert_rule r;
	struct dts_alert_rt rt;
	uint64_t serial;
};

static int round_sort_cmp(const void *x, const void *y)
{
	const struct round_sort *a = x, *b = y;
	int c = strcmp(a->r.user, b->r.user);

	return c ? c : (a->serial > b->serial) - (a->serial < b->serial);
}

/* Grow a realloc'd array to cap elements of size sz; false (array unchanged) on out of memory. */
static bool grow(void **p, size_t cap, size_t sz)
{
	void *np = realloc(*p, cap * sz);

	if (!np)
		return false;
	*p = np;
	return true;
}

static int round_reserve(struct dts_alerts *a, size_t n)
{
	size_t cap = n + n / 2 + 8;

	if (n <= a->rcap)
		return 0;
	if (!grow((void **)&a->rr, cap, sizeof(*a->rr)) || !grow((void **)&a->rrt, cap, sizeof(*a->rrt)) ||
	    !grow((void **)&a->rserial, cap, sizeof(*a->rserial)) || !grow((void **)&a->robs, cap, sizeof(*a->robs)))
		return -ENOMEM; /* the arrays that grew keep working at the old capacity */
	a->rcap = cap;
	return 0;
}

/* Copy the rules and states, grouped by user. Returns the count, or -ENOMEM. */
static long round_copy(struct dts_alerts *a)
{
	struct round_sort *tmp;
	size_t n;

	pthread_mutex_lock(&a->lock);
	n = a->n;
	tmp = malloc((n ? n : 1) * sizeof(*tmp));
	if (!tmp || round_reserve(a, n) != 0) {
		pthread_mutex_unlock(&a->lock);
		free(tmp);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		tmp[i].r = a->rules[i]->r;
		tmp[i].rt = a->rules[i]->rt;
		tmp[i].serial = a->rules[i]->serial;
	}
	pthread_mutex_unlock(&a->lock);
	qsort(tmp, n, sizeof(*tmp), round_sort_cmp);
	for (size_t i = 0; i < n; i++) {
		a->rr[i] = tmp[i].r;
		a->rrt[i] = tmp[i].rt;
		a->rserial[i] = tmp[i].serial;
	}
	free(tmp);
	return (long)n;
}

/* Append one state change to the rule's history; prune the oldest beyond DTS_ALERT_HISTORY_MAX. */
static void record_history(struct dts_alerts *a, const struct dts_alert_rule *r, struct dts_alert_rt *rt,
			   const struct dts_alert_change *c, int64_t now_ms)
{
	char key[META_KEY_MAX], merr[256];
	json_t *j = json_pack("{s:i,s:I,s:s,s:s,s:o}", "v", 1, "ts_ms", (json_int_t)now_ms, "from",
			      dts_alert_state_name(c->from), "to", dts_alert_state_name(c->to), "value",
			      isfinite(c->value) ? json_real(c->value) : json_null());
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;

	json_decref(j);
	if (!text || snprintf(key, sizeof(key), "alerthist/%s/%s/%0*" PRId64, r->user, r->id, HIST_TS_DIGITS,
			      now_ms) >= (int)sizeof(key) ||
	    dts_meta_put(a->cfg.st, key, text, strlen(text), merr, sizeof(merr)) != 0) {
		atomic_fetch_add_explicit(&a->history_errors, 1, memory_order_relaxed);
		dts_warn("alerts", "history of rule %s of user %s: cannot store %s -> %s", r->id, r->user,
			 dts_alert_state_name(c->from), dts_alert_state_name(c->to));
		free(text);
		return;
	}
	free(text);
	rt->history_n++;
	if (rt->history_n > DTS_ALERT_HISTORY_MAX + DTS_ALERT_HISTORY_MAX / 10) {
		/* Pruned in steps of a tenth, so the scan runs once per twenty changes rather than at each. */
		if (prune_history(a, r->user, r->id, DTS_ALERT_HISTORY_MAX, rt->history_n) == 0)
			rt->history_n = DTS_ALERT_HISTORY_MAX;
	}
}

/* Build and submit one batch per user from the round's notices (changes sorted by user). */
static void submit_batches(struct dts_alerts *a, struct round_change *ch, size_t nch, int64_t now_ms)
{
	for (size_t lo = 0, hi; lo < nch; lo = hi) {
		size_t k = 0, with_notice = 0;
		struct dts_notify_batch *b;

		for (hi = lo; hi < nch && strcmp(a->rr[ch[hi].i].user, a->rr[ch[lo].i].user) == 0; hi++)
			with_notice += ch[hi].c.notice != DTS_NOTICE_NONE;
		if (!with_notice || !a->cfg.notifier)
			continue;
		b = dts_notify_batch_new(a->rr[ch[lo].i].user, now_ms, with_notice);
		if (!b) {
			dts_err("alerts", "out of memory: notifications of user %s lost", a->rr[ch[lo].i].user);
			continue;
		}
		for (size_t j = lo; j < hi; j++) {
			if (ch[j].c.notice == DTS_NOTICE_NONE)
				continue;
			b->ev[k].rule = a->rr[ch[j].i];
			b->ev[k].change = ch[j].c;
			b->ev[k].ts_ms = now_ms;
			k++;
		}
		dts_notifier_submit(a->cfg.notifier, b);
		atomic_fetch_add_explicit(&a->batches, 1, memory_order_relaxed);
	}
}

int dts_alerts_round(struct dts_alerts *a, int64_t now_ms)
{
	struct timespec t0, t1;
	struct round_change *ch = NULL;
	size_t nch = 0, firing = 0;
	long n;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_mutex_lock(&a->round_mu);
	n = round_copy(a);
	if (n < 0) {
		pthread_mutex_unlock(&a->round_mu);
		dts_err("alerts", "out of memory: evaluation round skipped");
		return -ENOMEM;
	}
	if (n > 0) {
		ch = malloc((size_t)n * sizeof(*ch));
		if (!ch) {
			pthread_mutex_unlock(&a->round_mu);
			return -ENOMEM;
		}
	}
	for (long i = 0; i < n; i++)
		a->robs[i] = (struct dts_alert_obs){ .has_value = false, .value = NAN, .last_ms = 0 };
	a->cfg.observe(a->cfg.observe_ctx, a->rr, (size_t)n, now_ms, a->robs);

	for (long i = 0; i < n; i++) {
		struct dts_alert_change c;

		if (!dts_alert_step(&a->rr[i], &a->rrt[i], &a->robs[i], now_ms, &a->cfg.timing, &c))
			continue;
		ch[nch++] = (struct round_change){ .i = (size_t)i, .c = c };
		if (c.from != c.to) {
			atomic_fetch_add_explicit(&a->transitions[c.to], 1, memory_order_relaxed);
			dts_log(c.to == DTS_ALERT_FIRING || c.to == DTS_ALERT_RESOLVED ? DTS_LOG_INFO : DTS_LOG_DEBUG,
				"alerts", "rule %s of user %s: %s -> %s (value %.6g)", a->rr[i].id, a->rr[i].user,
				dts_alert_state_name(c.from), dts_alert_state_name(c.to), c.value);
			record_history(a, &a->rr[i], &a->rrt[i], &c, now_ms);
		}
	}

	/* Write the states back to the rules still there (serials ascend in both lists). */
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n; i++) {
		struct entry *e = a->rules[i];

		for (long k = 0; k < n; k++)
			if (a->rserial[k] == e->serial) {
				e->rt = a->rrt[k];
				break;
			}
		firing += e->rt.state == DTS_ALERT_FIRING;
	}
	atomic_store_explicit(&a->firing, firing, memory_order_relaxed);
	pthread_mutex_unlock(&a->lock);

	if (nch > 1)
		qsort_r(ch, nch, sizeof(*ch), change_user_cmp, a->rr);
	submit_batches(a, ch, nch, now_ms);
	pthread_mutex_unlock(&a->round_mu);
	free(ch);

	clock_gettime(CLOCK_MONOTONIC, &t1);
	atomic_store_explicit(&a->round_ns_last,
			      (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec)),
			      memory_order_relaxed);
	atomic_fetch_add_explicit(&a->rounds, 1, memory_order_relaxed);
	return (int)nch;
}

/* ---- the evaluator thread -------------------------------------------------------------------------------------- */

static void *evaluator_main(void *arg)
{
	struct dts_alerts *a = arg;

	pthread_setname_np(pthread_self(), "dts-alerts");
	dts_rcu_register_thread();
	pthread_mutex_lock(&a->stop_mu);
	while (!a->stop) {
		struct timespec until;

		pthread_mutex_unlock(&a->stop_mu);
		dts_alerts_round(a, now_of(a));
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += a->cfg.eval_s;
		pthread_mutex_lock(&a->stop_mu);
		while (!a->stop && pthread_cond_timedwait(&a->stop_cv, &a->stop_mu, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&a->stop_mu);
	dts_rcu_unregister_thread();
	return NULL;
}

int dts_alerts_start(struct dts_alerts *a, char *err, size_t errlen)
{
	pthread_condattr_t ca;
	int rc;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_destroy(&a->stop_cv);
	pthread_cond_init(&a->stop_cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&a->thread, NULL, evaluator_main, a);
	if (rc) {
		snprintf(err, errlen, "alerts: cannot start the evaluator thread: %s", strerror(rc));
		return -rc;
	}
	a->started = true;
	dts_info("alerts", "evaluating %zu rule%s every %u s", (size_t)atomic_load(&a->nrules),
		 atomic_load(&a->nrules) == 1 ? "" : "s", a->cfg.eval_s);
	return 0;
}

void dts_alerts_close(struct dts_alerts *a)
{
	if (!a)
		return;
	if (a->started) {
		pthread_mutex_lock(&a->stop_mu);
		a->stop = true;
		pthread_cond_signal(&a->stop_cv);
		pthread_mutex_unlock(&a->stop_mu);
		pthread_join(a->thread, NULL);
	}
	for (size_t i = 0; i < a->n; i++)
		free(a->rules[i]);
	free(a->rules);
	free(a->rr);
	free(a->rrt);
	free(a->rserial);
	free(a->robs);
	pthread_cond_destroy(&a->stop_cv);
	pthread_mutex_destroy(&a->stop_mu);
	pthread_mutex_destroy(&a->round_mu);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* ---- counters -------------------------------------------------------------------------------------------------- */

void dts_alerts_stats_read(const struct dts_alerts *a, struct dts_alerts_stats *out)
{
	struct dts_alerts *m = (struct dts_alerts *)a; /* atomics are read, never written */

	out->rounds = atomic_load_explicit(&m->rounds, memory_order_relaxed);
	out->round_ns_last = atomic_load_explicit(&m->round_ns_last, memory_order_relaxed);
	out->rules = atomic_load_explicit(&m->nrules, memory_order_relaxed);
	out->firing = atomic_load_explicit(&m->firing, memory_order_relaxed);
	out->history_errors = atomic_load_explicit(&m->history_errors, memory_order_relaxed);
	out->batches_submitted = atomic_load_explicit(&m->batches, memory_order_relaxed);
	for (unsigned s = 0; s < DTS_ALERT_STATE_COUNT; s++)
		out->transitions[s] = atomic_load_explicit(&m->transitions[s], memory_order_relaxed);
}

char *dts_alerts_metrics(struct dts_alerts *a)
{
	struct dts_alerts_stats s;
	struct dts_notify_stats ns;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	dts_alerts_stats_read(a, &s);
	fprintf(f, "# HELP dattss_alert_rules Alert rules loaded.\n# TYPE dattss_alert_rules gauge\n"
		   "dattss_alert_rules %" PRIu64 "\n", s.rules);
	fprintf(f, "# HELP dattss_alert_rules_firing Alert rules firing after the last evaluation.\n"
		   "# TYPE dattss_alert_rules_firing gauge\ndattss_alert_rules_firing %" PRIu64 "\n", s.firing);
	fprintf(f, "# HELP dattss_alert_rounds_total Evaluation rounds run.\n# TYPE dattss_alert_rounds_total counter\n"
		   "dattss_alert_rounds_total %" PRIu64 "\n", s.rounds);
	fprintf(f, "# HELP dattss_alert_round_seconds Duration of the last evaluation round.\n"
		   "# TYPE dattss_alert_round_seconds gauge\ndattss_alert_round_seconds %.6f\n",
		(double)s.round_ns_last / 1e9);
	fprintf(f, "# HELP dattss_alert_transitions_total Rule state changes, by the state entered.\n"
		   "# TYPE dattss_alert_transitions_total counter\n");
	for (unsigned st = 0; st < DTS_ALERT_STATE_COUNT; st++)
		fprintf(f, "dattss_alert_transitions_total{to=\"%s\"} %" PRIu64 "\n", state_names[st],
			s.transitions[st]);
	fprintf(f, "# HELP dattss_alert_history_errors_total History records the store refused.\n"
		   "# TYPE dattss_alert_history_errors_total counter\ndattss_alert_history_errors_total %" PRIu64 "\n",
		s.history_errors);
	if (a->cfg.notifier) {
		dts_notifier_stats_read(a->cfg.notifier, &ns);
		fprintf(f, "# HELP dattss_alert_batches_total Notification batches (one per user and round).\n"
			   "# TYPE dattss_alert_batches_total counter\ndattss_alert_batches_total %" PRIu64 "\n",
			ns.batches);
		fprintf(f, "# HELP dattss_alert_batches_dropped_total Batches dropped because the notifier queue was "
			   "full.\n# TYPE dattss_alert_batches_dropped_total counter\n"
			   "dattss_alert_batches_dropped_total %" PRIu64 "\n", ns.batches_dropped);
		fprintf(f, "# HELP dattss_alert_suppressed_total Notifications held back by the per-user rate limit.\n"
			   "# TYPE dattss_alert_suppressed_total counter\ndattss_alert_suppressed_total %" PRIu64 "\n",
			ns.suppressed);
#define PER_CHANNEL(name, help, field)                                                                         \
	do {                                                                                                   \
		fprintf(f, "# HELP " name " " help "\n# TYPE " name " counter\n");                           \
		for (unsigned c = 0; c < DTS_CHAN_COUNT; c++)                                                  \
			fprintf(f, name "{channel=\"%s\"} %" PRIu64 "\n", chan_names[c], ns.field[c]);       \
	} while (0)
		PER_CHANNEL("dattss_alert_notifications_sent_total", "Notification messages delivered.", sent);
		PER_CHANNEL("dattss_alert_notify_errors_total", "Failed delivery attempts.", errors);
		PER_CHANNEL("dattss_alert_notify_retries_total", "Delivery attempts after the first.", retries);
		PER_CHANNEL("dattss_alert_notifications_failed_total",
			    "Messages given up after the last retry or dropped.", failed);
#undef PER_CHANNEL
		fprintf(f, "# HELP dattss_alert_notify_pending Messages waiting to be sent or retried.\n"
			   "# TYPE dattss_alert_notify_pending gauge\ndattss_alert_notify_pending %" PRIu64 "\n",
			ns.pending);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
