/*
** SHA-256 (FIPS 180-4), for the PKCE code challenge: the module links only
** libcurl, whose TLS library it cannot count on. Plain C, no Lua (base
** layer: doc/design.md, "Layers").
*/
#ifndef OPENROUTER_SHA256_H
#define OPENROUTER_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define OR_SHA256_LEN 32

typedef struct or_sha256_ctx {
  uint32_t state[8];
  uint64_t bits;            /* message length so far, in bits */
  unsigned char block[64];  /* the partial block */
  size_t used;              /* bytes in block */
} or_sha256_ctx;

void or_sha256_init(or_sha256_ctx *s);
void or_sha256_update(or_sha256_ctx *s, const void *data, size_t n);
void or_sha256_final(or_sha256_ctx *s, unsigned char out[OR_SHA256_LEN]);
/* The digest of n bytes at once. */
void or_sha256(const void *data, size_t n, unsigned char out[OR_SHA256_LEN]);

#endif
