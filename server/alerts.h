/*
 * alerts.h - alert rules per user, their evaluation, states and history (issue 7; user guide in docs/alerts.md).
 *
 * A rule watches one thing of one user:
 *   above / below        a statistic (avg sum count min max bot10 top10 lst rate) of one series, over a window of
 *                        window_min minutes, compared with limit; it fires after `for_n` consecutive evaluations with
 *                        the condition true
 *   stopped_working      a series that had data receives none for after_min minutes
 *   stopped_responding   a process sends no heartbeat for after_s seconds
 * and names where notifications go (channels: email, sms, call, webhook; server/notify.h sends them).
 *
 * States (enum dts_alert_state):  ok -> pending -> firing -> resolved -> ok
 *   ok        the condition is false (or unknown: no data for an above/below statistic that needs data)
 *   pending   the condition held in fewer than for_n consecutive evaluations
 *   firing    it held in for_n consecutive evaluations (notification "firing"; repeated every repeat_s)
 *   resolved  it stopped holding while firing (notification "resolved"); back to ok after resolved_hold_s, or back to
 *             pending/firing when it holds again
 * Every state change is appended to the rule's history in the store.
 *
 * Layers:
 *   dts_alert_rule_parse / dts_alert_rule_json   a rule from and to JSON (the API's and the store's format); every
 *                                                error names the field. Pure.
 *   dts_alert_step                               the evaluation core: one rule, one observation, one time. Pure: the
 *                                                unit tests drive it with a clock of their own.
 *   struct dts_alerts                            the rules of every user (in memory, persisted in the meta column
 *                                                family), the evaluator thread, batches of changes for the notifier.
 *
 * Store records (meta column family, dts/meta.h; values are JSON text so `ldb` shows them as they are):
 *   alert/<user>/<id>                    the rule: dts_alert_rule_json() plus "v":1 and "created_ms"
 *   alerthist/<user>/<id>/<ts_ms>        one state change: {"v":1,"ts_ms","from","to","value"}; ts_ms is 16 decimal
 *                                        digits, zero-padded, so byte order is time order
 *
 * Threads: the evaluator is one thread of its own (dts_alerts_start). It is an RCU reader of the engine's current
 * state (dts_merger_read_current: it never blocks the merger or an RX core) and reads the store for windows longer than
 * the current state's 60 s. It never sends anything: it hands batches to the notifier's queue (never blocking on it).
 * The API functions (add, list, remove, history) are called from HTTP threads; a mutex protects the rule list and is
 * held only to copy or swap entries, never across a store read or an engine read.
 */
#ifndef DTS_ALERTS_H
#define DTS_ALERTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dts/engine.h"
#include "dts/storage.h"
#include "dts/tunables.h"

/* ---- limits (each with its reason) ------------------------------------------------------------------------------ */

#define DTS_ALERT_ID_LEN 12 /* hex digits of a rule id: 48 random bits, unique per user with room to spare */
#define DTS_ALERT_NAME_MAX 200 /* bytes of a rule's free-text name (shown in subjects: keep it a line) */
#define DTS_ALERT_MAX_CHANNELS 8 /* channels per rule: more is a mailing list's job */
#define DTS_ALERT_MAX_EMAILS 10 /* recipients of one email channel */
#define DTS_ALERT_DEST_MAX 1023 /* bytes of one channel's destination: a URL, a phone number or the joined emails */
#define DTS_ALERT_WINDOW_MAX 1440 /* window_min: one day of minutes (the store keeps >= 8 days) */
#define DTS_ALERT_FOR_MAX 1000 /* for_n consecutive evaluations */
#define DTS_ALERT_AFTER_MIN_MAX 10080 /* stopped_working after_min: one week */
#define DTS_ALERT_AFTER_S_MIN 5 /* stopped_responding after_s: heartbeats come every 5 s (DESIGN 3.2) */
#define DTS_ALERT_AFTER_S_MAX 86400
#define DTS_ALERT_HISTORY_MAX 200 /* state changes kept per rule; older ones are deleted as new ones come */
#define DTS_ALERT_RESOLVED_HOLD_S 300 /* resolved -> ok after this long without the condition (default) */
#define DTS_ALERT_NODATA_HOLD_S 300 /* above/below: a pending or firing rule whose statistic has no value keeps its
				     * state this long before the missing data counts as "condition false": a restart
				     * (the current state refills within a minute) or a pause of a few minutes in the
				     * traffic must not resolve and re-fire an alert */

enum dts_alert_kind {
	DTS_ALERT_ABOVE = 0,
	DTS_ALERT_BELOW,
	DTS_ALERT_STOPPED_WORKING,
	DTS_ALERT_STOPPED_RESPONDING,
};
#define DTS_ALERT_KIND_COUNT 4

enum dts_alert_stat {
	DTS_STAT_AVG = 0,
	DTS_STAT_SUM,
	DTS_STAT_COUNT,
	DTS_STAT_MIN,
	DTS_STAT_MAX,
	DTS_STAT_BOT10,
	DTS_STAT_TOP10,
	DTS_STAT_LST,
	DTS_STAT_RATE,
};
#define DTS_ALERT_STAT_NUM 9

enum dts_alert_state {
	DTS_ALERT_OK = 0,
	DTS_ALERT_PENDING,
	DTS_ALERT_FIRING,
	DTS_ALERT_RESOLVED,
};
#define DTS_ALERT_STATE_COUNT 4

enum dts_channel {
	DTS_CHAN_EMAIL = 0,
	DTS_CHAN_SMS,
	DTS_CHAN_CALL,
	DTS_CHAN_WEBHOOK,
};
#define DTS_CHAN_COUNT 4

/* Names as in JSON, docs and metrics ("above", "avg", "firing", "email"); "?" for a value out of range. Static. */
const char *dts_alert_kind_name(unsigned kind);
const char *dts_alert_stat_name(unsigned stat);
const char *dts_alert_state_name(unsigned state);
const char *dts_channel_name(unsigned ch);
/* The reverse: the enum value, or -1 for an unknown name. */
int dts_alert_state_parse(const char *name);

struct dts_alert_channel {
	uint8_t type; /* enum dts_channel */
	/* email: the recipients joined by ',' (each validated); sms, call: the E.164 number; webhook: the URL */
	char dest[DTS_ALERT_DEST_MAX + 1];
};

/* A rule. Plain data: copying the struct copies everything. */
struct dts_alert_rule {
	char id[DTS_ALERT_ID_LEN + 1];
	char user[DTS_MAX_USER + 1];
	char name[DTS_ALERT_NAME_MAX + 1]; /* "" when none was given */
	uint8_t kind; /* enum dts_alert_kind */
	uint8_t stat; /* enum dts_alert_stat (above, below) */
	uint8_t type; /* enum dts_type of the series (above, below, stopped_working) */
	char process[DTS_MAX_NAME + 1];
	char counter[DTS_MAX_NAME + 1]; /* "" for stopped_responding */
	char tags[DTS_MAX_TAGS_LEN + 1]; /* canonical tags of the series, "" for none */
	double limit; /* above, below */
	unsigned window_min; /* above, below: 1 = the live 60 s window; more = that many closed minutes of the store */
	unsigned for_n; /* above, below: consecutive evaluations (>= 1); 1 for the stopped kinds */
	unsigned after_min; /* stopped_working */
	unsigned after_s; /* stopped_responding */
	unsigned nchannels;
	struct dts_alert_channel ch[DTS_ALERT_MAX_CHANNELS];
	int64_t created_ms;
};

/* Bit (1u << enum dts_channel) per channel the server can send through; a rule may only name those. */
#define DTS_CHAN_ALL ((1u << DTS_CHAN_COUNT) - 1)

/*
 * Parse and validate a rule from JSON (the body of POST /api/v1/alerts; the fields are in docs/alerts.md). Fields
 * "id", "user" and "created_ms" are ignored (the server assigns them); "state", "since_ms" likewise (they come back
 * from GET). channels_ok: mask of DTS_CHAN_* bits the server is configured for (a channel outside it is refused).
 * Returns 0 with *r filled (id, user and created_ms zeroed), or -EINVAL with err = "field: message", the field as a
 * JSON path ("channels[1].to[0]: ..."). Pure; any thread.
 */
int dts_alert_rule_parse(const json_t *j, unsigned channels_ok, struct dts_alert_rule *r, char *err, size_t errlen);

/* The rule as JSON (the API's shape: every field the kind uses, "id" when set). Returns a new reference, NULL on
 * out of memory. Pure. */
json_t *dts_alert_rule_json(const struct dts_alert_rule *r);

/* One line describing what the rule watches: "avg of api/query (ms) over 1 min above 100". Pure. */
void dts_alert_rule_describe(const struct dts_alert_rule *r, char *buf, size_t len);

/* ---- the evaluation core (pure) --------------------------------------------------------------------------------- */

/* What one evaluation saw for a rule. */
struct dts_alert_obs {
	/* above, below: the statistic over the window. has_value is false when the window holds no data and the
	 * statistic needs data (avg, min, max, bot10, top10, lst); sum, count and rate are 0 over an empty window. */
	bool has_value;
	double value;
	/* stopped_working: unix ms of the newest data of the series (0 = none visible now); stopped_responding: of the
	 * newest heartbeat of the process. */
	int64_t last_ms;
};

/* Evaluation state of one rule. Written only by the evaluator (or the test driving dts_alert_step). */
struct dts_alert_rt {
	uint8_t state; /* enum dts_alert_state */
	int64_t since_ms; /* when the current state began (0 = never changed: ok since the rule exists) */
	unsigned streak; /* consecutive evaluations with the condition true */
	int64_t notified_ms; /* last "firing" notification (first or repeat) */
	int64_t fired_ms; /* when the current or last firing began */
	double value; /* last value observed (NAN: none); stopped kinds: seconds of silence */
	int64_t value_ms; /* above/below: when the statistic last had a value (or the rule's state was restored) */
	int64_t last_data_ms; /* stopped kinds: newest data/heartbeat ever seen (kept when the series leaves memory) */
	unsigned history_n; /* history records in the store (for pruning) */
};

/* Initial state of a new rule. */
void dts_alert_rt_init(struct dts_alert_rt *rt);

struct dts_alert_timing {
	unsigned minute_s; /* length of one minute of after_min (60; lower only in tests, config alert_minute_s) */
	unsigned repeat_s; /* re-notify a firing rule this often; 0 = never */
	unsigned resolved_hold_s; /* resolved -> ok after this long */
	unsigned nodata_hold_s; /* see DTS_ALERT_NODATA_HOLD_S */
};

enum dts_alert_notice {
	DTS_NOTICE_NONE = 0,
	DTS_NOTICE_FIRING, /* entered firing */
	DTS_NOTICE_RESOLVED, /* firing -> resolved */
	DTS_NOTICE_REPEAT, /* still firing, repeat interval elapsed */
};

/* What one evaluation changed. */
struct dts_alert_change {
	uint8_t from, to; /* enum dts_alert_state; equal when the state did not change */
	uint8_t notice; /* enum dts_alert_notice */
	double value; /* the value observed (NAN: none) */
	int64_t fired_ms; /* when the firing began (firing, repeat, resolved) */
};

/*
 * Evaluate rule r once at now_ms with observation obs, updating rt. Returns true when out describes a state change
 * or a notice (false: nothing to record or send; out is still filled). Pure: no clock, no I/O; any thread.
 */
bool dts_alert_step(const struct dts_alert_rule *r, struct dts_alert_rt *rt, const struct dts_alert_obs *obs,
		    int64_t now_ms, const struct dts_alert_timing *t, struct dts_alert_change *out);

/* ---- the alert engine ------------------------------------------------------------------------------------------- */

struct dts_alerts;
struct dts_notifier;

/* Unix milliseconds now (tests pass their own clock). */
typedef int64_t (*dts_alert_clock_fn)(void *ctx);

/*
 * Fill obs[i] for rules[i], i < n, at now_ms. The default (NULL in the config) reads the engine's current state and
 * the store. Called on the evaluator thread (or the thread calling dts_alerts_round), without any alerts lock held.
 */
typedef void (*dts_alert_observe_fn)(void *ctx, const struct dts_alert_rule *rules, size_t n, int64_t now_ms,
				     struct dts_alert_obs *obs);

struct dts_alerts_cfg {
	struct dts_storage *st; /* required: rules and history live in its meta family */
	struct dts_merger *merger; /* the current state; NULL: only the store is read (tests) */
	struct dts_notifier *notifier; /* where batches of changes go; NULL: none are sent (still recorded) */
	dts_alert_clock_fn clock; /* NULL: the wall clock */
	void *clock_ctx;
	dts_alert_observe_fn observe; /* NULL: engine + store */
	void *observe_ctx;
	unsigned eval_s; /* evaluation period of the thread [5] */
	unsigned grace_s; /* the engine's minute close delay, to know which stored minutes are final [10] */
	struct dts_alert_timing timing; /* [60, 3600, DTS_ALERT_RESOLVED_HOLD_S, DTS_ALERT_NODATA_HOLD_S] */
	unsigned max_rules; /* per user [100] */
	unsigned channels_ok; /* DTS_CHAN_* bits the notifier can send through [DTS_CHAN_ALL] */
};

void dts_alerts_cfg_defaults(struct dts_alerts_cfg *cfg);

/*
 * Load every rule and the last state of each (from its newest history record) from the store. The thread is not
 * started. Returns NULL with errno set and a message in err (a rule that cannot be parsed is logged and skipped, not
 * fatal). Main thread.
 */
struct dts_alerts *dts_alerts_open(const struct dts_alerts_cfg *cfg, char *err, size_t errlen);

/* Start the evaluator thread (one round every eval_s). Returns 0 or -errno with err set. Main thread. */
int dts_alerts_start(struct dts_alerts *a, char *err, size_t errlen);

/* Stop and join the evaluator thread (if started), free everything. NULL is accepted. Call before the store closes
 * and before the merger is destroyed; the notifier must still exist (stop it afterwards). Main thread. */
void dts_alerts_close(struct dts_alerts *a);

/*
 * One evaluation round at now_ms: observe every rule, step it, record state changes in the history, submit one batch
 * per user with changes to the notifier. Returns the number of rules whose state changed or that notified.
 * The evaluator thread calls it; tests call it directly (without starting the thread). Not concurrently with itself.
 */
int dts_alerts_round(struct dts_alerts *a, int64_t now_ms);

/*
 * Add a rule for user from JSON. Returns 0 with *out = the stored rule as JSON (new reference, with "id", "state",
 * "since_ms"); -EINVAL with err = "field: message"; -ENOSPC when the user has max_rules rules (err says so); -EIO when
 * the store refused (err). HTTP threads.
 */
int dts_alerts_add(struct dts_alerts *a, const char *user, const json_t *in, json_t **out, char *err, size_t errlen);

/* {"rules":[rule + "state", "since_ms"]} of user, ordered by creation. New reference or NULL (no memory). */
json_t *dts_alerts_list(struct dts_alerts *a, const char *user);

/* Delete user's rule id and its history. Returns 0, -ENOENT (no such rule of this user) or -EIO (err). */
int dts_alerts_remove(struct dts_alerts *a, const char *user, const char *id, char *err, size_t errlen);

/*
 * {"history":[{"ts_ms","from","to","value"}]} of user's rule id, newest first, at most limit records. Returns 0 with
 * *out set, -ENOENT (no such rule of this user), -EIO or -ENOMEM.
 */
int dts_alerts_history(struct dts_alerts *a, const char *user, const char *id, unsigned limit, json_t **out);

/* Counters for /metrics. Relaxed reads; any thread. */
struct dts_alerts_stats {
	uint64_t rounds; /* evaluation rounds run */
	uint64_t round_ns_last; /* duration of the last round */
	uint64_t rules; /* gauge: rules loaded */
	uint64_t firing; /* gauge: rules firing after the last round */
	uint64_t transitions[DTS_ALERT_STATE_COUNT]; /* state changes, by the state entered */
	uint64_t history_errors; /* history writes the store refused */
	uint64_t batches_submitted; /* batches handed to the notifier */
};
void dts_alerts_stats_read(const struct dts_alerts *a, struct dts_alerts_stats *out);

/* Prometheus text of the alert engine's and its notifier's counters (dattss_alert_*), malloc'd (caller frees), or
 * NULL on out of memory. Any thread. */
char *dts_alerts_metrics(struct dts_alerts *a);

#endif /* DTS_ALERTS_H */
