-- wrk script: POST add events to /events, a distinct MAC in every event.
-- Arguments (after --): a 4-hex-digit prefix unique to this run, and the batch size
-- (1: one event object per request; N > 1: a JSON array of N events).
-- MAC = prefix .. 8 hex digits of (thread number * 2^28 + a per-thread counter).
-- done() prints one line "BENCH_JSON {...}" that bench/common.py parses.

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] or "0000"
  batch = tonumber(args[2] or "1")
  counter = (tid or 0) * 268435456
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local function event()
  counter = counter + 1
  return string.format(
    '{"action":"add","provider":"snom","mac":"%s%08x","server":1}', prefix, counter)
end

function request()
  local body
  if batch == 1 then
    body = event()
  else
    local parts = {}
    for i = 1, batch do
      parts[i] = event()
    end
    body = "[" .. table.concat(parts, ",") .. "]"
  end
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,' ..
    '"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
