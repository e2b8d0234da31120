-- The key 'openrouter login' stores: $XDG_CONFIG_HOME/openrouter/key (default
-- ~/.config/openrouter/key), a file only its owner can read.
local system = require("openrouter.cli.system")

local M = {}

-- The file's path; nil without XDG_CONFIG_HOME or HOME.
function M.path()
  local base = os.getenv("XDG_CONFIG_HOME")
  if not base or base == "" or base:sub(1, 1) ~= "/" then -- XDG: a relative path is ignored
    local home = os.getenv("HOME")
    if not home or home == "" then return nil end
    base = home .. "/.config"
  end
  return base .. "/openrouter/key"
end

-- The stored key, or nil.
function M.load()
  local path = M.path()
  local f = path and io.open(path, "rb")
  if not f then return nil end
  local key = (f:read("*a") or ""):match("^%s*(%S+)%s*$")
  f:close()
  if key and not key:find("%c") and #key <= 4096 then return key end
  return nil
end

-- Writes the key to path, a file created readable by its owner only: a temporary file
-- made by mktemp (mode 0600) in a directory made under umask 077, renamed over path. The
-- key never reaches a command line. Returns true, or nil and what failed.
function M.store(path, key)
  local dir = path:match("^(.*)/[^/]*$")
  local tmp = system.read_command("umask 077 && mkdir -p " .. system.sh_quote(dir) .. " && mktemp "
    .. system.sh_quote(dir .. "/.key.XXXXXX"))
  local f = tmp and tmp ~= "" and io.open(tmp, "wb")
  if not f then return nil, "cannot create a file in " .. dir end
  local ok = f:write(key, "\n")
  ok = f:close() and ok
  if not ok or not os.rename(tmp, path) then
    os.remove(tmp)
    return nil, "cannot write " .. path
  end
  return true
end

-- Removes the stored key: the path it was at, or nil when there was none.
function M.remove()
  local path = M.path()
  if path and os.remove(path) then return path end
  return nil, path
end

return M
