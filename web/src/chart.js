// chart.js - time-series line charts with uPlot. Today's lines are solid, the past week's average dashed in the same
// colour; lone values between gaps are drawn as dots so a single bucket with data is still visible.

import uPlot from 'uplot';
import { fmtNum } from './format.js';

const COLORS = {
	min: '#15803d', max: '#b91c1c', avg: '#1d4ed8', bot10: '#65a30d', top10: '#c2410c', count: '#7e22ce',
	sum: '#0e7490', p50: '#0369a1', p99: '#9f1239', fst: '#4d7c0f', lst: '#a16207',
};

// Indices of values with no value on either side: a line cannot show them, a dot can.
function isolated(values) {
	const out = [];
	for (let i = 0; i < values.length; i++) {
		if (values[i] === null || values[i] === undefined)
			continue;
		const before = i > 0 ? values[i - 1] : null;
		const after = i + 1 < values.length ? values[i + 1] : null;
		if ((before === null || before === undefined) && (after === null || after === undefined))
			out.push(i);
	}
	return out.length ? out : null;
}

function seriesOpts(s) {
	const week = s.which === 'week';
	return {
		label: s.label,
		stroke: COLORS[s.stat] || '#334155',
		width: week ? 1.5 : 2,
		dash: week ? [6, 4] : undefined,
		spanGaps: false,
		value: (u, v) => fmtNum(v),
		points: { filter: (u, si, show) => (show ? null : isolated(u.data[si])) },
	};
}

/*
 * Draw dataset ({x, series: [{stat, which, label, values}]}, see stats.js) into container. The chart follows the
 * container's width. Returns {update(dataset), destroy()}; update redraws with new data (same or other series).
 */
export function lineChart(container, dataset, { height = 320, ariaLabel = 'chart', xRange = null } = {}) {
	container.setAttribute('role', 'figure');
	container.setAttribute('aria-label', ariaLabel);
	let plot = null;
	let keys = '';
	let range = xRange; // [from, to] in unix seconds: the period asked for, not just where the data is

	function build(ds) {
		if (plot)
			plot.destroy();
		keys = ds.series.map((s) => s.key).join(',');
		const opts = {
			width: Math.max(320, container.clientWidth || 800),
			height,
			series: [{ value: (u, v) => (v === null ? '–' : new Date(v * 1000).toLocaleString()) }, ...ds.series.map(seriesOpts)],
			axes: [{}, { size: 72, values: (u, vals) => vals.map((v) => fmtNum(v)) }],
			scales: { x: { time: true, range: (u, min, max) => (range ? range : [min, max]) } },
			cursor: { drag: { x: true, y: false } },
		};
		plot = new uPlot(opts, [ds.x, ...ds.series.map((s) => s.values)], container);
	}

	build(dataset);
	const ro = new ResizeObserver(() => {
		const w = Math.max(320, container.clientWidth);
		if (plot && w !== plot.width)
			plot.setSize({ width: w, height });
	});
	ro.observe(container);
	return {
		update(ds, newRange) {
			if (newRange !== undefined)
				range = newRange;
			if (ds.series.map((s) => s.key).join(',') !== keys)
				build(ds);
			else
				plot.setData([ds.x, ...ds.series.map((s) => s.values)]);
		},
		destroy() {
			ro.disconnect();
			if (plot)
				plot.destroy();
			plot = null;
		},
		// The data the chart draws: [x, ...series values] (the browser test reads it).
		data: () => (plot ? plot.data : null),
	};
}
