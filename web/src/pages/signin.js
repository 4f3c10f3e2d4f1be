// signin.js - sign in with an API key. The key is checked against GET /api/v1/current before it is kept (in
// sessionStorage, session.js); a 401 is explained on the page.

import { createApi } from '../api.js';
import { h } from '../dom.js';
import { setKey, takeNotice } from '../session.js';

export function mount(main, ctx) {
	const notice = takeNotice();
	const input = h('input', {
		id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
		'aria-describedby': 'api-key-help signin-msg',
	});
	const msg = h('p', { id: 'signin-msg', class: 'error', role: 'alert' }, notice || '');
	const button = h('button', { type: 'submit' }, 'Sign in');
	const form = h('form', { class: 'signin', 'aria-labelledby': 'signin-title', novalidate: true },
		h('h1', { id: 'signin-title' }, 'Sign in to DaTtSs'),
		h('label', { for: 'api-key' }, 'API key'),
		input,
		h('p', { id: 'api-key-help', class: 'help' },
			'Your API key as the operator gave it to you. The first user\'s key is in the file api.key of the ' +
			'daemon\'s data directory. The key is kept in this browser tab only, until you sign out or close it.'),
		msg,
		button);
	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		const key = input.value.trim();
		if (!key) {
			msg.textContent = 'Enter an API key.';
			input.setAttribute('aria-invalid', 'true');
			input.focus();
			return;
		}
		button.disabled = true;
		msg.textContent = '';
		try {
			await createApi(() => key).get('/api/v1/current');
			setKey(key);
			ctx.signedIn();
		} catch (err) {
			input.setAttribute('aria-invalid', 'true');
			msg.textContent = err.status === 401 ?
				`This API key was not accepted (401: ${err.message}). Check that it is complete and not rotated.` :
				`Cannot sign in: ${err.message}`;
			input.focus();
		} finally {
			button.disabled = false;
		}
	});
	main.append(form);
	input.focus();
	return null;
}
