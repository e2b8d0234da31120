/*
** Base64 encoding (RFC 4648 sections 4 and 5). Three bytes at a time in the
** main loop, the last one or two bytes after it.
*/
#include "base64.h"

#include <stdint.h>

static const char STD_ALPHABET[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char URL_ALPHABET[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t or_base64_encoded_len(size_t n, int variant) {
  size_t groups = n / 3, rest = n % 3;
  if (groups > (SIZE_MAX - 4) / 4) return 0;
  if (variant == OR_BASE64_URL) return groups * 4 + (rest ? rest + 1 : 0);
  return groups * 4 + (rest ? 4 : 0);
}

size_t or_base64_encode(const unsigned char *in, size_t n, char *out, int variant) {
  const char *abc = variant == OR_BASE64_URL ? URL_ALPHABET : STD_ALPHABET;
  size_t i = 0, o = 0;
  for (; n - i >= 3; i += 3) {
    uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
    out[o++] = abc[v >> 18];
    out[o++] = abc[(v >> 12) & 63];
    out[o++] = abc[(v >> 6) & 63];
    out[o++] = abc[v & 63];
  }
  if (n - i == 0) return o;
  {
    uint32_t v = (uint32_t)in[i] << 16;
    if (n - i == 2) v |= (uint32_t)in[i + 1] << 8;
    out[o++] = abc[v >> 18];
    out[o++] = abc[(v >> 12) & 63];
    if (n - i == 2) out[o++] = abc[(v >> 6) & 63];
    if (variant != OR_BASE64_URL) {
      if (n - i == 1) out[o++] = '=';
      out[o++] = '=';
    }
  }
  return o;
}
