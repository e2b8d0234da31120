-- make demo: the four actions and a streamed chat reply.
-- Against the real API when OPENROUTER_API_KEY is set (model: $OPENROUTER_MODEL,
-- default openai/gpt-4o-mini), else against the local emulator.
local openrouter = require("openrouter")

local emu
local model = os.getenv("OPENROUTER_MODEL") or "openai/gpt-4o-mini"
local opts = { app_title = "openrouter-lua demo", app_url = "https://example.invalid/openrouter-lua" }
if os.getenv("OPENROUTER_API_KEY") then
  print("Using the OpenRouter API (OPENROUTER_API_KEY is set), model " .. model)
else
  emu = require("spec.support.emulator_control").start()
  opts.api_key = "sk-or-demo-0123456789"
  opts.base_url = emu.url
  print("Using the local emulator at " .. emu.url .. " (set OPENROUTER_API_KEY for the real API)")
end

local client = openrouter.new(opts)

-- Part 1: the command-line tool, as a shell user would run it.
local function shell_quote(v) return "'" .. tostring(v):gsub("'", "'\\''") .. "'" end
local lua = os.getenv("OPENROUTER_EMULATOR_LUA") or "lua5.4"
local env = ""
if emu then env = ("OPENROUTER_BASE_URL=%s OPENROUTER_API_KEY=%s "):format(shell_quote(emu.url), "sk-or-demo-0123456789") end
local function cli(args)
  print("\n$ openrouter " .. args)
  io.flush()
  local ok = os.execute(("%s%s bin/openrouter %s"):format(env, lua, args))
  if ok ~= true and ok ~= 0 then print("  (exit status non-zero)") end
end
print("\n#### The command-line tool (bin/openrouter)")
cli("models --supports tools")
cli("credits")
cli(("chat -m %s %s"):format(model, shell_quote("Write one sentence about the moon.")))

-- Part 2: the Lua API.
print("\n#### The Lua module")

-- Integral numbers print without ".0" (Debian's lua-cjson decodes every number as a float).
local function num(v)
  if type(v) == "number" and v % 1 == 0 then return ("%d"):format(v) end
  return tostring(v)
end

local function section(title) print(("\n== %s"):format(title)) end

local function check(res, err)
  if not res then
    print("  failed: " .. tostring(err))
    if emu then emu:stop() end
    os.exit(1)
  end
  return res
end

section("get_models")
local models = check(client:get_models())
print(("  %d models; the first three:"):format(#models))
for i = 1, math.min(3, #models) do
  local m = models[i]
  print(("  %-40s context %-8s prompt $%s/token"):format(m.id, num(m.context_length), m.pricing.prompt))
end

section("get_credits")
local credits, err = client:get_credits()
if credits then
  print(("  total %.2f, used %.2f, remaining %.2f"):format(credits.total_credits, credits.total_usage,
    credits.remaining))
else
  print("  " .. tostring(err) .. "  (the real API may want a management key here)")
end

section("completion")
local res = check(client:completion{ model = model, prompt = "Once upon a time", max_tokens = 20 })
print("  " .. (openrouter.text(res) or ""))

section("chat_completion")
res = check(client:chat_completion{ model = model, max_tokens = 60,
  messages = { { role = "user", content = "Say hello to Lua in five words." } } })
print("  " .. (openrouter.text(res) or ""))
print(("  tokens %s, cost %s"):format(num(res.usage and res.usage.total_tokens),
  num(res.usage and res.usage.cost)))

section("chat_completion, streamed")
io.write("  ")
res = check(client:chat_completion({ model = model, max_tokens = 80,
  messages = { { role = "user", content = "Write one sentence about the moon." } } },
  function(chunk)
    io.write(openrouter.text(chunk) or "")
    io.flush()
  end))
print()
print(("  finish_reason %s, tokens %s"):format(tostring(res.choices[1].finish_reason),
  num(res.usage and res.usage.total_tokens)))

section("a conversation with a tool")
local conv = client:conversation{ model = emu and "emulator/tools" or model,
                                  system = "Be terse. Use the tools you are given." }
conv:tool{ name = "get_weather", description = "Current weather for a city",
  parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } },
  handler = function(args)
    print(("  [tool] get_weather(%s)"):format(tostring(args.city)))
    return { city = args.city, temp_c = 21, sky = "clear" }
  end }
conv:tool{ name = "get_time", description = "Current time in an IANA time zone",
  parameters = { type = "object", properties = { tz = { type = "string" } }, required = { "tz" } },
  handler = function(args)
    print(("  [tool] get_time(%s)"):format(tostring(args.tz)))
    return "12:00"
  end }
print("  > What is the weather and the time in Paris?")
local replying = false
check(conv:say("What is the weather and the time in Paris?", function(delta)
  if not replying then io.write("  < ") replying = true end
  io.write(delta)
  io.flush()
end))
print()
if emu then conv.model = model end  -- the emulator's tool model only calls tools
print("  > Thanks! And in one word?")
print("  < " .. check(conv:say("Thanks! And in one word?")))
local usage = conv:usage()
print(("  %d messages, %s requests, %s tokens, cost %s"):format(#conv.messages, num(usage.requests),
  num(usage.total_tokens), num(usage.cost)))

section("an error, as a value")
local _, bad = client:chat_completion{ model = "missing/model", messages = { { role = "user", content = "Hi" } } }
print("  " .. tostring(bad))
print(("  kind=%s status=%s"):format(tostring(bad and bad.kind), tostring(bad and bad.status)))

client:close()
if emu then emu:stop() end
