--- openrouter for Neovim plugins: a client driven by the editor's own loop whose
-- callbacks run where the editor API may be called, and requests tied to buffers.
--
--     local nv = require("openrouter.nvim")
--     local client = nv.client{ api_key = os.getenv("OPENROUTER_API_KEY") }
--     local buf = vim.api.nvim_create_buf(true, true)
--     client:stream_into(buf, { model = "openai/gpt-4o-mini",
--       messages = { { role = "user", content = "Hi" } } },
--       { on_done = function(res, err) if err then vim.notify(tostring(err)) end end })
--     -- wiping buf cancels the request; the generation stops being billed
--
-- `nv.client(opts)` is `openrouter.new(opts)` attached to `vim.uv` / `vim.loop`
-- (`openrouter.uv`): no timer, no `poll`. Its `*_async` methods take the usual
-- `on_chunk`, `on_response` and `on_done`, and call them through `vim.schedule`, in
-- the order the library would (every chunk before `on_done`), so a callback may edit
-- buffers. `on_chunk` returning `false` still cancels; an error raised by a callback
-- cancels its request and is reported by Neovim like any scheduled callback's error.
-- Blocking methods, `close`, `conversation` and the rest work as on any client.
-- @module openrouter.nvim

local openrouter = require("openrouter")
local shared = require("openrouter.shared")

local M = {}

local api = vim.api
local unpack = table.unpack or unpack

-- request object -> its state (the unbind functions of its buffers, stopped)
local states = setmetatable({}, { __mode = "k" })

--- The clients made by `client()`, for `:checkhealth openrouter`: client -> { base_url,
-- key_source } (where its key came from, never the key). Weak: a dropped client goes.
M.clients = setmetatable({}, { __mode = "k" })

local function has_callback(t)
  return type(t.on_chunk) == "function" or type(t.on_done) == "function"
    or type(t.on_response) == "function"
end

-- Runs fn(...) on the main loop; a raised error cancels the request first.
local function call_later(state, fn, ...)
  local n, args = select("#", ...), { ... }
  vim.schedule(function()
    if state.stopped then return end
    local ok, ret = pcall(fn, unpack(args, 1, n))
    if not ok then
      state.stopped = true
      if state.req then state.req:cancel() end
      error(ret, 0)
    end
    if ret == false and state.req and not state.req.done then
      state.stopped = true
      state.req:cancel()
    end
  end)
end

-- A copy of a request's options whose callbacks are scheduled on the main loop.
local function scheduled(opts, state)
  local copy = {}
  for k, v in pairs(opts) do copy[k] = v end
  local on_chunk, on_response, on_done = opts.on_chunk, opts.on_response, opts.on_done
  if type(on_chunk) == "function" then
    copy.on_chunk = function(chunk) call_later(state, on_chunk, chunk) end
  end
  if type(on_response) == "function" then
    copy.on_response = function(...) call_later(state, on_response, ...) end
  end
  copy.on_done = function(res, err, info)
    -- cancelled: chunks still queued are not delivered, as the library would not
    if err and err.kind == "cancelled" then state.stopped = true end
    vim.schedule(function()
      for _, unbind in ipairs(state.unbinds) do unbind() end
      state.unbinds = {}
      if type(on_done) == "function" then on_done(res, err, info) end
    end)
  end
  return copy
end

-- Coroutines (openrouter.async): a task waiting on a request of a client driven by the
-- loop is resumed by `resume_ready`, which must run after the loop drove the client and
-- outside its fast context, so that the task may call the editor API: once per batch of
-- socket actions, scheduled. Chained after any hook already there.
local uv_driver = require("openrouter.uv")
local resume_pending = false
local function resume_tasks()
  resume_pending = false
  local async = openrouter.async
  if async and async.resume_ready then async.resume_ready() end
end
local previous_after_action = uv_driver.after_action
uv_driver.after_action = function()
  if previous_after_action then previous_after_action() end
  if not resume_pending then
    resume_pending = true
    vim.schedule(resume_tasks)
  end
end

local Client = {}

local mt = {
  __index = function(self, key)
    local own = Client[key]
    if own ~= nil then return own end
    local f = rawget(self, "raw")[key]
    if type(f) ~= "function" then return f end
    if type(key) == "string" and key:match("_async$") then
      return function(this, ...)
        local state, n, args = { unbinds = {} }, select("#", ...), { ... }
        for i = 1, n do
          if type(args[i]) == "table" and has_callback(args[i]) then
            args[i] = scheduled(args[i], state)
          end
        end
        local req = f(rawget(this, "raw"), unpack(args, 1, n))
        if type(req) == "userdata" then
          state.req = req
          states[req] = state
        end
        return req
      end
    end
    return function(this, ...)
      if rawequal(this, self) then return f(rawget(this, "raw"), ...) end
      return f(this, ...)
    end
  end,
  __tostring = function(self)
    return "openrouter.nvim " .. tostring(rawget(self, "raw"))
  end,
}

-- The buffer handle: 0 or nil for the current one; raises for an invalid one.
local function buffer(buf, fname)
  if buf == nil or buf == 0 then return api.nvim_get_current_buf() end
  if type(buf) ~= "number" or not api.nvim_buf_is_valid(buf) then
    shared.argerror(fname, 1, "a valid buffer expected, got " .. tostring(buf))
  end
  return buf
end

--- Makes a client attached to the editor's loop.
-- @tparam[opt] table opts the options of `openrouter.new` (`api_key`, `base_url`, ...)
-- @return the client: every method of an openrouter client, `stream_into`, and the
--   fields `raw` (the underlying client) and `driver` (its `openrouter.uv` driver)
function M.client(opts)
  local raw = openrouter.new(opts)
  local driver = uv_driver.attach(raw, vim.uv or vim.loop)
  local self = setmetatable({ raw = raw, driver = driver }, mt)
  local env_key = os.getenv("OPENROUTER_API_KEY")
  M.clients[self] = {
    base_url = opts and opts.base_url or os.getenv("OPENROUTER_BASE_URL") or shared.DEFAULT_BASE_URL,
    key_source = (opts and opts.api_key and opts.api_key ~= "" and "its api_key option")
      or (env_key and env_key ~= "" and "$OPENROUTER_API_KEY") or nil,
  }
  return self
end

--- Cancels `req` when buffer `buf` is unloaded or wiped (`:bwipeout`, `:bdelete`,
-- closing its last window when `bufhidden` is `wipe`, `unload` or `delete`).
-- @param req a request object (of any client)
-- @tparam[opt] number buf the buffer; 0 or nil: the current one
-- @treturn function removes the binding (done for you when `req` is of an
--   `openrouter.nvim` client and its `on_done` runs)
function M.bind(req, buf)
  if type(req) ~= "userdata" or type(req.cancel) ~= "function" then
    shared.argerror("bind", 1, "request expected, got " .. type(req))
  end
  buf = buffer(buf, "bind")
  local state = states[req]
  if req.done then return function() end end
  local id = api.nvim_create_autocmd("BufUnload", {
    buffer = buf,
    once = true,
    desc = "openrouter: cancel the request writing to this buffer",
    callback = function()
      if not req.done then req:cancel() end
    end,
  })
  local function unbind()
    if id then pcall(api.nvim_del_autocmd, id) end
    id = nil
  end
  if state then state.unbinds[#state.unbinds + 1] = unbind end
  return unbind
end

-- Appends text at the end of buf: its first line continues the last line.
local function append(buf, text)
  local last = api.nvim_buf_line_count(buf)
  local tail = api.nvim_buf_get_lines(buf, last - 1, last, false)[1] or ""
  api.nvim_buf_set_lines(buf, last - 1, last, false, vim.split(tail .. text, "\n", { plain = true }))
end

--- Streams a chat completion's text to the end of a buffer; wiping the buffer
-- cancels the request.
-- @tparam number buf the buffer (0: the current one)
-- @tparam table params the chat completion's parameters (`model`, `messages`, ...)
-- @tparam[opt] table opts `on_done(res, err, info)` (also when the buffer was wiped:
--   `err.kind == "cancelled"`), `on_chunk(chunk)` (after the text is appended; `false`
--   cancels), `on_response(status, headers)`, `coalesce` (seconds, default 0.03: at most
--   about 30 buffer updates a second)
-- @return the request object
function Client.stream_into(self, buf, params, opts)
  buf = buffer(buf, "stream_into")
  opts = opts or {}
  local on_chunk = opts.on_chunk
  local req = self:chat_completion_async(params, {
    coalesce = opts.coalesce == nil and 0.03 or opts.coalesce,
    on_response = opts.on_response,
    on_chunk = function(chunk)
      if not api.nvim_buf_is_valid(buf) then return false end
      local text = openrouter.text(chunk)
      if text and text ~= "" then append(buf, text) end
      if on_chunk then return on_chunk(chunk) end
    end,
    on_done = function(res, err, info)
      if opts.on_done then opts.on_done(res, err, info) end
    end,
  })
  M.bind(req, buf)
  return req
end

--- A conversation (`openrouter.conversation`) on this client: `say_async`'s
-- `on_delta` and `on_done` run on the main loop too.
function Client.conversation(self, opts)
  local conv = rawget(self, "raw"):conversation(opts)
  conv.client = self
  return conv
end

--- A conversation saved by `conv:to_json()`, on this client.
function Client.conversation_from_json(self, s)
  local conv = rawget(self, "raw"):conversation_from_json(s)
  conv.client = self
  return conv
end

return M
