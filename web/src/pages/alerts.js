// alerts.js - the user's alert rules (GET/POST/DELETE /api/v1/alerts): the list with each rule's state, a form to add
// one (checked on the page, then by the server, whose error is shown at the field it names), removal with an inline
// confirmation, and each rule's history of state changes. #/alerts?process=&counter=&type=&tags= fills the form.

import { ApiError } from '../api.js';
import { h, replace } from '../dom.js';
import { fmtNum, fmtTime, isoTime } from '../format.js';
import {
	COUNTER_TYPES, RULE_KINDS, RULE_STATS, buildRule, describeChannels, describeRule, fieldsFor, formFieldOf,
} from '../rules.js';

const REFRESH_MS = 15000;
const STATE_CLASS = { ok: 'ok', resolved: 'ok', pending: 'warn', firing: 'err' };

// One labelled form field with its help and error lines; returns {wrap, input, err}.
function field(name, label, input, help) {
	const id = `rule-${name}`;
	input.id = id;
	input.name = name;
	const err = h('p', { class: 'error', id: `${id}-err` });
	const helpEl = help ? h('p', { class: 'help', id: `${id}-help` }, help) : null;
	input.setAttribute('aria-describedby', [helpEl ? `${id}-help` : null, `${id}-err`].filter(Boolean).join(' '));
	const wrap = h('div', { class: 'field', 'data-field': name }, h('label', { for: id }, label), input, helpEl, err);
	return { wrap, input, err };
}

function select(options, value) {
	const s = h('select', null, Object.entries(options).map(([v, t]) => h('option', { value: v }, t)));
	if (value !== undefined)
		s.value = value;
	return s;
}

export function mount(main, ctx, params) {
	let timer = null;
	let alive = true;
	const status = h('p', { class: 'status', id: 'rules-status', role: 'status' });
	const listBox = h('div', { id: 'rules-list' });
	const historyBox = h('section', { id: 'rule-history', 'aria-labelledby': 'history-title', hidden: true });

	// ---- the form ----
	const f = {};
	const add = (name, label, input, help) => (f[name] = field(name, label, input, help));
	add('kind', 'Watch for', select(RULE_KINDS, 'above'));
	add('name', 'Name (optional)', h('input', { type: 'text', maxlength: '200' }));
	add('process', 'Process', h('input', { type: 'text', required: true, maxlength: '200' }));
	add('counter', 'Counter', h('input', { type: 'text', required: true, maxlength: '200' }));
	add('type', 'Type', select(COUNTER_TYPES, 'c'));
	add('tags', 'Tags (optional)', h('input', { type: 'text' }), 'as shown in the process list, e.g. env:prod');
	add('stat', 'Statistic', select(Object.fromEntries(RULE_STATS.map((s) => [s, s.toUpperCase()])), 'avg'));
	add('limit', 'Limit', h('input', { type: 'number', step: 'any', required: true }));
	add('window_min', 'Over the last (minutes)', h('input', { type: 'number', min: '1', max: '1440', step: '1', value: '5' }));
	add('for', 'For consecutive evaluations', h('input', { type: 'number', min: '1', max: '1000', step: '1', value: '1' }),
		'how many checks in a row must break the limit before the alert fires');
	add('after_min', 'No data for (minutes)', h('input', { type: 'number', min: '1', max: '10080', step: '1', value: '10' }));
	add('after_s', 'No heartbeat for (seconds)', h('input', { type: 'number', min: '5', max: '86400', step: '1', value: '60' }));
	add('email', 'Email to', h('input', { type: 'text', autocomplete: 'email' }), 'addresses separated by commas');
	add('sms', 'SMS to', h('input', { type: 'tel' }), 'international form, e.g. +14155550100');
	add('call', 'Phone call to', h('input', { type: 'tel' }), 'international form');
	add('webhook', 'Webhook URL', h('input', { type: 'url' }), 'receives a JSON POST on firing and on resolve');
	const formMsg = h('p', { class: 'error', id: 'rule-form-msg', role: 'alert' });
	const submit = h('button', { type: 'submit' }, 'Add rule');
	const kindFields = ['process', 'counter', 'type', 'tags', 'stat', 'limit', 'window_min', 'for', 'after_min', 'after_s'];
	const form = h('form', { id: 'rule-form', class: 'rule-form', novalidate: true, 'aria-labelledby': 'add-title' },
		f.kind.wrap, f.name.wrap,
		h('fieldset', null, h('legend', null, 'What'), kindFields.map((n) => f[n].wrap)),
		h('fieldset', { id: 'rule-channels', 'aria-describedby': 'rule-channels-err' },
			h('legend', null, 'Notify'), ['email', 'sms', 'call', 'webhook'].map((n) => f[n].wrap),
			h('p', { class: 'error', id: 'rule-channels-err' })),
		formMsg, submit);

	for (const k of ['process', 'counter', 'type', 'tags'])
		if (params.get(k))
			f[k].input.value = params.get(k);

	function showKindFields() {
		const used = fieldsFor(f.kind.input.value);
		for (const n of kindFields) {
			f[n].wrap.hidden = !used.includes(n);
			f[n].input.disabled = !used.includes(n);
		}
	}
	f.kind.input.addEventListener('change', showKindFields);
	showKindFields();

	function clearErrors() {
		for (const x of Object.values(f)) {
			x.err.textContent = '';
			x.input.removeAttribute('aria-invalid');
		}
		document.getElementById('rule-channels-err').textContent = '';
		formMsg.textContent = '';
	}

	// Show errors ({field: message}); focus the first field in error. Unknown fields go to the form's message.
	function showErrors(errors) {
		let first = null;
		const loose = [];
		for (const [name, text] of Object.entries(errors)) {
			if (f[name] && !f[name].wrap.hidden) {
				f[name].err.textContent = text;
				f[name].input.setAttribute('aria-invalid', 'true');
				first = first || f[name].input;
			} else if (name === 'channels') {
				document.getElementById('rule-channels-err').textContent = text;
				first = first || f.email.input;
			} else {
				loose.push(`${name}: ${text}`);
			}
		}
		formMsg.textContent = loose.length ? loose.join('; ') : 'Please correct the fields marked above.';
		if (first)
			first.focus();
	}

	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		clearErrors();
		const values = Object.fromEntries(Object.entries(f).map(([k, x]) => [k, x.input.value]));
		const { rule, errors } = buildRule(values);
		if (!rule) {
			showErrors(errors);
			return;
		}
		submit.disabled = true;
		try {
			const r = await ctx.api.post('/api/v1/alerts', rule);
			form.reset();
			showKindFields();
			const added = r && r.rule ? r.rule : rule;
			status.textContent = `Rule “${added.name || describeRule(added)}” added.`;
			await load();
		} catch (err) {
			if (err.status === 401)
				return ctx.signOut(`The server no longer accepts this API key (${err.message}).`);
			if (err instanceof ApiError && err.status === 400 && err.path) {
				const name = formFieldOf(err.path, rule);
				const text = err.message.slice(err.path.length).replace(/^:\s*/, '');
				showErrors({ [name]: text || err.message });
			} else {
				formMsg.textContent = `The rule was not added: ${err.message}`;
			}
		} finally {
			submit.disabled = false;
		}
	});

	// ---- the list ----
	function stateBadge(r) {
		const s = r.state || 'ok';
		return h('span', null, h('span', { class: `badge ${STATE_CLASS[s] || ''}`, 'data-state': s }, s),
			r.since_ms ? h('span', { class: 'sub' }, ' since ', h('time', { datetime: isoTime(r.since_ms) }, fmtTime(r.since_ms))) : null);
	}

	function actions(r) {
		const label = r.name || describeRule(r);
		const cell = h('td', { class: 'actions' });
		const normal = () => replace(cell,
			h('button', { type: 'button', class: 'small', 'aria-label': `History of ${label}`, onclick: () => history(r) }, 'History'),
			' ',
			h('button', { type: 'button', class: 'small danger', 'aria-label': `Remove ${label}`, onclick: confirm }, 'Remove'));
		function confirm() {
			const yes = h('button', { type: 'button', class: 'small danger', onclick: remove }, 'Yes, remove');
			replace(cell, h('span', { role: 'group', 'aria-label': `Confirm removing ${label}` }, 'Remove this rule? ', yes, ' ',
				h('button', { type: 'button', class: 'small', onclick: normal }, 'Cancel')));
			yes.focus();
		}
		async function remove() {
			try {
				await ctx.api.del(`/api/v1/alerts/${encodeURIComponent(r.id)}`);
				status.textContent = `Rule ${label} removed.`;
				if (historyBox.dataset.rule === String(r.id))
					historyBox.hidden = true;
				await load();
			} catch (err) {
				if (err.status === 401)
					return ctx.signOut(`The server no longer accepts this API key (${err.message}).`);
				status.textContent = `Cannot remove the rule: ${err.message}`;
				normal();
			}
		}
		normal();
		return cell;
	}

	function drawList(rules) {
		if (!rules.length) {
			replace(listBox, h('p', { class: 'muted' }, 'No alert rules yet.'));
			return;
		}
		replace(listBox, h('table', { class: 'data', id: 'rules-table' },
			h('caption', { class: 'sr-only' }, 'Alert rules and their state'),
			h('thead', null, h('tr', null, ['Rule', 'Watches', 'Notifies', 'State', ''].map((t) => h('th', { scope: 'col' }, t)))),
			h('tbody', null, rules.map((r) => h('tr', { 'data-rule': r.id },
				h('th', { scope: 'row' }, r.name || `#${r.id}`),
				h('td', null, describeRule(r)),
				h('td', null, describeChannels(r.channels)),
				h('td', null, stateBadge(r)),
				actions(r))))));
	}

	async function load() {
		clearTimeout(timer);
		try {
			const res = await ctx.api.get('/api/v1/alerts');
			if (!alive)
				return;
			drawList(res.rules || []);
		} catch (err) {
			if (err.status === 401)
				return ctx.signOut(`The server no longer accepts this API key (${err.message}).`);
			status.textContent = `Cannot load the rules: ${err.message}`;
		}
		if (alive)
			timer = setTimeout(load, REFRESH_MS);
	}

	async function history(r) {
		const label = r.name || describeRule(r);
		historyBox.hidden = false;
		historyBox.dataset.rule = String(r.id);
		const title = h('h2', { id: 'history-title', tabindex: '-1' }, `History of ${label}`);
		replace(historyBox, title, h('p', { class: 'status' }, 'Loading…'));
		title.focus();
		try {
			const res = await ctx.api.get(`/api/v1/alerts/${encodeURIComponent(r.id)}/history`);
			const rows = res.history || [];
			replace(historyBox, title, rows.length ? h('table', { class: 'data', id: 'history-table' },
				h('thead', null, h('tr', null, ['When', 'From', 'To', 'Value'].map((t) => h('th', { scope: 'col' }, t)))),
				h('tbody', null, rows.map((x) => h('tr', null,
					h('td', null, h('time', { datetime: isoTime(x.ts_ms) }, fmtTime(x.ts_ms))),
					h('td', null, x.from), h('td', null, x.to), h('td', { class: 'num' }, fmtNum(x.value)))))) :
				h('p', { class: 'muted' }, 'No state changes yet.'),
			h('button', { type: 'button', class: 'small', onclick: () => { historyBox.hidden = true; } }, 'Close'));
		} catch (err) {
			if (err.status === 401)
				return ctx.signOut(`The server no longer accepts this API key (${err.message}).`);
			replace(historyBox, title, h('p', { class: 'error' }, `Cannot load the history: ${err.message}`));
		}
	}

	main.append(
		h('h1', null, 'Alerts'),
		h('section', { 'aria-labelledby': 'rules-title' }, h('h2', { id: 'rules-title' }, 'Rules'), status, listBox),
		historyBox,
		h('section', { 'aria-labelledby': 'add-title', class: 'panel' }, h('h2', { id: 'add-title' }, 'Add a rule'), form));
	if (params.get('counter'))
		f.limit.input.focus();
	load();
	return () => {
		alive = false;
		clearTimeout(timer);
	};
}
