-- What the command-line tool writes: streamed text (escaped and word-wrapped on a
-- terminal), lines, colour, numbers, JSON, tables, and the spinner.
local system = require("openrouter.cli.system")

local M = {}
local tty = system.tty

local function color_ok()
  local term = os.getenv("TERM")
  return tty(1) and (os.getenv("NO_COLOR") or "") == "" and term ~= "dumb"
end

function M.paint(code, s)
  if not color_ok() then return s end
  return "\27[" .. code .. "m" .. s .. "\27[0m"
end

-- Control characters in model output could drive the terminal (titles, the clipboard):
-- on a terminal they are shown escaped; pipes get the bytes as they are.
function M.for_terminal(s)
  s = s:gsub("[%z\1-\8\11-\31\127]", function(c)
    if c == "\r" then return "" end
    return "^" .. string.char((c:byte() + 64) % 128)
  end)
  return (s:gsub("\194([\128-\159])", function(c) return ("\\u%04x"):format(c:byte()) end))
end

---------------------------------------------------------------------------------------------
-- Word wrapping as the text streams
---------------------------------------------------------------------------------------------

-- A writer that breaks lines at blanks so that no line is wider than `width` columns.
-- Text is written as it comes: when a word outgrows the line, the part already shown is
-- erased (carriage return, cursor forward, erase to the end of the line) and written again
-- on the next line. A word wider than the line is cut. Columns are counted in UTF-8
-- characters; a character cut between two pieces is fine (its continuation bytes count 0).
local Wrap = {}
Wrap.__index = Wrap

function M.new_wrap(width, write)
  return setmetatable({ width = width, write = write, col = 0, word = "", word_cols = 0,
                        soft = false }, Wrap)
end

function Wrap:newline(soft)
  self.write("\n")
  self.col, self.word, self.word_cols, self.soft = 0, "", 0, soft
end

function Wrap:blank(c)
  local advance = c == "\t" and 8 - self.col % 8 or 1
  self.word, self.word_cols = "", 0
  if self.soft and self.col == 0 then return end -- no blank at the start of a wrapped line
  if self.col + advance > self.width then return self:newline(true) end
  self.write(c)
  self.col = self.col + advance
end

function Wrap:char(c, cols)
  if self.col + cols > self.width then
    local word, n = self.word, self.word_cols
    if n > 0 and n < self.col and n + cols <= self.width then -- move the word down
      self.write("\r\27[" .. (self.col - n) .. "C\27[K")
      self:newline(true)
      self.write(word)
      self.col, self.word, self.word_cols = n, word, n
    else
      self:newline(true)
    end
  end
  self.write(c)
  self.col, self.soft = self.col + cols, false
  self.word, self.word_cols = self.word .. c, self.word_cols + cols
end

function Wrap:feed(s)
  local i, n = 1, #s
  while i <= n do
    local b = s:byte(i)
    local j = i + 1
    while j <= n and s:byte(j) >= 128 and s:byte(j) < 192 do j = j + 1 end
    local c = s:sub(i, j - 1)
    if c == "\n" then self:newline(false)
    elseif c == " " or c == "\t" then self:blank(c)
    else self:char(c, (b >= 128 and b < 192) and 0 or 1) end
    i = j
  end
end

---------------------------------------------------------------------------------------------
-- Streamed text and lines on stdout
---------------------------------------------------------------------------------------------

local function write_stdout(s) io.stdout:write(s) end

local Out = { at_line_start = true }
M.Out = Out

-- The width replies wrap at: the terminal's, read again by each reply (a window may have
-- been resized); nil through a pipe.
function Out.begin_reply()
  Out.wrap = nil
  if not tty(1) then return end
  local width = system.terminal_width()
  if width then Out.wrap = M.new_wrap(width, write_stdout) end
end

function Out.text(s)
  if s == nil or s == "" then return end
  if tty(1) then s = M.for_terminal(s) end
  if Out.wrap then
    if Out.at_line_start then Out.wrap.col = 0 end
    Out.wrap:feed(s)
    Out.at_line_start = Out.wrap.col == 0
  else
    io.stdout:write(s)
    Out.at_line_start = s:sub(-1) == "\n"
  end
  io.stdout:flush()
end

function Out.finish_line()
  if not Out.at_line_start then
    io.stdout:write("\n")
    io.stdout:flush()
    Out.at_line_start = true
  end
end

function M.print_line(...)
  io.stdout:write(table.concat({ ... }), "\n")
  io.stdout:flush()
  Out.at_line_start = true
end

-- A dim line: the interactive mode's notes.
function M.info(s)
  M.print_line(M.paint("2", s))
end

---------------------------------------------------------------------------------------------
-- Numbers and JSON: sorted keys, indented, "/" unescaped, exact numbers
---------------------------------------------------------------------------------------------

-- Integral numbers without ".0" (lua-cjson decodes every number as a float).
function M.num(v)
  if type(v) ~= "number" then return tostring(v) end
  if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
  if v % 1 == 0 and math.abs(v) < 1e15 then return ("%.0f"):format(v) end
  for digits = 14, 17 do
    local s = ("%." .. digits .. "g"):format(v)
    if tonumber(s) == v then return s end
  end
  return ("%.17g"):format(v)
end

-- Dollars: at least two decimals, down to 1e-10 (token prices and costs are tiny).
function M.money(v)
  v = tonumber(v)
  if not v then return "-" end
  local s = ("%.10f"):format(v):gsub("0+$", "")
  local decimals = #(s:match("%.(.*)$") or "")
  if decimals < 2 then s = s .. ("0"):rep(2 - decimals) end
  return s
end

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_string(s)
  return '"' .. s:gsub('[%z\1-\31"\\\127]', function(c)
    return ESCAPES[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

function M.is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t -- an empty table is written as [] (lists are far more often empty)
end

local function json_object(v, indent, inner)
  local keys, parts = {}, {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local value = v[k]
    if value == nil then value = v[tonumber(k)] end
    parts[i] = inner .. json_string(k) .. ": " .. M.json(value, inner)
  end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

function M.json(v, indent)
  indent = indent or ""
  local t = type(v)
  if v == nil or v == require("openrouter").null then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return M.num(v)
  end
  if t == "string" then return json_string(v) end
  if t ~= "table" then return json_string(tostring(v)) end
  local inner = indent .. "  "
  if not M.is_array(v) then return json_object(v, indent, inner) end
  if #v == 0 then return "[]" end
  local parts = {}
  for i = 1, #v do parts[i] = inner .. M.json(v[i], inner) end
  return "[\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "]"
end

---------------------------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------------------------

-- Rows of cells; `align` per column, "-" left or "" right; the last column is never
-- padded; the first row (the header) in bold on a terminal.
function M.print_table(rows, align)
  local widths, last = {}, #align
  for _, row in ipairs(rows) do
    for c = 1, last - 1 do widths[c] = math.max(widths[c] or 0, #row[c]) end
  end
  local format = {}
  for c = 1, last - 1 do format[c] = "%" .. align[c] .. widths[c] .. "s" end
  format[last] = "%s"
  format = table.concat(format, "  ")
  for r, row in ipairs(rows) do
    local line = format:format((table.unpack or unpack)(row, 1, last))
    if r == 1 then line = M.paint("1", line) end
    M.print_line(line)
  end
end

local function field_text(value, special, name)
  local text
  if special and special[name] then text = special[name](value) end
  if text ~= nil then return text end
  if value == require("openrouter").null or value == nil then return "-" end
  if type(value) == "number" then return M.num(value) end
  if type(value) == "table" then return (M.json(value):gsub("%s*\n%s*", " ")) end
  return tostring(value)
end

local function sorted_keys(t, skip)
  local keys = {}
  for k in pairs(t) do
    if not (skip and skip[k]) then keys[#keys + 1] = tostring(k) end
  end
  table.sort(keys)
  return keys
end

-- key  value lines for a flat or nested table (nested keys as a.b), the keys of `order`
-- first, nulls as "-"; special[name](value) formats a field (nil: the default).
function M.print_fields(t, order, special)
  local lines, seen = {}, {}
  local function add(key, value, prefix)
    local name = prefix .. key
    if type(value) == "table" and value ~= require("openrouter").null and not M.is_array(value) then
      for _, k in ipairs(sorted_keys(value)) do add(k, value[k], name .. ".") end
      return
    end
    lines[#lines + 1] = { name, (field_text(value, special, name):gsub("[%c]", " ")) }
  end
  for _, k in ipairs(order) do
    if t[k] ~= nil then add(k, t[k], ""); seen[k] = true end
  end
  for _, k in ipairs(sorted_keys(t, seen)) do add(k, t[k], "") end
  local width = 0
  for _, l in ipairs(lines) do width = math.max(width, #l[1]) end
  for _, l in ipairs(lines) do M.print_line(("%-" .. width .. "s  %s"):format(l[1], l[2])) end
end

---------------------------------------------------------------------------------------------
-- The spinner
---------------------------------------------------------------------------------------------

local utf8_locale = ((os.getenv("LC_ALL") or "") .. (os.getenv("LC_CTYPE") or "")
  .. (os.getenv("LANG") or "")):lower():find("utf%-?8") ~= nil
local FRAMES = utf8_locale and { "⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏" }
  or { "|", "/", "-", "\\" }

-- A spinner on stderr while nothing has arrived; only when stdout and stderr are terminals.
-- tick() runs once per poll round (about 50 ms); it shows up after `delay` rounds.
function M.new_spinner(label, delay)
  local s = { enabled = tty(1) and tty(2), rounds = 0, frame = 0, shown = false }
  function s.tick()
    if not s.enabled then return end
    s.rounds = s.rounds + 1
    if s.rounds < (delay or 0) or s.rounds % 2 == 1 then return end
    s.frame = s.frame % #FRAMES + 1
    io.stderr:write("\r", FRAMES[s.frame], " ", label, "\27[K")
    s.shown = true
  end
  function s.stop()
    if s.shown then io.stderr:write("\r\27[K") end
    s.shown, s.enabled = false, false
  end
  return s
end

return M
