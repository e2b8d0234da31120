-- Conversations (lua/openrouter/conversation.lua): history, streaming say,
-- the tool loop, usage, history tools, persistence, trimming; and every
-- failure leaving the history exactly as it was.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local cjson = require("cjson")
local socket = require("socket")

describe("conversation", function()
  local emu = emulator.for_spec()
  local client

  teardown(function()
    if client then client:close() end
  end)

  before_each(function()
    client = openrouter.new{ api_key = "sk-or-conv-spec", base_url = emu.url, retry_base_delay = 0.01 }
  end)

  local function snapshot(conv)
    return cjson.encode(conv.messages)
  end

  local weather_calls, time_calls
  local function with_tools(conv)
    weather_calls, time_calls = {}, {}
    conv:tool{ name = "get_weather", description = "Weather for a city",
      parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } },
      handler = function(args)
        weather_calls[#weather_calls + 1] = args
        return { temp_c = 21 }  -- one key: JSON key order is not defined
      end }
    conv:tool{ name = "get_time", description = "Time in a zone",
      parameters = { type = "object", properties = { tz = { type = "string" } } },
      handler = function(args)
        time_calls[#time_calls + 1] = args
        return "12:00"
      end }
    return conv
  end

  describe("say", function()
    it("appends the user message and the reply, sending system, history and params", function()
      local conv = client:conversation{ model = "openai/gpt-4o-mini", system = "Be terse.",
        params = { temperature = 0, provider = { sort = "price" } } }
      local text, err = conv:say("Hello")
      assert.is_nil(err)
      assert.are.equal("Echo: Hello", text)
      assert.are.equal(3, #conv.messages)
      assert.are.same({ role = "system", content = "Be terse." }, conv.messages[1])
      assert.are.same({ role = "user", content = "Hello" }, conv.messages[2])
      assert.are.equal("assistant", conv.messages[3].role)
      assert.are.equal("Echo: Hello", conv.messages[3].content)
      local body = emu:last_request().json
      assert.are.equal("openai/gpt-4o-mini", body.model)
      assert.are.equal(0, body.temperature)
      assert.are.same({ sort = "price" }, body.provider)
      assert.are.equal(2, #body.messages)
      assert.is_nil(body.tools)
    end)

    it("sends the whole history on the next turn", function()
      local conv = client:conversation{ model = "m/x", system = "S" }
      assert(conv:say("one"))
      assert.are.equal("Echo: two", assert(conv:say("two")))
      local msgs = emu:last_request().json.messages
      assert.are.equal(4, #msgs)
      assert.are.equal("one", msgs[2].content)
      assert.are.equal("Echo: one", msgs[3].content)
      assert.are.equal("two", msgs[4].content)
      assert.are.equal(5, #conv.messages)
    end)

    it("streams: on_delta gets each new piece of text, joined equal to the reply", function()
      local conv = client:conversation{ model = "emulator/awkward" }
      local pieces, chunks = {}, 0
      local text = assert(conv:say("Hi", function(delta, chunk)
        assert.is_string(delta)
        assert.is_table(chunk)
        pieces[#pieces + 1] = delta
        chunks = chunks + 1
      end))
      assert.is_true(chunks > 3)
      assert.are.equal(table.concat(pieces), text)
      assert.are.equal("h\195\169llo w\195\182rld \226\156\147 \240\159\152\128 Echo: Hi", text)
      assert.are.equal(text, conv.messages[#conv.messages].content)
      assert.is_true(emu:last_request().json.stream)
    end)

    it("takes content parts", function()
      local conv = client:conversation{ model = "m/x" }
      local parts = { { type = "text", text = "What is" },
                      { type = "image_url", image_url = { url = "data:image/png;base64,AAAA" } } }
      assert.are.equal("Echo: What is", assert(conv:say(parts)))
      assert.are.same(parts, emu:last_request().json.messages[1].content)
      assert.are.same(parts, conv.messages[1].content)
    end)

    it("raises on misuse", function()
      local conv = client:conversation{ model = "m/x" }
      assert.has_error(function() conv:say(nil) end,
        "bad argument #1 to 'say' (string or array of content parts expected, got nil)")
      assert.has_error(function() conv:say("x", 5) end,
        "bad argument #2 to 'say' (function or table expected, got number)")
      assert.has_error(function() client:conversation{ modle = "x" } end,
        "bad argument #1 to 'conversation' (unknown option 'modle')")
      assert.has_error(function() client:conversation{ params = { messages = {} } } end)
      assert.has_error(function() conv:tool{ name = "bad name", handler = print } end)
      assert.has_error(function() conv:tool{ name = "ok" } end)
      assert.are.equal(0, #conv.messages)
    end)
  end)

  describe("a failed say leaves the history as it was", function()
    local function check_unchanged(conv, text, err, before, kind)
      assert.is_nil(text)
      assert.are.equal(kind, err.kind)
      assert.are.equal(before, snapshot(conv))
    end

    local function primed()
      local conv = client:conversation{ model = "openai/gpt-4o-mini", system = "S" }
      assert(conv:say("first"))
      return conv, snapshot(conv)
    end

    it("on an API error", function()
      local conv, before = primed()
      conv.model = "missing/model"
      local text, err = conv:say("again")
      check_unchanged(conv, text, err, before, "api")
      conv.model = "openai/gpt-4o-mini"
      assert.are.equal("Echo: again", assert(conv:say("again")))
      assert.are.equal(5, #conv.messages)
    end)

    it("on a network error", function()
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      server:close()
      local dead = openrouter.new{ api_key = "k", base_url = ("http://127.0.0.1:%d/api/v1"):format(port),
        max_retries = 0 }
      local conv = dead:conversation{ model = "m/x", system = "S" }
      local before = snapshot(conv)
      local text, err = conv:say("hello")
      check_unchanged(conv, text, err, before, "network")
      dead:close()
    end)

    it("on an error in the middle of a stream, the partial text in err.partial", function()
      local conv, before = primed()
      conv.model = "emulator/mid-stream-error"
      local seen = {}
      local text, err = conv:say("again", function(d) seen[#seen + 1] = d end)
      check_unchanged(conv, text, err, before, "api")
      assert.are.equal(table.concat(seen), openrouter.text(err.partial))
      assert.is_true(#seen > 0)
    end)

    it("when on_delta cancels by returning false", function()
      local conv, before = primed()
      conv.model = "emulator/long:200"
      local n = 0
      local text, err = conv:say("again", function() n = n + 1; if n == 3 then return false end end)
      check_unchanged(conv, text, err, before, "cancelled")
      assert.is_string(openrouter.text(err.partial))
    end)

    it("when on_delta raises: the error propagates", function()
      local conv, before = primed()
      local ok, e = pcall(conv.say, conv, "again", function() error("ui gone", 0) end)
      assert.is_false(ok)
      assert.are.equal("ui gone", e)
      assert.are.equal(before, snapshot(conv))
    end)

    it("when a tool handler raises", function()
      local conv = client:conversation{ model = "emulator/tools" }
      conv:tool{ name = "get_weather", handler = function() error({ code = "down" }) end }
      conv:tool{ name = "get_time", handler = function() return "12:00" end }
      local before = snapshot(conv)
      local text, err = conv:say("Weather?")
      check_unchanged(conv, text, err, before, "tool")
      assert.are.equal("get_weather", err.tool)
      assert.are.equal("call_1", err.tool_call_id)
      assert.are.same({ code = "down" }, err.cause)
      assert.matches("tool 'get_weather' failed", err.message)
    end)

    it("when tool arguments are not JSON: a clear error, not a crash", function()
      local conv = with_tools(client:conversation{ model = "emulator/tools-bad-json" })
      local before = snapshot(conv)
      local text, err = conv:say("Weather?")
      check_unchanged(conv, text, err, before, "tool")
      assert.matches("arguments for tool 'get_weather' are not a JSON object", err.message)
      assert.are.equal("{city: Paris", err.arguments)
      assert.are.equal(0, #weather_calls)
    end)

    it("when the model calls a tool that is not registered", function()
      local conv = client:conversation{ model = "emulator/tools" }
      conv:tool{ name = "get_weather", handler = function() return "sunny" end }
      local before = snapshot(conv)
      local text, err = conv:say("Weather?")
      check_unchanged(conv, text, err, before, "tool")
      assert.matches("unknown tool 'get_time'", err.message)
    end)

    it("when max_tool_rounds is reached", function()
      local conv = with_tools(client:conversation{ model = "emulator/tools-loop", max_tool_rounds = 2 })
      local before = snapshot(conv)
      local text, err = conv:say("Weather?")
      check_unchanged(conv, text, err, before, "tool")
      assert.matches("max_tool_rounds", err.message)
      assert.are.equal(3, #emu:requests())
      assert.are.equal(2, #weather_calls)
    end)
  end)

  describe("tools", function()
    local function check_tool_history(conv, text)
      assert.are.equal('Tool results: {"temp_c":21}; 12:00', text)
      assert.are.same({ { city = "Paris" } }, weather_calls)
      assert.are.same({ { tz = "Europe/Paris" } }, time_calls)
      local m = conv.messages
      assert.are.equal(5, #m)
      assert.are.equal("user", m[1].role)
      assert.are.equal("assistant", m[2].role)
      assert.are.equal(2, #m[2].tool_calls)
      assert.are.same({ role = "tool", tool_call_id = "call_1", content = '{"temp_c":21}' }, m[3])
      assert.are.same({ role = "tool", tool_call_id = "call_2", content = "12:00" }, m[4])
      assert.are.equal("assistant", m[5].role)
      assert.are.equal(text, m[5].content)
    end

    it("runs the model -> tools -> model loop, every call in order", function()
      local conv = with_tools(client:conversation{ model = "emulator/tools" })
      local text = assert(conv:say("Weather in Paris?"))
      check_tool_history(conv, text)
      local reqs = emu:requests()
      assert.are.equal(2, #reqs)
      for _, r in ipairs(reqs) do  -- the tool definitions go out on every turn
        assert.are.equal(2, #r.json.tools)
        assert.are.equal("function", r.json.tools[1].type)
        assert.are.equal("get_weather", r.json.tools[1]["function"].name)
        assert.are.equal("Weather for a city", r.json.tools[1]["function"].description)
        assert.are.same({ "city" }, r.json.tools[1]["function"].parameters.required)
        assert.are.equal("get_time", r.json.tools[2]["function"].name)
      end
      assert.are.equal(4, #reqs[2].json.messages)
      assert.are.equal("call_2", reqs[2].json.messages[4].tool_call_id)
    end)

    it("runs the same loop streamed, tool-call deltas merged", function()
      local conv = with_tools(client:conversation{ model = "emulator/tools" })
      local pieces = {}
      local text = assert(conv:say("Weather in Paris?", function(d) pieces[#pieces + 1] = d end))
      check_tool_history(conv, text)
      assert.are.equal(text, table.concat(pieces))
    end)

    it("sends reasoning_details back unchanged on the next turn", function()
      for _, streamed in ipairs{ false, true } do
        emu:reset()
        local conv = with_tools(client:conversation{ model = "emulator/reasoning-tools" })
        assert(conv:say("Weather?", streamed and function() end or nil))
        local sent = emu:requests()[2].json.messages[2]
        assert.are.equal("assistant", sent.role)
        assert.are.equal(1, #sent.reasoning_details)
        assert.are.equal("Thinking about it.", sent.reasoning_details[1].text)
        assert.are.equal("sig-abc", sent.reasoning_details[1].signature)
        assert.are.equal("anthropic-claude-v1", sent.reasoning_details[1].format)
        assert.are.same(conv.messages[2].reasoning_details, sent.reasoning_details)
      end
    end)

    it("sends an empty schema's required list as [] and encodes a nil result as null", function()
      local conv = client:conversation{ model = "emulator/tools" }
      conv:tool{ name = "get_weather", parameters = { type = "object", properties = {}, required = {} },
        handler = function() return nil end }
      conv:tool{ name = "get_time", handler = function() return { ok = true } end }
      assert(conv:say("x"))
      local raw = emu:requests()[1].body
      assert.matches('"required":%[%]', raw)
      assert.matches('"properties":{}', raw)
      assert.are.equal("null", conv.messages[3].content)
    end)
  end)

  describe("usage", function()
    it("adds up every request, tool rounds included", function()
      local conv = with_tools(client:conversation{ model = "emulator/tools" })
      assert(conv:say("Weather?"))
      local u = conv:usage()
      assert.are.equal(2, u.requests)
      assert.is_true(u.prompt_tokens > 0)
      assert.are.equal(u.prompt_tokens + u.completion_tokens, u.total_tokens)
      assert.is_true(u.cost > 0)
    end)

    it("counts the same for a streamed and a plain conversation (no double counting)", function()
      local a = client:conversation{ model = "openai/gpt-4o-mini" }
      local b = client:conversation{ model = "openai/gpt-4o-mini" }
      assert(a:say("one two three"))
      assert(b:say("one two three", function() end))
      assert.are.same(a:usage(), b:usage())
      local direct = assert(client:chat_completion{ model = "openai/gpt-4o-mini",
        messages = { { role = "user", content = "one two three" } } })
      assert.are.equal(direct.usage.total_tokens, a:usage().total_tokens)
      assert.are.equal(direct.usage.cost, a:usage().cost)
    end)

    it("copes with responses that carry no usage", function()
      local conv = client:conversation{ model = "emulator/no-usage" }
      assert(conv:say("hi"))
      local u = conv:usage()
      assert.are.equal(1, u.requests)
      assert.are.equal(0, u.total_tokens)
      assert.is_nil(u.cost)
    end)

    it("returns a copy", function()
      local conv = client:conversation{ model = "m/x" }
      conv:usage().total_tokens = 99
      assert.are.equal(0, conv:usage().total_tokens)
    end)
  end)

  describe("history tools", function()
    it("last, undo, reset, add", function()
      local conv = client:conversation{ model = "m/x", system = "S" }
      assert.is_nil(conv:last())
      assert(conv:say("one"))
      assert(conv:say("two"))
      assert.are.equal("Echo: two", conv:last())
      assert.is_true(conv:undo())
      assert.are.equal(3, #conv.messages)
      assert.are.equal("Echo: one", conv:last())
      conv:add{ role = "user", content = "added" }
      assert.are.equal("added", conv.messages[4].content)
      conv:reset()
      assert.are.same({ { role = "system", content = "S" } }, conv.messages)
      assert.is_false(conv:undo())
      assert.has_error(function() conv:add{ content = "no role" } end)
    end)

    it("undo drops a whole tool exchange", function()
      local conv = with_tools(client:conversation{ model = "emulator/tools", system = "S" })
      assert(conv:say("Weather?"))
      assert.are.equal(6, #conv.messages)
      conv:undo()
      assert.are.equal(1, #conv.messages)
    end)

    it("fork is an independent deep copy that shares the tools", function()
      local conv = with_tools(client:conversation{ model = "emulator/tools", params = { temperature = 0 } })
      local copy = conv:fork()
      copy.params.temperature = 1
      assert(copy:say("Weather?"))
      assert.are.equal(0, #conv.messages)
      assert.are.equal(5, #copy.messages)
      assert.are.equal(0, conv.params.temperature)
      assert.are.equal(1, #weather_calls)  -- the fork ran the shared handler
      copy.messages[1].content = "changed"
      local again = copy:fork()
      again.messages[1].content = "again"
      assert.are.equal("changed", copy.messages[1].content)
    end)
  end)

  describe("persistence", function()
    it("round-trips model, system, params, messages and usage exactly", function()
      local conv = with_tools(client:conversation{ model = "emulator/tools", system = "Sé ✓",
        params = { temperature = 0, provider = { order = { "a" } } }, max_tool_rounds = 3 })
      assert(conv:say("Weather in Paris? 😀"))
      local s = conv:to_json()
      local loaded = assert(client:conversation_from_json(s))
      assert.are.equal(conv.model, loaded.model)
      assert.are.equal(conv.system, loaded.system)
      assert.are.same(conv.params, loaded.params)
      assert.are.same(conv.messages, loaded.messages)
      assert.are.same(conv:usage(), loaded:usage())
      assert.are.equal(3, loaded.max_tool_rounds)
      assert.are.equal(openrouter.null, loaded.messages[3].content)  -- the tool-call message
      assert.are.same(cjson.decode(s), cjson.decode(loaded:to_json()))
      -- handlers are not saved: register them again, then go on
      with_tools(loaded)
      loaded.model = "openai/gpt-4o-mini"
      assert.are.equal("Echo: more", assert(loaded:say("more")))
      assert.are.equal(8, #loaded.messages)
    end)

    it("refuses malformed or foreign JSON with nil, err", function()
      for _, s in ipairs{ "{", "[]", '"text"', '{"a":1}',
          '{"format":"openrouter-conversation","version":1}',
          '{"format":"openrouter-conversation","version":2,"messages":[]}',
          '{"format":"openrouter-conversation","version":1,"messages":[{"content":"no role"}]}',
          '{"format":"openrouter-conversation","version":1,"messages":[],"model":5}' } do
        local conv, err = client:conversation_from_json(s)
        assert.is_nil(conv, s)
        assert.are.equal("decode", err.kind)
        assert.is_true(openrouter.is_error(err))
      end
      assert.has_error(function() client:conversation_from_json(nil) end)
    end)
  end)

  describe("max_messages", function()
    it("keeps the system prompt and the newest turns", function()
      local conv = client:conversation{ model = "m/x", system = "S", max_messages = 4 }
      for i = 1, 5 do assert(conv:say("turn " .. i)) end
      assert.are.equal(5, #conv.messages)
      assert.are.equal("system", conv.messages[1].role)
      assert.are.equal("turn 4", conv.messages[2].content)
      assert.are.equal("Echo: turn 5", conv.messages[5].content)
      -- the last request: the system prompt, the two turns kept, and "turn 5"
      assert.are.equal(6, #emu:last_request().json.messages)
    end)

    it("never starts with a dangling tool result or splits a tool exchange", function()
      local conv = with_tools(client:conversation{ model = "emulator/tools", system = "S", max_messages = 3 })
      assert(conv:say("Weather?"))
      assert(conv:say("Again?"))
      local first = conv.messages[2]
      assert.are.equal("user", first.role)
      assert.are.equal("Again?", first.content)
      for i, m in ipairs(conv.messages) do
        if m.role == "tool" then
          local prev = conv.messages[i - 1]
          assert.is_true(prev.role == "tool" or (prev.role == "assistant" and prev.tool_calls ~= nil))
        end
      end
    end)
  end)
end)
