/*
** libFuzzer target with Lua in the loop: arbitrary SSE and response bytes through the
** real stream assembly and error mapping (src/stream.c, src/errors.c, src/json.c), the
** way a request drives them (src/request.c: on_event, the coalescing flush, the outcome
** of an attempt), with a real Lua 5.4 and the lua-cjson the module loads.
**
** Input layout (see fuzz/README.md):
**   byte 0      flags
**                 bit  0    a plain (non-stream) body instead of an event stream
**                 bit  1    a legacy completion (choices carry `text`) instead of a chat
**                 bits 2-3  coalescing: chunks merged (or_stream_merge) in groups of
**                           0 = no coalescing, 1, 2 or 5
**                 bit  4    split positions are raw offsets (byte % (len + 1)) instead of
**                           scaled over the whole stream (byte * (len + 1) / 256)
**                 bit  5    the Lua heap gets a budget: byte 1 KiB past what the set-up took,
**                           so allocations fail (Lua memory errors) part-way
**                 bit  6    max_event_bytes = 1 + byte1 * 16 instead of 1 << 26
**                 bit  7    the chunk callback cancels at event byte2 (0: never)
**   byte 1      the budget / max_event_bytes parameter
**   byte 2      the event that cancels (with bit 7)
**   bytes 3-7   five split positions (stream); byte 3 the HTTP status and byte 4 the
**               Retry-After (body)
**   bytes 8-    the stream or the body (an input shorter than 8 bytes is all header)
**
** Lua errors are expected (memory, raised by the code under test or by cjson) and are
** caught with lua_pcall, as the module does. A crash, a sanitizer report, a leak, a Lua
** panic or a broken invariant (the shape of an assembled response, of a merged chunk and
** of an error object; the key never left in an error) is a finding.
*/
#include "bridge.h"
#include "platform.h"
#include "errmap.h"
#include "sse.h"

#include <dlfcn.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 8
#define NSPLITS 5

/* the API key the errors are scrubbed of; the seeds echo it back in error bodies */
static const char KEY[] = "sk-or-v1-fuzz-0123456789abcdef";

static void fail(const char *what) {
  fprintf(stderr, "fuzz_stream_lua: invariant violated: %s\n", what);
  abort();
}
#define CHECK(cond) do { if (!(cond)) fail(#cond); } while (0)

/* ---- a Lua allocator with an optional budget ---- */

typedef struct heap {
  size_t used;
  size_t limit;  /* 0: none */
} heap;

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  heap *h = (heap *)ud;
  size_t old = ptr ? osize : 0;
  void *p;
  if (nsize == 0) {
    free(ptr);
    h->used -= old;
    return NULL;
  }
  if (h->limit && nsize > old && h->used - old + nsize > h->limit) return NULL;
  p = realloc(ptr, nsize);
  if (p == NULL) return NULL;
  h->used = h->used - old + nsize;
  return p;
}

static int at_panic(lua_State *L) {
  fprintf(stderr, "fuzz_stream_lua: Lua panic: %s\n", lua_tostring(L, -1));
  abort();
  return 0;
}

/* ---- the run of one input ---- */

enum { S_ACC = 1, S_PENDING, S_STASH, S_TOP = S_STASH };

typedef struct harness {
  lua_State *L;
  const uint8_t *body;
  size_t len;
  int legacy;
  int group;           /* coalescing group size; 0: every chunk delivered on its own */
  int pending;         /* chunks held back */
  int cancel_at;       /* the delivery that returns false; 0: never */
  int events, delivered, done_seen, failed, decode_failed, cancelled;
  or_sse sse;
  size_t max_event;
  size_t splits[NSPLITS];
  char *scratch;       /* the piece being fed, or the body: freed whatever happens */
  int status;
  double retry_after;
} harness;

static int is_sequence(lua_State *L, int t) {
  lua_Integer n = 0;
  int ok = 1;
  t = or_absindex(L, t);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    n++;
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) ok = 0;
  }
  return ok && n == (lua_Integer)or_rawlen(L, t);
}

/* A merged chunk: one table, `coalesced` the count, `choices` a sequence of tables with
** a numeric index. */
static void check_merged(lua_State *L, int m, int count) {
  int i, n;
  m = or_absindex(L, m);
  CHECK(lua_istable(L, m));
  lua_getfield(L, m, "coalesced");
  CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == count);
  lua_getfield(L, m, "choices");
  CHECK(lua_istable(L, -1) && is_sequence(L, -1));
  n = (int)or_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    CHECK(lua_istable(L, -1));
    lua_getfield(L, -1, "index");
    CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0);
    lua_getfield(L, -2, "delta");
    CHECK(lua_istable(L, -1));
    lua_pop(L, 3);
  }
  lua_pop(L, 2);
}

/* The chunk callback: counts, and returns false at cancel_at. */
static int deliver(harness *h) {
  h->delivered++;
  return !(h->cancel_at && h->delivered == h->cancel_at);
}

/* request.c's flush: the held-back chunks merged into one and delivered. */
static int flush(harness *h) {
  lua_State *L = h->L;
  if (h->group == 0 || h->pending == 0) return 1;
  or_stream_merge(L, S_PENDING);
  check_merged(L, -1, h->pending);
  lua_pop(L, 1);
  lua_newtable(L);
  lua_replace(L, S_PENDING);
  h->pending = 0;
  if (!deliver(h)) {
    h->cancelled = 1;
    return 0;
  }
  return 1;
}

/* request.c's on_event: decode, absorb, deliver (or hold back), stop on an error chunk. */
static int on_event(void *ud, const char *type, size_t type_len, const char *data, size_t len) {
  harness *h = (harness *)ud;
  lua_State *L = h->L;
  int top = lua_gettop(L), chunk, failed;
  (void)type;
  (void)type_len;
  CHECK(data[len] == '\0');
  if (h->done_seen) return 0;
  if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
    h->done_seen = 1;
    return 0;
  }
  if (!or_json_decode(L, data, len) || !lua_istable(L, -1) || !or_json_is_object_text(data, len)) {
    char snippet[120];
    or_body_snippet(data, len, snippet, sizeof snippet);
    lua_pushfstring(L, "stream event is not a JSON object (%s): %s",
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "wrong type", snippet);
    lua_replace(L, S_STASH);
    h->decode_failed = 1;
    lua_settop(L, top);
    return 1;
  }
  chunk = lua_gettop(L);
  h->events++;
  failed = or_stream_absorb(L, S_ACC, chunk, h->events == 1, h->legacy);
  CHECK(lua_gettop(L) == chunk);
  if (h->group) {
    lua_pushvalue(L, chunk);
    lua_rawseti(L, S_PENDING, (lua_Integer)or_rawlen(L, S_PENDING) + 1);
    h->pending++;
    if ((failed || h->pending >= h->group) && !flush(h)) {
      lua_settop(L, top);
      return 1;
    }
  } else if (!deliver(h)) {
    h->cancelled = 1;
    lua_settop(L, top);
    return 1;
  }
  if (failed) {
    lua_pushvalue(L, chunk);
    lua_replace(L, S_STASH);
    h->failed = 1;
    lua_settop(L, top);
    return 1;
  }
  lua_settop(L, top);
  return 0;
}

/* The key must be gone from every string of the error, keys included, at any depth. */
static void check_scrubbed(lua_State *L, int t, int depth) {
  if (depth > 1100) return;
  luaL_checkstack(L, 4, "check_scrubbed");
  t = or_absindex(L, t);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    /* string values, as strstr sees them: a key after a NUL byte, and the key as a table
    ** key, are issue 11's defect 4, fixed elsewhere and not checked here yet */
    if (lua_type(L, -1) == LUA_TSTRING) CHECK(strstr(lua_tostring(L, -1), KEY) == NULL);
    if (lua_istable(L, -1) && !lua_getmetatable(L, -1)) check_scrubbed(L, -1, depth + 1);
    else if (lua_istable(L, -1)) lua_pop(L, 1);
    lua_pop(L, 1);
  }
}

/* An assembled response: object, choices a sequence of tables with index and a message
** (chat: role and content string or null) or a text (legacy). */
static void check_result(lua_State *L, int res, int legacy) {
  int i, n;
  res = or_absindex(L, res);
  CHECK(lua_istable(L, res));
  lua_getfield(L, res, "object");
  CHECK(lua_type(L, -1) == LUA_TSTRING);
  lua_getfield(L, res, "choices");
  CHECK(lua_istable(L, -1) && is_sequence(L, -1));
  n = (int)or_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    CHECK(lua_istable(L, -1));
    lua_getfield(L, -1, "index");
    CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0);
    lua_pop(L, 1);
    if (legacy) {
      lua_getfield(L, -1, "text");
      CHECK(lua_type(L, -1) == LUA_TSTRING);
      lua_pop(L, 1);
    } else {
      lua_getfield(L, -1, "message");
      CHECK(lua_istable(L, -1));
      lua_getfield(L, -1, "role");
      CHECK(lua_type(L, -1) == LUA_TSTRING);
      lua_getfield(L, -2, "content");
      CHECK(lua_type(L, -1) == LUA_TSTRING || or_is_null(L, -1));
      lua_getfield(L, -3, "tool_calls");
      if (!lua_isnil(L, -1)) {
        int j, m;
        CHECK(lua_istable(L, -1) && is_sequence(L, -1));
        m = (int)or_rawlen(L, -1);
        for (j = 1; j <= m; j++) {
          lua_rawgeti(L, -1, j);
          lua_getfield(L, -1, "function");
          CHECK(lua_istable(L, -1));
          lua_getfield(L, -1, "arguments");
          CHECK(lua_type(L, -1) == LUA_TSTRING);
          lua_pop(L, 3);
        }
      }
      lua_pop(L, 4);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
}

/* A conversation sends the assembled message back on its next turn: encode it in a
** request as the module does (json.c's walk, markers, exact numbers). Runs under its own
** lua_pcall: a reply may hold what JSON cannot carry (NaN from cjson's lenient decoder),
** refused with `bad argument`, as the module refuses it. */
static int resend_protected(lua_State *L) {
  int params, res = 1;
  lua_createtable(L, 0, 2);
  params = lua_gettop(L);
  lua_pushliteral(L, "openai/gpt-4o-mini");
  lua_setfield(L, params, "model");
  lua_createtable(L, 2, 0);
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "user");
  lua_setfield(L, -2, "role");
  lua_pushliteral(L, "hi");
  lua_setfield(L, -2, "content");
  lua_rawseti(L, -2, 1);
  lua_getfield(L, res, "choices");
  lua_rawgeti(L, -1, 1);
  if (lua_istable(L, -1)) lua_getfield(L, -1, "message");
  else lua_pushnil(L);
  if (lua_istable(L, -1)) {
    lua_rawseti(L, -4, 2);
    lua_pop(L, 2);
  } else {
    lua_pop(L, 3);
  }
  lua_setfield(L, params, "messages");
  or_json_push_request(L, params, 1, 1);
  CHECK(lua_type(L, -1) == LUA_TSTRING);
  return 0;
}

/* Encodes a decoded body that is not a reply, as a request would carry it. */
static int encode_protected(lua_State *L) {
  or_json_push_request(L, 1, 0, 1);
  CHECK(lua_type(L, -1) == LUA_TSTRING);
  return 0;
}

/* Runs f(value at idx) protected: a memory error goes on up (the budget ends the run),
** a `bad argument` refusal is expected, any other error is a finding. */
static void call_refusable(lua_State *L, lua_CFunction f, int idx) {
  idx = or_absindex(L, idx);
  lua_pushcfunction(L, f);
  lua_pushvalue(L, idx);
  switch (lua_pcall(L, 1, 0, 0)) {
    case LUA_OK:
      return;
    case LUA_ERRMEM:
      lua_error(L);
      return;
    default: {
      const char *msg = lua_tostring(L, -1);
      if (msg == NULL || strstr(msg, "bad argument #1") == NULL) {
        fprintf(stderr, "fuzz_stream_lua: unexpected error encoding: %s\n", msg ? msg : "?");
        abort();
      }
      lua_pop(L, 1);
    }
  }
}

/* request.c's set_common and set_partial, then what a caller does with an error: print it. */
static void finish_error(harness *h, int err, int with_partial) {
  lua_State *L = h->L;
  err = or_absindex(L, err);
  CHECK(lua_istable(L, err));
  if (h->status > 0) or_error_set_number(L, err, "status", (double)h->status);
  if (h->retry_after >= 0) {
    lua_getfield(L, err, "retry_after");
    if (lua_isnil(L, -1)) or_error_set_number(L, err, "retry_after", h->retry_after);
    lua_pop(L, 1);
  }
  lua_getfield(L, err, "generation_id");
  if (lua_isnil(L, -1)) or_error_set_string(L, err, "generation_id", "gen-1740000000-AbCdEf123");
  lua_pop(L, 1);
  /* the partial first, then the scrub: streamed text may echo the key too (request.c
  ** scrubbed before attaching the partial; this harness found that at once) */
  if (with_partial && or_stream_has_data(L, S_ACC)) {
    or_stream_result(L, S_ACC, h->legacy);
    check_result(L, -1, h->legacy);
    lua_setfield(L, err, "partial");
  }
  or_error_scrub(L, err, KEY, sizeof KEY - 1);
  check_scrubbed(L, err, 0);
  lua_getfield(L, err, "kind");
  CHECK(lua_type(L, -1) == LUA_TSTRING);
  lua_pop(L, 1);
  luaL_tolstring(L, err, NULL);  /* the error's __tostring (errors.c) */
  CHECK(strncmp(lua_tostring(L, -1), "openrouter ", 11) == 0);
  lua_pop(L, 1);
}

static int feed_protected(lua_State *L) {
  harness *h = (harness *)lua_touserdata(L, lua_upvalueindex(1));
  size_t at = 0;
  int i, rc = OR_SSE_OK;
  lua_settop(L, 0);
  or_stream_new_acc(L);  /* S_ACC */
  lua_newtable(L);       /* S_PENDING */
  lua_pushnil(L);        /* S_STASH */
  /* the stream in pieces, each in its own exactly-sized block: a read past one is seen */
  for (i = 0; i <= NSPLITS && rc == OR_SSE_OK; i++) {
    size_t end = i < NSPLITS ? h->splits[i] : h->len, n;
    char *piece;
    if (end < at) end = at;
    n = end - at;
    h->scratch = piece = (char *)malloc(n ? n : 1);
    if (piece == NULL) abort();
    if (n) memcpy(piece, h->body + at, n);
    rc = or_sse_feed(&h->sse, piece, n, on_event, h);
    free(piece);
    h->scratch = NULL;
    CHECK(lua_gettop(L) == S_TOP);
    at = end;
  }
  if (rc == OR_SSE_OK) rc = or_sse_finish(&h->sse, on_event, h);
  CHECK(lua_gettop(L) == S_TOP);
  CHECK(rc != OR_SSE_NOMEM);
  /* held-back chunks go out before the end, unless the stream was cancelled */
  if (!h->cancelled) flush(h);
  if (h->cancelled) {
    or_error_new(L, "cancelled", "a callback returned false");
    finish_error(h, -1, 1);
  } else if (h->decode_failed) {
    or_error_new(L, "decode", lua_tostring(L, S_STASH));
    finish_error(h, -1, 1);
  } else if (rc == OR_SSE_TOO_BIG) {
    or_error_new(L, "decode", "response larger than max_response_bytes");
    or_error_set_string(L, -1, "code", "response_too_large");
    finish_error(h, -1, 1);
  } else if (h->failed) {
    int err = lua_gettop(L) + 1;
    or_error_new(L, "api", NULL);
    or_error_fill_api(L, err, S_STASH);
    lua_getfield(L, S_STASH, "id");
    if (lua_type(L, -1) == LUA_TSTRING) lua_setfield(L, err, "generation_id");
    else lua_pop(L, 1);
    finish_error(h, err, 1);
  } else if (h->events == 0) {
    or_error_new(L, "decode", "the event stream ended without any event");
    finish_error(h, -1, 1);
  } else {
    or_stream_result(L, S_ACC, h->legacy);
    check_result(L, -1, h->legacy);
    if (!h->legacy) call_refusable(L, resend_protected, -1);
  }
  return 0;
}

static int has_error_object(lua_State *L, int body) {
  int yes;
  lua_getfield(L, body, "error");
  yes = lua_istable(L, -1);
  lua_pop(L, 1);
  return yes;
}

/* request.c's outcome of a plain body: decode, an error object, an HTML page's title. */
static int body_protected(lua_State *L) {
  harness *h = (harness *)lua_touserdata(L, lua_upvalueindex(1));
  char snippet[201];
  char *body = (char *)malloc(h->len + 1);  /* or_buffer keeps its bytes NUL-terminated */
  if (body == NULL) abort();
  h->scratch = body;
  memcpy(body, h->body, h->len);
  body[h->len] = '\0';
  lua_settop(L, 0);
  or_stream_new_acc(L);
  lua_newtable(L);
  lua_pushnil(L);
  if (h->status / 100 == 2) {
    if (h->len == 0) {
      or_error_new(L, "decode", "empty response body");
      finish_error(h, -1, 0);
    } else if (!or_json_decode(L, body, h->len)) {
      or_body_snippet(body, h->len, snippet, sizeof snippet);
      lua_pushfstring(L, "response is not valid JSON (%s): %s", lua_tostring(L, -1), snippet);
      or_error_new(L, "decode", lua_tostring(L, -1));
      finish_error(h, -1, 0);
    } else if (!lua_istable(L, -1) || !or_json_is_object_text(body, h->len)) {
      or_error_new(L, "decode", "response is not a JSON object");
      finish_error(h, -1, 0);
    } else if (has_error_object(L, lua_gettop(L))) {
      int err = lua_gettop(L) + 1;
      or_error_new(L, "api", NULL);
      or_error_fill_api(L, err, err - 1);
      finish_error(h, err, 0);
    } else {
      /* a reply: encoded again as the next turn of a conversation would */
      int res = lua_gettop(L), reply;
      lua_getfield(L, res, "choices");
      reply = lua_istable(L, -1);
      lua_pop(L, 1);
      call_refusable(L, reply ? resend_protected : encode_protected, res);
    }
  } else if (h->len > 0 && or_json_decode(L, body, h->len) && lua_istable(L, -1) &&
             has_error_object(L, lua_gettop(L))) {
    int err = lua_gettop(L) + 1;
    or_error_new(L, "api", NULL);
    if (h->retry_after >= 0) or_error_set_number(L, err, "retry_after", h->retry_after);
    or_error_fill_api(L, err, err - 1);
    finish_error(h, err, 0);
  } else {
    const char *title = strstr(body, "<title>"), *end;
    if (title && (end = strstr(title, "</title>")) != NULL && end > title + 7)
      or_body_snippet(title + 7, (size_t)(end - title - 7), snippet, sizeof snippet);
    else
      or_body_snippet(body, h->len, snippet, sizeof snippet);
    or_error_new(L, "http", snippet[0] ? snippet : "empty response body");
    finish_error(h, -1, 0);
  }
  return 0;
}

static size_t split_at(uint8_t b, size_t len, int raw) {
  return raw ? b % (len + 1) : (size_t)b * (len + 1) / 256;
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

static const int statuses[] = {200, 201, 400, 401, 402, 403, 404, 408, 413, 422, 429,
                               500, 502, 503, 504, 524, 529, 302};

/* lua-cjson stays loaded for the whole run: each input's lua_close would unload it, and
** a report inside it would then name an unknown module. Found as `require` finds it. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  lua_State *L = luaL_newstate();
  const char *path;
  (void)argc;
  (void)argv;
  if (L == NULL) abort();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchpath");
  lua_pushliteral(L, "cjson");
  lua_getfield(L, -3, "cpath");
  lua_call(L, 2, 1);
  path = lua_tostring(L, -1);
  if (path == NULL || dlopen(path, RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE) == NULL) {
    fprintf(stderr, "fuzz_stream_lua: lua-cjson not found for Lua 5.4 (apt-get install lua-cjson)\n");
    abort();
  }
  lua_close(L);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t hd[HEADER] = {0};
  harness h;
  heap mem = {0, 0};
  lua_State *L;
  int i;
  memcpy(hd, data, size < HEADER ? size : HEADER);
  memset(&h, 0, sizeof h);
  h.body = size > HEADER ? data + HEADER : (const uint8_t *)"";
  h.len = size > HEADER ? size - HEADER : 0;
  h.legacy = (hd[0] & 0x02) != 0;
  h.group = (int[]){0, 1, 2, 5}[(hd[0] >> 2) & 3];
  h.max_event = (hd[0] & 0x40) ? 1 + (size_t)hd[1] * 16 : (size_t)1 << 26;
  h.cancel_at = (hd[0] & 0x80) ? hd[2] : 0;
  for (i = 0; i < NSPLITS; i++) h.splits[i] = split_at(hd[3 + i], h.len, hd[0] & 0x10);
  qsort(h.splits, NSPLITS, sizeof h.splits[0], cmp_size);
  h.status = (hd[0] & 0x01) ? statuses[hd[3] % (sizeof statuses / sizeof statuses[0])] : 200;
  h.retry_after = (hd[0] & 0x01) && hd[4] >= 128 ? (double)(hd[4] - 128) : -1;

  L = lua_newstate(budget_alloc, &mem);
  if (L == NULL) abort();
  lua_atpanic(L, at_panic);
  h.L = L;
  luaL_openlibs(L);
  /* the module's set-up: cjson as it loads it, the error metatable, the array marker */
  lua_pushcfunction(L, or_json_open);
  if (lua_pcall(L, 0, 0, 0) != 0) {
    fprintf(stderr, "fuzz_stream_lua: cannot load lua-cjson: %s\n", lua_tostring(L, -1));
    abort();
  }
  or_errors_open(L);
  luaL_newmetatable(L, OR_ARRAY_MT);
  lua_pop(L, 1);
  if (hd[0] & 0x20) mem.limit = mem.used + (size_t)hd[1] * 1024;

  or_sse_init(&h.sse, h.max_event);
  lua_pushlightuserdata(L, &h);
  lua_pushcclosure(L, (hd[0] & 0x01) ? body_protected : feed_protected, 1);
  if (lua_pcall(L, 0, 0, 0) != 0) {
    /* only memory errors are expected (the budget); anything else is a finding */
    const char *msg = lua_tostring(L, -1);
    if (!mem.limit || msg == NULL || strstr(msg, "not enough memory") == NULL) {
      fprintf(stderr, "fuzz_stream_lua: unexpected Lua error: %s\n", msg ? msg : "(not a string)");
      abort();
    }
  }
  free(h.scratch);
  or_sse_free(&h.sse);
  lua_close(L);
  CHECK(mem.used == 0);
  return 0;
}
