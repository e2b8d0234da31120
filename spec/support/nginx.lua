-- An HTTP/2 TLS front for the emulator: Debian's nginx, in the foreground as one process, on a
-- free loopback port, with the test CA's certificate (spec/support/tls.lua), proxying to the
-- emulator's plain HTTP/1.1 port without buffering, so that SSE streams pass through as they
-- are written. Everything it writes (config, pid, logs, temp files) stays in a private temp
-- dir; no root port, nothing under /var.
--
--   local nginx = require("spec.support.nginx")
--   nginx.binary()                  -- the nginx executable, or nil when it is not installed
--   local front = nginx.start(emu)  -- emu: an emulator_control server (or a port number)
--   front.url                       -- "https://127.0.0.1:PORT/api/v1"
--   front.ca_file                   -- the CA that signed its certificate (PEM)
--   front.log()                     -- the access log, one table per request (see below)
--   front.error_log()               -- nginx's error log (text)
--   front.stop()                    -- stops nginx, removes the dir; idempotent
--
-- An access log entry: { protocol = "HTTP/2.0", status = 200, method = "POST",
-- uri = "/api/v1/chat/completions", connection = 3 (nginx's connection serial),
-- connection_requests = 1, completion = "OK" or "" (the response was not sent whole),
-- bytes = body bytes sent }. Every response also carries `X-Front-Protocol:
-- $server_protocol`, so a client's on_response sees the protocol it spoke to the front.

local spawn = require("spec.support.spawn")
local tls = require("spec.support.tls")
local socket = require("socket")

local quote = spawn.quote

local M = {}

local START_TIMEOUT = 5 -- seconds for nginx to listen
local ATTEMPTS = 5      -- free-port collisions tolerated

function M.binary()
  for _, path in ipairs({ "/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx" }) do
    local f = io.open(path, "rb")
    if f then
      f:close()
      return path
    end
  end
  local ok, out = spawn.run("command -v nginx")
  local path = out:match("([^\n]+)")
  return ok and path or nil
end

-- Fields separated by a tab; $request_completion is empty for a response cut short.
local LOG_FORMAT = "$server_protocol\\t$status\\t$request_method\\t$request_uri\\t$connection"
  .. "\\t$connection_requests\\t$body_bytes_sent\\t$request_completion"

local function config(dir, port, upstream_port, cert, key)
  return table.concat({
    -- one process in the foreground: spawn.lua's stop() ends it, no worker to switch users
    "daemon off;",
    "master_process off;",
    "pid " .. dir .. "/nginx.pid;",
    "error_log " .. dir .. "/error.log info;",
    "events { worker_connections 1024; }",
    "http {",
    "  log_format front '" .. LOG_FORMAT .. "';",
    "  access_log " .. dir .. "/access.log front;",
    "  client_body_temp_path " .. dir .. "/client_body;",
    "  proxy_temp_path " .. dir .. "/proxy;",
    "  fastcgi_temp_path " .. dir .. "/fastcgi;",
    "  uwsgi_temp_path " .. dir .. "/uwsgi;",
    "  scgi_temp_path " .. dir .. "/scgi;",
    "  server {",
    -- nginx 1.22 (Debian 12) spells HTTP/2 on the listen line; `http2 on;` is 1.25.1+
    "    listen 127.0.0.1:" .. port .. " ssl http2;",
    "    ssl_certificate " .. cert .. ";",
    "    ssl_certificate_key " .. key .. ";",
    "    client_max_body_size 16m;",
    "    location / {",
    "      proxy_pass http://127.0.0.1:" .. upstream_port .. ";",
    "      proxy_http_version 1.1;",
    "      proxy_set_header Connection \"\";",
    "      proxy_set_header Host $http_host;",
    -- SSE: every event goes out as it arrives, nothing waits for a buffer to fill
    "      proxy_buffering off;",
    "      proxy_request_buffering off;",
    "      proxy_cache off;",
    "      gzip off;",
    "      proxy_read_timeout 60s;",
    "      add_header X-Front-Protocol $server_protocol always;",
    "    }",
    "  }",
    "}",
  }, "\n") .. "\n"
end

local function listening(port)
  local sock = socket.tcp()
  sock:settimeout(0.2)
  local ok = sock:connect("127.0.0.1", port)
  sock:close()
  return ok ~= nil
end

local function parse_log(text)
  local entries = {}
  for line in (text or ""):gmatch("[^\n]+") do
    local f = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
    entries[#entries + 1] = {
      protocol = f[1], status = tonumber(f[2]), method = f[3], uri = f[4],
      connection = tonumber(f[5]), connection_requests = tonumber(f[6]),
      bytes = tonumber(f[7]), completion = f[8] or "",
    }
  end
  return entries
end

-- Starts nginx in front of `upstream` (an emulator_control server or a port number). Raises
-- when nginx is not installed.
function M.start(upstream)
  local upstream_port = type(upstream) == "table" and upstream.port or upstream
  assert(tonumber(upstream_port), "nginx.start: upstream port expected")
  local bin = M.binary()
  if not bin then
    error("nginx is not installed (apt-get install nginx; `make test` installs it)", 2)
  end
  local cert, key, ca_file, release = tls.certificate()
  local dir = spawn.tempdir("openrouter-spec-nginx")
  local last_log
  for attempt = 1, ATTEMPTS do
    local port = spawn.free_port()
    local conf = dir .. "/nginx.conf"
    spawn.write_file(conf, config(dir, port, upstream_port, cert, key))
    -- -e: the error log before the config is read (the default is under /var/log)
    local proc = spawn.start(quote(bin) .. " -p " .. quote(dir .. "/") .. " -c " .. quote(conf)
      .. " -e " .. quote(dir .. "/error.log"), dir .. "/stderr.log")
    local ready = spawn.wait_ready(proc, START_TIMEOUT, function() return listening(port) end)
    -- someone else's listener on that port would look ready: nginx must still be running
    if ready then socket.sleep(0.05) end
    if ready and proc:alive() then
      local front = {
        url = "https://127.0.0.1:" .. port .. "/api/v1",
        host = "127.0.0.1",
        port = port,
        ca_file = ca_file,
        pid = proc.pid,
        dir = dir,
      }
      function front.log() return parse_log(spawn.read_file(dir .. "/access.log")) end
      function front.error_log()
        return (spawn.read_file(dir .. "/error.log") or "") .. (spawn.read_file(dir .. "/stderr.log") or "")
      end
      front.guard = spawn.guard(function() spawn.remove_tree(dir) end) -- if never stopped
      function front.stop()
        if not proc then return end
        proc:stop()
        proc = nil
        release()
        spawn.remove_tree(dir)
      end
      return front
    end
    last_log = (spawn.read_file(dir .. "/error.log") or "") .. (spawn.read_file(dir .. "/stderr.log") or "")
    proc:stop() -- a port collision ("Address already in use") or a failure: try another port
  end
  release()
  spawn.remove_tree(dir)
  error("nginx did not start after " .. ATTEMPTS .. " attempts:\n" .. tostring(last_log), 2)
end

return M
