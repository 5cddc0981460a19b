// Test support for the dashboard's browser tests: a real `isek center --in-memory` on
// an OS-chosen loopback port, Debian's chromium driven by playwright-core with a fresh
// profile, and the center's HTTP API for registering nodes.
//
// Environment (scripts/ui-tests.sh sets both): ISEK_BIN, the `isek` binary;
// ISEK_UI_ARTIFACTS, where screenshots are kept.

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const ARTIFACTS = process.env.ISEK_UI_ARTIFACTS || join(tmpdir(), "isek-ui-artifacts");

/** Starts a center (on a free port unless `extraArgs` has --listen); resolves to
 * {url, stop()} once it announced its address. */
export function startCenter(extraArgs = []) {
  const bin = process.env.ISEK_BIN;
  if (!bin) throw new Error("ISEK_BIN is not set (run scripts/ui-tests.sh)");
  const listen = extraArgs.includes("--listen") ? [] : ["--listen", "127.0.0.1:0"];
  const child = spawn(bin, ["center", "--in-memory", ...listen, ...extraArgs], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    let stdout = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`center did not start within 20 s: ${stderr}`));
    }, 20000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`center exited with ${code}: ${stderr}`));
    });
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      const found = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
      if (!found) return;
      clearTimeout(timer);
      child.removeAllListeners("exit");
      resolve({
        url: found[1],
        stop: () =>
          new Promise((done) => {
            if (child.exitCode !== null) return done();
            child.once("exit", () => done());
            child.kill("SIGTERM");
          }),
      });
    });
  });
}

/** Launches chromium headless with a fresh profile; resolves to {context, page, close,
 * problems, requests}: `problems` collects console errors, page errors and CSP
 * violations; `requests` every URL the page asked for. */
export async function openBrowser() {
  const profile = mkdtempSync(join(tmpdir(), "isek-ui-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
    timezoneId: "UTC",
    locale: "en-US",
  });
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  const requests = [];
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("request", (request) => requests.push(request.url()));
  return {
    context,
    page,
    problems,
    requests,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

async function post(url, path, body) {
  const response = await fetch(url + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${path} answered ${response.status}: ${text}`);
  return JSON.parse(text);
}

/** Registers one node through the compatibility API. */
export function register(url, node) {
  return post(url, "/isek_center/register", node);
}

/** Deregisters one node. */
export function deregister(url, nodeId) {
  return post(url, "/isek_center/deregister", { node_id: nodeId });
}

/** Runs `task(i)` for i in 0..count with at most `width` at once. */
export async function parallel(count, width, task) {
  let next = 0;
  const workers = Array.from({ length: Math.min(width, count) }, async () => {
    while (next < count) {
      const i = next++;
      await task(i);
    }
  });
  await Promise.all(workers);
}

/** The artifact directory, created. */
export function artifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}

/** Text of an element, or null when absent. */
export async function text(page, selector) {
  return page.locator(selector).first().textContent();
}
