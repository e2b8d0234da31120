/*
** Driving every request of a client through its curl multi handle (engine): starting
** queued requests and due retries, reaping finished transfers, stall timeouts,
** coalesced deliveries, cancellation, and the on_done notifications.
**
** A round never blocks. Lua callbacks run in three places only: inside
** curl_multi_perform (on_response, on_chunk), in the sweep (coalesced chunks)
** and in the notification phase (on_done). While the active list is walked
** (c->in_round) callbacks cannot free or unlink a request: cancel() and the
** garbage collector only mark it, and the walk acts on the mark.
*/
/* curl_multi_socket_all is marked deprecated, yet it is the one call that
** runs every transfer and reports all of their sockets: curl_multi_perform
** does not call the socket callback (libcurl 7.88), so a host loop would not
** learn the sockets of transfers that poll or a blocking call drove. */
#define CURL_DISABLE_DEPRECATION 1
#include "engine.h"

#include <string.h>

/* ---- the active list ---- */

static void link_active(or_client *s, or_request *r) {
  if (r->linked) return;
  r->linked = 1;
  r->prev = s->last;
  r->next = NULL;
  if (s->last)
    s->last->next = r;
  else
    s->first = r;
  s->last = r;
  s->active++;
}

static void unlink_active(or_client *s, or_request *r) {
  if (!r->linked) return;  /* a request refused before it was queued */
  r->linked = 0;
  if (r->prev) r->prev->next = r->next; else s->first = r->next;
  if (r->next) r->next->prev = r->prev; else s->last = r->prev;
  r->prev = r->next = NULL;
  s->active--;
}

void or_driver_enqueue(or_client *s, or_request *r) {
  r->state = OR_STATE_QUEUED;  /* the next round starts it */
  link_active(s, r);
}

/* ---- completion ---- */

/* The done request's own bookkeeping: nothing here allocates. */
static void settle(lua_State *L, or_client *s, or_request *r) {
  r->state = OR_STATE_DONE;
  if (r->paused) {
    r->paused = 0;
    s->paused--;
  }
  or_request_release_transfer(r);
  unlink_active(s, r);
  or_unref(L, &r->refs[OR_REF_CLIENT]);
  or_unref(L, &r->refs[OR_REF_ACC]);
  or_unref(L, &r->refs[OR_REF_PENDING]);
  or_unref(L, &r->refs[OR_REF_STASH]);
  if (r->object == NULL) {
    r->client = NULL;
    or_request_free(L, r);
    return;
  }
  r->notify_next = NULL;  /* the client pointer stays while it waits for its on_done */
  r->notify_linked = 1;
  if (s->notify_last) s->notify_last->notify_next = r;
  else s->notify_first = r;
  s->notify_last = r;
}

/* Takes r out of its client's notify list (its object is being released). */
void or_driver_unnotify(or_request *r) {
  or_client *s = r->client;
  or_request **p;
  if (!r->notify_linked || s == NULL) return;
  for (p = &s->notify_first; *p; p = &(*p)->notify_next)
    if (*p == r) {
      *p = r->notify_next;
      break;
    }
  s->notify_last = NULL;
  for (p = &s->notify_first; *p; p = &(*p)->notify_next) s->notify_last = *p;
  r->notify_linked = 0;
  r->notify_next = NULL;
  r->client = NULL;
}

/* The first request waiting for its on_done, off the list, its object pushed
** (alive on the stack while on_done runs); NULL when none waits. */
static or_request *next_to_notify(lua_State *L, or_client *s) {
  or_request *r = s->notify_first;
  if (r == NULL) return NULL;
  s->notify_first = r->notify_next;
  if (s->notify_first == NULL) s->notify_last = NULL;
  r->notify_linked = 0;
  r->notify_next = NULL;
  r->client = NULL;  /* from here on a done request never touches its client */
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_OBJECT]);
  or_unref(L, &r->refs[OR_REF_OBJECT]);
  return r;
}

/* The outcome (on top, popped) becomes r's. r leaves the active list, lets go of
** its client and joins the client's notify list, which keeps its object (refs
** [OR_REF_OBJECT]) until its on_done ran: a C list, so that no allocation can
** lose an on_done. When the object is already gone, r is freed. */
static void complete(lua_State *L, or_client *s, or_request *r, or_outcome out) {
  int value = lua_gettop(L);
  if (out == OR_OUT_RESULT) {
    lua_pushvalue(L, value);
    r->refs[OR_REF_RESULT] = luaL_ref(L, LUA_REGISTRYINDEX);
  } else if (out == OR_OUT_ERROR) {
    lua_pushvalue(L, value);
    r->refs[OR_REF_ERROR] = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    /* a callback raised: the value is raised again; on_done and req.error get an error object */
    lua_pushvalue(L, value);
    r->refs[OR_REF_RAISE] = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushfstring(L, "a callback raised: %s",
                    lua_isstring(L, value) ? lua_tostring(L, value) : luaL_typename(L, value));
    or_error_new(L, "callback", lua_tostring(L, -1));
    lua_pushvalue(L, value);
    lua_setfield(L, -2, "cause");
    r->refs[OR_REF_ERROR] = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
  }
  lua_settop(L, value - 1);
  if (r->object != NULL) {  /* what came with the answer, while the transfer's data is there */
    or_request_push_info(L, r);
    r->refs[OR_REF_INFO] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  settle(L, s, r);
}

static void finish(lua_State *L, or_client *s, or_request *r, CURLcode rc) {
  or_outcome out = or_request_finish_attempt(L, r, rc);
  if (out == OR_OUT_RETRY) {
    r->state = OR_STATE_WAITING;  /* its easy handle is kept for the next attempt */
    return;
  }
  complete(L, s, r, out);
}

/* Stops a running transfer from outside curl's callbacks. */
static void abort_transfer(lua_State *L, or_client *s, or_request *r, or_abort why) {
  if (r->in_multi) curl_multi_remove_handle(s->multi, r->easy);
  r->in_multi = 0;
  if (r->now.abort_reason == OR_ABORT_NONE) r->now.abort_reason = why;
  finish(L, s, r, CURLE_OK);
}

static void complete_cancelled(lua_State *L, or_client *s, or_request *r) {
  r->cancel_requested = 1;  /* close() too: "the request was cancelled", not a callback's false */
  if (r->state == OR_STATE_RUNNING) {
    abort_transfer(L, s, r, OR_ABORT_CANCELLED);
    return;
  }
  or_error_new(L, "cancelled", "the request was cancelled");
  complete(L, s, r, OR_OUT_ERROR);
}

/* Calls on_done(res, err, info) of every request in the client's notify list;
** raises the first error (a callback's, raised again, or on_done's own) once
** all ran. What a raise leaves in the list is notified by the next round. */
static void notify_all(lua_State *L, or_client *s) {
  int have_error = 0, slot;
  or_request *r;
  if (s->notify_first == NULL) return;
  lua_pushnil(L);
  slot = lua_gettop(L);  /* the first error */
  while ((r = next_to_notify(L, s)) != NULL) {
    or_request_object *h = (or_request_object *)lua_touserdata(L, -1);
    if (h == NULL || h->r != r) {  /* closed meanwhile */
      lua_pop(L, 1);
      continue;
    }
    if (r->refs[OR_REF_RAISE] != LUA_NOREF && !r->blocking && !have_error) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_RAISE]);
      lua_replace(L, slot);
      have_error = 1;
    }
    if (r->refs[OR_REF_ON_DONE] != LUA_NOREF) {
      int done = r->refs[OR_REF_ON_DONE];
      r->refs[OR_REF_ON_DONE] = LUA_NOREF;  /* exactly once */
      lua_rawgeti(L, LUA_REGISTRYINDEX, done);
      luaL_unref(L, LUA_REGISTRYINDEX, done);
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_RESULT]);
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_ERROR]);
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->refs[OR_REF_INFO]);
      if (lua_pcall(L, 3, 0, 0) != 0) {
        if (!have_error) lua_replace(L, slot);
        else lua_pop(L, 1);
        have_error = 1;
      }
    }
    lua_pop(L, 1);  /* the object */
  }
  if (have_error) {
    lua_pushvalue(L, slot);
    lua_error(L);
  }
  lua_pop(L, 1);
}

/* ---- a round ---- */

static int start_attempt(lua_State *L, or_client *s, or_request *r) {
  if (r->easy == NULL) r->easy = or_client_take_easy(s);
  if (r->easy == NULL) {
    or_error_new(L, "network", "cannot create a curl handle");
    return 0;
  }
  or_request_begin_attempt(L, r);
  if (or_request_configure(r) != 0) {
    or_error_new(L, "network", "invalid URL (check base_url)");
    return 0;
  }
  if (curl_multi_add_handle(s->multi, r->easy) != CURLM_OK) {
    or_error_new(L, "network", "cannot start the transfer");
    return 0;
  }
  r->in_multi = 1;
  r->state = OR_STATE_RUNNING;
  return 1;
}

static void start_due(lua_State *L, or_client *s) {
  or_request *r, *next;
  double now = or_monotonic();
  for (r = s->first; r; r = next) {
    next = r->next;
    if (r->state != OR_STATE_QUEUED && !(r->state == OR_STATE_WAITING && now >= r->retry_at))
      continue;
    if (r->cancel_requested) {
      complete_cancelled(L, s, r);
      continue;
    }
    if (r->state == OR_STATE_WAITING) r->attempt++;
    if (!start_attempt(L, s, r)) complete(L, s, r, OR_OUT_ERROR);
  }
}

static void reap(lua_State *L, or_client *s) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
    CURL *easy = msg->easy_handle;
    CURLcode rc = msg->data.result;
    char *priv = NULL;
    or_request *r;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    r = (or_request *)priv;
    curl_multi_remove_handle(s->multi, easy);  /* msg is invalid from here */
    if (r == NULL) continue;
    r->in_multi = 0;
    /* cancelled by a callback of this round after its last byte came: cancel() said
    ** true, so the request ends cancelled */
    if (r->cancel_requested && r->now.abort_reason == OR_ABORT_NONE) r->now.abort_reason = OR_ABORT_CANCELLED;
    /* curl's message is gone: should finishing raise (no memory), the next round
    ** finishes it, rather than the request waiting forever */
    r->unfinished = 1;
    r->unfinished_rc = rc;
    finish(L, s, r, rc);
    r->unfinished = 0;
  }
}

/* Marked cancellations, stalled streams, coalesced chunks that are due. */
static void sweep(lua_State *L, or_client *s) {
  or_request *r, *next;
  double now = or_monotonic();
  for (r = s->first; r; r = next) {
    next = r->next;
    if (r->cancel_requested) {
      complete_cancelled(L, s, r);
      continue;
    }
    if (r->state != OR_STATE_RUNNING) continue;
    if (r->unfinished) {  /* its transfer ended, but a round raised while finishing it */
      r->unfinished = 0;
      finish(L, s, r, r->unfinished_rc);
      continue;
    }
    if (r->stream && s->idle_timeout_ms > 0 &&
        (now - r->now.last_activity) * 1000.0 >= (double)s->idle_timeout_ms) {
      abort_transfer(L, s, r, OR_ABORT_IDLE);
      continue;
    }
    if (r->delivery.pending_count > 0 && now - r->delivery.last_delivery >= r->delivery.coalesce && !or_request_flush(r))
      abort_transfer(L, s, r, r->now.abort_reason);
  }
}

/* Transfers paused when the last round's budget ran out go on (inside
** in_perform: curl hands them their bytes at once, Lua callbacks run). */
static void resume_paused(or_client *s) {
  or_request *r;
  if (s->paused == 0) return;
  for (r = s->first; r; r = r->next)
    if (r->paused && r->state == OR_STATE_RUNNING) {
      r->paused = 0;
      s->paused--;
      curl_easy_pause(r->easy, CURLPAUSE_CONT);  /* may pause it again: counted anew */
    }
}

/* What one round does; `fd` says how curl is driven: OR_PERFORM (poll, wait)
** or a socket (or CURL_SOCKET_TIMEOUT) for a host loop. */
#define OR_PERFORM ((curl_socket_t)-2)

typedef struct round_args {
  or_client *client;
  curl_socket_t fd;
  int events;
  double budget;
} round_args;

static int round_protected(lua_State *L) {
  round_args *a = (round_args *)lua_touserdata(L, 1);
  or_client *s = a->client;
  int running;
  lua_settop(L, 0);
  s->L = L;
  s->in_round = 1;
  s->budget_until = a->budget > 0 ? or_monotonic() + a->budget : 0;
  start_due(L, s);
  s->in_perform = 1;
  resume_paused(s);
  if (a->fd == OR_PERFORM && s->loop.ref_hooks != LUA_NOREF)
    curl_multi_socket_all(s->multi, &running);  /* a host loop learns every socket */
  else if (a->fd == OR_PERFORM)
    curl_multi_perform(s->multi, &running);
  else
    curl_multi_socket_action(s->multi, a->fd, a->events, &running);
  s->in_perform = 0;
  s->budget_until = 0;
  reap(L, s);
  sweep(L, s);
  s->in_round = 0;
  notify_all(L, s);
  return 0;
}

static void run_round(lua_State *L, round_args *a) {
  or_client *s = a->client;
  lua_pushcfunction(L, round_protected);
  lua_pushlightuserdata(L, a);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    /* bookkeeping is consistent at every point a Lua error can occur */
    s->in_perform = 0;
    s->in_round = 0;
    s->budget_until = 0;
    or_driver_kick(L, s);  /* the host loop still learns what changed */
    lua_error(L);
  }
  or_driver_kick(L, s);
}

void or_driver_round(lua_State *L, or_client *s, double budget) {
  round_args a;
  a.client = s;
  a.fd = OR_PERFORM;
  a.events = 0;
  a.budget = budget;
  run_round(L, &a);
}

void or_driver_socket_round(lua_State *L, or_client *s, curl_socket_t fd, int events) {
  round_args a;
  a.client = s;
  a.fd = fd;
  a.events = events;
  a.budget = 0;
  run_round(L, &a);
}

void or_driver_kick(lua_State *L, or_client *s) {
  if (s->loop.ref_hooks == LUA_NOREF || s->in_round || s->closed) return;
  or_loop_tell(L, s, s->active > 0 ? or_driver_wait_ms(s, 86400000L) : -1);
}

/* ---- waiting ---- */

long or_driver_wait_ms(or_client *s, long cap_ms) {
  or_request *r;
  long ms = cap_ms, curl_ms = -1;
  double now = or_monotonic();
  if (s->paused > 0) return 0;  /* bytes wait in curl's buffers: no socket will say so */
  curl_multi_timeout(s->multi, &curl_ms);
  if (curl_ms >= 0 && curl_ms < ms) ms = curl_ms;
  for (r = s->first; r && ms > 0; r = r->next) {
    double due = -1;
    if (r->state == OR_STATE_QUEUED || r->cancel_requested || r->unfinished) {
      due = now;
    } else if (r->state == OR_STATE_WAITING) {
      due = r->retry_at;
    } else if (r->state == OR_STATE_RUNNING) {
      if (r->stream && s->idle_timeout_ms > 0)
        due = r->now.last_activity + (double)s->idle_timeout_ms / 1000.0;
      if (r->delivery.pending_count > 0 && (due < 0 || r->delivery.last_delivery + r->delivery.coalesce < due))
        due = r->delivery.last_delivery + r->delivery.coalesce;
    }
    if (due >= 0) {
      double left = (due - now) * 1000.0;
      if (left < (double)ms) ms = left <= 0 ? 0 : (long)left + 1;
    }
  }
  return ms < 0 ? 0 : ms;
}

void or_driver_wait(or_client *s, long ms) {
  if (ms > 0) curl_multi_poll(s->multi, NULL, 0, (int)ms, NULL);
}

/* ---- cancellation ---- */

void or_driver_cancel(lua_State *L, or_request *r) {
  or_client *s = r->client;
  if (s == NULL || r->state == OR_STATE_DONE) return;
  r->cancel_requested = 1;
  if (s->in_perform || s->in_round) return;  /* the running round acts on the mark */
  s->L = L;
  complete_cancelled(L, s, r);
  notify_all(L, s);
}

/* Ends r at once without calling Lua: its object was finalized (lua_close, or
** __gc called by hand). Inside a round only the mark is set: the sweep
** completes it and, with no object left, frees it. */
void or_driver_discard(lua_State *L, or_request *r) {
  or_client *s = r->client;
  r->cancel_requested = 1;
  if (s->in_perform || s->in_round) return;
  or_request_release_transfer(r);
  unlink_active(s, r);
  r->client = NULL;
  or_request_free(L, r);
}

/* The client is finalized (lua_close): every request detached without calling
** Lua; each object, finalized before or after, frees its own request. */
static void detach_all(lua_State *L, or_client *s) {
  or_request *r, *next;
  for (r = s->first; r; r = next) {
    next = r->next;
    or_request_release_transfer(r);
    unlink_active(s, r);
    r->state = OR_STATE_DONE;
    r->client = NULL;
    or_unref(L, &r->refs[OR_REF_CLIENT]);
    or_unref(L, &r->refs[OR_REF_OBJECT]);
    if (r->object == NULL) or_request_free(L, r);
  }
  for (r = s->notify_first; r; r = next) {  /* done, their on_done not run: nobody left to tell */
    next = r->notify_next;
    r->notify_linked = 0;
    r->notify_next = NULL;
    r->client = NULL;
    or_unref(L, &r->refs[OR_REF_OBJECT]);
  }
  s->notify_first = s->notify_last = NULL;
}

void or_driver_cancel_all(lua_State *L, or_client *s, int notify) {
  or_request *r, *next;
  s->L = L;
  if (!notify) {
    detach_all(L, s);
    return;
  }
  for (r = s->first; r; r = next) {
    next = r->next;
    complete_cancelled(L, s, r);
  }
}

void or_driver_notify(lua_State *L, or_client *s) {
  notify_all(L, s);
}
