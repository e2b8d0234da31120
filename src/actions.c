/*
** The client's actions: argument checks, paths, and the blocking and async
** entry points, all going through or_call (handle.c).
*/
#include "openrouter.h"

#include <string.h>

/* ---- actions ---- */

static int check_callback(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (t == LUA_TNONE || t == LUA_TNIL) return 0;
  if (t != LUA_TFUNCTION) {
    lua_pushfstring(L, "function expected, got %s", luaL_typename(L, idx));
    luaL_argerror(L, idx, lua_tostring(L, -1));
  }
  return idx;
}

/* Pushes s percent-encoded (RFC 3986 unreserved characters kept). */
static void push_escaped(lua_State *L, const char *s, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  luaL_Buffer b;
  size_t i;
  luaL_buffinit(L, &b);
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || c == '.' || c == '~') {
      luaL_addchar(&b, (char)c);
    } else {
      luaL_addchar(&b, '%');
      luaL_addchar(&b, hex[c >> 4]);
      luaL_addchar(&b, hex[c & 15]);
    }
  }
  luaL_pushresult(&b);
}

/* Pushes query[key] as a string: lists are comma-joined, as the API takes them. */
static void push_query_value(lua_State *L, int query, const char *key) {
  lua_getfield(L, query, key);
  if (lua_istable(L, -1)) {
    int j, m = (int)or_rawlen(L, -1), list = lua_gettop(L);
    lua_pushliteral(L, "");
    for (j = 1; j <= m; j++) {
      lua_rawgeti(L, list, j);
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_argerror(L, query, lua_pushfstring(L, "query list '%s' must hold strings", key));
      if (j > 1) {
        lua_pushliteral(L, ",");
        lua_insert(L, -2);
        lua_concat(L, 3);
      } else {
        lua_concat(L, 2);
      }
    }
    lua_remove(L, list);
  } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
    lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
    lua_remove(L, -2);
  } else if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
    luaL_argerror(L, query, lua_pushfstring(L,
      "query value '%s' must be a string, number, boolean or list", key));
  }
}

/* Pushes "/models" with the query table at idx (0: none) as parameters. */
static void push_models_path(lua_State *L, int query) {
  int path;
  lua_pushliteral(L, "/models");
  path = lua_gettop(L);
  if (query) {
    /* sorted keys: the same query always makes the same URL */
    int keys, i, n = 0;
    lua_newtable(L);
    keys = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, query)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, query, "query keys must be strings");
      lua_pushvalue(L, -1);
      lua_rawseti(L, keys, ++n);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, keys);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    for (i = 1; i <= n; i++) {
      size_t klen, vlen;
      const char *k, *v;
      lua_rawgeti(L, keys, i);
      k = lua_tolstring(L, -1, &klen);
      push_query_value(L, query, k);
      v = lua_tolstring(L, -1, &vlen);
      lua_pushvalue(L, path);
      lua_pushstring(L, i == 1 ? "?" : "&");
      push_escaped(L, k, klen);
      lua_pushliteral(L, "=");
      push_escaped(L, v, vlen);
      lua_concat(L, 5);
      lua_replace(L, path);
      lua_pop(L, 2);
    }
    lua_settop(L, path);
  }
}

/* The options table of an async call at idx: a table, or a new empty one for nil. */
static int check_opts(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) {
    lua_settop(L, idx - 1);
    lua_newtable(L);
    return idx;
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  return idx;
}

/* client:get_models([query]): GET /models, query parameters passed through. */
static int client_get_models(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  push_models_path(L, lua_istable(L, 2) ? 2 : 0);
  return or_call(L, s, OR_ACTION_MODELS, lua_tostring(L, -1), 0, 0, 0);
}

/* client:get_models_async{ query =, on_done =, on_response = } -> request */
static int client_get_models_async(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int opts = check_opts(L, 2), query = 0;
  lua_settop(L, opts);
  lua_getfield(L, opts, "query");
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1)) luaL_argerror(L, opts, "'query' must be a table");
    query = lua_gettop(L);
  }
  push_models_path(L, query);
  return or_call(L, s, OR_ACTION_MODELS, lua_tostring(L, -1), 0, 0, opts);
}

static int client_get_credits(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  return or_call(L, s, OR_ACTION_CREDITS, "/credits", 0, 0, 0);
}

static int client_get_credits_async(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int opts = check_opts(L, 2);
  return or_call(L, s, OR_ACTION_CREDITS, "/credits", 0, 0, opts);
}

static void check_prompt(lua_State *L) {
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "prompt");
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, 2, lua_pushfstring(L, "'prompt' must be a string, got %s", luaL_typename(L, -1)));
  lua_pop(L, 1);
}

static void check_messages(lua_State *L) {
  int n, count = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "messages");
  if (!lua_istable(L, -1))
    luaL_argerror(L, 2, lua_pushfstring(L, "'messages' must be a table, got %s", luaL_typename(L, -1)));
  n = (int)or_rawlen(L, -1);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    count++;
    if (lua_type(L, -2) != LUA_TNUMBER || !lua_istable(L, -1))
      luaL_argerror(L, 2, "'messages' must be a sequence of message tables");
    lua_pop(L, 1);
  }
  if (n == 0 || count != n) luaL_argerror(L, 2, "'messages' must be a non-empty sequence");
  lua_pop(L, 1);
}

static int client_completion(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int cb;
  check_prompt(L);
  cb = check_callback(L, 3);
  return or_call(L, s, OR_ACTION_COMPLETION, "/completions", 2, cb, 0);
}

static int client_completion_async(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int opts;
  check_prompt(L);
  opts = check_opts(L, 3);
  return or_call(L, s, OR_ACTION_COMPLETION, "/completions", 2, 0, opts);
}

static int client_chat_completion(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int cb;
  check_messages(L);
  cb = check_callback(L, 3);
  return or_call(L, s, OR_ACTION_CHAT, "/chat/completions", 2, cb, 0);
}

static int client_chat_completion_async(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int opts;
  check_messages(L);
  opts = check_opts(L, 3);
  return or_call(L, s, OR_ACTION_CHAT, "/chat/completions", 2, 0, opts);
}

/* client:get_key() -> the `data` of GET /key: limits and usage of the key. */
static int client_get_key(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  return or_call(L, s, OR_ACTION_KEY, "/key", 0, 0, 0);
}

static int client_get_key_async(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int opts = check_opts(L, 2);
  return or_call(L, s, OR_ACTION_KEY, "/key", 0, 0, opts);
}

/* Pushes "/generation?id=<id>" for the id at idx (checked). */
static void push_generation_path(lua_State *L, int idx) {
  size_t len;
  const char *id = luaL_checklstring(L, idx, &len);
  if (len == 0 || len > 256) luaL_argerror(L, idx, "generation id must be 1-256 characters");
  lua_pushliteral(L, "/generation?id=");
  push_escaped(L, id, len);
  lua_concat(L, 2);
}

/* How long a 404 is retried: opts.wait at idx (0: none) or 5 seconds. */
static double generation_wait(lua_State *L, int opts) {
  double wait = 5;
  if (opts) {
    lua_getfield(L, opts, "wait");
    if (!lua_isnil(L, -1)) {
      wait = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(wait >= 0) || wait > 600)
        luaL_argerror(L, opts, "'wait' must be a number of seconds between 0 and 600");
    }
    lua_pop(L, 1);
  }
  return wait;
}

/* Sets the 404 deadline on the request object just pushed by or_call. */
static void set_not_found_wait(lua_State *L, int object, double wait) {
  or_handle *h = (or_handle *)luaL_checkudata(L, object, OR_REQUEST_MT);
  if (h->r && wait > 0) h->r->not_found_until = h->r->started + wait;
}

/* client:get_generation(id [, { wait = seconds }]) -> the `data` of GET /generation.
** A 404 is retried with backoff for `wait` seconds (default 5): stats are written
** asynchronously after a completion. */
static int client_get_generation(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int opts = 0, path, object;
  double wait;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    opts = 3;
  }
  wait = generation_wait(L, opts);
  lua_settop(L, 3);
  push_generation_path(L, 2);
  path = lua_gettop(L);
  /* an async request plus wait, so that the 404 deadline can be set in between */
  lua_newtable(L);
  object = lua_gettop(L) + 1;
  or_call(L, s, OR_ACTION_GENERATION, lua_tostring(L, path), 0, 0, lua_gettop(L));
  set_not_found_wait(L, object, wait);
  lua_getfield(L, object, "wait");
  lua_pushvalue(L, object);
  lua_call(L, 1, 2);
  lua_getfield(L, object, "close");
  lua_pushvalue(L, object);
  lua_call(L, 1, 0);
  return 2;
}

/* client:get_generation_async(id, { wait =, on_done =, on_response = }) -> request */
static int client_get_generation_async(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int opts = check_opts(L, 3), object;
  double wait = generation_wait(L, opts);
  push_generation_path(L, 2);
  object = lua_gettop(L) + 1;
  or_call(L, s, OR_ACTION_GENERATION, lua_tostring(L, -1), 0, 0, opts);
  set_not_found_wait(L, object, wait);
  return 1;
}

static int is_dot_segment(const char *p, size_t n) {
  return (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
}

/* Pushes "/models/<author>/<slug>/endpoints" for the model id at idx (checked). */
static void push_endpoints_path(lua_State *L, int idx) {
  size_t len, i, slash = 0;
  const char *id = luaL_checklstring(L, idx, &len);
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)id[i];
    if (c == '/') {
      if (slash) break;
      slash = i;
    } else if (c <= ' ' || c == 0x7f || c == '?' || c == '#' || c == '%' || c == '\\') {
      break;
    }
  }
  /* "." and ".." segments would be resolved by libcurl and the server: the key
  ** would go to another path ("../../credits") */
  if (len > 200 || i < len || slash == 0 || slash == len - 1 || is_dot_segment(id, slash) ||
      is_dot_segment(id + slash + 1, len - slash - 1))
    luaL_argerror(L, idx, "model id must look like 'author/slug'");
  lua_pushliteral(L, "/models/");
  push_escaped(L, id, slash);
  lua_pushliteral(L, "/");
  push_escaped(L, id + slash + 1, len - slash - 1);
  lua_pushliteral(L, "/endpoints");
  lua_concat(L, 5);
}

/* client:get_model_endpoints("author/slug") -> the `data` of
** GET /models/{author}/{slug}/endpoints: the model and its per-provider endpoints. */
static int client_get_model_endpoints(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  lua_settop(L, 2);
  push_endpoints_path(L, 2);
  return or_call(L, s, OR_ACTION_ENDPOINTS, lua_tostring(L, -1), 0, 0, 0);
}

static int client_get_model_endpoints_async(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int opts = check_opts(L, 3);
  push_endpoints_path(L, 2);
  return or_call(L, s, OR_ACTION_ENDPOINTS, lua_tostring(L, -1), 0, 0, opts);
}

static void check_embeddings(lua_State *L) {
  int t;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "input");
  t = lua_type(L, -1);
  if (t == LUA_TTABLE) {
    int n = (int)or_rawlen(L, -1), i;
    if (n == 0) luaL_argerror(L, 2, "'input' must be a string or a non-empty list");
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER && !lua_istable(L, -1))
        luaL_argerror(L, 2, lua_pushfstring(L, "'input[%d]' must be a string", i));
      lua_pop(L, 1);
    }
  } else if (t != LUA_TSTRING) {
    luaL_argerror(L, 2, lua_pushfstring(L, "'input' must be a string or a list, got %s",
                                        lua_typename(L, t)));
  }
  lua_pop(L, 1);
}

/* client:embeddings{ model =, input = "text" or { "a", "b" } } -> the decoded response. */
static int client_embeddings(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  check_embeddings(L);
  lua_settop(L, 2);
  return or_call(L, s, OR_ACTION_EMBEDDINGS, "/embeddings", 2, 0, 0);
}

static int client_embeddings_async(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int opts;
  check_embeddings(L);
  opts = check_opts(L, 3);
  return or_call(L, s, OR_ACTION_EMBEDDINGS, "/embeddings", 2, 0, opts);
}

static const luaL_Reg actions[] = {
  {"get_key", client_get_key},
  {"get_key_async", client_get_key_async},
  {"get_generation", client_get_generation},
  {"get_generation_async", client_get_generation_async},
  {"get_model_endpoints", client_get_model_endpoints},
  {"get_model_endpoints_async", client_get_model_endpoints_async},
  {"embeddings", client_embeddings},
  {"embeddings_async", client_embeddings_async},
  {"get_models", client_get_models},
  {"get_models_async", client_get_models_async},
  {"get_credits", client_get_credits},
  {"get_credits_async", client_get_credits_async},
  {"completion", client_completion},
  {"completion_async", client_completion_async},
  {"chat_completion", client_chat_completion},
  {"chat_completion_async", client_chat_completion_async},
  {"poll", or_client_poll},
  {NULL, NULL}
};

/* Adds the actions to the client method table at idx. */
void or_actions_register(lua_State *L, int methods) {
  lua_pushvalue(L, methods);
  or_setfuncs(L, actions, 0);
  lua_pop(L, 1);
}
