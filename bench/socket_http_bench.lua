-- The pure-Lua contender of bench/run: lua-socket's socket.http (a new connection per request:
-- it sends "Connection: close") with lua-cjson.
--
--   lua5.4 bench/socket_http_bench.lua w1 BASE_URL seconds=1   sequential chats: req/s
--   lua5.4 bench/socket_http_bench.lua w3 EMU_URL n=100        n requests one after the other
--                                                            (no async): ms for all
--   lua5.4 bench/socket_http_bench.lua w4 BASE_URL seconds=1   GET /models: ms per call

local cjson = require("cjson")
local http = require("socket.http")
local ltn12 = require("ltn12")
local bench = require("bench.common")

local workload, base_url, opts = bench.args(arg)
local expect = bench.expect(opts)
local decode, now = cjson.decode, bench.now

local function request(path, body)
  local out = {}
  local headers = { ["Authorization"] = "Bearer " .. bench.API_KEY }
  if body then
    headers["Content-Type"] = "application/json"
    headers["Content-Length"] = tostring(#body)
  end
  local ok, status = http.request {
    url = base_url .. path, method = body and "POST" or "GET", headers = headers,
    source = body and ltn12.source.string(body) or nil, sink = ltn12.sink.table(out),
  }
  if not ok or status ~= 200 then bench.fail("request failed: " .. tostring(status)) end
  return decode(table.concat(out))
end

local W = {}

function W.w1()
  local body, want = bench.request_json(bench.MODEL), expect.chat_text
  local rate, _, n = bench.timebox(opts.seconds or 1, function()
    local res = request("/chat/completions", body)
    if res.choices[1].message.content ~= want then bench.fail("w1: wrong text") end
  end)
  bench.result { value = rate, n = n }
end

function W.w3()
  local body, n = bench.request_json("emulator/slow:200"), opts.n or 100
  local function single()
    local t = now()
    bench.check(request("/chat/completions", body).choices, "w3: bad reply")
    return (now() - t) * 1000
  end
  single()
  local singles = { single(), single(), single() }
  local t = now()
  for _ = 1, n do bench.check(request("/chat/completions", body).choices, "w3: bad reply") end
  local total = (now() - t) * 1000
  -- scale= reports a shortened run as the 100 requests it stands for (sequential: linear)
  bench.result { value = total * (opts.scale or 1), single = bench.median(singles), n = n }
end

function W.w4()
  local _, per_call, n = bench.timebox(opts.seconds or 1, function()
    local res = request("/models")
    if #res.data ~= expect.models_count then bench.fail("w4: wrong model count") end
  end)
  bench.result { value = per_call * 1000, n = n }
end

bench.check(W[workload], "unknown workload " .. tostring(workload))
W[workload]()
