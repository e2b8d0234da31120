/*
** A client's configuration and resources (engine): options, the curl multi
** handle that owns the connection cache, idle easy handles and a response
** buffer kept for reuse, the header lists, and the closer that frees them.
** The Lua client object around it is client.c's.
*/
#include "engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void or_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF && *ref != LUA_REFNIL) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

void or_slist_free_secure(struct curl_slist *list) {
  struct curl_slist *item;
  for (item = list; item; item = item->next) {
    volatile char *p = item->data;
    while (p && *p) *p++ = 0;  /* the Authorization line holds the key */
  }
  curl_slist_free_all(list);
}

/* The options every request of a client shares: set once per easy handle,
** when the client creates it (no curl_easy_reset per request). */
static void easy_defaults(or_client *s, CURL *e) {
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  /* never follow a redirect: the Authorization header must not travel */
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  if (s->timeout_ms > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, s->timeout_ms);
  if (s->connect_timeout_ms > 0) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
  if (s->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
  if (s->proxy) curl_easy_setopt(e, CURLOPT_PROXY, s->proxy);
#if LIBCURL_VERSION_NUM >= 0x073600
  /* a proxy's "200 Connection established" is not the server's status */
  curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
#endif
  if (s->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
}

/* Whether a header line sets Authorization (any case). */
static int is_authorization(const char *line) {
  static const char name[] = "authorization";
  size_t i;
  for (i = 0; i < sizeof name - 1; i++)
    if ((line[i] | 0x20) != name[i]) return 0;  /* letters only: | 0x20 lowers them */
  return line[i] == ':';
}

/* Puts "Authorization: Bearer <key>" first in s->headers, unless a line of the
** caller's sets Authorization. Made here, not in Lua: a Lua string holding the
** key can never be wiped, this buffer and the list item can (the item by
** or_slist_free_secure when the client closes). Returns 0 when out of memory. */
static int add_bearer_line(or_client *s) {
  static const char prefix[] = "Authorization: Bearer ";
  struct curl_slist *item;
  or_buffer line;
  if (s->api_key.len == 0) return 1;
  for (item = s->headers; item; item = item->next)
    if (is_authorization(item->data)) return 1;
  or_buffer_init(&line);
  /* one allocation: growing would leave a copy of the key in the old block */
  if (or_buffer_reserve(&line, sizeof prefix - 1 + s->api_key.len) != 0) return 0;
  or_buffer_append(&line, prefix, sizeof prefix - 1);
  or_buffer_append(&line, s->api_key.data, s->api_key.len);
  item = curl_slist_append(NULL, line.data);
  or_buffer_free_secure(&line);
  if (!item) return 0;
  item->next = s->headers;
  s->headers = item;
  return 1;
}

CURL *or_client_take_easy(or_client *s) {
  CURL *e;
  if (s->easy_count > 0) return s->easy_pool[--s->easy_count];
  e = curl_easy_init();
  if (e) easy_defaults(s, e);
  return e;
}

void or_client_return_easy(or_client *s, CURL *easy) {
  if (!s->closed && s->easy_count < OR_EASY_POOL)
    s->easy_pool[s->easy_count++] = easy;
  else
    curl_easy_cleanup(easy);
}

void or_client_take_body(or_client *s, or_buffer *b) {
  if (b->data == NULL && s->spare_body.data != NULL) {
    *b = s->spare_body;
    or_buffer_init(&s->spare_body);
  }
}

void or_client_give_body(or_client *s, or_buffer *b) {
  if (!s->closed && s->spare_body.data == NULL && b->cap <= OR_SPARE_BODY_MAX) {
    or_buffer_clear(b);
    s->spare_body = *b;
    or_buffer_init(b);
  } else {
    or_buffer_free(b);
  }
}

double or_client_jitter(or_client *s) {
  /* xorshift64*: plenty for spreading retries, and no shared state */
  unsigned long long x = s->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  s->rng = x;
  return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* The header list of one kind of request: the client's headers, then Accept
** and, for a POST, Content-Type. Built once per client. */
static struct curl_slist *build_request_headers(or_client *s, int post, int stream) {
  struct curl_slist *list = NULL, *item, *next;
  for (item = s->headers; item; item = item->next) {
    next = curl_slist_append(list, item->data);
    if (!next) goto fail;
    list = next;
  }
  next = curl_slist_append(list, stream ? "Accept: text/event-stream" : "Accept: application/json");
  if (!next) goto fail;
  list = next;
  if (post) {
    next = curl_slist_append(list, "Content-Type: application/json");
    if (!next) goto fail;
    list = next;
    /* no "Expect: 100-continue" round trip for large bodies */
    next = curl_slist_append(list, "Expect:");
    if (!next) goto fail;
    list = next;
  }
  return list;
fail:
  or_slist_free_secure(list);
  return NULL;
}


void or_client_free(lua_State *L, or_client *s) {
  int post, stream;
  for (post = 0; post < 2; post++)
    for (stream = 0; stream < 2; stream++) {
      or_slist_free_secure(s->request_headers[post][stream]);
      s->request_headers[post][stream] = NULL;
    }
  while (s->easy_count > 0) curl_easy_cleanup(s->easy_pool[--s->easy_count]);
  or_buffer_free(&s->spare_body);
  if (s->multi) curl_multi_cleanup(s->multi);
  s->multi = NULL;
  or_slist_free_secure(s->headers);
  s->headers = NULL;
  or_buffer_free_secure(&s->api_key);
  if (s->ref_decode != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->ref_decode);
  s->ref_decode = LUA_NOREF;
  free(s->base_url);
  free(s->ca_file);
  free(s->proxy);
  s->base_url = s->ca_file = s->proxy = NULL;
  s->closed = 1;
}

/* ---- construction from the option table the Lua layer validated ---- */

static char *opt_string(lua_State *L, int cfg, const char *name, int required) {
  const char *v;
  size_t len;
  char *copy;
  lua_getfield(L, cfg, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (required) luaL_error(L, "openrouter: option '%s' is required", name);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "openrouter: option '%s' must be a string", name);
  v = lua_tolstring(L, -1, &len);
  copy = (char *)malloc(len + 1);
  if (copy) memcpy(copy, v, len + 1);
  lua_pop(L, 1);
  return copy;
}

/* The largest value of each number option. openrouter.new (init.lua, LIMITS)
** checks the same bounds first: a value it accepts must not be refused here. */
#define OR_MAX_SECONDS 1e6                       /* timeouts and retry delays */
#define OR_MAX_RETRIES 100.0
#define OR_MAX_RESPONSE_BYTES 1099511627776.0   /* 2^40 */

static double opt_number(lua_State *L, int cfg, const char *name, double dflt, double max) {
  double v;
  lua_getfield(L, cfg, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return dflt;
  }
  if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "openrouter: option '%s' must be a number", name);
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  /* checked before the casts to long, int and size_t (out of range: undefined) */
  if (!(v >= 0) || v > max)
    luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' must be a number from 0 to %f", name, max));
  return v;
}

/* Whether header line (len bytes) is "Name: value" with a token name, a value
** without CR, LF or NUL, and a name that cannot change the request's framing
** (Content-Length, Transfer-Encoding, Host: libcurl sets those). Checked here
** too, not only in Lua: core.new is reachable, and a CR/LF would add lines. */
static const char *header_line_problem(const char *line, size_t len) {
  static const char *const framing[] = {"content-length", "transfer-encoding", "host"};
  size_t name = strspn(line, "!#$%&'*+-.^_`|~0123456789"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
  size_t i;
  if (name == 0 || name >= len || line[name] != ':') return "is not 'Name: value'";
  if (strlen(line) != len || strcspn(line, "\r\n") != len) return "holds a line break or NUL";
  for (i = 0; i < sizeof framing / sizeof framing[0]; i++)
    if (strlen(framing[i]) == name && or_strncasecmp(line, framing[i], name) == 0)
      return "sets a header that frames the request (Content-Length, Transfer-Encoding, Host)";
  return NULL;
}

/* The header lines at the top (a list, or nil) into s->headers. */
static void opt_header_lines(lua_State *L, or_client *s) {
  int i, n;
  if (!lua_istable(L, -1)) return;
  n = (int)or_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    struct curl_slist *next;
    const char *line, *problem;
    size_t len;
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "openrouter: header lines must be strings");
    line = lua_tolstring(L, -1, &len);
    problem = header_line_problem(line, len);
    if (problem) luaL_argerror(L, 1, lua_pushfstring(L, "header line %d %s", i, problem));
    next = curl_slist_append(s->headers, line);
    if (!next) luaL_error(L, "not enough memory");
    s->headers = next;
    lua_pop(L, 1);
  }
}

/* Refuses a base_url that is not http(s)://host..., or holds a space, a
** control byte, '?' or '#': paths are appended to it, and after a '?' or '#'
** they would not be the path. */
static void check_base_url(lua_State *L, int cfg) {
  const char *url;
  size_t len, i;
  lua_getfield(L, cfg, "base_url");
  url = lua_tolstring(L, -1, &len);
  if (url) {
    size_t scheme = strncmp(url, "https://", 8) == 0 ? 8 : strncmp(url, "http://", 7) == 0 ? 7 : 0;
    for (i = 0; i < len; i++) {
      unsigned char c = (unsigned char)url[i];
      if (c <= ' ' || c == 0x7f || c == '?' || c == '#') break;
    }
    if (scheme == 0 || i < len || url[scheme] == '/' || url[scheme] == '\0')
      luaL_argerror(L, 1, "base_url must be an http:// or https:// URL without spaces, '?' or '#'");
  }
  lua_pop(L, 1);
}

/* The header lines of the option table at cfg, and the four lists built on them. */
static void configure_headers(lua_State *L, or_client *c, int cfg) {
  int post, stream;
  lua_getfield(L, cfg, "header_lines");
  opt_header_lines(L, c);
  lua_pop(L, 1);
  if (!add_bearer_line(c)) luaL_error(L, "not enough memory");
  for (post = 0; post < 2; post++)
    for (stream = 0; stream < 2; stream++) {
      c->request_headers[post][stream] = build_request_headers(c, post, stream);
      if (!c->request_headers[post][stream]) luaL_error(L, "not enough memory");
    }
}

static void configure_limits(lua_State *L, or_client *c, int cfg) {
  c->timeout_ms = (long)(opt_number(L, cfg, "timeout", 300, OR_MAX_SECONDS) * 1000);
  c->connect_timeout_ms = (long)(opt_number(L, cfg, "connect_timeout", 10, OR_MAX_SECONDS) * 1000);
  c->idle_timeout_ms = (long)(opt_number(L, cfg, "stream_idle_timeout", 60, OR_MAX_SECONDS) * 1000);
  c->max_retries = (int)opt_number(L, cfg, "max_retries", 2, OR_MAX_RETRIES);
  c->retry_base_delay = opt_number(L, cfg, "retry_base_delay", 0.5, OR_MAX_SECONDS);
  c->retry_max_delay = opt_number(L, cfg, "retry_max_delay", 30, OR_MAX_SECONDS);
  /* 2^40 is more than a 32-bit size_t holds: the whole address space there */
  c->max_response_bytes = (size_t)fmin(opt_number(L, cfg, "max_response_bytes", 64.0 * 1024 * 1024,
                                                  OR_MAX_RESPONSE_BYTES), (double)(size_t)-1);
  check_base_url(L, cfg);
  lua_getfield(L, cfg, "insecure");
  c->insecure = lua_toboolean(L, -1);
  lua_pop(L, 1);
}

void or_client_configure(lua_State *L, or_client *c, int cfg) {
  c->closed = 1;  /* until fully built: the closer then frees what exists */
  configure_limits(L, c, cfg);
  c->rng = (unsigned long long)(size_t)c ^ (unsigned long long)(or_epoch() * 1e6) ^ 0x9E3779B97F4A7C15ULL;
  if (c->rng == 0) c->rng = 1;
  c->closed = 0;
  c->base_url = opt_string(L, cfg, "base_url", 1);
  c->ca_file = opt_string(L, cfg, "ca_file", 0);
  c->proxy = opt_string(L, cfg, "proxy", 0);
  lua_getfield(L, cfg, "api_key");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    const char *key = lua_tolstring(L, -1, &len);
    if (or_buffer_append(&c->api_key, key, len) != 0) luaL_error(L, "not enough memory");
  }
  lua_pop(L, 1);
  configure_headers(L, c, cfg);
  /* the decoder, at an integer key: looked up once per stream event */
  lua_getfield(L, LUA_REGISTRYINDEX, OR_CONTEXT);
  lua_getfield(L, -1, "decode");
  c->ref_decode = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  c->multi = curl_multi_init();
  if (!c->base_url || !c->multi) luaL_error(L, "openrouter: cannot create a curl session");
}
