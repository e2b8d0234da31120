-- openrouter models: the models as a table or JSON, filtered.
local args_ = require("openrouter.cli.args")
local output = require("openrouter.cli.output")
local request = require("openrouter.cli.request")

local M = {
  synopsis = "models [--search TEXT] [--supports PARAM] [--json]",
  summary = "list the models, as a table or as JSON",
  options = {
    ["--search"] = { "search", "value" }, ["--supports"] = { "supports", "list" },
    ["--free"] = { "free", "flag" }, ["--min-context"] = { "min_context", "number" },
    ["--modality"] = { "modality", "value" }, ["--json"] = { "json", "flag" },
  },
  help = [[
usage: openrouter models [--search TEXT] [--supports PARAM] [--free] [--min-context N]
                         [--modality MODALITY] [--json]

Lists the models: id, context length, prices in USD per million prompt and completion
tokens, and name. With --json, the full model objects as a JSON array.

  --search TEXT        only models whose id or name contains TEXT (case-insensitive)
  --supports PARAM     only models that support PARAM (tools, reasoning,
                       structured_outputs, ...); repeat it or separate with commas
  --free               only free models
  --min-context N      only models with a context of at least N tokens
  --modality M         only models with that modality (text->text, text+image->text)
  --json               JSON instead of a table
]],
}

-- A price per token as dollars per million tokens.
local function per_million(p)
  p = tonumber(p)
  if not p then return "-" end
  if p < 0 then return "varies" end
  local s = ("%.6f"):format(p * 1e6):gsub("0+$", ""):gsub("%.$", "")
  return s
end

local function print_models(models)
  local rows = { { "ID", "CONTEXT", "$/M IN", "$/M OUT", "NAME" } }
  for _, m in ipairs(models) do
    local pricing = type(m.pricing) == "table" and m.pricing or {}
    rows[#rows + 1] = { tostring(m.id),
                        type(m.context_length) == "number" and output.num(m.context_length) or "-",
                        per_million(pricing.prompt), per_million(pricing.completion),
                        type(m.name) == "string" and m.name or "" }
  end
  output.print_table(rows, { "-", "", "", "", "-" })
end

function M.run(client, opts, args)
  args_.no_args("models", args)
  local supports = opts.supports and #opts.supports > 0 and opts.supports or nil
  local models = request.simple(client, opts, function()
    return client:get_models_async{ query = supports and { supported_parameters = supports } }
  end)
  models = require("openrouter").filter_models(models, {
    search = opts.search, supports = supports, free = opts.free or nil,
    min_context = opts.min_context, modality = opts.modality,
  })
  if opts.json then return output.print_line(output.json(models)) end
  if #models == 0 then
    io.stderr:write("openrouter: no model matches\n")
    return
  end
  print_models(models)
end

return M
