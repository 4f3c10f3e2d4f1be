// rules.js - alert rules on the page: which form fields each kind of rule has, the rule object built from the form
// (checked before it is sent; the server checks again and names the field it rejects), and one-line descriptions.
// No DOM here: web/test/rules.test.js checks it under node.

export const RULE_KINDS = {
	above: 'Above a limit',
	below: 'Below a limit',
	stopped_working: 'Stopped working (no data)',
	stopped_responding: 'Stopped responding (no heartbeat)',
};

export const RULE_STATS = ['avg', 'sum', 'count', 'min', 'max', 'bot10', 'top10', 'lst', 'rate'];

export const COUNTER_TYPES = { c: 'counter', g: 'gauge', ms: 'timer', s: 'set' };

// The form fields each kind uses besides name and the channels.
const KIND_FIELDS = {
	above: ['process', 'counter', 'type', 'tags', 'stat', 'limit', 'window_min', 'for'],
	below: ['process', 'counter', 'type', 'tags', 'stat', 'limit', 'window_min', 'for'],
	stopped_working: ['process', 'counter', 'type', 'tags', 'after_min'],
	stopped_responding: ['process', 'after_s'],
};

export function fieldsFor(kind) {
	return KIND_FIELDS[kind] || [];
}

// Process and counter names as the server takes them: 1 to 200 printable characters other than '/' and '|'.
const NAME_RE = /^[^\x00-\x1f\x7f/|]{1,200}$/;
const EMAIL_RE = /^[^@\s,]+@[^@\s,]+\.[^@\s,]+$/;
const PHONE_RE = /^\+[1-9][0-9]{6,14}$/;

function wholeNumber(s, min, max) {
	if (!/^\d+$/.test(s))
		return null;
	const v = Number(s);
	return v >= min && v <= max ? v : null;
}

/*
 * Build a rule from the form's values (strings, trimmed here):
 *   kind, name, process, counter, type, tags, stat, limit, window_min, for, after_s, after_min,
 *   email (comma-separated addresses), sms, call (E.164 numbers), webhook (URL); an empty channel field is not used.
 * Returns {rule, errors} where errors maps a field to a message; rule is null when there are errors.
 */
export function buildRule(form) {
	const v = {};
	for (const [k, val] of Object.entries(form))
		v[k] = typeof val === 'string' ? val.trim() : val;
	const errors = {};
	const rule = {};
	if (!RULE_KINDS[v.kind]) {
		errors.kind = 'choose what the rule watches';
		return { rule: null, errors };
	}
	rule.kind = v.kind;
	const fields = fieldsFor(v.kind);
	if (fields.includes('process')) {
		if (!v.process)
			errors.process = 'required';
		else if (!NAME_RE.test(v.process))
			errors.process = '1 to 200 printable characters other than / and |';
		else
			rule.process = v.process;
	}
	if (fields.includes('counter')) {
		if (!v.counter)
			errors.counter = 'required';
		else if (!NAME_RE.test(v.counter))
			errors.counter = '1 to 200 printable characters other than / and |';
		else
			rule.counter = v.counter;
	}
	if (fields.includes('type')) {
		if (!COUNTER_TYPES[v.type])
			errors.type = 'choose counter, gauge, timer or set';
		else
			rule.type = v.type;
	}
	if (fields.includes('tags') && v.tags)
		rule.tags = v.tags;
	if (fields.includes('stat')) {
		if (!RULE_STATS.includes(v.stat))
			errors.stat = 'choose a statistic';
		else if (v.stat === 'rate' && v.type !== 'c')
			errors.stat = 'rate applies to counters only';
		else if ((v.stat === 'bot10' || v.stat === 'top10') && v.type !== 'ms')
			errors.stat = `${v.stat.toUpperCase()} applies to timers only`;
		else if (v.type === 's' && v.stat !== 'count')
			errors.stat = 'sets have a count only';
		else
			rule.stat = v.stat;
	}
	if (fields.includes('limit')) {
		const n = v.limit === '' ? NaN : Number(v.limit);
		if (!Number.isFinite(n))
			errors.limit = 'a number is required';
		else
			rule.limit = n;
	}
	// The server's ranges (server/alerts.h): a window of up to a day, heartbeats every 5 s, silence up to a week.
	const ints = [['window_min', 1, 1440, 'minutes, 1 to 1440'], ['for', 1, 1000, 'evaluations, 1 to 1000'],
		['after_s', 5, 86400, 'seconds, 5 to 86400'], ['after_min', 1, 10080, 'minutes, 1 to 10080']];
	for (const [f, min, max, what] of ints) {
		if (!fields.includes(f))
			continue;
		const n = wholeNumber(v[f] ?? '', min, max);
		if (n === null)
			errors[f] = `a whole number of ${what}`;
		else
			rule[f] = n;
	}
	const channels = [];
	if (v.email) {
		const to = v.email.split(',').map((s) => s.trim()).filter(Boolean);
		const bad = to.find((a) => !EMAIL_RE.test(a));
		if (bad !== undefined)
			errors.email = `'${bad}' is not an email address`;
		else if (to.length)
			channels.push({ type: 'email', to });
	}
	for (const f of ['sms', 'call']) {
		if (!v[f])
			continue;
		if (!PHONE_RE.test(v[f]))
			errors[f] = 'a phone number in international form, like +14155550100';
		else
			channels.push({ type: f, to: v[f] });
	}
	if (v.webhook) {
		let ok = false;
		try {
			const u = new URL(v.webhook);
			ok = u.protocol === 'http:' || u.protocol === 'https:';
		} catch {
			ok = false;
		}
		if (!ok)
			errors.webhook = 'an http:// or https:// URL';
		else
			channels.push({ type: 'webhook', url: v.webhook });
	}
	rule.channels = channels;
	if (v.name)
		rule.name = v.name;
	return Object.keys(errors).length ? { rule: null, errors } : { rule, errors };
}

/*
 * The form field a server error about a rule belongs to. The server names the rule's JSON field ("limit: ...",
 * "channels[0].to: ..."); channel errors are shown at the input of that channel's type.
 */
export function formFieldOf(path, rule) {
	if (!path)
		return null;
	const m = /^channels(?:\[(\d+)\])?/.exec(path);
	if (m) {
		const ch = m[1] !== undefined && rule && rule.channels ? rule.channels[Number(m[1])] : null;
		return ch ? ch.type : 'channels';
	}
	return path.split(/[.[]/)[0];
}

function fmtLimit(n) {
	return Number.isFinite(n) ? String(n) : '?';
}

// A one-line description of a rule, e.g. "web/latency (timer) avg > 250 over 5 min, 2 times in a row".
export function describeRule(r) {
	const what = r.counter ? `${r.process}/${r.counter}${r.type ? ` (${COUNTER_TYPES[r.type] || r.type})` : ''}` :
		`${r.process}`;
	const tags = r.tags ? ` [${r.tags}]` : '';
	switch (r.kind) {
	case 'above':
	case 'below': {
		const times = r.for > 1 ? `, ${r.for} times in a row` : '';
		return `${what}${tags} ${r.stat} ${r.kind === 'above' ? '>' : '<'} ${fmtLimit(r.limit)} over ${r.window_min} min${times}`;
	}
	case 'stopped_working':
		return `${what}${tags} gets no data for ${r.after_min} min`;
	case 'stopped_responding':
		return `${what} sends no heartbeat for ${r.after_s} s`;
	default:
		return `${what} (${r.kind})`;
	}
}

// A short description of a rule's channels, e.g. "email a@b.c; webhook http://h/x".
export function describeChannels(channels) {
	if (!channels || !channels.length)
		return 'none (shown here only)';
	return channels.map((c) => {
		if (c.type === 'email')
			return `email ${(Array.isArray(c.to) ? c.to : [c.to]).join(', ')}`;
		if (c.type === 'webhook')
			return `webhook ${c.url}`;
		return `${c.type} ${c.to}`;
	}).join('; ');
}
