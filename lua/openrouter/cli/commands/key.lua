-- openrouter key: the limits and usage of the key in use (never the key).
local args_ = require("openrouter.cli.args")
local output = require("openrouter.cli.output")
local request = require("openrouter.cli.request")

local M = {
  synopsis = "key",
  summary = "limits and usage of the API key",
  options = { ["--json"] = { "json", "flag" } },
  help = [[
usage: openrouter key [--json]

Prints the limits and usage of the API key in use (label, limit, remaining, usage by
day, week and month, free tier). The key itself is never printed.
]],
}

local function dollars(v) if type(v) == "number" then return output.money(v) end end

local function dollars_or_unlimited(v)
  if v == require("openrouter").null then return "unlimited" end
  return dollars(v)
end

function M.run(client, opts, args)
  args_.no_args("key", args)
  local key = request.simple(client, opts, function() return client:get_key_async{} end)
  if opts.json then return output.print_line(output.json(key)) end
  local special = { limit = dollars_or_unlimited, limit_remaining = dollars_or_unlimited }
  for k in pairs(key) do
    if k:find("usage") then special[k] = dollars end
  end
  output.print_fields(key, { "label", "limit", "limit_remaining", "limit_reset", "usage", "usage_daily",
                             "usage_weekly", "usage_monthly", "is_free_tier" }, special)
end

return M
