// The official SDK contender of bench/run: @openrouter/sdk (installed here from package-lock.json)
// on Debian's node, serverURL pointed at the loopback server.
//
//   node bench/sdk/bench.mjs w1 BASE_URL seconds=1   sequential chat.send: req/s
//   node bench/sdk/bench.mjs w2 BASE_URL streams=3   chat.send stream: chunks/s out of `for await`
//   node bench/sdk/bench.mjs w3 EMU_URL batches=3 n=100  n chat.send at once: ms for all
//   node bench/sdk/bench.mjs w4 BASE_URL seconds=1   models.list: ms per call
//   node bench/sdk/bench.mjs w5 EMU_URL samples=30   ms from the server's stamp to the chunk
//
// Prints "RESULT value=... n=..."; exits non-zero on any error, validation errors included.
import { readFileSync } from "node:fs";
import { OpenRouter } from "@openrouter/sdk";

const [workload, baseURL, ...rest] = process.argv.slice(2);
const opts = Object.fromEntries(rest.map((kv) => kv.split("=", 2)).map(([k, v]) => [k, isNaN(+v) ? v : +v]));
const expectPath = opts.expect ?? "build/bench/www/expect.lua";
// expect.lua is a Lua table of `key = value` lines: read the ones we need
const expect = {};
for (const m of readFileSync(expectPath, "utf8").matchAll(/^\s*(\w+) = ("(?:[^"\\]|\\.)*"|\d+),/gm)) {
  expect[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : +m[2];
}

const sdk = new OpenRouter({ apiKey: "sk-or-bench-0123456789", serverURL: baseURL });
const PROMPT = "Say hello in one short sentence.";
const messages = [{ role: "user", content: PROMPT }];
// wall clock in seconds with sub-millisecond resolution, as gettimeofday (Date.now() has ms only)
const nowReal = () => (performance.timeOrigin + performance.now()) / 1000;
const now = () => performance.now() / 1000;

function fail(msg) {
  console.error(msg);
  process.exit(1);
}
function median(v) {
  v.sort((a, b) => a - b);
  const n = v.length;
  return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
function result(fields) {
  const parts = ["RESULT"];
  for (const k of ["value", "single", "n"]) if (fields[k] !== undefined) parts.push(`${k}=${+fields[k].toPrecision(6)}`);
  console.log(parts.join(" "));
}
async function timebox(seconds, fn) {
  const warmEnd = now() + seconds * 0.2;
  do await fn(); while (now() < warmEnd);
  const times = [];
  const start = now();
  let t = start;
  do {
    await fn();
    const t2 = now();
    times.push(t2 - t);
    t = t2;
  } while (t - start < seconds);
  return [times.length / (t - start), median(times), times.length];
}

const W = {
  async w1() {
    const [rate, , n] = await timebox(opts.seconds ?? 1, async () => {
      const res = await sdk.chat.send({ chatRequest: { model: "openai/gpt-4o-mini", messages } });
      if (res.choices[0].message.content !== expect.chat_text) fail("w1: wrong text");
    });
    result({ value: rate, n });
  },
  async w2() {
    const rates = [];
    let count = 0;
    for (let i = 0; i <= (opts.streams ?? 3); i++) {
      count = 0;
      let text = 0;
      const t = now();
      const stream = await sdk.chat.send({ chatRequest: { model: "openai/gpt-4o-mini", messages, stream: true } });
      for await (const chunk of stream) {
        count++;
        text += chunk.choices[0]?.delta?.content?.length ?? 0;
      }
      const dt = now() - t;
      if (count !== expect.stream_chunks) fail(`w2: ${count} chunks, not ${expect.stream_chunks}`);
      if (text !== expect.stream_text_bytes) fail(`w2: ${text} bytes of text`);
      if (i > 0) rates.push(count / dt);
    }
    result({ value: median(rates), n: count });
  },
  async w3() {
    const n = opts.n ?? 100;
    const send = async () => {
      const res = await sdk.chat.send({ chatRequest: { model: "emulator/slow:200", messages } });
      if (!res.choices?.[0]?.message) fail("w3: bad reply");
    };
    const single = async () => {
      const t = now();
      await send();
      return (now() - t) * 1000;
    };
    const batch = async () => {
      const t = now();
      await Promise.all(Array.from({ length: n }, send));
      return (now() - t) * 1000;
    };
    await single();
    const singles = [await single(), await single(), await single()];
    await batch();
    const totals = [];
    for (let i = 0; i < (opts.batches ?? 3); i++) totals.push(await batch());
    result({ value: median(totals), single: median(singles), n });
  },
  async w4() {
    const [, perCall, n] = await timebox(opts.seconds ?? 1, async () => {
      const res = await sdk.models.list();
      if (res.result.data.length !== expect.models_count) fail("w4: wrong model count");
    });
    result({ value: perCall * 1000, n });
  },
  async w5() {
    const samples = [];
    for (let i = -1; i <= (opts.samples ?? 30); i++) {
      const stream = await sdk.chat.send({
        chatRequest: { model: "emulator/first-chunk-stamp", messages, stream: true },
      });
      let latency;
      for await (const chunk of stream) {
        const t = nowReal();
        latency = t - parseFloat(chunk.choices[0].delta.content);
        break; // ends the stream
      }
      if (latency === undefined) fail("w5: no chunk");
      if (i > 0) samples.push(latency * 1000);
    }
    result({ value: median(samples), n: samples.length });
  },
};

if (!W[workload]) fail(`unknown workload ${workload}`);
try {
  await W[workload]();
} catch (e) {
  fail(`${workload}: ${e?.name}: ${e?.message}\n${e?.rawValue ? JSON.stringify(e.rawValue).slice(0, 500) : ""}`);
}
process.exit(0);
