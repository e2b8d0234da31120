/*
** Plain-C failure classification: curl codes, HTTP statuses, Retry-After,
** backoff. No Lua here, so the fuzzer can drive it directly.
*/
#include "errmap.h"
#include "platform.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

const char *or_curl_kind(CURLcode rc) {
  if (rc == CURLE_OPERATION_TIMEDOUT) return "timeout";
  /* a body that does not inflate (a corrupt gzip) came through the network intact */
  if (rc == CURLE_BAD_CONTENT_ENCODING) return "decode";
  return "network";
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

/* Whether a curl failure says "out of memory" because a response header was
** over libcurl's limit (7.88 reports it so, without a message; 8.6+ has
** CURLE_TOO_LARGE). in_headers: the status line arrived, the body did not. */
static int header_too_large(CURLcode rc, int in_headers) {
#if LIBCURL_VERSION_NUM >= 0x080600
  if (rc == CURLE_TOO_LARGE && in_headers) return 1;
#endif
  return rc == CURLE_OUT_OF_MEMORY && in_headers;
}

void or_curl_classify(CURLcode rc, int socket_error, int in_headers, or_failure *f) {
  f->kind = or_curl_kind(rc);
  f->message = NULL;
  f->code = NULL;
  f->retry = or_curl_is_connect_failure(rc);
  if (rc == CURLE_COULDNT_CONNECT && (socket_error == OR_ERR_TOO_MANY_FILES ||
                                      socket_error == OR_ERR_TOO_MANY_FILES_SYSTEM)) {
    /* curl says "Couldn't connect to server": the server is not the problem, and
    ** another try fails the same way until the host closes descriptors */
    f->message = socket_error == OR_ERR_TOO_MANY_FILES
      ? "cannot open a socket: too many open files in this process (EMFILE)"
      : "cannot open a socket: too many open files in the system (ENFILE)";
    f->code = "too_many_open_files";
    f->retry = 0;
  } else if (header_too_large(rc, in_headers)) {
    f->kind = "decode";  /* as a body over max_response_bytes */
    f->message = "response header too large (over libcurl's limit of 100 KB a header)";
    f->code = "header_too_large";
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
