/*
 * notify.c - the notifier thread: per-user rate limit, one message per destination, delivery over SMTP and HTTP with
 * libcurl, retries with exponential backoff (contract in notify.h, user guide in docs/alerts.md).
 *
 * Data owned by the notifier thread alone (no lock): the per-user limiters (token bucket, held events, suppressed
 * count) and the jobs (messages waiting for their next attempt). Shared with the submitting threads: the queue of
 * batches, under mu; the counters, relaxed atomics.
 *
 * Each send uses a fresh curl easy handle: notifications are rare (a rate limit caps them), and a fresh handle keeps
 * no connection or state of one user's destination around for another's.
 */
#define _GNU_SOURCE
#include "notify.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "strbuf.h"

#ifndef DTS_VERSION
#define DTS_VERSION "0.1.0"
#endif

#define REPLY_KEEP 256 /* bytes of an HTTP error reply quoted in the log */

/* ---- pure helpers ---------------------------------------------------------------------------------------------- */

void dts_tbucket_init(struct dts_tbucket *b, unsigned burst, int64_t now_ms)
{
	b->tokens = burst;
	b->at_ms = now_ms;
}

static void bucket_refill(struct dts_tbucket *b, unsigned rate_per_hour, unsigned burst, int64_t now_ms)
{
	if (now_ms > b->at_ms) {
		b->tokens += (double)(now_ms - b->at_ms) * rate_per_hour / 3600000.0;
		if (b->tokens > burst)
			b->tokens = burst;
		b->at_ms = now_ms;
	}
}

bool dts_tbucket_take(struct dts_tbucket *b, unsigned rate_per_hour, unsigned burst, int64_t now_ms)
{
	bucket_refill(b, rate_per_hour, burst, now_ms);
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}

int64_t dts_tbucket_ready_ms(const struct dts_tbucket *b, unsigned rate_per_hour, unsigned burst, int64_t now_ms)
{
	struct dts_tbucket t = *b;

	bucket_refill(&t, rate_per_hour, burst, now_ms);
	if (t.tokens >= 1.0)
		return now_ms;
	if (rate_per_hour == 0)
		return INT64_MAX;
	return now_ms + (int64_t)ceil((1.0 - t.tokens) * 3600000.0 / rate_per_hour);
}

int64_t dts_notify_backoff_ms(unsigned retry, unsigned base_ms, unsigned max_ms)
{
	int64_t d = base_ms;

	for (unsigned i = 1; i < retry && d < max_ms; i++)
		d *= 2;
	return d < max_ms ? d : max_ms;
}

struct dts_notify_batch *dts_notify_batch_new(const char *user, int64_t ts_ms, size_t n)
{
	struct dts_notify_batch *b = calloc(1, sizeof(*b) + n * sizeof(b->ev[0]));

	if (!b)
		return NULL;
	snprintf(b->user, sizeof(b->user), "%s", user);
	b->ts_ms = ts_ms;
	b->n = n;
	return b;
}

/* ---- configuration --------------------------------------------------------------------------------------------- */

void dts_notify_cfg_defaults(struct dts_notify_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->smtp_starttls = true;
	cfg->timeout_s = 10;
	cfg->rate_per_hour = 20;
	cfg->burst = 5;
	cfg->retries = 5;
	cfg->backoff_ms = DTS_NOTIFY_BACKOFF_MS;
	cfg->backoff_max_ms = DTS_NOTIFY_BACKOFF_MAX_MS;
}

void dts_notify_cfg_from_config(struct dts_notify_cfg *cfg, const struct dts_config *c)
{
	dts_notify_cfg_defaults(cfg);
	cfg->smtp_url = c->smtp_url;
	cfg->smtp_user = c->smtp_user;
	cfg->smtp_password = c->smtp_password;
	cfg->smtp_from = c->smtp_from;
	cfg->smtp_starttls = c->smtp_starttls;
	cfg->sms_url = c->sms_url;
	cfg->sms_account = c->sms_account;
	cfg->sms_token = c->sms_token;
	cfg->sms_from = c->sms_from;
	cfg->call_url = c->call_url;
	cfg->call_from = c->call_from;
	cfg->call_twiml_url = c->call_twiml_url;
	cfg->timeout_s = c->notify_timeout_s;
	cfg->rate_per_hour = c->alert_rate_per_hour;
	cfg->burst = c->alert_rate_burst;
	cfg->retries = c->alert_retries;
}

static bool set(const char *s)
{
	return s && *s;
}

static bool has_scheme(const char *s, const char *a, const char *b)
{
	return strncmp(s, a, strlen(a)) == 0 || strncmp(s, b, strlen(b)) == 0;
}

int dts_notify_cfg_check(const struct dts_notify_cfg *c, char *err, size_t errlen)
{
	const char *at;

	if (set(c->smtp_url) && !has_scheme(c->smtp_url, "smtp://", "smtps://")) {
		snprintf(err, errlen, "smtp_url: must start with smtp:// or smtps://, got '%.64s'", c->smtp_url);
		return -EINVAL;
	}
	if (set(c->smtp_url) && !set(c->smtp_from)) {
		snprintf(err, errlen, "smtp_from: required when smtp_url is set (the sender address of alert emails)");
		return -EINVAL;
	}
	at = set(c->smtp_from) ? strchr(c->smtp_from, '@') : NULL;
	if (set(c->smtp_from) && (!at || at == c->smtp_from || !at[1] || strpbrk(c->smtp_from, " <>\",;"))) {
		snprintf(err, errlen, "smtp_from: must be an email address like alerts@example.com, got '%.64s'",
			 c->smtp_from);
		return -EINVAL;
	}
	if (set(c->smtp_user) != set(c->smtp_password)) {
		snprintf(err, errlen, "%s: required with %s", set(c->smtp_user) ? "smtp_password" : "smtp_user",
			 set(c->smtp_user) ? "smtp_user" : "smtp_password");
		return -EINVAL;
	}
	for (int i = 0; i < 3; i++) {
		const char *key = i == 0 ? "sms_url" : i == 1 ? "call_url" : "call_twiml_url";
		const char *v = i == 0 ? c->sms_url : i == 1 ? c->call_url : c->call_twiml_url;

		if (set(v) && !has_scheme(v, "http://", "https://")) {
			snprintf(err, errlen, "%s: must start with http:// or https://, got '%.64s'", key, v);
			return -EINVAL;
		}
	}
	if (set(c->sms_url) || set(c->call_url)) {
		const char *missing = !set(c->sms_account) ? "sms_account"
				      : !set(c->sms_token) ? "sms_token"
				      : !set(c->sms_from) && !set(c->call_from) ? "sms_from"
										   : NULL;

		if (missing) {
			snprintf(err, errlen, "%s: required when %s is set (the provider's account, token and sender)",
				 missing, set(c->sms_url) ? "sms_url" : "call_url");
			return -EINVAL;
		}
	}
	if (c->rate_per_hour == 0 || c->burst == 0) {
		snprintf(err, errlen, "%s: must be at least 1", c->burst ? "alert_rate_per_hour" : "alert_rate_burst");
		return -EINVAL;
	}
	return 0;
}

/* ---- the notifier ---------------------------------------------------------------------------------------------- */

struct job {
	uint8_t channel;
	char user[DTS_MAX_USER + 1];
	char dest[DTS_ALERT_DEST_MAX + 1];
	char *subject, *text, *json;
	unsigned events;
	uint64_t suppressed;
	unsigned attempts; /* made so far */
	int64_t next_ms;
};

struct ulimit {
	char user[DTS_MAX_USER + 1];
	struct dts_tbucket bucket;
	uint64_t suppressed; /* events held back since the last message went out */
	int64_t suppressed_since_ms;
	size_t nheld;
	struct dts_notify_event *held; /* DTS_NOTIFY_HELD_MAX, allocated at the first suppression */
};

struct qnode {
	struct qnode *next;
	struct dts_notify_batch *b;
};

struct dts_notifier {
	struct dts_notify_cfg cfg; /* string pointers below point into strs */
	char *strs[11];
	unsigned channels;

	pthread_mutex_t mu; /* queue, stop */
	pthread_cond_t cv;
	struct qnode *qhead, *qtail;
	size_t qlen;
	bool stop;
	pthread_t thread;
	bool started;
	bool curl_ready; /* curl_global_init succeeded: cleanup at destroy */

	/* Notifier thread only. */
	struct ulimit *lims;
	size_t nlims, caplims;
	struct job **jobs;
	size_t njobs, capjobs;

	_Atomic uint64_t batches, batches_dropped, suppressed, pending;
	_Atomic uint64_t sent[DTS_CHAN_COUNT], errors[DTS_CHAN_COUNT], retries[DTS_CHAN_COUNT], failed[DTS_CHAN_COUNT];
};

static int64_t wall_ms(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void inc(_Atomic uint64_t *c, uint64_t by)
{
	atomic_fetch_add_explicit(c, by, memory_order_relaxed);
}

static int real_send(void *ctx, const struct dts_notify_msg *m, char *err, size_t errlen);

struct dts_notifier *dts_notifier_create(const struct dts_notify_cfg *cfg, char *err, size_t errlen)
{
	struct dts_notifier *n;
	const char **fields[11];
	size_t nf = 0;

	if (dts_notify_cfg_check(cfg, err, errlen) != 0) {
		errno = EINVAL;
		return NULL;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		snprintf(err, errlen, "notifier: out of memory");
		errno = ENOMEM;
		return NULL;
	}
	n->cfg = *cfg;
	fields[nf++] = &n->cfg.smtp_url;
	fields[nf++] = &n->cfg.smtp_user;
	fields[nf++] = &n->cfg.smtp_password;
	fields[nf++] = &n->cfg.smtp_from;
	fields[nf++] = &n->cfg.sms_url;
	fields[nf++] = &n->cfg.sms_account;
	fields[nf++] = &n->cfg.sms_token;
	fields[nf++] = &n->cfg.sms_from;
	fields[nf++] = &n->cfg.call_url;
	fields[nf++] = &n->cfg.call_from;
	fields[nf++] = &n->cfg.call_twiml_url;
	for (size_t i = 0; i < nf; i++) {
		size_t len;

		n->strs[i] = strdup(*fields[i] ? *fields[i] : "");
		if (!n->strs[i]) {
			snprintf(err, errlen, "notifier: out of memory");
			dts_notifier_destroy(n);
			errno = ENOMEM;
			return NULL;
		}
		len = strlen(n->strs[i]);
		while ((i == 4 || i == 8) && len && n->strs[i][len - 1] == '/')
			n->strs[i][--len] = '\0'; /* base URLs: we append "/Accounts/..." */
		*fields[i] = n->strs[i];
	}
	if (!*n->cfg.call_url)
		n->cfg.call_url = n->cfg.sms_url;
	if (!*n->cfg.call_from)
		n->cfg.call_from = n->cfg.sms_from;
	if (!n->cfg.clock)
		n->cfg.clock = wall_ms;
	if (!n->cfg.send)
		n->cfg.send = real_send, n->cfg.send_ctx = n;
	n->channels = 1u << DTS_CHAN_WEBHOOK;
	if (*n->cfg.smtp_url)
		n->channels |= 1u << DTS_CHAN_EMAIL;
	if (*n->cfg.sms_url)
		n->channels |= 1u << DTS_CHAN_SMS;
	if (*n->cfg.call_url)
		n->channels |= 1u << DTS_CHAN_CALL;
	pthread_mutex_init(&n->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&n->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "notifier: libcurl failed to initialise");
		dts_notifier_destroy(n);
		errno = EIO;
		return NULL;
	}
	n->curl_ready = true;
	return n;
}

unsigned dts_notifier_channels(const struct dts_notifier *n)
{
	return n->channels;
}

int dts_notifier_submit(struct dts_notifier *n, struct dts_notify_batch *b)
{
	struct qnode *q = malloc(sizeof(*q));

	inc(&n->batches, 1);
	pthread_mutex_lock(&n->mu);
	if (!q || n->qlen >= DTS_NOTIFY_QUEUE_MAX) {
		pthread_mutex_unlock(&n->mu);
		inc(&n->batches_dropped, 1);
		dts_err("notify", "notification queue full: %zu notification%s of user %s dropped", b->n,
			b->n == 1 ? "" : "s", b->user);
		free(q);
		free(b);
		return -ENOSPC;
	}
	q->next = NULL;
	q->b = b;
	if (n->qtail)
		n->qtail->next = q;
	else
		n->qhead = q;
	n->qtail = q;
	n->qlen++;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
	return 0;
}

/* ---- rendering ------------------------------------------------------------------------------------------------- */

static const char *notice_word(unsigned notice)
{
	switch (notice) {
	case DTS_NOTICE_FIRING:
		return "FIRING";
	case DTS_NOTICE_RESOLVED:
		return "RESOLVED";
	case DTS_NOTICE_REPEAT:
		return "STILL FIRING";
	default:
		return "CHANGED";
	}
}

/* For speech: words, not capitals that some voices spell out letter by letter. */
static const char *spoken_word(unsigned notice)
{
	switch (notice) {
	case DTS_NOTICE_FIRING:
		return "Firing";
	case DTS_NOTICE_RESOLVED:
		return "Resolved";
	case DTS_NOTICE_REPEAT:
		return "Still firing";
	default:
		return "Changed";
	}
}

static void utc_text(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void duration_text(int64_t ms, char *buf, size_t len)
{
	int64_t s = ms / 1000;

	if (s < 120)
		snprintf(buf, len, "%" PRId64 " s", s);
	else if (s < 7200)
		snprintf(buf, len, "%" PRId64 " min %" PRId64 " s", s / 60, s % 60);
	else
		snprintf(buf, len, "%" PRId64 " h %" PRId64 " min", s / 3600, s / 60 % 60);
}

/* The rule's name, or what it watches when it has none. */
static void title(const struct dts_notify_event *e, char *buf, size_t len)
{
	if (e->rule.name[0])
		snprintf(buf, len, "%s", e->rule.name);
	else
		dts_alert_rule_describe(&e->rule, buf, len);
}

/* The value as people read it: "153.2", or "no data for 3 min 5 s" for the stopped kinds. */
static void value_text(const struct dts_notify_event *e, char *buf, size_t len)
{
	double v = e->change.value;
	char d[48];

	if (!isfinite(v)) {
		snprintf(buf, len, "no value");
		return;
	}
	switch (e->rule.kind) {
	case DTS_ALERT_STOPPED_WORKING:
		duration_text((int64_t)(v * 1000), d, sizeof(d));
		snprintf(buf, len, "no data for %s", d);
		break;
	case DTS_ALERT_STOPPED_RESPONDING:
		duration_text((int64_t)(v * 1000), d, sizeof(d));
		snprintf(buf, len, "no heartbeat for %s", d);
		break;
	default:
		snprintf(buf, len, "%.6g", v);
		break;
	}
}

static const struct dts_notify_event **select_events(const struct dts_notify_event *ev, size_t nev, uint8_t channel,
						     const char *dest, size_t *count)
{
	const struct dts_notify_event **sel = malloc((nev ? nev : 1) * sizeof(*sel));
	size_t k = 0;

	if (!sel)
		return NULL;
	for (size_t i = 0; i < nev; i++)
		for (unsigned c = 0; c < ev[i].rule.nchannels; c++)
			if (ev[i].rule.ch[c].type == channel && strcmp(ev[i].rule.ch[c].dest, dest) == 0) {
				sel[k++] = &ev[i];
				break;
			}
	*count = k;
	return sel;
}

static void render_email(struct job *j, const struct dts_notify_event **sel, size_t k, int64_t now_ms,
			 int64_t suppressed_since_ms)
{
	struct dts_sb s = { 0 }, b = { 0 };
	unsigned counts[4] = { 0 };
	char t[DTS_ALERT_NAME_MAX + 512], v[96], when[40], d[48];

	for (size_t i = 0; i < k; i++)
		counts[sel[i]->change.notice & 3]++;
	if (k == 1) {
		title(sel[0], t, sizeof(t));
		dts_sb_printf(&s, "[DaTtSs] %s: %s", notice_word(sel[0]->change.notice), t);
	} else {
		dts_sb_printf(&s, "[DaTtSs] %zu alerts:", k);
		if (counts[DTS_NOTICE_FIRING])
			dts_sb_printf(&s, " %u firing", counts[DTS_NOTICE_FIRING]);
		if (counts[DTS_NOTICE_REPEAT])
			dts_sb_printf(&s, "%s %u still firing", counts[DTS_NOTICE_FIRING] ? "," : "",
				  counts[DTS_NOTICE_REPEAT]);
		if (counts[DTS_NOTICE_RESOLVED])
			dts_sb_printf(&s, "%s %u resolved",
				  counts[DTS_NOTICE_FIRING] || counts[DTS_NOTICE_REPEAT] ? "," : "",
				  counts[DTS_NOTICE_RESOLVED]);
	}
	utc_text(now_ms, when, sizeof(when));
	dts_sb_printf(&b, "Alerts of user %s at %s:\n", j->user, when);
	for (size_t i = 0; i < k; i++) {
		const struct dts_notify_event *e = sel[i];

		title(e, t, sizeof(t));
		dts_sb_printf(&b, "\n%s: %s\n", notice_word(e->change.notice), t);
		dts_alert_rule_describe(&e->rule, t, sizeof(t));
		dts_sb_printf(&b, "  watches: %s\n", t);
		value_text(e, v, sizeof(v));
		dts_sb_printf(&b, "  value:   %s\n", v);
		utc_text(e->change.fired_ms, when, sizeof(when));
		if (e->change.notice == DTS_NOTICE_RESOLVED) {
			duration_text(e->ts_ms - e->change.fired_ms, d, sizeof(d));
			dts_sb_printf(&b, "  fired:   %s, for %s\n", when, d);
		} else {
			dts_sb_printf(&b, "  since:   %s\n", when);
		}
		dts_sb_printf(&b, "  rule:    %s (%s)\n", e->rule.id, dts_alert_kind_name(e->rule.kind));
	}
	if (j->suppressed) {
		utc_text(suppressed_since_ms, when, sizeof(when));
		dts_sb_printf(&b, "\n%" PRIu64 " notification%s held back by the rate limit since %s; the latest state of "
			      "each of those rules is included above.\n",
			  j->suppressed, j->suppressed == 1 ? " was" : "s were", when);
	}
	dts_sb_printf(&b, "\n-- \nDaTtSs alerts (dattssd %s)\n", DTS_VERSION);
	j->subject = dts_sb_take(&s);
	j->text = dts_sb_take(&b);
}

/* One short line per event for SMS and calls. */
static void render_short(struct job *j, const struct dts_notify_event **sel, size_t k, bool spoken)
{
	struct dts_sb b = { 0 };
	char t[DTS_ALERT_NAME_MAX + 512], v[96];

	if (spoken)
		dts_sb_printf(&b, "DaTtSs alert for user %s.", j->user);
	for (size_t i = 0; i < k; i++) {
		const char *w = notice_word(sel[i]->change.notice);

		title(sel[i], t, sizeof(t));
		value_text(sel[i], v, sizeof(v));
		if (spoken)
			dts_sb_printf(&b, " %s: %s. Value %s.", spoken_word(sel[i]->change.notice), t, v);
		else
			dts_sb_printf(&b, "%sDaTtSs %s %s: %s", i ? "\n" : "", w, t, v);
	}
	if (j->suppressed)
		dts_sb_printf(&b, spoken ? " %" PRIu64 " more notifications were held back by the rate limit."
				     : "\n(%" PRIu64 " more held back by the rate limit)",
			  j->suppressed);
	j->text = dts_sb_take(&b);
	if (j->text && strlen(j->text) > DTS_NOTIFY_SMS_MAX)
		strcpy(j->text + DTS_NOTIFY_SMS_MAX - 3, "...");
}

static void render_webhook(struct job *j, const struct dts_notify_event **sel, size_t k, int64_t now_ms)
{
	json_t *root = json_object(), *arr = json_array();
	char d[DTS_ALERT_NAME_MAX + 512];

	if (!root || !arr) {
		json_decref(root);
		json_decref(arr);
		return;
	}
	for (size_t i = 0; i < k; i++) {
		const struct dts_notify_event *e = sel[i];
		json_t *o = json_object();
		const char *notice = e->change.notice == DTS_NOTICE_FIRING     ? "firing"
				     : e->change.notice == DTS_NOTICE_RESOLVED ? "resolved"
										: "repeat";

		dts_alert_rule_describe(&e->rule, d, sizeof(d));
		json_object_set_new(o, "rule", dts_alert_rule_json(&e->rule));
		json_object_set_new(o, "state", json_string(dts_alert_state_name(e->change.to)));
		json_object_set_new(o, "previous", json_string(dts_alert_state_name(e->change.from)));
		json_object_set_new(o, "notice", json_string(notice));
		json_object_set_new(o, "value", isfinite(e->change.value) ? json_real(e->change.value) : json_null());
		json_object_set_new(o, "ts_ms", json_integer(e->ts_ms));
		json_object_set_new(o, "fired_ms", json_integer(e->change.fired_ms));
		json_object_set_new(o, "description", json_string(d));
		json_array_append_new(arr, o);
	}
	json_object_set_new(root, "user", json_string(j->user));
	json_object_set_new(root, "ts_ms", json_integer(now_ms));
	json_object_set_new(root, "suppressed", json_integer((json_int_t)j->suppressed));
	json_object_set_new(root, "alerts", arr);
	j->json = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(root);
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->subject);
	free(j->text);
	free(j->json);
	free(j);
}

static void add_job(struct dts_notifier *n, struct job *j)
{
	if (n->njobs == n->capjobs) {
		size_t cap = n->capjobs ? n->capjobs * 2 : 16;
		struct job **nj = n->njobs < DTS_NOTIFY_JOBS_MAX ? realloc(n->jobs, cap * sizeof(*nj)) : NULL;

		if (!nj) {
			inc(&n->failed[j->channel], 1);
			dts_err("notify", "too many notifications waiting: %s message to %s for user %s dropped",
				dts_channel_name(j->channel), j->dest, j->user);
			job_free(j);
			return;
		}
		n->jobs = nj;
		n->capjobs = cap;
	}
	n->jobs[n->njobs++] = j;
	atomic_store_explicit(&n->pending, n->njobs, memory_order_relaxed);
}

/* Turn events (already admitted by the rate limit) into one job per destination. */
static void make_jobs(struct dts_notifier *n, const char *user, const struct dts_notify_event *ev, size_t nev,
		      uint64_t suppressed, int64_t suppressed_since_ms, int64_t now_ms)
{
	for (size_t i = 0; i < nev; i++) {
		for (unsigned c = 0; c < ev[i].rule.nchannels; c++) {
			const struct dts_alert_channel *ch = &ev[i].rule.ch[c];
			const struct dts_notify_event **sel;
			bool done_before = false;
			struct job *j;
			size_t k;

			/* Each destination once: skip it when an earlier event (or channel) already had it. */
			for (size_t p = 0; p <= i && !done_before; p++)
				for (unsigned q = 0; q < (p == i ? c : ev[p].rule.nchannels) && !done_before; q++)
					done_before = ev[p].rule.ch[q].type == ch->type &&
						      strcmp(ev[p].rule.ch[q].dest, ch->dest) == 0;
			if (done_before)
				continue;
			if (!(n->channels & (1u << ch->type))) {
				inc(&n->failed[ch->type], 1);
				dts_warn("notify", "rule %s of user %s names %s, which is not configured: not sent",
					 ev[i].rule.id, user, dts_channel_name(ch->type));
				continue;
			}
			sel = select_events(ev, nev, ch->type, ch->dest, &k);
			j = calloc(1, sizeof(*j));
			if (!sel || !j) {
				free(sel);
				free(j);
				inc(&n->failed[ch->type], 1);
				continue;
			}
			j->channel = ch->type;
			snprintf(j->user, sizeof(j->user), "%s", user);
			snprintf(j->dest, sizeof(j->dest), "%s", ch->dest);
			j->events = (unsigned)k;
			j->suppressed = suppressed;
			j->next_ms = now_ms;
			switch (ch->type) {
			case DTS_CHAN_EMAIL:
				render_email(j, sel, k, now_ms, suppressed_since_ms);
				break;
			case DTS_CHAN_SMS:
				render_short(j, sel, k, false);
				break;
			case DTS_CHAN_CALL:
				render_short(j, sel, k, true);
				break;
			default:
				render_webhook(j, sel, k, now_ms);
				break;
			}
			free(sel);
			if ((ch->type == DTS_CHAN_WEBHOOK && !j->json) || (ch->type != DTS_CHAN_WEBHOOK && !j->text) ||
			    (ch->type == DTS_CHAN_EMAIL && !j->subject)) {
				inc(&n->failed[ch->type], 1);
				dts_err("notify", "out of memory rendering a %s message for user %s",
					dts_channel_name(ch->type), user);
				job_free(j);
				continue;
			}
			add_job(n, j);
		}
	}
}

/* ---- rate limit ------------------------------------------------------------------------------------------------ */

static struct ulimit *limiter(struct dts_notifier *n, const char *user, int64_t now_ms)
{
	for (size_t i = 0; i < n->nlims; i++)
		if (strcmp(n->lims[i].user, user) == 0)
			return &n->lims[i];
	if (n->nlims == n->caplims) {
		size_t cap = n->caplims ? n->caplims * 2 : 8;
		struct ulimit *nl = realloc(n->lims, cap * sizeof(*nl));

		if (!nl)
			return NULL;
		n->lims = nl;
		n->caplims = cap;
	}
	memset(&n->lims[n->nlims], 0, sizeof(n->lims[0]));
	snprintf(n->lims[n->nlims].user, sizeof(n->lims[0].user), "%s", user);
	dts_tbucket_init(&n->lims[n->nlims].bucket, n->cfg.burst, now_ms);
	return &n->lims[n->nlims++];
}

/* Keep the latest event of each rule while rate-limited. */
static void hold(struct dts_notifier *n, struct ulimit *u, const struct dts_notify_event *e)
{
	size_t i;

	inc(&n->suppressed, 1);
	if (!u->suppressed)
		u->suppressed_since_ms = e->ts_ms;
	u->suppressed++;
	if (!u->held) {
		u->held = malloc(DTS_NOTIFY_HELD_MAX * sizeof(*u->held));
		if (!u->held)
			return; /* counted, not held: the next message still says how many */
	}
	for (i = 0; i < u->nheld; i++)
		if (strcmp(u->held[i].rule.id, e->rule.id) == 0)
			break;
	if (i < u->nheld) {
		/* A resolve after a suppressed firing keeps the time it fired; the latest state wins. */
		u->held[i] = *e;
	} else if (u->nheld < DTS_NOTIFY_HELD_MAX) {
		u->held[u->nheld++] = *e;
	}
}

/* Send what u holds together with ev (which supersede held events of the same rules). Caller took a token. */
static void release(struct dts_notifier *n, struct ulimit *u, const struct dts_notify_event *ev, size_t nev,
		    int64_t now_ms)
{
	struct dts_notify_event *all = NULL;
	size_t k = 0;

	if (u->nheld) {
		all = malloc((u->nheld + nev) * sizeof(*all));
		if (all) {
			for (size_t i = 0; i < u->nheld; i++) {
				bool newer = false;

				for (size_t m = 0; m < nev && !newer; m++)
					newer = strcmp(ev[m].rule.id, u->held[i].rule.id) == 0;
				if (!newer)
					all[k++] = u->held[i];
			}
			if (nev)
				memcpy(all + k, ev, nev * sizeof(*ev));
			k += nev;
		}
	}
	if (u->suppressed)
		dts_info("notify", "user %s: sending %zu held notification%s (%" PRIu64 " suppressed by the rate "
				   "limit)", u->user, u->nheld, u->nheld == 1 ? "" : "s", u->suppressed);
	make_jobs(n, u->user, all ? all : ev, all ? k : nev, u->suppressed, u->suppressed_since_ms, now_ms);
	free(all);
	u->nheld = 0;
	u->suppressed = 0;
	free(u->held);
	u->held = NULL;
}

static void admit(struct dts_notifier *n, struct dts_notify_batch *b, int64_t now_ms)
{
	struct ulimit *u = limiter(n, b->user, now_ms);

	if (!u) {
		dts_err("notify", "out of memory: %zu notifications of user %s lost", b->n, b->user);
		return;
	}
	if (dts_tbucket_take(&u->bucket, n->cfg.rate_per_hour, n->cfg.burst, now_ms)) {
		release(n, u, b->ev, b->n, now_ms);
		return;
	}
	if (!u->suppressed)
		dts_warn("notify", "user %s: rate limit reached (%u messages per hour, burst %u); notifications "
				   "are held and sent together when the limit allows",
			 b->user, n->cfg.rate_per_hour, n->cfg.burst);
	for (size_t i = 0; i < b->n; i++)
		hold(n, u, &b->ev[i]);
}

/* ---- sending --------------------------------------------------------------------------------------------------- */

static void run_job(struct dts_notifier *n, struct job *j, int64_t now_ms, bool last_chance, bool *done)
{
	struct dts_notify_msg m = {
		.channel = j->channel, .user = j->user, .dest = j->dest, .subject = j->subject, .text = j->text,
		.json = j->json, .events = j->events, .suppressed = j->suppressed, .attempt = j->attempts + 1,
	};
	char err[512] = "";
	int rc;

	if (j->attempts)
		inc(&n->retries[j->channel], 1);
	rc = n->cfg.send(n->cfg.send_ctx, &m, err, sizeof(err));
	j->attempts++;
	if (rc == 0) {
		inc(&n->sent[j->channel], 1);
		dts_info("notify", "%s to %s for user %s sent (%u event%s%s)", dts_channel_name(j->channel), j->dest,
			 j->user, j->events, j->events == 1 ? "" : "s", j->attempts > 1 ? ", after retries" : "");
		*done = true;
		return;
	}
	inc(&n->errors[j->channel], 1);
	if (j->attempts > n->cfg.retries || last_chance) {
		inc(&n->failed[j->channel], 1);
		dts_err("notify", "%s to %s for user %s failed %u time%s, giving up: %s", dts_channel_name(j->channel),
			j->dest, j->user, j->attempts, j->attempts == 1 ? "" : "s", err);
		*done = true;
		return;
	}
	j->next_ms = now_ms + dts_notify_backoff_ms(j->attempts, n->cfg.backoff_ms, n->cfg.backoff_max_ms);
	dts_warn("notify", "%s to %s for user %s failed (attempt %u of %u), retrying in %" PRId64 " ms: %s",
		 dts_channel_name(j->channel), j->dest, j->user, j->attempts, n->cfg.retries + 1, j->next_ms - now_ms,
		 err);
	*done = false;
}

static int64_t step(struct dts_notifier *n, int64_t now_ms, bool last_chance)
{
	struct qnode *q;
	int64_t next = INT64_MAX;
	size_t k = 0;

	pthread_mutex_lock(&n->mu);
	q = n->qhead;
	n->qhead = n->qtail = NULL;
	n->qlen = 0;
	pthread_mutex_unlock(&n->mu);
	while (q) {
		struct qnode *nx = q->next;

		admit(n, q->b, now_ms);
		free(q->b);
		free(q);
		q = nx;
	}
	for (size_t i = 0; i < n->nlims; i++) {
		struct ulimit *u = &n->lims[i];

		if (!u->suppressed)
			continue;
		if (u->nheld && dts_tbucket_take(&u->bucket, n->cfg.rate_per_hour, n->cfg.burst, now_ms)) {
			release(n, u, NULL, 0, now_ms);
		} else {
			int64_t r = dts_tbucket_ready_ms(&u->bucket, n->cfg.rate_per_hour, n->cfg.burst, now_ms);

			next = r < next ? r : next;
		}
	}
	for (size_t i = 0; i < n->njobs; i++) {
		struct job *j = n->jobs[i];
		bool done = false;

		if (j->next_ms <= now_ms)
			run_job(n, j, now_ms, last_chance, &done);
		if (done) {
			job_free(j);
			continue;
		}
		next = j->next_ms < next ? j->next_ms : next;
		n->jobs[k++] = j;
	}
	n->njobs = k;
	atomic_store_explicit(&n->pending, n->njobs, memory_order_relaxed);
	return next;
}

int64_t dts_notifier_step(struct dts_notifier *n, int64_t now_ms)
{
	return step(n, now_ms, false);
}

/* ---- the thread ------------------------------------------------------------------------------------------------ */

static void *notifier_main(void *arg)
{
	struct dts_notifier *n = arg;

	pthread_setname_np(pthread_self(), "dts-notify");
	pthread_mutex_lock(&n->mu);
	while (!n->stop) {
		int64_t now, next, wait_ms;
		struct timespec until;

		pthread_mutex_unlock(&n->mu);
		next = step(n, n->cfg.clock(n->cfg.clock_ctx), false);
		now = n->cfg.clock(n->cfg.clock_ctx);
		/* At most a second asleep: a clock that jumps cannot park the thread for long. */
		wait_ms = next <= now ? 0 : next - now > 1000 ? 1000 : next - now;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += wait_ms / 1000;
		until.tv_nsec += (wait_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&n->mu);
		if (wait_ms > 0 && !n->stop && !n->qhead)
			pthread_cond_timedwait(&n->cv, &n->mu, &until);
	}
	pthread_mutex_unlock(&n->mu);
	return NULL;
}

int dts_notifier_start(struct dts_notifier *n, char *err, size_t errlen)
{
	int rc = pthread_create(&n->thread, NULL, notifier_main, n);

	if (rc) {
		snprintf(err, errlen, "notifier: cannot start its thread: %s", strerror(rc));
		return -rc;
	}
	n->started = true;
	dts_info("notify", "channels: email %s, sms %s, call %s, webhook on; at most %u messages per hour per user "
			   "(burst %u)",
		 (n->channels & (1u << DTS_CHAN_EMAIL)) ? "on" : "off",
		 (n->channels & (1u << DTS_CHAN_SMS)) ? "on" : "off",
		 (n->channels & (1u << DTS_CHAN_CALL)) ? "on" : "off", n->cfg.rate_per_hour, n->cfg.burst);
	return 0;
}

void dts_notifier_destroy(struct dts_notifier *n)
{
	size_t left;

	if (!n)
		return;
	if (n->started) {
		pthread_mutex_lock(&n->mu);
		n->stop = true;
		pthread_cond_signal(&n->cv);
		pthread_mutex_unlock(&n->mu);
		pthread_join(n->thread, NULL);
		/* One last attempt at what is due now (queued batches become first attempts); no retry waited for. */
		step(n, n->cfg.clock(n->cfg.clock_ctx), true);
	}
	if (n->curl_ready)
		curl_global_cleanup();
	left = n->njobs;
	for (size_t i = 0; i < n->njobs; i++) {
		inc(&n->failed[n->jobs[i]->channel], 1);
		job_free(n->jobs[i]);
	}
	if (left)
		dts_warn("notify", "%zu notification%s waiting for a retry dropped at shutdown", left,
			 left == 1 ? "" : "s");
	free(n->jobs);
	while (n->qhead) {
		struct qnode *q = n->qhead;

		n->qhead = q->next;
		free(q->b);
		free(q);
	}
	for (size_t i = 0; i < n->nlims; i++)
		free(n->lims[i].held);
	free(n->lims);
	for (size_t i = 0; i < sizeof(n->strs) / sizeof(n->strs[0]); i++) {
		if (n->strs[i])
			explicit_bzero(n->strs[i], strlen(n->strs[i])); /* passwords and tokens */
		free(n->strs[i]);
	}
	pthread_cond_destroy(&n->cv);
	pthread_mutex_destroy(&n->mu);
	free(n);
}

void dts_notifier_stats_read(const struct dts_notifier *n, struct dts_notify_stats *out)
{
	struct dts_notifier *m = (struct dts_notifier *)n; /* atomics are read, never written */

	out->batches = atomic_load_explicit(&m->batches, memory_order_relaxed);
	out->batches_dropped = atomic_load_explicit(&m->batches_dropped, memory_order_relaxed);
	out->suppressed = atomic_load_explicit(&m->suppressed, memory_order_relaxed);
	out->pending = atomic_load_explicit(&m->pending, memory_order_relaxed);
	for (unsigned c = 0; c < DTS_CHAN_COUNT; c++) {
		out->sent[c] = atomic_load_explicit(&m->sent[c], memory_order_relaxed);
		out->errors[c] = atomic_load_explicit(&m->errors[c], memory_order_relaxed);
		out->retries[c] = atomic_load_explicit(&m->retries[c], memory_order_relaxed);
		out->failed[c] = atomic_load_explicit(&m->failed[c], memory_order_relaxed);
	}
}

/* ---- transports (libcurl) -------------------------------------------------------------------------------------- */

struct upload {
	const char *p;
	size_t left;
};

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct upload *u = arg;
	size_t n = size * nitems < u->left ? size * nitems : u->left;

	memcpy(buf, u->p, n);
	u->p += n;
	u->left -= n;
	return n;
}

struct reply {
	char buf[REPLY_KEEP + 1];
	size_t len;
};

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct reply *r = arg;
	size_t n = size * nmemb, take = n < REPLY_KEEP - r->len ? n : REPLY_KEEP - r->len;

	memcpy(r->buf + r->len, data, take);
	r->len += take;
	r->buf[r->len] = '\0';
	return n;
}

/* A subject header value: plain when ASCII, else RFC 2047 encoded words (base64, whole UTF-8 characters each). */
static void subject_header(struct dts_sb *h, const char *s)
{
	bool ascii = true;
	size_t len = strlen(s);

	for (const char *p = s; *p; p++)
		ascii &= (unsigned char)*p < 0x80;
	if (ascii) {
		dts_sb_printf(h, "Subject: %s\r\n", s);
		return;
	}
	dts_sb_printf(h, "Subject:");
	for (size_t off = 0; off < len;) {
		unsigned char out[64];
		size_t n = len - off < 45 ? len - off : 45;

		while (off + n < len && ((unsigned char)s[off + n] & 0xC0) == 0x80)
			n--; /* do not split a character between two words */
		EVP_EncodeBlock(out, (const unsigned char *)s + off, (int)n);
		dts_sb_printf(h, "%s=?UTF-8?B?%s?=", off ? "\r\n " : " ", (const char *)out);
		off += n;
	}
	dts_sb_printf(h, "\r\n");
}

static char *email_message(const struct dts_notifier *n, const struct dts_notify_msg *m)
{
	struct dts_sb b = { 0 };
	char date[64], to[DTS_ALERT_DEST_MAX * 2 + 1];
	const char *domain = strchr(n->cfg.smtp_from, '@') + 1;
	time_t now = (time_t)(n->cfg.clock(n->cfg.clock_ctx) / 1000);
	struct tm tm;
	size_t k = 0;
	static _Atomic unsigned seq;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	for (const char *p = m->dest; *p && k + 2 < sizeof(to); p++) {
		to[k++] = *p;
		if (*p == ',')
			to[k++] = ' ';
	}
	to[k] = '\0';
	dts_sb_printf(&b, "Date: %s\r\nFrom: DaTtSs alerts <%s>\r\nTo: %s\r\n", date, n->cfg.smtp_from, to);
	subject_header(&b, m->subject);
	dts_sb_printf(&b, "Message-ID: <%lld.%u.%d@%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
		      "Content-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n\r\n",
		  (long long)now, atomic_fetch_add(&seq, 1), (int)getpid(), domain);
	for (const char *p = m->text; *p; p++) {
		if (*p == '\n')
			dts_sb_printf(&b, "\r\n");
		else if (*p != '\r')
			dts_sb_printf(&b, "%c", *p);
	}
	return dts_sb_take(&b);
}

static CURL *easy(const struct dts_notifier *n, char *errbuf, const char *protocols)
{
	CURL *c = curl_easy_init();

	if (!c)
		return NULL;
	errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)n->cfg.timeout_s);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)n->cfg.timeout_s);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, protocols);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "dattssd/" DTS_VERSION);
	return c;
}

static int curl_result(CURL *c, CURLcode rc, const char *errbuf, const struct reply *r, bool http, char *err,
		       size_t errlen)
{
	long code = 0;

	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s (reply code %ld)", errbuf[0] ? errbuf : curl_easy_strerror(rc), code);
		return -EIO;
	}
	if (http && (code < 200 || code > 299)) {
		snprintf(err, errlen, "HTTP %ld: %.*s", code, (int)r->len, r->buf);
		for (char *p = err; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
		return -EIO;
	}
	return 0;
}

static int send_email(struct dts_notifier *n, const struct dts_notify_msg *m, char *err, size_t errlen)
{
	char errbuf[CURL_ERROR_SIZE], from[300], rcpt[300], list[DTS_ALERT_DEST_MAX + 1], *save = NULL;
	struct curl_slist *rcpts = NULL, *tmp;
	char *msg = email_message(n, m);
	struct upload up;
	CURL *c;
	CURLcode rc;
	int ret;

	c = msg ? easy(n, errbuf, "smtp,smtps") : NULL;
	if (!c) {
		free(msg);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(list, sizeof(list), "%s", m->dest);
	for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
		snprintf(rcpt, sizeof(rcpt), "<%s>", a);
		tmp = curl_slist_append(rcpts, rcpt);
		if (!tmp)
			break;
		rcpts = tmp;
	}
	snprintf(from, sizeof(from), "<%s>", n->cfg.smtp_from);
	up = (struct upload){ msg, strlen(msg) };
	curl_easy_setopt(c, CURLOPT_URL, n->cfg.smtp_url);
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(c, CURLOPT_READDATA, &up);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	if (n->cfg.smtp_starttls && strncmp(n->cfg.smtp_url, "smtp://", 7) == 0)
		curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
	if (*n->cfg.smtp_user) {
		curl_easy_setopt(c, CURLOPT_USERNAME, n->cfg.smtp_user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, n->cfg.smtp_password);
	}
	rc = curl_easy_perform(c);
	ret = curl_result(c, rc, errbuf, NULL, false, err, errlen);
	curl_slist_free_all(rcpts);
	curl_easy_cleanup(c);
	free(msg);
	return ret;
}

/* XML text: & < > " ' escaped (TwiML). */
static void xml_escape(struct dts_sb *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': dts_sb_printf(b, "&amp;"); break;
		case '<': dts_sb_printf(b, "&lt;"); break;
		case '>': dts_sb_printf(b, "&gt;"); break;
		case '"': dts_sb_printf(b, "&quot;"); break;
		case '\'': dts_sb_printf(b, "&apos;"); break;
		default: dts_sb_printf(b, "%c", *s); break;
		}
	}
}

static void form_field(struct dts_sb *b, CURL *c, const char *name, const char *value)
{
	char *v = curl_easy_escape(c, value, 0);

	if (!v) {
		b->oom = true;
		return;
	}
	dts_sb_printf(b, "%s%s=%s", b->len ? "&" : "", name, v);
	curl_free(v);
}

static int send_form(struct dts_notifier *n, const struct dts_notify_msg *m, char *err, size_t errlen)
{
	bool call = m->channel == DTS_CHAN_CALL;
	char errbuf[CURL_ERROR_SIZE];
	struct dts_sb url = { 0 }, form = { 0 }, twiml = { 0 };
	struct reply r = { .len = 0 };
	CURL *c = easy(n, errbuf, "http,https");
	char *acct;
	CURLcode rc;
	int ret;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	acct = curl_easy_escape(c, n->cfg.sms_account, 0);
	dts_sb_printf(&url, "%s/Accounts/%s/%s.json", call ? n->cfg.call_url : n->cfg.sms_url, acct ? acct : "",
		  call ? "Calls" : "Messages");
	curl_free(acct);
	form_field(&form, c, "To", m->dest);
	form_field(&form, c, "From", call ? n->cfg.call_from : n->cfg.sms_from);
	if (!call) {
		form_field(&form, c, "Body", m->text);
	} else if (*n->cfg.call_twiml_url) {
		form_field(&form, c, "Url", n->cfg.call_twiml_url);
	} else {
		dts_sb_printf(&twiml, "<Response><Say>");
		xml_escape(&twiml, m->text);
		dts_sb_printf(&twiml, "</Say></Response>");
		form_field(&form, c, "Twiml", twiml.oom ? "" : twiml.p);
	}
	if (url.oom || form.oom || twiml.oom) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_URL, url.p);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, form.p);
	curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	curl_easy_setopt(c, CURLOPT_USERNAME, n->cfg.sms_account);
	curl_easy_setopt(c, CURLOPT_PASSWORD, n->cfg.sms_token);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	rc = curl_easy_perform(c);
	ret = curl_result(c, rc, errbuf, &r, true, err, errlen);
out:
	free(url.p);
	free(form.p);
	free(twiml.p);
	curl_easy_cleanup(c);
	return ret;
}

static int send_webhook(struct dts_notifier *n, const struct dts_notify_msg *m, char *err, size_t errlen)
{
	char errbuf[CURL_ERROR_SIZE];
	struct reply r = { .len = 0 };
	struct curl_slist *h = NULL, *tmp;
	CURL *c = easy(n, errbuf, "http,https");
	CURLcode rc;
	int ret;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	tmp = curl_slist_append(h, "Content-Type: application/json");
	h = tmp ? tmp : h;
	curl_easy_setopt(c, CURLOPT_URL, m->dest);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, m->json);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	rc = curl_easy_perform(c);
	ret = curl_result(c, rc, errbuf, &r, true, err, errlen);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return ret;
}

static int real_send(void *ctx, const struct dts_notify_msg *m, char *err, size_t errlen)
{
	struct dts_notifier *n = ctx;

	switch (m->channel) {
	case DTS_CHAN_EMAIL:
		return send_email(n, m, err, errlen);
	case DTS_CHAN_SMS:
	case DTS_CHAN_CALL:
		return send_form(n, m, err, errlen);
	default:
		return send_webhook(n, m, err, errlen);
	}
}
