#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/sse/, fuzz/corpus/errmap/ and fuzz/corpus/stream_lua/
(run by hand when the seeds change; the files are committed). Every seed is an 8-byte header
followed by the payload; the header layouts are described at the top of fuzz_sse.c,
fuzz_errmap.c and fuzz_stream_lua.c."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(kind, name, data):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sse_header(flags=0, maxp=0, splits=(32, 64, 100, 150, 200, 240)):
    return bytes([flags, maxp]) + bytes(splits)


def chunk(content=None, finish=None, extra="", role=False, gid="gen-1740000000-AbCdEf123"):
    delta = []
    if role:
        delta.append('"role":"assistant"')
    if content is not None:
        delta.append('"content":%s' % content)
    fr = "null" if finish is None else '"%s"' % finish
    return ('{"id":"%s","provider":"OpenAI","model":"openai/gpt-4o-mini",'
            '"object":"chat.completion.chunk","created":1740000000,'
            '"choices":[{"index":0,"delta":{%s},"finish_reason":%s,'
            '"native_finish_reason":%s,"logprobs":null}]%s}'
            % (gid, ",".join(delta), fr, fr, extra))


USAGE = (',"usage":{"prompt_tokens":14,"completion_tokens":3,"total_tokens":17,'
         '"cost":0.0000042}')

plain = (": OPENROUTER PROCESSING\n\n"
         + "data: " + chunk('"Hello"', role=True) + "\n\n"
         + ": OPENROUTER PROCESSING\n\n"
         + "data: " + chunk('" world"') + "\n\n"
         + "data: " + chunk('"!"', finish="stop", extra=USAGE) + "\n\n"
         + "data: [DONE]\n\n")

error_mid = (": OPENROUTER PROCESSING\n\n"
             + "data: " + chunk('"Partial"', role=True) + "\n\n"
             + 'data: {"id":"cmpl-abc123","object":"chat.completion.chunk","created":1740000001,'
               '"model":"openai/gpt-4o-mini","provider":"OpenAI","error":{"code":"server_error",'
               '"message":"Provider disconnected unexpectedly"},"choices":[{"index":0,'
               '"delta":{"content":""},"finish_reason":"error"}]}\n\n'
             + "data: [DONE]\n\n")

error_event = ("event: error\n"
               'data: {"error":{"code":429,"message":"Rate limit exceeded: free-models-per-min",'
               '"metadata":{"headers":{"X-RateLimit-Limit":"20","X-RateLimit-Remaining":"0"}}}}\n\n')

multiline = (": keep-alive\n"
             "id: 1\n"
             "retry: 3000\n"
             "event: message\n"
             'data: {"choices":[{"delta":\n'
             'data: {"content":"split"}}]}\n'
             "data\n"
             "data:\n"
             "data:no-space\n"
             "data:  two-spaces\n"
             "unknown: field\n"
             "\n"
             "event: ping\n"
             "\n"
             "data: [DONE]\n\n")

tool_call = ("data: " + chunk(None, role=True, extra="").replace(
    '"delta":{"role":"assistant"}',
    '"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function",'
    '"function":{"name":"get_weather","arguments":"{\\"city\\":"}}]}') + "\n\n"
    + "data: " + chunk(None).replace(
        '"delta":{}', '"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\"Paris\\"}"}}]}')
    + "\n\n"
    + "data: " + chunk(None, finish="tool_calls") + "\n\n"
    + "data: [DONE]\n\n")

reasoning = ("data: " + chunk(None, role=True).replace(
    '"delta":{"role":"assistant"}',
    '"delta":{"role":"assistant","content":"","reasoning":"Let me think."}') + "\n\n"
    + "data: " + chunk('"Answer: 42"', finish="stop", extra=USAGE) + "\n\n"
    + "data: [DONE]\n\n")

no_done = ("data: " + chunk('"cut"', role=True) + "\n\n"
           + "data: " + chunk('" off"'))  # no blank line, no [DONE]: finish dispatches it

unicode = ("data: " + chunk('"h\\u00e9llo \\ud83d\\ude00 caf\xc3\xa9"'.encode("latin-1").decode("utf-8"))
           + "\n\n" + "data: [DONE]\n\n")

long_line = "data: " + chunk('"' + "x" * 2500 + '"') + "\n\ndata: [DONE]\n\n"

seeds = {
    "openrouter_plain": (sse_header(), plain.encode()),
    "openrouter_crlf": (sse_header(0x04), plain.replace("\n", "\r\n").encode()),
    "openrouter_cr": (sse_header(0x40, 0, (1, 2, 3, 50, 51, 52)), plain.replace("\n", "\r").encode()),
    "openrouter_bom": (sse_header(0, 0, (0, 1, 2, 3, 4, 200)), b"\xef\xbb\xbf" + plain.encode()),
    "openrouter_bom_split": (sse_header(0x40, 0, (1, 1, 2, 2, 3, 3)),
                             b"\xef\xbb\xbf: OPENROUTER PROCESSING\r\n\r\ndata: [DONE]\r\n\r\n"),
    "bom_prefix_only": (sse_header(0x40, 0, (0, 1, 1, 2, 2, 2)), b"\xef\xbb"),
    "error_midstream": (sse_header(0x08), error_mid.encode()),
    "error_event": (sse_header(0x05, 20), error_event.encode()),
    "multiline_fields": (sse_header(0x44, 0, (5, 17, 33, 60, 61, 62)), multiline.encode()),
    "multiline_crlf_small_max": (sse_header(0x02, 24), multiline.replace("\n", "\r\n").encode()),
    "tool_call": (sse_header(0x10), tool_call.encode()),
    "reasoning": (sse_header(0x03, 8), reasoning.encode()),
    "no_done_no_blank": (sse_header(0x04), no_done.encode()),
    "unicode": (sse_header(0x00, 0, (10, 11, 12, 13, 14, 15)), unicode.encode()),
    "long_data_line": (sse_header(0x03, 200), long_line.encode()),
    "mixed_endings": (sse_header(0x44, 0, (2, 3, 4, 5, 6, 7)),
                      b"data: a\r\ndata: b\rdata: c\n\r\n: c\r\r\ndata: d\r\n\n\ndata: e"),
    "nul_bytes": (sse_header(0x00), b"data: a\x00b\n\nevent: x\x00y\ndata: \x00\n\n"),
    "stop_after_first": (sse_header(0x08 | 0x04), b"data: 1\n\ndata: 2\n\ndata: 3\n\n"),
    "empty": (sse_header(), b""),
}
for name, (hdr, body) in seeds.items():
    write("sse", name, hdr + body)


def em_header(outsize=80, attempt=0, base=5, exp=5 + 13 * 8, cap=3, jitter=128, now=0):
    # defaults: base 5 * 10^-1 = 0.5 s, cap 3 * 10^2 = 300 s (exponent byte: base = exp % 13 - 6,
    # cap = exp // 13 % 13 - 6)
    return bytes([outsize, attempt & 255, attempt >> 8, base, exp & 255, cap, jitter, now])


em = {
    "retry_after_0": (em_header(), b"0"),
    "retry_after_120": (em_header(attempt=1), b"120"),
    "retry_after_spaces": (em_header(attempt=2), b"  30 \t"),
    "retry_after_imf_date": (em_header(now=0), b"Wed, 21 Oct 2015 07:28:00 GMT"),
    "retry_after_future_date": (em_header(now=3), b"Tue, 21 Oct 2025 07:28:00 GMT"),
    # far future: delta-seconds are clamped to 1e9, this must be too
    "retry_after_far_future_date": (em_header(), b"Fri, 31 Dec 9999 23:59:59 GMT"),
    "retry_after_rfc850": (em_header(), b"Sunday, 06-Nov-94 08:49:37 GMT"),
    "retry_after_asctime": (em_header(), b"Sun Nov  6 08:49:37 1994"),
    "retry_after_huge": (em_header(), b"99999999999999999999"),
    "retry_after_garbage": (em_header(), b"garbage"),
    "retry_after_fraction": (em_header(), b"1.5"),
    "retry_after_negative": (em_header(), b"-1"),
    "retry_after_empty": (em_header(), b""),
    "body_html_502": (em_header(outsize=200, attempt=3),
                      b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                      b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
                      b"</body>\r\n</html>\r\n"),
    "body_json_429": (em_header(outsize=16, attempt=1429),
                      b'{"error":{"message":"Rate limit exceeded: free-models-per-day",'
                      b'"code":429,"metadata":{"headers":{"X-RateLimit-Reset":"1740009600000"}}}}'),
    "body_controls": (em_header(outsize=5), b"\x00\x01 \t\n\x7f a  b\x1bc\xff\xfe"),
    "body_outsize_0": (em_header(outsize=0), b"anything"),
    "body_outsize_1": (em_header(outsize=1), b"x"),
    "backoff_base_zero": (em_header(base=0, attempt=40000), b"   "),
    "backoff_base_over_cap": (em_header(base=200, cap=1, exp=12 + 13 * 0), b"5"),
    # raw doubles (the value's first 16 bytes): base 1.0, a subnormal cap
    "backoff_subnormal_cap": (em_header(jitter=255), struct.pack("<dd", 1.0, 1.5e-323)),
    "status_503": (em_header(attempt=1503), b"Retry-After: 5"),
}
for name, (hdr, body) in em.items():
    write("errmap", name, hdr + body)


# ---- stream_lua: whole OpenRouter streams and bodies, shaped like the emulator's
# (spec/support/emulator.lua), through the stream assembly and the error objects ----

KEY = "sk-or-v1-fuzz-0123456789abcdef"  # the key fuzz_stream_lua scrubs errors of

# byte 0 flags (fuzz_stream_lua.c): 0x01 body, 0x02 legacy, 0x04/0x08/0x0c coalesce 1/2/5,
# 0x10 raw splits, 0x20 heap budget (byte 1 KiB), 0x40 small max_event_bytes, 0x80 cancel
def sl_header(flags=0, param=0, cancel=0, splits=(40, 90, 140, 200, 250)):
    return bytes([flags, param, cancel]) + bytes(splits)


def body_header(flags=0, status_index=0, retry_after=None):
    return bytes([0x01 | flags, 0, 0, status_index, 0 if retry_after is None else 128 + retry_after,
                  0, 0, 0])


# indexes into fuzz_stream_lua.c's statuses[]
ST = {200: 0, 201: 1, 400: 2, 401: 3, 402: 4, 403: 5, 404: 6, 408: 7, 413: 8, 422: 9, 429: 10,
      500: 11, 502: 12, 503: 13, 504: 14, 524: 15, 529: 16, 302: 17}


def env(choices, extra=""):
    return ('{"id":"gen-1740000000-AbCdEf123","object":"chat.completion.chunk","created":1740000000,'
            '"model":"openai/gpt-4o-mini","provider":"Emulator","system_fingerprint":"fp_emulator",'
            '"choices":%s%s}' % (choices, extra))


def ch(delta, finish="null", index=0):
    return ('{"index":%s,"delta":%s,"finish_reason":%s,"native_finish_reason":%s,"logprobs":null}'
            % (index, delta, finish, finish))


def sse(*events, done=True):
    out = ": OPENROUTER PROCESSING\n\n"
    for e in events:
        out += "data: " + e + "\n\n"
    if done:
        out += "data: [DONE]\n\n"
    return out.encode()


FULL_USAGE = (',"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9,"cost":0.0000031,'
              '"is_byok":false,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
              '"completion_tokens_details":{"reasoning_tokens":0,"image_tokens":0},'
              '"cost_details":{"upstream_inference_cost":null}}')

opening = env("[" + ch('{"role":"assistant","content":""}') + "]")
finish_stop = env("[" + ch("{}", '"stop"') + "]")
usage_only = env("[]", FULL_USAGE)

echo = sse(opening, *(env("[" + ch('{"content":"%s"}' % w) + "]") for w in ["Echo:", " one", " two"]),
           finish_stop, usage_only)

tools = sse(opening,
            env("[" + ch('{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":'
                         '{"name":"get_weather","arguments":""}}]}') + "]"),
            env("[" + ch('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":"}}]}') + "]"),
            env("[" + ch('{"tool_calls":[{"index":0,"id":"","function":{"arguments":"\\"Paris\\"}"}}]}') + "]"),
            env("[" + ch('{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":'
                         '{"name":"get_time","arguments":""}}]}') + "]"),
            env("[" + ch('{"tool_calls":[{"index":1,"id":"","type":"function","function":'
                         '{"arguments":"{\\"tz\\":"}}]}') + "]"),
            env("[" + ch('{"tool_calls":[{"index":1,"function":{"arguments":"\\"Europe/Paris\\"}"}}]}') + "]"),
            env("[" + ch("{}", '"tool_calls"') + "]"), usage_only)

RD = '{"type":"reasoning.text","text":"%s","index":0,"format":"anthropic-claude-v1"}'
reasoning = sse(opening,
                env("[" + ch('{"reasoning":"Thinking","reasoning_details":[' + RD % "Thinking" + ']}') + "]"),
                env("[" + ch('{"reasoning":" about it.","reasoning_details":[' + RD % " about it." + ']}') + "]"),
                env("[" + ch('{"reasoning_details":[{"type":"reasoning.text","text":"","signature":"sig-abc",'
                             '"index":0,"format":"anthropic-claude-v1"}]}') + "]"),
                env("[" + ch('{"reasoning_details":[{"type":"reasoning.encrypted","data":"ZW5j","index":1,'
                             '"id":null,"format":"openai-responses-v1"},{"type":"reasoning.summary",'
                             '"summary":"short","index":2}]}') + "]"),
                env("[" + ch('{"content":"Answer"}') + "]"), finish_stop, usage_only)

usage_on_choice = sse(opening, env("[" + ch('{"content":"Hi"}') + "]"),
                      env("[" + ch("{}", '"stop"') + "]", FULL_USAGE))

two_choices = sse(env("[" + ch('{"role":"assistant","content":"A"}', index=0) + ","
                      + ch('{"role":"assistant","content":"B"}', index=1) + "]"),
                  env("[" + ch('{"content":"a"}', index=1) + "]"),
                  env("[" + ch('{"content":"b"}', '"length"', index=0) + ","
                      + ch('{"refusal":"no"}', '"stop"', index=1) + "]"), usage_only)

annotations = sse(opening, env("[" + ch('{"content":"See [1]","annotations":[{"type":"url_citation",'
                                       '"url_citation":{"url":"https://example.invalid/","title":"x",'
                                       '"start_index":4,"end_index":7}}]}') + "]"), finish_stop)

legacy = sse('{"id":"gen-1","object":"text_completion","created":1,"model":"m","choices":'
             '[{"index":0,"text":"Once","finish_reason":null}]}',
             '{"id":"gen-1","object":"text_completion","created":1,"model":"m","choices":'
             '[{"index":0,"text":" upon","reasoning":"r","finish_reason":"stop"}]}', usage_only)

mid_error = sse(opening, env("[" + ch('{"content":"Partial"}') + "]"),
                env("[" + ch('{"content":""}', '"error"') + "]",
                    ',"error":{"code":"server_error","message":"Provider disconnected"}'), done=False)

error_event = (b"event: error\ndata: " + (
    '{"error":{"code":502,"message":"Provider returned error","metadata":{"provider_name":"OpenAI",'
    '"raw":"{\\"error\\":{\\"message\\":\\"upstream said no, key %s\\"}}"}}}' % KEY).encode()
    + b"\n\n")

key_in_stream = sse(opening, env("[" + ch('{"content":"%s"}' % KEY) + "]"),
                    env("[]", ',"error":{"code":400,"message":"bad Bearer %s","metadata":{"x":"%s",'
                        '"%s":"as a key"}}' % (KEY, KEY, KEY)), done=False)

# hostile numbers: indexes and codes no int holds (issue 11, defect 7), as regressions
hostile = sse(env("[" + ch('{"content":"x"}', index="2147483648") + "]"),
              env("[" + ch('{"content":"y"}', index="1e300") + "]"),
              env("[" + ch('{"content":"z"}', index="NaN") + "]"),
              env("[" + ch('{"content":"w"}', index="-1") + "]"),
              env("[" + ch('{"tool_calls":[{"index":1e300,"function":{"arguments":"{}"}},'
                           '{"index":-Infinity,"function":{"arguments":"{}"}},'
                           '{"index":0.5,"function":{"arguments":"{}"}}]}', index="0.5") + "]"),
              env("[" + ch('{"content":"v"}', index="1000000") + "]"),
              env("[]", ',"error":{"code":NaN,"message":"nan code"}'), done=False)
hostile_codes = [b'{"error":{"code":NaN,"message":"m"}}', b'{"error":{"code":1e300,"message":"m"}}',
                 b'{"error":{"code":-9.3e18,"message":"m"}}', b'{"error":{"code":Infinity}}',
                 b'{"error":{"code":9223372036854775807,"message":"m"}}']

stream_seeds = {
    "echo": (sl_header(), echo),
    "echo_coalesce2": (sl_header(0x08), echo),
    "echo_coalesce5_raw_splits": (sl_header(0x0c | 0x10, splits=(1, 7, 33, 34, 35)), echo),
    "echo_cancel_2": (sl_header(0x80, cancel=2), echo),
    "echo_budget_24k": (sl_header(0x20, 24), echo),
    "echo_budget_40k_coalesce": (sl_header(0x20 | 0x04, 40), echo),
    "echo_small_max_event": (sl_header(0x40, 8), echo),
    "echo_crlf": (sl_header(), echo.replace(b"\n", b"\r\n")),
    "tools": (sl_header(), tools),
    "tools_coalesce2": (sl_header(0x08), tools),
    "tools_budget": (sl_header(0x20, 48), tools),
    "reasoning": (sl_header(), reasoning),
    "reasoning_coalesce5": (sl_header(0x0c), reasoning),
    "usage_on_choice": (sl_header(), usage_on_choice),
    "two_choices": (sl_header(0x04), two_choices),
    "annotations": (sl_header(), annotations),
    "legacy": (sl_header(0x02), legacy),
    "legacy_coalesce2": (sl_header(0x02 | 0x08), legacy),
    "mid_stream_error": (sl_header(), mid_error),
    "mid_stream_error_coalesce5": (sl_header(0x0c), mid_error),
    "error_event_raw": (sl_header(), error_event),
    "key_in_stream": (sl_header(), key_in_stream),
    "hostile_numbers": (sl_header(), hostile),
    "hostile_numbers_coalesce": (sl_header(0x04), hostile),
    "not_json_event": (sl_header(), sse(opening, '{"choices":[{"delta":{"content":"x"}}', done=False)),
    "array_event": (sl_header(), sse(opening, '[' + opening + ']')),
    "no_events": (sl_header(), b": OPENROUTER PROCESSING\n\n"),
    "deep_event": (sl_header(), sse(opening, '{"choices":' + "[" * 300 + "]" * 300 + "}")),
}
for name, (hdr, body) in stream_seeds.items():
    write("stream_lua", name, hdr + body)

reply = ('{"id":"gen-1740000000-AbCdEf123","object":"chat.completion","created":1740000000,'
         '"model":"openai/gpt-4o-mini","provider":"Emulator","choices":[{"index":0,"message":'
         '{"role":"assistant","content":null,"refusal":null,"reasoning":"Thinking about it.",'
         '"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather",'
         '"arguments":"{\\"city\\":\\"Paris\\"}"}}],"reasoning_details":[{"type":"reasoning.text",'
         '"text":"Thinking about it.","signature":"sig-abc","id":null,"format":"anthropic-claude-v1",'
         '"index":0}]},"finish_reason":"tool_calls","native_finish_reason":"tool_calls",'
         '"logprobs":null}]' + FULL_USAGE + '}').encode()

body_seeds = {
    "reply_tools": (body_header(), reply),
    "reply_exact_numbers": (body_header(), b'{"choices":[{"message":{"role":"assistant","content":"x",'
                            b'"x":7.4999999999999993e-06,"y":[],"z":{},"w":0.1}}],"data":[1.5e-7]}'),
    "models_data": (body_header(), b'{"data":[{"id":"openai/gpt-4o","pricing":{"prompt":"0.0000025"},'
                    b'"supported_parameters":[],"context_length":128000}]}'),
    "error_200": (body_header(), b'{"error":{"code":502,"message":"Provider returned error"}}'),
    "provider_error_400": (body_header(0, ST[400]),
                           ('{"error":{"code":400,"message":"Provider returned error","metadata":'
                            '{"provider_name":"Anthropic","raw":"{\\"type\\":\\"error\\",\\"error\\":'
                            '{\\"type\\":\\"invalid_request_error\\",\\"message\\":\\"bad key %s\\"}}"}}}'
                            % KEY).encode()),
    "raw_not_json_502": (body_header(0, ST[502]),
                         b'{"error":{"code":502,"message":"x","metadata":{"raw":"<html>upstream\\n  down</html>"}}}'),
    "capacity_429": (body_header(0, ST[429], 7),
                     b'{"error":{"code":429,"message":"busy","availability":{"retry_after":1,'
                     b'"retryable":true}}}'),
    "not_retryable_503": (body_header(0, ST[503]),
                          b'{"error":{"code":503,"message":"no","availability":{"retryable":false}}}'),
    "moderation_403": (body_header(0, ST[403]),
                       b'{"error":{"code":403,"message":"flagged","metadata":{"reasons":["x"],'
                       b'"flagged_input":"...","provider_name":"OpenAI","error_type":"moderation"}}}'),
    "string_code_500": (body_header(0, ST[500]), b'{"error":{"code":"server_error","message":"oops"}}'),
    "no_message_404": (body_header(0, ST[404]), b'{"error":{"code":404}}'),
    "nested_message_402": (body_header(0, ST[402]),
                           b'{"error":{"code":402,"error":{"detail":{"msg":"pay up"}}}}'),
    "html_502": (body_header(0, ST[502]),
                 b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
                 b"</h1></center><hr><center>nginx</center></body></html>"),
    "html_key_title": (body_header(0, ST[524]), ("<title>oops %s</title>" % KEY).encode()),
    "key_everywhere_401": (body_header(0, ST[401]),
                           ('{"error":{"code":401,"message":"bad Bearer %s","metadata":{"x":"pre %s",'
                            '"%s":"as a key","headers":{"authorization":"Bearer %s"}}}}'
                            % (KEY, KEY, KEY, KEY)).encode()),
    "malformed_500": (body_header(0, ST[500]), b'{"error":{"code":500,"mess'),
    "empty_200": (body_header(), b""),
    "array_200": (body_header(), b'[{"choices":[]}]'),
    "deep_400": (body_header(0, ST[400]), b'{"error":' + b'{"error":' * 60 + b'"x"' + b"}" * 61),
}
for i, body in enumerate(hostile_codes):
    body_seeds["hostile_code_%d" % i] = (body_header(0, ST[400 if i % 2 else 429], 3), body)
for name, (hdr, body) in body_seeds.items():
    write("stream_lua", "body_" + name, hdr + body)
