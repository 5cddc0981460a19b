-- wrk script: POST /isek_center/renew for node ids PREFIX-0 .. PREFIX-(NODES-1), cycling.
-- Usage: wrk -t1 -c64 -d8s -s bench/renew.lua http://127.0.0.1:PORT -- NODES PREFIX
-- Prints one machine-readable line at the end:
--   ISEK_WRK requests=N errors=N rps=F p50_us=F p90_us=F p99_us=F max_us=F
-- Node ids match `isek-bench load --scenario renew --prefix PREFIX --nodes NODES`.

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("offset", thread_count * 7919)
  table.insert(threads, thread)
end

function init(args)
  nodes = tonumber(args[1]) or 10000
  prefix = args[2] or "bench"
  counter = offset or 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = '{"node_id":"' .. prefix .. '-' .. (counter % nodes) .. '"}'
  return wrk.format("POST", "/isek_center/renew", nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "ISEK_WRK requests=%d errors=%d rps=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f\n",
    summary.requests, errors, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
