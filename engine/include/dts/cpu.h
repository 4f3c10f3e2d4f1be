/*
 * cpu.h - a program built for more than the CPU it runs on says so and exits, instead of dying of SIGILL.
 *
 * Every build targets the instruction set DTS_MARCH names (CMakeLists.txt; x86-64-v3 by default: AVX2, BMI2, FMA).
 * DTS_CPU_CHECK("name") at file scope in a program's main file defines a constructor that runs before main: on a CPU
 * without the features the compiler was allowed to use, it prints one line naming the build's target and how to build
 * for this CPU, and exits with status 1. Nothing in the check itself needs more than the baseline (it is a cpuid
 * test); the rest of the program must not run first, which a constructor ensures for the program's own code.
 */
#ifndef DTS_CPU_H
#define DTS_CPU_H

#include <stdio.h>
#include <unistd.h>

#ifndef DTS_MARCH
#define DTS_MARCH "the compiler's default"
#endif

static inline void dts_cpu_check(const char *prog)
{
#if defined(__x86_64__) && (defined(__AVX2__) || defined(__SSSE3__))
	const char *missing = NULL;

	__builtin_cpu_init();
#if defined(__AVX2__)
	if (!__builtin_cpu_supports("avx2"))
		missing = "AVX2";
	else if (!__builtin_cpu_supports("bmi2"))
		missing = "BMI2";
	else if (!__builtin_cpu_supports("fma"))
		missing = "FMA";
#endif
	if (!missing && !__builtin_cpu_supports("ssse3"))
		missing = "SSSE3";
	if (!missing && !__builtin_cpu_supports("sse4.2"))
		missing = "SSE4.2";
	if (missing) {
		fprintf(stderr,
			"%s: this build targets %s, and this CPU lacks %s; build for it with "
			"cmake -DDTS_MARCH=x86-64-v2 (or x86-64) (docs/operations.md, \"CPU\")\n",
			prog, DTS_MARCH, missing);
		_exit(1);
	}
#else
	(void)prog;
#endif
}

#define DTS_CPU_CHECK(prog)                                                                                          \
	__attribute__((constructor)) static void dts_cpu_check_at_start(void)                                         \
	{                                                                                                            \
		dts_cpu_check(prog);                                                                                 \
	}

#endif /* DTS_CPU_H */
