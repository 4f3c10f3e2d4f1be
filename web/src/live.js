// live.js - the live state of the signed-in user: the current state and the errors and warnings, loaded once from
// /api/v1/current and /api/v1/events and then kept up to date by the SSE stream /api/v1/stream (events "current" and
// "event"). Pages subscribe to what they show; there is one stream per tab.

const MAX_EVENTS = 200;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;

/*
 * api: the client of api.js. onUnauthorized(message): called when the server no longer accepts the key.
 * Returns {start, stop, subscribe(kind, fn) -> unsubscribe, current(), events(), status()}; kinds: 'current',
 * 'events', 'status' ('connecting' | 'live' | 'reconnecting').
 */
export function createLive(api, onUnauthorized) {
	let es = null;
	let current = null;
	const bySeq = new Map();
	let events = [];
	let status = 'connecting';
	let retryMs = RETRY_MIN_MS;
	let retryTimer = null;
	let stopped = true;
	const subs = { current: new Set(), events: new Set(), status: new Set() };

	function emit(kind, value) {
		for (const fn of subs[kind])
			fn(value);
	}

	function setStatus(s) {
		if (s !== status) {
			status = s;
			emit('status', s);
		}
	}

	function setCurrent(c) {
		current = c;
		emit('current', c);
	}

	// Merge events (any order) into the newest-first list, dropping duplicates by seq.
	function addEvents(list) {
		let changed = false;
		for (const ev of list) {
			if (!ev || typeof ev.seq !== 'number' || bySeq.has(ev.seq))
				continue;
			bySeq.set(ev.seq, ev);
			changed = true;
		}
		if (!changed)
			return;
		events = [...bySeq.values()].sort((a, b) => b.seq - a.seq).slice(0, MAX_EVENTS);
		if (bySeq.size > MAX_EVENTS) {
			bySeq.clear();
			for (const ev of events)
				bySeq.set(ev.seq, ev);
		}
		emit('events', events);
	}

	function fail(e) {
		if (e && e.status === 401) {
			onUnauthorized(e.message);
			return true;
		}
		return false;
	}

	async function load() {
		try {
			const [cur, evs] = await Promise.all([api.get('/api/v1/current'), api.get('/api/v1/events', { limit: 100 })]);
			if (stopped)
				return;
			setCurrent(cur);
			addEvents(evs.events || []);
		} catch (e) {
			fail(e);
		}
	}

	function open() {
		if (stopped)
			return;
		es = new EventSource(api.streamUrl());
		es.addEventListener('open', () => {
			retryMs = RETRY_MIN_MS;
			setStatus('live');
		});
		es.addEventListener('current', (m) => {
			try {
				setCurrent(JSON.parse(m.data));
			} catch {
				/* a malformed message is skipped; the next one replaces it */
			}
		});
		es.addEventListener('event', (m) => {
			try {
				addEvents([JSON.parse(m.data)]);
			} catch {
				/* as above */
			}
		});
		es.addEventListener('error', () => {
			if (stopped)
				return;
			setStatus('reconnecting');
			if (es.readyState !== EventSource.CLOSED)
				return; // the browser reconnects by itself (and resumes from Last-Event-ID)
			// Closed for good: a non-200 answer, e.g. 401. Ask the API why, then retry with backoff.
			es.close();
			es = null;
			api.get('/api/v1/current').then((cur) => {
				setCurrent(cur);
				retryLater();
			}, (e) => {
				if (!fail(e))
					retryLater();
			});
		});
	}

	function retryLater() {
		if (stopped)
			return;
		clearTimeout(retryTimer);
		retryTimer = setTimeout(open, retryMs);
		retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
	}

	return {
		start() {
			if (!stopped)
				return;
			stopped = false;
			setStatus('connecting');
			load();
			open();
		},
		stop() {
			stopped = true;
			clearTimeout(retryTimer);
			if (es)
				es.close();
			es = null;
			current = null;
			bySeq.clear();
			events = [];
		},
		subscribe(kind, fn) {
			subs[kind].add(fn);
			return () => subs[kind].delete(fn);
		},
		current: () => current,
		events: () => events,
		status: () => status,
	};
}
