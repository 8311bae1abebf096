// Plays a channel with the OnAir Wasm player (the server's own watch page) in Debian's headless
// Chromium, driven by playwright-core, and prints one JSON line of samples of `player.stats()`.
//
// Usage: node onair-play.mjs WATCH_URL SECONDS [--screenshot FILE] [--hlsjs PLAYLIST_URL]
//                             [--kill-at S --pids BASE_URL=PID,BASE_URL=PID]
//   --screenshot FILE   save a PNG of the watch page after SECONDS
//   --cycle S           force the next rendition (player.setRendition) every S seconds
//   --kill-at S --pids  failover test: S seconds in, SIGKILL the process serving the player (found by
//                       matching stats().server against the BASE_URLs), then sample every 50 ms and
//                       report the longest time currentTime stood still after the kill.
//   --hlsjs URL         also play URL with hls.js (lowLatencyMode, maxLiveSyncPlaybackRate 1.5) in a
//                       second page of the same browser at the same time, and sample its latency the
//                       same way: wall clock minus the PROGRAM-DATE-TIME of the frame on screen.
// Both reports carry `protocols`: resources fetched per protocol (Resource Timing nextHopProtocol;
// `none` for a fetch that was aborted or never reached the network), and `other`, a few of the
// resources that did not use h2.
// The OnAir page's samples are `{t, latency, buffer, currentTime, rate, server, stalls, rendition}`.
import { createRequire } from 'node:module';
import { launchChromium } from './chromium.mjs';

const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const [watchUrl, secondsArg] = args;
const seconds = Number(secondsArg || 10);
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : null; };
const screenshot = opt('--screenshot');
const hlsjsUrl = opt('--hlsjs');
const cycle = opt('--cycle') === null ? null : Number(opt('--cycle'));
const killAt = opt('--kill-at') === null ? null : Number(opt('--kill-at'));
const pids = Object.fromEntries((opt('--pids') || '').split(',').filter(Boolean).map((kv) => {
  const i = kv.lastIndexOf('=');
  return [kv.slice(0, i), Number(kv.slice(i + 1))];
}));

const browser = await launchChromium();

// How many resources the page fetched over each protocol (`h2`, `http/1.1`), by Resource Timing.
const countProtocols = (page) => page.evaluate(() => {
  const counts = {};
  const other = [];
  for (const e of performance.getEntriesByType('resource')) {
    const p = e.nextHopProtocol || 'none';
    counts[p] = (counts[p] || 0) + 1;
    if (p !== 'h2' && other.length < 5) other.push(`${e.name} (${e.initiatorType}, ${e.transferSize} B, status ${e.responseStatus})`);
  }
  return { ...counts, other };
});

async function onair() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  await page.addInitScript(() => performance.setResourceTimingBufferSize(100000));
  const consoleErrors = [];
  const consoleLog = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); else consoleLog.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const started = Date.now();
  await page.goto(watchUrl);
  try {
    await page.waitForFunction(() => window.onairPlayer !== undefined, null, { timeout: 30000 });
  } catch (e) {
    const shown = await page.evaluate(() => document.getElementById('error')?.textContent);
    return { error: `player did not attach: ${e.message}; page says: ${shown}`, consoleErrors, consoleLog: consoleLog.slice(-20) };
  }
  const attachedMs = Date.now() - started;
  const samples = [];
  const deadline = Date.now() + seconds * 1000;
  let firstFrameMs = null;
  let kill = null;
  let nextCycle = cycle === null ? Infinity : Date.now() + cycle * 1000;
  let forced = 0;
  while (Date.now() < deadline) {
    if (Date.now() >= nextCycle) {
      forced = await page.evaluate((i) => { const n = window.onairPlayer.renditions().length; window.onairPlayer.setRendition((i + 1) % n); return (i + 1) % n; }, forced);
      nextCycle += cycle * 1000;
    }
    await page.waitForTimeout(kill ? 50 : 250);
    const s = await page.evaluate(() => window.onairPlayer.stats());
    if (killAt !== null && !kill && (Date.now() - started) / 1000 >= killAt) {
      const base = Object.keys(pids).find((b) => s.server.startsWith(b));
      if (base) {
        process.kill(pids[base], 'SIGKILL');
        kill = { t: (Date.now() - started) / 1000, server: base, currentTime: s.currentTime };
      }
    }
    if (firstFrameMs === null && s.currentTime > 0 && s.state === 'playing') firstFrameMs = Date.now() - started;
    samples.push({ t: (Date.now() - started) / 1000, latency: s.latency, buffer: s.buffer, currentTime: s.currentTime,
      rate: s.playbackRate, server: s.server, stalls: s.stalls, rendition: s.rendition, target: s.targetLatency,
      failovers: s.failovers, state: s.state, lastError: s.lastError });
  }
  if (screenshot) await page.screenshot({ path: screenshot });
  const last = await page.evaluate(() => window.onairPlayer.stats());
  if (kill) {
    // The longest stretch after the kill during which the picture stood still.
    const after = samples.filter((x) => x.t >= kill.t);
    let longest = 0;
    let since = null;
    for (let i = 1; i < after.length; i++) {
      if (after[i].currentTime <= after[i - 1].currentTime + 1e-3) {
        since = since ?? after[i - 1].t;
        longest = Math.max(longest, after[i].t - since);
      } else {
        since = null;
      }
    }
    kill.frozenSeconds = longest;
    const moved = after.find((x) => !x.server.startsWith(kill.server));
    kill.switchedAfter = moved ? moved.t - kill.t : null;
    kill.playedAfter = after.length ? after[after.length - 1].currentTime - kill.currentTime : 0;
  }
  const protocols = await countProtocols(page);
  return { samples, last, attachedMs, firstFrameMs, kill, protocols, consoleErrors, consoleLog: consoleLog.slice(-20) };
}

async function hlsjs() {
  const page = await browser.newPage();
  await page.addInitScript(() => performance.setResourceTimingBufferSize(100000));
  await page.goto(new URL('/healthz', hlsjsUrl).href);
  await page.setContent('<video id="v" muted playsinline style="width:640px"></video>');
  await page.addScriptTag({ path: require.resolve('hls.js/dist/hls.min.js') });
  const report = await page.evaluate(async ({ url, seconds }) => {
    const video = document.getElementById('v');
    const hls = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 });
    hls.loadSource(url);
    hls.attachMedia(video);
    video.muted = true;
    await new Promise((resolve) => hls.on(Hls.Events.MANIFEST_PARSED, resolve));
    await video.play().catch(() => {});
    const samples = [];
    const started = performance.now();
    while (performance.now() - started < seconds * 1000) {
      await new Promise((r) => setTimeout(r, 250));
      const playing = hls.playingDate;
      samples.push({ t: (performance.now() - started) / 1000, currentTime: video.currentTime,
        latency: playing ? (Date.now() - playing.getTime()) / 1000 : null, rate: video.playbackRate });
    }
    hls.destroy();
    return { samples };
  }, { url: hlsjsUrl, seconds });
  return { ...report, protocols: await countProtocols(page) };
}

try {
  const [a, b] = await Promise.all([onair(), hlsjsUrl ? hlsjs() : Promise.resolve(null)]);
  console.log(JSON.stringify({ onair: a, hlsjs: b }));
} finally {
  await browser.close();
}
