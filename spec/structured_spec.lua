-- Structured replies: openrouter.json(res), and a conversation asking for a JSON schema.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")

local PLACE = {
  type = "object",
  properties = {
    city = { type = "string" },
    population = { type = "integer" },
    area = { type = "number" },
    capital = { type = "boolean" },
    kind = { type = "string", enum = { "city", "town" } },
    tags = { type = "array", items = { type = "string" } },
    mayor = { type = "object", properties = { name = { type = "string" } }, required = { "name" },
              additionalProperties = false },
  },
  required = { "city", "population", "area", "capital", "kind", "tags", "mayor" },
  additionalProperties = false,
}

local SAMPLE = { city = "sample city", population = 1, area = 1.5, capital = true, kind = "city",
                 tags = { "sample tags" }, mayor = { name = "sample name" } }

describe("structured replies", function()
  local emu = emulator.for_spec()
  local client

  teardown(function()
    if client then client:close() end
  end)

  before_each(function()
    client = openrouter.new{ api_key = "sk-or-structured-spec", base_url = emu.url }
  end)

  local function ask(model, response_format)
    return { model = model, response_format = response_format,
             messages = { { role = "user", content = "Describe Paris" } } }
  end

  local SCHEMA_FORMAT = { type = "json_schema",
    json_schema = { name = "place", strict = true, schema = PLACE } }

  describe("openrouter.json", function()
    it("decodes a json_schema reply, streamed or not", function()
      local res = assert(client:chat_completion(ask("emulator/structured", SCHEMA_FORMAT)))
      assert.are.same(SAMPLE, (assert(openrouter.json(res))))
      local streamed = assert(client:chat_completion(ask("emulator/structured", SCHEMA_FORMAT),
        function() end))
      assert.are.same(SAMPLE, (assert(openrouter.json(streamed))))
    end)

    it("decodes a json_object reply", function()
      local res = assert(client:chat_completion(ask("emulator/structured", { type = "json_object" })))
      assert.are.same({ echo = "Describe Paris" }, (openrouter.json(res)))
    end)

    it("returns nil and a decode error for a reply that is not JSON", function()
      local res = assert(client:chat_completion(ask("emulator/structured")))
      local value, err = openrouter.json(res)
      assert.is_nil(value)
      assert.is_true(openrouter.is_error(err))
      assert.are.equal("decode", err.kind)
      assert.are.equal("Echo: Describe Paris", err.text)
      assert.matches("not JSON", tostring(err))
    end)

    it("refuses JSON that is not an object or an array, and a reply without text", function()
      local function reply(content)
        return { choices = { { message = { role = "assistant", content = content } } } }
      end
      for _, content in ipairs{ "42", '"text"', "null", "{", "" } do
        local value, err = openrouter.json(reply(content))
        assert.is_nil(value, content)
        assert.are.equal("decode", err.kind)
      end
      for _, res in ipairs{ reply(openrouter.null), {}, "x" } do
        local value, err = openrouter.json(res)
        assert.is_nil(value)
        assert.are.equal("decode", err.kind)
      end
      assert.are.same({ 1, 2 }, (openrouter.json(reply("[1, 2]"))))
    end)

    it("ignores white space and a Markdown code fence around the JSON", function()
      local function reply(content)
        return { choices = { { message = { content = content } } } }
      end
      assert.are.same({ a = 1 }, (openrouter.json(reply('\n  {"a": 1}  \n'))))
      assert.are.same({ a = 1 }, (openrouter.json(reply('```json\n{"a": 1}\n```'))))
      assert.are.same({ a = 1 }, (openrouter.json(reply('```\r\n{"a": 1}\r\n```\n'))))
      assert.are.same({ a = 1 }, (openrouter.json(reply({ { type = "text", text = '{"a":' },
                                                           { type = "text", text = " 1}" } }))))
    end)
  end)

  describe("conv:say with a schema", function()
    it("sends response_format json_schema (strict) and returns the reply decoded", function()
      local conv = client:conversation{ model = "emulator/structured" }
      local place = assert(conv:say("Describe Paris", { schema = PLACE, name = "place" }))
      assert.are.same(SAMPLE, place)
      local sent = emu:last_request().json.response_format
      assert.are.same({ type = "json_schema",
        json_schema = { name = "place", strict = true, schema = PLACE } }, sent)
      -- the history keeps the reply as text
      local last = conv.messages[#conv.messages]
      assert.are.equal("assistant", last.role)
      assert.is_string(last.content)
      assert.are.same(SAMPLE, (openrouter.json({ choices = { { message = last } } })))
      assert.are.equal(last.content, conv:last())
    end)

    it("streams the reply with on_delta and still returns it decoded", function()
      local conv = client:conversation{ model = "emulator/structured" }
      local pieces = {}
      local place = assert(conv:say("Describe Paris", {
        schema = PLACE, on_delta = function(piece) pieces[#pieces + 1] = piece end }))
      assert.are.same(SAMPLE, place)
      assert.are.equal(conv:last(), table.concat(pieces))
      assert.are.equal("reply", emu:last_request().json.response_format.json_schema.name)
      assert.is_true(emu:last_request().json.stream)
    end)

    it("asks for the schema on that turn only", function()
      local conv = client:conversation{ model = "emulator/structured" }
      assert(conv:say("first", { schema = PLACE }))
      assert.are.equal("Echo: second", conv:say("second"))
      assert.is_nil(emu:last_request().json.response_format)
    end)

    it("fails with a decode error and leaves the history unchanged when the reply is not JSON", function()
      local conv = client:conversation{ model = "openai/gpt-4o-mini", system = "s" }
      local before = #conv.messages
      local value, err = conv:say("Describe Paris", { schema = PLACE })
      assert.is_nil(value)
      assert.are.equal("decode", err.kind)
      assert.is_string(err.generation_id)
      assert.are.equal(before, #conv.messages)
      assert.are.equal(1, conv:usage().requests)
    end)

    it("say_async returns the reply decoded too", function()
      local conv = client:conversation{ model = "emulator/structured" }
      local got
      local turn = conv:say_async("Describe Paris", { schema = PLACE,
        on_done = function(value) got = value end })
      assert.are.same(SAMPLE, (assert(turn:wait())))
      assert.are.same(SAMPLE, got)
    end)

    it("keeps the function form of on_delta", function()
      local conv = client:conversation{ model = "openai/gpt-4o-mini" }
      local n = 0
      assert.are.equal("Echo: hi", conv:say("hi", function() n = n + 1 end))
      assert.is_true(n > 0)
    end)

    it("raises on bad options", function()
      local conv = client:conversation{ model = "emulator/structured" }
      assert.has_error(function() conv:say("x", { schema = "object" }) end)
      assert.has_error(function() conv:say("x", { schema = PLACE, name = "a b" }) end)
      assert.has_error(function() conv:say("x", { schema = PLACE, name = ("n"):rep(65) }) end)
      assert.has_error(function() conv:say("x", { name = "place" }) end)
      assert.has_error(function() conv:say("x", { on_delta = 1 }) end)
      assert.has_error(function() conv:say("x", 42) end)
      assert.has_error(function() conv:say("x", { schema = { f = function() end } }) end)
      assert.has_error(function() conv:say_async("x", { schema = 1 }) end)
      assert.are.equal(0, #conv.messages)
    end)
  end)
end)
