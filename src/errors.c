/*
** Error objects: plain tables with the "openrouter.error" metatable, built
** from curl failures, HTTP statuses and OpenRouter's (varied) error bodies.
*/
#include "bridge.h"
#include "errmap.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int error_tostring(lua_State *L) {
  luaL_Buffer b;
  const char *kind, *msg;
  lua_settop(L, 1);
  luaL_buffinit(L, &b);
  lua_getfield(L, 1, "kind");
  kind = lua_tostring(L, -1);
  lua_pop(L, 1);
  luaL_addstring(&b, "openrouter ");
  luaL_addstring(&b, kind ? kind : "unknown");
  luaL_addstring(&b, " error");
  lua_getfield(L, 1, "status");
  lua_getfield(L, 1, "code");
  if (lua_type(L, -2) == LUA_TNUMBER || lua_type(L, -1) == LUA_TNUMBER ||
      lua_type(L, -1) == LUA_TSTRING) {
    int open = 0;
    luaL_addstring(&b, " (");
    if (lua_type(L, -2) == LUA_TNUMBER) {
      lua_pushfstring(L, "HTTP %d", (int)lua_tointeger(L, -2));
      luaL_addvalue(&b);
      open = 1;
    }
    if (lua_type(L, -1) == LUA_TNUMBER || lua_type(L, -1) == LUA_TSTRING) {
      /* skip a code that only repeats the status */
      if (!(open && lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == lua_tonumber(L, -2))) {
        if (open) luaL_addstring(&b, ", ");
        luaL_addstring(&b, "code ");
        lua_pushvalue(L, -1);
        luaL_addvalue(&b);
      }
    }
    luaL_addstring(&b, ")");
  }
  lua_pop(L, 2);
  lua_getfield(L, 1, "message");
  msg = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (msg) {
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, msg);
  }
  luaL_pushresult(&b);
  /* one line, whatever a server put in its message */
  luaL_gsub(L, lua_tostring(L, -1), "\r\n", " ");
  luaL_gsub(L, lua_tostring(L, -1), "\n", " ");
  luaL_gsub(L, lua_tostring(L, -1), "\r", " ");
  return 1;
}

int or_errors_open(lua_State *L) {
  luaL_newmetatable(L, OR_ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  return 0;
}

void or_error_new(lua_State *L, const char *kind, const char *message) {
  lua_newtable(L);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  if (message) {
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
  }
  luaL_getmetatable(L, OR_ERROR_MT);
  lua_setmetatable(L, -2);
}

void or_error_set_string(lua_State *L, int err, const char *field, const char *value) {
  err = or_absindex(L, err);
  if (value == NULL || value[0] == '\0') return;
  lua_pushstring(L, value);
  lua_setfield(L, err, field);
}

/* Integral values become Lua integers on 5.3+, so they print as 429, not 429.0.
** Only values inside lua_Integer's range are converted (a server's code may be
** 1e300 or NaN: casting those is undefined); the others stay numbers. */
static void push_number(lua_State *L, double value) {
  const double limit = ldexp(1.0, (int)(sizeof(lua_Integer) * CHAR_BIT) - 1);
  if (value >= -limit && value < limit && value == (double)(lua_Integer)value)
    lua_pushinteger(L, (lua_Integer)value);
  else
    lua_pushnumber(L, value);
}

void or_error_set_number(lua_State *L, int err, const char *field, double value) {
  err = or_absindex(L, err);
  push_number(L, value);
  lua_setfield(L, err, field);
}

/* Pushes t[field] when it is a string, else nothing; returns whether it pushed. */
static int get_string(lua_State *L, int t, const char *field) {
  if (!lua_istable(L, t)) return 0;
  lua_getfield(L, t, field);
  if (lua_type(L, -1) == LUA_TSTRING) return 1;
  lua_pop(L, 1);
  return 0;
}

/* A useful message out of an upstream error body, as ai-sdk-provider does:
** message, error (string or nested), detail, details, msg. Pushes it or nothing. */
static int dig_message(lua_State *L, int t, int depth) {
  static const char *const fields[] = {"message", "error", "detail", "details", "msg", NULL};
  int i;
  if (depth > 4 || !lua_istable(L, t)) return 0;
  for (i = 0; fields[i]; i++) {
    lua_getfield(L, t, fields[i]);
    if (lua_type(L, -1) == LUA_TSTRING && or_rawlen(L, -1) > 0) return 1;
    if (lua_istable(L, -1)) {
      int nested = lua_gettop(L);
      if (dig_message(L, nested, depth + 1)) {
        lua_remove(L, nested);
        return 1;
      }
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* metadata.raw: the upstream provider's own error, often a JSON string. */
static int push_raw_message(lua_State *L, int metadata) {
  int raw_idx;
  const char *raw;
  size_t len;
  char snippet[301];
  if (!get_string(L, metadata, "raw")) return 0;
  raw_idx = lua_gettop(L);
  raw = lua_tolstring(L, raw_idx, &len);
  if (or_json_decode(L, raw, len) && lua_istable(L, -1) &&
      dig_message(L, lua_gettop(L), 0)) {
    lua_replace(L, raw_idx);
    lua_settop(L, raw_idx);
    return 1;
  }
  /* not JSON, or no message inside: the raw text itself, shortened */
  or_body_snippet(raw, len, snippet, sizeof snippet);
  lua_settop(L, raw_idx - 1);
  if (snippet[0] == '\0') return 0;
  lua_pushstring(L, snippet);
  return 1;
}

void or_error_fill_api(lua_State *L, int err, int body) {
  int e, metadata, top = lua_gettop(L);
  err = or_absindex(L, err);
  body = or_absindex(L, body);
  lua_pushstring(L, "api");
  lua_setfield(L, err, "kind");
  lua_getfield(L, body, "error");
  e = lua_gettop(L);
  if (!lua_istable(L, e)) {
    lua_settop(L, top);
    return;
  }
  lua_getfield(L, e, "code");
  if (lua_type(L, -1) == LUA_TNUMBER) {
    push_number(L, lua_tonumber(L, -1));
    lua_setfield(L, err, "code");
    lua_pop(L, 1);
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    lua_setfield(L, err, "code");
  } else {
    lua_pop(L, 1);
  }
  lua_getfield(L, e, "metadata");
  metadata = lua_gettop(L);
  if (lua_istable(L, metadata)) {
    lua_pushvalue(L, metadata);
    lua_setfield(L, err, "metadata");
  }
  if (get_string(L, metadata, "error_type") || get_string(L, e, "error_type"))
    lua_setfield(L, err, "error_type");
  if (get_string(L, metadata, "provider_name")) lua_setfield(L, err, "provider");
  lua_getfield(L, e, "availability");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "retry_after");
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_getfield(L, err, "retry_after");
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_setfield(L, err, "retry_after");
      } else {
        lua_pop(L, 2);
      }
    } else {
      lua_pop(L, 1);
    }
    lua_setfield(L, err, "availability");
  } else {
    lua_pop(L, 1);
  }
  /* message: the provider's own words when OpenRouter only says "Provider returned error" */
  if (push_raw_message(L, metadata)) {
    lua_getfield(L, err, "provider");
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushfstring(L, "[%s] %s", lua_tostring(L, -1), lua_tostring(L, -2));
      lua_setfield(L, err, "message");
      lua_pop(L, 2);
    } else {
      lua_pop(L, 1);
      lua_setfield(L, err, "message");
    }
  } else if (get_string(L, e, "message")) {
    lua_setfield(L, err, "message");
  } else {
    lua_pushliteral(L, "error body without a message");
    lua_setfield(L, err, "message");
  }
  lua_settop(L, top);
}

/* Pushes s with every occurrence of key replaced. */
static void push_scrubbed(lua_State *L, const char *s, const char *key, size_t keylen) {
  luaL_Buffer b;
  const char *hit;
  luaL_buffinit(L, &b);
  while ((hit = strstr(s, key)) != NULL) {
    luaL_addlstring(&b, s, (size_t)(hit - s));
    luaL_addstring(&b, "[redacted]");
    s = hit + keylen;
  }
  luaL_addstring(&b, s);
  luaL_pushresult(&b);
}

/* Replaces the key in every string of the table at t, nested tables included
** (servers echo request data in metadata.raw, and a model may echo it too). */
static void scrub_table(lua_State *L, int t, const char *key, size_t keylen, int depth) {
  if (depth > 1000) return;  /* cjson decodes no deeper than 1000 levels */
  luaL_checkstack(L, 4, "error too deep");
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int v = lua_gettop(L);
    if (lua_type(L, v) == LUA_TSTRING) {
      size_t len;
      const char *str = lua_tolstring(L, v, &len);
      if (len >= keylen && strstr(str, key)) {
        lua_pushvalue(L, v - 1);
        push_scrubbed(L, str, key, keylen);
        lua_rawset(L, t);
      }
    } else if (lua_type(L, v) == LUA_TTABLE && lua_getmetatable(L, v) == 0) {
      /* plain data only: a value the caller raised (err.cause) keeps its metatable */
      scrub_table(L, v, key, keylen, depth + 1);
    } else if (lua_type(L, v) == LUA_TTABLE) {
      lua_pop(L, 1);
    }
    lua_settop(L, v - 1);
  }
}

/* Replaces every occurrence of the key in the strings of an error object. */
void or_error_scrub(lua_State *L, int err, const char *key, size_t keylen) {
  err = or_absindex(L, err);
  if (key == NULL || keylen < 8) return;
  scrub_table(L, err, key, keylen, 0);
}
