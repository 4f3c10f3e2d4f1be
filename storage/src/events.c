/*
 * events.c - errors/warnings and process states in the store: keys and values (byte tables in dts/storage.h and
 * docs/storage.md), the batch writer, readers, the restore at startup, and the queue that carries the merger's event
 * batches to the storage thread.
 *
 * Why a queue of its own: event batches are small and frequent (one per merger step that took events or changed a
 * process state), closed minutes are large and rare; sharing one bounded queue would let one crowd out the other.
 * Like the minutes queue (sink.c) it is single-producer (merger thread) single-consumer (storage thread), lock-free,
 * and full means a counted drop, never a wait. A failed write stays at the head and is retried at the storage
 * thread's next wake-up (at least RETRY_MS apart) for up to GIVE_UP_MS, then dropped and counted: the process states
 * in it come again with their next change, its events are only lost from the store (the merger still has them).
 *
 * Trimming: the merger keeps the last DTS_EVENTS_KEPT events per user and kind and tells, with each event, which one
 * it pushed out (evicted_seq): the batch deletes that key, so the store holds the same events as the memory. A batch
 * that was dropped leaves older keys behind; dts_storage_restore_state deletes them at the next start.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dts/bytes.h"
#include "storage_internal.h"

/* Queue slots: the merger steps every 20 ms, so 1024 batches are 20 s of a stalled store at the worst. */
#define EVQ_SLOTS 1024
/* A failing write is retried at most this often, and given up after this long. */
#define RETRY_MS 100
#define GIVE_UP_MS 10000

#define PROC_KEY_PREFIX "p/"

struct dts__evq {
	_Alignas(64) _Atomic uint64_t tail; /* producer (merger thread) */
	uint64_t queued, dropped_full; /* producer's counters */
	_Alignas(64) _Atomic uint64_t head; /* consumer (storage thread) */
	int64_t fail_since_ns, next_try_ns; /* consumer: the head batch is failing since (0: not failing) */
	int64_t fail_logged_ns;
	uint64_t written, dropped_failed, events, procs, errors; /* consumer's counters */
	struct dts_event_batch *slot[EVQ_SLOTS];
};

static const char *const kind_names[2] = { "error", "warning" };

const char *dts_storage_event_kind_name(unsigned kind)
{
	return kind < 2 ? kind_names[kind] : NULL;
}

/* ---- keys ------------------------------------------------------------------------------------------------------ */

/* A USER or PROCESS part: 1..max printable ASCII bytes other than '/' and '|' (as in SERIES). */
static bool part_valid(const char *s, size_t n, size_t max)
{
	if (n < 1 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '/' || s[i] == '|')
			return false;
	return true;
}

int dts_storage_event_key(char *buf, size_t buf_len, const char *user, unsigned kind, uint64_t seq)
{
	int n;

	if (!user || !part_valid(user, strlen(user), DTS_MAX_USER) || kind > 1)
		return -EINVAL;
	n = snprintf(buf, buf_len, "%s/%s/%020" PRIu64, user, kind_names[kind], seq);
	return n < 0 || (size_t)n >= buf_len ? -ENOSPC : n;
}

int dts_storage_process_key(char *buf, size_t buf_len, const char *user, const char *process)
{
	int n;

	if (!user || !process || !part_valid(user, strlen(user), DTS_MAX_USER) ||
	    !part_valid(process, strlen(process), DTS_MAX_NAME))
		return -EINVAL;
	n = snprintf(buf, buf_len, PROC_KEY_PREFIX "%s/%s", user, process);
	return n < 0 || (size_t)n >= buf_len ? -ENOSPC : n;
}

/* USER '/' KIND '/' SEQ: the user's span, the kind and the seq. */
static int event_key_parse(const char *k, size_t len, size_t *user_len, unsigned *kind, uint64_t *seq)
{
	const char *s1 = memchr(k, '/', len), *s2;
	uint64_t v = 0;

	if (!s1 || !part_valid(k, (size_t)(s1 - k), DTS_MAX_USER))
		return -EINVAL;
	s2 = memchr(s1 + 1, '/', len - (size_t)(s1 + 1 - k));
	if (!s2 || (size_t)(k + len - (s2 + 1)) != 20)
		return -EINVAL;
	for (*kind = 0; *kind < 2; (*kind)++)
		if ((size_t)(s2 - s1 - 1) == strlen(kind_names[*kind]) &&
		    memcmp(s1 + 1, kind_names[*kind], (size_t)(s2 - s1 - 1)) == 0)
			break;
	if (*kind == 2)
		return -EINVAL;
	for (const char *p = s2 + 1; p < k + len; p++) {
		if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*user_len = (size_t)(s1 - k);
	*seq = v;
	return 0;
}

/* ---- values ---------------------------------------------------------------------------------------------------- */

int dts_storage_event_encode(const struct dts_event *ev, uint8_t *buf, size_t buf_len)
{
	size_t plen = ev->process ? strlen(ev->process) : 0, need = DTS_STORAGE_EVENT_FIXED + plen + ev->text_len;

	if (ev->kind > 1 || !part_valid(ev->process, plen, DTS_MAX_NAME) || ev->text_len > DTS_NATIVE_MAX_TEXT ||
	    (ev->text_len && (!ev->text || memchr(ev->text, 0, ev->text_len))))
		return -EINVAL;
	if (buf_len < need)
		return -ENOSPC;
	buf[0] = DTS_STORAGE_EVENT_VERSION;
	buf[1] = ev->kind;
	dts_wr64(buf + 2, ev->seq);
	dts_wr64(buf + 10, (uint64_t)ev->ts_ms);
	dts_wr64(buf + 18, (uint64_t)ev->recv_ms);
	buf[26] = (uint8_t)plen;
	memcpy(buf + 27, ev->process, plen);
	dts_wr16(buf + 27 + plen, ev->text_len);
	if (ev->text_len)
		memcpy(buf + 29 + plen, ev->text, ev->text_len);
	return (int)need;
}

int dts_storage_event_decode(const uint8_t *buf, size_t len, struct dts_stored_event *out)
{
	size_t plen;
	uint16_t tlen;

	if (len < 1)
		return -EINVAL;
	if (buf[0] > DTS_STORAGE_EVENT_VERSION)
		return -EPROTONOSUPPORT;
	if (buf[0] != DTS_STORAGE_EVENT_VERSION || len < DTS_STORAGE_EVENT_FIXED + 1 || buf[1] > 1)
		return -EINVAL;
	plen = buf[26];
	if (plen < 1 || plen > DTS_MAX_NAME || len < DTS_STORAGE_EVENT_FIXED + plen)
		return -EINVAL;
	tlen = dts_rd16(buf + 27 + plen);
	if (tlen > DTS_NATIVE_MAX_TEXT || len != DTS_STORAGE_EVENT_FIXED + plen + tlen)
		return -EINVAL;
	/* what encode never writes: a process keys cannot carry, a NUL in the text (readers copy it as a C string) */
	if (!part_valid((const char *)buf + 27, plen, DTS_MAX_NAME) || memchr(buf + 29 + plen, 0, tlen))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->ev.kind = buf[1];
	out->ev.seq = dts_rd64(buf + 2);
	out->ev.ts_ms = (int64_t)dts_rd64(buf + 10);
	out->ev.recv_ms = (int64_t)dts_rd64(buf + 18);
	out->ev.process = (const char *)buf + 27;
	out->process_len = plen;
	out->ev.text = (const char *)buf + 29 + plen;
	out->ev.text_len = tlen;
	return 0;
}

#define PF_ONLINE 0x01
#define PF_STATS 0x02
#define PF_UPTIME 0x04

int dts_storage_process_encode(const struct dts_process *p, uint8_t *buf, size_t buf_len)
{
	if (buf_len < DTS_STORAGE_PROCESS_VALUE)
		return -ENOSPC;
	buf[0] = DTS_STORAGE_PROCESS_VERSION;
	buf[1] = (uint8_t)((p->online ? PF_ONLINE : 0) | (p->has_stats ? PF_STATS : 0) | (p->has_uptime ? PF_UPTIME : 0));
	dts_wr64(buf + 2, (uint64_t)p->last_heard_ms);
	dts_wr64(buf + 10, (uint64_t)p->online_since_ms);
	dts_wr64(buf + 18, (uint64_t)p->stats_ms);
	dts_wr32(buf + 26, p->restarts);
	dts_wr64(buf + 30, (uint64_t)p->last_restart_ms);
	dts_wr64(buf + 38, p->instance);
	dts_wr32(buf + 46, p->stats.uptime_s);
	dts_wr64(buf + 50, p->stats.rss_bytes);
	dts_wr64(buf + 58, p->stats.cpu_us);
	dts_wrf32(buf + 66, p->stats.cpu_pct);
	dts_wr32(buf + 70, p->stats.errors);
	dts_wr32(buf + 74, p->stats.warnings);
	dts_wr32(buf + 78, p->stats.dropped);
	return DTS_STORAGE_PROCESS_VALUE;
}

int dts_storage_process_decode(const uint8_t *buf, size_t len, struct dts_process *out)
{
	if (len < 1)
		return -EINVAL;
	if (buf[0] > DTS_STORAGE_PROCESS_VERSION)
		return -EPROTONOSUPPORT;
	if (buf[0] != DTS_STORAGE_PROCESS_VERSION || len != DTS_STORAGE_PROCESS_VALUE ||
	    (buf[1] & ~(PF_ONLINE | PF_STATS | PF_UPTIME)))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->online = buf[1] & PF_ONLINE;
	out->has_stats = buf[1] & PF_STATS;
	out->has_uptime = buf[1] & PF_UPTIME;
	out->last_heard_ms = (int64_t)dts_rd64(buf + 2);
	out->online_since_ms = (int64_t)dts_rd64(buf + 10);
	out->stats_ms = (int64_t)dts_rd64(buf + 18);
	out->restarts = dts_rd32(buf + 26);
	out->last_restart_ms = (int64_t)dts_rd64(buf + 30);
	out->instance = dts_rd64(buf + 38);
	out->stats.uptime_s = dts_rd32(buf + 46);
	out->stats.rss_bytes = dts_rd64(buf + 50);
	out->stats.cpu_us = dts_rd64(buf + 58);
	out->stats.cpu_pct = dts_rdf32(buf + 66);
	out->stats.errors = dts_rd32(buf + 70);
	out->stats.warnings = dts_rd32(buf + 74);
	out->stats.dropped = dts_rd32(buf + 78);
	return 0;
}

/* ---- writing --------------------------------------------------------------------------------------------------- */

int dts_storage_write_events(struct dts_storage *st, const struct dts_event_batch *b)
{
	uint8_t val[DTS_STORAGE_EVENT_FIXED + DTS_MAX_NAME + DTS_NATIVE_MAX_TEXT];
	char key[DTS_STORAGE_PROCESS_KEY_MAX + DTS_STORAGE_EVENT_KEY_MAX + 1];
	rocksdb_writebatch_t *wb;
	char *rerr = NULL;
	int n, v;

	if (st->cfg.mode != DTS_STORAGE_READ_WRITE)
		return -EROFS;
	wb = rocksdb_writebatch_create();
	if (!wb)
		return -ENOMEM;
	for (size_t i = 0; i < b->n_events; i++) {
		const struct dts_event *ev = &b->events[i];

		n = dts_storage_event_key(key, sizeof(key), ev->user, ev->kind, ev->seq);
		v = n < 0 ? n : dts_storage_event_encode(ev, val, sizeof(val));
		if (n < 0 || v < 0)
			continue; /* a user or process keys cannot carry: nothing sensible to store */
		rocksdb_writebatch_put_cf(wb, st->cf[DTS__CF_EVENTS], key, (size_t)n, (const char *)val, (size_t)v);
		if (ev->evicted_seq && (n = dts_storage_event_key(key, sizeof(key), ev->user, ev->kind,
								   ev->evicted_seq)) > 0)
			rocksdb_writebatch_delete_cf(wb, st->cf[DTS__CF_EVENTS], key, (size_t)n);
	}
	for (size_t i = 0; i < b->n_procs; i++) {
		const struct dts_process *p = &b->procs[i];

		n = dts_storage_process_key(key, sizeof(key), p->user, p->process);
		if (n < 0)
			continue;
		if (p->removed) {
			rocksdb_writebatch_delete_cf(wb, st->cf[DTS__CF_CURRENT], key, (size_t)n);
			continue;
		}
		v = dts_storage_process_encode(p, val, sizeof(val));
		rocksdb_writebatch_put_cf(wb, st->cf[DTS__CF_CURRENT], key, (size_t)n, (const char *)val, (size_t)v);
	}
	rocksdb_write(st->db, st->wo, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	if (rerr) {
		dts__log(st, 0, "store '%s': writing events and process states failed: %s", st->data_dir, rerr);
		rocksdb_free(rerr);
		return -EIO;
	}
	return 0;
}

/* ---- reading --------------------------------------------------------------------------------------------------- */

/*
 * Iterate cf over the keys starting with prefix; fn gets each key and value and returns < 0 to fail with that
 * error, > 0 to stop, 0 to go on. Returns 0 or -errno.
 */
typedef int (*kv_fn)(void *ctx, const char *k, size_t kl, const char *v, size_t vl);

static int scan_prefix(struct dts_storage *st, int cf, const char *prefix, size_t plen, kv_fn fn, void *ctx)
{
	char upper[DTS_STORAGE_PROCESS_KEY_MAX + 2];
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	char *rerr = NULL;
	int rc = 0;

	if (!st->cf[cf])
		return 0; /* a read-only open of a store without the family */
	ro = rocksdb_readoptions_create();
	if (!ro)
		return -ENOMEM;
	/* every prefix here ends in '/' (or is empty): its keys end before the same bytes with '0', the next byte */
	if (plen) {
		memcpy(upper, prefix, plen);
		upper[plen - 1]++;
		rocksdb_readoptions_set_iterate_upper_bound(ro, upper, plen);
	}
	rocksdb_readoptions_set_fill_cache(ro, 0);
	it = rocksdb_create_iterator_cf(st->db, ro, st->cf[cf]);
	if (plen)
		rocksdb_iter_seek(it, prefix, plen);
	else
		rocksdb_iter_seek_to_first(it);
	for (; rocksdb_iter_valid(it) && rc == 0; rocksdb_iter_next(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		const char *v = rocksdb_iter_value(it, &vl);

		rc = fn(ctx, k, kl, v, vl);
	}
	if (rc >= 0) {
		rocksdb_iter_get_error(it, &rerr);
		if (rerr) {
			dts__log(st, 0, "store '%s': reading %s: %s", st->data_dir, dts__cf_names[cf], rerr);
			rocksdb_free(rerr);
			rc = -EIO;
		}
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	return rc < 0 ? rc : 0;
}

struct ev_read {
	dts_event_visit_fn fn;
	void *ctx;
	long n;
	/* trimming (restore): the group being scanned, the last DTS_EVENTS_KEPT seqs of it */
	struct dts_storage *st;
	struct dts_merger *m;
	rocksdb_writebatch_t *trim;
	char group[DTS_STORAGE_EVENT_KEY_MAX + 1];
	size_t group_len;
	uint64_t seqs[DTS_EVENTS_KEPT];
	uint64_t in_group;
	int err;
};

/* Decode one event key + value into ev with NUL-terminated copies in the buffers. Returns 0 or -EINVAL. */
static int event_view(const char *k, size_t kl, const char *v, size_t vl, struct dts_event *ev, char *user,
		      char *process, char *text, size_t *group_len)
{
	struct dts_stored_event se;
	size_t ulen;
	unsigned kind;
	uint64_t seq;

	if (event_key_parse(k, kl, &ulen, &kind, &seq) != 0 ||
	    dts_storage_event_decode((const uint8_t *)v, vl, &se) != 0 || se.ev.kind != kind || se.ev.seq != seq)
		return -EINVAL;
	*ev = se.ev;
	memcpy(user, k, ulen);
	user[ulen] = '\0';
	memcpy(process, se.ev.process, se.process_len);
	process[se.process_len] = '\0';
	memcpy(text, se.ev.text, se.ev.text_len);
	text[se.ev.text_len] = '\0';
	ev->user = user;
	ev->process = process;
	ev->text = text;
	*group_len = kl - 20; /* "USER/KIND/" */
	return 0;
}

static int read_event_cb(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct ev_read *r = ctx;
	char user[DTS_MAX_USER + 1], process[DTS_MAX_NAME + 1], text[DTS_NATIVE_MAX_TEXT + 1];
	struct dts_event ev;
	size_t gl;

	if (event_view(k, kl, v, vl, &ev, user, process, text, &gl) != 0)
		return 0; /* not ours, or damaged: skipped */
	r->n++;
	return r->fn(r->ctx, &ev) ? 1 : 0;
}

long dts_storage_read_events(struct dts_storage *st, const char *user, dts_event_visit_fn fn, void *ctx)
{
	char prefix[DTS_MAX_USER + 2] = "";
	struct ev_read r = { .fn = fn, .ctx = ctx };
	size_t plen = 0;
	int rc;

	if (user) {
		if (!part_valid(user, strlen(user), DTS_MAX_USER))
			return -EINVAL;
		plen = (size_t)snprintf(prefix, sizeof(prefix), "%s/", user);
	}
	rc = scan_prefix(st, DTS__CF_EVENTS, prefix, plen, read_event_cb, &r);
	return rc < 0 ? rc : r.n;
}

struct proc_read {
	dts_process_visit_fn fn;
	void *ctx;
	long n;
};

static int read_proc_cb(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct proc_read *r = ctx;
	char user[DTS_MAX_USER + 1], process[DTS_MAX_NAME + 1];
	const char *u = k + 2, *slash;
	struct dts_process p;

	slash = kl > 2 ? memchr(u, '/', kl - 2) : NULL;
	if (!slash || !part_valid(u, (size_t)(slash - u), DTS_MAX_USER) ||
	    !part_valid(slash + 1, (size_t)(k + kl - slash - 1), DTS_MAX_NAME) ||
	    dts_storage_process_decode((const uint8_t *)v, vl, &p) != 0)
		return 0;
	memcpy(user, u, (size_t)(slash - u));
	user[slash - u] = '\0';
	memcpy(process, slash + 1, (size_t)(k + kl - slash - 1));
	process[k + kl - slash - 1] = '\0';
	p.user = user;
	p.process = process;
	r->n++;
	return r->fn(r->ctx, &p) ? 1 : 0;
}

long dts_storage_read_processes(struct dts_storage *st, const char *user, dts_process_visit_fn fn, void *ctx)
{
	char prefix[DTS_MAX_USER + 4];
	struct proc_read r = { .fn = fn, .ctx = ctx };
	size_t plen;
	int rc;

	if (user) {
		if (!part_valid(user, strlen(user), DTS_MAX_USER))
			return -EINVAL;
		plen = (size_t)snprintf(prefix, sizeof(prefix), PROC_KEY_PREFIX "%s/", user);
	} else {
		plen = (size_t)snprintf(prefix, sizeof(prefix), PROC_KEY_PREFIX);
	}
	rc = scan_prefix(st, DTS__CF_CURRENT, prefix, plen, read_proc_cb, &r);
	return rc < 0 ? rc : r.n;
}

/* ---- restore --------------------------------------------------------------------------------------------------- */

/* The group (user, kind) that just ended: delete what precedes its last DTS_EVENTS_KEPT events. */
static void trim_group(struct ev_read *r)
{
	char from[DTS_STORAGE_EVENT_KEY_MAX + 1], to[DTS_STORAGE_EVENT_KEY_MAX + 1];
	uint64_t first_kept;

	if (r->in_group <= DTS_EVENTS_KEPT)
		return;
	first_kept = r->seqs[r->in_group % DTS_EVENTS_KEPT];
	memcpy(from, r->group, r->group_len);
	memcpy(to, r->group, r->group_len);
	snprintf(to + r->group_len, sizeof(to) - r->group_len, "%020" PRIu64, first_kept);
	rocksdb_writebatch_delete_range_cf(r->trim, r->st->cf[DTS__CF_EVENTS], from, r->group_len, to,
					   r->group_len + 20);
}

static int restore_event_cb(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct ev_read *r = ctx;
	char user[DTS_MAX_USER + 1], process[DTS_MAX_NAME + 1], text[DTS_NATIVE_MAX_TEXT + 1];
	struct dts_event ev;
	size_t gl;
	int rc;

	if (event_view(k, kl, v, vl, &ev, user, process, text, &gl) != 0)
		return 0;
	if (gl != r->group_len || memcmp(k, r->group, gl) != 0) {
		trim_group(r);
		memcpy(r->group, k, gl);
		r->group_len = gl;
		r->in_group = 0;
	}
	r->seqs[r->in_group++ % DTS_EVENTS_KEPT] = ev.seq;
	if (r->m) {
		rc = dts_merger_restore_event(r->m, &ev);
		if (rc < 0)
			return rc;
		r->n++;
	}
	return 0;
}

static int restore_proc_cb(void *ctx, const struct dts_process *p)
{
	struct ev_read *r = ctx;
	int rc = dts_merger_restore_process(r->m, p);

	if (rc < 0) {
		r->err = rc;
		return 1;
	}
	r->n++;
	return 0;
}

long dts_storage_restore_state(struct dts_storage *st, struct dts_merger *m, int64_t now_ms)
{
	struct ev_read *r;
	char *rerr = NULL;
	long rc = 0, n;

	(void)now_ms; /* online states are re-evaluated by the merger's clock at its first step */
	if (st->cfg.mode != DTS_STORAGE_READ_WRITE)
		return -EROFS;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->st = st;
	r->m = m;
	if (m) {
		rc = dts_storage_read_processes(st, NULL, restore_proc_cb, r);
		if (rc >= 0 && r->err)
			rc = r->err;
	}
	r->trim = rocksdb_writebatch_create();
	if (rc >= 0 && !r->trim)
		rc = -ENOMEM;
	if (rc >= 0)
		rc = scan_prefix(st, DTS__CF_EVENTS, "", 0, restore_event_cb, r);
	if (rc >= 0) {
		trim_group(r);
		if (rocksdb_writebatch_count(r->trim)) {
			rocksdb_write(st->db, st->wo, r->trim, &rerr);
			if (rerr) {
				dts__log(st, 0, "store '%s': deleting old events: %s", st->data_dir, rerr);
				rocksdb_free(rerr);
				rc = -EIO;
			}
		}
	}
	n = r->n;
	if (r->trim)
		rocksdb_writebatch_destroy(r->trim);
	free(r);
	return rc < 0 ? rc : n;
}

/* ---- the queue ------------------------------------------------------------------------------------------------- */

struct dts__evq *dts__evq_create(void)
{
	struct dts__evq *q = aligned_alloc(64, (sizeof(*q) + 63) & ~(size_t)63);

	if (q)
		memset(q, 0, sizeof(*q));
	return q;
}

void dts__evq_destroy(struct dts__evq *q)
{
	uint64_t h, t;

	if (!q)
		return;
	h = atomic_load_explicit(&q->head, memory_order_relaxed);
	t = atomic_load_explicit(&q->tail, memory_order_acquire);
	for (; h != t; h++)
		dts_event_batch_release(q->slot[h % EVQ_SLOTS]);
	free(q);
}

void dts__evq_push(struct dts__evq *q, struct dts_event_batch *b)
{
	const uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	const uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);

	if (t - h == EVQ_SLOTS) {
		dts_event_batch_release(b);
		__atomic_store_n(&q->dropped_full, q->dropped_full + 1, __ATOMIC_RELAXED);
		return;
	}
	q->slot[t % EVQ_SLOTS] = b;
	__atomic_store_n(&q->queued, q->queued + 1, __ATOMIC_RELAXED);
	atomic_store_explicit(&q->tail, t + 1, memory_order_release);
}

#define EVQ_ADD(q, field, n) __atomic_store_n(&(q)->field, (q)->field + (n), __ATOMIC_RELAXED)

void dts__evq_drain(struct dts_storage *st, bool stopping)
{
	struct dts__evq *q = st->evq;
	uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	const uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);

	for (; h != t; h++) {
		struct dts_event_batch *b = q->slot[h % EVQ_SLOTS];
		int64_t now = dts__mono_ns();

		if (q->fail_since_ns && now < q->next_try_ns && !stopping)
			return; /* retried at a later wake-up */
		if (dts_storage_write_events(st, b) != 0) {
			EVQ_ADD(q, errors, 1);
			if (!q->fail_since_ns)
				q->fail_since_ns = now;
			if (!stopping && now - q->fail_since_ns < (int64_t)GIVE_UP_MS * 1000000) {
				q->next_try_ns = now + (int64_t)RETRY_MS * 1000000;
				return;
			}
			EVQ_ADD(q, dropped_failed, 1);
			if (now - q->fail_logged_ns >= (int64_t)GIVE_UP_MS * 1000000) {
				dts__log(st, 0, "store '%s': a batch of %zu events and %zu process states could not be "
					 "stored: dropped", st->data_dir, b->n_events, b->n_procs);
				q->fail_logged_ns = now;
			}
		} else {
			EVQ_ADD(q, written, 1);
			EVQ_ADD(q, events, b->n_events);
			EVQ_ADD(q, procs, b->n_procs);
		}
		q->fail_since_ns = 0;
		dts_event_batch_release(b);
		atomic_store_explicit(&q->head, h + 1, memory_order_release);
	}
}

void dts_storage_event_stats_read(const struct dts_storage *st, struct dts_storage_event_stats *out)
{
	const struct dts__evq *q = st->evq;

	memset(out, 0, sizeof(*out));
	if (!q)
		return;
	out->batches_written = __atomic_load_n(&q->written, __ATOMIC_RELAXED);
	out->batches_queued = __atomic_load_n(&q->queued, __ATOMIC_RELAXED);
	out->batches_dropped =
		__atomic_load_n(&q->dropped_full, __ATOMIC_RELAXED) + __atomic_load_n(&q->dropped_failed, __ATOMIC_RELAXED);
	out->events_written = __atomic_load_n(&q->events, __ATOMIC_RELAXED);
	out->processes_written = __atomic_load_n(&q->procs, __ATOMIC_RELAXED);
	out->write_errors = __atomic_load_n(&q->errors, __ATOMIC_RELAXED);
	uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed); /* head first: the depth is never negative */

	out->queue = atomic_load_explicit(&q->tail, memory_order_relaxed) - h;
}
