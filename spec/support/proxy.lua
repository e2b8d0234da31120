-- A local HTTP proxy for the specs: Debian's `tinyproxy` in the foreground (-d) on a free
-- loopback port, with its own config and log file in a private temp dir.
--
--   local proxy = require("spec.support.proxy")
--   local p = proxy.start{ connect_ports = { 8443 } }  -- ports CONNECT may reach (default: none)
--   p.url                          -- "http://127.0.0.1:PORT"
--   p.log()                        -- the log so far (LogLevel Info: one "Request" line per request)
--   p.requests()                   -- the request lines logged so far ("POST http://... HTTP/1.1")
--   p.stop()                       -- kills tinyproxy, removes the dir; idempotent
--
-- The Via header names the proxy "openrouter-spec-proxy", so the emulator's request log shows
-- it too.

local spawn = require("spec.support.spawn")

local M = {}

M.VIA_NAME = "openrouter-spec-proxy"

local START_TIMEOUT = 5 -- seconds for tinyproxy to listen
local ATTEMPTS = 5      -- free-port collisions tolerated

local function config(port, log, connect_ports)
  local lines = {
    "Port " .. port,
    "Listen 127.0.0.1",
    "Timeout 30",
    'LogFile "' .. log .. '"',
    "LogLevel Info",
    "MaxClients 50",
    "Allow 127.0.0.1",
    'ViaProxyName "' .. M.VIA_NAME .. '"',
  }
  if connect_ports and #connect_ports > 0 then
    for _, p in ipairs(connect_ports) do lines[#lines + 1] = "ConnectPort " .. p end
  else
    lines[#lines + 1] = "ConnectPort 0" -- no CONNECT at all unless asked for
  end
  return table.concat(lines, "\n") .. "\n"
end

function M.start(opts)
  opts = opts or {}
  local dir = spawn.tempdir("openrouter-spec-proxy")
  local last_log
  for attempt = 1, ATTEMPTS do
    local port = spawn.free_port()
    local log = dir .. "/tinyproxy-" .. attempt .. ".log"
    local conf = dir .. "/tinyproxy-" .. attempt .. ".conf"
    spawn.write_file(conf, config(port, log, opts.connect_ports))
    local proc = spawn.start("tinyproxy -d -c " .. spawn.quote(conf), dir .. "/stderr.log")
    local ready = spawn.wait_ready(proc, START_TIMEOUT, function()
      return (spawn.read_file(log) or ""):find("Accepting connections", 1, true) ~= nil
    end)
    if ready then
      local p = { url = "http://127.0.0.1:" .. port, host = "127.0.0.1", port = port, pid = proc.pid }
      function p.log() return spawn.read_file(log) or "" end
      function p.requests()
        local list = {}
        for line in p.log():gmatch("[^\n]+") do
          local request = line:match("Request %(file descriptor %d+%): (.*)$")
          if request then list[#list + 1] = request end
        end
        return list
      end
      p.guard = spawn.guard(function() spawn.remove_tree(dir) end) -- if never stopped
      function p.stop()
        if not proc then return end
        proc:stop()
        proc = nil
        spawn.remove_tree(dir)
      end
      return p
    end
    last_log = (spawn.read_file(log) or "") .. (spawn.read_file(dir .. "/stderr.log") or "")
    proc:stop() -- a port collision, or a failure: try another port
  end
  spawn.remove_tree(dir)
  error("tinyproxy did not start after " .. ATTEMPTS .. " attempts:\n" .. tostring(last_log), 2)
end

return M
