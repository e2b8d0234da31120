-- openrouter.emulator: a local stand-in for the OpenRouter API, for the test suite and for
-- anyone testing code that uses the library without a key or a network.
--
--   openrouter emulator [--host 127.0.0.1] [--port 0]            (the command-line tool)
--   lua spec/support/emulator.lua [--host H] [--port N] [--parent-pid PID]   (a checkout)
--   require("openrouter.emulator").run{ host =, port =, parent_pid =, on_ready = }
--
-- main prints exactly one line on stdout, "OPENROUTER_EMULATOR_URL=http://HOST:PORT/api/v1",
-- then serves until killed, until POST /_emulator/shutdown, or (with --parent-pid) until that
-- process is gone. The request's "model" picks a scenario (chat.lua); any other model id
-- answers "Echo: <last user message>".
--
-- Faithful to the API's OpenAPI description (../shared/reference/openrouter-openapi.yaml) and
-- to what the official SDK accepts; `make check-fidelity` (test/fidelity/check.mjs) proves it
-- for every route served here. API keys: "sk-or-" then at least 8 characters of
-- [A-Za-z0-9_-]; any other key, and "sk-or-invalid...", gets 401 (see checks.lua). Every
-- error body has error.code and error.message, except the scenarios that break the API on
-- purpose to test the client (emulator/string-code, error-200, html-502, malformed, empty,
-- array-body, deep-json, echo-key, leak-key) and the availability errors OpenRouter sends
-- without a code (emulator/capacity, emulator/no-code). Provider names are ones of the
-- description's list. X-RateLimit-* headers come only with OpenRouter's own 429s, as on the
-- real API (emulator/rate-limited).
--
-- A real HTTP/1.1 server (keep-alive, chunked bodies, Expect: 100-continue), one coroutine per
-- connection driven by a socket.select loop with a timer queue, so a stalled connection never
-- blocks another one. Plain Lua for 5.1-5.4 and LuaJIT: LuaSocket and lua-cjson only. Lua 5.1
-- cannot yield across pcall, so connection code reports a dead peer by raising CLOSED and the
-- scheduler, not a pcall, catches it.
--
-- The modules (lua/openrouter/emulator/), each route and scenario documented beside its code:
--   init.lua         this file: control endpoints, routing, the connection loop, run, main
--   http.lua         the scheduler and its timers, connection I/O, HTTP/1.1 requests, responses
--   util.lua         lua-cjson, the constants of every reply, JSON and text helpers
--   checks.lua       what routes check first: the API key, a JSON body, a model id
--   replies.lua      chat and completion replies, whole or streamed: SSE sinks, chunk shapes
--   chat.lua         POST /chat/completions, /completions; the scenarios a model picks
--   faults.lua       fault scenarios: resets, drops, odd bodies, SSE fields, redirects
--   keyleaks.lua     redaction scenarios: emulator/echo-key, emulator/leak-key
--   rich.lua         rich replies (images, audio, logprobs, annotations), structured output
--   generations.lua  GET /generation, GET /generation/content
--   catalogue.lua    GET /models, /models/user, /models/count, /model/..., endpoints, providers
--   keys.lua         GET /key, GET /credits, /keys, /keys/{hash}
--   embeddings.lua   POST /embeddings, POST /rerank
--   images.lua       POST /images
--   audio.lua        POST /audio/speech, POST /audio/transcriptions
--   responses.lua    POST /responses
--   auth.lua         GET /auth (the site root), POST /auth/keys: OAuth PKCE
--
-- Control endpoints, under /_emulator/ and never recorded: GET /_emulator/requests (the request
-- log), POST /_emulator/reset (clears the log, counters, keys and codes), POST
-- /_emulator/shutdown.

local util = require("openrouter.emulator.util")
local cjson, socket, unpack, CLOSED = util.cjson, util.socket, util.unpack, util.CLOSED
local json_array, error_body = util.json_array, util.error_body
local http = require("openrouter.emulator.http")
local sleep, sched, spawn, wake = http.sleep, http.sched, http.spawn, http.wake
local run_due_timers, select_timeout = http.run_due_timers, http.select_timeout
local reset_connection, wants_close = http.reset_connection, http.wants_close
local read_request, respond_json = http.read_request, http.respond_json
local generations = require("openrouter.emulator.generations")
local record_generation = generations.record_generation

local CONTROL_PREFIX = "/_emulator/"

-- The routes of the route modules: API[path] = { method, handler }, and API_PATTERNS, routes
-- with parameters in the path: { pattern, method, handler(conn, req, captures...) }.
local API, API_PATTERNS = {}, {}
for _, name in ipairs({ "chat", "generations", "catalogue", "keys", "embeddings", "images",
                        "audio", "responses", "auth" }) do
  local routes = require("openrouter.emulator." .. name)
  for path, route in pairs(routes.routes) do
    assert(API[path] == nil, "two routes for " .. path)
    API[path] = route
  end
  for _, p in ipairs(routes.patterns or {}) do API_PATTERNS[#API_PATTERNS + 1] = p end
end
local authorization_page = require("openrouter.emulator.auth").authorization_page

---------------------------------------------------------------------------------------------
-- Control endpoints (not recorded)
---------------------------------------------------------------------------------------------

local CONTROL = {
  requests = { method = "GET", handler = function(conn)
    respond_json(conn, 200, json_array(conn.server.log))
  end },
  reset = { method = "POST", handler = function(conn)
    local server = conn.server
    server.log, server.seq, server.fail_counts, server.generations = {}, 0, {}, {}
    server.keys = nil -- the keys made by POST /keys
    server.auth = nil -- the codes of GET /auth and the keys of POST /auth/keys
    respond_json(conn, 200, { ok = true })
  end },
  shutdown = { method = "POST", handler = function(conn)
    conn.closing = true
    respond_json(conn, 200, { ok = true })
    conn.server.stopping = true
  end },
}

---------------------------------------------------------------------------------------------
-- Routing and the connection loop
---------------------------------------------------------------------------------------------

local function record(conn, req)
  local server = conn.server
  local ok, decoded = pcall(cjson.decode, req.body)
  req.json = ok and decoded or nil
  server.seq = server.seq + 1
  server.log[#server.log + 1] = {
    seq = server.seq, method = req.method, path = req.path, query = req.query,
    headers = req.headers, header_list = json_array(req.header_list), body = req.body,
    json = req.json, connection = conn.id,
  }
end

local function dispatch(conn, req, routes, name)
  local route = routes[name]
  if not route and routes == API then
    for _, p in ipairs(API_PATTERNS) do
      local captures = { name:match(p[1]) }
      if captures[1] then
        route = { method = p[2], handler = function(c, r) p[3](c, r, unpack(captures)) end }
        break
      end
    end
  end
  if not route then
    return respond_json(conn, 404, error_body(404, "Not Found"))
  end
  -- route.method: a method, or several as in an Allow header ("GET, POST"), whose handler
  -- looks at req.method itself
  if not (", " .. route.method .. ", "):find(", " .. req.method .. ", ", 1, true) then
    return respond_json(conn, 405, error_body(405, "Method Not Allowed"),
                        { { "Allow", route.method } })
  end
  route.handler(conn, req)
end

local function route_request(conn, req)
  if req.path:sub(1, #CONTROL_PREFIX) == CONTROL_PREFIX then
    return dispatch(conn, req, CONTROL, req.path:sub(#CONTROL_PREFIX + 1))
  end
  local endpoint = req.path:match("^/api/v1(/.*)$")
  if req.path == "/auth" then -- the authorization page lives at the site root
    record(conn, req)
    return authorization_page(conn, req)
  end
  if not endpoint then
    return respond_json(conn, 404, error_body(404, "Not Found"))
  end
  record(conn, req)
  if conn.drop_next then -- emulator/drop-next-request: this request never gets an answer
    if conn.drop_next == "rst" then reset_connection(conn) end
    error(CLOSED, 0)
  end
  dispatch(conn, req, API, endpoint)
end

local function serve_connection(conn)
  repeat
    local req, problem = read_request(conn)
    if not req then
      conn.closing = true
      return respond_json(conn, 400, error_body(400, "Malformed request: " .. problem))
    end
    conn.closing = wants_close(req)
    route_request(conn, req)
  until conn.closing or conn.server.stopping
end

local function accept_all(server)
  while true do
    local sock = server.sock:accept()
    if not sock then return end
    sock:settimeout(0)
    sock:setoption("tcp-nodelay", true) -- each write of a split stream is its own segment
    server.next_conn_id = server.next_conn_id + 1
    local conn = { server = server, sock = sock, id = server.next_conn_id, buf = "" }
    server.conns[conn] = true
    spawn(function() serve_connection(conn) end, function()
      -- billed as cancelled, as OpenRouter does with a stream the client left
      if conn.in_flight then record_generation(conn.in_flight, true) end
      sock:close()
      server.conns[conn] = nil
    end)
  end
end

local function serve(server)
  while not server.stopping do
    local recvt, sendt = { server.sock }, {}
    for sock in pairs(sched.readers) do recvt[#recvt + 1] = sock end
    for sock in pairs(sched.writers) do sendt[#sendt + 1] = sock end
    local readable, writable = socket.select(recvt, sendt, select_timeout())
    for _, sock in ipairs(readable) do
      if sock == server.sock then accept_all(server) else wake(sched.readers, sock) end
    end
    for _, sock in ipairs(writable) do wake(sched.writers, sock) end
    run_due_timers()
  end
  for conn in pairs(server.conns) do conn.sock:close() end
  server.sock:close()
end

---------------------------------------------------------------------------------------------
-- Command line
---------------------------------------------------------------------------------------------

local function process_alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if f then f:close() end
  return f ~= nil
end

-- Stops the server once the process that started it is gone: a crashed test run leaves no
-- orphan behind.
local function watch_parent(server, pid)
  spawn(function()
    while process_alive(pid) do sleep(1) end
    server.stopping = true
  end)
end

local USAGE = "usage: emulator.lua [--host 127.0.0.1] [--port 0] [--parent-pid PID]"

local function parse_args(argv)
  local opts = { host = "127.0.0.1", port = 0 }
  for i = 1, #argv, 2 do
    local flag, value = argv[i], argv[i + 1]
    if flag == "--host" and value then
      opts.host = value
    elseif flag == "--port" and tonumber(value) then
      opts.port = tonumber(value)
    elseif flag == "--parent-pid" and tonumber(value) then
      opts.parent_pid = value
    else
      return nil
    end
  end
  return opts
end

local M = {}

-- Serves on opts.host (default "127.0.0.1") and opts.port (default 0: a free port) until POST
-- /_emulator/shutdown or, with opts.parent_pid, until that process is gone; returns then.
-- opts.on_ready(url), when given, is called once listening, with the API's base URL
-- ("http://HOST:PORT/api/v1"). Returns true once stopped, or nil, err when it cannot listen.
-- One server at a time in a process.
function M.run(opts)
  opts = opts or {}
  local host = opts.host or "127.0.0.1"
  local sock, err = socket.bind(host, opts.port or 0, 128)
  if not sock then return nil, err end
  sock:settimeout(0)
  local _, port = sock:getsockname()
  local server = { sock = sock, conns = {}, next_conn_id = 0, log = {}, seq = 0,
                   fail_counts = {}, generations = {}, stopping = false }
  if opts.on_ready then opts.on_ready("http://" .. host .. ":" .. port .. "/api/v1") end
  if opts.parent_pid then watch_parent(server, opts.parent_pid) end
  serve(server)
  return true
end

-- The command line of spec/support/emulator.lua: prints the URL line, serves, exits.
function M.main(argv)
  local opts = parse_args(argv or {})
  if not opts then
    io.stderr:write(USAGE, "\n")
    os.exit(2)
  end
  opts.on_ready = function(url)
    io.stdout:write("OPENROUTER_EMULATOR_URL=", url, "\n")
    io.stdout:flush()
    io.stderr:write("openrouter emulator: GET /_emulator/requests for the request log, ",
                    "POST /_emulator/reset to clear it, POST /_emulator/shutdown to stop\n")
  end
  assert(M.run(opts))
  os.exit(0)
end

return M
