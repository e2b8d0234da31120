-- Runs inside `nvim --headless` (spec/nvim_spec.lua): one case, named by
-- $OPENROUTER_NVIM_CASE, against the emulator at $OPENROUTER_BASE_URL; writes
-- what happened as JSON to $OPENROUTER_NVIM_RESULT. The module is the LuaJIT
-- build (build/luajit); lua-cjson is on the path only when $OPENROUTER_NVIM_CJSON
-- names its directory. Every case counts calls of client:poll: none is expected,
-- the editor's loop drives the requests (openrouter.nvim, openrouter.uv).
local root = assert(os.getenv("OPENROUTER_ROOT"), "OPENROUTER_ROOT")
local case = os.getenv("OPENROUTER_NVIM_CASE") or "stream"
package.path = table.concat({ root .. "/lua/?.lua", root .. "/lua/?/init.lua",
  root .. "/examples/nvim/lua/?.lua", root .. "/examples/nvim/lua/?/init.lua" }, ";")
package.cpath = root .. "/build/luajit/?.so"  -- and nothing else: no lua-cjson
if os.getenv("OPENROUTER_NVIM_CJSON") then
  package.cpath = package.cpath .. ";" .. os.getenv("OPENROUTER_NVIM_CJSON") .. "/?.so"
end
vim.opt.runtimepath:append(root)  -- lua/openrouter/health.lua
vim.opt.runtimepath:append(root .. "/examples/nvim")
vim.cmd("runtime plugin/openrouter_chat.lua")

local base_url = os.getenv("OPENROUTER_BASE_URL")
local result = { case = case, command = vim.fn.exists(":OpenRouterChat") == 2 }
local openrouter = require("openrouter")
local polls = 0
local poll = openrouter.Client.poll
openrouter.Client.poll = function(...)
  polls = polls + 1
  return poll(...)
end

local function now_ms() return vim.loop.hrtime() / 1e6 end

local function wait_for(what, ms)
  if not vim.wait(ms or 20000, what, 5) then error("timed out", 2) end
end

local function lines(buf)
  return vim.api.nvim_buf_is_valid(buf) and vim.api.nvim_buf_get_lines(buf, 0, -1, false) or nil
end

-- What an on_done saw, and whether the editor API could be called there.
local function outcome(text, err, buf)
  return { text = text, err = err and tostring(err), kind = err and err.kind,
    generation_id = err and err.generation_id, fast = vim.in_fast_event(),
    lines = buf and lines(buf) }
end

-- This process's children (every thread's), and what its file descriptors point to.
local function children()
  local list = {}
  for _, task in ipairs(vim.fn.glob("/proc/self/task/*", false, true)) do
    for pid in (table.concat(vim.fn.readfile(task .. "/children"), " ")):gmatch("%d+") do
      list[#list + 1] = pid
    end
  end
  return list
end

local function open_files()
  local set = {}
  for _, fd in ipairs(vim.fn.glob("/proc/self/fd/*", false, true)) do
    local target = vim.loop.fs_readlink(fd)
    if target and target:sub(1, 1) == "/" then set[target] = true end
  end
  return set
end

local cases = {}

-- The example plugin streams into a buffer while the editor's timers keep firing.
function cases.stream()
  local chat = require("openrouter_chat")
  chat.setup{ client = { api_key = "sk-or-nvim-spec", base_url = base_url } }
  local ticks = 0
  local ticker = vim.fn.timer_start(10, function() ticks = ticks + 1 end, { ["repeat"] = -1 })
  local started, done = now_ms(), nil
  local files_before = open_files()
  chat.chat("hello from neovim", { model = "emulator/slow:100", on_done = function(text, e, buf)
    done = outcome(text, e, buf)
  end })
  result.returned_after_ms = now_ms() - started
  -- while it streams: no subprocess (no key in any argv), no file opened (no temp file)
  vim.wait(300, function() return false end)
  result.children = children()
  result.new_files = {}
  for f in pairs(open_files()) do
    if not files_before[f] then result.new_files[#result.new_files + 1] = f end
  end
  wait_for(function() return done end)
  result.elapsed_ms = now_ms() - started
  result.ticks = ticks
  vim.fn.timer_stop(ticker)
  result.done = done
end

-- A second :OpenRouterChat while the first streams: both complete, each in its buffer.
function cases.two_chats()
  local chat = require("openrouter_chat")
  chat.setup{ model = "emulator/slow:60", client = { api_key = "sk-or-nvim-spec", base_url = base_url } }
  vim.cmd("OpenRouterChat first question here")
  local first_buf = vim.api.nvim_get_current_buf()
  local first = chat.requests[first_buf]
  wait_for(function() return (lines(first_buf)[2] or "") ~= "" end)  -- it is streaming
  result.first_streaming = not first.done
  vim.cmd("OpenRouterChat second one")
  local second_buf = vim.api.nvim_get_current_buf()
  local second = chat.requests[second_buf]
  collectgarbage()
  collectgarbage()
  wait_for(function() return first.done and second.done end)
  wait_for(function() return next(chat.requests) == nil end)  -- the on_done ran
  result.first = { lines = lines(first_buf), err = first.error and tostring(first.error) }
  result.second = { lines = lines(second_buf), err = second.error and tostring(second.error) }
  result.distinct_buffers = first_buf ~= second_buf
end

-- Closing the reply's window wipes its buffer and cancels its request.
function cases.close_window()
  local chat = require("openrouter_chat")
  chat.setup{ client = { api_key = "sk-or-nvim-spec", base_url = base_url } }
  local done
  local _, buf = chat.chat("one two three four five six seven eight nine ten eleven twelve",
    { model = "emulator/slow:150", on_done = function(text, e) done = outcome(text, e) end })
  wait_for(function() return (lines(buf)[2] or ""):find("one") end)  -- the reply is streaming
  result.before_close = lines(buf)
  vim.api.nvim_win_close(vim.fn.bufwinid(buf), true)
  result.buffer_wiped = not vim.api.nvim_buf_is_valid(buf)
  wait_for(function() return done end)
  result.done = done
end

-- openrouter.nvim directly: stream_into a buffer, then :bwipeout it.
function cases.wipe()
  local nv = require("openrouter.nvim")
  local client = nv.client{ api_key = "sk-or-nvim-spec", base_url = base_url }
  local buf = vim.api.nvim_create_buf(true, true)
  local chunks, done = 0, nil
  client:stream_into(buf, { model = "emulator/slow:150",
    messages = { { role = "user", content = "alpha beta gamma delta epsilon zeta eta theta iota" } } },
    { on_chunk = function() chunks = chunks + 1 end,
      on_done = function(res, e) done = outcome(res and openrouter.text(res), e) end })
  wait_for(function() return chunks > 0 end)
  vim.cmd("bwipeout! " .. buf)
  wait_for(function() return done end)
  result.done = done
  result.chunks = chunks
  -- the callbacks of a plain request run on the main loop, in order, and may call the API
  local order = {}
  client:chat_completion_async({ model = "emulator/slow:20",
    messages = { { role = "user", content = "a b c" } } }, {
    on_response = function(status) order[#order + 1] = "response " .. status end,
    on_chunk = function(chunk)
      order[#order + 1] = "chunk " .. tostring(vim.in_fast_event())
      vim.api.nvim_buf_get_lines(0, 0, 1, false)  -- raises in a fast context
    end,
    on_done = function(res, e) order[#order + 1] = "done " .. tostring(vim.in_fast_event())
      result.plain = outcome(res and openrouter.text(res), e) end,
  })
  wait_for(function() return result.plain end)
  result.order = order
  -- on_chunk returning false cancels, as on any client
  local n, stopped = 0, nil
  client:chat_completion_async({ model = "emulator/slow:50",
    messages = { { role = "user", content = "one two three four five six seven eight" } } }, {
    on_chunk = function() n = n + 1; if n == 2 then return false end end,
    on_done = function(_, e) stopped = outcome(nil, e) end,
  })
  wait_for(function() return stopped end)
  result.stopped, result.stopped_chunks = stopped, n
  client:close()
end

-- setup() while a reply streams: it finishes, the next chat uses the new settings,
-- and the replaced client is closed after its reply.
function cases.setup_while_streaming()
  local chat = require("openrouter_chat")
  local nv = require("openrouter.nvim")
  chat.setup{ client = { api_key = "sk-or-nvim-spec", base_url = base_url } }
  local first, second
  chat.chat("streaming while setup runs", { model = "emulator/slow:100",
    on_done = function(text, e, buf) first = outcome(text, e, buf) end })
  local old = next(nv.clients)
  vim.wait(150, function() return false end)
  chat.setup{ model = "emulator/slow:10", client = { app_title = "after setup" } }
  chat.setup{}
  chat.chat("after setup", { on_done = function(text, e, buf) second = outcome(text, e, buf) end })
  wait_for(function() return first and second end)
  result.first, result.second = first, second
  result.old_closed = old:is_closed()
  result.errmsg = vim.v.errmsg
end

-- A request that times out ends with an error; the editor runs on meanwhile.
function cases.timeout()
  local nv = require("openrouter.nvim")
  local client = nv.client{ api_key = "sk-or-nvim-spec", base_url = base_url, timeout = 1 }
  local ticks, done = 0, nil
  local ticker = vim.fn.timer_start(10, function() ticks = ticks + 1 end, { ["repeat"] = -1 })
  local started = now_ms()
  client:chat_completion_async({ model = "emulator/stall", messages = { { role = "user", content = "hi" } } },
    { on_done = function(_, e) done = outcome(nil, e) end })
  wait_for(function() return done end)
  result.elapsed_ms = now_ms() - started
  vim.fn.timer_stop(ticker)
  result.ticks, result.done = ticks, done
  client:close()
end

-- A task (openrouter.async) on an openrouter.nvim client: its blocking calls yield, the
-- editor's loop drives the requests, and the task resumes where the editor API works.
function cases.task()
  local nv = require("openrouter.nvim")
  local client = nv.client{ api_key = "sk-or-nvim-spec", base_url = base_url }
  local buf = vim.api.nvim_create_buf(true, true)
  local task = openrouter.async(function(q)
    local res = assert(client:chat_completion{ model = "emulator/slow:20",
      messages = { { role = "user", content = q } } })
    local fast = vim.in_fast_event()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, { openrouter.text(res) })
    local second = assert(client:chat_completion{ model = "openai/gpt-4o-mini",
      messages = { { role = "user", content = "again" } } })
    result.fast, result.second = fast, openrouter.text(second)
  end, "from a task")
  result.returned_at_once = not task.done
  wait_for(function() return task.done end)
  result.task_error = task.error and tostring(task.error)
  result.lines = lines(buf)
  client:close()
end

-- openrouter.null is vim.NIL whatever is installed, for decoding and encoding.
function cases.null()
  result.cjson_loadable = pcall(require, "cjson")
  result.json_backend = openrouter.json_backend
  result.null_is_nil = openrouter.null == vim.NIL
  local client = openrouter.new{ api_key = "sk-or-nvim-spec", base_url = base_url }
  local res = assert(client:chat_completion{ model = "openai/gpt-4o-mini",
    messages = { { role = "user", content = "null please" } }, user = openrouter.null })
  local g = assert(client:get_generation(res.id, { wait = 5 }))
  result.decoded_null_is_nil = g.upstream_inference_cost == vim.NIL
  client:close()
end

-- :checkhealth openrouter, its lines.
function cases.health()
  local nv = require("openrouter.nvim")
  local key = os.getenv("OPENROUTER_NVIM_PLUGIN_KEY")
  local client = key and nv.client{ api_key = key, base_url = base_url }
  vim.cmd("checkhealth openrouter")
  result.lines = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  if client then client:close() end
end

-- :help openrouter, from doc/openrouter.txt with its tags made in a scratch directory.
function cases.help()
  local dir = assert(os.getenv("OPENROUTER_NVIM_HELPDIR"))
  vim.fn.mkdir(dir .. "/doc", "p")
  vim.fn.writefile(vim.fn.readfile(root .. "/doc/openrouter.txt", "b"), dir .. "/doc/openrouter.txt", "b")
  vim.v.errmsg = ""
  vim.cmd("helptags " .. vim.fn.fnameescape(dir .. "/doc"))
  result.helptags_error = vim.v.errmsg
  vim.opt.runtimepath:append(dir)
  local tags = {}
  for _, line in ipairs(vim.fn.readfile(dir .. "/doc/tags")) do tags[#tags + 1] = line:match("^(%S+)") end
  result.tags = tags
  result.opened = {}
  for _, tag in ipairs(tags) do
    local ok = pcall(vim.cmd, "help " .. tag)
    result.opened[tag] = ok and vim.fn.expand("%:t") == "openrouter.txt" and vim.bo.buftype == "help"
  end
  vim.cmd("help openrouter")
  result.file = vim.fn.expand("%:t")
  result.first_line = vim.api.nvim_buf_get_lines(0, 0, 1, false)[1]
  -- every |link| in the file names a tag that exists here
  local known, missing = {}, {}
  for _, t in ipairs(tags) do known[t] = true end
  for _, line in ipairs(vim.fn.readfile(dir .. "/doc/openrouter.txt")) do
    for link in line:gmatch("|([^|%s]+)|") do
      if not known[link] and vim.fn.getcompletion(link, "help")[1] ~= link then missing[#missing + 1] = link end
    end
  end
  result.missing_links = missing
end

local ok, err = xpcall(function() assert(cases[case], "no case " .. case)() end, debug.traceback)
result.ok, result.failure = ok, not ok and tostring(err) or nil
result.cjson_loaded = package.loaded.cjson ~= nil
result.json_backend = result.json_backend or openrouter.json_backend
result.null_is_nil = openrouter.null == vim.NIL
result.polls = polls

local f = assert(io.open(assert(os.getenv("OPENROUTER_NVIM_RESULT")), "w"))
f:write(vim.json.encode(result))
f:close()
vim.cmd("qall!")
