-- Turns the raw results of bench/run into bench/results.md (and prints the same tables):
--
--   lua5.4 bench/report.lua RAW_FILE OUT_MD
--
-- RAW_FILE: one line per run of a contender, "CONTENDER WORKLOAD ROUND value=V [single=S] n=N"
-- or "CONTENDER WORKLOAD ROUND error" / "... skipped". The machine line and the run's details
-- come from the environment (BENCH_MACHINE, BENCH_MODE, BENCH_SECONDS, BENCH_SDK_LABEL,
-- BENCH_NOTES).

local raw_path, out_path = arg[1], arg[2]
assert(raw_path and out_path, "usage: report.lua RAW_FILE OUT_MD")

local WORKLOADS = {
  { id = "w1", title = "W1 sequential chat (req/s)", higher = true },
  { id = "w2", title = "W2 stream (chunks/s)", higher = true },
  { id = "w3", title = "W3 100 parallel (ms, all done)", higher = false },
  { id = "w4", title = "W4 get_models 1 MB (ms/call)", higher = false },
  { id = "w5", title = "W5 first chunk (ms)", higher = false },
  { id = "w6", title = "W6 embeddings 100 x 3,072 (ms/call)", higher = false },
  -- several measures per run: a table of its own (below), not a column of the main one
  { id = "w7", title = "W7 life in a host loop", higher = false, own_table = true },
}

local CONTENDERS = {
  { id = "limit", label = "limit (C, libcurl)" },
  { id = "or54", label = "**openrouter (lua5.4)**" },
  { id = "orjit", label = "**openrouter (luajit)**" },
  { id = "or54poll", label = "openrouter, 15 ms poll timer (lua5.4)" },
  { id = "orjitpoll", label = "openrouter, 15 ms poll timer (luajit)" },
  { id = "base54", label = "openrouter baseline (lua5.4)" },
  { id = "basejit", label = "openrouter baseline (luajit)" },
  { id = "cjson54", label = "cjson ceiling (lua5.4)" },
  { id = "cjsonjit", label = "cjson ceiling (luajit)" },
  { id = "curl", label = "curl CLI per request (lua5.4)" },
  { id = "socket", label = "socket.http (lua5.4)" },
  { id = "sdk", label = os.getenv("BENCH_SDK_LABEL") or "@openrouter/sdk (node)" },
}

---------------------------------------------------------------------------------------------
-- reading
---------------------------------------------------------------------------------------------

local runs = {} -- runs[contender][workload] = { values = {}, singles = {}, errors = n, n = last n }
local function cell(c, w)
  runs[c] = runs[c] or {}
  runs[c][w] = runs[c][w] or { values = {}, singles = {}, by_round = {}, single_by_round = {},
                               errors = 0, skipped = false, extra = {} }
  return runs[c][w]
end

for line in io.lines(raw_path) do
  local c, w, round, rest = line:match("^(%S+) (%S+) (%S+) (.*)$")
  if c then
    local r = cell(c, w)
    if rest == "error" then
      r.errors = r.errors + 1
    elseif rest == "skipped" then
      r.skipped = true
    else
      local v = tonumber(rest:match("value=(%S+)"))
      if v then r.values[#r.values + 1], r.by_round[round] = v, v end
      local s = tonumber(rest:match("single=(%S+)"))
      if s then r.singles[#r.singles + 1], r.single_by_round[round] = s, s end
      r.n = tonumber(rest:match("n=(%S+)"))
      for k, x in rest:gmatch("(%a+)=(%S+)") do
        if k ~= "value" and k ~= "single" and k ~= "n" and tonumber(x) then
          r.extra[k] = r.extra[k] or {}
          r.extra[k][round] = tonumber(x)
        end
      end
      r.scaled = r.scaled or rest:find("scaled") ~= nil
    end
  end
end

local function median(v)
  local t = {}
  for i, x in ipairs(v) do t[i] = x end
  table.sort(t)
  local n = #t
  if n == 0 then return nil end
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

-- Rounds in which other processes used more than DISTURBED cores (bench/run measures it around
-- every workload of every round) are left out of a cell when the cell has quiet rounds: a busy
-- neighbour on a 2-core machine slows some contenders more than others.
local DISTURBED = 0.1
local others = runs._others or {}
runs._others = nil
local quiet = {} -- quiet[workload] = sorted list of quiet rounds; nil when not measured
for w, r in pairs(others) do
  quiet[w] = {}
  for round, v in pairs(r.by_round) do
    if v <= DISTURBED then quiet[w][#quiet[w] + 1] = tonumber(round) end
  end
  table.sort(quiet[w])
end
for _, ws in pairs(runs) do
  for w, r in pairs(ws) do
    if quiet[w] then
      local by_round, values, single_by_round, singles = {}, {}, {}, {}
      for _, round in ipairs(quiet[w]) do
        local key = tostring(round)
        local v, s = r.by_round[key], r.single_by_round[key]
        if v then by_round[key], values[#values + 1] = v, v end
        if s then single_by_round[key], singles[#singles + 1] = s, s end
      end
      if #values > 0 then
        r.by_round, r.values, r.single_by_round, r.singles = by_round, values, single_by_round, singles
      elseif #r.values > 0 then
        r.disturbed = true -- no quiet round for this cell: all rounds are used
      end
    end
  end
end

local function get(c, w)
  local r = runs[c] and runs[c][w]
  return r and median(r.values), r
end

-- The median over the rounds of f(value of a, value of b) measured in the same round: a
-- comparison of neighbours in time, robust to a machine whose load changes during the run.
local function paired(a, wa, b, wb, f)
  local ra, rb = runs[a] and runs[a][wa], runs[b] and runs[b][wb]
  if not ra or not rb then return nil end
  local xs = {}
  for round, va in pairs(ra.by_round) do
    local vb = rb.by_round[round]
    if vb then xs[#xs + 1] = f(va, vb) end
  end
  return median(xs)
end
local function quotient(x, y) return x / y end

---------------------------------------------------------------------------------------------
-- formatting
---------------------------------------------------------------------------------------------

local function thousands(n)
  local s = string.format("%d", math.floor(n + 0.5))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

local function fmt_value(w, v)
  if w.higher then return thousands(v) end
  if v >= 100 then return string.format("%.0f", v) end
  if v >= 10 then return string.format("%.1f", v) end
  if v >= 1 then return string.format("%.2f", v) end
  return string.format("%.3f", v)
end

local function fmt_ratio(x)
  if x >= 100 then return string.format("%.0f", x) end
  if x >= 10 then return string.format("%.1f", x) end
  return string.format("%.2f", x)
end

-- speed relative to the limit (paired by round): 1.00 = as fast as the limit, 0.50 = half its
-- speed
local function ratio_to_limit(c, w)
  if w.higher then return paired(c, w.id, "limit", w.id, quotient) end
  return paired("limit", w.id, c, w.id, quotient)
end

local lines = {}
local function emit(s) lines[#lines + 1] = s or "" end

local function row(cells) emit("| " .. table.concat(cells, " | ") .. " |") end

---------------------------------------------------------------------------------------------
-- the tables
---------------------------------------------------------------------------------------------

emit("# Benchmarks (`make bench`)")
emit()
emit(os.getenv("BENCH_MACHINE") or "machine: unknown")
emit()
emit(os.getenv("BENCH_MODE") or "")
emit()
local worst, any_disturbed_cell = 0, false
for _, r in pairs(others) do
  for _, v in ipairs(r.values) do worst = math.max(worst, v) end
end
for _, ws in pairs(runs) do
  for _, r in pairs(ws) do any_disturbed_cell = any_disturbed_cell or r.disturbed == true end
end
if any_disturbed_cell then
  emit(string.format("**Warning: other processes used up to %.2f cores during the run, and the "
    .. "cells marked ‡ had no quiet round (see the last table): rerun on a quiet machine before "
    .. "trusting them.**", worst))
  emit()
elseif worst > DISTURBED then
  local used = {}
  for _, w in ipairs(WORKLOADS) do
    if quiet[w.id] then
      used[#used + 1] = w.id:upper() .. " rounds " .. table.concat(quiet[w.id], ",")
    end
  end
  emit(string.format("Other processes used up to %.2f cores during some rounds: the cells use "
    .. "only the quiet rounds (%s).", worst, table.concat(used, "; ")))
  emit()
end

emit("Each cell: the median over the rounds, then in parentheses the speed relative to the limit "
  .. "(rates: value / limit; times: limit / value; 1.00 = as fast as the limit, 0.50 = half "
  .. "its speed), the median of the ratios of each round (the contenders of a round run one "
  .. "after the other, so the ratios hold when the machine's load drifts). – = not applicable.")
emit()

local TABLE_WORKLOADS = {}
for _, w in ipairs(WORKLOADS) do
  if not w.own_table then TABLE_WORKLOADS[#TABLE_WORKLOADS + 1] = w end
end
local header = { "contender" }
for _, w in ipairs(TABLE_WORKLOADS) do header[#header + 1] = w.title end
row(header)
local sep = {}
for i = 1, #header do sep[i] = i == 1 and "---" or "---:" end
row(sep)

local footnotes = {}
for _, c in ipairs(CONTENDERS) do
  local cells = { c.label }
  local any = false
  for _, w in ipairs(TABLE_WORKLOADS) do
    local v, r = get(c.id, w.id)
    local text = "–"
    if v then
      any = true
      local ratio = ratio_to_limit(c.id, w)
      text = fmt_value(w, v) .. (ratio and (" (" .. fmt_ratio(ratio) .. ")") or "")
      if r.disturbed then
        text = text .. " ‡"
        footnotes["‡"] = "‡ no quiet round: the median of all rounds, disturbed by other processes"
      end
      if r.scaled then
        text = text .. " †"
        footnotes["†"] = "† measured on " .. r.n .. " sequential requests, scaled to 100"
      end
      if r.errors > 0 then text = text .. " (" .. r.errors .. " failed runs)" end
    elseif r and r.errors > 0 then
      text, any = "failed", true
    elseif r and r.skipped then
      text, any = "skipped", true
    end
    cells[#cells + 1] = text
  end
  if any then row(cells) end
end
for _, note in pairs(footnotes) do emit(); emit(note) end

-- W3: the single-request latency each contender measured, for the bar
emit()
local singles = {}
for _, c in ipairs(CONTENDERS) do
  local _, r = get(c.id, "w3")
  local s = r and median(r.singles)
  if s then singles[#singles + 1] = c.label:gsub("%*", "") .. " " .. string.format("%.1f", s) .. " ms" end
end
if #singles > 0 then
  emit("W3 single request (`emulator/slow:200`, same connection pool, median): " .. table.concat(singles, ", ") .. ".")
end

---------------------------------------------------------------------------------------------
-- W7: life in a host loop (issue 13)
---------------------------------------------------------------------------------------------

-- the median over the rounds of a W7 measure (value: delay; cpu, cs, wait from the extras)
local function w7(c, key)
  local r = runs[c] and runs[c].w7
  if not r then return nil end
  if key == "value" then return median(r.values) end
  local xs = {}
  for round, x in pairs(r.extra[key] or {}) do
    if key == "value" or r.by_round[round] then xs[#xs + 1] = x end
  end
  return median(xs)
end

local W7_PAIRS = { { "or54", "or54poll", "lua5.4" }, { "orjit", "orjitpoll", "luajit" } }
local any_w7 = false
for _, p in ipairs(W7_PAIRS) do any_w7 = any_w7 or w7(p[1], "value") or w7(p[2], "value") end
if any_w7 then
  emit()
  emit("## W7: life in a host loop (issue 13)")
  emit()
  emit("A luv loop waits 3 s for a slow first chunk (`emulator/first-chunk-after:3000`), then 20 "
    .. "chunks stamped by the server arrive 10 ms apart. Over the wait (from the request to its "
    .. "first chunk): the process's CPU time and its voluntary context switches (each a sleep "
    .. "that ended: a wake-up); then the median delay from a chunk's server stamp to its "
    .. "`on_chunk`. Attached: `require(\"openrouter.uv\").attach(client)`; poll timer: a 15 ms "
    .. "luv timer calling `client:poll(0)`. Medians over the rounds; x = poll timer / attached.")
  emit()
  row({ "interpreter", "CPU over the wait, attached / poll timer (ms)", "x",
        "wake-ups over the wait, attached / poll timer", "x",
        "server -> on_chunk, attached / poll timer (ms)", "x", "wait (s)" })
  row({ "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:" })
  local function pair_cell(a, b, fmt)
    if not a and not b then return "–", "–" end
    local text = (a and string.format(fmt, a) or "–") .. " / " .. (b and string.format(fmt, b) or "–")
    local x = (a and b and a > 0) and fmt_ratio(b / a) or "–"
    return text, x
  end
  for _, p in ipairs(W7_PAIRS) do
    local cpu, cpux = pair_cell(w7(p[1], "cpu"), w7(p[2], "cpu"), "%.2f")
    local cs, csx = pair_cell(w7(p[1], "cs"), w7(p[2], "cs"), "%.0f")
    local d, dx = pair_cell(w7(p[1], "value"), w7(p[2], "value"), "%.3f")
    local wait = w7(p[1], "wait")
    row({ p[3], cpu, cpux, cs, csx, d, dx, wait and string.format("%.2f", wait / 1000) or "–" })
  end
end

---------------------------------------------------------------------------------------------
-- the bars of issue 6
---------------------------------------------------------------------------------------------

emit()
emit("## The bars (issues 6 and 13)")
emit()
row({ "bar", "measured", "target", "met" })
row({ "---", "---:", "---", "---" })

local function disturbed(...)
  for _, cw in ipairs({ ... }) do
    local r = runs[cw[1]] and runs[cw[1]][cw[2]]
    if r and r.disturbed then return " ‡" end
  end
  return ""
end

local function bar(name, measured, text, target, ok, flag)
  if measured == nil then
    row({ name, "n/a", target, "–" })
  else
    row({ name, text .. (flag or ""), target, ok and "yes" or "**no**" })
  end
end

for _, interp in ipairs({ { "or54", "cjson54", "lua5.4" }, { "orjit", "cjsonjit", "luajit" } }) do
  local o, cj, name = interp[1], interp[2], interp[3]
  local x = paired(o, "w1", "limit", "w1", quotient)
  bar("W1 openrouter / limit, req/s (" .. name .. ")", x, x and string.format("%.2f", x),
    ">= 0.85", x and x >= 0.85, disturbed({ o, "w1" }, { "limit", "w1" }))
  x = paired(o, "w1", "curl", "w1", quotient)
  bar("W1 openrouter / curl CLI per request (" .. name .. ")", x, x and string.format("%.0fx", x),
    ">= 50x", x and x >= 50, disturbed({ o, "w1" }, { "curl", "w1" }))
  x = paired(o, "w2", cj, "w2", quotient)
  bar("W2 openrouter / cjson ceiling, chunks/s (" .. name .. ")", x, x and string.format("%.2f", x),
    ">= 0.8", x and x >= 0.8, disturbed({ o, "w2" }, { cj, "w2" }))
  local r3 = runs[o] and runs[o].w3
  local ratios3 = {}
  for round, v in pairs(r3 and r3.by_round or {}) do
    local single = r3.single_by_round[round]
    if single then ratios3[#ratios3 + 1] = v / single end
  end
  x = median(ratios3)
  bar("W3 100 parallel / one request (" .. name .. ")", x,
    x and string.format("%.2f (%.0f / %.0f ms)", x, get(o, "w3"), median(r3.singles)), "<= 1.3",
    x and x <= 1.3, disturbed({ o, "w3" }))
  x = paired(o, "w4", cj, "w4", quotient)
  bar("W4 openrouter / bare cjson decode, time (" .. name .. ")", x,
    x and string.format("%.2f (%.2f / %.2f ms)", x, get(o, "w4"), get(cj, "w4")), "<= 1.2",
    x and x <= 1.2, disturbed({ o, "w4" }, { cj, "w4" }))
  local w5 = get(o, "w5")
  bar("W5 server send -> on_chunk (" .. name .. ")", w5, w5 and string.format("%.3f ms", w5),
    "< 0.3 ms", w5 and w5 < 0.3, disturbed({ o, "w5" }))
  local cpu, cs, d7 = w7(o, "cpu"), w7(o, "cs"), w7(o, "value")
  bar("W7 attached: CPU over a 3 s wait (" .. name .. ")", cpu, cpu and string.format("%.2f ms", cpu),
    "< 20 ms", cpu and cpu < 20, disturbed({ o, "w7" }))
  bar("W7 attached: wake-ups over a 3 s wait (" .. name .. ")", cs, cs and string.format("%.0f", cs),
    "about 0 (<= 3)", cs and cs <= 3, disturbed({ o, "w7" }))
  bar("W7 attached: server -> on_chunk (" .. name .. ")", d7, d7 and string.format("%.3f ms", d7),
    "< 0.3 ms", d7 and d7 < 0.3, disturbed({ o, "w7" }))
end

---------------------------------------------------------------------------------------------
-- spread: how much the rounds disagree
---------------------------------------------------------------------------------------------

emit()
emit("## Spread over the rounds")
emit()
emit("Half the range (max - min) / 2 of the per-round values, relative to the median, and the "
  .. "number of rounds used. A large spread means the machine was busy: rerun before trusting a "
  .. "cell.")
emit()
row(header)
row(sep)
for _, c in ipairs(CONTENDERS) do
  local cells, any = { c.label }, false
  for _, w in ipairs(TABLE_WORKLOADS) do
    local v, r = get(c.id, w.id)
    if v then
      any = true
      local lo, hi = math.huge, -math.huge
      for _, x in ipairs(r.values) do lo, hi = math.min(lo, x), math.max(hi, x) end
      cells[#cells + 1] = string.format("±%.0f%% (%d)", (hi - lo) / 2 / v * 100, #r.values)
    else
      cells[#cells + 1] = "–"
    end
  end
  if any then row(cells) end
end

if next(others) then
  emit()
  emit("## Other processes during the run")
  emit()
  emit(string.format("CPU time used by processes other than the benchmark's (and its nginx and "
    .. "emulator) on the CPUs the benchmark uses (%d = all of them), during each workload of each round. "
    .. "Above %.2f (bold) the round is disturbed and left out of that workload's cells when "
    .. "they have quiet rounds.",
    tonumber(os.getenv("BENCH_CORES") or "") or 2, DISTURBED))
  emit()
  local rounds = 0
  for _, r in pairs(others) do
    for round in pairs(r.by_round) do rounds = math.max(rounds, tonumber(round)) end
  end
  local h, sp = { "workload" }, { "---" }
  for i = 1, rounds do h[#h + 1], sp[#sp + 1] = "round " .. i, "---:" end
  row(h)
  row(sp)
  for _, w in ipairs(WORKLOADS) do
    local r = others[w.id]
    if r then
      local cells = { w.id:upper() }
      for i = 1, rounds do
        local v = r.by_round[tostring(i)]
        local text = v and string.format("%.2f", v) or "–"
        if v and v > DISTURBED then text = "**" .. text .. "**" end
        cells[#cells + 1] = text
      end
      row(cells)
    end
  end
end

local notes = os.getenv("BENCH_NOTES")
if notes and notes ~= "" then
  emit()
  emit("## Notes")
  emit()
  for note in notes:gmatch("[^\n]+") do emit("* " .. note) end
end

emit()
emit("Workloads, contenders and method: see the header of bench/run. Written by bench/report.lua.")

local text = table.concat(lines, "\n") .. "\n"
local f = assert(io.open(out_path, "w"))
f:write(text)
f:close()
io.write(text)
