// events.js - errors and warnings: a compact live panel beside every page (the newest few) and a page with the last
// 100 of each kind, filtered by kind and process. Both follow the SSE stream through live.js; a new event is added at
// the top of a list (role "log") so screen readers announce only what is new.

import { h, replace } from '../dom.js';
import { fmtTime, isoTime } from '../format.js';

const PANEL_MAX = 12;

function eventItem(ev) {
	return h('li', { class: 'event', 'data-kind': ev.kind, 'data-seq': ev.seq },
		h('span', { class: `badge ${ev.kind === 'error' ? 'err' : 'warn'}` }, ev.kind),
		' ', h('time', { datetime: isoTime(ev.ts_ms) }, fmtTime(ev.ts_ms)),
		' ', h('span', { class: 'proc' }, ev.process),
		h('span', { class: 'text' }, ev.text));
}

/*
 * Keep ul showing the events (newest first) that pass keep(ev), at most max. Items already shown stay in place, new
 * ones are inserted in order. Returns the number shown.
 */
function sync(ul, events, keep, max) {
	const want = events.filter(keep).slice(0, max);
	const wantSeq = new Set(want.map((e) => e.seq));
	for (const li of [...ul.children])
		if (!wantSeq.has(Number(li.dataset.seq)))
			li.remove();
	let next = ul.firstElementChild;
	for (const ev of want) {
		if (next && Number(next.dataset.seq) === ev.seq) {
			next = next.nextElementSibling;
			continue;
		}
		ul.insertBefore(eventItem(ev), next);
	}
	return want.length;
}

// The panel beside the pages. Returns its cleanup function.
export function eventsPanel(aside, live) {
	const ul = h('ul', { class: 'events', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', id: 'panel-events' });
	const empty = h('p', { class: 'muted small' }, 'No errors or warnings.');
	replace(aside,
		h('h2', { id: 'panel-title' }, 'Errors and warnings'),
		ul, empty,
		h('p', { class: 'small' }, h('a', { href: '#/events' }, 'All errors and warnings')));
	function draw(events) {
		empty.hidden = sync(ul, events, () => true, PANEL_MAX) > 0;
	}
	draw(live.events());
	const unsub = live.subscribe('events', draw);
	return () => {
		unsub();
		replace(aside);
	};
}

// The page #/events[?kind=error|warning][&process=P].
export function mount(main, ctx, params) {
	const kind = h('select', { id: 'ev-kind' },
		h('option', { value: '' }, 'errors and warnings'),
		h('option', { value: 'error' }, 'errors'),
		h('option', { value: 'warning' }, 'warnings'));
	kind.value = params.get('kind') || '';
	const proc = h('input', { id: 'ev-process', type: 'search', placeholder: 'any process', value: params.get('process') || '' });
	const count = h('p', { class: 'summary', id: 'ev-count' });
	const ul = h('ul', { class: 'events wide', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', id: 'events-list' });
	main.append(
		h('h1', null, 'Errors and warnings'),
		h('p', { class: 'muted' }, 'The last 100 errors and the last 100 warnings your processes reported, newest first; ' +
			'new ones appear as they arrive.'),
		h('form', { class: 'inline', role: 'search', onsubmit: (e) => e.preventDefault() },
			h('label', { for: 'ev-kind' }, 'Show'), kind,
			h('label', { for: 'ev-process' }, 'Process'), proc),
		count, ul);
	function keep(ev) {
		const p = proc.value.trim();
		return (!kind.value || ev.kind === kind.value) && (!p || ev.process === p);
	}
	function draw(events, refilter) {
		if (refilter) {
			ul.setAttribute('aria-busy', 'true');
			replace(ul);
		}
		const n = sync(ul, events, keep, 200);
		ul.removeAttribute('aria-busy');
		count.textContent = n ? `${n} shown` : 'Nothing to show.';
	}
	kind.addEventListener('change', () => draw(ctx.live.events(), true));
	proc.addEventListener('input', () => draw(ctx.live.events(), true));
	draw(ctx.live.events(), true);
	return ctx.live.subscribe('events', (evs) => draw(evs, false));
}
