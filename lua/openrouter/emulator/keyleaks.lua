-- The redaction scenarios: replies that carry the request's own API key back, plainly
-- (emulator/echo-key) or in shapes that defeat a naive redaction (emulator/leak-key), so that
-- specs prove no error message, log line or snippet ever shows it. Registered by chat.lua.

local util = require("openrouter.emulator.util")
local PROVIDER, json_encode = util.PROVIDER, util.json_encode
local http = require("openrouter.emulator.http")
local respond, respond_json = http.respond, http.respond_json
local replies = require("openrouter.emulator.replies")
local stream, chunk, direct_sink = replies.stream, replies.chunk, replies.direct_sink
local stream_opening, stream_partial = replies.stream_opening, replies.stream_partial
local invalid_model = replies.invalid_model

local SCENARIOS = {}

-- The key where a redaction that stops at NUL, looks only at string values, or runs before
-- lines are joined misses it (emulator/leak-key:<how>, spec/redaction_spec.lua).
local function leak_key_error(key, code)
  local metadata = { x = "pre\0" .. key, [key] = "as a key" }
  if code == 502 then metadata.raw = "pre\0 Bearer " .. key end -- only the stream's event
  return { error = { code = code, message = "bad\0 Bearer " .. key, metadata = metadata } }
end

local LEAK_KEY = {}

-- leak-key:nul: 400, streamed or not: the key after a NUL byte in message and metadata.x, and
-- as a metadata key name.
LEAK_KEY.nul = function(ctx)
  respond_json(ctx.conn, 400, leak_key_error(ctx.key, 400))
end

-- leak-key:event: stream: two chunks, then an error event holding the key as nul does and
-- after a NUL in metadata.raw; non-streamed: as nul.
LEAK_KEY.event = function(ctx)
  if not ctx.stream then return LEAK_KEY.nul(ctx) end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_partial(ctx, sse, 2)
    local event = chunk(ctx, { content = "" }, "error")
    event.error = leak_key_error(ctx.key, 502).error
    sse.data(event) -- and no [DONE]
  end)
end

-- leak-key:text: stream: the key split over two content chunks, then an error event;
-- non-streamed: as nul.
LEAK_KEY.text = function(ctx)
  if not ctx.stream then return LEAK_KEY.nul(ctx) end
  local half = math.floor(#ctx.key / 2)
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_opening(ctx, sse)
    sse.data(chunk(ctx, { content = "key " .. ctx.key:sub(1, half) }))
    sse.data(chunk(ctx, { content = ctx.key:sub(half + 1) .. " end" }))
    local event = chunk(ctx, { content = "" }, "error")
    event.error = { code = 502, message = "Provider disconnected" }
    sse.data(event) -- and no [DONE]
  end)
end

-- leak-key:title, a 502 page:
-- The page's title breaks the key with a line break (the snippet joins lines with a space).
LEAK_KEY.title = function(ctx)
  local half = math.floor(#ctx.key / 2)
  respond(ctx.conn, 502, "text/html", "<html><head><title>Bad key " .. ctx.key:sub(1, half)
    .. "\r\n  " .. ctx.key:sub(half + 1) .. "</title></head><body>bad key</body></html>")
end

-- leak-key:cut, a 502 page:
-- The page's title is so long that the 200-byte snippet of it ends inside the key.
LEAK_KEY.cut = function(ctx)
  respond(ctx.conn, 502, "text/html", "<html><head><title>" .. string.rep("x", 150) .. " "
    .. ctx.key .. "</title></head><body>bad key</body></html>")
end

-- emulator/leak-key:<nul|event|text|title|cut>: echoes the request's key in shapes that defeat
-- a naive redaction (spec/redaction_spec.lua); 400 "not a valid model ID" for another <how>.
SCENARIOS["leak-key"] = { pattern = "^(%a+)$", run = function(ctx, how)
  if not LEAK_KEY[how] or not ctx.key then return invalid_model(ctx) end
  LEAK_KEY[how](ctx)
end }

local function key_error(key)
  return { error = { code = 400, message = "Invalid credentials: Bearer " .. key, metadata = {
    provider_name = PROVIDER,
    raw = json_encode({ error = { message = "upstream rejected key " .. key } }),
    headers = { authorization = "Bearer " .. key } } } }
end

-- emulator/echo-key:<where>: echoes the request's API key back: api (400 error body: message,
-- metadata.raw, metadata.headers), deep (400 error body whose metadata holds it 24 tables
-- deep), html (502 page), stream (two chunks, then an error event holding it; non-streamed: as
-- api) (spec/faults_spec.lua, spec/cli_spec.lua).
SCENARIOS["echo-key"] = { pattern = "^(%a+)$", run = function(ctx, where)
  local key = ctx.key
  if where == "deep" then
    local body = key_error(key)
    local nested = { "Bearer " .. key }
    for _ = 1, 24 do nested = { trace = nested } end
    body.error.metadata.upstream = nested
    return respond_json(ctx.conn, 400, body)
  elseif where == "html" then
    return respond(ctx.conn, 502, "text/html", "<html><head><title>Bad key " .. key
      .. "</title></head><body><pre>Authorization: Bearer " .. key .. "</pre></body></html>")
  elseif where == "api" or (where == "stream" and not ctx.stream) then
    return respond_json(ctx.conn, 400, key_error(key))
  elseif where ~= "stream" then
    return invalid_model(ctx)
  end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_partial(ctx, sse, 2)
    local event = chunk(ctx, { content = "" }, "error")
    event.error = key_error(key).error
    event.error.code = 502
    sse.data(event) -- and no [DONE]
  end)
end }

return SCENARIOS
