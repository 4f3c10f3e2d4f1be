/*
 * client_internal.h - libdattss internals shared by record.c (the recording path), sender.c (the sender thread) and
 * client.c (open, close, the one-shot send).
 *
 * Who touches what
 * ----------------
 *   struct dts__thr   one per recording thread and handle. The owner thread writes busy, its counters and the table
 *                     tab[active]; the sender (under flush_lock) reads and resets tab[!active] after switching
 *                     active, and reads the counters (relaxed). gone is written once by the thread-exit destructor.
 *   struct dts        identity and socket are read-only after dts_open. active is written by the sender only.
 *                     threads (list) under reg_lock. Everything of the sender (agg, enc, out, stats) under flush_lock.
 *
 * The switch (sender.c, period()): store active ^= 1, then a process-wide memory barrier (membarrier(2)), then for each
 * thread wait until its busy counter is even or has moved on. A recording call stores busy odd, then reads active, then
 * writes tab[active], then stores busy even (release). The membarrier makes the pair "store busy; load active" in every
 * thread ordered against "store active; load busy" in the sender without a fence on the recording path (the asymmetric
 * Dekker of liburcu's memb flavour): either the thread's load sees the new active, or the sender sees busy odd and
 * waits for that call to end. The release store of busy and the sender's acquire load give it the call's writes. When
 * membarrier is unavailable (old kernel, seccomp), recording calls store busy with seq_cst instead (an xchg on x86:
 * DTS__MB_FENCE), which makes it a plain Dekker in the C11 model.
 */
#ifndef DTS_CLIENT_INTERNAL_H
#define DTS_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "dattss.h"
#include "dts/native.h"
#include "dts/sketch.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Tunables, with the reason for each value. */

/* A thread's table starts at 64 slots (4 KiB: a thread that records little costs little) and doubles up to 16,384
 * (1 MiB): 12,288 series per thread per period at a load of 3/4, above the 10,000 distinct counters of the target. */
#define DTS__THR_MIN_SLOTS 64u
#define DTS__THR_MAX_SLOTS 16384u
/* The merged batch: twice a thread's, so two busy threads with disjoint names still fit. */
#define DTS__SND_MAX_SLOTS 32768u
/* Timers (each up to 2 KiB of sketch bins) per thread table and in the batch: bounds sketch memory to 2 MiB per
 * thread table and 8 MiB for the batch. */
#define DTS__THR_MAX_TIMERS 1024u
#define DTS__SND_MAX_TIMERS 4096u
/* Error/warning texts kept per thread per period and per batch; 64 texts of 512 bytes fill about 25 datagrams. */
#define DTS__THR_EVENTS 8u
#define DTS__SND_EVENTS 64u
/* Raw (not yet normalised) names longer than this are refused on the recording path: strnlen stays bounded and the
 * length fits a byte. */
#define DTS__RAW_NAME_MAX 255u
/* Handles a thread can use without a lookup: one thread seldom records into more than one. */
#define DTS__TLS_SLOTS 4
/* Datagrams per sendmmsg call. */
#define DTS__MMSG 64
#define DTS__DEFAULT_PORT "8125"

/* One series in a table: 64 bytes, one cache line. hash 0 marks an empty slot. */
struct dts__ent {
	uint64_t hash; /* of the name (raw in thread tables, normalised in the batch) and type; never 0 */
	struct dts_agg agg;
	uint32_t name_off : 24; /* name bytes in the table's arena (at most 12,288 x 255 bytes < 2^24) */
	uint32_t name_len : 8;
	uint8_t type; /* enum dts_type */
	uint8_t flags; /* DTS_NATIVE_PF_EMPHASIS */
	uint16_t sk; /* timers: index in the table's sketch pool */
};
_Static_assert(sizeof(struct dts__ent) == 64, "one cache line");

/* An error or warning text waiting to be sent. */
struct dts__ev {
	int64_t ts_ms;
	uint8_t kind; /* enum dts_native_event_kind */
	uint16_t len;
	char text[DTS_NATIVE_MAX_TEXT];
};

/* A table of series: the thread's (one per generation) or the sender's batch. One writer at a time (see the top). */
struct dts__tab {
	struct dts__ent *ent; /* NULL until the first insert */
	uint32_t mask; /* slots - 1 */
	uint32_t used;
	uint32_t max_slots;
	uint32_t max_timers;
	char *arena; /* names */
	uint32_t arena_len, arena_cap;
	struct dts_sketch *sk; /* sketch pool; sk[0 .. nsk) in use, the rest cleared with their bins kept */
	uint32_t nsk, sk_cap;
	struct dts__ev *ev; /* DTS__THR_EVENTS texts, allocated on the first one */
	uint32_t nev;
};

struct dts__thr {
	_Atomic uint32_t busy; /* odd while a recording call is in progress; written by the owner only */
	_Atomic uint32_t gone; /* 1 once the thread has exited (set by the TLS destructor) */
	_Atomic uint64_t errors; /* cumulative; owner writes (relaxed), sender reads */
	_Atomic uint64_t warnings;
	_Atomic uint64_t dropped_values;
	_Atomic uint64_t dropped_events;
	pthread_t owner;
	struct dts__thr *next; /* d->threads list, under reg_lock */
	bool gone_seen; /* sender: was gone before the last switch */
	struct dts__tab tab[2];
} __attribute__((aligned(64)));

struct dts {
	/* read-only after open */
	uint64_t gen; /* unique per handle: validates thread-local cache entries */
	char user[DTS_MAX_USER + 1];
	size_t user_len;
	char process[DTS_NATIVE_MAX_PROCESS + 1];
	size_t process_len;
	uint32_t key_id;
	uint64_t instance;
	struct dts_native_mac_key mac;
	int fd; /* connected, non-blocking UDP socket */
	int statm_fd; /* /proc/self/statm, or -1 */
	int64_t open_mono_ns;

	/* written by the sender (under flush_lock), read by every recording call */
	_Alignas(64) _Atomic uint32_t active;

	_Alignas(64) pthread_mutex_t reg_lock;
	struct dts__thr *threads;
	uint32_t nthreads;
	struct dts *next_live; /* global list of live handles, under the global lock */

	/* the sender's state, under flush_lock */
	pthread_mutex_t flush_lock;
	uint64_t seq;
	struct dts__tab batch;
	struct dts__ev *events; /* DTS__SND_EVENTS */
	uint32_t nevents;
	struct dts__thr **snap; /* threads seen by the current period */
	uint32_t snap_cap;
	uint64_t dead_errors, dead_warnings, dead_dropped_values, dead_dropped_events; /* of exited threads */
	uint64_t snd_dropped_values, snd_dropped_events;
	int64_t last_cpu_us, last_wall_ns;
	struct dts_client_stats st;
	int send_err; /* first send error of the current batch */
	unsigned nout;
	struct mmsghdr msgs[DTS__MMSG];
	struct iovec iov[DTS__MMSG];
	uint8_t out[DTS__MMSG][DTS_NATIVE_MAX_DATAGRAM];
	struct dts_native_enc enc;

	/* sender thread control */
	pthread_t sender;
	bool sender_running;
	pthread_mutex_t wake_lock;
	pthread_cond_t wake;
	bool stop;
};

/* record.c */
void dts__mb_init(void);
void dts__mb_sender(void);
void dts__tab_init(struct dts__tab *t, uint32_t max_slots, uint32_t max_timers);
void dts__tab_free(struct dts__tab *t);
void dts__tab_reset(struct dts__tab *t);
struct dts__ent *dts__tab_get(struct dts__tab *t, uint64_t hash, const char *name, size_t len, uint8_t type, int *err);
uint64_t dts__name_hash(const char *name, size_t len, uint8_t type);
int dts__normalize_name(const char *in, size_t len, char *out, size_t process_len);
int dts__parse_value(const char *value, double *v, uint8_t *type, uint8_t *flags);
void dts__registry_add(struct dts *d);
void dts__registry_remove(struct dts *d);
void dts__thr_free(struct dts__thr *t);

/* sender.c */
int dts__period(struct dts *d, int64_t slot);
void *dts__sender_main(void *arg);
int64_t dts__now_ns(int clock);
void dts__proc_stats(struct dts *d, struct dts_native_stats *s);

/* client.c */
int dts__resolve(const char *server, struct sockaddr_storage *sa, socklen_t *salen);

#endif /* DTS_CLIENT_INTERNAL_H */
