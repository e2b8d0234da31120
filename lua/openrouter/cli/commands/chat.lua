-- openrouter chat: one streamed reply, or on a terminal without PROMPT a conversation.
local args_ = require("openrouter.cli.args")
local request = require("openrouter.cli.request")

local MODEL = { "model", "value" }

local M = {
  synopsis = "chat -m MODEL [-s SYSTEM] [PROMPT...]",
  summary = "stream one reply to stdout; the prompt is read from stdin\n"
    .. "when no PROMPT is given and stdin is not a terminal; on a\n"
    .. "terminal without PROMPT, an interactive conversation",
  options = {
    ["-m"] = MODEL, ["--model"] = MODEL, ["-s"] = { "system", "value" },
    ["--system"] = { "system", "value" }, ["--temperature"] = { "temperature", "number" },
    ["--max-tokens"] = { "max_tokens", "number" }, ["-v"] = { "verbose", "flag" },
    ["--verbose"] = { "verbose", "flag" },
  },
  help = [[
usage: openrouter chat -m MODEL [-s SYSTEM] [OPTIONS] [PROMPT...]

Sends PROMPT (the words joined by spaces) and streams the reply to stdout. Without
PROMPT the prompt is read from stdin when stdin is not a terminal:
  echo "Explain this error" | openrouter chat -m openai/gpt-4o-mini
Ctrl-C stops the reply (exit status 130).

On a terminal without PROMPT, an interactive conversation: every reply streams and the
history is kept. Ctrl-C stops a reply (the conversation stays as it was before that
message); Ctrl-C on an empty prompt, Ctrl-D, or /quit leaves. Commands:
  /undo          forget the last message and its reply
  /reset         forget the whole conversation (the system prompt stays)
  /save FILE     save the conversation as JSON
  /load FILE     continue a conversation saved with /save
  /history       show the conversation
  /usage         tokens, requests and cost so far
  /help          these commands
  /quit          leave (also /exit)
A line starting with // sends the text after the first /. Prompt words that start
with - go after --.

  -m, --model MODEL      the model (default: $OPENROUTER_MODEL)
  -s, --system TEXT      a system prompt
  --temperature T        sampling temperature
  --max-tokens N         at most N tokens in the reply
  -v, --verbose          the generation id, token counts and cost on stderr at the end
]],
}

function M.run(client, opts, args)
  local model = args_.model(opts, "chat")
  local prompt = args_.prompt("chat", args)
  if not prompt then return require("openrouter.cli.interactive").run(client, opts, model) end
  local messages = {}
  if opts.system then messages[1] = { role = "system", content = opts.system } end
  messages[#messages + 1] = { role = "user", content = prompt }
  local params = request.sampling(opts, { model = model, messages = messages })
  request.stream(client, opts, model, function(callbacks)
    return client:chat_completion_async(params, callbacks)
  end)
end

return M
