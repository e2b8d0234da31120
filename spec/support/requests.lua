-- Request parameters and client factories shared by the specs.
local openrouter = require("openrouter")

local M = {}

--- In a factory's per-call options: leave this option out.
M.NONE = setmetatable({}, { __tostring = function() return "NONE" end })

--- A one-message user chat (model: openai/gpt-4o-mini, content: "hi" unless given).
function M.chat(model, content)
  return { model = model or "openai/gpt-4o-mini", messages = { { role = "user", content = content or "hi" } } }
end

--- A client factory. `defaults()` returns the options, called for every client so that it
-- can read what setup made later (the emulator's URL); per-call options override them
-- (M.NONE removes one); `on_new(client)`, when given, sees every client made.
function M.client_factory(defaults, on_new)
  return function(opts)
    local o = defaults()
    for k, v in pairs(opts or {}) do
      if v == M.NONE then o[k] = nil else o[k] = v end
    end
    local c = openrouter.new(o)
    if on_new then on_new(c) end
    return c
  end
end

--- A client factory (as client_factory) whose clients are all closed after each test: it
-- registers busted's after_each, so a spec file states its defaults and nothing else.
function M.closed_after_each(defaults)
  local made = {}
  require("busted").after_each(function()
    for i = #made, 1, -1 do
      made[i]:close()
      made[i] = nil
    end
  end)
  return M.client_factory(defaults, function(c) made[#made + 1] = c end)
end

return M
