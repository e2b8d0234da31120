-- What goes on the wire is the library's, whatever the caller passes (issue 11, defect 5;
-- DESIGN.md "Security invariants"): an id never takes the key to another path. The
-- emulator's request log is the ground truth for "nothing went out".
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")

local KEY = "sk-or-v1-wire-spec-0123456789abcdef"

-- Runs fn; returns its error message, or nil when it did not raise.
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return nil end
  return tostring(err)
end

-- Asserts that the emulator logged no request; else shows the header lines that went out.
local function assert_nothing_went_out(emu)
  local log = emu:requests()
  local lines = {}
  for _, req in ipairs(log) do
    lines[#lines + 1] = req.method .. " " .. req.path
    for _, h in ipairs(req.header_list) do lines[#lines + 1] = "  " .. h[1] .. ": " .. h[2] end
    lines[#lines + 1] = "  body: " .. #req.body .. " bytes"
  end
  assert(#log == 0, "went out:\n" .. table.concat(lines, "\n"))
end

-- Asserts that msg is "bad argument #n to 'fname' (...detail...)" (a position may lead;
-- Lua 5.4 names a function by where it was loaded: 'openrouter.core.new' ends with 'new').
local function assert_bad_argument(msg, fname, n, detail)
  assert(msg, "no error was raised")
  local name = msg:match(("bad argument #%d to '([^']*)' %%("):format(n))
  assert(name and (name == fname or name:sub(-#fname - 1) == "." .. fname),
    ("expected bad argument #%d to '%s' (...), got: %s"):format(n, fname, msg))
  if detail then assert(msg:find(detail, 1, true), ("expected %q in: %s"):format(detail, msg)) end
end

describe("wire", function()
  local emu

  setup(function()
    emu = emulator.start()
  end)

  teardown(function()
    emu:stop()
  end)

  before_each(function()
    emu:reset()
  end)

  describe("ids in paths (defect 5)", function()
    -- The base URL gets two more segments: a path that climbs out of /api/v1/models with
    -- "../.." still lands under /api/v1, where the emulator logs every request (it answers
    -- anything else with a 404 and no log entry).
    local client
    before_each(function()
      client = openrouter.new{ api_key = KEY, base_url = emu.url .. "/deep/er", max_retries = 0 }
    end)
    after_each(function()
      client:close()
    end)

    local DOT_IDS = { "../..", "../credits", "a/..", "./x", "x/.", "../x", "../../../../credits" }

    it("get_model_endpoints refuses '.' and '..' segments; nothing reaches the server", function()
      local sync, async = {}, {}
      for i, id in ipairs(DOT_IDS) do
        -- no tail calls: LuaJIT names the function of a bad argument from its caller's frame
        sync[i] = raised(function() local r = client:get_model_endpoints(id) return r end)
        async[i] = raised(function() local r = client:get_model_endpoints_async(id) return r end)
      end
      assert_nothing_went_out(emu)
      for i in ipairs(DOT_IDS) do
        assert_bad_argument(sync[i], "get_model_endpoints", 1, "model id must look like 'author/slug'")
        assert_bad_argument(async[i], "get_model_endpoints_async", 1, "model id must look like 'author/slug'")
      end
    end)

    it("get_model_endpoints still takes dots inside a segment", function()
      local _, err = client:get_model_endpoints("meta-llama/llama-3.1-8b..instruct")
      local req = assert(emu:last_request())
      assert.are.equal("/api/v1/deep/er/models/meta-llama/llama-3.1-8b..instruct/endpoints", req.path)
      assert.are.equal(404, err and err.status)
    end)

    it("get_generation keeps an id with dots and slashes in the query", function()
      client:get_generation("../../credits", { wait = 0 })
      local req = assert(emu:last_request())
      assert.are.equal("/api/v1/deep/er/generation", req.path)
      assert.are.equal("id=..%2F..%2Fcredits", req.query)
    end)
  end)
end)
