// dev.mjs - develop the dashboard against a running dattssd without rebuilding the daemon:
//
//   make run &                                   # or any dattssd; its HTTP port is the --daemon URL
//   cd web && npm ci && node dev.mjs [--daemon http://127.0.0.1:8080] [--port 8081]
//   open http://127.0.0.1:8081/ and sign in with DATA_DIR/api.key
//
// Serves index.html and a fresh esbuild bundle of src/ (rebuilt when the page is loaded, with a source map), and
// passes every other request (the API, the SSE stream) through to the daemon unchanged. Loopback only; for
// development, never for serving users (dattssd serves the built-in copy).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
function opt(name, def) {
	const i = args.indexOf(name);
	return i >= 0 && args[i + 1] ? args[i + 1] : def;
}
const daemon = new URL(opt('--daemon', 'http://127.0.0.1:8080'));
const port = Number(opt('--port', '8081'));

const ctx = await esbuild.context({
	entryPoints: [path.join(here, 'src/main.js')], bundle: true, format: 'iife', target: 'es2020', sourcemap: 'inline',
	outdir: 'out', entryNames: 'app', write: false, logLevel: 'warning',
});
let assets = {};
async function rebuild() {
	const r = await ctx.rebuild();
	assets = {};
	for (const f of r.outputFiles)
		assets[path.basename(f.path)] = f.contents;
}

const TYPES = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

http.createServer(async (req, res) => {
	const url = new URL(req.url, 'http://x');
	try {
		if (req.method === 'GET' && url.pathname === '/') {
			await rebuild();
			res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
			res.end(fs.readFileSync(path.join(here, 'index.html')));
			return;
		}
		const m = /^\/assets\/(app\.(js|css))$/.exec(url.pathname);
		if (req.method === 'GET' && m) {
			if (!assets[m[1]])
				await rebuild();
			res.writeHead(200, { 'Content-Type': TYPES[m[2]], 'Cache-Control': 'no-store' });
			res.end(assets[m[1]]);
			return;
		}
	} catch (e) {
		res.writeHead(500, { 'Content-Type': 'text/plain' });
		res.end(`esbuild: ${e.message}\n`);
		return;
	}
	const up = http.request({
		host: daemon.hostname, port: daemon.port || 80, method: req.method, path: req.url,
		headers: { ...req.headers, host: daemon.host },
	}, (r) => {
		res.writeHead(r.statusCode, r.headers);
		r.pipe(res);
	});
	up.on('error', (e) => {
		res.writeHead(502, { 'Content-Type': 'application/json' });
		res.end(JSON.stringify({ error: `dattssd at ${daemon.origin} did not answer: ${e.message}` }));
	});
	req.pipe(up);
}).listen(port, '127.0.0.1', () => {
	console.log(`dev.mjs: http://127.0.0.1:${port}/ (the page from web/src, the API of ${daemon.origin})`);
});
