-- Shared by every benchmark script: reading the harness's files, and a done() that prints one
-- machine-readable line for bench/bench.py (wrk's own summary is printed too, for people).
local M = {}

-- Lines of a file, skipping `offset` lines and keeping at most `count` (nil: all).
function M.lines(path, offset, count)
  local out, i = {}, 0
  offset = offset or 0
  local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in f:lines() do
    i = i + 1
    if i > offset and line ~= "" then
      out[#out + 1] = line
      if count and #out >= count then break end
    end
  end
  f:close()
  return out
end

function M.env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then
    if default == nil then error("environment variable " .. name .. " is required") end
    return default
  end
  return v
end

local threads = {}

function M.setup(thread)
  threads[#threads + 1] = thread
end

local function num(v) return tonumber(v) or 0 end

-- Counters a script keeps in its thread (globals): `used` (tickets or tokens taken), `ok` and `bad`
-- (responses checked by the script), `exhausted` (requests sent after the list ran out).
function M.done(summary, latency, requests)
  local used, ok, bad, exhausted, sample = 0, 0, 0, 0, ""
  for _, t in ipairs(threads) do
    used = used + num(t:get("used"))
    ok = ok + num(t:get("ok"))
    bad = bad + num(t:get("bad"))
    exhausted = exhausted + num(t:get("exhausted"))
    local s = t:get("bad_sample")
    if s and s ~= "" and sample == "" then sample = s end
  end
  local e = summary.errors
  sample = sample:gsub('[%c"\\]', " ")
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"used":%d,"checked_ok":%d,"checked_bad":%d,"exhausted":%d,"bad_sample":"%s"}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, used, ok, bad, exhausted, sample))
end

return M
