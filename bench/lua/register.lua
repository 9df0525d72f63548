-- Resource registration (POST /uma/resources) with the resource server's PAT: a new resource per
-- request, 3 scopes.       AUTH  "Bearer <PAT>"      TYPE  the resource type URI
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

local rtype = common.env("TYPE")
local run = common.env("RUN_ID", "r")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = common.env("AUTH")

used = 0

function request()
  used = used + 1
  return wrk.format(nil, nil, nil, '{"name":"bench ' .. run .. '-' .. used .. '","type":"' .. rtype ..
    '","resource_scopes":["read","view","download"]}')
end
