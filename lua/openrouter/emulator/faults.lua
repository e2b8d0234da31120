-- Fault scenarios (spec/faults_spec.lua, spec/error_kinds_spec.lua): connections reset or
-- dropped, bodies that are not what a client expects (arrays, deep nesting, huge content or
-- lines or headers, bad UTF-8, NUL bytes, corrupt gzip, hostile numbers), SSE with every
-- field a client must skip, redirects. Registered by chat.lua, by model id.

local util = require("openrouter.emulator.util")
local cjson, REASONS, CLOSED = util.cjson, util.REASONS, util.CLOSED
local EMPTY_ARRAY, json_encode = util.EMPTY_ARRAY, util.json_encode
local count_words = util.count_words
local http = require("openrouter.emulator.http")
local write, reset_connection = http.write, http.reset_connection
local response_head, respond, write_chunk = http.response_head, http.respond, http.write_chunk
local replies = require("openrouter.emulator.replies")
local stream, chunk, direct_sink = replies.stream, replies.chunk, replies.direct_sink
local batched_sink, usage_chunk = replies.batched_sink, replies.usage_chunk
local completion_body, stream_opening = replies.completion_body, replies.stream_opening
local stream_body, stream_ending = replies.stream_body, replies.stream_ending
local standard_events, answer = replies.standard_events, replies.answer
local stream_partial, invalid_model = replies.stream_partial, replies.invalid_model

local SCENARIOS = {}

-- emulator/reset-mid-headers: the status line and part of the headers, then RST
-- (spec/faults_spec.lua).
SCENARIOS["reset-mid-headers"] = { run = function(ctx)
  write(ctx.conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Generation-Id: "
    .. ctx.id .. "\r\nContent-Le")
  reset_connection(ctx.conn)
end }

-- emulator/close-after-response: answers (Connection: keep-alive), then closes the socket at
-- once (FIN): the client finds the kept-alive connection dead (spec/faults_spec.lua).
SCENARIOS["close-after-response"] = { run = function(ctx)
  answer(ctx)
  error(CLOSED, 0) -- the cleanup closes the socket: FIN after a keep-alive response
end }

-- emulator/drop-next-request[:rst]: answers (keep-alive); the next request that arrives on
-- that connection is recorded, then the connection is closed without an answer (FIN, or RST
-- with :rst) (spec/faults_spec.lua).
SCENARIOS["drop-next-request"] = { pattern = "^(%a*)$", run = function(ctx, how)
  if how ~= "" and how ~= "rst" then return invalid_model(ctx) end
  answer(ctx)
  ctx.conn.drop_next = how == "rst" and "rst" or "fin" -- see route_request
end }

-- emulator/array-body: a JSON array holding a response; stream: two chunks, then a data line
-- holding a JSON array (spec/faults_spec.lua).
SCENARIOS["array-body"] = { run = function(ctx)
  if not ctx.stream then
    local body = "[" .. json_encode(completion_body(ctx)) .. "]"
    return respond(ctx.conn, 200, "application/json", body, { { "X-Generation-Id", ctx.id } })
  end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_partial(ctx, sse, 2)
    sse.emit_raw("data: [" .. json_encode(chunk(ctx, { content = "lost" })) .. "]\n\n")
    sse.done()
  end)
end }

-- emulator/deep-json:<n>: a body (stream: after two chunks, an event) nested <n> levels deep
-- (spec/faults_spec.lua).
SCENARIOS["deep-json"] = { pattern = "^(%d+)$", run = function(ctx, n)
  n = tonumber(n)
  local deep = string.rep('{"a":[', n) .. "1" .. string.rep("]}", n)
  if not ctx.stream then
    return respond(ctx.conn, 200, "application/json", deep, { { "X-Generation-Id", ctx.id } })
  end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_partial(ctx, sse, 2)
    sse.emit_raw("data: " .. deep .. "\n\n")
    sse.done()
  end)
end }

-- Big content is FILL_UNIT repeated and cut to length, never built whole: it is written in
-- pieces of at most 1 MiB between the JSON text before and after it.
local FILL_UNIT = "0123456789abcdef"
local FILL_PIECE = string.rep(FILL_UNIT, 65536)
local FILL_MARK = "\1emulator:fill\1"

-- Calls emit(piece) for the pieces of n filler bytes.
local function emit_filler(n, emit)
  while n > 0 do
    local size = math.min(n, #FILL_PIECE)
    emit(size == #FILL_PIECE and FILL_PIECE or FILL_PIECE:sub(1, size))
    n = n - size
  end
end

-- The JSON text of `value` (whose filled string is FILL_MARK) cut around that string.
local function around_filler(value)
  local text, inner = json_encode(value), json_encode(FILL_MARK):sub(2, -2)
  local at = text:find(inner, 1, true)
  return text:sub(1, at - 1), text:sub(at + #inner)
end

local function respond_big(ctx, n)
  ctx.reply = FILL_MARK
  local before, after = around_filler(completion_body(ctx))
  write(ctx.conn, response_head(ctx.conn, 200, {
    { "Content-Type", "application/json" }, { "Content-Length", #before + n + #after },
    { "X-Generation-Id", ctx.id } }) .. before)
  emit_filler(n, function(piece) write(ctx.conn, piece) end)
  write(ctx.conn, after)
end

-- emulator/big:<bytes>: content of exactly <bytes> bytes (FILL_UNIT repeated), written lazily;
-- stream: the same content in 8 KiB chunks (spec/faults_spec.lua, spec/client_spec.lua).
SCENARIOS.big = { pattern = "^(%d+)$", run = function(ctx, n)
  n = tonumber(n)
  if not ctx.stream then return respond_big(ctx, n) end
  ctx.completion_tokens = math.ceil(n / 8192)
  stream(ctx, batched_sink(ctx.conn), function(_, sse)
    stream_opening(ctx, sse)
    local left = n
    while left > 0 do
      local size = math.min(left, 8192)
      sse.data(chunk(ctx, { content = FILL_PIECE:sub(1, size) }))
      left = left - size
    end
    stream_ending(ctx, sse)
  end)
end }

-- emulator/big-sse-line:<bytes>: stream: one content chunk of <bytes> bytes, one data line;
-- non-streamed: as big (spec/faults_spec.lua).
SCENARIOS["big-sse-line"] = { pattern = "^(%d+)$", run = function(ctx, n)
  n = tonumber(n)
  if not ctx.stream then return respond_big(ctx, n) end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_opening(ctx, sse)
    local before, after = around_filler(chunk(ctx, { content = FILL_MARK }))
    local conn = ctx.conn
    write_chunk(conn, "data: " .. before)
    emit_filler(n, function(piece) write_chunk(conn, piece) end)
    write_chunk(conn, after .. "\n\n")
    stream_ending(ctx, sse)
  end)
end }

-- Invalid UTF-8, sent as raw bytes: 0xFF 0xFE, a lone continuation byte, a truncated 3-byte
-- sequence, an overlong NUL, an encoded surrogate and a lone lead byte.
local BAD_UTF8 = "bad \255\254 lone \128 cut \226\130 overlong \192\128 surrogate \237\160\128"
  .. " \195 end"

-- emulator/bad-utf8: reply BAD_UTF8 (invalid UTF-8 bytes, sent raw); stream: word chunks
-- (spec/faults_spec.lua).
SCENARIOS["bad-utf8"] = { run = function(ctx)
  ctx.reply = BAD_UTF8
  ctx.completion_tokens = count_words(ctx.reply)
  answer(ctx)
end }

local NUL_TEXT = "nul \0 inside \0\0 twice"

-- emulator/nul[:raw]: reply NUL_TEXT, its NUL bytes escaped as \u0000 (valid JSON); with :raw
-- they are sent as raw bytes (not JSON) (spec/faults_spec.lua).
SCENARIOS.nul = { pattern = "^(%a*)$", run = function(ctx, how)
  if how ~= "" and how ~= "raw" then return invalid_model(ctx) end
  ctx.reply = NUL_TEXT
  ctx.completion_tokens = count_words(ctx.reply)
  if how == "" then return answer(ctx) end
  local function raw(text) return (text:gsub("\\u0000", "\0")) end
  if not ctx.stream then
    return respond(ctx.conn, 200, "application/json", raw(json_encode(completion_body(ctx))),
                   { { "X-Generation-Id", ctx.id } })
  end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_partial(ctx, sse, 2)
    sse.emit_raw("data: " .. raw(json_encode(chunk(ctx, { content = NUL_TEXT }))) .. "\n\n")
    sse.done()
  end)
end }

-- Every event with the SSE fields a client must skip, its JSON over two data: lines (joined
-- with "\n", which is JSON whitespace), and fields no client knows at every level.
local function fields_sink(conn)
  local seq, inner = 0, direct_sink(conn)
  return {
    emit = function(event)
      seq = seq + 1
      local data = event:match("^data: (.*)\n\n$")
      if data and data:sub(1, 1) == "{" then
        local value = cjson.decode(data)
        if type(value.choices) == "table" and next(value.choices) == nil then
          value.choices = EMPTY_ARRAY -- the usage chunk's [] must not come back as {}
        end
        value.x_emulator = { seq = seq, note = "unknown top-level field" }
        for _, choice in ipairs(type(value.choices) == "table" and value.choices or {}) do
          choice.x_emulator_choice = seq
          if type(choice.delta) == "table" then choice.delta.x_emulator_delta = { seq } end
        end
        local text = json_encode(value)
        event = 'data: {"x_emulator_split":' .. seq .. ",\ndata: " .. text:sub(2) .. "\n\n"
      end
      inner.emit("event: completion\nid: " .. seq .. "\nretry: 1000\nx-unknown-line: " .. seq
        .. "\nx-no-colon-line\n" .. event)
    end,
    flush = inner.flush,
  }
end

-- emulator/sse-fields: stream: every event with event:, id:, retry: and unknown field lines, its
-- JSON split over two data: lines, unknown JSON fields at the top, in the choice and in the
-- delta (x_emulator*) (spec/faults_spec.lua, test/fidelity).
SCENARIOS["sse-fields"] = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  stream(ctx, fields_sink(ctx.conn), standard_events)
end }

-- emulator/no-done: stream: the usual events without the final data: [DONE]
-- (spec/faults_spec.lua).
SCENARIOS["no-done"] = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_opening(ctx, sse)
    stream_body(ctx, sse)
    sse.data(chunk(ctx, {}, "stop"))
    sse.data(usage_chunk(ctx)) -- and no data: [DONE]
  end)
end }

-- emulator/redirect:<status>:<url>: a redirect (301/302/303/307/308) to <url>
-- (spec/faults_spec.lua).
SCENARIOS.redirect = { pattern = "^(30[12378]):(https?://.+)$", run = function(ctx, status, url)
  status = tonumber(status)
  local title = status .. " " .. REASONS[status]
  respond(ctx.conn, status, "text/html", "<html><head><title>" .. title .. "</title></head><body>"
    .. '<a href="' .. url .. '">' .. title .. "</a></body></html>", { { "Location", url } })
end }

-- Hostile numbers, broken encodings and oversized headers (spec/error_kinds_spec.lua).

-- Number texts a server may put where an integer belongs. "NaN" is not JSON, but lua-cjson
-- decodes it (decode_invalid_numbers is on by default), so a client must survive it.
local HOSTILE_NUMBERS = { int32 = "2147483648", huge = "1e300", nan = "NaN", neg = "-1",
  frac = "0.5" }

-- emulator/hostile-index:<int32|huge|nan|neg|frac> (stream only; spec/error_kinds_spec.lua).
-- A stream whose second chunk has a hostile choice index and whose third has a hostile tool
-- call index (choice 0), between ordinary chunks: raw text, since cjson cannot write NaN.
SCENARIOS["hostile-index"] = { pattern = "^(%a+%d*)$", run = function(ctx, which)
  local number = HOSTILE_NUMBERS[which]
  if not number or not ctx.stream then return invalid_model(ctx) end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_opening(ctx, sse)
    local hostile_choice = json_encode(chunk(ctx, { content = "lost " }))
    sse.emit_raw("data: " .. hostile_choice:gsub('"index":0', '"index":' .. number, 1) .. "\n\n")
    local call = { index = 7, id = "call_h", type = "function",
      ["function"] = { name = "f", arguments = "{}" } }
    local hostile_call = json_encode(chunk(ctx, { tool_calls = { call } }))
    sse.emit_raw("data: " .. hostile_call:gsub('"index":7', '"index":' .. number, 1) .. "\n\n")
    sse.data(chunk(ctx, { content = "kept" }))
    stream_ending(ctx, sse)
  end)
end }

-- emulator/hostile-code:<int32|huge|nan|neg|frac> (spec/error_kinds_spec.lua).
-- A 400 whose error code is a hostile number (streamed or not: the error comes first).
SCENARIOS["hostile-code"] = { pattern = "^(%a+%d*)$", run = function(ctx, which)
  local number = HOSTILE_NUMBERS[which]
  if not number then return invalid_model(ctx) end
  respond(ctx.conn, 400, "application/json",
    '{"error":{"code":' .. number .. ',"message":"hostile code"}}')
end }

-- emulator/gzip-corrupt (spec/error_kinds_spec.lua).
-- A 200 marked gzip whose body is a gzip header followed by bytes that do not inflate.
SCENARIOS["gzip-corrupt"] = { run = function(ctx)
  respond(ctx.conn, 200, ctx.stream and "text/event-stream" or "application/json",
    "\31\139\8\0\0\0\0\0\0\3" .. string.rep("not deflate data ", 8),
    { { "Content-Encoding", "gzip" }, { "X-Generation-Id", ctx.id } })
end }

-- emulator/huge-header:<n> (spec/error_kinds_spec.lua).
-- An ordinary answer, after one response header of n bytes.
SCENARIOS["huge-header"] = { pattern = "^(%d+)$", run = function(ctx, n)
  respond(ctx.conn, 200, "application/json", json_encode(completion_body(ctx)),
    { { "X-Emulator-Filler", string.rep("f", tonumber(n)) }, { "X-Generation-Id", ctx.id } })
end }

return SCENARIOS
