--- An OpenRouter API client for Lua, written in C over libcurl.
--
--     local openrouter = require("openrouter")
--     local client = openrouter.new{ api_key = os.getenv("OPENROUTER_API_KEY") }
--     local res, err = client:chat_completion{ model = "openai/gpt-4o-mini",
--       messages = { { role = "user", content = "Hi" } } }
--     print(res and openrouter.text(res) or tostring(err))
--
-- HTTP, streaming and JSON happen in C (`openrouter.core`); this module adds
-- option handling, defaults and helpers only.
-- @module openrouter

local core = require("openrouter.core")
local shared = require("openrouter.shared")
local media = require("openrouter.media")

local M = {}

--- The library version.
M.VERSION = core.VERSION

--- The JSON null sentinel: `cjson.null`; inside Neovim always `vim.NIL`.
M.null = core.null

--- The libcurl version string the module runs with.
M.curl_version = core.curl_version

--- libcurl's TLS backend ("OpenSSL/3.0.11"), or nil when libcurl has none.
M.ssl_version = core.ssl_version

--- The JSON codec in use: "cjson", or inside Neovim always "vim.json".
M.json_backend = core.json_backend

--- The client type's method table: add methods here to extend every client.
M.Client = core.Client

-- name -> Lua type of every option `new` accepts
local OPTION_TYPES = {
  api_key = "string", base_url = "string", app_url = "string", app_title = "string",
  app_categories = "table", timeout = "number", connect_timeout = "number",
  stream_idle_timeout = "number", max_retries = "number", headers = "table",
  ca_file = "string", proxy = "string", insecure = "boolean",
  max_response_bytes = "number", retry_base_delay = "number", retry_max_delay = "number",
}

-- the largest value each number option takes (default 1e6): 1e300 is a mistake.
-- core.new checks the same bounds (src/session.c, OR_MAX_*): keep them equal, so
-- that a value accepted here is never refused there.
local LIMITS = { max_response_bytes = 2 ^ 40, max_retries = 100, timeout = 1e6 }

-- options that must be > 0: no combination may mean "wait forever"
local POSITIVE = {
  timeout = true, connect_timeout = true, stream_idle_timeout = true,
  max_response_bytes = true,
}

local argerror = shared.argerror

-- A value for an error message: quoted, and shortened.
local function shown(v)
  local s = tostring(v)
  if #s > 60 then s = s:sub(1, 57) .. "..." end
  return ("%q"):format(s)
end

-- Headers libcurl writes from the request itself: a caller's value would change how
-- the request is framed (a Content-Length that is not the body's length leaves the
-- rest of the body to be read as the next request on a kept-alive connection).
local FRAMING_HEADERS = { ["content-length"] = true, ["transfer-encoding"] = true, host = true }

local function check_header(name, value)
  if type(name) ~= "string" or not name:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
    argerror("new", 1, ("invalid header name %s"):format(shown(name)))
  end
  if FRAMING_HEADERS[name:lower()] then
    argerror("new", 1, ("header '%s' cannot be set: it frames the request"):format(name))
  end
  if type(value) ~= "string" or value:find("[\r\n%z]") then
    argerror("new", 1, ("header '%s' must be a string without line breaks"):format(name))
  end
end

-- The header lines sent with every request, defaults first, the caller's
-- `headers` replacing a default of the same name. The Authorization line is not one of
-- them: core.new makes it from api_key in memory it wipes at close(), where a Lua string
-- "Bearer <key>" could never be wiped. `false` holds its name here, so that a caller's
-- own Authorization header still replaces it (core.new then adds none).
local function header_lines(opts, api_key)
  local names, values = {}, {}
  local function set(name, value)
    local key = name:lower()
    if values[key] == nil then names[#names + 1] = key end
    values[key] = value and name .. ": " .. value
  end
  if api_key and api_key ~= "" then set("Authorization", false) end
  if opts.app_url then set("HTTP-Referer", opts.app_url) end
  if opts.app_title then
    set("X-OpenRouter-Title", opts.app_title)
    set("X-Title", opts.app_title)  -- the legacy name, still read by OpenRouter
  end
  if opts.app_categories then
    local count = 0
    for _ in pairs(opts.app_categories) do count = count + 1 end
    if count ~= #opts.app_categories then
      argerror("new", 1, "app_categories must be a list of strings")
    end
    for i, c in ipairs(opts.app_categories) do
      if type(c) ~= "string" or c:find("[,%c]") then
        argerror("new", 1, ("app_categories[%d] must be a string without commas"):format(i))
      end
    end
    set("X-OpenRouter-Categories", table.concat(opts.app_categories, ","))
  end
  set("User-Agent", "openrouter-lua/" .. M.VERSION)
  if opts.headers then
    local extra = {}
    for name in pairs(opts.headers) do extra[#extra + 1] = name end
    table.sort(extra, function(a, b) return tostring(a) < tostring(b) end)
    for _, name in ipairs(extra) do
      check_header(name, opts.headers[name])
      set(name, opts.headers[name])
    end
  end
  for _, v in pairs(values) do
    if v then check_header(v:match("^([^:]*)"), v:match("^[^:]*: (.*)$")) end
  end
  local lines = {}
  for _, key in ipairs(names) do lines[#lines + 1] = values[key] or nil end
  return lines
end

--- Creates a client.
-- @tparam[opt] table opts `api_key` (default `$OPENROUTER_API_KEY`), `base_url`
--   (default `$OPENROUTER_BASE_URL` or the public API), `app_url`, `app_title`,
--   `app_categories`, `timeout` (300 s), `connect_timeout` (10 s),
--   `stream_idle_timeout` (60 s), `max_retries` (2), `retry_base_delay` (0.5 s),
--   `retry_max_delay` (30 s), `headers`, `ca_file`, `proxy`, `insecure` (false),
--   `max_response_bytes` (64 MiB). An unknown option raises.
-- @treturn Client the client (also closed by `client:close()` or garbage collection)
function M.new(opts)
  if opts == nil then opts = {} end
  shared.checktype("new", 1, opts, "table")
  for k, v in pairs(opts) do
    local want = OPTION_TYPES[k]
    if not want then argerror("new", 1, ("unknown option '%s'"):format(tostring(k))) end
    if type(v) ~= want then
      argerror("new", 1, ("option '%s' must be a %s, got %s"):format(k, want, type(v)))
    end
    if want == "number" and (v ~= v or v < 0 or v > (LIMITS[k] or 1e6) or (POSITIVE[k] and v <= 0)) then
      argerror("new", 1, ("option '%s' must be a %s number (at most %g)"):format(k,
        POSITIVE[k] and "positive" or "non-negative finite", LIMITS[k] or 1e6))
    end
    if want == "string" and k ~= "base_url" and k ~= "api_key" and (v:find("%z") or #v > 65536) then
      argerror("new", 1, ("option '%s' must be a string without NUL bytes, of at most 64 KiB"):format(k))
    end
  end
  if opts.api_key and (opts.api_key:find("%c") or #opts.api_key > 4096) then
    argerror("new", 1, "option 'api_key' must be a string without line breaks or control characters, of at most 4096 bytes")
  end
  if opts.max_retries and opts.max_retries % 1 ~= 0 then
    argerror("new", 1, "option 'max_retries' must be an integer")
  end
  local api_key = opts.api_key or os.getenv("OPENROUTER_API_KEY")
  local base_url = opts.base_url or os.getenv("OPENROUTER_BASE_URL") or shared.DEFAULT_BASE_URL
  base_url = base_url:gsub("/+$", "")
  -- paths are appended to base_url: after a '?' or '#' they would not be the path
  if not base_url:match("^https?://[^/]") or base_url:find("[%z%s%c?#]") then
    argerror("new", 1, ("base_url must be an http:// or https:// URL without '?' or '#', got %s")
      :format(shown(base_url:gsub("//([^/@]*)@", "//***@"))))
  end
  return core.new{
    api_key = api_key,
    base_url = base_url,
    header_lines = header_lines(opts, api_key),
    timeout = opts.timeout,
    connect_timeout = opts.connect_timeout,
    stream_idle_timeout = opts.stream_idle_timeout,
    max_retries = opts.max_retries,
    retry_base_delay = opts.retry_base_delay,
    retry_max_delay = opts.retry_max_delay,
    max_response_bytes = opts.max_response_bytes,
    ca_file = opts.ca_file,
    proxy = opts.proxy,
    insecure = opts.insecure,
  }
end

--- The first choice's text of a response (chat or completion), a stream chunk
-- (its delta) or `err.partial`.
-- @function text
-- @param res a response, a chunk or a partial response
-- @treturn ?string the text, or nil when there is none (never `openrouter.null`)
M.text = shared.reply_text

--- The content of a structured-output reply (`response_format` json_schema or
-- json_object), decoded: the first choice's text (see `openrouter.text`), with
-- surrounding white space and a Markdown code fence (```` ```json ````) around it
-- ignored.
-- @function json
-- @param res a response (or `err.partial`)
-- @treturn ?table the decoded object or array
-- @return err when there is no text or it is not a JSON object or array: an error
--   object of kind "decode", whose `text` is the content
M.json = shared.reply_json

--- Whether a value is an error object returned by this library.
function M.is_error(v)
  return type(v) == "table" and getmetatable(v) == core.error_mt
end

--- Marks a table as a JSON array, so that it is sent as `[]` even when empty
-- (keys the API defines as arrays, such as `messages` or `tools`, already are).
-- @tparam[opt] table t the table (a new one when nil)
-- @treturn table t
function M.array(t)
  if t == nil then t = {} end
  shared.checktype("array", 1, t, "table")
  return setmetatable(t, core.array_mt)
end

--- Keeps the models of a list that meet criteria (see `openrouter.models`).
M.filter_models = require("openrouter.models").filter_models

--- An image content part from a path or bytes (see `openrouter.media`).
M.image = media.image

--- A file content part (a PDF, say) from a path or bytes (see `openrouter.media`).
M.file = media.file

--- An audio content part from a path or bytes (see `openrouter.media`).
M.audio = media.audio

--- OAuth PKCE: `pkce()`, `authorize_url{...}` (see `openrouter.oauth`).
M.oauth = require("openrouter.oauth")

require("openrouter.conversation").install(M)
require("openrouter.transcription").install(M)

--- Runs a function as a task, in which every blocking call yields instead of blocking
-- (`openrouter.async(fn, ...)`; see `openrouter.async`).
-- @function async
-- @tparam function fn
-- @param ... its arguments
-- @treturn Task
require("openrouter.async").install(M)

return M
