-- Token introspection (POST /introspect) of RPTs by their resource server, authenticated by its PAT.
-- Every answer is checked: 200 with "active":true, else it counts as bad.
--   TOKENS  file of RPTs, one a line (used round-robin)      AUTH  "Bearer <PAT>"
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

local tokens = common.lines(common.env("TOKENS"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = common.env("AUTH")

used, ok, bad, bad_sample = 0, 0, 0, ""

function request()
  used = used + 1
  return wrk.format(nil, nil, nil, "token=" .. tokens[(used - 1) % #tokens + 1])
end

function response(status, headers, body)
  if status == 200 and body:find('"active":true', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
    if bad_sample == "" then bad_sample = status .. " " .. body:sub(1, 200) end
  end
end
