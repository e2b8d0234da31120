--- `:checkhealth openrouter`: whether the module loads in this Neovim (its ABI), the
-- libcurl and TLS backend it runs on, its JSON backend, where the API key comes from
-- (never the key itself), and whether each base URL in use answers `GET /models`.
-- Neovim finds this file through the runtimepath (`lua/openrouter/health.lua`).
-- @module openrouter.health

local M = {}

-- its own copy of openrouter.shared.DEFAULT_BASE_URL: this module must load, and report,
-- when the library (its C core, which openrouter.shared needs) does not
local DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"

-- vim.health.start/ok/... (0.10), or the report_* names (vim.health on 0.8 and 0.9,
-- require("health") on 0.7).
local function reporter()
  local h = vim.health
  if not (h and (h.start or h.report_start)) then h = require("health") end
  return {
    start = h.start or h.report_start,
    ok = h.ok or h.report_ok,
    info = h.info or h.report_info,
    warn = h.warn or h.report_warn,
    error = h.error or h.report_error,
  }
end

-- A URL for a message: the password of a user:password@ shown as ***.
local function shown_url(url)
  return (url:gsub("^(%a[%w+.-]*://[^/@:]*):[^/@]*@", "%1:***@"))
end

local function env(name)
  local v = os.getenv(name)
  if v and v ~= "" then return v end
end

local function check_module(r)
  r.start("openrouter: the module")
  local ok, openrouter = pcall(require, "openrouter")
  if not ok then
    r.error("openrouter does not load: " .. tostring(openrouter), {
      "Neovim runs LuaJIT: build the module against the Lua 5.1 ABI "
        .. "(luarocks --lua-version=5.1 install openrouter, or make LUA=luajit in a checkout)",
      "openrouter/core.so must be on package.cpath: " .. package.cpath,
    })
    return nil
  end
  local path = package.searchpath and package.searchpath("openrouter.core", package.cpath)
  r.ok(("openrouter %s%s"):format(openrouter.VERSION, path and (" (" .. path .. ")") or ""))
  local lua = rawget(_G, "jit") and jit.version or _VERSION
  r.ok(("runs on %s (the Lua 5.1 ABI)"):format(lua))
  return openrouter
end

local function check_curl(r, openrouter)
  r.start("openrouter: libcurl")
  if openrouter.ssl_version then
    r.ok(("libcurl %s, TLS by %s"):format(openrouter.curl_version, openrouter.ssl_version))
  else
    r.warn(("libcurl %s has no TLS backend: https:// base URLs fail"):format(openrouter.curl_version),
      { "install a libcurl built with TLS (Debian: libcurl4 with OpenSSL)" })
  end
end

local function check_json(r, openrouter)
  r.start("openrouter: JSON")
  if openrouter.json_backend == "vim.json" and openrouter.null == vim.NIL then
    r.ok("vim.json; openrouter.null is vim.NIL (JSON null in responses and requests)")
  else
    r.warn(("JSON backend %s: openrouter.null is not vim.NIL"):format(tostring(openrouter.json_backend)),
      { "an openrouter.core older than this Lua code: rebuild or reinstall the module" })
  end
end

-- The base URLs in use: $OPENROUTER_BASE_URL (or the public API) and those of the
-- clients plugins made through openrouter.nvim.
local function base_urls()
  local list, seen = {}, {}
  local function add(url)
    if url and not seen[url] then
      seen[url] = true
      list[#list + 1] = url
    end
  end
  add(env("OPENROUTER_BASE_URL") or DEFAULT_BASE_URL)
  local ok, nv = pcall(require, "openrouter.nvim")
  if ok then
    for _, c in pairs(nv.clients) do add(c.base_url) end
  end
  return list
end

local function new_client(openrouter, url, key)
  return openrouter.new{ base_url = url, api_key = key, timeout = 10, connect_timeout = 5,
    max_retries = 0 }
end

local function check_key(r, openrouter)
  r.start("openrouter: API key")
  local key, found = env("OPENROUTER_API_KEY"), false
  if key then
    found = true
    local url = env("OPENROUTER_BASE_URL") or DEFAULT_BASE_URL
    local ok, client = pcall(new_client, openrouter, url, key)
    local res, err
    if ok then
      res, err = client:request{ path = "/key" }
      client:close()
    else
      err = client
    end
    if res then
      r.ok(("$OPENROUTER_API_KEY is set (not shown) and %s accepts it"):format(shown_url(url)))
    elseif type(err) == "table" and (err.status == 401 or err.status == 403) then
      r.error(("$OPENROUTER_API_KEY is set (not shown), and %s refuses it: %s"):format(shown_url(url),
        tostring(err)), { "check the key at https://openrouter.ai/settings/keys" })
    else
      r.ok("$OPENROUTER_API_KEY is set (not shown); not checked: " .. tostring(err))
    end
  end
  local ok, nv = pcall(require, "openrouter.nvim")
  if ok then
    for _, c in pairs(nv.clients) do
      if c.key_source then
        found = true
        r.ok(("a plugin's client (openrouter.nvim) for %s has a key from %s (not shown)")
          :format(shown_url(c.base_url), c.key_source))
      end
    end
  end
  if not found then
    r.warn("no API key: $OPENROUTER_API_KEY is not set, and no client made through "
      .. "openrouter.nvim has one", {
      "export OPENROUTER_API_KEY before starting Neovim, or give api_key to your plugin's setup()",
      "requests that need a key fail with kind \"api\", status 401",
    })
  end
end

-- What to do about a failed GET /models, by the error's kind.
local ADVICE = {
  network = "check the network, the URL, and the proxy ($https_proxy, the proxy option)",
  timeout = "the server did not answer within 10 s: check the URL and the network",
  http = "something that is not OpenRouter answered: check the URL and any proxy",
  api = "OpenRouter answered with an error: see the message",
  decode = "the answer was not OpenRouter's JSON: check the URL",
}

local function check_reachable(r, openrouter)
  r.start("openrouter: base_url")
  for _, url in ipairs(base_urls()) do
    local ok, client = pcall(new_client, openrouter, url, env("OPENROUTER_API_KEY"))
    if not ok then
      r.error(("%s: %s"):format(shown_url(url), tostring(client)))
    else
      local models, err, info = client:get_models()
      client:close()
      if models then
        r.ok(("%s answers GET /models: %d models in %.1f ms"):format(shown_url(url), #models,
          (info and info.elapsed or 0) * 1000))
      else
        r.error(("%s: GET /models failed: %s"):format(shown_url(url), tostring(err)),
          { ADVICE[type(err) == "table" and err.kind] or "see the message" })
      end
    end
  end
end

--- Runs the checks (called by `:checkhealth openrouter`).
function M.check()
  local r = reporter()
  local openrouter = check_module(r)
  if not openrouter then return end
  check_curl(r, openrouter)
  check_json(r, openrouter)
  check_key(r, openrouter)
  check_reachable(r, openrouter)
end

return M
