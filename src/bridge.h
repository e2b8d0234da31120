/*
** The Lua bridge (doc/design.md, "Layers"): JSON through lua-cjson, error
** objects, and the assembly of streamed chunks into one response. These
** files use Lua and the base layer, never the engine or the bindings.
*/
#ifndef OPENROUTER_BRIDGE_H
#define OPENROUTER_BRIDGE_H

#include <stddef.h>

#include "compat.h"

/* Registry keys (per lua_State, not C globals). */
#define OR_ERROR_MT "openrouter.error"
#define OR_ARRAY_MT "openrouter.array"
#define OR_CONTEXT "openrouter.core.context" /* table: encode, decode, empty_array */

/* ---- json.c: the bridge to lua-cjson ---- */

int or_json_open(lua_State *L);  /* loads cjson, pushes nothing; raises if missing */
/* Pushes the JSON text of the value at idx; `extra_stream` adds "stream": true.
** Raises `bad argument #argn` naming the offending field. */
void or_json_push_request(lua_State *L, int idx, int extra_stream, int argn);
int or_json_encode_lua(lua_State *L);
int or_is_null(lua_State *L, int idx);  /* nil or the JSON null of the codec */
int or_json_is_object_text(const char *s, size_t len);
void or_push_null(lua_State *L);
int or_json_decode_lua(lua_State *L);
/* Decodes; on success pushes the value and returns 1, else pushes a message and returns 0. */
int or_json_decode(lua_State *L, const char *s, size_t len);

/* ---- errors.c: error objects ---- */

int or_errors_open(lua_State *L);
/* Pushes a new error table with kind and message. */
void or_error_new(lua_State *L, const char *kind, const char *message);
void or_error_set_string(lua_State *L, int err, const char *field, const char *value);
void or_error_set_number(lua_State *L, int err, const char *field, double value);
/* Fills an error from a decoded OpenRouter error object at body (the table with
** `error`), sets kind "api". */
void or_error_fill_api(lua_State *L, int err, int body);
/* Replaces the key in every string field we produced. */
void or_error_scrub(lua_State *L, int err, const char *key, size_t keylen);

/* ---- stream.c: chunks -> one response ---- */

void or_stream_new_acc(lua_State *L);               /* pushes a fresh assembler */
/* Absorbs one decoded chunk (`first`: the stream's first; `legacy`: a completion, whose
** choices carry `text`); returns whether it carries an error object. May raise (memory). */
int or_stream_absorb(lua_State *L, int acc, int chunk, int first, int legacy);
/* Pushes the assembled response (or a partial one), shaped like a non-streamed one
** (`legacy`: a text completion's). */
void or_stream_result(lua_State *L, int acc, int legacy);
int or_stream_has_data(lua_State *L, int acc);
/* Pushes one chunk made of the chunks in the list at idx: text deltas joined,
** tool-call fragments kept in order, reasoning_details merged by type and index, audio
** joined, images, annotations and logprobs listed; the last finish_reason and usage. */
void or_stream_merge(lua_State *L, int list);

#endif
