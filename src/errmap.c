/*
** Plain-C failure classification: curl codes, HTTP statuses, Retry-After,
** backoff. No Lua here, so the fuzzer can drive it directly.
*/
#include "errmap.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

const char *or_curl_kind(CURLcode rc) {
  return rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "network";
}

/* Failures that happen before the server saw the request: safe to retry. */
int or_curl_is_connect_failure(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
      return 1;
    default:
      return 0;
  }
}

int or_status_is_retryable(long status) {
  switch (status) {
    case 408: case 429: case 500: case 502: case 503: case 504:
      return 1;
    default:
      return 0;
  }
}

double or_parse_retry_after(const char *value, size_t len, double now_epoch) {
  char buf[128];
  size_t i = 0, j;
  while (i < len && isspace((unsigned char)value[i])) i++;
  while (len > i && isspace((unsigned char)value[len - 1])) len--;
  if (i >= len || len - i >= sizeof buf) return -1;
  memcpy(buf, value + i, len - i);
  buf[len - i] = '\0';
  for (j = 0; buf[j] && isdigit((unsigned char)buf[j]); j++) {}
  if (buf[j] == '\0') {
    double secs = strtod(buf, NULL);
    return secs > 1e9 ? 1e9 : secs;
  }
  {
    /* curl_getdate understands the HTTP-date forms of RFC 7231 */
    time_t when = curl_getdate(buf, NULL);
    double delta;
    if (when == (time_t)-1) return -1;
    delta = (double)when - now_epoch;
    if (delta > 1e9) delta = 1e9;  /* the same bound as the seconds form */
    return delta < 0 ? 0 : delta;
  }
}

double or_backoff_delay(int attempt, double base, double cap, double jitter01) {
  double d = base;
  int i;
  for (i = 0; i < attempt && d < cap; i++) d *= 2;
  if (d > cap) d = cap;
  /* "equal jitter": half fixed, half random, so retries of many clients spread out;
  ** one product, so it never exceeds d (halving a subnormal d would round up) */
  return d * (0.5 + 0.5 * jitter01);
}

size_t or_body_snippet(const char *body, size_t len, char *out, size_t outsize) {
  size_t i, o = 0;
  int space = 0;
  if (outsize == 0) return 0;
  for (i = 0; i < len && o + 4 < outsize; i++) {
    unsigned char c = (unsigned char)body[i];
    if (isspace(c) || c < 0x20 || c == 0x7f) {
      space = o > 0;
      continue;
    }
    if (space) {
      out[o++] = ' ';
      space = 0;
    }
    out[o++] = (char)c;
  }
  if (i < len && o + 3 < outsize) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
  return o;
}
