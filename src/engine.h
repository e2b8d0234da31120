/*
** The engine (doc/design.md, "Layers"): a client's configuration and handle
** pool (config.c), one request's transfer (transfer.c), and the driver that
** runs every request of a client through its curl multi handle (driver.c).
** The engine calls the bridge and the base, never the bindings.
*/
#ifndef OPENROUTER_ENGINE_H
#define OPENROUTER_ENGINE_H

#include <stddef.h>
#include <curl/curl.h>

#include "bridge.h"
#include "buffer.h"
#include "platform.h"
#include "errmap.h"
#include "sse.h"

#define OR_VERSION "0.1.0"

#define OR_CLIENT_MT "openrouter.client"
#define OR_REQUEST_MT "openrouter.request"

typedef struct or_request or_request;

/* The Lua request object (a full userdata): its methods are the bindings'
** (request.c); the driver reads it to find the request an on_done is for. */
typedef struct or_request_object {
  or_request *r;           /* NULL once released */
} or_request_object;

/* ---- config.c: the client ---- */

#define OR_EASY_POOL 4
/* The largest response buffer a client keeps for its next request. */
#define OR_SPARE_BODY_MAX (8u << 20)

/* A socket libcurl wants watched, and how (CURL_POLL_IN, _OUT, _INOUT, _REMOVE). */
typedef struct or_watch {
  curl_socket_t fd;
  int what;
} or_watch;

/* What the host's loop was told (loop.c). */
typedef struct or_loop {
  int ref_hooks;           /* { socket = fn, timer = fn }, or LUA_NOREF: no host loop */
  or_watch *watched;       /* the sockets curl wants watched now */
  int watched_count, watched_cap;
  or_watch *changes;       /* not yet told to the hooks */
  int change_count, change_cap;
  int lost;                /* a change could not be recorded: replay every watched socket */
  long told_timer;         /* the last timer told (ms; -1: none; -2: never told) */
  int telling;             /* inside the hooks: no nested telling */
} or_loop;

/* The client: a full userdata. See doc/design.md, "Who owns what". */
typedef struct or_client {
  CURLM *multi;            /* owns the connection cache shared by all requests */
  CURL *easy_pool[OR_EASY_POOL]; /* idle easy handles kept for the next requests */
  int easy_count;
  or_buffer spare_body;    /* the last request's response buffer, for the next one */
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
  /* the done requests whose on_done has not run yet (each holds its object) */
  or_request *notify_first, *notify_last;
  int in_perform;          /* inside curl_multi_perform: Lua callbacks run, nothing else may */
  int in_round;            /* walking the active list: nothing is freed or unlinked */
  lua_State *L;            /* the thread driving the multi handle, while it does */
  double budget_until;     /* a round with a budget: chunks wait once it is past (0: none) */
  int paused;              /* requests paused by the budget */
  or_loop loop;
  int ref_decode;          /* the JSON decoder */
  int closed;
} or_client;

/* Fills a new client from the option table at cfg (the Lua layer validated it);
** raises on a bad option or when memory runs out, leaving what exists to free. */
void or_client_configure(lua_State *L, or_client *c, int cfg);
/* Releases everything the client holds (idempotent); marks it closed. */
void or_client_free(lua_State *L, or_client *c);
CURL *or_client_take_easy(or_client *c);
void or_client_return_easy(or_client *c, CURL *easy);
/* Response buffers reused from request to request: no fresh allocation (and page
** faults, for large bodies) per request. take fills an empty buffer with the spare one;
** give keeps b's allocation as the spare (or frees it) and empties b. */
void or_client_take_body(or_client *c, or_buffer *b);
void or_client_give_body(or_client *c, or_buffer *b);
double or_client_jitter(or_client *c); /* uniform in [0, 1) */
void or_slist_free_secure(struct curl_slist *list);
void or_unref(lua_State *L, int *ref);

/* ---- transfer.c: one request ---- */

typedef enum { OR_GET, OR_POST, OR_PUT, OR_PATCH, OR_DELETE } or_method;

/* How a successful body becomes the result (a row of the actions table says). */
typedef enum {
  OR_SHAPE_BODY,     /* the decoded JSON object; generation_id added when it has no id */
  OR_SHAPE_DATA,     /* its `data` table */
  OR_SHAPE_CREDITS,  /* its `data` table, plus `remaining` */
  OR_SHAPE_ANY       /* client:request: any JSON value, or the raw bytes of another type */
} or_shape;

/* What a streamed response is assembled into. */
typedef enum {
  OR_ASSEMBLE_CHAT,        /* chunks -> one chat response */
  OR_ASSEMBLE_COMPLETION,  /* chunks -> one text completion */
  OR_ASSEMBLE_RESPONSES,   /* typed events -> the final response object of the Responses API */
  OR_ASSEMBLE_NONE         /* client:request: events (or bytes) as they are */
} or_assembly;

/* What the caller asked for; or_request_new copies what it keeps. */
typedef struct or_call {
  or_method method;
  const char *path;        /* under base_url, query included */
  int body;                /* stack index of the body (a table: JSON; a string: as is), or 0 */
  int body_is_params;      /* the body is an action's params: `stream` may be added */
  const char *content_type;/* for a string body */
  int headers;             /* stack index of extra headers (name -> value), or 0 */
  or_shape shape;
  or_assembly assembly;
  int stream;              /* deliver the body as it arrives */
} or_call;

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

/* The Lua values a request holds, as registry references released in one loop. */
enum {
  OR_REF_BODY,         /* the request body: a Lua string, sent without a copy */
  OR_REF_ON_CHUNK,
  OR_REF_ON_DONE,
  OR_REF_ON_RESPONSE,
  OR_REF_CLIENT,       /* keeps the client alive while the request is not done */
  OR_REF_OBJECT,       /* keeps the request object alive while it is not done */
  OR_REF_ACC,          /* the stream assembler, or the list of events */
  OR_REF_PENDING,      /* chunks held back by coalesce */
  OR_REF_STASH,        /* a raised callback error, or the stream's error chunk */
  OR_REF_RESULT,       /* when done */
  OR_REF_ERROR,
  OR_REF_RAISE,        /* a callback's error value, to raise again */
  OR_REF_INFO,         /* what came with the answer (req.info) */
  OR_REF_COUNT
};

/* What one attempt learnt; reset when an attempt begins. */
typedef struct or_attempt {
  long status;
  int socket_error;        /* why socket() failed in this attempt (OR_ERR_*), else 0 */
  int is_sse;              /* decided at the first body byte */
  int body_started;
  char content_type[64];
  char generation_id[128];
  double retry_after;      /* seconds, < 0 when absent */
  size_t bytes_received;
  double last_activity;    /* monotonic seconds */
  double first_byte;       /* monotonic, 0 until a response byte came */
  or_abort abort_reason;
  int stream_failed;       /* an error event arrived; the rest is drained */
  int done_seen;           /* data: [DONE] */
  int events;              /* SSE events decoded */
  or_buffer response;      /* body bytes not parsed as SSE */
  or_buffer header_lines;  /* this response's header lines */
  or_sse sse;
  char errbuf[CURL_ERROR_SIZE];
} or_attempt;

/* Streamed pieces on their way to on_chunk. */
typedef struct or_delivery {
  double coalesce;         /* seconds between on_chunk deliveries; 0: every chunk */
  double last_delivery;
  int pending_count;       /* chunks held back */
  int delivered;           /* chunks handed to the Lua callback */
  int response_notified;   /* on_response ran */
} or_delivery;

/* Requests live in C memory, owned by their Lua request object, whose __gc
** frees them. While a request is not done it is a root, as an active libuv
** handle is: refs[OR_REF_OBJECT] keeps its object (and so the request) alive,
** refs[OR_REF_CLIENT] its client, and the client's active list links it.
** Completion drops both and the client pointer, so a done request depends on
** nothing but its object. doc/design.md, "Who owns what". */
struct or_request {
  or_client *client;       /* NULL once done and notified: then it never touches its client */
  or_request *prev, *next; /* the client's active list */
  int linked;              /* in that list */
  or_request *notify_next; /* the client's notify list, once done */
  int notify_linked;       /* in that list (its client pointer is kept until it leaves) */
  or_request_object *object; /* NULL once the object was finalized or closed */
  or_state state;
  /* what was asked, fixed for the request's life */
  or_method method;
  or_shape shape;
  or_assembly assembly;
  int stream;              /* deliver the body as it arrives */
  int blocking;            /* a blocking call: its callback errors are raised by wait */
  CURL *easy;
  struct curl_slist *headers; /* the client's (shared), or own_headers */
  struct curl_slist *own_headers; /* this request's own list, when it has extra headers */
  char *url;
  const char *body;        /* a Lua string held by refs[OR_REF_BODY] */
  size_t body_len;
  double started;          /* monotonic */
  double not_found_until;  /* retry a 404 until then (generation stats are written late) */
  /* progress */
  int attempt;             /* 0 for the first try */
  int in_multi;
  double retry_at;         /* when WAITING */
  int cancel_requested;    /* cancel() or GC from where it cannot act at once */
  int paused;              /* its transfer waits for the next round (budget spent) */
  int unfinished;          /* its transfer ended but finishing it raised: the next round does */
  CURLcode unfinished_rc;
  or_attempt now;
  or_delivery delivery;
  int refs[OR_REF_COUNT];
};

/* Creates a request (not started) for what `call` describes; raises (before any
** C allocation) when the body cannot be encoded. */
or_request *or_request_new(lua_State *L, or_client *c, const or_call *call);
void or_request_free(lua_State *L, or_request *r);
void or_request_release_transfer(or_request *r); /* easy handle, buffers */
void or_request_begin_attempt(lua_State *L, or_request *r);
int or_request_configure(or_request *r);
/* The ended attempt's stream: a last event without its blank line is dispatched,
** held-back (coalesced) chunks go out. */
void or_request_end_stream(or_request *r, CURLcode rc);
/* Pushes the response headers as { [lower-case name] = value }. */
void or_request_push_headers(lua_State *L, or_request *r);
/* The same table from raw header lines ("Name: value\r\n" ...). */
void or_push_header_table(lua_State *L, const char *lines, size_t len);
/* on_response for a response whose body never reached the write callback; 0 if
** it raised (the outcome on top is replaced by the error to raise). */
int or_request_notify_response(lua_State *L, or_request *r);

/* ---- outcome.c: an ended attempt ---- */

/* Maps the ended attempt to an outcome: pushes the result, the error or the
** value to raise (nothing for OR_OUT_RETRY, with r->retry_at set). */
or_outcome or_request_finish_attempt(lua_State *L, or_request *r, CURLcode rc);
/* Pushes what came with the answer: status, headers, content_type, ... */
void or_request_push_info(lua_State *L, or_request *r);
/* Hands held-back (coalesced) chunks to on_chunk now; returns 0 if it stopped the request. */
int or_request_flush(or_request *r);

/* ---- loop.c: a host's event loop ---- */

void or_loop_init(or_client *c);               /* curl reports its sockets from now on */
void or_loop_free(lua_State *L, or_client *c); /* after curl_multi_cleanup */
/* Sets the hooks table at idx (nil: none); new hooks learn every watched socket. */
void or_loop_set_hooks(lua_State *L, or_client *c, int idx);
/* Tells the hooks the socket changes and the timer (ms until the client needs
** a round; -1: none); raises the first hook error once all were told. */
void or_loop_tell(lua_State *L, or_client *c, long timer_ms);

/* ---- driver.c: every request of a client ---- */

void or_driver_enqueue(or_client *c, or_request *r); /* the next round starts it */
/* One non-blocking pass; may raise. budget: seconds of chunk delivery after which
** transfers wait for the next round (0: no limit). */
void or_driver_round(lua_State *L, or_client *c, double budget);
/* The same pass for a host loop: fd became ready for `events` (CURL_CSELECT_*),
** or, with CURL_SOCKET_TIMEOUT, the timer fired. */
void or_driver_socket_round(lua_State *L, or_client *c, curl_socket_t fd, int events);
/* Outside a round: tells a host loop's hooks what changed (a new request wants a round). */
void or_driver_kick(lua_State *L, or_client *c);
long or_driver_wait_ms(or_client *c, long cap_ms);  /* until the next timer */
void or_driver_wait(or_client *c, long ms);         /* sleeps until activity or ms */
/* Cancels r (not inside a curl callback): on_done runs now. */
void or_driver_cancel(lua_State *L, or_request *r);
/* Ends r quietly (no on_done): its object is gone. */
void or_driver_discard(lua_State *L, or_request *r);
/* The client is closing: every unfinished request is cancelled; with notify,
** their on_done run (close()), else they are detached without Lua (__gc). */
void or_driver_cancel_all(lua_State *L, or_client *c, int notify);
/* Calls on_done of the client's done requests that wait for it; may raise. */
void or_driver_notify(lua_State *L, or_client *c);
/* Takes a done request out of its client's notify list (its object is released). */
void or_driver_unnotify(or_request *r);

#endif
