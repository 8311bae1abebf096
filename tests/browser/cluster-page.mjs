// Cluster page test: /cluster lists the registry's nodes and draws each channel's replication tree.
// Saves a screenshot and prints one JSON line: {nodes: [node ids], trees: {channel: [tree lines]}, errors}.
//
// Usage: node cluster-page.mjs BASE_URL OUT_DIR MIN_NODES
import { launchChromium } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, outDir, minNodes] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(base + '/cluster');
  await page.waitForFunction((n) => document.querySelectorAll('#nodes tr').length >= n && document.querySelector('ul.tree li'), Number(minNodes), { timeout: 15000 });
  const nodes = await page.$$eval('#nodes tr', (rows) => rows.map((r) => r.firstChild.textContent));
  const trees = await page.$$eval('#trees > div', (ds) => Object.fromEntries(ds.map((d) => [d.querySelector('h2').textContent, [...d.querySelectorAll('li')].map((li) => li.firstChild.textContent)])));
  await page.screenshot({ path: join(outDir, 'cluster.png') });
  console.log(JSON.stringify({ nodes, trees, errors }));
} finally {
  await browser.close();
}
