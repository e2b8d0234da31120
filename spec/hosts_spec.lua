-- The library inside real hosts: LÖVE (polling from love.update, under Xvfb),
-- which embeds LuaJIT and loads build/luajit/openrouter/core.so. Neovim has its
-- own spec: spec/nvim_spec.lua.
local emulator = require("spec.support.emulator_control")

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function run(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

describe("hosts", function()
  local emu, root

  setup(function()
    emu = emulator.start()
    local p = io.popen("pwd")
    root = p:read("*l")
    p:close()
  end)

  teardown(function()
    emu:stop()
  end)

  it("LÖVE: the example keeps drawing frames while a slow reply streams (Xvfb)", function()
    local out = os.tmpname()
    os.remove(out)
    local cmd = ("OPENROUTER_ROOT=%s OPENROUTER_BASE_URL=%s OPENROUTER_API_KEY=sk-or-love-0123456789 "
      .. "OPENROUTER_MODEL=emulator/slow:100 OPENROUTER_LOVE_RESULT=%s "
      .. "env -u LD_PRELOAD timeout 60 xvfb-run -a love %s >/dev/null 2>&1"):format(
      shell_quote(root), shell_quote(emu.url), shell_quote(out), shell_quote(root .. "/examples/love"))
    run(cmd)
    local f = io.open(out, "r")
    assert.is_not_nil(f, "LÖVE wrote no result")
    local result = {}
    for line in f:lines() do
      local k, v = line:match("^([%w_]+)=(.*)$")
      if k then result[k] = v end
    end
    f:close()
    os.remove(out)
    assert.are.equal("true", result.ok, result.text)
    assert.are.equal("Echo: Tell a one-line story about a game loop.", result.text)
    -- the ~1 s stream spanned many frames: polling never held a frame back
    assert.is_true(tonumber(result.frames_while_streaming) >= 20,
      "only " .. tostring(result.frames_while_streaming) .. " frames while streaming")
  end)
end)
