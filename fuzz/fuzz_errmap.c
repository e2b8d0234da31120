/*
** libFuzzer target for the plain-C failure mapping (src/errmap.c).
**
** Input layout (see fuzz/README.md):
**   byte 0      outsize for or_body_snippet (0..255)
**   bytes 1-2   attempt for or_backoff_delay (little-endian, 0..65535)
**   byte 3      base delay: 0 when 0, else (byte) * 10^(byte4 % 13 - 6) seconds
**   byte 4      exponent byte shared by base and cap
**   byte 5      cap: 0 when 0, else (byte) * 10^(byte4 / 13 % 13 - 6) seconds
**   byte 6      jitter in [0, 1): byte / 256
**   byte 7      "now" for Retry-After: 1,700,000,000 + byte * 10,000,000 seconds
**   bytes 8-    the Retry-After value, and the body for or_body_snippet
** An input shorter than 8 bytes is all header (missing bytes are 0), with an empty value.
**
** Checks:
**   or_parse_retry_after   -1, or a finite number within [0, 1e9] (HTTP-date form too)
**   or_body_snippet        NUL-terminated at the returned length, at most outsize - 1
**                          bytes, no control bytes, no leading or doubled spaces; it reads
**                          only the body (an exactly-sized heap copy: ASan catches more)
**                          and writes only outsize bytes (likewise)
**   or_backoff_delay       finite, within [0, cap], for the domain the Lua layer admits
**                          (non-negative finite base and cap, jitter in [0, 1))
**   or_status_is_retryable exactly 408, 429, 500, 502, 503, 504
**   or_curl_is_connect_failure  0 or 1
**   or_curl_kind           "timeout" for CURLE_OPERATION_TIMEDOUT, "decode" for
**                          CURLE_BAD_CONTENT_ENCODING, else "network"
**   or_curl_classify       a known kind; its own message and code, and no retry, for a
**                          socket() out of descriptors (OR_ERR_TOO_MANY_FILES*); retry only
**                          for a connect failure
*/
#include "errmap.h"
#include "platform.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 8

static void fail(const char *what) {
  fprintf(stderr, "fuzz_errmap: invariant violated: %s\n", what);
  abort();
}
#define CHECK(cond) do { if (!(cond)) fail(#cond); } while (0)

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) abort();
  return p;
}

static double decimal(uint8_t mant, int exp10) {
  double v = mant;
  for (; exp10 > 0; exp10--) v *= 10;
  for (; exp10 < 0; exp10++) v /= 10;
  return v;
}

static void check_retry_after(const uint8_t *value, size_t len, double now) {
  /* an exactly-sized copy, so a read past len is an ASan report */
  char *v = (char *)xmalloc(len);
  double r, upper = 1e9;
  size_t i;
  if (len) memcpy(v, value, len);
  r = or_parse_retry_after(v, len, now);
  free(v);
  if (r != -1 && !(isfinite(r) && r >= 0 && r <= upper)) {
    fprintf(stderr, "fuzz_errmap: or_parse_retry_after(\"");
    for (i = 0; i < len; i++)
      fprintf(stderr, value[i] >= 0x20 && value[i] < 0x7f && value[i] != '\\' ? "%c" : "\\x%02x",
              value[i]);
    fprintf(stderr, "\", %zu, %.0f) = %.17g\n", len, now, r);
    fail("or_parse_retry_after result is -1 or within [0, 1e9]");
  }
}

static void check_snippet(const uint8_t *body, size_t len, size_t outsize) {
  char *b = (char *)xmalloc(len);
  /* malloc(0) is still a block ASan watches: any write with outsize 0 is caught */
  char *out = (char *)malloc(outsize);
  size_t n, i;
  if (outsize && out == NULL) abort();
  if (len) memcpy(b, body, len);
  if (outsize) memset(out, 'Z', outsize);
  n = or_body_snippet(b, len, out, outsize);
  if (outsize == 0) {
    CHECK(n == 0);
  } else {
    CHECK(n <= outsize - 1);
    CHECK(out[n] == '\0');
    CHECK(strlen(out) == n);
    for (i = 0; i < n; i++) {
      unsigned char ch = (unsigned char)out[i];
      CHECK(ch >= 0x20 && ch != 0x7f);
      if (ch == ' ') CHECK(i > 0 && out[i - 1] != ' ');
    }
    /* an empty body gives an empty snippet */
    if (len == 0) CHECK(n == 0);
  }
  free(out);
  free(b);
}

static void check_backoff(int attempt, double base, double cap, double jitter) {
  double d = or_backoff_delay(attempt, base, cap, jitter), upper = cap;
  if (!(isfinite(d) && d >= 0 && d <= upper)) {
    fprintf(stderr, "fuzz_errmap: or_backoff_delay(%d, %.17g, %.17g, %.17g) = %.17g\n", attempt,
            base, cap, jitter, d);
    fail("or_backoff_delay result is finite and within [0, cap]");
  }
}

/* or_curl_classify for one curl code, socket error (0..63: the OR_ERR_ codes among them) and
** header state. */
static void check_classify(CURLcode rc, int socket_errno, int in_headers) {
  or_failure f;
  int exhausted = rc == CURLE_COULDNT_CONNECT && (socket_errno == OR_ERR_TOO_MANY_FILES ||
                                                 socket_errno == OR_ERR_TOO_MANY_FILES_SYSTEM);
  or_curl_classify(rc, socket_errno, in_headers, &f);
  CHECK(strcmp(f.kind, "network") == 0 || strcmp(f.kind, "timeout") == 0 ||
        strcmp(f.kind, "decode") == 0);
  CHECK(f.retry == (or_curl_is_connect_failure(rc) && !exhausted));
  CHECK((f.message == NULL) == (f.code == NULL));
  CHECK(f.message == NULL || f.message[0] != '\0');
  if (exhausted) CHECK(strcmp(f.code, "too_many_open_files") == 0);
  if (!in_headers && !exhausted) CHECK(f.message == NULL && strcmp(f.kind, or_curl_kind(rc)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
  uint8_t h[HEADER] = {0};
  const uint8_t *value;
  size_t len;
  int attempt, exp_base, exp_cap;
  double base, cap, jitter, now;
  long status;
  int r;
  CURLcode rc;

  memcpy(h, in, size < HEADER ? size : HEADER);
  value = size > HEADER ? in + HEADER : in + size;
  len = size > HEADER ? size - HEADER : 0;

  now = 1700000000.0 + (double)h[7] * 10000000.0;
  check_retry_after(value, len, now);

  check_snippet(value, len, h[0]);

  attempt = h[1] | (h[2] << 8);
  exp_base = h[4] % 13 - 6;
  exp_cap = h[4] / 13 % 13 - 6;
  base = h[3] ? decimal(h[3], exp_base) : 0;
  cap = h[5] ? decimal(h[5], exp_cap) : 0;
  jitter = h[6] / 256.0;
  check_backoff(attempt, base, cap, jitter);
  /* the edges: no jitter, base above the cap, and raw doubles from the value */
  check_backoff(attempt % 64, base, cap, 0);
  check_backoff(attempt % 64, cap * 4 + 1, cap, jitter);
  if (len >= 16) {
    double rb, rc;
    memcpy(&rb, value, sizeof rb);
    memcpy(&rc, value + 8, sizeof rc);
    rb = fabs(rb);
    rc = fabs(rc);
    /* the Lua layer admits only non-negative finite numbers; base 0 with a huge attempt
    ** loops attempt times, so attempt stays modest there */
    if (isfinite(rb) && isfinite(rc)) check_backoff(rb > 0 ? attempt : attempt % 4096, rb, rc, jitter);
  }

  /* the two classifiers: cheap, total, and exact */
  status = (long)(h[1] | (h[2] << 8)) - 1000;
  r = or_status_is_retryable(status);
  CHECK(r == (status == 408 || status == 429 || status == 500 || status == 502 ||
              status == 503 || status == 504));
  r = or_curl_is_connect_failure((CURLcode)(h[1] % (int)CURL_LAST));
  CHECK(r == 0 || r == 1);
  rc = (CURLcode)(h[1] % (int)CURL_LAST);
  CHECK(strcmp(or_curl_kind(rc), rc == CURLE_OPERATION_TIMEDOUT ? "timeout"
                                 : rc == CURLE_BAD_CONTENT_ENCODING ? "decode" : "network") == 0);
  check_classify(rc, h[2] % 64, h[3] & 1);
  return 0;
}
