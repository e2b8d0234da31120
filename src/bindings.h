/*
** The bindings (doc/design.md, "Layers"): the Lua client object (client.c),
** the Lua request object and the path every call takes (request.c), the
** table of actions and client:request (actions.c), and the module's
** registration (core.c). They call the engine and the bridge.
*/
#ifndef OPENROUTER_BINDINGS_H
#define OPENROUTER_BINDINGS_H

#include "engine.h"

/* ---- client.c ---- */

or_client *or_check_client(lua_State *L, int idx);  /* raises for a closed client */
int or_client_new(lua_State *L);                     /* core.new(cfg) -> client */
/* Raises when the client is running callbacks of its own (a blocking call there would nest). */
void or_check_not_busy(lua_State *L, or_client *c);
/* Registers the client metatable; pushes its method table. */
int or_client_open(lua_State *L);

/* ---- request.c ---- */

int or_request_object_open(lua_State *L);  /* pushes the request method table */
/* Runs `call` for the client at stack index 1: a blocking call (opts_idx 0;
** callback_idx: its on_chunk, or 0) pushes res, err, info; an async one pushes
** the request object. not_found_wait: seconds a 404 is retried (0: none). */
int or_run(lua_State *L, or_client *c, or_call *call, int callback_idx, int opts_idx,
           double not_found_wait);

/* ---- actions.c ---- */

/* Adds the actions and request/request_async to the method table at idx. */
void or_actions_register(lua_State *L, int methods);

#endif
