// The dashboard's change-stream client (ui/stream.js) in Chromium against a real
// center: after a cut it resumes with ?since=REV&epoch=E (no second snapshot, no
// change lost or repeated); a revision the center cannot resume (410) makes it
// re-list from a fresh snapshot; a center restart (new epoch) is survived the same way.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { deregister, openBrowser, register, startCenter } from "./harness.mjs";

let center;
let browser;
let page;

before(async () => {
  center = await startCenter();
  browser = await openBrowser();
  page = browser.page;
  await page.goto(`${center.url}/ui/`);
  await page.waitForSelector('#conn[data-state="live"]');
  // A second, standalone client in the page, recording what it is told.
  await page.evaluate(async () => {
    const { ChangeStream } = await import("/ui/stream.js");
    const log = [];
    const stream = new ChangeStream({
      onSnapshot: (nodes, revision) => log.push(["snapshot", Object.keys(nodes).sort().join(), revision]),
      onPut: (node, revision) => log.push(["put", node.node_id, revision]),
      onDelete: (id, reason, revision) => log.push(["delete", id, revision]),
      onStatus: (state) => log.push(["status", state]),
    });
    window.probe = { stream, log };
  });
});

after(async () => {
  if (browser) await browser.close();
  if (center) await center.stop();
});

const events = () => page.evaluate(() => window.probe.log.filter((e) => e[0] !== "status"));
const watchUrls = () => browser.requests.filter((u) => new URL(u).pathname === "/v1/watch");

test("a cut stream resumes after its last revision, without a second snapshot", async () => {
  await register(center.url, { node_id: "s-1", host: "10.0.0.1", port: 1, metadata: {} });
  await page.evaluate(() => window.probe.stream.start());
  await page.waitForFunction(() => window.probe.log.some((e) => e[0] === "snapshot"));
  await register(center.url, { node_id: "s-2", host: "10.0.0.2", port: 2, metadata: {} });
  await page.waitForFunction(() => window.probe.log.some((e) => e[1] === "s-2"));
  const { revision, epoch } = await page.evaluate(() => ({
    revision: window.probe.stream.revision,
    epoch: window.probe.stream.epoch,
  }));

  // Cut the connection, change things while it is down, and let it come back.
  const before = watchUrls().length;
  await page.evaluate(() => window.probe.stream.controller.abort());
  await register(center.url, { node_id: "s-3", host: "10.0.0.3", port: 3, metadata: {} });
  await deregister(center.url, "s-1");
  await page.waitForFunction(() => window.probe.log.some((e) => e[0] === "delete" && e[1] === "s-1"));
  const resumed = watchUrls().slice(before);
  assert.ok(
    resumed.some((u) => u.endsWith(`/v1/watch?since=${revision}&epoch=${epoch}`)),
    `no resume from ${revision}: ${resumed}`,
  );
  const seen = await events();
  assert.deepEqual(
    seen.map((e) => e.slice(0, 2)),
    [["snapshot", "s-1"], ["put", "s-2"], ["put", "s-3"], ["delete", "s-1"]],
  );
  // Revisions strictly increase: nothing repeated, nothing skipped.
  const revisions = seen.map((e) => e[2]);
  for (let i = 2; i < revisions.length; i++) assert.equal(revisions[i], revisions[i - 1] + 1);
  const states = await page.evaluate(() => window.probe.log.filter((e) => e[0] === "status").map((e) => e[1]));
  assert.ok(states.includes("reconnecting") && states.at(-1) === "live", `${states}`);
});

test("a revision the center cannot resume (410) re-lists from a fresh snapshot", async () => {
  await page.evaluate(() => {
    window.probe.log.length = 0;
    window.probe.stream.revision = 1e9; // ahead of the center: it answers 410
    window.probe.stream.controller.abort();
  });
  await page.waitForFunction(() => window.probe.log.some((e) => e[0] === "snapshot"));
  const seen = await events();
  assert.deepEqual(seen[0].slice(0, 2), ["snapshot", "s-2,s-3"]);
  const states = await page.evaluate(() => window.probe.log.filter((e) => e[0] === "status").map((e) => e[1]));
  assert.ok(states.includes("resyncing"), `${states}`);
});

test("the dashboard survives a center restart: new epoch, fresh snapshot", async () => {
  await page.evaluate(() => window.probe.stream.stop());
  await page.waitForFunction(() => window.isekDashboard.size === 2);
  const port = new URL(center.url).port;
  await center.stop();
  await page.waitForSelector('#conn[data-state="reconnecting"]');
  // The same (OS-chosen) port again, so the page's origin stays the same.
  center = await startCenter(["--listen", `127.0.0.1:${port}`]);
  await register(center.url, { node_id: "after-restart", host: "10.0.0.9", port: 9, metadata: {} });
  await page.locator('#rows .row[data-id="after-restart"]').waitFor();
  await page.waitForSelector('#conn[data-state="live"]');
  // The old center's nodes are gone: the in-memory center started empty.
  assert.equal(await page.evaluate(() => window.isekDashboard.size), 1);
  assert.equal(await page.locator("#rows .row").count(), 1);
});
