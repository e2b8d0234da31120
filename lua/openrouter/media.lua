--- Media in: chat content parts built from a file or from bytes.
--
--     local msg = { role = "user", content = {
--       { type = "text", text = "What is in this picture?" },
--       assert(openrouter.image("cat.png")),
--     } }
--
-- The bytes are base64-encoded in C (`core.base64`). Their type comes from their
-- signature (PNG, JPEG, GIF, WebP, PDF, WAV, MP3, AAC, FLAC, OGG, AIFF, M4A, WebM),
-- else from the file name's extension, else from the caller.
--
-- A string is taken as bytes when it starts with a known signature, holds a NUL byte
-- or a line break, or is longer than 4096 bytes; otherwise it is a path.
--
-- Misuse (an argument of the wrong type, a malformed media type) raises
-- `bad argument`. A file that cannot be read, empty media, a type that cannot be
-- told, or a type that does not fit (a PDF given to `image`) return `nil, err`, an
-- error object with `kind = "media"`, `code` ("unreadable", "empty",
-- "unknown_type", "wrong_type") and `path` when a file was named.
-- @module openrouter.media

local core = require("openrouter.core")
local shared = require("openrouter.shared")

local M = {}

local argerror = shared.argerror

local function media_error(code, message, path)
  return shared.new_error("media", message, { code = code, path = path })
end

-- { media type, audio format } by signature. `at` is where `magic` starts (1-based);
-- `also` a second magic at `also_at` (RIFF and FORM containers).
local SIGNATURES = {
  { magic = "\137PNG\r\n\26\n", mime = "image/png" },
  { magic = "\255\216\255", mime = "image/jpeg" },
  { magic = "GIF87a", mime = "image/gif" },
  { magic = "GIF89a", mime = "image/gif" },
  { magic = "RIFF", also = "WEBP", also_at = 9, mime = "image/webp" },
  { magic = "%PDF-", mime = "application/pdf" },
  { magic = "RIFF", also = "WAVE", also_at = 9, mime = "audio/wav", format = "wav" },
  { magic = "fLaC", mime = "audio/flac", format = "flac" },
  { magic = "OggS", mime = "audio/ogg", format = "ogg" },
  { magic = "FORM", also = "AIFF", also_at = 9, mime = "audio/aiff", format = "aiff" },
  { magic = "FORM", also = "AIFC", also_at = 9, mime = "audio/aiff", format = "aiff" },
  { magic = "ftypM4A ", at = 5, mime = "audio/mp4", format = "m4a" },
  { magic = "\26\69\223\163", mime = "audio/webm", format = "webm" },
  { magic = "ID3", mime = "audio/mpeg", format = "mp3" },
}

local BY_EXTENSION = {
  png = { mime = "image/png" }, jpg = { mime = "image/jpeg" }, jpeg = { mime = "image/jpeg" },
  gif = { mime = "image/gif" }, webp = { mime = "image/webp" },
  pdf = { mime = "application/pdf" },
  wav = { mime = "audio/wav", format = "wav" }, mp3 = { mime = "audio/mpeg", format = "mp3" },
  flac = { mime = "audio/flac", format = "flac" }, ogg = { mime = "audio/ogg", format = "ogg" },
  oga = { mime = "audio/ogg", format = "ogg" }, opus = { mime = "audio/ogg", format = "ogg" },
  m4a = { mime = "audio/mp4", format = "m4a" }, aac = { mime = "audio/aac", format = "aac" },
  aiff = { mime = "audio/aiff", format = "aiff" }, aif = { mime = "audio/aiff", format = "aiff" },
  webm = { mime = "audio/webm", format = "webm" },
  txt = { mime = "text/plain" }, md = { mime = "text/markdown" }, csv = { mime = "text/csv" },
  html = { mime = "text/html" }, htm = { mime = "text/html" }, json = { mime = "application/json" },
  xml = { mime = "application/xml" },
}

-- An MPEG audio frame (sync 0xFFE, layer bits not 00) or an AAC ADTS frame (sync
-- 0xFFF, layer bits 00).
local function frame_sync(bytes)
  local a, b = bytes:byte(1, 2)
  if a ~= 255 or not b or b < 224 then return nil end
  local layer = math.floor(b / 2) % 4
  if b >= 240 and layer == 0 then return { mime = "audio/aac", format = "aac" } end
  if layer ~= 0 then return { mime = "audio/mpeg", format = "mp3" } end
  return nil
end

--- The type of some bytes from their signature.
-- @tparam string bytes the first bytes (16 are enough)
-- @treturn ?table `{ mime =, format = }` (`format` for audio), or nil when unknown
function M.sniff(bytes)
  for _, s in ipairs(SIGNATURES) do
    local at = s.at or 1
    if bytes:sub(at, at + #s.magic - 1) == s.magic
        and (not s.also or bytes:sub(s.also_at, s.also_at + #s.also - 1) == s.also) then
      return { mime = s.mime, format = s.format }
    end
  end
  return frame_sync(bytes)
end

local function by_extension(name)
  local ext = name and name:match("%.([%w]+)$")
  return ext and BY_EXTENSION[ext:lower()]
end

local function basename(path)
  return path:match("([^/\\]+)$") or path
end

local function is_bytes(s)
  return #s > 4096 or s:find("[%z\r\n]") ~= nil or M.sniff(s) ~= nil
end

-- The bytes of a source: { bytes =, path = } or nil, err. `n`: src's argument number.
local function load(fname, src, n)
  if type(src) ~= "string" or src == "" then
    argerror(fname, n or 1, "path or bytes expected, got " .. (src == "" and "an empty string"
      or type(src)))
  end
  if is_bytes(src) then return { bytes = src } end
  local f, why = io.open(src, "rb")
  local bytes
  if f then
    bytes, why = f:read("*a")
    f:close()
  end
  if not bytes then
    return nil, media_error("unreadable", ("cannot read '%s': %s"):format(src,
      tostring(why):gsub("^[^:]*: ", "")), src)
  end
  if bytes == "" then return nil, media_error("empty", ("'%s' is empty"):format(src), src) end
  return { bytes = bytes, path = src }
end

-- The type of a loaded source, from its bytes, then its name; or nil, err.
local function type_of(media, name)
  local t = M.sniff(media.bytes) or by_extension(name or media.path)
  if t then return t end
  local what = media.path and ("'" .. media.path .. "'") or "the bytes"
  return nil, media_error("unknown_type", ("cannot tell the type of %s: pass it as the "
    .. "second argument"):format(what), media.path)
end

local function wrong_type(media, t, wanted)
  local what = media.path and ("'" .. media.path .. "'") or "the bytes"
  return nil, media_error("wrong_type", ("%s is %s, not %s"):format(what, t.mime, wanted),
    media.path)
end

--- An image content part: `{ type = "image_url", image_url = { url = "data:image/png;base64,..." } }`.
-- @tparam string src a path or the bytes
-- @tparam[opt] string mime the media type ("image/png"), instead of the one the bytes tell
-- @treturn ?table the content part, or nil, err (kind "media")
function M.image(src, mime)
  if mime ~= nil and (type(mime) ~= "string" or not mime:find("^[%w.+-]+/[%w.+-]+$")) then
    argerror("image", 2, "a media type such as 'image/png' expected, got " .. tostring(mime))
  end
  local media, err = load("image", src)
  if not media then return nil, err end
  if not mime then
    local t, terr = type_of(media)
    if not t then return nil, terr end
    if not t.mime:find("^image/") then return wrong_type(media, t, "an image") end
    mime = t.mime
  end
  return { type = "image_url",
           image_url = { url = "data:" .. mime .. ";base64," .. core.base64(media.bytes) } }
end

--- A file content part (a PDF, say): `{ type = "file", file = { filename =, file_data =
-- "data:application/pdf;base64,..." } }`.
-- @tparam string src a path or the bytes
-- @tparam[opt] string filename the name sent (default: the path's base name, or
--   "document.<ext>" for bytes); its extension tells the type when the bytes do not
-- @treturn ?table the content part, or nil, err (kind "media")
function M.file(src, filename)
  if filename ~= nil and (type(filename) ~= "string" or filename == "") then
    argerror("file", 2, "a file name expected, got " .. tostring(filename))
  end
  local media, err = load("file", src)
  if not media then return nil, err end
  local t, terr = type_of(media, filename)
  if not t then return nil, terr end
  if not filename then
    local ext = t.format or t.mime:match("/([%w]+)$")
    filename = media.path and basename(media.path) or ("document." .. ext)
  end
  return { type = "file", file = { filename = filename,
    file_data = "data:" .. t.mime .. ";base64," .. core.base64(media.bytes) } }
end

--- An audio content part: `{ type = "input_audio", input_audio = { data = base64, format = "wav" } }`
-- (also what `client:transcription` takes as `audio`).
-- @tparam string src a path or the bytes
-- @tparam[opt] string format "wav", "mp3", "flac", "m4a", "ogg", "aiff", "aac", "webm",
--   "pcm16", ...: instead of the one the bytes or the extension tell
-- @treturn ?table the content part, or nil, err (kind "media")
function M.audio(src, format)
  if format ~= nil and (type(format) ~= "string" or not format:find("^[%w_-]+$")) then
    argerror("audio", 2, "an audio format such as 'wav' expected, got " .. tostring(format))
  end
  local media, err = load("audio", src)
  if not media then return nil, err end
  if not format then
    local t, terr = type_of(media)
    if not t then return nil, terr end
    if not t.format then return wrong_type(media, t, "audio") end
    format = t.format
  end
  return { type = "input_audio", input_audio = { data = core.base64(media.bytes), format = format } }
end

-- For client:transcription: the bytes, a file name and a media type of a path or bytes,
-- or nil, err. `filename` names bytes; `fname` is the public function's name.
-- `n` is src's argument number; misuse blames the caller of the public function.
function M.load_audio(fname, src, filename, n)
  local media, err = load(fname, src, n)
  if not media then return nil, err end
  local t = M.sniff(media.bytes) or by_extension(filename or media.path)
  local name = filename or (media.path and basename(media.path))
    or ("audio." .. (t and t.format or "bin"))
  return { bytes = media.bytes, filename = name, mime = t and t.mime or "application/octet-stream" }
end

return M
