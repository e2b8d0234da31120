/*
** The limit: the benchmark workloads done with libcurl directly, in C, with no Lua. No
** libcurl-based client can beat it. Built and run by bench/run:
**
**   cc -O2 -o build/bench/limit bench/limit.c -lcurl
**   limit w1 BASE_URL seconds=1 bytes=N      sequential small chats, one reused easy handle
**   limit w2 BASE_URL streams=3 chunks=N     one streamed reply: SSE framing, events counted
**   limit w3 BASE_URL batches=3 n=100        n parallel requests (multi interface)
**   limit w4 BASE_URL seconds=1 bytes=N      GET /models into a reused buffer
**   limit w5 BASE_URL samples=30             time from the server's stamp to the first event
**
** Prints one line: "RESULT value=... [single=...] n=..." (see bench/run for the units).
** Bodies are received into buffers that grow by doubling and are reused; nothing is decoded:
** that is the part a Lua client adds.
*/
#define _GNU_SOURCE /* memmem */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EMBEDDINGS_BODY "{\"model\":\"openai/text-embedding-3-large\",\"input\":[\"a\",\"b\"]}"
#define CHAT_BODY "{\"model\":\"openai/gpt-4o-mini\",\"messages\":[{\"role\":\"user\"," \
  "\"content\":\"Say hello in one short sentence.\"}]}"
#define STREAM_BODY "{\"model\":\"openai/gpt-4o-mini\",\"messages\":[{\"role\":\"user\"," \
  "\"content\":\"Say hello in one short sentence.\"}],\"stream\":true}"
#define SLOW_BODY "{\"model\":\"emulator/slow:200\",\"messages\":[{\"role\":\"user\"," \
  "\"content\":\"Say hello in one short sentence.\"}]}"
#define STAMP_BODY "{\"model\":\"emulator/first-chunk-stamp\",\"messages\":[{\"role\":\"user\"," \
  "\"content\":\"Say hello in one short sentence.\"}],\"stream\":true}"

static double now_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_real(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail) {
  fprintf(stderr, "limit: %s: %s\n", what, detail ? detail : "");
  exit(1);
}

static const char *opt(int argc, char **argv, const char *name, const char *def) {
  size_t n = strlen(name);
  for (int i = 3; i < argc; i++)
    if (strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
  return def;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- a growable body buffer, reused across requests ---- */

typedef struct {
  char *data;
  size_t len, cap;
} buffer;

static void buf_append(buffer *b, const char *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) die("out of memory", NULL);
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  buf_append(ud, p, size * n);
  return size * n;
}

static struct curl_slist *headers;

static CURL *new_handle(const char *url, const char *post_body) {
  CURL *e = curl_easy_init();
  if (!e) die("curl_easy_init", NULL);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  if (post_body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, post_body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(post_body));
  }
  return e;
}

static void perform_ok(CURL *e) {
  CURLcode rc = curl_easy_perform(e);
  long status = 0;
  if (rc != CURLE_OK) die("request failed", curl_easy_strerror(rc));
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) die("unexpected HTTP status", NULL);
}

/* ---- workload 1 and 4: sequential requests, time-boxed ---- */

static void sequential(const char *url, const char *post_body, double seconds, size_t bytes,
                       int per_call) {
  buffer b = {0};
  CURL *e = new_handle(url, post_body);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
  size_t cap = 1 << 16, count = 0;
  double *times = malloc(cap * sizeof *times);
  double warm_end = now_mono() + seconds * 0.2;
  while (now_mono() < warm_end) { b.len = 0; perform_ok(e); }
  double start = now_mono(), t = start;
  while (t - start < seconds) {
    b.len = 0;
    perform_ok(e);
    if (bytes && b.len != bytes) die("body of the wrong size", NULL);
    double t2 = now_mono();
    if (count == cap) times = realloc(times, (cap *= 2) * sizeof *times);
    times[count++] = t2 - t;
    t = t2;
  }
  if (per_call)
    printf("RESULT value=%.4f n=%zu\n", median(times, (int)count) * 1000, count);
  else
    printf("RESULT value=%.1f n=%zu\n", (double)count / (t - start), count);
  free(times);
  free(b.data);
  curl_easy_cleanup(e);
}

/* ---- workload 2: one long stream, SSE framing in C ---- */

typedef struct {
  buffer pending; /* the part of an event not yet terminated by a blank line */
  long events;
} sse_state;

static void sse_event(sse_state *s, const char *p, size_t n) {
  if (n >= 6 && memcmp(p, "data: ", 6) == 0 && !(n >= 12 && memcmp(p + 6, "[DONE]", 6) == 0))
    s->events++;
}

static size_t on_sse(char *p, size_t size, size_t n, void *ud) {
  sse_state *s = ud;
  size_t len = size * n, pos = 0;
  char *end;
  if (s->pending.len) { /* an event split across writes: complete it first */
    if (s->pending.data[s->pending.len - 1] == '\n' && len > 0 && p[0] == '\n') {
      sse_event(s, s->pending.data, s->pending.len - 1);
      pos = 1;
    } else if ((end = memmem(p, len, "\n\n", 2)) != NULL) {
      buf_append(&s->pending, p, (size_t)(end - p));
      sse_event(s, s->pending.data, s->pending.len);
      pos = (size_t)(end - p) + 2;
    } else {
      buf_append(&s->pending, p, len);
      return len;
    }
    s->pending.len = 0;
  }
  while (pos < len && (end = memmem(p + pos, len - pos, "\n\n", 2)) != NULL) {
    sse_event(s, p + pos, (size_t)(end - (p + pos)));
    pos = (size_t)(end - p) + 2;
  }
  if (pos < len) buf_append(&s->pending, p + pos, len - pos);
  return len;
}

static void stream(const char *url, int streams, long chunks) {
  sse_state s = {{0}, 0};
  CURL *e = new_handle(url, STREAM_BODY);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_sse);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
  double rates[64];
  if (streams > 64) streams = 64;
  for (int i = -1; i < streams; i++) { /* i == -1: warm-up */
    s.events = 0;
    s.pending.len = 0;
    double t = now_mono();
    perform_ok(e);
    double dt = now_mono() - t;
    if (chunks && s.events != chunks) die("wrong number of events", NULL);
    if (i >= 0) rates[i] = (double)s.events / dt;
  }
  printf("RESULT value=%.1f n=%ld\n", median(rates, streams), s.events);
  free(s.pending.data);
  curl_easy_cleanup(e);
}

/* ---- workload 3: n parallel requests through the multi interface ---- */

static double run_batch(CURLM *m, CURL **hs, buffer *bs, int n) {
  double t = now_mono();
  for (int i = 0; i < n; i++) {
    bs[i].len = 0;
    curl_multi_add_handle(m, hs[i]);
  }
  int running = n, done = 0;
  while (done < n) {
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      if (msg->data.result != CURLE_OK) die("request failed", curl_easy_strerror(msg->data.result));
      long status = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      if (status != 200) die("unexpected HTTP status", NULL);
      curl_multi_remove_handle(m, msg->easy_handle);
      done++;
    }
    if (done < n) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  return (now_mono() - t) * 1000;
}

static void parallel(const char *url, int batches, int n) {
  CURLM *m = curl_multi_init();
  CURL **hs = calloc((size_t)n, sizeof *hs);
  buffer *bs = calloc((size_t)n, sizeof *bs);
  for (int i = 0; i < n; i++) {
    hs[i] = new_handle(url, SLOW_BODY);
    curl_easy_setopt(hs[i], CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(hs[i], CURLOPT_WRITEDATA, &bs[i]);
  }
  double singles[3], totals[64];
  if (batches > 64) batches = 64;
  run_batch(m, hs, bs, 1); /* warm-up: one connection */
  for (int i = 0; i < 3; i++) singles[i] = run_batch(m, hs, bs, 1);
  run_batch(m, hs, bs, n); /* warm-up: n connections */
  for (int i = 0; i < batches; i++) totals[i] = run_batch(m, hs, bs, n);
  printf("RESULT value=%.2f single=%.2f n=%d\n", median(totals, batches), median(singles, 3), n);
  for (int i = 0; i < n; i++) { curl_easy_cleanup(hs[i]); free(bs[i].data); }
  curl_multi_cleanup(m);
  free(hs);
  free(bs);
}

/* ---- workload 5: the server's clock in the first event against ours ---- */

typedef struct {
  buffer b;
  double latency;
} first_state;

static size_t on_first(char *p, size_t size, size_t n, void *ud) {
  double t = now_real();
  first_state *s = ud;
  buf_append(&s->b, p, size * n);
  buf_append(&s->b, "", 1);
  s->b.len--;
  if (!strstr(s->b.data, "\n\n")) return size * n;
  const char *c = strstr(s->b.data, "\"content\":\"");
  if (!c) die("no content in the first event", s->b.data);
  s->latency = t - strtod(c + 11, NULL);
  return 0; /* cancels: the rest of the stream is not needed */
}

static void first_chunk(const char *url, int samples) {
  first_state s = {{0}, 0};
  CURL *e = new_handle(url, STAMP_BODY);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_first);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
  double v[1024];
  if (samples > 1024) samples = 1024;
  for (int i = -2; i < samples; i++) { /* two warm-ups */
    s.b.len = 0;
    s.latency = -1;
    CURLcode rc = curl_easy_perform(e);
    if (rc != CURLE_WRITE_ERROR || s.latency < 0) die("first chunk not seen", curl_easy_strerror(rc));
    if (i >= 0) v[i] = s.latency * 1000;
  }
  printf("RESULT value=%.4f n=%d\n", median(v, samples), samples);
  free(s.b.data);
  curl_easy_cleanup(e);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: limit w1|w2|w3|w4|w5|w6 BASE_URL [key=value ...]\n");
    return 2;
  }
  const char *w = argv[1];
  char url[1024];
  curl_global_init(CURL_GLOBAL_DEFAULT);
  headers = curl_slist_append(headers, "Authorization: Bearer sk-or-bench");
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "User-Agent: limit.c");
  int is_models = strcmp(w, "w4") == 0, is_embeddings = strcmp(w, "w6") == 0;
  snprintf(url, sizeof url, "%s%s", argv[2],
           is_models ? "/models" : is_embeddings ? "/embeddings" : "/chat/completions");
  double seconds = atof(opt(argc, argv, "seconds", "1"));
  size_t bytes = (size_t)atol(opt(argc, argv, "bytes", "0"));
  if (strcmp(w, "w1") == 0)
    sequential(url, CHAT_BODY, seconds, bytes, 0);
  else if (strcmp(w, "w2") == 0)
    stream(url, atoi(opt(argc, argv, "streams", "3")), atol(opt(argc, argv, "chunks", "0")));
  else if (strcmp(w, "w3") == 0)
    parallel(url, atoi(opt(argc, argv, "batches", "3")), atoi(opt(argc, argv, "n", "100")));
  else if (is_models)
    sequential(url, NULL, seconds, bytes, 1);
  else if (is_embeddings)
    sequential(url, EMBEDDINGS_BODY, seconds, bytes, 1);
  else if (strcmp(w, "w5") == 0)
    first_chunk(url, atoi(opt(argc, argv, "samples", "30")));
  else
    die("unknown workload", w);
  curl_slist_free_all(headers);
  curl_global_cleanup();
  return 0;
}
