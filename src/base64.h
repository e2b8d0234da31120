/*
** Base64 (RFC 4648): the standard alphabet with padding, for data URLs and
** base64 JSON fields, and the URL-safe one without padding, for the PKCE
** code challenge. Plain C, no Lua (base layer: doc/design.md, "Layers").
*/
#ifndef OPENROUTER_BASE64_H
#define OPENROUTER_BASE64_H

#include <stddef.h>

#define OR_BASE64_STD 0  /* A-Z a-z 0-9 + /, padded with '=' */
#define OR_BASE64_URL 1  /* A-Z a-z 0-9 - _, no padding */

/* The length of the encoding of n bytes (without a terminating NUL), or 0
** when it would not fit in a size_t (n near SIZE_MAX; n = 0 gives 0 too). */
size_t or_base64_encoded_len(size_t n, int variant);

/* Encodes n bytes of in to out, which has room for or_base64_encoded_len(n,
** variant) bytes; writes no NUL. Returns the number of bytes written. */
size_t or_base64_encode(const unsigned char *in, size_t n, char *out, int variant);

#endif
