// counter.js - one counter: its current values (live), today in 10-minute buckets against the average of the same
// bucket over the past week (GET /api/v1/daily in the browser's time zone), and a chart of any period at minute or
// hour resolution (GET /api/v1/series). Under the daily chart a table lists the values it draws.

import { lineChart } from '../chart.js';
import { h, replace, uid } from '../dom.js';
import { fmtClock, fmtNum, fmtTime } from '../format.js';
import {
	DAILY_STATS, RANGE_PRESETS, RANGE_STATS, STAT_LABELS, TYPE_NAMES, checkRange, currentFields, dailyDataset,
	dailyTableRows, defaultOverlay, defaultRangeStats, fromLocalInput, localDate, rangeDataset, tzOffsetMin,
	toLocalInput,
} from '../stats.js';

const DAILY_REFRESH_MS = 60000;

function checkboxes(legend, name, stats, checked, onChange) {
	const id = uid(name);
	return h('fieldset', { class: 'checks', id },
		h('legend', null, legend),
		stats.map((s) => {
			const cid = `${id}-${s}`;
			return h('span', { class: 'check' },
				h('input', { type: 'checkbox', id: cid, name, value: s, checked: checked.includes(s), onchange: onChange }),
				h('label', { for: cid }, STAT_LABELS[s]));
		}));
}

function checkedValues(fieldset) {
	return [...fieldset.querySelectorAll('input[type=checkbox]:checked')].map((i) => i.value);
}

function fieldError(input, errEl, text) {
	errEl.textContent = text || '';
	if (text)
		input.setAttribute('aria-invalid', 'true');
	else
		input.removeAttribute('aria-invalid');
}

// The current values of this counter, from the live current state.
function currentBlock(cur, sel) {
	const p = cur && (cur.processes || []).find((x) => x.process === sel.process);
	const c = p && (p.counters || []).find((x) => x.counter === sel.counter && x.type === sel.type &&
		(x.tags || '') === sel.tags);
	if (!c)
		return h('p', { class: 'muted' }, 'Not in the current state: no data in the last minutes.');
	if (!c.current)
		return h('p', { class: 'muted' }, 'Waiting for the first 5 seconds of data.');
	return h('dl', { class: 'stats' }, currentFields(sel.type).map((f) =>
		h('div', null, h('dt', null, f), h('dd', { 'data-field': f }, fmtNum(c.current[f])))));
}

export function mount(main, ctx, params) {
	const sel = {
		process: params.get('process') || '', counter: params.get('counter') || '', type: params.get('type') || '',
		tags: params.get('tags') || '',
	};
	if (!sel.process || !sel.counter || !TYPE_NAMES[sel.type]) {
		main.append(h('h1', null, 'Counter'), h('p', { class: 'error', role: 'alert' },
			'This link does not name a counter (process, counter and type are needed).'), h('a', { href: '#/' }, 'Processes'));
		return null;
	}
	ctx.setTitle(`${sel.process}/${sel.counter}`);
	const cleanups = [];
	const typeName = TYPE_NAMES[sel.type];
	const alertQ = new URLSearchParams({ process: sel.process, counter: sel.counter, type: sel.type });
	if (sel.tags)
		alertQ.set('tags', sel.tags);

	// ---- header and current values ----
	const curBox = h('div', { id: 'current-values' });
	main.append(
		h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' }, h('a', { href: '#/' }, 'Processes'), ' › ', sel.process),
		h('div', { class: 'page-head' },
			h('h1', null, sel.counter, ' ', h('span', { class: 'sub' }, `${typeName} of ${sel.process}`),
				sel.tags ? h('span', { class: 'tags' }, ` ${sel.tags}`) : null),
			h('a', { class: 'button', href: `#/alerts?${alertQ}` }, 'Add an alert')),
		h('section', { 'aria-labelledby': 'cur-title' }, h('h2', { id: 'cur-title' }, 'Now (last minute)'), curBox));
	const drawCurrent = (cur) => replace(curBox, currentBlock(cur, sel));
	drawCurrent(ctx.live.current());
	cleanups.push(ctx.live.subscribe('current', drawCurrent));

	// ---- today against the past week ----
	const overlay = defaultOverlay(sel.type);
	const dateInput = h('input', { type: 'date', id: 'daily-date', value: localDate(), max: localDate() });
	const dateErr = h('span', { class: 'error', id: 'daily-date-err' });
	dateInput.setAttribute('aria-describedby', 'daily-date-err');
	const todayBox = checkboxes('Today', 'today', DAILY_STATS, overlay.today, () => redrawDaily());
	const weekBox = checkboxes('Past week average', 'week', DAILY_STATS, overlay.week, () => redrawDaily());
	const perSecond = sel.type === 'c' ?
		h('span', { class: 'check' }, h('input', { type: 'checkbox', id: 'daily-rate', onchange: () => redrawDaily() }),
			h('label', { for: 'daily-rate' }, 'per second (rate)')) : null;
	const dailyStatus = h('p', { class: 'status', id: 'daily-status', role: 'status' }, 'Loading…');
	const dailyChartBox = h('div', { class: 'chart', id: 'daily-chart' });
	const dailyTable = h('div', { id: 'daily-table-box' });
	main.append(h('section', { 'aria-labelledby': 'daily-title', class: 'panel' },
		h('h2', { id: 'daily-title' }, 'Today against the past week'),
		h('p', { class: 'muted small' }, 'Each point is 10 minutes in your time zone; dashed lines are the average of the ' +
			'same 10 minutes over the 7 days before (days with data only).'),
		h('form', { class: 'controls', onsubmit: (e) => e.preventDefault() },
			h('span', { class: 'field' }, h('label', { for: 'daily-date' }, 'Day'), dateInput, dateErr),
			todayBox, weekBox, perSecond),
		dailyStatus, dailyChartBox,
		h('details', { id: 'daily-details', open: true }, h('summary', null, 'Values by 10 minutes'), dailyTable)));

	let daily = null;
	let dailyChart = null;
	let dailyTimer = null;
	let dailySeq = 0;

	// The whole day on the x axis, whatever part of it has data.
	function dayRange() {
		return [daily.day_start, daily.day_start + (daily.today.length || 144) * (daily.bucket_s || 600)];
	}

	function currentOverlay() {
		return { today: checkedValues(todayBox), week: checkedValues(weekBox) };
	}

	function drawDailyTable(ov, rate) {
		const rows = dailyTableRows(daily, ov, sel.type, rate);
		if (!rows.length) {
			replace(dailyTable, h('p', { class: 'muted' }, 'No data on this day or the 7 days before.'));
			return;
		}
		const cols = [...ov.today.map((s) => ['today', s]), ...ov.week.map((s) => ['week', s])];
		const unit = (s) => (rate && sel.type === 'c' && (s === 'sum' || s === 'count') ? '/s' : '');
		replace(dailyTable, h('table', { class: 'data', id: 'daily-table' },
			h('caption', { class: 'sr-only' }, `${sel.counter} by 10 minutes on ${daily.date}, today and the week average`),
			h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Time'),
				cols.map(([w, s]) => h('th', { scope: 'col', 'data-col': `${w}.${s}` },
					`${STAT_LABELS[s]}${unit(s)} ${w === 'today' ? 'today' : 'week avg'}`)),
				h('th', { scope: 'col' }, 'Days in avg'))),
			h('tbody', null, rows.map((r) => h('tr', { 'data-t': r.t },
				h('th', { scope: 'row' }, h('time', { datetime: new Date(r.t * 1000).toISOString() }, fmtClock(r.t))),
				cols.map(([w, s]) => h('td', { class: 'num', 'data-col': `${w}.${s}` }, fmtNum(r[w][s]))),
				h('td', { class: 'num' }, r.days === null ? '–' : String(r.days)))))));
	}

	function redrawDaily() {
		if (!daily)
			return;
		const ov = currentOverlay();
		const rate = !!(perSecond && perSecond.querySelector('input').checked);
		const ds = dailyDataset(daily, ov, sel.type, rate);
		if (!ds.series.length) {
			if (dailyChart)
				dailyChart.destroy();
			dailyChart = null;
			replace(dailyChartBox, h('p', { class: 'muted' }, 'Choose at least one statistic to draw.'));
		} else if (dailyChart) {
			dailyChart.update(ds, dayRange());
		} else {
			replace(dailyChartBox);
			dailyChart = lineChart(dailyChartBox, ds, {
				ariaLabel: `${sel.counter} today against the past week`, xRange: dayRange(),
			});
		}
		drawDailyTable(ov, rate);
	}

	async function loadDaily() {
		const seq = ++dailySeq;
		clearTimeout(dailyTimer);
		const date = dateInput.value || localDate();
		try {
			const d = await ctx.api.get('/api/v1/daily', {
				process: sel.process, counter: sel.counter, type: sel.type, tags: sel.tags, date,
				tz_offset_min: tzOffsetMin(new Date(`${date}T12:00:00`)),
			});
			if (seq !== dailySeq)
				return;
			daily = d;
			fieldError(dateInput, dateErr, '');
			dailyStatus.textContent = `${d.date}: ${d.today.filter(Boolean).length} of ${d.today.length} buckets ` +
				`with data · loaded ${fmtTime(Date.now())}`;
			redrawDaily();
		} catch (e) {
			if (seq !== dailySeq)
				return;
			if (e.status === 401)
				return ctx.signOut(`The server no longer accepts this API key (${e.message}).`);
			if (e.path === 'date')
				fieldError(dateInput, dateErr, e.message);
			dailyStatus.textContent = `Cannot load the day: ${e.message}`;
		}
		if (!dateInput.value || dateInput.value === localDate())
			dailyTimer = setTimeout(loadDaily, DAILY_REFRESH_MS);
	}
	dateInput.addEventListener('change', loadDaily);
	loadDaily();
	cleanups.push(() => {
		dailySeq++;
		clearTimeout(dailyTimer);
		if (dailyChart)
			dailyChart.destroy();
	});

	// ---- any period ----
	const preset = h('select', { id: 'range-preset' },
		RANGE_PRESETS.map((p) => h('option', { value: p.id }, p.label)), h('option', { value: 'custom' }, 'Custom'));
	preset.value = '6h';
	const res = h('select', { id: 'range-res' }, h('option', { value: 'minute' }, 'minute'), h('option', { value: 'hour' }, 'hour'));
	const from = h('input', { type: 'datetime-local', id: 'range-from', 'aria-describedby': 'range-from-err' });
	const to = h('input', { type: 'datetime-local', id: 'range-to', 'aria-describedby': 'range-to-err' });
	const fromErr = h('span', { class: 'error', id: 'range-from-err' });
	const toErr = h('span', { class: 'error', id: 'range-to-err' });
	const stats = RANGE_STATS.filter((s) => sel.type === 'ms' || !['p50', 'p99'].includes(s));
	const rangeBox = checkboxes('Statistics', 'range', stats, defaultRangeStats(sel.type), () => drawRange());
	const rangeStatus = h('p', { class: 'status', id: 'range-status', role: 'status' });
	const rangeChartBox = h('div', { class: 'chart', id: 'range-chart' });
	function applyPreset() {
		const p = RANGE_PRESETS.find((x) => x.id === preset.value);
		if (!p)
			return;
		const now = Math.floor(Date.now() / 1000);
		from.value = toLocalInput(now - p.seconds);
		to.value = toLocalInput(now + 60);
		res.value = p.res;
	}
	preset.addEventListener('change', () => {
		applyPreset();
		if (preset.value !== 'custom')
			loadRange();
	});
	for (const el of [from, to, res])
		el.addEventListener('change', () => {
			if (el !== res)
				preset.value = 'custom';
		});
	main.append(h('section', { 'aria-labelledby': 'range-title', class: 'panel' },
		h('h2', { id: 'range-title' }, 'Any period'),
		h('form', { class: 'controls', onsubmit: (e) => { e.preventDefault(); loadRange(); } },
			h('span', { class: 'field' }, h('label', { for: 'range-preset' }, 'Period'), preset),
			h('span', { class: 'field' }, h('label', { for: 'range-from' }, 'From'), from, fromErr),
			h('span', { class: 'field' }, h('label', { for: 'range-to' }, 'To'), to, toErr),
			h('span', { class: 'field' }, h('label', { for: 'range-res' }, 'Resolution'), res),
			rangeBox,
			h('button', { type: 'submit' }, 'Show')),
		rangeStatus, rangeChartBox));

	let series = null;
	let rangeChart = null;
	let rangeSeq = 0;
	function drawRange() {
		if (!series)
			return;
		const ds = rangeDataset(series, checkedValues(rangeBox));
		if (!ds.series.length || !ds.x.length) {
			if (rangeChart)
				rangeChart.destroy();
			rangeChart = null;
			replace(rangeChartBox, h('p', { class: 'muted' },
				ds.x.length ? 'Choose at least one statistic to draw.' : 'No data in this period.'));
		} else if (rangeChart) {
			rangeChart.update(ds, [series.from, series.to]);
		} else {
			replace(rangeChartBox);
			rangeChart = lineChart(rangeChartBox, ds, {
				ariaLabel: `${sel.counter} from ${from.value} to ${to.value}`, xRange: [series.from, series.to],
			});
		}
	}
	async function loadRange() {
		const f = fromLocalInput(from.value);
		const t = fromLocalInput(to.value);
		fieldError(from, fromErr, '');
		fieldError(to, toErr, '');
		const bad = checkRange(f, t, res.value);
		if (bad) {
			const [input, err] = bad.field === 'from' ? [from, fromErr] : [to, toErr];
			fieldError(input, err, bad.text);
			input.focus();
			return;
		}
		const seq = ++rangeSeq;
		rangeStatus.textContent = 'Loading…';
		try {
			const s = await ctx.api.get('/api/v1/series', {
				process: sel.process, counter: sel.counter, type: sel.type, tags: sel.tags, res: res.value, from: f, to: t,
			});
			if (seq !== rangeSeq)
				return;
			series = s;
			const unit = s.res === 'hour' ? 'hour' : 'minute';
			rangeStatus.textContent = `${s.points.length} ${unit}${s.points.length === 1 ? '' : 's'} with data from ` +
				`${fmtTime(s.from * 1000)} to ${fmtTime(s.to * 1000)}`;
			drawRange();
		} catch (e) {
			if (seq !== rangeSeq)
				return;
			if (e.status === 401)
				return ctx.signOut(`The server no longer accepts this API key (${e.message}).`);
			if (e.path === 'from' || e.path === 'to')
				fieldError(e.path === 'from' ? from : to, e.path === 'from' ? fromErr : toErr, e.message);
			rangeStatus.textContent = `Cannot load the period: ${e.message}`;
		}
	}
	applyPreset();
	loadRange();
	cleanups.push(() => {
		rangeSeq++;
		if (rangeChart)
			rangeChart.destroy();
	});

	return () => cleanups.forEach((fn) => fn());
}
