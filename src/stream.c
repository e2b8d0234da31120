/*
** The stream assembler: absorbs decoded chunks one by one and builds a
** response shaped like a non-streamed one (joined content and reasoning,
** tool_calls merged by index, reasoning_details merged by type and index,
** audio fragments joined, images, annotations and logprobs kept, finish_reason,
** usage); and merges several chunks into one for coalesced delivery.
**
** The state is a Lua table (slots: see the enums below):
**   acc[ACC_CHOICES]  [index + 1] = a choice's state: { index, role, finish_reason,
**     native_finish_reason, tools = {[index + 1] = {...}}, annotations = {...},
**     images = {...}, logprobs = { content = {...}, refusal = {...} },
**     [CHOICE_CONTENT .. CHOICE_TEXT] = parts, [CHOICE_DETAILS] = {blocks},
**     [CHOICE_DETAILS_BY] = { [type] = { [index] = block } }, [CHOICE_AUDIO] = block }
** A merged chunk's choice holds the same state while chunks are merged into it.
*/
#include "bridge.h"

#include <stddef.h>
#include <string.h>

#define is_null(L, idx) or_is_null(L, idx)

/* t[field] as a table, created when missing; pushed. */
static void subtable(lua_State *L, int t, const char *field) {
  lua_getfield(L, t, field);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, t, field);
  }
}

static void append(lua_State *L, int list, int value) {
  lua_pushvalue(L, value);
  lua_rawseti(L, list, (int)or_rawlen(L, list) + 1);
}

/* Copies src[field] into dst[field] when it is set (not nil, not null). */
static void copy_if_set(lua_State *L, int dst, int src, const char *field) {
  lua_getfield(L, src, field);
  if (!is_null(L, -1))
    lua_setfield(L, dst, field);
  else
    lua_pop(L, 1);
}

/* The assembler keeps its state in array slots: cheaper than named fields
** for something done once per chunk. */
enum { ACC_FIRST = 1, ACC_LAST, ACC_CHOICES, ACC_USAGE, ACC_KEYS };
/* A choice's text parts sit in its first slots, for the same reason, then the
** blocks streamed in fragments; a tool call's arguments in slot 1 of its state. */
enum {
  CHOICE_CONTENT = 1, CHOICE_REASONING, CHOICE_REFUSAL, CHOICE_TEXT,
  CHOICE_DETAILS, CHOICE_DETAILS_BY, CHOICE_AUDIO, CHOICE_SLOTS = CHOICE_AUDIO
};
enum { TOOL_ARGUMENTS = 1 };

/* The keys read from every chunk, as ready Lua strings: a lookup with one skips
** interning the C string (LuaJIT's lua_getfield hashes it on every call). */
enum {
  K_USAGE = 1, K_CHOICES, K_ERROR, K_INDEX, K_DELTA, K_FINISH_REASON, K_TEXT, K_LOGPROBS,
  K_COUNT
};
static const char *const key_names[K_COUNT] = {
  NULL, "usage", "choices", "error", "index", "delta", "finish_reason", "text", "logprobs"
};
#define OR_STREAM_KEYS "openrouter.stream_keys"

/* Pushes t[key]; t must be a table. */
static void get_key(lua_State *L, int t, int keys, int key) {
  lua_rawgeti(L, keys, key);
  lua_rawget(L, t);
}

void or_stream_new_acc(lua_State *L) {
  lua_createtable(L, ACC_KEYS, 0);
  lua_newtable(L);
  lua_rawseti(L, -2, ACC_CHOICES);
  lua_getfield(L, LUA_REGISTRYINDEX, OR_STREAM_KEYS);
  if (!lua_istable(L, -1)) {
    int i;
    lua_pop(L, 1);
    lua_createtable(L, K_COUNT, 0);
    for (i = 1; i < K_COUNT; i++) {
      lua_pushstring(L, key_names[i]);
      lua_rawseti(L, -2, i);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, OR_STREAM_KEYS);
  }
  lua_rawseti(L, -2, ACC_KEYS);
}

/* ---- text parts: the pieces of a streamed text, joined at the end ----
** One growing byte block per text (a userdata, so the garbage collector owns
** it on every path): appending copies the piece's bytes, where a list of
** pieces would keep thousands of strings alive for the collector to walk. */

typedef struct parts {
  size_t len, cap;
  char bytes[1];
} parts;

/* Appends the string at value to the parts in slot `slot` of owner. */
static void parts_add(lua_State *L, int owner, int slot, int value) {
  size_t n;
  const char *s = lua_tolstring(L, value, &n);
  parts *p;
  lua_rawgeti(L, owner, slot);
  p = (parts *)lua_touserdata(L, -1);
  if (p == NULL || p->cap - p->len < n) {
    size_t len = p ? p->len : 0, cap = p && p->cap > 64 ? p->cap : 64;
    parts *grown;
    while (cap - len < n) {
      if (cap > ((size_t)-1 - offsetof(parts, bytes)) / 2) luaL_error(L, "not enough memory");
      cap *= 2;
    }
    grown = (parts *)lua_newuserdata(L, offsetof(parts, bytes) + cap);
    grown->len = len;
    grown->cap = cap;
    if (len) memcpy(grown->bytes, p->bytes, len);
    lua_rawseti(L, owner, slot);
    p = grown;
  }
  memcpy(p->bytes + p->len, s, n);
  p->len += n;
  lua_pop(L, 1);
}

/* Pushes the joined parts in slot `slot` of owner, or returns 0 when there are none. */
static int push_parts(lua_State *L, int owner, int slot) {
  const parts *p;
  lua_rawgeti(L, owner, slot);
  p = (const parts *)lua_touserdata(L, -1);
  if (p == NULL) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushlstring(L, p->bytes, p->len);
  lua_remove(L, -2);
  return 1;
}

/* Copies the top-level fields of chunk into res (not choices, usage, error, object). */
static void copy_meta(lua_State *L, int res, int chunk) {
  if (!lua_istable(L, chunk)) return;
  lua_pushnil(L);
  while (lua_next(L, chunk)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (k && strcmp(k, "choices") != 0 && strcmp(k, "usage") != 0 &&
        strcmp(k, "error") != 0 && strcmp(k, "object") != 0 && !is_null(L, -1)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, res);
    } else {
      lua_pop(L, 1);
    }
  }
}

int or_stream_has_data(lua_State *L, int acc) {
  int yes, top = lua_gettop(L);
  acc = or_absindex(L, acc);
  lua_rawgeti(L, acc, ACC_CHOICES);
  lua_pushnil(L);
  yes = lua_next(L, -2) != 0;
  lua_settop(L, top);
  if (!yes) {
    lua_rawgeti(L, acc, ACC_USAGE);
    yes = !lua_isnil(L, -1);
    lua_settop(L, top);
  }
  return yes;
}

/* ---- blocks: objects streamed in fragments (a reasoning_details item, audio) ----
** A block's state holds the fields the fragments set: the joined text fields
** (names[i]) as parts in slot i + 1, appended; the others by name, the first
** fragment's values as they are, then the latest non-null, non-empty value. */

static const char *const detail_joined[] = {"text", "summary", "data", NULL};
static const char *const audio_joined[] = {"data", "transcript", NULL};

/* The parts slot of the key at idx when it names one of the joined fields, else 0. */
static int joined_slot(lua_State *L, int idx, const char *const *names) {
  const char *k = lua_tostring(L, idx);
  int i;
  for (i = 0; names[i]; i++)
    if (strcmp(k, names[i]) == 0) return i + 1;
  return 0;
}

static int is_empty(lua_State *L, int idx) {
  return is_null(L, idx) || (lua_type(L, idx) == LUA_TSTRING && or_rawlen(L, idx) == 0);
}

/* Takes the fragment at item into the block state at state (`fresh`: its first). */
static void block_absorb(lua_State *L, int state, int item, const char *const *names,
                         int fresh) {
  lua_pushnil(L);
  while (lua_next(L, item)) {
    int slot = lua_type(L, -2) == LUA_TSTRING ? joined_slot(L, -2, names) : -1;
    if (slot > 0 && lua_type(L, -1) == LUA_TSTRING) {
      parts_add(L, state, slot, lua_gettop(L));
      lua_pop(L, 1);
    } else if (slot >= 0 && (fresh || !is_empty(L, -1))) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, state);
    } else {
      lua_pop(L, 1);
    }
  }
}

/* Pushes the object a block state stands for: its named fields, then the joined ones. */
static void push_block(lua_State *L, int state, const char *const *names) {
  int out, i;
  lua_newtable(L);
  out = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, state)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, out);
    } else {
      lua_pop(L, 1);
    }
  }
  for (i = 0; names[i]; i++)
    if (push_parts(L, state, i + 1)) lua_setfield(L, out, names[i]);
}

/* The table in slot `slot` of owner, created when missing; pushed. */
static void slot_table(lua_State *L, int owner, int slot) {
  lua_rawgeti(L, owner, slot);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, owner, slot);
  }
}

/* Pushes the blocks of a details list (CHOICE_DETAILS of owner) as objects, or
** returns 0 when there are none. */
static int push_details(lua_State *L, int owner) {
  int list, i, n;
  lua_rawgeti(L, owner, CHOICE_DETAILS);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  list = lua_gettop(L);
  n = (int)or_rawlen(L, list);
  lua_createtable(L, n, 0);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    push_block(L, lua_gettop(L), detail_joined);
    lua_rawseti(L, list + 1, i);
    lua_pop(L, 1);
  }
  lua_remove(L, list);
  return 1;
}

/* Pushes the block state of a reasoning_details fragment: the one of the same type
** and index (owner's CHOICE_DETAILS_BY: [type][index]) or a new one, listed in
** CHOICE_DETAILS; *fresh tells which. A fragment whose index is neither a number
** nor a string (NaN may not even be a key) gets a block of its own. */
static void push_detail_block(lua_State *L, int owner, int item, int *fresh) {
  int index, t;
  *fresh = 1;
  lua_getfield(L, item, "index");
  index = lua_gettop(L);
  t = lua_type(L, index);
  if (t == LUA_TSTRING || (t == LUA_TNUMBER && lua_tonumber(L, index) == lua_tonumber(L, index))) {
    slot_table(L, owner, CHOICE_DETAILS_BY);
    lua_getfield(L, item, "type");
    if (lua_type(L, -1) != LUA_TSTRING) {  /* fragments without a type: a group of their own */
      lua_pop(L, 1);
      lua_pushboolean(L, 0);
    }
    lua_pushvalue(L, index + 2);
    lua_rawget(L, index + 1);
    if (!lua_istable(L, -1)) {  /* the first block of this type: its map of indexes */
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, index + 2);
      lua_pushvalue(L, -2);
      lua_rawset(L, index + 1);
    }
    lua_pushvalue(L, index);
    lua_rawget(L, index + 3);
    *fresh = !lua_istable(L, -1);
    if (*fresh) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, index);
      lua_pushvalue(L, -2);
      lua_rawset(L, index + 3);
    }
  } else {
    lua_newtable(L);
  }
  lua_replace(L, index);
  lua_settop(L, index);
  if (*fresh) {
    slot_table(L, owner, CHOICE_DETAILS);
    lua_pushvalue(L, index);
    lua_rawseti(L, -2, (int)or_rawlen(L, -2) + 1);
    lua_pop(L, 1);
  }
}

/* A reasoning_details fragment: joined into the block of the same type and index,
** wherever it came in the stream (indexes 0, 1, 0 make two blocks). */
static void absorb_detail(lua_State *L, int owner, int item) {
  int fresh;
  if (!lua_istable(L, item)) return;
  push_detail_block(L, owner, item, &fresh);
  block_absorb(L, lua_gettop(L), item, detail_joined, fresh);
  lua_pop(L, 1);
}

/* A delta's audio fragment: id, expires_at and format kept, data and transcript joined. */
static void absorb_audio(lua_State *L, int owner, int audio) {
  int fresh;
  lua_rawgeti(L, owner, CHOICE_AUDIO);
  fresh = !lua_istable(L, -1);
  if (fresh) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, owner, CHOICE_AUDIO);
  }
  block_absorb(L, lua_gettop(L), audio, audio_joined, fresh);
  lua_pop(L, 1);
}

/* Pushes the audio a choice state holds, or returns 0. */
static int push_audio(lua_State *L, int owner) {
  lua_rawgeti(L, owner, CHOICE_AUDIO);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  push_block(L, lua_gettop(L), audio_joined);
  lua_remove(L, -2);
  return 1;
}

/* Pushes the state kept for an indexed item (a choice, a tool call): slot
** `index + 1` of list, the item's `index` field (on top, popped) or else its
** position. A new state is { index = i }, with an empty table under `sub` when
** sub is given. Pushes nothing and returns 0 for an index that is not an
** integer in 0..1e6 (2^31, 1e300, NaN, 0.5): the item is not assembled, as
** there is no slot it could belong to. The range is checked on the double,
** before any cast: converting an out-of-range double to int is undefined. */
static int push_slot_at(lua_State *L, int list, int position, const char *sub) {
  int idx = position;
  if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, -1);
    if (!(n >= 0 && n <= 1000000) || n != (lua_Number)(int)n) {
      lua_pop(L, 1);
      return 0;
    }
    idx = (int)n;
  }
  lua_pop(L, 1);
  if (idx < 0 || idx > 1000000) return 0;
  lua_rawgeti(L, list, idx + 1);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushinteger(L, idx);
    lua_setfield(L, -2, "index");
    if (sub) {
      lua_newtable(L);
      lua_setfield(L, -2, sub);
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, list, idx + 1);
  }
  return 1;
}

static int push_slot(lua_State *L, int list, int item, int position, const char *sub) {
  lua_getfield(L, item, "index");
  return push_slot_at(L, list, position, sub);
}

static void absorb_tool_call(lua_State *L, int tools, int tc, int position) {
  int entry, fn;
  if (!lua_istable(L, tc)) return;
  if (!push_slot(L, tools, tc, position, NULL)) return;
  entry = lua_gettop(L);
  /* ids come on the first fragment; later ones may carry "" (treat as absent) */
  lua_getfield(L, tc, "id");
  if (lua_type(L, -1) == LUA_TSTRING && or_rawlen(L, -1) > 0)
    lua_setfield(L, entry, "id");
  else
    lua_pop(L, 1);
  lua_getfield(L, tc, "type");
  if (lua_type(L, -1) == LUA_TSTRING && or_rawlen(L, -1) > 0)
    lua_setfield(L, entry, "type");
  else
    lua_pop(L, 1);
  lua_getfield(L, tc, "function");
  fn = lua_gettop(L);
  if (lua_istable(L, fn)) {
    lua_getfield(L, fn, "name");
    if (lua_type(L, -1) == LUA_TSTRING && or_rawlen(L, -1) > 0) {
      lua_getfield(L, entry, "name");
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_setfield(L, entry, "name");
      } else {
        lua_pop(L, 2);
      }
    } else {
      lua_pop(L, 1);
    }
    lua_getfield(L, fn, "arguments");
    if (lua_type(L, -1) == LUA_TSTRING) parts_add(L, entry, TOOL_ARGUMENTS, lua_gettop(L));
  }
  lua_settop(L, entry - 1);
}


/* ---- lists: images, annotations, logprobs ---- */

/* Whether the values at a and b are equal, tables compared by content (at most
** 16 levels deep: deeper ones count as different). */
static int same_value(lua_State *L, int a, int b, int depth) {
  int n = 0, equal = 1;
  if (lua_type(L, a) != lua_type(L, b)) return 0;
  if (lua_rawequal(L, a, b)) return 1;
  if (!lua_istable(L, a) || depth > 16) return 0;
  luaL_checkstack(L, 4, NULL);
  lua_pushnil(L);
  while (equal && lua_next(L, a)) {
    n++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    equal = same_value(L, lua_gettop(L) - 1, lua_gettop(L), depth + 1);
    lua_pop(L, 2);
  }
  if (!equal) {
    lua_pop(L, 1);  /* the key lua_next left */
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    lua_pop(L, 1);
    n--;
  }
  return n == 0;
}

static void append_item(lua_State *L, int list, int item, int position) {
  (void)position;
  append(L, list, item);
}

/* Providers repeat annotations (the whole list on later chunks): one of the last 256
** equal to the new one keeps it out. Bounded, so a hostile stream costs linear time. */
static void annotation_item(lua_State *L, int list, int item, int position) {
  int i, n = (int)or_rawlen(L, list);
  (void)position;
  for (i = n; i > 0 && i > n - 256; i--) {
    int same;
    lua_rawgeti(L, list, i);
    same = same_value(L, item, lua_gettop(L), 0);
    lua_pop(L, 1);
    if (same) return;
  }
  append(L, list, item);
}

/* Appends the items of the list src[field] to the list dst[field]. */
static void join_list(lua_State *L, int dst, int src, const char *field) {
  int list, out, i, n;
  lua_getfield(L, src, field);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  list = lua_gettop(L);
  subtable(L, dst, field);
  out = lua_gettop(L);
  n = (int)or_rawlen(L, list);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    append(L, out, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_settop(L, list - 1);
}

/* A choice's logprobs: each list (content, refusal; a completion's tokens ...) the
** concatenation of the chunks' lists, in order; other values (null) kept until a
** list comes. */
static void absorb_logprobs(lua_State *L, int owner, int lp) {
  int state;
  subtable(L, owner, "logprobs");
  state = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, lp)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 1);
    } else if (lua_istable(L, -1)) {
      lua_pop(L, 1);
      join_list(L, state, lp, lua_tostring(L, -1));
    } else {
      lua_pushvalue(L, -2);
      lua_rawget(L, state);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, state);
      } else {
        lua_pop(L, 2);
      }
    }
  }
  lua_pop(L, 1);
}

/* Applies each item of the list at idx with fn(L, target, item, position). */
static void each_item(lua_State *L, int c, const char *field, int list,
                      void (*fn)(lua_State *, int, int, int)) {
  int i, n = (int)or_rawlen(L, list), target;
  subtable(L, c, field);
  target = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    fn(L, target, lua_gettop(L), i - 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* The table fields of a delta. `merging`: a coalesced chunk's, whose tool-call
** fragments stay fragments (the assembler merges them into calls by index). */
static void absorb_delta_table(lua_State *L, int c, const char *k, int value, int merging) {
  if (strcmp(k, "tool_calls") == 0) {
    each_item(L, c, "tools", value, merging ? append_item : absorb_tool_call);
  } else if (strcmp(k, "reasoning_details") == 0) {
    int i, n = (int)or_rawlen(L, value);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, value, i);
      absorb_detail(L, c, lua_gettop(L));
      lua_pop(L, 1);
    }
  } else if (strcmp(k, "annotations") == 0) {
    each_item(L, c, "annotations", value, annotation_item);
  } else if (strcmp(k, "images") == 0) {
    each_item(L, c, "images", value, append_item);
  } else if (strcmp(k, "audio") == 0) {
    absorb_audio(L, c, value);
  }
}

/* The fields of a delta, found by walking it once (a delta holds two or three
** keys; looking each possible field up would cost more). */
static void absorb_delta(lua_State *L, int c, int delta, int merging) {
  lua_pushnil(L);
  while (lua_next(L, delta)) {
    int value = lua_gettop(L), t = lua_type(L, value);
    const char *k = lua_type(L, value - 1) == LUA_TSTRING ? lua_tostring(L, value - 1) : "";
    if (t == LUA_TSTRING) {
      if (strcmp(k, "content") == 0) {
        parts_add(L, c, CHOICE_CONTENT, value);
      } else if (strcmp(k, "reasoning") == 0) {
        parts_add(L, c, CHOICE_REASONING, value);
      } else if (strcmp(k, "refusal") == 0) {
        parts_add(L, c, CHOICE_REFUSAL, value);
      } else if (strcmp(k, "role") == 0) {
        lua_pushvalue(L, value - 1);
        lua_pushvalue(L, value);
        lua_rawset(L, c);
      }
    } else if (t == LUA_TTABLE) {
      absorb_delta_table(L, c, k, value, merging);
    }
    lua_settop(L, value - 1);
  }
}

static void absorb_choice(lua_State *L, int choices, int choice, int position, int keys,
                          int legacy) {
  int c, top = lua_gettop(L);
  get_key(L, choice, keys, K_INDEX);
  if (!push_slot_at(L, choices, position, NULL)) return;
  c = lua_gettop(L);
  /* a choice carries index, delta, finish_reason, native_finish_reason, logprobs:
  ** four lookups cost less than walking it */
  get_key(L, choice, keys, K_DELTA);
  if (lua_istable(L, -1)) absorb_delta(L, c, lua_gettop(L), 0);
  get_key(L, choice, keys, K_FINISH_REASON);
  if (lua_type(L, -1) == LUA_TSTRING) {
    lua_setfield(L, c, "finish_reason");
    copy_if_set(L, c, choice, "native_finish_reason");
  }
  get_key(L, choice, keys, K_LOGPROBS);
  if (lua_istable(L, -1)) absorb_logprobs(L, c, lua_gettop(L));
  if (legacy) {
    get_key(L, choice, keys, K_TEXT);
    if (lua_type(L, -1) == LUA_TSTRING) parts_add(L, c, CHOICE_TEXT, lua_gettop(L));
  }
  lua_settop(L, top);
}

int or_stream_absorb(lua_State *L, int acc, int chunk, int first, int legacy) {
  int top = lua_gettop(L), keys, failed;
  acc = or_absindex(L, acc);
  chunk = or_absindex(L, chunk);
  lua_rawgeti(L, acc, ACC_KEYS);
  keys = lua_gettop(L);
  /* top-level fields (id, model, provider ...) come from the first and the last
  ** chunk at the end, rather than being copied from every chunk */
  if (first) {
    lua_pushvalue(L, chunk);
    lua_rawseti(L, acc, ACC_FIRST);
  }
  lua_pushvalue(L, chunk);
  lua_rawseti(L, acc, ACC_LAST);
  get_key(L, chunk, keys, K_USAGE);
  if (lua_istable(L, -1))
    lua_rawseti(L, acc, ACC_USAGE);
  else
    lua_pop(L, 1);
  get_key(L, chunk, keys, K_CHOICES);
  if (lua_istable(L, -1)) {
    int list = lua_gettop(L), i, n = (int)or_rawlen(L, list), choices;
    lua_rawgeti(L, acc, ACC_CHOICES);
    choices = lua_gettop(L);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, list, i);
      if (lua_istable(L, -1)) absorb_choice(L, choices, lua_gettop(L), i - 1, keys, legacy);
      lua_pop(L, 1);
    }
  }
  get_key(L, chunk, keys, K_ERROR);
  failed = lua_istable(L, -1);
  lua_settop(L, top);
  return failed;
}

#define push_null(L) or_push_null(L)

/* Sorted by index: tables keyed index + 1 may have holes. */
static void push_compacted(lua_State *L, int sparse) {
  int out = 0;
  lua_Number i, max = 0;
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, sparse)) {
    if (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) > max) max = lua_tonumber(L, -2);
    lua_pop(L, 1);
  }
  for (i = 1; i <= max; i++) {
    lua_rawgeti(L, sparse, (int)i);
    if (lua_isnil(L, -1))
      lua_pop(L, 1);
    else
      lua_rawseti(L, -2, ++out);
  }
}

static void push_tool_calls(lua_State *L, int tools) {
  int list, i, n;
  push_compacted(L, tools);
  list = lua_gettop(L);
  n = (int)or_rawlen(L, list);
  for (i = 1; i <= n; i++) {
    int entry, call;
    lua_rawgeti(L, list, i);
    entry = lua_gettop(L);
    lua_newtable(L);
    call = lua_gettop(L);
    copy_if_set(L, call, entry, "id");
    lua_getfield(L, entry, "type");
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushliteral(L, "function");
    }
    lua_setfield(L, call, "type");
    lua_newtable(L);
    lua_getfield(L, entry, "name");
    lua_setfield(L, -2, "name");
    if (!push_parts(L, entry, TOOL_ARGUMENTS)) lua_pushliteral(L, "");
    lua_setfield(L, -2, "arguments");
    lua_setfield(L, call, "function");
    lua_rawseti(L, list, i);
    lua_pop(L, 1);
  }
}


/* The fields a message (or a merged delta) gets from the blocks and lists of the
** choice state at c: reasoning_details, annotations, images, audio. */
static void set_extras(lua_State *L, int dst, int c) {
  if (push_details(L, c)) lua_setfield(L, dst, "reasoning_details");
  copy_if_set(L, dst, c, "annotations");
  copy_if_set(L, dst, c, "images");
  if (push_audio(L, c)) lua_setfield(L, dst, "audio");
}

static void push_message(lua_State *L, int c) {
  int msg;
  lua_newtable(L);
  msg = lua_gettop(L);
  lua_getfield(L, c, "role");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "assistant");
  }
  lua_setfield(L, msg, "role");
  /* a tool-call or audio reply without text carries content null when not
  ** streamed: the same here */
  lua_getfield(L, c, "tools");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_rawgeti(L, c, CHOICE_AUDIO);
  }
  if (!push_parts(L, c, CHOICE_CONTENT)) lua_pushliteral(L, "");
  if (lua_istable(L, -2) && or_rawlen(L, -1) == 0) {
    lua_pop(L, 1);
    push_null(L);
  }
  lua_setfield(L, msg, "content");
  lua_pop(L, 1);
  if (push_parts(L, c, CHOICE_REASONING)) lua_setfield(L, msg, "reasoning");
  if (push_parts(L, c, CHOICE_REFUSAL)) lua_setfield(L, msg, "refusal");
  set_extras(L, msg, c);
  lua_getfield(L, c, "tools");
  if (lua_istable(L, -1)) {
    push_tool_calls(L, lua_gettop(L));
    lua_setfield(L, msg, "tool_calls");
  }
  lua_pop(L, 1);
}

/* Pushes the response choice for the choice state at c. */
static void push_choice(lua_State *L, int c, int legacy) {
  int out;
  lua_newtable(L);
  out = lua_gettop(L);
  lua_getfield(L, c, "index");
  lua_setfield(L, out, "index");
  if (legacy) {
    if (!push_parts(L, c, CHOICE_TEXT)) lua_pushliteral(L, "");
    lua_setfield(L, out, "text");
    if (push_parts(L, c, CHOICE_REASONING)) lua_setfield(L, out, "reasoning");
  } else {
    push_message(L, c);
    lua_setfield(L, out, "message");
  }
  copy_if_set(L, out, c, "finish_reason");
  copy_if_set(L, out, c, "native_finish_reason");
  copy_if_set(L, out, c, "logprobs");
}

void or_stream_result(lua_State *L, int acc, int legacy) {
  int res, list, i, n;
  acc = or_absindex(L, acc);
  lua_newtable(L);
  res = lua_gettop(L);
  lua_rawgeti(L, acc, ACC_FIRST);
  copy_meta(L, res, lua_gettop(L));
  lua_pop(L, 1);
  lua_rawgeti(L, acc, ACC_LAST);
  copy_meta(L, res, lua_gettop(L));
  lua_pop(L, 1);
  lua_pushstring(L, legacy ? "text_completion" : "chat.completion");
  lua_setfield(L, res, "object");
  lua_rawgeti(L, acc, ACC_USAGE);
  if (lua_istable(L, -1))
    lua_setfield(L, res, "usage");
  else
    lua_pop(L, 1);
  lua_rawgeti(L, acc, ACC_CHOICES);
  push_compacted(L, lua_gettop(L));
  list = lua_gettop(L);
  n = (int)or_rawlen(L, list);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    push_choice(L, lua_gettop(L), legacy);
    lua_rawseti(L, list, i);
    lua_pop(L, 1);
  }
  lua_setfield(L, res, "choices");
  lua_pop(L, 1);
}

/* ---- coalescing: several chunks as one ---- */

/* Moves src[from] to dst[to] when it is set. */
static void move_field(lua_State *L, int dst, const char *to, int src, const char *from) {
  lua_getfield(L, src, from);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_setfield(L, dst, to);
  lua_pushnil(L);
  lua_setfield(L, src, from);
}

/* A merged choice: the state gathered in m becomes its delta (text deltas joined,
** tool-call fragments in order, reasoning_details merged by type and index, audio
** joined, annotations and images listed) and its legacy `text`. */
static void finish_merged(lua_State *L, int m) {
  int delta, i;
  lua_newtable(L);
  delta = lua_gettop(L);
  move_field(L, delta, "role", m, "role");
  if (push_parts(L, m, CHOICE_CONTENT)) lua_setfield(L, delta, "content");
  if (push_parts(L, m, CHOICE_REASONING)) lua_setfield(L, delta, "reasoning");
  if (push_parts(L, m, CHOICE_REFUSAL)) lua_setfield(L, delta, "refusal");
  move_field(L, delta, "tool_calls", m, "tools");
  set_extras(L, delta, m);
  lua_pushnil(L);
  lua_setfield(L, m, "annotations");
  lua_pushnil(L);
  lua_setfield(L, m, "images");
  if (push_parts(L, m, CHOICE_TEXT)) lua_setfield(L, m, "text");
  for (i = 1; i <= CHOICE_SLOTS; i++) {
    lua_pushnil(L);
    lua_rawseti(L, m, i);
  }
  lua_setfield(L, m, "delta");
}

static void merge_choice(lua_State *L, int choices, int choice, int position) {
  int m, top = lua_gettop(L);
  if (!push_slot(L, choices, choice, position, NULL)) return;
  m = lua_gettop(L);
  copy_if_set(L, m, choice, "finish_reason");
  copy_if_set(L, m, choice, "native_finish_reason");
  lua_getfield(L, choice, "text");
  if (lua_type(L, -1) == LUA_TSTRING) parts_add(L, m, CHOICE_TEXT, lua_gettop(L));
  lua_getfield(L, choice, "logprobs");
  if (lua_istable(L, -1)) absorb_logprobs(L, m, lua_gettop(L));
  lua_getfield(L, choice, "delta");
  if (lua_istable(L, -1)) absorb_delta(L, m, lua_gettop(L), 1);
  lua_settop(L, top);
}

/* The top-level fields of a chunk into merged: the latest value wins (id, model,
** usage, error ...); not its choices. */
static void merge_top(lua_State *L, int merged, int chunk) {
  lua_pushnil(L);
  while (lua_next(L, chunk)) {
    if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "choices") == 0) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, merged);
  }
}

void or_stream_merge(lua_State *L, int list) {
  int n, i, merged, choices;
  list = or_absindex(L, list);
  n = (int)or_rawlen(L, list);
  lua_newtable(L);
  merged = lua_gettop(L);
  lua_newtable(L);
  choices = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    int chunk;
    lua_rawgeti(L, list, i);
    chunk = lua_gettop(L);
    if (!lua_istable(L, chunk)) {
      lua_settop(L, choices);
      continue;
    }
    merge_top(L, merged, chunk);
    lua_getfield(L, chunk, "choices");
    if (lua_istable(L, -1)) {
      int cl = lua_gettop(L), j, m = (int)or_rawlen(L, cl);
      for (j = 1; j <= m; j++) {
        lua_rawgeti(L, cl, j);
        if (lua_istable(L, -1)) merge_choice(L, choices, lua_gettop(L), j - 1);
        lua_pop(L, 1);
      }
    }
    lua_settop(L, choices);
  }
  push_compacted(L, choices);
  n = (int)or_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    finish_merged(L, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_setfield(L, merged, "choices");
  lua_pop(L, 1);
  lua_pushinteger(L, (lua_Integer)or_rawlen(L, list));
  lua_setfield(L, merged, "coalesced");
}
