/*
 * strbuf.h - a growable string for the daemon's text output (/metrics, JSON replies, notification bodies).
 *
 * Zero-initialise (struct dts_sb b = { 0 }); append; take or free. The bytes are always NUL-terminated once anything
 * was appended (p is NULL before). On out of memory the string keeps what it had, oom is set, and every later append
 * is ignored: callers check oom once at the end instead of after every append. One owner; not for RX cores.
 */
#ifndef DTS_STRBUF_H
#define DTS_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct dts_sb {
	char *p;
	size_t len, cap;
	bool oom;
};

/* Room for n more bytes plus the NUL. Returns false (oom set) when it cannot be made. */
bool dts_sb_reserve(struct dts_sb *b, size_t n);
void dts_sb_put(struct dts_sb *b, const char *s, size_t n);
void dts_sb_cstr(struct dts_sb *b, const char *s);
void dts_sb_printf(struct dts_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The string (malloc'd, the caller frees it; "" when nothing was appended), or NULL after an out of memory (then
 * freed). b is empty afterwards. */
char *dts_sb_take(struct dts_sb *b);

void dts_sb_free(struct dts_sb *b);

#endif /* DTS_STRBUF_H */
