-- Proxies: the `proxy` option routes requests through an HTTP proxy (Debian's tinyproxy, see
-- spec/support/proxy.lua), proven by the proxy's own log and by the Via header it adds, which
-- the emulator records; HTTPS goes through it as a CONNECT tunnel (spec/support/tls.lua).
--
-- libcurl honours $no_proxy even for an explicit proxy: run this file without a no_proxy that
-- covers 127.0.0.1.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")
local proxy = require("spec.support.proxy")
local tls = require("spec.support.tls")
local spawn = require("spec.support.spawn")
local socket = require("socket")

local KEY = "sk-or-v1-proxy-spec-0123456789abcdef"
local NONE = requests.NONE -- in new_client / tls_client options: leave this option out

describe("proxy", function()
  local emu = emulator.for_spec()
  local front, px

  setup(function()
    front = tls.start(emu)
    px = proxy.start{ connect_ports = { front.port } }
  end)

  teardown(function()
    if px then px.stop() end
    if front then front.stop() end
  end)

  local new_client = requests.closed_after_each(function()
    return { api_key = KEY, base_url = emu.url, proxy = px.url, retry_base_delay = 0.01 }
  end)

  local function hi(content)
    return { model = "openai/gpt-4o-mini", messages = { { role = "user", content = content or "Hi" } } }
  end

  local function stream(c, content)
    local texts = {}
    local res, err = c:chat_completion(hi(content), function(chunk)
      texts[#texts + 1] = openrouter.text(chunk) or ""
    end)
    return res, err, texts
  end

  local function drain(c)
    local deadline = socket.gettime() + 10
    while c:poll(0.05) > 0 do
      assert(socket.gettime() < deadline, "requests still running after 10 s")
    end
  end

  -- The request lines the proxy logged since `from` (a count from an earlier px.requests()).
  local function proxied_since(from)
    local all, new = px.requests(), {}
    for i = from + 1, #all do new[#new + 1] = all[i] end
    return new
  end

  local function via_proxy(req)
    return (req.headers["via"] or ""):find(proxy.VIA_NAME, 1, true) ~= nil
  end

  local function emu_origin()
    return "http://127.0.0.1:" .. emu.port
  end

  describe("plain HTTP", function()
    it("routes a chat completion through the proxy: in its log, and recorded by the emulator",
      function()
        local before = #px.requests()
        local res = assert(new_client():chat_completion(hi("proxied")))
        assert.are.equal("Echo: proxied", openrouter.text(res))
        assert.are.same({ "POST " .. emu_origin() .. "/api/v1/chat/completions HTTP/1.1" },
          proxied_since(before))
        local log = emu:requests()
        assert.are.equal(1, #log)
        assert.are.equal("/api/v1/chat/completions", log[1].path)
        assert.is_true(via_proxy(log[1]))
        assert.are.equal("Bearer " .. KEY, log[1].headers["authorization"])
        assert.are.equal("proxied", log[1].json.messages[1].content)
      end)

    it("without the option the same request goes direct: nothing in the proxy's log", function()
      local before = #px.requests()
      local res = assert(new_client{ proxy = NONE }:chat_completion(hi("direct")))
      assert.are.equal("Echo: direct", openrouter.text(res))
      assert.are.equal(0, #proxied_since(before))
      assert.is_false(via_proxy(emu:last_request()))
    end)

    it("streams through the proxy", function()
      local before = #px.requests()
      local res, err, texts = stream(new_client(), "one two three")
      assert.is_nil(err)
      assert.is_true(#texts > 1)
      assert.are.equal("Echo: one two three", table.concat(texts))
      assert.are.equal("Echo: one two three", openrouter.text(res))
      assert.are.equal(1, #proxied_since(before))
      local req = emu:last_request()
      assert.is_true(req.json.stream)
      assert.is_true(via_proxy(req))
    end)

    it("sends get_models, query included, through the proxy", function()
      local before = #px.requests()
      local models = assert(new_client():get_models{ supported_parameters = { "tools" } })
      assert.is_true(#models > 0)
      assert.are.same({ "GET " .. emu_origin() .. "/api/v1/models?supported_parameters=tools HTTP/1.1" },
        proxied_since(before))
      assert.is_true(via_proxy(emu:last_request()))
    end)

    it("runs async requests through the proxy, several at once", function()
      local c = new_client()
      local before = #px.requests()
      local results, texts = {}, {}
      local reqs = {
        c:chat_completion_async(hi("a"), { on_done = function(res, err) results.a = { res, err } end }),
        c:chat_completion_async(hi("b"), {
          on_chunk = function(chunk) texts[#texts + 1] = openrouter.text(chunk) or "" end,
          on_done = function(res, err) results.b = { res, err } end,
        }),
        c:get_credits_async{ on_done = function(res, err) results.credits = { res, err } end },
      }
      drain(c)
      for _, req in ipairs(reqs) do assert.is_true(req.done) end
      assert.are.equal("Echo: a", openrouter.text(results.a[1]))
      assert.are.equal("Echo: b", openrouter.text(results.b[1]))
      assert.are.equal("Echo: b", table.concat(texts))
      assert.is_number(results.credits[1].total_credits)
      assert.are.equal(3, #proxied_since(before))
      local log = emu:requests()
      assert.are.equal(3, #log)
      for _, req in ipairs(log) do assert.is_true(via_proxy(req)) end
    end)
  end)

  describe("a proxy that is down", function()
    local function down_url()
      return "http://127.0.0.1:" .. spawn.free_port()
    end

    it("gives kind network naming the proxy, retried a bounded number of times", function()
      local url = down_url()
      local port = url:match(":(%d+)$")
      local t0 = socket.gettime()
      local res, err = new_client{ proxy = url }:chat_completion(hi())
      assert.is_true(socket.gettime() - t0 < 8) -- no hang (connect_timeout is 10 s)
      assert.is_nil(res)
      assert.are.equal("network", err.kind)
      assert.is_nil(err.status)
      -- the connection that failed is the proxy's, not the emulator's
      assert.matches("port " .. port, err.message)
      assert.are.equal(0, #emu:requests())
      assert.is_nil(tostring(err):find(KEY, 1, true))
    end)

    it("gives kind network on a streamed call and on an async request", function()
      local c = new_client{ proxy = down_url() }
      local res, err, texts = stream(c)
      assert.is_nil(res)
      assert.are.equal("network", err.kind)
      assert.are.equal(0, #texts)
      local res2, err2 = c:chat_completion_async(hi(), {}):wait()
      assert.is_nil(res2)
      assert.are.equal("network", err2.kind)
      assert.are.equal(0, #emu:requests())
    end)
  end)

  describe("HTTPS through the proxy (CONNECT)", function()
    local function tls_client(opts)
      local o = { base_url = front.url, ca_file = front.ca_file }
      for k, v in pairs(opts or {}) do o[k] = v end
      return new_client(o)
    end

    it("tunnels to the HTTPS front with ca_file: the proxy logs the CONNECT", function()
      local before = #px.requests()
      local res = assert(tls_client():chat_completion(hi("tunnelled")))
      assert.are.equal("Echo: tunnelled", openrouter.text(res))
      assert.are.same({ "CONNECT 127.0.0.1:" .. front.port .. " HTTP/1.1" }, proxied_since(before))
      local req = emu:last_request()
      assert.are.equal("Bearer " .. KEY, req.headers["authorization"])
      -- inside a tunnel the proxy sees no request headers, so it adds none
      assert.is_false(via_proxy(req))
    end)

    it("streams through the tunnel", function()
      local res, err, texts = stream(tls_client(), "tunnelled stream")
      assert.is_nil(err)
      assert.are.equal("Echo: tunnelled stream", table.concat(texts))
      assert.are.equal("Echo: tunnelled stream", openrouter.text(res))
    end)

    it("tells on_response the server's status and headers, not the proxy's answer to CONNECT",
      function()
        local c = tls_client()
        local seen = {}
        local req = c:chat_completion_async(hi(), {
          on_response = function(status, headers) seen[#seen + 1] = { status, headers } end,
        })
        drain(c)
        assert.is_nil(req.error)
        assert.are.equal(1, #seen)
        assert.are.equal(200, seen[1][1])
        assert.matches("application/json", seen[1][2]["content-type"])
        assert.is_nil(seen[1][2]["proxy-agent"])
      end)

    it("without ca_file the server is still refused: kind network, certificate, no status",
      function()
        local before = front.connections()
        local res, err = tls_client{ ca_file = NONE }:chat_completion(hi())
        assert.is_nil(res)
        assert.are.equal("network", err.kind)
        assert.matches("certificate", err.message)
        assert.are.equal(1, front.connections() - before)
        assert.are.equal(0, #emu:requests())
        -- the proxy's "200 Connection established" is not a response from the server
        assert.is_nil(err.status)
        assert.is_nil(tostring(err):find("HTTP 200", 1, true))
      end)

    it("without ca_file, async: on_done gets the refusal, on_response is never called", function()
      local c = tls_client{ ca_file = NONE }
      local responses, done = {}, {}
      c:chat_completion_async(hi(), {
        on_response = function(status, headers) responses[#responses + 1] = { status, headers } end,
        on_done = function(res, err) done[#done + 1] = { res, err } end,
      })
      drain(c)
      assert.are.equal(1, #done)
      assert.is_nil(done[1][1])
      assert.are.equal("network", done[1][2].kind)
      assert.matches("certificate", done[1][2].message)
      -- no server ever answered: the proxy's CONNECT reply is not the response
      assert.are.equal(0, #responses)
    end)

    it("a CONNECT the proxy refuses (port not allowed) gives kind network", function()
      local other = tls.start(emu) -- a port missing from the proxy's ConnectPort list
      local before = #px.requests()
      local ok, res, err = pcall(function()
        return tls_client{ base_url = other.url, ca_file = other.ca_file }:chat_completion(hi())
      end)
      local handshakes = other.connections()
      other.stop()
      assert.is_true(ok, tostring(res))
      assert.is_nil(res)
      assert.are.equal("network", err.kind)
      assert.matches("CONNECT", err.message)
      assert.matches("403", err.message)
      assert.is_true(#proxied_since(before) >= 1)
      assert.are.equal(0, handshakes)
      assert.are.equal(0, #emu:requests())
    end)
  end)
end)
