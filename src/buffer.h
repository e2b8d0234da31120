/*
** A growable byte buffer (in the spirit of lua-cjson's strbuf).
** Plain C, no Lua: the SSE parser and the fuzzer use it too.
*/
#ifndef OPENROUTER_BUFFER_H
#define OPENROUTER_BUFFER_H

#include <stddef.h>

typedef struct or_buffer {
  char *data;     /* always NUL-terminated when non-NULL */
  size_t len;
  size_t cap;
} or_buffer;

void or_buffer_init(or_buffer *b);
/* Returns 0 on success, -1 when memory is exhausted (the buffer is unchanged). */
int or_buffer_append(or_buffer *b, const void *bytes, size_t n);
/* Makes room for `extra` more bytes at once (0 or -1 as or_buffer_append). */
int or_buffer_reserve(or_buffer *b, size_t extra);
void or_buffer_clear(or_buffer *b);      /* keeps the allocation for reuse */
void or_buffer_free(or_buffer *b);
/* Overwrites the contents with zeros before freeing: for buffers that held the API key. */
void or_buffer_free_secure(or_buffer *b);

#endif
