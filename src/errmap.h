/*
** Failure classification: libcurl codes and HTTP statuses to what a caller
** can act on, Retry-After, backoff, body excerpts. Plain C, no Lua (base
** layer: doc/design.md, "Layers"), fuzzed on its own (fuzz/fuzz_errmap.c).
*/
#ifndef OPENROUTER_ERRMAP_H
#define OPENROUTER_ERRMAP_H

#include <stddef.h>
#include <curl/curl.h>

const char *or_curl_kind(CURLcode rc);          /* "network", "timeout" or "decode" */
int or_curl_is_connect_failure(CURLcode rc);
/* What a failed transfer means, when curl's own words would mislead. */
typedef struct or_failure {
  const char *kind;     /* or_curl_kind, or "decode" for an oversized header */
  const char *message;  /* NULL: curl's words are right */
  const char *code;     /* err.code, or NULL */
  int retry;            /* failed before the server saw it, and another try may work */
} or_failure;
/* socket_error: why socket() failed in this attempt (platform.h's OR_ERR_*; 0: none);
** in_headers: the status line arrived and the body did not. */
void or_curl_classify(CURLcode rc, int socket_error, int in_headers, or_failure *f);
int or_status_is_retryable(long status);
/* Retry-After: delta seconds or an HTTP-date; returns seconds (>= 0) or -1. */
double or_parse_retry_after(const char *value, size_t len, double now_epoch);
double or_backoff_delay(int attempt, double base, double cap, double jitter01);
/* A short printable excerpt of a body for "http" errors (collapsed spaces). */
size_t or_body_snippet(const char *body, size_t len, char *out, size_t outsize);

#endif
