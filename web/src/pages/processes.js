// processes.js - the process list: every process of the user with its online state, process statistics and the
// current value of each counter, kept live by the SSE stream (live.js).

import { h, replace } from '../dom.js';
import { fmtAgo, fmtBytes, fmtDuration, fmtNum, fmtTime, isoTime } from '../format.js';
import { TYPE_NAMES, currentFields, headline } from '../stats.js';

export function counterHash(process, c) {
	const q = new URLSearchParams({ process, counter: c.counter, type: c.type });
	if (c.tags)
		q.set('tags', c.tags);
	return `#/counter?${q}`;
}

function onlineBadge(p, now) {
	if (p.online)
		return h('span', { class: 'badge ok' }, 'online',
			p.online_since_ms ? h('span', { class: 'sub' }, ` since ${fmtTime(p.online_since_ms)}`) : null);
	return h('span', { class: 'badge off' }, 'offline',
		h('span', { class: 'sub' }, p.last_heard_ms ? `, last heard ${fmtAgo(p.last_heard_ms, now)}` : ', never heard'));
}

function statsList(p) {
	const s = p.stats;
	const items = [];
	if (s) {
		items.push(['uptime', fmtDuration(s.uptime_s)], ['memory', fmtBytes(s.rss_bytes)],
			['cpu', s.cpu_pct === null || s.cpu_pct === undefined ? '–' : `${fmtNum(s.cpu_pct)} %`],
			['errors', fmtNum(s.errors)], ['warnings', fmtNum(s.warnings)]);
	}
	if (p.restarts)
		items.push(['restarts', fmtNum(p.restarts)]);
	if (!items.length)
		return h('p', { class: 'muted small' }, 'No process statistics (statsd clients send none).');
	return h('dl', { class: 'stats' }, items.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v))));
}

function detail(c) {
	if (!c.current)
		return h('span', { class: 'muted' }, 'waiting for the first 5 seconds');
	return currentFields(c.type).slice(1).map((f) =>
		h('span', { class: 'kv' }, h('span', { class: 'k' }, f), ' ', fmtNum(c.current[f])));
}

function counterRow(process, c, now) {
	const hl = headline(c);
	const lastSeen = Number.isFinite(c.last_seen_s) ? c.last_seen_s * 1000 : null;
	return h('tr', { 'data-counter': c.counter, 'data-type': c.type },
		h('th', { scope: 'row' }, h('a', { href: counterHash(process, c), 'data-focus': `${process}/${c.counter}/${c.type}/${c.tags || ''}` }, c.counter)),
		h('td', null, TYPE_NAMES[c.type] || c.type),
		h('td', { class: 'tags' }, c.tags || ''),
		h('td', { class: 'num value', title: hl.label }, hl.value === null ? '–' : fmtNum(hl.value, hl.unit)),
		h('td', { class: 'detail' }, detail(c)),
		h('td', { class: 'when' }, lastSeen ? h('time', { datetime: isoTime(lastSeen) }, fmtAgo(lastSeen, now)) : '–'));
}

function processSection(p, now, filter) {
	const counters = (p.counters || []).filter((c) => !filter || p.process.toLowerCase().includes(filter) ||
		c.counter.toLowerCase().includes(filter));
	const id = `proc-${encodeURIComponent(p.process).replace(/%/g, '_')}`;
	return h('section', { class: 'process', 'aria-labelledby': id, 'data-process': p.process },
		h('div', { class: 'process-head' }, h('h2', { id }, p.process), onlineBadge(p, now)),
		statsList(p),
		counters.length ? h('table', { class: 'counters' },
			h('caption', { class: 'sr-only' }, `Counters of ${p.process}, current values over the last minute`),
			h('thead', null, h('tr', null, ['Counter', 'Type', 'Tags', 'Value (1 min)', 'Details', 'Last seen'].map((t) =>
				h('th', { scope: 'col' }, t)))),
			h('tbody', null, counters.map((c) => counterRow(p.process, c, now)))) :
			h('p', { class: 'muted' }, filter ? 'No counter matches the filter.' : 'No counters yet.'));
}

export function mount(main, ctx) {
	const filterInput = h('input', { id: 'proc-filter', type: 'search', placeholder: 'process or counter name' });
	const summary = h('p', { class: 'summary', id: 'proc-summary' }, 'Loading…');
	const list = h('div', { id: 'process-list', class: 'process-list' });
	main.append(
		h('div', { class: 'page-head' }, h('h1', null, 'Processes'),
			h('div', { class: 'filter' }, h('label', { for: 'proc-filter' }, 'Filter'), filterInput)),
		summary, list);

	function draw(cur) {
		if (!cur)
			return;
		const now = cur.now_ms || Date.now();
		const filter = filterInput.value.trim().toLowerCase();
		const procs = (cur.processes || []).filter((p) => !filter || p.process.toLowerCase().includes(filter) ||
			(p.counters || []).some((c) => c.counter.toLowerCase().includes(filter)));
		const online = (cur.processes || []).filter((p) => p.online).length;
		const n = (cur.processes || []).length;
		summary.textContent = `${n} ${n === 1 ? 'process' : 'processes'}, ${online} online · values as of ${fmtTime(now)}`;
		const focused = document.activeElement && list.contains(document.activeElement) ?
			document.activeElement.getAttribute('data-focus') : null;
		if (!(cur.processes || []).length) {
			replace(list, h('p', { class: 'empty' }, 'No data yet. Point a statsd client or libdattss at this server; ' +
				'processes appear here within seconds.'));
			return;
		}
		replace(list, procs.map((p) => processSection(p, now, filter)));
		if (focused) {
			const el = [...list.querySelectorAll('[data-focus]')].find((e) => e.getAttribute('data-focus') === focused);
			if (el)
				el.focus();
		}
	}

	filterInput.addEventListener('input', () => draw(ctx.live.current()));
	const unsub = ctx.live.subscribe('current', draw);
	draw(ctx.live.current());
	return unsub;
}
