/*
** The session userdata, which is the client: configuration, the curl multi
** handle that owns the connection cache, one easy handle kept for reuse, and
** one idempotent closer shared by __gc, __close (5.4) and :close().
*/
#include "openrouter.h"

#include <stdlib.h>
#include <string.h>

or_session *or_check_session(lua_State *L, int idx) {
  or_session *s = (or_session *)luaL_checkudata(L, idx, OR_SESSION_MT);
  if (s->closed) luaL_error(L, "attempt to use a closed openrouter client");
  return s;
}

void or_slist_free_secure(struct curl_slist *list) {
  struct curl_slist *item;
  for (item = list; item; item = item->next) {
    volatile char *p = item->data;
    while (p && *p) *p++ = 0;  /* the Authorization line holds the key */
  }
  curl_slist_free_all(list);
}

CURL *or_session_take_easy(or_session *s) {
  CURL *e = s->idle_easy;
  if (e) {
    s->idle_easy = NULL;
    return e;
  }
  return curl_easy_init();
}

void or_session_return_easy(or_session *s, CURL *easy) {
  if (!s->closed && s->idle_easy == NULL)
    s->idle_easy = easy;
  else
    curl_easy_cleanup(easy);
}

double or_session_jitter(or_session *s) {
  /* xorshift64*: plenty for spreading retries, and no shared state */
  unsigned long long x = s->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  s->rng = x;
  return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static void session_free(or_session *s) {
  if (s->idle_easy) curl_easy_cleanup(s->idle_easy);
  s->idle_easy = NULL;
  if (s->multi) curl_multi_cleanup(s->multi);
  s->multi = NULL;
  or_slist_free_secure(s->headers);
  s->headers = NULL;
  or_buffer_free_secure(&s->api_key);
  free(s->base_url);
  free(s->ca_file);
  free(s->proxy);
  s->base_url = s->ca_file = s->proxy = NULL;
  s->closed = 1;
}

static int session_close(lua_State *L) {
  or_session *s = (or_session *)luaL_checkudata(L, 1, OR_SESSION_MT);
  if (s->busy) return luaL_error(L, "cannot close an openrouter client from inside its own callbacks");
  if (!s->closed) session_free(s);
  return 0;
}

static int session_gc(lua_State *L) {
  or_session *s = (or_session *)luaL_checkudata(L, 1, OR_SESSION_MT);
  if (!s->closed && !s->busy) session_free(s);
  return 0;
}

static int session_tostring(lua_State *L) {
  or_session *s = (or_session *)luaL_checkudata(L, 1, OR_SESSION_MT);
  if (s->closed)
    lua_pushliteral(L, "openrouter client (closed)");
  else
    lua_pushfstring(L, "openrouter client (%s)", s->base_url);
  return 1;
}

static int session_is_closed(lua_State *L) {
  or_session *s = (or_session *)luaL_checkudata(L, 1, OR_SESSION_MT);
  lua_pushboolean(L, s->closed);
  return 1;
}

/* ---- construction from the option table the Lua layer validated ---- */

static char *opt_string(lua_State *L, int cfg, const char *name, int required) {
  const char *v;
  size_t len;
  char *copy;
  lua_getfield(L, cfg, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (required) luaL_error(L, "openrouter: option '%s' is required", name);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "openrouter: option '%s' must be a string", name);
  v = lua_tolstring(L, -1, &len);
  copy = (char *)malloc(len + 1);
  if (copy) memcpy(copy, v, len + 1);
  lua_pop(L, 1);
  return copy;
}

static double opt_number(lua_State *L, int cfg, const char *name, double dflt) {
  double v;
  lua_getfield(L, cfg, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return dflt;
  }
  if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "openrouter: option '%s' must be a number", name);
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(v >= 0) || v > 1e12) luaL_error(L, "openrouter: option '%s' out of range", name);
  return v;
}

/* core.new(cfg) -> client. cfg holds the options in their final form. */
int or_session_new(lua_State *L) {
  or_session *s;
  int cfg = 1, i, n;
  luaL_checktype(L, cfg, LUA_TTABLE);
  s = (or_session *)lua_newuserdata(L, sizeof *s);
  memset(s, 0, sizeof *s);
  or_buffer_init(&s->api_key);
  s->closed = 1;  /* until fully built: __gc then frees what exists */
  luaL_getmetatable(L, OR_SESSION_MT);
  lua_setmetatable(L, -2);
  s->timeout_ms = (long)(opt_number(L, cfg, "timeout", 300) * 1000);
  s->connect_timeout_ms = (long)(opt_number(L, cfg, "connect_timeout", 10) * 1000);
  s->idle_timeout_ms = (long)(opt_number(L, cfg, "stream_idle_timeout", 60) * 1000);
  s->max_retries = (int)opt_number(L, cfg, "max_retries", 2);
  s->retry_base_delay = opt_number(L, cfg, "retry_base_delay", 0.5);
  s->retry_max_delay = opt_number(L, cfg, "retry_max_delay", 30);
  s->max_response_bytes = (size_t)opt_number(L, cfg, "max_response_bytes", 64.0 * 1024 * 1024);
  s->insecure = 0;
  lua_getfield(L, cfg, "insecure");
  s->insecure = lua_toboolean(L, -1);
  lua_pop(L, 1);
  s->rng = (unsigned long long)(size_t)s ^ (unsigned long long)(or_epoch() * 1e6) ^ 0x9E3779B97F4A7C15ULL;
  if (s->rng == 0) s->rng = 1;
  s->closed = 0;
  s->base_url = opt_string(L, cfg, "base_url", 1);
  s->ca_file = opt_string(L, cfg, "ca_file", 0);
  s->proxy = opt_string(L, cfg, "proxy", 0);
  lua_getfield(L, cfg, "api_key");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    const char *key = lua_tolstring(L, -1, &len);
    if (or_buffer_append(&s->api_key, key, len) != 0) luaL_error(L, "not enough memory");
  }
  lua_pop(L, 1);
  lua_getfield(L, cfg, "header_lines");
  if (lua_istable(L, -1)) {
    n = (int)or_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      struct curl_slist *next;
      lua_rawgeti(L, -1, i);
      if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "openrouter: header lines must be strings");
      next = curl_slist_append(s->headers, lua_tostring(L, -1));
      if (!next) luaL_error(L, "not enough memory");
      s->headers = next;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  s->multi = curl_multi_init();
  if (!s->base_url || !s->multi) luaL_error(L, "openrouter: cannot create a curl session");
  return 1;
}

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

/* client:get_models([query]): GET /models, query parameters passed through. */
static int client_get_models(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int path;
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushliteral(L, "/models");
  path = lua_gettop(L);
  if (lua_istable(L, 2)) {
    /* sorted keys: the same query always makes the same URL */
    int keys, i, n = 0;
    lua_newtable(L);
    keys = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, 2, "query keys must be strings");
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
      push_query_value(L, 2, k);
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
  return or_request_run(L, s, OR_ACTION_MODELS, lua_tostring(L, path), 0, 0);
}

static int client_get_credits(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  return or_request_run(L, s, OR_ACTION_CREDITS, "/credits", 0, 0);
}

static int client_completion(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int cb;
  luaL_checktype(L, 2, LUA_TTABLE);
  cb = check_callback(L, 3);
  lua_getfield(L, 2, "prompt");
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, 2, lua_pushfstring(L, "'prompt' must be a string, got %s", luaL_typename(L, -1)));
  lua_pop(L, 1);
  return or_request_run(L, s, OR_ACTION_COMPLETION, "/completions", 2, cb);
}

static int client_chat_completion(lua_State *L) {
  or_session *s = or_check_session(L, 1);
  int cb, n, count = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  cb = check_callback(L, 3);
  lua_getfield(L, 2, "messages");
  if (!lua_istable(L, -1))
    luaL_argerror(L, 2, lua_pushfstring(L, "'messages' must be a table, got %s", luaL_typename(L, -1)));
  n = (int)or_rawlen(L, -1);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    count++;
    if (lua_type(L, -2) != LUA_TNUMBER || !lua_istable(L, -1)) {
      luaL_argerror(L, 2, "'messages' must be a sequence of message tables");
    }
    lua_pop(L, 1);
  }
  if (n == 0 || count != n) luaL_argerror(L, 2, "'messages' must be a non-empty sequence");
  lua_pop(L, 1);
  return or_request_run(L, s, OR_ACTION_CHAT, "/chat/completions", 2, cb);
}

static const luaL_Reg client_methods[] = {
  {"get_models", client_get_models},
  {"get_credits", client_get_credits},
  {"completion", client_completion},
  {"chat_completion", client_chat_completion},
  {"close", session_close},
  {"is_closed", session_is_closed},
  {NULL, NULL}
};

static const luaL_Reg session_meta[] = {
  {"__gc", session_gc},
#if LUA_VERSION_NUM >= 504
  {"__close", session_close},
#endif
  {"__tostring", session_tostring},
  {NULL, NULL}
};

/* Registers the metatable; pushes the method table (the Lua layer adds to it). */
int or_session_open(lua_State *L) {
  luaL_newmetatable(L, OR_SESSION_MT);
  or_setfuncs(L, session_meta, 0);
  lua_getfield(L, -1, "__index");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    or_newlib(L, client_methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
  } else {
    or_setfuncs(L, client_methods, 0);
  }
  lua_remove(L, -2);
  return 1;
}
