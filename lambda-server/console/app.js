// The luna-lambda web console: plain JavaScript, no build step, no dependencies. Every page is
// drawn from its URL; everything goes through the server's HTTP API, with the token the user
// gave (kept in session storage, never in a URL). Text from the server is always set as text,
// never parsed as HTML; the lambda's own docs are shown in a sandboxed frame.
'use strict';

const TOKEN_KEY = 'luna-lambda-token';
const ACCOUNT_KEY = 'luna-lambda-account';
const RECENT_KEY = 'luna-lambda-recent:';
const NAME_RULE = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;
const UUID_RULE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// ---------------------------------------------------------------------------------------------
// Elements

/** An element: `h('a', {href: '/'}, 'text', child)`; attributes starting with "on" are events. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);

function badge(status, reason) {
  return h('span', { class: `badge ${status}`, title: reason || status }, status.replace('_', ' '));
}

function notice(text, kind) {
  const n = $('#notice');
  n.textContent = text || '';
  n.className = kind || '';
  n.hidden = !text;
}

function ago(iso) {
  if (!iso) return '—';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(s)) return iso;
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, body) {
    // The short name of the error and what exactly was wrong (the answer's `detail`).
    const said = body ? [body.desc, body.detail].filter(Boolean) : [];
    super(said.join(': ') || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  const t = sessionStorage.getItem(TOKEN_KEY);
  if (t) headers.set('Authorization', `Bearer ${t}`);
  return headers;
}

/** Calls the API; answers the parsed JSON (or text), throws ApiError for a non-2xx answer. */
async function api(method, path, opts = {}) {
  const init = { method, headers: authHeaders(opts.headers), signal: opts.signal };
  if (opts.json !== undefined) {
    init.headers.set('Content-Type', 'application/json');
    init.body = JSON.stringify(opts.json);
  } else if (opts.body !== undefined) {
    init.body = opts.body;
  }
  const r = await fetch(path, init);
  const type = r.headers.get('Content-Type') || '';
  const body = r.status === 204 ? null : type.includes('json') ? await r.json() : await r.text();
  if (r.status === 401 && !opts.login) {
    const had = sessionStorage.getItem(TOKEN_KEY);
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(had ? 'Your token was refused: it was revoked or has expired. Enter one again.' : '');
    throw new ApiError(401, body);
  }
  if (!r.ok) throw new ApiError(r.status, typeof body === 'object' ? body : { desc: body });
  return body;
}

function problemList(problems) {
  return h('ul', { class: 'problems' }, problems.map((p) => {
    const where = [p.path || '(archive)', p.line, p.column].filter((x) => x !== undefined && x !== null).join(':');
    return h('li', { class: p.severity === 'warning' ? 'warning' : 'error' },
      h('span', { class: 'where' }, where), ' — ', p.message, ' ', h('span', { class: 'muted' }, `(${p.code})`));
  }));
}

/** An error as a block: its text, and every validation problem with file, line and column. */
function errorBlock(e) {
  const problems = (e.body && e.body.problems) || [];
  const errors = problems.filter((p) => p.severity !== 'warning');
  return h('div', { class: 'card', role: 'alert', 'data-error': e.body && e.body.error_code },
    h('strong', {}, problems.length
      ? `The upload has ${errors.length} problem${errors.length === 1 ? '' : 's'}:`
      : `Error ${e.status}${e.body && e.body.error_code ? ` (${e.body.error_code})` : ''}: ${e.message}`),
    problems.length ? problemList(problems) : null);
}

// ---------------------------------------------------------------------------------------------
// Pages and navigation

let page = { stop() {} };

const PAGES = [
  [/^\/$/, listPage],
  [/^\/create$/, createPage],
  [/^\/lambdas\/([^/]+)$/, lambdaPage],
  [/^\/lambdas\/([^/]+)\/invoke$/, invokePage],
];

function navigate(url) {
  history.pushState(null, '', url);
  render();
}

function render() {
  page.stop();
  notice('');
  const path = location.pathname;
  for (const a of document.querySelectorAll('.top nav a')) {
    const here = a.getAttribute('href') === path;
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const main = $('#main');
  main.replaceChildren();
  const timers = [];
  const aborts = new AbortController();
  page = {
    stop() { timers.forEach(clearInterval); aborts.abort(); },
    every(ms, f) { f(); timers.push(setInterval(f, ms)); },
    signal: aborts.signal,
  };
  for (const [re, draw] of PAGES) {
    const m = path.match(re);
    if (m) { draw(main, page, ...m.slice(1).map(decodeURIComponent)); return; }
  }
  main.append(h('h1', {}, 'Not found'), h('p', {}, 'No console page here. ', h('a', { href: '/', 'data-nav': true }, 'All lambdas')));
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest && ev.target.closest('a[data-nav]');
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', render);

// ---------------------------------------------------------------------------------------------
// Login (auth on)

let loginShown = false;

function showLogin(why) {
  if (loginShown) return; // several answers of the page were 401s
  loginShown = true;
  page.stop();
  page = { stop() {} };
  $('#logout').hidden = true;
  const main = $('#main');
  const input = h('input', { type: 'password', id: 'token', autocomplete: 'off', required: true, 'aria-describedby': 'token-error' });
  const err = h('p', { class: 'field-error', id: 'token-error', role: 'alert' }, why || '');
  const form = h('form', { class: 'card login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Log in'),
    h('p', { class: 'muted' }, 'This server requires an API token (made with ', h('code', {}, 'luna-lambda token create'), '). It is kept in this tab only.'),
    h('label', { for: 'token' }, 'Token'), input, err,
    h('div', { class: 'row end' }, h('button', { type: 'submit' }, 'Log in')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api('GET', '/1/lambdas?page_size=1', { login: true });
      start();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      err.textContent = e.status === 401 ? 'This token was refused: it is unknown, revoked or expired.' : e.message;
      input.focus();
    }
  });
  main.replaceChildren(form);
  input.focus();
}

/** Draws the page the URL names; with auth on and no token, the first API answer (a 401) shows
 * the login screen instead. */
function start() {
  loginShown = false;
  $('#logout').hidden = !sessionStorage.getItem(TOKEN_KEY);
  render();
}

$('#logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin('Logged out.');
});

// ---------------------------------------------------------------------------------------------
// Lambdas

function listPage(main, pg) {
  const filter = h('input', { type: 'text', id: 'filter', placeholder: 'Filter by name', 'aria-label': 'Filter by name' });
  const status = h('select', { id: 'status-filter', 'aria-label': 'Filter by status' },
    ['', 'running', 'waiting', 'idle', 'terminated', 'not_found'].map((s) => h('option', { value: s }, s || 'any status')));
  const body = h('tbody');
  const count = h('p', { class: 'muted', 'aria-live': 'polite' });
  let lambdas = [];
  const draw = () => {
    const f = filter.value.trim().toLowerCase();
    const shown = lambdas.filter((l) => l.lambda_name.includes(f) && (!status.value || l.status === status.value));
    count.textContent = `${shown.length} of ${lambdas.length} lambda${lambdas.length === 1 ? '' : 's'}`;
    body.replaceChildren(...shown.map((l) => h('tr', { 'data-id': l.lambda_id },
      h('td', {}, h('a', { href: `/lambdas/${l.lambda_id}`, 'data-nav': true }, l.lambda_name)),
      h('td', { class: 'hide-narrow' }, l.lambda_type),
      h('td', {}, l.alive ? badge(l.status, l.reason) : badge('off', 'switched off')),
      h('td', {}, badge(l.image_status, l.image_status === 'error' ? l.reason : '')),
      h('td', {}, l.lambda_version),
      h('td', { class: 'hide-narrow' }, replicas(l)),
      h('td', { class: 'hide-narrow' }, ago(l.last_usage)))));
  };
  filter.addEventListener('input', draw);
  status.addEventListener('change', draw);
  main.append(
    h('div', { class: 'row' }, h('h1', {}, 'Lambdas'), h('a', { class: 'button', href: '/create', 'data-nav': true, style: 'margin-left:auto' }, 'Create')),
    h('div', { class: 'row' }, filter, status), count,
    h('div', { class: 'card table-wrap' }, h('table', { id: 'lambdas' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col', class: 'hide-narrow' }, 'Type'),
        ['Status', 'Image', 'Version'].map((t) => h('th', { scope: 'col' }, t)),
        h('th', { scope: 'col', class: 'hide-narrow' }, 'Replicas'), h('th', { scope: 'col', class: 'hide-narrow' }, 'Last use'))),
      body)));
  pg.every(3000, async () => {
    try {
      lambdas = (await api('GET', '/1/lambdas?page_size=1000', { signal: pg.signal })).lambdas;
      lambdas.sort((a, b) => a.lambda_name.localeCompare(b.lambda_name));
      draw();
      if (!performance.getEntriesByName('luna:lambdas-drawn').length) performance.mark('luna:lambdas-drawn');
    } catch (e) { if (e.name !== 'AbortError' && e.status !== 401) notice(e.message); }
  });
  filter.focus();
}

function replicas(l) {
  if (typeof l.replicas === 'number') return l.replicas;
  const d = (l.parameters && l.parameters.deploy_parameters) || {};
  return l.alive ? d.pod_count || 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// One lambda

function lambdaPage(main, pg, id) {
  const base = `/1/lambdas/${encodeURIComponent(id)}`;
  const title = h('h1', {}, 'Lambda');
  const facts = h('dl', { class: 'kv' });
  const actions = h('div', { class: 'row' });
  const replicaBody = h('tbody');
  const buildLog = h('pre', { class: 'log', id: 'build-log', 'aria-live': 'off', tabindex: 0 });
  const buildState = h('span');
  const runLog = h('pre', { class: 'log', id: 'runtime-log', tabindex: 0 });
  const follow = h('input', { type: 'checkbox', id: 'follow', checked: true });
  const params = h('pre', { class: 'json', id: 'parameters', tabindex: 0 });
  const config = h('textarea', { class: 'code', id: 'user-config', spellcheck: 'false', 'aria-describedby': 'config-check' });
  const configCheck = h('p', { class: 'field-ok', id: 'config-check', 'aria-live': 'polite' });
  const saveConfig = h('button', { type: 'button', id: 'save-config' }, 'Save and restart');
  const docs = h('div', { id: 'docs' }, h('p', { class: 'muted' }, 'No docs in this archive.'));
  const chart = h('div', { class: 'chart', id: 'traffic' });
  const updateResult = h('div');
  let record = null;
  let streaming = null; // the version whose build log is being streamed
  let logStream = null; // and the controller that stops its stream
  let configShownFor = null;

  config.addEventListener('input', () => checkJson(config, configCheck, saveConfig, true));
  saveConfig.addEventListener('click', async () => {
    saveConfig.disabled = true;
    try {
      const value = config.value.trim() === '' ? null : JSON.parse(config.value);
      await api('PUT', `${base}/config`, { json: value });
      notice('Config saved: the lambda restarts with it.', 'info');
      drawRecord(await api('GET', base));
    } catch (e) { notice(e.message); }
    saveConfig.disabled = false;
  });

  main.append(
    h('p', {}, h('a', { href: '/', 'data-nav': true }, '← All lambdas')),
    title, h('div', { class: 'card' }, facts, actions, updateResult),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-replicas' }, h('h2', { id: 'h-replicas' }, 'Replicas'),
        h('div', { class: 'table-wrap' }, h('table', { id: 'replicas' }, h('thead', {}, h('tr', {}, ['Replica', 'Status', 'Restarts', 'Reason'].map((t) => h('th', { scope: 'col' }, t)))), replicaBody))),
      h('section', { class: 'card', 'aria-labelledby': 'h-traffic' }, h('h2', { id: 'h-traffic' }, 'Traffic (last 15 minutes)'), chart),
      h('section', { class: 'card', 'aria-labelledby': 'h-build' }, h('h2', { id: 'h-build' }, 'Build log ', buildState), buildLog),
      h('section', { class: 'card', 'aria-labelledby': 'h-logs' }, h('div', { class: 'row' }, h('h2', { id: 'h-logs' }, 'Runtime logs'),
        h('label', { class: 'inline', style: 'margin-left:auto' }, follow, 'Follow')), runLog),
      h('section', { class: 'card', 'aria-labelledby': 'h-config' }, h('h2', { id: 'h-config' }, 'User config'),
        h('label', { for: 'user-config' }, 'JSON (empty for none)'), config, configCheck, h('div', { class: 'row end' }, saveConfig)),
      h('section', { class: 'card', 'aria-labelledby': 'h-params' }, h('h2', { id: 'h-params' }, 'Parameters'), params)),
    h('section', { class: 'card', 'aria-labelledby': 'h-docs' }, h('h2', { id: 'h-docs' }, 'Docs'), docs));

  const drawRecord = (r) => {
    record = r;
    title.replaceChildren(r.lambda_name, ' ', r.alive ? badge(r.status, r.reason) : badge('off', 'switched off'));
    const fact = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
    facts.replaceChildren(
      ...fact('Id', h('code', {}, r.lambda_id)), ...fact('Type', r.lambda_type),
      ...fact('Version', `${r.lambda_version}${r.running_version && r.running_version !== r.lambda_version ? ` (serving ${r.running_version})` : ''}`),
      ...fact('Image', badge(r.image_status, r.image_status === 'error' ? r.reason : '')),
      ...fact('Reason', r.reason || '—'), ...fact('Description', r.description || '—'),
      ...fact('Updated', ago(r.last_update_time)), ...fact('Last use', ago(r.last_usage)));
    params.textContent = JSON.stringify(r.parameters, null, 2);
    if (configShownFor !== r.lambda_version) {
      configShownFor = r.lambda_version;
      const uc = r.parameters.user_config;
      config.value = uc === undefined || uc === null ? '' : JSON.stringify(uc, null, 2);
      checkJson(config, configCheck, saveConfig, true);
    }
    const building = r.image_status === 'pending' || r.image_status === 'in_progress';
    buildState.replaceChildren(badge(r.image_status));
    if (streaming !== r.lambda_version) {
      // A new version's log replaces the previous one's, whose stream stops.
      streaming = r.lambda_version;
      if (logStream) logStream.abort();
      logStream = new AbortController();
      const stop = logStream;
      pg.signal.addEventListener('abort', () => stop.abort());
      streamText(`${base}/image/logs${building ? '?follow=1' : ''}`, buildLog, stop.signal);
    }
  };

  actions.replaceChildren(
    h('a', { class: 'button', href: `/lambdas/${id}/invoke`, 'data-nav': true }, 'Invoke'),
    h('button', { type: 'button', class: 'secondary', id: 'switch', onclick: async (ev) => {
      ev.target.disabled = true;
      try { drawRecord(await api('PATCH', base, { json: { alive: !record.alive } }).then(() => api('GET', base))); } catch (e) { notice(e.message); }
      ev.target.disabled = false;
    } }, 'Switch off'),
    h('label', { class: 'button secondary', for: 'update-file' }, 'Update from .zip…'),
    h('input', { type: 'file', id: 'update-file', accept: '.zip,application/zip', hidden: true, onchange: async (ev) => {
      const file = ev.target.files[0];
      ev.target.value = '';
      if (!file) return;
      const form = new FormData();
      form.append('archive', file, file.name);
      updateResult.replaceChildren(h('p', { class: 'muted' }, 'Uploading…'));
      try {
        const r = await api('PUT', base, { body: form });
        updateResult.replaceChildren(h('p', { class: 'field-ok' }, `Version ${r.lambda_version} is being built.`));
      } catch (e) { updateResult.replaceChildren(errorBlock(e)); }
    } }),
    h('button', { type: 'button', class: 'danger', id: 'delete', onclick: () => confirmDelete(record, base) }, 'Delete'));

  pg.every(2000, async () => {
    try {
      const [r, st] = await Promise.all([api('GET', base, { signal: pg.signal }), api('GET', `${base}/status`, { signal: pg.signal })]);
      drawRecord(r);
      $('#switch').textContent = r.alive ? 'Switch off' : 'Switch on';
      replicaBody.replaceChildren(...(st.replicas || []).map((x) => h('tr', {},
        h('td', {}, x.name), h('td', {}, badge(x.status, x.reason)), h('td', {}, x.restarts), h('td', { class: 'wrap' }, x.reason || ''))));
      if (!st.replicas || !st.replicas.length) replicaBody.replaceChildren(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No replica runs.')));
    } catch (e) {
      if (e.status === 404) { pg.stop(); main.replaceChildren(h('h1', {}, 'Lambda not found'), h('p', {}, h('a', { href: '/', 'data-nav': true }, 'All lambdas'))); }
      else if (e.name !== 'AbortError' && e.status !== 401) notice(e.message);
    }
  });
  pg.every(2000, async () => {
    if (!follow.checked && runLog.textContent) return;
    try {
      const logs = (await api('GET', `${base}/logs?tail=200`, { signal: pg.signal })).logs || {};
      const text = Object.entries(logs).map(([name, t]) => `── ${name}\n${t}`).join('\n') || '(no output yet)';
      if (runLog.textContent !== text) { runLog.textContent = text; runLog.scrollTop = runLog.scrollHeight; }
    } catch (e) { /* shown by the record's poll */ }
  });
  pg.every(10000, async () => {
    try { drawTraffic(chart, await api('GET', `${base}/traffic`, { signal: pg.signal })); } catch (e) { /* idem */ }
  });
  api('GET', base).then((r) => { if (r.has_docs) showDocs(docs, base); }).catch(() => {});
}

/** Streams a text answer into `pre` as it arrives (the build log follows the build). */
async function streamText(url, pre, signal) {
  try {
    const r = await fetch(url, { headers: authHeaders(), signal });
    if (!r.ok) { pre.textContent = `(no build log: HTTP ${r.status})`; return; }
    pre.textContent = '';
    const reader = r.body.getReader();
    const text = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent += text.decode(value, { stream: true });
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
  } catch (e) {
    if (e.name !== 'AbortError') pre.textContent += `\n(the log stream broke off: ${e.message})`;
  }
}

async function showDocs(box, base) {
  try {
    const html = await api('GET', `${base}/docs`, { headers: { Accept: 'text/html' } });
    // No scripts, no same-origin access: the docs are the lambda author's HTML.
    box.replaceChildren(h('iframe', { class: 'docs', sandbox: '', title: 'Lambda docs', srcdoc: html }));
  } catch (e) { box.replaceChildren(h('p', { class: 'muted' }, `Docs could not be read: ${e.message}`)); }
}

function confirmDelete(record, base) {
  const dialog = h('dialog', { 'aria-labelledby': 'delete-title' },
    h('h2', { id: 'delete-title' }, `Delete ${record.lambda_name}?`),
    h('p', {}, 'Its replicas stop, and its archive, image and record are removed. This cannot be undone.'),
    h('form', { method: 'dialog', class: 'row end' },
      h('button', { value: 'cancel', class: 'secondary', autofocus: true }, 'Cancel'),
      h('button', { value: 'delete', class: 'danger', id: 'confirm-delete' }, 'Delete')));
  dialog.addEventListener('close', async () => {
    dialog.remove();
    if (dialog.returnValue !== 'delete') return;
    // The page's polls stop first: one sent while the delete is answered would get a 404.
    page.stop();
    try { await api('DELETE', base); navigate('/'); notice(`${record.lambda_name} was deleted.`, 'info'); } catch (e) { render(); notice(e.message); }
  });
  document.body.append(dialog);
  dialog.showModal();
}

/** Requests per second, and latency p50/p99, over the window, as two small line charts. */
function drawTraffic(box, t) {
  const pts = t.points;
  const total = pts.reduce((n, p) => n + p.requests, 0);
  const rps = chartSvg(pts, [{ key: 'rps', color: '#2457c5' }], 'req/s');
  const lat = chartSvg(pts, [{ key: 'p50_ms', color: '#1a7f37' }, { key: 'p99_ms', color: '#c62828' }], 'ms');
  const legend = (items) => h('div', { class: 'legend' }, items.map(([c, l]) => h('span', {}, h('i', { style: `background:${c}` }), l)));
  box.replaceChildren(
    h('p', { class: 'muted' }, `${total} request${total === 1 ? '' : 's'} in 15 minutes, in ${t.slot_secs}-second steps.`),
    rps, legend([['#2457c5', 'requests per second']]), lat, legend([['#1a7f37', 'latency p50'], ['#c62828', 'latency p99']]));
}

function chartSvg(pts, lines, unit) {
  const NS = 'http://www.w3.org/2000/svg';
  const W = 420, H = 140, L = 48, B = 18;
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  const max = Math.max(1e-9, ...lines.flatMap((l) => pts.map((p) => p[l.key] || 0)));
  svg.setAttribute('aria-label', `${lines.map((l) => l.key).join(', ')}: at most ${max.toFixed(2)} ${unit}`);
  const x = (i) => L + (i * (W - L - 6)) / Math.max(1, pts.length - 1);
  const y = (v) => H - B - (v / max) * (H - B - 10);
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text) e.textContent = text;
    svg.append(e);
  };
  el('line', { x1: L, y1: H - B, x2: W, y2: H - B, stroke: '#d9dee4' });
  el('text', { x: 4, y: 16, 'font-size': 11, fill: '#5b6570' }, `${max < 10 ? max.toFixed(2) : Math.round(max)} ${unit}`);
  el('text', { x: 4, y: H - B, 'font-size': 11, fill: '#5b6570' }, '0');
  el('text', { x: L, y: H - 4, 'font-size': 11, fill: '#5b6570' }, '−15 min');
  el('text', { x: W - 30, y: H - 4, 'font-size': 11, fill: '#5b6570' }, 'now');
  for (const l of lines) {
    const d = pts.map((p, i) => (p[l.key] === null || p[l.key] === undefined ? null : `${x(i).toFixed(1)},${y(p[l.key]).toFixed(1)}`))
      .filter(Boolean).join(' ');
    if (d) el('polyline', { points: d, fill: 'none', stroke: l.color, 'stroke-width': 2 });
  }
  return svg;
}

/** Marks a JSON text field valid or not (with the parser's own words, which name the place). */
function checkJson(field, out, button, emptyOk) {
  const text = field.value.trim();
  let ok = true;
  try { if (text || !emptyOk) JSON.parse(text); out.textContent = text ? 'Valid JSON.' : 'Empty: no config.'; } catch (e) {
    ok = false;
    out.textContent = `Not valid JSON: ${e.message}`;
  }
  out.className = ok ? 'field-ok' : 'field-error';
  field.setAttribute('aria-invalid', String(!ok));
  if (button) button.disabled = !ok;
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Create

function createPage(main) {
  let archive = null; // a File or Blob named *.zip
  const picked = h('p', { class: 'muted', id: 'picked', 'aria-live': 'polite' }, 'No archive yet.');
  const zipInput = h('input', { type: 'file', id: 'archive-file', accept: '.zip,application/zip', hidden: true });
  const dirInput = h('input', { type: 'file', id: 'archive-folder', webkitdirectory: true, multiple: true, hidden: true });
  const setArchive = (blob, label) => { archive = blob; picked.textContent = label; };
  const drop = h('div', { class: 'drop', id: 'drop' },
    h('p', {}, 'Drop a .zip or a lambda folder here'),
    h('div', { class: 'row', style: 'justify-content:center' },
      h('label', { class: 'button secondary', for: 'archive-file', tabindex: 0 }, 'Pick a .zip…'),
      h('label', { class: 'button secondary', for: 'archive-folder', tabindex: 0 }, 'Pick a folder…')), picked);
  for (const label of drop.querySelectorAll('label.button')) {
    label.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); label.click(); } });
  }
  zipInput.addEventListener('change', () => { const f = zipInput.files[0]; if (f) setArchive(f, `${f.name} (${f.size} bytes)`); });
  dirInput.addEventListener('change', async () => {
    const files = [...dirInput.files].map((f) => ({ path: f.webkitRelativePath.split('/').slice(1).join('/'), file: f }));
    const zip = await zipFiles(files);
    setArchive(zip, `${files.length} files from a folder, zipped here (${zip.size} bytes)`);
  });
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    const entry = ev.dataTransfer.items && ev.dataTransfer.items[0] && ev.dataTransfer.items[0].webkitGetAsEntry && ev.dataTransfer.items[0].webkitGetAsEntry();
    if (entry && entry.isDirectory) {
      const files = await readTree(entry, '');
      const zip = await zipFiles(files);
      setArchive(zip, `${files.length} files from ${entry.name}, zipped here (${zip.size} bytes)`);
    } else if (ev.dataTransfer.files[0]) {
      const f = ev.dataTransfer.files[0];
      setArchive(f, `${f.name} (${f.size} bytes)`);
    }
  });

  const name = h('input', { type: 'text', id: 'name', required: true, maxlength: 63, autocomplete: 'off', 'aria-describedby': 'name-check' });
  const nameCheck = h('p', { class: 'field-error', id: 'name-check', 'aria-live': 'polite' });
  const type = h('select', { id: 'type' }, ['standalone', 'handlers', 'tasks'].map((t) => h('option', { value: t }, t)));
  const description = h('input', { type: 'text', id: 'description' });
  const pods = h('input', { type: 'number', id: 'pod-count', min: 1, value: 1 });
  const account = h('input', { type: 'text', id: 'account', class: 'code', value: defaultAccount(), autocomplete: 'off', 'aria-describedby': 'account-help' });
  const config = h('textarea', { id: 'create-config', class: 'code', spellcheck: 'false', 'aria-describedby': 'create-config-check' });
  const configCheck = h('p', { class: 'field-ok', id: 'create-config-check' });
  const extra = h('textarea', { id: 'extra-parameters', class: 'code', spellcheck: 'false', placeholder: '{"env": {"KEY": "value"}, "user_docker_commands": []}', 'aria-describedby': 'extra-check' });
  const extraCheck = h('p', { class: 'field-ok', id: 'extra-check' });
  const submit = h('button', { type: 'submit', id: 'submit' }, 'Validate and create');
  const result = h('div', { id: 'result' });

  name.addEventListener('input', () => {
    const v = name.value;
    nameCheck.textContent = !v ? '' : NAME_RULE.test(v) ? '' : 'A name is 1–63 lowercase letters, digits and "-", starts with a letter and does not end with "-".';
  });
  config.addEventListener('input', () => checkJson(config, configCheck, null, true));
  extra.addEventListener('input', () => checkJson(extra, extraCheck, null, true));

  const form = h('form', { class: 'card', novalidate: true },
    h('h2', {}, 'Archive'), drop, zipInput, dirInput,
    h('h2', { style: 'margin-top:16px' }, 'Lambda'),
    h('label', { for: 'name' }, 'Name'), name, nameCheck,
    h('label', { for: 'type' }, 'Type'), type,
    h('label', { for: 'description' }, 'Description'), description,
    h('label', { for: 'pod-count' }, 'Replicas (pod_count)'), pods,
    h('label', { for: 'account' }, 'Account id'), account,
    h('p', { class: 'muted', id: 'account-help' }, 'The account the lambda belongs to (a UUID). With an account token, leave it empty: the token says.'),
    h('label', { for: 'create-config' }, 'User config (JSON, optional)'), config, configCheck,
    h('label', { for: 'extra-parameters' }, 'More parameters (JSON, optional; merged)'), extra, extraCheck,
    h('div', { class: 'row end' }, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    result.replaceChildren();
    const problems = [];
    if (!archive) problems.push('Pick or drop an archive first.');
    if (!NAME_RULE.test(name.value)) problems.push('The name does not follow the naming rule.');
    if (!(Number(pods.value) >= 1)) problems.push('Replicas must be at least 1.');
    if (account.value.trim() && !UUID_RULE.test(account.value.trim())) problems.push('The account id must be a UUID.');
    if (!checkJson(config, configCheck, null, true) || !checkJson(extra, extraCheck, null, true)) problems.push('Fix the JSON fields.');
    if (problems.length) { result.replaceChildren(h('div', { class: 'card', role: 'alert' }, problems.map((p) => h('p', { class: 'field-error' }, p)))); return; }
    const parameters = extra.value.trim() ? JSON.parse(extra.value) : {};
    if (description.value) parameters.description = description.value;
    parameters.deploy_parameters = Object.assign({}, parameters.deploy_parameters, { pod_count: Number(pods.value) });
    if (config.value.trim()) parameters.user_config = JSON.parse(config.value);
    const body = new FormData();
    body.append('archive', archive, archive.name || 'lambda.zip');
    body.append('credentials', new Blob([JSON.stringify({ lambda_name: name.value, lambda_type: type.value })], { type: 'application/json' }));
    body.append('parameters', new Blob([JSON.stringify(parameters)], { type: 'application/json' }));
    const headers = {};
    if (account.value.trim()) { headers['Luna-Account-Id'] = account.value.trim(); localStorage.setItem(ACCOUNT_KEY, account.value.trim()); }
    submit.disabled = true;
    try {
      const r = await api('POST', '/1/lambdas', { body, headers });
      navigate(`/lambdas/${r.lambda_id}`);
      notice(`${name.value} was created; its build log follows.`, 'info');
    } catch (e) {
      result.replaceChildren(errorBlock(e));
      result.scrollIntoView({ block: 'nearest' });
    }
    submit.disabled = false;
  });
  main.append(h('h1', {}, 'Create a lambda'),
    h('p', { class: 'muted' }, 'The archive is checked before anything is stored or built: every problem is listed with its file, line and column.'),
    form, result);
}

function defaultAccount() {
  if (sessionStorage.getItem(TOKEN_KEY)) return localStorage.getItem(ACCOUNT_KEY) || '';
  let a = localStorage.getItem(ACCOUNT_KEY);
  if (!a) { a = crypto.randomUUID(); localStorage.setItem(ACCOUNT_KEY, a); }
  return a;
}

/** Every file under a dropped folder, with its path inside it. */
async function readTree(dir, prefix) {
  const entries = [];
  const reader = dir.createReader();
  for (;;) {
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batch.length) break;
    entries.push(...batch);
  }
  const out = [];
  for (const e of entries) {
    const path = prefix + e.name;
    if (e.isDirectory) out.push(...await readTree(e, `${path}/`));
    else out.push({ path, file: await new Promise((ok, fail) => e.file(ok, fail)) });
  }
  return out;
}

// A zip of files, stored (not compressed): the server validates and packs it again anyway.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function zipFiles(files) {
  const enc = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const { path, file } of files.filter((f) => f.path)) {
    const name = enc.encode(path);
    const data = new Uint8Array(await file.arrayBuffer());
    const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true); local.setUint16(4, 20, true); local.setUint16(6, 0x0800, true);
    local.setUint32(14, crc, true); local.setUint32(18, data.length, true); local.setUint32(22, data.length, true);
    local.setUint16(26, name.length, true);
    const dir = new DataView(new ArrayBuffer(46));
    dir.setUint32(0, 0x02014b50, true); dir.setUint16(4, 20, true); dir.setUint16(6, 20, true); dir.setUint16(8, 0x0800, true);
    dir.setUint32(16, crc, true); dir.setUint32(20, data.length, true); dir.setUint32(24, data.length, true);
    dir.setUint16(28, name.length, true); dir.setUint32(42, offset, true);
    parts.push(local, name, data);
    central.push(dir, name);
    offset += 30 + name.length + data.length;
  }
  const size = central.reduce((n, p) => n + p.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  const count = central.length / 2;
  end.setUint32(0, 0x06054b50, true); end.setUint16(8, count, true); end.setUint16(10, count, true);
  end.setUint32(12, size, true); end.setUint32(16, offset, true);
  const blob = new Blob([...parts, ...central, end], { type: 'application/zip' });
  blob.name = 'lambda.zip';
  return blob;
}

// ---------------------------------------------------------------------------------------------
// Invoke

function invokePage(main, pg, id) {
  const base = `/1/lambdas/${encodeURIComponent(id)}`;
  const key = RECENT_KEY + id;
  const method = h('select', { id: 'method' }, ['POST', 'GET', 'PUT', 'PATCH', 'DELETE'].map((m) => h('option', { value: m }, m)));
  const path = h('input', { type: 'text', id: 'path', value: 'main', class: 'code' });
  const headers = h('textarea', { id: 'headers', class: 'code', placeholder: 'Name: value (one per line)', spellcheck: 'false', style: 'min-height:60px' });
  const body = h('textarea', { id: 'body', class: 'code', spellcheck: 'false', value: '{}', 'aria-describedby': 'body-check' });
  const bodyCheck = h('p', { class: 'field-ok', id: 'body-check', 'aria-live': 'polite' }, 'Valid JSON.');
  const send = h('button', { type: 'submit', id: 'send' }, 'Send');
  const out = h('div', { id: 'response' });
  const recent = h('ul', { class: 'recent', id: 'recent' });
  const title = h('h1', {}, 'Invoke');

  const remembered = () => { try { return JSON.parse(localStorage.getItem(key)) || []; } catch (e) { return []; } };
  const drawRecent = () => recent.replaceChildren(...remembered().map((r) => h('li', {},
    h('button', { type: 'button', class: 'link', onclick: () => { method.value = r.method; path.value = r.path; headers.value = r.headers; body.value = r.body; checkJson(body, bodyCheck, send, true); } },
      `${r.method} /${r.path}`), ' ', h('span', { class: 'muted' }, `${r.status} · ${r.ms} ms · ${ago(r.at)}`))));
  body.addEventListener('input', () => checkJson(body, bodyCheck, send, true));
  body.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); } });

  const form = h('form', { class: 'card' },
    h('div', { class: 'row' }, h('label', { class: 'inline', for: 'method' }, 'Method'), method,
      h('label', { class: 'inline', for: 'path' }, `${base}/proxy/`), path),
    h('label', { for: 'headers' }, 'Headers'), headers,
    h('label', { for: 'body' }, 'Body (JSON; Ctrl+Enter sends)'), body, bodyCheck,
    h('div', { class: 'row end' }, send));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const hasBody = !['GET', 'DELETE'].includes(method.value) && body.value.trim() !== '';
    if (hasBody && !checkJson(body, bodyCheck, send, true)) return;
    const hdrs = authHeaders();
    for (const line of headers.value.split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) {
        try { hdrs.set(line.slice(0, i).trim(), line.slice(i + 1).trim()); } catch (e) { out.replaceChildren(errorBlock(new ApiError(0, { desc: `Header line "${line}": ${e.message}` }))); return; }
      }
    }
    if (hasBody && !hdrs.has('Content-Type')) hdrs.set('Content-Type', 'application/json');
    send.disabled = true;
    const t0 = performance.now();
    try {
      const r = await fetch(`${base}/proxy/${path.value.replace(/^\/+/, '')}`, { method: method.value, headers: hdrs, body: hasBody ? body.value : undefined, signal: pg.signal });
      const text = await r.text();
      const ms = Math.round(performance.now() - t0);
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: as it is */ }
      out.replaceChildren(h('div', { class: 'card' },
        h('div', { class: 'row' }, h('strong', { id: 'response-status' }, `${r.status} ${r.statusText}`), h('span', { class: 'muted', id: 'response-time' }, `${ms} ms`)),
        h('details', {}, h('summary', {}, 'Response headers'), h('pre', { class: 'json', id: 'response-headers' }, [...r.headers].map(([k, v]) => `${k}: ${v}`).join('\n'))),
        h('pre', { class: 'json', id: 'response-body', tabindex: 0 }, shown)));
      const list = remembered().filter((x) => !(x.method === method.value && x.path === path.value && x.body === body.value && x.headers === headers.value));
      list.unshift({ method: method.value, path: path.value, headers: headers.value, body: body.value, status: r.status, ms, at: new Date().toISOString() });
      localStorage.setItem(key, JSON.stringify(list.slice(0, 10)));
      drawRecent();
    } catch (e) {
      if (e.name !== 'AbortError') out.replaceChildren(errorBlock(new ApiError(0, { desc: e.message })));
    }
    send.disabled = false;
  });
  main.append(h('p', {}, h('a', { href: `/lambdas/${id}`, 'data-nav': true }, '← The lambda')), title,
    h('div', { class: 'grid' }, h('div', {}, form, out),
      h('section', { class: 'card', 'aria-labelledby': 'h-recent' }, h('h2', { id: 'h-recent' }, 'Recent requests'), recent)));
  drawRecent();
  api('GET', base, { signal: pg.signal }).then((r) => title.replaceChildren(`Invoke ${r.lambda_name} `, r.alive ? badge(r.status, r.reason) : badge('off'))).catch((e) => {
    if (e.name !== 'AbortError' && e.status !== 401) notice(e.message);
  });
  path.focus();
}

start();
