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

typedef struct or_request or_request;

/* ---- session.c: the client userdata ---- */

#define OR_EASY_POOL 4
/* The largest response buffer a session keeps for its next request. */
#define OR_SPARE_BODY_MAX (8u << 20)

typedef struct or_session {
  CURLM *multi;            /* owns the connection cache shared by all requests */
  CURL *easy_pool[OR_EASY_POOL]; /* idle easy handles kept for the next requests */
  int easy_count;
  or_buffer spare_body;     /* the last request's response buffer, for the next one */
  char *base_url;
  or_buffer api_key;       /* wiped before it is freed */
  struct curl_slist *headers; /* Authorization, attribution, extras, User-Agent */
  struct curl_slist *request_headers[2][2]; /* [post][stream]: headers + Accept ... */
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
  /* the requests that are not done: queued, running or waiting to retry */
  or_request *first, *last;
  int active;
  int in_perform;          /* inside curl_multi_perform: Lua callbacks run, nothing else may */
  int in_round;            /* walking the active list: nothing is freed or unlinked */
  lua_State *L;            /* the thread driving the multi handle, while it does */
  int ref_decode;          /* the JSON decoder */
  int closed;
} or_session;

int or_session_open(lua_State *L);   /* registers the metatable */
or_session *or_check_session(lua_State *L, int idx);
CURL *or_session_take_easy(or_session *s);
void or_session_return_easy(or_session *s, CURL *easy);
/* Response buffers reused from request to request: no fresh allocation (and page
** faults, for large bodies) per request. take fills an empty buffer with the spare one;
** give keeps b's allocation as the spare (or frees it) and empties b. */
void or_session_take_body(or_session *s, or_buffer *b);
void or_session_give_body(or_session *s, or_buffer *b);
double or_session_jitter(or_session *s); /* uniform in [0, 1) */
void or_slist_free_secure(struct curl_slist *list);
int or_session_new(lua_State *L);

/* ---- request.c: one HTTP exchange ---- */

typedef enum {
  OR_ACTION_MODELS,      /* these return the body's `data` */
  OR_ACTION_CREDITS,
  OR_ACTION_KEY,
  OR_ACTION_GENERATION,
  OR_ACTION_ENDPOINTS,
  OR_ACTION_CHAT,        /* these return the whole body */
  OR_ACTION_COMPLETION,
  OR_ACTION_EMBEDDINGS
} or_action;

/* Why a transfer was stopped from inside a callback. */
typedef enum {
  OR_ABORT_NONE = 0,
  OR_ABORT_CALLBACK_ERROR, /* a Lua callback raised: reported after cleanup */
  OR_ABORT_LUA_FAILURE,    /* a Lua error (memory) in our own code */
  OR_ABORT_CANCELLED,      /* a callback returned false, or req:cancel() */
  OR_ABORT_DECODE,         /* an SSE event was not JSON */
  OR_ABORT_TOO_LARGE,      /* max_response_bytes exceeded */
  OR_ABORT_IDLE            /* stream_idle_timeout elapsed */
} or_abort;

typedef enum {
  OR_STATE_QUEUED,   /* created from inside a callback: started by the next round */
  OR_STATE_RUNNING,  /* its easy handle is in the multi handle */
  OR_STATE_WAITING,  /* waiting to retry */
  OR_STATE_DONE
} or_state;

typedef enum { OR_OUT_RESULT, OR_OUT_ERROR, OR_OUT_RETRY, OR_OUT_RAISE } or_outcome;

typedef struct or_handle {
  or_request *r;           /* NULL once released */
} or_handle;

/* Requests live in C memory, owned by their Lua request object (or_handle),
** whose __gc frees them. While a request is not done it is a root, as an
** active libuv handle is: ref_object keeps its object (and so the request)
** alive, ref_client its client, and the session's active list links it.
** Completion drops both refs and the session pointer, so a done request
** depends on nothing but its object. doc/design.md, "Who owns what". */
struct or_request {
  or_session *session;     /* NULL once done: a done request never touches its client */
  or_request *prev, *next; /* the session's active list */
  int linked;              /* in that list */
  or_handle *handle;       /* NULL once the Lua object was finalized or closed */
  or_state state;
  CURL *easy;
  struct curl_slist *headers; /* the session's, for this kind of request */
  char *url;
  const char *body;        /* the request JSON: a Lua string held by ref_body */
  size_t body_len;
  int ref_body;
  or_buffer response;      /* body bytes not parsed as SSE */
  or_buffer header_lines;  /* this response's header lines, for on_response */
  or_sse sse;
  or_action action;
  int stream;              /* asked for SSE */
  int blocking;            /* a blocking call: its callback errors are raised by wait */
  int in_multi;
  int attempt;             /* 0 for the first try */
  double started;          /* monotonic */
  double retry_at;         /* when WAITING */
  double not_found_until;  /* retry a 404 until then (generation stats are written late) */
  int cancel_requested;    /* cancel() or GC from where it cannot act at once */
  double coalesce;         /* seconds between on_chunk deliveries; 0: every chunk */
  double last_delivery;
  int pending_count;       /* chunks held back */
  int response_notified;
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
  /* registry references */
  int ref_on_chunk;
  int ref_on_done;
  int ref_on_response;
  int ref_client;          /* keeps the client alive while the request is not done */
  int ref_object;          /* keeps the request object alive while it is not done */
  int ref_acc;             /* the stream assembler state */
  int ref_pending;         /* chunks held back by coalesce */
  int ref_stash;           /* raised callback error, or the stream's error chunk */
  int ref_result;          /* when DONE */
  int ref_error;
  int ref_raise;           /* a callback's error value, to raise again */
  int socket_errno;        /* errno of a failed socket() in this attempt, else 0 */
  char errbuf[CURL_ERROR_SIZE];
};

/* Creates a request (not started) for params at params_idx (0: none). */
or_request *or_request_new(lua_State *L, or_session *s, or_action action, const char *path,
                           int params_idx, int stream);
void or_request_free(lua_State *L, or_request *r);
void or_request_release_transfer(or_request *r); /* easy handle, buffers */
void or_request_begin_attempt(lua_State *L, or_request *r); /* pushes an error, or nothing */
int or_request_configure(or_request *r);
void or_easy_defaults(or_session *s, CURL *e);  /* what every request of s shares */
/* Maps the ended attempt to an outcome: pushes the result, the error or the
** value to raise (nothing for OR_OUT_RETRY, with r->retry_at set). */
or_outcome or_request_finish_attempt(lua_State *L, or_request *r, CURLcode rc);
/* Hands held-back (coalesced) chunks to on_chunk now; returns 0 if it stopped the request. */
int or_request_flush(or_request *r);
void or_unref(lua_State *L, int *ref);

/* ---- multi.c: driving every request of a session ---- */

void or_multi_enqueue(lua_State *L, or_session *s, or_request *r); /* starts or queues */
void or_multi_round(lua_State *L, or_session *s);   /* one non-blocking pass; may raise */
long or_multi_wait_ms(or_session *s, long cap_ms);  /* until the next timer */
void or_multi_wait(or_session *s, long ms);         /* sleeps until activity or ms */
void or_multi_notify(lua_State *L, int notify); /* on_done of the requests listed; may raise */
/* Cancels r (not inside a curl callback): on_done runs now. */
void or_multi_cancel(lua_State *L, or_request *r);
/* The session is closing: every unfinished request is cancelled. notify: call on_done. */
/* Ends r quietly (no on_done): its object is gone. */
void or_multi_discard(lua_State *L, or_request *r);
void or_multi_cancel_all(lua_State *L, or_session *s, int notify);

/* ---- handle.c: Lua request objects and the actions ---- */

int or_handle_open(lua_State *L);
/* Pushes a request object for r. */
or_handle *or_handle_push(lua_State *L, or_request *r);
/* Runs an action: blocking (pushes res, err) or async (pushes the request object). */
int or_call(lua_State *L, or_session *s, or_action action, const char *path, int params_idx,
            int callback_idx, int opts_idx);
int or_client_poll(lua_State *L);

/* ---- actions.c ---- */
void or_actions_register(lua_State *L, int methods);

/* ---- stream.c: chunks -> one response ---- */

void or_stream_new_acc(lua_State *L);               /* pushes a fresh assembler */
/* Absorbs one decoded chunk (`first`: the stream's first; `legacy`: a completion, whose
** choices carry `text`); returns whether it carries an error object. May raise (memory). */
int or_stream_absorb(lua_State *L, int acc, int chunk, int first, int legacy);
/* Pushes the assembled response (or a partial one), shaped like a non-streamed one. */
void or_stream_result(lua_State *L, int acc, or_action action);
int or_stream_has_data(lua_State *L, int acc);
/* Pushes one chunk made of the chunks in the list at idx: text deltas joined,
** tool-call and reasoning fragments kept in order, the last finish_reason and usage. */
void or_stream_merge(lua_State *L, int list);

/* ---- json.c: the bridge to lua-cjson ---- */

int or_json_open(lua_State *L);  /* loads cjson, pushes nothing; raises if missing */
/* Pushes the JSON text of the value at idx; `extra_stream` adds "stream": true.
** Raises `bad argument #argn` naming the offending field. */
void or_json_push_request(lua_State *L, int idx, int extra_stream, int argn);
int or_json_encode_lua(lua_State *L);
int or_is_null(lua_State *L, int idx);
int or_json_is_object_text(const char *s, size_t len);  /* nil or the JSON null of the codec */
void or_push_null(lua_State *L);
int or_json_decode_lua(lua_State *L);
/* Decodes; on success pushes the value and returns 1, else pushes a message and returns 0. */
int or_json_decode(lua_State *L, const char *s, size_t len);

/* ---- errmap.c: plain-C classification (no Lua) ---- */

const char *or_curl_kind(CURLcode rc);          /* "network", "timeout" or "decode" */
int or_curl_is_connect_failure(CURLcode rc);
/* What a failed transfer means, when curl's own words would mislead. */
typedef struct or_failure {
  const char *kind;     /* or_curl_kind, or "decode" for an oversized header */
  const char *message;  /* NULL: curl's words are right */
  const char *code;     /* err.code, or NULL */
  int retry;            /* failed before the server saw it, and another try may work */
} or_failure;
/* socket_errno: errno of a failed socket() in this attempt (0: none);
** in_headers: the status line arrived and the body did not. */
void or_curl_classify(CURLcode rc, int socket_errno, int in_headers, or_failure *f);
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

#endif
