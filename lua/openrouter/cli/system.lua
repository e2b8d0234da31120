-- The few things the command-line tool asks of the system, through the shell: plain Lua
-- has no isatty, no ioctl and no exec.
local M = {}

-- Runs a shell command; true when it exited with status 0.
function M.sh(command)
  local r = os.execute(command)
  return r == true or r == 0
end

function M.sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The first line a shell command prints, or nil.
function M.read_command(command)
  local p = io.popen(command)
  if not p then return nil end
  local out = p:read("*l")
  p:close()
  return out
end

-- Whether fds 0, 1, 2 are terminals: one shell does the three tests, once.
local tty_cache
function M.tty(fd)
  if not tty_cache then
    local r1, _, r3 = os.execute(
      "c=0; [ -t 0 ] && c=1; [ -t 1 ] && c=$((c+2)); [ -t 2 ] && c=$((c+4)); exit $c")
    local code = type(r3) == "number" and r3 or (type(r1) == "number" and r1) or 0
    if code >= 256 then code = math.floor(code / 256) end -- 5.1 and LuaJIT: system()'s status
    tty_cache = { [0] = code % 2 == 1, [1] = math.floor(code / 2) % 2 == 1,
                  [2] = math.floor(code / 4) % 2 == 1 }
  end
  return tty_cache[fd]
end

-- The terminal's width in columns: $COLUMNS when set, else what stty says; nil when unknown.
function M.terminal_width()
  local n = tonumber(os.getenv("COLUMNS") or "")
  if not n then
    local size = M.read_command("stty size </dev/tty 2>/dev/null")
    n = tonumber(size and size:match("^%d+%s+(%d+)") or "")
  end
  if n and n >= 10 then return math.floor(n) end
  return nil
end

return M
