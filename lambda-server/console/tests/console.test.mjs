// Browser tests of the web console: a real `luna-lambda serve` on the embedded default, driven in
// Debian's headless Chromium by playwright-core (no browser is downloaded). Each test fails on any
// page error or console error except the browser's own log line for an answer the test asked
// for (a 400 for the invalid upload, a 401 for the wrong token).
//
// Environment: CONSOLE_TEST_BIN (the binary), CHROMIUM (default /usr/bin/chromium),
// CONSOLE_SHOTS (where screenshots go, default target/console-shots).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const BIN = process.env.CONSOLE_TEST_BIN || path.join(ROOT, 'target/debug/luna-lambda');
const SHOTS = path.resolve(ROOT, process.env.CONSOLE_SHOTS || 'target/console-shots');
const ADMIN = 'console-test-admin-token-0123456789abcdef0123';
const DESKTOP = { width: 1280, height: 900 };
const NARROW = { width: 390, height: 844 };
const DEADLINE_MS = 90_000;

let browser;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'console-test-'));

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  fs.rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Fixtures

function freePort() {
  return new Promise((ok) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}

/** Polls `f` until it answers something truthy; a timeout names the last answer or error. */
async function until(what, f, ms = DEADLINE_MS) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try { const v = await f(); if (v) return v; last = v; } catch (e) { last = e.message; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A server on a fresh data folder; `env` adds settings (e.g. tokens on). */
async function startServer(name, env = {}) {
  const port = await freePort();
  const data = path.join(work, name);
  const log = fs.openSync(path.join(work, `${name}.log`), 'w');
  const child = spawn(BIN, ['serve', '--data-dir', data, '--listen', `127.0.0.1:${port}`],
    { env: { ...process.env, ...env }, stdio: ['ignore', log, log] });
  const url = `http://127.0.0.1:${port}`;
  let exited = false;
  child.once('exit', () => { exited = true; });
  try {
    const up = await until('the server', async () => exited ? 'exited' : (await fetch(`${url}/healthcheck`)).ok && 'up', 60_000);
    if (up !== 'up') throw new Error('the server exited');
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${e.message}; its log:\n${fs.readFileSync(path.join(work, `${name}.log`), 'utf8')}`);
  }
  return {
    url,
    /** What the server has written to its log so far. */
    log: () => fs.readFileSync(path.join(work, `${name}.log`), 'utf8'),
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** A lambda folder (files by path) packed into a zip with the CLI. */
function pack(name, files) {
  const dir = path.join(work, name);
  for (const [p, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
    fs.writeFileSync(path.join(dir, p), text);
  }
  const zip = path.join(work, `${name}.zip`);
  execFileSync(BIN, ['pack', dir, '-o', zip]);
  return { dir, zip };
}

const GOOD_MAIN = `from luna_lambda_tools import StandaloneLambdaRequest


async def main(request: StandaloneLambdaRequest) -> dict:
    return {"echo": request.json, "config": request.config.userConfig}
`;

/** An archive with three problems, each with its line: a name the runtime does not provide, a
 * plain `def main`, a requirement line that is not one. */
const BROKEN = {
  'lambda_main.py': `from luna_lambda_tools import StandaloneLambdaRequest, NoSuchThing


def main(request: StandaloneLambdaRequest) -> dict:
    return {}
`,
  'requirements.txt': 'requests>=2\nthis is not a requirement !!\n',
};

const DOCS = {
  'docs/lambda.html': '<html><body><h1>Echo lambda</h1><p style="color:#555">Echoes its JSON body.</p></body></html>',
  'docs/lambda.yml': 'openapi: 3.0.0\ninfo: {title: echo, version: "1.0"}\npaths:\n  /main:\n    post:\n      responses:\n        "200": {description: the body echoed}\n',
};

/** A page that records every error; `expected` are answers the test asks for (e.g. 400). */
async function openPage(viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.expectedStatuses = new Set();
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const status = m.text().match(/^Failed to load resource: the server responded with a status of (\d+)/);
    if (status && page.expectedStatuses.has(Number(status[1]))) return;
    errors.push(`console error: ${m.text()}`);
  });
  page.errors = errors;
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** The same URL at 390 px, for the narrow screenshot (with the same session). */
async function narrowShot(page, name) {
  const size = page.viewportSize();
  await page.setViewportSize(NARROW);
  await shot(page, `${name}-narrow`);
  await page.setViewportSize(size);
}

async function titleStatus(page) {
  return (await page.locator('main h1 .badge').textContent()).trim();
}

/** When the lambdas table is first drawn (a mark the page sets), ms after navigation start. */
async function drawnAt(page) {
  await page.waitForSelector('#lambdas');
  return page.evaluate(() => new Promise((ok) => {
    const look = () => {
      const m = performance.getEntriesByName('luna:lambdas-drawn')[0];
      if (m) ok(m.startTime); else setTimeout(look, 10);
    };
    look();
  }));
}

// ---------------------------------------------------------------------------------------------

test('the first load is light (and its time is reported)', async () => {
  const server = await startServer('weight');
  try {
    const firsts = [];
    for (let i = 0; i < 3; i++) {
      // A new browser context each time: nothing cached.
      const page = await openPage();
      const bytes = [];
      page.on('response', async (r) => { try { bytes.push((await r.body()).length); } catch { /* none */ } });
      await page.goto(`${server.url}/`);
      firsts.push(await drawnAt(page));
      await page.waitForLoadState('networkidle');
      const total = bytes.reduce((a, b) => a + b, 0);
      const timeline = await page.evaluate(() => {
        const n = performance.getEntriesByType('navigation')[0];
        const r = performance.getEntriesByType('resource').map((e) => `${e.name.replace(location.origin, '')} ${e.startTime.toFixed(0)}-${e.responseEnd.toFixed(0)}`);
        return `html ${n.requestStart.toFixed(0)}-${n.responseEnd.toFixed(0)}, DOM interactive ${n.domInteractive.toFixed(0)}; ${r.join(', ')}`;
      });
      await page.reload();
      const again = await drawnAt(page);
      console.log(`visit ${i + 1}: ${total} bytes in ${bytes.length} answers; table drawn at ${firsts[i].toFixed(0)} ms (reload: ${again.toFixed(0)} ms); timeline (ms): ${timeline}`);
      assert.ok(total <= 200 * 1024, `first load ${total} bytes`);
      assert.deepEqual(page.errors, []);
      await page.context().close();
    }
    const median = [...firsts].sort((a, b) => a - b)[1];
    // A time is reported, not asserted (the project's rule: no timed tests; the machine may be
    // busy); the weight is asserted.
    console.log(`first visit, median of 3: table drawn at ${median.toFixed(0)} ms (target <= 500 ms: ${median <= 500 ? 'met' : 'NOT met'})`);
  } finally {
    await server.stop();
  }
});

test('the whole life of a lambda in the console, auth off', async () => {
  const server = await startServer('open');
  const page = await openPage();
  try {
    await page.goto(`${server.url}/`);
    await until('the table', async () => /of 0 lambdas/.test(await page.textContent('main p[aria-live]')));

    // Create: three problems, each shown with its file and line.
    const broken = pack('broken', BROKEN);
    page.expectedStatuses.add(400);
    await page.getByRole('link', { name: 'Create', exact: true }).first().click();
    await page.waitForURL(`${server.url}/create`);
    await page.setInputFiles('#archive-file', broken.zip);
    await page.fill('#name', 'Bad Name');
    assert.match(await page.textContent('#name-check'), /lowercase/);
    await page.fill('#name', 'echo');
    await page.click('#submit');
    const items = page.locator('#result ul.problems li.error');
    await items.first().waitFor();
    const problems = await items.allTextContents();
    console.log(`problems shown:\n  ${problems.join('\n  ')}`);
    assert.equal(problems.length, 3, problems.join('\n'));
    for (const [file, line] of [['lambda_main.py', 1], ['lambda_main.py', 4], ['requirements.txt', 2]]) {
      assert.ok(problems.some((p) => p.startsWith(`${file}:${line}:`)), `${file}:${line} in ${problems}`);
    }
    await shot(page, 'create');
    await narrowShot(page, 'create');

    // Fixed, from a folder (zipped in the page), with docs: the build log is followed live.
    const good = pack('good', { 'lambda_main.py': GOOD_MAIN, ...DOCS });
    const follows = [];
    page.on('request', (r) => { if (r.url().includes('/image/logs?follow=1')) follows.push(r.url()); });
    await page.setInputFiles('#archive-folder', good.dir);
    await until('the folder zipped', async () => /zipped here/.test(await page.textContent('#picked')));
    await page.fill('#create-config', '{"greeting": ');
    assert.match(await page.textContent('#create-config-check'), /Not valid JSON/);
    await page.fill('#create-config', '{"greeting": "hello"}');
    await page.click('#submit');
    const outcome = await until('created', async () => {
      if (/\/lambdas\/[0-9a-f-]{36}$/.test(page.url())) return 'created';
      return page.textContent('#result');
    });
    assert.equal(outcome, 'created', `the fixed upload is taken; the server's log:\n${server.log()}`);
    const id = page.url().split('/').pop();
    await until('the build log', async () => (await page.textContent('#build-log')).trim().length > 0);
    await until('running', async () => (await titleStatus(page)) === 'running');
    assert.ok(follows.length >= 1, 'the build log was followed while the build ran');
    const log = await page.textContent('#build-log');
    assert.ok(log.length > 20, log);
    await until('a replica row', async () => (await page.locator('#replicas tbody tr td .badge').count()) >= 1);
    await page.frameLocator('iframe.docs').locator('h1', { hasText: 'Echo lambda' }).waitFor();

    // Invoke: JSON checked as typed, the answer shown with status and time, remembered.
    await page.click('text=Invoke');
    await page.waitForURL(`${server.url}/lambdas/${id}/invoke`);
    await page.fill('#body', '{"name": ');
    assert.match(await page.textContent('#body-check'), /Not valid JSON/);
    assert.ok(await page.isDisabled('#send'));
    await page.fill('#body', '{"name": "console"}');
    await page.click('#send');
    await page.waitForSelector('#response-status');
    assert.match(await page.textContent('#response-status'), /^200/);
    const answer = JSON.parse(await page.textContent('#response-body'));
    assert.deepEqual(answer, { echo: { name: 'console' }, config: { greeting: 'hello' } });
    assert.match(await page.textContent('#response-time'), /\d+ ms/);
    assert.match(await page.textContent('#recent'), /POST \/main 200/);
    await shot(page, 'invoke');
    await narrowShot(page, 'invoke');
    await page.reload();
    assert.match(await page.textContent('#recent'), /POST \/main 200/, 'recent requests survive a reload');

    // Back on the lambda: the chart counts the request; the user config is edited.
    await page.click('text=← The lambda');
    await page.waitForURL(`${server.url}/lambdas/${id}`);
    await until('the chart', async () => /^[1-9]\d* requests? in 15 minutes/.test(await page.textContent('#traffic p')));
    await page.fill('#user-config', '{"greeting": ');
    assert.ok(await page.isDisabled('#save-config'));
    await page.fill('#user-config', '{"greeting": "bonjour"}');
    await page.click('#save-config');
    await until('the new config served', async () => {
      const r = await fetch(`${server.url}/1/lambdas/${id}/proxy/main`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
      return r.ok && (await r.json()).config?.greeting === 'bonjour';
    });
    await until('running again', async () => (await titleStatus(page)) === 'running');
    await shot(page, 'lambda');
    await narrowShot(page, 'lambda');

    // Update from a new zip: version 2 builds and serves.
    const v2 = pack('v2', { 'lambda_main.py': GOOD_MAIN.replace('"echo"', '"echo2"'), ...DOCS });
    await page.setInputFiles('#update-file', v2.zip);
    await page.waitForSelector('text=Version 2 is being built.');
    await until('version 2 serving', async () => {
      const r = await fetch(`${server.url}/1/lambdas/${id}/proxy/main`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"v": 2}' });
      return r.ok && (await r.json()).echo2?.v === 2;
    });
    await until('the page shows version 2', async () => /^2$/.test((await page.textContent('dl.kv dd:nth-of-type(3)')).trim()));

    // Switch off, then on.
    await page.click('#switch');
    await until('off', async () => (await titleStatus(page)) === 'off');
    await until('no replica', async () => /No replica runs/.test(await page.textContent('#replicas')));
    await page.click('#switch');
    await until('on and running', async () => (await titleStatus(page)) === 'running');

    // The list shows it, filters it, links to it.
    await page.click('nav >> text=Lambdas');
    await page.waitForURL(`${server.url}/`);
    await page.waitForSelector(`#lambdas tr[data-id="${id}"]`);
    assert.equal(await page.textContent(`#lambdas tr[data-id="${id}"] td:nth-child(3)`), 'running');
    // Its last use, written from the proxy's counts every few seconds, is shown.
    await until('the last use', async () => / ago$/.test(await page.textContent(`#lambdas tr[data-id="${id}"] td:nth-child(7)`)));
    await page.fill('#filter', 'nothing-like-it');
    assert.equal(await page.locator('#lambdas tbody tr').count(), 0);
    await page.fill('#filter', 'ech');
    assert.equal(await page.locator('#lambdas tbody tr').count(), 1);
    await page.fill('#filter', '');
    await shot(page, 'lambdas');
    await narrowShot(page, 'lambdas');

    // Delete, with confirmation, keyboard only: Cancel first keeps it.
    await page.goto(`${server.url}/lambdas/${id}`);
    await until('loaded', async () => (await titleStatus(page)) === 'running');
    await page.focus('#delete');
    await page.keyboard.press('Enter');
    await page.waitForSelector('dialog[open]');
    await page.keyboard.press('Escape');
    assert.equal(await page.locator('dialog[open]').count(), 0);
    assert.equal((await fetch(`${server.url}/1/lambdas/${id}`)).status, 200);
    await page.click('#delete');
    await page.click('#confirm-delete');
    await page.waitForURL(`${server.url}/`);
    await until('gone', async () => (await fetch(`${server.url}/1/lambdas/${id}`)).status === 404);
    assert.deepEqual(page.errors, []);
  } finally {
    if (page.errors.length) console.log(`errors in the page:\n  ${page.errors.join('\n  ')}`);
    await page.context().close();
    await server.stop();
  }
});

test('with auth on: login, a wrong token refused, everything with the token', async () => {
  const server = await startServer('auth', {
    LUNA_LAMBDA_AUTH_MODE: 'token',
    LUNA_LAMBDA_ADMIN_TOKEN: ADMIN,
  });
  const page = await openPage();
  try {
    page.expectedStatuses.add(401); // the wrong token
    page.expectedStatuses.add(404); // the lambda the first URL names does not exist
    await page.goto(`${server.url}/lambdas/00000000-0000-4000-8000-000000000000`);
    await page.waitForSelector('#token');
    await shot(page, 'login');
    await narrowShot(page, 'login');
    await page.fill('#token', 'llt_wrong');
    await page.click('text=Log in >> nth=-1');
    await until('refused', async () => /refused/.test(await page.textContent('#token-error')));
    await page.fill('#token', ADMIN);
    await page.press('#token', 'Enter');
    // The page the URL names is drawn once logged in: here, a lambda that does not exist.
    await page.waitForSelector('text=Lambda not found');
    assert.ok(!page.url().includes(ADMIN), 'the token is never in a URL');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('luna-lambda-token')), ADMIN);

    const hello = pack('hello', { 'lambda_main.py': GOOD_MAIN });
    await page.goto(`${server.url}/create`);
    // The zip dropped on the drop zone, as a file manager drops it.
    const b64 = fs.readFileSync(hello.zip).toString('base64');
    const drop = await page.evaluateHandle((data) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'hello.zip', { type: 'application/zip' }));
      return dt;
    }, b64);
    await page.dispatchEvent('#drop', 'dragover', { dataTransfer: drop });
    await page.dispatchEvent('#drop', 'drop', { dataTransfer: drop });
    assert.match(await page.textContent('#picked'), /^hello\.zip \(\d+ bytes\)$/);
    await page.fill('#name', 'secured');
    await page.fill('#account', '6f1e3c1a-8d7b-4c2e-9a51-3b7f0d2e4c11');
    await page.click('#submit');
    await page.waitForURL(/\/lambdas\/[0-9a-f-]{36}$/);
    const id = page.url().split('/').pop();
    await until('running', async () => (await titleStatus(page)) === 'running');
    assert.equal((await fetch(`${server.url}/1/lambdas/${id}`)).status, 401, 'the API itself still needs the token');

    await page.goto(`${server.url}/lambdas/${id}/invoke`);
    await page.fill('#body', '{"n": 1}');
    await page.click('#send');
    await page.waitForSelector('#response-status');
    assert.match(await page.textContent('#response-status'), /^200/);
    assert.deepEqual(JSON.parse(await page.textContent('#response-body')).echo, { n: 1 });

    // User config and switch off/on, with the token.
    const invoke = async () => {
      const r = await fetch(`${server.url}/1/lambdas/${id}/proxy/main`, { method: 'POST', headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' }, body: '{}' });
      return r.ok ? r.json() : null;
    };
    await page.goto(`${server.url}/lambdas/${id}`);
    await until('loaded', async () => (await titleStatus(page)) === 'running');
    await page.fill('#user-config', '{"mode": "secure"}');
    await page.click('#save-config');
    await until('the new config served', async () => (await invoke())?.config?.mode === 'secure');
    await until('running again', async () => (await titleStatus(page)) === 'running');
    await page.click('#switch');
    await until('off', async () => (await titleStatus(page)) === 'off');
    await page.click('#switch');
    await until('on and running', async () => (await titleStatus(page)) === 'running');
    await page.click('#delete');
    await page.click('#confirm-delete');
    await page.waitForURL(`${server.url}/`);
    await until('gone', async () => (await fetch(`${server.url}/1/lambdas/${id}`, { headers: { Authorization: `Bearer ${ADMIN}` } })).status === 404);

    // Log out: the token leaves the tab.
    await page.click('#logout');
    await page.waitForSelector('#token');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('luna-lambda-token')), null);
    assert.deepEqual(page.errors, []);
  } finally {
    if (page.errors.length) console.log(`errors in the page:\n  ${page.errors.join('\n  ')}`);
    await page.context().close();
    await server.stop();
  }
});
