/*
 * dattss_load.c - loopback UDP load generator for dattssd (statsd lines, sendmmsg bursts).
 *
 * Each of --threads threads owns a connected UDP socket (its own source port, so SO_REUSEPORT spreads the threads
 * over the daemon's workers) and a pool of prebuilt datagrams that it sends in sendmmsg() bursts of up to BURST,
 * cycling through the pool. Generating the text once keeps the sender's CPU (which shares the machine with the
 * daemon) for the system calls.
 *
 * Traffic. Names are 'proc<k%50>.<type>_<k>' for k in [0, --names); a name's type is a fixed function of k and the
 * --mix weights (the same function as bench_engine's), so one name is always one series. Thread i sends the names
 * whose position in a seeded pseudo-random permutation of [0, K) is i mod T, each exactly once per pass over its
 * pool, in that permuted order: every name is live from the first pass on (what the memory measurement needs), and
 * consecutive lines hit unrelated names (no cache locality a real fleet would not have either). Counter values are
 * always 1 without a sample rate, so a server's counter sums must equal the counter lines sent; timers are lognormal
 * around 20 ms, gauges 0..10000, set members among 10,000 users.
 *
 * Pacing (--rate, lines per second over all threads; 0 = as fast as possible): each thread owns rate/T and sends, at
 * each wake-up, the datagrams that bring it back to its schedule, then sleeps until the next datagram is due (at
 * least SLICE_MIN_NS, at most SLICE_MAX_NS): no busy spin at low rates, bursts of at most a few hundred microseconds
 * of traffic at high ones.
 *
 * Safety: traffic only to loopback. Any --host that is not 127.0.0.0/8 or ::1 ("localhost" means 127.0.0.1) is
 * refused before a socket is opened.
 *
 * Output: progress on stderr once per second, then one line on stdout:
 *   SUMMARY bench=load lines_sent=... counter_lines_sent=... timer_lines_sent=... datagrams_sent=... send_errors=...
 *           seconds=... lines_per_sec=... (then gauge_lines_sent, set_lines_sent, threads, names, target_rate,
 *           lines_per_datagram)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dts/types.h"

#define PACK_BYTES 1400 /* packed datagrams: lines joined up to this size (fits a 1500-byte MTU with headers) */
#define BURST 64 /* datagrams per sendmmsg() call */
#define MAX_LINE_GEN 128
#define MIN_POOL_LINES 200000 /* a pool of at least this many lines per thread (several passes when K is small) */
#define SLICE_MIN_NS 200000LL /* shortest sleep between two paced sends: 0.2 ms */
#define SLICE_MAX_NS 10000000LL /* longest: 10 ms, so the stop flag and low rates stay responsive */
#define ERR_BACKOFF_NS 1000000LL /* after a failed send (e.g. ECONNREFUSED: nobody listening) */

static const char *const type_word[DTS_NTYPES] = { "counter", "timer", "gauge", "set" };
static const char *const type_key[DTS_NTYPES] = { "c", "ms", "g", "s" };

struct opts {
	char host[64];
	uint16_t port;
	unsigned threads;
	double rate; /* lines per second, all threads; 0 = unpaced */
	double seconds;
	uint64_t names;
	unsigned mix[DTS_NTYPES];
	unsigned lpd; /* lines per datagram, 0 = packed */
	uint64_t seed;
	bool quiet;
};

struct dgram_meta {
	uint16_t lines;
	uint16_t type_lines[DTS_NTYPES];
};

/* Per-thread state. Counters: written by the thread (relaxed stores), read by main for progress. */
struct sender {
	_Alignas(64) _Atomic uint64_t lines;
	_Atomic uint64_t type_lines[DTS_NTYPES];
	_Atomic uint64_t dgrams;
	_Atomic uint64_t errors;
	/* thread-private */
	const struct opts *o;
	unsigned id;
	int fd;
	pthread_t thread;
	char *buf;
	struct mmsghdr *msgs; /* one per pool datagram, prebuilt */
	struct iovec *iov;
	struct dgram_meta *meta;
	size_t n; /* datagrams in the pool */
	int err; /* first fatal errno of the thread, 0 = none */
};

static _Atomic bool stop_flag;

/* ---- traffic (same generator shape as bench_engine.c) ------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	__uint128_t t;

	*s += 0xa0761d6478bd642fULL;
	t = (__uint128_t)*s * (*s ^ 0xe7037ed1a0b428dbULL);
	return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return (uint64_t)(((__uint128_t)rng_next(s) * n) >> 64);
}

static double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * 0x1p-53;
}

static double rng_normal(uint64_t *s)
{
	double u = rng_unit(s), v = rng_unit(s);

	return sqrt(-2.0 * log(u > 0 ? u : 0x1p-53)) * cos(2.0 * M_PI * v);
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static enum dts_type name_type(const struct opts *o, uint64_t k)
{
	uint64_t z = mix64(k + 0x9e3779b97f4a7c15ULL);
	unsigned total = 0, r;

	for (int t = 0; t < DTS_NTYPES; t++)
		total += o->mix[t];
	r = (unsigned)(z % total);
	for (int t = 0; t < DTS_NTYPES; t++) {
		if (r < o->mix[t])
			return (enum dts_type)t;
		r -= o->mix[t];
	}
	return DTS_COUNTER;
}

/*
 * A pseudo-random permutation of [0, K): a bijection on [0, 2^b) (odd multiply, xor-shift, add, all mod 2^b, keyed by
 * the seed) walked until the value falls below K (cycle walking; K > 2^(b-1) so under two steps on average).
 */
struct perm {
	unsigned bits;
	uint64_t mask, k, m1, m2, a;
};

static void perm_init(struct perm *p, uint64_t k, uint64_t seed)
{
	p->bits = 1;
	while ((1ULL << p->bits) < k)
		p->bits++;
	p->mask = (1ULL << p->bits) - 1;
	p->k = k;
	p->m1 = mix64(seed ^ 0x1234) | 1;
	p->m2 = mix64(seed ^ 0x5678) | 1;
	p->a = mix64(seed ^ 0x9abc);
}

static uint64_t perm_step(const struct perm *p, uint64_t x)
{
	unsigned sh = p->bits / 2 + 1;

	x = (x * p->m1) & p->mask;
	x ^= x >> sh;
	x = (x * p->m2 + p->a) & p->mask;
	x ^= x >> sh;
	return x;
}

static uint64_t perm_at(const struct perm *p, uint64_t i)
{
	uint64_t x = perm_step(p, i);

	while (x >= p->k)
		x = perm_step(p, x);
	return x;
}

static int gen_line(const struct opts *o, uint64_t k, uint64_t *rng, char *out, enum dts_type *type_out)
{
	enum dts_type t = name_type(o, k);
	int n = snprintf(out, MAX_LINE_GEN, "proc%u.%s_%" PRIu64 ":", (unsigned)(k % 50), type_word[t], k);

	switch (t) {
	case DTS_COUNTER:
		n += snprintf(out + n, MAX_LINE_GEN - n, "1|c"); /* exactly 1, no rate: sums are checkable */
		break;
	case DTS_TIMER:
		n += snprintf(out + n, MAX_LINE_GEN - n, "%.1f|ms", exp(log(20.0) + rng_normal(rng)));
		break;
	case DTS_GAUGE:
		n += snprintf(out + n, MAX_LINE_GEN - n, "%.2f|g", rng_unit(rng) * 10000.0);
		break;
	case DTS_SET:
		n += snprintf(out + n, MAX_LINE_GEN - n, "user%u|s", (unsigned)rng_below(rng, 10000));
		break;
	}
	*type_out = t;
	return n;
}

/*
 * Build thread s's pool: the names i with i mod T == s->id, in permuted order, repeated (new values each pass) until
 * at least MIN_POOL_LINES lines. Returns 0 or -ENOMEM.
 */
static int pool_build(struct sender *s, const struct opts *o)
{
	uint64_t share = o->names / o->threads + (s->id < o->names % o->threads);
	uint64_t passes = share ? (MIN_POOL_LINES + share - 1) / share : 0;
	uint64_t total = share * passes, rng = mix64(o->seed + s->id);
	size_t cap_bytes = (size_t)total * (MAX_LINE_GEN / 2) + PACK_BYTES, used = 0, cap_d;
	struct perm p;
	char line[MAX_LINE_GEN];
	enum dts_type t;
	uint64_t i = 0;
	int n;

	if (total == 0)
		return 0; /* more threads than names: this one idles */
	perm_init(&p, o->names, o->seed);
	cap_d = o->lpd ? total / o->lpd + 1 : total / 8 + 16;
	s->buf = malloc(cap_bytes);
	s->meta = malloc(cap_d * sizeof(*s->meta));
	if (!s->buf || !s->meta)
		return -ENOMEM;
	/* the i-th line of the pool: name perm(s->id + T * (i mod share)) */
#define NEXT_LINE() gen_line(o, perm_at(&p, s->id + (uint64_t)o->threads * (i % share)), &rng, line, &t)
	n = NEXT_LINE();
	while (i < total) {
		struct dgram_meta m = { 0 };
		size_t len = 0;

		while (i < total && (o->lpd ? m.lines < o->lpd : m.lines == 0 || len + 1 + (size_t)n <= PACK_BYTES)) {
			if (m.lines)
				s->buf[used + len++] = '\n';
			memcpy(s->buf + used + len, line, (size_t)n);
			len += (size_t)n;
			m.lines++;
			m.type_lines[t]++;
			if (++i < total)
				n = NEXT_LINE();
		}
		if (s->n == cap_d) {
			struct dgram_meta *nm = realloc(s->meta, 2 * cap_d * sizeof(*nm));

			if (!nm)
				return -ENOMEM;
			s->meta = nm;
			cap_d *= 2;
		}
		s->meta[s->n].lines = m.lines;
		memcpy(s->meta[s->n].type_lines, m.type_lines, sizeof(m.type_lines));
		/* offsets for now; turned into iovecs below once buf stops moving */
		s->meta[s->n].type_lines[0] = m.type_lines[0];
		s->n++;
		used += len;
		/* remember the length in a side array built below: recompute from offsets */
		if (s->n == 1 || 1) {
			static __thread size_t *lens_dummy; /* unused: see iov construction */
			(void)lens_dummy;
		}
		(void)len;
	}
#undef NEXT_LINE
	return 0;
}
