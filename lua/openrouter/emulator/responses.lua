-- The Responses API: POST /responses, whole or as typed stream events.

local util = require("openrouter.emulator.util")
local null, EMPTY_ARRAY, json_encode = util.null, util.EMPTY_ARRAY, util.json_encode
local json_array, error_body, pieces = util.json_array, util.error_body, util.pieces
local http = require("openrouter.emulator.http")
local write, respond_json, write_chunk = http.write, http.respond_json, http.write_chunk
local checks = require("openrouter.emulator.checks")
local authenticate, bad_request = checks.authenticate, checks.bad_request
local json_object_body = checks.json_object_body
local replies = require("openrouter.emulator.replies")
local open_stream, invalid_model = replies.open_stream, replies.invalid_model
local new_context = replies.new_context
local generations = require("openrouter.emulator.generations")
local record_generation = generations.record_generation

local API = {}

-- POST /responses (key; spec/api_more_spec.lua): "Echo: <last user input>" (input: a string, or
-- items whose content is a string or input_text parts) as an OpenResponsesResult (object
-- "response", status "completed", one output message with one output_text, usage with
-- input/output tokens; the request's instructions, temperature, tools... echoed); "stream":
-- true sends the typed events, each an `event: <type>` line and a `data:` JSON with `type` and
-- `sequence_number` (0, 1, ...): response.created, response.in_progress,
-- response.output_item.added, response.content_part.added, response.output_text.delta per
-- word, response.output_text.done, response.content_part.done, response.output_item.done,
-- response.completed (the whole response), then data: [DONE]. Models:
--   emulator/response-error   stream: two deltas, then an `error` event (code "server_error",
--                             message, param null) and the end; non-streamed: 502 error body
--   emulator/response-failed  stream: two deltas, then response.failed (status "failed", error
--                             { code = "server_error", message }, the text so far as an
--                             incomplete message); non-streamed: that response, status 200
--   emulator/<other>, missing/<x>   400 "... is not a valid model ID"
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
API["/responses"] = { method = "POST", handler = responses }

return { routes = API }
