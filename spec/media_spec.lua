-- Media in (lua/openrouter/media.lua, src/base64.c): openrouter.image, .file and .audio
-- build chat content parts from a path or bytes, in the shapes of the OpenAPI
-- description (ChatContentImage, ChatContentFile, ChatContentAudio); core.base64 against
-- RFC 4648's vectors and a reference in Lua; client:transcription, JSON and multipart,
-- against the emulator.
local openrouter = require("openrouter")
local core = require("openrouter.core")
local emulator = require("spec.support.emulator_control")

local KEY = "sk-or-v1-media-spec-0123456789abcdef"

-- A reference encoder, slow and obvious.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function ref_base64(s)
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

local function bytes_of(seed, n)
  local t = {}
  for i = 1, n do t[i] = string.char((seed * 31 + i * 17 + math.floor(i / 7)) % 256) end
  return table.concat(t)
end

local SAMPLES = {
  png = "\137PNG\r\n\26\n\0\0\0\13IHDR" .. bytes_of(1, 40),
  jpeg = "\255\216\255\224\0\16JFIF\0" .. bytes_of(2, 40),
  gif = "GIF89a" .. bytes_of(3, 20),
  webp = "RIFF\36\0\0\0WEBPVP8 " .. bytes_of(4, 20),
  pdf = "%PDF-1.7\n%\226\227\207\211\n" .. bytes_of(5, 40),
  wav = "RIFF\36\0\0\0WAVEfmt \16\0\0\0" .. bytes_of(6, 40),
  mp3 = "ID3\4\0\0\0\0\0\0\255\251\144\100" .. bytes_of(7, 40),
  mp3_frame = "\255\251\144\100" .. bytes_of(8, 40),
  aac = "\255\241\80\128" .. bytes_of(9, 40),
  flac = "fLaC\0\0\0\34" .. bytes_of(10, 40),
  ogg = "OggS\0\2" .. bytes_of(11, 40),
  aiff = "FORM\0\0\0\30AIFFCOMM" .. bytes_of(12, 20),
  m4a = "\0\0\0\32ftypM4A \0\0\0\0" .. bytes_of(13, 20),
}

local tmpfiles = {}
local function tmpfile(name, bytes)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  tmpfiles[#tmpfiles + 1] = dir
  return path
end

teardown(function()
  for _, dir in ipairs(tmpfiles) do os.execute("rm -rf '" .. dir .. "'") end
end)

describe("core.base64", function()
  it("RFC 4648 section 10's vectors, both alphabets", function()
    local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                      fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for input, want in pairs(vectors) do
      assert.are.equal(want, core.base64(input))
      assert.are.equal((want:gsub("=", "")), core.base64(input, "url"))
    end
    assert.are.equal("-_-_", core.base64("\251\255\191", "url"))
    assert.are.equal("+/+/", core.base64("\251\255\191"))
  end)

  it("equals a reference encoder for every length 0..300 and all byte values", function()
    for n = 0, 300 do
      local s = bytes_of(n, n)
      assert.are.equal(ref_base64(s), core.base64(s))
    end
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    assert.are.equal(ref_base64(table.concat(all)), core.base64(table.concat(all)))
  end)

  it("a megabyte in one call", function()
    local s = bytes_of(3, 65536):rep(16)
    local out = core.base64(s)
    assert.are.equal(math.ceil(#s / 3) * 4, #out)
    assert.are.equal(ref_base64(s:sub(1, 3000)), out:sub(1, 4000))
  end)

  it("misuse raises", function()
    assert.has_error(function() core.base64() end)
    assert.has_error(function() core.base64("x", "hex") end)
  end)
end)

describe("content parts", function()
  it("image: a data URL whose type comes from the bytes", function()
    for kind, mime in pairs{ png = "image/png", jpeg = "image/jpeg", gif = "image/gif",
                             webp = "image/webp" } do
      local part = assert(openrouter.image(SAMPLES[kind]))
      assert.are.same({ type = "image_url", image_url = {
        url = "data:" .. mime .. ";base64," .. ref_base64(SAMPLES[kind]) } }, part)
    end
  end)

  it("image: from a path; the extension when the bytes tell nothing; an explicit type wins", function()
    local path = tmpfile("cat.png", SAMPLES.png)
    assert.are.equal("data:image/png;base64," .. ref_base64(SAMPLES.png),
      openrouter.image(path).image_url.url)
    local svgish = tmpfile("odd.jpg", "not really a jpeg")
    assert.are.equal("data:image/jpeg;base64," .. ref_base64("not really a jpeg"),
      openrouter.image(svgish).image_url.url)
    assert.are.equal("data:image/avif;base64," .. ref_base64(SAMPLES.png),
      openrouter.image(SAMPLES.png, "image/avif").image_url.url)
  end)

  it("file: a PDF from bytes or a path, with its filename", function()
    assert.are.same({ type = "file", file = { filename = "document.pdf",
      file_data = "data:application/pdf;base64," .. ref_base64(SAMPLES.pdf) } },
      openrouter.file(SAMPLES.pdf))
    local path = tmpfile("report 2024.pdf", SAMPLES.pdf)
    local part = assert(openrouter.file(path))
    assert.are.equal("report 2024.pdf", part.file.filename)
    assert.are.equal("data:application/pdf;base64," .. ref_base64(SAMPLES.pdf), part.file.file_data)
    assert.are.equal("r.pdf", openrouter.file(path, "r.pdf").file.filename)
    -- text has no signature: the given file name's extension tells its type
    local notes = openrouter.file("line one\nline two\n", "notes.md")
    assert.are.equal("data:text/markdown;base64," .. ref_base64("line one\nline two\n"),
      notes.file.file_data)
  end)

  it("audio: base64 data and the format, from the bytes, the extension or the caller", function()
    local formats = { wav = "wav", mp3 = "mp3", mp3_frame = "mp3", aac = "aac", flac = "flac",
                      ogg = "ogg", aiff = "aiff", m4a = "m4a" }
    for kind, format in pairs(formats) do
      assert.are.same({ type = "input_audio", input_audio = { data = ref_base64(SAMPLES[kind]),
        format = format } }, openrouter.audio(SAMPLES[kind]), kind)
    end
    local raw = tmpfile("voice.wav", "\0\1\2\3 raw")
    assert.are.equal("wav", openrouter.audio(raw).input_audio.format)
    assert.are.equal("pcm16", openrouter.audio("\0\1\2\3", "pcm16").input_audio.format)
  end)

  it("binary-safe: NUL and high bytes survive", function()
    local s = SAMPLES.png .. "\0\255\0\128"
    assert.are.equal("data:image/png;base64," .. ref_base64(s), openrouter.image(s).image_url.url)
  end)

  it("a missing file, an empty file, an unknown type, a wrong type: nil, err (kind media)", function()
    local res, err = openrouter.image("/nonexistent/cat.png")
    assert.is_nil(res)
    assert.is_true(openrouter.is_error(err))
    assert.are.equal("media", err.kind)
    assert.are.equal("unreadable", err.code)
    assert.are.equal("/nonexistent/cat.png", err.path)
    assert.matches("cannot read '/nonexistent/cat.png': No such file", err.message, 1, true)

    res, err = openrouter.audio(tmpfile("empty.wav", ""))
    assert.is_nil(res)
    assert.are.equal("empty", err.code)

    res, err = openrouter.image(tmpfile("blob", "no signature here"))
    assert.is_nil(res)
    assert.are.equal("unknown_type", err.code)
    assert.matches("cannot tell the type", tostring(err))

    res, err = openrouter.image(SAMPLES.pdf)
    assert.is_nil(res)
    assert.are.equal("wrong_type", err.code)
    assert.matches("application/pdf, not an image", err.message, 1, true)

    res, err = openrouter.audio(SAMPLES.png)
    assert.are.equal("wrong_type", err.code)

    res, err = openrouter.file("just some text\n")
    assert.are.equal("unknown_type", err.code)

    -- a directory cannot be read either
    res, err = openrouter.file(os.getenv("HOME") or "/")
    assert.is_nil(res)
    assert.are.equal("unreadable", err.code)
  end)

  it("misuse raises bad argument", function()
    assert.has_error(function() openrouter.image(nil) end,
      "bad argument #1 to 'image' (path or bytes expected, got nil)")
    assert.has_error(function() openrouter.image("") end)
    assert.has_error(function() openrouter.file(42) end)
    assert.has_error(function() openrouter.image(SAMPLES.png, 42) end)
    assert.has_error(function() openrouter.image(SAMPLES.png, "png") end)
    assert.has_error(function() openrouter.file(SAMPLES.pdf, "") end)
    assert.has_error(function() openrouter.audio(SAMPLES.wav, "w a v") end)
  end)

  it("a part goes into a chat message as it is", function()
    local emu = emulator.start()
    local client = openrouter.new{ api_key = KEY, base_url = emu.url }
    local res = assert(client:chat_completion{ model = "openai/gpt-4o-mini", messages = {
      { role = "user", content = { { type = "text", text = "What is it?" },
        assert(openrouter.image(SAMPLES.png)), assert(openrouter.file(SAMPLES.pdf)),
        assert(openrouter.audio(SAMPLES.wav)) } } } })
    assert.is_string(openrouter.text(res))
    local sent = emu:last_request().json.messages[1].content
    assert.are.equal("image_url", sent[2].type)
    assert.are.equal("data:image/png;base64," .. ref_base64(SAMPLES.png), sent[2].image_url.url)
    assert.are.equal("document.pdf", sent[3].file.filename)
    assert.are.equal("wav", sent[4].input_audio.format)
    client:close()
    emu:stop()
  end)
end)

describe("client:transcription", function()
  local emu = emulator.for_spec{ reset = false }
  local client

  setup(function()
    client = openrouter.new{ api_key = KEY, base_url = emu.url }
  end)

  teardown(function()
    client:close()
  end)

  local function hex16(s)
    return (s:sub(1, 16):gsub(".", function(c) return ("%02x"):format(c:byte()) end))
  end

  it("JSON: audio = openrouter.audio(...)", function()
    local res, err, info = client:transcription{ model = "openai/whisper-large-v3",
      audio = assert(openrouter.audio(SAMPLES.wav)), language = "en" }
    assert.is_nil(err)
    assert.are.equal(("Transcribed %d bytes of wav: %s"):format(#SAMPLES.wav, hex16(SAMPLES.wav)),
      res.text)
    assert.are.equal(200, info.status)
    local req = emu:last_request()
    assert.matches("^application/json", req.headers["content-type"])
    assert.are.same({ data = ref_base64(SAMPLES.wav), format = "wav" }, req.json.input_audio)
    assert.are.equal("en", req.json.language)
    assert.is_nil(req.json.audio)
  end)

  it("JSON: input_audio as it is", function()
    local res = assert(client:transcription{ model = "openai/whisper-large-v3",
      input_audio = { data = ref_base64("\1\2\3"), format = "pcm16" } })
    assert.are.equal("Transcribed 3 bytes of pcm16: 010203", res.text)
  end)

  it("multipart: a file by path, the other params as fields, binary-safe", function()
    local bytes = SAMPLES.mp3 .. "\r\n--\0\255" .. bytes_of(20, 5000)
    local path = tmpfile("memo.mp3", bytes)
    local res = assert(client:transcription{ model = "openai/whisper-large-v3", file = path,
      response_format = "verbose_json", temperature = 0.5,
      timestamp_granularities = { "word", "segment" } })
    assert.are.equal(("Transcribed %d bytes of memo.mp3: %s"):format(#bytes, hex16(bytes)), res.text)
    assert.is_table(res.words)
    assert.are.equal("transcribe", res.task)
    local req = emu:last_request()
    local boundary = req.headers["content-type"]:match("^multipart/form%-data; boundary=(.+)$")
    assert.is_string(boundary)
    assert.is_nil(bytes:find(boundary, 1, true))
    assert.truthy(req.body:find('name="temperature"\r\n\r\n0.5\r\n', 1, true))
    assert.truthy(req.body:find(bytes, 1, true))
  end)

  it("multipart: bytes with a filename; async", function()
    local done
    local req = assert(client:transcription_async({ model = "openai/whisper-large-v3",
      file = SAMPLES.flac, filename = 'take "1".flac' }, { on_done = function(res, err)
        done = { res, err }
      end }))
    req:wait()
    assert.is_nil(done[2])
    assert.matches("^Transcribed %d+ bytes of take %%221%%22%.flac: 664c6143", done[1].text)
    local body = emu:last_request().body
    assert.truthy(body:find('filename="take %221%22.flac"\r\nContent-Type: audio/flac\r\n', 1, true))
  end)

  it("an API error is nil, err; a missing file is nil, err (kind media), nothing sent", function()
    local res, err = client:transcription{ model = "missing/model", audio = openrouter.audio(SAMPLES.wav) }
    assert.is_nil(res)
    assert.are.equal("api", err.kind)
    assert.are.equal(400, err.status)
    emu:reset()
    res, err = client:transcription{ model = "openai/whisper-large-v3", file = "/nonexistent/a.wav" }
    assert.is_nil(res)
    assert.are.equal("media", err.kind)
    assert.are.same({}, emu:requests())
    res, err = client:transcription_async({ model = "m", file = "/nonexistent/a.wav" })
    assert.is_nil(res)
    assert.are.equal("unreadable", err.code)
  end)

  it("misuse raises", function()
    assert.has_error(function() client:transcription() end)
    assert.has_error(function() client:transcription{ model = "m" } end)
    assert.has_error(function()
      client:transcription{ model = "m", file = SAMPLES.wav, audio = openrouter.audio(SAMPLES.wav) }
    end)
    assert.has_error(function() client:transcription{ model = "m", audio = "note.wav" } end)
    assert.has_error(function() client:transcription{ model = "m", file = 42 } end)
    assert.has_error(function() client:transcription{ model = "m", file = SAMPLES.wav, x = print } end)
    assert.has_error(function() client.transcription({}, { model = "m", file = SAMPLES.wav }) end)
  end)
end)
