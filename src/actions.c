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

static const luaL_Reg actions[] = {
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
