--- What the library's modules share: argument errors that blame the caller's line, error
-- objects, the text of message content. Internal: not part of the public API.
--
-- An error raised here names the position of the first frame outside the library (the
-- files of this directory, and `openrouter.lua` beside it where LuaRocks installs
-- init.lua): the line of whoever called the public function, however many library
-- functions lie between, with no level to count by hand. A C frame there (`pcall(f, x)`)
-- gives no position, as Lua's own errors do. The "(tail call)" frames of Lua 5.1 are
-- passed over, so that every Lua blames the same line: the frame a tail call replaced is
-- gone on 5.2+ and LuaJIT.
-- @module openrouter.shared

local core = require("openrouter.core")

local getinfo, error, type, tostring, setmetatable, pairs, ipairs =
  debug.getinfo, error, type, tostring, setmetatable, pairs, ipairs
local concat = table.concat

local M = {}

--- The API's base URL, unless `base_url` or `$OPENROUTER_BASE_URL` says otherwise.
M.DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"

-- This file's directory as its chunk names it ("@/.../lua/openrouter/"), or nil when it
-- was not loaded from a file.
local DIR = getinfo(1, "S").source:match("^(@.*[/\\])[^/\\]+%.lua$")
local ROCK_INIT = DIR and DIR:sub(1, -2) .. ".lua"  -- "@/.../openrouter.lua"

local own = {}  -- source -> whether it is a file of the library (a cache)

-- Whether a chunk name is one of the library's files: a .lua file of this directory (not of
-- a subdirectory: openrouter.cli and openrouter.emulator are callers like any other), or
-- openrouter.lua beside it. Loaded otherwise (from a string), a name like the modules'.
local function is_library(source)
  local known = own[source]
  if known ~= nil then return known end
  if DIR then
    local rest = source:sub(#DIR + 1)
    known = source == ROCK_INIT
      or (source:sub(1, #DIR) == DIR and rest:find("^[^/\\]+%.lua$") ~= nil)
  else
    known = source:find("openrouter[/\\.][%w_]+$") ~= nil
      or source:find("openrouter[/\\][%w_]+%.lua$") ~= nil
  end
  own[source] = known
  return known
end

-- The level, counted as error() counts from the function that calls it, of the first
-- frame outside the library (a C frame included); past the last frame when there is none.
-- `from` is the caller's level as getinfo counts it.
local function blamed_level(from)
  local level = from
  while true do
    local info = getinfo(level + 1, "S")
    if not info then return level end
    if info.what ~= "tail" and not is_library(info.source) then return level end
    level = level + 1
  end
end

--- Raises `msg` at the position of the first caller outside the library.
-- @tparam string msg
function M.error(msg)
  -- getinfo(2) is M.error's caller; error(msg, 1) would blame M.error itself
  error(msg, blamed_level(1))
end

--- Raises "bad argument #n to 'fname' (msg)" at the position of the first caller outside
-- the library. The name is given: a function's name in the debug information depends on
-- how it was called (`client:conversation` runs `openrouter.conversation.new`).
-- @tparam string fname the public function's name, as the user writes it
-- @tparam int n the argument's number
-- @tparam string msg what is wrong with it
function M.argerror(fname, n, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), blamed_level(1))
end

--- Raises an argument error unless `v` is of type `tname` ("table expected, got number").
-- @tparam string fname
-- @tparam int n
-- @param v the argument
-- @tparam string tname the Lua type wanted
-- @return v
function M.checktype(fname, n, v, tname)
  if type(v) ~= tname then
    error(("bad argument #%d to '%s' (%s expected, got %s)"):format(n, fname, tname, type(v)),
      blamed_level(1))
  end
  return v
end

--- "file:line: " of the first Lua line outside the library (C frames passed over), or "":
-- for a message raised with level 0 from where no frame count reaches the caller (inside
-- a task, under a pcall).
-- @treturn string
function M.where()
  for level = 2, 1e6 do
    local info = getinfo(level, "Sl")
    if not info then return "" end
    if info.what ~= "C" and info.what ~= "tail" and not is_library(info.source)
        and (info.currentline or 0) > 0 then
      return ("%s:%d: "):format(info.short_src, info.currentline)
    end
  end
  return ""
end

--- An error object of this library (`openrouter.is_error` is true of it).
-- @tparam string kind
-- @tparam string message
-- @tparam[opt] table fields more fields (`code`, `path`, ...)
-- @treturn table
function M.new_error(kind, message, fields)
  local err = { kind = kind, message = message }
  for k, v in pairs(fields or {}) do err[k] = v end
  return setmetatable(err, core.error_mt)
end

--- Whether `t` is a table whose keys are exactly 1..#t.
-- @return boolean
function M.is_sequence(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

--- The text of message content: a string as it is; of an array of content parts, the
-- `text` of its parts of type "text", joined by `sep`.
-- @param content a string, an array of content parts, or anything else
-- @tparam[opt=""] string sep
-- @treturn ?string the text, or nil when there is none
function M.content_text(content, sep)
  if type(content) == "string" then return content end
  if type(content) == "table" then
    local out = {}
    for _, part in ipairs(content) do
      if type(part) == "table" and part.type == "text" and type(part.text) == "string" then
        out[#out + 1] = part.text
      end
    end
    if #out > 0 then return concat(out, sep or "") end
  end
  return nil
end

--- The first choice's text of a response, a stream chunk or `err.partial`
-- (`openrouter.text`).
-- @param res
-- @treturn ?string
function M.reply_text(res)
  if type(res) ~= "table" or type(res.choices) ~= "table" then return nil end
  local choice = res.choices[1]
  if type(choice) ~= "table" then return nil end
  if type(choice.message) == "table" then return M.content_text(choice.message.content) end
  if type(choice.delta) == "table" then return M.content_text(choice.delta.content) end
  return M.content_text(choice.text)
end

--- The decoded content of a structured-output reply (`openrouter.json`).
-- @param res
-- @treturn ?table the object or array, or nil, err (kind "decode")
function M.reply_json(res)
  local text = M.reply_text(res)
  local function fail(why)
    return nil, M.new_error("decode", "the reply is not JSON: " .. why, { text = text })
  end
  if not text then return fail("it has no text content") end
  local body = text:match("^%s*```[%w_-]*[ \t]*\r?\n(.-)\r?\n?```%s*$") or text
  local value, why = core.json_decode(body)
  if value == nil then return fail(tostring(why)) end
  if type(value) ~= "table" then return fail("not an object or an array") end
  return value
end

return M
