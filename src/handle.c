/*
** Request objects (what the *_async methods return) and the shared path of
** every call: a blocking call is an async one plus wait().
**
**   req.done, req.result, req.error
**   req:wait()    -> res, err (drives the client until this request is done)
**   req:cancel()  -> on_done gets err.kind == "cancelled"
**   req:close()   cancels if needed and releases everything now
**
** A request in flight keeps its object alive (fire and forget works): the
** object is collectable once the request is done, and its __gc frees the
** request. doc/design.md, "Who owns what".
*/
#include "openrouter.h"

#include <string.h>

static or_handle *check_handle(lua_State *L, int idx) {
  return (or_handle *)luaL_checkudata(L, idx, OR_REQUEST_MT);
}

/* Binds r to the request object at idx. Until r is done, r keeps the object
** alive (ref_object): dropping the object neither cancels the request nor
** skips its on_done. h->r is set first, so that a raise in luaL_ref leaves r
** to the object's __gc. */
static void attach(lua_State *L, int idx, or_handle *h, or_request *r) {
  h->r = r;
  r->handle = h;
  lua_pushvalue(L, idx);
  r->ref_object = luaL_ref(L, LUA_REGISTRYINDEX);
}

or_handle *or_handle_push(lua_State *L, or_request *r) {
  or_handle *h = (or_handle *)lua_newuserdata(L, sizeof *h);
  h->r = NULL;
  luaL_getmetatable(L, OR_REQUEST_MT);
  lua_setmetatable(L, -2);
  if (r) attach(L, -1, h, r);
  return h;
}

/* Unbinds r from its object and frees it. Only for a done request (or one
** that never started): a request in flight holds its object, so its object
** is not released before it is done. */
static void release(lua_State *L, or_handle *h) {
  or_request *r = h->r;
  if (r == NULL) return;
  h->r = NULL;
  r->handle = NULL;
  or_request_free(L, r);
}

/* Finalizing a request object that is not done happens only at lua_close
** (or when __gc is called by hand): the request goes, quietly. Inside a
** round the request is only marked: the round's sweep completes and frees it.
** Any finalizer order holds: a client finalized first has already detached
** its requests (session NULL), and a client finalized later no longer lists r. */
static int handle_gc(lua_State *L) {
  or_handle *h = check_handle(L, 1);
  or_request *r = h->r;
  if (r == NULL) return 0;
  if (r->session && r->state != OR_STATE_DONE) {
    or_unref(L, &r->ref_on_done);  /* nobody is left to tell */
    h->r = NULL;
    r->handle = NULL;
    or_multi_discard(L, r);
    return 0;
  }
  release(L, h);
  return 0;
}

static int handle_close(lua_State *L) {
  or_handle *h = check_handle(L, 1);
  or_request *r = h->r;
  if (r && r->session && r->state != OR_STATE_DONE) {
    if (r->session->in_perform || r->session->in_round)
      return luaL_error(L, "cannot close a request from inside a streaming callback (cancel it)");
    or_multi_cancel(L, r);  /* on_done runs: every request ends exactly once */
  }
  release(L, h);
  return 0;
}

static int handle_cancel(lua_State *L) {
  or_handle *h = check_handle(L, 1);
  or_request *r = h->r;
  if (r == NULL || r->session == NULL || r->state == OR_STATE_DONE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  or_multi_cancel(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* Pushes res, err of a finished request. */
static int push_outcome(lua_State *L, or_request *r) {
  if (r->ref_result != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_result);
    return 1;
  }
  lua_pushnil(L);
  if (r->ref_error == LUA_NOREF)  /* detached by its client's finalizer */
    or_error_new(L, "cancelled", "the client was closed");
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_error);
  return 2;
}

/* Drives the session until r is done. */
static void wait_for(lua_State *L, or_request *r) {
  while (r->state != OR_STATE_DONE && r->session) {
    or_session *s = r->session;
    or_multi_round(L, s);
    if (r->state == OR_STATE_DONE || r->session == NULL) break;
    or_multi_wait(s, or_multi_wait_ms(s, 1000));
  }
}

static void check_not_busy(lua_State *L, or_session *s) {
  if (s && (s->in_perform || s->in_round))
    luaL_error(L, "openrouter client is busy: it cannot be driven from inside its own streaming callbacks");
}

static int handle_wait(lua_State *L) {
  or_handle *h = check_handle(L, 1);
  or_request *r = h->r;
  if (r == NULL) return luaL_error(L, "attempt to wait for a closed request");
  check_not_busy(L, r->session);
  wait_for(L, r);
  if (r->state != OR_STATE_DONE) {  /* its client was closed under it */
    lua_pushnil(L);
    or_error_new(L, "cancelled", "the client was closed");
    return 2;
  }
  return push_outcome(L, r);
}

static int handle_index(lua_State *L) {
  or_handle *h = check_handle(L, 1);
  const char *key = lua_tostring(L, 2);
  or_request *r = h->r;
  if (key && strcmp(key, "done") == 0) {
    lua_pushboolean(L, r == NULL || r->state == OR_STATE_DONE);
    return 1;
  }
  if (key && (strcmp(key, "result") == 0 || strcmp(key, "error") == 0)) {
    if (r == NULL) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, key[0] == 'r' ? r->ref_result : r->ref_error);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int handle_tostring(lua_State *L) {
  or_handle *h = check_handle(L, 1);
  const char *state = "closed";
  if (h->r) {
    switch (h->r->state) {
      case OR_STATE_QUEUED: state = "queued"; break;
      case OR_STATE_RUNNING: state = "running"; break;
      case OR_STATE_WAITING: state = "waiting to retry"; break;
      case OR_STATE_DONE: state = "done"; break;
    }
  }
  lua_pushfstring(L, "openrouter request (%s)", state);
  return 1;
}

static const luaL_Reg handle_methods[] = {
  {"wait", handle_wait},
  {"cancel", handle_cancel},
  {"close", handle_close},
  {NULL, NULL}
};

int or_handle_open(lua_State *L) {
  luaL_newmetatable(L, OR_REQUEST_MT);
  lua_pushcfunction(L, handle_gc);
  lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
  lua_pushcfunction(L, handle_close);
  lua_setfield(L, -2, "__close");
#endif
  lua_pushcfunction(L, handle_tostring);
  lua_setfield(L, -2, "__tostring");
  or_newlib(L, handle_methods);
  lua_pushcclosure(L, handle_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  return 0;
}

/* ---- the shared path of every call ---- */

static const char *const callback_names[] = {"on_chunk", "on_done", "on_response", NULL};

/* Raises unless every callback in opts is a function or absent: checked before
** the request exists, so a refused call leaves nothing behind. */
static void check_callbacks(lua_State *L, int opts) {
  int i;
  for (i = 0; callback_names[i]; i++) {
    int t;
    lua_getfield(L, opts, callback_names[i]);
    t = lua_type(L, -1);
    if (t != LUA_TNIL && t != LUA_TFUNCTION)
      luaL_argerror(L, opts, lua_pushfstring(L, "'%s' must be a function, got %s",
                                             callback_names[i], lua_typename(L, t)));
    lua_pop(L, 1);
  }
}

static int opt_function(lua_State *L, int opts, const char *name) {
  lua_getfield(L, opts, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

int or_call(lua_State *L, or_session *s, or_action action, const char *path, int params_idx,
            int callback_idx, int opts_idx) {
  or_request *r;
  or_handle *h;
  int stream = 0, object, blocking = opts_idx == 0;
  double coalesce = 0;
  if (blocking) check_not_busy(L, s);
  if (opts_idx) {
    check_callbacks(L, opts_idx);
    lua_getfield(L, opts_idx, "on_chunk");
    stream = !lua_isnil(L, -1);
    lua_getfield(L, opts_idx, "coalesce");
    if (!lua_isnil(L, -1)) {
      coalesce = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(coalesce >= 0) || coalesce > 3600)
        luaL_argerror(L, opts_idx, "'coalesce' must be a number of seconds (>= 0)");
    }
    lua_pop(L, 2);
  } else if (callback_idx) {
    stream = 1;
  }
  if (!stream && params_idx) {
    lua_getfield(L, params_idx, "stream");
    stream = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  /* the object first: from here on, a raise leaves r to its __gc */
  h = or_handle_push(L, NULL);
  object = lua_gettop(L);
  r = or_request_new(L, s, action, path, params_idx, stream);
  attach(L, object, h, r);
  r->blocking = blocking;
  r->started = or_monotonic();
  lua_pushvalue(L, 1);
  r->ref_client = luaL_ref(L, LUA_REGISTRYINDEX);
  if (callback_idx) {
    lua_pushvalue(L, callback_idx);
    r->ref_on_chunk = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (opts_idx) {
    r->ref_on_chunk = opt_function(L, opts_idx, "on_chunk");
    r->ref_on_done = opt_function(L, opts_idx, "on_done");
    r->ref_on_response = opt_function(L, opts_idx, "on_response");
    if (coalesce > 0 && r->ref_on_chunk != LUA_NOREF) {
      r->coalesce = coalesce;
      lua_newtable(L);
      r->ref_pending = luaL_ref(L, LUA_REGISTRYINDEX);
    }
  }
  or_multi_enqueue(L, s, r);
  if (!blocking) return 1;
  wait_for(L, r);
  lua_settop(L, object);
  if (r->ref_raise != LUA_NOREF) {
    /* the stream callback raised: its error propagates, after cleanup */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_raise);
    release(L, h);
    return lua_error(L);
  }
  if (r->state != OR_STATE_DONE) {
    lua_pushnil(L);
    or_error_new(L, "cancelled", "the client was closed");
  } else {
    push_outcome(L, r);
    if (lua_gettop(L) == object + 1) lua_pushnil(L);
  }
  release(L, h);
  return 2;
}

/* client:poll([timeout]) -> number of requests not done yet. Never blocks with
** 0; else waits at most timeout seconds for activity. */
int or_client_poll(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  double timeout = luaL_optnumber(L, 2, 0);
  if (!(timeout >= 0)) luaL_argerror(L, 2, "timeout must be >= 0");
  check_not_busy(L, s);
  or_multi_round(L, s);
  if (timeout > 0 && s->active > 0) {
    double ms = timeout * 1000.0;
    or_multi_wait(s, or_multi_wait_ms(s, ms > 86400000.0 ? 86400000L : (long)ms));
    or_multi_round(L, s);
  }
  lua_pushinteger(L, s->active);
  return 1;
}
