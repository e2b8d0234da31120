-- A LÖVE example: a model's reply streams onto the screen while the game
-- keeps drawing frames. The game's logic is a task (openrouter.async) written
-- like blocking code; love.update drives it with client:poll(0, budget), which
-- never blocks and spends at most `budget` seconds on chunks per frame, so
-- neither a slow model nor a burst of chunks costs a frame.
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

local client, task
local reply, status = "", "connecting..."
local frames, frames_while_streaming = 0, 0
local test_output = os.getenv("OPENROUTER_LOVE_RESULT")  -- the test writes its verdict here
local BUDGET = 0.004  -- seconds of chunk work per frame (a 60 Hz frame is 16.7 ms)

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

-- The game's conversation with the model, as plain sequential code: inside a task the
-- blocking call yields to the game loop instead of freezing it.
local function tell_a_story()
  status = "streaming"
  local res, err = client:chat_completion({
    model = os.getenv("OPENROUTER_MODEL") or "openai/gpt-4o-mini",
    messages = { { role = "user", content = "Tell a one-line story about a game loop." } },
  }, function(chunk) reply = reply .. (openrouter.text(chunk) or "") end)
  finish(res and openrouter.text(res), err)
end

function love.load()
  client = openrouter.new{ app_title = "openrouter-lua LÖVE example" }
  task = openrouter.async(tell_a_story)
end

function love.update()
  frames = frames + 1
  if not task.done then
    frames_while_streaming = frames_while_streaming + 1
    client:poll(0, BUDGET)  -- resumes the task when its request is done
  end
end

function love.draw()
  love.graphics.print(("frame %d  -  %s"):format(frames, status), 10, 10)
  love.graphics.printf(reply, 10, 40, 780)
end

function love.quit()
  if task and not task.done then task:cancel() end
  client:close()
end
