-- The incremental SSE parser (src/sse.c), driven through core._sse_events:
-- a stream split at every byte offset must give the same events.
local core = require("openrouter.core")

local function events_of(pieces)
  local events, comments, rc = core._sse_events(pieces)
  return events, comments, rc
end

-- All two-piece splits of s.
local function each_split(s, fn)
  for i = 0, #s do fn({ s:sub(1, i), s:sub(i + 1) }, i) end
end

local function data_list(events)
  local out = {}
  for i, e in ipairs(events) do out[i] = e.data end
  return out
end

describe("SSE parser", function()
  local stream = table.concat({
    ": OPENROUTER PROCESSING\n",
    "\n",
    'data: {"a":1}\n',
    "\n",
    "data: {\"b\":\"h\195\169llo \240\159\152\128\"}\r\n",
    "\r\n",
    "event: message\n",
    "id: 7\n",
    "data:first\n",
    "data: second\n",
    "\n",
    ": comment\r",
    "data: [DONE]\r",
    "\r",
  })
  local expected = { '{"a":1}', '{"b":"h\195\169llo \240\159\152\128"}', "first\nsecond", "[DONE]" }

  it("parses LF, CRLF and CR line endings, comments, multi-line data", function()
    local events, comments, rc = events_of({ stream })
    assert.are.equal(0, rc)
    assert.are.same(expected, data_list(events))
    assert.are.equal(2, comments)
    assert.are.equal("message", events[3].type)
    assert.are.equal("", events[1].type)
  end)

  it("gives the same events whatever the split point", function()
    each_split(stream, function(pieces, at)
      local events = events_of(pieces)
      assert.are.same(expected, data_list(events), "split at byte " .. at)
    end)
  end)

  it("gives the same events when fed one byte at a time", function()
    local bytes = {}
    for i = 1, #stream do bytes[i] = stream:sub(i, i) end
    assert.are.same(expected, data_list(events_of(bytes)))
  end)

  it("skips a UTF-8 BOM, even split across feeds", function()
    local s = "\239\187\191data: x\n\n"
    each_split(s, function(pieces, at)
      assert.are.same({ "x" }, data_list(events_of(pieces)), "split at " .. at)
    end)
  end)

  it("dispatches a last event that has no blank line after it", function()
    assert.are.same({ "tail" }, data_list(events_of({ "data: tail" })))
    assert.are.same({ "tail" }, data_list(events_of({ "data: tail\n" })))
  end)

  it("ignores blank lines without data and unknown fields", function()
    local events = events_of({ "\n\nretry: 10\nfoo: bar\nnocolon\n\ndata: y\n\n" })
    assert.are.same({ "y" }, data_list(events))
  end)

  it("keeps an empty data field as an empty event", function()
    assert.are.same({ "" }, data_list(events_of({ "data:\n\n" })))
  end)

  it("strips only one space after the colon", function()
    assert.are.same({ "  x" }, data_list(events_of({ "data:   x\n\n" })))
  end)

  it("handles a 5 MB data line", function()
    local big = string.rep("x", 5 * 1024 * 1024)
    local events = events_of({ "data: ", big:sub(1, 100000), big:sub(100001), "\n\n" })
    assert.are.equal(1, #events)
    assert.are.equal(#big, #events[1].data)
  end)

  it("refuses an event larger than its limit", function()
    local _, _, rc = core._sse_events({ "data: " .. string.rep("x", 100) .. "\n\n" }, 50)
    assert.are_not.equal(0, rc)
  end)
end)
