-- client:poll(wait, budget): once `budget` seconds of chunk delivery are spent in a call, the
-- transfers pause (nothing is consumed) and go on at the next call, so a burst of chunks
-- cannot take a game's frame. Counted, never timed: how many chunks each poll call
-- delivered, that more than one call was needed, and that every chunk arrived exactly once,
-- in order, as without a budget (emulator/numbered:<n>: chunk i says "i ").
local openrouter = require("openrouter")
local emulator = require("spec.support.emulator_control")
local requests = require("spec.support.requests")
local socket = require("socket")

local BURST = 20000
local GUARD = 60 -- seconds: a wall-clock guard on every drive loop, not an assertion on speed

describe("poll budget", function()
  local emu = emulator.for_spec()
  local client

  before_each(function()
    client = openrouter.new{ api_key = "sk-or-budget-spec", base_url = emu.url }
  end)

  after_each(function()
    client:close()
  end)

  -- The burst without a budget, as the blocking call delivers it: the reference.
  local function reference()
    local texts = {}
    local res, err = client:chat_completion(requests.chat("emulator/numbered:" .. BURST),
      function(chunk) texts[#texts + 1] = openrouter.text(chunk) or "" end)
    assert.is_nil(err)
    return openrouter.text(res), texts
  end

  -- Streams the burst asynchronously, driven by client:poll(0, budget) alone; `before_poll`
  -- runs before each call, `on_chunk(i)` for every chunk. Returns the per-call counts of
  -- chunks delivered, the chunks' texts and the result.
  local function drive(budget, on_chunk, before_poll)
    local texts, per_call, delivered = {}, {}, 0
    local res, err, done
    client:chat_completion_async(requests.chat("emulator/numbered:" .. BURST), {
      on_chunk = function(chunk)
        texts[#texts + 1] = openrouter.text(chunk) or ""
        delivered = delivered + 1
        if on_chunk then on_chunk(#texts) end
      end,
      on_done = function(r, e) res, err, done = r, e, true end,
    })
    local deadline = socket.gettime() + GUARD
    while not done do
      assert(socket.gettime() < deadline, "the burst did not finish within the guard")
      if before_poll then before_poll() end
      delivered = 0
      client:poll(0, budget)
      if delivered > 0 then per_call[#per_call + 1] = delivered end
    end
    assert.is_nil(err)
    return per_call, texts, res
  end

  local function assert_same(texts, res, want_text, want_texts)
    assert.are.equal(#want_texts, #texts)
    for i = 1, #want_texts do
      if texts[i] ~= want_texts[i] then
        error(("chunk %d: %q, not %q (lost, repeated or out of order)"):format(i, texts[i], want_texts[i]))
      end
    end
    assert.are.equal(want_text, openrouter.text(res))
  end

  it("delivers a 20,000-chunk burst over several poll calls, each chunk once, in order", function()
    local want_text, want_texts = reference()
    assert.are.equal(BURST + 3, #want_texts) -- the opening chunk, the words, finish, usage
    local per_call, texts, res = drive(0.002)
    assert_same(texts, res, want_text, want_texts)
    assert.is_true(#per_call > 1, "one poll call delivered the whole burst")
    for _, n in ipairs(per_call) do assert.is_true(n < #want_texts) end
    -- the words really are 1 .. BURST in order (the reference could be wrong too)
    for i = 1, BURST do assert(texts[i + 1] == i .. " ", "word " .. i) end
  end)

  it("stops a call at the first write after the budget is spent", function()
    -- The first chunk of every call spends the whole budget (it busy-waits past it), so each
    -- call may finish the write it is in (at most one libcurl buffer, 16 KiB) and must pause
    -- the next: a bound on the chunks per call that does not depend on the machine's speed.
    local want_text, want_texts = reference()
    local fresh = false
    local per_call, texts, res = drive(0.002, function()
      if fresh then
        fresh = false
        local until_t = socket.gettime() + 0.003
        repeat until socket.gettime() >= until_t
      end
    end, function() fresh = true end)
    assert_same(texts, res, want_text, want_texts)
    -- the smallest event of the burst, "data: {...\"content\":\"1 \"...}\n\n", is over 100 bytes
    local bound = math.ceil(16384 / 100) + 1
    local biggest = 0
    for _, n in ipairs(per_call) do biggest = math.max(biggest, n) end
    assert.is_true(biggest <= bound, ("a call delivered %d chunks (bound %d)"):format(biggest, bound))
    assert.is_true(#per_call >= #want_texts / bound)
  end)

  it("without a budget a call delivers as much as has arrived", function()
    -- the contrast: with the same first-chunk stall and no budget, some call goes past the bound
    local fresh = false
    local per_call = drive(0, function()
      if fresh then
        fresh = false
        local until_t = socket.gettime() + 0.003
        repeat until socket.gettime() >= until_t
      end
    end, function() fresh = true end)
    local biggest = 0
    for _, n in ipairs(per_call) do biggest = math.max(biggest, n) end
    assert.is_true(biggest > math.ceil(16384 / 100) + 1, "no call went past one buffer: " .. biggest)
  end)

  it("a budget of 0 is no limit; a negative or absurd budget raises bad argument", function()
    local want_text, want_texts = reference()
    local _, texts, res = drive(0)
    assert_same(texts, res, want_text, want_texts)
    assert.has_error(function() client:poll(0, -1) end)
    assert.has_error(function() client:poll(0, 0 / 0) end)
    assert.has_error(function() client:poll(0, 1e9) end)
    local ok, err = pcall(client.poll, client, 0, -1)
    assert.is_false(ok)
    assert.matches("bad argument #3", err)
  end)

  it("a paused transfer still ends by cancel, and the client stays usable", function()
    local got, result = 0, nil
    local req = client:chat_completion_async(requests.chat("emulator/numbered:" .. BURST), {
      on_chunk = function() got = got + 1 end,
      on_done = function(r, e) result = { r, e } end,
    })
    local deadline = socket.gettime() + GUARD
    while got < 100 do
      assert(socket.gettime() < deadline)
      client:poll(0, 0.0001)
    end
    assert.is_true(req:cancel())
    client:poll(0, 0.0001)
    assert.is_not_nil(result)
    assert.is_nil(result[1])
    assert.are.equal("cancelled", result[2].kind)
    local res = assert(client:chat_completion(requests.chat()))
    assert.are.equal("Echo: hi", openrouter.text(res))
  end)
end)
