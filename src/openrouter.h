/*
** Private declarations shared by the C files of openrouter.core.
*/
#ifndef OPENROUTER_PRIVATE_H
#define OPENROUTER_PRIVATE_H

#include <stddef.h>
#include <curl/curl.h>

#include "compat.h"
#include "buffer.h"
#include "sse.h"

#define OR_VERSION "0.1.0"

/* Registry keys (per lua_State, not C globals). */
#define OR_SESSION_MT "openrouter.session"
#define OR_REQUEST_MT "openrouter.request"
#define OR_ERROR_MT "openrouter.error"
#define OR_ARRAY_MT "openrouter.array"
#define OR_CONTEXT "openrouter.core.context" /* table: encode, decode, empty_array */

/* ---- session.c: the client userdata ---- */

typedef struct or_session {
  CURLM *multi;            /* owns the connection cache shared by all requests */
  CURL *idle_easy;         /* one easy handle kept for the next request */
  char *base_url;
  or_buffer api_key;       /* wiped before it is freed */
  struct curl_slist *headers; /* Authorization, attribution, extras, User-Agent */
  long timeout_ms;
  long connect_timeout_ms;
  long idle_timeout_ms;
  int max_retries;
  double retry_base_delay; /* seconds */
  double retry_max_delay;  /* a longer Retry-After is returned, not waited */
  char *ca_file;
  char *proxy;
  int insecure;
  size_t max_response_bytes;
  unsigned long long rng;  /* jitter for retry backoff */
  int busy;                /* a call is driving the multi handle */
  int closed;
} or_session;

int or_session_open(lua_State *L);   /* registers the metatable */
or_session *or_check_session(lua_State *L, int idx);
CURL *or_session_take_easy(or_session *s);
void or_session_return_easy(or_session *s, CURL *easy);
double or_session_jitter(or_session *s); /* uniform in [0, 1) */
void or_slist_free_secure(struct curl_slist *list);
int or_session_new(lua_State *L);

/* ---- request.c: one HTTP exchange with retries ---- */

typedef enum {
  OR_ACTION_MODELS,
  OR_ACTION_CREDITS,
  OR_ACTION_CHAT,
  OR_ACTION_COMPLETION
} or_action;

/* Why a transfer was stopped from inside a callback. */
typedef enum {
  OR_ABORT_NONE = 0,
  OR_ABORT_CALLBACK_ERROR, /* the Lua callback raised: re-raised after cleanup */
  OR_ABORT_LUA_FAILURE,    /* a Lua error (memory) in our own code */
  OR_ABORT_CANCELLED,      /* the callback returned false */
  OR_ABORT_DECODE,         /* an SSE event was not JSON */
  OR_ABORT_TOO_LARGE,      /* max_response_bytes exceeded */
  OR_ABORT_IDLE            /* stream_idle_timeout elapsed */
} or_abort;

typedef struct or_request {
  or_session *session;
  CURL *easy;
  struct curl_slist *headers;
  char *url;
  or_buffer body;          /* the request JSON */
  or_buffer response;      /* body bytes not parsed as SSE */
  or_sse sse;
  or_action action;
  int stream;              /* asked for SSE */
  int in_multi;
  int attempt;             /* 0 for the first try */
  /* per attempt */
  long status;
  int is_sse;              /* decided at the first body byte */
  int body_started;
  char content_type[64];
  char generation_id[128];
  double retry_after;      /* seconds, < 0 when absent */
  size_t bytes_received;
  double last_activity;    /* monotonic seconds */
  or_abort abort_reason;
  int stream_failed;       /* an error event arrived; the rest is drained */
  int done_seen;           /* data: [DONE] */
  int events;              /* SSE events decoded */
  int delivered;           /* chunks handed to the Lua callback */
  lua_State *L;            /* valid only while the request is driven */
  int ref_callback;
  int ref_acc;             /* the stream assembler state */
  int ref_stash;           /* raised callback error, or the stream's error chunk */
  char errbuf[CURL_ERROR_SIZE];
} or_request;

int or_request_open(lua_State *L);
/* Runs one action to completion; pushes res or nil, err. Raises on misuse
** and re-raises callback errors after cleanup. */
int or_request_run(lua_State *L, or_session *s, or_action action,
                   const char *path, int params_idx, int callback_idx);

/* ---- stream.c: chunks -> one response ---- */

void or_stream_new_acc(lua_State *L);               /* pushes a fresh assembler */
void or_stream_absorb(lua_State *L, int acc, int chunk); /* may raise (memory) */
/* Pushes the assembled response (or a partial one), shaped like a non-streamed one. */
void or_stream_result(lua_State *L, int acc, or_action action);
int or_stream_has_data(lua_State *L, int acc);

/* ---- json.c: the bridge to lua-cjson ---- */

int or_json_open(lua_State *L);  /* loads cjson, pushes nothing; raises if missing */
/* Encodes the table at idx into out; `extra_stream` adds "stream": true.
** Raises `bad argument #argn to fname` naming the offending field. */
void or_json_encode_request(lua_State *L, int idx, int extra_stream, int argn,
                            or_buffer *out);
int or_json_encode_lua(lua_State *L);
int or_json_decode_lua(lua_State *L);
/* Decodes; on success pushes the value and returns 1, else pushes a message and returns 0. */
int or_json_decode(lua_State *L, const char *s, size_t len);

/* ---- errmap.c: plain-C classification (no Lua) ---- */

const char *or_curl_kind(CURLcode rc);          /* "network" or "timeout" */
int or_curl_is_connect_failure(CURLcode rc);
int or_status_is_retryable(long status);
/* Retry-After: delta seconds or an HTTP-date; returns seconds (>= 0) or -1. */
double or_parse_retry_after(const char *value, size_t len, double now_epoch);
double or_backoff_delay(int attempt, double base, double cap, double jitter01);
/* A short printable excerpt of a body for "http" errors (collapsed spaces). */
size_t or_body_snippet(const char *body, size_t len, char *out, size_t outsize);

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

/* ---- time ---- */
double or_monotonic(void);
double or_epoch(void);
void or_sleep(double seconds);

#endif
