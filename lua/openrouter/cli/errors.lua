-- Failures of the command-line tool: one line on stderr, an exit status per kind.
local output = require("openrouter.cli.output")

local M = {}

M.PROGRAM = "openrouter"

-- Exit statuses, by error kind (the global help lists them: cli/init.lua).
M.EXIT = {
  usage = 1, network = 2, timeout = 3, http = 4, api = 5, decode = 6, other = 7,
  cancelled = 130, -- Ctrl-C: 128 + SIGINT, as shells report an interrupted command
}

-- Raised to leave the program from anywhere with an error message and a status.
local Failure = {}
Failure.__index = Failure
M.Failure = Failure

function M.fail(kind, message, status)
  error(setmetatable({ kind = kind, message = message, status = status or M.EXIT[kind] or M.EXIT.other },
    Failure), 0)
end

function M.usage_error(message, command)
  local hint = command and ("see '" .. M.PROGRAM .. " " .. command .. " --help'")
    or ("see '" .. M.PROGRAM .. " --help'")
  M.fail("usage", message .. " (" .. hint .. ")")
end

function M.report(kind, message)
  io.stdout:flush()
  io.stderr:write(M.PROGRAM, ": ", kind, " error: ", message, "\n")
end

-- lua.c turns SIGINT into this error.
function M.is_interrupt(e)
  return type(e) == "string" and e:find("interrupted!$") ~= nil
end

-- An error of the library as a kind and a one-line message.
function M.describe(err, opts)
  if type(err) ~= "table" then return "other", tostring(err) end
  local kind = err.kind or "other"
  local message = err.message or tostring(err)
  if kind == "cancelled" then message = "interrupted (Ctrl-C)" end
  local details = {}
  if err.status and err.status ~= 200 then details[#details + 1] = "HTTP " .. output.num(err.status) end
  if err.code ~= nil and err.code ~= require("openrouter").null and tonumber(err.code) ~= err.status then
    details[#details + 1] = "code " .. tostring(err.code)
  end
  if #details > 0 then message = message .. " (" .. table.concat(details, ", ") .. ")" end
  if err.status == 401 and not (opts and opts.has_key) then
    message = message .. "; set OPENROUTER_API_KEY, pass --api-key or run 'openrouter login'"
  end
  if err.retry_after then message = message .. "; retry after " .. output.num(err.retry_after) .. " s" end
  return kind, (message:gsub("[\r\n]+", " "))
end

function M.fail_with(err, opts)
  local kind, message = M.describe(err, opts)
  M.fail(kind, message, M.EXIT[kind] or M.EXIT.other)
end

return M
