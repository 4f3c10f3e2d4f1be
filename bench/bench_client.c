/*
 * bench_client.c - cost of libdattss: nanoseconds per recording call with 1 and 2 threads, and CPU used by the sender
 * for a batch of 10,000 distinct counters every 5 seconds.
 *
 * Recording. T threads (1, then 2) each make --calls calls of one kind (dts_count, then dts_timing) over --names names
 * shared by the threads (each thread has its own table, so nothing is shared on the path). Before the clock starts
 * every thread registers and records each name once, so the timed loop is the steady state: a hit in the thread's
 * table. The library's sender thread runs as in production; a 5-second switch during a run costs each thread one
 * re-insert per name. Reported: the mean over threads of the thread's CPU time / calls (CLOCK_THREAD_CPUTIME_ID, so a
 * thread preempted by other work on a busy machine is not charged for the time it did not run), and the same with
 * elapsed time (*_wall), which is what a caller sees on an idle machine.
 *
 * Sender. A fresh handle; before each of --periods periods the main thread records each of --sender-counters
 * counters once (not timed), then calls dts_flush, which runs exactly what the sender thread runs every 5 s (switch,
 * merge, encode with one HMAC per datagram, sendmmsg); the flush's CPU time is read with CLOCK_THREAD_CPUTIME_ID
 * (user + system of the calling thread). A period in which the sender thread itself fired (dts_stats shows two
 * batches) is not counted. Reported: milliseconds of CPU per period and that as a share of 5 s of one core.
 *
 * Datagrams go to a UDP socket on 127.0.0.1 that the bench opens and never reads (the kernel drops what does not fit:
 * no send errors, no cost on the bench's side).
 *
 * Output: one line on stdout,
 *   SUMMARY bench=client names=K calls=N ns_count_1t=... ns_timing_1t=... ns_count_2t=... ns_timing_2t=...
 *           ns_count_1t_wall=... ns_timing_1t_wall=... ns_count_2t_wall=... ns_timing_2t_wall=...
 *           sender_counters=M periods=P sender_cpu_ms_per_period=... sender_cpu_pct=... datagrams_per_period=...
 *           dropped=... send_errors=... failures=...
 * Exit status 1 when a recording call failed, a value was dropped or a datagram could not be sent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
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

#include "dattss.h"

struct opts {
	uint64_t calls;
	unsigned names;
	unsigned sender_counters;
	unsigned periods;
};

static int64_t now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char **make_names(unsigned n, const char *fmt)
{
	char **v = calloc(n, sizeof(*v));

	for (unsigned i = 0; v && i < n; i++)
		if (asprintf(&v[i], fmt, i) < 0)
			return NULL;
	return v;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Recording                                                                                                        */

struct run {
	struct dts *d;
	char **names;
	unsigned nnames;
	uint64_t calls;
	bool timing;
	_Atomic unsigned *ready;
	unsigned nthreads;
	double ns_per_call; /* thread CPU time */
	double wall_ns_per_call;
	uint64_t failures;
};

static void *rec_main(void *arg)
{
	struct run *r = arg;
	uint64_t fail = 0;
	unsigned j = 0;
	int64_t t0, c0;

	for (unsigned i = 0; i < r->nnames; i++)
		fail += (r->timing ? dts_timing(r->d, r->names[i], 1.0) : dts_count(r->d, r->names[i], 1.0)) != 0;
	atomic_fetch_add(r->ready, 1);
	while (atomic_load(r->ready) < r->nthreads)
		;
	t0 = now_ns(CLOCK_MONOTONIC);
	c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	if (r->timing) {
		for (uint64_t i = 0; i < r->calls; i++) {
			/* 1 .. 1000 ms over the loop: a realistic spread of sketch bins */
			fail += dts_timing(r->d, r->names[j], (double)(i & 1023) + 0.5) != 0;
			if (++j == r->nnames)
				j = 0;
		}
	} else {
		for (uint64_t i = 0; i < r->calls; i++) {
			fail += dts_count(r->d, r->names[j], 1.0) != 0;
			if (++j == r->nnames)
				j = 0;
		}
	}
	r->ns_per_call = (double)(now_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)r->calls;
	r->wall_ns_per_call = (double)(now_ns(CLOCK_MONOTONIC) - t0) / (double)r->calls;
	r->failures = fail;
	return NULL;
}

static double bench_record(struct dts *d, char **names, const struct opts *o, unsigned nthreads, bool timing,
			   uint64_t *failures, double *wall)
{
	pthread_t th[2];
	struct run r[2];
	_Atomic unsigned ready = 0;
	double sum = 0, wsum = 0;

	for (unsigned t = 0; t < nthreads; t++) {
		r[t] = (struct run){ d, names, o->names, o->calls, timing, &ready, nthreads, 0, 0, 0 };
		if (pthread_create(&th[t], NULL, rec_main, &r[t]) != 0) {
			perror("pthread_create");
			exit(1);
		}
	}
	for (unsigned t = 0; t < nthreads; t++) {
		pthread_join(th[t], NULL);
		sum += r[t].ns_per_call;
		wsum += r[t].wall_ns_per_call;
		*failures += r[t].failures;
	}
	fprintf(stderr, "bench_client: %u thread(s) %-6s %.1f ns/call CPU, %.1f ns/call elapsed\n", nthreads,
		timing ? "timing" : "count", sum / nthreads, wsum / nthreads);
	*wall = wsum / nthreads;
	return sum / nthreads;
}

/* ---------------------------------------------------------------------------------------------------------------- */

static int sink(char *addr, size_t size)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(fd, (struct sockaddr *)&sa, &sl)) {
		perror("sink socket");
		exit(1);
	}
	snprintf(addr, size, "127.0.0.1:%u", ntohs(sa.sin_port));
	return fd;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_client [--calls N] [--names K] [--sender-counters M] [--periods P]\n"
		"Nanoseconds per libdattss recording call (1 and 2 threads) and the sender's CPU per 5-second batch of M\n"
		"distinct counters; prints one SUMMARY line. Defaults: N 20000000, K 100, M 10000, P 20.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "calls", required_argument, NULL, 'c' },	     { "names", required_argument, NULL, 'n' },
		{ "sender-counters", required_argument, NULL, 's' }, { "periods", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },		     { NULL, 0, NULL, 0 },
	};
	struct opts o = { .calls = 20000000, .names = 100, .sender_counters = 10000, .periods = 20 };
	struct dts_client_stats st, st0;
	double ns[2][2], wns[2][2], cpu_ms = 0, wall_ms = 0;
	uint64_t failures = 0, datagrams = 0, dropped = 0, send_errors = 0;
	unsigned counted = 0;
	char addr[64], **names, **counters;
	struct dts *d;
	int c, fd;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'c': o.calls = strtoull(optarg, NULL, 10); break;
		case 'n': o.names = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': o.sender_counters = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'p': o.periods = (unsigned)strtoul(optarg, NULL, 10); break;
		default: usage(); return c == 'h' ? 0 : 2;
		}
	}
	if (!o.calls || !o.names || !o.sender_counters || !o.periods) {
		usage();
		return 2;
	}
	fd = sink(addr, sizeof(addr));
	names = make_names(o.names, "bench.timer_or_counter_%03u");
	counters = make_names(o.sender_counters, "service.endpoint_%05u.requests");
	if (!names || !counters) {
		perror("names");
		return 1;
	}

	/* recording */
	d = dts_open(addr, "bench", 1, "bench-secret", "bench");
	if (!d) {
		perror("dts_open");
		return 1;
	}
	for (unsigned t = 1; t <= 2; t++)
		for (int k = 0; k < 2; k++)
			ns[t - 1][k] = bench_record(d, names, &o, t, k == 1, &failures, &wns[t - 1][k]);
	dts_stats(d, &st);
	dropped += st.dropped_values + st.dropped_events;
	send_errors += st.send_errors;
	dts_close(d);

	/* sender */
	d = dts_open(addr, "bench", 1, "bench-secret", "bench");
	if (!d) {
		perror("dts_open");
		return 1;
	}
	for (unsigned p = 0; p < o.periods; p++) {
		int64_t c0, c1, w0;

		for (unsigned i = 0; i < o.sender_counters; i++)
			failures += dts_count(d, counters[i], (double)(p + 1)) != 0;
		dts_stats(d, &st0);
		w0 = now_ns(CLOCK_MONOTONIC);
		c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
		if (dts_flush(d) != 0)
			send_errors++;
		c1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
		dts_stats(d, &st);
		if (st.batches != st0.batches + 1)
			continue; /* the sender thread took part of this period */
		cpu_ms += (double)(c1 - c0) / 1e6;
		wall_ms += (double)(now_ns(CLOCK_MONOTONIC) - w0) / 1e6;
		datagrams += st.datagrams - st0.datagrams;
		counted++;
	}
	dts_stats(d, &st);
	dropped += st.dropped_values + st.dropped_events;
	send_errors += st.send_errors;
	dts_close(d);
	close(fd);
	if (!counted) {
		fprintf(stderr, "bench_client: no period measured\n");
		return 1;
	}
	fprintf(stderr, "bench_client: sender %u counters: %.3f ms CPU (%.3f ms wall) per period, %.1f datagrams\n",
		o.sender_counters, cpu_ms / counted, wall_ms / counted, (double)datagrams / counted);
	printf("SUMMARY bench=client names=%u calls=%" PRIu64 " ns_count_1t=%.1f ns_timing_1t=%.1f ns_count_2t=%.1f "
	       "ns_timing_2t=%.1f ns_count_1t_wall=%.1f ns_timing_1t_wall=%.1f ns_count_2t_wall=%.1f "
	       "ns_timing_2t_wall=%.1f sender_counters=%u periods=%u sender_cpu_ms_per_period=%.3f sender_cpu_pct=%.4f "
	       "datagrams_per_period=%.1f dropped=%" PRIu64 " send_errors=%" PRIu64 " failures=%" PRIu64 "\n",
	       o.names, o.calls, ns[0][0], ns[0][1], ns[1][0], ns[1][1], wns[0][0], wns[0][1], wns[1][0], wns[1][1],
	       o.sender_counters, counted, cpu_ms / counted,
	       100.0 * cpu_ms / counted / 5000.0, (double)datagrams / counted, dropped, send_errors, failures);
	for (unsigned i = 0; i < o.names; i++)
		free(names[i]);
	for (unsigned i = 0; i < o.sender_counters; i++)
		free(counters[i]);
	free(names);
	free(counters);
	return failures || dropped || send_errors ? 1 : 0;
}
