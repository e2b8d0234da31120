/*
** One source for Lua 5.1-5.4 and LuaJIT.
** Every shim carries the or_ prefix: LuaJIT already declares some 5.2
** functions (luaL_setfuncs, luaL_testudata ...), so defining lua* or luaL*
** names ourselves would clash with its headers.
*/
#ifndef OPENROUTER_COMPAT_H
#define OPENROUTER_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 502
#define or_rawlen(L, i) lua_rawlen(L, (i))
#define or_setfuncs(L, l, nup) luaL_setfuncs(L, (l), (nup))
#else
#define or_rawlen(L, i) lua_objlen(L, (i))
void or_setfuncs(lua_State *L, const luaL_Reg *l, int nup);
#endif

#define or_absindex(L, i) \
  (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)

/* lua_isinteger exists from 5.3; before it every number is a double. */
#if LUA_VERSION_NUM >= 503
#define or_isinteger(L, i) lua_isinteger(L, (i))
#else
#define or_isinteger(L, i) 0
#endif

/* Pushes a new table with the functions of l. */
#define or_newlib(L, l) (lua_newtable(L), or_setfuncs(L, (l), 0))

#endif
