/*
 * test_alerts.c - unit tests of the alerts (server/alerts.c) and the notifier (server/notify.c), with clocks the
 * tests control and no threads:
 *   - rule validation: a table of bad rules, each error naming its field; good rules round-trip through JSON;
 *   - the evaluation core (dts_alert_step): above/below with a window and M consecutive evaluations, stopped working,
 *     stopped responding, ok -> pending -> firing -> resolved -> ok, the repeat interval, missing data;
 *   - the alert engine on a real store (a temporary RocksDB): rules stored and reloaded with their state, history
 *     recorded and returned newest first, removal, per-user scoping and limits;
 *   - the notifier through a recording transport: one message per destination per batch, the rate limit of a
 *     flapping rule (held events and the suppressed count in the next message), retries on the backoff schedule;
 *   - the alert config keys (flags, errors naming the key, redaction).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alerts.h"
#include "config.h"
#include "dts/meta.h"
#include "dts/storage.h"
#include "notify.h"

/* ---- helpers --------------------------------------------------------------------------------------------------- */

static int parse_text(const char *text, unsigned channels_ok, struct dts_alert_rule *r, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	int rc;

	cr_assert_not_null(j, "test JSON does not parse: %s: %s", text, je.text);
	rc = dts_alert_rule_parse(j, channels_ok, r, err, errlen);
	json_decref(j);
	return rc;
}

static struct dts_alert_rule rule_of(const char *text)
{
	struct dts_alert_rule r;
	char err[256] = "";

	cr_assert_eq(parse_text(text, DTS_CHAN_ALL, &r, err, sizeof(err)), 0, "%s: %s", text, err);
	return r;
}

#define SERIES "\"process\":\"api\",\"counter\":\"query\",\"type\":\"ms\""
#define HOOK "\"channels\":[{\"type\":\"webhook\",\"url\":\"http://127.0.0.1:9/hook\"}]"

/* ---- validation ------------------------------------------------------------------------------------------------ */

struct bad_rule {
	const char *json;
	const char *error; /* the error must start with this ("field: ...") */
	unsigned channels_ok; /* 0: DTS_CHAN_ALL */
};

static const struct bad_rule bad_rules[] = {
	{ "[]", "body: must be a JSON object" },
	{ "{}", "kind: required" },
	{ "{\"kind\":5}", "kind: must be a string" },
	{ "{\"kind\":\"over\"}", "kind: must be above, below, stopped_working or stopped_responding, got 'over'" },
	{ "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":1,\"bogus\":1}", "bogus: unknown field" },
	/* a field name that could be mistaken for the error's own separator is quoted (found by fuzz_alert_rule) */
	{ "{\"kind\":\"stopped_working\",\": \":[{\"type\":\"218\"}]}", "\": \": unknown field" },
	{ "{\"kind\":\"above\",\"\":1}", "\"\": unknown field" },
	{ "{\"kind\":\"above\",\"a b\":1}", "\"a b\": unknown field" },
	{ "{\"kind\":\"above\",\"counter\":\"q\",\"type\":\"ms\",\"stat\":\"avg\",\"limit\":1}", "process: required" },
	{ "{\"kind\":\"above\",\"process\":\"a/b\",\"counter\":\"q\",\"type\":\"ms\",\"stat\":\"avg\",\"limit\":1}",
	  "process: required: 1 to 200 printable" },
	{ "{\"kind\":\"above\",\"process\":\"a b\",\"counter\":\"q\",\"type\":\"ms\",\"stat\":\"avg\",\"limit\":1}",
	  "process: " },
	{ "{\"kind\":\"above\",\"process\":\"a\",\"type\":\"ms\",\"stat\":\"avg\",\"limit\":1}", "counter: required" },
	{ "{\"kind\":\"above\",\"process\":\"a\",\"counter\":\"q|x\",\"type\":\"ms\",\"stat\":\"avg\",\"limit\":1}",
	  "counter: " },
	{ "{\"kind\":\"above\",\"process\":\"a\",\"counter\":\"q\",\"stat\":\"avg\",\"limit\":1}", "type: required" },
	{ "{\"kind\":\"above\",\"process\":\"a\",\"counter\":\"q\",\"type\":\"x\",\"stat\":\"avg\",\"limit\":1}",
	  "type: must be c, ms, g or s" },
	{ "{\"kind\":\"above\"," SERIES ",\"tags\":\"a|b\",\"stat\":\"avg\",\"limit\":1}", "tags: " },
	{ "{\"kind\":\"above\"," SERIES ",\"limit\":1}", "stat: required" },
	{ "{\"kind\":\"above\"," SERIES ",\"stat\":\"p95\",\"limit\":1}", "stat: must be avg, sum" },
	{ "{\"kind\":\"above\",\"process\":\"a\",\"counter\":\"q\",\"type\":\"g\",\"stat\":\"rate\",\"limit\":1}",
	  "stat: rate is only for counters" },
	{ "{\"kind\":\"above\",\"process\":\"a\",\"counter\":\"q\",\"type\":\"c\",\"stat\":\"top10\",\"limit\":1}",
	  "stat: top10 is only for timers" },
	{ "{\"kind\":\"above\",\"process\":\"a\",\"counter\":\"q\",\"type\":\"s\",\"stat\":\"avg\",\"limit\":1}",
	  "stat: sets (type s) support count only" },
	{ "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\"}", "limit: required" },
	{ "{\"kind\":\"below\"," SERIES ",\"stat\":\"avg\",\"limit\":\"5\"}", "limit: must be a number" },
	{ "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":1,\"window_min\":0}",
	  "window_min: must be an integer between 1 and 1440, got 0" },
	{ "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":1,\"window_min\":1441}",
	  "window_min: must be an integer between 1 and 1440, got 1441" },
	{ "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":1,\"window_min\":1.5}",
	  "window_min: must be an integer" },
	{ "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":1,\"for\":0}", "for: must be an integer" },
	{ "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":1,\"after_min\":3}",
	  "after_min: only for stopped_working rules, not above" },
	{ "{\"kind\":\"stopped_working\"," SERIES "}", "after_min: required" },
	{ "{\"kind\":\"stopped_working\"," SERIES ",\"after_min\":0}", "after_min: must be an integer between 1" },
	{ "{\"kind\":\"stopped_working\"," SERIES ",\"after_min\":5,\"stat\":\"avg\"}",
	  "stat: only for above and below rules, not stopped_working" },
	{ "{\"kind\":\"stopped_working\"," SERIES ",\"after_min\":5,\"for\":2}", "for: only for above and below" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"counter\":\"q\",\"after_s\":30}",
	  "counter: only for above, below and stopped_working rules, not stopped_responding" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\"}", "after_s: required" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":2}",
	  "after_s: must be an integer between 5 and 86400, got 2" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"name\":\"a\\nb\"}",
	  "name: must be at most 200 bytes without control characters" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":{}}",
	  "channels: must be an array" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[1,2,3,4,5,6,7,8,9]}",
	  "channels: must be an array of at most 8" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[\"x\"]}",
	  "channels[0]: must be an object" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"to\":\"x\"}]}",
	  "channels[0].type: required" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"pager\"}]}",
	  "channels[0].type: must be email, sms, call or webhook, got 'pager'" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"webhook\","
	  "\"url\":\"http://127.0.0.1/\"},[]]}", "channels[1]: must be an object" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"email\","
	  "\"to\":[\"a@b.example\",\"not-an-address\"]}]}",
	  "channels[0].to[1]: must be an email address" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"email\","
	  "\"to\":[\"<a@b.example>\"]}]}",
	  "channels[0].to[0]: must be an email address" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"email\","
	  "\"to\":[]}]}",
	  "channels[0].to: must list 1 to 10 email addresses" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"email\","
	  "\"to\":[\"a@b.example\"],\"url\":\"http://x\"}]}",
	  "channels[0].url: unknown field (email channels take type and to)" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"webhook\","
	  "\"url\":\"http://127.0.0.1/\"},{\"type\":\"sms\",\"to\":\"555-1234\"}]}",
	  "channels[1].to: must be a phone number in E.164 form" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"call\"}]}",
	  "channels[0].to: must be a phone number" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"webhook\","
	  "\"url\":\"ftp://example.com/x\"}]}",
	  "channels[0].url: must be an http:// or https:// URL" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"webhook\","
	  "\"url\":\"http://a b/\"}]}",
	  "channels[0].url: must be an http:// or https:// URL" },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"sms\","
	  "\"to\":\"+15551234567\"}]}",
	  "channels[0].type: sms is not configured on this server", 1u << DTS_CHAN_WEBHOOK },
	{ "{\"kind\":\"stopped_responding\",\"process\":\"api\",\"after_s\":30,\"channels\":[{\"type\":\"email\","
	  "\"to\":[\"a@b.example\"]}]}",
	  "channels[0].type: email is not configured on this server (needs smtp_url and smtp_from)",
	  1u << DTS_CHAN_WEBHOOK },
};

Test(rules, bad_rule_names_the_field)
{
	for (size_t i = 0; i < sizeof(bad_rules) / sizeof(bad_rules[0]); i++) {
		const struct bad_rule *b = &bad_rules[i];
		struct dts_alert_rule r;
		char err[512] = "";
		int rc = parse_text(b->json, b->channels_ok ? b->channels_ok : DTS_CHAN_ALL, &r, err, sizeof(err));

		cr_expect_eq(rc, -EINVAL, "accepted: %s", b->json);
		cr_expect(strncmp(err, b->error, strlen(b->error)) == 0, "rule %s\n  error: %s\n  want:  %s...", b->json,
			  err, b->error);
	}
}

/* Good rules: parse, print, parse again: the same rule. */
static const char *const good_rules[] = {
	"{\"kind\":\"above\"," SERIES ",\"stat\":\"top10\",\"limit\":250.5,\"window_min\":5,\"for\":3," HOOK
	",\"name\":\"slow queries\"}",
	"{\"kind\":\"below\",\"process\":\"shop\",\"counter\":\"orders\",\"type\":\"c\",\"tags\":\"env:prod,region:eu\","
	"\"stat\":\"rate\",\"limit\":0.5,\"channels\":[{\"type\":\"email\",\"to\":[\"ops@example.com\","
	"\"oncall@example.com\"]},{\"type\":\"sms\",\"to\":\"+15551234567\"}]}",
	"{\"kind\":\"stopped_working\",\"process\":\"cron\",\"counter\":\"runs\",\"type\":\"c\",\"after_min\":90,"
	"\"channels\":[{\"type\":\"call\",\"to\":\"+442071234567\"}]}",
	"{\"kind\":\"stopped_responding\",\"process\":\"worker\",\"after_s\":30,\"channels\":[]}",
	"{\"kind\":\"above\",\"process\":\"p\",\"counter\":\"c\",\"type\":\"s\",\"stat\":\"count\",\"limit\":-3}",
};

Test(rules, good_rules_round_trip)
{
	for (size_t i = 0; i < sizeof(good_rules) / sizeof(good_rules[0]); i++) {
		struct dts_alert_rule a = rule_of(good_rules[i]), b;
		json_t *j = dts_alert_rule_json(&a);
		char err[256] = "";

		cr_assert_not_null(j);
		cr_assert_eq(dts_alert_rule_parse(j, DTS_CHAN_ALL, &b, err, sizeof(err)), 0, "%s", err);
		cr_expect_eq(memcmp(&a, &b, sizeof(a)), 0, "rule %zu changed through JSON", i);
		json_decref(j);
	}
}

Test(rules, defaults_and_aliases)
{
	struct dts_alert_rule r = rule_of("{\"kind\":\"above\",\"process\":\"a\",\"counter\":\"b\",\"type\":\"h\","
					  "\"stat\":\"avg\",\"limit\":1,\"channels\":[{\"type\":\"email\","
					  "\"to\":\"x@y.example\"}]}");

	cr_expect_eq(r.type, DTS_TIMER, "statsd h is a timer");
	cr_expect_eq(r.window_min, 1);
	cr_expect_eq(r.for_n, 1);
	cr_expect_str_eq(r.ch[0].dest, "x@y.example", "a single address may be a string");
	cr_expect_str_eq(r.tags, "");
}

Test(rules, describe)
{
	struct dts_alert_rule r = rule_of(good_rules[0]);
	char buf[512];

	dts_alert_rule_describe(&r, buf, sizeof(buf));
	cr_expect_str_eq(buf, "top10 of api/query (ms) over 5 min above 250.5 for 3 evaluations");
	r = rule_of(good_rules[2]);
	dts_alert_rule_describe(&r, buf, sizeof(buf));
	cr_expect_str_eq(buf, "cron/runs (c) received no data for 90 min");
	r = rule_of(good_rules[3]);
	dts_alert_rule_describe(&r, buf, sizeof(buf));
	cr_expect_str_eq(buf, "process worker sent no heartbeat for 30 s");
}

/* ---- the evaluation core --------------------------------------------------------------------------------------- */

static const struct dts_alert_timing timing = { .minute_s = 60, .repeat_s = 600, .resolved_hold_s = 120,
						.nodata_hold_s = 300 };

struct step_row {
	int64_t t_s; /* evaluation time */
	bool has; /* observation: a value (above/below) */
	double v;
	int64_t last_s; /* stopped kinds: newest data at (0 = none visible) */
	unsigned state; /* expected state after */
	unsigned notice; /* expected notice */
};

static void run_steps(const struct dts_alert_rule *r, const struct step_row *rows, size_t n)
{
	struct dts_alert_rt rt;

	dts_alert_rt_init(&rt);
	for (size_t i = 0; i < n; i++) {
		struct dts_alert_obs o = { .has_value = rows[i].has, .value = rows[i].v, .last_ms = rows[i].last_s * 1000 };
		struct dts_alert_change c;
		unsigned before = rt.state;
		bool news = dts_alert_step(r, &rt, &o, rows[i].t_s * 1000, &timing, &c);

		cr_expect_eq(rt.state, rows[i].state, "step %zu (t=%lld): state %s, want %s", i, (long long)rows[i].t_s,
			     dts_alert_state_name(rt.state), dts_alert_state_name(rows[i].state));
		cr_expect_eq(c.notice, rows[i].notice, "step %zu (t=%lld): notice %u, want %u", i,
			     (long long)rows[i].t_s, c.notice, rows[i].notice);
		cr_expect_eq(c.from, before);
		cr_expect_eq(c.to, rt.state);
		cr_expect_eq(news, c.from != c.to || c.notice != DTS_NOTICE_NONE, "step %zu: return value", i);
	}
}

enum { OK = DTS_ALERT_OK, PEND = DTS_ALERT_PENDING, FIRE = DTS_ALERT_FIRING, RES = DTS_ALERT_RESOLVED };
enum { N0 = DTS_NOTICE_NONE, NF = DTS_NOTICE_FIRING, NR = DTS_NOTICE_RESOLVED, NP = DTS_NOTICE_REPEAT };

Test(step, above_for_three_consecutive_evaluations)
{
	struct dts_alert_rule r = rule_of("{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":100,\"for\":3}");
	const struct step_row rows[] = {
		{ 0, true, 50, 0, OK, N0 },	  /* below the limit */
		{ 5, true, 100, 0, OK, N0 },	  /* equal is not above */
		{ 10, true, 150, 0, PEND, N0 },	  /* 1 of 3 */
		{ 15, true, 150, 0, PEND, N0 },	  /* 2 of 3 */
		{ 20, true, 90, 0, OK, N0 },	  /* broken streak: back to ok */
		{ 25, true, 101, 0, PEND, N0 },	  /* 1 */
		{ 30, true, 120, 0, PEND, N0 },	  /* 2 */
		{ 35, true, 130, 0, FIRE, NF },	  /* 3: firing */
		{ 40, true, 140, 0, FIRE, N0 },	  /* still firing, no repeat before repeat_s */
		{ 45, true, 99, 0, RES, NR },	  /* resolved on the first evaluation below */
		{ 50, true, 10, 0, RES, N0 },	  /* shown as resolved ... */
		{ 164, true, 10, 0, RES, N0 },	  /* ... for resolved_hold_s (120 s) */
		{ 165, true, 10, 0, OK, N0 },	  /* then ok */
	};

	run_steps(&r, rows, sizeof(rows) / sizeof(rows[0]));
}

Test(step, below_fires_at_once_with_for_1_and_refires_from_resolved)
{
	struct dts_alert_rule r = rule_of("{\"kind\":\"below\",\"process\":\"a\",\"counter\":\"q\",\"type\":\"c\","
					  "\"stat\":\"rate\",\"limit\":2}");
	const struct step_row rows[] = {
		{ 0, true, 5, 0, OK, N0 },   { 5, true, 1.5, 0, FIRE, NF }, { 10, true, 3, 0, RES, NR },
		{ 15, true, 0, 0, FIRE, NF }, /* from resolved straight back to firing (for = 1) */
		{ 20, true, 2, 0, RES, NR },  /* equal is not below */
	};

	run_steps(&r, rows, sizeof(rows) / sizeof(rows[0]));
}

Test(step, repeat_interval_while_firing)
{
	struct dts_alert_rule r = rule_of("{\"kind\":\"above\"," SERIES ",\"stat\":\"max\",\"limit\":1}");
	const struct step_row rows[] = {
		{ 0, true, 5, 0, FIRE, NF }, { 300, true, 5, 0, FIRE, N0 },  { 599, true, 5, 0, FIRE, N0 },
		{ 600, true, 5, 0, FIRE, NP }, /* repeat_s = 600 after the firing notice */
		{ 900, true, 5, 0, FIRE, N0 }, { 1200, true, 5, 0, FIRE, NP }, /* counted from the last repeat */
		{ 1205, true, 0, 0, RES, NR },
	};
	struct dts_alert_timing never = timing;
	struct dts_alert_rt rt;
	struct dts_alert_change c;
	struct dts_alert_obs o = { .has_value = true, .value = 5 };

	run_steps(&r, rows, sizeof(rows) / sizeof(rows[0]));
	never.repeat_s = 0; /* 0: never repeat */
	dts_alert_rt_init(&rt);
	for (int64_t t = 0; t < 100000; t += 500) {
		dts_alert_step(&r, &rt, &o, t * 1000, &never, &c);
		cr_expect(t == 0 ? c.notice == NF : c.notice == N0, "t=%lld notice %u", (long long)t, c.notice);
	}
}

Test(step, missing_data_holds_then_counts_as_false)
{
	struct dts_alert_rule r = rule_of("{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":100,\"for\":2}");
	const struct step_row rows[] = {
		{ 0, false, 0, 0, OK, N0 },	   /* no data: ok */
		{ 5, true, 200, 0, PEND, N0 },
		{ 10, false, 0, 0, PEND, N0 },	   /* no data: state and streak kept */
		{ 15, true, 200, 0, FIRE, NF },	   /* the streak continued: 2 evaluations with a value */
		{ 20, false, 0, 0, FIRE, N0 },	   /* a pause in traffic does not resolve ... */
		{ 314, false, 0, 0, FIRE, N0 },	   /* ... within nodata_hold_s (300 s) of the last value ... */
		{ 315, false, 0, 0, RES, NR },	   /* ... after it, no data counts as "not above" */
	};

	run_steps(&r, rows, sizeof(rows) / sizeof(rows[0]));
}

Test(step, stopped_working)
{
	struct dts_alert_rule r = rule_of("{\"kind\":\"stopped_working\",\"process\":\"a\",\"counter\":\"q\","
					  "\"type\":\"c\",\"after_min\":2}");
	const struct step_row rows[] = {
		{ 100, false, 0, 0, OK, N0 },	  /* never had data: nothing to miss */
		{ 1000, false, 0, 0, OK, N0 },
		{ 1005, false, 0, 1004, OK, N0 }, /* data */
		{ 1100, false, 0, 1004, OK, N0 }, /* 96 s of silence */
		{ 1123, false, 0, 1004, OK, N0 }, /* 119 s */
		{ 1124, false, 0, 1004, FIRE, NF }, /* 120 s = after_min */
		{ 1200, false, 0, 0, FIRE, N0 },  /* the series left memory: the last data is remembered */
		{ 1300, false, 0, 1299, RES, NR }, /* data again */
		{ 1418, false, 0, 1299, RES, N0 },
		{ 1419, false, 0, 1299, FIRE, NF }, /* silent again for 2 min (still within the resolved hold) */
	};

	run_steps(&r, rows, sizeof(rows) / sizeof(rows[0]));
}

Test(step, stopped_working_minute_length_is_configurable_for_tests)
{
	struct dts_alert_rule r = rule_of("{\"kind\":\"stopped_working\",\"process\":\"a\",\"counter\":\"q\","
					  "\"type\":\"c\",\"after_min\":3}");
	struct dts_alert_timing fast = timing;
	struct dts_alert_rt rt;
	struct dts_alert_change c;
	struct dts_alert_obs o = { .last_ms = 10000 };

	fast.minute_s = 2; /* after_min 3 = 6 s */
	dts_alert_rt_init(&rt);
	dts_alert_step(&r, &rt, &o, 15999, &fast, &c);
	cr_expect_eq(rt.state, OK);
	dts_alert_step(&r, &rt, &o, 16000, &fast, &c);
	cr_expect_eq(rt.state, FIRE);
	cr_expect_float_eq(c.value, 6.0, 1e-9, "value: seconds without data");
}

Test(step, stopped_responding)
{
	struct dts_alert_rule r = rule_of("{\"kind\":\"stopped_responding\",\"process\":\"worker\",\"after_s\":30}");
	const struct step_row rows[] = {
		{ 0, false, 0, 0, OK, N0 },	  { 10, false, 0, 5, OK, N0 },	  { 20, false, 0, 15, OK, N0 },
		{ 40, false, 0, 15, OK, N0 },	  /* 25 s */
		{ 45, false, 0, 15, FIRE, NF },	  /* 30 s without a heartbeat */
		{ 50, false, 0, 15, FIRE, N0 },	  { 55, false, 0, 54, RES, NR }, /* heartbeat: resolved */
		{ 60, false, 0, 59, RES, N0 },
	};

	run_steps(&r, rows, sizeof(rows) / sizeof(rows[0]));
}

/* ---- the alert engine on a real store -------------------------------------------------------------------------- */

static char tmpdir[64];
static struct dts_storage *st;
static int64_t now_ms;

/* What the test's observer reports, per counter name (process name for stopped_responding). */
struct feed {
	const char *name;
	bool has;
	double value;
	int64_t last_ms;
};
static struct feed feeds[8];

static int64_t test_clock(void *ctx)
{
	(void)ctx;
	return now_ms;
}

static void test_observe(void *ctx, const struct dts_alert_rule *rules, size_t n, int64_t t, struct dts_alert_obs *obs)
{
	(void)ctx, (void)t;
	for (size_t i = 0; i < n; i++) {
		const char *key = rules[i].kind == DTS_ALERT_STOPPED_RESPONDING ? rules[i].process : rules[i].counter;

		for (size_t f = 0; f < sizeof(feeds) / sizeof(feeds[0]) && feeds[f].name; f++)
			if (strcmp(feeds[f].name, key) == 0)
				obs[i] = (struct dts_alert_obs){ feeds[f].has, feeds[f].value, feeds[f].last_ms };
	}
}

static void feed(const char *name, bool has, double value, int64_t last_ms)
{
	size_t f = 0;

	while (feeds[f].name && strcmp(feeds[f].name, name) != 0)
		f++;
	cr_assert_lt(f, sizeof(feeds) / sizeof(feeds[0]));
	feeds[f] = (struct feed){ name, has, value, last_ms };
}

static int count_record(void *ctx, const char *key, size_t key_len, const char *val, size_t val_len)
{
	(void)ctx, (void)key, (void)key_len, (void)val, (void)val_len;
	return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static void store_open(void)
{
	struct dts_storage_cfg scfg;
	char err[256];

	dts_storage_cfg_defaults(&scfg);
	scfg.data_dir = tmpdir;
	st = dts_storage_open(&scfg, err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
}

static void store_setup(void)
{
	strcpy(tmpdir, "/tmp/dts_test_alerts_XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	store_open();
	now_ms = 1700000000000;
	memset(feeds, 0, sizeof(feeds));
}

static void store_teardown(void)
{
	if (st)
		dts_storage_close(st);
	st = NULL;
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The defaults on the suite's store and clock. */
static void cfg_on_store(struct dts_alerts_cfg *cfg)
{
	dts_alerts_cfg_defaults(cfg);
	cfg->st = st;
	cfg->clock = test_clock;
}

static struct dts_alerts *open_or_fail(const struct dts_alerts_cfg *cfg)
{
	char err[256];
	struct dts_alerts *a = dts_alerts_open(cfg, err, sizeof(err));

	cr_assert_not_null(a, "%s", err);
	return a;
}

static struct dts_alerts *alerts_open(struct dts_notifier *n, unsigned max_rules)
{
	struct dts_alerts_cfg cfg;

	cfg_on_store(&cfg);
	cfg.observe = test_observe;
	cfg.notifier = n;
	cfg.timing = timing;
	cfg.max_rules = max_rules;
	return open_or_fail(&cfg);
}

/* Add a rule from JSON text; returns its id (static buffer per call site is not needed: copied into out). */
static void add(struct dts_alerts *a, const char *user, const char *text, char *id_out)
{
	json_t *in = json_loads(text, 0, NULL), *out = NULL;
	char err[256] = "";

	cr_assert_not_null(in);
	cr_assert_eq(dts_alerts_add(a, user, in, &out, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(json_string_value(json_object_get(out, "state")), "ok");
	cr_assert_eq(strlen(json_string_value(json_object_get(out, "id"))), DTS_ALERT_ID_LEN);
	if (id_out)
		strcpy(id_out, json_string_value(json_object_get(out, "id")));
	json_decref(in);
	json_decref(out);
}

static const char *state_of(struct dts_alerts *a, const char *user, const char *id)
{
	static char state[16];
	json_t *l = dts_alerts_list(a, user), *r;
	size_t i;

	state[0] = '\0';
	json_array_foreach(json_object_get(l, "rules"), i, r)
		if (strcmp(json_string_value(json_object_get(r, "id")), id) == 0)
			snprintf(state, sizeof(state), "%s", json_string_value(json_object_get(r, "state")));
	json_decref(l);
	return state;
}

TestSuite(engine, .init = store_setup, .fini = store_teardown);

Test(engine, rules_history_and_restart)
{
	struct dts_alerts *a = alerts_open(NULL, 100);
	char id[16], id2[16];
	json_t *h;

	add(a, "alice", "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":100,\"for\":2}", id);
	add(a, "alice", "{\"kind\":\"stopped_responding\",\"process\":\"worker\",\"after_s\":30}", id2);
	feed("query", true, 150, 0);
	feed("worker", false, 0, now_ms);
	cr_expect_eq(dts_alerts_round(a, now_ms), 1, "ok -> pending");
	cr_expect_str_eq(state_of(a, "alice", id), "pending");
	now_ms += 5000;
	cr_expect_eq(dts_alerts_round(a, now_ms), 1, "pending -> firing");
	cr_expect_str_eq(state_of(a, "alice", id), "firing");
	cr_expect_str_eq(state_of(a, "alice", id2), "ok");

	/* History: newest first, with the values. */
	cr_assert_eq(dts_alerts_history(a, "alice", id, 100, &h), 0);
	cr_assert_eq(json_array_size(json_object_get(h, "history")), 2);
	json_t *h0 = json_array_get(json_object_get(h, "history"), 0), *h1 = json_array_get(json_object_get(h, "history"), 1);
	cr_expect_str_eq(json_string_value(json_object_get(h0, "from")), "pending");
	cr_expect_str_eq(json_string_value(json_object_get(h0, "to")), "firing");
	cr_expect_eq(json_integer_value(json_object_get(h0, "ts_ms")), now_ms);
	cr_expect_float_eq(json_number_value(json_object_get(h0, "value")), 150, 1e-9);
	cr_expect_str_eq(json_string_value(json_object_get(h1, "to")), "pending");
	cr_expect_null(json_object_get(h0, "v"), "the record version is not part of the API");
	json_decref(h);
	cr_assert_eq(dts_alerts_history(a, "alice", id, 1, &h), 0);
	cr_expect_eq(json_array_size(json_object_get(h, "history")), 1, "limit");
	json_decref(h);

	/* Restart: the rules and their states come back from the store; a firing rule does not notify again. */
	dts_alerts_close(a);
	dts_storage_close(st);
	store_open();
	a = alerts_open(NULL, 100);
	cr_expect_str_eq(state_of(a, "alice", id), "firing");
	cr_expect_str_eq(state_of(a, "alice", id2), "ok");
	now_ms += 5000;
	cr_expect_eq(dts_alerts_round(a, now_ms), 0, "still firing after the restart: no change, no notice");
	feed("query", true, 50, 0);
	now_ms += 5000;
	cr_expect_eq(dts_alerts_round(a, now_ms), 1);
	cr_expect_str_eq(state_of(a, "alice", id), "resolved");

	/* Stopped responding: 30 s without a heartbeat. */
	now_ms += 30000;
	dts_alerts_round(a, now_ms);
	cr_expect_str_eq(state_of(a, "alice", id2), "firing");

	/* Removal deletes the rule and its history. */
	char err[256];
	cr_expect_eq(dts_alerts_remove(a, "alice", id, err, sizeof(err)), 0);
	cr_expect_eq(dts_alerts_history(a, "alice", id, 100, &h), -ENOENT);
	cr_expect_eq(dts_alerts_remove(a, "alice", id, err, sizeof(err)), -ENOENT);
	{
		char prefix[64], *v = NULL;
		long n;

		snprintf(prefix, sizeof(prefix), "alerthist/alice/%s/", id);
		n = dts_meta_scan(st, prefix, count_record, NULL, err, sizeof(err));
		cr_expect_eq(n, 0, "history records left: %ld", n);
		snprintf(prefix, sizeof(prefix), "alert/alice/%s", id);
		cr_expect_eq(dts_meta_get(st, prefix, &v, err, sizeof(err)), -ENOENT);
		free(v);
	}
	dts_alerts_close(a);
}

Test(engine, users_are_scoped_and_limited)
{
	struct dts_alerts *a = alerts_open(NULL, 2);
	json_t *in = json_loads("{\"kind\":\"stopped_responding\",\"process\":\"p\",\"after_s\":10}", 0, NULL), *out;
	char id[16], err[256], key[64], *v = NULL;
	json_t *l, *h;

	add(a, "alice", "{\"kind\":\"stopped_responding\",\"process\":\"p\",\"after_s\":10}", id);
	add(a, "alice", "{\"kind\":\"stopped_responding\",\"process\":\"q\",\"after_s\":10}", NULL);
	cr_expect_eq(dts_alerts_add(a, "alice", in, &out, err, sizeof(err)), -ENOSPC, "max_rules per user");
	cr_expect(strncmp(err, "rules: ", 7) == 0, "%s", err);
	cr_expect_eq(dts_alerts_add(a, "bob", in, &out, err, sizeof(err)), 0, "another user has room: %s", err);
	json_decref(out);
	json_decref(in);

	l = dts_alerts_list(a, "bob");
	cr_expect_eq(json_array_size(json_object_get(l, "rules")), 1);
	json_decref(l);
	l = dts_alerts_list(a, "carol");
	cr_expect_eq(json_array_size(json_object_get(l, "rules")), 0);
	json_decref(l);
	cr_expect_eq(dts_alerts_remove(a, "bob", id, err, sizeof(err)), -ENOENT, "bob cannot remove alice's rule");
	cr_expect_eq(dts_alerts_history(a, "bob", id, 10, &h), -ENOENT, "nor read its history");
	cr_expect_eq(dts_alerts_remove(a, "alice", "../../x", err, sizeof(err)), -ENOENT);

	/* The stored record is the rule's JSON with its user and a version. */
	snprintf(key, sizeof(key), "alert/alice/%s", id);
	cr_assert_gt(dts_meta_get(st, key, &v, err, sizeof(err)), 0, "%s", err);
	json_t *rec = json_loads(v, 0, NULL);
	cr_expect_eq(json_integer_value(json_object_get(rec, "v")), 1);
	cr_expect_str_eq(json_string_value(json_object_get(rec, "user")), "alice");
	cr_expect_str_eq(json_string_value(json_object_get(rec, "kind")), "stopped_responding");
	json_decref(rec);
	free(v);
	dts_alerts_close(a);
}

Test(engine, history_is_pruned)
{
	struct dts_alerts *a = alerts_open(NULL, 10);
	char id[16], prefix[64], err[256];
	json_t *h;
	long n;

	add(a, "u", "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":0}", id);
	for (int i = 0; i < 2 * DTS_ALERT_HISTORY_MAX; i++) {
		feed("query", true, i % 2 ? -1 : 1, 0); /* firing, resolved, firing, ... */
		now_ms += 1000;
		dts_alerts_round(a, now_ms);
	}
	snprintf(prefix, sizeof(prefix), "alerthist/u/%s/", id);
	n = dts_meta_scan(st, prefix, count_record, NULL, err, sizeof(err));
	cr_expect_leq(n, DTS_ALERT_HISTORY_MAX + DTS_ALERT_HISTORY_MAX / 10, "records kept: %ld", n);
	cr_expect_geq(n, DTS_ALERT_HISTORY_MAX, "records kept: %ld", n);
	cr_assert_eq(dts_alerts_history(a, "u", id, DTS_ALERT_HISTORY_MAX, &h), 0);
	cr_expect_eq(json_integer_value(json_object_get(json_array_get(json_object_get(h, "history"), 0), "ts_ms")),
		     now_ms, "the newest record is kept");
	json_decref(h);
	dts_alerts_close(a);
}

/* Alerts on the suite's store with the default observer and no engine (nothing live), and a 10 s grace. */
static struct dts_alerts *alerts_on_store(void)
{
	struct dts_alerts_cfg cfg;

	cfg_on_store(&cfg);
	cfg.grace_s = 10;
	return open_or_fail(&cfg);
}

/* The default observer on the store alone (no engine): windows of closed minutes, and the last data of a series
 * that is not live. */
Test(engine, windows_and_last_data_from_the_store)
{
	const int64_t m = 28333333; /* a minute number */
	struct dts_minute_rec rec = { .user = "u", .process = "api", .counter = "q", .tags = "", .type = DTS_COUNTER };
	struct dts_closed_minute cm = { .n = 1, .recs = &rec };
	const struct {
		int64_t minute;
		struct dts_agg agg; /* sum, count, min, max, fst, lst */
	} minutes[] = {
		{ m - 1, { 5000, 1, 1000, 1000, 1000, 1000 } }, /* outside a 3-minute window */
		{ m, { 10, 2, 4, 6, 4, 6 } },
		{ m + 1, { 30, 3, 5, 15, 10, 5 } },
		/* m + 2: no data */
	};
	const struct {
		const char *stat;
		double want;
	} stats[] = { { "avg", 8 }, { "sum", 40 }, { "count", 5 }, { "min", 4 }, { "max", 15 }, { "lst", 5 },
		      { "rate", 40.0 / 180 } };
	struct dts_alerts *a;
	char rule[256], ids[8][16], sw[16];
	json_t *l, *r;
	size_t i;

	for (i = 0; i < sizeof(minutes) / sizeof(minutes[0]); i++) {
		cm.minute = minutes[i].minute;
		rec.agg = minutes[i].agg;
		cr_assert_eq(dts_storage_write_minute(st, &cm), 0);
	}
	a = alerts_on_store();
	for (i = 0; i < sizeof(stats) / sizeof(stats[0]); i++) {
		snprintf(rule, sizeof(rule), "{\"kind\":\"above\",\"process\":\"api\",\"counter\":\"q\",\"type\":\"c\","
					     "\"stat\":\"%s\",\"limit\":1e9,\"window_min\":3}", stats[i].stat);
		add(a, "u", rule, ids[i]);
	}
	add(a, "u", "{\"kind\":\"stopped_working\",\"process\":\"api\",\"counter\":\"q\",\"type\":\"c\","
		    "\"after_min\":1}", sw);
	/* Minutes m..m+2 are the last three closed ones at (m + 3) * 60 + 20 with a 10 s grace. */
	now_ms = ((m + 3) * 60 + 20) * 1000;
	dts_alerts_round(a, now_ms);
	l = dts_alerts_list(a, "u");
	json_array_foreach(json_object_get(l, "rules"), i, r) {
		const char *id = json_string_value(json_object_get(r, "id"));
		double v = json_number_value(json_object_get(r, "value"));

		if (!strcmp(id, sw)) {
			cr_expect_str_eq(json_string_value(json_object_get(r, "state")), "firing",
					 "no data since the end of minute m + 1 (80 s)");
			cr_expect_float_eq(v, 80, 1e-9);
			continue;
		}
		for (size_t k = 0; k < sizeof(stats) / sizeof(stats[0]); k++)
			if (!strcmp(id, ids[k]))
				cr_expect_float_eq(v, stats[k].want, 1e-9, "%s over 3 closed minutes: %g, want %g",
						   stats[k].stat, v, stats[k].want);
	}
	json_decref(l);
	dts_alerts_close(a);
}

/*
 * The live state keeps no min, max or last value of a counter (nor a timer's last value): rules on those with
 * window_min 1 read the last closed minute, while a counter's sum still comes from the live state (here: no engine,
 * so nothing live, 0).
 */
Test(engine, live_window_stats_the_live_state_lacks_come_from_the_last_closed_minute)
{
	const int64_t m = 28333333;
	struct dts_minute_rec rec = { .user = "u", .process = "api", .counter = "q", .tags = "", .type = DTS_COUNTER };
	struct dts_closed_minute cm = { .n = 1, .recs = &rec };
	const struct dts_agg aggs[] = { { 10, 2, 4, 6, 4, 6 }, { 30, 3, 5, 15, 10, 5 } }; /* minutes m, m + 1 */
	const struct {
		const char *stat;
		double want;
	} stats[] = { { "min", 5 }, { "max", 15 }, { "lst", 5 }, { "sum", 0 } };
	struct dts_alerts *a;
	char rule[256], ids[4][16];
	json_t *l, *r;
	size_t i, found = 0;

	for (i = 0; i < 2; i++) {
		cm.minute = m + (int64_t)i;
		rec.agg = aggs[i];
		cr_assert_eq(dts_storage_write_minute(st, &cm), 0);
	}
	a = alerts_on_store();
	for (i = 0; i < sizeof(stats) / sizeof(stats[0]); i++) {
		snprintf(rule, sizeof(rule), "{\"kind\":\"above\",\"process\":\"api\",\"counter\":\"q\",\"type\":\"c\","
					     "\"stat\":\"%s\",\"limit\":1e9}", stats[i].stat);
		add(a, "u", rule, ids[i]);
	}
	/* Minute m + 1 is the last closed one at (m + 2) * 60 + 20 with a 10 s grace. */
	now_ms = ((m + 2) * 60 + 20) * 1000;
	dts_alerts_round(a, now_ms);
	l = dts_alerts_list(a, "u");
	json_array_foreach(json_object_get(l, "rules"), i, r) {
		const char *id = json_string_value(json_object_get(r, "id"));
		const json_t *v = json_object_get(r, "value");

		for (size_t k = 0; k < sizeof(stats) / sizeof(stats[0]); k++) {
			if (strcmp(id, ids[k]) != 0)
				continue;
			found++;
			cr_expect(json_is_number(v), "%s: no value", stats[k].stat);
			cr_expect_float_eq(json_number_value(v), stats[k].want, 1e-9, "%s with window_min 1: %g, want %g",
					   stats[k].stat, json_number_value(v), stats[k].want);
		}
	}
	cr_expect_eq(found, sizeof(stats) / sizeof(stats[0]));
	json_decref(l);
	dts_alerts_close(a);
}

/* ---- the notifier ---------------------------------------------------------------------------------------------- */

struct sent {
	int64_t at_ms;
	uint8_t channel;
	unsigned attempt, events;
	uint64_t suppressed;
	char dest[256];
	char *subject, *text, *json;
};

static struct sent sent[64];
static size_t nsent;
static unsigned fail_next; /* fail this many sends from now */
static size_t attempts;

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int record_send(void *ctx, const struct dts_notify_msg *m, char *err, size_t errlen)
{
	(void)ctx;
	attempts++;
	if (fail_next) {
		fail_next--;
		snprintf(err, errlen, "HTTP 503: try later");
		cr_assert_lt(nsent, sizeof(sent) / sizeof(sent[0]));
		sent[nsent++] = (struct sent){ .at_ms = now_ms, .channel = m->channel, .attempt = m->attempt,
					       .events = 0 };
		return -EIO;
	}
	cr_assert_lt(nsent, sizeof(sent) / sizeof(sent[0]));
	sent[nsent] = (struct sent){ .at_ms = now_ms, .channel = m->channel, .attempt = m->attempt, .events = m->events,
				     .suppressed = m->suppressed };
	snprintf(sent[nsent].dest, sizeof(sent[nsent].dest), "%s", m->dest);
	sent[nsent].subject = dup_or_null(m->subject);
	sent[nsent].text = dup_or_null(m->text);
	sent[nsent].json = dup_or_null(m->json);
	nsent++;
	return 0;
}

static void sent_reset(void)
{
	for (size_t i = 0; i < nsent; i++) {
		free(sent[i].subject);
		free(sent[i].text);
		free(sent[i].json);
	}
	nsent = 0;
	attempts = 0;
	fail_next = 0;
}

static struct dts_notifier *notifier_new(unsigned rate_per_hour, unsigned burst, unsigned retries)
{
	struct dts_notify_cfg cfg;
	struct dts_notifier *n;
	char err[256];

	dts_notify_cfg_defaults(&cfg);
	cfg.smtp_url = "smtp://127.0.0.1:1";
	cfg.smtp_from = "alerts@example.com";
	cfg.sms_url = "http://127.0.0.1:1/2010-04-01";
	cfg.sms_account = "AC123";
	cfg.sms_token = "tok";
	cfg.sms_from = "+15550000000";
	cfg.rate_per_hour = rate_per_hour;
	cfg.burst = burst;
	cfg.retries = retries;
	cfg.clock = test_clock;
	cfg.send = record_send;
	n = dts_notifier_create(&cfg, err, sizeof(err));
	cr_assert_not_null(n, "%s", err);
	cr_expect_eq(dts_notifier_channels(n), DTS_CHAN_ALL);
	return n;
}

static void notify_setup(void)
{
	store_setup();
	sent_reset();
}

static void notify_teardown(void)
{
	sent_reset();
	store_teardown();
}

TestSuite(notify, .init = notify_setup, .fini = notify_teardown);

Test(notify, one_message_per_destination_per_round)
{
	struct dts_notifier *n = notifier_new(20, 5, 0);
	struct dts_alerts *a = alerts_open(n, 100);
	char id1[16], id2[16];
	json_t *hook;
	struct dts_notify_stats s;

	/* Two rules share the email list and have a channel each of their own. */
	add(a, "alice", "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":100,\"name\":\"slow queries\","
			"\"channels\":[{\"type\":\"email\",\"to\":[\"ops@example.com\",\"dev@example.com\"]},"
			"{\"type\":\"sms\",\"to\":\"+15551230000\"}]}", id1);
	add(a, "alice", "{\"kind\":\"stopped_responding\",\"process\":\"worker\",\"after_s\":10,"
			"\"channels\":[{\"type\":\"email\",\"to\":[\"ops@example.com\",\"dev@example.com\"]},"
			"{\"type\":\"webhook\",\"url\":\"http://127.0.0.1:9/hook\"}]}", id2);
	feed("query", true, 250, 0);
	feed("worker", false, 0, now_ms - 60000);
	cr_expect_eq(dts_alerts_round(a, now_ms), 2);
	dts_notifier_step(n, now_ms);

	cr_assert_eq(nsent, 3, "email (both events), sms (one), webhook (one): got %zu", nsent);
	for (size_t i = 0; i < nsent; i++) {
		if (sent[i].channel == DTS_CHAN_EMAIL) {
			cr_expect_str_eq(sent[i].dest, "ops@example.com,dev@example.com");
			cr_expect_eq(sent[i].events, 2);
			cr_expect_str_eq(sent[i].subject, "[DaTtSs] 2 alerts: 2 firing");
			cr_expect(strstr(sent[i].text, "FIRING: slow queries\n"), "%s", sent[i].text);
			cr_expect(strstr(sent[i].text, "watches: avg of api/query (ms) over 1 min above 100\n"), "%s",
				  sent[i].text);
			cr_expect(strstr(sent[i].text, "value:   250\n"), "%s", sent[i].text);
			cr_expect(strstr(sent[i].text, "FIRING: process worker sent no heartbeat for 10 s\n"), "%s",
				  sent[i].text);
			cr_expect(strstr(sent[i].text, "value:   no heartbeat for 60 s\n"), "%s", sent[i].text);
			cr_expect(strstr(sent[i].text, id1) && strstr(sent[i].text, id2));
		} else if (sent[i].channel == DTS_CHAN_SMS) {
			cr_expect_str_eq(sent[i].dest, "+15551230000");
			cr_expect_str_eq(sent[i].text, "DaTtSs FIRING slow queries: 250");
		} else {
			cr_expect_eq(sent[i].channel, DTS_CHAN_WEBHOOK);
			cr_expect_str_eq(sent[i].dest, "http://127.0.0.1:9/hook");
			hook = json_loads(sent[i].json, 0, NULL);
			cr_assert_not_null(hook, "%s", sent[i].json);
			cr_expect_str_eq(json_string_value(json_object_get(hook, "user")), "alice");
			cr_expect_eq(json_integer_value(json_object_get(hook, "suppressed")), 0);
			json_t *al = json_array_get(json_object_get(hook, "alerts"), 0);
			cr_expect_eq(json_array_size(json_object_get(hook, "alerts")), 1);
			cr_expect_str_eq(json_string_value(json_object_get(al, "state")), "firing");
			cr_expect_str_eq(json_string_value(json_object_get(al, "previous")), "ok");
			cr_expect_str_eq(json_string_value(json_object_get(al, "notice")), "firing");
			cr_expect_float_eq(json_number_value(json_object_get(al, "value")), 60, 1e-9);
			cr_expect_eq(json_integer_value(json_object_get(al, "ts_ms")), now_ms);
			cr_expect_str_eq(json_string_value(json_object_get(json_object_get(al, "rule"), "id")), id2);
			cr_expect_str_eq(json_string_value(json_object_get(json_object_get(al, "rule"), "kind")),
					 "stopped_responding");
			json_decref(hook);
		}
	}
	dts_notifier_stats_read(n, &s);
	cr_expect_eq(s.sent[DTS_CHAN_EMAIL] + s.sent[DTS_CHAN_SMS] + s.sent[DTS_CHAN_WEBHOOK], 3);
	cr_expect_eq(s.batches, 1, "one batch per user per round");

	/* Resolve: a message saying so, with how long it fired. */
	sent_reset();
	feed("query", true, 20, 0);
	now_ms += 125000;
	feed("worker", false, 0, now_ms);
	dts_alerts_round(a, now_ms);
	dts_notifier_step(n, now_ms);
	cr_assert_eq(nsent, 3);
	for (size_t i = 0; i < nsent; i++)
		if (sent[i].channel == DTS_CHAN_EMAIL) {
			cr_expect_str_eq(sent[i].subject, "[DaTtSs] 2 alerts: 2 resolved");
			cr_expect(strstr(sent[i].text, "RESOLVED: slow queries\n"), "%s", sent[i].text);
			cr_expect(strstr(sent[i].text, ", for 2 min 5 s\n"), "%s", sent[i].text);
		}
	dts_alerts_close(a);
	dts_notifier_destroy(n);
}

Test(notify, flapping_rule_is_rate_limited)
{
	/* 60 messages per hour = one token a minute; a burst of 2. */
	struct dts_notifier *n = notifier_new(60, 2, 0);
	struct dts_alerts *a = alerts_open(n, 100);
	struct dts_notify_stats s;
	size_t i;

	add(a, "alice", "{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":100,\"name\":\"flappy\","
			"\"channels\":[{\"type\":\"email\",\"to\":[\"ops@example.com\"]}]}", NULL);
	/* The value crosses the limit every 5 s for 50 s: ten notices (firing, resolved, ...). */
	for (i = 0; i < 10; i++) {
		feed("query", true, i % 2 ? 50 : 150, 0);
		dts_alerts_round(a, now_ms);
		dts_notifier_step(n, now_ms);
		now_ms += 5000;
	}
	cr_expect_eq(nsent, 2, "the burst: %zu messages", nsent);
	dts_notifier_stats_read(n, &s);
	cr_expect_eq(s.suppressed, 8);
	cr_expect_eq(s.sent[DTS_CHAN_EMAIL], 2);

	/* The next token (one minute after the burst began): one message with the latest state and the count. */
	for (int64_t end = now_ms + 60000; now_ms < end; now_ms += 1000)
		dts_notifier_step(n, now_ms);
	cr_assert_eq(nsent, 3, "exactly one catch-up message: %zu", nsent);
	cr_expect_eq(sent[2].suppressed, 8);
	cr_expect_eq(sent[2].events, 1, "the latest event of the rule, not all eight");
	cr_expect(strstr(sent[2].text, "8 notifications were held back by the rate limit since"), "%s", sent[2].text);
	cr_expect(strstr(sent[2].text, "RESOLVED: flappy"), "the last notice was a resolve: %s", sent[2].text);
	cr_expect_str_eq(sent[2].subject, "[DaTtSs] RESOLVED: flappy");
	/* and nothing more without news */
	for (int64_t end = now_ms + 600000; now_ms < end; now_ms += 5000)
		dts_notifier_step(n, now_ms);
	cr_expect_eq(nsent, 3);
	dts_alerts_close(a);
	dts_notifier_destroy(n);
}

Test(notify, retries_follow_the_backoff_schedule)
{
	struct dts_notifier *n = notifier_new(20, 5, 4);
	struct dts_notify_batch *b = dts_notify_batch_new("alice", now_ms, 1);
	struct dts_notify_stats s;
	int64_t start = now_ms, next;
	const int64_t want[] = { 0, 2000, 6000, 14000 }; /* attempts at +0, then 2 s, 4 s, 8 s apart */

	b->ev[0].rule = rule_of("{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":1," HOOK "}");
	strcpy(b->ev[0].rule.id, "0123456789ab");
	b->ev[0].change = (struct dts_alert_change){ OK, FIRE, NF, 5, now_ms };
	b->ev[0].ts_ms = now_ms;
	fail_next = 3;
	cr_assert_eq(dts_notifier_submit(n, b), 0);
	for (; now_ms < start + 60000; now_ms += 100) {
		next = dts_notifier_step(n, now_ms);
		cr_expect_gt(next, now_ms, "step returns a future wake-up time");
	}
	cr_assert_eq(nsent, 4, "3 failures, then success: %zu", nsent);
	for (size_t i = 0; i < 4; i++) {
		cr_expect_eq(sent[i].at_ms - start, want[i], "attempt %zu at +%lld ms, want +%lld", i,
			     (long long)(sent[i].at_ms - start), (long long)want[i]);
		cr_expect_eq(sent[i].attempt, i + 1);
	}
	dts_notifier_stats_read(n, &s);
	cr_expect_eq(s.errors[DTS_CHAN_WEBHOOK], 3);
	cr_expect_eq(s.retries[DTS_CHAN_WEBHOOK], 3);
	cr_expect_eq(s.sent[DTS_CHAN_WEBHOOK], 1);
	cr_expect_eq(s.failed[DTS_CHAN_WEBHOOK], 0);
	cr_expect_eq(s.pending, 0);

	/* Always failing: given up after 1 + retries attempts, counted. */
	sent_reset();
	fail_next = 100;
	b = dts_notify_batch_new("alice", now_ms, 1);
	b->ev[0].rule = rule_of("{\"kind\":\"above\"," SERIES ",\"stat\":\"avg\",\"limit\":1," HOOK "}");
	b->ev[0].change = (struct dts_alert_change){ OK, FIRE, NF, 5, now_ms };
	dts_notifier_submit(n, b);
	for (int64_t end = now_ms + 600000; now_ms < end; now_ms += 500)
		dts_notifier_step(n, now_ms);
	cr_expect_eq(attempts, 5);
	dts_notifier_stats_read(n, &s);
	cr_expect_eq(s.failed[DTS_CHAN_WEBHOOK], 1);
	cr_expect_eq(s.pending, 0);
	dts_notifier_destroy(n);
}

Test(notify, backoff_and_bucket_arithmetic)
{
	struct dts_tbucket b;
	const struct {
		unsigned retry;
		int64_t ms;
	} rows[] = { { 1, 2000 }, { 2, 4000 }, { 3, 8000 }, { 7, 128000 }, { 8, 256000 }, { 9, 300000 }, { 30, 300000 } };

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		cr_expect_eq(dts_notify_backoff_ms(rows[i].retry, DTS_NOTIFY_BACKOFF_MS, DTS_NOTIFY_BACKOFF_MAX_MS),
			     rows[i].ms, "retry %u", rows[i].retry);

	dts_tbucket_init(&b, 3, 0);
	for (int i = 0; i < 3; i++)
		cr_expect(dts_tbucket_take(&b, 3600, 3, 0), "burst token %d", i);
	cr_expect_not(dts_tbucket_take(&b, 3600, 3, 0));
	cr_expect_eq(dts_tbucket_ready_ms(&b, 3600, 3, 0), 1000, "3600 per hour: one a second");
	cr_expect_not(dts_tbucket_take(&b, 3600, 3, 999));
	cr_expect(dts_tbucket_take(&b, 3600, 3, 1000));
	cr_expect_eq(dts_tbucket_ready_ms(&b, 3600, 3, 100000000), 100000000);
	for (int i = 0; i < 3; i++)
		cr_expect(dts_tbucket_take(&b, 3600, 3, 100000000), "refilled to the burst, not beyond: %d", i);
	cr_expect_not(dts_tbucket_take(&b, 3600, 3, 100000000));
}

Test(notify, config_checks_name_the_key)
{
	const struct {
		const char *smtp_url, *smtp_from, *sms_url, *sms_account, *want;
	} rows[] = {
		{ "http://mail", "a@b.example", "", "", "smtp_url: must start with smtp:// or smtps://" },
		{ "smtp://mail", "", "", "", "smtp_from: required when smtp_url is set" },
		{ "smtps://mail:465", "not an address", "", "", "smtp_from: must be an email address" },
		{ "", "", "ftp://x", "AC1", "sms_url: must start with http:// or https://" },
		{ "", "", "https://api.example/2010-04-01", "", "sms_account: required when sms_url is set" },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct dts_notify_cfg c;
		char err[256] = "";

		dts_notify_cfg_defaults(&c);
		c.smtp_url = rows[i].smtp_url;
		c.smtp_from = rows[i].smtp_from;
		c.sms_url = rows[i].sms_url;
		c.sms_account = rows[i].sms_account;
		c.sms_token = "t";
		c.sms_from = "+15550000000";
		cr_expect_eq(dts_notify_cfg_check(&c, err, sizeof(err)), -EINVAL, "row %zu accepted", i);
		cr_expect(strncmp(err, rows[i].want, strlen(rows[i].want)) == 0, "row %zu: %s", i, err);
		cr_expect_null(dts_notifier_create(&c, err, sizeof(err)), "row %zu: created", i);
	}
}

/* ---- config keys ----------------------------------------------------------------------------------------------- */

Test(config, alert_keys_as_flags)
{
	struct dts_config c;
	char err[512] = "", *dump = NULL;
	size_t dlen = 0;
	FILE *f;
	char *argv[] = { "dattssd", "--smtp-url=smtps://mail.example.com:465", "--smtp-from=alerts@example.com",
			 "--smtp-user=alerts", "--smtp-password=hunter2", "--no-smtp-starttls",
			 "--sms-url=https://api.example.com/2010-04-01/", "--sms-account=AC42", "--sms-token=s3cr3t",
			 "--sms-from=+15550001111", "--alert-eval-s=1", "--alert-repeat-s=0", "--alert-rate-per-hour=360",
			 "--alert-rate-burst=1", "--alert-retries=2", "--alert-minute-s=2", "--alert-max-rules=7",
			 "--notify-timeout-s=3", "--alert-resolved-s=30", NULL };

	dts_config_defaults(&c);
	cr_expect_eq(c.alert_eval_s, 5);
	cr_expect(c.smtp_starttls);
	cr_assert_eq(dts_config_parse_args(&c, sizeof(argv) / sizeof(argv[0]) - 1, argv, err, sizeof(err)), 0, "%s",
		     err);
	cr_expect_str_eq(c.smtp_url, "smtps://mail.example.com:465");
	cr_expect_str_eq(c.smtp_password, "hunter2");
	cr_expect_not(c.smtp_starttls);
	cr_expect_eq(c.alert_eval_s, 1);
	cr_expect_eq(c.alert_repeat_s, 0);
	cr_expect_eq(c.alert_rate_per_hour, 360);
	cr_expect_eq(c.alert_minute_s, 2);
	cr_expect_eq(c.alert_max_rules, 7);
	cr_expect_eq(c.notify_timeout_s, 3);
	f = open_memstream(&dump, &dlen);
	cr_assert_not_null(f);
	cr_assert_eq(dts_config_dump(&c, f), 0);
	fclose(f);
	cr_expect_null(strstr(dump, "hunter2"), "the SMTP password is redacted:\n%s", dump);
	cr_expect_null(strstr(dump, "s3cr3t"), "the SMS token is redacted");
	cr_expect(strstr(dump, "# smtp_password: set, 7 bytes, redacted\n"), "%s", dump);
	cr_expect(strstr(dump, "\nalert_rate_per_hour = 360\n"), "%s", dump);
	free(dump);
}

Test(config, alert_key_errors)
{
	const struct {
		const char *arg, *want;
	} rows[] = {
		{ "--alert-eval-s=0", "--alert-eval-s: must be an integer between 1 and 300, got '0'" },
		{ "--alert-rate-per-hour=0", "--alert-rate-per-hour: must be an integer between 1 and 36000" },
		{ "--alert-minute-s=61", "--alert-minute-s: must be an integer between 1 and 60" },
		{ "--smtp-url=mail.example.com", "smtp_url: must start with smtp:// or smtps://" },
		{ "--smtp-url=smtp://mail.example.com", "smtp_from: required when smtp_url is set" },
		{ "--sms-url=https://api.example.com", "sms_account: required when sms_url is set" },
		{ "--call-twiml-url=file:///etc/passwd", "call_twiml_url: must start with http:// or https://" },
		{ "--smtp-password=a\tb", "--smtp-password: must not contain control characters" },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct dts_config c;
		char err[512] = "";
		char *argv[] = { "dattssd", (char *)rows[i].arg, NULL };

		dts_config_defaults(&c);
		cr_expect_lt(dts_config_parse_args(&c, 2, argv, err, sizeof(err)), 0, "%s accepted", rows[i].arg);
		cr_expect(strncmp(err, rows[i].want, strlen(rows[i].want)) == 0, "%s:\n  got  %s\n  want %s",
			  rows[i].arg, err, rows[i].want);
		cr_expect_null(strstr(err, "a\tb"), "a password is never echoed");
	}
}
