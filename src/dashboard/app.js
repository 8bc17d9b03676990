// The dashboard page: reads the admin API (one event stream for samples, polls for tables),
// draws the memory chart with uPlot, and sends Load / Unload / Pin to the admin API.
// Memory stays bounded: chart points live in a ring buffer, tables are replaced, the log view
// keeps at most LOG_KEEP characters.
import {
  LEVELS,
  Ring,
  SseParser,
  backoffMs,
  chartColumns,
  countdown,
  formatBytes,
  formatMs,
  modelsIn,
  pointOf,
  pressureSpans,
  savedText,
} from './lib.js';

/**
 * Samples the chart keeps: two hours of one-second samples, or `?points=N` in the page's URL
 * (60 … 86 400) for a longer or shorter window.
 */
const CAPACITY = (() => {
  const n = Number(new URLSearchParams(window.location.search).get('points'));
  return Number.isInteger(n) && n >= 60 && n <= 86_400 ? n : 7200;
})();
const POLL_MS = 2000;
const ALERTS_MS = 10_000;
const LOG_BYTES = 16_384;
const LOG_KEEP = 64 * 1024;
/** No byte from the stream for this long (the daemon sends a comment every 15 s): reconnect. */
const STALL_MS = 40_000;
const KEY_ITEM = 'headroom.apiKey';
const PALETTE = ['#2458d6', '#d97706', '#7c3aed', '#0d9488', '#db2777', '#65a30d', '#0891b2'];
const LEVEL_FILL = [null, 'rgba(234,179,8,0.12)', 'rgba(234,88,12,0.16)', 'rgba(220,38,38,0.2)'];

const $ = (id) => document.getElementById(id);
const points = new Ring(CAPACITY);
const state = {
  /** @type {any[]} */
  models: [],
  budget: null,
  /** model → predicted bytes of its runner */
  predicted: {},
  latest: null,
  key: sessionStorage.getItem(KEY_ITEM) ?? '',
  /** Set once the daemon answered 401: from then on requests carry the key. */
  needsKey: false,
  busy: new Set(),
  rows: new Map(),
};

class AuthNeeded extends Error {}

let keyWaiters = [];
function askKey() {
  $('key-form').hidden = false;
  setConn('auth', 'API key needed');
}
function keyEntered() {
  return new Promise((resolve) => keyWaiters.push(resolve));
}
$('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  state.key = $('key').value.trim();
  sessionStorage.setItem(KEY_ITEM, state.key);
  state.needsKey = true;
  $('key-form').hidden = true;
  const waiters = keyWaiters;
  keyWaiters = [];
  for (const w of waiters) w();
});

/** fetch() that adds the API key once the daemon has asked for one. */
async function api(path, init = {}) {
  const send = () => {
    const headers = new Headers(init.headers);
    if (state.needsKey && state.key) headers.set('authorization', `Bearer ${state.key}`);
    return fetch(path, { ...init, headers });
  };
  let res = await send();
  if (res.status === 401 && !state.needsKey) {
    state.needsKey = true;
    if (state.key) res = await send();
  }
  if (res.status === 401) {
    askKey();
    throw new AuthNeeded('the daemon asks for an API key');
  }
  return res;
}

async function json(path, init) {
  const res = await api(path, init);
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
  return body;
}

function setConn(s, text) {
  const el = $('conn');
  el.dataset.state = s;
  el.textContent = text ?? s;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the event stream -------------------------------------------------------------------------

async function stream() {
  let attempt = 0;
  for (;;) {
    const abort = new AbortController();
    let stall;
    const arm = () => {
      clearTimeout(stall);
      stall = setTimeout(() => abort.abort(), STALL_MS);
    };
    try {
      arm();
      const res = await api('/admin/events', {
        headers: { accept: 'text/event-stream' },
        signal: abort.signal,
      });
      const off =
        res.status === 503
          ? await res.json().then(
              (b) => b?.error,
              () => undefined,
            )
          : undefined;
      if (off?.code === 'monitor_disabled') {
        // The monitor is off (monitor.enabled: false): no samples, but the tables still work.
        // (A daemon shutting down answers 503 too, with another code: that is a reconnect.)
        setConn('off', 'monitor off');
        $('conn').title = off.message ?? '';
        void refreshModels();
        void refreshRequests();
        await sleep(30_000);
        continue;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      await refreshModels();
      await seed();
      setConn('live', 'live');
      attempt = 0;
      void refreshRequests();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        for (const e of parser.push(value)) onEvent(e);
      }
    } catch (err) {
      if (err instanceof AuthNeeded) {
        clearTimeout(stall);
        await keyEntered();
        continue;
      }
    } finally {
      clearTimeout(stall);
    }
    setConn('reconnecting', 'reconnecting…');
    await sleep(backoffMs(attempt++));
  }
}

/** The daemon's recent samples (after a reconnect: those newer than the chart's last point). */
async function seed() {
  try {
    const h = await json(`/admin/resources/history?limit=${CAPACITY}`);
    for (const s of h.samples) addSample(s);
    setLevel(h.level);
  } catch (err) {
    if (err instanceof AuthNeeded) throw err;
  }
}

function onEvent(e) {
  let data;
  try {
    data = JSON.parse(e.data);
  } catch {
    return;
  }
  if (e.event === 'sample') addSample(data);
  else if (e.event === 'hello') {
    setLevel(data.level);
    if (data.latest) addSample(data.latest);
  } else if (e.event === 'level-change') setLevel(data.change.to);
  else if (e.event === 'alert') void refreshAlerts();
  else if (e.event === 'model') void refreshModels();
  else if (e.event === 'reaction') {
    const r = data.reaction;
    message(`pressure ${r.level}: ${r.action}${r.model ? ` ${r.model}` : ''} (${r.reason})`);
    void refreshModels();
  }
}

function addSample(s) {
  const last = points.last();
  if (last && s.at / 1000 <= last.t) return;
  points.push(pointOf(s, state.budget));
  state.latest = s;
  setLevel(s.pressure?.level);
  scheduleDraw();
}

function setLevel(level) {
  if (!LEVELS.includes(level)) return;
  const el = $('level');
  el.dataset.level = level;
  el.textContent = `pressure: ${level}`;
}

// ---- the charts -------------------------------------------------------------------------------

let drawTimer;
function scheduleDraw() {
  drawTimer ??= setTimeout(() => {
    drawTimer = undefined;
    draw();
  }, 250);
}

let plot;
let plotKey = '';
let spans = [];
let gpuPlot;
let gpuKey = '';

const color = (i) => PALETTE[i % PALETTE.length];
const alpha = (hex, a) => {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
};
const bytesValue = (_u, v) => (v === null || v === undefined ? '–' : formatBytes(v));
const chartWidth = (el) => Math.max(280, el.clientWidth || 800);
const chartHeight = () => (window.innerWidth < 600 ? 220 : 300);

function drawPressure(u) {
  const { ctx, bbox } = u;
  ctx.save();
  for (const s of spans) {
    const x0 = u.valToPos(s.from, 'x', true);
    const x1 = u.valToPos(s.to, 'x', true);
    ctx.fillStyle = LEVEL_FILL[s.level];
    ctx.fillRect(x0, bbox.top, Math.max(2, x1 - x0), bbox.height);
  }
  ctx.restore();
}

/** The y range: the whole machine's RAM, or just the models' stack and predictions. */
function yRange(u, _min, max) {
  if ($('scale').value !== 'models') return [0, Math.max(1, max) * 1.05];
  let top = 1;
  for (let i = 4; i < u.data.length; i++)
    for (const v of u.data[i]) if (v !== null && v !== undefined && v > top) top = v;
  return [0, top * 1.2];
}
$('scale').addEventListener('change', () => {
  plotKey = '';
  draw();
});

function memoryOptions(models, el) {
  const base = 4;
  return {
    width: chartWidth(el),
    height: chartHeight(),
    series: [
      {},
      { label: 'total RAM', stroke: '#8a8f98', width: 1, value: bytesValue },
      { label: 'available', stroke: '#1f8a4c', width: 1.5, value: bytesValue },
      { label: 'budget', stroke: '#c53030', dash: [6, 4], width: 1.5, value: bytesValue },
      ...models.map((m, i) => ({
        label: m,
        stroke: color(i),
        fill: alpha(color(i), 0.3),
        width: 1,
        value: bytesValue,
      })),
      ...models.map((m, i) => ({
        label: `${m} predicted`,
        stroke: color(i),
        dash: [3, 3],
        width: 1.5,
        value: bytesValue,
      })),
    ],
    // Each model's band fills down to the model below it (stacked).
    bands: models.slice(1).map((_, j) => ({ series: [base + j + 1, base + j] })),
    scales: { x: { time: true }, y: { range: yRange } },
    axes: [{}, { size: 72, values: (_u, ticks) => ticks.map((t) => formatBytes(t)) }],
    hooks: { drawClear: [drawPressure] },
  };
}

/** Lines without a dot per sample (there are thousands); the legend on the newest values. */
const plain = (opts) => ({
  ...opts,
  series: opts.series.map((s, i) => (i === 0 ? s : { ...s, points: { show: false } })),
  hooks: { ...opts.hooks, draw: [newestInLegend] },
});

/** Without a pointer over the chart, the legend shows the newest values. */
function newestInLegend(u) {
  if (!(u.cursor.left >= 0) && u.data[0].length > 0) u.setLegend({ idx: u.data[0].length - 1 });
}

function draw() {
  const arr = points.toArray();
  const el = $('chart');
  el.dataset.samples = String(arr.length);
  summary();
  if (typeof uPlot === 'undefined') {
    el.textContent = 'The chart library did not load (/ui/uplot.js).';
    return;
  }
  const models = modelsIn(arr);
  spans = pressureSpans(arr);
  el.dataset.pressureSpans = String(spans.length);
  const data = chartColumns(arr, models, state.predicted);
  const key = models.join('\n');
  if (!plot || key !== plotKey) {
    plot?.destroy();
    plot = new uPlot(plain(memoryOptions(models, el)), data, el);
    plotKey = key;
  } else plot.setData(data);
  el.dataset.models = models.join(',');
  drawGpus(arr);
}

function drawGpus(arr) {
  const gpus = [...new Set(arr.flatMap((p) => p.gpus.map((g) => g.index)))].sort((a, b) => a - b);
  $('gpu-block').hidden = gpus.length === 0;
  if (gpus.length === 0) return;
  const el = $('gpu-chart');
  const x = arr.map((p) => p.t);
  const col = (idx, field) => arr.map((p) => p.gpus.find((g) => g.index === idx)?.[field] ?? null);
  const data = [x, ...gpus.flatMap((g) => [col(g, 'used'), col(g, 'total')])];
  const key = gpus.join(',');
  if (!gpuPlot || key !== gpuKey) {
    gpuPlot?.destroy();
    gpuPlot = new uPlot(
      plain({
        width: chartWidth(el),
        height: 200,
        series: [
          {},
          ...gpus.flatMap((g, i) => [
            {
              label: `GPU ${g} used`,
              stroke: color(i),
              fill: alpha(color(i), 0.25),
              value: bytesValue,
            },
            { label: `GPU ${g} total`, stroke: color(i), dash: [6, 4], value: bytesValue },
          ]),
        ],
        scales: {
          x: { time: true },
          y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.05] },
        },
        axes: [{}, { size: 72, values: (_u, ticks) => ticks.map((t) => formatBytes(t)) }],
      }),
      data,
      el,
    );
    gpuKey = key;
  } else gpuPlot.setData(data);
}

new ResizeObserver(() => {
  plot?.setSize({ width: chartWidth($('chart')), height: chartHeight() });
  gpuPlot?.setSize({ width: chartWidth($('gpu-chart')), height: 200 });
}).observe($('memory'));

function summary() {
  const s = state.latest;
  if (!s) return;
  const used = state.models.reduce((n, m) => n + (m.measured ?? 0), 0);
  $('summary').textContent =
    `RAM ${formatBytes(s.pressure?.available ?? s.memory.available)} available of ` +
    `${formatBytes(s.memory.total)} · budget ${formatBytes(state.budget)} · models ${formatBytes(used)}`;
}

// ---- the tables -------------------------------------------------------------------------------

function message(text) {
  $('action-msg').textContent = text;
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function button(label, aria, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.setAttribute('aria-label', aria);
  b.addEventListener('click', onClick);
  return b;
}

async function act(name, verb, body) {
  state.busy.add(name);
  renderModels();
  message(`${verb} ${name}…`);
  try {
    await json(`/admin/models/${encodeURIComponent(name)}/${verb}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    message(`${verb} ${name}: done`);
  } catch (err) {
    message(`${verb} ${name} failed: ${err.message}`);
  } finally {
    state.busy.delete(name);
    await refreshModels();
  }
}

/** One row per model, kept across refreshes so focus stays on a button while the table updates. */
function rowFor(name) {
  let row = state.rows.get(name);
  if (row) return row;
  const tr = document.createElement('tr');
  tr.dataset.model = name;
  const labels = [...document.querySelectorAll('#models thead th')].map((th) => th.textContent);
  const cells = labels.slice(0, 13).map((label) => {
    const td = cell('');
    td.dataset.label = label;
    return td;
  });
  const actions = document.createElement('td');
  actions.className = 'actions';
  const load = button('Load', `Load ${name}`, () => void act(name, 'load', {}));
  const unload = button('Unload', `Unload ${name}`, () => void act(name, 'unload', {}));
  const pin = button('Pin', `Pin ${name}`, () => {
    const m = state.models.find((x) => x.name === name);
    void act(name, 'pin', { pinned: !m?.pinned });
  });
  actions.append(load, unload, pin);
  tr.append(...cells, actions);
  row = { tr, cells, load, unload, pin };
  state.rows.set(name, row);
  return row;
}

function renderModels() {
  const body = $('models-body');
  const now = Date.now();
  const names = new Set(state.models.map((m) => m.name));
  for (const [name, row] of state.rows)
    if (!names.has(name)) {
      row.tr.remove();
      state.rows.delete(name);
    }
  for (const m of state.models) {
    const row = rowFor(m.name);
    const c = m.config;
    const values = [
      m.name,
      state.busy.has(m.name) && m.state === 'unloaded' ? 'loading…' : m.state,
      c?.engine ?? '–',
      c ? String(c.contextSize) : '–',
      c ? String(c.parallel) : '–',
      c ? c.kvCacheKeyType : '–',
      formatBytes(m.predicted),
      formatBytes(m.measured),
      formatBytes(m.peak),
      String(m.inFlight ?? 0),
      String(m.queued ?? 0),
      countdown(m.expiresAt, m.state, now),
      savedText(m.savedState),
    ];
    values.forEach((v, i) => {
      if (row.cells[i].textContent !== v) row.cells[i].textContent = v;
    });
    row.tr.dataset.state = m.state;
    row.cells[0].className = 'name';
    row.cells[1].className = `state state-${m.state}`;
    row.cells[11].className = 'ttl';
    const busy = state.busy.has(m.name);
    row.load.disabled = busy || m.state === 'ready' || m.state === 'loading';
    row.unload.disabled = busy || m.state === 'unloaded' || m.state === 'stopped';
    row.pin.disabled = busy;
    row.pin.setAttribute('aria-pressed', String(m.pinned === true));
    row.pin.textContent = m.pinned ? 'Pinned' : 'Pin';
    body.append(row.tr); // keeps the daemon's order; moving a row keeps its focus
  }
  let empty = $('models-empty');
  if (state.models.length === 0) {
    if (!empty) {
      const tr = document.createElement('tr');
      tr.id = 'models-empty';
      const td = cell('No models: put GGUF files in a directory listed in modelDirs.');
      td.colSpan = 13;
      tr.append(td);
      body.append(tr);
    }
  } else empty?.remove();
  const select = $('log-model');
  const chosen = select.value;
  const options = [...select.options].map((o) => o.value).join('\n');
  const wanted = state.models.map((m) => m.name);
  if (options !== wanted.join('\n')) {
    select.replaceChildren(
      ...wanted.map((n) => {
        const o = document.createElement('option');
        o.value = n;
        o.textContent = n;
        return o;
      }),
    );
    if (wanted.includes(chosen)) select.value = chosen;
  }
  followLog();
}

async function refreshModels() {
  try {
    const [models, resources] = await Promise.all([
      json('/admin/models'),
      json('/admin/resources'),
    ]);
    state.models = models.models;
    state.budget = resources.budget;
    const predicted = {};
    for (const m of state.models) if (m.predicted !== null) predicted[m.name] = m.predicted;
    state.predicted = predicted;
    renderModels();
    summary();
  } catch {
    // The stream's state says why (reconnecting, key needed).
  }
}

async function refreshRequests() {
  let data;
  try {
    data = await json('/admin/requests?limit=25');
  } catch {
    return;
  }
  const rows = data.requests.map((r) => {
    const tr = document.createElement('tr');
    const tps = r.generationTokensPerS;
    tr.append(
      cell(new Date(r.startedAt).toLocaleTimeString()),
      cell(r.model),
      cell(r.endpoint),
      cell(r.outcome === 'error' ? `error ${r.status}${r.error ? ` ${r.error}` : ''}` : r.outcome),
      cell(formatMs(r.queuedMs)),
      cell(formatMs(r.loadMs)),
      cell(formatMs(r.ttftMs)),
      cell(tps === undefined ? '–' : tps.toFixed(1)),
      cell(formatMs(r.durationMs)),
    );
    return tr;
  });
  $('requests-body').replaceChildren(...rows);
}

async function refreshAlerts() {
  let data;
  try {
    data = await json('/admin/alerts');
  } catch {
    return;
  }
  const item = (a, resolved) => {
    const li = document.createElement('li');
    li.className = resolved ? 'resolved' : a.severity;
    const head = document.createElement('div');
    head.textContent = `${resolved ? 'resolved · ' : ''}${a.severity} · ${a.component}: ${a.message}`;
    const rec = document.createElement('div');
    rec.className = 'rec';
    rec.textContent = a.recommendation;
    li.append(head, rec);
    return li;
  };
  const active = data.active.map((a) => item(a, false));
  const recent = data.recent
    .filter((a) => a.resolvedAt !== undefined)
    .slice(-5)
    .map((a) => item(a, true));
  const list = [...active, ...recent];
  if (list.length === 0) {
    const li = document.createElement('li');
    li.className = 'resolved';
    li.textContent = 'No alerts.';
    list.push(li);
  }
  $('alerts-list').replaceChildren(...list);
}

/**
 * The runner log view follows one log at a time (the chosen model's, while Follow is on) over a
 * streamed /admin/logs/NAME?follow=true; it keeps the last LOG_KEEP characters. Unticking
 * Follow stops the stream and leaves the text as it is.
 */
let logFollow;
function followLog() {
  const name = $('log-model').value;
  const on = $('log-follow').checked;
  if (logFollow && (logFollow.name !== name || !on)) {
    logFollow.abort.abort();
    logFollow = undefined;
  }
  if (!name || !on || logFollow) return;
  const abort = new AbortController();
  logFollow = { name, abort };
  void (async () => {
    const pre = $('log-text');
    pre.textContent = '(waiting for the runner to write)';
    while (!abort.signal.aborted) {
      try {
        const res = await api(
          `/admin/logs/${encodeURIComponent(name)}?bytes=${LOG_BYTES}&follow=true`,
          { signal: abort.signal },
        );
        if (!res.ok || !res.body) {
          pre.textContent = await res.text();
          throw new Error(`HTTP ${res.status}`);
        }
        let text = ''; // each connection starts with the tail again
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text += value;
          if (text.length > LOG_KEEP) {
            const cut = text.indexOf('\n', text.length - LOG_KEEP);
            text = cut >= 0 ? text.slice(cut + 1) : text.slice(-LOG_KEEP);
          }
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
          pre.textContent = text;
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
      } catch (err) {
        if (err instanceof AuthNeeded) await keyEntered();
      }
      if (!abort.signal.aborted) await sleep(2000);
    }
  })();
}
$('log-model').addEventListener('change', followLog);
$('log-follow').addEventListener('change', followLog);

async function refresh() {
  await Promise.all([refreshModels(), refreshRequests()]);
}

setInterval(() => void refresh(), POLL_MS);
setInterval(() => void refreshAlerts(), ALERTS_MS);
// The TTL countdown ticks between polls.
setInterval(renderModels, 1000);
void refreshAlerts();
void stream();
