/*
 * receive.h - kernel-socket receive for dattssd.
 *
 * Threads started by dts_receiver_start():
 *   udp worker i (0 <= i < workers)  own SO_REUSEPORT UDP socket, recvmmsg() bursts, engine core i, pinned to a CPU
 *   stream thread                    TCP listener + connections and the Unix datagram socket, engine core `workers`
 * Each thread is the only writer of its engine core (struct dts_core). None of them takes a lock or allocates on the
 * receive path. A UDP worker wakes at least every DTS_RECV_WAKE_MS to hand its table over on time and to notice
 * shutdown; the stream thread does so while its core may hold data (2 x tick_ms + 1 s after its last ingest) or is
 * saturated, and otherwise every DTS_RECV_IDLE_WAKE_MS (dts_receiver_stop wakes it at once through an eventfd), so a
 * hand-over deferred for longer than that (no free table: the merger far behind) can be that much later.
 * So the merger must be created with at least udp_workers + 1 cores (DPDK lcores take the first ones when io = dpdk).
 * A UDP worker that emptied its socket at a high arrival rate sleeps up to cfg->recv_coalesce_us before its next
 * recvmmsg(), so that it takes more datagrams per wake-up (receive.c); stopping can take that much longer too.
 */
#ifndef DTS_RECEIVE_H
#define DTS_RECEIVE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dts/engine.h"

/* Longest a receive thread sleeps in recvmmsg()/poll() before it checks its tick and the stop flag. */
#define DTS_RECV_WAKE_MS 50
/* Longest the stream thread sleeps in poll() when its core holds nothing to hand over. */
#define DTS_RECV_IDLE_WAKE_MS 1000
/* Concurrent TCP connections served by the stream thread; more are accepted and closed at once (counted). */
#define DTS_RECV_MAX_TCP 256
/* Per-connection buffer: one maximal line plus room to keep reading. */
#define DTS_RECV_TCP_BUF (2 * DTS_MAX_LINE)

struct dts_receiver;

/* Socket-level counters, summed over threads (read with relaxed loads). */
struct dts_receiver_stats {
	uint64_t recv_calls; /* recvmmsg()/recv() calls that returned data */
	uint64_t truncated; /* datagrams larger than the receive buffer (counted and ingested as far as they fit) */
	uint64_t recv_errors; /* receive calls that failed with something other than EAGAIN/EINTR */
	uint64_t tcp_accepted;
	uint64_t tcp_refused; /* connections closed at once because DTS_RECV_MAX_TCP were open */
	uint64_t denied; /* UDP datagrams dropped because their source is not in statsd_allow */
	uint64_t tcp_denied; /* TCP connections closed at once because their source is not in statsd_allow */
	uint64_t paused_ns; /* time UDP workers left their sockets unread because their core was saturated
			     * (udp_backpressure) */
	uint64_t socket_drops; /* datagrams the kernel dropped at the UDP workers' sockets (SO_MEMINFO's drop count,
				* 32 bits per socket in the kernel: it wraps), read when the stats are read */
};

/*
 * Bind every configured socket and start the threads: udp_workers UDP workers on engine cores 0..udp_workers-1 (0
 * when DPDK receives UDP), and the stream thread (TCP, Unix socket) on engine core stream_core. Returns NULL and
 * writes a message (naming the address, port or path that failed and why) into err on failure; nothing is left open
 * then. Call from the main thread.
 */
struct dts_receiver *dts_receiver_start(const struct dts_config *cfg, struct dts_merger *m, unsigned udp_workers,
					unsigned stream_core, char *err, size_t errlen);

/*
 * Stop and join every thread, close every socket, free r. Afterwards no thread touches the engine cores, so
 * dts_merger_destroy may fold their tables. Main thread only. NULL is accepted.
 */
void dts_receiver_stop(struct dts_receiver *r);

void dts_receiver_stats_read(const struct dts_receiver *r, struct dts_receiver_stats *out);

/* Current wall-clock time in milliseconds (CLOCK_REALTIME via the vDSO: no system call). */
int64_t dts_now_ms(void);

#endif /* DTS_RECEIVE_H */
