/*
 * web_assets.h - the dashboard's files built into dattssd: index.html, app.js and app.css (uPlot's CSS included).
 *
 * The table is generated at build time by web/embed.cmake (web/CMakeLists.txt) from web/index.html and esbuild's
 * bundle of web/src; server/http_web.c serves it at / and /assets/<name>. Read-only data: any thread.
 */
#ifndef DTS_WEB_ASSETS_H
#define DTS_WEB_ASSETS_H

#include <stddef.h>

struct dts_web_asset {
	const char *name; /* "index.html", "app.js", "app.css" */
	const char *type; /* Content-Type */
	const char *etag; /* strong ETag with its quotes: "\"<16 hex digits of the file's SHA-256>\"" */
	const unsigned char *data;
	size_t len;
};

/* Every asset, ended by an entry whose name is NULL. */
extern const struct dts_web_asset dts_web_assets[];

#endif /* DTS_WEB_ASSETS_H */
