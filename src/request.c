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
#include "bindings.h"

#include <string.h>

static or_request_object *check_handle(lua_State *L, int idx) {
  return (or_request_object *)luaL_checkudata(L, idx, OR_REQUEST_MT);
}

/* Binds r to the request object at idx. Until r is done, r keeps the object
** alive (ref_object): dropping the object neither cancels the request nor
** skips its on_done. h->r is set first, so that a raise in luaL_ref leaves r
** to the object's __gc. */
static void attach(lua_State *L, int idx, or_request_object *h, or_request *r) {
  h->r = r;
  r->object = h;
  lua_pushvalue(L, idx);
  r->refs[OR_REF_OBJECT] = luaL_ref(L, LUA_REGISTRYINDEX);
}

static or_request_object *push_object(lua_State *L, or_request *r) {
  or_request_object *h = (or_request_object *)lua_newuserdata(L, sizeof *h);
  h->r = NULL;
  luaL_getmetatable(L, OR_REQUEST_MT);
  lua_setmetatable(L, -2);
  if (r) attach(L, -1, h, r);
  return h;
}

/* Unbinds r from its object and frees it. Only for a done request (or one
** that never started): a request in flight holds its object, so its object
** is not released before it is done. */
static void release(lua_State *L, or_request_object *h) {
  or_request *r = h->r;
  if (r == NULL) return;
  h->r = NULL;
  r->object = NULL;
  or_driver_unnotify(r);  /* a done request whose on_done is still to run: it never will */
  or_request_free(L, r);
}

/* Finalizing a request object that is not done happens only at lua_close
** (or when __gc is called by hand): the request goes, quietly. Inside a
** round the request is only marked: the round's sweep completes and frees it.
** Any finalizer order holds: a client finalized first has already detached
** its requests (session NULL), and a client finalized later no longer lists r. */
static int handle_gc(lua_State *L) {
  or_request_object *h = check_handle(L, 1);
  or_request *r = h->r;
  if (r == NULL) return 0;
  if (r->client && r->state != OR_STATE_DONE) {
    or_unref(L, &r->refs[OR_REF_ON_DONE]);  /* nobody is left to tell */
    h->r = NULL;
    r->object = NULL;
    or_driver_discard(L, r);
    return 0;
  }
  release(L, h);
  return 0;
}

static int handle_close(lua_State *L) {
  or_request_object *h = check_handle(L, 1);
  or_request *r = h->r;
  if (r && r->client && r->state != OR_STATE_DONE) {
    if (r->client->in_perform || r->client->in_round)
      return luaL_error(L, "cannot close a request from inside a streaming callback (cancel it)");
    or_driver_cancel(L, r);  /* on_done runs: every request ends exactly once */
  }
  release(L, h);
  return 0;
}

static int handle_cancel(lua_State *L) {
  or_request_object *h = check_handle(L, 1);
  or_request *r = h->r;
  if (r == NULL || r->client == NULL || r->state == OR_STATE_DONE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  or_driver_cancel(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* Pushes res, err of a finished request. */
static int push_outcome(lua_State *L, or_request *r) {
  if (r->state == OR_STATE_DONE && r->refs[OR_REF_RESULT] != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_RESULT]);
    return 1;
  }
  lua_pushnil(L);
  if (r->refs[OR_REF_ERROR] == LUA_NOREF)  /* detached by its client's finalizer */
    or_error_new(L, "cancelled", "the client was closed");
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ERROR]);
  return 2;
}

/* Drives the session until r is done. */
static void wait_for(lua_State *L, or_request *r) {
  while (r->state != OR_STATE_DONE && r->client) {
    or_client *s = r->client;
    or_driver_round(L, s, 0);
    if (r->state == OR_STATE_DONE || r->client == NULL) break;
    or_driver_wait(s, or_driver_wait_ms(s, 1000));
  }
}

static int handle_wait(lua_State *L) {
  or_request_object *h = check_handle(L, 1);
  or_request *r = h->r;
  if (r == NULL) return luaL_error(L, "attempt to wait for a closed request");
  or_check_not_busy(L, r->client);
  wait_for(L, r);
  return push_outcome(L, r);
}

static int handle_index(lua_State *L) {
  or_request_object *h = check_handle(L, 1);
  const char *key = lua_tostring(L, 2);
  or_request *r = h->r;
  if (key && strcmp(key, "done") == 0) {
    lua_pushboolean(L, r == NULL || r->state == OR_STATE_DONE);
    return 1;
  }
  if (key && strcmp(key, "client") == 0) {  /* the client driving it, while it is not done */
    if (r == NULL || r->state == OR_STATE_DONE) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_CLIENT]);
    return 1;
  }
  if (key && (strcmp(key, "result") == 0 || strcmp(key, "error") == 0 || strcmp(key, "info") == 0)) {
    if (r == NULL) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[key[0] == 'r' ? OR_REF_RESULT : key[0] == 'e' ? OR_REF_ERROR : OR_REF_INFO]);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int handle_tostring(lua_State *L) {
  or_request_object *h = check_handle(L, 1);
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

int or_request_object_open(lua_State *L) {
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
  lua_pushvalue(L, -1);
  lua_insert(L, -3);  /* the method table stays on the stack: core.Request */
  lua_pushcclosure(L, handle_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  return 1;
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

/* Whether the call streams: a callback (blocking) or on_chunk (async), or,
** for an action, `stream = true` in its params. */
static int wants_stream(lua_State *L, const or_call *call, int callback_idx, int opts_idx) {
  int yes = callback_idx != 0;
  if (opts_idx) {
    lua_getfield(L, opts_idx, "on_chunk");
    yes = !lua_isnil(L, -1);
    lua_pop(L, 1);
  }
  if (!yes && call->body_is_params) {
    lua_getfield(L, call->body, "stream");
    yes = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return yes || call->stream;
}

/* opts.coalesce at idx, checked: seconds between on_chunk deliveries. */
static double check_coalesce(lua_State *L, int opts_idx) {
  double coalesce = 0;
  if (opts_idx == 0) return 0;
  check_callbacks(L, opts_idx);
  lua_getfield(L, opts_idx, "coalesce");
  if (!lua_isnil(L, -1)) {
    coalesce = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(coalesce >= 0) || coalesce > 3600)
      luaL_argerror(L, opts_idx, "'coalesce' must be a number of seconds (>= 0)");
  }
  lua_pop(L, 1);
  return coalesce;
}

/* The callbacks and client of a new request, as registry references. */
static void hold_callbacks(lua_State *L, or_request *r, int callback_idx, int opts_idx,
                           double coalesce) {
  lua_pushvalue(L, 1);
  r->refs[OR_REF_CLIENT] = luaL_ref(L, LUA_REGISTRYINDEX);
  if (callback_idx) {
    lua_pushvalue(L, callback_idx);
    r->refs[OR_REF_ON_CHUNK] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (opts_idx == 0) return;
  r->refs[OR_REF_ON_CHUNK] = opt_function(L, opts_idx, "on_chunk");
  r->refs[OR_REF_ON_DONE] = opt_function(L, opts_idx, "on_done");
  r->refs[OR_REF_ON_RESPONSE] = opt_function(L, opts_idx, "on_response");
  if (coalesce > 0 && r->refs[OR_REF_ON_CHUNK] != LUA_NOREF && r->assembly != OR_ASSEMBLE_NONE) {
    r->delivery.coalesce = coalesce;
    lua_newtable(L);
    r->refs[OR_REF_PENDING] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

/* A blocking call's end: pushes res, err, info (or raises a callback's error). */
static int finish_blocking(lua_State *L, or_request_object *h, int object) {
  or_request *r = h->r;
  wait_for(L, r);
  lua_settop(L, object);
  if (r->refs[OR_REF_RAISE] != LUA_NOREF) {
    /* the stream callback raised: its error propagates, after cleanup */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_RAISE]);
    release(L, h);
    return lua_error(L);
  }
  if (push_outcome(L, r) == 1) lua_pushnil(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_INFO]);
  release(L, h);
  return 3;
}

int or_run(lua_State *L, or_client *c, or_call *call, int callback_idx, int opts_idx,
           double not_found_wait) {
  or_request *r;
  or_request_object *h;
  int object;
  double coalesce;
  if (opts_idx == 0) or_check_not_busy(L, c);
  coalesce = check_coalesce(L, opts_idx);
  call->stream = wants_stream(L, call, callback_idx, opts_idx);
  /* the object first: from here on, a raise leaves r to its __gc */
  h = push_object(L, NULL);
  object = lua_gettop(L);
  r = or_request_new(L, c, call);
  attach(L, object, h, r);
  r->blocking = opts_idx == 0;
  r->started = or_monotonic();
  if (not_found_wait > 0) r->not_found_until = r->started + not_found_wait;
  hold_callbacks(L, r, callback_idx, opts_idx, coalesce);
  or_driver_enqueue(c, r);
  if (!r->blocking) {
    or_driver_kick(L, c);  /* a host loop runs a round for it */
    return 1;
  }
  return finish_blocking(L, h, object);
}
