-- The API key never reaches the caller through an error, an error chunk or tostring, whatever
-- shape the server echoes it in (issue 11, defect 4): after a NUL byte (a search that stops at
-- NUL misses it), as the name of a JSON field, in streamed text before an error (err.partial),
-- broken by a line break in an HTML title (the snippet joins lines), or cut off at the end of
-- a snippet. Each shape comes from emulator/leak-key:<how>; each is run blocking and async,
-- streamed where it applies, and through the command-line tool.
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")

-- Long and distinctive: found nowhere else, long enough to be cut by a snippet.
local KEY = "sk-or-v1-redaction-5e0c2a9d7b31f84c6a0e2d9b7f3c1a85"
local PIECE = KEY:sub(10, 33) -- past the prefix every key shares: no other text holds it
local LUA = os.getenv("OPENROUTER_EMULATOR_LUA") or "lua5.4"

-- s as a reader sees it: without what a terminal shows as nothing or as a space.
local function seen(s)
  return (s:gsub("[%z\1-\32\127]", ""))
end

-- Whether s shows the key, or the part of it after the common prefix.
local function shows_key(s)
  local v = seen(s)
  return v:find(seen(KEY), 1, true) ~= nil or v:find(PIECE, 1, true) ~= nil
end

-- Every string reachable from v: keys and values of nested tables.
local function strings_in(v, out, seen_tables)
  out, seen_tables = out or {}, seen_tables or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen_tables[v] then
    seen_tables[v] = true
    for k, x in pairs(v) do
      strings_in(k, out, seen_tables)
      strings_in(x, out, seen_tables)
    end
  end
  return out
end

-- The strings of v that show the key (tostring included for an error), escaped for a message.
local function leaks(v)
  local found = {}
  local all = strings_in(v)
  if openrouter.is_error(v) then all[#all + 1] = tostring(v) end
  for _, s in ipairs(all) do
    if shows_key(s) then found[#found + 1] = ("%q"):format(s) end
  end
  return found
end

local function assert_no_key(v, what)
  local found = leaks(v)
  assert.are.same({}, found, what .. " shows the key")
end

describe("key redaction", function()
  local emu = emulator.for_spec{ reset = false }

  local new_client = requests.client_factory(function()
    return { api_key = KEY, base_url = emu.url, max_retries = 0 }
  end)

  -- One chat request blocking or async, streamed when `stream`; returns res, err, the chunks.
  local function run(mode, model, stream, on_chunk)
    local client = new_client()
    local chunks = {}
    local callback
    if stream then
      callback = function(chunk)
        chunks[#chunks + 1] = chunk
        if on_chunk then return on_chunk(chunk, #chunks) end
      end
    end
    local res, err
    if mode == "blocking" then
      res, err = client:chat_completion(requests.chat(model), callback)
    else
      local req = client:chat_completion_async(requests.chat(model), { on_chunk = callback,
        on_done = function(r, e) res, err = r, e end })
      while client:poll(0.05) > 0 do end
      assert.is_true(req.done)
    end
    client:close()
    assert.is_nil(res)
    assert.is_true(openrouter.is_error(err), tostring(err))
    return err, chunks
  end

  for _, mode in ipairs({ "blocking", "async" }) do
    describe(mode, function()
      it("a 400 echoing the key after NUL bytes and as a metadata key name", function()
        local err = run(mode, "emulator/leak-key:nul")
        assert.are.equal("api", err.kind)
        assert.are.equal(400, err.status)
        assert.are.equal("bad\0 Bearer [redacted]", err.message)
        assert.are.equal("pre\0[redacted]", err.metadata.x)
        assert.are.equal("as a key", err.metadata["[redacted]"])
        assert_no_key(err, "err")
      end)

      it("the same 400 to a streamed request", function()
        local err, chunks = run(mode, "emulator/leak-key:nul", true)
        assert.are.same({}, chunks)
        assert.are.equal("api", err.kind)
        assert.are.equal(400, err.status)
        assert.are.equal("bad\0 Bearer [redacted]", err.message)
        assert.are.equal("pre\0[redacted]", err.metadata.x)
        assert.are.equal("as a key", err.metadata["[redacted]"])
        assert_no_key(err, "err")
      end)

      it("a stream's error event echoing it after NUL bytes: err and the error chunk", function()
        local err, chunks = run(mode, "emulator/leak-key:event", true)
        assert.are.equal("api", err.kind)
        assert.are.equal(200, err.status)
        assert.are.equal("pre\0 Bearer [redacted]", err.metadata.raw)
        assert.are.equal("pre\0[redacted]", err.metadata.x)
        assert.are.equal("Echo: hi", openrouter.text(err.partial))
        assert_no_key(err, "err")
        local last = chunks[#chunks]
        assert.are.equal("table", type(last.error), "the error event reaches on_chunk")
        assert.are.equal("bad\0 Bearer [redacted]", last.error.message)
        assert_no_key(chunks, "a chunk")
      end)

      it("streamed text holding the key, then an error event: err.partial", function()
        local err, chunks = run(mode, "emulator/leak-key:text", true)
        assert.are.equal("api", err.kind)
        assert.are.equal(502, err.code)
        -- the text chunks are the model's output, handed over as they came; the partial
        -- is part of the error, and an error never holds the key
        local text = {}
        for i, chunk in ipairs(chunks) do text[i] = openrouter.text(chunk) or "" end
        assert.are.equal("key " .. KEY .. " end", table.concat(text))
        assert.are.equal("key [redacted] end", openrouter.text(err.partial))
        assert_no_key(err, "err")
      end)

      it("streamed text holding the key, then a cancel: err.partial", function()
        local err = run(mode, "emulator/leak-key:text", true, function(chunk)
          if (openrouter.text(chunk) or ""):find(" end$") then return false end
        end)
        assert.are.equal("cancelled", err.kind)
        assert.are.equal("key [redacted] end", openrouter.text(err.partial))
        assert_no_key(err, "err")
      end)

      it("an HTML page whose title breaks the key with a line break", function()
        local err = run(mode, "emulator/leak-key:title")
        assert.are.equal("http", err.kind)
        assert.are.equal(502, err.status)
        assert.are.equal("Bad key [redacted]", err.message)
        assert_no_key(err, "err")
      end)

      it("an HTML page whose title snippet ends inside the key", function()
        local err = run(mode, "emulator/leak-key:cut")
        assert.are.equal("http", err.kind)
        assert.matches("^x+ %[redacted%]%.%.%.$", err.message)
        assert_no_key(err, "err")
      end)
    end)
  end

  describe("the command-line tool", function()
    local function shell_quote(s)
      return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
    end

    -- Runs bin/openrouter chat; returns what it wrote (stdout and stderr) and its status.
    local function cli(model)
      local err_path = os.tmpname()
      local cmd = ("env -u OPENROUTER_MODEL OPENROUTER_BASE_URL=%s OPENROUTER_API_KEY=%s %s"
        .. " bin/openrouter chat --max-retries 0 -m %s hi </dev/null 2>%s; printf '__EXIT__%%d' $?")
        :format(shell_quote(emu.url), shell_quote(KEY), LUA, shell_quote(model),
          shell_quote(err_path))
      local p = assert(io.popen(cmd, "r"))
      local out = p:read("*a")
      p:close()
      local f = assert(io.open(err_path, "rb"))
      local err = f:read("*a")
      f:close()
      os.remove(err_path)
      local stdout, status = out:match("^(.*)__EXIT__(%d+)$")
      return stdout, err, tonumber(status)
    end

    -- chat streams: nul is a 400 before any chunk, event an error event after two chunks
    for _, case in ipairs({ { "nul", 5 }, { "event", 5 }, { "title", 4 }, { "cut", 4 } }) do
      it(("prints no key for leak-key:%s on stderr"):format(case[1]), function()
        local out, err, status = cli("emulator/leak-key:" .. case[1])
        assert.are.equal(case[2], status, err)
        assert.matches("^openrouter: %a+ error: ", err)
        assert.truthy(err:find("[redacted]", 1, true), err)
        assert.is_false(shows_key(err), ("stderr shows the key: %q"):format(err))
        assert.is_false(shows_key(out), ("stdout shows the key: %q"):format(out))
      end)
    end
  end)
end)
