/*
** src/buffer.c as it is, but its realloc goes through fuzz_sse_realloc, which fails
** on the call the fuzz input chooses: fuzz_sse drives the OR_SSE_NOMEM paths with it.
*/
#include <stdlib.h>

void *fuzz_sse_realloc(void *p, size_t n);
#define realloc fuzz_sse_realloc
#include "../src/buffer.c"
