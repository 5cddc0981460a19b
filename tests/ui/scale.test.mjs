// The dashboard at 10,000 nodes: the rows are virtualised (the DOM holds a bounded
// number of them however many nodes there are), scrolling reaches the last node,
// search still answers, a burst of changes arrives live, and a screenshot is kept as
// a test artifact (docs/dashboard.png is a copy of one).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { artifacts, deregister, openBrowser, parallel, register, startCenter, text } from "./harness.mjs";

const NODES = 10_000;
const MAX_DOM_ROWS = 80;

const ROLES = ["planner", "researcher", "coder", "critic", "translator", "retriever", "summarizer", "router"];
const ZONES = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1"];
const MODELS = ["gpt-4o", "claude-sonnet", "llama-3.1-70b", "qwen2.5-32b", "mistral-large"];

function node(i) {
  const role = ROLES[i % ROLES.length];
  const id = `${role}-${String(i).padStart(5, "0")}`;
  return {
    node_id: id,
    host: `10.${20 + (i % 8)}.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`,
    port: 8000 + (i % 1000),
    metadata: {
      name: `${role[0].toUpperCase()}${role.slice(1)} ${i}`,
      role,
      zone: ZONES[i % ZONES.length],
      model: MODELS[(i * 7) % MODELS.length],
      version: `0.${2 + (i % 3)}.${i % 10}`,
      description: `ISEK ${role} agent serving ${ZONES[i % ZONES.length]}`,
      skills: [{ id: role, name: `${role}-task`, description: `Handles ${role} requests` }],
      capabilities: { streaming: i % 2 === 0, pushNotifications: i % 3 === 0 },
    },
  };
}

let center;
let browser;
let page;

before(async () => {
  // A long lease: nothing expires while the test runs on a slow machine.
  center = await startCenter(["--lease-ttl", "3600"]);
  browser = await openBrowser();
  page = browser.page;
  await page.goto(`${center.url}/ui/`);
  await page.waitForSelector('#conn[data-state="live"]');
});

after(async () => {
  if (browser) await browser.close();
  if (center) await center.stop();
});

const domRows = () => page.locator("#rows .row").count();

test(`${NODES.toLocaleString("en-US")} nodes arrive live and the table stays virtualised`, async () => {
  // The first half before a reload (the page reads them from the snapshot), the rest live.
  await parallel(NODES / 2, 64, (i) => register(center.url, node(i)));
  await page.reload();
  await page.waitForSelector('#conn[data-state="live"]');
  assert.equal(await text(page, "#live-count"), (NODES / 2).toLocaleString("en-US"));
  const started = Date.now();
  await parallel(NODES / 2, 64, (i) => register(center.url, node(NODES / 2 + i)));
  await page.waitForFunction((n) => window.isekDashboard.size === n, NODES, { timeout: 60_000 });
  console.log(`# ${NODES / 2} live registrations shown after ${Date.now() - started} ms`);
  assert.equal(await text(page, "#live-count"), NODES.toLocaleString("en-US"));
  assert.equal(await page.locator("#grid").getAttribute("aria-rowcount"), String(NODES));
  const rows = await domRows();
  assert.ok(rows > 10 && rows <= MAX_DOM_ROWS, `${rows} rows in the DOM for ${NODES} nodes`);

  // Scrolling to the end shows the last node, still with a bounded DOM.
  const last = [...Array(NODES).keys()].map((i) => node(i).node_id).sort().at(-1);
  await page.locator("#viewport").evaluate((v) => {
    v.scrollTop = v.scrollHeight;
  });
  await page.locator(`#rows .row[data-id="${last}"]`).waitFor();
  assert.ok((await domRows()) <= MAX_DOM_ROWS);
  await page.locator("#viewport").evaluate((v) => {
    v.scrollTop = 0;
  });
  assert.deepEqual(browser.problems, []);
});

test("search and details stay quick at 10,000 nodes", async () => {
  const t0 = Date.now();
  await page.fill("#search", "critic eu-west-1");
  await page.waitForFunction(() => document.querySelector("#matches").textContent.includes("match"));
  console.log(`# search over ${NODES} nodes answered in ${Date.now() - t0} ms`);
  const expected = [...Array(NODES).keys()].filter((i) => i % 8 === 3 && i % 5 === 0).length;
  assert.equal(await text(page, "#matches"), `${expected.toLocaleString("en-US")} of ${NODES.toLocaleString("en-US")} nodes match`);
  await page.fill("#search", "critic-00043");
  await page.locator('#rows .row[data-id="critic-00043"]').waitFor();
  assert.equal(await domRows(), 1);
  await page.fill("#search", "");
  await page.waitForFunction((n) => window.isekDashboard.shown === n, NODES);
});

test("a burst of leaves and updates at 10,000 nodes, then a screenshot", async () => {
  // Some churn for the activity list and the rate plot.
  await parallel(150, 32, (i) => deregister(center.url, node(i * 37).node_id));
  await parallel(120, 32, (i) => {
    const n = node(i * 37 + 1); // never one of the deregistered (i * 37)
    n.port += 1;
    return register(center.url, n);
  });
  await parallel(60, 16, (i) => register(center.url, node(NODES + i)));
  const live = NODES - 150 + 60;
  await page.waitForFunction((n) => window.isekDashboard.size === n, live);
  assert.equal(await text(page, "#live-count"), live.toLocaleString("en-US"));
  assert.ok((await domRows()) <= MAX_DOM_ROWS);

  await page.locator("#viewport").evaluate((v) => {
    v.scrollTop = 0;
  });
  await page.locator('#rows .row[data-id="coder-00002"]').click();
  await page.locator("#d-lease", { hasText: "s left" }).waitFor();
  await page.waitForTimeout(1200); // one plot tick after the last change
  const file = join(artifacts(), "dashboard-10k.png");
  await page.screenshot({ path: file });
  console.log(`# screenshot: ${file}`);
  assert.deepEqual(browser.problems, []);
});
