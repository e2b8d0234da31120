/*
** Shims for Lua 5.1 and LuaJIT (see compat.h).
*/
#include "compat.h"

#if LUA_VERSION_NUM < 502
/* Same contract as 5.2's luaL_setfuncs: each function gets the nup values
** on top of the stack as upvalues; they are popped at the end. */
void or_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#else
/* ISO C forbids an empty translation unit. */
typedef int or_compat_unused;
#endif
