/*
** SHA-256 (FIPS 180-4, section 6.2), one 64-byte block at a time.
*/
#include "sha256.h"

#include <string.h>

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* The message schedule of one block (section 6.2.2, step 1). */
static void schedule(const unsigned char *p, uint32_t w[64]) {
  int t;
  for (t = 0; t < 16; t++)
    w[t] = ((uint32_t)p[4 * t] << 24) | ((uint32_t)p[4 * t + 1] << 16)
         | ((uint32_t)p[4 * t + 2] << 8) | (uint32_t)p[4 * t + 3];
  for (t = 16; t < 64; t++) {
    uint32_t s0 = ROTR(w[t - 15], 7) ^ ROTR(w[t - 15], 18) ^ (w[t - 15] >> 3);
    uint32_t s1 = ROTR(w[t - 2], 17) ^ ROTR(w[t - 2], 19) ^ (w[t - 2] >> 10);
    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
  }
}

static void compress(uint32_t state[8], const unsigned char *p) {
  uint32_t w[64], v[8];
  int t, i;
  schedule(p, w);
  for (i = 0; i < 8; i++) v[i] = state[i];
  for (t = 0; t < 64; t++) {
    uint32_t e = v[4], a = v[0];
    uint32_t t1 = v[7] + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25))
                + ((e & v[5]) ^ (~e & v[6])) + K[t] + w[t];
    uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22))
                + ((a & v[1]) ^ (a & v[2]) ^ (v[1] & v[2]));
    for (i = 7; i > 0; i--) v[i] = v[i - 1];
    v[4] += t1;
    v[0] = t1 + t2;
  }
  for (i = 0; i < 8; i++) state[i] += v[i];
}

void or_sha256_init(or_sha256_ctx *s) {
  static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  };
  memcpy(s->state, H0, sizeof H0);
  s->bits = 0;
  s->used = 0;
}

void or_sha256_update(or_sha256_ctx *s, const void *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  s->bits += (uint64_t)n * 8;
  while (n > 0) {
    size_t take = 64 - s->used;
    if (take > n) take = n;
    memcpy(s->block + s->used, p, take);
    s->used += take;
    p += take;
    n -= take;
    if (s->used == 64) {
      compress(s->state, s->block);
      s->used = 0;
    }
  }
}

void or_sha256_final(or_sha256_ctx *s, unsigned char out[OR_SHA256_LEN]) {
  uint64_t bits = s->bits;
  int i;
  s->block[s->used++] = 0x80;
  if (s->used > 56) {
    memset(s->block + s->used, 0, 64 - s->used);
    compress(s->state, s->block);
    s->used = 0;
  }
  memset(s->block + s->used, 0, 56 - s->used);
  for (i = 0; i < 8; i++) s->block[63 - i] = (unsigned char)(bits >> (8 * i));
  compress(s->state, s->block);
  for (i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(s->state[i] >> 24);
    out[4 * i + 1] = (unsigned char)(s->state[i] >> 16);
    out[4 * i + 2] = (unsigned char)(s->state[i] >> 8);
    out[4 * i + 3] = (unsigned char)s->state[i];
  }
  memset(s, 0, sizeof *s);  /* best effort: no copy of the verifier left behind */
}

void or_sha256(const void *data, size_t n, unsigned char out[OR_SHA256_LEN]) {
  or_sha256_ctx s;
  or_sha256_init(&s);
  or_sha256_update(&s, data, n);
  or_sha256_final(&s, out);
}
