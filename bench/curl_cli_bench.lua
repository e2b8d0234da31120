-- The curl-CLI contender of bench/run: what most Neovim plugins do today, one `curl` process per
-- request spawned with io.popen (through /bin/sh), its output decoded with lua-cjson.
--
--   lua5.4 bench/curl_cli_bench.lua w1 BASE_URL seconds=1   sequential chats: req/s
--   lua5.4 bench/curl_cli_bench.lua w2 BASE_URL streams=3   curl -N, lines read as they come: chunks/s
--   lua5.4 bench/curl_cli_bench.lua w3 EMU_URL n=100        n curl processes at once: ms for all
--   lua5.4 bench/curl_cli_bench.lua w4 BASE_URL seconds=1   GET /models: ms per call
--   lua5.4 bench/curl_cli_bench.lua w5 EMU_URL samples=10   ms from the server's stamp to the line

local cjson = require("cjson")
local bench = require("bench.common")

local workload, base_url, opts = bench.args(arg)
local expect = bench.expect(opts)
local decode, now = cjson.decode, bench.now

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function post_command(model, stream)
  return "curl -s" .. (stream and "N" or "") .. " -X POST " .. q(base_url .. "/chat/completions")
    .. " -H " .. q("Authorization: Bearer " .. bench.API_KEY)
    .. " -H 'Content-Type: application/json' --data-raw " .. q(bench.request_json(model, stream))
end

local function run(command)
  local f = assert(io.popen(command, "r"))
  local out = f:read("*a")
  f:close()
  return out
end

local W = {}

function W.w1()
  local cmd, want = post_command(bench.MODEL), expect.chat_text
  local rate, _, n = bench.timebox(opts.seconds or 1, function()
    local ok, res = pcall(decode, run(cmd))
    if not ok or res.choices[1].message.content ~= want then bench.fail("w1: bad reply") end
  end)
  bench.result { value = rate, n = n }
end

function W.w2()
  local cmd, rates, count = post_command(bench.MODEL, true), {}, 0
  for i = 0, opts.streams or 3 do -- 0: warm-up
    count = 0
    local t = now()
    local f = assert(io.popen(cmd, "r"))
    for line in f:lines() do
      local data = line:match("^data: (.*)$")
      if data and data ~= "[DONE]" then
        local chunk = decode(data)
        count = count + 1
      end
    end
    f:close()
    local dt = now() - t
    bench.check(count == expect.stream_chunks, "w2: " .. count .. " chunks")
    if i > 0 then rates[#rates + 1] = count / dt end
  end
  bench.result { value = bench.median(rates), n = count }
end

function W.w3()
  local cmd, n = post_command("emulator/slow:200"), opts.n or 100
  local function single()
    local t = now()
    bench.check(decode(run(cmd)).choices, "w3: bad reply")
    return (now() - t) * 1000
  end
  local function batch()
    local t, files = now(), {}
    for i = 1, n do files[i] = assert(io.popen(cmd, "r")) end
    for i = 1, n do
      local out = files[i]:read("*a")
      files[i]:close()
      bench.check(decode(out).choices, "w3: bad reply")
    end
    return (now() - t) * 1000
  end
  single()
  local singles = { single(), single(), single() }
  local totals = {}
  for i = 1, opts.batches or 1 do totals[i] = batch() end
  bench.result { value = bench.median(totals), single = bench.median(singles), n = n }
end

function W.w4()
  local cmd = "curl -s " .. q(base_url .. "/models") .. " -H " .. q("Authorization: Bearer " .. bench.API_KEY)
  local _, per_call, n = bench.timebox(opts.seconds or 1, function()
    local res = decode(run(cmd))
    if #res.data ~= expect.models_count then bench.fail("w4: wrong model count") end
  end)
  bench.result { value = per_call * 1000, n = n }
end

function W.w5()
  -- the shell prints curl's pid first, so that the stream can be cut once the chunk is in
  local cmd = "echo $$; exec " .. post_command("emulator/first-chunk-stamp", true)
  local samples = {}
  for i = 0, opts.samples or 10 do -- 0: warm-up
    local f = assert(io.popen(cmd, "r"))
    local pid = f:read("*l")
    local latency
    for line in f:lines() do
      local data = line:match("^data: (.*)$")
      if data then
        local t = now()
        latency = t - tonumber(decode(data).choices[1].delta.content)
        break
      end
    end
    os.execute("kill " .. pid)
    f:close()
    bench.check(latency, "w5: no chunk")
    if i > 0 then samples[#samples + 1] = latency * 1000 end
  end
  bench.result { value = bench.median(samples), n = #samples }
end

bench.check(W[workload], "unknown workload " .. tostring(workload))
W[workload]()
