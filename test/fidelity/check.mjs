// make check-fidelity: is the emulator (lua/openrouter/emulator/) faithful to the OpenRouter API?
//
//   node test/fidelity/check.mjs [--lua lua5.4] [--spec PATH] [--only NAME]
//
// Starts the emulator, then
//   1. sends every request of CASES (each route the emulator serves: successes and errors,
//      streamed and not) and validates each response body against the schema that the API's
//      own OpenAPI description (../shared/reference/openrouter-openapi.yaml) gives for that
//      operation, status and Content-Type; an SSE reply is checked event by event against the
//      stream chunk schema. ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1) validates
//      against the description itself, its $refs resolved in place.
//   2. runs the official SDK (@openrouter/sdk, the version bench/sdk pins) against the
//      emulator for every operation both support; an SDK that rejects a response (its zod
//      schemas are stricter than the description in places) is a violation, and so is an
//      error reply that it cannot read as the error class of its status.
// Every violation is printed; the last line counts them. Exits 1 on any violation.
//
// Scenarios that break the API on purpose to test the client (emulator/no-code,
// emulator/string-code, emulator/malformed, ...) are not sent. Routes the description does not
// have (POST /completions, the legacy text completions) are sent but not validated, and
// counted as such. A route the emulator serves that no case covers is a violation: add a case.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { OpenRouter } from "@openrouter/sdk";
import * as SDKErrors from "@openrouter/sdk/models/errors";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const LUA = opt("lua", process.env.LUA || "lua5.4");
const SPEC = opt("spec", process.env.OPENROUTER_OPENAPI || resolve(ROOT, "../shared/reference/openrouter-openapi.yaml"));
const ONLY = opt("only", null);

const KEY = "sk-or-v1-fidelity-0123456789abcdef";
const MGMT = "sk-or-mgmt-fidelity-0123456789";

const violations = [];
const stats = { requests: 0, bodies: 0, events: 0, unvalidated: 0, sdkCalls: 0, operations: new Set() };
function violation(where, what) {
  violations.push(`${where}: ${what}`);
  console.log(`VIOLATION ${where}: ${what}`);
}

// ---- the description, as one JSON Schema document ------------------------------------------

const doc = YAML.parse(readFileSync(SPEC, "utf8"));
const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false, validateFormats: true });
addFormats(ajv);
// OpenAPI's numeric and other formats that JSON Schema has no validator for: annotations here.
const known = new Set(Object.keys(ajv.formats));
(function formats(node) {
  if (Array.isArray(node)) return node.forEach(formats);
  if (node && typeof node === "object") {
    if (typeof node.format === "string" && !known.has(node.format)) {
      known.add(node.format);
      ajv.addFormat(node.format, true);
    }
    Object.values(node).forEach(formats);
  }
})(doc);
// A oneOf with a discriminator mapping picks its branch by the property, as the SDK does: one
// if/then per mapped value (then only that branch's errors are reported, not every branch's),
// and the value must be one of the mapping's (or match one of the unmapped branches).
(function discriminators(node) {
  if (Array.isArray(node)) return node.forEach(discriminators);
  if (!node || typeof node !== "object") return;
  Object.values(node).forEach(discriminators);
  const d = node.discriminator;
  const branches = node.oneOf || node.anyOf;
  if (!d || !d.mapping || !branches) return;
  const prop = d.propertyName;
  const values = Object.keys(d.mapping);
  const mapped = new Set(Object.values(d.mapping));
  const unmapped = branches.filter((b) => !b.$ref || !mapped.has(b.$ref));
  const isMapped = { type: "object", properties: { [prop]: { enum: values } }, required: [prop] };
  node.allOf = [
    ...(node.allOf || []),
    ...values.map((v) => ({
      if: { type: "object", properties: { [prop]: { const: v } }, required: [prop] },
      then: { $ref: d.mapping[v] },
    })),
    unmapped.length ? { if: isMapped, else: { oneOf: unmapped } } : isMapped,
  ];
  delete node.oneOf;
  delete node.anyOf;
  delete node.discriminator;
})(doc);
ajv.addSchema(doc, "openapi");

const pointer = (...parts) => parts.map((p) => encodeURIComponent(String(p).replace(/~/g, "~0").replace(/\//g, "~1"))).join("/");
const validators = new Map();
function validatorFor(ref) {
  if (!validators.has(ref)) validators.set(ref, ajv.compile({ $ref: `openapi#/${ref}` }));
  return validators.get(ref);
}

// The schema pointer of operation `op` ([method, path template]) for a status and media type:
// undefined when the operation is not in the description, null when that answer is not.
function responseSchema(op, status, mediaType) {
  const [method, path] = op;
  const operation = doc.paths[path]?.[method];
  if (!operation) return undefined;
  const responses = operation.responses || {};
  const code = [String(status), `${String(status)[0]}XX`, "default"].find((c) => responses[c]);
  if (!code) return null;
  const content = responses[code].content || {};
  const type = Object.keys(content).find((t) => t === mediaType)
    ?? Object.keys(content).find((t) => t.endsWith("/*") && mediaType.startsWith(t.slice(0, -1)));
  if (!type) return null;
  return pointer("paths", path, method, "responses", code, "content", type, "schema");
}

function check(where, ref, value) {
  stats.bodies++;
  const validate = validatorFor(ref);
  if (validate(value)) return;
  // "must match then schema" only repeats the errors of the branch the discriminator chose
  const errors = validate.errors.filter((e) => e.keyword !== "if");
  for (const e of errors.length ? errors : validate.errors) {
    violation(where, `${e.instancePath || "(body)"} ${e.message}${e.params && Object.keys(e.params).length ? " " + JSON.stringify(e.params) : ""}`);
  }
}

// ---- the emulator ----------------------------------------------------------------------------

function startEmulator() {
  return new Promise((ok, fail) => {
    const child = spawn(LUA, ["spec/support/emulator.lua", "--parent-pid", String(process.pid)], {
      cwd: ROOT, stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.on("error", fail);
    child.on("exit", (code) => fail(new Error(`the emulator exited (${code}) before its URL line`)));
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/OPENROUTER_EMULATOR_URL=(\S+)/);
      if (m) ok({ child, url: m[1] });
    });
  });
}

// The routes the emulator serves, from the source of its modules: API["/x"], ["/x"] = { in an
// API table, and the patterns of API_PATTERNS turned back into templates.
function servedRoutes() {
  const dir = resolve(ROOT, "lua/openrouter/emulator");
  const src = readdirSync(dir).filter((f) => f.endsWith(".lua")).sort()
    .map((f) => readFileSync(resolve(dir, f), "utf8")).join("\n");
  const routes = new Set();
  const table = src.match(/\nlocal API = \{([\s\S]*?)\n\}/);
  for (const m of (table ? table[1] : "").matchAll(/\n {2}\["(\/[^"]+)"\] = \{ method = "([^"]+)"/g)) {
    for (const method of m[2].split(", ")) routes.add(`${method.toLowerCase()} ${m[1]}`);
  }
  for (const m of src.matchAll(/\nAPI\["(\/[^"]+)"\] = \{ method = "([^"]+)"/g)) {
    for (const method of m[2].split(", ")) routes.add(`${method.toLowerCase()} ${m[1]}`);
  }
  for (const m of src.matchAll(/\{ "\^(\/[^"]+)\$", "([^"]+)"/g)) {
    let i = 0;
    const names = ["a", "b", "c", "d"];
    const path = m[1].replace(/\(\[\^\/\]\+\)/g, () => `{${names[i++]}}`);
    for (const method of m[2].split(", ")) routes.add(`${method.toLowerCase()} ${path}`);
  }
  return routes;
}
// "/models/{author}/{slug}/endpoints" and "/models/{a}/{b}/endpoints" name the same route
const shape = (route) => route.replace(/\{[^}]+\}/g, "{}");

// ---- HTTP cases ------------------------------------------------------------------------------

const chat = (model, extra = {}) => ({ model, messages: [{ role: "user", content: "hello there" }], ...extra });
const WAV = Buffer.from("RIFF\x24\x00\x00\x00WAVEfmt ", "latin1").toString("base64");

// { name, op: [method, template], path?, key? (null: none), body?, status, stream?, headers? }
// path defaults to the template; key to KEY. `expect(res, text)` adds checks of its own.
const CASES = [
  // chat: successes
  { name: "chat echo", op: ["post", "/chat/completions"], body: chat("openai/gpt-4o-mini"), status: 200 },
  { name: "chat echo stream", op: ["post", "/chat/completions"], body: chat("openai/gpt-4o-mini", { stream: true }), status: 200, stream: true },
  { name: "chat reasoning", op: ["post", "/chat/completions"], body: chat("emulator/reasoning"), status: 200 },
  { name: "chat reasoning stream", op: ["post", "/chat/completions"], body: chat("emulator/reasoning", { stream: true }), status: 200, stream: true },
  { name: "chat tools", op: ["post", "/chat/completions"], body: chat("emulator/tools"), status: 200 },
  { name: "chat tools stream", op: ["post", "/chat/completions"], body: chat("emulator/tools", { stream: true }), status: 200, stream: true },
  { name: "chat reasoning-tools stream", op: ["post", "/chat/completions"], body: chat("emulator/reasoning-tools", { stream: true }), status: 200, stream: true },
  { name: "chat usage-on-choice stream", op: ["post", "/chat/completions"], body: chat("emulator/usage-on-choice", { stream: true }), status: 200, stream: true },
  { name: "chat keepalive stream", op: ["post", "/chat/completions"], body: chat("emulator/keepalive:2", { stream: true }), status: 200, stream: true },
  { name: "chat awkward stream", op: ["post", "/chat/completions"], body: chat("emulator/awkward", { stream: true }), status: 200, stream: true },
  { name: "chat sse-fields stream", op: ["post", "/chat/completions"], body: chat("emulator/sse-fields", { stream: true }), status: 200, stream: true },
  { name: "chat no-usage", op: ["post", "/chat/completions"], body: chat("emulator/no-usage"), status: 200 },
  { name: "chat mid-stream-error stream", op: ["post", "/chat/completions"], body: chat("emulator/mid-stream-error", { stream: true }), status: 200, stream: true, noDone: true },
  // chat: errors
  { name: "chat no key", op: ["post", "/chat/completions"], key: null, body: chat("openai/gpt-4o-mini"), status: 401 },
  { name: "chat malformed key", op: ["post", "/chat/completions"], key: "k", body: chat("openai/gpt-4o-mini"), status: 401 },
  { name: "chat short key", op: ["post", "/chat/completions"], key: "sk-or-short", body: chat("openai/gpt-4o-mini"), status: 401 },
  { name: "chat foreign key", op: ["post", "/chat/completions"], key: "sk-proj-0123456789abcdef", body: chat("openai/gpt-4o-mini"), status: 401 },
  { name: "chat unknown key", op: ["post", "/chat/completions"], key: "sk-or-invalid-0123456789", body: chat("openai/gpt-4o-mini"), status: 401 },
  { name: "chat no credits", op: ["post", "/chat/completions"], key: "sk-or-broke-0123456789", body: chat("openai/gpt-4o-mini"), status: 402 },
  { name: "chat bad body", op: ["post", "/chat/completions"], body: { model: "openai/gpt-4o-mini" }, status: 400 },
  { name: "chat unknown model", op: ["post", "/chat/completions"], body: chat("missing/model"), status: 400 },
  { name: "chat moderation", op: ["post", "/chat/completions"], body: chat("emulator/moderation"), status: 403 },
  { name: "chat provider error", op: ["post", "/chat/completions"], body: chat("emulator/provider-error"), status: 400 },
  { name: "chat not-retryable", op: ["post", "/chat/completions"], body: chat("emulator/not-retryable"), status: 503 },
  { name: "chat mid-stream-error", op: ["post", "/chat/completions"], body: chat("emulator/mid-stream-error"), status: 502 },
  { name: "chat rate-limited", op: ["post", "/chat/completions"], body: chat("emulator/rate-limited"), status: 429,
    expect(res) {
      for (const h of ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]) {
        if (!/^\d+$/.test(res.headers.get(h) ?? "")) return `header ${h}: ${res.headers.get(h)} is not an integer`;
      }
      if (+res.headers.get("x-ratelimit-reset") < Date.now()) return "x-ratelimit-reset is not epoch milliseconds in the future";
    } },
  ...[408, 413, 422, 429, 500, 502, 503, 524, 529].map((status) => ({
    name: `chat fail ${status}`, op: ["post", "/chat/completions"], body: chat(`emulator/fail:${status}:1`), status,
  })),
  // what a stream keeps (spec/stream_fidelity_spec.lua): each reply streamed and not
  ...["images", "audio-out", "logprobs", "annotations", "reasoning-order", "rich", "cached:12", "structured"]
    .flatMap((m) => [
      { name: `chat ${m}`, op: ["post", "/chat/completions"], body: chat(`emulator/${m}`), status: 200 },
      { name: `chat ${m} stream`, op: ["post", "/chat/completions"], body: { ...chat(`emulator/${m}`), stream: true },
        status: 200, stream: true },
    ]),
  { name: "chat 405", op: ["get", "/chat/completions"], status: 405, undescribed: true },
  // legacy completions: not in the description
  { name: "completions", op: ["post", "/completions"], body: { model: "openai/gpt-4o-mini", prompt: "hi" }, status: 200 },
  { name: "completions stream", op: ["post", "/completions"], body: { model: "openai/gpt-4o-mini", prompt: "hi", stream: true }, status: 200, stream: true },
  // models, credits, key, generation, endpoints, embeddings
  { name: "models", op: ["get", "/models"], key: null, status: 200 },
  { name: "credits", op: ["get", "/credits"], status: 200 },
  { name: "credits no key", op: ["get", "/credits"], key: null, status: 401 },
  { name: "key", op: ["get", "/key"], status: 200 },
  { name: "key management", op: ["get", "/key"], key: MGMT, status: 200 },
  { name: "key malformed", op: ["get", "/key"], key: "sk-or-", status: 401 },
  { name: "generation", op: ["get", "/generation"], path: () => `/generation?id=${encodeURIComponent(state.generation)}`, status: 200 },
  { name: "generation unknown", op: ["get", "/generation"], path: "/generation?id=gen-none", status: 404 },
  { name: "generation no key", op: ["get", "/generation"], key: null, path: "/generation?id=gen-none", status: 401 },
  { name: "endpoints", op: ["get", "/models/{author}/{slug}/endpoints"], path: "/models/openai/gpt-4o-mini/endpoints", status: 200 },
  { name: "endpoints reasoning model", op: ["get", "/models/{author}/{slug}/endpoints"], path: "/models/deepseek/deepseek-r1/endpoints", status: 200 },
  { name: "endpoints unknown", op: ["get", "/models/{author}/{slug}/endpoints"], path: "/models/missing/model/endpoints", status: 404 },
  { name: "embeddings", op: ["post", "/embeddings"], body: { model: "openai/text-embedding-3-small", input: ["a b", "c"] }, status: 200 },
  { name: "embeddings bad input", op: ["post", "/embeddings"], body: { model: "openai/text-embedding-3-small", input: [] }, status: 400 },
  { name: "embeddings no key", op: ["post", "/embeddings"], key: null, body: { input: "a" }, status: 401 },
  // audio
  { name: "speech", op: ["post", "/audio/speech"], body: { model: "openai/gpt-4o-mini-tts", input: "hi", response_format: "mp3" }, status: 200, binary: true },
  { name: "speech bad", op: ["post", "/audio/speech"], body: { input: "hi" }, status: 400 },
  { name: "speech no key", op: ["post", "/audio/speech"], key: null, body: { model: "m/x", input: "hi" }, status: 401 },
  { name: "transcription", op: ["post", "/audio/transcriptions"], body: { model: "openai/whisper-1", input_audio: { data: WAV, format: "wav" } }, status: 200 },
  { name: "transcription verbose", op: ["post", "/audio/transcriptions"], body: { model: "openai/whisper-1", input_audio: { data: WAV, format: "wav" }, response_format: "verbose_json", timestamp_granularities: ["word", "segment"] }, status: 200 },
  { name: "transcription bad", op: ["post", "/audio/transcriptions"], body: { model: "openai/whisper-1" }, status: 400 },
  // key provisioning
  { name: "keys create", op: ["post", "/keys"], key: MGMT, body: { name: "fidelity", limit: 10, limit_reset: "monthly" }, status: 201,
    expect(res, text) { state.hash = JSON.parse(text).data?.hash; } },
  { name: "keys list", op: ["get", "/keys"], key: MGMT, status: 200 },
  { name: "keys list normal key", op: ["get", "/keys"], status: 403, undescribed: "GET /keys describes no 403" },
  { name: "keys create normal key", op: ["post", "/keys"], body: { name: "x" }, status: 403 },
  { name: "keys create bad", op: ["post", "/keys"], key: MGMT, body: { name: "" }, status: 400 },
  { name: "key get", op: ["get", "/keys/{hash}"], key: MGMT, path: () => `/keys/${state.hash}`, status: 200 },
  { name: "key update", op: ["patch", "/keys/{hash}"], key: MGMT, path: () => `/keys/${state.hash}`, body: { disabled: true, limit: 20 }, status: 200 },
  { name: "key update bad", op: ["patch", "/keys/{hash}"], key: MGMT, path: () => `/keys/${state.hash}`, body: { disabled: "yes" }, status: 400 },
  { name: "key get unknown", op: ["get", "/keys/{hash}"], key: MGMT, path: "/keys/0000", status: 404 },
  { name: "key delete", op: ["delete", "/keys/{hash}"], key: MGMT, path: () => `/keys/${state.hash}`, status: 200 },
  { name: "key no key", op: ["get", "/keys/{hash}"], key: null, path: "/keys/0000", status: 401 },
  // routes other helpers add: sent only when the emulator serves them (optional: true)
  { name: "models user", op: ["get", "/models/user"], status: 200, optional: true },
  { name: "models user no key", op: ["get", "/models/user"], key: null, status: 401, optional: true },
  { name: "models count", op: ["get", "/models/count"], key: null, status: 200, optional: true },
  { name: "model", op: ["get", "/model/{author}/{slug}"], path: "/model/openai/gpt-4o-mini", key: null, status: 200, optional: true },
  { name: "providers", op: ["get", "/providers"], key: null, status: 200, optional: true },
  { name: "zdr endpoints", op: ["get", "/endpoints/zdr"], key: null, status: 200, optional: true },
  { name: "embedding models", op: ["get", "/embeddings/models"], key: null, status: 200, optional: true },
  { name: "generation content", op: ["get", "/generation/content"], path: () => `/generation/content?id=${encodeURIComponent(state.generation)}`, status: 200, optional: true },
  { name: "responses", op: ["post", "/responses"], body: { model: "openai/gpt-4o-mini", input: "hello there" }, status: 200, optional: true },
  { name: "responses stream", op: ["post", "/responses"], body: { model: "openai/gpt-4o-mini", input: "hello there", stream: true }, status: 200, stream: true, optional: true },
  { name: "responses no key", op: ["post", "/responses"], key: null, body: { model: "openai/gpt-4o-mini", input: "hi" }, status: 401, optional: true },
  { name: "images", op: ["post", "/images"], body: { model: "google/gemini-2.5-flash-image", prompt: "a red square" }, status: 200, optional: true },
  { name: "images no key", op: ["post", "/images"], key: null, body: { model: "m/x", prompt: "p" }, status: 401, optional: true },
  { name: "rerank", op: ["post", "/rerank"], body: { model: "cohere/rerank-v3.5", query: "red", documents: ["a red car", "a blue sky"] }, status: 200, optional: true },
  { name: "rerank no key", op: ["post", "/rerank"], key: null, body: { model: "cohere/rerank-v3.5", query: "q", documents: ["d"] }, status: 401, optional: true },
  { name: "auth keys bad code", op: ["post", "/auth/keys"], key: null, body: { code: "no-such-code", code_verifier: "x".repeat(43), code_challenge_method: "S256" }, status: 403, optional: true, statuses: [400, 403] },
];

const state = { generation: null, hash: null };

// Splits an SSE body into events: { data, comment } with data lines joined by "\n".
function sseEvents(text) {
  const events = [];
  for (const block of text.replace(/\r\n?/g, "\n").split(/\n\n+/)) {
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length) events.push(data.join("\n"));
  }
  return events;
}

async function send(url, c) {
  const path = typeof c.path === "function" ? c.path() : (c.path ?? c.op[1]);
  const headers = {};
  const key = c.key === undefined ? KEY : c.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (c.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(url + path, {
    method: c.op[0].toUpperCase(), headers, body: c.body === undefined ? undefined : JSON.stringify(c.body),
  });
  stats.requests++;
  return res;
}

async function runCase(url, served, c) {
  const where = `${c.op[0].toUpperCase()} ${c.op[1]} [${c.name}]`;
  if (c.optional && !served.has(shape(`${c.op[0]} ${c.op[1]}`))) return "skipped";
  stats.operations.add(`${c.op[0]} ${c.op[1]}`);
  const res = await send(url, c);
  const type = (res.headers.get("content-type") || "").split(";")[0].trim();
  const text = c.binary && res.ok ? "" : await res.text();
  if (c.binary && res.ok) await res.arrayBuffer();
  const statuses = c.statuses || [c.status];
  if (!statuses.includes(res.status)) {
    violation(where, `status ${res.status}, expected ${statuses.join(" or ")}: ${text.slice(0, 200)}`);
    return;
  }
  if (c.expect) {
    const problem = c.expect(res, text);
    if (problem) violation(where, problem);
  }
  if (c.name === "chat echo") state.generation = JSON.parse(text).id;
  const ref = responseSchema(c.op, res.status, type);
  if (ref === undefined || c.undescribed) {
    stats.unvalidated++;
    return;
  }
  if (ref === null) return violation(where, `the description has no ${res.status} ${type} answer for this operation`);
  if (c.binary && res.ok) return;
  if (type === "text/event-stream") {
    const events = sseEvents(text);
    if (!c.noDone && events[events.length - 1] !== "[DONE]") violation(where, "the stream does not end with data: [DONE]");
    events.forEach((data, i) => {
      if (data === "[DONE]") return;
      let value;
      try { value = JSON.parse(data); } catch { return violation(`${where} event ${i + 1}`, `not JSON: ${data.slice(0, 80)}`); }
      stats.events++;
      check(`${where} event ${i + 1}`, ref, { data: value });
    });
    return;
  }
  let body;
  try { body = JSON.parse(text); } catch { return violation(where, `not JSON (${type}): ${text.slice(0, 120)}`); }
  check(where, ref, body);
}

// ---- the official SDK ------------------------------------------------------------------------

// { name, route (for coverage), call(sdk, mgmt), error?: the error class expected }
const SDK_CASES = [
  { name: "chat.send", route: "post /chat/completions",
    call: async (s) => { const r = await s.chat.send({ chatRequest: chat("openai/gpt-4o-mini") }); state.generation = r.id; return r; } },
  { name: "chat.send reasoning", route: "post /chat/completions",
    call: (s) => s.chat.send({ chatRequest: chat("emulator/reasoning") }) },
  { name: "chat.send tools", route: "post /chat/completions",
    call: (s) => s.chat.send({ chatRequest: chat("emulator/tools") }) },
  { name: "chat.send stream", route: "post /chat/completions", stream: true,
    call: (s) => s.chat.send({ chatRequest: chat("openai/gpt-4o-mini", { stream: true, streamOptions: { includeUsage: true } }) }) },
  { name: "chat.send stream reasoning-tools", route: "post /chat/completions", stream: true,
    call: (s) => s.chat.send({ chatRequest: chat("emulator/reasoning-tools", { stream: true }) }) },
  { name: "chat.send stream mid-stream-error", route: "post /chat/completions", stream: true,
    call: (s) => s.chat.send({ chatRequest: chat("emulator/mid-stream-error", { stream: true }) }) },
  { name: "chat.send 401", route: "post /chat/completions", error: "UnauthorizedResponseError", key: "sk-or-invalid-0123456789",
    call: (s) => s.chat.send({ chatRequest: chat("openai/gpt-4o-mini") }) },
  { name: "chat.send 402", route: "post /chat/completions", error: "PaymentRequiredResponseError", key: "sk-or-broke-0123456789",
    call: (s) => s.chat.send({ chatRequest: chat("openai/gpt-4o-mini") }) },
  { name: "chat.send 400", route: "post /chat/completions", error: "BadRequestResponseError",
    call: (s) => s.chat.send({ chatRequest: chat("missing/model") }) },
  { name: "chat.send 403", route: "post /chat/completions", error: "ForbiddenResponseError",
    call: (s) => s.chat.send({ chatRequest: chat("emulator/moderation") }) },
  { name: "chat.send 429", route: "post /chat/completions", error: "TooManyRequestsResponseError",
    call: (s) => s.chat.send({ chatRequest: chat("emulator/rate-limited") }) },
  ...[[408, "RequestTimeoutResponseError"], [413, "PayloadTooLargeResponseError"], [422, "UnprocessableEntityResponseError"],
    [500, "InternalServerResponseError"], [502, "BadGatewayResponseError"], [503, "ServiceUnavailableResponseError"],
    [524, "EdgeNetworkTimeoutResponseError"], [529, "ProviderOverloadedResponseError"]].map(([status, error]) => ({
    name: `chat.send ${status}`, route: "post /chat/completions", error,
    call: (s) => s.chat.send({ chatRequest: chat(`emulator/fail:${status}:1`) }),
  })),
  { name: "models.list", route: "get /models", call: (s) => s.models.list() },
  { name: "credits.getCredits", route: "get /credits", call: (s) => s.credits.getCredits() },
  { name: "credits.getCredits 401", route: "get /credits", error: "UnauthorizedResponseError", key: "k",
    call: (s) => s.credits.getCredits() },
  { name: "apiKeys.getCurrentKeyMetadata", route: "get /key", call: (s) => s.apiKeys.getCurrentKeyMetadata() },
  { name: "generations.getGeneration", route: "get /generation",
    call: async (s) => { await new Promise((r) => setTimeout(r, 400)); return s.generations.getGeneration({ id: state.generation }); } },
  { name: "generations.getGeneration 404", route: "get /generation", error: "NotFoundResponseError",
    call: (s) => s.generations.getGeneration({ id: "gen-none" }) },
  { name: "endpoints.list", route: "get /models/{author}/{slug}/endpoints",
    call: (s) => s.endpoints.list({ author: "openai", slug: "gpt-4o-mini" }) },
  { name: "endpoints.list 404", route: "get /models/{author}/{slug}/endpoints", error: "NotFoundResponseError",
    call: (s) => s.endpoints.list({ author: "missing", slug: "model" }) },
  { name: "embeddings.generate", route: "post /embeddings",
    call: (s) => s.embeddings.generate({ requestBody: { model: "openai/text-embedding-3-small", input: ["a b", "c"] } }) },
  { name: "tts.createSpeech", route: "post /audio/speech", bytes: true,
    call: (s) => s.tts.createSpeech({ speechRequest: { model: "openai/gpt-4o-mini-tts", input: "hi", responseFormat: "mp3" } }) },
  { name: "stt.createTranscription", route: "post /audio/transcriptions",
    call: (s) => s.stt.createTranscription({ sttRequest: { model: "openai/whisper-1", inputAudio: { data: WAV, format: "wav" } } }) },
  { name: "apiKeys.create", route: "post /keys", mgmt: true,
    call: async (s) => { const r = await s.apiKeys.create({ requestBody: { name: "sdk" } }); state.sdkHash = r.data.hash; return r; } },
  { name: "apiKeys.list", route: "get /keys", mgmt: true, call: (s) => s.apiKeys.list() },
  { name: "apiKeys.get", route: "get /keys/{hash}", mgmt: true, call: (s) => s.apiKeys.get({ hash: state.sdkHash }) },
  { name: "apiKeys.update", route: "patch /keys/{hash}", mgmt: true,
    call: (s) => s.apiKeys.update({ hash: state.sdkHash, requestBody: { disabled: true } }) },
  { name: "apiKeys.delete", route: "delete /keys/{hash}", mgmt: true, call: (s) => s.apiKeys.delete({ hash: state.sdkHash }) },
  { name: "apiKeys.create 403", route: "post /keys", error: "ForbiddenResponseError",
    call: (s) => s.apiKeys.create({ requestBody: { name: "sdk" } }) },
  // routes other helpers add
  { name: "models.listForUser", route: "get /models/user", optional: true,
    call: (s) => s.models.listForUser({ bearer: KEY }) },
  { name: "models.count", route: "get /models/count", optional: true, call: (s) => s.models.count() },
  { name: "models.get", route: "get /model/{author}/{slug}", optional: true,
    call: (s) => s.models.get({ author: "openai", slug: "gpt-4o-mini" }) },
  { name: "providers.list", route: "get /providers", optional: true, call: (s) => s.providers.list() },
  { name: "endpoints.listZdrEndpoints", route: "get /endpoints/zdr", optional: true, call: (s) => s.endpoints.listZdrEndpoints() },
  { name: "embeddings.listModels", route: "get /embeddings/models", optional: true, call: (s) => s.embeddings.listModels() },
  { name: "responses.send", route: "post /responses", optional: true,
    call: (s) => s.responses.send({ responsesRequest: { model: "openai/gpt-4o-mini", input: "hello there" } }) },
  { name: "responses.send stream", route: "post /responses", optional: true, stream: true,
    call: (s) => s.responses.send({ responsesRequest: { model: "openai/gpt-4o-mini", input: "hello there", stream: true } }) },
  { name: "images.generate", route: "post /images", optional: true,
    call: (s) => s.images.generate({ imageGenerationRequest: { model: "google/gemini-2.5-flash-image", prompt: "a red square" } }) },
  { name: "rerank.rerank", route: "post /rerank", optional: true,
    call: (s) => s.rerank.rerank({ requestBody: { model: "cohere/rerank-v3.5", query: "red", documents: ["a red car", "a blue sky"] } }) },
];

async function drain(value, c) {
  if (c.stream) {
    let n = 0;
    for await (const event of value) { n++; void event; }
    return n;
  }
  if (c.bytes) {
    const reader = value.getReader();
    for (;;) { const { done } = await reader.read(); if (done) break; }
  }
  if (value && typeof value.next === "function" && value.result !== undefined) return value.result; // a PageIterator
  return value;
}

async function runSDK(url, served) {
  // a fresh emulator state: the fail:<status>:1 counters of the HTTP cases start again
  await fetch(url.replace(/\/api\/v1$/, "") + "/_emulator/reset", { method: "POST" });
  const sdk = (key) => new OpenRouter({ apiKey: key, serverURL: url, retryConfig: { strategy: "none" } });
  const plain = sdk(KEY);
  const mgmt = sdk(MGMT);
  for (const c of SDK_CASES) {
    if (ONLY && !c.name.includes(ONLY)) continue;
    if (c.optional && !served.has(shape(c.route))) continue;
    const where = `SDK ${c.name}`;
    stats.sdkCalls++;
    stats.operations.add(c.route);
    const client = c.key ? sdk(c.key) : c.mgmt ? mgmt : plain;
    try {
      await drain(await c.call(client), c);
      if (c.error) violation(where, `succeeded; expected ${c.error}`);
    } catch (err) {
      const name = err?.constructor?.name;
      if (err instanceof SDKErrors.ResponseValidationError || err instanceof SDKErrors.SDKValidationError) {
        const detail = err.pretty ? err.pretty() : String(err.cause ?? err.message);
        violation(where, `the SDK rejects the response: ${detail.replace(/\s+/g, " ").slice(0, 600)}`);
      } else if (!c.error) {
        violation(where, `${name}: ${String(err?.message).slice(0, 300)}`);
      } else if (name !== c.error) {
        violation(where, `${name} (${String(err?.message).slice(0, 200)}), expected ${c.error}`);
      }
    }
  }
}

// ---- main ------------------------------------------------------------------------------------

const { child, url } = await startEmulator();
let exitCode = 0;
try {
  const served = new Set([...servedRoutes()].map(shape));
  const covered = new Set([...CASES.map((c) => shape(`${c.op[0]} ${c.op[1]}`))]);
  for (const route of served) {
    if (!covered.has(route)) violation(route.toUpperCase(), "the emulator serves this route but no case of test/fidelity/check.mjs covers it: add one");
  }
  let skipped = 0;
  for (const c of CASES) {
    if (ONLY && !c.name.includes(ONLY)) continue;
    if (c.name === "generation") await new Promise((r) => setTimeout(r, 400)); // stats land 0.3 s late
    try {
      if ((await runCase(url, served, c)) === "skipped") skipped++;
    } catch (err) {
      violation(`${c.op[0].toUpperCase()} ${c.op[1]} [${c.name}]`, `request failed: ${err.message}`);
    }
  }
  await runSDK(url, served);
  const ops = [...stats.operations].filter((o) => !o.endsWith(" /completions")).length;
  console.log(`${ops} operations covered; ${stats.requests} HTTP responses (${stats.bodies} bodies and SSE events validated against the description, ${stats.events} of them events; ${stats.unvalidated} with no schema to check); ${stats.sdkCalls} SDK calls; ${skipped} cases for routes not served yet`);
  console.log(`fidelity: ${violations.length} violations in ${stats.bodies} validated bodies and events and ${stats.sdkCalls} SDK calls`);
  if (violations.length) exitCode = 1;
} finally {
  child.removeAllListeners("exit");
  child.kill();
}
process.exit(exitCode);
