-- openrouter.cli: the command-line tool (bin/openrouter is its launcher).
--
--   require("openrouter.cli").run(arg)
--
-- A command is a module openrouter.cli.commands.<name> that returns a table:
--   synopsis   the command line in the global help ("models [--search TEXT] ...")
--   summary    its description there (lines separated by "\n")
--   help       the text of 'openrouter NAME --help'
--   options    its options: name -> { key, kind } (openrouter.cli.args)
--   run        function(client, opts, args): opts holds the global options and its own;
--              errors are raised with openrouter.cli.errors (fail, usage_error)
--   library    false: runs without loading the library, and gets no client
-- Adding a command: its module, its name in COMMANDS below (the order of the help), its
-- line in the rockspec.
local args = require("openrouter.cli.args")
local errors = require("openrouter.cli.errors")
local output = require("openrouter.cli.output")
local request = require("openrouter.cli.request")

local M = {}

M.COMMANDS = { "models", "credits", "key", "chat", "complete", "generation", "login", "logout",
               "emulator", "help" }

local LUA_NAME = (type(jit) == "table" and "luajit") or ("lua" .. (_VERSION:match("%d+%.%d+") or "5.1"))

-- The module of a command, or nil when there is no such command.
function M.command(name)
  for _, known in ipairs(M.COMMANDS) do
    if known == name then return require("openrouter.cli.commands." .. name) end
  end
  return nil
end

local HEADER = [[
usage: openrouter [OPTIONS] COMMAND [ARGS...]

The OpenRouter API on the command line (https://openrouter.ai).

Commands:
]]

local FOOTER = [[

Options, for every command:
  --api-key KEY            API key (default: $OPENROUTER_API_KEY, else the key stored
                           by 'openrouter login'; prefer those: arguments are visible
                           to other users of the machine)
  --base-url URL           API base URL (default: $OPENROUTER_BASE_URL, else
                           https://openrouter.ai/api/v1)
  --timeout SECONDS        bound on each request (default 300)
  --max-retries N          retries of transient failures (default 2)
  -h, --help               help; 'openrouter COMMAND --help' for a command
  --version                versions of this tool, the library, libcurl and Lua

Environment:
  OPENROUTER_API_KEY, OPENROUTER_BASE_URL  as --api-key and --base-url
  OPENROUTER_MODEL         the model when -m is not given
  XDG_CONFIG_HOME          where 'login' stores the key (default ~/.config)
  NO_COLOR                 no colour, even on a terminal

Errors go to stderr as 'openrouter: KIND error: MESSAGE'. Exit status:
  0    success
  1    usage     a bad command line (unknown command or option, missing argument)
  2    network   connection refused or reset, DNS, TLS
  3    timeout   --timeout elapsed, or a stream stayed silent too long
  4    http      an HTTP error without an OpenRouter error body (a proxy's 502 page)
  5    api       an error from OpenRouter (bad model, key, credits, moderation, ...)
  6    decode    a response that is not the expected JSON
  7    other     any other failure (a file that cannot be read, a tool call, ...)
  130  cancelled Ctrl-C stopped the request (what had streamed stays on stdout)
]]

-- "  synopsis   summary" lines: the summary at column 28, below a long synopsis.
local function command_lines(c)
  local pad = (" "):rep(27)
  local first = #c.synopsis <= 23 and ("  %-25s"):format(c.synopsis) or ("  " .. c.synopsis .. "\n" .. pad)
  return first .. c.summary:gsub("\n", "\n" .. pad) .. "\n"
end

-- The global help (no topic), or a command's; strict: an unknown topic is a usage error.
function M.help(topic, strict)
  if topic then
    local c = M.command(topic)
    if c then return c.help end
    if strict then errors.usage_error("no command '" .. topic .. "'") end
  end
  local parts = { HEADER }
  for _, name in ipairs(M.COMMANDS) do parts[#parts + 1] = command_lines(M.command(name)) end
  parts[#parts + 1] = FOOTER
  return table.concat(parts)
end

-- The library, or a failure that says how to get it.
local function library()
  local ok, mod = pcall(require, "openrouter")
  if not ok then
    local why = tostring(mod):gsub("\n.*", ""):gsub("[:%s]+$", "")
    errors.fail("other", why .. " (install the rock, or build the checkout with 'make LUA=" .. LUA_NAME .. "')")
  end
  return mod
end

local function version()
  local mod = library()
  output.print_line(errors.PROGRAM, " ", tostring(mod.VERSION), " (libcurl ", tostring(mod.curl_version),
    ", ", type(jit) == "table" and jit.version or _VERSION, ")")
end

-- Runs a command line; returns the exit status (failures are raised).
function M.main(argv)
  local name, opts, rest = args.parse(argv, function(n)
    local c = M.command(n)
    return c and c.options
  end)
  if opts.version and not name then
    version()
    return 0
  end
  if opts.help and name ~= "help" then -- 'help --help' is the help command's business
    io.stdout:write(M.help(name))
    return 0
  end
  if not name then
    io.stderr:write(M.help())
    return errors.EXIT.usage
  end
  local command = M.command(name)
  local client
  if command.library ~= false then
    library()
    client = request.new_client(opts)
  end
  command.run(client, opts, rest)
  return 0
end

local function exit_with(status)
  io.stdout:flush()
  io.stderr:flush()
  os.exit(status)
end

-- Runs the command line argv (arg: its [1]..[n]) and exits with its status.
function M.run(argv)
  local list = {}
  for i = 1, #(argv or {}) do list[i] = argv[i] end
  local ok, result = xpcall(function() return M.main(list) end, function(e)
    if getmetatable(e) == errors.Failure or errors.is_interrupt(e) then return e end
    return debug.traceback(tostring(e), 2)
  end)
  if ok then exit_with(result or 0) end
  if errors.is_interrupt(result) then
    output.Out.finish_line()
    errors.report("cancelled", "interrupted (Ctrl-C)")
    exit_with(errors.EXIT.cancelled)
  end
  if getmetatable(result) == errors.Failure then
    errors.report(result.kind, result.message)
    exit_with(result.status)
  end
  errors.report("internal", tostring(result))
  exit_with(errors.EXIT.other)
end

return M
