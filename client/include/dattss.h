/*
 * dattss.h - libdattss, the DaTtSs client library: pre-aggregate counters, timers and gauges in the process and send
 * them every 5 seconds as authenticated partial aggregates (the native protocol, docs/protocol.md).
 *
 *     struct dts *d = dts_open("stats.example.com:8125", "42", 7, "the-secret", "api");
 *     dts_agg(d, "query", "153ms");          // like the original drivers: value with unit ms, c or g, optional '!'
 *     dts_timing(d, "query", 153.0);         // the same, typed
 *     dts_count(d, "requests", 1);
 *     dts_gauge(d, "queue_len", 17);
 *     dts_error(d, "database unreachable");
 *     dts_close(d);                          // sends what is left
 *
 * How it works. Each thread that records gets its own pair of tables (registered on its first call); a recording call
 * hashes the name, finds the series in the thread's current table and updates its partial aggregate (and, for timers,
 * its quantile sketch): no lock, no system call, no atomic read-modify-write. A sender thread started by dts_open wakes
 * at every 5-second boundary of the wall clock, switches all threads to their other table, merges the filled ones,
 * adds process statistics (uptime, resident memory, CPU, error and warning counts) and the error and warning texts,
 * and sends the batch over UDP in datagrams of at most 1400 bytes, each with a MAC under the key's secret. It sends
 * even when nothing was recorded: the server treats every batch as a heartbeat.
 *
 * Memory is bounded: a thread's table holds at most 12,288 series per 5-second period and 1,024 timers, the merged
 * batch 24,576 series and 4,096 timers, 8 error/warning texts per thread and 64 per batch. What does not fit is dropped
 * and counted (dts_stats, and the 'dropped' process statistic the server sees); nothing blocks.
 *
 * Names are normalised like statsd names (whitespace runs become '_', '/' becomes '-', anything outside
 * [A-Za-z0-9_.-] is dropped); the process name plus '.' plus a counter name may be at most 200 bytes once normalised.
 *
 * Return convention: actions return 0 or a negative errno; dts_open* return a handle or NULL with errno set.
 * Threading: every recording call (dts_agg, dts_count, dts_timing, dts_gauge, dts_error, dts_warning) may be made from
 * any number of threads at once and never blocks. dts_close must be called once, after every other thread has stopped
 * using the handle. Not async-signal-safe; after fork() the child must not use a handle opened by its parent.
 * The switch to a thread's other table relies on membarrier(2) (Linux 4.14); where it is missing or refused, or with
 * DATTSS_MEMBARRIER=0 in the environment, recording calls use one locked instruction instead (a few ns more).
 * Dependencies: libc, libm, libpthread and OpenSSL's libcrypto (pkg-config --libs dattss).
 */
#ifndef DATTSS_H
#define DATTSS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DTS_API __attribute__((visibility("default")))
#else
#define DTS_API
#endif

/* A connection to one DaTtSs server for one process of one user. Opaque. */
struct dts;

/*
 * Open a handle and start its sender thread.
 *   server   "host:port", "host" (port 8125), "[v6addr]:port"; resolved once, now (this may block on DNS)
 *   user     the user id, [A-Za-z0-9@._+-]{1,64}
 *   key_id   the id of the user's key (printed by `dattss user add`)
 *   secret   that key's secret, as printed: its characters are the MAC key
 *   process  the process name ('api'), normalised; at most 198 bytes
 * Returns the handle, or NULL with errno: EINVAL (a bad argument), EADDRNOTAVAIL (server not resolvable), ENOMEM,
 * or what socket(2) or pthread_create(3) failed with. The strings are copied. Any thread.
 */
DTS_API struct dts *dts_open(const char *server, const char *user, uint32_t key_id, const char *secret,
			     const char *process);

/*
 * dts_open with the environment: DATTSS_SERVER (default 127.0.0.1:8125), DATTSS_USER, DATTSS_KEY_ID (decimal),
 * DATTSS_SECRET, DATTSS_PROCESS (default: the program's name). NULL with errno EINVAL when one is missing or bad.
 */
DTS_API struct dts *dts_open_env(void);

/*
 * Record a value written as the original drivers wrote it: a number followed by its type, "ms" (timer), "c" (counter)
 * or "g" (gauge), and optionally '!' (emphasis, passed on to the server): "153ms", "1c", "23.5g", "2c!".
 * Returns 0, -EINVAL (d, name or value invalid, or the name empty or too long once normalised: the value is dropped
 * and counted), -ENOSPC (the thread's table is full this period: dropped and counted) or -ENOMEM (dropped and
 * counted). Any thread; never blocks; no system call once the thread has recorded this name before.
 */
DTS_API int dts_agg(struct dts *d, const char *name, const char *value);

/* Typed recording: add v to a counter; record a timing in milliseconds; set a gauge. v must be finite. Same returns
 * and threading as dts_agg. */
DTS_API int dts_count(struct dts *d, const char *name, double v);
DTS_API int dts_timing(struct dts *d, const char *name, double ms);
DTS_API int dts_gauge(struct dts *d, const char *name, double v);

/*
 * Report an error or a warning. The counts always go up; the text (copied, at most 512 bytes, cut at a character
 * boundary, invalid UTF-8 replaced by '?') is sent with the next batch unless the thread already reported 8 texts
 * this period or the batch already holds 64 (then it is dropped and counted). Returns 0, -EINVAL (d or text NULL),
 * -ENOSPC (text dropped, count kept) or -ENOMEM. Any thread; never blocks.
 */
DTS_API int dts_error(struct dts *d, const char *text);
DTS_API int dts_warning(struct dts *d, const char *text);

/*
 * Send what was recorded so far now, as the current 5-second slot, without waiting for the sender thread's next
 * period (tests, shutdown paths, short-lived programs). Blocks the caller until the batch is handed to the kernel
 * (a few milliseconds at most; it may wait for a period the sender thread is sending). Returns 0 or the negative
 * errno of the first failed send (the batch's other datagrams are still sent). Any thread but the sender's.
 */
DTS_API int dts_flush(struct dts *d);

/* Stop the sender thread, send what was recorded, free everything. d may be NULL. No other thread may use d during
 * or after the call. Returns 0 or the error of the final send (the handle is freed in every case). */
DTS_API int dts_close(struct dts *d);

/* Counters of a handle, cumulative since dts_open. */
struct dts_client_stats {
	uint64_t batches; /* periods sent (including heartbeats and dts_flush calls) */
	uint64_t datagrams; /* datagrams handed to the kernel */
	uint64_t send_errors; /* datagrams that could not be sent */
	uint64_t dropped_values; /* values not recorded: bad name or value, table full, out of memory */
	uint64_t dropped_events; /* error/warning texts not sent (their counts are kept) */
	uint64_t errors; /* dts_error calls */
	uint64_t warnings; /* dts_warning calls */
	uint32_t threads; /* threads currently registered */
};

/* Fill out. May wait for a period being sent (a few milliseconds); never blocks a recording call. Any thread. */
DTS_API void dts_stats(struct dts *d, struct dts_client_stats *out);

/*
 * For tools (`dattss send`) and scripts: send one value immediately, in one datagram of its own, without a handle or a
 * thread. Arguments as dts_open and dts_agg. Blocks until the datagram is handed to the kernel. Returns 0 or a negative
 * errno (-EINVAL for a bad argument, -EADDRNOTAVAIL, or the socket's error). Any thread.
 */
DTS_API int dts_send_one(const char *server, const char *user, uint32_t key_id, const char *secret,
			 const char *process, const char *name, const char *value);

#ifdef __cplusplus
}
#endif

#endif /* DATTSS_H */
