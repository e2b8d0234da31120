-- Chat and legacy completion replies as OpenRouter shapes them, whole or streamed: the SSE
-- sinks that put a stream's events on the wire, the response and chunk shapes, `answer` (the
-- ordinary reply scenarios start from), and the context of an inference request.

local util = require("openrouter.emulator.util")
local null, PROVIDER, FINGERPRINT = util.null, util.PROVIDER, util.FINGERPRINT
local DEFAULT_MODEL, SPLIT_DELAY = util.DEFAULT_MODEL, util.SPLIT_DELAY
local REASONING_TEXT, REASONING_FORMAT = util.REASONING_TEXT, util.REASONING_FORMAT
local SIGNATURE, EMPTY_ARRAY, json_encode = util.SIGNATURE, util.EMPTY_ARRAY, util.json_encode
local error_body, count_words, pieces = util.error_body, util.count_words, util.pieces
local content_text, last_user_text = util.content_text, util.last_user_text
local prompt_text, new_generation_id = util.prompt_text, util.new_generation_id
local http = require("openrouter.emulator.http")
local write, sleep, response_head = http.write, http.sleep, http.response_head
local respond_json, write_chunk = http.respond_json, http.write_chunk

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

-- 400 "<model> is not a valid model ID": missing/<x>, emulator/<unknown>, or arguments a
-- scenario does not take.
local function invalid_model(ctx)
  local body = error_body(400, ctx.model .. " is not a valid model ID")
  body.user_id = "user_emulator"
  respond_json(ctx.conn, 400, body)
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

return {
  stream = stream, chunk = chunk, direct_sink = direct_sink, batched_sink = batched_sink,
  usage_chunk = usage_chunk, completion_body = completion_body, stream_opening = stream_opening,
  stream_body = stream_body, stream_ending = stream_ending, standard_events = standard_events,
  answer = answer, stream_partial = stream_partial, invalid_model = invalid_model,
  usage = usage, awkward_sink = awkward_sink, TOOL_CALLS = TOOL_CALLS,
  new_context = new_context, open_stream = open_stream,
}
