-- Helpers for the specs' helper processes (spec/support/tls.lua, spec/support/proxy.lua):
-- temp dirs, free loopback ports, and background processes that cannot outlive the test run.
--
--   local spawn = require("spec.support.spawn")
--   local dir = spawn.tempdir("openrouter-spec-x")     -- mktemp -d; spawn.remove_tree(dir)
--   local port = spawn.free_port()                     -- a loopback port nobody listens on
--   local proc = spawn.start("socat ...", log_path)    -- proc.pid; proc:alive(); proc:stop()
--
-- A process is started through io.popen as `echo $$; exec setsid setpriv --pdeathsig KILL cmd`:
-- the shell prints its own pid and becomes the command, so proc.pid is the command's pid; setsid
-- makes that pid a process group of its own (socat's per-connection children included),
-- --pdeathsig makes the kernel kill it if this Lua process dies without calling stop(), and a
-- finalizer kills it if the Process is collected, or the Lua state closes, while it runs.
-- Linux only (/proc), like the rest of the suite. Lua 5.1-5.4 and LuaJIT.

local socket = require("socket")

local M = {}

-- Under `make check-asan` the sanitizer runtime is preloaded into the interpreter; the helper
-- programs are not under test, so they run without it.
local NO_PRELOAD = "unset LD_PRELOAD; "

function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local quote = M.quote

-- os.execute's success across 5.1 / LuaJIT (a number) and 5.2+ (true, "exit", code).
function M.execute(cmd)
  local a, _, code = os.execute(NO_PRELOAD .. cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (code == nil or code == 0)
end

-- Runs a shell command; returns ok, its output (stdout and stderr). io.popen's close() gives no
-- status under Lua 5.1, so the exit code travels as the output's last line.
function M.run(cmd)
  local h = assert(io.popen(NO_PRELOAD .. "( " .. cmd .. " ) 2>&1; echo \"exit=$?\"", "r"))
  local out = h:read("*a") or ""
  h:close()
  local code = tonumber(out:match("exit=(%d+)%s*$") or "")
  return code == 0, (out:gsub("exit=%d+%s*$", ""))
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write_file(path, contents)
  local f = assert(io.open(path, "wb"))
  assert(f:write(contents))
  f:close()
end

-- A fresh private directory under $TMPDIR (or /tmp), named "<prefix>.XXXXXX".
function M.tempdir(prefix)
  assert(prefix:match("^openrouter%-spec%-[%w%-]+$"), "tempdir prefix must be openrouter-spec-*")
  local base = os.getenv("TMPDIR")
  if not base or base == "" then base = "/tmp" end
  local ok, out = M.run("mktemp -d " .. quote(base .. "/" .. prefix .. ".XXXXXX"))
  local dir = out:match("([^\n]+)")
  assert(ok and dir, "mktemp failed: " .. out)
  return dir
end

-- Removes a directory made by tempdir (refuses anything else).
function M.remove_tree(dir)
  if not dir then return end
  assert(dir:match("/openrouter%-spec%-[%w%-]+%.[%w]+$"), "not a spec temp dir: " .. dir)
  M.execute("rm -rf " .. quote(dir))
end

-- A loopback port nobody listens on: bound by us, then released. Whoever binds it next may
-- lose a race with another program; callers retry on a collision.
function M.free_port()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  server:close()
  return tonumber(port)
end

-- /proc/PID/stat: state letter and process group of a process, or nil when it is gone.
local function stat(pid)
  local line = M.read_file("/proc/" .. pid .. "/stat")
  if not line then return nil end
  -- "pid (comm) state ppid pgrp ...": comm may hold spaces, so anchor on the last ")"
  local rest = line:match("^.*%)%s+(.*)$")
  if not rest then return nil end
  local state, _, pgrp = rest:match("^(%S+)%s+(%S+)%s+(%S+)")
  return state, tonumber(pgrp)
end

local function running(state)
  return state ~= nil and state ~= "Z" and state ~= "X" and state ~= "x"
end

-- Pids of the live (not zombie) processes of process group `pgid`.
local function group_members(pgid)
  local members = {}
  local h = io.popen(NO_PRELOAD .. "ls /proc 2>/dev/null", "r")
  if not h then return members end
  for name in h:lines() do
    if name:match("^%d+$") then
      local state, pgrp = stat(name)
      if pgrp == pgid and running(state) then members[#members + 1] = tonumber(name) end
    end
  end
  h:close()
  return members
end

local Process = {}
Process.__index = Process

function Process:alive()
  return running((stat(self.pid)))
end

-- Whether any process of its group (the command and what it forked) still runs.
function Process:group_alive()
  return #group_members(self.pid) > 0
end

local function signal(pid, sig)
  -- the whole group first (setsid made pid its leader), the process itself as a fallback
  M.execute("kill -" .. sig .. " -" .. pid .. " >/dev/null 2>&1")
  M.execute("kill -" .. sig .. " " .. pid .. " >/dev/null 2>&1")
end

local function wait_until(deadline, pred)
  while not pred() do
    if socket.gettime() >= deadline then return false end
    socket.sleep(0.01)
  end
  return true
end

-- Stops the process and everything it forked (SIGTERM, then SIGKILL after a grace period),
-- and reaps it. Idempotent.
function Process:stop()
  if not self.handle then return end
  local pid = self.pid
  -- What it forked first (socat's per-connection children), so that it reaps them itself
  -- instead of leaving them to init; then the whole group.
  local children = {}
  for _, member in ipairs(group_members(pid)) do
    if member ~= pid then
      children[#children + 1] = member
      M.execute("kill -TERM " .. member .. " >/dev/null 2>&1")
    end
  end
  if #children > 0 then
    wait_until(socket.gettime() + 0.5, function()
      for _, child in ipairs(children) do
        if stat(child) then return false end
      end
      return true
    end)
  end
  signal(pid, "TERM")
  if not wait_until(socket.gettime() + 2, function() return not self:group_alive() end) then
    signal(pid, "KILL")
    wait_until(socket.gettime() + 2, function() return not self:group_alive() end)
  end
  self.handle:close() -- waits for the process: it is gone, so this returns at once
  self.handle = nil
end

-- An object whose finalizer calls fn(): when it is collected, or when the Lua state closes
-- (busted's exit). Finalizers run in reverse order of creation, so a guard made after an
-- io.popen handle runs before that handle's close.
function M.guard(fn)
  if newproxy then -- Lua 5.1, LuaJIT: only userdata have __gc
    local u = newproxy(true)
    getmetatable(u).__gc = function() fn() end
    return u
  end
  return setmetatable({}, { __gc = function() fn() end })
end

-- Starts `command` (a shell command line, already quoted) with stdin and stdout on /dev/null
-- and stderr appended to `stderr_path`. Returns a Process.
function M.start(command, stderr_path)
  local handle = assert(io.popen(NO_PRELOAD .. "echo $$; exec setsid setpriv --pdeathsig KILL " .. command
    .. " </dev/null >/dev/null 2>>" .. quote(stderr_path), "r"))
  local pid = tonumber(handle:read("*l") or "")
  if not pid then
    handle:close()
    error("could not start: " .. command, 2)
  end
  local proc = setmetatable({ pid = pid, handle = handle, command = command }, Process)
  -- A process never stopped (an error in a spec's setup, a forgotten stop) would make the Lua
  -- state's close hang: closing the popen handle waits for the process. Kill it first.
  local h = handle
  proc.guard = M.guard(function()
    if proc.handle == h then
      signal(pid, "KILL")
    end
  end)
  return proc
end

-- Waits until ready() is true (returns true), or until the process died or `timeout` seconds
-- passed (returns false).
function M.wait_ready(proc, timeout, ready)
  local deadline = socket.gettime() + timeout
  while true do
    if ready() then return true end
    if not proc:alive() or socket.gettime() >= deadline then return false end
    socket.sleep(0.01)
  end
end

return M
