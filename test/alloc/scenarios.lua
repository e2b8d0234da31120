-- The scenarios of the allocation-failure host (test/alloc/host.c, `make check-alloc`).
--
-- The host loads this file in a fresh Lua state for every run and calls
-- M.run(name, n, url, persistent): the scenario sets up unarmed, arms the failing allocator
-- around the one operation under test (arm(n) ... disarm(), globals the host provides), then
-- checks, unarmed, that the failure ended cleanly:
--   * a Lua error whose message says memory ran out, or nil, err with a structured err;
--     or success with the right answer (the failure was absorbed: a retry, a spare buffer);
--   * the client still works: the same operation, unarmed, succeeds;
--   * a conversation's history is exactly what it was before a failed say.
-- It returns a label for the outcome ("error: not enough memory", "nil, err: network" ...),
-- which the host counts; a failed check raises. M.start() / M.stop() run the emulator.

local M = {}

M.names = {
  "new client", "plain chat", "streamed chat", "failing request", "mid-stream error",
  "cancelled stream", "async by poll", "conversation say", "conversation say streamed",
}

function M.start()
  EMULATOR = require("spec.support.emulator_control").start()
  return EMULATOR.url
end

function M.stop()
  if EMULATOR then EMULATOR:stop() end
end

local function chat(model, content)
  return { model = model or "openai/gpt-4o-mini", messages = { { role = "user", content = content or "hi" } } }
end

-- Runs op(...) with the allocator armed; returns ok, the op's first three results, and how
-- many failures were injected. Nothing between arm and disarm allocates but op itself:
-- pcall's results land in locals, and disarm pushes two integers.
local function armed(n, persistent, op, ...)
  local ok, a, b, c = pcall(function(...)
    arm(n, persistent)
    return op(...)
  end, ...)
  local injected = disarm()
  return ok, a, b, c, injected
end

local function is_memory_error(e)
  local s = tostring(e):lower()
  return s:find("not enough memory", 1, true) or s:find("out of memory", 1, true)
end

-- The label of an operation's outcome, raising when it is not a clean one. `good(a, b, c)`
-- says whether results are the right answer; `expect_err(err)` whether a nil, err is the
-- expected failure (the scenario's own, when it is meant to fail).
local function classify(ok, a, b, good, expect_err)
  if not ok then
    if is_memory_error(a) then return "error: not enough memory" end
    local msg = type(a) == "string" and a:gsub("^[^:]*:%d+: ", "")
    -- the library's own errors are clean (curl_multi_init fails only for memory); a
    -- Lua runtime error or a misuse error on valid input is a bug the failure exposed
    if msg and msg:find("^openrouter") and not msg:find("busy") then return "error: " .. msg:sub(1, 50) end
    error("an allocation failure raised an unclean error: " .. tostring(a), 0)
  end
  if good(a, b) then return "absorbed: right answer" end
  if a == nil and type(b) == "table" and type(b.kind) == "string" and type(tostring(b)) == "string" then
    if expect_err and expect_err(b) then return "the expected nil, err (" .. b.kind .. ")" end
    if b.kind == "cancelled" then return "nil, err: cancelled" end
    if is_memory_error(b.message or "") or b.code == 27 or b.code == "out_of_memory" then
      return "nil, err: " .. b.kind .. " (out of memory)"
    end
    return "nil, err: " .. b.kind .. ": " .. tostring(b.message):gsub("[^%w%p ]", "?"):sub(1, 50)
  end
  error(("neither a result, nil, err, nor a memory error: %s, %s"):format(tostring(a), tostring(b)), 0)
end

local function text_is(expected)
  return function(res)
    local openrouter = require("openrouter")
    return type(res) == "table" and openrouter.text(res) == expected
  end
end

local function new_client(url, extra)
  local opts = { api_key = "sk-or-alloc-test", base_url = url, max_retries = 1, retry_base_delay = 0.001,
    timeout = 10 }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return require("openrouter").new(opts)
end

-- After a failure: the client answers the plain chat again.
local function assert_recovers(client)
  local res, err = client:chat_completion(chat())
  assert(text_is("Echo: hi")(res), "the client does not work after the failure: " .. tostring(err))
end

local S = {}

S["new client"] = function(n, url, persistent)
  local openrouter = require("openrouter")
  local ok, client, err, _, injected = armed(n, persistent, openrouter.new,
    { api_key = "sk-or-alloc-test", base_url = url, app_title = "alloc", headers = { ["X-A"] = "b" } })
  local label = classify(ok, client, err, function(c) return type(c) == "userdata" end)
  if ok and client then assert_recovers(client) client:close() end
  return label, injected
end

-- A blocking call's scenario: op(client) under test, good(res) for its right answer.
local function blocking(n, url, persistent, op, good, expect_err)
  local client = new_client(url)
  local ok, a, b, _, injected = armed(n, persistent, op, client)
  local label = classify(ok, a, b, good, expect_err)
  assert_recovers(client)
  client:close()
  return label, injected
end

S["plain chat"] = function(n, url, persistent)
  return blocking(n, url, persistent, function(c) return c:chat_completion(chat()) end,
    text_is("Echo: hi"))
end

S["streamed chat"] = function(n, url, persistent)
  local chunks
  return blocking(n, url, persistent, function(c)
    chunks = 0
    return c:chat_completion(chat(nil, "one two three four"), function() chunks = chunks + 1 end)
  end, text_is("Echo: one two three four"))
end

-- a 500 twice (one retry), so a nil, err with kind api is the expected failure
S["failing request"] = function(n, url, persistent)
  return blocking(n, url, persistent, function(c) return c:chat_completion(chat("emulator/fail:500:1000000000")) end,
    function() return false end, function(err) return err.kind == "api" and err.status == 500 end)
end

S["mid-stream error"] = function(n, url, persistent)
  return blocking(n, url, persistent, function(c)
    return c:chat_completion(chat("emulator/mid-stream-error"), function() end)
  end, function() return false end, function(err) return err.kind == "api" and err.partial ~= nil end)
end

S["cancelled stream"] = function(n, url, persistent)
  return blocking(n, url, persistent, function(c)
    local seen = 0
    return c:chat_completion(chat("emulator/long:40"), function()
      seen = seen + 1
      if seen == 3 then return false end
    end)
  end, function() return false end, function(err) return err.kind == "cancelled" end)
end

-- Two requests, one streamed, started and driven by poll; afterwards (unarmed) the client
-- is drained: each request that was started has had exactly one on_done, and each has its
-- right answer or a clean error.
S["async by poll"] = function(n, url, persistent)
  -- a request lost by a failure never ends: the drain below gives up 2 s after the timeout
  local client = new_client(url, { timeout = 3 })
  -- done's slots exist before the failures are armed: counting an on_done allocates
  -- nothing, so an on_done that ran is never mistaken for one that did not
  local reqs, done = { false, false }, { 0, 0 }
  local expected = { "Echo: hi", "Echo: a b c d" }
  local function start(i, params, on_chunk)
    reqs[i] = client:chat_completion_async(params, { on_chunk = on_chunk,
      on_done = function() done[i] = (done[i] or 0) + 1 end })
  end
  local ok, a, b, _, injected = armed(n, persistent, function()
    start(1, chat())
    start(2, chat(nil, "a b c d"), function() end)
    while client:poll(0.01) > 0 do end
    return true
  end)
  -- a request whose own code ran out of memory ends with that error raised by a poll, as
  -- a callback's error is: the drain may meet it once memory is back
  local deadline, later = os.time() + 5, nil
  repeat
    local pok, left = pcall(client.poll, client, 0.01)
    if not pok then
      if not is_memory_error(left) then error(left, 0) end
      later, left = "error: not enough memory (raised by a later poll)", 1
    end
    assert(os.time() < deadline, "requests still in flight 5 s after the failure (timeout 3 s)")
  until left == 0
  for i, count in ipairs(done) do
    assert(count == (reqs[i] and 1 or 0), ("request %d: on_done ran %d times"):format(i, count))
  end
  local label = not ok and classify(ok, a, b) or later
  for i, req in ipairs(reqs) do
    if not req then break end
    assert(req.done and done[i] == 1, ("request %d: done %s, on_done ran %s times"):format(i,
      tostring(req.done), tostring(done[i])))
    local l = classify(true, req.result, req.error, text_is(expected[i]))
    if not label or label:find("^absorbed") then label = l end
  end
  assert_recovers(client)
  client:close()
  return label, injected
end

local function conversation(n, url, persistent, on_delta)
  local cjson = require("cjson")
  local client = new_client(url)
  local conv = client:conversation{ model = "openai/gpt-4o-mini", system = "Be terse." }
  assert(conv:say("first"))
  local before = cjson.encode(conv.messages)
  local ok, a, b, _, injected = armed(n, persistent, conv.say, conv, "second", on_delta)
  local label = classify(ok, a, b, function(text) return text == "Echo: second" end)
  if label:find("^absorbed") then
    assert(#conv.messages == 5, "a successful say added " .. (#conv.messages - 3) .. " messages")
  else
    assert(cjson.encode(conv.messages) == before, "a failed say changed conv.messages: "
      .. cjson.encode(conv.messages))
  end
  assert(conv:say("third") == "Echo: third", "the conversation does not work after the failure")
  assert_recovers(client)
  client:close()
  return label, injected
end

S["conversation say"] = function(n, url, persistent)
  return conversation(n, url, persistent)
end

S["conversation say streamed"] = function(n, url, persistent)
  return conversation(n, url, persistent, function() end)
end

function M.run(name, n, url, persistent)
  local scenario = assert(S[name], "no scenario " .. tostring(name))
  return (scenario(n, url, persistent))
end

return M
