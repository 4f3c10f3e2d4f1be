/*
 * notify.h - the notifier: sends what the alert evaluator decided, over email (SMTP), SMS and phone calls
 * (Twilio-compatible form POSTs) and JSON webhooks, on a thread of its own (docs/alerts.md).
 *
 *   evaluator thread   dts_notifier_submit(batch)      one batch per user per evaluation round; never blocks (a full
 *                                                       queue drops the batch, counted)
 *   notifier thread    dts_notifier_step(now)           per user: a token bucket decides whether a batch goes out now;
 *                                                       a batch that may not is held (the latest event of each rule)
 *                                                       and counted, and the next message that goes out carries the
 *                                                       held events and says how many notifications were suppressed.
 *                                                       An admitted batch becomes one message per destination (all
 *                                                       its events for that email list, number or URL); a failed
 *                                                       send is retried with exponential backoff, bounded, logged
 *                                                       and counted.
 *
 * Transports (the real ones use libcurl; cfg.send replaces them in unit tests):
 *   email    smtp:// (STARTTLS required unless smtp_starttls is off) or smtps://, AUTH with smtp_user/smtp_password,
 *            MAIL FROM smtp_from, one RCPT per recipient, a text/plain UTF-8 message
 *   sms      POST {sms_url}/Accounts/{sms_account}/Messages.json  form To, From, Body; basic auth account:token
 *   call     POST {call_url}/Accounts/{sms_account}/Calls.json    form To, From, Twiml (or Url = call_twiml_url)
 *   webhook  POST the rule's URL, Content-Type application/json (body in docs/alerts.md)
 * A send succeeds on an SMTP 250 to the message / an HTTP 2xx; anything else is a failure with the reason logged.
 *
 * Thread context: dts_notifier_create/start/destroy from the main thread; submit from any thread; step from the
 * notifier thread only (or a test, when the thread was not started). Counters: any thread (relaxed atomics).
 */
#ifndef DTS_NOTIFY_H
#define DTS_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alerts.h"

/* ---- tunables (each with its reason) ---------------------------------------------------------------------------- */

#define DTS_NOTIFY_QUEUE_MAX 1024 /* batches waiting for the notifier thread: rounds every few seconds, one batch per
				   * user with changes, so a full queue means the thread is stuck (counted drops) */
#define DTS_NOTIFY_HELD_MAX 64 /* events held per user while rate-limited (the latest per rule); more are counted */
#define DTS_NOTIFY_JOBS_MAX 4096 /* messages waiting to be sent or retried; beyond that new ones are dropped */
#define DTS_NOTIFY_SMS_MAX 1600 /* characters of an SMS body: what Twilio-style APIs accept in one message */
#define DTS_NOTIFY_BACKOFF_MS 2000 /* first retry after 2 s, then 4, 8, ... */
#define DTS_NOTIFY_BACKOFF_MAX_MS 300000 /* ... never more than 5 min between attempts */

/* One rule's change as the evaluator reports it. */
struct dts_notify_event {
	struct dts_alert_rule rule; /* a copy: the rule may be deleted meanwhile */
	struct dts_alert_change change;
	int64_t ts_ms; /* evaluation time */
};

/* The changes of one user in one evaluation round. Allocate with dts_notify_batch_new; the notifier owns it once
 * submitted. */
struct dts_notify_batch {
	char user[DTS_MAX_USER + 1];
	int64_t ts_ms;
	size_t n;
	struct dts_notify_event ev[];
};

/* A batch with room for n events (n set, events zeroed), or NULL. Free with free(). */
struct dts_notify_batch *dts_notify_batch_new(const char *user, int64_t ts_ms, size_t n);

/* One message to one destination, as handed to a transport. Strings are valid during the send call only. */
struct dts_notify_msg {
	uint8_t channel; /* enum dts_channel */
	const char *user;
	const char *dest; /* email: recipients joined by ','; sms, call: the number; webhook: the URL */
	const char *subject; /* email subject (UTF-8; the transport encodes it) */
	const char *text; /* email body, SMS body, or the words a call says */
	const char *json; /* webhook body */
	unsigned events; /* events in the message */
	uint64_t suppressed; /* notifications suppressed before it, said in it */
	unsigned attempt; /* 1 for the first try */
};

/* Send m. Returns 0, or -errno with a one-line reason in err. Called on the notifier thread. */
typedef int (*dts_notify_send_fn)(void *ctx, const struct dts_notify_msg *m, char *err, size_t errlen);

struct dts_notify_cfg {
	/* Transports; "" or NULL turns a channel off. Strings are copied. */
	const char *smtp_url, *smtp_user, *smtp_password, *smtp_from;
	bool smtp_starttls;
	const char *sms_url, *sms_account, *sms_token, *sms_from;
	const char *call_url, *call_from, *call_twiml_url; /* call_url/call_from "" = sms_url/sms_from */
	unsigned timeout_s; /* per send [10] */
	/* Rate limit per user: a bucket of burst tokens refilled at rate_per_hour; one token per message batch. */
	unsigned rate_per_hour; /* [20] */
	unsigned burst; /* [5] */
	unsigned retries; /* attempts after the first [5] */
	unsigned backoff_ms, backoff_max_ms; /* [DTS_NOTIFY_BACKOFF_MS, DTS_NOTIFY_BACKOFF_MAX_MS] */
	dts_alert_clock_fn clock; /* NULL: the wall clock */
	void *clock_ctx;
	dts_notify_send_fn send; /* NULL: the real transports */
	void *send_ctx;
};

void dts_notify_cfg_defaults(struct dts_notify_cfg *cfg);

/* The defaults overridden by the daemon's settings (config keys smtp_*, sms_*, call_*, notify_timeout_s, alert_rate_*,
 * alert_retries). The strings point into c, which must outlive every use of cfg before dts_notifier_create copies
 * them. Pure. */
struct dts_config;
void dts_notify_cfg_from_config(struct dts_notify_cfg *cfg, const struct dts_config *c);

/* Check the transport settings: URL schemes, what each channel needs (sms_url needs sms_account, sms_token and
 * sms_from; smtp_url needs smtp_from). Returns 0 or -EINVAL with err naming the config key. Pure. */
int dts_notify_cfg_check(const struct dts_notify_cfg *cfg, char *err, size_t errlen);

struct dts_notifier;

/* Create (the thread is not started). Returns NULL with err set (a bad config: dts_notify_cfg_check's message).
 * Initialises libcurl. Main thread. */
struct dts_notifier *dts_notifier_create(const struct dts_notify_cfg *cfg, char *err, size_t errlen);

/* DTS_CHAN_* bits of the channels configured (webhook is always on). Any thread. */
unsigned dts_notifier_channels(const struct dts_notifier *n);

/* Start the notifier thread. Returns 0 or -errno with err set. Main thread. */
int dts_notifier_start(struct dts_notifier *n, char *err, size_t errlen);

/* Stop the thread, make one last attempt at what is queued and due, count the rest as dropped, free. NULL is
 * accepted. Main thread, after dts_alerts_close. */
void dts_notifier_destroy(struct dts_notifier *n);

/* Queue a batch (ownership passes to the notifier in every case). Returns 0, or -ENOSPC when the queue was full
 * (the batch is freed and counted as dropped). Never blocks for long (a mutex held for a list append). Any thread. */
int dts_notifier_submit(struct dts_notifier *n, struct dts_notify_batch *b);

/*
 * Do the work due at now_ms: take the queued batches through the rate limit into messages, send held events when a
 * token is back, send or retry the messages whose time has come. Returns when the next piece of work is due (unix
 * ms; INT64_MAX when nothing waits). The notifier thread calls it; tests call it directly.
 */
int64_t dts_notifier_step(struct dts_notifier *n, int64_t now_ms);

struct dts_notify_stats {
	uint64_t batches; /* batches submitted */
	uint64_t batches_dropped; /* queue full */
	uint64_t suppressed; /* events held back by the rate limit */
	uint64_t sent[DTS_CHAN_COUNT]; /* messages delivered */
	uint64_t errors[DTS_CHAN_COUNT]; /* failed attempts */
	uint64_t retries[DTS_CHAN_COUNT]; /* attempts after the first */
	uint64_t failed[DTS_CHAN_COUNT]; /* messages given up after the last retry, or dropped (jobs full, shutdown) */
	uint64_t pending; /* gauge: messages waiting to be sent or retried */
};
void dts_notifier_stats_read(const struct dts_notifier *n, struct dts_notify_stats *out);

/* ---- pure helpers (exposed for the unit tests) ------------------------------------------------------------------ */

/* A token bucket: `tokens` at time at_ms. Starts full (tokens = burst). */
struct dts_tbucket {
	double tokens;
	int64_t at_ms;
};
void dts_tbucket_init(struct dts_tbucket *b, unsigned burst, int64_t now_ms);
/* Refill to now_ms and take one token if there is one. Returns true when taken. */
bool dts_tbucket_take(struct dts_tbucket *b, unsigned rate_per_hour, unsigned burst, int64_t now_ms);
/* When the next whole token will be there (now_ms when it already is). */
int64_t dts_tbucket_ready_ms(const struct dts_tbucket *b, unsigned rate_per_hour, unsigned burst, int64_t now_ms);

/* Delay before retry number `retry` (1 = the first retry): base * 2^(retry-1), at most max_ms. */
int64_t dts_notify_backoff_ms(unsigned retry, unsigned base_ms, unsigned max_ms);

#endif /* DTS_NOTIFY_H */
