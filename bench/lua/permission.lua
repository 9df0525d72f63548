-- The permission endpoint (POST /uma/permission) with the resource server's PAT: one ticket per
-- request for BATCH resources (round-robin over RESOURCES) with the scopes SCOPES.
--   RESOURCES  file of resource ids, one a line     SCOPES  comma-separated      BATCH  default 1
--   AUTH       "Bearer <PAT>"
-- Seeding mode (SEED_OUT set): each ticket is appended to SEED_OUT; after SEED_COUNT tickets the
-- thread stops and writes SEED_DONE, and the harness ends wrk.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

local resources = common.lines(common.env("RESOURCES"))
local batch = tonumber(common.env("BATCH", "1"))
local scopes = {}
for s in common.env("SCOPES"):gmatch("[^,]+") do scopes[#scopes + 1] = '"' .. s .. '"' end
local scopes_json = "[" .. table.concat(scopes, ",") .. "]"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = common.env("AUTH")

used, ok, bad, bad_sample = 0, 0, 0, ""
local next_resource = 0

function request()
  used = used + 1
  local items = {}
  for i = 1, batch do
    next_resource = next_resource % #resources + 1
    items[i] = '{"resource_id":"' .. resources[next_resource] .. '","resource_scopes":' .. scopes_json .. '}'
  end
  return wrk.format(nil, nil, nil, "[" .. table.concat(items, ",") .. "]")
end

local seed_out = os.getenv("SEED_OUT")
if seed_out and seed_out ~= "" then
  local want = tonumber(common.env("SEED_COUNT"))
  local out = nil
  function response(status, headers, body)
    local t = status == 201 and body:match('"ticket":"([^"]+)"')
    if t then
      if ok < want then
        out = out or assert(io.open(seed_out, "a"))
        out:write(t, "\n")
        ok = ok + 1
        if ok == want then
          out:close()
          local d = assert(io.open(common.env("SEED_DONE"), "w"))
          d:write("done\n")
          d:close()
          wrk.thread:stop()
        end
      end
    else
      bad = bad + 1
      if bad_sample == "" then bad_sample = status .. " " .. body:sub(1, 200) end
    end
  end
end
