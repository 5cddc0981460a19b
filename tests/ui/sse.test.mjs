// The dashboard's server-sent-events parser (ui/stream.js, SseParser) on its own, in
// node: the same events whatever the chunking, comments (keep-alives) ignored, CRLF
// and multi-line data, and a snapshot of several megabytes split into 64 KiB chunks.
// (The browser tests drive the whole client against a real center.)

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

// ui/ has no package.json, so node would read stream.js as CommonJS: load it as a module.
const source = readFileSync(new URL("../../crates/isek-center/ui/stream.js", import.meta.url), "utf8");
const { SseParser } = await import(`data:text/javascript,${encodeURIComponent(source)}`);

function parse(chunks) {
  const events = [];
  const parser = new SseParser((event, data, id) => events.push([event, data, id]));
  for (const chunk of chunks) parser.push(chunk);
  return events;
}

const STREAM =
  'event: hello\ndata: {"epoch":7,"keepalive_ms":5000,"revision":2}\n\n' +
  ': keep-alive\n\n' +
  'event: snapshot\nid: 2\ndata: {"nodes":{},"revision":2}\n\n' +
  'event: put\nid: 3\ndata: {"node":{"node_id":"n\\u00e9"},"revision":3}\n\n' +
  ": keep-alive\n\n" +
  'event: delete\nid: 4\ndata: {"node_id":"a","reason":"expire","revision":4}\n\n';

const EXPECTED = [
  ["hello", '{"epoch":7,"keepalive_ms":5000,"revision":2}', null],
  ["snapshot", '{"nodes":{},"revision":2}', "2"],
  ["put", '{"node":{"node_id":"n\\u00e9"},"revision":3}', "3"],
  ["delete", '{"node_id":"a","reason":"expire","revision":4}', "4"],
];

test("every split of the stream gives the same events", () => {
  assert.deepEqual(parse([STREAM]), EXPECTED);
  for (let cut = 1; cut < STREAM.length; cut++) {
    assert.deepEqual(parse([STREAM.slice(0, cut), STREAM.slice(cut)]), EXPECTED, `cut at ${cut}`);
  }
  assert.deepEqual(parse([...STREAM]), EXPECTED, "one character at a time");
});

test("CRLF line ends, multi-line data, default event name, unknown fields", () => {
  const events = parse(["data: a\r\ndata: b\r\nretry: 10\r\n\r\nevent: x\ndata\n\n"]);
  assert.deepEqual(events, [
    ["message", "a\nb", null],
    ["x", "", null],
  ]);
  // An event without data is not dispatched; an unfinished one waits.
  assert.deepEqual(parse(["event: put\n\n", "data: {}\n"]), []);
});

test("a snapshot of several MB in 64 KiB chunks arrives as one event", () => {
  const nodes = {};
  for (let i = 0; i < 60_000; i++) {
    nodes[`node-${i}`] = { host: "10.0.0.1", metadata: { role: "planner", i }, node_id: `node-${i}`, port: 9000 };
  }
  const data = JSON.stringify({ nodes, revision: 60_000 });
  assert.ok(data.length > 6_000_000);
  const text = `event: snapshot\nid: 60000\ndata: ${data}\n\n`;
  const chunks = [];
  for (let i = 0; i < text.length; i += 65_536) chunks.push(text.slice(i, i + 65_536));
  const events = parse(chunks);
  assert.equal(events.length, 1);
  assert.equal(events[0][0], "snapshot");
  assert.equal(Object.keys(JSON.parse(events[0][1]).nodes).length, 60_000);
});
