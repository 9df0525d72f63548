-- The UMA grant (POST /token, grant_type=urn:ietf:params:oauth:grant-type:uma-ticket): one fresh,
-- single-use permission ticket per request, never reused, optionally with a pushed claim token.
--   TICKETS      file of tickets, one a line (made by the permission endpoint, seed_tickets)
--   OFFSET       tickets to skip (those earlier runs used)    COUNT  tickets this run may use
--   AUTH         the Authorization header (client_secret_basic)
--   CLAIM_TOKEN_FILE  optional: a file holding the ID token to push
--   EXPECT_ERROR optional: every answer must be 403 with this `error` (need_info, request_denied);
--                checked per response. Without it, success is a 2xx (wrk counts the others).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

local tickets = common.lines(common.env("TICKETS"), tonumber(common.env("OFFSET", "0")),
                             tonumber(common.env("COUNT", "100000000")))
local prefix = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Auma-ticket&ticket="
local suffix = ""
local claim_file = os.getenv("CLAIM_TOKEN_FILE")
if claim_file and claim_file ~= "" then
  local f = assert(io.open(claim_file, "r"))
  local token = f:read("*l")
  f:close()
  suffix = "&claim_token=" .. token ..
    "&claim_token_format=http%3A%2F%2Fopenid.net%2Fspecs%2Fopenid-connect-core-1_0.html%23IDToken"
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = common.env("AUTH")

used, exhausted, ok, bad, bad_sample = 0, 0, 0, 0, ""

function request()
  used = used + 1
  local t = tickets[used]
  if t == nil then
    -- Out of tickets: the harness sees `exhausted`, discards the run and runs it again. A ticket is
    -- never presented twice (that would be a replay, which revokes what it produced): this one was
    -- never issued, so the answer is invalid_grant and nothing changes on the server.
    exhausted = exhausted + 1
    t = "bench-out-of-tickets-" .. exhausted
  end
  return wrk.format(nil, nil, nil, prefix .. t .. suffix)
end

local expect = os.getenv("EXPECT_ERROR")
if expect and expect ~= "" then
  local needle = '"error":"' .. expect .. '"'
  function response(status, headers, body)
    if status == 403 and body:find(needle, 1, true) then
      ok = ok + 1
    else
      bad = bad + 1
      if bad_sample == "" then bad_sample = status .. " " .. body:sub(1, 200) end
    end
  end
end
