-- The rest of OpenRouter's API: key, generation stats (with the 404 that
-- comes before they are written), per-model endpoints, embeddings, model
-- queries and openrouter.filter_models.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local socket = require("socket")

local KEY = "sk-or-v1-api-spec-0123456789abcdef"

describe("api", function()
  local emu = emulator.for_spec()
  local client

  before_each(function()
    client = openrouter.new{ api_key = KEY, base_url = emu.url }
  end)

  after_each(function()
    client:close()
  end)

  local function chat(model)
    return { model = model or "openai/gpt-4o-mini", messages = { { role = "user", content = "hi there" } } }
  end

  describe("get_key", function()
    it("returns the data of GET /key, without the key itself", function()
      local key = assert(client:get_key())
      assert.are.equal(100, key.limit)
      assert.are.equal(74.5, key.limit_remaining)
      assert.is_number(key.usage_daily)
      assert.is_false(key.is_free_tier)
      assert.is_table(key.rate_limit)
      assert.is_nil(key.label:find(KEY, 1, true))
      local req = emu:last_request()
      assert.are.equal("/api/v1/key", req.path)
      assert.are.equal("Bearer " .. KEY, req.headers.authorization)
      assert.is_table(assert(client:get_key_async():wait()))
    end)

    it("reports a bad key as an api error", function()
      local c = openrouter.new{ api_key = "sk-or-invalid-1", base_url = emu.url }
      local key, err = c:get_key()
      assert.is_nil(key)
      assert.are.equal("api", err.kind)
      assert.are.equal(401, err.status)
      c:close()
    end)
  end)

  describe("get_generation", function()
    it("waits out the 404 that comes before the stats are written", function()
      local res = assert(client:chat_completion(chat()))
      local started = socket.gettime()
      local g = assert(client:get_generation(res.id))
      assert.are.equal(res.id, g.id)
      assert.are.equal(res.usage.prompt_tokens, g.tokens_prompt)
      assert.are.equal(res.usage.completion_tokens, g.tokens_completion)
      assert.is_number(g.total_cost)
      assert.is_false(g.cancelled)
      assert.is_true(socket.gettime() - started >= 0.2)
      local lookups = 0
      for _, r in ipairs(emu:requests()) do
        if r.path == "/api/v1/generation" then
          lookups = lookups + 1
          assert.are.equal("id=" .. res.id, r.query)
        end
      end
      assert.is_true(lookups >= 2, "the first lookup should have been a 404")
    end)

    it("gives up after `wait` seconds with the 404", function()
      local started = socket.gettime()
      local g, err = client:get_generation("gen-does-not-exist", { wait = 0.5 })
      assert.is_nil(g)
      assert.are.equal("api", err.kind)
      assert.are.equal(404, err.status)
      assert.is_true(socket.gettime() - started < 5)
      local none, err2 = client:get_generation("gen-does-not-exist", { wait = 0 })
      assert.is_nil(none)
      assert.are.equal(404, err2.status)
    end)

    it("recovers a cancelled stream's cost from err.generation_id", function()
      local n = 0
      local params = chat("emulator/slow:30")  -- slow: the server is still writing when we leave
      params.messages[1].content = "one two three four five six seven eight nine ten"
      local _, err = client:chat_completion(params, function()
        n = n + 1
        if n == 3 then return false end
      end)
      assert.are.equal("cancelled", err.kind)
      local g = assert(client:get_generation(err.generation_id))
      assert.is_true(g.cancelled)
      assert.is_number(g.total_cost)
    end)

    it("works async, and escapes the id", function()
      local res = assert(client:chat_completion(chat()))
      local req = client:get_generation_async(res.id, { wait = 5 })
      local g = assert(req:wait())
      assert.are.equal(res.id, g.id)
      client:get_generation("a b&c=d", { wait = 0 })
      assert.are.equal("id=a%20b%26c%3Dd", emu:last_request().query)
    end)

    it("checks its arguments", function()
      assert.has_error(function() client:get_generation() end)
      assert.has_error(function() client:get_generation("") end)
      assert.has_error(function() client:get_generation("x", { wait = -1 }) end)
    end)
  end)

  describe("get_model_endpoints", function()
    it("returns the model and its per-provider endpoints", function()
      local m = assert(client:get_model_endpoints("openai/gpt-4o-mini"))
      assert.are.equal("openai/gpt-4o-mini", m.id)
      assert.are.equal(2, #m.endpoints)
      assert.is_string(m.endpoints[1].provider_name)
      assert.is_string(m.endpoints[1].pricing.prompt)
      assert.is_number(m.endpoints[1].latency_last_30m.p50)
      assert.are.equal("/api/v1/models/openai/gpt-4o-mini/endpoints", emu:last_request().path)
    end)

    it("escapes the slug and reports an unknown model", function()
      local m, err = client:get_model_endpoints("openai/gpt-4o:free")
      assert.is_nil(m)
      assert.are.equal(404, err.status)
      assert.are.equal("/api/v1/models/openai/gpt-4o%3Afree/endpoints", emu:last_request().path)
    end)

    it("refuses what is not 'author/slug'", function()
      for _, bad in ipairs{ "gpt-4o", "/x", "x/", "a/b/c", "a/b?c", "a/b#c", "a /b\n", "" } do
        assert.has_error(function() client:get_model_endpoints(bad) end,
          "bad argument #1 to 'get_model_endpoints' (model id must look like 'author/slug')")
      end
      assert.has_error(function() client:get_model_endpoints(nil) end)
      assert.are.equal(0, #emu:requests())
    end)
  end)

  describe("embeddings", function()
    it("embeds one string", function()
      local res = assert(client:embeddings{ model = "openai/text-embedding-3-small", input = "hello world" })
      assert.are.equal(1, #res.data)
      assert.are.equal(8, #res.data[1].embedding)
      assert.is_number(res.data[1].embedding[1])
      assert.are.equal(2, res.usage.prompt_tokens)
      local req = emu:last_request()
      assert.are.equal("/api/v1/embeddings", req.path)
      assert.are.equal("hello world", req.json.input)
    end)

    it("embeds several inputs, in order, with large vectors", function()
      local inputs = {}
      for i = 1, 100 do inputs[i] = "text number " .. i end
      local res = assert(client:embeddings{ model = "emulator/embed:3072", input = inputs })
      assert.are.equal(100, #res.data)
      for i = 1, 100 do
        assert.are.equal(i - 1, res.data[i].index)
        assert.are.equal(3072, #res.data[i].embedding)
      end
      assert.are.equal(300, res.usage.prompt_tokens)
      assert.is_table(assert(client:embeddings_async({ model = "m/e", input = { "a", "b" } }):wait()))
    end)

    it("checks input", function()
      assert.has_error(function() client:embeddings{ model = "m" } end,
        "bad argument #1 to 'embeddings' ('input' must be a string or a list, got nil)")
      assert.has_error(function() client:embeddings{ model = "m", input = {} } end,
        "bad argument #1 to 'embeddings' ('input' must be a string or a non-empty list)")
      assert.has_error(function() client:embeddings{ model = "m", input = { true } } end)
    end)
  end)

  describe("models", function()
    it("passes query parameters to GET /models", function()
      assert(client:get_models{ output_modalities = "text", supported_parameters = { "tools" } })
      assert.are.equal("output_modalities=text&supported_parameters=tools", emu:last_request().query)
    end)

    it("filter_models keeps what meets every criterion", function()
      local models = assert(client:get_models())
      local reasoning = openrouter.filter_models(models, { supports = "reasoning" })
      assert.is_true(#reasoning > 0 and #reasoning < #models)
      for _, m in ipairs(reasoning) do
        local found = false
        for _, p in ipairs(m.supported_parameters) do found = found or p == "reasoning" end
        assert.is_true(found)
      end
      local both = openrouter.filter_models(models, { supports = { "reasoning", "top_k" } })
      assert.is_true(#both > 0 and #both < #reasoning)
      local free = openrouter.filter_models(models, { free = true })
      assert.is_true(#free > 0)
      for _, m in ipairs(free) do assert.are.equal(0, tonumber(m.pricing.prompt)) end
      assert.is_true(#openrouter.filter_models(models, { free = false }) == #models - #free)
      local cheap = openrouter.filter_models(models, { max_prompt_price = 1e-6 })
      for _, m in ipairs(cheap) do
        assert.is_true(tonumber(m.pricing.prompt) <= 1e-6)
        assert.is_string(m.pricing.prompt)  -- the original strings are kept
      end
      local big = openrouter.filter_models(models, { min_context = 200000 })
      for _, m in ipairs(big) do assert.is_true(m.context_length >= 200000) end
      local text = openrouter.filter_models(models, { modality = "text->text" })
      assert.is_true(#text > 0)
      local found = openrouter.filter_models(models, { search = "GPT-4O" })
      assert.is_true(#found >= 1)
      assert.are.equal(0, #openrouter.filter_models(models, { search = "no such model" }))
      assert.are.equal(#models, #openrouter.filter_models(models, {}))
    end)

    it("filter_models raises on misuse", function()
      assert.has_error(function() openrouter.filter_models(nil) end,
        "bad argument #1 to 'filter_models' (table expected, got nil)")
      assert.has_error(function() openrouter.filter_models({}, { suports = "tools" }) end,
        "bad argument #2 to 'filter_models' (unknown criterion 'suports')")
      assert.has_error(function() openrouter.filter_models({}, { min_context = "big" }) end)
    end)
  end)
end)
