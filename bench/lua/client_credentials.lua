-- The client_credentials grant (POST /token), client_secret_basic; the same script drives Tessera
-- and the peer (oidc-provider).      AUTH  the Authorization header      SCOPE  optional
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

local scope = os.getenv("SCOPE")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = common.env("AUTH")
wrk.body = "grant_type=client_credentials" .. ((scope and scope ~= "") and ("&scope=" .. scope) or "")
