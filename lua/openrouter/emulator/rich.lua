-- Rich replies and structured output: images, audio, logprobs, annotations, reasoning details
-- in every order, cached-token usage, JSON-schema samples (spec/stream_fidelity_spec.lua,
-- spec/structured_spec.lua, spec/conversation_usage_spec.lua). Chat only, the same content
-- streamed or not. Registered by chat.lua.

local util = require("openrouter.emulator.util")
local null, REASONING_FORMAT, json_encode = util.null, util.REASONING_FORMAT, util.json_encode
local json_array, error_body, count_words = util.json_array, util.error_body, util.count_words
local pieces = util.pieces
local http = require("openrouter.emulator.http")
local respond_json = http.respond_json
local replies = require("openrouter.emulator.replies")
local stream, chunk, direct_sink = replies.stream, replies.chunk, replies.direct_sink
local usage, usage_chunk = replies.usage, replies.usage_chunk
local completion_body, stream_opening = replies.completion_body, replies.stream_opening
local answer = replies.answer

local SCENARIOS = {}

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

-- emulator/images: the echo, then two images (message.images; a delta each)
-- (spec/stream_fidelity_spec.lua).
SCENARIOS.images = rich{ "text", "images" }
-- emulator/audio-out: an audio reply: content null, audio { id, data, transcript (the echo),
-- expires_at, format }; streamed: transcript and data fragments (spec/stream_fidelity_spec.lua).
SCENARIOS["audio-out"] = rich{ "audio" }
-- emulator/logprobs: the echo with choice.logprobs.content, one entry per piece
-- (spec/stream_fidelity_spec.lua).
SCENARIOS.logprobs = rich{ "logprobs" }
-- emulator/annotations: the echo, then two url_citation annotations (streamed: the first, then
-- both again, as providers repeat them) (spec/stream_fidelity_spec.lua).
SCENARIOS.annotations = rich{ "text", "annotations" }
-- emulator/reasoning-order: reasoning_details of three types, streamed with indexes 0, 1, 0, 2,
-- 1, 0, 2 (a signature-only fragment among them), then the echo (spec/stream_fidelity_spec.lua).
SCENARIOS["reasoning-order"] = rich{ "reasoning", "text" }
-- emulator/rich: all of them in one reply (content = the echo, with logprobs)
-- (spec/stream_fidelity_spec.lua).
SCENARIOS.rich = rich{ "reasoning", "logprobs", "images", "audio", "annotations" }
-- emulator/cached:<n>: the echo; usage with <n> cached_tokens and 3 reasoning_tokens
-- (spec/conversation_usage_spec.lua).
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

-- emulator/structured (spec/structured_spec.lua): response_format json_schema: content is a
-- sample of the schema (its required properties: "sample <name>", 1, 1.5, true, one-item
-- arrays, enum[1], const); 400 without json_schema.name or schema; json_object: {"echo": <last
-- user text>}; else plain text (echo).
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

return SCENARIOS
