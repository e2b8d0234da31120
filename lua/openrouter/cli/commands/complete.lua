-- openrouter complete: a legacy text completion, streamed.
local args_ = require("openrouter.cli.args")
local errors = require("openrouter.cli.errors")
local request = require("openrouter.cli.request")

local MODEL = { "model", "value" }

local M = {
  synopsis = "complete -m MODEL [PROMPT...]",
  summary = "a legacy text completion, streamed to stdout",
  options = {
    ["-m"] = MODEL, ["--model"] = MODEL, ["--temperature"] = { "temperature", "number" },
    ["--max-tokens"] = { "max_tokens", "number" }, ["-v"] = { "verbose", "flag" },
    ["--verbose"] = { "verbose", "flag" },
  },
  help = [[
usage: openrouter complete -m MODEL [OPTIONS] [PROMPT...]

A legacy text completion of PROMPT (the words joined by spaces, or stdin when no
PROMPT is given and stdin is not a terminal), streamed to stdout.

  -m, --model MODEL      the model (default: $OPENROUTER_MODEL)
  --temperature T        sampling temperature
  --max-tokens N         at most N tokens
  -v, --verbose          the generation id, token counts and cost on stderr at the end
]],
}

function M.run(client, opts, args)
  local model = args_.model(opts, "complete")
  local prompt = args_.prompt("complete", args)
  if not prompt then errors.usage_error("no prompt: give PROMPT or pipe text on stdin", "complete") end
  local params = request.sampling(opts, { model = model, prompt = prompt })
  request.stream(client, opts, model, function(callbacks)
    return client:completion_async(params, callbacks)
  end)
end

return M
