/*
 * record.c - the recording path of libdattss: thread registration, per-thread tables, and the recording calls.
 *
 * A recording call (dts_count and friends) costs: strnlen and a hash of the name, one thread-local load (the handle's
 * entry in a 4-slot cache), a store of the thread's busy counter, a load of the handle's active index, a probe of the
 * thread's open-addressing table (64-byte entries, linear probing, at most 3/4 full) with one memcmp of the name, the
 * aggregate update (and a sketch add for timers), and a release store of busy. No lock, no atomic read-modify-write,
 * no system call. The first call of a thread (registration), the first call with a name in a period (insert, name
 * check) and a table doubling are the slow path: they may allocate. The synchronisation with the sender is described
 * at the top of client_internal.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/membarrier.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"
#include "dts/decode.h"
#include "dts/hash.h"
#include "normalize.h"

/* ---------------------------------------------------------------------------------------------------------------- */
/* Process-wide memory barrier for the switch                                                                       */

enum { DTS__MB_PRIVATE = 0, DTS__MB_GLOBAL = 1, DTS__MB_FENCE = 2 };
static int mb_mode = DTS__MB_FENCE;
static pthread_once_t mb_once = PTHREAD_ONCE_INIT;

static void mb_setup(void)
{
	const char *env = getenv("DATTSS_MEMBARRIER"); /* "0": use the fallback (tests of it, broken kernels) */
	long mask = env && strcmp(env, "0") == 0 ? -1 : syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	if (mask > 0 && (mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
	    syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
		mb_mode = DTS__MB_PRIVATE;
	else if (mask > 0 && (mask & MEMBARRIER_CMD_GLOBAL))
		mb_mode = DTS__MB_GLOBAL;
	else
		mb_mode = DTS__MB_FENCE;
}

/* Once per process, before the first handle records anything (dts_open). */
void dts__mb_init(void)
{
	pthread_once(&mb_once, mb_setup);
}

/* The sender's side, after its seq_cst store of active: a full barrier in every running thread of the process (the
 * system call is a full barrier for the caller too). In DTS__MB_FENCE mode nothing: the recording calls' seq_cst
 * store of busy and the sender's seq_cst load of it are then ordered by the single total order of seq_cst operations
 * (a plain Dekker), at the price of an xchg per recording call. */
void dts__mb_sender(void)
{
	if (mb_mode == DTS__MB_PRIVATE)
		syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
	else if (mb_mode == DTS__MB_GLOBAL)
		syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Tables                                                                                                           */

void dts__tab_init(struct dts__tab *t, uint32_t max_slots, uint32_t max_timers)
{
	memset(t, 0, sizeof(*t));
	t->max_slots = max_slots;
	t->max_timers = max_timers;
}

void dts__tab_free(struct dts__tab *t)
{
	for (uint32_t i = 0; i < t->sk_cap; i++)
		dts_sketch_free(&t->sk[i]);
	free(t->sk);
	free(t->ent);
	free(t->arena);
	free(t->ev);
	dts__tab_init(t, t->max_slots, t->max_timers);
}

/* Empty the table, keeping its allocations (slots, arena, sketch bins) for the next period. */
void dts__tab_reset(struct dts__tab *t)
{
	if (t->used && t->ent)
		memset(t->ent, 0, ((size_t)t->mask + 1) * sizeof(*t->ent));
	for (uint32_t i = 0; i < t->nsk; i++)
		dts_sketch_clear(&t->sk[i]);
	t->used = 0;
	t->nsk = 0;
	t->arena_len = 0;
	t->nev = 0;
}

uint64_t dts__name_hash(const char *name, size_t len, uint8_t type)
{
	uint64_t h = dts_hash64(name, len, DTS_HASH_SEED + type);

	return h ? h : 1;
}

/* Double the slots (or allocate the first ones). Returns 0 or -ENOMEM (table unchanged). */
static int tab_grow(struct dts__tab *t)
{
	uint32_t nslots = t->ent ? (t->mask + 1) * 2 : DTS__THR_MIN_SLOTS;
	struct dts__ent *ne;

	if (nslots > t->max_slots)
		nslots = t->max_slots;
	ne = calloc(nslots, sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	if (t->ent) {
		for (uint32_t i = 0; i <= t->mask; i++) {
			const struct dts__ent *e = &t->ent[i];
			uint32_t j;

			if (!e->hash)
				continue;
			for (j = (uint32_t)e->hash & (nslots - 1); ne[j].hash; j = (j + 1) & (nslots - 1))
				;
			ne[j] = *e;
		}
		free(t->ent);
	}
	t->ent = ne;
	t->mask = nslots - 1;
	return 0;
}

/* Append name to the arena. Returns 0 or -ENOMEM. */
static int arena_put(struct dts__tab *t, const char *name, size_t len, uint32_t *off)
{
	if (t->arena_cap - t->arena_len < len) {
		size_t cap = t->arena_cap ? t->arena_cap : 1024;
		char *p;

		while (cap - t->arena_len < len)
			cap *= 2;
		p = realloc(t->arena, cap);
		if (!p)
			return -ENOMEM;
		t->arena = p;
		t->arena_cap = (uint32_t)cap;
	}
	memcpy(t->arena + t->arena_len, name, len);
	*off = t->arena_len;
	t->arena_len += (uint32_t)len;
	return 0;
}

/* A cleared sketch from the pool. Returns its index, or -ENOSPC / -ENOMEM. */
static int sketch_take(struct dts__tab *t)
{
	if (t->nsk == t->sk_cap) {
		uint32_t cap = t->sk_cap ? t->sk_cap * 2 : 16;
		struct dts_sketch *p;

		if (t->sk_cap >= t->max_timers)
			return -ENOSPC;
		if (cap > t->max_timers)
			cap = t->max_timers;
		p = realloc(t->sk, (size_t)cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		for (uint32_t i = t->sk_cap; i < cap; i++)
			dts_sketch_init(&p[i]);
		t->sk = p;
		t->sk_cap = cap;
	}
	return (int)t->nsk++;
}

/*
 * The entry of (name, type), inserted if absent. NULL with *err = -ENOSPC (table or timer pool full) or -ENOMEM.
 * The fast path is the first loop; everything after it is the insert.
 */
struct dts__ent *dts__tab_get(struct dts__tab *t, uint64_t hash, const char *name, size_t len, uint8_t type, int *err)
{
	struct dts__ent *e;
	uint32_t i, off;
	int r;

	if (likely(t->ent != NULL)) {
		for (i = (uint32_t)hash & t->mask;; i = (i + 1) & t->mask) {
			e = &t->ent[i];
			if (e->hash == hash && e->type == type && e->name_len == len &&
			    memcmp(t->arena + e->name_off, name, len) == 0)
				return e;
			if (!e->hash)
				break;
		}
	}
	/* insert */
	if (!t->ent || (uint64_t)(t->used + 1) * 4 > (uint64_t)(t->mask + 1) * 3) {
		if (t->ent && t->mask + 1 >= t->max_slots) {
			*err = -ENOSPC;
			return NULL;
		}
		r = tab_grow(t);
		if (r) {
			*err = r;
			return NULL;
		}
		for (i = (uint32_t)hash & t->mask; t->ent[i].hash; i = (i + 1) & t->mask)
			;
		e = &t->ent[i];
	}
	memset(e, 0, sizeof(*e));
	if (type == DTS_TIMER) {
		r = sketch_take(t);
		if (r < 0) {
			*err = r;
			return NULL;
		}
		e->sk = (uint16_t)r;
	}
	r = arena_put(t, name, len, &off);
	if (r) {
		if (type == DTS_TIMER)
			t->nsk--;
		*err = r;
		return NULL;
	}
	e->hash = hash;
	e->name_off = off;
	e->name_len = (uint8_t)len;
	e->type = type;
	dts_agg_init(&e->agg);
	t->used++;
	return e;
}

/*
 * Normalise a counter name as the statsd decoder does (docs/protocols.md 2.2) into out (at least DTS_MAX_NAME bytes).
 * Returns its length, or -EINVAL when empty or when process + '.' + name would exceed DTS_MAX_NAME.
 */
int dts__normalize_name(const char *in, size_t len, char *out, size_t process_len)
{
	size_t cap = DTS_MAX_NAME - 1 - process_len;
	size_t n = dts__normalize(in, len, out, cap, false);

	return (n == 0 || n > cap) ? -EINVAL : (int)n;
}

/* "153ms", "1c", "2.5g", optionally followed by '!'. Returns 0 or -EINVAL. */
int dts__parse_value(const char *value, double *v, uint8_t *type, uint8_t *flags)
{
	size_t n;

	if (!value)
		return -EINVAL;
	n = strnlen(value, 64);
	*flags = 0;
	if (n && value[n - 1] == '!') {
		*flags = DTS_NATIVE_PF_EMPHASIS;
		n--;
	}
	if (n >= 2 && value[n - 2] == 'm' && value[n - 1] == 's') {
		*type = DTS_TIMER;
		n -= 2;
	} else if (n >= 1 && value[n - 1] == 'c') {
		*type = DTS_COUNTER;
		n--;
	} else if (n >= 1 && value[n - 1] == 'g') {
		*type = DTS_GAUGE;
		n--;
	} else {
		return -EINVAL;
	}
	return dts_parse_double(value, n, v) == 0 ? 0 : -EINVAL;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Threads                                                                                                          */

struct tls_ent {
	struct dts *d;
	uint64_t gen;
	struct dts__thr *t;
};

/* initial-exec: a %fs-relative load, no __tls_get_addr call (the library is linked, not dlopen'ed, in practice; glibc
 * keeps static TLS room for small dlopen'ed users too). */
static __thread struct tls_ent tls[DTS__TLS_SLOTS] __attribute__((tls_model("initial-exec")));

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* the live-handle list; thread exit vs dts_close */
static struct dts *g_live;
static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

void dts__registry_add(struct dts *d)
{
	pthread_mutex_lock(&g_lock);
	d->next_live = g_live;
	g_live = d;
	pthread_mutex_unlock(&g_lock);
}

void dts__registry_remove(struct dts *d)
{
	pthread_mutex_lock(&g_lock);
	for (struct dts **p = &g_live; *p; p = &(*p)->next_live) {
		if (*p == d) {
			*p = d->next_live;
			break;
		}
	}
	pthread_mutex_unlock(&g_lock);
}

/* Thread exit: mark this thread's buffers of live handles as gone, so their sender harvests and frees them. A handle
 * already closed has freed them: the live list (under g_lock, which dts_close takes before freeing) tells which. */
static void thread_exit(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_lock);
	for (int i = 0; i < DTS__TLS_SLOTS; i++) {
		if (!tls[i].d)
			continue;
		for (struct dts *d = g_live; d; d = d->next_live) {
			if (d == tls[i].d && d->gen == tls[i].gen) {
				atomic_store_explicit(&tls[i].t->gone, 1, memory_order_release);
				break;
			}
		}
		tls[i].d = NULL;
	}
	pthread_mutex_unlock(&g_lock);
}

static void key_setup(void)
{
	if (pthread_key_create(&g_key, thread_exit) != 0)
		abort(); /* only fails when the process has used all its keys: nothing to record into */
}

void dts__thr_free(struct dts__thr *t)
{
	dts__tab_free(&t->tab[0]);
	dts__tab_free(&t->tab[1]);
	free(t);
}

/* The slow path of thr_get: another cache slot, the handle's list (a thread evicted from the cache), or register. */
static __attribute__((noinline)) struct dts__thr *thr_get_slow(struct dts *d)
{
	pthread_t self = pthread_self();
	struct dts__thr *t = NULL;
	struct tls_ent hit;
	int i;

	for (i = 1; i < DTS__TLS_SLOTS; i++)
		if (tls[i].d == d && tls[i].gen == d->gen)
			break;
	if (i < DTS__TLS_SLOTS) {
		hit = tls[i];
	} else {
		pthread_once(&g_key_once, key_setup);
		pthread_mutex_lock(&d->reg_lock);
		for (t = d->threads; t; t = t->next)
			if (pthread_equal(t->owner, self) && !atomic_load_explicit(&t->gone, memory_order_relaxed))
				break;
		if (!t && posix_memalign((void **)&t, 64, sizeof(*t)) == 0) {
			memset(t, 0, sizeof(*t));
			t->owner = self;
			dts__tab_init(&t->tab[0], DTS__THR_MAX_SLOTS, DTS__THR_MAX_TIMERS);
			dts__tab_init(&t->tab[1], DTS__THR_MAX_SLOTS, DTS__THR_MAX_TIMERS);
			t->next = d->threads;
			d->threads = t;
			d->nthreads++;
		}
		pthread_mutex_unlock(&d->reg_lock);
		if (!t)
			return NULL;
		pthread_setspecific(g_key, (void *)1); /* so that thread_exit runs */
		hit = (struct tls_ent){ .d = d, .gen = d->gen, .t = t };
		i = DTS__TLS_SLOTS - 1; /* evict the least recently promoted */
	}
	memmove(&tls[1], &tls[0], (size_t)i * sizeof(tls[0]));
	tls[0] = hit;
	return hit.t;
}

static inline struct dts__thr *thr_get(struct dts *d)
{
	if (likely(tls[0].d == d && tls[0].gen == d->gen))
		return tls[0].t;
	return thr_get_slow(d);
}

static inline void counter_inc(_Atomic uint64_t *c)
{
	/* single writer: a plain load and store, no locked instruction */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* Enter / leave a recording call: see the top of client_internal.h. */
static inline uint32_t rec_enter(struct dts__thr *t)
{
	uint32_t b = atomic_load_explicit(&t->busy, memory_order_relaxed);

	if (unlikely(mb_mode == DTS__MB_FENCE)) {
		atomic_store_explicit(&t->busy, b + 1, memory_order_seq_cst);
	} else {
		atomic_store_explicit(&t->busy, b + 1, memory_order_relaxed);
		atomic_signal_fence(memory_order_seq_cst); /* the compiler keeps the store before the load of active */
	}
	return b;
}

static inline void rec_leave(struct dts__thr *t, uint32_t b)
{
	atomic_store_explicit(&t->busy, b + 2, memory_order_release);
}

static inline struct dts__tab *rec_tab(struct dts *d, struct dts__thr *t)
{
	/* seq_cst for the DTS__MB_FENCE Dekker (a plain load on x86, like acquire); acquire for the sender's resets */
	return &t->tab[atomic_load_explicit(&d->active, memory_order_seq_cst)];
}

/* Check a new name on insert (not on every call): normalisable, within bounds. */
static bool name_ok(const struct dts *d, const char *name, size_t len)
{
	char out[DTS_MAX_NAME];

	return dts__normalize_name(name, len, out, d->process_len) > 0;
}

static int record(struct dts *d, const char *name, uint8_t type, double v, uint8_t flags)
{
	struct dts__thr *t;
	struct dts__tab *tab;
	struct dts__ent *e;
	uint64_t h;
	uint32_t b;
	size_t n;
	int err = 0;

	if (unlikely(!d))
		return -EINVAL;
	t = thr_get(d);
	if (unlikely(!t))
		return -ENOMEM;
	n = name ? strnlen(name, DTS__RAW_NAME_MAX + 1) : 0;
	if (unlikely(n == 0 || n > DTS__RAW_NAME_MAX || !isfinite(v))) {
		counter_inc(&t->dropped_values);
		return -EINVAL;
	}
	h = dts__name_hash(name, n, type);
	b = rec_enter(t);
	tab = rec_tab(d, t);
	e = dts__tab_get(tab, h, name, n, type, &err);
	if (likely(e != NULL)) {
		if (unlikely(e->agg.count == 0.0) && !name_ok(d, name, n)) {
			/* a new entry whose name cannot be sent: leave it empty (the sender skips empty entries) */
			err = -EINVAL;
		} else if (type == DTS_TIMER && (err = dts_sketch_add(&tab->sk[e->sk], v, 1.0)) != 0) {
			/* out of memory for bins: the aggregate stays consistent with the sketch */
		} else {
			dts_agg_add(&e->agg, v, 1.0);
			e->flags |= flags;
		}
	}
	rec_leave(t, b);
	if (unlikely(err))
		counter_inc(&t->dropped_values);
	return err;
}

int dts_count(struct dts *d, const char *name, double v)
{
	return record(d, name, DTS_COUNTER, v, 0);
}

int dts_timing(struct dts *d, const char *name, double ms)
{
	return record(d, name, DTS_TIMER, ms, 0);
}

int dts_gauge(struct dts *d, const char *name, double v)
{
	return record(d, name, DTS_GAUGE, v, 0);
}

int dts_agg(struct dts *d, const char *name, const char *value)
{
	uint8_t type, flags;
	double v;

	if (dts__parse_value(value, &v, &type, &flags)) {
		struct dts__thr *t = d ? thr_get(d) : NULL;

		if (t)
			counter_inc(&t->dropped_values);
		return -EINVAL;
	}
	return record(d, name, type, v, flags);
}

/* Copy text as valid UTF-8 of at most DTS_NATIVE_MAX_TEXT bytes: invalid bytes become '?', a character that would
 * not fit whole is left out. Returns the length. */
static uint16_t text_copy(char *out, const char *in)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0, i = 0;

	while (s[i] && o < DTS_NATIVE_MAX_TEXT) {
		unsigned char c = s[i];
		size_t k = c < 0x80 ? 0 : (c >= 0xc2 && c <= 0xdf) ? 1 : (c >= 0xe0 && c <= 0xef) ? 2 : (c >= 0xf0 && c <= 0xf4) ? 3 : 9;
		uint32_t cp = k == 0 ? c : k == 1 ? (c & 0x1fu) : k == 2 ? (c & 0x0fu) : (c & 0x07u);
		bool ok = k != 9;

		for (size_t j = 1; ok && j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80) /* also stops at the NUL */
				ok = false;
			else
				cp = cp << 6 | (s[i + j] & 0x3fu);
		}
		if (ok && k > 0) {
			static const uint32_t min[4] = { 0, 0x80, 0x800, 0x10000 };

			ok = cp >= min[k] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
		}
		if (!ok) {
			out[o++] = '?';
			i++;
			continue;
		}
		if (o + k + 1 > DTS_NATIVE_MAX_TEXT)
			break;
		memcpy(out + o, s + i, k + 1);
		o += k + 1;
		i += k + 1;
	}
	return (uint16_t)o;
}

static int event(struct dts *d, const char *text, uint8_t kind)
{
	struct dts__thr *t;
	struct dts__tab *tab;
	struct timespec ts;
	uint32_t b;
	int err = 0;

	if (!d || !text)
		return -EINVAL;
	t = thr_get(d);
	if (!t)
		return -ENOMEM;
	counter_inc(kind == DTS_NATIVE_ERROR ? &t->errors : &t->warnings);
	clock_gettime(CLOCK_REALTIME, &ts);
	b = rec_enter(t);
	tab = rec_tab(d, t);
	if (!tab->ev)
		tab->ev = malloc(DTS__THR_EVENTS * sizeof(*tab->ev));
	if (!tab->ev) {
		err = -ENOMEM;
	} else if (tab->nev >= DTS__THR_EVENTS) {
		err = -ENOSPC;
	} else {
		struct dts__ev *ev = &tab->ev[tab->nev++];

		ev->kind = kind;
		ev->ts_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		ev->len = text_copy(ev->text, text);
	}
	rec_leave(t, b);
	if (err)
		counter_inc(&t->dropped_events);
	return err;
}

int dts_error(struct dts *d, const char *text)
{
	return event(d, text, DTS_NATIVE_ERROR);
}

int dts_warning(struct dts *d, const char *text)
{
	return event(d, text, DTS_NATIVE_WARNING);
}
