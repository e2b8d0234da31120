-- :OpenRouterChat {prompt}: stream a reply into a scratch buffer (one per call).
-- :OpenRouterStop: stop the reply streaming into the current buffer.
vim.api.nvim_create_user_command("OpenRouterChat", function(cmd)
  require("openrouter_chat").chat(cmd.args)
end, { nargs = "+", desc = "Ask OpenRouter; the reply streams into a scratch buffer" })

vim.api.nvim_create_user_command("OpenRouterStop", function()
  require("openrouter_chat").stop()
end, { nargs = 0, desc = "Stop the OpenRouter reply streaming into this buffer" })
