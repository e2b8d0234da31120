-- bin/openrouter, driven as a user would: through pipes (stdout, stderr and the exit
-- status of every command and error kind) and through a real terminal (tmux: keys in,
-- screen out) for the interactive conversation, the spinner and Ctrl-C.
-- The CLI runs under the suite's interpreter ($OPENROUTER_EMULATOR_LUA).

local emulator = require("spec.support.emulator_control")
local socket = require("socket")
local cjson = require("cjson")

local LUA = os.getenv("OPENROUTER_EMULATOR_LUA") or "lua5.4"
local KEY = "sk-or-v1-cli-test-0123456789abcdef"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function command_output(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

local ROOT = command_output("pwd"):gsub("%s+$", "")
local CLI = ROOT .. "/bin/openrouter"

-- The emulator's source tells whether /key and /generation are served yet.
local EMULATOR_SOURCE = read_file(ROOT .. "/spec/support/emulator.lua") or ""
local HAS_KEY = EMULATOR_SOURCE:find('"/key"', 1, true) ~= nil
local HAS_GENERATION = EMULATOR_SOURCE:find('"/generation"', 1, true) ~= nil

local HAS_TMUX = os.execute("command -v tmux >/dev/null 2>&1")
HAS_TMUX = HAS_TMUX == true or HAS_TMUX == 0

local emu

-- An empty config directory for every run unless overridden: a key stored on this machine
-- by 'openrouter login' is never used by the specs.
local CONFIG_HOME = os.tmpname()
os.remove(CONFIG_HOME)
os.execute("mkdir -p " .. shell_quote(CONFIG_HOME))

-- The environment of a CLI run: the emulator and a key unless overridden; `false` unsets.
local function env_prefix(env, unset)
  local vars = { OPENROUTER_BASE_URL = emu.url, OPENROUTER_API_KEY = KEY,
                 XDG_CONFIG_HOME = CONFIG_HOME }
  for k, v in pairs(env or {}) do vars[k] = v end
  local parts = { "env -u OPENROUTER_MODEL -u NO_COLOR -u OPENROUTER_BASE_URL -u OPENROUTER_API_KEY" }
  for _, name in ipairs(unset or {}) do parts[#parts + 1] = "-u " .. name end
  local names = {}
  for k in pairs(vars) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    if vars[k] then parts[#parts + 1] = k .. "=" .. shell_quote(vars[k]) end
  end
  return table.concat(parts, " ")
end

local function argline(args)
  local out = {}
  for i, a in ipairs(args) do out[i] = shell_quote(a) end
  return table.concat(out, " ")
end

-- Runs the CLI with pipes: returns stdout, stderr, exit status.
-- o.stdin (text; else /dev/null), o.env, o.cwd, o.unset (variables to remove).
local function run(args, o)
  o = o or {}
  local err_path = os.tmpname()
  local in_path = "/dev/null"
  if o.stdin then
    in_path = os.tmpname()
    write_file(in_path, o.stdin)
  end
  local cmd = ("cd %s && %s %s %s %s <%s 2>%s; printf '__EXIT__%%d' $?"):format(
    shell_quote(o.cwd or ROOT), env_prefix(o.env, o.unset), LUA, shell_quote(CLI),
    argline(args), shell_quote(in_path), shell_quote(err_path))
  local out = command_output(cmd)
  local stdout, status = out:match("^(.*)__EXIT__(%d+)$")
  local stderr = read_file(err_path) or ""
  os.remove(err_path)
  if o.stdin then os.remove(in_path) end
  return stdout, stderr, tonumber(status)
end

local function lines_of(s)
  local out = {}
  for line in s:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

---------------------------------------------------------------------------------------------
-- tmux: a private server per session (-S), panes kept after exit to read their status
---------------------------------------------------------------------------------------------

local TMUX_CONF = os.tmpname()

local Pane = {}
Pane.__index = Pane

local function tmux_start(args, env, width)
  local status_file = os.tmpname() -- unique: the server's socket is named after it
  local pane = setmetatable({ socket = status_file .. ".tmux", status_file = status_file }, Pane)
  -- tmux loses a pane's exit status when output comes right before the exit: a shell
  -- writes it to a file. `trap : INT` keeps that shell alive through Ctrl-C (its child,
  -- the CLI, still gets the default SIGINT disposition).
  local command = ("trap : INT; cd %s && %s %s %s %s; echo $? >%s"):format(shell_quote(ROOT),
    env_prefix(env), LUA, shell_quote(CLI), argline(args), shell_quote(pane.status_file))
  pane:tmux(("new-session -d -s cli -x %d -y 40 %s"):format(width or 120, shell_quote(command)))
  return pane
end

function Pane:tmux(rest)
  return command_output(("tmux -S %s -f %s %s 2>&1"):format(shell_quote(self.socket), shell_quote(TMUX_CONF),
    rest))
end

function Pane:screen()
  return self:tmux("capture-pane -p -J -S -1000 -t cli") -- with what scrolled away
end

function Pane:keys(...)
  local keys = {}
  for i, k in ipairs({ ... }) do keys[i] = shell_quote(k) end
  self:tmux("send-keys -t cli " .. table.concat(keys, " "))
end

function Pane:type_line(text)
  self:tmux("send-keys -t cli -l " .. shell_quote(text))
  self:keys("Enter")
end

-- Polls the screen until `test(screen)` holds; fails with the screen after `timeout` s.
function Pane:wait_until(what, test, timeout)
  local deadline = socket.gettime() + (timeout or 8)
  local screen
  repeat
    screen = self:screen()
    if test(screen) then return screen end
    socket.sleep(0.03)
  until socket.gettime() > deadline
  error(("timed out waiting for %s; the screen:\n%s"):format(what, screen), 2)
end

function Pane:wait_for(text, timeout)
  return self:wait_until(("%q"):format(text), function(s) return s:find(text, 1, true) ~= nil end, timeout)
end

-- The prompt ("> " at the start of the last non-empty line) is back.
function Pane:wait_prompt(timeout)
  return self:wait_until("the prompt", function(s)
    local last = s:gsub("%s+$", ""):match("[^\n]*$")
    return last == ">"
  end, timeout)
end

-- Waits for the CLI to end: its exit status (128 + N after signal N).
function Pane:exit_status(timeout)
  local deadline = socket.gettime() + (timeout or 8)
  repeat
    local status = tonumber(read_file(self.status_file) or "")
    if status then return status end
    socket.sleep(0.03)
  until socket.gettime() > deadline
  error("the CLI did not exit; the screen:\n" .. self:screen(), 2)
end

function Pane:kill()
  self:tmux("kill-server")
  os.remove(self.status_file)
  os.remove(self.socket)
end

---------------------------------------------------------------------------------------------

describe("openrouter CLI", function()
  setup(function()
    emu = emulator.start()
    write_file(TMUX_CONF, "set -g remain-on-exit on\nset -g status off\nset -g history-limit 1000\n")
  end)

  teardown(function()
    if emu then emu:stop() end
    os.remove(TMUX_CONF)
    os.execute("rm -rf " .. shell_quote(CONFIG_HOME))
  end)

  before_each(function() emu:reset() end)

  describe("help", function()
    it("--help describes every command and the exit statuses, on stdout, status 0", function()
      local out, err, status = run({ "--help" })
      assert.are.equal(0, status)
      assert.are.equal("", err)
      for _, word in ipairs({ "models", "credits", "key", "chat", "complete", "generation",
                              "--api-key", "--base-url", "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL" }) do
        assert.truthy(out:find(word, 1, true), word)
      end
      for _, row in ipairs({ "1    usage", "2    network", "3    timeout", "4    http", "5    api",
                             "6    decode", "7    other", "130  cancelled" }) do
        assert.truthy(out:find(row, 1, true), row)
      end
    end)

    it("every command has --help, and 'help COMMAND' prints the same", function()
      for _, command in ipairs({ "models", "credits", "key", "chat", "complete", "generation" }) do
        local out, err, status = run({ command, "--help" })
        assert.are.equal(0, status, command)
        assert.are.equal("", err)
        assert.truthy(out:find("^usage: openrouter " .. command), command)
        local out2 = run({ "help", command })
        assert.are.equal(out, out2)
        local out3 = run({ "-h", command })
        assert.are.equal(out, out3)
      end
      local chat = run({ "chat", "--help" })
      for _, c in ipairs({ "/undo", "/reset", "/save FILE", "/load FILE", "/usage", "/help", "/quit" }) do
        assert.truthy(chat:find(c, 1, true), c)
      end
    end)

    it("--version names the library, libcurl and the interpreter", function()
      local out, _, status = run({ "--version" })
      assert.are.equal(0, status)
      assert.truthy(out:match("^openrouter %S+ %(libcurl [%d.]+, .*Lua.*%)\n$"), out)
    end)

    it("no command: the help on stderr, status 1", function()
      local out, err, status = run({})
      assert.are.equal(1, status)
      assert.are.equal("", out)
      assert.truthy(err:find("^usage: openrouter"))
    end)
  end)

  describe("usage errors (status 1)", function()
    local cases = {
      { { "frob" }, "unknown command 'frob'" },
      { { "models", "--frob" }, "unknown option '--frob' for 'models'" },
      { { "chat", "hi" }, "'chat' needs a model" },
      { { "chat", "-m" }, "option '-m' needs a value" },
      { { "credits", "extra" }, "'credits' takes no argument" },
      { { "generation" }, "'generation' needs exactly one ID" },
      { { "--timeout", "soon", "credits" }, "option '--timeout' needs a non-negative number" },
      { { "--base-url", "ftp://x", "credits" }, "base_url must be an http:// or https:// URL" },
      { { "help", "frob" }, "no command 'frob'" },
    }
    for _, case in ipairs(cases) do
      it(table.concat(case[1], " "), function()
        local out, err, status = run(case[1])
        assert.are.equal(1, status)
        assert.are.equal("", out)
        assert.truthy(err:find("^openrouter: usage error: "), err)
        assert.truthy(err:find(case[2], 1, true), err)
        assert.are.equal(1, #lines_of(err))
      end)
    end

    it("an empty stdin and no PROMPT", function()
      local out, err, status = run({ "chat", "-m", "openai/gpt-4o-mini" }, { stdin = "\n  \n" })
      assert.are.equal(1, status)
      assert.are.equal("", out)
      assert.truthy(err:find("^openrouter: usage error: no prompt"), err)
    end)
  end)

  describe("models", function()
    it("prints a table of every model", function()
      local out, err, status = run({ "models" })
      assert.are.equal(0, status)
      assert.are.equal("", err)
      local rows = lines_of(out)
      assert.truthy(rows[1]:match("^ID%s+CONTEXT%s+%$/M IN%s+%$/M OUT%s+NAME$"), rows[1])
      assert.are.equal(9, #rows)
      assert.truthy(rows[2]:match("^openai/gpt%-4o%-mini%s+128000%s+0%.15%s+0%.6%s+OpenAI: GPT%-4o%-mini$"), rows[2])
      assert.truthy(out:find("meta%-llama/llama%-3%.3%-70b%-instruct:free%s+131072%s+0%s+0%s"))
      assert.falsy(out:find("\27", 1, true)) -- no colour through a pipe
    end)

    it("--search and --supports filter; --json prints the model objects", function()
      local out, _, status = run({ "models", "--search", "GEMINI" })
      assert.are.equal(0, status)
      assert.are.equal(2, #lines_of(out))
      assert.truthy(out:find("google/gemini-2.5-flash", 1, true))

      out = run({ "models", "--supports", "reasoning", "--json" })
      local models = cjson.decode(out)
      local ids = {}
      for i, m in ipairs(models) do ids[i] = m.id end
      assert.are.same({ "anthropic/claude-sonnet-4.5", "google/gemini-2.5-flash", "deepseek/deepseek-r1" }, ids)
      assert.are.equal("0.000003", models[1].pricing.prompt) -- prices stay strings
      assert.are.equal(1000000, models[1].context_length)
      assert.falsy(out:find("\\/", 1, true))
      local request = emu:last_request()
      assert.are.equal("/api/v1/models", request.path)
      assert.are.equal("supported_parameters=reasoning", request.query)

      out = run({ "models", "--supports", "reasoning,top_k", "--free" })
      assert.are.equal("", out)
      out = run({ "models", "--free" })
      assert.are.equal(2, #lines_of(out))
    end)
  end)

  describe("credits", function()
    it("prints total, used and remaining", function()
      local out, err, status = run({ "credits" })
      assert.are.equal(0, status)
      assert.are.equal("", err)
      assert.truthy(out:match("^total%s+100%.50\nused%s+25%.75\nremaining%s+74%.75\n$"), out)
      assert.are.equal("Bearer " .. KEY, emu:last_request().headers.authorization)
    end)

    it("--json", function()
      local out, _, status = run({ "credits", "--json" })
      assert.are.equal(0, status)
      local credits = cjson.decode(out)
      assert.are.equal(100.5, credits.total_credits)
      assert.are.equal(25.75, credits.total_usage)
    end)

    it("--api-key and --base-url override the environment; the key is never printed", function()
      local out, err, status = run({ "--base-url", emu.url, "credits", "--api-key", "sk-or-v1-from-argv" },
        { env = { OPENROUTER_BASE_URL = "http://127.0.0.1:1/api/v1", OPENROUTER_API_KEY = false } })
      assert.are.equal(0, status, err)
      assert.truthy(out:find("100.50", 1, true))
      assert.are.equal("Bearer sk-or-v1-from-argv", emu:last_request().headers.authorization)
    end)

    it("without a key: an api error (401) that says how to set one", function()
      local out, err, status = run({ "credits" }, { env = { OPENROUTER_API_KEY = false } })
      assert.are.equal(5, status)
      assert.are.equal("", out)
      assert.are.equal("openrouter: api error: No auth credentials found (HTTP 401); "
        .. "set OPENROUTER_API_KEY, pass --api-key or run 'openrouter login'\n", err)
    end)
  end)

  describe("key", function()
    it("an invalid key: api error, status 5", function()
      local out, err, status = run({ "key", "--api-key", "sk-or-invalid-1" })
      assert.are.equal(5, status)
      assert.are.equal("", out)
      assert.truthy(err:find("^openrouter: api error: .*%(HTTP 40[14]%)\n$"), err)
    end)

    if HAS_KEY then
      it("prints the key's limits and usage", function()
        local out, err, status = run({ "key" })
        assert.are.equal(0, status, err)
        assert.are.equal("", err)
        assert.are.equal("/api/v1/key", emu:last_request().path)
        assert.truthy(out:find("^label%s"), out)
        assert.truthy(out:find("\nlimit%s+%d+%.%d%d\n"), out)
        assert.truthy(out:find("\nlimit_remaining%s+%d+%.%d%d\n"), out)
        assert.truthy(out:find("\nusage_monthly%s+%d+%.%d%d\n"), out)
        assert.truthy(out:find("\nis_free_tier%s+%a+\n"), out)
        assert.falsy(out:find(KEY, 1, true)) -- only the label OpenRouter gives it
        local json = cjson.decode((run({ "key", "--json" })))
        assert.are.equal("string", type(json.label))
        assert.are.equal("number", type(json.usage))
      end)
    else
      it("without /key in the emulator: the 404 is an api error", function()
        local out, err, status = run({ "key" })
        assert.are.equal(5, status)
        assert.are.equal("", out)
        assert.are.equal("openrouter: api error: Not Found (HTTP 404)\n", err)
      end)
    end
  end)

  describe("chat", function()
    it("streams the reply of PROMPT to stdout, nothing else", function()
      local out, err, status = run({ "chat", "-m", "openai/gpt-4o-mini", "hello", "world" })
      assert.are.equal(0, status)
      assert.are.equal("Echo: hello world\n", out)
      assert.are.equal("", err) -- no spinner: stdout is not a terminal
      local request = emu:last_request()
      assert.are.equal("/api/v1/chat/completions", request.path)
      assert.are.equal(true, request.json.stream)
      assert.are.same({ { role = "user", content = "hello world" } }, request.json.messages)
    end)

    it("reads the prompt from stdin; -s adds a system prompt; options pass through", function()
      local out, err, status = run({ "chat", "--model=openai/gpt-4o", "-s", "Be terse.",
        "--temperature", "0.5", "--max-tokens", "20" }, { stdin = "from stdin\n" })
      assert.are.equal(0, status, err)
      assert.are.equal("Echo: from stdin\n", out)
      local body = emu:last_request().json
      assert.are.same({ { role = "system", content = "Be terse." }, { role = "user", content = "from stdin" } },
        body.messages)
      assert.are.equal("openai/gpt-4o", body.model)
      assert.are.equal(0.5, body.temperature)
      assert.are.equal(20, body.max_tokens)
    end)

    it("OPENROUTER_MODEL is the default model; -- ends the options", function()
      local out, _, status = run({ "chat", "--", "-v", "is", "a", "word" },
        { env = { OPENROUTER_MODEL = "openai/gpt-4o" } })
      assert.are.equal(0, status)
      assert.are.equal("Echo: -v is a word\n", out)
      assert.are.equal("openai/gpt-4o", emu:last_request().json.model)
    end)

    it("-v: the generation id, tokens and cost on stderr", function()
      local out, err, status = run({ "chat", "-m", "openai/gpt-4o-mini", "-v", "hi" })
      assert.are.equal(0, status)
      assert.are.equal("Echo: hi\n", out)
      assert.truthy(err:match("^openrouter: gen%-[%w%-]+, openai/gpt%-4o%-mini, %d+ prompt %+ %d+ completion tokens, %$[%d.]+\n$"), err)
    end)

    it("streams through a pipe as the chunks arrive", function()
      -- each piece is flushed: a reader sees the first word long before the last
      local p = io.popen(("cd %s && %s %s %s chat -m emulator/slow:150 a b c d e f 2>/dev/null"):format(
        shell_quote(ROOT), env_prefix(), LUA, shell_quote(CLI)))
      local t0 = socket.gettime()
      local first = p:read(4)
      local t_first = socket.gettime() - t0
      local rest = p:read("*a")
      local t_all = socket.gettime() - t0
      p:close()
      assert.are.equal("Echo: a b c d e f\n", first .. rest)
      assert.truthy(t_all - t_first > 0.5, ("first %.2f s, all %.2f s"):format(t_first, t_all))
    end)

    it("finds its library next to itself, from any directory, without LUA_PATH", function()
      local built = read_file(ROOT .. "/build/" .. LUA .. "/openrouter/core.so")
      if not built then return pending("no build/" .. LUA .. " (make LUA=" .. LUA .. ")") end
      local out, err, status = run({ "chat", "-m", "openai/gpt-4o-mini", "hi" }, { cwd = "/tmp",
        unset = { "LUA_PATH", "LUA_CPATH", "LUA_PATH_5_2", "LUA_CPATH_5_2", "LUA_PATH_5_3",
                  "LUA_CPATH_5_3", "LUA_PATH_5_4", "LUA_CPATH_5_4" } })
      assert.are.equal(0, status, err)
      assert.are.equal("Echo: hi\n", out)
    end)
  end)

  describe("complete", function()
    it("streams a legacy completion", function()
      local out, err, status = run({ "complete", "-m", "openai/gpt-4o-mini", "Once", "upon" })
      assert.are.equal(0, status)
      assert.are.equal("", err)
      assert.are.equal("Echo: Once upon\n", out)
      local request = emu:last_request()
      assert.are.equal("/api/v1/completions", request.path)
      assert.are.equal("Once upon", request.json.prompt)
      out = run({ "complete", "-m", "openai/gpt-4o-mini" }, { stdin = "piped text" })
      assert.are.equal("Echo: piped text\n", out)
    end)
  end)

  describe("generation", function()
    if HAS_GENERATION then
      it("prints the stats of a generation made by chat", function()
        local _, err = run({ "chat", "-m", "openai/gpt-4o-mini", "-v", "hi" })
        local id = err:match("(gen%-[%w%-]+)")
        assert.truthy(id, err)
        local out, err2, status = run({ "generation", id }) -- retries the first 404s itself
        assert.are.equal(0, status, err2)
        assert.are.equal("", err2)
        assert.truthy(out:find("^id%s+" .. id:gsub("%-", "%%-") .. "\n"), out)
        assert.truthy(out:find("\nmodel%s+openai/gpt%-4o%-mini\n"), out)
        assert.truthy(out:find("\ntokens_prompt%s+%d+\n"), out)
        assert.truthy(out:find("\ntotal_cost%s+0%.%d+\n"), out)
        local json = cjson.decode((run({ "generation", "--json", id })))
        assert.are.equal(id, json.id)
      end)
    end

    it("an unknown id: api error (404), status 5", function()
      local out, err, status = run({ "generation", "gen-does-not-exist", "--wait", "0" })
      assert.are.equal(5, status)
      assert.are.equal("", out)
      assert.truthy(err:find("^openrouter: api error: .*%(HTTP 404%)\n$"), err)
    end)
  end)

  describe("error kinds: one line on stderr, a status per kind", function()
    local cases = {
      { "network", 2, { "--base-url", "http://127.0.0.1:1/api/v1" }, "openai/gpt-4o-mini" },
      { "timeout", 3, { "--timeout", "0.5" }, "emulator/stall" },
      { "http", 4, {}, "emulator/html-502", "502 Bad Gateway %(HTTP 502%)" },
      { "api", 5, {}, "missing/model", "missing/model is not a valid model ID %(HTTP 400%)" },
      { "api", 5, {}, "emulator/moderation", "flagged for \"violence\"%. %(HTTP 403%)" },
      { "decode", 6, {}, "emulator/malformed" },
    }
    for _, case in ipairs(cases) do
      local kind, code, extra, model, pattern = case[1], case[2], case[3], case[4], case[5]
      it(kind .. " (" .. model .. "): status " .. code, function()
        local args = { "--max-retries", "0" }
        for _, a in ipairs(extra) do args[#args + 1] = a end
        for _, a in ipairs({ "chat", "-m", model, "hi" }) do args[#args + 1] = a end
        local out, err, status = run(args)
        assert.are.equal(code, status, err)
        assert.are.equal("", out)
        assert.truthy(err:find("^openrouter: " .. kind .. " error: [^\n]+\n$"), err)
        if pattern then assert.truthy(err:find(pattern), err) end
      end)
    end

    it("an error in the middle of a stream: the text so far on stdout, then the error", function()
      local out, err, status = run({ "chat", "-m", "emulator/mid-stream-error", "one two three" })
      assert.are.equal(5, status)
      assert.are.equal("Echo: one \n", out)
      assert.are.equal("openrouter: api error: Provider disconnected (code 502)\n", err)
    end)

    it("a server that echoes the key: it is never printed", function()
      for _, args in ipairs({ { "chat", "-m", "emulator/echo-key:api", "hi" },
                              { "chat", "-m", "emulator/echo-key:stream", "hi" },
                              { "chat", "-m", "emulator/echo-key:html", "hi", "--max-retries", "0" },
                              { "chat", "-m", "emulator/echo-key:api", "--api-key", "sk-or-v1-argv-secret", "x" } }) do
        local out, err, status = run(args)
        assert.truthy(status == 4 or status == 5, err)
        assert.falsy((out .. err):find(KEY, 1, true), err)
        assert.falsy((out .. err):find("argv-secret", 1, true), err)
        assert.truthy(err:find("[redacted]", 1, true), err)
      end
    end)
  end)

  ------------------------------------------------------------------------------------------
  -- A real terminal
  ------------------------------------------------------------------------------------------

  describe("word wrapping (openrouter.cli.output)", function()
    local output = require("openrouter.cli.output")

    -- A terminal's screen from what was written: \n, \r, ESC[nC, ESC[K and characters.
    local function screen(width, chunks)
      local lines, row, col = { {} }, 1, 0
      local function write(s)
        local i = 1
        while i <= #s do
          local n, k = s:match("^\27%[(%d*)([CK])", i)
          local c = s:match("^[%z\1-\127\194-\244][\128-\191]*", i)
          local rest = s:match("^[\128-\191]+", i) -- the end of a character cut in two
          if rest then
            lines[row][col] = lines[row][col] .. rest
            i = i + #rest
          elseif k == "C" then
            col = col + tonumber(n)
            i = i + 3 + #n
          elseif k == "K" then
            for j = col + 1, #lines[row] do lines[row][j] = nil end
            i = i + 3
          elseif c == "\n" then
            row, col = row + 1, 0
            lines[row] = lines[row] or {}
            i = i + 1
          elseif c == "\r" then
            col, i = 0, i + 1
          else
            assert(col < width, "a character beyond the edge: " .. c)
            col = col + 1
            lines[row][col] = c
            i = i + #c
          end
        end
      end
      local wrap = output.new_wrap(width, write)
      local shown = {}
      for i, chunk in ipairs(chunks) do
        wrap:feed(chunk)
        local out = {}
        for r = 1, #lines do out[r] = table.concat(lines[r]):gsub("%s+$", "") end
        shown[i] = table.concat(out, "\n")
      end
      return shown[#shown], shown
    end

    local function pieces(text, size)
      local out = {}
      for i = 1, #text, size do out[#out + 1] = text:sub(i, i + size - 1) end
      return out
    end

    it("breaks lines at blanks, whatever the pieces the text streams in", function()
      local text = "the quick brown fox jumps over the lazy dog"
      local expected = "the quick\nbrown fox\njumps over\nthe lazy\ndog"
      for size = 1, #text do
        assert.are.equal(expected, (screen(10, pieces(text, size))), "pieces of " .. size)
      end
    end)

    it("shows the text as it streams: every piece at once, a moved word included", function()
      local _, shown = screen(10, { "the quick br", "own", " fox" })
      assert.are.equal("the quick\nbr", shown[1])
      assert.are.equal("the quick\nbrown", shown[2])
      assert.are.equal("the quick\nbrown fox", shown[3])
      _, shown = screen(10, { "the quic", "k" })
      assert.are.equal("the quic", shown[1])
      assert.are.equal("the quick", shown[2])
    end)

    it("keeps newlines, cuts a word longer than the line, counts UTF-8 characters", function()
      assert.are.equal("one\n\ntwo", (screen(10, { "one\n\ntwo" })))
      assert.are.equal("abcde\nfghij\nklm", (screen(5, { "abcdefghijklm" })))
      assert.are.equal("ab\nabcdefghij\nklm", (screen(10, { "ab abcdefghijklm" })))
      assert.are.equal("héllo\nwörld", (screen(5, pieces("héllo wörld", 1))))
      assert.are.equal("a  b\nc", (screen(4, { "a  b   c" })))
    end)
  end)

  describe("the layout of the tool (lua/openrouter/cli/)", function()
    local cli = require("openrouter.cli")

    it("bin/openrouter only finds the modules and runs openrouter.cli", function()
      local text = read_file(CLI)
      assert.truthy(#lines_of(text) <= 60, "bin/openrouter has " .. #lines_of(text) .. " lines")
      assert.truthy(text:find('require, "openrouter.cli")', 1, true))
    end)

    it("a command is one module: its options, help and run; every module is a command", function()
      local listed = {}
      for _, name in ipairs(cli.COMMANDS) do
        listed[name] = true
        local c = cli.command(name)
        assert.are.equal("string", type(c.synopsis), name)
        assert.are.equal("string", type(c.summary), name)
        assert.truthy(c.help:find("^usage: openrouter " .. name), name)
        assert.are.equal("table", type(c.options), name)
        assert.are.equal("function", type(c.run), name)
        assert.truthy(cli.help():find("\n  " .. c.synopsis, 1, true), name)
      end
      local files = command_output("ls " .. shell_quote(ROOT .. "/lua/openrouter/cli/commands"))
      for file in files:gmatch("(%S+)%.lua") do
        assert.truthy(listed[file], file .. ".lua is not in openrouter.cli.COMMANDS")
      end
      assert.is_nil(cli.command("frob"))
    end)

    it("no function of the tool is over 40 lines", function()
      local files = command_output("cd " .. shell_quote(ROOT) .. " && ls lua/openrouter/cli/*.lua "
        .. "lua/openrouter/cli/commands/*.lua")
      for file in files:gmatch("%S+") do
        local start, indent, name
        local n = 0
        for line in (read_file(ROOT .. "/" .. file) .. "\n"):gmatch("([^\n]*)\n") do
          n = n + 1
          local ind, fn = line:match("^(%s*)local function (.*)$")
          if not fn then ind, fn = line:match("^(%s*)function (.*)$") end
          if fn and not start and not line:find("%send$") then
            start, indent, name = n, ind, fn
          elseif start and line == indent .. "end" then
            assert.truthy(n - start + 1 <= 40, ("%s:%d: %s is %d lines"):format(file, start, name, n - start + 1))
            start = nil
          end
        end
      end
    end)
  end)

  describe("login and logout (OAuth PKCE against the emulator's authorization page)", function()
    local url = require("socket.url")

    -- A GET on a fresh connection: status, Location.
    local function http_get(target)
      local parsed = url.parse(target)
      local sock = assert(socket.connect(parsed.host, tonumber(parsed.port)))
      sock:settimeout(10)
      sock:send("GET " .. parsed.path .. (parsed.query and ("?" .. parsed.query) or "")
        .. " HTTP/1.1\r\nHost: " .. parsed.host .. "\r\nConnection: close\r\n\r\n")
      local raw = sock:receive("*a") or ""
      sock:close()
      return tonumber(raw:match("^HTTP/1%.%d (%d+)")), raw:match("\r\n[Ll]ocation: ([^\r\n]+)")
    end

    -- Starts the CLI in the background; returns a handle whose wait() gives stdout,
    -- stderr, status once it has exited.
    local function spawn(args, env)
      local dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. shell_quote(dir))
      os.execute(("(cd %s && %s %s %s %s </dev/null >%s/out 2>%s/err; echo $? >%s/status) &"):format(
        shell_quote(ROOT), env_prefix(env), LUA, shell_quote(CLI), argline(args), dir, dir, dir))
      local h = { dir = dir }
      function h.stderr() return read_file(dir .. "/err") or "" end
      function h.wait(seconds)
        local deadline = socket.gettime() + (seconds or 10)
        -- the shell creates the file before it writes the number: wait for the number
        while not tonumber(read_file(dir .. "/status") or "") and socket.gettime() < deadline do
          socket.sleep(0.05)
        end
        local status = tonumber(read_file(dir .. "/status") or "")
        local out, err = read_file(dir .. "/out") or "", h.stderr()
        os.execute("rm -rf " .. shell_quote(dir))
        return out, err, status
      end
      return h
    end

    -- Waits for the authorization URL on the CLI's stderr.
    local function printed_url(h)
      local deadline = socket.gettime() + 10
      repeat
        local found = h.stderr():match("(http://127%.0%.0%.1:%d+/auth%?%S+)")
        if found then return found end
        socket.sleep(0.05)
      until socket.gettime() > deadline
      error("no authorization URL on stderr: " .. h.stderr())
    end

    it("signs in: the URL, the redirect caught on 127.0.0.1, the key stored 0600 and used", function()
      local config = os.tmpname()
      os.remove(config)
      local env = { OPENROUTER_API_KEY = false, XDG_CONFIG_HOME = config, DISPLAY = false }
      local h = spawn({ "login", "--no-browser" }, env)
      local auth_url = printed_url(h)
      assert.matches("^" .. emu.url:gsub("/api/v1$", ""):gsub("%p", "%%%0") .. "/auth%?callback_url="
        .. "http%%3A%%2F%%2F127%.0%.0%.1%%3A%d+%%2Fcallback&code_challenge=[%w%-_]+"
        .. "&code_challenge_method=S256$", auth_url)
      -- the browser: the authorization page redirects to the listener, which answers a page
      local status, location = http_get(auth_url)
      assert.are.equal(302, status)
      assert.matches("^http://127%.0%.0%.1:%d+/callback%?code=", location)
      assert.are.equal(200, (http_get(location)))
      local out, err, code = h.wait()
      assert.are.equal(0, code, err)
      local path = config .. "/openrouter/key"
      assert.matches("Signed in. The key is stored in " .. path:gsub("%p", "%%%0"), out)
      local key = assert(read_file(path)):match("^(%S+)\n$")
      assert.matches("^sk%-or%-v1%-%x+$", key)
      assert.is_nil(out:find(key, 1, true))
      assert.is_nil(err:find(key, 1, true))
      assert.are.equal("600", command_output("stat -c %a " .. shell_quote(path)):match("%d+"))
      assert.are.equal("700", command_output("stat -c %a " .. shell_quote(config .. "/openrouter")):match("%d+"))
      -- the exchange went without a key, the code and the verifier in its body
      local exchange
      for _, r in ipairs(emu:requests()) do
        if r.path == "/api/v1/auth/keys" then exchange = r end
      end
      assert.is_nil(exchange.headers.authorization)
      assert.are.equal("S256", exchange.json.code_challenge_method)
      assert.matches("^[%w%-_]+$", exchange.json.code_verifier)

      -- the stored key is used when no other is given; --api-key and the variable come first
      local _, _, st = run({ "credits" }, { env = env })
      assert.are.equal(0, st)
      assert.are.equal("Bearer " .. key, emu:last_request().headers.authorization)
      run({ "credits" }, { env = { OPENROUTER_API_KEY = KEY, XDG_CONFIG_HOME = config } })
      assert.are.equal("Bearer " .. KEY, emu:last_request().headers.authorization)
      run({ "--api-key", "sk-or-v1-from-the-flag-0000", "credits" }, { env = env })
      assert.are.equal("Bearer sk-or-v1-from-the-flag-0000", emu:last_request().headers.authorization)

      -- logout removes it; then there is no key
      out, err, st = run({ "logout" }, { env = env })
      assert.are.equal(0, st, err)
      assert.matches("Signed out", out)
      assert.is_nil(read_file(path))
      out, err, st = run({ "credits" }, { env = env })
      assert.are.equal(5, st)
      assert.matches("run 'openrouter login'", err)
      out, _, st = run({ "logout" }, { env = env })
      assert.are.equal(0, st)
      assert.matches("Not signed in", out)
      os.execute("rm -rf " .. shell_quote(config))
    end)

    it("a login replaces a stored key; without XDG_CONFIG_HOME the key goes to ~/.config", function()
      local home = os.tmpname()
      os.remove(home)
      os.execute("mkdir -p " .. shell_quote(home .. "/.config/openrouter"))
      write_file(home .. "/.config/openrouter/key", "sk-or-v1-old-key-00000000\n")
      local env = { OPENROUTER_API_KEY = false, XDG_CONFIG_HOME = false, HOME = home, DISPLAY = false }
      local h = spawn({ "login", "--no-browser" }, env)
      local _, location = http_get(printed_url(h))
      http_get(location)
      local _, err, code = h.wait()
      assert.are.equal(0, code, err)
      local key = read_file(home .. "/.config/openrouter/key")
      assert.matches("^sk%-or%-v1%-%x+\n$", key)
      os.execute("rm -rf " .. shell_quote(home))
    end)

    it("nobody signs in: a timeout error after --timeout, status 3; nothing stored", function()
      local config = os.tmpname()
      os.remove(config)
      local h = spawn({ "--timeout", "1", "login", "--no-browser" },
        { OPENROUTER_API_KEY = false, XDG_CONFIG_HOME = config, DISPLAY = false })
      printed_url(h)
      local _, err, code = h.wait(15)
      assert.are.equal(3, code, err)
      assert.matches("openrouter: timeout error: no sign%-in within 1 s", err)
      assert.is_nil(read_file(config .. "/openrouter/key"))
    end)

    it("a refused sign-in (the redirect carries error=): api error, status 5", function()
      local config = os.tmpname()
      os.remove(config)
      local h = spawn({ "login", "--no-browser" },
        { OPENROUTER_API_KEY = false, XDG_CONFIG_HOME = config, DISPLAY = false })
      local port = printed_url(h):match("127%.0%.0%.1%%3A(%d+)")
      assert.are.equal(404, (http_get("http://127.0.0.1:" .. port .. "/favicon.ico")))
      assert.are.equal(400, (http_get("http://127.0.0.1:" .. port .. "/callback?error=access_denied")))
      local _, err, code = h.wait()
      assert.are.equal(5, code, err)
      assert.matches("sign%-in refused: access_denied", err)
      assert.is_nil(read_file(config .. "/openrouter/key"))
    end)
  end)

  describe("on a terminal (tmux)", function()
    if not HAS_TMUX then
      it("needs tmux", function() pending("tmux is not installed (apt-get install tmux)") end)
      return
    end

    local panes = {}
    local function start(args, env, width)
      local pane = tmux_start(args, env, width)
      panes[#panes + 1] = pane
      return pane
    end
    after_each(function()
      for _, pane in ipairs(panes) do pane:kill() end
      panes = {}
    end)

    it("an interactive conversation: history, /usage, /undo, /reset, /save, /load, /help, /quit", function()
      local saved = os.tmpname()
      local pane = start({ "chat", "-m", "openai/gpt-4o-mini", "-s", "Be terse." })
      pane:wait_prompt()
      assert.truthy(pane:screen():find("openrouter chat with openai/gpt-4o-mini", 1, true))

      pane:type_line("hello there")
      pane:wait_for("Echo: hello there")
      pane:wait_prompt()
      pane:type_line("second question")
      pane:wait_for("Echo: second question")
      pane:wait_prompt()
      -- the history went with the second question
      local messages = emu:last_request().json.messages
      assert.are.equal(4, #messages)
      assert.are.same({ "system", "user", "assistant", "user" },
        { messages[1].role, messages[2].role, messages[3].role, messages[4].role })
      assert.are.equal("Echo: hello there", messages[3].content)

      pane:type_line("/usage")
      pane:wait_for("usage: 2 requests, ")
      pane:type_line("/undo")
      pane:wait_for("(forgot the last message and its reply)")
      pane:type_line("/save " .. saved)
      pane:wait_for("(saved 3 messages to " .. saved .. ")")
      local data = cjson.decode(read_file(saved))
      assert.are.equal(3, #data.messages)
      assert.are.equal("hello there", data.messages[2].content)

      pane:type_line("/reset")
      pane:wait_for("(conversation cleared)")
      pane:type_line("/history")
      pane:wait_until("/history output", function(s) return s:find("system: Be terse.\n>", 1, true) end)

      pane:type_line("/load " .. saved)
      pane:wait_for("(loaded 3 messages from " .. saved .. "; model openai/gpt-4o-mini)")
      pane:type_line("third")
      pane:wait_for("Echo: third")
      messages = emu:last_request().json.messages
      assert.are.equal(4, #messages)
      assert.are.equal("hello there", messages[2].content)
      assert.are.equal("third", messages[4].content)

      pane:type_line("/frob")
      pane:wait_for("openrouter: usage error: unknown command /frob")
      pane:type_line("/help")
      pane:wait_for("/save FILE")
      pane:type_line("/quit")
      assert.are.equal(0, pane:exit_status())
      os.remove(saved)
    end)

    it("a spinner until the first token; Ctrl-C cancels the reply and keeps the history; " ..
       "Ctrl-C on the empty prompt leaves", function()
      local pane = start({ "chat", "-m", "emulator/slow:150" })
      pane:wait_prompt()
      pane:type_line("one")
      pane:wait_for("Echo: one")
      pane:wait_prompt()

      pane:type_line("alpha beta gamma delta epsilon zeta eta theta iota kappa")
      pane:wait_for("waiting for emulator/slow:150") -- the spinner, before any text
      pane:wait_for("Echo: alpha")
      local screen = pane:screen()
      assert.falsy(screen:find("waiting for", 1, true), screen) -- cleared once text arrived
      pane:keys("C-c")
      pane:wait_for("[cancelled: the conversation is as it was before this message]", 3)
      pane:wait_prompt()
      assert.falsy(pane:screen():find("Echo: alpha beta gamma delta epsilon zeta eta theta iota kappa",
        1, true))

      pane:type_line("/history")
      screen = pane:wait_for("assistant: Echo: one")
      assert.falsy(screen:find("user: alpha", 1, true))
      pane:type_line("/usage")
      pane:wait_for("usage: 1 request, ")

      -- still usable: a second reply streams and can be cancelled again
      pane:type_line("again and again and again")
      pane:wait_for("Echo: again")
      pane:keys("C-c")
      pane:wait_until("a second cancel", function(s)
        local _, n = s:gsub("%[cancelled", "")
        return n == 2
      end, 3)
      pane:wait_prompt()

      pane:keys("C-c")
      assert.are.equal(0, pane:exit_status(3))
    end)

    it("Ctrl-C on a line with text discards it; Ctrl-D on an empty line leaves", function()
      local pane = start({ "chat", "-m", "openai/gpt-4o-mini" })
      pane:wait_prompt()
      pane:tmux("send-keys -t cli -l 'never sent'")
      pane:keys("C-c")
      pane:wait_until("a fresh prompt", function(s) return s:find("never sent^C\n>", 1, true) end)
      pane:type_line("sent")
      pane:wait_for("Echo: sent")
      pane:wait_prompt()
      pane:keys("C-d")
      assert.are.equal(0, pane:exit_status())
      local requests = emu:requests()
      assert.are.equal(1, #requests)
      assert.are.equal("sent", requests[1].json.messages[1].content)
    end)

    it("two Ctrl-C during a reply: cancelled, then leaves", function()
      local pane = start({ "chat", "-m", "emulator/slow:150" })
      pane:wait_prompt()
      pane:type_line("a b c d e f g h")
      pane:wait_for("Echo: a")
      pane:keys("C-c", "C-c")
      assert.are.equal(0, pane:exit_status(3))
      assert.truthy(pane:screen():find("[cancelled", 1, true))
    end)

    it("chat with PROMPT on a terminal: a spinner on stderr, Ctrl-C stops with status 130", function()
      local pane = start({ "chat", "-m", "emulator/slow:150", "one two three four five six seven eight" })
      pane:wait_for("waiting for emulator/slow:150")
      pane:wait_for("Echo: one")
      pane:keys("C-c")
      assert.are.equal(130, pane:exit_status(3))
      local screen = pane:screen()
      assert.truthy(screen:find("openrouter: cancelled error: interrupted (Ctrl-C)", 1, true), screen)
      assert.falsy(screen:find("eight", 1, true))
    end)

    it("replies wrap at word boundaries at the terminal's width, as they stream", function()
      local words = {}
      for i = 1, 40 do words[i] = ("word%d"):format(i * 7919 % 1000) end
      local prompt = table.concat(words, " ")
      for _, args in ipairs({ { "chat", "-m", "openai/gpt-4o-mini", prompt },
                              { "chat", "-m", "emulator/slow:5", prompt } }) do
        local pane = start(args, nil, 37)
        assert.are.equal(0, pane:exit_status())
        local lines = {}
        for line in pane:tmux("capture-pane -p -S -1000 -t cli"):gsub("\nPane is dead.*", ""):gmatch("[^\n]+") do
          assert.truthy(#line <= 37, line)
          lines[#lines + 1] = line:match("^(.-)%s*$")
        end
        assert.truthy(#lines >= 8, table.concat(lines, "\n"))
        -- no word cut: the lines joined by blanks are the reply
        assert.are.equal("Echo: " .. prompt, table.concat(lines, " "))
      end
    end)

    it("colour on a terminal only, and never with NO_COLOR", function()
      local pane = start({ "models", "--search", "qwen" })
      assert.are.equal(0, pane:exit_status())
      local screen = pane:tmux("capture-pane -p -e -S -1000 -t cli")
      assert.truthy(screen:find("\27[1mID", 1, true), screen)
      pane = start({ "models", "--search", "qwen" }, { NO_COLOR = "1" })
      assert.are.equal(0, pane:exit_status())
      screen = pane:tmux("capture-pane -p -e -S -1000 -t cli")
      assert.truthy(screen:find("qwen/qwen3-coder", 1, true))
      assert.falsy(screen:find("\27[1m", 1, true), screen)
    end)
  end)
end)
