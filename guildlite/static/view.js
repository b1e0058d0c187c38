(function () {
'use strict';
const errorsBox = document.getElementById('errors');
function reportError(msg) { errorsBox.hidden = false; errorsBox.append(el('div', null, 'page error: ' + msg)); }
window.addEventListener('error', e => reportError(e.message));
window.addEventListener('unhandledrejection', e => reportError(e.reason && e.reason.message || e.reason));

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat(Infinity)) if (c != null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

const D = JSON.parse(document.getElementById('gl-data').textContent);
const RUNS = D.runs;
const byId = new Map(RUNS.map(r => [r.id, r]));
const kids = new Map();
for (const r of RUNS) {
  if (r.parent && byId.has(r.parent)) {
    if (!kids.has(r.parent)) kids.set(r.parent, []);
    kids.get(r.parent).push(r);
  }
}
const top = RUNS.filter(r => !(r.parent && byId.has(r.parent)));
const isParent = r => r.is_batch || r.is_pipeline;  // a virtual parent: its children are listed under it
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const colors = new Map();
const PLOT_CONFIG = { displaylogo: false, responsive: true };

// --- formatting ---
function pad(n) { return String(n).padStart(2, '0'); }
function fmt(v) {
  if (v == null) return '';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(6));
  }
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function fmtDur(s) {
  if (s == null) return '';
  if (s < 60) return s.toFixed(1) + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + pad(Math.round(s % 60)) + 's';
  return Math.floor(s / 3600) + 'h' + pad(Math.floor(s % 3600 / 60)) + 'm';
}
function fmtSize(n) {
  const u = ['B', 'K', 'M', 'G'];
  let i = 0;
  while (n >= 1024 && i < 3) { n /= 1024; i++; }
  return i ? n.toFixed(1) + u[i] : n + 'B';
}
function flagText(r) { return Object.entries(r.flags || {}).map(([k, v]) => k + '=' + fmt(v)).join(' '); }
function plotText(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'); }
const varying = new Map();  // batch id -> the flags whose value differs between its trials
for (const [id, ks] of kids) {
  const names = [...new Set(ks.flatMap(t => Object.keys(t.flags || {})))];
  varying.set(id, names.filter(n => new Set(ks.map(t => JSON.stringify(t.flags[n]))).size > 1));
}
function runName(r) {
  let s = r.id.slice(-6);
  if (r.label) s += ' ' + r.label;
  else if (r.parent && varying.has(r.parent)) s += ' ' + varying.get(r.parent).map(k => k + '=' + fmt(r.flags[k])).join(' ');
  return s.length > 48 ? s.slice(0, 47) + '\u2026' : s;
}
function colorOf(id) {
  if (!colors.has(id)) colors.set(id, PALETTE[colors.size % PALETTE.length]);
  return colors.get(id);
}
function statusBadge(s) { return el('span', { class: 'st st-' + s }, s); }
for (const r of RUNS) {
  r._hay = [r.id, r.op, r.status, r.label, (r.tags || []).join(' '), flagText(r), r.parent || ''].join(' ').toLowerCase();
}

// --- state, kept in the URL hash: #run=ID&sel=ID,ID&sort=[-]COLUMN&q=TEXT&status=S
// (COLUMN: id, op, status, label, started, time, flag:NAME, scalar:KEY); a batch's plot also
// reads metric=KEY&plot=parcoords ---
const state = { sort: null, desc: false, filter: [], status: '', limit: 500, current: null, selected: new Set(), collapsed: new Set() };
const hash = new URLSearchParams(location.hash.slice(1));
function saveHash() {
  const p = new URLSearchParams();
  if (state.current) p.set('run', state.current);
  if (state.selected.size) p.set('sel', [...state.selected].join(','));
  if (state.sort) p.set('sort', (state.desc ? '-' : '') + state.sort);
  const q = document.getElementById('filter').value.trim();
  if (q) p.set('q', q);
  if (state.status) p.set('status', state.status);
  history.replaceState(null, '', '#' + p.toString());
}

// --- the runs table ---
const COLUMNS = [
  { key: 'id', title: 'id', get: r => r.id, cls: 'id' },  // as compare names it (flag 'id' is 'id (flag)')
  { key: 'op', title: 'op', get: r => r.op },
  { key: 'status', title: 'status', get: r => r.status, show: r => r.progress ? [statusBadge(r.status), ' ' + r.progress] : statusBadge(r.status) },
  { key: 'label', title: 'label', get: r => r.label || null },
  { key: 'started', title: 'started', get: r => r.started || r.created, show: r => fmtTime(r.started || r.created) },
  { key: 'time', title: 'time', get: r => r.time, show: r => fmtDur(r.time), num: true },
  // Titles as compare's header names them (a scalar named like a flag: `loss (scalar)`).
  ...D.flag_cols.map(k => ({ key: 'flag:' + k, title: (D.flag_titles || {})[k] || k, kind: 'flag', get: r => (r.is_batch ? null : r.flags[k]), num: true })),
  ...D.scalar_keys.map(k => ({ key: 'scalar:' + k, title: (D.scalar_titles || {})[k] || k, kind: 'scalar', get: r => (r.scalars[k] ? r.scalars[k].last : null), num: true })),
];

function compare(a, b) {
  if (a == null || a === '') return b == null || b === '' ? 0 : 1;
  if (b == null || b === '') return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'number') return -1;
  if (typeof b === 'number') return 1;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}
function sorted(list) {
  if (!state.sort) return list;
  const col = COLUMNS.find(c => c.key === state.sort);
  const order = (a, b) => (a == null || a === '' || b == null || b === '' ? compare(a, b)  // missing: last, either way
    : state.desc ? compare(b, a) : compare(a, b));
  // A batch without a value of its own sorts where its first trial in this order would.
  const key = r => {
    const v = col.get(r);
    if (v != null || !r.is_batch) return v;
    const vs = (kids.get(r.id) || []).map(col.get).filter(x => x != null && x !== '');
    return vs.length ? vs.sort(order)[0] : null;
  };
  const keys = new Map(list.map(r => [r, key(r)]));
  return list.slice().sort((x, y) => order(keys.get(x), keys.get(y)));
}
function matches(r) {
  return (!state.status || r.status === state.status) && state.filter.every(t => r._hay.includes(t));
}
function visibleRows() {
  const rows = [];
  const deep = r => matches(r) || (kids.get(r.id) || []).some(deep);  // it, or a child (a pipeline's: nested)
  const add = t => {
    rows.push(t);
    if (!isParent(t) || state.collapsed.has(t.id)) return;
    const ks = kids.get(t.id) || [];
    const hit = ks.filter(deep);
    for (const k of sorted(hit.length ? hit : ks)) add(k);
  };
  for (const t of sorted(top)) if (deep(t)) add(t);
  return rows;
}

function renderHead() {
  const tr = el('tr', null, el('th', { title: 'plot scalars' }, ''));
  for (const c of COLUMNS) {
    const arrow = state.sort === c.key ? (state.desc ? ' \u25bc' : ' \u25b2') : '';
    tr.append(el('th', {
      class: c.kind || null, 'data-key': c.key,
      title: c.kind === 'flag' ? 'flag ' + c.title : c.kind === 'scalar' ? 'last value of scalar ' + c.title : null,
      onclick: () => {
        if (state.sort === c.key) state.desc = !state.desc; else { state.sort = c.key; state.desc = false; }
        saveHash();
        renderTable();
      },
    }, c.title, el('span', { class: 'arrow' }, arrow)));
  }
  document.querySelector('#runs thead').replaceChildren(tr);
}

function selectionOf(r) {
  if (!isParent(r)) return state.selected.has(r.id) ? 'all' : 'none';
  const ks = kids.get(r.id) || [];
  const n = ks.filter(t => state.selected.has(t.id)).length;
  return n === 0 ? 'none' : n === ks.length ? 'all' : 'some';
}
function toggleSelect(r, on) {
  for (const x of isParent(r) ? (kids.get(r.id) || []) : [r]) {
    if (on) { state.selected.add(x.id); colorOf(x.id); } else state.selected.delete(x.id);
  }
  saveHash();
  renderTable();
  drawCurves();
}

function renderTable() {
  renderHead();
  const rows = visibleRows();
  const body = [];
  for (const r of rows.slice(0, state.limit)) {
    const sel = selectionOf(r);
    const box = el('input', {
      type: 'checkbox', 'aria-label': 'plot ' + r.id,
      onclick: e => { e.stopPropagation(); toggleSelect(r, e.target.checked); },
    });
    box.checked = sel === 'all';
    box.indeterminate = sel === 'some';
    const first = el('td', null, box, state.selected.has(r.id) ? el('span', { class: 'swatch', style: 'background:' + colorOf(r.id) }) : null);
    const cells = [first];
    for (const c of COLUMNS) {
      let content = c.show ? c.show(r) : fmt(c.get(r));
      if (c.key === 'id' && isParent(r)) {
        const open = !state.collapsed.has(r.id);
        content = [el('span', {
          class: 'toggle', title: (open ? 'hide ' : 'show ') + (r.is_batch ? 'trials' : 'steps'),
          onclick: e => { e.stopPropagation(); if (open) state.collapsed.add(r.id); else state.collapsed.delete(r.id); renderTable(); },
        }, open ? '\u25be' : '\u25b8'), r.id, r.is_batch ? ` (${r.trials.length} trials)` : ` (${r.steps.length} steps)`];
      } else if (c.key === 'id' && r.parent && byId.has(r.parent)) {
        content = ['\u21b3 ', r.id];
      }
      cells.push(el('td', { class: [c.cls, c.num && typeof c.get(r) === 'number' ? 'num' : null].filter(Boolean).join(' ') || null }, content));
    }
    const kind = r.is_batch ? 'batch' : r.is_pipeline ? 'pipeline' : r.parent && byId.has(r.parent) ? 'trial' : 'single';
    body.push(el('tr', {
      class: ['run', kind, r.id === state.current ? 'current' : null].filter(Boolean).join(' '),
      'data-id': r.id, 'data-parent': r.parent || null, onclick: () => openRun(r.id),
    }, cells));
  }
  document.querySelector('#runs tbody').replaceChildren(...body);
  const more = document.getElementById('more');
  more.replaceChildren();
  if (!RUNS.length) more.append('No runs.');
  else if (!rows.length) more.append('No run matches the filter.');
  else if (rows.length > state.limit) {
    more.append(`${state.limit} of ${rows.length} rows shown `,
      el('button', { type: 'button', onclick: () => { state.limit = Infinity; renderTable(); } }, 'show all'));
  }
}

// Counted as `guildlite runs` lists them: every run, a batch or a pipeline too, is one.
function renderSummary() {
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  const batches = RUNS.filter(r => r.is_batch).length;
  const pipes = RUNS.filter(r => r.is_pipeline).length;
  const counts = {};
  for (const r of RUNS) counts[r.status] = (counts[r.status] || 0) + 1;
  const kinds = [batches ? plural(batches, 'batch', 'batches') : null, pipes ? plural(pipes, 'pipeline', 'pipelines') : null];
  const parts = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(', ');
  document.getElementById('summary').textContent = plural(RUNS.length, 'run', 'runs')
    + (batches || pipes ? ` (${kinds.filter(Boolean).join(', ')})` : '') + (parts ? `: ${parts}` : '');
  if (D.runs_dir) document.getElementById('summary').title = D.runs_dir;
}

// --- scalar curves of the selected runs, overlaid: one plot per scalar key ---
function purge(box) {
  for (const d of box.querySelectorAll('.js-plotly-plot')) Plotly.purge(d);
  box.replaceChildren();
}
// A run's details (series, output, files, hooks) are in the page when it is a static file; the
// server sends them when first needed.
const fetching = new Map();
function details(r) {
  if (r.series !== undefined) return Promise.resolve(r);
  if (!fetching.has(r.id)) {
    fetching.set(r.id, fetch('run/' + encodeURIComponent(r.id) + '.json', { cache: 'no-store' })
      .then(res => { if (!res.ok) throw new Error(`run ${r.id}: HTTP ${res.status}`); return res.json(); })
      .then(x => { const hay = r._hay; Object.assign(r, x); r._hay = hay; return r; },
            e => { fetching.delete(r.id); throw e; }));
  }
  return fetching.get(r.id);
}

let curvesGen = 0;
async function drawCurves() {
  const gen = ++curvesGen;
  const wanted = [...state.selected].map(id => byId.get(id)).filter(r => r && Object.keys(r.scalars).length);
  const runs = await Promise.all(wanted.map(details));
  if (gen !== curvesGen) return;  // the selection changed meanwhile
  const box = document.getElementById('curves');
  purge(box);
  const note = document.getElementById('curves-note');
  note.textContent = runs.length ? `${runs.length} run${runs.length > 1 ? 's' : ''}` : '';
  if (!runs.length) {
    box.append(el('div', { class: 'empty' }, 'Tick runs in the table to plot their scalars over steps.'));
    return;
  }
  const keys = D.scalar_keys.filter(k => runs.some(r => r.series[k]));
  const logy = document.getElementById('logy').checked;
  const done = [];
  for (const key of keys) {
    const div = el('div', { class: 'plot curve', 'data-key': key });
    box.append(div);
    const traces = runs.filter(r => r.series[key]).flatMap(r => attemptTraces(r, r.series[key]));
    const steps = traces.flatMap(t => t.x);
    done.push(Plotly.newPlot(div, traces, {
      title: { text: plotText(key), font: { size: 13 }, x: 0.01, xanchor: 'left' },
      height: 250, margin: { l: 55, r: 10, t: 30, b: 36 },
      xaxis: { title: { text: 'step' }, zeroline: false, ...wholeTicks(steps) },
      yaxis: { type: logy ? 'log' : 'linear', zeroline: false },
      showlegend: true, legend: { font: { size: 10 } }, hovermode: 'closest',
    }, PLOT_CONFIG).then(gd => {
      gd.on('plotly_click', ev => openRun(ev.points[0].customdata));
      keepWholeTicks(gd, isWhole(steps) ? ['xaxis'] : []);
    }));
  }
  await Promise.all(done);
}

// A restarted run's series comes in parts (``restarts``: where each later attempt's begins, see
// _view_data.read_series): each part is a line of its own, earlier attempts dotted, so the curve
// never runs back to the step the run resumed from. One legend entry per run.
function attemptTraces(r, s) {
  const cuts = [0, ...(s.restarts || []), s.step.length];
  const name = plotText(runName(r));
  const traces = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    const last = i + 2 === cuts.length;
    const x = s.step.slice(cuts[i], cuts[i + 1]);
    traces.push({
      type: 'scatter', mode: s.step.length <= 40 ? 'lines+markers' : 'lines', name, legendgroup: r.id, showlegend: last,
      x, y: s.value.slice(cuts[i], cuts[i + 1]), customdata: x.map(() => r.id), opacity: last ? 1 : 0.6,
      line: { color: colorOf(r.id), width: last ? 1.6 : 1.2, dash: last ? 'solid' : 'dot' }, marker: { size: 4 },
      hovertemplate: 'step %{x}: %{y:.5g}<extra>%{fullData.name}' + (last ? '' : ' (earlier attempt)') + '</extra>',
    });
  }
  return traces;
}

// Whole-number values (steps, an integer flag) get whole-number ticks. Plotly puts ticks between
// them (0, 0.5, 1...) when the axis spans a few units only: such a span is ticked by 1; over a
// wider one plotly's own spacing is 2 or more (it makes at most 10 ticks), so it is left to it.
function isWhole(values) { return values.length > 0 && values.every(v => v == null || Number.isInteger(v)); }
function wholeTicks(values, range) {
  if (!range && !isWhole(values)) return {};
  let [lo, hi] = range || [Infinity, -Infinity];
  if (!range) for (const v of values) if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }  // no spread: 100k points
  return hi - lo <= 10 ? { tickmode: 'linear', tick0: 0, dtick: 1 } : { tickmode: 'auto', tick0: null, dtick: null };
}
// ...and keep them so as the user zooms (AXES: the layout names of the whole-number axes).
function keepWholeTicks(gd, axes) {
  if (!axes.length) return;
  gd.on('plotly_relayout', () => {
    const update = {};
    for (const ax of axes) {
      if (!gd.layout[ax] || !Array.isArray(gd.layout[ax].range)) continue;
      const want = wholeTicks([], gd.layout[ax].range);
      if ((gd.layout[ax].tickmode || 'auto') !== want.tickmode) {
        for (const [k, v] of Object.entries(want)) update[ax + '.' + k] = v;
      }
    }
    if (Object.keys(update).length) Plotly.relayout(gd, update);
  });
}

// --- the run panel ---
function kv(rows) {
  return el('table', null, rows.filter(([, v]) => v != null && v !== '' && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => el('tr', null, el('td', { class: 'k' }, k), el('td', null, v))));
}
function fileUrl(r, rel) {
  const enc = rel.split('/').map(encodeURIComponent).join('/');
  if (location.protocol === 'http:' || location.protocol === 'https:') return '/files/' + encodeURIComponent(r.id) + '/' + enc;
  return 'file://' + r.run_dir.split('/').map(encodeURIComponent).join('/') + '/' + enc;
}
function runLink(id) {
  return el('a', { href: '#run=' + encodeURIComponent(id), onclick: e => { e.preventDefault(); openRun(id); } }, id);
}

let panelGen = 0;
async function openRun(id) {
  const gen = ++panelGen;
  let r = byId.get(id);
  const panel = document.getElementById('panel');
  if (!r) { purge(panel); panel.append(el('div', { class: 'empty' }, 'No run ' + id + ' in this view.')); return; }
  state.current = id;
  saveHash();
  for (const tr of document.querySelectorAll('#runs tr.run')) tr.classList.toggle('current', tr.dataset.id === id);
  if (r.series === undefined) { purge(panel); panel.append(el('div', { class: 'empty' }, 'Loading ' + id + '\u2026')); }
  r = await details(r);
  if (gen !== panelGen) return;  // another run was opened meanwhile
  purge(panel);
  const done = [];
  panel.append(el('div', { class: 'section-head' }, el('h2', null, r.is_batch ? 'Batch ' : 'Run ', el('code', null, r.id)), statusBadge(r.status)));
  if (r.is_batch) done.push(...batchSection(panel, r));
  panel.append(kv([
    ['op', r.op], ['label', r.label], ['tags', (r.tags || []).join(' ')],
    ['exit code', r.exit_code == null ? null : String(r.exit_code)],
    ['created', fmtTime(r.created)], ['started', fmtTime(r.started)], ['stopped', fmtTime(r.stopped)],
    ['time', fmtDur(r.time)], ['host', r.host], ['ranks', r.nproc_per_node > 1 ? String(r.nproc_per_node) : null],
    ['gpus', r.gpus && r.gpus.length ? r.gpus.join(',') : null],
    ['batch', r.parent ? runLink(r.parent) : null],
    ['upstream', (r.upstream || []).flatMap(id => [runLink(id), ' '])],
    ['downstream', (r.downstream || []).flatMap(id => [runLink(id), ' '])],
    ['remote', r.remote ? JSON.stringify(r.remote) : null],
    ['command', r.cmd && r.cmd.length ? el('code', null, r.cmd.join(' ')) : null],
    ['run dir', el('code', null, r.run_dir)],
  ]));
  if (r.error) {
    const where = r.error.plugin ? `${r.error.plugin}.${r.error.hook}: ` : '';
    panel.append(el('h3', null, 'Error'),
      el('pre', { class: 'err' }, r.error.message ? where + r.error.message : JSON.stringify(r.error, null, 2)));
  }
  const notes = (r.notes || []).filter(n => n && typeof n.text === 'string');
  if (notes.length) {  // `guildlite note RUN "text"`, oldest first
    panel.append(el('h3', null, 'Notes'), el('table', { class: 'notes' }, notes.map(n =>
      el('tr', null, el('td', { class: 'k' }, fmtTime(n.time)), el('td', { class: 'note-text' }, n.text)))));
  }
  const flags = Object.entries(r.flags || {});
  if (flags.length) panel.append(el('h3', null, 'Flags'), kv(flags.map(([k, v]) => [k, fmt(v)])));
  const sc = Object.entries(r.scalars || {});
  if (sc.length) {
    panel.append(el('h3', null, 'Scalars'), el('table', null,
      el('tr', null, ['key', 'last', 'min', 'max', 'step', 'count'].map(h => el('td', { class: 'k' }, h))),
      sc.map(([k, s]) => el('tr', null, [k, fmt(s.last), fmt(s.min), fmt(s.max), fmt(s.step), fmt(s.count)].map(v => el('td', null, v))))));
  }
  if (r.plugins && r.plugins.length) {
    panel.append(el('h3', null, 'Hooks'), el('table', { class: 'hooks' },
      el('tr', null, ['hook', 'plugin', 'priority', 'ms', ''].map(h => el('td', { class: 'k' }, h))),
      r.plugins.map(t => el('tr', null, el('td', null, t.hook), el('td', null, t.plugin), el('td', null, fmt(t.priority)),
        el('td', null, t.seconds == null ? '' : (t.seconds * 1000).toFixed(1)), el('td', null, t.error ? 'ERROR ' + fmt(t.error) : '')))));
  }
  if (!r.is_batch || r.output) {
    const note = r.output_size > r.output.length + 1 ? ` (tail; ${fmtSize(r.output_size)} in all)` : '';
    panel.append(el('h3', null, 'Output', el('span', { class: 'note' }, note), ' ',
      r.output_size ? el('a', { href: fileUrl(r, 'output.log'), target: '_blank' }, 'output.log') : null),
      el('pre', { class: 'output' }, r.output || '(no output)'));
  }
  const shown = r.files_total > r.files.length ? ` (${r.files.length} of ${r.files_total})` : '';
  panel.append(el('h3', null, 'Files', el('span', { class: 'note' }, shown)),
    el('table', { class: 'files' }, r.files.map(([p, n]) => el('tr', null,
      el('td', null, el('a', { href: fileUrl(r, p), target: '_blank' }, p)), el('td', { class: 'num' }, fmtSize(n))))));
  await Promise.all(done);
}

// --- a batch: final metric against each flag that varies across trials ---
function plotOnly(runs) {
  state.selected = new Set(runs.map(t => t.id));
  runs.forEach(t => colorOf(t.id));
  saveHash();
  renderTable();
  drawCurves();
}
function batchSection(panel, b) {
  const trials = kids.get(b.id) || [];
  const counts = {};
  for (const t of trials) counts[t.status] = (counts[t.status] || 0) + 1;
  panel.append(el('h3', null, `Trials (${trials.length})`),
    el('div', { class: 'controls' }, Object.entries(counts).map(([s, n]) => [statusBadge(s), ' ' + n]),
      trials.length ? el('button', { type: 'button', onclick: () => plotOnly(trials) }, 'plot their curves') : null));
  const random = b.random || {};
  const keys = D.scalar_keys.filter(k => trials.some(t => t.scalars[k]));
  if (!keys.length) { panel.append(el('div', { class: 'empty' }, 'No trial has scalars yet.')); return []; }
  const metric = el('select', { 'aria-label': 'metric' }, keys.map(k => el('option', { value: k }, k)));
  const want = hash.get('metric');
  metric.value = keys.includes(want) ? want : keys.includes('loss') ? 'loss' : keys[0];
  const mode = el('select', { 'aria-label': 'plot' },
    el('option', { value: 'scatter' }, 'scatter per flag'), el('option', { value: 'parcoords' }, 'parallel coordinates'));
  if (hash.get('plot') === 'parcoords') mode.value = 'parcoords';
  const div = el('div', { class: 'plot batch-plot' });
  panel.append(el('div', { class: 'controls' }, 'final', metric, 'by flag:', mode), div);
  const redraw = () => { Plotly.purge(div); return drawBatch(div, trials, metric.value, mode.value, random); };
  metric.addEventListener('change', redraw);
  mode.addEventListener('change', redraw);
  return [redraw()];
}

function drawBatch(div, trials, metric, mode, random) {
  const ts = trials.filter(t => t.scalars[metric] && t.scalars[metric].last != null);
  const names = [...new Set(ts.flatMap(t => Object.keys(t.flags)))];
  let varying = names.filter(n => new Set(ts.map(t => JSON.stringify(t.flags[n]))).size > 1);
  if (!varying.length) varying = names;
  varying = varying.slice(0, 8);
  const y = ts.map(t => t.scalars[metric].last);
  const ids = ts.map(t => t.id);
  const numeric = n => ts.every(t => typeof t.flags[n] === 'number');
  if (!ts.length || !varying.length) { div.append(el('div', { class: 'empty' }, 'Nothing to plot.')); return Promise.resolve(); }
  if (mode === 'parcoords') {
    const dims = varying.map(n => {
      if (numeric(n)) return { label: plotText(n), values: ts.map(t => t.flags[n]) };
      const cats = [...new Set(ts.map(t => fmt(t.flags[n])))].sort();
      return {
        label: plotText(n), values: ts.map(t => cats.indexOf(fmt(t.flags[n]))),
        tickvals: cats.map((_, i) => i), ticktext: cats.map(plotText),
      };
    });
    dims.push({ label: plotText(metric), values: y });
    const line = { color: y, colorscale: 'Viridis', showscale: true, colorbar: { thickness: 12 } };
    return Plotly.newPlot(div, [{ type: 'parcoords', dimensions: dims, line }],
      { height: 300, margin: { l: 50, r: 70, t: 40, b: 20 } }, PLOT_CONFIG);
  }
  const cols = Math.min(varying.length, 2), rows = Math.ceil(varying.length / cols);
  const whole = [];  // the numeric axes of whole-number flags
  const traces = [], layout = {
    height: 70 + rows * 190, margin: { l: 55, r: 10, t: 20, b: 40 }, showlegend: false, hovermode: 'closest',
    grid: { rows, columns: cols, pattern: 'independent', ygap: 0.35, xgap: 0.15 },
  };
  varying.forEach((n, i) => {
    const ax = i ? String(i + 1) : '';
    // A numeric flag drawn at random (uniform, loguniform, randint), or with many values, gets a
    // numeric axis (log for loguniform, or when it spans decades); with few values (a grid, a
    // choice) a category axis in numeric order; other flags a category axis.
    const values = [...new Set(ts.map(t => t.flags[n]))];
    const drawn = random[n] && random[n] !== 'choice';
    const num = numeric(n) && (drawn || values.length > 8);
    const order = numeric(n) ? values.sort((a, b) => a - b).map(fmt) : values.map(fmt).sort();
    const xs = ts.map(t => (num ? t.flags[n] : fmt(t.flags[n])));
    const logx = num && xs.every(v => v > 0) && (random[n] === 'loguniform' || Math.max(...xs) / Math.min(...xs) >= 100);
    if (num && !logx && isWhole(xs)) whole.push('xaxis' + ax);
    traces.push({
      type: 'scatter', mode: 'markers', x: xs, y, xaxis: 'x' + ax, yaxis: 'y' + ax, customdata: ids,
      marker: { size: 9, color: y, colorscale: 'Viridis', line: { width: 0.5, color: '#333' } },
      hovertemplate: plotText(n) + ' %{x}<br>' + plotText(metric) + ' %{y:.5g}<extra>%{customdata}</extra>',
    });
    layout['xaxis' + ax] = num ? { title: { text: plotText(n) }, type: logx ? 'log' : 'linear', ...(logx ? {} : wholeTicks(xs)) }
      : { title: { text: plotText(n) }, type: 'category', categoryorder: 'array', categoryarray: order.map(plotText),
          range: [-0.5, order.length - 0.5] };
    layout['yaxis' + ax] = { title: { text: i % cols === 0 ? plotText(metric) : '' } };
  });
  return Plotly.newPlot(div, traces, layout, PLOT_CONFIG).then(gd => {
    gd.on('plotly_click', ev => openRun(ev.points[0].customdata));
    keepWholeTicks(gd, whole);
  });
}

// --- wiring ---
function setFilter(text) { state.filter = text.toLowerCase().split(/\s+/).filter(Boolean); }
document.getElementById('filter').addEventListener('input', e => { setFilter(e.target.value); saveHash(); renderTable(); });
document.getElementById('status-filter').addEventListener('change', e => {
  state.status = e.target.value;
  saveHash();
  renderTable();
});
document.getElementById('logy').addEventListener('change', drawCurves);
document.getElementById('clear-sel').addEventListener('click', () => { state.selected.clear(); saveHash(); renderTable(); drawCurves(); });

if (RUNS.length > 500) for (const r of RUNS) if (r.is_batch) state.collapsed.add(r.id);
const wantSort = (hash.get('sort') || '').replace(/^-/, '');
if (COLUMNS.some(c => c.key === wantSort)) { state.sort = wantSort; state.desc = hash.get('sort').startsWith('-'); }
if (hash.get('q')) { document.getElementById('filter').value = hash.get('q'); setFilter(hash.get('q')); }
if (hash.get('status')) { state.status = hash.get('status'); document.getElementById('status-filter').value = state.status; }
const wantRun = hash.get('run');
const wantSel = (hash.get('sel') || '').split(',').filter(id => byId.has(id));
if (wantSel.length) wantSel.forEach(id => state.selected.add(id));
else if (wantRun && byId.has(wantRun) && byId.get(wantRun).is_batch) (kids.get(wantRun) || []).forEach(t => state.selected.add(t.id));
else RUNS.filter(r => !r.is_batch && Object.keys(r.scalars).length).slice(0, 5).forEach(r => state.selected.add(r.id));
state.selected.forEach(colorOf);
renderSummary();
renderTable();
const pending = [drawCurves()];
if (wantRun) pending.push(openRun(wantRun));
Promise.all(pending).then(() => { document.body.dataset.ready = '1'; },
  e => { reportError(e && e.message || e); document.body.dataset.ready = 'error'; });
})();
