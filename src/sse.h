/*
** Incremental server-sent events parser (WHATWG framing).
** Plain C with no Lua dependency, so it can be fuzzed on its own.
**
** Bytes may be fed split anywhere. Lines end with LF, CRLF or CR; a leading
** UTF-8 BOM is skipped; lines starting with ':' are comments; "data" lines of
** one event are joined with LF; a blank line dispatches the event.
*/
#ifndef OPENROUTER_SSE_H
#define OPENROUTER_SSE_H

#include <stddef.h>
#include "buffer.h"

enum {
  OR_SSE_OK = 0,
  OR_SSE_STOPPED,   /* the event callback returned non-zero */
  OR_SSE_NOMEM,
  OR_SSE_TOO_BIG    /* one line or one event exceeded max_event_bytes */
};

/* Called once per dispatched event. `type` is the "event:" field ("" when
** absent), `data` the joined data lines (NUL-terminated). Return non-zero
** to stop parsing. */
typedef int (*or_sse_event_fn)(void *ud, const char *type, size_t type_len,
                               const char *data, size_t data_len);

typedef struct or_sse {
  or_buffer line;        /* an incomplete line carried over between feeds */
  or_buffer data;        /* data lines of the event being built */
  or_buffer type;        /* its "event:" field */
  int has_data;          /* at least one data line seen (data may be empty) */
  int after_cr;          /* last byte was CR: a following LF belongs to it */
  int at_start;          /* nothing fed yet: a BOM may follow */
  size_t max_event_bytes;
  size_t comments;       /* comment lines seen (keep-alives) */
} or_sse;

void or_sse_init(or_sse *p, size_t max_event_bytes);
void or_sse_reset(or_sse *p);   /* ready for a new stream, allocations kept */
void or_sse_free(or_sse *p);
int or_sse_feed(or_sse *p, const char *bytes, size_t n, or_sse_event_fn fn, void *ud);
/* End of stream: a final unterminated line is processed and an event still
** being built is dispatched (lenient: servers do end without a blank line). */
int or_sse_finish(or_sse *p, or_sse_event_fn fn, void *ud);

#endif
