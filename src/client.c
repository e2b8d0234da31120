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
  or_loop_init(c);
  return 1;
}

static int tell_closed_protected(lua_State *L) {
  or_client *c = (or_client *)lua_touserdata(L, 1);
  or_loop_tell(L, c, -1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->loop.ref_hooks);
  lua_getfield(L, -1, "closed");
  if (lua_isfunction(L, -1)) lua_call(L, 0, 0);
  return 0;
}

/* A host loop's hooks learn that the sockets are gone and the timer is
** not needed, then hooks.closed() (when given) lets the driver release its
** handles. A hook's error is not raised: close() always closes. */
static void tell_closed(lua_State *L, or_client *c) {
  if (c->loop.ref_hooks == LUA_NOREF) return;
  lua_pushcfunction(L, tell_closed_protected);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) != 0) lua_pop(L, 1);
}

/* client:close(): unfinished requests are cancelled (their on_done runs),
** then the connections are released. Idempotent. */
static int client_close(lua_State *L) {
  or_client *c = (or_client *)luaL_checkudata(L, 1, OR_CLIENT_MT);
  if (c->closed) return 0;
  if (c->in_perform || c->in_round)
    return luaL_error(L, "cannot close an openrouter client from inside its own streaming callbacks");
  or_driver_cancel_all(L, c, 1);
  or_client_free(L, c);
  tell_closed(L, c);
  or_loop_free(L, c);
  or_driver_notify(L, c);  /* each on_done runs, the client already closed */
  return 0;
}

static int client_gc(lua_State *L) {
  or_client *c = (or_client *)luaL_checkudata(L, 1, OR_CLIENT_MT);
  if (!c->closed) {
    /* only at lua_close can a client with requests be collected: detach them */
    or_driver_cancel_all(L, c, 0);
    or_client_free(L, c);
    or_loop_free(L, c);
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

/* client:poll([timeout [, budget]]) -> number of requests not done yet. Never
** blocks with timeout 0; else waits at most timeout seconds for activity.
** budget: seconds of chunk delivery after which the rest waits for the next
** call (a game keeps its frame). */
static int client_poll(lua_State *L) {
  or_client *c = or_check_client(L, 1);
  double timeout = luaL_optnumber(L, 2, 0), budget = luaL_optnumber(L, 3, 0);
  if (!(timeout >= 0)) luaL_argerror(L, 2, "timeout must be >= 0");
  if (!(budget >= 0) || budget > 86400) luaL_argerror(L, 3, "budget must be a number of seconds >= 0");
  or_check_not_busy(L, c);
  or_driver_round(L, c, budget);
  if (timeout > 0 && c->active > 0) {
    double ms = timeout * 1000.0;
    or_driver_wait(c, or_driver_wait_ms(c, ms > 86400000.0 ? 86400000L : (long)ms));
    or_driver_round(L, c, budget);
  }
  lua_pushinteger(L, c->active);
  return 1;
}

/* client:set_loop_hooks{ socket = fn(fd, events), timer = fn(ms) } or (nil):
** a host's loop drives the client. socket(fd, "r" | "w" | "rw" | nil): watch fd
** for these events (nil: stop watching it); timer(ms): call socket_action()
** in ms milliseconds (-1: no timer). Both are called from the client's own
** calls, never from inside libcurl. With requests in flight, setting hooks
** runs one round (callbacks may run) so that the hooks learn their sockets. */
static int client_set_loop_hooks(lua_State *L) {
  or_client *c = or_check_client(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "socket");
    lua_getfield(L, 2, "timer");
    if (lua_type(L, -1) != LUA_TFUNCTION || lua_type(L, -2) != LUA_TFUNCTION)
      luaL_argerror(L, 2, "'socket' and 'timer' must be functions");
    lua_pop(L, 2);
  }
  or_check_not_busy(L, c);
  or_loop_set_hooks(L, c, 2);
  /* transfers already running learn their sockets: one round reports them all */
  if (c->active > 0) or_driver_round(L, c, 0);
  else or_driver_kick(L, c);
  return 0;
}

/* client:socket_action([fd, events]) -> number of requests not done yet. The
** host's loop calls it when fd is ready ("r", "w", "rw"; "e" for an error) or,
** without arguments, when the timer fired. */
static int client_socket_action(lua_State *L) {
  or_client *c = or_check_client(L, 1);
  curl_socket_t fd = CURL_SOCKET_TIMEOUT;
  int events = 0;
  if (!lua_isnoneornil(L, 2)) {
    const char *ev = luaL_optstring(L, 3, "");
    lua_Number n = luaL_checknumber(L, 2);
    if (!(n >= 0 && n <= 2147483647.0) || n != (lua_Number)(long)n)
      luaL_argerror(L, 2, "a file descriptor expected");
    fd = (curl_socket_t)(long)n;
    if (ev[strspn(ev, "rwe")] != '\0') luaL_argerror(L, 3, "events must be made of 'r', 'w' and 'e'");
    if (strchr(ev, 'r')) events |= CURL_CSELECT_IN;
    if (strchr(ev, 'w')) events |= CURL_CSELECT_OUT;
    if (strchr(ev, 'e')) events |= CURL_CSELECT_ERR;
  }
  or_check_not_busy(L, c);
  /* the host's timer was one-shot and has fired: whatever the next one is, it is
  ** told, even when it equals the last (curl asks for 1 ms again when it fired early) */
  if (fd == CURL_SOCKET_TIMEOUT) c->loop.told_timer = -2;
  or_driver_socket_round(L, c, fd, events);
  lua_pushinteger(L, c->active);
  return 1;
}

static const luaL_Reg client_methods[] = {
  {"close", client_close},
  {"is_closed", client_is_closed},
  {"poll", client_poll},
  {"set_loop_hooks", client_set_loop_hooks},
  {"socket_action", client_socket_action},
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
