/* names.c - printable names of types and reject reasons (stable: they appear in /metrics and in docs). */
#include "dts/types.h"

const char *dts_type_name(enum dts_type t)
{
	static const char *const names[DTS_NTYPES] = { "c", "ms", "g", "s" };

	return (unsigned)t < DTS_NTYPES ? names[t] : "?";
}

const char *dts_reject_name(enum dts_reject r)
{
	static const char *const names[DTS_REJ_COUNT] = {
		[DTS_REJ_NONE] = "none",
		[DTS_REJ_LINE_TOO_LONG] = "line_too_long",
		[DTS_REJ_NO_VALUE] = "no_value",
		[DTS_REJ_EMPTY_NAME] = "empty_name",
		[DTS_REJ_NAME_TOO_LONG] = "name_too_long",
		[DTS_REJ_BAD_VALUE] = "bad_value",
		[DTS_REJ_TOO_MANY_VALUES] = "too_many_values",
		[DTS_REJ_NO_TYPE] = "no_type",
		[DTS_REJ_BAD_TYPE] = "bad_type",
		[DTS_REJ_BAD_RATE] = "bad_rate",
		[DTS_REJ_BAD_TAGS] = "bad_tags",
		[DTS_REJ_BAD_TIMESTAMP] = "bad_timestamp",
		[DTS_REJ_TIMESTAMP_SKEW] = "timestamp_skew",
		[DTS_REJ_BAD_SECTION] = "bad_section",
		[DTS_REJ_UNSUPPORTED] = "unsupported",
		[DTS_REJ_DATTSS_FORMAT] = "dattss_format",
		[DTS_REJ_AUTH_FORMAT] = "auth_format",
		[DTS_REJ_AUTH_MAC] = "auth_mac",
		[DTS_REJ_NO_SECRET] = "no_secret",
		[DTS_REJ_UNKNOWN_USER] = "unknown_user",
	};

	return (unsigned)r < DTS_REJ_COUNT ? names[r] : "unknown";
}
