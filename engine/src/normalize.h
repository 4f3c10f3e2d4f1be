/*
 * normalize.h - metric name normalisation shared by the statsd and DaTtSs line decoders (engine-internal).
 *
 * The rules are Etsy statsd's sanitizeKeyName(), applied in its order:
 *     key.replace(/\s+/g, '_').replace(/\//g, '-').replace(/[^a-zA-Z_\-0-9\.]/g, '')
 * done here in one pass over the bytes:
 *   - a run of whitespace becomes one '_'. Whitespace is JavaScript's \s: ASCII \t \n \v \f \r and space, and the
 *     UTF-8 encodings of U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 and U+FEFF. Runs are
 *     found in the original text, so a dropped character between two spaces splits the run (" \x01 " -> "__"),
 *     as it does in Etsy (its whitespace pass runs before its drop pass);
 *   - '/' becomes '-';
 *   - every other byte outside [A-Za-z0-9_.-] is dropped. Bytes >= 0x80 that do not start one of the whitespace
 *     sequences above are dropped one by one, which is what Etsy does to the non-ASCII characters of its UTF-16
 *     string (invalid UTF-8 decodes to U+FFFD, also dropped). Lead bytes of those sequences are never UTF-8
 *     continuation bytes, so byte-wise matching finds exactly the characters a UTF-8 decoder would.
 * Tags use the same rules with ':' kept (key:value).
 *
 * Everything here is a pure function; callable from any thread.
 */
#ifndef DTS_NORMALIZE_H
#define DTS_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Byte classes. DTS__NC_KEEP bytes are copied unchanged; a name made only of them needs no copy. */
enum {
	DTS__NC_DROP = 0, /* any other ASCII byte: dropped */
	DTS__NC_KEEP, /* [A-Za-z0-9_.-] */
	DTS__NC_SPACE, /* ASCII whitespace */
	DTS__NC_SLASH, /* '/' -> '-' */
	DTS__NC_COLON, /* ':' - ends a statsd name; kept in tags; dropped in DaTtSs names (never occurs there) */
	DTS__NC_PIPE, /* '|' - ends a statsd name */
	DTS__NC_HIGH, /* >= 0x80: maybe a UTF-8 whitespace character, otherwise dropped */
};

static const uint8_t dts__name_class[256] = {
	['\t'] = DTS__NC_SPACE, ['\n'] = DTS__NC_SPACE, ['\v'] = DTS__NC_SPACE, ['\f'] = DTS__NC_SPACE,
	['\r'] = DTS__NC_SPACE, [' '] = DTS__NC_SPACE,	['/'] = DTS__NC_SLASH,	[':'] = DTS__NC_COLON,
	['|'] = DTS__NC_PIPE,	['-'] = DTS__NC_KEEP,	['.'] = DTS__NC_KEEP,	['_'] = DTS__NC_KEEP,
	['0' ... '9'] = DTS__NC_KEEP,			['A' ... 'Z'] = DTS__NC_KEEP,
	['a' ... 'z'] = DTS__NC_KEEP,			[0x80 ... 0xff] = DTS__NC_HIGH,
};

static inline bool dts__name_keep(unsigned char c)
{
	return dts__name_class[c] == DTS__NC_KEEP;
}

/* Length of the UTF-8 whitespace character (JavaScript \s, non-ASCII part) starting at p, or 0. */
static inline size_t dts__utf8_space(const unsigned char *p, size_t n)
{
	switch (p[0]) {
	case 0xc2: /* U+00A0 */
		return n >= 2 && p[1] == 0xa0 ? 2 : 0;
	case 0xe1: /* U+1680 */
		return n >= 3 && p[1] == 0x9a && p[2] == 0x80 ? 3 : 0;
	case 0xe2:
		if (n < 3)
			return 0;
		if (p[1] == 0x80) /* U+2000..U+200A, U+2028, U+2029, U+202F */
			return (p[2] >= 0x80 && p[2] <= 0x8a) || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf ? 3 : 0;
		return p[1] == 0x81 && p[2] == 0x9f ? 3 : 0; /* U+205F */
	case 0xe3: /* U+3000 */
		return n >= 3 && p[1] == 0x80 && p[2] == 0x80 ? 3 : 0;
	case 0xef: /* U+FEFF */
		return n >= 3 && p[1] == 0xbb && p[2] == 0xbf ? 3 : 0;
	default:
		return 0;
	}
}

/*
 * Normalise [in, in + len) into out, writing at most cap bytes. keep_colon keeps ':' (tags); otherwise ':' and '|'
 * are dropped like any other byte. Returns the normalised length, or cap + 1 when the result would be longer than
 * cap (out then holds a cap-byte prefix). Work: O(len).
 */
static inline size_t dts__normalize(const char *in, size_t len, char *out, size_t cap, bool keep_colon)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0;
	bool in_space = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];
		unsigned cls = dts__name_class[c];
		size_t ws = cls == DTS__NC_SPACE ? 1 : cls == DTS__NC_HIGH ? dts__utf8_space(p + i, len - i) : 0;

		if (ws != 0) {
			i += ws - 1;
			if (in_space)
				continue;
			in_space = true;
			c = '_';
		} else {
			in_space = false;
			if (cls == DTS__NC_SLASH)
				c = '-';
			else if (cls != DTS__NC_KEEP && !(cls == DTS__NC_COLON && keep_colon))
				continue;
		}
		if (o == cap)
			return cap + 1;
		out[o++] = (char)c;
	}
	return o;
}

/* True when every byte of [p, p + n) is ASCII whitespace (a blank line). */
static inline bool dts__is_blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (dts__name_class[(unsigned char)p[i]] != DTS__NC_SPACE)
			return false;
	return true;
}

#endif /* DTS_NORMALIZE_H */
