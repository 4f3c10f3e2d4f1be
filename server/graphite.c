/*
 * graphite.c - Graphite plaintext export of closed minutes (contract and path format in graphite.h).
 *
 * The merger thread only copies: a closed minute becomes one allocation (records + their identity strings) pushed on
 * a queue bounded in minutes and in records; the queue's mutex is held for a pointer push or pop, never across I/O.
 * The export thread owns the socket: it formats each batch into text, writes it, and takes the batch off the queue
 * only once the whole batch went out, so a connection that fails half-way loses nothing (the batch is sent again
 * after the backoff).
 *
 * A peer that closed the connection is noticed before each batch (the socket polls readable: carbon never sends,
 * so readable means EOF or a reset); without that check the first batch after a carbon restart would vanish into
 * a socket the kernel still considers open.
 */
#define _GNU_SOURCE
#include "graphite.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define SEND_CHUNK (64u << 10) /* text formatted and written per send: a few hundred lines */

/* One series-minute as copied on the merger thread. */
struct grec {
	uint32_t name; /* offset in the batch's strings: "user\0process\0counter\0tags\0" */
	uint8_t type;
	double count, sum, min, max, lst;
	double q[4]; /* timers: bot10, top10, p50, p99 */
	double distinct; /* sets */
};

struct gbatch {
	struct gbatch *next;
	int64_t t; /* start of the minute, unix seconds */
	size_t n;
	struct grec *recs;
	char *strings;
};

struct dts_graphite {
	struct dts_graphite_cfg cfg;
	char *host, *prefix;
	char port[8];
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	/* under lock */
	struct gbatch *head, *tail;
	unsigned queued_minutes;
	size_t queued_records;
	bool stop;
	int64_t stop_deadline_ms;
	/* export thread only */
	int fd;
	unsigned backoff_ms;
	bool down_logged;
	/* counters: one writer each (relaxed) */
	_Atomic uint64_t minutes_sent, lines_sent, bytes_sent, connects, errors, minutes_dropped, records_dropped,
		late_skipped, queue_records;
};

static const char *const quantile_names[4] = { "bot10", "top10", "p50", "p99" };
static const double quantile_q[4] = { 0.1, 0.9, 0.5, 0.99 };

#define INC(g, field, v) atomic_fetch_add_explicit(&(g)->field, (v), memory_order_relaxed)

void dts_graphite_cfg_defaults(struct dts_graphite_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->port = 2003;
	cfg->prefix = "dattss";
	cfg->queue_minutes = 10;
	cfg->queue_records = 1u << 20;
	cfg->retry_min_ms = 1000;
	cfg->retry_max_ms = 30000;
	cfg->io_timeout_ms = 5000;
	cfg->stop_timeout_ms = 5000;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- merger thread: copy and queue ------------------------------------------------------------------------------ */

static void drop_minute(struct dts_graphite *g, size_t records)
{
	INC(g, minutes_dropped, 1);
	INC(g, records_dropped, records);
}

void dts_graphite_minute(struct dts_graphite *g, const struct dts_closed_minute *cm)
{
	size_t strings = 0, off = 0;
	struct gbatch *b;
	bool full;

	if (cm->open || cm->n == 0)
		return;
	if (cm->late) {
		INC(g, late_skipped, cm->n);
		return;
	}
	pthread_mutex_lock(&g->lock);
	full = g->queued_minutes >= g->cfg.queue_minutes || g->queued_records + cm->n > g->cfg.queue_records;
	pthread_mutex_unlock(&g->lock);
	if (full) {
		drop_minute(g, cm->n);
		return;
	}
	for (size_t i = 0; i < cm->n; i++) {
		const struct dts_minute_rec *r = &cm->recs[i];

		strings += strlen(r->user) + strlen(r->process) + strlen(r->counter) + strlen(r->tags ? r->tags : "") + 4;
	}
	if (strings > UINT32_MAX) {
		drop_minute(g, cm->n);
		return;
	}
	b = malloc(sizeof(*b) + cm->n * sizeof(struct grec) + strings);
	if (!b) {
		drop_minute(g, cm->n);
		return;
	}
	b->next = NULL;
	b->t = cm->minute * 60;
	b->n = cm->n;
	b->recs = (struct grec *)(b + 1);
	b->strings = (char *)(b->recs + cm->n);
	for (size_t i = 0; i < cm->n; i++) {
		const struct dts_minute_rec *r = &cm->recs[i];
		struct grec *o = &b->recs[i];
		const char *parts[4] = { r->user, r->process, r->counter, r->tags ? r->tags : "" };

		o->name = (uint32_t)off;
		for (int k = 0; k < 4; k++) {
			size_t len = strlen(parts[k]) + 1;

			memcpy(b->strings + off, parts[k], len);
			off += len;
		}
		o->type = r->type;
		o->count = r->agg.count;
		o->sum = r->agg.sum;
		o->min = r->agg.min;
		o->max = r->agg.max;
		o->lst = r->agg.lst;
		for (int k = 0; k < 4; k++)
			o->q[k] = r->type == DTS_TIMER ? dts_sketch_quantile(&r->sketch, quantile_q[k]) : NAN;
		o->distinct = r->type == DTS_SET ? dts_set_cardinality(&r->set) : NAN;
	}
	pthread_mutex_lock(&g->lock);
	if (g->tail)
		g->tail->next = b;
	else
		g->head = b;
	g->tail = b;
	g->queued_minutes++;
	g->queued_records += b->n;
	atomic_store_explicit(&g->queue_records, g->queued_records, memory_order_relaxed);
	pthread_cond_signal(&g->wake);
	pthread_mutex_unlock(&g->lock);
}

/* ---- export thread: format and send ----------------------------------------------------------------------------- */

struct text {
	char *p;
	size_t len, cap;
};

static bool text_reserve(struct text *t, size_t n)
{
	if (t->len + n <= t->cap)
		return true;
	size_t cap = t->cap ? t->cap : SEND_CHUNK * 2;
	while (cap < t->len + n)
		cap *= 2;
	char *np = realloc(t->p, cap);
	if (!np)
		return false;
	t->p = np;
	t->cap = cap;
	return true;
}

/* Append s with every byte outside the allowed set (and, for the user, '.' and '@') replaced by '_'. */
static void text_node(struct text *t, const char *s, bool dots)
{
	for (; *s; s++) {
		char c = *s;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      (dots && c == '.')))
			c = '_';
		t->p[t->len++] = c;
	}
}

/* One line: PATH(name parts, stat)[;tags] value t. Needs the space reserved by the caller. */
static void text_line(struct dts_graphite *g, struct text *t, const char *user, const char *process,
		      const char *counter, const char *tags, const char *stat, double v, int64_t ts)
{
	if (g->prefix[0]) {
		t->len += (size_t)sprintf(t->p + t->len, "%s.", g->prefix);
	}
	text_node(t, user, false);
	t->p[t->len++] = '.';
	text_node(t, process, true);
	t->p[t->len++] = '.';
	text_node(t, counter, true);
	t->p[t->len++] = '.';
	t->len += (size_t)sprintf(t->p + t->len, "%s", stat);
	while (*tags) { /* "k:v,k2" -> ";k=v;k2=true" */
		const char *end = strchr(tags, ','), *colon;
		size_t len = end ? (size_t)(end - tags) : strlen(tags);
		char tag[DTS_MAX_TAGS_LEN + 1];

		memcpy(tag, tags, len);
		tag[len] = '\0';
		colon = strchr(tag, ':');
		t->p[t->len++] = ';';
		if (colon) {
			tag[colon - tag] = '\0';
			text_node(t, tag, true);
			t->p[t->len++] = '=';
			text_node(t, colon + 1, true);
		} else {
			text_node(t, tag, true);
			t->len += (size_t)sprintf(t->p + t->len, "=true");
		}
		tags += len + (end ? 1 : 0);
	}
	t->len += (size_t)sprintf(t->p + t->len, " %.15g %lld\n", v, (long long)ts);
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -(errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Format and write a whole batch. Returns 0, -errno on a write error, -ENOMEM. Counts lines and bytes sent. */
static int send_batch(struct dts_graphite *g, const struct gbatch *b)
{
	struct text t = { 0 };
	uint64_t lines = 0, bytes = 0;
	int rc = 0;

	for (size_t i = 0; i < b->n && rc == 0; i++) {
		const struct grec *r = &b->recs[i];
		const char *user = b->strings + r->name, *process = user + strlen(user) + 1;
		const char *counter = process + strlen(process) + 1, *tags = counter + strlen(counter) + 1;
		/* every stat's line fits this: the names, the prefix, 2x tags (each ',' becomes ";..=true") and numbers */
		size_t line_max = strlen(g->prefix) + strlen(user) + strlen(process) + strlen(counter) + 3 * strlen(tags) +
				  (DTS_MAX_TAGS + 1) * 6 + 64;
		struct {
			const char *stat;
			double v;
		} st[9];
		size_t ns = 0;

		st[ns].stat = "count";
		st[ns++].v = r->count;
		switch (r->type) {
		case DTS_COUNTER:
			st[ns].stat = "sum";
			st[ns++].v = r->sum;
			st[ns].stat = "rate";
			st[ns++].v = r->sum / 60.0;
			break;
		case DTS_TIMER:
			st[ns].stat = "sum";
			st[ns++].v = r->sum;
			st[ns].stat = "avg";
			st[ns++].v = r->count > 0 ? r->sum / r->count : NAN;
			st[ns].stat = "min";
			st[ns++].v = r->min;
			st[ns].stat = "max";
			st[ns++].v = r->max;
			for (int k = 0; k < 4; k++) {
				st[ns].stat = quantile_names[k];
				st[ns++].v = r->q[k];
			}
			break;
		case DTS_GAUGE:
			st[ns].stat = "value";
			st[ns++].v = r->lst;
			st[ns].stat = "avg";
			st[ns++].v = r->count > 0 ? r->sum / r->count : NAN;
			st[ns].stat = "min";
			st[ns++].v = r->min;
			st[ns].stat = "max";
			st[ns++].v = r->max;
			break;
		default:
			st[ns].stat = "distinct";
			st[ns++].v = r->distinct;
			break;
		}
		for (size_t k = 0; k < ns; k++) {
			if (!isfinite(st[k].v))
				continue;
			if (!text_reserve(&t, line_max)) {
				rc = -ENOMEM;
				break;
			}
			text_line(g, &t, user, process, counter, tags, st[k].stat, st[k].v, b->t);
			lines++;
		}
		if (rc == 0 && (t.len >= SEND_CHUNK || i + 1 == b->n)) {
			rc = send_all(g->fd, t.p, t.len);
			bytes += t.len;
			t.len = 0;
		}
	}
	free(t.p);
	if (rc == 0) {
		INC(g, lines_sent, lines);
		INC(g, bytes_sent, bytes);
	}
	return rc;
}

/* Connect to the first address of host:port that answers within io_timeout_ms. Returns the fd or -errno. */
static int connect_carbon(struct dts_graphite *g, char *why, size_t whylen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai, *a;
	struct timeval tv = { .tv_sec = g->cfg.io_timeout_ms / 1000, .tv_usec = (g->cfg.io_timeout_ms % 1000) * 1000 };
	int rc = getaddrinfo(g->host, g->port, &hints, &ai), fd = -1, err = ECONNREFUSED;

	if (rc != 0) {
		snprintf(why, whylen, "cannot resolve %s: %s", g->host, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	for (a = ai; a && fd < 0; a = a->ai_next) {
		struct pollfd pfd;
		socklen_t len = sizeof(err);

		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
			err = errno;
		} else {
			pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
			if (poll(&pfd, 1, (int)g->cfg.io_timeout_ms) != 1)
				err = ETIMEDOUT;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
				err = errno;
		}
		if (err) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		snprintf(why, whylen, "cannot connect to %s port %s: %s", g->host, g->port, strerror(err));
		return -err;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/* True when the peer has closed (or reset) the connection: carbon never sends, so anything readable means that. */
static bool peer_closed(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&pfd, 1, 0) != 1)
		return false;
	return recv(fd, &c, 1, MSG_DONTWAIT) <= 0 || (pfd.revents & (POLLHUP | POLLERR));
}

/* Wait up to ms, or until stop is asked (returns at once then). Called with the lock held. */
static void backoff_wait(struct dts_graphite *g, unsigned ms)
{
	struct timespec until;
	int64_t t = now_ms() + ms;

	if (g->stop && t > g->stop_deadline_ms)
		t = g->stop_deadline_ms;
	until.tv_sec = t / 1000;
	until.tv_nsec = (t % 1000) * 1000000L;
	pthread_cond_timedwait(&g->wake, &g->lock, &until);
}

static void fail(struct dts_graphite *g, const char *why)
{
	INC(g, errors, 1);
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
	if (!g->down_logged) /* once per outage, not once per retry */
		dts_warn("graphite", "%s; retrying every %u..%u ms (minutes are queued, up to %u)", why,
			 g->cfg.retry_min_ms, g->cfg.retry_max_ms, g->cfg.queue_minutes);
	g->down_logged = true;
	g->backoff_ms = g->backoff_ms ? g->backoff_ms * 2 : g->cfg.retry_min_ms;
	if (g->backoff_ms > g->cfg.retry_max_ms)
		g->backoff_ms = g->cfg.retry_max_ms;
}

static void *graphite_main(void *arg)
{
	struct dts_graphite *g = arg;
	char why[256];

	pthread_setname_np(pthread_self(), "dts-graphite");
	pthread_mutex_lock(&g->lock);
	for (;;) {
		struct gbatch *b;
		int rc;

		while (!g->head && !g->stop)
			pthread_cond_wait(&g->wake, &g->lock);
		if (!g->head || (g->stop && now_ms() >= g->stop_deadline_ms))
			break;
		b = g->head;
		pthread_mutex_unlock(&g->lock);

		if (g->fd >= 0 && peer_closed(g->fd)) {
			close(g->fd);
			g->fd = -1;
		}
		if (g->fd < 0) {
			rc = connect_carbon(g, why, sizeof(why));
			if (rc >= 0) {
				g->fd = rc;
				INC(g, connects, 1);
				if (g->down_logged)
					dts_info("graphite", "connected to %s port %s again", g->host, g->port);
				g->down_logged = false;
			}
		} else {
			rc = 0;
		}
		if (rc >= 0) {
			rc = send_batch(g, b);
			if (rc < 0)
				snprintf(why, sizeof(why), "writing to %s port %s failed: %s", g->host, g->port,
					 strerror(-rc));
		}
		pthread_mutex_lock(&g->lock);
		if (rc < 0) {
			fail(g, why);
			backoff_wait(g, g->backoff_ms);
			continue;
		}
		g->backoff_ms = 0;
		g->head = b->next;
		if (!g->head)
			g->tail = NULL;
		g->queued_minutes--;
		g->queued_records -= b->n;
		atomic_store_explicit(&g->queue_records, g->queued_records, memory_order_relaxed);
		INC(g, minutes_sent, 1);
		free(b);
	}
	/* stopping: what could not be sent in time is dropped, and counted */
	while (g->head) {
		struct gbatch *b = g->head;

		g->head = b->next;
		drop_minute(g, b->n);
		free(b);
	}
	g->tail = NULL;
	g->queued_minutes = 0;
	g->queued_records = 0;
	atomic_store_explicit(&g->queue_records, 0, memory_order_relaxed);
	pthread_mutex_unlock(&g->lock);
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
	return NULL;
}

struct dts_graphite *dts_graphite_start(const struct dts_graphite_cfg *cfg, char *err, size_t errlen)
{
	struct dts_graphite *g = calloc(1, sizeof(*g));

	if (!g || !cfg->host || !cfg->host[0]) {
		free(g);
		snprintf(err, errlen, g ? "graphite_host: required" : "out of memory");
		errno = g ? EINVAL : ENOMEM;
		return NULL;
	}
	g->cfg = *cfg;
	g->host = strdup(cfg->host);
	g->prefix = strdup(cfg->prefix ? cfg->prefix : "");
	snprintf(g->port, sizeof(g->port), "%u", cfg->port);
	g->fd = -1;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->wake, NULL);
	if (!g->host || !g->prefix || pthread_create(&g->thread, NULL, graphite_main, g) != 0) {
		snprintf(err, errlen, "graphite: cannot start the export thread");
		pthread_cond_destroy(&g->wake);
		pthread_mutex_destroy(&g->lock);
		free(g->host);
		free(g->prefix);
		free(g);
		errno = EAGAIN;
		return NULL;
	}
	return g;
}

void dts_graphite_stop(struct dts_graphite *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	g->stop_deadline_ms = now_ms() + g->cfg.stop_timeout_ms;
	pthread_cond_signal(&g->wake);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
	pthread_cond_destroy(&g->wake);
	pthread_mutex_destroy(&g->lock);
	free(g->host);
	free(g->prefix);
	free(g);
}

void dts_graphite_stats_read(const struct dts_graphite *g, struct dts_graphite_stats *out)
{
#define LOAD(f) out->f = atomic_load_explicit(&g->f, memory_order_relaxed)
	LOAD(minutes_sent);
	LOAD(lines_sent);
	LOAD(bytes_sent);
	LOAD(connects);
	LOAD(errors);
	LOAD(minutes_dropped);
	LOAD(records_dropped);
	LOAD(late_skipped);
	LOAD(queue_records);
#undef LOAD
}
