/*
 * client.c - libdattss handles: open (arguments or environment), flush, stats, close, and the one-shot send for tools.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "client_internal.h"
#include "dts/hash.h"
#include "normalize.h"

static _Atomic uint64_t g_gen = 1;

/* 1 .. 65535 in decimal (getaddrinfo takes "99999" and wraps it). */
static bool port_valid(const char *p)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; p[i]; i++) {
		if (p[i] < '0' || p[i] > '9' || i >= 5)
			return false;
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	return i > 0 && v >= 1 && v <= 65535;
}

/* "host:port", "host", "[v6]:port", "[v6]". Returns 0 or -EINVAL / -EADDRNOTAVAIL. May block on DNS. */
int dts__resolve(const char *server, struct sockaddr_storage *sa, socklen_t *salen)
{
	char host[256];
	const char *port = DTS__DEFAULT_PORT, *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV }, *res;
	size_t n;

	if (!server || !*server)
		return -EINVAL;
	if (server[0] == '[') {
		const char *end = strchr(server, ']');

		if (!end || (end[1] && end[1] != ':'))
			return -EINVAL;
		n = (size_t)(end - server - 1);
		if (end[1] == ':')
			port = end + 2;
		server++;
	} else {
		colon = strrchr(server, ':');
		if (colon && strchr(server, ':') != colon)
			colon = NULL; /* a bare IPv6 address */
		n = colon ? (size_t)(colon - server) : strlen(server);
		if (colon)
			port = colon + 1;
	}
	if (n == 0 || n >= sizeof(host) || !port_valid(port))
		return -EINVAL;
	memcpy(host, server, n);
	host[n] = '\0';
	if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
		return -EADDRNOTAVAIL;
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	*salen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int udp_connect(const char *server, bool nonblock)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	int fd, r = dts__resolve(server, &sa, &salen);

	if (r)
		return r;
	fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, salen) != 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static uint64_t random_instance(void)
{
	uint64_t v;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == sizeof(v))
		return v;
	/* no entropy yet (early boot): unique enough for a replay-window key, which is all it is */
	return dts_hash64_more(dts__now_ns(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32), &v, sizeof(v));
}

/* Validate and copy the identity into d. Returns 0 or -EINVAL. */
static int set_identity(struct dts *d, const char *user, uint32_t key_id, const char *secret, const char *process)
{
	size_t n;

	if (!user || !secret || !process)
		return -EINVAL;
	n = strnlen(user, DTS_MAX_USER + 1);
	if (!dts_native_user_valid(user, n))
		return -EINVAL;
	memcpy(d->user, user, n);
	d->user_len = n;
	n = strnlen(process, 1024);
	d->process_len = dts__normalize(process, n, d->process, DTS_NATIVE_MAX_PROCESS, false);
	if (d->process_len == 0 || d->process_len > DTS_NATIVE_MAX_PROCESS)
		return -EINVAL;
	d->key_id = key_id;
	return dts_native_mac_key_init(&d->mac, secret, strlen(secret));
}

static void free_handle(struct dts *d)
{
	struct dts__thr *t;

	while ((t = d->threads) != NULL) {
		d->threads = t->next;
		dts__thr_free(t);
	}
	dts__tab_free(&d->batch);
	free(d->events);
	free(d->snap);
	if (d->fd >= 0)
		close(d->fd);
	if (d->statm_fd >= 0)
		close(d->statm_fd);
	dts_native_mac_key_wipe(&d->mac);
	pthread_mutex_destroy(&d->reg_lock);
	pthread_mutex_destroy(&d->flush_lock);
	pthread_mutex_destroy(&d->wake_lock);
	pthread_cond_destroy(&d->wake);
	free(d);
}

struct dts *dts_open(const char *server, const char *user, uint32_t key_id, const char *secret, const char *process)
{
	struct dts *d;
	int r;

	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->fd = -1;
	d->statm_fd = -1;
	pthread_mutex_init(&d->reg_lock, NULL);
	pthread_mutex_init(&d->flush_lock, NULL);
	pthread_mutex_init(&d->wake_lock, NULL);
	pthread_cond_init(&d->wake, NULL);
	dts__tab_init(&d->batch, DTS__SND_MAX_SLOTS, DTS__SND_MAX_TIMERS);
	r = set_identity(d, user, key_id, secret, process);
	if (r)
		goto out_free;
	d->events = calloc(DTS__SND_EVENTS, sizeof(*d->events));
	if (!d->events) {
		r = -ENOMEM;
		goto out_free;
	}
	r = udp_connect(server, true);
	if (r < 0)
		goto out_free;
	d->fd = r;
	d->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	d->gen = atomic_fetch_add(&g_gen, 1);
	d->instance = random_instance();
	d->seq = 1;
	d->open_mono_ns = dts__now_ns(CLOCK_MONOTONIC);
	dts__mb_init();
	{
		struct dts_native_stats s;

		dts__proc_stats(d, &s); /* CPU baseline for the first period's usage */
	}
	dts__registry_add(d);
	r = -pthread_create(&d->sender, NULL, dts__sender_main, d);
	if (r) {
		dts__registry_remove(d);
		goto out_free;
	}
	pthread_setname_np(d->sender, "dattss-sender"); /* visible in top -H; failure is harmless */
	d->sender_running = true;
	return d;

out_free:
	free_handle(d);
	errno = -r;
	return NULL;
}

struct dts *dts_open_env(void)
{
	const char *server = getenv("DATTSS_SERVER"), *user = getenv("DATTSS_USER"), *key = getenv("DATTSS_KEY_ID");
	const char *secret = getenv("DATTSS_SECRET"), *process = getenv("DATTSS_PROCESS");
	unsigned long long k;
	char *end;

	if (!user || !key || !secret || !*key) {
		errno = EINVAL;
		return NULL;
	}
	errno = 0;
	k = strtoull(key, &end, 10);
	if (errno || *end || k > UINT32_MAX || key[0] == '-' || key[0] == '+') {
		errno = EINVAL;
		return NULL;
	}
	return dts_open(server && *server ? server : "127.0.0.1:" DTS__DEFAULT_PORT, user, (uint32_t)k, secret,
			process && *process ? process : program_invocation_short_name);
}

static int64_t current_slot(void)
{
	int64_t now = dts__now_ns(CLOCK_REALTIME) / 1000000000;

	return now - now % DTS_SLOT_SECONDS;
}

int dts_flush(struct dts *d)
{
	int r;

	if (!d)
		return -EINVAL;
	pthread_mutex_lock(&d->flush_lock);
	r = dts__period(d, current_slot());
	pthread_mutex_unlock(&d->flush_lock);
	return r;
}

int dts_close(struct dts *d)
{
	int r;

	if (!d)
		return 0;
	if (d->sender_running) {
		pthread_mutex_lock(&d->wake_lock);
		d->stop = true;
		pthread_cond_signal(&d->wake);
		pthread_mutex_unlock(&d->wake_lock);
		pthread_join(d->sender, NULL);
	}
	r = dts_flush(d);
	dts__registry_remove(d); /* after this, exiting threads no longer touch d's buffers */
	free_handle(d);
	return r;
}

void dts_stats(struct dts *d, struct dts_client_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!d)
		return;
	pthread_mutex_lock(&d->flush_lock);
	pthread_mutex_lock(&d->reg_lock);
	*out = d->st;
	/* live counters, not those summed for the last batch */
	out->errors = d->dead_errors;
	out->warnings = d->dead_warnings;
	out->dropped_values = d->dead_dropped_values + d->snd_dropped_values;
	out->dropped_events = d->dead_dropped_events + d->snd_dropped_events;
	out->threads = d->nthreads;
	for (struct dts__thr *t = d->threads; t; t = t->next) {
		out->errors += atomic_load_explicit(&t->errors, memory_order_relaxed);
		out->warnings += atomic_load_explicit(&t->warnings, memory_order_relaxed);
		out->dropped_values += atomic_load_explicit(&t->dropped_values, memory_order_relaxed);
		out->dropped_events += atomic_load_explicit(&t->dropped_events, memory_order_relaxed);
	}
	pthread_mutex_unlock(&d->reg_lock);
	pthread_mutex_unlock(&d->flush_lock);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* One-shot send                                                                                                    */

struct one_ctx {
	int fd;
	int err;
};

static int one_emit(void *ctx, const uint8_t *dgram, size_t len)
{
	struct one_ctx *c = ctx;

	if (send(c->fd, dgram, len, 0) != (ssize_t)len && !c->err)
		c->err = -errno;
	return 0;
}

int dts_send_one(const char *server, const char *user, uint32_t key_id, const char *secret, const char *process,
		 const char *name, const char *value)
{
	struct dts *d;
	struct dts_native_enc *enc;
	struct dts_native_partial p = { .tags = "" };
	struct dts_sketch sk;
	struct one_ctx c = { .fd = -1 };
	char norm[DTS_MAX_NAME];
	uint8_t type, flags;
	double v;
	int r, n;

	/* a handle without a thread holds the identity; the encoder is 5.5 KiB, so it goes on the heap too */
	d = calloc(1, sizeof(*d));
	enc = malloc(sizeof(*enc));
	dts_sketch_init(&sk);
	if (!d || !enc) {
		r = -ENOMEM;
		goto out;
	}
	d->fd = d->statm_fd = -1;
	r = set_identity(d, user, key_id, secret, process);
	if (r == 0 && (!name || dts__parse_value(value, &v, &type, &flags)))
		r = -EINVAL;
	if (r)
		goto out;
	n = dts__normalize_name(name, strnlen(name, DTS__RAW_NAME_MAX + 1), norm, d->process_len);
	if (n < 0 || strnlen(name, DTS__RAW_NAME_MAX + 1) > DTS__RAW_NAME_MAX) {
		r = -EINVAL;
		goto out;
	}
	r = udp_connect(server, false);
	if (r < 0)
		goto out;
	c.fd = r;
	d->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	d->open_mono_ns = dts__now_ns(CLOCK_MONOTONIC);
	d->seq = 1;
	{
		struct dts_native_hdr h = {
			.key_id = key_id,
			.instance = random_instance(),
			.slot = current_slot(),
			.user = d->user,
			.user_len = d->user_len,
			.process = d->process,
			.process_len = d->process_len,
		};

		dts__proc_stats(d, &h.stats);
		p.name = norm;
		p.name_len = (uint16_t)n;
		p.type = type;
		p.flags = flags;
		dts_agg_init(&p.agg);
		dts_agg_add(&p.agg, v, 1.0);
		if (type == DTS_TIMER) {
			r = dts_sketch_add(&sk, v, 1.0);
			if (r)
				goto out;
			p.sketch = &sk;
		}
		r = dts_native_enc_begin(enc, &h, &d->mac, &d->seq, one_emit, &c);
		if (r == 0)
			r = dts_native_enc_partial(enc, &p);
		if (r == 0)
			r = dts_native_enc_end(enc);
		if (r > 0)
			r = c.err;
	}
out:
	if (c.fd >= 0)
		close(c.fd);
	dts_sketch_free(&sk);
	free(enc);
	if (d) {
		if (d->statm_fd >= 0)
			close(d->statm_fd);
		OPENSSL_cleanse(&d->mac, sizeof(d->mac));
		free(d);
	}
	return r;
}
