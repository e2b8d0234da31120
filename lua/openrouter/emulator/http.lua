-- The server's machinery under every route and scenario: the scheduler (one coroutine per
-- connection, a timer queue), connection I/O, HTTP/1.1 requests and responses. The connection
-- loop that drives them is in init.lua.

local util = require("openrouter.emulator.util")
local socket, REASONS, CLOSED = util.socket, util.REASONS, util.CLOSED
local json_encode, http_date = util.json_encode, util.http_date

---------------------------------------------------------------------------------------------
-- Scheduler: coroutines yield ("read", sock), ("write", sock) or ("sleep", seconds)
---------------------------------------------------------------------------------------------

local sched = {
  readers = {}, -- socket -> coroutine waiting for it to be readable
  writers = {}, -- socket -> coroutine waiting for it to be writable
  timers = {}, -- min-heap of { at = time, seq = n, co = coroutine }, earliest first
  seq = 0, -- tie-breaker: timers due at the same time run in the order they were set
  cleanup = {}, -- coroutine -> function run when it ends, normally or by an error
}

local function earlier(a, b)
  return a.at < b.at or (a.at == b.at and a.seq < b.seq)
end

local function heap_push(heap, item)
  heap[#heap + 1] = item
  local i = #heap
  while i > 1 do
    local parent = math.floor(i / 2)
    if not earlier(heap[i], heap[parent]) then break end
    heap[i], heap[parent] = heap[parent], heap[i]
    i = parent
  end
end

local function heap_pop(heap)
  local top, last = heap[1], table.remove(heap)
  if #heap == 0 then return top end
  heap[1] = last
  local i = 1
  while true do
    local smallest, left, right = i, 2 * i, 2 * i + 1
    if heap[left] and earlier(heap[left], heap[smallest]) then smallest = left end
    if heap[right] and earlier(heap[right], heap[smallest]) then smallest = right end
    if smallest == i then return top end
    heap[i], heap[smallest] = heap[smallest], heap[i]
    i = smallest
  end
end

local function resume(co)
  local ok, op, arg = coroutine.resume(co)
  if coroutine.status(co) == "dead" then
    if not ok and op ~= CLOSED then
      io.stderr:write("emulator: ", debug.traceback(co, tostring(op)), "\n")
    end
    local cleanup = sched.cleanup[co]
    sched.cleanup[co] = nil
    if cleanup then cleanup() end
  elseif op == "read" then
    sched.readers[arg] = co
  elseif op == "write" then
    sched.writers[arg] = co
  else
    sched.seq = sched.seq + 1
    heap_push(sched.timers, { at = socket.gettime() + arg, seq = sched.seq, co = co })
  end
end

local function spawn(fn, cleanup)
  local co = coroutine.create(fn)
  sched.cleanup[co] = cleanup
  resume(co)
end

local function sleep(seconds)
  coroutine.yield("sleep", seconds)
end

local function wake(waiting, sock)
  local co = waiting[sock]
  if co then
    waiting[sock] = nil
    resume(co)
  end
end

local function run_due_timers()
  local now = socket.gettime()
  while sched.timers[1] and sched.timers[1].at <= now do
    resume(heap_pop(sched.timers).co)
  end
end

-- Wakes at least every TICK seconds even when idle: lua.c turns SIGINT into an error raised at
-- the next Lua instruction, and LuaSocket's select retries on EINTR without returning.
local TICK = 0.5

local function select_timeout()
  local first = sched.timers[1]
  if not first then return TICK end
  return math.min(TICK, math.max(0, first.at - socket.gettime()))
end

---------------------------------------------------------------------------------------------
-- Connection I/O (inside a connection coroutine)
---------------------------------------------------------------------------------------------

-- Appends what the peer sent to conn.buf, suspending until something arrives.
local function fill(conn)
  while true do
    local data, err, partial = conn.sock:receive(65536)
    local got = data or partial
    if got and #got > 0 then
      conn.buf = conn.buf .. got
      return
    end
    if err ~= "timeout" then error(CLOSED, 0) end
    coroutine.yield("read", conn.sock)
  end
end

local function read_line(conn)
  while true do
    local nl = conn.buf:find("\n", 1, true)
    if nl then
      local line = conn.buf:sub(1, nl - 1)
      conn.buf = conn.buf:sub(nl + 1)
      return (line:gsub("\r$", ""))
    end
    fill(conn)
  end
end

-- Collects the pieces in a table: appending to conn.buf would copy a large body again and
-- again as it grows.
local function read_exact(conn, n)
  local parts, have = { conn.buf }, #conn.buf
  while have < n do
    conn.buf = ""
    fill(conn)
    parts[#parts + 1] = conn.buf
    have = have + #conn.buf
  end
  local all = table.concat(parts)
  conn.buf = all:sub(n + 1)
  return all:sub(1, n)
end

local function write(conn, data)
  local sent = 0
  while sent < #data do
    local last, err, partial = conn.sock:send(data, sent + 1)
    if last then
      sent = last
    elseif err == "timeout" then
      sent = partial
      coroutine.yield("write", conn.sock)
    else
      error(CLOSED, 0)
    end
  end
end

-- Aborts the connection with a TCP RST (linger 0) instead of an orderly FIN. The short sleep
-- first lets bytes already written reach the client: an RST discards unsent data.
local function reset_connection(conn)
  sleep(0.01)
  conn.sock:setoption("linger", { on = true, timeout = 0 })
  conn.sock:close()
  error(CLOSED, 0)
end

-- Never answers: discards input until the client goes away, which ends the coroutine.
local function wait_for_peer_close(conn)
  while true do
    conn.buf = ""
    fill(conn)
  end
end

---------------------------------------------------------------------------------------------
-- HTTP/1.1 requests and responses
---------------------------------------------------------------------------------------------

local function read_chunked_body(conn)
  local parts = {}
  while true do
    local size = tonumber(read_line(conn):match("^%s*(%x+)") or "", 16)
    if not size then return nil, "bad chunk size" end
    if size == 0 then break end
    parts[#parts + 1] = read_exact(conn, size)
    read_line(conn) -- the CRLF closing the chunk data
  end
  repeat local trailer = read_line(conn) until trailer == ""
  return table.concat(parts)
end

local function read_body(conn, req)
  local te = req.headers["transfer-encoding"]
  local length = req.headers["content-length"]
  local chunked = te and te:lower():find("chunked", 1, true)
  if not chunked and not length then return "" end
  if not chunked and not length:match("^%d+$") then return nil, "bad Content-Length" end
  if req.headers["expect"] and req.headers["expect"]:lower() == "100-continue"
      and req.version == "1.1" then
    write(conn, "HTTP/1.1 100 Continue\r\n\r\n")
  end
  if chunked then return read_chunked_body(conn) end
  return read_exact(conn, tonumber(length))
end

local function read_headers(conn, req)
  while true do
    local line = read_line(conn)
    if line == "" then return true end
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil end
    local key = name:lower()
    req.header_list[#req.header_list + 1] = { name, value }
    req.headers[key] = req.headers[key] and (req.headers[key] .. ", " .. value) or value
  end
end

local function wants_close(req)
  local connection = (req.headers["connection"] or ""):lower()
  if req.version == "1.0" then return not connection:find("keep-alive", 1, true) end
  return connection:find("close", 1, true) ~= nil
end

-- Reads one request; nil, reason when it is malformed.
local function read_request(conn)
  local line = read_line(conn)
  while line == "" do line = read_line(conn) end -- RFC 7230 3.5: ignore stray empty lines
  local method, target, version = line:match("^(%u+) (%S+) HTTP/(%d%.%d)$")
  if not method then return nil, "bad request line" end
  local req = { method = method, version = version, headers = {}, header_list = {} }
  req.path, req.query = target:match("^([^?]*)%??(.*)$")
  if not read_headers(conn, req) then return nil, "bad header line" end
  local body, err = read_body(conn, req)
  if not body then return nil, err end
  req.body = body
  return req
end

local function response_head(conn, status, headers)
  local lines = { "HTTP/1.1 " .. status .. " " .. (REASONS[status] or "Unknown") }
  for _, header in ipairs(headers) do lines[#lines + 1] = header[1] .. ": " .. header[2] end
  lines[#lines + 1] = "Server: openrouter-emulator"
  lines[#lines + 1] = "Date: " .. http_date()
  lines[#lines + 1] = "Connection: " .. (conn.closing and "close" or "keep-alive")
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function respond(conn, status, content_type, body, headers)
  local all = { { "Content-Type", content_type }, { "Content-Length", #body } }
  for _, header in ipairs(headers or {}) do all[#all + 1] = header end
  write(conn, response_head(conn, status, all) .. body)
end

local function respond_json(conn, status, value, headers)
  respond(conn, status, "application/json", json_encode(value), headers)
end

local function write_chunk(conn, data)
  write(conn, string.format("%x\r\n", #data) .. data .. "\r\n")
end

return {
  respond_json = respond_json, write = write, sleep = sleep, response_head = response_head,
  write_chunk = write_chunk, reset_connection = reset_connection, respond = respond,
  wait_for_peer_close = wait_for_peer_close, sched = sched, spawn = spawn, wake = wake,
  run_due_timers = run_due_timers, select_timeout = select_timeout, wants_close = wants_close,
  read_request = read_request,
}
