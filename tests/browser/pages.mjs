// Page test: the channel directory at `/` lists the live channel, its card opens the watch page,
// and the watch page plays with its stats overlay and chat beside the player. Saves screenshots of
// both pages and prints one JSON line: {cards, href, title, stats, overlay, chat}.
//
// Usage: node pages.mjs BASE_URL OUT_DIR
import { launchChromium } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, outDir] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(base + '/');
  await page.waitForSelector('a.card[data-channel]', { timeout: 15000 });
  const cards = await page.$$eval('a.card', (as) => as.map((a) => ({ channel: a.dataset.channel, href: a.getAttribute('href'), text: a.textContent })));
  await page.screenshot({ path: join(outDir, 'directory.png') });
  await page.click('a.card[data-channel="demo"]');
  await page.waitForURL('**/watch/demo');
  await page.waitForFunction(() => window.onairPlayer && window.onairPlayer.stats().currentTime > 0 && window.onairPlayer.stats().latency !== null, null, { timeout: 30000 });
  await page.waitForTimeout(3000);
  const stats = await page.evaluate(() => window.onairPlayer.stats());
  const overlay = await page.textContent('#stats');
  const title = await page.title();
  // Chat beside the player: joined a room, a message sent from the page comes back as text.
  await page.waitForFunction(() => document.getElementById('chat-head').textContent.includes('room'), null, { timeout: 15000 });
  await page.fill('#chat-form input[name=text]', 'hello from the watch page <b>not bold</b>');
  await page.press('#chat-form input[name=text]', 'Enter');
  await page.waitForFunction(() => document.getElementById('chat-log').textContent.includes('hello from the watch page'), null, { timeout: 10000 });
  const chat = await page.evaluate(() => ({
    head: document.getElementById('chat-head').textContent,
    lines: [...document.querySelectorAll('#chat-log li')].map((li) => li.textContent),
    markup: document.querySelectorAll('#chat-log b').length,
    beside: document.getElementById('chat').getBoundingClientRect().left >= document.getElementById('video').getBoundingClientRect().right,
  }));
  // The live viewer count beside the channel name.
  await page.waitForFunction(() => /viewer/.test(document.getElementById('viewers').textContent), null, { timeout: 15000 }).catch(() => {});
  const viewers = await page.textContent('#viewers');
  await page.screenshot({ path: join(outDir, 'watch.png') });
  console.log(JSON.stringify({ cards, href: page.url(), title, stats, overlay, chat, viewers, errors }));
} finally {
  await browser.close();
}
