// Plays a channel with the OnAir Wasm player (the watch page) in Debian's Firefox ESR, headless,
// driven by puppeteer-core over WebDriver BiDi, and prints one JSON line of `player.stats()` samples.
//
// Usage: node firefox-play.mjs WATCH_URL SECONDS [CA_PEM]
// With CA_PEM, the profile's NSS database (made with Debian's certutil) trusts that certificate
// authority for TLS servers, so the page may be an https:// URL of a test server.
import puppeteer from 'puppeteer-core';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [watchUrl, secondsArg, caPem] = process.argv.slice(2);
const seconds = Number(secondsArg || 10);
const profile = mkdtempSync(join(tmpdir(), 'onair-firefox-'));
if (caPem) {
  execFileSync('certutil', ['-N', '-d', `sql:${profile}`, '--empty-password']);
  execFileSync('certutil', ['-A', '-d', `sql:${profile}`, '-n', 'OnAir test CA', '-t', 'C,,', '-i', caPem]);
}
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
  // The protocol each playlist and media request went over (the first 250 the browser kept).
  const protocols = await page.evaluate(() => {
    const seen = {};
    for (const e of performance.getEntriesByType('resource')) {
      if (e.name.includes('/hls/')) seen[e.nextHopProtocol || 'unknown'] = (seen[e.nextHopProtocol || 'unknown'] || 0) + 1;
    }
    return seen;
  });
  console.log(JSON.stringify({ userAgent, samples, last, errors, protocols }));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
