-- The model catalogue: GET /models, /models/user, /models/count, /model/{author}/{slug},
-- /models/{author}/{slug}/endpoints, /embeddings/models, /providers, /endpoints/zdr. Every
-- model, provider and endpoint is one the API's description accepts.

local util = require("openrouter.emulator.util")
local null, EMPTY_ARRAY, json_array = util.null, util.EMPTY_ARRAY, util.json_array
local error_body, parse_query = util.error_body, util.parse_query
local http = require("openrouter.emulator.http")
local respond_json = http.respond_json
local checks = require("openrouter.emulator.checks")
local authenticate, bad_request = checks.authenticate, checks.bad_request

local API, API_PATTERNS = {}, {}

local TEXT_PARAMS = { "max_tokens", "temperature", "top_p", "stop", "frequency_penalty",
  "presence_penalty", "seed", "response_format", "structured_outputs", "tools", "tool_choice" }
local REASONING_PARAMS = { "reasoning", "include_reasoning" }
local SAMPLING_PARAMS = { "top_k", "repetition_penalty", "min_p" }

local function params(...)
  local list = {}
  for _, group in ipairs({ ... }) do
    for _, name in ipairs(group) do list[#list + 1] = name end
  end
  return list
end

local SAMPLING_DEFAULTS = { temperature = null, top_p = null, frequency_penalty = null }

-- One model entry with every field of GET /models; `m` holds what differs between models.
local function model_entry(m)
  local inputs = m.inputs or { "text" }
  return {
    id = m.id, canonical_slug = m.slug, name = m.name, created = m.created,
    description = m.description, context_length = m.context,
    architecture = { modality = table.concat(inputs, "+") .. "->text", input_modalities = inputs,
                     output_modalities = { "text" }, tokenizer = m.tokenizer,
                     instruct_type = m.instruct_type or null },
    pricing = { prompt = m.prompt, completion = m.completion, request = "0", image = m.image or "0",
                web_search = "0", internal_reasoning = "0", input_cache_read = m.cache_read },
    top_provider = { context_length = m.context, max_completion_tokens = m.max_output or null,
                     is_moderated = m.moderated or false },
    per_request_limits = null,
    supported_parameters = m.params,
    default_parameters = m.defaults or null,
    reasoning = m.reasoning, -- absent on models that do not reason, as on OpenRouter
    knowledge_cutoff = m.cutoff or null, expiration_date = null, supported_voices = null,
    links = { details = "/api/v1/models/" .. m.id:gsub(":.*", "") .. "/endpoints" },
  }
end

local MODELS = {
  model_entry { id = "openai/gpt-4o-mini", slug = "openai/gpt-4o-mini-2024-07-18",
    name = "OpenAI: GPT-4o-mini", created = 1721260800, context = 128000, max_output = 16384,
    description = "GPT-4o mini is OpenAI's small, affordable multimodal model.",
    inputs = { "text", "image", "file" }, tokenizer = "GPT", moderated = true,
    prompt = "0.00000015", completion = "0.0000006", image = "0.000217",
    cache_read = "0.000000075", params = params(TEXT_PARAMS), cutoff = "2023-10-01" },
  model_entry { id = "openai/gpt-4o", slug = "openai/gpt-4o-2024-05-13", name = "OpenAI: GPT-4o",
    created = 1715367049, context = 128000, max_output = 16384,
    description = "GPT-4o is OpenAI's flagship multimodal model.",
    inputs = { "text", "image", "file" }, tokenizer = "GPT", moderated = true,
    prompt = "0.0000025", completion = "0.00001", image = "0.003613", cache_read = "0.00000125",
    params = params(TEXT_PARAMS), cutoff = "2023-10-01" },
  model_entry { id = "anthropic/claude-sonnet-4.5", slug = "anthropic/claude-4.5-sonnet-20250929",
    name = "Anthropic: Claude Sonnet 4.5", created = 1759161676, context = 1000000,
    max_output = 64000, description = "Claude Sonnet 4.5 is Anthropic's agentic coding model.",
    inputs = { "text", "image", "file" }, tokenizer = "Claude", moderated = true,
    prompt = "0.000003", completion = "0.000015", image = "0.0048", cache_read = "0.0000003",
    params = params(TEXT_PARAMS, REASONING_PARAMS, { "top_k" }), cutoff = "2025-01-31",
    reasoning = { supported_efforts = { "high", "medium", "low" }, default_effort = "medium",
                  default_enabled = false, mandatory = false, supports_max_tokens = true } },
  model_entry { id = "google/gemini-2.5-flash", slug = "google/gemini-2.5-flash",
    name = "Google: Gemini 2.5 Flash", created = 1750172488, context = 1048576,
    max_output = 65535, description = "Gemini 2.5 Flash is Google's workhorse thinking model.",
    inputs = { "text", "image", "file", "audio" }, tokenizer = "Gemini",
    prompt = "0.0000003", completion = "0.0000025", image = "0.001238",
    cache_read = "0.000000075", params = params(TEXT_PARAMS, REASONING_PARAMS),
    cutoff = "2025-01-31",
    reasoning = { supported_efforts = { "high", "medium", "low" }, default_effort = "medium",
                  default_enabled = true, mandatory = false, supports_max_tokens = true } },
  model_entry { id = "deepseek/deepseek-r1", slug = "deepseek/deepseek-r1",
    name = "DeepSeek: R1", created = 1737381095, context = 163840,
    description = "DeepSeek R1 is an open reasoning model.", tokenizer = "DeepSeek",
    instruct_type = "deepseek-r1", prompt = "0.0000004", completion = "0.000002",
    params = params(TEXT_PARAMS, REASONING_PARAMS, SAMPLING_PARAMS), defaults = SAMPLING_DEFAULTS,
    reasoning = { supported_efforts = EMPTY_ARRAY, default_effort = null,
                  default_enabled = true, mandatory = true, supports_max_tokens = false } },
  model_entry { id = "meta-llama/llama-3.3-70b-instruct:free",
    slug = "meta-llama/llama-3.3-70b-instruct", name = "Meta: Llama 3.3 70B Instruct (free)",
    created = 1733506137, context = 131072, max_output = 4096,
    description = "Llama 3.3 70B Instruct, free variant (rate-limited).", tokenizer = "Llama3",
    instruct_type = "llama3", prompt = "0", completion = "0",
    params = params(TEXT_PARAMS, SAMPLING_PARAMS), defaults = SAMPLING_DEFAULTS },
  model_entry { id = "mistralai/mistral-small-3.2-24b-instruct",
    slug = "mistralai/mistral-small-3.2-24b-instruct-2506",
    name = "Mistral: Mistral Small 3.2 24B", created = 1750443016, context = 131072,
    description = "Mistral Small 3.2 is a 24B instruction-tuned model.",
    inputs = { "text", "image" }, tokenizer = "Mistral", prompt = "0.00000005",
    completion = "0.0000001", params = params(TEXT_PARAMS, SAMPLING_PARAMS) },
  model_entry { id = "qwen/qwen3-coder", slug = "qwen/qwen3-coder-480b-a35b-07-25",
    name = "Qwen: Qwen3 Coder 480B A35B", created = 1753230546, context = 262144,
    max_output = 262144, description = "Qwen3 Coder is a mixture-of-experts code model.",
    tokenizer = "Qwen3", prompt = "0.00000022", completion = "0.00000095",
    params = params(TEXT_PARAMS, SAMPLING_PARAMS), defaults = SAMPLING_DEFAULTS },
}

local function find_model(id)
  for _, m in ipairs(MODELS) do
    if m.id == id then return m end
  end
end

-- The two providers that serve a model, by its author: names of the description's list.
local ENDPOINT_PROVIDERS = {
  openai = { "OpenAI", "Azure" }, anthropic = { "Anthropic", "Amazon Bedrock" },
  google = { "Google AI Studio", "Google" }, deepseek = { "DeepSeek", "DeepInfra" },
  ["meta-llama"] = { "Groq", "Together" }, mistralai = { "Mistral", "DeepInfra" },
  qwen = { "Alibaba", "DeepInfra" },
}

-- GET /models/{author}/{slug}/endpoints: two providers per known model.
local function model_endpoints(conn, author, slug)
  local id = author .. "/" .. slug
  local m = find_model(id)
  if not m then return respond_json(conn, 404, error_body(404, "Model " .. id .. " not found")) end
  local providers = ENDPOINT_PROVIDERS[author] or { "OpenAI", "Azure" }
  local function endpoint(provider, tag, quantization, factor)
    return {
      name = provider .. ": " .. m.name, model_id = m.id, model_name = m.name,
      provider_name = provider, tag = tag, quantization = quantization, status = 0,
      context_length = m.context_length, max_completion_tokens = m.top_provider.max_completion_tokens,
      max_prompt_tokens = null,
      pricing = { prompt = m.pricing.prompt, completion = m.pricing.completion, request = "0", image = "0" },
      supported_parameters = m.supported_parameters, supports_implicit_caching = true,
      supports_tool_choice = { auto = true, none = true, required = true, ["function"] = true },
      supports_voice_cloning = false,
      uptime_last_5m = 100, uptime_last_30m = 99.5 * factor, uptime_last_1d = 99.8,
      latency_last_30m = { p50 = 0.25 * factor, p75 = 0.35, p90 = 0.48, p99 = 0.85 },
      throughput_last_30m = { p50 = 45.2 / factor, p75 = 38.5, p90 = 28.3, p99 = 15.1 },
    }
  end
  respond_json(conn, 200, { data = {
    id = m.id, name = m.name, created = m.created, description = m.description,
    architecture = m.architecture,
    endpoints = { endpoint(providers[1], providers[1]:lower():gsub("%W+", "-"), "fp16", 1),
                  endpoint(providers[2], providers[2]:lower():gsub("%W+", "-") .. "/eu", "fp8", 1.2) },
  } })
end

-- GET /models: ModelsListResponse of the eight chat models of MODELS (spec/api_spec.lua).
API["/models"] = { method = "GET", handler = function(conn)
  respond_json(conn, 200, { data = MODELS, total_count = #MODELS, links = { next = null } })
end }

-- GET /models/{author}/{slug}/endpoints: two providers per known model; 404 otherwise
-- (spec/api_spec.lua).
API_PATTERNS[#API_PATTERNS + 1] = { "^/models/([^/]+)/([^/]+)/endpoints$", "GET",
                                     function(conn, req, author, slug)
  local function decode(x) return (x:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
  model_endpoints(conn, decode(author), decode(slug))
end }

-- Embedding models, shaped as GET /models entries whose output is embeddings.
local EMBEDDING_MODELS = {}
for i, m in ipairs({
  { id = "openai/text-embedding-3-small", name = "OpenAI: Text Embedding 3 Small",
    created = 1706140800, context = 8192, prompt = "0.00000002" },
  { id = "openai/text-embedding-3-large", name = "OpenAI: Text Embedding 3 Large",
    created = 1706140800, context = 8192, prompt = "0.00000013" },
  { id = "qwen/qwen3-embedding-8b", name = "Qwen: Qwen3 Embedding 8B", created = 1749513600,
    context = 32768, prompt = "0.00000001" },
}) do
  local entry = model_entry { id = m.id, slug = m.id, name = m.name, created = m.created,
    description = m.name .. " turns text into vectors.", context = m.context,
    tokenizer = i == 3 and "Qwen3" or "GPT", prompt = m.prompt, completion = "0",
    params = EMPTY_ARRAY }
  entry.architecture.modality = "text->embeddings"
  entry.architecture.output_modalities = { "embeddings" }
  EMBEDDING_MODELS[i] = entry
end

-- Providers, by names the description's ProviderName lists.
local PROVIDERS = {}
for i, p in ipairs({
  { "OpenAI", "openai", "openai.com", "US", { "US" } },
  { "Anthropic", "anthropic", "anthropic.com", "US", { "US" } },
  { "Google", "google-vertex", "cloud.google.com", "US", { "US", "BE", "NL" } },
  { "Mistral", "mistral", "mistral.ai", "FR", { "FR", "SE" } },
  { "DeepSeek", "deepseek", "deepseek.com", "CN", { "CN" } },
  { "Together", "together", "together.ai", "US", { "US" } },
  { "Cohere", "cohere", "cohere.com", "CA", { "US", "CA" } },
  { "Amazon Bedrock", "amazon-bedrock", "aws.amazon.com", "US", { "US", "DE", "JP" } },
}) do
  PROVIDERS[i] = { name = p[1], slug = p[2], privacy_policy_url = "https://" .. p[3] .. "/privacy",
    terms_of_service_url = "https://" .. p[3] .. "/terms", status_page_url = "https://status." .. p[3],
    headquarters = p[4], datacenters = p[5] }
end

-- Endpoints that keep zero data: { model id, provider, tag, quantization }.
local ZDR_ENDPOINTS = {
  { "openai/gpt-4o-mini", "OpenAI", "openai", "unknown" },
  { "anthropic/claude-sonnet-4.5", "Amazon Bedrock", "amazon-bedrock", "unknown" },
  { "google/gemini-2.5-flash", "Google", "google-vertex", "unknown" },
  { "mistralai/mistral-small-3.2-24b-instruct", "Mistral", "mistral", "bf16" },
  { "qwen/qwen3-coder", "Together", "together/fp8", "fp8" },
}

local function zdr_endpoint(e)
  local m = find_model(e[1])
  return {
    name = e[2] .. " | " .. m.id, model_id = m.id, model_name = m.name, provider_name = e[2],
    tag = e[3], quantization = e[4], status = 0, context_length = m.context_length,
    max_completion_tokens = m.top_provider.max_completion_tokens, max_prompt_tokens = null,
    pricing = { prompt = m.pricing.prompt, completion = m.pricing.completion, request = "0",
                image = m.pricing.image },
    supported_parameters = m.supported_parameters, supports_implicit_caching = true,
    supports_tool_choice = { auto = true, none = true, required = true, ["function"] = true },
    supports_voice_cloning = false,
    uptime_last_5m = 100, uptime_last_30m = 99.5, uptime_last_1d = 99.8,
    latency_last_30m = { p50 = 0.25, p75 = 0.35, p90 = 0.48, p99 = 0.85 },
    throughput_last_30m = { p50 = 45.2, p75 = 38.5, p90 = 28.3, p99 = 15.1 },
  }
end

-- A ModelsListResponse of `list`, paged by ?offset= and ?limit= (the whole list when both are
-- absent); nil after answering 400 for a bad one.
local function models_page(conn, req, list, path)
  local query = parse_query(req.query)
  if query.offset ~= nil and not query.offset:match("^%d+$") then
    return bad_request(conn, "offset: must be an integer >= 0")
  end
  local limit = query.limit and tonumber(query.limit:match("^%d+$") or "")
  if query.limit ~= nil and not (limit and limit >= 1 and limit <= 1000) then
    return bad_request(conn, "limit: must be an integer from 1 to 1000")
  end
  local body = { data = json_array(list), total_count = #list, links = { next = null } }
  if query.offset == nil and query.limit == nil then return respond_json(conn, 200, body) end
  local offset, page = tonumber(query.offset or "0"), {}
  limit = limit or 500
  for i = offset + 1, math.min(offset + limit, #list) do page[#page + 1] = list[i] end
  body.data = json_array(page)
  if offset + limit < #list then
    body.links.next = ("/api/v1%s?offset=%d&limit=%d"):format(path, offset + limit, limit)
  end
  respond_json(conn, 200, body)
end

-- GET /models/user (key): ModelsListResponse { data, total_count, links.next } of the models
-- the user's privacy settings allow: the list of GET /models without the :free ones; ?offset=
-- and ?limit= (1-1000) page it (the whole list when both are absent; links.next names the next
-- page), else 400 (spec/api_more_spec.lua).
-- GET /models/user: the models the key's privacy settings allow. The emulator's user keeps
-- providers that may train on prompts out, so the free models (which do) are missing.
local function user_models(conn, req)
  if not authenticate(conn, req) then return end
  local list = {}
  for _, m in ipairs(MODELS) do
    if not m.id:find(":free$") then list[#list + 1] = m end
  end
  models_page(conn, req, list, "/models/user")
end
API["/models/user"] = { method = "GET", handler = user_models }

local OUTPUT_MODALITIES = { text = true, image = true, audio = true, embeddings = true }

-- GET /models/count: { data = { count } } of the models whose output modalities meet
-- ?output_modalities= (a comma list of text, image, audio, embeddings, or all; default text);
-- 400 for another name (spec/api_more_spec.lua).
-- GET /models/count?output_modalities=text,image|all (default text).
local function count_models(conn, req)
  local wanted, all = {}, false
  local value = parse_query(req.query).output_modalities or "text"
  for name in (value .. ","):gmatch("([^,]*),") do
    if name == "all" then
      all = true
    elseif OUTPUT_MODALITIES[name] then
      wanted[name] = true
    else
      return bad_request(conn, "output_modalities: '" .. name .. "' is not one of text, image, "
        .. "audio, embeddings, all")
    end
  end
  local count = 0
  for _, list in ipairs({ MODELS, EMBEDDING_MODELS }) do
    for _, m in ipairs(list) do
      local hit = all
      for _, modality in ipairs(m.architecture.output_modalities) do hit = hit or wanted[modality] end
      if hit then count = count + 1 end
    end
  end
  respond_json(conn, 200, { data = { count = count } })
end
API["/models/count"] = { method = "GET", handler = count_models }

-- GET /model/{author}/{slug}: { data = <the model> } (chat or embedding model); 404 otherwise
-- (spec/api_more_spec.lua).
-- GET /model/{author}/{slug}: one model (chat or embeddings), 404 for an unknown one.
local function one_model(conn, _, author, slug)
  local function decode(x) return (x:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
  local id = decode(author) .. "/" .. decode(slug)
  local m = find_model(id)
  for _, e in ipairs(EMBEDDING_MODELS) do
    if e.id == id then m = e end
  end
  if not m then return respond_json(conn, 404, error_body(404, "Model " .. id .. " not found")) end
  respond_json(conn, 200, { data = m })
end
API_PATTERNS[#API_PATTERNS + 1] = { "^/model/([^/]+)/([^/]+)$", "GET", one_model }

-- GET /embeddings/models: the same shape as /models/user: three embedding models
-- (output_modalities ["embeddings"]), paged the same way (spec/api_more_spec.lua).
API["/embeddings/models"] = { method = "GET", handler = function(conn, req)
  models_page(conn, req, EMBEDDING_MODELS, "/embeddings/models")
end }

-- GET /providers: { data = [...] } name (ProviderName of the description), slug,
-- privacy_policy_url, terms_of_service_url, status_page_url, headquarters, datacenters
-- (spec/api_more_spec.lua).
API["/providers"] = { method = "GET", handler = function(conn)
  respond_json(conn, 200, { data = PROVIDERS })
end }

-- GET /endpoints/zdr: { data = [PublicEndpoint...] } five zero-data-retention endpoints
-- (spec/api_more_spec.lua).
API["/endpoints/zdr"] = { method = "GET", handler = function(conn)
  local data = {}
  for i, e in ipairs(ZDR_ENDPOINTS) do data[i] = zdr_endpoint(e) end
  respond_json(conn, 200, { data = data })
end }

return { routes = API, patterns = API_PATTERNS }
