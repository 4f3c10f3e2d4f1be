/*
 * bench_common.h - shared helpers of the benchmark binaries (see bench_common.c).
 */
#ifndef DTS_BENCH_COMMON_H
#define DTS_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>

#include "dts/types.h"

/* Short type keys of --mix: "c", "ms", "g", "s" (indexed by enum dts_type). */
extern const char *const type_key[DTS_NTYPES];

uint64_t rng_next(uint64_t *s);
/* Uniform in [0, n) (Lemire's multiply; the bias is below 2^-40 for the n used here). */
uint64_t rng_below(uint64_t *s, uint64_t n);
double rng_unit(uint64_t *s);
double rng_normal(uint64_t *s);
int parse_u64(const char *s, uint64_t *out);
/* The value of option --name as a number in [lo, hi] into *out; otherwise says so on stderr, naming prog, the option
 * and the range, and returns -EINVAL (*out unchanged). */
int opt_u64(const char *prog, const char *name, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out);
/* The arms a tool's getopt_long switch ends with (its default: case): --quiet ('q') sets *quiet and returns 0,
 * --help ('h') prints usage on stdout and returns 1, anything else prints it on stderr and returns 2 - what a
 * tool's parse_args returns for each. */
int opt_common(int ch, int *quiet, void (*usage)(FILE *));
/* After getopt_long: 0 when no argument is left, else says which one on stderr, prints usage and returns -EINVAL. */
int opt_no_operands(const char *prog, int argc, char **argv, void (*usage)(FILE *));
/* "c=70,ms=20,g=10,s=0" -> weights. Returns 0 or -EINVAL. */
int parse_mix(const char *s, unsigned mix[DTS_NTYPES]);
int64_t mono_ns(void);

#endif /* DTS_BENCH_COMMON_H */
