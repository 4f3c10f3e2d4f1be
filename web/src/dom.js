// dom.js - a small element builder. Text is always set as text (never parsed as HTML), so names and messages that
// come from the data cannot inject markup.
//
//   h('a', {href: '#/', class: 'nav', onclick: fn, 'aria-current': 'page'}, 'Processes', child, [more, children])
// Attributes: 'class', 'text', 'on<event>' (listener), boolean true (present), false/null/undefined (absent); any
// other key is set with setAttribute. Children: nodes, strings and numbers (text), arrays, null/false (skipped).

export function h(tag, attrs, ...children) {
	const el = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === null || v === undefined || v === false)
			continue;
		if (k === 'class')
			el.className = v;
		else if (k === 'text')
			el.textContent = v;
		else if (k.startsWith('on') && typeof v === 'function')
			el.addEventListener(k.slice(2), v);
		else if (k === 'value') {
			if ('defaultValue' in el)
				el.defaultValue = v; // what form.reset() goes back to
			el.value = v;
		} else if (k === 'checked' || k === 'selected')
			el[k] = v;
		else
			el.setAttribute(k, v === true ? '' : String(v));
	}
	append(el, children);
	return el;
}

function append(el, children) {
	for (const c of children) {
		if (c === null || c === undefined || c === false)
			continue;
		if (Array.isArray(c))
			append(el, c);
		else if (c instanceof Node)
			el.appendChild(c);
		else
			el.appendChild(document.createTextNode(String(c)));
	}
}

// Replace every child of el with children.
export function replace(el, ...children) {
	el.textContent = '';
	append(el, children);
	return el;
}

// A unique id for label/aria wiring.
let seq = 0;
export function uid(prefix) {
	seq += 1;
	return `${prefix}-${seq}`;
}
