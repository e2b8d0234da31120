-- Run-time errors (DESIGN.md "Errors"): every kind ("network", "timeout", "api", "http",
-- "decode") and every error-body shape the emulator serves, blocking and streamed where it
-- applies. Each error is checked for its fields, a one-line tostring, is_error, the API key
-- never leaking, and the client staying usable afterwards.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local socket = require("socket")

local KEY = "sk-or-v1-SECRET-0123456789abcdef"
local INVALID_KEY = "sk-or-invalid-SECRET-0123456789abcdef" -- the emulator answers 401
local BROKE_KEY = "sk-or-broke-SECRET-0123456789abcdef" -- the emulator answers 402
local GEN_ID = "^gen%-%d+%-emu%d+$" -- the emulator's generation ids

describe("errors", function()
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

  -- Retries are retry_spec's business: here every failure is reported after one attempt.
  local function new_client(opts)
    local o = { api_key = KEY, base_url = emu.url, max_retries = 0 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return openrouter.new(o)
  end

  local function chat(model, content)
    return { model = model, messages = { { role = "user", content = content or "hi" } } }
  end

  -- Every string reachable from `v` (keys and values, nested tables, metatables excluded).
  local function strings_in(v, out, seen)
    out, seen = out or {}, seen or {}
    if type(v) == "string" then
      out[#out + 1] = v
    elseif type(v) == "table" and not seen[v] then
      seen[v] = true
      for k, x in pairs(v) do
        strings_in(k, out, seen)
        strings_in(x, out, seen)
      end
    end
    return out
  end

  -- What every error must satisfy, whatever its kind.
  local function check_error(err, key)
    assert.is_true(openrouter.is_error(err))
    assert.are.equal("table", type(err))
    local line = tostring(err)
    assert.are.equal("string", type(line))
    assert.matches("^openrouter ", line)
    assert.is_nil(line:find("\n", 1, true), "tostring(err) spans lines: " .. line)
    assert.is_nil(line:find("\r", 1, true), "tostring(err) holds a CR: " .. line)
    assert.are.equal("string", type(err.message))
    assert.is_true(#err.message > 0)
    assert.is_truthy(line:find(err.message, 1, true), "tostring(err) lacks the message: " .. line)
    key = key or KEY
    assert.is_nil(line:find(key, 1, true), "the API key leaked into tostring(err)")
    for _, s in ipairs(strings_in(err)) do
      assert.is_nil(s:find(key, 1, true), "the API key leaked into a field: " .. s)
    end
  end

  -- The same client answers a normal request after the failure.
  local function assert_recovers(client)
    local res, err = client:chat_completion(chat("openai/gpt-4o-mini", "again"))
    assert.is_nil(err)
    assert.are.equal("Echo: again", openrouter.text(res))
  end

  local function assert_recovers_streamed(client)
    local pieces = {}
    local res, err = client:chat_completion(chat("openai/gpt-4o-mini", "again"), function(chunk)
      pieces[#pieces + 1] = openrouter.text(chunk) or ""
    end)
    assert.is_nil(err)
    assert.are.equal("Echo: again", openrouter.text(res))
    assert.are.equal("Echo: again", table.concat(pieces))
  end

  -- A streamed call that must fail before any event reached the callback.
  local function stream_failing(client, params)
    local calls = 0
    local res, err = client:chat_completion(params, function() calls = calls + 1 end)
    assert.is_nil(res)
    assert.are.equal(0, calls)
    return err
  end

  -- A port nobody listens on: bound by us, then released.
  local function closed_port()
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    server:close()
    return tonumber(port)
  end

  describe("kind 'network'", function()
    it("reports a refused connection, and the client stays usable", function()
      local port = closed_port()
      local client = new_client{ base_url = "http://127.0.0.1:" .. port .. "/api/v1" }
      local res, err = client:chat_completion(chat("openai/gpt-4o-mini"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("network", err.kind)
      assert.is_nil(err.status)
      assert.is_nil(err.code)
      assert.is_nil(err.partial)
      assert.matches("[Cc]onnect", err.message)
      -- the same client fails the same way again (not "busy", not a raise)
      local res2, err2 = client:get_models()
      assert.is_nil(res2)
      assert.are.equal("network", err2.kind)
      client:close()
    end)

    it("reports a refused connection on a streamed call", function()
      local client = new_client{ base_url = "http://127.0.0.1:" .. closed_port() .. "/api/v1" }
      local err = stream_failing(client, chat("openai/gpt-4o-mini"))
      check_error(err)
      assert.are.equal("network", err.kind)
      assert.is_nil(err.status)
      assert.is_nil(err.code)
      assert.is_nil(err.partial)
      client:close()
    end)

    it("reports a connection reset before any response byte (emulator/reset)", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/reset"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("network", err.kind)
      assert.is_nil(err.status)
      assert.is_nil(err.code)
      assert.is_nil(err.generation_id)
      assert_recovers(client)
      client:close()
    end)

    it("reports a connection reset before any response byte on a streamed call", function()
      local client = new_client()
      local err = stream_failing(client, chat("emulator/reset"))
      check_error(err)
      assert.are.equal("network", err.kind)
      assert.is_nil(err.status)
      assert.is_nil(err.code)
      assert.is_nil(err.partial)
      assert_recovers_streamed(client)
      client:close()
    end)

    it("reports a connection reset in the middle of the body (emulator/reset-mid-body)", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/reset-mid-body"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("network", err.kind)
      -- the status line (200) had arrived: status is that HTTP status
      assert.are.equal(200, err.status)
      assert.is_nil(err.code)
      assert.matches(GEN_ID, err.generation_id)
      assert_recovers(client)
      client:close()
    end)
  end)

  describe("kind 'timeout'", function()
    it("ends a request the server never answers after `timeout` (emulator/stall)", function()
      local client = new_client{ timeout = 1 }
      local res, err = client:chat_completion(chat("emulator/stall"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("timeout", err.kind)
      assert.is_nil(err.status)
      assert.is_nil(err.code)
      assert_recovers(client)
      client:close()
    end)

    it("ends a streamed request the server never answers after `timeout`", function()
      local client = new_client{ timeout = 1 }
      local err = stream_failing(client, chat("emulator/stall"))
      check_error(err)
      assert.are.equal("timeout", err.kind)
      assert.is_nil(err.status)
      assert.is_nil(err.partial)
      assert_recovers_streamed(client)
      client:close()
    end)

    it("ends a stalled stream after stream_idle_timeout, keeping the partial text", function()
      local client = new_client{ stream_idle_timeout = 0.5 }
      local pieces = {}
      local res, err = client:chat_completion(chat("emulator/stall-mid-stream"), function(chunk)
        pieces[#pieces + 1] = openrouter.text(chunk) or ""
      end)
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("timeout", err.kind)
      assert.are.equal("stream_idle_timeout", err.code)
      assert.are.equal(200, err.status)
      assert.matches(GEN_ID, err.generation_id)
      assert.are.equal("Echo: ", table.concat(pieces))
      assert.are.equal("table", type(err.partial))
      assert.are.equal("Echo: ", openrouter.text(err.partial))
      assert_recovers_streamed(client)
      client:close()
    end)
  end)

  describe("kind 'api'", function()
    it("reports an unknown model (400)", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("missing/x"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(400, err.status)
      assert.are.equal(400, err.code)
      assert.are.equal("missing/x is not a valid model ID", err.message)
      assert.is_nil(err.metadata)
      assert.is_nil(err.error_type)
      assert.is_nil(err.provider)
      assert.is_nil(err.retry_after)
      assert_recovers(client)
      client:close()
    end)

    it("reports an unknown model (400) on a streamed call, with no partial", function()
      local client = new_client()
      local err = stream_failing(client, chat("missing/x"))
      check_error(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(400, err.status)
      assert.are.equal(400, err.code)
      assert.are.equal("missing/x is not a valid model ID", err.message)
      assert.is_nil(err.partial)
      assert_recovers_streamed(client)
      client:close()
    end)

    it("reports an unknown model on completion too", function()
      local client = new_client()
      local res, err = client:completion{ model = "missing/y", prompt = "Once" }
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(400, err.status)
      assert.are.equal("missing/y is not a valid model ID", err.message)
      client:close()
    end)

    it("never repeats the API key, even when the server echoes it back", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("missing/" .. KEY))
      assert.is_nil(res)
      check_error(err) -- the key in no field, nor in tostring(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(400, err.status)
      assert.matches("is not a valid model ID$", err.message)
      assert_recovers(client)
      client:close()
    end)

    it("reports a bad key (401) without repeating it", function()
      local client = new_client{ api_key = INVALID_KEY }
      local res, err = client:chat_completion(chat("openai/gpt-4o-mini"))
      assert.is_nil(res)
      check_error(err, INVALID_KEY)
      assert.are.equal("api", err.kind)
      assert.are.equal(401, err.status)
      assert.are.equal(401, err.code)
      assert.are.equal("User not found.", err.message)
      local err2 = stream_failing(client, chat("openai/gpt-4o-mini"))
      check_error(err2, INVALID_KEY)
      assert.are.equal(401, err2.status)
      assert.are.equal("User not found.", err2.message)
      -- GET /models needs no key: the same client still works
      local models, merr = client:get_models()
      assert.is_nil(merr)
      assert.are.equal("table", type(models))
      assert.is_true(#models > 0)
      client:close()
    end)

    it("reports missing credits (402) with its metadata", function()
      local client = new_client{ api_key = BROKE_KEY }
      local res, err = client:chat_completion{ model = "openai/gpt-4o-mini", max_tokens = 5000,
        messages = { { role = "user", content = "hi" } } }
      assert.is_nil(res)
      check_error(err, BROKE_KEY)
      assert.are.equal("api", err.kind)
      assert.are.equal(402, err.status)
      assert.are.equal(402, err.code)
      assert.matches("^This request requires more credits, or fewer max_tokens%. "
        .. "You requested up to 5000 tokens", err.message)
      assert.are.equal("table", type(err.metadata))
      assert.are.equal(openrouter.null, err.metadata.provider_name)
      assert.is_nil(err.provider) -- provider_name is JSON null, not a name
      -- the key itself is valid: credits still answer on the same client
      local credits, cerr = client:get_credits()
      assert.is_nil(cerr)
      assert.are.equal(100.5, credits.total_credits)
      client:close()
    end)

    it("reports a moderation block (403) with metadata.reasons", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/moderation", "a violent text"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(403, err.status)
      assert.are.equal(403, err.code)
      assert.are.equal('emulator/moderation requires moderation on OpenAI. '
        .. 'Your input was flagged for "violence".', err.message)
      assert.are.equal("table", type(err.metadata))
      assert.are.same({ "violence" }, err.metadata.reasons)
      assert.are.equal("a violent text", err.metadata.flagged_input)
      assert.are.equal("emulator/moderation", err.metadata.model_slug)
      assert.are.equal("OpenAI", err.provider)
      assert_recovers(client)
      client:close()
    end)

    it("reports a moderation block (403) on a streamed call", function()
      local client = new_client()
      local err = stream_failing(client, chat("emulator/moderation"))
      check_error(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(403, err.status)
      assert.are.equal(403, err.code)
      assert.are.same({ "violence" }, err.metadata.reasons)
      assert.are.equal("OpenAI", err.provider)
      assert.is_nil(err.partial)
      assert_recovers_streamed(client)
      client:close()
    end)

    it("surfaces the provider's own message from metadata.raw, prefixed with the provider", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/provider-error"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(400, err.status)
      assert.are.equal(400, err.code)
      assert.are.equal("[Crucible] Model supports at most 1 image per prompt.", err.message)
      assert.are.equal("Crucible", err.provider)
      assert.are.equal("table", type(err.metadata))
      assert.are.equal("string", type(err.metadata.raw))
      assert.are.equal(false, err.metadata.is_byok)
      assert_recovers(client)
      client:close()
    end)

    it("decodes a body without code: error_type and availability", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/no-code"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(404, err.status)
      assert.is_nil(err.code)
      assert.are.equal("No endpoints for openai/gpt-5.2 match your data policy (zero data "
        .. "retention). Adjust at https://openrouter.ai/settings/privacy.", err.message)
      assert.are.equal("not_found", err.error_type)
      assert.are.equal("table", type(err.availability))
      assert.are.equal("privacy_restricted", err.availability.code)
      assert.are.equal(false, err.availability.retryable)
      assert.are.same({ "openai", "azure" }, err.availability.affected_providers)
      assert.is_nil(err.retry_after)
      assert_recovers(client)
      client:close()
    end)

    it("keeps a string code ('server_error')", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/string-code"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(500, err.status)
      assert.are.equal("server_error", err.code)
      assert.are.equal("Internal Server Error", err.message)
      assert.is_truthy(tostring(err):find("server_error", 1, true))
      assert_recovers(client)
      client:close()
    end)

    it("reports an error body sent with HTTP 200, with the generation id header", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/error-200"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(200, err.status)
      assert.are.equal(400, err.code)
      assert.are.equal("Upstream rejected the request", err.message)
      assert.matches(GEN_ID, err.generation_id)
      assert_recovers(client)
      client:close()
    end)

    it("reports an error body sent with HTTP 200 on a streamed call", function()
      local client = new_client()
      local err = stream_failing(client, chat("emulator/error-200"))
      check_error(err)
      assert.are.equal("api", err.kind)
      assert.are.equal(200, err.status)
      assert.are.equal(400, err.code)
      assert.are.equal("Upstream rejected the request", err.message)
      assert.matches(GEN_ID, err.generation_id)
      assert_recovers_streamed(client)
      client:close()
    end)
  end)

  describe("kind 'http'", function()
    it("reports an HTML 502 from a proxy by its page title", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/html-502"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("http", err.kind)
      assert.are.equal(502, err.status)
      assert.is_nil(err.code)
      assert.are.equal("502 Bad Gateway", err.message)
      assert.is_nil(err.metadata)
      assert_recovers(client)
      client:close()
    end)

    it("reports an HTML 502 on a streamed call", function()
      local client = new_client()
      local err = stream_failing(client, chat("emulator/html-502"))
      check_error(err)
      assert.are.equal("http", err.kind)
      assert.are.equal(502, err.status)
      assert.is_nil(err.code)
      assert.are.equal("502 Bad Gateway", err.message)
      assert.is_nil(err.partial)
      assert_recovers_streamed(client)
      client:close()
    end)
  end)

  describe("kind 'decode'", function()
    it("reports a malformed JSON body", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/malformed"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("decode", err.kind)
      assert.are.equal(200, err.status)
      assert.is_nil(err.code)
      assert.are.equal("gen-x", err.generation_id)
      assert_recovers(client)
      client:close()
    end)

    it("reports a malformed JSON body on a streamed call", function()
      local client = new_client()
      local err = stream_failing(client, chat("emulator/malformed"))
      check_error(err)
      assert.are.equal("decode", err.kind)
      assert.are.equal(200, err.status)
      assert.is_nil(err.code)
      assert.are.equal("gen-x", err.generation_id)
      assert_recovers_streamed(client)
      client:close()
    end)

    it("reports an empty body", function()
      local client = new_client()
      local res, err = client:chat_completion(chat("emulator/empty"))
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("decode", err.kind)
      assert.are.equal(200, err.status)
      assert.is_nil(err.code)
      assert.matches("empty", err.message)
      assert.matches(GEN_ID, err.generation_id)
      assert_recovers(client)
      client:close()
    end)

    it("reports an empty body on completion too", function()
      local client = new_client()
      local res, err = client:completion{ model = "emulator/empty", prompt = "Once" }
      assert.is_nil(res)
      check_error(err)
      assert.are.equal("decode", err.kind)
      assert.are.equal(200, err.status)
      client:close()
    end)
  end)
end)
