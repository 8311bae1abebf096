// Clip flow in Chromium: on /watch/CHANNEL the "Clip the last 30 s" button makes a clip and links
// to it; the link opens /channel/CHANNEL#clip-ID, which lists the clip and, once it is ready,
// plays it in the page's video element. Saves a screenshot and prints one JSON line:
// {link, played, duration, clips, broadcasts, errors}.
//
// Usage: node channel-page.mjs BASE_URL CHANNEL OUT_DIR
import { launchChromium } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, channel, outDir] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${base}/watch/${channel}`);
  await page.click('#clip');
  await page.waitForSelector('#clipped a', { timeout: 15000 });
  const link = await page.$eval('#clipped a', (a) => a.getAttribute('href'));
  await page.goto(base + link);
  // The clip becomes ready a segment after its end; the page refreshes every 5 s and plays it.
  await page.waitForFunction(() => { const v = document.getElementById('player'); return v && !v.hidden && v.currentTime > 2; }, null, { timeout: 40000 });
  const played = await page.$eval('#player', (v) => ({ currentTime: v.currentTime, duration: v.duration, error: v.error && v.error.message }));
  const clips = await page.$$eval('tr.clip', (rows) => rows.length);
  const broadcasts = await page.$$eval('tr.broadcast', (rows) => rows.length);
  await page.screenshot({ path: join(outDir, 'channel.png') });
  console.log(JSON.stringify({ link, played, clips, broadcasts, errors }));
} finally {
  await browser.close();
}
