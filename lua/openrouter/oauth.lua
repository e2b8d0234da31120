--- Sign in with OpenRouter: OAuth PKCE (RFC 7636).
--
-- A program given to others can let each user sign in instead of asking for a key:
--
--     local pkce = assert(openrouter.oauth.pkce())
--     local url = openrouter.oauth.authorize_url{ callback_url = "http://127.0.0.1:3000/cb",
--       code_challenge = pkce.challenge, code_challenge_method = pkce.method }
--     -- send the user to `url`; OpenRouter redirects to callback_url?code=...
--     local res = assert(client:exchange_code{ code = code, code_verifier = pkce.verifier,
--       code_challenge_method = pkce.method })
--     -- res.key is the user's new API key
--
-- The verifier comes from the system's cryptographic random source (getrandom or
-- /dev/urandom; BCryptGenRandom on Windows) and the challenge is its SHA-256 in
-- base64url, both computed in C (`core.random_bytes`, `core.sha256`, `core.base64`).
-- @module openrouter.oauth

local core = require("openrouter.core")
local shared = require("openrouter.shared")

local M = {}

local argerror = shared.argerror

--- A PKCE verifier and its S256 challenge.
-- @tparam[opt=64] integer length the verifier's length, 43 to 128 (RFC 7636, 4.1)
-- @treturn ?table `{ verifier =, challenge =, method = "S256" }`: the verifier is made of
--   unreserved characters (`A-Z a-z 0-9 - _`); or nil, err (kind "other") when the
--   system's random source failed
function M.pkce(length)
  if length == nil then length = 64 end
  if type(length) ~= "number" or length % 1 ~= 0 or length < 43 or length > 128 then
    argerror("pkce", 1, "an integer from 43 to 128 expected, got " .. tostring(length))
  end
  -- 6 random bits per character: base64url of ceil(length * 3 / 4) bytes, cut to length
  local bytes, why = core.random_bytes(math.ceil(length * 3 / 4))
  if not bytes then
    return nil, shared.new_error("other", why, { code = "random_source" })
  end
  local verifier = core.base64(bytes, "url"):sub(1, length)
  return { verifier = verifier, challenge = core.base64(core.sha256(verifier), "url"),
           method = "S256" }
end

-- RFC 3986 percent-encoding: every byte but the unreserved ones.
local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- The site root of an API base URL: "https://openrouter.ai/api/v1" -> "https://openrouter.ai".
-- A base URL ending in "/api/v1" loses that suffix; any other keeps its scheme, host and port.
-- @tparam string base_url
-- @treturn string
function M.site_root(base_url)
  base_url = base_url:gsub("/+$", "")
  local root = base_url:match("^(.-)/api/v1$")
  if root and root:find("^https?://[^/]") then return root end
  return base_url:match("^(https?://[^/]+)") or base_url
end

local AUTHORIZE_FIELDS = { callback_url = true, code_challenge = true,
                           code_challenge_method = true, base_url = true }

--- The URL of OpenRouter's authorization page, where the user signs in and approves:
-- `https://openrouter.ai/auth?callback_url=...&code_challenge=...&code_challenge_method=S256`.
-- @tparam table params `callback_url` (an http:// or https:// URL; a local program uses
--   http://127.0.0.1:PORT/...), `code_challenge` (from `pkce()`), `code_challenge_method`
--   ("S256", the default, or "plain"), `base_url` (default `$OPENROUTER_BASE_URL` or the
--   public API: the page lives at its site root). Misuse raises.
-- @treturn string the URL
function M.authorize_url(params)
  shared.checktype("authorize_url", 1, params, "table")
  for k in pairs(params) do
    if not AUTHORIZE_FIELDS[k] then argerror("authorize_url", 1, ("unknown field '%s'"):format(tostring(k))) end
  end
  local cb, challenge = params.callback_url, params.code_challenge
  local method = params.code_challenge_method or "S256"
  if type(cb) ~= "string" or not cb:find("^https?://[^/%s]") or cb:find("[%s%c]") then
    argerror("authorize_url", 1, "'callback_url' must be an http:// or https:// URL")
  end
  if type(challenge) ~= "string" or not challenge:find("^[%w%-%._~]+$") then
    argerror("authorize_url", 1, "'code_challenge' must be a string of unreserved characters")
  end
  if method ~= "S256" and method ~= "plain" then
    argerror("authorize_url", 1, "'code_challenge_method' must be 'S256' or 'plain'")
  end
  local base = params.base_url or os.getenv("OPENROUTER_BASE_URL") or shared.DEFAULT_BASE_URL
  if type(base) ~= "string" or not base:find("^https?://[^/]") then
    argerror("authorize_url", 1, "'base_url' must be an http:// or https:// URL")
  end
  return M.site_root(base) .. "/auth?callback_url=" .. escape(cb) .. "&code_challenge="
    .. escape(challenge) .. "&code_challenge_method=" .. method
end

return M
