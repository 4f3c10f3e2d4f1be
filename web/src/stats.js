// stats.js - what the dashboard computes from API replies, kept free of the DOM so node's test runner can check it
// (web/test/stats.test.js): which statistics a counter type plots by default, the chart datasets built from
// /api/v1/daily and /api/v1/series, the headline value of a counter, and server error messages split by field.

export const TYPE_NAMES = { c: 'counter', g: 'gauge', ms: 'timer', s: 'set' };

// The statistics of the daily-against-week chart, in the order the page offers them.
export const DAILY_STATS = ['min', 'max', 'avg', 'bot10', 'top10', 'count', 'sum'];
// The range chart has the stored percentiles and first/last values too.
export const RANGE_STATS = ['min', 'max', 'avg', 'bot10', 'top10', 'p50', 'p99', 'count', 'sum', 'fst', 'lst'];

export const STAT_LABELS = {
	min: 'MIN', max: 'MAX', avg: 'AVG', bot10: 'BOT10', top10: 'TOP10', count: 'COUNT', sum: 'SUM',
	p50: 'P50', p99: 'P99', fst: 'FST', lst: 'LST',
};

// Defaults as the original dashboard had them: a counter plots its SUM (or its rate), a gauge its average, a timer
// avg/min/max/bot10/top10 of today against the past week's average.
export function defaultOverlay(type) {
	switch (type) {
	case 'c': return { today: ['sum'], week: ['sum'] };
	case 'g': return { today: ['avg'], week: ['avg'] };
	case 'ms': return { today: ['avg', 'min', 'max', 'bot10', 'top10'], week: ['avg'] };
	default: return { today: ['count'], week: ['count'] };
	}
}

// Default statistics of the range chart: the same as today's overlay.
export function defaultRangeStats(type) {
	return defaultOverlay(type).today.slice();
}

// Per-second rates make sense for counters only: SUM and COUNT divided by the bucket length.
export function rateApplies(type, stat) {
	return type === 'c' && (stat === 'sum' || stat === 'count');
}

function valueOf(bucket, stat, perSecondOf) {
	if (!bucket)
		return null;
	const v = bucket[stat];
	if (v === null || v === undefined || !Number.isFinite(v))
		return null;
	return perSecondOf ? v / perSecondOf : v;
}

/*
 * The chart data of a /api/v1/daily reply: x = the 144 bucket starts (unix seconds, today's), one series per chosen
 * statistic of today and of the week average. perSecond (counters only) divides SUM and COUNT by the bucket length.
 * Returns {x, series: [{key, stat, which: 'today'|'week', label, values}]}.
 */
export function dailyDataset(daily, overlay, type, perSecond) {
	const bucket = daily.bucket_s || 600;
	const n = Math.max(daily.today ? daily.today.length : 0, daily.week ? daily.week.length : 0);
	const x = new Array(n);
	for (let i = 0; i < n; i++)
		x[i] = daily.day_start + i * bucket;
	const series = [];
	for (const which of ['today', 'week']) {
		const rows = daily[which] || [];
		for (const stat of DAILY_STATS) {
			if (!overlay[which].includes(stat))
				continue;
			const div = perSecond && rateApplies(type, stat) ? bucket : 0;
			const values = new Array(n);
			for (let i = 0; i < n; i++)
				values[i] = valueOf(rows[i], stat, div);
			series.push({
				key: `${which}.${stat}`, stat, which,
				label: `${STAT_LABELS[stat]}${div ? '/s' : ''} ${which === 'today' ? 'today' : 'week avg'}`,
				values,
			});
		}
	}
	return { x, series };
}

/*
 * The rows of the table under the daily chart: the buckets where today or the week average has data, newest first.
 * Each row: {t, today: {stat: value}, week: {stat: value}, days}.
 */
export function dailyTableRows(daily, overlay, type, perSecond) {
	const bucket = daily.bucket_s || 600;
	const rows = [];
	const n = Math.max(daily.today ? daily.today.length : 0, daily.week ? daily.week.length : 0);
	for (let i = 0; i < n; i++) {
		const td = daily.today ? daily.today[i] : null;
		const wk = daily.week ? daily.week[i] : null;
		if (!td && !wk)
			continue;
		const row = { t: daily.day_start + i * bucket, today: {}, week: {}, days: wk ? wk.days ?? null : null };
		for (const which of ['today', 'week']) {
			for (const stat of overlay[which]) {
				const div = perSecond && rateApplies(type, stat) ? bucket : 0;
				row[which][stat] = valueOf(which === 'today' ? td : wk, stat, div);
			}
		}
		rows.push(row);
	}
	return rows.reverse();
}

/*
 * The chart data of a /api/v1/series reply. Points come only for minutes (hours) with data; a null is put in every
 * gap longer than one step so a line is not drawn across time without data.
 */
export function rangeDataset(resp, stats) {
	const step = resp.res === 'hour' ? 3600 : 60;
	const x = [];
	const cols = stats.map(() => []);
	let prev = null;
	for (const p of resp.points || []) {
		if (prev !== null && p.t - prev > step) {
			x.push(prev + step);
			cols.forEach((c) => c.push(null));
		}
		x.push(p.t);
		stats.forEach((s, i) => cols[i].push(valueOf(p, s, 0)));
		prev = p.t;
	}
	return {
		x,
		series: stats.map((stat, i) => ({ key: stat, stat, which: 'range', label: STAT_LABELS[stat], values: cols[i] })),
	};
}

// The headline value of a counter in the process list: {label, value, unit}; value null when not known yet.
export function headline(counter) {
	const cur = counter.current;
	const pick = (f) => (cur && Number.isFinite(cur[f]) ? cur[f] : null);
	switch (counter.type) {
	case 'c': return { label: 'rate', value: pick('rate'), unit: '/s' };
	case 'g': return { label: 'last', value: pick('last'), unit: '' };
	case 'ms': return { label: 'avg', value: pick('avg'), unit: 'ms' };
	case 's': return { label: 'distinct', value: pick('distinct'), unit: '' };
	default: return { label: 'count', value: pick('count'), unit: '' };
	}
}

// The fields of the current state shown for a counter type, in order.
export function currentFields(type) {
	switch (type) {
	case 'c': return ['rate', 'sum', 'count'];
	case 'g': return ['last', 'avg', 'min', 'max', 'count'];
	case 'ms': return ['avg', 'min', 'max', 'bot10', 'top10', 'p50', 'p99', 'count'];
	case 's': return ['distinct', 'count'];
	default: return ['count'];
	}
}

// A stable key for a series of a process: counter, type and tags.
export function seriesKey(process, counter, type, tags) {
	return JSON.stringify([process, counter, type, tags || '']);
}

/*
 * Split a server error message ("limit: must be a number", "channels[1].to: not an email address") into the field it
 * names and the rest. The field is everything before the first ": " when it looks like a field path; else null.
 */
export function splitFieldError(message) {
	const m = /^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[A-Za-z_][A-Za-z0-9_]*)*):\s*(.*)$/s.exec(message || '');
	if (!m)
		return { field: null, path: null, text: message || '' };
	return { field: m[1].split(/[.[]/)[0], path: m[1], text: m[2] };
}

// The browser's offset from UTC in minutes east, as /api/v1/daily wants it.
export function tzOffsetMin(date = new Date()) {
	return -date.getTimezoneOffset();
}

// "YYYY-MM-DD" of a Date in the browser's time zone.
export function localDate(date = new Date()) {
	const p = (v) => String(v).padStart(2, '0');
	return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}`;
}

// The value of an <input type="datetime-local"> for a unix time in seconds (browser time zone, minute precision).
export function toLocalInput(unixS) {
	const d = new Date(unixS * 1000);
	const p = (v) => String(v).padStart(2, '0');
	return `${localDate(d)}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

// Unix seconds of an <input type="datetime-local"> value (browser time zone); null when empty or invalid.
export function fromLocalInput(value) {
	if (!value)
		return null;
	const ms = new Date(value).getTime();
	return Number.isFinite(ms) ? Math.floor(ms / 1000) : null;
}

// Preset periods of the range chart, with the resolution that keeps the point count below the API's 20160.
export const RANGE_PRESETS = [
	{ id: '1h', label: 'Last hour', seconds: 3600, res: 'minute' },
	{ id: '6h', label: 'Last 6 hours', seconds: 6 * 3600, res: 'minute' },
	{ id: '24h', label: 'Last 24 hours', seconds: 86400, res: 'minute' },
	{ id: '7d', label: 'Last 7 days', seconds: 7 * 86400, res: 'hour' },
	{ id: '30d', label: 'Last 30 days', seconds: 30 * 86400, res: 'hour' },
];

// The longest period one request may cover at a resolution (the API answers at most 20160 points).
export function maxRangeSeconds(res) {
	return 20160 * (res === 'hour' ? 3600 : 60);
}

/*
 * Check a range chosen on the page. Returns null when it is fine, else {field: 'from'|'to', text}.
 */
export function checkRange(from, to, res) {
	if (from === null)
		return { field: 'from', text: 'choose a start time' };
	if (to === null)
		return { field: 'to', text: 'choose an end time' };
	if (to <= from)
		return { field: 'to', text: 'must be after the start' };
	if (to - from > maxRangeSeconds(res))
		return { field: 'from', text: `at ${res} resolution a range covers at most ${res === 'hour' ? '840 days' : '14 days'}` };
	return null;
}
