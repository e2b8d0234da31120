-- A LÖVE example: a model's reply streams onto the screen while the game
-- keeps drawing frames. love.update drives the request with client:poll(0),
-- which never blocks, so a slow model never costs a frame.
--
--   love examples/love                       (OPENROUTER_API_KEY for the real API,
--                                             or OPENROUTER_BASE_URL for the emulator)
-- LÖVE embeds LuaJIT: the module is the LuaJIT build (make LUA=luajit, or a rock
-- built with luarocks --lua-version=5.1).

-- Find the library: $OPENROUTER_ROOT, else the checkout this example lives in.
local root = os.getenv("OPENROUTER_ROOT") or (love.filesystem.getSource() .. "/../..")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/luajit/?.so;" .. package.cpath

local openrouter = require("openrouter")

local client, request
local reply, status = "", "connecting..."
local frames, frames_while_streaming = 0, 0
local test_output = os.getenv("OPENROUTER_LOVE_RESULT")  -- the test writes its verdict here

local function finish(text, err)
  status = err and ("error: " .. tostring(err)) or "done"
  if test_output then
    local f = assert(io.open(test_output, "w"))
    f:write(("ok=%s\nframes=%d\nframes_while_streaming=%d\ntext=%s\n"):format(
      tostring(err == nil), frames, frames_while_streaming, text or tostring(err)))
    f:close()
    love.event.quit()
  end
end

function love.load()
  client = openrouter.new{ app_title = "openrouter-lua LÖVE example" }
  request = client:chat_completion_async({
    model = os.getenv("OPENROUTER_MODEL") or "openai/gpt-4o-mini",
    messages = { { role = "user", content = "Tell a one-line story about a game loop." } },
  }, {
    coalesce = 1 / 60,  -- at most one text update per frame
    on_response = function(code) status = "streaming (HTTP " .. code .. ")" end,
    on_chunk = function(chunk) reply = reply .. (openrouter.text(chunk) or "") end,
    on_done = function(res, err) finish(res and openrouter.text(res), err) end,
  })
end

function love.update()
  frames = frames + 1
  if not request.done then
    frames_while_streaming = frames_while_streaming + 1
    client:poll(0)
  end
end

function love.draw()
  love.graphics.print(("frame %d  -  %s"):format(frames, status), 10, 10)
  love.graphics.printf(reply, 10, 40, 780)
end

function love.quit()
  if request then request:close() end
  client:close()
end
