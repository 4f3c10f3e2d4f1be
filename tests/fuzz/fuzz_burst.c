/*
 * fuzz_burst.c - differential libFuzzer target: dts_core_ingest_burst against one dts_core_ingest per datagram.
 *
 * Input: byte 0 chooses the burst size (1 + byte % 64); the rest is a sequence of datagrams separated by 0x1e bytes
 * (statsd and DaTtSs lines, anything). Two mergers with the same configuration (one core, a 1,024-bucket table so
 * that the table-full paths run, DaTtSs secret "s3cret", grace 0, series expiring after 60 s, one fixed identity
 * key) live for the whole run and take the same datagrams: A one dts_core_ingest call per datagram, B
 * dts_core_ingest_burst over bursts of that size. Each input gets its own minute of a fake clock that moves 2
 * minutes per input; after the input both cores hand their table over and both mergers step past the minute's close.
 * Checked, whatever the input:
 *   - the return values summed over the datagrams are equal;
 *   - every core counter is equal (lines, samples, rejections by reason, drops by reason, packets, bytes, ...);
 *   - both sinks received the same closed minutes: the same series, each with the same aggregate bit for bit, the
 *     same sketch (bins, zero weight, count) and the same set cardinality.
 * ASan/UBSan watch both paths. Seeds: corpus/burst/.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dts/engine.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000
#define MAX_DGRAMS 512
#define MAX_MINUTES 8

struct minutes {
	struct dts_closed_minute *cm[MAX_MINUTES];
	unsigned n;
};

static void keep(void *ctx, struct dts_closed_minute *cm)
{
	struct minutes *ms = ctx;

	if (ms->n < MAX_MINUTES)
		ms->cm[ms->n++] = cm;
	else
		dts_closed_minute_release(cm);
}

static struct dts_merger *merger_new(struct minutes *ms)
{
	struct dts_merger_cfg cfg;
	struct dts_merger *m;

	dts_merger_cfg_defaults(&cfg);
	cfg.cores = 1;
	cfg.table_capacity = 1024;
	cfg.tables_per_core = 2;
	cfg.grace_s = 0;
	cfg.expire_s = 60;
	cfg.decode.secret = (const uint8_t *)"s3cret";
	cfg.decode.secret_len = 6;
	cfg.sink.minute_closed = keep;
	cfg.sink.ctx = ms;
	/* one identity key for both: the same buckets, so a full table drops the same values, and an input replays
	 * alike in every run */
	cfg.ident_key = 0x6a09e667f3bcc908ULL;
	m = dts_merger_create(&cfg);
	CHECK(m);
	return m;
}

static bool same_bits(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_identity(const struct dts_minute_rec *a, const struct dts_minute_rec *b)
{
	return a->type == b->type && same_str(a->user, b->user) && same_str(a->process, b->process) &&
	       same_str(a->counter, b->counter) && same_str(a->tags, b->tags);
}

static void same_record(const struct dts_minute_rec *a, const struct dts_minute_rec *b)
{
	CHECK(same_bits(a->agg.sum, b->agg.sum) && same_bits(a->agg.count, b->agg.count));
	CHECK(same_bits(a->agg.min, b->agg.min) && same_bits(a->agg.max, b->agg.max));
	CHECK(same_bits(a->agg.fst, b->agg.fst) && same_bits(a->agg.lst, b->agg.lst));
	CHECK(a->sketch.level == b->sketch.level && same_bits(a->sketch.count, b->sketch.count) &&
	      same_bits(a->sketch.zero, b->sketch.zero));
	fuzz_same_bins(&a->sketch, &b->sketch);
	CHECK(same_bits(dts_set_cardinality(&a->set), dts_set_cardinality(&b->set)));
}

/* Every record of a has its series in b (once) with the same contents, and the counts agree. */
static void same_minutes(const struct minutes *a, const struct minutes *b)
{
	CHECK(a->n == b->n);
	for (unsigned k = 0; k < a->n; k++) {
		const struct dts_closed_minute *x = a->cm[k], *y = b->cm[k];

		CHECK(x->minute == y->minute && x->n == y->n && x->late == y->late);
		for (size_t i = 0; i < x->n; i++) {
			size_t j = 0;

			while (j < y->n && !same_identity(&x->recs[i], &y->recs[j]))
				j++;
			CHECK(j < y->n);
			same_record(&x->recs[i], &y->recs[j]);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dts_dgram d[MAX_DGRAMS];
	static struct minutes ma, mb;
	static struct dts_merger *a, *b;
	static int64_t now = NOW / 60 * 60;
	struct dts_core_stats sa, sb;
	unsigned n = 0, burst, ra = 0, rb = 0;
	const char *p, *end;

	if (!a) {
		dts_rcu_register_thread(); /* for the whole run: the mergers are RCU updaters */
		a = merger_new(&ma);
		b = merger_new(&mb);
	}
	if (size < 1)
		return 0;
	burst = 1 + data[0] % 64;
	p = (const char *)data + 1;
	end = (const char *)data + size;
	while (p <= end && n < MAX_DGRAMS) {
		const char *sep = memchr(p, 0x1e, (size_t)(end - p));
		const char *stop = sep ? sep : end;

		d[n].buf = p;
		d[n].len = (size_t)(stop - p);
		n++;
		if (!sep)
			break;
		p = sep + 1;
	}
	now += 120; /* this input's minute */
	for (unsigned i = 0; i < n; i++)
		ra += dts_core_ingest(dts_merger_core(a, 0), d[i].buf, d[i].len, now);
	for (unsigned i = 0; i < n; i += burst)
		rb += dts_core_ingest_burst(dts_merger_core(b, 0), d + i, n - i < burst ? n - i : burst, now);
	CHECK(ra == rb);
	dts_core_stats_read(dts_merger_core(a, 0), &sa);
	dts_core_stats_read(dts_merger_core(b, 0), &sb);
	CHECK(memcmp(&sa, &sb, sizeof(sa)) == 0); /* cumulative: equal so far */
	for (int k = 0; k < 2; k++) {
		struct dts_core *c = dts_merger_core(k ? b : a, 0);

		dts_core_flush(c);
		dts_core_tick(c, now * 1000);
		dts_merger_step(k ? b : a, (now + 61) * 1000); /* folds, then closes this minute (grace 0) */
	}
	same_minutes(&ma, &mb);
	for (unsigned k = 0; k < ma.n; k++)
		dts_closed_minute_release(ma.cm[k]);
	for (unsigned k = 0; k < mb.n; k++)
		dts_closed_minute_release(mb.cm[k]);
	ma.n = mb.n = 0;
	return 0;
}
