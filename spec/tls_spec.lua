-- TLS: the emulator behind an HTTPS front (spec/support/tls.lua: a throwaway CA and server
-- certificate made with openssl, socat terminating TLS). Verification is on by default and
-- refuses that server; `ca_file` trusts its CA; `insecure = true` skips verification and is
-- never the default.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")
local tls = require("spec.support.tls")
local spawn = require("spec.support.spawn")
local socket = require("socket")

local KEY = "sk-or-v1-tls-spec-0123456789abcdef"

describe("TLS", function()
  local emu = emulator.for_spec()
  local front

  setup(function()
    front = tls.start(emu)
  end)

  teardown(function()
    if front then front.stop() end
  end)

  local new_client = requests.closed_after_each(function()
    return { api_key = KEY, base_url = front.url, retry_base_delay = 0.01 }
  end)

  local function hi(content)
    return { model = "openai/gpt-4o-mini", messages = { { role = "user", content = content or "Hi" } } }
  end

  -- A streamed chat: the response and the texts of the chunks.
  local function stream(c, content)
    local texts = {}
    local res, err = c:chat_completion(hi(content), function(chunk)
      texts[#texts + 1] = openrouter.text(chunk) or ""
    end)
    return res, err, texts
  end

  -- Polls until every request of `c` is done, with a wall-clock guard.
  local function drain(c)
    local deadline = socket.gettime() + 10
    while c:poll(0.05) > 0 do
      assert(socket.gettime() < deadline, "requests still running after 10 s")
    end
  end

  -- A refusal by certificate verification: a network error saying so, no response.
  local function assert_certificate_refusal(res, err)
    assert.is_nil(res)
    assert.is_true(openrouter.is_error(err))
    assert.are.equal("network", err.kind)
    assert.matches("certificate", err.message)
    assert.is_nil(err.status)
    assert.is_nil(err.partial)
    assert.is_number(err.curl_code)
    assert.is_nil(tostring(err):find(KEY, 1, true))
  end

  describe("by default (system CAs, verification on)", function()
    it("refuses the test server: kind network, a certificate message, one handshake, no retry",
      function()
        -- default retry settings: a certificate that failed once fails again, so no backoff
        local c = new_client{ retry_base_delay = requests.NONE }
        local before = front.connections()
        local t0 = socket.gettime()
        local res, err = c:chat_completion(hi())
        local elapsed = socket.gettime() - t0
        assert_certificate_refusal(res, err)
        assert.matches("SSL certificate problem", err.message)
        assert.are.equal(1, front.connections() - before)
        -- no hang: far below connect_timeout (10 s) and timeout (300 s), even under valgrind
        assert.is_true(elapsed < 8, ("took %.2f s"):format(elapsed))
        -- nothing reached the server behind the front
        assert.are.equal(0, #emu:requests())
        -- the client is still usable, and still refuses
        local res2, err2 = c:get_models()
        assert_certificate_refusal(res2, err2)
        assert.are.equal(2, front.connections() - before)
      end)

    it("refuses it on a streamed call, never calling the callback", function()
      local res, err, texts = stream(new_client())
      assert_certificate_refusal(res, err)
      assert.are.equal(0, #texts)
      assert.are.equal(0, #emu:requests())
    end)

    it("refuses it on an async request: on_done gets the error, on_response is not called",
      function()
        local c = new_client()
        local done, responses = {}, 0
        local req = c:chat_completion_async(hi(), {
          on_response = function() responses = responses + 1 end,
          on_done = function(res, err) done[#done + 1] = { res = res, err = err } end,
        })
        drain(c)
        assert.are.equal(1, #done)
        assert_certificate_refusal(done[1].res, done[1].err)
        assert.are.equal(0, responses)
        assert.is_true(req.done)
        assert.are.equal(done[1].err, req.error)
      end)
  end)

  describe("with ca_file = the test CA", function()
    it("chat_completion works, through the front to the emulator", function()
      local c = new_client{ ca_file = front.ca_file }
      local before = front.connections()
      local res = assert(c:chat_completion(hi("over TLS")))
      assert.are.equal("Echo: over TLS", openrouter.text(res))
      assert.is_true(front.connections() > before)
      local req = emu:last_request()
      assert.are.equal("/api/v1/chat/completions", req.path)
      assert.are.equal("Bearer " .. KEY, req.headers["authorization"])
      -- the Host header names the front the client spoke TLS to
      assert.are.equal("127.0.0.1:" .. front.port, req.headers["host"])
    end)

    it("a streamed chat delivers its chunks and the assembled response", function()
      local res, err, texts = stream(new_client{ ca_file = front.ca_file }, "one two three")
      assert.is_nil(err)
      assert.is_true(#texts > 1)
      assert.are.equal("Echo: one two three", table.concat(texts))
      assert.are.equal("Echo: one two three", openrouter.text(res))
      assert.is_true(emu:last_request().json.stream)
    end)

    it("get_models and get_credits work", function()
      local c = new_client{ ca_file = front.ca_file }
      local models = assert(c:get_models())
      assert.is_true(#models > 0)
      assert.is_string(models[1].id)
      local credits = assert(c:get_credits())
      assert.is_number(credits.total_credits)
    end)

    it("async requests work, several at once, streamed or not", function()
      local c = new_client{ ca_file = front.ca_file }
      local results, statuses, texts = {}, {}, {}
      local function on_done(name)
        return function(res, err) results[name] = { res = res, err = err } end
      end
      local reqs = {
        c:chat_completion_async(hi("first"), { on_done = on_done("chat") }),
        c:chat_completion_async(hi("second stream"), {
          on_response = function(status) statuses[#statuses + 1] = status end,
          on_chunk = function(chunk) texts[#texts + 1] = openrouter.text(chunk) or "" end,
          on_done = on_done("stream"),
        }),
        c:get_models_async{ on_done = on_done("models") },
      }
      drain(c)
      for _, req in ipairs(reqs) do assert.is_true(req.done) end
      assert.is_nil(results.chat.err)
      assert.are.equal("Echo: first", openrouter.text(results.chat.res))
      assert.is_nil(results.stream.err)
      assert.are.same({ 200 }, statuses)
      assert.are.equal("Echo: second stream", table.concat(texts))
      assert.are.equal("Echo: second stream", openrouter.text(results.stream.res))
      assert.is_nil(results.models.err)
      assert.is_true(#results.models.res > 0)
      assert.are.equal(3, #emu:requests())
    end)

    it("keeps the TLS connection alive: three calls, one handshake", function()
      local c = new_client{ ca_file = front.ca_file }
      local before = front.connections()
      assert(c:chat_completion(hi("1")))
      assert(c:get_models())
      assert(c:chat_completion(hi("3")))
      assert.are.equal(1, front.connections() - before)
      assert.are.equal(3, #emu:requests())
    end)

    it("works with the host name localhost too (the certificate's DNS name)", function()
      local c = new_client{ ca_file = front.ca_file,
                            base_url = "https://localhost:" .. front.port .. "/api/v1" }
      local res = assert(c:chat_completion(hi()))
      assert.are.equal("Echo: Hi", openrouter.text(res))
    end)

    it("still checks the host name: a certificate of the same CA for another name is refused",
      function()
        local other = tls.start(emu, { names = "DNS:example.invalid" })
        local ok, res, err = pcall(function()
          return new_client{ ca_file = other.ca_file, base_url = other.url }:chat_completion(hi())
        end)
        other.stop()
        assert.is_true(ok, tostring(res))
        assert.is_nil(res)
        assert.are.equal("network", err.kind)
        assert.matches("certificate", err.message)
        assert.matches("127%.0%.0%.1", err.message)
        assert.are.equal(0, #emu:requests())
      end)
  end)

  describe("with a wrong ca_file", function()
    it("another CA's certificate: refused like the default", function()
      local res, err = new_client{ ca_file = tls.other_ca() }:chat_completion(hi())
      assert_certificate_refusal(res, err)
      assert.are.equal(0, #emu:requests())
    end)

    it("a path that does not exist: kind network (not a raise), the client stays usable",
      function()
        local c = new_client{ ca_file = "/nonexistent/openrouter-spec/ca.pem" }
        local ok, res, err = pcall(c.chat_completion, c, hi())
        assert.is_true(ok, tostring(res))
        assert.is_nil(res)
        assert.are.equal("network", err.kind)
        assert.matches("certificate", err.message)
        assert.is_nil(err.status)
        assert.are.equal(0, #emu:requests())
        -- again, streamed and async: the same error, no crash
        local res2, err2, texts = stream(c)
        assert.is_nil(res2)
        assert.are.equal("network", err2.kind)
        assert.are.equal(0, #texts)
        local res3, err3 = c:get_models_async{}:wait()
        assert.is_nil(res3)
        assert.are.equal("network", err3.kind)
      end)

    it("a file that is not PEM: kind network", function()
      local dir = spawn.tempdir("openrouter-spec-badca")
      local path = dir .. "/ca.pem"
      spawn.write_file(path, "this is not a certificate\n")
      local ok, res, err = pcall(function()
        return new_client{ ca_file = path }:chat_completion(hi())
      end)
      spawn.remove_tree(dir)
      assert.is_true(ok, tostring(res))
      assert.is_nil(res)
      assert.are.equal("network", err.kind)
      assert.are.equal(0, #emu:requests())
    end)

    it("a ca_file or insecure of the wrong type raises at new", function()
      assert.has_error(function() openrouter.new{ ca_file = 42 } end)
      assert.has_error(function() openrouter.new{ insecure = "yes" } end)
    end)
  end)

  describe("with insecure = true", function()
    it("works without the CA: chat, streamed chat, get_models", function()
      local c = new_client{ insecure = true }
      assert.are.equal("Echo: plain", openrouter.text(assert(c:chat_completion(hi("plain")))))
      local res, err, texts = stream(c, "streamed")
      assert.is_nil(err)
      assert.are.equal("Echo: streamed", table.concat(texts))
      assert.are.equal("Echo: streamed", openrouter.text(res))
      assert.is_true(#assert(c:get_models()) > 0)
      assert.are.equal(3, #emu:requests())
    end)

    it("also accepts a certificate for another host name", function()
      local other = tls.start(emu, { names = "DNS:example.invalid" })
      local ok, res, err = pcall(function()
        return new_client{ insecure = true, base_url = other.url }:chat_completion(hi())
      end)
      other.stop()
      assert.is_true(ok, tostring(res))
      assert.is_nil(err)
      assert.are.equal("Echo: Hi", openrouter.text(res))
    end)

    it("is never the default: a client without it, made after, refuses again", function()
      local insecure = new_client{ insecure = true }
      assert(insecure:chat_completion(hi()))
      -- the insecure client is still open, its connection alive
      local res, err = new_client():chat_completion(hi())
      assert_certificate_refusal(res, err)
      local res2, err2 = new_client{ insecure = false }:chat_completion(hi())
      assert_certificate_refusal(res2, err2)
      -- and the insecure one still works
      assert(insecure:chat_completion(hi()))
      assert.are.equal(2, #emu:requests())
    end)
  end)
end)
