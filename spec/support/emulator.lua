-- A local stand-in for the OpenRouter API, used by the test suite.
--
--   lua5.4 spec/support/emulator.lua [--host 127.0.0.1] [--port 0] [--parent-pid N]
--
-- Prints exactly one line on stdout, "OPENROUTER_EMULATOR_URL=http://HOST:PORT/api/v1", then
-- serves until killed, until POST /_emulator/shutdown, or (with --parent-pid) until that
-- process is gone. The request's "model" picks a scenario (see SCENARIOS); any other model id
-- answers "Echo: <last user message>".
--
-- Faithful to the API's OpenAPI description (../shared/reference/openrouter-openapi.yaml) and
-- to what the official SDK accepts; `make check-fidelity` (test/fidelity/check.mjs) proves it
-- for every route served here. API keys: "sk-or-" then at least 8 characters of
-- [A-Za-z0-9_-]; any other key, and "sk-or-invalid...", gets 401 (see authenticate). Every
-- error body has error.code and error.message, except the scenarios that break the API on
-- purpose to test the client (emulator/string-code, error-200, html-502, malformed, empty,
-- array-body, deep-json, echo-key, leak-key) and the availability errors OpenRouter sends
-- without a code (emulator/capacity, emulator/no-code). Provider names are ones of the
-- description's list. X-RateLimit-* headers come only with OpenRouter's own 429s, as on the
-- real API (emulator/rate-limited).
--
-- A real HTTP/1.1 server (keep-alive, chunked bodies, Expect: 100-continue), one coroutine per
-- connection driven by a socket.select loop with a timer queue, so a stalled connection never
-- blocks another one. Plain Lua for 5.1-5.4 and LuaJIT: lua-socket and lua-cjson only. Lua 5.1
-- cannot yield across pcall, so connection code reports a dead peer by raising CLOSED and the
-- scheduler, not a pcall, catches it.

local socket = require("socket")
local cjson = require("cjson").new()

cjson.decode_invalid_numbers(false) -- NaN, Infinity, hex: not JSON, so a 400 like the real API
cjson.encode_invalid_numbers("null") -- a logged body holding 1e999 must still encode

local unpack = table.unpack or unpack
local null = cjson.null

local PROVIDER = "OpenAI" -- a name of the description's ProviderName list, as every provider name here
local FINGERPRINT = "fp_emulator"
local DEFAULT_WORKSPACE = "0df9e665-d932-5740-b2c7-b52af166bc11" -- of every key and generation
local DEFAULT_MODEL = "openai/gpt-4o-mini"
local CONTROL_PREFIX = "/_emulator/"
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

---------------------------------------------------------------------------------------------
-- Scheduler: coroutines yield ("read", sock), ("write", sock) or ("sleep", seconds)
---------------------------------------------------------------------------------------------

local sched = {
  readers = {}, -- socket -> coroutine waiting for it to be readable
  writers = {}, -- socket -> coroutine waiting for it to be writable
  timers = {}, -- min-heap of { at = time, seq = n, co = coroutine }, earliest first
  seq = 0, -- tie-breaker: timers due at the same time run in the order they were set
  cleanup = {}, -- coroutine -> function run when it ends, normally or by an error
}

local function earlier(a, b)
  return a.at < b.at or (a.at == b.at and a.seq < b.seq)
end

local function heap_push(heap, item)
  heap[#heap + 1] = item
  local i = #heap
  while i > 1 do
    local parent = math.floor(i / 2)
    if not earlier(heap[i], heap[parent]) then break end
    heap[i], heap[parent] = heap[parent], heap[i]
    i = parent
  end
end

local function heap_pop(heap)
  local top, last = heap[1], table.remove(heap)
  if #heap == 0 then return top end
  heap[1] = last
  local i = 1
  while true do
    local smallest, left, right = i, 2 * i, 2 * i + 1
    if heap[left] and earlier(heap[left], heap[smallest]) then smallest = left end
    if heap[right] and earlier(heap[right], heap[smallest]) then smallest = right end
    if smallest == i then return top end
    heap[i], heap[smallest] = heap[smallest], heap[i]
    i = smallest
  end
end

local function resume(co)
  local ok, op, arg = coroutine.resume(co)
  if coroutine.status(co) == "dead" then
    if not ok and op ~= CLOSED then
      io.stderr:write("emulator: ", debug.traceback(co, tostring(op)), "\n")
    end
    local cleanup = sched.cleanup[co]
    sched.cleanup[co] = nil
    if cleanup then cleanup() end
  elseif op == "read" then
    sched.readers[arg] = co
  elseif op == "write" then
    sched.writers[arg] = co
  else
    sched.seq = sched.seq + 1
    heap_push(sched.timers, { at = socket.gettime() + arg, seq = sched.seq, co = co })
  end
end

local function spawn(fn, cleanup)
  local co = coroutine.create(fn)
  sched.cleanup[co] = cleanup
  resume(co)
end

local function sleep(seconds)
  coroutine.yield("sleep", seconds)
end

local function wake(waiting, sock)
  local co = waiting[sock]
  if co then
    waiting[sock] = nil
    resume(co)
  end
end

local function run_due_timers()
  local now = socket.gettime()
  while sched.timers[1] and sched.timers[1].at <= now do
    resume(heap_pop(sched.timers).co)
  end
end

-- Wakes at least every TICK seconds even when idle: lua.c turns SIGINT into an error raised at
-- the next Lua instruction, and LuaSocket's select retries on EINTR without returning.
local TICK = 0.5

local function select_timeout()
  local first = sched.timers[1]
  if not first then return TICK end
  return math.min(TICK, math.max(0, first.at - socket.gettime()))
end

---------------------------------------------------------------------------------------------
-- Connection I/O (inside a connection coroutine)
---------------------------------------------------------------------------------------------

-- Appends what the peer sent to conn.buf, suspending until something arrives.
local function fill(conn)
  while true do
    local data, err, partial = conn.sock:receive(65536)
    local got = data or partial
    if got and #got > 0 then
      conn.buf = conn.buf .. got
      return
    end
    if err ~= "timeout" then error(CLOSED, 0) end
    coroutine.yield("read", conn.sock)
  end
end

local function read_line(conn)
  while true do
    local nl = conn.buf:find("\n", 1, true)
    if nl then
      local line = conn.buf:sub(1, nl - 1)
      conn.buf = conn.buf:sub(nl + 1)
      return (line:gsub("\r$", ""))
    end
    fill(conn)
  end
end

-- Collects the pieces in a table: appending to conn.buf would copy a large body again and
-- again as it grows.
local function read_exact(conn, n)
  local parts, have = { conn.buf }, #conn.buf
  while have < n do
    conn.buf = ""
    fill(conn)
    parts[#parts + 1] = conn.buf
    have = have + #conn.buf
  end
  local all = table.concat(parts)
  conn.buf = all:sub(n + 1)
  return all:sub(1, n)
end

local function write(conn, data)
  local sent = 0
  while sent < #data do
    local last, err, partial = conn.sock:send(data, sent + 1)
    if last then
      sent = last
    elseif err == "timeout" then
      sent = partial
      coroutine.yield("write", conn.sock)
    else
      error(CLOSED, 0)
    end
  end
end

-- Aborts the connection with a TCP RST (linger 0) instead of an orderly FIN. The short sleep
-- first lets bytes already written reach the client: an RST discards unsent data.
local function reset_connection(conn)
  sleep(0.01)
  conn.sock:setoption("linger", { on = true, timeout = 0 })
  conn.sock:close()
  error(CLOSED, 0)
end

-- Never answers: discards input until the client goes away, which ends the coroutine.
local function wait_for_peer_close(conn)
  while true do
    conn.buf = ""
    fill(conn)
  end
end

---------------------------------------------------------------------------------------------
-- HTTP/1.1 requests and responses
---------------------------------------------------------------------------------------------

local function read_chunked_body(conn)
  local parts = {}
  while true do
    local size = tonumber(read_line(conn):match("^%s*(%x+)") or "", 16)
    if not size then return nil, "bad chunk size" end
    if size == 0 then break end
    parts[#parts + 1] = read_exact(conn, size)
    read_line(conn) -- the CRLF closing the chunk data
  end
  repeat local trailer = read_line(conn) until trailer == ""
  return table.concat(parts)
end

local function read_body(conn, req)
  local te = req.headers["transfer-encoding"]
  local length = req.headers["content-length"]
  local chunked = te and te:lower():find("chunked", 1, true)
  if not chunked and not length then return "" end
  if not chunked and not length:match("^%d+$") then return nil, "bad Content-Length" end
  if req.headers["expect"] and req.headers["expect"]:lower() == "100-continue"
      and req.version == "1.1" then
    write(conn, "HTTP/1.1 100 Continue\r\n\r\n")
  end
  if chunked then return read_chunked_body(conn) end
  return read_exact(conn, tonumber(length))
end

local function read_headers(conn, req)
  while true do
    local line = read_line(conn)
    if line == "" then return true end
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil end
    local key = name:lower()
    req.header_list[#req.header_list + 1] = { name, value }
    req.headers[key] = req.headers[key] and (req.headers[key] .. ", " .. value) or value
  end
end

local function wants_close(req)
  local connection = (req.headers["connection"] or ""):lower()
  if req.version == "1.0" then return not connection:find("keep-alive", 1, true) end
  return connection:find("close", 1, true) ~= nil
end

-- Reads one request; nil, reason when it is malformed.
local function read_request(conn)
  local line = read_line(conn)
  while line == "" do line = read_line(conn) end -- RFC 7230 3.5: ignore stray empty lines
  local method, target, version = line:match("^(%u+) (%S+) HTTP/(%d%.%d)$")
  if not method then return nil, "bad request line" end
  local req = { method = method, version = version, headers = {}, header_list = {} }
  req.path, req.query = target:match("^([^?]*)%??(.*)$")
  if not read_headers(conn, req) then return nil, "bad header line" end
  local body, err = read_body(conn, req)
  if not body then return nil, err end
  req.body = body
  return req
end

local function response_head(conn, status, headers)
  local lines = { "HTTP/1.1 " .. status .. " " .. (REASONS[status] or "Unknown") }
  for _, header in ipairs(headers) do lines[#lines + 1] = header[1] .. ": " .. header[2] end
  lines[#lines + 1] = "Server: openrouter-emulator"
  lines[#lines + 1] = "Date: " .. http_date()
  lines[#lines + 1] = "Connection: " .. (conn.closing and "close" or "keep-alive")
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function respond(conn, status, content_type, body, headers)
  local all = { { "Content-Type", content_type }, { "Content-Length", #body } }
  for _, header in ipairs(headers or {}) do all[#all + 1] = header end
  write(conn, response_head(conn, status, all) .. body)
end

local function respond_json(conn, status, value, headers)
  respond(conn, status, "application/json", json_encode(value), headers)
end

local function write_chunk(conn, data)
  write(conn, string.format("%x\r\n", #data) .. data .. "\r\n")
end

---------------------------------------------------------------------------------------------
-- SSE sinks: how the events of a stream reach the wire
---------------------------------------------------------------------------------------------

-- Each event in its own HTTP chunk (and TCP segment), `delay` seconds apart when given.
local function direct_sink(conn, delay)
  local first = true
  return {
    emit = function(event)
      if delay and not first then sleep(delay) end
      first = false
      write_chunk(conn, event)
    end,
    flush = function() end,
  }
end

-- Events packed into ~16 KiB HTTP chunks: the fastest way to push a very long stream.
local function batched_sink(conn)
  local pending, size = {}, 0
  local sink = {}
  function sink.flush()
    if size == 0 then return end
    write_chunk(conn, table.concat(pending))
    pending, size = {}, 0
  end
  function sink.emit(event)
    pending[#pending + 1] = event
    size = size + #event
    if size >= 16384 then sink.flush() end
  end
  return sink
end

-- Byte offsets after which the awkward stream is cut: inside every "data:" prefix, in the
-- middle of every JSON line, between every \r and \n, and after the lead byte of every
-- multibyte UTF-8 character. Cuts near event ends also put the tail of one event and the head
-- of the next into the same write.
local function awkward_cuts(s)
  local set, from = {}, 1
  while true do
    local at = s:find("data:", from, true)
    if not at then break end
    set[at + 1], set[at + 24] = true, true
    from = at + 5
  end
  for i = 1, #s do
    local b = s:byte(i)
    if b == 13 or b >= 0xC0 then set[i] = true end
  end
  local cuts = {}
  for at in pairs(set) do
    if at < #s then cuts[#cuts + 1] = at end
  end
  table.sort(cuts)
  return cuts
end

-- The whole stream with CRLF line ends, written at the end in awkward fragments.
local function awkward_sink(conn)
  local events = {}
  return {
    emit = function(event) events[#events + 1] = (event:gsub("\n", "\r\n")) end,
    flush = function()
      local s, previous = table.concat(events), 0
      for _, at in ipairs(awkward_cuts(s)) do
        write_chunk(conn, s:sub(previous + 1, at))
        sleep(SPLIT_DELAY)
        previous = at
      end
      write_chunk(conn, s:sub(previous + 1))
    end,
  }
end

local function new_sse(sink)
  return {
    comment = function() sink.emit(": OPENROUTER PROCESSING\n\n") end,
    data = function(value) sink.emit("data: " .. json_encode(value) .. "\n\n") end,
    done = function() sink.emit("data: [DONE]\n\n") end,
    emit_raw = function(text) sink.emit(text) end, -- an event written as it is
  }
end

---------------------------------------------------------------------------------------------
-- OpenRouter response shapes
---------------------------------------------------------------------------------------------

local TOOL_CALLS = {
  { id = "call_1", type = "function",
    ["function"] = { name = "get_weather", arguments = '{"city":"Paris"}' } },
  { id = "call_2", type = "function",
    ["function"] = { name = "get_time", arguments = '{"tz":"Europe/Paris"}' } },
}

-- The same calls as streamed fragments, merged by `index` on the client. Continuations carry
-- no id or an empty one, as GLM sends them.
local TOOL_CALL_FRAGMENTS = {
  { index = 0, id = "call_1", type = "function",
    ["function"] = { name = "get_weather", arguments = "" } },
  { index = 0, ["function"] = { arguments = '{"city":' } },
  { index = 0, id = "", ["function"] = { arguments = '"Paris"}' } },
  { index = 1, id = "call_2", type = "function",
    ["function"] = { name = "get_time", arguments = "" } },
  { index = 1, id = "", type = "function", ["function"] = { arguments = '{"tz":' } },
  { index = 1, ["function"] = { arguments = '"Europe/Paris"}' } },
}

local function usage(ctx)
  local reasoning_tokens = ctx.reasoning and count_words(REASONING_TEXT) or 0
  local prompt = ctx.prompt_tokens
  local completion = ctx.completion_tokens + reasoning_tokens
  local prompt_cost, completion_cost = prompt * 0.00000015, completion * 0.0000006
  return {
    prompt_tokens = prompt, completion_tokens = completion, total_tokens = prompt + completion,
    cost = prompt_cost + completion_cost, is_byok = false,
    prompt_tokens_details = { cached_tokens = 0, cache_write_tokens = 0, audio_tokens = 0,
                              video_tokens = 0 },
    completion_tokens_details = { reasoning_tokens = reasoning_tokens, image_tokens = 0,
                                  audio_tokens = 0 },
    cost_details = { upstream_inference_cost = prompt_cost + completion_cost,
                     upstream_inference_prompt_cost = prompt_cost,
                     upstream_inference_completions_cost = completion_cost },
  }
end

-- The fields every response and chunk share.
local function envelope(ctx, object, choices)
  local chat = ctx.kind == "chat"
  return {
    id = ctx.id, object = chat and object or "text_completion", created = ctx.created,
    model = ctx.model, provider = PROVIDER, system_fingerprint = chat and FINGERPRINT or nil,
    choices = choices,
  }
end

local function finish_fields(choice, finish)
  choice.finish_reason = finish or null
  choice.native_finish_reason = finish or null
  choice.logprobs = null
  return choice
end

-- A stream chunk with one choice; legacy completions carry `text` where chat has `delta`.
local function chunk(ctx, delta, finish)
  local choice = { index = 0 }
  if ctx.kind == "chat" then
    choice.delta = delta
  else
    choice.text = delta.content or ""
    choice.reasoning, choice.reasoning_details = delta.reasoning, delta.reasoning_details
  end
  return envelope(ctx, "chat.completion.chunk", { finish_fields(choice, finish) })
end

local function usage_chunk(ctx)
  local event = envelope(ctx, "chat.completion.chunk", EMPTY_ARRAY)
  event.usage = usage(ctx)
  return event
end

local function reasoning_details(text, signature)
  return { { type = "reasoning.text", text = text, signature = signature, id = null,
             format = REASONING_FORMAT, index = 0 } }
end

local function completion_body(ctx)
  local finish = ctx.tool_calls and "tool_calls" or "stop"
  local reasoning = ctx.reasoning and REASONING_TEXT or null
  local choice = { index = 0 }
  if ctx.kind == "chat" then
    choice.message = {
      role = "assistant", content = ctx.tool_calls and null or ctx.reply, refusal = null,
      reasoning = reasoning, tool_calls = ctx.tool_calls and (ctx.tool_call_list or TOOL_CALLS) or nil,
      reasoning_details = ctx.reasoning and reasoning_details(REASONING_TEXT, SIGNATURE) or nil,
    }
  else
    choice.text, choice.reasoning = ctx.reply, reasoning
  end
  local body = envelope(ctx, "chat.completion", { finish_fields(choice, finish) })
  body.service_tier = ctx.kind == "chat" and null or nil
  body.usage = usage(ctx)
  return body
end

local function respond_completion(ctx)
  respond_json(ctx.conn, 200, completion_body(ctx), { { "X-Generation-Id", ctx.id } })
end

local function open_stream(ctx)
  write(ctx.conn, response_head(ctx.conn, 200, {
    { "Content-Type", "text/event-stream" }, { "Cache-Control", "no-cache" },
    { "Transfer-Encoding", "chunked" }, { "X-Generation-Id", ctx.id },
  }))
end

-- Sends `events(ctx, sse)` as an SSE response. Scenarios that abort the connection raise
-- CLOSED from inside `events` and never get here past it.
local function stream(ctx, sink, events)
  open_stream(ctx)
  events(ctx, new_sse(sink))
  sink.flush()
  write(ctx.conn, "0\r\n\r\n") -- last chunk: the connection stays usable
end

local function stream_opening(ctx, sse)
  sse.comment()
  sse.data(chunk(ctx, { role = "assistant", content = "" }))
end

local function stream_reasoning(ctx, sse)
  for piece in pieces(REASONING_TEXT) do
    sse.data(chunk(ctx, { reasoning = piece, reasoning_details = {
      { type = "reasoning.text", text = piece, index = 0, format = REASONING_FORMAT } } }))
  end
  -- Anthropic's signature arrives alone, after the text it signs.
  sse.data(chunk(ctx, { reasoning_details = {
    { type = "reasoning.text", text = "", signature = SIGNATURE, index = 0,
      format = REASONING_FORMAT } } }))
end

local function stream_body(ctx, sse)
  if ctx.tool_calls then
    local fragments = TOOL_CALL_FRAGMENTS
    if ctx.tool_call_list then  -- whole calls, one per chunk, as some providers send them
      fragments = {}
      for i, call in ipairs(ctx.tool_call_list) do
        fragments[i] = { index = i - 1, id = call.id, type = call.type, ["function"] = call["function"] }
      end
    end
    for _, fragment in ipairs(fragments) do
      sse.data(chunk(ctx, { tool_calls = { fragment } }))
    end
    return
  end
  for piece in pieces(ctx.reply) do sse.data(chunk(ctx, { content = piece })) end
end

local function stream_ending(ctx, sse)
  local finish = chunk(ctx, {}, ctx.tool_calls and "tool_calls" or "stop")
  if ctx.usage_on_choice then
    finish.usage = usage(ctx)
    sse.data(finish)
  else
    sse.data(finish)
    sse.data(usage_chunk(ctx))
  end
  sse.done()
end

local function standard_events(ctx, sse)
  for _ = 1, ctx.keepalives or 0 do
    sse.comment()
    sleep(0.1)
  end
  stream_opening(ctx, sse)
  if ctx.reasoning then stream_reasoning(ctx, sse) end
  stream_body(ctx, sse)
  stream_ending(ctx, sse)
end

-- Answers with ctx.reply (or tool calls) as an ordinary model would, streamed when asked.
local function answer(ctx, sink)
  if not ctx.stream then return respond_completion(ctx) end
  stream(ctx, sink or direct_sink(ctx.conn), standard_events)
end

-- The first `n` content chunks of the reply, after the usual opening.
local function stream_partial(ctx, sse, n)
  stream_opening(ctx, sse)
  local next_piece = pieces(ctx.reply)
  for _ = 1, n do
    local piece = next_piece()
    if piece then sse.data(chunk(ctx, { content = piece })) end
  end
end

---------------------------------------------------------------------------------------------
-- Scenarios, picked by the request's model: "emulator/<name>[:<args>]"
---------------------------------------------------------------------------------------------

local function invalid_model(ctx)
  local body = error_body(400, ctx.model .. " is not a valid model ID")
  body.user_id = "user_emulator"
  respond_json(ctx.conn, 400, body)
end

local function retry_after_value(spec)
  local seconds = spec:match("^date(%d+)$")
  if seconds then return http_date(os.time() + tonumber(seconds)) end
  return spec
end

-- A scenario that always answers with the same error status and body.
local function failing(status, make_body)
  return { run = function(ctx) respond_json(ctx.conn, status, make_body(ctx)) end }
end

local NO_ENDPOINTS_BODY = { error = {
  message = "No endpoints for openai/gpt-5.2 match your data policy (zero data retention). "
    .. "Adjust at https://openrouter.ai/settings/privacy.",
  error_type = "not_found", http_status = 404,
  availability = {
    code = "privacy_restricted", retryable = false, requested_models = { "openai/gpt-5.2" },
    affected_providers = { "openai", "azure" }, excluded_by = { "data_policy:zdr" },
    docs_url = "https://openrouter.ai/docs/errors#privacy_restricted",
  },
} }

local HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>"
  .. "502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"

-- Scenarios by model id (chat and legacy completions alike unless noted; a stream-only
-- scenario answers a non-streamed request like an ordinary model, and the reverse):
--   <any other id>           echo ("Echo: <last user text or prompt>")
--   emulator/awkward         stream: CRLF, written in fragments split mid-line, inside
--                            "data:", between \r and \n and inside UTF-8 characters
--   emulator/usage-on-choice stream: usage rides on the finish chunk, no empty-choices chunk
--   emulator/reasoning       reasoning + reasoning_details (signature-only delta when streamed)
--   emulator/tools           chat: two tool calls; "Tool results: ..." once the last message is
--                            a tool result
--   emulator/reasoning-tools the same, with reasoning and reasoning_details on the tool-call turn
--   emulator/tools-loop      always one get_weather call (a loop that never ends)
--   emulator/tools-bad-json  a get_weather call whose arguments are not JSON
-- Other endpoints: GET /key; GET /generation?id= (a generation's stats, 404 until 0.3 s
-- after its request, cancelled = true when the client walked out of the stream); GET
-- /models/{author}/{slug}/endpoints (known models; 404 otherwise); POST /embeddings
-- (deterministic vectors; model emulator/embed:<dims> sets their size, default 8).
--   emulator/capacity        429 with availability.retry_after = 1 (no header, no error.code,
--                            as OpenRouter's availability errors) once, then echo
--   emulator/not-retryable   503 with availability.retryable = false once, then echo
--   emulator/rate-limited[:<n>]  429 of OpenRouter's own limiter (free-model daily quota) with
--                            X-RateLimit-Limit/-Remaining/-Reset (epoch ms), always or the
--                            first n requests; no other answer carries X-RateLimit-* headers
--   emulator/no-usage        echo without `usage` (non-streamed)
--   emulator/no-id           echo whose body has no `id` (the X-Generation-Id header has it)
--   emulator/mid-stream-error  stream: two content chunks, an error chunk, no [DONE]; else 502
--   missing/<x>, emulator/<unknown>   400 "... is not a valid model ID"
--   emulator/moderation 403, emulator/provider-error 400 (metadata.raw), emulator/no-code 404
--   (no error.code), emulator/string-code 500 ("server_error"), emulator/error-200,
--   emulator/html-502, emulator/malformed (truncated JSON), emulator/empty (empty body)
--   emulator/fail:<status>:<times>[:<seconds>|:date<seconds>]  the first <times> requests with
--                            that exact model fail (with Retry-After), then echo
--   emulator/slow:<ms>       waits before answering, or between every SSE event
--   emulator/keepalive:<n>   stream: n ": OPENROUTER PROCESSING" comments 100 ms apart first
--   emulator/reset           RST without answering; emulator/reset-mid-body: RST halfway
--                            through the body; emulator/reset-mid-stream: RST after 2 chunks
--   emulator/stall           never answers; emulator/stall-mid-stream: one chunk, then silence
--   emulator/long:<n>        n one-word content chunks, as fast as possible
--   emulator/first-chunk-stamp  stream: 10 ms after the headers, one chunk whose content is the
--                            server's clock (socket.gettime()) read just before it is written,
--                            then ~1 s of silence before the end (bench/: time to first chunk)
--   emulator/first-chunk-after:<ms>  stream: the headers at once, <ms> of silence, then 20
--                            content chunks 10 ms apart, each one's content the server's clock
--                            read just before it is written, then the end (bench/ W7: a host
--                            loop waiting for a slow model)
--   emulator/numbered:<n>    n content chunks "1 ", "2 ", ... "<n> ", as fast as possible (in
--                            order, each distinct: spec/budget_spec.lua)
--
-- Faults (spec/faults_spec.lua):
--   emulator/reset-mid-headers   the status line and part of the headers, then RST
--   emulator/close-after-response  answers (Connection: keep-alive), then closes the socket
--                            at once (FIN): the client finds the kept-alive connection dead
--   emulator/drop-next-request[:rst]  answers (keep-alive); the next request that arrives on
--                            that connection is recorded, then the connection is closed
--                            without an answer (FIN, or RST with :rst)
--   emulator/array-body      a JSON array holding a response; stream: two chunks, then a data
--                            line holding a JSON array
--   emulator/deep-json:<n>   a body (stream: after two chunks, an event) nested <n> levels deep
--   emulator/big:<bytes>     content of exactly <bytes> bytes (FILL_UNIT repeated), written
--                            lazily; stream: the same content in 8 KiB chunks
--   emulator/big-sse-line:<bytes>  stream: one content chunk of <bytes> bytes, one data line
--   emulator/bad-utf8        reply BAD_UTF8 (invalid UTF-8 bytes, sent raw); stream: word chunks
--   emulator/nul[:raw]       reply NUL_TEXT, its NUL bytes escaped as \u0000 (valid JSON); with
--                            :raw they are sent as raw bytes (not JSON)
--   emulator/sse-fields      stream: every event with event:, id:, retry: and unknown field
--                            lines, its JSON split over two data: lines, unknown JSON fields at
--                            the top, in the choice and in the delta (x_emulator*)
--   emulator/no-done         stream: the usual events without the final data: [DONE]
--   emulator/redirect:<status>:<url>  a redirect (301/302/303/307/308) to <url>
--   emulator/echo-key:<where>  echoes the request's API key back: api (400 error body: message,
--                            metadata.raw, metadata.headers), deep (400 error body whose
--                            metadata holds it 24 tables deep), html (502 page), stream (two
--                            chunks, then an error event holding it; non-streamed: as api)
--   emulator/leak-key:<how>  echoes the key in shapes that defeat a naive redaction (spec/
--                            redaction_spec.lua): nul (400, streamed or not: after a NUL byte
--                            in message and metadata.x, and as a metadata key name), event
--                            (stream: two chunks, then an error event holding it as nul does and
--                            after a NUL in metadata.raw; non-streamed: as nul), text (stream:
--                            the key split over two content chunks, then an error event;
--                            non-streamed: as nul), title (502 page whose
--                            <title> holds it broken by a line break), cut (502 page whose title
--                            is long enough that a 200-byte snippet ends inside the key)
--
-- Audio and API keys (spec/emulator_routes_spec.lua), by endpoint:
--   POST /audio/speech       SpeechRequest: model and input required, voice a non-empty string
--                            when given, response_format mp3 or pcm (default pcm), else 400.
--                            200: raw audio, Transfer-Encoding: chunked, X-Generation-Id;
--                            Content-Type audio/mpeg (mp3: an ID3 tag and an MPEG frame header
--                            first) or audio/pcm (pcm: 16-bit LE samples 0, 32767, -32767, 0
--                            first). Then per input byte b one sample: b, (b + 128) % 256, the
--                            input 8 times over; 4 HTTP chunks 5 ms apart. Models:
--     emulator/speech-slow:<ms>   the same, <ms> between the chunks
--     emulator/speech-big:<bytes> exactly <bytes> bytes of that sequence, in 64 KiB chunks
--     emulator/<other>, missing/<x>   400 "... is not a valid model ID"
--   POST /audio/transcriptions  application/json STTRequest (input_audio.data: strict base64,
--                            input_audio.format) or multipart/form-data (a `file` part whose
--                            filename or audio/* Content-Type names it; model, language,
--                            response_format, temperature, timestamp_granularities[] fields).
--                            200 STTResponse: text "Transcribed <n> bytes of <format or
--                            filename>: <first 16 bytes in hex>", usage (the audio counted as
--                            16 kHz 16-bit mono); verbose_json adds task, language, duration,
--                            segments (and words when timestamp_granularities has "word").
--                            400: another Content-Type, no boundary, a malformed multipart
--                            body, no file or model, bad base64, empty audio, bad fields
--   GET, POST /keys; GET, PATCH, DELETE /keys/{hash}   key provisioning, for a management key
--                            only: one starting with "sk-or-mgmt-" (GET /key says
--                            is_management_key = true for it); any other gets 403 "Only
--                            management keys can perform this operation". Keys live in the
--                            server until POST /_emulator/reset; hash and key are 64 hex
--                            digits fixed by the order of creation (the nth key after a reset
--                            is always the same). POST answers 201 { data, key } (the only
--                            time `key` is sent), GET /keys { data = [...] } (the default
--                            workspace unless ?workspace_id=, disabled keys only with
--                            ?include_disabled=true, ?offset=N), DELETE { deleted = true };
--                            404 for an unknown hash, 400 for a body the description refuses
--
-- More of the API (spec/api_more_spec.lua), by endpoint (a 401 without a key where marked):
--   GET /models/user (key)   ModelsListResponse { data, total_count, links.next } of the models
--                            the user's privacy settings allow: the list of GET /models without
--                            the :free ones; ?offset= and ?limit= (1-1000) page it (the whole
--                            list when both are absent; links.next names the next page), else 400
--   GET /embeddings/models   the same shape: three embedding models (output_modalities
--                            ["embeddings"]), paged the same way
--   GET /models/count        { data = { count } } of the models whose output modalities meet
--                            ?output_modalities= (a comma list of text, image, audio,
--                            embeddings, or all; default text); 400 for another name
--   GET /model/{author}/{slug}  { data = <the model> } (chat or embedding model); 404 otherwise
--   GET /providers           { data = [...] } name (ProviderName of the description), slug,
--                            privacy_policy_url, terms_of_service_url, status_page_url,
--                            headquarters, datacenters
--   GET /endpoints/zdr       { data = [PublicEndpoint...] } five zero-data-retention endpoints
--   GET /generation/content?id= (key)  { data = { input = { messages } or { prompt }, output =
--                            { completion, reasoning }, error = null } }; 404 until written, as
--                            GET /generation (chat, completions and responses requests)
--   POST /images (key)       ImageGenerationRequest (model, prompt required; n 1-10; an
--                            output_format of the enum): ImageGenerationResponse { created,
--                            data = n x { b64_json = a 1x1 PNG, media_type = "image/png" },
--                            usage }; 400 otherwise
--   POST /rerank (key)       model, query, documents (strings or { text, image }), top_n: the
--                            results best first, relevance_score = the share of the query's
--                            words the document holds, ties by index; { id, model, provider,
--                            results = [{ index, relevance_score, document }], usage }
--   POST /responses (key)    "Echo: <last user input>" (input: a string, or items whose content
--                            is a string or input_text parts) as an OpenResponsesResult (object
--                            "response", status "completed", one output message with one
--                            output_text, usage with input/output tokens; the request's
--                            instructions, temperature, tools... echoed); "stream": true sends
--                            the typed events, each an `event: <type>` line and a `data:` JSON
--                            with `type` and `sequence_number` (0, 1, ...): response.created,
--                            response.in_progress, response.output_item.added,
--                            response.content_part.added, response.output_text.delta per word,
--                            response.output_text.done, response.content_part.done,
--                            response.output_item.done, response.completed (the whole response),
--                            then data: [DONE]. Models:
--     emulator/response-error   stream: two deltas, then an `error` event (code "server_error",
--                            message, param null) and the end; non-streamed: 502 error body
--     emulator/response-failed  stream: two deltas, then response.failed (status "failed",
--                            error { code = "server_error", message }, the text so far as an
--                            incomplete message); non-streamed: that response, status 200
--     emulator/<other>, missing/<x>   400 "... is not a valid model ID"
--   GET /auth?callback_url=&code_challenge=&code_challenge_method=  (at the site root, not under
--                            /api/v1: OpenRouter's authorization page; recorded in the log) a
--                            signed-in user who always approves: 302 to callback_url?code=<code>
--                            (&code= when it has a query); 400 without an http(s) callback_url,
--                            for a method other than S256 or plain, or a method without a
--                            challenge. A challenge without a method is "plain" (RFC 7636)
--   POST /auth/keys          { code, code_verifier, code_challenge_method }, no key needed: 200
--                            { key = "sk-or-v1-<64 hex>", user_id }, once per code; 403 for an
--                            unknown or used code or a verifier whose S256 (base64url of its
--                            SHA-256, computed in plain Lua) or plain form is not the challenge;
--                            400 for a malformed body, a missing verifier when there was a
--                            challenge, or a method other than the authorization's. Codes live
--                            until POST /_emulator/reset
--
-- Rich replies (spec/stream_fidelity_spec.lua), chat only, the same content streamed or not:
--   emulator/images          the echo, then two images (message.images; a delta each)
--   emulator/audio-out       an audio reply: content null, audio { id, data, transcript (the
--                            echo), expires_at, format }; streamed: transcript and data fragments
--   emulator/logprobs        the echo with choice.logprobs.content, one entry per piece
--   emulator/annotations     the echo, then two url_citation annotations (streamed: the first,
--                            then both again, as providers repeat them)
--   emulator/reasoning-order reasoning_details of three types, streamed with indexes 0, 1, 0, 2,
--                            1, 0, 2 (a signature-only fragment among them), then the echo
--   emulator/rich            all of them in one reply (content = the echo, with logprobs)
--   emulator/cached:<n>      the echo; usage with <n> cached_tokens and 3 reasoning_tokens
--   emulator/structured      response_format json_schema: content is a sample of the schema (its
--                            required properties: "sample <name>", 1, 1.5, true, one-item arrays,
--                            enum[1], const); 400 without json_schema.name or schema;
--                            json_object: {"echo": <last user text>}; else plain text (echo)
--
-- `pattern` matches the text after "emulator/<name>:" (default: nothing); its captures are
-- passed to `run` after the request context.
local SCENARIOS = {}

SCENARIOS.echo = { run = function(ctx) answer(ctx) end }

SCENARIOS.awkward = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  ctx.reply = AWKWARD_PREFIX .. ctx.reply
  ctx.completion_tokens = count_words(ctx.reply)
  answer(ctx, awkward_sink(ctx.conn))
end }

SCENARIOS["usage-on-choice"] = { run = function(ctx)
  ctx.usage_on_choice = true
  answer(ctx)
end }

SCENARIOS.reasoning = { run = function(ctx)
  ctx.reasoning = true
  answer(ctx)
end }

-- Tool calls first, then a text answer once the last message is a tool result.
local function tool_turn(ctx)
  if ctx.kind == "chat" then
    local results = trailing_tool_results(ctx.body.messages)
    if results then
      ctx.reply = "Tool results: " .. results
      ctx.completion_tokens = count_words(ctx.reply)
    else
      ctx.tool_calls = true
    end
  end
  answer(ctx)
end

SCENARIOS.tools = { run = tool_turn }

-- reasoning_details ride along with the tool calls (Anthropic thinking around tools).
SCENARIOS["reasoning-tools"] = { run = function(ctx)
  ctx.reasoning = true
  tool_turn(ctx)
end }

-- Asks for the weather forever: a tool loop that never ends by itself.
SCENARIOS["tools-loop"] = { run = function(ctx)
  ctx.tool_calls = true
  ctx.tool_call_list = { TOOL_CALLS[1] }
  answer(ctx)
end }

-- A tool call whose arguments are not JSON.
SCENARIOS["tools-bad-json"] = { run = function(ctx)
  ctx.tool_calls = true
  ctx.tool_call_list = { { id = "call_bad", type = "function",
    ["function"] = { name = "get_weather", arguments = "{city: Paris" } } }
  answer(ctx)
end }

-- A reply without `usage` (older or third-party gateways): non-streamed only.
SCENARIOS["no-usage"] = { run = function(ctx)
  if ctx.stream then return answer(ctx) end
  local body = completion_body(ctx)
  body.usage = nil
  respond_json(ctx.conn, 200, body, { { "X-Generation-Id", ctx.id } })
end }

-- A reply whose body has no `id`: only the X-Generation-Id header names the generation.
SCENARIOS["no-id"] = { run = function(ctx)
  local body = completion_body(ctx)
  body.id = nil
  respond_json(ctx.conn, 200, body, { { "X-Generation-Id", ctx.id } })
end }

local PROVIDER_DISCONNECTED = { code = 502, message = "Provider disconnected",
  metadata = { error_type = "provider_unavailable", provider_name = PROVIDER } }

SCENARIOS["mid-stream-error"] = { run = function(ctx)
  if not ctx.stream then
    return respond_json(ctx.conn, 502, { error = PROVIDER_DISCONNECTED })
  end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_partial(ctx, sse, 2)
    local event = chunk(ctx, { content = "" }, "error")
    event.error = PROVIDER_DISCONNECTED
    sse.data(event) -- and no [DONE]
  end)
end }

SCENARIOS.moderation = failing(403, function(ctx)
  return { error = { code = 403,
    message = ctx.model .. ' requires moderation on OpenAI. Your input was flagged for "violence".',
    metadata = { reasons = { "violence" }, flagged_input = middle_truncate(ctx.input),
                 provider_name = "OpenAI", model_slug = ctx.model } } }
end)

SCENARIOS["provider-error"] = failing(400, function()
  local raw = '{"error":{"type":"invalid_request_error",'
    .. '"message":"Model supports at most 1 image per prompt."}}'
  return { error = { code = 400, message = "Provider returned error",
                     metadata = { raw = raw, provider_name = "Crucible", is_byok = false } },
           user_id = "user_emulator" }
end)

SCENARIOS["no-code"] = failing(404, function() return NO_ENDPOINTS_BODY end)

SCENARIOS["string-code"] = failing(500, function()
  return error_body("server_error", "Internal Server Error")
end)

SCENARIOS["error-200"] = { run = function(ctx)
  respond_json(ctx.conn, 200, error_body(400, "Upstream rejected the request"),
               { { "X-Generation-Id", ctx.id } })
end }

SCENARIOS.fail = { pattern = "^(%d%d%d):(%d+):?(%w*)$", run = function(ctx, status, times, ra)
  if not (ra:match("^%d*$") or ra:match("^date%d+$")) then return invalid_model(ctx) end
  local counts = ctx.conn.server.fail_counts
  counts[ctx.model] = (counts[ctx.model] or 0) + 1
  if counts[ctx.model] > tonumber(times) then return answer(ctx) end
  status = tonumber(status)
  local message = status == 429 and "Rate limit exceeded" or REASONS[status] or "Error"
  local headers = {}
  if ra ~= "" then headers[1] = { "Retry-After", retry_after_value(ra) } end
  respond_json(ctx.conn, status, error_body(status, message), headers)
end }

-- 429 capacity_exhausted: retryable, with availability.retry_after and no Retry-After header;
-- the first request only, then echo (a counter per model, as `fail`).
SCENARIOS.capacity = { run = function(ctx)
  local counts = ctx.conn.server.fail_counts
  counts[ctx.model] = (counts[ctx.model] or 0) + 1
  if counts[ctx.model] > 1 then return answer(ctx) end
  respond_json(ctx.conn, 429, { error = {
    message = "All providers of openai/gpt-4o-mini are at capacity. Try again shortly.",
    error_type = "rate_limit_exceeded", http_status = 429,
    availability = { code = "capacity_exhausted", retryable = true, retry_after = 1,
                     requested_models = { "openai/gpt-4o-mini" } } } })
end }

-- 503 that says it is not worth retrying (availability.retryable = false); then echo.
SCENARIOS["not-retryable"] = { run = function(ctx)
  local counts = ctx.conn.server.fail_counts
  counts[ctx.model] = (counts[ctx.model] or 0) + 1
  if counts[ctx.model] > 1 then return answer(ctx) end
  respond_json(ctx.conn, 503, { error = { code = 503,
    message = "No provider can serve this request under your constraints",
    availability = { code = "constraint_filtered", retryable = false,
                     requested_models = { "openai/gpt-4o-mini" } } } })
end }

-- 429 from OpenRouter's own limiter (the free-model daily quota), the one answer that carries
-- X-RateLimit-Limit, -Remaining and -Reset (epoch milliseconds: the next UTC midnight), also
-- copied into error.metadata.headers as OpenRouter does. Always, or with :<n> the first n
-- requests of that model only, then echo.
SCENARIOS["rate-limited"] = { pattern = "^(%d*)$", run = function(ctx, times)
  local counts = ctx.conn.server.fail_counts
  counts[ctx.model] = (counts[ctx.model] or 0) + 1
  if times ~= "" and counts[ctx.model] > tonumber(times) then return answer(ctx) end
  local now = os.time()
  local reset = string.format("%d000", now - now % 86400 + 86400)
  local limits = { ["X-RateLimit-Limit"] = "50", ["X-RateLimit-Remaining"] = "0",
                   ["X-RateLimit-Reset"] = reset }
  respond_json(ctx.conn, 429, { error = { code = 429,
    message = "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free "
      .. "model requests per day",
    metadata = { headers = limits, limit_source = "openrouter_free_tier_daily" } },
    user_id = "user_emulator" }, {
    { "X-RateLimit-Limit", limits["X-RateLimit-Limit"] },
    { "X-RateLimit-Remaining", limits["X-RateLimit-Remaining"] },
    { "X-RateLimit-Reset", reset },
  })
end }

SCENARIOS["html-502"] = { run = function(ctx)
  respond(ctx.conn, 502, "text/html", HTML_502)
end }

SCENARIOS.malformed = { run = function(ctx)
  respond(ctx.conn, 200, "application/json", '{"id":"gen-x","choices":[{"message":{"content":"hel',
          { { "X-Generation-Id", "gen-x" } })
end }

SCENARIOS.empty = { run = function(ctx)
  respond(ctx.conn, 200, "application/json", "", { { "X-Generation-Id", ctx.id } })
end }

SCENARIOS.slow = { pattern = "^(%d+)$", run = function(ctx, ms)
  local delay = tonumber(ms) / 1000
  if ctx.stream then return answer(ctx, direct_sink(ctx.conn, delay)) end
  sleep(delay)
  answer(ctx)
end }

SCENARIOS.keepalive = { pattern = "^(%d+)$", run = function(ctx, n)
  ctx.keepalives = tonumber(n)
  answer(ctx)
end }

SCENARIOS.reset = { run = function(ctx) reset_connection(ctx.conn) end }

SCENARIOS["reset-mid-body"] = { run = function(ctx)
  if ctx.stream then return answer(ctx) end
  local body = json_encode(completion_body(ctx))
  write(ctx.conn, response_head(ctx.conn, 200, {
    { "Content-Type", "application/json" }, { "Content-Length", #body },
    { "X-Generation-Id", ctx.id } }) .. body:sub(1, math.floor(#body / 2)))
  reset_connection(ctx.conn)
end }

SCENARIOS["reset-mid-stream"] = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_partial(ctx, sse, 2)
    reset_connection(ctx.conn)
  end)
end }

SCENARIOS.stall = { run = function(ctx) wait_for_peer_close(ctx.conn) end }

SCENARIOS["stall-mid-stream"] = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    sse.comment()
    sse.data(chunk(ctx, { role = "assistant", content = pieces(ctx.reply)() }))
    wait_for_peer_close(ctx.conn)
  end)
end }

SCENARIOS.long = { pattern = "^(%d+)$", run = function(ctx, n)
  ctx.reply = string.rep("tok ", tonumber(n))
  ctx.completion_tokens = tonumber(n)
  answer(ctx, batched_sink(ctx.conn))
end }

SCENARIOS["first-chunk-stamp"] = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  -- The HTTP chunk is framed in advance: only reading the clock and the write remain.
  local event = ("data: " .. json_encode(chunk(ctx, { role = "assistant", content = "STAMP" }))
    .. "\n\n"):gsub("%%", "%%%%"):gsub("STAMP", "%%.6f")
  local framed = string.format("%x\r\n", #event:format(socket.gettime())) .. event .. "\r\n"
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    sleep(0.01) -- the client is idle, waiting, when the chunk leaves
    write(ctx.conn, framed:format(socket.gettime()))
    sleep(1)
    stream_ending(ctx, sse)
  end)
end }

SCENARIOS["first-chunk-after"] = { pattern = "^(%d+)$", run = function(ctx, ms)
  if not ctx.stream then return answer(ctx) end
  local event = ("data: " .. json_encode(chunk(ctx, { content = "STAMP" }))
    .. "\n\n"):gsub("%%", "%%%%"):gsub("STAMP", "%%.6f")
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    sleep(tonumber(ms) / 1000) -- nothing at all on the wire while the "model" thinks
    for i = 1, 20 do
      if i > 1 then sleep(0.01) end -- the client is idle, waiting, when each chunk leaves
      local data = event:format(socket.gettime())
      write(ctx.conn, string.format("%x\r\n", #data) .. data .. "\r\n")
    end
    stream_ending(ctx, sse)
  end)
end }

SCENARIOS.numbered = { pattern = "^(%d+)$", run = function(ctx, n)
  local words = {}
  for i = 1, tonumber(n) do words[i] = i .. " " end
  ctx.reply = table.concat(words)
  ctx.completion_tokens = tonumber(n)
  answer(ctx, batched_sink(ctx.conn))
end }

---------------------------------------------------------------------------------------------
-- Fault scenarios
---------------------------------------------------------------------------------------------

SCENARIOS["reset-mid-headers"] = { run = function(ctx)
  write(ctx.conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Generation-Id: "
    .. ctx.id .. "\r\nContent-Le")
  reset_connection(ctx.conn)
end }

SCENARIOS["close-after-response"] = { run = function(ctx)
  answer(ctx)
  error(CLOSED, 0) -- the cleanup closes the socket: FIN after a keep-alive response
end }

SCENARIOS["drop-next-request"] = { pattern = "^(%a*)$", run = function(ctx, how)
  if how ~= "" and how ~= "rst" then return invalid_model(ctx) end
  answer(ctx)
  ctx.conn.drop_next = how == "rst" and "rst" or "fin" -- see route_request
end }

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

SCENARIOS["bad-utf8"] = { run = function(ctx)
  ctx.reply = BAD_UTF8
  ctx.completion_tokens = count_words(ctx.reply)
  answer(ctx)
end }

local NUL_TEXT = "nul \0 inside \0\0 twice"

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

SCENARIOS["sse-fields"] = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  stream(ctx, fields_sink(ctx.conn), standard_events)
end }

SCENARIOS["no-done"] = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_opening(ctx, sse)
    stream_body(ctx, sse)
    sse.data(chunk(ctx, {}, "stop"))
    sse.data(usage_chunk(ctx)) -- and no data: [DONE]
  end)
end }

SCENARIOS.redirect = { pattern = "^(30[12378]):(https?://.+)$", run = function(ctx, status, url)
  status = tonumber(status)
  local title = status .. " " .. REASONS[status]
  respond(ctx.conn, status, "text/html", "<html><head><title>" .. title .. "</title></head><body>"
    .. '<a href="' .. url .. '">' .. title .. "</a></body></html>", { { "Location", url } })
end }

-- The key where a redaction that stops at NUL, looks only at string values, or runs before
-- lines are joined misses it (emulator/leak-key:<how>, spec/redaction_spec.lua).
local function leak_key_error(key, code)
  local metadata = { x = "pre\0" .. key, [key] = "as a key" }
  if code == 502 then metadata.raw = "pre\0 Bearer " .. key end -- only the stream's event
  return { error = { code = code, message = "bad\0 Bearer " .. key, metadata = metadata } }
end

local LEAK_KEY = {}

LEAK_KEY.nul = function(ctx)
  respond_json(ctx.conn, 400, leak_key_error(ctx.key, 400))
end

LEAK_KEY.event = function(ctx)
  if not ctx.stream then return LEAK_KEY.nul(ctx) end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_partial(ctx, sse, 2)
    local event = chunk(ctx, { content = "" }, "error")
    event.error = leak_key_error(ctx.key, 502).error
    sse.data(event) -- and no [DONE]
  end)
end

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

-- The page's title breaks the key with a line break (the snippet joins lines with a space).
LEAK_KEY.title = function(ctx)
  local half = math.floor(#ctx.key / 2)
  respond(ctx.conn, 502, "text/html", "<html><head><title>Bad key " .. ctx.key:sub(1, half)
    .. "\r\n  " .. ctx.key:sub(half + 1) .. "</title></head><body>bad key</body></html>")
end

-- The page's title is so long that the 200-byte snippet of it ends inside the key.
LEAK_KEY.cut = function(ctx)
  respond(ctx.conn, 502, "text/html", "<html><head><title>" .. string.rep("x", 150) .. " "
    .. ctx.key .. "</title></head><body>bad key</body></html>")
end

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

-- Hostile numbers, broken encodings and oversized headers (spec/error_kinds_spec.lua).

-- Number texts a server may put where an integer belongs. "NaN" is not JSON, but lua-cjson
-- decodes it (decode_invalid_numbers is on by default), so a client must survive it.
local HOSTILE_NUMBERS = { int32 = "2147483648", huge = "1e300", nan = "NaN", neg = "-1",
  frac = "0.5" }

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

-- A 400 whose error code is a hostile number (streamed or not: the error comes first).
SCENARIOS["hostile-code"] = { pattern = "^(%a+%d*)$", run = function(ctx, which)
  local number = HOSTILE_NUMBERS[which]
  if not number then return invalid_model(ctx) end
  respond(ctx.conn, 400, "application/json",
    '{"error":{"code":' .. number .. ',"message":"hostile code"}}')
end }

-- A 200 marked gzip whose body is a gzip header followed by bytes that do not inflate.
SCENARIOS["gzip-corrupt"] = { run = function(ctx)
  respond(ctx.conn, 200, ctx.stream and "text/event-stream" or "application/json",
    "\31\139\8\0\0\0\0\0\0\3" .. string.rep("not deflate data ", 8),
    { { "Content-Encoding", "gzip" }, { "X-Generation-Id", ctx.id } })
end }

-- An ordinary answer, after one response header of n bytes.
SCENARIOS["huge-header"] = { pattern = "^(%d+)$", run = function(ctx, n)
  respond(ctx.conn, 200, "application/json", json_encode(completion_body(ctx)),
    { { "X-Emulator-Filler", string.rep("f", tonumber(n)) }, { "X-Generation-Id", ctx.id } })
end }

---------------------------------------------------------------------------------------------
-- Rich replies and structured output (spec/stream_fidelity_spec.lua, spec/structured_spec.lua)
---------------------------------------------------------------------------------------------

-- Each feature adds to a plan: fields of the non-streamed message and choice, and the stream
-- events (a delta, and a choice-level logprobs) that carry the same content when streamed.

-- A 1x1 PNG, and an image by URL.
local RICH_IMAGES = {
  { type = "image_url", image_url = { url = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"
    .. "CAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==" } },
  { type = "image_url", image_url = { url = "https://example.com/emulator/cat.png" } },
}

local RICH_ANNOTATIONS = {
  { type = "url_citation", url_citation = { url = "https://openrouter.ai/docs",
    title = "OpenRouter Documentation", content = "OpenRouter provides a unified API.",
    start_index = 0, end_index = 4 } },
  { type = "url_citation", url_citation = { url = "https://example.com/emulator",
    title = "The emulator", content = "A local stand-in.", start_index = 6, end_index = 10 } },
}

-- Blocks of three types; streamed in fragments whose indexes come 0, 1, 0, 2, 1, 0, 2.
local RICH_DETAILS = {
  { type = "reasoning.text", text = "First block.", signature = "sig-1", index = 0,
    format = REASONING_FORMAT },
  { type = "reasoning.summary", summary = "Second block summary.", index = 1,
    format = REASONING_FORMAT },
  { type = "reasoning.encrypted", data = "ZW5jcnlwdGVk", index = 2, format = REASONING_FORMAT },
}
local RICH_DETAIL_FRAGMENTS = {
  { type = "reasoning.text", text = "First ", index = 0 },
  { type = "reasoning.summary", summary = "Second ", index = 1 },
  { type = "reasoning.text", text = "block.", index = 0 },
  { type = "reasoning.encrypted", data = "ZW5j", index = 2 },
  { type = "reasoning.summary", summary = "block summary.", index = 1 },
  { type = "reasoning.text", text = "", signature = "sig-1", index = 0 },
  { type = "reasoning.encrypted", data = "cnlwdGVk", index = 2 },
}

-- 16-bit PCM of a short rising tone, base64: streamed in three fragments.
local RICH_AUDIO_DATA = { "AAAAEAAgADAAQABQAGAAcACA", "AJAAoACwAMAA0ADgAPAAAA", "EAAgADAAQABQ" }

local RICH = {}

function RICH.reasoning(_, plan)
  plan.message.reasoning = RICH_DETAILS[1].text
  plan.message.reasoning_details = RICH_DETAILS
  for _, f in ipairs(RICH_DETAIL_FRAGMENTS) do
    local fragment = { format = REASONING_FORMAT }
    for k, v in pairs(f) do fragment[k] = v end
    local delta = { reasoning_details = { fragment } }
    if f.type == "reasoning.text" and f.text ~= "" then delta.reasoning = f.text end
    plan.events[#plan.events + 1] = { delta = delta }
  end
end

-- The reply's text, each piece with its token log probability.
function RICH.logprobs(ctx, plan)
  local entries, i = {}, 0
  for piece in pieces(ctx.reply) do
    i = i + 1
    local bytes = { piece:byte(1, -1) }
    local entry = { token = piece, logprob = -0.125 * i, bytes = bytes,
                    top_logprobs = { { token = piece, logprob = -0.125 * i, bytes = bytes } } }
    entries[i] = entry
    plan.events[#plan.events + 1] = { delta = { content = piece },
                                      logprobs = { content = { entry }, refusal = null } }
  end
  plan.choice.logprobs = { content = json_array(entries), refusal = null }
  plan.content_sent = true
end

function RICH.images(_, plan)
  plan.message.images = RICH_IMAGES
  for _, image in ipairs(RICH_IMAGES) do
    plan.events[#plan.events + 1] = { delta = { images = { image } } }
  end
end

-- An audio reply: its transcript is the text, content is null unless text comes too. Its id
-- and expiry are fixed, so that two requests get equal replies.
function RICH.audio(ctx, plan)
  local id, expires_at = "audio_emulator", 1767225600
  plan.message.audio = { id = id, data = table.concat(RICH_AUDIO_DATA), transcript = ctx.reply,
                         expires_at = expires_at, format = "pcm16" }
  local first = true
  for piece in pieces(ctx.reply) do
    local fragment = { transcript = piece }
    if first then fragment.id, fragment.format = id, "pcm16" end
    first = false
    plan.events[#plan.events + 1] = { delta = { audio = fragment } }
  end
  for _, data in ipairs(RICH_AUDIO_DATA) do
    plan.events[#plan.events + 1] = { delta = { audio = { data = data } } }
  end
  plan.events[#plan.events + 1] = { delta = { audio = { id = id, expires_at = expires_at } } }
  plan.audio_only = not plan.content_sent
end

-- Citations: streamed one, then both again (as providers repeat them); kept once each.
function RICH.annotations(_, plan)
  plan.message.annotations = RICH_ANNOTATIONS
  plan.events[#plan.events + 1] = { delta = { annotations = { RICH_ANNOTATIONS[1] } } }
  plan.events[#plan.events + 1] = { delta = { annotations = RICH_ANNOTATIONS } }
end

-- Usage with cached prompt tokens (ctx.cached_tokens) and 3 reasoning tokens.
function RICH.cached(ctx, plan)
  plan.usage = usage(ctx)
  local u = plan.usage
  u.prompt_tokens_details.cached_tokens = ctx.cached_tokens
  u.completion_tokens_details.reasoning_tokens = 3
  u.completion_tokens, u.total_tokens = u.completion_tokens + 3, u.total_tokens + 3
end

local function rich_plan(ctx, features)
  local plan = { message = {}, choice = {}, events = {} }
  for _, name in ipairs(features) do
    if name == "text" then
      for piece in pieces(ctx.reply) do plan.events[#plan.events + 1] = { delta = { content = piece } } end
      plan.content_sent = true
    else
      RICH[name](ctx, plan)
    end
  end
  return plan
end

local function respond_rich(ctx, plan)
  local body = completion_body(ctx)
  local choice = body.choices[1]
  for k, v in pairs(plan.message) do choice.message[k] = v end
  for k, v in pairs(plan.choice) do choice[k] = v end
  if plan.audio_only then choice.message.content = null end
  body.usage = plan.usage or body.usage
  respond_json(ctx.conn, 200, body, { { "X-Generation-Id", ctx.id } })
end

local function stream_rich(ctx, plan)
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_opening(ctx, sse)
    for _, event in ipairs(plan.events) do
      local c = chunk(ctx, event.delta)
      if event.logprobs then c.choices[1].logprobs = event.logprobs end
      sse.data(c)
    end
    sse.data(chunk(ctx, {}, "stop"))
    local last = usage_chunk(ctx)
    last.usage = plan.usage or last.usage
    sse.data(last)
    sse.done()
  end)
end

-- A chat scenario sending `features` in this order (a completion: an ordinary echo).
local function rich(features)
  return { run = function(ctx)
    if ctx.kind ~= "chat" then return answer(ctx) end
    local plan = rich_plan(ctx, features)
    if ctx.stream then return stream_rich(ctx, plan) end
    respond_rich(ctx, plan)
  end }
end

SCENARIOS.images = rich{ "text", "images" }
SCENARIOS["audio-out"] = rich{ "audio" }
SCENARIOS.logprobs = rich{ "logprobs" }
SCENARIOS.annotations = rich{ "text", "annotations" }
SCENARIOS["reasoning-order"] = rich{ "reasoning", "text" }
SCENARIOS.rich = rich{ "reasoning", "logprobs", "images", "audio", "annotations" }
SCENARIOS.cached = { pattern = "^(%d+)$", run = function(ctx, n)
  ctx.cached_tokens = tonumber(n)
  rich{ "text", "cached" }.run(ctx)
end }

-- A sample value for a JSON schema: an object with its required properties (strings
-- "sample <name>", integers 1, numbers 1.5, booleans true, one-item arrays), the first of
-- an enum, a const as it is.
local function sample_value(schema, name, depth)
  if type(schema) ~= "table" or depth > 8 then return null end
  if schema.const ~= nil then return schema.const end
  if type(schema.enum) == "table" and schema.enum[1] ~= nil then return schema.enum[1] end
  local t = schema.type
  if type(t) == "table" then t = t[1] end
  if t == "object" or (t == nil and type(schema.properties) == "table") then
    local out, props = {}, type(schema.properties) == "table" and schema.properties or {}
    for _, key in ipairs(type(schema.required) == "table" and schema.required or {}) do
      out[key] = sample_value(props[key], key, depth + 1)
    end
    return out
  elseif t == "array" then
    return { sample_value(schema.items, name, depth + 1) }
  elseif t == "string" then
    return "sample " .. (name or "value")
  end
  return ({ integer = 1, number = 1.5, boolean = true })[t] or null
end

-- Structured output: response_format json_schema answers a sample of the schema as the
-- content (400 without json_schema.name or schema, as the API); json_object answers
-- {"echo": <last user text>}; without response_format, plain text (an echo).
SCENARIOS.structured = { run = function(ctx)
  local rf = ctx.kind == "chat" and ctx.body.response_format
  if type(rf) ~= "table" or (rf.type ~= "json_schema" and rf.type ~= "json_object") then
    return answer(ctx)
  end
  local value = { echo = ctx.input }
  if rf.type == "json_schema" then
    local js = rf.json_schema
    if type(js) ~= "table" or type(js.name) ~= "string" or type(js.schema) ~= "table" then
      return respond_json(ctx.conn, 400,
        error_body(400, "response_format.json_schema: name and schema are required"))
    end
    value = sample_value(js.schema, nil, 0)
  end
  ctx.reply = json_encode(value)
  ctx.completion_tokens = count_words(ctx.reply)
  answer(ctx)
end }

-- The scenario for `model` and the captures of its arguments; nil for an unknown model.
local function pick_scenario(model)
  if model:find("^missing/") then return nil end
  local name, args = model:match("^emulator/([%w%-]+):?(.*)$")
  if not name then return SCENARIOS.echo, {} end
  local scenario = SCENARIOS[name]
  if not scenario then return nil end
  local captures = { args:match(scenario.pattern or "^$") }
  if captures[1] == nil then return nil end
  return scenario, captures
end

---------------------------------------------------------------------------------------------
-- API endpoints
---------------------------------------------------------------------------------------------

local TEXT_PARAMS = { "max_tokens", "temperature", "top_p", "stop", "frequency_penalty",
  "presence_penalty", "seed", "response_format", "structured_outputs", "tools", "tool_choice" }
local REASONING_PARAMS = { "reasoning", "include_reasoning" }
local SAMPLING_PARAMS = { "top_k", "repetition_penalty", "min_p" }

local function params(...)
  local list = {}
  for _, group in ipairs({ ... }) do
    for _, name in ipairs(group) do list[#list + 1] = name end
  end
  return list
end

local SAMPLING_DEFAULTS = { temperature = null, top_p = null, frequency_penalty = null }

-- One model entry with every field of GET /models; `m` holds what differs between models.
local function model_entry(m)
  local inputs = m.inputs or { "text" }
  return {
    id = m.id, canonical_slug = m.slug, name = m.name, created = m.created,
    description = m.description, context_length = m.context,
    architecture = { modality = table.concat(inputs, "+") .. "->text", input_modalities = inputs,
                     output_modalities = { "text" }, tokenizer = m.tokenizer,
                     instruct_type = m.instruct_type or null },
    pricing = { prompt = m.prompt, completion = m.completion, request = "0", image = m.image or "0",
                web_search = "0", internal_reasoning = "0", input_cache_read = m.cache_read },
    top_provider = { context_length = m.context, max_completion_tokens = m.max_output or null,
                     is_moderated = m.moderated or false },
    per_request_limits = null,
    supported_parameters = m.params,
    default_parameters = m.defaults or null,
    reasoning = m.reasoning, -- absent on models that do not reason, as on OpenRouter
    knowledge_cutoff = m.cutoff or null, expiration_date = null, supported_voices = null,
    links = { details = "/api/v1/models/" .. m.id:gsub(":.*", "") .. "/endpoints" },
  }
end

local MODELS = {
  model_entry { id = "openai/gpt-4o-mini", slug = "openai/gpt-4o-mini-2024-07-18",
    name = "OpenAI: GPT-4o-mini", created = 1721260800, context = 128000, max_output = 16384,
    description = "GPT-4o mini is OpenAI's small, affordable multimodal model.",
    inputs = { "text", "image", "file" }, tokenizer = "GPT", moderated = true,
    prompt = "0.00000015", completion = "0.0000006", image = "0.000217",
    cache_read = "0.000000075", params = params(TEXT_PARAMS), cutoff = "2023-10-01" },
  model_entry { id = "openai/gpt-4o", slug = "openai/gpt-4o-2024-05-13", name = "OpenAI: GPT-4o",
    created = 1715367049, context = 128000, max_output = 16384,
    description = "GPT-4o is OpenAI's flagship multimodal model.",
    inputs = { "text", "image", "file" }, tokenizer = "GPT", moderated = true,
    prompt = "0.0000025", completion = "0.00001", image = "0.003613", cache_read = "0.00000125",
    params = params(TEXT_PARAMS), cutoff = "2023-10-01" },
  model_entry { id = "anthropic/claude-sonnet-4.5", slug = "anthropic/claude-4.5-sonnet-20250929",
    name = "Anthropic: Claude Sonnet 4.5", created = 1759161676, context = 1000000,
    max_output = 64000, description = "Claude Sonnet 4.5 is Anthropic's agentic coding model.",
    inputs = { "text", "image", "file" }, tokenizer = "Claude", moderated = true,
    prompt = "0.000003", completion = "0.000015", image = "0.0048", cache_read = "0.0000003",
    params = params(TEXT_PARAMS, REASONING_PARAMS, { "top_k" }), cutoff = "2025-01-31",
    reasoning = { supported_efforts = { "high", "medium", "low" }, default_effort = "medium",
                  default_enabled = false, mandatory = false, supports_max_tokens = true } },
  model_entry { id = "google/gemini-2.5-flash", slug = "google/gemini-2.5-flash",
    name = "Google: Gemini 2.5 Flash", created = 1750172488, context = 1048576,
    max_output = 65535, description = "Gemini 2.5 Flash is Google's workhorse thinking model.",
    inputs = { "text", "image", "file", "audio" }, tokenizer = "Gemini",
    prompt = "0.0000003", completion = "0.0000025", image = "0.001238",
    cache_read = "0.000000075", params = params(TEXT_PARAMS, REASONING_PARAMS),
    cutoff = "2025-01-31",
    reasoning = { supported_efforts = { "high", "medium", "low" }, default_effort = "medium",
                  default_enabled = true, mandatory = false, supports_max_tokens = true } },
  model_entry { id = "deepseek/deepseek-r1", slug = "deepseek/deepseek-r1",
    name = "DeepSeek: R1", created = 1737381095, context = 163840,
    description = "DeepSeek R1 is an open reasoning model.", tokenizer = "DeepSeek",
    instruct_type = "deepseek-r1", prompt = "0.0000004", completion = "0.000002",
    params = params(TEXT_PARAMS, REASONING_PARAMS, SAMPLING_PARAMS), defaults = SAMPLING_DEFAULTS,
    reasoning = { supported_efforts = EMPTY_ARRAY, default_effort = null,
                  default_enabled = true, mandatory = true, supports_max_tokens = false } },
  model_entry { id = "meta-llama/llama-3.3-70b-instruct:free",
    slug = "meta-llama/llama-3.3-70b-instruct", name = "Meta: Llama 3.3 70B Instruct (free)",
    created = 1733506137, context = 131072, max_output = 4096,
    description = "Llama 3.3 70B Instruct, free variant (rate-limited).", tokenizer = "Llama3",
    instruct_type = "llama3", prompt = "0", completion = "0",
    params = params(TEXT_PARAMS, SAMPLING_PARAMS), defaults = SAMPLING_DEFAULTS },
  model_entry { id = "mistralai/mistral-small-3.2-24b-instruct",
    slug = "mistralai/mistral-small-3.2-24b-instruct-2506",
    name = "Mistral: Mistral Small 3.2 24B", created = 1750443016, context = 131072,
    description = "Mistral Small 3.2 is a 24B instruction-tuned model.",
    inputs = { "text", "image" }, tokenizer = "Mistral", prompt = "0.00000005",
    completion = "0.0000001", params = params(TEXT_PARAMS, SAMPLING_PARAMS) },
  model_entry { id = "qwen/qwen3-coder", slug = "qwen/qwen3-coder-480b-a35b-07-25",
    name = "Qwen: Qwen3 Coder 480B A35B", created = 1753230546, context = 262144,
    max_output = 262144, description = "Qwen3 Coder is a mixture-of-experts code model.",
    tokenizer = "Qwen3", prompt = "0.00000022", completion = "0.00000095",
    params = params(TEXT_PARAMS, SAMPLING_PARAMS), defaults = SAMPLING_DEFAULTS },
}

-- API keys. OpenRouter's are "sk-or-v1-" and 64 hex digits; the emulator takes any key that
-- looks like one: "sk-or-" then at least 8 characters of [A-Za-z0-9_-] ("sk-or-v1-...",
-- "sk-or-mgmt-...", "sk-or-async-spec"). Any other (malformed: "k", "sk-or-x", "sk-proj-...")
-- and the unknown ones, "sk-or-invalid...", get 401 "User not found." as OpenRouter answers a
-- key it does not know; no Authorization at all gets 401 "No auth credentials found".
local function well_formed_key(key)
  local rest = key:match("^sk%-or%-(.*)$")
  return rest ~= nil and #rest >= 8 and not rest:find("[^%w_%-]")
end

-- The API key of the request, or nil after answering 401.
local function authenticate(conn, req)
  local key = (req.headers["authorization"] or ""):match("^[Bb]earer%s+(%S+)")
  if not key then
    respond_json(conn, 401, error_body(401, "No auth credentials found"))
  elseif not well_formed_key(key) or key:find("^sk%-or%-invalid") then
    respond_json(conn, 401, error_body(401, "User not found."))
  else
    return key
  end
end

local function payment_required(conn, body)
  local requested = tonumber(body.max_tokens) and math.floor(body.max_tokens) or 64000
  respond_json(conn, 402, {
    error = { code = 402, metadata = { provider_name = null }, message =
      "This request requires more credits, or fewer max_tokens. You requested up to "
      .. requested .. " tokens, but can only afford 2666. To increase, visit "
      .. "https://openrouter.ai/settings/credits and upgrade to a paid account" },
    user_id = "user_emulator",
  })
end

-- The reason a decoded request body is unusable for `kind`, or nil when it is fine.
local function invalid_body(req, kind)
  local body = req.json
  if type(body) ~= "table" or not req.body:find("^%s*{") then
    return "Invalid request body: expected a JSON object"
  end
  if kind == "chat" and (type(body.messages) ~= "table" or #body.messages == 0) then
    return "messages: must be a non-empty array"
  end
  if kind == "completion" and (body.prompt == nil or body.prompt == null) then
    return "prompt: Required"
  end
end

local function new_context(conn, kind, body)
  local messages = kind == "chat" and body.messages or { { content = prompt_text(body.prompt) } }
  local prompt_words = 0
  for _, message in ipairs(messages) do
    if type(message) == "table" then
      prompt_words = prompt_words + count_words(content_text(message.content))
    end
  end
  local input = kind == "chat" and last_user_text(messages) or prompt_text(body.prompt)
  local reply = "Echo: " .. input
  return {
    conn = conn, kind = kind, body = body, stream = body.stream == true,
    model = type(body.model) == "string" and body.model or DEFAULT_MODEL,
    id = new_generation_id(), created = os.time(), input = input, reply = reply,
    prompt_tokens = math.max(1, prompt_words), completion_tokens = count_words(reply),
  }
end

-- Generation stats (GET /generation) are written a little after the request, as
-- OpenRouter's are: an immediate lookup gets a 404.
local GENERATION_DELAY = 0.3

local function record_generation(ctx, cancelled)
  local server = ctx.conn.server
  local prompt_cost, completion_cost = ctx.prompt_tokens * 0.00000015, ctx.completion_tokens * 0.0000006
  server.generations[ctx.id] = { ready_at = socket.gettime() + GENERATION_DELAY, ctx = ctx, data = {
    id = ctx.id, upstream_id = "chatcmpl-" .. ctx.id, model = ctx.model, provider_name = PROVIDER,
    created_at = os.date("!%Y-%m-%dT%H:%M:%S+00:00", ctx.created), streamed = ctx.stream,
    cancelled = cancelled, finish_reason = cancelled and null or "stop",
    native_finish_reason = cancelled and null or "stop", api_type = "completions",
    tokens_prompt = ctx.prompt_tokens, tokens_completion = ctx.completion_tokens,
    native_tokens_prompt = ctx.prompt_tokens, native_tokens_completion = ctx.completion_tokens,
    native_tokens_reasoning = 0, native_tokens_cached = 0,
    total_cost = prompt_cost + completion_cost, usage = prompt_cost + completion_cost,
    upstream_inference_cost = null, cache_discount = null, is_byok = false,
    latency = 120, moderation_latency = null, generation_time = 100,
    app_id = null, data_region = "global", router = null, origin = "", preset_id = null,
    service_tier = null, external_user = null, user_agent = null, http_referer = null,
    native_tokens_completion_images = 0, num_media_prompt = 0, num_input_audio_prompt = 0,
    num_media_completion = 0, num_search_results = 0, num_fetches = 0, web_search_engine = null,
    workspace_id = DEFAULT_WORKSPACE, request_id = "req-" .. ctx.id, session_id = null,
    provider_responses = { { id = "chatcmpl-" .. ctx.id, endpoint_id = "ep-emulator-openai",
      model_permaslug = ctx.model, provider_name = PROVIDER, is_byok = false, latency = 120,
      status = cancelled and null or 200 } },
  } }
end

local function inference(kind)
  return function(conn, req)
    local key = authenticate(conn, req)
    if not key then return end
    local problem = invalid_body(req, kind)
    if problem then return respond_json(conn, 400, error_body(400, problem)) end
    if key:find("^sk%-or%-broke") then return payment_required(conn, req.json) end
    local ctx = new_context(conn, kind, req.json)
    ctx.key = key
    local scenario, captures = pick_scenario(ctx.model)
    if not scenario then return invalid_model(ctx) end
    -- no pcall around it: Lua 5.1 cannot yield across one. A request the client walked
    -- out of ends the connection's coroutine; its cleanup records it as cancelled.
    conn.in_flight = ctx
    scenario.run(ctx, unpack(captures))
    conn.in_flight = nil
    record_generation(ctx, false)
  end
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

-- A management key (keys, workspaces, guardrails...): in the emulator, one whose text starts
-- with "sk-or-mgmt-".
local function is_management_key(key)
  return key:sub(1, 11) == "sk-or-mgmt-"
end

local function key_info(key)
  local management = is_management_key(key)
  local label = #key > 16 and (key:sub(1, 12) .. "..." .. key:sub(-3)) or "sk-or-..."
  return { data = {
    label = label, limit = 100, limit_remaining = 74.5, limit_reset = "monthly",
    include_byok_in_limit = false, usage = 25.5, usage_daily = 1.25, usage_weekly = 7.5,
    usage_monthly = 25.5, byok_usage = 0, byok_usage_daily = 0, byok_usage_weekly = 0,
    byok_usage_monthly = 0, is_free_tier = false, is_management_key = management,
    is_provisioning_key = management, expires_at = null, creator_user_id = "user_emulator",
    rate_limit = { requests = 1000, interval = "1h",
                   note = "This field is deprecated and safe to ignore." },
    allowed_data_regions = { "global", "europe", "us" },
    free_model_daily_requests = { limit = 1000, remaining = 998, used = 2 },
    organization_id = null, workspace_id = DEFAULT_WORKSPACE,
  } }
end

local function find_model(id)
  for _, m in ipairs(MODELS) do
    if m.id == id then return m end
  end
end

-- The two providers that serve a model, by its author: names of the description's list.
local ENDPOINT_PROVIDERS = {
  openai = { "OpenAI", "Azure" }, anthropic = { "Anthropic", "Amazon Bedrock" },
  google = { "Google AI Studio", "Google" }, deepseek = { "DeepSeek", "DeepInfra" },
  ["meta-llama"] = { "Groq", "Together" }, mistralai = { "Mistral", "DeepInfra" },
  qwen = { "Alibaba", "DeepInfra" },
}

-- GET /models/{author}/{slug}/endpoints: two providers per known model.
local function model_endpoints(conn, author, slug)
  local id = author .. "/" .. slug
  local m = find_model(id)
  if not m then return respond_json(conn, 404, error_body(404, "Model " .. id .. " not found")) end
  local providers = ENDPOINT_PROVIDERS[author] or { "OpenAI", "Azure" }
  local function endpoint(provider, tag, quantization, factor)
    return {
      name = provider .. ": " .. m.name, model_id = m.id, model_name = m.name,
      provider_name = provider, tag = tag, quantization = quantization, status = 0,
      context_length = m.context_length, max_completion_tokens = m.top_provider.max_completion_tokens,
      max_prompt_tokens = null,
      pricing = { prompt = m.pricing.prompt, completion = m.pricing.completion, request = "0", image = "0" },
      supported_parameters = m.supported_parameters, supports_implicit_caching = true,
      supports_tool_choice = { auto = true, none = true, required = true, ["function"] = true },
      supports_voice_cloning = false,
      uptime_last_5m = 100, uptime_last_30m = 99.5 * factor, uptime_last_1d = 99.8,
      latency_last_30m = { p50 = 0.25 * factor, p75 = 0.35, p90 = 0.48, p99 = 0.85 },
      throughput_last_30m = { p50 = 45.2 / factor, p75 = 38.5, p90 = 28.3, p99 = 15.1 },
    }
  end
  respond_json(conn, 200, { data = {
    id = m.id, name = m.name, created = m.created, description = m.description,
    architecture = m.architecture,
    endpoints = { endpoint(providers[1], providers[1]:lower():gsub("%W+", "-"), "fp16", 1),
                  endpoint(providers[2], providers[2]:lower():gsub("%W+", "-") .. "/eu", "fp8", 1.2) },
  } })
end

-- POST /embeddings: deterministic vectors; `emulator/embed:<dims>` picks the size (default 8).
local function embeddings(conn, req)
  local key = authenticate(conn, req)
  if not key then return end
  local body = req.json
  if type(body) ~= "table" then return respond_json(conn, 400, error_body(400, "Invalid JSON body")) end
  local input = body.input
  if type(input) == "string" then input = { input } end
  if type(input) ~= "table" or #input == 0 then
    return respond_json(conn, 400, error_body(400, "input must be a string or a non-empty array"))
  end
  local model = type(body.model) == "string" and body.model or "openai/text-embedding-3-small"
  if model:find("^missing/") then return respond_json(conn, 400, error_body(400, model .. " is not a valid model ID")) end
  local dims = tonumber(model:match("^emulator/embed:(%d+)$") or "8")
  local data, tokens = {}, 0
  for i, text in ipairs(input) do
    local vector = {}
    for j = 1, dims do vector[j] = math.sin(i * 1000 + j) * 0.5 end
    data[i] = { object = "embedding", index = i - 1, embedding = vector }
    tokens = tokens + count_words(type(text) == "string" and text or "")
  end
  local id = new_generation_id()
  respond_json(conn, 200, { id = id, object = "list", data = data, model = model, provider = PROVIDER,
    usage = { prompt_tokens = tokens, total_tokens = tokens, cost = tokens * 0.00000002 } },
    { { "X-Generation-Id", id } })
end

local API = {
  ["/models"] = { method = "GET", handler = function(conn)
    respond_json(conn, 200, { data = MODELS, total_count = #MODELS, links = { next = null } })
  end },
  ["/credits"] = { method = "GET", handler = function(conn, req)
    if not authenticate(conn, req) then return end
    respond_json(conn, 200, { data = { total_credits = 100.5, total_usage = 25.75 } })
  end },
  ["/chat/completions"] = { method = "POST", handler = inference("chat") },
  ["/completions"] = { method = "POST", handler = inference("completion") },
  ["/embeddings"] = { method = "POST", handler = embeddings },
  ["/key"] = { method = "GET", handler = function(conn, req)
    local key = authenticate(conn, req)
    if key then respond_json(conn, 200, key_info(key)) end
  end },
  ["/generation"] = { method = "GET", handler = function(conn, req)
    if not authenticate(conn, req) then return end
    local id = parse_query(req.query).id
    local g = id and conn.server.generations[id]
    if not g or socket.gettime() < g.ready_at then
      return respond_json(conn, 404, error_body(404, "Generation " .. tostring(id) .. " not found"))
    end
    respond_json(conn, 200, { data = g.data })
  end },
}

-- Routes with parameters in the path: { pattern, method, handler(conn, req, captures...) }.
local API_PATTERNS = {
  { "^/models/([^/]+)/([^/]+)/endpoints$", "GET", function(conn, req, author, slug)
    local function decode(x) return (x:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
    model_endpoints(conn, decode(author), decode(slug))
  end },
}

---------------------------------------------------------------------------------------------
-- Audio (text to speech, speech to text) and API key provisioning: POST /audio/speech, POST
-- /audio/transcriptions, /keys and /keys/{hash} (spec/emulator_routes_spec.lua)
---------------------------------------------------------------------------------------------

local function bad_request(conn, message)
  respond_json(conn, 400, error_body(400, message))
end

-- The decoded JSON object of the request, or nil after answering 400.
local function json_object_body(conn, req)
  if type(req.json) ~= "table" or not req.body:find("^%s*{") then
    bad_request(conn, "Invalid request body: expected a JSON object")
    return nil
  end
  return req.json
end

-- The model's problem as a 400 answer (true), or nil when the id is one to accept.
local function refuse_model(conn, model)
  if type(model) ~= "string" or model == "" then
    bad_request(conn, "model: Required")
    return true
  end
  if model:find("^missing/") then
    bad_request(conn, model .. " is not a valid model ID")
    return true
  end
end

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

-- API key provisioning: a management key (sk-or-mgmt-...) only; keys live per server until
-- POST /_emulator/reset. Hashes and secrets are deterministic from the order of creation.
local LIMIT_RESETS = { daily = true, weekly = true, monthly = true }

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

local function iso_now()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local function key_store(server)
  if not server.keys then server.keys = { list = {}, by_hash = {}, count = 0 } end
  return server.keys
end

-- The key of a request that may manage keys, or nil after answering 401 or 403.
local function management_key(conn, req)
  local key = authenticate(conn, req)
  if not key then return nil end
  if not is_management_key(key) then
    respond_json(conn, 403, error_body(403, "Only management keys can perform this operation"))
    return nil
  end
  return key
end

local function nullable(value, kind)
  return value == nil or value == null or type(value) == kind
end

-- The reason a create (POST) or update (PATCH) body is unusable, or nil.
local function invalid_key_fields(body, creating)
  if creating and (type(body.name) ~= "string" or body.name == "") then
    return "name: Required (a non-empty string)"
  end
  if not creating and body.name ~= nil and type(body.name) ~= "string" then
    return "name: must be a string"
  end
  if not nullable(body.limit, "number") then return "limit: must be a number or null" end
  if not (nullable(body.limit_reset, "nil") or LIMIT_RESETS[body.limit_reset]) then
    return "limit_reset: must be daily, weekly, monthly or null"
  end
  if body.include_byok_in_limit ~= nil and type(body.include_byok_in_limit) ~= "boolean" then
    return "include_byok_in_limit: must be a boolean"
  end
  if creating then
    local expires = body.expires_at
    if not (nullable(expires, "nil") or (type(expires) == "string"
        and expires:find("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.?%d*Z$"))) then
      return "expires_at: must be an ISO 8601 UTC timestamp (ending in Z) or null"
    end
    if not (nullable(body.creator_user_id, "nil") or (type(body.creator_user_id) == "string"
        and body.creator_user_id ~= "")) then
      return "creator_user_id: must be a non-empty string or null"
    end
    if body.workspace_id ~= nil and type(body.workspace_id) ~= "string" then
      return "workspace_id: must be a string"
    end
  elseif body.disabled ~= nil and type(body.disabled) ~= "boolean" then
    return "disabled: must be a boolean"
  end
end

local function new_key(store, body)
  store.count = store.count + 1
  local secret = "sk-or-v1-" .. hex_id("emulator-secret-" .. store.count)
  local limit = type(body.limit) == "number" and body.limit or null
  local record = {
    hash = hex_id("emulator-key-" .. store.count), name = body.name,
    label = secret:sub(1, 12) .. "..." .. secret:sub(-4), disabled = false,
    limit = limit, limit_remaining = limit,
    limit_reset = type(body.limit_reset) == "string" and body.limit_reset or null,
    include_byok_in_limit = body.include_byok_in_limit == true,
    usage = 0, usage_daily = 0, usage_weekly = 0, usage_monthly = 0,
    byok_usage = 0, byok_usage_daily = 0, byok_usage_weekly = 0, byok_usage_monthly = 0,
    created_at = iso_now(), updated_at = null,
    expires_at = type(body.expires_at) == "string" and body.expires_at or null,
    creator_user_id = type(body.creator_user_id) == "string" and body.creator_user_id
      or "user_emulator",
    workspace_id = body.workspace_id or DEFAULT_WORKSPACE, external_user = null,
  }
  store.list[#store.list + 1] = record
  store.by_hash[record.hash] = record
  return record, secret
end

-- GET /keys (?include_disabled=true|false, ?offset=N, ?workspace_id=) and POST /keys.
local function keys_collection(conn, req)
  if not management_key(conn, req) then return end
  local store = key_store(conn.server)
  if req.method == "POST" then
    local body = json_object_body(conn, req)
    if not body then return end
    local problem = invalid_key_fields(body, true)
    if problem then return bad_request(conn, problem) end
    local record, secret = new_key(store, body)
    return respond_json(conn, 201, { data = record, key = secret })
  end
  local query = parse_query(req.query)
  local include_disabled = query.include_disabled
  if include_disabled ~= nil and include_disabled ~= "true" and include_disabled ~= "false" then
    return bad_request(conn, "include_disabled: must be true or false")
  end
  if query.offset ~= nil and not query.offset:match("^%d+$") then
    return bad_request(conn, "offset: must be an integer >= 0")
  end
  local workspace, data = query.workspace_id or DEFAULT_WORKSPACE, {}
  for _, record in ipairs(store.list) do
    if record.workspace_id == workspace and (include_disabled == "true" or not record.disabled) then
      data[#data + 1] = record
    end
  end
  local page = {}
  for i = tonumber(query.offset or "0") + 1, #data do page[#page + 1] = data[i] end
  respond_json(conn, 200, { data = json_array(page) })
end

-- GET, PATCH and DELETE /keys/{hash}.
local function key_by_hash(conn, req, hash)
  if not management_key(conn, req) then return end
  local store = key_store(conn.server)
  local record = store.by_hash[hash]
  if not record then return respond_json(conn, 404, error_body(404, "Key not found")) end
  if req.method == "GET" then return respond_json(conn, 200, { data = record }) end
  if req.method == "DELETE" then
    store.by_hash[hash] = nil
    for i, r in ipairs(store.list) do
      if r == record then table.remove(store.list, i) break end
    end
    return respond_json(conn, 200, { deleted = true })
  end
  local body = json_object_body(conn, req)
  if not body then return end
  local problem = invalid_key_fields(body, false)
  if problem then return bad_request(conn, problem) end
  if body.name ~= nil then record.name = body.name end
  if body.disabled ~= nil then record.disabled = body.disabled end
  if body.include_byok_in_limit ~= nil then
    record.include_byok_in_limit = body.include_byok_in_limit
  end
  if body.limit ~= nil then
    record.limit = body.limit
    record.limit_remaining = body.limit == null and null or body.limit - record.usage
  end
  if body.limit_reset ~= nil then record.limit_reset = body.limit_reset end
  record.updated_at = iso_now()
  respond_json(conn, 200, { data = record })
end

API["/audio/speech"] = { method = "POST", handler = audio_speech }
API["/audio/transcriptions"] = { method = "POST", handler = audio_transcriptions }
API["/keys"] = { method = "GET, POST", handler = keys_collection }
API_PATTERNS[#API_PATTERNS + 1] = { "^/keys/([^/]+)$", "GET, PATCH, DELETE", key_by_hash }

---------------------------------------------------------------------------------------------
-- More of the API (spec/api_more_spec.lua): the model catalogue (GET /models/user,
-- /models/count, /model/{author}/{slug}, /embeddings/models, /providers, /endpoints/zdr),
-- GET /generation/content, POST /images, POST /rerank, POST /responses, and OAuth PKCE (the
-- authorization page at the site root, GET /auth, and POST /auth/keys)
---------------------------------------------------------------------------------------------

-- A function of its own, so that its locals do not count against the main chunk's limit of
-- 200 (Lua 5.1 allows 60 upvalues: it uses about 30); it returns the authorization page,
-- answered from route_request.
local authorization_page = (function()

-- Embedding models, shaped as GET /models entries whose output is embeddings.
local EMBEDDING_MODELS = {}
for i, m in ipairs({
  { id = "openai/text-embedding-3-small", name = "OpenAI: Text Embedding 3 Small",
    created = 1706140800, context = 8192, prompt = "0.00000002" },
  { id = "openai/text-embedding-3-large", name = "OpenAI: Text Embedding 3 Large",
    created = 1706140800, context = 8192, prompt = "0.00000013" },
  { id = "qwen/qwen3-embedding-8b", name = "Qwen: Qwen3 Embedding 8B", created = 1749513600,
    context = 32768, prompt = "0.00000001" },
}) do
  local entry = model_entry { id = m.id, slug = m.id, name = m.name, created = m.created,
    description = m.name .. " turns text into vectors.", context = m.context,
    tokenizer = i == 3 and "Qwen3" or "GPT", prompt = m.prompt, completion = "0",
    params = EMPTY_ARRAY }
  entry.architecture.modality = "text->embeddings"
  entry.architecture.output_modalities = { "embeddings" }
  EMBEDDING_MODELS[i] = entry
end

-- Providers, by names the description's ProviderName lists.
local PROVIDERS = {}
for i, p in ipairs({
  { "OpenAI", "openai", "openai.com", "US", { "US" } },
  { "Anthropic", "anthropic", "anthropic.com", "US", { "US" } },
  { "Google", "google-vertex", "cloud.google.com", "US", { "US", "BE", "NL" } },
  { "Mistral", "mistral", "mistral.ai", "FR", { "FR", "SE" } },
  { "DeepSeek", "deepseek", "deepseek.com", "CN", { "CN" } },
  { "Together", "together", "together.ai", "US", { "US" } },
  { "Cohere", "cohere", "cohere.com", "CA", { "US", "CA" } },
  { "Amazon Bedrock", "amazon-bedrock", "aws.amazon.com", "US", { "US", "DE", "JP" } },
}) do
  PROVIDERS[i] = { name = p[1], slug = p[2], privacy_policy_url = "https://" .. p[3] .. "/privacy",
    terms_of_service_url = "https://" .. p[3] .. "/terms", status_page_url = "https://status." .. p[3],
    headquarters = p[4], datacenters = p[5] }
end

-- Endpoints that keep zero data: { model id, provider, tag, quantization }.
local ZDR_ENDPOINTS = {
  { "openai/gpt-4o-mini", "OpenAI", "openai", "unknown" },
  { "anthropic/claude-sonnet-4.5", "Amazon Bedrock", "amazon-bedrock", "unknown" },
  { "google/gemini-2.5-flash", "Google", "google-vertex", "unknown" },
  { "mistralai/mistral-small-3.2-24b-instruct", "Mistral", "mistral", "bf16" },
  { "qwen/qwen3-coder", "Together", "together/fp8", "fp8" },
}

local function zdr_endpoint(e)
  local m = find_model(e[1])
  return {
    name = e[2] .. " | " .. m.id, model_id = m.id, model_name = m.name, provider_name = e[2],
    tag = e[3], quantization = e[4], status = 0, context_length = m.context_length,
    max_completion_tokens = m.top_provider.max_completion_tokens, max_prompt_tokens = null,
    pricing = { prompt = m.pricing.prompt, completion = m.pricing.completion, request = "0",
                image = m.pricing.image },
    supported_parameters = m.supported_parameters, supports_implicit_caching = true,
    supports_tool_choice = { auto = true, none = true, required = true, ["function"] = true },
    supports_voice_cloning = false,
    uptime_last_5m = 100, uptime_last_30m = 99.5, uptime_last_1d = 99.8,
    latency_last_30m = { p50 = 0.25, p75 = 0.35, p90 = 0.48, p99 = 0.85 },
    throughput_last_30m = { p50 = 45.2, p75 = 38.5, p90 = 28.3, p99 = 15.1 },
  }
end

-- A ModelsListResponse of `list`, paged by ?offset= and ?limit= (the whole list when both are
-- absent); nil after answering 400 for a bad one.
local function models_page(conn, req, list, path)
  local query = parse_query(req.query)
  if query.offset ~= nil and not query.offset:match("^%d+$") then
    return bad_request(conn, "offset: must be an integer >= 0")
  end
  local limit = query.limit and tonumber(query.limit:match("^%d+$") or "")
  if query.limit ~= nil and not (limit and limit >= 1 and limit <= 1000) then
    return bad_request(conn, "limit: must be an integer from 1 to 1000")
  end
  local body = { data = json_array(list), total_count = #list, links = { next = null } }
  if query.offset == nil and query.limit == nil then return respond_json(conn, 200, body) end
  local offset, page = tonumber(query.offset or "0"), {}
  limit = limit or 500
  for i = offset + 1, math.min(offset + limit, #list) do page[#page + 1] = list[i] end
  body.data = json_array(page)
  if offset + limit < #list then
    body.links.next = ("/api/v1%s?offset=%d&limit=%d"):format(path, offset + limit, limit)
  end
  respond_json(conn, 200, body)
end

-- GET /models/user: the models the key's privacy settings allow. The emulator's user keeps
-- providers that may train on prompts out, so the free models (which do) are missing.
local function user_models(conn, req)
  if not authenticate(conn, req) then return end
  local list = {}
  for _, m in ipairs(MODELS) do
    if not m.id:find(":free$") then list[#list + 1] = m end
  end
  models_page(conn, req, list, "/models/user")
end

local OUTPUT_MODALITIES = { text = true, image = true, audio = true, embeddings = true }

-- GET /models/count?output_modalities=text,image|all (default text).
local function count_models(conn, req)
  local wanted, all = {}, false
  local value = parse_query(req.query).output_modalities or "text"
  for name in (value .. ","):gmatch("([^,]*),") do
    if name == "all" then
      all = true
    elseif OUTPUT_MODALITIES[name] then
      wanted[name] = true
    else
      return bad_request(conn, "output_modalities: '" .. name .. "' is not one of text, image, "
        .. "audio, embeddings, all")
    end
  end
  local count = 0
  for _, list in ipairs({ MODELS, EMBEDDING_MODELS }) do
    for _, m in ipairs(list) do
      local hit = all
      for _, modality in ipairs(m.architecture.output_modalities) do hit = hit or wanted[modality] end
      if hit then count = count + 1 end
    end
  end
  respond_json(conn, 200, { data = { count = count } })
end

-- GET /model/{author}/{slug}: one model (chat or embeddings), 404 for an unknown one.
local function one_model(conn, _, author, slug)
  local function decode(x) return (x:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
  local id = decode(author) .. "/" .. decode(slug)
  local m = find_model(id)
  for _, e in ipairs(EMBEDDING_MODELS) do
    if e.id == id then m = e end
  end
  if not m then return respond_json(conn, 404, error_body(404, "Model " .. id .. " not found")) end
  respond_json(conn, 200, { data = m })
end

-- GET /generation/content?id=: what was asked and answered; 404 until the stats are written,
-- as GET /generation. record_generation keeps the request's context for it.
local function generation_content(conn, req)
  if not authenticate(conn, req) then return end
  local id = parse_query(req.query).id
  local g = id and conn.server.generations[id]
  if not g or socket.gettime() < g.ready_at then
    return respond_json(conn, 404, error_body(404, "Generation " .. tostring(id) .. " not found"))
  end
  local ctx = g.ctx or {}
  local body = ctx.body or {}
  local input
  if ctx.kind == "completion" then
    input = { prompt = prompt_text(body.prompt) }
  else
    input = { messages = type(body.messages) == "table" and json_array(body.messages) or EMPTY_ARRAY }
  end
  respond_json(conn, 200, { data = {
    input = input,
    output = { completion = (ctx.reply and not ctx.tool_calls) and ctx.reply or null,
               reasoning = ctx.reasoning and REASONING_TEXT or null },
    error = null,
  } })
end

-- POST /images: every image is the same 1x1 PNG (a half-transparent green pixel), whatever
-- output_format asks; media_type says so.
local TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
local IMAGE_FORMATS = { png = true, jpeg = true, webp = true, svg = true }

local function images(conn, req)
  if not authenticate(conn, req) then return end
  local body = json_object_body(conn, req)
  if not body or refuse_model(conn, body.model) then return end
  if type(body.prompt) ~= "string" or body.prompt == "" then return bad_request(conn, "prompt: Required") end
  local n = body.n == nil and 1 or body.n
  if type(n) ~= "number" or n % 1 ~= 0 or n < 1 or n > 10 then
    return bad_request(conn, "n: must be an integer from 1 to 10")
  end
  if body.output_format ~= nil and not IMAGE_FORMATS[body.output_format] then
    return bad_request(conn, "output_format: must be png, jpeg, webp or svg")
  end
  local data = {}
  for i = 1, n do data[i] = { b64_json = TINY_PNG, media_type = "image/png" } end
  local prompt_tokens, completion_tokens = math.max(1, count_words(body.prompt)), 1290 * n
  respond_json(conn, 200, { created = os.time(), data = data, usage = {
    prompt_tokens = prompt_tokens, completion_tokens = completion_tokens,
    total_tokens = prompt_tokens + completion_tokens, cost = 0.04 * n, is_byok = false,
    completion_tokens_details = { image_tokens = completion_tokens, reasoning_tokens = 0 },
  } }, { { "X-Generation-Id", new_generation_id() } })
end

-- POST /rerank: a document's relevance_score is the share of the query's words it holds
-- (case-insensitive); results best first, ties by index; top_n keeps the first n.
local function words_of(text)
  local set, n = {}, 0
  for w in text:lower():gmatch("%w+") do
    if not set[w] then set[w], n = true, n + 1 end
  end
  return set, n
end

local function rerank(conn, req)
  if not authenticate(conn, req) then return end
  local body = json_object_body(conn, req)
  if not body or refuse_model(conn, body.model) then return end
  if type(body.query) ~= "string" or body.query == "" then return bad_request(conn, "query: Required") end
  local docs = body.documents
  if type(docs) ~= "table" or #docs == 0 then
    return bad_request(conn, "documents: must be a non-empty array")
  end
  if body.top_n ~= nil and (type(body.top_n) ~= "number" or body.top_n % 1 ~= 0 or body.top_n < 1) then
    return bad_request(conn, "top_n: must be an integer >= 1")
  end
  local query_words, query_count = words_of(body.query)
  local results, tokens = {}, count_words(body.query)
  for i, doc in ipairs(docs) do
    local document = type(doc) == "string" and { text = doc } or doc
    if type(document) ~= "table" or (document.text ~= nil and type(document.text) ~= "string")
        or (document.image ~= nil and type(document.image) ~= "string") then
      return bad_request(conn, ("documents[%d]: must be a string or { text, image }"):format(i - 1))
    end
    local hits = 0
    for w in pairs(words_of(document.text or "")) do
      if query_words[w] then hits = hits + 1 end
    end
    tokens = tokens + count_words(document.text or "")
    results[i] = { index = i - 1, relevance_score = query_count > 0 and hits / query_count or 0,
                   document = document }
  end
  table.sort(results, function(a, b)
    if a.relevance_score ~= b.relevance_score then return a.relevance_score > b.relevance_score end
    return a.index < b.index
  end)
  for i = #results, (body.top_n or #results) + 1, -1 do results[i] = nil end
  local id = new_generation_id()
  respond_json(conn, 200, { id = id, model = body.model, provider = "Cohere", results = results,
    usage = { search_units = 1, total_tokens = tokens, cost = 0.002 } },
    { { "X-Generation-Id", id } })
end

-- POST /responses (the Responses API): "Echo: <the last user input>" as an OpenResponsesResult,
-- or streamed as the typed events of ResponsesStreamingResponse, each an `event: <type>` line
-- and a `data:` JSON line with `type` and `sequence_number`, then `data: [DONE]`.
local RESPONSE_FAILURES = { ["response-error"] = "error", ["response-failed"] = "failed" }
local RESPONSE_FAILURE_MESSAGE = "The provider stopped responding"

-- The text of the last user input: a string, or the input_text parts of an item's content.
local function responses_input_text(input)
  if type(input) == "string" then return input end
  for i = #(type(input) == "table" and input or {}), 1, -1 do
    local item = input[i]
    if type(item) == "table" and (item.role == "user" or item.role == nil) then
      if type(item.content) == "string" then return item.content end
      local texts = {}
      for _, part in ipairs(type(item.content) == "table" and item.content or {}) do
        if type(part) == "table" and (part.type == "input_text" or part.type == "text")
            and type(part.text) == "string" then
          texts[#texts + 1] = part.text
        end
      end
      if #texts > 0 then return table.concat(texts, " ") end
    end
  end
  return ""
end

local function output_message(ctx, text, status)
  return { type = "message", id = "msg_" .. ctx.id, role = "assistant", status = status,
    content = { { type = "output_text", text = text, annotations = EMPTY_ARRAY, logprobs = EMPTY_ARRAY } } }
end

-- The response object; `text` (nil: no output yet) is the message's text so far.
local function response_object(ctx, status, text)
  local p = ctx.params
  local function field(name) return p[name] == nil and null or p[name] end
  local prompt_cost, output_cost = ctx.prompt_tokens * 0.00000015, ctx.completion_tokens * 0.0000006
  local completed = status == "completed"
  return {
    id = ctx.id, object = "response", created_at = ctx.created,
    completed_at = completed and os.time() or null, model = ctx.model, status = status,
    output = text and { output_message(ctx, text, completed and "completed"
      or status == "in_progress" and "in_progress" or "incomplete") } or EMPTY_ARRAY,
    error = null, incomplete_details = null, instructions = field("instructions"),
    metadata = field("metadata"), temperature = field("temperature"), top_p = field("top_p"),
    presence_penalty = field("presence_penalty"), frequency_penalty = field("frequency_penalty"),
    max_output_tokens = field("max_output_tokens"),
    tools = type(p.tools) == "table" and json_array(p.tools) or EMPTY_ARRAY,
    tool_choice = p.tool_choice == nil and "auto" or p.tool_choice,
    parallel_tool_calls = p.parallel_tool_calls ~= false,
    usage = completed and {
      input_tokens = ctx.prompt_tokens, input_tokens_details = { cached_tokens = 0 },
      output_tokens = ctx.completion_tokens, output_tokens_details = { reasoning_tokens = 0 },
      total_tokens = ctx.prompt_tokens + ctx.completion_tokens, cost = prompt_cost + output_cost,
      is_byok = false, cost_details = { upstream_inference_cost = null,
        upstream_inference_input_cost = prompt_cost, upstream_inference_output_cost = output_cost },
    } or nil, -- absent until the end: the description's Usage is not nullable
  }
end

local function failed_response(ctx, text)
  local r = response_object(ctx, "failed", text)
  r.error = { code = "server_error", message = RESPONSE_FAILURE_MESSAGE }
  return r
end

-- The events of a streamed response; `failure` ("error" or "failed") cuts it after two deltas.
local function responses_events(ctx, failure)
  local seq, item_id, text, deltas = -1, "msg_" .. ctx.id, "", 0
  local function send(event)
    seq = seq + 1
    event.sequence_number = seq
    write_chunk(ctx.conn, "event: " .. event.type .. "\ndata: " .. json_encode(event) .. "\n\n")
  end
  local function part(t)
    return { type = "output_text", text = t, annotations = EMPTY_ARRAY, logprobs = EMPTY_ARRAY }
  end
  open_stream(ctx)
  send { type = "response.created", response = response_object(ctx, "in_progress") }
  send { type = "response.in_progress", response = response_object(ctx, "in_progress") }
  local item = output_message(ctx, "", "in_progress")
  item.content = EMPTY_ARRAY
  send { type = "response.output_item.added", output_index = 0, item = item }
  send { type = "response.content_part.added", item_id = item_id, output_index = 0,
         content_index = 0, part = part("") }
  for piece in pieces(ctx.reply) do
    if failure and deltas == 2 then break end
    send { type = "response.output_text.delta", item_id = item_id, output_index = 0,
           content_index = 0, delta = piece, logprobs = EMPTY_ARRAY }
    text, deltas = text .. piece, deltas + 1
  end
  if failure == "error" then
    send { type = "error", code = "server_error", message = RESPONSE_FAILURE_MESSAGE, param = null }
  elseif failure == "failed" then
    send { type = "response.failed", response = failed_response(ctx, text) }
  else
    send { type = "response.output_text.done", item_id = item_id, output_index = 0,
           content_index = 0, text = ctx.reply, logprobs = EMPTY_ARRAY }
    send { type = "response.content_part.done", item_id = item_id, output_index = 0,
           content_index = 0, part = part(ctx.reply) }
    send { type = "response.output_item.done", output_index = 0,
           item = output_message(ctx, ctx.reply, "completed") }
    send { type = "response.completed", response = response_object(ctx, "completed", ctx.reply) }
    write_chunk(ctx.conn, "data: [DONE]\n\n")
  end
  write(ctx.conn, "0\r\n\r\n")
end

local function responses(conn, req)
  if not authenticate(conn, req) then return end
  local body = json_object_body(conn, req)
  if not body then return end
  if body.input ~= nil and type(body.input) ~= "string" and type(body.input) ~= "table" then
    return bad_request(conn, "input: must be a string or an array of input items")
  end
  local text = responses_input_text(body.input)
  local messages = { { role = "user", content = text } }
  local ctx = new_context(conn, "chat", { model = body.model, stream = body.stream,
                                          messages = messages })
  ctx.params = body
  local name = ctx.model:match("^emulator/([%w%-]+)$")
  local failure = name and RESPONSE_FAILURES[name]
  if ctx.model:find("^missing/") or (ctx.model:find("^emulator/") and not failure) then
    return invalid_model(ctx)
  end
  conn.in_flight = ctx
  if ctx.stream then
    responses_events(ctx, failure)
  elseif failure == "error" then
    respond_json(conn, 502, error_body(502, RESPONSE_FAILURE_MESSAGE))
  elseif failure == "failed" then
    respond_json(conn, 200, failed_response(ctx, nil), { { "X-Generation-Id", ctx.id } })
  else
    respond_json(conn, 200, response_object(ctx, "completed", ctx.reply), { { "X-Generation-Id", ctx.id } })
  end
  conn.in_flight = nil
  record_generation(ctx, false)
end

-- SHA-256 (FIPS 180-4) in plain arithmetic on 32-bit words held in numbers: Lua 5.1 has no
-- bit operations. Slow, and only ever given a PKCE verifier (43 to 128 bytes).
local XOR4, AND4 = {}, {}
for x = 0, 15 do
  for y = 0, 15 do
    local xo, an, p, q, bit = 0, 0, x, y, 1
    for _ = 1, 4 do
      local pb, qb = p % 2, q % 2
      if pb ~= qb then xo = xo + bit end
      if pb + qb == 2 then an = an + bit end
      p, q, bit = (p - pb) / 2, (q - qb) / 2, bit * 2
    end
    XOR4[x * 16 + y], AND4[x * 16 + y] = xo, an
  end
end

local function bitwise(t, a, b)
  local r, m = 0, 1
  for _ = 1, 8 do
    local x, y = a % 16, b % 16
    r = r + t[x * 16 + y] * m
    a, b, m = (a - x) / 16, (b - y) / 16, m * 16
  end
  return r
end

local function bxor(a, b, c)
  local r = bitwise(XOR4, a, b)
  if c then r = bitwise(XOR4, r, c) end
  return r
end

local function band(a, b) return bitwise(AND4, a, b) end
local function rshift(x, n) return math.floor(x / 2 ^ n) end
local function rrotate(x, n) return rshift(x, n) + (x % 2 ^ n) * 2 ^ (32 - n) end

local SHA256_K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function sha256(msg)
  local len, W32 = #msg, 2 ^ 32
  local bits = len * 8
  local tail = {}
  for i = 8, 1, -1 do
    tail[i] = string.char(bits % 256)
    bits = math.floor(bits / 256)
  end
  msg = msg .. "\128" .. string.rep("\0", (55 - len) % 64) .. table.concat(tail)
  local H = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
              0x5be0cd19 }
  for block = 1, #msg, 64 do
    local w = {}
    for i = 0, 15 do
      local a, b, c, d = msg:byte(block + 4 * i, block + 4 * i + 3)
      w[i] = ((a * 256 + b) * 256 + c) * 256 + d
    end
    for i = 16, 63 do
      local s0 = bxor(rrotate(w[i - 15], 7), rrotate(w[i - 15], 18), rshift(w[i - 15], 3))
      local s1 = bxor(rrotate(w[i - 2], 17), rrotate(w[i - 2], 19), rshift(w[i - 2], 10))
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) % W32
    end
    local a, b, c, d, e, f, g, h = unpack(H)
    for i = 0, 63 do
      local s1 = bxor(rrotate(e, 6), rrotate(e, 11), rrotate(e, 25))
      local ch = bxor(band(e, f), band(W32 - 1 - e, g))
      local t1 = (h + s1 + ch + SHA256_K[i + 1] + w[i]) % W32
      local s0 = bxor(rrotate(a, 2), rrotate(a, 13), rrotate(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      h, g, f, e, d, c, b, a = g, f, e, (d + t1) % W32, c, b, a, (t1 + s0 + maj) % W32
    end
    local v = { a, b, c, d, e, f, g, h }
    for i = 1, 8 do H[i] = (H[i] + v[i]) % W32 end
  end
  local out = {}
  for i = 1, 8 do
    local x = H[i]
    out[i] = string.char(math.floor(x / 16777216) % 256, math.floor(x / 65536) % 256,
                         math.floor(x / 256) % 256, x % 256)
  end
  return table.concat(out)
end

local B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

-- base64url without padding (RFC 4648, 5), as PKCE's S256 challenge is written.
local function base64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function digit(k) return B64URL:sub(k + 1, k + 1) end
    out[#out + 1] = digit(math.floor(n / 262144)) .. digit(math.floor(n / 4096) % 64)
      .. (b and digit(math.floor(n / 64) % 64) or "") .. (c and digit(n % 64) or "")
  end
  return table.concat(out)
end

local CHALLENGE_METHODS = { S256 = true, plain = true }

local function auth_store(server)
  if not server.auth then server.auth = { codes = {}, count = 0, keys = 0 } end
  return server.auth
end

-- GET {site root}/auth?callback_url=...&code_challenge=...&code_challenge_method=S256: the
-- authorization page, where a signed-in user always approves. 302 to callback_url with
-- ?code= (or &code=); 400 for a missing or non-http(s) callback_url or a bad method.
local function authorization_page(conn, req)
  if req.method ~= "GET" then
    return respond_json(conn, 405, error_body(405, "Method Not Allowed"), { { "Allow", "GET" } })
  end
  local query = parse_query(req.query)
  local callback, challenge = query.callback_url, query.code_challenge
  if not callback or not callback:find("^https?://[^%s]+$") then
    return bad_request(conn, "callback_url: must be an http or https URL")
  end
  local method = query.code_challenge_method
  if method ~= nil and not CHALLENGE_METHODS[method] then
    return bad_request(conn, "code_challenge_method: must be S256 or plain")
  end
  if challenge == "" then challenge = nil end
  if method and not challenge then return bad_request(conn, "code_challenge: Required") end
  local store = auth_store(conn.server)
  store.count = store.count + 1
  local code = "emu-code-" .. hex_id("emulator-code-" .. store.count):sub(1, 24)
  store.codes[code] = { challenge = challenge, method = challenge and (method or "plain") }
  local location = callback .. (callback:find("?", 1, true) and "&" or "?") .. "code=" .. code
  respond(conn, 302, "text/html", '<a href="' .. location .. '">Redirecting</a>',
    { { "Location", location } })
end

-- POST /auth/keys { code, code_verifier, code_challenge_method }: no API key needed. 400 for a
-- malformed body, a missing verifier or a method other than the authorization's; 403 for an
-- unknown or used code or a verifier that does not match the challenge. 200 { key, user_id }.
local function exchange_code(conn, req)
  local body = json_object_body(conn, req)
  if not body then return end
  if type(body.code) ~= "string" or body.code == "" then return bad_request(conn, "code: Required") end
  local method = body.code_challenge_method
  if not (nullable(method, "nil") or CHALLENGE_METHODS[method]) then
    return bad_request(conn, "code_challenge_method: must be S256, plain or null")
  end
  if body.code_verifier ~= nil and type(body.code_verifier) ~= "string" then
    return bad_request(conn, "code_verifier: must be a string")
  end
  local store = auth_store(conn.server)
  local grant = store.codes[body.code]
  if not grant or grant.used then
    return respond_json(conn, 403, error_body(403, "Invalid or expired authorization code"))
  end
  if grant.challenge then
    if type(body.code_verifier) ~= "string" then
      return bad_request(conn, "code_verifier: Required (the authorization had a code_challenge)")
    end
    if type(method) == "string" and method ~= grant.method then
      return bad_request(conn, "code_challenge_method: the authorization used " .. grant.method)
    end
    local verifier = body.code_verifier
    local derived = grant.method == "S256" and base64url(sha256(verifier)) or verifier
    if derived ~= grant.challenge then
      return respond_json(conn, 403, error_body(403, "Invalid code_verifier"))
    end
  end
  grant.used = true
  store.keys = store.keys + 1
  respond_json(conn, 200, { key = "sk-or-v1-" .. hex_id("emulator-oauth-key-" .. store.keys),
                            user_id = "user_emulator" })
end

API["/models/user"] = { method = "GET", handler = user_models }
API["/models/count"] = { method = "GET", handler = count_models }
API["/embeddings/models"] = { method = "GET", handler = function(conn, req)
  models_page(conn, req, EMBEDDING_MODELS, "/embeddings/models")
end }
API["/providers"] = { method = "GET", handler = function(conn)
  respond_json(conn, 200, { data = PROVIDERS })
end }
API["/endpoints/zdr"] = { method = "GET", handler = function(conn)
  local data = {}
  for i, e in ipairs(ZDR_ENDPOINTS) do data[i] = zdr_endpoint(e) end
  respond_json(conn, 200, { data = data })
end }
API["/generation/content"] = { method = "GET", handler = generation_content }
API["/images"] = { method = "POST", handler = images }
API["/rerank"] = { method = "POST", handler = rerank }
API["/responses"] = { method = "POST", handler = responses }
API["/auth/keys"] = { method = "POST", handler = exchange_code }
API_PATTERNS[#API_PATTERNS + 1] = { "^/model/([^/]+)/([^/]+)$", "GET", one_model }

return authorization_page
end)()

---------------------------------------------------------------------------------------------
-- Control endpoints (not recorded)
---------------------------------------------------------------------------------------------

local CONTROL = {
  requests = { method = "GET", handler = function(conn)
    respond_json(conn, 200, json_array(conn.server.log))
  end },
  reset = { method = "POST", handler = function(conn)
    local server = conn.server
    server.log, server.seq, server.fail_counts, server.generations = {}, 0, {}, {}
    server.keys = nil -- the keys made by POST /keys
    server.auth = nil -- the codes of GET /auth and the keys of POST /auth/keys
    respond_json(conn, 200, { ok = true })
  end },
  shutdown = { method = "POST", handler = function(conn)
    conn.closing = true
    respond_json(conn, 200, { ok = true })
    conn.server.stopping = true
  end },
}

---------------------------------------------------------------------------------------------
-- Routing and the connection loop
---------------------------------------------------------------------------------------------

local function record(conn, req)
  local server = conn.server
  local ok, decoded = pcall(cjson.decode, req.body)
  req.json = ok and decoded or nil
  server.seq = server.seq + 1
  server.log[#server.log + 1] = {
    seq = server.seq, method = req.method, path = req.path, query = req.query,
    headers = req.headers, header_list = json_array(req.header_list), body = req.body,
    json = req.json, connection = conn.id,
  }
end

local function dispatch(conn, req, routes, name)
  local route = routes[name]
  if not route and routes == API then
    for _, p in ipairs(API_PATTERNS) do
      local captures = { name:match(p[1]) }
      if captures[1] then
        route = { method = p[2], handler = function(c, r) p[3](c, r, unpack(captures)) end }
        break
      end
    end
  end
  if not route then
    return respond_json(conn, 404, error_body(404, "Not Found"))
  end
  -- route.method: a method, or several as in an Allow header ("GET, POST"), whose handler
  -- looks at req.method itself
  if not (", " .. route.method .. ", "):find(", " .. req.method .. ", ", 1, true) then
    return respond_json(conn, 405, error_body(405, "Method Not Allowed"),
                        { { "Allow", route.method } })
  end
  route.handler(conn, req)
end

local function route_request(conn, req)
  if req.path:sub(1, #CONTROL_PREFIX) == CONTROL_PREFIX then
    return dispatch(conn, req, CONTROL, req.path:sub(#CONTROL_PREFIX + 1))
  end
  local endpoint = req.path:match("^/api/v1(/.*)$")
  if req.path == "/auth" then -- the authorization page lives at the site root
    record(conn, req)
    return authorization_page(conn, req)
  end
  if not endpoint then
    return respond_json(conn, 404, error_body(404, "Not Found"))
  end
  record(conn, req)
  if conn.drop_next then -- emulator/drop-next-request: this request never gets an answer
    if conn.drop_next == "rst" then reset_connection(conn) end
    error(CLOSED, 0)
  end
  dispatch(conn, req, API, endpoint)
end

local function serve_connection(conn)
  repeat
    local req, problem = read_request(conn)
    if not req then
      conn.closing = true
      return respond_json(conn, 400, error_body(400, "Malformed request: " .. problem))
    end
    conn.closing = wants_close(req)
    route_request(conn, req)
  until conn.closing or conn.server.stopping
end

local function accept_all(server)
  while true do
    local sock = server.sock:accept()
    if not sock then return end
    sock:settimeout(0)
    sock:setoption("tcp-nodelay", true) -- each write of a split stream is its own segment
    server.next_conn_id = server.next_conn_id + 1
    local conn = { server = server, sock = sock, id = server.next_conn_id, buf = "" }
    server.conns[conn] = true
    spawn(function() serve_connection(conn) end, function()
      -- billed as cancelled, as OpenRouter does with a stream the client left
      if conn.in_flight then record_generation(conn.in_flight, true) end
      sock:close()
      server.conns[conn] = nil
    end)
  end
end

local function run(server)
  while not server.stopping do
    local recvt, sendt = { server.sock }, {}
    for sock in pairs(sched.readers) do recvt[#recvt + 1] = sock end
    for sock in pairs(sched.writers) do sendt[#sendt + 1] = sock end
    local readable, writable = socket.select(recvt, sendt, select_timeout())
    for _, sock in ipairs(readable) do
      if sock == server.sock then accept_all(server) else wake(sched.readers, sock) end
    end
    for _, sock in ipairs(writable) do wake(sched.writers, sock) end
    run_due_timers()
  end
  for conn in pairs(server.conns) do conn.sock:close() end
  server.sock:close()
end

---------------------------------------------------------------------------------------------
-- Command line
---------------------------------------------------------------------------------------------

local function process_alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if f then f:close() end
  return f ~= nil
end

-- Stops the server once the process that started it is gone: a crashed test run leaves no
-- orphan behind.
local function watch_parent(server, pid)
  spawn(function()
    while process_alive(pid) do sleep(1) end
    server.stopping = true
  end)
end

local USAGE = "usage: emulator.lua [--host 127.0.0.1] [--port 0] [--parent-pid PID]"

local function parse_args(argv)
  local opts = { host = "127.0.0.1", port = 0 }
  for i = 1, #argv, 2 do
    local flag, value = argv[i], argv[i + 1]
    if flag == "--host" and value then
      opts.host = value
    elseif flag == "--port" and tonumber(value) then
      opts.port = tonumber(value)
    elseif flag == "--parent-pid" and tonumber(value) then
      opts.parent_pid = value
    else
      return nil
    end
  end
  return opts
end

local function main(argv)
  local opts = parse_args(argv)
  if not opts then
    io.stderr:write(USAGE, "\n")
    os.exit(2)
  end
  local sock = assert(socket.bind(opts.host, opts.port, 128))
  sock:settimeout(0)
  local _, port = sock:getsockname()
  local server = { sock = sock, conns = {}, next_conn_id = 0, log = {}, seq = 0,
                   fail_counts = {}, generations = {}, stopping = false }
  io.stdout:write("OPENROUTER_EMULATOR_URL=http://", opts.host, ":", port, "/api/v1\n")
  io.stdout:flush()
  io.stderr:write("openrouter emulator: GET /_emulator/requests for the request log, ",
                  "POST /_emulator/reset to clear it, POST /_emulator/shutdown to stop\n")
  if opts.parent_pid then watch_parent(server, opts.parent_pid) end
  run(server)
  os.exit(0)
end

main({ ... })
