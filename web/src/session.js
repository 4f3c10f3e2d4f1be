// session.js - the signed-in API key, kept in sessionStorage: it lasts while the tab is open and is never written to
// disk by the page, and each tab signs in on its own.

const KEY = 'dattss.apiKey';
const NOTICE = 'dattss.signinNotice';

export function getKey() {
	try {
		return sessionStorage.getItem(KEY);
	} catch {
		return null;
	}
}

export function setKey(key) {
	sessionStorage.setItem(KEY, key);
	sessionStorage.removeItem(NOTICE);
}

// Forget the key; notice (optional) is shown on the sign-in page, e.g. why the key was dropped.
export function clearKey(notice) {
	sessionStorage.removeItem(KEY);
	if (notice)
		sessionStorage.setItem(NOTICE, notice);
	else
		sessionStorage.removeItem(NOTICE);
}

// The notice left by clearKey, read once.
export function takeNotice() {
	const n = sessionStorage.getItem(NOTICE);
	sessionStorage.removeItem(NOTICE);
	return n;
}
