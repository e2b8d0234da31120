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

/* err.code from error.code: a number (an integer when integral) or a string. */
static void set_code(lua_State *L, int err, int e) {
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
}

/* err.availability from error.availability, and err.retry_after from its
** retry_after unless the Retry-After header already set one. */
static void set_availability(lua_State *L, int err, int e) {
  lua_getfield(L, e, "availability");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
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
}

/* err.message: the provider's own words (prefixed with its name) when OpenRouter
** only says "Provider returned error", else error.message, else a placeholder. */
static void set_message(lua_State *L, int err, int e, int metadata) {
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
  set_code(L, err, e);
  lua_getfield(L, e, "metadata");
  metadata = lua_gettop(L);
  if (lua_istable(L, metadata)) {
    lua_pushvalue(L, metadata);
    lua_setfield(L, err, "metadata");
  }
  if (get_string(L, metadata, "error_type") || get_string(L, e, "error_type"))
    lua_setfield(L, err, "error_type");
  if (get_string(L, metadata, "provider_name")) lua_setfield(L, err, "provider");
  set_availability(L, err, e);
  set_message(L, err, e, metadata);
  lua_settop(L, top);
}

/* Bytes a reader does not see between two characters of the key: or_body_snippet
** and tostring turn line breaks and runs of spaces into one space, a terminal shows
** nothing for NUL and most control characters. A key broken by them still reads as
** the key, so it is matched across them. */
static int is_gap(unsigned char c) {
  return c <= 0x20 || c == 0x7f;
}

/* How many bytes of s, from its start, spell key[0..want) with gaps between its
** characters (none before the first); 0 when they do not. *got: characters matched. */
static size_t spell(const char *s, size_t len, const char *key, size_t want, size_t *got) {
  size_t i = 0, j = 0;
  while (j < want && i < len) {
    if (s[i] == key[j]) {
      i++;
      j++;
    } else if (j > 0 && is_gap((unsigned char)s[i])) {
      i++;
    } else {
      break;
    }
  }
  *got = j;
  return j == want ? i : 0;
}

/* The next occurrence of the key in s[0..len): its offset in *at, its length
** returned (0: none). Lengths throughout, never strstr: a NUL byte must not
** hide what follows it. */
static size_t find_key(const char *s, size_t len, const char *key, size_t keylen, size_t *at) {
  const char *p = s, *end = s + len;
  size_t n, got;
  while (p < end && (p = (const char *)memchr(p, key[0], (size_t)(end - p))) != NULL) {
    n = spell(p, (size_t)(end - p), key, keylen, &got);
    if (n > 0) {
      *at = (size_t)(p - s);
      return n;
    }
    p++;
  }
  return 0;
}

/* Where a cut-off key starts in s: a snippet ("...") that ends inside the key
** shows its first part. Returns len when s does not end so. Eight characters
** at least, so that ordinary text is left alone. */
static size_t cut_key_start(const char *s, size_t len, const char *key, size_t keylen) {
  size_t end, from, p, got;
  if (len < 3 || memcmp(s + len - 3, "...", 3) != 0) return len;
  end = len - 3;
  from = end > 2 * keylen ? end - 2 * keylen : 0;
  for (p = from; p < end; p++) {
    if (s[p] != key[0]) continue;
    spell(s + p, end - p, key, keylen, &got);
    if (got >= 8 && got < keylen) {
      size_t n = spell(s + p, end - p, key, got, &got);
      if (p + n == end) return p;
    }
  }
  return len;
}

/* Whether s holds the key, whole or cut off at the end of a snippet. */
static int has_key(const char *s, size_t len, const char *key, size_t keylen) {
  size_t at;
  return find_key(s, len, key, keylen, &at) > 0 || cut_key_start(s, len, key, keylen) < len;
}

/* Pushes s with every occurrence of key replaced. */
static void push_scrubbed(lua_State *L, const char *s, size_t len, const char *key, size_t keylen) {
  luaL_Buffer b;
  size_t at, n, cut;
  luaL_buffinit(L, &b);
  while ((n = find_key(s, len, key, keylen, &at)) > 0) {
    luaL_addlstring(&b, s, at);
    luaL_addstring(&b, "[redacted]");
    s += at + n;
    len -= at + n;
  }
  cut = cut_key_start(s, len, key, keylen);
  luaL_addlstring(&b, s, cut);
  if (cut < len) luaL_addstring(&b, "[redacted]...");
  luaL_pushresult(&b);
}

/* Pushes the value at idx scrubbed when it is a string that holds the key;
** returns whether it pushed. */
static int scrubbed(lua_State *L, int idx, const char *key, size_t keylen) {
  size_t len;
  const char *str;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  str = lua_tolstring(L, idx, &len);
  if (len < 8 || !has_key(str, len, key, keylen)) return 0;
  push_scrubbed(L, str, len, key, keylen);
  return 1;
}

/* Renames the keys listed in the table at `renames` (old key at 2i-1, new at 2i):
** done after the traversal, since lua_next forbids adding keys during one. */
static void rename_keys(lua_State *L, int t, int renames) {
  int i, n = (int)or_rawlen(L, renames);
  for (i = 1; i < n; i += 2) {
    lua_rawgeti(L, renames, i + 1);
    lua_rawgeti(L, renames, i);
    lua_rawget(L, t);
    lua_rawgeti(L, renames, i);
    lua_pushnil(L);
    lua_rawset(L, t);
    lua_rawset(L, t);
  }
}

/* Replaces the key in every string of the table at t, nested tables and the
** names of fields included (servers echo request data in metadata.raw, in JSON
** keys, and a model may echo it too). */
static void scrub_table(lua_State *L, int t, const char *key, size_t keylen, int depth) {
  int renames = 0;
  if (depth > 1000) return;  /* cjson decodes no deeper than 1000 levels */
  luaL_checkstack(L, 6, "error too deep");
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int v = lua_gettop(L);
    if (scrubbed(L, v, key, keylen)) {
      lua_pushvalue(L, v - 1);
      lua_insert(L, -2);
      lua_rawset(L, t);
    } else if (lua_type(L, v) == LUA_TTABLE && lua_getmetatable(L, v) == 0) {
      /* plain data only: a value the caller raised (err.cause) keeps its metatable */
      scrub_table(L, v, key, keylen, depth + 1);
    }
    lua_settop(L, v);
    if (scrubbed(L, v - 1, key, keylen)) {
      if (renames == 0) {
        lua_newtable(L);
        lua_insert(L, v - 1);  /* below the traversal's key */
        renames = v - 1;
        v++;
      }
      lua_pushvalue(L, v - 1);
      lua_rawseti(L, renames, (int)or_rawlen(L, renames) + 1);
      lua_rawseti(L, renames, (int)or_rawlen(L, renames) + 1);
    }
    lua_settop(L, v - 1);
  }
  if (renames) {
    rename_keys(L, t, renames);
    lua_remove(L, renames);
  }
}

/* Replaces every occurrence of the key in the strings of an error object. */
void or_error_scrub(lua_State *L, int err, const char *key, size_t keylen) {
  err = or_absindex(L, err);
  if (key == NULL || keylen < 8) return;
  scrub_table(L, err, key, keylen, 0);
}
