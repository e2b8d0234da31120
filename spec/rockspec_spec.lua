-- The rockspec lists every C source and Lua module of the repository: a file added or
-- renamed without it builds here (the Makefile globs src/*.c) and breaks `luarocks make`.
local function ls(pattern)
  local h = assert(io.popen("ls " .. pattern .. " 2>/dev/null"))
  local out = {}
  for line in h:lines() do out[#out + 1] = line end
  h:close()
  table.sort(out)
  return out
end

local function rockspec()
  local env = {}
  local f = assert(io.open("openrouter-scm-1.rockspec"))
  local text = f:read("*a")
  f:close()
  local chunk
  if setfenv then
    chunk = assert(loadstring(text))
    setfenv(chunk, env)
  else
    chunk = assert(load(text, "rockspec", "t", env))
  end
  chunk()
  return env
end

describe("openrouter-scm-1.rockspec", function()
  local spec = rockspec()

  it("builds every C source of src/", function()
    local sources = {}
    for _, s in ipairs(spec.build.modules["openrouter.core"].sources) do sources[#sources + 1] = s end
    table.sort(sources)
    assert.are.same(ls("src/*.c"), sources)
  end)

  it("installs every Lua module of lua/openrouter/", function()
    local modules = {}
    for name, path in pairs(spec.build.modules) do
      if type(path) == "string" then
        modules[#modules + 1] = path
        local expected = "lua/" .. name:gsub("%.", "/") .. ".lua"
        if name == "openrouter" then expected = "lua/openrouter/init.lua" end
        assert.are.equal(expected, path, "module " .. name)
      end
    end
    table.sort(modules)
    local files = {}
    for _, f in ipairs(ls("lua/openrouter/*.lua")) do files[#files + 1] = f end
    for _, f in ipairs(ls("lua/openrouter/*/*.lua")) do files[#files + 1] = f end
    for _, f in ipairs(ls("lua/openrouter/*/*/*.lua")) do files[#files + 1] = f end
    table.sort(files)
    assert.are.same(files, modules)
  end)
end)
