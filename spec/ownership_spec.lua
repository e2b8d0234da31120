-- Who owns what (doc/design.md, "Who owns what"): a request in flight belongs to its
-- client, so dropping its object neither cancels it nor skips on_done; no object
-- outlives the memory it points to, whatever order the collector finalizes them in.
-- Each case here crashed or lost requests before the ownership was fixed (issue 11);
-- `make check-asan` and `make check-gc` run them under ASan and a collector that
-- steps after every few allocations.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")
local spawn = require("spec.support.spawn")
local socket = require("socket")

local chat = requests.chat
local KEY = "sk-or-ownership-spec"

describe("ownership", function()
  local emu = emulator.for_spec()
  local client

  before_each(function()
    client = openrouter.new{ api_key = KEY, base_url = emu.url, retry_base_delay = 0.01 }
  end)

  after_each(function()
    client:close()
  end)

  -- Polls until nothing is in flight, collecting garbage on every turn.
  local function drain_collecting(c)
    local deadline = socket.gettime() + 20
    while c:poll(0.01) > 0 do
      collectgarbage()
      assert(socket.gettime() < deadline, "requests still running after the guard")
    end
    collectgarbage()
  end

  describe("fire and forget", function()
    it("runs on_done exactly once for 100 requests whose objects were dropped", function()
      local done, ok = {}, 0
      for i = 1, 100 do
        client:chat_completion_async(chat(nil, "n" .. i), { on_done = function(res, err)
          done[i] = (done[i] or 0) + 1
          if res and res.choices[1].message.content == "Echo: n" .. i then ok = ok + 1 end
          assert(err == nil, tostring(err))
        end })
      end
      collectgarbage()
      drain_collecting(client)
      for i = 1, 100 do assert.are.equal(1, done[i], "on_done of request " .. i) end
      assert.are.equal(100, ok)
      assert.are.equal(100, #emu:requests())
    end)

    it("streams to a dropped request's on_chunk until its on_done", function()
      local chunks, result = 0, nil
      client:chat_completion_async(chat("emulator/long:30"), {
        on_chunk = function() chunks = chunks + 1 end,
        on_done = function(res) result = res end })
      drain_collecting(client)
      assert.is_true(chunks >= 30)
      assert.are.equal(string.rep("tok ", 30), openrouter.text(result))
    end)

    it("is not cancelled by a collection while it waits to retry", function()
      local got
      client:chat_completion_async(chat("emulator/fail:503:1"), {
        on_done = function(res, err) got = res or err end })
      client:poll(0)
      collectgarbage()
      drain_collecting(client)
      assert.is_truthy(got and got.choices, "the retried request completed")
    end)

    it("ends with close(), whose cancellation reaches every dropped request's on_done", function()
      local kinds = {}
      for _ = 1, 5 do
        client:chat_completion_async(chat("emulator/stall"), { on_done = function(_, err)
          kinds[#kinds + 1] = err and err.kind end })
      end
      client:poll(0.02)
      collectgarbage()
      client:close()
      assert.are.same({ "cancelled", "cancelled", "cancelled", "cancelled", "cancelled" }, kinds)
    end)

    it("frees a done request once its object is dropped", function()
      -- a weak table sees the object go only when nothing holds it any more
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = client:chat_completion_async(chat(), {})
      drain_collecting(client)
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
    end)
  end)

  describe("finalizer order", function()
    it("survives a finalizer that drives the client during the collection (issue 11, #2)", function()
      local c = openrouter.new{ api_key = KEY, base_url = emu.url }
      local done = 0
      c:chat_completion_async(chat(), { on_done = function() done = done + 1 end })
      c:poll(0)
      do
        setmetatable({}, { __gc = function() while c:poll(0.01) > 0 do end end })
      end
      collectgarbage()
      collectgarbage()
      while c:poll(0.01) > 0 do end
      assert.are.equal(1, done)
      c:close()
    end)

    it("lets a done request outlive its client: wait() after the client was collected (#3)", function()
      local c = openrouter.new{ api_key = KEY, base_url = emu.url }
      local req = c:chat_completion_async(chat())
      assert(req:wait())
      c = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      local res, err = req:wait()
      assert.is_nil(err)
      assert.are.equal("Echo: hi", openrouter.text(res))
      assert.is_false(req:cancel())
      req:close()
      assert.is_true(req.done)
    end)

    it("keeps a client alive while a dropped request of it is in flight", function()
      local weak = setmetatable({}, { __mode = "v" })
      local got
      do
        local c = openrouter.new{ api_key = KEY, base_url = emu.url }
        weak.client = c
        c:chat_completion_async(chat(), { on_done = function(res) got = res end })
      end
      collectgarbage()
      collectgarbage()
      local c = assert(weak.client, "the client was collected with a request in flight")
      while c:poll(0.01) > 0 do end
      assert.are.equal("Echo: hi", openrouter.text(got))
      c = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak.client, "a client with nothing in flight is collectable")
    end)

    -- At lua_close every finalizer runs, reachable or not, in an order this spec cannot
    -- choose: each script ends its state with requests in every phase, objects kept or
    -- dropped, a finalizer that drives the client, in both creation orders.
    local function run_child(body)
      local dir = spawn.tempdir("openrouter-spec-ownership")
      local path = dir .. "/child.lua"
      spawn.write_file(path, "local openrouter = require('openrouter')\n"
        .. "local URL = " .. ("%q"):format(emu.url) .. "\n"
        .. "local function chat(m) return { model = m or 'openai/gpt-4o-mini',"
        .. " messages = { { role = 'user', content = 'hi' } } } end\n"
        .. body .. "\nio.write('child ran to the end\\n')\n")
      local lua = os.getenv("OPENROUTER_EMULATOR_LUA") or "lua5.4"
      -- not spawn.run: under check-asan the child keeps the preloaded sanitizer runtime
      local h = assert(io.popen(lua .. " " .. spawn.quote(path) .. " 2>&1", "r"))
      local out = h:read("*a")
      h:close()
      spawn.remove_tree(dir)
      return out
    end

    local scripts = {
      ["requests dropped in flight"] = [[
        local c = openrouter.new{ api_key = "sk-or-v1-ownership-0123456789", base_url = URL }
        for i = 1, 10 do c:chat_completion_async(chat(i % 2 == 0 and "emulator/stall" or nil), {}) end
        c:poll(0.02)]],
      ["objects kept in a global, client dropped"] = [[
        KEEP = {}
        local c = openrouter.new{ api_key = "sk-or-v1-ownership-0123456789", base_url = URL }
        for i = 1, 10 do KEEP[i] = c:chat_completion_async(chat("emulator/long:1000"), { on_chunk = function() end }) end
        c:poll(0.02)]],
      ["a finalizer made before the client drives it"] = [[
        local c
        setmetatable({}, { __gc = function() if c then pcall(c.poll, c, 0.01) end end })
        c = openrouter.new{ api_key = "sk-or-v1-ownership-0123456789", base_url = URL }
        KEEP = c:chat_completion_async(chat("emulator/stall"), {})
        c:chat_completion_async(chat(), {})
        c:poll(0.02)]],
      ["a finalizer made after the client drives it"] = [[
        local c = openrouter.new{ api_key = "sk-or-v1-ownership-0123456789", base_url = URL }
        KEEP = c:chat_completion_async(chat("emulator/stall"), {})
        c:chat_completion_async(chat("emulator/fail:503:5"), {})
        c:poll(0.02)
        setmetatable({}, { __gc = function() pcall(c.poll, c, 0.01); pcall(KEEP.cancel, KEEP) end })]],
      ["a done request and a closed client"] = [[
        local c = openrouter.new{ api_key = "sk-or-v1-ownership-0123456789", base_url = URL }
        KEEP = c:chat_completion_async(chat(), {})
        KEEP:wait()
        c:close()]],
    }
    for name, body in pairs(scripts) do
      it("ends the Lua state cleanly: " .. name, function()
        local out = run_child(body)
        assert.is_truthy(out:find("child ran to the end", 1, true), out)
        assert.is_nil(out:find("ERROR: AddressSanitizer", 1, true), out)
        assert.is_nil(out:find("runtime error", 1, true), out)
      end)
    end
  end)

  describe("cancel from inside on_chunk (#6)", function()
    it("delivers nothing after the request cancelled itself", function()
      local calls, after_cancel, req = 0, 0, nil
      local cancelled = false
      req = client:chat_completion_async(chat("emulator/long:400"), {
        on_chunk = function()
          calls = calls + 1
          if cancelled then after_cancel = after_cancel + 1 end
          if calls == 3 then
            cancelled = true
            assert(req:cancel())
          end
        end })
      local _, err = req:wait()
      assert.are.equal("cancelled", err.kind)
      assert.are.equal(0, after_cancel)
      assert.are.equal(3, calls)
    end)

    it("delivers nothing to a request another request's on_chunk cancelled", function()
      local other_calls_after, other, cancelled = 0, nil, false
      -- other streams slowly (an event every 5 ms), so it is still running when cancelled
      other = client:chat_completion_async(chat("emulator/slow:5", string.rep("w ", 60)), {
        on_chunk = function() if cancelled then other_calls_after = other_calls_after + 1 end end })
      client:poll(0.02)
      local req = client:chat_completion_async(chat("emulator/long:400"), {
        on_chunk = function()
          if not cancelled then
            cancelled = true
            other:cancel()
          end
        end })
      assert(req:wait())
      assert.are.equal("cancelled", other.error.kind)
      assert.are.equal(0, other_calls_after)
    end)
  end)
end)
