-- :OpenRouterChat {prompt}: stream a reply into a scratch buffer.
vim.api.nvim_create_user_command("OpenRouterChat", function(cmd)
  require("openrouter_chat").chat(cmd.args)
end, { nargs = "+", desc = "Ask OpenRouter; the reply streams into a scratch buffer" })
