-- openrouter credits: total credits, usage and what remains.
local args_ = require("openrouter.cli.args")
local output = require("openrouter.cli.output")
local request = require("openrouter.cli.request")

local M = {
  synopsis = "credits",
  summary = "total credits, usage and what remains",
  options = { ["--json"] = { "json", "flag" } },
  help = [[
usage: openrouter credits [--json]

Prints the account's total credits, the total usage and what remains, in USD.
]],
}

function M.run(client, opts, args)
  args_.no_args("credits", args)
  local credits = request.simple(client, opts, function() return client:get_credits_async{} end)
  if opts.json then return output.print_line(output.json(credits)) end
  local remaining = credits.remaining
  if remaining == nil and tonumber(credits.total_credits) and tonumber(credits.total_usage) then
    remaining = credits.total_credits - credits.total_usage
  end
  local money = output.money
  local rows = { { "total", money(credits.total_credits) }, { "used", money(credits.total_usage) },
                 { "remaining", money(remaining) } }
  for _, row in ipairs(rows) do output.print_line(("%-10s %12s"):format(row[1], row[2])) end
end

return M
