/*
 * strbuf.c - the growable string of strbuf.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

bool dts_sb_reserve(struct dts_sb *b, size_t n)
{
	size_t cap;
	char *np;

	if (b->oom)
		return false;
	if (b->len + n + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + n + 1)
		cap *= 2;
	np = realloc(b->p, cap);
	if (!np) {
		b->oom = true;
		return false;
	}
	b->p = np;
	b->cap = cap;
	return true;
}

void dts_sb_put(struct dts_sb *b, const char *s, size_t n)
{
	if (!dts_sb_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void dts_sb_cstr(struct dts_sb *b, const char *s)
{
	dts_sb_put(b, s, strlen(s));
}

void dts_sb_printf(struct dts_sb *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if (!b->p || b->len + (size_t)n + 1 > b->cap) { /* did not fit: grow, then format again */
		if (!dts_sb_reserve(b, (size_t)n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

char *dts_sb_take(struct dts_sb *b)
{
	char *s = b->oom ? NULL : b->p ? b->p : strdup("");

	if (b->oom)
		free(b->p);
	memset(b, 0, sizeof(*b));
	return s;
}

void dts_sb_free(struct dts_sb *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}
