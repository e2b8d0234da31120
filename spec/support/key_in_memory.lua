-- The child process of spec/memory_key_spec.lua: uses a client the way a program does, then
-- holds still while the spec (its parent) reads this process's memory through
-- /proc/<pid>/mem and counts the copies of the key. The parent scans because a process that
-- reads its own memory copies what it reads into its own heap, and then finds those copies.
--
--   lua key_in_memory.lua BASE_URL FIFO SEED ROUNDS [keep]
--
-- The key is "sk-or-v1-memory-" and SEED (hex digits) repeated to 48 digits: made at run
-- time, so neither argv nor this script's text holds it. It pauses twice: "open", right
-- after openrouter.new (nothing collected yet), and "closed", after ROUNDS times every kind
-- of request, client:close() and two full collections. At each pause it prints
-- "ready <pid> <stage>" and blocks opening FIFO (a named pipe) until the parent has scanned
-- and opens it for writing: nothing runs here during a scan. With "keep" the caller's key
-- string stays referenced, as a long-lived program keeps its configuration.
local openrouter = require("openrouter")

local url, fifo, seed, rounds = arg[1], arg[2], arg[3], tonumber(arg[4])
local keep = arg[5] == "keep"
local kept

local function pause(stage)
  local stat = io.open("/proc/self/stat")
  io.stdout:write("ready ", stat:read("*l"):match("^(%d+)"), " ", stage, "\n")
  stat:close()
  io.stdout:flush()
  local f = io.open(fifo, "r") -- blocks until the parent has counted
  if f then f:close() end
end

-- Every path that sends the key: plain, streamed, async (streamed or not), GETs, an error.
local function requests(client, chat)
  assert(client:chat_completion(chat))
  assert(client:chat_completion(chat, function() end))
  local done = 0
  for _ = 1, 3 do
    client:chat_completion_async(chat, { on_chunk = function() end,
      on_done = function() done = done + 1 end })
    client:chat_completion_async(chat, { on_done = function() done = done + 1 end })
  end
  while client:poll(0.05) > 0 do end
  assert(done == 6, "async requests did not finish")
  assert(client:get_models())
  assert(client:get_credits())
  local res, err = client:chat_completion{ model = "missing/model", messages = chat.messages }
  assert(res == nil and err.status == 400)
end

local function run()
  local key = "sk-or-v1-memory-" .. seed:rep(48 / #seed)
  if keep then kept = key end
  local client = openrouter.new{ api_key = key, base_url = url, max_retries = 0 }
  key = nil
  pause("open")
  local chat = { model = "openai/gpt-4o-mini", messages = { { role = "user", content = "hi" } } }
  for _ = 1, rounds do requests(client, chat) end
  client:close()
end

run()
collectgarbage()
collectgarbage()
pause("closed")
if kept then io.stdout:write("kept ", #kept, "\n") end
