-- Runs inside `nvim --headless` (spec/hosts_spec.lua): loads the example plugin
-- with no lua-cjson on the path (so vim.json is used), streams a slow reply
-- from the emulator into a buffer while a Neovim timer counts ticks, and writes
-- what happened as JSON to $OPENROUTER_NVIM_RESULT.
local root = assert(os.getenv("OPENROUTER_ROOT"), "OPENROUTER_ROOT")
package.path = table.concat({ root .. "/lua/?.lua", root .. "/lua/?/init.lua",
  root .. "/examples/nvim/lua/?.lua", root .. "/examples/nvim/lua/?/init.lua" }, ";")
package.cpath = root .. "/build/luajit/?.so"  -- and nothing else: no lua-cjson
vim.opt.runtimepath:append(root .. "/examples/nvim")
vim.cmd("runtime plugin/openrouter_chat.lua")

local result = { command = vim.fn.exists(":OpenRouterChat") == 2 }
local ok, err = pcall(function()
  local chat = require("openrouter_chat")
  chat.setup{ client = { api_key = "sk-or-nvim-0123456789", base_url = os.getenv("OPENROUTER_BASE_URL") } }
  result.json_backend = require("openrouter").json_backend

  local ticks = 0
  local ticker = vim.fn.timer_start(10, function() ticks = ticks + 1 end, { ["repeat"] = -1 })
  local started = vim.loop.hrtime()
  local finished = false
  chat.chat("hello from neovim", { model = "emulator/slow:100", on_done = function(text, e, buf)
    result.text = text
    result.error = e and tostring(e)
    result.lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
    finished = true
  end })
  result.returned_after_ms = (vim.loop.hrtime() - started) / 1e6
  vim.wait(20000, function() return finished end, 5)
  result.elapsed_ms = (vim.loop.hrtime() - started) / 1e6
  result.ticks = ticks
  vim.fn.timer_stop(ticker)
  result.finished = finished
end)
result.ok, result.failure = ok, not ok and tostring(err) or nil
result.cjson_loaded = package.loaded.cjson ~= nil

local f = assert(io.open(assert(os.getenv("OPENROUTER_NVIM_RESULT")), "w"))
f:write(vim.json.encode(result))
f:close()
vim.cmd("qall!")
