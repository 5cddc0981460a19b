// The dashboard in a real headless Chromium against a real center: nodes registered
// through the HTTP API appear without a reload, a deregistered node leaves, search,
// the node panel, and metadata shown as text, never as markup.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { deregister, openBrowser, register, startCenter, text } from "./harness.mjs";

let center;
let browser;
let page;

before(async () => {
  center = await startCenter();
  browser = await openBrowser();
  page = browser.page;
  await page.goto(`${center.url}/`);
  await page.waitForSelector('#conn[data-state="live"]');
});

after(async () => {
  if (browser) await browser.close();
  if (center) await center.stop();
});

const row = (id) => page.locator(`#rows .row[data-id="${id}"]`);

test("/ redirects to the dashboard, which loads only its own files", async () => {
  assert.equal(new URL(page.url()).pathname, "/ui/");
  assert.equal(await page.title(), "isek center");
  for (const url of browser.requests) {
    assert.ok(url.startsWith(center.url), `the page fetched ${url}, off the center`);
  }
  const asked = browser.requests.map((u) => new URL(u).pathname);
  for (const file of ["/ui/app.js", "/ui/stream.js", "/ui/table.js", "/ui/plots.js", "/ui/style.css", "/v1/watch"]) {
    assert.ok(asked.includes(file), `${file} was not loaded: ${asked}`);
  }
  assert.equal(await text(page, "#live-count"), "0");
  assert.deepEqual(browser.problems, []);
});

test("registered nodes appear without a reload, a deregistered one leaves", async () => {
  await register(center.url, { node_id: "agent-a", host: "10.0.0.1", port: 9001, metadata: { role: "planner" } });
  await register(center.url, { node_id: "agent-b", host: "10.0.0.2", port: 9002, metadata: { role: "worker" } });
  await register(center.url, { node_id: "agent-c", host: "10.0.0.3", port: 9003, metadata: {} });
  await row("agent-c").waitFor();
  assert.equal(await text(page, "#live-count"), "3");
  assert.match(await row("agent-b").textContent(), /10\.0\.0\.2:9002.*role=worker/);
  // Rows stay sorted by id, whatever the arrival order.
  assert.deepEqual(await page.locator("#rows .row").evaluateAll((rows) => rows.map((r) => r.dataset.id)), [
    "agent-a",
    "agent-b",
    "agent-c",
  ]);

  await deregister(center.url, "agent-b");
  await row("agent-b").waitFor({ state: "detached" });
  assert.equal(await text(page, "#live-count"), "2");
  await page.locator("#activity li.dereg", { hasText: "agent-b" }).waitFor();
  assert.match(await text(page, "#leaves-sub"), /1 deregistered/);

  // A re-registration updates the row in place.
  await register(center.url, { node_id: "agent-c", host: "10.0.0.33", port: 9033, metadata: { role: "critic" } });
  await page.locator('#rows .row[data-id="agent-c"]', { hasText: "10.0.0.33:9033" }).waitFor();
  assert.equal(await text(page, "#live-count"), "2");
  assert.deepEqual(browser.problems, []);
  await deregister(center.url, "agent-a");
  await deregister(center.url, "agent-c");
  await page.locator("#rows .row").first().waitFor({ state: "detached" });
});

test("search matches id, host and metadata text; every word must match", async () => {
  const nodes = [
    { node_id: "search-planner-1", host: "192.168.7.10", port: 7001, metadata: { role: "planner", zone: "eu-west" } },
    { node_id: "search-planner-2", host: "192.168.7.11", port: 7002, metadata: { role: "planner", zone: "us-east" } },
    { node_id: "search-worker-1", host: "172.16.0.5", port: 7003, metadata: { role: "worker", zone: "eu-west" } },
  ];
  for (const node of nodes) await register(center.url, node);
  await row("search-worker-1").waitFor();
  const shown = (ids) =>
    page.waitForFunction(
      (want) => [...document.querySelectorAll("#rows .row")].map((r) => r.dataset.id).join() === want,
      ids.join(),
    );

  await page.fill("#search", "planner");
  await shown(["search-planner-1", "search-planner-2"]);
  assert.equal(await text(page, "#matches"), "2 of 3 nodes match");

  await page.fill("#search", "172.16.0.5");
  await shown(["search-worker-1"]);

  await page.fill("#search", "EU-West planner");
  await shown(["search-planner-1"]);

  // A node that joins while a search is active shows only if it matches.
  await register(center.url, { node_id: "search-planner-3", host: "10.9.9.9", port: 7004, metadata: { role: "planner", zone: "eu-west" } });
  await register(center.url, { node_id: "search-other", host: "10.9.9.8", port: 7005, metadata: { role: "worker" } });
  await page.locator("#activity li", { hasText: "search-other" }).waitFor();
  await shown(["search-planner-1", "search-planner-3"]);
  assert.equal(await text(page, "#matches"), "2 of 5 nodes match");

  await page.fill("#search", "no-such-thing");
  await page.locator("#empty").waitFor({ state: "visible" });
  await page.fill("#search", "");
  await shown(["search-other", "search-planner-1", "search-planner-2", "search-planner-3", "search-worker-1"]);
  for (const id of ["search-planner-1", "search-planner-2", "search-planner-3", "search-worker-1", "search-other"]) {
    await deregister(center.url, id);
  }
  await page.locator("#rows .row").first().waitFor({ state: "detached" });
});

test("node details: address, metadata, agent card, lease time left, owner", async () => {
  const card = {
    name: "Trip Planner",
    description: "Plans multi-city trips",
    version: "1.2.0",
    url: "http://10.1.2.3:8080/a2a",
    capabilities: { streaming: true, pushNotifications: false },
    skills: [{ id: "plan", name: "plan-trip", description: "Builds an itinerary" }],
  };
  await register(center.url, { node_id: "planner-9", host: "10.1.2.3", port: 8080, metadata: card });
  await row("planner-9").click();
  await page.locator("#d-id", { hasText: "planner-9" }).waitFor();
  assert.equal(await text(page, "#d-addr"), "10.1.2.3:8080");
  assert.match(await text(page, "#d-card"), /Trip Planner.*v1\.2\.0.*Plans multi-city trips/);
  assert.match(await text(page, "#d-card"), /plan-trip — Builds an itinerary/);
  assert.match(await text(page, "#d-meta"), /descriptionPlans multi-city trips/);
  assert.match(await text(page, "#d-owner"), /not available/);
  await page.locator("#d-lease", { hasText: "s left" }).waitFor();
  const left = Number(/(\d+) s left/.exec(await text(page, "#d-lease"))[1]);
  assert.ok(left > 0 && left <= 30, `lease left ${left} s of a 30 s TTL`);
  assert.equal(await page.locator('#rows .row.selected').getAttribute("data-id"), "planner-9");

  // It leaves while open: the panel says so.
  await deregister(center.url, "planner-9");
  await page.locator("#d-gone").waitFor({ state: "visible" });
  assert.equal(await text(page, "#d-lease"), "ended");
  assert.deepEqual(browser.problems, []);
});

test("metadata and ids are shown as text, never run as markup", async () => {
  const evil = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>';
  await register(center.url, { node_id: "<b>bold", host: "10.0.0.9", port: 9009, metadata: { name: evil } });
  await row("<b>bold").waitFor();
  await row("<b>bold").click();
  await page.locator("#d-id", { hasText: "<b>bold" }).waitFor();
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  assert.equal(await page.locator("#rows img, #rows b, #details img, #d-id b").count(), 0);
  assert.match(await row("<b>bold").textContent(), /name=<img src=x/);
  await deregister(center.url, "<b>bold");
  await row("<b>bold").waitFor({ state: "detached" });
});
