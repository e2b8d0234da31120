-- Writes the fixed bodies that nginx serves to the benchmarks (bench/run), byte for byte the
-- same on every run:
--
--   lua5.4 bench/fixtures.lua OUTDIR
--
--   OUTDIR/chat.json     a small non-streamed chat completion (~650 bytes), as OpenRouter sends it
--   OUTDIR/stream.sse    ": OPENROUTER PROCESSING", STREAM_WORDS one-word chat.completion.chunk
--                        events, a finish chunk, a usage chunk (choices: []), data: [DONE]
--   OUTDIR/models.json   GET /models: model entries shaped like OpenRouter's until ~1 MB
--   OUTDIR/expect.lua    what a correct client gets from them (checked by every contender)
--
-- Plain Lua (no cjson): objects are written with their keys in a fixed order.

local outdir = assert(arg[1], "usage: fixtures.lua OUTDIR")

local STREAM_WORDS = 20000
local MODELS_BYTES = 1000000

---------------------------------------------------------------------------------------------
-- a tiny ordered JSON writer: objects are { {key, value}, ... } marked by OBJ
---------------------------------------------------------------------------------------------

local OBJ = {}
local NULL = setmetatable({}, { __tostring = function() return "null" end })
local function obj(pairs_list) return setmetatable(pairs_list, OBJ) end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local map = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\t'] = '\\t' }
    return map[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode(v, out)
  local t = type(v)
  if v == NULL then
    out[#out + 1] = "null"
  elseif t == "string" then
    out[#out + 1] = quote(v)
  elseif t == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      out[#out + 1] = string.format("%d", v)
    else -- as JavaScript writes them: 0.0000123, never 1.23e-05
      out[#out + 1] = (string.format("%.12f", v):gsub("0+$", ""))
    end
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif getmetatable(v) == OBJ then
    out[#out + 1] = "{"
    for i, kv in ipairs(v) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = quote(kv[1])
      out[#out + 1] = ":"
      encode(kv[2], out)
    end
    out[#out + 1] = "}"
  else -- array
    out[#out + 1] = "["
    for i, item in ipairs(v) do
      if i > 1 then out[#out + 1] = "," end
      encode(item, out)
    end
    out[#out + 1] = "]"
  end
  return out
end

local function json(v) return table.concat(encode(v, {})) end

local function write_file(name, data)
  local f = assert(io.open(outdir .. "/" .. name, "wb"))
  f:write(data)
  f:close()
end

---------------------------------------------------------------------------------------------
-- chat.json
---------------------------------------------------------------------------------------------

local GEN_ID = "gen-1763550000-QxVb7TnK2mYpLrA9sW3d"
local CREATED = 1763550000
local MODEL = "openai/gpt-4o-mini"
local FINGERPRINT = "fp_560af6e559"
local REPLY = "Hello! I am doing well, thank you. How can I help you today?"

local function usage(prompt, completion)
  local prompt_cost, completion_cost = prompt * 0.00000015, completion * 0.0000006
  return obj {
    { "prompt_tokens", prompt }, { "completion_tokens", completion },
    { "total_tokens", prompt + completion }, { "cost", prompt_cost + completion_cost },
    { "is_byok", false },
    { "prompt_tokens_details", obj { { "cached_tokens", 0 }, { "audio_tokens", 0 } } },
    { "cost_details", obj { { "upstream_inference_cost", NULL },
                            { "upstream_inference_prompt_cost", prompt_cost },
                            { "upstream_inference_completions_cost", completion_cost } } },
    { "completion_tokens_details", obj { { "reasoning_tokens", 0 }, { "image_tokens", 0 } } },
  }
end

local chat = json(obj {
  { "id", GEN_ID }, { "provider", "OpenAI" }, { "model", MODEL },
  { "object", "chat.completion" }, { "created", CREATED },
  { "choices", { obj {
    { "logprobs", NULL }, { "finish_reason", "stop" }, { "native_finish_reason", "stop" },
    { "index", 0 },
    { "message", obj { { "role", "assistant" }, { "content", REPLY }, { "refusal", NULL },
                       { "reasoning", NULL } } },
  } } },
  { "system_fingerprint", FINGERPRINT },
  { "usage", usage(14, 17) },
})
write_file("chat.json", chat)

---------------------------------------------------------------------------------------------
-- stream.sse
---------------------------------------------------------------------------------------------

local WORDS = {}
for w in ([[The quick brown fox jumps over the lazy dog while a careful engineer measures
  every request twice before trusting a single number from the benchmark harness and writes
  down what the profile says about buffers copies allocations decoding and callbacks]]):gmatch("%S+") do
  WORDS[#WORDS + 1] = w
end

local function chunk(delta, finish)
  return obj {
    { "id", GEN_ID }, { "provider", "OpenAI" }, { "model", MODEL },
    { "object", "chat.completion.chunk" }, { "created", CREATED },
    { "choices", { obj {
      { "index", 0 }, { "delta", delta },
      { "finish_reason", finish or NULL }, { "native_finish_reason", finish or NULL },
      { "logprobs", NULL },
    } } },
    { "system_fingerprint", FINGERPRINT },
  }
end

local events, text = { ": OPENROUTER PROCESSING\n\n" }, {}
for i = 1, STREAM_WORDS do
  local word = (i == 1 and "" or " ") .. WORDS[(i - 1) % #WORDS + 1]
  text[#text + 1] = word
  events[#events + 1] = "data: " .. json(chunk(obj { { "role", "assistant" }, { "content", word } })) .. "\n\n"
end
events[#events + 1] = "data: " .. json(chunk(obj { { "role", "assistant" }, { "content", "" } }, "stop")) .. "\n\n"
events[#events + 1] = "data: " .. json(obj {
  { "id", GEN_ID }, { "provider", "OpenAI" }, { "model", MODEL },
  { "object", "chat.completion.chunk" }, { "created", CREATED }, { "choices", {} },
  { "system_fingerprint", FINGERPRINT }, { "usage", usage(14, STREAM_WORDS) },
}) .. "\n\n"
events[#events + 1] = "data: [DONE]\n\n"
local sse = table.concat(events)
write_file("stream.sse", sse)
local stream_text = table.concat(text)

---------------------------------------------------------------------------------------------
-- models.json
---------------------------------------------------------------------------------------------

local TEXT_PARAMS = { "max_tokens", "temperature", "top_p", "stop", "frequency_penalty",
  "presence_penalty", "seed", "response_format", "structured_outputs", "tools", "tool_choice" }
local REASONING_PARAMS = { "reasoning", "include_reasoning" }
local SAMPLING_PARAMS = { "top_k", "repetition_penalty", "min_p", "logit_bias", "logprobs",
  "top_logprobs" }

local function concat_lists(...)
  local out = {}
  for _, list in ipairs({ ... }) do for _, v in ipairs(list) do out[#out + 1] = v end end
  return out
end

local VENDORS = {
  { "openai", "OpenAI", "GPT", { "text", "image", "file" }, TEXT_PARAMS },
  { "anthropic", "Anthropic", "Claude", { "text", "image", "file" },
    concat_lists(TEXT_PARAMS, REASONING_PARAMS, { "top_k" }) },
  { "google", "Google", "Gemini", { "text", "image", "file", "audio", "video" },
    concat_lists(TEXT_PARAMS, REASONING_PARAMS) },
  { "meta-llama", "Meta", "Llama3", { "text" }, concat_lists(TEXT_PARAMS, SAMPLING_PARAMS) },
  { "mistralai", "Mistral", "Mistral", { "text", "image" }, concat_lists(TEXT_PARAMS, SAMPLING_PARAMS) },
  { "qwen", "Qwen", "Qwen3", { "text" }, concat_lists(TEXT_PARAMS, REASONING_PARAMS, SAMPLING_PARAMS) },
  { "deepseek", "DeepSeek", "DeepSeek", { "text" }, concat_lists(TEXT_PARAMS, REASONING_PARAMS, SAMPLING_PARAMS) },
  { "x-ai", "xAI", "Grok", { "text", "image" }, concat_lists(TEXT_PARAMS, REASONING_PARAMS) },
}
local SIZES = { "mini", "small", "medium", "large", "pro", "flash", "turbo", "nano", "max", "lite" }

local function price(n) return string.format("%.10f", n):gsub("0+$", ""):gsub("%.$", "") end

local function model_entry(i)
  local v = VENDORS[(i - 1) % #VENDORS + 1]
  local vendor, vendor_name, tokenizer, inputs, params = v[1], v[2], v[3], v[4], v[5]
  local size = SIZES[(i * 7 - 1) % #SIZES + 1]
  local version = string.format("%d.%d", 1 + i % 5, i % 10)
  local slug = string.format("%s-%s-%s", tokenizer:lower(), version, size)
  local id = vendor .. "/" .. slug .. (i % 9 == 0 and ":free" or "")
  local free = i % 9 == 0
  local context = ({ 8192, 32768, 131072, 200000, 1048576 })[i % 5 + 1]
  local prompt = free and 0 or (0.00000005 * (1 + i % 40))
  local completion = free and 0 or prompt * 4
  local reasons = params[#params] == "include_reasoning" or vendor == "qwen" or vendor == "deepseek"
  local created = 1700000000 + i * 86400
  local entries = {
    { "id", id }, { "canonical_slug", vendor .. "/" .. slug .. "-2025" .. string.format("%04d", i % 1231) },
    { "hugging_face_id", (vendor == "meta-llama" or vendor == "qwen" or vendor == "mistralai")
        and (vendor .. "/" .. slug) or "" },
    { "name", string.format("%s: %s %s %s%s", vendor_name, tokenizer, version, size,
                            free and " (free)" or "") },
    { "created", created },
    { "description", string.format("%s %s %s is a %s-sized model from %s with a %d-token context "
      .. "window. It is tuned for instruction following, multi-turn chat, coding assistance and "
      .. "tool use, and it keeps latency low for interactive applications. Pricing and limits "
      .. "vary by provider; see the model page for the full list of endpoints, quantizations "
      .. "and data policies. Released %s.", vendor_name, tokenizer, version, size, vendor_name,
      context, os.date("!%Y-%m-%d", created)) },
    { "context_length", context },
    { "architecture", obj {
      { "modality", table.concat(inputs, "+") .. "->text" }, { "input_modalities", inputs },
      { "output_modalities", { "text" } }, { "tokenizer", tokenizer },
      { "instruct_type", vendor == "deepseek" and "deepseek-r1" or NULL } } },
    { "pricing", obj {
      { "prompt", price(prompt) }, { "completion", price(completion) }, { "request", "0" },
      { "image", inputs[2] == "image" and price(prompt * 1000) or "0" }, { "web_search", "0" },
      { "internal_reasoning", "0" }, { "input_cache_read", price(prompt / 10) } } },
    { "top_provider", obj {
      { "context_length", context },
      { "max_completion_tokens", i % 3 == 0 and NULL or math.min(context, 16384 * (1 + i % 4)) },
      { "is_moderated", vendor == "openai" or vendor == "anthropic" } } },
    { "per_request_limits", NULL },
    { "supported_parameters", params },
    { "default_parameters", (vendor == "qwen" or vendor == "deepseek" or vendor == "meta-llama")
        and obj { { "temperature", NULL }, { "top_p", NULL }, { "frequency_penalty", NULL } }
        or NULL },
  }
  if reasons then
    entries[#entries + 1] = { "reasoning", obj {
      { "supported_efforts", vendor == "deepseek" and {} or { "high", "medium", "low" } },
      { "default_effort", vendor == "deepseek" and NULL or "medium" },
      { "default_enabled", vendor ~= "anthropic" }, { "mandatory", vendor == "deepseek" },
      { "supports_max_tokens", vendor ~= "deepseek" } } }
  end
  for _, kv in ipairs {
    { "knowledge_cutoff", i % 4 == 0 and NULL or "2025-01-31" }, { "expiration_date", NULL },
    { "supported_voices", NULL },
    { "links", obj { { "details", "/api/v1/models/" .. vendor .. "/" .. slug .. "/endpoints" } } },
  } do entries[#entries + 1] = kv end
  return json(obj(entries))
end

local entries, size = {}, 0
while size < MODELS_BYTES do
  local e = model_entry(#entries + 1)
  entries[#entries + 1] = e
  size = size + #e + 1
end
local models = '{"data":[' .. table.concat(entries, ",") .. '],"total_count":' .. #entries
  .. ',"links":{"next":null}}'
write_file("models.json", models)

---------------------------------------------------------------------------------------------
-- embeddings.json: POST /embeddings, 100 inputs of 3,072 floats each
---------------------------------------------------------------------------------------------

local EMBEDDINGS, DIMENSIONS = 100, 3072
local vectors = {}
for i = 1, EMBEDDINGS do
  local floats = {}
  for j = 1, DIMENSIONS do floats[j] = string.format("%.8f", math.sin(i * 7919 + j) * 0.08) end
  vectors[i] = '{"object":"embedding","index":' .. (i - 1) .. ',"embedding":['
    .. table.concat(floats, ",") .. "]}"
end
local embeddings = '{"id":"gen-emb-bench","object":"list","data":[' .. table.concat(vectors, ",")
  .. '],"model":"openai/text-embedding-3-large","provider":"OpenAI",'
  .. '"usage":{"prompt_tokens":1000,"total_tokens":1000,"cost":0.00013}}'
write_file("embeddings.json", embeddings)

---------------------------------------------------------------------------------------------
-- expect.lua
---------------------------------------------------------------------------------------------

write_file("expect.lua", string.format([[
-- written by bench/fixtures.lua: what a correct client gets from the fixtures
return {
  chat_bytes = %d,
  chat_text = %q,
  stream_bytes = %d,
  stream_chunks = %d,        -- data events a client delivers, the usage chunk included
  stream_text_bytes = %d,    -- the joined content
  stream_last_word = %q,
  models_bytes = %d,
  models_count = %d,
  embeddings_bytes = %d,
  embeddings_count = %d,
  embeddings_dimensions = %d,
}
]], #chat, REPLY, #sse, STREAM_WORDS + 2, #stream_text, WORDS[(STREAM_WORDS - 1) % #WORDS + 1],
  #models, #entries, #embeddings, EMBEDDINGS, DIMENSIONS))

io.write(string.format("fixtures: chat.json %d bytes, stream.sse %d bytes (%d chunks), "
  .. "models.json %d bytes (%d models)\n", #chat, #sse, STREAM_WORDS + 2, #models, #entries))
