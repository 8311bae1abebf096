// Plays a channel with the OnAir Wasm player (the watch page) in Debian's Firefox ESR, headless,
// driven by puppeteer-core over WebDriver BiDi, and prints one JSON line of `player.stats()` samples.
//
// Usage: node firefox-play.mjs WATCH_URL SECONDS
import puppeteer from 'puppeteer-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [watchUrl, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 10);
const profile = mkdtempSync(join(tmpdir(), 'onair-firefox-'));
const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
  headless: true,
  userDataDir: profile,
  extraPrefsFirefox: {
    'media.autoplay.default': 0,
    'media.autoplay.blocking_policy': 0,
    'app.update.enabled': false,
    'network.captive-portal-service.enabled': false,
    'browser.safebrowsing.downloads.remote.enabled': false,
    'datareporting.policy.dataSubmissionEnabled': false,
  },
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const started = Date.now();
  await page.goto(watchUrl);
  await page.waitForFunction(() => window.onairPlayer !== undefined, { timeout: 30000 });
  const samples = [];
  while (Date.now() - started < seconds * 1000) {
    await new Promise((r) => setTimeout(r, 250));
    const s = await page.evaluate(() => window.onairPlayer.stats());
    samples.push({ t: (Date.now() - started) / 1000, latency: s.latency, currentTime: s.currentTime, stalls: s.stalls, state: s.state, buffer: s.buffer });
  }
  const last = await page.evaluate(() => window.onairPlayer.stats());
  const userAgent = await page.evaluate(() => navigator.userAgent);
  console.log(JSON.stringify({ userAgent, samples, last, errors }));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
