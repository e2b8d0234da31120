-- An HTTPS front for the emulator: a throwaway CA and server certificate made with Debian's
-- `openssl` CLI, and Debian's `socat` terminating TLS on a free loopback port and forwarding
-- the plain bytes to the emulator's HTTP port.
--
--   local tls = require("spec.support.tls")
--   local front = tls.start(emu)       -- emu: an emulator_control server (or a port number)
--   front.url                          -- "https://127.0.0.1:PORT/api/v1"
--   front.ca_file                      -- the CA that signed the server certificate (PEM)
--   front.connections()                -- TLS connections accepted so far (handshakes tried)
--   front.stop()                       -- kills socat (and its per-connection children); idempotent
--
--   tls.start(emu, { names = "DNS:example.invalid" })  -- a certificate for other names, same CA
--   tls.other_ca()                     -- a CA that signed nothing here (PEM path)
--   local cert, key, ca_file, release = tls.certificate()  -- for a TLS server of another kind
--                                      -- (spec/support/nginx.lua); release() when it stops
--
-- The certificates are made once per load of this module (busted loads it again for each spec
-- file) into a private temp dir, which is removed when the last front stops.

local spawn = require("spec.support.spawn")

local quote = spawn.quote

local M = {}

local DEFAULT_NAMES = "IP:127.0.0.1,DNS:localhost"
local START_TIMEOUT = 5 -- seconds for socat to listen
local ATTEMPTS = 5      -- free-port collisions tolerated

local state -- { dir, ca_file, ca_key, servers = { [names] = { cert, key } }, fronts = n }

local function openssl(dir, args)
  local ok, out = spawn.run("cd " .. quote(dir) .. " && openssl " .. args)
  if not ok then error("openssl " .. args .. " failed:\n" .. out, 3) end
end

-- A self-signed CA, EC P-256 (instant to generate), valid two days.
local function make_ca(dir, stem, cn)
  openssl(dir, "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    .. " -keyout " .. stem .. ".key -out " .. stem .. ".pem -days 2"
    .. " -subj " .. quote("/CN=" .. cn)
    .. " -addext " .. quote("basicConstraints=critical,CA:TRUE")
    .. " -addext " .. quote("keyUsage=critical,keyCertSign,cRLSign"))
  return dir .. "/" .. stem .. ".pem", dir .. "/" .. stem .. ".key"
end

local function ensure_state()
  if state then return state end
  local dir = spawn.tempdir("openrouter-spec-tls")
  local ok, err = pcall(function()
    local ca_file, ca_key = make_ca(dir, "ca", "openrouter spec CA")
    state = { dir = dir, ca_file = ca_file, ca_key = ca_key, servers = {}, fronts = 0, serial = 0 }
    -- removes the dir if a front was never stopped (the state closes, or the module is dropped)
    state.guard = spawn.guard(function() spawn.remove_tree(dir) end)
  end)
  if not ok then
    spawn.remove_tree(dir)
    error(err, 0)
  end
  return state
end

-- A server certificate for `names` (a subjectAltName value), signed by the CA.
local function server_cert(names)
  local s = ensure_state()
  if s.servers[names] then return s.servers[names].cert, s.servers[names].key end
  s.serial = s.serial + 1
  local stem = "server" .. s.serial
  spawn.write_file(s.dir .. "/" .. stem .. ".ext", "subjectAltName=" .. names .. "\n"
    .. "basicConstraints=critical,CA:FALSE\n"
    .. "keyUsage=critical,digitalSignature,keyEncipherment\n"
    .. "extendedKeyUsage=serverAuth\n")
  local cn = names:match("^[%u]+:([^,]+)") or "server"
  openssl(s.dir, "req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    .. " -keyout " .. stem .. ".key -out " .. stem .. ".csr -subj " .. quote("/CN=" .. cn))
  openssl(s.dir, "x509 -req -in " .. stem .. ".csr -CA ca.pem -CAkey ca.key"
    .. " -set_serial " .. (1000 + s.serial) .. " -days 2 -sha256"
    .. " -extfile " .. stem .. ".ext -out " .. stem .. ".pem")
  local entry = { cert = s.dir .. "/" .. stem .. ".pem", key = s.dir .. "/" .. stem .. ".key" }
  s.servers[names] = entry
  return entry.cert, entry.key
end

-- A second CA, unrelated to the one that signs the fronts' certificates. Call it while a front
-- runs: its file goes away with the others when the last front stops.
function M.other_ca()
  local s = ensure_state()
  if not s.other_ca then s.other_ca = make_ca(s.dir, "other-ca", "some other CA") end
  return s.other_ca
end

local function release()
  if not state then return end
  state.fronts = state.fronts - 1
  if state.fronts <= 0 then
    spawn.remove_tree(state.dir)
    state = nil
  end
end

-- A server certificate signed by the test CA, for a TLS server other than socat: cert and key
-- paths, the CA's path, and release(), to call once that server stopped (the files go away
-- with the last user). Idempotent release.
function M.certificate(names)
  local s = ensure_state()
  s.fronts = s.fronts + 1
  local ok, cert, key = pcall(server_cert, names or DEFAULT_NAMES)
  if not ok then
    release()
    error(cert, 2)
  end
  local released = false
  return cert, key, s.ca_file, function()
    if released then return end
    released = true
    release()
  end
end

local function count(text, pattern)
  local n = 0
  for _ in (text or ""):gmatch(pattern) do n = n + 1 end
  return n
end

-- Starts a TLS front forwarding to `upstream` (an emulator_control server or a port number).
function M.start(upstream, opts)
  opts = opts or {}
  local upstream_port = type(upstream) == "table" and upstream.port or upstream
  assert(tonumber(upstream_port), "tls.start: upstream port expected")
  local s = ensure_state()
  s.fronts = s.fronts + 1
  local ok, cert, key = pcall(server_cert, opts.names or DEFAULT_NAMES)
  if not ok then
    release()
    error(cert, 2)
  end

  local last_log
  for attempt = 1, ATTEMPTS do
    local port = spawn.free_port()
    local log = s.dir .. "/socat-" .. port .. "-" .. attempt .. ".log"
    -- -d -d: notices ("listening on", "accepting connection from") go to the log
    local listen = "OPENSSL-LISTEN:" .. port .. ",bind=127.0.0.1,reuseaddr,fork"
      .. ",cert=" .. cert .. ",key=" .. key .. ",verify=0"
    local proc = spawn.start("socat -d -d " .. quote(listen) .. " "
      .. quote("TCP:127.0.0.1:" .. upstream_port), log)
    local ready = spawn.wait_ready(proc, START_TIMEOUT, function()
      return (spawn.read_file(log) or ""):find("listening on", 1, true) ~= nil
    end)
    if ready then
      local front = {
        url = "https://127.0.0.1:" .. port .. "/api/v1",
        host = "127.0.0.1",
        port = port,
        ca_file = s.ca_file,
        pid = proc.pid,
      }
      function front.log() return spawn.read_file(log) or "" end
      function front.connections()
        return count(spawn.read_file(log), "accepting connection from")
      end
      function front.stop()
        if not proc then return end
        proc:stop()
        proc = nil
        release()
      end
      return front
    end
    last_log = spawn.read_file(log)
    proc:stop() -- a port collision ("Address already in use") or a failure: try another port
  end
  release()
  error("socat did not start after " .. ATTEMPTS .. " attempts:\n" .. tostring(last_log), 2)
end

return M
