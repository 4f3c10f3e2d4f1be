/*
 * bench_wake.c - what one wake-up of a sleeping thread costs in CPU on this machine.
 *
 * dattssd's receive workers and merger sleep and wake many times a second (recv_coalesce_us, the merger's period),
 * and in a virtual machine a context switch in and out can cost more CPU than the lines a wake-up takes. This thread
 * sleeps --sleep-us with clock_nanosleep, --wakes times, and divides its own CPU time (CLOCK_THREAD_CPUTIME_ID: the
 * system call, the switch out and back, the timer) by the number of wake-ups. With --busy N, N other threads spin
 * meanwhile, so that the CPU is otherwise busy as under load (the wake-up then also preempts one of them).
 * Prints one SUMMARY line.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"

#define BUSY_MAX 64

struct opts {
	uint64_t sleep_us, wakes, busy;
	int quiet;
};

static atomic_bool stop;

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_wake [--sleep-us N] [--wakes N] [--busy N] [--quiet]\n"
		   "CPU time per wake-up of a thread that sleeps in a loop (bench/bench_wake.c).\n"
		   "  --sleep-us N  each sleep, 1..1000000 us (default 1000)\n"
		   "  --wakes N     sleeps, 10..10000000 (default 2000)\n"
		   "  --busy N      threads spinning meanwhile, 0..64 (default 0)\n"
		   "  --quiet       only the SUMMARY line\n"
		   "  --help        this text\n");
}

/* 0: run; 1: --help printed; 2: bad arguments (said on stderr). */
static int parse_args(int argc, char **argv, struct opts *o)
{
	const struct num_opt nums[] = { { "sleep-us", 1, 1000000, &o->sleep_us },
					{ "wakes", 10, 10000000, &o->wakes },
					{ "busy", 0, BUSY_MAX, &o->busy } };

	*o = (struct opts){ .sleep_us = 1000, .wakes = 2000 };
	return opt_parse_nums("bench_wake", argc, argv, nums, 3, &o->quiet, usage);
}

static void *spin(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed))
		;
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t busy[BUSY_MAX];
	struct opts o;
	struct timespec nap;
	int64_t cpu0, wall0, cpu, wall;
	unsigned started = 0;
	int rc = parse_args(argc, argv, &o);

	if (rc)
		return rc == 1 ? 0 : rc;
	for (; started < o.busy; started++) {
		if ((rc = pthread_create(&busy[started], NULL, spin, NULL)) != 0) {
			fprintf(stderr, "bench_wake: starting busy thread %u: %s\n", started, strerror(rc));
			break;
		}
	}
	nap = (struct timespec){ .tv_sec = (time_t)(o.sleep_us / 1000000),
				 .tv_nsec = (long)(o.sleep_us % 1000000) * 1000 };
	cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	wall0 = mono_ns();
	for (uint64_t i = 0; i < o.wakes; i++)
		clock_nanosleep(CLOCK_MONOTONIC, 0, &nap, NULL);
	cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	wall = mono_ns() - wall0;
	atomic_store(&stop, true);
	for (unsigned i = 0; i < started; i++)
		pthread_join(busy[i], NULL);
	if (rc)
		return 1;
	if (!o.quiet)
		printf("wakes=%llu cpu_s=%.4f wall_s=%.3f\n", (unsigned long long)o.wakes, (double)cpu / 1e9,
		       (double)wall / 1e9);
	printf("SUMMARY bench=wake sleep_us=%llu wakes=%llu busy=%llu cpu_us_per_wake=%.2f wall_us_per_wake=%.1f\n",
	       (unsigned long long)o.sleep_us, (unsigned long long)o.wakes, (unsigned long long)o.busy,
	       (double)cpu / 1e3 / (double)o.wakes, (double)wall / 1e3 / (double)o.wakes);
	return 0;
}
