-- What is left of the API key in memory (issue 11, defect 10; README, "The key in memory").
-- A child process (spec/support/key_in_memory.lua) makes a client, sends every kind of
-- request, closes the client and collects twice; this process reads the child's memory
-- (/proc/<pid>/maps and /proc/<pid>/mem, every writable mapping: heap, Lua's arenas, stack)
-- at two pauses and sorts every copy of the key it finds:
--   line   "Authorization: Bearer <key>" ending in NUL: a C string (our header lists)
--   wire   "Bearer <key>" followed by CR LF: the text of a request as written on the wire,
--          which libcurl builds in buffers it frees without zeroing (not ours to wipe)
--   other  any other "Bearer <key>": a Lua string, a buffer of ours
--   bare   the key without "Bearer " before it: the caller's own string
-- The child does the work and this process scans, so the scan's own reads put no copies
-- where they would be counted.
local emulator = require("spec.support.emulator_control")

local LUA = os.getenv("OPENROUTER_EMULATOR_LUA") or "lua5.4"
local ROUNDS = 3 -- of 11 requests each
local WIRE_MAX = 64 -- README: "at most a few dozen" of libcurl's

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The writable mappings of process pid: { { start, stop }, ... }.
local function writable_ranges(pid)
  local f = assert(io.open("/proc/" .. pid .. "/maps", "r"))
  local ranges = {}
  for line in f:lines() do
    local a, b, perms = line:match("^(%x+)%-(%x+) (%S+)")
    if perms and perms:sub(1, 2) == "rw" then
      ranges[#ranges + 1] = { tonumber(a, 16), tonumber(b, 16) }
    end
  end
  f:close()
  return ranges
end

-- Sorts the occurrence of key at s[at] (see the top of the file).
local function kind_of(s, at, key)
  local before = s:sub(math.max(1, at - 22), at - 1)
  local after = s:sub(at + #key, at + #key + 1)
  if before:sub(-7) ~= "Bearer " then return "bare" end
  if after == "\r\n" then return "wire" end
  if before == "Authorization: Bearer " and after:sub(1, 1) == "\0" then return "line" end
  return "other"
end

-- Counts the copies of key in the writable memory of process pid, by kind.
local function scan(pid, key)
  local counts, seen = { line = 0, wire = 0, other = 0, bare = 0 }, {}
  local mem = assert(io.open("/proc/" .. pid .. "/mem", "rb"))
  local keep = #key + 32 -- bytes carried over between reads: a copy and what surrounds it
  for _, range in ipairs(writable_ranges(pid)) do
    local pos, tail = range[1], ""
    while pos < range[2] do
      local data = mem:seek("set", pos) and mem:read(math.min(4 * 1024 * 1024, range[2] - pos))
      if not data then break end -- a mapping that cannot be read ([vvar]...)
      local s, base = tail .. data, pos - #tail
      local last = pos + #data >= range[2]
      local from = 1
      while true do
        local at = s:find(key, from, true)
        -- near the end of a read, what follows is not known yet: the next read sees it
        if not at or (not last and at + #key + 2 > #s) then break end
        if not seen[base + at] then
          seen[base + at] = true
          local kind = kind_of(s, at, key)
          counts[kind] = counts[kind] + 1
        end
        from = at + 1
      end
      tail = s:sub(-keep)
      pos = pos + #data
    end
  end
  mem:close()
  return counts
end

local function counts_text(c)
  return ("line %d, wire %d, other %d, bare %d"):format(c.line, c.wire, c.other, c.bare)
end

-- Runs the child: returns the counts at its pauses ({ open =, closed = }).
local function measure(url, keep)
  local seed = ("%04x"):format(math.random(0, 0xffff))
  local key = "sk-or-v1-memory-" .. seed:rep(12)
  local fifo = os.tmpname()
  os.remove(fifo)
  assert(os.execute("mkfifo " .. shell_quote(fifo)))
  local cmd = ("exec env LUA_PATH=%s LUA_CPATH=%s %s spec/support/key_in_memory.lua %s %s %s %d %s")
    :format(shell_quote(package.path), shell_quote(package.cpath), LUA, shell_quote(url),
      shell_quote(fifo), seed, ROUNDS, keep and "keep" or "")
  local child = assert(io.popen(cmd, "r"))
  local results = {}
  for _ = 1, 2 do
    local line = child:read("*l")
    local pid, stage = (line or ""):match("^ready (%d+) (%a+)$")
    if not pid then
      child:close()
      os.remove(fifo)
      error("the child did not pause: " .. tostring(line))
    end
    results[stage] = scan(pid, key)
    local release = assert(io.open(fifo, "w"))
    release:close()
  end
  local rest = child:read("*a")
  child:close()
  os.remove(fifo)
  results.rest = rest
  if os.getenv("SHOW_KEY_COUNTS") then -- the README's figures come from here
    io.stderr:write(("\n%s%s: open: %s; closed: %s\n"):format(LUA, keep and " (key kept)" or "",
      counts_text(results.open), counts_text(results.closed)))
  end
  return results
end

describe("the key in memory", function()
  -- Under ASan the allocator keeps freed blocks in quarantine: other counts, not glibc's.
  local preload = os.getenv("LD_PRELOAD") or ""
  if preload:find("asan", 1, true) or not io.open("/proc/self/mem", "rb") then
    it("needs glibc's allocator and /proc", function()
      pending("counts made with glibc malloc, without sanitizers")
    end)
    return
  end

  local emu = emulator.for_spec{ reset = false }
  local kept, dropped

  setup(function()
    kept = measure(emu.url, true)
    dropped = measure(emu.url, false)
  end)

  it("while the client is open, only its wiped header lines hold 'Bearer <key>'", function()
    for _, run in ipairs({ kept, dropped }) do
      local c = run.open
      assert.are.equal(0, c.other, "a copy of 'Bearer <key>' outside a header line: " .. counts_text(c))
      assert.is_true(c.line >= 1, "no Authorization line found: " .. counts_text(c))
    end
  end)

  it("after close() and two collections, no copy of ours is left, only libcurl's", function()
    for _, run in ipairs({ kept, dropped }) do
      local c = run.closed
      assert.are.equal(0, c.line, "a header line was freed without being wiped: " .. counts_text(c))
      assert.are.equal(0, c.other, "a copy of 'Bearer <key>' is left: " .. counts_text(c))
      assert.is_true(c.wire <= WIRE_MAX, "more copies in libcurl's freed buffers than the README says: "
        .. counts_text(c))
    end
  end)

  it("the caller's own key string stays while the caller keeps it", function()
    assert.are.equal("kept 64\n", kept.rest)
    assert.is_true(kept.closed.bare >= 1, counts_text(kept.closed))
  end)
end)
