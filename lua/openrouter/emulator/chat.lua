-- Inference: POST /chat/completions and POST /completions, and the scenarios a request's model
-- picks (emulator/<name>[:<args>]): ordinary replies (echo, tools, reasoning), API errors,
-- retries and rate limits, slow, stalled and reset answers, long streams. More scenarios live in
-- faults.lua, keyleaks.lua and rich.lua.

local util = require("openrouter.emulator.util")
local socket, null, unpack, PROVIDER = util.socket, util.null, util.unpack, util.PROVIDER
local AWKWARD_PREFIX, REASONS, json_encode = util.AWKWARD_PREFIX, util.REASONS, util.json_encode
local error_body, count_words, pieces = util.error_body, util.count_words, util.pieces
local trailing_tool_results, middle_truncate = util.trailing_tool_results, util.middle_truncate
local http_date = util.http_date
local http = require("openrouter.emulator.http")
local write, sleep, reset_connection = http.write, http.sleep, http.reset_connection
local wait_for_peer_close, response_head = http.wait_for_peer_close, http.response_head
local respond, respond_json = http.respond, http.respond_json
local checks = require("openrouter.emulator.checks")
local authenticate = checks.authenticate
local replies = require("openrouter.emulator.replies")
local stream, chunk, direct_sink = replies.stream, replies.chunk, replies.direct_sink
local batched_sink, awkward_sink = replies.batched_sink, replies.awkward_sink
local TOOL_CALLS, completion_body = replies.TOOL_CALLS, replies.completion_body
local stream_ending, answer = replies.stream_ending, replies.answer
local stream_partial, invalid_model = replies.stream_partial, replies.invalid_model
local new_context = replies.new_context
local generations = require("openrouter.emulator.generations")
local record_generation = generations.record_generation

local API = {}

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

-- Scenarios by model id: "emulator/<name>[:<args>]" (chat and legacy completions alike unless
-- noted; a stream-only scenario answers a non-streamed request like an ordinary model, and the
-- reverse). missing/<x> and emulator/<unknown> get 400 "... is not a valid model ID".
-- `pattern` matches the text after "emulator/<name>:" (default: nothing); its captures are
-- passed to `run` after the request context. The scenarios of faults.lua, keyleaks.lua and
-- rich.lua join these below.
local SCENARIOS = {}

-- Any model id that is not emulator/<name> (and not missing/<x>): "Echo: <last user text or
-- prompt>", streamed when asked. What most specs talk to.
SCENARIOS.echo = { run = function(ctx) answer(ctx) end }

-- emulator/awkward: stream: CRLF, written in fragments split mid-line, inside "data:", between
-- \r and \n and inside UTF-8 characters (spec/streaming_spec.lua, spec/async_spec.lua,
-- spec/async_tasks_spec.lua, spec/conversation_spec.lua).
SCENARIOS.awkward = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  ctx.reply = AWKWARD_PREFIX .. ctx.reply
  ctx.completion_tokens = count_words(ctx.reply)
  answer(ctx, awkward_sink(ctx.conn))
end }

-- emulator/usage-on-choice: stream: usage rides on the finish chunk, no empty-choices chunk
-- (spec/streaming_spec.lua).
SCENARIOS["usage-on-choice"] = { run = function(ctx)
  ctx.usage_on_choice = true
  answer(ctx)
end }

-- emulator/reasoning: reasoning + reasoning_details (a signature-only delta when streamed)
-- (spec/streaming_spec.lua).
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

-- emulator/tools: chat: two tool calls; "Tool results: ..." once the last message is a tool
-- result (spec/conversation_spec.lua, spec/streaming_spec.lua, spec/async_spec.lua,
-- spec/async_tasks_spec.lua, examples/demo.lua).
SCENARIOS.tools = { run = tool_turn }

-- emulator/reasoning-tools: as tools, with reasoning and reasoning_details on the tool-call turn
-- (spec/conversation_spec.lua).
-- reasoning_details ride along with the tool calls (Anthropic thinking around tools).
SCENARIOS["reasoning-tools"] = { run = function(ctx)
  ctx.reasoning = true
  tool_turn(ctx)
end }

-- emulator/tools-loop: always one get_weather call (spec/conversation_spec.lua).
-- Asks for the weather forever: a tool loop that never ends by itself.
SCENARIOS["tools-loop"] = { run = function(ctx)
  ctx.tool_calls = true
  ctx.tool_call_list = { TOOL_CALLS[1] }
  answer(ctx)
end }

-- emulator/tools-bad-json: a get_weather call whose arguments are not JSON
-- (spec/conversation_spec.lua).
-- A tool call whose arguments are not JSON.
SCENARIOS["tools-bad-json"] = { run = function(ctx)
  ctx.tool_calls = true
  ctx.tool_call_list = { { id = "call_bad", type = "function",
    ["function"] = { name = "get_weather", arguments = "{city: Paris" } } }
  answer(ctx)
end }

-- emulator/no-usage: the echo without `usage` (spec/conversation_spec.lua,
-- spec/conversation_usage_spec.lua).
-- A reply without `usage` (older or third-party gateways): non-streamed only.
SCENARIOS["no-usage"] = { run = function(ctx)
  if ctx.stream then return answer(ctx) end
  local body = completion_body(ctx)
  body.usage = nil
  respond_json(ctx.conn, 200, body, { { "X-Generation-Id", ctx.id } })
end }

-- emulator/no-id (spec/client_spec.lua).
-- A reply whose body has no `id`: only the X-Generation-Id header names the generation.
SCENARIOS["no-id"] = { run = function(ctx)
  local body = completion_body(ctx)
  body.id = nil
  respond_json(ctx.conn, 200, body, { { "X-Generation-Id", ctx.id } })
end }

local PROVIDER_DISCONNECTED = { code = 502, message = "Provider disconnected",
  metadata = { error_type = "provider_unavailable", provider_name = PROVIDER } }

-- emulator/mid-stream-error: stream: two content chunks, an error chunk (finish_reason "error",
-- 502 "Provider disconnected"), no [DONE]; non-streamed: that 502 (spec/streaming_spec.lua,
-- spec/conversation_spec.lua, spec/request_spec.lua, spec/cli_spec.lua).
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

-- emulator/moderation: 403, the input flagged (metadata.reasons, flagged_input middle-truncated
-- to 100 bytes) (spec/errors_spec.lua, spec/request_spec.lua, spec/retry_spec.lua,
-- spec/cli_spec.lua).
SCENARIOS.moderation = failing(403, function(ctx)
  return { error = { code = 403,
    message = ctx.model .. ' requires moderation on OpenAI. Your input was flagged for "violence".',
    metadata = { reasons = { "violence" }, flagged_input = middle_truncate(ctx.input),
                 provider_name = "OpenAI", model_slug = ctx.model } } }
end)

-- emulator/provider-error: 400 "Provider returned error", the provider's own error in
-- metadata.raw (spec/errors_spec.lua, spec/retry_spec.lua).
SCENARIOS["provider-error"] = failing(400, function()
  local raw = '{"error":{"type":"invalid_request_error",'
    .. '"message":"Model supports at most 1 image per prompt."}}'
  return { error = { code = 400, message = "Provider returned error",
                     metadata = { raw = raw, provider_name = "Crucible", is_byok = false } },
           user_id = "user_emulator" }
end)

-- emulator/no-code: 404 without error.code, as OpenRouter's availability errors
-- (NO_ENDPOINTS_BODY) (spec/errors_spec.lua).
SCENARIOS["no-code"] = failing(404, function() return NO_ENDPOINTS_BODY end)

-- emulator/string-code: 500 whose error.code is the string "server_error"
-- (spec/errors_spec.lua, spec/retry_spec.lua).
SCENARIOS["string-code"] = failing(500, function()
  return error_body("server_error", "Internal Server Error")
end)

-- emulator/error-200: status 200, an error body (spec/errors_spec.lua, spec/streaming_spec.lua).
SCENARIOS["error-200"] = { run = function(ctx)
  respond_json(ctx.conn, 200, error_body(400, "Upstream rejected the request"),
               { { "X-Generation-Id", ctx.id } })
end }

-- emulator/fail:<status>:<times>[:<seconds>|:date<seconds>]: the first <times> requests with
-- that exact model fail with <status> (and Retry-After), then echo (spec/retry_spec.lua,
-- spec/request_spec.lua, spec/faults_spec.lua, spec/async_spec.lua, spec/uv_spec.lua, ...).
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

-- emulator/capacity (spec/retry_spec.lua).
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

-- emulator/not-retryable (spec/retry_spec.lua).
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

-- emulator/rate-limited[:<n>] (test/fidelity).
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

-- emulator/html-502: nginx's 502 page, text/html (spec/errors_spec.lua, spec/retry_spec.lua,
-- spec/cli_spec.lua, scripts/soak.lua).
SCENARIOS["html-502"] = { run = function(ctx)
  respond(ctx.conn, 502, "text/html", HTML_502)
end }

-- emulator/malformed: status 200, truncated JSON (spec/errors_spec.lua, spec/client_spec.lua,
-- spec/faults_spec.lua, spec/cli_spec.lua).
SCENARIOS.malformed = { run = function(ctx)
  respond(ctx.conn, 200, "application/json", '{"id":"gen-x","choices":[{"message":{"content":"hel',
          { { "X-Generation-Id", "gen-x" } })
end }

-- emulator/empty: status 200, an empty body (spec/errors_spec.lua, spec/client_spec.lua,
-- spec/faults_spec.lua).
SCENARIOS.empty = { run = function(ctx)
  respond(ctx.conn, 200, "application/json", "", { { "X-Generation-Id", ctx.id } })
end }

-- emulator/slow:<ms>: waits <ms> before answering, or between every SSE event (spec/api_spec.lua,
-- spec/async_spec.lua, spec/uv_spec.lua, spec/h2_spec.lua, spec/cli_spec.lua, bench/ W3, ...).
SCENARIOS.slow = { pattern = "^(%d+)$", run = function(ctx, ms)
  local delay = tonumber(ms) / 1000
  if ctx.stream then return answer(ctx, direct_sink(ctx.conn, delay)) end
  sleep(delay)
  answer(ctx)
end }

-- emulator/keepalive:<n>: stream: n ": OPENROUTER PROCESSING" comments 100 ms apart first
-- (spec/streaming_spec.lua).
SCENARIOS.keepalive = { pattern = "^(%d+)$", run = function(ctx, n)
  ctx.keepalives = tonumber(n)
  answer(ctx)
end }

-- emulator/reset: RST without answering (spec/errors_spec.lua, spec/faults_spec.lua,
-- spec/retry_spec.lua).
SCENARIOS.reset = { run = function(ctx) reset_connection(ctx.conn) end }

-- emulator/reset-mid-body: RST halfway through the body; streamed: echo (spec/errors_spec.lua,
-- spec/faults_spec.lua, spec/retry_spec.lua).
SCENARIOS["reset-mid-body"] = { run = function(ctx)
  if ctx.stream then return answer(ctx) end
  local body = json_encode(completion_body(ctx))
  write(ctx.conn, response_head(ctx.conn, 200, {
    { "Content-Type", "application/json" }, { "Content-Length", #body },
    { "X-Generation-Id", ctx.id } }) .. body:sub(1, math.floor(#body / 2)))
  reset_connection(ctx.conn)
end }

-- emulator/reset-mid-stream: stream: RST after 2 chunks; non-streamed: echo
-- (spec/streaming_spec.lua, spec/faults_spec.lua, spec/retry_spec.lua).
SCENARIOS["reset-mid-stream"] = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    stream_partial(ctx, sse, 2)
    reset_connection(ctx.conn)
  end)
end }

-- emulator/stall: never answers (spec/errors_spec.lua, spec/faults_spec.lua, spec/retry_spec.lua,
-- spec/async_spec.lua, spec/uv_spec.lua, spec/cli_spec.lua, ...).
SCENARIOS.stall = { run = function(ctx) wait_for_peer_close(ctx.conn) end }

-- emulator/stall-mid-stream: stream: one chunk, then silence; non-streamed: echo
-- (spec/errors_spec.lua, spec/faults_spec.lua, spec/retry_spec.lua, spec/uv_spec.lua).
SCENARIOS["stall-mid-stream"] = { run = function(ctx)
  if not ctx.stream then return answer(ctx) end
  stream(ctx, direct_sink(ctx.conn), function(_, sse)
    sse.comment()
    sse.data(chunk(ctx, { role = "assistant", content = pieces(ctx.reply)() }))
    wait_for_peer_close(ctx.conn)
  end)
end }

-- emulator/long:<n>: n one-word content chunks, as fast as possible (spec/streaming_spec.lua,
-- spec/async_spec.lua, spec/conversation_spec.lua, scripts/soak.lua, test/alloc, ...).
SCENARIOS.long = { pattern = "^(%d+)$", run = function(ctx, n)
  ctx.reply = string.rep("tok ", tonumber(n))
  ctx.completion_tokens = tonumber(n)
  answer(ctx, batched_sink(ctx.conn))
end }

-- emulator/first-chunk-stamp: stream: 10 ms after the headers, one chunk whose content is the
-- server's clock (socket.gettime()) read just before it is written, then ~1 s of silence
-- before the end (bench/: time to first chunk).
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

-- emulator/first-chunk-after:<ms>: stream: the headers at once, <ms> of silence, then 20
-- content chunks 10 ms apart, each one's content the server's clock read just before it is
-- written, then the end (bench/ W7: a host loop waiting for a slow model).
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

-- emulator/numbered:<n>: n content chunks "1 ", "2 ", ... "<n> ", as fast as possible (in
-- order, each distinct: spec/budget_spec.lua).
SCENARIOS.numbered = { pattern = "^(%d+)$", run = function(ctx, n)
  local words = {}
  for i = 1, tonumber(n) do words[i] = i .. " " end
  ctx.reply = table.concat(words)
  ctx.completion_tokens = tonumber(n)
  answer(ctx, batched_sink(ctx.conn))
end }

-- The scenarios of the other modules, under their own names.
for _, module in ipairs({ "faults", "keyleaks", "rich" }) do
  for name, scenario in pairs(require("openrouter.emulator." .. module)) do
    assert(SCENARIOS[name] == nil, "two scenarios named " .. name)
    SCENARIOS[name] = scenario
  end
end

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

-- POST /chat/completions and POST /completions (key): the scenario the model names; a key
-- starting "sk-or-broke" gets 402 (spec/api_spec.lua and most others).
API["/chat/completions"] = { method = "POST", handler = inference("chat") }
API["/completions"] = { method = "POST", handler = inference("completion") }

return { routes = API }
