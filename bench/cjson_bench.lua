-- The cjson ceiling of bench/run: lua-cjson decoding the fixtures' bodies from memory in a bare
-- Lua loop, no HTTP. No Lua client can decode faster than this on the same interpreter.
--
--   LUA bench/cjson_bench.lua w1 - seconds=1   decode chat.json (and read its text): decodes/s
--   LUA bench/cjson_bench.lua w2 - streams=3   decode each data event of stream.sse: chunks/s
--   LUA bench/cjson_bench.lua w4 - seconds=1   decode models.json: ms per decode
--   LUA bench/cjson_bench.lua w6 - seconds=1   decode embeddings.json: ms per decode
--
-- The fixtures are read from www= (default build/bench/www).

local cjson = require("cjson")
local bench = require("bench.common")

local workload, _, opts = bench.args(arg)
local expect = bench.expect(opts)
local www = opts.www or "build/bench/www"
local decode, now = cjson.decode, bench.now

local W = {}

function W.w1()
  local body, want = bench.read_file(www .. "/chat.json"), expect.chat_text
  local rate, _, n = bench.timebox(opts.seconds or 1, function()
    local res = decode(body)
    if res.choices[1].message.content ~= want then bench.fail("w1: wrong text") end
  end)
  bench.result { value = rate, n = n }
end

function W.w2()
  local chunks = {}
  for data in bench.read_file(www .. "/stream.sse"):gmatch("data: ([^\n]*)\n\n") do
    if data ~= "[DONE]" then chunks[#chunks + 1] = data end
  end
  bench.check(#chunks == expect.stream_chunks, "w2: " .. #chunks .. " chunks in stream.sse")
  local rates = {}
  for i = 0, opts.streams or 3 do -- 0: warm-up
    local count, t = 0, now()
    for j = 1, #chunks do
      local chunk = decode(chunks[j])
      count = count + 1
    end
    local dt = now() - t
    if i > 0 then rates[#rates + 1] = count / dt end
  end
  bench.result { value = bench.median(rates), n = #chunks }
end

function W.w4()
  local body = bench.read_file(www .. "/models.json")
  local _, per_call, n = bench.timebox(opts.seconds or 1, function()
    local res = decode(body)
    if #res.data ~= expect.models_count then bench.fail("w4: wrong model count") end
  end)
  bench.result { value = per_call * 1000, n = n }
end

function W.w6()
  local body = bench.read_file(www .. "/embeddings.json")
  local _, per_call, n = bench.timebox(opts.seconds or 1, function()
    local res = decode(body)
    if #res.data ~= expect.embeddings_count then bench.fail("w6: wrong embedding count") end
  end)
  bench.result { value = per_call * 1000, n = n }
end

bench.check(W[workload], "unknown workload " .. tostring(workload))
W[workload]()
