/*
 * sink.c - the merger -> storage hand-over: a bounded single-producer single-consumer queue of closed minutes and
 * checkpoints, and the storage thread that writes them.
 *
 * Why this shape: the merger must never wait for the disk (DESIGN.md section 4). It is the only producer, the
 * storage thread the only consumer, so a ring of pointers with two monotonic indices needs no lock: the producer
 * publishes a slot with a release store of `tail`, the consumer frees it with a release store of `head`. The
 * producer's wake-up is sem_post (never blocks). A full queue releases the closed minute and counts it; checkpoints
 * are refused already when the queue is half full, so they never take the room of closed minutes.
 *
 * The storage thread writes the oldest entry and only then pops it, so a failing store keeps the entry at the head
 * and retries it with exponential backoff (retry_min_ms .. retry_max_ms) while the merger keeps queueing behind it:
 * the queue is the bounded buffer, and what does not fit is dropped and counted. Checkpoints get one attempt (a lost
 * one - failed or dropped - makes the merger's next checkpoint a full copy: sink_checkpoint_lost), and one followed
 * in the queue by a newer full checkpoint or by the close of the same minute is skipped (the later entry contains
 * everything it has). Partial checkpoints (only the series changed since the previous one) are never skipped for a
 * later partial one. With nothing queued, the thread rolls up
 * the hours that are due (roll.c) in chunks of about DTS_STORAGE_ROLL_BUDGET_US, looking at the queue between chunks,
 * so a closed minute waits at most one chunk for the roller.
 *
 * Once the daemon stops (dts_storage_stopping), the minutes family's memtable is switched for a flush after a large
 * close only when another closed minute is queued behind it: that flush completes during the next close, while one
 * started after the last close would only delay rocksdb_close, which waits for it and then discards its output (the
 * WAL holds those minutes; the next open replays them).
 *
 * Ownership: an entry belongs to the queue from a successful push until the consumer releases it after writing
 * (or skipping, or dropping) it; a refused push is released by the producer at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage_internal.h"

/* The storage thread wakes this often even without a post, to notice drops worth logging and the stop request. */
#define IDLE_WAIT_MS 200

/* While writes keep failing, the failure is logged again at most this often. */
#define FAIL_LOG_EVERY_MS 60000

struct dts_storage_sink {
	struct dts_storage *st;
	struct dts_closed_minute **ring; /* slots [head, tail) are queued */
	uint64_t cap; /* power of two >= cfg.queue_minutes */
	uint64_t max_minutes;
	uint64_t max_records;
	/* producer side (merger thread); records pushed are counted in st->q_enq_records */
	_Alignas(64) _Atomic uint64_t tail;
	/* consumer side (storage thread); records popped are counted in st->q_deq_records */
	_Alignas(64) _Atomic uint64_t head;
	int64_t stop_deadline_ns; /* storage thread: when stopping, give up failing writes after this (0: not yet) */
	_Alignas(64) sem_t wake;
	_Atomic bool stop;
	_Atomic bool ckpt_lost; /* a checkpoint was dropped or failed since the merger last asked (checkpoint_lost) */
	pthread_t thread;
};

static void timespec_after_ms(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* ---- producer (merger thread) ---------------------------------------------------------------------------------- */

static void drop(struct dts_storage_sink *s, struct dts_closed_minute *cm)
{
	struct dts_storage_stats *x = &s->st->stats;

	if (cm->open) {
		DTS__SSTAT_ADD(x->checkpoints_dropped, 1);
		atomic_store_explicit(&s->ckpt_lost, true, memory_order_relaxed);
	} else {
		DTS__SSTAT_ADD(x->dropped_minutes[DTS_SDROP_QUEUE_FULL], 1);
		DTS__SSTAT_ADD(x->dropped_records[DTS_SDROP_QUEUE_FULL], cm->n);
	}
	dts_closed_minute_release(cm);
}

static void push(struct dts_storage_sink *s, struct dts_closed_minute *cm)
{
	const uint64_t t = atomic_load_explicit(&s->tail, memory_order_relaxed);
	const uint64_t h = atomic_load_explicit(&s->head, memory_order_acquire);
	const uint64_t depth = t - h;
	/* records still queued: pushed minus popped (an estimate: the consumer may be popping right now) */
	const uint64_t recs = s->st->q_enq_records - __atomic_load_n(&s->st->q_deq_records, __ATOMIC_RELAXED);

	if (depth >= s->max_minutes || (depth > 0 && recs + cm->n > s->max_records) ||
	    (cm->open && (2 * depth >= s->max_minutes || 2 * (recs + cm->n) > s->max_records))) {
		drop(s, cm);
		return;
	}
	s->ring[t & (s->cap - 1)] = cm;
	DTS__SSTAT_ADD(s->st->q_enq_records, cm->n);
	DTS__SSTAT_ADD(s->st->q_enq_minutes, 1);
	atomic_store_explicit(&s->tail, t + 1, memory_order_release);
	sem_post(&s->wake);
}

static void sink_closed(void *ctx, struct dts_closed_minute *cm)
{
	push(ctx, cm);
}

static void sink_checkpoint(void *ctx, struct dts_closed_minute *cm)
{
	push(ctx, cm);
}

/* Events and process states have their own queue (events.c): they never take the room of closed minutes. */
static void sink_events(void *ctx, struct dts_event_batch *b)
{
	struct dts_storage_sink *s = ctx;

	dts__evq_push(s->st->evq, b);
	sem_post(&s->wake);
}

/* The merger asks before each checkpoint: was one lost since? Then it sends a full one (the others are partial). */
static bool sink_checkpoint_lost(void *ctx)
{
	struct dts_storage_sink *s = ctx;

	return atomic_exchange_explicit(&s->ckpt_lost, false, memory_order_relaxed);
}

struct dts_sink dts_storage_sink_get(struct dts_storage_sink *s)
{
	return (struct dts_sink){ .minute_closed = sink_closed,
				  .checkpoint = sink_checkpoint,
				  .checkpoint_lost = sink_checkpoint_lost,
				  .events = sink_events,
				  .ctx = s };
}

/* ---- consumer (storage thread) --------------------------------------------------------------------------------- */

/*
 * A checkpoint at h is superseded when the close or a later full checkpoint of the same minute is queued. A later
 * partial checkpoint holds only what changed after h's copy, so it does not supersede h.
 */
static bool superseded(const struct dts_storage_sink *s, uint64_t h, uint64_t t)
{
	const struct dts_closed_minute *cm = s->ring[h & (s->cap - 1)];

	for (uint64_t j = h + 1; j < t; j++) {
		const struct dts_closed_minute *later = s->ring[j & (s->cap - 1)];

		if (later->minute == cm->minute && (!later->open || !later->partial))
			return true;
	}
	return false;
}

/* Is a closed minute (not a checkpoint) queued after the entry at h? Storage thread. */
static bool closed_follows(const struct dts_storage_sink *s, uint64_t h)
{
	const uint64_t t = atomic_load_explicit(&s->tail, memory_order_acquire);

	for (uint64_t j = h + 1; j < t; j++)
		if (!s->ring[j & (s->cap - 1)]->open)
			return true;
	return false;
}

/* Write the closed minute cm, retrying with backoff. Returns true when written, false when given up (stopping, past the deadline). */
static bool write_with_retry(struct dts_storage_sink *s, struct dts_closed_minute *cm, int64_t *fail_logged_ns)
{
	struct dts_storage *st = s->st;
	unsigned backoff = st->cfg.retry_min_ms ? st->cfg.retry_min_ms : 1;
	int64_t first_fail = 0;
	uint64_t attempts = 0;
	char msg[512];

	for (;;) {
		int rc = dts_storage_write_minute(st, cm);

		if (rc == 0) {
			if (attempts)
				dts__log(st, 2, "store '%s': writes recovered after %llu retries (%.1f s)",
					 st->data_dir, (unsigned long long)attempts,
					 (double)(dts__mono_ns() - first_fail) / 1e9);
			return true;
		}
		if (rc == -EINVAL || rc == -EROFS) {
			dts__log(st, 0, "store '%s': minute %lld cannot be stored (%s): dropped", st->data_dir,
				 (long long)cm->minute, strerror(-rc));
			return false;
		}
		const int64_t now = dts__mono_ns();

		if (!attempts)
			first_fail = now;
		if (!*fail_logged_ns || now - *fail_logged_ns >= (int64_t)FAIL_LOG_EVERY_MS * 1000000) {
			if (rc == -ENOMEM)
				snprintf(msg, sizeof(msg), "out of memory");
			else
				dts__last_error(st, msg, sizeof(msg));
			dts__log(st, 0,
				 "store '%s': writing minute %lld failed: %s; retrying (backoff up to %u ms), "
				 "%llu entries queued",
				 st->data_dir, (long long)cm->minute, msg, st->cfg.retry_max_ms,
				 (unsigned long long)(atomic_load(&s->tail) - atomic_load(&s->head)));
			*fail_logged_ns = now;
		}
		if (atomic_load_explicit(&s->stop, memory_order_acquire)) {
			/* one deadline for the whole drain, not one per queued minute */
			if (!s->stop_deadline_ns)
				s->stop_deadline_ns = now + (int64_t)st->cfg.stop_timeout_ms * 1000000;
			if (now >= s->stop_deadline_ns)
				return false;
		}
		attempts++;
		DTS__SSTAT_ADD(st->stats.retries, 1);
		struct timespec ts = { .tv_sec = backoff / 1000, .tv_nsec = (long)(backoff % 1000) * 1000000L };

		nanosleep(&ts, NULL);
		backoff = backoff * 2 > st->cfg.retry_max_ms ? st->cfg.retry_max_ms : backoff * 2;
		if (backoff == 0)
			backoff = 1;
	}
}

/* One line per closed minute stored: info while the daemon stops (the operator waits for these), else debug. */
static void log_stored(const struct dts_storage_sink *s, const struct dts_closed_minute *cm, int64_t t0,
		       uint64_t queued)
{
	struct dts_storage *st = s->st;
	char when[DTS_STORAGE_TIME_LEN_MINUTE + 1];

	if (dts_storage_time_encode(when, sizeof(when), DTS_RES_MINUTE, cm->minute * 60) < 0)
		snprintf(when, sizeof(when), "?");
	dts__log(st, atomic_load_explicit(&st->stopping, memory_order_relaxed) ? 2 : 3,
		 "minute %s stored: %zu series in %.2f s (%llu more queued)", when, cm->n,
		 (double)(dts__mono_ns() - t0) / 1e9, (unsigned long long)queued);
}

static void *sink_main(void *arg)
{
	struct dts_storage_sink *s = arg;
	struct dts_storage *st = s->st;
	int64_t fail_logged = 0;
	uint64_t drops_seen = 0;

	pthread_setname_np(pthread_self(), "dts-storage");
	for (;;) {
		const uint64_t h = atomic_load_explicit(&s->head, memory_order_relaxed);
		const uint64_t t = atomic_load_explicit(&s->tail, memory_order_acquire);
		const uint64_t drops =
			__atomic_load_n(&st->stats.dropped_minutes[DTS_SDROP_QUEUE_FULL], __ATOMIC_RELAXED);

		if (drops != drops_seen) {
			dts__log(st, 1, "store '%s': sink queue full: %llu closed minutes dropped so far", st->data_dir,
				 (unsigned long long)drops);
			drops_seen = drops;
		}
		dts__evq_drain(st, false);
		if (h == t) {
			if (atomic_load_explicit(&s->stop, memory_order_acquire)) {
				dts__evq_drain(st, true); /* what the merger handed over before it stopped */
				break;
			}
			if (dts__roll_idle(st))
				continue; /* one bounded chunk of hourly rollups, then the queue again */
			struct timespec ts;

			timespec_after_ms(&ts, IDLE_WAIT_MS);
			while (sem_timedwait(&s->wake, &ts) != 0 && errno == EINTR)
				;
			continue;
		}
		struct dts_closed_minute *cm = s->ring[h & (s->cap - 1)];
		const size_t n = cm->n;
		const int64_t t0 = dts__mono_ns();

		if (cm->open && superseded(s, h, t)) {
			DTS__SSTAT_ADD(st->stats.checkpoints_skipped, 1);
		} else if (cm->open) {
			/* one attempt: a checkpoint is replaced by the next one within seconds, and retrying it would hold
			 * back the closed minutes queued behind it */
			if (dts_storage_write_checkpoint(st, cm) != 0) {
				DTS__SSTAT_ADD(st->stats.checkpoints_failed, 1);
				atomic_store_explicit(&s->ckpt_lost, true, memory_order_relaxed);
			}
		} else if (!write_with_retry(s, cm, &fail_logged)) {
			DTS__SSTAT_ADD(st->stats.dropped_minutes[DTS_SDROP_WRITE_FAILED], 1);
			DTS__SSTAT_ADD(st->stats.dropped_records[DTS_SDROP_WRITE_FAILED], n);
		} else if (!cm->open) { /* a closed minute (or late part) written; checkpoints are neither logged nor flushed */
			const uint64_t more = atomic_load_explicit(&s->tail, memory_order_acquire) - h - 1;

			log_stored(s, cm, t0, more);
			/* stopping: the memtable is switched only for a close that is not the last (its flush runs during
			 * the next one and completes; one started after the last close would be thrown away at close) */
			if (atomic_load_explicit(&st->stopping, memory_order_relaxed) && closed_follows(s, h))
				dts__flush_after_close(st);
		}
		dts_closed_minute_release(cm);
		DTS__SSTAT_ADD(st->q_deq_records, n);
		DTS__SSTAT_ADD(st->q_deq_minutes, 1);
		atomic_store_explicit(&s->head, h + 1, memory_order_release);
	}
	return NULL;
}

struct dts_storage_sink *dts_storage_sink_start(struct dts_storage *st, char *err, size_t err_len)
{
	struct dts_storage_sink *s;
	int rc;

	if (st->cfg.mode != DTS_STORAGE_READ_WRITE || st->sink) {
		snprintf(err, err_len, "store '%s': %s", st->data_dir,
			 st->sink ? "a sink is already running" : "opened read-only: no sink");
		errno = EINVAL;
		return NULL;
	}
	s = aligned_alloc(64, (sizeof(*s) + 63) & ~(size_t)63);
	if (!s)
		goto out_nomem;
	memset(s, 0, sizeof(*s));
	s->st = st;
	s->max_minutes = st->cfg.queue_minutes;
	s->max_records = st->cfg.queue_records;
	for (s->cap = 1; s->cap < s->max_minutes; s->cap <<= 1)
		;
	s->ring = calloc(s->cap, sizeof(*s->ring));
	if (!s->ring)
		goto out_nomem;
	st->evq = dts__evq_create();
	if (!st->evq)
		goto out_nomem;
	if (sem_init(&s->wake, 0, 0) != 0) {
		rc = errno;
		snprintf(err, err_len, "store '%s': sem_init: %s", st->data_dir, strerror(rc));
		goto out_free;
	}
	rc = pthread_create(&s->thread, NULL, sink_main, s);
	if (rc != 0) {
		snprintf(err, err_len, "store '%s': cannot start the storage thread: %s", st->data_dir, strerror(rc));
		sem_destroy(&s->wake);
		goto out_free;
	}
	st->sink = s;
	return s;

out_nomem:
	rc = ENOMEM;
	snprintf(err, err_len, "store '%s': out of memory for the sink", st->data_dir);
out_free:
	dts__evq_destroy(st->evq);
	st->evq = NULL;
	if (s)
		free(s->ring);
	free(s);
	errno = rc;
	return NULL;
}

void dts_storage_sink_stop(struct dts_storage_sink *s)
{
	if (!s)
		return;
	atomic_store_explicit(&s->stop, true, memory_order_release);
	sem_post(&s->wake);
	pthread_join(s->thread, NULL);
	sem_destroy(&s->wake);
	dts__evq_destroy(s->st->evq);
	s->st->evq = NULL;
	s->st->sink = NULL;
	free(s->ring);
	free(s);
}

/* ---- statistics ------------------------------------------------------------------------------------------------ */

void dts_storage_stats_read(const struct dts_storage *st, struct dts_storage_stats *out)
{
	const uint64_t *in = (const uint64_t *)&st->stats;
	uint64_t *o = (uint64_t *)out;
	uint64_t em, dm, er, dr;

	_Static_assert(sizeof(struct dts_storage_stats) % sizeof(uint64_t) == 0, "stats are 64-bit words");
	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		o[i] = __atomic_load_n(&in[i], __ATOMIC_RELAXED);
	/* dequeued first: a pop between the two loads can then only make the depth look larger, never negative */
	dm = __atomic_load_n(&st->q_deq_minutes, __ATOMIC_RELAXED);
	dr = __atomic_load_n(&st->q_deq_records, __ATOMIC_RELAXED);
	em = __atomic_load_n(&st->q_enq_minutes, __ATOMIC_RELAXED);
	er = __atomic_load_n(&st->q_enq_records, __ATOMIC_RELAXED);
	out->queue_minutes = em > dm ? em - dm : 0;
	out->queue_records = er > dr ? er - dr : 0;
}
