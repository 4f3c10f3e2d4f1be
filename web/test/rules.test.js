// rules.test.js - alert rules built from the form (src/rules.js): what each kind sends, every field's check, and the
// mapping of server errors back to form fields.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { buildRule, describeChannels, describeRule, fieldsFor, formFieldOf } from '../src/rules.js';

const base = {
	kind: 'above', name: '', process: 'web', counter: 'latency', type: 'ms', tags: '', stat: 'avg', limit: '250',
	window_min: '5', for: '2', after_s: '60', after_min: '10', email: '', sms: '', call: '', webhook: '',
};

test('an above rule carries the limit fields and only them', () => {
	const { rule, errors } = buildRule({ ...base, email: 'ops@example.com, dev@example.com', name: ' slow web ' });
	assert.deepEqual(errors, {});
	assert.deepEqual(rule, {
		kind: 'above', process: 'web', counter: 'latency', type: 'ms', stat: 'avg', limit: 250, window_min: 5, for: 2,
		channels: [{ type: 'email', to: ['ops@example.com', 'dev@example.com'] }], name: 'slow web',
	});
});

test('stopped_working and stopped_responding carry their own fields', () => {
	assert.deepEqual(buildRule({ ...base, kind: 'stopped_working', tags: 'env:prod' }).rule, {
		kind: 'stopped_working', process: 'web', counter: 'latency', type: 'ms', tags: 'env:prod', after_min: 10, channels: [],
	});
	assert.deepEqual(buildRule({ ...base, kind: 'stopped_responding', webhook: 'http://127.0.0.1:9/hook' }).rule, {
		kind: 'stopped_responding', process: 'web', after_s: 60, channels: [{ type: 'webhook', url: 'http://127.0.0.1:9/hook' }],
	});
	assert.deepEqual(fieldsFor('nonsense'), []);
});

test('every bad field is named', () => {
	const cases = [
		[{ kind: 'sometimes' }, 'kind'],
		[{ process: '' }, 'process'],
		[{ process: 'a/b' }, 'process'],
		[{ process: 'x'.repeat(201) }, 'process'],
		[{ counter: 'a|b' }, 'counter'],
		[{ counter: '' }, 'counter'],
		[{ type: 'x' }, 'type'],
		[{ stat: 'median' }, 'stat'],
		[{ stat: 'rate' }, 'stat'], // rate of a timer
		[{ type: 'g', stat: 'top10' }, 'stat'], // quantiles of timers only
		[{ type: 's', stat: 'avg' }, 'stat'], // sets: count only
		[{ limit: '' }, 'limit'],
		[{ limit: 'ten' }, 'limit'],
		[{ window_min: '0' }, 'window_min'],
		[{ window_min: '1.5' }, 'window_min'],
		[{ for: '1001' }, 'for'],
		[{ kind: 'stopped_working', after_min: '' }, 'after_min'],
		[{ kind: 'stopped_responding', after_s: '-5' }, 'after_s'],
		[{ kind: 'stopped_responding', after_s: '4' }, 'after_s'],
		[{ email: 'ops@example.com, nobody' }, 'email'],
		[{ sms: '0612345678' }, 'sms'],
		[{ call: '+1 415' }, 'call'],
		[{ webhook: 'ftp://example.com/' }, 'webhook'],
		[{ webhook: 'not a url' }, 'webhook'],
	];
	for (const [change, field] of cases) {
		const { rule, errors } = buildRule({ ...base, ...change });
		assert.equal(rule, null, JSON.stringify(change));
		assert.deepEqual(Object.keys(errors), [field], JSON.stringify(change));
	}
});

test('fields a kind does not use are not checked', () => {
	const { rule } = buildRule({ ...base, kind: 'stopped_responding', counter: '', limit: 'x', stat: '' });
	assert.deepEqual(rule, { kind: 'stopped_responding', process: 'web', after_s: 60, channels: [] });
});

test('server error paths map to form fields', () => {
	const rule = { channels: [{ type: 'email', to: ['a@b.c'] }, { type: 'sms', to: '+1555' }] };
	assert.equal(formFieldOf('limit', rule), 'limit');
	assert.equal(formFieldOf('channels[1].to', rule), 'sms');
	assert.equal(formFieldOf('channels[0].to[0]', rule), 'email');
	assert.equal(formFieldOf('channels[7]', rule), 'channels');
	assert.equal(formFieldOf('channels', rule), 'channels');
	assert.equal(formFieldOf(null, rule), null);
});

test('descriptions read as sentences', () => {
	assert.equal(describeRule({ kind: 'above', process: 'web', counter: 'latency', type: 'ms', stat: 'avg', limit: 250,
		window_min: 5, for: 2 }), 'web/latency (timer) avg > 250 over 5 min, 2 times in a row');
	assert.equal(describeRule({ kind: 'stopped_responding', process: 'web', after_s: 30 }), 'web sends no heartbeat for 30 s');
	assert.equal(describeChannels([]), 'none (shown here only)');
	assert.equal(describeChannels([{ type: 'email', to: ['a@b.c'] }, { type: 'call', to: '+15550100' }]),
		'email a@b.c; call +15550100');
});
