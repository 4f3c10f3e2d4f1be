/*
 * table.c - allocation and reset of the per-core aggregation table (see table.h for the layout and the ownership
 * rules). The insert path lives in core.c, next to the decoder loop that feeds it, so the compiler can inline it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bigmem.h"
#include "table.h"

/* A size of the room's share at capacity buckets: scaled down from the room, at least lo, 8-byte multiples for
 * arenas (unit 8) . */
static uint32_t share(uint32_t room, uint32_t room_cap, uint32_t capacity, uint32_t lo, uint32_t unit)
{
	uint64_t v = (uint64_t)room * capacity / room_cap;

	v -= v % unit;
	if (v < lo)
		v = lo;
	return v > room ? room : (uint32_t)v;
}

/* The timer and set logs at the share of a table of capacity buckets. */
static void set_log_capacity(struct dts__table *t, uint32_t capacity)
{
	const struct dts__table_cfg_sizes *r = &t->room;

	t->log_capacity = capacity;
	t->tlog_cap = share(r->tlog_entries, r->capacity, capacity, 4096, 1);
	t->slog_cap = share(r->slog_entries, r->capacity, capacity, 1024, 1);
}

/* capacity buckets, and every arena and log at its share of a table that size (the logs: at least). */
static void set_capacity(struct dts__table *t, uint32_t capacity)
{
	const struct dts__table_cfg_sizes *r = &t->room;

	t->mask = capacity - 1;
	t->shift = (uint32_t)__builtin_clz(capacity) + 1; /* capacity = 2^(31 - clz) */
	/* Linear probing stays short below 1/2 load; the rest is headroom while a hand-over is pending. */
	t->max_used = capacity / 2;
	t->keys_cap = share(r->keys_bytes, r->capacity, capacity, 4096, 1);
	set_log_capacity(t, capacity > t->log_capacity ? capacity : t->log_capacity);
	t->blob_cap = r->blob_bytes ? share(r->blob_bytes, r->capacity, capacity, DTS__BLOB_MIN, 8) : 0;
	t->proc_cap = r->proc_entries ? share(r->proc_entries, r->capacity, capacity, DTS__PROC_MIN, 1) : 0;
	t->ev_cap = r->event_bytes ? share(r->event_bytes, r->capacity, capacity, DTS__EVENT_MIN, 8) : 0;
}

struct dts__table *dts__table_create(const struct dts__table_cfg *cfg)
{
	const uint32_t initial = cfg->initial ? cfg->initial : cfg->capacity;
	struct dts__table *t;

	if (cfg->capacity < 64 || (cfg->capacity & (cfg->capacity - 1)) != 0 || initial < 64 ||
	    (initial & (initial - 1)) != 0 || initial > cfg->capacity || cfg->keys_bytes < 4096 ||
	    cfg->tlog_entries < 4096 || cfg->slog_entries < 1024 || (cfg->blob_bytes && cfg->blob_bytes < DTS__BLOB_MIN) ||
	    (cfg->proc_entries && cfg->proc_entries < DTS__PROC_MIN) ||
	    (cfg->event_bytes && cfg->event_bytes < DTS__EVENT_MIN) || cfg->blob_bytes % 8 || cfg->event_bytes % 8) {
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		goto out_nomem;
	t->room = (struct dts__table_cfg_sizes){ cfg->capacity,	    cfg->keys_bytes,   cfg->tlog_entries,
						 cfg->slog_entries, cfg->blob_bytes,   cfg->proc_entries,
						 cfg->event_bytes };
	set_capacity(t, initial);
	/* Every array is mapped up front at its room and resident only as far as it is used (see bigmem.h). The ones
	 * that take bytes for every new entry or timer value - buckets, identities, the timer log - are on huge pages:
	 * a table filling with new series faults once per 2 MiB instead of once per 4 KiB (~12 us a fault on the test
	 * VM). The others fill a few bytes per entry or only with partials, reports and events: 4 KiB pages, so that a
	 * table with little in it does not hold a 2 MiB page for each. */
	t->entries = dts__big_alloc((size_t)cfg->capacity * sizeof(struct dts__entry));
	t->used = dts__page_alloc((size_t)cfg->capacity * sizeof(uint32_t));
	t->gauges = dts__page_alloc((size_t)cfg->capacity * sizeof(uint32_t));
	t->keys = dts__big_alloc(cfg->keys_bytes);
	t->tlog = dts__big_alloc((size_t)cfg->tlog_entries * sizeof(struct dts__tlog));
	t->slog = dts__page_alloc((size_t)cfg->slog_entries * sizeof(struct dts__slog));
	if (cfg->blob_bytes)
		t->blob = dts__page_alloc(cfg->blob_bytes);
	if (cfg->proc_entries)
		t->proc = dts__page_alloc((size_t)cfg->proc_entries * sizeof(struct dts__proc));
	if (cfg->event_bytes)
		t->ev = dts__page_alloc(cfg->event_bytes);
	if (!t->entries || !t->used || !t->gauges || !t->keys || !t->tlog || !t->slog ||
	    (cfg->blob_bytes && !t->blob) || (cfg->proc_entries && !t->proc) || (cfg->event_bytes && !t->ev))
		goto out_free_table;
	return t;

out_free_table:
	dts__table_destroy(t);
out_nomem:
	errno = ENOMEM;
	return NULL;
}

void dts__table_destroy(struct dts__table *t)
{
	if (!t)
		return;
	dts__big_free(t->entries, (size_t)t->room.capacity * sizeof(struct dts__entry));
	dts__big_free(t->used, (size_t)t->room.capacity * sizeof(uint32_t));
	dts__big_free(t->gauges, (size_t)t->room.capacity * sizeof(uint32_t));
	dts__big_free(t->keys, t->room.keys_bytes);
	dts__big_free(t->tlog, (size_t)t->room.tlog_entries * sizeof(struct dts__tlog));
	dts__big_free(t->slog, (size_t)t->room.slog_entries * sizeof(struct dts__slog));
	dts__big_free(t->blob, t->room.blob_bytes);
	dts__big_free(t->proc, (size_t)t->room.proc_entries * sizeof(struct dts__proc));
	dts__big_free(t->ev, t->room.event_bytes);
	free(t);
}

void dts__table_reset(struct dts__table *t)
{
	for (uint32_t i = 0; i < t->n_used; i++)
		t->entries[t->used[i]].hash = 0;
	t->n_used = 0;
	t->n_gauges = 0;
	t->keys_used = 0;
	t->n_tlog = 0;
	t->n_slog = 0;
	t->blob_used = 0;
	t->n_blob = 0;
	t->n_proc = 0;
	t->ev_used = 0;
	t->n_ev = 0;
	t->has_base = false;
}

size_t dts__table_prefault(struct dts__table *t, uint32_t capacity)
{
	const struct dts__table_cfg_sizes *r = &t->room;
	const uint32_t cap = capacity < r->capacity ? capacity : r->capacity;
	const size_t buckets = (size_t)cap * sizeof(struct dts__entry), lists = (size_t)cap * sizeof(uint32_t),
		     keys = share(r->keys_bytes, r->capacity, cap, 4096, 1);

	if (dts__big_prefault(t->entries, buckets) != 0 || dts__big_prefault(t->used, lists) != 0 ||
	    dts__big_prefault(t->gauges, lists) != 0 || dts__big_prefault(t->keys, keys) != 0)
		return SIZE_MAX;
	return buckets + 2 * lists + keys;
}

bool dts__table_grow(struct dts__table *t, uint32_t capacity)
{
	if (capacity <= t->mask || capacity > t->room.capacity || (capacity & (capacity - 1)) || !dts__table_empty(t) ||
	    t->keys_used || t->n_tlog || t->n_slog || t->blob_used || t->ev_used)
		return false;
	set_capacity(t, capacity); /* the buckets beyond the old mask were never used: still zero */
	return true;
}

bool dts__table_grow_logs(struct dts__table *t, uint32_t capacity)
{
	if (capacity <= t->log_capacity || capacity > t->room.capacity || (capacity & (capacity - 1)) ||
	    !dts__table_empty(t) || t->n_tlog || t->n_slog)
		return false;
	set_log_capacity(t, capacity);
	return true;
}
