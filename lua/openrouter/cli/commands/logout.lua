-- openrouter logout: forget the key 'openrouter login' stored.
local args_ = require("openrouter.cli.args")
local keystore = require("openrouter.cli.keystore")
local output = require("openrouter.cli.output")

local M = {
  synopsis = "logout",
  summary = "remove the stored key",
  options = {},
  help = [[
usage: openrouter logout

Removes the key stored by 'openrouter login' (the key stays valid at OpenRouter:
revoke it at https://openrouter.ai/settings/keys).
]],
}

function M.run(_, _, args)
  args_.no_args("logout", args)
  local removed, path = keystore.remove()
  if removed then
    output.print_line("Signed out: removed ", removed, ".")
  else
    output.print_line("Not signed in: no ", path or "stored key", ".")
  end
end

return M
