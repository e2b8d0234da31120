/*
** An ended attempt becomes the request's outcome (engine): a result shaped as
** the action's row says, an error object (with the partial stream, the
** status, Retry-After, the generation id, never the key), or a retry with
** its delay; and what came with the answer (info).
*/
#include "engine.h"

#include <stdio.h>
#include <string.h>

/* The Responses API's partial: the last response snapshot, with the text deltas
** received joined in `output_text`. */
static void push_responses_partial(lua_State *L, int acc) {
  lua_getfield(L, acc, "response");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_getfield(L, acc, "text");
  if (lua_istable(L, -1)) {
    int i, text = lua_gettop(L), n = (int)or_rawlen(L, text);
    luaL_Buffer b;
    luaL_buffinit(L, &b);  /* may push a box: the list is read by its index */
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, text, i);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_setfield(L, -3, "output_text");
  }
  lua_pop(L, 1);
}

static void set_partial(lua_State *L, or_request *r, int err) {
  if (!r->stream || r->assembly == OR_ASSEMBLE_NONE) return;
  if (r->assembly == OR_ASSEMBLE_RESPONSES) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ACC]);
    if (lua_istable(L, -1)) {
      push_responses_partial(L, lua_gettop(L));
      lua_setfield(L, err, "partial");
    }
    lua_pop(L, 1);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ACC]);
  if (or_stream_has_data(L, -1)) {
    or_stream_result(L, -1, r->assembly == OR_ASSEMBLE_COMPLETION);
    lua_setfield(L, err, "partial");
  }
  lua_pop(L, 1);
}

static void set_common(lua_State *L, or_request *r, int err) {
  if (r->now.status > 0) or_error_set_number(L, err, "status", (double)r->now.status);
  lua_getfield(L, err, "retry_after");
  if (lua_isnil(L, -1) && r->now.retry_after >= 0) or_error_set_number(L, err, "retry_after", r->now.retry_after);
  lua_pop(L, 1);
  lua_getfield(L, err, "generation_id");
  if (lua_isnil(L, -1)) or_error_set_string(L, err, "generation_id", r->now.generation_id);
  lua_pop(L, 1);
  or_error_scrub(L, err, r->client->api_key.data, r->client->api_key.len);
}

/* Pushes an error for a body that is not an OpenRouter error object: the
** page title of an HTML error page (a proxy's 502), else an excerpt. */
static void push_http_error(lua_State *L, or_request *r) {
  char snippet[201];
  const char *body = r->now.response.data ? r->now.response.data : "";
  const char *title = strstr(body, "<title>"), *end;
  if (title && (end = strstr(title, "</title>")) != NULL && end > title + 7)
    or_body_snippet(title + 7, (size_t)(end - title - 7), snippet, sizeof snippet);
  else
    or_body_snippet(body, r->now.response.len, snippet, sizeof snippet);
  or_error_new(L, "http", snippet[0] ? snippet : "empty response body");
}

/* Decodes the buffered body; pushes the value, or an error (returns 0). */
static int decode_body(lua_State *L, or_request *r) {
  char snippet[121];
  if (r->now.response.len == 0) {
    or_error_new(L, "decode", "empty response body");
    return 0;
  }
  if (!or_json_decode(L, r->now.response.data, r->now.response.len)) {
    or_body_snippet(r->now.response.data, r->now.response.len, snippet, sizeof snippet);
    lua_pushfstring(L, "response is not valid JSON (%s): %s", lua_tostring(L, -1), snippet);
    or_error_new(L, "decode", lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_remove(L, -2);
    return 0;
  }
  if (!lua_istable(L, -1) || !or_json_is_object_text(r->now.response.data, r->now.response.len)) {
    or_body_snippet(r->now.response.data, r->now.response.len, snippet, sizeof snippet);
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

/* The `data` table of the body at the top (replaced); credits also get `remaining`. */
static int shape_data(lua_State *L, or_request *r) {
  int body = lua_gettop(L);
  lua_getfield(L, body, "data");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 2);
    or_error_new(L, "decode", "response has no `data` table");
    return 0;
  }
  if (r->shape == OR_SHAPE_CREDITS) {
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
}

/* The row's result out of a decoded body at the top; replaces it. */
static int shape_result(lua_State *L, or_request *r) {
  if (r->shape == OR_SHAPE_DATA || r->shape == OR_SHAPE_CREDITS) return shape_data(L, r);
  if (r->shape == OR_SHAPE_BODY && lua_istable(L, -1)) {
    lua_getfield(L, -1, "id");
    if (lua_isnil(L, -1) && r->now.generation_id[0]) {
      lua_pushstring(L, r->now.generation_id);
      lua_setfield(L, -3, "generation_id");
    }
    lua_pop(L, 1);
  }
  return 1;
}

/* Whether the failed attempt (error at err) is worth another try; sets *wait. */
static int should_retry(lua_State *L, or_request *r, int err, CURLcode rc, double *wait) {
  or_client *s = r->client;
  double retry_after = -1, elapsed;
  const char *kind;
  if (r->now.status == 404 && r->not_found_until > 0) {
    /* GET /generation right after a completion can 404: its stats are written
    ** asynchronously. Back off (0.25 s doubling, at most 1 s) until the deadline. */
    *wait = or_backoff_delay(r->attempt, 0.25, 1.0, or_client_jitter(s));
    return or_monotonic() + *wait <= r->not_found_until;
  }
  if (r->attempt >= s->max_retries || r->now.events > 0 || r->delivery.delivered > 0) return 0;
  lua_getfield(L, err, "kind");
  kind = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (kind == NULL) return 0;
  if (strcmp(kind, "network") == 0) {
    or_failure f;
    or_curl_classify(rc, r->now.socket_error, 0, &f);
    if (!f.retry || r->now.status != 0) return 0;
  } else if (strcmp(kind, "timeout") == 0) {
    /* once the request went out it may be billed: only a connect timeout retries */
    curl_off_t pretransfer = 0;
    if (r->now.abort_reason == OR_ABORT_IDLE) return 0;
    curl_easy_getinfo(r->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    if (pretransfer > 0) return 0;
  } else if (strcmp(kind, "api") == 0 || strcmp(kind, "http") == 0) {
    int no;
    if (!or_status_is_retryable(r->now.status)) return 0;
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
                                              or_client_jitter(s));
  elapsed = or_monotonic() - r->started;
  if (s->timeout_ms > 0 && (elapsed + *wait) * 1000.0 > (double)s->timeout_ms) return 0;
  return 1;
}

/* An api error from the decoded OpenRouter error body at `body` (removed);
** the body's id is the generation id. */
static void push_api_error(lua_State *L, or_request *r, int body) {
  int err;
  body = or_absindex(L, body);
  or_error_new(L, "api", NULL);
  err = lua_gettop(L);
  if (r->now.status / 100 != 2 && r->now.retry_after >= 0)
    or_error_set_number(L, err, "retry_after", r->now.retry_after);
  or_error_fill_api(L, err, body);
  lua_getfield(L, body, "id");
  if (lua_type(L, -1) == LUA_TSTRING) lua_setfield(L, err, "generation_id");
  else lua_pop(L, 1);
  lua_remove(L, body);
}

/* The error a transfer stopped from inside a callback leaves; 0 when it was not. */
static int push_abort_error(lua_State *L, or_request *r) {
  char msg[128];
  switch (r->now.abort_reason) {
    case OR_ABORT_CANCELLED:
      or_error_new(L, "cancelled", r->cancel_requested ? "the request was cancelled"
                                                        : "a callback returned false");
      return 1;
    case OR_ABORT_DECODE:
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_STASH]);
      or_error_new(L, "decode", lua_tostring(L, -1));
      lua_remove(L, -2);
      return 1;
    case OR_ABORT_TOO_LARGE:
      snprintf(msg, sizeof msg, "response larger than max_response_bytes (%lu bytes)",
               (unsigned long)r->client->max_response_bytes);
      or_error_new(L, "decode", msg);
      or_error_set_string(L, -1, "code", "response_too_large");
      return 1;
    case OR_ABORT_IDLE:
      snprintf(msg, sizeof msg, "no data for %.3g s (stream_idle_timeout)",
               (double)r->client->idle_timeout_ms / 1000.0);
      or_error_new(L, "timeout", msg);
      or_error_set_string(L, -1, "code", "stream_idle_timeout");
      return 1;
    default:
      return 0;
  }
}

/* "application/json" or a "+json" type. */
static int is_json_type(const char *type) {
  size_t n = strcspn(type, "; ");
  return (n == 16 && or_strncasecmp(type, "application/json", 16) == 0) ||
         (n > 5 && or_strncasecmp(type + n - 5, "+json", 5) == 0);
}

/* client:request's 2xx body: decoded JSON of any kind (an error object is an
** api error), else the raw bytes. Pushes it, or an error (returns 0). */
static int push_any_body(lua_State *L, or_request *r) {
  if (!is_json_type(r->now.content_type)) {
    lua_pushlstring(L, r->now.response.data ? r->now.response.data : "", r->now.response.len);
    return 1;
  }
  if (!or_json_decode(L, r->now.response.data ? r->now.response.data : "", r->now.response.len)) {
    char snippet[121];
    or_body_snippet(r->now.response.data, r->now.response.len, snippet, sizeof snippet);
    lua_pushfstring(L, "response is not valid JSON (%s): %s", lua_tostring(L, -1), snippet);
    or_error_new(L, "decode", lua_tostring(L, -1));
    lua_replace(L, -3);
    lua_pop(L, 1);
    return 0;
  }
  if (has_error_object(L, lua_gettop(L))) {
    push_api_error(L, r, -1);
    return 0;
  }
  return 1;
}

/* A 2xx response: pushes the result (returns 1) or an error (0). */
static int push_success(lua_State *L, or_request *r) {
  if (r->now.is_sse && r->now.stream_failed) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_STASH]);
    push_api_error(L, r, -1);
    return 0;
  }
  if (r->now.is_sse && r->now.events == 0 && r->assembly != OR_ASSEMBLE_NONE) {
    or_error_new(L, "decode", "the event stream ended without any event");
    return 0;
  }
  if (r->assembly == OR_ASSEMBLE_NONE && r->stream && r->refs[OR_REF_ON_CHUNK] != LUA_NOREF &&
      (r->now.is_sse || r->now.body_started)) {
    lua_pushboolean(L, 1);  /* every piece went to on_chunk: nothing was kept */
    return 1;
  }
  if (r->now.is_sse && r->assembly == OR_ASSEMBLE_RESPONSES) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ACC]);
    lua_getfield(L, -1, "response");
    lua_remove(L, -2);
    if (lua_istable(L, -1)) return 1;
    lua_pop(L, 1);
    or_error_new(L, "decode", "the event stream ended without a final response");
    return 0;
  }
  if (r->now.is_sse && r->assembly == OR_ASSEMBLE_NONE) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ACC]);  /* the events */
    return 1;
  }
  if (r->now.is_sse) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ACC]);
    or_stream_result(L, -1, r->assembly == OR_ASSEMBLE_COMPLETION);
    lua_remove(L, -2);
    return shape_result(L, r);
  }
  if (r->shape == OR_SHAPE_ANY) return push_any_body(L, r);
  if (!decode_body(L, r)) return 0;
  if (has_error_object(L, lua_gettop(L))) {
    push_api_error(L, r, -1);
    return 0;
  }
  return shape_result(L, r);
}

/* A non-2xx response: an api error when the body is an OpenRouter error
** object, else an http error. */
static void push_status_error(lua_State *L, or_request *r) {
  if (r->now.response.len > 0 && or_json_decode(L, r->now.response.data, r->now.response.len) &&
      lua_istable(L, -1) && has_error_object(L, lua_gettop(L))) {
    push_api_error(L, r, -1);
    return;
  }
  if (r->now.response.len > 0) lua_pop(L, 1);
  push_http_error(L, r);
}

/* A failed transfer, named for what it is when curl's own words would mislead. */
static void push_curl_error(lua_State *L, or_request *r, CURLcode rc) {
  or_failure f;
  or_curl_classify(rc, r->now.socket_error, r->now.status > 0 && !r->now.body_started, &f);
  or_error_new(L, f.kind, f.message ? f.message : r->now.errbuf[0] ? r->now.errbuf : curl_easy_strerror(rc));
  or_error_set_number(L, -1, "curl_code", (double)rc);
  or_error_set_string(L, -1, "code", f.code);
}

or_outcome or_request_finish_attempt(lua_State *L, or_request *r, CURLcode rc) {
  int err;
  double wait = 0;
  or_request_end_stream(r, rc);
  if (r->now.abort_reason == OR_ABORT_CALLBACK_ERROR || r->now.abort_reason == OR_ABORT_LUA_FAILURE) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_STASH]);
    return OR_OUT_RAISE;
  }
  if (push_abort_error(L, r)) {
    /* the error is on top */
  } else if (rc != CURLE_OK) {
    push_curl_error(L, r, rc);
  } else if (r->now.status / 100 == 2) {
    if (push_success(L, r)) return or_request_notify_response(L, r) ? OR_OUT_RESULT : OR_OUT_RAISE;
  } else {
    push_status_error(L, r);
  }
  err = lua_gettop(L);
  set_partial(L, r, err);  /* first: set_common scrubs the key out of the partial too */
  set_common(L, r, err);
  if (r->now.abort_reason != OR_ABORT_CANCELLED && should_retry(L, r, err, rc, &wait)) {
    lua_pop(L, 1);
    r->retry_at = or_monotonic() + wait;
    return OR_OUT_RETRY;
  }
  return or_request_notify_response(L, r) ? OR_OUT_ERROR : OR_OUT_RAISE;
}

/* info.headers, made on first access from the raw header lines the info's
** metatable keeps: most calls never read it, and a table of lower-cased names
** per request showed in the sequential-chat benchmark (W1). */
static int info_index(lua_State *L) {
  size_t len;
  const char *lines;
  if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "headers") != 0) return 0;
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "lines");
  lines = lua_tolstring(L, -1, &len);
  or_push_header_table(L, lines, lines ? len : 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, 1, "headers");  /* from now on a plain field */
  return 1;
}

/* req.info: what came with the answer, success or failure. */
void or_request_push_info(lua_State *L, or_request *r) {
  lua_createtable(L, 0, 7);
  lua_createtable(L, 0, 2);
  lua_pushlstring(L, r->now.header_lines.data ? r->now.header_lines.data : "", r->now.header_lines.len);
  lua_setfield(L, -2, "lines");
  lua_pushcfunction(L, info_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  if (r->now.status > 0) {
    lua_pushinteger(L, (lua_Integer)r->now.status);
    lua_setfield(L, -2, "status");
  }
  if (r->now.content_type[0]) {
    lua_pushstring(L, r->now.content_type);
    lua_setfield(L, -2, "content_type");
  }
  if (r->now.generation_id[0]) {
    lua_pushstring(L, r->now.generation_id);
    lua_setfield(L, -2, "generation_id");
  }
  lua_pushinteger(L, (lua_Integer)r->attempt + 1);
  lua_setfield(L, -2, "attempts");
  lua_pushnumber(L, or_monotonic() - r->started);
  lua_setfield(L, -2, "elapsed");
  if (r->now.first_byte > 0) {
    lua_pushnumber(L, r->now.first_byte - r->started);
    lua_setfield(L, -2, "first_byte");
  }
}
