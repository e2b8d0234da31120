-- Image generation: POST /images.

local util = require("openrouter.emulator.util")
local count_words, new_generation_id = util.count_words, util.new_generation_id
local http = require("openrouter.emulator.http")
local respond_json = http.respond_json
local checks = require("openrouter.emulator.checks")
local authenticate, bad_request = checks.authenticate, checks.bad_request
local json_object_body, refuse_model = checks.json_object_body, checks.refuse_model

local API = {}

-- POST /images (key): ImageGenerationRequest (model, prompt required; n 1-10; an output_format
-- of the enum): ImageGenerationResponse { created, data = n x { b64_json = a 1x1 PNG,
-- media_type = "image/png" }, usage }; 400 otherwise (spec/api_more_spec.lua).
-- POST /images: every image is the same 1x1 PNG (a half-transparent green pixel), whatever
-- output_format asks; media_type says so.
local TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
local IMAGE_FORMATS = { png = true, jpeg = true, webp = true, svg = true }

local function images(conn, req)
  if not authenticate(conn, req) then return end
  local body = json_object_body(conn, req)
  if not body or refuse_model(conn, body.model) then return end
  if type(body.prompt) ~= "string" or body.prompt == "" then return bad_request(conn, "prompt: Required") end
  local n = body.n == nil and 1 or body.n
  if type(n) ~= "number" or n % 1 ~= 0 or n < 1 or n > 10 then
    return bad_request(conn, "n: must be an integer from 1 to 10")
  end
  if body.output_format ~= nil and not IMAGE_FORMATS[body.output_format] then
    return bad_request(conn, "output_format: must be png, jpeg, webp or svg")
  end
  local data = {}
  for i = 1, n do data[i] = { b64_json = TINY_PNG, media_type = "image/png" } end
  local prompt_tokens, completion_tokens = math.max(1, count_words(body.prompt)), 1290 * n
  respond_json(conn, 200, { created = os.time(), data = data, usage = {
    prompt_tokens = prompt_tokens, completion_tokens = completion_tokens,
    total_tokens = prompt_tokens + completion_tokens, cost = 0.04 * n, is_byok = false,
    completion_tokens_details = { image_tokens = completion_tokens, reasoning_tokens = 0 },
  } }, { { "X-Generation-Id", new_generation_id() } })
end
API["/images"] = { method = "POST", handler = images }

return { routes = API }
