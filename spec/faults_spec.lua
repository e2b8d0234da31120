-- The fault matrix (issue 5, parts 1 and 4): every way the network and the server can fail,
-- each run blocking and async (a poll loop), streamed where it applies. Each case asserts the
-- exact error kind (status and code where they mean something), that nothing is lost (a broken
-- stream's err.partial holds exactly what the callback received), and that the same client
-- answers the next call. errors_spec and retry_spec hold the single blocking cases; this file
-- adds the async runs, the faults they lack and the fields they do not check.
--
-- Every error produced here is also searched for the API key: tostring(err) and every string
-- reachable from it (partial and metadata included).
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")
local socket = require("socket")

local KEY = "sk-or-v1-FAULTS-SECRET-7f3a9c1e5b42d08" -- distinctive: found nowhere else
local GEN_ID = "^gen%-%d+%-emu%d+$" -- the emulator's generation ids
local MODES = { "blocking", "async" }

-- What the emulator sends (spec/support/emulator.lua: BAD_UTF8, NUL_TEXT, FILL_UNIT).
local BAD_UTF8 = "bad \255\254 lone \128 cut \226\130 overlong \192\128 surrogate \237\160\128"
  .. " \195 end"
local NUL_TEXT = "nul \0 inside \0\0 twice"
local FILL_UNIT = "0123456789abcdef"
local MB = 1000 * 1000

-- The filler content of emulator/big:<n>: FILL_UNIT repeated, cut to n bytes.
local function filler(n)
  return (string.rep(FILL_UNIT, math.floor(n / 16) + 1):sub(1, n))
end

-- Every string reachable from `v`: keys and values of nested tables (metatables excluded).
local function strings_in(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do
      strings_in(k, out, seen)
      strings_in(x, out, seen)
    end
  end
  return out
end

-- Where the key occurs in err (tostring or a field), or nil.
local function key_leak(err)
  local line = tostring(err)
  if line:find(KEY, 1, true) then return "tostring(err): " .. line end
  for _, s in ipairs(strings_in(err)) do
    if s:find(KEY, 1, true) then return "a field: " .. s end
  end
  return nil
end

local produced = {} -- every error of this file, for the final secrets check

-- What every error must satisfy, whatever its kind; records it.
local function check_error(err)
  produced[#produced + 1] = err
  assert.is_true(openrouter.is_error(err), "not an error object: " .. tostring(err))
  local line = tostring(err)
  assert.matches("^openrouter ", line)
  assert.is_nil(line:find("[\r\n]"), "tostring(err) spans lines: " .. line)
  assert.are.equal("string", type(err.message))
  assert.is_true(#err.message > 0)
  local leak = key_leak(err)
  assert.is_nil(leak, "the API key leaked into " .. tostring(leak))
end

-- The call must have failed: nil, err.
local function assert_failed(res, err)
  if res ~= nil or err == nil then
    local text = type(res) == "table" and openrouter.text(res)
    error(("expected nil, err; the call succeeded (%s, text %q)"):format(tostring(res),
      tostring(text)):sub(1, 300), 2)
  end
end

local chat = requests.chat

-- A port nobody listens on: bound by us, then released.
local function closed_port()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  server:close()
  return tonumber(port)
end

describe("fault matrix", function()
  local emu = emulator.for_spec()

  -- One attempt per request unless a test says otherwise, and a fast backoff when it does.
  local new_client = requests.client_factory(function()
    return { api_key = KEY, base_url = emu.url, max_retries = 0, retry_base_delay = 0.01 }
  end)

  -- Runs one chat request blocking, or async driven by a poll loop, streamed when `stream`.
  -- Returns res, err, the texts handed to the chunk callback (nil when not streamed), the
  -- chunks themselves, and the elapsed seconds. Errors are checked and recorded.
  local function run(client, mode, params, stream)
    local pieces, chunks = stream and {} or nil, {}
    local on_chunk
    if stream then
      on_chunk = function(chunk)
        chunks[#chunks + 1] = chunk
        pieces[#pieces + 1] = openrouter.text(chunk) or ""
      end
    end
    local started = socket.gettime()
    local res, err
    if mode == "blocking" then
      res, err = client:chat_completion(params, on_chunk)
    else
      local calls = 0
      local req = client:chat_completion_async(params, { on_chunk = on_chunk,
        on_done = function(r, e)
          calls = calls + 1
          res, err = r, e
        end })
      local deadline = started + 30
      while client:poll(0.05) > 0 do
        assert(socket.gettime() < deadline, "the request is still running after 30 s")
      end
      assert.are.equal(1, calls, "on_done must run exactly once")
      assert.is_true(req.done)
      assert.are.equal(res, req.result)
      assert.are.equal(err, req.error)
    end
    local elapsed = socket.gettime() - started
    if err ~= nil then
      assert_failed(res, err)
      check_error(err)
    end
    return res, err, pieces, chunks, elapsed
  end

  -- The same client answers a normal request, in the same mode, after the failure.
  local function assert_recovers(client, mode, stream)
    local res, err, pieces = run(client, mode, chat("openai/gpt-4o-mini", "again"), stream)
    assert.is_nil(err, tostring(err))
    assert.are.equal("Echo: again", openrouter.text(res))
    if stream then assert.are.equal("Echo: again", table.concat(pieces)) end
  end

  -- How many inference requests the emulator received for `model`, and their entries.
  local function requests_for(model)
    local list = {}
    for _, entry in ipairs(emu:requests()) do
      if type(entry.json) == "table" and entry.json.model == model then list[#list + 1] = entry end
    end
    return #list, list
  end

  -- A broken stream: the partial response holds exactly what the callback received.
  local function assert_partial_is(err, pieces, expected)
    assert.are.equal(expected, table.concat(pieces))
    assert.are.equal("table", type(err.partial))
    assert.are.equal(expected, openrouter.text(err.partial))
  end

  -- Declares the test once per mode (and per streaming variant when `streams` lists them).
  local function cases(name, streams, body)
    for _, mode in ipairs(MODES) do
      for _, stream in ipairs(streams) do
        it(("%s (%s%s)"):format(name, mode, stream and ", streamed" or ""), function()
          body(mode, stream)
        end)
      end
    end
  end
  local BOTH, PLAIN, STREAMED = { false, true }, { false }, { true }

  describe("connections", function()
    -- An emulator process of our own on a given port (emulator_control picks a free one).
    local function start_emulator_on(port)
      local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
      local lua = os.getenv("OPENROUTER_EMULATOR_LUA") or "lua5.4"
      local stat = io.open("/proc/self/stat", "r") -- our pid: the server exits when we are gone
      local pid = stat and (stat:read("*l") or ""):match("^(%d+)")
      if stat then stat:close() end
      -- as emulator_control does: the emulator is not under test, no sanitizer preloaded
      local cmd = ("exec env -u LD_PRELOAD %s %s/support/emulator.lua --host 127.0.0.1 --port %d%s")
        :format(lua, dir, port, pid and (" --parent-pid " .. pid) or "")
      local handle = assert(io.popen(cmd .. " 2>/dev/null", "r"))
      local url = (handle:read("*l") or ""):match("^OPENROUTER_EMULATOR_URL=(%S+)$")
      assert(url, "the second emulator did not start")
      -- the control methods (stop, requests) of emulator_control's objects
      return setmetatable({ url = url, host = "127.0.0.1", port = port, handle = handle },
                          getmetatable(emu))
    end

    cases("connection refused: kind 'network'; the client works once a server listens", BOTH,
      function(mode, stream)
        local port = closed_port()
        local client = new_client{ base_url = ("http://127.0.0.1:%d/api/v1"):format(port) }
        local res, err, pieces = run(client, mode, chat("openai/gpt-4o-mini"), stream)
        assert_failed(res, err)
        assert.are.equal("network", err.kind)
        assert.is_nil(err.status)
        assert.is_nil(err.code)
        assert.is_nil(err.partial)
        assert.are.equal("number", type(err.curl_code))
        if stream then assert.are.same({}, pieces) end
        local late = start_emulator_on(port)
        local ok, failure = pcall(assert_recovers, client, mode, stream)
        late:stop()
        client:close()
        assert(ok, failure)
      end)

    cases("reset before any response byte (emulator/reset): kind 'network'", BOTH,
      function(mode, stream)
        local client = new_client()
        local res, err, pieces = run(client, mode, chat("emulator/reset"), stream)
        assert_failed(res, err)
        assert.are.equal("network", err.kind)
        assert.is_nil(err.status)
        assert.is_nil(err.code)
        assert.is_nil(err.partial)
        assert.is_nil(err.generation_id)
        assert.are.equal("number", type(err.curl_code))
        if stream then assert.are.same({}, pieces) end
        assert.are.equal(1, requests_for("emulator/reset"))
        assert_recovers(client, mode, stream)
        client:close()
      end)

    cases("reset before any response byte is retried up to max_retries (3 requests)", PLAIN,
      function(mode)
        local client = new_client{ max_retries = 2 }
        local _, err = run(client, mode, chat("emulator/reset"))
        assert.are.equal("network", err.kind)
        assert.are.equal(3, requests_for("emulator/reset"))
        client:close()
      end)

    cases("reset in the middle of the headers: kind 'network', not retried", BOTH,
      function(mode, stream)
        local client = new_client{ max_retries = 2 }
        local res, err, pieces = run(client, mode, chat("emulator/reset-mid-headers"), stream)
        assert_failed(res, err)
        assert.are.equal("network", err.kind)
        assert.are.equal(200, err.status) -- the status line had arrived
        assert.is_nil(err.code)
        assert.is_nil(err.partial)
        assert.matches(GEN_ID, err.generation_id) -- so had this header
        if stream then assert.are.same({}, pieces) end
        -- response bytes had arrived: not a connection failure, never retried
        assert.are.equal(1, requests_for("emulator/reset-mid-headers"))
        assert_recovers(client, mode, stream)
        client:close()
      end)

    cases("reset in the middle of the body: kind 'network', not retried", PLAIN, function(mode)
      local client = new_client{ max_retries = 2 }
      local res, err = run(client, mode, chat("emulator/reset-mid-body"))
      assert_failed(res, err)
      assert.are.equal("network", err.kind)
      assert.are.equal(200, err.status)
      assert.is_nil(err.code)
      assert.matches(GEN_ID, err.generation_id)
      assert.are.equal(1, requests_for("emulator/reset-mid-body"))
      assert_recovers(client, mode)
      client:close()
    end)

    cases("reset in the middle of a stream: kind 'network', the partial text kept", STREAMED,
      function(mode)
        local client = new_client{ max_retries = 2 }
        local res, err, pieces = run(client, mode, chat("emulator/reset-mid-stream"), true)
        assert_failed(res, err)
        assert.are.equal("network", err.kind)
        assert.are.equal(200, err.status)
        assert.matches(GEN_ID, err.generation_id)
        assert_partial_is(err, pieces, "Echo: hi")
        assert.are.equal(1, requests_for("emulator/reset-mid-stream"))
        assert_recovers(client, mode, true)
        client:close()
      end)
  end)

  describe("kept-alive connections the server closed", function()
    -- max_retries = 0: the reuse failure must be absorbed by reconnecting, not by a retry
    -- the caller could have turned off.
    cases("closed right after a keep-alive response: the next call succeeds", BOTH,
      function(mode, stream)
        local client = new_client()
        local res, err = run(client, mode, chat("emulator/close-after-response"))
        assert.is_nil(err, tostring(err))
        assert.are.equal("Echo: hi", openrouter.text(res))
        assert_recovers(client, mode, stream)
        local n, first = requests_for("emulator/close-after-response")
        local m, again = requests_for("openai/gpt-4o-mini")
        assert.are.equal(1, n)
        assert.are.equal(1, m) -- sent once, on a new connection
        assert.are_not.equal(first[1].connection, again[1].connection)
        client:close()
      end)

    for _, how in ipairs({ "", ":rst" }) do
      local model = "emulator/drop-next-request" .. how
      cases(("the next request on the connection dropped unanswered (%s): retried on a new "
        .. "connection, transparently"):format(how == "" and "FIN" or "RST"), BOTH,
        function(mode, stream)
          local client = new_client()
          local res, err = run(client, mode, chat(model))
          assert.is_nil(err, tostring(err))
          assert.are.equal("Echo: hi", openrouter.text(res))
          assert_recovers(client, mode, stream)
          -- the proof that the kept-alive connection was reused, then replaced
          local _, first = requests_for(model)
          local m, again = requests_for("openai/gpt-4o-mini")
          assert.are.equal(2, m)
          assert.are.equal(first[1].connection, again[1].connection)
          assert.are_not.equal(first[1].connection, again[2].connection)
          client:close()
        end)
    end
  end)

  describe("stalls", function()
    cases("a server that never answers: kind 'timeout' within the bound, not retried", BOTH,
      function(mode, stream)
        local client = new_client{ timeout = 1, max_retries = 2 }
        local res, err, pieces, _, elapsed = run(client, mode, chat("emulator/stall"), stream)
        assert_failed(res, err)
        assert.are.equal("timeout", err.kind)
        assert.is_nil(err.status)
        assert.is_nil(err.partial)
        assert.is_true(elapsed < 5, ("timeout = 1 fired after %.2f s"):format(elapsed))
        if stream then assert.are.same({}, pieces) end
        assert.are.equal(1, requests_for("emulator/stall")) -- sent, so maybe billed
        assert_recovers(client, mode, stream)
        client:close()
      end)

    cases("a stream that stalls after its first chunk, ended by `timeout`", STREAMED,
      function(mode)
        local client = new_client{ timeout = 1 }
        local res, err, pieces, _, elapsed = run(client, mode, chat("emulator/stall-mid-stream"),
                                                 true)
        assert_failed(res, err)
        assert.are.equal("timeout", err.kind)
        assert.are.equal(200, err.status)
        assert.is_true(elapsed < 5, ("timeout = 1 fired after %.2f s"):format(elapsed))
        assert_partial_is(err, pieces, "Echo: ")
        assert_recovers(client, mode, true)
        client:close()
      end)

    cases("a stream that stalls after its first chunk, ended by stream_idle_timeout", STREAMED,
      function(mode)
        local client = new_client{ stream_idle_timeout = 0.5, max_retries = 2 }
        local res, err, pieces, _, elapsed = run(client, mode, chat("emulator/stall-mid-stream"),
                                                 true)
        assert_failed(res, err)
        assert.are.equal("timeout", err.kind)
        assert.are.equal("stream_idle_timeout", err.code)
        assert.are.equal(200, err.status)
        assert.is_true(elapsed < 5,
          ("stream_idle_timeout = 0.5 fired after %.2f s"):format(elapsed))
        assert_partial_is(err, pieces, "Echo: ")
        assert.are.equal(1, requests_for("emulator/stall-mid-stream"))
        assert_recovers(client, mode, true)
        client:close()
      end)
  end)

  describe("retryable statuses, reported when retries are off", function()
    local MESSAGES = { [408] = "Request Timeout", [429] = "Rate limit exceeded",
      [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
      [504] = "Gateway Timeout" }
    for _, status in ipairs({ 408, 429, 500, 502, 503, 504 }) do
      for _, ra in ipairs({ "", "2", "date3" }) do
        local model = ("emulator/fail:%d:1%s"):format(status, ra == "" and "" or ":" .. ra)
        local what = ra == "" and "no Retry-After" or ra == "2" and "Retry-After: 2"
          or "Retry-After as an HTTP-date 3 s ahead"
        cases(("%d, %s: kind 'api' with every field"):format(status, what), PLAIN, function(mode)
          local client = new_client()
          local res, err = run(client, mode, chat(model))
          assert_failed(res, err)
          assert.are.equal("api", err.kind)
          assert.are.equal(status, err.status)
          assert.are.equal(status, err.code)
          assert.are.equal(MESSAGES[status], err.message)
          assert.is_nil(err.partial)
          if ra == "" then
            assert.is_nil(err.retry_after)
          elseif ra == "2" then
            assert.are.equal(2, err.retry_after)
          else
            -- whole seconds on the wire: between 1 and 3 s away when it arrives
            assert.are.equal("number", type(err.retry_after))
            assert.is_true(err.retry_after > 0 and err.retry_after <= 3,
              "retry_after = " .. tostring(err.retry_after))
          end
          assert.are.equal(1, requests_for(model))
          assert_recovers(client, mode)
          client:close()
        end)
      end
    end

    it("are retried by async requests too, Retry-After in seconds and as a date", function()
      local client = new_client{ max_retries = 2 }
      for _, model in ipairs({ "emulator/fail:503:1:1", "emulator/fail:504:1:date1" }) do
        local res, err = run(client, "async", chat(model))
        assert.is_nil(err, tostring(err))
        assert.are.equal("Echo: hi", openrouter.text(res))
        assert.are.equal(2, requests_for(model))
      end
      client:close()
    end)
  end)

  describe("2xx bodies that are not a response", function()
    local DECODE_CASES = {
      { "an empty body", "emulator/empty" },
      { "truncated JSON", "emulator/malformed" },
      { "a JSON array instead of an object", "emulator/array-body" },
      { "JSON nested 100000 levels deep", "emulator/deep-json:100000" },
      { "a raw NUL byte inside a JSON string", "emulator/nul:raw" },
    }
    for _, case in ipairs(DECODE_CASES) do
      local name, model = case[1], case[2]
      cases(name .. ": kind 'decode'", PLAIN, function(mode)
        local client = new_client()
        local res, err = run(client, mode, chat(model))
        assert_failed(res, err)
        assert.are.equal("decode", err.kind)
        assert.are.equal(200, err.status)
        assert.is_nil(err.code)
        assert.is_nil(err.partial)
        assert.are.equal(1, requests_for(model))
        assert_recovers(client, mode)
        client:close()
      end)
    end

    -- The same faults on a streamed call: a body that is no event stream never reaches the
    -- callback; an event that is not a JSON object ends the stream with what came before it.
    cases("an empty or truncated body on a streamed call: kind 'decode', no chunk", STREAMED,
      function(mode)
        local client = new_client()
        for _, model in ipairs({ "emulator/empty", "emulator/malformed" }) do
          local res, err, pieces = run(client, mode, chat(model), true)
          assert_failed(res, err)
          assert.are.equal("decode", err.kind)
          assert.are.equal(200, err.status)
          assert.is_nil(err.partial)
          assert.are.same({}, pieces)
        end
        assert_recovers(client, mode, true)
        client:close()
      end)

    local EVENT_CASES = {
      { "an event holding a JSON array", "emulator/array-body", "Echo: hi" },
      { "an event nested 100000 levels deep", "emulator/deep-json:100000", "Echo: hi" },
      { "an event holding a raw NUL byte", "emulator/nul:raw", "nul \0 " },
    }
    for _, case in ipairs(EVENT_CASES) do
      local name, model, before = case[1], case[2], case[3]
      cases(name .. ": kind 'decode', the partial text kept", STREAMED, function(mode)
        local client = new_client()
        local res, err, pieces = run(client, mode, chat(model), true)
        assert_failed(res, err)
        assert.are.equal("decode", err.kind)
        assert.are.equal(200, err.status)
        assert.matches(GEN_ID, err.generation_id)
        assert_partial_is(err, pieces, before)
        assert_recovers(client, mode, true)
        client:close()
      end)
    end

    cases("invalid UTF-8 in the content: every byte delivered as sent", BOTH,
      function(mode, stream)
        local client = new_client()
        local res, err, pieces = run(client, mode, chat("emulator/bad-utf8"), stream)
        assert.is_nil(err, tostring(err))
        assert.are.equal(BAD_UTF8, openrouter.text(res))
        if stream then assert.are.equal(BAD_UTF8, table.concat(pieces)) end
        assert_recovers(client, mode, stream)
        client:close()
      end)

    cases("NUL characters in the content (\\u0000): every byte delivered as sent", BOTH,
      function(mode, stream)
        local client = new_client()
        local res, err, pieces = run(client, mode, chat("emulator/nul"), stream)
        assert.is_nil(err, tostring(err))
        assert.are.equal(NUL_TEXT, openrouter.text(res))
        assert.are.equal(#NUL_TEXT, #openrouter.text(res))
        if stream then assert.are.equal(NUL_TEXT, table.concat(pieces)) end
        assert_recovers(client, mode, stream)
        client:close()
      end)
  end)

  describe("large responses", function()

    -- Current resident set size of this process in KiB (Linux), or nil.
    local function rss_kib()
      local f = io.open("/proc/self/status", "r")
      if not f then return nil end
      local text = f:read("*a")
      f:close()
      return tonumber(text:match("VmRSS:%s*(%d+)"))
    end

    cases("a 50 MB body under the default max_response_bytes (64 MiB): exact, and memory "
      .. "comes back", PLAIN, function(mode)
      local client = new_client()
      collectgarbage()
      collectgarbage()
      local heap0, rss0 = collectgarbage("count"), rss_kib()
      local res, err = run(client, mode, chat("emulator/big:" .. 50 * MB))
      assert.is_nil(err, tostring(err))
      local text = openrouter.text(res)
      assert.are.equal(50 * MB, #text)
      for _, at in ipairs({ 1, 16 * 1000 + 1, 25 * MB + 1, 50 * MB - 15 }) do
        assert.are.equal(FILL_UNIT:sub(1, math.min(16, 50 * MB - at + 1)), text:sub(at, at + 15))
      end
      -- while held, once the garbage of decoding is gone: the text once, not copies of it
      collectgarbage()
      collectgarbage()
      local held = collectgarbage("count") - heap0 -- KiB
      assert.is_true(held < 1.5 * 50 * MB / 1024,
        ("%.0f KiB of Lua heap hold a 50 MB reply"):format(held))
      text, res = nil, nil
      for _ = 1, 3 do collectgarbage() end -- a request object's __gc releases its result
      local left = collectgarbage("count") - heap0
      assert.is_true(left < 4096,
        ("%.0f KiB of Lua heap left after the reply was dropped"):format(left))
      local rss1 = rss_kib()
      -- under make check-asan the sanitizer keeps freed memory in its quarantine (up to
      -- 256 MB, by design): the process's size says nothing there, the Lua heap above does
      local asan = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true)
      if rss0 and rss1 and not asan then
        assert.is_true(rss1 - rss0 < 64 * 1024,
          ("the process grew by %d KiB after a 50 MB reply was dropped"):format(rss1 - rss0))
      end
      assert_recovers(client, mode)
      client:close()
    end)

    cases("a 5 MB body over max_response_bytes = 1e6: kind 'decode', code "
      .. "'response_too_large'", BOTH, function(mode, stream)
      local client = new_client{ max_response_bytes = 1e6 }
      local res, err, pieces = run(client, mode, chat("emulator/big:" .. 5 * MB), stream)
      assert_failed(res, err)
      assert.are.equal("decode", err.kind)
      assert.are.equal("response_too_large", err.code)
      assert.are.equal(200, err.status)
      if stream then
        -- what arrived before the limit, exactly as the callback saw it
        local got = table.concat(pieces)
        assert.is_true(#got > 0 and #got < 1e6)
        assert.are.equal(filler(#got), got)
        assert_partial_is(err, pieces, got)
      else
        assert.is_nil(err.partial)
      end
      assert_recovers(client, mode, stream)
      client:close()
    end)

    cases("a single 5 MB data: line over max_response_bytes = 1e6: 'response_too_large'",
      STREAMED, function(mode)
        local client = new_client{ max_response_bytes = 1e6 }
        local res, err, pieces = run(client, mode, chat("emulator/big-sse-line:" .. 5 * MB), true)
        assert_failed(res, err)
        assert.are.equal("decode", err.kind)
        assert.are.equal("response_too_large", err.code)
        assert_partial_is(err, pieces, "") -- only the opening chunk (empty content) came
        assert_recovers(client, mode, true)
        client:close()
      end)
  end)

  describe("event streams", function()
    cases("event:, id:, retry: and unknown lines, JSON over two data: lines, unknown fields "
      .. "in every chunk", STREAMED, function(mode)
      local client = new_client()
      local res, err, pieces, chunks = run(client, mode, chat("emulator/sse-fields"), true)
      assert.is_nil(err, tostring(err))
      assert.are.equal("Echo: hi", openrouter.text(res))
      assert.are.equal("Echo: hi", table.concat(pieces))
      assert.are.equal("stop", res.choices[1].finish_reason)
      assert.are.equal("table", type(res.usage))
      -- every chunk arrives whole, the fields nobody knows included
      assert.is_true(#chunks >= 4)
      for i, chunk in ipairs(chunks) do
        assert.are.equal("table", type(chunk.x_emulator), "chunk " .. i)
        assert.are.equal("unknown top-level field", chunk.x_emulator.note)
        assert.are.equal("number", type(chunk.x_emulator_split))
        for _, choice in ipairs(chunk.choices) do
          assert.are.equal(chunk.x_emulator.seq, choice.x_emulator_choice)
          assert.are.same({ chunk.x_emulator.seq }, choice.delta.x_emulator_delta)
        end
      end
      -- and the assembled response keeps the top-level ones (the last value)
      assert.are.same(chunks[#chunks].x_emulator, res.x_emulator)
      assert_recovers(client, mode, true)
      client:close()
    end)

    cases("a 5 MB data: line under the default limit: delivered whole", STREAMED, function(mode)
      local client = new_client()
      local res, err, pieces = run(client, mode, chat("emulator/big-sse-line:" .. 5 * MB), true)
      assert.is_nil(err, tostring(err))
      local expected = filler(5 * MB)
      assert.are.equal(expected, openrouter.text(res))
      assert.are.equal(expected, table.concat(pieces))
      assert.is_true(#pieces <= 4) -- one chunk, not pieces of it
      assert_recovers(client, mode, true)
      client:close()
    end)

    cases("no final [DONE]: the stream ends at EOF with the whole response", STREAMED,
      function(mode)
        local client = new_client()
        local res, err, pieces = run(client, mode, chat("emulator/no-done"), true)
        assert.is_nil(err, tostring(err))
        assert.are.equal("Echo: hi", openrouter.text(res))
        assert.are.equal("Echo: hi", table.concat(pieces))
        assert.are.equal("stop", res.choices[1].finish_reason)
        assert.are.equal("table", type(res.usage))
        assert_recovers(client, mode, true)
        client:close()
      end)
  end)

  describe("redirects", function()
    for _, status in ipairs({ 301, 302, 303, 307, 308 }) do
      cases(("a %d to another origin: not followed, kind 'http', the key never travels")
        :format(status), BOTH, function(mode, stream)
        -- the other origin: a bare listener that records whoever connects
        local other = assert(socket.bind("127.0.0.1", 0))
        local _, port = other:getsockname()
        local model = ("emulator/redirect:%d:http://127.0.0.1:%d/api/v1/chat/completions")
          :format(status, port)
        local client = new_client{ max_retries = 2, timeout = 3 }
        local res, err, pieces = run(client, mode, chat(model), stream)
        other:settimeout(0.2)
        local peer = other:accept()
        local received = ""
        if peer then
          peer:settimeout(0.5)
          local data, _, partial = peer:receive("*a")
          received = data or partial or ""
          peer:close()
        end
        other:close()
        assert.is_nil(received:lower():find("authorization", 1, true),
          "the Authorization header reached the other origin")
        assert.is_nil(received:find(KEY, 1, true), "the key reached the other origin")
        assert.is_nil(peer, "the redirect was followed to the other origin")
        assert_failed(res, err)
        assert.are.equal("http", err.kind)
        assert.are.equal(status, err.status)
        assert.is_nil(err.code)
        if stream then assert.are.same({}, pieces) end
        assert.are.equal(1, requests_for(model)) -- a redirect is not retried either
        assert_recovers(client, mode, stream)
        client:close()
      end)
    end
  end)

  describe("secrets", function()
    -- The emulator echoes the request's key back where servers and proxies do: in an error
    -- body (message, metadata.raw, metadata.headers), an HTML error page, a mid-stream error.
    cases("a server echoing the key in an API error body: it appears nowhere in err", BOTH,
      function(mode, stream)
        local client = new_client()
        local res, err = run(client, mode, chat("emulator/echo-key:api"), stream)
        assert_failed(res, err)
        assert.are.equal("api", err.kind)
        assert.are.equal(400, err.status)
        assert.matches("[redacted]", err.message, 1, true)
        assert.are.equal("OpenAI", err.provider)
        assert.are.equal("table", type(err.metadata)) -- kept, but without the key
        assert_recovers(client, mode, stream)
        client:close()
      end)

    cases("a server echoing the key deep inside error metadata: it appears nowhere in err", PLAIN,
      function(mode)
        local client = new_client()
        local res, err = run(client, mode, chat("emulator/echo-key:deep"))
        assert_failed(res, err)
        assert.are.equal("api", err.kind)
        assert.are.equal(400, err.status)
        assert.are.equal("table", type(err.metadata.upstream)) -- kept, but without the key
        assert_recovers(client, mode)
        client:close()
      end)

    cases("a proxy echoing the key in an HTML error page: it appears nowhere in err", PLAIN,
      function(mode)
        local client = new_client()
        local res, err = run(client, mode, chat("emulator/echo-key:html"))
        assert_failed(res, err)
        assert.are.equal("http", err.kind)
        assert.are.equal(502, err.status)
        assert.matches("[redacted]", err.message, 1, true)
        assert_recovers(client, mode)
        client:close()
      end)

    cases("an error event echoing the key mid-stream: it appears nowhere in err", STREAMED,
      function(mode)
        local client = new_client()
        local res, err, pieces = run(client, mode, chat("emulator/echo-key:stream"), true)
        assert_failed(res, err)
        assert.are.equal("api", err.kind)
        assert.are.equal(200, err.status)
        assert.are.equal(502, err.code)
        assert.matches("[redacted]", err.message, 1, true)
        assert_partial_is(err, pieces, "Echo: hi")
        assert_recovers(client, mode, true)
        client:close()
      end)

    -- Runs last: every error the cases above produced (check_error records each one).
    it("no error produced by this file holds the key, in tostring or any field", function()
      assert.is_true(#produced >= 100, "only " .. #produced .. " errors were collected")
      local leaks = {}
      for i, err in ipairs(produced) do
        local leak = key_leak(err)
        if leak then leaks[#leaks + 1] = ("#%d (%s): %s"):format(i, tostring(err.kind), leak) end
      end
      assert.are.same({}, leaks)
    end)
  end)
end)
