/*
** Growable byte buffer.
*/
#include "buffer.h"

#include <stdlib.h>
#include <string.h>

void or_buffer_init(or_buffer *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

static int reserve(or_buffer *b, size_t extra) {
  size_t need, cap;
  char *p;
  if (extra > (size_t)-1 - b->len - 1) return -1;
  need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap = (cap > (size_t)-1 / 2) ? need : cap * 2;
  p = (char *)realloc(b->data, cap);
  if (p == NULL) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

int or_buffer_reserve(or_buffer *b, size_t extra) {
  return reserve(b, extra);
}

int or_buffer_append(or_buffer *b, const void *bytes, size_t n) {
  if (reserve(b, n) != 0) return -1;
  if (n > 0) memcpy(b->data + b->len, bytes, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

void or_buffer_clear(or_buffer *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

void or_buffer_free(or_buffer *b) {
  free(b->data);
  or_buffer_init(b);
}

void or_buffer_free_secure(or_buffer *b) {
  if (b->data) {
    /* volatile so the compiler cannot drop the wipe of memory about to be freed */
    volatile char *p = b->data;
    size_t i;
    for (i = 0; i < b->cap; i++) p[i] = 0;
  }
  or_buffer_free(b);
}
