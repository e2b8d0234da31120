-- An example Neovim plugin: :OpenRouterChat streams a reply into a scratch
-- buffer without blocking the editor, on openrouter.nvim: the request runs in
-- Neovim's own process and is driven by its event loop (no curl subprocess, no
-- timer, no poll), the text is written from callbacks that run on the main loop,
-- and wiping the reply's buffer (closing its window) cancels the request.
--
-- Each :OpenRouterChat opens its own buffer and runs its own request: a second
-- one never stops the first. setup() may be called at any time: replies that are
-- streaming finish on the client they started on, which is closed after them.
local M = {}

local openrouter = require("openrouter")
local nv = require("openrouter.nvim")

M.config = {
  model = os.getenv("OPENROUTER_MODEL") or "openai/gpt-4o-mini",
  coalesce = 0.03,  -- redraw at most every 30 ms, not once per token
  client = {},      -- options for openrouter.new (api_key, base_url, ...)
}

-- The client of the current configuration, and how many replies each client
-- has in flight (a client replaced by setup() is closed once it has none).
local client
local in_flight = setmetatable({}, { __mode = "k" })

--- The requests streaming now: buffer -> request object.
M.requests = {}

local function get_client()
  if not client then
    client = nv.client(M.config.client)
    in_flight[client] = 0
  end
  return client
end

local function release(c)
  in_flight[c] = in_flight[c] - 1
  if c ~= client and in_flight[c] == 0 then c:close() end
end

local function append(buf, text)
  if not vim.api.nvim_buf_is_valid(buf) then return end
  local last = vim.api.nvim_buf_line_count(buf)
  local tail = vim.api.nvim_buf_get_lines(buf, last - 1, last, false)[1] or ""
  vim.api.nvim_buf_set_lines(buf, last - 1, last, false, vim.split(tail .. text, "\n", { plain = true }))
end

--- Opens a scratch buffer and streams the model's reply to `prompt` into it.
-- Closing its window wipes the buffer and cancels the request.
-- @tparam string prompt
-- @tparam[opt] table opts `model`, `on_done(text, err, buf)` (on the main loop)
-- @return the request object (req:cancel() stops it), and the buffer
function M.chat(prompt, opts)
  opts = opts or {}
  vim.cmd("botright new")
  local buf = vim.api.nvim_get_current_buf()
  vim.bo[buf].buftype = "nofile"
  vim.bo[buf].bufhidden = "wipe"  -- closing the window wipes it: that cancels the request
  vim.bo[buf].swapfile = false
  vim.bo[buf].filetype = "markdown"
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { "> " .. prompt, "" })
  local c = get_client()
  in_flight[c] = in_flight[c] + 1
  local req
  req = c:stream_into(buf, {
    model = opts.model or M.config.model,
    messages = { { role = "user", content = prompt } },
  }, {
    coalesce = M.config.coalesce,
    on_done = function(res, err)
      if M.requests[buf] == req then M.requests[buf] = nil end
      release(c)
      if err and err.kind ~= "cancelled" then append(buf, "\n[error] " .. tostring(err)) end
      if opts.on_done then opts.on_done(res and openrouter.text(res), err, buf) end
    end,
  })
  M.requests[buf] = req
  return req, buf
end

--- Stops the reply streaming into `buf` (default: the current buffer).
function M.stop(buf)
  buf = (buf == nil or buf == 0) and vim.api.nvim_get_current_buf() or buf
  local req = M.requests[buf]
  if req then
    req:cancel()
    append(buf, "\n[stopped]")
  end
end

--- Merges `config` into the configuration. Safe while replies stream: they finish
-- on the client they started on; the next chat uses a client made from the new
-- configuration.
function M.setup(config)
  M.config = vim.tbl_deep_extend("force", M.config, config or {})
  local old = client
  client = nil
  if old and in_flight[old] == 0 then old:close() end
end

return M
