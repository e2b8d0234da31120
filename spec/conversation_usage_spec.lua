-- conv:usage(): tokens, cost, and the numbers of the usage details, summed over requests.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")

describe("conversation usage", function()
  local emu = emulator.for_spec()
  local client

  teardown(function()
    if client then client:close() end
  end)

  before_each(function()
    client = openrouter.new{ api_key = "sk-or-usage-spec", base_url = emu.url }
  end)

  local function close(a, b) return math.abs(a - b) < 1e-12 end

  it("sums cached_tokens, reasoning_tokens and cost_details, streamed or not", function()
    local conv = client:conversation{ model = "emulator/cached:5" }
    local seen = {}
    local function remember(res) seen[#seen + 1] = res.usage end
    -- the same requests the conversation makes, to know what each one reported
    for _, stream in ipairs{ false, true } do
      local res = assert(client:chat_completion({ model = "emulator/cached:5",
        messages = { { role = "user", content = "hi" } } }, stream and function() end or nil))
      remember(res)
    end
    assert(conv:say("hi"))
    assert(conv:say("again", function() end))
    local u = conv:usage()
    assert.are.equal(2, u.requests)
    assert.are.equal(10, u.prompt_tokens_details.cached_tokens)
    assert.are.equal(0, u.prompt_tokens_details.cache_write_tokens)
    assert.are.equal(6, u.completion_tokens_details.reasoning_tokens)
    assert.is_true(u.cost > 0)
    local d = u.cost_details
    assert.is_true(close(u.cost, d.upstream_inference_cost))
    assert.is_true(close(d.upstream_inference_cost,
      d.upstream_inference_prompt_cost + d.upstream_inference_completions_cost))
    assert.are.equal(5, seen[1].prompt_tokens_details.cached_tokens)
    assert.are.equal(5, seen[2].prompt_tokens_details.cached_tokens)
  end)

  it("reports no details the API did not send, and skips null fields", function()
    local conv = client:conversation{ model = "emulator/no-usage" }
    assert(conv:say("hi"))
    local u = conv:usage()
    assert.are.equal(1, u.requests)
    assert.is_nil(u.prompt_tokens_details)
    assert.is_nil(u.cost_details)
  end)

  it("keeps the sums through to_json, from_json and fork", function()
    local conv = client:conversation{ model = "emulator/cached:7" }
    assert(conv:say("hi"))
    local loaded = assert(client:conversation_from_json(conv:to_json()))
    assert.are.same(conv:usage(), loaded:usage())
    assert.are.same(conv:usage(), conv:fork():usage())
    assert(loaded:say("more"))
    assert.are.equal(14, loaded:usage().prompt_tokens_details.cached_tokens)
  end)

  it("from_json refuses details that are not numbers", function()
    local conv = client:conversation{ model = "emulator/cached:7" }
    assert(conv:say("hi"))
    local json = conv:to_json():gsub('"cached_tokens":7', '"cached_tokens":"7"')
    local loaded, err = client:conversation_from_json(json)
    assert.is_nil(loaded)
    assert.matches("usage%.prompt_tokens_details%.cached_tokens must be a number", err.message)
  end)
end)
