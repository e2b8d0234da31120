-- Vectors and ranking: POST /embeddings and POST /rerank.

local util = require("openrouter.emulator.util")
local PROVIDER, error_body, count_words = util.PROVIDER, util.error_body, util.count_words
local new_generation_id = util.new_generation_id
local http = require("openrouter.emulator.http")
local respond_json = http.respond_json
local checks = require("openrouter.emulator.checks")
local authenticate, bad_request = checks.authenticate, checks.bad_request
local json_object_body, refuse_model = checks.json_object_body, checks.refuse_model

local API = {}

-- Used by spec/api_spec.lua and spec/badinput_spec.lua.
-- POST /embeddings: deterministic vectors; `emulator/embed:<dims>` picks the size (default 8).
local function embeddings(conn, req)
  local key = authenticate(conn, req)
  if not key then return end
  local body = req.json
  if type(body) ~= "table" then return respond_json(conn, 400, error_body(400, "Invalid JSON body")) end
  local input = body.input
  if type(input) == "string" then input = { input } end
  if type(input) ~= "table" or #input == 0 then
    return respond_json(conn, 400, error_body(400, "input must be a string or a non-empty array"))
  end
  local model = type(body.model) == "string" and body.model or "openai/text-embedding-3-small"
  if model:find("^missing/") then return respond_json(conn, 400, error_body(400, model .. " is not a valid model ID")) end
  local dims = tonumber(model:match("^emulator/embed:(%d+)$") or "8")
  local data, tokens = {}, 0
  for i, text in ipairs(input) do
    local vector = {}
    for j = 1, dims do vector[j] = math.sin(i * 1000 + j) * 0.5 end
    data[i] = { object = "embedding", index = i - 1, embedding = vector }
    tokens = tokens + count_words(type(text) == "string" and text or "")
  end
  local id = new_generation_id()
  respond_json(conn, 200, { id = id, object = "list", data = data, model = model, provider = PROVIDER,
    usage = { prompt_tokens = tokens, total_tokens = tokens, cost = tokens * 0.00000002 } },
    { { "X-Generation-Id", id } })
end
API["/embeddings"] = { method = "POST", handler = embeddings }

-- POST /rerank (key): model, query, documents (strings or { text, image }), top_n: the results
-- best first, relevance_score = the share of the query's words the document holds, ties by
-- index; { id, model, provider, results = [{ index, relevance_score, document }], usage }
-- (spec/api_more_spec.lua).
-- POST /rerank: a document's relevance_score is the share of the query's words it holds
-- (case-insensitive); results best first, ties by index; top_n keeps the first n.
local function words_of(text)
  local set, n = {}, 0
  for w in text:lower():gmatch("%w+") do
    if not set[w] then set[w], n = true, n + 1 end
  end
  return set, n
end

local function rerank(conn, req)
  if not authenticate(conn, req) then return end
  local body = json_object_body(conn, req)
  if not body or refuse_model(conn, body.model) then return end
  if type(body.query) ~= "string" or body.query == "" then return bad_request(conn, "query: Required") end
  local docs = body.documents
  if type(docs) ~= "table" or #docs == 0 then
    return bad_request(conn, "documents: must be a non-empty array")
  end
  if body.top_n ~= nil and (type(body.top_n) ~= "number" or body.top_n % 1 ~= 0 or body.top_n < 1) then
    return bad_request(conn, "top_n: must be an integer >= 1")
  end
  local query_words, query_count = words_of(body.query)
  local results, tokens = {}, count_words(body.query)
  for i, doc in ipairs(docs) do
    local document = type(doc) == "string" and { text = doc } or doc
    if type(document) ~= "table" or (document.text ~= nil and type(document.text) ~= "string")
        or (document.image ~= nil and type(document.image) ~= "string") then
      return bad_request(conn, ("documents[%d]: must be a string or { text, image }"):format(i - 1))
    end
    local hits = 0
    for w in pairs(words_of(document.text or "")) do
      if query_words[w] then hits = hits + 1 end
    end
    tokens = tokens + count_words(document.text or "")
    results[i] = { index = i - 1, relevance_score = query_count > 0 and hits / query_count or 0,
                   document = document }
  end
  table.sort(results, function(a, b)
    if a.relevance_score ~= b.relevance_score then return a.relevance_score > b.relevance_score end
    return a.index < b.index
  end)
  for i = #results, (body.top_n or #results) + 1, -1 do results[i] = nil end
  local id = new_generation_id()
  respond_json(conn, 200, { id = id, model = body.model, provider = "Cohere", results = results,
    usage = { search_units = 1, total_tokens = tokens, cost = 0.002 } },
    { { "X-Generation-Id", id } })
end
API["/rerank"] = { method = "POST", handler = rerank }

return { routes = API }
