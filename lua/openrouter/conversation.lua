--- Conversations: history, streaming `say`, tool calls, usage and cost,
-- persistence. Built only on the client's public methods.
--
--     local conv = client:conversation{ model = "openai/gpt-4o-mini", system = "Be terse." }
--     print(conv:say("Hello"))
--     conv:say("Go on", function(delta) io.write(delta) end)
--
-- A `say` that fails returns `nil, err` and leaves `conv.messages` exactly as it was.
-- @module openrouter.conversation

local core = require("openrouter.core")
local async = require("openrouter.async")
local shared = require("openrouter.shared")

local M = {}

local FORMAT = "openrouter-conversation"
local FORMAT_VERSION = 1
local DEFAULT_MAX_TOOL_ROUNDS = 8
local USAGE_FIELDS = { "prompt_tokens", "completion_tokens", "total_tokens" }
-- usage tables whose numeric fields are summed too (cached_tokens, reasoning_tokens, ...)
local USAGE_DETAILS = { "prompt_tokens_details", "completion_tokens_details", "cost_details" }

--- The Conversation class; its methods are documented below.
local Conversation = {}
Conversation.__index = Conversation
M.Conversation = Conversation

local argerror, checktype = shared.argerror, shared.checktype
local new_error, is_sequence = shared.new_error, shared.is_sequence
local content_text = shared.content_text

-- Raises unless v can be sent as JSON, naming the field (`what`) that cannot.
local function check_encodable(fname, n, what, v)
  local ok, err = pcall(core.json_encode, v)
  if not ok then
    local detail = tostring(err):match("^bad argument #%d+ to '[^']*' %((.*)%)$") or tostring(err)
    if detail:find("^[%w_%[%]%.]+: ") then detail = what .. "." .. detail else detail = what .. ": " .. detail end
    argerror(fname, n, detail)
  end
end

-- Raises unless self is a Conversation (a method called with '.' instead of ':').
local function check_self(self, fname)
  if getmetatable(self) ~= M.Conversation then
    argerror(fname, 1, "Conversation expected, got " .. type(self))
  end
end

-- A deep copy of plain data (JSON null and other non-tables are shared).
local function deep_copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do out[deep_copy(k, seen)] = deep_copy(x, seen) end
  return setmetatable(out, getmetatable(v))
end

local function check_options(opts)
  local known = { model = "string", system = "string", params = "table",
                  max_tool_rounds = "number", max_messages = "number" }
  for k, v in pairs(opts) do
    if not known[k] then argerror("conversation", 1, ("unknown option '%s'"):format(tostring(k))) end
    if type(v) ~= known[k] then
      argerror("conversation", 1, ("option '%s' must be a %s, got %s"):format(k, known[k], type(v)))
    end
  end
  for _, k in ipairs{ "max_tool_rounds", "max_messages" } do
    local v = opts[k]
    if v ~= nil and (v ~= v or v % 1 ~= 0 or v < 1 or v > 1e6) then
      argerror("conversation", 1, ("option '%s' must be a positive integer"):format(k))
    end
  end
  if opts.params and (opts.params.messages ~= nil or opts.params.stream ~= nil) then
    argerror("conversation", 1, "params must not hold 'messages' or 'stream': the conversation owns them")
  end
  if opts.params then check_encodable("conversation", 1, "params", opts.params) end
end

local function fresh_usage()
  return { prompt_tokens = 0, completion_tokens = 0, total_tokens = 0, requests = 0 }
end

local function build(client, opts, messages, usage)
  local self = setmetatable({
    client = client,
    model = opts.model,
    system = opts.system,
    params = deep_copy(opts.params or {}),
    max_tool_rounds = opts.max_tool_rounds or DEFAULT_MAX_TOOL_ROUNDS,
    max_messages = opts.max_messages,
    messages = messages,
    tools = {},        -- name -> { name, description, parameters, handler }
    tool_order = {},   -- names in registration order
    totals = usage or fresh_usage(),
  }, Conversation)
  return self
end

--- Creates a conversation (also `client:conversation(opts)`).
-- @param client an openrouter client
-- @tparam[opt] table opts `model`, `system` (a system prompt), `params` (any other chat
--   request fields, passed through), `max_tool_rounds` (8), `max_messages` (keep the
--   system prompt and about this many newest messages)
-- @treturn Conversation
function M.new(client, opts)
  if not core.is_client(client) then
    argerror("conversation", 1, "openrouter client expected, got " .. type(client))
  end
  if opts == nil then opts = {} end
  checktype("conversation", 1, opts, "table")
  check_options(opts)
  local messages = {}
  if opts.system then messages[1] = { role = "system", content = opts.system } end
  return build(client, opts, messages)
end

--- Registers a tool the model may call; `say` runs it and sends back its result.
-- @tparam table def `name` (`[A-Za-z0-9_-]`, at most 64), `description`, `parameters`
--   (a JSON schema table), `handler` (function(args, call) returning a string, or a
--   value that is sent JSON-encoded)
-- @return self
function Conversation:tool(def)
  check_self(self, "tool")
  checktype("tool", 1, def, "table")
  if type(def.name) ~= "string" or not def.name:match("^[%w_%-]+$") or #def.name > 64 then
    argerror("tool", 1, "'name' must be 1-64 characters of [A-Za-z0-9_-]")
  end
  if type(def.handler) ~= "function" then argerror("tool", 1, "'handler' must be a function") end
  if def.description ~= nil and type(def.description) ~= "string" then
    argerror("tool", 1, "'description' must be a string")
  end
  if def.parameters ~= nil and type(def.parameters) ~= "table" then
    argerror("tool", 1, "'parameters' must be a table (a JSON schema)")
  end
  if def.parameters ~= nil then check_encodable("tool", 1, "parameters", def.parameters) end
  if not self.tools[def.name] then self.tool_order[#self.tool_order + 1] = def.name end
  self.tools[def.name] = {
    name = def.name, description = def.description, handler = def.handler,
    parameters = def.parameters or { type = "object", properties = {} },
  }
  return self
end

-- The request for the history plus this turn's pending messages (and the turn's
-- response_format, when it asks for a structured reply).
local function request_for(self, pending, format)
  local req = deep_copy(self.params)
  req.model = self.model or req.model
  if format then req.response_format = format end
  local messages = {}
  for i, m in ipairs(self.messages) do messages[i] = m end
  for _, m in ipairs(pending) do messages[#messages + 1] = m end
  req.messages = messages
  if #self.tool_order > 0 then
    local tools = {}
    for i, t in ipairs(req.tools or {}) do tools[i] = t end
    for _, name in ipairs(self.tool_order) do
      local t = self.tools[name]
      tools[#tools + 1] = { type = "function", ["function"] = {
        name = t.name, description = t.description, parameters = t.parameters } }
    end
    req.tools = tools
  end
  return req
end

local function add_usage(totals, usage)
  totals.requests = totals.requests + 1
  if type(usage) ~= "table" then return end
  for _, k in ipairs(USAGE_FIELDS) do
    if type(usage[k]) == "number" then totals[k] = totals[k] + usage[k] end
  end
  if type(usage.cost) == "number" then totals.cost = (totals.cost or 0) + usage.cost end
  for _, name in ipairs(USAGE_DETAILS) do
    local details = usage[name]
    if type(details) == "table" then
      for k, v in pairs(details) do
        if type(k) == "string" and type(v) == "number" then
          totals[name] = totals[name] or {}
          totals[name][k] = (totals[name][k] or 0) + v
        end
      end
    end
  end
end

-- Runs one tool call; returns the tool message, or nil, err.
local function run_tool(self, call)
  local fn = type(call) == "table" and call["function"]
  local name = type(fn) == "table" and fn.name
  local tool = type(name) == "string" and self.tools[name]
  if not tool then
    return nil, new_error("tool", ("the model called an unknown tool '%s'"):format(tostring(name)),
      { tool = name, tool_call_id = type(call) == "table" and call.id or nil })
  end
  local raw = fn.arguments
  local args = {}
  if type(raw) == "string" and raw:match("%S") then
    local decoded, why = core.json_decode(raw)
    if type(decoded) ~= "table" then
      return nil, new_error("tool", ("arguments for tool '%s' are not a JSON object: %s"):format(
        name, why or raw), { tool = name, tool_call_id = call.id, arguments = raw })
    end
    args = decoded
  elseif type(raw) == "table" then
    args = raw
  end
  -- async.pcall: a handler may wait inside a task, on Lua 5.1 too
  local ok, result = async.pcall(tool.handler, args, call)
  if not ok then
    return nil, new_error("tool", ("tool '%s' failed: %s"):format(name, tostring(result)),
      { tool = name, tool_call_id = call.id, cause = result })
  end
  local content = result
  if type(result) ~= "string" then
    local encoded_ok, encoded = pcall(core.json_encode, result == nil and core.null or result)
    if not encoded_ok then
      return nil, new_error("tool", ("tool '%s' returned a value that is not JSON: %s"):format(
        name, tostring(encoded)), { tool = name, tool_call_id = call.id })
    end
    content = encoded
  end
  return { role = "tool", tool_call_id = call.id, content = content }
end

-- Keeps the system prompt and at most max_messages newest messages, starting the
-- kept part at a user message so no tool result loses its call.
local function trim(self)
  local limit = self.max_messages
  if not limit then return end
  local msgs, head = self.messages, {}
  local first = 1
  if msgs[1] and msgs[1].role == "system" then head[1] = msgs[1]; first = 2 end
  local count = #msgs - first + 1
  if count <= limit then return end
  local start = #msgs - limit + 1
  while start <= #msgs and msgs[start].role ~= "user" do start = start + 1 end
  if start > #msgs then  -- no user message in the window: keep from the last one
    start = #msgs
    while start > first and msgs[start].role ~= "user" do start = start - 1 end
  end
  local kept = head
  for i = start, #msgs do kept[#kept + 1] = msgs[i] end
  self.messages = kept
end

local function check_content(fname, content)
  if type(content) ~= "string" and not (type(content) == "table" and is_sequence(content)) then
    argerror(fname, 1, "string or array of content parts expected, got " .. type(content))
  end
  if type(content) == "table" then check_encodable(fname, 1, "content", content) end
end

-- The response_format a say's options ask for (schema, name), or nil.
local function structured_format(fname, opts)
  if opts.name ~= nil and (type(opts.name) ~= "string" or not opts.name:match("^[%w_%-]+$")
      or #opts.name > 64) then
    argerror(fname, 2, "'name' must be 1-64 characters of [A-Za-z0-9_-]")
  end
  if opts.schema == nil then
    if opts.name ~= nil then argerror(fname, 2, "'name' is for a 'schema'") end
    return nil
  end
  if type(opts.schema) ~= "table" then
    argerror(fname, 2, "'schema' must be a table (a JSON schema), got " .. type(opts.schema))
  end
  check_encodable(fname, 2, "schema", opts.schema)
  return { type = "json_schema", json_schema = {
    name = opts.name or "reply", strict = true, schema = deep_copy(opts.schema) } }
end

-- A turn: the messages one `say` adds (kept apart until it succeeds) and its text;
-- `format`, the response_format of a structured reply.
local function new_turn(conv, content, format)
  return { conv = conv, pending = { { role = "user", content = deep_copy(content) } },
           texts = {}, rounds = 0, done = false, format = format }
end

-- Takes one response into the turn. Returns true when the model must be asked
-- again (tool results were added), else the turn's text (the history now has
-- it; for a structured reply, the last message's content decoded), or nil, err.
-- Appends the turn's messages to the history, all or none: when growing the table runs out
-- of memory, the ones already added are taken back before the error goes on (a failed say
-- leaves the history as it was).
local function append_all(messages, pending)
  local n = #messages
  local ok, err = pcall(function()
    for i = 1, #pending do messages[n + i] = pending[i] end
  end)
  if not ok then
    for i = #messages, n + 1, -1 do messages[i] = nil end
    error(err, 0)
  end
end

local function absorb(turn, res)
  local conv = turn.conv
  add_usage(conv.totals, res.usage)
  local choice = type(res.choices) == "table" and res.choices[1]
  local message = type(choice) == "table" and choice.message
  if type(message) ~= "table" then
    return nil, new_error("decode", "the response has no message", { generation_id = res.id })
  end
  turn.pending[#turn.pending + 1] = message  -- verbatim: reasoning_details must go back unchanged
  turn.texts[#turn.texts + 1] = content_text(message.content)
  local calls = message.tool_calls
  if type(calls) == "table" and #calls > 0 then
    turn.rounds = turn.rounds + 1
    if turn.rounds > conv.max_tool_rounds then
      return nil, new_error("tool", ("the model still asks for tools after %d rounds (max_tool_rounds)")
        :format(conv.max_tool_rounds))
    end
    for _, call in ipairs(calls) do
      local tool_message, err = run_tool(conv, call)
      if not tool_message then return nil, err end
      turn.pending[#turn.pending + 1] = tool_message
    end
    return true
  end
  local reply = table.concat(turn.texts)
  if turn.format then
    local value, err = shared.reply_json(res)
    if value == nil then
      err.generation_id = res.id
      return nil, err
    end
    reply = value
  end
  append_all(conv.messages, turn.pending)
  trim(conv)
  return reply
end

-- on_delta(text, chunk) as a chunk callback.
local function delta_callback(on_delta)
  if not on_delta then return nil end
  return function(chunk)
    local piece = shared.reply_text(chunk)
    if piece and piece ~= "" then return on_delta(piece, chunk) end
  end
end

--- Sends a user message and returns the assistant's reply, running tool calls.
--
--     local city = conv:say("Where is the Louvre?", { name = "place", schema = {
--       type = "object", properties = { city = { type = "string" } },
--       required = { "city" }, additionalProperties = false } })
--     print(city.city)
-- @param content a string, or an array of content parts
-- @param[opt] opts a function, `on_delta`; or a table: `on_delta(text, chunk)` (streams
--   the reply: called with each new piece of text; return false to cancel), `schema` (a
--   JSON schema table: asks for a structured reply, sent as `response_format` json_schema,
--   strict), `name` (the schema's name, default "reply")
-- @treturn ?string|table the reply text (all text of this turn, equal to the joined
--   deltas); with `schema`, the reply decoded (the history keeps it as text)
-- @return err on failure, with the history unchanged; `err.partial` for a broken stream;
--   kind "decode" for a structured reply that is not JSON
function Conversation:say(content, opts)
  check_self(self, "say")
  check_content("say", content)
  if type(opts) == "function" then opts = { on_delta = opts } end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then argerror("say", 2, "function or table expected, got " .. type(opts)) end
  if opts.on_delta ~= nil and type(opts.on_delta) ~= "function" then
    argerror("say", 2, "'on_delta' must be a function")
  end
  local turn = new_turn(self, content, structured_format("say", opts))
  local callback = delta_callback(opts.on_delta)
  while true do
    local res, err = self.client:chat_completion(request_for(self, turn.pending, turn.format), callback)
    if not res then return nil, err end
    local more, text_or_err = absorb(turn, res)
    if more ~= true then return more, text_or_err end
  end
end

--- A `say` in progress (what `say_async` returns).
-- Fields `done`, `result` (the reply text), `error`.
local Turn = {}
Turn.__index = Turn

--- Cancels the turn: its on_done gets an error of kind "cancelled".
function Turn:cancel()
  if self.done or not self.request then return false end
  return self.request:cancel()
end

--- Drives the client until the turn is done (inside a task: yields until it is).
-- @treturn ?string the reply text, or nil, err
function Turn:wait()
  local in_task = async.in_task()
  while not self.done do
    if in_task then async.await(self.request) else self.request:wait() end
  end
  return self.result, self.error
end

--- Like `say`, without blocking: the client's `poll` drives it.
-- @param content a string, or an array of content parts
-- @tparam[opt] table opts `on_delta(text, chunk)` (streams the reply; return false to
--   cancel), `on_done(text, err)` (once, at the end), `coalesce` (seconds between
--   deliveries of text, for UI hosts), `schema` and `name` (a structured reply, as `say`:
--   the turn's result is the reply decoded)
-- @treturn Turn the turn in progress (keep it: a collected turn is cancelled)
function Conversation:say_async(content, opts)
  check_self(self, "say_async")
  check_content("say_async", content)
  if opts == nil then opts = {} end
  checktype("say_async", 2, opts, "table")
  for _, k in ipairs{ "on_delta", "on_done" } do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      argerror("say_async", 2, ("'%s' must be a function"):format(k))
    end
  end
  local turn = setmetatable(new_turn(self, content, structured_format("say_async", opts)), Turn)
  local on_chunk = delta_callback(opts.on_delta)
  local function finish(text, err)
    turn.done, turn.result, turn.error = true, text, err
    if opts.on_done then opts.on_done(text, err) end
  end
  local function ask()
    turn.request = self.client:chat_completion_async(request_for(self, turn.pending, turn.format), {
      on_chunk = on_chunk, coalesce = opts.coalesce,
      on_done = function(res, err)
        if not res then return finish(nil, err) end
        local more, text_or_err = absorb(turn, res)
        if more == true then return ask() end
        finish(more, text_or_err)
      end,
    })
  end
  ask()
  return turn
end

--- The accumulated usage of every request this conversation made (tool rounds
-- included, and requests of a `say` that failed later: they were billed).
-- @treturn table `prompt_tokens`, `completion_tokens`, `total_tokens`, `requests`;
--   `cost` when the API reported one; and, shaped as the API's usage, the sums of the
--   numbers it reported in `prompt_tokens_details` (`cached_tokens` ...),
--   `completion_tokens_details` (`reasoning_tokens` ...) and `cost_details`
function Conversation:usage()
  check_self(self, "usage")
  return deep_copy(self.totals)
end

--- The text of the last assistant message, or nil.
function Conversation:last()
  check_self(self, "last")
  for i = #self.messages, 1, -1 do
    local m = self.messages[i]
    if m.role == "assistant" then
      local t = content_text(m.content)
      if t then return t end
    end
  end
  return nil
end

--- Drops the last user turn and everything after it.
-- @treturn boolean whether there was a turn to drop
function Conversation:undo()
  check_self(self, "undo")
  for i = #self.messages, 1, -1 do
    if self.messages[i].role == "user" then
      for j = #self.messages, i, -1 do self.messages[j] = nil end
      return true
    end
  end
  return false
end

--- Forgets the history but the system prompt (usage totals are kept).
function Conversation:reset()
  check_self(self, "reset")
  local first = self.messages[1]
  self.messages = {}
  if first and first.role == "system" then self.messages[1] = first end
  return self
end

--- Appends a message to the history as it is (a copy of it).
-- @tparam table message with a string `role`
function Conversation:add(message)
  check_self(self, "add")
  if type(message) ~= "table" or type(message.role) ~= "string" then
    argerror("add", 1, "message table with a string 'role' expected")
  end
  check_encodable("add", 1, "message", message)
  self.messages[#self.messages + 1] = deep_copy(message)
  return self
end

--- An independent copy: history, params and usage copied, tools shared.
function Conversation:fork()
  check_self(self, "fork")
  local copy = build(self.client, { model = self.model, system = self.system, params = self.params,
    max_tool_rounds = self.max_tool_rounds, max_messages = self.max_messages },
    deep_copy(self.messages), deep_copy(self.totals))
  for _, name in ipairs(self.tool_order) do
    copy.tools[name] = self.tools[name]
    copy.tool_order[#copy.tool_order + 1] = name
  end
  return copy
end

--- The conversation as a JSON string: model, system, params, messages and usage
-- (tool handlers are not serialised: register them again after loading).
function Conversation:to_json()
  check_self(self, "to_json")
  return core.json_encode({
    format = FORMAT, version = FORMAT_VERSION, model = self.model, system = self.system,
    params = self.params, messages = self.messages, usage = self.totals,
    max_tool_rounds = self.max_tool_rounds, max_messages = self.max_messages,
  })
end

local function invalid(why)
  return nil, new_error("decode", "not a saved conversation: " .. why)
end

local function is_usage_details(k)
  for _, name in ipairs(USAGE_DETAILS) do
    if k == name then return true end
  end
  return false
end

--- Loads a conversation saved by `to_json` (also `client:conversation_from_json(s)`).
-- @treturn ?Conversation the conversation, or nil, err (kind "decode")
function M.from_json(client, s)
  if not core.is_client(client) then
    argerror("conversation_from_json", 1, "openrouter client expected, got " .. type(client))
  end
  checktype("conversation_from_json", 1, s, "string")
  local data, why = core.json_decode(s)
  if data == nil then return invalid(why) end
  if type(data) ~= "table" or data.format ~= FORMAT then return invalid("no '" .. FORMAT .. "' format tag") end
  if data.version ~= FORMAT_VERSION then return invalid("unsupported version " .. tostring(data.version)) end
  local function optional(field, kind)
    local v = data[field]
    if v == core.null then data[field] = nil; return true end
    return v == nil or type(v) == kind
  end
  for field, kind in pairs{ model = "string", system = "string", params = "table", usage = "table",
                            max_tool_rounds = "number", max_messages = "number" } do
    if not optional(field, kind) then return invalid(("'%s' must be a %s"):format(field, kind)) end
  end
  if not is_sequence(data.messages) then return invalid("'messages' must be an array") end
  for i, m in ipairs(data.messages) do
    if type(m) ~= "table" or type(m.role) ~= "string" then
      return invalid(("messages[%d] has no role"):format(i))
    end
  end
  local usage = fresh_usage()
  for k, v in pairs(data.usage or {}) do
    local details = type(v) == "table" and is_usage_details(k)
    if type(v) ~= "number" and not details then
      return invalid(("usage.%s must be a number"):format(tostring(k)))
    end
    if details then
      for dk, dv in pairs(v) do
        if type(dv) ~= "number" then
          return invalid(("usage.%s.%s must be a number"):format(k, tostring(dk)))
        end
      end
    end
    usage[k] = v
  end
  local ok, conv = pcall(M.new, client, { model = data.model, system = data.system,
    params = data.params, max_tool_rounds = data.max_tool_rounds, max_messages = data.max_messages })
  if not ok then return invalid(tostring(conv)) end
  conv.messages = data.messages
  conv.totals = usage
  return conv
end

--- Adds `conversation` and `conversation_from_json` to the client type.
-- @param openrouter the openrouter module
function M.install(openrouter)
  openrouter.Client.conversation = M.new
  openrouter.Client.conversation_from_json = M.from_json
end

return M
