/*
 * bench_common.c - what the benchmark binaries share: a fixed-seed PRNG (splitmix64), the type mix and the names of
 * generated traffic, option parsing (helpers and whole getopt loops), clocks, the RSS, and the end of a run of a core
 * and its merger on one thread (timed steps, last fold, drops, teardown). Benchmarks only; not part of the product.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "dts/engine.h"

const char *const type_key[DTS_NTYPES] = { "c", "ms", "g", "s" };
static const char *const type_word[DTS_NTYPES] = { "counter", "timer", "gauge", "set" };

uint64_t rng_next(uint64_t *s)
{
	__uint128_t t;

	*s += 0xa0761d6478bd642fULL;
	t = (__uint128_t)*s * (*s ^ 0xe7037ed1a0b428dbULL);
	return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

/* Uniform in [0, n) (Lemire's multiply; the bias is below 2^-40 for the n used here). */
uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return (uint64_t)(((__uint128_t)rng_next(s) * n) >> 64);
}

double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * 0x1p-53;
}

double rng_normal(uint64_t *s)
{
	double u = rng_unit(s), v = rng_unit(s);

	return sqrt(-2.0 * log(u > 0 ? u : 0x1p-53)) * cos(2.0 * M_PI * v);
}

uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

enum dts_type mix_type(const unsigned mix[DTS_NTYPES], uint64_t k)
{
	uint64_t z = mix64(k + 0x9e3779b97f4a7c15ULL);
	unsigned total = 0, r;

	for (int t = 0; t < DTS_NTYPES; t++)
		total += mix[t];
	r = (unsigned)(z % total);
	for (int t = 0; t < DTS_NTYPES; t++) {
		if (r < mix[t])
			return (enum dts_type)t;
		r -= mix[t];
	}
	return DTS_COUNTER; /* not reached: r < total */
}

int gen_name(char *out, size_t n, uint64_t k, enum dts_type t)
{
	return snprintf(out, n, "proc%u.%s_%" PRIu64 ":", (unsigned)(k % 50), type_word[t], k);
}

int parse_u64(const char *s, uint64_t *out)
{
	char *e;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &e, 10);
	if (errno || e == s || *e || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_u64_in(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	uint64_t v;

	if (parse_u64(s, &v) != 0 || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_uint_in(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	uint64_t v;

	if (parse_u64_in(s, lo, hi, &v) != 0)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

int parse_seconds(const char *s, double *out)
{
	char *e;
	double v = strtod(s, &e);

	if (*e || e == s || !(v > 0 && v < 86400))
		return -EINVAL;
	*out = v;
	return 0;
}

int opt_u64(const char *prog, const char *name, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out)
{
	if (parse_u64_in(arg, lo, hi, out) != 0) {
		fprintf(stderr, "%s: --%s: '%s' is not a number in %llu..%llu\n", prog, name, arg, (unsigned long long)lo,
			(unsigned long long)hi);
		return -EINVAL;
	}
	return 0;
}

int opt_common(int ch, int *quiet, void (*usage)(FILE *))
{
	switch (ch) {
	case 'q':
		*quiet = 1;
		return 0;
	case 'h':
		usage(stdout);
		return 1;
	default:
		usage(stderr);
		return 2;
	}
}

int opt_no_operands(const char *prog, int argc, char **argv, void (*usage)(FILE *))
{
	if (optind >= argc)
		return 0;
	fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
	if (usage)
		usage(stderr);
	return -EINVAL;
}

const char *opt_name(const struct option *lo, int val)
{
	for (; lo->name; lo++)
		if (lo->val == val)
			return lo->name;
	return "?";
}

int opt_parse(const char *prog, int argc, char **argv, const struct option *lo,
	      int (*take)(int ch, const char *arg, void *ctx), void *ctx, int *quiet, void (*usage)(FILE *))
{
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if ((rc = take(ch, optarg, ctx)) < 0) {
			fprintf(stderr, "%s: bad value '%s' for --%s (see --help)\n", prog, optarg, opt_name(lo, ch));
			return 2;
		}
		if (rc > 0 && (rc = opt_common(ch, quiet, usage)) != 0)
			return rc;
	}
	return opt_no_operands(prog, argc, argv, NULL) ? 2 : 0;
}

#define OPT_NUM_VAL 0x100 /* getopt_long's value for nums[0] of opt_parse_nums: above every option character */

int opt_parse_nums(const char *prog, int argc, char **argv, const struct num_opt *nums, unsigned n, int *quiet,
		   void (*usage)(FILE *))
{
	struct option lo[n + 3];
	unsigned i;
	int ch, rc;

	for (i = 0; i < n; i++)
		lo[i] = (struct option){ nums[i].name, required_argument, NULL, OPT_NUM_VAL + (int)i };
	lo[n] = (struct option){ "quiet", no_argument, NULL, 'q' };
	lo[n + 1] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n + 2] = (struct option){ NULL, 0, NULL, 0 };
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (ch >= OPT_NUM_VAL && ch < OPT_NUM_VAL + (int)n) {
			const struct num_opt *x = &nums[ch - OPT_NUM_VAL];

			if (opt_u64(prog, x->name, optarg, x->lo, x->hi, x->out) != 0)
				return 2;
		} else if ((rc = opt_common(ch, quiet, usage)) != 0) {
			return rc;
		}
	}
	return opt_no_operands(prog, argc, argv, usage) ? 2 : 0;
}

int opt_traffic(int ch, const char *arg, uint64_t *names, unsigned mix[DTS_NTYPES], unsigned *lpd, uint64_t *seed)
{
	switch (ch) {
	case 'k':
		return parse_u64_in(arg, 1, 100000000, names);
	case 'm':
		return parse_mix(arg, mix);
	case 'l':
		return parse_uint_in(arg, 0, 64, lpd);
	case 'S':
		return parse_u64(arg, seed);
	default:
		return 1;
	}
}

/* "c=70,ms=20,g=10,s=0" -> weights. Returns 0 or -EINVAL. */
int parse_mix(const char *s, unsigned mix[DTS_NTYPES])
{
	char buf[128];
	unsigned total = 0;
	char *save, *tok;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	memset(mix, 0, DTS_NTYPES * sizeof(mix[0]));
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		uint64_t v;
		int t;

		if (!eq)
			return -EINVAL;
		*eq = '\0';
		for (t = 0; t < DTS_NTYPES; t++)
			if (strcmp(tok, type_key[t]) == 0)
				break;
		if (t == DTS_NTYPES || parse_u64(eq + 1, &v) != 0 || v > 1000000)
			return -EINVAL;
		mix[t] = (unsigned)v;
		total += (unsigned)v;
	}
	return total ? 0 : -EINVAL;
}

int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

int64_t real_ms(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000000;
}

double rss_mb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char l[256];
	double kb = -1;

	if (!f)
		return -1;
	while (fgets(l, sizeof(l), f))
		if (sscanf(l, "VmRSS: %lf kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -1 : kb / 1024.0;
}

void merger_step_timed(struct dts_merger *m, int64_t now_ms, int64_t *ns, uint64_t *steps)
{
	int64_t t0 = mono_ns();

	dts_merger_step(m, now_ms);
	*ns += mono_ns() - t0;
	(*steps)++;
}

void core_flush_fold(struct dts_core *c, struct dts_merger *m, int64_t *ns, uint64_t *steps)
{
	dts_core_flush(c);
	if (dts_core_tick(c, real_ms()))
		merger_step_timed(m, real_ms(), ns, steps);
}

void merger_teardown(struct dts_merger *m)
{
	dts_merger_destroy(m, real_ms());
	dts_rcu_barrier();
	dts_rcu_unregister_thread();
}

uint64_t drops_since(uint64_t *core, const uint64_t *core0, uint64_t *merger, const uint64_t *merger0,
		     uint64_t *core_sum)
{
	uint64_t sum = 0, csum = 0;

	for (int i = 0; i < DTS_DROP_COUNT; i++) {
		core[i] -= core0[i];
		merger[i] -= merger0[i];
		csum += core[i];
		sum += core[i] + merger[i];
	}
	if (core_sum)
		*core_sum = csum;
	return sum;
}

void note_dropped(const char *prog, const uint64_t *core, const uint64_t *merger)
{
	int any = 0;

	for (int i = 0; i < DTS_DROP_COUNT; i++)
		any |= core[i] || merger[i];
	if (!any)
		return;
	fprintf(stderr, "%s: note: dropped:", prog);
	for (int i = 0; i < DTS_DROP_COUNT; i++)
		if (core[i] || merger[i])
			fprintf(stderr, " %s=%" PRIu64 "/%" PRIu64, dts_drop_name((enum dts_drop)i), core[i],
				merger[i]);
	fprintf(stderr, " (core/merger)\n");
}
