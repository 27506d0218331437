// charts.js: the dashboard's small SVG charts (a line chart and a bar chart over a time axis), without a library.
//
// Each chart is a <figure class="chart-figure" data-figure="NAME"> holding a <figcaption>, an
// <svg class="chart" data-chart="NAME" role="img" aria-label="..."> (one `path.series` per plotted line, one
// `rect.bar` per non-zero bar segment, axis labels as <text>, event markers as `g.marker`), a legend, and a
// <details> with a <table> of the plotted numbers as the text alternative. Every text is set with textContent or
// as an attribute, never parsed as HTML. Colours are classes (`c0`..`c7`, dashboard.css): the page's CSP allows
// no inline style.

const SVG_NS = 'http://www.w3.org/2000/svg';
/** The drawing's coordinate system (viewBox); the <svg> scales to the width of its figure. */
const WIDTH = 640;
const HEIGHT = 220;
/** Room for the y labels (left), the x labels (bottom) and two rows of marker labels (top). */
const PAD = { left: 56, right: 14, top: 30, bottom: 24 };
const PLOT_W = WIDTH - PAD.left - PAD.right;
const PLOT_H = HEIGHT - PAD.top - PAD.bottom;
const Y_TICKS = 4;
const X_TICKS_MAX = 6;
/** Colour classes in dashboard.css. */
export const COLOURS = 8;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Time-axis steps, smallest first: the first that gives at most X_TICKS_MAX ticks is used. */
const TIME_STEPS = [
  1, 2, 5, 10, 15, 30,
].map((s) => s * SECOND).concat([1, 2, 5, 10, 15, 30].map((m) => m * MINUTE), [1, 2, 3, 6, 12].map((h) => h * HOUR), [1, 2, 7, 14].map((d) => d * DAY));

// --- formatting (shared with dashboard.js) -----------------------------------------------------------------------

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

export function formatNumber(v, digits = 0) {
  if (!isNum(v)) return '–';
  return v.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** A ratio (0.012) as a percentage ("1.2 %"). */
export function formatRatio(v, digits = 1) {
  if (!isNum(v)) return '–';
  const percent = v * 100;
  return `${percent.toLocaleString(undefined, { maximumFractionDigits: percent !== 0 && Math.abs(percent) < 0.1 ? 2 : digits })} %`;
}

export function formatMs(v) {
  if (!isNum(v)) return '–';
  if (Math.abs(v) >= 10 * SECOND) return `${formatNumber(v / SECOND, 1)} s`;
  return `${formatNumber(v, v < 10 ? 1 : 0)} ms`;
}

export function formatBytes(v) {
  if (!isNum(v)) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let n = v;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${formatNumber(n, i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatKbps(v) {
  if (!isNum(v)) return '–';
  return v >= 1000 ? `${formatNumber(v / 1000, 2)} Mbit/s` : `${formatNumber(v, 0)} kbit/s`;
}

export function formatDuration(seconds) {
  if (!isNum(seconds)) return '–';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return m > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : `${h} h`;
  return s % 60 ? `${m} min ${String(s % 60).padStart(2, '0')} s` : `${m} min`;
}

/** A date and time in the reader's locale (`ms`: milliseconds since the epoch). */
export function formatDateTime(ms) {
  if (!isNum(ms)) return '–';
  return new Date(ms).toLocaleString([], { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A time for a table row: the date only when the span crosses days. */
function formatRowTime(ms, span) {
  const opts = span > DAY
    ? { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }
    : { hour: '2-digit', minute: '2-digit', second: '2-digit' };
  return new Date(ms).toLocaleString([], opts);
}

/** An RFC 3339 string (or a number of ms) as ms since the epoch, or null. */
export function parseTime(v) {
  if (isNum(v)) return v;
  if (typeof v !== 'string' || !v) return null;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t;
}

// --- scales ------------------------------------------------------------------------------------------------------

/** A y scale from 0 to a round number at or above `max`, with its tick step. */
export function niceScale(max, { integer = false, ticks = Y_TICKS } = {}) {
  const top = isNum(max) && max > 0 ? max : 1;
  const raw = top / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  let step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * magnitude;
  if (integer) step = Math.max(1, Math.ceil(step));
  return { max: Math.ceil(top / step - 1e-9) * step, step };
}

/** Ticks on the time axis, aligned to round local times (whole minutes, hours, days). */
export function timeTicks(t0, t1) {
  const span = t1 - t0;
  const step = TIME_STEPS.find((s) => span / s <= X_TICKS_MAX) ?? TIME_STEPS[TIME_STEPS.length - 1];
  const offset = new Date(t0).getTimezoneOffset() * MINUTE;
  const ticks = [];
  for (let local = Math.ceil((t0 - offset) / step) * step; local + offset <= t1 && ticks.length <= X_TICKS_MAX * 2; local += step) {
    ticks.push(local + offset);
  }
  const label = (t) => {
    const d = new Date(t);
    if (span > 36 * HOUR) {
      return step >= DAY
        ? d.toLocaleDateString([], { month: 'short', day: 'numeric' })
        : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
    }
    return d.toLocaleTimeString([], step < MINUTE ? { hour: '2-digit', minute: '2-digit', second: '2-digit' } : { hour: '2-digit', minute: '2-digit' });
  };
  return ticks.map((t) => ({ t, label: label(t) }));
}

// --- elements ----------------------------------------------------------------------------------------------------

/** An SVG element with attributes; `text` (if given) is set as textContent. */
export function svgEl(name, attrs = {}, text = null) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) e.setAttribute(k, String(v));
  if (text !== null) e.textContent = text;
  return e;
}

function htmlEl(tag, className = null, text = null) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== null) e.textContent = text;
  return e;
}

const round = (v) => Math.round(v * 10) / 10;

function frame(name, t0, t1, yScale, yFormat, yTitle) {
  const svg = svgEl('svg', { class: 'chart', 'data-chart': name, viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', preserveAspectRatio: 'xMidYMid meet' });
  const x = (t) => round(PAD.left + ((t - t0) / (t1 - t0)) * PLOT_W);
  const y = (v) => round(PAD.top + PLOT_H - (Math.min(Math.max(v, 0), yScale.max) / yScale.max) * PLOT_H);
  const grid = svgEl('g', { class: 'grid' });
  const axis = svgEl('g', { class: 'axis' });
  for (let v = 0; v <= yScale.max + yScale.step / 1e6; v += yScale.step) {
    grid.append(svgEl('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v) }));
    axis.append(svgEl('text', { class: 'y-label', x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, yFormat(v)));
  }
  for (const tick of timeTicks(t0, t1)) {
    axis.append(svgEl('line', { class: 'tick', x1: x(tick.t), x2: x(tick.t), y1: PAD.top + PLOT_H, y2: PAD.top + PLOT_H + 4 }));
    axis.append(svgEl('text', { class: 'x-label', x: x(tick.t), y: HEIGHT - 6, 'text-anchor': 'middle' }, tick.label));
  }
  axis.append(svgEl('line', { class: 'baseline', x1: PAD.left, x2: WIDTH - PAD.right, y1: PAD.top + PLOT_H, y2: PAD.top + PLOT_H }));
  if (yTitle) axis.append(svgEl('text', { class: 'y-title', x: 4, y: 12 }, yTitle));
  svg.append(grid, axis);
  return { svg, x, y };
}

function noData(svg) {
  svg.append(svgEl('text', { class: 'no-data', x: PAD.left + PLOT_W / 2, y: PAD.top + PLOT_H / 2, 'text-anchor': 'middle' }, 'No data in this range'));
}

/** About how wide a marker label is, in viewBox units (11px-ish text). */
const labelWidth = (text) => text.length * 5.4 + 6;
const MARKER_ROWS = 2;

/**
 * Vertical lines at events, each with a <title> (tooltip, accessible name). Events close together share one label
 * along the top ("joined, ICE connected, first frame"), in the first of two rows where it fits; a label that fits
 * nowhere is left out (the line and its title stay).
 */
function drawMarkers(svg, markers, t0, t1, x) {
  const group = svgEl('g', { class: 'markers' });
  const visible = markers.filter((m) => isNum(m.t) && m.t >= t0 && m.t <= t1).sort((a, b) => a.t - b.t);
  const clusters = [];
  for (const m of visible) {
    const at = x(m.t);
    const last = clusters[clusters.length - 1];
    if (last && at - last.x < 30) last.members.push(m);
    else clusters.push({ x: at, members: [m] });
  }
  const rowEnd = Array(MARKER_ROWS).fill(-Infinity);
  for (const cluster of clusters) {
    const text = [...new Set(cluster.members.map((m) => m.label || m.type))].join(', ');
    const width = labelWidth(text);
    const anchorEnd = cluster.x + width > WIDTH - PAD.right;
    const left = anchorEnd ? cluster.x - width : cluster.x;
    const row = rowEnd.findIndex((end) => left >= end);
    cluster.members.forEach((m, i) => {
      const g = svgEl('g', { class: `marker${m.bad ? ' bad' : ''}`, 'data-event': m.type });
      g.append(svgEl('title', {}, m.title || m.label || m.type));
      const at = x(m.t);
      g.append(svgEl('line', { x1: at, x2: at, y1: row >= 0 ? 12 + row * 12 : PAD.top - 4, y2: PAD.top + PLOT_H }));
      if (i === 0 && row >= 0) {
        g.append(svgEl('text', { class: 'marker-label', x: anchorEnd ? cluster.x - 3 : cluster.x + 3, y: 10 + row * 12, 'text-anchor': anchorEnd ? 'end' : 'start' }, text));
      }
      group.append(g);
    });
    if (row >= 0) rowEnd[row] = left + width;
  }
  svg.append(group);
}

function legend(series) {
  const ul = htmlEl('ul', 'legend');
  for (const s of series) {
    const li = htmlEl('li');
    li.dataset.series = s.key;
    li.append(htmlEl('span', `swatch ${s.colour}`), document.createTextNode(s.label));
    ul.append(li);
  }
  return ul;
}

/** The plotted numbers as a table inside a closed <details>: rows of [time, ...values]. */
function dataTable(caption, columns, rows, span) {
  const details = htmlEl('details', 'chart-data');
  details.append(htmlEl('summary', null, 'Data'));
  const table = htmlEl('table', 'data-table');
  table.append(htmlEl('caption', 'visually-hidden', caption));
  const head = htmlEl('tr');
  for (const c of ['Time', ...columns]) {
    const th = htmlEl('th', null, c);
    th.scope = 'col';
    head.append(th);
  }
  const thead = htmlEl('thead');
  thead.append(head);
  const tbody = htmlEl('tbody');
  for (const [t, ...values] of rows) {
    const tr = htmlEl('tr');
    const th = htmlEl('th', null, formatRowTime(t, span));
    th.scope = 'row';
    tr.append(th, ...values.map((v) => htmlEl('td', null, v)));
    tbody.append(tr);
  }
  table.append(thead, tbody);
  details.append(table);
  return details;
}

function figure(name, caption, svg, items, details, note = null) {
  const fig = htmlEl('figure', 'chart-figure');
  fig.dataset.figure = name;
  fig.append(htmlEl('figcaption', null, caption), svg);
  if (items.length > 1) fig.append(legend(items));
  if (note) fig.append(htmlEl('p', 'chart-note', note));
  fig.append(details);
  return fig;
}

function withColours(series) {
  return series.map((s, i) => ({ ...s, key: s.key ?? String(i), colour: s.colour ?? `c${i % COLOURS}` }));
}

function describe(caption, series, format, valuesOf, unit) {
  const f = (v) => `${format(v)}${unit ? ` ${unit}` : ''}`;
  const parts = series.map((s) => {
    const values = valuesOf(s).filter(isNum);
    if (values.length === 0) return `${s.label}: no data`;
    return `${s.label}: min ${f(Math.min(...values))}, max ${f(Math.max(...values))}`;
  });
  return `${caption}. ${parts.join('; ')}.`;
}

// --- charts ------------------------------------------------------------------------------------------------------

/**
 * A line chart over time.
 * @param {{name: string, caption: string, domain: [number, number],
 *          series: {key?: string, label: string, colour?: string, points: {t: number, v: number|null}[]}[],
 *          markers?: {t: number, type: string, label?: string, title?: string, bad?: boolean}[],
 *          format?: (v: number) => string, yTitle?: string, integer?: boolean, minMax?: number, step?: boolean,
 *          note?: string}} options
 *   Values are in display units (format labels them). `step`: a staircase (a level held until the next sample).
 *   Null values break the line. `minMax`: the y axis reaches at least this.
 * @returns {HTMLElement} the <figure>
 */
export function lineChart({ name, caption, domain, series, markers = [], format = (v) => formatNumber(v, 1), yTitle = null, integer = false, minMax = 0, step = false, note = null }) {
  const [t0, t1] = spread(domain);
  const coloured = withColours(series);
  const values = coloured.flatMap((s) => s.points.map((p) => p.v)).filter(isNum);
  const scale = niceScale(Math.max(minMax, ...values, 0), { integer });
  const { svg, x, y } = frame(name, t0, t1, scale, format, yTitle);
  const lines = svgEl('g', { class: 'lines' });
  for (const s of coloured) {
    const points = s.points.filter((p) => isNum(p.t) && p.t >= t0 && p.t <= t1).sort((a, b) => a.t - b.t);
    let d = '';
    let open = false;
    for (const p of points) {
      if (!isNum(p.v)) { open = false; continue; }
      if (!open) {
        // A lone point shows as a dot: a zero-length segment with round caps.
        d += `M${x(p.t)} ${y(p.v)}h0`;
        open = true;
      } else if (step) {
        d += `H${x(p.t)}V${y(p.v)}`;
      } else {
        d += `L${x(p.t)} ${y(p.v)}`;
      }
    }
    if (d === '') continue;
    const path = svgEl('path', { class: `series ${s.colour}`, d, 'data-series': s.key });
    path.append(svgEl('title', {}, s.label));
    lines.append(path);
  }
  svg.append(lines);
  if (values.length === 0) noData(svg);
  drawMarkers(svg, markers, t0, t1, x);
  svg.setAttribute('aria-label', describe(caption, coloured, format, (s) => s.points.map((p) => p.v), yTitle));
  const times = [...new Set(coloured.flatMap((s) => s.points.map((p) => p.t)).filter(isNum))].sort((a, b) => a - b);
  const byTime = coloured.map((s) => new Map(s.points.map((p) => [p.t, p.v])));
  const rows = times.map((t) => [t, ...byTime.map((m) => (isNum(m.get(t)) ? format(m.get(t)) : '–'))]);
  return figure(name, caption, svg, coloured, dataTable(caption, coloured.map((s) => s.label), rows, t1 - t0), note);
}

/**
 * A bar chart over time: one bar per bucket, its series stacked.
 * @param {{name: string, caption: string, domain: [number, number], bucketMs: number, times: number[],
 *          series: {key?: string, label: string, colour?: string, values: number[]}[],
 *          format?: (v: number) => string, yTitle?: string, note?: string}} options
 *   `times[i]` is the start of bucket i and `series[k].values[i]` its value (missing: 0).
 * @returns {HTMLElement} the <figure>
 */
export function barChart({ name, caption, domain, bucketMs, times, series, format = (v) => formatNumber(v, 0), yTitle = null, note = null }) {
  const [t0, t1] = spread(domain);
  const coloured = withColours(series);
  const totals = times.map((_, i) => coloured.reduce((sum, s) => sum + (isNum(s.values[i]) ? s.values[i] : 0), 0));
  const scale = niceScale(Math.max(0, ...totals), { integer: true });
  const { svg, x, y } = frame(name, t0, t1, scale, format, yTitle);
  const bars = svgEl('g', { class: 'bars' });
  const width = Math.max(1, x(t0 + bucketMs) - x(t0));
  const gap = width > 4 ? Math.min(2, width * 0.15) : 0;
  times.forEach((t, i) => {
    if (!isNum(t) || t + bucketMs <= t0 || t >= t1) return;
    let base = 0;
    for (const s of coloured) {
      const v = isNum(s.values[i]) ? s.values[i] : 0;
      if (v <= 0) continue;
      const left = Math.max(PAD.left, x(t) + gap / 2);
      const right = Math.min(WIDTH - PAD.right, x(t) + width - gap / 2);
      const top = y(base + v);
      const rect = svgEl('rect', {
        class: `bar ${s.colour}`, x: round(left), y: top, width: round(Math.max(0.5, right - left)), height: round(y(base) - top),
        'data-series': s.key, 'data-value': v, 'data-time': new Date(t).toISOString(),
      });
      rect.append(svgEl('title', {}, `${formatRowTime(t, t1 - t0)} · ${s.label}: ${format(v)}`));
      bars.append(rect);
      base += v;
    }
  });
  svg.append(bars);
  if (totals.every((v) => v === 0)) noData(svg);
  svg.setAttribute('aria-label', describe(caption, coloured, format, (s) => s.values, yTitle));
  const rows = times.map((t, i) => [t, ...coloured.map((s) => format(isNum(s.values[i]) ? s.values[i] : 0)), format(totals[i])]);
  return figure(name, caption, svg, coloured, dataTable(caption, [...coloured.map((s) => s.label), 'Total'], rows, t1 - t0), note);
}

/** A domain that is never empty (one instant gets a minute either side). */
function spread([t0, t1]) {
  if (!isNum(t0) || !isNum(t1)) {
    const now = Date.now();
    return [now - HOUR, now];
  }
  return t1 > t0 ? [t0, t1] : [t0 - MINUTE, t0 + MINUTE];
}
