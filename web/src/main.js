// main.js - the dashboard's entry point: the page shell (header, navigation, the live errors panel), the hash router
// and sign-in state. Pages live in pages/*.js; each exports mount(main, ctx, params) and returns its cleanup function.
//
// Routes:  #/signin   #/ (processes)   #/counter?process=P&counter=C&type=T[&tags=K]   #/events   #/alerts[?prefill]

import 'uplot/dist/uPlot.min.css';
import './app.css';

import { createApi } from './api.js';
import { h, replace } from './dom.js';
import { createLive } from './live.js';
import { eventsPanel } from './pages/events.js';
import * as alertsPage from './pages/alerts.js';
import * as counterPage from './pages/counter.js';
import * as eventsPage from './pages/events.js';
import * as processesPage from './pages/processes.js';
import * as signinPage from './pages/signin.js';
import { clearKey, getKey } from './session.js';

const ROUTES = {
	'/': { page: processesPage, title: 'Processes', nav: '/' },
	'/counter': { page: counterPage, title: 'Counter', nav: '/' },
	'/events': { page: eventsPage, title: 'Errors and warnings', nav: '/events' },
	'/alerts': { page: alertsPage, title: 'Alerts', nav: '/alerts' },
	'/signin': { page: signinPage, title: 'Sign in', nav: null },
};

const api = createApi(getKey);
const live = createLive(api, (msg) => signOut(`The server no longer accepts this API key (${msg}). Sign in again.`));

let unmountPage = null;
let unmountPanel = null;

function parseHash() {
	const raw = location.hash.replace(/^#/, '') || '/';
	const q = raw.indexOf('?');
	const path = q < 0 ? raw : raw.slice(0, q);
	return { path: ROUTES[path] ? path : null, params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

function navigate(hash) {
	if (location.hash === hash)
		render();
	else
		location.hash = hash;
}

function signOut(notice) {
	live.stop();
	clearKey(notice);
	navigate('#/signin');
}

const NAV = [['/', 'Processes'], ['/events', 'Errors and warnings'], ['/alerts', 'Alerts']];
const STATUS_TEXT = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…' };

function shell() {
	const conn = h('span', { id: 'conn', class: 'conn', role: 'status', 'aria-live': 'polite' });
	const nav = h('nav', { 'aria-label': 'Main' }, h('ul', null, NAV.map(([path, label]) =>
		h('li', null, h('a', { href: `#${path}`, 'data-path': path }, label)))));
	const out = h('button', { type: 'button', class: 'link', id: 'signout', onclick: () => signOut(null) }, 'Sign out');
	const header = h('header', { class: 'top' },
		h('a', { class: 'brand', href: '#/' }, 'DaTtSs'), nav, h('div', { class: 'spacer' }), conn, out);
	const main = h('main', { id: 'main', tabindex: '-1' });
	const aside = h('aside', { id: 'panel', 'aria-labelledby': 'panel-title' });
	const skip = h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } },
		'Skip to content');
	replace(document.getElementById('app'), skip, header, h('div', { class: 'layout' }, main, aside));
	const showStatus = (s) => {
		conn.textContent = STATUS_TEXT[s] || s;
		conn.dataset.state = s;
	};
	live.subscribe('status', showStatus);
	showStatus(live.status());
	return { header, nav, main, aside, conn };
}

let ui = null;

function render() {
	const { path, params } = parseHash();
	if (!path) {
		navigate('#/');
		return;
	}
	const signedIn = !!getKey();
	if (!signedIn && path !== '/signin') {
		sessionStorage.setItem('dattss.after', location.hash || '#/');
		navigate('#/signin');
		return;
	}
	if (!ui)
		ui = shell();
	const route = ROUTES[path];
	document.body.classList.toggle('signed-out', !signedIn);
	ui.header.hidden = !signedIn;
	ui.aside.hidden = !signedIn || path === '/events';
	for (const a of ui.nav.querySelectorAll('a'))
		if (a.dataset.path === route.nav)
			a.setAttribute('aria-current', 'page');
		else
			a.removeAttribute('aria-current');
	if (unmountPage)
		unmountPage();
	unmountPage = null;
	if (signedIn) {
		live.start();
		if (!unmountPanel)
			unmountPanel = eventsPanel(ui.aside, live);
	} else if (unmountPanel) {
		unmountPanel();
		unmountPanel = null;
	}
	document.title = `${route.title} · DaTtSs`;
	replace(ui.main);
	const ctx = {
		api, live, navigate, signOut,
		setTitle: (t) => { document.title = `${t} · DaTtSs`; },
		signedIn: () => {
			const after = sessionStorage.getItem('dattss.after');
			sessionStorage.removeItem('dattss.after');
			navigate(after && after !== '#/signin' ? after : '#/');
		},
	};
	unmountPage = route.page.mount(ui.main, ctx, params) || null;
}

// After a navigation, move the focus to the new page's heading (unless the page focused a field itself), so that
// keyboard and screen reader users start at the top of what changed.
window.addEventListener('hashchange', () => {
	render();
	const heading = ui && ui.main.querySelector('h1');
	if (heading && !ui.main.contains(document.activeElement)) {
		heading.tabIndex = -1;
		heading.focus();
	}
});
render();
