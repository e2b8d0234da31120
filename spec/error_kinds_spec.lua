-- Failures named for what they are (issue 11, defects 7 and 8; README "Errors",
-- "Reliability"): a body that does not inflate is a decode failure, not a network one; a
-- process out of file descriptors says so and is not retried; an oversized response header
-- is not "Out of memory"; and hostile numbers where the protocol has integers (a chunk's choice or tool call index, an
-- error code of 2^31, 1e300 or NaN) are range-checked before any cast. An index that is not
-- an integer from 0 to 1e6 makes its item unassembled (the chunk still reaches on_chunk as
-- it came); a code that no integer holds stays a number.
--
-- The casts were undefined behaviour that a normal build survives (x86 gives INT_MIN), so
-- the hostile-number cases need UBSan to fail: build the core as `make check-asan` does with
-- float-cast-overflow added (-fsanitize=address,undefined,float-cast-overflow
-- -fno-sanitize-recover=all) and run this file with the ASan runtime preloaded; the old
-- stream.c and errors.c stop there with "outside the range of representable values". The
-- fuzzers (fuzz/Makefile) name float-cast-overflow too.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")

local KEY = "sk-or-v1-error-kinds-0123456789abcdef"
local LUA = os.getenv("OPENROUTER_EMULATOR_LUA") or "lua5.4"

local is_integer = math.type and function(v) return math.type(v) == "integer" end
  or function(v) return v % 1 == 0 end

describe("error kinds", function()
  local emu = emulator.for_spec()
  local client

  before_each(function()
    client = openrouter.new{ api_key = KEY, base_url = emu.url, retry_base_delay = 0.01 }
  end)

  after_each(function()
    client:close()
  end)

  describe("hostile numbers (defect 7)", function()
    for _, which in ipairs{ "int32", "huge", "nan", "neg", "frac" } do
      it(("ignores a choice and a tool call whose index is %s"):format(which), function()
        local chunks = 0
        local res, err = client:chat_completion(requests.chat("emulator/hostile-index:" .. which),
          function() chunks = chunks + 1 end)
        assert.is_nil(err)
        assert.are.equal("kept", openrouter.text(res))
        assert.are.equal(0, #(res.choices[1].message.tool_calls or {})) -- no call assembled
        assert.are.equal(1, #res.choices)
        assert.are.equal(6, chunks) -- every chunk reaches on_chunk as it came
      end)
    end

    it("keeps an error code of 2^31 as an integer, 1e300 and NaN as numbers", function()
      local expect = {
        int32 = function(code) return code == 2147483648 and is_integer(code) end,
        huge = function(code) return code == 1e300 end,
        nan = function(code) return code ~= code end,
      }
      for _, which in ipairs{ "int32", "huge", "nan" } do
        local check = expect[which]
        for _, stream in ipairs{ false, true } do
          local res, err = client:chat_completion(requests.chat("emulator/hostile-code:" .. which),
            stream and function() end or nil)
          assert.is_nil(res)
          assert.are.equal("api", err.kind)
          assert.are.equal(400, err.status)
          assert.are.equal("number", type(err.code))
          assert.is_true(check(err.code), which .. ": code " .. tostring(err.code))
          assert.matches("hostile code", tostring(err))
        end
      end
    end)
  end)

  describe("errors that point the right way (defect 8)", function()
    it("reports a body that does not inflate as a decode failure, not retried", function()
      for _, stream in ipairs{ false, true } do
        emu:reset()
        local res, err = client:chat_completion(requests.chat("emulator/gzip-corrupt"),
          stream and function() end or nil)
        assert.is_nil(res)
        assert.are.equal("decode", err.kind)
        assert.are.equal(200, err.status)
        assert.are.equal(61, err.curl_code)
        assert.are.equal(1, #emu:requests())
      end
    end)

    it("says a response header was too large, not out of memory; not retried", function()
      local res, err = client:chat_completion(requests.chat("emulator/huge-header:204800"))
      assert.is_nil(res)
      assert.are.equal("decode", err.kind)
      assert.are.equal("header_too_large", err.code)
      assert.are.equal(200, err.status)
      assert.matches("response header too large", err.message, 1, true)
      assert.is_nil(tostring(err):lower():find("out of memory", 1, true))
      assert.are.equal(1, #emu:requests())
      -- a large header under libcurl's limit is fine
      assert.are.equal("Echo: hi", openrouter.text(assert(
        client:chat_completion(requests.chat("emulator/huge-header:90000")))))
    end)

    -- In a child process whose descriptors are all taken: the first attempt cannot open a
    -- socket. The descriptors are given back 0.3 s later, before the earliest retry
    -- (retry_base_delay 1: at 0.5 s or later), so a retry would reach the emulator.
    local CHILD = [[
      local openrouter = require("openrouter")
      local socket = require("socket")
      local c = openrouter.new{ api_key = "sk-or-v1-error-kinds-child", base_url = arg[1], max_retries = 1, retry_base_delay = 1 }
      local params = { model = "openai/gpt-4o-mini", messages = { { role = "user", content = "hi" } } }
      local held = {}
      local function exhaust()
        while true do
          local f = io.open("/dev/null")
          if not f then return end
          held[#held + 1] = f
        end
      end
      local function release()
        for i = #held, 1, -1 do held[i]:close(); held[i] = nil end
      end
      local function report(label, res, err)
        io.write(label, "\t", res and "ok" or tostring(err), "\t", tostring(err and err.kind),
          "\t", tostring(err and err.code), "\n")
      end
      exhaust()
      local res, err = c:chat_completion(params)
      release()
      report("blocking", res, err)
      exhaust()
      local req = c:chat_completion_async(params, {})
      local deadline = socket.gettime() + 0.3
      while socket.gettime() < deadline do c:poll(0.02) end
      release()
      report("async", req:wait())
    ]]

    it("says the process is out of file descriptors, and does not retry", function()
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(CHILD)
      f:close()
      local p = io.popen(("sh -c 'ulimit -n 64 && exec %s %s %s' 2>&1"):format(LUA, script, emu.url))
      local out = p:read("*a")
      p:close()
      os.remove(script)
      local results = {}
      for label, outcome, kind, code in out:gmatch("(%a+)\t([^\t]*)\t([^\t]*)\t([^\n]*)\n") do
        results[label] = { outcome = outcome, kind = kind, code = code }
      end
      for _, label in ipairs{ "blocking", "async" } do
        local r = results[label]
        assert(r, "no " .. label .. " result from the child: " .. out)
        assert.are.equal("network", r.kind, label .. ": " .. r.outcome)
        assert.are.equal("too_many_open_files", r.code, label .. ": " .. r.outcome)
        assert.matches("too many open files", r.outcome, 1, true)
        assert.is_nil(r.outcome:find("Couldn't connect", 1, true))
      end
      -- neither the blocking call nor the async one tried again once descriptors were back
      assert.are.same({}, emu:requests())
    end)
  end)
end)
