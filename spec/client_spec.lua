-- The client and the four actions, non-streamed: options, headers and bodies
-- on the wire, returned tables, connection reuse, misuse.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local cjson = require("cjson")

local KEY = "sk-or-v1-client-spec-0123456789"

describe("client", function()
  local emu = emulator.for_spec()
  local client

  teardown(function()
    if client then client:close() end
  end)

  before_each(function()
    client = openrouter.new{ api_key = KEY, base_url = emu.url, app_title = "spec" }
  end)

  local function hi(model)
    return { model = model or "openai/gpt-4o-mini", messages = { { role = "user", content = "Hi" } } }
  end

  describe("new", function()
    it("rejects an unknown option, naming it", function()
      assert.has_error(function() openrouter.new{ api_ley = "x" } end,
        "bad argument #1 to 'new' (unknown option 'api_ley')")
    end)

    it("rejects options of the wrong type", function()
      assert.has_error(function() openrouter.new{ timeout = "10" } end,
        "bad argument #1 to 'new' (option 'timeout' must be a number, got string)")
      assert.has_error(function() openrouter.new("key") end,
        "bad argument #1 to 'new' (table expected, got string)")
    end)

    it("refuses options that would mean waiting forever", function()
      assert.has_error(function() openrouter.new{ timeout = 0 } end)
      assert.has_error(function() openrouter.new{ stream_idle_timeout = 0 } end)
      assert.has_error(function() openrouter.new{ timeout = math.huge } end)
      assert.has_error(function() openrouter.new{ max_retries = 1.5 } end)
    end)

    it("rejects a base_url that is not http(s) and header values with line breaks", function()
      assert.has_error(function() openrouter.new{ base_url = "ftp://x" } end)
      assert.has_error(function() openrouter.new{ headers = { ["X-A"] = "1\r\nX-B: 2" } } end)
      assert.has_error(function() openrouter.new{ headers = { ["Bad Name"] = "1" } } end)
    end)

    it("takes the key and base URL from the environment", function()
      local cmd = ("OPENROUTER_API_KEY=sk-or-from-env OPENROUTER_BASE_URL=%s %s -e %q"):format(
        emu.url, os.getenv("OPENROUTER_EMULATOR_LUA") or "lua5.4",
        "local c = require('openrouter').new(); local r, e = c:get_credits(); " ..
        "io.write(r and 'ok' or tostring(e))")
      local p = io.popen(cmd)
      local out = p:read("*a")
      p:close()
      assert.are.equal("ok", out)
      local req = emu:last_request()
      assert.are.equal("Bearer sk-or-from-env", req.headers["authorization"])
    end)

    it("never shows the key in tostring", function()
      assert.is_nil(tostring(client):find(KEY, 1, true))
      assert.matches("openrouter client", tostring(client))
    end)
  end)

  describe("requests on the wire", function()
    it("sends the key, JSON content type and attribution headers", function()
      local c = openrouter.new{ api_key = KEY, base_url = emu.url, app_url = "https://example.com/app",
        app_title = "My App", app_categories = { "cli-agent", "cloud-agent" },
        headers = { ["X-Extra"] = "1", ["User-Agent"] = "custom/1.0" } }
      assert(c:chat_completion(hi()))
      local h = emu:last_request().headers
      assert.are.equal("Bearer " .. KEY, h["authorization"])
      assert.are.equal("application/json", h["content-type"])
      assert.are.equal("https://example.com/app", h["http-referer"])
      assert.are.equal("My App", h["x-openrouter-title"])
      assert.are.equal("My App", h["x-title"])
      assert.are.equal("cli-agent,cloud-agent", h["x-openrouter-categories"])
      assert.are.equal("1", h["x-extra"])
      assert.are.equal("custom/1.0", h["user-agent"])
      assert.is_nil(h["expect"])
      c:close()
    end)

    it("sends a default User-Agent and no Authorization without a key", function()
      local c = openrouter.new{ api_key = "", base_url = emu.url }
      assert(c:get_models())
      local h = emu:last_request().headers
      assert.matches("^openrouter%-lua/", h["user-agent"])
      assert.is_nil(h["authorization"])
      c:close()
    end)

    it("passes unknown request fields through untouched", function()
      local params = hi()
      params.provider = { order = { "openai" }, allow_fallbacks = false }
      params.future_field = { nested = { 1, 2, 3 }, flag = true }
      params.temperature = 0.25
      params.transforms = {}
      assert(client:chat_completion(params))
      local body = emu:last_request().json
      assert.are.same({ order = { "openai" }, allow_fallbacks = false }, body.provider)
      assert.are.same({ nested = { 1, 2, 3 }, flag = true }, body.future_field)
      assert.are.equal(0.25, body.temperature)
      assert.is_nil(body.stream)
    end)

    it("sends empty tables under array fields as [] and others as {}", function()
      local params = hi()
      params.tools = {}
      params.stop = {}
      params.models = {}
      params.plugins = {}
      params.metadata = {}
      params.provider = { order = {}, only = {} }
      params.messages[1].content = { { type = "text", text = "Hi" } }
      params.custom = openrouter.array()
      assert(client:chat_completion(params))
      local raw = emu:last_request().body
      assert.matches('"tools":%[%]', raw)
      assert.matches('"stop":%[%]', raw)
      assert.matches('"models":%[%]', raw)
      assert.matches('"plugins":%[%]', raw)
      assert.matches('"order":%[%]', raw)
      assert.matches('"only":%[%]', raw)
      assert.matches('"custom":%[%]', raw)
      assert.matches('"metadata":{}', raw)
    end)

    it("never modifies the caller's tables", function()
      local params = hi()
      params.tools = {}
      local before = cjson.encode(params)
      assert(client:chat_completion(params, function() end))
      assert.are.equal(before, cjson.encode(params))
      assert.is_nil(params.stream)
      assert.are.equal(0, #params.tools)
    end)

    it("reuses one connection for sequential requests", function()
      assert(client:get_models())
      assert(client:chat_completion(hi()))
      assert(client:chat_completion(hi(), function() end))
      assert(client:get_credits())
      local reqs = emu:requests()
      assert.are.equal(4, #reqs)
      for i = 2, 4 do assert.are.equal(reqs[1].connection, reqs[i].connection) end
    end)

    it("decodes every reply from its own bytes while reusing the response buffer", function()
      -- a long body leaves a large buffer behind; shorter bodies, an empty one and a
      -- malformed one are written into it next: none may show the earlier bytes
      local function content(res) return res.choices[1].message.content end
      local big = assert(client:chat_completion(hi("emulator/big:1500000")))
      assert.are.equal(1500000, #content(big))
      local short = assert(client:chat_completion(hi()))
      assert.are.equal("Echo: Hi", content(short))
      local res, err = client:chat_completion(hi("emulator/malformed"))
      assert.is_nil(res)
      assert.are.equal("decode", err.kind)
      assert.is_nil(err.message:find("0123456789abcdef", 1, true))
      res, err = client:chat_completion(hi("emulator/empty"))
      assert.is_nil(res)
      assert.matches("empty response body", err.message)
      assert.are.equal(1500000, #content(assert(client:chat_completion(hi("emulator/big:1500000")))))
      assert.are.equal("Echo: Hi", content(assert(client:chat_completion(hi()))))
    end)

    it("passes get_models query parameters, lists comma-joined", function()
      assert(client:get_models{ supported_parameters = { "tools", "reasoning" }, category = "programming" })
      local req = emu:last_request()
      assert.are.equal("/api/v1/models", req.path)
      assert.are.equal("category=programming&supported_parameters=tools%2Creasoning", req.query)
    end)
  end)

  describe("get_models", function()
    it("returns the data array of model tables", function()
      local models = assert(client:get_models())
      assert.is_true(#models > 0)
      local m = models[1]
      assert.is_string(m.id)
      assert.is_string(m.pricing.prompt)
      assert.is_table(m.architecture)
      assert.is_table(m.supported_parameters)
      local req = emu:last_request()
      assert.are.equal("GET", req.method)
      assert.are.equal("/api/v1/models", req.path)
    end)

    it("decodes JSON null as openrouter.null", function()
      local models = assert(client:get_models())
      local seen = false
      for _, m in ipairs(models) do
        if m.per_request_limits == openrouter.null then seen = true end
      end
      assert.is_true(seen)
      assert.are.equal(cjson.null, openrouter.null)
    end)
  end)

  describe("get_credits", function()
    it("returns totals and what remains", function()
      local credits = assert(client:get_credits())
      assert.are.equal(100.5, credits.total_credits)
      assert.are.equal(25.75, credits.total_usage)
      assert.are.equal(74.75, credits.remaining)
      assert.are.equal("/api/v1/credits", emu:last_request().path)
    end)
  end)

  describe("chat_completion", function()
    it("returns the whole decoded response", function()
      local res = assert(client:chat_completion(hi()))
      assert.matches("^gen%-", res.id)
      assert.are.equal("chat.completion", res.object)
      assert.are.equal("openai/gpt-4o-mini", res.model)
      assert.are.equal("assistant", res.choices[1].message.role)
      assert.are.equal("Echo: Hi", res.choices[1].message.content)
      assert.are.equal("stop", res.choices[1].finish_reason)
      assert.is_number(res.usage.total_tokens)
      assert.is_number(res.usage.cost)
      assert.are.equal("Echo: Hi", openrouter.text(res))
      local req = emu:last_request()
      assert.are.equal("POST", req.method)
      assert.are.equal("/api/v1/chat/completions", req.path)
      assert.are.same(hi(), req.json)
    end)

    it("exposes X-Generation-Id as generation_id when the body has no id", function()
      local res = assert(client:chat_completion(hi("emulator/no-id")))
      assert.is_nil(res.id)
      assert.matches("^gen%-", res.generation_id)
      res = assert(client:chat_completion(hi()))
      assert.is_nil(res.generation_id)
    end)

    it("accepts content parts", function()
      local res = assert(client:chat_completion{ model = "m/x", messages = { { role = "user",
        content = { { type = "text", text = "What is" }, { type = "text", text = "this?" } } } } })
      assert.are.equal("Echo: What is this?", openrouter.text(res))
    end)

    it("raises on misuse, naming the argument", function()
      assert.has_error(function() client:chat_completion() end,
        "bad argument #1 to 'chat_completion' (table expected, got no value)")
      assert.has_error(function() client:chat_completion{ model = "m" } end,
        "bad argument #1 to 'chat_completion' ('messages' must be a table, got nil)")
      assert.has_error(function() client:chat_completion{ messages = {} } end,
        "bad argument #1 to 'chat_completion' ('messages' must be a non-empty sequence)")
      assert.has_error(function() client:chat_completion{ messages = { [1] = {}, [3] = {} } } end)
      assert.has_error(function() client:chat_completion{ messages = { "hi" } } end)
      assert.has_error(function() client:chat_completion(hi(), "not a function") end,
        "bad argument #2 to 'chat_completion' (function expected, got string)")
    end)

    it("names the field that cannot be encoded", function()
      local params = hi()
      params.messages[1].content = print
      assert.has_error(function() client:chat_completion(params) end,
        "bad argument #1 to 'chat_completion' (messages[1].content: cannot encode a function as JSON)")
      params = hi()
      params.temperature = 0 / 0
      assert.has_error(function() client:chat_completion(params) end,
        "bad argument #1 to 'chat_completion' (temperature: cannot encode NaN or infinity as JSON)")
      local cyclic = hi()
      cyclic.extra = {}
      cyclic.extra.self = cyclic.extra
      local ok, err = pcall(client.chat_completion, client, cyclic)
      assert.is_false(ok)
      assert.matches("nested too deep", err)
      assert.are.equal(0, #emu:requests())
    end)
  end)

  describe("completion", function()
    it("returns the decoded text completion", function()
      local res = assert(client:completion{ model = "openai/gpt-4o-mini", prompt = "Once", max_tokens = 5 })
      assert.are.equal("text_completion", res.object)
      assert.are.equal("Echo: Once", res.choices[1].text)
      assert.are.equal("Echo: Once", openrouter.text(res))
      local req = emu:last_request()
      assert.are.equal("/api/v1/completions", req.path)
      assert.are.equal(5, req.json.max_tokens)
    end)

    it("requires a string prompt", function()
      assert.has_error(function() client:completion{ model = "m", prompt = { "a" } } end,
        "bad argument #1 to 'completion' ('prompt' must be a string, got table)")
    end)
  end)

  describe("lifecycle", function()
    it("close is idempotent and a closed client refuses work", function()
      local c = openrouter.new{ base_url = emu.url }
      assert.is_false(c:is_closed())
      c:close()
      c:close()
      assert.is_true(c:is_closed())
      assert.has_error(function() c:get_models() end, "attempt to use a closed openrouter client")
    end)

    it("a garbage-collected client releases its handles", function()
      for _ = 1, 20 do
        local c = openrouter.new{ api_key = KEY, base_url = emu.url }
        assert(c:get_credits())
      end
      collectgarbage()
      collectgarbage()
      assert(client:get_credits())
    end)
  end)

  describe("error objects", function()
    it("print on one line even when a server's message has line breaks", function()
      local _, err = client:chat_completion(hi("missing/x"))
      err.message = "first line\nsecond\r\nthird"
      assert.are.equal("openrouter api error (HTTP 400): first line second third", tostring(err))
    end)
  end)

  describe("openrouter.text", function()
    it("reads responses, chunks and partials, never returning null", function()
      assert.are.equal("a", openrouter.text{ choices = { { message = { content = "a" } } } })
      assert.are.equal("b", openrouter.text{ choices = { { delta = { content = "b" } } } })
      assert.are.equal("c", openrouter.text{ choices = { { text = "c" } } })
      assert.is_nil(openrouter.text{ choices = { { message = { content = openrouter.null } } } })
      assert.is_nil(openrouter.text{ choices = {} })
      assert.is_nil(openrouter.text(nil))
      assert.are.equal("xy", openrouter.text{ choices = { { message = { content = {
        { type = "text", text = "x" }, { type = "image_url", image_url = {} }, { type = "text", text = "y" } } } } } })
    end)
  end)
end)
