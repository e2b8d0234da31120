-- client:request and client:request_async: any endpoint through the path every action
-- takes (doc/design.md, "Layers"), and the `info` every call returns as its third value.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")

local KEY = "sk-or-v1-request-spec-0123456789abcdef"
local MGMT_KEY = "sk-or-mgmt-request-spec-0123456789"

-- What the emulator's /audio/speech sends (see spec/emulator_routes_spec.lua): a lead, then
-- each input byte as one 16-bit sample, the input repeated 8 times.
local PCM_LEAD = "\0\0\255\127\1\128\0\0"
local function pcm_of(input)
  local out = {}
  for i = 1, #input do
    local b = input:byte(i)
    out[i] = string.char(b, (b + 128) % 256)
  end
  return PCM_LEAD .. string.rep(table.concat(out), 8)
end

describe("client:request", function()
  local emu = emulator.for_spec()
  local client

  before_each(function()
    client = openrouter.new{ api_key = KEY, base_url = emu.url, retry_base_delay = 0.01 }
  end)

  after_each(function()
    client:close()
  end)

  describe("GET", function()
    it("sends the query encoded, keys sorted, lists comma-joined, and decodes the JSON body", function()
      local body, err, info = client:request{ path = "/models",
        query = { supported_parameters = { "tools", "reasoning" }, category = "programming & more" } }
      assert.is_nil(err)
      assert.is_table(body.data)
      local seen = emu:last_request()
      assert.are.equal("GET", seen.method)
      assert.are.equal("category=programming%20%26%20more&supported_parameters=tools%2Creasoning", seen.query)
      assert.are.equal(200, info.status)
      assert.are.equal("application/json", info.content_type:match("^[^;]+"))
    end)

    it("returns the whole body (not only `data`), as the API sent it", function()
      local body = assert(client:request{ path = "/credits" })
      assert.are.same({ total_credits = 100.5, total_usage = 25.75 }, body.data)
      assert.is_nil(body.remaining)
    end)
  end)

  describe("POST", function()
    it("sends a table body as JSON and is the same exchange as chat_completion", function()
      local params = requests.chat(nil, "via request")
      local body, err = client:request{ method = "POST", path = "/chat/completions", body = params }
      assert.is_nil(err)
      local via_request = emu:last_request()
      assert.are.equal("Echo: via request", openrouter.text(body))
      assert(client:chat_completion(params))
      local via_action = emu:last_request()
      assert.are.same(via_action.json, via_request.json)
      assert.are.equal(via_action.headers["content-type"], via_request.headers["content-type"])
      assert.are.equal("Bearer " .. KEY, via_request.headers["authorization"])
    end)

    it("defaults to POST when a body is given", function()
      assert(client:request{ path = "/embeddings", body = { model = "m/e", input = "x" } })
      assert.are.equal("POST", emu:last_request().method)
    end)

    it("sends a string body as given, with its content_type: a multipart upload", function()
      local boundary = "luaBoundary42"
      local audio = "RIFF\0\1\2\255" .. string.rep("x", 100)
      local form = table.concat({
        "--" .. boundary,
        'Content-Disposition: form-data; name="model"', "", "openai/whisper-large-v3",
        "--" .. boundary,
        'Content-Disposition: form-data; name="file"; filename="clip.wav"',
        "Content-Type: audio/wav", "", audio,
        "--" .. boundary .. "--", "" }, "\r\n")
      local body, err, info = client:request{ path = "/audio/transcriptions", body = form,
        content_type = "multipart/form-data; boundary=" .. boundary }
      assert.is_nil(err)
      assert.are.equal(200, info.status)
      assert.is_truthy(body.text:find("Transcribed " .. #audio .. " bytes", 1, true), body.text)
      local seen = emu:last_request()
      assert.are.equal(form, seen.body)
      assert.are.equal("multipart/form-data; boundary=" .. boundary, seen.headers["content-type"])
    end)

    it("returns a binary reply as its raw bytes, NUL and high bytes included", function()
      local bytes, err, info = client:request{ path = "/audio/speech",
        body = { model = "openai/gpt-4o-mini-tts", input = "hi there", response_format = "pcm" } }
      assert.is_nil(err)
      assert.are.equal("string", type(bytes))
      assert.are.equal(pcm_of("hi there"), bytes)
      assert.are.equal("audio/pcm", info.content_type)
      assert.is_string(info.generation_id)
    end)
  end)

  describe("PATCH, DELETE and per-request headers", function()
    it("creates, updates and deletes a key with a management key", function()
      local admin = openrouter.new{ api_key = MGMT_KEY, base_url = emu.url }
      local created = assert(admin:request{ path = "/keys", body = { name = "game players" } })
      local hash = created.data.hash
      local updated = assert(admin:request{ method = "PATCH", path = "/keys/" .. hash,
                                            body = { name = "renamed", disabled = true } })
      assert.are.equal("renamed", updated.data.name)
      assert.are.equal("PATCH", emu:last_request().method)
      local deleted = assert(admin:request{ method = "DELETE", path = "/keys/" .. hash })
      assert.is_true(deleted.deleted)
      assert.are.equal("DELETE", emu:last_request().method)
      local _, err, info = admin:request{ path = "/keys/" .. hash }
      assert.are.equal(404, err.status)
      assert.are.equal(404, info.status)
      admin:close()
    end)

    it("refuses a key-provisioning call with a normal key: a clear api error", function()
      local _, err = client:request{ path = "/keys" }
      assert.are.equal("api", err.kind)
      assert.are.equal(403, err.status)
    end)

    it("adds per-request headers on top of the client's, replacing one of the same name", function()
      local c = openrouter.new{ api_key = KEY, base_url = emu.url, headers = { ["X-Team"] = "client" } }
      assert(c:request{ path = "/key", headers = { ["X-Team"] = "request", ["X-Extra"] = "1" } })
      local seen = emu:last_request()
      assert.are.equal("request", seen.headers["x-team"])
      assert.are.equal("1", seen.headers["x-extra"])
      local teams = 0
      for _, line in ipairs(seen.header_list) do
        if line[1]:lower() == "x-team" then teams = teams + 1 end
      end
      assert.are.equal(1, teams)
      c:close()
    end)
  end)

  describe("streaming", function()
    it("delivers an SSE response event by event, decoded, to the callback", function()
      local events = {}
      local res, err = client:request({ path = "/chat/completions", stream = true,
        body = { model = "openai/gpt-4o-mini", stream = true,
                 messages = { { role = "user", content = "a b c" } } } },
        function(event) events[#events + 1] = event end)
      assert.is_nil(err)
      assert.is_true(res)
      assert.is_true(#events >= 3)
      local text = {}
      for _, e in ipairs(events) do text[#text + 1] = openrouter.text(e) or "" end
      assert.are.equal("Echo: a b c", table.concat(text))
    end)

    it("collects the events when there is no callback", function()
      local events = assert(client:request{ path = "/chat/completions", stream = true,
        body = { model = "openai/gpt-4o-mini", stream = true,
                 messages = { { role = "user", content = "x" } } } })
      assert.is_table(events[1].choices)
      assert.is_table(events[#events].usage)
    end)

    it("delivers any other streamed body piece by piece as its bytes arrive", function()
      local pieces = {}
      local res, err, info = client:request({ path = "/audio/speech", stream = true,
        body = { model = "emulator/speech-slow:20", input = "stream me", response_format = "pcm" } },
        function(piece) pieces[#pieces + 1] = piece end)
      assert.is_nil(err)
      assert.is_true(res)
      assert.is_true(#pieces >= 2, "the body came in one piece")
      assert.are.equal(pcm_of("stream me"), table.concat(pieces))
      assert.are.equal("audio/pcm", info.content_type)
    end)

    it("cancels when the callback returns false", function()
      local pieces = 0
      local res, err = client:request({ path = "/audio/speech", stream = true,
        body = { model = "emulator/speech-slow:50", input = "cancel me", response_format = "pcm" } },
        function() pieces = pieces + 1; return false end)
      assert.is_nil(res)
      assert.are.equal("cancelled", err.kind)
      assert.are.equal(1, pieces)
    end)

    it("ends with an api error when an event carries one", function()
      local got = {}
      local res, err = client:request({ path = "/chat/completions", stream = true,
        body = { model = "emulator/mid-stream-error", stream = true,
                 messages = { { role = "user", content = "x" } } } },
        function(e) got[#got + 1] = e end)
      assert.is_nil(res)
      assert.are.equal("api", err.kind)
      assert.is_true(#got >= 2)
    end)
  end)

  describe("async", function()
    it("runs on_chunk and on_done(res, err, info), and req.info holds the same", function()
      local pieces, done = {}, nil
      local req = client:request_async({ path = "/audio/speech", stream = true,
        body = { model = "openai/gpt-4o-mini-tts", input = "async", response_format = "pcm" } },
        { on_chunk = function(p) pieces[#pieces + 1] = p end,
          on_done = function(res, err, info) done = { res = res, err = err, info = info } end })
      local res, err = req:wait()
      assert.is_nil(err)
      assert.is_true(res)
      assert.are.equal(pcm_of("async"), table.concat(pieces))
      assert.are.equal(200, done.info.status)
      assert.are.equal(req.info, done.info)
    end)
  end)

  describe("misuse raises", function()
    local cases = {
      { { path = "models" }, "'path' must be a string starting with \"/\"" },
      { { path = "/models?x=1" }, "'path' must not hold '?'" },
      { { path = "/models#frag" }, "'path' must not hold '?'" },
      { { path = "/models/../credits" }, "'path' must not have \".\" or \"..\" segments" },
      { { path = "/a/%2e%2E/credits" }, "'path' must not have \".\" or \"..\" segments" },
      { { path = "/a/./b" }, "'path' must not have \".\" or \"..\" segments" },
      { { path = "/a/.." }, "'path' must not have \".\" or \"..\" segments" },
      { { path = "/models", method = "FETCH" }, "'method' must be" },
      { { path = "/models", method = "GET", body = {} }, "a GET request has no 'body'" },
      { { path = "/x", body = 42 }, "'body' must be a table (sent as JSON) or a string" },
      { { path = "/x", body = {}, content_type = "text/plain" }, "'content_type' must be a string, for a string 'body'" },
      { { path = "/x", body = "b", content_type = "a\r\nX: y" }, "'content_type' must be a string" },
      { { path = "/x", headers = { ["Content-Length"] = "2" } }, "header 'Content-Length' is set by the library" },
      { { path = "/x", headers = { host = "evil" } }, "header 'host' is set by the library" },
      { { path = "/x", headers = { Authorization = "Bearer other" } }, "header 'Authorization' is set by the library" },
      { { path = "/x", headers = { ["X-A"] = "1\r\nX-B: 2" } }, "header 'X-A' must be a string without line breaks" },
      { { path = "/x", headers = { ["bad name"] = "1" } }, "invalid header name 'bad name'" },
      { { path = "/x", query = "a=1" }, "'query' must be a table" },
      { { path = "/x", stream = "yes" }, "'stream' must be a boolean" },
      { { path = "/x", bdy = {} }, "unknown field 'bdy'" },
    }
    for _, case in ipairs(cases) do
      it(("for %s"):format(case[2]), function()
        -- not a tail call: LuaJIT names the function only from a live frame
        local ok, msg = pcall(function() local r = client:request(case[1]); return r end)
        assert.is_false(ok)
        assert.is_truthy(msg:find("bad argument #1 to 'request' (" .. case[2], 1, true), msg)
      end)
    end

    it("names the argument of request_async and sends nothing", function()
      local ok, msg = pcall(function() local r = client:request_async({ path = "../x" }); return r end)
      assert.is_false(ok)
      assert.is_truthy(msg:find("bad argument #1 to 'request_async'", 1, true), msg)
      assert.are.equal(0, #emu:requests())
    end)
  end)
end)

describe("info", function()
  local emu = emulator.for_spec()
  local client

  before_each(function()
    client = openrouter.new{ api_key = KEY, base_url = emu.url, retry_base_delay = 0.01 }
  end)

  after_each(function()
    client:close()
  end)

  local function check_info(info)
    assert.is_table(info)
    assert.is_table(info.headers)
    assert.is_number(info.attempts)
    assert.is_true(info.elapsed >= 0)
    for name in pairs(info.headers) do assert.are.equal(name:lower(), name) end
  end

  it("comes with every action, on success", function()
    local calls = {
      function() return client:get_models() end,
      function() return client:get_credits() end,
      function() return client:get_key() end,
      function() return client:get_model_endpoints("openai/gpt-4o-mini") end,
      function() return client:chat_completion(requests.chat()) end,
      function() return client:chat_completion(requests.chat(), function() end) end,
      function() return client:completion{ model = "openai/gpt-4o-mini", prompt = "p" } end,
      function() return client:embeddings{ model = "openai/text-embedding-3-small", input = "x" } end,
    }
    for i, call in ipairs(calls) do
      local res, err, info = call()
      assert(res, "call " .. i .. ": " .. tostring(err))
      check_info(info)
      assert.are.equal(200, info.status, "call " .. i)
      assert.are.equal(1, info.attempts)
      assert.is_true(info.first_byte <= info.elapsed)
      assert.is_string(info.headers["content-type"])
    end
  end)

  it("counts the attempts of a retried 429 and keeps the last response's headers", function()
    local res, err, info = client:chat_completion(requests.chat("emulator/fail:429:1"))
    assert(res, tostring(err))
    assert.are.equal(2, info.attempts)
    assert.are.equal(200, info.status)
    assert.is_string(info.generation_id)
  end)

  it("comes with a failure too", function()
    local res, err, info = client:chat_completion(requests.chat("emulator/moderation"))
    assert.is_nil(res)
    assert.are.equal("api", err.kind)
    check_info(info)
    assert.are.equal(403, info.status)
    assert.are.equal(1, info.attempts)
  end)

  it("comes with a network failure, without a status", function()
    local c = openrouter.new{ api_key = KEY, base_url = "http://127.0.0.1:9", max_retries = 0 }
    local res, err, info = c:get_credits()
    assert.is_nil(res)
    assert.are.equal("network", err.kind)
    check_info(info)
    assert.is_nil(info.status)
    c:close()
  end)

  it("reaches on_done and req.info of an async call", function()
    local got
    local req = client:get_credits_async{ on_done = function(_, _, info) got = info end }
    req:wait()
    assert.are.equal(200, got.status)
    assert.are.equal(got, req.info)
  end)
end)
