/*
** The client object (bindings): core.new, close (one idempotent closer shared
** by __gc, __close on 5.4 and :close()), tostring, poll. The configuration
** and resources it holds are config.c's; the actions are added to its method
** table by actions.c.
*/
#include "bindings.h"

#include <string.h>

or_client *or_check_client(lua_State *L, int idx) {
  or_client *c = (or_client *)luaL_checkudata(L, idx, OR_CLIENT_MT);
  if (c->closed) luaL_error(L, "attempt to use a closed openrouter client");
  return c;
}

void or_check_not_busy(lua_State *L, or_client *c) {
  if (c && (c->in_perform || c->in_round))
    luaL_error(L, "openrouter client is busy: it cannot be driven from inside its own streaming callbacks");
}

/* core.new(cfg) -> client. cfg holds the options in their final form (the Lua
** layer checked them). */
int or_client_new(lua_State *L) {
  or_client *c;
  luaL_checktype(L, 1, LUA_TTABLE);
  c = (or_client *)lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  or_buffer_init(&c->api_key);
  or_buffer_init(&c->spare_body);
  c->closed = 1;  /* until fully built: __gc then frees what exists */
  c->ref_decode = LUA_NOREF;
  luaL_getmetatable(L, OR_CLIENT_MT);
  lua_setmetatable(L, -2);
  or_client_configure(L, c, 1);
  return 1;
}

/* client:close(): unfinished requests are cancelled (their on_done runs),
** then the connections are released. Idempotent. */
static int client_close(lua_State *L) {
  or_client *c = (or_client *)luaL_checkudata(L, 1, OR_CLIENT_MT);
  int notify;
  if (c->closed) return 0;
  if (c->in_perform || c->in_round)
    return luaL_error(L, "cannot close an openrouter client from inside its own streaming callbacks");
  lua_pushnil(L);
  notify = lua_gettop(L);
  or_driver_cancel_all(L, c, notify);
  or_client_free(L, c);
  or_driver_notify(L, notify);
  return 0;
}

static int client_gc(lua_State *L) {
  or_client *c = (or_client *)luaL_checkudata(L, 1, OR_CLIENT_MT);
  if (!c->closed) {
    /* only at lua_close can a client with requests be collected: detach them */
    or_driver_cancel_all(L, c, 0);
    or_client_free(L, c);
  }
  return 0;
}

/* Pushes url with the password of its user:password@ hidden ("user:***@"), or
** all of the user info when it has no colon (it may be a token). */
static void push_url_without_credentials(lua_State *L, const char *url) {
  const char *host = strstr(url, "://"), *end, *at = NULL, *p, *colon;
  if (!host) {
    lua_pushstring(L, url);
    return;
  }
  host += 3;
  end = host + strcspn(host, "/");
  for (p = host; p < end; p++)
    if (*p == '@') at = p;
  if (!at) {
    lua_pushstring(L, url);
    return;
  }
  colon = memchr(host, ':', (size_t)(at - host));
  lua_pushlstring(L, url, (size_t)((colon ? colon : host) - url));
  lua_pushstring(L, colon ? ":***" : "***");
  lua_pushstring(L, at);
  lua_concat(L, 3);
}

static int client_tostring(lua_State *L) {
  or_client *c = (or_client *)luaL_checkudata(L, 1, OR_CLIENT_MT);
  if (c->closed) {
    lua_pushliteral(L, "openrouter client (closed)");
  } else {
    lua_pushliteral(L, "openrouter client (");
    push_url_without_credentials(L, c->base_url);
    lua_pushliteral(L, ")");
    lua_concat(L, 3);
  }
  return 1;
}

static int client_is_closed(lua_State *L) {
  or_client *c = (or_client *)luaL_checkudata(L, 1, OR_CLIENT_MT);
  lua_pushboolean(L, c->closed);
  return 1;
}

/* client:poll([timeout]) -> number of requests not done yet. Never blocks with
** 0; else waits at most timeout seconds for activity. */
static int client_poll(lua_State *L) {
  or_client *c = or_check_client(L, 1);
  double timeout = luaL_optnumber(L, 2, 0);
  if (!(timeout >= 0)) luaL_argerror(L, 2, "timeout must be >= 0");
  or_check_not_busy(L, c);
  or_driver_round(L, c);
  if (timeout > 0 && c->active > 0) {
    double ms = timeout * 1000.0;
    or_driver_wait(c, or_driver_wait_ms(c, ms > 86400000.0 ? 86400000L : (long)ms));
    or_driver_round(L, c);
  }
  lua_pushinteger(L, c->active);
  return 1;
}

static const luaL_Reg client_methods[] = {
  {"close", client_close},
  {"is_closed", client_is_closed},
  {"poll", client_poll},
  {NULL, NULL}
};

static const luaL_Reg client_meta[] = {
  {"__gc", client_gc},
#if LUA_VERSION_NUM >= 504
  {"__close", client_close},
#endif
  {"__tostring", client_tostring},
  {NULL, NULL}
};

int or_client_open(lua_State *L) {
  luaL_newmetatable(L, OR_CLIENT_MT);
  or_setfuncs(L, client_meta, 0);
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
