/*
 * config.h - every setting of the dattssd daemon, where it comes from, and how it is checked.
 *
 * Sources, later wins (docs/configuration.md):
 *     built-in defaults  <  config file (--config FILE)  <  environment (DATTSSD_SECRET only)  <  command-line flags
 * dts_config_parse_args() applies all of them in that order, whatever the order of the flags in argv (--config is
 * read first wherever it appears).
 *
 * Config file: one 'key = value' per line; keys are the field names below (underscores). '#' starts a comment at the
 * start of a line or after whitespace; blank lines are ignored; a value may be wrapped in "double" or 'single' quotes
 * (needed for an empty value, leading/trailing spaces, or a " #" inside it; there are no escapes). A key given twice:
 * the later line wins. An unknown key is an error that suggests the closest known one.
 *
 * Flags: --key-with-dashes=VALUE or --key-with-dashes VALUE; booleans as --cpu-pin, --no-cpu-pin or --cpu-pin=BOOL.
 *
 * Every value is validated when it is set; a load either applies entirely or leaves the struct untouched.
 *
 * Thread context: these functions are for startup (main thread, before workers exist). They are not thread-safe
 * against concurrent use of the same struct and read the environment. Once filled, a struct dts_config is read-only
 * and may be read from any thread.
 *
 * Strings are NUL-terminated fixed arrays inside the struct: copying the struct copies everything, nothing to free.
 */
#ifndef DTS_CONFIG_H
#define DTS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Array sizes, each including the terminating NUL. */
#define DTS_CONFIG_PATH_SIZE 256 /* data_dir, secret_file, config_file: up to 255 bytes; a daemon's paths are short, and
				  * PATH_MAX (4096) per field would make the struct 16 KiB for nothing */
#define DTS_CONFIG_SOCKET_SIZE 108 /* unix_socket: sizeof(struct sockaddr_un.sun_path), so up to 107 bytes */
#define DTS_CONFIG_BIND_SIZE 46 /* bind: INET6_ADDRSTRLEN, the longest IPv6 literal plus NUL */
#define DTS_CONFIG_ALLOW_SIZE 1024 /* statsd_allow: up to DTS_NETACL_MAX (32) networks of about 30 bytes */
#define DTS_CONFIG_SECRET_SIZE 257 /* secret: up to 256 bytes; HMAC-SHA1 takes any key length, 256 is ample */
#define DTS_CONFIG_NAME_SIZE 65 /* user, default_process: up to 64 bytes (DTS_MAX_USER in dts/tunables.h) */

#define DTS_CONFIG_IO_SIZE 8 /* io: "socket" or "dpdk" */
#define DTS_CONFIG_EAL_SIZE 512 /* dpdk_eal: a few vdevs and lcore lists */
#define DTS_CONFIG_DPDK_SIZE 64 /* other dpdk_* values: an IPv6 literal, a MAC, a port list */

/* Returned by dts_config_parse_args() when --help or --version was printed: the caller exits with status 0. */
#define DTS_CONFIG_EXIT 1

/* Environment variable read for the secret (so it needs to be neither in a file nor on the command line). */
#define DTS_CONFIG_SECRET_ENV "DATTSSD_SECRET" /* not DATTSS_SECRET: that is a client's datagram secret (libdattss) */

/*
 * All daemon settings. Public, read-only after dts_config_parse_args() returns; written only by the functions below.
 * Each field: meaning [default; accepted range].
 */
struct dts_config {
	/* Storage */
	char data_dir[DTS_CONFIG_PATH_SIZE]; /* RocksDB directory ["./data"; non-empty, <= 255 bytes] */

	unsigned retention_minutes_days; /* minute aggregates kept [15; 8..3650: "today against the past week" needs 8] */
	unsigned retention_hours_days; /* hourly rollups kept [400; 1..36500] */
	unsigned checkpoint_ms; /* open minutes checkpointed to the store this often [5000; 0 = off, else 1000..60000]:
				 * the most a kill -9 can lose */
	char rocksdb_log_dir[DTS_CONFIG_PATH_SIZE]; /* RocksDB's own LOG files ["" = only a header in data_dir] */

	/* Receive path: "socket" (kernel UDP workers) or "dpdk" (poll-mode lcores; docs/dpdk.md). TCP and the Unix
	 * socket are served by the kernel in both modes. */
	char io[DTS_CONFIG_IO_SIZE]; /* ["socket"] */
	char dpdk_eal[DTS_CONFIG_EAL_SIZE]; /* EAL arguments, whitespace-separated ["" ; required with io = dpdk] */
	/* The other DPDK settings, as text validated by the DPDK module (dts_dpdk_cfg_set); "" = its default. */
	char dpdk_port[DTS_CONFIG_DPDK_SIZE];
	char dpdk_queues[DTS_CONFIG_DPDK_SIZE]; /* required with io = dpdk: receive queues = polling lcores */
	char dpdk_ipv4[DTS_CONFIG_DPDK_SIZE];
	char dpdk_ipv6[DTS_CONFIG_DPDK_SIZE];
	char dpdk_mac[DTS_CONFIG_DPDK_SIZE];
	char dpdk_udp_ports[DTS_CONFIG_DPDK_SIZE]; /* "" = statsd_port */
	char dpdk_rx_desc[DTS_CONFIG_DPDK_SIZE];
	char dpdk_mbufs[DTS_CONFIG_DPDK_SIZE];
	char dpdk_mbuf_size[DTS_CONFIG_DPDK_SIZE];
	char dpdk_promiscuous[DTS_CONFIG_DPDK_SIZE];

	/* Listeners */
	char bind[DTS_CONFIG_BIND_SIZE]; /* address of every listener ["127.0.0.1"; IPv4 or IPv6 literal] */
	uint16_t statsd_port; /* statsd + DaTtSs lines, UDP and TCP [8125; 0..65535, 0 = off] */
	char unix_socket[DTS_CONFIG_SOCKET_SIZE]; /* statsd Unix datagram socket path ["" = off; <= 107 bytes] */
	uint16_t http_port; /* HTTP API, dashboard, /metrics [8080; 0..65535, 0 = off; != statsd_port] */
	char statsd_allow[DTS_CONFIG_ALLOW_SIZE]; /* source networks allowed on the statsd UDP/TCP port: comma-separated
						   * CIDR (netacl.h) ["" = any; io = socket only] */

	/* Receive workers */
	unsigned workers; /* UDP receive threads (SO_REUSEPORT sockets) [2; 1..63: the merger takes at most 64 cores
			   * and main.c adds one for the TCP/Unix-socket stream thread] */
	bool cpu_pin; /* pin worker i to CPU (i mod ncpu) [true] */
	unsigned recv_batch; /* datagrams per recvmmsg() call [64; 1..1024] */
	unsigned recv_coalesce_us; /* longest sleep of a UDP worker after a short burst, so that the next recvmmsg()
				    * takes more datagrams per wake-up (receive.c) [2000; 0..10000, 0 = off] */
	unsigned rcvbuf_bytes; /* SO_RCVBUF per socket [8388608; 0..1073741824, 0 = system default] */
	bool udp_backpressure; /* a UDP worker whose core is saturated leaves its socket unread until a clean table is
				* free, instead of reading on and dropping what the full table cannot take (receive.c)
				* [true] */

	/* Aggregation timing */
	unsigned tick_ms; /* how often workers hand tables to the merger [1000; 10..60000] */
	unsigned grace_s; /* seconds after a minute ends before it is closed and stored [10; 0..60: the merger keeps
			   * three minute windows per series (engine.h), so a minute must close within the next] */
	int64_t max_past_skew_s; /* statsd |T timestamps accepted down to now - this [600; 0..86400] */
	int64_t max_future_skew_s; /* ... and up to now + this [60; 0..60: further ahead than the next minute the
				    * merger has no window and would drop it anyway] */

	/* Capacity */
	unsigned table_capacity; /* buckets of each worker's aggregation table [65536; 1024..16777216, a power of two;
				  * a table hands over at half full, so it holds capacity/2 distinct series per tick] */
	unsigned table_capacity_max; /* tables that fill before their tick grow, doubling, up to this many buckets
				      * [524288; a power of two; 0 or <= table_capacity: no growth] */
	unsigned max_series; /* live series kept at most; new ones beyond are dropped, counted [4194304; 1..2^30] */
	unsigned series_reserve; /* series whose memory is faulted in at start [0 = none; 0..max_series] */

	/* Identity of statsd lines (they carry no user or process of their own) */
	char user[DTS_CONFIG_NAME_SIZE]; /* user owning statsd lines on these listeners ["default"; 1..64 of
					  * [A-Za-z0-9@._+-]] */
	char default_process[DTS_CONFIG_NAME_SIZE]; /* process for names without a separator ["default"; 1..64 of
						     * [A-Za-z0-9@._+-], must not contain process_sep] */
	bool split_process; /* process = first process_sep-separated segment of the name [true] */
	char process_sep; /* ['.'; one printable character, not a letter, digit, space, ':' or '|'] */

	/* DaTtSs UDP lines */
	char secret[DTS_CONFIG_SECRET_SIZE]; /* HMAC key for AUTH tokens ["" = the one kept in the store; <= 256 bytes].
					      * Never log it: dts_config_dump() redacts it. */
	char secret_file[DTS_CONFIG_PATH_SIZE]; /* file the secret was read from, "" when it was not (informational) */

	/* Graphite export of closed minutes (graphite.h) */
	char graphite_host[DTS_CONFIG_PATH_SIZE]; /* carbon host name or address ["" = off; letters, digits, '.', '-',
						   * ':' (IPv6), '_'] */
	uint16_t graphite_port; /* carbon's plaintext port [2003; 1..65535] */
	char graphite_prefix[DTS_CONFIG_PATH_SIZE]; /* first path node(s) ["dattss"; "" = none; [A-Za-z0-9_-] nodes
						     * separated by single '.'] */

	/* Alerts (alerts.h) and their notifications (notify.h); docs/alerts.md */
	char smtp_url[DTS_CONFIG_PATH_SIZE]; /* smtp://host[:port] or smtps://host[:port] ["" = no email] */
	char smtp_user[DTS_CONFIG_PATH_SIZE]; /* SMTP AUTH user ["" = no AUTH; needs smtp_password] */
	char smtp_password[DTS_CONFIG_SECRET_SIZE]; /* never printed: dts_config_dump() redacts it */
	char smtp_from[DTS_CONFIG_PATH_SIZE]; /* sender address [""; required with smtp_url] */
	bool smtp_starttls; /* smtp://: require STARTTLS [true] */
	char sms_url[DTS_CONFIG_PATH_SIZE]; /* Twilio-style API base, e.g. https://api.twilio.com/2010-04-01 ["" = no
					     * SMS] */
	char sms_account[DTS_CONFIG_PATH_SIZE]; /* account SID (basic auth user, part of the path) */
	char sms_token[DTS_CONFIG_SECRET_SIZE]; /* auth token (basic auth password); never printed */
	char sms_from[DTS_CONFIG_PATH_SIZE]; /* sender number of SMS (and calls unless call_from) */
	char call_url[DTS_CONFIG_PATH_SIZE]; /* API base for calls ["" = sms_url] */
	char call_from[DTS_CONFIG_PATH_SIZE]; /* caller number ["" = sms_from] */
	char call_twiml_url[DTS_CONFIG_PATH_SIZE]; /* calls send Url=this instead of an inline Twiml ["" = inline] */
	unsigned notify_timeout_s; /* per notification attempt [10; 1..300] */
	unsigned alert_eval_s; /* evaluation period [5; 1..300] */
	unsigned alert_repeat_s; /* re-notify a firing rule this often [3600; 0 = never, ..604800] */
	unsigned alert_resolved_s; /* resolved -> ok after this long [300; 0..86400] */
	unsigned alert_rate_per_hour; /* notification messages per user per hour [20; 1..36000] */
	unsigned alert_rate_burst; /* ... of which at once [5; 1..1000] */
	unsigned alert_retries; /* attempts after the first, with exponential backoff [5; 0..20] */
	unsigned alert_max_rules; /* rules per user [100; 1..10000] */
	unsigned alert_minute_s; /* seconds in one minute of after_min [60; 1..60]: lower only for tests */

	/* Logging */
	int log_level; /* enum dts_log_level [DTS_LOG_INFO; error, warn, info, debug] */

	/* Provenance */
	char config_file[DTS_CONFIG_PATH_SIZE]; /* the --config file loaded, "" when none */
};

/* Fill c with the built-in defaults above. Never fails. */
void dts_config_defaults(struct dts_config *c);

/*
 * Apply the settings in the config file at path on top of c.
 * Returns 0; -EINVAL for a syntax error, unknown key or bad value; or -errno when the file (or a secret_file it names)
 * cannot be read. On error c is unchanged and err (when errlen > 0) holds one line naming the file, the line and the
 * key, e.g. "dattssd.conf:12: workers: must be an integer between 1 and 63, got 'abc'".
 * Checks each value on its own; the cross-field checks run in dts_config_check(). Does not set c->config_file.
 */
int dts_config_load_file(struct dts_config *c, const char *path, char *err, size_t errlen);

/*
 * Apply argv on top of c: the --config file first, then DATTSSD_SECRET from the environment, then every other flag
 * in argv order, then dts_config_check(). argv[0] is the program name and is skipped; argv is not modified.
 * Returns 0 when c is ready; DTS_CONFIG_EXIT (positive) when --help or --version was given, printed to stdout, and
 * the caller should exit with status 0 (c is then unchanged); or a negative errno (-EINVAL for a bad flag or value)
 * with err naming the flag, key or file, and c unchanged.
 */
int dts_config_parse_args(struct dts_config *c, int argc, char **argv, char *err, size_t errlen);

/*
 * Checks between settings: default_process must not contain process_sep; statsd_port and http_port must differ
 * unless 0. Returns 0 or -EINVAL with err set. Run by dts_config_parse_args(); call it yourself after
 * dts_config_load_file() alone.
 */
int dts_config_check(const struct dts_config *c, char *err, size_t errlen);

/* Print the --help text (usage, every flag with its default and meaning, the precedence rules) to out. */
void dts_config_usage(FILE *out);

/*
 * Print c to out as a config file ('key = value' lines, one per key, in the order of the docs) for debug logging.
 * The secret is never printed: a comment says whether it is set, how long it is and where it came from.
 * Returns 0, or -EIO when out reported an error.
 */
int dts_config_dump(const struct dts_config *c, FILE *out);

#endif /* DTS_CONFIG_H */
