// A measurement, not a test (node's runner skips it: no `.test.` in the name): the
// dashboard at 100,000 nodes (ISEK_UI_NODES) in headless Chromium. Prints the time to
// load the snapshot, to search, to scroll, to show a burst of 1,000 live joins, the
// DOM row count and the page's JS heap.
//
//   ISEK_BIN=target/release/isek node tests/ui/bench-100k.mjs

import { openBrowser, parallel, register, startCenter } from "./harness.mjs";

const N = Number(process.env.ISEK_UI_NODES || 100_000);
const center = await startCenter(["--lease-ttl", "3600", "--max-nodes", String(N + 10_000)]);
const browser = await openBrowser();
const { page } = browser;
const node = (i) => ({
  node_id: `node-${String(i).padStart(6, "0")}`,
  host: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`,
  port: 8000 + (i % 1000),
  metadata: { name: `Agent ${i}`, role: ["planner", "coder", "critic"][i % 3], zone: `zone-${i % 7}` },
});
try {
  let t = Date.now();
  await parallel(N, 128, (i) => register(center.url, node(i)));
  console.log(`registered ${N} nodes in ${Date.now() - t} ms`);

  t = Date.now();
  await page.goto(`${center.url}/ui/`);
  await page.waitForFunction((n) => window.isekDashboard.size === n, N, { timeout: 120_000 });
  await page.waitForFunction((n) => document.querySelector("#grid").getAttribute("aria-rowcount") === String(n), N);
  console.log(`page load to ${N} nodes shown: ${Date.now() - t} ms`);
  console.log(`DOM rows: ${await page.locator("#rows .row").count()}`);

  t = Date.now();
  await page.fill("#search", "critic zone-3");
  await page.waitForFunction(() => document.querySelector("#matches").textContent.includes("match"));
  console.log(`search "critic zone-3" over ${N}: ${Date.now() - t} ms (incl. 200 ms debounce): ${await page.textContent("#matches")}`);
  await page.fill("#search", "");
  await page.waitForFunction((n) => window.isekDashboard.shown === n, N);

  t = Date.now();
  const frames = await page.evaluate(async () => {
    const v = document.getElementById("viewport");
    const times = [];
    for (let i = 1; i <= 20; i++) {
      const start = performance.now();
      v.scrollTop = (v.scrollHeight * i) / 21;
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    return { median: times[10], max: times[19] };
  });
  console.log(`scroll jumps (2 frames each): median ${frames.median.toFixed(1)} ms, max ${frames.max.toFixed(1)} ms`);

  t = Date.now();
  await parallel(1000, 64, (i) => register(center.url, node(N + i)));
  await page.waitForFunction((n) => window.isekDashboard.size === n, N + 1000);
  console.log(`1,000 live joins at ${N} nodes shown after ${Date.now() - t} ms (includes the HTTP registrations)`);
  const heap = await page.evaluate(() => (performance.memory ? performance.memory.usedJSHeapSize : 0));
  console.log(`JS heap: ${(heap / 1048576).toFixed(0)} MiB; DOM rows: ${await page.locator("#rows .row").count()}`);
  if (browser.problems.length) console.log(`problems: ${browser.problems.join("; ")}`);
} finally {
  await browser.close();
  await center.stop();
}
