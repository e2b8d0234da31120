-- The non-blocking API: many requests in flight on one Lua thread, driven
-- by client:poll(); request objects; callbacks and their errors; cancel, GC.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")
local socket = require("socket")

describe("async", function()
  local emu = emulator.for_spec()
  local client

  before_each(function()
    client = openrouter.new{ api_key = "sk-or-async-spec", base_url = emu.url, retry_base_delay = 0.01 }
  end)

  after_each(function()
    client:close()
  end)

  local chat = requests.chat

  -- Polls until every request is done (with a wall-clock guard).
  local function drain(c, limit)
    c = c or client
    local deadline = socket.gettime() + (limit or 10)
    local polls = 0
    while c:poll(0.05) > 0 do
      polls = polls + 1
      assert(socket.gettime() < deadline, "requests still running after the guard")
    end
    return polls
  end

  describe("requests", function()
    it("run in the background and call on_done exactly once", function()
      local calls = {}
      local req = client:chat_completion_async(chat(), { on_done = function(res, err)
        calls[#calls + 1] = { res = res, err = err }
      end })
      assert.is_false(req.done)
      assert.matches("openrouter request", tostring(req))
      drain()
      assert.are.equal(1, #calls)
      assert.is_nil(calls[1].err)
      assert.are.equal("Echo: hi", openrouter.text(calls[1].res))
      assert.is_true(req.done)
      assert.are.equal(calls[1].res, req.result)
      assert.is_nil(req.error)
      assert.are.equal(0, client:poll(0))
      assert.are.equal(1, #calls)
    end)

    it("wait() blocks until the request is done and returns res, err", function()
      local req = client:chat_completion_async(chat())
      local res, err = req:wait()
      assert.is_nil(err)
      assert.are.equal("Echo: hi", openrouter.text(res))
      assert.are.equal(res, req:wait())  -- again: the same result
      local failed = client:chat_completion_async(chat("missing/x"))
      local none, e = failed:wait()
      assert.is_nil(none)
      assert.are.equal("api", e.kind)
      assert.are.equal(e, failed.error)
    end)

    it("run in parallel: 20 requests of 0.5 s each take far less than 20 x 0.5 s", function()
      local started, done = socket.gettime(), 0
      local reqs = {}
      for i = 1, 20 do
        reqs[i] = client:chat_completion_async(chat("emulator/slow:500", "n" .. i), {
          on_done = function(res) if res then done = done + 1 end end })
      end
      drain()
      local elapsed = socket.gettime() - started
      assert.are.equal(20, done)
      assert.is_true(elapsed < 5, ("20 parallel requests took %.2f s"):format(elapsed))
      for i = 1, 20 do assert.are.equal("Echo: n" .. i, openrouter.text(reqs[i].result)) end
    end)

    it("poll(0) never waits: it returns at once while a slow request runs", function()
      local req = client:chat_completion_async(chat("emulator/slow:300"))
      local polls = 0
      while not req.done do
        local running = client:poll(0)
        assert.are.equal(req.done and 0 or 1, running)
        polls = polls + 1
        socket.sleep(0.005)
      end
      assert.is_true(polls > 10)
      assert.are.equal("Echo: hi", openrouter.text(req.result))
    end)

    it("reuse one connection for sequential requests", function()
      for _ = 1, 3 do assert(client:chat_completion_async(chat()):wait()) end
      local reqs = emu:requests()
      assert.are.equal(3, #reqs)
      assert.are.equal(reqs[1].connection, reqs[3].connection)
    end)

    it("exist for every action", function()
      local models = assert(client:get_models_async{ query = { category = "programming" } }:wait())
      assert.is_true(#models > 0)
      assert.are.equal("category=programming", emu:last_request().query)
      local credits = assert(client:get_credits_async():wait())
      assert.are.equal(74.75, credits.remaining)
      local text = assert(client:completion_async({ model = "m/x", prompt = "Once" }):wait())
      assert.are.equal("Echo: Once", openrouter.text(text))
    end)

    it("raise on misuse like the blocking calls", function()
      assert.has_error(function() client:chat_completion_async({ messages = {} }) end,
        "bad argument #1 to 'chat_completion_async' ('messages' must be a non-empty sequence)")
      assert.has_error(function() client:chat_completion_async(chat(), { on_done = 1 }) end,
        "bad argument #2 to 'chat_completion_async' ('on_done' must be a function, got number)")
      assert.has_error(function() client:chat_completion_async(chat(), { coalesce = -1 }) end)
      assert.has_error(function() client:poll(-1) end)
      assert.has_error(function() client:get_credits_async(5) end)
    end)
  end)

  describe("streaming", function()
    it("calls on_response, then on_chunk in order, then on_done", function()
      local events = {}
      local req = client:chat_completion_async(chat("emulator/awkward"), {
        on_response = function(status, headers)
          events[#events + 1] = "response " .. status
          assert.matches("^text/event%-stream", headers["content-type"])
          assert.matches("^gen%-", headers["x-generation-id"])
        end,
        on_chunk = function(chunk) events[#events + 1] = openrouter.text(chunk) or "" end,
        on_done = function(res) events[#events + 1] = "done " .. openrouter.text(res) end,
      })
      drain()
      assert.are.equal("response 200", events[1])
      local text = table.concat(events, "", 2, #events - 1)
      assert.are.equal("h\195\169llo w\195\182rld \226\156\147 \240\159\152\128 Echo: hi", text)
      assert.are.equal("done " .. text, events[#events])
      assert.is_true(req.done)
    end)

    it("tells on_response the status of an error before on_done", function()
      local events = {}
      client:chat_completion_async(chat("missing/x"), {
        on_response = function(status) events[#events + 1] = status end,
        on_done = function(_, err) events[#events + 1] = err.kind end,
      })
      drain()
      assert.are.same({ 400, "api" }, events)
    end)

    it("coalesces deltas: fewer deliveries, the same text", function()
      local deliveries, pieces, counted = 0, {}, 0
      local req = client:chat_completion_async(chat("emulator/slow:20", "a b c d e f g h i j"), {
        coalesce = 0.1,
        on_chunk = function(chunk)
          deliveries = deliveries + 1
          counted = counted + (chunk.coalesced or 1)
          pieces[#pieces + 1] = openrouter.text(chunk) or ""
        end,
      })
      local res = assert(req:wait())
      assert.are.equal(openrouter.text(res), table.concat(pieces))
      assert.is_true(counted > deliveries, ("%d chunks in %d deliveries"):format(counted, deliveries))
      assert.is_true(deliveries >= 2)
    end)

    it("cancels when on_chunk returns false", function()
      local n = 0
      local req = client:chat_completion_async(chat("emulator/long:500"), {
        on_chunk = function() n = n + 1; if n == 3 then return false end end })
      local res, err = req:wait()
      assert.is_nil(res)
      assert.are.equal("cancelled", err.kind)
      assert.are.equal(3, n)
      assert.is_string(openrouter.text(err.partial))
    end)
  end)

  describe("cancel", function()
    it("ends the request with kind 'cancelled' and leaves the client working", function()
      local got
      local req = client:chat_completion_async(chat("emulator/stall"), {
        on_done = function(res, err) got = { res = res, err = err } end })
      client:poll(0.05)
      assert.is_true(req:cancel())
      assert.is_true(req.done)
      assert.is_nil(got.res)
      assert.are.equal("cancelled", got.err.kind)
      assert.is_false(req:cancel())  -- already done
      assert.are.equal(0, client:poll(0))
      assert.are.equal("Echo: hi", openrouter.text(assert(client:chat_completion(chat()))))
    end)

    it("works on a request waiting to retry and on one not started yet", function()
      local a = client:chat_completion_async(chat("emulator/fail:503:5"), {}) -- retries after backoff
      local b = client:chat_completion_async(chat())
      assert.is_true(b:cancel())
      assert.are.equal("cancelled", b.error.kind)
      client:poll(0.05)
      assert.is_true(a:cancel())
      assert.are.equal("cancelled", a.error.kind)
      assert.are.equal(0, client:poll(0))
    end)

    it("from inside a callback takes effect when the round ends", function()
      local other = client:chat_completion_async(chat("emulator/stall"))
      local req = client:chat_completion_async(chat("emulator/long:50"), {
        on_chunk = function() other:cancel() end })
      assert(req:wait())
      assert.is_true(other.done)
      assert.are.equal("cancelled", other.error.kind)
    end)

    it("never happens to a request object that is garbage-collected while running", function()
      -- a request in flight belongs to its client (spec/ownership_spec.lua has the rest)
      local kind
      do
        client:chat_completion_async(chat("emulator/stall"), { on_done = function(_, err) kind = err.kind end })
      end
      client:poll(0.02)
      assert.are.equal(1, client:poll(0))
      collectgarbage()
      collectgarbage()
      assert.are.equal(1, client:poll(0))
      assert.is_nil(kind)
      client:close()
      assert.are.equal("cancelled", kind)
    end)

    it("keeps a finished request's outcome after its client is collected", function()
      -- the request outlives the client's memory: collecting it afterwards must not
      -- touch the client (check-asan and check-valgrind run this)
      local c = openrouter.new{ api_key = "sk-or-async-spec", base_url = emu.url }
      local req = c:chat_completion_async(chat())
      assert(req:wait())
      c = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      assert.is_true(req.done)
      assert.are.equal("Echo: hi", req.result.choices[1].message.content)
      req = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
    end)

    it("close() on a running request cancels it and releases it", function()
      local kinds = {}
      local req = client:chat_completion_async(chat("emulator/stall"), {
        on_done = function(_, err) kinds[#kinds + 1] = err.kind end })
      client:poll(0.02)
      req:close()
      req:close()
      assert.are.same({ "cancelled" }, kinds)
      assert.is_true(req.done)
      assert.has_error(function() req:wait() end, "attempt to wait for a closed request")
    end)

    it("client:close() cancels every request in flight", function()
      local c = openrouter.new{ api_key = "sk-or-v1-async-k-0123456789", base_url = emu.url }
      local kinds = {}
      for i = 1, 3 do
        c:chat_completion_async(chat("emulator/stall", "s" .. i), {
          on_done = function(_, err) kinds[#kinds + 1] = err.kind end })
      end
      c:poll(0.02)
      c:close()
      assert.are.same({ "cancelled", "cancelled", "cancelled" }, kinds)
      assert.has_error(function() c:poll(0) end, "attempt to use a closed openrouter client")
    end)
  end)

  describe("errors in callbacks", function()
    it("from on_chunk: poll raises it, on_done gets kind 'callback', the rest goes on", function()
      local done_err, other_res
      local marker = { "marker" }
      client:chat_completion_async(chat("emulator/long:50"), {
        on_chunk = function() error(marker) end,
        on_done = function(_, err) done_err = err end })
      client:chat_completion_async(chat("emulator/slow:100"), {
        on_done = function(res) other_res = res end })
      local raised
      local deadline = socket.gettime() + 10
      while socket.gettime() < deadline do
        local ok, n = pcall(client.poll, client, 0.05)
        if not ok then raised = n elseif n == 0 then break end
      end
      assert.are.equal(marker, raised)
      assert.are.equal("callback", done_err.kind)
      assert.are.equal(marker, done_err.cause)
      assert.are.equal("Echo: hi", openrouter.text(other_res))
      assert(client:chat_completion(chat()))
    end)

    it("from on_done: poll raises it after every on_done ran", function()
      local ran = 0
      client:chat_completion_async(chat(), { on_done = function() ran = ran + 1; error("first", 0) end })
      client:chat_completion_async(chat(), { on_done = function() ran = ran + 1; error("second", 0) end })
      local deadline, raised = socket.gettime() + 10, {}
      while ran < 2 and socket.gettime() < deadline do
        local ok, e = pcall(client.poll, client, 0.05)
        if not ok then raised[#raised + 1] = e end
      end
      -- both ran although each raised; a round that finished both raised once (the
      -- first to complete), rounds that finished one each raised each
      assert.are.equal(2, ran)
      assert.is_true(#raised >= 1 and #raised <= 2)
      for _, e in ipairs(raised) do assert.is_true(e == "first" or e == "second") end
      assert.are.equal(0, client:poll(0))
    end)

    it("a blocking call or poll from inside on_chunk is refused; from on_done it works", function()
      local refused, nested
      local req = client:chat_completion_async(chat(), {
        on_chunk = function()
          if refused == nil then
            local ok, e = pcall(client.get_credits, client)
            refused = not ok and e
          end
        end,
        on_done = function() nested = assert(client:get_credits()) end,
      })
      assert(req:wait())
      assert.matches("busy", refused)
      assert.are.equal(74.75, nested.remaining)
    end)

    it("a request started from inside on_chunk runs", function()
      local started
      local req = client:chat_completion_async(chat(), {
        on_chunk = function() started = started or client:chat_completion_async(chat(nil, "second")) end })
      assert(req:wait())
      local res = assert(started:wait())
      assert.are.equal("Echo: second", openrouter.text(res))
    end)
  end)

  describe("retries and timeouts", function()
    it("a retry wait never blocks poll", function()
      local req = client:chat_completion_async(chat("emulator/fail:429:1:1"))
      local started, polls = socket.gettime(), 0
      while not req.done do
        client:poll(0)
        polls = polls + 1
        socket.sleep(0.002)
        assert(socket.gettime() - started < 10)
      end
      assert.is_true(socket.gettime() - started >= 0.9)
      assert.is_true(polls > 50)
      assert.are.equal("Echo: hi", openrouter.text(req.result))
    end)

    it("timeouts end a request as in the blocking calls", function()
      local c = openrouter.new{ api_key = "sk-or-v1-async-k-0123456789", base_url = emu.url, timeout = 0.5, max_retries = 0 }
      local res, err = c:chat_completion_async(chat("emulator/stall")):wait()
      assert.is_nil(res)
      assert.are.equal("timeout", err.kind)
      c:close()
    end)
  end)

  describe("conversations", function()
    it("say_async streams, calls on_done and updates the history on success", function()
      local conv = client:conversation{ model = "openai/gpt-4o-mini", system = "S" }
      local deltas, result = {}, nil
      local turn = conv:say_async("hello", {
        on_delta = function(d) deltas[#deltas + 1] = d end,
        on_done = function(text, err) result = { text = text, err = err } end })
      assert.is_false(turn.done)
      assert.are.equal(1, #conv.messages)
      drain()
      assert.is_true(turn.done)
      assert.are.equal("Echo: hello", result.text)
      assert.are.equal(result.text, table.concat(deltas))
      assert.are.equal(3, #conv.messages)
      assert.are.equal("Echo: hello", turn.result)
    end)

    it("say_async runs tools and leaves the history alone on failure", function()
      local conv = client:conversation{ model = "emulator/tools" }
      conv:tool{ name = "get_weather", handler = function() return "sunny" end }
      conv:tool{ name = "get_time", handler = function() return "noon" end }
      local text = assert(conv:say_async("weather?"):wait())
      assert.are.equal("Tool results: sunny; noon", text)
      assert.are.equal(5, #conv.messages)
      conv.model = "missing/x"
      local none, err = conv:say_async("again"):wait()
      assert.is_nil(none)
      assert.are.equal("api", err.kind)
      assert.are.equal(5, #conv.messages)
    end)

    it("say_async can be cancelled", function()
      local conv = client:conversation{ model = "emulator/stall" }
      local turn = conv:say_async("x")
      client:poll(0.02)
      assert.is_true(turn:cancel())
      local none, err = turn:wait()
      assert.is_nil(none)
      assert.are.equal("cancelled", err.kind)
      assert.are.equal(0, #conv.messages)
    end)
  end)
end)
