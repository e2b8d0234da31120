-- Helpers shared by the Lua contenders of bench/run (plain Lua 5.1-5.4 and LuaJIT).
--
-- A contender is run as `LUA bench/X_bench.lua WORKLOAD BASE_URL key=value ...` and prints one
-- line, "RESULT value=... [single=...] n=...", or fails (non-zero exit) when a reply is wrong.

local socket = require("socket")

local M = {}

-- Wall clock with microseconds (gettimeofday): the emulator stamps chunks with the same clock.
M.now = socket.gettime

-- The same request everywhere (limit.c and the SDK send it too).
M.PROMPT = "Say hello in one short sentence."
M.MESSAGES = { { role = "user", content = M.PROMPT } }
M.MODEL = "openai/gpt-4o-mini"
M.API_KEY = "sk-or-bench-0123456789"

function M.request_json(model, stream)
  return '{"model":"' .. model .. '","messages":[{"role":"user","content":"' .. M.PROMPT .. '"}]'
    .. (stream and ',"stream":true' or "") .. "}"
end

-- workload, base url, options (key=value arguments, numbers converted)
function M.args(argv)
  local opts = {}
  for i = 3, #argv do
    local k, v = argv[i]:match("^([%w_]+)=(.*)$")
    assert(k, "bad argument: " .. argv[i])
    opts[k] = tonumber(v) or v
  end
  assert(argv[1] and argv[2], "usage: WORKLOAD BASE_URL [key=value ...]")
  return argv[1], argv[2], opts
end

-- What a correct client gets from the fixtures (written by bench/fixtures.lua).
function M.expect(opts)
  return dofile(opts.expect or "build/bench/www/expect.lua")
end

function M.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function M.median(v)
  table.sort(v)
  local n = #v
  if n == 0 then return 0 / 0 end
  if n % 2 == 1 then return v[(n + 1) / 2] end
  return (v[n / 2] + v[n / 2 + 1]) / 2
end

-- Calls fn() repeatedly: 20 % of `seconds` as warm-up, then `seconds` measured. Returns the
-- calls per second, the median duration of one call (seconds) and the number of calls.
function M.timebox(seconds, fn)
  local now = M.now
  local warm_end = now() + seconds * 0.2
  repeat fn() until now() >= warm_end
  local times, start = {}, now()
  local t = start
  repeat
    fn()
    local t2 = now()
    times[#times + 1] = t2 - t
    t = t2
  until t - start >= seconds
  return #times / (t - start), M.median(times), #times
end

function M.result(fields)
  local parts = { "RESULT" }
  for _, k in ipairs({ "value", "single", "n" }) do
    if fields[k] then parts[#parts + 1] = k .. "=" .. string.format("%.6g", fields[k]) end
  end
  io.write(table.concat(parts, " "), "\n")
end

function M.fail(msg)
  io.stderr:write(msg, "\n")
  os.exit(1)
end

function M.check(cond, msg)
  if not cond then M.fail(msg) end
  return cond
end

return M
