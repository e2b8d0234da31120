--- Filtering a model list (what `client:get_models()` returns) in Lua.
-- @module openrouter.models

local shared = require("openrouter.shared")

local M = {}

local function argerror(n, msg) shared.argerror("filter_models", n, msg) end

-- Prices are decimal strings in the API ("0.0000025"): compared as numbers,
-- the model tables keep their strings.
local function price(model, key)
  local p = type(model.pricing) == "table" and model.pricing[key]
  return tonumber(p)
end

local function as_list(v)
  if type(v) == "table" then return v end
  return { v }
end

local function has_all(list, wanted)
  if type(list) ~= "table" then return false end
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  for _, w in ipairs(wanted) do
    if not set[w] then return false end
  end
  return true
end

local function modality_matches(model, modality)
  local arch = type(model.architecture) == "table" and model.architecture or {}
  if arch.modality == modality then return true end
  -- "text->text" also matches a model whose inputs include text and outputs are text
  local input, output = modality:match("^(.-)%->(.+)$")
  if not input then return false end
  local function parts(s)
    local out = {}
    for p in s:gmatch("[^+,]+") do out[#out + 1] = p end
    return out
  end
  return has_all(arch.input_modalities, parts(input)) and has_all(arch.output_modalities, parts(output))
end

local CRITERIA = {
  supports = "string or list", modality = "string", max_prompt_price = "number",
  max_completion_price = "number", min_context = "number", free = "boolean", search = "string",
}

--- Keeps the models that meet every criterion given.
-- @tparam table models a list of model tables
-- @tparam table criteria `supports` (a parameter name or a list of them, all required:
--   "tools", "structured_outputs", "reasoning" ...), `modality` ("text->text", or
--   inputs/outputs such as "text+image->text"), `max_prompt_price` and
--   `max_completion_price` (USD per token), `min_context` (tokens), `free` (true: both
--   prices are zero; false: not free), `search` (case-insensitive text in id or name)
-- @treturn table a new list of the same model tables, in the same order
-- @usage local cheap = openrouter.filter_models(models, { supports = "tools", max_prompt_price = 1e-6 })
function M.filter_models(models, criteria)
  shared.checktype("filter_models", 1, models, "table")
  if criteria == nil then criteria = {} end
  shared.checktype("filter_models", 2, criteria, "table")
  for k, v in pairs(criteria) do
    local want = CRITERIA[k]
    if not want then argerror(2, ("unknown criterion '%s'"):format(tostring(k))) end
    local ok = want:find(type(v), 1, true) or (k == "supports" and type(v) == "table")
    if not ok then argerror(2, ("'%s' must be a %s, got %s"):format(k, want, type(v))) end
  end
  local supports = criteria.supports and as_list(criteria.supports)
  local search = criteria.search and criteria.search:lower()
  local out = {}
  for _, m in ipairs(models) do
    local keep = type(m) == "table"
    if keep and supports then keep = has_all(m.supported_parameters, supports) end
    if keep and criteria.modality then keep = modality_matches(m, criteria.modality) end
    if keep and criteria.max_prompt_price then
      local p = price(m, "prompt")
      keep = p ~= nil and p >= 0 and p <= criteria.max_prompt_price
    end
    if keep and criteria.max_completion_price then
      local p = price(m, "completion")
      keep = p ~= nil and p >= 0 and p <= criteria.max_completion_price
    end
    if keep and criteria.min_context then
      keep = type(m.context_length) == "number" and m.context_length >= criteria.min_context
    end
    if keep and criteria.free ~= nil then
      local is_free = price(m, "prompt") == 0 and price(m, "completion") == 0
      keep = is_free == criteria.free
    end
    if keep and search then
      local id = type(m.id) == "string" and m.id:lower() or ""
      local name = type(m.name) == "string" and m.name:lower() or ""
      keep = id:find(search, 1, true) ~= nil or name:find(search, 1, true) ~= nil
    end
    if keep then out[#out + 1] = m end
  end
  return out
end

return M
