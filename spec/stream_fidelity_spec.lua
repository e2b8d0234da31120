-- Nothing lost in streaming: a streamed reply, assembled, equals the non-streamed reply
-- for the same content (images, audio, logprobs, annotations, reasoning_details merged by
-- type and index whatever their order), and coalesced chunks carry the same.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")

-- The message fields and choice fields each scenario must keep.
local SCENARIOS = {
  { model = "emulator/images", message = { "content", "images" } },
  { model = "emulator/audio-out", message = { "content", "audio" } },
  { model = "emulator/logprobs", message = { "content" }, choice = { "logprobs" } },
  { model = "emulator/annotations", message = { "content", "annotations" } },
  { model = "emulator/reasoning-order", message = { "content", "reasoning", "reasoning_details" } },
  { model = "emulator/rich", message = { "content", "reasoning", "reasoning_details", "images",
    "audio", "annotations" }, choice = { "logprobs" } },
}

describe("stream fidelity", function()
  local emu = emulator.for_spec{ reset = false }
  local client

  setup(function()
    client = openrouter.new{ api_key = "sk-or-fidelity-spec", base_url = emu.url }
  end)

  teardown(function()
    client:close()
  end)

  local function chat(model)
    return { model = model, messages = { { role = "user", content = "Show me everything" } } }
  end

  -- The fields of a choice the scenario lists, as one table.
  local function kept(choice, s)
    local out = { message = {}, choice = {} }
    for _, k in ipairs(s.message) do out.message[k] = choice.message[k] end
    for _, k in ipairs(s.choice or {}) do out.choice[k] = choice[k] end
    return out
  end

  for _, s in ipairs(SCENARIOS) do
    it(s.model .. ": the assembled stream equals the non-streamed reply", function()
      local plain = assert(client:chat_completion(chat(s.model)))
      local chunks = 0
      local streamed = assert(client:chat_completion(chat(s.model), function() chunks = chunks + 1 end))
      assert.is_true(chunks > 3)
      local want = kept(plain.choices[1], s)
      for _, k in ipairs(s.message) do assert.is_not_nil(want.message[k], k) end
      assert.are.same(want, kept(streamed.choices[1], s))
    end)

    it(s.model .. ": one coalesced chunk carries the same", function()
      local plain = assert(client:chat_completion(chat(s.model)))
      local delivered = {}
      local req = client:chat_completion_async(chat(s.model), {
        coalesce = 30,
        on_chunk = function(chunk) delivered[#delivered + 1] = chunk end,
      })
      assert(req:wait())
      assert.are.equal(1, #delivered)
      local merged = delivered[1]
      assert.is_true(merged.coalesced > 3)
      local choice = merged.choices[1]
      local want = plain.choices[1]
      for _, k in ipairs(s.message) do
        if k ~= "content" then assert.are.same(want.message[k], choice.delta[k], k) end
      end
      for _, k in ipairs(s.choice or {}) do assert.are.same(want[k], choice[k], k) end
      if want.message.content ~= openrouter.null then
        assert.are.equal(want.message.content, choice.delta.content)
      end
    end)
  end

  it("merges reasoning_details by type and index whatever the order", function()
    local res = assert(client:chat_completion(chat("emulator/reasoning-order"), function() end))
    local details = res.choices[1].message.reasoning_details
    assert.are.same({
      { type = "reasoning.text", text = "First block.", signature = "sig-1", index = 0,
        format = "anthropic-claude-v1" },
      { type = "reasoning.summary", summary = "Second block summary.", index = 1,
        format = "anthropic-claude-v1" },
      { type = "reasoning.encrypted", data = "ZW5jcnlwdGVk", index = 2,
        format = "anthropic-claude-v1" },
    }, details)
  end)

  it("joins audio fragments and keeps content null for an audio-only reply", function()
    local res = assert(client:chat_completion(chat("emulator/audio-out"), function() end))
    local msg = res.choices[1].message
    assert.are.equal(openrouter.null, msg.content)
    assert.are.equal("Echo: Show me everything", msg.audio.transcript)
    assert.are.equal("pcm16", msg.audio.format)
    assert.are.equal("audio_emulator", msg.audio.id)
    assert.is_number(msg.audio.expires_at)
  end)

  it("keeps repeated annotations once, in order", function()
    local res = assert(client:chat_completion(chat("emulator/annotations"), function() end))
    local list = res.choices[1].message.annotations
    assert.are.equal(2, #list)
    assert.are.equal("https://openrouter.ai/docs", list[1].url_citation.url)
    assert.are.equal("https://example.com/emulator", list[2].url_citation.url)
  end)

  it("concatenates logprobs in order", function()
    local res = assert(client:chat_completion(chat("emulator/logprobs"), function() end))
    local lp = res.choices[1].logprobs
    local tokens = {}
    for i, e in ipairs(lp.content) do
      tokens[i] = e.token
      assert.are.equal(-0.125 * i, e.logprob)
    end
    assert.are.equal(openrouter.text(res), table.concat(tokens))
    assert.are.equal(openrouter.null, lp.refusal)
  end)

  it("a chunk without these fields assembles as before", function()
    local res = assert(client:chat_completion(chat("openai/gpt-4o-mini"), function() end))
    local choice = res.choices[1]
    assert.is_nil(choice.logprobs)
    for _, k in ipairs{ "images", "audio", "annotations", "reasoning_details" } do
      assert.is_nil(choice.message[k], k)
    end
    assert.are.equal("Echo: Show me everything", choice.message.content)
  end)
end)
