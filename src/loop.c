/*
** A host's event loop driving a client (engine): libcurl's socket interface
** turned into two Lua hooks, `socket(fd, events)` and `timer(ms)`, so that
** the host's loop (libuv in Neovim and luv, a game engine's) watches the
** sockets and nothing wakes while nothing arrives. doc/design.md, "Driving
** from a host's loop".
**
** libcurl tells which sockets to watch through CURLMOPT_SOCKETFUNCTION, from
** inside its own calls: there the change is only recorded (no Lua runs inside
** libcurl); the driver hands the changes to the hooks once curl returned.
** The sockets watched now are kept too, so that hooks set later (or set
** again) learn them all.
*/
#include "engine.h"

#include <stdlib.h>
#include <string.h>

/* Appends or replaces fd in list; what == CURL_POLL_REMOVE takes it out of a
** set (`set`), or is appended as a change. Returns 0 when memory ran out. */
static int put(or_watch **list, int *count, int *cap, curl_socket_t fd, int what, int set) {
  int i;
  for (i = 0; i < *count; i++)
    if ((*list)[i].fd == fd) {
      if (set && what == CURL_POLL_REMOVE) (*list)[i] = (*list)[--*count];
      else (*list)[i].what = what;
      return 1;
    }
  if (set && what == CURL_POLL_REMOVE) return 1;
  if (*count == *cap) {
    int n = *cap ? *cap * 2 : 8;
    or_watch *grown = (or_watch *)realloc(*list, (size_t)n * sizeof **list);
    if (grown == NULL) return 0;
    *list = grown;
    *cap = n;
  }
  (*list)[*count].fd = fd;
  (*list)[*count].what = what;
  ++*count;
  return 1;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *socketp) {
  or_client *c = (or_client *)ud;
  (void)easy;
  (void)socketp;
  if (!put(&c->loop.watched, &c->loop.watched_count, &c->loop.watched_cap, fd, what, 1))
    c->loop.lost = 1;
  if (c->loop.ref_hooks != LUA_NOREF &&
      !put(&c->loop.changes, &c->loop.change_count, &c->loop.change_cap, fd, what, 0))
    c->loop.lost = 1;  /* the next tell replays every watched socket */
  return 0;
}

void or_loop_init(or_client *c) {
  c->loop.ref_hooks = LUA_NOREF;
  c->loop.told_timer = -2;
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
}

/* After curl_multi_cleanup (which reports the sockets it closes). */
void or_loop_free(lua_State *L, or_client *c) {
  or_unref(L, &c->loop.ref_hooks);
  free(c->loop.watched);
  free(c->loop.changes);
  memset(&c->loop, 0, sizeof c->loop);
  c->loop.ref_hooks = LUA_NOREF;
}

static const char *events_of(int what) {
  switch (what) {
    case CURL_POLL_IN: return "r";
    case CURL_POLL_OUT: return "w";
    case CURL_POLL_INOUT: return "rw";
    default: return NULL;  /* remove */
  }
}

/* Calls hooks[name](a, b) under pcall; keeps the first error at `first`. */
static void call_hook(lua_State *L, int hooks, const char *name, int nargs, int first) {
  lua_getfield(L, hooks, name);
  lua_insert(L, -1 - nargs);
  if (lua_pcall(L, nargs, 0, 0) != 0) {
    if (lua_isnil(L, first)) lua_replace(L, first);
    else lua_pop(L, 1);
  }
}

static void tell_socket(lua_State *L, int hooks, const or_watch *w, int first) {
  const char *events = events_of(w->what);
  lua_pushinteger(L, (lua_Integer)w->fd);
  if (events) lua_pushstring(L, events);
  else lua_pushnil(L);
  call_hook(L, hooks, "socket", 2, first);
}

/* The changes (or, after a lost one, every watched socket), then the timer
** when it changed. Changes are taken off the list before Lua runs: a hook
** may drive the client again. */
static int tell_protected(lua_State *L) {
  or_client *c = (or_client *)lua_touserdata(L, 1);
  long timer = (long)lua_tointeger(L, 2);
  int hooks, first, i;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->loop.ref_hooks);
  hooks = 1;
  lua_pushnil(L);
  first = 2;
  while (c->loop.change_count > 0 || c->loop.lost) {
    or_watch w;
    if (c->loop.lost) {  /* replay the watched set: each entry is current */
      c->loop.lost = 0;
      c->loop.change_count = 0;
      for (i = 0; i < c->loop.watched_count; i++) tell_socket(L, hooks, &c->loop.watched[i], first);
      continue;
    }
    w = c->loop.changes[0];
    memmove(c->loop.changes, c->loop.changes + 1, (size_t)--c->loop.change_count * sizeof w);
    tell_socket(L, hooks, &w, first);
  }
  if (timer != c->loop.told_timer) {
    c->loop.told_timer = timer;
    lua_pushinteger(L, (lua_Integer)timer);
    call_hook(L, hooks, "timer", 1, first);
  }
  if (!lua_isnil(L, first)) lua_error(L);
  return 0;
}

void or_loop_tell(lua_State *L, or_client *c, long timer_ms) {
  if (c->loop.ref_hooks == LUA_NOREF || c->loop.telling) return;
  c->loop.telling = 1;  /* a hook that drives the client does not tell again inside */
  lua_pushcfunction(L, tell_protected);
  lua_pushlightuserdata(L, c);
  lua_pushinteger(L, (lua_Integer)timer_ms);
  if (lua_pcall(L, 2, 0, 0) != 0) {
    c->loop.telling = 0;
    lua_error(L);
  }
  c->loop.telling = 0;
}

void or_loop_set_hooks(lua_State *L, or_client *c, int idx) {
  or_unref(L, &c->loop.ref_hooks);
  c->loop.change_count = 0;
  c->loop.told_timer = -2;
  if (lua_isnoneornil(L, idx)) return;
  lua_pushvalue(L, idx);
  c->loop.ref_hooks = luaL_ref(L, LUA_REGISTRYINDEX);
  c->loop.lost = 1;  /* new hooks learn every socket watched now */
}
