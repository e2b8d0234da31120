#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/sse/ and fuzz/corpus/errmap/ (run by hand when the
seeds change; the files are committed). Every seed is an 8-byte header followed by the
payload; the header layouts are described at the top of fuzz_sse.c and fuzz_errmap.c."""
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
