import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, stat, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/lib/net.js';
import { startDaemon, startTinyChatDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { enginesUnderTest } from '../helpers/engines.js';
import { tinyChatModel } from '../helpers/models.js';

// The dashboard in a real browser (Debian's chromium driven by playwright-core) against the real
// daemon and a real runner on the forged tiny model: the page goes live, its chart grows with
// samples, its buttons load, pin and unload the model, its tables show the request and the
// runner's log, it fits a phone, and it reconnects by itself after the daemon restarts.
// Screenshots (dashboard.png at 1280 px, dashboard-phone.png) go to a temporary folder, or to
// docs/ with HEADROOM_UPDATE_SCREENSHOTS=1 (so a test run leaves the tracked files alone).

const CHROMIUM = process.env.HEADROOM_TEST_CHROMIUM ?? '/usr/bin/chromium';
const DOCS =
  process.env.HEADROOM_UPDATE_SCREENSHOTS === '1'
    ? path.resolve(import.meta.dirname, '../../docs')
    : path.join(os.tmpdir(), 'headroom-dashboard-screenshots');
const MODEL = 'tiny-chat';
const missing = existsSync(CHROMIUM)
  ? undefined
  : `no browser at ${CHROMIUM} (apt-get install -y chromium, or set HEADROOM_TEST_CHROMIUM)`;

// llama-server when it is built here (the default engine), else the embedded runner.
const engine =
  enginesUnderTest().find((e) => e.unavailable === undefined && e.kind === 'llama-server') ??
  enginesUnderTest()[0]!;

if (missing && process.env.CI !== 'true') console.warn(`skipping the dashboard test: ${missing}`);

const suite = missing && process.env.CI !== 'true' ? describe.skip : describe;

suite(`the dashboard in chromium (${engine.kind})`, () => {
  let daemon: DaemonProcess;
  let port: number;
  let browser: Browser;
  let page: Page;
  let models: string;
  const config = (): Record<string, unknown> => ({
    port,
    engines: engine.engines,
    monitor: { interval: '500ms' },
    // The request below is long enough that the unload saves its conversation.
    state: { minTokens: 32 },
    // Only the tiny model (the shared cache holds other tests' models too).
    modelDirs: [models],
  });

  const samples = async (p: Page): Promise<number> =>
    Number(await p.locator('#chart').getAttribute('data-samples'));
  const status = async (): Promise<{ state: string; pinned: boolean }> =>
    (await (await fetch(`${daemon.url}/admin/models/${MODEL}`)).json()) as {
      state: string;
      pinned: boolean;
    };
  const row = (p: Page) => p.locator(`#models-body tr[data-model="${MODEL}"]`);

  beforeAll(async () => {
    if (missing) throw new Error(`the dashboard test needs a browser under CI: ${missing}`);
    port = await freePort();
    models = await mkdtemp(path.join(os.tmpdir(), 'headroom-dashboard-models-'));
    await symlink(await tinyChatModel(), path.join(models, `${MODEL}.gguf`));
    daemon = await startTinyChatDaemon(config());
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // Root in a container has no user namespaces for chromium's sandbox.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await mkdir(DOCS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await daemon?.stop();
  });

  it('goes live over the event stream and its chart grows with the samples', async () => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(daemon.url);
    await expect
      .poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 10_000 })
      .toBe('live');
    await expect.poll(() => samples(page), { timeout: 15_000 }).toBeGreaterThan(1);
    const first = await samples(page);
    await expect.poll(() => samples(page), { timeout: 15_000 }).toBeGreaterThan(first + 1);
    // uPlot drew the chart: its canvas and a legend with the budget line.
    expect(await page.locator('#chart canvas').count()).toBe(1);
    await expect
      .poll(() => page.locator('#chart .u-legend').textContent(), { timeout: 10_000 })
      .toContain('budget');
    expect(errors).toEqual([]);
  });

  it('loads the model with its Load button, shows it in the table and the chart, and pins it from the keyboard', async () => {
    await expect.poll(() => row(page).count(), { timeout: 10_000 }).toBe(1);
    await page.getByRole('button', { name: `Load ${MODEL}`, exact: true }).click();
    await expect
      .poll(() => row(page).locator('td').nth(1).textContent(), { timeout: 60_000 })
      .toBe('ready');
    expect((await status()).state).toBe('ready');
    // The runner's memory appears as a stacked series once the sampler watches it.
    await expect
      .poll(() => page.locator('#chart').getAttribute('data-models'), { timeout: 20_000 })
      .toContain(MODEL);
    // The legend shows the newest values: the model's measured memory and its prediction.
    await expect
      .poll(() => page.locator('#chart .u-legend').textContent(), { timeout: 10_000 })
      .toMatch(new RegExp(`${MODEL}[:\\s]*[\\d.]+ MiB.*${MODEL} predicted[:\\s]*[\\d.]+ MiB`));
    await expect
      .poll(() => row(page).locator('td').nth(7).textContent(), { timeout: 10_000 })
      .toMatch(/[KMG]iB/);

    const pin = page.getByRole('button', { name: `Pin ${MODEL}`, exact: true });
    await pin.focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => pin.getAttribute('aria-pressed'), { timeout: 10_000 }).toBe('true');
    expect((await status()).pinned).toBe(true);
    await expect
      .poll(() => row(page).locator('td').nth(11).textContent(), { timeout: 10_000 })
      .toBe('never');
  });

  it('shows a request in the last requests and follows the runner log', async () => {
    const client = new OpenAI({ baseURL: `${daemon.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'user', content: `hello, ${'tell me about the weather today; '.repeat(6)}` },
      ],
      max_tokens: 8,
    });
    await expect
      .poll(() => page.locator('#requests-body').textContent(), { timeout: 10_000 })
      .toContain('/v1/chat/completions');
    await page.getByLabel('Model', { exact: true }).selectOption(MODEL);
    await expect
      .poll(() => page.locator('#log-text').textContent(), { timeout: 10_000 })
      .toMatch(/\[headroom .*\] ready in \d+ ms/);
    // Zoomed to the models, so the screenshot shows the stacked band beside its prediction.
    await page.getByLabel('Scale').selectOption('models');
    await page.screenshot({ path: path.join(DOCS, 'dashboard.png'), fullPage: true });
    expect((await stat(path.join(DOCS, 'dashboard.png'))).size).toBeGreaterThan(10_000);
  });

  it('fits a phone screen without sideways scrolling of the page', async () => {
    const phone = await browser.newPage({
      viewport: { width: 390, height: 844 },
      isMobile: true,
      hasTouch: true,
      deviceScaleFactor: 2,
    });
    try {
      await phone.goto(daemon.url);
      await expect
        .poll(() => phone.locator('#conn').getAttribute('data-state'), { timeout: 10_000 })
        .toBe('live');
      await expect.poll(() => samples(phone), { timeout: 15_000 }).toBeGreaterThan(1);
      await expect
        .poll(() => phone.locator('#models-body tr').count(), { timeout: 10_000 })
        .toBeGreaterThan(0);
      const width = await phone.evaluate<number>('document.documentElement.scrollWidth');
      expect(width).toBeLessThanOrEqual(390);
      await phone.screenshot({ path: path.join(DOCS, 'dashboard-phone.png'), fullPage: true });
    } finally {
      await phone.close();
    }
  });

  it('unpins and unloads the model with its buttons', async () => {
    await page.getByRole('button', { name: `Pin ${MODEL}`, exact: true }).click();
    await expect.poll(async () => (await status()).pinned, { timeout: 10_000 }).toBe(false);
    await page.getByRole('button', { name: `Unload ${MODEL}`, exact: true }).click();
    await expect
      .poll(() => row(page).locator('td').nth(1).textContent(), { timeout: 30_000 })
      .toBe('unloaded');
    expect((await status()).state).toBe('unloaded');
    // The conversation of the request above was saved before the runner stopped.
    await expect
      .poll(() => row(page).locator('td').nth(12).textContent(), { timeout: 10_000 })
      .toMatch(/^1 · [\d.]+ [KM]iB$/);
    // The log view still follows the runner's log: the stop is written there after the fact.
    await expect
      .poll(() => page.locator('#log-text').textContent(), { timeout: 10_000 })
      .toMatch(/stopping: SIGTERM|waiting \d+ ms for it to exit/);
  });

  it('shows high pressure as a band on the chart and its alert with the recommendation', async () => {
    // Thresholds this machine is always past: "high" from the first sample (reactions off).
    const pressured = await startDaemon({
      demoModel: false,
      modelDirs: [],
      monitor: {
        interval: '500ms',
        reactions: false,
        thresholds: { availablePercent: { medium: 99.9, high: 99.8, critical: 0.1 } },
      },
    });
    const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    try {
      await p.goto(pressured.url);
      await expect
        .poll(() => p.locator('#level').getAttribute('data-level'), { timeout: 15_000 })
        .toBe('high');
      await expect
        .poll(() => p.locator('#chart').getAttribute('data-pressure-spans'), { timeout: 10_000 })
        .toBe('1');
      await expect
        .poll(() => p.locator('#alerts-list').textContent(), { timeout: 15_000 })
        .toContain('Memory pressure is high');
      expect(await p.locator('#alerts-list').textContent()).toContain(
        'headroom is unloading idle models',
      );
      await p.screenshot({ path: path.join(DOCS, 'dashboard-pressure.png') });
    } finally {
      await p.close();
      await pressured.stop();
    }
  });

  it('says the monitor is off, and still lists the models, when the daemon runs without it', async () => {
    const off = await startTinyChatDaemon({ monitor: { enabled: false } });
    const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    try {
      await p.goto(off.url);
      await expect
        .poll(() => p.locator('#conn').getAttribute('data-state'), { timeout: 10_000 })
        .toBe('off');
      await expect.poll(() => row(p).count(), { timeout: 10_000 }).toBe(1);
    } finally {
      await p.close();
      await off.stop();
    }
  });

  it('asks for the API key of a daemon that needs one, then sends it as a bearer token', async () => {
    const KEY = 'sesame-open-sesame-42';
    const keyed = await startTinyChatDaemon({ security: { apiKey: KEY } });
    const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const sent = new Set<string>();
    p.on('request', (r) => {
      const auth = r.headers()['authorization'];
      if (auth !== undefined) sent.add(auth);
    });
    try {
      // The page and its files load without the key; the data asks for it.
      await p.goto(keyed.url);
      await expect
        .poll(() => p.locator('#conn').getAttribute('data-state'), { timeout: 10_000 })
        .toBe('auth');
      const key = p.getByLabel('API key');
      await key.fill('wrong-key-wrong-key');
      await key.press('Enter');
      await expect.poll(() => p.locator('#key-form').isVisible(), { timeout: 10_000 }).toBe(true);
      await key.fill(KEY);
      await key.press('Enter');
      await expect
        .poll(() => p.locator('#conn').getAttribute('data-state'), { timeout: 10_000 })
        .toBe('live');
      await expect.poll(() => row(p).count(), { timeout: 10_000 }).toBe(1);
      expect(sent.has(`Bearer ${KEY}`)).toBe(true);
      expect(await p.evaluate<string | null>('sessionStorage.getItem("headroom.apiKey")')).toBe(
        KEY,
      );
      expect(await p.locator('#key-form').isHidden()).toBe(true);
    } finally {
      await p.close();
      await keyed.stop();
    }
  });

  it('reconnects by itself after the daemon restarts on the same port', async () => {
    await daemon.stop();
    await expect
      .poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 15_000 })
      .toBe('reconnecting');
    const before = await samples(page);
    daemon = await startTinyChatDaemon(config());
    await expect
      .poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 20_000 })
      .toBe('live');
    await expect.poll(() => samples(page), { timeout: 15_000 }).toBeGreaterThan(before + 1);
  });
});
