// DVR with the OnAir Wasm player (the server's watch page) in Debian's headless Chromium: plays
// live, seeks BACK seconds into the recorded window (player.seekBack), plays there, returns to
// live (player.goLive), and prints one JSON line: for each phase its samples of
// `player.stats()` ({t, latency, currentTime, atLive, state, server, …}), plus the page's console errors.
//
// With --hlsjs DVR_PLAYLIST_URL, hls.js then plays that DVR Multivariant Playlist in a second page,
// seeks to the start of its seekable range and reports `hlsjs`: {seekable, latencyAfterSeek,
// played, errors} (latency by hls.js's playingDate, the PROGRAM-DATE-TIME on screen).
//
// Usage: node dvr-play.mjs WATCH_URL BACK_SECONDS|@WALL_MS [--screenshot FILE] [--hlsjs URL]
// (`@WALL_MS`: seek to that wall-clock time, Unix ms, as seconds back from now at the seek.)
import { createRequire } from 'node:module';
import { launchChromium } from './chromium.mjs';

const require = createRequire(import.meta.url);

const args = process.argv.slice(2);
const [watchUrl, backArg] = args;
const at = backArg && backArg.startsWith('@') ? Number(backArg.slice(1)) : null;
const back = at === null ? Number(backArg || 15) : null;
const i = args.indexOf('--screenshot');
const screenshot = i >= 0 ? args[i + 1] : null;
const h = args.indexOf('--hlsjs');
const hlsjsUrl = h >= 0 ? args[h + 1] : null;

const browser = await launchChromium();
const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
await page.addInitScript(() => performance.setResourceTimingBufferSize(100000));
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));
await page.goto(watchUrl);
await page.waitForFunction(() => window.onairPlayer !== undefined, null, { timeout: 30000 });

const sample = () => page.evaluate(() => {
  const s = window.onairPlayer.stats();
  const v = document.querySelector('video');
  const buffered = v ? Array.from({ length: v.buffered.length }, (_, i) => [v.buffered.start(i), v.buffered.end(i)]) : [];
  return { t: Date.now(), latency: s.latency, currentTime: s.currentTime, atLive: s.atLive, state: s.state, dvrStartMs: s.dvrStartMs, lastError: s.lastError, server: s.server, buffered, readyState: v && v.readyState, gapJumps: s.gapJumps };
});
async function phase(seconds) {
  const out = [];
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    await page.waitForTimeout(250);
    out.push(await sample());
  }
  return out;
}

const report = { back };
// Live until it has played a few seconds.
await page.waitForFunction(() => window.onairPlayer.stats().state === 'playing' && window.onairPlayer.stats().currentTime > 0, null, { timeout: 30000 });
report.live = await phase(4);
const seekAt = Date.now();
report.seekBack = at === null ? back : (Date.now() - at) / 1000;
report.seekError = await page.evaluate((b) => window.onairPlayer.seekBack(b).then(() => null, (e) => String(e.message || e)), report.seekBack);
report.dvr = await phase(10);
// From the seek to the first sample playing again (state `playing`, currentTime moving).
const moving = report.dvr.findIndex((s, n) => n > 0 && s.state === 'playing' && s.currentTime > report.dvr[n - 1].currentTime);
report.seekToPlayingMs = moving > 0 ? report.dvr[moving - 1].t - seekAt : null;
if (screenshot) await page.screenshot({ path: screenshot });
report.liveError = await page.evaluate(() => window.onairPlayer.goLive().then(() => null, (e) => String(e.message || e)));
report.back_to_live = await phase(10);
report.consoleErrors = consoleErrors;
if (hlsjsUrl) {
  const p2 = await browser.newPage();
  await p2.goto(watchUrl);
  await p2.setContent('<video id="v" muted playsinline style="width:640px"></video>');
  await p2.addScriptTag({ path: require.resolve('hls.js/dist/hls.min.js') });
  report.hlsjs = await p2.evaluate(async (url) => {
    const video = document.getElementById('v');
    const errors = [];
    const hls = new Hls({ lowLatencyMode: true });
    hls.on(Hls.Events.ERROR, (_e, d) => errors.push(`${d.type}/${d.details}${d.fatal ? ' (fatal)' : ''}: ${d.reason || (d.error && d.error.message) || ''} ${d.url || ''}`));
    hls.loadSource(url);
    hls.attachMedia(video);
    video.play().catch(() => {});
    const wait = (ms) => new Promise((r) => setTimeout(r, ms));
    for (let n = 0; n < 100 && !(video.currentTime > 1); n++) await wait(100);
    const latency = () => (hls.playingDate ? (Date.now() - hls.playingDate.getTime()) / 1000 : null);
    const liveLatency = latency();
    const seekable = video.seekable.length ? [video.seekable.start(0), video.seekable.end(0)] : null;
    if (seekable) video.currentTime = seekable[0] + 1;
    await wait(1500);
    const from = video.currentTime;
    await wait(4000);
    const out = { liveLatency, seekable, latencyAfterSeek: latency(), played: video.currentTime - from, errors };
    hls.destroy();
    return out;
  }, hlsjsUrl);
}
console.log(JSON.stringify(report));
await browser.close();
