-- The openrouter contender of bench/run (lua5.4 or luajit, with LUA_CPATH on its build):
--
--   LUA bench/openrouter_bench.lua w1 BASE_URL seconds=1    sequential chat_completion: req/s
--   LUA bench/openrouter_bench.lua w2 BASE_URL streams=3    streamed reply: chunks/s to the callback
--   LUA bench/openrouter_bench.lua w3 EMU_URL batches=3 n=100  n chat_completion_async + poll:
--                                                         ms for all (single= one request's ms)
--   LUA bench/openrouter_bench.lua w4 BASE_URL seconds=1    get_models: ms per call
--   LUA bench/openrouter_bench.lua w5 EMU_URL samples=30    ms from the server's stamp to on_chunk
--   LUA bench/openrouter_bench.lua w6 BASE_URL seconds=1    embeddings (100 x 3,072 floats): ms per call
--   LUA bench/openrouter_bench.lua w7 EMU_URL drive=uv|poll wait_ms=3000   life in a host loop (luv):
--       a stream whose first chunk comes after wait_ms; drive=uv: attached with openrouter.uv;
--       drive=poll: a 15 ms luv timer calling client:poll(0). value = median ms from a chunk's
--       server stamp to on_chunk; cpu = CPU ms and cs = voluntary context switches of this
--       process from the request to its first chunk (wait = that span, ms)
--
-- Prints "RESULT value=... n=..."; exits non-zero when a reply is not what the fixtures hold.

local openrouter = require("openrouter")
local bench = require("bench.common")

local workload, base_url, opts = bench.args(arg)
local expect = bench.expect(opts)
local now = bench.now
local client = openrouter.new { api_key = bench.API_KEY, base_url = base_url }

local function params(model, stream)
  return { model = model, messages = bench.MESSAGES, stream = stream or nil }
end

local W = {}

function W.w1()
  local p, want = params(bench.MODEL), expect.chat_text
  local rate, _, n = bench.timebox(opts.seconds or 1, function()
    local res, err = client:chat_completion(p)
    if not res or openrouter.text(res) ~= want then bench.fail("w1: " .. tostring(err)) end
  end)
  bench.result { value = rate, n = n }
end

function W.w2()
  local p, count = params(bench.MODEL), 0
  local function on_chunk() count = count + 1 end
  local rates = {}
  for i = 0, opts.streams or 3 do -- 0: warm-up
    count = 0
    local t = now()
    local res, err = client:chat_completion(p, on_chunk)
    local dt = now() - t
    bench.check(res, "w2: " .. tostring(err))
    bench.check(count == expect.stream_chunks, "w2: " .. count .. " chunks, not " .. expect.stream_chunks)
    bench.check(#openrouter.text(res) == expect.stream_text_bytes, "w2: joined text of the wrong size")
    if i > 0 then rates[#rates + 1] = count / dt end
  end
  bench.result { value = bench.median(rates), n = count }
end

function W.w3()
  local p, n = params("emulator/slow:200"), opts.n or 100
  local function single()
    local t = now()
    local res, err = client:chat_completion(p)
    bench.check(res, "w3: " .. tostring(err))
    return (now() - t) * 1000
  end
  local function batch()
    local done, reqs = 0, {}
    local function on_done(res, err)
      bench.check(res, "w3: " .. tostring(err))
      done = done + 1
    end
    local t = now()
    for i = 1, n do reqs[i] = client:chat_completion_async(p, { on_done = on_done }) end
    while client:poll(1) > 0 do end
    local ms = (now() - t) * 1000
    bench.check(done == n, "w3: " .. done .. " of " .. n .. " done")
    return ms
  end
  single() -- warm-up: one connection
  local singles = { single(), single(), single() }
  batch() -- warm-up: n connections
  local totals = {}
  for i = 1, opts.batches or 3 do totals[i] = batch() end
  bench.result { value = bench.median(totals), single = bench.median(singles), n = n }
end

function W.w4()
  local _, per_call, n = bench.timebox(opts.seconds or 1, function()
    local models, err = client:get_models()
    if not models or #models ~= expect.models_count then bench.fail("w4: " .. tostring(err)) end
  end)
  bench.result { value = per_call * 1000, n = n }
end

function W.w6()
  local inputs = {}
  for i = 1, expect.embeddings_count do inputs[i] = "input " .. i end
  local p = { model = "openai/text-embedding-3-large", input = inputs }
  local _, per_call, n = bench.timebox(opts.seconds or 1, function()
    local res, err = client:embeddings(p)
    if not res or #res.data ~= expect.embeddings_count
      or #res.data[1].embedding ~= expect.embeddings_dimensions then
      bench.fail("w6: " .. tostring(err))
    end
  end)
  bench.result { value = per_call * 1000, n = n }
end

function W.w5()
  local p, latency = params("emulator/first-chunk-stamp", true), nil
  local function on_chunk(chunk)
    local t = now()
    latency = t - tonumber(chunk.choices[1].delta.content)
    return false -- cancel: the rest of the stream is not needed
  end
  local samples = {}
  for i = -1, opts.samples or 30 do -- -1, 0: warm-up
    latency = nil
    local res, err = client:chat_completion(p, on_chunk)
    bench.check(not res and err.kind == "cancelled" and latency, "w5: " .. tostring(err))
    if i > 0 then samples[#samples + 1] = latency * 1000 end
  end
  bench.result { value = bench.median(samples), n = #samples }
end

-- Voluntary context switches of this (single-threaded) process: each is a sleep that ended.
local function voluntary_switches()
  local f = io.open("/proc/self/status", "r")
  if not f then return 0 / 0 end
  local text = f:read("*a")
  f:close()
  return tonumber(text:match("voluntary_ctxt_switches:%s*(%d+)"))
end

function W.w7()
  local uv = require("luv")
  local drive, wait_ms = opts.drive or "uv", opts.wait_ms or 3000
  local ticker
  if drive == "uv" then
    require("openrouter.uv").attach(client, uv)
  else
    ticker = uv.new_timer()
    ticker:start(15, 15, function() client:poll(0) end)
  end
  local function run(model)
    local delays, result, mark, span = {}, nil, nil, nil
    client:chat_completion_async(params(model, true), {
      on_chunk = function(chunk)
        local t = now()
        local stamp = tonumber(openrouter.text(chunk) or "")
        if stamp then
          if not span then
            span = { os.clock() - mark[1], voluntary_switches() - mark[2], t - mark[3] }
          end
          delays[#delays + 1] = (t - stamp) * 1000
        end
      end,
      on_done = function(res, err)
        result = res or err
        uv.stop()
      end,
    })
    -- from here to the first chunk: the request goes out, then the "model" thinks
    mark = { os.clock(), voluntary_switches(), now() }
    uv.run()
    bench.check(type(result) == "table" and result.choices, "w7: " .. tostring(result))
    bench.check(span and #delays == 20, "w7: " .. #delays .. " stamped chunks")
    return delays, span
  end
  run("emulator/first-chunk-after:50") -- warm-up: the connection, the code paths
  local delays, span = run("emulator/first-chunk-after:" .. wait_ms)
  if ticker then ticker:close() end
  client:close()
  uv.run("nowait") -- luv reaps the closed handles (it crashes at exit on unreaped ones)
  io.write(string.format("RESULT value=%.6g cpu=%.6g cs=%d wait=%.6g n=%d\n", bench.median(delays),
    span[1] * 1000, span[2], span[3] * 1000, #delays))
  os.exit(0)
end

bench.check(W[workload], "unknown workload " .. tostring(workload))
W[workload]()
client:close()
