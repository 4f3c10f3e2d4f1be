/*
 * hello.c - the smallest libdattss program: record a few values for 12 seconds (three 5-second batches) and close.
 *
 *   DATTSS_SERVER=127.0.0.1:8125 DATTSS_USER=42 DATTSS_KEY_ID=1 DATTSS_SECRET=... DATTSS_PROCESS=hello ./dattss_hello
 *   cc hello.c $(pkg-config --cflags --libs dattss) -o hello        (against an installed libdattss)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <dattss.h>

int main(void)
{
	struct dts *d = dts_open_env();
	struct dts_client_stats st;

	if (!d) {
		fprintf(stderr, "hello: dts_open_env: %s (set DATTSS_USER, DATTSS_KEY_ID, DATTSS_SECRET)\n",
			strerror(errno));
		return 1;
	}
	for (int i = 0; i < 120; i++) {
		struct timespec pause = { .tv_nsec = 100 * 1000 * 1000 };

		dts_count(d, "loops", 1);
		dts_timing(d, "work", 10.0 + i % 7);
		dts_agg(d, "query", "153ms");
		dts_gauge(d, "progress", i);
		if (i % 50 == 0)
			dts_warning(d, "hello: a warning every 50 loops");
		nanosleep(&pause, NULL);
	}
	dts_error(d, "hello: done, this is what an error looks like");
	dts_stats(d, &st);
	printf("hello: %llu batches, %llu datagrams sent so far\n", (unsigned long long)st.batches,
	       (unsigned long long)st.datagrams);
	return dts_close(d) == 0 ? 0 : 1;
}
