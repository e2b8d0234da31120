/*
** libFuzzer target for the base64 encoder (src/base64.c).
**
** Input: byte 0 picks the variant (even: standard, odd: URL-safe); the rest is encoded
** into an exactly-sized heap buffer (ASan catches a byte written past the length that
** or_base64_encoded_len promised).
**
** Checks: the length written equals or_base64_encoded_len; every byte is of the
** variant's alphabet ('=' only at the end, and only in the standard variant); a
** reference decoder written independently here gives the input back.
*/
#include "base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int value_of(char c, int url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

/* Decodes n characters (padding removed) into out; returns the length, or -1. */
static long reference_decode(const char *s, size_t n, int url, unsigned char *out) {
  uint32_t acc = 0;
  int bits = 0;
  long o = 0;
  size_t i;
  for (i = 0; i < n; i++) {
    int v = value_of(s[i], url);
    if (v < 0) return -1;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  return acc == 0 ? o : -1;  /* leftover bits are zero in a canonical encoding */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int url;
  size_t n, len, written, chars;
  char *out;
  unsigned char *back;
  long got;
  if (size == 0) return 0;
  url = data[0] & 1;
  data++;
  n = size - 1;
  len = or_base64_encoded_len(n, url ? OR_BASE64_URL : OR_BASE64_STD);
  if (n > 0 && len == 0) abort();
  out = (char *)malloc(len ? len : 1);
  back = (unsigned char *)malloc(n ? n : 1);
  written = or_base64_encode(data, n, out, url ? OR_BASE64_URL : OR_BASE64_STD);
  if (written != len) abort();
  if (!url && len % 4 != 0) abort();
  chars = len;
  while (!url && chars > 0 && out[chars - 1] == '=') chars--;
  if (len - chars > 2) abort();
  got = reference_decode(out, chars, url, back);
  if (got < 0 || (size_t)got != n || (n && memcmp(back, data, n) != 0)) abort();
  free(out);
  free(back);
  return 0;
}
