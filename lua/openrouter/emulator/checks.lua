-- What routes check first: the API key (401), a JSON object body, a model id (400).

local util = require("openrouter.emulator.util")
local null, error_body = util.null, util.error_body
local http = require("openrouter.emulator.http")
local respond_json = http.respond_json

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

-- A management key (keys, workspaces, guardrails...): in the emulator, one whose text starts
-- with "sk-or-mgmt-".
local function is_management_key(key)
  return key:sub(1, 11) == "sk-or-mgmt-"
end

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

local function nullable(value, kind)
  return value == nil or value == null or type(value) == kind
end

return {
  authenticate = authenticate, bad_request = bad_request, is_management_key = is_management_key,
  json_object_body = json_object_body, nullable = nullable, refuse_model = refuse_model,
}
