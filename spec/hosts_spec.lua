-- The library inside real hosts: Neovim (vim.json, a vim.loop timer driving
-- client:poll) and LÖVE (polling from love.update, under Xvfb). Both embed
-- LuaJIT and load build/luajit/openrouter/core.so.
local emulator = require("spec.support.emulator_control")
local cjson = require("cjson")

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function run(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function read_json(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return cjson.decode(s)
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

  it("Neovim: the example plugin streams into a buffer while the editor keeps running", function()
    local out = os.tmpname()
    local cmd = ("OPENROUTER_ROOT=%s OPENROUTER_BASE_URL=%s OPENROUTER_NVIM_RESULT=%s "
      .. "env -u LD_PRELOAD timeout 60 nvim --headless --clean -u NONE -c %s >/dev/null 2>&1"):format(
      shell_quote(root), shell_quote(emu.url), shell_quote(out),
      shell_quote("luafile " .. root .. "/spec/support/nvim_check.lua"))
    run(cmd)
    local result = read_json(out)
    os.remove(out)
    assert.is_table(result, "nvim wrote no result")
    assert.is_true(result.ok, result.failure)
    assert.is_true(result.command)
    assert.are.equal("vim.json", result.json_backend)  -- no lua-cjson on the path
    assert.is_false(result.cjson_loaded)
    assert.is_true(result.finished)
    assert.are.equal("Echo: hello from neovim", result.text)
    assert.are.same({ "> hello from neovim", "Echo: hello from neovim" }, result.lines)
    -- the call returned at once and the editor's timers kept firing during the
    -- ~0.8 s stream (a blocked editor would show almost no ticks)
    assert.is_true(result.returned_after_ms < 200, "chat() blocked for " .. result.returned_after_ms .. " ms")
    assert.is_true(result.elapsed_ms > 500)
    assert.is_true(result.ticks >= 20, ("only %d timer ticks in %.0f ms"):format(result.ticks, result.elapsed_ms))
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
