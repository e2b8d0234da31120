-- What goes on the wire is the library's, whatever the caller passes (issue 11, defects 5 and
-- 9; doc/design.md "Security invariants"): an id never takes the key to another path, caller
-- headers never change how a request is framed, base_url is a prefix of every path, header
-- lines with line breaks never reach libcurl (core.new checks them too, not only the Lua
-- layer), tostring(client) shows no password, and core.new takes every number the Lua layer
-- accepts (issue 11, defect 8: max_response_bytes = 2^40 was refused in C). The emulator's request log is the ground
-- truth for "nothing went out".
local openrouter = require("openrouter")
local core = require("openrouter.core")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")

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
  local emu = emulator.for_spec()

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

  describe("headers that frame the request (defect 9)", function()
    -- A refused header raises in new(); were it accepted, the request made with the client
    -- shows what would have gone out.
    local function try_headers(headers)
      local ok, client = pcall(openrouter.new, { api_key = KEY, base_url = emu.url,
        max_retries = 0, timeout = 3, headers = headers })
      if not ok then return tostring(client) end
      client:chat_completion(requests.chat())
      client:close()
      return nil
    end

    for _, case in ipairs{
      { "Content-Length", "2" }, { "content-length", "61" }, { "CONTENT-LENGTH", "0" },
      { "Transfer-Encoding", "chunked" }, { "transfer-encoding", "identity" },
      { "Host", "evil.example" }, { "HOST", "127.0.0.1" },
    } do
      it(("refuses a caller header %s: %s, and nothing goes out"):format(case[1], case[2]), function()
        local msg = try_headers{ [case[1]] = case[2] }
        assert_nothing_went_out(emu)
        assert_bad_argument(msg, "new", 1, "cannot be set: it frames the request")
      end)
    end

    it("frames a request by its body: one Content-Length, the body's, and one Host", function()
      local c = openrouter.new{ api_key = KEY, base_url = emu.url, headers = { ["X-Extra"] = "1" } }
      assert(c:chat_completion(requests.chat()))
      c:close()
      local req = assert(emu:last_request())
      local lengths, hosts = {}, {}
      for _, h in ipairs(req.header_list) do
        local name = h[1]:lower()
        if name == "content-length" then lengths[#lengths + 1] = h[2] end
        if name == "host" then hosts[#hosts + 1] = h[2] end
        assert.are_not.equal("transfer-encoding", name)
      end
      assert.are.same({ tostring(#req.body) }, lengths)
      assert.are.same({ emu.host .. ":" .. emu.port }, hosts)
    end)
  end)

  describe("base_url (defect 9)", function()
    for _, suffix in ipairs{ "?x=1", "#frag", "/v1?", "#" } do
      it(("refuses a base_url with %q; nothing goes out"):format(suffix), function()
        local ok, client = pcall(openrouter.new, { api_key = KEY, base_url = emu.url .. suffix,
          max_retries = 0, timeout = 3 })
        if ok then
          client:get_credits()
          client:close()
        end
        assert_bad_argument(not ok and tostring(client) or nil, "new", 1, "without '?' or '#'")
        assert.are.same({}, emu:requests())
      end)
    end

    it("hides the credentials of a base_url in tostring(client)", function()
      local c = openrouter.new{ api_key = KEY, base_url = "http://alice:s3cret-pw@127.0.0.1:9/api/v1" }
      local shown = tostring(c)
      assert.is_nil(shown:find("s3cret-pw", 1, true), shown)
      assert.are.equal("openrouter client (http://alice:***@127.0.0.1:9/api/v1)", shown)
      c:close()
      c = openrouter.new{ api_key = KEY, base_url = "https://tok3n-secret@example.com/api/v1" }
      assert.are.equal("openrouter client (https://***@example.com/api/v1)", tostring(c))
      c:close()
      -- an '@' in the path is no user info
      c = openrouter.new{ api_key = KEY, base_url = "https://example.com/u@x/api/v1" }
      assert.are.equal("openrouter client (https://example.com/u@x/api/v1)", tostring(c))
      c:close()
    end)

    it("hides the password in the error for a bad base_url", function()
      local msg = raised(openrouter.new, { base_url = "http://alice:s3cret-pw@127.0.0.1:9/v1?x" })
      assert_bad_argument(msg, "new", 1, "without '?' or '#'")
      assert.is_nil(msg:find("s3cret-pw", 1, true), msg)
    end)
  end)

  describe("option bounds (defect 8)", function()
    it("takes the largest max_response_bytes the Lua check accepts (2^40), in C too", function()
      local c = openrouter.new{ api_key = KEY, base_url = emu.url, max_response_bytes = 2 ^ 40 }
      assert(c:chat_completion(requests.chat()))
      c:close()
      local ok, msg = pcall(openrouter.new, { max_response_bytes = 2 ^ 40 + 1 })
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'new' (option 'max_response_bytes' must be", msg, 1, true)
      c = core.new{ base_url = emu.url, max_response_bytes = 2 ^ 40 }
      c:close()
      ok, msg = pcall(function()
        local cc = core.new{ base_url = emu.url, max_response_bytes = 2 ^ 40 + 1 }
        return cc
      end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[%w.]*new' %(option 'max_response_bytes' must be", msg)
    end)
  end)

  describe("core.new checks what it puts on the wire (defect 9)", function()
    -- core.new is what openrouter.new calls once its Lua checks passed; it is reachable
    -- (require("openrouter.core")), so it checks again.
    local function try_core(cfg)
      cfg.base_url = cfg.base_url or emu.url
      cfg.max_retries = 0
      cfg.timeout = 3
      local ok, client = pcall(function() local c = core.new(cfg) return c end)
      if not ok then return tostring(client) end
      client:get_credits()
      client:close()
      return nil
    end

    it("refuses header lines with CR or LF; nothing goes out", function()
      for _, line in ipairs{ "X-A: 1\r\nX-Injected: yes", "X-A: 1\nX-Injected: yes",
                             "X-A: 1\rX-Injected: yes", "X-A: 1\0X-Injected: yes" } do
        local msg = try_core{ header_lines = { "Authorization: Bearer k", line } }
        assert_nothing_went_out(emu)
        assert_bad_argument(msg, "new", 1, "header line 2")
      end
      assert_nothing_went_out(emu)
    end)

    it("refuses framing headers and lines that are not 'Name: value'; nothing goes out", function()
      for _, line in ipairs{ "Content-Length: 2", "transfer-encoding: chunked", "Host: x",
                             "no colon", ": empty name", "Bad Name: x" } do
        local msg = try_core{ header_lines = { line } }
        assert_nothing_went_out(emu)
        assert_bad_argument(msg, "new", 1, "header line 1")
      end
    end)

    it("refuses a base_url with '?', '#', a space or no http(s) scheme; nothing goes out", function()
      for _, url in ipairs{ emu.url .. "?x", emu.url .. "#x", emu.url .. " x", "ftp://x/api",
                            "http:///x", emu.url .. "\r\nX: y" } do
        assert_bad_argument(try_core{ base_url = url }, "new", 1, "base_url")
      end
      assert.are.same({}, emu:requests())
    end)

    it("still accepts what openrouter.new gives it", function()
      assert.is_nil(try_core{ api_key = KEY, header_lines = { "Authorization: Bearer " .. KEY,
        "X-Title: t", "X-Empty: " } })
      assert.are.equal(1, #emu:requests())
    end)
  end)
end)
