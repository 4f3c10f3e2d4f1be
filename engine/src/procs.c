/*
 * procs.c - the merger's process states and events: what native datagrams and PUT /agg report besides aggregates.
 *
 * Process states. One struct dts__pstate per (user, process), in an RCU lock-free hash table (cds_lfht, urcu-memb,
 * like the series map). It is fed by the process reports of handed-over tables (a heartbeat with an uptime or full
 * statistics) and by the data of its series (dts__pstate_data: statsd-only processes are heard through their data).
 * The merger is the only writer; it keeps a private working copy and publishes immutable snapshots (struct psnap,
 * replaced whole, the old one freed after a grace period), exactly as series publish their current state:
 *   - online: heard within 2.5 client periods. Re-evaluated for every state once per second of the merger's clock
 *     (so a reader's view is at most a second old), and at once for a state that just got a report;
 *   - a restart: an uptime lower than the previous report's. For native reports the instance must differ as well
 *     (a restarted client draws a new instance; one instance's uptime never goes down, so a lower uptime from the
 *     same instance is a reordered older report, ignored). PUT /agg has no instance: any decrease counts.
 *   - forgotten after process_expire_s without being heard, once no live series points at it.
 * A changed state goes to the sink at most every PERSIST_MS, at once when it restarts, goes on- or offline, or is
 * forgotten.
 *
 * Events. One struct uevents per user, in a second cds_lfht, with two rings (error, warning) of DTS_EVENTS_KEPT
 * pointers to immutable events. The merger numbers every event it takes with a global increasing seq, installs it in
 * its ring (the event it replaces is freed after a grace period) and copies it into the sink batch with the seq it
 * pushed out, so the store can delete that one. Readers collect both rings and sort by seq; they only report events
 * up to seq_published, which the merger advances (release) after installing a table's events: every event up to it
 * is in its ring, so a reader resuming from the last seq it saw never skips one (see dts_merger_read_events).
 *
 * ThreadSanitizer: the same two RCU edges as merger.c (rcu.h): publication (release before cds_lfht_add, acquire
 * after finding) and reclamation (dts__reclaim_begin first in every call_rcu callback). Snapshot and ring pointers
 * are C11 atomics (release/acquire), which TSan sees.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dts/hash.h"
#include "engine_internal.h"
#include "rcu.h"

/* A state that keeps changing (every report changes its uptime) goes to the store at most this often: one write per
 * process per client period, which bounds store writes by the number of processes, not of datagrams. */
#define PERSIST_MS 5000

/* Initial buckets of the two maps (they grow): processes and users are far fewer than series. */
#define MAP_BUCKETS 1024

struct psnap {
	struct rcu_head rcu;
	struct dts_process v;
};

struct dts__pstate {
	struct cds_lfht_node node; /* in procs, hash = hash of (user, process) */
	struct rcu_head rcu;
	uint64_t hash;
	_Atomic(struct psnap *) snap; /* published state (merger stores release, readers load acquire) */
	/* merger-private from here */
	struct dts_process cur; /* working copy; cur.user / cur.process point into name[] */
	int64_t stats_slot; /* slot of the report that gave cur.stats (orders one instance's reports) */
	int64_t since; /* first time heard since the state was last evaluated offline (0: not heard since) */
	int64_t persisted_ms; /* last hand-over to the sink (0: never) */
	bool dirty; /* on the dirty list: publish at the next step */
	bool unsaved; /* changed since the last hand-over to the sink */
	bool urgent; /* hand it over at the next step */
	struct dts__pstate *next_dirty;
	uint32_t nref; /* live series of this process */
	uint16_t user_len, process_len;
	char name[]; /* user\0process\0 (immutable) */
};

struct evrec {
	struct rcu_head rcu;
	struct dts_event v; /* v.user points into the owning uevents, v.process and v.text into bytes[] */
	char bytes[]; /* process\0text\0 */
};

struct uevents {
	struct cds_lfht_node node; /* in users, hash = hash of user */
	struct rcu_head rcu;
	uint64_t hash;
	_Atomic(struct evrec *) ring[2][DTS_EVENTS_KEPT]; /* by enum dts_native_event_kind */
	unsigned next[2]; /* merger-private: the position of the next event of each kind */
	uint16_t user_len;
	char user[];
};

/* A chunk of the strings of a sink batch. */
struct chunk {
	struct chunk *next;
	size_t used, cap;
	char data[];
};

#define PCACHE_SLOTS 256

struct dts__procs {
	struct cds_lfht *procs;
	struct cds_lfht *users;
	uint64_t key; /* the merger's secret identity key: senders name processes, so they must not aim at a chain */
	int64_t online_ms; /* 2.5 client periods */
	int64_t expire_ms;
	uint64_t seq; /* last event seq given */
	_Atomic uint64_t seq_published; /* every event up to this seq is installed in its ring */
	struct dts__pstate *dirty;
	int64_t eval_s; /* second of the last full evaluation */
	uint64_t nprocs;
	struct dts_merger_stats *stats;
	bool sink_on; /* sink.events set: build batches */
	struct dts_event_batch *batch; /* being built; NULL when nothing is pending */
	size_t ev_cap, proc_cap;
	/* The states pstate_get found or made last, by pcache_slot: a new series, a report or an event usually names
	 * one of a few processes, and this spares the keyed hashes and the map's lookup (~300 instructions per new
	 * series, docs/performance.md "Creating a series"). Merger thread only; a state leaves it before the map. */
	struct dts__pstate *cache[PCACHE_SLOTS];
};

/* ---- the sink batch -------------------------------------------------------------------------------------------- */

void dts_event_batch_release(struct dts_event_batch *b)
{
	if (!b)
		return;
	for (struct chunk *c = b->arena, *next; c; c = next) {
		next = c->next;
		free(c);
	}
	free(b->events);
	free(b->procs);
	free(b);
}

/* A NUL-terminated copy of n bytes in b's arena, or NULL. */
static char *batch_str(struct dts_event_batch *b, const char *s, size_t n)
{
	struct chunk *c = b->arena;
	char *p;

	if (!c || c->cap - c->used < n + 1) {
		size_t cap = n + 1 > 16384 ? n + 1 : 16384;

		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = b->arena;
		c->used = 0;
		c->cap = cap;
		b->arena = c;
	}
	p = c->data + c->used;
	memcpy(p, s, n);
	p[n] = '\0';
	c->used += n + 1;
	return p;
}

/* The batch being built, created on first use. NULL when the sink takes no batches or out of memory. */
static struct dts_event_batch *batch_get(struct dts__procs *p)
{
	if (!p->sink_on)
		return NULL;
	if (!p->batch) {
		p->batch = calloc(1, sizeof(*p->batch));
		p->ev_cap = 0;
		p->proc_cap = 0;
	}
	return p->batch;
}

/* Out of memory while building: the whole batch is lost (counted), the store catches up with the next states. */
static void batch_fail(struct dts__procs *p)
{
	DTS__STAT_ADD(p->stats->event_batches_dropped, 1);
	dts_event_batch_release(p->batch);
	p->batch = NULL;
}

static void batch_event(struct dts__procs *p, const struct dts_event *ev)
{
	struct dts_event_batch *b = batch_get(p);
	struct dts_event *e;

	if (!b)
		return;
	if (b->n_events == p->ev_cap) {
		size_t cap = p->ev_cap ? 2 * p->ev_cap : 64;
		struct dts_event *a = realloc(b->events, cap * sizeof(*a));

		if (!a)
			return batch_fail(p);
		b->events = a;
		p->ev_cap = cap;
	}
	e = &b->events[b->n_events];
	*e = *ev;
	e->user = batch_str(b, ev->user, strlen(ev->user));
	e->process = batch_str(b, ev->process, strlen(ev->process));
	e->text = batch_str(b, ev->text, ev->text_len);
	if (!e->user || !e->process || !e->text)
		return batch_fail(p);
	b->n_events++;
}

static void batch_proc(struct dts__procs *p, struct dts__pstate *ps, bool removed, int64_t now_ms)
{
	struct dts_event_batch *b = batch_get(p);
	struct dts_process *d;

	ps->unsaved = false;
	ps->urgent = false;
	ps->persisted_ms = now_ms;
	if (!b)
		return;
	if (b->n_procs == p->proc_cap) {
		size_t cap = p->proc_cap ? 2 * p->proc_cap : 64;
		struct dts_process *a = realloc(b->procs, cap * sizeof(*a));

		if (!a)
			return batch_fail(p);
		b->procs = a;
		p->proc_cap = cap;
	}
	d = &b->procs[b->n_procs];
	*d = ps->cur;
	d->removed = removed;
	d->user = batch_str(b, ps->cur.user, ps->user_len);
	d->process = batch_str(b, ps->cur.process, ps->process_len);
	if (!d->user || !d->process)
		return batch_fail(p);
	b->n_procs++;
}

/* ---- maps ------------------------------------------------------------------------------------------------------ */

struct pkey {
	const char *user, *process;
	size_t user_len, process_len;
};

static uint64_t user_hash(const char *user, size_t len)
{
	return dts_hash64(user, len, DTS_HASH_SEED);
}

static uint64_t proc_hash(const struct dts__procs *p, const struct pkey *k)
{
	return dts_hash64(k->process, k->process_len, user_hash(k->user, k->user_len) ^ p->key);
}

/* Is ps the state of k? */
static bool pstate_is(const struct dts__pstate *ps, const struct pkey *k)
{
	return ps->user_len == k->user_len && ps->process_len == k->process_len &&
	       memcmp(ps->cur.user, k->user, k->user_len) == 0 &&
	       memcmp(ps->cur.process, k->process, k->process_len) == 0;
}

static int pstate_match(struct cds_lfht_node *node, const void *key)
{
	const struct dts__pstate *ps = caa_container_of(node, struct dts__pstate, node);

	dts__hb_acquire(ps); /* readers look nodes up too: pairs with the release before cds_lfht_add */
	return pstate_is(ps, key);
}

static int uevents_match(struct cds_lfht_node *node, const void *key)
{
	const struct uevents *u = caa_container_of(node, struct uevents, node);
	const struct pkey *k = key;

	dts__hb_acquire(u); /* dts__events_read looks users up from reader threads: pairs with uevents_get's release */
	return u->user_len == k->user_len && memcmp(u->user, k->user, k->user_len) == 0;
}

static void psnap_free_rcu(struct rcu_head *head)
{
	dts__reclaim_begin();
	free(caa_container_of(head, struct psnap, rcu));
}

static void pstate_free_rcu(struct rcu_head *head)
{
	struct dts__pstate *ps = caa_container_of(head, struct dts__pstate, rcu);

	dts__reclaim_begin();
	free(atomic_load_explicit(&ps->snap, memory_order_relaxed));
	free(ps);
}

static void evrec_free_rcu(struct rcu_head *head)
{
	dts__reclaim_begin();
	free(caa_container_of(head, struct evrec, rcu));
}

static void uevents_free_rcu(struct rcu_head *head)
{
	struct uevents *u = caa_container_of(head, struct uevents, rcu);

	dts__reclaim_begin();
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < DTS_EVENTS_KEPT; i++)
			free(atomic_load_explicit(&u->ring[k][i], memory_order_relaxed));
	free(u);
}

struct dts__procs *dts__procs_create(const struct dts_merger_cfg *cfg, struct dts_merger_stats *stats)
{
	struct dts__procs *p = calloc(1, sizeof(*p));

	if (!p)
		goto out_nomem;
	p->key = cfg->ident_key;
	p->online_ms = (int64_t)cfg->client_period_s * 2500;
	p->expire_ms = (int64_t)cfg->process_expire_s * 1000;
	p->stats = stats;
	p->sink_on = cfg->sink.events != NULL;
	p->eval_s = INT64_MIN;
	p->procs = cds_lfht_new_flavor(MAP_BUCKETS, MAP_BUCKETS, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				       &urcu_memb_flavor, NULL);
	p->users = cds_lfht_new_flavor(MAP_BUCKETS, MAP_BUCKETS, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				       &urcu_memb_flavor, NULL);
	if (!p->procs || !p->users) {
		dts__procs_free(p);
		goto out_nomem;
	}
	return p;

out_nomem:
	errno = ENOMEM;
	return NULL;
}

static void mark_dirty(struct dts__procs *p, struct dts__pstate *ps)
{
	if (!ps->dirty) {
		ps->dirty = true;
		ps->next_dirty = p->dirty;
		p->dirty = ps;
	}
}

/* k's slot in p->cache. Not keyed: names aimed at one slot cost only the cache's hits (the map's hash is keyed). */
static unsigned pcache_slot(const struct pkey *k)
{
	return (unsigned)(dts_hash64(k->process, k->process_len, k->user_len) & (PCACHE_SLOTS - 1));
}

/* ps leaves the map: it must leave the cache first. */
static void pcache_forget(struct dts__procs *p, const struct dts__pstate *ps)
{
	const struct pkey k = { ps->cur.user, ps->cur.process, ps->user_len, ps->process_len };
	const unsigned i = pcache_slot(&k);

	if (p->cache[i] == ps)
		p->cache[i] = NULL;
}

/* The state of k, made when missing (NULL only without memory). Merger thread; the caller holds the read side. */
static struct dts__pstate *pstate_get(struct dts__procs *p, const struct pkey *k)
{
	const unsigned slot = pcache_slot(k);
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct dts__pstate *ps = p->cache[slot];
	uint64_t h;

	if (ps && pstate_is(ps, k))
		return ps;
	h = proc_hash(p, k);
	cds_lfht_lookup(p->procs, (unsigned long)h, pstate_match, k, &it);
	node = cds_lfht_iter_get_node(&it);
	if (node) {
		ps = caa_container_of(node, struct dts__pstate, node);
		p->cache[slot] = ps;
		return ps;
	}
	ps = calloc(1, sizeof(*ps) + k->user_len + k->process_len + 2);
	if (!ps) {
		DTS__STAT_ADD(p->stats->dropped[DTS_DROP_NOMEM], 1);
		return NULL;
	}
	cds_lfht_node_init(&ps->node);
	ps->hash = h;
	ps->user_len = (uint16_t)k->user_len;
	ps->process_len = (uint16_t)k->process_len;
	memcpy(ps->name, k->user, k->user_len);
	memcpy(ps->name + k->user_len + 1, k->process, k->process_len);
	ps->cur.user = ps->name;
	ps->cur.process = ps->name + k->user_len + 1;
	ps->unsaved = true;
	mark_dirty(p, ps);
	dts__hb_release(ps);
	cds_lfht_add(p->procs, (unsigned long)h, &ps->node);
	p->nprocs++;
	__atomic_store_n(&p->stats->processes_live, p->nprocs, __ATOMIC_RELAXED);
	p->cache[slot] = ps;
	return ps;
}

struct dts__pstate *dts__procs_get(struct dts__procs *p, const char *user, size_t user_len, const char *process,
				   size_t process_len)
{
	struct pkey k = { user, process, user_len, process_len };

	return pstate_get(p, &k);
}

void dts__pstate_ref(struct dts__pstate *ps, int delta)
{
	ps->nref = (uint32_t)((int64_t)ps->nref + delta);
}

/* The process was heard at heard_ms. */
static void heard(struct dts__procs *p, struct dts__pstate *ps, int64_t heard_ms)
{
	if (heard_ms <= ps->cur.last_heard_ms)
		return;
	ps->cur.last_heard_ms = heard_ms;
	if (!ps->cur.online && !ps->since)
		ps->since = heard_ms;
	ps->unsaved = true;
	mark_dirty(p, ps);
}

void dts__pstate_data(struct dts__procs *p, struct dts__pstate *ps, int64_t heard_ms)
{
	heard(p, ps, heard_ms);
}

/* Apply one process report (see the top of the file for the restart rule). */
static void apply_report(struct dts__procs *p, struct dts__pstate *ps, const struct dts__proc *r)
{
	struct dts_process *c = &ps->cur;
	bool same = r->instance && r->instance == c->instance;

	heard(p, ps, r->heard_ms);
	if (!(r->flags & DTS__PROC_UPTIME) || (same && r->slot_s < ps->stats_slot))
		return; /* a heartbeat only, or an older report of this instance arriving after a newer one */
	if (c->has_uptime && r->stats.uptime_s < c->stats.uptime_s && !same) {
		c->restarts++;
		c->last_restart_ms = r->heard_ms;
		ps->urgent = true;
		DTS__STAT_ADD(p->stats->restarts, 1);
	}
	if (r->flags & DTS__PROC_STATS) {
		c->stats = r->stats;
	} else {
		memset(&c->stats, 0, sizeof(c->stats));
		c->stats.uptime_s = r->stats.uptime_s;
	}
	c->has_stats = (r->flags & DTS__PROC_STATS) != 0;
	c->has_uptime = true;
	c->instance = r->instance;
	c->stats_ms = r->heard_ms;
	ps->stats_slot = r->slot_s;
	ps->unsaved = true;
	mark_dirty(p, ps);
}

/* The event rings of user, created when missing. Caller holds the read side. */
static struct uevents *uevents_get(struct dts__procs *p, const char *user, size_t len, bool create)
{
	struct pkey k = { .user = user, .user_len = len };
	uint64_t h = user_hash(user, len);
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct uevents *u;

	cds_lfht_lookup(p->users, (unsigned long)h, uevents_match, &k, &it);
	node = cds_lfht_iter_get_node(&it);
	if (node || !create)
		return node ? caa_container_of(node, struct uevents, node) : NULL;
	u = calloc(1, sizeof(*u) + len + 1);
	if (!u)
		return NULL;
	cds_lfht_node_init(&u->node);
	u->hash = h;
	u->user_len = (uint16_t)len;
	memcpy(u->user, user, len);
	dts__hb_release(u);
	cds_lfht_add(p->users, (unsigned long)h, &u->node);
	return u;
}

/*
 * Install an event (seq already chosen) at the next position of its ring. Returns the seq of the event it replaced
 * (0: none), or -1 when out of memory (counted; nothing changed). Caller holds the read side.
 */
static int64_t install_event(struct dts__procs *p, struct uevents *u, const struct dts_event *ev)
{
	size_t plen = strlen(ev->process);
	struct evrec *r = malloc(sizeof(*r) + plen + ev->text_len + 2);
	unsigned pos = u->next[ev->kind];
	struct evrec *old;

	if (!r) {
		DTS__STAT_ADD(p->stats->dropped[DTS_DROP_NOMEM], 1);
		return -1;
	}
	r->v = *ev;
	r->v.user = u->user;
	r->v.evicted_seq = 0;
	memcpy(r->bytes, ev->process, plen + 1);
	memcpy(r->bytes + plen + 1, ev->text, ev->text_len);
	r->bytes[plen + 1 + ev->text_len] = '\0';
	r->v.process = r->bytes;
	r->v.text = r->bytes + plen + 1;
	old = atomic_exchange_explicit(&u->ring[ev->kind][pos], r, memory_order_acq_rel);
	u->next[ev->kind] = (pos + 1) % DTS_EVENTS_KEPT;
	if (!old)
		return 0;
	int64_t evicted = (int64_t)old->v.seq;

	dts__call_rcu(&old->rcu, evrec_free_rcu);
	return evicted;
}

/* Take one event of a table: number it, install it, copy it into the sink batch. Caller holds the read side. */
static void take_event(struct dts__procs *p, const struct dts__event *te)
{
	char process[DTS_MAX_NAME + 1];
	struct uevents *u = uevents_get(p, te->bytes, te->user_len, true);
	struct dts_event ev;
	int64_t evicted;

	if (!u) {
		DTS__STAT_ADD(p->stats->dropped[DTS_DROP_NOMEM], 1);
		return;
	}
	memcpy(process, te->bytes + te->user_len, te->process_len);
	process[te->process_len] = '\0';
	memset(&ev, 0, sizeof(ev));
	ev.seq = p->seq + 1;
	ev.ts_ms = te->ts_ms;
	ev.recv_ms = te->heard_ms;
	ev.user = u->user;
	ev.process = process;
	ev.text = te->bytes + te->user_len + te->process_len; /* not NUL-terminated: install and batch copy text_len */
	ev.text_len = te->text_len;
	ev.kind = te->kind;
	evicted = install_event(p, u, &ev);
	if (evicted < 0)
		return;
	p->seq = ev.seq;
	ev.evicted_seq = (uint64_t)evicted;
	batch_event(p, &ev);
	DTS__STAT_ADD(p->stats->events_total, 1);
	__atomic_store_n(&p->stats->event_seq, p->seq, __ATOMIC_RELAXED);
}

void dts__procs_fold(struct dts__procs *p, const struct dts__table *t)
{
	uint32_t off = 0;

	if (!t->n_proc && !t->n_ev)
		return;
	dts__read_lock();
	for (uint32_t i = 0; i < t->n_proc; i++) {
		const struct dts__proc *r = &t->proc[i];
		const struct dts__ident *id = (const struct dts__ident *)(t->keys + r->ident_off);
		struct pkey k = { id->bytes, id->bytes + id->user_len, id->user_len, id->process_len };
		struct dts__pstate *ps = pstate_get(p, &k);

		if (ps)
			apply_report(p, ps, r);
	}
	for (uint32_t i = 0; i < t->n_ev; i++) {
		const struct dts__event *e = (const struct dts__event *)(t->ev + off);

		take_event(p, e);
		off += (uint32_t)((sizeof(*e) + e->user_len + e->process_len + e->text_len + 7) & ~(size_t)7);
	}
	dts__read_unlock();
	/* every event up to p->seq is in its ring: readers may report them */
	atomic_store_explicit(&p->seq_published, p->seq, memory_order_release);
}

/* ---- evaluation, publication, expiry --------------------------------------------------------------------------- */

/* Online now? Marks the state dirty and urgent when that changed. */
static void evaluate(struct dts__procs *p, struct dts__pstate *ps, int64_t now_ms)
{
	struct dts_process *c = &ps->cur;
	bool on = c->last_heard_ms > 0 && now_ms - c->last_heard_ms <= p->online_ms;

	if (on == c->online)
		return;
	c->online = on;
	c->online_since_ms = on ? (ps->since ? ps->since : c->last_heard_ms) : 0;
	ps->since = 0;
	ps->urgent = true;
	ps->unsaved = true;
	mark_dirty(p, ps);
}

static void publish(struct dts__procs *p, struct dts__pstate *ps)
{
	struct psnap *s = malloc(sizeof(*s)), *old;

	if (!s) {
		DTS__STAT_ADD(p->stats->dropped[DTS_DROP_NOMEM], 1);
		return;
	}
	s->v = ps->cur;
	s->v.removed = false;
	old = atomic_exchange_explicit(&ps->snap, s, memory_order_acq_rel);
	if (old)
		dts__call_rcu(&old->rcu, psnap_free_rcu);
}

void dts__procs_step(struct dts__procs *p, int64_t now_ms, const struct dts_sink *sink, bool final)
{
	const int64_t now_s = now_ms / 1000;
	struct cds_lfht_iter it;
	struct cds_lfht_node *lnode;
	struct dts__pstate *ps;

	dts__read_lock();
	if (now_s != p->eval_s || final) {
		uint64_t online = 0;

		p->eval_s = now_s;
		for (cds_lfht_first(p->procs, &it); (lnode = cds_lfht_iter_get_node(&it)) != NULL;
		     cds_lfht_next(p->procs, &it)) {
			ps = caa_container_of(lnode, struct dts__pstate, node);
			evaluate(p, ps, now_ms);
			online += ps->cur.online;
			if (!ps->dirty && !ps->nref && now_ms - ps->cur.last_heard_ms > p->expire_ms &&
			    cds_lfht_del(p->procs, &ps->node) == 0) {
				pcache_forget(p, ps);
				batch_proc(p, ps, true, now_ms);
				p->nprocs--;
				dts__call_rcu(&ps->rcu, pstate_free_rcu);
				continue;
			}
			if (ps->unsaved && !ps->dirty && (final || now_ms - ps->persisted_ms >= PERSIST_MS))
				batch_proc(p, ps, false, now_ms);
		}
		__atomic_store_n(&p->stats->processes_live, p->nprocs, __ATOMIC_RELAXED);
		__atomic_store_n(&p->stats->processes_online, online, __ATOMIC_RELAXED);
	}
	while ((ps = p->dirty)) {
		p->dirty = ps->next_dirty;
		evaluate(p, ps, now_ms); /* ps->dirty is still set: this cannot put it back on the list */
		ps->dirty = false;
		publish(p, ps);
		if (ps->unsaved && (final || ps->urgent || now_ms - ps->persisted_ms >= PERSIST_MS))
			batch_proc(p, ps, false, now_ms);
	}
	dts__read_unlock();
	if (p->batch && (p->batch->n_events || p->batch->n_procs))
		sink->events(sink->ctx, p->batch);
	else
		dts_event_batch_release(p->batch);
	p->batch = NULL;
}

/* ---- readers --------------------------------------------------------------------------------------------------- */

size_t dts__procs_read(struct dts__procs *p, const char *user, dts_process_visit_fn fn, void *ctx)
{
	size_t ulen = user ? strlen(user) : 0, n = 0;
	struct cds_lfht_iter it;
	struct cds_lfht_node *lnode;
	struct dts__pstate *ps;

	dts__read_lock();
	for (cds_lfht_first(p->procs, &it); (lnode = cds_lfht_iter_get_node(&it)) != NULL;
	     cds_lfht_next(p->procs, &it)) {
		struct psnap *s;

		ps = caa_container_of(lnode, struct dts__pstate, node);
		dts__hb_acquire(ps);
		if (user && (ps->user_len != ulen || memcmp(ps->name, user, ulen) != 0))
			continue;
		s = atomic_load_explicit(&ps->snap, memory_order_acquire);
		if (!s)
			continue; /* created by the merger, not published yet */
		n++;
		if (fn(ctx, &s->v))
			break;
	}
	dts__read_unlock();
	return n;
}

size_t dts__events_read(struct dts__procs *p, const char *user, uint64_t after_seq, dts_event_visit_fn fn, void *ctx)
{
	const struct evrec *got[2 * DTS_EVENTS_KEPT];
	struct uevents *u;
	uint64_t upto;
	size_t n = 0, visited = 0;

	if (!user)
		return 0;
	dts__read_lock();
	upto = atomic_load_explicit(&p->seq_published, memory_order_acquire);
	u = uevents_get(p, user, strlen(user), false);
	if (u) {
		dts__hb_acquire(u);
		for (int k = 0; k < 2; k++)
			for (int i = 0; i < DTS_EVENTS_KEPT; i++) {
				const struct evrec *r = atomic_load_explicit(&u->ring[k][i], memory_order_acquire);

				if (r && r->v.seq > after_seq && r->v.seq <= upto)
					got[n++] = r;
			}
	}
	/* insertion sort: at most 200, and each ring is already in order but for its wrap point */
	for (size_t i = 1; i < n; i++) {
		const struct evrec *x = got[i];
		size_t j = i;

		for (; j > 0 && got[j - 1]->v.seq > x->v.seq; j--)
			got[j] = got[j - 1];
		got[j] = x;
	}
	for (size_t i = 0; i < n; i++) {
		visited++;
		if (fn(ctx, &got[i]->v))
			break;
	}
	dts__read_unlock();
	return visited;
}

/* ---- restore and teardown -------------------------------------------------------------------------------------- */

int dts__procs_restore(struct dts__procs *p, const struct dts_process *st)
{
	struct pkey k;
	struct dts__pstate *ps;

	if (!st->user || !st->process || !*st->user || !*st->process || strlen(st->user) > DTS_MAX_USER ||
	    strlen(st->process) > DTS_MAX_NAME)
		return -EINVAL;
	k.user = st->user;
	k.user_len = strlen(st->user);
	k.process = st->process;
	k.process_len = strlen(st->process);
	dts__read_lock();
	ps = pstate_get(p, &k);
	if (ps) {
		const char *u = ps->cur.user, *pr = ps->cur.process;

		ps->cur = *st;
		ps->cur.user = u;
		ps->cur.process = pr;
		ps->cur.removed = false;
		/* online is evaluated at the first step, resuming the stored period if the process is still online */
		ps->cur.online = false;
		ps->since = st->online ? st->online_since_ms : 0;
		ps->cur.online_since_ms = 0;
		ps->stats_slot = 0;
		ps->unsaved = false;
		ps->persisted_ms = st->last_heard_ms;
	}
	dts__read_unlock();
	return ps ? 0 : -ENOMEM;
}

int dts__events_restore(struct dts__procs *p, const struct dts_event *ev)
{
	struct uevents *u;
	int64_t r = -1;

	if (!ev->user || !*ev->user || strlen(ev->user) > DTS_MAX_USER || !ev->process || !ev->text ||
	    ev->kind > DTS_NATIVE_WARNING || ev->seq == 0)
		return -EINVAL;
	dts__read_lock();
	u = uevents_get(p, ev->user, strlen(ev->user), true);
	if (u)
		r = install_event(p, u, ev);
	dts__read_unlock();
	if (r < 0)
		return -ENOMEM;
	if (ev->seq > p->seq)
		p->seq = ev->seq;
	atomic_store_explicit(&p->seq_published, p->seq, memory_order_release);
	__atomic_store_n(&p->stats->event_seq, p->seq, __ATOMIC_RELAXED);
	return 0;
}

void dts__procs_clear(struct dts__procs *p)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *lnode;
	struct dts__pstate *ps;
	struct uevents *u;

	dts__read_lock();
	for (cds_lfht_first(p->procs, &it); (lnode = cds_lfht_iter_get_node(&it)) != NULL;
	     cds_lfht_next(p->procs, &it)) {
		ps = caa_container_of(lnode, struct dts__pstate, node);
		if (cds_lfht_del(p->procs, &ps->node) == 0)
			dts__call_rcu(&ps->rcu, pstate_free_rcu);
	}
	for (cds_lfht_first(p->users, &it); (lnode = cds_lfht_iter_get_node(&it)) != NULL;
	     cds_lfht_next(p->users, &it)) {
		u = caa_container_of(lnode, struct uevents, node);
		if (cds_lfht_del(p->users, &u->node) == 0)
			dts__call_rcu(&u->rcu, uevents_free_rcu);
	}
	dts__read_unlock();
	p->dirty = NULL;
	p->nprocs = 0;
}

void dts__procs_free(struct dts__procs *p)
{
	if (!p)
		return;
	if (p->procs)
		cds_lfht_destroy(p->procs, NULL);
	if (p->users)
		cds_lfht_destroy(p->users, NULL);
	dts_event_batch_release(p->batch);
	free(p);
}
