/*
 * send_cmd.c - `dattss send NAME VALUE`: send one value through libdattss (the native protocol, one authenticated
 * datagram, dts_send_one), for scripts and tests.
 *
 * Credentials come from the options or, for each one not given, from libdattss's environment variables
 * (DATTSS_SERVER, DATTSS_USER, DATTSS_KEY_ID, DATTSS_SECRET, DATTSS_PROCESS), as `dattss user add` prints them.
 * Every argument is checked here first so that a mistake is named (libdattss only says EINVAL). The exit status is 0
 * once the datagram was handed to the kernel: UDP gives no acknowledgement; the server counts rejected datagrams by
 * reason on /metrics (dattss_rejected_datagrams_total{protocol="native"}) when the key or the clock is wrong.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dattss.h"
#include "dts/native.h"
#include "tool_cmds.h"

static const char usage_send[] =
	"Usage: dattss send [--server HOST:PORT] [--process P] [--user U --key-id N --secret S] NAME VALUE\n"
	"\n"
	"Send one value to a DaTtSs server now, in one authenticated datagram of the native protocol (libdattss).\n"
	"VALUE is written as the original DaTtSs drivers wrote it: a number and its type, ms (timer), c (counter) or\n"
	"g (gauge), optionally followed by '!' (emphasis): 153ms, 1c, 23.5g, 2c!\n"
	"\n"
	"  -s, --server HOST:PORT   the server's statsd port [$DATTSS_SERVER, else 127.0.0.1:8125]\n"
	"  -p, --process P          the process the value belongs to [$DATTSS_PROCESS, else dattss]\n"
	"  -u, --user U             the user id [$DATTSS_USER]\n"
	"  -k, --key-id N           the user's key id [$DATTSS_KEY_ID]\n"
	"  -S, --secret S           that key's secret (64 hex characters) [$DATTSS_SECRET]\n"
	"  -h, --help               this help\n"
	"\n"
	"The credentials are those printed by 'dattss user add' (or 'rotate'). Exit status: 0 sent (UDP: the server\n"
	"does not answer; a datagram it rejects is counted on /metrics), 1 could not send, 2 usage error.\n"
	"\n"
	"Examples:\n"
	"  dattss send --process api query 153ms\n"
	"  DATTSS_USER=alice@example.com DATTSS_KEY_ID=2 DATTSS_SECRET=0a1b... dattss send -p api requests 1c\n";

static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "dattss send: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(try 'dattss send --help')\n");
	return 2;
}

static const char *opt_or_env(const char *opt, const char *env)
{
	const char *e;

	if (opt)
		return opt;
	e = getenv(env);
	return e && *e ? e : NULL;
}

/* A number followed by ms, c or g and an optional '!'. */
static bool value_valid(const char *v)
{
	size_t n = strlen(v);
	char num[64], *end;
	double d;

	if (n && v[n - 1] == '!')
		n--;
	if (n >= 2 && v[n - 2] == 'm' && v[n - 1] == 's')
		n -= 2;
	else if (n >= 1 && (v[n - 1] == 'c' || v[n - 1] == 'g'))
		n -= 1;
	else
		return false;
	if (n == 0 || n >= sizeof(num) || strchr(" \t", v[0]))
		return false;
	memcpy(num, v, n);
	num[n] = '\0';
	errno = 0;
	d = strtod(num, &end);
	return !errno && *end == '\0' && isfinite(d) && !strpbrk(num, "xXnNiIpP");
}

int dts_tool_send(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "server", required_argument, NULL, 's' }, { "process", required_argument, NULL, 'p' },
		{ "user", required_argument, NULL, 'u' },   { "key-id", required_argument, NULL, 'k' },
		{ "secret", required_argument, NULL, 'S' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *process = NULL, *user = NULL, *key = NULL, *secret = NULL, *name, *value;
	unsigned long long key_id;
	char *end;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:p:u:k:S:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': server = optarg; break;
		case 'p': process = optarg; break;
		case 'u': user = optarg; break;
		case 'k': key = optarg; break;
		case 'S': secret = optarg; break;
		case 'h': fputs(usage_send, stdout); return 0;
		default: return usage("%s", "bad option");
		}
	}
	if (argc - optind != 2)
		return usage("%s", "expected NAME VALUE, e.g. 'dattss send --process api query 153ms'");
	name = argv[optind];
	value = argv[optind + 1];
	server = opt_or_env(server, "DATTSS_SERVER");
	process = opt_or_env(process, "DATTSS_PROCESS");
	user = opt_or_env(user, "DATTSS_USER");
	key = opt_or_env(key, "DATTSS_KEY_ID");
	secret = opt_or_env(secret, "DATTSS_SECRET");
	if (!server)
		server = "127.0.0.1:8125";
	if (!process)
		process = "dattss";
	if (!user)
		return usage("%s", "user: missing (--user or DATTSS_USER; 'dattss user add' prints it)");
	if (!dts_native_user_valid(user, strnlen(user, DTS_MAX_USER + 1)))
		return usage("user: '%s' must be 1..64 characters of [A-Za-z0-9@._+-]", user);
	if (!key)
		return usage("%s", "key id: missing (--key-id or DATTSS_KEY_ID)");
	errno = 0;
	key_id = strtoull(key, &end, 10);
	if (errno || *end || end == key || key_id > UINT32_MAX || key[0] == '-' || key[0] == '+')
		return usage("key id: '%s' is not a decimal number 0..4294967295", key);
	if (!secret)
		return usage("%s", "secret: missing (--secret or DATTSS_SECRET)");
	if (!*name)
		return usage("%s", "NAME: empty");
	if (!value_valid(value))
		return usage("VALUE: '%s' must be a number followed by ms (timer), c (counter) or g (gauge), "
			     "e.g. 153ms, 1c, 23g", value);
	r = dts_send_one(server, user, (uint32_t)key_id, secret, process, name, value);
	if (r == -EINVAL)
		return usage("NAME '%s' or --process: empty or too long once normalised (process + '.' + name at most "
			     "200 bytes of [A-Za-z0-9_.-])", name);
	if (r == -EADDRNOTAVAIL) {
		fprintf(stderr, "dattss send: server '%s': not a resolvable HOST:PORT\n", server);
		return 1;
	}
	if (r) {
		fprintf(stderr, "dattss send: sending to %s failed: %s\n", server, strerror(-r));
		return 1;
	}
	return 0;
}
