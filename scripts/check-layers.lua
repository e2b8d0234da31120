-- Checks the C core's layers (doc/design.md, "Layers"): from the object files' symbols
-- (nm), which file calls which; fails when a file calls a file of a higher layer, when
-- files call each other in a circle, or when a function is longer than MAX_LINES.
--
--   lua5.4 scripts/check-layers.lua OBJ_DIR SRC_DIR
--
-- Prints the layers with each file's calls, the circles found and the longest functions.

local LAYERS = {
  { name = "base (plain C, no Lua)", files = { "buffer", "sse", "errmap", "platform", "base64", "sha256" } },
  { name = "Lua bridge", files = { "compat", "json", "errors", "stream" } },
  { name = "engine", files = { "config", "transfer", "outcome", "loop", "driver" } },
  { name = "bindings", files = { "client", "request", "actions", "core" } },
}
local MAX_LINES = 60 -- "functions short enough to read at once"

local obj_dir, src_dir = arg[1], arg[2]
if not (obj_dir and src_dir) then
  io.stderr:write("usage: check-layers.lua OBJ_DIR SRC_DIR\n")
  os.exit(2)
end

local function lines_of(cmd)
  local h = assert(io.popen(cmd))
  local out = {}
  for line in h:lines() do out[#out + 1] = line end
  h:close()
  return out
end

local layer_of = {}
for i, layer in ipairs(LAYERS) do
  for _, f in ipairs(layer.files) do layer_of[f] = i end
end

-- symbols: who defines what, who uses what
local files, owner, uses = {}, {}, {}
-- an object without its source is a leftover of a renamed file: not part of the core
local function has_source(f)
  local h = io.open(src_dir .. "/" .. f .. ".c")
  if h then h:close() end
  return h ~= nil
end

for _, path in ipairs(lines_of("ls " .. obj_dir .. "/*.o")) do
  local f = path:match("([^/]+)%.o$")
  if has_source(f) then
    files[#files + 1] = f
    for _, line in ipairs(lines_of("nm -g --defined-only " .. path)) do
      owner[line:match("(%S+)$")] = f
    end
    uses[f] = {}
    for _, line in ipairs(lines_of("nm -u " .. path)) do
      uses[f][#uses[f] + 1] = line:match("(%S+)$")
    end
  end
end
table.sort(files)

local problems = {}
local edges = {}
for _, f in ipairs(files) do
  local seen = {}
  edges[f] = {}
  if not layer_of[f] then
    problems[#problems + 1] = f .. ".c is in no layer (add it to scripts/check-layers.lua and doc/design.md)"
  end
  for _, sym in ipairs(uses[f]) do
    local g = owner[sym]
    if g and g ~= f and not seen[g] then
      seen[g] = true
      edges[f][#edges[f] + 1] = g
      if layer_of[f] and layer_of[g] and layer_of[g] > layer_of[f] then
        problems[#problems + 1] = ("%s.c (%s) calls up into %s.c (%s): %s"):format(
          f, LAYERS[layer_of[f]].name, g, LAYERS[layer_of[g]].name, sym)
      end
    end
  end
  table.sort(edges[f])
end

-- circles: Tarjan's strongly connected components
local index, low, stack, on, counter = {}, {}, {}, {}, 0
local function strong(v)
  counter = counter + 1
  index[v], low[v] = counter, counter
  stack[#stack + 1], on[v] = v, true
  for _, w in ipairs(edges[v]) do
    if not index[w] then
      strong(w)
      low[v] = math.min(low[v], low[w])
    elseif on[w] then
      low[v] = math.min(low[v], index[w])
    end
  end
  if low[v] == index[v] then
    local comp = {}
    repeat
      local w = table.remove(stack)
      on[w] = nil
      comp[#comp + 1] = w .. ".c"
    until w == v
    if #comp > 1 then
      table.sort(comp)
      problems[#problems + 1] = "circle: " .. table.concat(comp, " ")
    end
  end
end
for _, f in ipairs(files) do
  if not index[f] then strong(f) end
end

-- function lengths: top-level brace blocks that follow a ')'
-- blanks out comments, strings and character literals, keeping the line breaks
local function strip(text)
  local out, i, n = {}, 1, #text
  while i <= n do
    local c, two = text:sub(i, i), text:sub(i, i + 1)
    if two == "/*" then
      local e = text:find("*/", i + 2, true) or n
      out[#out + 1] = text:sub(i, e + 1):gsub("[^\n]", "")
      i = e + 2
    elseif two == "//" then
      i = (text:find("\n", i, true) or n + 1)
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n and text:sub(j, j) ~= c do
        if text:sub(j, j) == "\\" then j = j + 1 end
        j = j + 1
      end
      out[#out + 1] = c .. c
      i = j + 1
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end
local functions = {}
for _, f in ipairs(lines_of("ls " .. src_dir .. "/*.c")) do
  local h = assert(io.open(f))
  local text = strip(h:read("*a"))
  h:close()
  local depth, line, start, name = 0, 1, nil, nil
  for pos = 1, #text do
    local c = text:sub(pos, pos)
    if c == "\n" then
      line = line + 1
    elseif c == "{" then
      if depth == 0 then
        local head = text:sub(math.max(1, pos - 300), pos - 1)
        if head:match("%)%s*$") then
          local sig = head:match(".*\n\n(.*)$") or head
          name = sig:match("([%a_][%w_]*)%s*%(") or "?"
          start = line
        else
          start = nil
        end
      end
      depth = depth + 1
    elseif c == "}" then
      depth = depth - 1
      if depth == 0 and start then
        functions[#functions + 1] = { lines = line - start + 1, name = f:match("[^/]+$") .. ":" .. name }
        start = nil
      end
    end
  end
end
table.sort(functions, function(a, b) return a.lines > b.lines end)
for _, fn in ipairs(functions) do
  if fn.lines > MAX_LINES then
    problems[#problems + 1] = ("%s is %d lines (at most %d)"):format(fn.name, fn.lines, MAX_LINES)
  end
end

for i = #LAYERS, 1, -1 do
  print(("layer %d, %s:"):format(i, LAYERS[i].name))
  for _, f in ipairs(LAYERS[i].files) do
    if edges[f] then
      local calls = {}
      for _, g in ipairs(edges[f]) do calls[#calls + 1] = g .. ".c" end
      print(("  %-12s -> %s"):format(f .. ".c", #calls > 0 and table.concat(calls, " ") or "(nothing)"))
    end
  end
end
print("longest functions:")
for i = 1, math.min(5, #functions) do
  print(("  %-40s %d lines"):format(functions[i].name, functions[i].lines))
end
for _, p in ipairs(problems) do print("FAIL: " .. p) end
print(("%d files, %d functions, %d problems"):format(#files, #functions, #problems))
os.exit(#problems == 0 and 0 or 1)
