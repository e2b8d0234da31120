-- The emulator's shared pieces: its lua-cjson instance, the constants of every reply, and the
-- JSON and text helpers of the routes and scenarios. No sockets here.

-- The emulator needs LuaSocket and lua-cjson, which the library itself does not: name the
-- missing package rather than fail on a bare "module not found".
local function need(name, package)
  local ok, loaded = pcall(require, name)
  if not ok then
    error("openrouter.emulator needs " .. package .. " (require \"" .. name .. "\" failed: "
      .. tostring(loaded):match("^[^\n]*") .. ")", 0)
  end
  return loaded
end

local socket = need("socket", "LuaSocket: luarocks install luasocket, or apt install lua-socket")
local cjson = need("cjson", "lua-cjson: luarocks install lua-cjson, or apt install lua-cjson")
cjson = cjson.new()

cjson.decode_invalid_numbers(false) -- NaN, Infinity, hex: not JSON, so a 400 like the real API
cjson.encode_invalid_numbers("null") -- a logged body holding 1e999 must still encode

local unpack = table.unpack or unpack
local null = cjson.null

local PROVIDER = "OpenAI" -- a name of the description's ProviderName list, as every provider name here
local FINGERPRINT = "fp_emulator"
local DEFAULT_WORKSPACE = "0df9e665-d932-5740-b2c7-b52af166bc11" -- of every key and generation
local DEFAULT_MODEL = "openai/gpt-4o-mini"
local SPLIT_DELAY = 0.003 -- seconds between the writes of a split stream: separate TCP segments
local REASONING_TEXT = "Thinking about it."
local REASONING_FORMAT = "anthropic-claude-v1"
local SIGNATURE = "sig-abc"
-- "héllo wörld ✓ 😀 ", spelled in bytes: 2-, 3- and 4-byte UTF-8 characters to split.
local AWKWARD_PREFIX = "h\195\169llo w\195\182rld \226\156\147 \240\159\152\128 "

local REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [301] = "Moved Permanently", [302] = "Found",
  [303] = "See Other", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized",
  [402] = "Payment Required", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [413] = "Payload Too Large",
  [422] = "Unprocessable Entity", [429] = "Too Many Requests", [500] = "Internal Server Error",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
  [524] = "A Timeout Occurred", [529] = "Site Overloaded",
}

-- Raised inside a connection coroutine when the peer is gone (or we reset it): ends it quietly.
local CLOSED = setmetatable({}, { __tostring = function() return "connection closed" end })

---------------------------------------------------------------------------------------------
-- JSON and text helpers
---------------------------------------------------------------------------------------------

-- Debian's lua-cjson has no empty_array and encodes {} as an object. A field that must be []
-- holds this sentinel string, swapped for [] after encoding.
local EMPTY_ARRAY = "\0emulator:empty-array\0"
local EMPTY_ARRAY_PATTERN = (cjson.encode(EMPTY_ARRAY):gsub("%p", "%%%0"))

-- lua-cjson also escapes every "/" as "\/", which OpenRouter does not. Every "/" in its output
-- is escaped, so dropping the backslash of each "\/" is exact, even after an escaped "\\".
local function json_encode(value)
  return (cjson.encode(value):gsub(EMPTY_ARRAY_PATTERN, "[]"):gsub("\\/", "/"))
end

local function json_array(list)
  if #list == 0 then return EMPTY_ARRAY end
  return list
end

local function error_body(code, message)
  return { error = { code = code, message = message } }
end

local function count_words(text)
  local _, n = text:gsub("%S+", "")
  return n
end

-- Iterates over `text` in word-sized pieces ("Echo: ", "hi") whose concatenation is `text`;
-- lazily, so that a 100000-word reply never becomes a table.
local function pieces(text)
  local pos = 1
  return function()
    if pos > #text then return nil end
    local _, last = text:find("^%s*%S+%s*", pos)
    last = last or #text
    local piece = text:sub(pos, last)
    pos = last + 1
    return piece
  end
end

-- The text of a message's content: a string, or the text parts of a parts array.
local function content_text(content)
  if type(content) == "string" then return content end
  local texts = {}
  if type(content) == "table" then
    for _, part in ipairs(content) do
      if type(part) == "table" and part.type == "text" and type(part.text) == "string" then
        texts[#texts + 1] = part.text
      end
    end
  end
  return table.concat(texts, " ")
end

local function last_user_text(messages)
  for i = #messages, 1, -1 do
    local message = messages[i]
    if type(message) == "table" and message.role == "user" then
      return content_text(message.content)
    end
  end
  return ""
end

-- A legacy `prompt`: a string or a list of strings.
local function prompt_text(prompt)
  if type(prompt) == "table" then return content_text(prompt) end
  return type(prompt) == "string" and prompt or ""
end

-- The trailing `tool` messages' contents joined with "; ", or nil when the last message is not
-- a tool result.
local function trailing_tool_results(messages)
  local results = {}
  for i = #messages, 1, -1 do
    local message = messages[i]
    if type(message) ~= "table" or message.role ~= "tool" then break end
    table.insert(results, 1, content_text(message.content))
  end
  if #results == 0 then return nil end
  return table.concat(results, "; ")
end

local function is_continuation_byte(b)
  return b ~= nil and b >= 0x80 and b < 0xC0
end

-- At most 100 bytes of `s`, middle-truncated with "..." as OpenRouter's moderation
-- `flagged_input`, never splitting a UTF-8 character.
local function middle_truncate(s)
  if #s <= 100 then return s end
  local head_end, tail_start = 48, #s - 48
  while is_continuation_byte(s:byte(head_end + 1)) do head_end = head_end - 1 end
  while is_continuation_byte(s:byte(tail_start)) do tail_start = tail_start + 1 end
  return s:sub(1, head_end) .. "..." .. s:sub(tail_start)
end

-- RFC 7231 IMF-fixdate. Lua never calls setlocale, so %a and %b are English.
local function http_date(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
end

local generation_count = 0
local function new_generation_id()
  generation_count = generation_count + 1
  return string.format("gen-%d-emu%08d", os.time(), generation_count)
end

-- application/x-www-form-urlencoded query -> table
local function parse_query(query)
  local out = {}
  for k, v in (query or ""):gmatch("([^&=]+)=?([^&]*)") do
    local function decode(x)
      return (x:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
    end
    out[decode(k)] = decode(v)
  end
  return out
end

-- 64 hex digits from `text`: an id, not a cryptographic hash. Integer-exact on every Lua.
local function hex_id(text)
  local words = {}
  for w = 1, 8 do
    local h = 2166136261 + w
    for i = 1, #text do h = (h * 131 + text:byte(i) + w) % 4294967296 end
    for _ = 1, 4 do h = (h * 131 + 7 * w) % 4294967296 end
    words[w] = string.format("%08x", h)
  end
  return table.concat(words)
end

return {
  socket = socket, REASONS = REASONS, CLOSED = CLOSED, json_encode = json_encode,
  http_date = http_date, null = null, error_body = error_body, PROVIDER = PROVIDER,
  FINGERPRINT = FINGERPRINT, DEFAULT_MODEL = DEFAULT_MODEL, SPLIT_DELAY = SPLIT_DELAY,
  REASONING_TEXT = REASONING_TEXT, REASONING_FORMAT = REASONING_FORMAT, SIGNATURE = SIGNATURE,
  EMPTY_ARRAY = EMPTY_ARRAY, count_words = count_words, pieces = pieces,
  content_text = content_text, last_user_text = last_user_text, prompt_text = prompt_text,
  new_generation_id = new_generation_id, DEFAULT_WORKSPACE = DEFAULT_WORKSPACE,
  json_array = json_array, parse_query = parse_query, cjson = cjson, unpack = unpack,
  AWKWARD_PREFIX = AWKWARD_PREFIX, trailing_tool_results = trailing_tool_results,
  middle_truncate = middle_truncate, hex_id = hex_id,
}
