--- Speech to text: `client:transcription(params)` and `client:transcription_async(params, opts)`,
-- over `client:request` (POST /audio/transcriptions).
--
--     -- JSON: base64 audio (openrouter.audio reads and encodes it)
--     local res = client:transcription{ model = "openai/whisper-large-v3",
--       audio = assert(openrouter.audio("note.wav")) }
--     -- multipart/form-data: the file uploaded as it is
--     local res = client:transcription{ model = "openai/whisper-large-v3", file = "note.mp3" }
--     print(res.text)
-- @module openrouter.transcription

local core = require("openrouter.core")
local media = require("openrouter.media")
local shared = require("openrouter.shared")

local M = {}

local PATH = "/audio/transcriptions"

local argerror = shared.argerror

-- A JSON array: a sequence, not empty unless marked by openrouter.array.
local function is_array(t)
  return shared.is_sequence(t) and (next(t) ~= nil or getmetatable(t) == core.array_mt)
end

-- A form field's value as text: numbers without ".0", booleans as true/false, other
-- tables as JSON.
local function field_text(v)
  if type(v) == "number" then
    if v % 1 == 0 and math.abs(v) < 2 ^ 53 then return ("%d"):format(v) end
    return ("%.17g"):format(v)
  end
  if type(v) == "table" then return core.json_encode(v) end
  return tostring(v)
end

-- Content-Disposition parameter values as browsers send them (WHATWG HTML, "multipart/
-- form-data encoding algorithm"): ", CR and LF percent-encoded.
local function quoted(s)
  return '"' .. s:gsub('[\r\n"]', { ["\r"] = "%0D", ["\n"] = "%0A", ['"'] = "%22" }) .. '"'
end

-- The form's fields, sorted by name for a stable body: { { name, text }, ... }; a
-- sequence becomes one "name[]" field per item.
local function form_fields(fname, params)
  local names, fields = {}, {}
  for k in pairs(params) do
    if k ~= "file" and k ~= "filename" then names[#names + 1] = k end
  end
  table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(names) do
    local v = params[k]
    if type(k) ~= "string" or k:find("[%c\"]") then
      argerror(fname, 1, "field names must be strings without quotes or control characters")
    end
    if type(v) == "table" and is_array(v) then
      for _, item in ipairs(v) do fields[#fields + 1] = { k .. "[]", field_text(item) } end
    elseif type(v) == "string" or type(v) == "number" or type(v) == "boolean" or type(v) == "table" then
      fields[#fields + 1] = { k, field_text(v) }
    else
      argerror(fname, 1, ("'%s' cannot be sent as a form field (%s)"):format(k, type(v)))
    end
  end
  return fields
end

-- A boundary found nowhere in the data (RFC 2046 5.1.1: at most 70 characters).
local function boundary_for(chunks)
  for i = 1, math.huge do
    local b = "openrouter-lua-" .. core.base64(core.random_bytes(24) or tostring(os.time()), "url") .. i
    local clash = false
    for _, c in ipairs(chunks) do
      if c:find(b, 1, true) then clash = true break end
    end
    if not clash then return b end
  end
end

-- The multipart/form-data body (RFC 7578) and its content type.
local function multipart(fields, file)
  local data = { file.bytes, file.filename }
  for _, f in ipairs(fields) do data[#data + 1] = f[2] end
  local boundary = boundary_for(data)
  local out = {}
  for _, f in ipairs(fields) do
    out[#out + 1] = "--" .. boundary .. "\r\nContent-Disposition: form-data; name="
      .. quoted(f[1]) .. "\r\n\r\n" .. f[2] .. "\r\n"
  end
  out[#out + 1] = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"file\"; filename="
    .. quoted(file.filename) .. "\r\nContent-Type: " .. file.mime .. "\r\n\r\n"
  out[#out + 1] = file.bytes
  out[#out + 1] = "\r\n--" .. boundary .. "--\r\n"
  return table.concat(out), "multipart/form-data; boundary=" .. boundary
end

-- The request spec for params, or nil, err (a file that cannot be read).
local function request_spec(fname, params)
  shared.checktype(fname, 1, params, "table")
  local n = (params.file ~= nil and 1 or 0) + (params.audio ~= nil and 1 or 0)
    + (params.input_audio ~= nil and 1 or 0)
  if n ~= 1 then
    argerror(fname, 1, "exactly one of 'file' (a path or bytes), 'audio' (openrouter.audio(...)) "
      .. "or 'input_audio' expected")
  end
  if params.filename ~= nil and (params.file == nil or type(params.filename) ~= "string") then
    argerror(fname, 1, "'filename' must be a string, with 'file'")
  end
  if params.file ~= nil then
    local file, err = media.load_audio(fname, params.file, params.filename)
    if not file then return nil, err end
    local body, content_type = multipart(form_fields(fname, params), file)
    return { method = "POST", path = PATH, body = body, content_type = content_type }
  end
  local body = {}
  for k, v in pairs(params) do body[k] = v end
  if params.audio ~= nil then
    local part = params.audio
    if type(part) ~= "table" or type(part.input_audio) ~= "table" then
      argerror(fname, 1, "'audio' must be an input_audio content part (openrouter.audio(...))")
    end
    body.audio, body.input_audio = nil, part.input_audio
  end
  return { method = "POST", path = PATH, body = body }
end

local function check_client(self, fname)
  if not core.is_client(self) then
    argerror(fname, 1, "client expected, got " .. type(self) .. " (call it with ':')")
  end
end

--- Transcribes audio: POST /audio/transcriptions.
-- With `params.audio` (a part from `openrouter.audio`) or `params.input_audio` (`{ data =
-- base64, format = }`) it sends JSON; with `params.file` (a path or the bytes; `filename`
-- names bytes) it uploads the file as multipart/form-data, the other params as form fields
-- (a list as repeated `name[]` fields).
-- @tparam table params `model`, one of `audio` / `input_audio` / `file`, and `language`,
--   `response_format`, `temperature`, `timestamp_granularities`, ...
-- @treturn ?table `{ text =, usage = }` (verbose_json: also `segments`, ...), or nil, err
-- @treturn ?table err
-- @treturn ?table info (nil when the file could not be read)
function M.transcription(self, params)
  check_client(self, "transcription")
  local spec, err = request_spec("transcription", params)
  if not spec then return nil, err end
  return self:request(spec)
end

--- The async twin of `transcription`.
-- @tparam table params as for `transcription`
-- @tparam[opt] table opts `on_done(res, err, info)`, as every `_async` method
-- @return the request object, or nil, err when the file could not be read
function M.transcription_async(self, params, opts)
  check_client(self, "transcription_async")
  local spec, err = request_spec("transcription_async", params)
  if not spec then return nil, err end
  return self:request_async(spec, opts)
end

--- Adds `transcription` and `transcription_async` to the client type.
-- @param openrouter the openrouter module
function M.install(openrouter)
  openrouter.Client.transcription = M.transcription
  openrouter.Client.transcription_async = M.transcription_async
end

return M
