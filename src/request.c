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
#include "openrouter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- lifecycle ---- */

void or_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF && *ref != LUA_REFNIL) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

static void stash(lua_State *L, or_request *r) {  /* pops the value */
  or_unref(L, &r->ref_stash);
  r->ref_stash = luaL_ref(L, LUA_REGISTRYINDEX);
}


or_request *or_request_new(lua_State *L, or_session *s, or_action action, const char *path,
                           int params_idx, int stream) {
  or_request *r;
  size_t blen = strlen(s->base_url), plen = strlen(path);
  int body_ref = LUA_NOREF;
  const char *json = NULL;
  size_t jlen = 0;
  /* everything that may raise (encoding) happens before any C allocation */
  if (params_idx) {
    or_json_push_request(L, params_idx, stream, params_idx);
    json = lua_tolstring(L, -1, &jlen);
    body_ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* the JSON string is sent as it is, not copied */
  }
  r = (or_request *)calloc(1, sizeof *r);
  if (r == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, body_ref);
    luaL_error(L, "openrouter: not enough memory");
  }
  or_buffer_init(&r->response);
  or_buffer_init(&r->header_lines);
  or_sse_init(&r->sse, s->max_response_bytes);
  r->ref_on_chunk = r->ref_on_done = r->ref_on_response = r->ref_client = LUA_NOREF;
  r->ref_acc = r->ref_pending = r->ref_stash = LUA_NOREF;
  r->ref_result = r->ref_error = r->ref_raise = LUA_NOREF;
  r->ref_object = LUA_NOREF;
  r->ref_body = body_ref;
  r->body = json;
  r->body_len = jlen;
  r->session = s;
  r->action = action;
  r->stream = stream;
  r->state = OR_STATE_QUEUED;
  r->retry_after = -1;
  r->headers = s->request_headers[params_idx != 0][stream != 0];
  r->url = (char *)malloc(blen + plen + 1);
  if (!r->url) {
    or_request_free(L, r);
    luaL_error(L, "openrouter: not enough memory");
  }
  memcpy(r->url, s->base_url, blen);
  memcpy(r->url + blen, path, plen + 1);
  return r;
}

/* The transfer's resources; the request's outcome (result, error) stays. */
void or_request_release_transfer(or_request *r) {
  if (r->easy) {
    if (r->in_multi && r->session) curl_multi_remove_handle(r->session->multi, r->easy);
    r->in_multi = 0;
    if (r->session)
      or_session_return_easy(r->session, r->easy);
    else
      curl_easy_cleanup(r->easy);
    r->easy = NULL;
  }
  r->headers = NULL;  /* the session's */
  free(r->url);
  r->url = NULL;
  /* held only until the request completes, when its session is alive: a done
  ** request's session may be gone */
  if (r->response.data && r->session)
    or_session_give_body(r->session, &r->response);
  else
    or_buffer_free(&r->response);
  or_buffer_free(&r->header_lines);
  or_sse_free(&r->sse);
}

void or_request_free(lua_State *L, or_request *r) {
  or_request_release_transfer(r);
  r->body = NULL;
  or_unref(L, &r->ref_body);
  or_unref(L, &r->ref_on_chunk);
  or_unref(L, &r->ref_on_done);
  or_unref(L, &r->ref_on_response);
  or_unref(L, &r->ref_client);
  or_unref(L, &r->ref_acc);
  or_unref(L, &r->ref_pending);
  or_unref(L, &r->ref_object);
  or_unref(L, &r->ref_stash);
  or_unref(L, &r->ref_result);
  or_unref(L, &r->ref_error);
  or_unref(L, &r->ref_raise);
  free(r);
}

/* ---- curl callbacks (no Lua error may escape them) ---- */

static int header_is(const char *line, size_t len, const char *name, const char **value,
                     size_t *vlen) {
  size_t n = strlen(name);
  const char *v, *end = line + len;
  if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':') return 0;
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
  r->last_activity = or_monotonic();
  if (r->cancel_requested) return 0;
  if (len > 5 && memcmp(line, "HTTP/", 5) == 0) {
    /* a new response (after 100 Continue or a proxy's CONNECT): start over */
    const char *sp = memchr(line, ' ', len);
    r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    r->content_type[0] = '\0';
    r->retry_after = -1;
    or_buffer_clear(&r->header_lines);
    return len;
  }
  if (header_is(line, len, "content-type", &v, &vlen)) {
    copy_header(r->content_type, sizeof r->content_type, v, vlen);
  } else if (header_is(line, len, "x-generation-id", &v, &vlen)) {
    copy_header(r->generation_id, sizeof r->generation_id, v, vlen);
  } else if (header_is(line, len, "retry-after", &v, &vlen)) {
    r->retry_after = or_parse_retry_after(v, vlen, or_epoch());
  }
  if (r->ref_on_response != LUA_NOREF && r->header_lines.len < 65536 &&
      or_buffer_append(&r->header_lines, line, len) != 0)
    return 0;
  return len;
}

static void stash_message(lua_State *L, or_request *r, const char *msg) {
  lua_pushstring(L, msg);
  stash(L, r);
}

/* Pushes the headers of the response as { [lowercased name] = value }. */
static void push_headers(lua_State *L, or_request *r) {
  const char *p = r->header_lines.data, *end = p + r->header_lines.len;
  lua_newtable(L);
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
  if (r->response_notified || r->ref_on_response == LUA_NOREF || r->status <= 0) return 1;
  r->response_notified = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_on_response);
  lua_pushinteger(L, (lua_Integer)r->status);
  push_headers(L, r);
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
static int notify_response(lua_State *L, or_request *r) {
  int cancel;
  if (!call_on_response(L, r, &cancel)) {
    lua_pop(L, 1);  /* the outcome: the callback's error is what is reported */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_stash);
    return 0;
  }
  return 1;
}

/* Calls on_chunk with the chunk on top (popped). Returns 0 when the transfer must stop. */
static int deliver(lua_State *L, or_request *r) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_on_chunk);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    stash(L, r);
    r->abort_reason = OR_ABORT_CALLBACK_ERROR;
    return 0;
  }
  r->delivered++;
  if (r->ref_pending != LUA_NOREF) r->last_delivery = or_monotonic();  /* for coalescing only */
  /* false, or req:cancel() called from inside the callback: nothing more is delivered */
  if ((lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) || r->cancel_requested) {
    lua_pop(L, 1);
    r->abort_reason = OR_ABORT_CANCELLED;
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

static int flush_protected(lua_State *L) {
  or_request *r = (or_request *)lua_touserdata(L, 1);
  int *ok = (int *)lua_touserdata(L, 2);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_pending);
  if (or_rawlen(L, 1) == 0) return 0;
  or_stream_merge(L, 1);
  lua_newtable(L);  /* an empty list for what comes next */
  lua_rawseti(L, LUA_REGISTRYINDEX, r->ref_pending);
  r->pending_count = 0;
  *ok = deliver(L, r);
  return 0;
}

int or_request_flush(or_request *r) {
  lua_State *L = r->session ? r->session->L : NULL;
  int ok = 1;
  if (L == NULL || r->ref_pending == LUA_NOREF || r->ref_on_chunk == LUA_NOREF) return 1;
  lua_pushcfunction(L, flush_protected);
  lua_pushlightuserdata(L, r);
  lua_pushlightuserdata(L, &ok);
  if (lua_pcall(L, 2, 0, 0) != 0) {
    stash(L, r);
    r->abort_reason = OR_ABORT_LUA_FAILURE;
    return 0;
  }
  return ok;
}

/* One SSE event: decode, absorb into the result, hand to the Lua callback.
** Runs inside feed_protected, under lua_pcall. Returns non-zero to stop. */
static int on_event(void *ud, const char *type, size_t type_len, const char *data, size_t len) {
  or_request *r = (or_request *)ud;
  lua_State *L = r->session->L;
  int top = lua_gettop(L), chunk, failed;
  (void)type;
  (void)type_len;
  if (r->done_seen) return 0;
  if (r->cancel_requested) {  /* cancelled from another request's callback */
    r->abort_reason = OR_ABORT_CANCELLED;
    return 1;
  }
  if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
    r->done_seen = 1;
    return 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->session->ref_decode);
  lua_pushlstring(L, data, len);
  if (lua_pcall(L, 1, 1, 0) != 0 || !lua_istable(L, -1) || !or_json_is_object_text(data, len)) {
    char snippet[120];
    or_body_snippet(data, len, snippet, sizeof snippet);
    lua_pushfstring(L, "stream event is not a JSON object (%s): %s",
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "wrong type", snippet);
    stash(L, r);
    r->abort_reason = OR_ABORT_DECODE;
    lua_settop(L, top);
    return 1;
  }
  chunk = lua_gettop(L);
  r->events++;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_acc);
  failed = or_stream_absorb(L, -1, chunk, r->events == 1, r->action == OR_ACTION_COMPLETION);
  lua_pop(L, 1);
  /* an error event reaches on_chunk too: without the key, as the error will be */
  if (failed) or_error_scrub(L, chunk, r->session->api_key.data, r->session->api_key.len);
  if (r->ref_on_chunk != LUA_NOREF) {
    if (r->ref_pending != LUA_NOREF) {
      /* coalescing: hold the chunk back until `coalesce` seconds passed since the
      ** last delivery (an error chunk goes out at once, with what was held) */
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_pending);
      lua_pushvalue(L, chunk);
      lua_rawseti(L, -2, (int)or_rawlen(L, -2) + 1);
      lua_pop(L, 1);
      r->pending_count++;
      if ((failed || or_monotonic() - r->last_delivery >= r->coalesce) && !or_request_flush(r)) {
        lua_settop(L, top);
        return 1;
      }
    } else {
      lua_pushvalue(L, chunk);
      if (!deliver(L, r)) {
        lua_settop(L, top);
        return 1;
      }
    }
  }
  if (failed) {
    /* an error after the first token: the stream is over, drain the rest */
    lua_pushvalue(L, chunk);
    stash(L, r);
    r->stream_failed = 1;
    lua_settop(L, top);
    return 1;
  }
  lua_settop(L, top);
  return 0;
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
    f->rc = or_sse_finish(&f->r->sse, on_event, f->r);
  else
    f->rc = or_sse_feed(&f->r->sse, f->bytes, f->len, on_event, f->r);
  return 0;
}

/* Returns 0 when the transfer must stop. */
static int feed_sse(or_request *r, const char *bytes, size_t len, int finish) {
  lua_State *L = r->session->L;
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
    r->abort_reason = OR_ABORT_LUA_FAILURE;
    return 0;
  }
  if (r->abort_reason) return 0;
  if (f.rc == OR_SSE_NOMEM) {
    stash_message(L, r, "not enough memory");
    r->abort_reason = OR_ABORT_LUA_FAILURE;
    return 0;
  }
  if (f.rc == OR_SSE_TOO_BIG) {
    r->abort_reason = OR_ABORT_TOO_LARGE;
    return 0;
  }
  return 1;
}

static size_t on_write(char *bytes, size_t size, size_t nmemb, void *ud) {
  or_request *r = (or_request *)ud;
  size_t len = size * nmemb;
  r->last_activity = or_monotonic();
  r->bytes_received += len;
  if (r->cancel_requested && !r->abort_reason) r->abort_reason = OR_ABORT_CANCELLED;
  if (r->abort_reason) return 0;
  if (r->bytes_received > r->session->max_response_bytes) {
    r->abort_reason = OR_ABORT_TOO_LARGE;
    return 0;
  }
  if (!r->body_started) {
    curl_off_t length = -1;
    r->body_started = 1;
    r->is_sse = r->stream && r->status / 100 == 2 &&
                strncasecmp(r->content_type, "text/event-stream", 17) == 0;
    /* a body of known length is stored without growing (and copying) the buffer */
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    if (!r->is_sse && length > 0 && (size_t)length <= r->session->max_response_bytes)
      or_buffer_reserve(&r->response, (size_t)length);
    if (r->status / 100 == 2) {  /* the host learns the status before the first chunk */
      int cancel;
      if (!call_on_response(r->session->L, r, &cancel)) {
        r->abort_reason = OR_ABORT_CALLBACK_ERROR;
        return 0;
      }
      if (cancel) {
        r->abort_reason = OR_ABORT_CANCELLED;
        return 0;
      }
    }
  }
  if (r->is_sse) {
    if (r->stream_failed) return len;
    return feed_sse(r, bytes, len, 0) ? len : 0;
  }
  if (or_buffer_append(&r->response, bytes, len) != 0) {
    stash_message(r->session->L, r, "not enough memory");
    r->abort_reason = OR_ABORT_LUA_FAILURE;
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
  curl_socket_t fd = socket(a->family, a->socktype, a->protocol);
  (void)purpose;
  if (fd == CURL_SOCKET_BAD) r->socket_errno = errno;
  return fd;
}

/* The options every request of a session shares: set once per easy handle,
** when the session creates it (no curl_easy_reset per request). */
void or_easy_defaults(or_session *s, CURL *e) {
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  /* never follow a redirect: the Authorization header must not travel */
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  if (s->timeout_ms > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, s->timeout_ms);
  if (s->connect_timeout_ms > 0) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
  if (s->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
  if (s->proxy) curl_easy_setopt(e, CURLOPT_PROXY, s->proxy);
#if LIBCURL_VERSION_NUM >= 0x073600
  /* a proxy's "200 Connection established" is not the server's status */
  curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
#endif
  if (s->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
}

/* The options of this request. */
int or_request_configure(or_request *r) {
  CURL *e = r->easy;
  CURLcode rc;
  r->errbuf[0] = '\0';
  rc = curl_easy_setopt(e, CURLOPT_URL, r->url);
  if (rc != CURLE_OK) return (int)rc;
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  if (r->body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
  } else {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  }
  return 0;
}

void or_request_begin_attempt(lua_State *L, or_request *r) {
  r->status = 0;
  r->socket_errno = 0;
  r->is_sse = 0;
  r->body_started = 0;
  r->content_type[0] = '\0';
  r->generation_id[0] = '\0';
  r->retry_after = -1;
  r->bytes_received = 0;
  r->abort_reason = OR_ABORT_NONE;
  r->stream_failed = 0;
  r->done_seen = 0;
  r->events = 0;
  r->delivered = 0;
  or_buffer_clear(&r->response);
  or_session_take_body(r->session, &r->response);
  or_buffer_clear(&r->header_lines);
  or_sse_reset(&r->sse);
  or_unref(L, &r->ref_stash);
  or_unref(L, &r->ref_acc);
  if (r->stream) {  /* only a stream has chunks to assemble */
    or_stream_new_acc(L);
    r->ref_acc = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (r->ref_pending != LUA_NOREF) {
    lua_newtable(L);
    lua_rawseti(L, LUA_REGISTRYINDEX, r->ref_pending);
    r->pending_count = 0;
  }
  r->last_activity = r->last_delivery = or_monotonic();
}

/* ---- outcome ---- */

static void set_partial(lua_State *L, or_request *r, int err) {
  if (!r->stream) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_acc);
  if (or_stream_has_data(L, -1)) {
    or_stream_result(L, -1, r->action);
    lua_setfield(L, err, "partial");
  }
  lua_pop(L, 1);
}

static void set_common(lua_State *L, or_request *r, int err) {
  if (r->status > 0) or_error_set_number(L, err, "status", (double)r->status);
  lua_getfield(L, err, "retry_after");
  if (lua_isnil(L, -1) && r->retry_after >= 0) or_error_set_number(L, err, "retry_after", r->retry_after);
  lua_pop(L, 1);
  lua_getfield(L, err, "generation_id");
  if (lua_isnil(L, -1)) or_error_set_string(L, err, "generation_id", r->generation_id);
  lua_pop(L, 1);
  or_error_scrub(L, err, r->session->api_key.data, r->session->api_key.len);
}

/* Pushes an error for a body that is not an OpenRouter error object: the
** page title of an HTML error page (a proxy's 502), else an excerpt. */
static void push_http_error(lua_State *L, or_request *r) {
  char snippet[201];
  const char *body = r->response.data ? r->response.data : "";
  const char *title = strstr(body, "<title>"), *end;
  if (title && (end = strstr(title, "</title>")) != NULL && end > title + 7)
    or_body_snippet(title + 7, (size_t)(end - title - 7), snippet, sizeof snippet);
  else
    or_body_snippet(body, r->response.len, snippet, sizeof snippet);
  or_error_new(L, "http", snippet[0] ? snippet : "empty response body");
}

/* Decodes the buffered body; pushes the value, or an error (returns 0). */
static int decode_body(lua_State *L, or_request *r) {
  char snippet[121];
  if (r->response.len == 0) {
    or_error_new(L, "decode", "empty response body");
    return 0;
  }
  if (!or_json_decode(L, r->response.data, r->response.len)) {
    or_body_snippet(r->response.data, r->response.len, snippet, sizeof snippet);
    lua_pushfstring(L, "response is not valid JSON (%s): %s", lua_tostring(L, -1), snippet);
    or_error_new(L, "decode", lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_remove(L, -2);
    return 0;
  }
  if (!lua_istable(L, -1) || !or_json_is_object_text(r->response.data, r->response.len)) {
    or_body_snippet(r->response.data, r->response.len, snippet, sizeof snippet);
    lua_pop(L, 1);
    lua_pushfstring(L, "response is not a JSON object: %s", snippet);
    or_error_new(L, "decode", lua_tostring(L, -1));
    lua_remove(L, -2);
    return 0;
  }
  return 1;
}

static int has_error_object(lua_State *L, int body) {
  int yes;
  lua_getfield(L, body, "error");
  yes = lua_istable(L, -1);
  lua_pop(L, 1);
  return yes;
}

/* The action's result out of a decoded body at the top; replaces it. */
static int shape_result(lua_State *L, or_request *r) {
  int body = lua_gettop(L);
  switch (r->action) {
    case OR_ACTION_MODELS:
    case OR_ACTION_CREDITS:
    case OR_ACTION_KEY:
    case OR_ACTION_GENERATION:
    case OR_ACTION_ENDPOINTS:
      lua_getfield(L, body, "data");
      if (!lua_istable(L, -1)) {
        lua_pop(L, 2);
        or_error_new(L, "decode", "response has no `data` table");
        return 0;
      }
      if (r->action == OR_ACTION_CREDITS) {
        lua_getfield(L, -1, "total_credits");
        lua_getfield(L, -2, "total_usage");
        if (lua_type(L, -1) == LUA_TNUMBER && lua_type(L, -2) == LUA_TNUMBER) {
          lua_pushnumber(L, lua_tonumber(L, -2) - lua_tonumber(L, -1));
          lua_setfield(L, -4, "remaining");
        }
        lua_pop(L, 2);
      }
      lua_replace(L, body);
      return 1;
    default:
      lua_getfield(L, body, "id");
      if (lua_isnil(L, -1) && r->generation_id[0]) {
        lua_pushstring(L, r->generation_id);
        lua_setfield(L, body, "generation_id");
      }
      lua_pop(L, 1);
      return 1;
  }
}

/* Whether the failed attempt (error at err) is worth another try; sets *wait. */
static int should_retry(lua_State *L, or_request *r, int err, CURLcode rc, double *wait) {
  or_session *s = r->session;
  double retry_after = -1, elapsed;
  const char *kind;
  if (r->status == 404 && r->not_found_until > 0) {
    /* GET /generation right after a completion can 404: its stats are written
    ** asynchronously. Back off (0.25 s doubling, at most 1 s) until the deadline. */
    *wait = or_backoff_delay(r->attempt, 0.25, 1.0, or_session_jitter(s));
    return or_monotonic() + *wait <= r->not_found_until;
  }
  if (r->attempt >= s->max_retries || r->events > 0) return 0;
  lua_getfield(L, err, "kind");
  kind = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (kind == NULL) return 0;
  if (strcmp(kind, "network") == 0) {
    or_failure f;
    or_curl_classify(rc, r->socket_errno, 0, &f);
    if (!f.retry || r->status != 0) return 0;
  } else if (strcmp(kind, "timeout") == 0) {
    /* once the request went out it may be billed: only a connect timeout retries */
    curl_off_t pretransfer = 0;
    if (r->abort_reason == OR_ABORT_IDLE) return 0;
    curl_easy_getinfo(r->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    if (pretransfer > 0) return 0;
  } else if (strcmp(kind, "api") == 0 || strcmp(kind, "http") == 0) {
    int no;
    if (!or_status_is_retryable(r->status)) return 0;
    lua_getfield(L, err, "availability");
    no = 0;
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "retryable");
      no = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (no) return 0;
  } else {
    return 0;
  }
  lua_getfield(L, err, "retry_after");
  if (lua_type(L, -1) == LUA_TNUMBER) retry_after = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (retry_after > s->retry_max_delay) return 0; /* e.g. a per-day quota: let the caller decide */
  *wait = retry_after >= 0 ? retry_after
                           : or_backoff_delay(r->attempt, s->retry_base_delay, s->retry_max_delay,
                                              or_session_jitter(s));
  elapsed = or_monotonic() - r->started;
  if (s->timeout_ms > 0 && (elapsed + *wait) * 1000.0 > (double)s->timeout_ms) return 0;
  return 1;
}

or_outcome or_request_finish_attempt(lua_State *L, or_request *r, CURLcode rc) {
  int err;
  double wait = 0;
  if (r->is_sse && rc == CURLE_OK && r->abort_reason == OR_ABORT_NONE && !r->stream_failed)
    feed_sse(r, NULL, 0, 1);  /* an event left without its blank line */
  if (r->abort_reason == OR_ABORT_NONE || r->abort_reason == OR_ABORT_IDLE ||
      r->abort_reason == OR_ABORT_DECODE || r->abort_reason == OR_ABORT_TOO_LARGE)
    or_request_flush(r);  /* held-back chunks go out before the end */
  switch (r->abort_reason) {
    case OR_ABORT_CALLBACK_ERROR:
    case OR_ABORT_LUA_FAILURE:
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_stash);
      return OR_OUT_RAISE;
    case OR_ABORT_CANCELLED:
      or_error_new(L, "cancelled", r->cancel_requested ? "the request was cancelled"
                                                        : "a callback returned false");
      goto with_partial;
    case OR_ABORT_DECODE:
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_stash);
      or_error_new(L, "decode", lua_tostring(L, -1));
      lua_remove(L, -2);
      goto with_partial;
    case OR_ABORT_TOO_LARGE: {
      char msg[128];
      snprintf(msg, sizeof msg, "response larger than max_response_bytes (%lu bytes)",
               (unsigned long)r->session->max_response_bytes);
      or_error_new(L, "decode", msg);
      or_error_set_string(L, -1, "code", "response_too_large");
      goto with_partial;
    }
    case OR_ABORT_IDLE: {
      char msg[128];
      snprintf(msg, sizeof msg, "no data for %.3g s (stream_idle_timeout)",
               (double)r->session->idle_timeout_ms / 1000.0);
      or_error_new(L, "timeout", msg);
      or_error_set_string(L, -1, "code", "stream_idle_timeout");
      goto with_partial;
    }
    case OR_ABORT_NONE:
      break;
  }
  if (rc != CURLE_OK) {
    or_failure f;
    or_curl_classify(rc, r->socket_errno, r->status > 0 && !r->body_started, &f);
    or_error_new(L, f.kind, f.message ? f.message : r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
    or_error_set_number(L, -1, "curl_code", (double)rc);
    or_error_set_string(L, -1, "code", f.code);
    goto with_partial;
  }
  if (r->status / 100 == 2) {
    if (r->is_sse) {
      if (r->stream_failed) {
        err = lua_gettop(L) + 1;
        or_error_new(L, "api", NULL);
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_stash);
        or_error_fill_api(L, err, -1);
        lua_getfield(L, -1, "id");
        if (lua_type(L, -1) == LUA_TSTRING) lua_setfield(L, err, "generation_id");
        else lua_pop(L, 1);
        lua_pop(L, 1);
        goto with_partial;
      }
      if (r->events == 0) {
        or_error_new(L, "decode", "the event stream ended without any event");
        goto with_partial;
      }
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_acc);
      or_stream_result(L, -1, r->action);
      lua_remove(L, -2);
      shape_result(L, r);
      goto success;
    }
    if (!decode_body(L, r)) goto with_partial;
    if (has_error_object(L, lua_gettop(L))) {
      err = lua_gettop(L) + 1;
      or_error_new(L, "api", NULL);
      or_error_fill_api(L, err, err - 1);
      lua_getfield(L, err - 1, "id");
      if (lua_type(L, -1) == LUA_TSTRING) lua_setfield(L, err, "generation_id");
      else lua_pop(L, 1);
      lua_remove(L, err - 1);
      goto with_partial;
    }
    if (shape_result(L, r)) goto success;
    goto with_partial;
  }
  /* a non-2xx status */
  if (r->response.len > 0 && or_json_decode(L, r->response.data, r->response.len) &&
      lua_istable(L, -1) && has_error_object(L, lua_gettop(L))) {
    err = lua_gettop(L) + 1;
    or_error_new(L, "api", NULL);
    if (r->retry_after >= 0) or_error_set_number(L, err, "retry_after", r->retry_after);
    or_error_fill_api(L, err, err - 1);
    lua_remove(L, err - 1);
  } else {
    if (r->response.len > 0) lua_pop(L, 1);
    push_http_error(L, r);
  }
with_partial:
  err = lua_gettop(L);
  set_partial(L, r, err);  /* first: set_common scrubs the key out of the partial too */
  set_common(L, r, err);
  if (r->abort_reason != OR_ABORT_CANCELLED && should_retry(L, r, err, rc, &wait)) {
    lua_pop(L, 1);
    r->retry_at = or_monotonic() + wait;
    return OR_OUT_RETRY;
  }
  return notify_response(L, r) ? OR_OUT_ERROR : OR_OUT_RAISE;
success:
  return notify_response(L, r) ? OR_OUT_RESULT : OR_OUT_RAISE;
}

