/*
 * test_ingest.c - the engine taking native datagrams, partial aggregates, process statistics and events: what a client
 * sends comes out exactly in the merged minute and the current state; every reject reason is counted and nothing of a
 * rejected datagram is kept; process states (online, restarts) on a controlled clock; the last events per user and
 * kind; the store round trip of events and process states (write, reopen, restore); and dts_core_ingest_burst, whose
 * results over a mixed stream must be those of one dts_core_ingest call per datagram. Fake clock, no sleeps.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dts/engine.h"
#include "dts/hash.h"
#include "dts/native.h"
#include "dts/storage.h"

#define T0 1700000040LL /* a minute boundary: 1700000040 / 60 = 28333334 */
#define GRACE 5
#define MAXD 64
#define MAXB 64

/* ---- keys ------------------------------------------------------------------------------------------------------ */

struct test_key {
	uint32_t id;
	const char *user;
	const char *secret;
	struct dts_native_mac_key mac;
	struct dts_native_key k;
};

static struct test_key keys[] = {
	{ .id = 7, .user = "alice", .secret = "alice-secret" },
	{ .id = 9, .user = "bob", .secret = "bob-secret" },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct dts_native_key *lookup(void *ctx, uint32_t id)
{
	(void)ctx;
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].id == id)
			return &keys[i].k;
	return NULL;
}

static const struct dts_native_mac_key *mac_of(uint32_t id)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].id == id)
			return &keys[i].mac;
	return &keys[0].mac;
}

/* ---- the merger and its sink ----------------------------------------------------------------------------------- */

static struct dts_merger *m;
static struct dts_closed_minute *closed[32];
static int nclosed;
static struct dts_event_batch *batches[MAXB];
static int nbatches;

static void minute_sink(void *ctx, struct dts_closed_minute *cm)
{
	(void)ctx;
	cr_assert_lt(nclosed, 32);
	closed[nclosed++] = cm;
}

static void events_sink(void *ctx, struct dts_event_batch *b)
{
	(void)ctx;
	cr_assert_lt(nbatches, MAXB);
	batches[nbatches++] = b;
}

static void cfg_base(struct dts_merger_cfg *cfg)
{
	dts_merger_cfg_defaults(cfg);
	cfg->cores = 2;
	cfg->grace_s = GRACE;
	cfg->table_capacity = 4096;
	cfg->expire_s = 600;
	cfg->sink.minute_closed = minute_sink;
	cfg->sink.events = events_sink;
	cfg->native.key_lookup = lookup;
}

static void start_cfg(const struct dts_merger_cfg *cfg)
{
	m = dts_merger_create(cfg);
	cr_assert_not_null(m);
}

static void setup(void)
{
	struct dts_merger_cfg cfg;

	dts_rcu_register_thread();
	for (size_t i = 0; i < NKEYS; i++) {
		cr_assert_eq(dts_native_mac_key_init(&keys[i].mac, keys[i].secret, strlen(keys[i].secret)), 0);
		keys[i].k = (struct dts_native_key){ .user = keys[i].user, .user_len = strlen(keys[i].user),
						     .mac = &keys[i].mac };
	}
	nclosed = 0;
	nbatches = 0;
	cfg_base(&cfg);
	start_cfg(&cfg);
}

static void release_all(void)
{
	for (int i = 0; i < nclosed; i++)
		dts_closed_minute_release(closed[i]);
	for (int i = 0; i < nbatches; i++)
		dts_event_batch_release(batches[i]);
	nclosed = 0;
	nbatches = 0;
}

static void teardown(void)
{
	if (m)
		dts_merger_destroy(m, (T0 + 3600) * 1000);
	m = NULL;
	release_all();
	dts_rcu_barrier();
	dts_rcu_unregister_thread();
}

TestSuite(ingest, .init = setup, .fini = teardown);

/* ---- datagrams ------------------------------------------------------------------------------------------------- */

struct batch {
	uint8_t d[MAXD][DTS_NATIVE_MAX_DATAGRAM];
	size_t len[MAXD];
	unsigned n;
};

static int collect(void *ctx, const uint8_t *dgram, size_t len)
{
	struct batch *b = ctx;

	cr_assert_lt(b->n, MAXD);
	memcpy(b->d[b->n], dgram, len);
	b->len[b->n++] = len;
	return 0;
}

static struct dts_native_hdr hdr(const char *user, uint64_t instance, int64_t slot, uint32_t uptime)
{
	return (struct dts_native_hdr){
		.key_id = strcmp(user, "bob") == 0 ? 9 : 7,
		.instance = instance,
		.slot = slot,
		.user = user,
		.user_len = strlen(user),
		.process = "api",
		.process_len = 3,
		.stats = { .uptime_s = uptime, .rss_bytes = 8u << 20, .cpu_us = 250000, .cpu_pct = 0.5f, .errors = 1,
			   .warnings = 2, .dropped = 0 },
	};
}

/* Encode a slot's batch with h, MACed with the key of mac_id; the sequence continues in *seq. */
static void encode(struct batch *b, const struct dts_native_hdr *h, uint32_t mac_id, uint64_t *seq,
		   const struct dts_native_event *ev, size_t nev, const struct dts_native_partial *p, size_t np)
{
	static struct dts_native_enc e;

	b->n = 0;
	cr_assert_eq(dts_native_enc_begin(&e, h, mac_of(mac_id), seq, collect, b), 0);
	for (size_t i = 0; i < nev; i++)
		cr_assert_eq(dts_native_enc_event(&e, &ev[i]), 0);
	for (size_t i = 0; i < np; i++)
		cr_assert_eq(dts_native_enc_partial(&e, &p[i]), 0, "partial %zu", i);
	cr_assert_gt(dts_native_enc_end(&e), 0);
}

/* Ingest every datagram of b on core at now_s and hand the table over. Returns the partials taken. */
static unsigned feed(unsigned core, int64_t now_s, const struct batch *b)
{
	struct dts_core *c = dts_merger_core(m, core);
	unsigned n = 0;

	for (unsigned i = 0; i < b->n; i++)
		n += dts_core_ingest(c, (const char *)b->d[i], b->len[i], now_s);
	dts_core_flush(c);
	dts_core_tick(c, now_s * 1000);
	return n;
}

static void hand_over(unsigned core, int64_t now_s)
{
	struct dts_core *c = dts_merger_core(m, core);

	dts_core_flush(c);
	cr_assert(dts_core_tick(c, now_s * 1000), "hand-over must succeed");
}

static struct dts_core_stats core_stats(unsigned core)
{
	struct dts_core_stats s;

	dts_core_stats_read(dts_merger_core(m, core), &s);
	return s;
}

/* ---- readers --------------------------------------------------------------------------------------------------- */

struct want {
	const char *process, *counter;
	uint8_t type;
	bool found;
	bool has_cur;
	struct dts_current cur;
};

static int find_cb(void *ctx, const struct dts_series_view *v)
{
	struct want *w = ctx;

	if (strcmp(v->process, w->process) || strcmp(v->counter, w->counter) || v->type != w->type)
		return 0;
	w->found = true;
	w->has_cur = v->cur != NULL;
	if (v->cur)
		w->cur = *v->cur;
	return 1;
}

static struct dts_current current(const char *user, const char *process, const char *counter, uint8_t type)
{
	struct want w = { .process = process, .counter = counter, .type = type };

	dts_merger_read_current(m, user, find_cb, &w);
	cr_assert(w.found && w.has_cur, "current state of %s/%s/%s", user, process, counter);
	return w.cur;
}

static int count_cb(void *ctx, const struct dts_series_view *v)
{
	(void)ctx;
	(void)v;
	return 0;
}

struct pwant {
	const char *process;
	bool found;
	struct dts_process p;
	char user[DTS_MAX_USER + 1];
};

static int proc_cb(void *ctx, const struct dts_process *p)
{
	struct pwant *w = ctx;

	if (strcmp(p->process, w->process) != 0)
		return 0;
	w->found = true;
	w->p = *p;
	snprintf(w->user, sizeof(w->user), "%s", p->user);
	w->p.user = w->user;
	w->p.process = w->process;
	return 1;
}

static bool process(const char *user, const char *name, struct dts_process *out)
{
	struct pwant w = { .process = name };

	dts_merger_read_processes(m, user, proc_cb, &w);
	if (w.found && out)
		*out = w.p;
	return w.found;
}

static int nop_proc(void *ctx, const struct dts_process *p)
{
	(void)ctx;
	(void)p;
	return 0;
}

struct evs {
	unsigned n;
	uint64_t seq[256];
	uint8_t kind[256];
	int64_t ts[256];
	char text[256][64];
	char proc[256][32];
};

static int ev_cb(void *ctx, const struct dts_event *ev)
{
	struct evs *e = ctx;

	cr_assert_lt(e->n, 256);
	cr_assert_eq(ev->evicted_seq, 0, "readers see no evicted seq");
	e->seq[e->n] = ev->seq;
	e->kind[e->n] = ev->kind;
	e->ts[e->n] = ev->ts_ms;
	snprintf(e->text[e->n], sizeof(e->text[0]), "%.*s", (int)ev->text_len, ev->text);
	snprintf(e->proc[e->n], sizeof(e->proc[0]), "%s", ev->process);
	e->n++;
	return 0;
}

static void events(const char *user, uint64_t after, struct evs *out)
{
	memset(out, 0, sizeof(*out));
	cr_assert_eq(dts_merger_read_events(m, user, after, ev_cb, out), out->n);
}

static const struct dts_minute_rec *closed_rec(int64_t minute, const char *user, const char *process,
					       const char *counter, uint8_t type)
{
	for (int i = 0; i < nclosed; i++) {
		if (closed[i]->minute != minute || closed[i]->late)
			continue;
		for (size_t k = 0; k < closed[i]->n; k++) {
			const struct dts_minute_rec *r = &closed[i]->recs[k];

			if (!strcmp(r->user, user) && !strcmp(r->process, process) && !strcmp(r->counter, counter) &&
			    r->type == type)
				return r;
		}
	}
	return NULL;
}

/* ---- aggregates and sketches ----------------------------------------------------------------------------------- */

static void assert_agg_eq(const struct dts_agg *a, const struct dts_agg *b, const char *what)
{
	cr_assert_eq(a->sum, b->sum, "%s sum %.17g %.17g", what, a->sum, b->sum);
	cr_assert_eq(a->count, b->count, "%s count", what);
	cr_assert_eq(a->min, b->min, "%s min", what);
	cr_assert_eq(a->max, b->max, "%s max", what);
	cr_assert_eq(a->fst, b->fst, "%s fst", what);
	cr_assert_eq(a->lst, b->lst, "%s lst", what);
}

/* Bin for bin: equal encodings. */
static void assert_sketch_eq(const struct dts_sketch *a, const struct dts_sketch *b, const char *what)
{
	size_t na = dts_sketch_encoded_size(a), nb = dts_sketch_encoded_size(b);
	uint8_t *ea = malloc(na), *eb = malloc(nb);

	cr_assert_eq(na, nb, "%s: sizes %zu %zu", what, na, nb);
	cr_assert_eq(dts_sketch_encode(a, ea, na), (int)na);
	cr_assert_eq(dts_sketch_encode(b, eb, nb), (int)nb);
	cr_assert_eq(memcmp(ea, eb, na), 0, "%s: bins differ", what);
	free(ea);
	free(eb);
}

static void assert_set_eq(const struct dts_set *a, const struct dts_set *b, const char *what)
{
	size_t na = dts_set_encoded_size(a), nb = dts_set_encoded_size(b);
	uint8_t *ea = malloc(na), *eb = malloc(nb);

	cr_assert_eq(na, nb, "%s: sizes %zu %zu", what, na, nb);
	cr_assert_eq(dts_set_encode(a, ea, na), (int)na);
	cr_assert_eq(dts_set_encode(b, eb, nb), (int)nb);
	cr_assert_eq(memcmp(ea, eb, na), 0, "%s: members differ", what);
	cr_assert_eq(dts_set_cardinality(a), dts_set_cardinality(b), "%s: cardinality", what);
	free(ea);
	free(eb);
}

/* A timer partial of n deterministic lognormal-ish values (ms) starting at index from. */
static void timer_values(struct dts_sketch *sk, struct dts_agg *agg, int from, int n, double scale)
{
	dts_sketch_init(sk);
	dts_agg_init(agg);
	for (int i = from; i < from + n; i++) {
		double v = scale * exp(sin(i * 1.7) * 1.5) + (i % 7) * 0.25;

		cr_assert_eq(dts_sketch_add(sk, v, 1.0), 0);
		dts_agg_add(agg, v, 1.0);
	}
}

static struct dts_native_partial partial(const char *name, uint8_t type, const struct dts_agg *agg,
					 const struct dts_sketch *sk, const struct dts_set *set)
{
	return (struct dts_native_partial){ .name = name, .name_len = (uint16_t)strlen(name), .tags = "",
					    .type = type, .agg = *agg, .sketch = sk, .set = set };
}

/* ================================================================================================================ */
/* A datagram's counters, timers, gauges and sets come out exactly                                                  */

Test(ingest, native_partials_exact_in_current_state_and_closed_minute)
{
	struct dts_agg ca, ta, ga, sa;
	struct dts_sketch sk;
	struct dts_set set;
	struct dts_native_partial p[4];
	static struct batch b;
	uint64_t seq = 1;
	const int64_t slot = T0 + 5, now = T0 + 12;

	dts_agg_init(&ca);
	for (int i = 1; i <= 3; i++)
		dts_agg_add(&ca, i, 1.0);
	timer_values(&sk, &ta, 0, 200, 20.0);
	dts_agg_init(&ga);
	dts_agg_add(&ga, 5, 1.0);
	dts_agg_add(&ga, 9, 1.0);
	dts_agg_add(&ga, 7, 1.0);
	dts_set_init(&set);
	dts_agg_init(&sa);
	for (int i = 0; i < 30; i++) {
		char member[16];

		snprintf(member, sizeof(member), "user%d", i);
		cr_assert_eq(dts_set_add(&set, dts_hash64(member, strlen(member), DTS_HASH_SEED)), 0);
		dts_agg_add(&sa, 1, 1.0);
	}
	p[0] = partial("hits", DTS_COUNTER, &ca, NULL, NULL);
	p[1] = partial("query", DTS_TIMER, &ta, &sk, NULL);
	p[2] = partial("queue", DTS_GAUGE, &ga, NULL, NULL);
	p[3] = partial("users", DTS_SET, &sa, NULL, &set);
	struct dts_native_hdr h = hdr("alice", 0xA1, slot, 100);
	encode(&b, &h, 7, &seq, NULL, 0, p, 4);
	cr_assert_eq(feed(0, now, &b), 4);
	cr_assert_eq(core_stats(0).native_datagrams, b.n);
	cr_assert_eq(core_stats(0).partials, 4);
	dts_merger_step(m, now * 1000);

	/* current state: the 12 slots before now's slot hold the data */
	struct dts_current c = current("alice", "api", "hits", DTS_COUNTER);
	cr_expect_eq(c.sum, 6);
	cr_expect_eq(c.count, 3);
	cr_expect_eq(c.rate, 6.0 / 60);
	c = current("alice", "api", "query", DTS_TIMER);
	cr_expect_eq(c.count, ta.count);
	cr_expect_eq(c.sum, ta.sum);
	cr_expect_eq(c.min, ta.min);
	cr_expect_eq(c.max, ta.max);
	cr_expect_eq(c.bot10, dts_sketch_quantile(&sk, 0.10), "bot10 as the client sketch's");
	cr_expect_eq(c.top10, dts_sketch_quantile(&sk, 0.90));
	cr_expect_eq(c.p50, dts_sketch_quantile(&sk, 0.50));
	cr_expect_eq(c.p99, dts_sketch_quantile(&sk, 0.99));
	c = current("alice", "api", "queue", DTS_GAUGE);
	cr_expect_eq(c.last, 7);
	cr_expect_eq(c.min, 5);
	cr_expect_eq(c.max, 9);
	c = current("alice", "api", "users", DTS_SET);
	cr_expect_eq(c.distinct, 30);

	/* the closed minute: the same aggregates, the timer's sketch bin for bin, the set member for member */
	dts_merger_step(m, (T0 + 60 + GRACE + 1) * 1000);
	const struct dts_minute_rec *r = closed_rec(T0 / 60, "alice", "api", "hits", DTS_COUNTER);
	cr_assert_not_null(r);
	assert_agg_eq(&r->agg, &ca, "counter");
	r = closed_rec(T0 / 60, "alice", "api", "query", DTS_TIMER);
	cr_assert_not_null(r);
	assert_agg_eq(&r->agg, &ta, "timer");
	assert_sketch_eq(&r->sketch, &sk, "timer sketch");
	r = closed_rec(T0 / 60, "alice", "api", "queue", DTS_GAUGE);
	cr_assert_not_null(r);
	assert_agg_eq(&r->agg, &ga, "gauge");
	r = closed_rec(T0 / 60, "alice", "api", "users", DTS_SET);
	cr_assert_not_null(r);
	assert_agg_eq(&r->agg, &sa, "set");
	assert_set_eq(&r->set, &set, "set");
	dts_sketch_free(&sk);
	dts_set_free(&set);
}

Test(ingest, timer_sketches_of_two_clients_merge_exactly)
{
	struct dts_sketch a, b2, merged;
	struct dts_agg aa, ba, ma;
	struct dts_native_partial p;
	static struct batch b;
	uint64_t seq1 = 1, seq2 = 1;

	timer_values(&a, &aa, 0, 300, 15.0);
	timer_values(&b2, &ba, 1000, 150, 40.0);
	/* two instances of one process, on two cores, in two slots of the minute */
	p = partial("query", DTS_TIMER, &aa, &a, NULL);
	struct dts_native_hdr h1 = hdr("alice", 0x1, T0 + 10, 50);
	encode(&b, &h1, 7, &seq1, NULL, 0, &p, 1);
	cr_assert_eq(feed(0, T0 + 16, &b), 1);
	p = partial("query", DTS_TIMER, &ba, &b2, NULL);
	struct dts_native_hdr h2 = hdr("alice", 0x2, T0 + 15, 70);
	encode(&b, &h2, 7, &seq2, NULL, 0, &p, 1);
	cr_assert_eq(feed(1, T0 + 17, &b), 1);
	dts_merger_step(m, (T0 + 21) * 1000);

	dts_sketch_init(&merged);
	cr_assert_eq(dts_sketch_merge(&merged, &a), 0);
	cr_assert_eq(dts_sketch_merge(&merged, &b2), 0);
	ma = aa;
	dts_agg_merge(&ma, &ba);
	struct dts_current c = current("alice", "api", "query", DTS_TIMER);
	cr_expect_eq(c.bot10, dts_sketch_quantile(&merged, 0.10));
	cr_expect_eq(c.top10, dts_sketch_quantile(&merged, 0.90));
	cr_expect_eq(c.p50, dts_sketch_quantile(&merged, 0.50));
	cr_expect_eq(c.p99, dts_sketch_quantile(&merged, 0.99));
	cr_expect_eq(c.count, 450);

	dts_merger_step(m, (T0 + 60 + GRACE + 1) * 1000);
	const struct dts_minute_rec *r = closed_rec(T0 / 60, "alice", "api", "query", DTS_TIMER);
	cr_assert_not_null(r);
	assert_sketch_eq(&r->sketch, &merged, "merged sketch");
	assert_agg_eq(&r->agg, &ma, "merged aggregate");
	dts_sketch_free(&a);
	dts_sketch_free(&b2);
	dts_sketch_free(&merged);
}

Test(ingest, piece_partials_of_a_split_set_merge_to_the_original)
{
	struct dts_set set;
	struct dts_agg sa;
	struct dts_native_partial p;
	static struct batch b;
	uint64_t seq = 1;

	/* a set large enough to be a dense HyperLogLog: the encoder cuts it into PIECE partials */
	dts_set_init(&set);
	dts_agg_init(&sa);
	for (uint64_t i = 0; i < 5000; i++) {
		cr_assert_eq(dts_set_add(&set, dts__mix(i + 1, 0x9e3779b97f4a7c15ULL)), 0);
		dts_agg_add(&sa, 1, 1.0);
	}
	cr_assert_gt(dts_set_encoded_size(&set), DTS_NATIVE_MAX_DATAGRAM);
	p = partial("visitors", DTS_SET, &sa, NULL, &set);
	struct dts_native_hdr h = hdr("alice", 0x77, T0 + 20, 10);
	encode(&b, &h, 7, &seq, NULL, 0, &p, 1);
	cr_assert_geq(b.n, 3, "split over several datagrams (%u)", b.n);
	/* the datagrams in reverse order: pieces merge in any order */
	for (unsigned i = 0; i < b.n / 2; i++) {
		static uint8_t tmp[DTS_NATIVE_MAX_DATAGRAM];
		size_t tl = b.len[i];

		memcpy(tmp, b.d[i], tl);
		memcpy(b.d[i], b.d[b.n - 1 - i], b.len[b.n - 1 - i]);
		b.len[i] = b.len[b.n - 1 - i];
		memcpy(b.d[b.n - 1 - i], tmp, tl);
		b.len[b.n - 1 - i] = tl;
	}
	unsigned taken = feed(0, T0 + 26, &b);
	cr_assert_eq(taken, b.n, "every piece is a partial (%u)", taken);
	dts_merger_step(m, (T0 + 26) * 1000);
	cr_expect_eq(current("alice", "api", "visitors", DTS_SET).distinct, dts_set_cardinality(&set));

	dts_merger_step(m, (T0 + 60 + GRACE + 1) * 1000);
	const struct dts_minute_rec *r = closed_rec(T0 / 60, "alice", "api", "visitors", DTS_SET);
	cr_assert_not_null(r);
	assert_set_eq(&r->set, &set, "reassembled set");
	assert_agg_eq(&r->agg, &sa, "set aggregate (first piece only)");
	dts_set_free(&set);
}

/*
 * Turn the only partial of datagram i of b (a timer with the aggregate SINGLE 1: form 0x40, zigzag varint 2) into a
 * PIECE partial (EMPTY aggregate), as the encoder writes the further pieces of a split sketch, and MAC it again.
 */
static void make_piece(struct batch *b, unsigned i, const struct dts_native_hdr *h)
{
	uint8_t *d = b->d[i];
	size_t p0 = DTS_NATIVE_HEADER_FIXED + h->user_len + 1 + h->process_len + DTS_NATIVE_STATS_LEN;
	size_t a = p0 + 2 + d[p0 + 1];

	cr_assert_eq(d[p0] & DTS_NATIVE_PF_TYPE, DTS_TIMER);
	cr_assert(d[a] == 0x40 && d[a + 1] == 0x02, "SINGLE 1 aggregate expected");
	d[p0] |= DTS_NATIVE_PF_PIECE;
	d[a] = 0x80;
	memmove(d + a + 1, d + a + 2, b->len[i] - a - 2);
	b->len[i]--;
	dts_native_mac(mac_of(h->key_id), d, b->len[i] - DTS_NATIVE_MAC_LEN, d + b->len[i] - DTS_NATIVE_MAC_LEN);
}

Test(ingest, piece_partials_of_a_split_timer_merge_to_the_original)
{
	struct dts_sketch whole, part[3];
	struct dts_agg all, one;
	struct dts_native_partial p;
	static struct batch b[3];
	uint64_t seq = 1;
	struct dts_native_hdr h = hdr("alice", 0x78, T0 + 20, 10);

	/* the timer's values in three parts: the first carries the whole aggregate, the others are PIECE partials */
	dts_sketch_init(&whole);
	dts_agg_init(&all);
	for (int k = 0; k < 3; k++)
		dts_sketch_init(&part[k]);
	for (int i = 0; i < 600; i++) {
		double v = 0.5 * exp(sin(i * 0.37) * 4.0);

		cr_assert_eq(dts_sketch_add(&whole, v, 1.0), 0);
		cr_assert_eq(dts_sketch_add(&part[i % 3], v, 1.0), 0);
		dts_agg_add(&all, v, 1.0);
	}
	dts_agg_init(&one);
	dts_agg_add(&one, 1, 1.0);
	for (int k = 0; k < 3; k++) {
		p = partial("spread", DTS_TIMER, k ? &one : &all, &part[k], NULL);
		encode(&b[k], &h, 7, &seq, NULL, 0, &p, 1);
		cr_assert_eq(b[k].n, 1);
		if (k)
			make_piece(&b[k], 0, &h);
	}
	for (int k = 2; k >= 0; k--)
		cr_assert_eq(feed(k % 2, T0 + 26, &b[k]), 1, "part %d taken", k);
	dts_merger_step(m, (T0 + 26) * 1000);
	struct dts_current c = current("alice", "api", "spread", DTS_TIMER);
	cr_expect_eq(c.count, 600);
	cr_expect_eq(c.p50, dts_sketch_quantile(&whole, 0.5));
	cr_expect_eq(c.bot10, dts_sketch_quantile(&whole, 0.1));
	cr_expect_eq(c.top10, dts_sketch_quantile(&whole, 0.9));

	dts_merger_step(m, (T0 + 60 + GRACE + 1) * 1000);
	const struct dts_minute_rec *r = closed_rec(T0 / 60, "alice", "api", "spread", DTS_TIMER);
	cr_assert_not_null(r);
	assert_agg_eq(&r->agg, &all, "aggregate (first part only: pieces are empty)");
	/* the pieces' sketches carry their own counts here; bins must add up exactly to the whole */
	cr_expect_eq(dts_sketch_quantile(&r->sketch, 0.5), dts_sketch_quantile(&whole, 0.5));
	for (double q = 0; q <= 1.0; q += 0.01)
		cr_expect_eq(dts_sketch_quantile(&r->sketch, q), dts_sketch_quantile(&whole, q), "q %.2f", q);
	assert_sketch_eq(&r->sketch, &whole, "reassembled sketch");
	dts_sketch_free(&whole);
	for (int k = 0; k < 3; k++)
		dts_sketch_free(&part[k]);
}

Test(ingest, gauge_and_first_last_follow_slot_time_not_arrival)
{
	struct dts_agg late, early;
	struct dts_native_partial p;
	static struct batch b;
	uint64_t seq = 1;

	dts_agg_init(&late);
	dts_agg_add(&late, 9, 1.0);
	dts_agg_init(&early);
	dts_agg_add(&early, 3, 1.0);
	/* the later slot arrives (and is folded) first */
	p = partial("level", DTS_GAUGE, &late, NULL, NULL);
	struct dts_native_hdr h = hdr("alice", 0x5, T0 + 30, 40);
	encode(&b, &h, 7, &seq, NULL, 0, &p, 1);
	feed(0, T0 + 36, &b);
	dts_merger_step(m, (T0 + 36) * 1000);
	p = partial("level", DTS_GAUGE, &early, NULL, NULL);
	h.slot = T0 + 25;
	encode(&b, &h, 7, &seq, NULL, 0, &p, 1);
	feed(0, T0 + 37, &b);
	dts_merger_step(m, (T0 + 41) * 1000);
	cr_expect_eq(current("alice", "api", "level", DTS_GAUGE).last, 9, "the value of the latest slot");

	dts_merger_step(m, (T0 + 60 + GRACE + 1) * 1000);
	const struct dts_minute_rec *r = closed_rec(T0 / 60, "alice", "api", "level", DTS_GAUGE);
	cr_assert_not_null(r);
	cr_expect_eq(r->agg.fst, 3, "fst from the earliest slot");
	cr_expect_eq(r->agg.lst, 9, "lst from the latest slot");
	cr_expect_eq(r->agg.count, 2);
}

/* ================================================================================================================ */
/* Rejects: counted by reason, nothing kept                                                                         */

enum mutation { M_NONE, M_FLIP, M_UNKNOWN_KEY, M_WRONG_SECRET, M_WRONG_USER, M_STALE, M_FUTURE, M_TRUNCATE };

static const struct reject_case {
	const char *name;
	enum mutation mut;
	enum dts_native_reject reason;
} reject_cases[] = {
	{ "flipped bit", M_FLIP, DTS_NREJ_BAD_MAC },
	{ "unknown key id", M_UNKNOWN_KEY, DTS_NREJ_UNKNOWN_KEY },
	{ "MAC under another key's secret", M_WRONG_SECRET, DTS_NREJ_BAD_MAC },
	{ "user not the key's owner", M_WRONG_USER, DTS_NREJ_WRONG_USER },
	{ "stale slot", M_STALE, DTS_NREJ_STALE },
	{ "slot in the future", M_FUTURE, DTS_NREJ_FUTURE },
	{ "truncated", M_TRUNCATE, DTS_NREJ_BAD_MAC },
};

/* A datagram with a partial, an event and statistics, mutated as the case says, ingested at now. */
static void ingest_mutated(enum mutation mut, int64_t now)
{
	struct dts_native_event ev = { .kind = DTS_NATIVE_ERROR, .ts_ms = now * 1000, .text = "boom", .len = 4 };
	struct dts_agg a;
	struct dts_native_partial p;
	static struct batch b;
	uint64_t seq = 1;
	uint32_t mac_id = 7;
	struct dts_native_hdr h = hdr("alice", 0xBAD, now - now % 5, 10);

	dts_agg_init(&a);
	dts_agg_add(&a, 1, 1.0);
	p = partial("hits", DTS_COUNTER, &a, NULL, NULL);
	switch (mut) {
	case M_UNKNOWN_KEY:
		h.key_id = 99;
		break;
	case M_WRONG_SECRET:
		mac_id = 9;
		break;
	case M_WRONG_USER:
		h.user = "bob";
		h.user_len = 3;
		break;
	case M_STALE:
		h.slot = now - now % 5 - 400;
		break;
	case M_FUTURE:
		h.slot = now - now % 5 + 120;
		break;
	default:
		break;
	}
	encode(&b, &h, mac_id, &seq, &ev, 1, &p, 1);
	cr_assert_eq(b.n, 1);
	if (mut == M_FLIP)
		b.d[0][b.len[0] - 30] ^= 0x04;
	if (mut == M_TRUNCATE)
		b.len[0] -= 3;
	cr_assert_eq(feed(0, now, &b), 0);
}

static void assert_nothing_kept(const char *what)
{
	struct evs e;

	cr_assert_eq(dts_merger_read_current(m, NULL, count_cb, NULL), 0, "%s: no series", what);
	cr_assert_eq(dts_merger_read_processes(m, NULL, nop_proc, NULL), 0, "%s: no process", what);
	events("alice", 0, &e);
	cr_assert_eq(e.n, 0, "%s: no event", what);
	events("bob", 0, &e);
	cr_assert_eq(e.n, 0, "%s: no event", what);
}

Test(ingest, every_reject_reason_is_counted_and_nothing_is_kept)
{
	for (size_t i = 0; i < sizeof(reject_cases) / sizeof(reject_cases[0]); i++) {
		const struct reject_case *rc = &reject_cases[i];
		struct dts_core_stats before = core_stats(0), after;

		ingest_mutated(rc->mut, T0 + 12);
		dts_merger_step(m, (T0 + 12) * 1000);
		after = core_stats(0);
		cr_expect_eq(after.native_rejected[rc->reason] - before.native_rejected[rc->reason], 1, "%s: %s counted",
			     rc->name, dts_native_reject_name(rc->reason));
		cr_expect_eq(after.native_datagrams, 0, "%s", rc->name);
		cr_expect_eq(after.partials + after.events + after.heartbeats, 0, "%s", rc->name);
		assert_nothing_kept(rc->name);
	}
}

Test(ingest, a_replayed_datagram_is_counted_once)
{
	struct dts_agg a;
	struct dts_native_partial p;
	static struct batch b;
	uint64_t seq = 1;

	dts_agg_init(&a);
	dts_agg_add(&a, 5, 1.0);
	p = partial("hits", DTS_COUNTER, &a, NULL, NULL);
	struct dts_native_hdr h = hdr("alice", 0xFEED, T0 + 5, 10);
	encode(&b, &h, 7, &seq, NULL, 0, &p, 1);
	cr_assert_eq(feed(0, T0 + 11, &b), 1);
	cr_assert_eq(feed(0, T0 + 12, &b), 0, "the same bytes again");
	cr_assert_eq(core_stats(0).native_rejected[DTS_NREJ_REPLAYED], 1);
	cr_assert_eq(core_stats(0).native_datagrams, 1);
	dts_merger_step(m, (T0 + 60 + GRACE + 1) * 1000);
	const struct dts_minute_rec *r = closed_rec(T0 / 60, "alice", "api", "hits", DTS_COUNTER);
	cr_assert_not_null(r);
	cr_expect_eq(r->agg.sum, 5, "aggregated once");
}

Test(ingest, without_a_key_lookup_every_datagram_is_an_unknown_key)
{
	struct dts_merger_cfg cfg;

	dts_merger_destroy(m, (T0 + 20) * 1000);
	cfg_base(&cfg);
	cfg.native.key_lookup = NULL;
	start_cfg(&cfg);
	ingest_mutated(M_NONE, T0 + 12);
	cr_expect_eq(core_stats(0).native_rejected[DTS_NREJ_UNKNOWN_KEY], 1);
	dts_merger_step(m, (T0 + 12) * 1000);
	assert_nothing_kept("no lookup");
}

/* ================================================================================================================ */
/* dts_core_ingest_partial (PUT /agg)                                                                                */

Test(ingest, api_partials_merge_like_native_ones)
{
	struct dts_core *c = dts_merger_core(m, 1);
	struct dts_sketch sk;
	struct dts_agg ta, ca;
	const int64_t now = T0 + 12;

	timer_values(&sk, &ta, 0, 100, 8.0);
	dts_agg_init(&ca);
	dts_agg_add(&ca, 4, 1.0);
	struct dts_partial_in tp = { .user = "alice", .process = "web", .counter = "render", .type = DTS_TIMER,
				     .slot_s = T0 + 7, .agg = ta, .sketch = &sk };
	struct dts_partial_in cp = { .user = "alice", .process = "web", .counter = "hits", .tags = "env:prod",
				     .type = DTS_COUNTER, .slot_s = T0 + 7, .agg = ca };
	cr_assert_eq(dts_core_ingest_partial(c, &tp, now), 0);
	cr_assert_eq(dts_core_ingest_partial(c, &cp, now), 0);
	cr_assert_eq(dts_core_ingest_partial(c, &cp, now), 0);
	cr_assert_eq(dts_core_ingest_proc(c, "alice", "web", 77, now), 0);
	hand_over(1, now);
	dts_merger_step(m, now * 1000);
	struct dts_current cur = current("alice", "web", "render", DTS_TIMER);
	cr_expect_eq(cur.p50, dts_sketch_quantile(&sk, 0.5));
	cr_expect_eq(cur.top10, dts_sketch_quantile(&sk, 0.9));
	cr_expect_eq(cur.count, 100);
	cr_expect_eq(current("alice", "web", "hits", DTS_COUNTER).sum, 8);
	struct dts_process pr;
	cr_assert(process("alice", "web", &pr));
	cr_expect(pr.has_uptime && !pr.has_stats);
	cr_expect_eq(pr.stats.uptime_s, 77);
	dts_sketch_free(&sk);
}

Test(ingest, api_partials_are_validated)
{
	struct dts_core *c = dts_merger_core(m, 1);
	struct dts_sketch sk;
	struct dts_agg ok, nan_sum, zero, inverted;
	const int64_t now = T0 + 12;

	dts_sketch_init(&sk);
	cr_assert_eq(dts_sketch_add(&sk, 3, 1), 0);
	dts_agg_init(&ok);
	dts_agg_add(&ok, 3, 1.0);
	nan_sum = ok;
	nan_sum.sum = NAN;
	dts_agg_init(&zero);
	inverted = ok;
	inverted.min = 4;
	const struct {
		struct dts_partial_in p;
		int want;
	} cases[] = {
		{ { "alice", "web", "a", NULL, DTS_COUNTER, T0 + 5, ok, NULL }, 0 },
		{ { "", "web", "a", NULL, DTS_COUNTER, T0 + 5, ok, NULL }, -EINVAL },
		{ { "al ice", "web", "a", NULL, DTS_COUNTER, T0 + 5, ok, NULL }, -EINVAL },
		{ { "alice", "we/b", "a", NULL, DTS_COUNTER, T0 + 5, ok, NULL }, -EINVAL },
		{ { "alice", "web", "", NULL, DTS_COUNTER, T0 + 5, ok, NULL }, -EINVAL },
		{ { "alice", "web", "a", "b:1,a:2", DTS_COUNTER, T0 + 5, ok, NULL }, -EINVAL }, /* not canonical */
		{ { "alice", "web", "a", NULL, 4, T0 + 5, ok, NULL }, -EINVAL },
		{ { "alice", "web", "a", NULL, DTS_COUNTER, T0 + 5, nan_sum, NULL }, -EINVAL },
		{ { "alice", "web", "a", NULL, DTS_COUNTER, T0 + 5, zero, NULL }, -EINVAL },
		{ { "alice", "web", "a", NULL, DTS_COUNTER, T0 + 5, inverted, NULL }, -EINVAL },
		{ { "alice", "web", "a", NULL, DTS_COUNTER, T0 + 5, ok, &sk }, -EINVAL }, /* a sketch on a counter */
		{ { "alice", "web", "a", NULL, DTS_TIMER, T0 + 5, ok, &sk }, 0 },
		{ { "alice", "web", "a", NULL, DTS_COUNTER, now - 400, ok, NULL }, -ERANGE },
		{ { "alice", "web", "a", NULL, DTS_COUNTER, now + 120, ok, NULL }, -ERANGE },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(dts_core_ingest_partial(c, &cases[i].p, now), cases[i].want, "case %zu", i);
	cr_expect_eq(core_stats(1).partials, 2);
	cr_expect_eq(core_stats(1).dropped[DTS_DROP_LATE], 1);
	cr_expect_eq(core_stats(1).dropped[DTS_DROP_FUTURE], 1);
	cr_expect_eq(dts_core_ingest_proc(c, "alice", "", 1, now), -EINVAL);
	cr_expect_eq(dts_core_ingest_event(c, "alice", "web", 2, now, "x", 1, now), -EINVAL);
	cr_expect_eq(dts_core_ingest_event(c, "alice", "web", 0, now, "a\0b", 3, now), -EINVAL);
	static char longtext[DTS_NATIVE_MAX_TEXT + 1];
	memset(longtext, 'x', sizeof(longtext));
	cr_expect_eq(dts_core_ingest_event(c, "alice", "web", 0, now, longtext, sizeof(longtext), now), -EMSGSIZE);
	dts_sketch_free(&sk);
}

/* ================================================================================================================ */
/* Process states                                                                                                   */

static void report(unsigned core, const char *user, uint64_t instance, int64_t slot, uint32_t uptime, int64_t now,
		   uint64_t *seq)
{
	static struct batch b;
	struct dts_native_hdr h = hdr(user, instance, slot, uptime);

	encode(&b, &h, h.key_id, seq, NULL, 0, NULL, 0);
	feed(core, now, &b);
}

Test(ingest, process_online_offline_and_restarts_on_a_controlled_clock)
{
	struct dts_process p;
	uint64_t seq_a = 1, seq_b = 1;

	report(0, "alice", 0xA, T0, 100, T0 + 1, &seq_a);
	dts_merger_step(m, (T0 + 1) * 1000);
	cr_assert(process("alice", "api", &p));
	cr_expect(p.online);
	cr_expect(p.has_stats && p.has_uptime);
	cr_expect_eq(p.last_heard_ms, (T0 + 1) * 1000);
	cr_expect_eq(p.online_since_ms, (T0 + 1) * 1000);
	cr_expect_eq(p.stats.uptime_s, 100);
	cr_expect_eq(p.stats.rss_bytes, 8u << 20);
	cr_expect_eq(p.stats.cpu_pct, 0.5f);
	cr_expect_eq(p.stats.errors, 1);
	cr_expect_eq(p.stats.warnings, 2);
	cr_expect_eq(p.instance, 0xA);
	cr_expect_eq(p.restarts, 0);

	/* online while heard within 2.5 periods (12.5 s), offline after */
	dts_merger_step(m, (T0 + 1) * 1000 + 12500);
	cr_assert(process("alice", "api", &p));
	cr_expect(p.online, "12.5 s after: still online");
	dts_merger_step(m, (T0 + 14) * 1000);
	cr_assert(process("alice", "api", &p));
	cr_expect(!p.online, "13 s after: offline");
	cr_expect_eq(p.online_since_ms, 0);

	/* the process restarts: a new instance with a lower uptime */
	report(1, "alice", 0xB, T0 + 20, 3, T0 + 21, &seq_b);
	dts_merger_step(m, (T0 + 21) * 1000);
	cr_assert(process("alice", "api", &p));
	cr_expect(p.online);
	cr_expect_eq(p.online_since_ms, (T0 + 21) * 1000);
	cr_expect_eq(p.restarts, 1);
	cr_expect_eq(p.last_restart_ms, (T0 + 21) * 1000);
	cr_expect_eq(p.instance, 0xB);
	cr_expect_eq(p.stats.uptime_s, 3);

	/* a newer report, then an older one of the same instance arriving late: not a restart, not news */
	report(1, "alice", 0xB, T0 + 30, 13, T0 + 31, &seq_b);
	report(1, "alice", 0xB, T0 + 25, 8, T0 + 32, &seq_b);
	dts_merger_step(m, (T0 + 32) * 1000);
	cr_assert(process("alice", "api", &p));
	cr_expect_eq(p.restarts, 1);
	cr_expect_eq(p.stats.uptime_s, 13);
	cr_expect_eq(p.last_heard_ms, (T0 + 32) * 1000, "still heard");
	struct dts_merger_stats ms;
	dts_merger_stats_read(m, &ms);
	cr_expect_eq(ms.restarts, 1);
	cr_expect_eq(ms.processes_online, 1);

	/* PUT /agg heartbeats: no instance, any decrease of the uptime is a restart */
	struct dts_core *c = dts_merger_core(m, 1);
	cr_assert_eq(dts_core_ingest_proc(c, "alice", "cron", 50, T0 + 40), 0);
	cr_assert_eq(dts_core_ingest_proc(c, "alice", "cron", 55, T0 + 45), 0);
	cr_assert_eq(dts_core_ingest_proc(c, "alice", "cron", 2, T0 + 50), 0);
	hand_over(1, T0 + 50);
	dts_merger_step(m, (T0 + 50) * 1000);
	cr_assert(process("alice", "cron", &p));
	cr_expect(p.has_uptime && !p.has_stats);
	cr_expect_eq(p.restarts, 1);
	cr_expect_eq(p.stats.uptime_s, 2);
	cr_expect_eq(p.last_restart_ms, (T0 + 50) * 1000);

	/* users see only their own processes */
	cr_expect(!process("bob", "api", NULL));
	cr_expect(!process("bob", "cron", NULL));
}

Test(ingest, statsd_only_processes_are_heard_through_their_data)
{
	struct dts_core *c = dts_merger_core(m, 0);
	const char *line = "web.hits:1|c";
	struct dts_process p;

	dts_core_ingest(c, line, strlen(line), T0 + 31);
	hand_over(0, T0 + 33);
	dts_merger_step(m, (T0 + 33) * 1000);
	cr_assert(process("default", "web", &p));
	cr_expect(!p.has_stats && !p.has_uptime);
	cr_expect_eq(p.last_heard_ms, (T0 + 33) * 1000, "end of the data's slot (T0+35) is after now: now");
	cr_expect(p.online);
	dts_merger_step(m, (T0 + 33 + 13) * 1000);
	cr_assert(process("default", "web", &p));
	cr_expect(!p.online);
}

/* ================================================================================================================ */
/* Events                                                                                                           */

Test(ingest, events_keep_the_last_100_per_user_and_kind_in_seq_order)
{
	struct dts_core *c = dts_merger_core(m, 1);
	struct evs e;
	char text[32];

	for (int i = 0; i < 130; i++) {
		snprintf(text, sizeof(text), "e%d", i);
		cr_assert_eq(dts_core_ingest_event(c, "alice", "api", DTS_NATIVE_ERROR, T0 * 1000 + i, text,
						   strlen(text), T0 + 1),
			     0);
		if (i % 26 == 0) {
			snprintf(text, sizeof(text), "w%d", i / 26);
			cr_assert_eq(dts_core_ingest_event(c, "alice", "api", DTS_NATIVE_WARNING, T0 * 1000 + i, text,
							   strlen(text), T0 + 1),
				     0);
		}
	}
	cr_assert_eq(dts_core_ingest_event(c, "bob", "db", DTS_NATIVE_ERROR, T0 * 1000, "disk", 4, T0 + 1), 0);
	hand_over(1, T0 + 1);
	dts_merger_step(m, (T0 + 1) * 1000);

	events("alice", 0, &e);
	cr_assert_eq(e.n, 105, "100 errors + 5 warnings (%u)", e.n);
	int errors = 0, warnings = 0;
	for (unsigned i = 0; i < e.n; i++) {
		if (i)
			cr_assert_gt(e.seq[i], e.seq[i - 1], "increasing seq");
		if (e.kind[i] == DTS_NATIVE_ERROR) {
			snprintf(text, sizeof(text), "e%d", 30 + errors);
			cr_expect_str_eq(e.text[i], text, "the last 100 errors, oldest first");
			cr_expect_eq(e.ts[i], T0 * 1000 + 30 + errors);
			errors++;
		} else {
			warnings++;
		}
		cr_expect_str_eq(e.proc[i], "api");
	}
	cr_expect_eq(errors, 100);
	cr_expect_eq(warnings, 5);

	/* resuming after a seq gives only the later ones */
	uint64_t mid = e.seq[50];
	struct evs later;
	events("alice", mid, &later);
	cr_assert_eq(later.n, 54);
	cr_expect_eq(later.seq[0], e.seq[51]);

	events("bob", 0, &e);
	cr_assert_eq(e.n, 1);
	cr_expect_str_eq(e.text[0], "disk");

	/* the sink got all 136 in order; each error past the 100th names the one it pushed out */
	size_t total = 0;
	uint64_t first_error_seq[130], last = 0;
	int nerr = 0;
	for (int bi = 0; bi < nbatches; bi++)
		for (size_t i = 0; i < batches[bi]->n_events; i++) {
			const struct dts_event *ev = &batches[bi]->events[i];

			cr_assert_gt(ev->seq, last);
			last = ev->seq;
			total++;
			if (strcmp(ev->user, "alice") || ev->kind != DTS_NATIVE_ERROR)
				continue;
			first_error_seq[nerr] = ev->seq;
			cr_expect_eq(ev->evicted_seq, nerr >= 100 ? first_error_seq[nerr - 100] : 0, "error %d", nerr);
			nerr++;
		}
	cr_expect_eq(total, 136);
	struct dts_merger_stats ms;
	dts_merger_stats_read(m, &ms);
	cr_expect_eq(ms.events_total, 136);
	cr_expect_eq(ms.event_seq, last);
}

Test(ingest, native_events_carry_kind_time_and_text)
{
	struct dts_native_event ev[2] = {
		{ .kind = DTS_NATIVE_ERROR, .ts_ms = T0 * 1000 + 123, .text = "connection refused", .len = 18 },
		{ .kind = DTS_NATIVE_WARNING, .ts_ms = T0 * 1000 + 456, .text = "slow query \xc3\xa9", .len = 13 },
	};
	static struct batch b;
	struct evs e;
	uint64_t seq = 1;
	struct dts_native_hdr h = hdr("bob", 0xE, T0 + 5, 10);

	encode(&b, &h, 9, &seq, ev, 2, NULL, 0);
	feed(0, T0 + 6, &b);
	dts_merger_step(m, (T0 + 6) * 1000);
	events("bob", 0, &e);
	cr_assert_eq(e.n, 2);
	cr_expect_eq(e.kind[0], DTS_NATIVE_ERROR);
	cr_expect_eq(e.ts[0], T0 * 1000 + 123);
	cr_expect_str_eq(e.text[0], "connection refused");
	cr_expect_eq(e.kind[1], DTS_NATIVE_WARNING);
	cr_expect_str_eq(e.text[1], "slow query \xc3\xa9");
	cr_expect_str_eq(e.proc[1], "api");
	events("alice", 0, &e);
	cr_expect_eq(e.n, 0, "another user's events are not alice's");
	cr_expect_eq(core_stats(0).events, 2);
}

/* ================================================================================================================ */
/* Storage round trip                                                                                               */

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static char dir[64];

static struct dts_storage *store_open(void)
{
	struct dts_storage_cfg cfg;
	char err[256];
	struct dts_storage *st;

	dts_storage_cfg_defaults(&cfg);
	cfg.data_dir = dir;
	cfg.block_cache_bytes = 8u << 20;
	cfg.write_buffer_bytes = 4u << 20;
	st = dts_storage_open(&cfg, err, sizeof(err));
	cr_assert_not_null(st, "%s", err);
	return st;
}

static int count_ev(void *ctx, const struct dts_event *ev)
{
	(void)ev;
	++*(int *)ctx;
	return 0;
}

Test(ingest, events_and_process_states_survive_a_restart_through_the_store)
{
	struct dts_merger_cfg cfg;
	struct dts_storage_sink *sink;
	struct dts_storage *st;
	struct dts_process before_api, before_cron, p;
	struct evs before, after;
	char err[256], text[32];
	uint64_t seq = 1;

	snprintf(dir, sizeof(dir), "/tmp/test_ingest.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	dts_merger_destroy(m, (T0 + 20) * 1000);
	release_all();

	/* first life: the merger's batches go to the real sink */
	st = store_open();
	sink = dts_storage_sink_start(st, err, sizeof(err));
	cr_assert_not_null(sink, "%s", err);
	cfg_base(&cfg);
	cfg.sink = dts_storage_sink_get(sink);
	start_cfg(&cfg);
	struct dts_core *c = dts_merger_core(m, 1);
	for (int i = 0; i < 120; i++) {
		snprintf(text, sizeof(text), "error %d", i);
		cr_assert_eq(dts_core_ingest_event(c, "alice", "api", DTS_NATIVE_ERROR, T0 * 1000 + i, text,
						   strlen(text), T0 + 2),
			     0);
	}
	for (int i = 0; i < 3; i++)
		cr_assert_eq(dts_core_ingest_event(c, "alice", "cron", DTS_NATIVE_WARNING, T0 * 1000 + i, "late", 4,
						   T0 + 2),
			     0);
	cr_assert_eq(dts_core_ingest_proc(c, "alice", "cron", 500, T0 + 2), 0);
	cr_assert_eq(dts_core_ingest_proc(c, "alice", "cron", 5, T0 + 3), 0);
	hand_over(1, T0 + 3);
	report(0, "alice", 0xC0FFEE, T0, 4000, T0 + 3, &seq);
	dts_merger_step(m, (T0 + 3) * 1000);
	events("alice", 0, &before);
	cr_assert_eq(before.n, 103);
	cr_assert(process("alice", "api", &before_api));
	cr_assert(process("alice", "cron", &before_cron));
	cr_assert_eq(before_cron.restarts, 1);
	dts_merger_destroy(m, (T0 + 4) * 1000); /* hands the last batch (every unsaved state) */
	m = NULL;
	struct dts_storage_event_stats es;
	dts_storage_event_stats_read(st, &es);
	cr_expect_geq(es.batches_queued, 1);
	cr_expect_eq(es.batches_dropped, 0);
	dts_storage_sink_stop(sink);
	dts_storage_close(st);

	/* second life */
	st = store_open();
	int n = 0;
	cr_assert_eq(dts_storage_read_events(st, "alice", count_ev, &n), 103, "the store keeps the last 100 errors");
	cr_assert_eq(n, 103);
	cfg_base(&cfg);
	cfg.sink.events = NULL;
	start_cfg(&cfg);
	cr_assert_eq(dts_storage_restore_state(st, m, (T0 + 8) * 1000), 103 + 2);
	dts_merger_step(m, (T0 + 8) * 1000);
	events("alice", 0, &after);
	cr_assert_eq(after.n, before.n);
	for (unsigned i = 0; i < after.n; i++) {
		cr_expect_eq(after.seq[i], before.seq[i]);
		cr_expect_eq(after.kind[i], before.kind[i]);
		cr_expect_eq(after.ts[i], before.ts[i]);
		cr_expect_str_eq(after.text[i], before.text[i]);
		cr_expect_str_eq(after.proc[i], before.proc[i]);
	}
	cr_assert(process("alice", "api", &p));
	cr_expect(p.online, "heard 5 s ago: online again");
	cr_expect_eq(p.online_since_ms, before_api.online_since_ms);
	cr_expect_eq(p.last_heard_ms, before_api.last_heard_ms);
	cr_expect_eq(p.instance, 0xC0FFEE);
	cr_expect(p.has_stats);
	cr_expect_eq(p.stats.uptime_s, before_api.stats.uptime_s);
	cr_expect_eq(p.stats.rss_bytes, before_api.stats.rss_bytes);
	cr_expect_eq(p.stats.cpu_us, before_api.stats.cpu_us);
	cr_expect_eq(p.stats.cpu_pct, before_api.stats.cpu_pct);
	cr_expect_eq(p.stats.errors, before_api.stats.errors);
	cr_expect_eq(p.stats.warnings, before_api.stats.warnings);
	cr_assert(process("alice", "cron", &p));
	cr_expect_eq(p.restarts, 1);
	cr_expect_eq(p.last_restart_ms, before_cron.last_restart_ms);
	cr_expect_eq(p.stats.uptime_s, 5);

	/* numbering continues above the restored events */
	c = dts_merger_core(m, 1);
	cr_assert_eq(dts_core_ingest_event(c, "alice", "api", DTS_NATIVE_ERROR, T0 * 1000, "again", 5, T0 + 9), 0);
	hand_over(1, T0 + 9);
	dts_merger_step(m, (T0 + 9) * 1000);
	events("alice", before.seq[before.n - 1], &after);
	cr_assert_eq(after.n, 1);
	cr_expect_gt(after.seq[0], before.seq[before.n - 1]);
	dts_merger_destroy(m, (T0 + 10) * 1000);
	m = NULL;

	/* leftovers beyond the last 100 (a batch that never deleted its evicted event) are trimmed at restore */
	{
		static struct dts_event evs[110];
		struct dts_event_batch b = { .n_events = 110, .events = evs };

		for (int i = 0; i < 110; i++)
			evs[i] = (struct dts_event){ .seq = 10000 + (uint64_t)i, .ts_ms = i, .recv_ms = i, .user = "carol",
						     .process = "p", .text = "t", .text_len = 1,
						     .kind = DTS_NATIVE_ERROR };
		cr_assert_eq(dts_storage_write_events(st, &b), 0);
		n = 0;
		cr_assert_eq(dts_storage_read_events(st, "carol", count_ev, &n), 110);
		cr_assert_geq(dts_storage_restore_state(st, NULL, (T0 + 10) * 1000), 0);
		n = 0;
		cr_assert_eq(dts_storage_read_events(st, "carol", count_ev, &n), 100);
	}
	dts_storage_close(st);
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

Test(ingest, stored_values_round_trip_and_refuse_garbage)
{
	uint8_t buf[1024];
	struct dts_event ev = { .seq = 42, .ts_ms = -5, .recv_ms = 1700000000123LL, .process = "api",
				.text = "x\xc3\xa9y", .text_len = 4, .kind = DTS_NATIVE_WARNING };
	struct dts_stored_event se;
	struct dts_process p = { .online = true, .has_stats = true, .has_uptime = true, .last_heard_ms = 11,
				 .online_since_ms = 7, .stats_ms = 10, .restarts = 3, .last_restart_ms = 9,
				 .instance = 0xFFFFFFFFFFFFFFFFULL,
				 .stats = { 1, 2, 3, 4.5f, 5, 6, 7 } },
			   q;
	char key[DTS_STORAGE_EVENT_KEY_MAX + 1];
	int n;

	n = dts_storage_event_encode(&ev, buf, sizeof(buf));
	cr_assert_eq(n, DTS_STORAGE_EVENT_FIXED + 3 + 4);
	cr_assert_eq(dts_storage_event_decode(buf, (size_t)n, &se), 0);
	cr_expect_eq(se.ev.seq, 42);
	cr_expect_eq(se.ev.ts_ms, -5);
	cr_expect_eq(se.ev.recv_ms, 1700000000123LL);
	cr_expect_eq(se.ev.kind, DTS_NATIVE_WARNING);
	cr_expect_eq(se.process_len, 3);
	cr_expect_eq(memcmp(se.ev.text, "x\xc3\xa9y", 4), 0);
	cr_expect_eq(dts_storage_event_decode(buf, (size_t)n - 1, &se), -EINVAL);
	buf[0] = 2;
	cr_expect_eq(dts_storage_event_decode(buf, (size_t)n, &se), -EPROTONOSUPPORT);

	n = dts_storage_process_encode(&p, buf, sizeof(buf));
	cr_assert_eq(n, DTS_STORAGE_PROCESS_VALUE);
	cr_assert_eq(dts_storage_process_decode(buf, (size_t)n, &q), 0);
	cr_expect(q.online && q.has_stats && q.has_uptime);
	cr_expect_eq(q.last_heard_ms, 11);
	cr_expect_eq(q.online_since_ms, 7);
	cr_expect_eq(q.restarts, 3);
	cr_expect_eq(q.instance, 0xFFFFFFFFFFFFFFFFULL);
	cr_expect(q.stats.uptime_s == 1 && q.stats.rss_bytes == 2 && q.stats.cpu_us == 3 && q.stats.cpu_pct == 4.5f &&
		  q.stats.errors == 5 && q.stats.warnings == 6 && q.stats.dropped == 7);
	buf[1] |= 0x80;
	cr_expect_eq(dts_storage_process_decode(buf, (size_t)n, &q), -EINVAL);

	cr_expect_eq(dts_storage_event_key(key, sizeof(key), "alice@x.org", 0, 42), 38);
	cr_expect_str_eq(key, "alice@x.org/error/00000000000000000042");
	cr_expect_eq(dts_storage_event_key(key, sizeof(key), "a/b", 0, 1), -EINVAL);
	cr_expect_eq(dts_storage_process_key(key, sizeof(key), "alice", "api"), 11);
	cr_expect_str_eq(key, "p/alice/api");
	cr_expect_eq(dts_storage_process_key(key, 5, "alice", "api"), -ENOSPC);
}

/* ================================================================================================================ */
/* dts_core_ingest_burst: one decode batch across datagrams, the results of one dts_core_ingest call per datagram     */

#define BURST_NOW (T0 + 12)
#define BURST_SLOT (T0 + 10) /* BURST_NOW's 5-second slot: native partials share the lines' table entries */
#define STREAM_MAX 512

/* A stream of datagrams, in arrival order; the bytes live in text. */
struct stream {
	struct dts_dgram d[STREAM_MAX];
	unsigned n;
	size_t used;
	char text[1 << 18];
};

static void stream_add(struct stream *s, const void *bytes, size_t len)
{
	cr_assert_lt(s->n, STREAM_MAX);
	cr_assert_leq(s->used + len, sizeof(s->text));
	memcpy(s->text + s->used, bytes, len);
	s->d[s->n].buf = s->text + s->used;
	s->d[s->n++].len = len;
	s->used += len;
}

/* One merger of one core, with the minutes closed into its own list. */
struct bmerger {
	struct dts_merger *m;
	struct dts_closed_minute *cm[8];
	int ncm;
	unsigned taken; /* what the ingest calls returned, summed */
	struct dts_core_stats st; /* the core's counters once fed */
};

static void bsink(void *ctx, struct dts_closed_minute *cm)
{
	struct bmerger *b = ctx;

	cr_assert_lt(b->ncm, 8);
	b->cm[b->ncm++] = cm;
}

static const uint8_t burst_secret[] = "burst-secret";

static void bm_start(struct bmerger *b)
{
	struct dts_merger_cfg cfg;

	memset(b, 0, sizeof(*b));
	cfg_base(&cfg);
	cfg.cores = 1;
	cfg.decode.secret = burst_secret;
	cfg.decode.secret_len = sizeof(burst_secret) - 1;
	cfg.sink.minute_closed = bsink;
	cfg.sink.events = NULL;
	cfg.sink.ctx = b;
	b->m = dts_merger_create(&cfg);
	cr_assert_not_null(b->m);
	dts_merger_step(b->m, BURST_NOW * 1000);
}

/* Feed s in calls of burst datagrams (0: one dts_core_ingest per datagram), hand over, close every minute. */
static void bm_feed(struct bmerger *b, const struct stream *s, unsigned burst)
{
	struct dts_core *c = dts_merger_core(b->m, 0);

	for (unsigned i = 0; i < s->n;) {
		unsigned k = burst ? (s->n - i < burst ? s->n - i : burst) : 1;

		if (burst)
			b->taken += dts_core_ingest_burst(c, &s->d[i], k, BURST_NOW);
		else
			b->taken += dts_core_ingest(c, s->d[i].buf, s->d[i].len, BURST_NOW);
		i += k;
	}
	cr_assert_eq(dts_core_ingest_burst(c, s->d, 0, BURST_NOW), 0, "an empty burst takes nothing");
	dts_core_stats_read(c, &b->st);
	dts_core_flush(c);
	cr_assert(dts_core_tick(c, BURST_NOW * 1000), "hand-over must succeed");
	dts_merger_step(b->m, BURST_NOW * 1000);
	dts_merger_destroy(b->m, BURST_NOW * 1000); /* closes every open minute into bsink */
	b->m = NULL;
}

static void bm_release(struct bmerger *b)
{
	for (int i = 0; i < b->ncm; i++)
		dts_closed_minute_release(b->cm[i]);
	b->ncm = 0;
}

static const struct dts_minute_rec *bm_rec(const struct bmerger *b, int64_t minute, const char *user,
					   const char *process, const char *counter, const char *tags, uint8_t type)
{
	for (int i = 0; i < b->ncm; i++) {
		if (b->cm[i]->minute != minute)
			continue;
		for (size_t k = 0; k < b->cm[i]->n; k++) {
			const struct dts_minute_rec *r = &b->cm[i]->recs[k];

			if (!strcmp(r->user, user) && !strcmp(r->process, process) && !strcmp(r->counter, counter) &&
			    !strcmp(r->tags, tags) && r->type == type)
				return r;
		}
	}
	return NULL;
}

static size_t bm_nrecs(const struct bmerger *b)
{
	size_t n = 0;

	for (int i = 0; i < b->ncm; i++)
		n += b->cm[i]->n;
	return n;
}

/* Everything of got equals want: the ingest calls' total, every core counter, every record (aggregate, sketch, set). */
static void assert_same_results(const struct bmerger *got, const struct bmerger *want, const char *what)
{
	const uint64_t *g = (const uint64_t *)&got->st, *w = (const uint64_t *)&want->st;
	char msg[160];

	cr_assert_eq(got->taken, want->taken, "%s: samples and partials taken %u, one at a time %u", what, got->taken,
		     want->taken);
	for (size_t i = 0; i < sizeof(got->st) / sizeof(uint64_t); i++)
		cr_assert_eq(g[i], w[i], "%s: core counter #%zu is %llu, one at a time %llu", what, i,
			     (unsigned long long)g[i], (unsigned long long)w[i]);
	cr_assert_eq(bm_nrecs(got), bm_nrecs(want), "%s: records", what);
	for (int i = 0; i < want->ncm; i++) {
		for (size_t k = 0; k < want->cm[i]->n; k++) {
			const struct dts_minute_rec *x = &want->cm[i]->recs[k];
			const struct dts_minute_rec *y =
				bm_rec(got, want->cm[i]->minute, x->user, x->process, x->counter, x->tags, x->type);

			snprintf(msg, sizeof(msg), "%s: %s/%s/%s{%s} type %u", what, x->user, x->process, x->counter,
				 x->tags, x->type);
			cr_assert_not_null(y, "%s missing", msg);
			assert_agg_eq(&y->agg, &x->agg, msg);
			if (x->type == DTS_TIMER)
				assert_sketch_eq(&y->sketch, &x->sketch, msg);
			if (x->type == DTS_SET)
				assert_set_eq(&y->set, &x->set, msg);
		}
	}
}

/* A native datagram of alice/api for BURST_SLOT: a gauge "temp" at gauge, a counter and a timer with its sketch. */
static void native_dgram(struct batch *nb, uint64_t *seq, double gauge)
{
	struct dts_agg ca, ta, ga;
	struct dts_sketch sk;
	struct dts_native_partial p[3];
	struct dts_native_hdr h = hdr("alice", 0xB1, BURST_SLOT, 100);

	dts_agg_init(&ca);
	dts_agg_add(&ca, 4, 1.0);
	timer_values(&sk, &ta, 0, 50, 10.0);
	dts_agg_init(&ga);
	dts_agg_add(&ga, gauge, 1.0);
	p[0] = partial("temp", DTS_GAUGE, &ga, NULL, NULL);
	p[1] = partial("hits", DTS_COUNTER, &ca, NULL, NULL);
	p[2] = partial("lat", DTS_TIMER, &ta, &sk, NULL);
	encode(nb, &h, 7, seq, NULL, 0, p, 3);
	cr_assert_eq(nb->n, 1, "one datagram");
	dts_sketch_free(&sk);
}

/*
 * Every kind of datagram dts_core_ingest takes, one to four lines each (so batch boundaries fall inside datagrams):
 * statsd of every type, sampled, multi-value, tagged, |T-stamped, gauge deltas before and after an absolute value,
 * blank, '\r'-ended, malformed and too long lines, DaTtSs lines (good, bad token), native datagrams (and a replay).
 * 'l': statsd text; 'd': DaTtSs lines, "%1$s" is alice's AUTH token; 'n': a native datagram.
 */
static const struct {
	char kind;
	const char *text;
} mixed[] = {
	{ 'l', "api.hits:1|c" },
	{ 'l', "api.hits:2|c|@0.5\napi.lat:12.5|ms\napi.lat:20|ms|@0.25" },
	{ 'l', "api.g2:+5|g" },
	{ 'd', "%1$s:api:temp:4g" },
	{ 'l', "api.g2:10|g" },
	{ 'n', NULL },
	{ 'l', "api.g2:+2|g\napi.temp:50|g\n\napi.g2:-4|g" },
	{ 'l', "api.users:alice|s\napi.users:bob|s\napi.users:alice|s" },
	{ 'l', "api.multi:1:2:3|c\napi.mt:4.5:6|ms|@0.5" },
	{ 'l', "api.tagged:1|c|#env:prod,az:b\napi.tagged:2|c|#az:b,env:prod\n" },
	{ 'l', "nodot:3|c\napi.bad:x|c\napi.bad|c\n:1|c" },
	{ 'l', "api.bad:1|zz\r\napi.crlf:1|c\r\napi.ts:1|c|T1700000041" },
	{ 'd', "%1$s:api:hits:2c\n%1$s:api:lat:7ms\n%1$s:api:temp:-3g" },
	{ 'd', "alice_0000000000000000000000000000000000000000:api:hits:1c" },
	{ 'l', "api.gd:-1|g" },
	{ 'l', "api.hits:3|c|#a:1\napi.hits:4|c" },
	{ 'L', NULL }, /* a line longer than DTS_MAX_LINE, then a good one */
	{ 'l', "api.g2:7|g\napi.g2:+1|g" },
	{ 'l', "\n\n" },
	{ 'l', "" },
};

static void build_mixed(struct stream *s, unsigned rounds)
{
	static struct batch nb;
	static char big[DTS_MAX_LINE + 64];
	char tok[128], line[512];
	uint64_t seq = 1;

	cr_assert_gt(dts_dattss_auth(burst_secret, sizeof(burst_secret) - 1, "alice", 5, tok, sizeof(tok)), 0);
	memset(s, 0, sizeof(*s));
	for (unsigned r = 0; r < rounds; r++) {
		for (size_t i = 0; i < sizeof(mixed) / sizeof(mixed[0]); i++) {
			switch (mixed[i].kind) {
			case 'l':
				stream_add(s, mixed[i].text, strlen(mixed[i].text));
				break;
			case 'd':
				snprintf(line, sizeof(line), mixed[i].text, tok);
				stream_add(s, line, strlen(line));
				break;
			case 'n':
				/* a new datagram every other round; the others replay the last one (rejected) */
				if (r % 2 == 0)
					native_dgram(&nb, &seq, 9 + r);
				stream_add(s, nb.d[0], nb.len[0]);
				break;
			case 'L':
				memset(big, 'x', sizeof(big));
				memcpy(big, "api.long:", 9);
				memcpy(big + DTS_MAX_LINE + 8, ":1|c\napi.hits:5|c", 17);
				stream_add(s, big, DTS_MAX_LINE + 25);
				break;
			}
		}
		/* single-line datagrams that each need a scratch buffer (tags), more than a batch of them in a row */
		for (unsigned k = 0; k < 20; k++) {
			int n = snprintf(line, sizeof(line), "api.t%u:%u|c|#k:v%u,a:r%u", k % 3, k + 1, k, r);

			stream_add(s, line, (size_t)n);
		}
	}
}

Test(ingest, burst_gives_the_results_of_one_call_per_datagram)
{
	static const unsigned bursts[] = { 1, 2, 3, 17, 64 };
	static struct stream s;
	struct bmerger want, got;
	char what[64];

	build_mixed(&s, 4);
	bm_start(&want);
	bm_feed(&want, &s, 0);
	/* the stream exercised what it is meant to */
	cr_assert_gt(want.st.statsd_lines, 0);
	cr_assert_gt(want.st.dattss_lines, 0);
	cr_assert_gt(want.st.native_datagrams, 0);
	cr_assert_gt(want.st.native_rejected[DTS_NREJ_REPLAYED], 0);
	cr_assert_gt(want.st.rejected[DTS_REJ_AUTH_MAC], 0);
	cr_assert_gt(want.st.rejected[DTS_REJ_LINE_TOO_LONG], 0);
	cr_assert_eq(want.st.packets, s.n);
	for (size_t i = 0; i < sizeof(bursts) / sizeof(bursts[0]); i++) {
		snprintf(what, sizeof(what), "burst %u", bursts[i]);
		bm_start(&got);
		bm_feed(&got, &s, bursts[i]);
		assert_same_results(&got, &want, what);
		bm_release(&got);
	}
	bm_release(&want);
}

/*
 * Order across the datagrams of one burst, with hand-computed results: a gauge's delta before its first absolute value
 * (superseded), then absolute and delta values in separate datagrams; a DaTtSs gauge line then a native datagram's
 * gauge partial for the same series and slot (the line first: the partial's value is the last); and one-line datagrams
 * whose names and tags live in the core's scratch buffers until their batch is applied, more of them than a batch.
 * A burst that reordered samples, applied a native datagram before the lines ahead of it, or reused a scratch buffer
 * still pending would get other values.
 */
Test(ingest, burst_keeps_arrival_order_across_datagrams)
{
	static const unsigned bursts[] = { 0, 2, 5, 64 };
	static struct stream s;
	static struct batch nb;
	struct bmerger b;
	char tok[128], line[256];
	uint64_t seq = 1;
	const int64_t minute = BURST_NOW / 60;

	cr_assert_gt(dts_dattss_auth(burst_secret, sizeof(burst_secret) - 1, "alice", 5, tok, sizeof(tok)), 0);
	memset(&s, 0, sizeof(s));
	stream_add(&s, "api.g:+5|g", 10);
	snprintf(line, sizeof(line), "%s:api:temp:4g", tok);
	stream_add(&s, line, strlen(line));
	native_dgram(&nb, &seq, 9);
	stream_add(&s, nb.d[0], nb.len[0]);
	stream_add(&s, "api.g:10|g", 10);
	stream_add(&s, "api.g:+2|g", 10);
	for (unsigned k = 0; k < 40; k++) {
		int n = snprintf(line, sizeof(line), "api.t:%u|c|#k:v%u,a:x", k + 1, k);

		stream_add(&s, line, (size_t)n);
	}
	stream_add(&s, "api.g:-4|g", 10);

	for (size_t i = 0; i < sizeof(bursts) / sizeof(bursts[0]); i++) {
		const struct dts_minute_rec *r;

		bm_start(&b);
		bm_feed(&b, &s, bursts[i]);
		cr_assert_eq(b.taken, 4 + 1 + 3 + 40, "burst %u: every line's sample, every partial", bursts[i]);
		r = bm_rec(&b, minute, "default", "api", "g", "", DTS_GAUGE);
		cr_assert_not_null(r, "burst %u", bursts[i]);
		cr_expect_eq(r->agg.lst, 8, "burst %u: 10, +2, -4", bursts[i]);
		cr_expect_eq(r->agg.fst, 10, "burst %u: the delta before it superseded", bursts[i]);
		cr_expect_eq(r->agg.max, 12, "burst %u", bursts[i]);
		cr_expect_eq(r->agg.count, 3, "burst %u", bursts[i]);
		r = bm_rec(&b, minute, "alice", "api", "temp", "", DTS_GAUGE);
		cr_assert_not_null(r, "burst %u", bursts[i]);
		cr_expect_eq(r->agg.fst, 4, "burst %u: the DaTtSs line came first", bursts[i]);
		cr_expect_eq(r->agg.lst, 9, "burst %u: the native partial came last", bursts[i]);
		for (unsigned k = 0; k < 40; k++) {
			char tags[32];

			snprintf(tags, sizeof(tags), "a:x,k:v%u", k);
			r = bm_rec(&b, minute, "default", "api", "t", tags, DTS_COUNTER);
			cr_assert_not_null(r, "burst %u: api.t{%s}", bursts[i], tags);
			cr_expect_eq(r->agg.sum, k + 1, "burst %u: api.t{%s}", bursts[i], tags);
			cr_expect_eq(r->agg.count, 1, "burst %u: api.t{%s}", bursts[i], tags);
		}
		cr_expect_eq(bm_nrecs(&b), 1 + 3 + 40, "burst %u: no other series", bursts[i]);
		bm_release(&b);
	}
}
