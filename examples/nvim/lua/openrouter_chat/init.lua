-- An example Neovim plugin: :OpenRouterChat streams a reply into a scratch
-- buffer without blocking the editor. The request runs inside Neovim's own
-- process (no curl subprocess); a vim.loop timer drives it with
-- client:poll(0), and buffer edits are scheduled back to the main loop
-- (timer callbacks run in a "fast" context where the editor API is off limits).
local M = {}

local openrouter = require("openrouter")

M.config = {
  model = os.getenv("OPENROUTER_MODEL") or "openai/gpt-4o-mini",
  poll_interval_ms = 15,  -- how often the timer drives the transfers
  coalesce = 0.03,        -- redraw at most every 30 ms, not once per token
  client = {},            -- options for openrouter.new (api_key, base_url, ...)
}

local client, timer

-- Starts the poll timer while requests are in flight; it stops itself after.
local function ensure_timer()
  if timer then return end
  timer = vim.loop.new_timer()
  timer:start(0, M.config.poll_interval_ms, function()
    local ok, running = pcall(client.poll, client, 0)
    if not ok then
      vim.schedule(function() vim.notify("openrouter: " .. tostring(running), vim.log.levels.ERROR) end)
    end
    if not ok or running == 0 then
      timer:stop()
      timer:close()
      timer = nil
    end
  end)
end

local function get_client()
  client = client or openrouter.new(M.config.client)
  return client
end

-- Appends text to the last line(s) of buf (main loop only).
local function append(buf, text)
  if not vim.api.nvim_buf_is_valid(buf) then return end
  local last = vim.api.nvim_buf_line_count(buf)
  local tail = vim.api.nvim_buf_get_lines(buf, last - 1, last, false)[1] or ""
  local lines = vim.split(tail .. text, "\n", { plain = true })
  vim.api.nvim_buf_set_lines(buf, last - 1, last, false, lines)
end

--- Opens a scratch buffer and streams the model's reply to `prompt` into it.
-- @tparam string prompt
-- @tparam[opt] table opts `model`, `on_done(text, err)` (called on the main loop)
-- @return the request object (req:cancel() stops it), and the buffer
function M.chat(prompt, opts)
  opts = opts or {}
  vim.cmd("botright new")
  local buf = vim.api.nvim_get_current_buf()
  vim.bo[buf].buftype = "nofile"
  vim.bo[buf].bufhidden = "wipe"
  vim.bo[buf].filetype = "markdown"
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { "> " .. prompt, "" })
  local req = get_client():chat_completion_async({
    model = opts.model or M.config.model,
    messages = { { role = "user", content = prompt } },
  }, {
    coalesce = M.config.coalesce,
    on_chunk = function(chunk)
      local text = openrouter.text(chunk)
      if text and text ~= "" then vim.schedule(function() append(buf, text) end) end
    end,
    on_done = function(res, err)
      vim.schedule(function()
        if err then append(buf, "\n[error] " .. tostring(err)) end
        if opts.on_done then opts.on_done(res and openrouter.text(res), err, buf) end
      end)
    end,
  })
  M.last_request = req  -- keep it referenced: a collected request is cancelled
  ensure_timer()
  return req, buf
end

function M.setup(config)
  M.config = vim.tbl_deep_extend("force", M.config, config or {})
  client = nil
end

return M
