-- openrouter help [COMMAND]: the help, or a command's.
local M = {
  synopsis = "help [COMMAND]",
  summary = "this help, or a command's ('COMMAND --help' too)",
  options = {},
  library = false, -- runs without the library (and without a client)
  help = [[
usage: openrouter help [COMMAND]

Prints the help, or a command's help.
]],
}

function M.run(_, _, args)
  io.stdout:write(require("openrouter.cli").help(args[1], true))
end

return M
