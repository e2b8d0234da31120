-- Starts and drives the OpenRouter emulator (spec/support/emulator.lua) from busted specs.
--
--   local emulator = require("spec.support.emulator_control")
--   local emu = emulator.start()   -- emu.url == "http://127.0.0.1:PORT/api/v1"
--   emu:requests()                 -- the request log, decoded
--   emu:last_request()             -- its last entry, or nil
--   emu:reset()                    -- clears the log and the per-scenario counters
--   emu:stop()                     -- shuts the server down; idempotent
--
-- In a spec file, one line starts it for a describe block and stops it after:
--
--   describe("things", function()
--     local emu = emulator.for_spec()   -- setup: start; teardown: stop; before_each: reset
--     local emu = emulator.for_spec{ reset = false }   -- the same without the resets
--
-- Call it before the block's own setup and before_each, which then find emu.url set and the
-- log empty. The server is the modules of lua/openrouter/emulator/.
--
-- The server runs as a separate process under $OPENROUTER_EMULATOR_LUA (default lua5.4).
-- Control requests use a tiny HTTP/1.1 client of their own, never the library under test.

local socket = require("socket")
local cjson = require("cjson")

local TIMEOUT = 10 -- seconds: bounds every control request

local M = {}

local Emulator = {}
Emulator.__index = Emulator

-- emulator.lua sits next to this file; resolved from the source path so any cwd works.
local function emulator_path()
  local source = debug.getinfo(1, "S").source
  local dir = source:match("^@(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then dir = (os.getenv("PWD") or ".") .. "/" .. dir end
  return dir .. "/emulator.lua"
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Our own pid (Linux): handed to the server, which exits when we are gone, so a crashed test
-- run leaves no orphan server behind.
local function own_pid()
  local f = io.open("/proc/self/stat", "r")
  if not f then return nil end
  local pid = (f:read("*l") or ""):match("^(%d+)")
  f:close()
  return pid
end

-- One request on a fresh connection (Connection: close); returns status, body.
local function http_request(host, port, method, path)
  local sock = socket.tcp()
  sock:settimeout(TIMEOUT)
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  sock:send(method .. " " .. path .. " HTTP/1.1\r\nHost: " .. host .. ":" .. port
    .. "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
  local raw, rerr, partial = sock:receive("*a")
  sock:close()
  raw = raw or partial
  local status = tonumber(raw:match("^HTTP/1%.%d (%d%d%d)") or "")
  if not status then return nil, rerr or "malformed response" end
  return status, raw:match("\r\n\r\n(.*)$") or ""
end

local function control(self, method, path)
  local status, body = http_request(self.host, self.port, method, "/_emulator/" .. path)
  if status ~= 200 then
    error(("emulator: %s /_emulator/%s failed: %s %s"):format(method, path, tostring(status),
      tostring(body)), 3)
  end
  return body
end

-- Spawns the server and waits for its URL line. The server prints it right after binding and
-- exits on any start-up failure, so the read ends at once either way: EOF, not a hang.
-- opts.command: another shell command line that prints that line first (`openrouter emulator`).
function M.start(opts)
  local lua = os.getenv("OPENROUTER_EMULATOR_LUA") or "lua5.4"
  local pid = own_pid()
  -- the emulator is not under test: no sanitizer runtime preloaded into it
  local cmd = opts and opts.command or "exec env -u LD_PRELOAD " .. lua .. " "
    .. shell_quote(emulator_path()) .. " --host 127.0.0.1 --port 0"
    .. (pid and (" --parent-pid " .. pid) or "")
  local handle = assert(io.popen(cmd .. " 2>/dev/null", "r"))
  local line = handle:read("*l")
  local url = line and line:match("^OPENROUTER_EMULATOR_URL=(%S+)$")
  if not url then
    handle:close()
    error("emulator did not start (" .. cmd .. "): got " .. tostring(line), 2)
  end
  local host, port = url:match("^http://([^:/]+):(%d+)/")
  return setmetatable({ url = url, host = host, port = tonumber(port), handle = handle }, Emulator)
end

-- Starts the emulator in the enclosing describe block's setup, stops it in its teardown and,
-- unless opts.reset is false, resets it before each test (busted runs hooks in the order they
-- were registered: call this before the block's own). Returns the emulator, whose url, host
-- and port are set once setup has run.
function M.for_spec(opts)
  local busted = require("busted")
  local emu = setmetatable({}, Emulator)
  busted.setup(function()
    for k, v in pairs(M.start()) do emu[k] = v end
  end)
  busted.teardown(function() emu:stop() end)
  if not (opts and opts.reset == false) then
    busted.before_each(function() emu:reset() end)
  end
  return emu
end

function Emulator:requests()
  return cjson.decode(control(self, "GET", "requests"))
end

function Emulator:last_request()
  local log = self:requests()
  return log[#log]
end

function Emulator:reset()
  control(self, "POST", "reset")
end

-- Asks the server to exit, then closes the pipe (which waits for the process to end).
function Emulator:stop()
  if not self.handle then return end
  http_request(self.host, self.port, "POST", "/_emulator/shutdown")
  self.handle:close()
  self.handle = nil
end

return M
