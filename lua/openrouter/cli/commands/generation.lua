-- openrouter generation ID: the statistics of a generation.
local errors = require("openrouter.cli.errors")
local output = require("openrouter.cli.output")
local request = require("openrouter.cli.request")

local M = {
  synopsis = "generation ID",
  summary = "cost, tokens, latency and provider of a generation",
  options = { ["--wait"] = { "wait", "number" }, ["--json"] = { "json", "flag" } },
  help = [[
usage: openrouter generation [--wait SECONDS] [--json] ID

Prints the statistics of a generation (the id of a completion, gen-...): model,
provider, tokens, cost, latency. OpenRouter writes them shortly after the generation
ends: a "not found" is retried for --wait seconds (default 5).
]],
}

local ORDER = { "id", "model", "provider_name", "created_at", "tokens_prompt", "tokens_completion",
  "native_tokens_prompt", "native_tokens_completion", "native_tokens_reasoning", "total_cost",
  "latency", "generation_time", "finish_reason", "streamed", "cancelled" }

local function dollars(v) if type(v) == "number" then return output.money(v) end end

function M.run(client, opts, args)
  if #args ~= 1 then errors.usage_error("'generation' needs exactly one ID", "generation") end
  local id = args[1]
  if #id == 0 or #id > 256 then errors.usage_error("a generation id has 1-256 characters", "generation") end
  local gen = request.simple(client, opts, function()
    return client:get_generation_async(id, { wait = opts.wait })
  end)
  if opts.json then return output.print_line(output.json(gen)) end
  output.print_fields(gen, ORDER, { total_cost = dollars, usage = dollars,
    upstream_inference_cost = dollars, cache_discount = dollars })
end

return M
