/*
 * keys.c - the printable keys of the minutes, hours and current column families (layout in dts/storage.h).
 *
 * Times are written as UTC calendar digits, not as numbers of minutes: fixed width keeps byte order equal to time
 * order, and an operator can type `ldb scan --from='u/p/c/ms|20240501T1200' --to='u/p/c/ms|20240501T1300'` without
 * converting anything. The conversion uses Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian,
 * exact, no libc time zone state), so it is pure, fast and usable from RocksDB's compaction threads.
 *
 * Everything here is a pure function; callable from any thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "storage_internal.h"

static const char *const type_names[DTS_NTYPES] = { "c", "ms", "g", "s" };

const char *dts_storage_res_name(enum dts_res res)
{
	return res == DTS_RES_HOUR ? "hour" : "minute";
}

/* ---- civil time ------------------------------------------------------------------------------------------------ */

int64_t dts__days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const int64_t yoe = y - era * 400;
	const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

void dts__civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	const int64_t doe = z - era * 146097;
	const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	const int64_t mp = (5 * doy + 2) / 153;

	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static void put_digits(char *p, unsigned v, unsigned n)
{
	while (n--) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

int dts_storage_time_encode(char *buf, size_t buf_len, enum dts_res res, int64_t t_s)
{
	const size_t len = res == DTS_RES_HOUR ? DTS_STORAGE_TIME_LEN_HOUR : DTS_STORAGE_TIME_LEN_MINUTE;
	int64_t y;
	unsigned mo, d;

	if (t_s < 0 || t_s > DTS_STORAGE_TIME_MAX)
		return -EINVAL;
	if (buf_len < len + 1)
		return -ENOSPC;
	const int64_t days = t_s / 86400, sod = t_s % 86400;

	dts__civil_from_days(days, &y, &mo, &d);
	put_digits(buf, (unsigned)y, 4);
	put_digits(buf + 4, mo, 2);
	put_digits(buf + 6, d, 2);
	buf[8] = 'T';
	put_digits(buf + 9, (unsigned)(sod / 3600), 2);
	if (res != DTS_RES_HOUR)
		put_digits(buf + 11, (unsigned)(sod % 3600 / 60), 2);
	buf[len] = '\0';
	return (int)len;
}

static bool get_digits(const char *p, unsigned n, unsigned *v)
{
	*v = 0;
	for (unsigned i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		*v = *v * 10 + (unsigned)(p[i] - '0');
	}
	return true;
}

static unsigned days_in_month(unsigned y, unsigned m)
{
	static const unsigned dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : dim[m - 1];
}

int dts_storage_time_decode(const char *s, size_t len, enum dts_res res, int64_t *t_s)
{
	const size_t want = res == DTS_RES_HOUR ? DTS_STORAGE_TIME_LEN_HOUR : DTS_STORAGE_TIME_LEN_MINUTE;
	unsigned y, mo, d, h, mi = 0;

	if (len != want || s[8] != 'T' || !get_digits(s, 4, &y) || !get_digits(s + 4, 2, &mo) ||
	    !get_digits(s + 6, 2, &d) || !get_digits(s + 9, 2, &h) ||
	    (res != DTS_RES_HOUR && !get_digits(s + 11, 2, &mi)))
		return -EINVAL;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59)
		return -EINVAL;
	*t_s = dts__days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
	return 0;
}

/* ---- series ---------------------------------------------------------------------------------------------------- */

/* A byte a USER, PROCESS or COUNTER may hold: printable ASCII other than the two separators. Tags may hold '/'. */
static inline bool name_byte(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '/' && c != '|';
}

static inline bool tags_byte(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '|';
}

static bool valid_span(const char *s, size_t n, bool tags)
{
	for (size_t i = 0; i < n; i++)
		if (!(tags ? tags_byte((unsigned char)s[i]) : name_byte((unsigned char)s[i])))
			return false;
	return true;
}

const char *dts__type_key_name(unsigned type)
{
	return type < DTS_NTYPES ? type_names[type] : NULL;
}

int dts__type_from_name(const char *s, size_t n)
{
	for (unsigned t = 0; t < DTS_NTYPES; t++)
		if (strlen(type_names[t]) == n && memcmp(type_names[t], s, n) == 0)
			return (int)t;
	return -EINVAL;
}

int dts_storage_series_encode(char *buf, size_t buf_len, const struct dts_series_id *id)
{
	const char *tags = id->tags ? id->tags : "";
	const size_t ul = id->user ? strlen(id->user) : 0, pl = id->process ? strlen(id->process) : 0;
	const size_t cl = id->counter ? strlen(id->counter) : 0, tl = strlen(tags);
	const char *tn = dts__type_key_name(id->type);

	if (!tn || ul == 0 || pl == 0 || cl == 0 || ul > DTS_MAX_USER || pl > DTS_MAX_NAME || cl > DTS_MAX_NAME ||
	    tl > DTS_MAX_TAGS_LEN || !valid_span(id->user, ul, false) || !valid_span(id->process, pl, false) ||
	    !valid_span(id->counter, cl, false) || !valid_span(tags, tl, true))
		return -EINVAL;
	const size_t tnl = strlen(tn), n = ul + 1 + pl + 1 + cl + 1 + tnl + (tl ? 1 + tl : 0);

	if (buf_len < n + 1)
		return -ENOSPC;
	char *p = buf;

	memcpy(p, id->user, ul);
	p += ul;
	*p++ = '/';
	memcpy(p, id->process, pl);
	p += pl;
	*p++ = '/';
	memcpy(p, id->counter, cl);
	p += cl;
	*p++ = '/';
	memcpy(p, tn, tnl);
	p += tnl;
	if (tl) {
		*p++ = '/';
		memcpy(p, tags, tl);
		p += tl;
	}
	*p = '\0';
	return (int)n;
}

int dts_storage_series_decode(const char *s, size_t len, struct dts_key_view *out)
{
	const char *end = s + len, *part[4];
	size_t plen[4];
	const char *p = s;
	int type;

	/* user, process, counter, type: split on the first four '/' (tags, the rest, may contain '/') */
	for (int i = 0; i < 4; i++) {
		const char *q = p;

		while (q < end && *q != '/')
			q++;
		part[i] = p;
		plen[i] = (size_t)(q - p);
		if (plen[i] == 0 || (i < 3 && q == end))
			return -EINVAL;
		p = q < end ? q + 1 : q;
		if (i == 3 && q < end && p == end)
			return -EINVAL; /* "type/" with empty tags */
	}
	if (plen[0] > DTS_MAX_USER || plen[1] > DTS_MAX_NAME || plen[2] > DTS_MAX_NAME)
		return -EINVAL;
	for (int i = 0; i < 3; i++)
		if (!valid_span(part[i], plen[i], false))
			return -EINVAL;
	type = dts__type_from_name(part[3], plen[3]);
	if (type < 0)
		return -EINVAL;
	const size_t tl = (size_t)(end - p);

	if (tl > DTS_MAX_TAGS_LEN || !valid_span(p, tl, true))
		return -EINVAL;
	out->series = s;
	out->series_len = len;
	out->user = part[0];
	out->user_len = plen[0];
	out->process = part[1];
	out->process_len = plen[1];
	out->counter = part[2];
	out->counter_len = plen[2];
	out->tags = tl ? p : "";
	out->tags_len = tl;
	out->type = (uint8_t)type;
	out->t = 0;
	return 0;
}

int dts_storage_key_encode(char *buf, size_t buf_len, const struct dts_series_id *id, enum dts_res res, int64_t t_s)
{
	int n = dts_storage_series_encode(buf, buf_len, id);
	int tn;

	if (n < 0)
		return n;
	if ((size_t)n + 1 >= buf_len)
		return -ENOSPC;
	buf[n] = '|';
	tn = dts_storage_time_encode(buf + n + 1, buf_len - (size_t)n - 1, res, t_s);
	return tn < 0 ? tn : n + 1 + tn;
}

int dts_storage_key_decode(const char *key, size_t len, enum dts_res res, struct dts_key_view *out)
{
	const size_t tl = res == DTS_RES_HOUR ? DTS_STORAGE_TIME_LEN_HOUR : DTS_STORAGE_TIME_LEN_MINUTE;
	int64_t t;

	if (len < tl + 2 || key[len - tl - 1] != '|')
		return -EINVAL;
	if (dts_storage_time_decode(key + len - tl, tl, res, &t) != 0 ||
	    dts_storage_series_decode(key, len - tl - 1, out) != 0)
		return -EINVAL;
	out->t = t;
	return 0;
}

int dts_storage_ckpt_key_decode(const char *key, size_t len, struct dts_key_view *out)
{
	const size_t tl = DTS_STORAGE_TIME_LEN_MINUTE;
	int64_t t;

	if (len < tl + 2 || key[tl] != '|')
		return -EINVAL;
	if (dts_storage_time_decode(key, tl, DTS_RES_MINUTE, &t) != 0 ||
	    dts_storage_series_decode(key + tl + 1, len - tl - 1, out) != 0)
		return -EINVAL;
	out->t = t;
	return 0;
}
