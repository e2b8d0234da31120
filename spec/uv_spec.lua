-- A host's event loop drives the client (issue 13, item 1): `client:set_loop_hooks{socket=,
-- timer=}` and `client:socket_action([fd, events])`, and `require("openrouter.uv").attach`
-- on top of them, against the emulator. Two loops:
--
-- * a real libuv loop (Debian's lua-luv: `require("luv")`); without luv these are skipped with
--   a printed reason, and under CI=true they fail (`make test` installs lua-luv);
-- * a loop of a dozen lines in plain Lua over LuaSocket's socket.select, watching the fds the
--   socket hook announced: any loop can drive a client with the documented hooks.
--
-- No assertion runs inside a luv callback: luv reports an error raised there and exits the
-- process (busted with it); callbacks record, the test asserts once the loop returned.
--
-- Nothing here is timed: a luv timer's rhythm is a count of ticks, compared loosely; `poll`
-- is wrapped to count its calls (never, once a client is attached).
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")
local socket = require("socket")

local GUARD = 20 -- seconds: a wall-clock guard on every loop run, never an assertion on speed

local has_luv, uv = pcall(require, "luv")
local NO_LUV = not has_luv and ("lua-luv is not installed for " .. _VERSION
  .. (rawget(_G, "jit") and (" (" .. jit.version .. ")") or "")
  .. ": apt-get install lua-luv (make test does)") or nil
if NO_LUV then
  io.stderr:write("spec/uv_spec.lua: the luv specs are skipped: ", NO_LUV, "\n")
end

local chat = requests.chat

-- The client's method table, shared by every client: poll and set_loop_hooks are wrapped
-- there for a test, and restored. Another module may serve a method through the table's own
-- __index (openrouter.async serves poll): the wrapper is set with rawset and calls what a
-- lookup found, with the table as it was while that runs.
local function client_methods(client)
  return getmetatable(client).__index
end

local unpack = table.unpack or unpack

local function with_wrapped(client, name, make, fn)
  local methods = client_methods(client)
  local had, looked = rawget(methods, name), methods[name]
  local wrapper
  local function call_looked(...)
    rawset(methods, name, had)
    local r = { n = select("#", ...) + 1, pcall(looked, ...) }
    rawset(methods, name, wrapper)
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end
  wrapper = make(call_looked)
  rawset(methods, name, wrapper)
  local ok, err = pcall(fn)
  rawset(methods, name, had)
  if not ok then error(err, 0) end
end

-- Calls fn() with client:poll counted (for every client); returns the count.
local function count_polls(client, fn)
  local calls = 0
  with_wrapped(client, "poll", function(poll)
    return function(...)
      calls = calls + 1
      return poll(...)
    end
  end, fn)
  return calls
end

-- Wraps set_loop_hooks while fn() runs so that every timer(ms) a client is told is recorded.
local function record_timers(client, fn)
  local timers = {}
  with_wrapped(client, "set_loop_hooks", function(set)
    return function(c, hooks)
      if type(hooks) == "table" and type(hooks.timer) == "function" then
        local inner = hooks.timer
        hooks = { socket = hooks.socket, closed = hooks.closed, timer = function(ms)
          timers[#timers + 1] = ms
          return inner(ms)
        end }
      end
      return set(c, hooks)
    end
  end, fn)
  return timers
end

describe("host loops", function()
  local emu = emulator.for_spec()
  local clients

  local function new_client(opts)
    local o = { api_key = "sk-or-uv-spec-key", base_url = emu.url, retry_base_delay = 0.01 }
    for k, v in pairs(opts or {}) do o[k] = v end
    local c = openrouter.new(o)
    clients[#clients + 1] = c
    return c
  end

  before_each(function()
    clients = {}
  end)

  after_each(function()
    for _, c in ipairs(clients) do c:close() end
  end)

  describe("a libuv loop (luv)", function()
    if NO_LUV then
      if os.getenv("CI") == "true" then
        it("needs luv", function() error(NO_LUV .. " (CI=true: the specs must run)") end)
      else
        it("needs luv", function() pending(NO_LUV) end)
      end
      return
    end

    local uvdriver = require("openrouter.uv")

    -- The handles on the loop now (not closing), by type.
    local function handles()
      local list = {}
      uv.walk(function(h)
        if not h:is_closing() then list[#list + 1] = h:get_type() end
      end)
      return list
    end

    -- Runs the loop until cond() holds; a check handle looks after every iteration, so the
    -- loop still sleeps in the kernel between events. Fails after GUARD seconds.
    local function run_until(cond, limit)
      if cond() then return end
      -- prepare runs before the loop sleeps (a condition met in a timer callback: uv.stop()
      -- there keeps it from sleeping), check after (met in a socket callback)
      local prepare, check, guard, timed_out = uv.new_prepare(), uv.new_check(), uv.new_timer(), false
      local function look() if cond() then uv.stop() end end
      prepare:start(look)
      check:start(look)
      guard:start((limit or GUARD) * 1000, 0, function()
        timed_out = true
        uv.stop()
      end)
      uv.run()
      prepare:close()
      check:close()
      guard:close()
      uv.run("nowait") -- their close callbacks
      assert(not timed_out, "the loop did not get there within the guard")
    end

    after_each(function()
      for _, c in ipairs(clients) do c:close() end -- tells the drivers: their handles close
      uv.run("nowait")
      local left = {}
      uv.walk(function(h)
        if not h:is_closing() then
          left[#left + 1] = h:get_type()
          h:close()
        end
      end)
      uv.run("nowait")
      assert.are.same({}, left) -- every test (and every driver) closed what it opened
    end)

    it("resumes the tasks waiting on its requests, from the loop (no poll, no task:wait)", function()
      local client = new_client()
      uvdriver.attach(client, uv)
      local results = {}
      for i = 1, 3 do
        openrouter.async(function()
          local res = assert(client:chat_completion(chat("emulator/slow:50", "task " .. i)))
          local credits = assert(client:get_credits())
          results[i] = openrouter.text(res) .. " / " .. credits.remaining
        end)
      end
      run_until(function() return results[1] and results[2] and results[3] end)
      for i = 1, 3 do assert.are.equal("Echo: task " .. i .. " / 74.75", results[i]) end
    end)

    it("completes requests with no poll call after attach", function()
      local client = new_client()
      local results = {}
      local polls = count_polls(client, function()
        local driver = uvdriver.attach(client, uv)
        assert.are.equal(client, driver.client)
        assert.are.equal(uv, driver.uv)
        client:chat_completion_async(chat(), { on_done = function(res, err)
          results.plain = res or err
        end })
        local texts = {}
        client:chat_completion_async(chat(nil, "streamed"), {
          on_chunk = function(c) texts[#texts + 1] = openrouter.text(c) or "" end,
          on_done = function(res, err)
            results.stream = res or err
            results.texts = table.concat(texts)
          end })
        client:get_models_async{ on_done = function(res, err) results.models = res or err end }
        run_until(function() return results.plain and results.stream and results.models end)
      end)
      assert.are.equal(0, polls)
      assert.are.equal("Echo: hi", openrouter.text(results.plain))
      assert.are.equal("Echo: streamed", openrouter.text(results.stream))
      assert.are.equal("Echo: streamed", results.texts)
      assert.is_true(#results.models > 0)
    end)

    it("keeps a luv timer's rhythm during a streamed request", function()
      local client = new_client()
      uvdriver.attach(client, uv)
      local ticks, done = 0, false
      local tick = uv.new_timer()
      tick:start(10, 10, function() ticks = ticks + 1 end)
      local chunk_ticks = {}
      local start = uv.hrtime()
      client:chat_completion_async(chat("emulator/slow:40", "one two three four five six seven eight"), {
        on_chunk = function() chunk_ticks[#chunk_ticks + 1] = ticks end,
        on_done = function(res, err) done = res or err end })
      run_until(function() return done end)
      assert.are.equal("Echo: one two three four five six seven eight", openrouter.text(done))
      local elapsed_ms = (uv.hrtime() - start) / 1e6
      tick:close()
      -- a loop blocked by the request would tick 0 times; a free one about elapsed / 10
      local expected = elapsed_ms / 10
      assert.is_true(ticks >= expected / 2, ("%d ticks in %.0f ms"):format(ticks, elapsed_ms))
      -- and the chunks came between ticks, not all at once at the end
      assert.is_true(#chunk_ticks >= 10)
      assert.is_true(chunk_ticks[#chunk_ticks] > chunk_ticks[1])
    end)

    it("delivers streamed chunks through on_chunk, as they arrive", function()
      local client = new_client()
      uvdriver.attach(client, uv)
      local chunks, result, iterations = {}, nil, 0
      local check = uv.new_check()
      check:start(function() iterations = iterations + 1 end)
      client:chat_completion_async(chat("emulator/slow:20", "alpha beta gamma"), {
        on_chunk = function(c)
          chunks[#chunks + 1] = { text = openrouter.text(c), iteration = iterations }
        end,
        on_done = function(res, err) result = res or err end,
      })
      run_until(function() return result ~= nil end)
      check:close()
      local text = {}
      for _, c in ipairs(chunks) do text[#text + 1] = c.text or "" end
      assert.are.equal("Echo: alpha beta gamma", table.concat(text))
      assert.are.equal("Echo: alpha beta gamma", openrouter.text(result))
      -- the events were 20 ms apart: they reached on_chunk in different loop iterations
      assert.is_true(chunks[#chunks].iteration > chunks[1].iteration)
    end)

    it("lets blocking calls work on an attached client", function()
      -- (a request in flight while a blocking call runs: see "watches the socket of a
      -- request a blocking call started", below)
      local client = new_client()
      uvdriver.attach(client, uv)
      local res = assert(client:chat_completion(chat(nil, "blocking")))
      assert.are.equal("Echo: blocking", openrouter.text(res))
      local texts = {}
      res = assert(client:chat_completion(chat(nil, "streamed"), function(c)
        texts[#texts + 1] = openrouter.text(c) or ""
      end))
      assert.are.equal("Echo: streamed", table.concat(texts))
      assert.are.equal("Echo: streamed", openrouter.text(res))
      -- and the loop goes on driving afterwards
      local later
      local polls = count_polls(client, function()
        client:chat_completion_async(chat(nil, "later"), { on_done = function(r, e) later = r or e end })
        run_until(function() return later ~= nil end)
      end)
      assert.are.equal(0, polls)
      assert.are.equal("Echo: later", openrouter.text(later))
    end)

    it("goes back to poll after detach", function()
      local client = new_client()
      local driver = uvdriver.attach(client, uv)
      local first
      client:chat_completion_async(chat(nil, "attached"), { on_done = function(r, e) first = r or e end })
      run_until(function() return first ~= nil end)
      driver:detach()
      driver:detach() -- idempotent
      assert.are.same({}, handles())
      local second
      client:chat_completion_async(chat(nil, "detached"), { on_done = function(r, e) second = r or e end })
      uv.run("nowait")
      assert.is_false(uv.loop_alive()) -- nothing of the client's on the loop any more
      assert.is_nil(second)
      local deadline = socket.gettime() + GUARD
      while client:poll(0.05) > 0 do assert(socket.gettime() < deadline) end
      assert.are.equal("Echo: detached", openrouter.text(second))
      -- attached again, the loop drives it again
      uvdriver.attach(client, uv)
      local third
      client:chat_completion_async(chat(nil, "again"), { on_done = function(r, e) third = r or e end })
      run_until(function() return third ~= nil end)
      assert.are.equal("Echo: again", openrouter.text(third))
    end)

    it("attached while a request runs, takes it over", function()
      local client = new_client()
      local result
      client:chat_completion_async(chat("emulator/slow:300", "a b c d"), {
        on_done = function(r, e) result = r or e end })
      -- started, connected and sent under poll: the socket now waits for the answer
      local deadline = socket.gettime() + GUARD
      while #emu:requests() == 0 do
        assert(socket.gettime() < deadline)
        client:poll(0.01)
      end
      local polls = count_polls(client, function()
        uvdriver.attach(client, uv)
        local watching = false
        for _, t in ipairs(handles()) do watching = watching or t == "poll" end
        assert.is_true(watching, "attach did not watch the request's socket")
        run_until(function() return result ~= nil end)
      end)
      assert.are.equal(0, polls)
      assert.are.equal("Echo: a b c d", openrouter.text(result))
    end)

    it("releases the loop's handles on close(): uv.run returns", function()
      local client = new_client()
      uvdriver.attach(client, uv)
      local result
      client:chat_completion_async(chat("emulator/stall"), { on_done = function(r, e) result = r or e end })
      local closer = uv.new_timer()
      closer:start(100, 0, function()
        closer:close()
        client:close()
      end)
      local guard, leaked = uv.new_timer(), false
      guard:start(GUARD * 1000, 0, function()
        leaked = true
        uv.stop()
      end)
      guard:unref() -- does not keep the loop alive: uv.run returns once the client let go
      uv.run()
      assert.is_false(leaked, "uv.run did not return: the client left handles on the loop")
      guard:close()
      uv.run("nowait")
      assert.are.equal("cancelled", result.kind)
      assert.are.same({}, handles())
    end)

    it("drives two clients on one loop", function()
      local a, b = new_client(), new_client()
      uvdriver.attach(a, uv)
      uvdriver.attach(b, uv)
      local ra, rb, order = nil, nil, {}
      a:chat_completion_async(chat("emulator/slow:30", "one two three"), {
        on_chunk = function() order[#order + 1] = "a" end,
        on_done = function(r, e) ra = r or e end })
      b:chat_completion_async(chat("emulator/slow:30", "four five six"), {
        on_chunk = function() order[#order + 1] = "b" end,
        on_done = function(r, e) rb = r or e end })
      local polls = count_polls(a, function()
        run_until(function() return ra and rb end)
      end)
      assert.are.equal(0, polls)
      assert.are.equal("Echo: one two three", openrouter.text(ra))
      assert.are.equal("Echo: four five six", openrouter.text(rb))
      -- streamed side by side: the chunks interleave
      local s = table.concat(order)
      assert.is_truthy(s:find("ab") or s:find("ba"))
      assert.is_falsy(s:find("^a+b+$") or s:find("^b+a+$"))
    end)

    it("cancels from on_chunk", function()
      local client = new_client()
      uvdriver.attach(client, uv)
      local got, result = 0, nil
      client:chat_completion_async(chat("emulator/slow:30", "one two three four five six"), {
        on_chunk = function()
          got = got + 1
          if got == 3 then return false end
        end,
        on_done = function(r, e) result = r or e end })
      run_until(function() return result ~= nil end)
      assert.are.equal("cancelled", result.kind)
      assert.are.equal(3, got)
      -- the connection was dropped (HTTP/1.1): no socket of it is watched any more
      uv.run("nowait")
      local after
      client:chat_completion_async(chat(nil, "next"), { on_done = function(r, e) after = r or e end })
      run_until(function() return after ~= nil end)
      assert.are.equal("Echo: next", openrouter.text(after))
      assert.are.equal(3, got)
    end)

    it("cancels from a luv timer with req:cancel()", function()
      local client = new_client()
      uvdriver.attach(client, uv)
      local result
      local req = client:chat_completion_async(chat("emulator/stall"), {
        on_done = function(r, e) result = r or e end })
      local t = uv.new_timer()
      local cancelled
      t:start(50, 0, function()
        t:close()
        cancelled = req:cancel()
      end)
      run_until(function() return result ~= nil end)
      assert.is_true(cancelled)
      assert.are.equal("cancelled", result.kind)
    end)

    it("retries through the timer hook (emulator/fail:503:1)", function()
      local client = new_client{ retry_base_delay = 0.3, max_retries = 2 }
      local result, info
      local polls
      local timers = record_timers(client, function()
        uvdriver.attach(client, uv)
        polls = count_polls(client, function()
          client:chat_completion_async(chat("emulator/fail:503:1"), {
            on_done = function(r, e, i) result, info = r or e, i end })
          run_until(function() return result ~= nil end)
        end)
      end)
      assert.are.equal(0, polls)
      assert.are.equal("Echo: hi", openrouter.text(result))
      assert.are.equal(2, info.attempts)
      assert.are.equal(2, #emu:requests())
      -- the backoff (0.15 to 0.3 s with the jitter) was waited on the loop's timer
      local waited = false
      for _, ms in ipairs(timers) do waited = waited or (ms >= 100 and ms <= 400) end
      assert.is_true(waited, "no backoff timer among " .. table.concat(timers, ", "))
    end)

    it("ends a silent stream by stream_idle_timeout through the timer hook", function()
      local client = new_client{ stream_idle_timeout = 0.3 }
      local result, chunks, polls = nil, 0, nil
      local timers = record_timers(client, function()
        uvdriver.attach(client, uv)
        polls = count_polls(client, function()
          client:chat_completion_async(chat("emulator/stall-mid-stream"), {
            on_chunk = function() chunks = chunks + 1 end,
            on_done = function(r, e) result = r or e end })
          run_until(function() return result ~= nil end)
        end)
      end)
      assert.are.equal(0, polls)
      assert.are.equal("timeout", result.kind)
      assert.are.equal("stream_idle_timeout", result.code)
      assert.are.equal(1, chunks)
      local waited = false
      for _, ms in ipairs(timers) do waited = waited or (ms >= 100 and ms <= 300) end
      assert.is_true(waited, "no idle deadline among " .. table.concat(timers, ", "))
    end)

    it("raises set_loop_hooks misuse and attach misuse as bad argument", function()
      local client = new_client()
      for _, bad in ipairs({ 42, "hooks", true, {}, { socket = print }, { timer = print },
                             { socket = print, timer = 1 }, { socket = "f", timer = print } }) do
        local ok, err = pcall(function() client:set_loop_hooks(bad) end)
        assert.is_false(ok)
        assert.matches("bad argument", err)
      end
      assert.matches("bad argument #1", select(2, pcall(uvdriver.attach, "client", uv)))
      assert.matches("bad argument #2", select(2, pcall(uvdriver.attach, client, {})))
      -- a closed client
      local closed = new_client()
      closed:close()
      assert.has_error(function() closed:set_loop_hooks{ socket = print, timer = print } end)
      assert.has_error(function() closed:socket_action() end)
    end)

    it("raises socket_action with a bad fd as bad argument", function()
      local client = new_client()
      uvdriver.attach(client, uv)
      for _, bad in ipairs({ -1, 1.5, "x", {}, 2 ^ 40, 0 / 0 }) do
        local ok, err = pcall(function() client:socket_action(bad, "r") end)
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'socket_action'", err)
      end
      -- an fd libcurl does not watch (gone since the loop saw it ready) is no error
      assert.are.equal(0, client:socket_action(1023, "r"))
    end)
  end)

  describe("any loop, with the documented hooks (socket.select in plain Lua)", function()
    -- The whole host loop: the fds the socket hook announced, watched with select; the one
    -- timer the timer hook set; socket_action for what is ready, and for the timer.
    local function fake_loop(client)
      local loop = { watched = {}, timer_at = nil, socket_calls = {}, timer_calls = {},
                     closed = 0, wakeups = 0 }
      function loop.hooks()
        return {
          socket = function(fd, events)
            assert(math.type == nil or math.type(fd) == "integer")
            assert(events == nil or events == "r" or events == "w" or events == "rw", events)
            loop.socket_calls[#loop.socket_calls + 1] = { fd, events }
            loop.watched[fd] = events
          end,
          timer = function(ms)
            loop.timer_calls[#loop.timer_calls + 1] = ms
            loop.timer_at = ms >= 0 and socket.gettime() + ms / 1000 or nil
          end,
          closed = function() loop.closed = loop.closed + 1 end,
        }
      end
      client:set_loop_hooks(loop.hooks())
      function loop.step(max_wait)
        local r, w = {}, {}
        for fd, events in pairs(loop.watched) do
          local h = { getfd = function() return fd end, fd = fd }
          if events:find("r") then r[#r + 1] = h end
          if events:find("w") then w[#w + 1] = h end
        end
        local timeout = max_wait or 1
        if loop.timer_at then timeout = math.max(0, math.min(timeout, loop.timer_at - socket.gettime())) end
        local rr, ww = socket.select(r, w, timeout)
        loop.wakeups = loop.wakeups + 1
        local ready = {}
        for _, h in ipairs(rr) do ready[h.fd] = "r" end
        for _, h in ipairs(ww) do ready[h.fd] = (ready[h.fd] or "") .. "w" end
        for fd, events in pairs(ready) do
          -- a socket the hooks dropped in the meantime is not acted on
          if loop.watched[fd] then client:socket_action(fd, events) end
        end
        if loop.timer_at and socket.gettime() >= loop.timer_at then
          loop.timer_at = nil
          client:socket_action()
        end
      end
      function loop.run_until(cond)
        local deadline = socket.gettime() + GUARD
        while not cond() do
          assert(socket.gettime() < deadline, "the loop did not get there within the guard")
          loop.step()
        end
      end
      return loop
    end

    it("drives plain, streamed and parallel requests with no poll", function()
      local client = new_client()
      local loop
      local results, texts = {}, {}
      local polls = count_polls(client, function()
        loop = fake_loop(client)
        for i = 1, 5 do
          client:chat_completion_async(chat("emulator/slow:50", "n" .. i), {
            on_done = function(r, e) results[i] = r or e end })
        end
        client:chat_completion_async(chat(nil, "streamed words here"), {
          on_chunk = function(c) texts[#texts + 1] = openrouter.text(c) or "" end,
          on_done = function(r, e) results.stream = r or e end })
        loop.run_until(function()
          for i = 1, 5 do if not results[i] then return false end end
          return results.stream ~= nil
        end)
      end)
      assert.are.equal(0, polls)
      for i = 1, 5 do assert.are.equal("Echo: n" .. i, openrouter.text(results[i])) end
      assert.are.equal("Echo: streamed words here", table.concat(texts))
      assert.is_true(#loop.socket_calls > 0)
      -- the loop slept in select between events: far fewer wake-ups than a 1 ms busy loop
      assert.is_true(loop.wakeups < 200, loop.wakeups .. " wake-ups")
    end)

    it("retries and times out through the timer hook alone", function()
      local client = new_client{ retry_base_delay = 0.2, stream_idle_timeout = 0.3 }
      local loop = fake_loop(client)
      local retried, idle
      client:chat_completion_async(chat("emulator/fail:503:1"), {
        on_done = function(r, e, i) retried = { r or e, i } end })
      client:chat_completion_async(chat("emulator/stall-mid-stream"), {
        on_chunk = function() end,
        on_done = function(r, e) idle = r or e end })
      loop.run_until(function() return retried and idle end)
      assert.are.equal("Echo: hi", openrouter.text(retried[1]))
      assert.are.equal(2, retried[2].attempts)
      assert.are.equal("stream_idle_timeout", idle.code)
    end)

    -- libcurl 7.88's curl_multi_perform (poll, and blocking calls) never calls the socket
    -- callback: with hooks set, rounds run curl_multi_socket_all instead, and setting hooks
    -- while requests run makes one round, so the hooks learn every socket
    it("tells new hooks every socket watched now (set while a request runs)", function()
      local client = new_client()
      local result
      client:chat_completion_async(chat("emulator/slow:300"), { on_done = function(r, e) result = r or e end })
      client:poll(0.05) -- connected and sent under poll: the socket now waits for the answer
      local loop = fake_loop(client)
      assert.is_true(#loop.socket_calls >= 1)
      assert.is_true(next(loop.watched) ~= nil)
      loop.run_until(function() return result ~= nil end)
      assert.are.equal("Echo: hi", openrouter.text(result))
    end)

    it("watches the socket of a request a blocking call started", function()
      local client = new_client()
      local loop = fake_loop(client)
      local result
      client:chat_completion_async(chat("emulator/slow:500", "background"), {
        on_done = function(r, e) result = r or e end })
      -- the blocking call drives every request of the client: the background one starts
      assert(client:chat_completion(chat(nil, "blocking")))
      assert.is_nil(result)
      assert.is_true(next(loop.watched) ~= nil, "the background request's socket is not watched")
      loop.run_until(function() return result ~= nil end)
      assert.are.equal("Echo: background", openrouter.text(result))
    end)

    it("tells the hooks on close(): sockets gone, no timer, then closed()", function()
      local client = new_client()
      local loop = fake_loop(client)
      local result
      client:chat_completion_async(chat("emulator/stall"), { on_done = function(r, e) result = r or e end })
      loop.run_until(function() return next(loop.watched) ~= nil end)
      client:close()
      assert.are.equal(1, loop.closed)
      assert.is_nil(next(loop.watched), "a socket is still watched after close()")
      assert.is_nil(loop.timer_at)
      assert.are.equal("cancelled", result.kind)
      client:close() -- idempotent: closed() is not called again
      assert.are.equal(1, loop.closed)
    end)

    it("set_loop_hooks(nil) gives the client back to poll", function()
      local client = new_client()
      local loop = fake_loop(client)
      local result
      client:chat_completion_async(chat("emulator/slow:100"), { on_done = function(r, e) result = r or e end })
      loop.step(0.02)
      client:set_loop_hooks(nil)
      local calls = #loop.socket_calls + #loop.timer_calls
      local deadline = socket.gettime() + GUARD
      while client:poll(0.05) > 0 do assert(socket.gettime() < deadline) end
      assert.are.equal("Echo: hi", openrouter.text(result))
      assert.are.equal(calls, #loop.socket_calls + #loop.timer_calls) -- the old hooks hear nothing
    end)

    it("raises a hook's error from the client's call, and the client recovers", function()
      local client = new_client()
      local loop = fake_loop(client)
      local hooks = loop.hooks()
      local raise = true
      local socket_hook = hooks.socket
      hooks.socket = function(fd, events)
        socket_hook(fd, events)
        if raise then error("socket hook failed") end
      end
      client:set_loop_hooks(hooks)
      local result
      client:chat_completion_async(chat(nil, "after a hook error"), {
        on_done = function(r, e) result = r or e end })
      local raised
      local deadline = socket.gettime() + GUARD
      while not raised do
        assert(socket.gettime() < deadline, "the hook never raised")
        local ok, err = pcall(loop.step, 0.01)
        if not ok then raised = err end
      end
      assert.matches("socket hook failed", raised)
      raise = false
      loop.run_until(function() return result ~= nil end)
      assert.are.equal("Echo: after a hook error", openrouter.text(result))
    end)

    it("raises a callback's error from socket_action, as poll does", function()
      local client = new_client()
      local loop = fake_loop(client)
      local result
      client:chat_completion_async(chat(nil, "x"), {
        on_chunk = function() error("callback failed") end,
        on_done = function(r, e) result = r or e end })
      local raised
      local deadline = socket.gettime() + GUARD
      while result == nil do
        assert(socket.gettime() < deadline)
        local ok, err = pcall(loop.step, 0.05)
        if not ok then raised = err end
      end
      assert.matches("callback failed", tostring(raised))
      assert.are.equal("callback", result.kind)
      -- and the loop goes on driving the client
      local next_result
      client:chat_completion_async(chat(nil, "y"), { on_done = function(r, e) next_result = r or e end })
      loop.run_until(function() return next_result ~= nil end)
      assert.are.equal("Echo: y", openrouter.text(next_result))
    end)
  end)
end)
