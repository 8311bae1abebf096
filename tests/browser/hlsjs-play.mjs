// Plays an LL-HLS stream with hls.js in Debian's headless Chromium (driven by playwright-core) and
// prints one JSON line: playback samples, hls.js's own latency estimate and the latency measured
// from EXT-X-PROGRAM-DATE-TIME against the wall clock.
//
// Usage: node hlsjs-play.mjs PAGE_URL PLAYLIST_URL SECONDS [switch]
// With "switch", the next level is forced every 2.5 s through hls.nextLevel (a smooth switch at the
// next fragment; hls.currentLevel would flush the buffer and stall by design).
import { createRequire } from 'node:module';
import { launchChromium } from './chromium.mjs';

const require = createRequire(import.meta.url);
const [pageUrl, playlistUrl, secondsArg, mode] = process.argv.slice(2);
const seconds = Number(secondsArg || 10);

const browser = await launchChromium();
try {
  const page = await browser.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  await page.goto(pageUrl);
  await page.setContent('<video id="v" muted playsinline style="width:640px"></video>');
  await page.addScriptTag({ path: require.resolve('hls.js/dist/hls.min.js') });
  const result = await page.evaluate(async ({ playlistUrl, seconds, switchLevels }) => {
    const video = document.getElementById('v');
    const errors = [];
    const hls = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 });
    hls.on(Hls.Events.ERROR, (_e, d) => errors.push(`${d.type}/${d.details}${d.fatal ? ' (fatal)' : ''}`));
    let stalls = 0;
    let stallsAfterStart = 0;
    video.addEventListener('waiting', () => { stalls += 1; if (video.currentTime > 0) stallsAfterStart += 1; });
    const switches = [];
    hls.on(Hls.Events.LEVEL_SWITCHED, (_e, d) => switches.push({ level: d.level, at: video.currentTime }));
    hls.loadSource(playlistUrl);
    hls.attachMedia(video);
    video.muted = true;
    const started = performance.now();
    await new Promise((resolve) => hls.on(Hls.Events.MANIFEST_PARSED, resolve));
    await video.play().catch((e) => errors.push(`play(): ${e}`));
    let firstFrameMs = null;
    const samples = [];
    const deadline = performance.now() + seconds * 1000;
    let nextSwitch = performance.now() + 2500;
    while (performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      if (switchLevels && performance.now() >= nextSwitch && hls.levels.length > 1) {
        hls.nextLevel = (Math.max(hls.currentLevel, 0) + 1) % hls.levels.length;
        nextSwitch += 2500;
      }
      if (firstFrameMs === null && video.currentTime > 0) firstFrameMs = performance.now() - started;
      const playing = hls.playingDate;
      samples.push({
        t: (performance.now() - started) / 1000,
        currentTime: video.currentTime,
        hlsLatency: hls.latency,
        pdtLatency: playing ? (Date.now() - playing.getTime()) / 1000 : null,
        rate: video.playbackRate,
        level: hls.currentLevel,
      });
    }
    const levels = hls.levels ? hls.levels.map((l) => `${l.width}x${l.height}`) : [];
    hls.destroy();
    return { samples, errors, stalls, stallsAfterStart, switches, firstFrameMs, levels };
  }, { playlistUrl, seconds, switchLevels: mode === 'switch' });
  result.consoleErrors = consoleErrors;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
