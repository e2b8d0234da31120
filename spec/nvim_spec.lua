-- The library inside Neovim (nvim --headless, the LuaJIT build in build/luajit)
-- against the emulator: openrouter.nvim, the example plugin and its three old bugs,
-- :checkhealth openrouter, :help openrouter, and what openrouter.null is there.
-- Each case runs in a fresh nvim (spec/support/nvim_check.lua) and reports as JSON.
local emulator = require("spec.support.emulator_control")
local openrouter = require("openrouter")
local cjson = require("cjson")

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function read_json(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return cjson.decode(s)
end

local have_nvim = os.execute("command -v nvim >/dev/null 2>&1")
have_nvim = have_nvim == true or have_nvim == 0

local CJSON_51 = "/usr/lib/x86_64-linux-gnu/lua/5.1"

describe("Neovim", function()
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

  -- Runs one case of nvim_check.lua; env: extra environment variables.
  local function run_case(case, env)
    assert(have_nvim, "nvim is not installed (make test installs it)")
    local out = os.tmpname()
    local vars = { OPENROUTER_ROOT = root, OPENROUTER_BASE_URL = emu.url, OPENROUTER_NVIM_RESULT = out,
      OPENROUTER_NVIM_CASE = case }
    for k, v in pairs(env or {}) do vars[k] = v end
    local prefix, unset = {}, " -u OPENROUTER_API_KEY"
    for k, v in pairs(vars) do
      if v == false then unset = unset .. " -u " .. k else prefix[#prefix + 1] = k .. "=" .. shell_quote(v) end
    end
    local cmd = ("env -u LD_PRELOAD%s %s timeout 60 nvim --headless --clean -u NONE -c %s </dev/null >/dev/null 2>&1")
      :format(unset, table.concat(prefix, " "),
        shell_quote("luafile " .. root .. "/spec/support/nvim_check.lua"))
    os.execute(cmd)
    local result = read_json(out)
    os.remove(out)
    assert.is_table(result, "nvim wrote no result for " .. case)
    assert.is_true(result.ok, result.failure)
    -- whatever the case, nothing polled: the editor's loop drove every request
    assert.are.equal(0, result.polls)
    return result
  end

  local function generation(id)
    local client = openrouter.new{ api_key = "sk-or-nvim-spec", base_url = emu.url }
    local g = assert(client:get_generation(id, { wait = 5 }))
    client:close()
    return g
  end

  it("the example plugin streams into a buffer, driven by the editor's loop", function()
    local result = run_case("stream")
    assert.is_true(result.command)
    assert.are.equal("Echo: hello from neovim", result.done.text)
    assert.is_false(result.done.fast)  -- on_done runs where the editor API may be called
    assert.are.same({ "> hello from neovim", "Echo: hello from neovim" }, result.done.lines)
    -- the call returned at once and the editor's timers kept firing during the
    -- ~0.5 s stream (a blocked editor would show almost no ticks)
    assert.is_true(result.returned_after_ms < 200, "chat() blocked for " .. result.returned_after_ms .. " ms")
    assert.is_true(result.elapsed_ms > 300)
    assert.is_true(result.ticks >= 15, ("only %d timer ticks in %.0f ms"):format(result.ticks, result.elapsed_ms))
    -- in process: no subprocess while it streams (so no key in any argv), no file opened
    assert.are.same({}, result.children)
    assert.are.same({}, result.new_files)
    -- no lua-cjson on the path here: vim.json, and null is vim.NIL
    assert.is_false(result.cjson_loaded)
    assert.are.equal("vim.json", result.json_backend)
    assert.is_true(result.null_is_nil)
  end)

  it("a second :OpenRouterChat leaves the first reply streaming: both complete", function()
    local result = run_case("two_chats")
    assert.is_true(result.first_streaming)
    assert.is_true(result.distinct_buffers)
    assert.is_nil(result.first.err)
    assert.is_nil(result.second.err)
    assert.are.same({ "> first question here", "Echo: first question here" }, result.first.lines)
    assert.are.same({ "> second one", "Echo: second one" }, result.second.lines)
  end)

  it("closing the reply's window cancels its request: the generation stops", function()
    emu:reset()
    local result = run_case("close_window")
    assert.is_true(result.buffer_wiped)
    assert.are.equal("cancelled", result.done.kind)
    assert.is_false(result.done.fast)
    assert.is_string(result.done.generation_id)
    -- the server saw the client walk out of the stream (a 12-word reply at 150 ms
    -- a word would have taken about 2 s more)
    local g = generation(result.done.generation_id)
    assert.is_true(g.cancelled)
    local chats = 0
    for _, r in ipairs(emu:requests()) do
      if r.path == "/api/v1/chat/completions" then chats = chats + 1 end
    end
    assert.are.equal(1, chats)
  end)

  it("openrouter.nvim: wiping a buffer cancels what streams into it; callbacks on the main loop", function()
    local result = run_case("wipe")
    assert.are.equal("cancelled", result.done.kind)
    assert.is_true(generation(result.done.generation_id).cancelled)
    -- a plain async request: on_response, every chunk, then on_done, none in a fast context
    assert.are.equal("Echo: a b c", result.plain.text)
    assert.are.equal("response 200", result.order[1])
    assert.are.equal("done false", result.order[#result.order])
    for i = 2, #result.order - 1 do assert.are.equal("chunk false", result.order[i]) end
    assert.is_true(#result.order >= 4)
    -- on_chunk returning false cancels, and no chunk comes after it
    assert.are.equal("cancelled", result.stopped.kind)
    assert.are.equal(2, result.stopped_chunks)
  end)

  it("setup() while a reply streams: the reply finishes, the old client closes after it", function()
    local result = run_case("setup_while_streaming")
    assert.is_nil(result.first.err)
    assert.are.equal("Echo: streaming while setup runs", result.first.text)
    assert.are.equal("Echo: after setup", result.second.text)
    assert.is_true(result.old_closed)
    assert.are.equal("", result.errmsg)
  end)

  it("a request that times out ends with kind timeout; the editor keeps running", function()
    local result = run_case("timeout")
    assert.are.equal("timeout", result.done.kind)
    assert.is_true(result.elapsed_ms >= 900 and result.elapsed_ms < 5000, tostring(result.elapsed_ms))
    assert.is_true(result.ticks >= 30, ("only %d timer ticks in %.0f ms"):format(result.ticks, result.elapsed_ms))
  end)

  it("a task on an openrouter.nvim client: blocking calls yield, it resumes on the main loop", function()
    local result = run_case("task")
    assert.is_true(result.returned_at_once)
    assert.is_nil(result.task_error)
    assert.is_false(result.fast)
    assert.are.same({ "Echo: from a task" }, result.lines)
    assert.are.equal("Echo: again", result.second)
  end)

  it("openrouter.null is vim.NIL even when lua-cjson is installed", function()
    local result = run_case("null", { OPENROUTER_NVIM_CJSON = CJSON_51 })
    assert.is_true(result.cjson_loadable)
    assert.are.equal("vim.json", result.json_backend)
    assert.is_true(result.null_is_nil)
    assert.is_true(result.decoded_null_is_nil)
    -- and it goes out as JSON null
    local sent
    for _, r in ipairs(emu:requests()) do
      if r.path == "/api/v1/chat/completions" and r.body:find("null please", 1, true) then sent = r.body end
    end
    assert.truthy(sent:find('"user":null', 1, true), sent)
  end)

  describe(":checkhealth openrouter", function()
    local function report(lines)
      local text = table.concat(lines, "\n")
      local errors = {}
      for _, l in ipairs(lines) do
        if l:find("ERROR") then errors[#errors + 1] = l end
      end
      return text, errors
    end

    it("reports no error against the emulator, and never shows the key", function()
      local key = "sk-or-health-0123456789abcdef"
      local result = run_case("health", { OPENROUTER_API_KEY = key })
      local text, errors = report(result.lines)
      assert.are.same({}, errors, text)
      assert.truthy(text:find("openrouter: the module", 1, true), text)
      assert.truthy(text:find("OK: openrouter " .. openrouter.VERSION, 1, true), text)
      assert.truthy(text:find("runs on LuaJIT", 1, true), text)
      assert.truthy(text:find("OK: libcurl " .. openrouter.curl_version .. ", TLS by ", 1, true), text)
      assert.truthy(text:find("OK: vim.json; openrouter.null is vim.NIL", 1, true), text)
      assert.truthy(text:find("OK: $OPENROUTER_API_KEY is set (not shown) and " .. emu.url .. " accepts it", 1, true), text)
      assert.truthy(text:find("OK: " .. emu.url .. " answers GET /models", 1, true), text)
      assert.falsy(text:find("health-0123", 1, true), text)
    end)

    it("warns about a missing key, names a plugin's key source", function()
      local result = run_case("health", { OPENROUTER_API_KEY = false })
      local text, errors = report(result.lines)
      assert.are.same({}, errors, text)
      assert.truthy(text:find("WARNING: no API key", 1, true), text)
      result = run_case("health", { OPENROUTER_API_KEY = false, OPENROUTER_NVIM_PLUGIN_KEY = "sk-or-plugin-secret" })
      text = table.concat(result.lines, "\n")
      assert.falsy(text:find("WARNING: no API key", 1, true), text)
      assert.truthy(text:find("has a key from its api_key option (not shown)", 1, true), text)
      assert.falsy(text:find("plugin-secret", 1, true), text)
    end)

    it("reports a refused key and an unreachable base_url as errors that say what failed", function()
      local result = run_case("health", { OPENROUTER_API_KEY = "sk-or-invalid-key",
        OPENROUTER_BASE_URL = emu.url })
      local text, errors = report(result.lines)
      assert.are.equal(1, #errors, text)
      assert.truthy(errors[1]:find("refuses it", 1, true), text)
      assert.falsy(text:find("invalid-key", 1, true), text)
      result = run_case("health", { OPENROUTER_API_KEY = false, OPENROUTER_BASE_URL = "http://127.0.0.1:9/api/v1" })
      text, errors = report(result.lines)
      assert.are.equal(1, #errors, text)
      assert.truthy(errors[1]:find("http://127.0.0.1:9/api/v1: GET /models failed: ", 1, true), text)
      assert.truthy(errors[1]:find("network", 1, true), text)
    end)
  end)

  it(":help openrouter opens, every tag and link resolves", function()
    local dir = os.tmpname()
    os.remove(dir)
    local result = run_case("help", { OPENROUTER_NVIM_HELPDIR = dir })
    os.execute("rm -rf " .. shell_quote(dir))
    assert.are.equal("", result.helptags_error)
    assert.are.equal("openrouter.txt", result.file)
    assert.truthy(result.first_line:find("*openrouter.txt*", 1, true))
    for _, tag in ipairs{ "openrouter", "openrouter-setup", "openrouter-client", "openrouter-async",
      "openrouter-coroutines", "openrouter-nvim", "openrouter-health", "openrouter-errors",
      "openrouter-emulator", "openrouter-null" } do
      assert.is_true(result.opened[tag], tag)
    end
    for tag, opened in pairs(result.opened) do assert.is_true(opened, tag) end
    assert.are.same({}, result.missing_links)
  end)
end)
