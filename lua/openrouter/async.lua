--- Coroutines: code that reads like blocking calls and runs without blocking.
--
--     local task = openrouter.async(function(params)
--       local res, err = client:chat_completion(params)  -- yields instead of blocking
--       return res and openrouter.text(res), err
--     end, params)
--     print(task:wait())                                  -- drives the client until done
--
-- Inside a task (the coroutine `openrouter.async` runs `fn` in) every blocking call of
-- the library (the actions, `client:request`, `conv:say`, `task:wait`) starts its
-- `_async` twin and yields until the request is done. Whatever drives the client
-- resumes it: `client:poll`, `task:wait`, or a host's loop (`openrouter.uv`) calling
-- `resume_ready` after each round. Outside a task the blocking calls are the C
-- functions themselves, unchanged. Many tasks run at once on one thread.
--
-- A waiting coroutine is never resumed from inside a C callback: the completion
-- (`on_done`) only queues it, and it runs once the call that drove the client returned.
--
-- Lua 5.1 (PUC, not LuaJIT) cannot yield across `pcall`, a metamethod or a for-in
-- iterator: a blocking call there raises a clear error instead of yielding (use
-- `openrouter.async.pcall`). Every Lua can yield across no other C function (the
-- callbacks of `table.sort`, `string.gsub`, `tostring` ...): the same error.
-- @module openrouter.async

local core = require("openrouter.core")
local shared = require("openrouter.shared")

local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield
local running, costatus = coroutine.running, coroutine.status
local isyieldable, coclose = coroutine.isyieldable, coroutine.close
local getinfo, traceback = debug.getinfo, debug.traceback
local unpack = table.unpack or unpack -- luacheck: ignore (Lua 5.1)
local select, next, type, pairs, ipairs, pcall, xpcall, error, tostring, setmetatable, rawget, rawset =
  select, next, type, pairs, ipairs, pcall, xpcall, error, tostring, setmetatable, rawget, rawset

local M = {}

local function pack(...) return { n = select("#", ...), ... } end

--- Whether a coroutine can yield across `pcall` here: true on Lua 5.2+ and LuaJIT,
-- false on PUC Lua 5.1 (found by trying, not from `_VERSION`).
M.yields_across_pcall = coroutine.wrap(function() return pcall(yield, true) and false end)()
local ACROSS_PCALL = M.yields_across_pcall

-- What a waiting coroutine yields. A plain coroutine that calls req:await() hands it to
-- whoever resumed it.
local WAIT = setmetatable({}, { __tostring = function() return "openrouter.async: waiting" end })
M.WAITING = WAIT

local tasks = setmetatable({}, { __mode = "k" })   -- coroutine -> its task (and M.pcall's ones)
local parents = setmetatable({}, { __mode = "k" }) -- M.pcall's coroutine -> the one running M.pcall
local queue, head, tail = {}, 1, 0  -- woken waits, resumed in order by resume_ready
local later = {}                    -- tasks that yielded by themselves: resumed at the next drive
local watches = {}                  -- waits on requests whose completion we cannot hook (req:await)
local inflight = {}                 -- wait -> client: the requests tasks wait on (task:wait drives them)

-- A wait ("slot"): { task = the task or nil, co = the coroutine (plain ones), req = the request,
-- own = whether we started req, what = the call that waits, values = set when woken }.

local function enqueue(slot)
  tail = tail + 1
  queue[tail] = slot
end

local function wake(slot, ...)
  if slot.values then return end
  slot.values = pack(...)
  inflight[slot] = nil
  enqueue(slot)
end

local function cancelled_error(message)
  return shared.new_error("cancelled", message)
end

---------------------------------------------------------------------------------------------
-- Where a coroutine cannot yield
---------------------------------------------------------------------------------------------

-- The first frame of `thread` (nil: the running coroutine) that stops a yield, from the
-- frame just past `after` (a function) when given, else from the top.
local function blocker_in(thread, after)
  local past = after == nil
  for level = thread and 0 or 1, 1e6 do
    local info
    if thread then info = getinfo(thread, level, "Snf") else info = getinfo(level, "Snf") end
    if not info then return nil end
    if not past then
      past = info.func == after
    elseif info.what == "C" then
      if not (ACROSS_PCALL and (info.func == pcall or info.func == xpcall)) then return info end
    elseif not ACROSS_PCALL and info.name == "(for generator)" then
      return info
    end
  end
end

local function find_blocker()
  local co = running()
  local info = blocker_in(nil, nil)
  while not info and parents[co] do
    info = blocker_in(parents[co], M.pcall)
    co = parents[co]
  end
  return info
end

-- The position of the first caller outside the library, for errors raised with level 0.
local user_position = shared.where

local function cannot_wait(what, why)
  return ("openrouter: %s cannot wait here: %s"):format(what, why)
end

local WHY_PCALL = "Lua 5.1 cannot yield across pcall or xpcall; use openrouter.async.pcall"
  .. " instead, or make the call outside it (Lua 5.2+ and LuaJIT can)"
local WHY_ITERATOR = "Lua 5.1 cannot yield inside a for-in iterator; make the call in the"
  .. " loop's body (Lua 5.2+ and LuaJIT can)"
local WHY_METAMETHOD = "Lua 5.1 cannot yield inside a metamethod (__index, __add, ...) or a"
  .. " for-in iterator; make the call from plain code (Lua 5.2+ and LuaJIT can)"

-- Raises a clear error unless the running coroutine can yield here.
local function check_yieldable(what)
  if isyieldable and isyieldable() then return end
  local info = find_blocker()
  if not info and not isyieldable then return end  -- 5.1 and 5.2: no frame stops it
  local why
  if not info then
    why = "this coroutine cannot yield (it runs inside a C function)"
  elseif info.what ~= "C" then
    why = WHY_ITERATOR
  elseif info.func == pcall or info.func == xpcall then
    why = WHY_PCALL
  else
    why = ("a coroutine cannot yield across the C function '%s' (a callback of table.sort,"
      .. " string.gsub, tostring ...); make the call outside it"):format(info.name or "?")
  end
  error(user_position() .. cannot_wait(what, why), 0)
end

-- An error that ended a task or M.pcall: Lua 5.1 refused the yield inside a metamethod,
-- which no frame shows. The request it started is cancelled and the message made clear.
local function clarify(task, e)
  local slot = task.slot
  if type(e) == "string" and e:find("attempt to yield across", 1, true) and slot and not slot.values then
    task.slot = nil
    inflight[slot] = nil
    if slot.own and slot.req then slot.req:cancel() end
    return cannot_wait(slot.what, WHY_METAMETHOD)
  end
  return e
end

-- Yields the running coroutine until `slot` is woken.
local function suspend(slot)
  if slot.task then slot.task.slot = slot end
  repeat yield(WAIT) until slot.values
end

---------------------------------------------------------------------------------------------
-- Tasks
---------------------------------------------------------------------------------------------

--- A task: a function running in a coroutine of its own (what `openrouter.async` returns).
-- Fields: `done` (true once the function returned or raised), `error` (what it raised,
-- or the cancelled error), `traceback` (where it raised).
-- @type Task
local Task = {}
Task.__index = Task
M.Task = Task

function Task:__tostring()
  return ("openrouter task (%s)"):format(not self.done and "running"
    or self.failed and "failed" or "done")
end

local function finish(task, ok, r)
  task.done = true
  tasks[task.co] = nil
  if ok then
    task.results = r
  else
    task.failed, task.error = true, r
    task.traceback = traceback(task.co, type(r) == "string" and r or tostring(r))
  end
  local waiters = task.waiters
  task.waiters = nil
  for _, slot in ipairs(waiters) do wake(slot) end
end

-- After a resume of the task's coroutine returned `r` (pack of resume's values).
local function settle(task, r)
  if not r[1] then return finish(task, false, clarify(task, r[2])) end
  if costatus(task.co) == "dead" then return finish(task, true, r) end
  if r[2] ~= WAIT then  -- a coroutine.yield() of its own: it runs again at the next drive
    local slot = { task = task, values = pack() }
    task.slot = slot
    later[#later + 1] = slot
  end
end

-- Ends a suspended task with `err` without resuming it.
local function kill(task, err)
  local slot = task.slot
  task.slot = nil
  if slot then inflight[slot] = nil end
  finish(task, false, err)
  if coclose then coclose(task.co) end  -- Lua 5.4: its pending to-be-closed variables
end

local function resume_slot(slot)
  local task = slot.task
  if task then
    if task.done or task.slot ~= slot then return end
    if task.cancelled then  -- its request ended inside a callback round, after cancel()
      local err = slot.values[2]
      return kill(task, err ~= nil and err or cancelled_error("the task was cancelled"))
    end
    task.slot = nil
    return settle(task, pack(resume(task.co)))
  end
  if costatus(slot.co) ~= "suspended" then return end
  local ok, e = resume(slot.co)
  if not ok then error(e, 0) end  -- a plain coroutine's error: out of the driver
end

-- Resumes what is ready: the queue, and with `with_later` the tasks that yielded by themselves.
local function run_ready(with_later)
  if head > tail and (not with_later or not later[1]) and not watches[1] then return 0 end
  if with_later and later[1] then
    local l = later
    later = {}
    for i = 1, #l do enqueue(l[i]) end
  end
  if watches[1] then
    local kept = {}
    for _, slot in ipairs(watches) do
      local req = slot.req
      if req.done then
        local err = req.error
        if err == nil then wake(slot, req.result, nil, req.info) else wake(slot, nil, err, req.info) end
      else
        kept[#kept + 1] = slot
      end
    end
    watches = kept
  end
  local n = 0
  while head <= tail do
    local slot = queue[head]
    queue[head] = nil
    head = head + 1
    n = n + 1
    resume_slot(slot)
  end
  if head > tail then head, tail = 1, 0 end
  return n
end

--- Resumes every coroutine whose wait is over: tasks whose request is done, coroutines
-- in `req:await()`, tasks that waited for a task that ended, and tasks that called
-- `coroutine.yield()` themselves. `client:poll` and `task:wait` call it; a host loop that
-- drives clients by other means (`openrouter.uv`, the socket hooks) calls it after each
-- call that drove a client returned, never from inside a callback. Cheap when nothing waits.
-- @treturn int how many coroutines were resumed
function M.resume_ready()
  return run_ready(true)
end

--- Whether the running code is inside a task (where blocking calls yield).
-- @treturn boolean
function M.in_task()
  local co = running()
  return co ~= nil and tasks[co] ~= nil
end

local c_poll  -- the C client:poll, set by install

-- The clients the tasks' own requests belong to.
local function waited_clients()
  local list, seen = {}, {}
  for _, c in pairs(inflight) do
    if not seen[c] then
      seen[c] = true
      list[#list + 1] = c
    end
  end
  return list
end

-- Drives until done() is true: resumes what is ready, polls the clients tasks wait on.
local function drive(done)
  while true do
    run_ready(true)
    if done() then return end
    local clients, busy = waited_clients(), head <= tail or later[1] ~= nil
    if clients[1] then
      local timeout = busy and 0 or (clients[2] or watches[1]) and 0.01 or 1
      for _, c in ipairs(clients) do c_poll(c, timeout) end
    elseif watches[1] then
      -- the only way to drive a request whose client is not known here
      if not busy then watches[1].req:wait() end
    elseif not busy then
      shared.error("openrouter: task:wait() would wait forever: the task waits for nothing a client"
        .. " drives (a task waiting for itself, or for a task that waits for it?)")
    end
  end
end

--- Waits until the task is done and returns what its function returned, or raises what
-- it raised (`task.traceback` tells where). On the main thread (or in a coroutine that
-- is not a task) it drives the clients the task waits on; inside another task it yields
-- until this one is done.
-- @return the function's values
function Task:wait()
  local co = running()
  local me = co and tasks[co]
  if me then
    if me == self then shared.error("openrouter: a task cannot wait for itself") end
    if not self.done then
      check_yieldable("task:wait")
      local slot = { task = me, what = "task:wait" }
      self.waiters[#self.waiters + 1] = slot
      suspend(slot)
    end
  elseif not self.done then
    drive(function() return self.done end)
  end
  if self.failed then error(self.error, 0) end
  return unpack(self.results, 2, self.results.n)
end

--- Cancels the task: the request it waits on is cancelled, and the task ends at once
-- (it is not resumed) with that request's error, of kind "cancelled"; waiting for
-- something else, with a new error of kind "cancelled".
-- @treturn boolean whether the task was still running
function Task:cancel()
  if self.done then return false end
  if costatus(self.co) ~= "suspended" then
    shared.error("openrouter: a task cannot cancel itself (return or raise instead)")
  end
  self.cancelled = true
  local slot = self.slot
  local req = slot and not slot.values and slot.req
  if req and not req.done then
    req:cancel()
    if not req.done then return true end  -- inside a callback: ends with the round (resume_slot)
    local err = req.error
    kill(self, err ~= nil and err or cancelled_error("the task was cancelled"))
    return true
  end
  kill(self, cancelled_error("the task was cancelled"))
  return true
end

--- Runs `fn(...)` as a task: at once, until its first wait.
-- @tparam function fn the task's function
-- @param ... its arguments
-- @treturn Task
function M.run(fn, ...)
  shared.checktype("async", 1, fn, "function")
  local co = create(fn)
  local task = setmetatable({ done = false, co = co, waiters = {} }, Task)
  tasks[co] = task
  settle(task, pack(resume(co, ...)))
  return task
end

setmetatable(M, { __call = function(_, ...) return M.run(...) end })

---------------------------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------------------------

--- Waits for a request (also `req:await()`): in a coroutine it yields until the request
-- is done (whatever drives its client resumes it; a coroutine that is not a task hands
-- `openrouter.async.WAITING` to whoever resumed it); on the main thread it is `req:wait()`.
-- @param req a request (what the `_async` methods return)
-- @return res, or nil
-- @return err
-- @treturn table info
function M.await(req)
  local co, main = running()
  if co == nil or main then
    local res, err = req:wait()
    return res, err, req.info
  end
  if not req.done then
    check_yieldable("req:await")
    local slot = { task = tasks[co], co = co, req = req, what = "req:await" }
    watches[#watches + 1] = slot
    suspend(slot)
  end
  local res, err = req.result, req.error
  if err ~= nil then return nil, err, req.info end
  if res == nil then return nil, cancelled_error("the request was closed") end
  return res, nil, req.info
end

--- `pcall` that a task can wait inside on every Lua. On Lua 5.2+ and LuaJIT it is
-- `pcall`; on Lua 5.1, inside a task, `f` runs in a coroutine of its own whose waits
-- are passed on to the task (the way coxpcall works).
-- @tparam function f
-- @param ... its arguments
-- @return true and f's values, or false and the error
function M.pcall(f, ...)
  if ACROSS_PCALL or type(f) ~= "function" then return pcall(f, ...) end
  local outer = running()
  local task = outer and tasks[outer]
  if not task then return pcall(f, ...) end
  local inner = create(f)
  tasks[inner], parents[inner] = task, outer
  local r = pack(resume(inner, ...))
  while true do
    if not r[1] then
      tasks[inner] = nil
      return false, clarify(task, r[2])
    end
    if costatus(inner) == "dead" then
      tasks[inner] = nil
      return true, unpack(r, 2, r.n)
    end
    r = pack(resume(inner, yield(unpack(r, 2, r.n))))
  end
end

---------------------------------------------------------------------------------------------
-- The client's blocking methods inside a task
---------------------------------------------------------------------------------------------

local raw = {}       -- blocking method name -> its C function
local raw_async = {} -- blocking method name -> the C function of its _async twin

-- An argument error of the _async twin, called through pcall (self counts), as the
-- blocking call words it.
local function renamed(e, name)
  if type(e) ~= "string" then return e end
  local n, rest = e:match("^bad argument #(%d+) to '[^']*' (.*)$")
  if not n then return e end
  if n == "1" then return ("calling '%s' on bad self %s"):format(name, rest) end
  return ("bad argument #%d to '%s' %s"):format(n - 1, name, rest)
end

local function bad_type(name, n, want, v)
  error(user_position() .. ("bad argument #%d to '%s' (%s expected, got %s)"):format(n, name, want, type(v)), 0)
end

-- Starts the _async twin of `name` and waits for it; returns res, err, info.
-- `arg` is NONE for the twins that take only opts.
local NONE = {}
local function run_in_task(self, name, arg, opts, callback)
  check_yieldable(name)
  local slot = { task = tasks[running()], own = true, what = name }
  opts.on_done = function(res, err, info) return wake(slot, res, err, info) end
  if callback then
    -- an error raised here ends the call with that error, raised in the task (as the
    -- blocking call raises it), never out of the poll that drives the client
    opts.on_chunk = function(chunk)
      local ok, r = pcall(callback, chunk)
      if ok then return r end
      slot.raised = { r }
      return false
    end
  end
  local ok, req
  if arg == NONE then ok, req = pcall(raw_async[name], self, opts)
  else ok, req = pcall(raw_async[name], self, arg, opts) end
  if not ok then
    req = renamed(req, name)
    if type(req) == "string" then req = user_position() .. req end  -- where the C call puts it
    error(req, 0)
  end
  slot.req = req
  if not slot.values then
    inflight[slot] = self
    suspend(slot)
  end
  if slot.raised then error(slot.raised[1], 0) end
  local v = slot.values
  return v[1], v[2], v[3]
end

local function streaming(name)
  return function(self, params, callback)
    if type(params) == "table" and callback ~= nil and type(callback) ~= "function" then
      bad_type(name, 2, "function", callback)
    end
    return run_in_task(self, name, params, {}, callback)
  end
end

local function one_argument(name)
  return function(self, arg) return run_in_task(self, name, arg, {}) end
end

local function no_argument(name)
  return function(self) return run_in_task(self, name, NONE, {}) end
end

local in_task = {
  chat_completion = streaming("chat_completion"),
  completion = streaming("completion"),
  request = streaming("request"),
  embeddings = one_argument("embeddings"),
  get_model_endpoints = one_argument("get_model_endpoints"),
  get_credits = no_argument("get_credits"),
  get_key = no_argument("get_key"),
  get_models = function(self, query)
    if query ~= nil and type(query) ~= "table" then bad_type("get_models", 1, "table", query) end
    return run_in_task(self, "get_models", NONE, { query = query })
  end,
  get_generation = function(self, id, opts)
    if opts ~= nil and type(opts) ~= "table" then bad_type("get_generation", 2, "table", opts) end
    return run_in_task(self, "get_generation", id, { wait = opts and opts.wait })
  end,
}

local bypass = false  -- the next lookup of `poll` returns the C function (see poll below)

-- client:poll: the C poll, then the coroutines it woke, then a poll(0) for the
-- requests they started, until no more wake.
local function poll(self, ...)
  if not core.is_client(self) then return c_poll(self, ...) end
  -- called as a method, so that its argument errors name 'poll' and count as Lua's do
  bypass = true
  local n = self:poll(...)
  if run_ready(true) > 0 then
    local budget = select(2, ...)
    repeat
      bypass = true
      n = self:poll(0, budget)
    until run_ready(false) == 0
  end
  return n
end

-- The lookup of the methods taken out of the client's method table: inside a task the
-- yielding form, else the C function itself (so its errors read as they always did, and
-- cost what they always did). `poll` is the C function too while nothing waits.
local function client_index(_, k)
  if k == "poll" then
    if bypass then
      bypass = false
      return c_poll
    end
    if head > tail and not later[1] and not watches[1] and next(inflight) == nil then
      return c_poll
    end
    return poll
  end
  local f = raw[k]
  if f ~= nil then
    local co = running()
    if co ~= nil and tasks[co] ~= nil then return in_task[k] end
  end
  return f
end

-- Adds `await` to the request objects: to their method table (`core.Request` when the
-- core exports it, else the C upvalue of their __index); on Lua 5.1, which cannot read a C
-- function's upvalues, by a Lua __index in front of the C one.
local function add_await()
  if type(core.Request) == "table" then
    core.Request.await = M.await
    return
  end
  local mt = debug.getregistry()["openrouter.request"]
  local index = mt and mt.__index
  if type(index) ~= "function" then return end
  rawset(mt, "openrouter_await", M.await)
  if index == rawget(mt, "openrouter_index") then return end  -- ours already
  local _, methods = debug.getupvalue(index, 1)
  if type(methods) == "table" then
    methods.await = M.await
    return
  end
  local function wrapper(req, k)
    if k == "await" then return rawget(mt, "openrouter_await") end
    return index(req, k)
  end
  rawset(mt, "openrouter_index", wrapper)
  mt.__index = wrapper
end

--- Wires the module into `openrouter` (called once by `require("openrouter")`): the
-- client's blocking methods and `poll` are served by a lookup (the client method
-- table's `__index`), requests get `await`, and `openrouter.async` is this module.
-- @param openrouter the openrouter module
function M.install(openrouter)
  local Client = openrouter.Client
  local previous = getmetatable(Client)
  local before = previous and previous.openrouter_raw or {}
  for name in pairs(in_task) do
    raw[name] = rawget(Client, name) or before[name]
    raw_async[name] = rawget(Client, name .. "_async")
    rawset(Client, name, nil)
  end
  c_poll = rawget(Client, "poll") or before.poll
  rawset(Client, "poll", nil)
  local saved = { poll = c_poll }
  for k, v in pairs(raw) do saved[k] = v end
  setmetatable(Client, { __index = client_index, openrouter_raw = saved })
  add_await()
  openrouter.async = M
end

return M
