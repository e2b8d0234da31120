-- Retries (README, "Reliability"): which failures are retried, how many times, honouring
-- Retry-After, and what is never retried. The emulator's request log is the ground truth:
-- each test counts the requests it recorded for the test's model.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")
local socket = require("socket")

local KEY = "sk-or-v1-retry-spec-0123456789"

describe("retries", function()
  local emu = emulator.for_spec()

  -- A fast backoff by default; tests override what they need.
  local new_client = requests.client_factory(function()
    return { api_key = KEY, base_url = emu.url, retry_base_delay = 0.01 }
  end)
  local chat = requests.chat

  -- How many inference requests the emulator received for `model`.
  local function requests_for(model)
    local n = 0
    for _, entry in ipairs(emu:requests()) do
      if type(entry.json) == "table" and entry.json.model == model then n = n + 1 end
    end
    return n
  end

  local function closed_port()
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    server:close()
    return tonumber(port)
  end

  describe("on a retryable status", function()
    it("succeeds after two 503s with the default max_retries (3 requests)", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/fail:503:2"))
      assert.is_nil(err)
      assert.are.equal("Echo: hi", openrouter.text(res))
      assert.are.equal(3, requests_for("emulator/fail:503:2"))
      client:close()
    end)

    it("does not retry with max_retries = 0 (1 request)", function()
      local client = new_client{ max_retries = 0 }
      local res, err = client:chat_completion(chat("emulator/fail:503:2"))
      assert.is_nil(res)
      assert.are.equal("api", err.kind)
      assert.are.equal(503, err.status)
      assert.are.equal(503, err.code)
      assert.are.equal(1, requests_for("emulator/fail:503:2"))
      client:close()
    end)

    it("stops after max_retries and returns the last error", function()
      local client = new_client{ max_retries = 1 }
      local res, err = client:chat_completion(chat("emulator/fail:503:2"))
      assert.is_nil(res)
      assert.are.equal("api", err.kind)
      assert.are.equal(503, err.status)
      assert.are.equal(2, requests_for("emulator/fail:503:2"))
      local client2 = new_client()
      local res2, err2 = client2:chat_completion(chat("emulator/fail:503:9"))
      assert.is_nil(res2)
      assert.are.equal(503, err2.status)
      assert.are.equal(3, requests_for("emulator/fail:503:9"))
      client:close()
      client2:close()
    end)

    for _, status in ipairs({ 408, 429, 500, 502, 504 }) do
      it(("retries a %d and succeeds (2 requests)"):format(status), function()
        local model = ("emulator/fail:%d:1"):format(status)
        local client = new_client()
        local res, err = client:chat_completion(chat(model))
        assert.is_nil(err)
        assert.are.equal("Echo: hi", openrouter.text(res))
        assert.are.equal(2, requests_for(model))
        client:close()
      end)
    end

    it("retries a proxy's HTML 502 (kind 'http') up to max_retries", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/html-502"))
      assert.is_nil(res)
      assert.are.equal("http", err.kind)
      assert.are.equal(502, err.status)
      assert.are.equal(3, requests_for("emulator/html-502"))
      client:close()
    end)

    it("retries a 500 with a string code up to max_retries", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/string-code"))
      assert.is_nil(res)
      assert.are.equal("server_error", err.code)
      assert.are.equal(3, requests_for("emulator/string-code"))
      client:close()
    end)

    it("retries a streamed call that failed before its first chunk", function()
      local client = new_client()
      local pieces = {}
      local res, err = client:chat_completion(chat("emulator/fail:503:2"), function(chunk)
        pieces[#pieces + 1] = openrouter.text(chunk) or ""
      end)
      assert.is_nil(err)
      assert.are.equal("Echo: hi", openrouter.text(res))
      assert.are.equal("Echo: hi", table.concat(pieces))
      assert.are.equal(3, requests_for("emulator/fail:503:2"))
      client:close()
    end)

    it("backs off between attempts (retry_base_delay)", function()
      local client = new_client{ retry_base_delay = 0.2 }
      local started = socket.gettime()
      local res, err = client:chat_completion(chat("emulator/fail:503:2"))
      local elapsed = socket.gettime() - started
      assert.is_nil(err)
      assert.are.equal("Echo: hi", openrouter.text(res))
      assert.are.equal(3, requests_for("emulator/fail:503:2"))
      -- exponential with equal jitter: at least 0.1 s, then at least 0.2 s
      assert.is_true(elapsed >= 0.28, ("retried after only %.3f s"):format(elapsed))
      client:close()
    end)
  end)

  describe("Retry-After", function()
    it("waits the seconds a 429 asks for, then succeeds", function()
      local client = new_client()
      local started = socket.gettime()
      local res, err = client:chat_completion(chat("emulator/fail:429:1:1"))
      local elapsed = socket.gettime() - started
      assert.is_nil(err)
      assert.are.equal("Echo: hi", openrouter.text(res))
      assert.are.equal(2, requests_for("emulator/fail:429:1:1"))
      assert.is_true(elapsed >= 0.9, ("Retry-After: 1 waited only %.3f s"):format(elapsed))
      client:close()
    end)

    it("understands the HTTP-date form", function()
      local client = new_client()
      local started = socket.gettime()
      local res, err = client:chat_completion(chat("emulator/fail:429:1:date2"))
      local elapsed = socket.gettime() - started
      assert.is_nil(err)
      assert.are.equal("Echo: hi", openrouter.text(res))
      assert.are.equal(2, requests_for("emulator/fail:429:1:date2"))
      -- the date is 2 s ahead in whole seconds: at least 1 s away when it arrives
      assert.is_true(elapsed >= 0.9, ("Retry-After (date) waited only %.3f s"):format(elapsed))
      client:close()
    end)

    it("does not wait a Retry-After longer than retry_max_delay: 1 request, retry_after set",
      function()
        local client = new_client{ retry_max_delay = 1 }
        local res, err = client:chat_completion(chat("emulator/fail:429:1:5"))
        assert.is_nil(res)
        assert.is_true(openrouter.is_error(err))
        assert.are.equal("api", err.kind)
        assert.are.equal(429, err.status)
        assert.are.equal(429, err.code)
        assert.are.equal("Rate limit exceeded", err.message)
        assert.are.equal(5, err.retry_after)
        assert.are.equal(1, requests_for("emulator/fail:429:1:5"))
        client:close()
      end)

    it("honours availability.retry_after when there is no header", function()
      local client = new_client()
      local started = socket.gettime()
      local res, err = client:chat_completion(chat("emulator/capacity"))
      local elapsed = socket.gettime() - started
      assert.is_nil(err)
      assert.are.equal("Echo: hi", openrouter.text(res))
      assert.are.equal(2, requests_for("emulator/capacity"))
      assert.is_true(elapsed >= 0.9, ("availability.retry_after waited only %.3f s"):format(elapsed))
      client:close()
    end)

    it("reports availability.retry_after on the error", function()
      local client = new_client{ max_retries = 0 }
      local res, err = client:chat_completion(chat("emulator/capacity"))
      assert.is_nil(res)
      assert.are.equal(1, err.retry_after)
      assert.are.equal("capacity_exhausted", err.availability.code)
      assert.are.equal("rate_limit_exceeded", err.error_type)
      client:close()
    end)

    it("sets retry_after on the error when retries are exhausted", function()
      local client = new_client{ max_retries = 0 }
      local res, err = client:chat_completion(chat("emulator/fail:429:1:1"))
      assert.is_nil(res)
      assert.are.equal(429, err.status)
      assert.are.equal(1, err.retry_after)
      assert.are.equal(1, requests_for("emulator/fail:429:1:1"))
      client:close()
    end)
  end)

  describe("never retries", function()
    -- fail:<status>:1 fails once, then answers: a retry would turn the error into success.
    for _, status in ipairs({ 400, 401, 402, 403 }) do
      it(("a %d (1 request)"):format(status), function()
        local model = ("emulator/fail:%d:1"):format(status)
        local client = new_client()
        local res, err = client:chat_completion(chat(model))
        assert.is_nil(res)
        assert.are.equal("api", err.kind)
        assert.are.equal(status, err.status)
        assert.are.equal(1, requests_for(model))
        client:close()
      end)
    end

    it("a retryable status whose body says retryable: false (1 request)", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/not-retryable"))
      assert.is_nil(res)
      assert.are.equal(503, err.status)
      assert.is_false(err.availability.retryable)
      assert.are.equal(1, requests_for("emulator/not-retryable"))
      client:close()
    end)

    it("an unknown model, a bad key, missing credits, a moderation block (1 request each)",
      function()
        local client = new_client()
        local _, err = client:chat_completion(chat("missing/x"))
        assert.are.equal(400, err.status)
        assert.are.equal(1, requests_for("missing/x"))
        _, err = client:chat_completion(chat("emulator/moderation"))
        assert.are.equal(403, err.status)
        assert.are.equal(1, requests_for("emulator/moderation"))
        _, err = client:chat_completion(chat("emulator/provider-error"))
        assert.are.equal(400, err.status)
        assert.are.equal(1, requests_for("emulator/provider-error"))
        client:close()

        local bad = new_client{ api_key = "sk-or-invalid-retry-0123456789" }
        _, err = bad:chat_completion(chat("model/for-401"))
        assert.are.equal(401, err.status)
        assert.are.equal(1, requests_for("model/for-401"))
        bad:close()

        local broke = new_client{ api_key = "sk-or-broke-retry-0123456789" }
        _, err = broke:chat_completion(chat("model/for-402"))
        assert.are.equal(402, err.status)
        assert.are.equal(1, requests_for("model/for-402"))
        broke:close()
      end)

    it("a stream that delivered a chunk (emulator/reset-mid-stream: 1 request)", function()
      local client = new_client()
      local pieces = {}
      local res, err = client:chat_completion(chat("emulator/reset-mid-stream"), function(chunk)
        pieces[#pieces + 1] = openrouter.text(chunk) or ""
      end)
      assert.is_nil(res)
      assert.are.equal("network", err.kind)
      assert.are.equal("Echo: hi", table.concat(pieces))
      assert.are.equal("Echo: hi", openrouter.text(err.partial))
      assert.are.equal(1, requests_for("emulator/reset-mid-stream"))
      client:close()
    end)

    it("a request that timed out after it was sent (emulator/stall, timeout = 1: 1 request)",
      function()
        local client = new_client{ timeout = 1 }
        local res, err = client:chat_completion(chat("emulator/stall"))
        assert.is_nil(res)
        assert.are.equal("timeout", err.kind)
        assert.are.equal(1, requests_for("emulator/stall"))
        client:close()
      end)

    it("a stalled stream (stream_idle_timeout: 1 request)", function()
      local client = new_client{ stream_idle_timeout = 0.5 }
      local res, err = client:chat_completion(chat("emulator/stall-mid-stream"), function() end)
      assert.is_nil(res)
      assert.are.equal("timeout", err.kind)
      assert.are.equal("stream_idle_timeout", err.code)
      assert.are.equal(1, requests_for("emulator/stall-mid-stream"))
      client:close()
    end)

    it("a connection reset after response bytes arrived (emulator/reset-mid-body: 1 request)",
      function()
        local client = new_client()
        local res, err = client:chat_completion(chat("emulator/reset-mid-body"))
        assert.is_nil(res)
        assert.are.equal("network", err.kind)
        assert.are.equal(1, requests_for("emulator/reset-mid-body"))
        client:close()
      end)
  end)

  describe("connection failures", function()
    it("retries a connection reset before any response byte (emulator/reset: 3 requests)",
      function()
        local client = new_client()
        local res, err = client:chat_completion(chat("emulator/reset"))
        assert.is_nil(res)
        assert.are.equal("network", err.kind)
        assert.are.equal(3, requests_for("emulator/reset"))
        client:close()
      end)

    it("retries a refused connection and returns kind 'network' (no hang)", function()
      local client = new_client{ base_url = "http://127.0.0.1:" .. closed_port() .. "/api/v1",
                                 timeout = 5, connect_timeout = 2 }
      local res, err = client:chat_completion(chat("openai/gpt-4o-mini"))
      assert.is_nil(res)
      assert.is_true(openrouter.is_error(err))
      assert.are.equal("network", err.kind)
      assert.is_nil(err.status)
      client:close()
    end)
  end)
end)
