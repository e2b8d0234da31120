/*
** The bridge to lua-cjson: a private cjson instance (our settings never touch
** the caller's cjson), request encoding with JSON arrays where the API wants
** them, and protected decoding.
*/
#include "bridge.h"
#include "platform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An empty Lua table is ambiguous; under these keys the API wants an array. */
static const char *const array_keys[] = {
  "messages", "tools", "stop", "models", "plugins", "transforms", "order", "only",
  "ignore", "quantizations", "tool_calls", "reasoning_details", "content", "required",
  "enum", "input", "prompt", "modalities", "annotations", "images", "anyOf", "oneOf",
  "allOf", "prefixItems", NULL
};

/* Debian's lua-cjson has no empty_array, and writes at most 14 digits: we
** encode marker strings instead and rewrite their JSON form afterwards. Each
** marker carries a per-load nonce, so no caller string can pass for one. */

#define MAX_DEPTH 200

static int call_method(lua_State *L, int mod, const char *name, int nargs) {
  lua_getfield(L, mod, name);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1 + nargs);
    return 0;
  }
  lua_insert(L, -(nargs + 1));
  return lua_pcall(L, nargs, 1, 0) == 0;
}

/* Pushes the JSON codec's module. Inside Neovim that is always vim.json (the
** same cjson underneath), even when lua-cjson is installed too: JSON null is
** then vim.NIL on every machine, the value vim.json, vim.fn.json_decode and
** the LSP client give plugins (README, "Neovim"). Elsewhere lua-cjson; raises
** when there is none. Returns whether it is vim.json. */
static int push_codec(lua_State *L) {
  lua_getglobal(L, "vim");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "json");
    if (lua_istable(L, -1)) {
      lua_remove(L, -2);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushstring(L, "cjson");
  if (lua_pcall(L, 1, 1, 0) == 0) return 0;
  return luaL_error(L, "openrouter needs lua-cjson: %s", lua_tostring(L, -1));
}

/* Keeps full double precision: 17 digits where the flavour allows it (openresty),
** else 14 and exact numbers by hand (ctx.short_precision, see push_exact_number). */
static void set_precision(lua_State *L, int mod, int ctx, int is_vim) {
  lua_pushinteger(L, 17);
  if (is_vim || !call_method(L, mod, "encode_number_precision", 1)) {
    lua_settop(L, ctx);
    lua_pushinteger(L, 14);
    if (!is_vim) call_method(L, mod, "encode_number_precision", 1);
    lua_settop(L, ctx);
    lua_pushboolean(L, 1);
    lua_setfield(L, ctx, "short_precision");
  }
  lua_settop(L, ctx);
}

/* ctx.null, ctx.backend and, for vim.json, the values it needs to tell [] from {}:
** its nulls are vim.NIL, empty tables encode as [], vim.empty_dict() as {}. */
static void set_null(lua_State *L, int mod, int ctx, int is_vim) {
  if (is_vim) {
    lua_getglobal(L, "vim");
    lua_getfield(L, -1, "NIL");
    lua_setfield(L, ctx, "null");
    lua_getfield(L, -1, "empty_dict");
    if (lua_isfunction(L, -1) && lua_pcall(L, 0, 1, 0) == 0 && lua_istable(L, -1))
      lua_setfield(L, ctx, "empty_object");
    lua_settop(L, ctx);
    lua_newtable(L);
    lua_setfield(L, ctx, "empty_array");
    lua_pushliteral(L, "vim.json");
  } else {
    lua_getfield(L, mod, "null");
    lua_setfield(L, ctx, "null");
    lua_pushliteral(L, "cjson");
  }
  lua_setfield(L, ctx, "backend");
}

/* The markers' per-load nonce, and for a cjson without empty_array (Debian's)
** the empty-array marker with its JSON form (see "request preparation"). */
static void set_markers(lua_State *L, int mod, int ctx, int is_vim) {
  char nonce[24];
  snprintf(nonce, sizeof nonce, "%08lx%08lx", (unsigned long)((size_t)L & 0xffffffffUL),
           (unsigned long)((unsigned long long)(or_epoch() * 1e6) & 0xffffffffUL));
  lua_pushfstring(L, "\002%s#", nonce);
  lua_setfield(L, ctx, "number_open");
  lua_pushfstring(L, "\"\\u0002%s#", nonce);
  lua_setfield(L, ctx, "number_open_json");
  if (is_vim) return;
  lua_getfield(L, mod, "empty_array");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushfstring(L, "\001%s[]\001", nonce);
    lua_pushfstring(L, "\"\\u0001%s[]\\u0001\"", nonce);
    lua_setfield(L, ctx, "empty_array_json");
  }
  lua_setfield(L, ctx, "empty_array");
}

/* Loads the JSON codec (a private cjson instance, so our settings never change
** the caller's cjson) and keeps what the bridge needs of it in the registry. */
int or_json_open(lua_State *L) {
  int mod, ctx, is_vim = push_codec(L);
  mod = lua_gettop(L);
  if (!is_vim && call_method(L, mod, "new", 0) && lua_istable(L, -1)) {
    lua_replace(L, mod);
  } else {
    lua_settop(L, mod);
  }
  lua_newtable(L);
  ctx = lua_gettop(L);
  set_precision(L, mod, ctx, is_vim);
  lua_getfield(L, mod, "encode");
  lua_setfield(L, ctx, "encode");
  lua_getfield(L, mod, "decode");
  lua_setfield(L, ctx, "decode");
  set_null(L, mod, ctx, is_vim);
  set_markers(L, mod, ctx, is_vim);
  lua_pushvalue(L, ctx);
  lua_setfield(L, LUA_REGISTRYINDEX, OR_CONTEXT);
  lua_settop(L, mod - 1);
  return 0;
}

/* Whether JSON text is an object (a decoded array is a Lua table too). */
int or_json_is_object_text(const char *s, size_t len) {
  size_t i = 0;
  while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
  return i < len && s[i] == '{';
}

int or_is_null(lua_State *L, int idx) {
  int t = lua_type(L, idx), yes;
  if (t == LUA_TNIL) return 1;
  if (t == LUA_TLIGHTUSERDATA) return lua_touserdata(L, idx) == NULL;
  if (t != LUA_TUSERDATA) return 0;
  idx = or_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, OR_CONTEXT);
  lua_getfield(L, -1, "null");
  yes = lua_rawequal(L, -1, idx);
  lua_pop(L, 2);
  return yes;
}

void or_push_null(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, OR_CONTEXT);
  lua_getfield(L, -1, "null");
  lua_remove(L, -2);
}

/* ---- request preparation ---- */

typedef struct walk {
  int short_precision; /* the cjson flavour writes at most 14 digits */
  int has_empty_object; /* empty tables need a marker to stay objects (vim.json) */
  int argn;
  int ctx;
  int array_mt;
  /* markers put in the copy: the encoded text is rewritten only when there are some */
  int empty_arrays, exact_numbers;
  /* the path to the current value, for error messages */
  int depth;
  int key_is_index[MAX_DEPTH + 1];
  const char *key_name[MAX_DEPTH + 1];
  lua_Number key_index[MAX_DEPTH + 1];
} walk;

static void raise_at(lua_State *L, walk *w, const char *what) {
  luaL_Buffer b;
  int i;
  luaL_buffinit(L, &b);
  for (i = 1; i <= w->depth; i++) {
    if (w->key_is_index[i]) {
      char num[64];
      snprintf(num, sizeof num, "[%.14g]", (double)w->key_index[i]);
      luaL_addstring(&b, num);
    } else {
      if (i > 1) luaL_addchar(&b, '.');
      luaL_addstring(&b, w->key_name[i] ? w->key_name[i] : "?");
    }
  }
  if (w->depth > 0) luaL_addstring(&b, ": ");
  luaL_addstring(&b, what);
  luaL_pushresult(&b);
  luaL_argerror(L, w->argn, lua_tostring(L, -1));
}

static int is_array_key(lua_State *L, int key) {
  const char *k;
  int i;
  if (lua_type(L, key) != LUA_TSTRING) return 0;
  k = lua_tostring(L, key);
  for (i = 0; array_keys[i]; i++)
    if (strcmp(k, array_keys[i]) == 0) return 1;
  return 0;
}

static int has_array_mt(lua_State *L, int idx, walk *w) {
  int yes;
  if (!lua_getmetatable(L, idx)) return 0;
  yes = lua_rawequal(L, -1, w->array_mt);
  lua_pop(L, 1);
  return yes;
}

static int is_empty(lua_State *L, int idx) {
  lua_pushnil(L);
  if (lua_next(L, idx)) {
    lua_pop(L, 2);
    return 0;
  }
  return 1;
}

/* Shallow copy of the table at idx, pushed. */
static void shallow_copy(lua_State *L, int idx) {
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
}

/* Debian's lua-cjson writes numbers with at most 14 significant digits, which
** loses doubles such as 7.4999999999999993e-06. When 14 digits do not give the
** number back, push a marker string holding the shortest exact form; it is
** unwrapped after encoding. Returns whether it pushed. */
static const char number_close[] = "#\002";
static const char number_close_json[] = "#\\u0002\"";

static int push_exact_number(lua_State *L, int ctx, lua_Number n) {
  char buf[40];
  int digits;
  snprintf(buf, sizeof buf, "%.14g", (double)n);
  if (strtod(buf, NULL) == (double)n) return 0;
  for (digits = 15; digits <= 17; digits++) {
    snprintf(buf, sizeof buf, "%.*g", digits, (double)n);
    if (strtod(buf, NULL) == (double)n) break;
  }
  lua_getfield(L, ctx, "number_open");
  lua_pushstring(L, buf);
  lua_pushstring(L, number_close);
  lua_concat(L, 3);
  return 1;
}

/* Replaces every "\u0002#<number>#\u0002" of the JSON text on top by the bare number. */
static void unwrap_numbers(lua_State *L, int ctx) {
  const char *json, *p, *hit, *open;
  size_t open_len;
  luaL_Buffer b;
  lua_getfield(L, ctx, "number_open_json");
  open = lua_tolstring(L, -1, &open_len);
  lua_insert(L, -2);  /* keep the marker alive below the JSON text */
  json = p = lua_tostring(L, -1);
  if (strstr(json, open) == NULL) {
    lua_remove(L, -2);
    return;
  }
  luaL_buffinit(L, &b);
  while ((hit = strstr(p, open)) != NULL) {
    const char *num = hit + open_len;
    const char *end = strstr(num, number_close_json);
    if (end == NULL) break;
    luaL_addlstring(&b, p, (size_t)(hit - p));
    luaL_addlstring(&b, num, (size_t)(end - num));
    p = end + sizeof number_close_json - 1;
  }
  luaL_addstring(&b, p);
  luaL_pushresult(&b);
  lua_remove(L, -2);
  lua_remove(L, -2);
}

/* What the keys of one table were, for cjson's rule on lists with holes. */
typedef struct shape {
  lua_Number count, max_index;
  int only_indices;
} shape;

/* Records the key at `key` as the current step of the path (for error messages)
** and in the table's shape; raises on a key JSON cannot hold. */
static void note_key(lua_State *L, walk *w, int key, shape *s) {
  s->count++;
  if (lua_type(L, key) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, key);
    w->key_is_index[w->depth] = 1;
    w->key_index[w->depth] = n;
    if (n >= 1 && n == (lua_Number)(long long)n) {
      if (n > s->max_index) s->max_index = n;
    } else {
      s->only_indices = 0;
    }
  } else if (lua_type(L, key) == LUA_TSTRING) {
    w->key_is_index[w->depth] = 0;
    w->key_name[w->depth] = lua_tostring(L, key);
    s->only_indices = 0;
  } else {
    char what[96];
    w->depth--;  /* the path ends at the table that holds the key */
    snprintf(what, sizeof what, "a table key of type %s cannot be encoded as JSON",
             luaL_typename(L, key));
    raise_at(L, w, what);
  }
}

static void prepare(lua_State *L, int idx, walk *w);

/* A table value: an empty array or empty object marker, or the table prepared.
** Pushes the replacement and returns 1, or returns 0 when it goes as it is. */
static int prepare_table(lua_State *L, walk *w, int key, int val) {
  if (is_empty(L, val) && (is_array_key(L, key) || has_array_mt(L, val, w))) {
    lua_getfield(L, w->ctx, "empty_array");
    w->empty_arrays++;
    return 1;
  }
  if (w->has_empty_object && is_empty(L, val)) {
    lua_getfield(L, w->ctx, "empty_object");  /* vim.json needs it for {} */
    return 1;
  }
  prepare(L, val, w);
  if (!lua_rawequal(L, -1, val)) return 1;
  lua_pop(L, 1);
  return 0;
}

/* A number value: NaN and infinities refused; a double a 14-digit cjson would not
** give back replaced by its exact marker (pushed, returns 1). */
static int prepare_number(lua_State *L, walk *w, int val) {
  lua_Number n = lua_tonumber(L, val);
  if (!or_isinteger(L, val) && (n != n || n - n != 0))
    raise_at(L, w, "cannot encode NaN or infinity as JSON");
  if (w->short_precision && !or_isinteger(L, val) && push_exact_number(L, w->ctx, n)) {
    w->exact_numbers++;
    return 1;
  }
  return 0;
}

/* Pushes what replaces the value at val in the table sent to cjson and returns 1,
** or returns 0 when the value goes as it is; raises on a value JSON cannot hold. */
static int prepare_value(lua_State *L, walk *w, int key, int val) {
  char what[96];
  switch (lua_type(L, val)) {
    case LUA_TTABLE:
      return prepare_table(L, w, key, val);
    case LUA_TNUMBER:
      return prepare_number(L, w, val);
    case LUA_TSTRING:
    case LUA_TBOOLEAN:
      return 0;
    case LUA_TUSERDATA:
      if (or_is_null(L, val)) return 0;  /* vim.NIL */
      break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, val) == NULL) return 0;  /* cjson.null */
      lua_getfield(L, w->ctx, "empty_array");
      if (lua_rawequal(L, -1, val)) {
        lua_pop(L, 1);
        return 0;
      }
      break;
    default:
      break;
  }
  snprintf(what, sizeof what, "cannot encode a %s as JSON", luaL_typename(L, val));
  raise_at(L, w, what);
  return 0;
}

/* Sets the replacement on top under the key at *key in the copy of the table at
** idx; the copy is made on the first replacement, so a table that needs none is
** sent as it is. The copy goes below the traversal's key, which moves up one
** slot. Returns the copy's index. */
static int set_in_copy(lua_State *L, int idx, int copy, int *key) {
  if (!copy) {
    shallow_copy(L, idx);
    lua_insert(L, *key);  /* below key, value, replacement */
    copy = (*key)++;
  }
  lua_pushvalue(L, *key);
  lua_insert(L, -2);
  lua_rawset(L, copy);
  return copy;
}

/* Pushes the table at idx, or a copy of it with empty arrays marked. */
static void prepare(lua_State *L, int idx, walk *w) {
  int copy = 0;
  shape s = {0, 0, 1};
  if (w->depth >= MAX_DEPTH) raise_at(L, w, "tables nested too deep (a cycle?)");
  luaL_checkstack(L, 8, "request too deep");
  w->depth++;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int key = lua_gettop(L) - 1, val = lua_gettop(L);
    note_key(L, w, key, &s);
    if (prepare_value(L, w, key, val)) copy = set_in_copy(L, idx, copy, &key);
    lua_settop(L, key);
  }
  w->depth--;
  /* cjson's own rule for a list with holes, reported here with its path */
  if (s.only_indices && s.max_index > 10 && s.max_index > s.count * 2)
    raise_at(L, w, "a list with holes (a sparse array) cannot be encoded as JSON");
  if (!copy) lua_pushvalue(L, idx);
}

/* Pushes the JSON text of the value at idx (tables prepared as above). */
void or_json_push_request(lua_State *L, int idx, int extra_stream, int argn) {
  walk w;
  int top, prepared;
  idx = or_absindex(L, idx);
  top = lua_gettop(L);
  w.argn = argn;
  w.depth = 0;
  w.empty_arrays = w.exact_numbers = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, OR_CONTEXT);
  w.ctx = lua_gettop(L);
  lua_getfield(L, w.ctx, "short_precision");
  w.short_precision = lua_toboolean(L, -1);
  lua_getfield(L, w.ctx, "empty_object");
  w.has_empty_object = !lua_isnil(L, -1);
  lua_pop(L, 2);
  luaL_getmetatable(L, OR_ARRAY_MT);
  w.array_mt = lua_gettop(L);
  if (lua_istable(L, idx) && is_empty(L, idx) && has_array_mt(L, idx, &w)) {
    lua_getfield(L, w.ctx, "empty_array");
    w.empty_arrays++;
  } else if (lua_istable(L, idx)) {
    prepare(L, idx, &w);
  } else {
    lua_pushvalue(L, idx);
  }
  prepared = lua_gettop(L);
  if (extra_stream) {
    if (lua_rawequal(L, prepared, idx)) {
      shallow_copy(L, idx);
      lua_replace(L, prepared);
    }
    lua_pushboolean(L, 1);
    lua_setfield(L, prepared, "stream");
  }
  lua_getfield(L, w.ctx, "encode");
  lua_pushvalue(L, prepared);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    const char *msg = lua_tostring(L, -1);
    luaL_argerror(L, argn, msg ? msg : "cannot encode as JSON");
  }
  /* a long conversation is encoded on every turn: the text is scanned and copied
  ** again only when the walk put markers in it */
  lua_getfield(L, w.ctx, "empty_array_json");
  if (w.empty_arrays > 0 && lua_isstring(L, -1)) {
    luaL_gsub(L, lua_tostring(L, -2), lua_tostring(L, -1), "[]");
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
  }
  if (w.exact_numbers > 0) unwrap_numbers(L, w.ctx);
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

/* core.json_encode(value) -> string; raises naming the field that cannot be encoded.
** Empty tables under array keys (or marked with openrouter.array) become []. */
int or_json_encode_lua(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  or_json_push_request(L, 1, 0, 1);
  return 1;
}

/* core.json_decode(string) -> value, or nil, message. */
int or_json_decode_lua(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (or_json_decode(L, s, len)) return 1;
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

int or_json_decode(lua_State *L, const char *s, size_t len) {
  lua_getfield(L, LUA_REGISTRYINDEX, OR_CONTEXT);
  lua_getfield(L, -1, "decode");
  lua_remove(L, -2);
  lua_pushlstring(L, s, len);
  return lua_pcall(L, 1, 1, 0) == 0;
}
