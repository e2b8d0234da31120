-- Command lines: global options anywhere, a command, its options and arguments.
--
-- An option table maps a name to { key, kind }: kind "value" (a string follows), "number"
-- (a non-negative number follows), "flag" or "list" (comma- or space-separated values,
-- repeatable). "--name=value" and "-mVALUE" are accepted; "--" ends the options.
local errors = require("openrouter.cli.errors")
local system = require("openrouter.cli.system")

local usage_error = errors.usage_error

local M = {}

M.GLOBAL_OPTIONS = {
  ["--api-key"] = { "api_key", "value" }, ["--base-url"] = { "base_url", "value" },
  ["--timeout"] = { "timeout", "number" }, ["--max-retries"] = { "max_retries", "number" },
  ["-h"] = { "help", "flag" }, ["--help"] = { "help", "flag" },
  ["--version"] = { "version", "flag" },
}

-- Splits "--name=value" and "-nVALUE".
local function split(a)
  if a:sub(1, 2) == "--" then
    local name, attached = a:match("^(%-%-[^=]+)=(.*)$")
    return name or a, attached
  elseif #a > 2 then
    return a:sub(1, 2), a:sub(3)
  end
  return a, nil
end

local function store(opts, name, spec, value, command)
  local key, kind = spec[1], spec[2]
  if kind == "number" then
    local n = tonumber(value)
    if not n or n ~= n or n < 0 then
      usage_error("option '" .. name .. "' needs a non-negative number, got '" .. value .. "'", command)
    end
    value = n
  end
  if kind == "list" then
    opts[key] = opts[key] or {}
    for item in value:gmatch("[^,%s]+") do opts[key][#opts[key] + 1] = item end
  else
    opts[key] = value
  end
end

-- Reads the option at argv[i]; returns the index of the last word it used.
local function option(argv, i, opts, options, command)
  local name, attached = split(argv[i])
  local spec = (options and options[name]) or M.GLOBAL_OPTIONS[name]
  if not spec then
    usage_error("unknown option '" .. name .. "'" .. (command and (" for '" .. command .. "'") or ""),
      command)
  end
  if spec[2] == "flag" then
    if attached then usage_error("option '" .. name .. "' takes no value", command) end
    opts[spec[1]] = true
    return i
  end
  local value = attached
  if value == nil then
    i = i + 1
    value = argv[i]
  end
  if value == nil then usage_error("option '" .. name .. "' needs a value", command) end
  store(opts, name, spec, value, command)
  return i
end

-- Parses argv; options_of(name) gives a command's option table, nil for no such command.
-- Returns the command (nil without one), the options and the arguments.
function M.parse(argv, options_of)
  local opts, args, command, options = {}, {}, nil, nil
  local i, only_args = 1, false
  while i <= #argv do
    local a = argv[i]
    if only_args or a == "-" or a:sub(1, 1) ~= "-" then
      if command then
        args[#args + 1] = a
      else
        command, options = a, options_of(a)
        if not options then usage_error("unknown command '" .. command .. "'") end
      end
    elseif a == "--" then
      only_args = true
    else
      i = option(argv, i, opts, options, command)
    end
    i = i + 1
  end
  return command, opts, args
end

---------------------------------------------------------------------------------------------
-- Checks the commands share
---------------------------------------------------------------------------------------------

function M.no_args(command, args)
  if #args > 0 then usage_error("'" .. command .. "' takes no argument, got '" .. args[1] .. "'", command) end
end

-- -m, else $OPENROUTER_MODEL.
function M.model(opts, command)
  local model = opts.model or os.getenv("OPENROUTER_MODEL")
  if not model or model == "" then
    usage_error("'" .. command .. "' needs a model: -m MODEL (or set OPENROUTER_MODEL)", command)
  end
  return model
end

-- The prompt: the arguments, else stdin when it is not a terminal; nil on a terminal.
function M.prompt(command, args)
  if #args > 0 then return table.concat(args, " ") end
  if system.tty(0) then return nil end
  local text = io.stdin:read("*a")
  if not text or not text:find("%S") then
    usage_error("no prompt: give PROMPT or pipe text on stdin", command)
  end
  return (text:gsub("\r?\n$", ""))
end

return M
