/*
** Incremental server-sent events parser.
*/
#include "sse.h"

#include <string.h>

void or_sse_init(or_sse *p, size_t max_event_bytes) {
  or_buffer_init(&p->line);
  or_buffer_init(&p->data);
  or_buffer_init(&p->type);
  p->max_event_bytes = max_event_bytes;
  p->has_data = 0;
  p->after_cr = 0;
  p->at_start = 1;
  p->comments = 0;
}

void or_sse_reset(or_sse *p) {
  or_buffer_clear(&p->line);
  or_buffer_clear(&p->data);
  or_buffer_clear(&p->type);
  p->has_data = 0;
  p->after_cr = 0;
  p->at_start = 1;
  p->comments = 0;
}

void or_sse_free(or_sse *p) {
  or_buffer_free(&p->line);
  or_buffer_free(&p->data);
  or_buffer_free(&p->type);
}

static int dispatch(or_sse *p, or_sse_event_fn fn, void *ud) {
  int stop = 0;
  if (p->has_data) {
    if (p->data.data == NULL && or_buffer_append(&p->data, "", 0) != 0) return OR_SSE_NOMEM;
    if (p->type.data == NULL && or_buffer_append(&p->type, "", 0) != 0) return OR_SSE_NOMEM;
    stop = fn(ud, p->type.data, p->type.len, p->data.data, p->data.len);
  }
  or_buffer_clear(&p->data);
  or_buffer_clear(&p->type);
  p->has_data = 0;
  return stop ? OR_SSE_STOPPED : OR_SSE_OK;
}

/* One complete line, without its terminator. */
static int process_line(or_sse *p, const char *line, size_t len, or_sse_event_fn fn, void *ud) {
  const char *colon, *value;
  size_t name_len, value_len;
  if (len == 0) return dispatch(p, fn, ud);
  if (line[0] == ':') {
    p->comments++;
    return OR_SSE_OK;
  }
  colon = (const char *)memchr(line, ':', len);
  if (colon) {
    name_len = (size_t)(colon - line);
    value = colon + 1;
    value_len = len - name_len - 1;
    if (value_len > 0 && value[0] == ' ') {
      value++;
      value_len--;
    }
  } else {
    name_len = len;
    value = line + len;
    value_len = 0;
  }
  if (name_len == 4 && memcmp(line, "data", 4) == 0) {
    if (p->data.len + value_len + 1 > p->max_event_bytes) return OR_SSE_TOO_BIG;
    if (p->has_data && or_buffer_append(&p->data, "\n", 1) != 0) return OR_SSE_NOMEM;
    if (or_buffer_append(&p->data, value, value_len) != 0) return OR_SSE_NOMEM;
    p->has_data = 1;
  } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
    or_buffer_clear(&p->type);
    if (or_buffer_append(&p->type, value, value_len) != 0) return OR_SSE_NOMEM;
  }
  /* "id", "retry" and unknown fields are ignored: a client library has no
  ** reconnection logic for them to drive. */
  return OR_SSE_OK;
}

int or_sse_feed(or_sse *p, const char *bytes, size_t n, or_sse_event_fn fn, void *ud) {
  const char *end = bytes + n;
  int rc;
  if (p->at_start && n > 0) {
    /* The BOM may itself arrive split: collect up to three bytes first. */
    static const char bom[3] = {'\xEF', '\xBB', '\xBF'};
    size_t have = p->line.len, take = 0;
    while (have + take < 3 && take < n && bytes[take] == bom[have + take]) take++;
    if (have + take == 3) {
      or_buffer_clear(&p->line);
      bytes += take;
      p->at_start = 0;
    } else if (take == n && have + take < 3) {
      /* still a BOM prefix: keep it until we know */
      if (or_buffer_append(&p->line, bytes, n) != 0) return OR_SSE_NOMEM;
      return OR_SSE_OK;
    } else {
      p->at_start = 0;  /* not a BOM; whatever was held stays as line content */
    }
  }
  while (bytes < end) {
    const char *cr, *lf, *eol;
    size_t chunk;
    if (p->after_cr) {
      p->after_cr = 0;
      if (*bytes == '\n') {
        bytes++;
        continue;
      }
    }
    chunk = (size_t)(end - bytes);
    /* LF first, then CR only before it: each line is scanned once */
    lf = (const char *)memchr(bytes, '\n', chunk);
    cr = (const char *)memchr(bytes, '\r', lf ? (size_t)(lf - bytes) : chunk);
    eol = cr ? cr : lf;
    if (eol == NULL) {
      if (p->line.len + chunk > p->max_event_bytes) return OR_SSE_TOO_BIG;
      if (or_buffer_append(&p->line, bytes, chunk) != 0) return OR_SSE_NOMEM;
      return OR_SSE_OK;
    }
    if (p->line.len > 0) {
      size_t piece = (size_t)(eol - bytes);
      if (p->line.len + piece > p->max_event_bytes) return OR_SSE_TOO_BIG;
      if (or_buffer_append(&p->line, bytes, piece) != 0) return OR_SSE_NOMEM;
      rc = process_line(p, p->line.data, p->line.len, fn, ud);
      or_buffer_clear(&p->line);
    } else {
      if ((size_t)(eol - bytes) > p->max_event_bytes) return OR_SSE_TOO_BIG;
      rc = process_line(p, bytes, (size_t)(eol - bytes), fn, ud);
    }
    if (*eol == '\r') p->after_cr = 1;
    bytes = eol + 1;
    if (rc != OR_SSE_OK) return rc;
  }
  return OR_SSE_OK;
}

int or_sse_finish(or_sse *p, or_sse_event_fn fn, void *ud) {
  int rc = OR_SSE_OK;
  if (p->line.len > 0 && !(p->at_start && p->line.len < 3 && p->line.data[0] == '\xEF')) {
    rc = process_line(p, p->line.data, p->line.len, fn, ud);
    or_buffer_clear(&p->line);
    if (rc != OR_SSE_OK) return rc;
  }
  return dispatch(p, fn, ud);
}
