/*
** Time: a monotonic clock for timeouts, wall-clock for HTTP dates, sleeping
** for retry backoff in blocking calls.
*/
#define _POSIX_C_SOURCE 200809L
#include "openrouter.h"

#include <errno.h>
#include <time.h>

double or_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double or_epoch(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void or_sleep(double seconds) {
  struct timespec ts, rem;
  if (seconds <= 0) return;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &rem) != 0 && errno == EINTR) ts = rem;
}
