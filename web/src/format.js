// format.js - numbers, sizes, durations and times as the dashboard shows them.

const NONE = '–';

// A number with at most 4 significant decimals past the integer part; null/NaN as a dash.
export function fmtNum(v, unit = '') {
	if (v === null || v === undefined || !Number.isFinite(v))
		return NONE;
	const a = Math.abs(v);
	let s;
	if (a !== 0 && (a >= 1e12 || a < 1e-3))
		s = v.toExponential(3);
	else if (Number.isInteger(v))
		s = v.toLocaleString('en-US');
	else
		s = v.toLocaleString('en-US', { maximumFractionDigits: a >= 100 ? 1 : a >= 1 ? 3 : 4 });
	return unit ? `${s} ${unit}`.replace(' /', '/') : s;
}

export function fmtBytes(v) {
	if (v === null || v === undefined || !Number.isFinite(v))
		return NONE;
	const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
	let i = 0;
	while (Math.abs(v) >= 1024 && i < units.length - 1) {
		v /= 1024;
		i++;
	}
	return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

// 3725 -> "1 h 2 min"
export function fmtDuration(seconds) {
	if (seconds === null || seconds === undefined || !Number.isFinite(seconds))
		return NONE;
	const s = Math.max(0, Math.floor(seconds));
	if (s < 60)
		return `${s} s`;
	if (s < 3600)
		return `${Math.floor(s / 60)} min ${s % 60} s`;
	if (s < 86400)
		return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
	return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

// A time in the browser's zone: "14:03:07" today, "2024-05-01 14:03" otherwise.
export function fmtTime(ms) {
	if (ms === null || ms === undefined || !Number.isFinite(ms))
		return NONE;
	const d = new Date(ms);
	const now = new Date();
	const p = (v) => String(v).padStart(2, '0');
	const hms = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
	if (d.toDateString() === now.toDateString())
		return hms;
	return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${hms.slice(0, 5)}`;
}

// "14:10" for a bucket start in unix seconds.
export function fmtClock(unixS) {
	const d = new Date(unixS * 1000);
	return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

// "3 min ago" relative to nowMs.
export function fmtAgo(ms, nowMs) {
	if (ms === null || ms === undefined || !Number.isFinite(ms))
		return 'never';
	return `${fmtDuration((nowMs - ms) / 1000)} ago`;
}

// An ISO date-time for <time datetime="...">.
export function isoTime(ms) {
	return Number.isFinite(ms) ? new Date(ms).toISOString() : '';
}
