-- A busted helper (busted --helper=spec/support/gc_stress.lua) that runs the suite with the
-- collector at its most aggressive, so that a finalizer or a free happens at nearly every
-- point where the core allocates: use-after-free and finalizer-order bugs that a normally
-- paced collector hides for thousands of requests show up at once. `make check-gc` runs it.
--
--   OPENROUTER_GC_STRESS=incremental   (5.4; 5.1 and LuaJIT have only this one) a new cycle
--                                      as soon as one ends, one collector step per allocation
--   OPENROUTER_GC_STRESS=generational  (5.4) a minor collection after every 1% of growth
--   OPENROUTER_GC_STRESS_HOOK=N        also a collector step every N VM instructions (a
--                                      count hook): between allocations too, and in
--                                      generational mode a minor collection that often
--
-- Only this (busted's) process is stressed: the emulator and the other helper processes run
-- their own interpreters without this file. A spec that calls collectgarbage("incremental")
-- or ("generational") itself would undo the tuning; none does (make check-gc greps for it).

local mode = os.getenv("OPENROUTER_GC_STRESS") or "incremental"
local hook_every = tonumber(os.getenv("OPENROUTER_GC_STRESS_HOOK") or "")
local is_54 = _VERSION == "Lua 5.4"

if mode == "generational" then
  assert(is_54, "gc_stress: generational mode needs Lua 5.4, this is " .. _VERSION)
  -- minor multiplier 1: a minor collection after the heap grows by 1% (the least 5.4 takes;
  -- 0 means "unchanged"). The major multiplier stays at its default (100): a smaller one
  -- makes every minor collection a major one, which then runs as a slow incremental cycle
  -- (a "bad collection"), and dropped objects take longer, not shorter, to be finalized.
  collectgarbage("generational", 1, 100)
elseif mode == "incremental" then
  if is_54 then
    -- pause 1 (stored as 0; 0 itself means "unchanged"): the next cycle starts as soon as one
    -- ends. Step multiplier 1000 with step size 2^1 bytes: the credit a step earns is about
    -- its work / 125 bytes, so nearly every allocation that checks the debt runs a step.
    collectgarbage("incremental", 1, 1000, 1)
  else
    -- 5.1 and LuaJIT: pause 0 restarts the cycle at once. A step runs every 1 KiB
    -- allocated (their fixed granularity); step multiplier 1000: each step does 10 KiB of
    -- work, so a dropped object is finalized within about a thousand allocations. (A small
    -- multiplier looks more aggressive but spreads one cycle over hundreds of thousands of
    -- allocations: measured, a dropped object then lives 700,000.) The count hook
    -- (OPENROUTER_GC_STRESS_HOOK) adds steps between those on 5.1; LuaJIT calls no hook from
    -- compiled traces, so there it mostly adds steps in the interpreter and in C calls.
    collectgarbage("setpause", 0)
    collectgarbage("setstepmul", 1000)
  end
  collectgarbage("restart")
else
  error("gc_stress: OPENROUTER_GC_STRESS must be incremental or generational, not " .. mode)
end

if hook_every then
  assert(hook_every >= 1, "gc_stress: OPENROUTER_GC_STRESS_HOOK must be a positive count")
  -- collectgarbage("step", 0): one basic step (5.1, LuaJIT, 5.4 incremental) or one minor
  -- collection (5.4 generational). Hooks are per coroutine; busted runs a spec's blocks on
  -- the main one, and a coroutine a spec makes itself stays unhooked (fewer steps, not fewer
  -- checks).
  debug.sethook(function() collectgarbage("step", 0) end, "", hook_every)
end

io.stderr:write(("gc_stress: %s, mode %s%s\n"):format(_VERSION .. (jit and (" " .. jit.version) or ""),
  mode, hook_every and (", a step every " .. hook_every .. " instructions") or ""))
