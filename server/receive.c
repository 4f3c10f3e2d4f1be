/*
 * receive.c - UDP workers (SO_REUSEPORT + recvmmsg), and the stream thread (TCP lines and the Unix datagram socket).
 *
 * The kernel spreads datagrams over the workers' SO_REUSEPORT sockets by a hash of the 4-tuple, so one client's
 * datagrams always reach the same worker and each worker aggregates into its own engine core without sharing
 * anything. A worker's loop, one wake-up: a recvmmsg() burst (blocking at most DTS_RECV_WAKE_MS), ingest exactly the
 * datagrams that arrived (never the requested count) with one dts_core_ingest_burst() call, so the engine's decode
 * batch spans the burst's datagrams (one-line datagrams overlap their table misses as packed ones do), then
 * dts_core_tick(); while a call returns a full batch, the next one (MSG_DONTWAIT) follows at once, up to DRAIN_ROUNDS
 * calls, so a wake-up takes everything that queued up. Buffers are allocated once at start.
 *
 * Coalescing (recv_coalesce_us): a worker blocked in recvmmsg() is woken for each datagram, and a wake-up (a context
 * switch in and out) costs ~9-12 us of CPU in the paravirtualised test VM (bench/bench_wake.c): at 1M lines/s, 1,000
 * wake-ups per second are ~10 ns per line, half the engine's work on a line. So after a wake-up that emptied the
 * socket, a worker whose measured arrival rate says at least two datagrams will come within recv_coalesce_us sleeps
 * (clock_nanosleep, off the socket's wait queue) and the next wake-up takes what queued up meanwhile. The sleep is
 * recv_coalesce_us, or less when at the measured rate half of what one wake-up can take (DRAIN_ROUNDS x recv_batch
 * datagrams) or an eighth of the socket buffer (SO_RCVBUF as granted, in the kernel's per-datagram charge) would arrive
 * sooner. The rate is measured over COALESCE_WINDOW_NS windows; a wake-up that finds more than twice what its sleep was
 * sized for, or whose calls all returned full batches, ends the window early. One extra system call per wake-up, none
 * per datagram. A wake-up that did not empty the socket is followed by no sleep, and a slow or idle socket is never
 * slept on: the worker blocks in recvmmsg() as before (idle CPU stays ~0). Values reach the table at most
 * recv_coalesce_us late; the socket buffer (rcvbuf_bytes) absorbs what arrives meanwhile.
 *
 * Backpressure (udp_backpressure): while a worker's core is saturated (the merger behind: no clean table free), the
 * worker stops reading and retries the hand-over every PAUSE_NS, as long as its socket buffer is less than half full
 * (backpressure_wait), so that the buffer, not the engine, holds what arrives meanwhile.
 *
 * statsd_allow: when set, every UDP datagram's source address (recvmmsg's msg_name, filled by the same call) is checked
 * against the allowed networks before anything else reads the datagram, and every TCP connection's at accept; a
 * refused one is counted (denied, tcp_denied) and never reaches the engine. The Unix socket is local: not checked.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "netacl.h"
#include "receive.h"

#define DGRAM_MAX 65536 /* largest UDP payload */
/* Datagrams per recvmmsg on the Unix socket (1 MiB of buffers), and calls per wake-up: at most 64 datagrams, then
 * the TCP connections get their turn. */
#define UNIX_BATCH 16
#define UNIX_ROUNDS 4

struct rx_stats {
	_Alignas(64) uint64_t recv_calls;
	uint64_t truncated;
	uint64_t recv_errors;
	uint64_t tcp_accepted;
	uint64_t tcp_refused;
	uint64_t denied;
	uint64_t tcp_denied;
	uint64_t paused_ns;
};

#define STAT_ADD(field, n) __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), \
					    __ATOMIC_RELAXED)

struct udp_worker {
	_Alignas(64) struct dts_receiver *r;
	struct dts_core *core;
	pthread_t thread;
	bool started;
	int fd;
	unsigned id;
	unsigned batch;
	int cpu; /* -1: not pinned */
	bool backpressure; /* udp_backpressure */
	int64_t coalesce_max_ns; /* recv_coalesce_us in ns; 0 = never sleep between calls */
	int64_t rcvbuf; /* the socket's receive buffer limit as the kernel charges it (getsockopt SO_RCVBUF) */
	int64_t win_start_ns; /* arrival-rate window: start (CLOCK_MONOTONIC) */
	uint64_t win_dgrams; /* datagrams received since win_start_ns */
	uint64_t win_bytes; /* their payload bytes */
	int64_t sleep_ns; /* sleep after a wake-up that emptied the socket (last window's rate); 0 = block instead */
	uint64_t sleep_dgrams; /* datagrams expected during sleep_ns: a wake-up that takes more ends the window early */
	struct mmsghdr *msgs;
	struct iovec *iov;
	struct sockaddr_storage *names; /* batch source addresses; NULL when statsd_allow is empty */
	char *bufs; /* batch x DGRAM_MAX */
	struct dts_dgram *dgrams; /* batch: the allowed datagrams of the last burst, for dts_core_ingest_burst */
	struct rx_stats stats;
};

struct tcp_conn {
	int fd;
	size_t len;
	char buf[DTS_RECV_TCP_BUF];
};

struct dts_receiver {
	_Atomic bool stop;
	struct dts_netacl allow; /* statsd_allow; read-only after start */
	unsigned nworkers;
	struct udp_worker *workers;
	/* stream thread */
	pthread_t stream_thread;
	bool stream_started;
	struct dts_core *stream_core;
	int wake_fd; /* eventfd that dts_receiver_stop writes to end the stream thread's poll at once; -1 when none */
	int64_t stream_hold_ms; /* how long after an ingest the stream core may still hold data to hand over */
	int64_t stream_last_ms; /* when the stream thread last ingested anything */
	int tcp_fd; /* -1 when off */
	int unix_fd; /* -1 when off */
	char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct tcp_conn *conns[DTS_RECV_MAX_TCP];
	char *unix_buf; /* UNIX_BATCH x DGRAM_MAX */
	struct mmsghdr unix_msgs[UNIX_BATCH];
	struct iovec unix_iov[UNIX_BATCH];
	struct dts_dgram unix_dgrams[UNIX_BATCH];
	struct rx_stats stream_stats;
};

int64_t dts_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int make_addr(const char *bind_addr, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, bind_addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, bind_addr, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*len = sizeof(*a6);
		return 0;
	}
	return -EINVAL;
}

/* Open and bind one socket of the given type on bind:port with SO_REUSEPORT. Returns fd or -errno. */
static int open_inet(const char *bind_addr, uint16_t port, int type, unsigned rcvbuf, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	int fd, one = 1, e;
	const char *what = type == SOCK_DGRAM ? "udp" : "tcp";

	if (make_addr(bind_addr, port, &ss, &slen) != 0) {
		snprintf(err, errlen, "bind: '%s' is not an IPv4 or IPv6 address", bind_addr);
		return -EINVAL;
	}
	fd = socket(ss.ss_family, type | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = errno;
		snprintf(err, errlen, "%s socket: %s", what, strerror(e));
		return -e;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		goto out_err;
	if (rcvbuf && type == SOCK_DGRAM) {
		int v = (int)rcvbuf;

		/* SO_RCVBUFFORCE passes net.core.rmem_max when we are root; fall back to the capped request. */
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	}
	if (bind(fd, (struct sockaddr *)&ss, slen) != 0)
		goto out_err;
	if (type == SOCK_STREAM && listen(fd, 128) != 0)
		goto out_err;
	return fd;

out_err:
	e = errno;
	snprintf(err, errlen, "%s %s port %u: %s", what, bind_addr, port, strerror(e));
	close(fd);
	return -e;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * recvmmsg() calls per wake-up at most: while the calls return full batches, the worker calls again at once
 * (MSG_DONTWAIT), so that one wake-up takes everything that queued up during a sleep, even when that is more than one
 * batch. Bounds the work of one loop to DRAIN_ROUNDS x recv_batch datagrams (with a dts_core_tick() after each call).
 */
#define DRAIN_ROUNDS 16
/* Window over which a worker measures its arrival rate (a wake-up that takes more than expected ends it early). */
#define COALESCE_WINDOW_NS 50000000
/*
 * Socket-buffer charge assumed per datagram when a sleep is sized, from its mean payload: the kernel charges each
 * queued datagram's skb truesize (its payload rounded up to an allocation size, plus the sk_buff): 2304 B for a
 * 1400 B loopback datagram, 832 B for a 60 B one. 2 x payload + 1 KiB is above both, but a NIC driver's buffers can
 * charge a small datagram 2.3-4.9 KiB: hence an eighth of the buffer, not more, for what arrives during a sleep.
 */
#define TRUESIZE_EST(payload) (2 * (payload) + 1024)
/* udp_backpressure: how long a worker whose core is saturated sleeps before it tries the hand-over again. Short
 * against what the socket buffer holds (8 MiB: ~0.1-0.2 s of 1.5M lines/s), long against a wake-up's cost. */
#define PAUSE_NS 200000

/*
 * At the end of a rate window: decide how long the worker sleeps after a wake-up that emptied its socket (sleep_ns;
 * 0 = none: block in recvmmsg). It sleeps only when at least two datagrams are expected within
 * recv_coalesce_us, for the time in which at most half of what one wake-up takes (DRAIN_ROUNDS x recv_batch) and a
 * eighth of the socket buffer arrive at the measured rate, and at most recv_coalesce_us.
 */
static void coalesce_window(struct udp_worker *w, int64_t now)
{
	int64_t elapsed = now - w->win_start_ns, ns_per_dgram, room, rcv_room;

	if (!w->win_dgrams) {
		w->sleep_ns = 0;
	} else {
		ns_per_dgram = elapsed / (int64_t)w->win_dgrams;
		room = (int64_t)w->batch * DRAIN_ROUNDS / 2;
		rcv_room = w->rcvbuf / 8 / TRUESIZE_EST((int64_t)(w->win_bytes / w->win_dgrams));
		if (rcv_room < room)
			room = rcv_room > 1 ? rcv_room : 1;
		/* Under two datagrams expected within the cap: blocking in recvmmsg() wakes no more often than
		 * sleeping. */
		if (ns_per_dgram > w->coalesce_max_ns / 2) {
			w->sleep_ns = 0;
		} else {
			w->sleep_ns = ns_per_dgram * room;
			if (w->sleep_ns > w->coalesce_max_ns)
				w->sleep_ns = w->coalesce_max_ns;
			w->sleep_dgrams = (uint64_t)(w->sleep_ns / (ns_per_dgram > 0 ? ns_per_dgram : 1)) + 1;
		}
	}
	w->win_start_ns = now;
	w->win_dgrams = 0;
	w->win_bytes = 0;
}

/*
 * After a wake-up that took got datagrams (more_queued: its last call returned a full batch), sleep
 * before the next recvmmsg() so that it takes a bigger burst (see the file comment). Bounded: at most one
 * clock_nanosleep of at most recv_coalesce_us; two vDSO clock reads.
 */
static void coalesce(struct udp_worker *w, uint64_t got, uint64_t bytes, bool more_queued)
{
	int64_t now = mono_ns();

	w->win_dgrams += got;
	w->win_bytes += bytes;
	/* A wake-up that found more than the sleep was sized for: the rate rose, size the next sleep from it now. */
	if (now - w->win_start_ns >= COALESCE_WINDOW_NS || more_queued || (w->sleep_ns && got > 2 * w->sleep_dgrams))
		coalesce_window(w, now);
	/* Nothing came (timeout), or more is queued: go straight back to recvmmsg(). */
	if (!got || more_queued || !w->sleep_ns)
		return;
	/* An EINTR just ends the sleep early. */
	clock_nanosleep(CLOCK_MONOTONIC, 0, &(struct timespec){ .tv_sec = 0, .tv_nsec = w->sleep_ns }, NULL);
}

/* The kernel's memory figures of socket fd (SO_MEMINFO: the buffer's use and limit, its drops). False when it has
 * none to give. Safe on a socket another thread reads. */
static bool sock_meminfo(int fd, uint32_t mem[SK_MEMINFO_VARS])
{
	socklen_t len = SK_MEMINFO_VARS * sizeof(uint32_t);

	return fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) == 0 &&
	       len == SK_MEMINFO_VARS * sizeof(uint32_t);
}

/*
 * udp_backpressure: called while the worker's core is saturated (its table past the hand-over mark and no clean table
 * free: the merger is behind). Tries the hand-over again and, when no table is free yet, sleeps PAUSE_NS without
 * reading, so that the socket buffer queues the datagrams instead of the engine dropping what the table cannot take.
 * Only while the socket buffer is less than half full: past that the worker reads on as without backpressure, and
 * the table's room past its mark takes what it can (values of series it holds; new ones are dropped and counted when
 * it is full), rather than the kernel dropping whole datagrams when the buffer overflows. So a merger behind for a
 * moment (what half the buffer holds) loses nothing, and one behind for longer loses no more than without it.
 * Returns true when it slept (the caller checks its stop flag and comes back), false when the worker should read.
 * Per pause: one getsockopt(), one clock_nanosleep(), two clock reads; the datagrams are not touched.
 */
static bool backpressure_wait(struct udp_worker *w)
{
	uint32_t mem[SK_MEMINFO_VARS];
	int64_t t0;

	if (dts_core_tick(w->core, dts_now_ms()) || !dts_core_saturated(w->core))
		return false;
	if (!sock_meminfo(w->fd, mem) || mem[SK_MEMINFO_RMEM_ALLOC] >= mem[SK_MEMINFO_RCVBUF] / 2)
		return false;
	t0 = mono_ns();
	clock_nanosleep(CLOCK_MONOTONIC, 0, &(struct timespec){ .tv_sec = 0, .tv_nsec = PAUSE_NS }, NULL);
	STAT_ADD(w->stats.paused_ns, (uint64_t)(mono_ns() - t0));
	return true;
}

/* Hand the n datagrams of the last recvmmsg() to the engine in one burst; returns their payload bytes. */
static uint64_t udp_ingest(struct udp_worker *w, int n, int64_t now_ms)
{
	struct dts_receiver *r = w->r;
	uint64_t bytes = 0;
	unsigned nd = 0;

	STAT_ADD(w->stats.recv_calls, 1);
	for (int i = 0; i < n; i++) {
		bytes += w->msgs[i].msg_len;
		if (w->names) {
			bool ok = dts_netacl_allows(&r->allow, &w->names[i]);

			w->msgs[i].msg_hdr.msg_namelen = sizeof(w->names[i]); /* value-result: reset */
			if (!ok) {
				STAT_ADD(w->stats.denied, 1);
				continue;
			}
		}
		if (w->msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
			STAT_ADD(w->stats.truncated, 1);
		w->dgrams[nd].buf = w->iov[i].iov_base;
		w->dgrams[nd++].len = w->msgs[i].msg_len;
	}
	dts_core_ingest_burst(w->core, w->dgrams, nd, now_ms / 1000);
	return bytes;
}

static void *udp_worker_main(void *arg)
{
	struct udp_worker *w = arg;
	struct dts_receiver *r = w->r;
	char name[16];

	snprintf(name, sizeof(name), "dts-rx%u", w->id);
	pthread_setname_np(pthread_self(), name);
	dts_rcu_register_thread(); /* native datagrams look their key up under the RCU read side (engine.h) */
	if (w->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
			dts_warn("receive", "worker %u: could not pin to cpu %d", w->id, w->cpu);
	}
	w->win_start_ns = mono_ns();
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		uint64_t got = 0, bytes = 0;
		bool more_queued = false;

		if (w->backpressure && dts_core_saturated(w->core) && backpressure_wait(w))
			continue;
		/* One wake-up: the first call blocks (up to DTS_RECV_WAKE_MS) until a datagram is there; the next ones
		 * take what is queued, while the calls return full batches. The tick after each call hands a full
		 * table over before the next burst. */
		for (unsigned round = 0; round < DRAIN_ROUNDS; round++) {
			int n = recvmmsg(w->fd, w->msgs, w->batch, round ? MSG_DONTWAIT : MSG_WAITFORONE, NULL);
			int64_t now_ms = dts_now_ms();

			if (n > 0) {
				got += (unsigned)n;
				bytes += udp_ingest(w, n, now_ms);
			} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				STAT_ADD(w->stats.recv_errors, 1);
			}
			dts_core_tick(w->core, now_ms);
			more_queued = n == (int)w->batch;
			/* A saturated core: back to the loop's top, where backpressure_wait decides whether the rest
			 * waits in the socket (udp_backpressure). Checked after each call, so that one wake-up adds at
			 * most a batch to a saturated table before that. */
			if (!more_queued || (w->backpressure && dts_core_saturated(w->core)))
				break;
		}
		if (w->coalesce_max_ns)
			coalesce(w, got, bytes, more_queued);
	}
	dts_rcu_unregister_thread();
	return NULL;
}

static void tcp_accept(struct dts_receiver *r)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t slen = sizeof(ss);
	int fd = accept4(r->tcp_fd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (!dts_netacl_allows(&r->allow, &ss)) {
		STAT_ADD(r->stream_stats.tcp_denied, 1);
		close(fd);
		return;
	}
	for (int i = 0; i < DTS_RECV_MAX_TCP; i++) {
		if (r->conns[i])
			continue;
		r->conns[i] = malloc(sizeof(struct tcp_conn)); /* per connection, not per line: off the hot path */
		if (!r->conns[i])
			break;
		r->conns[i]->fd = fd;
		r->conns[i]->len = 0;
		STAT_ADD(r->stream_stats.tcp_accepted, 1);
		return;
	}
	STAT_ADD(r->stream_stats.tcp_refused, 1);
	close(fd);
}

static void tcp_close(struct dts_receiver *r, int i, int64_t now_ms)
{
	struct tcp_conn *c = r->conns[i];

	/* A final line without '\n' still counts when the peer closes. */
	if (c->len)
		dts_core_ingest(r->stream_core, c->buf, c->len, now_ms / 1000);
	close(c->fd);
	free(c);
	r->conns[i] = NULL;
}

static void tcp_read(struct dts_receiver *r, int i, int64_t now_ms)
{
	struct tcp_conn *c = r->conns[i];

	for (int rounds = 0; rounds < 16; rounds++) { /* bounded work per connection per loop */
		ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		size_t used;

		if (n == 0) {
			tcp_close(r, i, now_ms);
			return;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				STAT_ADD(r->stream_stats.recv_errors, 1);
				tcp_close(r, i, now_ms);
			}
			return;
		}
		STAT_ADD(r->stream_stats.recv_calls, 1);
		c->len += (size_t)n;
		used = dts_core_ingest_stream(r->stream_core, c->buf, c->len, now_ms / 1000);
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
	}
}

/* Up to UNIX_ROUNDS bursts of the Unix datagram socket into the stream core, each in one engine call. */
static void unix_read(struct dts_receiver *r, int64_t now_ms)
{
	for (int round = 0; round < UNIX_ROUNDS; round++) {
		int n = recvmmsg(r->unix_fd, r->unix_msgs, UNIX_BATCH, MSG_DONTWAIT, NULL);

		if (n <= 0) {
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				STAT_ADD(r->stream_stats.recv_errors, 1);
			return;
		}
		STAT_ADD(r->stream_stats.recv_calls, 1);
		for (int i = 0; i < n; i++) {
			if (r->unix_msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
				STAT_ADD(r->stream_stats.truncated, 1);
			r->unix_dgrams[i].len = r->unix_msgs[i].msg_len;
		}
		dts_core_ingest_burst(r->stream_core, r->unix_dgrams, (unsigned)n, now_ms / 1000);
		if (n < UNIX_BATCH)
			return;
	}
}

static void *stream_main(void *arg)
{
	struct dts_receiver *r = arg;
	struct pollfd pfd[3 + DTS_RECV_MAX_TCP];
	int map[3 + DTS_RECV_MAX_TCP];

	pthread_setname_np(pthread_self(), "dts-stream");
	dts_rcu_register_thread(); /* native datagrams on the Unix socket look their key up under RCU */
	r->stream_last_ms = INT64_MIN / 2;
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		nfds_t n = 0;
		int64_t now_ms = dts_now_ms();
		int wait_ms;

		if (r->wake_fd >= 0) {
			pfd[n] = (struct pollfd){ .fd = r->wake_fd, .events = POLLIN };
			map[n++] = -3;
		}
		if (r->tcp_fd >= 0) {
			pfd[n] = (struct pollfd){ .fd = r->tcp_fd, .events = POLLIN };
			map[n++] = -1;
		}
		if (r->unix_fd >= 0) {
			pfd[n] = (struct pollfd){ .fd = r->unix_fd, .events = POLLIN };
			map[n++] = -2;
		}
		/* While the core is saturated, leave TCP data in the kernel: flow control slows the senders down
		 * instead of us dropping what they sent. */
		bool tcp_paused = dts_core_saturated(r->stream_core);

		for (int i = 0; i < DTS_RECV_MAX_TCP && !tcp_paused; i++)
			if (r->conns[i]) {
				pfd[n] = (struct pollfd){ .fd = r->conns[i]->fd, .events = POLLIN };
				map[n++] = i;
			}
		/* Wake on the tick while the core may hold data to hand over (or is saturated), else rarely: a quiet
		 * stream thread costs next to nothing, and the eventfd ends the wait at a stop. */
		wait_ms = tcp_paused || now_ms - r->stream_last_ms <= r->stream_hold_ms ? DTS_RECV_WAKE_MS
										 : DTS_RECV_IDLE_WAKE_MS;
		int rc = poll(pfd, n, r->wake_fd >= 0 ? wait_ms : DTS_RECV_WAKE_MS);

		now_ms = dts_now_ms();
		for (nfds_t k = 0; rc > 0 && k < n; k++) {
			if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (map[k] == -3)
				continue; /* stop: the loop condition sees it */
			if (map[k] == -1) {
				tcp_accept(r);
				continue;
			}
			if (map[k] == -2)
				unix_read(r, now_ms);
			else
				tcp_read(r, map[k], now_ms);
			r->stream_last_ms = now_ms;
		}
		dts_core_tick(r->stream_core, now_ms);
	}
	dts_rcu_unregister_thread();
	return NULL;
}

static int open_unix(struct dts_receiver *r, const char *path, unsigned rcvbuf, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, e;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "unix_socket: path '%s' is longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	/* Remove a stale socket left by a previous run, but never a file that is not a socket. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "unix_socket: '%s' exists and is not a socket", path);
			return -EEXIST;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		e = errno;
		snprintf(err, errlen, "unix_socket '%s': %s", path, strerror(e));
		if (fd >= 0)
			close(fd);
		return -e;
	}
	if (rcvbuf) {
		int v = (int)rcvbuf;

		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	}
	strcpy(r->unix_path, path);
	return fd;
}

static int worker_init(struct udp_worker *w, const struct dts_config *cfg, char *err, size_t errlen)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = DTS_RECV_WAKE_MS * 1000 };
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int v = 0;
	socklen_t vlen = sizeof(v);

	w->batch = cfg->recv_batch;
	w->coalesce_max_ns = (int64_t)cfg->recv_coalesce_us * 1000;
	w->backpressure = cfg->udp_backpressure;
	w->cpu = cfg->cpu_pin && ncpu > 0 ? (int)(w->id % (unsigned)ncpu) : -1;
	w->fd = open_inet(cfg->bind, cfg->statsd_port, SOCK_DGRAM, cfg->rcvbuf_bytes, err, errlen);
	if (w->fd < 0)
		return w->fd;
	setsockopt(w->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* What the kernel grants (rcvbuf_bytes may be capped by net.core.rmem_max), as it charges it: sizes the
	 * sleeps. */
	if (getsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &v, &vlen) != 0 || v <= 0)
		v = 212992; /* Linux's usual net.core.rmem_default */
	w->rcvbuf = v;
	w->msgs = calloc(w->batch, sizeof(*w->msgs));
	w->iov = calloc(w->batch, sizeof(*w->iov));
	w->bufs = malloc((size_t)w->batch * DGRAM_MAX);
	w->dgrams = calloc(w->batch, sizeof(*w->dgrams));
	if (w->r->allow.n)
		w->names = calloc(w->batch, sizeof(*w->names));
	if (!w->msgs || !w->iov || !w->bufs || !w->dgrams || (w->r->allow.n && !w->names)) {
		snprintf(err, errlen, "worker %u: out of memory for %u receive buffers", w->id, w->batch);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < w->batch; i++) {
		w->iov[i].iov_base = w->bufs + (size_t)i * DGRAM_MAX;
		w->iov[i].iov_len = DGRAM_MAX;
		w->msgs[i].msg_hdr.msg_iov = &w->iov[i];
		w->msgs[i].msg_hdr.msg_iovlen = 1;
		if (w->names) {
			w->msgs[i].msg_hdr.msg_name = &w->names[i];
			w->msgs[i].msg_hdr.msg_namelen = sizeof(w->names[i]);
		}
	}
	return 0;
}

struct dts_receiver *dts_receiver_start(const struct dts_config *cfg, struct dts_merger *m, unsigned udp_workers,
					unsigned stream_core, char *err, size_t errlen)
{
	struct dts_receiver *r = calloc(1, sizeof(*r));
	int fd;

	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->tcp_fd = -1;
	r->unix_fd = -1;
	/* Without the eventfd the stream thread just keeps waking every DTS_RECV_WAKE_MS: no reason to fail. */
	r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	/* A table handed over at most one tick after its first line; two ticks and a second leave room for a late one. */
	r->stream_hold_ms = 2 * (int64_t)cfg->tick_ms + 1000;
	if (dts_netacl_parse(cfg->statsd_allow, &r->allow, err, errlen) != 0) /* validated by config.c: defensive */
		goto out_stop;
	r->nworkers = cfg->statsd_port ? udp_workers : 0;
	r->stream_core = dts_merger_core(m, stream_core);
	r->workers = calloc(udp_workers ? udp_workers : 1, sizeof(*r->workers));
	for (unsigned i = 0; r->workers && i < udp_workers; i++)
		r->workers[i].fd = -1; /* before any way out: dts_receiver_stop closes the workers' fds */
	r->unix_buf = malloc((size_t)UNIX_BATCH * DGRAM_MAX);
	for (unsigned i = 0; r->unix_buf && i < UNIX_BATCH; i++) {
		r->unix_iov[i] = (struct iovec){ .iov_base = r->unix_buf + (size_t)i * DGRAM_MAX, .iov_len = DGRAM_MAX };
		r->unix_msgs[i].msg_hdr = (struct msghdr){ .msg_iov = &r->unix_iov[i], .msg_iovlen = 1 };
		r->unix_dgrams[i].buf = r->unix_iov[i].iov_base;
	}
	if (!r->workers || !r->unix_buf || !r->stream_core) {
		snprintf(err, errlen, "out of memory (or the engine has fewer than workers + 1 cores)");
		goto out_stop;
	}
	for (unsigned i = 0; i < r->nworkers; i++) {
		struct udp_worker *w = &r->workers[i];

		w->r = r;
		w->id = i;
		w->core = dts_merger_core(m, i);
		if (worker_init(w, cfg, err, errlen) != 0)
			goto out_stop;
	}
	if (cfg->statsd_port) {
		fd = open_inet(cfg->bind, cfg->statsd_port, SOCK_STREAM, 0, err, errlen);
		if (fd < 0)
			goto out_stop;
		r->tcp_fd = fd;
	}
	if (cfg->unix_socket[0]) {
		fd = open_unix(r, cfg->unix_socket, cfg->rcvbuf_bytes, err, errlen);
		if (fd < 0)
			goto out_stop;
		r->unix_fd = fd;
	}
	for (unsigned i = 0; i < r->nworkers; i++) {
		if (pthread_create(&r->workers[i].thread, NULL, udp_worker_main, &r->workers[i]) != 0) {
			snprintf(err, errlen, "worker %u: cannot start thread", i);
			goto out_stop;
		}
		r->workers[i].started = true;
	}
	if (pthread_create(&r->stream_thread, NULL, stream_main, r) != 0) {
		snprintf(err, errlen, "stream thread: cannot start");
		goto out_stop;
	}
	r->stream_started = true;
	dts_info("receive", "listening: %s %s:%u (%u UDP workers), unix %s, sources %s", r->nworkers ? "udp+tcp" : "tcp",
		 cfg->bind, cfg->statsd_port, r->nworkers, cfg->unix_socket[0] ? cfg->unix_socket : "off",
		 cfg->statsd_allow[0] ? cfg->statsd_allow : "any");
	return r;

out_stop:
	dts_receiver_stop(r);
	return NULL;
}

void dts_receiver_stop(struct dts_receiver *r)
{
	if (!r)
		return;
	atomic_store(&r->stop, true);
	if (r->wake_fd >= 0 && write(r->wake_fd, &(uint64_t){ 1 }, sizeof(uint64_t)) < 0)
		dts_warn("receive", "waking the stream thread: %s", strerror(errno));
	for (unsigned i = 0; r->workers && i < r->nworkers; i++) {
		struct udp_worker *w = &r->workers[i];

		if (w->started)
			pthread_join(w->thread, NULL);
		if (w->fd >= 0)
			close(w->fd);
		free(w->msgs);
		free(w->iov);
		free(w->names);
		free(w->bufs);
		free(w->dgrams);
	}
	if (r->stream_started)
		pthread_join(r->stream_thread, NULL);
	for (int i = 0; i < DTS_RECV_MAX_TCP; i++)
		if (r->conns[i])
			tcp_close(r, i, dts_now_ms());
	if (r->tcp_fd >= 0)
		close(r->tcp_fd);
	if (r->unix_fd >= 0) {
		close(r->unix_fd);
		unlink(r->unix_path);
	}
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	free(r->unix_buf);
	free(r->workers);
	free(r);
}

void dts_receiver_stats_read(const struct dts_receiver *r, struct dts_receiver_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i <= r->nworkers; i++) {
		const struct rx_stats *s = i < r->nworkers ? &r->workers[i].stats : &r->stream_stats;

		out->recv_calls += __atomic_load_n(&s->recv_calls, __ATOMIC_RELAXED);
		out->truncated += __atomic_load_n(&s->truncated, __ATOMIC_RELAXED);
		out->recv_errors += __atomic_load_n(&s->recv_errors, __ATOMIC_RELAXED);
		out->tcp_accepted += __atomic_load_n(&s->tcp_accepted, __ATOMIC_RELAXED);
		out->tcp_refused += __atomic_load_n(&s->tcp_refused, __ATOMIC_RELAXED);
		out->denied += __atomic_load_n(&s->denied, __ATOMIC_RELAXED);
		out->tcp_denied += __atomic_load_n(&s->tcp_denied, __ATOMIC_RELAXED);
		out->paused_ns += __atomic_load_n(&s->paused_ns, __ATOMIC_RELAXED);
	}
	/* The kernel's own count of what each UDP socket dropped (sk_drops: mostly a full receive buffer). getsockopt
	 * on a socket another thread reads is safe; the sockets live as long as r. */
	for (unsigned i = 0; i < r->nworkers; i++) {
		uint32_t mem[SK_MEMINFO_VARS];

		if (sock_meminfo(r->workers[i].fd, mem))
			out->socket_drops += mem[SK_MEMINFO_DROPS];
	}
}
