-- The yardstick: GET of the URL given to wrk (Tessera's /healthz), nothing else.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done
