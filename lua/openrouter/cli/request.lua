-- Requests as the command-line tool runs them: asynchronously, polled, so that Ctrl-C
-- reaches Lua code (as a key in the interactive mode, or as the "interrupted!" error that
-- lua.c raises on SIGINT otherwise); the client; a streamed reply on stdout.
local errors = require("openrouter.cli.errors")
local output = require("openrouter.cli.output")
local keystore = require("openrouter.cli.keystore")

local M = {}

-- Drives `client` until done() is true. `keys`, when given, is called every round and
-- returns true when Ctrl-C was typed (interactive mode). Returns true when it was
-- interrupted (a ^C key, or SIGINT turned into an "interrupted!" error by lua.c).
local function drive(client, done, spinner, keys)
  local ok, e = pcall(function()
    while not done() do
      client:poll(0.05)
      if spinner then spinner.tick() end
      if keys and keys() then return "interrupted" end
    end
  end)
  if not ok and not errors.is_interrupt(e) then
    if spinner then spinner.stop() end
    error(e, 0)
  end
  return not ok or e == "interrupted"
end

-- Runs an async request to its end: start() starts it and returns the request object.
-- Returns res, or nil, err (err.kind "cancelled" after Ctrl-C).
function M.run(client, start, spinner, keys)
  local req = start()
  local interrupted = drive(client, function() return req.done end, spinner, keys)
  if interrupted and not req.done then
    req:cancel()
    drive(client, function() return req.done end)
  end
  if spinner then spinner.stop() end
  if req.result ~= nil then return req.result end -- done before the Ctrl-C took effect
  local err = req.error
  if interrupted and (err == nil or err.kind == "callback") then
    -- the interrupt hit one of our callbacks: the request ended as a "callback" failure
    err = { kind = "cancelled", message = "interrupted", partial = err and err.partial }
  end
  return nil, err
end

-- A request whose failure ends the program; a spinner after 300 ms on a terminal.
function M.simple(client, opts, start)
  local res, err = M.run(client, start, output.new_spinner("waiting", 6))
  if not res then errors.fail_with(err, opts) end
  return res
end

-- The client of the global options. The key: --api-key, else $OPENROUTER_API_KEY, else
-- the one 'openrouter login' stored. keyless: a client that sends no key.
function M.new_client(opts, keyless)
  local api_key = opts.api_key or os.getenv("OPENROUTER_API_KEY")
  if api_key == "" then api_key = nil end
  if api_key == nil then api_key = keystore.load() end
  if keyless then api_key = "" end
  opts.has_key = api_key ~= nil
  local ok, client = pcall(require("openrouter").new, {
    api_key = api_key, base_url = opts.base_url, timeout = opts.timeout,
    max_retries = opts.max_retries and math.floor(opts.max_retries),
    app_title = "openrouter-lua CLI",
  })
  if not ok then -- a bad --base-url or --timeout: the library says which
    errors.usage_error((tostring(client):gsub("^bad argument #1 to 'new' %((.*)%)$", "%1")))
  end
  return client
end

-- --temperature and --max-tokens into request parameters.
function M.sampling(opts, params)
  params.temperature = opts.temperature
  params.max_tokens = opts.max_tokens and math.floor(opts.max_tokens)
  return params
end

-- -v: the generation id, the model, tokens and cost on stderr.
local function print_stats(res, err)
  local usage = res and res.usage
  local parts = {}
  local id = (res and res.id) or (err and err.generation_id)
  if id then parts[#parts + 1] = tostring(id) end
  if res and res.model then parts[#parts + 1] = tostring(res.model) end
  if type(usage) == "table" then
    parts[#parts + 1] = ("%s prompt + %s completion tokens"):format(output.num(usage.prompt_tokens or 0),
      output.num(usage.completion_tokens or 0))
    if type(usage.cost) == "number" then parts[#parts + 1] = "$" .. output.money(usage.cost) end
  end
  if #parts > 0 then io.stderr:write(errors.PROGRAM, ": ", table.concat(parts, ", "), "\n") end
end

-- One streamed request (chat or complete), its text on stdout, wrapped on a terminal.
-- start_async(callbacks) starts it.
function M.stream(client, opts, model, start_async)
  local spinner = output.new_spinner("waiting for " .. model)
  local text_of = require("openrouter").text
  output.Out.begin_reply()
  local res, err = M.run(client, function()
    return start_async({
      on_chunk = function(chunk)
        local text = text_of(chunk)
        if text and text ~= "" then
          spinner.stop()
          output.Out.text(text)
        end
      end,
    })
  end, spinner)
  output.Out.finish_line()
  if opts.verbose then print_stats(res, err) end
  if not res then errors.fail_with(err, opts) end
end

return M
