// api.js - the dattssd HTTP API as the page uses it: JSON requests with the API key as a bearer token, errors as
// ApiError carrying the status and the field the server named ({"error": "field: message"}, docs/api.md).

import { splitFieldError } from './stats.js';

export class ApiError extends Error {
	constructor(status, message, path) {
		super(message);
		this.name = 'ApiError';
		this.status = status; // HTTP status, 0 when the server could not be reached
		this.path = path; // the parameter or field the server named ("limit", "channels[0].to"), or null
	}
}

function query(params) {
	const q = new URLSearchParams();
	for (const [k, v] of Object.entries(params || {}))
		if (v !== null && v !== undefined && v !== '')
			q.set(k, String(v));
	const s = q.toString();
	return s ? `?${s}` : '';
}

/*
 * An API client. getKey() returns the current API key (or null). Every method returns a promise of the parsed JSON
 * body (null for 204) or rejects with an ApiError.
 */
export function createApi(getKey, base = '') {
	async function request(method, path, params, body) {
		const headers = { Accept: 'application/json' };
		const key = getKey();
		if (key)
			headers.Authorization = `Bearer ${key}`;
		if (body !== undefined)
			headers['Content-Type'] = 'application/json';
		let res;
		try {
			res = await fetch(base + path + query(params), {
				method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store',
			});
		} catch (e) {
			throw new ApiError(0, `cannot reach dattssd: ${e.message}`, null);
		}
		if (res.status === 204)
			return null;
		const text = await res.text();
		let json = null;
		try {
			json = text ? JSON.parse(text) : null;
		} catch {
			json = null;
		}
		if (!res.ok) {
			const msg = json && typeof json.error === 'string' ? json.error : `HTTP ${res.status} ${res.statusText}`;
			throw new ApiError(res.status, msg, splitFieldError(msg).path);
		}
		if (json === null)
			throw new ApiError(res.status, `the reply to ${path} is not JSON`, null);
		return json;
	}
	return {
		get: (path, params) => request('GET', path, params),
		post: (path, body) => request('POST', path, null, body),
		del: (path) => request('DELETE', path, null),
		// The SSE URL: EventSource cannot send headers, so the key goes in access_token.
		streamUrl: () => `${base}/api/v1/stream${query({ access_token: getKey() })}`,
	};
}
