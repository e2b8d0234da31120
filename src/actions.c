/*
** The client's actions as one table (bindings): each row says the method,
** the path, what the argument after self is, and how the result is shaped;
** one function serves every row, blocking and async (the way Lua's liolib
** serves io.read and file:read from one g_read). client:request reaches any
** endpoint through the same path. Adding an endpoint is one row and a spec.
*/
#include "bindings.h"

#include <string.h>

static int check_callback(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (t == LUA_TNONE || t == LUA_TNIL) return 0;
  if (t != LUA_TFUNCTION) {
    lua_pushfstring(L, "function expected, got %s", luaL_typename(L, idx));
    luaL_argerror(L, idx, lua_tostring(L, -1));
  }
  return idx;
}

/* Pushes s percent-encoded (RFC 3986 unreserved characters kept). */
static void push_escaped(lua_State *L, const char *s, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  luaL_Buffer b;
  size_t i;
  luaL_buffinit(L, &b);
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || c == '.' || c == '~') {
      luaL_addchar(&b, (char)c);
    } else {
      luaL_addchar(&b, '%');
      luaL_addchar(&b, hex[c >> 4]);
      luaL_addchar(&b, hex[c & 15]);
    }
  }
  luaL_pushresult(&b);
}

/* Pushes query[key] as a string: lists are comma-joined, as the API takes them. */
static void push_query_value(lua_State *L, int query, const char *key) {
  lua_getfield(L, query, key);
  if (lua_istable(L, -1)) {
    int j, m = (int)or_rawlen(L, -1), list = lua_gettop(L);
    lua_pushliteral(L, "");
    for (j = 1; j <= m; j++) {
      lua_rawgeti(L, list, j);
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_argerror(L, query, lua_pushfstring(L, "query list '%s' must hold strings", key));
      if (j > 1) {
        lua_pushliteral(L, ",");
        lua_insert(L, -2);
        lua_concat(L, 3);
      } else {
        lua_concat(L, 2);
      }
    }
    lua_remove(L, list);
  } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
    lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
    lua_remove(L, -2);
  } else if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
    luaL_argerror(L, query, lua_pushfstring(L,
      "query value '%s' must be a string, number, boolean or list", key));
  }
}

/* Replaces the path on top with it plus the query table at idx (0: none) as
** parameters, keys sorted: the same query always makes the same URL. */
static void add_query(lua_State *L, int query) {
  int path = lua_gettop(L);
  if (query) {
    int keys, i, n = 0;
    lua_newtable(L);
    keys = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, query)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, query, "query keys must be strings");
      lua_pushvalue(L, -1);
      lua_rawseti(L, keys, ++n);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, keys);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    for (i = 1; i <= n; i++) {
      size_t klen, vlen;
      const char *k, *v;
      lua_rawgeti(L, keys, i);
      k = lua_tolstring(L, -1, &klen);
      push_query_value(L, query, k);
      v = lua_tolstring(L, -1, &vlen);
      lua_pushvalue(L, path);
      lua_pushstring(L, i == 1 ? "?" : "&");
      push_escaped(L, k, klen);
      lua_pushliteral(L, "=");
      push_escaped(L, v, vlen);
      lua_concat(L, 5);
      lua_replace(L, path);
      lua_pop(L, 2);
    }
    lua_settop(L, path);
  }
}

/* The options table of an async call at idx: a table, or a new empty one for nil. */
static int check_opts(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) {
    lua_settop(L, idx - 1);
    lua_newtable(L);
    return idx;
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  return idx;
}

static void check_prompt(lua_State *L) {
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "prompt");
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, 2, lua_pushfstring(L, "'prompt' must be a string, got %s", luaL_typename(L, -1)));
  lua_pop(L, 1);
}

static void check_messages(lua_State *L) {
  int n, count = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "messages");
  if (!lua_istable(L, -1))
    luaL_argerror(L, 2, lua_pushfstring(L, "'messages' must be a table, got %s", luaL_typename(L, -1)));
  n = (int)or_rawlen(L, -1);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    count++;
    if (lua_type(L, -2) != LUA_TNUMBER || !lua_istable(L, -1))
      luaL_argerror(L, 2, "'messages' must be a sequence of message tables");
    lua_pop(L, 1);
  }
  if (n == 0 || count != n) luaL_argerror(L, 2, "'messages' must be a non-empty sequence");
  lua_pop(L, 1);
}

/* Pushes path + "?id=<id>" for the id at idx (checked). */
static void push_id_query_path(lua_State *L, const char *path, int idx) {
  size_t len;
  const char *id = luaL_checklstring(L, idx, &len);
  if (len == 0 || len > 256) luaL_argerror(L, idx, "generation id must be 1-256 characters");
  lua_pushstring(L, path);
  lua_pushliteral(L, "?id=");
  push_escaped(L, id, len);
  lua_concat(L, 3);
}

/* How long a 404 is retried: opts.wait at idx (0: none) or 5 seconds. */
static double generation_wait(lua_State *L, int opts) {
  double wait = 5;
  if (opts) {
    lua_getfield(L, opts, "wait");
    if (!lua_isnil(L, -1)) {
      wait = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(wait >= 0) || wait > 600)
        luaL_argerror(L, opts, "'wait' must be a number of seconds between 0 and 600");
    }
    lua_pop(L, 1);
  }
  return wait;
}

/* Whether s[0..n) is "." or "..", dots percent-encoded ("%2e") included. */
static int is_dot_segment(const char *s, size_t n) {
  size_t i = 0, dots = 0;
  while (i < n) {
    if (s[i] == '.') {
      i++;
    } else if (i + 2 < n && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] | 32) == 'e') {
      i += 3;
    } else {
      return 0;
    }
    dots++;
  }
  return dots == 1 || dots == 2;
}

/* Pushes the row's path with "{id}" replaced by the model id at idx
** ("author/slug", each part escaped; checked). */
static void push_model_path(lua_State *L, const char *path, int idx) {
  size_t len, i, slash = 0;
  const char *id = luaL_checklstring(L, idx, &len), *hole = strstr(path, "{id}");
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)id[i];
    if (c == '/') {
      if (slash) break;
      slash = i;
    } else if (c <= ' ' || c == 0x7f || c == '?' || c == '#' || c == '%' || c == '\\') {
      break;
    }
  }
  /* "." and ".." segments would be resolved by libcurl and the server: the key
  ** would go to another path ("../../credits") */
  if (len > 200 || i < len || slash == 0 || slash == len - 1 || is_dot_segment(id, slash) ||
      is_dot_segment(id + slash + 1, len - slash - 1))
    luaL_argerror(L, idx, "model id must look like 'author/slug'");
  lua_pushlstring(L, path, (size_t)(hole - path));
  push_escaped(L, id, slash);
  lua_pushliteral(L, "/");
  push_escaped(L, id + slash + 1, len - slash - 1);
  lua_pushstring(L, hole + 4);
  lua_concat(L, 5);
}

/* Pushes the row's path with "{hash}" replaced by the key hash at idx: a
** non-empty token of letters, digits, '-' and '_' (so never a dot segment). */
static void push_hash_path(lua_State *L, const char *path, int idx) {
  size_t len, i;
  const char *hash = luaL_checklstring(L, idx, &len), *hole = strstr(path, "{hash}");
  for (i = 0; i < len; i++) {
    char c = hash[i];
    if (!((c | 32) >= 'a' && (c | 32) <= 'z') && !(c >= '0' && c <= '9') && c != '-' && c != '_') break;
  }
  if (len == 0 || len > 256 || i < len) luaL_argerror(L, idx, "key hash must be letters, digits, '-' or '_'");
  lua_pushlstring(L, path, (size_t)(hole - path));
  lua_pushvalue(L, idx);
  lua_pushstring(L, hole + 6);
  lua_concat(L, 3);
}

static void check_embeddings(lua_State *L) {
  int t;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "input");
  t = lua_type(L, -1);
  if (t == LUA_TTABLE) {
    int n = (int)or_rawlen(L, -1), i;
    if (n == 0) luaL_argerror(L, 2, "'input' must be a string or a non-empty list");
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER && !lua_istable(L, -1))
        luaL_argerror(L, 2, lua_pushfstring(L, "'input[%d]' must be a string", i));
      lua_pop(L, 1);
    }
  } else if (t != LUA_TSTRING) {
    luaL_argerror(L, 2, lua_pushfstring(L, "'input' must be a string or a list, got %s",
                                        lua_typename(L, t)));
  }
  lua_pop(L, 1);
}


/* ---- the table of actions ---- */

/* What the arguments after self are, and how they become the path or the body. */
typedef enum {
  ARG_NONE,        /* get_credits() */
  ARG_QUERY,       /* get_models([query]); async: opts.query */
  ARG_ID,          /* get_generation(id [, { wait = }]): "?id=", a 404 retried while stats are written */
  ARG_MODEL,       /* get_model_endpoints("author/slug"): the id in the path */
  ARG_HASH,        /* delete_key(hash): the key's hash in the path */
  ARG_BODY,        /* embeddings(params [, on_chunk]): a table sent as JSON */
  ARG_HASH_BODY    /* update_key(hash, fields) */
} arg_kind;

typedef struct action {
  const char *name;
  or_method method;
  const char *path;            /* "{id}" and "{hash}" are filled from the arguments */
  arg_kind arg;
  void (*check)(lua_State *L); /* the params' own checks (argument 2), or NULL */
  int callback;                /* the blocking form takes a streaming callback */
  int stream_field;            /* streaming sends "stream": true in the body */
  or_shape shape;
  or_assembly assembly;
} action;

static const action actions[] = {
  {"get_models", OR_GET, "/models", ARG_QUERY, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"get_user_models", OR_GET, "/models/user", ARG_QUERY, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"count_models", OR_GET, "/models/count", ARG_QUERY, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"get_model", OR_GET, "/model/{id}", ARG_MODEL, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"get_model_endpoints", OR_GET, "/models/{id}/endpoints", ARG_MODEL, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"get_embedding_models", OR_GET, "/embeddings/models", ARG_QUERY, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"get_providers", OR_GET, "/providers", ARG_NONE, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"get_zdr_endpoints", OR_GET, "/endpoints/zdr", ARG_NONE, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"get_credits", OR_GET, "/credits", ARG_NONE, NULL, 0, 0, OR_SHAPE_CREDITS, OR_ASSEMBLE_NONE},
  {"get_key", OR_GET, "/key", ARG_NONE, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"get_generation", OR_GET, "/generation", ARG_ID, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"get_generation_content", OR_GET, "/generation/content", ARG_ID, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"chat_completion", OR_POST, "/chat/completions", ARG_BODY, check_messages, 1, 1, OR_SHAPE_BODY, OR_ASSEMBLE_CHAT},
  {"completion", OR_POST, "/completions", ARG_BODY, check_prompt, 1, 1, OR_SHAPE_BODY, OR_ASSEMBLE_COMPLETION},
  {"responses", OR_POST, "/responses", ARG_BODY, NULL, 1, 1, OR_SHAPE_BODY, OR_ASSEMBLE_RESPONSES},
  {"embeddings", OR_POST, "/embeddings", ARG_BODY, check_embeddings, 0, 0, OR_SHAPE_BODY, OR_ASSEMBLE_NONE},
  {"images", OR_POST, "/images", ARG_BODY, NULL, 0, 0, OR_SHAPE_BODY, OR_ASSEMBLE_NONE},
  {"rerank", OR_POST, "/rerank", ARG_BODY, NULL, 0, 0, OR_SHAPE_BODY, OR_ASSEMBLE_NONE},
  {"speech", OR_POST, "/audio/speech", ARG_BODY, NULL, 1, 0, OR_SHAPE_ANY, OR_ASSEMBLE_NONE},
  {"list_keys", OR_GET, "/keys", ARG_QUERY, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"create_key", OR_POST, "/keys", ARG_BODY, NULL, 0, 0, OR_SHAPE_BODY, OR_ASSEMBLE_NONE},
  {"get_key_info", OR_GET, "/keys/{hash}", ARG_HASH, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"update_key", OR_PATCH, "/keys/{hash}", ARG_HASH_BODY, NULL, 0, 0, OR_SHAPE_DATA, OR_ASSEMBLE_NONE},
  {"delete_key", OR_DELETE, "/keys/{hash}", ARG_HASH, NULL, 0, 0, OR_SHAPE_BODY, OR_ASSEMBLE_NONE},
  {"exchange_code", OR_POST, "/auth/keys", ARG_BODY, NULL, 0, 0, OR_SHAPE_BODY, OR_ASSEMBLE_NONE},
};

/* Checks the arguments and pushes the path; sets the body of a row that has one. */
static void action_path(lua_State *L, const action *a, or_call *call, int query) {
  int body = a->arg == ARG_BODY ? 2 : a->arg == ARG_HASH_BODY ? 3 : 0;
  if (body) {
    luaL_checktype(L, body, LUA_TTABLE);
    if (a->check) a->check(L);
    call->body = body;
    call->body_is_params = a->stream_field;  /* streaming adds "stream": true */
  }
  if (a->arg == ARG_ID) {
    push_id_query_path(L, a->path, 2);
  } else if (a->arg == ARG_MODEL) {
    push_model_path(L, a->path, 2);
  } else if (a->arg == ARG_HASH || a->arg == ARG_HASH_BODY) {
    push_hash_path(L, a->path, 2);
  } else {
    lua_pushstring(L, a->path);
    if (a->arg == ARG_QUERY) add_query(L, query);
  }
  call->path = lua_tostring(L, -1);
}

/* Where the options of an async call are (and, blocking, a callback or the
** query / wait table): after the row's arguments. */
static int extra_arg(const action *a) {
  switch (a->arg) {
    case ARG_NONE: case ARG_QUERY: return 2;
    case ARG_HASH_BODY: return 4;
    default: return 3;
  }
}

/* The query table of a call: the blocking form's argument, or opts.query. */
static int query_of(lua_State *L, int async, int extra) {
  if (extra == 0) return 0;
  if (!async) return extra;
  lua_getfield(L, extra, "query");
  if (!lua_isnil(L, -1) && !lua_istable(L, -1)) luaL_argerror(L, extra, "'query' must be a table");
  return lua_istable(L, -1) ? lua_gettop(L) : 0;
}

/* The types of the row's arguments. */
static void check_args(lua_State *L, const action *a) {
  if (a->arg == ARG_BODY) luaL_checktype(L, 2, LUA_TTABLE);
  if (a->arg == ARG_ID || a->arg == ARG_MODEL || a->arg == ARG_HASH || a->arg == ARG_HASH_BODY)
    luaL_checkstring(L, 2);
  if (a->arg == ARG_HASH_BODY) luaL_checktype(L, 3, LUA_TTABLE);
}

/* One function for every row: upvalue 1 is the row, upvalue 2 true for _async. */
static int action_call(lua_State *L) {
  const action *a = (const action *)lua_touserdata(L, lua_upvalueindex(1));
  int async = lua_toboolean(L, lua_upvalueindex(2)), at = extra_arg(a);
  int opts = 0, callback = 0, query = 0, extra;
  double wait = 0;
  or_call call;
  or_client *c = or_check_client(L, 1);
  memset(&call, 0, sizeof call);
  call.method = a->method;
  call.shape = a->shape;
  call.assembly = a->assembly;
  check_args(L, a);  /* before anything moves the stack: "got no value" stays so */
  if (async) {
    opts = check_opts(L, at);
    lua_settop(L, opts);
    extra = opts;
  } else {
    extra = lua_isnoneornil(L, at) ? 0 : at;
    if (extra && (a->arg == ARG_QUERY || a->arg == ARG_ID)) luaL_checktype(L, extra, LUA_TTABLE);
    if (a->callback) callback = check_callback(L, at);
    lua_settop(L, at);
  }
  if (a->arg == ARG_QUERY) query = query_of(L, async, extra);
  if (a->arg == ARG_ID) wait = generation_wait(L, extra);
  action_path(L, a, &call, query);
  return or_run(L, c, &call, callback, opts, wait);
}

/* ---- client:request: any endpoint ---- */

static const char *const spec_fields[] = {"method", "path", "query", "body", "content_type",
                                          "headers", "stream", NULL};
static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};

/* Raises unless spec (at 2) holds only known fields. */
static void check_spec_fields(lua_State *L) {
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    int i, known = 0;
    lua_pop(L, 1);
    for (i = 0; spec_fields[i] && lua_type(L, -1) == LUA_TSTRING; i++)
      known = known || strcmp(lua_tostring(L, -1), spec_fields[i]) == 0;
    if (!known)
      luaL_argerror(L, 2, lua_pushfstring(L, "unknown field '%s'", lua_type(L, -1) == LUA_TSTRING
                                              ? lua_tostring(L, -1) : luaL_typename(L, -1)));
  }
}

/* spec.path: under base_url, starting with "/", no query or fragment, no dot
** segments (the key must not travel to another path), no control characters. */
static const char *check_path(lua_State *L) {
  size_t len, i, seg = 1;
  const char *p;
  lua_getfield(L, 2, "path");
  p = lua_tolstring(L, -1, &len);
  if (lua_type(L, -1) != LUA_TSTRING || len == 0 || p[0] != '/' || len > 2048)
    luaL_argerror(L, 2, "'path' must be a string starting with \"/\"");
  for (i = 1; i <= len; i++) {
    unsigned char ch = i < len ? (unsigned char)p[i] : '/';
    if (ch == '/') {
      if (i > seg && is_dot_segment(p + seg, i - seg))
        luaL_argerror(L, 2, "'path' must not have \".\" or \"..\" segments");
      seg = i + 1;
    } else if (ch <= ' ' || ch == 0x7f || ch == '?' || ch == '#' || ch == '\\') {
      luaL_argerror(L, 2, "'path' must not hold '?', '#', spaces or control characters (use 'query')");
    }
  }
  return p;
}

/* spec.method (default GET, or POST with a body). */
static or_method check_method(lua_State *L, int has_body) {
  int i;
  lua_getfield(L, 2, "method");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return has_body ? OR_POST : OR_GET;
  }
  for (i = 0; methods[i]; i++)
    if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), methods[i]) == 0) {
      lua_pop(L, 1);
      if (has_body && i == OR_GET) luaL_argerror(L, 2, "a GET request has no 'body'");
      return (or_method)i;
    }
  return (or_method)luaL_argerror(L, 2, "'method' must be \"GET\", \"POST\", \"PUT\", \"PATCH\" or \"DELETE\"");
}

/* A header value or content type: a string without line breaks or NUL. */
static int is_header_value(lua_State *L, int idx) {
  size_t len, i;
  const char *v;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  v = lua_tolstring(L, idx, &len);
  for (i = 0; i < len; i++)
    if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0') return 0;
  return len <= 8192;
}

/* Names that frame the request or carry the key: the library sets them. */
static const char *const reserved_headers[] = {"content-length", "transfer-encoding", "host",
                                               "authorization", NULL};

static void check_header_name(lua_State *L, int idx) {
  size_t len, i;
  const char *name = lua_tolstring(L, idx, &len);
  if (lua_type(L, idx) != LUA_TSTRING || len == 0 || len > 256)
    luaL_argerror(L, 2, "'headers' names must be strings");
  for (i = 0; i < len; i++)
    if (!strchr("!#$%&'*+-.^_`|~", name[i]) && !((name[i] | 32) >= 'a' && (name[i] | 32) <= 'z') &&
        !(name[i] >= '0' && name[i] <= '9'))
      luaL_argerror(L, 2, lua_pushfstring(L, "invalid header name '%s'", name));
  for (i = 0; reserved_headers[i]; i++)
    if (strlen(reserved_headers[i]) == len && or_strncasecmp(name, reserved_headers[i], len) == 0)
      luaL_argerror(L, 2, lua_pushfstring(L, "header '%s' is set by the library", name));
}

/* spec.headers: pushed (a table of strings), or 0 when absent. */
static int check_headers(lua_State *L) {
  lua_getfield(L, 2, "headers");
  if (lua_isnil(L, -1)) return 0;
  if (!lua_istable(L, -1)) luaL_argerror(L, 2, "'headers' must be a table");
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    check_header_name(L, -2);
    if (!is_header_value(L, -1))
      luaL_argerror(L, 2, lua_pushfstring(L, "header '%s' must be a string without line breaks",
                                          lua_tostring(L, -2)));
    lua_pop(L, 1);
  }
  return lua_gettop(L);
}

/* The body, content type, query and headers of spec at 2, into call. */
static void check_spec(lua_State *L, or_call *call) {
  int t, query;
  check_spec_fields(L);
  lua_getfield(L, 2, "body");
  t = lua_type(L, -1);
  if (t != LUA_TNIL && t != LUA_TTABLE && t != LUA_TSTRING)
    luaL_argerror(L, 2, "'body' must be a table (sent as JSON) or a string");
  call->body = t == LUA_TNIL ? 0 : lua_gettop(L);
  lua_getfield(L, 2, "content_type");
  if (!lua_isnil(L, -1)) {
    if (t != LUA_TSTRING || !is_header_value(L, -1))
      luaL_argerror(L, 2, "'content_type' must be a string, for a string 'body'");
    call->content_type = lua_tostring(L, -1);
  }
  call->method = check_method(L, call->body != 0);
  lua_getfield(L, 2, "stream");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN) luaL_argerror(L, 2, "'stream' must be a boolean");
  call->stream = lua_toboolean(L, -1);
  call->headers = check_headers(L);
  lua_getfield(L, 2, "query");
  if (!lua_isnil(L, -1) && !lua_istable(L, -1)) luaL_argerror(L, 2, "'query' must be a table");
  query = lua_istable(L, -1) ? lua_gettop(L) : 0;
  check_path(L);
  add_query(L, query);
  call->path = lua_tostring(L, -1);
}

/* client:request(spec [, on_chunk]) and client:request_async(spec [, opts]). */
static int request_call(lua_State *L) {
  int async = lua_toboolean(L, lua_upvalueindex(1)), opts = 0, callback = 0;
  or_call call;
  or_client *c = or_check_client(L, 1);
  memset(&call, 0, sizeof call);
  call.shape = OR_SHAPE_ANY;
  call.assembly = OR_ASSEMBLE_NONE;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (async) opts = check_opts(L, 3);
  else callback = check_callback(L, 3);
  lua_settop(L, 3);
  check_spec(L, &call);
  return or_run(L, c, &call, callback, opts, 0);
}

void or_actions_register(lua_State *L, int methods_idx) {
  size_t i;
  int async;
  methods_idx = or_absindex(L, methods_idx);
  for (i = 0; i < sizeof actions / sizeof actions[0]; i++)
    for (async = 0; async < 2; async++) {
      lua_pushlightuserdata(L, (void *)&actions[i]);
      lua_pushboolean(L, async);
      lua_pushcclosure(L, action_call, 2);
      lua_pushfstring(L, "%s%s", actions[i].name, async ? "_async" : "");
      lua_insert(L, -2);
      lua_rawset(L, methods_idx);
    }
  for (async = 0; async < 2; async++) {
    lua_pushboolean(L, async);
    lua_pushcclosure(L, request_call, 1);
    lua_setfield(L, methods_idx, async ? "request_async" : "request");
  }
}
