-- The account: GET /key, GET /credits, and API key provisioning (/keys, /keys/{hash}).

local util = require("openrouter.emulator.util")
local null, DEFAULT_WORKSPACE, json_array = util.null, util.DEFAULT_WORKSPACE, util.json_array
local error_body, parse_query, hex_id = util.error_body, util.parse_query, util.hex_id
local http = require("openrouter.emulator.http")
local respond_json = http.respond_json
local checks = require("openrouter.emulator.checks")
local authenticate, is_management_key = checks.authenticate, checks.is_management_key
local bad_request, json_object_body = checks.bad_request, checks.json_object_body
local nullable = checks.nullable

local API, API_PATTERNS = {}, {}

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

-- GET /key (key): the key's limits and usage; is_management_key = true for "sk-or-mgmt-..."
-- (spec/api_spec.lua, spec/emulator_routes_spec.lua).
API["/key"] = { method = "GET", handler = function(conn, req)
  local key = authenticate(conn, req)
  if key then respond_json(conn, 200, key_info(key)) end
end }

-- GET /credits (key): { data = { total_credits, total_usage } } (spec/api_spec.lua).
API["/credits"] = { method = "GET", handler = function(conn, req)
  if not authenticate(conn, req) then return end
  respond_json(conn, 200, { data = { total_credits = 100.5, total_usage = 25.75 } })
end }

-- API key provisioning: a management key (sk-or-mgmt-...) only; keys live per server until
-- POST /_emulator/reset. Hashes and secrets are deterministic from the order of creation.
local LIMIT_RESETS = { daily = true, weekly = true, monthly = true }

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

-- GET, POST /keys; GET, PATCH, DELETE /keys/{hash} (spec/emulator_routes_spec.lua): key
-- provisioning, for a management key only: one starting with "sk-or-mgmt-"; any other gets
-- 403 "Only management keys can perform this operation". Keys live in the server until POST
-- /_emulator/reset; hash and key are 64 hex digits fixed by the order of creation (the nth key
-- after a reset is always the same). POST answers 201 { data, key } (the only time `key` is
-- sent), GET /keys { data = [...] } (the default workspace unless ?workspace_id=, disabled keys
-- only with ?include_disabled=true, ?offset=N), DELETE { deleted = true }; 404 for an unknown
-- hash, 400 for a body the description refuses.
API["/keys"] = { method = "GET, POST", handler = keys_collection }
API_PATTERNS[#API_PATTERNS + 1] = { "^/keys/([^/]+)$", "GET, PATCH, DELETE", key_by_hash }

return { routes = API, patterns = API_PATTERNS }
