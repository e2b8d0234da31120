-- OAuth PKCE sign-in: the authorization page (GET /auth, at the site root, not under
-- /api/v1) where a signed-in user always approves, and POST /auth/keys, which trades its code
-- for a key.

local util = require("openrouter.emulator.util")
local unpack, error_body, parse_query = util.unpack, util.error_body, util.parse_query
local hex_id = util.hex_id
local http = require("openrouter.emulator.http")
local respond, respond_json = http.respond, http.respond_json
local checks = require("openrouter.emulator.checks")
local bad_request, json_object_body = checks.bad_request, checks.json_object_body
local nullable = checks.nullable

local API = {}

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

-- Used by spec/oauth_spec.lua and spec/api_more_spec.lua. A challenge without a method is
-- "plain" (RFC 7636); the request is recorded in the log like the API's.
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

-- Used by spec/oauth_spec.lua and spec/api_more_spec.lua. Codes live until POST
-- /_emulator/reset.
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
API["/auth/keys"] = { method = "POST", handler = exchange_code }

return { routes = API, authorization_page = authorization_page }
