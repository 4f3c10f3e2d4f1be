/*
 * bench_common.h - shared helpers of the benchmark binaries (see bench_common.c).
 */
#ifndef DTS_BENCH_COMMON_H
#define DTS_BENCH_COMMON_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "dts/types.h"

struct dts_core;
struct dts_merger;

/* Short type keys of --mix: "c", "ms", "g", "s" (indexed by enum dts_type). */
extern const char *const type_key[DTS_NTYPES];

uint64_t rng_next(uint64_t *s);
/* Uniform in [0, n) (Lemire's multiply; the bias is below 2^-40 for the n used here). */
uint64_t rng_below(uint64_t *s, uint64_t n);
double rng_unit(uint64_t *s);
double rng_normal(uint64_t *s);
/* splitmix64's finaliser: a bijection of 64-bit values that spreads every input bit over the output. */
uint64_t mix64(uint64_t z);
/* The type of name k under the weights mix (at least one non-zero): a fixed function of k and mix, so that one name
 * is always one series (bench_engine's and dattss-load's traffic). */
enum dts_type mix_type(const unsigned mix[DTS_NTYPES], uint64_t k);
/* The start of the statsd line of name k of type t, 'proc<k%50>.<type>_<k>:' (type: counter, timer, gauge or set),
 * into out (n bytes). Returns what snprintf returns. */
int gen_name(char *out, size_t n, uint64_t k, enum dts_type t);
int parse_u64(const char *s, uint64_t *out);
/* s as a number in [lo, hi] into *out. Returns 0, or -EINVAL (nothing said, *out unchanged). */
int parse_u64_in(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
/* s as a number in [lo, hi] into *out (an unsigned). Returns 0, or -EINVAL (nothing said, *out unchanged). */
int parse_uint_in(const char *s, unsigned lo, unsigned hi, unsigned *out);
/* s as a duration in seconds, > 0 and < 86400, into *out. Returns 0, or -EINVAL (nothing said). */
int parse_seconds(const char *s, double *out);
/* The value of option --name as a number in [lo, hi] into *out; otherwise says so on stderr, naming prog, the option
 * and the range, and returns -EINVAL (*out unchanged). */
int opt_u64(const char *prog, const char *name, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out);
/* The arms a tool's getopt_long switch ends with (its default: case): --quiet ('q') sets *quiet and returns 0,
 * --help ('h') prints usage on stdout and returns 1, anything else prints it on stderr and returns 2 - what a
 * tool's parse_args returns for each. */
int opt_common(int ch, int *quiet, void (*usage)(FILE *));
/* After getopt_long: 0 when no argument is left, else says which one on stderr, prints usage (unless usage is NULL)
 * and returns -EINVAL. */
int opt_no_operands(const char *prog, int argc, char **argv, void (*usage)(FILE *));
/* The long name of the option whose getopt_long value is val in the table lo, or "?" when none has it. */
const char *opt_name(const struct option *lo, int val);
/*
 * The getopt_long loop over the table lo of a tool whose bad values are all said alike (bench_engine, dattss-load):
 * every option goes to take(ch, arg, ctx) first, which returns 0 when it took arg, -EINVAL when arg is not a valid
 * value and 1 when ch is not one of its options; those go to opt_common. A bad value is said on stderr as
 * "prog: bad value 'arg' for --name (see --help)", an operand left over as opt_no_operands does (without usage).
 * Returns 0 to run, 1 when --help was printed, 2 on bad arguments.
 */
int opt_parse(const char *prog, int argc, char **argv, const struct option *lo,
	      int (*take)(int ch, const char *arg, void *ctx), void *ctx, int *quiet, void (*usage)(FILE *));
/* One numeric option of opt_parse_nums: --name N, N in [lo, hi], into *out. */
struct num_opt {
	const char *name;
	uint64_t lo, hi;
	uint64_t *out;
};
/* A whole command line of numeric options (nums[0..n), in that order, each checked by opt_u64), then --quiet (sets
 * *quiet) and --help (prints usage), and no operand. Returns what a tool's parse_args returns: 0 to run, 1 when
 * --help was printed, 2 on bad arguments (said on stderr, naming prog). */
int opt_parse_nums(const char *prog, int argc, char **argv, const struct num_opt *nums, unsigned n, int *quiet,
		   void (*usage)(FILE *));
/* The traffic options bench_engine and dattss-load share, for the getopt_long value ch of theirs: --names 'k'
 * (1..10^8), --mix 'm', --lines-per-datagram 'l' (0..64), --seed 'S'. Returns 0 when arg was taken, -EINVAL when it
 * is not a valid value (nothing said), 1 when ch is none of them (a take function of opt_parse can end with it). */
int opt_traffic(int ch, const char *arg, uint64_t *names, unsigned mix[DTS_NTYPES], unsigned *lpd, uint64_t *seed);
/* "c=70,ms=20,g=10,s=0" -> weights. Returns 0 or -EINVAL. */
int parse_mix(const char *s, unsigned mix[DTS_NTYPES]);
/* Nanoseconds of clock id (CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID, ...). */
int64_t clock_ns(clockid_t id);
/* Nanoseconds of CLOCK_MONOTONIC. */
int64_t mono_ns(void);
/* Milliseconds of CLOCK_REALTIME: the engine's now_ms. */
int64_t real_ms(void);
/* VmRSS of this process in MiB, or -1 when /proc/self/status is not readable. */
double rss_mb(void);
/* dts_merger_step(m, now_ms), timed: adds the nanoseconds it took to *ns and one to *steps. Merger thread (a
 * registered RCU thread). */
void merger_step_timed(struct dts_merger *m, int64_t now_ms, int64_t *ns, uint64_t *steps);
/* Hands the core's last table over (dts_core_flush, then a tick) and folds it with merger_step_timed, so that every
 * line fed has been folded once. The thread of the core and the merger (a registered RCU thread). */
void core_flush_fold(struct dts_core *c, struct dts_merger *m, int64_t *ns, uint64_t *steps);
/* The end of a run on one registered RCU thread: destroys the merger, waits for the grace periods of what it freed
 * (dts_rcu_barrier) and unregisters the thread. */
void merger_teardown(struct dts_merger *m);
/* The drops of a measured run: subtracts the counts at its start (core0, merger0) from core and merger (indexed by
 * enum dts_drop, DTS_DROP_COUNT each) and returns the sum of both; *core_sum (unless NULL) gets the core's part. */
uint64_t drops_since(uint64_t *core, const uint64_t *core0, uint64_t *merger, const uint64_t *merger0,
		     uint64_t *core_sum);
/* Says on stderr "prog: note: dropped: name=core/merger ... (core/merger)" for every drop reason either count holds
 * (core[] and merger[] indexed by enum dts_drop, DTS_DROP_COUNT each); nothing when all are zero. */
void note_dropped(const char *prog, const uint64_t *core, const uint64_t *merger);

#endif /* DTS_BENCH_COMMON_H */
