-- Streamed chat and text completions: chunks to the callback, the assembled
-- response, cancellation, callback errors, failures mid-stream.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local cjson = require("cjson")

describe("streaming", function()
  local emu = emulator.for_spec()
  local client

  teardown(function()
    if client then client:close() end
  end)

  before_each(function()
    client = openrouter.new{ api_key = "sk-or-stream-spec", base_url = emu.url }
  end)

  local function chat(model, content)
    return { model = model or "openai/gpt-4o-mini",
             messages = { { role = "user", content = content or "Hi there" } } }
  end

  -- Streams params, returning res, err and the chunks the callback saw.
  local function collect(params, method)
    local chunks = {}
    local res, err = client[method or "chat_completion"](client, params, function(chunk)
      chunks[#chunks + 1] = chunk
    end)
    return res, err, chunks
  end

  local function joined_deltas(chunks)
    local out = {}
    for _, c in ipairs(chunks) do out[#out + 1] = openrouter.text(c) or "" end
    return table.concat(out)
  end

  it("sends stream: true and asks for an event stream", function()
    assert(collect(chat()))
    local req = emu:last_request()
    assert.is_true(req.json.stream)
    assert.are.equal("text/event-stream", req.headers["accept"])
  end)

  it("hands every chunk to the callback and assembles a normal response", function()
    local res, err, chunks = collect(chat())
    assert.is_nil(err)
    assert.is_true(#chunks >= 4)
    for _, c in ipairs(chunks) do assert.are.equal("chat.completion.chunk", c.object) end
    assert.are.equal("Echo: Hi there", joined_deltas(chunks))
    assert.are.equal("Echo: Hi there", res.choices[1].message.content)
    assert.are.equal("assistant", res.choices[1].message.role)
    assert.are.equal("stop", res.choices[1].finish_reason)
    assert.are.equal("chat.completion", res.object)
    assert.matches("^gen%-", res.id)
    assert.are.equal("openai/gpt-4o-mini", res.model)
    assert.is_number(res.usage.cost)
    assert.is_number(res.usage.total_tokens)
  end)

  it("delivers the usage chunk (empty choices) to the callback too", function()
    local _, _, chunks = collect(chat())
    local last = chunks[#chunks]
    assert.are.equal(0, #last.choices)
    assert.is_table(last.usage)
  end)

  it("takes usage from a chunk that also has choices", function()
    local res = assert(collect(chat("emulator/usage-on-choice")))
    assert.is_number(res.usage.total_tokens)
    assert.are.equal("stop", res.choices[1].finish_reason)
  end)

  it("is exact across awkward splits: CRLF, mid-line, mid-UTF-8", function()
    local res, err, chunks = collect(chat("emulator/awkward"))
    assert.is_nil(err)
    local expected = "h\195\169llo w\195\182rld \226\156\147 \240\159\152\128 Echo: Hi there"
    assert.are.equal(expected, joined_deltas(chunks))
    assert.are.equal(expected, openrouter.text(res))
  end)

  it("skips keep-alive comments while the model queues", function()
    local res = assert(collect(chat("emulator/keepalive:3")))
    assert.are.equal("Echo: Hi there", openrouter.text(res))
  end)

  it("joins reasoning and merges reasoning_details fragments, signature included", function()
    local res = assert(collect(chat("emulator/reasoning")))
    local msg = res.choices[1].message
    assert.are.equal("Thinking about it.", msg.reasoning)
    assert.are.equal(1, #msg.reasoning_details)
    local d = msg.reasoning_details[1]
    assert.are.equal("reasoning.text", d.type)
    assert.are.equal("Thinking about it.", d.text)
    assert.are.equal("sig-abc", d.signature)
    assert.are.equal("Echo: Hi there", msg.content)
  end)

  it("merges tool_calls fragments by index", function()
    local res = assert(collect(chat("emulator/tools")))
    local choice = res.choices[1]
    assert.are.equal("tool_calls", choice.finish_reason)
    assert.are.equal(openrouter.null, choice.message.content)
    local calls = choice.message.tool_calls
    assert.are.equal(2, #calls)
    assert.are.equal("call_1", calls[1].id)
    assert.are.equal("function", calls[1].type)
    assert.are.equal("get_weather", calls[1]["function"].name)
    assert.are.same({ city = "Paris" }, cjson.decode(calls[1]["function"].arguments))
    assert.are.equal("call_2", calls[2].id)
    assert.are.equal("get_time", calls[2]["function"].name)
    assert.are.same({ tz = "Europe/Paris" }, cjson.decode(calls[2]["function"].arguments))
  end)

  it("assembles the same tool calls as the non-streamed reply", function()
    local streamed = assert(collect(chat("emulator/tools")))
    local plain = assert(client:chat_completion(chat("emulator/tools")))
    local a, b = streamed.choices[1].message.tool_calls, plain.choices[1].message.tool_calls
    assert.are.equal(#b, #a)
    for i = 1, #a do
      assert.are.equal(b[i].id, a[i].id)
      assert.are.equal(b[i]["function"].name, a[i]["function"].name)
      assert.are.same(cjson.decode(b[i]["function"].arguments), cjson.decode(a[i]["function"].arguments))
    end
  end)

  it("streams legacy text completions", function()
    local res, err, chunks = collect({ model = "openai/gpt-4o-mini", prompt = "Once" }, "completion")
    assert.is_nil(err)
    assert.are.equal("Echo: Once", joined_deltas(chunks))
    assert.are.equal("Echo: Once", res.choices[1].text)
    assert.are.equal("text_completion", res.object)
    assert.is_true(emu:last_request().json.stream)
  end)

  it("streams without a callback when params.stream is true", function()
    local params = chat()
    params.stream = true
    local res = assert(client:chat_completion(params))
    assert.are.equal("Echo: Hi there", openrouter.text(res))
    assert.are.equal("text/event-stream", emu:last_request().headers["accept"])
  end)

  it("handles a long stream of many chunks", function()
    local res, err, chunks = collect(chat("emulator/long:3000"))
    assert.is_nil(err)
    assert.is_true(#chunks >= 3000)
    assert.are.equal(joined_deltas(chunks), openrouter.text(res))
  end)

  describe("cancellation", function()
    it("stops when the callback returns false, with the partial response", function()
      local seen = 0
      local res, err = client:chat_completion(chat("emulator/long:500"), function(chunk)
        seen = seen + 1
        if seen == 5 then return false end
      end)
      assert.is_nil(res)
      assert.are.equal("cancelled", err.kind)
      assert.are.equal(5, seen)
      assert.is_string(openrouter.text(err.partial))
      assert.matches("^gen%-", err.generation_id)
      -- the client is still usable
      assert.are.equal("Echo: Hi there", openrouter.text(assert(client:chat_completion(chat()))))
    end)

    it("treats any other return value as go on", function()
      local res = assert(client:chat_completion(chat(), function() return true end))
      assert.are.equal("Echo: Hi there", openrouter.text(res))
      res = assert(client:chat_completion(chat(), function() return nil end))
      assert.are.equal("Echo: Hi there", openrouter.text(res))
    end)
  end)

  describe("callback errors", function()
    it("propagate to the caller unchanged, and the client stays usable", function()
      local ok, err = pcall(client.chat_completion, client, chat(), function() error("boom", 0) end)
      assert.is_false(ok)
      assert.are.equal("boom", err)
      local marker = {}
      ok, err = pcall(client.chat_completion, client, chat(), function() error(marker) end)
      assert.is_false(ok)
      assert.are.equal(marker, err)
      assert(client:chat_completion(chat(), function() end))
      assert(client:get_credits())
    end)

    it("refuse a nested call on the same client from inside the callback", function()
      local ok, err = pcall(client.chat_completion, client, chat(), function()
        client:get_credits()
      end)
      assert.is_false(ok)
      assert.matches("busy", err)
      assert(client:get_credits())
    end)

    it("let the callback use another client", function()
      local other = openrouter.new{ api_key = "sk-or-other-0123456789", base_url = emu.url }
      local credits
      assert(client:chat_completion(chat(), function()
        credits = credits or assert(other:get_credits())
      end))
      assert.are.equal(74.75, credits.remaining)
      other:close()
    end)
  end)

  describe("failures", function()
    it("an error event mid-stream fails the call with the partial text", function()
      local res, err, chunks = collect(chat("emulator/mid-stream-error"))
      assert.is_nil(res)
      assert.are.equal("api", err.kind)
      assert.are.equal(200, err.status)
      assert.are.equal(502, err.code)
      assert.are.equal("Provider disconnected", err.message)
      assert.are.equal("provider_unavailable", err.error_type)
      assert.is_true(#chunks >= 2)
      assert.is_string(openrouter.text(err.partial))
      assert.is_true(#openrouter.text(err.partial) > 0)
      assert.matches("^gen%-", err.generation_id)
      assert(client:chat_completion(chat(), function() end))
    end)

    it("an HTTP error before the stream never calls the callback", function()
      local res, err, chunks = collect(chat("missing/model"))
      assert.is_nil(res)
      assert.are.equal("api", err.kind)
      assert.are.equal(400, err.status)
      assert.are.equal(0, #chunks)
      assert.is_nil(err.partial)
    end)

    it("a JSON error body with status 200 on a streamed call is an api error", function()
      local res, err, chunks = collect(chat("emulator/error-200"))
      assert.is_nil(res)
      assert.are.equal("api", err.kind)
      assert.are.equal(0, #chunks)
    end)

    it("a connection reset mid-stream is a network error with the partial text", function()
      local res, err, chunks = collect(chat("emulator/reset-mid-stream"))
      assert.is_nil(res)
      assert.are.equal("network", err.kind)
      assert.is_true(#chunks >= 1)
      assert.are.equal(joined_deltas(chunks), openrouter.text(err.partial))
      assert(client:chat_completion(chat(), function() end))
    end)
  end)
end)
