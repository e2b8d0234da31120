-- OAuth PKCE (lua/openrouter/oauth.lua, src/sha256.c, src/platform.c): SHA-256 against
-- FIPS 180-4's vectors and sha256sum, the verifier and challenge of RFC 7636 (Appendix B's
-- example), the authorization URL at the site root of base_url, and the whole flow against
-- the emulator: its authorization page redirects to the callback with a code, and
-- client:exchange_code turns the code and the verifier into a key.
local openrouter = require("openrouter")
local core = require("openrouter.core")
local emulator = require("spec.support.emulator_control")
local socket = require("socket")
local url = require("socket.url")

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function sha256sum(s)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  local p = assert(io.popen("sha256sum < '" .. path .. "'"))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return out:match("^(%x+)")
end

describe("core.sha256", function()
  it("FIPS 180-4 / NIST test vectors", function()
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      hex(core.sha256("")))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      hex(core.sha256("abc")))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      hex(core.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
    assert.are.equal("cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
      hex(core.sha256("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
        .. "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")))
    assert.are.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
      hex(core.sha256(("a"):rep(1000000))))
  end)

  it("equals sha256sum around the block and padding boundaries, binary-safe", function()
    if not sha256sum("") then return pending("sha256sum is not installed") end
    for _, n in ipairs{ 1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000 } do
      local t = {}
      for i = 1, n do t[i] = string.char((i * 37 + n) % 256) end
      local s = table.concat(t)
      assert.are.equal(sha256sum(s), hex(core.sha256(s)), "length " .. n)
    end
  end)

  it("misuse raises", function()
    assert.has_error(function() core.sha256() end)
  end)
end)

describe("openrouter.oauth.pkce", function()
  it("a 64-character verifier of unreserved characters and its S256 challenge", function()
    local p = assert(openrouter.oauth.pkce())
    assert.are.equal("S256", p.method)
    assert.are.equal(64, #p.verifier)
    assert.matches("^[%w%-_]+$", p.verifier)
    assert.are.equal(core.base64(core.sha256(p.verifier), "url"), p.challenge)
    assert.are.equal(43, #p.challenge)
    assert.matches("^[%w%-_]+$", p.challenge)
  end)

  it("RFC 7636 Appendix B: the example verifier gives the example challenge", function()
    local verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert.are.equal("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
      core.base64(core.sha256(verifier), "url"))
  end)

  it("fresh every time; lengths 43 to 128", function()
    local seen = {}
    for _ = 1, 200 do
      local v = openrouter.oauth.pkce().verifier
      assert.is_nil(seen[v])
      seen[v] = true
    end
    for _, n in ipairs{ 43, 44, 100, 127, 128 } do
      assert.are.equal(n, #openrouter.oauth.pkce(n).verifier)
    end
  end)

  it("core.random_bytes: n bytes, every byte value in a large sample", function()
    local counts, s = {}, core.random_bytes(4096)
    assert.are.equal(4096, #s)
    for i = 1, #s do counts[s:byte(i)] = true end
    local distinct = 0
    for _ in pairs(counts) do distinct = distinct + 1 end
    assert.is_true(distinct > 240)
    assert.has_error(function() core.random_bytes(0) end)
    assert.has_error(function() core.random_bytes(4097) end)
  end)

  it("misuse raises", function()
    assert.has_error(function() openrouter.oauth.pkce(42) end,
      "bad argument #1 to 'pkce' (an integer from 43 to 128 expected, got 42)")
    assert.has_error(function() openrouter.oauth.pkce(129) end)
    assert.has_error(function() openrouter.oauth.pkce(50.5) end)
    assert.has_error(function() openrouter.oauth.pkce("64") end)
  end)
end)

describe("openrouter.oauth.authorize_url", function()
  it("at the site root of base_url, every value percent-encoded", function()
    assert.are.equal("https://openrouter.ai/auth?callback_url=http%3A%2F%2F127.0.0.1%3A3000%2Fcb"
      .. "%3Fa%3D1%26b%3D2&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
      .. "&code_challenge_method=S256",
      openrouter.oauth.authorize_url{ callback_url = "http://127.0.0.1:3000/cb?a=1&b=2",
        code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        code_challenge_method = "S256", base_url = "https://openrouter.ai/api/v1" })
    local function root(base)
      return openrouter.oauth.authorize_url{ callback_url = "https://app.example/cb",
        code_challenge = "abc", base_url = base }:match("^(.-)/auth%?")
    end
    assert.are.equal("http://127.0.0.1:8080", root("http://127.0.0.1:8080/api/v1/"))
    assert.are.equal("https://proxy.example/openrouter", root("https://proxy.example/openrouter/api/v1"))
    assert.are.equal("https://gw.example", root("https://gw.example/v1"))
  end)

  it("base_url defaults to $OPENROUTER_BASE_URL, else the public API", function()
    local expected = os.getenv("OPENROUTER_BASE_URL")
      and openrouter.oauth.site_root(os.getenv("OPENROUTER_BASE_URL")) or "https://openrouter.ai"
    local u = openrouter.oauth.authorize_url{ callback_url = "https://a.example/", code_challenge = "x" }
    assert.are.equal(expected .. "/auth?", u:sub(1, #expected + 6))
    assert.matches("code_challenge_method=S256$", u)
  end)

  it("misuse raises", function()
    local ok = { callback_url = "https://a.example/", code_challenge = "abc" }
    assert.has_error(function() openrouter.oauth.authorize_url() end)
    for field, bad in pairs{ callback_url = "ftp://x", code_challenge = "a b",
                             code_challenge_method = "S512", base_url = "openrouter.ai",
                             callbackurl = "x" } do
      local p = {}
      for k, v in pairs(ok) do p[k] = v end
      p[field] = bad
      assert.has_error(function() openrouter.oauth.authorize_url(p) end, nil, field)
    end
  end)
end)

-- Plays the browser: GET the authorization URL, return the Location it redirects to.
local function follow(auth_url)
  local parsed = url.parse(auth_url)
  local sock = assert(socket.connect(parsed.host, tonumber(parsed.port)))
  sock:settimeout(10)
  sock:send("GET " .. parsed.path .. "?" .. parsed.query .. " HTTP/1.1\r\nHost: " .. parsed.host
    .. "\r\nConnection: close\r\n\r\n")
  local raw = sock:receive("*a")
  sock:close()
  return tonumber(raw:match("^HTTP/1%.%d (%d+)")), raw:match("\r\n[Ll]ocation: ([^\r\n]+)")
end

-- The emulator's authorization page (GET {site root}/auth) and POST /auth/keys.
describe("the PKCE flow against the emulator", function()
  local emu = emulator.for_spec{ reset = false }
  local client
  setup(function()
    client = openrouter.new{ base_url = emu.url, api_key = "" }
  end)
  teardown(function()
    client:close()
  end)

  it("authorize, redirect with a code, exchange the code and the verifier for a key", function()
    local p = assert(openrouter.oauth.pkce())
    local status, location = follow(openrouter.oauth.authorize_url{
      callback_url = "http://127.0.0.1:9/callback?state=xyz", code_challenge = p.challenge,
      code_challenge_method = p.method, base_url = emu.url })
    assert.is_true(status == 302 or status == 303, "status " .. tostring(status))
    assert.matches("^http://127%.0%.0%.1:9/callback%?state=xyz&code=", location)
    local code = url.unescape(location:match("[?&]code=([^&]+)"))
    local res, err = client:exchange_code{ code = code, code_verifier = p.verifier,
      code_challenge_method = "S256" }
    assert.is_nil(err)
    assert.matches("^sk%-or%-v1%-", res.key)
    assert.is_not_nil(res.user_id)
    -- the new key works
    local user = openrouter.new{ base_url = emu.url, api_key = res.key }
    assert.is_table(assert(user:get_credits()))
    user:close()
  end)

  it("a wrong verifier, or a code used twice: api error 403 or 400", function()
    local p = assert(openrouter.oauth.pkce())
    local _, location = follow(openrouter.oauth.authorize_url{ callback_url = "http://127.0.0.1:9/cb",
      code_challenge = p.challenge, base_url = emu.url })
    local code = url.unescape(location:match("[?&]code=([^&]+)"))
    local res, err = client:exchange_code{ code = code, code_verifier = openrouter.oauth.pkce().verifier,
      code_challenge_method = "S256" }
    assert.is_nil(res)
    assert.are.equal("api", err.kind)
    assert.is_true(err.status == 400 or err.status == 403)
    assert(client:exchange_code{ code = code, code_verifier = p.verifier, code_challenge_method = "S256" })
    res, err = client:exchange_code{ code = code, code_verifier = p.verifier, code_challenge_method = "S256" }
    assert.is_nil(res)
    assert.are.equal("api", err.kind)
  end)
end)
