-- The emulator's audio and key-provisioning routes (spec/support/emulator.lua), over raw
-- HTTP with LuaSocket, not through the library: POST /audio/speech (binary audio in timed
-- HTTP chunks), POST /audio/transcriptions (JSON with base64 audio, or multipart/form-data),
-- and /keys, /keys/{hash} (management keys only). Checks the shapes OpenRouter's OpenAPI
-- description gives (SpeechRequest, STTResponse, the key objects), byte-exact bodies with NUL
-- and high bytes, chunked arrival, and the errors.
local emulator = require("spec.support.emulator_control")
local socket = require("socket")
local cjson = require("cjson")

local KEY = "sk-or-v1-routes-spec-0123456789abcdef"
local MGMT_KEY = "sk-or-mgmt-routes-spec-0123456789"
local GEN_ID = "^gen%-%d+%-emu%d+$"
local null = cjson.null

-- What the emulator sends for POST /audio/speech (its SPEECH_FORMATS, speech_unit): a lead,
-- then one 16-bit sample per input byte (the byte, then byte + 128 mod 256), over and over.
local LEAD = {
  pcm = "\0\0\255\127\1\128\0\0",
  mp3 = "ID3\4\0\0\0\0\0\0\255\251\144\100",
}

local function speech_unit(input)
  if input == "" then input = "\0" end
  local out = {}
  for i = 1, #input do
    local b = input:byte(i)
    out[i] = string.char(b, (b + 128) % 256)
  end
  return table.concat(out)
end

-- The first n bytes of lead .. unit .. unit .. (n defaults to the lead and 8 units).
local function expected_audio(format, input, n)
  local lead, unit = LEAD[format], speech_unit(input)
  n = n or #lead + 8 * #unit
  local s = lead .. string.rep(unit, math.ceil(n / #unit) + 1)
  return s:sub(1, n)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function digit(k) return B64:sub(k + 1, k + 1) end
    out[#out + 1] = digit(math.floor(n / 262144)) .. digit(math.floor(n / 4096) % 64)
      .. (b and digit(math.floor(n / 64) % 64) or "=") .. (c and digit(n % 64) or "=")
  end
  return table.concat(out)
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- One request on a fresh connection. opts: key (false: no Authorization), json (a table to
-- send as JSON), body + content_type (raw). Returns { status, headers (lowercased names),
-- body, chunks = { data... }, times = { arrival time of each chunk }, json }.
local function http(emu, method, path, opts)
  opts = opts or {}
  local sock = socket.tcp()
  sock:settimeout(10)
  assert(sock:connect(emu.host, emu.port))
  local body, content_type = opts.body, opts.content_type
  if opts.json then body, content_type = cjson.encode(opts.json), "application/json" end
  local head = { method .. " /api/v1" .. path .. " HTTP/1.1", "Host: " .. emu.host .. ":" .. emu.port,
    "Connection: close" }
  if opts.key ~= false then head[#head + 1] = "Authorization: Bearer " .. (opts.key or KEY) end
  if content_type then head[#head + 1] = "Content-Type: " .. content_type end
  if body then head[#head + 1] = "Content-Length: " .. #body end
  assert(sock:send(table.concat(head, "\r\n") .. "\r\n\r\n" .. (body or "")))

  local function line()
    return assert(sock:receive("*l"))
  end
  local res = { headers = {}, chunks = {}, times = {} }
  res.status = tonumber(line():match("^HTTP/1%.1 (%d%d%d) "))
  while true do
    local l = line()
    if l == "" then break end
    local name, value = l:match("^([^:]+):%s*(.-)%s*$")
    res.headers[name:lower()] = value
  end
  if (res.headers["transfer-encoding"] or ""):find("chunked") then
    while true do
      local size = tonumber(line():match("^(%x+)"), 16)
      if size == 0 then break end
      res.chunks[#res.chunks + 1] = assert(sock:receive(size))
      res.times[#res.times + 1] = socket.gettime()
      assert(line() == "")
    end
    assert(line() == "") -- no trailers
    res.body = table.concat(res.chunks)
  else
    local n = tonumber(res.headers["content-length"])
    res.body = n and n > 0 and assert(sock:receive(n)) or ""
  end
  sock:close()
  if (res.headers["content-type"] or ""):find("^application/json") then
    res.json = cjson.decode(res.body)
  end
  return res
end

-- An OpenRouter error body: { error = { code = <status>, message = <string> } }.
local function assert_error(res, status, message_part)
  assert.are.equal(status, res.status)
  assert.are.equal("application/json", res.headers["content-type"])
  assert.is_table(res.json and res.json.error)
  assert.are.equal(status, res.json.error.code)
  assert.is_string(res.json.error.message)
  if message_part then
    assert.is_truthy(res.json.error.message:find(message_part, 1, true), res.json.error.message)
  end
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v)
end

describe("emulator routes", function()
  local emu = emulator.for_spec()

  local function speech(body, key)
    return http(emu, "POST", "/audio/speech", { json = body, key = key })
  end

  describe("POST /audio/speech", function()
    it("sends pcm as audio/pcm, byte-exact, NUL and high bytes included", function()
      local res = speech({ model = "mistralai/voxtral-mini-tts-2603", input = "Hello world",
                           voice = "en_paul_neutral" })
      assert.are.equal(200, res.status)
      assert.are.equal("audio/pcm", res.headers["content-type"])
      assert.are.equal("chunked", res.headers["transfer-encoding"])
      assert.is_nil(res.headers["content-length"])
      assert.matches(GEN_ID, res.headers["x-generation-id"])
      assert.are.equal(expected_audio("pcm", "Hello world"), res.body)
      assert.are.equal(8 + 8 * 2 * 11, #res.body)
      -- a C string would stop at the first byte
      assert.are.equal(1, res.body:find("\0", 1, true))
      assert.is_truthy(res.body:find("[\128-\255]"))
    end)

    it("defaults to pcm and sends mp3 as audio/mpeg with an ID3 tag and a frame header", function()
      local res = speech({ model = "openai/gpt-4o-mini-tts", input = "abc", response_format = "mp3" })
      assert.are.equal(200, res.status)
      assert.are.equal("audio/mpeg", res.headers["content-type"])
      assert.are.equal("ID3", res.body:sub(1, 3))
      assert.are.equal("\255\251", res.body:sub(11, 12))
      assert.are.equal(expected_audio("mp3", "abc"), res.body)
      local default = speech({ model = "openai/gpt-4o-mini-tts", input = "abc" })
      assert.are.equal("audio/pcm", default.headers["content-type"])
      assert.are.equal(expected_audio("pcm", "abc"), default.body)
    end)

    it("is deterministic from the input, and binary input comes back as samples", function()
      local input = "x\0y\255z"
      local a = speech({ model = "m/tts", input = input })
      local b = speech({ model = "m/tts", input = input })
      local c = speech({ model = "m/tts", input = "other" })
      assert.are.equal(a.body, b.body)
      assert.are_not.equal(a.body, c.body)
      assert.are.equal(expected_audio("pcm", input), a.body)
      assert.are.equal(expected_audio("pcm", ""), speech({ model = "m/tts", input = "" }).body)
    end)

    it("arrives in several HTTP chunks, a few ms apart", function()
      local res = speech({ model = "m/tts", input = "Hello world" })
      assert.are.equal(4, #res.chunks)
      for _, piece in ipairs(res.chunks) do assert.is_true(#piece > 0) end
      assert.is_true(res.times[#res.times] - res.times[1] >= 0.012,
        "chunks spread over " .. (res.times[#res.times] - res.times[1]) .. " s")
    end)

    it("emulator/speech-slow:<ms> waits that long between the chunks", function()
      local t0 = socket.gettime()
      local res = speech({ model = "emulator/speech-slow:80", input = "slow" })
      assert.are.equal(200, res.status)
      assert.are.equal(expected_audio("pcm", "slow"), res.body)
      assert.are.equal(4, #res.chunks)
      for i = 2, #res.times do
        assert.is_true(res.times[i] - res.times[i - 1] >= 0.06,
          "gap " .. i .. ": " .. (res.times[i] - res.times[i - 1]) .. " s")
      end
      assert.is_true(socket.gettime() - t0 >= 0.24)
    end)

    it("emulator/speech-big:<bytes> sends exactly that many bytes in 64 KiB chunks", function()
      local n = 300007
      local res = speech({ model = "emulator/speech-big:" .. n, input = "big\0\200" })
      assert.are.equal(200, res.status)
      assert.are.equal(n, #res.body)
      assert.are.equal(expected_audio("pcm", "big\0\200", n), res.body)
      assert.are.equal(5, #res.chunks)
      for i = 1, 4 do assert.are.equal(65536, #res.chunks[i]) end
      local mp3 = speech({ model = "emulator/speech-big:5", input = "x", response_format = "mp3" })
      assert.are.equal("ID3\4\0", mp3.body)
      local none = speech({ model = "emulator/speech-big:0", input = "x" })
      assert.are.equal(200, none.status)
      assert.are.equal("", none.body)
    end)

    it("answers 400 with an error body for a request SpeechRequest refuses", function()
      assert_error(speech({ input = "hi" }), 400, "model")
      assert_error(speech({ model = "m/tts" }), 400, "input")
      assert_error(speech({ model = "m/tts", input = 5 }), 400, "input")
      assert_error(speech({ model = "m/tts", input = "hi", voice = "" }), 400, "voice")
      assert_error(speech({ model = "m/tts", input = "hi", voice = 3 }), 400, "voice")
      assert_error(speech({ model = "m/tts", input = "hi", response_format = "wav" }), 400,
        "response_format")
      assert_error(speech({ model = "m/tts", input = "hi", speed = "fast" }), 400, "speed")
      assert_error(speech({ model = "missing/tts", input = "hi" }), 400, "not a valid model ID")
      assert_error(speech({ model = "emulator/speech-nope", input = "hi" }), 400,
        "not a valid model ID")
      assert_error(http(emu, "POST", "/audio/speech", { body = "[1]",
        content_type = "application/json" }), 400, "JSON object")
      assert_error(http(emu, "POST", "/audio/speech", { body = "{nope",
        content_type = "application/json" }), 400)
    end)

    it("needs an API key", function()
      assert_error(speech({ model = "m/tts", input = "hi" }, false), 401)
      assert_error(http(emu, "GET", "/audio/speech"), 405)
    end)
  end)

  -- Audio with NUL, CR LF, high bytes and a boundary-lookalike inside.
  local AUDIO = "RIFF\0\0\0\0WAVE\r\n--not-the-boundary\r\n\255\254\0\1" .. string.rep("\128\0", 40)

  local function transcribe_json(body, key)
    return http(emu, "POST", "/audio/transcriptions", { json = body, key = key })
  end

  -- A multipart/form-data body: parts = { { name, content, filename = , type = } ... }.
  local function multipart(boundary, parts)
    local out = {}
    for _, p in ipairs(parts) do
      local disposition = 'form-data; name="' .. p[1] .. '"'
      if p.filename then disposition = disposition .. '; filename="' .. p.filename .. '"' end
      out[#out + 1] = "--" .. boundary .. "\r\nContent-Disposition: " .. disposition .. "\r\n"
        .. (p.type and ("Content-Type: " .. p.type .. "\r\n") or "") .. "\r\n" .. p[2] .. "\r\n"
    end
    return table.concat(out) .. "--" .. boundary .. "--\r\n"
  end

  local function transcribe_form(content_type, body)
    return http(emu, "POST", "/audio/transcriptions", { body = body, content_type = content_type })
  end

  local function assert_stt(res, text)
    assert.are.equal(200, res.status)
    assert.are.equal("application/json", res.headers["content-type"])
    assert.matches(GEN_ID, res.headers["x-generation-id"])
    assert.are.equal(text, res.json.text)
    local usage = res.json.usage
    assert.is_table(usage)
    assert.is_true(is_integer(usage.input_tokens))
    assert.is_true(is_integer(usage.output_tokens))
    assert.are.equal(usage.input_tokens + usage.output_tokens, usage.total_tokens)
    assert.is_number(usage.seconds)
    assert.is_number(usage.cost)
  end

  describe("POST /audio/transcriptions", function()
    it("takes JSON input_audio (base64) and names its size, format and first bytes", function()
      local res = transcribe_json({ model = "openai/whisper-large-v3", language = "en",
        input_audio = { data = base64(AUDIO), format = "wav" } })
      assert_stt(res, ("Transcribed %d bytes of wav: %s"):format(#AUDIO, hex(AUDIO:sub(1, 16))))
      assert.is_nil(res.json.segments) -- only with verbose_json
      -- padding of one and two "="
      for _, audio in ipairs({ "\0\255", "\0", "abcd" }) do
        local r = transcribe_json({ model = "m/stt", input_audio = { data = base64(audio),
          format = "mp3" } })
        assert_stt(r, ("Transcribed %d bytes of mp3: %s"):format(#audio, hex(audio)))
      end
    end)

    it("takes a multipart/form-data upload, binary-safe", function()
      local boundary = "----emulator-spec-7MA4YWxkTrZu0gW"
      local body = multipart(boundary, {
        { "model", "openai/whisper-large-v3" },
        { "file", AUDIO, filename = "speech.wav", type = "audio/wav" },
        { "language", "en" },
        { "temperature", "0.2" },
      })
      local res = transcribe_form("multipart/form-data; boundary=" .. boundary, body)
      assert_stt(res, ("Transcribed %d bytes of speech.wav: %s"):format(#AUDIO,
        hex(AUDIO:sub(1, 16))))
      -- the request log holds the body as sent
      assert.are.equal(body, emu:last_request().body)
    end)

    it("parses a quoted boundary, a preamble, a part without filename and verbose_json", function()
      local boundary = "b:o u=n;d"
      local audio = "\0\0\0\1ogg bytes \255"
      local body = "preamble to ignore\r\n" .. multipart(boundary, {
        { "file", audio, type = "audio/ogg" },
        { "model", "m/stt" },
        { "language", "fr" },
        { "response_format", "verbose_json" },
        { "timestamp_granularities[]", "segment" },
        { "timestamp_granularities[]", "word" },
      }) .. "epilogue"
      local res = transcribe_form('multipart/form-data; charset=utf-8; boundary="' .. boundary
        .. '"', body)
      local text = ("Transcribed %d bytes of ogg: %s"):format(#audio, hex(audio))
      assert_stt(res, text)
      assert.are.equal("transcribe", res.json.task)
      assert.are.equal("fr", res.json.language)
      assert.is_number(res.json.duration)
      local segment = res.json.segments[1]
      assert.are.equal(0, segment.id)
      assert.is_number(segment.start)
      assert.is_number(segment["end"])
      assert.are.equal(text, segment.text)
      assert.are.equal(6, #res.json.words)
      assert.are.equal("Transcribed", res.json.words[1].word)
      for _, w in ipairs(res.json.words) do
        assert.is_string(w.word)
        assert.is_number(w.start)
        assert.is_true(w["end"] >= w.start)
      end
      -- no words unless asked
      local json = transcribe_json({ model = "m/stt", response_format = "verbose_json",
        input_audio = { data = base64(audio), format = "ogg" } })
      assert.are.equal("english", json.json.language)
      assert.is_table(json.json.segments)
      assert.is_nil(json.json.words)
    end)

    it("answers 400 for a missing file, bad base64 or a wrong content type", function()
      local boundary = "xyz"
      local function form(parts) return transcribe_form("multipart/form-data; boundary=xyz",
        multipart(boundary, parts)) end
      assert_error(form({ { "model", "m/stt" } }), 400, "file")
      assert_error(form({ { "file", "abc", filename = "a.wav" } }), 400, "model")
      assert_error(form({ { "model", "m/stt" }, { "file", "", filename = "a.wav" } }), 400, "empty")
      assert_error(form({ { "model", "m/stt" }, { "file", "abc" } }), 400, "format")
      assert_error(form({ { "model", "m/stt" }, { "file", "abc", filename = "a.wav" },
        { "response_format", "srt" } }), 400, "response_format")
      assert_error(form({ { "model", "m/stt" }, { "file", "abc", filename = "a.wav" },
        { "temperature", "warm" } }), 400, "temperature")
      assert_error(form({ { "model", "missing/stt" }, { "file", "abc", filename = "a.wav" } }), 400,
        "not a valid model ID")
      -- no closing delimiter; no boundary; a part without a name
      assert_error(transcribe_form("multipart/form-data; boundary=xyz",
        '--xyz\r\nContent-Disposition: form-data; name="model"\r\n\r\nm/stt\r\n'), 400)
      assert_error(transcribe_form("multipart/form-data", multipart("xyz", {
        { "model", "m/stt" }, { "file", "abc", filename = "a.wav" } })), 400, "boundary")
      assert_error(transcribe_form("multipart/form-data; boundary=xyz",
        "--xyz\r\nContent-Type: audio/wav\r\n\r\nabc\r\n--xyz--\r\n"), 400, "Content-Disposition")
      -- content types
      assert_error(transcribe_form("text/plain", "hello"), 400, "Content-Type")
      assert_error(transcribe_form("audio/wav", AUDIO), 400, "Content-Type")
      assert_error(http(emu, "POST", "/audio/transcriptions", { body = "{}" }), 400,
        "Content-Type")
      -- JSON bodies
      local function data(d) return { model = "m/stt", input_audio = { data = d, format = "wav" } } end
      assert_error(transcribe_json({ model = "m/stt" }), 400, "input_audio")
      assert_error(transcribe_json({ model = "m/stt", input_audio = { data = "AAAA" } }), 400,
        "input_audio")
      assert_error(transcribe_json({ input_audio = { data = "AAAA", format = "wav" } }), 400,
        "model")
      for _, bad in ipairs({ "abc", "AA=A", "A===", "AAA*", "AA AA", "data:audio/wav;base64,AAAA" }) do
        assert_error(transcribe_json(data(bad)), 400, "base64")
      end
      assert_error(transcribe_json(data("")), 400, "empty")
    end)

    it("needs an API key", function()
      assert_error(transcribe_json({ model = "m/stt", input_audio = { data = "AAAA",
        format = "wav" } }, false), 401)
    end)
  end)

  -- The fields every key object of the description has, and their JSON types.
  local KEY_FIELDS = {
    hash = "string", name = "string", label = "string", disabled = "boolean",
    limit = "number|null", limit_remaining = "number|null", limit_reset = "string|null",
    include_byok_in_limit = "boolean", usage = "number", usage_daily = "number",
    usage_weekly = "number", usage_monthly = "number", byok_usage = "number",
    byok_usage_daily = "number", byok_usage_weekly = "number", byok_usage_monthly = "number",
    created_at = "string", updated_at = "string|null", creator_user_id = "string|null",
    workspace_id = "string",
  }

  local function assert_key_object(data)
    for field, types in pairs(KEY_FIELDS) do
      local v = data[field]
      local t = v == null and "null" or type(v)
      assert.is_truthy(("|" .. types .. "|"):find("|" .. t .. "|", 1, true),
        field .. " is " .. t .. ", wants " .. types)
    end
    assert.matches("^%x+$", data.hash)
    assert.are.equal(64, #data.hash)
    assert.is_nil(data.key)
  end

  local function keys(method, path, opts)
    opts = opts or {}
    if opts.key == nil then opts.key = MGMT_KEY end
    return http(emu, method, "/keys" .. (path or ""), opts)
  end

  local function create(body)
    local res = keys("POST", "", { json = body })
    assert.are.equal(201, res.status, res.body)
    return res.json
  end

  describe("/keys", function()
    it("refuses any key that is not a management key with 403", function()
      local forbidden = "Only management keys can perform this operation"
      assert_error(keys("GET", "", { key = KEY }), 403, forbidden)
      assert_error(keys("POST", "", { key = KEY, json = { name = "x" } }), 403, forbidden)
      assert_error(keys("GET", "/abc", { key = KEY }), 403, forbidden)
      assert_error(keys("PATCH", "/abc", { key = KEY, json = { name = "y" } }), 403, forbidden)
      assert_error(keys("DELETE", "/abc", { key = KEY }), 403, forbidden)
      assert_error(keys("GET", "", { key = false }), 401)
      assert_error(keys("GET", "", { key = "sk-or-invalid-1" }), 401)
      -- nothing was made
      assert.are.equal(0, #keys("GET").json.data)
    end)

    it("GET /key says whether the key is a management key", function()
      local mgmt = http(emu, "GET", "/key", { key = MGMT_KEY }).json.data
      assert.is_true(mgmt.is_management_key)
      local plain = http(emu, "GET", "/key").json.data
      assert.is_false(plain.is_management_key)
    end)

    it("creates, lists, gets, updates and deletes a key", function()
      local empty = keys("GET")
      assert.are.equal(200, empty.status)
      assert.is_truthy(empty.body:find('"data":[]', 1, true), empty.body)

      local made = create({ name = "My New API Key", limit = 50, limit_reset = "monthly",
        include_byok_in_limit = true, expires_at = "2027-12-31T23:59:59Z" })
      assert.matches("^sk%-or%-v1%-%x+$", made.key)
      local data = made.data
      assert_key_object(data)
      assert.are.equal("My New API Key", data.name)
      assert.are.equal(50, data.limit)
      assert.are.equal(50, data.limit_remaining)
      assert.are.equal("monthly", data.limit_reset)
      assert.is_true(data.include_byok_in_limit)
      assert.is_false(data.disabled)
      assert.are.equal("2027-12-31T23:59:59Z", data.expires_at)
      assert.are.equal(null, data.updated_at)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", data.created_at)
      assert.is_nil(data.key)
      assert.are_not.equal(made.key, data.label) -- the label is never the whole key
      assert.is_falsy(keys("GET").body:find(made.key, 1, true))

      local other = create({ name = "Other" }).data
      assert.are.equal(null, other.limit)
      assert.are.equal(null, other.limit_reset)
      assert.are_not.equal(data.hash, other.hash)

      local list = keys("GET")
      assert.are.equal(200, list.status)
      assert.are.equal(2, #list.json.data)
      for _, k in ipairs(list.json.data) do assert_key_object(k) end
      assert.are.equal(data.hash, list.json.data[1].hash)
      assert.are.equal(1, #keys("GET", "?offset=1").json.data)
      assert.are.equal(other.hash, keys("GET", "?offset=1").json.data[1].hash)
      assert.are.equal(0, #keys("GET", "?offset=5").json.data)

      local got = keys("GET", "/" .. data.hash)
      assert.are.equal(200, got.status)
      assert_key_object(got.json.data)
      assert.are.same(data, got.json.data)

      local patched = keys("PATCH", "/" .. data.hash, { json = { name = "Renamed", disabled = true,
        limit = 75, limit_reset = "daily", include_byok_in_limit = false } })
      assert.are.equal(200, patched.status)
      local p = patched.json.data
      assert_key_object(p)
      assert.are.equal("Renamed", p.name)
      assert.is_true(p.disabled)
      assert.are.equal(75, p.limit)
      assert.are.equal(75, p.limit_remaining)
      assert.are.equal("daily", p.limit_reset)
      assert.is_false(p.include_byok_in_limit)
      assert.is_string(p.updated_at)
      assert.are.equal(data.created_at, p.created_at)
      assert.are.equal("Renamed", keys("GET", "/" .. data.hash).json.data.name)
      -- null clears the limit
      local unlimited = keys("PATCH", "/" .. data.hash, { json = { limit = null, limit_reset = null } })
      assert.are.equal(null, unlimited.json.data.limit)
      assert.are.equal(null, unlimited.json.data.limit_remaining)
      assert.are.equal(null, unlimited.json.data.limit_reset)

      -- disabled keys are listed only on request
      assert.are.equal(1, #keys("GET").json.data)
      assert.are.equal(2, #keys("GET", "?include_disabled=true").json.data)
      assert.are.equal(1, #keys("GET", "?include_disabled=false").json.data)

      local deleted = keys("DELETE", "/" .. data.hash)
      assert.are.equal(200, deleted.status)
      assert.are.same({ deleted = true }, deleted.json)
      assert_error(keys("GET", "/" .. data.hash), 404)
      assert_error(keys("PATCH", "/" .. data.hash, { json = { name = "x" } }), 404)
      assert_error(keys("DELETE", "/" .. data.hash), 404)
      assert.are.equal(1, #keys("GET", "?include_disabled=true").json.data)
    end)

    it("keeps keys per workspace", function()
      local ws = "11111111-2222-4333-8444-555555555555"
      create({ name = "default" })
      local elsewhere = create({ name = "elsewhere", workspace_id = ws }).data
      assert.are.equal(ws, elsewhere.workspace_id)
      assert.are.equal(1, #keys("GET").json.data)
      local listed = keys("GET", "?workspace_id=" .. ws).json.data
      assert.are.equal(1, #listed)
      assert.are.equal("elsewhere", listed[1].name)
    end)

    it("makes the same hashes and keys after a reset, and the reset forgets the keys", function()
      local first = create({ name = "a" })
      local second = create({ name = "b" })
      emu:reset()
      assert.are.equal(0, #keys("GET", "?include_disabled=true").json.data)
      local again = create({ name = "a" })
      assert.are.equal(first.data.hash, again.data.hash)
      assert.are.equal(first.key, again.key)
      assert.are.equal(second.data.hash, create({ name = "b" }).data.hash)
    end)

    it("answers 400 for a body the description refuses, 405 for another method", function()
      assert_error(keys("POST", "", { json = {} }), 400, "name")
      assert_error(keys("POST", "", { json = { name = "" } }), 400, "name")
      assert_error(keys("POST", "", { json = { name = "x", limit = "50" } }), 400, "limit")
      assert_error(keys("POST", "", { json = { name = "x", limit_reset = "yearly" } }), 400,
        "limit_reset")
      assert_error(keys("POST", "", { json = { name = "x", include_byok_in_limit = "yes" } }), 400,
        "include_byok_in_limit")
      assert_error(keys("POST", "", { json = { name = "x",
        expires_at = "2027-12-31T23:59:59+02:00" } }), 400, "expires_at")
      assert_error(keys("POST", "", { body = "not json", content_type = "application/json" }), 400)
      assert_error(keys("GET", "?offset=-1"), 400, "offset")
      assert_error(keys("GET", "?include_disabled=maybe"), 400, "include_disabled")
      local hash = create({ name = "x" }).data.hash
      assert_error(keys("PATCH", "/" .. hash, { json = { disabled = "yes" } }), 400, "disabled")
      assert_error(keys("PATCH", "/" .. hash, { json = { limit_reset = "hourly" } }), 400,
        "limit_reset")
      assert_error(keys("PATCH", "/" .. hash, { body = "[]", content_type = "application/json" }), 400)

      local put = keys("PUT")
      assert_error(put, 405)
      assert.are.equal("GET, POST", put.headers.allow)
      local post = keys("POST", "/" .. hash, { json = {} })
      assert_error(post, 405)
      assert.are.equal("GET, PATCH, DELETE", post.headers.allow)
    end)
  end)
end)
