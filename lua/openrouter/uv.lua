--- Drives a client from a libuv loop (luv, Neovim's `vim.uv` or `vim.loop`): the loop
-- watches the client's sockets and its one timer, so nothing wakes up while nothing
-- arrives, and a chunk reaches its callback as soon as its bytes do. No `poll` is needed.
--
--     local driver = require("openrouter.uv").attach(client)   -- or attach(client, uv)
--     client:chat_completion_async(params, { on_done = function(res, err) ... end })
--     -- ... the loop runs (uv.run(), or Neovim's own) ...
--     driver:detach()       -- back to client:poll; client:close() detaches too
--
-- Built on the client's public hooks, `client:set_loop_hooks` and `client:socket_action`
-- (see the README, "Any other loop"), which any other event loop can use the same way.
-- Callbacks (`on_chunk`, `on_done`) run from the loop's callbacks: in Neovim that is a
-- "fast" context where most editor functions may not be called (`openrouter.nvim` wraps
-- them in `vim.schedule`). A callback's error is raised from the loop callback that
-- drove the client, as `client:poll` would raise it.
-- @module openrouter.uv

local shared = require("openrouter.shared")

local M = {}

-- The libuv binding in this host: Neovim's (vim.uv from 0.10, vim.loop before), else luv.
local function find_uv()
  local vim = rawget(_G, "vim")
  if type(vim) == "table" and (vim.uv or vim.loop) then return vim.uv or vim.loop end
  local ok, luv = pcall(require, "luv")
  if ok then return luv end
  shared.error("openrouter.uv: no libuv binding found (install luv, or pass one: attach(client, uv))")
end

-- After a socket action: the coroutines (openrouter.async tasks, req:await) whose requests
-- just finished are resumed, from the loop's callback; a host may replace this through
-- M.after_action (openrouter.nvim resumes them where the editor API may be called).
local function after_action()
  if M.after_action then return M.after_action() end
  local async = package.loaded["openrouter.async"]
  if async then async.resume_ready() end
end

local Driver = {}
Driver.__index = Driver

--- Attaches a client to a libuv loop.
-- @param client an openrouter client
-- @param[opt] uv the libuv binding (luv, `vim.uv`, `vim.loop`); found when omitted
-- @treturn Driver the driver: `driver:detach()`; `driver.client`, `driver.uv`
function M.attach(client, uv)
  if type(client) ~= "userdata" or type(client.set_loop_hooks) ~= "function" then
    shared.argerror("attach", 1, "openrouter client expected, got " .. type(client))
  end
  if uv ~= nil and (type(uv) ~= "table" or type(uv.new_timer) ~= "function") then
    shared.argerror("attach", 2, "a libuv binding expected: luv, vim.uv or vim.loop")
  end
  uv = uv or find_uv()
  local driver = setmetatable({ client = client, uv = uv, polls = {}, timer = uv.new_timer() }, Driver)
  local polls, timer = driver.polls, driver.timer

  local function act(fd, events)
    if driver.detached then return end
    if fd then client:socket_action(fd, events) else client:socket_action() end
    after_action()
  end

  local function release()
    for fd, p in pairs(polls) do
      polls[fd] = nil
      p:stop()
      if not p:is_closing() then p:close() end
    end
    timer:stop()
    if not timer:is_closing() then timer:close() end
  end

  client:set_loop_hooks{
    socket = function(fd, events)
      local p = polls[fd]
      if not events then
        if p then
          polls[fd] = nil
          p:stop()
          p:close()
        end
        return
      end
      if not p then
        -- a socket poll, not a file descriptor one: the same call on Windows
        p = assert(uv.new_socket_poll(fd))
        polls[fd] = p
      end
      p:start(events, function(err, got) act(fd, err and "e" or got) end)
    end,
    timer = function(ms)
      timer:stop()
      if ms >= 0 then timer:start(ms, 0, function() act() end) end
    end,
    closed = function()
      driver.detached = true
      release()
    end,
  }

  --- Stops driving the client from the loop; it goes back to `client:poll`.
  -- Idempotent. The client's unfinished requests go on under `poll`.
  function driver.detach(self)
    if self.detached then return end
    self.detached = true
    if not client:is_closed() then client:set_loop_hooks(nil) end
    release()
  end

  return driver
end

--- Called after every socket action the loop made, instead of resuming the coroutines
-- waiting on requests that just finished (`openrouter.async.resume_ready`) at once:
-- a host sets it to resume them elsewhere (openrouter.nvim: in `vim.schedule`). nil by default.
M.after_action = nil

return M
