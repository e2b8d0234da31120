/*
** luaopen_openrouter_core (bindings): registers the client type and its
** actions, the request type, the error and array metatables, and the JSON
** bridge. Safe to run more than once per process
** (busted re-opens C modules for each spec file).
*/
#include "bindings.h"
#include "base64.h"
#include "platform.h"
#include "sha256.h"

#include <string.h>

/* core._sse_events(pieces): feeds the strings of `pieces` one by one to a
** fresh parser and returns the events as { {type=, data=}, ... }, plus the
** number of comment lines. For tests that split a stream at every offset. */
typedef struct collect {
  lua_State *L;
  int list;
} collect;

static int collect_event(void *ud, const char *type, size_t tlen, const char *data, size_t dlen) {
  collect *c = (collect *)ud;
  lua_State *L = c->L;
  lua_newtable(L);
  lua_pushlstring(L, type, tlen);
  lua_setfield(L, -2, "type");
  lua_pushlstring(L, data, dlen);
  lua_setfield(L, -2, "data");
  lua_rawseti(L, c->list, (int)or_rawlen(L, c->list) + 1);
  return 0;
}

static int sse_parse_protected(lua_State *L) {
  or_sse *p = (or_sse *)lua_touserdata(L, 2);
  collect c;
  int i, n, rc = OR_SSE_OK;
  c.L = L;
  lua_newtable(L);
  c.list = lua_gettop(L);
  n = (int)or_rawlen(L, 1);
  for (i = 1; i <= n && rc == OR_SSE_OK; i++) {
    size_t len;
    const char *bytes;
    lua_rawgeti(L, 1, i);
    bytes = lua_tolstring(L, -1, &len);
    if (bytes) rc = or_sse_feed(p, bytes, len, collect_event, &c);
    lua_pop(L, 1);
  }
  if (rc == OR_SSE_OK) rc = or_sse_finish(p, collect_event, &c);
  lua_pushinteger(L, (lua_Integer)p->comments);
  lua_pushinteger(L, rc);
  return 3;
}

static int core_sse_events(lua_State *L) {
  or_sse p;
  int status;
  luaL_checktype(L, 1, LUA_TTABLE);
  or_sse_init(&p, (size_t)luaL_optnumber(L, 2, 1 << 26));
  lua_settop(L, 1);
  lua_pushcfunction(L, sse_parse_protected);
  lua_pushvalue(L, 1);
  lua_pushlightuserdata(L, &p);
  status = lua_pcall(L, 2, 3, 0);
  or_sse_free(&p);
  if (status != 0) return lua_error(L);
  return 3;
}

/* core.is_client(v): whether v is a client (for the Lua layer's argument checks). */
static int core_is_client(lua_State *L) {
  int yes = 0;
  if (lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, OR_CLIENT_MT);
    yes = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, yes);
  return 1;
}

/* core.base64(s [, "url"]): s in base64, standard and padded, or with "url"
** the URL-safe alphabet without padding (RFC 4648 sections 4 and 5). */
static int core_base64(lua_State *L) {
  static const char *const variants[] = {"std", "url", NULL};
  size_t n, len;
  const char *s = luaL_checklstring(L, 1, &n);
  int variant = luaL_checkoption(L, 2, "std", variants) == 1 ? OR_BASE64_URL : OR_BASE64_STD;
  char *out;
  len = or_base64_encoded_len(n, variant);
  if (len == 0 && n > 0) return luaL_argerror(L, 1, "string too long to encode");
  out = (char *)lua_newuserdata(L, len ? len : 1);  /* freed by the collector, even on error */
  lua_pushlstring(L, out, or_base64_encode((const unsigned char *)s, n, out, variant));
  return 1;
}

/* core.sha256(s): the 32 bytes of s's SHA-256 digest. */
static int core_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char digest[OR_SHA256_LEN];
  or_sha256(s, n, digest);
  lua_pushlstring(L, (const char *)digest, sizeof digest);
  return 1;
}

/* core.random_bytes(n): n bytes (1..4096) from the system's cryptographic
** random source, or nil, message when it failed. */
static int core_random_bytes(lua_State *L) {
  unsigned char bytes[4096];
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= (lua_Integer)sizeof bytes, 1, "must be from 1 to 4096");
  if (or_random_bytes(bytes, (size_t)n) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "the system's random source failed");
    return 2;
  }
  lua_pushlstring(L, (const char *)bytes, (size_t)n);
  memset(bytes, 0, sizeof bytes);
  return 1;
}

static const luaL_Reg core_functions[] = {
  {"is_client", core_is_client},
  {"new", or_client_new},
  {"_sse_events", core_sse_events},
  {"json_encode", or_json_encode_lua},
  {"json_decode", or_json_decode_lua},
  {"base64", core_base64},
  {"sha256", core_sha256},
  {"random_bytes", core_random_bytes},
  {NULL, NULL}
};

int luaopen_openrouter_core(lua_State *L);

int luaopen_openrouter_core(lua_State *L) {
  /* curl_global_init is not thread-safe and must run once per process;
  ** never cleaned up: other code in the host may use libcurl too. */
  static int curl_ready = 0;
  if (!curl_ready) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      return luaL_error(L, "openrouter: curl_global_init failed");
    curl_ready = 1;
  }
  or_json_open(L);
  or_errors_open(L);
  or_request_object_open(L);  /* pushes the request methods */
  or_newlib(L, core_functions);
  lua_insert(L, -2);
  lua_setfield(L, -2, "Request");
  or_client_open(L);
  or_actions_register(L, -1);
  lua_setfield(L, -2, "Client");
  luaL_newmetatable(L, OR_ARRAY_MT);
  lua_setfield(L, -2, "array_mt");
  luaL_getmetatable(L, OR_ERROR_MT);
  lua_setfield(L, -2, "error_mt");
  or_push_null(L);  /* cjson.null; vim.NIL inside Neovim */
  lua_setfield(L, -2, "null");
  lua_getfield(L, LUA_REGISTRYINDEX, OR_CONTEXT);
  lua_getfield(L, -1, "backend");
  lua_setfield(L, -3, "json_backend");
  lua_pop(L, 1);
  lua_pushliteral(L, OR_VERSION);
  lua_setfield(L, -2, "VERSION");
  /* curl_version_info, not curl_version(): the latter initialises LDAP/SASL
  ** globals that are never freed */
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  lua_setfield(L, -2, "curl_version");
  /* the TLS backend ("OpenSSL/3.0.11"); nil for a libcurl built without TLS */
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->ssl_version);
  lua_setfield(L, -2, "ssl_version");
  return 1;
}
