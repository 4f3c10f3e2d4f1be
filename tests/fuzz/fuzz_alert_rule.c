/*
 * fuzz_alert_rule.c - libFuzzer target for dts_alert_rule_parse (server/alerts.c): the body of POST /api/v1/alerts,
 * untrusted JSON from any user with an API key.
 *
 * The input is parsed by jansson (as the API does) and, when it is JSON, validated twice: with every channel
 * configured and with none but webhooks. Invariants:
 *   - the result is 0 or -EINVAL; an error is one "field: message" line (a non-empty field, ": ", no newline);
 *   - an accepted rule prints (dts_alert_rule_json) and parses back to the identical struct, and every string in it
 *     is NUL-terminated within its array; its description fits any buffer without overflow (ASan checks);
 *   - a rule accepted without the email/SMS/call channels is also accepted with them.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(const char *err)
{
	const char *sep = strstr(err, ": ");

	CHECK(sep && sep > err && !strchr(err, '\n'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	struct dts_alert_rule a, b;
	char err[512], desc[64];
	int rc, rc_hooks;

	if (!j)
		return 0;
	err[0] = '\0';
	rc = dts_alert_rule_parse(j, DTS_CHAN_ALL, &a, err, sizeof(err));
	CHECK(rc == 0 || rc == -EINVAL);
	if (rc) {
		check_error(err);
	} else {
		json_t *out = dts_alert_rule_json(&a);

		CHECK(out);
		CHECK(memchr(a.name, 0, sizeof(a.name)) && memchr(a.process, 0, sizeof(a.process)) &&
		      memchr(a.counter, 0, sizeof(a.counter)) && memchr(a.tags, 0, sizeof(a.tags)));
		CHECK(dts_alert_rule_parse(out, DTS_CHAN_ALL, &b, err, sizeof(err)) == 0);
		CHECK(memcmp(&a, &b, sizeof(a)) == 0);
		dts_alert_rule_describe(&a, desc, sizeof(desc));
		CHECK(strlen(desc) < sizeof(desc));
		json_decref(out);
	}
	rc_hooks = dts_alert_rule_parse(j, 1u << DTS_CHAN_WEBHOOK, &b, err, sizeof(err));
	CHECK(rc_hooks == 0 || rc_hooks == -EINVAL);
	CHECK(rc_hooks != 0 || rc == 0);
	if (rc_hooks)
		check_error(err);
	json_decref(j);
	return 0;
}
