// The client of the center's change stream, GET /v1/watch (server-sent events).
//
// Read with fetch() rather than EventSource, because the stream's rules need what
// EventSource hides: the status of a failed connection (410 means "re-list"), the
// resume query (?since=REV&epoch=E, not Last-Event-ID), and a watchdog on silence
// (the center writes at least every keepalive_ms; a quiet connection past three
// intervals is dead and is replaced).
//
// Events: hello {epoch, keepalive_ms, revision}; snapshot {nodes, revision}; put
// {node, revision}; delete {node_id, reason, revision}; resync {message, revision},
// after which the center ends the stream and the client starts again without since.

const WATCH_PATH = "/v1/watch";
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5000;

/** Splits a text stream into SSE events, in linear time even for a snapshot event of
 * many megabytes on one line (parts of a line are joined once, when it ends). */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.parts = [];
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }

  push(text) {
    let start = 0;
    for (;;) {
      const nl = text.indexOf("\n", start);
      if (nl < 0) break;
      this.parts.push(text.slice(start, nl));
      const line = this.parts.length === 1 ? this.parts[0] : this.parts.join("");
      this.parts = [];
      this.line(line.endsWith("\r") ? line.slice(0, -1) : line);
      start = nl + 1;
    }
    if (start < text.length) this.parts.push(text.slice(start));
  }

  line(line) {
    if (line === "") {
      if (this.data.length > 0) {
        this.onEvent(this.event || "message", this.data.join("\n"), this.id);
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a comment: the keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id") this.id = value;
  }
}

/** Keeps one view of the center's membership up to date through the change stream,
 * reconnecting (with resume) and re-listing (after a resync) on its own. */
export class ChangeStream {
  /**
   * @param {object} handlers onSnapshot(nodes, revision), onPut(node, revision),
   *   onDelete(nodeId, reason, revision), onStatus(state, detail), onHello(hello)
   */
  constructor(handlers, base = "") {
    this.handlers = handlers;
    this.base = base;
    this.epoch = null;
    this.revision = null; // last revision applied; null until a snapshot
    this.keepaliveMs = 5000;
    this.backoff = FIRST_BACKOFF_MS;
    this.stopped = false;
    this.controller = null;
  }

  start() {
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  status(state, detail = "") {
    if (this.handlers.onStatus) this.handlers.onStatus(state, detail);
  }

  url() {
    if (this.revision === null || this.epoch === null) return this.base + WATCH_PATH;
    return `${this.base}${WATCH_PATH}?since=${this.revision}&epoch=${this.epoch}`;
  }

  async loop() {
    while (!this.stopped) {
      let relist = false;
      try {
        relist = await this.connect();
      } catch (error) {
        if (this.stopped) return;
        this.status("reconnecting", String(error && error.message ? error.message : error));
      }
      if (this.stopped) return;
      if (relist) {
        // The center cannot resume our revision: start over with a snapshot, now.
        this.revision = null;
        this.status("resyncing", "re-listing from a fresh snapshot");
        continue;
      }
      const wait = this.backoff * (0.75 + Math.random() * 0.5);
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /** One connection. Resolves true when the client must re-list (410 or resync). */
  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    this.status(this.revision === null ? "connecting" : "reconnecting", "");
    const response = await fetch(this.url(), {
      signal: controller.signal,
      cache: "no-store",
      headers: { Accept: "text/event-stream" },
    });
    if (response.status === 410) return true;
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);

    let relist = false;
    let timer = 0;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), this.keepaliveMs * 3 + 1000);
    };
    const parser = new SseParser((event, data) => {
      if (this.dispatch(event, data)) relist = true;
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        parser.push(value);
        if (relist) break;
      }
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
    if (!relist) this.status("reconnecting", "the stream ended");
    return relist;
  }

  /** Applies one event; returns true when the client must re-list. */
  dispatch(event, data) {
    let body;
    try {
      body = JSON.parse(data);
    } catch {
      return false; // not ours: ignore
    }
    switch (event) {
      case "hello":
        this.epoch = body.epoch;
        if (body.keepalive_ms > 0) this.keepaliveMs = body.keepalive_ms;
        this.backoff = FIRST_BACKOFF_MS;
        if (this.handlers.onHello) this.handlers.onHello(body);
        if (this.revision !== null) this.status("live", "");
        return false;
      case "snapshot":
        this.revision = body.revision;
        this.handlers.onSnapshot(body.nodes || {}, body.revision);
        this.status("live", "");
        return false;
      case "put":
        if (this.revision !== null && body.revision <= this.revision) return false;
        this.revision = body.revision;
        this.handlers.onPut(body.node, body.revision);
        return false;
      case "delete":
        if (this.revision !== null && body.revision <= this.revision) return false;
        this.revision = body.revision;
        this.handlers.onDelete(body.node_id, body.reason, body.revision);
        return false;
      case "resync":
        return true;
      default:
        return false;
    }
  }
}
