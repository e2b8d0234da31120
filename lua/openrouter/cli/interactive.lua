-- The conversation of 'openrouter chat' on a terminal: every reply streams (wrapped at
-- the terminal's width), the history is kept, /commands act on it. Ctrl-C stops a reply:
-- the terminal is switched with stty so that Ctrl-C is a key, not a signal.
local errors = require("openrouter.cli.errors")
local output = require("openrouter.cli.output")
local request = require("openrouter.cli.request")
local system = require("openrouter.cli.system")
local shared = require("openrouter.shared")

local Out, info, report = output.Out, output.info, errors.report

local M = {}

---------------------------------------------------------------------------------------------
-- The terminal, through stty: at the prompt Ctrl-C ends the line (it is an end-of-line
-- character, and no longer the interrupt character), so the line reader sees it; during
-- a reply the terminal is non-blocking and silent, so the poll loop reads Ctrl-C as a key.
---------------------------------------------------------------------------------------------

local Terminal = {}
Terminal.__index = Terminal

local function stty_state()
  local state = system.read_command("stty -g 2>/dev/null")
  if state and state:match("^[%w:=%-]+$") then return state end
  return nil
end

-- The terminal, switched to the prompt mode; nil without stty (or without a terminal).
function Terminal.new()
  local original = stty_state()
  if not original then return nil end
  if not system.sh("stty intr undef eol '^C' 2>/dev/null") then return nil end
  local prompt_mode = stty_state()
  if not prompt_mode then
    system.sh("stty " .. original)
    return nil
  end
  return setmetatable({ original = original, prompt = prompt_mode, typeahead = "" }, Terminal)
end

function Terminal:reply_mode() system.sh("stty -icanon -echo -isig min 0 time 0 2>/dev/null") end
function Terminal:prompt_mode() system.sh("stty " .. self.prompt .. " 2>/dev/null") end
function Terminal:restore() system.sh("stty " .. self.original .. " 2>/dev/null") end

-- Reads what was typed during a reply: true once a Ctrl-C is among it; the rest is kept
-- for the next prompt.
function Terminal:ctrl_c_pressed()
  while true do
    local c = io.stdin:read(1) -- never blocks: min 0 time 0
    if c == nil then return false end
    if c == "\3" then return true end
    self.typeahead = self.typeahead .. c
  end
end

-- A line: the text, or false after Ctrl-C (with the text typed so far), or nil at EOF.
function Terminal:read_line()
  local buf, pending, i = {}, self.typeahead, 1
  self.typeahead = ""
  if pending ~= "" then Out.text((pending:gsub("\n.*", "\n"))) end
  while true do
    local c
    if i <= #pending then
      c, i = pending:sub(i, i), i + 1
    else
      c = io.stdin:read(1)
    end
    if c == nil then
      if #buf == 0 then return nil end
      return table.concat(buf)
    end
    if c == "\n" then
      self.typeahead = pending:sub(i)
      return table.concat(buf)
    end
    if c == "\3" then return false, table.concat(buf) end
    buf[#buf + 1] = c
  end
end

---------------------------------------------------------------------------------------------
-- A session: the conversation, the terminal, a reply at a time
---------------------------------------------------------------------------------------------

local Session = {}
Session.__index = Session

local function count(n, noun)
  return ("%d %s%s"):format(n, noun, n == 1 and "" or "s")
end

-- A line from the user (as Terminal:read_line).
function Session:read_line()
  if self.term then
    self.term:prompt_mode() -- again each time: a shell may have reset the terminal after Ctrl-Z
    return self.term:read_line()
  end
  -- no stty: a plain line read; Ctrl-C arrives as lua.c's "interrupted!" error
  local ok, line = pcall(io.read, "*l")
  if not ok then
    if errors.is_interrupt(line) then return false, "" end
    error(line, 0)
  end
  return line
end

-- Sends text and streams the reply; a failure or a Ctrl-C is reported, the loop goes on.
function Session:say(text)
  local conv, term = self.conv, self.term
  local spinner = output.new_spinner("waiting for " .. conv.model)
  local turn
  Out.begin_reply()
  if term then term:reply_mode() end
  local ok, res, err = pcall(request.run, self.client, function()
    turn = conv:say_async(text, { on_delta = function(delta)
      spinner.stop()
      Out.text(delta)
    end })
    return turn
  end, spinner, term and function() return term:ctrl_c_pressed() end)
  if term then
    if turn and not turn.done then pcall(turn.cancel, turn) end
    term:prompt_mode() -- echo back on before anything else is printed
  end
  if not ok then error(res, 0) end
  Out.finish_line()
  if res then return end
  if err.kind == "cancelled" then
    info("[cancelled: the conversation is as it was before this message]")
  else
    report(errors.describe(err, self.opts))
  end
end

---------------------------------------------------------------------------------------------
-- The /commands: COMMANDS[name](session, rest); "quit" leaves
---------------------------------------------------------------------------------------------

local HELP = [[
/undo          forget the last message and its reply
/reset         forget the whole conversation (the system prompt stays)
/save FILE     save the conversation as JSON
/load FILE     continue a conversation saved with /save
/history       show the conversation
/usage         tokens, requests and cost so far
/help          these commands
/quit          leave (also /exit, Ctrl-D, or Ctrl-C on an empty line)]]

local COMMANDS = {}

function COMMANDS.help() info(HELP) end

function COMMANDS.undo(s)
  info(s.conv:undo() and "(forgot the last message and its reply)" or "(nothing to undo)")
end

function COMMANDS.reset(s)
  s.conv:reset()
  info("(conversation cleared)")
end

function COMMANDS.usage(s)
  local u, num = s.conv:usage(), output.num
  local line = ("usage: %s, %s prompt + %s completion = %s tokens"):format(count(u.requests, "request"),
    num(u.prompt_tokens), num(u.completion_tokens), num(u.total_tokens))
  if type(u.cost) == "number" then line = line .. ", $" .. output.money(u.cost) end
  info(line)
end

-- A message's text: its content, or the text of its parts joined by spaces.
local function content_of(message)
  local c = message.content
  if type(c) ~= "string" and type(c) ~= "table" then
    return message.tool_calls and "(tool calls)" or ""
  end
  return shared.content_text(c, " ") or ""
end

function COMMANDS.history(s)
  for _, m in ipairs(s.conv.messages) do
    local text = content_of(m)
    output.print_line(output.paint("1", tostring(m.role) .. ":"), " ",
      system.tty(1) and output.for_terminal(text) or text)
  end
  if #s.conv.messages == 0 then info("(the conversation is empty)") end
end

function COMMANDS.save(s, file)
  if file == "" then return report("usage", "/save needs a FILE") end
  local f, why = io.open(file, "w")
  if not f then return report("other", "cannot write " .. file .. ": " .. tostring(why)) end
  local ok, werr = f:write(s.conv:to_json(), "\n")
  f:close()
  if not ok then return report("other", "cannot write " .. file .. ": " .. tostring(werr)) end
  info(("(saved %s to %s)"):format(count(#s.conv.messages, "message"), file))
end

function COMMANDS.load(s, file)
  if file == "" then return report("usage", "/load needs a FILE") end
  local f, why = io.open(file, "r")
  if not f then return report("other", "cannot read " .. file .. ": " .. tostring(why)) end
  local text = f:read("*a")
  f:close()
  local loaded, err = s.client:conversation_from_json(text or "")
  if not loaded then return report(errors.describe(err, s.opts)) end
  if not loaded.model then loaded.model = s.model end
  s.conv = loaded
  info(("(loaded %s from %s; model %s)"):format(count(#loaded.messages, "message"), file,
    tostring(loaded.model)))
end

function COMMANDS.quit() return "quit" end
COMMANDS.exit = COMMANDS.quit

---------------------------------------------------------------------------------------------
-- The loop
---------------------------------------------------------------------------------------------

-- One line typed: a /command, a message, or nothing; "quit" to leave.
function Session:handle(line)
  if line:sub(1, 2) == "//" then return self:say(line:sub(2)) end
  if line:sub(1, 1) == "/" then
    local name, rest = line:match("^/(%S*)%s*(.-)%s*$")
    local command = COMMANDS[name]
    if not command then return report("usage", "unknown command /" .. name .. " (/help lists them)") end
    return command(self, rest)
  end
  if line:find("%S") then return self:say(line) end
end

function Session:loop()
  while true do
    io.stdout:write(output.paint("1;32", "> "))
    io.stdout:flush()
    local line, typed = self:read_line()
    if line == nil then return output.print_line("") end -- Ctrl-D
    if line == false then
      output.print_line("")
      if typed == "" then return end -- Ctrl-C on an empty line: leave
    elseif self:handle(line) == "quit" then
      return
    end
  end
end

function M.run(client, opts, model)
  local conv = client:conversation{ model = model, system = opts.system,
    params = request.sampling(opts, {}) }
  local session = setmetatable({ client = client, opts = opts, model = model, conv = conv,
                                 term = Terminal.new() }, Session)
  info(("openrouter chat with %s. /help for commands; Ctrl-C stops a reply; Ctrl-D leaves.")
    :format(model))
  local ok, e = pcall(session.loop, session)
  if session.term then session.term:restore() end
  if not ok then error(e, 0) end
end

return M
