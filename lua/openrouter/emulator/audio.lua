-- Audio: text to speech (POST /audio/speech) and speech to text (POST /audio/transcriptions).

local util = require("openrouter.emulator.util")
local count_words, new_generation_id = util.count_words, util.new_generation_id
local http = require("openrouter.emulator.http")
local write, sleep, response_head = http.write, http.sleep, http.response_head
local respond_json, write_chunk = http.respond_json, http.write_chunk
local checks = require("openrouter.emulator.checks")
local authenticate, bad_request = checks.authenticate, checks.bad_request
local json_object_body, refuse_model = checks.json_object_body, checks.refuse_model

local API = {}

-- POST /audio/speech (key; spec/emulator_routes_spec.lua, spec/media_spec.lua): SpeechRequest:
-- model and input required, voice a non-empty string when given, response_format mp3 or pcm
-- (default pcm), else 400. 200: raw audio, Transfer-Encoding: chunked, X-Generation-Id;
-- Content-Type audio/mpeg (mp3: an ID3 tag and an MPEG frame header first) or audio/pcm (pcm:
-- 16-bit LE samples 0, 32767, -32767, 0 first). Then per input byte b one sample: b,
-- (b + 128) % 256, the input 8 times over; 4 HTTP chunks 5 ms apart. Models:
--   emulator/speech-slow:<ms>   the same, <ms> between the chunks
--   emulator/speech-big:<bytes> exactly <bytes> bytes of that sequence, in 64 KiB chunks
--   emulator/<other>, missing/<x>   400 "... is not a valid model ID"
-- POST /audio/speech. The Content-Type is what OpenRouter's description says it sends:
-- audio/mpeg for mp3, audio/pcm for pcm (raw 16-bit little-endian samples, no header: not
-- audio/L16, whose samples are big-endian by RFC 2586, nor audio/wav, which has a header).
-- The body is `lead` then the input's unit over and over: deterministic, with NUL and high
-- bytes, so a client that treats it as a C string or as text loses bytes.
local SPEECH_FORMATS = {
  -- an ID3v2.4 tag of size 0, then an MPEG-1 Layer III frame header (128 kbit/s, 44.1 kHz)
  mp3 = { content_type = "audio/mpeg", lead = "ID3\4\0\0\0\0\0\0\255\251\144\100" },
  -- four samples: 0, 32767, -32767, 0
  pcm = { content_type = "audio/pcm", lead = "\0\0\255\127\1\128\0\0" },
}
local SPEECH_REPEAT = 8 -- a default body holds the unit this many times after the lead
local SPEECH_CHUNKS = 4 -- and goes out in this many HTTP chunks
local SPEECH_DELAY = 0.005 -- seconds apart
local SPEECH_BIG_CHUNK = 65536 -- emulator/speech-big: chunks of this size, back to back

-- One 16-bit sample per byte of the input: the byte, then the byte + 128 (mod 256). An empty
-- input counts as one NUL byte.
local function speech_unit(input)
  if input == "" then input = "\0" end
  local out = {}
  for i = 1, #input do
    local b = input:byte(i)
    out[i] = string.char(b, (b + 128) % 256)
  end
  return table.concat(out)
end

-- Writes bytes [0, total) of lead .. unit .. unit .. as chunks of piece_size bytes, `delay`
-- seconds apart when given, then the last chunk. The body is never built whole.
local function write_speech(conn, lead, unit, total, piece_size, delay)
  local block = string.rep(unit, math.ceil(piece_size / #unit) + 1)
  local sent = 0
  while sent < total do
    local size = math.min(piece_size, total - sent)
    local head = sent < #lead and lead:sub(sent + 1, math.min(#lead, sent + size)) or ""
    local offset = (sent + #head - #lead) % #unit
    if delay and sent > 0 then sleep(delay) end
    write_chunk(conn, head .. block:sub(offset + 1, offset + size - #head))
    sent = sent + size
  end
  write(conn, "0\r\n\r\n")
end

local function audio_speech(conn, req)
  if not authenticate(conn, req) then return end
  local body = json_object_body(conn, req)
  if not body or refuse_model(conn, body.model) then return end
  if type(body.input) ~= "string" then return bad_request(conn, "input: Required") end
  if body.voice ~= nil and (type(body.voice) ~= "string" or body.voice == "") then
    return bad_request(conn, "voice: must be a non-empty string")
  end
  local format = body.response_format
  if format == nil then format = "pcm" end -- the description's default
  if not SPEECH_FORMATS[format] then
    return bad_request(conn, "response_format: must be one of mp3, pcm")
  end
  if body.speed ~= nil and type(body.speed) ~= "number" then
    return bad_request(conn, "speed: must be a number")
  end
  local lead, unit = SPEECH_FORMATS[format].lead, speech_unit(body.input)
  local total = #lead + SPEECH_REPEAT * #unit
  local piece_size, delay = math.ceil(total / SPEECH_CHUNKS), SPEECH_DELAY
  local name, arg = body.model:match("^emulator/([%w%-]+):?(.*)$")
  if name == "speech-slow" and arg:match("^%d+$") then
    delay = tonumber(arg) / 1000
  elseif name == "speech-big" and arg:match("^%d+$") then
    total, piece_size, delay = tonumber(arg), SPEECH_BIG_CHUNK, nil
  elseif name then
    return bad_request(conn, body.model .. " is not a valid model ID")
  end
  write(conn, response_head(conn, 200, {
    { "Content-Type", SPEECH_FORMATS[format].content_type }, { "Transfer-Encoding", "chunked" },
    { "X-Generation-Id", new_generation_id() },
  }))
  write_speech(conn, lead, unit, total, piece_size, delay)
end
API["/audio/speech"] = { method = "POST", handler = audio_speech }

-- POST /audio/transcriptions (key; spec/emulator_routes_spec.lua, spec/media_spec.lua):
-- application/json STTRequest (input_audio.data: strict base64, input_audio.format) or
-- multipart/form-data (a `file` part whose filename or audio/* Content-Type names it; model,
-- language, response_format, temperature, timestamp_granularities[] fields). 200 STTResponse:
-- text "Transcribed <n> bytes of <format or filename>: <first 16 bytes in hex>", usage (the
-- audio counted as 16 kHz 16-bit mono); verbose_json adds task, language, duration, segments
-- (and words when timestamp_granularities has "word"). 400: another Content-Type, no
-- boundary, a malformed multipart body, no file or model, bad base64, empty audio, bad fields.
-- POST /audio/transcriptions: JSON (input_audio: base64 data and format) or an OpenAI-style
-- multipart/form-data upload (a `file` part, `model` and other fields).

local BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local BASE64 = {}
for i = 1, #BASE64_ALPHABET do BASE64[BASE64_ALPHABET:byte(i)] = i - 1 end

-- Strict base64 (RFC 4648, padded, no whitespace): the bytes, or nil.
local function base64_decode(s)
  if #s % 4 ~= 0 or not s:find("^[%w+/]*=?=?$") then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local pad = (c == 61 and 2) or (d == 61 and 1) or 0 -- 61 is "="
    a, b, c, d = BASE64[a], BASE64[b], pad == 2 and 0 or BASE64[c], pad > 0 and 0 or BASE64[d]
    if not (a and b and c and d) then return nil end
    local n = a * 262144 + b * 4096 + c * 64 + d
    local x, y, z = math.floor(n / 65536), math.floor(n / 256) % 256, n % 256
    out[#out + 1] = pad == 2 and string.char(x) or pad == 1 and string.char(x, y)
      or string.char(x, y, z)
  end
  return table.concat(out)
end

-- The media type of a header value ("multipart/form-data; boundary=x" -> "multipart/form-data")
-- and its parameters, names lowercased, quoted values unquoted (RFC 7230 quoted-string).
local function header_params(value)
  local semi = value:find(";", 1, true) or #value + 1
  local kind = value:sub(1, semi - 1):match("^%s*(.-)%s*$"):lower()
  local params, pos = {}, semi
  while pos <= #value do
    local _, e, key = value:find("^;%s*([^=;%s]+)%s*=%s*", pos)
    local v
    if not e then
      v, pos = nil, pos + 1
    elseif value:sub(e + 1, e + 1) == '"' then
      local buf, i = {}, e + 2
      while i <= #value and value:sub(i, i) ~= '"' do
        if value:sub(i, i) == "\\" then i = i + 1 end
        buf[#buf + 1] = value:sub(i, i)
        i = i + 1
      end
      v, pos = table.concat(buf), i + 1
    else
      v = value:match("^[^;]*", e + 1)
      pos = e + 1 + #v
      v = v:match("^(.-)%s*$")
    end
    if v then params[key:lower()] = v end
    pos = value:find(";", pos, true) or #value + 1
  end
  return kind, params
end

-- The parts of a multipart body (RFC 2046 5.1.1, RFC 7578): a list of { headers = { lowercased
-- name = value }, content = bytes }, or nil, reason. Binary-safe: only the delimiter line
-- ("\r\n--boundary") ends a part's content.
local function parse_multipart(body, boundary)
  local delimiter = "--" .. boundary
  local first = body:find(delimiter, 1, true)
  if not first or (first > 1 and body:sub(first - 2, first - 1) ~= "\r\n") then
    return nil, "no multipart boundary in the body"
  end
  local parts, pos = {}, first + #delimiter
  while true do
    if body:sub(pos, pos + 1) == "--" then return parts end -- the close delimiter
    local eol = body:find("\r\n", pos, true)
    if not eol or not body:sub(pos, eol - 1):find("^[ \t]*$") then
      return nil, "malformed multipart delimiter line"
    end
    pos = eol + 2
    local headers, content_start = {}, pos + 2
    if body:sub(pos, pos + 1) ~= "\r\n" then
      local head_end = body:find("\r\n\r\n", pos, true)
      if not head_end then return nil, "unterminated part headers" end
      for line in (body:sub(pos, head_end - 1) .. "\r\n"):gmatch("(.-)\r\n") do
        local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
        if not name then return nil, "malformed part header" end
        headers[name:lower()] = value
      end
      content_start = head_end + 4
    end
    local close = body:find("\r\n" .. delimiter, content_start, true)
    if not close then return nil, "unterminated multipart body" end
    parts[#parts + 1] = { headers = headers, content = body:sub(content_start, close - 1) }
    pos = close + 2 + #delimiter
  end
end

-- The request's fields and audio from a multipart/form-data body: { model=, language=, ...,
-- timestamp_granularities = {...}, audio = bytes, label = filename or format }, or nil, reason.
local function multipart_transcription(req, boundary)
  local parts, problem = parse_multipart(req.body, boundary)
  if not parts then return nil, problem end
  local fields = { timestamp_granularities = {} }
  for _, part in ipairs(parts) do
    local disposition = part.headers["content-disposition"]
    local kind, params = header_params(disposition or "")
    if kind ~= "form-data" or not params.name then
      return nil, "every part needs Content-Disposition: form-data; name=..."
    end
    if params.name == "file" then
      local media = header_params(part.headers["content-type"] or "")
      fields.audio = part.content
      fields.label = params.filename or media:match("^audio/(.+)$")
    elseif params.name == "timestamp_granularities[]" then
      table.insert(fields.timestamp_granularities, part.content)
    elseif params.name == "temperature" then
      fields.temperature = tonumber(part.content) or part.content
    else
      fields[params.name] = part.content
    end
  end
  if fields.audio == nil then return nil, "file: Required" end
  if not fields.label then
    return nil, "file: the audio format comes from the filename or an audio/* Content-Type"
  end
  return fields
end

-- The same from a JSON body (STTRequest), or nil, reason.
local function json_transcription(req)
  local body = req.json
  if type(body) ~= "table" or not req.body:find("^%s*{") then
    return nil, "Invalid request body: expected a JSON object"
  end
  local input = body.input_audio
  if type(input) ~= "table" or type(input.data) ~= "string" or type(input.format) ~= "string" then
    return nil, "input_audio: Required (an object with data and format strings)"
  end
  local audio = base64_decode(input.data)
  if not audio then return nil, "input_audio.data: invalid base64" end
  local fields = {}
  for k, v in pairs(body) do fields[k] = v end
  fields.audio, fields.label = audio, input.format
  if fields.timestamp_granularities == nil then fields.timestamp_granularities = {} end
  return fields
end

local STT_GRANULARITIES = { word = true, segment = true }

-- The reason the fields are unusable, or nil.
local function invalid_transcription(f)
  if type(f.model) ~= "string" or f.model == "" then return "model: Required" end
  if #f.audio == 0 then return "the audio is empty" end
  if f.language ~= nil and type(f.language) ~= "string" then return "language: must be a string" end
  if f.temperature ~= nil and type(f.temperature) ~= "number" then
    return "temperature: must be a number"
  end
  if f.response_format ~= nil and f.response_format ~= "json"
      and f.response_format ~= "verbose_json" then
    return "response_format: must be one of json, verbose_json"
  end
  if type(f.timestamp_granularities) ~= "table" then
    return "timestamp_granularities: must be an array"
  end
  for _, g in ipairs(f.timestamp_granularities) do
    if not STT_GRANULARITIES[g] then return "timestamp_granularities: word or segment" end
  end
end

-- STTResponse: the text names the audio's size, its format or filename, and its first 16
-- bytes in hex; the audio is taken as 16 kHz 16-bit mono (32000 bytes a second).
local function transcription_body(f)
  local hex = f.audio:sub(1, 16):gsub(".", function(c) return string.format("%02x", c:byte()) end)
  local text = string.format("Transcribed %d bytes of %s: %s", #f.audio, f.label, hex)
  local seconds = math.floor(#f.audio / 32 + 0.5) / 1000
  local input_tokens, output_tokens = math.max(1, math.ceil(#f.audio / 320)), count_words(text)
  local body = { text = text, usage = { cost = seconds * 0.0001, input_tokens = input_tokens,
    output_tokens = output_tokens, total_tokens = input_tokens + output_tokens,
    seconds = seconds } }
  if f.response_format ~= "verbose_json" then return body end
  body.task, body.language, body.duration = "transcribe", f.language or "english", seconds
  local words, n = {}, count_words(text)
  for word in text:gmatch("%S+") do
    local i = #words
    words[i + 1] = { word = word, start = seconds * i / n, ["end"] = seconds * (i + 1) / n }
  end
  body.segments = { { id = 0, seek = 0, start = 0, ["end"] = seconds, text = text,
    tokens = { 50364, 2425, 456 }, temperature = f.temperature or 0, avg_logprob = -0.25,
    compression_ratio = 1, no_speech_prob = 0 } }
  for _, g in ipairs(f.timestamp_granularities) do
    if g == "word" then body.words = words end
  end
  return body
end

local function audio_transcriptions(conn, req)
  if not authenticate(conn, req) then return end
  local media, params = header_params(req.headers["content-type"] or "")
  local fields, problem
  if media == "application/json" then
    fields, problem = json_transcription(req)
  elseif media == "multipart/form-data" then
    if not params.boundary or params.boundary == "" then
      return bad_request(conn, "multipart/form-data without a boundary")
    end
    fields, problem = multipart_transcription(req, params.boundary)
  else
    return bad_request(conn, "Unsupported Content-Type " .. (req.headers["content-type"]
      or "(none)") .. ": send application/json or multipart/form-data")
  end
  problem = problem or invalid_transcription(fields)
  if problem then return bad_request(conn, problem) end
  if refuse_model(conn, fields.model) then return end
  respond_json(conn, 200, transcription_body(fields), { { "X-Generation-Id", new_generation_id() } })
end
API["/audio/transcriptions"] = { method = "POST", handler = audio_transcriptions }

return { routes = API }
