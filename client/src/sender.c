/*
 * sender.c - the sender side of libdattss: every 5 seconds switch the threads' tables, merge the filled ones into the
 * batch, add process statistics and the error/warning texts, encode with the native codec and send with sendmmsg.
 *
 * Everything here runs under d->flush_lock, on the sender thread or in dts_flush / dts_close: the sender's state is
 * never touched by two threads at once, and recording calls never wait for it.
 *
 * Cost per period for n series in the batch: the switch (one membarrier), one pass over each thread's table (merge
 * n entries: a name normalisation, a hash and a probe each), the encoding (about 40 bytes per counter, one HMAC per
 * 1400-byte datagram) and one sendmmsg per 64 datagrams. bench/bench_client.c measures it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"

int64_t dts__now_ns(int clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Process statistics: uptime since open, resident memory, CPU time and usage since the last call. */
void dts__proc_stats(struct dts *d, struct dts_native_stats *s)
{
	int64_t mono = dts__now_ns(CLOCK_MONOTONIC), cpu_us;
	struct rusage ru;
	char buf[128];
	ssize_t n;

	memset(s, 0, sizeof(*s));
	s->uptime_s = (uint32_t)((mono - d->open_mono_ns) / 1000000000);
	if (d->statm_fd >= 0 && (n = pread(d->statm_fd, buf, sizeof(buf) - 1, 0)) > 0) {
		unsigned long long size, resident;

		buf[n] = '\0';
		if (sscanf(buf, "%llu %llu", &size, &resident) == 2)
			s->rss_bytes = resident * (uint64_t)sysconf(_SC_PAGESIZE);
	}
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		cpu_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec + (int64_t)ru.ru_stime.tv_sec * 1000000 +
			 ru.ru_stime.tv_usec;
		s->cpu_us = (uint64_t)cpu_us;
		if (d->last_wall_ns && mono > d->last_wall_ns && cpu_us >= d->last_cpu_us)
			s->cpu_pct = (float)(100.0 * (double)(cpu_us - d->last_cpu_us) * 1000.0 /
					     (double)(mono - d->last_wall_ns));
		d->last_cpu_us = cpu_us;
		d->last_wall_ns = mono;
	}
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Sending                                                                                                          */

static void send_out(struct dts *d)
{
	unsigned i = 0, refused = 0;

	while (i < d->nout) {
		int r = sendmmsg(d->fd, d->msgs + i, d->nout - i, MSG_DONTWAIT);

		if (r > 0) {
			i += (unsigned)r;
			d->st.datagrams += (unsigned)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == ECONNREFUSED && refused++ == 0)
			continue; /* an ICMP error left by an earlier send: the socket reports it once */
		if (!d->send_err)
			d->send_err = r < 0 ? -errno : -EIO;
		d->st.send_errors += d->nout - i;
		break;
	}
	d->nout = 0;
}

static int emit(void *ctx, const uint8_t *dgram, size_t len)
{
	struct dts *d = ctx;
	unsigned k = d->nout++;

	memcpy(d->out[k], dgram, len);
	d->iov[k].iov_base = d->out[k];
	d->iov[k].iov_len = len;
	memset(&d->msgs[k], 0, sizeof(d->msgs[k]));
	d->msgs[k].msg_hdr.msg_iov = &d->iov[k];
	d->msgs[k].msg_hdr.msg_iovlen = 1;
	if (d->nout == DTS__MMSG)
		send_out(d);
	return 0; /* a failed send is counted; the batch goes on */
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* The period                                                                                                       */

/* Merge one thread table (raw names) into the batch (normalised names), then reset it. */
static void harvest(struct dts *d, struct dts__tab *t)
{
	char name[DTS_MAX_NAME];

	for (uint32_t i = 0; t->used && i <= t->mask; i++) {
		const struct dts__ent *e = &t->ent[i];
		struct dts__ent *b;
		int n, err = 0;

		if (!e->hash || e->agg.count == 0.0)
			continue;
		n = dts__normalize_name(t->arena + e->name_off, e->name_len, name, d->process_len);
		if (n < 0) {
			d->snd_dropped_values++; /* cannot happen: checked on insert */
			continue;
		}
		b = dts__tab_get(&d->batch, dts__name_hash(name, (size_t)n, e->type), name, (size_t)n, e->type, &err);
		if (!b || (e->type == DTS_TIMER && dts_sketch_merge(&d->batch.sk[b->sk], &t->sk[e->sk]) != 0)) {
			d->snd_dropped_values += (uint64_t)e->agg.count;
			continue;
		}
		dts_agg_merge(&b->agg, &e->agg);
		b->flags |= e->flags;
	}
	for (uint32_t i = 0; i < t->nev; i++) {
		if (d->nevents < DTS__SND_EVENTS)
			d->events[d->nevents++] = t->ev[i];
		else
			d->snd_dropped_events++;
	}
	dts__tab_reset(t);
}

/* Grow the snapshot array to hold n threads. */
static int snap_reserve(struct dts *d, uint32_t n)
{
	struct dts__thr **p;
	uint32_t cap;

	if (n <= d->snap_cap)
		return 0;
	cap = d->snap_cap ? d->snap_cap : 16;
	while (cap < n)
		cap *= 2;
	p = realloc(d->snap, (size_t)cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	d->snap = p;
	d->snap_cap = cap;
	return 0;
}

/* Wait until t is not inside a recording call that may have seen the old active index. */
static void wait_quiescent(struct dts__thr *t)
{
	uint32_t v = atomic_load_explicit(&t->busy, memory_order_seq_cst);
	unsigned spins = 0;

	if (!(v & 1))
		return;
	while (atomic_load_explicit(&t->busy, memory_order_acquire) == v) {
		if (++spins < 1000)
			__builtin_ia32_pause();
		else
			sched_yield(); /* the thread was preempted inside a call */
	}
}

/*
 * Switch every registered thread to its other table and collect the filled ones into the batch; free the buffers of
 * threads that had exited before the switch. Returns the number of threads collected, or -ENOMEM (nothing switched).
 */
static int collect(struct dts *d)
{
	struct dts__thr *t, **pp;
	uint32_t old, n = 0;

	pthread_mutex_lock(&d->reg_lock);
	for (t = d->threads; t; t = t->next)
		t->gone_seen = atomic_load_explicit(&t->gone, memory_order_acquire);
	if (snap_reserve(d, d->nthreads)) {
		pthread_mutex_unlock(&d->reg_lock);
		return -ENOMEM;
	}
	pthread_mutex_unlock(&d->reg_lock);

	old = atomic_load_explicit(&d->active, memory_order_relaxed);
	atomic_store_explicit(&d->active, old ^ 1, memory_order_seq_cst);
	dts__mb_sender();

	/* every thread registered before the switch is in the list now; later ones record into the new tables */
	pthread_mutex_lock(&d->reg_lock);
	if (snap_reserve(d, d->nthreads) == 0)
		for (t = d->threads; t && n < d->snap_cap; t = t->next)
			d->snap[n++] = t;
	pthread_mutex_unlock(&d->reg_lock);

	for (uint32_t i = 0; i < n; i++)
		wait_quiescent(d->snap[i]);
	for (uint32_t i = 0; i < n; i++)
		harvest(d, &d->snap[i]->tab[old]);

	/* threads gone before the switch wrote nothing since: both their tables are now collected */
	pthread_mutex_lock(&d->reg_lock);
	for (pp = &d->threads; (t = *pp) != NULL;) {
		if (t->gone_seen) {
			*pp = t->next;
			d->nthreads--;
			d->dead_errors += atomic_load_explicit(&t->errors, memory_order_relaxed);
			d->dead_warnings += atomic_load_explicit(&t->warnings, memory_order_relaxed);
			d->dead_dropped_values += atomic_load_explicit(&t->dropped_values, memory_order_relaxed);
			d->dead_dropped_events += atomic_load_explicit(&t->dropped_events, memory_order_relaxed);
			dts__thr_free(t);
		} else {
			pp = &t->next;
		}
	}
	pthread_mutex_unlock(&d->reg_lock);
	return (int)n;
}

/* Sum of the counters of live and exited threads, plus the sender's own drops. reg_lock held. */
static void sum_counters(struct dts *d)
{
	struct dts_client_stats *s = &d->st;

	s->errors = d->dead_errors;
	s->warnings = d->dead_warnings;
	s->dropped_values = d->dead_dropped_values + d->snd_dropped_values;
	s->dropped_events = d->dead_dropped_events + d->snd_dropped_events;
	s->threads = d->nthreads;
	for (struct dts__thr *t = d->threads; t; t = t->next) {
		s->errors += atomic_load_explicit(&t->errors, memory_order_relaxed);
		s->warnings += atomic_load_explicit(&t->warnings, memory_order_relaxed);
		s->dropped_values += atomic_load_explicit(&t->dropped_values, memory_order_relaxed);
		s->dropped_events += atomic_load_explicit(&t->dropped_events, memory_order_relaxed);
	}
}

static uint32_t clamp32(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Encode and send the batch as slot `slot`. */
static void send_batch(struct dts *d, int64_t slot)
{
	struct dts_native_hdr h = {
		.key_id = d->key_id,
		.instance = d->instance,
		.slot = slot,
		.user = d->user,
		.user_len = d->user_len,
		.process = d->process,
		.process_len = d->process_len,
	};
	struct dts__tab *b = &d->batch;
	int r;

	dts__proc_stats(d, &h.stats);
	pthread_mutex_lock(&d->reg_lock);
	sum_counters(d);
	pthread_mutex_unlock(&d->reg_lock);
	h.stats.errors = clamp32(d->st.errors);
	h.stats.warnings = clamp32(d->st.warnings);
	h.stats.dropped = clamp32(d->st.dropped_values + d->st.dropped_events + d->st.send_errors);

	r = dts_native_enc_begin(&d->enc, &h, &d->mac, &d->seq, emit, d);
	for (uint32_t i = 0; r == 0 && i < d->nevents; i++) {
		struct dts_native_event ev = {
			.kind = d->events[i].kind,
			.ts_ms = d->events[i].ts_ms,
			.text = d->events[i].text,
			.len = d->events[i].len,
		};

		if (dts_native_enc_event(&d->enc, &ev))
			d->snd_dropped_events++;
	}
	for (uint32_t i = 0; r == 0 && b->used && i <= b->mask; i++) {
		const struct dts__ent *e = &b->ent[i];
		struct dts_native_partial p;

		if (!e->hash || e->agg.count == 0.0)
			continue;
		p = (struct dts_native_partial){
			.name = b->arena + e->name_off,
			.name_len = e->name_len,
			.tags = "",
			.type = e->type,
			.flags = e->flags,
			.agg = e->agg,
			.sketch = e->type == DTS_TIMER ? &b->sk[e->sk] : NULL,
		};
		if (dts_native_enc_partial(&d->enc, &p))
			d->snd_dropped_values += (uint64_t)e->agg.count;
	}
	if (r == 0)
		dts_native_enc_end(&d->enc);
	if (d->nout)
		send_out(d);
	d->st.batches++;
	d->nevents = 0;
	dts__tab_reset(b);
}

/* One period: collect, encode, send. flush_lock must be held. Returns 0 or the first send error. */
int dts__period(struct dts *d, int64_t slot)
{
	d->send_err = 0;
	collect(d);
	send_batch(d, slot);
	return d->send_err;
}

/* The sender thread: a period at every 5-second boundary of the wall clock (the slot that just ended), a last one at
 * stop (the slot in progress). */
void *dts__sender_main(void *arg)
{
	struct dts *d = arg;
	int64_t next = (dts__now_ns(CLOCK_REALTIME) / 1000000000 / DTS_SLOT_SECONDS + 1) * DTS_SLOT_SECONDS;

	for (;;) {
		struct timespec until = { .tv_sec = next, .tv_nsec = 0 };
		int64_t now;
		bool stop;

		pthread_mutex_lock(&d->wake_lock);
		while (!d->stop && pthread_cond_timedwait(&d->wake, &d->wake_lock, &until) != ETIMEDOUT)
			;
		stop = d->stop;
		pthread_mutex_unlock(&d->wake_lock);
		now = dts__now_ns(CLOCK_REALTIME) / 1000000000;
		if (stop)
			break;
		if (now < next)
			continue; /* woken early (a spurious timeout on a clock step) */
		pthread_mutex_lock(&d->flush_lock);
		dts__period(d, next - DTS_SLOT_SECONDS);
		pthread_mutex_unlock(&d->flush_lock);
		next += DTS_SLOT_SECONDS;
		if (next <= now) /* suspended or stalled: skip to the slot in progress */
			next = (now / DTS_SLOT_SECONDS + 1) * DTS_SLOT_SECONDS;
	}
	return NULL;
}
