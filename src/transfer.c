/*
** One HTTP exchange: the request's body and headers, the curl callbacks that
** parse the response (SSE events decoded and handed to Lua as they come), and
** the mapping of an ended attempt to a result, an error or a retry. multi.c
** drives many of these at once.
**
** Lua callbacks run inside curl callbacks. They are always called through
** lua_pcall, so a Lua error never unwinds through libcurl's frames: it is
** stashed, the transfer is aborted, and it is reported after cleanup.
*/
#include "engine.h"

#include <stdlib.h>
#include <string.h>

/* ---- lifecycle ---- */

static void stash(lua_State *L, or_request *r) {  /* pops the value */
  or_unref(L, &r->refs[OR_REF_STASH]);
  r->refs[OR_REF_STASH] = luaL_ref(L, LUA_REGISTRYINDEX);
}


static const char *const method_names[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

/* Pushes the body of `call` as the string to send: a table as JSON (an action's
** params with "stream": true added when streaming), a string as it is. */
static void push_body(lua_State *L, const or_call *call) {
  if (lua_type(L, call->body) == LUA_TSTRING)
    lua_pushvalue(L, call->body);
  else
    or_json_push_request(L, call->body, call->body_is_params && call->stream, call->body);
}

/* A header list of its own, for a request with extra headers or a content type
** of its own: the client's lines (but those the extras replace), then Accept,
** Content-Type and the extras. Raises on memory. */
static struct curl_slist *own_headers(lua_State *L, or_client *c, const or_call *call, int post);

or_request *or_request_new(lua_State *L, or_client *c, const or_call *call) {
  or_request *r;
  size_t blen = strlen(c->base_url), plen = strlen(call->path), i;
  int has_body = call->body != 0;
  /* everything that may raise (encoding) happens before any C allocation */
  if (has_body) push_body(L, call);
  r = (or_request *)calloc(1, sizeof *r);
  if (r == NULL) luaL_error(L, "openrouter: not enough memory");
  for (i = 0; i < OR_REF_COUNT; i++) r->refs[i] = LUA_NOREF;
  or_buffer_init(&r->now.response);
  or_buffer_init(&r->now.header_lines);
  or_sse_init(&r->now.sse, c->max_response_bytes);
  if (has_body) {  /* the string is sent as it is, not copied */
    r->body = lua_tolstring(L, -1, &r->body_len);
    r->refs[OR_REF_BODY] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  r->client = c;
  r->method = call->method;
  r->shape = call->shape;
  r->assembly = call->assembly;
  r->stream = call->stream;
  r->state = OR_STATE_QUEUED;
  r->now.retry_after = -1;
  r->url = (char *)malloc(blen + plen + 1);
  if (!r->url) {
    or_request_free(L, r);
    luaL_error(L, "openrouter: not enough memory");
  }
  memcpy(r->url, c->base_url, blen);
  memcpy(r->url + blen, call->path, plen + 1);
  if (call->headers || call->content_type) {
    r->own_headers = own_headers(L, c, call, has_body);
    r->headers = r->own_headers;
    if (r->headers == NULL) {
      or_request_free(L, r);
      luaL_error(L, "openrouter: not enough memory");
    }
  } else {
    r->headers = c->request_headers[has_body][call->stream != 0];
  }
  return r;
}

static int same_name(const char *line, const char *name, size_t n) {
  return or_strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* Whether header line `line` is replaced by one of the extras at idx. */
static int replaced(lua_State *L, int idx, const char *line) {
  int yes = 0;
  if (idx == 0) return 0;
  lua_pushnil(L);
  while (!yes && lua_next(L, idx)) {
    size_t n;
    const char *name = lua_tolstring(L, -2, &n);
    yes = name && same_name(line, name, n);
    lua_pop(L, 1);
  }
  if (yes) lua_pop(L, 1);
  return yes;
}

/* Appends "name: value" to *list; 0 when memory ran out. No Lua allocation:
** a raise here would leak the list being built. */
static int append(struct curl_slist **list, const char *name, const char *value) {
  struct curl_slist *next;
  or_buffer line;
  or_buffer_init(&line);
  if (or_buffer_append(&line, name, strlen(name)) != 0 ||
      (value && (or_buffer_append(&line, ": ", 2) != 0 ||
                 or_buffer_append(&line, value, strlen(value)) != 0))) {
    or_buffer_free(&line);
    return 0;
  }
  next = curl_slist_append(*list, line.data);
  or_buffer_free(&line);
  if (next == NULL) return 0;
  *list = next;
  return 1;
}

static int build_own_headers(lua_State *L, or_client *c, const or_call *call, int post,
                             struct curl_slist **list) {
  struct curl_slist *item;
  for (item = c->headers; item; item = item->next)
    if (!replaced(L, call->headers, item->data) && !append(list, item->data, NULL)) return 0;
  if (!replaced(L, call->headers, "Accept:") &&
      !append(list, "Accept", call->stream ? "text/event-stream" : "application/json"))
    return 0;
  if (post && !replaced(L, call->headers, "Content-Type:") &&
      (!append(list, "Content-Type", call->content_type ? call->content_type : "application/json") ||
       !append(list, "Expect:", NULL)))
    return 0;
  if (call->headers) {
    lua_pushnil(L);
    while (lua_next(L, call->headers)) {
      if (!append(list, lua_tostring(L, -2), lua_tostring(L, -1))) {
        lua_pop(L, 2);
        return 0;
      }
      lua_pop(L, 1);
    }
  }
  return 1;
}

/* The extras' names and values are strings (the bindings checked them). */
static struct curl_slist *own_headers(lua_State *L, or_client *c, const or_call *call, int post) {
  struct curl_slist *list = NULL;
  if (!build_own_headers(L, c, call, post, &list)) {
    curl_slist_free_all(list);
    return NULL;
  }
  return list;
}

/* The transfer's resources; the request's outcome (result, error) stays. */
void or_request_release_transfer(or_request *r) {
  if (r->easy) {
    if (r->in_multi && r->client) curl_multi_remove_handle(r->client->multi, r->easy);
    r->in_multi = 0;
    if (r->client)
      or_client_return_easy(r->client, r->easy);
    else
      curl_easy_cleanup(r->easy);
    r->easy = NULL;
  }
  r->headers = NULL;
  curl_slist_free_all(r->own_headers);
  r->own_headers = NULL;
  free(r->url);
  r->url = NULL;
  /* held only until the request completes, when its client is alive: a done
  ** request's client may be gone */
  if (r->now.response.data && r->client)
    or_client_give_body(r->client, &r->now.response);
  else
    or_buffer_free(&r->now.response);
  or_buffer_free(&r->now.header_lines);
  or_sse_free(&r->now.sse);
}

void or_request_free(lua_State *L, or_request *r) {
  int i;
  or_request_release_transfer(r);
  r->body = NULL;
  for (i = 0; i < OR_REF_COUNT; i++) or_unref(L, &r->refs[i]);
  free(r);
}

/* ---- curl callbacks (no Lua error may escape them) ---- */

static int header_is(const char *line, size_t len, const char *name, const char **value,
                     size_t *vlen) {
  size_t n = strlen(name);
  const char *v, *end = line + len;
  if (len <= n || or_strncasecmp(line, name, n) != 0 || line[n] != ':') return 0;
  v = line + n + 1;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
  *value = v;
  *vlen = (size_t)(end - v);
  return 1;
}

static void copy_header(char *dst, size_t size, const char *v, size_t n) {
  if (n >= size) n = size - 1;
  memcpy(dst, v, n);
  dst[n] = '\0';
}

static size_t on_header(char *line, size_t size, size_t nitems, void *ud) {
  or_request *r = (or_request *)ud;
  size_t len = size * nitems, vlen;
  const char *v;
  r->now.last_activity = or_monotonic();
  if (r->cancel_requested) return 0;
  if (r->now.first_byte == 0) r->now.first_byte = r->now.last_activity;
  if (len > 5 && memcmp(line, "HTTP/", 5) == 0) {
    /* a new response (after 100 Continue or a proxy's CONNECT): start over */
    const char *sp = memchr(line, ' ', len);
    r->now.status = sp ? strtol(sp + 1, NULL, 10) : 0;
    r->now.content_type[0] = '\0';
    r->now.retry_after = -1;
    or_buffer_clear(&r->now.header_lines);
    return len;
  }
  if (header_is(line, len, "content-type", &v, &vlen)) {
    copy_header(r->now.content_type, sizeof r->now.content_type, v, vlen);
  } else if (header_is(line, len, "x-generation-id", &v, &vlen)) {
    copy_header(r->now.generation_id, sizeof r->now.generation_id, v, vlen);
  } else if (header_is(line, len, "retry-after", &v, &vlen)) {
    r->now.retry_after = or_parse_retry_after(v, vlen, or_epoch());
  }
  /* kept for info.headers and on_response; a header flood is not kept whole */
  if (r->now.header_lines.len < 65536 && or_buffer_append(&r->now.header_lines, line, len) != 0)
    return 0;
  return len;
}

static void stash_message(lua_State *L, or_request *r, const char *msg) {
  lua_pushstring(L, msg);
  stash(L, r);
}

/* Pushes the headers of the response as { [lowercased name] = value }. */
void or_request_push_headers(lua_State *L, or_request *r) {
  or_push_header_table(L, r->now.header_lines.data, r->now.header_lines.len);
}

void or_push_header_table(lua_State *L, const char *lines, size_t len) {
  const char *p = lines, *end = p ? p + len : NULL;
  lua_createtable(L, 0, 12);
  while (p && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon, *v, *ve;
    if (!eol) eol = end;
    colon = memchr(p, ':', (size_t)(eol - p));
    if (colon && colon > p) {
      luaL_Buffer b;
      const char *k;
      v = colon + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      ve = eol;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
      luaL_buffinit(L, &b);
      for (k = p; k < colon; k++) luaL_addchar(&b, (char)((*k >= 'A' && *k <= 'Z') ? *k + 32 : *k));
      luaL_pushresult(&b);
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);
      if (lua_isstring(L, -1)) {  /* a repeated header: values joined as HTTP allows */
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, -3);
    }
    p = eol + 1;
  }
}

/* Calls on_response(status, headers) once per request. Returns 0 if it raised
** (the error is stashed) or, through *cancel, asked to stop. */
static int call_on_response(lua_State *L, or_request *r, int *cancel) {
  *cancel = 0;
  if (r->delivery.response_notified || r->refs[OR_REF_ON_RESPONSE] == LUA_NOREF || r->now.status <= 0) return 1;
  r->delivery.response_notified = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ON_RESPONSE]);
  lua_pushinteger(L, (lua_Integer)r->now.status);
  or_request_push_headers(L, r);
  if (lua_pcall(L, 2, 1, 0) != 0) {
    stash(L, r);
    return 0;
  }
  *cancel = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
  lua_pop(L, 1);
  return 1;
}

/* For responses that never reached the body callback (errors, empty bodies):
** on_response before the outcome. Returns 0 if the callback raised. */
int or_request_notify_response(lua_State *L, or_request *r) {
  int cancel;
  if (!call_on_response(L, r, &cancel)) {
    lua_pop(L, 1);  /* the outcome: the callback's error is what is reported */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_STASH]);
    return 0;
  }
  return 1;
}

/* Calls on_chunk with the chunk on top (popped). Returns 0 when the transfer must stop. */
static int deliver(lua_State *L, or_request *r) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ON_CHUNK]);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    stash(L, r);
    r->now.abort_reason = OR_ABORT_CALLBACK_ERROR;
    return 0;
  }
  r->delivery.delivered++;
  if (r->refs[OR_REF_PENDING] != LUA_NOREF) r->delivery.last_delivery = or_monotonic();  /* for coalescing only */
  /* false, or req:cancel() called from inside the callback: nothing more is delivered */
  if ((lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) || r->cancel_requested) {
    lua_pop(L, 1);
    r->now.abort_reason = OR_ABORT_CANCELLED;
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

static int flush_protected(lua_State *L) {
  or_request *r = (or_request *)lua_touserdata(L, 1);
  int *ok = (int *)lua_touserdata(L, 2);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_PENDING]);
  if (or_rawlen(L, 1) == 0) return 0;
  or_stream_merge(L, 1);
  lua_newtable(L);  /* an empty list for what comes next */
  lua_rawseti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_PENDING]);
  r->delivery.pending_count = 0;
  *ok = deliver(L, r);
  return 0;
}

int or_request_flush(or_request *r) {
  lua_State *L = r->client ? r->client->L : NULL;
  int ok = 1;
  if (L == NULL || r->refs[OR_REF_PENDING] == LUA_NOREF || r->refs[OR_REF_ON_CHUNK] == LUA_NOREF) return 1;
  lua_pushcfunction(L, flush_protected);
  lua_pushlightuserdata(L, r);
  lua_pushlightuserdata(L, &ok);
  if (lua_pcall(L, 2, 0, 0) != 0) {
    stash(L, r);
    r->now.abort_reason = OR_ABORT_LUA_FAILURE;
    return 0;
  }
  return ok;
}

/* Pushes the event's data decoded: a JSON object for the actions (anything else
** stops the stream with a decode error: returns 0); for client:request any JSON
** value, or the data as a string when it is not JSON. */
static int push_event(lua_State *L, or_request *r, const char *data, size_t len) {
  int generic = r->assembly == OR_ASSEMBLE_NONE;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->client->ref_decode);
  lua_pushlstring(L, data, len);
  if (lua_pcall(L, 1, 1, 0) == 0 && (generic || (lua_istable(L, -1) && or_json_is_object_text(data, len))))
    return 1;
  if (generic) {
    lua_pop(L, 1);
    lua_pushlstring(L, data, len);
    return 1;
  }
  {
    char snippet[120];
    or_body_snippet(data, len, snippet, sizeof snippet);
    lua_pushfstring(L, "stream event is not a JSON object (%s): %s",
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "wrong type", snippet);
    stash(L, r);
    r->now.abort_reason = OR_ABORT_DECODE;
    return 0;
  }
}

/* Hands the chunk at idx to on_chunk, now or (coalescing) once `coalesce`
** seconds passed since the last delivery; an error chunk goes out at once,
** with what was held. Returns 0 when the transfer must stop. */
static int hand_over(lua_State *L, or_request *r, int chunk, int failed) {
  if (r->refs[OR_REF_ON_CHUNK] == LUA_NOREF) return 1;
  if (r->refs[OR_REF_PENDING] == LUA_NOREF) {
    lua_pushvalue(L, chunk);
    return deliver(L, r);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_PENDING]);
  lua_pushvalue(L, chunk);
  lua_rawseti(L, -2, (int)or_rawlen(L, -2) + 1);
  lua_pop(L, 1);
  r->delivery.pending_count++;
  if (failed || or_monotonic() - r->delivery.last_delivery >= r->delivery.coalesce)
    return or_request_flush(r);
  return 1;
}

/* Whether the decoded event at idx carries an OpenRouter error object. */
static int is_error_event(lua_State *L, int idx) {
  int yes;
  if (!lua_istable(L, idx)) return 0;
  lua_getfield(L, idx, "error");
  yes = lua_istable(L, -1);
  lua_pop(L, 1);
  return yes;
}

/* A Responses API event at idx (typed: "response.created", "response.output_text.delta",
** "response.completed", "error" ...): the last response snapshot and the text
** deltas are kept in acc (for the result, or err.partial). Returns whether it
** is an error; then the stash gets a body shaped like an OpenRouter error. */
static int absorb_response_event(lua_State *L, or_request *r, int event) {
  const char *type;
  int failed;
  lua_getfield(L, event, "type");
  type = lua_tostring(L, -1);
  lua_pop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ACC]);
  lua_getfield(L, event, "response");
  if (lua_istable(L, -1)) lua_setfield(L, -2, "response");
  else lua_pop(L, 1);
  if (type && strcmp(type, "response.output_text.delta") == 0) {
    lua_getfield(L, -1, "text");
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, "text");
    }
    lua_getfield(L, event, "delta");
    if (lua_type(L, -1) == LUA_TSTRING) lua_rawseti(L, -2, (int)or_rawlen(L, -2) + 1);
    else lua_pop(L, 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  failed = type && (strcmp(type, "error") == 0 || strcmp(type, "response.failed") == 0);
  if (failed) {
    lua_newtable(L);  /* { error = the event's error } for or_error_fill_api */
    if (strcmp(type, "error") == 0) {
      lua_pushvalue(L, event);
    } else {
      lua_getfield(L, event, "response");
      lua_getfield(L, -1, "error");
      lua_remove(L, -2);
      if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushliteral(L, "the response failed");
        lua_setfield(L, -2, "message");
      }
    }
    lua_setfield(L, -2, "error");
    stash(L, r);
  }
  return failed;
}

/* A decoded event at idx: absorbed into the assembled response (actions) or
** kept in the list of events (client:request without a callback), handed to
** on_chunk; an error event ends the stream. Returns non-zero to stop. */
static int take_event(lua_State *L, or_request *r, int chunk) {
  int failed;
  if (r->assembly == OR_ASSEMBLE_RESPONSES && lua_istable(L, chunk)) {
    failed = absorb_response_event(L, r, chunk);
    /* an error event reaches on_chunk too: without the key, as the error will be */
    if (failed) or_error_scrub(L, chunk, r->client->api_key.data, r->client->api_key.len);
    if (!hand_over(L, r, chunk, failed)) return 1;
    if (failed) r->now.stream_failed = 1;
    return failed;
  }
  if (r->assembly == OR_ASSEMBLE_NONE) {
    failed = is_error_event(L, chunk);
    if (r->refs[OR_REF_ON_CHUNK] == LUA_NOREF && !failed) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ACC]);
      lua_pushvalue(L, chunk);
      lua_rawseti(L, -2, r->now.events);
      lua_pop(L, 1);
    }
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ACC]);
    failed = or_stream_absorb(L, -1, chunk, r->now.events == 1, r->assembly == OR_ASSEMBLE_COMPLETION);
    lua_pop(L, 1);
  }
  /* an error event reaches on_chunk too: without the key, as the error will be */
  if (failed) or_error_scrub(L, chunk, r->client->api_key.data, r->client->api_key.len);
  if (!hand_over(L, r, chunk, failed)) return 1;
  if (failed) {
    /* an error after the first token: the stream is over, drain the rest */
    lua_pushvalue(L, chunk);
    stash(L, r);
    r->now.stream_failed = 1;
    return 1;
  }
  return 0;
}

/* One SSE event. Runs inside feed_protected, under lua_pcall. Returns
** non-zero to stop. */
static int on_event(void *ud, const char *type, size_t type_len, const char *data, size_t len) {
  or_request *r = (or_request *)ud;
  lua_State *L = r->client->L;
  int top = lua_gettop(L), stop;
  (void)type;
  (void)type_len;
  if (r->now.done_seen) return 0;
  if (r->cancel_requested) {  /* cancelled from another request's callback */
    r->now.abort_reason = OR_ABORT_CANCELLED;
    return 1;
  }
  if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
    r->now.done_seen = 1;
    return 0;
  }
  if (!push_event(L, r, data, len)) {
    lua_settop(L, top);
    return 1;
  }
  r->now.events++;
  stop = take_event(L, r, top + 1);
  lua_settop(L, top);
  return stop;
}

typedef struct feed_args {
  or_request *r;
  const char *bytes;
  size_t len;
  int finish;
  int rc;
} feed_args;

static int feed_protected(lua_State *L) {
  feed_args *f = (feed_args *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  if (f->finish)
    f->rc = or_sse_finish(&f->r->now.sse, on_event, f->r);
  else
    f->rc = or_sse_feed(&f->r->now.sse, f->bytes, f->len, on_event, f->r);
  return 0;
}

/* Returns 0 when the transfer must stop. */
static int feed_sse(or_request *r, const char *bytes, size_t len, int finish) {
  lua_State *L = r->client->L;
  feed_args f;
  f.r = r;
  f.bytes = bytes;
  f.len = len;
  f.finish = finish;
  f.rc = OR_SSE_OK;
  lua_pushcfunction(L, feed_protected);
  lua_pushlightuserdata(L, &f);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    stash(L, r);
    r->now.abort_reason = OR_ABORT_LUA_FAILURE;
    return 0;
  }
  if (r->now.abort_reason) return 0;
  if (f.rc == OR_SSE_NOMEM) {
    stash_message(L, r, "not enough memory");
    r->now.abort_reason = OR_ABORT_LUA_FAILURE;
    return 0;
  }
  if (f.rc == OR_SSE_TOO_BIG) {
    r->now.abort_reason = OR_ABORT_TOO_LARGE;
    return 0;
  }
  return 1;
}

typedef struct piece {
  or_request *r;
  const char *bytes;
  size_t len;
  int ok;
} piece;

static int deliver_bytes_protected(lua_State *L) {
  piece *p = (piece *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  lua_pushlstring(L, p->bytes, p->len);
  p->ok = deliver(L, p->r);
  return 0;
}

/* A piece of a body that is not SSE, streamed by client:request: to on_chunk
** as it arrives (nothing is kept). Returns 0 when the transfer must stop. */
static int deliver_bytes(or_request *r, const char *bytes, size_t len) {
  lua_State *L = r->client->L;
  piece p;
  p.r = r;
  p.bytes = bytes;
  p.len = len;
  p.ok = 1;
  lua_pushcfunction(L, deliver_bytes_protected);
  lua_pushlightuserdata(L, &p);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    stash(L, r);
    r->now.abort_reason = OR_ABORT_LUA_FAILURE;
    return 0;
  }
  return p.ok;
}

static size_t on_write(char *bytes, size_t size, size_t nmemb, void *ud) {
  or_request *r = (or_request *)ud;
  size_t len = size * nmemb;
  /* the round's budget is spent: curl keeps these bytes until the next round */
  if (r->client->budget_until > 0 && r->now.body_started && or_monotonic() > r->client->budget_until) {
    r->paused = 1;
    r->client->paused++;
    return CURL_WRITEFUNC_PAUSE;
  }
  r->now.last_activity = or_monotonic();
  r->now.bytes_received += len;
  if (r->cancel_requested && !r->now.abort_reason) r->now.abort_reason = OR_ABORT_CANCELLED;
  if (r->now.abort_reason) return 0;
  if (r->now.bytes_received > r->client->max_response_bytes) {
    r->now.abort_reason = OR_ABORT_TOO_LARGE;
    return 0;
  }
  if (!r->now.body_started) {
    curl_off_t length = -1;
    r->now.body_started = 1;
    r->now.is_sse = r->stream && r->now.status / 100 == 2 &&
                or_strncasecmp(r->now.content_type, "text/event-stream", 17) == 0;
    /* a body of known length is stored without growing (and copying) the buffer */
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    if (!r->now.is_sse && length > 0 && (size_t)length <= r->client->max_response_bytes)
      or_buffer_reserve(&r->now.response, (size_t)length);
    if (r->now.status / 100 == 2) {  /* the host learns the status before the first chunk */
      int cancel;
      if (!call_on_response(r->client->L, r, &cancel)) {
        r->now.abort_reason = OR_ABORT_CALLBACK_ERROR;
        return 0;
      }
      if (cancel) {
        r->now.abort_reason = OR_ABORT_CANCELLED;
        return 0;
      }
    }
  }
  if (r->now.is_sse) {
    if (r->now.stream_failed) return len;
    return feed_sse(r, bytes, len, 0) ? len : 0;
  }
  if (r->assembly == OR_ASSEMBLE_NONE && r->stream && r->refs[OR_REF_ON_CHUNK] != LUA_NOREF &&
      r->now.status / 100 == 2)
    return deliver_bytes(r, bytes, len) ? len : 0;
  if (or_buffer_append(&r->now.response, bytes, len) != 0) {
    stash_message(r->client->L, r, "not enough memory");
    r->now.abort_reason = OR_ABORT_LUA_FAILURE;
    return 0;
  }
  return len;
}

/* ---- one attempt ---- */

/* Opens the sockets of a transfer as libcurl would, keeping socket()'s errno:
** libcurl 7.88 turns EMFILE into "Couldn't connect to server" and leaves
** CURLINFO_OS_ERRNO at 0. */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
  or_request *r = (or_request *)ud;
  (void)purpose;
  return or_open_socket(a->family, a->socktype, a->protocol, &r->now.socket_error);
}

/* The options of this request. */
int or_request_configure(or_request *r) {
  CURL *e = r->easy;
  CURLcode rc;
  r->now.errbuf[0] = '\0';
  rc = curl_easy_setopt(e, CURLOPT_URL, r->url);
  if (rc != CURLE_OK) return (int)rc;
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->now.errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
  /* over TLS, wait for a connection being set up that may speak HTTP/2 rather than open
  ** one per request (100 requests at once: one connection, not 100); over plain HTTP a
  ** waiting request would queue behind a stalled one */
  curl_easy_setopt(e, CURLOPT_PIPEWAIT, strncmp(r->url, "https://", 8) == 0 ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  if (r->body || r->method == OR_POST) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
  } else {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  }
  /* the handles are pooled: a method set for one request must not stick */
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
                   r->method == OR_GET || r->method == OR_POST ? NULL : method_names[r->method]);
  return 0;
}

void or_request_begin_attempt(lua_State *L, or_request *r) {
  r->now.status = 0;
  r->now.socket_error = 0;
  r->now.is_sse = 0;
  r->now.body_started = 0;
  r->now.content_type[0] = '\0';
  r->now.generation_id[0] = '\0';
  r->now.retry_after = -1;
  r->now.bytes_received = 0;
  r->now.abort_reason = OR_ABORT_NONE;
  r->now.stream_failed = 0;
  r->now.done_seen = 0;
  r->now.events = 0;
  r->now.first_byte = 0;
  r->delivery.delivered = 0;
  or_buffer_clear(&r->now.response);
  or_client_take_body(r->client, &r->now.response);
  or_buffer_clear(&r->now.header_lines);
  or_sse_reset(&r->now.sse);
  or_unref(L, &r->refs[OR_REF_STASH]);
  or_unref(L, &r->refs[OR_REF_ACC]);
  if (r->stream) {  /* only a stream has chunks to assemble */
    if (r->assembly == OR_ASSEMBLE_NONE || r->assembly == OR_ASSEMBLE_RESPONSES)
      lua_newtable(L);  /* the events (client:request), or the Responses API's snapshot */
    else
      or_stream_new_acc(L);
    r->refs[OR_REF_ACC] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (r->refs[OR_REF_PENDING] != LUA_NOREF) {
    lua_newtable(L);
    lua_rawseti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_PENDING]);
    r->delivery.pending_count = 0;
  }
  r->now.last_activity = r->delivery.last_delivery = or_monotonic();
}

/* The attempt's transfer ended: an event left without its blank line is
** dispatched, and held-back (coalesced) chunks go out. */
void or_request_end_stream(or_request *r, CURLcode rc) {
  or_abort why = r->now.abort_reason;
  if (r->now.is_sse && rc == CURLE_OK && why == OR_ABORT_NONE && !r->now.stream_failed)
    feed_sse(r, NULL, 0, 1);
  why = r->now.abort_reason;
  if (why == OR_ABORT_NONE || why == OR_ABORT_IDLE || why == OR_ABORT_DECODE || why == OR_ABORT_TOO_LARGE)
    or_request_flush(r);
}
