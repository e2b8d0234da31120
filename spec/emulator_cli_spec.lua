-- `openrouter emulator`, run as an installed command runs: the launcher alone in an empty
-- environment (no LUA_PATH: it finds openrouter.emulator beside itself), and a client of the
-- library pointed at the URL it prints, as a plugin's or a game's tests would do.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")

local LUA = os.getenv("OPENROUTER_EMULATOR_LUA") or "lua5.4"
local KEY = "sk-or-v1-emulator-cli-spec"

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function root()
  local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then dir = (os.getenv("PWD") or ".") .. "/" .. dir end
  return dir .. "/.."
end

describe("openrouter emulator (the command)", function()
  local emu, client

  setup(function()
    -- timeout: a crashed run leaves no server behind (the command has no --parent-pid)
    emu = emulator.start{ command = "exec env -i PATH=/usr/local/bin:/usr/bin:/bin OPENROUTER_LUA="
      .. shell_quote(LUA) .. " timeout 300 " .. shell_quote(root() .. "/bin/openrouter")
      .. " emulator --port 0 2>/dev/null" }
    client = openrouter.new{ api_key = KEY, base_url = emu.url, max_retries = 0 }
  end)

  teardown(function()
    if client then client:close() end
    if emu then emu:stop() end
  end)

  before_each(function()
    emu:reset()
  end)

  local function chat(model, text)
    return { model = model, messages = { { role = "user", content = text or "hello there" } } }
  end

  it("prints the URL of an API on a free port of 127.0.0.1", function()
    assert.matches("^http://127%.0%.0%.1:%d+/api/v1$", emu.url)
  end)

  it("answers an ordinary model with an echo, and logs the request", function()
    local res = assert(client:chat_completion(chat("openai/gpt-4o-mini")))
    assert.are.equal("Echo: hello there", openrouter.text(res))
    local req = emu:last_request()
    assert.are.equal("/api/v1/chat/completions", req.path)
    assert.are.equal("Bearer " .. KEY, req.headers.authorization)
  end)

  it("streams: emulator/long:<n> sends n chunks", function()
    local n = 0
    local res = assert(client:chat_completion(chat("emulator/long:25"), function() n = n + 1 end))
    assert.is_true(n >= 25)
    assert.are.equal(string.rep("tok ", 25), openrouter.text(res))
  end)

  it("scenario models produce errors: an HTTP status, an error mid-stream", function()
    local res, err = client:chat_completion(chat("emulator/fail:503:1"))
    assert.is_nil(res)
    assert.are.equal(503, err.status)
    res = assert(client:chat_completion(chat("emulator/fail:503:1"))) -- only the first fails
    assert.are.equal("Echo: hello there", openrouter.text(res))
    res, err = client:chat_completion(chat("emulator/mid-stream-error"), function() end)
    assert.is_nil(res)
    assert.are.equal("api", err.kind)
  end)

  it("a malformed key gets 401, as from OpenRouter", function()
    local bad = openrouter.new{ api_key = "not-a-key", base_url = emu.url, max_retries = 0 }
    local res, err = bad:chat_completion(chat("openai/gpt-4o-mini"))
    bad:close()
    assert.is_nil(res)
    assert.are.equal(401, err.status)
  end)
end)
