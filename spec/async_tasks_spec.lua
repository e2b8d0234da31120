-- Coroutines (openrouter.async): blocking calls that yield inside a task, many tasks on
-- one thread, task:wait / task:cancel, req:await, conversations in a task, and what
-- Lua 5.1 cannot do (a yield across pcall or a metamethod) failing with a clear error.
local openrouter = require("openrouter")
local async = require("openrouter.async")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")
local socket = require("socket")

local chat = requests.chat
local THIS_FILE = "async_tasks_spec.lua"

describe("tasks", function()
  local emu = emulator.for_spec()
  local client

  before_each(function()
    client = openrouter.new{ api_key = "sk-or-v1-tasks-k-0123456789", base_url = emu.url, retry_base_delay = 0.01 }
  end)

  after_each(function()
    client:close()
  end)

  -- Polls until no request runs (with a wall-clock guard, not a timing assertion).
  local function drain(limit)
    local deadline = socket.gettime() + (limit or 10)
    local polls = 0
    while client:poll(0.05) > 0 do
      polls = polls + 1
      assert(socket.gettime() < deadline, "requests still running after the guard")
    end
    return polls
  end

  -- The error a task ended with (task:wait raised it).
  local function failure(task)
    local ok, err = pcall(task.wait, task)
    assert.is_false(ok, "task:wait() should have raised")
    return err
  end

  describe("blocking calls inside a task", function()
    it("yield: the main thread runs between polls while the request waits", function()
      local steps = {}
      local task = openrouter.async(function(model)
        steps[#steps + 1] = "start"
        local res, err, info = client:chat_completion(chat(model))
        steps[#steps + 1] = "got reply"
        return openrouter.text(res), err, info
      end, "emulator/slow:200")
      assert.are.same({ "start" }, steps)
      assert.is_false(task.done)
      local ticks = 0
      while not task.done do
        client:poll(0.01)
        ticks = ticks + 1
        assert.is_true(ticks < 2000)
      end
      assert.is_true(ticks > 1)
      local text, err, info = task:wait()
      assert.are.equal("Echo: hi", text)
      assert.is_nil(err)
      assert.are.equal(200, info.status)
      assert.matches("openrouter task %(done%)", tostring(task))
    end)

    it("20 tasks of 200 ms each run together: all done after one drive loop", function()
      local tasks, seen_when_first_done = {}, nil
      for i = 1, 20 do
        tasks[i] = openrouter.async(function()
          local res = assert(client:chat_completion(chat("emulator/slow:200", "n" .. i)))
          -- the first reply: every request must have reached the server already
          seen_when_first_done = seen_when_first_done or #emu:requests()
          return openrouter.text(res)
        end)
      end
      drain()
      for i = 1, 20 do
        assert.is_true(tasks[i].done)
        assert.are.equal("Echo: n" .. i, tasks[i]:wait())
      end
      assert.are.equal(20, seen_when_first_done)
      local connections = {}
      for _, r in ipairs(emu:requests()) do connections[r.connection] = true end
      local n = 0
      for _ in pairs(connections) do n = n + 1 end
      assert.are.equal(20, n)  -- 20 requests in flight at once: 20 connections
    end)

    it("work for every action and client:request", function()
      local task = openrouter.async(function()
        local models = assert(client:get_models{ category = "programming" })
        local credits = assert(client:get_credits())
        local key = assert(client:get_key())
        local completion = assert(client:completion{ model = "m/x", prompt = "Once" })
        local embeddings = assert(client:embeddings{ model = "emulator/embed:4", input = "a" })
        local endpoints = assert(client:get_model_endpoints("openai/gpt-4o-mini"))
        local body, err, info = client:request{ path = "/key" }
        return #models > 0, credits.remaining, type(key.label), openrouter.text(completion),
          #embeddings.data[1].embedding, type(endpoints.endpoints), type(body), err, info.status
      end)
      assert.are.same({ true, 74.75, "string", "Echo: Once", 4, "table", "table", nil, 200 },
        { task:wait() })
    end)

    it("get_generation waits for its stats inside a task", function()
      local res = assert(client:chat_completion(chat()))
      local task = openrouter.async(function()
        return client:get_generation(res.id, { wait = 5 })
      end)
      local g = assert(task:wait())
      assert.are.equal(res.id, g.id)
    end)

    it("outside a task are the C functions, unchanged", function()
      assert.are.equal("function", type(openrouter.Client.chat_completion))
      assert.has_error(function() client:chat_completion({ messages = {} }) end)
      local ok, err = pcall(function()
        local res = client:chat_completion({ messages = {} })  -- not a tail call: its name stays
        return res
      end)
      assert.is_false(ok)
      assert.matches(THIS_FILE .. ":%d+: bad argument #1 to 'chat_completion' %('messages' must be a non%-empty sequence%)", err)
      ok, err = pcall(function()
        local n = client:poll(-1)
        return n
      end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'poll'", err)
      assert.is_false(async.in_task())
    end)

    it("raise argument errors as the blocking calls do", function()
      local function message_of(fn)
        local err = failure(openrouter.async(fn))
        return (err:gsub("^[^:]*" .. THIS_FILE .. ":%d+: ", ""))
      end
      assert.are.equal("bad argument #1 to 'chat_completion' ('messages' must be a non-empty sequence)",
        message_of(function() return client:chat_completion({ messages = {} }) end))
      assert.are.equal("bad argument #2 to 'chat_completion' (function expected, got number)",
        message_of(function() return client:chat_completion(chat(), 5) end))
      assert.are.equal("bad argument #1 to 'get_models' (table expected, got number)",
        message_of(function() return client:get_models(5) end))
      assert.are.equal("bad argument #1 to 'get_model_endpoints' (model id must look like 'author/slug')",
        message_of(function() return client:get_model_endpoints("nope") end))
      assert.are.equal("bad argument #1 to 'request' (unknown field 'nope')",
        message_of(function() return client:request{ path = "/x", nope = 1 } end))
    end)
  end)

  describe("task:wait", function()
    it("returns the function's values, and nil, err of a failed call", function()
      local task = openrouter.async(function(a, b)
        local res, err = client:chat_completion(chat("missing/x"))
        return a + b, res, err
      end, 1, 2)
      local sum, res, err = task:wait()
      assert.are.equal(3, sum)
      assert.is_nil(res)
      assert.are.equal("api", err.kind)
      assert.are.same({ 3, nil, err }, { task:wait() })  -- again: the same values
    end)

    it("raises what the task raised, where it raised it", function()
      local line
      local task = openrouter.async(function()
        client:chat_completion(chat())
        line = debug.getinfo(1, "l").currentline + 1
        error("boom")
      end)
      local err = failure(task)
      assert.are.equal(("%s:%d: boom"):format(debug.getinfo(1, "S").short_src, line), err)
      assert.is_true(task.done)
      assert.are.equal(err, task.error)
      assert.matches(THIS_FILE, task.traceback)
      local object = { kind = "mine" }
      local raised = failure(openrouter.async(function() client:get_credits(); error(object) end))
      assert.are.equal(object, raised)
    end)

    it("drives a task that never waits, and one already done", function()
      local task = openrouter.async(function(x) return x * 2 end, 21)
      assert.is_true(task.done)
      assert.are.equal(42, task:wait())
    end)

    it("refuses a task that waits for itself", function()
      local task
      task = openrouter.async(function()
        coroutine.yield()
        return task:wait()
      end)
      client:poll(0)
      assert.is_true(task.done)
      assert.matches("cannot wait for itself", task.error)
    end)
  end)

  describe("task:cancel", function()
    it("cancels the request the task waits on; the task ends with the cancelled error", function()
      local chunks = 0
      local after = false
      local task = openrouter.async(function()
        local res, err = client:chat_completion(
          chat("emulator/slow:200", "one two three four five six seven eight"),
          function() chunks = chunks + 1 end)
        after = true  -- never reached: a cancelled task is not resumed
        return res, err
      end)
      local deadline = socket.gettime() + 10
      while chunks == 0 do
        client:poll(0.05)
        assert.is_true(socket.gettime() < deadline)
      end
      assert.is_true(task:cancel())
      assert.is_true(task.done)
      assert.is_false(task:cancel())
      local err = failure(task)
      assert.are.equal("cancelled", err.kind)
      assert.are.equal(err, task.error)
      drain()
      assert.is_false(after)
      -- the emulator saw the client walk out of the stream
      assert.is_string(err.generation_id)
      local g = assert(client:get_generation(err.generation_id, { wait = 5 }))
      assert.is_true(g.cancelled)
    end)

    it("ends a task that waits for another task, leaving that one running", function()
      local inner = openrouter.async(function() return client:chat_completion(chat("emulator/slow:100")) end)
      local outer = openrouter.async(function() return inner:wait() end)
      assert.is_true(outer:cancel())
      assert.are.equal("cancelled", failure(outer).kind)
      assert.are.equal("Echo: hi", openrouter.text(inner:wait()))
    end)

    it("from inside a streaming callback ends the task once the round is over", function()
      local task
      task = openrouter.async(function()
        return client:chat_completion(chat("emulator/long:50"), function()
          openrouter.async(function() end)
          if not task.cancelled then task:cancel() end
        end)
      end)
      drain()
      assert.is_true(task.done)
      assert.are.equal("cancelled", task.error.kind)
    end)
  end)

  describe("streaming inside a task", function()
    it("calls the callback with every chunk and returns the assembled response", function()
      local task = openrouter.async(function()
        local pieces = {}
        local res, err = client:chat_completion(chat("emulator/awkward"), function(chunk)
          pieces[#pieces + 1] = openrouter.text(chunk) or ""
        end)
        return table.concat(pieces), res and openrouter.text(res), err
      end)
      local joined, text, err = task:wait()
      assert.is_nil(err)
      assert.are.equal(text, joined)
      assert.matches("Echo: hi$", text)
    end)

    it("false from the callback cancels, as outside a task", function()
      local task = openrouter.async(function()
        return client:chat_completion(chat("emulator/long:20"), function() return false end)
      end)
      local res, err = task:wait()
      assert.is_nil(res)
      assert.are.equal("cancelled", err.kind)
    end)

    it("an error raised by the callback ends the call with that error, in the task", function()
      local other = client:chat_completion_async(chat("emulator/long:30"))
      local line
      local task = openrouter.async(function()
        local ok, err = async.pcall(client.chat_completion, client, chat("emulator/long:20"), function()
          line = debug.getinfo(1, "l").currentline + 1
          error("stop here")
        end)
        return ok, err
      end)
      drain()  -- poll does not raise it
      local ok, err = task:wait()
      assert.is_false(ok)
      assert.are.equal(("%s:%d: stop here"):format(debug.getinfo(1, "S").short_src, line), err)
      assert.is_true(other.done)
      assert.is_nil(other.error)
      -- without a pcall the task ends with it
      local task2 = openrouter.async(function()
        return client:completion({ model = "emulator/long:5", prompt = "x" }, function() error({ code = 7 }) end)
      end)
      assert.are.equal(7, failure(task2).code)
    end)
  end)

  describe("conversations inside a task", function()
    it("conv:say yields, streams, and runs tools whose handlers make calls too", function()
      local conv = client:conversation{ model = "emulator/tools" }
      conv:tool{ name = "get_weather", handler = function(args)
        -- a blocking call inside a tool handler, inside a task: yields on every Lua
        local credits = assert(client:get_credits())
        return { city = args.city, temp_c = 21, credits = credits.remaining }
      end }
      conv:tool{ name = "get_time", handler = function() return "12:00" end }
      local task = openrouter.async(function()
        local reply, err = conv:say("Weather in Paris?")
        return reply, err
      end)
      assert.is_false(task.done)
      drain()
      local reply, err = task:wait()
      assert.is_nil(err)
      assert.matches("^Tool results:", reply)
      assert.matches("74.75", conv.messages[3].content)
      local streamed = openrouter.async(function()
        local deltas = {}
        local conv2 = client:conversation{ model = "openai/gpt-4o-mini" }
        local text = assert(conv2:say("hello there", function(d) deltas[#deltas + 1] = d end))
        return text, table.concat(deltas)
      end)
      local text, joined = streamed:wait()
      assert.are.equal("Echo: hello there", text)
      assert.are.equal(text, joined)
    end)

    it("turn:wait() of say_async yields inside a task", function()
      local conv = client:conversation{ model = "emulator/slow:100" }
      local task = openrouter.async(function()
        local turn = conv:say_async("hi")
        return turn:wait()
      end)
      assert.is_false(task.done)
      assert.are.equal("Echo: hi", task:wait())
      assert.are.equal(3 - 1, #conv.messages)
    end)
  end)

  describe("req:await", function()
    it("yields in a plain coroutine until the request is done; poll resumes it", function()
      local got
      local co = coroutine.wrap(function()
        local req = client:chat_completion_async(chat("emulator/slow:100"))
        local res, err, info = req:await()
        got = { text = openrouter.text(res), err = err, status = info.status }
      end)
      assert.are.equal(async.WAITING, co())
      assert.is_nil(got)
      drain()
      assert.are.same({ text = "Echo: hi", status = 200 }, got)
    end)

    it("on the main thread is req:wait()", function()
      local req = client:chat_completion_async(chat())
      local res, err, info = req:await()
      assert.is_nil(err)
      assert.are.equal("Echo: hi", openrouter.text(res))
      assert.are.equal(200, info.status)
      local failed = client:chat_completion_async(chat("missing/x"))
      local none, e = failed:await()
      assert.is_nil(none)
      assert.are.equal("api", e.kind)
    end)

    it("inside a task: several requests started at once, then awaited", function()
      local task = openrouter.async(function()
        local a = client:chat_completion_async(chat("emulator/slow:100", "a"))
        local b = client:chat_completion_async(chat("emulator/slow:100", "b"))
        return openrouter.text((b:await())), openrouter.text((a:await()))
      end)
      assert.are.same({ "Echo: b", "Echo: a" }, { task:wait() })
    end)
  end)

  describe("nested tasks", function()
    it("a task starts others and waits for them", function()
      local order = {}
      local outer = openrouter.async(function()
        local inner = {}
        for i = 1, 3 do
          inner[i] = openrouter.async(function()
            local res = assert(client:chat_completion(chat("emulator/slow:" .. (150 - 50 * i), "n" .. i)))
            order[#order + 1] = i
            return openrouter.text(res)
          end)
        end
        local texts = {}
        for i = 1, 3 do texts[i] = inner[i]:wait() end
        return table.concat(texts, ",")
      end)
      assert.is_false(outer.done)
      assert.are.equal("Echo: n1,Echo: n2,Echo: n3", outer:wait())
      assert.are.equal(3, #order)
      local failing = openrouter.async(function()
        return openrouter.async(function() client:get_credits(); error("inner failed", 0) end):wait()
      end)
      assert.are.equal("inner failed", failure(failing))
    end)

    it("a task that yields by itself runs again at the next drive", function()
      local rounds = 0
      local task = openrouter.async(function()
        for _ = 1, 3 do rounds = rounds + 1; coroutine.yield() end
        return rounds
      end)
      assert.are.equal(1, rounds)
      client:poll(0)
      assert.are.equal(2, rounds)
      assert.are.equal(3, task:wait())
    end)
  end)

  describe("where a coroutine cannot yield", function()
    it("inside pcall: Lua 5.1 raises a clear error, Lua 5.2+ and LuaJIT yield", function()
      local task = openrouter.async(function()
        return pcall(function() return client:get_credits() end)
      end)
      local ok, res = task:wait()
      if async.yields_across_pcall then
        assert.is_true(ok)
        assert.are.equal(74.75, res.remaining)
      else
        assert.is_false(ok)
        assert.matches(THIS_FILE .. ":%d+: openrouter: get_credits cannot wait here: Lua 5.1 cannot yield across pcall", res)
        assert.matches("openrouter.async.pcall", res)
      end
      assert.are.equal(0, client:poll(0))  -- nothing was started
    end)

    it("openrouter.async.pcall can wait on every Lua", function()
      local task = openrouter.async(function()
        local ok, credits = async.pcall(function() return assert(client:get_credits()) end)
        local failed, err = async.pcall(function() client:get_key(); error("x", 0) end)
        return ok, credits.remaining, failed, err
      end)
      assert.are.same({ true, 74.75, false, "x" }, { task:wait() })
      assert.are.same({ true, 1, 2 }, { async.pcall(function(a, b) return a, b end, 1, 2) })
    end)

    it("inside a metamethod: Lua 5.1 raises a clear error, Lua 5.2+ and LuaJIT yield", function()
      local lazy = setmetatable({}, { __index = function(_, k)
        return assert(client:get_credits())[k]
      end })
      local task = openrouter.async(function() return lazy.remaining end)
      if async.yields_across_pcall then
        assert.are.equal(74.75, task:wait())
      else
        local err = failure(task)
        assert.are.equal("openrouter: get_credits cannot wait here: Lua 5.1 cannot yield inside"
          .. " a metamethod (__index, __add, ...) or a for-in iterator; make the call from plain"
          .. " code (Lua 5.2+ and LuaJIT can)", err)
        drain()  -- the request it had started was cancelled
      end
    end)

    it("inside a C function's callback: a clear error on every Lua", function()
      local task = openrouter.async(function()
        local t = { 2, 1 }
        table.sort(t, function(a, b) client:get_credits(); return a < b end)
      end)
      local err = failure(task)
      assert.matches("openrouter: get_credits cannot wait here: ", err)
      assert.not_matches("attempt to yield", err)
      assert.are.equal(0, client:poll(0))
    end)

    it("inside a for-in iterator on Lua 5.1: a clear error", function()
      local task = openrouter.async(function()
        local n = 0
        for x in function(_, i) if (i or 0) < 2 then client:get_credits(); return (i or 0) + 1 end end do
          n = x
        end
        return n
      end)
      if async.yields_across_pcall then
        assert.are.equal(2, task:wait())
      else
        assert.matches("cannot yield inside a for%-in iterator", failure(task))
      end
    end)
  end)

  describe("resume_ready", function()
    it("is what a host loop calls after driving a client by other means", function()
      local task = openrouter.async(function() return client:get_credits() end)
      assert.are.equal(0, async.resume_ready())
      -- req:wait() drives the client (the task's request too) but resumes nothing
      local resumed = 0
      while resumed == 0 do
        client:chat_completion_async(chat()):wait()
        resumed = async.resume_ready()
      end
      assert.are.equal(1, resumed)
      assert.is_true(task.done)
      assert.are.equal(74.75, task:wait().remaining)
    end)
  end)
end)
