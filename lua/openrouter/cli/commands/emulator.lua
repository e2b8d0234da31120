-- openrouter emulator: a local stand-in for the OpenRouter API (openrouter.emulator), to test
-- code that uses the library without a key or a network.
local args_ = require("openrouter.cli.args")
local errors = require("openrouter.cli.errors")
local output = require("openrouter.cli.output")

local M = {
  synopsis = "emulator [--host H] [--port N]",
  summary = "run a local OpenRouter emulator (no key, no network) until interrupted",
  options = { ["--host"] = { "host", "value" }, ["--port"] = { "port", "number" } },
  library = false, -- the emulator is plain Lua: LuaSocket and lua-cjson, not the C module
  help = [[
usage: openrouter emulator [--host 127.0.0.1] [--port 0]

Runs a local stand-in for the OpenRouter API until interrupted (Ctrl-C) or until
POST /_emulator/shutdown, and first prints its URL:

  OPENROUTER_EMULATOR_URL=http://127.0.0.1:PORT/api/v1

Point base_url (or OPENROUTER_BASE_URL, or --base-url) at it; any key of the form
sk-or-<8 or more letters, digits, - or _> is accepted. The model id picks the
answer: an ordinary id echoes the last user message ("Echo: ..."); emulator/tools,
emulator/slow:<ms>, emulator/fail:<status>:<times>, emulator/mid-stream-error and
more (see the README, "Testing your code without a key"). GET /_emulator/requests
returns the requests it received, POST /_emulator/reset clears them.

--port 0 (the default) takes a free port. Needs LuaSocket and lua-cjson.
]],
}

local function announce(url)
  output.print_line("OPENROUTER_EMULATOR_URL=", url)
  io.stderr:write("openrouter emulator: GET /_emulator/requests for the request log, ",
                  "POST /_emulator/reset to clear it, POST /_emulator/shutdown or Ctrl-C to stop\n")
end

function M.run(_, opts, args)
  args_.no_args("emulator", args)
  local port = opts.port or 0
  if port % 1 ~= 0 or port > 65535 then
    errors.usage_error("option '--port' needs a port number from 0 to 65535", "emulator")
  end
  local loaded, emulator = pcall(require, "openrouter.emulator")
  if not loaded then errors.fail("other", tostring(emulator)) end
  local host = opts.host or "127.0.0.1"
  -- Ctrl-C (lua.c's "interrupted!") is the ordinary way to stop it: not a failure
  local ran, listening, err = pcall(emulator.run, { host = host, port = port, on_ready = announce })
  if not ran and not errors.is_interrupt(listening) then error(listening, 0) end
  if ran and not listening then
    errors.fail("network", "cannot listen on " .. host .. ":" .. port .. ": " .. tostring(err))
  end
end

return M
