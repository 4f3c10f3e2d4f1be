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

#include "bench_common.h"
#include "dts/types.h"

#define PACK_BYTES 1400 /* packed datagrams: lines joined up to this size (fits a 1500-byte MTU with headers) */
#define BURST 64 /* datagrams per sendmmsg() call */
#define MAX_LINE_GEN 128
#define MIN_POOL_LINES 200000 /* a pool of at least this many lines per thread (several passes when K is small) */
#define SLICE_MIN_NS 200000LL /* shortest sleep between two paced sends: 0.2 ms */
#define SLICE_MAX_NS 10000000LL /* longest: 10 ms, so the stop flag and low rates stay responsive */
#define ERR_BACKOFF_NS 1000000LL /* after a failed send (e.g. ECONNREFUSED: nobody listening) */

struct opts {
	char host[64];
	uint16_t port;
	unsigned threads;
	double rate; /* lines per second, all threads; 0 = unpaced */
	double seconds;
	uint64_t names;
	unsigned mix[DTS_NTYPES];
	unsigned lpd; /* lines per datagram, 0 = packed */
	unsigned passes; /* at least this many lines per name in a pool (each with its own value) */
	uint64_t seed;
	int quiet;
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
	enum dts_type t = mix_type(o->mix, k);
	int n = gen_name(out, MAX_LINE_GEN, k, t);

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
 * at least MIN_POOL_LINES lines and --passes passes, then one prebuilt mmsghdr per datagram. Returns 0 or -ENOMEM.
 */
static int pool_build(struct sender *s, const struct opts *o)
{
	uint64_t share = o->names / o->threads + (s->id < o->names % o->threads);
	uint64_t need = share ? (MIN_POOL_LINES + share - 1) / share : 0; /* passes for MIN_POOL_LINES */
	uint64_t passes = share == 0 ? 0 : need > o->passes ? need : o->passes;
	uint64_t total = share * passes, rng = mix64(o->seed + s->id), i = 0;
	/* generated lines are under 48 bytes (name <= 30, value <= 12, type 3); 64 per line plus a '\n' is ample */
	size_t cap_bytes = (size_t)total * 65 + PACK_BYTES, used = 0, cap_d;
	struct perm p;
	char line[MAX_LINE_GEN];
	enum dts_type t;
	int n;

	if (total == 0)
		return 0; /* more threads than names: this one idles */
	perm_init(&p, o->names, o->seed);
	cap_d = o->lpd ? total / o->lpd + 1 : total / 8 + 16;
	s->buf = malloc(cap_bytes); /* never reallocated: iov_base points into it */
	s->meta = malloc(cap_d * sizeof(*s->meta));
	s->iov = malloc(cap_d * sizeof(*s->iov));
	if (!s->buf || !s->meta || !s->iov)
		return -ENOMEM;
	/* the i-th line of the pool: name perm(id + T * (i mod share)) */
	n = gen_line(o, perm_at(&p, s->id + (uint64_t)o->threads * (i % share)), &rng, line, &t);
	while (i < total) {
		struct dgram_meta m = { 0 };
		size_t len = 0;

		while (i < total && (o->lpd ? m.lines < o->lpd : m.lines == 0 || len + 1 + (size_t)n <= PACK_BYTES)) {
			if (used + len + 1 + (size_t)n > cap_bytes)
				return -ENOMEM; /* defensive: cannot happen with the bound above */
			if (m.lines)
				s->buf[used + len++] = '\n';
			memcpy(s->buf + used + len, line, (size_t)n);
			len += (size_t)n;
			m.lines++;
			m.type_lines[t]++;
			if (++i < total)
				n = gen_line(o, perm_at(&p, s->id + (uint64_t)o->threads * (i % share)), &rng, line, &t);
		}
		if (s->n == cap_d) {
			struct dgram_meta *nm = realloc(s->meta, 2 * cap_d * sizeof(*nm));
			struct iovec *ni;

			if (!nm)
				return -ENOMEM;
			s->meta = nm;
			ni = realloc(s->iov, 2 * cap_d * sizeof(*ni));
			if (!ni)
				return -ENOMEM;
			s->iov = ni;
			cap_d *= 2;
		}
		s->meta[s->n] = m;
		s->iov[s->n].iov_base = s->buf + used;
		s->iov[s->n].iov_len = len;
		s->n++;
		used += len;
	}
	s->msgs = calloc(s->n, sizeof(*s->msgs));
	if (!s->msgs)
		return -ENOMEM;
	for (size_t k = 0; k < s->n; k++) {
		s->msgs[k].msg_hdr.msg_iov = &s->iov[k];
		s->msgs[k].msg_hdr.msg_iovlen = 1;
	}
	return 0;
}

static void sender_free(struct sender *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->msgs);
	free(s->iov);
	free(s->meta);
	free(s->buf);
}

/* ---- sending ------------------------------------------------------------------------------------------------------- */

static void sleep_until(int64_t t_ns)
{
	struct timespec ts = { .tv_sec = t_ns / 1000000000, .tv_nsec = t_ns % 1000000000 };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

#define RELAXED_ADD(field, n) atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + \
						   (n), memory_order_relaxed)

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	const struct opts *o = s->o;
	const double rate = o->rate / o->threads; /* lines per second for this thread */
	const int64_t t0 = mono_ns();
	uint64_t lines = 0, pool_lines = 0;
	size_t i = 0;
	double lines_per_dgram;

	if (s->n == 0)
		return NULL;
	for (size_t k = 0; k < s->n; k++)
		pool_lines += s->meta[k].lines;
	lines_per_dgram = (double)pool_lines / (double)s->n;
	while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
		int64_t now = mono_ns();
		size_t want = BURST;
		int r;

		if (rate > 0) {
			double due = rate * (double)(now - t0) / 1e9 - (double)lines; /* lines behind schedule */

			if (due < lines_per_dgram) {
				/* on schedule: sleep until the next datagram is due, within [SLICE_MIN, SLICE_MAX] */
				int64_t wait = (int64_t)((lines_per_dgram - due) / rate * 1e9);

				if (wait < SLICE_MIN_NS)
					wait = SLICE_MIN_NS;
				if (wait > SLICE_MAX_NS)
					wait = SLICE_MAX_NS;
				sleep_until(now + wait);
				continue;
			}
			want = (size_t)(due / lines_per_dgram);
			if (want > BURST)
				want = BURST;
		}
		if (want > s->n - i)
			want = s->n - i;
		r = sendmmsg(s->fd, &s->msgs[i], (unsigned)want, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			RELAXED_ADD(s->errors, 1);
			if (errno != ECONNREFUSED && errno != ENOBUFS && errno != EAGAIN) {
				s->err = errno;
				break;
			}
			sleep_until(mono_ns() + ERR_BACKOFF_NS);
			continue;
		}
		/* Count exactly the datagrams the kernel took (r may be less than want). */
		uint64_t tl[DTS_NTYPES] = { 0 }, nl = 0;

		for (int k = 0; k < r; k++) {
			const struct dgram_meta *m = &s->meta[i + (size_t)k];

			nl += m->lines;
			for (int t = 0; t < DTS_NTYPES; t++)
				tl[t] += m->type_lines[t];
		}
		lines += nl;
		RELAXED_ADD(s->lines, nl);
		for (int t = 0; t < DTS_NTYPES; t++)
			RELAXED_ADD(s->type_lines[t], tl[t]);
		RELAXED_ADD(s->dgrams, (uint64_t)r);
		i += (size_t)r;
		if (i == s->n)
			i = 0;
	}
	return NULL;
}

/* ---- options ------------------------------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: dattss-load [options]\n"
		"Send statsd lines over loopback UDP (sendmmsg) to a dattssd; prints one SUMMARY line.\n"
		"  --host ADDR             127.0.0.0/8 or ::1 only (\"localhost\" = 127.0.0.1) (default 127.0.0.1)\n"
		"  --port PORT             statsd UDP port (default 8125)\n"
		"  --threads T             sending threads, each with its own socket (default 1)\n"
		"  --rate LINES_PER_SEC    total over all threads; 0 = as fast as possible (default 0)\n"
		"  --seconds S             duration (default 10)\n"
		"  --names K               distinct names (default 1000)\n"
		"  --mix c=70,ms=20,g=10   type weights: c counters, ms timers, g gauges, s sets (default c=70,ms=20,g=10)\n"
		"  --lines-per-datagram N  lines per datagram; 0 = pack lines up to %d bytes (default 0)\n"
		"  --passes N              each name at least N times in the pool, each time with a new value: timers\n"
		"                          with N different values (default 1; the pool holds at least %d lines\n"
		"                          per thread, so small K repeat more anyway)\n"
		"  --seed N                permutation and value seed (default 1)\n"
		"  --quiet                 no progress on stderr\n"
		"  --help\n"
		"Counter lines are always '<name>:1|c', so a server's counter sums must equal counter_lines_sent.\n",
		PACK_BYTES, MIN_POOL_LINES);
}

/* Loopback only: 127.0.0.0/8 or ::1. Fills the address. Returns 0 or -EINVAL. */
static int loopback_addr(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
			return -EINVAL;
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
			return -EINVAL;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*len = sizeof(*a6);
		return 0;
	}
	return -EINVAL;
}

/* dattss-load's own options, for opt_parse; the traffic options go to opt_traffic. Returns 0 when arg was taken,
 * -EINVAL when it is not a valid value, 1 when ch is none of them. */
static int take_opt(int ch, const char *arg, void *ctx)
{
	struct opts *o = ctx;
	uint64_t v;
	char *e;

	switch (ch) {
	case 'H':
		if (strlen(arg) >= sizeof(o->host))
			return -EINVAL;
		strcpy(o->host, arg);
		return 0;
	case 'P':
		if (parse_u64_in(arg, 1, 65535, &v))
			return -EINVAL;
		o->port = (uint16_t)v;
		return 0;
	case 'T':
		return parse_uint_in(arg, 1, 64, &o->threads);
	case 'r':
		o->rate = strtod(arg, &e);
		return *e || e == arg || !(o->rate >= 0 && o->rate < 1e10) ? -EINVAL : 0;
	case 's':
		return parse_seconds(arg, &o->seconds);
	case 'p':
		return parse_uint_in(arg, 1, 1000, &o->passes);
	default:
		return opt_traffic(ch, arg, &o->names, o->mix, &o->lpd, &o->seed);
	}
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'P' },
		{ "threads", required_argument, NULL, 'T' },
		{ "rate", required_argument, NULL, 'r' },
		{ "seconds", required_argument, NULL, 's' },
		{ "names", required_argument, NULL, 'k' },
		{ "mix", required_argument, NULL, 'm' },
		{ "lines-per-datagram", required_argument, NULL, 'l' },
		{ "passes", required_argument, NULL, 'p' },
		{ "seed", required_argument, NULL, 'S' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	memset(o, 0, sizeof(*o));
	strcpy(o->host, "127.0.0.1");
	o->port = 8125;
	o->threads = 1;
	o->rate = 0;
	o->seconds = 10;
	o->names = 1000;
	parse_mix("c=70,ms=20,g=10", o->mix);
	o->lpd = 0;
	o->passes = 1;
	o->seed = 1;
	return opt_parse("dattss-load", argc, argv, lo, take_opt, o, &o->quiet, usage);
}

/* ---- main ---------------------------------------------------------------------------------------------------------- */

static void totals(struct sender *s, unsigned n, uint64_t *lines, uint64_t tl[DTS_NTYPES], uint64_t *dgrams,
		   uint64_t *errors)
{
	*lines = *dgrams = *errors = 0;
	for (int t = 0; t < DTS_NTYPES; t++)
		tl[t] = 0;
	for (unsigned i = 0; i < n; i++) {
		*lines += atomic_load_explicit(&s[i].lines, memory_order_relaxed);
		for (int t = 0; t < DTS_NTYPES; t++)
			tl[t] += atomic_load_explicit(&s[i].type_lines[t], memory_order_relaxed);
		*dgrams += atomic_load_explicit(&s[i].dgrams, memory_order_relaxed);
		*errors += atomic_load_explicit(&s[i].errors, memory_order_relaxed);
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	struct sockaddr_storage ss;
	socklen_t slen;
	struct sender *s;
	uint64_t lines, tl[DTS_NTYPES], dgrams, errors, last = 0;
	int64_t t_start, t_end, next;
	unsigned started = 0;
	int rc = parse_opts(argc, argv, &o);

	if (rc)
		return rc == 1 ? 0 : 2;
	if (loopback_addr(o.host, o.port, &ss, &slen) != 0) {
		fprintf(stderr,
			"dattss-load: refusing --host '%s': this load generator only sends to loopback "
			"(127.0.0.0/8, ::1 or localhost), never to another machine\n",
			o.host);
		return 2;
	}
	s = aligned_alloc(64, ((o.threads * sizeof(*s)) + 63) & ~(size_t)63);
	if (!s) {
		fprintf(stderr, "dattss-load: out of memory\n");
		return 1;
	}
	memset(s, 0, o.threads * sizeof(*s));
	for (unsigned i = 0; i < o.threads; i++)
		s[i].fd = -1; /* so that cleanup closes only what was opened */
	for (unsigned i = 0; i < o.threads; i++) {
		int sndbuf = 4 << 20;

		s[i].o = &o;
		s[i].id = i;
		s[i].fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (s[i].fd < 0 || connect(s[i].fd, (struct sockaddr *)&ss, slen) != 0) {
			fprintf(stderr, "dattss-load: socket to %s port %u: %s\n", o.host, o.port, strerror(errno));
			rc = 1;
			goto out_free_senders;
		}
		setsockopt(s[i].fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		if (pool_build(&s[i], &o) != 0) {
			fprintf(stderr, "dattss-load: cannot allocate the datagram pool of thread %u\n", i);
			rc = 1;
			goto out_free_senders;
		}
	}
	if (!o.quiet) {
		size_t nd = 0;
		uint64_t pl = 0;

		for (unsigned i = 0; i < o.threads; i++) {
			nd += s[i].n;
			for (size_t k = 0; k < s[i].n; k++)
				pl += s[i].meta[k].lines;
		}
		fprintf(stderr, "dattss-load: %u thread(s), pools %" PRIu64 " lines in %zu datagrams (%.1f lines each)\n",
			o.threads, pl, nd, nd ? (double)pl / (double)nd : 0.0);
	}

	t_start = mono_ns();
	t_end = t_start + (int64_t)(o.seconds * 1e9);
	for (; started < o.threads; started++) {
		if (pthread_create(&s[started].thread, NULL, sender_main, &s[started]) != 0) {
			fprintf(stderr, "dattss-load: cannot start thread %u\n", started);
			atomic_store(&stop_flag, true);
			rc = 1;
			break;
		}
	}
	for (next = t_start + 1000000000; rc == 0; next += 1000000000) {
		sleep_until(next < t_end ? next : t_end);
		if (next >= t_end)
			break;
		if (!o.quiet) {
			totals(s, o.threads, &lines, tl, &dgrams, &errors);
			fprintf(stderr, "dattss-load: t=%.0fs lines=%" PRIu64 " rate=%.3fM/s errors=%" PRIu64 "\n",
				(double)(next - t_start) / 1e9, lines, (double)(lines - last) / 1e6, errors);
			last = lines;
		}
	}
	atomic_store(&stop_flag, true);
	for (unsigned i = 0; i < started; i++)
		pthread_join(s[i].thread, NULL);
	t_end = mono_ns();
	for (unsigned i = 0; i < o.threads; i++)
		if (s[i].err) {
			fprintf(stderr, "dattss-load: thread %u stopped: sendmmsg: %s\n", i, strerror(s[i].err));
			rc = 1;
		}

	totals(s, o.threads, &lines, tl, &dgrams, &errors);
	printf("SUMMARY bench=load lines_sent=%" PRIu64 " counter_lines_sent=%" PRIu64 " timer_lines_sent=%" PRIu64
	       " datagrams_sent=%" PRIu64 " send_errors=%" PRIu64 " seconds=%.3f lines_per_sec=%.0f gauge_lines_sent=%" PRIu64
	       " set_lines_sent=%" PRIu64 " threads=%u names=%" PRIu64 " target_rate=%.0f lines_per_datagram=%u\n",
	       lines, tl[DTS_COUNTER], tl[DTS_TIMER], dgrams, errors, (double)(t_end - t_start) / 1e9,
	       (double)lines / ((double)(t_end - t_start) / 1e9), tl[DTS_GAUGE], tl[DTS_SET], o.threads, o.names, o.rate,
	       o.lpd);
	fflush(stdout);

out_free_senders:
	for (unsigned i = 0; i < o.threads; i++)
		sender_free(&s[i]);
	free(s);
	return rc;
}
