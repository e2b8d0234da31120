-- Generation stats and content (GET /generation, GET /generation/content), written a little
-- after each inference request as OpenRouter's are.

local util = require("openrouter.emulator.util")
local socket, null, PROVIDER = util.socket, util.null, util.PROVIDER
local DEFAULT_WORKSPACE, REASONING_TEXT = util.DEFAULT_WORKSPACE, util.REASONING_TEXT
local EMPTY_ARRAY, json_array, error_body = util.EMPTY_ARRAY, util.json_array, util.error_body
local prompt_text, parse_query = util.prompt_text, util.parse_query
local http = require("openrouter.emulator.http")
local respond_json = http.respond_json
local checks = require("openrouter.emulator.checks")
local authenticate = checks.authenticate

local API = {}

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

-- GET /generation?id= (key): a generation's stats, 404 until GENERATION_DELAY after its request;
-- cancelled = true when the client walked out of the stream (spec/api_spec.lua,
-- spec/client_spec.lua, spec/async_spec.lua).
API["/generation"] = { method = "GET", handler = function(conn, req)
  if not authenticate(conn, req) then return end
  local id = parse_query(req.query).id
  local g = id and conn.server.generations[id]
  if not g or socket.gettime() < g.ready_at then
    return respond_json(conn, 404, error_body(404, "Generation " .. tostring(id) .. " not found"))
  end
  respond_json(conn, 200, { data = g.data })
end }

-- GET /generation/content?id= (key): { data = { input = { messages } or { prompt }, output =
-- { completion, reasoning }, error = null } } of chat, completions and responses requests
-- (spec/api_more_spec.lua).
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
API["/generation/content"] = { method = "GET", handler = generation_content }

return { routes = API, record_generation = record_generation }
