-- make soak: N mixed requests (default 100,000, after a warm-up) against the local emulator:
-- plain, streamed, failing, cancelled, async (polled, and cancelled). Prints
-- the process RSS after a warm-up and at the end; fails when it grew by 2 MiB
-- or more, or when any request did not end the way its kind should.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")

local total = tonumber(arg[1]) or 100000
local WARMUP = math.min(2000, math.floor(total / 10))
local LIMIT_KIB = 2048

local function rss_kib()
  local f = assert(io.open("/proc/self/status", "r"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function now()
  local f = io.popen("date +%s.%N")
  local t = tonumber(f:read("*l"))
  f:close()
  return t
end

local emu = emulator.start()
local client = openrouter.new{ api_key = "sk-or-soak-0123456789", base_url = emu.url, max_retries = 0 }
local hi = { { role = "user", content = "hello soak" } }
local function chat(model) return { model = model, messages = hi } end

local counts, wrong = {}, 0
local function expect(kind, ok, detail)
  counts[kind] = (counts[kind] or 0) + 1
  if not ok then
    wrong = wrong + 1
    if wrong <= 5 then io.stderr:write(("unexpected %s: %s\n"):format(kind, tostring(detail))) end
  end
end

local ignore = function() end
local kinds = {
  function()  -- plain
    local res, err = client:chat_completion(chat("openai/gpt-4o-mini"))
    expect("plain", res and openrouter.text(res) == "Echo: hello soak", err)
    return 1
  end,
  function()  -- streamed
    local n = 0
    local res, err = client:chat_completion(chat("openai/gpt-4o-mini"), function() n = n + 1 end)
    expect("streamed", res and n > 2 and openrouter.text(res) == "Echo: hello soak", err)
    return 1
  end,
  function()  -- failing: an API error, then an HTTP error without a JSON body
    local _, err = client:chat_completion(chat("missing/model"))
    expect("failing", err and err.kind == "api" and err.status == 400, err)
    local _, err2 = client:chat_completion(chat("emulator/html-502"))
    expect("failing", err2 and err2.kind == "http", err2)
    return 2
  end,
  function()  -- cancelled by the stream callback
    local n = 0
    local _, err = client:chat_completion(chat("emulator/long:20"), function()
      n = n + 1
      if n == 3 then return false end
    end)
    expect("cancelled", err and err.kind == "cancelled" and openrouter.text(err.partial) ~= nil, err)
    return 1
  end,
  function()  -- async: three in flight, polled; one of them cancelled
    local done = 0
    local a = client:chat_completion_async(chat("openai/gpt-4o-mini"), { on_done = function() done = done + 1 end })
    local b = client:chat_completion_async(chat("openai/gpt-4o-mini"), {
      on_chunk = ignore, on_done = function() done = done + 1 end })
    local c = client:chat_completion_async(chat("emulator/stall"), { on_done = function() done = done + 1 end })
    while not (a.done and b.done) do client:poll(0.01) end
    c:cancel()
    expect("async", done == 3 and a.result and b.result and c.error and c.error.kind == "cancelled",
      a.error or b.error)
    return 3
  end,
  function()  -- the other actions
    local m, err = client:get_credits()
    expect("credits", m and m.remaining, err)
    return 1
  end,
}

-- Makes at least n requests; returns how many it made.
local turn = 0
local function run(n)
  local made = 0
  while made < n do
    turn = turn + 1
    made = made + kinds[(turn % #kinds) + 1]()
  end
  return made
end

local rss_before = rss_kib()
local warmed = run(WARMUP)
collectgarbage()
collectgarbage()
local rss_start = rss_kib()
local started = now()
local done = 0
while done < total do
  done = done + run(math.min(10000, total - done))
  io.write(("  %d requests, RSS %d KiB\n"):format(done, rss_kib()))
  io.flush()
end
collectgarbage()
collectgarbage()
local rss_end = rss_kib()
local elapsed = now() - started
client:close()
emu:stop()

local parts = {}
for k, v in pairs(counts) do parts[#parts + 1] = k .. " " .. v end
table.sort(parts)
print(("soak: %d requests after %d warm-up ones (checks: %s) in %.1f s"):format(done, warmed,
  table.concat(parts, ", "), elapsed))
print(("soak: RSS %d KiB before the warm-up, %d KiB after it, %d KiB at the end: %+d KiB"):format(
  rss_before, rss_start, rss_end, rss_end - rss_start))
if wrong > 0 then
  print(("soak: FAILED: %d calls did not end as expected"):format(wrong))
  os.exit(1)
end
if rss_end - rss_start >= LIMIT_KIB then
  print(("soak: FAILED: RSS grew by %d KiB (limit %d KiB)"):format(rss_end - rss_start, LIMIT_KIB))
  os.exit(1)
end
print("soak: OK")
