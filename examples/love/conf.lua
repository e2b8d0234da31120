function love.conf(t)
  t.identity = "openrouter-lua-example"
  t.window.title = "openrouter: streaming in a game loop"
  t.window.width, t.window.height = 800, 300
  t.window.vsync = 1
  t.modules.audio = false   -- nothing to play; also lets it run on machines without sound
  t.modules.sound = false
  t.modules.joystick = false
  t.modules.physics = false
end
