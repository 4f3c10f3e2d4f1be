// stats.test.js - the dashboard's computations (src/stats.js) under node's test runner: defaults per counter type,
// the daily and range datasets built from API replies, headline values, error-field parsing and range checks.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
	checkRange, dailyDataset, dailyTableRows, defaultOverlay, fromLocalInput, headline, localDate, rangeDataset,
	splitFieldError, toLocalInput,
} from '../src/stats.js';

// A /api/v1/daily reply with data in buckets 0 and 2 today and bucket 2 in the week.
function daily() {
	const today = new Array(144).fill(null);
	const week = new Array(144).fill(null);
	today[0] = { t: 1000, sum: 600, count: 6, min: 1, max: 5, avg: 100, bot10: 1, top10: 5 };
	today[2] = { t: 2200, sum: 1200, count: 12, min: 2, max: 9, avg: 100, bot10: 2, top10: 8 };
	week[2] = { t: 2200, sum: 300, count: 3, min: 1, max: 3, avg: 100, bot10: 1, top10: 3, days: 2 };
	return { date: '2024-05-01', tz_offset_min: 120, bucket_s: 600, day_start: 1000, today, week };
}

test('defaults follow the original dashboard per counter type', () => {
	const cases = [
		['c', ['sum'], ['sum']],
		['g', ['avg'], ['avg']],
		['ms', ['avg', 'min', 'max', 'bot10', 'top10'], ['avg']],
		['s', ['count'], ['count']],
	];
	for (const [type, today, week] of cases)
		assert.deepEqual(defaultOverlay(type), { today, week }, type);
});

test('daily dataset: x is every bucket start, missing buckets are null, series in stat order', () => {
	const ds = dailyDataset(daily(), { today: ['sum', 'max'], week: ['sum'] }, 'c', false);
	assert.equal(ds.x.length, 144);
	assert.equal(ds.x[0], 1000);
	assert.equal(ds.x[143], 1000 + 143 * 600);
	assert.deepEqual(ds.series.map((s) => s.key), ['today.max', 'today.sum', 'week.sum']);
	const sum = ds.series[1].values;
	assert.equal(sum[0], 600);
	assert.equal(sum[1], null);
	assert.equal(sum[2], 1200);
	assert.equal(ds.series[2].values[2], 300);
	assert.equal(ds.series[2].values[0], null);
});

test('daily dataset per second divides SUM and COUNT of counters only', () => {
	const rate = dailyDataset(daily(), { today: ['sum', 'count', 'max'], week: [] }, 'c', true);
	assert.deepEqual(rate.series.map((s) => s.values[0]), [5, 0.01, 1]);
	assert.match(rate.series.find((s) => s.stat === 'sum').label, /SUM\/s/);
	const gauge = dailyDataset(daily(), { today: ['sum'], week: [] }, 'g', true);
	assert.equal(gauge.series[0].values[0], 600);
});

test('daily table lists buckets with data, newest first, with the days of the average', () => {
	const rows = dailyTableRows(daily(), { today: ['sum'], week: ['sum'] }, 'c', false);
	assert.deepEqual(rows.map((r) => r.t), [2200, 1000]);
	assert.deepEqual(rows[0], { t: 2200, today: { sum: 1200 }, week: { sum: 300 }, days: 2 });
	assert.deepEqual(rows[1], { t: 1000, today: { sum: 600 }, week: { sum: null }, days: null });
});

test('range dataset puts a null in gaps longer than one step', () => {
	const resp = {
		res: 'minute',
		points: [{ t: 60, sum: 1 }, { t: 120, sum: 2 }, { t: 300, sum: 5 }],
	};
	const ds = rangeDataset(resp, ['sum', 'max']);
	assert.deepEqual(ds.x, [60, 120, 180, 300]);
	assert.deepEqual(ds.series[0].values, [1, 2, null, 5]);
	assert.deepEqual(ds.series[1].values, [null, null, null, null]);
	const hours = rangeDataset({ res: 'hour', points: [{ t: 0, avg: 1 }, { t: 3600, avg: 2 }] }, ['avg']);
	assert.deepEqual(hours.x, [0, 3600]);
});

test('headline value per type; unknown current is null', () => {
	assert.deepEqual(headline({ type: 'c', current: { rate: 2.5 } }), { label: 'rate', value: 2.5, unit: '/s' });
	assert.deepEqual(headline({ type: 'g', current: { last: 7 } }), { label: 'last', value: 7, unit: '' });
	assert.deepEqual(headline({ type: 'ms', current: { avg: 153 } }), { label: 'avg', value: 153, unit: 'ms' });
	assert.deepEqual(headline({ type: 's', current: { distinct: 3 } }), { label: 'distinct', value: 3, unit: '' });
	assert.equal(headline({ type: 'ms', current: null }).value, null);
	assert.equal(headline({ type: 'ms', current: { avg: null } }).value, null);
});

test('server errors are split at the field they name', () => {
	const cases = [
		['limit: must be a number', 'limit', 'limit', 'must be a number'],
		['channels[1].to: not an email address', 'channels', 'channels[1].to', 'not an email address'],
		['tz_offset_min: must be -720..840', 'tz_offset_min', 'tz_offset_min', 'must be -720..840'],
		['unknown API key', null, null, 'unknown API key'],
		['out of memory: try later', null, null, 'out of memory: try later'],
	];
	for (const [msg, field, path, text] of cases)
		assert.deepEqual(splitFieldError(msg), { field, path, text }, msg);
});

test('range checks name the field at fault', () => {
	assert.equal(checkRange(0, 3600, 'minute'), null);
	assert.deepEqual(checkRange(null, 3600, 'minute'), { field: 'from', text: 'choose a start time' });
	assert.equal(checkRange(100, 100, 'minute').field, 'to');
	assert.equal(checkRange(0, 20160 * 60 + 1, 'minute').field, 'from');
	assert.equal(checkRange(0, 20160 * 60 + 1, 'hour'), null);
});

test('local date and datetime-local inputs round-trip', () => {
	const t = Math.floor(new Date(2024, 4, 1, 13, 45).getTime() / 1000);
	assert.equal(toLocalInput(t), '2024-05-01T13:45');
	assert.equal(fromLocalInput('2024-05-01T13:45'), t);
	assert.equal(fromLocalInput(''), null);
	assert.equal(fromLocalInput('nonsense'), null);
	assert.equal(localDate(new Date(2024, 0, 9)), '2024-01-09');
});
