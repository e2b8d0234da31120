/*
** libFuzzer target for the incremental SSE parser (src/sse.c, src/buffer.c).
**
** Input layout (see fuzz/README.md):
**   byte 0      flags
**                 bits 0-1  max_event_bytes mode: 0 = 1 << 26 (the core's default),
**                           1 = 1 + byte1 % 64, 2 = byte1 (0 included), 3 = 1 + byte1 * 16
**                 bit  2    the third run feeds one byte at a time
**                 bits 3-5  the event callback stops parsing at that event (0 = never)
**                 bit  6    split positions are raw offsets (byte % (len + 1)) instead of
**                           scaled over the whole body (byte * (len + 1) / 256)
**                 bit  7    the allocation-failure run fails the 1st to 8th realloc (chosen by
**                           byte 7) instead of the 1st to 4th (chosen by byte 2)
**   byte 1      parameter of the max_event_bytes mode
**   bytes 2-7   six split positions
**   bytes 8-    the stream (an input shorter than 8 bytes is all header, no stream)
**
** Each input is parsed four ways, and all four must agree exactly (events in order,
** their types and data, the final return code, the count of comment lines):
**   A  a fresh parser, the stream in one piece, then or_sse_finish
**   R  an independent whole-buffer reference parser written here (the oracle)
**   B  a fresh parser, the stream cut at the six split positions (empty pieces included)
**   C  parser B after or_sse_reset, fed again: one byte at a time or at other positions
** Then a fifth run, N, has the buffers' realloc fail at one call (buffer_failing.c): it
** must end with OR_SSE_NOMEM (events so far a prefix of A's) or, when it never reached
** that call, exactly like A; after or_sse_reset the same parser must then parse the whole
** stream like A.
** Every piece is copied into its own exactly-sized heap block so that AddressSanitizer
** sees any read past a piece. Every event checks its own invariants on the spot.
*/
#include "sse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 8
#define NSPLITS 6

static void fail(const char *what) {
  fprintf(stderr, "fuzz_sse: invariant violated: %s\n", what);
  abort();
}
#define CHECK(cond) do { if (!(cond)) fail(#cond); } while (0)

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) abort();
  return p;
}

/* ---- recorded events ---- */

typedef struct event {
  char *type;
  size_t type_len;
  char *data;
  size_t data_len;
} event;

typedef struct run {
  event *ev;
  size_t n, cap;
  size_t max;         /* max_event_bytes of this run */
  size_t stop_after;  /* the callback returns non-zero at this event (0 = never) */
  int rc;             /* first non-OK code of feed/finish, or OR_SSE_OK */
  size_t comments;
} run;

static void run_init(run *r, size_t max, size_t stop_after) {
  memset(r, 0, sizeof *r);
  r->max = max;
  r->stop_after = stop_after;
}

static void run_free(run *r) {
  size_t i;
  for (i = 0; i < r->n; i++) {
    free(r->ev[i].type);
    free(r->ev[i].data);
  }
  free(r->ev);
  r->ev = NULL;
  r->n = r->cap = 0;
}

static char *copy_bytes(const char *s, size_t n) {
  char *c = (char *)xmalloc(n + 1);
  if (n) memcpy(c, s, n);
  c[n] = '\0';
  return c;
}

/* Records one event; returns non-zero when the run asked to stop here. */
static int record(run *r, const char *type, size_t type_len, const char *data, size_t data_len) {
  event *e;
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    event *ev = (event *)realloc(r->ev, cap * sizeof *ev);
    if (ev == NULL) abort();
    r->ev = ev;
    r->cap = cap;
  }
  e = &r->ev[r->n++];
  e->type = copy_bytes(type, type_len);
  e->type_len = type_len;
  e->data = copy_bytes(data, data_len);
  e->data_len = data_len;
  return r->stop_after != 0 && r->n == r->stop_after;
}

/* The parser's callback: invariants of every dispatched event, then a copy of it. */
static int on_event(void *ud, const char *type, size_t type_len, const char *data,
                    size_t data_len) {
  run *r = (run *)ud;
  CHECK(data != NULL);
  CHECK(type != NULL);
  CHECK(data_len <= r->max);
  CHECK(type_len <= r->max);
  /* read the terminators: ASan also proves data[0..data_len] is inside the block */
  CHECK(data[data_len] == '\0');
  CHECK(type[type_len] == '\0');
  /* lines end at CR or LF; data lines are joined with LF only, a type is one line */
  CHECK(memchr(data, '\r', data_len) == NULL);
  CHECK(memchr(type, '\r', type_len) == NULL);
  CHECK(memchr(type, '\n', type_len) == NULL);
  return record(r, type, type_len, data, data_len);
}

/* ---- allocation failures (buffer_failing.c routes src/buffer.c's realloc here) ---- */

static unsigned long realloc_fail_at;  /* 0: never; else the call that fails, counting down */

void *fuzz_sse_realloc(void *p, size_t n);

void *fuzz_sse_realloc(void *p, size_t n) {
  if (realloc_fail_at > 0 && --realloc_fail_at == 0) return NULL;
  return realloc(p, n);
}

/* ---- the parser under test, fed in pieces ---- */

/* Feeds body[cuts[i-1] .. cuts[i]) for each cut, each piece in its own heap block,
** stopping at the first non-OK code; finishes when all went well. */
static void feed_pieces(or_sse *p, run *r, const uint8_t *body, size_t len, const size_t *cuts,
                        size_t ncuts) {
  size_t i, from = 0;
  int rc = OR_SSE_OK;
  for (i = 0; i <= ncuts && rc == OR_SSE_OK; i++) {
    size_t to = i < ncuts ? cuts[i] : len;
    char *piece = (char *)xmalloc(to - from);
    if (to > from) memcpy(piece, body + from, to - from);
    rc = or_sse_feed(p, piece, to - from, on_event, r);
    free(piece);
    from = to;
  }
  if (rc == OR_SSE_OK) rc = or_sse_finish(p, on_event, r);
  r->rc = rc;
  r->comments = p->comments;
}

/* ---- the reference: the same framing rules, written plainly over the whole buffer ---- */

typedef struct growbuf {
  char *s;
  size_t len;
} growbuf;

static void gb_set(growbuf *g, const uint8_t *s, size_t n) {
  free(g->s);
  g->s = copy_bytes((const char *)s, n);
  g->len = n;
}

static void gb_add(growbuf *g, const uint8_t *s, size_t n) {
  char *t = (char *)xmalloc(g->len + n + 1);
  if (g->len) memcpy(t, g->s, g->len);
  if (n) memcpy(t + g->len, s, n);
  t[g->len + n] = '\0';
  free(g->s);
  g->s = t;
  g->len += n;
}

typedef struct ref_state {
  growbuf data, type;
  int has_data;
  size_t comments;
} ref_state;

/* A blank line: an event with at least one data line is dispatched. */
static int ref_dispatch(ref_state *st, run *r) {
  int stop = 0;
  if (st->has_data)
    stop = record(r, st->type.s ? st->type.s : "", st->type.len, st->data.s ? st->data.s : "",
                  st->data.len);
  st->data.len = 0;
  st->type.len = 0;
  st->has_data = 0;
  return stop ? OR_SSE_STOPPED : OR_SSE_OK;
}

static int ref_line(ref_state *st, run *r, const uint8_t *s, size_t n) {
  size_t name = 0, vstart, vlen;
  if (n == 0) return ref_dispatch(st, r);
  if (s[0] == ':') {
    st->comments++;
    return OR_SSE_OK;
  }
  while (name < n && s[name] != ':') name++;
  vstart = name < n ? name + 1 : n;
  if (vstart < n && s[vstart] == ' ') vstart++;
  vlen = n - vstart;
  if (name == 4 && memcmp(s, "data", 4) == 0) {
    /* the parser's bound: the data so far, one joining LF's worth, and the value */
    if (st->data.len + 1 + vlen > r->max) return OR_SSE_TOO_BIG;
    if (st->has_data) gb_add(&st->data, (const uint8_t *)"\n", 1);
    gb_add(&st->data, s + vstart, vlen);
    st->has_data = 1;
  } else if (name == 5 && memcmp(s, "event", 5) == 0) {
    gb_set(&st->type, s + vstart, vlen);
  }
  return OR_SSE_OK;
}

static void ref_parse(run *r, const uint8_t *s, size_t n) {
  static const uint8_t bom[3] = {0xEF, 0xBB, 0xBF};
  ref_state st;
  size_t i = 0;
  int rc = OR_SSE_OK;
  memset(&st, 0, sizeof st);
  if (n >= 3 && memcmp(s, bom, 3) == 0) {
    i = 3;
  } else if (n > 0 && n < 3 && memcmp(s, bom, n) == 0) {
    i = n;  /* the whole stream is an unfinished BOM: nothing */
  }
  while (rc == OR_SSE_OK) {
    size_t start = i;
    while (i < n && s[i] != '\r' && s[i] != '\n') i++;
    if (i - start > r->max) {
      rc = OR_SSE_TOO_BIG;
      break;
    }
    if (i == n) {
      /* end of stream: a last unterminated line, then what is left of the event */
      if (i > start) rc = ref_line(&st, r, s + start, i - start);
      if (rc == OR_SSE_OK) rc = ref_dispatch(&st, r);
      break;
    }
    rc = ref_line(&st, r, s + start, i - start);
    if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') i++;
    i++;
  }
  r->rc = rc;
  r->comments = st.comments;
  free(st.data.s);
  free(st.type.s);
}

/* ---- comparison ---- */

/* b's events are the first events of a, identical. */
static void prefix(const run *a, const run *b, const char *what) {
  size_t i;
  if (b->n > a->n) {
    fprintf(stderr, "fuzz_sse: %s: %zu events, more than %zu\n", what, b->n, a->n);
    fail("runs disagree");
  }
  for (i = 0; i < b->n; i++) {
    const event *x = &a->ev[i], *y = &b->ev[i];
    if (x->type_len != y->type_len || memcmp(x->type, y->type, x->type_len) != 0 ||
        x->data_len != y->data_len || memcmp(x->data, y->data, x->data_len) != 0) {
      fprintf(stderr, "fuzz_sse: %s: event %zu differs\n", what, i + 1);
      fail("runs disagree");
    }
  }
}

static void same(const run *a, const run *b, const char *what) {
  size_t i;
  if (a->rc != b->rc || a->n != b->n || a->comments != b->comments) {
    fprintf(stderr, "fuzz_sse: %s: rc %d vs %d, %zu vs %zu events, %zu vs %zu comments\n", what,
            a->rc, b->rc, a->n, b->n, a->comments, b->comments);
    fail("runs disagree");
  }
  for (i = 0; i < a->n; i++) {
    const event *x = &a->ev[i], *y = &b->ev[i];
    if (x->type_len != y->type_len || memcmp(x->type, y->type, x->type_len) != 0 ||
        x->data_len != y->data_len || memcmp(x->data, y->data, x->data_len) != 0) {
      fprintf(stderr, "fuzz_sse: %s: event %zu differs: type %zu/%zu bytes, data %zu/%zu bytes\n",
              what, i + 1, x->type_len, y->type_len, x->data_len, y->data_len);
      fail("runs disagree");
    }
  }
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
  uint8_t hdr[HEADER] = {0};
  const uint8_t *body;
  size_t len, max, stop_after, i;
  size_t cuts[NSPLITS], other[NSPLITS], *bytewise = NULL;
  or_sse p;
  run a, ref, b, c;

  memcpy(hdr, in, size < HEADER ? size : HEADER);
  body = size > HEADER ? in + HEADER : in + size;
  len = size > HEADER ? size - HEADER : 0;

  switch (hdr[0] & 3) {
    case 0: max = (size_t)1 << 26; break;
    case 1: max = 1 + (size_t)(hdr[1] % 64); break;
    case 2: max = hdr[1]; break;
    default: max = 1 + (size_t)hdr[1] * 16; break;
  }
  stop_after = (hdr[0] >> 3) & 7;

  for (i = 0; i < NSPLITS; i++) {
    uint8_t v = hdr[2 + i];
    if (hdr[0] & 0x40) {
      cuts[i] = v % (len + 1);
      other[i] = (size_t)v * (len + 1) / 256;
    } else {
      cuts[i] = (size_t)v * (len + 1) / 256;
      other[i] = (size_t)(uint8_t)(v * 37 + 11) % (len + 1);
    }
  }
  qsort(cuts, NSPLITS, sizeof cuts[0], cmp_size);
  qsort(other, NSPLITS, sizeof other[0], cmp_size);

  /* A: one piece, fresh parser */
  run_init(&a, max, stop_after);
  or_sse_init(&p, max);
  feed_pieces(&p, &a, body, len, NULL, 0);
  or_sse_free(&p);
  /* no allocation fails outside run N (ASan aborts rather than return NULL) */
  CHECK(a.rc != OR_SSE_NOMEM);

  /* R: the reference agrees with A */
  run_init(&ref, max, stop_after);
  ref_parse(&ref, body, len);
  same(&ref, &a, "reference vs one piece");
  run_free(&ref);

  /* B: in pieces, fresh parser */
  run_init(&b, max, stop_after);
  or_sse_init(&p, max);
  feed_pieces(&p, &b, body, len, cuts, NSPLITS);
  same(&a, &b, "one piece vs split");
  run_free(&b);

  /* C: the same parser after or_sse_reset, in other pieces */
  or_sse_reset(&p);
  CHECK(p.line.len == 0 && p.data.len == 0 && p.type.len == 0 && p.comments == 0);
  run_init(&c, max, stop_after);
  if ((hdr[0] & 4) && len > 0) {
    bytewise = (size_t *)xmalloc((len - 1) * sizeof *bytewise);
    for (i = 0; i + 1 < len; i++) bytewise[i] = i + 1;
    feed_pieces(&p, &c, body, len, bytewise, len - 1);
    free(bytewise);
  } else {
    feed_pieces(&p, &c, body, len, other, NSPLITS);
  }
  same(&a, &c, "one piece vs split after reset");
  run_free(&c);
  or_sse_free(&p);

  /* N: one realloc fails; then, after or_sse_reset, the same parser parses it all */
  run_init(&c, max, stop_after);
  or_sse_init(&p, max);
  realloc_fail_at = (hdr[0] & 0x80) ? 1 + hdr[7] % 8 : 1 + hdr[2] % 4;
  feed_pieces(&p, &c, body, len, cuts, NSPLITS);
  if (realloc_fail_at == 0) {
    CHECK(c.rc == OR_SSE_NOMEM);
    prefix(&a, &c, "one piece vs out of memory");
  } else {
    /* the failing call never came: nothing differs */
    CHECK(c.rc != OR_SSE_NOMEM);
    same(&a, &c, "one piece vs out of memory (not reached)");
  }
  realloc_fail_at = 0;
  run_free(&c);
  or_sse_reset(&p);
  run_init(&c, max, stop_after);
  feed_pieces(&p, &c, body, len, NULL, 0);
  same(&a, &c, "one piece vs one piece after out of memory and reset");
  run_free(&c);
  or_sse_free(&p);

  run_free(&a);
  return 0;
}
